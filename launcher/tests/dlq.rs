//! `warble dlq` against a real embedded event log (the one `warble dev`
//! keeps): dead letters are listed, filtered, paged, shown, replayed onto
//! their stream and dropped. The separate-process end-to-end test runs the
//! `warble` binary against Redis.

use std::time::Duration;

use prost::Message as _;
use warble_launcher::dlq;
use warble_mesh::consumer::DEAD_LETTER_STREAM;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog as _};
use warble_proto::events::v1::{DeadLetter, Event, TweetCreated, event::Payload};

fn event(id: u64) -> Vec<u8> {
    Event {
        event_id: id,
        payload: Some(Payload::TweetCreated(TweetCreated {
            tweet_id: id * 10,
            ..TweetCreated::default()
        })),
        ..Event::default()
    }
    .encode_to_vec()
}

fn letter(group: &str, id: u64) -> Vec<u8> {
    DeadLetter {
        source_stream: DOMAIN_EVENTS_STREAM.into(),
        source_entry_id: format!("{id}-0"),
        consumer_group: group.into(),
        key: 7,
        payload: event(id),
        attempts: 5,
        last_error: "graph-svc unavailable:\nconnection refused".into(),
        dead_lettered_at_ms: 1_764_750_000_000,
    }
    .encode_to_vec()
}

async fn run(log: &EmbeddedEventLog, line: &str) -> anyhow::Result<String> {
    let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let (command, _) = dlq::parse(&args).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    dlq::run(log, command, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn dead_letters_are_listed_shown_replayed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        EmbeddedEventLog::open(warble_mesh::embedded::open_shared(dir.path()).unwrap()).unwrap();
    let first = log
        .append(DEAD_LETTER_STREAM, 7, &letter("fanout", 1))
        .await
        .unwrap();
    let notify = log
        .append(DEAD_LETTER_STREAM, 7, &letter("notify", 2))
        .await
        .unwrap();
    let second = log
        .append(DEAD_LETTER_STREAM, 7, &letter("fanout", 3))
        .await
        .unwrap();

    let all = run(&log, "list").await.unwrap();
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(all.contains(&format!("{first}  2025-12-03T08:20:00.000Z  group=fanout  attempts=5  TweetCreated event 1  error: graph-svc unavailable: connection refused")), "{all}");
    let fanout = run(&log, "list --group fanout").await.unwrap();
    assert!(
        fanout.contains(&first.to_string()) && fanout.contains(&second.to_string()),
        "{fanout}"
    );
    assert!(!fanout.contains("group=notify"), "{fanout}");
    let paged = run(&log, "list --limit 1").await.unwrap();
    assert_eq!(
        paged.lines().last(),
        Some(format!("more: warble dlq list --after {first}").as_str())
    );
    let next = run(&log, &format!("list --limit 1 --after {first}"))
        .await
        .unwrap();
    assert!(next.starts_with(&notify.to_string()), "{next}");

    let shown = run(&log, &format!("show {second}")).await.unwrap();
    assert!(shown.contains("group         fanout"), "{shown}");
    assert!(shown.contains("TweetCreated event 3"), "{shown}");
    assert!(shown.contains("tweet_id: 30"), "{shown}");
    assert!(shown.contains("last error    graph-svc unavailable:\nconnection refused"));
    let missing = run(&log, "show 1-0").await.unwrap_err().to_string();
    assert!(missing.contains("no dead letter 1-0"), "{missing}");
    // An unknown id changes nothing, even next to a known one.
    assert!(run(&log, &format!("drop {first} 1-0")).await.is_err());
    assert_eq!(run(&log, "list").await.unwrap().lines().count(), 3);

    let replayed = run(&log, "replay --all --group fanout").await.unwrap();
    assert!(replayed.ends_with("2 replayed\n"), "{replayed}");
    let requeued: Vec<Vec<u8>> = log
        .read_after(DOMAIN_EVENTS_STREAM, None, 10, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| {
            assert_eq!(entry.key, 7, "the event keeps its ordering key");
            entry.payload
        })
        .collect();
    assert_eq!(
        requeued,
        vec![event(1), event(3)],
        "back on their stream, in order"
    );
    let left = run(&log, "list").await.unwrap();
    assert_eq!(left.lines().count(), 1, "{left}");
    assert!(left.starts_with(&notify.to_string()), "{left}");

    let dropped = run(&log, &format!("drop {notify}")).await.unwrap();
    assert!(dropped.ends_with("1 dropped\n"), "{dropped}");
    assert_eq!(run(&log, "list").await.unwrap(), "no dead letters\n");
}
