//! The convention every service uses to turn its errors into `tonic::Status`.
//!
//! Each service has one error enum and one `From<ServiceError> for Status`
//! built from these helpers, so codes are consistent across the mesh:
//! validation failures carry a `BadRequest` detail naming the field, and
//! internal failures are logged with their full cause chain under a reference
//! id while the client sees only that id.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// INVALID_ARGUMENT naming the offending request field, with a machine-readable
/// `BadRequest.FieldViolation` detail.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let details = ErrorDetails::with_bad_request_violation(field, description.clone());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

/// NOT_FOUND for the named thing.
pub fn not_found(message: impl Into<String>) -> Status {
    Status::not_found(message)
}

/// INTERNAL for an unexpected failure: the cause chain is logged with a
/// reference id and only the reference reaches the client.
pub fn internal(error: &(dyn std::error::Error + 'static)) -> Status {
    let reference = format!("{:016x}", rand::random::<u64>());
    tracing::error!(reference, error = %ErrorChain(error), "internal error");
    Status::internal(format!("internal error (reference {reference})"))
}

/// UNAVAILABLE for a dependency that is down or overloaded; callers may retry.
pub fn unavailable(error: &(dyn std::error::Error + 'static)) -> Status {
    tracing::warn!(error = %ErrorChain(error), "dependency unavailable");
    Status::unavailable("a dependency is unavailable; retry later")
}

/// Formats an error with every `source()` in its chain: `outer: inner: root`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Reads the field named by an INVALID_ARGUMENT status built with [`invalid_argument`].
pub fn violated_field(status: &Status) -> Option<String> {
    status.get_details_bad_request().and_then(|bad_request| {
        bad_request
            .field_violations
            .first()
            .map(|v| v.field.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = invalid_argument("text", "must not be empty");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_field(&status).as_deref(), Some("text"));
    }

    #[test]
    fn internal_hides_the_cause() {
        let io = std::io::Error::other("disk on fire at /var/lib/secret");
        let status = internal(&io);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("disk"));
    }
}
