//! The frontend cases against the services as separate processes, with
//! Redis as timeline cache and event stream: the production topology.

use warble_tests::processes::ProcessStack;

frontend_cases! { #[tokio::test(flavor = "multi_thread")] ProcessStack::start }

/// A standalone service serves no reflection unless told to
/// (`server.reflection`): it would describe the whole API to anyone who
/// reaches the port. Health checks still answer.
#[tokio::test(flavor = "multi_thread")]
async fn standalone_services_serve_no_reflection_by_default() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let Some(stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let channel = warble_tests::channel(stack.fanout_addr()).await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");
    let requests = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let reflected = ServerReflectionClient::new(channel)
        .server_reflection_info(requests)
        .await;
    assert_eq!(
        reflected.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unimplemented
    );
    stack.stop().await;
}
