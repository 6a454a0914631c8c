//! Secrets in config: values that must never reach a log line, an error
//! message or `--print-config`.
//!
//! [`Secret`] holds a password, key or token. Its `Debug`, `Display` and
//! `Serialize` print `[redacted]` (an empty secret prints as empty, so
//! "none configured" stays visible); only [`Secret::expose`] reads the value,
//! which makes every use easy to find. Secrets have no defaults in code
//! except empty: a real value always comes from a file or an env var.
//!
//! URLs can carry credentials too (`redis://user:pass@host`): print them
//! through [`redact_url`], which keeps the user name and hides the password.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as.
pub const REDACTED: &str = "[redacted]";

/// A password, key or token (see the module docs).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call only where the secret is used (a handshake,
    /// a signature), never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the secret prints as: empty when unset, `[redacted]` otherwise.
    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { REDACTED }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        // `--print-config` output fed back as a config file would otherwise
        // silently set every password to the placeholder.
        if value == REDACTED {
            return Err(serde::de::Error::custom(
                "holds the `[redacted]` placeholder from printed config; supply the real secret",
            ));
        }
        Ok(Self(value))
    }
}

/// `url` with the password of its user info replaced by `[redacted]`
/// (`redis://app:hunter2@host:6379` → `redis://app:[redacted]@host:6379`).
/// A comma-separated list (cluster seeds) is redacted entry by entry; text
/// without credentials comes back unchanged.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    if !url.contains('@') {
        return Cow::Borrowed(url);
    }
    if url.contains(',') {
        let parts: Vec<Cow<'_, str>> = url.split(',').map(redact_one_url).collect();
        return Cow::Owned(parts.join(","));
    }
    redact_one_url(url)
}

fn redact_one_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    // The last '@' ends the user info: a password may itself contain '@'.
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let user_info = &authority[..at];
    let user = user_info.split(':').next().unwrap_or("");
    let redacted_info = if user_info.contains(':') {
        format!("{user}:{REDACTED}")
    } else {
        // `redis://token@host`: a lone user-info part is a credential too.
        REDACTED.to_owned()
    };
    Cow::Owned(format!(
        "{}{redacted_info}{}",
        &url[..scheme_end],
        &rest[at..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_never_show_the_value() {
        let secret = Secret::new("hunter2-hunter2");
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            serde_json::to_string(&secret).unwrap(),
            toml::to_string(&std::collections::BTreeMap::from([("k", secret.clone())])).unwrap(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }

    #[test]
    fn an_empty_secret_shows_as_empty_and_round_trips() {
        let empty = Secret::default();
        assert_eq!(format!("{empty}"), "");
        let json = serde_json::to_string(&empty).unwrap();
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), empty);
    }

    #[test]
    fn the_printed_placeholder_is_refused_as_a_value() {
        let error = serde_json::from_str::<Secret>("\"[redacted]\"").unwrap_err();
        assert!(error.to_string().contains("real secret"), "{error}");
        assert_eq!(
            serde_json::from_str::<Secret>("\"s3cret\"")
                .unwrap()
                .expose(),
            "s3cret"
        );
    }

    #[test]
    fn url_passwords_are_redacted_and_the_rest_kept() {
        let cases = [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "redis://app:hunter2@cache:6379/0",
                "redis://app:[redacted]@cache:6379/0",
            ),
            (
                "rediss://:hunter2@cache:6380",
                "rediss://:[redacted]@cache:6380",
            ),
            ("redis://tok3n@cache", "redis://[redacted]@cache"),
            (
                "bolt://neo4j:p@ss@graph:7687?x=1",
                "bolt://neo4j:[redacted]@graph:7687?x=1",
            ),
            (
                "redis://a:pw1@n1:7000,redis://n2:7001,redis://b:pw2@n3:7002",
                "redis://a:[redacted]@n1:7000,redis://n2:7001,redis://b:[redacted]@n3:7002",
            ),
            ("not a url @ all", "not a url @ all"),
            ("mailto-ish user@example.com", "mailto-ish user@example.com"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }
}
