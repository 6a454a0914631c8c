//! A real OTLP/gRPC trace receiver on loopback: the
//! `opentelemetry.proto.collector.trace.v1.TraceService` a collector serves,
//! keeping every span it is sent, so a test can point services'
//! `telemetry.otlp_endpoint` at it and assert the span trees they export.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One span as received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The sender's `service.name` resource attribute.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; empty for a root span.
    pub parent_span_id: String,
    /// String, integer and boolean attributes, as text.
    pub attributes: HashMap<String, String>,
    /// Hex `trace_id/span_id` of each linked span.
    pub links: Vec<String>,
}

impl ReceivedSpan {
    /// The attribute `key`, or `""`.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Collected {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = attributes(
                resource_spans
                    .resource
                    .map(|resource| resource.attributes)
                    .unwrap_or_default(),
            );
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: attributes(span.attributes),
                        links: span
                            .links
                            .iter()
                            .map(|link| format!("{}/{}", hex(&link.trace_id), hex(&link.span_id)))
                            .collect(),
                    });
                }
            }
        }
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attributes(pairs: Vec<KeyValue>) -> HashMap<String, String> {
    pairs
        .into_iter()
        .filter_map(|pair| {
            let value = match pair.value.and_then(|AnyValue { value }| value)? {
                any_value::Value::StringValue(text) => text,
                any_value::Value::IntValue(number) => number.to_string(),
                any_value::Value::BoolValue(flag) => flag.to_string(),
                any_value::Value::DoubleValue(number) => number.to_string(),
                _ => return None,
            };
            Some((pair.key, value))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Collected,
    _stop: oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// Serves the trace service on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let spans = Collected::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(spans.clone());
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            spans,
            _stop: stop,
        }
    }

    /// What `telemetry.otlp_endpoint` should say.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits (up to `within`) until `found` returns something for the spans
    /// received so far, and returns it; panics naming `what` if it never does.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&[ReceivedSpan]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans = self.spans();
            if let Some(result) = found(&spans) {
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<String> = spans
                    .iter()
                    .map(|span| format!("{}:{}", span.service, span.name))
                    .collect();
                panic!("no {what} within {within:?}; received {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The spans of `trace_id` in `spans`.
pub fn trace<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .collect()
}

/// Whether `ancestor` is `span` or one of its ancestors in `trace` (walking
/// parent ids within the trace).
pub fn descends_from(
    trace: &[&ReceivedSpan],
    span: &ReceivedSpan,
    ancestor: &ReceivedSpan,
) -> bool {
    let mut current = span;
    for _ in 0..=trace.len() {
        if current.span_id == ancestor.span_id {
            return true;
        }
        match trace
            .iter()
            .find(|candidate| candidate.span_id == current.parent_span_id)
        {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}
