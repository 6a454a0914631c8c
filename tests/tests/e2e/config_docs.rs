//! Every config key a binary reads is documented in the README, so the
//! configuration reference cannot silently drift from the code.

use warble_mesh::config::{ServiceConfig, keys};

fn assert_documented<T: ServiceConfig>(binary: &str) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let missing: Vec<_> = keys::<T>()
        .into_iter()
        .filter(|(key, env)| {
            !(readme.contains(&format!("`{key}`")) && readme.contains(&format!("`{env}`")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{binary} reads keys the README does not document: {missing:?}"
    );
}

#[test]
fn tweet_svc_keys_are_documented() {
    assert_documented::<warble_tweet_svc::TweetSvcConfig>("tweet-svc");
}

#[test]
fn graph_svc_keys_are_documented() {
    assert_documented::<warble_graph_svc::GraphSvcConfig>("graph-svc");
}

#[test]
fn dev_stack_keys_are_documented() {
    assert_documented::<warble_stack::DevConfig>("warble dev");
}

#[test]
fn timeline_svc_keys_are_documented() {
    assert_documented::<warble_timeline_svc::TimelineSvcConfig>("timeline-svc");
}

#[test]
fn fanout_svc_keys_are_documented() {
    assert_documented::<warble_fanout_svc::FanoutSvcConfig>("fanout-svc");
}

#[test]
fn gateway_keys_are_documented() {
    assert_documented::<warble_gateway::GatewayConfig>("gateway");
}

#[test]
fn notify_svc_keys_are_documented() {
    assert_documented::<warble_notify_svc::NotifySvcConfig>("notify-svc");
}

#[test]
fn search_svc_keys_are_documented() {
    assert_documented::<warble_search_svc::SearchSvcConfig>("search-svc");
}

#[test]
fn media_svc_keys_are_documented() {
    assert_documented::<warble_media_svc::MediaSvcConfig>("media-svc");
}

#[test]
fn warble_dlq_keys_are_documented() {
    assert_documented::<warble_launcher::dlq::DlqConfig>("warble dlq");
}
