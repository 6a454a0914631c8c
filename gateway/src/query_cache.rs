//! Parsed queries, cached by their text.
//!
//! A frontend sends the same few queries over and over with different
//! variables, and parsing one (async-graphql's pest parser) was 7% of the
//! hydrated home timeline's CPU in profiles. The HTTP layer hands each
//! request to [`ParsedQueryCache::prepare`] before executing it: a query
//! seen before gets a copy of its parsed document, a new one is parsed once
//! and kept. Only parsing is skipped: validation, depth and complexity
//! limits still run on every request, and a query that fails to parse is
//! never cached (the executor parses it again and reports the error exactly
//! as before).
//!
//! This is deliberately not an async-graphql `Extension`: with any
//! extension installed, async-graphql runs every field of every response
//! through the extension chain (a registry lookup, type-name strings and a
//! boxed future per field), which cost more than the parsing it saved on a
//! 20-tweet page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;

/// Distinct queries kept; a frontend has dozens. Past it, an arbitrary entry
/// makes room, so a client sending endless unique queries costs a bounded
/// map, never memory growth.
const MAX_QUERIES: usize = 1_024;
/// Longer queries are parsed every time: they are not a frontend's hot
/// path, and keying the map by them would let a client pin large strings.
const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The cache (one per gateway; cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct ParsedQueryCache {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    documents: Mutex<HashMap<Box<str>, Arc<ExecutableDocument>>>,
    hits: AtomicU64,
}

impl ParsedQueryCache {
    /// Gives `request` its parsed document: a copy of the cached one, or
    /// one parsed now (and kept when it parsed cleanly).
    pub fn prepare(&self, request: &mut Request) {
        if request.query.len() > MAX_QUERY_BYTES {
            return;
        }
        let cached = self.documents().get(request.query.as_str()).cloned();
        if let Some(document) = cached {
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
            // Copied outside the lock; the executor takes the document by value.
            request.set_parsed_query(document.as_ref().clone());
            return;
        }
        let Ok(document) = request.parsed_query() else {
            return;
        };
        let document = Arc::new(document.clone());
        let mut documents = self.documents();
        if documents.len() >= MAX_QUERIES
            && let Some(evicted) = documents.keys().next().cloned()
        {
            documents.remove(&evicted);
        }
        documents.insert(request.query.as_str().into(), document);
    }

    /// Requests answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Distinct queries held.
    pub fn len(&self) -> usize {
        self.documents().len()
    }

    /// Whether no query is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn documents(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<ExecutableDocument>>> {
        self.shared
            .documents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{
        EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, Variables,
    };

    use super::*;

    #[derive(SimpleObject)]
    struct Node {
        value: i32,
        child: Option<Box<Node>>,
    }

    struct Query;

    #[Object]
    impl Query {
        async fn double(&self, n: i32) -> i32 {
            n * 2
        }

        async fn node(&self) -> Node {
            Node {
                value: 1,
                child: Some(Box::new(Node {
                    value: 2,
                    child: None,
                })),
            }
        }
    }

    type TestSchema = Schema<Query, EmptyMutation, EmptySubscription>;

    fn schema() -> TestSchema {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_depth(2)
            .finish()
    }

    /// What the HTTP layer does: prepare, then execute.
    async fn execute(
        schema: &TestSchema,
        cache: &ParsedQueryCache,
        request: impl Into<Request>,
    ) -> async_graphql::Response {
        let mut request = request.into();
        cache.prepare(&mut request);
        schema.execute(request).await
    }

    #[tokio::test]
    async fn a_repeated_query_is_parsed_once_and_still_executes_with_its_variables() {
        let cache = ParsedQueryCache::default();
        let schema = schema();
        let query = "query($n: Int!) { double(n: $n) }";
        for n in [2, 5, 21] {
            let response = execute(
                &schema,
                &cache,
                Request::new(query).variables(Variables::from_json(serde_json::json!({ "n": n }))),
            )
            .await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            assert_eq!(
                response.data.into_json().unwrap(),
                serde_json::json!({ "double": n * 2 })
            );
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.hits(), 2);
    }

    #[tokio::test]
    async fn syntax_errors_are_never_cached_and_limits_still_apply_to_cached_queries() {
        let cache = ParsedQueryCache::default();
        let schema = schema();
        for _ in 0..2 {
            let response = execute(&schema, &cache, "{ double(n: ").await;
            assert_eq!(response.errors.len(), 1);
        }
        assert!(cache.is_empty());
        assert_eq!(cache.hits(), 0);

        // Depth 3 against a limit of 2: rejected by validation, which runs
        // after parsing, so the second request is a cache hit and is
        // rejected all the same.
        let too_deep = "{ node { child { child { value } } } }";
        for _ in 0..2 {
            let response = execute(&schema, &cache, too_deep).await;
            assert_eq!(response.errors.len(), 1, "{:?}", response.errors);
            assert!(
                response.errors[0].message.contains("nested too deep"),
                "{}",
                response.errors[0].message
            );
        }
        assert_eq!(cache.hits(), 1);
    }
}
