//! Retweets in lists, bookmarks, threads and author counts over gRPC: the
//! request rules and status codes of the new RPCs (the stores' behaviour is
//! the conformance suite's).

use tonic::Code;
use warble_proto::common::v1::PageRequest;
use warble_proto::limits::tweet::{MAX_ANCESTORS, MAX_BATCH, MAX_PAGE_LIMIT};
use warble_proto::tweet::v1 as pb;

use crate::helpers::{TestApp, assert_code, assert_invalid, next_user_id, spawn_app};

fn page(cursor: &str, limit: u32) -> Option<PageRequest> {
    Some(PageRequest {
        cursor: cursor.to_owned(),
        limit,
    })
}

impl TestApp {
    async fn try_list_with_retweets(
        &self,
        author_id: u64,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ListUserTweetsResponse, tonic::Status> {
        Ok(self
            .client
            .clone()
            .list_user_tweets(pb::ListUserTweetsRequest {
                author_id,
                page: page(cursor, limit),
                include_retweets: true,
            })
            .await?
            .into_inner())
    }

    async fn try_bookmark(&self, user_id: u64, tweet_id: u64) -> Result<bool, tonic::Status> {
        Ok(self
            .client
            .clone()
            .bookmark(pb::BookmarkRequest { user_id, tweet_id })
            .await?
            .into_inner()
            .changed)
    }

    async fn try_bookmarks(
        &self,
        user_id: u64,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ListBookmarksResponse, tonic::Status> {
        Ok(self
            .client
            .clone()
            .list_bookmarks(pb::ListBookmarksRequest {
                user_id,
                page: page(cursor, limit),
            })
            .await?
            .into_inner())
    }

    async fn try_replies(
        &self,
        tweet_id: u64,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ListRepliesResponse, tonic::Status> {
        Ok(self
            .client
            .clone()
            .list_replies(pb::ListRepliesRequest {
                tweet_id,
                page: page(cursor, limit),
            })
            .await?
            .into_inner())
    }

    async fn try_ancestors(
        &self,
        tweet_id: u64,
        limit: u32,
    ) -> Result<pb::GetAncestorsResponse, tonic::Status> {
        Ok(self
            .client
            .clone()
            .get_ancestors(pb::GetAncestorsRequest { tweet_id, limit })
            .await?
            .into_inner())
    }

    async fn reply(&self, author_id: u64, parent: u64, text: &str) -> pb::Tweet {
        self.create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(parent),
            ..crate::helpers::new_tweet(author_id, text)
        })
        .await
    }
}

#[tokio::test]
async fn retweets_carry_their_id_into_the_users_list_and_the_authors_batch() {
    let app = spawn_app().await;
    let (ann, bob) = (next_user_id(), next_user_id());
    let mine = app.post(ann, "mine").await;
    let theirs = app.post(bob, "theirs").await;
    let made = app.retweet(ann, theirs.id).await.unwrap();
    assert!(made.changed);
    assert_ne!(made.retweet_id, 0);
    let repeat = app.retweet(ann, theirs.id).await.unwrap();
    assert_eq!(
        (repeat.changed, repeat.retweet_id),
        (false, made.retweet_id)
    );

    let first = app.try_list_with_retweets(ann, "", 1).await.unwrap();
    assert_eq!(first.tweets, vec![theirs.clone()]);
    assert_eq!(first.retweet_ids, vec![made.retweet_id]);
    let cursor = first.page.unwrap().next_cursor;
    assert_eq!(first.cursors, vec![cursor.clone()]);
    let second = app.try_list_with_retweets(ann, &cursor, 1).await.unwrap();
    assert_eq!(second.tweets, vec![mine.clone()]);
    assert_eq!(second.retweet_ids, vec![0]);
    assert!(second.page.unwrap().next_cursor.is_empty());
    let plain = app.try_list(ann, "", 10).await.unwrap();
    assert_eq!(plain.tweets, vec![mine.clone()]);
    assert!(plain.retweet_ids.is_empty());

    let authors = app
        .client
        .clone()
        .list_authors_tweets(pb::ListAuthorsTweetsRequest {
            author_ids: vec![ann],
            before_tweet_id: 0,
            limit_per_author: 10,
            include_retweets: true,
        })
        .await
        .unwrap()
        .into_inner()
        .authors;
    let entries = &authors[0].entries;
    assert_eq!(authors[0].tweet_ids, vec![theirs.id, mine.id]);
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.tweet_id, e.author_id, e.retweeted_by, e.retweet_id))
            .collect::<Vec<_>>(),
        vec![(theirs.id, bob, ann, made.retweet_id), (mine.id, ann, 0, 0)]
    );
    assert!(entries.iter().all(|entry| entry.cursor.is_empty()));
    let plain = app.try_authors_tweets(vec![ann], 0, 10).await.unwrap();
    assert_eq!(plain[0].tweet_ids, vec![mine.id]);
    assert_eq!(
        plain[0].entries.len(),
        1,
        "entries are filled without retweets too"
    );
    assert_eq!(plain[0].entries[0].author_id, ann);
}

#[tokio::test]
async fn bookmarks_need_a_live_tweet_and_list_newest_first_with_cursors() {
    let app = spawn_app().await;
    let (ann, bob) = (next_user_id(), next_user_id());
    let older = app.post(bob, "older").await;
    let newer = app.post(bob, "newer").await;
    assert!(app.try_bookmark(ann, older.id).await.unwrap());
    assert!(app.try_bookmark(ann, newer.id).await.unwrap());
    assert!(!app.try_bookmark(ann, newer.id).await.unwrap());

    let gone = app.post(bob, "gone").await;
    app.try_delete(gone.id, bob).await.unwrap();
    assert_code(app.try_bookmark(ann, gone.id).await, Code::NotFound);
    assert_code(app.try_bookmark(ann, 31_337).await, Code::NotFound);
    assert_invalid(app.try_bookmark(0, older.id).await, "user_id");
    assert_invalid(app.try_bookmark(ann, 0).await, "tweet_id");

    let first = app.try_bookmarks(ann, "", 1).await.unwrap();
    assert_eq!(first.bookmarks.len(), 1);
    let edge = &first.bookmarks[0];
    assert_eq!((edge.tweet_id, edge.author_id), (newer.id, bob));
    assert!(edge.bookmarked_at_ms >= newer.created_at_ms);
    let cursor = first.page.unwrap().next_cursor;
    assert_eq!(edge.cursor, cursor);
    let second = app.try_bookmarks(ann, &cursor, 1).await.unwrap();
    assert_eq!(second.bookmarks[0].tweet_id, older.id);
    assert!(second.page.unwrap().next_cursor.is_empty());
    // A cursor is the user's own: replaying it on another list is refused.
    assert_invalid(app.try_bookmarks(bob, &cursor, 1).await, "page.cursor");
    assert_invalid(
        app.try_bookmarks(ann, "", MAX_PAGE_LIMIT + 1).await,
        "page.limit",
    );
    assert!(
        app.try_bookmarks(bob, "", 10)
            .await
            .unwrap()
            .bookmarks
            .is_empty()
    );

    let state = app
        .try_viewer_state(ann, vec![older.id, gone.id])
        .await
        .unwrap();
    assert_eq!(
        state.iter().map(|s| s.bookmarked).collect::<Vec<_>>(),
        vec![true, false]
    );
    let unbookmarked = app
        .client
        .clone()
        .unbookmark(pb::UnbookmarkRequest {
            user_id: ann,
            tweet_id: older.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unbookmarked.changed);
    let hydrated = app
        .client
        .clone()
        .get_tweets(pb::GetTweetsRequest {
            tweet_ids: vec![older.id, newer.id],
            include_counts: false,
            viewer_id: ann,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        hydrated
            .iter()
            .map(|r| r.viewer_state.as_ref().unwrap().bookmarked)
            .collect::<Vec<_>>(),
        vec![false, true]
    );
}

#[tokio::test]
async fn threads_list_replies_and_ancestors() {
    let app = spawn_app().await;
    let (ann, bob) = (next_user_id(), next_user_id());
    let root = app.post(ann, "root").await;
    let first = app.reply(bob, root.id, "first").await;
    let second = app.reply(ann, root.id, "second").await;
    let deep = app.reply(ann, first.id, "deep").await;

    let page1 = app.try_replies(root.id, "", 1).await.unwrap();
    assert_eq!(page1.replies, vec![first.clone()]);
    let cursor = page1.page.unwrap().next_cursor;
    assert_eq!(page1.cursors, vec![cursor.clone()]);
    let page2 = app.try_replies(root.id, &cursor, 1).await.unwrap();
    assert_eq!(page2.replies, vec![second]);
    assert!(page2.page.unwrap().next_cursor.is_empty());
    assert_invalid(app.try_replies(first.id, &cursor, 1).await, "page.cursor");
    assert_code(app.try_replies(31_337, "", 1).await, Code::NotFound);
    assert_invalid(app.try_replies(0, "", 1).await, "tweet_id");

    let ancestors = app.try_ancestors(deep.id, 0).await.unwrap();
    assert_eq!(ancestors.ancestors, vec![root.clone(), first.clone()]);
    assert!(!ancestors.truncated);
    let cut = app.try_ancestors(deep.id, 1).await.unwrap();
    assert_eq!((cut.ancestors, cut.truncated), (vec![first], true));
    assert_invalid(app.try_ancestors(deep.id, MAX_ANCESTORS + 1).await, "limit");
    assert_code(app.try_ancestors(31_337, 0).await, Code::NotFound);
}

#[tokio::test]
async fn author_counts_answer_in_request_order_within_the_batch_limit() {
    let app = spawn_app().await;
    let (ann, nobody) = (next_user_id(), next_user_id());
    let doomed = app.post(ann, "one").await;
    app.post(ann, "two").await;
    app.try_delete(doomed.id, ann).await.unwrap();
    let counts = |author_ids: Vec<u64>| {
        let mut client = app.client.clone();
        async move {
            client
                .get_author_counts(pb::GetAuthorCountsRequest { author_ids })
                .await
                .map(|response| response.into_inner().counts)
        }
    };
    let answered = counts(vec![nobody, ann]).await.unwrap();
    assert_eq!(
        answered
            .iter()
            .map(|c| (c.author_id, c.tweets_count))
            .collect::<Vec<_>>(),
        vec![(nobody, 0), (ann, 1)]
    );
    assert_invalid(counts(vec![ann; MAX_BATCH + 1]).await, "author_ids");
    assert_invalid(counts(vec![ann, 0]).await, "author_ids");
    assert_eq!(counts(vec![ann; MAX_BATCH]).await.unwrap().len(), MAX_BATCH);
}
