//! The service's one error type and the one place it becomes a `tonic::Status`.

use tonic::Status;
use warble_mesh::status;

/// Everything that can go wrong in the graph service, from request
/// validation to the storage backend.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A request field is malformed or out of range.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A user the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Creating something that must be unique, e.g. a taken username.
    #[error("{0}")]
    AlreadyExists(String),
    /// The change is refused between these two users, e.g. a follow while
    /// either blocks the other. The message says no more than that, so it
    /// does not reveal who blocked whom.
    #[error("{0}")]
    PermissionDenied(String),
    /// The embedded database failed.
    #[error("embedded store: {0}")]
    Storage(#[from] redb::Error),
    /// The embedded database could not be opened.
    #[error(transparent)]
    Open(#[from] warble_mesh::embedded::OpenError),
    /// The event log could not be opened.
    #[error(transparent)]
    EventLog(#[from] warble_mesh::event_log::EventLogError),
    /// A stored record could not be decoded: the data is corrupt or was
    /// written by an incompatible version.
    #[error("corrupt stored record: {0}")]
    Corrupt(#[from] prost::DecodeError),
    /// No Snowflake id could be issued (the clock went back too far).
    #[error("cannot issue an id: {0}")]
    Ids(#[from] warble_mesh::snowflake::SnowflakeError),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A production store (Neo4j) failed, timed out or is unreachable; the
    /// cause is logged, never sent to clients.
    #[error("graph store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl GraphError {
    /// Wraps any production-store failure as [`GraphError::Backend`].
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(error.into())
    }

    /// Shorthand for [`GraphError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Says which entry of a batch request field `list` this failure is
    /// about, so the caller can find it among a thousand: an invalid field
    /// becomes `list[index].field` (the path the client set), a missing user
    /// a taken username or a refused follow is prefixed with `list[index]: `. Failures of the
    /// store itself are about no one entry and stay as they are.
    pub fn in_batch(self, list: &str, index: usize) -> Self {
        match self {
            Self::InvalidArgument { field, reason } => Self::InvalidArgument {
                field: format!("{list}[{index}].{field}"),
                reason,
            },
            Self::NotFound(message) => Self::NotFound(format!("{list}[{index}]: {message}")),
            Self::AlreadyExists(message) => {
                Self::AlreadyExists(format!("{list}[{index}]: {message}"))
            }
            Self::PermissionDenied(message) => {
                Self::PermissionDenied(format!("{list}[{index}]: {message}"))
            }
            other => other,
        }
    }
}

// redb reports each step's failure with its own type; they all fold into `redb::Error`.
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for GraphError {
            fn from(error: $error) -> Self {
                Self::Storage(error.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<GraphError> for Status {
    fn from(error: GraphError) -> Self {
        match error {
            GraphError::InvalidArgument { field, reason } => {
                status::invalid_argument(&field, reason)
            }
            GraphError::NotFound(message) => status::not_found(message),
            GraphError::AlreadyExists(message) => Status::already_exists(message),
            GraphError::PermissionDenied(message) => Status::permission_denied(message),
            // A clock that stepped back is transient: callers may retry once it catches up.
            GraphError::Ids(ref cause) => status::unavailable(cause),
            GraphError::Storage(_)
            | GraphError::Open(_)
            | GraphError::EventLog(_)
            | GraphError::Corrupt(_)
            | GraphError::Task(_)
            | GraphError::Backend(_) => status::internal(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_follow_the_mesh_convention() {
        let status = Status::from(GraphError::invalid("username", "too long"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status::violated_field(&status).as_deref(), Some("username"));
        assert_eq!(
            Status::from(GraphError::NotFound("user 1 not found".into())).code(),
            Code::NotFound
        );
        assert_eq!(
            Status::from(GraphError::AlreadyExists("taken".into())).code(),
            Code::AlreadyExists
        );
        assert_eq!(
            Status::from(GraphError::PermissionDenied("no".into())).code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn batch_failures_name_the_entry_and_keep_their_code() {
        let invalid = Status::from(GraphError::invalid("followee_id", "same").in_batch("pairs", 3));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(
            status::violated_field(&invalid).as_deref(),
            Some("pairs[3].followee_id")
        );
        let missing =
            Status::from(GraphError::NotFound("user 9 not found".into()).in_batch("pairs", 0));
        assert_eq!(missing.code(), Code::NotFound);
        assert!(
            missing.message().starts_with("pairs[0]: user 9"),
            "{missing:?}"
        );
        let taken = Status::from(GraphError::AlreadyExists("taken".into()).in_batch("users", 12));
        assert_eq!(taken.code(), Code::AlreadyExists);
        assert_eq!(taken.message(), "users[12]: taken");
        let refused =
            Status::from(GraphError::PermissionDenied("refused".into()).in_batch("pairs", 2));
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(refused.message(), "pairs[2]: refused");
        let internal = GraphError::Storage(redb::Error::Corrupted("x".into())).in_batch("users", 1);
        assert!(matches!(internal, GraphError::Storage(_)), "{internal:?}");
    }

    #[test]
    fn is_a_thread_safe_std_error() {
        // Callers wrap it with anyhow's `.context()` and move it across tasks.
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<GraphError>();
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let error = GraphError::Storage(redb::Error::Corrupted("page 7 at /secret".into()));
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
