//! Where tweets and engagement live: one small trait, implemented by the
//! embedded store ([`EmbeddedTweetStore`]) and by ScyllaDB ([`ScyllaTweetStore`]).
//!
//! The trait speaks plain domain types. Every write that changes what other
//! services see (a new tweet, a deletion) publishes its event atomically with
//! the write; how is up to the implementation (the embedded store appends to
//! the event log in its own transaction, ScyllaDB writes a transactional
//! outbox in the same logged batch). `conformance` (behind the `conformance` feature) holds the contract as
//! executable checks every implementation must pass.
//!
//! Engagement publishes too: a like, unlike, retweet or undo that changes
//! something publishes `Liked`, `Unliked`, `Retweeted` or `RetweetUndone`
//! with the write; a call that changes nothing publishes nothing.
//!
//! The batch write (`create_tweets`) has a default implementation that
//! checks what it can up front and then loops over `create_tweet`, so it
//! is not atomic; a store that can commit a batch in one transaction (the
//! embedded one) overrides it.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod scylla;

use std::collections::HashSet;

use async_trait::async_trait;
use warble_mesh::snowflake;
use warble_proto::events::v1::{Event, Liked, RetweetUndone, Retweeted, Unliked, event};
use warble_proto::limits::tweet::MAX_WRITE_BATCH;

pub use embedded::EmbeddedTweetStore;
pub use scylla::ScyllaTweetStore;

use crate::error::TweetError;

/// A tweet as stored (live; deleted tweets are never handed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tweet {
    /// Snowflake id; encodes the creation time.
    pub id: u64,
    /// Who wrote it.
    pub author_id: u64,
    /// NFC-normalised text.
    pub text: String,
    /// The tweet this one replies to.
    pub reply_to_tweet_id: Option<u64>,
    /// The tweet this one quotes.
    pub quote_of_tweet_id: Option<u64>,
    /// Lower-cased hashtags, in order of first appearance.
    pub hashtags: Vec<String>,
    /// Lower-cased mentioned usernames, in order of first appearance.
    pub mentions: Vec<String>,
    /// Attached media, in the author's order.
    pub media_ids: Vec<u64>,
}

impl Tweet {
    /// Creation time in Unix milliseconds, read from the id.
    pub fn created_at_ms(&self) -> u64 {
        snowflake::decode(self.id).unix_ms
    }

    /// A stable fingerprint of what the author asked for (text, reply, quote,
    /// media), compared when an idempotency key is reused. Hashtags and
    /// mentions derive from the text and ids are the server's, so neither
    /// takes part. Stored, so it must never change between releases: that
    /// rules out `std`'s hasher, whose algorithm is unspecified.
    pub fn content_fingerprint(&self) -> u128 {
        let mut hash = Fnv1a128::default();
        hash.write(&(self.text.len() as u64).to_be_bytes());
        hash.write(self.text.as_bytes());
        for target in [self.reply_to_tweet_id, self.quote_of_tweet_id] {
            match target {
                Some(id) => {
                    hash.write(&[1]);
                    hash.write(&id.to_be_bytes());
                }
                None => hash.write(&[0]),
            }
        }
        hash.write(&(self.media_ids.len() as u64).to_be_bytes());
        for media_id in &self.media_ids {
            hash.write(&media_id.to_be_bytes());
        }
        hash.0
    }
}

/// 128-bit FNV-1a: tiny, specified, and wide enough that two different
/// requests of one author practically never share a fingerprint.
struct Fnv1a128(u128);

impl Default for Fnv1a128 {
    fn default() -> Self {
        Self(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
}

impl Fnv1a128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u128::from(*byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

/// A tweet to create, with the ids the service issued for it.
#[derive(Debug, Clone)]
pub struct NewTweet {
    /// The tweet, its id already issued.
    pub tweet: Tweet,
    /// Scoped to the author; `None` disables idempotency.
    pub idempotency_key: Option<String>,
    /// Id of the `TweetCreated` event; unused when the request is a replay.
    pub event_id: u64,
}

/// What creating a tweet did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// A new tweet was stored and its event published.
    Created(Tweet),
    /// The idempotency key matched an earlier request: this is that tweet.
    Replayed(Tweet),
}

/// The answer for one requested tweet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TweetLookup {
    /// The tweet is live.
    Found(Tweet),
    /// No tweet ever had this id.
    NotFound,
    /// The tweet was deleted; its content is withheld.
    Deleted,
}

/// A user's engagement with a tweet that is counted per tweet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    /// A like.
    Like,
    /// A retweet.
    Retweet,
}

/// A like or retweet to set or clear, with the ids the service issued for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngagementWrite {
    /// Like or retweet.
    pub kind: Engagement,
    /// Who likes or retweets.
    pub user_id: u64,
    /// The tweet; must be live.
    pub tweet_id: u64,
    /// Set (true) or clear (false).
    pub engaged: bool,
    /// Id of the event published when the call changes something.
    pub event_id: u64,
    /// The Snowflake id a new retweet takes: its time and its position in
    /// timelines. Unused for likes, undos, and a user who already retweeted.
    pub retweet_id: u64,
}

/// Result of setting or clearing an engagement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngagementChange {
    /// False when the user's engagement was already in the requested state.
    pub changed: bool,
    /// The tweet's count of this engagement afterwards.
    pub count: u64,
    /// For a retweet, its id: the new one, the existing one when the user
    /// had already retweeted, or the removed one when an undo changed
    /// something. `None` for likes and when there is no retweet.
    pub retweet_id: Option<u64>,
}

/// Engagement counts of one live tweet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TweetCounts {
    /// Users who like it.
    pub likes: u64,
    /// Users who retweeted it.
    pub retweets: u64,
    /// Live replies to it.
    pub replies: u64,
    /// Live quotes of it.
    pub quotes: u64,
}

/// What one viewer has done to one tweet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewerState {
    /// The viewer likes the tweet.
    pub liked: bool,
    /// The viewer retweeted the tweet.
    pub retweeted: bool,
    /// The viewer bookmarked the tweet.
    pub bookmarked: bool,
}

/// One entry of an author's list: a tweet of theirs, or their retweet of a
/// live tweet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorEntry {
    /// The tweet listed (for a retweet, someone else's tweet, or their own).
    pub tweet: Tweet,
    /// The author's retweet that put `tweet` in the list; `None` for the
    /// author's own tweet.
    pub retweet_id: Option<u64>,
}

impl AuthorEntry {
    /// Where the entry sorts in its list: the retweet's id for a retweet,
    /// the tweet's id otherwise. Both are Snowflake ids from one id space,
    /// so two entries never share a sort id.
    pub fn sort_id(&self) -> u64 {
        self.retweet_id.unwrap_or(self.tweet.id)
    }
}

/// [`AuthorEntry`] by reference: what a timeline needs to place and hydrate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef {
    /// The tweet listed.
    pub tweet_id: u64,
    /// The tweet's author (for a retweet, not the retweeter).
    pub author_id: u64,
    /// The retweet that listed it; `None` for the author's own tweet.
    pub retweet_id: Option<u64>,
}

impl EntryRef {
    /// See [`AuthorEntry::sort_id`].
    pub fn sort_id(&self) -> u64 {
        self.retweet_id.unwrap_or(self.tweet_id)
    }
}

/// One author's answer of [`TweetStore::list_authors_entries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorEntries {
    /// Newest first by sort id.
    pub entries: Vec<EntryRef>,
    /// More entries exist below the last one.
    pub has_more: bool,
}

/// One bookmark of a live tweet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bookmark {
    /// The bookmarked tweet.
    pub tweet_id: u64,
    /// Its author.
    pub author_id: u64,
    /// The bookmark's Snowflake id: when it was made, and its position.
    pub bookmark_id: u64,
}

/// A page of one user's bookmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookmarkPage {
    /// Bookmarks of live tweets, most recent bookmark first. May hold fewer
    /// than asked for while more follow: bookmarks of deleted tweets are
    /// skipped, and one call reads at most [`MAX_SKIPPED_BOOKMARKS`] of them.
    pub bookmarks: Vec<Bookmark>,
    /// Where the next page starts (a bookmark id to list below), `None`
    /// when the list ends here.
    pub next_before: Option<u64>,
}

/// Bookmarks of deleted tweets one [`TweetStore::list_bookmarks`] call
/// reads past at most, so a list full of deleted tweets costs a bounded
/// read per page (the page comes back short, with a next cursor).
pub const MAX_SKIPPED_BOOKMARKS: usize = 100;

/// Where a scan of every tweet ([`TweetStore::scan_tweets`]) stands: just
/// after the tweet it read last. A scan runs in ascending order of
/// `(token, tweet_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScanPosition {
    /// The partition token of that tweet's row, in a store that scans in
    /// token order (ScyllaDB); always 0 in one that scans in id order (the
    /// embedded store).
    pub token: i64,
    /// That tweet's id.
    pub tweet_id: u64,
}

/// A live tweet as a scan lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedTweet {
    /// The tweet.
    pub tweet: Tweet,
    /// Its counts, read with it.
    pub counts: TweetCounts,
}

/// One page of [`TweetStore::scan_tweets`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TweetScanPage {
    /// Live tweets in scan order. May hold fewer than asked for, even none,
    /// while more follow: deleted tweets are skipped, and one call reads past
    /// at most [`MAX_SKIPPED_SCAN_TWEETS`] of them.
    pub tweets: Vec<ScannedTweet>,
    /// Where the next page starts: after the last tweet read (live or
    /// not). `None` when the scan is complete.
    pub next: Option<ScanPosition>,
}

/// Deleted tweets one [`TweetStore::scan_tweets`] call reads past at most,
/// so a long stretch of them costs a bounded read per page (the page comes
/// back short, with a next position).
pub const MAX_SKIPPED_SCAN_TWEETS: usize = 1_000;

/// The reply chain above a tweet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ancestors {
    /// Live ancestors, root first, ending with the nearest.
    pub tweets: Vec<Tweet>,
    /// The chain goes on above the first tweet returned: the limit cut it.
    pub truncated: bool,
}

/// One tweet as a timeline page shows it: the lookup, and for a live tweet
/// what else was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HydratedTweet {
    /// Found, not found or deleted.
    pub lookup: TweetLookup,
    /// The tweet's counts, when asked for and the tweet is live.
    pub counts: Option<TweetCounts>,
    /// The viewer's likes and retweets, when a viewer was given and the
    /// tweet is live.
    pub viewer_state: Option<ViewerState>,
}

impl HydratedTweet {
    /// A tweet that is not live: nothing beyond the lookup.
    pub(crate) fn absent(lookup: TweetLookup) -> Self {
        Self {
            lookup,
            counts: None,
            viewer_state: None,
        }
    }
}

/// Storage for tweets, engagement and idempotency keys.
///
/// Batch methods answer one entry per requested id, in request order.
/// Deleted tweets are soft-deleted: reads report them as deleted (or not
/// found) and never return their content.
#[async_trait]
pub trait TweetStore: Send + Sync + 'static {
    /// Stores `new` and publishes `TweetCreated`, atomically. With an
    /// idempotency key already used by the author within the key's lifetime,
    /// returns the original tweet instead (or fails with
    /// [`TweetError::IdempotencyKeyReused`] if the content differs, or
    /// [`TweetError::IdempotentTweetDeleted`]). A reply or quote target must
    /// be live ([`TweetError::TargetNotFound`]); its reply or quote count
    /// goes up.
    async fn create_tweet(&self, new: NewTweet) -> Result<CreateOutcome, TweetError>;

    /// Creates `batch` in order, as [`TweetStore::create_tweet`] would
    /// create each entry right after the entries before it, and returns one
    /// outcome per entry, in the same order. Each created tweet publishes
    /// its own `TweetCreated`; a replay publishes nothing. So an entry may
    /// reply to or quote an earlier entry's tweet, and an entry repeating an
    /// earlier entry's idempotency key (same author) replays that entry's
    /// tweet, or fails if its content differs. Fails naming the first
    /// failing entry ([`TweetError::in_batch`] with list `tweets`), and with
    /// `Invalid` on `tweets` for more than [`MAX_WRITE_BATCH`] entries.
    ///
    /// This default is NOT one transaction. It first checks the reply and
    /// quote targets of the entries without an idempotency key (those
    /// cannot turn out to be replays): each must be live or an earlier
    /// entry's id, so a batch failing that check creates nothing. Then it
    /// calls `create_tweet` per entry: any other failure (a reused key, a
    /// keyed entry's missing target, a target deleted meanwhile, a backend
    /// error) leaves the entries before it created. Retrying the whole
    /// batch is safe when every entry has an idempotency key: the created
    /// ones replay. Stores that can write a batch atomically override it.
    async fn create_tweets(&self, batch: Vec<NewTweet>) -> Result<Vec<CreateOutcome>, TweetError> {
        check_write_batch(batch.len())?;
        check_unkeyed_targets(self, &batch).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, new) in batch.into_iter().enumerate() {
            let outcome = self
                .create_tweet(new)
                .await
                .map_err(|error| error.in_batch("tweets", index))?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Looks up tweets by id.
    async fn get_tweets(&self, tweet_ids: Vec<u64>) -> Result<Vec<TweetLookup>, TweetError>;

    /// Soft-deletes a tweet on behalf of `requester_id`, which must be its
    /// author, publishing `TweetDeleted` (with id `event_id`) atomically and
    /// lowering its targets' reply/quote counts. Returns false when it was
    /// already deleted.
    async fn delete_tweet(
        &self,
        tweet_id: u64,
        requester_id: u64,
        event_id: u64,
    ) -> Result<bool, TweetError>;

    /// Up to `limit` entries of the author's list with sort ids below
    /// `before` (all when `None`), newest first by sort id: their live
    /// tweets and, with `include_retweets`, their retweets of tweets that
    /// are live (a retweet of a tweet deleted later is never listed).
    async fn list_user_entries(
        &self,
        author_id: u64,
        before: Option<u64>,
        limit: usize,
        include_retweets: bool,
    ) -> Result<Vec<AuthorEntry>, TweetError>;

    /// Up to `limit` of the author's live tweets with ids below `before`
    /// (all when `None`), newest first.
    async fn list_user_tweets(
        &self,
        author_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError> {
        let entries = self
            .list_user_entries(author_id, before, limit, false)
            .await?;
        Ok(entries.into_iter().map(|entry| entry.tweet).collect())
    }

    /// For each author, in request order, up to `limit` entries of their
    /// list with sort ids below `before` (all when `None`), newest first, as
    /// [`TweetStore::list_user_entries`] lists them, and whether more exist
    /// below those.
    async fn list_authors_entries(
        &self,
        author_ids: Vec<u64>,
        before: Option<u64>,
        limit: usize,
        include_retweets: bool,
    ) -> Result<Vec<AuthorEntries>, TweetError>;

    /// For each author, up to `limit` of their live tweet ids below `before`
    /// (all when `None`), newest first, and whether more exist below those.
    async fn list_authors_tweet_ids(
        &self,
        author_ids: Vec<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(Vec<u64>, bool)>, TweetError> {
        let answers = self
            .list_authors_entries(author_ids, before, limit, false)
            .await?;
        Ok(answers
            .into_iter()
            .map(|answer| {
                let ids = answer.entries.iter().map(|entry| entry.tweet_id).collect();
                (ids, answer.has_more)
            })
            .collect())
    }

    /// Sets or clears a user's like or retweet of a live tweet; idempotent
    /// per user. A call that changes something publishes `Liked`,
    /// `Unliked`, `Retweeted` or `RetweetUndone` (id `write.event_id`,
    /// keyed by the user, with the tweet's author and the count after)
    /// atomically with the change; a new retweet takes `write.retweet_id`
    /// and keeps it until undone.
    async fn set_engagement(&self, write: EngagementWrite) -> Result<EngagementChange, TweetError>;

    /// Counts per tweet; `None` for a tweet that does not exist or was deleted.
    async fn get_counts(&self, tweet_ids: Vec<u64>)
    -> Result<Vec<Option<TweetCounts>>, TweetError>;

    /// The viewer's likes, retweets and bookmarks per tweet; all false for
    /// tweets that do not exist or were deleted.
    async fn get_viewer_state(
        &self,
        viewer_id: u64,
        tweet_ids: Vec<u64>,
    ) -> Result<Vec<ViewerState>, TweetError>;

    /// [`TweetStore::get_tweets`] with, per live tweet, its counts (when
    /// `with_counts`) and `viewer`'s state (when given): what hydrating a
    /// timeline page needs, in one call instead of three. The default makes
    /// the three reads concurrently, so a tweet deleted between them can come
    /// back found without counts; a store with snapshots answers from one.
    async fn hydrate_tweets(
        &self,
        tweet_ids: Vec<u64>,
        with_counts: bool,
        viewer: Option<u64>,
    ) -> Result<Vec<HydratedTweet>, TweetError> {
        let counts = async {
            if with_counts {
                self.get_counts(tweet_ids.clone()).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let states = async {
            match viewer {
                Some(viewer) => self
                    .get_viewer_state(viewer, tweet_ids.clone())
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (lookups, counts, states) =
            tokio::join!(self.get_tweets(tweet_ids.clone()), counts, states);
        let (lookups, counts, states) = (lookups?, counts?, states?);
        Ok(lookups
            .into_iter()
            .enumerate()
            .map(|(index, lookup)| {
                let live = matches!(lookup, TweetLookup::Found(_));
                HydratedTweet {
                    counts: counts
                        .as_ref()
                        .and_then(|counts| counts[index])
                        .filter(|_| live),
                    viewer_state: states.as_ref().map(|states| states[index]).filter(|_| live),
                    lookup,
                }
            })
            .collect())
    }

    /// Bookmarks a live tweet for `user_id` ([`TweetError::TweetNotFound`]
    /// when it is missing or deleted) under `bookmark_id`, a Snowflake id
    /// that orders the user's bookmarks. Returns false, keeping the first
    /// bookmark's id, when the tweet was already bookmarked.
    async fn bookmark(
        &self,
        user_id: u64,
        tweet_id: u64,
        bookmark_id: u64,
    ) -> Result<bool, TweetError>;

    /// Removes a bookmark, of a live or a deleted tweet. Returns false when
    /// there was none.
    async fn unbookmark(&self, user_id: u64, tweet_id: u64) -> Result<bool, TweetError>;

    /// Up to `limit` of the user's bookmarks of live tweets with bookmark
    /// ids below `before` (all when `None`), most recent first; see
    /// [`BookmarkPage`] for short pages.
    async fn list_bookmarks(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<BookmarkPage, TweetError>;

    /// Up to `limit` live direct replies to `tweet_id` with ids above
    /// `after` (all when `None`), oldest first. The tweet itself may be
    /// deleted; [`TweetError::TweetNotFound`] when it never existed.
    async fn list_replies(
        &self,
        tweet_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError>;

    /// The live tweets `tweet_id` replies to, directly or up the chain, at
    /// most `limit` of them (the nearest kept), root first. The walk goes
    /// through deleted tweets. [`TweetError::TweetNotFound`] when the tweet
    /// never existed (a deleted tweet's ancestors are answered).
    async fn get_ancestors(&self, tweet_id: u64, limit: usize) -> Result<Ancestors, TweetError>;

    /// Live tweets per author (replies and quotes included, retweets not),
    /// in request order; 0 for unknown authors.
    async fn get_author_counts(&self, author_ids: Vec<u64>) -> Result<Vec<u64>, TweetError>;

    /// Up to `limit` (at least one is always asked for) live tweets after
    /// `after` (from the start when `None`), in the store's scan order, each
    /// with its counts: a scan of every tweet, for rebuilding a search
    /// index. Following `next` from `None` lists each tweet that stays live
    /// throughout exactly once; a tweet created meanwhile may or may not be
    /// listed, one deleted before its page is read is not. Only authored
    /// tweets (replies and quotes included), never retweets. See
    /// [`TweetScanPage`] for short pages.
    async fn scan_tweets(
        &self,
        after: Option<ScanPosition>,
        limit: usize,
    ) -> Result<TweetScanPage, TweetError>;

    /// The largest Snowflake id the store has persisted (tweet or event id),
    /// so a restarted id generator can resume above it and never repeat one
    /// even if the clock went back while the process was down.
    async fn max_issued_id(&self) -> Result<Option<u64>, TweetError>;
}

/// The event of an engagement write that changed something: `Liked`,
/// `Unliked`, `Retweeted` or `RetweetUndone`, with the tweet's author and
/// the count after. Keyed (by the caller) by the user, so one user's likes,
/// unlikes, retweets and undos reach consumers in the order they happened.
pub(crate) fn engagement_event(
    write: &EngagementWrite,
    tweet_author_id: u64,
    change: &EngagementChange,
) -> Event {
    let at_ms = |id: u64| i64::try_from(snowflake::decode(id).unix_ms).unwrap_or(i64::MAX);
    let occurred_at_ms = at_ms(write.event_id);
    let retweet_id = change.retweet_id.unwrap_or_default();
    let (user_id, tweet_id) = (write.user_id, write.tweet_id);
    let payload = match (write.kind, write.engaged) {
        (Engagement::Like, true) => event::Payload::Liked(Liked {
            user_id,
            tweet_id,
            tweet_author_id,
            liked_at_ms: occurred_at_ms,
            like_count: change.count,
        }),
        (Engagement::Like, false) => event::Payload::Unliked(Unliked {
            user_id,
            tweet_id,
            tweet_author_id,
            unliked_at_ms: occurred_at_ms,
            like_count: change.count,
        }),
        (Engagement::Retweet, true) => event::Payload::Retweeted(Retweeted {
            user_id,
            tweet_id,
            tweet_author_id,
            retweet_id,
            retweeted_at_ms: at_ms(retweet_id),
            retweet_count: change.count,
        }),
        (Engagement::Retweet, false) => event::Payload::RetweetUndone(RetweetUndone {
            user_id,
            tweet_id,
            tweet_author_id,
            retweet_id,
            undone_at_ms: occurred_at_ms,
            retweet_count: change.count,
        }),
    };
    Event {
        event_id: write.event_id,
        occurred_at_ms,
        trace_context: Default::default(),
        payload: Some(payload),
    }
}

/// At most [`MAX_WRITE_BATCH`] tweets; an empty batch is fine (it does
/// nothing). Every store checks it, and the service checks it first, so an
/// oversized batch costs no per-entry work.
pub(crate) fn check_write_batch(len: usize) -> Result<(), TweetError> {
    if len > MAX_WRITE_BATCH {
        return Err(TweetError::invalid(
            "tweets",
            format!("at most {MAX_WRITE_BATCH} tweets per call, got {len}"),
        ));
    }
    Ok(())
}

/// The up-front check of [`TweetStore::create_tweets`]'s default: every
/// reply or quote target of an entry without an idempotency key is live or
/// the id of an earlier entry. It refuses no batch the entries created one
/// by one would accept: an unkeyed entry is never a replay, so its targets
/// are checked when its turn comes; whether an earlier entry's id exists by
/// then (that entry may replay instead) is left to that turn.
async fn check_unkeyed_targets<S>(store: &S, batch: &[NewTweet]) -> Result<(), TweetError>
where
    S: TweetStore + ?Sized,
{
    let targets = |new: &NewTweet| {
        [
            ("reply_to_tweet_id", new.tweet.reply_to_tweet_id),
            ("quote_of_tweet_id", new.tweet.quote_of_tweet_id),
        ]
    };
    let checked: Vec<u64> = batch
        .iter()
        .filter(|new| new.idempotency_key.is_none())
        .flat_map(|new| targets(new).into_iter().filter_map(|(_, target)| target))
        .collect();
    if checked.is_empty() {
        return Ok(());
    }
    let lookups = store.get_tweets(checked.clone()).await?;
    let live: HashSet<u64> = checked
        .into_iter()
        .zip(lookups)
        .filter(|(_, lookup)| matches!(lookup, TweetLookup::Found(_)))
        .map(|(id, _)| id)
        .collect();
    let mut earlier = HashSet::with_capacity(batch.len());
    for (index, new) in batch.iter().enumerate() {
        if new.idempotency_key.is_none() {
            for (field, target) in targets(new) {
                if let Some(tweet_id) = target
                    && !live.contains(&tweet_id)
                    && !earlier.contains(&tweet_id)
                {
                    return Err(
                        TweetError::TargetNotFound { field, tweet_id }.in_batch("tweets", index)
                    );
                }
            }
        }
        earlier.insert(new.tweet.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tweet() -> Tweet {
        Tweet {
            id: 1,
            author_id: 2,
            text: "hello".into(),
            reply_to_tweet_id: None,
            quote_of_tweet_id: None,
            hashtags: vec![],
            mentions: vec![],
            media_ids: vec![],
        }
    }

    #[test]
    fn fingerprint_covers_the_requested_content_only() {
        let base = tweet();
        let same_content = Tweet {
            id: 99,
            hashtags: vec!["x".into()],
            ..tweet()
        };
        assert_eq!(
            base.content_fingerprint(),
            same_content.content_fingerprint()
        );
        let variants = [
            Tweet {
                text: "hellO".into(),
                ..tweet()
            },
            Tweet {
                reply_to_tweet_id: Some(5),
                ..tweet()
            },
            Tweet {
                quote_of_tweet_id: Some(5),
                ..tweet()
            },
            Tweet {
                media_ids: vec![5],
                ..tweet()
            },
        ];
        for variant in variants {
            assert_ne!(base.content_fingerprint(), variant.content_fingerprint());
        }
    }

    #[test]
    fn fingerprint_is_stable_across_releases() {
        // Stored fingerprints must keep matching: pin the value.
        assert_eq!(tweet().content_fingerprint(), PINNED_FINGERPRINT);
    }

    /// FNV-1a 128 of the canonical encoding of `tweet()`, computed independently.
    const PINNED_FINGERPRINT: u128 = 0x69f6_b33d_6373_430c_1e6c_bc4d_e084_829e;
}
