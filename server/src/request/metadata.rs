//! Metadata and DescribeCluster: what this node knows of the cluster (brokers, topics, partition
//! leaders, and for the partitions it hosts their raft progress). Any node answers. The leader of
//! a partition this node does not host is the one its replicas report ([`super::leaders`]); when
//! none answers, the preferred replica is a best guess (term 0 says it is a guess).

use std::collections::BTreeMap;

use odradek_client::wire::proto::{self as wire, ErrorCode, Response};
use odradek_consensus::{GroupId, NodeId};
use raft::StateRole;

use super::{leader_of, ok_response, partition_bounds, replica_to_try};
use crate::context::NodeContext;
use crate::meta::{self, METADATA_GROUP};

pub async fn metadata(context: &NodeContext, id: u64, body: wire::MetadataRequest) -> Response {
    let topics: Vec<(String, Option<meta::TopicInfo>)> = {
        let state = context.state.lock();
        let wanted: Vec<String> = if body.topics.is_empty() { state.meta.topics().keys().cloned().collect() } else { body.topics.to_vec() };
        wanted
            .into_iter()
            .map(|name| {
                let info = state.meta.topic(&name).cloned();
                (name, info)
            })
            .collect()
    };
    let mut metadata = wire::MetadataResponse::new();
    metadata.brokers = brokers(context).into();
    metadata.controller = leader_of(context, METADATA_GROUP).await.map_or(0, |(leader, _)| leader);
    // Leaders raft knows (the groups hosted here); the others' replicas are asked at once.
    let mut hosted = BTreeMap::new();
    let mut elsewhere = BTreeMap::new();
    for assignment in topics.iter().filter_map(|(_, info)| info.as_ref()).flat_map(|info| &info.partitions) {
        match leader_of(context, assignment.group).await {
            Some(leader) => {
                hosted.insert(assignment.group, leader);
            }
            None => {
                elsewhere.insert(assignment.group, assignment.replicas.clone());
            }
        }
    }
    let learned = if elsewhere.is_empty() { BTreeMap::new() } else { context.leaders.leaders(context, &elsewhere).await };
    for (name, info) in topics {
        let mut topic = wire::TopicMetadata::new();
        topic.name = name.clone();
        match info {
            None => topic.error = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            Some(info) => {
                for assignment in &info.partitions {
                    let known = hosted.get(&assignment.group).map(|&leader| Leader::Hosted(leader));
                    let known = known.or_else(|| learned.get(&assignment.group).map(|&leader| Leader::Learned(leader)));
                    topic.partitions.push(partition_metadata(context, assignment, known));
                }
            }
        }
        metadata.topics.push(topic);
    }
    let mut response = ok_response(id);
    response.set_metadata(metadata);
    response
}

/// What this node knows of a partition's leader: (leader, term).
#[derive(Clone, Copy, Debug)]
enum Leader {
    /// From raft: this node hosts the partition (leader 0: an election is on).
    Hosted((NodeId, u64)),
    /// From a replica that hosts it.
    Learned((NodeId, u64)),
}

/// One partition's entry: its leader and term as a replica knows them; when no replica
/// answered, the preferred replica is the best guess (term 0 says it is a guess), and it
/// redirects if wrong.
fn partition_metadata(context: &NodeContext, assignment: &meta::PartitionInfo, leader: Option<Leader>) -> wire::PartitionMetadata {
    let mut partition = wire::PartitionMetadata::new();
    partition.partition = assignment.partition;
    partition.replicas = assignment.replicas.clone();
    match leader {
        Some(Leader::Hosted((leader, term)) | Leader::Learned((leader, term))) if leader != 0 => {
            assert!(term != 0, "a leader known from raft or a replica comes with its term");
            partition.leader = leader;
            partition.leader_term = term;
        }
        Some(Leader::Hosted(_)) => partition.error = ErrorCode::LEADER_NOT_AVAILABLE,
        Some(Leader::Learned(_)) | None => partition.leader = replica_to_try(&assignment.replicas, context.state.node_id),
    }
    partition
}

/// The configured nodes, then the nodes that joined the running cluster, as brokers (but the
/// decommissioned ones).
pub(super) fn brokers(context: &NodeContext) -> Vec<wire::Broker> {
    let broker = |node_id, address: String| {
        let mut broker = wire::Broker::new();
        broker.node_id = node_id;
        broker.address = address;
        broker
    };
    let state = context.state.lock();
    let removed = state.meta.removed();
    let mut brokers: Vec<wire::Broker> = context
        .config
        .nodes
        .iter()
        .filter(|member| !removed.contains(&member.id))
        .map(|member| broker(member.id, member.client.to_string()))
        .collect();
    for member in state.meta.members().values().filter(|member| context.config.nodes.iter().all(|node| node.id != member.node_id)) {
        brokers.push(broker(member.node_id, member.client_address.to_string()));
    }
    brokers
}

/// A leader's view of every replica's progress (lag in raft entries).
fn replica_statuses(status: &odradek_consensus::GroupStatus) -> Vec<wire::ReplicaStatus> {
    assert_eq!(status.role, StateRole::Leader, "only a leader tracks its replicas' progress");
    status
        .progress
        .iter()
        .map(|(&node_id, &(matched, _))| {
            let mut replica = wire::ReplicaStatus::new();
            replica.node_id = node_id;
            replica.matched_index = matched;
            replica.lag = status.last_index.saturating_sub(matched);
            replica
        })
        .collect()
}

pub async fn describe_cluster(context: &NodeContext, id: u64) -> Response {
    let mut cluster = wire::DescribeClusterResponse::new();
    cluster.brokers = brokers(context).into();
    cluster.node_id = context.state.node_id;
    if let Ok(Some((status, conf))) = context.node.status(METADATA_GROUP).await {
        cluster.controller = status.leader;
        let (mut voters, mut learners) = (conf.voters.clone(), conf.learners.clone());
        voters.sort_unstable();
        learners.sort_unstable();
        cluster.controller_voters = voters;
        cluster.controller_learners = learners;
        cluster.controller_voters_target = context.state.lock().meta.controller_voters_target().cloned().unwrap_or_default();
        cluster.draining = context.state.lock().meta.draining().iter().copied().collect();
        if status.role == StateRole::Leader {
            cluster.controller_replicas = replica_statuses(&status).into();
        }
    }
    {
        let state = context.state.lock();
        if let Some(repair) = state.meta.metadata_repair() {
            let mut entry = wire::ReplicaRepair::new();
            entry.metadata = true;
            entry.node = repair.node;
            entry.phase = repair.phase.name().to_string();
            cluster.repairs.push(entry);
        }
        for (&group, repair) in state.meta.repairs() {
            let Some((topic, info)) = state.meta.partition_of_group(group) else { continue };
            let mut entry = wire::ReplicaRepair::new();
            entry.topic = topic.name.clone();
            entry.partition = info.partition;
            entry.node = repair.node;
            entry.phase = repair.phase.name().to_string();
            cluster.repairs.push(entry);
        }
        cluster.repairs_completed = state.meta.repairs_completed();
        cluster.removed = state.meta.removed().iter().copied().collect();
    }
    let moving = context.state.lock().meta.reassignments();
    for reassignment in moving {
        let mut entry = wire::Reassignment::new();
        entry.phase = crate::reassign::phase(context, reassignment.group, &reassignment.replicas_to).await;
        entry.topic = reassignment.topic;
        entry.partition = reassignment.partition;
        entry.replicas_from = reassignment.replicas_from;
        entry.replicas_to = reassignment.replicas_to;
        cluster.reassignments.push(entry);
    }
    let hosted: Vec<(String, u32, GroupId, Vec<NodeId>)> = {
        let state = context.state.lock();
        state
            .meta
            .topics()
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (topic.name.clone(), p.partition, p.group, p.replicas.clone())))
            .filter(|(_, _, group, _)| state.partitions.contains_key(group))
            .collect()
    };
    for (topic, partition, group, assigned) in hosted {
        let Ok(Some((status, conf_state))) = context.node.status(group).await else { continue };
        let Some(bounds) = partition_bounds(context, group) else { continue };
        let mut entry = wire::PartitionStatus::new();
        entry.topic = topic;
        entry.partition = partition;
        entry.leader = status.leader;
        entry.term = status.term;
        entry.commit_index = status.commit;
        entry.high_watermark = bounds.high_watermark;
        entry.log_start_offset = bounds.log_start_offset;
        entry.suspect = status.suspect;
        entry.assigned = assigned;
        entry.learners = conf_state.learners.clone();
        if status.role == StateRole::Leader {
            entry.replicas = replica_statuses(&status).into();
        }
        cluster.partitions.push(entry);
    }
    let mut response = ok_response(id);
    response.set_describe_cluster(cluster);
    response
}
