//! Kafka's consumer-group APIs as the native group requests ([`crate::request::group`]), served
//! by the same coordinator ([`crate::group`]): the classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), the consumer protocol (KIP-848: ConsumerGroupHeartbeat,
//! ConsumerGroupDescribe; the coordinator assigns), offsets (OffsetCommit, OffsetFetch) and
//! administration (ListGroups, DescribeGroups). Nothing here decides anything about a group: it
//! only translates.
//!
//! The classic protocol's member metadata and assignments are Kafka's ConsumerProtocol
//! Subscription and Assignment bytes; the coordinator keeps them as the members sent them (the
//! group's leader member assigns, client-side) and reads an assignment only to know which
//! partitions a member owns (`group::service::decode_assignment`), so they pass through
//! untouched both ways.
//!
//! Errors are the group family of Kafka's codes ([`errors::group_code`]): a node that is not
//! the group's coordinator answers NOT_COORDINATOR (the client finds the coordinator again), a
//! coordinator partition without a leader COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    consumer_group_describe_response, consumer_group_heartbeat_response, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use odradek_client::group::protocol::{self as consumer_protocol, Assignment, Subscription};
use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body, Response};

use super::errors::{self, group_code};
use super::handlers::native;
use super::topic_ids;
use crate::auth::Principal;
use crate::context::NodeContext;
use crate::request;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn optional(value: &str) -> Option<StrBytes> {
    (!value.is_empty()).then(|| text(value))
}

fn instance(value: &Option<StrBytes>) -> String {
    value.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

/// A Kafka timeout (i32 milliseconds) as ours; a negative one is 0, which the coordinator
/// refuses as out of range.
fn timeout_ms(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

async fn ask(context: &NodeContext, principal: &Principal, id: u64, body: Body) -> Response {
    request::handle(context, principal, native(id, body)).await
}

/// Whether `request` is one of the group APIs this module answers.
pub fn serves(request: &RequestKind) -> bool {
    matches!(
        request,
        RequestKind::JoinGroup(_)
            | RequestKind::SyncGroup(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::OffsetCommit(_)
            | RequestKind::OffsetFetch(_)
            | RequestKind::ListGroups(_)
            | RequestKind::DescribeGroups(_)
            | RequestKind::ConsumerGroupHeartbeat(_)
            | RequestKind::ConsumerGroupDescribe(_)
            | RequestKind::OffsetDelete(_)
    )
}

/// Answers one group API request (`client_id`: the request header's).
pub async fn handle(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    version: i16,
    client_id: String,
    request: RequestKind,
) -> ResponseKind {
    match request {
        RequestKind::JoinGroup(body) => join_group(context, principal, id, version, client_id, body).await,
        RequestKind::SyncGroup(body) => sync_group(context, principal, id, version, body).await,
        RequestKind::Heartbeat(body) => heartbeat(context, principal, id, body).await,
        RequestKind::LeaveGroup(body) => leave_group(context, principal, id, version, body).await,
        RequestKind::OffsetCommit(body) => offset_commit(context, principal, id, version, body).await,
        RequestKind::OffsetFetch(body) => offset_fetch(context, principal, id, version, body).await,
        RequestKind::ListGroups(body) => list_groups(context, principal, id, version, body).await,
        RequestKind::DescribeGroups(body) => describe_groups(context, principal, id, version, body).await,
        RequestKind::ConsumerGroupHeartbeat(body) => consumer_group_heartbeat(context, principal, id, client_id, body).await,
        RequestKind::ConsumerGroupDescribe(body) => consumer_group_describe(context, principal, id, body).await,
        RequestKind::OffsetDelete(body) => offset_delete(context, principal, id, body).await,
        other => unreachable!("groups::serves admits only group APIs, not {other:?}"),
    }
}

/// JoinGroup. A static leader that rejoins gets `skip_assignment` at v9+ (KIP-814); below
/// v9, as Kafka, it gets no member list and its SyncGroup returns the assignment in place.
pub async fn join_group(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    version: i16,
    client_id: String,
    body: JoinGroupRequest,
) -> ResponseKind {
    let mut join = wire::JoinGroupRequest::new();
    join.group = body.group_id.0.to_string();
    join.member_id = body.member_id.to_string();
    join.group_instance_id = instance(&body.group_instance_id);
    join.session_timeout_ms = timeout_ms(body.session_timeout_ms);
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    join.rebalance_timeout_ms = timeout_ms(if version == 0 { body.session_timeout_ms } else { body.rebalance_timeout_ms });
    join.protocol_type = body.protocol_type.to_string();
    for protocol in &body.protocols {
        let mut entry = wire::JoinProtocol::new();
        entry.name = protocol.name.to_string();
        entry.metadata = protocol.metadata.to_vec();
        join.protocols.push(entry);
    }
    join.client_id = client_id;
    // KIP-394: from v4 a new member is given its id first (MEMBER_ID_REQUIRED), as Kafka does.
    join.require_known_member_id = version >= 4;
    let answer = ask(context, principal, id, Body::join_group(join)).await;
    join_answer(version, &body, &answer)
}

/// The JoinGroup answer at `version` from the native one.
fn join_answer(version: i16, body: &JoinGroupRequest, answer: &Response) -> ResponseKind {
    let protocol_type = (version >= 7).then(|| body.protocol_type.clone());
    if answer.error != ErrorCode::NONE || !answer.has_join_group() {
        // MEMBER_ID_REQUIRED carries the id to join with; other refusals echo the request's.
        let member_id =
            if answer.error == ErrorCode::MEMBER_ID_REQUIRED { text(&answer.get_join_group().member_id) } else { body.member_id.clone() };
        let response = JoinGroupResponse::default()
            .with_error_code(group_code(answer.error))
            .with_generation_id(-1)
            .with_member_id(member_id)
            // Kafka answers a null protocol name where the version allows one.
            .with_protocol_name(if version >= 7 { None } else { Some(StrBytes::default()) });
        return ResponseKind::JoinGroup(response);
    }
    let joined = answer.get_join_group();
    let skip_assignment = joined.skip_assignment && version >= 9;
    let members = if joined.skip_assignment && !skip_assignment {
        Vec::new()
    } else {
        joined
            .members
            .iter()
            .map(|member| {
                JoinGroupResponseMember::default()
                    .with_member_id(text(&member.member_id))
                    .with_group_instance_id(if version >= 5 { optional(&member.group_instance_id) } else { None })
                    .with_metadata(member.metadata.clone().into())
            })
            .collect()
    };
    ResponseKind::JoinGroup(
        JoinGroupResponse::default()
            .with_generation_id(joined.generation)
            .with_protocol_type(protocol_type)
            .with_protocol_name(Some(text(&joined.protocol_name)))
            .with_leader(text(&joined.leader))
            .with_skip_assignment(skip_assignment)
            .with_member_id(text(&joined.member_id))
            .with_members(members),
    )
}

pub async fn sync_group(context: &NodeContext, principal: &Principal, id: u64, version: i16, body: SyncGroupRequest) -> ResponseKind {
    let mut sync = wire::SyncGroupRequest::new();
    sync.group = body.group_id.0.to_string();
    sync.generation = body.generation_id;
    sync.member_id = body.member_id.to_string();
    sync.group_instance_id = instance(&body.group_instance_id);
    for assignment in &body.assignments {
        let mut entry = wire::SyncAssignment::new();
        entry.member_id = assignment.member_id.to_string();
        entry.assignment = assignment.assignment.to_vec();
        sync.assignments.push(entry);
    }
    let answer = ask(context, principal, id, Body::sync_group(sync)).await;
    sync_answer(version, &body, &answer)
}

fn sync_answer(version: i16, body: &SyncGroupRequest, answer: &Response) -> ResponseKind {
    let mut response = SyncGroupResponse::default().with_error_code(group_code(answer.error));
    if answer.error == ErrorCode::NONE && answer.has_sync_group() {
        let synced = answer.get_sync_group();
        response.assignment = synced.assignment.clone().into();
        if version >= 5 {
            response.protocol_type = body.protocol_type.clone();
            response.protocol_name = Some(text(&synced.protocol_name));
        }
    }
    ResponseKind::SyncGroup(response)
}

pub async fn heartbeat(context: &NodeContext, principal: &Principal, id: u64, body: HeartbeatRequest) -> ResponseKind {
    let mut beat = wire::HeartbeatRequest::new();
    beat.group = body.group_id.0.to_string();
    beat.generation = body.generation_id;
    beat.member_id = body.member_id.to_string();
    beat.group_instance_id = instance(&body.group_instance_id);
    let answer = ask(context, principal, id, Body::heartbeat(beat)).await;
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(group_code(answer.error)))
}

/// LeaveGroup: one member below v3, a batch (by member id or static instance id) from v3.
pub async fn leave_group(context: &NodeContext, principal: &Principal, id: u64, version: i16, body: LeaveGroupRequest) -> ResponseKind {
    let leaving: Vec<(String, String)> = if version >= 3 {
        body.members.iter().map(|m| (m.member_id.to_string(), instance(&m.group_instance_id))).collect()
    } else {
        vec![(body.member_id.to_string(), String::new())]
    };
    let mut leave = wire::LeaveGroupRequest::new();
    leave.group = body.group_id.0.to_string();
    for (member_id, instance_id) in &leaving {
        let mut member = wire::LeavingMember::new();
        member.member_id.clone_from(member_id);
        member.group_instance_id.clone_from(instance_id);
        leave.members.push(member);
    }
    let answer = ask(context, principal, id, Body::leave_group(leave)).await;
    leave_answer(version, &answer)
}

fn leave_answer(version: i16, answer: &Response) -> ResponseKind {
    if answer.error != ErrorCode::NONE || !answer.has_leave_group() {
        return ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(group_code(answer.error)));
    }
    let results = &answer.get_leave_group().members;
    if version < 3 {
        let code = results.first().map_or(errors::NONE, |r| group_code(r.error));
        return ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code));
    }
    let members = results
        .iter()
        .map(|result| {
            MemberResponse::default()
                .with_member_id(text(&result.member_id))
                .with_group_instance_id(optional(&result.group_instance_id))
                .with_error_code(group_code(result.error))
        })
        .collect();
    ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_members(members))
}

/// OffsetCommit: all or nothing on our side, so every partition gets the commit's code. A
/// partition with a negative index is refused before anything is asked (nothing committed).
pub async fn offset_commit(context: &NodeContext, principal: &Principal, id: u64, version: i16, body: OffsetCommitRequest) -> ResponseKind {
    let bad_index = body.topics.iter().flat_map(|t| &t.partitions).any(|p| p.partition_index < 0);
    let code = if bad_index {
        errors::UNKNOWN_TOPIC_OR_PARTITION
    } else {
        let mut commit = wire::OffsetCommitRequest::new();
        commit.group = body.group_id.0.to_string();
        // A commit at a negative generation or member epoch comes from a consumer outside group
        // management (assign() only, or an admin): Kafka takes it while the group has no
        // members, whatever member id it names (librdkafka with `group.protocol=consumer` names
        // the id it generated at start-up), and so does the coordinator
        // (`GroupTable::validate_commit`). Once the group has members, Kafka's
        // `validateOffsetCommit` judges it by the member it names: an unknown one is
        // UNKNOWN_MEMBER_ID, a current one is refused for its generation (ILLEGAL_GENERATION in
        // a classic group, STALE_MEMBER_EPOCH in a consumer-protocol one), and the coordinator
        // answers the same. Member "" goes as the native admin's commit, whose NON_EMPTY_GROUP
        // is Kafka's UNKNOWN_MEMBER_ID ("only members can commit" to a group that is not
        // empty). See [`offset_commit_code`]. The answers Kafka 4.0 gives by version (a
        // consumer-protocol member below v9, a group that does not exist) come from the
        // coordinator under the version's rules (`CommitRules`).
        let memberless = body.generation_id_or_member_epoch < 0 && body.member_id.is_empty();
        commit.member_id = body.member_id.to_string();
        commit.epoch = body.generation_id_or_member_epoch;
        commit.group_instance_id = instance(&body.group_instance_id);
        commit.rules = if version >= 9 { wire::CommitRules::COMMIT_RULES_KAFKA_V9 } else { wire::CommitRules::COMMIT_RULES_KAFKA_BELOW_V9 };
        for topic in &body.topics {
            for partition in &topic.partitions {
                let mut offset = wire::OffsetCommitPartition::new();
                offset.topic = topic.name.0.to_string();
                offset.partition = partition.partition_index as u32;
                offset.offset = partition.committed_offset;
                offset.metadata = partition.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
                commit.offsets.push(offset);
            }
        }
        let answer = ask(context, principal, id, Body::offset_commit(commit)).await;
        // A commit's outcome is the response's code (every partition result carries the same).
        offset_commit_code(memberless, group_code(answer.error))
    };
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code))
                .collect();
            OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
}

/// The Kafka code of an OffsetCommit the coordinator answered `code`: a memberless commit
/// (member "", generation or member epoch below 0) refused with NON_EMPTY_GROUP (the group has
/// members) is Kafka's UNKNOWN_MEMBER_ID, which both the classic and the consumer-protocol
/// coordinator answer there; other codes as they are (the coordinator judged the commit under
/// the version's `CommitRules`).
fn offset_commit_code(memberless: bool, code: i16) -> i16 {
    match code {
        errors::NON_EMPTY_GROUP if memberless => errors::UNKNOWN_MEMBER_ID,
        code => code,
    }
}

/// OffsetDelete (API 47): the group's committed offsets of partitions it is not subscribed to
/// are removed, the others answered GROUP_SUBSCRIBED_TO_TOPIC (`group::service::offset_delete`).
/// A refusal of the whole request (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, the coordinator family)
/// is the top-level code, as Kafka answers it, with no partitions.
pub async fn offset_delete(context: &NodeContext, principal: &Principal, id: u64, body: OffsetDeleteRequest) -> ResponseKind {
    let mut request = wire::OffsetDeleteRequest::new();
    request.group = body.group_id.0.to_string();
    let mut invalid = Vec::new();
    for topic in &body.topics {
        let mut partitions = wire::TopicPartitions::new();
        partitions.topic = topic.name.0.to_string();
        for partition in &topic.partitions {
            match u32::try_from(partition.partition_index) {
                Ok(index) => partitions.partitions.push(index),
                Err(_) => invalid.push((topic.name.0.to_string(), partition.partition_index)),
            }
        }
        request.partitions.push(partitions);
    }
    let answer = ask(context, principal, id, Body::offset_delete(request)).await;
    if answer.error != ErrorCode::NONE || !answer.has_offset_delete() {
        let code = if answer.error == ErrorCode::NONE { errors::UNKNOWN_SERVER_ERROR } else { group_code(answer.error) };
        return ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code));
    }
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    let results = answer.get_offset_delete().partitions.iter().map(|r| (r.topic.clone(), r.partition as i32, group_code(r.error)));
    let invalid = invalid.into_iter().map(|(topic, index)| (topic, index, errors::UNKNOWN_TOPIC_OR_PARTITION));
    for (topic, index, code) in results.chain(invalid) {
        let partition = OffsetDeleteResponsePartition::default().with_partition_index(index).with_error_code(code);
        match topics.iter_mut().find(|entry| entry.name.0.as_str() == topic) {
            Some(entry) => entry.partitions.push(partition),
            None => topics.push(OffsetDeleteResponseTopic::default().with_name(TopicName(text(&topic))).with_partitions(vec![partition])),
        }
    }
    ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics))
}

/// The partitions an OffsetFetch names per topic; `None`: every committed partition.
type Asked = Option<Vec<(String, Vec<i32>)>>;

/// Committed offsets per topic: (topic, [(partition, offset, metadata)]).
type Committed = Vec<(String, Vec<(i32, i64, String)>)>;

/// One group's committed offsets: (topic, [(partition, offset, metadata)]) in the order asked
/// (every committed partition when `asked` is `None`), or the group's error code.
async fn fetch_offsets(context: &NodeContext, principal: &Principal, id: u64, group: &str, asked: Asked) -> Result<Committed, i16> {
    let mut fetch = wire::OffsetFetchRequest::new();
    fetch.group = group.to_string();
    for (topic, partitions) in asked.iter().flatten() {
        let mut entry = wire::TopicPartitions::new();
        entry.topic.clone_from(topic);
        entry.partitions = partitions.iter().filter_map(|&p| u32::try_from(p).ok()).collect();
        fetch.partitions.push(entry);
    }
    if asked.as_ref().is_some_and(|topics| topics.iter().all(|(_, partitions)| partitions.is_empty())) {
        // Asked for nothing: nothing to answer (an empty native request means every partition).
        return Ok(asked.unwrap_or_default().into_iter().map(|(topic, _)| (topic, Vec::new())).collect());
    }
    let answer = ask(context, principal, id, Body::offset_fetch(fetch)).await;
    if answer.error != ErrorCode::NONE || !answer.has_offset_fetch() {
        return Err(group_code(answer.error));
    }
    let found = &answer.get_offset_fetch().partitions;
    let lookup = |topic: &str, partition: i32| {
        found.iter().find(|f| f.topic == topic && i64::from(f.partition) == i64::from(partition)).map(|f| (f.offset, f.metadata.clone()))
    };
    let mut topics: Committed = Vec::new();
    match asked {
        Some(asked) => {
            for (topic, partitions) in asked {
                let entries = partitions
                    .iter()
                    .map(|&p| {
                        let (offset, metadata) = lookup(&topic, p).unwrap_or((-1, String::new()));
                        (p, offset, metadata)
                    })
                    .collect();
                topics.push((topic, entries));
            }
        }
        None => {
            for entry in found {
                let partition = i32::try_from(entry.partition).expect("partition indexes fit an i32");
                let committed = (partition, entry.offset, entry.metadata.clone());
                match topics.iter_mut().find(|(topic, _)| *topic == entry.topic) {
                    Some((_, partitions)) => partitions.push(committed),
                    None => topics.push((entry.topic.clone(), vec![committed])),
                }
            }
        }
    }
    Ok(topics)
}

/// One group's committed offsets, or its error code, as [`fetch_offsets`] found them.
type FetchedGroup = (GroupId, Asked, Result<Committed, i16>);

/// OffsetFetch: one group below v8, a batch of groups from v8. Nothing committed is offset -1.
pub async fn offset_fetch(context: &NodeContext, principal: &Principal, id: u64, version: i16, body: OffsetFetchRequest) -> ResponseKind {
    let names = |topics: Vec<(TopicName, Vec<i32>)>| topics.into_iter().map(|(t, p)| (t.0.to_string(), p)).collect::<Vec<_>>();
    let asked: Vec<(GroupId, Asked)> = if version >= 8 {
        body.groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| names(ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect()));
                (g.group_id.clone(), topics)
            })
            .collect()
    } else {
        let topics = body.topics.as_ref().map(|ts| names(ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect()));
        vec![(body.group_id.clone(), topics)]
    };
    let mut fetched = Vec::new();
    for (group, topics) in asked {
        let result = fetch_offsets(context, principal, id, group.0.as_str(), topics.clone()).await;
        fetched.push((group, topics, result));
    }
    offset_fetch_answer(version, fetched)
}

fn offset_fetch_answer(version: i16, mut fetched: Vec<FetchedGroup>) -> ResponseKind {
    if version >= 8 {
        let groups = fetched
            .into_iter()
            .map(|(group, _, result)| {
                let entry = OffsetFetchResponseGroup::default().with_group_id(group);
                match result {
                    Err(code) => entry.with_error_code(code),
                    Ok(topics) => entry.with_topics(
                        topics
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchResponseTopics::default().with_name(TopicName(text(&topic))).with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(partition, offset, metadata)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(partition)
                                                .with_committed_offset(offset)
                                                .with_metadata(Some(text(&metadata)))
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups));
    }
    let (_, asked, result) = fetched.pop().expect("one group below v8");
    match result {
        Ok(topics) => ResponseKind::OffsetFetch(
            OffsetFetchResponse::default().with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetFetchResponseTopic::default().with_name(TopicName(text(&topic))).with_partitions(
                            partitions
                                .into_iter()
                                .map(|(partition, offset, metadata)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(partition)
                                        .with_committed_offset(offset)
                                        .with_metadata(Some(text(&metadata)))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        ),
        Err(code) => {
            // v1 has no top-level code: each asked partition carries it (Kafka does the same).
            let topics = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(text(&topic))).with_partitions(
                        partitions
                            .into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                })
                .collect();
            let response = OffsetFetchResponse::default().with_topics(topics);
            ResponseKind::OffsetFetch(if version >= 2 { response.with_error_code(code) } else { response })
        }
    }
}

/// ListGroups: the groups this node coordinates (a Kafka client asks every broker), filtered by
/// state (v4+) and type (v5+), case-insensitively as Kafka.
pub async fn list_groups(context: &NodeContext, principal: &Principal, id: u64, version: i16, body: ListGroupsRequest) -> ResponseKind {
    let answer = ask(context, principal, id, Body::list_groups(wire::ListGroupsRequest::new())).await;
    list_answer(version, &body, &answer)
}

fn list_answer(version: i16, body: &ListGroupsRequest, answer: &Response) -> ResponseKind {
    if answer.error != ErrorCode::NONE || !answer.has_list_groups() {
        return ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(group_code(answer.error)));
    }
    let wanted = |filter: &[StrBytes], value: &str| filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value));
    let groups = answer
        .get_list_groups()
        .groups
        .iter()
        .filter(|g| wanted(&body.states_filter, &g.state) && wanted(&body.types_filter, &g.kind))
        .map(|g| {
            let listed = ListedGroup::default().with_group_id(GroupId(text(&g.group))).with_protocol_type(text(&g.protocol_type));
            let listed = if version >= 4 { listed.with_group_state(text(&g.state)) } else { listed };
            if version >= 5 {
                listed.with_group_type(text(&g.kind))
            } else {
                listed
            }
        })
        .collect();
    ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(groups))
}

/// A ConsumerProtocol structure as bytes (the codec refuses only what it never builds here).
fn encoded(bytes: Result<Vec<u8>, consumer_protocol::ProtocolError>) -> bytes::Bytes {
    bytes.map(Into::into).unwrap_or_default()
}

/// DescribeGroups. Members' metadata and assignments are ConsumerProtocol Subscription and
/// Assignment bytes built from what the coordinator keeps (subscribed topics, assigned
/// partitions). A group the coordinator does not know is, as in Kafka, state "Dead" and no error.
pub async fn describe_groups(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    version: i16,
    body: DescribeGroupsRequest,
) -> ResponseKind {
    let mut describe = wire::DescribeGroupsRequest::new();
    describe.groups = body.groups.iter().map(|g| g.0.to_string()).collect();
    let answer = ask(context, principal, id, Body::describe_groups(describe)).await;
    describe_answer(version, &body, &answer)
}

fn describe_answer(version: i16, body: &DescribeGroupsRequest, answer: &Response) -> ResponseKind {
    if answer.error != ErrorCode::NONE || !answer.has_describe_groups() {
        let code = group_code(answer.error);
        let groups = body.groups.iter().map(|g| DescribedGroup::default().with_group_id(g.clone()).with_error_code(code)).collect();
        return ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups));
    }
    let groups = answer
        .get_describe_groups()
        .groups
        .iter()
        .map(|g| {
            let entry = DescribedGroup::default().with_group_id(GroupId(text(&g.group)));
            if g.error == ErrorCode::GROUP_ID_NOT_FOUND {
                return entry.with_group_state(text("Dead"));
            }
            if g.error != ErrorCode::NONE {
                return entry.with_error_code(group_code(g.error));
            }
            let members = g
                .members
                .iter()
                .map(|m| {
                    let partitions: Vec<consumer_protocol::TopicPartitions> = m
                        .assignment
                        .iter()
                        .map(|t| consumer_protocol::TopicPartitions { topic: t.topic.clone(), partitions: t.partitions.clone() })
                        .collect();
                    let assignment = Assignment { version: 0, partitions, user_data: None };
                    let subscription = Subscription { version: 0, topics: m.subscribed_topics.to_vec(), ..Subscription::default() };
                    DescribedGroupMember::default()
                        .with_member_id(text(&m.member_id))
                        .with_group_instance_id(if version >= 4 { optional(&m.group_instance_id) } else { None })
                        .with_client_id(text(&m.client_id))
                        .with_member_metadata(encoded(subscription.encode()))
                        .with_member_assignment(encoded(assignment.encode()))
                })
                .collect();
            entry
                .with_group_state(text(&g.state))
                .with_protocol_type(text(&g.protocol_type))
                .with_protocol_data(text(&g.protocol_name))
                .with_members(members)
        })
        .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}

// ---- the consumer protocol (KIP-848) -------------------------------------------------------

/// The rebalance timeout of a heartbeat that sends -1 ("unchanged"): the coordinator takes
/// one with every heartbeat, so the listener sends Kafka's default `max.poll.interval.ms`.
const REBALANCE_TIMEOUT_MS_UNCHANGED: u32 = 300_000;

/// ConsumerGroupHeartbeat: the coordinator's consumer protocol, topics named by id on the
/// wire ([`topic_ids`]). Owned partitions of a topic this node cannot name (just deleted) are
/// left out. A regular-expression subscription (v1) is resolved by the coordinator.
pub async fn consumer_group_heartbeat(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    client_id: String,
    body: ConsumerGroupHeartbeatRequest,
) -> ResponseKind {
    let refuse = |code: i16, message: &str| {
        ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_error_message(Some(text(message))),
        )
    };
    let ids = topic_ids::all(context);
    let mut beat = wire::ConsumerGroupHeartbeatRequest::new();
    beat.group = body.group_id.0.to_string();
    beat.member_id = body.member_id.to_string();
    beat.member_epoch = body.member_epoch;
    beat.group_instance_id = instance(&body.instance_id);
    beat.rebalance_timeout_ms = u32::try_from(body.rebalance_timeout_ms).unwrap_or(REBALANCE_TIMEOUT_MS_UNCHANGED);
    if let Some(topics) = &body.subscribed_topic_names {
        beat.subscription_set = true;
        beat.subscribed_topics = topics.iter().map(|t| t.0.to_string()).collect();
    }
    if let Some(regex) = &body.subscribed_topic_regex {
        beat.regex_set = true;
        beat.subscribed_regex = regex.to_string();
    }
    beat.server_assignor = body.server_assignor.as_ref().map(|a| a.to_string()).unwrap_or_default();
    if let Some(owned) = &body.topic_partitions {
        beat.owned_set = true;
        for entry in owned {
            let Some(topic) = topic_ids::name_of(&ids, entry.topic_id) else { continue };
            let mut partitions = wire::TopicPartitions::new();
            partitions.topic = topic;
            partitions.partitions = entry.partitions.iter().filter_map(|&p| u32::try_from(p).ok()).collect();
            beat.owned.push(partitions);
        }
    }
    beat.client_id = client_id;
    let answer = ask(context, principal, id, Body::consumer_group_heartbeat(beat)).await;
    if answer.error != ErrorCode::NONE || !answer.has_consumer_group_heartbeat() {
        return refuse(group_code(answer.error), &answer.error_message);
    }
    let beat = answer.get_consumer_group_heartbeat();
    let assignment = beat
        .assignment
        .iter()
        .filter_map(|entry| {
            let topic_id = ids.get(&entry.topic)?;
            let partitions = entry.partitions.iter().map(|&p| i32::try_from(p).expect("partition indexes fit an i32")).collect();
            Some(consumer_group_heartbeat_response::TopicPartitions::default().with_topic_id(*topic_id).with_partitions(partitions))
        })
        .collect();
    let interval_ms = i32::try_from(beat.heartbeat_interval_ms).unwrap_or(i32::MAX);
    ResponseKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(text(&beat.member_id)))
            .with_member_epoch(beat.member_epoch)
            .with_heartbeat_interval_ms(interval_ms)
            .with_assignment(Some(consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(assignment))),
    )
}

/// ConsumerGroupDescribe: the native DescribeGroups of consumer-protocol groups. A group the
/// coordinator does not know, or a classic one, is GROUP_ID_NOT_FOUND (Kafka's answer).
pub async fn consumer_group_describe(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    body: ConsumerGroupDescribeRequest,
) -> ResponseKind {
    let mut describe = wire::DescribeGroupsRequest::new();
    describe.groups = body.group_ids.iter().map(|g| g.0.to_string()).collect();
    let answer = ask(context, principal, id, Body::describe_groups(describe)).await;
    let ids = topic_ids::all(context);
    let assignment = |partitions: &[wire::TopicPartitions]| {
        consumer_group_describe_response::Assignment::default().with_topic_partitions(
            partitions
                .iter()
                .map(|entry| {
                    consumer_group_describe_response::TopicPartitions::default()
                        .with_topic_id(ids.get(&entry.topic).copied().unwrap_or_default())
                        .with_topic_name(TopicName(text(&entry.topic)))
                        .with_partitions(entry.partitions.iter().map(|&p| p as i32).collect())
                })
                .collect(),
        )
    };
    let groups = body
        .group_ids
        .iter()
        .map(|group| {
            let entry = consumer_group_describe_response::DescribedGroup::default().with_group_id(group.clone());
            if answer.error != ErrorCode::NONE || !answer.has_describe_groups() {
                return entry.with_error_code(group_code(answer.error));
            }
            let Some(found) = answer.get_describe_groups().groups.iter().find(|g| g.group == group.0.as_str()) else {
                return entry.with_error_code(errors::GROUP_ID_NOT_FOUND);
            };
            if found.error != ErrorCode::NONE {
                return entry.with_error_code(group_code(found.error)).with_error_message(Some(text(&found.error_message)));
            }
            if found.kind != "consumer" {
                let message = format!("group {} is not a consumer-protocol group", found.group);
                return entry.with_error_code(errors::GROUP_ID_NOT_FOUND).with_error_message(Some(text(&message)));
            }
            let members = found
                .members
                .iter()
                .map(|m| {
                    consumer_group_describe_response::Member::default()
                        .with_member_id(text(&m.member_id))
                        .with_instance_id(optional(&m.group_instance_id))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(text(&m.client_id))
                        .with_subscribed_topic_names(m.subscribed_topics.iter().map(|t| TopicName(text(t))).collect())
                        .with_subscribed_topic_regex(optional(&m.subscribed_regex))
                        .with_assignment(assignment(&m.assignment))
                        .with_target_assignment(assignment(&m.assignment))
                })
                .collect();
            entry
                .with_group_state(text(&found.state))
                .with_group_epoch(found.epoch)
                .with_assignment_epoch(found.epoch)
                .with_assignor_name(text(&found.protocol_name))
                .with_members(members)
        })
        .collect();
    ResponseKind::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default().with_groups(groups))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::ApiKey;
    use odradek_client::wire::error_response;

    use super::*;
    use crate::kafka::codec::{encode, supported_versions};

    fn ok(id: u64) -> Response {
        let mut response = Response::new();
        response.request_id = id;
        response
    }

    /// Every answer the group handlers build, success and refusal, with every field they set,
    /// encodes at every version this listener speaks (a response that does not encode would
    /// leave the client waiting).
    #[test]
    fn every_group_answer_encodes_at_every_served_version() {
        let refused = error_response(1, ErrorCode::NOT_COORDINATOR, "elsewhere");
        let mut joined = ok(1);
        let mut join = wire::JoinGroupResponse::new();
        join.generation = 3;
        join.protocol_name = "range".into();
        join.leader = "m1".into();
        join.member_id = "m1".into();
        join.skip_assignment = true;
        let mut member = wire::JoinGroupMember::new();
        member.member_id = "m1".into();
        member.group_instance_id = "i1".into();
        member.metadata = vec![0, 1];
        join.members.push(member);
        joined.set_join_group(join);
        let join_request = JoinGroupRequest::default()
            .with_member_id(text("m1"))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range"))]);
        let mut synced = ok(1);
        let mut sync = wire::SyncGroupResponse::new();
        sync.assignment = vec![0, 1];
        sync.protocol_name = "range".into();
        synced.set_sync_group(sync);
        let sync_request = SyncGroupRequest::default().with_protocol_type(Some(text("consumer")));
        let mut left = ok(1);
        let mut leave = wire::LeaveGroupResponse::new();
        let mut result = wire::MemberResult::new();
        result.member_id = "m1".into();
        result.group_instance_id = "i1".into();
        result.error = ErrorCode::UNKNOWN_MEMBER_ID;
        leave.members.push(result);
        left.set_leave_group(leave);
        let mut listed = ok(1);
        let mut list = wire::ListGroupsResponse::new();
        let mut group = wire::ListedGroup::new();
        group.group = "g".into();
        group.protocol_type = "consumer".into();
        group.state = "Stable".into();
        group.kind = "classic".into();
        list.groups.push(group);
        listed.set_list_groups(list);
        let mut described = ok(1);
        let mut describe = wire::DescribeGroupsResponse::new();
        let mut group = wire::DescribedGroup::new();
        group.group = "g".into();
        group.state = "Stable".into();
        let mut member = wire::DescribedMember::new();
        member.member_id = "m1".into();
        member.group_instance_id = "i1".into();
        let mut partitions = wire::TopicPartitions::new();
        partitions.topic = "t".into();
        partitions.partitions = vec![0, 1];
        member.assignment.push(partitions);
        member.subscribed_topics.push("t".into());
        group.members.push(member);
        describe.groups.push(group);
        let mut missing = wire::DescribedGroup::new();
        missing.group = "h".into();
        missing.error = ErrorCode::GROUP_ID_NOT_FOUND;
        describe.groups.push(missing);
        described.set_describe_groups(describe);
        let describe_request = DescribeGroupsRequest::default().with_groups(vec![GroupId(text("g")), GroupId(text("h"))]);
        let fetched = || -> Vec<FetchedGroup> {
            let asked = Some(vec![("t".to_string(), vec![0, 1])]);
            vec![
                (GroupId(text("g")), asked.clone(), Ok(vec![("t".to_string(), vec![(0, 5, "m".to_string()), (1, -1, String::new())])])),
                (GroupId(text("h")), asked, Err(errors::NOT_COORDINATOR)),
            ]
        };
        type Build<'a> = Box<dyn Fn(i16) -> Vec<ResponseKind> + 'a>;
        let cases: Vec<(ApiKey, Build)> = vec![
            (ApiKey::JoinGroup, Box::new(|v| vec![join_answer(v, &join_request, &joined), join_answer(v, &join_request, &refused)])),
            (ApiKey::SyncGroup, Box::new(|v| vec![sync_answer(v, &sync_request, &synced), sync_answer(v, &sync_request, &refused)])),
            (ApiKey::LeaveGroup, Box::new(|v| vec![leave_answer(v, &left), leave_answer(v, &refused)])),
            (
                ApiKey::ListGroups,
                Box::new(|v| {
                    vec![list_answer(v, &ListGroupsRequest::default(), &listed), list_answer(v, &ListGroupsRequest::default(), &refused)]
                }),
            ),
            (
                ApiKey::DescribeGroups,
                Box::new(|v| vec![describe_answer(v, &describe_request, &described), describe_answer(v, &describe_request, &refused)]),
            ),
            (
                ApiKey::OffsetFetch,
                Box::new(|v| {
                    let mut one = fetched();
                    let failed = one.pop().expect("two");
                    vec![offset_fetch_answer(v, fetched()), offset_fetch_answer(v, one), offset_fetch_answer(v, vec![failed])]
                }),
            ),
        ];
        for (key, build) in cases {
            let (min, max) = supported_versions(key).unwrap();
            for version in min..=max {
                for response in build(version) {
                    encode(key, version, 1, &response).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}: {response:?}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod commit_code_tests {
    use super::*;

    /// Kafka's OffsetCommit codes from the coordinator's: a memberless commit's NON_EMPTY_GROUP
    /// is UNKNOWN_MEMBER_ID (a named member's is left alone: the coordinator never answers it
    /// one), everything else passes (the version's answers come from the coordinator).
    #[test]
    fn offset_commit_codes_are_kafkas() {
        assert_eq!(offset_commit_code(true, errors::NON_EMPTY_GROUP), errors::UNKNOWN_MEMBER_ID);
        assert_eq!(offset_commit_code(false, errors::NON_EMPTY_GROUP), errors::NON_EMPTY_GROUP);
        let codes = [
            errors::NONE,
            errors::ILLEGAL_GENERATION,
            errors::UNKNOWN_MEMBER_ID,
            errors::REBALANCE_IN_PROGRESS,
            errors::STALE_MEMBER_EPOCH,
            errors::UNSUPPORTED_VERSION,
        ];
        for code in codes {
            assert_eq!(offset_commit_code(false, code), code);
            assert_eq!(offset_commit_code(true, code), code);
        }
    }
}
