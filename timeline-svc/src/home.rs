//! Home timelines: the cached timeline merged with the recent tweets of the
//! celebrities a user follows, rebuilt on a miss, and pulled from the stores
//! past what the cache holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use warble_proto::limits::timeline::CACHED_HOME_ENTRIES;
use warble_proto::limits::tweet::MAX_TWEETS_PER_AUTHOR;
use warble_timeline_cache::{
    CELEBRITY_CAPACITY, CachedPage, Entry, TIMELINE_CAPACITY, TimelineCache,
};

use crate::error::TimelineError;
use crate::merge::newest_first;
use crate::sources::Sources;

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
}

impl HomeTimelines {
    pub(crate) fn new(
        cache: Arc<dyn TimelineCache>,
        sources: Sources,
        celebrity_threshold: u64,
    ) -> Self {
        Self {
            cache,
            sources,
            celebrity_threshold,
            rebuilding: Mutex::new(HashMap::new()),
            rebuilds: AtomicU64::new(0),
        }
    }

    /// Timelines rebuilt from the stores since start.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Up to `limit` entries of `user`'s home timeline older than `before`, newest first.
    pub async fn page(
        self: &Arc<Self>,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Entry>, TimelineError> {
        // Three independent reads at once: a page waits for the slowest, not the sum.
        let (marked, celebrities, cached) = tokio::join!(
            self.cache.mark_active(user, warble_mesh::time::now_ms()),
            self.sources.following(user, self.celebrity_threshold),
            self.cache.read(user, before, limit),
        );
        marked?;
        // Also proves the user exists (NOT_FOUND otherwise) before any rebuild.
        let celebrities = celebrities?;
        let cached = match cached? {
            Some(page) => page,
            None => {
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
        // it returned. When it ran out before filling the page, older tweets
        // may exist that only the stores know (it keeps only the newest
        // TIMELINE_CAPACITY), so everything below that point comes from the
        // pull path.
        let ran_out = !cached.has_more && cached.entries.len() < limit;
        let vouched_down_to = if ran_out {
            cached.entries.last().map(|entry| entry.tweet_id).or(before)
        } else {
            None
        };
        let mut entries = cached.entries;
        let celebrity_entries = self.celebrity_entries(&celebrities, before, limit).await?;
        entries.extend(celebrity_entries.into_iter().filter(|entry| {
            !ran_out
                || vouched_down_to.is_some_and(|floor| {
                    entry.tweet_id > floor && before.is_none_or(|b| entry.tweet_id < b)
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

    /// Writes the newest [`TIMELINE_CAPACITY`] tweets of everyone `user`
    /// follows (and their own) into the cache, merged with anything pushed
    /// meanwhile.
    async fn rebuild(&self, user: u64) -> Result<(), TimelineError> {
        // A rebuild that finished just before this one was scheduled leaves nothing to do.
        if self.cache.read(user, None, 0).await?.is_some() {
            return Ok(());
        }
        let mut authors = self.sources.following(user, 0).await?;
        authors.push(user);
        let entries = self.pull(&authors, None, TIMELINE_CAPACITY).await?;
        self.cache.insert(user, &entries, true).await?;
        // A tweet deleted between the pull and the insert may have had its
        // fan-out removal run before the insert put it back. Any such delete
        // committed before this check, so the check catches it; later ones
        // find the entry in place and remove it themselves.
        let ids: Vec<u64> = entries.iter().map(|entry| entry.tweet_id).collect();
        for tweet_id in self.sources.gone(&ids).await? {
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

    /// The newest `want` tweets below `before` across `authors`: a k-way
    /// merge that asks each author for a fair share first and goes back
    /// only to authors whose tweets could still belong in the result.
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
        let mut fetched: HashMap<u64, (Vec<u64>, bool)> = HashMap::new();
        let mut ask: Vec<u64> = authors.to_vec();
        ask.sort_unstable();
        ask.dedup();
        loop {
            for author in self
                .sources
                .authors_tweets(&ask, before, per_author)
                .await?
            {
                fetched.insert(author.author_id, (author.tweet_ids, author.has_more));
            }
            let merged = newest_first(
                fetched
                    .iter()
                    .flat_map(|(author, (ids, _))| {
                        ids.iter().map(|id| Entry {
                            tweet_id: *id,
                            author_id: *author,
                        })
                    })
                    .collect(),
                want,
            );
            let cutoff = (merged.len() == want).then(|| merged[want - 1].tweet_id);
            // An author with more tweets whose oldest fetched one still beats
            // the cutoff may hide tweets that belong in the result.
            ask = fetched
                .iter()
                .filter(|(_, (ids, has_more))| {
                    *has_more
                        && cutoff
                            .is_none_or(|cutoff| ids.last().is_some_and(|oldest| *oldest > cutoff))
                })
                .map(|(author, _)| *author)
                .collect();
            if ask.is_empty() || per_author >= MAX_TWEETS_PER_AUTHOR {
                return Ok(merged);
            }
            per_author = (per_author * 2).min(MAX_TWEETS_PER_AUTHOR);
        }
    }

    /// Recent tweets of the followed celebrities below `before`, up to
    /// `limit` each: from their cached sets, filling missing sets from the
    /// tweet store, and asking the store directly when a set runs short (it
    /// may have dropped older tweets).
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
        for (author, set) in celebrities.iter().zip(sets) {
            match set {
                Some(ids) if ids.len() >= limit => {
                    entries.extend(ids.into_iter().map(|tweet_id| Entry {
                        tweet_id,
                        author_id: *author,
                    }));
                }
                Some(_) => short.push(*author),
                None => unfilled.push(*author),
            }
        }
        if !unfilled.is_empty() {
            let recent = self
                .sources
                .authors_tweets(&unfilled, None, CELEBRITY_CAPACITY as u32)
                .await?;
            for author in recent {
                self.cache
                    .celebrity_fill(author.author_id, &author.tweet_ids)
                    .await?;
                let below: Vec<u64> = author
                    .tweet_ids
                    .iter()
                    .copied()
                    .filter(|id| before.is_none_or(|before| *id < before))
                    .take(limit)
                    .collect();
                if below.len() >= limit || !author.has_more {
                    entries.extend(below.into_iter().map(|tweet_id| Entry {
                        tweet_id,
                        author_id: author.author_id,
                    }));
                } else {
                    short.push(author.author_id);
                }
            }
        }
        if !short.is_empty() {
            for author in self
                .sources
                .authors_tweets(&short, before, limit as u32)
                .await?
            {
                entries.extend(author.tweet_ids.into_iter().map(|tweet_id| Entry {
                    tweet_id,
                    author_id: author.author_id,
                }));
            }
        }
        Ok(entries)
    }
}
