//! Fetch and ListOffsets: reads of a partition by any replica that hosts it, never above what
//! that replica has applied (committed, L12), with long polling for fetches at the end.
//!
//! The log stores each batch exactly as the producer sent it; the batch's base offset lives in
//! the log entry's header (assigned when the entry was appended). A fetch writes it into the
//! first 8 bytes of every batch it serves (baseOffset, outside the batch's CRC): the only bytes
//! of a batch a node ever changes.

use std::time::Duration;

use odradek_client::batch::set_base_offset;
use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, ErrorCode, OffsetSpec, Response};
use odradek_consensus::{GroupId, NodeError, NodeId, StorageFault};
use odradek_seams::buggify;

use super::{leader_of, locate, not_hosted, ok_response, partition_bounds, PartitionBounds};
use crate::context::NodeContext;

/// The longest a fetch may wait for data.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;
/// Fetch bytes when a request asks for 0, and the most it may ask for.
pub const FETCH_BYTES_DEFAULT: u32 = 1024 * 1024;
pub const FETCH_BYTES_MAX: u32 = 32 * 1024 * 1024;

/// What fetch may serve: [`partition_bounds`], or with the planted `ServeAboveCommit` the
/// local log's end (while the answer still reports the applied high watermark, so a consumer
/// sees records at or above it: L12 c).
async fn fetch_bounds(context: &NodeContext, group: GroupId) -> Option<PartitionBounds> {
    let bounds = partition_bounds(context, group)?;
    if context.planted.serve_above_commit {
        return Some(PartitionBounds { applied_index: u64::MAX, ..bounds });
    }
    Some(bounds)
}

pub async fn fetch(context: &NodeContext, id: u64, body: wire::FetchRequest) -> Response {
    let location = match locate(context, &body.topic, body.partition) {
        Ok(location) => location,
        Err(error) => return error.into_response(id),
    };
    let (group, preferred) = (location.group, location.preferred);
    if buggify::fires(0.01) {
        // F-B5: a spurious retriable error; the consumer must retry from the same position.
        return error_response(id, ErrorCode::NOT_LEADER, "buggify: spurious not-leader");
    }
    let Some(mut high_watermark_rx) = context.state.watch_high_watermark(group) else {
        return not_hosted(context, id, &body.topic, body.partition, preferred);
    };
    if body.fresh_high_watermark && !context.planted.read_barrier_skipped {
        if let Err(message) = read_barrier(context, group).await {
            return error_response(id, ErrorCode::LEADER_NOT_AVAILABLE, message);
        }
    }
    let Some(bounds) = fetch_bounds(context, group).await else {
        return not_hosted(context, id, &body.topic, body.partition, preferred);
    };
    let offset = body.offset;
    if offset < bounds.log_start_offset || offset > bounds.high_watermark {
        let (log_start_offset, high_watermark) = (bounds.log_start_offset, bounds.high_watermark);
        let message = format!(
            "offset {offset} is outside {}/{}: log start {log_start_offset}, high watermark {high_watermark}",
            body.topic, body.partition
        );
        let mut response = error_response(id, ErrorCode::OFFSET_OUT_OF_RANGE, message);
        response.set_fetch(fetch_response(high_watermark, log_start_offset, Vec::new()));
        return response;
    }
    if offset == bounds.high_watermark && body.wait_ms_max > 0 {
        let wait = Duration::from_millis(u64::from(body.wait_ms_max.min(FETCH_WAIT_MS_MAX)));
        // Timing out is the normal end of an empty long poll.
        let _ = tokio::time::timeout(wait, high_watermark_rx.wait_for(|hw| *hw > offset)).await;
    }
    let Some(bounds) = fetch_bounds(context, group).await else {
        return not_hosted(context, id, &body.topic, body.partition, preferred);
    };
    if offset >= bounds.high_watermark {
        let mut response = ok_response(id);
        response.set_fetch(fetch_response(bounds.high_watermark, bounds.log_start_offset, Vec::new()));
        return response;
    }
    let bytes_max = match body.bytes_max {
        0 => FETCH_BYTES_DEFAULT,
        n => n.min(FETCH_BYTES_MAX),
    };
    match read_for_fetch(context, group, offset, u64::from(bytes_max), bounds.applied_index).await {
        Ok(entries) => {
            let bound = (!context.planted.serve_above_commit).then_some(bounds.high_watermark);
            assert_served(&entries, offset, bound);
            let mut response = ok_response(id);
            response.set_fetch(fetch_response(bounds.high_watermark, bounds.log_start_offset, served_batches(entries)));
            response
        }
        Err(NodeError::Storage { source: StorageFault::Log(odradek_log::Error::OffsetBelowStart { offset_start, .. }), .. }) => {
            let message = format!("offset {offset} was deleted by retention; the log now starts at {offset_start}");
            let mut response = error_response(id, ErrorCode::OFFSET_OUT_OF_RANGE, message);
            response.set_fetch(fetch_response(bounds.high_watermark, offset_start, Vec::new()));
            response
        }
        Err(NodeError::GroupUnknown(_)) => not_hosted(context, id, &body.topic, body.partition, preferred),
        Err(error) => error_response(id, ErrorCode::INTERNAL, format!("reading the log: {error}")),
    }
}

/// How long a fetch waits for this replica to apply up to a confirmed read index.
const READ_BARRIER_APPLY_WAIT_MS_MAX: u64 = 5_000;
/// How often it looks while it waits (the state machine applies in the driver's rounds).
const READ_BARRIER_APPLY_POLL_MS: u64 = 1;

/// A read barrier (L12 a): returns once this replica has applied up to a commit index that the
/// group's leader confirmed after this call began ([`odradek_consensus::NodeHandle::read_index`]),
/// so the high watermark read next covers every acknowledgement that completed before the
/// request. An error (retriable) when no leader confirms one or this replica does not catch up
/// in time.
async fn read_barrier(context: &NodeContext, group: GroupId) -> Result<(), String> {
    let index = context.node.read_index(group).await.map_err(|error| format!("read barrier: {error}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(READ_BARRIER_APPLY_WAIT_MS_MAX);
    loop {
        let applied = partition_bounds(context, group).ok_or("read barrier: the partition left this node")?.applied_index;
        if applied >= index {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("read barrier: this replica applied {applied} of the confirmed index {index}"));
        }
        tokio::time::sleep(Duration::from_millis(READ_BARRIER_APPLY_POLL_MS)).await;
    }
}

/// The log read of a fetch, bounded by `index_max` (the applied high watermark): through the
/// driver's log readers, off its loop (issue 17), or with the planted `ServeAboveCommit` to the
/// end of what the log wrote, committed or not.
async fn read_for_fetch(
    context: &NodeContext,
    group: GroupId,
    offset: u64,
    bytes_max: u64,
    index_max: u64,
) -> Result<Vec<odradek_log::Entry>, NodeError> {
    #[cfg(any(madsim, feature = "planted-bugs"))]
    if context.planted.serve_above_commit {
        return context.node.read_records_past_commit(group, offset, bytes_max).await;
    }
    context.node.read_records(group, offset, bytes_max, index_max).await
}

/// Postconditions of a fetch's read at `offset`: the entries begin with the one holding
/// `offset` (or the first after it), are dense in offsets, and end at or below `high_watermark`
/// when given (L12: nothing above what this replica applied; `None` only for the planted
/// `ServeAboveCommit`, which reads to the end of the local log).
fn assert_served(entries: &[odradek_log::Entry], offset: u64, high_watermark: Option<u64>) {
    if let Some(first) = entries.first() {
        assert!(first.offset_next() > offset, "fetch at {offset} served a first entry ending at {}", first.offset_next());
    }
    for pair in entries.windows(2) {
        assert_eq!(pair[1].base_offset, pair[0].offset_next(), "fetch served entries {} and {} with a gap", pair[0].index, pair[1].index);
    }
    if let (Some(last), Some(high_watermark)) = (entries.last(), high_watermark) {
        assert!(
            last.offset_next() <= high_watermark,
            "fetch served up to {} above the high watermark {high_watermark}",
            last.offset_next()
        );
    }
}

/// The batches of `entries` as a consumer gets them: each the producer's bytes with the base
/// offset from the entry header written into its first 8 bytes.
fn served_batches(entries: Vec<odradek_log::Entry>) -> Vec<u8> {
    let total: usize = entries.iter().map(|e| e.payload.len()).sum();
    let mut batches = Vec::with_capacity(total);
    for entry in entries {
        let start = batches.len();
        batches.extend_from_slice(&entry.payload);
        // The only bytes a node changes in a batch: baseOffset, outside the CRC.
        set_base_offset(&mut batches[start..], entry.base_offset as i64);
    }
    batches
}

fn fetch_response(high_watermark: u64, log_start_offset: u64, batches: Vec<u8>) -> wire::FetchResponse {
    let mut fetch = wire::FetchResponse::new();
    fetch.high_watermark = high_watermark;
    fetch.log_start_offset = log_start_offset;
    fetch.batches = batches;
    fetch
}

pub async fn list_offsets(context: &NodeContext, id: u64, body: wire::ListOffsetsRequest) -> Response {
    let location = match locate(context, &body.topic, body.partition) {
        Ok(location) => location,
        Err(error) => return error.into_response(id),
    };
    let (group, preferred) = (location.group, location.preferred);
    let refuse = |code: ErrorCode, message: String, hint: NodeId| {
        let mut response = error_response(id, code, message);
        let mut list = wire::ListOffsetsResponse::new();
        list.leader_hint = hint;
        response.set_list_offsets(list);
        response
    };
    let Some(bounds) = partition_bounds(context, group) else {
        let message = format!("node {} is not a replica of {}/{}", context.state.node_id, body.topic, body.partition);
        return refuse(ErrorCode::NOT_LEADER, message, preferred);
    };
    // Only the leader's bounds are the partition's (as in Kafka): a follower's high watermark
    // lags, and a client seeking to the end from it would stop short (found by the simulator:
    // swarm seed 719's final drain asked a follower right after a power loss of every node
    // and stopped 7 records before the end). And a new leader answers only once it applied an
    // entry of its own term: before that its high watermark may lag too (Kafka's
    // OFFSET_NOT_AVAILABLE, KIP-207).
    match leader_of(context, group).await {
        Some((leader, term)) if leader == context.state.node_id => {
            let caught_up = context.state.lock().partitions.get(&group).is_some_and(|p| p.state.applied_term() == term);
            if !caught_up {
                let message = format!("node {leader} leads {}/{} but has not caught up its term yet", body.topic, body.partition);
                return refuse(ErrorCode::LEADER_NOT_AVAILABLE, message, 0);
            }
        }
        Some((leader, _)) if leader != 0 => {
            let message = format!("node {} is not the leader of {}/{}", context.state.node_id, body.topic, body.partition);
            return refuse(ErrorCode::NOT_LEADER, message, leader);
        }
        _ => {
            let message = format!("{}/{} has no leader right now", body.topic, body.partition);
            return refuse(ErrorCode::LEADER_NOT_AVAILABLE, message, 0);
        }
    }
    let mut list = wire::ListOffsetsResponse::new();
    list.timestamp_ms = -1;
    match body.spec {
        OffsetSpec::EARLIEST => list.offset = bounds.log_start_offset,
        OffsetSpec::LATEST => list.offset = bounds.high_watermark,
        OffsetSpec::BY_TIMESTAMP => match offset_for_timestamp(context, group, bounds, body.timestamp_ms).await {
            Ok(Some((offset, timestamp))) => {
                list.offset = offset;
                list.timestamp_ms = timestamp;
            }
            // No record that late: the end of the log (Kafka answers "none"; the end is
            // where a consumer starting from that time would begin).
            Ok(None) => list.offset = bounds.high_watermark,
            Err(error) => return error_response(id, ErrorCode::INTERNAL, format!("reading the log: {error}")),
        },
    }
    let mut response = ok_response(id);
    response.set_list_offsets(list);
    response
}

/// The first committed record with a timestamp at or after `timestamp`: scans entries by
/// their max timestamp (in the entry header), then the one batch's records.
async fn offset_for_timestamp(
    context: &NodeContext,
    group: GroupId,
    bounds: PartitionBounds,
    timestamp: i64,
) -> Result<Option<(u64, i64)>, NodeError> {
    let mut offset = bounds.log_start_offset;
    while offset < bounds.high_watermark {
        let entries = context.node.read_records(group, offset, u64::from(FETCH_BYTES_MAX), bounds.applied_index).await?;
        let Some(last) = entries.last() else { return Ok(None) };
        let offset_next = last.offset_next();
        // The scan advances: a read returns only entries ending after `offset`.
        assert!(offset_next > offset, "a read at {offset} returned entries ending at {offset_next}");
        for entry in entries.into_iter().filter(|e| e.timestamp_max >= timestamp) {
            let Ok(decoded) = odradek_client::batch::decode(&entry.payload) else { continue };
            for (position, record) in decoded.records().enumerate() {
                let Ok(record) = record else { break };
                let record_offset = entry.base_offset + position as u64;
                if record.timestamp >= timestamp && record_offset >= offset {
                    return Ok(Some((record_offset, record.timestamp)));
                }
            }
        }
        offset = offset_next;
    }
    Ok(None)
}
