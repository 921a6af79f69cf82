//! Consumer-group requests (protocol version 2): the wire side of the coordinator
//! ([`crate::group::service::GroupService`]): FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, ConsumerGroupHeartbeat, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups
//! and DeleteGroups. This file only translates between protobuf messages and the service's
//! types; every decision is the service's.
//!
//! FindCoordinator creates the offsets topic the first time a group is used (Kafka does the
//! same), through the controller like any topic, and answers `COORDINATOR_NOT_AVAILABLE`
//! (retriable) until its partitions have leaders.

use std::collections::BTreeMap;

use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body, Response};

use super::{admin, ok_response};
use crate::context::NodeContext;
use crate::group::classic::{JoinRequest, SyncRequest};
use crate::group::consumer::HeartbeatRequest;
use crate::group::record::{encode_partitions, OffsetCommit};
use crate::group::service::{CoordinatorSearch, Refusal};
use crate::group::table::{CommitRules, GroupKind, Protocol};
use crate::group::{Partitions, OFFSETS_TOPIC};

/// The answer to request `id` for a refusal (with the coordinator hint).
fn refused(id: u64, refusal: Refusal) -> Response {
    let mut response = error_response(id, refusal.code, refusal.message);
    response.coordinator_hint = refusal.coordinator_hint;
    response
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// Whether `body` is a consumer-group request (protocol version 2).
pub fn is_group_request(body: &Body) -> bool {
    matches!(
        body,
        Body::find_coordinator(_)
            | Body::join_group(_)
            | Body::sync_group(_)
            | Body::heartbeat(_)
            | Body::leave_group(_)
            | Body::consumer_group_heartbeat(_)
            | Body::offset_commit(_)
            | Body::offset_fetch(_)
            | Body::list_groups(_)
            | Body::describe_groups(_)
            | Body::delete_groups(_)
            | Body::offset_delete(_)
    )
}

/// Answers one group request.
pub async fn handle(context: &NodeContext, id: u64, body: Body) -> Response {
    match body {
        Body::find_coordinator(body) => find_coordinator(context, id, body).await,
        Body::join_group(body) => join_group(context, id, body).await,
        Body::sync_group(body) => sync_group(context, id, body).await,
        Body::heartbeat(body) => {
            let service = &context.groups;
            match service.heartbeat(&body.group, &body.member_id, body.generation, non_empty(&body.group_instance_id).as_deref()).await {
                Ok(()) => {
                    let mut response = ok_response(id);
                    response.set_heartbeat(wire::HeartbeatResponse::new());
                    response
                }
                Err(refusal) => refused(id, refusal),
            }
        }
        Body::leave_group(body) => leave_group(context, id, body).await,
        Body::consumer_group_heartbeat(body) => consumer_heartbeat(context, id, body).await,
        Body::offset_commit(body) => offset_commit(context, id, body).await,
        Body::offset_fetch(body) => offset_fetch(context, id, body).await,
        Body::list_groups(_) => list_groups(context, id).await,
        Body::describe_groups(body) => describe_groups(context, id, body).await,
        Body::delete_groups(body) => delete_groups(context, id, body).await,
        Body::offset_delete(body) => offset_delete(context, id, body).await,
        _ => unreachable!("only group requests are routed here"),
    }
}

async fn find_coordinator(context: &NodeContext, id: u64, body: wire::FindCoordinatorRequest) -> Response {
    match context.groups.find_coordinator(&body.group).await {
        Ok(Some(search)) => {
            let (node_id, partition) = match search {
                CoordinatorSearch::Leader { node, partition } => (node, partition),
                CoordinatorSearch::Elsewhere { partition, replicas, .. } if context.planted.coordinator_names_preferred => {
                    (replicas.first().copied().unwrap_or(0), partition) // planted: possibly this node
                }
                CoordinatorSearch::Elsewhere { raft_group, partition, replicas } => {
                    // Kafka answers from its metadata cache's partition leader; here the hosting
                    // replicas report it (`leaders`). Without an answer, a replica other than this
                    // node: one that cannot host the partition must not name itself.
                    let asked = BTreeMap::from([(raft_group, replicas.clone())]);
                    let learned = context.leaders.leaders(context, &asked).await;
                    let me = context.state.node_id;
                    let node = learned
                        .get(&raft_group)
                        .filter(|&&(leader, _)| leader != me)
                        .map_or_else(|| super::replica_to_try(&replicas, me), |&(leader, _)| leader);
                    (node, partition)
                }
            };
            let Some(client_address) = context.client_address(node_id) else {
                return error_response(id, ErrorCode::COORDINATOR_NOT_AVAILABLE, format!("coordinator {node_id} is not a known node"));
            };
            let mut found = wire::FindCoordinatorResponse::new();
            found.node_id = node_id;
            found.address = client_address.to_string();
            found.partition = partition;
            let mut response = ok_response(id);
            response.set_find_coordinator(found);
            response
        }
        Ok(None) => {
            // The first group of the cluster: create the offsets topic (the controller gives it
            // the coordinator's settings whatever is asked), then let the client retry.
            let mut create = wire::CreateTopic::new();
            create.name = OFFSETS_TOPIC.to_string();
            let mut request = wire::CreateTopicsRequest::new();
            request.topics.push(create);
            let created = admin::controller_request(context, id, Body::create_topics(request)).await;
            tracing::info!(node = context.state.node_id, error = ?created.error, "creating the offsets topic for the first group");
            error_response(id, ErrorCode::COORDINATOR_NOT_AVAILABLE, "the offsets topic is being created; retry shortly")
        }
        Err(refusal) => refused(id, refusal),
    }
}

async fn join_group(context: &NodeContext, id: u64, body: wire::JoinGroupRequest) -> Response {
    let request = JoinRequest {
        member_id: body.member_id.clone(),
        instance_id: non_empty(&body.group_instance_id),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: body.rebalance_timeout_ms,
        protocol_type: body.protocol_type.clone(),
        protocols: body.protocols.iter().map(|p| Protocol { name: p.name.clone(), metadata: p.metadata.clone() }).collect(),
        client_id: body.client_id.clone(),
        require_known_member_id: body.require_known_member_id,
    };
    match context.groups.join_group(&body.group, request).await {
        Ok(answer) => {
            let mut joined = wire::JoinGroupResponse::new();
            joined.generation = answer.generation;
            joined.protocol_name = answer.protocol_name;
            joined.leader = answer.leader;
            joined.member_id = answer.member_id;
            joined.skip_assignment = answer.skip_assignment;
            for (member_id, instance, metadata) in answer.members {
                let mut member = wire::JoinGroupMember::new();
                member.member_id = member_id;
                member.group_instance_id = instance.unwrap_or_default();
                member.metadata = metadata;
                joined.members.push(member);
            }
            let mut response = ok_response(id);
            response.set_join_group(joined);
            response
        }
        Err(refusal) if refusal.code == ErrorCode::MEMBER_ID_REQUIRED => {
            let mut joined = wire::JoinGroupResponse::new();
            joined.member_id.clone_from(&refusal.member_id);
            let mut response = refused(id, refusal);
            response.set_join_group(joined);
            response
        }
        Err(refusal) => refused(id, refusal),
    }
}

async fn sync_group(context: &NodeContext, id: u64, body: wire::SyncGroupRequest) -> Response {
    let request = SyncRequest {
        member_id: body.member_id.clone(),
        generation: body.generation,
        instance_id: non_empty(&body.group_instance_id),
        assignments: body.assignments.iter().map(|a| (a.member_id.clone(), a.assignment.clone())).collect(),
    };
    match context.groups.sync_group(&body.group, request).await {
        Ok((assignment, protocol_name)) => {
            let mut synced = wire::SyncGroupResponse::new();
            synced.assignment = assignment;
            synced.protocol_name = protocol_name;
            let mut response = ok_response(id);
            response.set_sync_group(synced);
            response
        }
        Err(refusal) => refused(id, refusal),
    }
}

async fn leave_group(context: &NodeContext, id: u64, body: wire::LeaveGroupRequest) -> Response {
    let leaving: Vec<(String, Option<String>)> =
        body.members.iter().map(|m| (m.member_id.clone(), non_empty(&m.group_instance_id))).collect();
    match context.groups.leave_group(&body.group, &leaving).await {
        Ok(results) => {
            let mut left = wire::LeaveGroupResponse::new();
            for ((member_id, instance), result) in leaving.into_iter().zip(results) {
                let mut entry = wire::MemberResult::new();
                entry.member_id = member_id;
                entry.group_instance_id = instance.unwrap_or_default();
                if let Err(refusal) = result {
                    entry.error = refusal.code;
                    entry.error_message = refusal.message;
                }
                left.members.push(entry);
            }
            let mut response = ok_response(id);
            response.set_leave_group(left);
            response
        }
        Err(refusal) => refused(id, refusal),
    }
}

async fn consumer_heartbeat(context: &NodeContext, id: u64, body: wire::ConsumerGroupHeartbeatRequest) -> Response {
    let request = HeartbeatRequest {
        member_id: body.member_id.clone(),
        member_epoch: body.member_epoch,
        instance_id: non_empty(&body.group_instance_id),
        rebalance_timeout_ms: body.rebalance_timeout_ms,
        subscription: body.subscription_set.then(|| body.subscribed_topics.to_vec()),
        subscribed_regex: body.regex_set.then(|| body.subscribed_regex.clone()),
        server_assignor: non_empty(&body.server_assignor),
        owned: body.owned_set.then(|| decode_wire_partitions(&body.owned)),
        client_id: body.client_id.clone(),
    };
    match context.groups.consumer_heartbeat(&body.group, request).await {
        Ok((answer, interval_ms)) => {
            let mut beat = wire::ConsumerGroupHeartbeatResponse::new();
            beat.member_id = answer.member_id;
            beat.member_epoch = answer.member_epoch;
            beat.heartbeat_interval_ms = interval_ms;
            beat.assignment = encode_wire_partitions(&answer.assignment);
            let mut response = ok_response(id);
            response.set_consumer_group_heartbeat(beat);
            response
        }
        Err(refusal) => refused(id, refusal),
    }
}

async fn offset_commit(context: &NodeContext, id: u64, body: wire::OffsetCommitRequest) -> Response {
    let commit = OffsetCommit {
        group: body.group.clone(),
        member_id: body.member_id.clone(),
        epoch: body.epoch,
        instance_id: non_empty(&body.group_instance_id),
        offsets: body.offsets.iter().map(|o| ((o.topic.clone(), o.partition), o.offset, o.metadata.clone())).collect(),
        admin: body.member_id.is_empty() && body.epoch < 0,
    };
    let rules = match body.rules {
        wire::CommitRules::COMMIT_RULES_NATIVE => CommitRules::Native,
        wire::CommitRules::COMMIT_RULES_KAFKA_BELOW_V9 => CommitRules::KafkaBelowV9,
        wire::CommitRules::COMMIT_RULES_KAFKA_V9 => CommitRules::KafkaV9,
    };
    let outcome = context.groups.offset_commit(commit, rules).await;
    let mut committed = wire::OffsetCommitResponse::new();
    for offset in &body.offsets {
        let mut result = wire::OffsetCommitPartitionResult::new();
        result.topic = offset.topic.clone();
        result.partition = offset.partition;
        if let Err(refusal) = &outcome {
            result.error = refusal.code;
            result.error_message = refusal.message.clone();
        }
        committed.partitions.push(result);
    }
    let mut response = match outcome {
        Ok(()) => ok_response(id),
        Err(refusal) => refused(id, refusal),
    };
    response.set_offset_commit(committed);
    response
}

async fn offset_fetch(context: &NodeContext, id: u64, body: wire::OffsetFetchRequest) -> Response {
    let partitions: Vec<(String, u32)> = decode_wire_partitions(&body.partitions).into_iter().collect();
    match context.groups.offset_fetch(&body.group, &partitions).await {
        Ok(offsets) => {
            let mut fetched = wire::OffsetFetchResponse::new();
            for ((topic, partition), offset, metadata) in offsets {
                fetched.partitions.push(fetch_entry(topic, partition, offset, metadata));
            }
            let mut response = ok_response(id);
            response.set_offset_fetch(fetched);
            response
        }
        Err(refusal) => refused(id, refusal),
    }
}

async fn offset_delete(context: &NodeContext, id: u64, body: wire::OffsetDeleteRequest) -> Response {
    // In request order (duplicates kept): each partition asked gets its own result.
    let partitions: Vec<(String, u32)> =
        body.partitions.iter().flat_map(|entry| entry.partitions.iter().map(move |&partition| (entry.topic.clone(), partition))).collect();
    match context.groups.offset_delete(&body.group, &partitions).await {
        Ok(codes) => {
            let mut deleted = wire::OffsetDeleteResponse::new();
            for ((topic, partition), code) in codes {
                let mut result = wire::OffsetCommitPartitionResult::new();
                result.topic = topic;
                result.partition = partition;
                result.error = code;
                deleted.partitions.push(result);
            }
            let mut response = ok_response(id);
            response.set_offset_delete(deleted);
            response
        }
        Err(refusal) => refused(id, refusal),
    }
}

fn fetch_entry(topic: String, partition: u32, offset: i64, metadata: String) -> wire::OffsetFetchPartition {
    let mut entry = wire::OffsetFetchPartition::new();
    entry.topic = topic;
    entry.partition = partition;
    entry.offset = offset;
    entry.metadata = metadata;
    entry
}

async fn list_groups(context: &NodeContext, id: u64) -> Response {
    let mut listed = wire::ListGroupsResponse::new();
    for (group, protocol_type, state, kind) in context.groups.list_groups().await {
        let mut entry = wire::ListedGroup::new();
        entry.group = group;
        entry.protocol_type = protocol_type;
        entry.state = state.to_string();
        entry.kind = kind.to_string();
        listed.groups.push(entry);
    }
    let mut response = ok_response(id);
    response.set_list_groups(listed);
    response
}

async fn describe_groups(context: &NodeContext, id: u64, body: wire::DescribeGroupsRequest) -> Response {
    let mut described = wire::DescribeGroupsResponse::new();
    for group in body.groups.iter() {
        let mut entry = wire::DescribedGroup::new();
        entry.group = group.clone();
        match context.groups.describe_group(group).await {
            Ok(found) => {
                let membership = found.membership;
                entry.state = found.state.to_string();
                entry.kind = membership.kind.map_or("", GroupKind::name).to_string();
                entry.protocol_type = membership.protocol_type.clone();
                entry.protocol_name = membership.protocol_name.clone();
                entry.epoch = membership.epoch;
                entry.coordinator = context.state.node_id;
                for member in membership.members.values() {
                    let mut described_member = wire::DescribedMember::new();
                    described_member.member_id = member.member_id.clone();
                    described_member.group_instance_id = member.instance_id.clone().unwrap_or_default();
                    described_member.client_id = member.client_id.clone();
                    described_member.member_epoch =
                        if membership.kind == Some(GroupKind::Classic) { membership.epoch } else { member.member_epoch };
                    described_member.assignment = encode_wire_partitions(&member.assigned);
                    described_member.subscribed_topics = member.subscribed.clone().into();
                    described_member.subscribed_regex = member.subscribed_regex.clone().unwrap_or_default();
                    entry.members.push(described_member);
                }
                for ((topic, partition), offset, metadata) in found.offsets {
                    entry.offsets.push(fetch_entry(topic, partition, offset, metadata));
                }
            }
            Err(refusal) => {
                entry.error = refusal.code;
                entry.error_message = refusal.message;
                entry.coordinator = refusal.coordinator_hint;
            }
        }
        described.groups.push(entry);
    }
    let mut response = ok_response(id);
    response.set_describe_groups(described);
    response
}

async fn delete_groups(context: &NodeContext, id: u64, body: wire::DeleteGroupsRequest) -> Response {
    let mut deleted = wire::DeleteGroupsResponse::new();
    for group in body.groups.iter() {
        let mut entry = wire::GroupResult::new();
        entry.group = group.clone();
        if let Err(refusal) = context.groups.delete_group(group).await {
            entry.error = refusal.code;
            entry.error_message = refusal.message;
        }
        deleted.groups.push(entry);
    }
    let mut response = ok_response(id);
    response.set_delete_groups(deleted);
    response
}

fn decode_wire_partitions(entries: &[wire::TopicPartitions]) -> Partitions {
    entries.iter().flat_map(|entry| entry.partitions.iter().map(move |&partition| (entry.topic.clone(), partition))).collect()
}

fn encode_wire_partitions(partitions: &Partitions) -> protobuf::RepeatedField<wire::TopicPartitions> {
    encode_partitions(partitions)
        .into_iter()
        .map(|entry| {
            let mut out = wire::TopicPartitions::new();
            out.topic = entry.get_topic().to_string();
            out.partitions = entry.get_partitions().to_vec();
            out
        })
        .collect()
}
