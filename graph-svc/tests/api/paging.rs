//! Paging stays exact while the list changes underneath it.

use std::collections::HashSet;

use proptest::prelude::*;

use super::helpers::{TestApp, next_cursor};

/// What happens to the followers list between two page reads.
#[derive(Debug, Clone)]
struct Step {
    /// New followers added.
    add: usize,
    /// Followers not returned yet who unfollow.
    remove_unseen: usize,
    /// Whether one follower already returned unfollows and follows again.
    refollow_seen: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (0usize..4, 0usize..3, any::<bool>()).prop_map(|(add, remove_unseen, refollow_seen)| Step {
        add,
        remove_unseen,
        refollow_seen,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Paging a user's followers in small pages while others follow,
    /// unfollow and re-follow (between pages and from a concurrent task)
    /// returns every follower who stayed throughout exactly once, no one
    /// twice, and no one who left before being reached.
    #[test]
    fn paging_followers_returns_each_steady_follower_exactly_once(
        initial in 1usize..25,
        limit in 1u32..6,
        steps in prop::collection::vec(step(), 0..10),
        concurrent in 0usize..6,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(check_paging(initial, limit, steps, concurrent))?;
    }
}

async fn check_paging(
    initial: usize,
    limit: u32,
    steps: Vec<Step>,
    concurrent: usize,
) -> Result<(), TestCaseError> {
    let app = TestApp::spawn().await;
    let target = app.user("target").await;
    let initial_followers = app.users("old", initial).await;
    let added: usize = steps.iter().map(|s| s.add).sum();
    let mut newcomers = app.users("new", added).await.into_iter();
    let racers = app.users("racer", concurrent).await;
    for &follower in &initial_followers {
        app.follow(follower, target).await;
    }
    let mut following: HashSet<u64> = initial_followers.iter().copied().collect();

    // Follows racing the pager from another task: new, so either outcome is fine.
    let racer = {
        let client = app.client();
        tokio::spawn(async move {
            for follower in racers {
                let mut client = client.clone();
                client
                    .follow(warble_proto::graph::v1::FollowRequest {
                        follower_id: follower,
                        followee_id: target,
                    })
                    .await
                    .expect("racing follow");
            }
        })
    };

    let mut seen = HashSet::new();
    let mut removed_unseen = HashSet::new();
    let mut steps = steps.into_iter();
    let mut cursor = String::new();
    // Every page but the last returns someone new, so a pager that keeps
    // going past this many pages is looping, not paging.
    let max_pages = initial + added + concurrent + 1;
    for pages in 1.. {
        prop_assert!(pages <= max_pages, "still paging after {max_pages} pages");
        let page = app
            .try_followers_page(target, &cursor, limit)
            .await
            .expect("list followers");
        prop_assert!(page.followers.len() <= limit as usize);
        for edge in &page.followers {
            prop_assert!(seen.insert(edge.user_id), "{} returned twice", edge.user_id);
        }
        cursor = next_cursor(page.page);
        if cursor.is_empty() {
            break;
        }
        let Some(step) = steps.next() else { continue };
        for follower in newcomers.by_ref().take(step.add) {
            app.follow(follower, target).await;
            following.insert(follower);
        }
        let leaving: Vec<u64> = initial_followers
            .iter()
            .copied()
            .filter(|f| following.contains(f) && !seen.contains(f))
            .take(step.remove_unseen)
            .collect();
        for follower in leaving {
            app.unfollow(follower, target).await;
            following.remove(&follower);
            removed_unseen.insert(follower);
        }
        if step.refollow_seen
            && let Some(&again) = seen.iter().find(|f| following.contains(*f))
        {
            app.unfollow(again, target).await;
            app.follow(again, target).await;
        }
    }
    racer.await.expect("racing task");

    for follower in &initial_followers {
        if removed_unseen.contains(follower) {
            prop_assert!(
                !seen.contains(follower),
                "{follower} left before being reached"
            );
        } else {
            prop_assert!(seen.contains(follower), "{follower} was skipped");
        }
    }
    app.stop().await;
    Ok(())
}
