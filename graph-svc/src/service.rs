//! The `warble.graph.v1.GraphService` gRPC handlers: validate, call the
//! store, map domain types to messages.
//!
//! The handlers read the clock (for mute expiry), not the stores: a store
//! judges mutes against the `now_ms` it is given.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use warble_proto::common::v1::PageResponse;
use warble_proto::graph::v1 as pb;
use warble_proto::graph::v1::graph_service_server::GraphService;

use crate::error::GraphError;
use crate::store::{
    FollowPage, GraphStore, ProfileChange, RelationPage, User, check_write_batch, stored_expiry,
};
use crate::validate::{self, UserList};

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
            location: user.location,
            website: user.website,
            verified: user.verified,
            avatar_media_id: user.avatar_media_id,
        }
    }
}

/// Now, in Unix milliseconds, as the service judges mutes.
fn now_ms() -> i64 {
    i64::try_from(warble_mesh::time::now_ms()).unwrap_or(i64::MAX)
}

fn relation_edges_and_page(
    page: RelationPage,
    list: UserList,
    owner: u64,
) -> (Vec<pb::RelationEdge>, Option<PageResponse>) {
    let edges = page
        .edges
        .into_iter()
        .map(|edge| pb::RelationEdge {
            user_id: edge.user_id,
            since_ms: edge.since_ms,
            expires_at_ms: stored_expiry(edge.expires_at_ms),
            hide_notifications: edge.hide_notifications,
            cursor: validate::next_cursor(list, owner, Some(edge.position)),
        })
        .collect();
    let next_cursor = validate::next_cursor(list, owner, page.next);
    (edges, Some(PageResponse { next_cursor }))
}

fn edges_and_page(
    page: FollowPage,
    list: UserList,
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

    // The subject is left out of the span: some providers use an email
    // address as the subject.
    #[tracing::instrument(skip_all, fields(issuer = %request.get_ref().issuer, username = %request.get_ref().username))]
    async fn register_user(
        &self,
        request: Request<pb::RegisterUserRequest>,
    ) -> Result<Response<pb::RegisterUserResponse>, Status> {
        let (identity, user) = validate::registration(request.into_inner())?;
        let registration = self.store.register_user(identity, user).await?;
        if registration.created {
            tracing::info!(user_id = registration.user.id, "user registered");
        }
        Ok(Response::new(pb::RegisterUserResponse {
            created: registration.created,
            user: Some(registration.user.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(issuer = %request.get_ref().issuer))]
    async fn resolve_identity(
        &self,
        request: Request<pb::ResolveIdentityRequest>,
    ) -> Result<Response<pb::ResolveIdentityResponse>, Status> {
        let identity = validate::identity_lookup(request.into_inner())?;
        let user_id = self
            .store
            .resolve_identity(&identity)
            .await?
            .ok_or_else(|| GraphError::NotFound("this identity has not registered".into()))?;
        Ok(Response::new(pb::ResolveIdentityResponse { user_id }))
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
        let query = validate::page(request.page.as_ref(), UserList::Followers, user)?;
        let page = self.store.list_followers(user, query).await?;
        let (followers, page) = edges_and_page(page, UserList::Followers, user);
        Ok(Response::new(pb::ListFollowersResponse { followers, page }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, min_followers = request.get_ref().min_followers))]
    async fn list_following(
        &self,
        request: Request<pb::ListFollowingRequest>,
    ) -> Result<Response<pb::ListFollowingResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let query = validate::page(request.page.as_ref(), UserList::Following, user)?;
        let page = self
            .store
            .list_following(user, query, request.min_followers)
            .await?;
        let (following, page) = edges_and_page(page, UserList::Following, user);
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

    #[tracing::instrument(skip_all, fields(count = request.get_ref().usernames.len()))]
    async fn get_users_by_usernames(
        &self,
        request: Request<pb::GetUsersByUsernamesRequest>,
    ) -> Result<Response<pb::GetUsersByUsernamesResponse>, Status> {
        let usernames = request.into_inner().usernames;
        validate::batch_size("usernames", usernames.len())?;
        // Names come from tweet text: a malformed one is simply no user,
        // and is not sent to the store.
        let wellformed: Vec<String> = usernames
            .iter()
            .filter(|name| validate::username("usernames", name).is_ok())
            .cloned()
            .collect();
        let mut found = self
            .store
            .get_users_by_usernames(&wellformed)
            .await?
            .into_iter();
        let results = usernames
            .into_iter()
            .map(|username| {
                let user = if validate::username("usernames", &username).is_ok() {
                    found.next().flatten()
                } else {
                    None
                };
                pb::UsernameLookup {
                    username,
                    user: user.map(Into::into),
                }
            })
            .collect();
        Ok(Response::new(pb::GetUsersByUsernamesResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let update = validate::profile_update(&request)?;
        let ProfileChange { user, changed } = self.store.update_profile(user, update).await?;
        if changed {
            tracing::info!(user_id = user.id, "profile updated");
        }
        Ok(Response::new(pb::UpdateProfileResponse {
            user: Some(user.into()),
            changed,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id, verified = request.get_ref().verified))]
    async fn set_verified(
        &self,
        request: Request<pb::SetVerifiedRequest>,
    ) -> Result<Response<pb::SetVerifiedResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let ProfileChange { user, changed } =
            self.store.set_verified(user, request.verified).await?;
        if changed {
            tracing::info!(
                user_id = user.id,
                verified = user.verified,
                "verified mark set"
            );
        }
        Ok(Response::new(pb::SetVerifiedResponse {
            user: Some(user.into()),
            changed,
        }))
    }

    #[tracing::instrument(skip_all, fields(blocker_id = request.get_ref().blocker_id, blocked_id = request.get_ref().blocked_id))]
    async fn block(
        &self,
        request: Request<pb::BlockRequest>,
    ) -> Result<Response<pb::BlockResponse>, Status> {
        let request = request.into_inner();
        validate::user_pair(
            ("blocker_id", request.blocker_id),
            ("blocked_id", request.blocked_id),
        )?;
        let changed = self
            .store
            .block(request.blocker_id, request.blocked_id)
            .await?;
        Ok(Response::new(pb::BlockResponse { changed }))
    }

    #[tracing::instrument(skip_all, fields(blocker_id = request.get_ref().blocker_id, blocked_id = request.get_ref().blocked_id))]
    async fn unblock(
        &self,
        request: Request<pb::UnblockRequest>,
    ) -> Result<Response<pb::UnblockResponse>, Status> {
        let request = request.into_inner();
        validate::user_pair(
            ("blocker_id", request.blocker_id),
            ("blocked_id", request.blocked_id),
        )?;
        let changed = self
            .store
            .unblock(request.blocker_id, request.blocked_id)
            .await?;
        Ok(Response::new(pb::UnblockResponse { changed }))
    }

    #[tracing::instrument(skip_all, fields(muter_id = request.get_ref().muter_id, muted_id = request.get_ref().muted_id))]
    async fn mute(
        &self,
        request: Request<pb::MuteRequest>,
    ) -> Result<Response<pb::MuteResponse>, Status> {
        let request = request.into_inner();
        validate::user_pair(
            ("muter_id", request.muter_id),
            ("muted_id", request.muted_id),
        )?;
        let duration = validate::mute_duration(request.duration_secs)?;
        let now = now_ms();
        // At most a year of milliseconds (validated): no overflow.
        let expires_at_ms = duration.map(|secs| now.saturating_add(secs as i64 * 1000));
        let change = self
            .store
            .mute(
                request.muter_id,
                request.muted_id,
                expires_at_ms,
                request.hide_notifications,
                now,
            )
            .await?;
        Ok(Response::new(pb::MuteResponse {
            changed: change.changed,
            expires_at_ms: stored_expiry(change.expires_at_ms),
        }))
    }

    #[tracing::instrument(skip_all, fields(muter_id = request.get_ref().muter_id, muted_id = request.get_ref().muted_id))]
    async fn unmute(
        &self,
        request: Request<pb::UnmuteRequest>,
    ) -> Result<Response<pb::UnmuteResponse>, Status> {
        let request = request.into_inner();
        validate::user_pair(
            ("muter_id", request.muter_id),
            ("muted_id", request.muted_id),
        )?;
        let changed = self
            .store
            .unmute(request.muter_id, request.muted_id, now_ms())
            .await?;
        Ok(Response::new(pb::UnmuteResponse { changed }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn list_blocked(
        &self,
        request: Request<pb::ListBlockedRequest>,
    ) -> Result<Response<pb::ListBlockedResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let query = validate::page(request.page.as_ref(), UserList::Blocked, user)?;
        let page = self.store.list_blocked(user, query).await?;
        let (blocked, page) = relation_edges_and_page(page, UserList::Blocked, user);
        Ok(Response::new(pb::ListBlockedResponse { blocked, page }))
    }

    #[tracing::instrument(skip_all, fields(user_id = request.get_ref().user_id))]
    async fn list_muted(
        &self,
        request: Request<pb::ListMutedRequest>,
    ) -> Result<Response<pb::ListMutedResponse>, Status> {
        let request = request.into_inner();
        let user = validate::user_id("user_id", request.user_id)?;
        let query = validate::page(request.page.as_ref(), UserList::Muted, user)?;
        let page = self.store.list_muted(user, query, now_ms()).await?;
        let (muted, page) = relation_edges_and_page(page, UserList::Muted, user);
        Ok(Response::new(pb::ListMutedResponse { muted, page }))
    }

    #[tracing::instrument(skip_all, fields(viewer_id = request.get_ref().viewer_id, count = request.get_ref().user_ids.len()))]
    async fn get_relations(
        &self,
        request: Request<pb::GetRelationsRequest>,
    ) -> Result<Response<pb::GetRelationsResponse>, Status> {
        let request = request.into_inner();
        validate::user_ids("user_ids", &request.user_ids)?;
        let relations = self
            .store
            .relations(request.viewer_id, &request.user_ids, now_ms())
            .await?;
        let relations = request
            .user_ids
            .into_iter()
            .zip(relations)
            .map(|(user_id, relation)| pb::Relation {
                user_id,
                viewer_blocks: relation.viewer_blocks,
                blocks_viewer: relation.blocks_viewer,
                viewer_mutes: relation.viewer_mutes,
                mute_hides_notifications: relation.mute_hides_notifications,
                mute_expires_at_ms: stored_expiry(relation.mute_expires_at_ms),
            })
            .collect();
        Ok(Response::new(pb::GetRelationsResponse { relations }))
    }

    #[tracing::instrument(skip_all, fields(limit = request.get_ref().page.as_ref().map_or(0, |page| page.limit)))]
    async fn scan_users(
        &self,
        request: Request<pb::ScanUsersRequest>,
    ) -> Result<Response<pb::ScanUsersResponse>, Status> {
        let request = request.into_inner();
        let query = validate::scan(request.page.as_ref())?;
        let scanned = self.store.scan_users(query.after, query.limit).await?;
        let next_cursor = validate::scan_cursor(scanned.next);
        let (users, followers_counts): (Vec<pb::User>, Vec<u64>) = scanned
            .users
            .into_iter()
            .map(|scanned| (scanned.user.into(), scanned.counts.followers))
            .unzip();
        tracing::debug!(count = users.len(), "users scanned");
        Ok(Response::new(pb::ScanUsersResponse {
            users,
            followers_counts,
            page: Some(PageResponse { next_cursor }),
        }))
    }
}
