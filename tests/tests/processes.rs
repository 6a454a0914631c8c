//! The frontend cases against the services as separate processes, with
//! Redis as timeline cache and event stream: the production topology.

use warble_tests::cases;
use warble_tests::frontend::StackSpec;
use warble_tests::processes::ProcessStack;

macro_rules! frontend_case {
    ($name:ident) => {
        frontend_case!($name, StackSpec::default());
    };
    ($name:ident, $spec:expr) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let Some(stack) = ProcessStack::start(&$spec).await else {
                return;
            };
            cases::$name(&stack).await;
            stack.stop().await;
        }
    };
}

frontend_case!(sign_up_follow_post_and_page_a_hydrated_home_timeline);
frontend_case!(a_timeline_page_costs_a_constant_number_of_downstream_calls);
frontend_case!(likes_retweets_and_deletes_update_counts);
frontend_case!(a_celebrity_tweet_reaches_followers_and_subscribers);
frontend_case!(
    every_error_code_comes_from_a_real_bad_request,
    cases::rate_limited_spec()
);
frontend_case!(oversized_requests_are_refused_before_parsing);
