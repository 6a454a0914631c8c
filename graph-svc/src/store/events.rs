//! The events of profiles, blocks and mutes, built the same way by every
//! store, and the key each is published under.
//!
//! Keys: a user's own events (`UserCreated`, `ProfileUpdated`) are keyed by
//! the user. Block and mute events are keyed by the blocked or muted user,
//! as a follow's events are keyed by the followee: the user whose tweets
//! the change hides, so consumers apply it in order with that user's tweets
//! and with the `Unfollowed` a block publishes for the blocker's follow.
//! (Follow events are built inline by each store, next to the counts they
//! carry.)

use warble_mesh::snowflake;
use warble_proto::events::v1::{
    Blocked, Event, Muted, ProfileUpdated, Unblocked, Unmuted, UserCreated, event::Payload,
};

use super::{User, stored_expiry};

/// The Unix milliseconds a Snowflake id encodes.
pub(crate) fn ms_of(id: u64) -> i64 {
    i64::try_from(snowflake::decode(id).unix_ms).unwrap_or(i64::MAX)
}

fn event(event_id: u64, occurred_at_ms: i64, payload: Payload) -> Event {
    Event {
        event_id,
        occurred_at_ms,
        trace_context: Default::default(),
        payload: Some(payload),
    }
}

/// `UserCreated` for `user`, happening at its creation time; keyed by the user.
pub(crate) fn user_created(event_id: u64, user: &User) -> Event {
    event(
        event_id,
        user.created_at_ms,
        Payload::UserCreated(UserCreated {
            user_id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            bio: user.bio.clone(),
            created_at_ms: user.created_at_ms,
        }),
    )
}

/// `ProfileUpdated` carrying `user` as it is after the change, which
/// happens at `event_id`'s time; keyed by the user.
pub(crate) fn profile_updated(event_id: u64, user: &User) -> Event {
    let at = ms_of(event_id);
    event(
        event_id,
        at,
        Payload::ProfileUpdated(ProfileUpdated {
            user_id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            bio: user.bio.clone(),
            location: user.location.clone(),
            website: user.website.clone(),
            verified: user.verified,
            updated_at_ms: at,
            avatar_media_id: user.avatar_media_id,
        }),
    )
}

/// `Blocked`, happening at `seq`'s time (the block's own seq, so the event
/// and the listed block agree); keyed by `blocked_id`.
pub(crate) fn blocked(event_id: u64, blocker_id: u64, blocked_id: u64, seq: u64) -> Event {
    let at = ms_of(seq);
    event(
        event_id,
        at,
        Payload::Blocked(Blocked {
            blocker_id,
            blocked_id,
            blocked_at_ms: at,
        }),
    )
}

/// `Unblocked`, happening at `event_id`'s time; keyed by `blocked_id`.
pub(crate) fn unblocked(event_id: u64, blocker_id: u64, blocked_id: u64) -> Event {
    let at = ms_of(event_id);
    event(
        event_id,
        at,
        Payload::Unblocked(Unblocked {
            blocker_id,
            blocked_id,
            unblocked_at_ms: at,
        }),
    )
}

/// `Muted`, happening at `at_ms` (a new mute's seq time, or the event's
/// time for a changed one); keyed by `muted_id`.
pub(crate) fn muted(
    event_id: u64,
    (muter_id, muted_id): (u64, u64),
    at_ms: i64,
    expires_at_ms: Option<i64>,
    hide_notifications: bool,
) -> Event {
    event(
        event_id,
        at_ms,
        Payload::Muted(Muted {
            muter_id,
            muted_id,
            muted_at_ms: at_ms,
            expires_at_ms: stored_expiry(expires_at_ms),
            hide_notifications,
        }),
    )
}

/// `Unmuted`, happening at `event_id`'s time; keyed by `muted_id`.
pub(crate) fn unmuted(event_id: u64, muter_id: u64, muted_id: u64) -> Event {
    let at = ms_of(event_id);
    event(
        event_id,
        at,
        Payload::Unmuted(Unmuted {
            muter_id,
            muted_id,
            unmuted_at_ms: at,
        }),
    )
}
