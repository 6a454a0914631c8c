//! From domain events to notification changes.
//!
//! Each event becomes the [`Change`]s it implies (see [`changes_for`] for
//! the rules), applied in one store call; every group created or grown is
//! then announced on [`NOTIFICATIONS_STREAM`] for live subscriptions.
//! Versions make every change idempotent, so a redelivered event, or one
//! retried after a partial failure, has no second effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use warble_mesh::consumer::ConsumerCounters;
use warble_mesh::event_log::{EventLog, NOTIFICATIONS_STREAM};
use warble_mesh::grpc::TracedChannel;
use warble_proto::events::v1::{Event, TweetCreated, event::Payload};
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::graph::v1::{
    FollowPair, GetUsersByUsernamesRequest, GetUsersRequest, IsFollowingRequest,
};
use warble_proto::notify::v1::NotificationPublished;

use crate::error::NotifyError;
use crate::store::{
    Applied, Change, Item, Kind, NotificationStore, SilenceSource, StrangerPolicy, Version,
};

/// Counters GetStatus reports.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// The consumer's counters (events processed, retries, dead letters).
    pub consumer: Arc<ConsumerCounters>,
    /// Items added (an actor joined a group, or a new single item).
    pub items_added: AtomicU64,
    /// Items removed by undos, deletions, blocks and mutes.
    pub items_removed: AtomicU64,
    /// Changes that changed nothing: a newer version was already applied.
    pub events_stale: AtomicU64,
}

impl NotifyStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Applies events to the notification store.
pub struct NotifyEngine {
    store: Arc<dyn NotificationStore>,
    graph: GraphServiceClient<TracedChannel>,
    log: Arc<dyn EventLog>,
    stats: Arc<NotifyStats>,
}

const DAY_MS: i64 = 86_400_000;

/// Entries the live notifications stream keeps: gateways tail it from its
/// end, so it only needs to cover a read's worth of lag, with room to spare.
const LIVE_STREAM_LENGTH: usize = 100_000;

impl NotifyEngine {
    /// An engine over `store`, asking graph-svc about mentions and policies
    /// and announcing new items on `log`.
    pub fn new(
        store: Arc<dyn NotificationStore>,
        graph: GraphServiceClient<TracedChannel>,
        log: Arc<dyn EventLog>,
        stats: Arc<NotifyStats>,
    ) -> Self {
        Self {
            store,
            graph,
            log,
            stats,
        }
    }

    /// Decodes and applies one event-log entry.
    pub async fn apply(&self, payload: &[u8]) -> Result<(), NotifyError> {
        let changes = self.changes_of(payload).await?;
        self.commit(changes).await
    }

    /// Decodes and applies several entries, in order, in one store call
    /// (one transaction on the embedded store).
    pub async fn apply_many(&self, payloads: &[&[u8]]) -> Result<(), NotifyError> {
        let mut changes = Vec::with_capacity(payloads.len());
        for payload in payloads {
            changes.extend(self.changes_of(payload).await?);
        }
        self.commit(changes).await
    }

    /// The changes one entry implies.
    async fn changes_of(&self, payload: &[u8]) -> Result<Vec<Change>, NotifyError> {
        let event = Event::decode(payload)?;
        match &event.payload {
            Some(Payload::TweetCreated(created)) => {
                self.tweet_changes(created, event.event_id).await
            }
            _ => Ok(changes_for(&event)),
        }
    }

    /// Applies `changes`, counts what they did, and announces new and grown groups.
    async fn commit(&self, changes: Vec<Change>) -> Result<(), NotifyError> {
        if changes.is_empty() {
            return Ok(());
        }
        let now_ms = warble_mesh::time::now_ms() as i64;
        let applied = self.store.apply_all(changes, now_ms).await?;
        let mut announcements = Vec::new();
        for outcome in applied {
            match outcome {
                Applied::Added {
                    recipient,
                    group_id,
                    filtered,
                    ..
                } => {
                    NotifyStats::add(&self.stats.items_added, 1);
                    let record = NotificationPublished {
                        recipient_id: recipient,
                        group_id,
                        filtered,
                    };
                    announcements.push((recipient, record.encode_to_vec()));
                }
                Applied::Removed { items } => NotifyStats::add(&self.stats.items_removed, items),
                Applied::Stale => NotifyStats::add(&self.stats.events_stale, 1),
                Applied::Recorded => {}
            }
        }
        self.announce(&announcements).await;
        Ok(())
    }

    /// Tells live subscribers which groups were created or grew, in one
    /// append. Best effort: the groups are stored either way, so a failure
    /// here costs live updates, never a notification.
    async fn announce(&self, announcements: &[(u64, Vec<u8>)]) {
        if announcements.is_empty() {
            return;
        }
        if let Err(error) = self
            .log
            .append_capped(NOTIFICATIONS_STREAM, announcements, LIVE_STREAM_LENGTH)
            .await
        {
            tracing::warn!(error = %warble_mesh::status::ErrorChain(&error), count = announcements.len(), "cannot announce notifications to live subscribers");
        }
    }

    /// A new tweet notifies the author it replies to (REPLY), the author it
    /// quotes (QUOTE) and every existing user it mentions (MENTION), one
    /// item each and never the author: someone both replied to and
    /// mentioned gets the reply only. Each recipient's policy may file the
    /// item under filtered.
    async fn tweet_changes(
        &self,
        created: &TweetCreated,
        event_id: u64,
    ) -> Result<Vec<Change>, NotifyError> {
        let author = created.author_id;
        let mut recipients: Vec<(u64, Kind)> = Vec::new();
        let mut add = |recipient: u64, kind: Kind| {
            if recipient != 0
                && recipient != author
                && !recipients.iter().any(|(seen, _)| *seen == recipient)
            {
                recipients.push((recipient, kind));
            }
        };
        if let Some(replied) = created.reply_to_author_id {
            add(replied, Kind::Reply);
        }
        if let Some(quoted) = created.quote_of_author_id {
            add(quoted, Kind::Quote);
        }
        for mentioned in self.resolve_mentions(&created.mentions).await? {
            add(mentioned, Kind::Mention);
        }
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let filtered = self
            .filtered_recipients(author, created.created_at_ms, &recipients)
            .await?;
        let version = Version {
            at_ms: created.created_at_ms,
            event_id,
        };
        Ok(recipients
            .into_iter()
            .map(|(recipient, kind)| Change::Add {
                item: Item {
                    recipient,
                    kind,
                    tweet_id: created.tweet_id,
                    actor: author,
                },
                version,
                filtered: filtered.get(&recipient).copied().unwrap_or(false),
            })
            .collect())
    }

    /// The ids of the mentioned usernames that exist (one batch call).
    async fn resolve_mentions(&self, usernames: &[String]) -> Result<Vec<u64>, NotifyError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let batch = warble_proto::limits::graph::MAX_BATCH;
        let request = GetUsersByUsernamesRequest {
            usernames: usernames.iter().take(batch).cloned().collect(),
        };
        let response = self
            .graph
            .clone()
            .get_users_by_usernames(request)
            .await
            .map_err(NotifyError::graph_svc)?
            .into_inner();
        Ok(response
            .results
            .into_iter()
            .filter_map(|lookup| lookup.user.map(|user| user.id))
            .collect())
    }

    /// Which recipients' policies file this author's item under filtered:
    /// a stranger (someone the recipient does not follow) when the policy
    /// filters strangers, or an account younger than the policy's days.
    /// Asks graph-svc only what some policy needs, in one call each.
    async fn filtered_recipients(
        &self,
        author: u64,
        at_ms: i64,
        recipients: &[(u64, Kind)],
    ) -> Result<HashMap<u64, bool>, NotifyError> {
        let mut settings = Vec::with_capacity(recipients.len());
        for (recipient, _) in recipients {
            settings.push((*recipient, self.store.settings(*recipient).await?));
        }
        let mut filtered = HashMap::new();
        let young_limit = settings
            .iter()
            .map(|(_, settings)| settings.new_accounts_days)
            .max()
            .unwrap_or(0);
        if young_limit > 0 {
            let response = self
                .graph
                .clone()
                .get_users(GetUsersRequest {
                    user_ids: vec![author],
                })
                .await
                .map_err(NotifyError::graph_svc)?
                .into_inner();
            let created_at_ms = response
                .results
                .into_iter()
                .find_map(|lookup| lookup.user)
                .map(|user| user.created_at_ms);
            for (recipient, policy) in &settings {
                let days = i64::from(policy.new_accounts_days);
                // An author who no longer exists is treated as new.
                let young =
                    days > 0 && created_at_ms.is_none_or(|created| at_ms - created < days * DAY_MS);
                if young {
                    filtered.insert(*recipient, true);
                }
            }
        }
        let strangers_checked: Vec<u64> = settings
            .iter()
            .filter(|(recipient, policy)| {
                policy.mentions_from_strangers == StrangerPolicy::Filter
                    && !filtered.contains_key(recipient)
            })
            .map(|(recipient, _)| *recipient)
            .collect();
        if !strangers_checked.is_empty() {
            let pairs = strangers_checked
                .iter()
                .map(|recipient| FollowPair {
                    follower_id: *recipient,
                    followee_id: author,
                })
                .collect();
            let following = self
                .graph
                .clone()
                .is_following(IsFollowingRequest { pairs })
                .await
                .map_err(NotifyError::graph_svc)?
                .into_inner()
                .following;
            for (recipient, follows) in strangers_checked.into_iter().zip(following) {
                if !follows {
                    filtered.insert(recipient, true);
                }
            }
        }
        Ok(filtered)
    }
}

#[async_trait::async_trait]
impl warble_mesh::consumer::EventHandler for NotifyEngine {
    type Error = NotifyError;

    /// A worker's queued events commit together: one store transaction
    /// for up to this many, instead of one each.
    const MAX_BATCH: usize = 128;

    async fn apply_encoded(&self, payload: &[u8]) -> Result<(), NotifyError> {
        self.apply(payload).await
    }

    async fn apply_batch(&self, payloads: &[&[u8]]) -> Result<(), NotifyError> {
        self.apply_many(payloads).await
    }
}

/// The changes an event implies, for every event but TweetCreated (which
/// needs graph-svc, see [`NotifyEngine`]):
/// - Liked / Retweeted / Followed add a LIKE / RETWEET / FOLLOW item for the
///   tweet's author (the followee); Unliked / RetweetUndone / Unfollowed
///   remove it. Acting on one's own tweet notifies no one.
/// - TweetDeleted removes every group about the tweet.
/// - Blocked, and Muted hiding notifications, silence the actor for the
///   blocker or muter (until the mute lapses); Unblocked, Unmuted and a mute
///   that no longer hides notifications lift it.
/// - Everything else changes nothing here.
pub fn changes_for(event: &Event) -> Vec<Change> {
    let version = |at_ms: i64| Version {
        at_ms,
        event_id: event.event_id,
    };
    let item = |recipient: u64, kind: Kind, tweet_id: u64, actor: u64| Item {
        recipient,
        kind,
        tweet_id,
        actor,
    };
    let add = |item: Item, at_ms: i64| {
        (item.recipient != item.actor).then_some(Change::Add {
            item,
            version: version(at_ms),
            filtered: false,
        })
    };
    let remove = |item: Item, at_ms: i64| {
        (item.recipient != item.actor).then_some(Change::Remove {
            item,
            version: version(at_ms),
        })
    };
    let change = match &event.payload {
        Some(Payload::Liked(liked)) => add(
            item(
                liked.tweet_author_id,
                Kind::Like,
                liked.tweet_id,
                liked.user_id,
            ),
            liked.liked_at_ms,
        ),
        Some(Payload::Unliked(unliked)) => remove(
            item(
                unliked.tweet_author_id,
                Kind::Like,
                unliked.tweet_id,
                unliked.user_id,
            ),
            unliked.unliked_at_ms,
        ),
        Some(Payload::Retweeted(retweeted)) => add(
            item(
                retweeted.tweet_author_id,
                Kind::Retweet,
                retweeted.tweet_id,
                retweeted.user_id,
            ),
            retweeted.retweeted_at_ms,
        ),
        Some(Payload::RetweetUndone(undone)) => remove(
            item(
                undone.tweet_author_id,
                Kind::Retweet,
                undone.tweet_id,
                undone.user_id,
            ),
            undone.undone_at_ms,
        ),
        Some(Payload::Followed(followed)) => add(
            item(followed.followee_id, Kind::Follow, 0, followed.follower_id),
            followed.followed_at_ms,
        ),
        Some(Payload::Unfollowed(unfollowed)) => remove(
            item(
                unfollowed.followee_id,
                Kind::Follow,
                0,
                unfollowed.follower_id,
            ),
            unfollowed.unfollowed_at_ms,
        ),
        Some(Payload::TweetDeleted(deleted)) => Some(Change::TweetDeleted {
            tweet_id: deleted.tweet_id,
        }),
        Some(Payload::Blocked(blocked)) => Some(Change::Silence {
            recipient: blocked.blocker_id,
            actor: blocked.blocked_id,
            source: SilenceSource::Block,
            version: version(blocked.blocked_at_ms),
            until_ms: None,
        }),
        Some(Payload::Unblocked(unblocked)) => Some(Change::Unsilence {
            recipient: unblocked.blocker_id,
            actor: unblocked.blocked_id,
            source: SilenceSource::Block,
            version: version(unblocked.unblocked_at_ms),
        }),
        Some(Payload::Muted(muted)) if muted.hide_notifications => Some(Change::Silence {
            recipient: muted.muter_id,
            actor: muted.muted_id,
            source: SilenceSource::Mute,
            version: version(muted.muted_at_ms),
            until_ms: (muted.expires_at_ms > 0).then_some(muted.expires_at_ms),
        }),
        Some(Payload::Muted(muted)) => Some(Change::Unsilence {
            recipient: muted.muter_id,
            actor: muted.muted_id,
            source: SilenceSource::Mute,
            version: version(muted.muted_at_ms),
        }),
        Some(Payload::Unmuted(unmuted)) => Some(Change::Unsilence {
            recipient: unmuted.muter_id,
            actor: unmuted.muted_id,
            source: SilenceSource::Mute,
            version: version(unmuted.unmuted_at_ms),
        }),
        _ => None,
    };
    change.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warble_proto::events::v1::{Liked, Muted, Unfollowed};

    fn event(event_id: u64, payload: Payload) -> Event {
        Event {
            event_id,
            occurred_at_ms: 1_000,
            trace_context: Default::default(),
            payload: Some(payload),
        }
    }

    #[test]
    fn engagement_and_undo_carry_their_version() {
        let liked = event(
            7,
            Payload::Liked(Liked {
                user_id: 2,
                tweet_id: 10,
                tweet_author_id: 1,
                liked_at_ms: 500,
                like_count: 1,
            }),
        );
        assert_eq!(
            changes_for(&liked),
            vec![Change::Add {
                item: Item {
                    recipient: 1,
                    kind: Kind::Like,
                    tweet_id: 10,
                    actor: 2
                },
                version: Version {
                    at_ms: 500,
                    event_id: 7
                },
                filtered: false,
            }]
        );
        let unfollowed = event(
            8,
            Payload::Unfollowed(Unfollowed {
                follower_id: 3,
                followee_id: 4,
                unfollowed_at_ms: 900,
                ..Unfollowed::default()
            }),
        );
        assert!(matches!(
            changes_for(&unfollowed).as_slice(),
            [Change::Remove { item: Item { recipient: 4, kind: Kind::Follow, tweet_id: 0, actor: 3 }, version }]
                if version.at_ms == 900
        ));
    }

    #[test]
    fn own_actions_notify_no_one() {
        let liked = event(
            7,
            Payload::Liked(Liked {
                user_id: 1,
                tweet_id: 10,
                tweet_author_id: 1,
                liked_at_ms: 500,
                like_count: 1,
            }),
        );
        assert!(changes_for(&liked).is_empty());
    }

    #[test]
    fn only_mutes_that_hide_notifications_silence() {
        let mute = |hide: bool, expires_at_ms: i64| {
            event(
                9,
                Payload::Muted(Muted {
                    muter_id: 1,
                    muted_id: 2,
                    muted_at_ms: 100,
                    expires_at_ms,
                    hide_notifications: hide,
                }),
            )
        };
        assert!(matches!(
            changes_for(&mute(true, 5_000)).as_slice(),
            [Change::Silence {
                recipient: 1,
                actor: 2,
                until_ms: Some(5_000),
                ..
            }]
        ));
        assert!(matches!(
            changes_for(&mute(true, 0)).as_slice(),
            [Change::Silence { until_ms: None, .. }]
        ));
        assert!(matches!(
            changes_for(&mute(false, 0)).as_slice(),
            [Change::Unsilence {
                recipient: 1,
                actor: 2,
                ..
            }]
        ));
    }
}
