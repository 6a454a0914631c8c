//! Request validation: the contract's rules, each failing with
//! INVALID_ARGUMENT naming the offending field. The numbers are the
//! contract's ([`warble_proto::limits::graph`]). The write-batch size is
//! checked by the store layer (`store::check_write_batch`), which every
//! store enforces too.

use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1::{
    CreateUserRequest, RegisterUserRequest, ResolveIdentityRequest, UpdateProfileRequest,
};
use warble_proto::limits::graph::{
    DEFAULT_PAGE_LIMIT, MAX_BATCH, MAX_BIO_CHARS, MAX_DISPLAY_NAME_CHARS, MAX_ISSUER_BYTES,
    MAX_LOCATION_CHARS, MAX_MUTE_DURATION_SECS, MAX_PAGE_LIMIT, MAX_SCAN_LIMIT, MAX_SUBJECT_BYTES,
    MAX_USERNAME_CHARS, MAX_WEBSITE_CHARS,
};

use crate::error::GraphError;
use crate::store::{EdgePosition, Identity, NewUser, PageQuery, ProfileUpdate};

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

/// An identity: issuer and subject each 1 to [`MAX_ISSUER_BYTES`] /
/// [`MAX_SUBJECT_BYTES`] bytes, kept exactly as sent (providers compare
/// them byte for byte, and so does the binding).
pub fn identity(issuer: String, subject: String) -> Result<Identity, GraphError> {
    for (field, value, max) in [
        ("issuer", &issuer, MAX_ISSUER_BYTES),
        ("subject", &subject, MAX_SUBJECT_BYTES),
    ] {
        if value.is_empty() || value.len() > max {
            return Err(GraphError::invalid(
                field,
                format!("must be 1 to {max} bytes"),
            ));
        }
    }
    Ok(Identity { issuer, subject })
}

/// A registration: the identity, and the user to create with the sign-up
/// rules of [`new_user`] (no bio: a registering user has none yet).
pub fn registration(request: RegisterUserRequest) -> Result<(Identity, NewUser), GraphError> {
    let identity = identity(request.issuer, request.subject)?;
    username("username", &request.username)?;
    let display_name = display_name(&request.display_name)?;
    Ok((
        identity,
        NewUser {
            username: request.username,
            display_name,
            bio: String::new(),
        },
    ))
}

/// The identity a ResolveIdentity request names.
pub fn identity_lookup(request: ResolveIdentityRequest) -> Result<Identity, GraphError> {
    identity(request.issuer, request.subject)
}

/// Returns the location trimmed: at most [`MAX_LOCATION_CHARS`]
/// characters; may be empty.
pub fn location(value: &str) -> Result<String, GraphError> {
    let trimmed = value.trim();
    if trimmed.chars().count() > MAX_LOCATION_CHARS {
        return Err(GraphError::invalid(
            "location",
            format!("must be at most {MAX_LOCATION_CHARS} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Returns the website trimmed: empty, or an `http://` or `https://` URL
/// with a host, at most [`MAX_WEBSITE_CHARS`] characters, without
/// whitespace or control characters. Checked by hand (a profile link needs
/// no full URL parser): the host is letters, digits, `-` and `.` (any
/// script, so internationalised names pass) or a bracketed IPv6 address,
/// optionally followed by a numeric port; credentials (`user@`) are refused.
pub fn website(value: &str) -> Result<String, GraphError> {
    let invalid = |reason: &str| GraphError::invalid("website", reason);
    let url = value.trim();
    if url.is_empty() {
        return Ok(String::new());
    }
    if url.chars().count() > MAX_WEBSITE_CHARS {
        return Err(GraphError::invalid(
            "website",
            format!("must be at most {MAX_WEBSITE_CHARS} characters"),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces or control characters"));
    }
    let lower = url.to_ascii_lowercase();
    // The schemes are ASCII, so the byte offsets are character boundaries.
    let rest = if lower.starts_with("https://") {
        &url["https://".len()..]
    } else if lower.starts_with("http://") {
        &url["http://".len()..]
    } else {
        return Err(invalid("must be an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !valid_authority(authority) {
        return Err(invalid("must name a valid host"));
    }
    Ok(url.to_owned())
}

/// `host` or `host:port`, the host a name or a bracketed IPv6 address.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            after => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        let ipv6 = !address.is_empty()
            && address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ipv6 {
            return false;
        }
        (None, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        }
    };
    let port_ok = port.is_none_or(|port| {
        (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
    });
    let host_ok = host.is_none_or(|host| {
        let name = host.strip_suffix('.').unwrap_or(host);
        !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
    });
    port_ok && host_ok
}

/// A profile edit, checked field by field with the sign-up rules; only the
/// fields set change.
pub fn profile_update(request: &UpdateProfileRequest) -> Result<ProfileUpdate, GraphError> {
    Ok(ProfileUpdate {
        display_name: request
            .display_name
            .as_deref()
            .map(display_name)
            .transpose()?,
        bio: request
            .bio
            .as_deref()
            .map(|value| bio(value).map(|()| value.to_owned()))
            .transpose()?,
        location: request.location.as_deref().map(location).transpose()?,
        website: request.website.as_deref().map(website).transpose()?,
        // Only stored: the gateway checked with media-svc that the caller
        // owns the image, and 0 clears the avatar.
        avatar_media_id: request.avatar_media_id,
    })
}

/// A mute's duration in seconds, at most [`MAX_MUTE_DURATION_SECS`]; 0
/// (until unmuted) is `None`.
pub fn mute_duration(secs: u64) -> Result<Option<u64>, GraphError> {
    if secs > MAX_MUTE_DURATION_SECS {
        return Err(GraphError::invalid(
            "duration_secs",
            format!("must be at most {MAX_MUTE_DURATION_SECS} (0 mutes until unmuted)"),
        ));
    }
    Ok((secs != 0).then_some(secs))
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
    user_pair(("follower_id", follower), ("followee_id", followee))
}

/// Both ids of a request relating two users set and different (no one
/// follows, blocks or mutes themself); each is named by its field.
pub fn user_pair(
    (first_field, first): (&str, u64),
    (second_field, second): (&str, u64),
) -> Result<(), GraphError> {
    user_id(first_field, first)?;
    user_id(second_field, second)?;
    crate::store::distinct_pair(first, second, first_field, second_field)
}

/// Which user list a cursor belongs to: its kind byte, so a cursor from
/// one list is rejected by the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UserList {
    /// A user's followers.
    Followers = 0x47,
    /// Whom a user follows.
    Following = 0x48,
    /// Whom a user blocks.
    Blocked = 0x49,
    /// Whom a user mutes.
    Muted = 0x4a,
}

/// Turns a page request into a store query. Cursors carry the list owner,
/// so one issued for another user's list is rejected rather than silently
/// paging the wrong list.
pub fn page(
    request: Option<&PageRequest>,
    list: UserList,
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
pub fn next_cursor(list: UserList, owner: u64, next: Option<EdgePosition>) -> String {
    next.map(|position| {
        warble_mesh::cursor::encode(list as u8, &[owner, position.follow_seq, position.user_id])
    })
    .unwrap_or_default()
}

/// Cursor kind of the scan of every user (ScanUsers). Its one position is
/// the last user id read; the list has no owner to check.
const USER_SCAN_CURSOR: u8 = 0x4b;

/// Which page of the scan of every user to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanQuery {
    /// Start after this user id; `None` for the first page.
    pub after: Option<u64>,
    /// Most users to return.
    pub limit: usize,
}

/// Turns a ScanUsers page request into a store query: a limit of at most
/// [`MAX_SCAN_LIMIT`], 0 selecting it, and a cursor issued by [`scan_cursor`].
pub fn scan(request: Option<&PageRequest>) -> Result<ScanQuery, GraphError> {
    let default = PageRequest::default();
    let request = request.unwrap_or(&default);
    let limit = match request.limit {
        0 => MAX_SCAN_LIMIT as usize,
        limit if limit > MAX_SCAN_LIMIT => {
            return Err(GraphError::invalid(
                "page.limit",
                format!("must be at most {MAX_SCAN_LIMIT}"),
            ));
        }
        limit => limit as usize,
    };
    let after = match warble_mesh::cursor::decode::<1>(USER_SCAN_CURSOR, &request.cursor) {
        Ok(None) => None,
        Ok(Some([last_id])) => Some(last_id),
        Err(_) => {
            return Err(GraphError::invalid(
                "page.cursor",
                "malformed or from another list",
            ));
        }
    };
    Ok(ScanQuery { after, limit })
}

/// The cursor for the scan page after user `next`; empty when there is none.
pub fn scan_cursor(next: Option<u64>) -> String {
    next.map(|last_id| warble_mesh::cursor::encode(USER_SCAN_CURSOR, &[last_id]))
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
    fn locations_are_trimmed_and_counted_in_characters() {
        assert_eq!(location("  Zürich  ").unwrap(), "Zürich");
        assert_eq!(location("   ").unwrap(), "");
        assert!(location(&"ü".repeat(30)).is_ok());
        assert_eq!(field_of(location(&"ü".repeat(31)).unwrap_err()), "location");
    }

    #[test]
    fn websites_are_http_urls_with_a_host() {
        for good in [
            "https://example.com",
            "http://example.com/",
            "HTTPS://Example.COM/path?q=1#top",
            "https://sub.example.co.uk:8443/a/b",
            "https://bücher.example",
            "http://[::1]:8080/",
            "http://localhost",
            "  https://example.com  ",
        ] {
            assert_eq!(website(good).unwrap(), good.trim(), "{good}");
        }
        assert_eq!(website("").unwrap(), "");
        let long = format!("https://example.com/{}", "a".repeat(80));
        assert_eq!(long.len(), 100);
        assert!(website(&long).is_ok());
        for bad in [
            "example.com",
            "ftp://example.com",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://exa mple.com",
            "https://example.com/a b",
            "https://example.com/\u{7}x",
            "https://user:pw@example.com",
            "https://example..com",
            "https://-example.com",
            "https://example.com:",
            "https://example.com:123456",
            "https://example.com:80a",
            "http://[::1",
            "http://[]/",
            &format!("{long}a"),
        ] {
            assert_eq!(field_of(website(bad).unwrap_err()), "website", "{bad}");
        }
    }

    #[test]
    fn profile_updates_check_only_the_fields_set() {
        let request = UpdateProfileRequest {
            user_id: 1,
            display_name: Some("  Ada  ".into()),
            bio: None,
            location: Some(" London ".into()),
            website: Some(String::new()),
            avatar_media_id: Some(42),
        };
        assert_eq!(
            profile_update(&request).unwrap(),
            ProfileUpdate {
                display_name: Some("Ada".into()),
                bio: None,
                location: Some("London".into()),
                website: Some(String::new()),
                avatar_media_id: Some(42),
            }
        );
        // The avatar id passes as is: 0 clears it, absent leaves it.
        for avatar_media_id in [Some(0), None] {
            let avatar = UpdateProfileRequest {
                avatar_media_id,
                ..request.clone()
            };
            assert_eq!(
                profile_update(&avatar).unwrap().avatar_media_id,
                avatar_media_id
            );
        }
        let blank_name = UpdateProfileRequest {
            display_name: Some("  ".into()),
            ..request.clone()
        };
        assert_eq!(
            field_of(profile_update(&blank_name).unwrap_err()),
            "display_name"
        );
        let long_bio = UpdateProfileRequest {
            bio: Some("b".repeat(161)),
            ..request
        };
        assert_eq!(field_of(profile_update(&long_bio).unwrap_err()), "bio");
    }

    #[test]
    fn registrations_check_the_identity_and_the_sign_up_rules() {
        let request = RegisterUserRequest {
            issuer: "https://id.example/".into(),
            subject: "auth0|42".into(),
            username: "Ada_1".into(),
            display_name: "  Ada  ".into(),
        };
        let (registered, user) = registration(request.clone()).unwrap();
        assert_eq!(
            registered,
            Identity {
                issuer: "https://id.example/".into(),
                subject: "auth0|42".into(),
            }
        );
        assert_eq!(user.display_name, "Ada", "trimmed as at sign-up");
        assert_eq!(user.bio, "");
        for (broken, field) in [
            (
                RegisterUserRequest {
                    issuer: String::new(),
                    ..request.clone()
                },
                "issuer",
            ),
            (
                RegisterUserRequest {
                    subject: "s".repeat(MAX_SUBJECT_BYTES + 1),
                    ..request.clone()
                },
                "subject",
            ),
            (
                RegisterUserRequest {
                    issuer: "é".repeat(MAX_ISSUER_BYTES / 2 + 1),
                    ..request.clone()
                },
                "issuer",
            ),
            (
                RegisterUserRequest {
                    username: "no spaces".into(),
                    ..request.clone()
                },
                "username",
            ),
            (
                RegisterUserRequest {
                    display_name: " ".into(),
                    ..request.clone()
                },
                "display_name",
            ),
        ] {
            assert_eq!(field_of(registration(broken).unwrap_err()), field);
        }
        let longest = "s".repeat(MAX_SUBJECT_BYTES);
        assert!(identity("i".repeat(MAX_ISSUER_BYTES), longest).is_ok());
    }

    #[test]
    fn mute_durations() {
        assert_eq!(mute_duration(0).unwrap(), None);
        assert_eq!(mute_duration(60).unwrap(), Some(60));
        assert_eq!(
            mute_duration(MAX_MUTE_DURATION_SECS).unwrap(),
            Some(MAX_MUTE_DURATION_SECS)
        );
        assert_eq!(
            field_of(mute_duration(MAX_MUTE_DURATION_SECS + 1).unwrap_err()),
            "duration_secs"
        );
    }

    #[test]
    fn pairs_are_two_different_users() {
        assert!(user_pair(("blocker_id", 1), ("blocked_id", 2)).is_ok());
        assert_eq!(
            field_of(user_pair(("blocker_id", 1), ("blocked_id", 1)).unwrap_err()),
            "blocked_id"
        );
        assert_eq!(
            field_of(user_pair(("muter_id", 0), ("muted_id", 1)).unwrap_err()),
            "muter_id"
        );
    }

    #[test]
    fn pages() {
        let query = page(None, UserList::Followers, 9).unwrap();
        assert_eq!(
            (query.after, query.limit),
            (None, DEFAULT_PAGE_LIMIT as usize)
        );
        let position = EdgePosition {
            follow_seq: 5,
            user_id: 6,
        };
        let cursor = next_cursor(UserList::Followers, 9, Some(position));
        let request = PageRequest {
            cursor: cursor.clone(),
            limit: 5000,
        };
        let query = page(Some(&request), UserList::Followers, 9).unwrap();
        assert_eq!((query.after, query.limit), (Some(position), 5000));
        // Another list or another owner rejects the cursor.
        assert!(page(Some(&request), UserList::Following, 9).is_err());
        assert!(page(Some(&request), UserList::Blocked, 9).is_err());
        assert!(page(Some(&request), UserList::Muted, 9).is_err());
        assert!(page(Some(&request), UserList::Followers, 10).is_err());
        let too_big = PageRequest {
            cursor: String::new(),
            limit: 5001,
        };
        assert_eq!(
            field_of(page(Some(&too_big), UserList::Followers, 9).unwrap_err()),
            "page.limit"
        );
        assert_eq!(next_cursor(UserList::Followers, 9, None), "");
    }

    #[test]
    fn scan_pages() {
        let first = scan(None).unwrap();
        assert_eq!(
            first,
            ScanQuery {
                after: None,
                limit: MAX_SCAN_LIMIT as usize,
            }
        );
        let request = PageRequest {
            cursor: scan_cursor(Some(77)),
            limit: MAX_SCAN_LIMIT,
        };
        assert_eq!(
            scan(Some(&request)).unwrap(),
            ScanQuery {
                after: Some(77),
                limit: MAX_SCAN_LIMIT as usize,
            }
        );
        assert_eq!(scan_cursor(None), "");
        // A follow list's cursor is not a scan's, nor the other way round.
        let followers = PageRequest {
            cursor: next_cursor(
                UserList::Followers,
                9,
                Some(EdgePosition {
                    follow_seq: 5,
                    user_id: 6,
                }),
            ),
            limit: 1,
        };
        assert_eq!(field_of(scan(Some(&followers)).unwrap_err()), "page.cursor");
        assert!(page(Some(&request), UserList::Followers, 9).is_err());
        for bad in ["%%%", "AQ", &"A".repeat(200)] {
            let garbage = PageRequest {
                cursor: bad.into(),
                limit: 1,
            };
            assert_eq!(field_of(scan(Some(&garbage)).unwrap_err()), "page.cursor");
        }
        let too_big = PageRequest {
            cursor: String::new(),
            limit: MAX_SCAN_LIMIT + 1,
        };
        assert_eq!(field_of(scan(Some(&too_big)).unwrap_err()), "page.limit");
    }
}
