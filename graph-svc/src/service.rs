//! The `warble.graph.v1.GraphService` gRPC handlers: validate, call the
//! store, map domain types to messages.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use warble_proto::common::v1::PageResponse;
use warble_proto::graph::v1 as pb;
use warble_proto::graph::v1::graph_service_server::GraphService;

use crate::error::GraphError;
use crate::store::{FollowPage, GraphStore, User, check_write_batch};
use crate::validate::{self, FollowList};

/// The gRPC face of the graph service. Cheap to clone.
#[derive(Clone)]
pub struct GraphApi {
    store: Arc<dyn GraphStore>,
}

impl std::fmt::Debug for GraphApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphApi").finish_non_exhaustive()
    }
}

impl GraphApi {
    /// Handlers over `store`.
    pub fn new(store: Arc<dyn GraphStore>) -> Self {
        Self { store }
    }
}

impl From<User> for pb::User {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            bio: user.bio,
            created_at_ms: user.created_at_ms,
        }
    }
}

fn edges_and_page(
    page: FollowPage,
    list: FollowList,
    owner: u64,
) -> (Vec<pb::FollowEdge>, Option<PageResponse>) {
    let edges = page
        .edges
        .into_iter()
        .map(|edge| pb::FollowEdge {
            user_id: edge.user_id,
            followed_at_ms: edge.followed_at_ms,
            cursor: validate::next_cursor(list, owner, Some(edge.position)),
        })
        .collect();
    let next_cursor = validate::next_cursor(list, owner, page.next);
    (edges, Some(PageResponse { next_cursor }))
}

#[tonic::async_trait]
impl GraphService for GraphApi {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let user = validate::new_user(request.into_inner())?;
        let user = self.store.create_user(user).await?;
        tracing::info!(user_id = user.id, "user created");
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().users.len()))]
    async fn create_users(
        &self,
        request: Request<pb::CreateUsersRequest>,
    ) -> Result<Response<pb::CreateUsersResponse>, Status> {
        let requested = request.into_inner().users;
        // The size first, so an oversized batch costs no per-entry work.
        check_write_batch("users", requested.len())?;
        let users = requested
            .into_iter()
            .enumerate()
            .map(|(index, user)| {
                validate::new_user(user).map_err(|error| error.in_batch("users", index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let users = self.store.create_users(users).await?;
        tracing::info!(count = users.len(), "users created");
        Ok(Response::new(pb::CreateUsersResponse {
            users: users.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().user_ids.len()))]
    async fn get_users(
        &self,
        request: Request<pb::GetUsersRequest>,
    ) -> Result<Response<pb::GetUsersResponse>, Status> {
        let ids = request.into_inner().user_ids;
        validate::user_ids("user_ids", &ids)?;
        let users = self.store.get_users(&ids).await?;
        let results = ids
            .into_iter()
            .zip(users)
            .map(|(user_id, user)| pb::UserLookup {
                user_id,
                user: user.map(Into::into),
            })
            .collect();
        Ok(Response::new(pb::GetUsersResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn get_user_by_username(
        &self,
        request: Request<pb::GetUserByUsernameRequest>,
    ) -> Result<Response<pb::GetUserByUsernameResponse>, Status> {
        let username = request.into_inner().username;
        validate::username("username", &username)?;
        let user = self
            .store
            .get_user_by_username(&username)
            .await?
            .ok_or_else(|| GraphError::NotFound(format!("no user named `{username}`")))?;
        Ok(Response::new(pb::GetUserByUsernameResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(follower_id = request.get_ref().follower_id, followee_id = request.get_ref().followee_id))]
    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<pb::FollowResponse>, Status> {
        let request = request.into_inner();
        validate::follow_pair(request.follower_id, request.followee_id)?;
        let change = self
            .store
            .follow(request.follower_id, request.followee_id)
            .await?;
        Ok(Response::new(pb::FollowResponse {
            changed: change.changed,
            followee_followers_count: change.followee_followers,
        }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().pairs.len()))]
    async fn follow_many(
        &self,
        request: Request<pb::FollowManyRequest>,
    ) -> Result<Response<pb::FollowManyResponse>, Status> {
        let requested = request.into_inner().pairs;
        check_write_batch("pairs", requested.len())?;
        let pairs = requested
            .iter()
            .enumerate()
            .map(|(index, pair)| {
                validate::follow_pair(pair.follower_id, pair.followee_id)
                    .map(|()| (pair.follower_id, pair.followee_id))
                    .map_err(|error| error.in_batch("pairs", index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let changes = self.store.follow_many(&pairs).await?;
        let results = changes
            .into_iter()
            .map(|change| pb::FollowOutcome {
                changed: change.changed,
                followee_followers_count: change.followee_followers,
            })
            .collect();
        Ok(Response::new(pb::FollowManyResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(follower_id = request.get_ref().follower_id, followee_id = request.get_ref().followee_id))]
    async fn unfollow(
        &self,
        request: Request<pb::UnfollowRequest>,
    ) -> Result<Response<pb::UnfollowResponse>, Status> {
        let request = request.into_inner();
        validate::follow_pair(request.follower_id, request.followee_id)?;
        let change = self
            .store
            .unfollow(request.follower_id, request.followee_id)
            .await?;
        Ok(Response::new(pb::UnfollowResponse {
            changed: change.changed,
            followee_followers_count: change.followee_followers,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn list_followers(
        &self,
        request: Request<pb::ListFollowersRequest>,
    ) -> Result<Response<pb::ListFollowersResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let query = validate::page(request.page.as_ref(), FollowList::Followers, user)?;
        let page = self.store.list_followers(user, query).await?;
        let (followers, page) = edges_and_page(page, FollowList::Followers, user);
        Ok(Response::new(pb::ListFollowersResponse { followers, page }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, min_followers = request.get_ref().min_followers))]
    async fn list_following(
        &self,
        request: Request<pb::ListFollowingRequest>,
    ) -> Result<Response<pb::ListFollowingResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let query = validate::page(request.page.as_ref(), FollowList::Following, user)?;
        let page = self
            .store
            .list_following(user, query, request.min_followers)
            .await?;
        let (following, page) = edges_and_page(page, FollowList::Following, user);
        Ok(Response::new(pb::ListFollowingResponse { following, page }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().user_ids.len()))]
    async fn get_follow_counts(
        &self,
        request: Request<pb::GetFollowCountsRequest>,
    ) -> Result<Response<pb::GetFollowCountsResponse>, Status> {
        let ids = request.into_inner().user_ids;
        validate::user_ids("user_ids", &ids)?;
        let counts = self.store.follow_counts(&ids).await?;
        let counts = ids
            .into_iter()
            .zip(counts)
            .map(|(user_id, counts)| pb::FollowCounts {
                user_id,
                found: counts.is_some(),
                followers_count: counts.map_or(0, |c| c.followers),
                following_count: counts.map_or(0, |c| c.following),
            })
            .collect();
        Ok(Response::new(pb::GetFollowCountsResponse { counts }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().pairs.len()))]
    async fn is_following(
        &self,
        request: Request<pb::IsFollowingRequest>,
    ) -> Result<Response<pb::IsFollowingResponse>, Status> {
        let request = request.into_inner();
        validate::batch_size("pairs", request.pairs.len())?;
        let mut pairs = Vec::with_capacity(request.pairs.len());
        for (index, pair) in request.pairs.iter().enumerate() {
            let follower =
                validate::user_id(&format!("pairs[{index}].follower_id"), pair.follower_id)?;
            let followee =
                validate::user_id(&format!("pairs[{index}].followee_id"), pair.followee_id)?;
            pairs.push((follower, followee));
        }
        let following = self.store.is_following(&pairs).await?;
        Ok(Response::new(pb::IsFollowingResponse { following }))
    }
}
