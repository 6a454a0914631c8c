//! Home timelines: the cached timeline merged with the recent tweets and
//! retweets of the celebrities a user follows, rebuilt on a miss, pulled
//! from the stores past what the cache holds, and filtered by the user's
//! blocks and mutes as it is read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use warble_mesh::metrics;
use warble_proto::limits::timeline::CACHED_HOME_ENTRIES;
use warble_proto::limits::tweet::MAX_TWEETS_PER_AUTHOR;
use warble_timeline_cache::{
    CELEBRITY_CAPACITY, CachedPage, Entry, TIMELINE_CAPACITY, TimelineCache,
};

use crate::error::TimelineError;
use crate::merge::{apply_retweet_window, hides_from_home, involved_users, newest_first};
use crate::sources::Sources;

/// Most reads one page makes while entries it must leave out keep it from
/// filling.
const FILL_ROUNDS: usize = 3;

/// One page of a home timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomePage {
    /// Entries, newest first.
    pub entries: Vec<Entry>,
    /// The position the next page starts below; `None` when the timeline ended.
    pub next: Option<u64>,
}

// The contract says how much of a home timeline the cache serves.
const _: () = assert!(TIMELINE_CAPACITY == CACHED_HOME_ENTRIES);

type Rebuild = Shared<BoxFuture<'static, Result<(), TimelineError>>>;

/// Builds home timeline pages.
pub struct HomeTimelines {
    cache: Arc<dyn TimelineCache>,
    sources: Sources,
    celebrity_threshold: u64,
    /// Rebuilds in flight, one per user: concurrent misses share it.
    rebuilding: Mutex<HashMap<u64, Rebuild>>,
    rebuilds: AtomicU64,
    /// Page reads the cache answered, and those it could not (a rebuild).
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
}

impl HomeTimelines {
    pub(crate) fn new(
        cache: Arc<dyn TimelineCache>,
        sources: Sources,
        celebrity_threshold: u64,
    ) -> Arc<Self> {
        let cache_reads = |result| {
            metrics::counter(
                "warble_timeline_cache_requests_total",
                "Home timeline page reads, by whether the cache held the timeline (hit) or it was rebuilt (miss).",
                &[("result", result)],
            )
        };
        let timelines = Arc::new(Self {
            cache,
            sources,
            celebrity_threshold,
            rebuilding: Mutex::new(HashMap::new()),
            rebuilds: AtomicU64::new(0),
            cache_hits: cache_reads("hit"),
            cache_misses: cache_reads("miss"),
        });
        let counted = Arc::downgrade(&timelines);
        metrics::counter_fn(
            "warble_timeline_rebuilds_total",
            "Home timelines rebuilt from the stores (one per missing timeline, however many reads waited for it).",
            &[],
            move || {
                counted
                    .upgrade()
                    .map_or(0, |timelines| timelines.rebuilds())
            },
        );
        timelines
    }

    /// Timelines rebuilt from the stores since start.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Up to `limit` entries of `user`'s home timeline older than position
    /// `before`, newest first, with what the user must not see left out
    /// (see [`HomeTimelines::visible`]), and where the next page starts.
    ///
    /// Leaving entries out can empty part of a page, so a page reads a
    /// quarter more entries than it needs, and reads on until it is full,
    /// the timeline ends, or [`FILL_ROUNDS`] reads were made: a page costs
    /// a bounded number of calls, whatever the user's block and mute lists
    /// hold. A page cut short by that bound still names its next page.
    pub async fn page(
        self: &Arc<Self>,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HomePage, TimelineError> {
        // The first round's cache reads do not depend on each other, so they
        // go out at once (on Redis, one round trip instead of three): a page
        // waits for the slowest, not the sum.
        let first_ask = fill_ask(limit);
        let (marked, celebrities, first_read) = tokio::join!(
            self.cache.mark_active(user, warble_mesh::time::now_ms()),
            self.followed_celebrities(user),
            self.cache.read(user, before, first_ask),
        );
        marked?;
        let celebrities = celebrities?;
        let mut prefetched = Some(first_read?);
        let mut page = HomePage {
            entries: Vec::with_capacity(limit),
            next: None,
        };
        let mut shown = HashSet::new();
        let mut before = before;
        for _ in 0..FILL_ROUNDS {
            let ask = fill_ask(limit - page.entries.len());
            let read = self
                .unfiltered(user, &celebrities, before, ask, prefetched.take())
                .await?;
            let more = read.len() == ask;
            let last_read = read.last().map(Entry::position);
            for entry in self.visible(user, read).await? {
                if page.entries.len() == limit {
                    // Full with visible entries to spare: the next page
                    // starts right after the last one shown, and reads the
                    // rest again.
                    page.next = page.entries.last().map(Entry::position);
                    return Ok(page);
                }
                // Each tweet once per page: the newest entry of it wins.
                if shown.insert(entry.tweet_id) {
                    page.entries.push(entry);
                }
            }
            if !more {
                page.next = None;
                return Ok(page);
            }
            page.next = last_read;
            before = last_read;
            if page.entries.len() >= limit {
                return Ok(page);
            }
        }
        Ok(page)
    }

    /// The celebrities `user` follows: the set fan-out keeps in the cache
    /// (one read, however many accounts the user follows), or, when none is
    /// recorded, the graph's answer, recorded for the next pages. The graph
    /// call also proves the user exists (NOT_FOUND otherwise) before any
    /// rebuild; a recorded set was recorded for a user who existed.
    async fn followed_celebrities(&self, user: u64) -> Result<Vec<u64>, TimelineError> {
        if let Some(celebrities) = self.cache.followed_celebrities(user).await? {
            return Ok(celebrities);
        }
        let celebrities = self
            .sources
            .following(user, self.celebrity_threshold)
            .await?;
        self.cache
            .set_followed_celebrities(user, &celebrities)
            .await?;
        Ok(celebrities)
    }

    /// What of `entries` `user` may see: no entry involving someone they
    /// block, who blocks them, or whom they mute; no retweet of a tweet
    /// deleted since; no retweet of their own tweet. One relations call and
    /// at most one tweet lookup, whatever the length of the lists.
    async fn visible(&self, user: u64, entries: Vec<Entry>) -> Result<Vec<Entry>, TimelineError> {
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|entry| !(entry.is_retweet() && entry.author_id == user))
            .collect();
        let others = involved_users(user, &entries);
        let retweeted: Vec<u64> = entries
            .iter()
            .filter(|entry| entry.is_retweet())
            .map(|entry| entry.tweet_id)
            .collect();
        let (relations, gone) = tokio::join!(
            async {
                if others.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.sources.relations(user, &others).await
                }
            },
            async {
                if retweeted.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.sources.gone(&retweeted).await
                }
            },
        );
        let hidden: HashSet<u64> = others
            .iter()
            .zip(relations?)
            .filter(|(_, relation)| hides_from_home(relation))
            .map(|(user, _)| *user)
            .collect();
        let gone: HashSet<u64> = gone?.into_iter().collect();
        Ok(entries
            .into_iter()
            .filter(|entry| {
                let hidden_user =
                    hidden.contains(&entry.author_id) || hidden.contains(&entry.retweeted_by);
                let deleted = entry.is_retweet() && gone.contains(&entry.tweet_id);
                !(hidden_user || deleted)
            })
            .collect())
    }

    /// Up to `limit` entries of `user`'s home timeline older than `before`,
    /// newest first, before anything is left out: the cache merged with the
    /// followed `celebrities`' recent entries, and the stores past the cache.
    /// `prefetched` is the cache's answer to this very read when the caller
    /// already made it.
    async fn unfiltered(
        self: &Arc<Self>,
        user: u64,
        celebrities: &[u64],
        before: Option<u64>,
        limit: usize,
        prefetched: Option<Option<CachedPage>>,
    ) -> Result<Vec<Entry>, TimelineError> {
        let read = match prefetched {
            Some(read) => read,
            None => self.cache.read(user, before, limit).await?,
        };
        let cached = match read {
            Some(page) => {
                self.cache_hits.inc();
                page
            }
            None => {
                self.cache_misses.inc();
                self.rebuild_once(user).await?;
                // Evicted again already (e.g. by fan-out): serve from the stores.
                self.cache
                    .read(user, before, limit)
                    .await?
                    .unwrap_or(CachedPage {
                        entries: Vec::new(),
                        has_more: false,
                        len: 0,
                    })
            }
        };

        // The cache vouches for the range from `before` down to the last entry
        // it returned. When it ran out before filling the page, older entries
        // may exist that only the stores know (it keeps only the newest
        // TIMELINE_CAPACITY), so everything below that point comes from the
        // pull path.
        let ran_out = !cached.has_more && cached.entries.len() < limit;
        let vouched_down_to = if ran_out {
            cached.entries.last().map(Entry::position).or(before)
        } else {
            None
        };
        let mut entries = cached.entries;
        let celebrity_entries = self.celebrity_entries(celebrities, before, limit).await?;
        entries.extend(celebrity_entries.into_iter().filter(|entry| {
            !ran_out
                || vouched_down_to.is_some_and(|floor| {
                    entry.position() > floor && before.is_none_or(|b| entry.position() < b)
                })
        }));
        let mut entries = newest_first(entries, limit);
        if ran_out && entries.len() < limit {
            let mut authors = self.sources.following(user, 0).await?;
            authors.push(user);
            let older = self
                .pull(&authors, vouched_down_to, limit - entries.len())
                .await?;
            entries.extend(older);
            entries = newest_first(entries, limit);
        }
        Ok(entries)
    }

    /// Rebuilds `user`'s timeline unless a rebuild for them is already
    /// running, in which case it waits for that one.
    async fn rebuild_once(self: &Arc<Self>, user: u64) -> Result<(), TimelineError> {
        let rebuild = {
            let mut rebuilding = self
                .rebuilding
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            rebuilding
                .entry(user)
                .or_insert_with(|| {
                    let this = self.clone();
                    async move {
                        let result = this.rebuild(user).await;
                        this.rebuilding
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .remove(&user);
                        result
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        rebuild.await
    }

    /// Writes the newest [`TIMELINE_CAPACITY`] entries of everyone `user`
    /// follows (and their own) into the cache, merged with anything pushed
    /// meanwhile: their tweets and retweets, under the retweet window, and
    /// no retweet of the user's own tweets.
    async fn rebuild(&self, user: u64) -> Result<(), TimelineError> {
        // A rebuild that finished just before this one was scheduled leaves nothing to do.
        if self.cache.read(user, None, 0).await?.is_some() {
            return Ok(());
        }
        let mut authors = self.sources.following(user, 0).await?;
        authors.push(user);
        let entries = self.pull(&authors, None, TIMELINE_CAPACITY).await?;
        let entries: Vec<Entry> = apply_retweet_window(entries)
            .into_iter()
            .filter(|entry| !(entry.is_retweet() && entry.author_id == user))
            .collect();
        self.cache.insert(user, &entries, true).await?;
        // A tweet deleted between the pull and the insert may have had its
        // fan-out removal run before the insert put it back. Any such delete
        // committed before this check, so the check catches it; later ones
        // find the entry in place and remove it themselves.
        let own_entries: Vec<u64> = entries
            .iter()
            .filter(|entry| !entry.is_retweet())
            .map(|entry| entry.tweet_id)
            .collect();
        for tweet_id in self.sources.gone(&own_entries).await? {
            self.cache.remove(&[user], tweet_id).await?;
        }
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            user,
            entries = entries.len(),
            authors = authors.len(),
            "timeline rebuilt"
        );
        Ok(())
    }

    /// The newest `want` entries below `before` across `authors` (their
    /// tweets and retweets): a k-way merge that asks each author for a fair
    /// share first and goes back only to authors whose entries could still
    /// belong in the result.
    async fn pull(
        &self,
        authors: &[u64],
        before: Option<u64>,
        want: usize,
    ) -> Result<Vec<Entry>, TimelineError> {
        if authors.is_empty() || want == 0 {
            return Ok(Vec::new());
        }
        let mut per_author =
            (want.div_ceil(authors.len()) as u32 * 2).clamp(10, MAX_TWEETS_PER_AUTHOR);
        let mut fetched: HashMap<u64, (Vec<Entry>, bool)> = HashMap::new();
        let mut ask: Vec<u64> = authors.to_vec();
        ask.sort_unstable();
        ask.dedup();
        loop {
            for author in self
                .sources
                .authors_entries(&ask, before, per_author)
                .await?
            {
                fetched.insert(author.author_id, (author.entries, author.has_more));
            }
            let merged = newest_first(
                fetched
                    .values()
                    .flat_map(|(entries, _)| entries.iter().copied())
                    .collect(),
                want,
            );
            let cutoff = (merged.len() == want).then(|| merged[want - 1].position());
            // An author with more entries whose oldest fetched one still
            // beats the cutoff may hide entries that belong in the result.
            ask = fetched
                .iter()
                .filter(|(_, (entries, has_more))| {
                    *has_more
                        && cutoff.is_none_or(|cutoff| {
                            entries
                                .last()
                                .is_some_and(|oldest| oldest.position() > cutoff)
                        })
                })
                .map(|(author, _)| *author)
                .collect();
            if ask.is_empty() || per_author >= MAX_TWEETS_PER_AUTHOR {
                return Ok(merged);
            }
            per_author = (per_author * 2).min(MAX_TWEETS_PER_AUTHOR);
        }
    }

    /// Recent entries of the followed celebrities below `before`, up to
    /// `limit` each: from their cached sets, filling missing sets from the
    /// tweet store, and asking the store directly when a set runs short
    /// and is not complete (it may have dropped older entries).
    async fn celebrity_entries(
        &self,
        celebrities: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Entry>, TimelineError> {
        if celebrities.is_empty() {
            return Ok(Vec::new());
        }
        let sets = self
            .cache
            .celebrity_recent(celebrities, before, limit)
            .await?;
        let mut entries = Vec::new();
        let mut unfilled = Vec::new();
        let mut short = Vec::new();
        for (celebrity, set) in celebrities.iter().zip(sets) {
            match set {
                // Enough for the page, or all there is.
                Some(recent) if recent.entries.len() >= limit || recent.complete => {
                    entries.extend(recent.entries)
                }
                Some(_) => short.push(*celebrity),
                None => unfilled.push(*celebrity),
            }
        }
        if !unfilled.is_empty() {
            let recent = self
                .sources
                .authors_entries(&unfilled, None, CELEBRITY_CAPACITY as u32)
                .await?;
            for author in recent {
                self.cache
                    .celebrity_fill(author.author_id, &author.entries)
                    .await?;
                let below: Vec<Entry> = author
                    .entries
                    .iter()
                    .copied()
                    .filter(|entry| before.is_none_or(|before| entry.position() < before))
                    .take(limit)
                    .collect();
                if below.len() >= limit || !author.has_more {
                    entries.extend(below);
                } else {
                    short.push(author.author_id);
                }
            }
        }
        if !short.is_empty() {
            for author in self
                .sources
                .authors_entries(&short, before, limit as u32)
                .await?
            {
                entries.extend(author.entries);
            }
        }
        Ok(entries)
    }
}

/// Entries to read for `want` visible ones: a little more than the page
/// needs, so the entries left out rarely cost a second round.
fn fill_ask(want: usize) -> usize {
    want + want / 4 + 2
}
