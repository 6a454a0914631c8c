//! notify-svc: notifications of mentions, replies, quotes, likes, retweets
//! and follows, grouped, counted and live, behind `warble.notify.v1.NotifyService`.
//!
//! - [`store`]: the [`store::NotificationStore`] trait (grouping, versions,
//!   read markers), its embedded (redb) and ScyllaDB implementations, and the
//!   conformance suite both pass.
//! - [`error`]: the service's error type and its gRPC status mapping.

#![forbid(unsafe_code)]

pub mod error;
pub mod store;

pub use error::NotifyError;
