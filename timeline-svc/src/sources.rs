//! The stores behind the cache: following lists from graph-svc and authors'
//! tweets from tweet-svc, always fetched in batches.

use warble_mesh::grpc::TracedChannel;
use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::graph::v1::{GetRelationsRequest, ListFollowingRequest, Relation};
use warble_proto::limits::{graph, tweet};
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_proto::tweet::v1::{
    GetTweetsRequest, ListAuthorsTweetsRequest, ListUserTweetsRequest, ListUserTweetsResponse,
    TweetLookupStatus,
};
use warble_timeline_cache::Entry;

use crate::error::TimelineError;

/// Clients of tweet-svc and graph-svc.
#[derive(Clone)]
pub(crate) struct Sources {
    pub(crate) tweets: TweetServiceClient<TracedChannel>,
    pub(crate) graph: GraphServiceClient<TracedChannel>,
}

impl Sources {
    /// Everyone `user_id` follows who has at least `min_followers` followers,
    /// read in the largest pages graph-svc serves.
    pub(crate) async fn following(
        &self,
        user_id: u64,
        min_followers: u64,
    ) -> Result<Vec<u64>, TimelineError> {
        let mut followees = Vec::new();
        let mut cursor = String::new();
        loop {
            let response = self
                .graph
                .clone()
                .list_following(ListFollowingRequest {
                    user_id,
                    page: Some(PageRequest {
                        cursor,
                        limit: graph::MAX_PAGE_LIMIT,
                    }),
                    min_followers,
                })
                .await
                .map_err(TimelineError::graph_svc)?
                .into_inner();
            followees.extend(response.following.iter().map(|edge| edge.user_id));
            match response
                .page
                .map(|page| page.next_cursor)
                .filter(|next| !next.is_empty())
            {
                Some(next) => cursor = next,
                None => return Ok(followees),
            }
        }
    }

    /// Each author's newest entries (live tweets and retweets of live
    /// tweets) below position `before`, at most `limit` each, in as few
    /// calls as the RPC's batch limit allows.
    pub(crate) async fn authors_entries(
        &self,
        authors: &[u64],
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuthorEntries>, TimelineError> {
        let mut results = Vec::with_capacity(authors.len());
        for chunk in authors.chunks(tweet::MAX_AUTHORS_PER_CALL) {
            let response = self
                .tweets
                .clone()
                .list_authors_tweets(ListAuthorsTweetsRequest {
                    author_ids: chunk.to_vec(),
                    before_tweet_id: before.unwrap_or(0),
                    limit_per_author: limit.clamp(1, tweet::MAX_TWEETS_PER_AUTHOR),
                    include_retweets: true,
                })
                .await
                .map_err(TimelineError::tweet_svc)?;
            results.extend(
                response
                    .into_inner()
                    .authors
                    .into_iter()
                    .map(|author| AuthorEntries {
                        author_id: author.author_id,
                        has_more: author.has_more,
                        entries: author.entries.iter().map(entry_from_proto).collect(),
                    }),
            );
        }
        Ok(results)
    }

    /// How `viewer` relates to each of `users`, in order, in as few calls
    /// as the RPC's batch limit allows (one for any timeline page).
    pub(crate) async fn relations(
        &self,
        viewer: u64,
        users: &[u64],
    ) -> Result<Vec<Relation>, TimelineError> {
        let mut relations = Vec::with_capacity(users.len());
        for chunk in users.chunks(graph::MAX_BATCH) {
            let response = self
                .graph
                .clone()
                .get_relations(GetRelationsRequest {
                    viewer_id: viewer,
                    user_ids: chunk.to_vec(),
                })
                .await
                .map_err(TimelineError::graph_svc)?;
            relations.extend(response.into_inner().relations);
        }
        Ok(relations)
    }

    /// Which of `tweet_ids` are deleted (or never existed) now.
    pub(crate) async fn gone(&self, tweet_ids: &[u64]) -> Result<Vec<u64>, TimelineError> {
        let mut gone = Vec::new();
        for chunk in tweet_ids.chunks(tweet::MAX_BATCH) {
            let results = self
                .tweets
                .clone()
                .get_tweets(GetTweetsRequest {
                    tweet_ids: chunk.to_vec(),
                    ..Default::default()
                })
                .await
                .map_err(TimelineError::tweet_svc)?
                .into_inner()
                .results;
            gone.extend(
                results
                    .iter()
                    .filter(|lookup| lookup.status() != TweetLookupStatus::Found)
                    .map(|lookup| lookup.tweet_id),
            );
        }
        Ok(gone)
    }

    /// One page of a user's own tweets and retweets.
    pub(crate) async fn user_tweets(
        &self,
        author_id: u64,
        page: PageRequest,
    ) -> Result<ListUserTweetsResponse, TimelineError> {
        Ok(self
            .tweets
            .clone()
            .list_user_tweets(ListUserTweetsRequest {
                author_id,
                page: Some(page),
                include_retweets: true,
            })
            .await
            .map_err(TimelineError::tweet_svc)?
            .into_inner())
    }
}

/// One author's entries, as ListAuthorsTweets lists them.
pub(crate) struct AuthorEntries {
    /// The author (of the tweets, or the retweeter).
    pub(crate) author_id: u64,
    /// Newest first.
    pub(crate) entries: Vec<Entry>,
    /// More exist below the last one.
    pub(crate) has_more: bool,
}

/// A listed entry as the cache holds it.
pub(crate) fn entry_from_proto(entry: &warble_proto::common::v1::TimelineEntry) -> Entry {
    if entry.retweet_id != 0 {
        Entry::retweet(
            entry.retweet_id,
            entry.retweeted_by,
            entry.tweet_id,
            entry.author_id,
        )
    } else {
        Entry::tweet(entry.tweet_id, entry.author_id)
    }
}
