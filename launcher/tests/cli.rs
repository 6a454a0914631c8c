//! The real `warble` binary, as the README runs it: `warble dev` starts,
//! prints its ready line, answers GraphQL, and exits 0 on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn warble_dev_starts_serves_and_stops_cleanly_on_sigterm() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warble"))
        .arg("dev")
        .env("WARBLE_DATA_DIR", data_dir.path())
        .env("WARBLE_TWEET_PORT", "0")
        .env("WARBLE_GRAPH_PORT", "0")
        .env("WARBLE_TIMELINE_PORT", "0")
        .env("WARBLE_FANOUT_PORT", "0")
        .env("WARBLE_NOTIFY_PORT", "0")
        .env("WARBLE_SEARCH_PORT", "0")
        .env("WARBLE_MEDIA_PORT", "0")
        .env("WARBLE_GATEWAY_PORT", "0")
        .env("WARBLE_TELEMETRY__LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("warble ready "))
        .expect("the ready line");
    for service in [
        "gateway=http://127.0.0.1:",
        "tweet=127.0.0.1:",
        "graph=",
        "timeline=",
        "fanout=",
        "notify=",
        "search=",
        "media=",
    ] {
        assert!(ready.contains(service), "{ready}");
    }
    let gateway = ready
        .split_whitespace()
        .find_map(|part| part.strip_prefix("gateway=http://"))
        .and_then(|url| url.strip_suffix("/graphql"))
        .unwrap()
        .to_owned();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer: serde_json::Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{gateway}/graphql"))
            .json(&serde_json::json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(answer["data"]["__typename"], "Query");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "warble dev did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    // The data directory holds the embedded database for the next start.
    assert!(
        data_dir
            .path()
            .join(warble_mesh::embedded::DATABASE_FILE)
            .exists()
    );
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_warble"))
        .arg("dev")
        .env("WARBLE_GATEWAY_PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(stderr.contains("gateway_port"), "{stderr}");
}
