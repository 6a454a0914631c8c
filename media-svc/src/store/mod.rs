//! Media metadata: who owns what, what it is, and where it is in its life.
//!
//! [`MediaStore`] is the contract; [`EmbeddedMediaStore`] (redb, the
//! default) and [`RedisMediaStore`] (production: a Redis that persists and
//! never evicts) implement it, and [`conformance`] is the suite both pass.
//!
//! A record moves through [`State`]: `Uploaded` → (`Claimed` →) `Attached`
//! → `Deleting` → `Removing` → gone. Every record that may be deleted sits
//! in a *due* index keyed by when: an upload at upload time plus the
//! unattached TTL, a deleted tweet's media at deletion plus the grace. The
//! sweeper ([`crate::lifecycle`]) takes due ids, flips each to `Removing`
//! with [`MediaStore::begin_removal`] (which re-checks the state, so an
//! upload attached at the last moment is kept), deletes its files, then
//! [`MediaStore::finish_removal`]. A crash anywhere in between leaves the
//! record due, and the sweep runs again: deleting is idempotent.

mod embedded;
mod redis;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use embedded::EmbeddedMediaStore;
pub use redis::RedisMediaStore;

use serde::{Deserialize, Serialize};

use crate::error::MediaError;

/// What a media item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Video,
}

/// Where a media item is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum State {
    /// Stored, attached to nothing.
    Uploaded,
    /// Reserved for a post being created, until `until_ms`.
    Claimed { key: String, until_ms: i64 },
    /// Attached to a tweet (`tweet_id`), or an avatar (`tweet_id` 0).
    Attached { tweet_id: u64 },
    /// Its tweet was deleted; its files go at the record's `due_ms`.
    Deleting,
    /// Its files are being deleted.
    Removing,
}

/// The stored preview of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub content_type: String,
    pub size_bytes: u64,
}

/// One media item's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub id: u64,
    pub owner_id: u64,
    pub kind: Kind,
    /// The stored original's MIME type.
    pub content_type: String,
    pub size_bytes: u64,
    /// Images only.
    pub preview: Option<Preview>,
    pub width: u32,
    pub height: u32,
    pub blurhash: String,
    pub alt_text: String,
    pub created_at_ms: i64,
    pub state: State,
    /// When the sweeper may delete it (ignored while attached).
    pub due_ms: i64,
    /// The claim that attached it (empty when none did): a post retried
    /// with the same key after its tweet was created claims it again
    /// without error, and gets its original tweet back.
    #[serde(default)]
    pub attached_by_claim: String,
}

impl MediaRecord {
    /// Bytes of all its stored files.
    pub fn stored_bytes(&self) -> u64 {
        self.size_bytes + self.preview.as_ref().map_or(0, |p| p.size_bytes)
    }

    /// Whether `claim_key` may claim it now (see [`MediaStore::claim`]).
    pub fn claimable(&self, owner_id: u64, claim_key: &str, now_ms: i64) -> Result<(), Conflict> {
        if self.owner_id != owner_id {
            return Err(Conflict::NotOwner);
        }
        match &self.state {
            State::Uploaded => Ok(()),
            State::Claimed { key, .. } if key == claim_key => Ok(()),
            State::Claimed { until_ms, .. } if *until_ms <= now_ms => Ok(()),
            State::Claimed { .. } => Err(Conflict::Claimed),
            State::Attached { .. }
                if !self.attached_by_claim.is_empty() && self.attached_by_claim == claim_key =>
            {
                Ok(())
            }
            State::Attached { .. } => Err(Conflict::Attached),
            State::Deleting | State::Removing => Err(Conflict::Gone),
        }
    }

    /// The record's JSON, as both stores keep it.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serialises")
    }

    /// A record from [`MediaRecord::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, MediaError> {
        serde_json::from_slice(bytes).map_err(MediaError::storage)
    }
}

/// Why a media item cannot be used where it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// No such media (or it was deleted).
    Missing,
    /// Someone else uploaded it.
    NotOwner,
    /// Already attached to a tweet (or used as an avatar).
    Attached,
    /// Reserved by another post being created.
    Claimed,
    /// Being deleted.
    Gone,
    /// Not an image (an avatar must be one).
    NotImage,
}

impl Conflict {
    /// The refusal's wording, after "media {id} ".
    pub fn describe(self) -> &'static str {
        match self {
            Conflict::Missing => "does not exist",
            Conflict::NotOwner => "belongs to another user",
            Conflict::Attached => "is already attached to another tweet",
            Conflict::Claimed => "is being attached to another tweet",
            Conflict::Gone => "is being deleted",
            Conflict::NotImage => "is not an image",
        }
    }
}

/// What [`MediaStore::begin_removal`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Delete this record's files, then call [`MediaStore::finish_removal`].
    Remove(Box<MediaRecord>),
    /// Keep it (attached, or claimed until later: the due index was updated).
    Keep,
}

/// The metadata store (see the module docs).
#[async_trait::async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// Adds a new record (state `Uploaded`, due at `record.due_ms`).
    async fn insert(&self, record: &MediaRecord) -> Result<(), MediaError>;

    /// Records by id, in order; `None` for a missing one.
    async fn get_many(&self, ids: &[u64]) -> Result<Vec<Option<MediaRecord>>, MediaError>;

    /// Claims every id for `claim_key` until `until_ms`, all or nothing:
    /// each must be `owner_id`'s, and `Uploaded`, claimed by the same key,
    /// claimed by a lapsed claim, or already attached through this same key
    /// (a retried post; it stays attached). On a conflict nothing stays
    /// claimed and the first offending id is returned.
    async fn claim(
        &self,
        owner_id: u64,
        ids: &[u64],
        claim_key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Result<(), (u64, Conflict)>, MediaError>;

    /// Gives back the ids `claim_key` holds (others are left alone).
    async fn release(&self, owner_id: u64, ids: &[u64], claim_key: &str) -> Result<(), MediaError>;

    /// Attaches `owner_id`'s ids to `tweet_id` (from TweetCreated). Ids that
    /// are missing, someone else's, attached elsewhere or being deleted are
    /// skipped and returned; attaching again is a no-op.
    async fn attach(
        &self,
        tweet_id: u64,
        owner_id: u64,
        ids: &[u64],
    ) -> Result<Vec<(u64, Conflict)>, MediaError>;

    /// Marks an image of `owner_id`'s as an avatar (attached to no tweet),
    /// from `Uploaded` or an earlier avatar use (a claimed image is being
    /// posted: `Claimed`).
    async fn use_as_avatar(
        &self,
        owner_id: u64,
        id: u64,
    ) -> Result<Result<MediaRecord, Conflict>, MediaError>;

    /// Marks the ids attached to `tweet_id` for deletion at `due_ms` (from
    /// TweetDeleted). Idempotent; ids attached elsewhere are left alone.
    async fn schedule_deletion(
        &self,
        tweet_id: u64,
        ids: &[u64],
        due_ms: i64,
    ) -> Result<(), MediaError>;

    /// Up to `limit` ids due at `now_ms`, soonest first.
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<u64>, MediaError>;

    /// Decides whether a due id goes: `Uploaded` past its due time, a
    /// lapsed claim past it, `Deleting` past it, or `Removing` (an earlier
    /// attempt) become `Removing` and are returned; anything else is kept
    /// and leaves the due index (or moves in it, for a live claim). A
    /// missing id just leaves the index.
    async fn begin_removal(&self, id: u64, now_ms: i64) -> Result<Removal, MediaError>;

    /// Forgets a record whose files are deleted. Idempotent.
    async fn finish_removal(&self, id: u64) -> Result<(), MediaError>;
}

/// The decision [`MediaStore::begin_removal`] takes for a record, shared by
/// the implementations: `Some(new_due)` keeps it due at a later time.
pub(crate) fn removal_decision(record: &MediaRecord, now_ms: i64) -> RemovalDecision {
    match &record.state {
        State::Attached { .. } => RemovalDecision::Undue,
        State::Removing => RemovalDecision::Remove,
        State::Claimed { until_ms, .. } if *until_ms > now_ms => {
            RemovalDecision::Later(record.due_ms.max(*until_ms))
        }
        State::Uploaded | State::Claimed { .. } | State::Deleting => {
            if record.due_ms <= now_ms {
                RemovalDecision::Remove
            } else {
                RemovalDecision::Later(record.due_ms)
            }
        }
    }
}

/// See [`removal_decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemovalDecision {
    Remove,
    Undue,
    Later(i64),
}
