//! search-svc: full-text search of tweets and users, and trending hashtags,
//! behind `warble.search.v1` (issue 15).
//!
//! The service itself (the tantivy index fed from the domain events, the
//! gRPC handlers, trends) is still to come. This crate holds its first
//! piece so far:
//!
//! - [`query`]: the query language a user types in the search box, parsed
//!   into a typed [`query::Query`], with every error naming its byte position.

#![forbid(unsafe_code)]

pub mod query;
