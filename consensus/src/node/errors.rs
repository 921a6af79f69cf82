//! The driver's errors: [`NodeError`] (an operation of the node or of one of its groups
//! failed) and [`ProposeError`] (why a proposal did not commit).
//!
//! Invariants kept here:
//! - A storage fault is fatal for the node (fsyncgate): the caller stops the node and restarts
//!   it from what is durable; nothing retries a failed fsync.
//! - Every [`ProposeError`] says whether it is *definite* (the entry certainly was not and will
//!   not be committed) or *indefinite* (it may still commit): [`ProposeError::is_definite`] is
//!   false for exactly the variants raised after the entry may have left this node's memory.

use crate::storage::StorageFault;
use crate::transport::{GroupId, NodeId};

/// Errors of the driver. Storage faults are fatal for the node (fsyncgate).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("group {group}: storage: {source}")]
    Storage {
        group: GroupId,
        #[source]
        source: StorageFault,
    },
    #[error("group {group}: raft: {source}")]
    Raft {
        group: GroupId,
        #[source]
        source: raft::Error,
    },
    #[error("group {0} already exists on this node")]
    GroupExists(GroupId),
    #[error("group {0} is not hosted on this node")]
    GroupUnknown(GroupId),
    #[error("this node already hosts as many groups as it may (GROUPS_MAX)")]
    TooManyGroups,
    #[error("the node task has stopped")]
    Stopped,
    /// The replica may have lost entries it acknowledged: it neither votes nor campaigns until
    /// that is settled (see module `suspect`).
    #[error("group {0}: this replica is suspect after a recovery cut and may not campaign")]
    Suspect(GroupId),
    /// No leader confirmed a read barrier in time ([`super::Node::read_index`]); retriable.
    #[error("group {0}: no leader confirmed a read index in time")]
    ReadIndexTimedOut(GroupId),
    /// The hand-over's target must not lead now (module `hand_over`); definite: nothing moved.
    #[error("group {group}: no hand-over to node {to}: {reason}")]
    HandOverRefused { group: GroupId, to: NodeId, reason: String },
}

/// Why a proposal did not commit. See [`ProposeError::is_definite`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Definite: this node is not the group's leader (`leader` is a hint, 0 if unknown).
    #[error("not the leader of group {group} (leader hint {leader})")]
    NotLeader { group: GroupId, leader: NodeId },
    /// Definite: the group is not hosted here.
    #[error("group {0} is not hosted on this node")]
    GroupUnknown(GroupId),
    /// Definite: too many proposals pending, or raft refused it (uncommitted bytes limit,
    /// leader transfer in progress).
    #[error("group {group} is busy: {reason}")]
    Busy { group: GroupId, reason: String },
    /// Definite: the proposal breaks a format rule (a data entry without records, a payload
    /// over `ENTRY_PAYLOAD_BYTES_MAX`).
    #[error("group {group}: invalid proposal: {reason}")]
    Invalid { group: GroupId, reason: String },
    /// Definite: the group was removed before the proposal left memory.
    #[error("group {0} stopped before the proposal was appended")]
    Stopped(GroupId),
    /// Definite: another entry was committed at the proposal's index.
    #[error("group {group}: index {index} committed another entry")]
    Superseded { group: GroupId, index: u64 },
    /// Definite: the state machine refused it before it reached raft ([`Apply::admit`](super::Apply::admit)).
    #[error("group {group}: refused by the state machine: {}", rejection.reason)]
    Rejected { group: GroupId, rejection: Rejection },
    /// Indefinite: appended at `(index, term)`, then leadership was lost before commit; it may
    /// still commit. If this node later applies `index`, a [`ResolvedOutcome`] says how it ended.
    #[error("group {group}: leadership lost before index {index} (term {term}) committed; outcome unknown")]
    LeadershipLost { group: GroupId, index: u64, term: u64 },
    /// Indefinite: the group was removed after the proposal was appended (or sent).
    #[error("group {group} stopped after index {index} was appended; outcome unknown")]
    StoppedAfterAppend { group: GroupId, index: u64 },
    /// Indefinite: the node stopped (crash, shutdown) while the proposal was open.
    #[error("the node stopped while the proposal was open; outcome unknown")]
    NodeStopped,
}

impl ProposeError {
    /// True when the entry certainly was not and will not be committed.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ProposeError::LeadershipLost { .. } | ProposeError::StoppedAfterAppend { .. } | ProposeError::NodeStopped)
    }
}

/// Why the state machine refused a proposal before it reached raft ([`Apply::admit`](super::Apply::admit)). The
/// node does not interpret it: `code` and `value` mean what the state machine says they mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: u32,
    pub value: u64,
    pub reason: String,
}

/// Wraps a storage fault of `group` (for `map_err`).
pub(super) fn storage_error(group: GroupId) -> impl FnOnce(StorageFault) -> NodeError {
    move |source| NodeError::Storage { group, source }
}

/// Wraps a raft error of `group` (for `map_err`).
pub(super) fn raft_error(group: GroupId) -> impl FnOnce(raft::Error) -> NodeError {
    move |source| NodeError::Raft { group, source }
}
