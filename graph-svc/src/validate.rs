//! Request validation: the contract's rules, each failing with
//! INVALID_ARGUMENT naming the offending field. The numbers are the
//! contract's ([`warble_proto::limits::graph`]). The write-batch size is
//! checked by the store layer (`store::check_write_batch`), which every
//! store enforces too.

use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1::CreateUserRequest;
use warble_proto::limits::graph::{
    DEFAULT_PAGE_LIMIT, MAX_BATCH, MAX_BIO_CHARS, MAX_DISPLAY_NAME_CHARS, MAX_PAGE_LIMIT,
    MAX_USERNAME_CHARS,
};

use crate::error::GraphError;
use crate::store::{EdgePosition, NewUser, PageQuery};

/// 1 to [`MAX_USERNAME_CHARS`] of `[A-Za-z0-9_]`. ASCII only, so case
/// folding is unambiguous.
pub fn username(field: &str, value: &str) -> Result<(), GraphError> {
    if value.is_empty() || value.len() > MAX_USERNAME_CHARS {
        return Err(GraphError::invalid(
            field,
            format!("must be 1 to {MAX_USERNAME_CHARS} characters"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(GraphError::invalid(
            field,
            "may only contain letters, digits and underscores",
        ));
    }
    Ok(())
}

/// Returns the display name trimmed: 1 to [`MAX_DISPLAY_NAME_CHARS`]
/// characters, not only whitespace.
pub fn display_name(value: &str) -> Result<String, GraphError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(GraphError::invalid(
            "display_name",
            "must not be empty or only whitespace",
        ));
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(GraphError::invalid(
            "display_name",
            format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// At most [`MAX_BIO_CHARS`] characters; may be empty.
pub fn bio(value: &str) -> Result<(), GraphError> {
    if value.chars().count() > MAX_BIO_CHARS {
        return Err(GraphError::invalid(
            "bio",
            format!("must be at most {MAX_BIO_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A user to create, checked field by field, the display name trimmed.
pub fn new_user(request: CreateUserRequest) -> Result<NewUser, GraphError> {
    username("username", &request.username)?;
    let display_name = display_name(&request.display_name)?;
    bio(&request.bio)?;
    Ok(NewUser {
        username: request.username,
        display_name,
        bio: request.bio,
    })
}

/// Ids are Snowflakes, never 0; a 0 is an unset field.
pub fn user_id(field: &str, id: u64) -> Result<u64, GraphError> {
    if id == 0 {
        return Err(GraphError::invalid(field, "must be a user id, not 0"));
    }
    Ok(id)
}

/// A batch of at most [`MAX_BATCH`] non-zero ids; a zero is named by index (`user_ids[3]`).
pub fn user_ids(field: &str, ids: &[u64]) -> Result<(), GraphError> {
    batch_size(field, ids.len())?;
    for (index, id) in ids.iter().enumerate() {
        user_id(&format!("{field}[{index}]"), *id)?;
    }
    Ok(())
}

/// At most [`MAX_BATCH`] entries.
pub fn batch_size(field: &str, len: usize) -> Result<(), GraphError> {
    crate::store::check_batch_len(field, len, MAX_BATCH)
}

/// Both ids set and different. A user cannot follow (or unfollow) themself.
pub fn follow_pair(follower: u64, followee: u64) -> Result<(), GraphError> {
    user_id("follower_id", follower)?;
    user_id("followee_id", followee)?;
    if follower == followee {
        return Err(GraphError::invalid(
            "followee_id",
            "must differ from follower_id",
        ));
    }
    Ok(())
}

/// Which follow list a cursor belongs to: its kind byte, so a cursor from
/// one list is rejected by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FollowList {
    /// A user's followers.
    Followers = 0x47,
    /// Whom a user follows.
    Following = 0x48,
}

/// Turns a page request into a store query. Cursors carry the list owner,
/// so one issued for another user's list is rejected rather than silently
/// paging the wrong list.
pub fn page(
    request: Option<&PageRequest>,
    list: FollowList,
    owner: u64,
) -> Result<PageQuery, GraphError> {
    let default = PageRequest::default();
    let request = request.unwrap_or(&default);
    let limit = match request.limit {
        0 => DEFAULT_PAGE_LIMIT as usize,
        limit if limit > MAX_PAGE_LIMIT => {
            return Err(GraphError::invalid(
                "page.limit",
                format!("must be at most {MAX_PAGE_LIMIT}"),
            ));
        }
        limit => limit as usize,
    };
    let invalid_cursor = || GraphError::invalid("page.cursor", "malformed or from another list");
    let after = match warble_mesh::cursor::decode::<3>(list as u8, &request.cursor) {
        Ok(None) => None,
        Ok(Some([cursor_owner, follow_seq, user_id])) if cursor_owner == owner => {
            Some(EdgePosition {
                follow_seq,
                user_id,
            })
        }
        Ok(Some(_)) | Err(_) => return Err(invalid_cursor()),
    };
    Ok(PageQuery { after, limit })
}

/// The cursor for the page after `next`; empty when there is none.
pub fn next_cursor(list: FollowList, owner: u64, next: Option<EdgePosition>) -> String {
    next.map(|position| {
        warble_mesh::cursor::encode(list as u8, &[owner, position.follow_seq, position.user_id])
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: GraphError) -> String {
        match error {
            GraphError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn usernames() {
        assert!(username("username", "a").is_ok());
        assert!(username("username", "Abc_123456789_x").is_ok());
        for bad in [
            "",
            "abcdefghijklmnop",
            "has space",
            "dash-ed",
            "émile",
            "a.b",
        ] {
            assert_eq!(field_of(username("username", bad).unwrap_err()), "username");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_counted_in_characters() {
        assert_eq!(display_name("  Ada  ").unwrap(), "Ada");
        assert!(display_name(&"é".repeat(50)).is_ok());
        assert!(display_name(&"é".repeat(51)).is_err());
        assert!(display_name(" \t\n ").is_err());
        assert!(bio(&"ü".repeat(160)).is_ok());
        assert!(bio(&"ü".repeat(161)).is_err());
    }

    #[test]
    fn pages() {
        let query = page(None, FollowList::Followers, 9).unwrap();
        assert_eq!(
            (query.after, query.limit),
            (None, DEFAULT_PAGE_LIMIT as usize)
        );
        let position = EdgePosition {
            follow_seq: 5,
            user_id: 6,
        };
        let cursor = next_cursor(FollowList::Followers, 9, Some(position));
        let request = PageRequest {
            cursor: cursor.clone(),
            limit: 5000,
        };
        let query = page(Some(&request), FollowList::Followers, 9).unwrap();
        assert_eq!((query.after, query.limit), (Some(position), 5000));
        // Another list or another owner rejects the cursor.
        assert!(page(Some(&request), FollowList::Following, 9).is_err());
        assert!(page(Some(&request), FollowList::Followers, 10).is_err());
        let too_big = PageRequest {
            cursor: String::new(),
            limit: 5001,
        };
        assert_eq!(
            field_of(page(Some(&too_big), FollowList::Followers, 9).unwrap_err()),
            "page.limit"
        );
        assert_eq!(next_cursor(FollowList::Followers, 9, None), "");
    }
}
