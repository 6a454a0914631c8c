//! The HTTP layer: a thin axum router around the schema.
//!
//! - `POST /graphql`: queries and mutations (`Authorization: Bearer <JWT>`).
//! - `GET /graphql`: WebSocket subscriptions (`graphql-transport-ws`, token
//!   in the `connection_init` payload as `Authorization` or `authToken`), or
//!   GraphiQL when enabled.
//! - `/healthz` (process alive), `/readyz` (downstreams answer health
//!   checks), `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts as _, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::auth::{AuthError, Viewer};
use crate::error::{ErrorCode, gql_error};
use crate::loaders::Loaders;
use crate::query_cache::ParsedQueryCache;
use crate::resolvers::{ClientAddr, GatewayState};
use crate::schema::{WarbleSchema, classify_errors};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The schema.
    pub schema: WarbleSchema,
    /// Shared gateway state.
    pub state: Arc<GatewayState>,
    /// Serve GraphiQL on `GET /graphql`.
    pub graphiql: bool,
    /// Parsed documents of the queries seen so far.
    pub query_cache: ParsedQueryCache,
}

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(app: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            max_body_bytes,
        ))
        .with_state(app)
}

fn viewer_from_headers(
    state: &GatewayState,
    headers: &HeaderMap,
) -> Result<Option<Viewer>, AuthError> {
    match headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(value) => {
            let value = value.to_str().map_err(|_| AuthError::Malformed)?;
            state.auth.verify_header(value).map(Some)
        }
    }
}

fn unauthenticated(error: &AuthError) -> Response {
    tracing::debug!(%error, "rejected bearer token");
    let error = gql_error(
        ErrorCode::Unauthenticated,
        "the bearer token is invalid or expired",
    );
    let response =
        async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
    GraphQLResponse::from(response).into_response()
}

async fn graphql_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let viewer = match viewer_from_headers(&app.state, &headers) {
        Ok(viewer) => viewer,
        Err(error) => return unauthenticated(&error),
    };
    let mut request = request
        .into_inner()
        .data(Loaders::new(&app.state.downstream, viewer))
        .data(ClientAddr(peer.ip().to_string()));
    if let Some(viewer) = viewer {
        request = request.data(viewer);
    }
    app.query_cache.prepare(&mut request);
    let mut response = app.schema.execute(request).await;
    classify_errors(&mut response);
    GraphQLResponse::from(response).into_response()
}

async fn graphql_get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &()).await;
    let protocol = GraphQLProtocol::from_request_parts(&mut parts, &()).await;
    match (upgrade, protocol) {
        (Ok(upgrade), Ok(protocol)) => {
            // A token on the upgrade request itself is honoured too (non-browser clients).
            let header_viewer = match viewer_from_headers(&app.state, &parts.headers) {
                Ok(viewer) => viewer,
                Err(error) => return unauthenticated(&error),
            };
            upgrade
                .protocols(ALL_WEBSOCKET_PROTOCOLS)
                .on_upgrade(move |socket| async move {
                    let state = app.state.clone();
                    GraphQLWebSocket::new(socket, app.schema.clone(), protocol)
                        .on_connection_init(move |payload| async move {
                            let viewer = match token_in(&payload) {
                                Some(token) => {
                                    Some(state.auth.verify_header(&token).map_err(|error| {
                                        tracing::debug!(%error, "rejected subscription token");
                                        async_graphql::Error::new(
                                            "the bearer token is invalid or expired",
                                        )
                                    })?)
                                }
                                None => header_viewer,
                            };
                            let mut data = Data::default();
                            data.insert(Loaders::new(&state.downstream, viewer));
                            data.insert(ClientAddr(peer.ip().to_string()));
                            if let Some(viewer) = viewer {
                                data.insert(viewer);
                            }
                            Ok(data)
                        })
                        .serve()
                        .await;
                })
        }
        _ if app.graphiql => Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("Warble GraphiQL")
                .finish(),
        )
        .into_response(),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "POST GraphQL requests to /graphql",
        )
            .into_response(),
    }
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
