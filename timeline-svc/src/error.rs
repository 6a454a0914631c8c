//! timeline-svc's one error type and its mapping to `tonic::Status`.

use tonic::Status;
use warble_timeline_cache::CacheError;

/// Why a timeline could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TimelineError {
    /// A request field is unacceptable.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// tweet-svc or graph-svc answered with an error.
    #[error("{service} call failed: {status}")]
    Downstream {
        service: &'static str,
        status: Status,
    },
    /// The timeline cache failed.
    #[error("timeline cache failed: {0}")]
    Cache(String),
}

impl From<CacheError> for TimelineError {
    fn from(error: CacheError) -> Self {
        Self::Cache(error.to_string())
    }
}

impl TimelineError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn tweet_svc(status: Status) -> Self {
        Self::Downstream {
            service: "tweet-svc",
            status,
        }
    }

    pub(crate) fn graph_svc(status: Status) -> Self {
        Self::Downstream {
            service: "graph-svc",
            status,
        }
    }
}

impl From<TimelineError> for Status {
    fn from(error: TimelineError) -> Self {
        match error {
            TimelineError::InvalidArgument { field, reason } => {
                warble_mesh::status::invalid_argument(field, reason)
            }
            // A caller's mistake reported by a downstream (e.g. an unknown
            // user) keeps its code; everything else means "try again later".
            TimelineError::Downstream { status, .. }
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::InvalidArgument
                ) =>
            {
                Status::new(status.code(), status.message())
            }
            other => warble_mesh::status::unavailable(&other),
        }
    }
}
