//! Relay paging arguments.

use async_graphql::Result;

use crate::error::bad_input;

/// Items per page when `first` is not given.
pub const DEFAULT_FIRST: i32 = 20;
/// Largest `first` accepted.
pub const MAX_FIRST: i32 = 100;

/// Validates `first`: 0..=100, default 20.
pub fn first(first: Option<i32>) -> Result<u32> {
    match first.unwrap_or(DEFAULT_FIRST) {
        value @ 0..=MAX_FIRST => Ok(value as u32),
        value => Err(bad_input(
            "first",
            format!("first must be between 0 and {MAX_FIRST}, got {value}"),
        )),
    }
}

/// Validates `after`: an opaque cursor from a previous page (empty = start).
pub fn after(after: Option<String>) -> Result<String> {
    let after = after.unwrap_or_default();
    if after.len() > 256 {
        return Err(bad_input("after", "cursor is malformed"));
    }
    Ok(after)
}
