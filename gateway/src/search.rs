//! Search: tweets by query, users by what is typed, and trending hashtags,
//! over search-svc.
//!
//! A page of results costs a constant number of downstream calls: one
//! SearchTweets, one GetRelations (authors the viewer blocks, mutes or is
//! blocked by are left out, as in conversations), and the usual hydration.
//! Trends hydrate the sample tweets of every trend in one batch.

use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use warble_proto::common::v1::{PageRequest, TimelineEntry};
use warble_proto::limits::search::{MAX_PAGE_LIMIT, MAX_TREND_LIMIT, MAX_USER_LIMIT};
use warble_proto::search::v1 as search;

use crate::error::{StatusExt as _, bad_input};
use crate::hydrate::{self, TweetWants, UserWants};
use crate::model::{TweetConnection, TweetNode, UserNode};
use crate::paging;
use crate::resolvers::{empty_tweet_connection, state, tweet_connection, viewer};
use crate::social::hidden_users;

// `first` is passed on as SearchTweets' page size, SearchUsers' and
// GetTrends' limits.
const _: () = assert!(paging::MAX_FIRST as u32 <= MAX_PAGE_LIMIT);
const _: () = assert!(paging::MAX_FIRST as u32 <= MAX_USER_LIMIT);
const _: () = assert!(paging::MAX_FIRST as u32 <= MAX_TREND_LIMIT);

/// Sample tweets a trend shows.
pub const TREND_SAMPLES: usize = 3;

/// How search results are ordered.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(name = "SearchSort")]
pub enum SearchSort {
    /// Newest first (the default). Cursors stay put while new tweets arrive.
    #[default]
    Latest,
    /// Best first: relevance × engagement × recency.
    Top,
}

/// A hashtag trending now.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Trend")]
pub struct TrendNode {
    /// The tag, lower-cased, without `#`.
    pub tag: String,
    /// How far above its usual rate the tag's distinct authors are (higher
    /// trends more); decays with a four-hour half-life.
    pub score: f64,
    /// Distinct authors who used it in the last hour (at least 5).
    pub authors_last_hour: i64,
    /// Tweets with it in the last hour.
    pub tweets_last_hour: i64,
    /// Tweets with it in each of the last 24 hours, oldest first (a sparkline).
    pub hourly_tweets: Vec<i64>,
    /// A few of the newest tweets with the tag (never by authors the viewer
    /// blocks or mutes).
    pub sample_tweets: Vec<TweetNode>,
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The search fields of `Query`.
#[derive(Default)]
pub struct SearchQueries;

#[Object]
impl SearchQueries {
    /// Tweets matching `query`: words, "phrases", #tags, @mentions,
    /// from:user, to:user, -exclusions, since:/until:YYYY-MM-DD, has:media,
    /// is:reply. A query that does not parse is BAD_USER_INPUT naming the
    /// byte position. Authors the viewer blocks, mutes or is blocked by are
    /// left out (a page may then hold fewer than `first`).
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The query: words, \"phrases\", #tags, @mentions, from:user, to:user, -exclusions, since:YYYY-MM-DD, until:YYYY-MM-DD, has:media, is:reply; at most 512 bytes and 32 terms. One that does not parse is BAD_USER_INPUT naming the byte position."
        )]
        query: String,
        #[graphql(desc = "LATEST when omitted or null.")] sort: Option<SearchSort>,
        #[graphql(
            desc = "Tweets in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the search (query and sort) that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<TweetConnection> {
        let first = paging::first(first)?;
        let cursor = paging::after(after)?;
        if query.len() > warble_proto::limits::search::MAX_QUERY_BYTES {
            return Err(bad_input(
                "query",
                format!(
                    "a query is at most {} bytes",
                    warble_proto::limits::search::MAX_QUERY_BYTES
                ),
            ));
        }
        if first == 0 {
            return Ok(empty_tweet_connection());
        }
        let response = state(ctx)?
            .downstream
            .search
            .clone()
            .search_tweets(search::SearchTweetsRequest {
                query,
                sort: match sort.unwrap_or_default() {
                    SearchSort::Latest => search::SearchSort::Latest,
                    SearchSort::Top => search::SearchSort::Top,
                } as i32,
                page: Some(PageRequest {
                    cursor,
                    limit: first,
                }),
            })
            .await
            .gql()?
            .into_inner();
        let authors: Vec<u64> = response.hits.iter().map(|hit| hit.author_id).collect();
        let hidden = hidden_users(ctx, viewer(ctx), authors).await?;
        let entries: Vec<TimelineEntry> = response
            .hits
            .into_iter()
            .filter(|hit| !hidden.contains(&hit.author_id))
            .map(|hit| TimelineEntry {
                tweet_id: hit.tweet_id,
                author_id: hit.author_id,
                cursor: hit.cursor,
                ..Default::default()
            })
            .collect();
        tweet_connection(ctx, entries, response.page.unwrap_or_default().next_cursor).await
    }

    /// Users whose username, or a word of whose display name, starts with
    /// what was typed (`@` ignored): the exact username first, then by
    /// followers.
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn search_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "What was typed (a leading `@` is ignored), at most 512 bytes; blank finds nobody."
        )]
        query: String,
        #[graphql(
            desc = "Users to return, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
    ) -> Result<Vec<UserNode>> {
        let limit = paging::first(first)?;
        if limit == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        if query.len() > warble_proto::limits::search::MAX_QUERY_BYTES {
            return Err(bad_input("query", "too long"));
        }
        let state = state(ctx)?;
        let ids = state
            .downstream
            .search
            .clone()
            .search_users(search::SearchUsersRequest { query, limit })
            .await
            .gql()?
            .into_inner()
            .user_ids;
        let wants = UserWants::of(ctx.look_ahead());
        let mut users = hydrate::users(&state.downstream, viewer(ctx), &ids, wants).await?;
        Ok(ids.iter().filter_map(|id| users.remove(id)).collect())
    }

    /// The hashtags trending now, best first.
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn trends(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Trends to return, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
    ) -> Result<Vec<TrendNode>> {
        let limit = paging::first(first)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let samples_selection = ctx.look_ahead().field("sampleTweets");
        let wants_samples = samples_selection.exists();
        let state = state(ctx)?;
        let trends = state
            .downstream
            .search
            .clone()
            .get_trends(search::GetTrendsRequest {
                limit,
                // Twice what is shown: some may be hidden from this viewer.
                samples: if wants_samples {
                    (2 * TREND_SAMPLES) as u32
                } else {
                    0
                },
            })
            .await
            .gql()?
            .into_inner()
            .trends;
        let authors: Vec<u64> = trends
            .iter()
            .flat_map(|trend| &trend.samples)
            .map(|hit| hit.author_id)
            .collect();
        let hidden = hidden_users(ctx, viewer(ctx), authors).await?;
        let shown: Vec<Vec<u64>> = trends
            .iter()
            .map(|trend| {
                trend
                    .samples
                    .iter()
                    .filter(|hit| !hidden.contains(&hit.author_id))
                    .map(|hit| hit.tweet_id)
                    .take(TREND_SAMPLES)
                    .collect()
            })
            .collect();
        let all: Vec<u64> = shown.iter().flatten().copied().collect();
        let mut nodes = if all.is_empty() {
            Vec::new()
        } else {
            hydrate::tweets(
                &state.downstream,
                viewer(ctx),
                &all,
                TweetWants::of(samples_selection),
            )
            .await?
        }
        .into_iter();
        Ok(trends
            .into_iter()
            .zip(shown)
            .map(|(trend, ids)| TrendNode {
                tag: trend.tag,
                score: trend.score,
                authors_last_hour: count(trend.authors_last_hour),
                tweets_last_hour: count(trend.tweets_last_hour),
                hourly_tweets: trend.hourly_tweets.into_iter().map(count).collect(),
                sample_tweets: ids.iter().filter_map(|_| nodes.next().flatten()).collect(),
            })
            .collect())
    }
}
