//! Where notifications live: one small trait, implemented by the embedded
//! store ([`EmbeddedNotificationStore`], redb) and by ScyllaDB
//! ([`ScyllaNotificationStore`]). `conformance` (behind the `conformance`
//! feature) holds the contract as executable checks every implementation
//! must pass.
//!
//! ## The model
//!
//! An **item** is one actor's action toward one recipient: `(recipient,
//! kind, tweet, actor)`, `tweet` being the liked or retweeted tweet, or the
//! tweet that mentions, replies or quotes (0 for a follow). Items live in
//! **groups**:
//! - a like, retweet or follow joins the recipient's open group of the same
//!   kind and tweet when that group's newest item is younger than
//!   [`GROUP_WINDOW_SECS`] at the new item's time; otherwise it opens a new
//!   group;
//! - a mention, reply or quote is a group of its own.
//!
//! A group has a stable id and a **position** in its recipient's list:
//! positions are issued by the store as items arrive, increase, and a group
//! takes the position of its newest item (so a group that absorbs an actor
//! moves to the top). The read marker is a position.
//!
//! ## Versions: exactly one effect per action
//!
//! Every item carries a [`Version`] (the event's time, then its id). The
//! store keeps the newest version it applied per item, with whether the
//! item is present or was undone (a tombstone). An add or a removal older
//! than, or equal to, the stored version changes nothing: a redelivered
//! event has no second effect, and an undo that overtakes its action
//! leaves a tombstone the late action cannot pass. The version and the
//! change it allows are written atomically.
//!
//! A deleted tweet is remembered too: its groups go, and no item about it
//! is accepted afterwards, whichever arrives first.
//!
//! A recipient who blocks an actor, or mutes them with notifications
//! hidden, **silences** them: their items for that recipient are removed
//! and new ones refused until every silence of the pair (the block's, the
//! mute's) is lifted or has lapsed.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod scylla;

use async_trait::async_trait;
use warble_proto::limits::notify::{GROUP_WINDOW_SECS, MAX_UNREAD_COUNT};

pub use embedded::EmbeddedNotificationStore;
pub use scylla::ScyllaNotificationStore;

use crate::error::NotifyError;

/// What a notification is about (the numbers are the proto enum's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A tweet mentions the recipient.
    Mention = 1,
    /// A tweet replies to one of the recipient's tweets.
    Reply = 2,
    /// A tweet quotes one of the recipient's tweets.
    Quote = 3,
    /// A like of one of the recipient's tweets.
    Like = 4,
    /// A retweet of one of the recipient's tweets.
    Retweet = 5,
    /// A new follower.
    Follow = 6,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Mention,
        Kind::Reply,
        Kind::Quote,
        Kind::Like,
        Kind::Retweet,
        Kind::Follow,
    ];

    /// Whether items of this kind gather in groups (likes, retweets,
    /// follows); the others are single items.
    pub fn groups(self) -> bool {
        matches!(self, Kind::Like | Kind::Retweet | Kind::Follow)
    }

    /// The kind numbered `value` (the proto enum's numbering).
    pub fn from_number(value: i32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| *kind as i32 == value)
    }
}

/// Orders the versions of one item: a later event wins; the event id breaks
/// ties between events of the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// When the action or undo happened, in Unix milliseconds.
    pub at_ms: i64,
    /// The event's id.
    pub event_id: u64,
}

/// One actor's action toward one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Item {
    /// Who is notified.
    pub recipient: u64,
    /// What happened.
    pub kind: Kind,
    /// The tweet concerned (0 for a follow).
    pub tweet_id: u64,
    /// Who did it.
    pub actor: u64,
}

/// One change to the notifications, derived from one domain event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An action: adds the item at `version.at_ms`, unless a version at
    /// least as new is stored, its tweet was deleted, or its recipient
    /// silences its actor. `filtered` puts a new group in the filtered list.
    Add {
        item: Item,
        version: Version,
        filtered: bool,
    },
    /// An undo: removes the item if present (its group shrinks, and goes
    /// when it has no items left) and stores a tombstone at `version`.
    Remove { item: Item, version: Version },
    /// A tweet was deleted: every group about it goes, for every recipient,
    /// and no item about it is accepted afterwards.
    TweetDeleted { tweet_id: u64 },
    /// `recipient` blocked `actor`, or muted them hiding notifications:
    /// removes `actor`'s items for `recipient` and refuses new ones until
    /// `until_ms` (`None`: until lifted). Applies only if `version` is newer
    /// than the last change of the pair's silence from the same `source`.
    Silence {
        recipient: u64,
        actor: u64,
        source: SilenceSource,
        version: Version,
        until_ms: Option<i64>,
    },
    /// The block or mute was lifted (if `version` is newer than the last
    /// change of the pair's silence from `source`). The actor is heard
    /// again only once no source silences them. Removed items do not come back.
    Unsilence {
        recipient: u64,
        actor: u64,
        source: SilenceSource,
        version: Version,
    },
}

/// Why a recipient silences an actor. A block and a mute are lifted
/// separately: unblocking someone still muted keeps them silenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SilenceSource {
    /// A block.
    Block = 1,
    /// A mute that hides notifications.
    Mute = 2,
}

impl SilenceSource {
    /// Both sources.
    pub const ALL: [SilenceSource; 2] = [SilenceSource::Block, SilenceSource::Mute];
}

/// What applying a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// An item was added to group `group_id` (`created`: a new group).
    Added {
        recipient: u64,
        group_id: u64,
        created: bool,
        filtered: bool,
    },
    /// `items` items were removed (an undo, a deletion, a silence).
    Removed { items: u64 },
    /// A newer version of the item (or a deletion, or a silence) was
    /// already applied: nothing changed.
    Stale,
    /// Applied, with no visible effect (an undo of an item never added, an unsilence).
    Recorded,
}

/// One notification group as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Stable id.
    pub id: u64,
    /// Who is notified.
    pub recipient: u64,
    /// What happened.
    pub kind: Kind,
    /// The tweet concerned (0 for follows).
    pub tweet_id: u64,
    /// How many items (actors) the group holds.
    pub count: u64,
    /// The newest actors, newest first, at most [`MAX_SAMPLE_ACTORS`](warble_proto::limits::notify::MAX_SAMPLE_ACTORS).
    pub actors: Vec<u64>,
    /// When the newest item happened, in Unix milliseconds.
    pub latest_at_ms: i64,
    /// The group's place in its list (the position of its newest item).
    pub position: u64,
    /// Whether the position is above the recipient's read marker.
    pub unread: bool,
    /// Whether the group is in the filtered list.
    pub filtered: bool,
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Whose notifications.
    pub recipient: u64,
    /// Only groups below this position (the previous page's last); `None`
    /// for the first page.
    pub before: Option<u64>,
    /// Most groups to return.
    pub limit: usize,
    /// Only these kinds; empty for all.
    pub kinds: Vec<Kind>,
    /// The filtered list instead of the main one.
    pub filtered: bool,
    /// Now, in Unix milliseconds: groups older than the retention are left out.
    pub now_ms: i64,
}

/// One page of groups, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPage {
    /// The groups.
    pub groups: Vec<Group>,
    /// The position to pass as `before` for the next page; `None` on the last page.
    pub next_before: Option<u64>,
}

/// The unread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unread {
    /// Unread groups in the main list, at most the cap asked for.
    pub count: u64,
    /// Whether more were unread than the cap.
    pub capped: bool,
    /// The read marker.
    pub read_up_to: u64,
}

/// Whether mentions, replies and quotes from accounts the recipient does
/// not follow are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrangerPolicy {
    /// They reach the main list.
    #[default]
    Accept,
    /// They go to the filtered list.
    Filter,
}

/// A recipient's notification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Mentions, replies and quotes from strangers.
    pub mentions_from_strangers: StrangerPolicy,
    /// Mentions, replies and quotes from accounts younger than this many
    /// days are filtered; 0 turns it off.
    pub new_accounts_days: u32,
}

/// The window of a group, in milliseconds.
pub const GROUP_WINDOW_MS: i64 = GROUP_WINDOW_SECS as i64 * 1_000;

/// Whether an item at `at_ms` joins a group whose newest item is at
/// `latest_at_ms` (rather than opening a new one). An item older than the
/// group's newest joins too: it arrived late, inside the window.
pub fn joins_group(latest_at_ms: i64, at_ms: i64) -> bool {
    at_ms.saturating_sub(latest_at_ms) < GROUP_WINDOW_MS
}

/// The oldest `latest_at_ms` a group may have at `now_ms` and still be kept.
pub fn retention_floor_ms(now_ms: i64) -> i64 {
    let retention_ms = warble_proto::limits::notify::RETENTION_DAYS as i64 * 86_400_000;
    now_ms.saturating_sub(retention_ms)
}

/// The unread count's cap.
pub const UNREAD_CAP: u64 = MAX_UNREAD_COUNT;

/// Storage for notification groups.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Applies one change atomically with its version (see the module docs);
    /// `now_ms` judges silences' expiry and retention.
    async fn apply(&self, change: Change, now_ms: i64) -> Result<Applied, NotifyError>;

    /// Applies the changes one event produced, in order. The embedded store
    /// commits them in one transaction; the default applies them one by one
    /// (each atomic with its version, so a retry after a partial failure
    /// re-applies only what is missing).
    async fn apply_all(
        &self,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> Result<Vec<Applied>, NotifyError> {
        let mut applied = Vec::with_capacity(changes.len());
        for change in changes {
            applied.push(self.apply(change, now_ms).await?);
        }
        Ok(applied)
    }

    /// A page of the recipient's groups, newest (highest position) first.
    async fn list(&self, query: ListQuery) -> Result<GroupPage, NotifyError>;

    /// The recipient's groups with these ids, in the order given; ids that
    /// do not exist, or belong to someone else, are left out.
    async fn get(&self, recipient: u64, group_ids: &[u64]) -> Result<Vec<Group>, NotifyError>;

    /// Unread groups of the main list (positions above the marker), counted
    /// up to `cap`.
    async fn unread(&self, recipient: u64, cap: u64) -> Result<Unread, NotifyError>;

    /// Moves the marker to the position of `up_to` (a group id), or to the
    /// newest position when `None`; never backwards. Returns the marker
    /// after the call. [`NotifyError::GroupNotFound`] when `up_to` is not
    /// one of the recipient's groups.
    async fn mark_read(&self, recipient: u64, up_to: Option<u64>) -> Result<u64, NotifyError>;

    /// The recipient's policy (the default when never set).
    async fn settings(&self, recipient: u64) -> Result<Settings, NotifyError>;

    /// Replaces the recipient's policy.
    async fn set_settings(&self, recipient: u64, settings: Settings) -> Result<(), NotifyError>;
}
