//! What the gateway knows of each GraphQL operation it runs: one span per
//! operation, the root of the trace every downstream call joins, and its
//! RED metrics by operation name and type.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use async_graphql::Request;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use tracing::Span;
use warble_mesh::metrics;

/// Distinct operation names given their own metric series; later names
/// share `other`. Clients choose operation names, so without a bound one
/// client could grow the registry (and every scrape) without end.
const MAX_NAMED_OPERATIONS: usize = 200;

/// The operation a request runs, as far as its document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `query`, `mutation` or `subscription`.
    pub kind: &'static str,
    /// The operation's name; `None` for an anonymous one.
    pub name: Option<String>,
}

impl Operation {
    /// The operation `request` selects (its document must be parsed), or
    /// `None` when the document does not parse or names no such operation.
    pub fn of(request: &mut Request) -> Option<Self> {
        let wanted = request.operation_name.clone();
        let document = request.parsed_query().ok()?;
        let (name, definition) = match &document.operations {
            DocumentOperations::Single(definition) => (None, definition),
            DocumentOperations::Multiple(operations) => match wanted {
                Some(wanted) => operations
                    .iter()
                    .find(|(name, _)| name.as_str() == wanted)
                    .map(|(name, definition)| (Some(name.to_string()), definition))?,
                None if operations.len() == 1 => operations
                    .iter()
                    .next()
                    .map(|(name, definition)| (Some(name.to_string()), definition))?,
                None => return None,
            },
        };
        let kind = match definition.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        Some(Self { kind, name })
    }

    /// The operation's span, named as OpenTelemetry's GraphQL conventions
    /// say (`query homeTimeline`). Each downstream call made while it is
    /// current carries its trace context.
    pub fn span(&self) -> Span {
        let span_name = match &self.name {
            Some(name) => format!("{} {name}", self.kind),
            None => self.kind.to_owned(),
        };
        tracing::info_span!(
            "graphql.operation",
            otel.name = %span_name,
            otel.kind = "server",
            graphql.operation.type = self.kind,
            graphql.operation.name = self.name.as_deref().unwrap_or(""),
        )
    }

    /// Counts one run of the operation and its latency; `failed` when the
    /// response carries errors.
    pub fn record(&self, elapsed: Duration, failed: bool) {
        let name = bounded_name(self.name.as_deref());
        record(&name, self.kind, elapsed, failed);
    }
}

/// Counts a request refused before any operation could be identified
/// (unparsable, refused by admission, unknown operation name).
pub fn record_unidentified(elapsed: Duration) {
    record("", "unknown", elapsed, true);
}

fn record(name: &str, kind: &str, elapsed: Duration, failed: bool) {
    let outcome = if failed { "error" } else { "ok" };
    metrics::counter(
        "warble_graphql_requests_total",
        "GraphQL operations run, by operation name and type, and whether the response carried errors.",
        &[("operation", name), ("type", kind), ("outcome", outcome)],
    )
    .inc();
    metrics::histogram(
        "warble_graphql_request_duration_seconds",
        "Time to run a GraphQL operation, by operation name and type.",
        &[("operation", name), ("type", kind)],
    )
    .observe(elapsed);
}

/// `name`, or `other` once [`MAX_NAMED_OPERATIONS`] other names have
/// series; anonymous operations are `""`.
fn bounded_name(name: Option<&str>) -> String {
    static SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);
    let Some(name) = name else {
        return String::new();
    };
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() < MAX_NAMED_OPERATIONS {
        seen.insert(name.to_owned());
        return name.to_owned();
    }
    "other".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(query: &str, name: Option<&str>) -> Option<Operation> {
        let mut request = Request::new(query);
        if let Some(name) = name {
            request = request.operation_name(name);
        }
        Operation::of(&mut request)
    }

    #[test]
    fn operations_are_identified_by_type_and_name() {
        assert_eq!(
            operation("{ viewer { id } }", None),
            Some(Operation {
                kind: "query",
                name: None
            })
        );
        assert_eq!(
            operation("mutation Post { createTweet(text: \"x\") { id } }", None),
            Some(Operation {
                kind: "mutation",
                name: Some("Post".into())
            })
        );
        let two = "query A { viewer { id } } subscription B { notificationAdded { id } }";
        assert_eq!(
            operation(two, Some("B")),
            Some(Operation {
                kind: "subscription",
                name: Some("B".into())
            })
        );
        assert_eq!(operation(two, None), None);
        assert_eq!(operation(two, Some("C")), None);
        assert_eq!(operation("{ unclosed", None), None);
    }

    #[test]
    fn operation_names_beyond_the_bound_share_one_series() {
        for index in 0..MAX_NAMED_OPERATIONS {
            bounded_name(Some(&format!("op{index}")));
        }
        assert_eq!(bounded_name(Some("op0")), "op0");
        assert_eq!(bounded_name(Some("one-too-many")), "other");
        assert_eq!(bounded_name(None), "");
    }
}
