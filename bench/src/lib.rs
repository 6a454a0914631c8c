//! `warble-bench`: a synthetic social graph loaded through Warble's public
//! APIs, and load scenarios that measure the stack against its targets and
//! against the same run's hardware ceilings.
//!
//! - [`workload`] generates the graph (power-law followers, celebrities,
//!   tweet-like texts), saves and replays it, and loads it over gRPC.
//! - [`load`] drives closed- and open-loop load; [`report`] keeps HDR
//!   histograms and prints the table and the JSON summary.
//! - [`stack`] runs every service in this process, on the embedded cache or
//!   Redis, or ([`processes`]) the five services as separate processes on
//!   Redis; [`ceiling`] measures Redis's own ZADD rate.
//! - [`scenarios`] are `fanout`, `delivery`, `read`, `celebrity`, `mixed`,
//!   `scale`; [`plot`] turns their JSON into SVG charts.
//!
//! [`cli::main`] is what `warble-bench` runs.

pub mod ceiling;
pub mod cli;
pub mod client;
pub mod load;
pub mod observe;
pub mod plot;
pub mod processes;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod system;
pub mod text;
pub mod workload;

pub use report::Report;
pub use scenarios::{Options, Scenario};
