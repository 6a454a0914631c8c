//! What a frontend-level test needs from a running stack, whether it runs
//! in one process (`warble dev`) or as separate service processes on Redis.

use std::future::Future;

use crate::graphql::GraphqlClient;

/// Settings a frontend-level test chooses for the stack it starts.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// Followers from which an author is a celebrity.
    pub celebrity_threshold: u64,
    /// Mutations per user in a burst.
    pub mutation_burst: u32,
    /// Mutations regained per minute.
    pub mutations_per_minute: u32,
    /// Seconds a WebSocket client has to send `connection_init`.
    pub ws_init_timeout_secs: u64,
    /// Requests per client in a burst.
    pub query_burst: u32,
    /// Requests regained per minute.
    pub queries_per_minute: u32,
    /// Mutual TLS between the services, each with a certificate naming it
    /// (separate processes only; the single-process stack calls in process).
    pub mutual_tls: bool,
    /// Where every process exports spans (OTLP/gRPC, flushed every 100 ms);
    /// `None` exports none (separate processes only).
    pub otlp_endpoint: Option<String>,
}

impl Default for StackSpec {
    fn default() -> Self {
        Self {
            celebrity_threshold: 3,
            mutation_burst: 1_000,
            mutations_per_minute: 1_000,
            ws_init_timeout_secs: 10,
            query_burst: 100_000,
            queries_per_minute: 100_000,
            mutual_tls: false,
            otlp_endpoint: None,
        }
    }
}

/// A running stack seen from outside: the gateway and fan-out's status.
pub trait Frontend {
    /// A GraphQL client of the gateway.
    fn graphql(&self) -> GraphqlClient;
    /// Waits until fan-out and notify-svc have applied every event so far.
    fn settle(&self) -> impl Future<Output = ()>;
    /// The HS256 secret the gateway verifies tokens with, so a case can
    /// mint tokens of its own (one about to expire, say).
    fn jwt_secret(&self) -> String;
}

impl Frontend for crate::TestStack {
    fn graphql(&self) -> GraphqlClient {
        crate::TestStack::graphql(self)
    }

    fn settle(&self) -> impl Future<Output = ()> {
        crate::TestStack::settle(self)
    }

    fn jwt_secret(&self) -> String {
        self.config().effective_jwt_secret().expose().to_owned()
    }
}

impl crate::TestStack {
    /// An in-process stack configured by `spec`.
    pub async fn start_spec(spec: &StackSpec) -> Self {
        let spec = spec.clone();
        Self::start_with(move |config| {
            config.fanout.celebrity_threshold = spec.celebrity_threshold;
            config.limits.mutation_burst = spec.mutation_burst;
            config.limits.mutations_per_minute = spec.mutations_per_minute;
            config.limits.ws_init_timeout_secs = spec.ws_init_timeout_secs;
            config.limits.query_burst = spec.query_burst;
            config.limits.queries_per_minute = spec.queries_per_minute;
        })
        .await
    }
}
