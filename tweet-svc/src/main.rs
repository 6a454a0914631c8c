//! The `tweet-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_tweet_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "tweet-svc",
    warble_tweet_svc::TweetSvcConfig,
    warble_tweet_svc::run
);
