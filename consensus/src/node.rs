//! The node driver: every raft group this node hosts (group 0 = metadata, one per partition),
//! driven by one loop that owns them all.
//!
//! The driver is a state machine the caller drives: [`Node::tick`] advances raft's logical
//! clock, [`Node::propose`] queues a proposal, and [`Node::round`] does one round of work. In
//! production [`Node::run`] (module `handle`) calls them from a `select!` over a tick interval,
//! the inbox and a command queue fed by [`NodeHandle`]s; a deterministic test calls them from a
//! seeded scheduler (see `tests/cluster.rs`).
//!
//! One round:
//! 1. step the inbound batches waiting in the inbox (at most `INBOUND_BATCHES_PER_ROUND_MAX`);
//! 2. take a `Ready` from every group that has one; append its entries to the group's log
//!    (truncating a conflicting suffix), install a snapshot if any;
//! 3. fsync every dirty log once (group commit), then save the hard states whose term or vote
//!    changed, and those whose saved commit lags too far (see below);
//! 4. only now collect outbound messages (the ready's, the persisted ones, and those of the
//!    `LightReady` after `advance`), apply committed entries, and `advance`;
//! 5. serve asynchronous log fetches raft asked for (`on_entries_fetched`);
//! 6. send everything, one batch per destination node.
//!
//! Invariants kept here:
//! - R6 persist before send: no message leaves before the fsync of the round that produced
//!   it and the save of any term/vote it depends on. Every message of a round is sent in step
//!   6, after step 3, so this holds even for the ones raft would allow earlier.
//! - The persisted commit index is lazily saved, never above the applied index at the end of
//!   the previous round: every conf change at or below it is in the conf-state file, so a
//!   restart rebuilds the configuration without replaying config entries (they may be gone to
//!   retention). It lags the applied index by less than `COMMIT_PERSIST_LAG_MAX` entries after
//!   each round, which bounds what a restart must load into the entry cache.
//! - Retention ([`Node::enforce_retention`]) deletes only below the persisted commit; a
//!   follower that needs deleted entries gets a metadata snapshot (log start index, term and
//!   next offset) and resets its log to it, persisting the snapshot index as its commit.
//! - Committed entries reach the [`Apply`] sink in index order, each once per incarnation; a
//!   restart replays from the state machine's applied index (given at `create_group`).
//! - A replica whose recovery cut entries it may have acknowledged (bit rot of the last entry
//!   looks like a torn write) is suspect: it never campaigns and votes only for a candidate
//!   that provably holds what it lost, until its log or the other voters' answers settle it
//!   (module `suspect`, CHECKLISTS R8 e).
//!
//! Proposals: a proposal refused by raft (not leader, transfer in progress, too many
//! uncommitted bytes) fails definitely at once. Once accepted it resolves on commit: success
//! when the committed entry at its index has its term, a definite failure when another entry was
//! committed there; it fails *indefinitely* if this node loses leadership first (the entry may
//! still commit under a later leader) and definitely if the group is removed before any ready
//! carried it (it never left memory).
//!
//! Indefinite outcomes resolved later: a proposal failed with `LeadershipLost { index, term }`
//! is remembered per group (at most `INDEFINITE_PROPOSALS_MAX`) until this node applies
//! `index`; then the committed entry there decides it, a success if it has the proposal's term
//! (and kind), a definite failure otherwise, queued as a [`ResolvedOutcome`] for
//! [`Node::take_resolved_outcomes`] (at most `RESOLVED_OUTCOMES_MAX` waiting). The records live
//! in memory: a restart, a group removal, or a snapshot past the index leaves the outcome
//! indefinite.
//!
//! Election timeouts: with `NodeConfig::election_seed` the driver redraws every reset timeout
//! from its own seeded generator, so a seeded schedule replays exactly.
//!
//! Cost sketch: per round, one fdatasync per dirty log (all groups' entries of the round share
//! it) plus one hard-state fsync per group whose term or vote changed (elections only) or
//! whose commit moved `COMMIT_PERSIST_LAG_MAX` entries; one `send` per peer. CPU is raft's own
//! work plus one conversion per appended entry.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::observe;
use bytes::Bytes;
use odradek_log::{buggify, Disk, EntryKind, LogConfig, ENTRY_PAYLOAD_BYTES_MAX};
use raft::eraftpb::{ConfChangeV2, ConfState, Entry as RaftEntry, EntryType, HardState as RaftHardState, Message, MessageType};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

mod handle;
mod suspect;

pub use handle::{Command, NodeHandle, ProposalTicket, COMMANDS_PER_ROUND_MAX, COMMAND_QUEUE_MAX};

use crate::storage::{decode_conf_change, EntryMeta, GroupStorage, GroupStore, StorageFault, LOG_READ_BYTES_MAX};
use crate::transport::{GroupId, Inbound, NodeId, Transport};

/// Inbound batches stepped per round; the rest wait in the (bounded) inbox for the next one.
pub const INBOUND_BATCHES_PER_ROUND_MAX: usize = 1024;
/// Proposals waiting for commit per group before new ones are refused (definitely).
pub const PROPOSALS_PENDING_MAX: usize = 4096;
/// A commit-only hard-state change is saved once raft's commit is this far past the saved one.
pub const COMMIT_PERSIST_LAG_MAX: u64 = 1024;
/// Groups one node hosts.
pub const GROUPS_MAX: usize = 100_000;
/// raft's `max_size_per_msg`: bytes of entries per append message.
pub const RAFT_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// raft's `max_inflight_msgs`: append messages in flight per follower.
pub const RAFT_INFLIGHT_MESSAGES_MAX: usize = 256;
/// raft's `max_uncommitted_size`: proposals beyond this many uncommitted bytes are refused.
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Indefinitely failed proposals remembered per group until this node learns their fate; past
/// this, the one at the lowest index is forgotten (its outcome stays unknown).
pub const INDEFINITE_PROPOSALS_MAX: usize = PROPOSALS_PENDING_MAX;
/// Resolved outcomes waiting for [`Node::take_resolved_outcomes`]; past this, the oldest one is
/// dropped (with a warning).
pub const RESOLVED_OUTCOMES_MAX: usize = 16 * 1024;

/// How a node runs its groups.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// Each group lives in `<data_dir>/<group id>/`.
    pub data_dir: PathBuf,
    pub log_config: LogConfig,
    /// Ticks without a leader before a follower campaigns (raft's `election_tick`).
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    /// `None`: raft randomizes each election timeout in `[election_tick, 2 * election_tick)`
    /// from `rand`'s thread RNG. `Some(seed)`: the driver redraws every reset timeout in that
    /// range from its own generator seeded with this and the node id (before raft's draw can
    /// matter: the next tick), so a test schedule replays exactly. A fixed timeout per node
    /// would not do: two nodes with equal timeouts split every vote in lockstep forever.
    pub election_seed: Option<u64>,
    /// Planted bug (test builds with the `planted-bugs` feature only): send every message of a
    /// round before the round's fsync, breaking R6, to show the property tests catch it.
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub planted_send_before_persist: bool,
    /// Planted bug: a replica whose recovery cut its log takes the cut for a torn write it never
    /// acknowledged and drops the suspicion at once, voting as before (breaks R8 e).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub planted_trust_recovery_cut: bool,
    /// Bytes of new entries this node may still take from leaders before its disk reaches the
    /// operator's free-space reserve (F-S9); the owner refills it from free-space measurements.
    /// An append that does not fit is dropped as if lost: the replica stays up, serving its
    /// other duties, and the leader resends once there is room. `None`: no limit.
    pub entry_budget: Option<Arc<AtomicI64>>,
    /// With less than this left in `entry_budget`, the node is *low on disk* (issue 19, defect
    /// 4): it cannot take the largest write its owner accepts, so it hands the leadership of
    /// every group it leads to a follower holding the whole log, and drops hand-overs to itself
    /// (`MsgTimeoutNow`), so no balancing hands leadership back while it is low. As a follower it
    /// still takes appends while they fit the budget (a topic deletion that frees space must
    /// commit). It still campaigns when no leader is left: a low leader beats none, and it hands
    /// off again as soon as a follower has caught up. 0: low only with nothing left.
    pub lead_room_bytes_min: u64,
}

impl NodeConfig {
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            node_id,
            data_dir: data_dir.into(),
            log_config: LogConfig::default(),
            election_tick: 10,
            heartbeat_tick: 2,
            election_seed: None,
            #[cfg(any(madsim, feature = "planted-bugs"))]
            planted_send_before_persist: false,
            #[cfg(any(madsim, feature = "planted-bugs"))]
            planted_trust_recovery_cut: false,
            entry_budget: None,
            lead_room_bytes_min: 0,
        }
    }
}

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
    #[error("this node already hosts GROUPS_MAX ({GROUPS_MAX}) groups")]
    TooManyGroups,
    #[error("the node task has stopped")]
    Stopped,
    /// The replica may have lost entries it acknowledged: it neither votes nor campaigns until
    /// that is settled (see module `suspect`).
    #[error("group {0}: this replica is suspect after a recovery cut and may not campaign")]
    Suspect(GroupId),
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
    /// Definite: the state machine refused it before it reached raft ([`Apply::admit`]).
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

/// Where a proposal landed: its raft position and the first offset of its records (the log's
/// next offset for entries without records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub term: u64,
    pub base_offset: u64,
}

/// When a proposal resolves `Ok`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once committed: a quorum of the current voters has it on disk (acks=all).
    #[default]
    Committed,
    /// Once the leader's own log has it on disk (acks=1): a later leader may lack it. A
    /// proposal resolved this way is no longer tracked (no `LeadershipLost`, no resolution).
    LeaderLog,
}

/// Why the state machine refused a proposal before it reached raft ([`Apply::admit`]). The
/// node does not interpret it: `code` and `value` mean what the state machine says they mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: u32,
    pub value: u64,
    pub reason: String,
}

/// The outcome of a proposal: resolves with where it was appended once committed (or, with
/// [`Durability::LeaderLog`], once the leader's log has it on disk).
#[derive(Debug)]
pub struct Proposal {
    state: ProposalState,
}

#[derive(Debug)]
enum ProposalState {
    Waiting(oneshot::Receiver<Result<Appended, ProposeError>>),
    Failed(ProposeError),
    Done,
}

/// A dropped sender means the node itself went away (crash, shutdown) with the proposal open.
fn node_gone<T>(outcome: Result<Result<T, ProposeError>, oneshot::error::RecvError>) -> Result<T, ProposeError> {
    outcome.unwrap_or(Err(ProposeError::NodeStopped))
}

impl Proposal {
    fn failed(error: ProposeError) -> Proposal {
        Proposal { state: ProposalState::Failed(error) }
    }

    /// The outcome, once, when known (for schedulers that do not poll futures); `None` while
    /// pending and after the outcome was taken.
    pub fn try_outcome(&mut self) -> Option<Result<Appended, ProposeError>> {
        let outcome = match &mut self.state {
            ProposalState::Done => return None,
            ProposalState::Failed(error) => Err(error.clone()),
            ProposalState::Waiting(receiver) => match receiver.try_recv() {
                Ok(outcome) => outcome,
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => Err(ProposeError::NodeStopped),
            },
        };
        self.state = ProposalState::Done;
        Some(outcome)
    }
}

impl Future for Proposal {
    type Output = Result<Appended, ProposeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match &mut self.state {
            ProposalState::Done => panic!("a Proposal is polled after completion"),
            ProposalState::Failed(error) => Err(error.clone()),
            ProposalState::Waiting(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => node_gone(outcome),
            },
        };
        self.state = ProposalState::Done;
        Poll::Ready(outcome)
    }
}

/// The late answer to a proposal that failed with [`ProposeError::LeadershipLost`]: this node
/// applied the proposal's index after all and so knows what was committed there. Taken with
/// [`Node::take_resolved_outcomes`] (or [`NodeHandle::take_resolved_outcomes`]); match it to
/// the error by `(group, index, term)`.
///
/// Best effort: the record of an open indefinite outcome lives in memory (a restart forgets it),
/// is bounded per group (`INDEFINITE_PROPOSALS_MAX`), and is dropped unresolved when a snapshot
/// moves this node's log past the index (the entry there is then unknown to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedOutcome {
    pub group: GroupId,
    pub index: u64,
    /// The term the proposal was appended in.
    pub term: u64,
    /// `Ok`: the proposal committed. `Err`: a definite failure, `Superseded`
    /// (another entry was committed there) or `Busy` (raft replaced a conf change by an empty
    /// entry).
    pub outcome: Result<Appended, ProposeError>,
}

/// One committed entry, as handed to the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    /// First offset of the entry's records (the next offset for entries without records).
    pub base_offset: u64,
    pub record_count: u32,
    pub max_timestamp: i64,
    /// The proposer's data (a record batch for `Data`); for `Config` the raft entry type (one
    /// byte) followed by the encoded conf change.
    pub payload: Bytes,
}

/// The state machine above the groups: receives committed entries in index order.
pub trait Apply: Send {
    /// Entries of `group`, contiguous and in order, all committed.
    fn apply(&mut self, group: GroupId, entries: &[Committed]);
    /// The group's log was replaced by a snapshot at `index`, next offset `offset_next`.
    fn restore(&mut self, group: GroupId, index: u64, term: u64, offset_next: u64);
    /// Called on the leader for every data or command proposal right before raft gets it, in
    /// the order proposals reach raft (so a check here and the append are atomic): `Err`
    /// refuses it ([`ProposeError::Rejected`], definite). `term` is the leader's term.
    fn admit(&mut self, group: GroupId, term: u64, data: &Bytes, meta: EntryMeta) -> Result<(), Rejection> {
        let _ = (group, term, data, meta);
        Ok(())
    }
    /// Raft refused the proposal [`Apply::admit`] accepted last for `group`: it was not appended.
    fn admit_undone(&mut self, group: GroupId) {
        let _ = group;
    }
}

/// A snapshot of one group's raft state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub role: StateRole,
    pub leader: NodeId,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    /// Leader only: (matched, next) index per replica.
    pub progress: BTreeMap<NodeId, (u64, u64)>,
    /// The replica is suspect after a recovery cut: no votes, no campaign (module `suspect`).
    pub suspect: bool,
}

/// Where a group's log starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    pub start_offset: u64,
    pub next_offset: u64,
    pub first_index: u64,
}

/// Counters since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub rounds: u64,
    /// fdatasyncs of logs (one per dirty log per round).
    pub log_syncs: u64,
    pub hard_state_saves: u64,
    pub messages_sent: u64,
    pub entries_appended: u64,
    pub entries_committed: u64,
    /// Asynchronous log reads served for raft (entries no longer in the cache).
    pub log_fetches: u64,
    /// Appends from leaders dropped because the disk was at its reserve (`entry_budget`).
    pub appends_refused_disk_low: u64,
    /// Leadership hand-overs asked of raft because this node was low on disk, and hand-overs
    /// to it dropped for the same reason (`NodeConfig::lead_room_bytes_min`).
    pub leaderships_handed_off_disk_low: u64,
    pub transfers_refused_disk_low: u64,
    /// Vote, pre-vote and timeout-now requests a suspect replica dropped.
    pub votes_refused_suspect: u64,
    /// Suspicions settled and cleared (durably).
    pub suspicions_cleared: u64,
    /// Times a leader's heartbeat showed this replica's log behind what it had acknowledged
    /// (its data directory replaced by an older copy, or wiped): it turned suspect instead of
    /// letting raft-rs abort on the commit index (module `suspect`).
    pub logs_found_behind: u64,
}

struct PendingProposal {
    term: u64,
    /// Some ready has carried the entry (it may be on disk or on other nodes).
    emitted: bool,
    /// A membership change: raft may have replaced it by an empty entry at append.
    conf_change: bool,
    durability: Durability,
    sender: oneshot::Sender<Result<Appended, ProposeError>>,
}

/// What the resolution of an indefinitely failed proposal needs besides its `(index, term)`.
#[derive(Clone, Copy, Debug)]
struct IndefiniteProposal {
    conf_change: bool,
}

struct Group<D: Disk> {
    raw: RawNode<GroupStorage>,
    store: GroupStore<D>,
    proposals: BTreeMap<u64, PendingProposal>,
    /// Proposals failed with `LeadershipLost`, by (index, term), until this node applies their
    /// index (at most `INDEFINITE_PROPOSALS_MAX`).
    indefinite: BTreeMap<(u64, u64), IndefiniteProposal>,
    /// The state machine has seen entries up to here (skip re-applying at or below it).
    state_machine_applied: u64,
    /// Applied index at the end of the last round: every conf change up to it is in the
    /// conf-state file, so a commit up to it may be persisted.
    applied_durable_conf: u64,
    /// Set while the replica may have lost entries it acknowledged (module `suspect`).
    suspect: Option<suspect::Suspect>,
}

/// A group this node does not host but answers suspect queries for.
#[derive(Clone, Copy, Debug)]
struct Broken {
    highest_intact: u64,
    /// Its saved hard state is known to be at this term or later.
    term: u64,
}

/// What a round's ready left to do after the fsync.
struct PendingReady {
    group: GroupId,
    ready: raft::Ready,
}

/// A node hosting many raft groups, driven by [`Node::round`].
pub struct Node<D: Disk, T: Transport, A: Apply> {
    config: NodeConfig,
    disk: D,
    transport: T,
    inbox: mpsc::Receiver<Inbound>,
    apply: A,
    groups: BTreeMap<GroupId, Group<D>>,
    logger: slog::Logger,
    stats: NodeStats,
    /// SplitMix64 state for election timeouts (only with `NodeConfig::election_seed`).
    election_rng: Option<u64>,
    /// Indefinite outcomes resolved since the last `take_resolved_outcomes` (bounded).
    resolved: std::collections::VecDeque<ResolvedOutcome>,
    /// This node object's number for the simulator's checkers ([`crate::observe`]).
    incarnation: u64,
    /// Suspect queries to send at the end of the next round, per (voter, group).
    queries_due: Vec<(NodeId, GroupId)>,
    /// Answers to suspect queries, sent at the end of the round that stepped the query.
    answers_due: Vec<suspect::AnswerDue>,
    /// Groups whose log a leader's heartbeat showed behind what this replica acknowledged, to
    /// turn suspect in this round (module `suspect`); at most one entry per group.
    behind_due: BTreeMap<GroupId, suspect::Behind>,
    /// Groups not hosted here that answer suspect queries: those whose files refused to open
    /// (corruption, or any failure under [`Node::host_groups_on_disk`]). Each with the highest
    /// index of an intact entry in its log, and the term its saved hard state was last raised
    /// to (module `suspect`).
    broken: BTreeMap<GroupId, Broken>,
    /// Serves no client (see [`Node::host_groups_on_disk`]): hands leadership of every group
    /// to a caught-up follower as soon as it leads one. Counts ticks since then.
    passive: Option<u64>,
    /// Ticks spent low on disk (`NodeConfig::lead_room_bytes_min`); 0 while it is not.
    disk_low_ticks: u64,
}

/// Takes `bytes` from a disk budget (see [`NodeConfig::entry_budget`]); `false`, with nothing
/// taken, when they do not fit.
pub fn take_budget(budget: &AtomicI64, bytes: u64) -> bool {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    let before = budget.fetch_sub(bytes, Ordering::AcqRel);
    if before < bytes {
        budget.fetch_add(bytes, Ordering::AcqRel);
        return false;
    }
    true
}

/// The voters of `conf` (both halves of a joint configuration) other than `node`.
fn other_voters(conf: &ConfState, node: NodeId) -> Vec<NodeId> {
    let mut others: Vec<NodeId> = conf.voters.iter().chain(&conf.voters_outgoing).copied().filter(|&id| id != node).collect();
    others.sort_unstable();
    others.dedup();
    others
}

fn storage_error(group: GroupId) -> impl FnOnce(StorageFault) -> NodeError {
    move |source| NodeError::Storage { group, source }
}

fn raft_error(group: GroupId) -> impl FnOnce(raft::Error) -> NodeError {
    move |source| NodeError::Raft { group, source }
}

impl<D: Disk, T: Transport, A: Apply> Node<D, T, A> {
    pub fn new(config: NodeConfig, disk: D, transport: T, inbox: mpsc::Receiver<Inbound>, apply: A) -> Node<D, T, A> {
        assert_eq!(transport.node_id(), config.node_id, "transport and node disagree on the node id");
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let election_rng = config.election_seed.map(|seed| mix(seed) ^ mix(config.node_id).rotate_left(29));
        let resolved = std::collections::VecDeque::new();
        let stats = NodeStats::default();
        let incarnation = crate::observe::next_incarnation();
        Node {
            config,
            disk,
            transport,
            inbox,
            apply,
            groups: BTreeMap::new(),
            logger,
            stats,
            election_rng,
            resolved,
            incarnation,
            queries_due: Vec::new(),
            answers_due: Vec::new(),
            behind_due: BTreeMap::new(),
            broken: BTreeMap::new(),
            passive: None,
            disk_low_ticks: 0,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    pub fn apply_sink(&self) -> &A {
        &self.apply
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.config.node_id,
            election_tick: self.config.election_tick,
            heartbeat_tick: self.config.heartbeat_tick,
            applied,
            max_size_per_msg: RAFT_MESSAGE_BYTES_MAX,
            max_inflight_msgs: RAFT_INFLIGHT_MESSAGES_MAX,
            max_uncommitted_size: RAFT_UNCOMMITTED_BYTES_MAX,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        }
    }

    /// Starts hosting `group`. A new group starts with `voters` as its configuration (every
    /// replica must be created with the same list); an existing one reopens its saved state.
    /// `state_machine_applied` is the last index the state machine has (durably) applied: the
    /// committed entries above it are replayed from the log into [`Apply::apply`].
    pub async fn create_group(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        state_machine_applied: u64,
        now_ms: i64,
    ) -> Result<(), NodeError> {
        let log_config = self.config.log_config.clone();
        self.create_group_with(group, voters, state_machine_applied, now_ms, log_config).await
    }

    /// [`Node::create_group`] with this group's own log settings (segment size, retention).
    pub async fn create_group_with(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        state_machine_applied: u64,
        now_ms: i64,
        log_config: LogConfig,
    ) -> Result<(), NodeError> {
        if self.groups.contains_key(&group) {
            return Err(NodeError::GroupExists(group));
        }
        if self.groups.len() >= GROUPS_MAX {
            return Err(NodeError::TooManyGroups);
        }
        let mut initial = ConfState::default();
        initial.set_voters(voters.to_vec());
        let dir = self.config.data_dir.join(group.to_string());
        let mut log_config = log_config;
        if buggify::fires(0.3) {
            // F-B1: tiny segments (a roll every few entries), a sparse index and almost no cache,
            // so rolls, index lookups and reads from disk happen all the time.
            log_config.segment_bytes_max = buggify::pick(1024..64 * 1024);
            log_config.index_interval_bytes = buggify::pick(64..4096);
            log_config.cache_bytes_max = buggify::pick(0..64 * 1024) as usize;
        }
        let node = self.config.node_id;
        let store = match GroupStore::open(self.disk.clone(), &dir, log_config, &initial, now_ms).await {
            Ok(store) => store,
            Err(error) => {
                if let StorageFault::CommittedEntriesLost { cut: index, .. } = error {
                    observe::emit(|| observe::Event::RecoveryCut { node, group, index, suspect: false });
                }
                if error.is_corruption() {
                    // It still answers suspect queries for the group (module `suspect`).
                    self.quarantine(group).await;
                }
                return Err(storage_error(group)(error));
            }
        };
        self.broken.remove(&group);
        #[cfg(any(madsim, feature = "planted-bugs"))]
        let store = {
            let mut store = store;
            if self.config.planted_trust_recovery_cut && store.suspicion().is_some() {
                store.clear_suspicion().await.map_err(storage_error(group))?;
            }
            store
        };
        let suspicion = store.suspicion();
        if let Some(index) = store.recovery_cut() {
            let suspect = suspicion.is_some();
            observe::emit(|| observe::Event::RecoveryCut { node, group, index, suspect });
        }
        if let Some(suspicion) = suspicion {
            let (cut, bound, term) = (suspicion.cut, suspicion.bound, suspicion.term);
            tracing::warn!(group, cut, bound, term, "recovery cut entries this replica may have acknowledged: suspect until settled");
            observe::emit(|| observe::Event::Suspect { node, group, cut, bound, term });
        }
        let index = store.log().durable_index();
        observe::emit(|| observe::Event::Durable { node, group, index });
        let storage = store.storage();
        let hard_state = storage.hard_state();
        let applied = hard_state.commit.max(store.log().first_index() - 1);
        // A state machine behind the log start restarts from the log start (the snapshot's
        // state-machine blob is not kept yet), then replays up to raft's starting applied index.
        let log_start = store.log().first_index() - 1;
        if state_machine_applied < log_start {
            self.apply.restore(group, log_start, store.log().prev_term(), store.log().start_offset());
        }
        let mut low = (state_machine_applied + 1).max(store.log().first_index());
        while low <= applied {
            let entries = store.log().read(low, applied + 1, LOG_READ_BYTES_MAX).await.map_err(|e| storage_error(group)(e.into()))?;
            let committed: Vec<Committed> = entries.iter().map(committed_from_log).collect();
            low = committed.last().expect("read returns at least one entry").index + 1;
            self.apply.apply(group, &committed);
        }
        let raft_config = self.raft_config(applied);
        let raw = RawNode::new(&raft_config, storage, &self.logger).map_err(raft_error(group))?;
        let group_state = Group {
            raw,
            store,
            proposals: BTreeMap::new(),
            indefinite: BTreeMap::new(),
            state_machine_applied: state_machine_applied.max(applied),
            applied_durable_conf: applied,
            // The query term is the new term the store saved with the suspicion.
            suspect: suspicion.map(|suspicion| suspect::Suspect::new(suspicion, hard_state.term)),
        };
        self.groups.insert(group, group_state);
        self.redraw_election_timeouts();
        Ok(())
    }

    /// Answers suspect queries for `group` without hosting it (see `broken`). The owner retries
    /// a failed open now and then; the files are scanned once.
    async fn quarantine(&mut self, group: GroupId) {
        if self.broken.contains_key(&group) {
            return;
        }
        let log_dir = self.config.data_dir.join(group.to_string()).join(crate::storage::LOG_DIR);
        match odradek_log::highest_intact_index(&self.disk, &log_dir).await {
            Ok(highest_intact) => {
                self.broken.insert(group, Broken { highest_intact, term: 0 });
            }
            Err(scan) => tracing::warn!(group, %scan, "cannot scan a log for suspect queries"),
        }
    }

    /// For a node that cannot run its metadata group (its files are damaged): hosts every other
    /// group it has files for, from the configuration saved with it, so its intact copies still
    /// vote and reach a leader; answers the suspect queries of those that cannot open (module
    /// `suspect`). The node turns passive: it serves no client, so it hands the leadership of
    /// any group it wins to a caught-up follower at once. Returns (groups hosted, groups that
    /// only answer).
    pub async fn host_groups_on_disk(&mut self, now_ms: i64) -> Result<(usize, usize), NodeError> {
        self.passive = Some(0);
        let data_dir = self.config.data_dir.clone();
        let names = match self.disk.list_subdirs(&data_dir).await {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(storage_error(0)(StorageFault::Log(odradek_log::Error::Io { path: data_dir, source }))),
        };
        let groups: Vec<GroupId> = names
            .iter()
            .filter_map(|name| name.parse().ok())
            .filter(|g| !self.groups.contains_key(g) && !self.broken.contains_key(g))
            .collect();
        let mut hosted = 0;
        for group in groups {
            // Only a group whose configuration was saved: a new one would start without voters.
            let conf_path = data_dir.join(group.to_string()).join(crate::storage::CONF_STATE_FILE);
            let opened = match self.disk.open(&conf_path, odradek_log::OpenMode::Existing).await {
                Ok(_) => self.create_group(group, &[], 0, now_ms).await,
                Err(_) => Err(NodeError::GroupUnknown(group)),
            };
            match opened {
                Ok(()) => hosted += 1,
                Err(error) => {
                    tracing::warn!(group, %error, "cannot host a group from its files: answering its suspect queries only");
                    self.quarantine(group).await;
                }
            }
        }
        Ok((hosted, self.broken.len()))
    }

    /// Whether the node is low on disk (see `NodeConfig::lead_room_bytes_min`).
    fn disk_low(&self) -> bool {
        let Some(budget) = &self.config.entry_budget else { return false };
        let room_min = i64::try_from(self.config.lead_room_bytes_min.max(1)).unwrap_or(i64::MAX);
        budget.load(Ordering::Acquire) < room_min
    }

    /// A passive node (see [`Node::host_groups_on_disk`]) or one low on disk asks raft to hand
    /// every group it leads to a follower that holds its whole log, a different one each try (a
    /// suspect or low one drops the hand-over, and raft gives up on it after an election
    /// timeout).
    fn hand_off_leadership(&mut self) {
        let turn = if let Some(ticks) = self.passive.as_mut() {
            *ticks += 1;
            *ticks as usize
        } else if self.disk_low() {
            if self.disk_low_ticks == 0 {
                let leading = self.groups.values().filter(|state| state.raw.raft.state == StateRole::Leader).count();
                tracing::warn!(leading, "below the disk reserve: handing the leadership of every group away");
            }
            self.disk_low_ticks += 1;
            self.disk_low_ticks as usize
        } else {
            self.disk_low_ticks = 0;
            return;
        };
        let low = self.passive.is_none();
        for state in self.groups.values_mut() {
            let raft = &state.raw.raft;
            if raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
                continue;
            }
            let last = raft.raft_log.last_index();
            let mut caught_up: Vec<NodeId> =
                raft.prs().iter().filter(|&(&id, pr)| id != raft.id && pr.matched == last).map(|(&id, _)| id).collect();
            if caught_up.is_empty() {
                continue;
            }
            // Sorted: the tracker's iteration order is not deterministic.
            caught_up.sort_unstable();
            let to = caught_up[turn % caught_up.len()];
            state.raw.transfer_leader(to);
            self.stats.leaderships_handed_off_disk_low += u64::from(low);
        }
    }

    /// Raises the saved term of each quarantined group that owes an answer to the query's term
    /// (a later open then takes no entry from a leader of an older term, as the answer promises);
    /// an answer whose raise failed is dropped (the suspect asks again).
    async fn raise_quarantined_terms(&mut self) {
        let mut kept = Vec::new();
        for answer in std::mem::take(&mut self.answers_due) {
            let (group, query_term) = (answer.group, answer.query_term);
            if let Some(broken) = self.broken.get(&group).copied().filter(|broken| broken.term < query_term) {
                match self.raise_saved_term(group, query_term).await {
                    Ok(term) => {
                        self.broken.insert(group, Broken { term, ..broken });
                    }
                    // A hard state that cannot be read: the group never opens again as it is,
                    // so its answer holds without a raised term.
                    Err(odradek_log::Error::HardStateCorrupt { .. }) => {}
                    Err(error) => {
                        tracing::warn!(group, %error, "cannot raise a quarantined group's term: no answer");
                        continue;
                    }
                }
            }
            kept.push(answer);
        }
        self.answers_due = kept;
    }

    /// Saves `group`'s hard state at `term` (no vote) unless it is there already; returns the
    /// saved term.
    async fn raise_saved_term(&self, group: GroupId, term: u64) -> Result<u64, odradek_log::Error> {
        let path = self.config.data_dir.join(group.to_string()).join(crate::storage::HARD_STATE_FILE);
        let (mut file, saved) = odradek_log::HardStateFile::open(&self.disk, &path).await?;
        if saved.term < term {
            file.save(odradek_log::HardState { term, vote: 0, ..saved }).await?;
        }
        Ok(saved.term.max(term))
    }

    /// Takes the indefinite outcomes resolved since the last call, in the order this node
    /// learned them (see [`ResolvedOutcome`]).
    pub fn take_resolved_outcomes(&mut self) -> Vec<ResolvedOutcome> {
        self.resolved.drain(..).collect()
    }

    /// Stops hosting `group` (its files stay). Pending proposals fail: definitely if no ready
    /// carried them yet, indefinitely otherwise.
    pub fn remove_group(&mut self, group: GroupId) -> bool {
        let Some(state) = self.groups.remove(&group) else { return false };
        for (index, pending) in state.proposals {
            let error = if pending.emitted { ProposeError::StoppedAfterAppend { group, index } } else { ProposeError::Stopped(group) };
            let _ = pending.sender.send(Err(error));
        }
        true
    }

    /// Stops hosting `group` (as [`Node::remove_group`]) and deletes its files: for a group
    /// whose topic was deleted. Whatever is in the group's directory goes.
    pub async fn destroy_group(&mut self, group: GroupId) -> Result<bool, NodeError> {
        let hosted = self.remove_group(group);
        self.broken.remove(&group);
        let group_dir = self.config.data_dir.join(group.to_string());
        // The segment log's directory first, then the group's own files (hard state, conf state).
        for dir in [group_dir.join(crate::storage::LOG_DIR), group_dir] {
            let io_error =
                |source: std::io::Error| storage_error(group)(StorageFault::Log(odradek_log::Error::Io { path: dir.clone(), source }));
            let names = match self.disk.list_dir(&dir).await {
                Ok(names) => names,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(error)),
            };
            for name in names {
                self.disk.remove_file(&dir.join(name)).await.map_err(io_error)?;
            }
            self.disk.sync_dir(&dir).await.map_err(io_error)?;
        }
        Ok(hosted)
    }

    /// Advances every group's logical clock by one tick. A suspect group does not tick (so it
    /// never campaigns); it queries the other voters every `QUERY_INTERVAL_TICKS` instead.
    pub fn tick(&mut self) {
        let node = self.config.node_id;
        for (&group, state) in self.groups.iter_mut() {
            let Some(suspect) = state.suspect.as_mut() else {
                state.raw.tick();
                continue;
            };
            if suspect.ticks % suspect::QUERY_INTERVAL_TICKS == 0 {
                let others = other_voters(&state.store.storage().conf_state(), node);
                let unanswered = others.into_iter().filter(|id| !suspect.answers.contains_key(id));
                self.queries_due.extend(unanswered.map(|id| (id, group)));
            }
            suspect.ticks += 1;
        }
        self.hand_off_leadership();
        self.redraw_election_timeouts();
    }

    /// With `election_seed`: replaces raft's draw for every election timer that was just reset
    /// (elapsed 0) by one from the seeded generator. Runs after every tick and round, so the
    /// next tick always compares against our draw.
    fn redraw_election_timeouts(&mut self) {
        let Some(state) = self.election_rng.as_mut() else { return };
        let election_tick = self.config.election_tick;
        for group in self.groups.values_mut() {
            if group.raw.raft.election_elapsed == 0 {
                *state = state.wrapping_add(1);
                let spread = (mix(*state) % election_tick as u64) as usize;
                group.raw.raft.set_randomized_election_timeout(election_tick + spread);
            }
        }
    }

    /// Asks `group` to start an election now (tests, leader balancing).
    pub fn campaign(&mut self, group: GroupId) -> Result<(), NodeError> {
        let state = self.groups.get_mut(&group).ok_or(NodeError::GroupUnknown(group))?;
        if state.suspect.is_some() {
            return Err(NodeError::Suspect(group));
        }
        state.raw.campaign().map_err(raft_error(group))
    }

    /// Proposes `data` to `group`. Appended and sent in the next [`Node::round`]; resolves once
    /// committed.
    pub fn propose(&mut self, group: GroupId, data: Bytes, meta: EntryMeta) -> Proposal {
        self.propose_with(group, data, meta, Durability::Committed)
    }

    /// Proposes `data` to `group`, resolving as `durability` says.
    pub fn propose_with(&mut self, group: GroupId, data: Bytes, meta: EntryMeta, durability: Durability) -> Proposal {
        let Some(state) = self.groups.get_mut(&group) else { return Proposal::failed(ProposeError::GroupUnknown(group)) };
        if let EntryMeta::Data { record_count: 0, .. } = meta {
            return Proposal::failed(ProposeError::Invalid { group, reason: "a data entry holds at least one record".into() });
        }
        if data.len() > ENTRY_PAYLOAD_BYTES_MAX {
            let reason = format!("payload of {} bytes exceeds ENTRY_PAYLOAD_BYTES_MAX ({ENTRY_PAYLOAD_BYTES_MAX})", data.len());
            return Proposal::failed(ProposeError::Invalid { group, reason });
        }
        if state.raw.raft.state != StateRole::Leader {
            return Proposal::failed(ProposeError::NotLeader { group, leader: state.raw.raft.leader_id });
        }
        if state.proposals.len() >= PROPOSALS_PENDING_MAX {
            return Proposal::failed(ProposeError::Busy {
                group,
                reason: format!("PROPOSALS_PENDING_MAX ({PROPOSALS_PENDING_MAX}) pending"),
            });
        }
        if let Err(rejection) = self.apply.admit(group, state.raw.raft.term, &data, meta) {
            return Proposal::failed(ProposeError::Rejected { group, rejection });
        }
        if let Err(error) = state.raw.propose(meta.encode(), data.to_vec()) {
            self.apply.admit_undone(group);
            return Proposal::failed(ProposeError::Busy { group, reason: error.to_string() });
        }
        track_proposal(group, state, false, durability)
    }

    /// Proposes a membership change (joint consensus when it has several changes, or with
    /// `transition` set). Resolves when the change is committed; a change raft refuses at
    /// append (another one still pending, or an invalid transition) fails definitely, because
    /// raft commits an empty entry in its place.
    pub fn propose_conf_change(&mut self, group: GroupId, change: ConfChangeV2) -> Proposal {
        let Some(state) = self.groups.get_mut(&group) else { return Proposal::failed(ProposeError::GroupUnknown(group)) };
        if state.raw.raft.state != StateRole::Leader {
            return Proposal::failed(ProposeError::NotLeader { group, leader: state.raw.raft.leader_id });
        }
        if state.proposals.len() >= PROPOSALS_PENDING_MAX {
            let reason = format!("PROPOSALS_PENDING_MAX ({PROPOSALS_PENDING_MAX}) pending");
            return Proposal::failed(ProposeError::Busy { group, reason });
        }
        if let Err(error) = state.raw.propose_conf_change(Vec::new(), change) {
            return Proposal::failed(ProposeError::Busy { group, reason: error.to_string() });
        }
        track_proposal(group, state, true, Durability::Committed)
    }

    /// Asks the leader of `group` (this node) to hand leadership to `to`.
    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<(), NodeError> {
        let state = self.groups.get_mut(&group).ok_or(NodeError::GroupUnknown(group))?;
        state.raw.transfer_leader(to);
        Ok(())
    }

    /// The configuration `group` has applied.
    pub fn conf_state(&self, group: GroupId) -> Option<ConfState> {
        Some(self.groups.get(&group)?.store.storage().conf_state())
    }

    /// A snapshot of `group`'s raft state.
    pub fn status(&self, group: GroupId) -> Option<GroupStatus> {
        let state = self.groups.get(&group)?;
        let raft = &state.raw.raft;
        let mut progress = BTreeMap::new();
        if raft.state == StateRole::Leader {
            for (&id, pr) in raft.prs().iter() {
                progress.insert(id, (pr.matched, pr.next_idx));
            }
        }
        Some(GroupStatus {
            role: raft.state,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            progress,
            suspect: state.suspect.is_some(),
        })
    }

    /// Deletes `group`'s log segments that fall out of retention (`LogConfig`), never above
    /// the applied commit. The commit is persisted first (one hard-state fsync), since after
    /// the log start moves a restart must not find its commit below it. A follower that later
    /// needs deleted entries receives a metadata snapshot of the new log start.
    pub async fn enforce_retention(&mut self, group: GroupId, now_ms: i64) -> Result<odradek_log::RetentionReport, NodeError> {
        let state = self.groups.get_mut(&group).ok_or(NodeError::GroupUnknown(group))?;
        let raft_log = &state.raw.raft.raft_log;
        // Every conf change at or below `applied` is in the conf-state file already.
        let commit_bound = raft_log.committed.min(raft_log.applied);
        let saved = state.store.hard_state_saved();
        if commit_bound > saved.commit {
            // Term and vote as saved: a newer term or vote is saved by the next round first.
            let hard = odradek_log::HardState { commit: commit_bound, ..saved };
            state.store.save_hard_state(&crate::storage::raft_hard_state(hard)).await.map_err(storage_error(group))?;
            self.stats.hard_state_saves += 1;
        }
        let index_bound = state.store.hard_state_saved().commit + 1;
        state.store.enforce_retention(now_ms, index_bound).await.map_err(storage_error(group))
    }

    /// The persisted hard state and log bounds of `group` (for invariant checks).
    pub fn durable_state(&self, group: GroupId) -> Option<(RaftHardState, u64, u64)> {
        let state = self.groups.get(&group)?;
        let hard = crate::storage::raft_hard_state(state.store.hard_state_saved());
        Some((hard, state.store.log().first_index(), state.store.log().synced_index()))
    }

    /// Data entries of `group` holding offsets at or after `offset`, never above raft index
    /// `index_max` (the caller's commit bound), about `bytes_max` bytes (at least one entry
    /// when any is available). See [`odradek_log::SegmentLog::read_offsets`].
    pub async fn read_records(
        &self,
        group: GroupId,
        offset: u64,
        bytes_max: u64,
        index_max: u64,
    ) -> Result<Vec<odradek_log::Entry>, NodeError> {
        let state = self.groups.get(&group).ok_or(NodeError::GroupUnknown(group))?;
        state.store.log().read_offsets(offset, bytes_max, index_max).await.map_err(|e| storage_error(group)(e.into()))
    }

    /// `group`'s log bounds: (first offset kept, next offset, first raft index kept).
    pub fn log_bounds(&self, group: GroupId) -> Option<LogBounds> {
        let log = self.groups.get(&group)?.store.log();
        Some(LogBounds { start_offset: log.start_offset(), next_offset: log.next_offset(), first_index: log.first_index() })
    }

    /// The raft entries `low ..= high` of `group`'s log (for invariant checks).
    pub async fn read_log(&self, group: GroupId, low: u64, high: u64) -> Result<Vec<RaftEntry>, NodeError> {
        let state = self.groups.get(&group).ok_or(NodeError::GroupUnknown(group))?;
        let mut out = Vec::new();
        let mut next = low;
        while next <= high {
            let entries = state.store.read(next, high + 1, LOG_READ_BYTES_MAX).await.map_err(storage_error(group))?;
            next = entries.last().map_or(high + 1, |e| e.index + 1);
            out.extend(entries);
        }
        Ok(out)
    }

    /// One round of the driver loop (see the module documentation). An error is fatal: the
    /// node must stop and restart from what is durable.
    pub async fn round(&mut self, now_ms: i64) -> Result<(), NodeError> {
        self.stats.rounds += 1;
        self.step_inbound();
        self.open_behind_suspicions().await?;
        let mut outbox: BTreeMap<NodeId, Vec<(GroupId, Message)>> = BTreeMap::new();
        let mut readies = Vec::new();
        for (&group, state) in self.groups.iter_mut() {
            if !state.raw.has_ready() {
                continue;
            }
            let mut ready = state.raw.ready();
            // A new term or vote is made durable before any entry of this ready is written:
            // the log's writes may reach the disk even unsynced (a power loss can keep them),
            // and a log holding entries of a term its hard state never reached makes raft-rs
            // reject a pre-vote with term 0 and abort ("term should be set when sending
            // MsgRequestPreVoteResponse"), found by the random schedules.
            if let Some(hard) = ready.hs() {
                let saved = state.store.hard_state_saved();
                if hard.term != saved.term || hard.vote != saved.vote {
                    let mut durable = hard.clone();
                    durable.commit = hard.commit.min(state.applied_durable_conf).max(saved.commit);
                    state.store.save_hard_state(&durable).await.map_err(storage_error(group))?;
                    self.stats.hard_state_saves += 1;
                }
            }
            if let Some(soft) = ready.ss() {
                if soft.raft_state != StateRole::Leader {
                    lose_leadership(group, state);
                } else {
                    let (node, term) = (self.config.node_id, state.raw.raft.term);
                    observe::emit(|| observe::Event::Leader { node, group, term });
                }
            }
            state.proposals.values_mut().for_each(|pending| pending.emitted = true);
            if !ready.snapshot().is_empty() {
                install_snapshot(group, state, ready.snapshot(), &mut self.apply, now_ms).await?;
                let (node, incarnation, index) = (self.config.node_id, self.incarnation, ready.snapshot().get_metadata().index);
                observe::emit(|| observe::Event::Restored { node, incarnation, group, index });
                let index = state.store.log().durable_index();
                observe::emit(|| observe::Event::Durable { node, group, index });
                // The entries at these indices are unknown here now: they stay indefinite.
                let snapshot_index = ready.snapshot().get_metadata().index;
                state.indefinite.retain(|&(index, _), _| index > snapshot_index);
            }
            let entries = ready.take_entries();
            for entry in &entries {
                let (node, index, term) = (self.config.node_id, entry.index, entry.term);
                observe::emit(|| observe::Event::Appended { node, group, index, term, checksum: crc32fast::hash(&entry.data) });
            }
            self.stats.entries_appended += entries.len() as u64;
            state.store.append(&entries, now_ms).await.map_err(storage_error(group))?;
            // A conflicting suffix it truncated is no longer durable (R5, and R8's baseline).
            let (node, index) = (self.config.node_id, state.store.log().durable_index());
            observe::emit(|| observe::Event::Durable { node, group, index });
            queue_messages(&mut outbox, group, ready.take_messages());
            #[cfg(any(madsim, feature = "planted-bugs"))]
            if self.config.planted_send_before_persist {
                queue_messages(&mut outbox, group, ready.take_persisted_messages());
            }
            readies.push(PendingReady { group, ready });
        }
        #[cfg(any(madsim, feature = "planted-bugs"))]
        if self.config.planted_send_before_persist {
            for (to, messages) in std::mem::take(&mut outbox) {
                observe_sent(self.config.node_id, &self.groups, &messages);
                self.transport.send(to, messages);
            }
        }
        self.persist(&readies).await?;
        self.settle_suspicions().await?;
        for PendingReady { group, .. } in &readies {
            let state = self.groups.get_mut(group).expect("groups change only outside a round");
            resolve_leader_durable(*group, state);
        }
        for PendingReady { group, mut ready } in readies {
            let state = self.groups.get_mut(&group).expect("groups change only outside a round");
            queue_messages(&mut outbox, group, ready.take_persisted_messages());
            let committed = ready.take_committed_entries();
            self.stats.entries_committed += committed.len() as u64;
            apply_committed(group, state, &committed, &mut self.apply, &mut self.resolved).await?;
            observe_applied(self.config.node_id, self.incarnation, group, &committed);
            let mut light = state.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut hard = state.store.storage().hard_state();
                hard.commit = commit;
                state.store.set_hard_state(&hard);
            }
            queue_messages(&mut outbox, group, light.take_messages());
            let committed = light.take_committed_entries();
            self.stats.entries_committed += committed.len() as u64;
            apply_committed(group, state, &committed, &mut self.apply, &mut self.resolved).await?;
            observe_applied(self.config.node_id, self.incarnation, group, &committed);
            state.raw.advance_apply();
            state.store.storage().set_applied(state.raw.raft.raft_log.applied);
        }
        for state in self.groups.values_mut() {
            // Every conf change applied so far is in the conf-state file.
            state.applied_durable_conf = state.raw.raft.raft_log.applied;
        }
        self.serve_fetches().await?;
        self.redraw_election_timeouts();
        self.raise_quarantined_terms().await;
        self.queue_suspect_messages(&mut outbox);
        for (to, messages) in outbox {
            self.stats.messages_sent += messages.len() as u64;
            observe_sent(self.config.node_id, &self.groups, &messages);
            self.transport.send(to, messages);
        }
        Ok(())
    }

    fn step_inbound(&mut self) {
        for _ in 0..INBOUND_BATCHES_PER_ROUND_MAX {
            let Ok(batch) = self.inbox.try_recv() else { break };
            self.step_batch(batch);
        }
    }

    fn step_batch(&mut self, batch: Inbound) {
        let disk_low = self.disk_low();
        for (group, message) in batch.messages {
            let Some(state) = self.groups.get_mut(&group) else {
                if let (Some(suspect::Control::Query { term }), true) = (suspect::classify(&message), self.broken.contains_key(&group)) {
                    self.answers_due.push(suspect::AnswerDue { to: batch.from, group, query_term: term });
                }
                continue;
            };
            if message.to != self.config.node_id || message.from != batch.from {
                tracing::warn!(group, from = batch.from, "dropping a misaddressed raft message");
                continue;
            }
            match suspect::classify(&message) {
                Some(suspect::Control::Query { term }) => {
                    // Move to the query's term first (saved before the answer leaves, R6): from
                    // now on no leader of an older term can append here.
                    if term > state.raw.raft.term {
                        state.raw.raft.become_follower(term, raft::INVALID_ID);
                    }
                    self.answers_due.push(suspect::AnswerDue { to: batch.from, group, query_term: term });
                    continue;
                }
                Some(suspect::Control::Answer) => {
                    if let Some(suspect) = state.suspect.as_mut() {
                        suspect.note_answer(batch.from, &message);
                    }
                    continue;
                }
                None => {}
            }
            if let Some(behind) = suspect::behind(&message, state.raw.raft.term, state.raw.raft.raft_log.last_index()) {
                // raft-rs would abort on it; the replica turns suspect in this round instead.
                self.behind_due.entry(group).or_insert(behind);
                continue;
            }
            if let Some(suspect) = &state.suspect {
                let refused = match message.get_msg_type() {
                    MessageType::MsgTimeoutNow => true,
                    kind @ (MessageType::MsgRequestVote | MessageType::MsgRequestPreVote) => {
                        let others = other_voters(&state.store.storage().conf_state(), self.config.node_id);
                        let allowed = suspect.may_vote_for(&others, message.log_term, message.index);
                        if allowed && kind == MessageType::MsgRequestVote {
                            let (node, to, term) = (self.config.node_id, message.from, message.term);
                            let (last_term, last_index) = (message.log_term, message.index);
                            observe::emit(|| observe::Event::SuspectVote { node, group, to, term, last_term, last_index });
                        }
                        !allowed
                    }
                    _ => false,
                };
                if refused {
                    self.stats.votes_refused_suspect += 1;
                    continue;
                }
            }
            if message.msg_type == MessageType::MsgTimeoutNow && disk_low {
                self.stats.transfers_refused_disk_low += 1;
                tracing::debug!(group, from = message.from, "low on disk: dropping a leadership hand-over to this node");
                continue;
            }
            if message.msg_type == MessageType::MsgAppend && !message.entries.is_empty() {
                if let Some(budget) = &self.config.entry_budget {
                    let bytes: u64 = message.entries.iter().map(|e| (e.data.len() + odradek_log::ENTRY_HEADER_BYTES) as u64).sum();
                    if !take_budget(budget, bytes) {
                        self.stats.appends_refused_disk_low += 1;
                        tracing::debug!(group, bytes, "disk at its reserve: dropping an append from the leader");
                        continue;
                    }
                }
            }
            if let Err(error) = state.raw.step(message) {
                tracing::debug!(group, %error, "raft refused a message");
            }
        }
    }

    /// Group commit: one fsync per dirty log, then the hard states that must be durable.
    async fn persist(&mut self, readies: &[PendingReady]) -> Result<(), NodeError> {
        // F-B4: a slow fsync now and then (sends of this round wait for it: R6).
        buggify::maybe_delay(0.05, 20).await;
        // Every dirty log's fdatasync is issued at once, not one after another: on FsDisk they
        // run in parallel on the blocking pool and the file system batches their journal
        // commits, so a round with many dirty partitions costs about one fsync of latency.
        let dirty: Vec<GroupId> = self.groups.iter().filter(|(_, state)| state.store.is_dirty()).map(|(&group, _)| group).collect();
        let syncs = self
            .groups
            .iter_mut()
            .filter(|(group, _)| dirty.contains(group))
            .map(|(&group, state)| async move { state.store.sync().await.map_err(storage_error(group)) });
        let synced = futures::future::try_join_all(syncs).await?;
        self.stats.log_syncs += synced.len() as u64;
        for group in dirty {
            let (node, index) = (self.config.node_id, self.groups[&group].store.log().durable_index());
            observe::emit(|| observe::Event::Durable { node, group, index });
        }
        for PendingReady { group, ready } in readies {
            let Some(hard) = ready.hs() else { continue };
            let state = self.groups.get_mut(group).expect("groups change only outside a round");
            // Term and vote were saved before this round wrote any entry (see `round`).
            let saved = state.store.hard_state_saved();
            assert!(hard.term == saved.term && hard.vote == saved.vote, "group {group}: term/vote not saved before the append");
            state.store.set_hard_state(hard);
        }
        // Commit-only changes: saved once the durable commit lags by COMMIT_PERSIST_LAG_MAX.
        // Term and vote are as saved above (every change of them was just saved).
        for (&group, state) in self.groups.iter_mut() {
            let saved = state.store.hard_state_saved();
            let commit_bound = state.raw.raft.raft_log.committed.min(state.applied_durable_conf);
            if commit_bound >= saved.commit + COMMIT_PERSIST_LAG_MAX {
                let durable = odradek_log::HardState { commit: commit_bound, ..saved };
                state.store.save_hard_state(&crate::storage::raft_hard_state(durable)).await.map_err(storage_error(group))?;
                self.stats.hard_state_saves += 1;
            }
        }
        Ok(())
    }

    /// Turns suspect every group whose log a leader showed behind what this replica acknowledged
    /// (module `suspect`): the suspicion is saved with a term above that leader's before any
    /// message of this round leaves, so the leader counting the lost acknowledgements steps down
    /// when it hears from this replica, and no vote goes out until the suspicion is settled.
    async fn open_behind_suspicions(&mut self) -> Result<(), NodeError> {
        let node = self.config.node_id;
        for (group, behind) in std::mem::take(&mut self.behind_due) {
            let Some(state) = self.groups.get_mut(&group) else { continue };
            assert!(behind.commit > state.raw.raft.raft_log.last_index(), "group {group}: {behind:?}");
            let term = state.raw.raft.term.max(behind.leader_term) + 1;
            tracing::error!(
                group,
                leader = behind.leader,
                leader_term = behind.leader_term,
                acknowledged = behind.commit,
                last_index = behind.last_index,
                "this replica's log is behind what it acknowledged to the leader (was its data directory replaced \
                 by an older copy, or wiped?): suspect, so out of the group's votes until it has caught up"
            );
            state.store.open_suspicion(behind.suspicion(), term).await.map_err(storage_error(group))?;
            state.raw.raft.become_follower(term, raft::INVALID_ID);
            let suspicion = state.store.suspicion().expect("just saved");
            state.suspect = Some(suspect::Suspect::new(suspicion, term));
            self.stats.logs_found_behind += 1;
            let (cut, bound, term) = (suspicion.cut, suspicion.bound, suspicion.term);
            observe::emit(|| observe::Event::Suspect { node, group, cut, bound, term });
        }
        Ok(())
    }

    /// Clears, durably, every suspicion whose bound the group's durable log has reached (module
    /// `suspect`).
    async fn settle_suspicions(&mut self) -> Result<(), NodeError> {
        let node = self.config.node_id;
        for (&group, state) in self.groups.iter_mut() {
            let Some(suspect) = &state.suspect else { continue };
            let bound = suspect.bound(&other_voters(&state.store.storage().conf_state(), node));
            let durable = state.store.log().durable_index();
            if durable < bound {
                continue;
            }
            state.store.clear_suspicion().await.map_err(storage_error(group))?;
            tracing::info!(group, durable, bound, answers = ?suspect.answers, "suspicion settled: this replica votes again");
            state.suspect = None;
            self.stats.suspicions_cleared += 1;
            observe::emit(|| observe::Event::SuspectCleared { node, group, durable });
        }
        Ok(())
    }

    /// Queues the suspect queries due and the answers owed (their terms are saved by now).
    fn queue_suspect_messages(&mut self, outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>) {
        let node = self.config.node_id;
        for (to, group) in std::mem::take(&mut self.queries_due) {
            let Some(suspect) = self.groups.get(&group).and_then(|state| state.suspect.as_ref()) else { continue };
            outbox.entry(to).or_default().push((group, suspect::query(node, to, suspect)));
        }
        for due in std::mem::take(&mut self.answers_due) {
            let message = match (self.groups.get(&due.group), self.broken.get(&due.group)) {
                (Some(state), _) => {
                    let raft = &state.raw.raft;
                    suspect::answer(node, due.to, due.query_term, raft.term, raft.raft_log.last_index())
                }
                // A group that cannot open takes no entry from any leader: as good as the
                // query's term.
                (None, Some(broken)) => suspect::answer(node, due.to, due.query_term, due.query_term, broken.highest_intact),
                (None, None) => continue,
            };
            outbox.entry(due.to).or_default().push((due.group, message));
        }
    }

    async fn serve_fetches(&mut self) -> Result<(), NodeError> {
        for (&group, state) in self.groups.iter_mut() {
            for request in state.store.storage().take_fetch_requests() {
                let context = state.store.fetch(request).await.map_err(storage_error(group))?;
                state.raw.on_entries_fetched(context);
                self.stats.log_fetches += 1;
            }
        }
        Ok(())
    }
}

/// Registers the proposal raft just appended to its unstable log.
fn track_proposal<D: Disk>(group: GroupId, state: &mut Group<D>, conf_change: bool, durability: Durability) -> Proposal {
    let index = state.raw.raft.raft_log.last_index();
    let term = state.raw.raft.term;
    let (sender, receiver) = oneshot::channel();
    let pending = PendingProposal { term, emitted: false, conf_change, durability, sender };
    // An older proposal at this index lost its entry to a truncation while this node was
    // briefly not the leader (within one round, so no soft-state change failed it).
    if let Some(previous) = state.proposals.insert(index, pending) {
        assert!(previous.term < term, "two proposals at index {index} in term {term}");
        fail_indefinitely(group, state, index, previous);
    }
    Proposal { state: ProposalState::Waiting(receiver) }
}

/// Resolves the [`Durability::LeaderLog`] proposals whose entries this leader has synced.
fn resolve_leader_durable<D: Disk>(group: GroupId, state: &mut Group<D>) {
    let synced = state.store.log().synced_index();
    let storage = state.store.storage();
    let durable: Vec<u64> = state
        .proposals
        .range(..=synced)
        .filter(|(_, pending)| pending.durability == Durability::LeaderLog && pending.emitted)
        .map(|(&index, _)| index)
        .collect();
    for index in durable {
        let pending = state.proposals.remove(&index).expect("listed above");
        let Some(base_offset) = storage.base_offset(index) else {
            // Not in the cache any more (cannot happen for an unapplied entry): fall back to
            // an unknown outcome rather than a guess.
            let _ = pending.sender.send(Err(ProposeError::LeadershipLost { group, index, term: pending.term }));
            continue;
        };
        let _ = pending.sender.send(Ok(Appended { index, term: pending.term, base_offset }));
    }
}

/// Reports the messages that promise durability (R6): accepted appends with the log's durable
/// index, granted votes with the saved hard state.
fn observe_sent<D: Disk>(node: NodeId, groups: &BTreeMap<GroupId, Group<D>>, messages: &[(GroupId, Message)]) {
    for (group, message) in messages {
        let Some(state) = groups.get(group) else { continue };
        let (group, to) = (*group, message.to);
        match message.get_msg_type() {
            MessageType::MsgAppendResponse if !message.reject => {
                let (index, durable_index) = (message.index, state.store.log().durable_index());
                observe::emit(|| observe::Event::AppendAccepted { node, group, to, index, durable_index });
            }
            MessageType::MsgRequestVoteResponse if !message.reject => {
                let (term, saved) = (message.term, state.store.hard_state_saved());
                observe::emit(|| observe::Event::VoteGranted { node, group, to, term, saved_term: saved.term, saved_vote: saved.vote });
            }
            _ => {}
        }
    }
}

fn queue_messages(outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>, group: GroupId, messages: Vec<Message>) {
    for message in messages {
        outbox.entry(message.to).or_default().push((group, message));
    }
}

/// This node stopped leading `group`: every open proposal fails indefinitely.
fn lose_leadership<D: Disk>(group: GroupId, state: &mut Group<D>) {
    for (index, pending) in std::mem::take(&mut state.proposals) {
        fail_indefinitely(group, state, index, pending);
    }
}

/// Fails `pending` with `LeadershipLost` and remembers it, to resolve once `index` is applied.
fn fail_indefinitely<D: Disk>(group: GroupId, state: &mut Group<D>, index: u64, pending: PendingProposal) {
    let term = pending.term;
    let _ = pending.sender.send(Err(ProposeError::LeadershipLost { group, index, term }));
    if state.indefinite.len() >= INDEFINITE_PROPOSALS_MAX {
        state.indefinite.pop_first();
    }
    state.indefinite.insert((index, term), IndefiniteProposal { conf_change: pending.conf_change });
    assert!(state.indefinite.len() <= INDEFINITE_PROPOSALS_MAX);
}

/// The committed `entry` settles every indefinite proposal at its index.
fn resolve_indefinite<D: Disk>(
    group: GroupId,
    state: &mut Group<D>,
    entry: &RaftEntry,
    base_offset: u64,
    resolved: &mut std::collections::VecDeque<ResolvedOutcome>,
) {
    let index = entry.index;
    while let Some(((_, term), proposal)) = state.indefinite.range((index, 0)..=(index, u64::MAX)).next().map(|(&k, &v)| (k, v)) {
        state.indefinite.remove(&(index, term));
        let outcome = proposal_outcome(group, entry, base_offset, term, proposal.conf_change);
        if resolved.len() >= RESOLVED_OUTCOMES_MAX {
            let dropped = resolved.pop_front();
            tracing::warn!(group, ?dropped, "resolved proposal outcomes are not being taken; dropping the oldest");
        }
        resolved.push_back(ResolvedOutcome { group, index, term, outcome });
    }
}

/// The outcome of a proposal made at `entry.index` in `term`, now that `entry` is committed.
fn proposal_outcome(group: GroupId, entry: &RaftEntry, base_offset: u64, term: u64, conf_change: bool) -> Result<Appended, ProposeError> {
    let is_conf_change = entry.get_entry_type() != EntryType::EntryNormal;
    if term != entry.term {
        Err(ProposeError::Superseded { group, index: entry.index })
    } else if conf_change && !is_conf_change {
        let reason = "raft refused the conf change (another one pending, or invalid)".to_string();
        Err(ProposeError::Busy { group, reason })
    } else {
        Ok(Appended { index: entry.index, term: entry.term, base_offset })
    }
}

async fn install_snapshot<D: Disk, A: Apply>(
    group: GroupId,
    state: &mut Group<D>,
    snapshot: &raft::eraftpb::Snapshot,
    apply: &mut A,
    now_ms: i64,
) -> Result<(), NodeError> {
    let metadata = snapshot.get_metadata();
    let offset_bytes: [u8; 8] = snapshot.data.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| NodeError::Storage {
        group,
        source: StorageFault::InvalidEntry { index: metadata.index, detail: "snapshot without its start offset".into() },
    })?;
    let offset_next = u64::from_le_bytes(offset_bytes);
    state.store.reset(metadata.index, metadata.term, offset_next, now_ms).await.map_err(storage_error(group))?;
    state.store.save_conf_state(metadata.get_conf_state(), metadata.index).await.map_err(storage_error(group))?;
    // The log now starts above the old persisted commit: persist the snapshot index as commit
    // (it is committed), or a restart would find its commit below the log start.
    let mut hard = crate::storage::raft_hard_state(state.store.hard_state_saved());
    hard.commit = hard.commit.max(metadata.index);
    state.store.save_hard_state(&hard).await.map_err(storage_error(group))?;
    state.applied_durable_conf = state.applied_durable_conf.max(metadata.index);
    state.state_machine_applied = state.state_machine_applied.max(metadata.index);
    apply.restore(group, metadata.index, metadata.term, offset_next);
    Ok(())
}

/// Applies committed entries: conf changes to raft (saved durably), proposals resolved, and
/// everything above the state machine's applied index handed to it.
async fn apply_committed<D: Disk, A: Apply>(
    group: GroupId,
    state: &mut Group<D>,
    entries: &[RaftEntry],
    apply: &mut A,
    resolved: &mut std::collections::VecDeque<ResolvedOutcome>,
) -> Result<(), NodeError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut handed = Vec::with_capacity(entries.len());
    // Outcomes are sent after the state machine has the entries, so a proposer woken by its
    // outcome (possibly on another thread) finds them applied.
    let mut outcomes = Vec::new();
    let storage = state.store.storage();
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryNormal && entry.index > state.store.conf_state_index() {
            let change = decode_conf_change(entry).map_err(storage_error(group))?;
            let conf = state.raw.apply_conf_change(&change).map_err(raft_error(group))?;
            state.store.save_conf_state(&conf, entry.index).await.map_err(storage_error(group))?;
        }
        let base_offset = storage.base_offset(entry.index).expect("unapplied entries stay cached");
        if let Some(pending) = state.proposals.remove(&entry.index) {
            outcomes.push((pending.sender, proposal_outcome(group, entry, base_offset, pending.term, pending.conf_change)));
        }
        resolve_indefinite(group, state, entry, base_offset, resolved);
        if entry.index > state.state_machine_applied {
            let log_entry = crate::storage::to_log_entry(entry, base_offset).map_err(storage_error(group))?;
            handed.push(committed_from_log(&log_entry));
        }
    }
    // Proposals below the committed prefix can no longer commit (a superseded index).
    let last = entries.last().expect("not empty").index;
    while let Some(entry) = state.proposals.first_entry() {
        if *entry.key() > last {
            break;
        }
        let index = *entry.key();
        outcomes.push((entry.remove().sender, Err(ProposeError::Superseded { group, index })));
    }
    // Every index up to `last` was applied just now or before: nothing below it stays open.
    assert!(state.indefinite.first_key_value().is_none_or(|(&(index, _), _)| index > last), "an indefinite proposal outlived its index");
    if let Some(last) = handed.last() {
        state.state_machine_applied = last.index;
        apply.apply(group, &handed);
    }
    for (sender, outcome) in outcomes {
        let _ = sender.send(outcome);
    }
    Ok(())
}

fn observe_applied(node: NodeId, incarnation: u64, group: GroupId, entries: &[RaftEntry]) {
    for entry in entries {
        let (index, term) = (entry.index, entry.term);
        observe::emit(|| observe::Event::Applied { node, incarnation, group, index, term, checksum: crc32fast::hash(&entry.data) });
    }
}

fn committed_from_log(entry: &odradek_log::Entry) -> Committed {
    Committed {
        index: entry.index,
        term: entry.term,
        kind: entry.kind,
        base_offset: entry.base_offset,
        record_count: entry.record_count,
        max_timestamp: entry.max_timestamp,
        payload: entry.payload.clone(),
    }
}

/// SplitMix64 finalizer: spreads the election seed over nodes and groups.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
