//! Produce: check a batch, queue its proposal to the partition's raft group in the order the
//! connection read it, and answer once the outcome is known (acks=all on commit, acks=1 once
//! the leader's log has it, acks=0 never).
//!
//! The batch is proposed exactly as the producer wrote it, its baseOffset field included: the
//! log of every replica records the batch's base offset in the entry header when it appends,
//! and [`super::fetch`] writes it into the batches it serves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use odradek_client::batch::{validate_for_append, BatchError};
use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, Acks, ErrorCode, Response};
use odradek_consensus::stages::LeaderStamps;
use odradek_consensus::{Durability, EntryMeta, GroupId, NodeId, ProposalTicket, ProposeError};
use odradek_seams::buggify;

use super::{locate, not_hosted, not_ready, ok_response, RequestError};
use crate::auth::Principal;
use crate::context::NodeContext;
use crate::state::{rejection_code, REJECTION_DUPLICATE};

/// The outcome of a produce once it was queued (or refused before): `None` for acks=0.
pub type ProducePending = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;

/// Where a traced produce (`trace_stages`) receives its leader driver's stage stamps once its
/// outcome is known: the group, the raft index, the stamps.
#[derive(Clone, Debug, Default)]
pub struct TraceSlot(Arc<std::sync::Mutex<Option<(GroupId, u64, LeaderStamps)>>>);

impl TraceSlot {
    /// The stamps, once (`None` before the outcome, for a failed produce, or when the driver
    /// did not trace it).
    pub fn take(&self) -> Option<(GroupId, u64, LeaderStamps)> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    fn put(&self, group: GroupId, index: u64, stamps: LeaderStamps) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((group, index, stamps));
    }
}

/// A batch that passed every check: what to propose, and where.
struct CheckedBatch {
    group: GroupId,
    /// Where to send the client if this node cannot take the batch.
    preferred: NodeId,
    batch: Bytes,
    meta: EntryMeta,
}

/// Checks a produce and queues its proposal, in the order requests arrive on the connection
/// (the caller awaits this before reading the next request); the returned future waits for the
/// outcome.
pub async fn produce(context: &Arc<NodeContext>, principal: &Principal, id: u64, body: wire::ProduceRequest) -> ProducePending {
    produce_traced(context, principal, id, body, None).await
}

/// [`produce`], handing the driver's stage stamps of a successful proposal to `trace` (when
/// given and the node has `trace_stages` on).
pub async fn produce_traced(
    context: &Arc<NodeContext>,
    principal: &Principal,
    id: u64,
    mut body: wire::ProduceRequest,
    trace: Option<TraceSlot>,
) -> ProducePending {
    let acks = body.acks;
    let answer = move |response: Response| -> ProducePending {
        let reply = (acks != Acks::ACKS_NONE).then_some(response);
        Box::pin(async move { reply })
    };
    // Planted bug (simulation and test builds only): the write check is skipped (A1).
    if !context.planted.skip_produce_acl_check {
        if let Err(refusal) = super::authorize::produce(context, principal, &body.topic) {
            return answer(refusal.into_response(id));
        }
    }
    let checked = match check(context, id, &mut body) {
        Ok(checked) => checked,
        Err(refusal) => return answer(*refusal),
    };
    let ack_on_leader_log = acks == Acks::ACKS_LEADER || context.planted.ack_before_commit;
    let durability = if ack_on_leader_log { Durability::LeaderLog } else { Durability::Committed };
    let CheckedBatch { group, preferred, batch, meta } = checked;
    let ticket = context.node.submit(group, batch, meta, durability).await;
    let timeout = Duration::from_millis(u64::from(body.timeout_ms).clamp(1, context.config.request_timeout_ms));
    Box::pin(outcome(Arc::clone(context), id, acks, (group, preferred), ticket, (timeout, trace)))
}

/// Every check before a batch is proposed, in order; the refusal's answer otherwise.
fn check(context: &NodeContext, id: u64, body: &mut wire::ProduceRequest) -> Result<CheckedBatch, Box<Response>> {
    if context.is_removed() {
        return Err(Box::new(super::removed::not_leader(context, id)));
    }
    if !context.state.is_meta_ready() {
        return Err(Box::new(not_ready(id)));
    }
    let location = locate(context, &body.topic, body.partition).map_err(|error| Box::new(error.into_response(id)))?;
    if !context.state.hosts(location.group) {
        return Err(Box::new(not_hosted(context, id, &body.topic, body.partition, location.preferred)));
    }
    let refuse = |code: ErrorCode, message: String| Box::new(RequestError::new(code, message).into_response(id));
    let batch = Bytes::from(std::mem::take(&mut body.batch));
    let limit = location.settings.batch_bytes_max as usize;
    if batch.len() > limit {
        let message = format!("a batch of {} bytes exceeds the topic's limit of {limit} bytes", batch.len());
        return Err(refuse(ErrorCode::RECORD_TOO_LARGE, message));
    }
    // A compressed batch is decompressed (bounded) and its records read here, once; it is then
    // stored and served compressed, as sent.
    let header = validate_for_append(&batch).map_err(|error| refuse(batch_error_code(&error), error.to_string()))?;
    if header.is_transactional() || header.is_control() {
        return Err(refuse(ErrorCode::INVALID_REQUEST, "transactional and control batches are not supported".into()));
    }
    if header.producer_id >= 0 && body.acks != Acks::ACKS_ALL {
        return Err(refuse(ErrorCode::INVALID_REQUEST, "an idempotent producer must use acks=all".into()));
    }
    if buggify::fires(0.01) {
        // F-B5: a spurious, definite "not leader" (nothing was proposed); the client must
        // refresh its metadata and retry without losing or duplicating the batch.
        return Err(refuse(ErrorCode::NOT_LEADER, "buggify: spurious not-leader".into()));
    }
    if !context.state.take_disk_budget(batch.len() as u64) {
        let message = format!(
            "node {} is below its free-space reserve of {} bytes; nothing was appended (free space, or delete data)",
            context.state.node_id, context.config.disk_reserve_bytes
        );
        return Err(refuse(ErrorCode::DISK_FULL, message));
    }
    let record_count = u32::try_from(header.record_count).expect("validated: 1..=BATCH_RECORDS_MAX");
    let meta = EntryMeta::Data { record_count, timestamp_max: header.timestamp_max };
    Ok(CheckedBatch { group: location.group, preferred: location.preferred, batch, meta })
}

/// The definite refusal for a batch that failed [`validate_for_append`]: a header that fails its
/// checks (CRC included) is CORRUPT_BATCH; records that do not decompress, decompress past the
/// limit, or do not parse once decompressed are INVALID_RECORD (Kafka's distinction: the first
/// may be damage in transit, the second is the producer's encoding).
fn batch_error_code(error: &BatchError) -> ErrorCode {
    use BatchError as B;
    match error {
        B::DecompressFailed { .. }
        | B::DecompressedTooLarge { .. }
        | B::RecordTruncated { .. }
        | B::VarintTruncated { .. }
        | B::VarintOverflow { .. }
        | B::LengthNegative { .. }
        | B::LengthNotNullable { .. }
        | B::LengthPastEnd { .. }
        | B::RecordLengthMismatch { .. }
        | B::RecordAttributesUnknown { .. }
        | B::OffsetDeltaMismatch { .. }
        | B::TimestampOverflow { .. }
        | B::TimestampAboveMax { .. }
        | B::HeadersTooMany { .. }
        | B::HeaderKeyNotUtf8 { .. }
        | B::RecordsMissing { .. }
        | B::TrailingBytes { .. } => ErrorCode::INVALID_RECORD,
        _ => ErrorCode::CORRUPT_BATCH,
    }
}

/// Waits for a queued proposal's outcome and answers it (`None` for acks=0).
async fn outcome(
    context: Arc<NodeContext>,
    id: u64,
    acks: Acks,
    (group, preferred): (GroupId, NodeId),
    ticket: ProposalTicket,
    (timeout, trace): (Duration, Option<TraceSlot>),
) -> Option<Response> {
    let outcome = tokio::time::timeout(timeout, ticket.outcome()).await;
    if let (Some(trace), Some(stages), Ok(Ok(appended))) = (&trace, &context.stages, &outcome) {
        if let Some(stamps) = stages.take(group, appended.index) {
            trace.put(group, appended.index, stamps);
        }
    }
    // F-B4: a late answer (the client may time out and retry a batch that is appended).
    buggify::maybe_delay(0.05, 200).await;
    if acks == Acks::ACKS_NONE {
        return None;
    }
    let mut produce = wire::ProduceResponse::new();
    produce.log_append_time_ms = -1;
    let mut response = ok_response(id);
    match outcome {
        Ok(Ok(appended)) => {
            produce.base_offset = appended.base_offset;
            if acks == Acks::ACKS_ALL {
                // R5, for the simulator's checker: this acknowledgement promises a quorum has it on disk.
                let (node, index, term) = (context.state.node_id, appended.index, appended.term);
                odradek_consensus::observe::emit(|| {
                    let voters = replica_count(&context, group).unwrap_or(1);
                    odradek_consensus::observe::Event::Acked { node, group, index, term, voters }
                });
            }
        }
        Ok(Err(ProposeError::Rejected { rejection, .. })) if rejection.code == REJECTION_DUPLICATE => {
            produce.base_offset = rejection.value;
        }
        Ok(Err(ProposeError::LeadershipLost { .. })) if context.planted.stale_leader_serves_produce => {
            // Planted: the deposed leader vouches for a batch it can no longer vouch for.
            let bounds = context.node.log_bounds(group).await.ok().flatten();
            produce.base_offset = bounds.map_or(0, |bounds| bounds.offset_next.saturating_sub(1));
        }
        Ok(Err(error)) => {
            let (code, hint) = propose_error(&error, preferred);
            produce.leader_hint = hint;
            response = error_response(id, code, error.to_string());
        }
        Err(_) => {
            let message = format!("no outcome within {} ms; the batch may or may not be appended", timeout.as_millis());
            response = error_response(id, ErrorCode::REQUEST_TIMED_OUT, message);
        }
    }
    response.set_produce(produce);
    Some(response)
}

/// How many replicas (raft voters) the partition of `group` has, per the metadata.
fn replica_count(context: &NodeContext, group: GroupId) -> Option<usize> {
    let state = context.state.lock();
    state
        .meta
        .topics()
        .values()
        .flat_map(|info| info.partitions.iter())
        .find(|assignment| assignment.group == group)
        .map(|a| a.replicas.len())
}

/// The wire code of a failed proposal, and a leader hint.
fn propose_error(error: &ProposeError, preferred: NodeId) -> (ErrorCode, NodeId) {
    match error {
        ProposeError::NotLeader { leader, .. } => (ErrorCode::NOT_LEADER, if *leader != 0 { *leader } else { preferred }),
        ProposeError::GroupUnknown(_) | ProposeError::Stopped(_) => (ErrorCode::NOT_LEADER, preferred),
        ProposeError::Superseded { .. } => (ErrorCode::NOT_LEADER, 0),
        ProposeError::Busy { .. } => (ErrorCode::LEADER_NOT_AVAILABLE, 0),
        ProposeError::Invalid { .. } => (ErrorCode::INVALID_REQUEST, 0),
        ProposeError::Rejected { rejection, .. } => (rejection_code(rejection), 0),
        ProposeError::LeadershipLost { .. } | ProposeError::StoppedAfterAppend { .. } | ProposeError::NodeStopped => {
            (ErrorCode::LEADERSHIP_LOST, 0)
        }
    }
}
