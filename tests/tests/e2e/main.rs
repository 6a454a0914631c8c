//! Warble end to end, as one test binary: linking the whole stack once
//! instead of once per file, and one place for what the files share.
//!
//! Every test starts its own stack (fresh data directory, ports chosen by
//! the OS, a Redis server of its own for `processes`), so the tests can run
//! as threads of this process (`cargo test`) as well as one process each
//! (`cargo nextest run`). Tests that would change process-wide state (env
//! vars, the working directory) do not belong here.

#[macro_use]
mod support;

mod config_docs;
mod discovery;
mod graphql;
mod observability;
mod processes;
mod production_auth;
mod stack;
mod timeline_model;
mod timelines;
mod trusted_documents;
