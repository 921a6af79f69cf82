//! The cluster as a client sees it: a metadata cache (brokers, topics, partition leaders) and a
//! pool of connections, one per broker, shared by every producer, consumer and admin call made
//! through the same [`ClusterSession`].
//!
//! Owns: the bootstrap addresses, the cached [`Metadata`], the connection pool, and the retry
//! policy ([`Backoff`]). Invariants:
//! - A leader is only ever taken from a Metadata answer or a `leader_hint` naming a broker the
//!   metadata knows; a partition whose leader was refuted (NOT_LEADER without hint, unknown
//!   partition, no leader) is marked stale and the next lookup refreshes it first.
//! - A closed connection is never handed out: it is replaced by a fresh one on the next use.
//! - A broker that just failed at the connection level (refused, timed out, dropped) is
//!   *suspect* for [`SUSPECT_FOR`]: metadata refreshes try other brokers first, and a leader that
//!   is only a guess (a node outside the partition's replicas answers `leader_term` 0 and the
//!   first replica) is replaced by the first replica that is not suspect. Without this, a client
//!   whose metadata came from a non-replica kept dialling a dead or paused preferred replica for
//!   the whole fault (found by the Jepsen harness with 5 nodes).
//! - Every retry loop here is bounded by a deadline and sleeps with capped exponential backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{ClientError, Result};
use crate::wire::proto::{
    ErrorCode, MetadataRequest, MetadataResponse, Request_oneof_body as RequestBody, Response, Response_oneof_body as ResponseBody,
};

/// How long a broker that failed at the connection level is tried last (see the module docs).
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// Settings shared by everything that talks to the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Sent in every `Hello`.
    pub client_id: String,
    pub connection: ConnectionConfig,
    /// First retry delay; doubles per attempt up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Bound on one metadata-and-retry operation (a metadata refresh, an admin call, a fetch's
    /// leader lookup).
    pub operation_timeout: Duration,
}

impl ClusterConfig {
    /// This config, authenticating every connection as `user` (SASL/SCRAM, `mechanism`).
    pub fn with_sasl(mut self, mechanism: crate::scram::Mechanism, user: &str, password: &str) -> ClusterConfig {
        self.connection.sasl =
            Some(crate::connection::SaslCredentials { mechanism, user: user.to_string(), password: password.to_string() });
        self
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            client_id: "odradek-client".to_string(),
            connection: ConnectionConfig::default(),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// Capped exponential backoff: `base`, `2 * base`, `4 * base`, … up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        assert!(base <= max, "backoff base {base:?} above its cap {max:?}");
        Backoff { base, max, attempt: 0 }
    }

    /// The delay before the next attempt; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts again from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// One partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The leader's node id; 0 when no leader is known.
    pub leader: u64,
    pub leader_term: u64,
    pub replicas: Vec<u64>,
    pub in_sync_replicas: Vec<u64>,
    /// The partition's own error in the metadata answer (`NONE` when healthy).
    pub error: ErrorCode,
}

/// One topic as the metadata describes it, partitions in order of their number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Partition `partition`'s entry: at its own position when the answer listed every
    /// partition (the usual case: one lookup, not a scan of a thousand-partition topic).
    pub fn partition(&self, partition: u32) -> Option<&PartitionInfo> {
        match self.partitions.get(partition as usize) {
            Some(info) if info.partition == partition => Some(info),
            _ => self.partitions.iter().find(|info| info.partition == partition),
        }
    }

    fn partition_mut(&mut self, partition: u32) -> Option<&mut PartitionInfo> {
        let index = match self.partitions.get(partition as usize) {
            Some(info) if info.partition == partition => partition as usize,
            _ => self.partitions.iter().position(|info| info.partition == partition)?,
        };
        Some(&mut self.partitions[index])
    }
}

/// The cached picture of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// node id → address.
    pub brokers: BTreeMap<u64, String>,
    /// The controller's node id; 0 if unknown.
    pub controller: u64,
    /// Shared, so that a producer's every send reads its topic without copying a description
    /// of every partition (a thousand-partition topic cost thousands of allocations a record).
    pub topics: BTreeMap<String, Arc<TopicInfo>>,
    /// Partitions whose cached leader was refuted: refresh before using them.
    stale: BTreeSet<String>,
}

impl Metadata {
    /// Folds a Metadata answer into the cache. An answer for all topics (`all`) replaces the
    /// topic list; otherwise only the topics it names are replaced.
    fn apply(&mut self, response: &MetadataResponse, all: bool) {
        self.brokers = response.brokers.iter().map(|broker| (broker.node_id, broker.address.clone())).collect();
        self.controller = response.controller;
        if all {
            self.topics.clear();
            self.stale.clear();
        }
        for topic in &response.topics {
            self.stale.remove(&topic.name);
            if topic.error != ErrorCode::NONE {
                self.topics.remove(&topic.name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|partition| PartitionInfo {
                    partition: partition.partition,
                    leader: partition.leader,
                    leader_term: partition.leader_term,
                    replicas: partition.replicas.clone(),
                    in_sync_replicas: partition.in_sync_replicas.clone(),
                    error: partition.error,
                })
                .collect();
            partitions.sort_by_key(|partition| partition.partition);
            self.topics.insert(topic.name.clone(), Arc::new(TopicInfo { name: topic.name.clone(), partitions }));
        }
    }

    fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionInfo> {
        self.topics.get(topic)?.partition(partition)
    }

    /// The leader to dial for `info`: the answer's leader, except that a guess (`leader_term`
    /// 0) naming a suspect broker gives way to the first replica that is not suspect.
    fn leader_to_dial(&self, info: &PartitionInfo, suspect: impl Fn(&str) -> bool) -> u64 {
        let is_suspect = |node: u64| self.brokers.get(&node).is_some_and(|address| suspect(address));
        if info.leader == 0 || info.leader_term != 0 || !is_suspect(info.leader) {
            return info.leader;
        }
        info.replicas.iter().copied().find(|&replica| !is_suspect(replica)).unwrap_or(info.leader)
    }
}

struct SessionState {
    bootstrap: Vec<String>,
    config: ClusterConfig,
    metadata: Mutex<Metadata>,
    /// address → connection.
    connections: Mutex<BTreeMap<String, Connection>>,
    /// address → until when it is suspect (see the module docs).
    suspects: Mutex<BTreeMap<String, Instant>>,
}

/// A handle on the cluster: metadata cache plus connection pool. Cheap to clone; clones share
/// the cache and the connections.
///
/// ```no_run
/// # async fn example() -> Result<(), odradek_client::ClientError> {
/// use odradek_client::cluster::{ClusterSession, ClusterConfig};
///
/// let cluster = ClusterSession::new(&["127.0.0.1:9092"], ClusterConfig::default())?;
/// let leader = cluster.leader_for("orders", 0).await?;
/// println!("orders/0 is led by node {leader}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClusterSession {
    inner: Arc<SessionState>,
}

impl std::fmt::Debug for ClusterSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSession").field("bootstrap", &self.inner.bootstrap).finish()
    }
}

impl ClusterSession {
    /// A cluster handle; connects lazily, on first use.
    pub fn new(bootstrap: &[&str], config: ClusterConfig) -> Result<ClusterSession> {
        if bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument("no bootstrap address".into()));
        }
        Ok(ClusterSession {
            inner: Arc::new(SessionState {
                bootstrap: bootstrap.iter().map(|address| address.to_string()).collect(),
                config,
                metadata: Mutex::new(Metadata::default()),
                connections: Mutex::new(BTreeMap::new()),
                suspects: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The settings this handle was made with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// A copy of the cached metadata.
    pub fn metadata(&self) -> Metadata {
        self.inner.metadata.lock().expect("metadata lock").clone()
    }

    /// A backoff with the configured delays.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.inner.config.retry_backoff, self.inner.config.retry_backoff_max)
    }

    /// The pooled connection to `address`, opened (or reopened) if needed.
    pub async fn connection(&self, address: &str) -> Result<Connection> {
        if let Some(connection) = self.inner.connections.lock().expect("connections lock").get(address) {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        let connection = Connection::connect(address, &self.inner.config.client_id, self.inner.config.connection.clone())
            .await
            .inspect_err(|_| self.suspect(address))?;
        let mut connections = self.inner.connections.lock().expect("connections lock");
        // Another task may have connected meanwhile: keep one connection per address.
        match connections.get(address) {
            Some(existing) if !existing.is_closed() => Ok(existing.clone()),
            _ => {
                connections.insert(address.to_string(), connection.clone());
                Ok(connection)
            }
        }
    }

    /// The connection to broker `node_id`, per the cached metadata.
    pub async fn broker_connection(&self, node_id: u64) -> Result<Connection> {
        let address = self.inner.metadata.lock().expect("metadata lock").brokers.get(&node_id).cloned();
        match address {
            Some(address) => self.connection(&address).await,
            None => Err(ClientError::Connect { address: format!("node {node_id}"), reason: "not in the metadata".into() }),
        }
    }

    /// Marks `address` suspect for [`SUSPECT_FOR`].
    pub fn suspect(&self, address: &str) {
        self.inner.suspects.lock().expect("suspects lock").insert(address.to_string(), Instant::now() + SUSPECT_FOR);
    }

    /// Whether `address` failed at the connection level within the last [`SUSPECT_FOR`].
    pub fn is_suspect(&self, address: &str) -> bool {
        self.is_suspect_at(address, Instant::now())
    }

    fn is_suspect_at(&self, address: &str, now: Instant) -> bool {
        self.inner.suspects.lock().expect("suspects lock").get(address).is_some_and(|until| *until > now)
    }

    /// Any working connection: known brokers first, then the bootstrap addresses; suspect ones
    /// last.
    pub async fn any_connection(&self) -> Result<Connection> {
        let mut addresses: Vec<String> = self.inner.metadata.lock().expect("metadata lock").brokers.values().cloned().collect();
        addresses.sort();
        for address in &self.inner.bootstrap {
            if !addresses.contains(address) {
                addresses.push(address.clone());
            }
        }
        addresses.sort_by_key(|address| self.is_suspect(address)); // stable: keeps the order otherwise
        let mut last = None;
        for address in addresses {
            match self.connection(&address).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("at least one bootstrap address"))
    }

    /// One Metadata round trip (no retry); `topics` empty asks for every topic.
    async fn refresh_once(&self, topics: &[String]) -> Result<()> {
        let connection = self.any_connection().await?;
        let mut request = MetadataRequest::new();
        request.topics = topics.to_vec().into();
        let answer = connection.request(RequestBody::metadata(request)).await.inspect_err(|_| self.suspect(connection.address()));
        let response = check(answer?)?;
        let Some(ResponseBody::metadata(metadata)) = &response.body else {
            return Err(ClientError::Protocol(format!("Metadata answered without metadata: {response:?}")));
        };
        self.inner.metadata.lock().expect("metadata lock").apply(metadata, topics.is_empty());
        // A named topic this principal may not describe: definite, and no retry will change it.
        if let Some(denied) = metadata.topics.iter().find(|topic| topic.error == ErrorCode::TOPIC_AUTHORIZATION_FAILED) {
            return Err(ClientError::server(ErrorCode::TOPIC_AUTHORIZATION_FAILED, denied.error_message.clone()));
        }
        Ok(())
    }

    /// Refreshes the cached metadata for `topics` (all topics when empty), retrying retriable
    /// failures with backoff until the operation timeout.
    pub async fn refresh_metadata(&self, topics: &[String]) -> Result<()> {
        let deadline = Instant::now() + self.inner.config.operation_timeout;
        let mut backoff = self.backoff();
        loop {
            match self.refresh_once(topics).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(%error, "metadata refresh failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The topic's metadata, fetched if it is not cached (or stale).
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh_metadata(&[topic.to_string()]).await?;
        self.cached_topic(topic)
            .ok_or_else(|| ClientError::server(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic {topic:?} does not exist")))
    }

    fn cached_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        let metadata = self.inner.metadata.lock().expect("metadata lock");
        if metadata.stale.contains(topic) {
            return None;
        }
        metadata.topics.get(topic).cloned()
    }

    /// The node id leading `topic`/`partition` (or the replica to ask, when the metadata only
    /// guessed a suspect broker), refreshing the metadata once if the cache has none (or it was
    /// refuted).
    pub async fn leader_for(&self, topic: &str, partition: u32) -> Result<u64> {
        let info = self.topic(topic).await?;
        let leader = info.partition(partition).map(|info| {
            let metadata = self.inner.metadata.lock().expect("metadata lock");
            metadata.leader_to_dial(info, |address| self.is_suspect(address))
        });
        match leader {
            None => Err(ClientError::server(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("{topic}/{partition} does not exist"))),
            Some(0) => {
                self.mark_stale(topic);
                Err(ClientError::NoLeader { topic: topic.to_string(), partition })
            }
            Some(leader) => Ok(leader),
        }
    }

    /// The connection to the leader of `topic`/`partition`.
    pub async fn leader_connection(&self, topic: &str, partition: u32) -> Result<Connection> {
        let leader = self.leader_for(topic, partition).await?;
        let connection = self.broker_connection(leader).await;
        if connection.is_err() {
            self.mark_stale(topic);
        }
        connection
    }

    /// Marks the topic's cached metadata as refuted; the next lookup refreshes it.
    pub fn mark_stale(&self, topic: &str) {
        self.inner.metadata.lock().expect("metadata lock").stale.insert(topic.to_string());
    }

    /// Learns from a failed partition request: follows a `leader_hint` that names a known broker,
    /// otherwise marks the topic stale when the error means the cached leader is wrong.
    pub fn note_error(&self, topic: &str, partition: u32, error: &ClientError, leader_hint: u64) {
        let mut metadata = self.inner.metadata.lock().expect("metadata lock");
        let refuted = match error.code() {
            Some(
                ErrorCode::NOT_LEADER
                | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                | ErrorCode::LEADER_NOT_AVAILABLE
                | ErrorCode::LEADERSHIP_LOST,
            ) => true,
            Some(_) => false,
            None => matches!(
                error,
                ClientError::Disconnected { .. } | ClientError::Connect { .. } | ClientError::Timeout { .. } | ClientError::NoLeader { .. }
            ),
        };
        if !refuted {
            return;
        }
        if error.code().is_none() {
            // The broker itself failed to answer (refused, timed out, dropped): try others first.
            let dialled =
                metadata.partition(topic, partition).map(|info| metadata.leader_to_dial(info, |address| self.is_suspect(address)));
            if let Some(address) = dialled.and_then(|node| metadata.brokers.get(&node)) {
                self.suspect(address);
            }
        }
        let hint_known = leader_hint != 0 && metadata.brokers.contains_key(&leader_hint);
        let current = metadata.partition(topic, partition).map(|info| info.leader);
        if hint_known && current.is_some() && current != Some(leader_hint) {
            // Copied only if a sender holds the old description (a leader hint is rare).
            let info = metadata.topics.get_mut(topic).and_then(|info| Arc::make_mut(info).partition_mut(partition));
            if let Some(info) = info {
                info.leader = leader_hint;
            }
            return;
        }
        metadata.stale.insert(topic.to_string());
    }

    /// Sends `body` to the leader of `topic`/`partition`, retrying retriable failures (after
    /// following the leader hint or refreshing the metadata) until the operation timeout. Only for
    /// requests that are safe to repeat (fetch, list offsets). Returns a response whose error is
    /// `NONE`.
    pub async fn partition_request(&self, topic: &str, partition: u32, body: RequestBody) -> Result<Response> {
        let deadline = Instant::now() + self.inner.config.operation_timeout;
        let mut backoff = self.backoff();
        loop {
            let outcome = match self.leader_connection(topic, partition).await {
                Ok(connection) => connection.request(body.clone()).await.map_err(Hinted::from).and_then(check_keep_hint),
                Err(error) => Err(Hinted(error, 0)),
            };
            match outcome {
                Ok(response) => return Ok(response),
                Err(Hinted(error, hint)) => {
                    self.note_error(topic, partition, &error, hint);
                    if !error.is_retriable() || Instant::now() >= deadline {
                        return Err(error);
                    }
                    tracing::debug!(topic, partition, %error, "partition request failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Sends `body` to the controller (or any broker when none is known), retrying retriable
    /// failures (NOT_CONTROLLER included) until the operation timeout. Returns a response whose
    /// error is `NONE`. For admin requests and InitProducerId.
    pub async fn controller_request(&self, body: RequestBody) -> Result<Response> {
        let deadline = Instant::now() + self.inner.config.operation_timeout;
        let mut backoff = self.backoff();
        loop {
            let controller = self.inner.metadata.lock().expect("metadata lock").controller;
            let connection = match controller {
                0 => self.any_connection().await,
                node_id => match self.broker_connection(node_id).await {
                    Ok(connection) => Ok(connection),
                    Err(_) => self.any_connection().await,
                },
            };
            let outcome = match connection {
                Ok(connection) => connection.request(body.clone()).await.and_then(check),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(response) => return Ok(response),
                Err(error) if error.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(%error, "controller request failed; retrying");
                    if error.code() == Some(ErrorCode::NOT_CONTROLLER) || controller == 0 {
                        let _ = self.refresh_once(&[]).await;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// An error with the leader hint its response carried (0: none).
struct Hinted(ClientError, u64);

impl From<ClientError> for Hinted {
    fn from(error: ClientError) -> Hinted {
        Hinted(error, 0)
    }
}

/// The response if its error code is `NONE`, else the server error.
pub fn check(response: Response) -> Result<Response> {
    if response.error == ErrorCode::NONE {
        Ok(response)
    } else {
        Err(ClientError::server(response.error, response.error_message.clone()))
    }
}

fn check_keep_hint(response: Response) -> Result<Response, Hinted> {
    let hint = leader_hint(&response);
    check(response).map_err(|error| Hinted(error, hint))
}

/// The `leader_hint` of a produce, fetch or list-offsets answer; 0 when there is none.
pub fn leader_hint(response: &Response) -> u64 {
    match &response.body {
        Some(ResponseBody::produce(produce)) => produce.leader_hint,
        Some(ResponseBody::fetch(fetch)) => fetch.leader_hint,
        Some(ResponseBody::list_offsets(list_offsets)) => list_offsets.leader_hint,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<u64> = (0..6).map(|_| backoff.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_millis(1000));
        }
    }

    fn guessed(leader: u64, leader_term: u64) -> (Metadata, PartitionInfo) {
        let metadata = Metadata { brokers: (1..=5).map(|node| (node, format!("10.0.0.{node}:9092"))).collect(), ..Metadata::default() };
        let info =
            PartitionInfo { partition: 0, leader, leader_term, replicas: vec![3, 4, 5], in_sync_replicas: vec![], error: ErrorCode::NONE };
        (metadata, info)
    }

    #[test]
    fn a_guessed_leader_that_is_suspect_gives_way_to_the_next_healthy_replica() {
        let (metadata, info) = guessed(3, 0);
        assert_eq!(metadata.leader_to_dial(&info, |_| false), 3, "nothing suspect: the guess");
        assert_eq!(metadata.leader_to_dial(&info, |address| address == "10.0.0.3:9092"), 4);
        assert_eq!(metadata.leader_to_dial(&info, |address| address != "10.0.0.5:9092"), 5);
        assert_eq!(metadata.leader_to_dial(&info, |_| true), 3, "everything suspect: the guess again");
    }

    #[test]
    fn a_leader_a_replica_reported_is_dialled_even_when_suspect() {
        let (metadata, info) = guessed(3, 7);
        assert_eq!(metadata.leader_to_dial(&info, |_| true), 3);
        let (metadata, info) = guessed(0, 0);
        assert_eq!(metadata.leader_to_dial(&info, |_| true), 0, "no leader stays no leader");
    }

    fn described(partitions: &[u32]) -> TopicInfo {
        let partitions = partitions
            .iter()
            .map(|&partition| PartitionInfo {
                partition,
                leader: u64::from(partition) + 1,
                leader_term: 1,
                replicas: vec![],
                in_sync_replicas: vec![],
                error: ErrorCode::NONE,
            })
            .collect();
        TopicInfo { name: "t".into(), partitions }
    }

    #[test]
    fn a_partition_is_found_by_its_number_whether_the_answer_listed_all_or_some() {
        let all = described(&[0, 1, 2, 3]);
        assert_eq!(all.partition(2).map(|info| info.leader), Some(3), "at its own position");
        assert_eq!(all.partition(4), None);
        // An answer that lists only some partitions: positions no longer match numbers.
        let mut some = described(&[1, 3, 7]);
        assert_eq!(some.partition(1).map(|info| info.leader), Some(2), "position 1 holds partition 3: found by scan");
        assert_eq!(some.partition(7).map(|info| info.leader), Some(8));
        assert_eq!(some.partition(0), None);
        assert_eq!(some.partition(2), None, "position 2 holds partition 7, and no partition 2 exists");
        some.partition_mut(3).expect("listed").leader = 9;
        assert_eq!(some.partitions[1].leader, 9);
    }

    #[test]
    fn a_leader_hint_does_not_change_a_description_a_sender_already_holds() {
        let mut metadata = Metadata::default();
        metadata.topics.insert("t".into(), Arc::new(described(&[0, 1])));
        let held = metadata.topics["t"].clone();
        Arc::make_mut(metadata.topics.get_mut("t").unwrap()).partition_mut(1).unwrap().leader = 7;
        assert_eq!(held.partition(1).map(|info| info.leader), Some(2), "the holder's copy is unchanged");
        assert_eq!(metadata.partition("t", 1).map(|info| info.leader), Some(7), "the cache has the hint");
    }

    #[tokio::test]
    async fn suspects_expire_and_go_last() {
        let cluster = ClusterSession::new(&["10.0.0.1:9092"], ClusterConfig::default()).unwrap();
        assert!(!cluster.is_suspect("10.0.0.1:9092"));
        cluster.suspect("10.0.0.1:9092");
        assert!(cluster.is_suspect("10.0.0.1:9092"));
        assert!(!cluster.is_suspect("10.0.0.2:9092"));
        assert!(!cluster.is_suspect_at("10.0.0.1:9092", Instant::now() + SUSPECT_FOR + Duration::from_millis(1)));
    }
}
