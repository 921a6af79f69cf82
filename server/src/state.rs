//! What a node knows, shared between the raft loop (which applies committed entries through
//! [`StateMachine`], an [`Apply`]) and the request handlers: the controller's metadata and each
//! hosted partition's state (high watermark, log start, idempotent-producer table).
//!
//! The raft loop holds the lock only while applying or admitting; handlers hold it only to read
//! a few fields. Waiters learn of changes through `watch` channels: the metadata version for
//! the reconciler, a per-partition high watermark for long-polling fetches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use odradek_client::batch::BatchHeader;
use odradek_client::wire::proto::ErrorCode;
use odradek_consensus::{Apply, Committed, EntryMeta, GroupId, NodeId, Rejection};
use odradek_log::{EntryKind, StartState};
use odradek_seams::watch;

use crate::group::service::CoordinatorPartition;
use crate::group::OFFSETS_TOPIC;
use crate::meta::{MetaOutcome, MetadataState, METADATA_GROUP};
use crate::partition::{Admit, BatchInfo, PartitionCommand, PartitionState};
use crate::planted::Planted;

/// [`Rejection::code`] for "this batch is already in the log at `value`" (a retry of an
/// appended batch): the produce succeeds with that base offset.
pub const REJECTION_DUPLICATE: u32 = u32::MAX;

/// One hosted partition.
pub struct Partition {
    pub state: PartitionState,
    /// The high watermark, for long polls.
    pub high_watermark: watch::Sender<u64>,
    /// The producer table's last encoding and the table version it encodes.
    producer_table: Option<(u64, Bytes)>,
}

impl Partition {
    fn new() -> Partition {
        Partition { state: PartitionState::new(), high_watermark: watch::Sender::new(0), producer_table: None }
    }

    /// What retention must save before it deletes entries (`odradek_log::StartState`): the
    /// producer table, exact as of the returned `as_of_index`; while the table is empty, the
    /// record that nothing is needed as of that index (`StartState::nothing_needed`), which
    /// bounds the trim all the same: entries applied after it may hold a producer's first
    /// batch. The encoding is kept until the table changes (idle partitions encode nothing).
    pub fn start_state(&mut self) -> Option<StartState> {
        let version = self.state.producers_version();
        if self.producer_table.as_ref().is_none_or(|(encoded, _)| *encoded != version) {
            self.producer_table = self.state.producer_table().map(|bytes| (version, Bytes::from(bytes)));
        }
        let as_of_index = self.state.applied_index().max(self.state.producers_as_of());
        let bytes = self.producer_table.as_ref().map_or_else(Bytes::new, |(_, bytes)| bytes.clone());
        Some(StartState { as_of_index, bytes })
    }
}

/// Outcomes of recently applied metadata commands kept for their proposers.
pub const META_OUTCOMES_KEPT: usize = 1024;

/// The state built by applying committed entries (and, for a partition's leader, by admitting
/// produce batches): behind [`NodeState::lock`].
#[derive(Default)]
pub struct AppliedState {
    pub meta: MetadataState,
    pub partitions: BTreeMap<GroupId, Partition>,
    /// Raft index → outcome of the metadata command applied there (the last
    /// `META_OUTCOMES_KEPT`), so a proposer can tell the client why a command was refused.
    pub meta_outcomes: BTreeMap<u64, MetaOutcome>,
    /// The hosted partitions of the offsets topic: their group tables and, on their leaders,
    /// the coordinators' volatile state (`crate::group`).
    pub coordinators: BTreeMap<GroupId, CoordinatorPartition>,
}

/// The partition of the offsets topic that `group` (a raft group) is, if it is one.
fn offsets_partition(meta: &MetadataState, group: GroupId) -> Option<u32> {
    let (topic, partition) = meta.partition_of_group(group)?;
    (topic.name == OFFSETS_TOPIC).then_some(partition.partition)
}

/// What a node knows, shared by its raft loop and its request handlers (see the module comment).
pub struct NodeState {
    pub node_id: NodeId,
    applied: Mutex<AppliedState>,
    /// Bumped after every applied metadata entry (the reconciler and admin requests wait on it).
    pub meta_version: watch::Sender<u64>,
    /// Set once this node has applied the metadata log up to a commit index learned from a
    /// leader. Until then (right after a restart, the replay stops at the lazily persisted
    /// commit) its metadata may miss recent changes, and it does not serve clients from it.
    pub meta_ready: std::sync::atomic::AtomicBool,
    /// Bytes this node may still append before the disk's free space reaches the reserve: set
    /// from each measurement (free − reserve), lowered by every batch produce accepts and every
    /// append a follower takes from a leader (the consensus node shares it) in between.
    pub disk_budget: Arc<std::sync::atomic::AtomicI64>,
    /// Free bytes of the data directory's file system at the last measurement (for metrics).
    disk_available_bytes: std::sync::atomic::AtomicU64,
    /// Whether this node's applied metadata lists it removed, as of the last metadata entry
    /// applied (a later join under the same id clears it): kept where the metadata is applied,
    /// so that [`NodeState::was_removed`], read on every client request, takes no lock.
    removed_in_metadata: std::sync::atomic::AtomicBool,
    /// This node learned from the controller that it was removed from the cluster though its
    /// own metadata, no longer replicated to it, may not say so (`crate::membership::learn_removal`).
    removed_learned: std::sync::atomic::AtomicBool,
    /// This node's metadata replica was rebuilt after damage and has not settled yet
    /// (`crate::meta_repair`).
    metadata_rebuilding: std::sync::atomic::AtomicBool,
}

impl NodeState {
    pub fn new(node_id: NodeId) -> Arc<NodeState> {
        let meta_ready = std::sync::atomic::AtomicBool::new(false);
        let disk_budget = Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX));
        Arc::new(NodeState {
            node_id,
            applied: Mutex::new(AppliedState::default()),
            meta_version: watch::Sender::new(0),
            meta_ready,
            disk_budget,
            disk_available_bytes: std::sync::atomic::AtomicU64::new(0),
            removed_in_metadata: std::sync::atomic::AtomicBool::new(false),
            removed_learned: std::sync::atomic::AtomicBool::new(false),
            metadata_rebuilding: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Takes `bytes` from the disk budget; `false` (nothing taken) when they do not fit.
    pub fn take_disk_budget(&self, bytes: u64) -> bool {
        odradek_consensus::take_budget(&self.disk_budget, bytes)
    }

    /// A new free-space measurement.
    pub fn set_disk_available(&self, available: u64, reserve: u64) {
        let budget = i64::try_from(available.saturating_sub(reserve)).unwrap_or(i64::MAX);
        self.disk_budget.store(budget, std::sync::atomic::Ordering::Release);
        self.disk_available_bytes.store(available, std::sync::atomic::Ordering::Release);
    }

    /// Free bytes at the last measurement (0 before the first).
    pub fn disk_available_bytes(&self) -> u64 {
        self.disk_available_bytes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether this node was removed from the cluster (decommissioned): its own metadata says
    /// so, or the controller told it (`crate::membership::learn_removal`). Never undone in a
    /// process: a removed node comes back only with an empty data directory, under a new
    /// incarnation.
    pub fn was_removed(&self) -> bool {
        self.removed_learned.load(std::sync::atomic::Ordering::Acquire)
            || self.removed_in_metadata.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The controller says this node was removed.
    pub fn learn_removed(&self) {
        self.removed_learned.store(true, std::sync::atomic::Ordering::Release);
    }

    /// See `metadata_rebuilding`.
    pub fn set_metadata_rebuilding(&self, rebuilding: bool) {
        self.metadata_rebuilding.store(rebuilding, std::sync::atomic::Ordering::Release);
    }

    pub fn is_metadata_rebuilding(&self) -> bool {
        self.metadata_rebuilding.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn is_meta_ready(&self) -> bool {
        self.meta_ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The state, locked. Never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, AppliedState> {
        // A panic while holding the lock leaves the state as it was between two entries at
        // worst; keep serving rather than cascading the panic.
        self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts tracking a partition group before its raft group is created, so that replayed
    /// entries land somewhere.
    pub fn add_partition(&self, group: GroupId) {
        self.lock().partitions.entry(group).or_insert_with(Partition::new);
    }

    pub fn remove_partition(&self, group: GroupId) {
        let mut state = self.lock();
        state.partitions.remove(&group);
        if let Some(mut coordinator) = state.coordinators.remove(&group) {
            coordinator.demote(self.node_id);
        }
    }

    /// Whether this node hosts (a replica of) `group`.
    pub fn hosts(&self, group: GroupId) -> bool {
        self.lock().partitions.contains_key(&group)
    }

    /// A receiver of `group`'s high watermark, if hosted.
    pub fn watch_high_watermark(&self, group: GroupId) -> Option<watch::Receiver<u64>> {
        Some(self.lock().partitions.get(&group)?.high_watermark.subscribe())
    }
}

/// The [`Apply`] side: runs inside the raft loop.
pub struct StateMachine {
    state: Arc<NodeState>,
    /// Reads `skip_dedup` (all off in normal builds).
    planted: Planted,
}

impl StateMachine {
    pub fn new(state: Arc<NodeState>, planted: Planted) -> StateMachine {
        StateMachine { state, planted }
    }
}

impl Apply for StateMachine {
    fn apply(&mut self, group: GroupId, entries: &[Committed]) {
        for pair in entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index + 1, "group {group}: committed entries handed out of order");
        }
        let mut state = self.state.lock();
        if group == METADATA_GROUP {
            for entry in entries.iter().filter(|e| e.kind == EntryKind::Command) {
                let applied_before = state.meta.applied_index();
                let outcome = state.meta.apply(entry.index, &entry.payload);
                assert!(state.meta.applied_index() >= applied_before, "metadata apply moved the applied index backwards");
                assert!(state.meta.applied_index() >= entry.index, "metadata entry {} left unapplied", entry.index);
                tracing::debug!(index = entry.index, ?outcome, "metadata applied");
                state.meta_outcomes.insert(entry.index, outcome);
                if state.meta_outcomes.len() > META_OUTCOMES_KEPT {
                    state.meta_outcomes.pop_first();
                }
            }
            // The one place the metadata changes: whether it lists this node removed is kept
            // here, so that `NodeState::was_removed` needs no lock on the request path.
            let removed = state.meta.removed().contains(&self.state.node_id);
            self.state.removed_in_metadata.store(removed, std::sync::atomic::Ordering::Release);
            drop(state);
            self.state.meta_version.send_modify(|version| *version += 1);
            return;
        }
        let is_offsets = offsets_partition(&state.meta, group).is_some();
        if let Some(number) = offsets_partition(&state.meta, group) {
            let coordinator =
                state.coordinators.entry(group).or_insert_with(|| CoordinatorPartition::new(number, self.planted.assignment_two_owners));
            for entry in entries {
                if entry.kind == EntryKind::Command {
                    let outcome = coordinator.table.apply(entry.index, &entry.payload);
                    tracing::trace!(group, index = entry.index, ?outcome, "group record applied");
                } else {
                    coordinator.table.skip(entry.index);
                }
            }
        }
        let partition = state.partitions.entry(group).or_insert_with(Partition::new);
        for entry in entries {
            let Committed { index, term, kind, base_offset, record_count, timestamp_max, payload } = entry;
            partition.state.apply(*index, *term, *kind, *base_offset, *record_count, *timestamp_max, payload);
            if *kind == EntryKind::Command && !is_offsets {
                match PartitionCommand::decode(payload) {
                    Some(PartitionCommand::DeleteRecords { before }) => partition.state.delete_records(*index, before),
                    None => tracing::warn!(group, index, "a command entry this version does not know; ignored"),
                }
            }
        }
        if let Some(last) = entries.last() {
            assert_eq!(partition.state.applied_index(), last.index, "group {group}: apply stopped short");
            let offset_next = last.base_offset + u64::from(last.record_count);
            assert_eq!(partition.state.high_watermark(), offset_next, "group {group}: the high watermark is not the applied end");
        }
        let high_watermark = partition.state.high_watermark();
        partition.high_watermark.send_if_modified(|hw| std::mem::replace(hw, high_watermark) != high_watermark);
    }

    fn restore(&mut self, group: GroupId, index: u64, term: u64, offset_next: u64, start_state: Option<&StartState>) {
        if group == METADATA_GROUP {
            // The metadata log is never trimmed (ServerConfig::metadata_log_config).
            tracing::error!(index, "the metadata log was replaced by a snapshot; metadata before it is unknown here");
            return;
        }
        let mut state = self.state.lock();
        if let Some(number) = offsets_partition(&state.meta, group) {
            // The table comes back with the next snapshot record, which the log holds.
            state
                .coordinators
                .entry(group)
                .or_insert_with(|| CoordinatorPartition::new(number, self.planted.assignment_two_owners))
                .table
                .restore(index);
        }
        let partition = state.partitions.entry(group).or_insert_with(Partition::new);
        partition.state.restore(index, term, offset_next);
        assert_eq!(partition.state.high_watermark(), offset_next, "group {group}: restore left the high watermark elsewhere");
        if let Some(start) = start_state {
            // Written by this server's retention (or a leader's, through a snapshot) and
            // checksummed on disk: a table that does not decode is a bug, not rot.
            match crate::partition::decode_producer_table(&start.bytes) {
                Ok(producers) => partition.state.load_producers(start.as_of_index, producers),
                Err(error) => panic!("group {group}: the start state as of {} is no producer table: {error}", start.as_of_index),
            }
        }
        partition.high_watermark.send_replace(partition.state.high_watermark());
    }

    fn admit(&mut self, group: GroupId, term: u64, data: &Bytes, meta: EntryMeta) -> Result<(), Rejection> {
        if group == METADATA_GROUP || !matches!(meta, EntryMeta::Data { .. }) {
            return Ok(());
        }
        // The handler validated the batch (CRC included) before proposing it.
        let header = BatchHeader::parse(data).map_err(|error| Rejection {
            code: ErrorCode::CORRUPT_BATCH as u32,
            value: 0,
            reason: error.to_string(),
        })?;
        let mut state = self.state.lock();
        let Some(partition) = state.partitions.get_mut(&group) else {
            return Err(Rejection { code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION as u32, value: 0, reason: "partition not hosted".into() });
        };
        match partition.state.admit(term, &BatchInfo::from_header(&header)) {
            Ok(Admit::Append) => Ok(()),
            // Planted: the duplicate is appended again.
            Ok(Admit::Duplicate { .. }) if self.planted.skip_dedup => Ok(()),
            Ok(Admit::Duplicate { base_offset }) => {
                Err(Rejection { code: REJECTION_DUPLICATE, value: base_offset, reason: "a retry of an appended batch".into() })
            }
            Err(error) => Err(Rejection { code: error.error_code() as u32, value: 0, reason: error.to_string() }),
        }
    }

    fn admit_undone(&mut self, group: GroupId) {
        if let Some(partition) = self.state.lock().partitions.get_mut(&group) {
            partition.state.undo_admit();
        }
    }
}

/// The wire error code a [`Rejection`] carries (see [`StateMachine::admit`]).
pub fn rejection_code(rejection: &Rejection) -> ErrorCode {
    use protobuf::ProtobufEnum;
    i32::try_from(rejection.code).ok().and_then(ErrorCode::from_i32).unwrap_or(ErrorCode::INTERNAL)
}
