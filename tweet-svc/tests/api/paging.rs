//! Cursor paging stays exact while the author keeps tweeting.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::helpers::{TestApp, next_user_id, spawn_app};

/// More pages than any case can need, even at one tweet per page.
const MAX_PAGES: usize = 500;

/// Pages through `author`'s tweets `limit` at a time while a concurrent writer
/// adds `concurrent` tweets and the pager itself adds `between_pages[i]`
/// tweets after page `i`. Returns (ids returned, ids added while paging).
async fn page_while_tweeting(
    app: &TestApp,
    author: u64,
    limit: u32,
    between_pages: &[usize],
    concurrent: usize,
) -> (Vec<u64>, Vec<u64>) {
    let writer = async {
        let mut added = Vec::new();
        for n in 0..concurrent {
            added.push(app.post(author, &format!("concurrent {n}")).await.id);
        }
        added
    };
    let pager = async {
        let (mut returned, mut added) = (Vec::new(), Vec::new());
        let mut cursor = String::new();
        for page_number in 0.. {
            assert!(page_number < MAX_PAGES, "paging never ended");
            let page = app
                .try_list(author, &cursor, limit)
                .await
                .expect("list user tweets");
            let progressed = match (returned.last(), page.tweets.first()) {
                (Some(last), Some(first)) => first.id < *last,
                _ => true,
            };
            returned.extend(page.tweets.iter().map(|tweet| tweet.id));
            // A page that does not move below the last one would page forever;
            // stop and let the ordering check report it.
            if !progressed {
                break;
            }
            for n in 0..between_pages.get(page_number).copied().unwrap_or(0) {
                added.push(app.post(author, &format!("between {n}")).await.id);
            }
            cursor = page.page.expect("page").next_cursor;
            if cursor.is_empty() {
                break;
            }
        }
        (returned, added)
    };
    let (concurrent_ids, (returned, mut added)) = tokio::join!(writer, pager);
    added.extend(concurrent_ids);
    (returned, added)
}

async fn check_paging(
    app: &TestApp,
    existing: usize,
    limit: u32,
    between_pages: Vec<usize>,
    concurrent: usize,
) -> Result<(), TestCaseError> {
    let author = next_user_id();
    let mut before = HashSet::new();
    for n in 0..existing {
        before.insert(app.post(author, &format!("existing {n}")).await.id);
    }
    let (returned, added) =
        page_while_tweeting(app, author, limit, &between_pages, concurrent).await;

    prop_assert!(
        returned.windows(2).all(|pair| pair[0] > pair[1]),
        "ids not strictly descending (so duplicated or out of order): {returned:?}"
    );
    let returned_set: HashSet<u64> = returned.iter().copied().collect();
    prop_assert!(
        before.is_subset(&returned_set),
        "skipped: {:?}",
        before.difference(&returned_set).collect::<Vec<_>>()
    );
    let added: HashSet<u64> = added.into_iter().collect();
    prop_assert!(
        returned_set
            .iter()
            .all(|id| before.contains(id) || added.contains(id)),
        "returned tweets that are not the author's"
    );
    Ok(())
}

#[test]
fn paging_while_tweeting_returns_every_earlier_tweet_exactly_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // One server for every case; each case pages a fresh author.
    let app = runtime.block_on(spawn_app());
    proptest!(ProptestConfig::with_cases(16), |(
        existing in 0usize..30,
        limit in 1u32..6,
        between_pages in prop::collection::vec(0usize..3, 0..8),
        concurrent in 0usize..12,
    )| {
        runtime.block_on(check_paging(&app, existing, limit, between_pages, concurrent))?;
    });
    runtime.block_on(app.stop());
}
