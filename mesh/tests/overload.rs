//! The in-flight limit over real sockets: calls past `server.max_in_flight`
//! are refused at once with RESOURCE_EXHAUSTED, health checks never are, and
//! capacity comes back as calls finish.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use warble_mesh::grpc::{GrpcServer, ServerConfig};
use warble_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use warble_proto::fanout::v1::fanout_service_server::{FanoutService, FanoutServiceServer};
use warble_proto::fanout::v1::{GetStatusRequest, GetStatusResponse};

/// Answers each call once the test lets one through.
struct Gated {
    gate: Arc<Semaphore>,
    entered: Arc<Semaphore>,
}

#[tonic::async_trait]
impl FanoutService for Gated {
    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        self.entered.add_permits(1);
        self.gate.acquire().await.expect("open gate").forget();
        Ok(Response::new(GetStatusResponse::default()))
    }
}

#[tokio::test]
async fn calls_past_the_in_flight_limit_are_refused_at_once_and_health_never_is() {
    warble_mesh::telemetry::init_for_tests();
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(Semaphore::new(0));
    let mut config = ServerConfig::on_port(0);
    config.max_in_flight = 2;
    config.validate("server").unwrap();
    let server = GrpcServer::new(Duration::from_secs(1))
        .with_server_config(&config)
        .unwrap()
        .add_service(FanoutServiceServer::new(Gated {
            gate: gate.clone(),
            entered: entered.clone(),
        }));
    let limit = server.in_flight_limit();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let client = FanoutServiceClient::new(channel.clone());

    // Two calls take both slots and wait inside the handler.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.get_status(GetStatusRequest {}).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), entered.acquire_many(2))
        .await
        .expect("both calls reached the handler")
        .unwrap()
        .forget();

    let refused = client
        .clone()
        .get_status(GetStatusRequest {})
        .await
        .expect_err("a third call is over the limit");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("server.max_in_flight"),
        "{refused:?}"
    );
    assert_eq!(limit.shed(), 1);
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "health checks are never shed: {health:?}");

    // The held calls finish, and their slots serve again.
    gate.add_permits(2);
    for call in held {
        assert!(call.await.unwrap().is_ok());
    }
    gate.add_permits(1);
    assert!(client.clone().get_status(GetStatusRequest {}).await.is_ok());
    assert_eq!(limit.shed(), 1);
}
