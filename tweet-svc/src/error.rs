//! The one error type of tweet-svc and the one place it becomes a gRPC status.

use tonic::Status;
use warble_mesh::snowflake::SnowflakeError;
use warble_mesh::status;

/// Everything that can go wrong serving a tweet-svc request.
#[derive(Debug, thiserror::Error)]
pub enum TweetError {
    /// A request field breaks a rule; `field` is its name in the request.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The idempotency key was already used by this author for different content.
    #[error("idempotency key was already used for a different tweet")]
    IdempotencyKeyReused,
    /// The idempotency key created a tweet that has since been deleted; the
    /// original cannot be returned and a new one must not be created under it.
    #[error("the tweet created with this idempotency key ({tweet_id}) was deleted")]
    IdempotentTweetDeleted { tweet_id: u64 },
    /// The tweet does not exist or was deleted.
    #[error("tweet {0} not found")]
    TweetNotFound(u64),
    /// The tweet a new tweet replies to or quotes does not exist or was deleted;
    /// `field` is the request field that named it.
    #[error("{field}: tweet {tweet_id} not found")]
    TargetNotFound { field: &'static str, tweet_id: u64 },
    /// Someone other than the author tried to delete a tweet.
    #[error("only the author may delete tweet {tweet_id}")]
    NotAuthor { tweet_id: u64 },
    /// No id could be issued (the clock stepped back too far).
    #[error("cannot issue an id")]
    Ids(#[from] SnowflakeError),
    /// The store failed; the cause is logged, never sent to clients.
    #[error("tweet store failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TweetError {
    /// Shorthand for [`TweetError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Wraps any backend failure as [`TweetError::Storage`].
    pub fn storage(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Storage(error.into())
    }
}

impl From<TweetError> for Status {
    fn from(error: TweetError) -> Self {
        match &error {
            TweetError::Invalid { field, reason } => status::invalid_argument(field, reason),
            TweetError::IdempotencyKeyReused => {
                status::invalid_argument("idempotency_key", error.to_string())
            }
            TweetError::IdempotentTweetDeleted { .. } => {
                Status::failed_precondition(error.to_string())
            }
            TweetError::TweetNotFound(_) | TweetError::TargetNotFound { .. } => {
                status::not_found(error.to_string())
            }
            TweetError::NotAuthor { .. } => Status::permission_denied(error.to_string()),
            // A clock that stepped back recovers by itself: tell callers to retry.
            TweetError::Ids(_) => status::unavailable(&error),
            TweetError::Storage(_) => status::internal(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_fields() {
        let status = Status::from(TweetError::invalid("text", "too long"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status::violated_field(&status).as_deref(), Some("text"));

        let status = Status::from(TweetError::IdempotencyKeyReused);
        assert_eq!(
            status::violated_field(&status).as_deref(),
            Some("idempotency_key")
        );

        let status = Status::from(TweetError::TargetNotFound {
            field: "quote_of_tweet_id",
            tweet_id: 9,
        });
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("quote_of_tweet_id"));
    }

    #[test]
    fn storage_errors_do_not_leak() {
        let status = Status::from(TweetError::storage(std::io::Error::other(
            "/var/lib/warble is full",
        )));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("/var/lib"));
    }
}
