//! search-svc's one error type and the one place it becomes a gRPC status.

use tonic::Status;
use warble_mesh::event_log::EventLogError;
use warble_mesh::status;

use crate::query::ParseError;

/// Everything that can go wrong indexing an event or serving a call.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A request field breaks a rule; `field` is its name in the request.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The query does not parse; the message names the byte position.
    #[error("query: {0}")]
    Query(#[from] ParseError),
    /// The index is still being built (a backfill is running).
    #[error("the search index is still being built; try again shortly")]
    NotReady,
    /// A downstream service answered with an error.
    #[error("{service} call failed: {status}")]
    Downstream {
        service: &'static str,
        status: Status,
    },
    /// The event log failed.
    #[error("event log failed")]
    EventLog(#[from] EventLogError),
    /// The index or the trend store failed; the cause is logged, never sent
    /// to clients.
    #[error("search storage failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SearchError {
    /// Shorthand for [`SearchError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Wraps any backend failure as [`SearchError::Storage`].
    pub fn storage(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Storage(error.into())
    }

    pub(crate) fn downstream(service: &'static str, status: Status) -> Self {
        Self::Downstream { service, status }
    }
}

impl From<SearchError> for Status {
    fn from(error: SearchError) -> Self {
        match &error {
            SearchError::Invalid { field, reason } => status::invalid_argument(field, reason),
            SearchError::Query(parse) => status::invalid_argument("query", parse.to_string()),
            SearchError::NotReady => Status::unavailable(error.to_string()),
            SearchError::Downstream { .. } | SearchError::EventLog(_) => {
                status::unavailable(&error)
            }
            SearchError::Storage(_) => status::internal(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_fields() {
        let status = Status::from(SearchError::invalid("page.limit", "too large"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status::violated_field(&status).as_deref(),
            Some("page.limit")
        );
        let parse = crate::query::parse("\"open").unwrap_err();
        let status = Status::from(SearchError::from(parse));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("at byte 0"), "{status:?}");
        let internal = Status::from(SearchError::storage("disk on fire at /var/x"));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("/var/x"), "{internal:?}");
    }
}
