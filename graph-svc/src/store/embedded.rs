//! The graph in the process's embedded redb database, next to the event log,
//! so every change and the event it publishes commit in one transaction.
//!
//! Follow counts are kept in their own table and updated in the follow's
//! transaction: reading them never scans, however many followers a user has.
//! Each follow is indexed twice, by followee and by follower, under its
//! `follow_seq`, so both lists are range scans in "most recent first" order.
//! Blocks and mutes are keyed by the pair, so a relation is a point lookup
//! (timelines ask for a page of authors at a time), and indexed by owner
//! under their seq for the lists. A lapsed mute stays stored until it is
//! replaced or removed; every read judges it against the caller's `now_ms`.
//! An identity (issuer, subject) is bound to its user by a row written in
//! the transaction that creates the user.
//!
//! A write transaction is one fsync, which bounds a caller making one call
//! per item to about a thousand writes a second. The batch writes
//! (`create_users`, `follow_many`) run a whole batch in one transaction
//! through the same per-item code as the single calls, so a batch costs
//! about one fsync and still commits, or not, as a whole.

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use prost::Message as _;
use redb::{
    Database, ReadableDatabase as _, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog};
use warble_mesh::snowflake::{self, SnowflakeGenerator};
use warble_proto::events::v1::{Event, Followed, Unfollowed, event::Payload};

use super::{
    EdgePosition, FollowChange, FollowCounts, FollowEdge, FollowPage, GraphStore, Identity,
    MuteChange, NewUser, PageQuery, ProfileChange, ProfileUpdate, Registration, Relation,
    RelationEdge, RelationPage, ScannedUser, User, UserScanPage, check_follow_batch,
    check_mute_expiry, check_write_batch, dangling_identity, distinct_pair, distinct_users, events,
    expiry_from_stored, follow_refused, mute_is_active, repeated_registration, stored_expiry,
    user_not_found, username_taken,
};
use crate::error::GraphError;

/// id -> [`UserRecord`].
const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("graph.users");
/// Lower-cased username -> id: the uniqueness constraint.
const USERNAMES: TableDefinition<&str, u64> = TableDefinition::new("graph.usernames");
/// (follower, followee) -> follow_seq: the edge itself.
const FOLLOWS: TableDefinition<(u64, u64), u64> = TableDefinition::new("graph.follows");
/// (followee, follow_seq, follower): a user's followers in follow order.
const FOLLOWERS: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("graph.followers");
/// (follower, follow_seq, followee): whom a user follows in follow order.
const FOLLOWING: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("graph.following");
/// id -> (followers, following). Every user has a row from creation, so it
/// doubles as the cheap "does this user exist" check.
const COUNTS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("graph.counts");
/// (blocker, blocked) -> block seq: the block itself.
const BLOCKS: TableDefinition<(u64, u64), u64> = TableDefinition::new("graph.blocks");
/// (blocker, block seq, blocked): whom a user blocks in block order.
const BLOCKING: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("graph.blocking");
/// (muter, muted) -> (mute seq, expires_at_ms or 0 for never,
/// hide_notifications): the mute itself, lapsed or not.
const MUTES: TableDefinition<(u64, u64), (u64, i64, bool)> = TableDefinition::new("graph.mutes");
/// (muter, mute seq, muted): whom a user mutes in mute order.
const MUTING: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("graph.muting");
/// (issuer, subject) -> id of the user the identity registered as: the
/// binding, written in the user's own transaction.
const IDENTITIES: TableDefinition<(&str, &str), u64> = TableDefinition::new("graph.identities");
/// Store-wide values, see [`MAX_ISSUED_ID`].
const META: TableDefinition<&str, u64> = TableDefinition::new("graph.meta");
/// The largest Snowflake id ever persisted (user ids, follow seqs, event
/// ids), so a restarted generator never reissues one even if the clock went back.
const MAX_ISSUED_ID: &str = "max_issued_id";

/// Most index entries one page looks at. Bounds the work of a filtered page
/// whose filter matches little; an unfiltered page always scans `limit + 1`.
const SCAN_BUDGET: usize = 10_000;

/// The stored form of a user (the id is the key). Protobuf so fields can be
/// added later without rewriting old records: a record written before a
/// field existed decodes with the field's default (tag 8, the avatar, reads
/// as 0, no avatar).
#[derive(Clone, PartialEq, prost::Message)]
struct UserRecord {
    #[prost(string, tag = "1")]
    username: String,
    #[prost(string, tag = "2")]
    display_name: String,
    #[prost(string, tag = "3")]
    bio: String,
    #[prost(int64, tag = "4")]
    created_at_ms: i64,
    #[prost(string, tag = "5")]
    location: String,
    #[prost(string, tag = "6")]
    website: String,
    #[prost(bool, tag = "7")]
    verified: bool,
    #[prost(fixed64, tag = "8")]
    avatar_media_id: u64,
}

impl UserRecord {
    fn of(user: &User) -> Self {
        Self {
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            bio: user.bio.clone(),
            created_at_ms: user.created_at_ms,
            location: user.location.clone(),
            website: user.website.clone(),
            verified: user.verified,
            avatar_media_id: user.avatar_media_id,
        }
    }

    fn into_user(self, id: u64) -> User {
        User {
            id,
            username: self.username,
            display_name: self.display_name,
            bio: self.bio,
            created_at_ms: self.created_at_ms,
            location: self.location,
            website: self.website,
            verified: self.verified,
            avatar_media_id: self.avatar_media_id,
        }
    }
}

/// [`GraphStore`] on the embedded database.
#[derive(Clone)]
pub struct EmbeddedGraphStore {
    log: EmbeddedEventLog,
    ids: Arc<SnowflakeGenerator>,
}

impl std::fmt::Debug for EmbeddedGraphStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedGraphStore")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl EmbeddedGraphStore {
    /// Opens the store in `log`'s database, creating its tables, and makes
    /// `ids` issue only ids above every id already stored.
    ///
    /// The store draws its ids itself, inside its write transactions: follow
    /// seqs must follow commit order for paging to be stable.
    pub fn open(log: EmbeddedEventLog, ids: Arc<SnowflakeGenerator>) -> Result<Self, GraphError> {
        let txn = log.database().begin_write()?;
        txn.open_table(USERS)?;
        txn.open_table(USERNAMES)?;
        txn.open_table(FOLLOWS)?;
        txn.open_table(FOLLOWERS)?;
        txn.open_table(FOLLOWING)?;
        txn.open_table(COUNTS)?;
        txn.open_table(BLOCKS)?;
        txn.open_table(BLOCKING)?;
        txn.open_table(MUTES)?;
        txn.open_table(MUTING)?;
        txn.open_table(IDENTITIES)?;
        let max_issued = txn
            .open_table(META)?
            .get(MAX_ISSUED_ID)?
            .map(|id| id.value());
        txn.commit()?;
        if let Some(max_issued) = max_issued {
            ids.resume_after(max_issued);
        }
        Ok(Self { log, ids })
    }

    /// Runs a redb read on the calling task. Read transactions are MVCC
    /// snapshots that never wait for a writer, and a page of reads is served
    /// from redb's page cache in microseconds: handing it to the blocking
    /// pool costs more (a thread wake-up and two context switches per call)
    /// than the read. Writes, which fsync, use [`Self::blocking`].
    fn reading<T>(
        &self,
        work: impl FnOnce(&Database, &SnowflakeGenerator) -> Result<T, GraphError>,
    ) -> Result<T, GraphError> {
        work(self.log.database(), &self.ids)
    }

    /// Runs redb work off the async runtime.
    async fn blocking<T, F>(&self, work: F) -> Result<T, GraphError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &SnowflakeGenerator) -> Result<T, GraphError> + Send + 'static,
    {
        let (database, ids) = (self.log.database().clone(), self.ids.clone());
        warble_mesh::telemetry::spawn_blocking_in_span(move || work(&database, &ids)).await?
    }

    /// Runs changes in one write transaction, off the async runtime; if
    /// `work` fails, nothing it wrote is kept. `work` returns its result and
    /// whether it changed the graph: a transaction that changed nothing is
    /// aborted rather than committed (an idempotent repeat costs no fsync),
    /// and one that did published events, so consumers are woken.
    async fn change<T, F>(&self, work: F) -> Result<T, GraphError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &SnowflakeGenerator) -> Result<(T, bool), GraphError>
            + Send
            + 'static,
    {
        let (result, changed) = self
            .blocking(move |database, ids| {
                let txn = database.begin_write()?;
                let (result, changed) = work(&txn, ids)?;
                if changed {
                    txn.commit()?;
                } else {
                    txn.abort()?;
                }
                Ok((result, changed))
            })
            .await?;
        if changed {
            self.log.notify_appended();
        }
        Ok(result)
    }

    /// Runs a follow or unfollow.
    async fn change_follow(
        &self,
        follower: u64,
        followee: u64,
        follow: bool,
    ) -> Result<FollowChange, GraphError> {
        distinct_users(follower, followee)?;
        self.change(move |txn, ids| {
            let change = if follow {
                write_follow(txn, ids, follower, followee)?
            } else {
                write_unfollow(txn, ids, follower, followee)?
            };
            Ok((change, change.changed))
        })
        .await
    }

    /// Runs one change between two different users that says whether it
    /// changed anything.
    async fn change_pair<F>(
        &self,
        (first, second): (u64, u64),
        (first_field, second_field): (&str, &str),
        work: F,
    ) -> Result<bool, GraphError>
    where
        F: FnOnce(&WriteTransaction, &SnowflakeGenerator) -> Result<bool, GraphError>
            + Send
            + 'static,
    {
        distinct_pair(first, second, first_field, second_field)?;
        self.change(move |txn, ids| {
            let changed = work(txn, ids)?;
            Ok((changed, changed))
        })
        .await
    }

    /// Runs one profile change.
    async fn change_profile<F>(&self, user: u64, edit: F) -> Result<ProfileChange, GraphError>
    where
        F: FnOnce(&mut User) -> bool + Send + 'static,
    {
        self.change(move |txn, ids| {
            let change = write_profile(txn, ids, user, edit)?;
            let changed = change.changed;
            Ok((change, changed))
        })
        .await
    }
}

fn ms_of(id: u64) -> i64 {
    snowflake::decode(id).unix_ms as i64
}

/// Records that `id` was persisted in this transaction.
fn raise_max_issued(txn: &WriteTransaction, id: u64) -> Result<(), GraphError> {
    let mut meta = txn.open_table(META)?;
    let current = meta.get(MAX_ISSUED_ID)?.map(|v| v.value()).unwrap_or(0);
    if id > current {
        meta.insert(MAX_ISSUED_ID, id)?;
    }
    Ok(())
}

/// A user's counts; `NotFound` when the user does not exist.
fn counts_of(
    counts: &impl ReadableTable<u64, (u64, u64)>,
    id: u64,
) -> Result<FollowCounts, GraphError> {
    let (followers, following) = counts
        .get(id)?
        .map(|c| c.value())
        .ok_or_else(|| user_not_found(id))?;
    Ok(FollowCounts {
        followers,
        following,
    })
}

fn save_counts(
    counts: &mut Table<u64, (u64, u64)>,
    id: u64,
    value: FollowCounts,
) -> Result<(), GraphError> {
    counts.insert(id, (value.followers, value.following))?;
    Ok(())
}

impl FollowChange {
    fn new(changed: bool, follower: FollowCounts, followee: FollowCounts) -> Self {
        Self {
            changed,
            followee_followers: followee.followers,
            follower_following: follower.following,
        }
    }
}

/// Appends `event` in the caller's transaction. Follow events are keyed by the
/// followee: fan-out processes one key's events in order, and an author's
/// tweets are keyed by the author, so "bob tweets" and "alice unfollows bob"
/// are applied in the order they happened.
fn publish(txn: &WriteTransaction, key: u64, event: &Event) -> Result<(), GraphError> {
    EmbeddedEventLog::append_in(
        txn,
        DOMAIN_EVENTS_STREAM,
        key,
        &warble_mesh::telemetry::encode_event(event),
    )?;
    raise_max_issued(txn, event.event_id)
}

/// Creates `user` in the caller's transaction, which sees the users it
/// created before, so a batch repeating a username fails like a taken one,
/// and appends `UserCreated` in it.
fn write_user(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    user: NewUser,
) -> Result<User, GraphError> {
    let lowered = user.username.to_ascii_lowercase();
    let id = {
        let mut usernames = txn.open_table(USERNAMES)?;
        if usernames.get(lowered.as_str())?.is_some() {
            return Err(username_taken(&user.username));
        }
        let id = ids.next_id()?;
        usernames.insert(lowered.as_str(), id)?;
        id
    };
    let user = user.into_user(id);
    txn.open_table(USERS)?
        .insert(id, UserRecord::of(&user).encode_to_vec().as_slice())?;
    txn.open_table(COUNTS)?.insert(id, (0, 0))?;
    raise_max_issued(txn, id)?;
    publish(txn, id, &events::user_created(ids.next_id()?, &user))?;
    Ok(user)
}

/// Registers `identity` as `user` in the caller's transaction: the user
/// (with its `UserCreated`, as [`write_user`]) and the binding, or, for an
/// identity bound already, the answer [`repeated_registration`] gives,
/// writing nothing. Whether it wrote is `created`.
fn write_registration(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    identity: &Identity,
    user: NewUser,
) -> Result<Registration, GraphError> {
    let key = (identity.issuer.as_str(), identity.subject.as_str());
    let bound = txn.open_table(IDENTITIES)?.get(key)?.map(|id| id.value());
    if let Some(id) = bound {
        let existing =
            read_user(&txn.open_table(USERS)?, id)?.ok_or_else(|| dangling_identity(id))?;
        return repeated_registration(existing, &user.username);
    }
    let user = write_user(txn, ids, user)?;
    txn.open_table(IDENTITIES)?.insert(key, user.id)?;
    Ok(Registration {
        user,
        created: true,
    })
}

/// Edits user `id`'s profile in the caller's transaction; when `edit` says
/// it changed something, stores it and appends `ProfileUpdated`.
fn write_profile(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    id: u64,
    edit: impl FnOnce(&mut User) -> bool,
) -> Result<ProfileChange, GraphError> {
    let mut users = txn.open_table(USERS)?;
    let mut user = read_user(&users, id)?.ok_or_else(|| user_not_found(id))?;
    if !edit(&mut user) {
        return Ok(ProfileChange {
            user,
            changed: false,
        });
    }
    users.insert(id, UserRecord::of(&user).encode_to_vec().as_slice())?;
    drop(users);
    publish(txn, id, &events::profile_updated(ids.next_id()?, &user))?;
    Ok(ProfileChange {
        user,
        changed: true,
    })
}

/// `NotFound` unless both users exist.
fn both_exist(txn: &WriteTransaction, first: u64, second: u64) -> Result<(), GraphError> {
    let counts = txn.open_table(COUNTS)?;
    counts_of(&counts, first)?;
    counts_of(&counts, second)?;
    Ok(())
}

/// Whether `a` blocks `b` or `b` blocks `a`.
fn blocked_either_way(
    blocks: &impl ReadableTable<(u64, u64), u64>,
    a: u64,
    b: u64,
) -> Result<bool, GraphError> {
    Ok(blocks.get((a, b))?.is_some() || blocks.get((b, a))?.is_some())
}

/// The stored mute of `muter` on `muted`, if any, lapsed or not: its seq,
/// expiry and setting.
fn read_mute(
    mutes: &impl ReadableTable<(u64, u64), (u64, i64, bool)>,
    muter: u64,
    muted: u64,
) -> Result<Option<(u64, Option<i64>, bool)>, GraphError> {
    Ok(mutes.get((muter, muted))?.map(|mute| {
        let (seq, expires, hide) = mute.value();
        (seq, expiry_from_stored(expires), hide)
    }))
}

/// Makes `blocker` block `blocked` in the caller's transaction: removes the
/// follows both ways (each appending its `Unfollowed`), records the block,
/// appends `Blocked`. False, writing nothing, when the block exists.
fn write_block(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    blocker: u64,
    blocked: u64,
) -> Result<bool, GraphError> {
    both_exist(txn, blocker, blocked)?;
    if txn.open_table(BLOCKS)?.get((blocker, blocked))?.is_some() {
        return Ok(false);
    }
    write_unfollow(txn, ids, blocker, blocked)?;
    write_unfollow(txn, ids, blocked, blocker)?;
    // Drawn inside the write transaction, as a follow's seq: block lists
    // page as stably as follow lists.
    let seq = ids.next_id()?;
    txn.open_table(BLOCKS)?.insert((blocker, blocked), seq)?;
    txn.open_table(BLOCKING)?
        .insert((blocker, seq, blocked), ())?;
    let event = events::blocked(ids.next_id()?, blocker, blocked, seq);
    publish(txn, blocked, &event)?;
    Ok(true)
}

fn write_unblock(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    blocker: u64,
    blocked: u64,
) -> Result<bool, GraphError> {
    both_exist(txn, blocker, blocked)?;
    let Some(seq) = txn
        .open_table(BLOCKS)?
        .remove((blocker, blocked))?
        .map(|seq| seq.value())
    else {
        return Ok(false);
    };
    txn.open_table(BLOCKING)?.remove((blocker, seq, blocked))?;
    publish(
        txn,
        blocked,
        &events::unblocked(ids.next_id()?, blocker, blocked),
    )?;
    Ok(true)
}

/// Makes `muter` mute `muted` in the caller's transaction and appends
/// `Muted`, unless an identical mute is active at `now_ms`. An active mute
/// keeps its seq (its place in the list); a lapsed one is replaced by a new
/// mute with a new seq.
fn write_mute(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    (muter, muted): (u64, u64),
    (expires_at_ms, hide_notifications): (Option<i64>, bool),
    now_ms: i64,
) -> Result<MuteChange, GraphError> {
    both_exist(txn, muter, muted)?;
    let mut mutes = txn.open_table(MUTES)?;
    let mut muting = txn.open_table(MUTING)?;
    let unchanged = MuteChange {
        changed: false,
        expires_at_ms,
    };
    let kept_seq = match read_mute(&mutes, muter, muted)? {
        Some((seq, expires, hide)) if mute_is_active(expires, now_ms) => {
            if (expires, hide) == (expires_at_ms, hide_notifications) {
                return Ok(unchanged);
            }
            Some(seq)
        }
        Some((lapsed_seq, _, _)) => {
            muting.remove((muter, lapsed_seq, muted))?;
            None
        }
        None => None,
    };
    let (seq, made_at) = match kept_seq {
        Some(seq) => (seq, None),
        None => {
            let seq = ids.next_id()?;
            muting.insert((muter, seq, muted), ())?;
            (seq, Some(ms_of(seq)))
        }
    };
    mutes.insert(
        (muter, muted),
        (seq, stored_expiry(expires_at_ms), hide_notifications),
    )?;
    drop((mutes, muting));
    let event_id = ids.next_id()?;
    let event = events::muted(
        event_id,
        (muter, muted),
        made_at.unwrap_or_else(|| ms_of(event_id)),
        expires_at_ms,
        hide_notifications,
    );
    publish(txn, muted, &event)?;
    Ok(MuteChange {
        changed: true,
        expires_at_ms,
    })
}

/// Removes `muter`'s mute on `muted` if it is active at `now_ms`, appending
/// `Unmuted`; a lapsed mute is left for the next mute to replace.
fn write_unmute(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    muter: u64,
    muted: u64,
    now_ms: i64,
) -> Result<bool, GraphError> {
    both_exist(txn, muter, muted)?;
    let mut mutes = txn.open_table(MUTES)?;
    let Some((seq, expires, _)) = read_mute(&mutes, muter, muted)? else {
        return Ok(false);
    };
    if !mute_is_active(expires, now_ms) {
        return Ok(false);
    }
    mutes.remove((muter, muted))?;
    drop(mutes);
    txn.open_table(MUTING)?.remove((muter, seq, muted))?;
    publish(txn, muted, &events::unmuted(ids.next_id()?, muter, muted))?;
    Ok(true)
}

/// Makes `follower` follow `followee` in the caller's transaction and
/// appends `Followed` to the event log in it. Reads the counts as the
/// transaction left them, so follows earlier in the same batch count.
fn write_follow(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    follower: u64,
    followee: u64,
) -> Result<FollowChange, GraphError> {
    let mut counts = txn.open_table(COUNTS)?;
    let mut follower_counts = counts_of(&counts, follower)?;
    let mut followee_counts = counts_of(&counts, followee)?;
    if blocked_either_way(&txn.open_table(BLOCKS)?, follower, followee)? {
        return Err(follow_refused());
    }
    let mut follows = txn.open_table(FOLLOWS)?;
    if follows.get((follower, followee))?.is_some() {
        return Ok(FollowChange::new(false, follower_counts, followee_counts));
    }
    // Drawn inside the write transaction: redb serialises writers, so seqs
    // increase in commit order and a new follow sorts before every cursor
    // handed out earlier.
    let seq = ids.next_id()?;
    follows.insert((follower, followee), seq)?;
    txn.open_table(FOLLOWERS)?
        .insert((followee, seq, follower), ())?;
    txn.open_table(FOLLOWING)?
        .insert((follower, seq, followee), ())?;
    followee_counts.followers += 1;
    follower_counts.following += 1;
    save_counts(&mut counts, followee, followee_counts)?;
    save_counts(&mut counts, follower, follower_counts)?;
    let event = Event {
        event_id: ids.next_id()?,
        occurred_at_ms: ms_of(seq),
        trace_context: Default::default(),
        payload: Some(Payload::Followed(Followed {
            follower_id: follower,
            followee_id: followee,
            followed_at_ms: ms_of(seq),
            followee_followers_count: followee_counts.followers,
            follower_following_count: follower_counts.following,
        })),
    };
    publish(txn, followee, &event)?;
    Ok(FollowChange::new(true, follower_counts, followee_counts))
}

fn write_unfollow(
    txn: &WriteTransaction,
    ids: &SnowflakeGenerator,
    follower: u64,
    followee: u64,
) -> Result<FollowChange, GraphError> {
    let mut counts = txn.open_table(COUNTS)?;
    let mut follower_counts = counts_of(&counts, follower)?;
    let mut followee_counts = counts_of(&counts, followee)?;
    let Some(seq) = txn
        .open_table(FOLLOWS)?
        .remove((follower, followee))?
        .map(|seq| seq.value())
    else {
        return Ok(FollowChange::new(false, follower_counts, followee_counts));
    };
    txn.open_table(FOLLOWERS)?
        .remove((followee, seq, follower))?;
    txn.open_table(FOLLOWING)?
        .remove((follower, seq, followee))?;
    followee_counts.followers = followee_counts.followers.saturating_sub(1);
    follower_counts.following = follower_counts.following.saturating_sub(1);
    save_counts(&mut counts, followee, followee_counts)?;
    save_counts(&mut counts, follower, follower_counts)?;
    let event_id = ids.next_id()?;
    let event = Event {
        event_id,
        occurred_at_ms: ms_of(event_id),
        trace_context: Default::default(),
        payload: Some(Payload::Unfollowed(Unfollowed {
            follower_id: follower,
            followee_id: followee,
            unfollowed_at_ms: ms_of(event_id),
            followee_followers_count: followee_counts.followers,
            follower_following_count: follower_counts.following,
        })),
    };
    publish(txn, followee, &event)?;
    Ok(FollowChange::new(true, follower_counts, followee_counts))
}

/// Reads one page of `owner`'s entries in a follow index, newest first,
/// keeping the users `keep` accepts.
///
/// The next page starts after the last entry *looked at*, not the last one
/// returned, so entries a filter rejected are not scanned again.
fn scan_page(
    index: &impl ReadableTable<(u64, u64, u64), ()>,
    owner: u64,
    query: PageQuery,
    scan_budget: usize,
    mut keep: impl FnMut(u64) -> Result<bool, GraphError>,
) -> Result<FollowPage, GraphError> {
    let (edges, next) = scan_index(index, owner, query, scan_budget, |position| {
        Ok(keep(position.user_id)?.then_some(FollowEdge {
            user_id: position.user_id,
            followed_at_ms: ms_of(position.follow_seq),
            position,
        }))
    })?;
    Ok(FollowPage { edges, next })
}

/// [`scan_page`] for any list kept in an index shaped like the follow
/// indexes: `pick` turns each position looked at into an edge, or skips it.
/// Returns the edges and where the next page starts.
fn scan_index<E>(
    index: &impl ReadableTable<(u64, u64, u64), ()>,
    owner: u64,
    query: PageQuery,
    scan_budget: usize,
    mut pick: impl FnMut(EdgePosition) -> Result<Option<E>, GraphError>,
) -> Result<(Vec<E>, Option<EdgePosition>), GraphError> {
    let limit = query.limit.max(1);
    let end = match query.after {
        Some(after) => Bound::Excluded((owner, after.follow_seq, after.user_id)),
        None => Bound::Included((owner, u64::MAX, u64::MAX)),
    };
    let budget = scan_budget.max(limit + 1);
    let mut edges = Vec::new();
    let mut last_seen = None;
    for (scanned, entry) in index
        .range((Bound::Included((owner, 0, 0)), end))?
        .rev()
        .enumerate()
    {
        let (key, _) = entry?;
        let (_, follow_seq, user_id) = key.value();
        // Reaching here means another entry exists, so a next page does too.
        if scanned == budget {
            return Ok((edges, last_seen));
        }
        let position = EdgePosition {
            follow_seq,
            user_id,
        };
        if let Some(edge) = pick(position)? {
            if edges.len() == limit {
                return Ok((edges, last_seen));
            }
            edges.push(edge);
        }
        last_seen = Some(position);
    }
    Ok((edges, None))
}

fn read_user(
    users: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<User>, GraphError> {
    users
        .get(id)?
        .map(|record| Ok(UserRecord::decode(record.value())?.into_user(id)))
        .transpose()
}

#[async_trait]
impl GraphStore for EmbeddedGraphStore {
    async fn create_user(&self, user: NewUser) -> Result<User, GraphError> {
        self.change(move |txn, ids| Ok((write_user(txn, ids, user)?, true)))
            .await
    }

    /// One transaction for the whole batch: one fsync, and a failing entry
    /// rolls back the users created before it.
    async fn create_users(&self, users: Vec<NewUser>) -> Result<Vec<User>, GraphError> {
        check_write_batch("users", users.len())?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        self.change(move |txn, ids| {
            let created = users
                .into_iter()
                .enumerate()
                .map(|(index, user)| {
                    write_user(txn, ids, user).map_err(|error| error.in_batch("users", index))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((created, true))
        })
        .await
    }

    /// One transaction: the user, the binding and `UserCreated`; a repeat
    /// reads the binding and commits nothing.
    async fn register_user(
        &self,
        identity: Identity,
        user: NewUser,
    ) -> Result<Registration, GraphError> {
        self.change(move |txn, ids| {
            let registration = write_registration(txn, ids, &identity, user)?;
            let created = registration.created;
            Ok((registration, created))
        })
        .await
    }

    async fn resolve_identity(&self, identity: &Identity) -> Result<Option<u64>, GraphError> {
        self.reading(|database, _| {
            let identities = database.begin_read()?.open_table(IDENTITIES)?;
            let key = (identity.issuer.as_str(), identity.subject.as_str());
            Ok(identities.get(key)?.map(|id| id.value()))
        })
    }

    async fn get_users(&self, ids: &[u64]) -> Result<Vec<Option<User>>, GraphError> {
        let ids = ids.to_vec();
        self.reading(move |database, _| {
            let users = database.begin_read()?.open_table(USERS)?;
            ids.into_iter().map(|id| read_user(&users, id)).collect()
        })
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, GraphError> {
        let lowered = username.to_ascii_lowercase();
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            let Some(id) = read
                .open_table(USERNAMES)?
                .get(lowered.as_str())?
                .map(|id| id.value())
            else {
                return Ok(None);
            };
            read_user(&read.open_table(USERS)?, id)
        })
    }

    async fn follow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError> {
        self.change_follow(follower, followee, true).await
    }

    async fn unfollow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError> {
        self.change_follow(follower, followee, false).await
    }

    /// One transaction for the whole batch: one fsync, a failing pair rolls
    /// back the follows before it, and each follow appends its own event in
    /// it exactly as a single follow does.
    async fn follow_many(&self, pairs: &[(u64, u64)]) -> Result<Vec<FollowChange>, GraphError> {
        check_follow_batch(pairs)?;
        let pairs = pairs.to_vec();
        self.change(move |txn, ids| {
            let changes = pairs
                .into_iter()
                .enumerate()
                .map(|(index, (follower, followee))| {
                    write_follow(txn, ids, follower, followee)
                        .map_err(|error| error.in_batch("pairs", index))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let changed = changes.iter().any(|change| change.changed);
            Ok((changes, changed))
        })
        .await
    }

    async fn list_followers(&self, user: u64, page: PageQuery) -> Result<FollowPage, GraphError> {
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            if read.open_table(COUNTS)?.get(user)?.is_none() {
                return Err(user_not_found(user));
            }
            scan_page(
                &read.open_table(FOLLOWERS)?,
                user,
                page,
                SCAN_BUDGET,
                |_| Ok(true),
            )
        })
    }

    async fn list_following(
        &self,
        user: u64,
        page: PageQuery,
        min_followers: u64,
    ) -> Result<FollowPage, GraphError> {
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            let counts = read.open_table(COUNTS)?;
            if counts.get(user)?.is_none() {
                return Err(user_not_found(user));
            }
            scan_page(
                &read.open_table(FOLLOWING)?,
                user,
                page,
                SCAN_BUDGET,
                |followee| {
                    if min_followers == 0 {
                        return Ok(true);
                    }
                    let followers = counts.get(followee)?.map_or(0, |c| c.value().0);
                    Ok(followers >= min_followers)
                },
            )
        })
    }

    async fn follow_counts(&self, ids: &[u64]) -> Result<Vec<Option<FollowCounts>>, GraphError> {
        let ids = ids.to_vec();
        self.reading(move |database, _| {
            let counts = database.begin_read()?.open_table(COUNTS)?;
            ids.into_iter()
                .map(|id| {
                    Ok(counts.get(id)?.map(|c| {
                        let (followers, following) = c.value();
                        FollowCounts {
                            followers,
                            following,
                        }
                    }))
                })
                .collect()
        })
    }

    async fn is_following(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError> {
        let pairs = pairs.to_vec();
        self.reading(move |database, _| {
            let follows = database.begin_read()?.open_table(FOLLOWS)?;
            pairs
                .into_iter()
                .map(|pair| Ok(follows.get(pair)?.is_some()))
                .collect()
        })
    }

    async fn get_users_by_usernames(
        &self,
        usernames: &[String],
    ) -> Result<Vec<Option<User>>, GraphError> {
        let lowered: Vec<String> = usernames
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            let (ids, users) = (read.open_table(USERNAMES)?, read.open_table(USERS)?);
            lowered
                .iter()
                .map(|name| match ids.get(name.as_str())? {
                    Some(id) => read_user(&users, id.value()),
                    None => Ok(None),
                })
                .collect()
        })
    }

    async fn update_profile(
        &self,
        user: u64,
        update: ProfileUpdate,
    ) -> Result<ProfileChange, GraphError> {
        self.change_profile(user, move |profile| update.apply(profile))
            .await
    }

    async fn set_verified(&self, user: u64, verified: bool) -> Result<ProfileChange, GraphError> {
        self.change_profile(user, move |profile| {
            let changed = profile.verified != verified;
            profile.verified = verified;
            changed
        })
        .await
    }

    /// One transaction: the follows removed, their events, the block and
    /// its event commit together or not at all.
    async fn block(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
        self.change_pair(
            (blocker, blocked),
            ("blocker_id", "blocked_id"),
            move |txn, ids| write_block(txn, ids, blocker, blocked),
        )
        .await
    }

    async fn unblock(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
        self.change_pair(
            (blocker, blocked),
            ("blocker_id", "blocked_id"),
            move |txn, ids| write_unblock(txn, ids, blocker, blocked),
        )
        .await
    }

    async fn mute(
        &self,
        muter: u64,
        muted: u64,
        expires_at_ms: Option<i64>,
        hide_notifications: bool,
        now_ms: i64,
    ) -> Result<MuteChange, GraphError> {
        distinct_pair(muter, muted, "muter_id", "muted_id")?;
        check_mute_expiry(expires_at_ms, now_ms)?;
        self.change(move |txn, ids| {
            let change = write_mute(
                txn,
                ids,
                (muter, muted),
                (expires_at_ms, hide_notifications),
                now_ms,
            )?;
            Ok((change, change.changed))
        })
        .await
    }

    async fn unmute(&self, muter: u64, muted: u64, now_ms: i64) -> Result<bool, GraphError> {
        self.change_pair((muter, muted), ("muter_id", "muted_id"), move |txn, ids| {
            write_unmute(txn, ids, muter, muted, now_ms)
        })
        .await
    }

    async fn list_blocked(&self, user: u64, page: PageQuery) -> Result<RelationPage, GraphError> {
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            if read.open_table(COUNTS)?.get(user)?.is_none() {
                return Err(user_not_found(user));
            }
            let (edges, next) = scan_index(
                &read.open_table(BLOCKING)?,
                user,
                page,
                SCAN_BUDGET,
                |position| {
                    Ok(Some(RelationEdge {
                        user_id: position.user_id,
                        since_ms: ms_of(position.follow_seq),
                        expires_at_ms: None,
                        hide_notifications: false,
                        position,
                    }))
                },
            )?;
            Ok(RelationPage { edges, next })
        })
    }

    async fn list_muted(
        &self,
        user: u64,
        page: PageQuery,
        now_ms: i64,
    ) -> Result<RelationPage, GraphError> {
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            if read.open_table(COUNTS)?.get(user)?.is_none() {
                return Err(user_not_found(user));
            }
            let mutes = read.open_table(MUTES)?;
            let (edges, next) = scan_index(
                &read.open_table(MUTING)?,
                user,
                page,
                SCAN_BUDGET,
                |position| {
                    let mute = read_mute(&mutes, user, position.user_id)?;
                    Ok(mute
                        .filter(|&(seq, expires, _)| {
                            seq == position.follow_seq && mute_is_active(expires, now_ms)
                        })
                        .map(|(_, expires_at_ms, hide_notifications)| RelationEdge {
                            user_id: position.user_id,
                            since_ms: ms_of(position.follow_seq),
                            expires_at_ms,
                            hide_notifications,
                            position,
                        }))
                },
            )?;
            Ok(RelationPage { edges, next })
        })
    }

    /// Three point lookups per id in one read snapshot.
    async fn relations(
        &self,
        viewer: u64,
        ids: &[u64],
        now_ms: i64,
    ) -> Result<Vec<Relation>, GraphError> {
        if viewer == 0 {
            return Ok(vec![Relation::default(); ids.len()]);
        }
        let ids = ids.to_vec();
        self.reading(move |database, _| {
            let read = database.begin_read()?;
            let (blocks, mutes) = (read.open_table(BLOCKS)?, read.open_table(MUTES)?);
            ids.into_iter()
                .map(|id| {
                    let mute = read_mute(&mutes, viewer, id)?
                        .filter(|&(_, expires, _)| mute_is_active(expires, now_ms));
                    Ok(Relation {
                        viewer_blocks: blocks.get((viewer, id))?.is_some(),
                        blocks_viewer: blocks.get((id, viewer))?.is_some(),
                        viewer_mutes: mute.is_some(),
                        mute_hides_notifications: mute.is_some_and(|(_, _, hide)| hide),
                        mute_expires_at_ms: mute.and_then(|(_, expires, _)| expires),
                    })
                })
                .collect()
        })
    }

    async fn blocks_between(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError> {
        let pairs = pairs.to_vec();
        self.reading(move |database, _| {
            let blocks = database.begin_read()?.open_table(BLOCKS)?;
            pairs
                .into_iter()
                .map(|(a, b)| blocked_either_way(&blocks, a, b))
                .collect()
        })
    }

    /// A range of the users table from one snapshot, so each user comes
    /// with the counts they had. A page is up to a thousand users, read
    /// back to back by a bulk job: big enough to run on the blocking pool,
    /// not an async worker.
    async fn scan_users(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<UserScanPage, GraphError> {
        let limit = limit.max(1);
        self.blocking(move |database, _| {
            let read = database.begin_read()?;
            let (users, counts) = (read.open_table(USERS)?, read.open_table(COUNTS)?);
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut page = UserScanPage::default();
            for row in users.range::<u64>((start, Bound::Unbounded))? {
                let (id, record) = row?;
                let id = id.value();
                if page.users.len() == limit {
                    // Another user follows the last one listed.
                    page.next = page.users.last().map(|last| last.user.id);
                    break;
                }
                page.users.push(ScannedUser {
                    user: UserRecord::decode(record.value())?.into_user(id),
                    // Every user has a counts row from creation.
                    counts: counts_of(&counts, id)?,
                });
            }
            Ok(page)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms_to_the_graph_store_contract() {
        use warble_mesh::outbox::{EventLogOutbox, Outbox};

        super::super::conformance::run_all(|| async {
            let dir = tempfile::tempdir().unwrap();
            let database = warble_mesh::embedded::open_shared(dir.path()).unwrap();
            let log = EmbeddedEventLog::open(database).unwrap();
            let ids = Arc::new(SnowflakeGenerator::new(2).unwrap());
            let store = EmbeddedGraphStore::open(log.clone(), ids).unwrap();
            // The embedded store's "outbox" is its event log, read by a group
            // the way the relay reads it when events go to Redis.
            let outbox: Arc<dyn Outbox> = Arc::new(EventLogOutbox::new(
                Arc::new(log),
                DOMAIN_EVENTS_STREAM,
                "conformance",
            ));
            (dir, store, outbox)
        })
        .await;
    }

    /// The embedded store with only the single-item methods: the batch
    /// writes fall back to the trait's defaults, which the Neo4j store uses,
    /// so the conformance suite checks them without a Neo4j server.
    struct SingleItemWrites(EmbeddedGraphStore);

    #[async_trait]
    impl GraphStore for SingleItemWrites {
        async fn create_user(&self, user: NewUser) -> Result<User, GraphError> {
            self.0.create_user(user).await
        }
        async fn register_user(
            &self,
            identity: Identity,
            user: NewUser,
        ) -> Result<Registration, GraphError> {
            self.0.register_user(identity, user).await
        }
        async fn resolve_identity(&self, identity: &Identity) -> Result<Option<u64>, GraphError> {
            self.0.resolve_identity(identity).await
        }
        async fn get_users(&self, ids: &[u64]) -> Result<Vec<Option<User>>, GraphError> {
            self.0.get_users(ids).await
        }
        async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, GraphError> {
            self.0.get_user_by_username(username).await
        }
        async fn follow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError> {
            self.0.follow(follower, followee).await
        }
        async fn unfollow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError> {
            self.0.unfollow(follower, followee).await
        }
        async fn list_followers(
            &self,
            user: u64,
            page: PageQuery,
        ) -> Result<FollowPage, GraphError> {
            self.0.list_followers(user, page).await
        }
        async fn list_following(
            &self,
            user: u64,
            page: PageQuery,
            min_followers: u64,
        ) -> Result<FollowPage, GraphError> {
            self.0.list_following(user, page, min_followers).await
        }
        async fn follow_counts(
            &self,
            ids: &[u64],
        ) -> Result<Vec<Option<FollowCounts>>, GraphError> {
            self.0.follow_counts(ids).await
        }
        async fn is_following(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError> {
            self.0.is_following(pairs).await
        }
        async fn get_users_by_usernames(
            &self,
            usernames: &[String],
        ) -> Result<Vec<Option<User>>, GraphError> {
            self.0.get_users_by_usernames(usernames).await
        }
        async fn update_profile(
            &self,
            user: u64,
            update: ProfileUpdate,
        ) -> Result<ProfileChange, GraphError> {
            self.0.update_profile(user, update).await
        }
        async fn set_verified(
            &self,
            user: u64,
            verified: bool,
        ) -> Result<ProfileChange, GraphError> {
            self.0.set_verified(user, verified).await
        }
        async fn block(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
            self.0.block(blocker, blocked).await
        }
        async fn unblock(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
            self.0.unblock(blocker, blocked).await
        }
        async fn mute(
            &self,
            muter: u64,
            muted: u64,
            expires_at_ms: Option<i64>,
            hide_notifications: bool,
            now_ms: i64,
        ) -> Result<MuteChange, GraphError> {
            self.0
                .mute(muter, muted, expires_at_ms, hide_notifications, now_ms)
                .await
        }
        async fn unmute(&self, muter: u64, muted: u64, now_ms: i64) -> Result<bool, GraphError> {
            self.0.unmute(muter, muted, now_ms).await
        }
        async fn list_blocked(
            &self,
            user: u64,
            page: PageQuery,
        ) -> Result<RelationPage, GraphError> {
            self.0.list_blocked(user, page).await
        }
        async fn list_muted(
            &self,
            user: u64,
            page: PageQuery,
            now_ms: i64,
        ) -> Result<RelationPage, GraphError> {
            self.0.list_muted(user, page, now_ms).await
        }
        async fn relations(
            &self,
            viewer: u64,
            ids: &[u64],
            now_ms: i64,
        ) -> Result<Vec<Relation>, GraphError> {
            self.0.relations(viewer, ids, now_ms).await
        }
        async fn blocks_between(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError> {
            self.0.blocks_between(pairs).await
        }
        async fn scan_users(
            &self,
            after: Option<u64>,
            limit: usize,
        ) -> Result<UserScanPage, GraphError> {
            self.0.scan_users(after, limit).await
        }
    }

    #[tokio::test]
    async fn the_default_batch_writes_conform_to_the_contract() {
        use warble_mesh::outbox::{EventLogOutbox, Outbox};

        super::super::conformance::run_all(|| async {
            let dir = tempfile::tempdir().unwrap();
            let database = warble_mesh::embedded::open_shared(dir.path()).unwrap();
            let log = EmbeddedEventLog::open(database).unwrap();
            let ids = Arc::new(SnowflakeGenerator::new(2).unwrap());
            let store = SingleItemWrites(EmbeddedGraphStore::open(log.clone(), ids).unwrap());
            let outbox: Arc<dyn Outbox> = Arc::new(EventLogOutbox::new(
                Arc::new(log),
                DOMAIN_EVENTS_STREAM,
                "conformance",
            ));
            (dir, store, outbox)
        })
        .await;
    }

    /// A user record as stored before avatars existed (tags 1 to 7).
    #[derive(Clone, PartialEq, prost::Message)]
    struct UserRecordBeforeAvatars {
        #[prost(string, tag = "1")]
        username: String,
        #[prost(string, tag = "2")]
        display_name: String,
        #[prost(string, tag = "3")]
        bio: String,
        #[prost(int64, tag = "4")]
        created_at_ms: i64,
        #[prost(string, tag = "5")]
        location: String,
        #[prost(string, tag = "6")]
        website: String,
        #[prost(bool, tag = "7")]
        verified: bool,
    }

    #[test]
    fn records_stored_before_avatars_read_with_none_and_new_ones_round_trip() {
        let old = UserRecordBeforeAvatars {
            username: "ada".into(),
            display_name: "Ada".into(),
            bio: "counts things".into(),
            created_at_ms: 1_700_000_000_000,
            location: "London".into(),
            website: "https://ada.example".into(),
            verified: true,
        };
        let user = UserRecord::decode(old.encode_to_vec().as_slice())
            .unwrap()
            .into_user(7);
        assert_eq!(
            user,
            User {
                id: 7,
                username: "ada".into(),
                display_name: "Ada".into(),
                bio: "counts things".into(),
                created_at_ms: 1_700_000_000_000,
                location: "London".into(),
                website: "https://ada.example".into(),
                verified: true,
                avatar_media_id: 0,
            }
        );
        for avatar_media_id in [1, 1 << 62, u64::MAX] {
            let with_avatar = User {
                avatar_media_id,
                ..user.clone()
            };
            let stored = UserRecord::of(&with_avatar).encode_to_vec();
            assert_eq!(
                UserRecord::decode(stored.as_slice()).unwrap().into_user(7),
                with_avatar
            );
        }
    }

    /// An index where user 1 has entries with seqs 1..=count (the other user
    /// is the seq too), next to entries of users 0 and 2 that must not leak in.
    fn index(count: u64) -> Database {
        let database = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = database.begin_write().unwrap();
        {
            let mut table = txn.open_table(FOLLOWERS).unwrap();
            for seq in 1..=count {
                table.insert((1, seq, seq), ()).unwrap();
            }
            table.insert((0, u64::MAX, u64::MAX), ()).unwrap();
            table.insert((2, 0, 0), ()).unwrap();
        }
        txn.commit().unwrap();
        database
    }

    /// Pages through owner 1 and returns every page's user ids.
    fn pages(
        database: &Database,
        limit: usize,
        budget: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Vec<Vec<u64>> {
        let table = database
            .begin_read()
            .unwrap()
            .open_table(FOLLOWERS)
            .unwrap();
        let mut after = None;
        let mut pages = Vec::new();
        loop {
            let page = scan_page(&table, 1, PageQuery { after, limit }, budget, |user| {
                Ok(keep(user))
            })
            .unwrap();
            assert!(page.edges.len() <= limit);
            pages.push(page.edges.iter().map(|edge| edge.user_id).collect());
            match page.next {
                Some(next) => after = Some(next),
                None => return pages,
            }
            assert!(pages.len() <= 100, "paging does not terminate");
        }
    }

    #[test]
    fn unfiltered_pages_are_full_and_the_last_one_says_so() {
        let database = index(5);
        assert_eq!(
            pages(&database, 2, SCAN_BUDGET, |_| true),
            vec![vec![5, 4], vec![3, 2], vec![1]]
        );
        assert_eq!(
            pages(&database, 5, SCAN_BUDGET, |_| true),
            vec![vec![5, 4, 3, 2, 1]]
        );
        assert_eq!(
            pages(&index(0), 5, SCAN_BUDGET, |_| true),
            vec![Vec::<u64>::new()]
        );
    }

    #[test]
    fn filtered_pages_return_every_match_once_whatever_the_budget() {
        let database = index(30);
        let keep = |user: u64| user.is_multiple_of(7) || user == 1;
        let expected: Vec<u64> = (1..=30).rev().filter(|&u| keep(u)).collect();
        for limit in 1..=6 {
            for budget in 1..=12 {
                let pages = pages(&database, limit, budget, keep);
                assert_eq!(pages.concat(), expected, "limit {limit}, budget {budget}");
            }
            // With budget to spare, only the last page comes back short.
            let pages = pages(&database, limit, SCAN_BUDGET, keep);
            let (last, full) = pages.split_last().unwrap();
            assert!(full.iter().all(|page| page.len() == limit), "{pages:?}");
            assert!(!last.is_empty() && last.len() <= limit, "{pages:?}");
        }
    }

    #[test]
    fn a_filter_matching_nothing_ends_after_bounded_empty_pages() {
        let database = index(10);
        let pages = pages(&database, 2, 4, |_| false);
        assert!(pages.iter().all(Vec::is_empty));
        assert_eq!(pages.len(), 3, "10 entries in scans of 4");
    }
}
