//! A server under test on a port of its own, stopped as SIGTERM would stop
//! it: for tests that start a service's real gRPC server and talk to it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The future a served server stops on.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A server running in a task of the test's runtime (see [`serve_on_a_free_port`]).
#[derive(Debug)]
pub struct Served<T> {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

/// Binds `127.0.0.1:0` and spawns `serve(listener, shutdown)`. The listener
/// itself is handed over, so no other process can take the port between
/// choosing and serving it.
pub async fn serve_on_a_free_port<F, Fut>(serve: F) -> Served<Fut::Output>
where
    F: FnOnce(TcpListener, Shutdown) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound listener's address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        Box::pin(async {
            let _ = stopped.await;
        }),
    ));
    Served { addr, stop, task }
}

impl<T> Served<T> {
    /// `http://127.0.0.1:<port>`, for a gRPC client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resolves the shutdown future and waits until the server has drained,
    /// returning what it returned.
    pub async fn stop(self) -> T {
        let _ = self.stop.send(());
        self.task.await.expect("the server task panicked")
    }
}
