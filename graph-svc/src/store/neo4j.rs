//! [`GraphStore`] on Neo4j over Bolt (`neo4rs` 0.8), with a transactional
//! outbox ([`Outbox`]) for its events.
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
//! - **Blocks and mutes** take the same two locks. A block deletes the
//!   follows both ways (moving counts and writing an `Unfollowed` each as
//!   an unfollow does), creates the `BLOCKS` edge and its `Blocked`, all in
//!   one transaction; a follow checks for a block under those locks, so a
//!   block and a follow racing never leave both. Profile edits lock the
//!   user. A user and its `UserCreated` (and a registering
//!   user's identity) are created by one statement.
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
//! Transactions that fail with a transient error (deadlock, leader switch,
//! a write conflict found at commit) are retried with jittered pauses;
//! every call is bounded by [`REQUEST_TIMEOUT`]. On a server that takes no
//! write locks and detects conflicts at commit instead (ArcadeDB), the
//! "locks" above are writes that make two transactions on the same user
//! conflict, so one of them is retried: the same outcomes, by retry rather
//! than by waiting.
//!
//! `neo4rs` 0.8 offers Bolt 4.1 and 4.0 in its handshake, which Neo4j 4.4
//! and 5.x still accept; it does no client-side routing, so a `neo4j://`
//! URI reaches the one server it names.
//!
//! CI runs the conformance suite (`tests/api/store_neo4j.rs`) against
//! ArcadeDB's Bolt endpoint, and against a real Neo4j when `NEO4J_URI` is
//! set. ArcadeDB is not Neo4j: a pass there proves the Cypher, the
//! parameter types, the decoding, the transactions and the error mapping
//! over real Bolt, not Neo4j's locking or planner. The Cypher stays within
//! what Neo4j 5 accepts; where ArcadeDB answers differently (the names of a
//! constraint's index) the code detects it rather than branching on the
//! server.

mod cypher;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{ConfigBuilder, Graph, Neo4jErrorKind, Query, Row, Txn, query};
use warble_mesh::backends::Neo4jConfig;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLogError};
use warble_mesh::outbox::{Outbox, OutboxEntry};
use warble_mesh::snowflake::{self, SnowflakeGenerator};
use warble_mesh::time::now_ms;
use warble_proto::events::v1::{Event, Followed, Unfollowed, event::Payload};

use super::{
    EdgePosition, FollowChange, FollowCounts, FollowEdge, FollowPage, GraphStore, Identity,
    MuteChange, NewUser, PageQuery, ProfileChange, ProfileUpdate, Registration, Relation,
    RelationEdge, RelationPage, ScannedUser, User, UserScanPage, check_mute_expiry,
    dangling_identity, distinct_pair, distinct_users, events, expiry_from_stored, follow_refused,
    mute_is_active, repeated_registration, stored_expiry, user_not_found, username_taken,
};
use crate::error::GraphError;
use cypher::{Cypher, Names};

/// Longest any one store call may take: `neo4rs` has no request timeout of
/// its own, and a hung server must not hang the gRPC handler.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up waits for new indexes to come online.
const SCHEMA_ONLINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of a transaction that failed with a transient error, all within
/// [`REQUEST_TIMEOUT`]. Neo4j reports a deadlock now and then; a server that
/// detects write conflicts at commit (ArcadeDB) fails all but one of the
/// transactions that wrote the same user meanwhile, so a user followed by
/// many at once can take many rounds.
const TRANSACTION_ATTEMPTS: u32 = 30;
/// Longest pause between two attempts of a transaction; each pause is
/// drawn at random up to a cap that doubles from 20 ms, so transactions
/// that conflicted do not meet again in lockstep.
const RETRY_PAUSE_CAP: Duration = Duration::from_millis(250);
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
            let mut states = SchemaStates::default();
            for row in &rows {
                states.index(
                    row.get("name")?,
                    row.get("state")?,
                    // Neo4j 4.4 has no such column.
                    row.get::<Option<String>>("owningConstraint").ok().flatten(),
                );
            }
            if !states.waiting_for(&self.cypher.schema_names)?.is_empty() {
                let rows = self
                    .within(
                        "listing constraints",
                        self.rows(query(&self.cypher.show_constraints)),
                    )
                    .await?;
                for row in &rows {
                    states.constraint(row.get("name")?);
                }
            }
            let waiting = states.waiting_for(&self.cypher.schema_names)?;
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

    /// A new user with a fresh id (not yet stored) and its `UserCreated`.
    fn new_user(&self, user: NewUser) -> Result<(User, Event), GraphError> {
        let id = self.ids.next_id()?;
        let user = user.into_user(id);
        let event = events::user_created(self.ids.next_id()?, &user);
        Ok((user, event))
    }

    /// `statement` (one that creates a user and its outbox entry) with the
    /// user's and the event's parameters.
    fn user_creation(statement: &str, user: &User, event: &Event) -> Query {
        query(statement)
            .param("id", to_db(user.id))
            .param("username", user.username.as_str())
            .param("username_lower", user.username.to_ascii_lowercase())
            .param("display_name", user.display_name.as_str())
            .param("bio", user.bio.as_str())
            .param("created_at_ms", user.created_at_ms)
            .param("event_id", to_db(event.event_id))
            .param("stream", DOMAIN_EVENTS_STREAM)
            .param("event_key", to_db(user.id))
            .param("payload", warble_mesh::telemetry::encode_event(event))
    }

    /// Runs a statement that creates a user: `Ok(false)` when a unique
    /// constraint refused it (a taken username; it wrote nothing).
    async fn create_unique(&self, statement: Query, what: &str) -> Result<bool, GraphError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.graph.run(statement)).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(error)) if is_constraint_violation(&error) => Ok(false),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(GraphError::backend(format!(
                "Neo4j at {} did not {what} within {REQUEST_TIMEOUT:?}",
                self.uri
            ))),
        }
    }

    /// The registration answer for an identity bound already (see
    /// [`repeated_registration`]); `None` when it is not bound.
    async fn registered(
        &self,
        identity: &Identity,
        username: &str,
    ) -> Result<Option<Registration>, GraphError> {
        let Some(id) = self.resolve_identity(identity).await? else {
            return Ok(None);
        };
        let existing = self
            .get_users(&[id])
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| dangling_identity(id))?;
        repeated_registration(existing, username).map(Some)
    }

    /// One attempt of a registration. A repeat finds the binding first and
    /// writes nothing. Two registrations of one identity racing both pass
    /// that check; the identity's unique constraint refuses the second
    /// statement, which then finds the binding the first made.
    async fn registration_attempt(
        &self,
        identity: &Identity,
        user: NewUser,
    ) -> Result<Registration, Abort> {
        if let Some(registration) = self.registered(identity, &user.username).await? {
            return Ok(registration);
        }
        let (user, event) = self.new_user(user)?;
        let statement = Self::user_creation(&self.cypher.register_user, &user, &event)
            .param("identity_key", identity_key(identity))
            .param("issuer", identity.issuer.as_str())
            .param("subject", identity.subject.as_str());
        match self.graph.run(statement).await {
            Ok(()) => Ok(Registration {
                user,
                created: true,
            }),
            // The identity was bound meanwhile, or else the username is taken.
            Err(error) if is_constraint_violation(&error) => {
                match self.registered(identity, &user.username).await? {
                    Some(registration) => Ok(registration),
                    None => Err(Abort::Decided(username_taken(&user.username))),
                }
            }
            Err(error) => Err(Abort::Driver(error)),
        }
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

    /// Runs `attempt` (one transaction) until it answers, retrying driver
    /// failures that are transient; all attempts together are bounded by
    /// [`REQUEST_TIMEOUT`], and `what` names the call if it runs out.
    async fn transact<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, GraphError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Abort>>,
    {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut tries = 1;
        loop {
            match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(Abort::Decided(error))) => return Err(error),
                Ok(Err(Abort::Driver(error)))
                    if is_transient(&error) && tries < TRANSACTION_ATTEMPTS =>
                {
                    tracing::debug!(%error, attempt = tries, what, "transient Neo4j failure; retrying");
                    tokio::time::sleep(retry_pause(tries)).await;
                    tries += 1;
                }
                Ok(Err(Abort::Driver(error))) => return Err(error.into()),
                Err(_) => {
                    return Err(GraphError::backend(format!(
                        "Neo4j at {} did not finish {what} within {REQUEST_TIMEOUT:?}",
                        self.uri
                    )));
                }
            }
        }
    }

    /// Follows or unfollows in one transaction, retrying transient failures.
    async fn change_follow(
        &self,
        follower: u64,
        followee: u64,
        follow: bool,
    ) -> Result<FollowChange, GraphError> {
        distinct_users(follower, followee)?;
        self.transact("a follow", || {
            self.follow_transaction(follower, followee, follow)
        })
        .await
    }

    /// One attempt of a follow or unfollow. A transaction dropped without
    /// commit is rolled back (the pool resets the connection).
    async fn follow_transaction(
        &self,
        follower: u64,
        followee: u64,
        follow: bool,
    ) -> Result<FollowChange, Abort> {
        let txn = self.graph.start_txn().await?;
        let (mut txn, follower_counts, followee_counts) =
            self.lock_both(txn, follower, followee).await?;
        let unchanged = FollowChange {
            changed: false,
            followee_followers: followee_counts.followers,
            follower_following: follower_counts.following,
        };
        if !follow {
            let Some(change) = self.delete_follow(&mut txn, follower, followee).await? else {
                txn.rollback().await?;
                return Ok(unchanged);
            };
            let event = unfollowed(self.ids.next_id()?, follower, followee, change);
            self.append_event(&mut txn, followee, &event).await?;
            txn.commit().await?;
            return Ok(change);
        }
        // Under both locks, which a block takes too: a block and a follow
        // racing never leave both.
        if self.blocked_between(&mut txn, follower, followee).await? {
            return refuse(txn, follow_refused()).await;
        }
        let seq = self.ids.next_id()?;
        let rows = txn_rows(
            &mut txn,
            query(&self.cypher.merge_follow)
                .param("follower", to_db(follower))
                .param("followee", to_db(followee))
                .param("seq", to_db(seq)),
        )
        .await?;
        let Some(row) = rows.first() else {
            return refuse(
                txn,
                GraphError::backend("MERGE of a follow returned no row"),
            )
            .await;
        };
        if !row.get::<bool>("created")? {
            txn.rollback().await?;
            return Ok(unchanged);
        }
        let change = change_from(row)?;
        let at = ms_of(seq);
        let event = Event {
            event_id: self.ids.next_id()?,
            occurred_at_ms: at,
            trace_context: Default::default(),
            payload: Some(Payload::Followed(Followed {
                follower_id: follower,
                followee_id: followee,
                followed_at_ms: at,
                followee_followers_count: change.followee_followers,
                follower_following_count: change.follower_following,
            })),
        };
        self.append_event(&mut txn, followee, &event).await?;
        txn.commit().await?;
        Ok(change)
    }

    /// Appends `event` to the outbox in `txn`, under `key`. Follow events
    /// are keyed by the followee: fan-out applies one key's events in
    /// order, and the followee's tweets are keyed by them too (see
    /// `store::events` for the others).
    async fn append_event(
        &self,
        txn: &mut Txn,
        key: u64,
        event: &Event,
    ) -> Result<(), neo4rs::Error> {
        txn.run(
            query(&self.cypher.create_outbox)
                .param("event_id", to_db(event.event_id))
                .param("stream", DOMAIN_EVENTS_STREAM)
                .param("event_key", to_db(key))
                .param("payload", warble_mesh::telemetry::encode_event(event)),
        )
        .await
    }

    /// Takes the write locks of users `a` and `b` for the rest of `txn`,
    /// smaller id first, so two transactions on the same pair (opposite
    /// follows, a block and a follow) take them in the same order and
    /// cannot deadlock. Returns `txn` with both users' counts, or rolls it
    /// back and fails `NotFound` naming a missing user.
    async fn lock_both(
        &self,
        mut txn: Txn,
        a: u64,
        b: u64,
    ) -> Result<(Txn, FollowCounts, FollowCounts), Abort> {
        let (first, second) = (a.min(b), a.max(b));
        let first_counts = self.lock_user(&mut txn, first).await?;
        let second_counts = self.lock_user(&mut txn, second).await?;
        let counts_of = |id: u64| {
            if id == first {
                first_counts
            } else {
                second_counts
            }
        };
        match (counts_of(a), counts_of(b)) {
            (Some(a_counts), Some(b_counts)) => Ok((txn, a_counts, b_counts)),
            (None, _) => refuse(txn, user_not_found(a)).await,
            (_, None) => refuse(txn, user_not_found(b)).await,
        }
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

    /// Deletes the follow if there is one, in `txn` (both users locked);
    /// the counts after, or `None` when there was none.
    async fn delete_follow(
        &self,
        txn: &mut Txn,
        follower: u64,
        followee: u64,
    ) -> Result<Option<FollowChange>, Abort> {
        let rows = txn_rows(
            txn,
            query(&self.cypher.delete_follow)
                .param("follower", to_db(follower))
                .param("followee", to_db(followee)),
        )
        .await?;
        Ok(rows.first().map(change_from).transpose()?)
    }

    /// Whether either of `a` and `b` blocks the other, read in `txn`.
    async fn blocked_between(&self, txn: &mut Txn, a: u64, b: u64) -> Result<bool, Abort> {
        let rows = txn_rows(
            txn,
            query(&self.cypher.blocks_between)
                .param("firsts", vec![to_db(a)])
                .param("seconds", vec![to_db(b)]),
        )
        .await?;
        Ok(match rows.first() {
            Some(row) => row.get("blocked")?,
            None => false,
        })
    }

    /// One attempt of a block: under both users' locks, deletes the follows
    /// both ways (each with its `Unfollowed`), creates the block, appends
    /// `Blocked`, and commits all of it together.
    async fn block_transaction(&self, blocker: u64, blocked: u64) -> Result<bool, Abort> {
        let txn = self.graph.start_txn().await?;
        let (mut txn, _, _) = self.lock_both(txn, blocker, blocked).await?;
        let pair = |statement: &str| {
            query(statement)
                .param("blocker", to_db(blocker))
                .param("blocked", to_db(blocked))
        };
        if !txn_rows(&mut txn, pair(&self.cypher.find_block))
            .await?
            .is_empty()
        {
            txn.rollback().await?;
            return Ok(false);
        }
        for (follower, followee) in [(blocker, blocked), (blocked, blocker)] {
            if let Some(change) = self.delete_follow(&mut txn, follower, followee).await? {
                let event = unfollowed(self.ids.next_id()?, follower, followee, change);
                self.append_event(&mut txn, followee, &event).await?;
            }
        }
        let seq = self.ids.next_id()?;
        txn.run(pair(&self.cypher.create_block).param("seq", to_db(seq)))
            .await?;
        let event = events::blocked(self.ids.next_id()?, blocker, blocked, seq);
        self.append_event(&mut txn, blocked, &event).await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn unblock_transaction(&self, blocker: u64, blocked: u64) -> Result<bool, Abort> {
        let txn = self.graph.start_txn().await?;
        let (mut txn, _, _) = self.lock_both(txn, blocker, blocked).await?;
        let deleted = txn_rows(
            &mut txn,
            query(&self.cypher.delete_block)
                .param("blocker", to_db(blocker))
                .param("blocked", to_db(blocked)),
        )
        .await?;
        if deleted.is_empty() {
            txn.rollback().await?;
            return Ok(false);
        }
        let event = events::unblocked(self.ids.next_id()?, blocker, blocked);
        self.append_event(&mut txn, blocked, &event).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// The stored mute of `muter` on `muted`, lapsed or not: its seq,
    /// expiry and setting.
    async fn find_mute(
        &self,
        txn: &mut Txn,
        muter: u64,
        muted: u64,
    ) -> Result<Option<(u64, Option<i64>, bool)>, Abort> {
        let rows = txn_rows(
            txn,
            query(&self.cypher.find_mute)
                .param("muter", to_db(muter))
                .param("muted", to_db(muted)),
        )
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some((
            from_db(row.get("seq")?),
            expiry_from_stored(row.get::<Option<i64>>("expires_at_ms")?.unwrap_or(0)),
            row.get::<Option<bool>>("hide_notifications")?
                .unwrap_or(false),
        )))
    }

    /// One attempt of a mute, under both users' locks: an active mute keeps
    /// its seq, a lapsed or absent one gets a new seq.
    async fn mute_transaction(
        &self,
        (muter, muted): (u64, u64),
        (expires_at_ms, hide_notifications): (Option<i64>, bool),
        now_ms: i64,
    ) -> Result<MuteChange, Abort> {
        let txn = self.graph.start_txn().await?;
        let (mut txn, _, _) = self.lock_both(txn, muter, muted).await?;
        let kept_seq = match self.find_mute(&mut txn, muter, muted).await? {
            Some((seq, expires, hide)) if mute_is_active(expires, now_ms) => {
                if (expires, hide) == (expires_at_ms, hide_notifications) {
                    txn.rollback().await?;
                    return Ok(MuteChange {
                        changed: false,
                        expires_at_ms,
                    });
                }
                Some(seq)
            }
            _ => None,
        };
        let (seq, made_at) = match kept_seq {
            Some(seq) => (seq, None),
            None => {
                let seq = self.ids.next_id()?;
                (seq, Some(ms_of(seq)))
            }
        };
        txn.run(
            query(&self.cypher.put_mute)
                .param("muter", to_db(muter))
                .param("muted", to_db(muted))
                .param("seq", to_db(seq))
                .param("expires_at_ms", stored_expiry(expires_at_ms))
                .param("hide_notifications", hide_notifications),
        )
        .await?;
        let event_id = self.ids.next_id()?;
        let event = events::muted(
            event_id,
            (muter, muted),
            made_at.unwrap_or_else(|| ms_of(event_id)),
            expires_at_ms,
            hide_notifications,
        );
        self.append_event(&mut txn, muted, &event).await?;
        txn.commit().await?;
        Ok(MuteChange {
            changed: true,
            expires_at_ms,
        })
    }

    /// One attempt of an unmute: removes the mute only when active at `now_ms`.
    async fn unmute_transaction(&self, muter: u64, muted: u64, now_ms: i64) -> Result<bool, Abort> {
        let txn = self.graph.start_txn().await?;
        let (mut txn, _, _) = self.lock_both(txn, muter, muted).await?;
        let active = self
            .find_mute(&mut txn, muter, muted)
            .await?
            .is_some_and(|(_, expires, _)| mute_is_active(expires, now_ms));
        if !active {
            txn.rollback().await?;
            return Ok(false);
        }
        txn.run(
            query(&self.cypher.delete_mute)
                .param("muter", to_db(muter))
                .param("muted", to_db(muted)),
        )
        .await?;
        let event = events::unmuted(self.ids.next_id()?, muter, muted);
        self.append_event(&mut txn, muted, &event).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// One attempt of a profile change: under the user's lock, reads the
    /// profile, applies `edit`, and when it changed something writes it
    /// with its `ProfileUpdated`.
    async fn profile_transaction(
        &self,
        id: u64,
        edit: &impl Fn(&mut User) -> bool,
    ) -> Result<ProfileChange, Abort> {
        let mut txn = self.graph.start_txn().await?;
        let rows = txn_rows(
            &mut txn,
            query(&self.cypher.lock_profile).param("id", to_db(id)),
        )
        .await?;
        let Some(row) = rows.first() else {
            return refuse(txn, user_not_found(id)).await;
        };
        let mut user = user_from_row(row)?;
        if !edit(&mut user) {
            txn.rollback().await?;
            return Ok(ProfileChange {
                user,
                changed: false,
            });
        }
        txn.run(
            query(&self.cypher.set_profile)
                .param("id", to_db(id))
                .param("display_name", user.display_name.as_str())
                .param("bio", user.bio.as_str())
                .param("location", user.location.as_str())
                .param("website", user.website.as_str())
                .param("verified", user.verified)
                .param("avatar_media_id", to_db(user.avatar_media_id)),
        )
        .await?;
        let event = events::profile_updated(self.ids.next_id()?, &user);
        self.append_event(&mut txn, id, &event).await?;
        txn.commit().await?;
        Ok(ProfileChange {
            user,
            changed: true,
        })
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

    /// A page of `user`'s blocks (`mutes_at` `None`), or of their mutes
    /// skipping those lapsed at `mutes_at`, read as the follow lists are.
    async fn relation_page(
        &self,
        user: u64,
        page: PageQuery,
        mutes_at: Option<i64>,
    ) -> Result<RelationPage, GraphError> {
        if !self.user_exists(user).await? {
            return Err(user_not_found(user));
        }
        let limit = page.limit.max(1);
        // Blocks are read as an unfiltered list, mutes as a filtered one.
        let budget = if mutes_at.is_some() {
            SCAN_BUDGET.max(limit + 1)
        } else {
            limit + 1
        };
        let before = page.after.map_or(i64::MAX, |after| to_db(after.follow_seq));
        let statement = if mutes_at.is_some() {
            &self.cypher.muted_page
        } else {
            &self.cypher.blocked_page
        };
        let rows = self
            .within(
                "a block or mute list page",
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
                let (expires_at_ms, hide_notifications) = if mutes_at.is_some() {
                    (
                        expiry_from_stored(row.get::<Option<i64>>("expires_at_ms")?.unwrap_or(0)),
                        row.get::<Option<bool>>("hide_notifications")?
                            .unwrap_or(false),
                    )
                } else {
                    (None, false)
                };
                let position = EdgePosition {
                    follow_seq: from_db(row.get("seq")?),
                    user_id: from_db(row.get("user_id")?),
                };
                Ok(RelationEdge {
                    user_id: position.user_id,
                    since_ms: ms_of(position.follow_seq),
                    expires_at_ms,
                    hide_notifications,
                    position,
                })
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        let (edges, next) = scan_entries(
            entries,
            limit,
            budget,
            |edge| edge.position,
            |edge| mutes_at.is_none_or(|now| mute_is_active(edge.expires_at_ms, now)),
        );
        Ok(RelationPage { edges, next })
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

/// The state of each schema object start-up waits for, by the name it was
/// created with. Neo4j names a constraint's index after the constraint;
/// ArcadeDB names it after its label and properties, and says which
/// constraint owns it in `owningConstraint` (as Neo4j 5 does too). A
/// constraint found only in `SHOW CONSTRAINTS` counts as online: creating a
/// constraint builds its index before it returns.
#[derive(Debug, Default)]
struct SchemaStates {
    states: HashMap<String, String>,
}

impl SchemaStates {
    /// An index from `SHOW INDEXES`, and the constraint owning it, if any.
    fn index(&mut self, name: String, state: String, owner: Option<String>) {
        if let Some(owner) = owner {
            self.states.insert(owner, state.clone());
        }
        self.states.insert(name, state);
    }

    /// A constraint from `SHOW CONSTRAINTS`, unless its index was listed.
    fn constraint(&mut self, name: String) {
        self.states.entry(name).or_insert_with(|| "ONLINE".into());
    }

    /// Which of `names` are not online yet; fails naming one whose
    /// population failed.
    fn waiting_for<'a>(&self, names: &'a [String]) -> Result<Vec<&'a str>, GraphError> {
        let mut waiting = Vec::new();
        for name in names {
            match self.states.get(name).map(String::as_str) {
                Some("ONLINE") => {}
                Some("FAILED") => {
                    return Err(GraphError::backend(format!(
                        "index or constraint `{name}` failed to build"
                    )));
                }
                _ => waiting.push(name.as_str()),
            }
        }
        Ok(waiting)
    }
}

/// How one transaction attempt ended without an answer: the driver failed
/// (retried when transient), or the store decided the call fails (final).
#[derive(Debug)]
enum Abort {
    Driver(neo4rs::Error),
    Decided(GraphError),
}

impl From<neo4rs::Error> for Abort {
    fn from(error: neo4rs::Error) -> Self {
        Self::Driver(error)
    }
}

impl From<neo4rs::DeError> for Abort {
    fn from(error: neo4rs::DeError) -> Self {
        Self::Driver(neo4rs::Error::DeserializationError(error))
    }
}

impl From<GraphError> for Abort {
    fn from(error: GraphError) -> Self {
        Self::Decided(error)
    }
}

impl From<snowflake::SnowflakeError> for Abort {
    fn from(error: snowflake::SnowflakeError) -> Self {
        Self::Decided(error.into())
    }
}

/// Rolls `txn` back and fails the call with `error`.
async fn refuse<T>(txn: Txn, error: GraphError) -> Result<T, Abort> {
    txn.rollback().await?;
    Err(Abort::Decided(error))
}

/// `Unfollowed` for a follow deleted with `change` the counts after it.
fn unfollowed(event_id: u64, follower: u64, followee: u64, change: FollowChange) -> Event {
    let at = ms_of(event_id);
    Event {
        event_id,
        occurred_at_ms: at,
        trace_context: Default::default(),
        payload: Some(Payload::Unfollowed(Unfollowed {
            follower_id: follower,
            followee_id: followee,
            unfollowed_at_ms: at,
            followee_followers_count: change.followee_followers,
            follower_following_count: change.follower_following,
        })),
    }
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

/// Whether a unique constraint refused the statement (it wrote nothing).
fn is_constraint_violation(error: &neo4rs::Error) -> bool {
    failure_code(error) == Some("Neo.ClientError.Schema.ConstraintValidationFailed")
}

/// Whether retrying the whole transaction may succeed.
fn is_transient(error: &neo4rs::Error) -> bool {
    match error {
        neo4rs::Error::ConnectionError | neo4rs::Error::IOError { .. } => true,
        _ => failure_code(error)
            .is_some_and(|code| Neo4jErrorKind::from(code) == Neo4jErrorKind::Transient),
    }
}

/// The server's error code (`Neo.TransientError.Transaction.DeadlockDetected`)
/// behind `error`. `neo4rs` 0.8 turns a FAILURE into `Error::Neo4j` only
/// where it answers RUN or DISCARD; one answering COMMIT or PULL becomes
/// `UnexpectedMessage`, with the response in its text. That is where a
/// deadlock found at commit (Neo4j) or a write conflict (ArcadeDB, which
/// detects them at commit) arrives, so the code is read back from the text.
fn failure_code(error: &neo4rs::Error) -> Option<&str> {
    match error {
        neo4rs::Error::Neo4j(error) => Some(error.code()),
        neo4rs::Error::UnexpectedMessage(text) => code_in_failure_text(text),
        _ => None,
    }
}

/// The `code` of the FAILURE that `text` (an `UnexpectedMessage`) shows as
/// `Failure(Failure { metadata: BoltMap { value: {BoltString { value:
/// "code" }: String(BoltString { value: "Neo...." }), ...} } })`: the first
/// string after the key, if it has a code's four dotted parts.
fn code_in_failure_text(text: &str) -> Option<&str> {
    let failure = &text[text.find("Failure(")?..];
    let after_key = &failure[failure.find("\"code\"")?..];
    let value = &after_key[after_key.find("\"Neo.")? + 1..];
    let code = &value[..value.find('"')?];
    let parts: Vec<&str> = code.split('.').collect();
    let well_formed = parts.len() == 4
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    well_formed.then_some(code)
}

/// The pause before attempt `tries + 1`: at random between half and all of
/// a cap that doubles from 20 ms up to [`RETRY_PAUSE_CAP`].
fn retry_pause(tries: u32) -> Duration {
    let cap = Duration::from_millis(10 << tries.min(8)).min(RETRY_PAUSE_CAP);
    cap / 2 + cap.mul_f64(rand::random::<f64>() / 2.0)
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
    let position = |entry: &ListEntry| EdgePosition {
        follow_seq: entry.follow_seq,
        user_id: entry.user_id,
    };
    let (kept, next) = scan_entries(entries, limit, budget, position, keep);
    let edges = kept
        .iter()
        .map(|entry| FollowEdge {
            user_id: entry.user_id,
            followed_at_ms: ms_of(entry.follow_seq),
            position: position(entry),
        })
        .collect();
    FollowPage { edges, next }
}

/// [`page_of`] for entries of any list: the kept entries and where the
/// next page starts.
fn scan_entries<E>(
    entries: Vec<E>,
    limit: usize,
    budget: usize,
    position: impl Fn(&E) -> EdgePosition,
    keep: impl Fn(&E) -> bool,
) -> (Vec<E>, Option<EdgePosition>) {
    let mut kept = Vec::new();
    let mut last_seen = None;
    for (scanned, entry) in entries.into_iter().enumerate() {
        // Reaching here means another entry exists, so a next page does too.
        if scanned == budget {
            return (kept, last_seen);
        }
        let at = position(&entry);
        if keep(&entry) {
            if kept.len() == limit {
                return (kept, last_seen);
            }
            kept.push(entry);
        }
        last_seen = Some(at);
    }
    (kept, None)
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

/// The one string an identity is stored and looked up by: the issuer's
/// length in bytes, a colon, the issuer and the subject. The length makes
/// the split unambiguous, so two different pairs never share a key.
fn identity_key(identity: &Identity) -> String {
    format!(
        "{}:{}{}",
        identity.issuer.len(),
        identity.issuer,
        identity.subject
    )
}

fn user_from_row(row: &Row) -> Result<User, GraphError> {
    Ok(User {
        id: from_db(row.get("id")?),
        username: row.get("username")?,
        display_name: row.get("display_name")?,
        bio: row.get::<Option<String>>("bio")?.unwrap_or_default(),
        created_at_ms: row.get("created_at_ms")?,
        location: row.get::<Option<String>>("location")?.unwrap_or_default(),
        website: row.get::<Option<String>>("website")?.unwrap_or_default(),
        verified: row.get::<Option<bool>>("verified")?.unwrap_or(false),
        avatar_media_id: row
            .get::<Option<i64>>("avatar_media_id")?
            .map_or(0, from_db),
    })
}

// `create_users` and `follow_many` keep the trait's defaults: one
// transaction per item, not one per batch (see their docs for what that
// means when a batch fails part-way).
#[async_trait]
impl GraphStore for Neo4jGraphStore {
    /// One statement creates the user and its `UserCreated` outbox entry,
    /// so both commit or neither does.
    async fn create_user(&self, user: NewUser) -> Result<User, GraphError> {
        let (user, event) = self.new_user(user)?;
        let statement = Self::user_creation(&self.cypher.create_user, &user, &event);
        // The unique constraint on the lower-cased username (ids are fresh).
        if !self.create_unique(statement, "create a user").await? {
            return Err(username_taken(&user.username));
        }
        Ok(user)
    }

    /// One statement creates the user, its identity node and its
    /// `UserCreated` outbox entry, so all commit or none does (see
    /// [`Neo4jGraphStore::registration_attempt`]); an attempt that failed
    /// with a transient error (a write conflict at commit) is retried.
    async fn register_user(
        &self,
        identity: Identity,
        user: NewUser,
    ) -> Result<Registration, GraphError> {
        self.transact("a registration", || {
            self.registration_attempt(&identity, user.clone())
        })
        .await
    }

    async fn resolve_identity(&self, identity: &Identity) -> Result<Option<u64>, GraphError> {
        let rows = self
            .within(
                "an identity lookup",
                self.rows(
                    query(&self.cypher.resolve_identity)
                        .param("identity_key", identity_key(identity)),
                ),
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| row.get::<i64>("user_id"))
            .transpose()?
            .map(from_db))
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

    async fn get_users_by_usernames(
        &self,
        usernames: &[String],
    ) -> Result<Vec<Option<User>>, GraphError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let lowered: Vec<String> = usernames
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        let rows = self
            .within(
                "a username batch",
                self.rows(
                    query(&self.cypher.get_users_by_usernames)
                        .param("usernames_lower", lowered.clone()),
                ),
            )
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let user = user_from_row(row)?;
            found.insert(user.username.to_ascii_lowercase(), user);
        }
        Ok(lowered
            .iter()
            .map(|name| found.get(name).cloned())
            .collect())
    }

    async fn update_profile(
        &self,
        user: u64,
        update: ProfileUpdate,
    ) -> Result<ProfileChange, GraphError> {
        let edit = |profile: &mut User| update.clone().apply(profile);
        self.transact("a profile update", || self.profile_transaction(user, &edit))
            .await
    }

    async fn set_verified(&self, user: u64, verified: bool) -> Result<ProfileChange, GraphError> {
        let edit = |profile: &mut User| {
            let changed = profile.verified != verified;
            profile.verified = verified;
            changed
        };
        self.transact("setting the verified mark", || {
            self.profile_transaction(user, &edit)
        })
        .await
    }

    async fn block(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
        distinct_pair(blocker, blocked, "blocker_id", "blocked_id")?;
        self.transact("a block", || self.block_transaction(blocker, blocked))
            .await
    }

    async fn unblock(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError> {
        distinct_pair(blocker, blocked, "blocker_id", "blocked_id")?;
        self.transact("an unblock", || self.unblock_transaction(blocker, blocked))
            .await
    }

    async fn mute(
        &self,
        muter: u64,
        muted: u64,
        expires_at_ms: Option<i64>,
        hide_notifications: bool,
        now_ms: i64,
    ) -> Result<MuteChange, GraphError> {
        distinct_pair(muter, muted, "muter_id", "muted_id")?;
        check_mute_expiry(expires_at_ms, now_ms)?;
        self.transact("a mute", || {
            self.mute_transaction((muter, muted), (expires_at_ms, hide_notifications), now_ms)
        })
        .await
    }

    async fn unmute(&self, muter: u64, muted: u64, now_ms: i64) -> Result<bool, GraphError> {
        distinct_pair(muter, muted, "muter_id", "muted_id")?;
        self.transact("an unmute", || {
            self.unmute_transaction(muter, muted, now_ms)
        })
        .await
    }

    async fn list_blocked(&self, user: u64, page: PageQuery) -> Result<RelationPage, GraphError> {
        self.relation_page(user, page, None).await
    }

    async fn list_muted(
        &self,
        user: u64,
        page: PageQuery,
        now_ms: i64,
    ) -> Result<RelationPage, GraphError> {
        self.relation_page(user, page, Some(now_ms)).await
    }

    /// One `UNWIND` query: three expands between users found by id per
    /// entry, whatever the viewer's list sizes.
    async fn relations(
        &self,
        viewer: u64,
        ids: &[u64],
        now_ms: i64,
    ) -> Result<Vec<Relation>, GraphError> {
        let mut answers = vec![Relation::default(); ids.len()];
        if viewer == 0 || ids.is_empty() {
            return Ok(answers);
        }
        let wanted: Vec<i64> = ids.iter().copied().map(to_db).collect();
        let rows = self
            .within(
                "a relations batch",
                self.rows(
                    query(&self.cypher.relations)
                        .param("viewer", to_db(viewer))
                        .param("ids", wanted)
                        .param("now", now_ms),
                ),
            )
            .await?;
        for row in &rows {
            let index = usize::try_from(row.get::<i64>("i")?).unwrap_or(usize::MAX);
            let Some(answer) = answers.get_mut(index) else {
                continue;
            };
            // The mute columns are null unless a mute is active.
            let mute_expiry = row.get::<Option<i64>>("mute_expires_at_ms")?;
            *answer = Relation {
                viewer_blocks: row.get("viewer_blocks")?,
                blocks_viewer: row.get("blocks_viewer")?,
                viewer_mutes: mute_expiry.is_some(),
                mute_hides_notifications: row
                    .get::<Option<bool>>("mute_hides_notifications")?
                    .unwrap_or(false),
                mute_expires_at_ms: mute_expiry.and_then(expiry_from_stored),
            };
        }
        Ok(answers)
    }

    async fn blocks_between(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let firsts: Vec<i64> = pairs.iter().map(|&(a, _)| to_db(a)).collect();
        let seconds: Vec<i64> = pairs.iter().map(|&(_, b)| to_db(b)).collect();
        let rows = self
            .within(
                "a block check batch",
                self.rows(
                    query(&self.cypher.blocks_between)
                        .param("firsts", firsts)
                        .param("seconds", seconds),
                ),
            )
            .await?;
        let mut answers = vec![false; pairs.len()];
        for row in &rows {
            let index = usize::try_from(row.get::<i64>("i")?).unwrap_or(usize::MAX);
            if let Some(answer) = answers.get_mut(index) {
                *answer = row.get("blocked")?;
            }
        }
        Ok(answers)
    }

    /// One ordered range seek of `limit + 1` users: the extra one tells
    /// whether another page follows.
    async fn scan_users(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<UserScanPage, GraphError> {
        let limit = limit.max(1);
        // Ids are Snowflakes below 2^63, so every stored id is above `i64::MIN`.
        let after = after.map_or(i64::MIN, to_db);
        let rows = self
            .within(
                "a user scan page",
                self.rows(
                    query(&self.cypher.scan_users)
                        .param("after", after)
                        .param("limit", i64::try_from(limit + 1).unwrap_or(i64::MAX)),
                ),
            )
            .await?;
        let mut users = rows
            .iter()
            .map(|row| {
                Ok(ScannedUser {
                    user: user_from_row(row)?,
                    counts: FollowCounts {
                        followers: count(row.get::<Option<i64>>("followers")?),
                        following: count(row.get::<Option<i64>>("following")?),
                    },
                })
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        let next = if users.len() > limit {
            users.truncate(limit);
            users.last().map(|last| last.user.id)
        } else {
            None
        };
        Ok(UserScanPage { users, next })
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
    use std::collections::HashSet;

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
    fn every_schema_name_is_created_by_a_schema_statement() {
        let cypher = Cypher::new(&Names::new("T1_"));
        assert_eq!(cypher.schema.len(), cypher.schema_names.len());
        for name in &cypher.schema_names {
            assert!(
                cypher
                    .schema
                    .iter()
                    .any(|statement| statement.contains(&format!(" {name} "))),
                "{name}"
            );
        }
        for name in ["warble_t1_blocks_by_blocker", "warble_t1_mutes_by_muter"] {
            assert!(cypher.schema_names.contains(&name.to_owned()), "{name}");
        }
    }

    #[test]
    fn blocks_and_mutes_are_namespaced_and_read_by_pair() {
        let cypher = Cypher::new(&Names::new("T1_"));
        for statement in [
            &cypher.find_block,
            &cypher.create_block,
            &cypher.delete_block,
            &cypher.blocks_between,
            &cypher.blocked_page,
        ] {
            assert!(statement.contains(":T1_BLOCKS"), "{statement}");
        }
        for statement in [
            &cypher.find_mute,
            &cypher.put_mute,
            &cypher.delete_mute,
            &cypher.muted_page,
        ] {
            assert!(statement.contains(":T1_MUTES"), "{statement}");
        }
        // Relations run on every timeline page: one UNWIND, each pattern
        // anchored on the viewer and the user by id, never a walk of the
        // viewer's list.
        let relations = &cypher.relations;
        assert!(relations.starts_with("UNWIND range(0, size($ids) - 1) AS i"));
        assert!(!relations.contains("()-["), "{relations}");
        assert_eq!(relations.matches("{id: $viewer}").count(), 3, "{relations}");
        assert_eq!(relations.matches("{id: $ids[i]}").count(), 3, "{relations}");
        assert!(relations.contains(":T1_BLOCKS") && relations.contains(":T1_MUTES"));
        // A follow is refused across a block either way.
        assert!(cypher.blocks_between.contains("]-(b:"), "undirected");
    }

    #[test]
    fn a_user_and_its_event_are_one_statement_and_old_nodes_read_with_defaults() {
        let cypher = Cypher::new(&Names::new("T1_"));
        assert!(cypher.create_user.contains("CREATE (u:T1_User "));
        assert!(
            cypher
                .create_user
                .contains("CREATE (e:T1_Outbox:T1_OutboxPending ")
        );
        for statement in [
            &cypher.get_users,
            &cypher.get_user_by_username,
            &cypher.get_users_by_usernames,
            &cypher.lock_profile,
        ] {
            for default in [
                "coalesce(u.location, '')",
                "coalesce(u.website, '')",
                "coalesce(u.verified, false)",
                "coalesce(u.avatar_media_id, 0)",
            ] {
                assert!(statement.contains(default), "{statement}");
            }
        }
    }

    #[test]
    fn relation_pages_skip_lapsed_mutes_within_the_budget() {
        let edge = |seq: u64, expires_at_ms: Option<i64>| RelationEdge {
            user_id: seq,
            since_ms: 0,
            expires_at_ms,
            hide_notifications: false,
            position: EdgePosition {
                follow_seq: seq,
                user_id: seq,
            },
        };
        let entries = vec![
            edge(9, Some(10)),
            edge(8, None),
            edge(7, Some(50)),
            edge(6, None),
        ];
        let (kept, next) = scan_entries(
            entries,
            2,
            3,
            |e| e.position,
            |e| mute_is_active(e.expires_at_ms, 10),
        );
        assert_eq!(kept.iter().map(|e| e.user_id).collect::<Vec<_>>(), [8, 7]);
        assert_eq!(next.map(|p| p.follow_seq), Some(7));
    }

    #[test]
    fn the_user_scan_seeks_ids_in_order_within_the_namespace() {
        let cypher = Cypher::new(&Names::new("T1_"));
        let scan = &cypher.scan_users;
        assert!(
            scan.starts_with("MATCH (u:T1_User) WHERE u.id > $after"),
            "{scan}"
        );
        assert!(scan.contains("ORDER BY u.id ASC LIMIT $limit"), "{scan}");
        for default in [
            "coalesce(u.location, '')",
            "coalesce(u.website, '')",
            "coalesce(u.verified, false)",
            "coalesce(u.avatar_media_id, 0)",
        ] {
            assert!(scan.contains(default), "{scan}");
        }
    }

    #[test]
    fn a_failure_at_commit_is_read_back_from_the_driver_text() {
        let failure = |first: (&str, &str), second: (&str, &str)| {
            format!(
                "unexpected response for COMMIT: Failure(Failure {{ metadata: BoltMap {{ value: {{\
                 BoltString {{ value: \"{}\" }}: String(BoltString {{ value: \"{}\" }}), \
                 BoltString {{ value: \"{}\" }}: String(BoltString {{ value: \"{}\" }})}} }} }})",
                first.0, first.1, second.0, second.1
            )
        };
        let deadlock = "Neo.TransientError.Transaction.DeadlockDetected";
        let message = "Concurrent modification on page 3 of \"Neo.x.y.z\"";
        // The map prints in any order.
        for text in [
            failure(("code", deadlock), ("message", message)),
            failure(("message", message), ("code", deadlock)),
        ] {
            let error = neo4rs::Error::UnexpectedMessage(text);
            assert_eq!(failure_code(&error), Some(deadlock));
            assert!(is_transient(&error));
        }
        let refused = neo4rs::Error::UnexpectedMessage(failure(
            ("code", "Neo.ClientError.Schema.ConstraintValidationFailed"),
            ("message", "duplicate"),
        ));
        assert!(!is_transient(&refused));
        for text in ["unexpected response for COMMIT: Ignored", "no code at all"] {
            let error = neo4rs::Error::UnexpectedMessage(text.into());
            assert_eq!(failure_code(&error), None);
            assert!(!is_transient(&error));
        }
        assert!(is_transient(&neo4rs::Error::ConnectionError));
    }

    #[test]
    fn retry_pauses_grow_to_a_cap_and_vary() {
        for tries in 1..40 {
            let cap = Duration::from_millis(10 << tries.min(8)).min(RETRY_PAUSE_CAP);
            let pause = retry_pause(tries);
            assert!(pause >= cap / 2 && pause <= cap, "{tries}: {pause:?}");
        }
        let pauses: HashSet<Duration> = (0..20).map(|_| retry_pause(5)).collect();
        assert!(pauses.len() > 1, "jittered");
    }

    #[test]
    fn a_constraint_is_online_by_its_own_index_or_the_one_it_owns() {
        let names: Vec<String> = ["c_neo4j", "c_arcade", "c_listed", "i_plain", "i_missing"]
            .map(String::from)
            .to_vec();
        let mut states = SchemaStates::default();
        // Neo4j names a constraint's index after the constraint.
        states.index("c_neo4j".into(), "ONLINE".into(), Some("c_neo4j".into()));
        // ArcadeDB names it after label and properties and says who owns it.
        states.index("User[id]".into(), "ONLINE".into(), Some("c_arcade".into()));
        states.index("i_plain".into(), "POPULATING".into(), None);
        assert_eq!(
            states.waiting_for(&names).unwrap(),
            ["c_listed", "i_plain", "i_missing"]
        );
        // Known only from SHOW CONSTRAINTS.
        states.constraint("c_listed".into());
        // A constraint whose index is listed keeps that index's state.
        states.constraint("i_plain".into());
        assert_eq!(
            states.waiting_for(&names).unwrap(),
            ["i_plain", "i_missing"]
        );
        states.index("i_missing".into(), "FAILED".into(), None);
        let error = states.waiting_for(&names).unwrap_err();
        let error = warble_mesh::status::ErrorChain(&error).to_string();
        assert!(error.contains("`i_missing` failed"), "{error}");
    }

    #[test]
    fn identity_keys_tell_every_pair_apart() {
        let key = |issuer: &str, subject: &str| {
            identity_key(&Identity {
                issuer: issuer.into(),
                subject: subject.into(),
            })
        };
        assert_eq!(
            key("https://id.example/", "auth0|42"),
            "19:https://id.example/auth0|42"
        );
        // The same concatenation, split differently.
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_ne!(key("1:a", "b"), key("1", ":ab"));
        assert_eq!(key("é", "x"), "2:éx", "the length counts bytes");
    }

    #[test]
    fn a_registration_is_one_statement_and_identities_are_namespaced() {
        let cypher = Cypher::new(&Names::new("T1_"));
        let register = &cypher.register_user;
        for part in [
            "CREATE (u:T1_User ",
            "CREATE (i:T1_Identity ",
            "CREATE (e:T1_Outbox:T1_OutboxPending ",
        ] {
            assert_eq!(register.matches(part).count(), 1, "{register}");
        }
        assert!(
            cypher
                .resolve_identity
                .starts_with("MATCH (i:T1_Identity {key: $identity_key})")
        );
        assert!(
            cypher
                .schema
                .iter()
                .any(|statement| statement.contains("FOR (i:T1_Identity) REQUIRE i.key IS UNIQUE"))
        );
    }

    #[test]
    fn ids_round_trip_through_cypher_integers() {
        for id in [0, 1, 1 << 62, u64::MAX] {
            assert_eq!(from_db(to_db(id)), id);
        }
    }
}
