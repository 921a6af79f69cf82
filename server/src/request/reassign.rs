//! ReassignPartition on the controller: records a partition's move to another replica set
//! (`meta::reassign`), or, sent by the partition's leader with `completed`, records that the
//! move is done (`crate::reassign` carries it out between the two).
//!
//! Every refusal is definite and checked before proposing (unknown partition, a bad replica
//! list, a partition moving already); the metadata apply checks the same again, and its
//! outcome is what the client hears.

use odradek_client::wire::proto::{self as wire, ErrorCode, Response};

use super::admin::{admin_timeout, propose_meta};
use super::{ok_response, RequestError};
use crate::context::NodeContext;
use crate::meta::{MetaCommand, MetaOutcome, ReassignRefusal, RepairStep, METADATA_GROUP};
use odradek_consensus::NodeId;
use raft::StateRole;

fn refused(refusal: &ReassignRefusal) -> RequestError {
    let code = match refusal {
        ReassignRefusal::PartitionUnknown(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        ReassignRefusal::InProgress(_) | ReassignRefusal::Invalid(_) => ErrorCode::INVALID_REQUEST,
    };
    RequestError::new(code, refusal.message().to_string())
}

pub async fn reassign_partition(context: &NodeContext, id: u64, body: wire::ReassignPartitionRequest) -> Response {
    let outcome = if body.repair_step != 0 {
        repair_step(context, &body).await
    } else if body.completed {
        complete(context, &body).await
    } else {
        start(context, &body).await
    };
    match outcome {
        Ok(()) => ok_response(id),
        Err(error) => error.into_response(id),
    }
}

async fn start(context: &NodeContext, body: &wire::ReassignPartitionRequest) -> Result<(), RequestError> {
    context.state.lock().meta.check_reassignment(&body.topic, body.partition, &body.replicas).map_err(|refusal| refused(&refusal))?;
    let command = MetaCommand::StartReassignment { topic: body.topic.clone(), partition: body.partition, replicas: body.replicas.clone() };
    let index = propose_meta(context, &command, admin_timeout(body.timeout_ms)).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::ReassignmentStarted { group }) => {
            tracing::info!(topic = body.topic, partition = body.partition, group, replicas = ?body.replicas, "reassignment recorded");
            Ok(())
        }
        Some(MetaOutcome::ReassignmentRefused(refusal)) => Err(refused(refusal)),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of StartReassignment: {other:?}"))),
    }
}

/// Internal: a step of the repair of a damaged replica (`crate::repair`, `meta::repair`).
async fn repair_step(context: &NodeContext, body: &wire::ReassignPartitionRequest) -> Result<(), RequestError> {
    let invalid = |message: String| RequestError::new(ErrorCode::INVALID_REQUEST, message);
    let step = RepairStep::from_code(body.repair_step).ok_or_else(|| invalid(format!("repair step {} (1..=3)", body.repair_step)))?;
    let group = if body.repair_metadata { METADATA_GROUP } else { super::locate(context, &body.topic, body.partition)?.group };
    match context.state.lock().meta.check_repair(group, body.repair_node, step) {
        Err(reason) => return Err(invalid(reason)),
        Ok(false) => return Ok(()), // a repeat: recorded already
        Ok(true) => {}
    }
    if group == METADATA_GROUP && step == RepairStep::Ready {
        metadata_voters_hold_commit(context, body.repair_node).await?;
    }
    let command = MetaCommand::RepairReplica { group, node: body.repair_node, step };
    let index = propose_meta(context, &command, admin_timeout(body.timeout_ms)).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::RepairStepped) => {
            tracing::info!(topic = body.topic, partition = body.partition, group, node = body.repair_node, ?step, "repair step recorded");
            Ok(())
        }
        Some(MetaOutcome::Rejected(reason)) => Err(invalid(reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of RepairReplica: {other:?}"))),
    }
}

/// On the controller (the metadata leader), before it records that `damaged`'s metadata replica
/// may be rebuilt (`crate::meta_repair`): every other metadata voter's match index is at least
/// the commit index, so every committed metadata entry is on each voter but the damaged one
/// (this leader holds them all), and the damaged files hold nothing the group needs. Entries
/// committed later were committed without the damaged node (it hosts no metadata replica).
/// Not yet: LEADER_NOT_AVAILABLE, which the damaged node retries.
async fn metadata_voters_hold_commit(context: &NodeContext, damaged: NodeId) -> Result<(), RequestError> {
    let me = context.state.node_id;
    let not_yet = |message: String| RequestError::new(ErrorCode::LEADER_NOT_AVAILABLE, message);
    let Ok(Some((status, conf))) = context.node.status(METADATA_GROUP).await else {
        return Err(not_yet("this node hosts no metadata replica".to_string()));
    };
    if status.role != StateRole::Leader || status.commit == 0 {
        return Err(not_yet(format!("node {me} does not lead the metadata group (any more)")));
    }
    let lagging = crate::repair::voters_behind_commit(&status, &conf, damaged, me);
    if !lagging.is_empty() {
        tracing::info!(
            damaged,
            ?lagging,
            commit = status.commit,
            "a damaged metadata replica is rebuilt once every other voter holds the commit"
        );
        return Err(not_yet(format!("metadata voters {lagging:?} do not hold the commit index {} yet", status.commit)));
    }
    tracing::info!(
        damaged,
        commit = status.commit,
        "every other metadata voter holds the commit: the damaged metadata replica may be rebuilt"
    );
    Ok(())
}

async fn complete(context: &NodeContext, body: &wire::ReassignPartitionRequest) -> Result<(), RequestError> {
    let group = {
        let state = context.state.lock();
        let Some(info) = state.meta.partition(&body.topic, body.partition) else {
            return Err(RequestError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("no partition {}/{}", body.topic, body.partition),
            ));
        };
        if state.meta.reassignment_target(info.group).is_none() && info.replicas == body.replicas {
            return Ok(()); // a retry of a completion recorded already
        }
        info.group
    };
    let command = MetaCommand::CompleteReassignment { group, replicas: body.replicas.clone() };
    let index = propose_meta(context, &command, admin_timeout(body.timeout_ms)).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::ReassignmentCompleted) => Ok(()),
        Some(MetaOutcome::Rejected(reason)) => Err(RequestError::new(ErrorCode::INVALID_REQUEST, reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of CompleteReassignment: {other:?}"))),
    }
}
