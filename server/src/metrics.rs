//! What an operator sees of a node: a Prometheus registry ([`NodeMetrics`]) and its text
//! endpoint ([`http`], `--metrics-listen`, off by default).
//!
//! Two kinds of values:
//! - counted where they happen, always (a few atomics per request or fsync, whether or not the
//!   endpoint runs): requests and their latency per listener and API, fsync latency
//!   ([`disk::MeteredDisk`]), open client connections;
//! - sampled from the raft driver and the applied state (`refresh_sampled`) on every scrape and every
//!   `SAMPLE_INTERVAL` while the endpoint runs: per hosted partition its leader, term, high
//!   watermark, log start and end, suspect flag and (on its leader) each follower's lag; the
//!   controller group's leader and term; free disk space. Elections and leader changes are
//!   counted from those samples: a term is never reused, so the count of terms started is exact
//!   whatever the sampling; a leader that came and went between two samples is not seen.
//!
//! Invariants: a partition's gauges name exactly the partitions hosted at the last refresh (the
//! families are cleared and refilled under one lock, so a scrape never shows half a refresh);
//! the sampler exists only while the endpoint runs, so a node without `--metrics-listen` (every
//! simulation) asks its driver nothing more than before.
//!
//! Cost: a refresh asks the driver for two small answers per hosted partition (status and log
//! bounds), about 2 × 1,000 channel round trips for a node with 1,000 replicas, once a second;
//! the text of 1,000 partitions is about 1 MB (eight gauges and a lag per follower each).

pub mod disk;
pub mod http;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_consensus::{GroupId, NodeId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::context::NodeContext;
use crate::meta::METADATA_GROUP;

/// How often the sampler refreshes the partition gauges between scrapes (it counts elections
/// and leader changes, which a scrape every 15 s would mostly miss).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Latency buckets: 100 µs doubling to about 3.3 s (16 buckets), for requests and fsyncs alike.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// One API on one listener (`native` or `kafka`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub listener: &'static str,
    pub api: String,
}

/// One listener's open connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// One partition replica hosted here.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: u32,
}

/// A damaged replica being repaired (issue 15, `crate::repair`), per the metadata.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    pub topic: String,
    pub partition: u32,
    pub node: u64,
    pub phase: &'static str,
}

/// A node's damaged metadata replica being repaired (issue 15, `crate::meta_repair`), per the
/// metadata.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetadataRepairLabels {
    pub node: u64,
    pub phase: &'static str,
}

/// A follower of a partition this node leads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowerLabels {
    pub topic: String,
    pub partition: u32,
    pub follower: u64,
}

type LatencyFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

/// The per-partition gauges, refilled by each refresh.
#[derive(Default)]
struct PartitionGauges {
    leader: Family<PartitionLabels, Gauge>,
    term: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    log_start_offset: Family<PartitionLabels, Gauge>,
    log_end_offset: Family<PartitionLabels, Gauge>,
    suspect: Family<PartitionLabels, Gauge>,
    follower_lag_entries: Family<FollowerLabels, Gauge>,
}

impl PartitionGauges {
    fn clear(&self) {
        for family in [&self.leader, &self.term, &self.high_watermark, &self.log_start_offset, &self.log_end_offset, &self.suspect] {
            family.clear();
        }
        self.follower_lag_entries.clear();
    }
}

/// A node's metrics (see the module comment).
pub struct NodeMetrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    request_latency: LatencyFamily,
    fsync_latency: Histogram,
    connections: Family<ListenerLabels, Gauge>,
    partitions: PartitionGauges,
    controller_leader: Gauge,
    controller_term: Gauge,
    elections: Counter,
    leader_changes: Counter,
    quarantined: Gauge,
    disk_available_bytes: Gauge,
    repairs: Family<RepairLabels, Gauge>,
    repairs_completed: Gauge,
    metadata_repairs: Family<MetadataRepairLabels, Gauge>,
    metadata_rebuilding: Gauge,
    /// Per raft group: the last leader known (0: none yet) and the term of the last sample.
    seen: std::sync::Mutex<BTreeMap<GroupId, (NodeId, u64)>>,
    /// Held through a refresh and the encoding after it (see the module's invariants).
    refreshing: tokio::sync::Mutex<()>,
}

/// `value` as a gauge's i64 (saturating: offsets and indexes stay far below it).
fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::with_prefix("odradek");
        let requests = Family::<ApiLabels, Counter>::default();
        let request_latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let fsync_latency = latency_histogram();
        let connections = Family::<ListenerLabels, Gauge>::default();
        let partitions = PartitionGauges::default();
        let (controller_leader, controller_term, quarantined, disk_available_bytes) =
            (Gauge::default(), Gauge::default(), Gauge::default(), Gauge::default());
        let (elections, leader_changes) = (Counter::default(), Counter::default());
        registry.register("requests", "Requests answered, per listener and API", requests.clone());
        registry.register("request_latency_seconds", "Time from a request's arrival to its answer", request_latency.clone());
        registry.register("fsync_latency_seconds", "Duration of each fsync (file data and directories)", fsync_latency.clone());
        registry.register("client_connections", "Open client connections, per listener", connections.clone());
        let gauges = [
            ("partition_leader", "The partition's leader as this replica knows it (0: none)", &partitions.leader),
            ("partition_term", "The raft term of this replica", &partitions.term),
            ("partition_high_watermark", "The high watermark this replica has applied (committed)", &partitions.high_watermark),
            ("partition_log_start_offset", "The first offset clients may read here", &partitions.log_start_offset),
            (
                "partition_log_end_offset",
                "The offset after the last record in this replica's log (committed or not)",
                &partitions.log_end_offset,
            ),
            ("partition_suspect", "1 while this replica is suspect after a recovery cut (no votes)", &partitions.suspect),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "partition_follower_lag_entries",
            "On the leader: raft entries a follower has yet to match",
            partitions.follower_lag_entries.clone(),
        );
        registry.register("controller_leader", "The metadata group's leader as this node knows it (0: none)", controller_leader.clone());
        registry.register("controller_term", "The metadata group's raft term on this node", controller_term.clone());
        registry.register(
            "raft_elections",
            "Raft terms started in the groups hosted here, since this node first saw each",
            elections.clone(),
        );
        registry.register("raft_leader_changes", "Leader changes seen in the groups hosted here (sampled)", leader_changes.clone());
        registry.register("quarantined", "1 when this node's metadata files are damaged and it serves no client", quarantined.clone());
        let (repairs, repairs_completed) = (Family::<RepairLabels, Gauge>::default(), Gauge::default());
        registry.register(
            "replica_repairs",
            "1 per damaged replica being repaired, by phase (blocked: its partition's only replica, kept down; waiting; rebuilding)",
            repairs.clone(),
        );
        registry.register("replica_repairs_completed", "Damaged replicas repaired since the cluster started", repairs_completed.clone());
        let (metadata_repairs, metadata_rebuilding) = (Family::<MetadataRepairLabels, Gauge>::default(), Gauge::default());
        registry.register(
            "metadata_replica_repairs",
            "1 per node whose damaged metadata replica is being repaired, by phase (waiting; rebuilding)",
            metadata_repairs.clone(),
        );
        registry.register(
            "metadata_replica_rebuilding",
            "1 while this node's metadata replica, rebuilt after damage, catches up out of the votes",
            metadata_rebuilding.clone(),
        );
        registry.register(
            "disk_available_bytes",
            "Free space of the data directory's file system at the last measurement",
            disk_available_bytes.clone(),
        );
        NodeMetrics {
            registry,
            requests,
            request_latency,
            fsync_latency,
            connections,
            partitions,
            controller_leader,
            controller_term,
            elections,
            leader_changes,
            quarantined,
            disk_available_bytes,
            repairs,
            repairs_completed,
            metadata_repairs,
            metadata_rebuilding,
            seen: Default::default(),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The histogram every fsync of this node's disk reports to.
    pub fn fsync_histogram(&self) -> Histogram {
        self.fsync_latency.clone()
    }

    /// One request answered on `listener` after `elapsed`.
    pub fn observe_request(&self, listener: &'static str, api: &str, elapsed: Duration) {
        let labels = ApiLabels { listener, api: api.to_string() };
        self.requests.get_or_create(&labels).inc();
        self.request_latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts a client connection on `listener` until the returned guard drops.
    pub fn connection_opened(&self, listener: &'static str) -> ConnectionGauge {
        let gauge = self.connections.get_or_create_owned(&ListenerLabels { listener });
        gauge.inc();
        ConnectionGauge(gauge)
    }

    pub fn set_quarantined(&self, quarantined: bool) {
        self.quarantined.set(i64::from(quarantined));
    }

    /// Records a sample of `group`'s leader and term: counts the terms started and the leader
    /// changes since the last sample.
    fn observe_group(&self, group: GroupId, leader: NodeId, term: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = seen.get(&group).copied();
        // A sample without a known leader keeps the last known one (a blip is no change).
        let leader_known = if leader == 0 { previous.map_or(0, |(before, _)| before) } else { leader };
        seen.insert(group, (leader_known, term));
        let Some((leader_before, term_before)) = previous else { return };
        // A replica's term never goes down (raft persists it before acting on it).
        assert!(term >= term_before, "group {group}: term went from {term_before} to {term}");
        self.elections.inc_by(term - term_before);
        if leader != 0 && leader != leader_before {
            self.leader_changes.inc();
        }
    }

    /// Forgets the groups not hosted any more (their next incarnation starts a new history).
    fn retain_groups(&self, hosted: &[GroupId]) {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.retain(|group, _| *group == METADATA_GROUP || hosted.contains(group));
    }
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics::new()
    }
}

/// One open client connection, counted until dropped.
pub struct ConnectionGauge(Gauge);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        let before = self.0.dec();
        assert!(before > 0, "a connection is counted out once");
    }
}

/// The replicas hosted here with what the applied state knows of each: (group, labels, high
/// watermark, log start).
fn hosted_partitions(context: &NodeContext) -> Vec<(GroupId, PartitionLabels, u64, u64)> {
    let state = context.state.lock();
    state
        .partitions
        .iter()
        .filter_map(|(&group, partition)| {
            let (topic, assignment) = state.meta.partition_of_group(group)?;
            let labels = PartitionLabels { topic: topic.name.clone(), partition: assignment.partition };
            Some((group, labels, partition.state.high_watermark(), partition.state.log_start_offset()))
        })
        .collect()
}

/// Refills the sampled values from the raft driver and the applied state.
async fn refresh_sampled(context: &NodeContext) {
    let metrics = &context.metrics;
    let me = context.state.node_id;
    let hosted = hosted_partitions(context);
    metrics.partitions.clear();
    for (group, labels, high_watermark, log_start_offset) in &hosted {
        let gauges = &metrics.partitions;
        gauges.high_watermark.get_or_create(labels).set(gauge_value(*high_watermark));
        gauges.log_start_offset.get_or_create(labels).set(gauge_value(*log_start_offset));
        if let Ok(Some(bounds)) = context.node.log_bounds(*group).await {
            gauges.log_end_offset.get_or_create(labels).set(gauge_value(bounds.offset_next));
        }
        let Ok(Some((status, _))) = context.node.status(*group).await else { continue };
        gauges.leader.get_or_create(labels).set(gauge_value(status.leader));
        gauges.term.get_or_create(labels).set(gauge_value(status.term));
        gauges.suspect.get_or_create(labels).set(i64::from(status.suspect));
        if status.leader == me {
            for (&follower, &(matched, _)) in status.progress.iter().filter(|(&id, _)| id != me) {
                let lag = status.last_index.saturating_sub(matched);
                let follower_labels = FollowerLabels { topic: labels.topic.clone(), partition: labels.partition, follower };
                gauges.follower_lag_entries.get_or_create(&follower_labels).set(gauge_value(lag));
            }
        }
        metrics.observe_group(*group, status.leader, status.term);
    }
    if let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await {
        metrics.controller_leader.set(gauge_value(status.leader));
        metrics.controller_term.set(gauge_value(status.term));
        metrics.observe_group(METADATA_GROUP, status.leader, status.term);
    }
    metrics.retain_groups(&hosted.iter().map(|(group, ..)| *group).collect::<Vec<_>>());
    metrics.repairs.clear();
    {
        let state = context.state.lock();
        metrics.metadata_repairs.clear();
        if let Some(repair) = state.meta.metadata_repair() {
            metrics.metadata_repairs.get_or_create(&MetadataRepairLabels { node: repair.node, phase: repair.phase.name() }).set(1);
        }
        for (&group, repair) in state.meta.repairs() {
            let Some((topic, info)) = state.meta.partition_of_group(group) else { continue };
            let labels =
                RepairLabels { topic: topic.name.clone(), partition: info.partition, node: repair.node, phase: repair.phase.name() };
            metrics.repairs.get_or_create(&labels).set(1);
        }
        metrics.repairs_completed.set(gauge_value(state.meta.repairs_completed()));
    }
    metrics.disk_available_bytes.set(gauge_value(context.state.disk_available_bytes()));
    metrics.metadata_rebuilding.set(i64::from(context.state.is_metadata_rebuilding()));
}

/// Refreshes the sampled values and encodes the whole registry (OpenMetrics text).
pub async fn scrape(context: &NodeContext) -> String {
    let _refreshing = context.metrics.refreshing.lock().await;
    refresh_sampled(context).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &context.metrics.registry).expect("writing to a String cannot fail");
    text
}

/// Samples every [`SAMPLE_INTERVAL`] until shutdown (runs only with the endpoint).
pub async fn run_sampler(context: std::sync::Arc<NodeContext>, mut shutdown: crate::shutdown::Shutdown) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return,
            _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
        }
        let _refreshing = context.metrics.refreshing.lock().await;
        refresh_sampled(&context).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elections_count_every_term_and_leader_changes_count_new_leaders() {
        let metrics = NodeMetrics::new();
        metrics.observe_group(7, 1, 3);
        assert_eq!((metrics.elections.get(), metrics.leader_changes.get()), (0, 0), "the first sample has no history");
        metrics.observe_group(7, 2, 6);
        assert_eq!((metrics.elections.get(), metrics.leader_changes.get()), (3, 1), "three terms between the samples, one new leader");
        metrics.observe_group(7, 0, 7);
        assert_eq!((metrics.elections.get(), metrics.leader_changes.get()), (4, 1), "no leader known is not a change");
        metrics.observe_group(7, 2, 7);
        assert_eq!(metrics.leader_changes.get(), 1, "the same leader again");
        metrics.retain_groups(&[]);
        metrics.observe_group(7, 3, 9);
        assert_eq!(metrics.elections.get(), 4, "a forgotten group starts a new history");
    }

    #[test]
    fn connections_are_counted_while_open() {
        let metrics = NodeMetrics::new();
        let gauge = || metrics.connections.get_or_create(&ListenerLabels { listener: "native" }).get();
        let first = metrics.connection_opened("native");
        let second = metrics.connection_opened("native");
        assert_eq!(gauge(), 2);
        drop(first);
        assert_eq!(gauge(), 1);
        drop(second);
        assert_eq!(gauge(), 0);
    }

    #[test]
    fn the_text_names_every_family_with_the_prefix() {
        let metrics = NodeMetrics::new();
        metrics.observe_request("kafka", "Produce", Duration::from_millis(3));
        metrics.fsync_histogram().observe(0.002);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(text.contains("odradek_requests_total{listener=\"kafka\",api=\"Produce\"} 1"), "{text}");
        assert!(text.contains("odradek_request_latency_seconds_count{listener=\"kafka\",api=\"Produce\"} 1"), "{text}");
        assert!(text.contains("odradek_fsync_latency_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with EOF");
    }
}
