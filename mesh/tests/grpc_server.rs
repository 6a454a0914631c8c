//! The gRPC bootstrap over real sockets: health and reflection are served,
//! shutdown flips health to NOT_SERVING, and the drain deadline bounds how
//! long a stuck call can hold the server open.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use warble_mesh::grpc::GrpcServer;

async fn start(
    drain: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    warble_mesh::telemetry::init_for_tests();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        GrpcServer::new(drain)
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, server)
}

async fn health(addr: std::net::SocketAddr) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

#[tokio::test]
async fn shutdown_reports_not_serving_then_drain_deadline_closes_stuck_streams() {
    let drain = Duration::from_millis(500);
    let (addr, stop, server) = start(drain).await;
    let mut client = health(addr).await;
    let serving = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    // A Watch stream never ends by itself: it stands for a stuck in-flight call.
    let mut watch = client
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    let stopping = Instant::now();
    stop.send(()).unwrap();
    // Watchers learn the server is going away before it closes.
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the drain deadline must stop the server")
        .unwrap();
    assert!(
        stopping.elapsed() >= drain,
        "stopped before the drain deadline: {:?}",
        stopping.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener must be closed"
    );
}

#[tokio::test]
async fn idle_server_stops_promptly_on_shutdown() {
    let (addr, stop, server) = start(Duration::from_secs(30)).await;
    health(addr)
        .await
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    let stopping = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "an idle server must not wait for the deadline"
    );
}
