//! Request handlers: what a node does with each client request (see `client/proto/wire.proto`
//! for the contract and the definite/indefinite error table). One file per request family:
//! - [`produce`]: Produce (queued by the connection in arrival order, see [`crate::net`]);
//! - [`fetch`]: Fetch and ListOffsets;
//! - [`metadata`]: Metadata and DescribeCluster;
//! - [`admin`]: the controller requests (CreateTopics, DeleteTopics, InitProducerId);
//! - [`leaders`]: the leaders of partitions hosted elsewhere, as their replicas report them;
//! - [`relay`]: one request to another node over the client protocol;
//! - [`group`]: the consumer-group requests, served by the group's coordinator;
//! - [`security`]: the user and ACL requests (through the controller, as [`admin`]);
//! - [`topic_change`]: AlterTopic (through the controller) and DescribeTopicConfigs (local);
//! - [`authorize`]: what each request needs of the principal that sends it (issue 19).
//!
//! [`handle`] is the one place that maps a request kind to its family: a new family is a file
//! here and an arm there. Hello belongs to the connection ([`crate::net`]).
//!
//! Partition requests are served by the replicas that host the partition: produce by the raft
//! leader (a follower answers `NOT_LEADER` with the leader it knows), fetch and list-offsets by
//! any replica, never above what that replica has applied, which is committed (L12).
//! Controller requests (create/delete topics, producer ids) are proposed to the metadata group by
//! its leader; any other node forwards them there, so a client may send them anywhere.

pub mod admin;
pub mod authorize;
pub mod delete_records;
pub mod fetch;
pub mod group;
pub mod leaders;
pub mod membership;
pub mod metadata;
pub mod produce;
pub mod reassign;
pub mod relay;
pub mod removed;
pub mod security;
pub mod topic_change;
pub mod transfer;

use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request, Request_oneof_body as Body, Response};
use odradek_consensus::{GroupId, NodeId};

use crate::auth::Principal;
use crate::context::NodeContext;
use crate::meta::TopicSettings;

/// A refused request: the wire code and a message for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError { code, message: message.into() }
    }

    /// The answer to request `id`: this error, no body.
    pub fn into_response(self, id: u64) -> Response {
        error_response(id, self.code, self.message)
    }
}

/// Answers every request but Produce ([`produce::produce`]), as `principal` may
/// ([`authorize`]).
pub async fn handle(context: &NodeContext, principal: &Principal, request: Request) -> Response {
    let id = request.request_id;
    // A removed node may learn so before its metadata is ready (a wiped one never catches up:
    // `crate::membership::learn_removal_while_catching_up`); its refusal sends clients on.
    if context.is_removed() {
        if let Some(refusal) = removed::answer(context, id, request.body.as_ref()) {
            return refusal;
        }
    }
    if !context.state.is_meta_ready() && !matches!(request.body, Some(Body::hello(_)) | None) {
        return not_ready(id);
    }
    if let Some(body) = request.body.as_ref() {
        if let Err(refusal) = authorize::check(context, principal, body) {
            return refusal.into_response(id);
        }
    }
    let named_topics = matches!(&request.body, Some(Body::metadata(body)) if !body.topics.is_empty());
    let mut response = route(context, id, request).await;
    authorize::filter(context, principal, named_topics, &mut response);
    response
}

/// The handler of the request's kind (the request was authorized).
async fn route(context: &NodeContext, id: u64, mut request: Request) -> Response {
    match request.body.take() {
        Some(Body::metadata(body)) => metadata::metadata(context, id, body).await,
        Some(Body::describe_cluster(_)) => metadata::describe_cluster(context, id).await,
        Some(Body::fetch(body)) => fetch::fetch(context, id, body).await,
        Some(Body::list_offsets(body)) => fetch::list_offsets(context, id, body).await,
        Some(Body::transfer_leader(body)) => transfer::transfer_leader(context, id, body).await,
        Some(Body::delete_records(body)) => delete_records::delete_records(context, id, body).await,
        Some(
            body @ (Body::create_topics(_)
            | Body::delete_topics(_)
            | Body::init_producer_id(_)
            | Body::alter_topic(_)
            | Body::describe_topic_configs(_)),
        ) => admin::controller_request(context, id, body).await,
        Some(body) if group::is_group_request(&body) => group::handle(context, id, body).await,
        Some(
            body @ (Body::upsert_user(_)
            | Body::delete_user(_)
            | Body::create_acl(_)
            | Body::delete_acl(_)
            | Body::list_users(_)
            | Body::list_acls(_)
            | Body::reassign_partition(_)),
        ) => admin::controller_request(context, id, body).await,
        Some(body @ (Body::join_cluster(_) | Body::change_controllers(_) | Body::decommission_node(_) | Body::rebalance(_))) => {
            admin::controller_request(context, id, body).await
        }
        Some(Body::sasl_authenticate(_)) => {
            error_response(id, ErrorCode::INVALID_REQUEST, "SaslAuthenticate is answered by the connection, right after Hello")
        }
        Some(Body::hello(_)) => error_response(id, ErrorCode::INVALID_REQUEST, "Hello is only valid as a connection's first request"),
        Some(Body::produce(_)) => unreachable!("produce requests go through produce::produce"),
        Some(_) | None => error_response(id, ErrorCode::UNKNOWN_REQUEST, "request names no kind this server knows"),
    }
}

/// The request's kind as the wire names it (`client/proto/wire.proto`), for metrics.
pub fn request_name(body: &Body) -> &'static str {
    match body {
        Body::hello(_) => "hello",
        Body::metadata(_) => "metadata",
        Body::create_topics(_) => "create_topics",
        Body::delete_topics(_) => "delete_topics",
        Body::describe_cluster(_) => "describe_cluster",
        Body::produce(_) => "produce",
        Body::fetch(_) => "fetch",
        Body::list_offsets(_) => "list_offsets",
        Body::init_producer_id(_) => "init_producer_id",
        Body::find_coordinator(_) => "find_coordinator",
        Body::join_group(_) => "join_group",
        Body::sync_group(_) => "sync_group",
        Body::heartbeat(_) => "heartbeat",
        Body::leave_group(_) => "leave_group",
        Body::consumer_group_heartbeat(_) => "consumer_group_heartbeat",
        Body::offset_commit(_) => "offset_commit",
        Body::offset_fetch(_) => "offset_fetch",
        Body::list_groups(_) => "list_groups",
        Body::describe_groups(_) => "describe_groups",
        Body::delete_groups(_) => "delete_groups",
        Body::sasl_authenticate(_) => "sasl_authenticate",
        Body::upsert_user(_) => "upsert_user",
        Body::delete_user(_) => "delete_user",
        Body::list_users(_) => "list_users",
        Body::create_acl(_) => "create_acl",
        Body::delete_acl(_) => "delete_acl",
        Body::list_acls(_) => "list_acls",
        Body::alter_topic(_) => "alter_topic",
        Body::describe_topic_configs(_) => "describe_topic_configs",
        Body::reassign_partition(_) => "reassign_partition",
        Body::transfer_leader(_) => "transfer_leader",
        Body::join_cluster(_) => "join_cluster",
        Body::change_controllers(_) => "change_controllers",
        Body::decommission_node(_) => "decommission_node",
        Body::rebalance(_) => "rebalance",
        Body::delete_records(_) => "delete_records",
        Body::offset_delete(_) => "offset_delete",
    }
}

/// A success with no body yet.
fn ok_response(request_id: u64) -> Response {
    let mut response = Response::new();
    response.request_id = request_id;
    response
}

/// The answer of a node whose metadata is still catching up after a start (retriable).
fn not_ready(id: u64) -> Response {
    error_response(id, ErrorCode::LEADER_NOT_AVAILABLE, "this node is catching up on the cluster metadata; retry shortly")
}

/// Where a partition lives, per this node's metadata.
struct Location {
    group: GroupId,
    /// Where to send a client this node cannot serve ([`replica_to_try`]).
    preferred: NodeId,
    settings: TopicSettings,
}

/// Where `topic`/`partition` lives, or why it is unknown.
fn locate(context: &NodeContext, topic: &str, partition: u32) -> Result<Location, RequestError> {
    let state = context.state.lock();
    let Some(info) = state.meta.topic(topic) else {
        return Err(RequestError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {topic:?}")));
    };
    let Some(assignment) = info.partitions.get(partition as usize) else {
        let count = info.partitions.len();
        let message = format!("topic {topic:?} has {count} partitions; no partition {partition}");
        return Err(RequestError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, message));
    };
    let preferred = replica_to_try(&assignment.replicas, context.state.node_id);
    Ok(Location { group: assignment.group, preferred, settings: info.settings.clone() })
}

/// The answer of a node that does not host `topic`/`partition`, with a hint where to go.
fn not_hosted(context: &NodeContext, id: u64, topic: &str, partition: u32, preferred: NodeId) -> Response {
    let message = format!("node {} is not a replica of {topic}/{partition}", context.state.node_id);
    let mut response = error_response(id, ErrorCode::NOT_LEADER, message);
    let mut produce = wire::ProduceResponse::new();
    produce.leader_hint = preferred;
    response.set_produce(produce);
    response
}

/// (leader, term) of a group this node hosts; `None` when not hosted.
async fn leader_of(context: &NodeContext, group: GroupId) -> Option<(NodeId, u64)> {
    let (status, _) = context.node.status(group).await.ok()??;
    Some((status.leader, status.term))
}

/// What a replica has applied of a partition (all of it committed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PartitionBounds {
    high_watermark: u64,
    log_start_offset: u64,
    applied_index: u64,
}

/// The bounds of a hosted partition; `None` when not hosted.
fn partition_bounds(context: &NodeContext, group: GroupId) -> Option<PartitionBounds> {
    let state = context.state.lock();
    let partition = &state.partitions.get(&group)?.state;
    Some(PartitionBounds {
        high_watermark: partition.high_watermark(),
        log_start_offset: partition.log_start_offset(),
        applied_index: partition.applied_index(),
    })
}

/// Where to send a client for a partition this node does not serve: the preferred (first)
/// replica, unless that is this node — an assigned replica that cannot host the group (its files
/// are corrupt, it is still being created) would otherwise send clients back to itself forever
/// (found by the simulator, swarm seed 993: a partition unavailable for a minute after F-S3).
/// The group coordinator hints the same way (groups seed 175 with `--membership`: a node whose
/// offsets-partition replica was quarantined named itself the coordinator for a minute).
pub(crate) fn replica_to_try(replicas: &[NodeId], me: NodeId) -> NodeId {
    match replicas {
        [first, rest @ ..] if *first == me => rest.first().copied().unwrap_or(me),
        _ => replicas[0],
    }
}

#[cfg(test)]
mod tests {
    use super::replica_to_try;

    #[test]
    fn clients_are_never_sent_back_to_a_node_that_cannot_serve_them() {
        assert_eq!(replica_to_try(&[2, 3, 1], 1), 2, "not a preferred replica: the preferred one");
        assert_eq!(replica_to_try(&[1, 2, 3], 1), 2, "the preferred replica itself: the next one");
        assert_eq!(replica_to_try(&[1, 2, 3], 4), 1, "not a replica at all: the preferred one");
        assert_eq!(replica_to_try(&[1], 1), 1, "a single replica has nobody else to suggest");
    }
}
