//! Applying what raft committed: conf changes to raft (saved durably first), proposals
//! resolved, entries handed to the state machine ([`Apply`]), and snapshots installed.
//!
//! Invariants kept here:
//! - Committed entries reach the [`Apply`] sink in index order, each once per incarnation: an
//!   entry at or below the state machine's applied index is skipped; a restart replays from
//!   the state machine's applied index (module `group`).
//! - A conf change is in the conf-state file before the round ends, so the persisted commit
//!   (never above the previous round's applied index) covers only saved configurations.
//! - A snapshot replaces the log with an empty one at its index and persists that index as the
//!   commit, so a restart never finds its commit below the log start.
//! - Proposal outcomes are sent after the state machine has the entries, so a proposer woken by
//!   its outcome finds them applied.

use odradek_log::Disk;
use raft::eraftpb::{Entry as RaftEntry, EntryType};

use crate::observe;
use crate::storage::{decode_conf_change, StorageFault};
use crate::transport::{GroupId, NodeId};

use super::errors::{raft_error, storage_error, NodeError};
use super::group::{send_outcomes, Apply, Committed, Group};
use super::proposals::{CommittedAt, ResolvedQueue};

/// Replaces the group's log by `snapshot` (a metadata snapshot: index, term, configuration and
/// the log's next offset) and tells the state machine; returns that next offset.
pub(super) async fn install_snapshot<D: Disk, A: Apply>(
    group: GroupId,
    state: &mut Group<D>,
    snapshot: &raft::eraftpb::Snapshot,
    apply: &mut A,
    now_ms: i64,
) -> Result<u64, NodeError> {
    let metadata = snapshot.get_metadata();
    let saved = state.store.hard_state_saved().commit;
    assert!(metadata.index >= saved, "group {group}: snapshot at {} below the persisted commit {saved}", metadata.index);
    let invalid = |detail: String| NodeError::Storage { group, source: StorageFault::InvalidEntry { index: metadata.index, detail } };
    let crate::storage::SnapshotData { offset_start: offset_next, conf_index, start_state } =
        crate::storage::decode_snapshot_data(&snapshot.data)
            .ok_or_else(|| invalid("snapshot without its start offset and conf index".into()))?;
    if let Some(start) = &start_state {
        if start.as_of_index < metadata.index {
            return Err(invalid(format!("a snapshot at {} with a start state as of {}", metadata.index, start.as_of_index)));
        }
    }
    // The start state first: a crash between the two finds it with the old log, whose entries
    // up to its index it already covers; the other order would find the new log start
    // without the state that the entries before it built.
    // With no state, the record that nothing is needed as of the snapshot (every log start
    // past index 1 has a record that reaches it: `GroupStore::save_start_state`).
    state.store.save_start_state(start_state.clone(), metadata.index + 1).await.map_err(storage_error(group))?;
    let start_state = start_state.filter(|start| !start.is_nothing_needed());
    state.store.reset(metadata.index, metadata.term, offset_next, now_ms).await.map_err(storage_error(group))?;
    // The configuration is the leader's latest applied, which may include conf changes after
    // the snapshot's index: saved under the last one's index, so that applying the entries
    // after the snapshot skips them (`apply_committed`) instead of applying them twice.
    let conf_index = conf_index.max(metadata.index);
    state.store.save_conf_state(metadata.get_conf_state(), conf_index).await.map_err(storage_error(group))?;
    // The log now starts above the old persisted commit: persist the snapshot index as commit
    // (it is committed), or a restart would find its commit below the log start.
    let mut hard = crate::storage::raft_hard_state(state.store.hard_state_saved());
    hard.commit = hard.commit.max(metadata.index);
    state.store.save_hard_state(&hard).await.map_err(storage_error(group))?;
    state.applied_durable_conf = state.applied_durable_conf.max(metadata.index);
    state.state_machine_applied = state.state_machine_applied.max(metadata.index);
    apply.restore(group, metadata.index, metadata.term, offset_next, start_state.as_ref());
    tracing::info!(group, index = metadata.index, offset_next, "installed a snapshot: the log continues after it");
    Ok(offset_next)
}

/// Applies committed entries: conf changes to raft (saved durably), proposals resolved, and
/// everything above the state machine's applied index handed to it. `applier` is this node and
/// its incarnation, for the observer.
pub(super) async fn apply_committed<D: Disk, A: Apply>(
    applier: (NodeId, u64),
    group: GroupId,
    state: &mut Group<D>,
    entries: &[RaftEntry],
    apply: &mut A,
    resolved: &mut ResolvedQueue,
) -> Result<(), NodeError> {
    if entries.is_empty() {
        return Ok(());
    }
    assert!(entries.windows(2).all(|pair| pair[1].index == pair[0].index + 1), "group {group}: committed entries with a gap");
    // Readers may read what the state machine is about to have (module `readers`): published
    // first, so a fetch bounded by the applied high watermark never finds the log behind it.
    state.store.set_readable_index(entries.last().expect("not empty").index);
    assert!(entries[0].index <= state.state_machine_applied + 1, "group {group}: committed entries skip past the applied index");
    let mut handed = Vec::with_capacity(entries.len());
    // Outcomes are sent after the state machine has the entries, so a proposer woken by its
    // outcome (possibly on another thread) finds them applied.
    let mut outcomes = Vec::new();
    let storage = state.store.storage();
    let mut base_offsets = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryNormal && entry.index > state.store.conf_state_index() {
            let change = decode_conf_change(entry).map_err(storage_error(group))?;
            let conf = state.raw.apply_conf_change(&change).map_err(raft_error(group))?;
            state.store.save_conf_state(&conf, entry.index).await.map_err(storage_error(group))?;
            let (node, incarnation, index) = (applier.0, applier.1, entry.index);
            observe::emit(|| observe::Event::ConfApplied {
                node,
                incarnation,
                group,
                index,
                conf: observe::Conf::of(&conf),
                source: observe::ConfSource::Applied,
            });
        }
        let base_offset = storage.base_offset(entry.index).expect("unapplied entries stay cached");
        base_offsets.push(base_offset);
        let conf_change = entry.get_entry_type() != EntryType::EntryNormal;
        let at = CommittedAt { index: entry.index, term: entry.term, conf_change, base_offset };
        outcomes.extend(state.proposals.committed(at, resolved));
        if entry.index > state.state_machine_applied {
            let log_entry = crate::storage::to_log_entry(entry, base_offset).map_err(storage_error(group))?;
            handed.push(Committed::from_log(&log_entry));
        }
    }
    // Proposals below the committed prefix can no longer commit (a superseded index).
    outcomes.extend(state.proposals.committed_through(entries.last().expect("not empty").index));
    if let (Some(first), Some(last)) = (handed.first(), handed.last()) {
        // Exactly once, in order: the state machine gets the entry right after its applied one.
        assert_eq!(first.index, state.state_machine_applied + 1, "group {group}: the state machine would skip or repeat entries");
        state.state_machine_applied = last.index;
        apply.apply(group, &handed);
    }
    send_outcomes(outcomes);
    observe_applied(applier, group, entries, &base_offsets);
    Ok(())
}

/// Reports the entries applied, each at its base offset.
fn observe_applied((node, incarnation): (NodeId, u64), group: GroupId, entries: &[RaftEntry], base_offsets: &[u64]) {
    for (entry, &base_offset) in entries.iter().zip(base_offsets) {
        let (index, term) = (entry.index, entry.term);
        observe::emit(|| {
            let checksum = observe::entry_checksum(entry);
            let offset_next = crate::storage::to_log_entry(entry, base_offset).expect("a committed entry converts").offset_next();
            observe::Event::Applied { node, incarnation, group, index, term, checksum, base_offset, offset_next }
        });
    }
}
