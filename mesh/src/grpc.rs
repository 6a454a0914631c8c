//! gRPC server bootstrap shared by every service.
//!
//! A server runs on a listener the caller already bound (tests bind port 0)
//! and stops when a shutdown future resolves. Every server also answers
//! `grpc.health.v1.Health` and server reflection (v1 and v1alpha), so any
//! gRPC tool can discover and probe it. On shutdown it reports NOT_SERVING,
//! stops accepting, lets in-flight calls finish, and gives up on stragglers
//! after the drain deadline.
//!
//! Clients reach a server through a [`MeshChannel`]: over the network, or,
//! when caller and server share a process (the single-process dev stack),
//! straight into the server's routes. The in-process path skips TCP and
//! HTTP/2 but keeps everything a call means: protobuf encoding, the trace
//! context carried in metadata, the server span, the caller's deadline and
//! the same handlers, interceptors and status codes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer as _, Service};
use tracing::Instrument as _;

use crate::config::ConfigError;
use crate::metrics;
use crate::overload::InFlightLimitLayer;
use crate::rpc_metrics::{RpcMetricsLayer, component_of};
use crate::tls::{MeshTls, MeshTlsConfig, PeerPolicyLayer, PeerRules};

/// The `server.*` config section every gRPC service has.
///
/// Deserialized from the layered figment, where defaults are always merged
/// in first, so every key is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Address the gRPC server listens on.
    pub listen_addr: SocketAddr,
    /// Seconds in-flight calls get to finish after SIGTERM/SIGINT. Keep it
    /// below the pod's `terminationGracePeriodSeconds`.
    pub drain_timeout_secs: u64,
    /// Serve gRPC server reflection (what `grpcurl` and Postman use to list
    /// and describe the services). Off by default for a standalone service:
    /// it tells anyone who can reach the port the whole API; `warble dev`
    /// turns it on.
    pub reflection: bool,
    /// Mutual TLS for the calls this service serves and makes
    /// (`server.tls.*`; off by default, see [`crate::tls`]).
    pub tls: MeshTlsConfig,
    /// With `tls.enabled`: which peer identities may call which RPC, as
    /// `<rpc>=<peer>[,<peer>...]` rules separated by `;` (syntax in
    /// [`crate::tls`]). Each service's default admits only the gateway to
    /// its user-facing writes, an `admin` identity to bulk loads and
    /// internal writes, and any mesh peer to the rest. Ignored with TLS off.
    pub allow_peers: String,
    /// A second, plaintext address answering only `grpc.health.v1.Health`,
    /// for probes that cannot speak TLS (Kubernetes' gRPC probes) while
    /// `tls.enabled`; empty (the default) serves none.
    pub health_listen_addr: String,
    /// Where to serve `GET /metrics` (Prometheus text: RED metrics of
    /// every RPC and the service's own counters) over plain HTTP; empty
    /// (the default) serves none.
    pub metrics_listen_addr: String,
    /// Calls worked on at once; one more is refused at once with
    /// RESOURCE_EXHAUSTED instead of queueing (health checks excepted).
    /// 0 turns the limit off.
    pub max_in_flight: u32,
}

impl ServerConfig {
    /// Defaults for a service listening on `port` on all interfaces, whose
    /// RPCs any mesh peer may call ([`ServerConfig::allowing`] narrows it).
    pub fn on_port(port: u16) -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], port)),
            drain_timeout_secs: 10,
            reflection: false,
            tls: MeshTlsConfig::default(),
            allow_peers: "*=*".to_owned(),
            health_listen_addr: String::new(),
            metrics_listen_addr: String::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// These defaults with `rules` as the default `allow_peers`.
    pub fn allowing(mut self, rules: &str) -> Self {
        self.allow_peers = rules.to_owned();
        self
    }

    /// Validates the section; `prefix` is where it sits in the service's config.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.drain_timeout_secs == 0 || self.drain_timeout_secs > 3600 {
            return Err(ConfigError::invalid(
                &format!("{prefix}.drain_timeout_secs"),
                "must be between 1 and 3600",
            ));
        }
        self.tls.validate(&format!("{prefix}.tls"))?;
        PeerRules::parse(&self.allow_peers, &format!("{prefix}.allow_peers"))?;
        let health = self.health_addr(prefix)?;
        let metrics = self.metrics_addr(prefix)?;
        if health.is_some() && health == metrics {
            return Err(ConfigError::invalid(
                &format!("{prefix}.metrics_listen_addr"),
                "must differ from health_listen_addr",
            ));
        }
        Ok(())
    }

    /// `health_listen_addr`, parsed (`None` when empty).
    fn health_addr(&self, prefix: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.side_addr(
            &self.health_listen_addr,
            &format!("{prefix}.health_listen_addr"),
        )
    }

    /// `metrics_listen_addr`, parsed (`None` when empty).
    fn metrics_addr(&self, prefix: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.side_addr(
            &self.metrics_listen_addr,
            &format!("{prefix}.metrics_listen_addr"),
        )
    }

    /// An optional address beside `listen_addr`, parsed; `key` names it in errors.
    fn side_addr(&self, addr: &str, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let addr = addr.trim();
        if addr.is_empty() {
            return Ok(None);
        }
        let parsed: SocketAddr = addr.parse().map_err(|_| {
            ConfigError::invalid(key, format!("`{addr}` is not an ip:port address"))
        })?;
        if parsed == self.listen_addr {
            return Err(ConfigError::invalid(key, "must differ from listen_addr"));
        }
        Ok(Some(parsed))
    }

    /// The mesh certificate, loaded, or `None` with TLS off: for the
    /// server and for the channels to the services this one calls.
    pub fn mesh_tls(&self) -> Result<Option<MeshTls>, ConfigError> {
        self.tls.load("server.tls")
    }

    /// The drain deadline as a `Duration`.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// Default `server.max_in_flight`: far above what a healthy service holds
/// at once (a call takes a millisecond or two, so a few dozen are in
/// progress at tens of thousands per second), yet low enough that a call
/// admitted behind a full queue still meets a two-second deadline.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 512;

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The plaintext health listener could not bind.
    #[error("health listener: {0}")]
    HealthListener(String),
    /// The metrics listener could not bind.
    #[error("metrics listener: {0}")]
    MetricsListener(String),
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A gRPC server under construction: add services, then [`GrpcServer::serve`].
pub struct GrpcServer {
    routes: Routes,
    service_names: Vec<&'static str>,
    /// Services that start NOT_SERVING until their owner reports them ready.
    not_ready: Vec<&'static str>,
    drain_timeout: Duration,
    health: HealthReporter,
    reflection: bool,
    /// Mutual TLS and the peer rules it enforces (`None`: plaintext, open).
    tls: Option<(MeshTls, PeerRules)>,
    /// The health service alone, for the plaintext health listener.
    health_routes: Routes,
    /// Where that listener binds (`server.health_listen_addr`).
    health_addr: Option<SocketAddr>,
    /// Where `/metrics` is served (`server.metrics_listen_addr`).
    metrics_addr: Option<SocketAddr>,
    /// The in-flight limit (`server.max_in_flight`; none in process).
    in_flight: InFlightLimitLayer,
}

impl GrpcServer {
    /// A server with only the health service, draining for at most `drain_timeout`.
    pub fn new(drain_timeout: Duration) -> Self {
        // Health is routed from the start so in-process channels taken
        // before `serve` answer health checks too (the overall status ""
        // starts SERVING).
        let (health, health_service) = tonic_health::server::health_reporter();
        Self {
            health_routes: Routes::default().add_service(health_service.clone()),
            health_addr: None,
            metrics_addr: None,
            in_flight: InFlightLimitLayer::default(),
            routes: Routes::default().add_service(health_service),
            service_names: Vec::new(),
            not_ready: Vec::new(),
            drain_timeout,
            health,
            reflection: true,
            tls: None,
        }
    }

    /// Applies a standalone service's `server.*` section: reflection, and
    /// with `server.tls.enabled`, mutual TLS with its peer rules.
    pub fn with_server_config(mut self, config: &ServerConfig) -> Result<Self, ConfigError> {
        self.reflection = config.reflection;
        self.health_addr = config.health_addr("server")?;
        self.metrics_addr = config.metrics_addr("server")?;
        self.in_flight = InFlightLimitLayer::new(config.max_in_flight as usize);
        self.tls = match config.mesh_tls()? {
            Some(tls) => Some((
                tls,
                PeerRules::parse(&config.allow_peers, "server.allow_peers")?,
            )),
            None => None,
        };
        Ok(self)
    }

    /// Whether to serve reflection (on unless turned off here; standalone
    /// services pass `server.reflection`, off by default).
    pub fn with_reflection(mut self, reflection: bool) -> Self {
        self.reflection = reflection;
        self
    }

    /// A channel that calls this server's services (added so far) in this
    /// process, with `request_timeout` on every call; see [`MeshChannel`].
    pub fn local_channel(&self, request_timeout: Duration) -> MeshChannel {
        MeshChannel::Local {
            routes: self.routes.clone(),
            timeout: request_timeout,
        }
    }

    /// Adds a service; its health status is reported under its full name.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Like [`GrpcServer::add_service`], but the service's health starts
    /// NOT_SERVING (it still answers calls): its owner turns it SERVING
    /// through [`GrpcServer::health_reporter`] once it is ready, e.g. an
    /// index that has caught up. Readiness probes name the service.
    pub fn add_service_not_ready<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.not_ready.push(S::NAME);
        self.add_service(service)
    }

    /// Calls this server refused for its in-flight limit so far (a
    /// handle read by the service's status and metrics).
    pub fn in_flight_limit(&self) -> InFlightLimitLayer {
        self.in_flight.clone()
    }

    /// The handle that sets this server's health statuses.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let local_addr = listener.local_addr().ok();
        let health = self.health;
        for name in &self.service_names {
            let status = if self.not_ready.contains(name) {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            };
            health.set_service_status(*name, status).await;
        }
        let mut routes = self.routes;
        if self.reflection {
            let reflection_v1 = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(warble_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1()?;
            let reflection_v1alpha = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(warble_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1alpha()?;
            routes = routes
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha);
        }

        if let Some(first) = self.service_names.first() {
            let shed = self.in_flight.clone();
            metrics::counter_fn(
                "warble_grpc_server_requests_shed_total",
                "gRPC calls refused at once for server.max_in_flight.",
                &[("service", &component_of(first))],
                move || shed.shed(),
            );
        }

        // The plaintext health and metrics listeners, bound before serving so
        // a port in use fails the start; they stop when the main server
        // starts draining.
        let (draining, mut draining_rx) = tokio::sync::watch::channel(false);
        let metrics_server = match self.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(|error| {
                    ServeError::MetricsListener(format!("cannot listen on {addr}: {error}"))
                })?;
                let app = axum::Router::new()
                    .route("/metrics", axum::routing::get(metrics::serve_metrics));
                let mut stopped = draining_rx.clone();
                tracing::info!(%addr, "metrics listener up");
                Some(tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stopped.wait_for(|draining| *draining).await;
                    };
                    if let Err(error) = axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                    {
                        tracing::warn!(%error, "metrics listener failed");
                    }
                }))
            }
            None => None,
        };
        let health_server = match self.health_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(|error| {
                    ServeError::HealthListener(format!("cannot listen on {addr}: {error}"))
                })?;
                let server = Server::builder()
                    .add_routes(self.health_routes)
                    .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
                        let _ = draining_rx.wait_for(|draining| *draining).await;
                    });
                tracing::info!(%addr, "plaintext health listener up");
                Some(tokio::spawn(server))
            }
            None => None,
        };

        let (drain_started, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
        let service_names = self.service_names.clone();
        let stop_accepting = async move {
            shutdown.await;
            // Report NOT_SERVING first so load balancers stop sending new calls.
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for name in service_names {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!("draining in-flight calls");
            let _ = draining.send(true);
            let _ = drain_started.send(());
        };

        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (builder, peer_rules) = match self.tls {
            Some((tls, rules)) => (
                Server::builder().tls_config(tls.server_config())?,
                Some(rules),
            ),
            None => (Server::builder(), None),
        };
        let mutual_tls = peer_rules.is_some();
        let server = builder
            .layer(
                tower_http::trace::TraceLayer::new_for_grpc()
                    .make_span_with(
                        crate::telemetry::grpc_server_span as fn(&Request<Body>) -> tracing::Span,
                    )
                    // Non-OK statuses are mostly the caller's mistakes (INVALID_ARGUMENT,
                    // NOT_FOUND); real server faults are logged where they happen
                    // (`status::internal`), so the trace layer keeps failures at DEBUG.
                    .on_failure(
                        tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                    ),
            )
            // Inside the trace layer, so a refused call is traced like any other,
            // and outside the refusals, so they are counted with their codes;
            // a peer that may not call is refused before it takes a slot.
            .layer(RpcMetricsLayer)
            .layer(PeerPolicyLayer::new(peer_rules))
            .layer(self.in_flight.clone())
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop_accepting);
        tracing::info!(addr = ?local_addr, services = ?self.service_names, mutual_tls, "gRPC server listening");

        let drain_deadline = async move {
            if drain_started_rx.await.is_ok() {
                tokio::time::sleep(self.drain_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = server => result?,
            () = drain_deadline => {
                tracing::warn!(timeout = ?self.drain_timeout, "drain deadline passed; dropping remaining calls");
            }
        }
        if let Some(health_server) = health_server {
            health_server.abort();
        }
        if let Some(metrics_server) = metrics_server {
            metrics_server.abort();
        }
        tracing::info!(addr = ?local_addr, "gRPC server stopped");
        Ok(())
    }
}

impl crate::scaffold::Serve for GrpcServer {
    async fn serve(
        self,
        listener: TcpListener,
        shutdown: crate::scaffold::Shutdown,
    ) -> anyhow::Result<()> {
        Ok(GrpcServer::serve(self, listener, shutdown).await?)
    }
}

/// Errors a [`MeshChannel`] call can fail with (tonic maps them to statuses).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a client's calls go (cheap to clone).
#[derive(Clone)]
pub enum MeshChannel {
    /// Over the network (HTTP/2), with the endpoint's own deadline.
    Remote(tonic::transport::Channel),
    /// Into a server's routes in this process ([`GrpcServer::local_channel`]).
    Local {
        /// The server's services.
        routes: Routes,
        /// Deadline of every call, as a remote channel's endpoint would apply it.
        timeout: Duration,
    },
}

impl std::fmt::Debug for MeshChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote(channel) => f.debug_tuple("Remote").field(channel).finish(),
            Self::Local { timeout, .. } => f
                .debug_struct("Local")
                .field("timeout", timeout)
                .finish_non_exhaustive(),
        }
    }
}

impl Service<Request<Body>> for MeshChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Remote(channel) => channel.poll_ready(cx).map_err(Into::into),
            Self::Local { routes, .. } => {
                Service::<Request<Body>>::poll_ready(routes, cx).map_err(|never| match never {})
            }
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self {
            Self::Remote(channel) => {
                let response = channel.call(request);
                Box::pin(async move { response.await.map_err(Into::into) })
            }
            Self::Local { routes, timeout } => {
                // The span a network server would open, parented by the
                // caller's traceparent, so traces look the same either way.
                let span = crate::telemetry::grpc_server_span(&request);
                let response = RpcMetricsLayer
                    .layer(routes.clone())
                    .call(request)
                    .instrument(span);
                let timeout = *timeout;
                Box::pin(async move {
                    match tokio::time::timeout(timeout, response).await {
                        Ok(Ok(response)) => Ok(response),
                        Ok(Err(never)) => match never {},
                        // What a remote endpoint's deadline reports, so callers
                        // see one status for a timeout whichever way they call.
                        Err(_) => Err(Box::new(tonic::TimeoutExpired(())) as BoxError),
                    }
                })
            }
        }
    }
}

/// A client channel that sends the caller's trace context on every call.
pub type TracedChannel = tonic::service::interceptor::InterceptedService<
    MeshChannel,
    crate::telemetry::TraceContextInterceptor,
>;

/// `channel` sending the caller's trace context on every call.
pub fn traced(channel: MeshChannel) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(
        channel,
        crate::telemetry::TraceContextInterceptor,
    )
}

/// A network channel to `addr` (`host:port` or a URI) that connects lazily,
/// so services can start before their dependencies are up, with a deadline
/// on every call.
///
/// With `tls`, the channel speaks mutual TLS: it trusts only the mesh CA,
/// presents this process's certificate, and expects the server's
/// certificate to name the host in `addr`.
pub fn remote_channel(
    addr: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
    tls: Option<&MeshTls>,
) -> Result<MeshChannel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = match addr.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{addr}"),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .timeout(request_timeout);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.client_config())?;
    }
    Ok(MeshChannel::Remote(endpoint.connect_lazy()))
}

/// A traced network channel to `addr` ([`remote_channel`], 5 s to connect).
pub fn traced_channel(
    addr: &str,
    request_timeout: Duration,
    tls: Option<&MeshTls>,
) -> Result<TracedChannel, tonic::transport::Error> {
    Ok(traced(remote_channel(
        addr,
        Duration::from_secs(5),
        request_timeout,
        tls,
    )?))
}
