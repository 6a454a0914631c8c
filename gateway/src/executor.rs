//! The one way a GraphQL request runs: over HTTP (GET or POST), over a
//! WebSocket, and in tests. [`EdgeExecutor`] takes the parsed document from
//! the cache or parses it, admits it ([`crate::admission`]: depth,
//! introspection, expanded size), lets async-graphql validate (complexity)
//! and execute it, keeps the document once it ran, and gives every error
//! its stable code.

use std::sync::Arc;

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt as _};
use async_graphql::{Data, Executor, Request, Response};

use crate::admission::{self, DocumentLimits, Refusal};
use crate::config::LimitsConfig;
use crate::query_cache::ParsedQueryCache;
use crate::schema::{WarbleSchema, classify_errors};

/// The gateway's executor (cheap to clone).
#[derive(Clone)]
pub struct EdgeExecutor {
    schema: WarbleSchema,
    cache: ParsedQueryCache,
    limits: DocumentLimits,
}

impl EdgeExecutor {
    /// An executor over `schema` admitting documents under `limits`.
    pub fn new(schema: WarbleSchema, limits: &LimitsConfig) -> Self {
        Self {
            schema,
            cache: ParsedQueryCache::default(),
            limits: DocumentLimits {
                max_depth: limits.max_depth,
            },
        }
    }

    /// The schema underneath.
    pub fn schema(&self) -> &WarbleSchema {
        &self.schema
    }

    /// The parsed-document cache.
    pub fn query_cache(&self) -> &ParsedQueryCache {
        &self.cache
    }

    /// Gives `request` its parsed document and admits it. `Ok(Some(copy))`
    /// for a new cacheable document, to keep once it has run; `Err` is why
    /// it was refused. A syntax error is left to the executor, which
    /// reports it as it always has.
    fn admit(&self, request: &mut Request) -> Result<Option<Arc<str>>, Refusal> {
        if let Some(document) = self.cache.lookup(&request.query) {
            request.set_parsed_query(document);
            return Ok(None);
        }
        let Ok(document) = request.parsed_query() else {
            return Ok(None);
        };
        admission::check(document, self.limits)?;
        Ok(ParsedQueryCache::is_cacheable(&request.query).then(|| request.query.as_str().into()))
    }
}

/// The answer to a refused document.
fn refused(refusal: Refusal) -> Response {
    Response::from_errors(vec![refusal.into_server_error()])
}

/// Whether `response` failed before execution (syntax, admission,
/// validation): no data, and only errors that belong to no field. Such a
/// request is the client's mistake (HTTP 400), and its document is never
/// cached.
pub fn failed_before_execution(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

impl Executor for EdgeExecutor {
    async fn execute(&self, mut request: Request) -> Response {
        let new_query = match self.admit(&mut request) {
            Ok(new_query) => new_query,
            Err(refusal) => return refused(refusal),
        };
        // Only a new document is copied, and only to be cached.
        let document = new_query
            .as_ref()
            .and_then(|_| request.parsed_query().ok().cloned());
        let mut response = self.schema.execute(request).await;
        if let (Some(query), Some(document)) = (new_query, document)
            && !response.errors.iter().any(|error| error.path.is_empty())
        {
            self.cache.remember(&query, document);
        }
        classify_errors(&mut response);
        response
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        match self.admit(&mut request) {
            Err(refusal) => {
                let response = refused(refusal);
                stream::once(async move { response }).boxed()
            }
            Ok(_) => self
                .schema
                .execute_stream_with_session_data(request, session_data.unwrap_or_default())
                .map(|mut response| {
                    classify_errors(&mut response);
                    response
                })
                .boxed(),
        }
    }
}
