//! `MeshChannel` in process and over the network behave alike: the same
//! answer, the caller's trace context in the metadata, and a deadline that
//! ends a slow call with the same status.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::codegen::tokio_stream;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use warble_mesh::grpc::{MeshChannel, remote_channel, traced};

/// Answers SERVING when the call carried a traceparent (UNKNOWN otherwise),
/// after `delay`.
struct TracedHealth {
    delay: Duration,
}

#[tonic::async_trait]
impl Health for TracedHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        tokio::time::sleep(self.delay).await;
        let status = if request.metadata().contains_key("traceparent") {
            ServingStatus::Serving
        } else {
            ServingStatus::Unknown
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

/// The same service reached both ways, each with `timeout` per call.
async fn channels(delay: Duration, timeout: Duration) -> [(&'static str, MeshChannel); 2] {
    warble_mesh::telemetry::init_for_tests();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(TracedHealth { delay }))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let local = MeshChannel::Local {
        routes: Routes::new(HealthServer::new(TracedHealth { delay })),
        timeout,
    };
    let remote = remote_channel(&addr.to_string(), Duration::from_secs(3), timeout, None).unwrap();
    [("local", local), ("remote", remote)]
}

#[tokio::test]
async fn both_ways_answer_alike_and_carry_the_trace_context() {
    for (how, channel) in channels(Duration::ZERO, Duration::from_secs(5)).await {
        let span = tracing::info_span!("caller");
        let _entered = span.enter();
        let answer = HealthClient::new(traced(channel))
            .check(HealthCheckRequest::default())
            .await
            .unwrap_or_else(|status| panic!("{how}: {status}"))
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{how}");
    }
}

#[tokio::test]
async fn a_deadline_ends_a_slow_call_with_the_same_status_both_ways() {
    for (how, channel) in channels(Duration::from_secs(10), Duration::from_millis(200)).await {
        let started = Instant::now();
        let status = HealthClient::new(traced(channel))
            .check(HealthCheckRequest::default())
            .await
            .expect_err(how);
        assert_eq!(status.code(), Code::Cancelled, "{how}: {status}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{how}: the deadline did not end the call ({:?})",
            started.elapsed()
        );
    }
}
