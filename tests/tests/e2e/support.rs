//! What the modules of this binary share.

/// Declares one test per shared frontend case (`warble_tests::cases`), each
/// on a fresh stack from `$start(&spec).await` (`None` skips the case, e.g.
/// when redis-server is not installed). Every mode runs this one list, so a
/// new case reaches both the single-process stack and the separate processes.
macro_rules! frontend_cases {
    (#[$test:meta] $start:path) => {
        frontend_cases!(@case #[$test] $start, sign_up_follow_post_and_page_a_hydrated_home_timeline);
        frontend_cases!(@case #[$test] $start, a_timeline_page_costs_a_constant_number_of_downstream_calls);
        frontend_cases!(@case #[$test] $start, likes_retweets_and_deletes_update_counts);
        frontend_cases!(@case #[$test] $start, a_retweet_reaches_followers_and_undo_removes_it);
        frontend_cases!(@case #[$test] $start, a_block_hides_both_ways_and_refuses_interactions);
        frontend_cases!(@case #[$test] $start, a_mute_hides_and_lapses);
        frontend_cases!(@case #[$test] $start, a_muted_authors_tweets_skip_the_live_subscription);
        frontend_cases!(@case #[$test] $start, a_thread_lists_replies_and_ancestors);
        frontend_cases!(@case #[$test] $start, bookmarks_stay_private);
        frontend_cases!(@case #[$test] $start, notifications_group_count_and_clear_on_undo);
        frontend_cases!(@case #[$test] $start, blocks_and_mutes_silence_notifications);
        frontend_cases!(@case #[$test] $start, a_policy_filters_strangers_mentions);
        frontend_cases!(@case #[$test] $start, the_notification_subscription_is_live);
        frontend_cases!(@case #[$test] $start, bad_notification_requests_are_refused);
        frontend_cases!(@case #[$test] $start, tweets_are_found_by_every_kind_of_term_and_gone_once_deleted);
        frontend_cases!(@case #[$test] $start, search_pages_stay_put_while_tweets_arrive);
        frontend_cases!(@case #[$test] $start, users_are_found_by_prefix_exact_name_first);
        frontend_cases!(@case #[$test] $start, five_people_make_a_trend_and_one_spammer_does_not);
        frontend_cases!(@case #[$test] $start, an_image_posted_reaches_the_timeline_and_downloads_clean);
        frontend_cases!(@case #[$test] $start, an_avatar_shows_on_the_author);
        frontend_cases!(@case #[$test] $start, a_video_plays_from_range_requests);
        frontend_cases!(@case #[$test] $start, bad_uploads_are_refused_with_their_reason);
        frontend_cases!(@case #[$test] $start, a_celebrity_tweet_reaches_followers_and_subscribers);
        frontend_cases!(
            @case #[$test] $start,
            every_error_code_comes_from_a_real_bad_request,
            warble_tests::cases::rate_limited_spec()
        );
        frontend_cases!(@case #[$test] $start, oversized_requests_are_refused_before_parsing);
        frontend_cases!(@case #[$test] $start, abusive_queries_are_refused_with_stable_codes);
        frontend_cases!(@case #[$test] $start, standard_clients_and_http_conventions_work);
        frontend_cases!(@case #[$test] $start, persisted_queries_round_trip);
        frontend_cases!(
            @case #[$test] $start,
            requests_over_the_rate_are_refused_with_retry_after,
            warble_tests::cases::tight_request_rate_spec()
        );
        frontend_cases!(
            @case #[$test] $start,
            websockets_are_bounded,
            warble_tests::cases::short_ws_init_spec()
        );
    };
    (@case #[$test:meta] $start:path, $name:ident) => {
        frontend_cases!(
            @case #[$test] $start,
            $name,
            warble_tests::frontend::StackSpec::default()
        );
    };
    (@case #[$test:meta] $start:path, $name:ident, $spec:expr) => {
        #[$test]
        async fn $name() {
            let Some(stack) = $start(&$spec).await else {
                return;
            };
            warble_tests::cases::$name(&stack).await;
            stack.stop().await;
        }
    };
}
