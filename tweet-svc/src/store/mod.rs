//! Where tweets and engagement live: one small trait, implemented by the
//! embedded store ([`EmbeddedTweetStore`]) and by ScyllaDB ([`ScyllaTweetStore`]).
//!
//! The trait speaks plain domain types. Every write that changes what other
//! services see (a new tweet, a deletion) publishes its event atomically with
//! the write; how is up to the implementation (the embedded store appends to
//! the event log in its own transaction, ScyllaDB writes a transactional
//! outbox in the same logged batch). [`conformance`] holds the contract as
//! executable checks every implementation must pass.

pub mod conformance;
mod embedded;
mod scylla;

use async_trait::async_trait;
use warble_mesh::snowflake;

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

/// Result of setting or clearing an engagement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngagementChange {
    /// False when the user's engagement was already in the requested state.
    pub changed: bool,
    /// The tweet's count of this engagement afterwards.
    pub count: u64,
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

    /// Up to `limit` of the author's live tweets with ids below `before`
    /// (all when `None`), newest first.
    async fn list_user_tweets(
        &self,
        author_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError>;

    /// For each author, up to `limit` of their live tweet ids below `before`
    /// (all when `None`), newest first, and whether more exist below those.
    async fn list_authors_tweet_ids(
        &self,
        author_ids: Vec<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(Vec<u64>, bool)>, TweetError>;

    /// Sets (`engaged`) or clears a user's like or retweet of a live tweet;
    /// idempotent per user.
    async fn set_engagement(
        &self,
        kind: Engagement,
        user_id: u64,
        tweet_id: u64,
        engaged: bool,
    ) -> Result<EngagementChange, TweetError>;

    /// Counts per tweet; `None` for a tweet that does not exist or was deleted.
    async fn get_counts(&self, tweet_ids: Vec<u64>)
    -> Result<Vec<Option<TweetCounts>>, TweetError>;

    /// The viewer's likes and retweets per tweet; all false for tweets that
    /// do not exist or were deleted.
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

    /// The largest Snowflake id the store has persisted (tweet or event id),
    /// so a restarted id generator can resume above it and never repeat one
    /// even if the clock went back while the process was down.
    async fn max_issued_id(&self) -> Result<Option<u64>, TweetError>;
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
