//! Probes of narrow windows (issue 20): fault shapes aimed at one window each, run once after the
//! liveness phase's producers finished (every partition quiet), each behind its own plan field
//! so that every other run keeps its trace.
//!
//! - **Sleeping leader cut off** (`--sleeping-leader-cut`, F-N1 then F-N2 with the client on
//!   the minority side): a partition of topic `t` whose group sleeps (hibernation) loses its
//!   leader to a cut of all its links; the others elect and acknowledge a new record; then the
//!   old leader is reachable by the client only, and the client polls it with a fresh high
//!   watermark. A read barrier must not confirm the old commit from a deposed, sleeping leader
//!   (L12 a).
//! - **A retry that outlives retention** (`--late-retry`, F-N5 on the answers of one client,
//!   then F-P1 of every replica): an idempotent producer's first batch is committed but its
//!   answer lost; other records push it out of the log by retention (bytes, small segments);
//!   every replica of the partition restarts, so each rebuilds its producer table from what is
//!   left (and its start state); then the producer's retry of sequence 0 arrives. It must be
//!   answered as a duplicate, not appended again (L2, P5).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use odradek_client::{ClusterSession, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord};
use odradek_consensus::observe::Event;
use odradek_jepsen::history::{self, Acks, OpValue, Poll, Send};
use odradek_log::CrashMode;

use super::FaultTargets;
use crate::cluster::{member, SimCluster};
use crate::config::TOPIC;

/// The probes' producers: values index × 10⁶ + i, past the workload's (at most 5 producers)
/// and before the Kafka producer's (9).
pub const SLEEPING_LEADER_PRODUCER: u64 = 6;
pub const LATE_RETRY_PRODUCER: u64 = 7;
pub const FILLER_PRODUCER: u64 = 8;

/// Every wait of a probe is polled this often, up to its own bound.
const POLL_STEP: Duration = Duration::from_millis(100);
/// Bound on finding a group whose leader sleeps, once the producers finished.
const SLEEPER_WAIT: Duration = Duration::from_secs(15);
/// Bound on an election (and on a restarted group's first leader).
const ELECTION_WAIT: Duration = Duration::from_secs(20);
/// Bound on one probe send or poll.
const CLIENT_CALL_BOUND: Duration = Duration::from_secs(10);
/// Bound on starting a probe producer (a quarantined metadata replica and a cut-off controller
/// leave no quorum to give a producer id: swarm `--sleeping-leader-cut` seed 182).
const PRODUCER_START_BOUND: Duration = Duration::from_secs(30);
/// Bound on the filler's sends.
const FILLER_BOUND: Duration = Duration::from_secs(30);
/// Bound on the old leader catching up after the heal: its peers' dials to it backed off while
/// it was cut off (up to 16 s), and R7 gives the replicas only 10 s after the drain (swarm
/// `--sleeping-leader-cut` seed 150).
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// What the probes may add to a run's simulated time, at most (the runtime's hang limit grows
/// by it when a probe is on).
pub const PROBES_TIME_BOUND: Duration = Duration::from_secs(400);
/// Bound on retention moving every replica's log start past the late batch.
const RETENTION_WAIT: Duration = Duration::from_secs(40);
/// The late-retry producer's delivery timeout: past the retention wait, the restarts and the
/// elections that follow.
const LATE_DELIVERY_TIMEOUT: Duration = Duration::from_secs(100);
/// Filler records (each with a key of [`FILLER_KEY_BYTES`]) sent behind the late batch: several
/// times the probe's byte retention, so retention deletes the late batch's segment.
const FILLER_RECORDS: u64 = 120;
const FILLER_KEY_BYTES: usize = 200;
/// Topic `t`'s retention under `--late-retry` when the plan has no `retention` of its own.
pub const LATE_RETRY_SEGMENT_BYTES: u64 = 1024;
pub const LATE_RETRY_RETENTION_BYTES: i64 = 4 * 1024;

/// What the probes learn from the replicas' events (fed by the scenario's observer on the
/// simulation thread; reading it changes nothing): each group's last leader, which replicas
/// sleep, each replica's log start, and the nodes that opened each group.
#[derive(Debug, Default)]
pub struct GroupWatch {
    leaders: BTreeMap<u64, (u64, u64)>,
    asleep: BTreeSet<(u64, u64)>,
    log_starts: BTreeMap<(u64, u64), u64>,
    replicas: BTreeMap<u64, BTreeSet<u64>>,
    applied: BTreeMap<(u64, u64), u64>,
}

impl GroupWatch {
    pub fn record(&mut self, event: &Event) {
        match *event {
            Event::Leader { node, group, term } => {
                let known = self.leaders.entry(group).or_insert((node, term));
                if term >= known.1 {
                    *known = (node, term);
                }
            }
            Event::Hibernated { node, group, .. } => {
                self.asleep.insert((node, group));
            }
            Event::Woke { node, group, .. } => {
                self.asleep.remove(&(node, group));
            }
            Event::Opened { node, group, .. } => {
                self.asleep.remove(&(node, group));
                self.replicas.entry(group).or_default().insert(node);
            }
            Event::Applied { node, group, index, .. } => {
                self.applied.insert((node, group), index);
            }
            Event::LogStart { node, group, offset_start, .. } => {
                let start = self.log_starts.entry((node, group)).or_default();
                *start = (*start).max(offset_start);
            }
            _ => {}
        }
    }

    /// (leader, term) of `group` when its leader sleeps as leader.
    fn sleeping_leader(&self, group: u64) -> Option<(u64, u64)> {
        let (leader, term) = *self.leaders.get(&group)?;
        self.asleep.contains(&(leader, group)).then_some((leader, term))
    }
}

type Watch = Rc<RefCell<GroupWatch>>;

/// Waits up to `bound` (polling every [`POLL_STEP`]) for `found` to give something.
async fn wait_for<T>(bound: Duration, mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = found() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
}

fn address(node: u64) -> String {
    member(node).client.to_string()
}

/// An idempotent acks=all producer of the client machine (bootstrap `nodes`), asked again while
/// the controller cannot give a producer id yet. With `warm`, the topic's metadata and the
/// connection to `warm`'s partition leader are in place when it returns.
async fn start_producer(cluster: &SimCluster, nodes: &[u64], config: ProducerConfig, warm: Option<u32>) -> Option<Producer> {
    let bootstrap: Vec<String> = nodes.iter().map(|&n| address(n)).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let session = ClusterSession::new(&addresses, config.cluster.clone()).ok()?;
    let deadline = tokio::time::Instant::now() + PRODUCER_START_BOUND;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(CLIENT_CALL_BOUND, Producer::with_cluster(session.clone(), config.clone())).await {
            Ok(Ok(producer)) => {
                let Some(partition) = warm else { return Some(producer) };
                let warmed = tokio::time::timeout(CLIENT_CALL_BOUND, session.leader_connection(TOPIC, partition)).await;
                return matches!(warmed, Ok(Ok(_))).then_some(producer);
            }
            Ok(Err(error)) => cluster.note(format!("probe producer: no producer id yet ({error})")),
            Err(_) => cluster.note("probe producer: no producer id within the bound"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn probe_producer_config(cluster: &SimCluster) -> ProducerConfig {
    ProducerConfig {
        request_timeout: Duration::from_secs(5),
        delivery_timeout: Duration::from_secs(30),
        acks: odradek_client::Acks::All,
        idempotence: true,
        retry_backoff: Duration::from_millis(100),
        cluster: cluster.client_config(),
        ..ProducerConfig::default()
    }
}

/// Sends `count` values to `partition` one at a time, each recorded in the history and bounded by
/// `bound`, none started after `total` (the record gets a key of `key_bytes` to fill segments);
/// returns the acknowledged offsets.
#[allow(clippy::too_many_arguments)]
async fn send_recorded(
    cluster: Arc<SimCluster>,
    producer: &Producer,
    index: u64,
    partition: u32,
    count: u64,
    key_bytes: usize,
    bound: Duration,
    total: Duration,
) -> Vec<u64> {
    let mut offsets = Vec::new();
    let identity = producer.identity().expect("an idempotent producer");
    let deadline = tokio::time::Instant::now() + total;
    for i in 0..count {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let value = index * 1_000_000 + i;
        let producer_id = history::Producer { pid: identity.producer_id as u64, epoch: identity.producer_epoch as u64, seq: i };
        let send = Send { key: u64::from(partition), values: vec![value], acks: Acks::All, producer: Some(producer_id), offsets: None };
        let process = cluster.process();
        let handle = cluster.history().invoke_send(process, send.clone()).expect("history");
        let mut record = ProducerRecord::new(TOPIC, value.to_string()).partition(partition);
        if key_bytes > 0 {
            record = record.key(vec![b'k'; key_bytes]);
        }
        let outcome = tokio::time::timeout(bound, producer.send_and_wait(record)).await;
        match outcome {
            Ok(Ok(metadata)) => {
                let acked = metadata.offset.map(|offset| vec![offset]);
                offsets.extend(metadata.offset);
                cluster.history().ok(handle, OpValue::Send(Send { offsets: acked, ..send })).expect("history");
            }
            Ok(Err(error)) if error.is_definite() => {
                cluster.history().fail(handle, OpValue::Send(send)).expect("history");
            }
            _ => {
                cluster.history().info(handle, OpValue::Send(send)).expect("history");
            }
        }
    }
    offsets
}

/// Polls `partition` from `from` (`None`: its log start) with a fresh high watermark through
/// `bootstrap` only, up to `polls` times (each recorded); returns the values read with their offsets.
async fn poll_recorded(cluster: Arc<SimCluster>, bootstrap: Vec<u64>, partition: u32, from: Option<u64>, polls: usize) -> Vec<(u64, u64)> {
    let addresses: Vec<String> = bootstrap.iter().map(|&n| address(n)).collect();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let config =
        ConsumerConfig { wait_ms_max: 200, cluster: cluster.client_config(), fresh_high_watermark: true, ..ConsumerConfig::default() };
    let Ok(mut consumer) = Consumer::new(&addresses, config) else { return Vec::new() };
    consumer.assign(vec![(TOPIC.to_string(), partition)]).expect("assign");
    let start = match from {
        Some(offset) => Offset::At(offset),
        None => Offset::Beginning,
    };
    if tokio::time::timeout(CLIENT_CALL_BOUND, consumer.seek(TOPIC, partition, start)).await.map_or(true, |seek| seek.is_err()) {
        return Vec::new();
    }
    let mut read = Vec::new();
    for _ in 0..polls {
        let process = cluster.process();
        let handle = cluster.history().invoke_poll(process).expect("history");
        match tokio::time::timeout(CLIENT_CALL_BOUND, consumer.poll_with_watermarks(Duration::from_secs(2))).await {
            Ok(Ok(polled)) => {
                let poll = crate::workload::poll_value(&polled);
                // One partition assigned: its records are the poll's, in order.
                read.extend(poll.records.values().flatten().copied());
                cluster.history().ok(handle, OpValue::Poll(poll)).expect("history");
            }
            // A failed poll moves no position and has no effect: definite.
            _ => {
                cluster.history().fail(handle, OpValue::Poll(Poll::default())).expect("history");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    read
}

impl FaultTargets<'_> {
    fn probe_start(&self, label: &str, details: Vec<(&str, String)>) -> history::Fault {
        let details = details.into_iter().map(|(key, value)| (key.to_string(), value)).collect();
        let record = history::Fault { fault: label.to_string(), details };
        self.cluster.history().fault_start(record.clone()).expect("history");
        record
    }

    fn clog_both(&self, a: madsim::task::NodeId, b: madsim::task::NodeId) {
        self.net.clog_link(a, b);
        self.net.clog_link(b, a);
    }

    fn unclog_both(&self, a: madsim::task::NodeId, b: madsim::task::NodeId) {
        self.net.unclog_link(a, b);
        self.net.unclog_link(b, a);
    }

    /// The sleeping-leader probe (`--sleeping-leader-cut`, module docs): returns what happened,
    /// for the timeline.
    pub async fn sleeping_leader_cut(&self, cluster: &Arc<SimCluster>, watch: &Watch) -> String {
        let live: Vec<u64> = self.cluster.nodes.iter().copied().filter(|n| !self.cluster.stopped().contains(n)).collect();
        let groups = 1..=u64::from(self.cluster.load.partitions);
        let found = wait_for(SLEEPER_WAIT, || {
            let watch = watch.borrow();
            groups.clone().find_map(|g| watch.sleeping_leader(g).filter(|(leader, _)| live.contains(leader)).map(|(l, t)| (g, l, t)))
        })
        .await;
        let Some((group, leader, term)) = found else {
            return "no group of topic t slept with a live leader".into();
        };
        let partition = (group - 1) as u32;
        let others: Vec<u64> = self.cluster.nodes.iter().copied().filter(|&n| n != leader).collect();
        let label = "F-N1 isolate a sleeping leader, then F-N2 with the client on its side";
        let record = self.probe_start(label, vec![("node", leader.to_string()), ("partition", partition.to_string())]);
        self.cluster.note(format!("{label}: node {leader} sleeps as leader of group {group} (term {term}); cut off"));
        self.net.clog_node(self.ids[&leader]);
        let elected =
            wait_for(ELECTION_WAIT, || watch.borrow().leaders.get(&group).copied().filter(|&(n, t)| n != leader && t > term)).await;
        let mut outcome = format!("group {group}: no new leader within {ELECTION_WAIT:?}");
        if let Some((new_leader, new_term)) = elected {
            let (task_cluster, bootstrap) = (cluster.clone(), others.clone());
            let acked = self
                .client_node
                .spawn(async move {
                    let config = probe_producer_config(&task_cluster);
                    let Some(producer) = start_producer(&task_cluster, &bootstrap, config, None).await else { return Vec::new() };
                    let offsets = send_recorded(
                        task_cluster,
                        &producer,
                        SLEEPING_LEADER_PRODUCER,
                        partition,
                        1,
                        0,
                        CLIENT_CALL_BOUND,
                        CLIENT_CALL_BOUND,
                    )
                    .await;
                    let _ = producer.close().await;
                    offsets
                })
                .await
                .expect("probe producer task");
            // The old leader now hears the client only; the client hears nobody else.
            for &other in &others {
                self.clog_both(self.ids[&leader], self.ids[&other]);
                self.clog_both(self.client, self.ids[&other]);
            }
            self.net.unclog_node(self.ids[&leader]);
            let from = watch.borrow().log_starts.get(&(leader, group)).copied().unwrap_or(0);
            let read = self
                .client_node
                .spawn(poll_recorded(cluster.clone(), vec![leader], partition, Some(from), 3))
                .await
                .expect("probe poll task");
            for &other in &others {
                self.unclog_both(self.ids[&leader], self.ids[&other]);
                self.unclog_both(self.client, self.ids[&other]);
            }
            let caught_up = wait_for(CATCH_UP_WAIT, || {
                let watch = watch.borrow();
                let target = watch.applied.get(&(new_leader, group)).copied().unwrap_or(0);
                (watch.applied.get(&(leader, group)).copied().unwrap_or(0) >= target).then_some(())
            })
            .await;
            if caught_up.is_none() {
                self.cluster
                    .note(format!("sleeping-leader probe: node {leader} did not catch up in group {group} within {CATCH_UP_WAIT:?}"));
            }
            outcome = format!(
                "group {group}: node {new_leader} leads term {new_term}, acknowledged offsets {acked:?}; polls of node {leader} read {} records",
                read.len()
            );
        }
        self.net.unclog_node(self.ids[&leader]);
        self.cluster.history().fault_stop(record).expect("history");
        outcome
    }

    /// The late-retry probe (`--late-retry`, module docs): returns what happened, for the
    /// timeline.
    pub async fn late_retry(&self, cluster: &Arc<SimCluster>, watch: &Watch) -> String {
        let group = 1;
        let partition = 0;
        let Some((leader, _)) =
            wait_for(ELECTION_WAIT, || watch.borrow().leaders.get(&group).copied().filter(|(n, _)| !self.cluster.stopped().contains(n)))
                .await
        else {
            return "group 1 has no live leader".into();
        };
        let replicas: Vec<u64> = watch.borrow().replicas.get(&group).map(|r| r.iter().copied().collect()).unwrap_or_default();
        let label = "F-N5 answers to one client lost, then F-P1 kill of every replica of a partition";
        let record = self.probe_start(label, vec![("node", leader.to_string()), ("partition", partition.to_string())]);
        // The late producer runs on a machine of its own, so that only its answers are lost.
        let late = self.runtime.create_node().name("client-late").ip(IpAddr::from([10, 0, 1, 2])).build();
        let late_id = late.id();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let task_cluster = cluster.clone();
        let retry = late.spawn(async move {
            let config = ProducerConfig { delivery_timeout: LATE_DELIVERY_TIMEOUT, ..probe_producer_config(&task_cluster) };
            // The topic's metadata and the leader's connection are in place before the answers
            // are lost.
            let producer = start_producer(&task_cluster, &[leader], config, Some(partition)).await;
            let _ = ready_tx.send(producer.is_some());
            let producer = producer?;
            go_rx.await.ok()?;
            let bound = LATE_DELIVERY_TIMEOUT + CLIENT_CALL_BOUND;
            Some(send_recorded(task_cluster, &producer, LATE_RETRY_PRODUCER, partition, 1, 0, bound, bound).await)
        });
        if !ready_rx.await.unwrap_or(false) {
            self.cluster.history().fault_stop(record).expect("history");
            return "the late producer did not start".into();
        }
        for &node in &self.cluster.machines() {
            self.net.clog_link(self.ids[&node], late_id);
        }
        let _ = go_tx.send(());
        let late_value = LATE_RETRY_PRODUCER * 1_000_000;
        // The late batch is committed: a poll reads it (and records where).
        let seen = wait_for_read(self, cluster, partition, late_value).await;
        let outcome = match seen {
            None => format!("the late batch was not read within {CLIENT_CALL_BOUND:?}"),
            Some(offset) => {
                let (task_cluster, nodes) = (cluster.clone(), self.cluster.nodes.clone());
                self.client_node
                    .spawn(async move {
                        let config = probe_producer_config(&task_cluster);
                        if let Some(producer) = start_producer(&task_cluster, &nodes, config, None).await {
                            let (count, key_bytes) = (FILLER_RECORDS, FILLER_KEY_BYTES);
                            send_recorded(
                                task_cluster,
                                &producer,
                                FILLER_PRODUCER,
                                partition,
                                count,
                                key_bytes,
                                CLIENT_CALL_BOUND,
                                FILLER_BOUND,
                            )
                            .await;
                            let _ = producer.close().await;
                        }
                    })
                    .await
                    .expect("filler task");
                let gone = wait_for(RETENTION_WAIT, || {
                    let watch = watch.borrow();
                    replicas.iter().all(|&n| watch.log_starts.get(&(n, group)).is_some_and(|&start| start > offset)).then_some(())
                })
                .await;
                let term_before = watch.borrow().leaders.get(&group).map_or(0, |&(_, t)| t);
                for &node in &replicas {
                    self.crash(node, CrashMode::Process);
                }
                for &node in &replicas {
                    self.runtime.restart(self.ids[&node]);
                }
                let elected =
                    wait_for(ELECTION_WAIT, || watch.borrow().leaders.get(&group).copied().filter(|&(_, t)| t > term_before)).await;
                format!(
                    "late batch at offset {offset}; retention {} it on every replica of group {group} {replicas:?}; restarted them; \
                     then {elected:?} led",
                    if gone.is_some() { "deleted" } else { "had not deleted" }
                )
            }
        };
        for &node in &self.cluster.machines() {
            self.net.unclog_link(self.ids[&node], late_id);
        }
        let offsets = retry.await.expect("late producer task");
        self.cluster.history().fault_stop(record).expect("history");
        format!("{outcome}; the late retry was acknowledged at {offsets:?}")
    }
}

/// Polls `partition` from its start on the client machine until `value` is read (bounded);
/// returns its offset.
async fn wait_for_read(targets: &FaultTargets<'_>, cluster: &Arc<SimCluster>, partition: u32, value: u64) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + CLIENT_CALL_BOUND;
    while tokio::time::Instant::now() < deadline {
        let nodes = targets.cluster.nodes.clone();
        let read = targets.client_node.spawn(poll_recorded(cluster.clone(), nodes, partition, None, 2)).await.expect("probe poll task");
        if let Some(&(offset, _)) = read.iter().find(|(_, v)| *v == value) {
            return Some(offset);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
