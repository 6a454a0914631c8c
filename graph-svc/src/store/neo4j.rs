//! [`GraphStore`] on Neo4j over Bolt (`neo4rs` 0.8), with a transactional
//! outbox ([`Outbox`]) for the follow events.
//!
//! The Cypher and the model live in [`cypher`]. In short:
//!
//! - **Follow + event agree.** A follow or unfollow is one explicit
//!   transaction: lock both users (smaller id first, so opposite follows
//!   cannot deadlock), MERGE or DELETE the edge, move both maintained
//!   counts, create the outbox node with the counts after the change, commit.
//!   Either all of it is visible or none. A relay publishes the outbox to the
//!   stream; a republished entry is dropped by event id.
//! - **Idempotent.** Under both locks, MERGE finds an existing edge, and
//!   only a created (or deleted) edge moves counts and writes an event.
//! - **Counts never scan.** `followers`/`following` are node properties
//!   kept in step by the same transactions.
//! - **Stable paging.** An edge's `seq` is drawn while both users are
//!   locked, so each user's follows get increasing seqs in commit order;
//!   pages are `seq < cursor` seeks in composite relationship indexes,
//!   newest first, so follows made while someone pages sort before their
//!   cursor and existing edges never move.
//! - **Batch reads** are one `UNWIND` query each. Batch writes
//!   (`create_users`, `follow_many`) are not batched here: they use the
//!   trait's defaults, one transaction per item after up-front checks.
//!
//! Transactions that fail with a transient error (deadlock, leader switch)
//! are retried a few times; every call is bounded by [`REQUEST_TIMEOUT`].
//!
//! `neo4rs` 0.8 offers Bolt 4.1 and 4.0 in its handshake, which Neo4j 4.4
//! and 5.x still accept; it does no client-side routing, so a `neo4j://`
//! URI reaches the one server it names.
//!
//! Not run against a live Neo4j in this repository's CI; the conformance
//! suite runs against it when `NEO4J_URI` is set.

mod cypher;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{ConfigBuilder, Graph, Neo4jErrorKind, Query, Row, Txn, query};
use prost::Message as _;
use warble_mesh::backends::Neo4jConfig;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLogError};
use warble_mesh::outbox::{Outbox, OutboxEntry};
use warble_mesh::snowflake::{self, SnowflakeGenerator};
use warble_mesh::time::now_ms;
use warble_proto::events::v1::{Event, Followed, Unfollowed, event::Payload};

use super::{
    EdgePosition, FollowChange, FollowCounts, FollowEdge, FollowPage, GraphStore, NewUser,
    PageQuery, User, distinct_users, user_not_found, username_taken,
};
use crate::error::GraphError;
use cypher::{Cypher, Names};

/// Longest any one store call may take: `neo4rs` has no request timeout of
/// its own, and a hung server must not hang the gRPC handler.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up waits for new indexes to come online.
const SCHEMA_ONLINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of a transaction that failed with a transient error.
const TRANSACTION_ATTEMPTS: u32 = 4;
/// Most edges one filtered page looks at (the embedded store's budget is
/// larger; each entry here is a row on the wire).
const SCAN_BUDGET: usize = 1_000;
/// Published outbox nodes are kept this long: they hold the largest event
/// ids, which a restarted id generator must stay above.
const PUBLISHED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Pruning of published outbox nodes runs at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The database `neo4rs` names when the config leaves it empty (it always
/// sends one): the default database of a fresh server.
const DEFAULT_DATABASE: &str = "neo4j";

/// The graph store on Neo4j. Cheap to clone.
#[derive(Clone)]
pub struct Neo4jGraphStore {
    graph: Graph,
    cypher: Arc<Cypher>,
    ids: Arc<SnowflakeGenerator>,
    uri: Arc<str>,
    /// When published outbox nodes were last pruned (Unix ms).
    last_prune_ms: Arc<AtomicU64>,
}

impl std::fmt::Debug for Neo4jGraphStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jGraphStore")
            .field("uri", &self.uri)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl From<neo4rs::Error> for GraphError {
    fn from(error: neo4rs::Error) -> Self {
        Self::backend(error)
    }
}

impl From<neo4rs::DeError> for GraphError {
    fn from(error: neo4rs::DeError) -> Self {
        Self::backend(error)
    }
}

impl Neo4jGraphStore {
    /// Connects to the server in `config`, checks it answers, creates the
    /// constraints and indexes if missing and waits until they are online,
    /// and makes `ids` issue only ids above every id already stored.
    pub async fn connect(
        config: &Neo4jConfig,
        ids: Arc<SnowflakeGenerator>,
    ) -> Result<Self, GraphError> {
        Self::connect_in_namespace(config, ids, "").await
    }

    /// [`Neo4jGraphStore::connect`] with labels, relationship type and
    /// schema names prefixed by `namespace` (`[A-Za-z][A-Za-z0-9_]*`), so
    /// test runs sharing one database (Community has only one) never meet.
    pub async fn connect_in_namespace(
        config: &Neo4jConfig,
        ids: Arc<SnowflakeGenerator>,
        namespace: &str,
    ) -> Result<Self, GraphError> {
        let valid = namespace.is_empty()
            || (namespace.starts_with(|c: char| c.is_ascii_alphabetic())
                && namespace
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            return Err(GraphError::invalid(
                "namespace",
                "must be empty or [A-Za-z][A-Za-z0-9_]*",
            ));
        }
        let database = if config.database.is_empty() {
            DEFAULT_DATABASE
        } else {
            &config.database
        };
        let driver_config = ConfigBuilder::default()
            .uri(config.uri.as_str())
            .user(config.user.as_str())
            .password(config.password.expose())
            .db(database)
            .max_connections(usize::try_from(config.max_connections).unwrap_or(16))
            .build()?;
        let store = Self {
            graph: Graph::connect(driver_config).await?,
            cypher: Arc::new(Cypher::new(&Names::new(namespace))),
            ids,
            // Only for messages: a URI may carry credentials.
            uri: warble_mesh::secret::redact_url(&config.uri).into(),
            last_prune_ms: Arc::new(AtomicU64::new(0)),
        };
        // The pool connects lazily: this is the connectivity (and
        // credentials) check. An explicit transaction, because auto-commit
        // calls retry a refused connection for up to a minute and would hide
        // the cause behind a timeout.
        store
            .within("a connectivity check", async {
                let mut txn = store.graph.start_txn().await?;
                txn_rows(&mut txn, query(&store.cypher.ping)).await?;
                txn.rollback().await
            })
            .await?;
        store.create_schema().await?;
        let max_id = store
            .within("reading the largest stored id", store.max_stored_id())
            .await?;
        if let Some(max_id) = max_id {
            store.ids.resume_after(max_id);
        }
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), GraphError> {
        for statement in &self.cypher.schema {
            self.within("creating the schema", self.graph.run(query(statement)))
                .await?;
        }
        // New indexes populate in the background; a page read before they
        // are online would scan. Wait, and report one that failed.
        let deadline = tokio::time::Instant::now() + SCHEMA_ONLINE_TIMEOUT;
        loop {
            let rows = self
                .within(
                    "listing indexes",
                    self.rows(query(&self.cypher.show_indexes)),
                )
                .await?;
            let states: HashMap<String, String> = rows
                .iter()
                .map(|row| Ok((row.get("name")?, row.get("state")?)))
                .collect::<Result<_, GraphError>>()?;
            let mut waiting = Vec::new();
            for name in &self.cypher.schema_names {
                match states.get(name).map(String::as_str) {
                    Some("ONLINE") => {}
                    Some("FAILED") => {
                        return Err(GraphError::backend(format!(
                            "index or constraint `{name}` failed to build"
                        )));
                    }
                    _ => waiting.push(name.as_str()),
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GraphError::backend(format!(
                    "indexes not online after {SCHEMA_ONLINE_TIMEOUT:?}: {}",
                    waiting.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn max_stored_id(&self) -> Result<Option<u64>, GraphError> {
        let rows = self.rows(query(&self.cypher.max_ids)).await?;
        let max = rows
            .first()
            .map(|row| row.get::<Option<i64>>("max_id"))
            .transpose()?
            .flatten();
        Ok(max.map(from_db))
    }

    /// Bounds `work` by [`REQUEST_TIMEOUT`], naming `what` if it runs out.
    async fn within<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, impl Into<GraphError>>>,
    ) -> Result<T, GraphError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(GraphError::backend(format!(
                "Neo4j at {} did not finish {what} within {REQUEST_TIMEOUT:?}",
                self.uri
            ))),
        }
    }

    /// Runs an auto-commit read and collects its rows.
    async fn rows(&self, query: Query) -> Result<Vec<Row>, neo4rs::Error> {
        let mut stream = self.graph.execute(query).await?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await? {
            rows.push(row);
        }
        Ok(rows)
    }

    async fn user_exists(&self, id: u64) -> Result<bool, GraphError> {
        let rows = self
            .within(
                "a user lookup",
                self.rows(query(&self.cypher.user_exists).param("id", to_db(id))),
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Follows or unfollows in one transaction, retrying transient failures.
    async fn change_follow(
        &self,
        follower: u64,
        followee: u64,
        follow: bool,
    ) -> Result<FollowChange, GraphError> {
        distinct_users(follower, followee)?;
        let mut attempt = 1;
        loop {
            let outcome = tokio::time::timeout(
                REQUEST_TIMEOUT,
                self.follow_transaction(follower, followee, follow),
            )
            .await;
            match outcome {
                Ok(Ok(decided)) => return decided,
                Ok(Err(error)) if is_transient(&error) && attempt < TRANSACTION_ATTEMPTS => {
                    tracing::debug!(%error, attempt, "transient Neo4j failure; retrying the follow");
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                    attempt += 1;
                }
                Ok(Err(error)) => return Err(error.into()),
                Err(_) => {
                    return Err(GraphError::backend(format!(
                        "Neo4j at {} did not finish a follow within {REQUEST_TIMEOUT:?}",
                        self.uri
                    )));
                }
            }
        }
    }

    /// One attempt. The outer `Result` is the driver's (retryable or not);
    /// the inner one is the store's answer. A transaction dropped without
    /// commit is rolled back (the pool resets the connection).
    async fn follow_transaction(
        &self,
        follower: u64,
        followee: u64,
        follow: bool,
    ) -> Result<Result<FollowChange, GraphError>, neo4rs::Error> {
        let mut txn = self.graph.start_txn().await?;
        // Lock in id order: two users following each other at once take
        // the same two locks in the same order.
        let (first, second) = (follower.min(followee), follower.max(followee));
        let first_counts = self.lock_user(&mut txn, first).await?;
        let second_counts = self.lock_user(&mut txn, second).await?;
        let counts_of = |id: u64| {
            if id == first {
                first_counts
            } else {
                second_counts
            }
        };
        let (Some(follower_counts), Some(followee_counts)) =
            (counts_of(follower), counts_of(followee))
        else {
            txn.rollback().await?;
            let missing = if counts_of(follower).is_none() {
                follower
            } else {
                followee
            };
            return Ok(Err(user_not_found(missing)));
        };
        let unchanged = FollowChange {
            changed: false,
            followee_followers: followee_counts.followers,
            follower_following: follower_counts.following,
        };

        let (event, change) = if follow {
            let seq = match self.ids.next_id() {
                Ok(seq) => seq,
                Err(error) => return Ok(Err(error.into())),
            };
            let rows = txn_rows(
                &mut txn,
                query(&self.cypher.merge_follow)
                    .param("follower", to_db(follower))
                    .param("followee", to_db(followee))
                    .param("seq", to_db(seq)),
            )
            .await?;
            let Some(row) = rows.first() else {
                txn.rollback().await?;
                return Ok(Err(GraphError::backend(
                    "MERGE of a follow returned no row",
                )));
            };
            if !row
                .get::<bool>("created")
                .map_err(neo4rs::Error::DeserializationError)?
            {
                txn.rollback().await?;
                return Ok(Ok(unchanged));
            }
            let change = change_from(row)?;
            let event_id = match self.ids.next_id() {
                Ok(id) => id,
                Err(error) => return Ok(Err(error.into())),
            };
            let at = ms_of(seq);
            let event = Event {
                event_id,
                occurred_at_ms: at,
                payload: Some(Payload::Followed(Followed {
                    follower_id: follower,
                    followee_id: followee,
                    followed_at_ms: at,
                    followee_followers_count: change.followee_followers,
                    follower_following_count: change.follower_following,
                })),
            };
            (event, change)
        } else {
            let rows = txn_rows(
                &mut txn,
                query(&self.cypher.delete_follow)
                    .param("follower", to_db(follower))
                    .param("followee", to_db(followee)),
            )
            .await?;
            let Some(row) = rows.first() else {
                txn.rollback().await?;
                return Ok(Ok(unchanged));
            };
            let change = change_from(row)?;
            let event_id = match self.ids.next_id() {
                Ok(id) => id,
                Err(error) => return Ok(Err(error.into())),
            };
            let at = ms_of(event_id);
            let event = Event {
                event_id,
                occurred_at_ms: at,
                payload: Some(Payload::Unfollowed(Unfollowed {
                    follower_id: follower,
                    followee_id: followee,
                    unfollowed_at_ms: at,
                    followee_followers_count: change.followee_followers,
                    follower_following_count: change.follower_following,
                })),
            };
            (event, change)
        };
        // Keyed by the followee: fan-out applies one key's events in order,
        // and the followee's tweets are keyed by them too.
        txn.run(
            query(&self.cypher.create_outbox)
                .param("event_id", to_db(event.event_id))
                .param("stream", DOMAIN_EVENTS_STREAM)
                .param("event_key", to_db(followee))
                .param("payload", event.encode_to_vec()),
        )
        .await?;
        txn.commit().await?;
        Ok(Ok(change))
    }

    /// Takes user `id`'s write lock for the rest of `txn`; its counts, or
    /// `None` when there is no such user.
    async fn lock_user(
        &self,
        txn: &mut Txn,
        id: u64,
    ) -> Result<Option<FollowCounts>, neo4rs::Error> {
        let rows = txn_rows(txn, query(&self.cypher.lock_user).param("id", to_db(id))).await?;
        rows.first()
            .map(|row| {
                Ok(FollowCounts {
                    followers: count(row.get::<Option<i64>>("followers")?),
                    following: count(row.get::<Option<i64>>("following")?),
                })
            })
            .transpose()
            .map_err(neo4rs::Error::DeserializationError)
    }

    async fn page(
        &self,
        user: u64,
        page: PageQuery,
        min_followers: Option<u64>,
    ) -> Result<FollowPage, GraphError> {
        if !self.user_exists(user).await? {
            return Err(user_not_found(user));
        }
        let limit = page.limit.max(1);
        let filtered = min_followers.is_some_and(|min| min > 0);
        // An unfiltered page needs one entry past the page to know a next
        // one exists; a filtered page scans up to its budget.
        let budget = if filtered {
            SCAN_BUDGET.max(limit + 1)
        } else {
            limit + 1
        };
        let before = page.after.map_or(i64::MAX, |after| to_db(after.follow_seq));
        let statement = if min_followers.is_some() {
            &self.cypher.following_page
        } else {
            &self.cypher.followers_page
        };
        let rows = self
            .within(
                "a follow list page",
                self.rows(
                    query(statement)
                        .param("user", to_db(user))
                        .param("before", before)
                        .param("limit", i64::try_from(budget + 1).unwrap_or(i64::MAX)),
                ),
            )
            .await?;
        let entries = rows
            .iter()
            .map(|row| {
                let followers = if min_followers.is_some() {
                    count(row.get::<Option<i64>>("followers")?)
                } else {
                    0
                };
                Ok(ListEntry {
                    user_id: from_db(row.get("user_id")?),
                    follow_seq: from_db(row.get("seq")?),
                    followers,
                })
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        let min = min_followers.unwrap_or(0);
        Ok(page_of(entries, limit, budget, |entry| {
            entry.followers >= min
        }))
    }

    async fn prune_published(&self) -> Result<(), GraphError> {
        let now = now_ms();
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        let every = u64::try_from(PRUNE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < every
            || self
                .last_prune_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let retention = u64::try_from(PUBLISHED_RETENTION.as_millis()).unwrap_or(u64::MAX);
        let cutoff = snowflake::min_id_at(now.saturating_sub(retention));
        self.within(
            "pruning the outbox",
            self.graph
                .run(query(&self.cypher.prune_published).param("cutoff", to_db(cutoff))),
        )
        .await
    }
}

/// Runs a statement in `txn` and collects its rows (a stream must be
/// drained before the transaction's next statement).
async fn txn_rows(txn: &mut Txn, query: Query) -> Result<Vec<Row>, neo4rs::Error> {
    let mut stream = txn.execute(query).await?;
    let mut rows = Vec::new();
    while let Some(row) = stream.next(txn.handle()).await? {
        rows.push(row);
    }
    Ok(rows)
}

/// The counts a follow statement returned.
fn change_from(row: &Row) -> Result<FollowChange, neo4rs::Error> {
    let read = || -> Result<FollowChange, neo4rs::DeError> {
        Ok(FollowChange {
            changed: true,
            followee_followers: count(row.get::<Option<i64>>("followers")?),
            follower_following: count(row.get::<Option<i64>>("following")?),
        })
    };
    read().map_err(neo4rs::Error::DeserializationError)
}

/// Whether retrying the whole transaction may succeed.
fn is_transient(error: &neo4rs::Error) -> bool {
    match error {
        neo4rs::Error::Neo4j(error) => error.kind() == Neo4jErrorKind::Transient,
        neo4rs::Error::ConnectionError | neo4rs::Error::IOError { .. } => true,
        _ => false,
    }
}

/// One edge of a list as read, with the other user's follower count when
/// the list is filtered by it.
struct ListEntry {
    user_id: u64,
    follow_seq: u64,
    followers: u64,
}

/// Builds a page from entries in list order (newest first), keeping those
/// `keep` accepts: at most `limit` edges, looking at no more than `budget`
/// entries. The next page starts after the last entry *looked at*, so
/// entries a filter rejected are not read again; the same rules as the
/// embedded store's scan.
fn page_of(
    entries: Vec<ListEntry>,
    limit: usize,
    budget: usize,
    keep: impl Fn(&ListEntry) -> bool,
) -> FollowPage {
    let mut edges = Vec::new();
    let mut last_seen = None;
    for (scanned, entry) in entries.into_iter().enumerate() {
        // Reaching here means another entry exists, so a next page does too.
        if scanned == budget {
            return FollowPage {
                edges,
                next: last_seen,
            };
        }
        let position = EdgePosition {
            follow_seq: entry.follow_seq,
            user_id: entry.user_id,
        };
        if keep(&entry) {
            if edges.len() == limit {
                return FollowPage {
                    edges,
                    next: last_seen,
                };
            }
            edges.push(FollowEdge {
                user_id: entry.user_id,
                followed_at_ms: ms_of(entry.follow_seq),
                position,
            });
        }
        last_seen = Some(position);
    }
    FollowPage { edges, next: None }
}

fn ms_of(id: u64) -> i64 {
    i64::try_from(snowflake::decode(id).unix_ms).unwrap_or(i64::MAX)
}

/// A maintained count as stored (never negative by construction).
fn count(value: Option<i64>) -> u64 {
    u64::try_from(value.unwrap_or(0)).unwrap_or(0)
}

/// Ids are Snowflake ids below 2^63 and stored bit for bit as Cypher
/// integers, so every value round-trips and seqs keep their order.
fn to_db(id: u64) -> i64 {
    id as i64
}

fn from_db(value: i64) -> u64 {
    value as u64
}

fn user_from_row(row: &Row) -> Result<User, GraphError> {
    Ok(User {
        id: from_db(row.get("id")?),
        username: row.get("username")?,
        display_name: row.get("display_name")?,
        bio: row.get::<Option<String>>("bio")?.unwrap_or_default(),
        created_at_ms: row.get("created_at_ms")?,
    })
}

// `create_users` and `follow_many` keep the trait's defaults: one
// transaction per item, not one per batch (see their docs for what that
// means when a batch fails part-way).
#[async_trait]
impl GraphStore for Neo4jGraphStore {
    async fn create_user(&self, user: NewUser) -> Result<User, GraphError> {
        let id = self.ids.next_id()?;
        let created_at_ms = ms_of(id);
        let statement = query(&self.cypher.create_user)
            .param("id", to_db(id))
            .param("username", user.username.as_str())
            .param("username_lower", user.username.to_ascii_lowercase())
            .param("display_name", user.display_name.as_str())
            .param("bio", user.bio.as_str())
            .param("created_at_ms", created_at_ms);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.graph.run(statement)).await {
            Ok(Ok(())) => {}
            // The unique constraint on the lower-cased username (ids are fresh).
            Ok(Err(neo4rs::Error::Neo4j(error)))
                if error.code() == "Neo.ClientError.Schema.ConstraintValidationFailed" =>
            {
                return Err(username_taken(&user.username));
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => {
                return Err(GraphError::backend(format!(
                    "Neo4j at {} did not create a user within {REQUEST_TIMEOUT:?}",
                    self.uri
                )));
            }
        }
        Ok(User {
            id,
            username: user.username,
            display_name: user.display_name,
            bio: user.bio,
            created_at_ms,
        })
    }

    async fn get_users(&self, ids: &[u64]) -> Result<Vec<Option<User>>, GraphError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = ids.iter().copied().map(to_db).collect();
        let rows = self
            .within(
                "a user batch",
                self.rows(query(&self.cypher.get_users).param("ids", wanted)),
            )
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let user = user_from_row(row)?;
            found.insert(user.id, user);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, GraphError> {
        let rows = self
            .within(
                "a username lookup",
                self.rows(
                    query(&self.cypher.get_user_by_username)
                        .param("username_lower", username.to_ascii_lowercase()),
                ),
            )
            .await?;
        rows.first().map(user_from_row).transpose()
    }

    async fn follow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError> {
        self.change_follow(follower, followee, true).await
    }

    async fn unfollow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError> {
        self.change_follow(follower, followee, false).await
    }

    async fn list_followers(&self, user: u64, page: PageQuery) -> Result<FollowPage, GraphError> {
        self.page(user, page, None).await
    }

    async fn list_following(
        &self,
        user: u64,
        page: PageQuery,
        min_followers: u64,
    ) -> Result<FollowPage, GraphError> {
        self.page(user, page, Some(min_followers)).await
    }

    async fn follow_counts(&self, ids: &[u64]) -> Result<Vec<Option<FollowCounts>>, GraphError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = ids.iter().copied().map(to_db).collect();
        let rows = self
            .within(
                "a counts batch",
                self.rows(query(&self.cypher.follow_counts).param("ids", wanted)),
            )
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            found.insert(
                from_db(row.get("id")?),
                FollowCounts {
                    followers: count(row.get("followers")?),
                    following: count(row.get("following")?),
                },
            );
        }
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    async fn is_following(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let followers: Vec<i64> = pairs.iter().map(|&(a, _)| to_db(a)).collect();
        let followees: Vec<i64> = pairs.iter().map(|&(_, b)| to_db(b)).collect();
        let rows = self
            .within(
                "a follow check batch",
                self.rows(
                    query(&self.cypher.is_following)
                        .param("followers", followers)
                        .param("followees", followees),
                ),
            )
            .await?;
        let mut answers = vec![false; pairs.len()];
        for row in &rows {
            let index = usize::try_from(row.get::<i64>("i")?).unwrap_or(usize::MAX);
            if let Some(answer) = answers.get_mut(index) {
                *answer = row.get("follows")?;
            }
        }
        Ok(answers)
    }
}

#[async_trait]
impl Outbox for Neo4jGraphStore {
    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, EventLogError> {
        let read = async {
            let rows = self
                .within(
                    "reading the outbox",
                    self.rows(
                        query(&self.cypher.pending)
                            .param("max", i64::try_from(max).unwrap_or(i64::MAX)),
                    ),
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(OutboxEntry {
                        handle: row.get::<i64>("event_id")?.to_string(),
                        stream: row.get("stream")?,
                        key: from_db(row.get("event_key")?),
                        payload: row.get("payload")?,
                    })
                })
                .collect::<Result<Vec<_>, GraphError>>()
        };
        read.await.map_err(outbox_error)
    }

    async fn mark_published(&self, handles: &[String]) -> Result<(), EventLogError> {
        let mark = async {
            let ids = handles
                .iter()
                .map(|handle| {
                    handle.parse::<i64>().map_err(|_| {
                        GraphError::backend(format!("malformed outbox handle `{handle}`"))
                    })
                })
                .collect::<Result<Vec<i64>, GraphError>>()?;
            self.within(
                "marking outbox entries",
                self.graph
                    .run(query(&self.cypher.mark_published).param("ids", ids)),
            )
            .await?;
            self.prune_published().await
        };
        mark.await.map_err(outbox_error)
    }
}

fn outbox_error(error: GraphError) -> EventLogError {
    EventLogError::Unavailable(format!(
        "Neo4j outbox: {}",
        warble_mesh::status::ErrorChain(&error)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(seqs: &[(u64, u64)]) -> Vec<ListEntry> {
        seqs.iter()
            .map(|&(follow_seq, followers)| ListEntry {
                user_id: follow_seq,
                follow_seq,
                followers,
            })
            .collect()
    }

    #[test]
    fn unfiltered_pages_stop_at_the_limit_and_know_if_more_follow() {
        let page = page_of(entries(&[(9, 0), (7, 0), (5, 0)]), 2, 3, |_| true);
        assert_eq!(
            page.edges.iter().map(|e| e.user_id).collect::<Vec<_>>(),
            [9, 7]
        );
        assert_eq!(page.next.map(|p| p.follow_seq), Some(7));
        let last = page_of(entries(&[(5, 0)]), 2, 3, |_| true);
        assert_eq!(last.edges.len(), 1);
        assert_eq!(last.next, None);
    }

    #[test]
    fn filtered_pages_resume_after_the_last_entry_looked_at() {
        let rows = entries(&[(9, 0), (8, 5), (7, 0), (6, 0), (5, 5)]);
        let page = page_of(rows, 5, 3, |entry| entry.followers >= 5);
        assert_eq!(
            page.edges.iter().map(|e| e.user_id).collect::<Vec<_>>(),
            [8]
        );
        assert_eq!(
            page.next.map(|p| p.follow_seq),
            Some(7),
            "three looked at, the budget"
        );
    }

    #[test]
    fn namespaces_prefix_every_label_and_schema_name() {
        let cypher = Cypher::new(&Names::new("T1_"));
        assert!(cypher.create_user.contains(":T1_User"));
        assert!(cypher.merge_follow.contains(":T1_FOLLOWS"));
        assert!(cypher.create_outbox.contains(":T1_Outbox:T1_OutboxPending"));
        assert!(
            cypher
                .schema_names
                .iter()
                .all(|name| name.starts_with("warble_t1_"))
        );
        let production = Cypher::new(&Names::new(""));
        assert!(production.create_user.contains("(u:User "));
        assert!(
            production
                .schema_names
                .contains(&"warble_user_id".to_owned())
        );
        assert!(
            production
                .schema
                .iter()
                .all(|s| s.contains("IF NOT EXISTS"))
        );
    }

    #[test]
    fn ids_round_trip_through_cypher_integers() {
        for id in [0, 1, 1 << 62, u64::MAX] {
            assert_eq!(from_db(to_db(id)), id);
        }
    }
}
