//! The one way a GraphQL request runs: over HTTP (GET or POST), over a
//! WebSocket, and in tests. [`EdgeExecutor`] takes the parsed document from
//! the cache or parses it, admits it ([`crate::admission`]: depth,
//! introspection, expanded size), lets async-graphql validate (complexity)
//! and execute it, keeps the document once it ran, and gives every error
//! its stable code. A request from an identity that has not registered
//! runs only if it registers ([`identities::only_registers`]).

use std::future::Future as _;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use async_graphql::futures_util::stream::{self, BoxStream, Stream, StreamExt as _};
use async_graphql::{Data, Executor, Request, Response};
use tracing::{Instrument as _, Span};

use crate::admission::{self, DocumentLimits, Refusal};
use crate::auth::identities;
use crate::config::LimitsConfig;
use crate::error::{ErrorCode, gql_error};
use crate::operation::{self, Operation};
use crate::persisted::{DocumentPolicy, PersistedQueries};
use crate::query_cache::ParsedQueryCache;
use crate::schema::{WarbleSchema, classify_errors};
use crate::websocket::{OperationBudget, TokenExpiry, connection_value};

/// The gateway's executor (cheap to clone).
#[derive(Clone)]
pub struct EdgeExecutor {
    schema: WarbleSchema,
    cache: ParsedQueryCache,
    limits: DocumentLimits,
    documents: DocumentPolicy,
}

impl EdgeExecutor {
    /// An executor over `schema` admitting documents under `limits`, with
    /// APQ on and any document allowed.
    pub fn new(schema: WarbleSchema, limits: &LimitsConfig) -> Self {
        Self::with_documents(
            schema,
            limits,
            DocumentPolicy::Open {
                apq: true,
                store: PersistedQueries::default(),
            },
        )
    }

    /// An executor with an explicit persisted-documents policy.
    pub fn with_documents(
        schema: WarbleSchema,
        limits: &LimitsConfig,
        documents: DocumentPolicy,
    ) -> Self {
        Self {
            schema,
            cache: ParsedQueryCache::default(),
            limits: DocumentLimits {
                max_depth: limits.max_depth,
            },
            documents,
        }
    }

    /// The schema underneath.
    pub fn schema(&self) -> &WarbleSchema {
        &self.schema
    }

    /// How persisted documents (APQ, trusted documents) are handled.
    pub fn documents(&self) -> &DocumentPolicy {
        &self.documents
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
        if request.query.is_empty() {
            return Err(Refusal::NoQuery);
        }
        if let Some(document) = self.cache.lookup(&request.query) {
            request.set_parsed_query(document);
            return Ok(None);
        }
        admission::check_nesting(&request.query)?;
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
        let started = Instant::now();
        let persisted = match self.documents.resolve(&mut request) {
            Ok(resolved) => resolved,
            Err(error) => {
                operation::record_unidentified(started.elapsed());
                return Response::from_errors(vec![error]);
            }
        };
        let new_query = match self.admit(&mut request) {
            Ok(new_query) => new_query,
            Err(refusal) => {
                operation::record_unidentified(started.elapsed());
                return refused(refusal);
            }
        };
        let operation = Operation::of(&mut request);
        // An identity that has not registered may only register; a syntax
        // error is left to the executor to report.
        if identities::is_unregistered(&request.data) {
            let operation_name = request.operation_name.clone();
            if let Ok(document) = request.parsed_query()
                && !identities::only_registers(document, operation_name.as_deref())
            {
                return Response::from_errors(vec![
                    identities::register_first().into_server_error(Default::default()),
                ]);
            }
        }
        // Only a new document is copied, and only to be cached.
        let document = new_query
            .as_ref()
            .and_then(|_| request.parsed_query().ok().cloned());
        let apq_query = persisted
            .remember_as
            .map(|hash| (hash, request.query.clone()));
        let span = operation.as_ref().map_or_else(Span::none, Operation::span);
        let mut response = self.schema.execute(request).instrument(span).await;
        match &operation {
            Some(operation) => operation.record(started.elapsed(), !response.errors.is_empty()),
            None => operation::record_unidentified(started.elapsed()),
        }
        let ran = !response.errors.iter().any(|error| error.path.is_empty());
        if ran && let (Some(query), Some(document)) = (new_query, document) {
            self.cache.remember(&query, document);
        }
        if ran
            && let (Some((hash, query)), DocumentPolicy::Open { store, .. }) =
                (apq_query, &self.documents)
        {
            store.remember(&hash, &query);
        }
        classify_errors(&mut response);
        response
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if let Err(error) = self.documents.resolve(&mut request) {
            let response = Response::from_errors(vec![error]);
            return stream::once(async move { response }).boxed();
        }
        let started = Instant::now();
        if let Err(refusal) = self.admit(&mut request) {
            operation::record_unidentified(started.elapsed());
            let response = refused(refusal);
            return stream::once(async move { response }).boxed();
        }
        // A subscription is counted when it starts (its "duration" is the
        // start alone: it then runs as long as the client listens).
        let span = match Operation::of(&mut request) {
            Some(operation) => {
                operation.record(started.elapsed(), false);
                operation.span()
            }
            None => {
                operation::record_unidentified(started.elapsed());
                Span::none()
            }
        };
        let connection = session_data.unwrap_or_default();
        // Over a WebSocket, each operation holds a slot of its connection's
        // budget for as long as it runs.
        let slot = match connection_value::<OperationBudget>(&connection) {
            Some(budget) => match budget.try_acquire() {
                Some(slot) => Some(slot),
                None => {
                    let response = Response::from_errors(vec![
                        gql_error(
                            ErrorCode::RateLimited,
                            format!(
                                "at most {} operations may run at once on one connection",
                                budget.max()
                            ),
                        )
                        .into_server_error(Default::default()),
                    ]);
                    return stream::once(async move { response }).boxed();
                }
            },
            None => None,
        };
        let expiry = connection_value::<TokenExpiry>(&connection).copied();
        let mut executing = self
            .schema
            .execute_stream_with_session_data(request, connection);
        // The operation's span is current whenever the stream is polled, so
        // the downstream calls it makes join the operation's trace.
        let responses = stream::poll_fn(move |cx| {
            let _entered = span.enter();
            executing.as_mut().poll_next(cx)
        })
        .map(move |mut response| {
            // The slot goes back when the stream is dropped.
            let _running = &slot;
            classify_errors(&mut response);
            response
        });
        match expiry {
            Some(expiry) => until_token_expiry(responses, expiry),
            None => responses.boxed(),
        }
    }
}

/// `responses` until `expiry`, then one `UNAUTHENTICATED` error and the end:
/// a subscription does not outlive the token it was opened with.
fn until_token_expiry(
    responses: impl Stream<Item = Response> + Send + 'static,
    expiry: TokenExpiry,
) -> BoxStream<'static, Response> {
    let mut responses = responses.boxed();
    let mut expired = Box::pin(tokio::time::sleep_until(expiry.0));
    let mut ended = false;
    stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        if expired.as_mut().poll(cx).is_ready() {
            ended = true;
            let error = gql_error(
                ErrorCode::Unauthenticated,
                "the token expired: reconnect with a fresh one",
            );
            return Poll::Ready(Some(Response::from_errors(vec![
                error.into_server_error(Default::default()),
            ])));
        }
        let next = responses.poll_next_unpin(cx);
        if let Poll::Ready(None) = next {
            ended = true;
        }
        next
    })
    .boxed()
}
