//! Mutual TLS between services, and which peer may call which RPC.
//!
//! With `tls.enabled`, a service presents its certificate to every caller
//! and to every service it calls, and accepts only callers presenting a
//! certificate signed by the mesh CA. A peer's **identity** is the name in
//! its certificate's `spiffe://` URI SAN (the last path segment:
//! `spiffe://warble/gateway` names `gateway`), which is how cert-manager's
//! `uris` and SPIFFE issuers name workloads.
//!
//! [`PeerRules`] then say which identities may call which RPC (the
//! `server.allow_peers` key). Rules read `<rpc>=<peer>[,<peer>...]`,
//! separated by `;`, where `<rpc>` is a method (`warble.tweet.v1.TweetService/CreateTweet`),
//! a whole service (`warble.tweet.v1.TweetService/*`) or `*`, and a peer is
//! an identity or `*` (any mesh peer). The most specific rule naming an RPC
//! decides; an RPC no rule names is refused. Health checks are open to every
//! mesh peer. A refused call is PERMISSION_DENIED, naming the peer and the RPC.
//!
//! With TLS off (`warble dev`, the default), nothing changes: no
//! certificates, and every caller may call every RPC.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::Request;
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tower::{Layer, Service};

use crate::config::ConfigError;

/// Calls every mesh peer may make, whatever the rules say: probes and
/// load balancers check health.
const ALWAYS_OPEN_SERVICE: &str = "grpc.health.v1.Health";

/// The `tls.*` section: this process's mesh certificate (`server.tls` in a
/// service, `mesh_tls` in the gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshTlsConfig {
    /// Use mutual TLS for every gRPC call this process serves and makes.
    /// Off by default (`warble dev` and plaintext meshes).
    pub enabled: bool,
    /// This process's certificate chain (PEM), presented to callers and to
    /// the services it calls; its `spiffe://` URI SAN names the process
    /// to its peers. Required when `enabled`.
    pub cert_file: String,
    /// The certificate's private key (PEM). Required when `enabled`.
    pub key_file: String,
    /// The mesh CA (PEM): peers must present a certificate it signed, and
    /// servers this process calls must too. Required when `enabled`.
    pub ca_file: String,
}

/// A loaded mesh certificate: what a server needs to require client
/// certificates, and what a client needs to present one.
#[derive(Debug, Clone)]
pub struct MeshTls {
    identity: Identity,
    ca: Certificate,
}

impl MeshTlsConfig {
    /// Validates the section (`prefix` is where it sits), reading and
    /// checking the files when TLS is on.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        self.load(prefix).map(|_| ())
    }

    /// The certificate and CA, read from their files, or `None` when TLS is
    /// off. Errors name the key whose file is missing or unusable.
    pub fn load(&self, prefix: &str) -> Result<Option<MeshTls>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let read = |key: &str, path: &str| {
            let key = format!("{prefix}.{key}");
            if path.trim().is_empty() {
                return Err(ConfigError::invalid(
                    &key,
                    format!("must name a PEM file when `{prefix}.enabled` is true"),
                ));
            }
            std::fs::read(path)
                .map_err(|error| ConfigError::invalid(&key, format!("cannot read {path}: {error}")))
        };
        let cert = read("cert_file", &self.cert_file)?;
        let key = read("key_file", &self.key_file)?;
        let ca = read("ca_file", &self.ca_file)?;
        for (name, pem) in [("cert_file", &cert), ("ca_file", &ca)] {
            if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::invalid(
                    &format!("{prefix}.{name}"),
                    "holds no PEM certificate",
                ));
            }
        }
        let tls = MeshTls {
            identity: Identity::from_pem(cert, key),
            ca: Certificate::from_pem(ca),
        };
        // Build both sides now, so a key that does not parse or does not
        // match its certificate fails at start-up, not at the first call.
        tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .map_err(|error| {
                ConfigError::invalid(
                    &format!("{prefix}.cert_file"),
                    format!(
                        "the certificate, its key (`{prefix}.key_file`) or the CA \
                         (`{prefix}.ca_file`) is unusable: {}",
                        error_chain(&error)
                    ),
                )
            })?;
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(tls.client_config())
            .map_err(|error| {
                ConfigError::invalid(
                    &format!("{prefix}.ca_file"),
                    format!("unusable as a client's trust root: {}", error_chain(&error)),
                )
            })?;
        Ok(Some(tls))
    }
}

/// `error` and its sources, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl MeshTls {
    /// A server's side: present the certificate, require one the CA signed.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// A client's side: trust only the mesh CA, present the certificate.
    /// The server's certificate must name the host the client dials.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }
}

/// The mesh identity a certificate (DER) names: the last path segment of
/// its first `spiffe://` URI SAN with a path.
pub fn peer_identity(certificate: &[u8]) -> Option<String> {
    let der = rustls_pki_types::CertificateDer::from(certificate);
    let certificate = webpki::EndEntityCert::try_from(&der).ok()?;
    certificate.valid_uri_names().find_map(|uri| {
        let (_trust_domain, path) = uri.strip_prefix("spiffe://")?.split_once('/')?;
        let name = path.rsplit('/').next()?;
        (!name.is_empty()).then(|| name.to_owned())
    })
}

/// Who may call which RPC (the `server.allow_peers` key; syntax in the
/// module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerRules {
    /// Keyed by `/package.Service/Method`, `/package.Service/` or `/`, so
    /// the most specific rule is a lookup of the path, then its service
    /// prefix, then `/`.
    rules: BTreeMap<String, Peers>,
}

/// The peers one rule admits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peers {
    Any,
    Named(BTreeSet<String>),
}

impl PeerRules {
    /// Parses rules; `key` names the config key in errors.
    pub fn parse(text: &str, key: &str) -> Result<Self, ConfigError> {
        let mut rules = BTreeMap::new();
        for rule in text
            .split(';')
            .map(str::trim)
            .filter(|rule| !rule.is_empty())
        {
            let invalid =
                |reason: String| ConfigError::invalid(key, format!("rule `{rule}`: {reason}"));
            let (rpc, peers) = rule
                .split_once('=')
                .ok_or_else(|| invalid("expected `<rpc>=<peer>[,<peer>...]`".into()))?;
            let rpc = rpc.trim();
            let path = if rpc == "*" {
                "/".to_owned()
            } else {
                let (service, method) = rpc.split_once('/').ok_or_else(|| {
                    invalid("an RPC is `package.Service/Method`, `package.Service/*` or `*`".into())
                })?;
                let well_formed = |part: &str| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                };
                if !well_formed(service) || !service.contains('.') {
                    return Err(invalid(format!(
                        "`{service}` is not a full service name such as warble.tweet.v1.TweetService"
                    )));
                }
                if method == "*" {
                    format!("/{service}/")
                } else if well_formed(method) && !method.contains('.') {
                    format!("/{service}/{method}")
                } else {
                    return Err(invalid(format!("`{method}` is not a method name")));
                }
            };
            let mut named = BTreeSet::new();
            let mut any = false;
            for peer in peers.split(',').map(str::trim) {
                match peer {
                    "" => return Err(invalid("an empty peer name".into())),
                    "*" => any = true,
                    name if name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') =>
                    {
                        named.insert(name.to_owned());
                    }
                    name => return Err(invalid(format!("`{name}` is not a peer name"))),
                }
            }
            let peers = if any { Peers::Any } else { Peers::Named(named) };
            if rules.insert(path, peers).is_some() {
                return Err(invalid(format!("`{rpc}` has a rule already")));
            }
        }
        Ok(Self { rules })
    }

    /// Whether `peer` (its identity, if its certificate names one) may call
    /// the RPC at `path` (`/package.Service/Method`); the refusal says why.
    pub fn check(&self, path: &str, peer: Option<&str>) -> Result<(), tonic::Status> {
        let service = path
            .rsplit_once('/')
            .map(|(service, _)| service)
            .unwrap_or_default();
        if service.strip_prefix('/') == Some(ALWAYS_OPEN_SERVICE) {
            return Ok(());
        }
        let rule = self
            .rules
            .get(path)
            .or_else(|| self.rules.get(&format!("{service}/")))
            .or_else(|| self.rules.get("/"));
        let rpc = path.trim_start_matches('/');
        let who = peer.map_or_else(
            || "a peer whose certificate names no spiffe:// identity".to_owned(),
            |name| format!("peer `{name}`"),
        );
        match (rule, peer) {
            (Some(Peers::Any), _) => Ok(()),
            (Some(Peers::Named(names)), Some(name)) if names.contains(name) => Ok(()),
            (Some(_), _) => Err(tonic::Status::permission_denied(format!(
                "{who} may not call {rpc}"
            ))),
            (None, _) => Err(tonic::Status::permission_denied(format!(
                "{who} may not call {rpc}: no rule in server.allow_peers admits anyone"
            ))),
        }
    }
}

/// The tower layer enforcing [`PeerRules`] on a TLS server (a pass-through
/// without rules).
#[derive(Debug, Clone, Default)]
pub struct PeerPolicyLayer {
    rules: Option<Arc<PeerRules>>,
}

impl PeerPolicyLayer {
    /// Enforces `rules`, or nothing when `None` (TLS off).
    pub fn new(rules: Option<PeerRules>) -> Self {
        Self {
            rules: rules.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for PeerPolicyLayer {
    type Service = PeerPolicy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerPolicy {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// See [`PeerPolicyLayer`].
#[derive(Debug, Clone)]
pub struct PeerPolicy<S> {
    inner: S,
    rules: Option<Arc<PeerRules>>,
}

impl<S> Service<Request<Body>> for PeerPolicy<S>
where
    S: Service<Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(rules) = &self.rules else {
            return Either::Left(self.inner.call(request));
        };
        let peer = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|certs| certs.first().and_then(|cert| peer_identity(cert)));
        match rules.check(request.uri().path(), peer.as_deref()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(refusal) => {
                tracing::warn!(
                    rpc = request.uri().path(),
                    peer = peer.as_deref().unwrap_or("(none)"),
                    "refused a call from a peer the allow-list does not admit"
                );
                Either::Right(ready(Ok(refusal.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "warble.tweet.v1.TweetService/CreateTweet=gateway; \
        warble.tweet.v1.TweetService/*=gateway,timeline-svc; *=*";

    #[test]
    fn the_most_specific_rule_decides() {
        let rules = PeerRules::parse(RULES, "server.allow_peers").unwrap();
        let create = "/warble.tweet.v1.TweetService/CreateTweet";
        let read = "/warble.tweet.v1.TweetService/GetTweets";
        let other = "/warble.graph.v1.GraphService/GetUsers";
        assert!(rules.check(create, Some("gateway")).is_ok());
        let refused = rules.check(create, Some("timeline-svc")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("timeline-svc"));
        assert!(refused.message().contains("TweetService/CreateTweet"));
        assert!(rules.check(read, Some("timeline-svc")).is_ok());
        assert!(rules.check(read, Some("search-svc")).is_err());
        assert!(rules.check(other, Some("search-svc")).is_ok());
        assert!(rules.check(other, None).is_ok());
        assert!(rules.check(create, None).is_err());
    }

    #[test]
    fn an_rpc_no_rule_names_is_refused_but_health_stays_open() {
        let rules = PeerRules::parse(
            "warble.tweet.v1.TweetService/*=gateway",
            "server.allow_peers",
        )
        .unwrap();
        assert!(
            rules
                .check("/warble.graph.v1.GraphService/GetUsers", Some("gateway"))
                .is_err()
        );
        assert!(
            rules
                .check("/grpc.health.v1.Health/Check", Some("anyone"))
                .is_ok()
        );
        assert!(
            PeerRules::default()
                .check("/grpc.health.v1.Health/Watch", None)
                .is_ok()
        );
    }

    #[test]
    fn malformed_rules_name_the_key_and_the_rule() {
        for bad in [
            "CreateTweet=gateway",
            "warble.tweet.v1.TweetService/CreateTweet",
            "warble.tweet.v1.TweetService/Create.Tweet=gateway",
            "TweetService/CreateTweet=gateway",
            "warble.tweet.v1.TweetService/CreateTweet=",
            "warble.tweet.v1.TweetService/CreateTweet=gate way",
            "*=gateway; *=admin",
        ] {
            let error = PeerRules::parse(bad, "server.allow_peers")
                .unwrap_err()
                .to_string();
            assert!(error.contains("server.allow_peers"), "{bad}: {error}");
            assert!(error.contains("rule `"), "{bad}: {error}");
        }
        assert_eq!(PeerRules::parse(" ; ", "k").unwrap(), PeerRules::default());
    }

    #[test]
    fn tls_off_needs_no_files_and_on_names_the_missing_one() {
        assert!(
            MeshTlsConfig::default()
                .load("server.tls")
                .unwrap()
                .is_none()
        );
        let on = MeshTlsConfig {
            enabled: true,
            ..MeshTlsConfig::default()
        };
        let error = on.load("server.tls").unwrap_err().to_string();
        assert!(error.contains("server.tls.cert_file"), "{error}");
        let missing = MeshTlsConfig {
            enabled: true,
            cert_file: "/nonexistent/tls.crt".into(),
            key_file: "/nonexistent/tls.key".into(),
            ca_file: "/nonexistent/ca.crt".into(),
        };
        let error = missing.load("mesh_tls").unwrap_err().to_string();
        assert!(error.contains("mesh_tls.cert_file"), "{error}");
        assert!(error.contains("/nonexistent/tls.crt"), "{error}");
    }
}
