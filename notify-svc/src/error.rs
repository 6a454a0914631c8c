//! notify-svc's one error type and the one place it becomes a gRPC status.

use tonic::Status;
use warble_mesh::event_log::EventLogError;
use warble_mesh::status;

/// Everything that can go wrong applying an event or serving a call.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A request field breaks a rule; `field` is its name in the request.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The group does not exist (or belongs to another recipient).
    #[error("notification group {0} not found")]
    GroupNotFound(u64),
    /// An event-log entry is not an `Event` (it keeps failing and ends in the dead letter).
    #[error("undecodable event payload")]
    Decode(#[from] prost::DecodeError),
    /// graph-svc answered with an error.
    #[error("{service} call failed: {status}")]
    Downstream {
        service: &'static str,
        status: Status,
    },
    /// The event log failed.
    #[error("event log failed")]
    EventLog(#[from] EventLogError),
    /// The store failed; the cause is logged, never sent to clients.
    #[error("notification store failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl NotifyError {
    /// Shorthand for [`NotifyError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Wraps any backend failure as [`NotifyError::Storage`].
    pub fn storage(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Storage(error.into())
    }

    pub(crate) fn graph_svc(status: Status) -> Self {
        Self::Downstream {
            service: "graph-svc",
            status,
        }
    }
}

impl From<NotifyError> for Status {
    fn from(error: NotifyError) -> Self {
        match &error {
            NotifyError::Invalid { field, reason } => status::invalid_argument(field, reason),
            NotifyError::GroupNotFound(_) => status::not_found(error.to_string()),
            NotifyError::Downstream { .. } | NotifyError::EventLog(_) => {
                status::unavailable(&error)
            }
            NotifyError::Decode(_) | NotifyError::Storage(_) => status::internal(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_fields() {
        let status = Status::from(NotifyError::invalid("page.limit", "too large"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status::violated_field(&status).as_deref(),
            Some("page.limit")
        );
        assert_eq!(
            Status::from(NotifyError::GroupNotFound(7)).code(),
            Code::NotFound
        );
        let internal = Status::from(NotifyError::storage("disk on fire at /var/x"));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("/var/x"), "{internal:?}");
    }
}
