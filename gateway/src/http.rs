//! The HTTP layer: a thin axum router around the schema.
//!
//! - `POST /graphql`: queries and mutations (`Authorization: Bearer <JWT>`).
//!   One operation per request: a JSON array (a batch) is refused. A JSON
//!   body is bounded by `limits.max_body_bytes`; an upload (`uploadMedia`)
//!   is a `multipart/form-data` request (the GraphQL multipart request
//!   spec) of one file, from a signed-in viewer only, bounded by
//!   `limits.max_upload_bytes`.
//! - `GET /graphql?query=...`: queries only (GraphQL over HTTP); a mutation
//!   sent by GET is refused with 405, since GET must be safe to repeat.
//! - `GET /graphql` upgraded to a WebSocket: subscriptions
//!   (`graphql-transport-ws`, token in the `connection_init` payload as
//!   `Authorization` or `authToken`); otherwise GraphiQL when enabled.
//!
//! Responses are `application/graphql-response+json`: a request that fails
//! to parse, to be admitted or to validate is answered 400 (413 when the
//! body is over its limit; 401 for an upload sent without a token),
//! anything that executed 200. Every response carries the usual security
//! headers (a media file its own `Cache-Control`), and CORS headers for
//! the origins in `cors_allowed_origins`.
//! - `/healthz` (process alive), `/readyz` (downstreams answer health
//!   checks), `/metrics` (Prometheus text).
//! - `GET /media/{id}/{variant}`: media files, streamed from media-svc
//!   ([`crate::media_route`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource, MultipartOptions, WebSocketProtocols,
};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor as _, ParseRequestError};
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequestParts as _, Path, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::{StreamExt as _, TryStreamExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::identities::{Caller, REGISTER_FIRST};
use crate::auth::{AuthError, Authenticator, Bearer};
use crate::error::{ErrorCode, gql_error};
use crate::executor::{EdgeExecutor, failed_before_execution};
use crate::loaders::Loaders;
use crate::proxies::TrustedProxies;
use crate::rate_limit::{Decision, Rate};
use crate::resolvers::{ClientAddr, GatewayState};
use crate::websocket::{self, ConnectionCounts, TokenExpiry, WsLimits};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Runs every GraphQL request.
    pub executor: EdgeExecutor,
    /// Shared gateway state.
    pub state: Arc<GatewayState>,
    /// Serve GraphiQL on `GET /graphql`.
    pub graphiql: bool,
    /// WebSocket limits and the connections open per user.
    pub ws: WsSettings,
    /// Requests per client (user, or address when signed out).
    pub query_rate: Rate,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub proxies: TrustedProxies,
    /// Largest request bodies.
    pub body_limits: BodyLimits,
    /// GraphQL HTTP requests in progress, and those refused for it.
    pub in_flight: InFlight,
}

/// The bound on GraphQL HTTP requests worked on at once: adaptive, up to
/// `limits.max_in_flight_requests` ([`crate::overload`]). Past it a request
/// is refused at once (503 with `Retry-After`, code `RATE_LIMITED`): an
/// overloaded gateway that queued everything would make every request
/// slow, and the deadlines of the calls behind it would pass while work is
/// still done for them. Uploads and WebSockets have their own limits.
#[derive(Debug, Clone)]
pub struct InFlight {
    limit: crate::overload::AdaptiveLimit,
}

impl InFlight {
    /// At most `max` requests at once; fewer while latency says so when `adaptive`.
    pub fn new(max: usize, adaptive: bool) -> Self {
        Self {
            limit: if adaptive {
                crate::overload::AdaptiveLimit::new(max)
            } else {
                crate::overload::AdaptiveLimit::fixed(max)
            },
        }
    }

    /// A slot for one request, or `None` (counted): send [`InFlight::busy`].
    fn admit(&self) -> Option<crate::overload::Slot> {
        self.limit.admit()
    }

    /// The refusal of a request that found no slot.
    fn busy() -> Response {
        let error = crate::error::rate_limited(
            "the gateway is at capacity: retry shortly",
            std::time::Duration::from_secs(1),
        );
        let response =
            async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
        let mut http = (
            StatusCode::SERVICE_UNAVAILABLE,
            GraphQLResponse::from(response),
        )
            .into_response();
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
        http
    }

    /// Requests refused so far.
    pub fn shed(&self) -> u64 {
        self.limit.shed()
    }

    /// The bound now, and its ceiling.
    pub fn bounds(&self) -> (usize, usize) {
        (self.limit.limit(), self.limit.max())
    }
}

/// Largest request bodies, by kind, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// A JSON GraphQL request (`limits.max_body_bytes`).
    pub json_bytes: usize,
    /// A multipart upload, its file and the request together
    /// (`limits.max_upload_bytes`).
    pub upload_bytes: usize,
}

/// The WebSocket side of [`AppState`].
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Largest message (and frame) a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Per-connection limits.
    pub limits: WsLimits,
    /// Connections open per user, across this gateway's sockets.
    pub connections: ConnectionCounts,
}

/// The HTTP settings the router applies.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Origins browsers may call from (`*` for any); empty sends no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

/// Headers every response carries unless the handler set them: no MIME
/// sniffing, no framing (clickjacking), no referrer leaking URLs, and no
/// caching of responses that hold one viewer's data.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
/// Only `POST /graphql` reads a body, within [`AppState::body_limits`]
/// (which depend on the body's type).
pub fn router(app: AppState, options: &HttpOptions) -> Router {
    let mut router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/media/{id}/{variant}", get(media_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app);
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if let Some(cors) = cors_layer(&options.cors_allowed_origins) {
        router = router.layer(cors);
    }
    router
}

/// CORS for the allow-listed origins (validated by the config), or none.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Why a request body is not a GraphQL request, answered as a GraphQL
/// error with a stable code instead of async-graphql's debug text.
enum BodyRejection {
    /// Over the limit of its kind (413).
    TooLarge(BodyKind),
    /// Not a GraphQL request of its kind (400), or, for an upload, a file
    /// the gateway could not spool (500).
    Unreadable(BodyKind, ParseRequestError),
    /// An upload of more than one file.
    TooManyFiles,
}

/// What a `POST /graphql` body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// A JSON request.
    Json,
    /// A multipart upload.
    Upload,
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::TooLarge(BodyKind::Json) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large".to_owned(),
            ),
            Self::TooLarge(BodyKind::Upload) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the upload is too large for this gateway: send a smaller file".to_owned(),
            ),
            Self::TooManyFiles => (
                StatusCode::BAD_REQUEST,
                "upload one file per request".to_owned(),
            ),
            Self::Unreadable(_, ParseRequestError::UnsupportedBatch) => (
                StatusCode::BAD_REQUEST,
                "batched requests (a JSON array) are not accepted: send one operation per request"
                    .to_owned(),
            ),
            // Only spooling the file to disk does I/O of the gateway's own.
            Self::Unreadable(BodyKind::Upload, ParseRequestError::Io(error)) => {
                let status = warble_mesh::status::internal(error);
                return graphql_error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    status.message(),
                );
            }
            Self::Unreadable(BodyKind::Upload, _) => (
                StatusCode::BAD_REQUEST,
                "the upload is not a GraphQL multipart request: send the parts `operations` \
                 (the JSON request, the file's variable null), `map` (`{\"0\": [\"variables.file\"]}`) \
                 and one file part (`0`), in that order"
                    .to_owned(),
            ),
            Self::Unreadable(BodyKind::Json, _) => (
                StatusCode::BAD_REQUEST,
                "the request is not a GraphQL request: send JSON with a `query` string".to_owned(),
            ),
        };
        graphql_error_response(status, ErrorCode::BadUserInput, &message)
    }
}

/// Whether a `Content-Type` is multipart (an upload).
fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..10)
        .is_some_and(|start| start.eq_ignore_ascii_case("multipart/"))
}

/// Reads a GraphQL request of `kind` from `body`, refusing it once it
/// passes `limit` bytes, or at once when its `Content-Length` says it will.
/// An upload's file is spooled to a temporary file by async-graphql (at
/// most one file, each part within the limit).
async fn receive(
    headers: &HeaderMap,
    body: Body,
    kind: BodyKind,
    limit: usize,
) -> Result<async_graphql::Request, BodyRejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyRejection::TooLarge(kind));
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let reader = limited(body, limit, exceeded.clone());
    let options = match kind {
        BodyKind::Json => MultipartOptions::default(),
        // With one file, async-graphql bounds the whole stream and each
        // part by `limit`; the count of files is checked below.
        BodyKind::Upload => MultipartOptions::default()
            .max_file_size(limit)
            .max_num_files(1),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    match async_graphql::http::receive_body(content_type, reader, options).await {
        Ok(request) if request.uploads.len() > 1 => Err(BodyRejection::TooManyFiles),
        Ok(request) => Ok(request),
        Err(_) if exceeded.load(Ordering::Relaxed) => Err(BodyRejection::TooLarge(kind)),
        Err(ParseRequestError::PayloadTooLarge) => Err(BodyRejection::TooLarge(kind)),
        Err(error) => Err(BodyRejection::Unreadable(kind, error)),
    }
}

/// `body` as a reader that fails (setting `exceeded`) once more than
/// `limit` bytes have arrived.
fn limited(
    body: Body,
    limit: usize,
    exceeded: Arc<AtomicBool>,
) -> impl futures::AsyncRead + Send + Unpin {
    let mut received = 0usize;
    body.into_data_stream()
        .map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            received = received.saturating_add(chunk.len());
            if received > limit {
                exceeded.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("length limit exceeded"));
            }
            Ok(chunk)
        })
        .into_async_read()
}

/// A GraphQL response of one request-level error, with `status`.
fn graphql_error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let error = gql_error(code, message);
    let response =
        async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
    (status, GraphQLResponse::from(response)).into_response()
}

/// Whom the `Authorization` header's token names, and when it expires.
async fn bearer_from_headers(
    state: &GatewayState,
    headers: &HeaderMap,
) -> Result<Option<(Bearer, u64)>, AuthError> {
    match headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(value) => {
            let value = value.to_str().map_err(|_| AuthError::Malformed)?;
            let token = Authenticator::bearer_token(value)?;
            state.auth.verify_bearer(token).await.map(Some)
        }
    }
}

/// The answer when graph-svc cannot say which user an identity is: the
/// request cannot run as anyone, so it is retried later (503).
fn identity_unresolved(status: tonic::Status) -> Response {
    let error = crate::error::from_status(status);
    let response =
        async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        GraphQLResponse::from(response),
    )
        .into_response()
}

fn unauthenticated(error: &AuthError) -> Response {
    tracing::debug!(%error, "rejected bearer token");
    graphql_error_response(
        StatusCode::OK,
        ErrorCode::Unauthenticated,
        "the bearer token is invalid or expired",
    )
}

async fn graphql_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let upload = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(is_multipart);
    if upload {
        return graphql_upload(&app, peer, headers, body).await;
    }
    match receive(headers, body, BodyKind::Json, app.body_limits.json_bytes).await {
        // The slot is taken once the body is in: a client sending its body
        // slowly holds a connection, never a slot.
        Ok(request) => {
            let Some(_slot) = app.in_flight.admit() else {
                return InFlight::busy();
            };
            run(&app, peer, headers, request).await
        }
        Err(rejection) => rejection.into_response(),
    }
}

/// A multipart upload. Only a signed-in viewer may upload, and the
/// request counts against their rate, both before a byte of the body is
/// read: nobody else gets a file spooled to the gateway's disk.
async fn graphql_upload(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let admitted = match admit(app, peer, headers).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    if admitted.caller.unregistered() {
        return graphql_error_response(
            StatusCode::FORBIDDEN,
            ErrorCode::Unregistered,
            REGISTER_FIRST,
        );
    }
    if admitted.caller.viewer.is_none() {
        return graphql_error_response(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "sign in to upload: send `Authorization: Bearer <token>` with the multipart request",
        );
    }
    match receive(
        headers,
        body,
        BodyKind::Upload,
        app.body_limits.upload_bytes,
    )
    .await
    {
        Ok(request) => execute(app, admitted, request).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// `GET` (or `HEAD`) `/media/{id}/{variant}`. Any path that does not name
/// a media id and a variant is 404, like media that do not exist.
async fn media_file(
    State(app): State<AppState>,
    method: Method,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((id, variant))) = path else {
        return StatusCode::NOT_FOUND.into_response();
    };
    crate::media_route::serve(
        app.state.downstream.media.clone(),
        method == Method::HEAD,
        &id,
        &variant,
        headers.get(header::RANGE),
    )
    .await
}

/// 429 with `Retry-After` for a request refused by a rate limit (its
/// error's `retryAfter`), 403 for one from an identity that has not
/// registered, 400 for another that failed before execution, else 200.
fn status_of(response: &async_graphql::Response) -> (StatusCode, Option<u64>) {
    let retry_after = response.errors.iter().find_map(|error| {
        let extensions = error.extensions.as_ref()?;
        let code = extensions.get("code")?;
        if *code != async_graphql::Value::from(ErrorCode::RateLimited.as_str()) {
            return None;
        }
        match extensions.get("retryAfter")? {
            async_graphql::Value::Number(seconds) => seconds.as_u64(),
            _ => None,
        }
    });
    let unregistered = response.errors.iter().any(|error| {
        error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            == Some(&async_graphql::Value::from(
                ErrorCode::Unregistered.as_str(),
            ))
    });
    if retry_after.is_some() {
        (StatusCode::TOO_MANY_REQUESTS, retry_after)
    } else if unregistered && failed_before_execution(response) {
        (StatusCode::FORBIDDEN, None)
    } else if failed_before_execution(response) {
        (StatusCode::BAD_REQUEST, None)
    } else {
        (StatusCode::OK, None)
    }
}

/// Runs one request as the viewer its headers name.
async fn run(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    match admit(app, peer, headers).await {
        Ok(admitted) => execute(app, admitted, request).await,
        Err(refused) => refused,
    }
}

/// Who a request comes from, once admitted.
struct Admitted {
    /// The signed-in viewer and the identity the token names, if any.
    caller: Caller,
    /// The client's address (behind trusted proxies, the one they name).
    client: IpAddr,
}

/// Verifies the request's token, takes the request from its client's
/// bucket (the viewer's or the identity's, or the address's when signed
/// out), then resolves an identity to its user; the refusal is the
/// response to send. The bucket comes first, so a flood from one identity
/// is refused before it costs lookups.
async fn admit(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Admitted, Response> {
    let bearer = match bearer_from_headers(&app.state, headers).await {
        Ok(bearer) => bearer.map(|(bearer, _)| bearer),
        Err(error) => return Err(unauthenticated(&error)),
    };
    let client = app.proxies.client(peer.ip(), headers);
    let bucket = match &bearer {
        Some(Bearer::User(viewer)) => format!("request:user:{}", viewer.user_id),
        Some(Bearer::Identity(identity)) => format!("request:identity:{}", identity.tag()),
        None => format!("request:addr:{client}"),
    };
    match app.state.limiter.acquire(&bucket, app.query_rate).await {
        Decision::Limited { retry_after } => {
            let error = crate::error::rate_limited(
                "too many requests; slow down and retry shortly",
                retry_after,
            );
            Err(respond(async_graphql::Response::from_errors(vec![
                error.into_server_error(Default::default()),
            ])))
        }
        Decision::Allowed => {
            let caller = Caller::resolve(&app.state.auth, &app.state.downstream, bearer)
                .await
                .map_err(identity_unresolved)?;
            Ok(Admitted { caller, client })
        }
    }
}

/// Executes an admitted request.
async fn execute(app: &AppState, admitted: Admitted, request: async_graphql::Request) -> Response {
    let Admitted { caller, client } = admitted;
    let request = request
        .data(Loaders::new(&app.state.downstream, caller.viewer))
        .data(ClientAddr(client.to_string()));
    respond(app.executor.execute(caller.into_request(request)).await)
}

/// A GraphQL response with its HTTP status (and `Retry-After`).
fn respond(response: async_graphql::Response) -> Response {
    let (status, retry_after) = status_of(&response);
    let mut http = (status, GraphQLResponse::from(response)).into_response();
    if let Some(seconds) = retry_after {
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    http
}

/// `GET /graphql?query=...`: queries only. A mutation (or subscription)
/// is refused before anything runs: GET requests must be safe to repeat,
/// and browsers send them cross-site freely.
async fn get_query(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query_string: &str,
) -> Response {
    let mut request = match async_graphql::http::parse_query_string(query_string) {
        Ok(request) => request,
        Err(_) => {
            return graphql_error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                "the query string is not a GraphQL request: pass `query`, and `variables` as JSON",
            );
        }
    };
    // A persisted query sent by hash is looked up first, so a mutation
    // cannot slip through GET under its hash.
    if let Err(error) = app.executor.documents().resolve(&mut request) {
        let response = async_graphql::Response::from_errors(vec![error]);
        return (StatusCode::BAD_REQUEST, GraphQLResponse::from(response)).into_response();
    }
    if let Err(refusal) = crate::admission::check_nesting(&request.query) {
        let response = async_graphql::Response::from_errors(vec![refusal.into_server_error()]);
        return (StatusCode::BAD_REQUEST, GraphQLResponse::from(response)).into_response();
    }
    let wanted = request.operation_name.clone();
    let operation_type = request.parsed_query().ok().and_then(|document| {
        let wanted = wanted.as_deref();
        document
            .operations
            .iter()
            .find(|(name, _)| wanted.is_none() || name.map(|name| name.as_str()) == wanted)
            .map(|(_, operation)| operation.node.ty)
    });
    if matches!(
        operation_type,
        Some(OperationType::Mutation | OperationType::Subscription)
    ) {
        let mut response = graphql_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadUserInput,
            "GET requests may only run queries: send mutations with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let Some(_slot) = app.in_flight.admit() else {
        return InFlight::busy();
    };
    run(app, peer, headers, request).await
}

async fn graphql_get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &()).await;
    match (upgrade, websocket_protocol(&parts.headers)) {
        (Ok(upgrade), Some(protocol)) => {
            // A token on the upgrade request itself is honoured too (non-browser clients).
            let client = app.proxies.client(peer.ip(), &parts.headers);
            let header_bearer = match bearer_from_headers(&app.state, &parts.headers).await {
                Ok(bearer) => bearer,
                Err(error) => return unauthenticated(&error),
            };
            upgrade
                .protocols(ALL_WEBSOCKET_PROTOCOLS)
                .max_message_size(app.ws.max_message_bytes)
                .max_frame_size(app.ws.max_message_bytes)
                .on_upgrade(move |socket| async move {
                    let AppState {
                        executor,
                        state,
                        ws,
                        ..
                    } = app;
                    let limits = ws.limits;
                    let on_init = move |payload: serde_json::Value| async move {
                        connection_data(&state, &ws, &payload, header_bearer, client).await
                    };
                    websocket::serve(socket, executor, protocol, limits, on_init).await;
                })
        }
        _ if has_query_parameter(parts.uri.query()) => {
            let query_string = parts.uri.query().unwrap_or_default();
            get_query(&app, peer, &parts.headers, query_string).await
        }
        _ if app.graphiql => Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("Warble GraphiQL")
                .finish(),
        )
        .into_response(),
        _ => graphql_error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            "POST GraphQL requests to /graphql, or GET them with a `query` parameter",
        ),
    }
}

/// The first GraphQL WebSocket subprotocol the client offers.
fn websocket_protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|protocol| protocol.trim().parse().ok())
}

/// The data of a WebSocket connection whose `connection_init` carried
/// `payload`: its viewer (from the payload's token, else the upgrade
/// request's), a slot among the viewer's connections, and when its token
/// expires. An error refuses the connection: an invalid token, or one
/// naming an identity that has not registered (the reason starts with
/// `UNREGISTERED`, the close frame having no room for a code).
async fn connection_data(
    state: &GatewayState,
    ws: &WsSettings,
    payload: &serde_json::Value,
    header_bearer: Option<(Bearer, u64)>,
    client: std::net::IpAddr,
) -> async_graphql::Result<Data> {
    let bearer = match token_in(payload) {
        Some(header) => {
            let verified = match Authenticator::bearer_token(&header) {
                Ok(token) => state.auth.verify_bearer(token).await,
                Err(error) => Err(error),
            };
            Some(verified.map_err(|error| {
                tracing::debug!(%error, "rejected subscription token");
                async_graphql::Error::new("the bearer token is invalid or expired")
            })?)
        }
        None => header_bearer,
    };
    let (bearer, expires) = bearer.unzip();
    let caller = Caller::resolve(&state.auth, &state.downstream, bearer)
        .await
        .map_err(|status| {
            tracing::warn!(code = ?status.code(), message = status.message(), "cannot resolve a subscription's identity");
            async_graphql::Error::new("cannot check the sign-in now; retry shortly")
        })?;
    if caller.unregistered() {
        return Err(async_graphql::Error::new(format!(
            "{}: {REGISTER_FIRST}",
            ErrorCode::Unregistered.as_str()
        )));
    }
    let viewer = caller.viewer.zip(expires);
    let mut data = Data::default();
    data.insert(Loaders::new(
        &state.downstream,
        viewer.map(|(viewer, _)| viewer),
    ));
    data.insert(ClientAddr(client.to_string()));
    if let Some((viewer, expires)) = viewer {
        let slot = ws
            .connections
            .acquire(viewer.user_id, ws.limits.connections_per_user)
            .ok_or_else(|| {
                async_graphql::Error::new(format!(
                    "at most {} open connections per user",
                    ws.limits.connections_per_user
                ))
            })?;
        data.insert(slot);
        data.insert(TokenExpiry::at_unix_secs(expires));
        data.insert(viewer);
    }
    Ok(data)
}

/// Whether a GET carries a GraphQL request: a `query` parameter, or the
/// `extensions` of a persisted query sent by hash.
fn has_query_parameter(query_string: Option<&str>) -> bool {
    query_string.is_some_and(|query_string| {
        query_string
            .split('&')
            .any(|pair| pair.starts_with("query=") || pair.starts_with("extensions="))
    })
}

/// The bearer token in a `connection_init` payload, as `Bearer <token>`.
fn token_in(payload: &serde_json::Value) -> Option<String> {
    let field = |name: &str| {
        payload
            .get(name)
            .and_then(|value| value.as_str())
            .map(str::to_owned)
    };
    field("Authorization")
        .or_else(|| field("authorization"))
        .or_else(|| field("authToken").map(|token| format!("Bearer {token}")))
}

async fn ready(State(app): State<AppState>) -> Response {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    for (name, channel) in &app.state.downstream.channels {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest::default())
            .await;
        let serving = status
            .is_ok_and(|response| response.into_inner().status == ServingStatus::Serving as i32);
        if !serving {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} is not serving"),
            )
                .into_response();
        }
    }
    "ready".into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    let mut body = String::from(
        "# HELP warble_gateway_downstream_calls_total gRPC calls the gateway made, by method.\n\
         # TYPE warble_gateway_downstream_calls_total counter\n",
    );
    for (method, count) in app.state.downstream.counts.by_path() {
        body.push_str(&format!(
            "warble_gateway_downstream_calls_total{{method=\"{method}\"}} {count}\n"
        ));
    }
    let (limit, ceiling) = app.in_flight.bounds();
    body.push_str(&format!(
        "# HELP warble_gateway_requests_shed_total GraphQL requests refused for want of a slot.\n\
         # TYPE warble_gateway_requests_shed_total counter\n\
         warble_gateway_requests_shed_total {}\n\
         # HELP warble_gateway_in_flight_limit The adaptive bound on GraphQL requests in progress (at most limits.max_in_flight_requests, {ceiling}).\n\
         # TYPE warble_gateway_in_flight_limit gauge\n\
         warble_gateway_in_flight_limit {limit}\n",
        app.in_flight.shed()
    ));
    // This process's registry: GraphQL operations here; in the
    // single-process stack, every service's RPCs and consumers too.
    body.push_str(&warble_mesh::metrics::render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multipart upload request with `files` (each mapped to
    /// `variables.file`), and its content type.
    fn multipart(files: &[&[u8]]) -> (HeaderMap, Vec<u8>) {
        let boundary = "b";
        let mut body = Vec::new();
        let mut part = |headers: String, content: &[u8]| {
            body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        };
        part(
            "Content-Disposition: form-data; name=\"operations\"".into(),
            br#"{"query": "mutation($file: Upload!) { uploadMedia(file: $file) { id } }", "variables": {"file": null}}"#,
        );
        let map: Vec<String> = (0..files.len())
            .map(|index| format!("\"{index}\": [\"variables.file\"]"))
            .collect();
        part(
            "Content-Disposition: form-data; name=\"map\"".into(),
            format!("{{{}}}", map.join(", ")).as_bytes(),
        );
        for (index, file) in files.iter().enumerate() {
            part(
                format!("Content-Disposition: form-data; name=\"{index}\"; filename=\"f\""),
                file,
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=b"),
        );
        (headers, body)
    }

    fn with_length(mut headers: HeaderMap, body: &[u8]) -> HeaderMap {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers
    }

    #[test]
    fn multipart_content_types() {
        assert!(is_multipart("multipart/form-data; boundary=x"));
        assert!(is_multipart(" Multipart/Form-Data; boundary=x"));
        assert!(!is_multipart("application/json"));
        assert!(!is_multipart("multipart"));
        assert!(!is_multipart(""));
        assert!(!is_multipart("ümultipart/"));
    }

    #[tokio::test]
    async fn an_upload_of_one_file_within_the_limit_is_read() {
        let (headers, body) = multipart(&[&[1u8; 1000]]);
        let headers = with_length(headers, &body);
        let request = receive(&headers, Body::from(body), BodyKind::Upload, 4096)
            .await
            .ok()
            .expect("read");
        assert_eq!(request.uploads.len(), 1);
        assert_eq!(request.uploads[0].size().unwrap(), 1000);
    }

    #[tokio::test]
    async fn bodies_over_their_limit_are_refused_whether_declared_or_not() {
        let too_large = |result: Result<async_graphql::Request, BodyRejection>| {
            matches!(result, Err(BodyRejection::TooLarge(_)))
        };
        // An upload: declared (refused before reading), or streamed.
        let (headers, body) = multipart(&[&[1u8; 5000]]);
        let declared = with_length(headers.clone(), &body);
        assert!(too_large(
            receive(&declared, Body::from(body.clone()), BodyKind::Upload, 4096).await
        ));
        assert!(too_large(
            receive(&headers, Body::from(body), BodyKind::Upload, 4096).await
        ));
        // JSON, with its own limit.
        let json = format!(r#"{{"query": "{{ __typename }} # {}"}}"#, "x".repeat(2000));
        assert!(too_large(
            receive(
                &HeaderMap::new(),
                Body::from(json.clone()),
                BodyKind::Json,
                1024
            )
            .await
        ));
        assert!(
            receive(&HeaderMap::new(), Body::from(json), BodyKind::Json, 4096)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn more_than_one_file_is_refused() {
        let (headers, body) = multipart(&[b"one", b"two"]);
        let result = receive(&headers, Body::from(body), BodyKind::Upload, 4096).await;
        assert!(matches!(result, Err(BodyRejection::TooManyFiles)));
        let response = BodyRejection::TooManyFiles.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_multipart_body_that_breaks_the_spec_is_bad_input() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=b"),
        );
        for body in ["", "--b--\r\n", "not multipart at all"] {
            let result = receive(&headers, Body::from(body), BodyKind::Upload, 4096).await;
            let Err(rejection) = result else {
                panic!("{body:?} was read");
            };
            assert_eq!(
                rejection.into_response().status(),
                StatusCode::BAD_REQUEST,
                "{body:?}"
            );
        }
    }
}
