//! The TimelineService gRPC surface: validation, cursors, and the mapping
//! onto [`HomeTimelines`] and tweet-svc.

use std::collections::HashSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use warble_mesh::cursor;
use warble_proto::common::v1::{PageRequest, PageResponse, TimelineEntry};
use warble_proto::limits;
use warble_proto::limits::timeline::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use warble_proto::timeline::v1::timeline_service_server::TimelineService;
use warble_proto::timeline::v1::{
    GetHomeTimelineRequest, GetHomeTimelineResponse, GetUserTimelineRequest,
    GetUserTimelineResponse,
};

use crate::error::TimelineError;
use crate::home::HomeTimelines;
use crate::sources::Sources;

// GetUserTimeline passes its page size on to ListUserTweets.
const _: () = assert!(MAX_PAGE_LIMIT <= limits::tweet::MAX_PAGE_LIMIT);

/// Cursor kind byte for home timelines ('H').
const HOME_CURSOR: u8 = b'H';

/// Serves home and user timelines.
pub struct TimelineApi {
    pub(crate) home: Arc<HomeTimelines>,
    pub(crate) sources: Sources,
}

fn page_limit(page: &Option<PageRequest>) -> Result<u32, TimelineError> {
    match page.as_ref().map_or(0, |page| page.limit) {
        0 => Ok(DEFAULT_PAGE_LIMIT),
        limit if limit <= MAX_PAGE_LIMIT => Ok(limit),
        limit => Err(TimelineError::invalid(
            "page.limit",
            format!("{limit} is above the maximum of {MAX_PAGE_LIMIT}"),
        )),
    }
}

fn require_user(user_id: u64) -> Result<u64, TimelineError> {
    if user_id == 0 {
        return Err(TimelineError::invalid(
            "user_id",
            "must be a non-zero user id",
        ));
    }
    Ok(user_id)
}

#[tonic::async_trait]
impl TimelineService for TimelineApi {
    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn get_home_timeline(
        &self,
        request: Request<GetHomeTimelineRequest>,
    ) -> Result<Response<GetHomeTimelineResponse>, Status> {
        let request = request.into_inner();
        let user = require_user(request.user_id)?;
        let limit = page_limit(&request.page)?;
        let cursor_text = request
            .page
            .as_ref()
            .map_or("", |page| page.cursor.as_str());
        // The cursor names its timeline's owner so it cannot be replayed on another user's.
        let before = match cursor::decode::<2>(HOME_CURSOR, cursor_text) {
            Ok(None) => None,
            Ok(Some([owner, tweet_id])) if owner == user => Some(tweet_id),
            _ => {
                return Err(TimelineError::invalid(
                    "page.cursor",
                    "malformed or belongs to another timeline",
                )
                .into());
            }
        };
        let page = self.home.page(user, before, limit as usize).await?;
        let next_cursor = page.next.map_or_else(String::new, |position| {
            cursor::encode(HOME_CURSOR, &[user, position])
        });
        Ok(Response::new(GetHomeTimelineResponse {
            entries: page
                .entries
                .into_iter()
                .map(|entry| TimelineEntry {
                    tweet_id: entry.tweet_id,
                    author_id: entry.author_id,
                    cursor: cursor::encode(HOME_CURSOR, &[user, entry.position()]),
                    retweeted_by: entry.retweeted_by,
                    retweet_id: entry.retweet_id,
                })
                .collect(),
            page: Some(PageResponse { next_cursor }),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn get_user_timeline(
        &self,
        request: Request<GetUserTimelineRequest>,
    ) -> Result<Response<GetUserTimelineResponse>, Status> {
        let request = request.into_inner();
        let user = require_user(request.user_id)?;
        let viewer = request.viewer_id;
        let limit = page_limit(&request.page)?;
        let cursor = request.page.map(|page| page.cursor).unwrap_or_default();
        let response = self
            .sources
            .user_tweets(user, PageRequest { cursor, limit })
            .await
            .map_err(|error| match error {
                // tweet-svc names its own request fields; ours are the same shape.
                TimelineError::Downstream { status, .. }
                    if status.code() == tonic::Code::InvalidArgument =>
                {
                    TimelineError::invalid(
                        "page.cursor",
                        "malformed or belongs to another timeline",
                    )
                }
                other => other,
            })?;
        let mut retweet_ids = response.retweet_ids.into_iter();
        let entries: Vec<TimelineEntry> = response
            .tweets
            .into_iter()
            .zip(response.cursors)
            .map(|(tweet, cursor)| {
                let retweet_id = retweet_ids.next().unwrap_or(0);
                TimelineEntry {
                    tweet_id: tweet.id,
                    author_id: tweet.author_id,
                    cursor,
                    retweeted_by: if retweet_id == 0 { 0 } else { user },
                    retweet_id,
                }
            })
            .collect();
        let (entries, page) = self
            .without_blocked(viewer, user, entries, response.page)
            .await?;
        Ok(Response::new(GetUserTimelineResponse { entries, page }))
    }
}

impl TimelineApi {
    /// A user timeline page as `viewer` may see it: nothing at all when the
    /// viewer and the timeline's owner block each other (either way), and
    /// no retweet of someone the viewer blocks or is blocked by. Mutes do
    /// not apply: the viewer chose to open the profile. One relations call.
    async fn without_blocked(
        &self,
        viewer: u64,
        owner: u64,
        entries: Vec<TimelineEntry>,
        page: Option<PageResponse>,
    ) -> Result<(Vec<TimelineEntry>, Option<PageResponse>), TimelineError> {
        if viewer == 0 || entries.is_empty() {
            return Ok((entries, page));
        }
        let mut others: Vec<u64> = entries.iter().map(|entry| entry.author_id).collect();
        others.push(owner);
        others.sort_unstable();
        others.dedup();
        others.retain(|&other| other != viewer);
        if others.is_empty() {
            return Ok((entries, page));
        }
        let relations = self.sources.relations(viewer, &others).await?;
        let blocked: HashSet<u64> = others
            .iter()
            .zip(relations)
            .filter(|(_, relation)| relation.viewer_blocks || relation.blocks_viewer)
            .map(|(user, _)| *user)
            .collect();
        if blocked.contains(&owner) {
            return Ok((Vec::new(), Some(PageResponse::default())));
        }
        let entries = entries
            .into_iter()
            .filter(|entry| !blocked.contains(&entry.author_id))
            .collect();
        Ok((entries, page))
    }
}
