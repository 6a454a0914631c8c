//! media-svc's one error type and the one place it becomes a gRPC status.

use tonic::Status;
use warble_mesh::event_log::EventLogError;
use warble_mesh::status;

/// Why an upload was refused: each becomes INVALID_ARGUMENT with a message
/// a person can act on, and is counted by its [`Refusal::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bytes are none of the accepted formats (whatever the file name).
    #[error("unsupported type: the file is not a JPEG, PNG, GIF or WebP image or an MP4 video{0}")]
    UnsupportedType(String),
    /// Over the size limit of its kind.
    #[error("too large: {kind} files may be at most {limit} bytes")]
    TooLarge { kind: &'static str, limit: u64 },
    /// Decodes to more pixels than `limits.max_image_pixels`.
    #[error("too many pixels: {pixels} pixels, at most {limit} allowed")]
    TooManyPixels { pixels: u64, limit: u64 },
    /// Decoding would take more memory than `limits.max_image_pixels` allows.
    #[error("too many pixels: decoding needs more memory than the pixel limit allows")]
    DecodeLimit,
    /// Looked like an image but does not decode.
    #[error("undecodable image: {0}")]
    Undecodable(String),
    /// An empty upload, or a stream that broke the protocol.
    #[error("{0}")]
    Malformed(String),
}

impl Refusal {
    /// The stable label counted in GetStatus's `refusals`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnsupportedType(_) => "unsupported_type",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::TooManyPixels { .. } | Refusal::DecodeLimit => "too_many_pixels",
            Refusal::Undecodable(_) => "undecodable",
            Refusal::Malformed(_) => "invalid",
        }
    }
}

/// Everything that can go wrong serving a call or applying an event.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A request field breaks a rule; `field` is its name in the request.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// An upload was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The media (or the variant) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A read range starts past the end of the file.
    #[error("range starts at byte {offset}, past the end ({total} bytes)")]
    OutOfRange { offset: u64, total: u64 },
    /// An event-log entry is not an `Event`.
    #[error("undecodable event payload")]
    Decode(#[from] prost::DecodeError),
    /// The event log failed.
    #[error("event log failed")]
    EventLog(#[from] EventLogError),
    /// The metadata store failed; the cause is logged, never sent to clients.
    #[error("media store failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The object store failed; the cause is logged, never sent to clients.
    #[error("object store failed")]
    Blobs(#[source] object_store::Error),
    /// A worker task died (a bug: image decoding panicked).
    #[error("media processing failed")]
    Processing(#[source] tokio::task::JoinError),
}

impl MediaError {
    /// Shorthand for [`MediaError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Wraps any metadata-store failure as [`MediaError::Storage`].
    pub fn storage(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Storage(error.into())
    }
}

impl From<object_store::Error> for MediaError {
    fn from(error: object_store::Error) -> Self {
        Self::Blobs(error)
    }
}

impl From<MediaError> for Status {
    fn from(error: MediaError) -> Self {
        match &error {
            MediaError::Invalid { field, reason } => status::invalid_argument(field, reason),
            MediaError::Refused(refusal) => Status::invalid_argument(refusal.to_string()),
            MediaError::NotFound(message) => status::not_found(message.clone()),
            MediaError::OutOfRange { .. } => Status::out_of_range(error.to_string()),
            MediaError::EventLog(_) => status::unavailable(&error),
            MediaError::Blobs(object_store::Error::NotFound { .. }) => {
                status::not_found("the media's file is gone")
            }
            MediaError::Blobs(_) => status::unavailable(&error),
            MediaError::Decode(_) | MediaError::Storage(_) | MediaError::Processing(_) => {
                status::internal(&error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_messages() {
        let status = Status::from(MediaError::from(Refusal::TooLarge {
            kind: "image",
            limit: 5,
        }));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("too large"), "{status:?}");
        let status = Status::from(MediaError::invalid("alt_text", "too long"));
        assert_eq!(status::violated_field(&status).as_deref(), Some("alt_text"));
        assert_eq!(
            Status::from(MediaError::NotFound("media 7 not found".into())).code(),
            Code::NotFound
        );
        let internal = Status::from(MediaError::storage("disk on fire at /var/x"));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("/var/x"), "{internal:?}");
    }
}
