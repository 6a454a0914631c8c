//! Bearer-token authentication. The viewer's id comes from the verified
//! token's `sub` claim, never from query arguments.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, JwtAlgorithm};

/// The authenticated user making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    /// Their user id.
    pub user_id: u64,
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
    /// The configured key cannot be used.
    #[error("auth key is unusable: {0}")]
    Key(String),
}

/// Verifies tokens (and issues them in development mode).
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    validation: Validation,
    issuing: Option<(EncodingKey, u64)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the verifier (and the dev-mode issuer) from config.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthError> {
        let (algorithm, decoding) = match config.algorithm {
            JwtAlgorithm::HS256 => (
                Algorithm::HS256,
                DecodingKey::from_secret(config.hs256_secret.expose().as_bytes()),
            ),
            JwtAlgorithm::RS256 => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes())
                    .map_err(|e| AuthError::Key(e.to_string()))?,
            ),
            JwtAlgorithm::EdDSA => (
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(config.public_key_pem.as_bytes())
                    .map_err(|e| AuthError::Key(e.to_string()))?,
            ),
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
        required.extend(issuer.as_ref().map(|_| "iss"));
        required.extend(audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        let issuing = config.dev_mode.then(|| {
            (
                EncodingKey::from_secret(config.hs256_secret.expose().as_bytes()),
                config.dev_token_ttl_secs,
            )
        });
        Ok(Self {
            decoding,
            validation,
            issuing,
            issuer,
            audience,
        })
    }

    /// The viewer named by an `Authorization` header value.
    pub fn verify_header(&self, header: &str) -> Result<Viewer, AuthError> {
        self.verify(Self::bearer_token(header)?)
    }

    /// The viewer named by a bare token.
    pub fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        self.verify_with_expiry(token).map(|(viewer, _)| viewer)
    }

    /// The viewer named by a bare token, and when the token expires
    /// (seconds since the Unix epoch): a live subscription ends then.
    pub fn verify_with_expiry(&self, token: &str) -> Result<(Viewer, u64), AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        let user_id = data
            .claims
            .sub
            .parse::<u64>()
            .ok()
            .filter(|id| *id != 0)
            .ok_or(AuthError::BadSubject)?;
        Ok((Viewer { user_id }, data.claims.exp))
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

    #[test]
    fn issued_tokens_verify_and_tampered_ones_do_not() {
        let auth = Authenticator::new(&dev_config()).unwrap();
        let token = auth.issue(42).unwrap();
        assert_eq!(
            auth.verify_header(&format!("Bearer {token}")).unwrap(),
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
        assert!(auth.verify(&tampered).is_err());
        assert!(matches!(
            auth.verify_header(&token),
            Err(AuthError::Malformed)
        ));
        let other = Authenticator::new(&AuthConfig {
            hs256_secret: "another-development-secret-of-32-bytes!".into(),
            ..dev_config()
        })
        .unwrap();
        assert!(
            other.verify(&token).is_err(),
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

    #[test]
    fn not_before_is_honoured() {
        let config = dev_config();
        let auth = Authenticator::new(&config).unwrap();
        let now = warble_mesh::time::now_ms() / 1000;
        let later = signed(
            &config,
            serde_json::json!({ "sub": "7", "exp": now + 3_600, "iat": now, "nbf": now + 600 }),
        );
        assert!(auth.verify(&later).is_err(), "not valid for ten minutes");
        let now_valid = signed(
            &config,
            serde_json::json!({ "sub": "7", "exp": now + 3_600, "iat": now, "nbf": now - 1 }),
        );
        assert_eq!(auth.verify(&now_valid).unwrap(), Viewer { user_id: 7 });
    }

    #[test]
    fn the_audience_may_be_a_string_or_an_array() {
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
                auth.verify(&token).unwrap(),
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
            assert!(auth.verify(&token).is_err(), "{refused}");
        }
    }

    #[test]
    fn unsigned_and_foreign_algorithm_tokens_are_refused() {
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
            assert!(auth.verify(&forged).is_err(), "{forged}");
        }
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let strict = Authenticator::new(&AuthConfig {
            issuer: "warble".into(),
            audience: "web".into(),
            ..dev_config()
        })
        .unwrap();
        let token = strict.issue(7).unwrap();
        assert!(strict.verify(&token).is_ok());
        let loose_token = Authenticator::new(&dev_config()).unwrap().issue(7).unwrap();
        assert!(strict.verify(&loose_token).is_err());
    }
}
