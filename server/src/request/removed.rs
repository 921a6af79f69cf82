//! What a node removed from the cluster answers (issue 15, decommissioning): nothing from the
//! metadata it last had. Once a node's own metadata says it was removed, or the controller told
//! it so (`crate::membership::learn_removal`), its metadata no longer follows the cluster's (it
//! left the metadata group), so every request gets a definite refusal that sends the client to
//! the rest of the cluster (V7):
//! - Metadata: no broker but the others it knew, no controller, and every named topic
//!   LEADER_NOT_AVAILABLE (no partition leader, not even a guess): the client refreshes its
//!   metadata from the other brokers;
//! - Produce, Fetch, ListOffsets, DeleteRecords, TransferLeader: NOT_LEADER with no hint (the
//!   Kafka listener answers NOT_LEADER_OR_FOLLOWER), nothing proposed or read;
//! - the group requests: NOT_COORDINATOR; every other request (the controller's, and
//!   DescribeCluster): NOT_CONTROLLER, so a client asks again elsewhere.

use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body, Response};

use super::ok_response;
use crate::context::NodeContext;

fn reason(context: &NodeContext) -> String {
    format!("node {} was removed from the cluster (decommissioned): ask another node", context.state.node_id)
}

/// The answer of a removed node to `body` (module documentation); `None` for a Hello.
pub fn answer(context: &NodeContext, id: u64, body: Option<&Body>) -> Option<Response> {
    let code = match body? {
        Body::hello(_) => return None,
        Body::metadata(body) => return Some(metadata(context, id, body)),
        Body::produce(_) | Body::fetch(_) | Body::list_offsets(_) | Body::delete_records(_) | Body::transfer_leader(_) => {
            ErrorCode::NOT_LEADER
        }
        body if super::group::is_group_request(body) => ErrorCode::NOT_COORDINATOR,
        _ => ErrorCode::NOT_CONTROLLER,
    };
    Some(error_response(id, code, reason(context)))
}

/// A removed node's answer to a Produce (the produce path checks before `crate::request::handle`).
pub fn not_leader(context: &NodeContext, id: u64) -> Response {
    error_response(id, ErrorCode::NOT_LEADER, reason(context))
}

/// Metadata on a removed node: the other brokers it knew, no controller, no partition.
fn metadata(context: &NodeContext, id: u64, body: &wire::MetadataRequest) -> Response {
    let mut metadata = wire::MetadataResponse::new();
    metadata.brokers = super::metadata::brokers(context).into_iter().filter(|broker| broker.node_id != context.state.node_id).collect();
    for name in &body.topics {
        let mut topic = wire::TopicMetadata::new();
        topic.name = name.clone();
        topic.error = ErrorCode::LEADER_NOT_AVAILABLE;
        topic.error_message = reason(context);
        metadata.topics.push(topic);
    }
    let mut response = ok_response(id);
    response.set_metadata(metadata);
    response
}
