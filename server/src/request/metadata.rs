//! Metadata and DescribeCluster: what this node knows of the cluster (brokers, topics, partition
//! leaders, and for the partitions it hosts their raft progress). Any node answers; a partition
//! this node does not host gets its preferred replica as a best guess at the leader.

use odradek_client::wire::proto::{self as wire, ErrorCode, Response};
use odradek_consensus::GroupId;
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
    for (name, info) in topics {
        let mut topic = wire::TopicMetadata::new();
        topic.name = name.clone();
        match info {
            None => topic.error = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            Some(info) => {
                for assignment in &info.partitions {
                    topic.partitions.push(partition_metadata(context, assignment).await);
                }
            }
        }
        metadata.topics.push(topic);
    }
    let mut response = ok_response(id);
    response.set_metadata(metadata);
    response
}

/// One partition's entry: a replica knows the leader; elsewhere the preferred replica is the
/// best guess (term 0 says it is a guess), and it redirects if wrong.
async fn partition_metadata(context: &NodeContext, assignment: &meta::PartitionInfo) -> wire::PartitionMetadata {
    let mut partition = wire::PartitionMetadata::new();
    partition.partition = assignment.partition;
    partition.replicas = assignment.replicas.clone();
    match leader_of(context, assignment.group).await {
        Some((leader, term)) if leader != 0 => {
            partition.leader = leader;
            partition.leader_term = term;
        }
        Some(_) => partition.error = ErrorCode::LEADER_NOT_AVAILABLE,
        None => partition.leader = replica_to_try(&assignment.replicas, context.state.node_id),
    }
    partition
}

/// The configured nodes, as brokers.
fn brokers(context: &NodeContext) -> Vec<wire::Broker> {
    context
        .config
        .nodes
        .iter()
        .map(|member| {
            let mut broker = wire::Broker::new();
            broker.node_id = member.id;
            broker.address = member.client.to_string();
            broker
        })
        .collect()
}

pub async fn describe_cluster(context: &NodeContext, id: u64) -> Response {
    let mut cluster = wire::DescribeClusterResponse::new();
    cluster.brokers = brokers(context).into();
    cluster.controller = leader_of(context, METADATA_GROUP).await.map_or(0, |(leader, _)| leader);
    let hosted: Vec<(String, u32, GroupId)> = {
        let state = context.state.lock();
        state
            .meta
            .topics()
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (topic.name.clone(), p.partition, p.group)))
            .filter(|(_, _, group)| state.partitions.contains_key(group))
            .collect()
    };
    for (topic, partition, group) in hosted {
        let Ok(Some((status, _))) = context.node.status(group).await else { continue };
        let Some(bounds) = partition_bounds(context, group) else { continue };
        let mut entry = wire::PartitionStatus::new();
        entry.topic = topic;
        entry.partition = partition;
        entry.leader = status.leader;
        entry.term = status.term;
        entry.commit_index = status.commit;
        entry.high_watermark = bounds.high_watermark;
        entry.log_start_offset = bounds.log_start_offset;
        if status.role == StateRole::Leader {
            for (&node_id, &(matched, _)) in &status.progress {
                let mut replica = wire::ReplicaStatus::new();
                replica.node_id = node_id;
                replica.matched_index = matched;
                replica.lag = status.last_index.saturating_sub(matched);
                entry.replicas.push(replica);
            }
        }
        cluster.partitions.push(entry);
    }
    let mut response = ok_response(id);
    response.set_describe_cluster(cluster);
    response
}
