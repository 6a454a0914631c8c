//! The `warble` command's library half: `warble dev` ([`dev`]), its demo
//! data ([`demo`]) and the dead-letter tool `warble dlq` ([`dlq`]). The stack itself lives in `warble-stack` (shared with
//! the tests and `warble-bench`).

pub mod demo;
pub mod dlq;

use warble_mesh::scaffold::Shutdown;
use warble_stack::{DevConfig, DevStack};

/// The celebrity threshold `--demo` uses when none is configured, so the
/// demo's celebrity needs dozens of followers rather than ten thousand.
pub const DEMO_CELEBRITY_THRESHOLD: u64 = 25;

/// `warble dev`: starts the single-process stack, loads the demo data when
/// asked, prints the ready line and runs until `shutdown`.
pub async fn dev(mut config: DevConfig, demo: bool, shutdown: Shutdown) -> anyhow::Result<()> {
    if demo && config.fanout.celebrity_threshold == DevConfig::default().fanout.celebrity_threshold
    {
        config.fanout.celebrity_threshold = DEMO_CELEBRITY_THRESHOLD;
        println!(
            "demo: celebrity threshold lowered to {DEMO_CELEBRITY_THRESHOLD} followers \
             (set WARBLE_FANOUT__CELEBRITY_THRESHOLD to choose another)"
        );
    }
    let stack = DevStack::start(&config).await?;
    if demo {
        let loaded = demo::load(
            stack.tweet_addr,
            stack.graph_addr,
            config.fanout.celebrity_threshold,
        )
        .await;
        if let Err(error) = loaded {
            let _ = stack.stop().await;
            return Err(error.context("loading the demo data failed"));
        }
    }
    println!("{}", stack.ready_line());
    stack.run_until(shutdown).await
}
