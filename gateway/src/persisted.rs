//! Persisted documents: Automatic Persisted Queries (the Apollo protocol)
//! and the trusted-documents mode.
//!
//! **APQ.** A client sends `extensions.persistedQuery = { version: 1,
//! sha256Hash }` and no `query`. A hash the gateway knows runs its query; an
//! unknown one answers `PERSISTED_QUERY_NOT_FOUND`, and the client sends the
//! query with its hash once, which the gateway checks (SHA-256 of the text)
//! and keeps, within a bounded number of bytes, once the query has run.
//! Requests then carry 64 hex characters instead of the whole document, and
//! GET requests (cacheable by CDNs) fit in a URL.
//!
//! **Trusted documents.** With `trusted_documents_file` set, the gateway
//! runs only the documents of that manifest: a JSON object from SHA-256 hex
//! hash to document text (the `persisted-documents.json` that Relay's
//! compiler and graphql-codegen's client preset produce). A request names
//! a document by hash (`extensions.persistedQuery.sha256Hash`, or a
//! `documentId`) or sends its exact text; anything else is `FORBIDDEN`
//! before it is parsed. Production can so refuse every query its own
//! frontends do not send.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_graphql::{Request, ServerError, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{ErrorCode, gql_error};

/// Query text the APQ store keeps, in bytes.
pub const MAX_PERSISTED_BYTES: usize = 4 * 1024 * 1024;

/// Lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Why a trusted-documents manifest cannot be used (start-up fails).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a JSON object of strings.
    #[error("{path} is not a JSON object from SHA-256 hash to document text: {reason}")]
    Shape { path: String, reason: String },
    /// A key is not the SHA-256 of its document.
    #[error("{path}: key {hash} is not the SHA-256 of its document (that is {actual})")]
    Hash {
        path: String,
        hash: String,
        actual: String,
    },
}

/// The documents a trusted-documents gateway runs, by hash.
#[derive(Debug, Clone, Default)]
pub struct TrustedDocuments {
    by_hash: Arc<HashMap<String, Arc<str>>>,
}

impl TrustedDocuments {
    /// Loads and checks a manifest: every key must be the SHA-256 of its text.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?;
        let manifest: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|error| ManifestError::Shape {
                path: shown.clone(),
                reason: error.to_string(),
            })?;
        let mut by_hash = HashMap::with_capacity(manifest.len());
        for (hash, document) in manifest {
            let hash = hash.to_ascii_lowercase();
            let actual = sha256_hex(&document);
            if hash != actual {
                return Err(ManifestError::Hash {
                    path: shown,
                    hash,
                    actual,
                });
            }
            by_hash.insert(hash, Arc::from(document));
        }
        Ok(Self {
            by_hash: Arc::new(by_hash),
        })
    }

    /// Documents in the manifest.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the manifest is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The APQ store: query text by hash, bounded in bytes (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct PersistedQueries {
    shared: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    by_hash: HashMap<String, Arc<str>>,
    bytes: usize,
}

impl PersistedQueries {
    fn get(&self, hash: &str) -> Option<Arc<str>> {
        self.lock().by_hash.get(hash).cloned()
    }

    /// Keeps `query` under `hash` (already checked to match).
    pub fn remember(&self, hash: &str, query: &str) {
        if query.len() > MAX_PERSISTED_BYTES {
            return;
        }
        let mut store = self.lock();
        if store.by_hash.contains_key(hash) {
            return;
        }
        while store.bytes + query.len() > MAX_PERSISTED_BYTES {
            let Some(evicted) = store.by_hash.keys().next().cloned() else {
                break;
            };
            if let Some(text) = store.by_hash.remove(&evicted) {
                store.bytes -= text.len();
            }
        }
        store.bytes += query.len();
        store.by_hash.insert(hash.to_owned(), Arc::from(query));
    }

    /// Queries held.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a gateway treats persisted documents.
#[derive(Debug, Clone)]
pub enum DocumentPolicy {
    /// Any document runs; APQ hashes are honoured when `apq` is on.
    Open {
        /// Whether Automatic Persisted Queries are on.
        apq: bool,
        /// The APQ store.
        store: PersistedQueries,
    },
    /// Only the manifest's documents run.
    Trusted(TrustedDocuments),
}

/// What to do with a request once its document is resolved.
#[derive(Debug, Default)]
pub struct Resolved {
    /// An APQ hash to keep the query under once it has run.
    pub remember_as: Option<String>,
}

/// The hash a request names: `extensions.persistedQuery.sha256Hash` (APQ),
/// or a top-level `documentId` extension (the trusted-documents convention).
fn requested_hash(request: &Request) -> Result<Option<String>, ServerError> {
    if let Some(persisted) = request.extensions.get("persistedQuery") {
        let Value::Object(fields) = persisted else {
            return Err(bad_input("extensions.persistedQuery must be an object"));
        };
        if let Some(version) = fields.get("version")
            && *version != Value::from(1)
        {
            return Err(bad_input("only persistedQuery version 1 is supported"));
        }
        return match fields.get("sha256Hash") {
            Some(Value::String(hash)) if is_sha256_hex(hash) => Ok(Some(hash.to_ascii_lowercase())),
            _ => Err(bad_input(
                "persistedQuery.sha256Hash must be 64 hexadecimal characters",
            )),
        };
    }
    match request.extensions.get("documentId") {
        None => Ok(None),
        Some(Value::String(id)) => {
            let hash = id.strip_prefix("sha256:").unwrap_or(id);
            if is_sha256_hex(hash) {
                Ok(Some(hash.to_ascii_lowercase()))
            } else {
                Err(bad_input("documentId must be a SHA-256 hash in hex"))
            }
        }
        Some(_) => Err(bad_input("documentId must be a string")),
    }
}

fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn bad_input(message: &str) -> ServerError {
    gql_error(ErrorCode::BadUserInput, message).into_server_error(Default::default())
}

impl DocumentPolicy {
    /// Puts the document `request` names into `request.query`, or refuses it.
    pub fn resolve(&self, request: &mut Request) -> Result<Resolved, ServerError> {
        let hash = requested_hash(request)?;
        match self {
            DocumentPolicy::Trusted(trusted) => {
                let hash = match hash {
                    Some(hash) => hash,
                    None => sha256_hex(&request.query),
                };
                let Some(document) = trusted.by_hash.get(&hash) else {
                    return Err(gql_error(
                        ErrorCode::Forbidden,
                        "this gateway runs trusted documents only, and this is not one of them",
                    )
                    .into_server_error(Default::default()));
                };
                if request.query.is_empty() || request.query != **document {
                    request.query = document.to_string();
                }
                Ok(Resolved::default())
            }
            DocumentPolicy::Open { apq, store } => {
                let Some(hash) = hash else {
                    return Ok(Resolved::default());
                };
                if !apq {
                    return Err(gql_error(
                        ErrorCode::PersistedQueryNotSupported,
                        "PersistedQueryNotSupported",
                    )
                    .into_server_error(Default::default()));
                }
                if request.query.is_empty() {
                    return match store.get(&hash) {
                        Some(query) => {
                            request.query = query.to_string();
                            Ok(Resolved::default())
                        }
                        None => Err(gql_error(
                            ErrorCode::PersistedQueryNotFound,
                            "PersistedQueryNotFound",
                        )
                        .into_server_error(Default::default())),
                    };
                }
                if sha256_hex(&request.query) != hash {
                    return Err(bad_input("provided sha does not match query"));
                }
                Ok(Resolved {
                    remember_as: Some(hash),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        let persisted = serde_json::json!({ "version": 1, "sha256Hash": hash });
        request.extensions.0.insert(
            "persistedQuery".into(),
            Value::from_json(persisted).unwrap(),
        );
        request
    }

    fn code(error: &ServerError) -> String {
        error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .map(|code| code.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn apq_asks_for_an_unknown_hash_checks_the_text_and_then_knows_it() {
        let policy = DocumentPolicy::Open {
            apq: true,
            store: PersistedQueries::default(),
        };
        let query = "{ __typename }";
        let hash = sha256_hex(query);
        let error = policy.resolve(&mut with_hash("", &hash)).unwrap_err();
        assert_eq!(code(&error), "\"PERSISTED_QUERY_NOT_FOUND\"");
        let wrong = policy
            .resolve(&mut with_hash("{ other }", &hash))
            .unwrap_err();
        assert_eq!(code(&wrong), "\"BAD_USER_INPUT\"");
        let resolved = policy.resolve(&mut with_hash(query, &hash)).unwrap();
        assert_eq!(resolved.remember_as.as_deref(), Some(hash.as_str()));
        let DocumentPolicy::Open { store, .. } = &policy else {
            unreachable!()
        };
        store.remember(&hash, query);
        let mut by_hash = with_hash("", &hash);
        policy.resolve(&mut by_hash).unwrap();
        assert_eq!(by_hash.query, query);
    }

    #[test]
    fn the_apq_store_stays_within_its_byte_bound() {
        let store = PersistedQueries::default();
        let text = "x".repeat(MAX_PERSISTED_BYTES / 3);
        for n in 0..10 {
            store.remember(&format!("{n:064}"), &text);
            assert!(store.lock().bytes <= MAX_PERSISTED_BYTES);
        }
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn trusted_mode_runs_only_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.json");
        let allowed = "query Home { viewer { id } }";
        std::fs::write(
            &path,
            serde_json::json!({ sha256_hex(allowed): allowed }).to_string(),
        )
        .unwrap();
        let policy = DocumentPolicy::Trusted(TrustedDocuments::load(&path).unwrap());
        let mut by_hash = with_hash("", &sha256_hex(allowed));
        policy.resolve(&mut by_hash).unwrap();
        assert_eq!(by_hash.query, allowed);
        let mut by_text = Request::new(allowed);
        policy.resolve(&mut by_text).unwrap();
        for refused in [
            Request::new("{ __typename }"),
            with_hash("", &sha256_hex("{ __typename }")),
        ] {
            let mut refused = refused;
            let error = policy.resolve(&mut refused).unwrap_err();
            assert_eq!(code(&error), "\"FORBIDDEN\"");
        }
        // A hash naming a trusted document runs that document, whatever text came with it.
        let mut swapped = with_hash("{ __schema { types { name } } }", &sha256_hex(allowed));
        policy.resolve(&mut swapped).unwrap();
        assert_eq!(swapped.query, allowed);
    }

    #[test]
    fn a_manifest_whose_keys_are_not_the_hashes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.json");
        std::fs::write(
            &path,
            r#"{ "0000000000000000000000000000000000000000000000000000000000000000": "{ a }" }"#,
        )
        .unwrap();
        assert!(matches!(
            TrustedDocuments::load(&path),
            Err(ManifestError::Hash { .. })
        ));
        std::fs::write(&path, "[]").unwrap();
        assert!(matches!(
            TrustedDocuments::load(&path),
            Err(ManifestError::Shape { .. })
        ));
    }
}
