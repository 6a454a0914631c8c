//! The gRPC face of tweet-svc: validates requests, issues ids and turns store
//! answers into responses. Storage rules live in the store; this module owns
//! the request rules and enforces the contract's limits
//! ([`warble_proto::limits::tweet`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use warble_mesh::cursor;
use warble_mesh::snowflake;
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_proto::common::v1::{PageRequest, PageResponse, TimelineEntry};
use warble_proto::limits::tweet::{
    DEFAULT_PAGE_LIMIT, MAX_ANCESTORS, MAX_AUTHORS_PER_CALL, MAX_BATCH, MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_MEDIA, MAX_PAGE_LIMIT, MAX_SCAN_LIMIT, MAX_TWEETS_PER_AUTHOR,
};
use warble_proto::tweet::v1 as pb;
use warble_proto::tweet::v1::tweet_service_server::TweetService;

use crate::error::TweetError;
use crate::store::{
    CreateOutcome, Engagement, EngagementChange, EngagementWrite, NewTweet, ScanPosition, Tweet,
    TweetCounts, TweetLookup, TweetStore, ViewerState, check_write_batch,
};
use crate::text;

/// Cursor kind of a user's tweet list. Positions: the author (so a cursor
/// cannot be replayed against another user's list) and the sort id of the
/// last entry returned (the tweet id, or the retweet id for a retweet: one
/// id space, so never a tie); the next page starts strictly below it, so
/// entries created while paging can never shift a page and cause skips or
/// repeats.
const USER_TWEETS_CURSOR: u8 = 0x21;
/// Cursor kind of a user's bookmarks: the user and the bookmark id to list
/// below (a page may end on a skipped bookmark of a deleted tweet).
const BOOKMARKS_CURSOR: u8 = 0x22;
/// Cursor kind of a tweet's replies: the parent and the last reply id
/// returned; the next page starts strictly above it.
const REPLIES_CURSOR: u8 = 0x23;
/// Cursor kind of the scan of every tweet (ScanTweets): the store's
/// position after the last tweet read, its partition token (0 on the
/// embedded store) and its id. The list has no owner to check.
const SCAN_CURSOR: u8 = 0x24;

/// Implements `warble.tweet.v1.TweetService` over a [`TweetStore`].
#[derive(Clone)]
pub struct TweetApi {
    store: Arc<dyn TweetStore>,
    ids: Arc<SnowflakeGenerator>,
}

impl std::fmt::Debug for TweetApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TweetApi")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl TweetApi {
    /// An API over `store`, issuing tweet and event ids from `ids`.
    pub fn new(store: Arc<dyn TweetStore>, ids: Arc<SnowflakeGenerator>) -> Self {
        Self { store, ids }
    }

    async fn create(
        &self,
        request: pb::CreateTweetRequest,
    ) -> Result<pb::CreateTweetResponse, TweetError> {
        let new = self.new_tweet(request)?;
        Ok(created_response(self.store.create_tweet(new).await?))
    }

    /// Validates a create request and issues its tweet and event ids: the
    /// one place CreateTweet and CreateTweets check a tweet.
    fn new_tweet(&self, request: pb::CreateTweetRequest) -> Result<NewTweet, TweetError> {
        let author_id = require_id("author_id", request.author_id)?;
        let text = text::normalize(&request.text)
            .map_err(|error| TweetError::invalid("text", error.to_string()))?;
        let reply_to_tweet_id = request
            .reply_to_tweet_id
            .map(|id| require_id("reply_to_tweet_id", id))
            .transpose()?;
        let quote_of_tweet_id = request
            .quote_of_tweet_id
            .map(|id| require_id("quote_of_tweet_id", id))
            .transpose()?;
        if request.media_ids.len() > MAX_MEDIA {
            return Err(TweetError::invalid(
                "media_ids",
                format!("at most {MAX_MEDIA} media may be attached"),
            ));
        }
        if request.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(TweetError::invalid(
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
            ));
        }
        let tweet = Tweet {
            id: self.ids.next_id()?,
            author_id,
            hashtags: text::hashtags(&text),
            mentions: text::mentions(&text),
            text,
            reply_to_tweet_id,
            quote_of_tweet_id,
            media_ids: request.media_ids,
        };
        Ok(NewTweet {
            tweet,
            idempotency_key: Some(request.idempotency_key).filter(|key| !key.is_empty()),
            event_id: self.ids.next_id()?,
        })
    }

    /// CreateTweets: every entry validated (and given its ids) before the
    /// store sees any, so an invalid entry creates nothing.
    async fn create_many(
        &self,
        requests: Vec<pb::CreateTweetRequest>,
    ) -> Result<pb::CreateTweetsResponse, TweetError> {
        // The size first, so an oversized batch costs no per-entry work.
        check_write_batch(requests.len())?;
        if requests.is_empty() {
            return Ok(pb::CreateTweetsResponse::default());
        }
        let batch = requests
            .into_iter()
            .enumerate()
            .map(|(index, request)| {
                self.new_tweet(request)
                    .map_err(|error| error.in_batch("tweets", index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcomes = self.store.create_tweets(batch).await?;
        Ok(pb::CreateTweetsResponse {
            results: outcomes.into_iter().map(created_response).collect(),
        })
    }

    async fn list(
        &self,
        request: pb::ListUserTweetsRequest,
    ) -> Result<pb::ListUserTweetsResponse, TweetError> {
        let author_id = require_id("author_id", request.author_id)?;
        let page = request.page.unwrap_or_default();
        let limit = page_limit(&page)?;
        let before = decode_cursor(USER_TWEETS_CURSOR, &page.cursor, author_id)?;
        // One extra entry tells whether another page follows.
        let mut entries = self
            .store
            .list_user_entries(author_id, before, limit + 1, request.include_retweets)
            .await?;
        let next_cursor = if entries.len() > limit {
            entries.truncate(limit);
            entries
                .last()
                .map(|last| cursor::encode(USER_TWEETS_CURSOR, &[author_id, last.sort_id()]))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let cursors = entries
            .iter()
            .map(|entry| cursor::encode(USER_TWEETS_CURSOR, &[author_id, entry.sort_id()]))
            .collect();
        let retweet_ids = if request.include_retweets {
            entries
                .iter()
                .map(|entry| entry.retweet_id.unwrap_or(0))
                .collect()
        } else {
            Vec::new()
        };
        Ok(pb::ListUserTweetsResponse {
            tweets: entries
                .into_iter()
                .map(|entry| to_proto(entry.tweet))
                .collect(),
            page: Some(PageResponse { next_cursor }),
            cursors,
            retweet_ids,
        })
    }

    async fn list_authors(
        &self,
        request: pb::ListAuthorsTweetsRequest,
    ) -> Result<pb::ListAuthorsTweetsResponse, TweetError> {
        if request.author_ids.len() > MAX_AUTHORS_PER_CALL {
            return Err(TweetError::invalid(
                "author_ids",
                format!("at most {MAX_AUTHORS_PER_CALL} ids per call"),
            ));
        }
        for author_id in &request.author_ids {
            require_id("author_ids", *author_id)?;
        }
        let limit = match request.limit_per_author {
            0 => DEFAULT_PAGE_LIMIT as usize,
            limit if limit <= MAX_TWEETS_PER_AUTHOR => limit as usize,
            _ => {
                return Err(TweetError::invalid(
                    "limit_per_author",
                    format!("must be at most {MAX_TWEETS_PER_AUTHOR}"),
                ));
            }
        };
        let before = (request.before_tweet_id != 0).then_some(request.before_tweet_id);
        let answers = self
            .store
            .list_authors_entries(
                request.author_ids.clone(),
                before,
                limit,
                request.include_retweets,
            )
            .await?;
        let authors = request
            .author_ids
            .into_iter()
            .zip(answers)
            .map(|(author_id, answer)| pb::AuthorTweets {
                author_id,
                tweet_ids: answer.entries.iter().map(|entry| entry.tweet_id).collect(),
                has_more: answer.has_more,
                entries: answer
                    .entries
                    .into_iter()
                    .map(|entry| TimelineEntry {
                        tweet_id: entry.tweet_id,
                        author_id: entry.author_id,
                        cursor: String::new(),
                        retweeted_by: entry.retweet_id.map_or(0, |_| author_id),
                        retweet_id: entry.retweet_id.unwrap_or(0),
                    })
                    .collect(),
            })
            .collect();
        Ok(pb::ListAuthorsTweetsResponse { authors })
    }

    /// Likes, unlikes, retweets or undoes one, issuing the event id (and the
    /// id a new retweet takes) first.
    async fn engage(
        &self,
        kind: Engagement,
        user_id: u64,
        tweet_id: u64,
        engaged: bool,
    ) -> Result<EngagementChange, TweetError> {
        let user_id = require_id("user_id", user_id)?;
        let tweet_id = require_id("tweet_id", tweet_id)?;
        let retweet_id = match (kind, engaged) {
            (Engagement::Retweet, true) => self.ids.next_id()?,
            _ => 0,
        };
        let write = EngagementWrite {
            kind,
            user_id,
            tweet_id,
            engaged,
            event_id: self.ids.next_id()?,
            retweet_id,
        };
        self.store.set_engagement(write).await
    }

    async fn list_bookmarks(
        &self,
        request: pb::ListBookmarksRequest,
    ) -> Result<pb::ListBookmarksResponse, TweetError> {
        let user_id = require_id("user_id", request.user_id)?;
        let page = request.page.unwrap_or_default();
        let limit = page_limit(&page)?;
        let before = decode_cursor(BOOKMARKS_CURSOR, &page.cursor, user_id)?;
        let listed = self.store.list_bookmarks(user_id, before, limit).await?;
        let next_cursor = listed
            .next_before
            .map(|below| cursor::encode(BOOKMARKS_CURSOR, &[user_id, below]))
            .unwrap_or_default();
        let bookmarks = listed
            .bookmarks
            .into_iter()
            .map(|bookmark| pb::BookmarkEdge {
                tweet_id: bookmark.tweet_id,
                author_id: bookmark.author_id,
                bookmarked_at_ms: millis(snowflake::decode(bookmark.bookmark_id).unix_ms),
                cursor: cursor::encode(BOOKMARKS_CURSOR, &[user_id, bookmark.bookmark_id]),
            })
            .collect();
        Ok(pb::ListBookmarksResponse {
            bookmarks,
            page: Some(PageResponse { next_cursor }),
        })
    }

    async fn list_replies(
        &self,
        request: pb::ListRepliesRequest,
    ) -> Result<pb::ListRepliesResponse, TweetError> {
        let tweet_id = require_id("tweet_id", request.tweet_id)?;
        let page = request.page.unwrap_or_default();
        let limit = page_limit(&page)?;
        let after = decode_cursor(REPLIES_CURSOR, &page.cursor, tweet_id)?;
        // One extra reply tells whether another page follows.
        let mut replies = self.store.list_replies(tweet_id, after, limit + 1).await?;
        let next_cursor = if replies.len() > limit {
            replies.truncate(limit);
            replies
                .last()
                .map(|last| cursor::encode(REPLIES_CURSOR, &[tweet_id, last.id]))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let cursors = replies
            .iter()
            .map(|reply| cursor::encode(REPLIES_CURSOR, &[tweet_id, reply.id]))
            .collect();
        Ok(pb::ListRepliesResponse {
            replies: replies.into_iter().map(to_proto).collect(),
            page: Some(PageResponse { next_cursor }),
            cursors,
        })
    }

    async fn ancestors(
        &self,
        request: pb::GetAncestorsRequest,
    ) -> Result<pb::GetAncestorsResponse, TweetError> {
        let tweet_id = require_id("tweet_id", request.tweet_id)?;
        let limit = match request.limit {
            0 => MAX_ANCESTORS,
            limit if limit <= MAX_ANCESTORS => limit,
            _ => {
                return Err(TweetError::invalid(
                    "limit",
                    format!("must be at most {MAX_ANCESTORS}"),
                ));
            }
        };
        let ancestors = self.store.get_ancestors(tweet_id, limit as usize).await?;
        Ok(pb::GetAncestorsResponse {
            ancestors: ancestors.tweets.into_iter().map(to_proto).collect(),
            truncated: ancestors.truncated,
        })
    }

    async fn scan(
        &self,
        request: pb::ScanTweetsRequest,
    ) -> Result<pb::ScanTweetsResponse, TweetError> {
        let page = request.page.unwrap_or_default();
        let limit = match page.limit {
            0 => MAX_SCAN_LIMIT,
            limit if limit <= MAX_SCAN_LIMIT => limit,
            _ => {
                return Err(TweetError::invalid(
                    "page.limit",
                    format!("must be at most {MAX_SCAN_LIMIT}"),
                ));
            }
        };
        let after = match cursor::decode::<2>(SCAN_CURSOR, &page.cursor) {
            Ok(None) => None,
            // The token travels bit for bit in the cursor's u64.
            Ok(Some([token, tweet_id])) => Some(ScanPosition {
                token: token as i64,
                tweet_id,
            }),
            Err(_) => {
                return Err(TweetError::invalid(
                    "page.cursor",
                    "malformed, or issued for another list",
                ));
            }
        };
        let scanned = self.store.scan_tweets(after, limit as usize).await?;
        let next_cursor = scanned
            .next
            .map(|next| cursor::encode(SCAN_CURSOR, &[next.token as u64, next.tweet_id]))
            .unwrap_or_default();
        let (tweets, counts) = scanned
            .tweets
            .into_iter()
            .map(|scanned| {
                let counts = counts_to_proto(scanned.tweet.id, Some(scanned.counts));
                (to_proto(scanned.tweet), counts)
            })
            .unzip();
        Ok(pb::ScanTweetsResponse {
            tweets,
            counts,
            page: Some(PageResponse { next_cursor }),
        })
    }

    async fn author_counts(
        &self,
        request: pb::GetAuthorCountsRequest,
    ) -> Result<pb::GetAuthorCountsResponse, TweetError> {
        let author_ids = request.author_ids;
        if author_ids.len() > MAX_BATCH {
            return Err(TweetError::invalid(
                "author_ids",
                format!("at most {MAX_BATCH} ids per call"),
            ));
        }
        for author_id in &author_ids {
            require_id("author_ids", *author_id)?;
        }
        let counts = self.store.get_author_counts(author_ids.clone()).await?;
        Ok(pb::GetAuthorCountsResponse {
            counts: author_ids
                .into_iter()
                .zip(counts)
                .map(|(author_id, tweets_count)| pb::AuthorCounts {
                    author_id,
                    tweets_count,
                })
                .collect(),
        })
    }
}

/// The position in a cursor of kind `kind` issued for the list of `owner`
/// (`None` for the first page).
fn decode_cursor(kind: u8, encoded: &str, owner: u64) -> Result<Option<u64>, TweetError> {
    match cursor::decode::<2>(kind, encoded) {
        Ok(None) => Ok(None),
        Ok(Some([cursor_owner, position])) if cursor_owner == owner => Ok(Some(position)),
        Ok(Some(_)) | Err(_) => Err(TweetError::invalid(
            "page.cursor",
            "malformed, or issued for another list",
        )),
    }
}

/// Snowflake milliseconds fit an `i64` until the year 292 million.
fn millis(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}

fn require_id(field: &'static str, id: u64) -> Result<u64, TweetError> {
    if id == 0 {
        return Err(TweetError::invalid(field, "must be non-zero"));
    }
    Ok(id)
}

fn check_batch(tweet_ids: &[u64]) -> Result<(), TweetError> {
    if tweet_ids.len() > MAX_BATCH {
        return Err(TweetError::invalid(
            "tweet_ids",
            format!("at most {MAX_BATCH} ids per call"),
        ));
    }
    Ok(())
}

fn page_limit(page: &PageRequest) -> Result<usize, TweetError> {
    match page.limit {
        0 => Ok(DEFAULT_PAGE_LIMIT as usize),
        limit if limit <= MAX_PAGE_LIMIT => Ok(limit as usize),
        _ => Err(TweetError::invalid(
            "page.limit",
            format!("must be at most {MAX_PAGE_LIMIT}"),
        )),
    }
}

/// What CreateTweet answers for `outcome` (and CreateTweets per entry).
fn created_response(outcome: CreateOutcome) -> pb::CreateTweetResponse {
    let (tweet, replayed) = match outcome {
        CreateOutcome::Created(tweet) => (tweet, false),
        CreateOutcome::Replayed(tweet) => (tweet, true),
    };
    pb::CreateTweetResponse {
        tweet: Some(to_proto(tweet)),
        replayed,
    }
}

fn to_proto(tweet: Tweet) -> pb::Tweet {
    pb::Tweet {
        id: tweet.id,
        author_id: tweet.author_id,
        created_at_ms: i64::try_from(tweet.created_at_ms()).unwrap_or(i64::MAX),
        text: tweet.text,
        reply_to_tweet_id: tweet.reply_to_tweet_id,
        quote_of_tweet_id: tweet.quote_of_tweet_id,
        hashtags: tweet.hashtags,
        mentions: tweet.mentions,
        media_ids: tweet.media_ids,
    }
}

#[tonic::async_trait]
impl TweetService for TweetApi {
    #[tracing::instrument(skip_all, fields(author_id = request.get_ref().author_id))]
    async fn create_tweet(
        &self,
        request: Request<pb::CreateTweetRequest>,
    ) -> Result<Response<pb::CreateTweetResponse>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().tweets.len()))]
    async fn create_tweets(
        &self,
        request: Request<pb::CreateTweetsRequest>,
    ) -> Result<Response<pb::CreateTweetsResponse>, Status> {
        let response = self.create_many(request.into_inner().tweets).await?;
        tracing::debug!(count = response.results.len(), "tweets created");
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().tweet_ids.len()))]
    async fn get_tweets(
        &self,
        request: Request<pb::GetTweetsRequest>,
    ) -> Result<Response<pb::GetTweetsResponse>, Status> {
        let request = request.into_inner();
        let tweet_ids = request.tweet_ids;
        check_batch(&tweet_ids)?;
        let viewer = (request.viewer_id != 0).then_some(request.viewer_id);
        let hydrated = self
            .store
            .hydrate_tweets(tweet_ids.clone(), request.include_counts, viewer)
            .await?;
        let results = tweet_ids
            .into_iter()
            .zip(hydrated)
            .map(|(tweet_id, hydrated)| {
                let (status, tweet) = match hydrated.lookup {
                    TweetLookup::Found(tweet) => {
                        (pb::TweetLookupStatus::Found, Some(to_proto(tweet)))
                    }
                    TweetLookup::NotFound => (pb::TweetLookupStatus::NotFound, None),
                    TweetLookup::Deleted => (pb::TweetLookupStatus::Deleted, None),
                };
                pb::TweetLookup {
                    tweet_id,
                    status: status.into(),
                    tweet,
                    counts: hydrated
                        .counts
                        .map(|counts| counts_to_proto(tweet_id, Some(counts))),
                    viewer_state: hydrated
                        .viewer_state
                        .map(|state| viewer_state_to_proto(tweet_id, state)),
                }
            })
            .collect();
        Ok(Response::new(pb::GetTweetsResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(tweet_id = request.get_ref().tweet_id, requester_id = request.get_ref().requester_id))]
    async fn delete_tweet(
        &self,
        request: Request<pb::DeleteTweetRequest>,
    ) -> Result<Response<pb::DeleteTweetResponse>, Status> {
        let request = request.into_inner();
        let tweet_id = require_id("tweet_id", request.tweet_id)?;
        let requester_id = require_id("requester_id", request.requester_id)?;
        let event_id = self.ids.next_id().map_err(TweetError::from)?;
        let deleted = self
            .store
            .delete_tweet(tweet_id, requester_id, event_id)
            .await?;
        Ok(Response::new(pb::DeleteTweetResponse { deleted }))
    }

    #[tracing::instrument(skip_all, fields(author_id = request.get_ref().author_id))]
    async fn list_user_tweets(
        &self,
        request: Request<pb::ListUserTweetsRequest>,
    ) -> Result<Response<pb::ListUserTweetsResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(authors = request.get_ref().author_ids.len()))]
    async fn list_authors_tweets(
        &self,
        request: Request<pb::ListAuthorsTweetsRequest>,
    ) -> Result<Response<pb::ListAuthorsTweetsResponse>, Status> {
        Ok(Response::new(
            self.list_authors(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, tweet_id = request.get_ref().tweet_id))]
    async fn like_tweet(
        &self,
        request: Request<pb::LikeTweetRequest>,
    ) -> Result<Response<pb::LikeTweetResponse>, Status> {
        let request = request.into_inner();
        let change = self
            .engage(Engagement::Like, request.user_id, request.tweet_id, true)
            .await?;
        Ok(Response::new(pb::LikeTweetResponse {
            changed: change.changed,
            like_count: change.count,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, tweet_id = request.get_ref().tweet_id))]
    async fn unlike_tweet(
        &self,
        request: Request<pb::UnlikeTweetRequest>,
    ) -> Result<Response<pb::UnlikeTweetResponse>, Status> {
        let request = request.into_inner();
        let change = self
            .engage(Engagement::Like, request.user_id, request.tweet_id, false)
            .await?;
        Ok(Response::new(pb::UnlikeTweetResponse {
            changed: change.changed,
            like_count: change.count,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, tweet_id = request.get_ref().tweet_id))]
    async fn retweet(
        &self,
        request: Request<pb::RetweetRequest>,
    ) -> Result<Response<pb::RetweetResponse>, Status> {
        let request = request.into_inner();
        let change = self
            .engage(Engagement::Retweet, request.user_id, request.tweet_id, true)
            .await?;
        Ok(Response::new(pb::RetweetResponse {
            changed: change.changed,
            retweet_count: change.count,
            retweet_id: change.retweet_id.unwrap_or(0),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, tweet_id = request.get_ref().tweet_id))]
    async fn undo_retweet(
        &self,
        request: Request<pb::UndoRetweetRequest>,
    ) -> Result<Response<pb::UndoRetweetResponse>, Status> {
        let request = request.into_inner();
        let change = self
            .engage(
                Engagement::Retweet,
                request.user_id,
                request.tweet_id,
                false,
            )
            .await?;
        Ok(Response::new(pb::UndoRetweetResponse {
            changed: change.changed,
            retweet_count: change.count,
        }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().tweet_ids.len()))]
    async fn get_counts(
        &self,
        request: Request<pb::GetCountsRequest>,
    ) -> Result<Response<pb::GetCountsResponse>, Status> {
        let tweet_ids = request.into_inner().tweet_ids;
        check_batch(&tweet_ids)?;
        let counts = self.store.get_counts(tweet_ids.clone()).await?;
        let counts = tweet_ids
            .into_iter()
            .zip(counts)
            .map(|(tweet_id, counts)| counts_to_proto(tweet_id, counts))
            .collect();
        Ok(Response::new(pb::GetCountsResponse { counts }))
    }

    #[tracing::instrument(skip_all, fields(viewer_id = request.get_ref().viewer_id, count = request.get_ref().tweet_ids.len()))]
    async fn get_viewer_state(
        &self,
        request: Request<pb::GetViewerStateRequest>,
    ) -> Result<Response<pb::GetViewerStateResponse>, Status> {
        let request = request.into_inner();
        let viewer_id = require_id("viewer_id", request.viewer_id)?;
        check_batch(&request.tweet_ids)?;
        let states = self
            .store
            .get_viewer_state(viewer_id, request.tweet_ids.clone())
            .await?;
        let states = request
            .tweet_ids
            .into_iter()
            .zip(states)
            .map(|(tweet_id, state)| viewer_state_to_proto(tweet_id, state))
            .collect();
        Ok(Response::new(pb::GetViewerStateResponse { states }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, tweet_id = request.get_ref().tweet_id))]
    async fn bookmark(
        &self,
        request: Request<pb::BookmarkRequest>,
    ) -> Result<Response<pb::BookmarkResponse>, Status> {
        let request = request.into_inner();
        let user_id = require_id("user_id", request.user_id)?;
        let tweet_id = require_id("tweet_id", request.tweet_id)?;
        let bookmark_id = self.ids.next_id().map_err(TweetError::from)?;
        let changed = self.store.bookmark(user_id, tweet_id, bookmark_id).await?;
        Ok(Response::new(pb::BookmarkResponse { changed }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, tweet_id = request.get_ref().tweet_id))]
    async fn unbookmark(
        &self,
        request: Request<pb::UnbookmarkRequest>,
    ) -> Result<Response<pb::UnbookmarkResponse>, Status> {
        let request = request.into_inner();
        let user_id = require_id("user_id", request.user_id)?;
        let tweet_id = require_id("tweet_id", request.tweet_id)?;
        let changed = self.store.unbookmark(user_id, tweet_id).await?;
        Ok(Response::new(pb::UnbookmarkResponse { changed }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn list_bookmarks(
        &self,
        request: Request<pb::ListBookmarksRequest>,
    ) -> Result<Response<pb::ListBookmarksResponse>, Status> {
        Ok(Response::new(
            TweetApi::list_bookmarks(self, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(tweet_id = request.get_ref().tweet_id))]
    async fn list_replies(
        &self,
        request: Request<pb::ListRepliesRequest>,
    ) -> Result<Response<pb::ListRepliesResponse>, Status> {
        Ok(Response::new(
            TweetApi::list_replies(self, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(tweet_id = request.get_ref().tweet_id))]
    async fn get_ancestors(
        &self,
        request: Request<pb::GetAncestorsRequest>,
    ) -> Result<Response<pb::GetAncestorsResponse>, Status> {
        Ok(Response::new(self.ancestors(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().author_ids.len()))]
    async fn get_author_counts(
        &self,
        request: Request<pb::GetAuthorCountsRequest>,
    ) -> Result<Response<pb::GetAuthorCountsResponse>, Status> {
        Ok(Response::new(
            self.author_counts(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(limit = request.get_ref().page.as_ref().map_or(0, |page| page.limit)))]
    async fn scan_tweets(
        &self,
        request: Request<pb::ScanTweetsRequest>,
    ) -> Result<Response<pb::ScanTweetsResponse>, Status> {
        let response = self.scan(request.into_inner()).await?;
        tracing::debug!(count = response.tweets.len(), "tweets scanned");
        Ok(Response::new(response))
    }
}

/// A tweet's counts on the wire; `None` (not live) is `found: false` with zeros.
fn counts_to_proto(tweet_id: u64, counts: Option<TweetCounts>) -> pb::TweetCounts {
    let found = counts.is_some();
    let counts = counts.unwrap_or_default();
    pb::TweetCounts {
        tweet_id,
        found,
        like_count: counts.likes,
        retweet_count: counts.retweets,
        reply_count: counts.replies,
        quote_count: counts.quotes,
    }
}

/// A viewer's engagement with a tweet on the wire.
fn viewer_state_to_proto(tweet_id: u64, state: ViewerState) -> pb::ViewerTweetState {
    pb::ViewerTweetState {
        tweet_id,
        liked: state.liked,
        retweeted: state.retweeted,
        bookmarked: state.bookmarked,
    }
}
