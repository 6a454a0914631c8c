//! Parsed queries, cached by their text.
//!
//! A frontend sends the same few queries over and over with different
//! variables, and parsing one (async-graphql's pest parser) was 7% of the
//! hydrated home timeline's CPU in profiles. This extension keeps the parsed
//! document of every query that parsed cleanly and hands back a copy next
//! time. Only parsing is skipped: validation, depth and complexity limits
//! still run on every request, and a query that fails to parse is never
//! cached, so errors are reported exactly as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Distinct queries kept; a frontend has dozens. Past it, an arbitrary entry
/// makes room, so a client sending endless unique queries costs a bounded
/// map, never memory growth.
const MAX_QUERIES: usize = 1_024;
/// Longer queries are parsed every time: they are not a frontend's hot
/// path, and keying the map by them would let a client pin large strings.
const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The cache (one per schema; cheap to clone).
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

impl ExtensionFactory for ParsedQueryCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Extension for ParsedQueryCache {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_QUERY_BYTES {
            return next.run(ctx, query, variables).await;
        }
        let cached = self.documents().get(query).cloned();
        if let Some(document) = cached {
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
            // Copied outside the lock; the executor takes the document by value.
            return Ok(document.as_ref().clone());
        }
        let document = next.run(ctx, query, variables).await?;
        let mut documents = self.documents();
        if documents.len() >= MAX_QUERIES
            && let Some(evicted) = documents.keys().next().cloned()
        {
            documents.remove(&evicted);
        }
        documents.insert(query.into(), Arc::new(document.clone()));
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema, SimpleObject};

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

    fn schema(cache: &ParsedQueryCache) -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(cache.clone())
            .limit_depth(2)
            .finish()
    }

    #[tokio::test]
    async fn a_repeated_query_is_parsed_once_and_still_executes_with_its_variables() {
        let cache = ParsedQueryCache::default();
        let schema = schema(&cache);
        let query = "query($n: Int!) { double(n: $n) }";
        for n in [2, 5, 21] {
            let response = schema
                .execute(
                    Request::new(query)
                        .variables(Variables::from_json(serde_json::json!({ "n": n }))),
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
        let schema = schema(&cache);
        for _ in 0..2 {
            let response = schema.execute("{ double(n: ").await;
            assert_eq!(response.errors.len(), 1);
        }
        assert!(cache.is_empty());
        assert_eq!(cache.hits(), 0);

        // Depth 3 against a limit of 2: rejected by validation, which runs
        // after parsing, so the second request is a cache hit and is
        // rejected all the same.
        let too_deep = "{ node { child { child { value } } } }";
        for _ in 0..2 {
            let response = schema.execute(too_deep).await;
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
