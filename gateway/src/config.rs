//! The gateway's configuration (see the README's config reference).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use warble_mesh::backends::EventsConfig;
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::secret::Secret;
use warble_mesh::telemetry::TelemetryConfig;

/// How bearer tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.hs256_secret`.
    #[default]
    HS256,
    /// RSA-SHA256 with the PEM public key in `auth.public_key_pem`.
    RS256,
    /// Ed25519 with the PEM public key in `auth.public_key_pem`.
    EdDSA,
}

/// How a verified token's subject (`sub`) names the Warble user making
/// the request (`auth.subjects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubjectMapping {
    /// `sub` is the user's id, as in the tokens `warble dev` issues (and
    /// any token service of your own that knows Warble's ids).
    #[default]
    UserId,
    /// `sub` is an identity provider's own name for the person: the token's
    /// (`iss`, `sub`) is looked up among registered identities (graph-svc,
    /// cached), and a person registers once with the `register` mutation.
    /// How Warble runs behind Auth0, Keycloak, Cognito and the like.
    Registered,
}

/// The gateway's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// HTTP listen address: `/graphql` (queries, mutations, WebSocket
    /// subscriptions), `/healthz` (liveness), `/readyz` (readiness), `/metrics`.
    pub listen_addr: SocketAddr,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub drain_timeout_secs: u64,
    /// tweet-svc address (`host:port`).
    pub tweet_service_addr: String,
    /// graph-svc address (`host:port`).
    pub graph_service_addr: String,
    /// timeline-svc address (`host:port`).
    pub timeline_service_addr: String,
    /// notify-svc address (`host:port`): notifications, their unread count
    /// and settings, and `notificationAdded` read it. `/readyz` waits for it
    /// like the other services; while it cannot be reached those fields are
    /// UNAVAILABLE and the rest of the schema is unaffected.
    pub notify_service_addr: String,
    /// search-svc address (`host:port`): `search`, `searchUsers` and
    /// `trends` read it; while it cannot be reached those fields are
    /// UNAVAILABLE and the rest of the schema is unaffected.
    pub search_service_addr: String,
    /// media-svc address (`host:port`): `uploadMedia`, `Tweet.media`,
    /// `User.avatarUrl`, media ids in `postTweet` and `updateProfile`, and
    /// the `/media/{id}/{variant}` route read it; while it cannot be reached
    /// those are UNAVAILABLE and the rest of the schema is unaffected.
    pub media_service_addr: String,
    /// Deadline of each downstream call, in milliseconds.
    pub request_timeout_ms: u64,
    /// Deadline of one upload's call to media-svc, in milliseconds: it
    /// covers streaming the whole file (up to `limits.max_upload_bytes`)
    /// and media-svc checking and storing it, so it is far longer than
    /// `request_timeout_ms`.
    pub media_upload_timeout_ms: u64,
    /// Mutual TLS to the services (`mesh_tls.*`): the gateway's mesh
    /// certificate (its `spiffe://` URI names it `gateway` to the services'
    /// peer rules) and the mesh CA. Off by default.
    pub mesh_tls: warble_mesh::tls::MeshTlsConfig,
    /// Token verification and development sign-up.
    pub auth: AuthConfig,
    /// Abuse limits.
    pub limits: LimitsConfig,
    /// Serve GraphiQL at `GET /graphql` (development).
    pub graphiql: bool,
    /// Answer introspection queries (turn off in production if the schema is private).
    pub introspection: bool,
    /// Origins browsers may call the API from, comma-separated, each
    /// `scheme://host[:port]` (or `*` for any); empty (the default) sends no
    /// CORS headers, so only same-origin pages and non-browser clients can
    /// call it.
    pub cors_allowed_origins: String,
    /// Honour Automatic Persisted Queries (the Apollo protocol): clients may
    /// send a query's SHA-256 instead of its text once the gateway knows it.
    pub persisted_queries: bool,
    /// Trusted-documents mode: a JSON manifest (SHA-256 hex of each document
    /// to its text, as Relay's compiler and graphql-codegen emit) of the only
    /// documents this gateway runs; anything else is FORBIDDEN. Empty (the
    /// default) runs any document within the limits.
    pub trusted_documents_file: String,
    /// Load balancers and proxies in front of the gateway, comma-separated
    /// addresses or CIDR networks: only behind them does `X-Forwarded-For`
    /// name the client whose rate limits apply. Empty ignores the header.
    pub trusted_proxies: String,
    /// The event stream live subscriptions tail (`events.backend = "redis"`
    /// in production; a standalone gateway with `embedded` serves no
    /// subscriptions).
    pub events: EventsConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// The `auth.*` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// `HS256`, `RS256` or `EdDSA`.
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret (at least 32 bytes). Also signs tokens issued by `signUp` in dev mode.
    pub hs256_secret: Secret,
    /// RS256/EdDSA public key, PEM (unless `jwks_url` is set).
    pub public_key_pem: String,
    /// The identity provider's JWKS URL (e.g.
    /// `https://<tenant>/.well-known/jwks.json`): RS256/EdDSA keys chosen by
    /// the token's `kid`, cached, fetched again when a token names an unknown
    /// one. Empty uses `public_key_pem` / `hs256_secret`.
    pub jwks_url: String,
    /// Shortest time between two JWKS fetches caused by unknown key ids, in seconds.
    pub jwks_min_refresh_secs: u64,
    /// Required `iss` claim. Must be set unless `dev_mode` (start-up fails
    /// naming the key); in dev mode empty accepts any.
    pub issuer: String,
    /// Required `aud` claim (a token's `aud` may be a string or an array).
    /// Must be set unless `dev_mode`.
    pub audience: String,
    /// Development mode: the `signUp` and `issueToken` mutations create
    /// users and issue HS256 tokens without a password. Never in production.
    pub dev_mode: bool,
    /// Lifetime of tokens issued in development mode, in seconds.
    pub dev_token_ttl_secs: u64,
    /// What a token's `sub` names: `user_id` (the default, what dev mode
    /// issues: the Warble user id) or `registered` (an identity provider's
    /// subject, bound to a Warble user by the `register` mutation; needs
    /// dev mode off). Production behind an identity provider wants
    /// `registered`.
    pub subjects: SubjectMapping,
    /// With `subjects = "registered"`: how long this gateway remembers which
    /// user an identity registered as, in seconds. Unregistered identities
    /// are never remembered, so a registration counts at once everywhere.
    pub identity_cache_ttl_secs: u64,
    /// With `subjects = "registered"`: most identities this gateway
    /// remembers at once (about 100 bytes each).
    pub identity_cache_entries: usize,
}

/// The `limits.*` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Deepest query nesting accepted.
    pub max_depth: usize,
    /// Largest query complexity accepted (each field costs 1; lists multiply by `first`).
    pub max_complexity: usize,
    /// Largest request body, in bytes (a JSON or GET request, a WebSocket
    /// message). Multipart uploads have `max_upload_bytes` instead.
    pub max_body_bytes: usize,
    /// Largest multipart upload request (the GraphQL multipart request
    /// spec: `operations`, `map`, one file), in bytes. Above media-svc's own
    /// per-type limits, so that media-svc, which knows the file's type,
    /// names the reason a file is too large; only one larger than this is
    /// refused at the edge (413), before it is read.
    pub max_upload_bytes: usize,
    /// Mutations a user may make in a burst (token bucket capacity).
    pub mutation_burst: u32,
    /// Mutations a user regains per minute (token bucket refill).
    pub mutations_per_minute: u32,
    /// Requests (any operation) a client may send at once: per user when
    /// signed in, per client address otherwise.
    pub query_burst: u32,
    /// Requests a client regains per minute.
    pub queries_per_minute: u32,
    /// Seconds a WebSocket client has to send `connection_init` before the
    /// connection is closed (4408). Messages on a socket are bounded by
    /// `max_body_bytes` like request bodies.
    pub ws_init_timeout_secs: u64,
    /// Operations that may run at once on one WebSocket connection.
    pub ws_operations_per_connection: u32,
    /// WebSocket connections one signed-in user may hold open (per gateway replica).
    pub ws_connections_per_user: u32,
    /// GraphQL HTTP requests this replica works on at once; one more is
    /// refused at once with 503, `Retry-After` and `RATE_LIMITED`, instead of
    /// queueing behind the others until every request is slow.
    pub max_in_flight_requests: u32,
    /// Whether the bound adapts to latency (see [`crate::overload`]);
    /// `false` keeps it at `max_in_flight_requests`, for deployments where
    /// something in front already sheds load, and for capacity benchmarks.
    pub adaptive_in_flight: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            drain_timeout_secs: 10,
            tweet_service_addr: "127.0.0.1:50051".into(),
            graph_service_addr: "127.0.0.1:50052".into(),
            timeline_service_addr: "127.0.0.1:50053".into(),
            notify_service_addr: "127.0.0.1:50055".into(),
            search_service_addr: "127.0.0.1:50056".into(),
            media_service_addr: DEFAULT_MEDIA_SERVICE_ADDR.into(),
            request_timeout_ms: 2_000,
            media_upload_timeout_ms: 120_000,
            mesh_tls: warble_mesh::tls::MeshTlsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            graphiql: false,
            introspection: true,
            cors_allowed_origins: String::new(),
            persisted_queries: true,
            trusted_documents_file: String::new(),
            trusted_proxies: String::new(),
            events: EventsConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::HS256,
            hs256_secret: Secret::default(),
            public_key_pem: String::new(),
            jwks_url: String::new(),
            jwks_min_refresh_secs: 30,
            issuer: String::new(),
            audience: String::new(),
            dev_mode: false,
            dev_token_ttl_secs: 86_400,
            subjects: SubjectMapping::UserId,
            identity_cache_ttl_secs: 600,
            identity_cache_entries: 100_000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 5_000,
            max_body_bytes: 64 * 1024,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            mutation_burst: 30,
            mutations_per_minute: 60,
            query_burst: 120,
            queries_per_minute: 1_200,
            ws_init_timeout_secs: 10,
            ws_operations_per_connection: 100,
            ws_connections_per_user: 8,
            max_in_flight_requests: 256,
            adaptive_in_flight: true,
        }
    }
}

/// media-svc's address unless configured (its default port).
pub const DEFAULT_MEDIA_SERVICE_ADDR: &str = "127.0.0.1:50057";

/// `limits.max_upload_bytes` unless configured: 65 MiB and 64 KiB, above
/// media-svc's largest file (a 64 MB video) with room for the request's
/// other parts, so that media-svc refuses a file that is too large for its
/// type with the precise reason.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 65 * 1024 * 1024 + 64 * 1024;

/// Shortest HS256 secret accepted (RFC 7518 asks for at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl warble_mesh::scaffold::BinaryConfig for GatewayConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.telemetry.validate("telemetry")?;
        self.events.validate("events")?;
        self.mesh_tls.validate("mesh_tls")?;
        if self.drain_timeout_secs == 0 || self.drain_timeout_secs > 3600 {
            return Err(ConfigError::invalid(
                "drain_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        warble_mesh::config::validate_downstreams(
            &[
                ("tweet_service_addr", self.tweet_service_addr.as_str()),
                ("graph_service_addr", self.graph_service_addr.as_str()),
                ("timeline_service_addr", self.timeline_service_addr.as_str()),
                ("notify_service_addr", self.notify_service_addr.as_str()),
                ("search_service_addr", self.search_service_addr.as_str()),
                ("media_service_addr", self.media_service_addr.as_str()),
            ],
            self.request_timeout_ms,
        )?;
        if self.media_upload_timeout_ms < self.request_timeout_ms {
            return Err(ConfigError::invalid(
                "media_upload_timeout_ms",
                "must be at least request_timeout_ms: an upload streams a whole file",
            ));
        }
        match self.auth.algorithm {
            JwtAlgorithm::HS256
                if self.auth.hs256_secret.expose().len() < MIN_HS256_SECRET_BYTES =>
            {
                return Err(ConfigError::invalid(
                    "auth.hs256_secret",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"),
                ));
            }
            JwtAlgorithm::HS256 if !self.auth.jwks_url.is_empty() => {
                return Err(ConfigError::invalid(
                    "auth.jwks_url",
                    "a JWKS holds public keys: set auth.algorithm to RS256 or EdDSA",
                ));
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA
                if self.auth.jwks_url.is_empty()
                    && !self.auth.public_key_pem.contains("BEGIN PUBLIC KEY") =>
            {
                return Err(ConfigError::invalid(
                    "auth.public_key_pem",
                    "must be a PEM public key (or set auth.jwks_url)",
                ));
            }
            _ => {}
        }
        if !self.auth.dev_mode {
            // Any token the key verifies would otherwise do: one minted for
            // another application of the same identity provider, say.
            for (key, value) in [
                ("auth.issuer", &self.auth.issuer),
                ("auth.audience", &self.auth.audience),
            ] {
                if value.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        key,
                        "required unless auth.dev_mode = true: name the identity provider's \
                         issuer and this API's audience, or any token the key verifies is accepted",
                    ));
                }
            }
        }
        if !self.auth.jwks_url.is_empty() {
            let url = &self.auth.jwks_url;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::invalid(
                    "auth.jwks_url",
                    "must be an http(s) URL",
                ));
            }
            if self.auth.jwks_min_refresh_secs == 0 {
                return Err(ConfigError::invalid(
                    "auth.jwks_min_refresh_secs",
                    "must be at least 1",
                ));
            }
        }
        if self.auth.subjects == SubjectMapping::Registered {
            if self.auth.dev_mode {
                return Err(ConfigError::invalid(
                    "auth.subjects",
                    "\"registered\" takes subjects from an identity provider, but auth.dev_mode \
                     issues tokens whose subject is a user id: turn dev mode off, or use \"user_id\"",
                ));
            }
            for (key, value) in [
                (
                    "auth.identity_cache_ttl_secs",
                    self.auth.identity_cache_ttl_secs,
                ),
                (
                    "auth.identity_cache_entries",
                    self.auth.identity_cache_entries as u64,
                ),
            ] {
                if value == 0 {
                    return Err(ConfigError::invalid(key, "must be at least 1"));
                }
            }
        }
        if self.auth.dev_mode && self.auth.hs256_secret.expose().len() < MIN_HS256_SECRET_BYTES {
            return Err(ConfigError::invalid(
                "auth.hs256_secret",
                "dev_mode issues HS256 tokens and needs a secret of at least 32 bytes",
            ));
        }
        if !self.trusted_documents_file.is_empty() {
            crate::persisted::TrustedDocuments::load(std::path::Path::new(
                &self.trusted_documents_file,
            ))
            .map_err(|error| ConfigError::invalid("trusted_documents_file", error.to_string()))?;
        }
        for origin in self.cors_origins() {
            if !is_origin(&origin) {
                return Err(ConfigError::invalid(
                    "cors_allowed_origins",
                    format!(
                        "`{origin}` is not an origin: use scheme://host[:port] (no path), or `*`"
                    ),
                ));
            }
        }
        if self.limits.max_depth == 0 || self.limits.max_complexity == 0 {
            return Err(ConfigError::invalid(
                "limits.max_depth",
                "depth and complexity limits must be at least 1",
            ));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "limits.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.limits.max_upload_bytes < self.limits.max_body_bytes {
            return Err(ConfigError::invalid(
                "limits.max_upload_bytes",
                "must be at least limits.max_body_bytes: an upload carries a GraphQL request too",
            ));
        }
        crate::proxies::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|reason| ConfigError::invalid("trusted_proxies", reason))?;
        for (key, value) in [
            ("limits.query_burst", u64::from(self.limits.query_burst)),
            (
                "limits.queries_per_minute",
                u64::from(self.limits.queries_per_minute),
            ),
            (
                "limits.ws_init_timeout_secs",
                self.limits.ws_init_timeout_secs,
            ),
            (
                "limits.ws_operations_per_connection",
                u64::from(self.limits.ws_operations_per_connection),
            ),
            (
                "limits.ws_connections_per_user",
                u64::from(self.limits.ws_connections_per_user),
            ),
            (
                "limits.max_in_flight_requests",
                u64::from(self.limits.max_in_flight_requests),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.limits.mutation_burst == 0 || self.limits.mutations_per_minute == 0 {
            return Err(ConfigError::invalid(
                "limits.mutations_per_minute",
                "rate limit burst and refill must be positive",
            ));
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// The entries of `cors_allowed_origins`.
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `*`, or `http(s)://host[:port]` with nothing after the authority.
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', ' '])
        && axum::http::HeaderValue::from_str(origin).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_key(config: &GatewayConfig) -> Option<String> {
        match config.validate() {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            Err(other) => panic!("unexpected: {other}"),
        }
    }

    fn production() -> GatewayConfig {
        GatewayConfig {
            auth: AuthConfig {
                hs256_secret: "a-production-secret-of-at-least-32-bytes".into(),
                issuer: "https://id.example.com/".into(),
                audience: "warble".into(),
                ..AuthConfig::default()
            },
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn issuer_and_audience_are_required_unless_in_dev_mode() {
        assert_eq!(refused_key(&production()), None);
        let mut no_issuer = production();
        no_issuer.auth.issuer.clear();
        assert_eq!(refused_key(&no_issuer).as_deref(), Some("auth.issuer"));
        let mut no_audience = production();
        no_audience.auth.audience = "  ".into();
        assert_eq!(refused_key(&no_audience).as_deref(), Some("auth.audience"));
        no_audience.auth.dev_mode = true;
        assert_eq!(refused_key(&no_audience), None, "dev mode accepts any");
    }

    #[test]
    fn subjects_are_user_ids_unless_registered_which_needs_dev_mode_off() {
        assert_eq!(AuthConfig::default().subjects, SubjectMapping::UserId);
        let mut registered = production();
        registered.auth.subjects = SubjectMapping::Registered;
        assert_eq!(refused_key(&registered), None);
        let mut dev = registered.clone();
        dev.auth.dev_mode = true;
        assert_eq!(refused_key(&dev).as_deref(), Some("auth.subjects"));
        let mut no_ttl = registered.clone();
        no_ttl.auth.identity_cache_ttl_secs = 0;
        assert_eq!(
            refused_key(&no_ttl).as_deref(),
            Some("auth.identity_cache_ttl_secs")
        );
        let mut no_room = registered;
        no_room.auth.identity_cache_entries = 0;
        assert_eq!(
            refused_key(&no_room).as_deref(),
            Some("auth.identity_cache_entries")
        );
        // The values as the config file and env vars spell them.
        for (spelled, mapping) in [
            ("user_id", SubjectMapping::UserId),
            ("registered", SubjectMapping::Registered),
        ] {
            let parsed: SubjectMapping =
                serde_json::from_value(serde_json::json!(spelled)).unwrap();
            assert_eq!(parsed, mapping);
        }
        assert!(serde_json::from_value::<SubjectMapping>(serde_json::json!("email")).is_err());
    }

    #[test]
    fn an_unknown_subject_mapping_fails_start_up_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, "[auth]\nsubjects = \"email\"\n").unwrap();
        let error = warble_mesh::config::load::<GatewayConfig>(Some(&file))
            .expect_err("not a mapping")
            .to_string();
        assert!(error.contains("auth.subjects"), "{error}");
        assert!(error.contains("registered"), "names the choices: {error}");
    }

    #[test]
    fn every_downstream_address_is_required_naming_its_key() {
        assert_eq!(
            GatewayConfig::default().notify_service_addr,
            "127.0.0.1:50055"
        );
        for key in [
            "tweet_service_addr",
            "graph_service_addr",
            "timeline_service_addr",
            "notify_service_addr",
            "search_service_addr",
            "media_service_addr",
        ] {
            let mut config = production();
            let addr = match key {
                "tweet_service_addr" => &mut config.tweet_service_addr,
                "graph_service_addr" => &mut config.graph_service_addr,
                "timeline_service_addr" => &mut config.timeline_service_addr,
                "notify_service_addr" => &mut config.notify_service_addr,
                "search_service_addr" => &mut config.search_service_addr,
                _ => &mut config.media_service_addr,
            };
            *addr = " ".into();
            assert_eq!(refused_key(&config).as_deref(), Some(key));
        }
    }

    #[test]
    fn upload_limits_are_checked_naming_the_key() {
        let config = production();
        assert_eq!(config.media_service_addr, "127.0.0.1:50057");
        assert!(
            config.limits.max_upload_bytes > 64_000_000,
            "above media-svc's largest file, so that media-svc names the reason"
        );
        let mut small = production();
        small.limits.max_upload_bytes = small.limits.max_body_bytes - 1;
        assert_eq!(
            refused_key(&small).as_deref(),
            Some("limits.max_upload_bytes")
        );
        let mut short = production();
        short.media_upload_timeout_ms = short.request_timeout_ms - 1;
        assert_eq!(
            refused_key(&short).as_deref(),
            Some("media_upload_timeout_ms")
        );
    }

    #[test]
    fn origins_proxies_and_jwks_urls_are_checked_naming_the_key() {
        let mut config = production();
        config.cors_allowed_origins = "https://app.example.com, http://localhost:5173".into();
        config.trusted_proxies = "10.0.0.0/8".into();
        assert_eq!(refused_key(&config), None);
        config.cors_allowed_origins = "https://app.example.com/path".into();
        assert_eq!(
            refused_key(&config).as_deref(),
            Some("cors_allowed_origins")
        );
        config.cors_allowed_origins.clear();
        config.trusted_proxies = "10.0.0.0/40".into();
        assert_eq!(refused_key(&config).as_deref(), Some("trusted_proxies"));
        config.trusted_proxies.clear();
        config.auth.jwks_url = "https://id.example.com/jwks.json".into();
        assert_eq!(
            refused_key(&config).as_deref(),
            Some("auth.jwks_url"),
            "a JWKS with HS256"
        );
        config.auth.algorithm = JwtAlgorithm::EdDSA;
        assert_eq!(refused_key(&config), None);
    }
}
