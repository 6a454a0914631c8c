//! RED metrics of every served gRPC call: how many, with which status code,
//! and how long each took ([`RpcMetricsLayer`], installed by
//! [`crate::grpc::GrpcServer`]).
//!
//! A call's code is in the response headers when it failed before any
//! message ("trailers-only"), otherwise in the trailers after the last
//! message, so the layer watches the body for them. A call whose body is
//! dropped before its trailers (the client went away) counts as CANCELLED.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt as _};
use http::Request;
use http_body_util::BodyExt as _;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::metrics::{self, Counter, Histogram};

/// Health checks and reflection are left out: probes would drown the
/// service's own calls.
fn is_measured(path: &str) -> bool {
    path.starts_with("/warble.")
}

/// The component serving a `/warble.<name>.v1.Service/Method` path, or a
/// `warble.<name>.v1.Service` service name: `<name>-svc`, as the binaries
/// and the chart name it.
pub fn component_of(path: &str) -> String {
    let name = path
        .trim_start_matches('/')
        .strip_prefix("warble.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or("unknown");
    format!("{name}-svc")
}

/// Counts and times every call of the services behind it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] makes.
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

/// One call being measured; records itself once, with the code it learned
/// or CANCELLED if it is dropped first.
struct CallRecord {
    service: String,
    method: String,
    started: Instant,
    recorded: bool,
}

impl CallRecord {
    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let labels = [
            ("service", self.service.as_str()),
            ("method", self.method.as_str()),
        ];
        calls(&labels, code).inc();
        latency(&labels).observe(self.started.elapsed());
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

fn calls(labels: &[(&str, &str); 2], code: tonic::Code) -> Counter {
    metrics::counter(
        "warble_grpc_server_requests_total",
        "gRPC calls served, by service, method and status code.",
        &[labels[0], labels[1], ("code", code_name(code))],
    )
}

fn latency(labels: &[(&str, &str); 2]) -> Histogram {
    metrics::histogram(
        "warble_grpc_server_request_duration_seconds",
        "Time from a gRPC call's arrival to its status, by service and method.",
        labels,
    )
}

/// The code's name as gRPC spells it (`NOT_FOUND`), for the `code` label.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from)
}

impl<S> Service<Request<Body>> for RpcMetrics<S>
where
    S: Service<Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if !is_measured(path) {
            return self.inner.call(request).boxed();
        }
        let mut record = CallRecord {
            service: component_of(path),
            method: path.to_owned(),
            started: Instant::now(),
            recorded: false,
        };
        let response = self.inner.call(request);
        async move {
            let response = response.await?;
            if let Some(code) = status_in(response.headers()) {
                record.finish(code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = body.map_frame(move |frame| {
                if let Some(trailers) = frame.trailers_ref() {
                    // No grpc-status in the trailers is a broken server;
                    // gRPC clients read it as UNKNOWN.
                    record.finish(status_in(trailers).unwrap_or(tonic::Code::Unknown));
                }
                frame
            });
            Ok(http::Response::from_parts(parts, Body::new(body)))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_named_from_paths_and_service_names() {
        assert_eq!(
            component_of("/warble.tweet.v1.TweetService/CreateTweet"),
            "tweet-svc"
        );
        assert_eq!(component_of("warble.graph.v1.GraphService"), "graph-svc");
        assert!(!is_measured("/grpc.health.v1.Health/Check"));
    }
}
