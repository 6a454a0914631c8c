//! Logging, tracing and W3C trace-context propagation.
//!
//! Every process installs one `tracing` subscriber: a formatter (pretty or
//! JSON), an `EnvFilter`, and an OpenTelemetry layer. The OpenTelemetry layer
//! is always present so spans carry trace ids that cross gRPC hops in the
//! `traceparent` header; spans are exported over OTLP only when
//! `telemetry.otlp_endpoint` is set.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};
use warble_proto::events::v1::{Event, EventTraceContext};

use crate::config::ConfigError;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, multi-line; the default for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
    /// Single-line human-readable.
    Compact,
}

/// The `telemetry.*` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `pretty`, `compact` or `json`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `warn,warble_tweet_svc=debug`.
    /// `RUST_LOG`, when set, wins.
    pub log_level: String,
    /// OTLP/gRPC collector endpoint (e.g. `http://otel-collector:4317`).
    /// Empty disables span export; trace context is still propagated.
    pub otlp_endpoint: String,
    /// Overrides the `service.name` resource attribute; empty uses the binary's name.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            otlp_endpoint: String::new(),
            service_name: String::new(),
        }
    }
}

impl TelemetryConfig {
    /// Validates the section; `prefix` is where it sits in the service's config.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if let Err(reason) = parse_filter(&self.log_level) {
            return Err(ConfigError::invalid(&format!("{prefix}.log_level"), reason));
        }
        let endpoint = &self.otlp_endpoint;
        let has_scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !has_scheme {
            return Err(ConfigError::invalid(
                &format!("{prefix}.otlp_endpoint"),
                "must start with http:// or https://",
            ));
        }
        Ok(())
    }
}

/// Keeps the tracer provider alive; flushes pending spans when dropped.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {error}");
        }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Installs the global subscriber and propagator. In one process running
/// several services (the dev stack, tests) only the first call installs
/// anything; later calls return an inert guard.
pub fn init(
    config: &TelemetryConfig,
    default_service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let service_name = if config.service_name.is_empty() {
        default_service_name.to_owned()
    } else {
        config.service_name.clone()
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.clone())
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if !config.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: config.otlp_endpoint.clone(),
                source,
            })?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer(service_name);
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| parse_filter(&directives).ok())
        .or_else(|| parse_filter(&config.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let formatter = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Compact => tracing_subscriber::fmt::layer().compact().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    // The log filter applies to log output only: spans at INFO and above
    // always reach the OpenTelemetry layer, so trace context keeps flowing
    // across hops even when logs are quieter.
    let installed = tracing_subscriber::registry()
        .with(formatter.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init()
        .is_ok();
    let _ = INSTALLED.set(());
    Ok(TelemetryGuard {
        provider: installed.then_some(provider),
    })
}

/// Parses `EnvFilter` directives, refusing what its parser cannot take.
/// Targets and levels are ASCII; tracing-subscriber 0.3 panics (instead of
/// erring) on whitespace before a non-ASCII target (`"info, é=debug"`), so
/// non-ASCII and control characters are refused here, and each directive is
/// trimmed, before the parser sees them.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    if let Some(bad) = directives
        .chars()
        .find(|c| !c.is_ascii() || (c.is_ascii_control() && *c != '\t'))
    {
        return Err(format!(
            "not a valid filter directive: {bad:?} is not allowed (directives are ASCII, e.g. `info,warble_tweet_svc=debug`)"
        ));
    }
    let normalized = directives
        .split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",");
    EnvFilter::try_new(&normalized)
        .map_err(|error| format!("not a valid filter directive: {error}"))
}

/// Telemetry for tests: compact logs to the test writer at `warn` (or
/// `RUST_LOG`), trace context propagation on, no export.
pub fn init_for_tests() {
    static GUARD: OnceLock<()> = OnceLock::new();
    GUARD.get_or_init(|| {
        let config = TelemetryConfig {
            log_format: LogFormat::Compact,
            log_level: "warn".into(),
            ..TelemetryConfig::default()
        };
        // Kept for the life of the test process: spans are never exported.
        std::mem::forget(init(&config, "warble-test"));
    });
}

/// Writes W3C trace context into gRPC metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Reads W3C trace context from HTTP/2 headers (gRPC metadata on the wire).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// Reads W3C trace context from tonic metadata.
struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|entry| match entry {
                KeyAndValueRef::Ascii(key, _) => Some(key.as_str()),
                KeyAndValueRef::Binary(..) => None,
            })
            .collect()
    }
}

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// Injects the current span's trace context into `metadata` as `traceparent`/`tracestate`.
pub fn inject_current_context(metadata: &mut MetadataMap) {
    let context = Span::current().context();
    propagator().inject_context(&context, &mut MetadataInjector(metadata));
}

/// The trace context a caller sent in `metadata` (empty when none was sent).
pub fn extract_context(metadata: &MetadataMap) -> opentelemetry::Context {
    propagator().extract(&MetadataExtractor(metadata))
}

/// Client interceptor that sends the caller's trace context on every request.
/// Use with `XServiceClient::with_interceptor(channel, TraceContextInterceptor)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_current_context(request.metadata_mut());
        Ok(request)
    }
}

/// Makes the server span of one gRPC request, parented on the caller's trace
/// context so one trace spans every hop. Installed by [`crate::grpc::GrpcServer`].
pub fn grpc_server_span<B>(request: &http::Request<B>) -> Span {
    let parent = propagator().extract(&HeaderExtractor(request.headers()));
    let span = tracing::info_span!(
        "grpc.server",
        rpc.method = %request.uri().path(),
        otel.kind = "server",
    );
    let _ = span.set_parent(parent);
    span
}

/// A map carrier for W3C trace context (the `Event.trace_context` field).
struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context as `traceparent`/`tracestate` entries
/// (empty outside a span).
pub fn current_trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        propagator().inject_context(&context, &mut MapCarrier(&mut carrier));
    }
    carrier
}

/// Encodes a domain event for the event log with the current span's trace
/// context, so the consumers' spans join the trace of the request that made
/// the change. Stores call this where they write the event, inside the
/// request's span. (The context is appended as `trace_context` after the encoded
/// event: in protobuf, concatenated encodings merge, so this is the event
/// with `trace_context` set, without copying the event.)
pub fn encode_event(event: &Event) -> Vec<u8> {
    let mut bytes = event.encode_to_vec();
    let trace = EventTraceContext {
        trace_context: current_trace_context(),
    };
    if !trace.trace_context.is_empty() {
        trace.encode(&mut bytes).expect("a Vec grows as needed");
    }
    bytes
}

/// The span a consumer applies encoded events in: a child of the first
/// event's trace context, linked to the others' (a batch may hold events of
/// several requests).
pub fn consumer_span(group: &str, payloads: &[&[u8]]) -> Span {
    let span = tracing::info_span!(
        "event.consume",
        otel.kind = "consumer",
        consumer.group = group,
        events = payloads.len(),
    );
    let mut parented = false;
    for payload in payloads {
        let Ok(trace) = EventTraceContext::decode(*payload) else {
            continue;
        };
        if trace.trace_context.is_empty() {
            continue;
        }
        let context = propagator().extract(&MapExtractor(&trace.trace_context));
        if parented {
            span.add_link(context.span().span_context().clone());
        } else {
            let _ = span.set_parent(context);
            parented = true;
        }
    }
    span
}

/// Runs blocking work on tokio's blocking pool inside the caller's span, so
/// what it logs and the events it encodes ([`encode_event`]) belong to the
/// caller's trace.
pub fn spawn_blocking_in_span<T, F>(work: F) -> tokio::task::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_through_metadata() {
        init_for_tests();
        let span = tracing::info_span!("client-call");
        let _entered = span.enter();
        let sent_trace = Span::current().context().span().span_context().trace_id();
        assert_ne!(sent_trace, opentelemetry::trace::TraceId::INVALID);

        let mut metadata = MetadataMap::new();
        inject_current_context(&mut metadata);
        let traceparent = metadata.get("traceparent").unwrap().to_str().unwrap();
        assert!(traceparent.starts_with("00-"), "{traceparent}");

        let received = extract_context(&metadata);
        assert_eq!(received.span().span_context().trace_id(), sent_trace);

        // The server span built from the same headers joins the caller's trace.
        let mut request = http::Request::new(());
        *request.headers_mut() = metadata.into_headers();
        let server_span = grpc_server_span(&request);
        assert_eq!(
            server_span.context().span().span_context().trace_id(),
            sent_trace
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let config = TelemetryConfig {
            otlp_endpoint: "collector:4317".into(),
            ..TelemetryConfig::default()
        };
        assert!(
            config
                .validate("telemetry")
                .unwrap_err()
                .to_string()
                .contains("telemetry.otlp_endpoint")
        );
    }
}
