//! The one place gRPC statuses and gateway failures become GraphQL errors
//! with a stable `extensions.code`. Internal details go to the log with a
//! reference id; clients see the code, a safe message and the reference.

use async_graphql::{Error, ErrorExtensions as _};
use tonic::{Code, Status};

/// The stable error codes clients can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid bearer token where one is required.
    Unauthenticated,
    /// Authenticated but not allowed (e.g. deleting another user's tweet).
    Forbidden,
    /// A valid token from an identity provider whose subject has not
    /// registered (`auth.subjects = "registered"`): only `register` runs.
    Unregistered,
    /// The thing asked for does not exist.
    NotFound,
    /// The request is malformed or breaks a rule (text too long, page too big, query too deep).
    BadUserInput,
    /// Too many mutations; retry later.
    RateLimited,
    /// A downstream service is down or slow; retry later.
    Unavailable,
    /// A bug or unexpected failure.
    Internal,
    /// An Automatic Persisted Query hash the gateway does not know: send the
    /// query with its hash (the Apollo protocol's code).
    PersistedQueryNotFound,
    /// Automatic Persisted Queries are turned off (`persisted_queries`).
    PersistedQueryNotSupported,
}

impl ErrorCode {
    /// The `extensions.code` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::Unregistered => "UNREGISTERED",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
        }
    }

    /// The code for a downstream gRPC status.
    pub fn of_status(code: Code) -> Self {
        match code {
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::Forbidden,
            Code::NotFound => Self::NotFound,
            Code::InvalidArgument
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::OutOfRange => Self::BadUserInput,
            Code::ResourceExhausted => Self::RateLimited,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Self::Unavailable,
            _ => Self::Internal,
        }
    }
}

/// A GraphQL error with `extensions.code` set.
pub fn gql_error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code.as_str()))
}

/// Turns a downstream status into a client-safe GraphQL error: rule
/// violations keep their message (it names the field and the rule), anything
/// else is logged and replaced by a generic message with a reference id.
pub fn from_status(status: Status) -> Error {
    let code = ErrorCode::of_status(status.code());
    match code {
        ErrorCode::BadUserInput | ErrorCode::NotFound | ErrorCode::Forbidden => {
            let field = warble_mesh::status::violated_field(&status);
            let error = gql_error(code, status.message().to_owned());
            match field {
                Some(field) => error.extend_with(|_, extensions| extensions.set("field", field)),
                None => error,
            }
        }
        ErrorCode::Unavailable | ErrorCode::RateLimited => {
            tracing::warn!(code = ?status.code(), message = status.message(), "downstream unavailable");
            gql_error(code, "a backend service is unavailable; retry later")
        }
        // Downstream services never answer with these; if one did, it is a bug.
        ErrorCode::Unauthenticated
        | ErrorCode::Unregistered
        | ErrorCode::Internal
        | ErrorCode::PersistedQueryNotFound
        | ErrorCode::PersistedQueryNotSupported => internal(&status),
    }
}

/// INTERNAL for an unexpected failure: logged with a reference id (by the
/// mesh convention) and only the reference reaches the client.
pub fn internal(error: &(dyn std::error::Error + 'static)) -> Error {
    let status = warble_mesh::status::internal(error);
    gql_error(ErrorCode::Internal, status.message().to_owned())
}

/// RATE_LIMITED with `extensions.retryAfter`: whole seconds until a retry
/// can pass (at least 1). The HTTP layer turns it into 429 and `Retry-After`.
pub fn rate_limited(message: &str, retry_after: std::time::Duration) -> Error {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    gql_error(ErrorCode::RateLimited, message)
        .extend_with(|_, extensions| extensions.set("retryAfter", seconds.max(1)))
}

/// BAD_USER_INPUT naming the argument.
pub fn bad_input(argument: &str, message: impl Into<String>) -> Error {
    let argument = argument.to_owned();
    gql_error(ErrorCode::BadUserInput, message)
        .extend_with(move |_, extensions| extensions.set("field", argument.clone()))
}

/// Extension trait: `?` on a tonic call result inside a resolver.
pub trait StatusExt<T> {
    /// Maps the status through [`from_status`].
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> StatusExt<T> for Result<T, Status> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(from_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(error: &Error) -> String {
        error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .map(|value| value.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn every_grpc_code_maps_to_a_stable_code() {
        let cases = [
            (Code::InvalidArgument, "BAD_USER_INPUT"),
            (Code::AlreadyExists, "BAD_USER_INPUT"),
            (Code::NotFound, "NOT_FOUND"),
            (Code::PermissionDenied, "FORBIDDEN"),
            (Code::Unavailable, "UNAVAILABLE"),
            (Code::DeadlineExceeded, "UNAVAILABLE"),
            (Code::ResourceExhausted, "RATE_LIMITED"),
            (Code::Internal, "INTERNAL"),
            (Code::Unknown, "INTERNAL"),
        ];
        for (code, expected) in cases {
            let error = from_status(Status::new(code, "secret detail"));
            assert_eq!(code_of(&error), format!("\"{expected}\""), "{code:?}");
        }
    }

    #[test]
    fn internal_details_do_not_leak() {
        let error = from_status(Status::internal("redb: disk full at /var/lib/warble"));
        assert!(!error.message.contains("redb"));
        let error = from_status(Status::unavailable("connection refused 10.0.0.7:50051"));
        assert!(!error.message.contains("10.0.0.7"));
    }
}
