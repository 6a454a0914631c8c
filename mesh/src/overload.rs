//! Bounding the calls a server works on at once, and shedding the excess
//! early.
//!
//! A server past its capacity that keeps accepting calls only queues them:
//! every call waits longer, deadlines pass while work is still done for
//! them, and latency collapses for everyone. With `server.max_in_flight`, a
//! call arriving while that many are in progress is refused at once with
//! RESOURCE_EXHAUSTED (a clear, retryable code, with the limit in the
//! message), so the admitted calls keep their latency and callers back off.
//! Health checks are never refused: probes must see a busy server as alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt as _};
use http::Request;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::{Layer, Service};

/// Calls no limit refuses: health checks (see the module docs).
const NEVER_SHED_PREFIX: &str = "/grpc.health.v1.Health/";

/// The shared state of one server's limit: the permits and what was shed.
#[derive(Debug)]
struct Limit {
    permits: Arc<Semaphore>,
    max: usize,
    shed: AtomicU64,
}

/// The tower layer enforcing a server's in-flight limit (a pass-through
/// without one).
#[derive(Debug, Clone, Default)]
pub struct InFlightLimitLayer {
    limit: Option<Arc<Limit>>,
}

impl InFlightLimitLayer {
    /// At most `max` calls in progress at once; `0` means no limit.
    pub fn new(max: usize) -> Self {
        Self {
            limit: (max > 0).then(|| {
                Arc::new(Limit {
                    permits: Arc::new(Semaphore::new(max)),
                    max,
                    shed: AtomicU64::new(0),
                })
            }),
        }
    }

    /// Calls refused so far.
    pub fn shed(&self) -> u64 {
        self.limit
            .as_ref()
            .map_or(0, |limit| limit.shed.load(Ordering::Relaxed))
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            limit: self.limit.clone(),
        }
    }
}

/// See [`InFlightLimitLayer`].
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    limit: Option<Arc<Limit>>,
}

impl<S> Service<Request<Body>> for InFlightLimit<S>
where
    S: Service<Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(limit) = &self.limit else {
            return self.inner.call(request).boxed();
        };
        if request.uri().path().starts_with(NEVER_SHED_PREFIX) {
            return self.inner.call(request).boxed();
        }
        match limit.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let response = self.inner.call(request);
                async move {
                    let response = response.await;
                    // Held until the handler has answered (a stream's
                    // messages may still be flowing; its work is done).
                    drop(permit);
                    response
                }
                .boxed()
            }
            Err(_) => {
                limit.shed.fetch_add(1, Ordering::Relaxed);
                let refusal = tonic::Status::resource_exhausted(format!(
                    "server busy: {} calls already in progress (server.max_in_flight); \
                     retry with backoff",
                    limit.max
                ));
                futures::future::ready(Ok(refusal.into_http())).boxed()
            }
        }
    }
}
