//! Bearer-token authentication. The viewer comes from the verified token,
//! never from query arguments: its `sub` claim is the user's id
//! (`auth.subjects = "user_id"`), or its (`iss`, `sub`) names an identity
//! provider's account that registered as a Warble user
//! (`auth.subjects = "registered"`, see [`identities`]).

pub mod identities;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use warble_proto::limits::graph::{MAX_ISSUER_BYTES, MAX_SUBJECT_BYTES};

use crate::config::{AuthConfig, JwtAlgorithm, SubjectMapping};
use identities::IdentityCache;

/// The authenticated user making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    /// Their user id.
    pub user_id: u64,
}

/// An identity provider's name for a person: the issuer of their token
/// (`iss`) and the subject it names (`sub`), each compared exactly. In a
/// request's data whenever its token named one (`auth.subjects =
/// "registered"`), registered or not: it is what `register` binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
}

impl Identity {
    /// A fixed-size name for the identity (cache keys): SHA-256 over the
    /// issuer's length, the issuer and the subject, so no two identities
    /// share one and a key never holds a long subject.
    pub fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update((self.issuer.len() as u64).to_be_bytes());
        hash.update(self.issuer.as_bytes());
        hash.update(self.subject.as_bytes());
        hash.finalize().into()
    }

    /// A short tag for the identity (rate-limit buckets): the digest's
    /// first 16 bytes in hex, which do not show the subject (some providers
    /// use an email address).
    pub fn tag(&self) -> String {
        self.digest()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Whom a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    /// A Warble user, by id (`auth.subjects = "user_id"`).
    User(Viewer),
    /// An identity provider's account (`auth.subjects = "registered"`): a
    /// Warble user once it has registered ([`identities`]).
    Identity(Identity),
}

/// Token claims Warble reads and issues.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, as a decimal string (ids exceed JavaScript's safe integers).
    sub: String,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
    /// Issued at, seconds since the Unix epoch.
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// One audience or several (RFC 7519 allows both; jsonwebtoken checks
    /// the configured one against either form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
}

/// The `aud` claim: a string or an array of strings.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a token was rejected (the reason is logged, never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header is not `Bearer <token>`.
    #[error("authorization header is not a bearer token")]
    Malformed,
    /// Signature, expiry, issuer or audience check failed.
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The subject is not a user id.
    #[error("token subject is not a user id")]
    BadSubject,
    /// With `auth.subjects = "registered"`: the issuer or the subject is
    /// empty, or longer than an identity may be (255 bytes each).
    #[error("token issuer or subject is empty or too long to be an identity")]
    BadIdentity,
    /// The token names an identity provider's account, not a user id: only
    /// a lookup among registered identities says who that is.
    #[error("token names an identity, which only a lookup resolves to a user")]
    Unresolved,
    /// The auth settings contradict each other.
    #[error("auth configuration: {0}")]
    Config(&'static str),
    /// The configured key cannot be used.
    #[error("auth key is unusable: {0}")]
    Key(String),
    /// The token names no key (`kid`) the JWKS holds, even after a refresh.
    #[error("token key id {0:?} is not in the JWKS")]
    UnknownKey(Option<String>),
    /// The JWKS could not be fetched (the old keys stay in use).
    #[error("cannot fetch the JWKS: {0}")]
    Jwks(String),
}

/// Where verification keys come from.
#[derive(Clone)]
enum Keys {
    /// One configured key (HS256 secret or PEM public key).
    Static(DecodingKey),
    /// An identity provider's JWKS, by `kid`.
    Jwks(Arc<Jwks>),
}

/// Keys published at a JWKS URL (how Auth0, Keycloak, Cognito and Google
/// publish theirs), cached by key id. A token naming an unknown `kid` makes
/// one fetch (keys rotate), at most once per `min_refresh`, so a flood of
/// forged key ids cannot turn into a flood of fetches.
struct Jwks {
    url: String,
    client: reqwest::Client,
    algorithm: Algorithm,
    min_refresh: Duration,
    state: tokio::sync::RwLock<JwksState>,
    /// One fetch at a time; the others wait and use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, DecodingKey>,
    last_fetch: Option<tokio::time::Instant>,
}

impl Jwks {
    /// The key `kid` names, fetching the JWKS again when it is unknown.
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        let unknown = || AuthError::UnknownKey(kid.map(str::to_owned));
        let kid = kid.ok_or_else(unknown)?;
        if let Some(key) = self.state.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        let _fetching = self.fetching.lock().await;
        {
            let state = self.state.read().await;
            if let Some(key) = state.keys.get(kid) {
                return Ok(key.clone());
            }
            if state
                .last_fetch
                .is_some_and(|last| last.elapsed() < self.min_refresh)
            {
                return Err(unknown());
            }
        }
        let fetched = self.fetch().await;
        let mut state = self.state.write().await;
        state.last_fetch = Some(tokio::time::Instant::now());
        match fetched {
            Ok(keys) => state.keys = keys,
            Err(error) => {
                tracing::warn!(%error, url = %self.url, "JWKS refresh failed; keeping the keys we had");
                return Err(error);
            }
        }
        state.keys.get(kid).cloned().ok_or_else(unknown)
    }

    /// The JWKS's usable keys: those with a `kid` and of the configured
    /// algorithm's family (never a symmetric `oct` key).
    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let failed = |error: reqwest::Error| AuthError::Jwks(error.without_url().to_string());
        let set: jsonwebtoken::jwk::JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(failed)?
            .error_for_status()
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)?;
        use jsonwebtoken::jwk::AlgorithmParameters;
        Ok(set
            .keys
            .iter()
            .filter(|jwk| {
                matches!(
                    (&jwk.algorithm, self.algorithm),
                    (AlgorithmParameters::RSA(_), Algorithm::RS256)
                        | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
                )
            })
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}

/// Verifies tokens (and issues them in development mode).
#[derive(Clone)]
pub struct Authenticator {
    keys: Keys,
    validation: Validation,
    issuing: Option<(EncodingKey, u64)>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Where registered identities' users are remembered; `Some` exactly
    /// when `auth.subjects = "registered"`.
    identities: Option<IdentityCache>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the verifier (and the dev-mode issuer) from config.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthError> {
        let registered = config.subjects == SubjectMapping::Registered;
        if registered && config.dev_mode {
            return Err(AuthError::Config(
                "auth.subjects = \"registered\" cannot take the user-id tokens auth.dev_mode issues",
            ));
        }
        let algorithm = match config.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        let keys = if !config.jwks_url.is_empty() {
            if algorithm == Algorithm::HS256 {
                return Err(AuthError::Key(
                    "a JWKS holds public keys: use RS256 or EdDSA with auth.jwks_url".into(),
                ));
            }
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|error| AuthError::Key(error.to_string()))?;
            Keys::Jwks(Arc::new(Jwks {
                url: config.jwks_url.clone(),
                client,
                algorithm,
                min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
                state: Default::default(),
                fetching: Default::default(),
            }))
        } else {
            Keys::Static(match algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes())
                    .map_err(|e| AuthError::Key(e.to_string()))?,
                Algorithm::EdDSA => DecodingKey::from_ed_pem(config.public_key_pem.as_bytes())
                    .map_err(|e| AuthError::Key(e.to_string()))?,
                _ => DecodingKey::from_secret(config.hs256_secret.expose().as_bytes()),
            })
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        // A token is not valid before its `nbf` (within the same leeway).
        validation.validate_nbf = true;
        let issuer = (!config.issuer.is_empty()).then(|| config.issuer.clone());
        let audience = (!config.audience.is_empty()).then(|| config.audience.clone());
        match &issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        // A configured claim must be present, not merely right when present.
        let mut required = vec!["exp", "sub"];
        // An identity is its issuer and subject: both must be there.
        required.extend((issuer.is_some() || registered).then_some("iss"));
        required.extend(audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        let issuing = config.dev_mode.then(|| {
            (
                EncodingKey::from_secret(config.hs256_secret.expose().as_bytes()),
                config.dev_token_ttl_secs,
            )
        });
        let identities = registered.then(|| {
            IdentityCache::new(
                Duration::from_secs(config.identity_cache_ttl_secs),
                config.identity_cache_entries,
            )
        });
        Ok(Self {
            keys,
            validation,
            issuing,
            issuer,
            audience,
            identities,
        })
    }

    /// The viewer named by an `Authorization` header value (a user id
    /// token: see [`Authenticator::verify_with_expiry`]).
    pub async fn verify_header(&self, header: &str) -> Result<Viewer, AuthError> {
        self.verify(Self::bearer_token(header)?).await
    }

    /// The viewer named by a bare token (a user id token: see
    /// [`Authenticator::verify_with_expiry`]).
    pub async fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        self.verify_with_expiry(token)
            .await
            .map(|(viewer, _)| viewer)
    }

    /// The viewer named by a bare token whose subject is a user id, and
    /// when the token expires (seconds since the Unix epoch). A token naming
    /// an identity (`auth.subjects = "registered"`) is
    /// [`AuthError::Unresolved`]: see [`Authenticator::verify_bearer`].
    pub async fn verify_with_expiry(&self, token: &str) -> Result<(Viewer, u64), AuthError> {
        match self.verify_bearer(token).await? {
            (Bearer::User(viewer), expires) => Ok((viewer, expires)),
            (Bearer::Identity(_), _) => Err(AuthError::Unresolved),
        }
    }

    /// Whom a bare token names, and when it expires (seconds since the
    /// Unix epoch): a live subscription ends then.
    pub async fn verify_bearer(&self, token: &str) -> Result<(Bearer, u64), AuthError> {
        let key = match &self.keys {
            Keys::Static(key) => key.clone(),
            Keys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token)?;
                jwks.key(header.kid.as_deref()).await?
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)?.claims;
        let bearer = if self.identities.is_some() {
            let issuer = claims.iss.unwrap_or_default();
            let subject = claims.sub;
            let fits = |value: &str, max: usize| !value.is_empty() && value.len() <= max;
            if !fits(&issuer, MAX_ISSUER_BYTES) || !fits(&subject, MAX_SUBJECT_BYTES) {
                return Err(AuthError::BadIdentity);
            }
            Bearer::Identity(Identity { issuer, subject })
        } else {
            let user_id = claims
                .sub
                .parse::<u64>()
                .ok()
                .filter(|id| *id != 0)
                .ok_or(AuthError::BadSubject)?;
            Bearer::User(Viewer { user_id })
        };
        Ok((bearer, claims.exp))
    }

    /// Registered identities' users, remembered; `None` unless
    /// `auth.subjects = "registered"`.
    pub fn identities(&self) -> Option<&IdentityCache> {
        self.identities.as_ref()
    }

    /// A bearer token's bare token (`Authorization` header value).
    pub fn bearer_token(header: &str) -> Result<&str, AuthError> {
        Ok(header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim())
    }

    /// Whether development sign-up and token issuance are enabled.
    pub fn dev_mode(&self) -> bool {
        self.issuing.is_some()
    }

    /// Issues an HS256 token for `user_id` (development mode only).
    pub fn issue(&self, user_id: u64) -> Option<String> {
        let (key, ttl) = self.issuing.as_ref()?;
        let now = warble_mesh::time::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            exp: now + ttl,
            iat: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_config() -> AuthConfig {
        AuthConfig {
            hs256_secret: "a-development-secret-of-at-least-32-bytes".into(),
            dev_mode: true,
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn issued_tokens_verify_and_tampered_ones_do_not() {
        let auth = Authenticator::new(&dev_config()).unwrap();
        let token = auth.issue(42).unwrap();
        assert_eq!(
            auth.verify_header(&format!("Bearer {token}"))
                .await
                .unwrap(),
            Viewer { user_id: 42 }
        );
        // Change the signature's first character: it carries six whole bits
        // (the last one carries padding bits a lenient decoder ignores), and
        // always to a different character, so the signature really changes.
        let signature_start = token.rfind('.').unwrap() + 1;
        let replacement = if token[signature_start..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        let mut tampered = token.clone();
        tampered.replace_range(signature_start..signature_start + 1, replacement);
        assert_ne!(tampered, token);
        assert!(auth.verify(&tampered).await.is_err());
        assert!(matches!(
            auth.verify_header(&token).await,
            Err(AuthError::Malformed)
        ));
        let other = Authenticator::new(&AuthConfig {
            hs256_secret: "another-development-secret-of-32-bytes!".into(),
            ..dev_config()
        })
        .unwrap();
        assert!(
            other.verify(&token).await.is_err(),
            "a token signed with another key is rejected"
        );
    }

    /// A token signed with `config`'s HS256 secret carrying `claims`.
    fn signed(config: &AuthConfig, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(config.hs256_secret.expose().as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn not_before_is_honoured() {
        let config = dev_config();
        let auth = Authenticator::new(&config).unwrap();
        let now = warble_mesh::time::now_ms() / 1000;
        let later = signed(
            &config,
            serde_json::json!({ "sub": "7", "exp": now + 3_600, "iat": now, "nbf": now + 600 }),
        );
        assert!(
            auth.verify(&later).await.is_err(),
            "not valid for ten minutes"
        );
        let now_valid = signed(
            &config,
            serde_json::json!({ "sub": "7", "exp": now + 3_600, "iat": now, "nbf": now - 1 }),
        );
        assert_eq!(
            auth.verify(&now_valid).await.unwrap(),
            Viewer { user_id: 7 }
        );
    }

    #[tokio::test]
    async fn the_audience_may_be_a_string_or_an_array() {
        let config = AuthConfig {
            audience: "web".into(),
            ..dev_config()
        };
        let auth = Authenticator::new(&config).unwrap();
        let now = warble_mesh::time::now_ms() / 1000;
        let claims = |aud: serde_json::Value| serde_json::json!({ "sub": "7", "exp": now + 3_600, "iat": now, "aud": aud });
        for accepted in [
            serde_json::json!("web"),
            serde_json::json!(["mobile", "web"]),
        ] {
            let token = signed(&config, claims(accepted.clone()));
            assert_eq!(
                auth.verify(&token).await.unwrap(),
                Viewer { user_id: 7 },
                "{accepted}"
            );
        }
        for refused in [
            serde_json::json!("mobile"),
            serde_json::json!(["mobile"]),
            serde_json::json!([]),
        ] {
            let token = signed(&config, claims(refused.clone()));
            assert!(auth.verify(&token).await.is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn unsigned_and_foreign_algorithm_tokens_are_refused() {
        let config = dev_config();
        let auth = Authenticator::new(&config).unwrap();
        let token = auth.issue(42).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        // `alg: none`, with and without a signature part.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        for forged in [
            format!("{none_header}.{payload}."),
            format!("{none_header}.{payload}"),
        ] {
            assert!(auth.verify(&forged).await.is_err(), "{forged}");
        }
    }

    fn registered_config() -> AuthConfig {
        AuthConfig {
            hs256_secret: "a-production-secret-of-at-least-32-bytes".into(),
            issuer: "https://id.example/".into(),
            audience: "warble".into(),
            subjects: SubjectMapping::Registered,
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn registered_subjects_name_identities_not_user_ids() {
        let config = registered_config();
        let auth = Authenticator::new(&config).unwrap();
        assert!(auth.identities().is_some());
        let now = warble_mesh::time::now_ms() / 1000;
        let claims = |sub: &str| serde_json::json!({ "sub": sub, "exp": now + 600, "iat": now, "iss": "https://id.example/", "aud": "warble" });
        let (bearer, expires) = auth
            .verify_bearer(&signed(&config, claims("auth0|42")))
            .await
            .unwrap();
        assert_eq!(
            bearer,
            Bearer::Identity(Identity {
                issuer: "https://id.example/".into(),
                subject: "auth0|42".into(),
            })
        );
        assert_eq!(expires, now + 600);
        // A numeric subject is the provider's too, never a Warble user id.
        let numeric = signed(&config, claims("7"));
        assert!(matches!(
            auth.verify_bearer(&numeric).await,
            Ok((Bearer::Identity(_), _))
        ));
        assert!(matches!(
            auth.verify(&numeric).await,
            Err(AuthError::Unresolved)
        ));
        // Subjects are bounded like the identities graph-svc keeps.
        assert!(
            auth.verify_bearer(&signed(&config, claims(&"s".repeat(MAX_SUBJECT_BYTES))))
                .await
                .is_ok()
        );
        for refused in ["", &"s".repeat(MAX_SUBJECT_BYTES + 1)] {
            assert!(
                auth.verify_bearer(&signed(&config, claims(refused)))
                    .await
                    .is_err(),
                "{} bytes",
                refused.len()
            );
        }
        // In the default mode, the same token's subject must be a user id.
        let by_id = Authenticator::new(&AuthConfig {
            subjects: SubjectMapping::UserId,
            ..config.clone()
        })
        .unwrap();
        assert!(by_id.identities().is_none());
        assert_eq!(
            by_id.verify_bearer(&numeric).await.unwrap().0,
            Bearer::User(Viewer { user_id: 7 })
        );
        assert!(matches!(
            by_id.verify(&signed(&config, claims("auth0|42"))).await,
            Err(AuthError::BadSubject)
        ));
    }

    #[tokio::test]
    async fn an_identity_needs_an_issuer_and_dev_tokens_cannot_be_identities() {
        let config = AuthConfig {
            issuer: String::new(),
            ..registered_config()
        };
        let auth = Authenticator::new(&config).unwrap();
        let now = warble_mesh::time::now_ms() / 1000;
        let no_issuer = signed(
            &config,
            serde_json::json!({ "sub": "auth0|42", "exp": now + 600, "iat": now, "aud": "warble" }),
        );
        assert!(auth.verify_bearer(&no_issuer).await.is_err());
        assert!(matches!(
            Authenticator::new(&AuthConfig {
                dev_mode: true,
                ..registered_config()
            }),
            Err(AuthError::Config(_))
        ));
    }

    #[tokio::test]
    async fn issuer_and_audience_are_enforced_when_configured() {
        let strict = Authenticator::new(&AuthConfig {
            issuer: "warble".into(),
            audience: "web".into(),
            ..dev_config()
        })
        .unwrap();
        let token = strict.issue(7).unwrap();
        assert!(strict.verify(&token).await.is_ok());
        let loose_token = Authenticator::new(&dev_config()).unwrap().issue(7).unwrap();
        assert!(strict.verify(&loose_token).await.is_err());
    }

    /// A JWKS server on loopback: serves `jwks` (switchable), counts fetches.
    struct JwksServer {
        url: String,
        served: Arc<std::sync::Mutex<&'static str>>,
        fetches: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl JwksServer {
        async fn start(initial: &'static str) -> Self {
            let served = Arc::new(std::sync::Mutex::new(initial));
            let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let app = axum::Router::new().route(
                "/.well-known/jwks.json",
                axum::routing::get({
                    let served = served.clone();
                    let fetches = fetches.clone();
                    move || async move {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = *served.lock().unwrap();
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!(
                "http://{}/.well-known/jwks.json",
                listener.local_addr().unwrap()
            );
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                url,
                served,
                fetches,
            }
        }

        fn fetches(&self) -> usize {
            self.fetches.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    const JWKS_A: &str = include_str!("../tests/data/jwks/jwks-a.json");
    const JWKS_B: &str = include_str!("../tests/data/jwks/jwks-b.json");
    const KEY_A: &str = include_str!("../tests/data/jwks/key-a.pem");
    const KEY_B: &str = include_str!("../tests/data/jwks/key-b.pem");

    /// An EdDSA token for user 7, signed with `pem`, naming key `kid`.
    fn ed_token(pem: &str, kid: &str) -> String {
        let now = warble_mesh::time::now_ms() / 1000;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({ "sub": "7", "iat": now, "exp": now + 600, "iss": "https://id.example", "aud": "warble" }),
            &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn jwks_config(url: &str) -> AuthConfig {
        AuthConfig {
            algorithm: JwtAlgorithm::EdDSA,
            jwks_url: url.to_owned(),
            jwks_min_refresh_secs: 600,
            issuer: "https://id.example".into(),
            audience: "warble".into(),
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn jwks_keys_are_chosen_by_kid_cached_and_refetched_when_they_rotate() {
        let server = JwksServer::start(JWKS_A).await;
        let auth = Authenticator::new(&jwks_config(&server.url)).unwrap();
        assert_eq!(server.fetches(), 0, "keys are fetched when first needed");

        let token_a = ed_token(KEY_A, "key-a");
        assert_eq!(auth.verify(&token_a).await.unwrap(), Viewer { user_id: 7 });
        assert_eq!(auth.verify(&token_a).await.unwrap(), Viewer { user_id: 7 });
        assert_eq!(server.fetches(), 1, "the key is cached");

        // A signature by another key under key-a's id fails.
        assert!(auth.verify(&ed_token(KEY_B, "key-a")).await.is_err());
        // An unknown kid within the refresh interval costs no fetch.
        assert!(matches!(
            auth.verify(&ed_token(KEY_B, "key-b")).await,
            Err(AuthError::UnknownKey(_))
        ));
        assert_eq!(server.fetches(), 1);

        // The provider rotates to key-b: once the interval has passed (none
        // here), the unknown kid triggers one fetch and verifies.
        *server.served.lock().unwrap() = JWKS_B;
        let eager = Authenticator::new(&AuthConfig {
            jwks_min_refresh_secs: 0,
            ..jwks_config(&server.url)
        })
        .unwrap();
        assert!(eager.verify(&token_a).await.is_err(), "key-a is gone");
        assert_eq!(server.fetches(), 2);
        assert_eq!(
            eager.verify(&ed_token(KEY_B, "key-b")).await.unwrap(),
            Viewer { user_id: 7 }
        );
        assert_eq!(server.fetches(), 2, "key-b came with that fetch");

        // A token without a kid, or with HS256, is refused.
        let mut no_kid = Header::new(Algorithm::EdDSA);
        no_kid.kid = None;
        let now = warble_mesh::time::now_ms() / 1000;
        let claims = serde_json::json!({ "sub": "7", "iat": now, "exp": now + 600, "iss": "https://id.example", "aud": "warble" });
        let unnamed = jsonwebtoken::encode(
            &no_kid,
            &claims,
            &EncodingKey::from_ed_pem(KEY_B.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(eager.verify(&unnamed).await.is_err());
        let mut hmac = Header::new(Algorithm::HS256);
        hmac.kid = Some("key-b".into());
        let hmac_token =
            jsonwebtoken::encode(&hmac, &claims, &EncodingKey::from_secret(b"key-b")).unwrap();
        assert!(eager.verify(&hmac_token).await.is_err());
    }

    #[tokio::test]
    async fn an_unreachable_jwks_refuses_tokens_without_panicking() {
        // A port nobody listens on (bound, then released).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let auth = Authenticator::new(&jwks_config(&format!("http://{addr}/jwks.json"))).unwrap();
        assert!(matches!(
            auth.verify(&ed_token(KEY_A, "key-a")).await,
            Err(AuthError::Jwks(_))
        ));
    }
}
