//! The Redis connection every Redis-backed adapter shares (timeline cache,
//! event log on Streams), for a single node or a Redis Cluster alike.
//!
//! - **Multiplexed, reconnecting.** Single node: a [`ConnectionManager`]
//!   (one multiplexed connection, re-established after a drop). Cluster: a
//!   [`ClusterConnection`] (one multiplexed connection per node, following
//!   `MOVED`/`ASK` and refreshing its slot map). Both apply the connect and
//!   response timeouts of [`RedisConfig`], and both are cheap to clone, so one
//!   [`RedisClient`] serves a whole process.
//! - **Batches are pipelines.** [`RedisClient::batch`] sends many independent
//!   commands as one pipeline per node (chunks of [`PIPELINE_MAX`], sent
//!   concurrently): a fan-out to thousands of timelines costs one round trip
//!   of latency, not thousands. On a cluster the client groups commands by
//!   the node that owns their slot, from its own copy of the slot map, because
//!   the `redis` crate refuses cluster pipelines that span slots.
//! - **Scripts by hash.** [`RedisScript`]s go out as `EVALSHA`; a node that
//!   has not seen one yet answers `NOSCRIPT`, and the client loads it
//!   (`SCRIPT LOAD` on every master) and resends just those commands.
//! - **Blocking reads get their own connection.** A command that blocks on
//!   the server (`XREADGROUP ... BLOCK`) would stall every other command
//!   multiplexed behind it and trip the response timeout, so
//!   [`RedisClient::blocking_query`] runs it on a dedicated connection from a
//!   small pool.
//!
//! [`RedisClient::connect`] checks that the server answers `PING` and runs
//! Redis 7.0 or later (Streams' `XAUTOCLAIM` deleted-id reply and
//! `XINFO GROUPS` lag), and fails with an error naming the address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, IntoConnectionInfo as _, RedisError,
    RedisResult, ServerErrorKind, ToRedisArgs, Value,
};

use crate::backends::{RedisConfig, RedisMode};
use crate::secret::redact_url;

/// Most commands in one pipeline: fan-out's default follower page, so a
/// page is one pipeline on a single node. Larger batches are split into
/// pipelines of this size sent concurrently; bounding each keeps one batch
/// from hogging the server's event loop or the client's buffers.
pub const PIPELINE_MAX: usize = 5_000;
/// Idle dedicated connections kept for blocking commands.
const BLOCKING_POOL_MAX: usize = 8;
/// The oldest Redis this code supports.
const MIN_VERSION: (u32, u32) = (7, 0);
/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16_384;

/// Why [`RedisClient::connect`] failed. Every message names the address.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    /// The server could not be reached, refused the password, or failed the PING.
    #[error("cannot reach Redis at {address}: {source}")]
    Unreachable {
        /// The URL(s) tried, passwords redacted.
        address: String,
        /// The underlying failure.
        source: RedisError,
    },
    /// The server would lose acknowledged writes (`durability_check = "refuse"`).
    #[error(
        "Redis at {address} holds {role} but would lose acknowledged writes: {}; fix the server's settings or set {key} = \"warn\"",
        problems.join("; ")
    )]
    NotDurable {
        /// The URL(s) tried, passwords redacted.
        address: String,
        /// What this Redis holds (`the event log`).
        role: String,
        /// Each setting that loses writes, with the value to set.
        problems: Vec<String>,
        /// The config key that chose `refuse`.
        key: String,
    },
    /// The server answered but is too old.
    #[error("Redis at {address} runs {version}; Warble needs Redis 7.0 or later")]
    TooOld {
        /// The URL(s) tried, passwords redacted.
        address: String,
        /// The `redis_version` the server reported.
        version: String,
    },
}

/// A Lua script called by SHA-1 (`EVALSHA`) and loaded on demand.
#[derive(Debug)]
pub struct RedisScript {
    code: &'static str,
    hash: String,
}

impl RedisScript {
    /// Wraps the script's source; its SHA-1 is computed once here.
    pub fn new(code: &'static str) -> Self {
        Self {
            code,
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// A call of this script on `keys` (at least one; the first routes it,
    /// and on a cluster all must share its slot). Add `ARGV` with
    /// [`Request::arg`].
    pub fn call<K: AsRef<[u8]>>(&'static self, keys: &[K]) -> Request {
        assert!(!keys.is_empty(), "a script call needs a key to route by");
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(keys.len());
        for key in keys {
            cmd.arg(key.as_ref());
        }
        Request {
            cmd,
            route_key: keys[0].as_ref().to_vec(),
            script: Some(self),
        }
    }
}

/// One command for [`RedisClient::query`] or [`RedisClient::batch`],
/// carrying the key it is routed by.
#[derive(Debug, Clone)]
pub struct Request {
    cmd: Cmd,
    route_key: Vec<u8>,
    script: Option<&'static RedisScript>,
}

impl Request {
    /// `command key`; add further arguments with [`Request::arg`].
    pub fn new(command: &str, key: impl AsRef<[u8]>) -> Self {
        let mut cmd = redis::cmd(command);
        cmd.arg(key.as_ref());
        Self {
            cmd,
            route_key: key.as_ref().to_vec(),
            script: None,
        }
    }

    /// `command` alone, routed by `key` although the key comes later in the
    /// arguments (e.g. `XREADGROUP ... STREAMS key >`); add every argument,
    /// the key included, with [`Request::arg`].
    pub fn routed_by(command: &str, key: impl AsRef<[u8]>) -> Self {
        Self {
            cmd: redis::cmd(command),
            route_key: key.as_ref().to_vec(),
            script: None,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }

    fn slot(&self) -> u16 {
        key_slot(&self.route_key)
    }
}

/// A connection to Redis, single node or cluster (see the module docs).
/// Clones share the connections.
#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    address: String,
    response_timeout: Duration,
    round_trips: AtomicU64,
    blocking_pool: Mutex<Vec<BlockingConnection>>,
}

enum Target {
    Single {
        manager: ConnectionManager,
        /// Opens the dedicated connections of blocking commands.
        client: Client,
        connect_timeout: Duration,
    },
    Cluster {
        connection: ClusterConnection,
        /// The same seeds without a response timeout, for blocking commands.
        /// (Boxed: it is large and only read when a blocking command opens a connection.)
        blocking_client: Box<ClusterClient>,
        /// Our copy of which node serves each slot, to group a batch per node.
        slots: RwLock<Arc<SlotOwners>>,
    },
}

enum BlockingConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Node index per slot, from `CLUSTER SLOTS`.
struct SlotOwners {
    owner: Vec<u16>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("address", &self.inner.address)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Connects as `config` says, checks the server answers `PING` (every
    /// master, on a cluster) and runs Redis 7.0 or later.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisClientError> {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
        let response_timeout = Duration::from_millis(config.response_timeout_ms.max(1));
        let address = match config.mode {
            RedisMode::Single => redact_url(&config.url).into_owned(),
            RedisMode::Cluster => redact_url(&config.cluster_node_list().join(",")).into_owned(),
        };
        let unreachable = |source: RedisError| RedisClientError::Unreachable {
            address: address.clone(),
            source,
        };
        let target = match config.mode {
            RedisMode::Single => {
                let mut info = config
                    .url
                    .as_str()
                    .into_connection_info()
                    .map_err(unreachable)?;
                if !config.password.is_empty() {
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_password(config.password.expose());
                    info = info.set_redis_settings(settings);
                }
                let client = Client::open(info).map_err(unreachable)?;
                // One plain attempt first: the connection manager would retry
                // with backoff, hiding "refused" or "wrong password" behind a wait.
                let probe_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                let mut probe = client
                    .get_multiplexed_async_connection_with_config(&probe_config)
                    .await
                    .map_err(unreachable)?;
                let _: String = redis::cmd("PING")
                    .query_async(&mut probe)
                    .await
                    .map_err(unreachable)?;
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .query_async(&mut probe)
                    .await
                    .map_err(unreachable)?;
                check_version(&address, &info)?;
                let manager = ConnectionManager::new_with_config(
                    client.clone(),
                    ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(connect_timeout))
                        .set_response_timeout(Some(response_timeout)),
                )
                .await
                .map_err(unreachable)?;
                Target::Single {
                    manager,
                    client,
                    connect_timeout,
                }
            }
            RedisMode::Cluster => {
                let seeds = config.cluster_node_list();
                let builder = |response: Option<Duration>| {
                    let mut builder =
                        ClusterClient::builder(seeds.clone()).connection_timeout(connect_timeout);
                    if let Some(response) = response {
                        builder = builder.response_timeout(response);
                    }
                    if !config.password.is_empty() {
                        builder = builder.password(config.password.expose());
                    }
                    builder.build()
                };
                let client = builder(Some(response_timeout)).map_err(unreachable)?;
                let blocking_client = builder(None).map_err(unreachable)?;
                let mut connection = client.get_async_connection().await.map_err(unreachable)?;
                connection
                    .route_command(
                        redis::cmd("PING"),
                        RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllMasters,
                            Some(ResponsePolicy::AllSucceeded),
                        )),
                    )
                    .await
                    .and_then(Value::extract_error)
                    .map_err(unreachable)?;
                let info = connection
                    .route_command(
                        redis::cmd("INFO").arg("server").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await
                    .and_then(|value| redis::from_redis_value::<String>(value).map_err(Into::into))
                    .map_err(unreachable)?;
                check_version(&address, &info)?;
                let owners = fetch_slot_owners(&mut connection)
                    .await
                    .map_err(unreachable)?;
                Target::Cluster {
                    connection,
                    blocking_client: Box::new(blocking_client),
                    slots: RwLock::new(Arc::new(owners)),
                }
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                address,
                response_timeout,
                round_trips: AtomicU64::new(0),
                blocking_pool: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The `INFO` text of every node that holds data: the one node, or
    /// every master of a cluster.
    pub async fn info_of_every_master(&self) -> RedisResult<Vec<String>> {
        let value = match &self.inner.target {
            Target::Single { .. } => {
                return Ok(vec![
                    self.query::<String>(Request::new("INFO", "default"))
                        .await?,
                ]);
            }
            Target::Cluster { connection, .. } => {
                connection
                    .clone()
                    .route_command(
                        redis::cmd("INFO").arg("default").clone(),
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                    )
                    .await?
            }
        };
        // Without a response policy each master's reply comes back keyed by
        // its address (or, from some servers, as a list).
        let replies = match value {
            Value::Map(pairs) => pairs.into_iter().map(|(_, reply)| reply).collect(),
            Value::Array(replies) => replies,
            reply => vec![reply],
        };
        replies
            .into_iter()
            .map(|reply| redis::from_redis_value::<String>(reply).map_err(Into::into))
            .collect()
    }

    /// What would make this Redis lose acknowledged writes: append-only
    /// persistence off, or a `maxmemory-policy` that evicts keys, on any
    /// node holding data. Each entry names the setting and the value to set.
    pub async fn durability_problems(&self) -> RedisResult<Vec<String>> {
        let mut problems = Vec::new();
        for info in self.info_of_every_master().await? {
            for problem in durability_problems_in(&info) {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        Ok(problems)
    }

    /// Applies `check` to this Redis, which holds `role` (`"the event
    /// log"`); `key` is the config key that chose the check, for messages.
    /// `Warn` logs each problem as an error and goes on; `Refuse` fails;
    /// `Off` does nothing. A server that will not say (a managed Redis
    /// that hides `INFO`) is warned about, never refused.
    pub async fn check_durability(
        &self,
        check: crate::backends::DurabilityCheck,
        role: &str,
        key: &str,
    ) -> Result<(), RedisClientError> {
        use crate::backends::DurabilityCheck;
        if check == DurabilityCheck::Off {
            return Ok(());
        }
        let problems = match self.durability_problems().await {
            Ok(problems) => problems,
            Err(error) => {
                tracing::warn!(
                    address = self.address(),
                    %error,
                    "cannot read Redis's persistence settings; durability of {role} not checked"
                );
                return Ok(());
            }
        };
        if problems.is_empty() {
            return Ok(());
        }
        if check == DurabilityCheck::Refuse {
            return Err(RedisClientError::NotDurable {
                address: self.address().to_owned(),
                role: role.to_owned(),
                problems,
                key: key.to_owned(),
            });
        }
        for problem in &problems {
            tracing::error!(
                address = self.address(),
                "Redis holding {role} would lose acknowledged writes: {problem} (set {key} = \"refuse\" to refuse starting)"
            );
        }
        Ok(())
    }

    /// The address connected to (cluster: the seed list), passwords redacted.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.target, Target::Cluster { .. })
    }

    /// Requests sent to the server so far: one per pipeline or single
    /// command (`NOSCRIPT` resends and script loads included). For tests
    /// and diagnostics that check batching.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Runs one command; server errors come back as `Err`. Not retried: the
    /// command need not be idempotent (e.g. `XADD`).
    pub async fn query<T: redis::FromRedisValue>(&self, request: Request) -> RedisResult<T> {
        let value = self
            .run(std::slice::from_ref(&request))
            .await?
            .pop()
            .unwrap_or(Value::Nil);
        Ok(redis::from_redis_value(value)?)
    }

    /// Runs independent commands as few round trips as possible (see the
    /// module docs) and returns their replies in order; `Err` if any failed.
    ///
    /// Commands must be idempotent: a batch whose connection dropped (the
    /// server restarted, say) is sent once more on the new connection, and on
    /// a cluster whose slots are moving a pipeline that failed part way is
    /// resent command by command.
    pub async fn batch(&self, requests: &[Request]) -> RedisResult<Vec<Value>> {
        match self.run(requests).await {
            Err(error) if error.is_connection_dropped() && !error.is_timeout() => {
                tracing::debug!(%error, address = %self.inner.address, "Redis connection dropped; resending the batch");
                self.run(requests).await
            }
            outcome => outcome,
        }
    }

    async fn run(&self, requests: &[Request]) -> RedisResult<Vec<Value>> {
        let all: Vec<usize> = (0..requests.len()).collect();
        let mut replies = self.send(requests, &all).await?;
        // Scripts a node has not cached (first use, restart, SCRIPT FLUSH):
        // load them and resend exactly the commands that were refused.
        let refused: Vec<usize> = (0..replies.len())
            .filter(|&index| is_noscript(&replies[index]))
            .collect();
        if !refused.is_empty() {
            let mut scripts: Vec<&'static RedisScript> = Vec::new();
            for &index in &refused {
                if let Some(script) = requests[index].script
                    && !scripts.iter().any(|known| known.hash == script.hash)
                {
                    scripts.push(script);
                }
            }
            for script in scripts {
                self.load_script(script).await?;
            }
            for (index, reply) in refused.iter().zip(self.send(requests, &refused).await?) {
                replies[*index] = reply;
            }
        }
        replies.into_iter().map(Value::extract_error).collect()
    }

    /// Runs one command that may block on the server for up to `wait`
    /// (e.g. `XREADGROUP ... BLOCK`) on a dedicated connection, so it
    /// stalls nothing else; fails after `wait` plus the response timeout.
    pub async fn blocking_query<T: redis::FromRedisValue>(
        &self,
        request: Request,
        wait: Duration,
    ) -> RedisResult<T> {
        let pooled = self
            .inner
            .blocking_pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let value = match pooled {
            Some(connection) => match self.block_on(connection, &request, wait).await {
                // An idle pooled connection may have died with a server
                // restart since its last use: try once on a fresh one.
                Err(error) if error.is_connection_dropped() && !error.is_timeout() => {
                    let fresh = self.open_blocking().await?;
                    self.block_on(fresh, &request, wait).await?
                }
                outcome => outcome?,
            },
            None => {
                let fresh = self.open_blocking().await?;
                self.block_on(fresh, &request, wait).await?
            }
        };
        Ok(redis::from_redis_value(value)?)
    }

    /// Runs `request` on `connection` and returns the connection to the pool
    /// unless it failed at the connection level or timed out (a late reply
    /// could still arrive on it).
    async fn block_on(
        &self,
        mut connection: BlockingConnection,
        request: &Request,
        wait: Duration,
    ) -> RedisResult<Value> {
        self.count_round_trip();
        let deadline = wait + self.inner.response_timeout;
        let outcome = tokio::time::timeout(deadline, async {
            match &mut connection {
                BlockingConnection::Single(connection) => {
                    request.cmd.query_async::<Value>(connection).await
                }
                BlockingConnection::Cluster(connection) => connection
                    .route_command(request.cmd.clone(), route_by_slot(request.slot()))
                    .await
                    .and_then(Value::extract_error),
            }
        })
        .await;
        let result = match outcome {
            Err(_) => {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "blocking command: no reply within {deadline:?} from {}",
                        self.inner.address
                    ),
                )));
            }
            Ok(Err(error)) if error.is_io_error() || error.is_unrecoverable_error() => {
                return Err(error);
            }
            Ok(result) => result,
        };
        let mut pool = self
            .inner
            .blocking_pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pool.len() < BLOCKING_POOL_MAX {
            pool.push(connection);
        }
        result
    }

    fn count_round_trip(&self) {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    async fn open_blocking(&self) -> RedisResult<BlockingConnection> {
        match &self.inner.target {
            Target::Single {
                client,
                connect_timeout,
                ..
            } => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(*connect_timeout))
                    .set_response_timeout(None);
                Ok(BlockingConnection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster {
                blocking_client, ..
            } => Ok(BlockingConnection::Cluster(
                blocking_client.get_async_connection().await?,
            )),
        }
    }

    async fn load_script(&self, script: &RedisScript) -> RedisResult<()> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(script.code);
        self.count_round_trip();
        match &self.inner.target {
            Target::Single { manager, .. } => {
                let _: String = load.query_async(&mut manager.clone()).await?;
            }
            Target::Cluster { connection, .. } => {
                connection
                    .clone()
                    .route_command(
                        load,
                        RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllMasters,
                            Some(ResponsePolicy::AllSucceeded),
                        )),
                    )
                    .await?
                    .extract_error()?;
            }
        }
        Ok(())
    }

    /// Sends `requests[indices]`, returning raw replies (server errors inline) in `indices` order.
    async fn send(&self, requests: &[Request], indices: &[usize]) -> RedisResult<Vec<Value>> {
        match &self.inner.target {
            Target::Single { manager, .. } => {
                let pipelines = indices.chunks(PIPELINE_MAX).map(|chunk| {
                    let mut manager = manager.clone();
                    let pipeline = pipeline_of(requests, chunk);
                    self.count_round_trip();
                    async move { pipeline.query_async::<Vec<Value>>(&mut manager).await }
                });
                let mut replies = Vec::with_capacity(indices.len());
                for chunk in join_all(pipelines).await {
                    replies.extend(chunk?);
                }
                Ok(replies)
            }
            Target::Cluster {
                connection, slots, ..
            } => {
                self.send_cluster(connection, slots, requests, indices)
                    .await
            }
        }
    }

    /// Sends `requests[indices]` as one pipeline per owning node. Pipelines
    /// that fail (slots moved under our map, a node away) are regrouped by a
    /// refreshed map and sent once more, then command by command, routed and
    /// redirected by the crate.
    async fn send_cluster(
        &self,
        connection: &ClusterConnection,
        slots: &RwLock<Arc<SlotOwners>>,
        requests: &[Request],
        indices: &[usize],
    ) -> RedisResult<Vec<Value>> {
        let mut replies: Vec<Option<Value>> = vec![None; indices.len()];
        // Positions into `indices` still to send.
        let mut pending: Vec<usize> = (0..indices.len()).collect();
        for _pipelined_attempt in 0..2 {
            let owners = slots
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let mut per_node: HashMap<u16, Vec<usize>> = HashMap::new();
            for &position in &pending {
                let node = owners.owner[usize::from(requests[indices[position]].slot())];
                per_node.entry(node).or_default().push(position);
            }
            let chunks: Vec<Vec<usize>> = per_node
                .into_values()
                .flat_map(|positions| {
                    positions
                        .chunks(PIPELINE_MAX)
                        .map(<[usize]>::to_vec)
                        .collect::<Vec<_>>()
                })
                .collect();
            let sent = chunks.iter().map(|positions| {
                let mut connection = connection.clone();
                let chunk: Vec<usize> = positions
                    .iter()
                    .map(|&position| indices[position])
                    .collect();
                let pipeline = pipeline_of(requests, &chunk);
                // Any slot of the group names its node; the crate's own slot
                // map then picks the connection.
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(
                    requests[chunk[0]].slot(),
                    SlotAddr::Master,
                ));
                self.count_round_trip();
                async move {
                    connection
                        .route_pipeline(pipeline, 0, chunk.len(), route)
                        .await
                }
            });
            let mut failed: Vec<usize> = Vec::new();
            for (positions, outcome) in chunks.iter().zip(join_all(sent).await) {
                match outcome {
                    Ok(values) if values.len() == positions.len() => {
                        for (&position, value) in positions.iter().zip(values) {
                            replies[position] = Some(value);
                        }
                    }
                    Ok(_) | Err(_) => failed.extend(positions),
                }
            }
            pending = failed;
            if pending.is_empty() {
                break;
            }
            match fetch_slot_owners(&mut connection.clone()).await {
                Ok(fresh) => {
                    *slots
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(fresh);
                }
                Err(error) => {
                    tracing::warn!(%error, "refreshing the Redis Cluster slot map failed");
                }
            }
        }
        let single = pending.iter().map(|&position| {
            let mut connection = connection.clone();
            let request = &requests[indices[position]];
            self.count_round_trip();
            async move {
                connection
                    .route_command(request.cmd.clone(), route_by_slot(request.slot()))
                    .await
            }
        });
        for (&position, outcome) in pending.iter().zip(join_all(single).await) {
            replies[position] = Some(outcome?);
        }
        Ok(replies
            .into_iter()
            .map(|reply| reply.unwrap_or(Value::Nil))
            .collect())
    }
}

fn pipeline_of(requests: &[Request], indices: &[usize]) -> redis::Pipeline {
    let mut pipeline = redis::Pipeline::with_capacity(indices.len());
    for &index in indices {
        pipeline.add_command(requests[index].cmd.clone());
    }
    // Keep every reply, errors included, so one failing command does not
    // hide the others' replies (and NOSCRIPT can be retried selectively).
    pipeline.ignore_errors();
    pipeline
}

fn route_by_slot(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(error) if error.kind() == Some(ServerErrorKind::NoScript))
}

async fn fetch_slot_owners(connection: &mut ClusterConnection) -> RedisResult<SlotOwners> {
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?
        .extract_error()?;
    let invalid = || RedisError::from((ErrorKind::Parse, "unexpected CLUSTER SLOTS reply"));
    let Value::Array(ranges) = reply else {
        return Err(invalid());
    };
    let mut nodes: Vec<String> = Vec::new();
    let mut owner = vec![0u16; SLOTS];
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(invalid());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(invalid());
        };
        let host = master
            .first()
            .and_then(|host| redis::from_redis_value_ref::<String>(host).ok())
            .ok_or_else(invalid)?;
        let port = master
            .get(1)
            .and_then(|port| redis::from_redis_value_ref::<i64>(port).ok())
            .ok_or_else(invalid)?;
        let node = format!("{host}:{port}");
        let index = match nodes.iter().position(|known| *known == node) {
            Some(index) => index,
            None => {
                nodes.push(node);
                nodes.len() - 1
            }
        };
        let (start, end) = (*start as usize, (*end as usize).min(SLOTS - 1));
        for slot in owner.iter_mut().take(end + 1).skip(start) {
            *slot = index as u16;
        }
    }
    Ok(SlotOwners { owner })
}

/// The settings in one node's `INFO` text that lose acknowledged writes.
fn durability_problems_in(info: &str) -> Vec<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let mut problems = Vec::new();
    if field("aof_enabled") != Some("1") {
        problems.push(
            "append-only persistence is off (set `appendonly yes`): a restart loses what was written since the last snapshot".to_owned(),
        );
    }
    match field("maxmemory_policy") {
        Some("noeviction") => {}
        policy => problems.push(format!(
            "`maxmemory-policy` is {} (set `noeviction`): under memory pressure Redis deletes keys",
            policy.unwrap_or("unknown")
        )),
    }
    problems
}

fn check_version(address: &str, info: &str) -> Result<(), RedisClientError> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= MIN_VERSION {
        Ok(())
    } else {
        Err(RedisClientError::TooOld {
            address: address.to_owned(),
            version,
        })
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag
/// (the first non-empty `{...}`) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let tag = &key[open + 1..];
            tag.iter()
                .position(|&byte| byte == b'}')
                .filter(|&close| close > 0)
                .map(|close| &tag[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOTS as u16
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_redis_cluster_spec() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn versions_below_seven_are_refused() {
        assert!(check_version("x", "redis_version:7.0.15\r\n").is_ok());
        assert!(check_version("x", "redis_version:7.2.4\r\n").is_ok());
        let error = check_version("redis://x:1", "redis_version:6.2.14\r\n").unwrap_err();
        assert!(error.to_string().contains("redis://x:1"));
        assert!(error.to_string().contains("6.2.14"));
    }
}
