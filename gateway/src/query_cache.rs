//! Parsed queries, cached by their text.
//!
//! A frontend sends the same few queries over and over with different
//! variables, and parsing one (async-graphql's pest parser) was 7% of the
//! hydrated home timeline's CPU in profiles. The executor
//! ([`crate::executor::EdgeExecutor`]) looks each query up here first: a
//! query seen before gets a copy of its parsed document, a new one is parsed
//! and, once it has passed admission and validation, kept. Only parsing is
//! skipped: validation, depth and complexity limits still run on every
//! request. A document that failed to parse, to be admitted or to validate
//! is never kept, so the cache holds only queries that really ran.
//!
//! The cache is bounded in bytes of query text ([`MAX_CACHED_QUERY_BYTES`]);
//! a parsed document's size is proportional to its text. Past the bound,
//! arbitrary entries make room, so a client sending endless unique queries
//! costs a bounded map, never memory growth.
//!
//! This is deliberately not an async-graphql `Extension`: with any
//! extension installed, async-graphql runs every field of every response
//! through the extension chain (a registry lookup, type-name strings and a
//! boxed future per field), which cost more than the parsing it saved on a
//! 20-tweet page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Total query text the cache holds, in bytes. A frontend has dozens of
/// queries of a few kilobytes each.
pub const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024 * 1024;
/// Longer queries are parsed every time: they are not a frontend's hot
/// path, and keying the map by them would let a client pin large strings.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The cache (one per gateway; cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct ParsedQueryCache {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    entries: Mutex<Entries>,
    hits: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    documents: HashMap<Box<str>, Arc<ExecutableDocument>>,
    /// Sum of the keys' lengths.
    bytes: usize,
}

impl ParsedQueryCache {
    /// A copy of `query`'s parsed document, when it ran before.
    pub fn lookup(&self, query: &str) -> Option<ExecutableDocument> {
        if query.len() > MAX_QUERY_BYTES {
            return None;
        }
        let cached = self.entries().documents.get(query).cloned()?;
        self.shared.hits.fetch_add(1, Ordering::Relaxed);
        // Copied outside the lock; the executor takes the document by value.
        Some(cached.as_ref().clone())
    }

    /// Keeps `document`, the parsed `query` that passed admission and
    /// validation, unless the query is too long to key by.
    pub fn remember(&self, query: &str, document: ExecutableDocument) {
        if query.len() > MAX_QUERY_BYTES {
            return;
        }
        let document = Arc::new(document);
        let mut entries = self.entries();
        if entries.documents.contains_key(query) {
            return;
        }
        while entries.bytes + query.len() > MAX_CACHED_QUERY_BYTES {
            let Some(evicted) = entries.documents.keys().next().cloned() else {
                break;
            };
            entries.documents.remove(&evicted);
            entries.bytes -= evicted.len();
        }
        entries.bytes += query.len();
        entries.documents.insert(query.into(), document);
    }

    /// Whether `query` is short enough to be cached.
    pub fn is_cacheable(query: &str) -> bool {
        query.len() <= MAX_QUERY_BYTES
    }

    /// Requests answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Distinct queries held.
    pub fn len(&self) -> usize {
        self.entries().documents.len()
    }

    /// Bytes of query text held.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }

    /// Whether no query is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    #[test]
    fn the_cache_stays_within_its_byte_bound() {
        let cache = ParsedQueryCache::default();
        let padding = " ".repeat(MAX_QUERY_BYTES - 40);
        let mut remembered = 0;
        for n in 0..(2 * MAX_CACHED_QUERY_BYTES / MAX_QUERY_BYTES) {
            let query = format!("{{ a{n} }}{padding}");
            cache.remember(&query, parse_query(&query).unwrap());
            remembered += 1;
            assert!(cache.bytes() <= MAX_CACHED_QUERY_BYTES, "after {n}");
        }
        assert!(cache.len() < remembered, "old entries made room");
        let too_long = format!("{{ a }}{}", " ".repeat(MAX_QUERY_BYTES));
        cache.remember(&too_long, parse_query(&too_long).unwrap());
        assert!(cache.lookup(&too_long).is_none());
    }

    #[test]
    fn a_remembered_query_is_found_and_counted() {
        let cache = ParsedQueryCache::default();
        assert!(cache.lookup("{ a }").is_none());
        cache.remember("{ a }", parse_query("{ a }").unwrap());
        cache.remember("{ a }", parse_query("{ a }").unwrap());
        assert_eq!(cache.bytes(), 5);
        assert!(cache.lookup("{ a }").is_some());
        assert_eq!(cache.hits(), 1);
    }
}
