//! A client that knows nothing of Warble's types can discover and probe
//! every service: reflection lists it and serves its descriptors, and
//! `grpc.health.v1.Health/Check` answers SERVING.

use prost::Message as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
use warble_tests::{TestStack, channel};

async fn reflect(addr: std::net::SocketAddr, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let requests = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let response: ServerReflectionResponse = responses.message().await.unwrap().unwrap();
    response.message_response.unwrap()
}

#[tokio::test]
async fn reflection_lists_and_describes_every_service() {
    let stack = TestStack::start().await;
    for (service, addr) in stack.endpoints() {
        let MessageResponse::ListServicesResponse(list) =
            reflect(addr, MessageRequest::ListServices(String::new())).await
        else {
            panic!("expected a service list from {addr}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&service), "{service} missing from {names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

        // The descriptor of the service itself is served, with its methods.
        let MessageResponse::FileDescriptorResponse(files) = reflect(
            addr,
            MessageRequest::FileContainingSymbol(service.to_owned()),
        )
        .await
        else {
            panic!("expected descriptors for {service}");
        };
        let (package, short_name) = service.rsplit_once('.').unwrap();
        let described = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .filter(|file| file.package() == package)
            .flat_map(|file| file.service)
            .find(|svc| svc.name() == short_name)
            .unwrap_or_else(|| panic!("{service} not described"));
        assert!(!described.method.is_empty());
    }
    stack.stop().await;
}

#[tokio::test]
async fn health_check_answers_serving_for_every_service() {
    let stack = TestStack::start().await;
    for (service, addr) in stack.endpoints() {
        let mut health = HealthClient::new(channel(addr).await);
        for name in ["", service] {
            let status = health
                .check(HealthCheckRequest {
                    service: name.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(
                status,
                ServingStatus::Serving as i32,
                "service `{name}` at {addr}"
            );
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "warble.nope.v1.Nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }
    stack.stop().await;
}
