//! The effects of each domain event on the timeline cache (hybrid fan-out).
//!
//! Every effect is idempotent (set inserts and removals), so an event applied
//! twice, after a redelivery or a crash, changes nothing the second time.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tracing::instrument;
use warble_mesh::grpc::TracedChannel;
use warble_proto::common::v1::PageRequest;
use warble_proto::events::v1::{
    Blocked, Event, Followed, RetweetUndone, Retweeted, TweetCreated, TweetDeleted, Unfollowed,
    event::Payload,
};
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::graph::v1::{GetFollowCountsRequest, ListFollowersRequest};
use warble_proto::tweet::v1::ListUserTweetsRequest;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_timeline_cache::{Entry, Removal, TimelineCache};

use crate::active::ActiveFollowers;
use crate::config::FanoutPolicyConfig;
use crate::error::FanoutError;
use crate::stats::FanoutStats;

/// Decides who is a celebrity and who is active.
#[derive(Debug, Clone)]
pub struct FanoutPolicy {
    /// Follower count from which an author is not fanned out to.
    pub celebrity_threshold: u64,
    /// Followers idle longer than this are skipped.
    pub inactive_after: Duration,
    /// Tweets copied into a timeline on follow.
    pub follow_backfill_tweets: u32,
    /// Followers per graph-svc page.
    pub follower_page_size: u32,
}

impl From<&FanoutPolicyConfig> for FanoutPolicy {
    fn from(config: &FanoutPolicyConfig) -> Self {
        Self {
            celebrity_threshold: config.celebrity_threshold,
            inactive_after: Duration::from_secs(config.inactive_after_days * 86_400),
            follow_backfill_tweets: config.follow_backfill_tweets,
            follower_page_size: config.follower_page_size,
        }
    }
}

impl FanoutPolicy {
    /// Whether an author with `followers` followers is a celebrity.
    pub fn is_celebrity(&self, followers: u64) -> bool {
        followers >= self.celebrity_threshold
    }
}

/// Applies domain events to the timeline cache.
pub struct FanoutEngine {
    cache: Arc<dyn TimelineCache>,
    tweets: TweetServiceClient<TracedChannel>,
    graph: GraphServiceClient<TracedChannel>,
    policy: FanoutPolicy,
    stats: Arc<FanoutStats>,
    active: ActiveFollowers,
}

/// Which followers of a page get a pushed tweet.
struct Audience {
    active: Vec<u64>,
    gone_idle: Vec<u64>,
}

#[async_trait::async_trait]
impl warble_mesh::consumer::EventHandler for FanoutEngine {
    type Error = FanoutError;

    async fn apply_encoded(&self, payload: &[u8]) -> Result<(), FanoutError> {
        self.apply(payload).await
    }
}

impl FanoutEngine {
    /// An engine writing to `cache`, reading from tweet-svc and graph-svc.
    pub fn new(
        cache: Arc<dyn TimelineCache>,
        tweets: TweetServiceClient<TracedChannel>,
        graph: GraphServiceClient<TracedChannel>,
        policy: FanoutPolicy,
        stats: Arc<FanoutStats>,
    ) -> Self {
        Self {
            cache,
            tweets,
            graph,
            policy,
            stats,
            active: ActiveFollowers::default(),
        }
    }

    /// Decodes and applies one event-log entry.
    pub async fn apply(&self, payload: &[u8]) -> Result<(), FanoutError> {
        let event = Event::decode(payload)?;
        match event.payload {
            Some(Payload::TweetCreated(created)) => self.tweet_created(created).await,
            Some(Payload::TweetDeleted(deleted)) => self.tweet_deleted(deleted).await,
            Some(Payload::Followed(followed)) => self.followed(followed).await,
            Some(Payload::Unfollowed(unfollowed)) => self.unfollowed(unfollowed).await,
            Some(Payload::Retweeted(retweeted)) => self.retweeted(retweeted).await,
            Some(Payload::RetweetUndone(undone)) => self.retweet_undone(undone).await,
            Some(Payload::Blocked(blocked)) => self.blocked(blocked).await,
            // Nothing cached depends on these: mutes are filtered at read
            // time (they lapse), an unblock restores no follow, and profiles
            // and likes are not part of a timeline.
            Some(
                Payload::Liked(_)
                | Payload::Unliked(_)
                | Payload::UserCreated(_)
                | Payload::ProfileUpdated(_)
                | Payload::Unblocked(_)
                | Payload::Muted(_)
                | Payload::Unmuted(_),
            ) => Ok(()),
            None => Err(FanoutError::UnknownPayload(event.event_id)),
        }
    }

    /// Normal authors: push into every active follower's timeline (and the
    /// author's own). Celebrities: record in their recent set only;
    /// followers merge it at read time.
    #[instrument(skip_all, fields(tweet_id = created.tweet_id, author_id = created.author_id))]
    async fn tweet_created(&self, created: TweetCreated) -> Result<(), FanoutError> {
        let entry = Entry::tweet(created.tweet_id, created.author_id);
        self.fan_out(created.author_id, entry).await
    }

    /// A retweet travels like a tweet of the retweeter's, at the retweet's
    /// position, except to the tweet's author: their own tweet does not
    /// come back to them (nor to a retweeter retweeting themselves).
    #[instrument(skip_all, fields(retweet_id = retweeted.retweet_id, user_id = retweeted.user_id))]
    async fn retweeted(&self, retweeted: Retweeted) -> Result<(), FanoutError> {
        let entry = Entry::retweet(
            retweeted.retweet_id,
            retweeted.user_id,
            retweeted.tweet_id,
            retweeted.tweet_author_id,
        );
        self.fan_out(retweeted.user_id, entry).await
    }

    /// Pushes `entry` from `source` (its author, or its retweeter) to
    /// `source`'s own timeline and every active follower's, or, when
    /// `source` is a celebrity, records it in their recent set only. The
    /// tweet's author never receives a retweet of their own tweet.
    async fn fan_out(&self, source: u64, entry: Entry) -> Result<(), FanoutError> {
        let excluded = entry.is_retweet().then_some(entry.author_id);
        if excluded != Some(source) {
            self.cache.push(&[source], entry).await?;
            FanoutStats::add(&self.stats.deliveries_written, 1);
        }
        let followers = self.followers_count(source).await?;
        if self.policy.is_celebrity(followers) {
            self.cache.celebrity_add(source, entry).await?;
            return Ok(());
        }
        let mut page = self.audience_page(source, String::new()).await?;
        loop {
            let (mut audience, next) = page;
            if let Some(excluded) = excluded {
                audience.active.retain(|user| *user != excluded);
            }
            // The next page (graph-svc's followers, then their last-active
            // marks) is read while this one is written to the cache: a big
            // audience costs max(read, write) per page, not their sum.
            let delivered = self.deliver(audience, entry);
            let Some(next) = next else {
                return delivered.await;
            };
            let (delivered, fetched) = tokio::join!(delivered, self.audience_page(source, next));
            delivered?;
            warble_mesh::failpoint::reached("fanout.between_pages").await;
            page = fetched?;
        }
    }

    /// A page of `author`'s followers split into who receives pushes and who
    /// has just gone idle, and the cursor of the next page, if any.
    async fn audience_page(
        &self,
        author: u64,
        cursor: String,
    ) -> Result<(Audience, Option<String>), FanoutError> {
        let (followers, next) = self.followers_page(author, cursor).await?;
        Ok((self.audience(&followers).await?, next))
    }

    /// Pushes `entry` into the active audience's timelines and evicts those
    /// who have just gone idle.
    async fn deliver(&self, audience: Audience, entry: Entry) -> Result<(), FanoutError> {
        if !audience.active.is_empty() {
            self.cache.push(&audience.active, entry).await?;
            FanoutStats::add(&self.stats.deliveries_written, audience.active.len() as u64);
        }
        for user in audience.gone_idle {
            // Skipped from now on, so the cached copy would go stale: drop it
            // and let the first read after their return rebuild it.
            self.cache.evict(user).await?;
        }
        Ok(())
    }

    /// Removes the tweet from every timeline it can have reached: the
    /// author's, every follower's (it may have been pushed before the author
    /// became a celebrity) and the celebrity set.
    #[instrument(skip_all, fields(tweet_id = deleted.tweet_id, author_id = deleted.author_id))]
    ///
    /// Retweets of it sit in the timelines of the retweeters' followers,
    /// whom no event names; timeline-svc leaves out retweets of deleted
    /// tweets when it reads them.
    async fn tweet_deleted(&self, deleted: TweetDeleted) -> Result<(), FanoutError> {
        self.remove_everywhere(deleted.author_id, deleted.tweet_id)
            .await
    }

    /// Removes the retweet's entry wherever it was pushed: like a deleted
    /// tweet of the retweeter's.
    #[instrument(skip_all, fields(retweet_id = undone.retweet_id, user_id = undone.user_id))]
    async fn retweet_undone(&self, undone: RetweetUndone) -> Result<(), FanoutError> {
        self.remove_everywhere(undone.user_id, undone.retweet_id)
            .await
    }

    /// Removes the entry at `position` from `source`'s timeline, every
    /// follower's (it may have been pushed before `source` became a
    /// celebrity) and `source`'s celebrity set.
    async fn remove_everywhere(&self, source: u64, position: u64) -> Result<(), FanoutError> {
        self.cache.remove(&[source], position).await?;
        self.cache.celebrity_remove(source, position).await?;
        let mut cursor = String::new();
        loop {
            let (page, next) = self.followers_page(source, cursor).await?;
            self.cache.remove(&page, position).await?;
            match next {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }

    /// Clears each user's timeline of everything the other is part of:
    /// their tweets, their retweets and retweets of their tweets. (The
    /// follows between them were removed before, each with its own
    /// Unfollowed.)
    #[instrument(skip_all, fields(blocker_id = blocked.blocker_id, blocked_id = blocked.blocked_id))]
    async fn blocked(&self, blocked: Blocked) -> Result<(), FanoutError> {
        let (blocker, other) = (blocked.blocker_id, blocked.blocked_id);
        self.cache
            .remove_user(blocker, other, Removal::Involving)
            .await?;
        self.cache
            .remove_user(other, blocker, Removal::Involving)
            .await?;
        Ok(())
    }

    /// Copies a normal followee's recent tweets and retweets into the new
    /// follower's timeline (not retweets of the follower's own tweets); a
    /// celebrity's arrive through the read-time merge instead, so a
    /// celebrity joins the follower's recorded followed-celebrity set.
    #[instrument(skip_all, fields(follower_id = followed.follower_id, followee_id = followed.followee_id))]
    async fn followed(&self, followed: Followed) -> Result<(), FanoutError> {
        let followee = followed.followee_id;
        if self.policy.is_celebrity(followed.followee_followers_count) {
            self.cache
                .add_followed_celebrity(&[followed.follower_id], followee)
                .await?;
            // This follow took the followee to the threshold (a followee's
            // follows and unfollows arrive in order, so exactly one event
            // sees it): every follower's recorded set gains them.
            if followed.followee_followers_count == self.policy.celebrity_threshold {
                tracing::info!(
                    author_id = followee,
                    "author reached the celebrity threshold"
                );
                let mut cursor = String::new();
                loop {
                    let (page, next) = self.followers_page(followee, cursor).await?;
                    self.cache.add_followed_celebrity(&page, followee).await?;
                    match next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
            }
            return Ok(());
        }
        if self.policy.follow_backfill_tweets == 0 {
            return Ok(());
        }
        let listed = self
            .tweets
            .clone()
            .list_user_tweets(ListUserTweetsRequest {
                author_id: followed.followee_id,
                page: Some(PageRequest {
                    cursor: String::new(),
                    limit: self.policy.follow_backfill_tweets,
                }),
                include_retweets: true,
            })
            .await
            .map_err(FanoutError::tweet_svc)?
            .into_inner();
        let entries: Vec<Entry> = listed
            .tweets
            .iter()
            .enumerate()
            .map(
                |(index, tweet)| match listed.retweet_ids.get(index).copied() {
                    Some(retweet_id) if retweet_id != 0 => {
                        Entry::retweet(retweet_id, followed.followee_id, tweet.id, tweet.author_id)
                    }
                    _ => Entry::tweet(tweet.id, tweet.author_id),
                },
            )
            .filter(|entry| !(entry.is_retweet() && entry.author_id == followed.follower_id))
            .collect();
        if !entries.is_empty() {
            self.cache
                .insert(followed.follower_id, &entries, false)
                .await?;
            FanoutStats::add(&self.stats.deliveries_written, entries.len() as u64);
        }
        Ok(())
    }

    /// Removes the followee's tweets and retweets from the follower's
    /// timeline (others' retweets of the followee's tweets stay). When this
    /// unfollow takes the followee below the celebrity threshold, their
    /// recent tweets were never pushed: drop the followers' cached timelines
    /// so each is rebuilt, with those tweets, on its next read, and take
    /// them out of the followers' recorded followed-celebrity sets.
    #[instrument(skip_all, fields(follower_id = unfollowed.follower_id, followee_id = unfollowed.followee_id))]
    async fn unfollowed(&self, unfollowed: Unfollowed) -> Result<(), FanoutError> {
        self.cache
            .remove_user(
                unfollowed.follower_id,
                unfollowed.followee_id,
                Removal::ComingFrom,
            )
            .await?;
        self.cache
            .remove_followed_celebrity(&[unfollowed.follower_id], unfollowed.followee_id)
            .await?;
        let after = unfollowed.followee_followers_count;
        let demoted = !self.policy.is_celebrity(after) && self.policy.is_celebrity(after + 1);
        if !demoted {
            return Ok(());
        }
        tracing::info!(
            author_id = unfollowed.followee_id,
            "author fell below the celebrity threshold"
        );
        let mut cursor = String::new();
        loop {
            let (page, next) = self.followers_page(unfollowed.followee_id, cursor).await?;
            self.cache
                .remove_followed_celebrity(&page, unfollowed.followee_id)
                .await?;
            for user in page {
                self.cache.evict(user).await?;
            }
            match next {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }

    async fn followers_count(&self, user_id: u64) -> Result<u64, FanoutError> {
        let counts = self
            .graph
            .clone()
            .get_follow_counts(GetFollowCountsRequest {
                user_ids: vec![user_id],
            })
            .await
            .map_err(FanoutError::graph_svc)?
            .into_inner()
            .counts;
        Ok(counts.first().map_or(0, |counts| counts.followers_count))
    }

    /// One page of `user_id`'s followers and the cursor of the next, if any.
    async fn followers_page(
        &self,
        user_id: u64,
        cursor: String,
    ) -> Result<(Vec<u64>, Option<String>), FanoutError> {
        let response = self
            .graph
            .clone()
            .list_followers(ListFollowersRequest {
                user_id,
                page: Some(PageRequest {
                    cursor,
                    limit: self.policy.follower_page_size,
                }),
            })
            .await;
        let response = match response {
            Ok(response) => response.into_inner(),
            // The author is gone: nobody left to deliver to.
            Err(status) if status.code() == tonic::Code::NotFound => return Ok((Vec::new(), None)),
            Err(status) => return Err(FanoutError::graph_svc(status)),
        };
        let next = response
            .page
            .map(|page| page.next_cursor)
            .filter(|cursor| !cursor.is_empty());
        Ok((
            response
                .followers
                .into_iter()
                .map(|edge| edge.user_id)
                .collect(),
            next,
        ))
    }

    /// Splits a page of followers into those active recently enough to
    /// receive pushes and those who have just gone idle. Only the marks of
    /// followers not already known to be active are read (see [`crate::active`]).
    async fn audience(&self, followers: &[u64]) -> Result<Audience, FanoutError> {
        let cutoff = warble_mesh::time::now_ms()
            .saturating_sub(self.policy.inactive_after.as_millis() as u64);
        let mut marks = self.active.recall(followers, cutoff);
        let unknown: Vec<usize> = (0..followers.len())
            .filter(|&index| marks[index].is_none())
            .collect();
        if !unknown.is_empty() {
            let users: Vec<u64> = unknown.iter().map(|&index| followers[index]).collect();
            let read = self.cache.last_active(&users).await?;
            let mut now_active = Vec::new();
            for ((&index, &user), mark) in unknown.iter().zip(&users).zip(read) {
                if let Some(at) = mark
                    && at >= cutoff
                {
                    now_active.push((user, at));
                }
                marks[index] = mark;
            }
            self.active.remember(&now_active);
        }
        let mut audience = Audience {
            active: Vec::with_capacity(followers.len()),
            gone_idle: Vec::new(),
        };
        for (user, mark) in followers.iter().zip(marks) {
            match mark {
                Some(at) if at >= cutoff => audience.active.push(*user),
                Some(_) => audience.gone_idle.push(*user),
                // Never read their timeline: nothing cached to keep current;
                // their first read builds it.
                None => {}
            }
        }
        Ok(audience)
    }
}
