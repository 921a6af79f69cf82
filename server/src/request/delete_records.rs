//! DeleteRecords (Kafka's API 21, issue 16): moves a partition's log start up to an offset, so
//! records below it are no longer served. Served by the partition's leader (any other node
//! answers NOT_LEADER, which the client follows). The move is a command entry in the
//! partition's own raft log ([`PartitionCommand::DeleteRecords`]), so every replica moves its
//! log start at the same point of the log and a restart replays it; the answer waits until the
//! entry is committed and applied here.
//!
//! Invariants:
//! - the log start never passes the high watermark: the leader refuses an offset above its
//!   applied high watermark (OFFSET_OUT_OF_RANGE, definite), and every entry before the command
//!   in the log is applied before it on every replica, so each replica's high watermark is at
//!   least that when it applies the move ([`crate::partition::PartitionState::delete_records`]
//!   also stops at the high watermark);
//! - the log start never moves back: an offset at or below it succeeds at once, changing
//!   nothing;
//! - an acknowledged deletion holds on every replica from the entry on (leader changes,
//!   restarts): what a consumer may read afterwards starts at or above it.
//!
//! Records are only hidden: their segments go when retention removes them.

use std::time::Duration;

use bytes::Bytes;
use odradek_client::wire::proto::{self as wire, ErrorCode, Response};
use odradek_consensus::{Durability, EntryMeta};
use raft::StateRole;

use super::{locate, ok_response, partition_bounds, RequestError};
use crate::context::NodeContext;
use crate::group::OFFSETS_TOPIC;
use crate::partition::PartitionCommand;

/// How long a deletion waits for its commit by default, and at most.
const DELETE_RECORDS_WAIT_MS_DEFAULT: u64 = 30_000;
const DELETE_RECORDS_WAIT_MS_MAX: u64 = 120_000;

pub async fn delete_records(context: &NodeContext, id: u64, body: wire::DeleteRecordsRequest) -> Response {
    match delete(context, &body).await {
        Ok(log_start_offset) => {
            let mut response = ok_response(id);
            let mut deleted = wire::DeleteRecordsResponse::new();
            deleted.log_start_offset = log_start_offset;
            response.set_delete_records(deleted);
            response
        }
        Err(error) => error.into_response(id),
    }
}

/// The partition's log start once the deletion is applied here.
async fn delete(context: &NodeContext, body: &wire::DeleteRecordsRequest) -> Result<u64, RequestError> {
    let (topic, partition) = (&body.topic, body.partition);
    if topic == OFFSETS_TOPIC {
        return Err(RequestError::new(ErrorCode::INVALID_REQUEST, "the offsets topic's records are the coordinator's"));
    }
    if body.before_offset < -1 {
        return Err(RequestError::new(ErrorCode::OFFSET_OUT_OF_RANGE, format!("offset {} (-1 is the high watermark)", body.before_offset)));
    }
    let group = locate(context, topic, partition)?.group;
    let me = context.state.node_id;
    let not_leader = || RequestError::new(ErrorCode::NOT_LEADER, format!("node {me} does not lead {topic}/{partition}"));
    let Ok(Some((status, _))) = context.node.status(group).await else { return Err(not_leader()) };
    if status.role != StateRole::Leader {
        return Err(not_leader());
    }
    let bounds = partition_bounds(context, group).ok_or_else(not_leader)?;
    let before = if body.before_offset == -1 { bounds.high_watermark } else { body.before_offset as u64 };
    if before > bounds.high_watermark {
        let message = format!("offset {before} is above the high watermark {} of {topic}/{partition}", bounds.high_watermark);
        return Err(RequestError::new(ErrorCode::OFFSET_OUT_OF_RANGE, message));
    }
    if before <= bounds.log_start_offset {
        return Ok(bounds.log_start_offset);
    }
    if context.planted.delete_records_not_replicated {
        // Planted bug: the leader's own log start only, in memory, not through raft.
        let mut state = context.state.lock();
        let partition_state = &mut state.partitions.get_mut(&group).ok_or_else(not_leader)?.state;
        partition_state.set_log_start_offset(before);
        return Ok(partition_state.log_start_offset());
    }
    let command = Bytes::from(PartitionCommand::DeleteRecords { before }.encode());
    let ticket = context.node.submit(group, command, EntryMeta::Command, Durability::Committed).await;
    let wait_ms = match u64::from(body.timeout_ms) {
        0 => DELETE_RECORDS_WAIT_MS_DEFAULT,
        ms => ms.min(DELETE_RECORDS_WAIT_MS_MAX),
    };
    let appended = match tokio::time::timeout(Duration::from_millis(wait_ms), ticket.outcome()).await {
        Ok(Ok(appended)) => appended,
        Ok(Err(error)) if error.is_definite() => return Err(RequestError::new(ErrorCode::NOT_LEADER, error.to_string())),
        Ok(Err(error)) => return Err(RequestError::new(ErrorCode::LEADERSHIP_LOST, error.to_string())),
        Err(_) => return Err(RequestError::new(ErrorCode::REQUEST_TIMED_OUT, "the deletion did not commit in time")),
    };
    // Committed outcomes are resolved after their apply: the log start has moved here.
    let bounds = partition_bounds(context, group).ok_or_else(not_leader)?;
    assert!(
        bounds.applied_index >= appended.index,
        "a committed deletion at {} is applied here ({})",
        appended.index,
        bounds.applied_index
    );
    assert!(bounds.log_start_offset >= before, "the applied deletion to {before} left the log start at {}", bounds.log_start_offset);
    tracing::info!(topic, partition, before, index = appended.index, "records deleted below an offset");
    Ok(bounds.log_start_offset)
}
