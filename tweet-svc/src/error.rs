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
    /// Entry `index` of the batch request field `list` failed with `error`
    /// (see [`TweetError::in_batch`]).
    #[error("{list}[{index}]: {error}")]
    InBatch {
        list: &'static str,
        index: usize,
        error: Box<TweetError>,
    },
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

    /// Says which entry of a batch request field `list` this failure is
    /// about, so the caller can find it among a thousand: the status keeps
    /// the entry's code, and names `list[index].field` where the failure
    /// names a field, `list[index]` otherwise. Failures of the store or the
    /// id generator are about no one entry and stay as they are.
    pub fn in_batch(self, list: &'static str, index: usize) -> Self {
        match self {
            Self::Ids(_) | Self::Storage(_) | Self::InBatch { .. } => self,
            entry => Self::InBatch {
                list,
                index,
                error: Box::new(entry),
            },
        }
    }
}

impl From<TweetError> for Status {
    fn from(error: TweetError) -> Self {
        status_of(&error, None)
    }
}

/// The status of `error`; `entry` (`tweets[3]`) prefixes the field it
/// names, or the message when it names none, for a batch entry's failure.
fn status_of(error: &TweetError, entry: Option<&str>) -> Status {
    let field = |name: &str| match entry {
        Some(entry) => format!("{entry}.{name}"),
        None => name.to_owned(),
    };
    let message = || match entry {
        Some(entry) => format!("{entry}: {error}"),
        None => error.to_string(),
    };
    match error {
        TweetError::Invalid {
            field: name,
            reason,
        } => status::invalid_argument(&field(name), reason),
        TweetError::IdempotencyKeyReused => {
            status::invalid_argument(&field("idempotency_key"), error.to_string())
        }
        TweetError::IdempotentTweetDeleted { .. } => Status::failed_precondition(message()),
        TweetError::TargetNotFound {
            field: name,
            tweet_id,
        } => status::not_found(format!("{}: tweet {tweet_id} not found", field(name))),
        TweetError::TweetNotFound(_) => status::not_found(message()),
        TweetError::NotAuthor { .. } => Status::permission_denied(message()),
        // A clock that stepped back recovers by itself: tell callers to retry.
        TweetError::Ids(_) => status::unavailable(error),
        TweetError::Storage(_) => status::internal(error),
        // `in_batch` never nests, so the innermost entry is the one to name.
        TweetError::InBatch { list, index, error } => {
            status_of(error, Some(&format!("{list}[{index}]")))
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
    fn batch_failures_name_the_entry_and_keep_their_code() {
        let invalid =
            Status::from(TweetError::invalid("text", "must not be empty").in_batch("tweets", 3));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(
            status::violated_field(&invalid).as_deref(),
            Some("tweets[3].text")
        );
        assert_eq!(invalid.message(), "tweets[3].text: must not be empty");

        let reused = Status::from(TweetError::IdempotencyKeyReused.in_batch("tweets", 0));
        assert_eq!(reused.code(), Code::InvalidArgument);
        assert_eq!(
            status::violated_field(&reused).as_deref(),
            Some("tweets[0].idempotency_key")
        );

        let target = Status::from(
            TweetError::TargetNotFound {
                field: "reply_to_tweet_id",
                tweet_id: 9,
            }
            .in_batch("tweets", 12),
        );
        assert_eq!(target.code(), Code::NotFound);
        assert_eq!(
            target.message(),
            "tweets[12].reply_to_tweet_id: tweet 9 not found"
        );

        let gone = Status::from(
            TweetError::IdempotentTweetDeleted { tweet_id: 5 }
                .in_batch("tweets", 1)
                .in_batch("tweets", 2),
        );
        assert_eq!(gone.code(), Code::FailedPrecondition);
        assert!(gone.message().starts_with("tweets[1]: "), "{gone:?}");

        let storage = TweetError::storage(std::io::Error::other("disk")).in_batch("tweets", 4);
        assert!(matches!(storage, TweetError::Storage(_)), "{storage:?}");
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
