//! Mutual TLS between services over real sockets, with certificates from a
//! test CA: who may connect, and which peer may call which RPC.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use warble_mesh::grpc::{GrpcServer, ServerConfig, remote_channel};
use warble_mesh::tls::{MeshTls, MeshTlsConfig};
use warble_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use warble_proto::fanout::v1::fanout_service_server::{FanoutService, FanoutServiceServer};
use warble_proto::fanout::v1::{GetStatusRequest, GetStatusResponse};
use warble_testkit::tls::{IssuedCert, MeshPki};

/// A service to call: answers GetStatus with a recognisable lag.
struct Answering;

#[tonic::async_trait]
impl FanoutService for Answering {
    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        Ok(Response::new(GetStatusResponse {
            consumer_lag: 42,
            ..GetStatusResponse::default()
        }))
    }
}

fn config(cert: &IssuedCert) -> MeshTlsConfig {
    MeshTlsConfig {
        enabled: true,
        cert_file: cert.cert_file.display().to_string(),
        key_file: cert.key_file.display().to_string(),
        ca_file: cert.ca_file.display().to_string(),
    }
}

fn client_tls(cert: &IssuedCert) -> MeshTls {
    config(cert).load("test").unwrap().unwrap()
}

/// Serves [`Answering`] with mutual TLS and `rules`, until the sender drops.
async fn serve(pki: &MeshPki, rules: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    warble_mesh::telemetry::init_for_tests();
    let mut server_config = ServerConfig::on_port(0).allowing(rules);
    server_config.tls = config(&pki.issue("fanout-svc"));
    server_config.validate("server").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = GrpcServer::new(Duration::from_secs(1))
        .with_server_config(&server_config)
        .unwrap()
        .add_service(FanoutServiceServer::new(Answering));
    tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

async fn get_status(addr: SocketAddr, tls: Option<&MeshTls>) -> Result<u64, Status> {
    let channel = remote_channel(
        &addr.to_string(),
        Duration::from_secs(3),
        Duration::from_secs(3),
        tls,
    )
    .unwrap();
    let response = FanoutServiceClient::new(channel)
        .get_status(GetStatusRequest {})
        .await?;
    Ok(response.into_inner().consumer_lag)
}

#[tokio::test]
async fn a_peer_the_rules_admit_is_served_and_any_other_is_permission_denied() {
    let pki = MeshPki::new("test mesh CA");
    let (addr, _stop) = serve(
        &pki,
        "warble.fanout.v1.FanoutService/GetStatus=gateway,admin; *=*",
    )
    .await;
    for admitted in ["gateway", "admin"] {
        let tls = client_tls(&pki.issue(admitted));
        assert_eq!(
            get_status(addr, Some(&tls)).await.unwrap(),
            42,
            "{admitted}"
        );
    }
    let refused = get_status(addr, Some(&client_tls(&pki.issue("search-svc"))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("`search-svc`")
            && refused
                .message()
                .contains("warble.fanout.v1.FanoutService/GetStatus"),
        "{refused:?}"
    );
    // A certificate from the mesh CA that names no identity connects, but
    // only `*` rules admit it.
    let anonymous = client_tls(&pki.issue_without_identity("anonymous"));
    let refused = get_status(addr, Some(&anonymous)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("names no spiffe:// identity"));
    // Health checks stay open to every mesh peer.
    let channel = remote_channel(
        &addr.to_string(),
        Duration::from_secs(3),
        Duration::from_secs(3),
        Some(&anonymous),
    )
    .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");
}

#[tokio::test]
async fn only_callers_with_a_certificate_from_the_mesh_ca_can_call() {
    let pki = MeshPki::new("test mesh CA");
    let (addr, _stop) = serve(&pki, "*=*").await;
    assert_eq!(
        get_status(addr, Some(&client_tls(&pki.issue("gateway"))))
            .await
            .unwrap(),
        42
    );
    // Plaintext.
    assert!(get_status(addr, None).await.is_err());
    // TLS, trusting the mesh CA, but presenting no certificate.
    let ca = std::fs::read(pki.ca_file()).unwrap();
    let no_identity = tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca)),
        )
        .unwrap()
        .connect_lazy();
    let refused = FanoutServiceClient::new(no_identity)
        .get_status(GetStatusRequest {})
        .await;
    assert!(
        refused.is_err(),
        "a caller without a certificate was served"
    );
    // A certificate (for the same name) from another CA.
    let other_ca = MeshPki::new("another CA");
    let stranger = other_ca.issue("gateway");
    let foreign = tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
                .identity(tonic::transport::Identity::from_pem(
                    std::fs::read(&stranger.cert_file).unwrap(),
                    std::fs::read(&stranger.key_file).unwrap(),
                )),
        )
        .unwrap()
        .connect_lazy();
    let refused = FanoutServiceClient::new(foreign)
        .get_status(GetStatusRequest {})
        .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
    // And the client checks the server: a mesh client of the other CA
    // refuses this server's certificate.
    assert!(
        get_status(addr, Some(&client_tls(&stranger)))
            .await
            .is_err()
    );
}

#[test]
fn unusable_certificate_files_fail_validation_naming_the_key() {
    let pki = MeshPki::new("test mesh CA");
    let gateway = pki.issue("gateway");
    let other = pki.issue("other");
    // A key that is not the certificate's.
    let mismatched = MeshTlsConfig {
        key_file: other.key_file.display().to_string(),
        ..config(&gateway)
    };
    let error = mismatched.validate("server.tls").unwrap_err().to_string();
    assert!(error.contains("server.tls.cert_file"), "{error}");
    // A CA file that holds a key, not a certificate.
    let not_a_ca = MeshTlsConfig {
        ca_file: gateway.key_file.display().to_string(),
        ..config(&gateway)
    };
    let error = not_a_ca.validate("mesh_tls").unwrap_err().to_string();
    assert!(error.contains("mesh_tls.ca_file"), "{error}");
    assert!(config(&gateway).validate("server.tls").is_ok());
}

/// Kubernetes' gRPC probes speak plaintext: with mutual TLS on, the health
/// service alone is also served on `server.health_listen_addr`, sharing the
/// statuses the service reports (a not-ready service reads NOT_SERVING
/// there too), and nothing else is served on it.
#[tokio::test]
async fn the_plaintext_health_listener_answers_probes_and_nothing_else() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    warble_mesh::telemetry::init_for_tests();
    let pki = MeshPki::new("test mesh CA");
    let health_addr: SocketAddr = ([127, 0, 0, 1], warble_testkit::unused_port()).into();
    let mut server_config = ServerConfig::on_port(0);
    server_config.tls = config(&pki.issue("fanout-svc"));
    server_config.health_listen_addr = health_addr.to_string();
    server_config.validate("server").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = GrpcServer::new(Duration::from_secs(1))
        .with_server_config(&server_config)
        .unwrap()
        .add_service_not_ready(FanoutServiceServer::new(Answering));
    let reporter = server.health_reporter();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://{health_addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the health listener never came up: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let status = |service: &str| {
        let mut client = HealthClient::new(channel.clone());
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        async move { client.check(request).await.unwrap().into_inner().status }
    };
    let fanout = "warble.fanout.v1.FanoutService";
    assert_eq!(status("").await, ServingStatus::Serving as i32);
    assert_eq!(status(fanout).await, ServingStatus::NotServing as i32);
    reporter
        .set_serving::<FanoutServiceServer<Answering>>()
        .await;
    assert_eq!(status(fanout).await, ServingStatus::Serving as i32);
    let not_served = FanoutServiceClient::new(channel)
        .get_status(GetStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(not_served.code(), tonic::Code::Unimplemented);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(health_addr).await.is_err(),
        "the health listener outlived the server"
    );
}
