//! GraphQL over WebSocket (`graphql-transport-ws`, and the legacy
//! `graphql-ws`), with the limits a socket open to the internet needs:
//!
//! - a message size limit (the same bound as a request body), enforced by
//!   the socket itself, which closes on a larger message;
//! - `connection_init` within `limits.ws_init_timeout_secs`, or the
//!   connection closes with 4408 (as the `graphql-transport-ws` protocol
//!   specifies);
//! - at most `limits.ws_operations_per_connection` operations running at
//!   once on one connection (another is answered `RATE_LIMITED`);
//! - at most `limits.ws_connections_per_user` connections per signed-in user
//!   (another is refused at `connection_init`);
//! - every operation of a signed-in connection ends with `UNAUTHENTICATED`
//!   when its token expires: a socket does not outlive its credentials.
//!
//! The protocol itself is async-graphql's; this module drives it and keeps
//! the counts. Operations run through [`crate::executor::EdgeExecutor`],
//! which reads the per-connection [`OperationBudget`] and [`TokenExpiry`]
//! from the connection's data.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::futures_util::{SinkExt as _, StreamExt as _, future};
use async_graphql::http::{WebSocket as GraphqlWebSocket, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket};

use crate::executor::EdgeExecutor;

/// The limits of one gateway's sockets.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Time a client has to send `connection_init`.
    pub init_timeout: Duration,
    /// Operations running at once on one connection.
    pub operations_per_connection: usize,
    /// Open connections per signed-in user.
    pub connections_per_user: usize,
}

/// Open connections per signed-in user, shared by all of a gateway's sockets.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounts {
    per_user: Arc<Mutex<HashMap<u64, usize>>>,
}

impl ConnectionCounts {
    /// A slot for one more connection of `user_id`, unless they already hold
    /// `max`; the slot is given back when dropped.
    pub fn acquire(&self, user_id: u64, max: usize) -> Option<ConnectionSlot> {
        let mut per_user = self.lock();
        let open = per_user.entry(user_id).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            user_id,
        })
    }

    /// Connections `user_id` holds open.
    pub fn open(&self, user_id: u64) -> usize {
        self.lock().get(&user_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, usize>> {
        self.per_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One open connection of a user ([`ConnectionCounts::acquire`]).
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: ConnectionCounts,
    user_id: u64,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_user = self.counts.lock();
        if let Some(open) = per_user.get_mut(&self.user_id) {
            *open -= 1;
            if *open == 0 {
                per_user.remove(&self.user_id);
            }
        }
    }
}

/// Operations running on one connection (in its connection data).
#[derive(Debug, Clone)]
pub struct OperationBudget {
    running: Arc<AtomicUsize>,
    max: usize,
}

impl OperationBudget {
    /// A budget of `max` operations at once.
    pub fn new(max: usize) -> Self {
        Self {
            running: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Room for one more operation, held until the slot is dropped (when
    /// the operation completes or the client stops it).
    pub fn try_acquire(&self) -> Option<OperationSlot> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < self.max).then_some(running + 1)
            })
            .ok()?;
        Some(OperationSlot(self.running.clone()))
    }

    /// The most operations at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// One running operation ([`OperationBudget::try_acquire`]).
#[derive(Debug)]
pub struct OperationSlot(Arc<AtomicUsize>);

impl Drop for OperationSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When a connection's token expires (in its connection data).
#[derive(Debug, Clone, Copy)]
pub struct TokenExpiry(pub tokio::time::Instant);

impl TokenExpiry {
    /// The instant of `exp` (seconds since the Unix epoch).
    pub fn at_unix_secs(exp: u64) -> Self {
        let now_secs = warble_mesh::time::now_ms() / 1000;
        Self(tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now_secs)))
    }
}

/// A value of type `T` in a connection's data.
pub fn connection_value<T: Send + Sync + 'static>(data: &Data) -> Option<&T> {
    data.get(&std::any::TypeId::of::<T>())
        .and_then(|value| value.downcast_ref::<T>())
}

/// Serves one upgraded socket until either side closes it. `on_init`
/// checks the `connection_init` payload and returns the connection's data.
pub async fn serve<OnInit, InitFuture>(
    socket: WebSocket,
    executor: EdgeExecutor,
    protocol: WebSocketProtocols,
    limits: WsLimits,
    on_init: OnInit,
) where
    OnInit: FnOnce(serde_json::Value) -> InitFuture + Send + 'static,
    InitFuture: Future<Output = async_graphql::Result<Data>> + Send + 'static,
{
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| future::ready(message.is_ok()))
        .filter_map(|message| {
            future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let initialized = Arc::new(AtomicBool::new(false));
    let mut connection_data = Data::default();
    connection_data.insert(OperationBudget::new(limits.operations_per_connection));
    let output = GraphqlWebSocket::new(executor, input, protocol)
        .connection_data(connection_data)
        .on_connection_init({
            let initialized = initialized.clone();
            move |payload| {
                initialized.store(true, Ordering::Release);
                on_init(payload)
            }
        });
    futures::pin_mut!(output);
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    futures::pin_mut!(init_deadline);
    loop {
        tokio::select! {
            message = output.next() => match message {
                Some(WsMessage::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let _ = sink.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
            () = &mut init_deadline, if !initialized.load(Ordering::Acquire) => {
                let _ = sink.send(close(4408, "Connection initialisation timeout")).await;
                break;
            }
        }
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_count_per_user_and_come_back_when_dropped() {
        let counts = ConnectionCounts::default();
        let first = counts.acquire(7, 2).unwrap();
        let second = counts.acquire(7, 2).unwrap();
        assert!(counts.acquire(7, 2).is_none());
        assert!(counts.acquire(8, 2).is_some(), "another user has their own");
        drop(first);
        assert_eq!(counts.open(7), 1);
        let _third = counts.acquire(7, 2).unwrap();
        drop(second);
        assert_eq!(counts.open(7), 1);
    }

    #[test]
    fn operation_slots_are_bounded_and_come_back_when_dropped() {
        let budget = OperationBudget::new(2);
        let one = budget.try_acquire().unwrap();
        let _two = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        drop(one);
        assert!(budget.try_acquire().is_some());
    }
}
