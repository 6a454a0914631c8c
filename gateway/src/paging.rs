//! Relay paging arguments.

use async_graphql::Result;
use warble_proto::limits::{graph, notify, timeline};

use crate::error::bad_input;

/// Items per page when `first` is not given: the GraphQL API's own choice.
pub const DEFAULT_FIRST: i32 = 20;
/// Largest `first` accepted: the smallest of the contracts' largest pages
/// for timelines, follow lists and notifications, since `first` is passed
/// on as their page size and anything larger would only fail downstream.
pub const MAX_FIRST: i32 = {
    let mut max = timeline::MAX_PAGE_LIMIT;
    if graph::MAX_PAGE_LIMIT < max {
        max = graph::MAX_PAGE_LIMIT;
    }
    if notify::MAX_PAGE_LIMIT < max {
        max = notify::MAX_PAGE_LIMIT;
    }
    max as i32
};
const _: () = assert!(DEFAULT_FIRST <= MAX_FIRST);

/// Validates `first`: 0 to [`MAX_FIRST`], default [`DEFAULT_FIRST`].
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

/// What a field that makes its own downstream round trip (a page, a user
/// looked up by username) costs in query complexity before its items,
/// priced like 100 fields. With the default `limits.max_complexity` of
/// 5,000, one request holds at most 50 of them, so aliases cannot multiply
/// downstream calls (an empty `first: 0` page makes none, but is priced the
/// same, since the cost cannot depend on that).
pub const CALL_COST: usize = 100;

/// The complexity of a list field: [`CALL_COST`] plus `first` (as
/// [`first`] would accept it) times the cost of one item.
///
/// Complexity is computed during validation, before any argument is
/// checked, so it must hold for every value a client can send: a `first`
/// outside `0..=MAX_FIRST` (which execution will refuse) costs as much as
/// the largest page, and the arithmetic saturates instead of wrapping. A
/// negative `first` once wrapped the whole query's cost to a small number
/// and let any number of expensive siblings through.
pub fn list_cost(first: Option<i32>, item_cost: usize) -> usize {
    let items = match first.unwrap_or(DEFAULT_FIRST) {
        value @ 0..=MAX_FIRST => value as usize,
        _ => MAX_FIRST as usize,
    };
    items.saturating_mul(item_cost).saturating_add(CALL_COST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cost_holds_for_every_first_a_client_can_send() {
        assert_eq!(list_cost(None, 3), CALL_COST + DEFAULT_FIRST as usize * 3);
        assert_eq!(list_cost(Some(10), 3), CALL_COST + 30);
        assert_eq!(
            list_cost(Some(0), 3),
            CALL_COST,
            "an empty page is priced as a page"
        );
        let largest = CALL_COST + MAX_FIRST as usize * 3;
        for out_of_range in [-1, -2000, i32::MIN, MAX_FIRST + 1, i32::MAX] {
            assert_eq!(list_cost(Some(out_of_range), 3), largest, "{out_of_range}");
        }
        assert_eq!(list_cost(Some(MAX_FIRST), usize::MAX), usize::MAX);
    }
}
