//! fanout-svc's one error type and its mapping to `tonic::Status`.

use tonic::Status;
use warble_mesh::event_log::EventLogError;
use warble_timeline_cache::CacheError;

/// Why applying an event or serving a call failed.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The entry's payload is not an `Event` (it will keep failing and end in the dead letter).
    #[error("undecodable event payload")]
    Decode(#[from] prost::DecodeError),
    /// The event has no payload this version understands.
    #[error("event {0} carries no known payload")]
    UnknownPayload(u64),
    /// tweet-svc or graph-svc answered with an error.
    #[error("{service} call failed: {status}")]
    Downstream {
        service: &'static str,
        status: Status,
    },
    /// The timeline cache failed.
    #[error("timeline cache failed")]
    Cache(#[from] CacheError),
    /// The event log failed.
    #[error("event log failed")]
    EventLog(#[from] EventLogError),
}

impl FanoutError {
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

impl From<FanoutError> for Status {
    fn from(error: FanoutError) -> Self {
        match &error {
            FanoutError::EventLog(_) | FanoutError::Cache(_) | FanoutError::Downstream { .. } => {
                warble_mesh::status::unavailable(&error)
            }
            FanoutError::Decode(_) | FanoutError::UnknownPayload(_) => {
                warble_mesh::status::internal(&error)
            }
        }
    }
}
