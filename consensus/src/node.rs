//! The node driver: every raft group this node hosts (group 0 = metadata, one per partition),
//! driven by one loop that owns them all.
//!
//! The driver is a state machine the caller drives: [`Node::tick`] advances raft's logical
//! clock, [`Node::propose`] queues a proposal, and [`Node::round`] does one round of work. In
//! production [`Node::run`] (module `handle`) calls them from a `select!` over a tick interval,
//! the inbox and a command queue fed by [`NodeHandle`]s; a deterministic test calls them from a
//! seeded scheduler (see `tests/cluster/`).
//!
//! The rest of the driver, one concern per module: `errors` ([`NodeError`], [`ProposeError`]),
//! `group` (one hosted group, its lifecycle and accessors, the [`Apply`] interface),
//! `proposals` (proposal outcomes, definite and indefinite), `apply` (committed entries and
//! snapshots), `suspect` (protocol-aware recovery and quarantine), `handle` (the node as a task).
//!
//! One round:
//! 1. step the inbound batches waiting in the inbox (at most `INBOUND_BATCHES_PER_ROUND_MAX`);
//! 2. take a `Ready` from every group that has one and save a changed term or vote; send the
//!    messages raft lets leave at once: a leader's appends and heartbeats (`Ready::messages`,
//!    empty unless the group's replica leads), so followers write and fsync while the leader
//!    does and a commit waits for about one write and fsync, not two (issue 17: they leave
//!    before the leader's own write, not only before its fsync); then install each ready's
//!    snapshot if any and append its entries to the group's log (truncating a conflicting
//!    suffix);
//! 3. fsync every dirty log once (group commit), then save the hard states whose commit lags
//!    too far (see below);
//! 4. collect the remaining outbound messages (the persisted ones, and those of the
//!    `LightReady` after `advance`), apply committed entries, and `advance`;
//! 5. serve asynchronous log fetches raft asked for (`on_entries_fetched`);
//! 6. send them, one batch per destination node.
//!
//! Invariants kept here:
//! - R6 persist before send: no vote grant or append response leaves before the fsync of the
//!   round that produced it and the save of any term/vote it depends on. raft-rs puts every
//!   message of a replica that does not lead among `persisted_messages`, which leave in step 6,
//!   after step 3. A leader's own entries count toward a commit only after `advance` reports
//!   them persisted, so sending its appends early never commits what only followers hold
//!   durably without a quorum (a follower's durable copy counts; the leader's does not yet).
//! - The persisted commit index is lazily saved, never above the applied index at the end of
//!   the previous round: every conf change at or below it is in the conf-state file, so a
//!   restart rebuilds the configuration without replaying config entries (they may be gone to
//!   retention). It lags the applied index by less than `COMMIT_PERSIST_LAG_MAX` entries after
//!   each round, which bounds what a restart must load into the entry cache.
//! - A replica whose recovery cut entries it may have acknowledged (bit rot of the last entry
//!   looks like a torn write) is suspect: it never campaigns and votes only for a candidate
//!   that provably holds what it lost, until its log or the other voters' answers settle it
//!   (module `suspect`, CHECKLISTS R8 e).
//!
//! Election timeouts: with `NodeConfig::election_seed` the driver redraws every reset timeout
//! from its own seeded generator, so a seeded schedule replays exactly.
//!
//! Cost sketch: per round, one fdatasync per dirty log (all groups' entries of the round share
//! it) plus one hard-state fsync per group whose term or vote changed (elections only) or
//! whose commit moved `COMMIT_PERSIST_LAG_MAX` entries; one `send` per peer. CPU is raft's own
//! work plus one conversion per appended entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use odradek_log::{Disk, LogConfig, ENTRY_PAYLOAD_BYTES_MAX};
use odradek_seams::buggify;
use raft::eraftpb::{ConfChangeV2, Message, MessageType};
use raft::StateRole;
use tokio::sync::{mpsc, oneshot};

use crate::observe;
use crate::storage::EntryMeta;

mod apply;
mod errors;
mod group;
mod hand_over;
mod handle;
mod hibernate;
mod proposals;
mod readers;
mod rejoined;
mod suspect;
pub mod throttle;

pub use errors::{NodeError, ProposeError, Rejection};
pub use group::{Apply, Committed, GroupStatus, LogBounds, GROUPS_MAX, QUARANTINE_DIR, SET_ASIDE_DONE};
pub use hand_over::LeadRefusals;
pub use handle::{Command, NodeHandle, ProposalTicket, COMMANDS_PER_ROUND_MAX, COMMAND_QUEUE_MAX};
pub use hibernate::NODE_ALIVE_GROUP;
pub use proposals::{
    Appended, Durability, Proposal, ResolvedOutcome, INDEFINITE_PROPOSALS_MAX, PROPOSALS_PENDING_MAX, RESOLVED_OUTCOMES_MAX,
};
pub use readers::{LogReaders, ReadOffsets};

use crate::transport::{GroupId, Inbound, NodeId, Transport};
use apply::{apply_committed, install_snapshot};
use errors::{raft_error, storage_error};
use group::Group;
use proposals::ResolvedQueue;
use suspect::{other_voters, Quarantined};

/// Inbound batches stepped per round; the rest wait in the (bounded) inbox for the next one.
pub const INBOUND_BATCHES_PER_ROUND_MAX: usize = 1024;
/// A commit-only hard-state change is saved once raft's commit is this far past the saved one.
pub const COMMIT_PERSIST_LAG_MAX: u64 = 1024;
/// raft's `max_size_per_msg`: bytes of entries per append message.
pub const RAFT_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// raft's `max_inflight_msgs`: append messages in flight per follower.
pub const RAFT_INFLIGHT_MESSAGES_MAX: usize = 256;
/// raft's `max_uncommitted_size`: proposals beyond this many uncommitted bytes are refused.
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;

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
    /// Deliberately broken modes, all off unless a test turns one on.
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub planted: Planted,
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
    /// This node's data directory may have held replicas it no longer has: it is a new
    /// incarnation (wiped, replaced, or first used) and the node cannot tell a replica it lost
    /// from one that is new to its group. Then every group created here with an empty log opens
    /// suspect of its whole log (module `suspect`, [`suspect::WHOLE_LOG_LOST`]): it grants no
    /// vote and never campaigns until every other voter has told it its last index and its own
    /// log is durable up to the largest (CHECKLISTS R8 d: a wiped node never votes as its old
    /// identity). `false`: an empty log is a new replica (the consensus tests).
    pub empty_logs_suspect: bool,
    /// Per-stage timing of proposals and follower rounds (module [`crate::stages`]); `None`
    /// (the default): off, at the cost of one test per stage.
    pub stages: Option<Arc<crate::stages::StageClock>>,
    /// Bytes per second of entries this node, as a leader, sends to its groups' learners
    /// (replicas catching up before a reassignment promotes them), over all groups; appends
    /// beyond it wait in a bounded queue, in order, and their learner's in-flight window is
    /// capped (module `throttle`). `None`: unlimited.
    pub learner_catch_up_bytes_per_second: Option<u64>,
    /// Quiet groups stop ticking and heartbeating until they have work (module `hibernate`);
    /// every node of a cluster should run with the same setting. Off here (the consensus tests
    /// and the simulator's default schedules); the server turns it on by default.
    pub hibernate: bool,
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
            planted: Planted::default(),
            entry_budget: None,
            lead_room_bytes_min: 0,
            empty_logs_suspect: false,
            stages: None,
            learner_catch_up_bytes_per_second: None,
            hibernate: false,
        }
    }
}

/// Planted bugs of the driver (test builds only: the `planted-bugs` feature or the simulator),
/// one switch per bug, all off by default. A test turns one on to show its checks catch it.
#[cfg(any(madsim, feature = "planted-bugs"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// Send the messages that must wait for the round's fsync (vote grants, append responses)
    /// before it, with the leader's early ones, breaking R6.
    pub send_before_persist: bool,
    /// A replica whose recovery cut its log takes the cut for a torn write it never
    /// acknowledged and drops the suspicion at once, voting as before (breaks R8 e).
    pub trust_recovery_cut: bool,
    /// A suspect replica judges a candidate complete by its last term alone, never checking its
    /// last index against the suspicion's bound (breaks R8 e).
    pub suspect_vote_by_term_only: bool,
    /// Opening a group, a recovery cut is neither reported nor held suspect: the replica lost
    /// the damaged tail without knowing it, as if its log's recovery dropped entries silently
    /// (breaks R6 across a restart: what it reported durable is gone, with no recorded cut).
    pub silent_recovery_cut: bool,
    /// A sleeping leader answers a read barrier from its own commit index, as if it still held
    /// a lease, without waking or asking a quorum (module `hibernate`; breaks L12 a once it was
    /// deposed while asleep).
    pub hibernated_leader_reads_locally: bool,
    /// A leader drops the snapshot raft sends a follower that needs entries retention deleted
    /// (as if it sent the entries it no longer has): the follower never catches up (R12 b).
    pub snapshot_withheld: bool,
    /// Retention bounds what it deletes by the log's end instead of the persisted commit (and
    /// the applied index): segments holding entries not yet committed, or committed but not
    /// applied, can go (breaks R12 a).
    pub retention_past_commit: bool,
    /// The cached view of retention's candidates goes stale: a round that moves a group's log,
    /// commit or applied index does not file it for retention's next check, so a group checked
    /// once (when hosted) is never checked again unless its last check saw segments age out
    /// (breaks R12 c: retention falls behind its limits for good).
    pub retention_candidates_stale: bool,
    /// A leader forgets which followers said they lead not (module `hand_over`): balancing,
    /// transfers and a passive or draining node's hand-offs may pick a suspect replica or one
    /// on a quarantined node (breaks R13; the owner's own refusals still hold).
    pub hand_over_skip_dropped: bool,
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
    /// Progress entries a leader reset because their peer came back as a new incarnation of its
    /// data directory (module `rejoined`), one per group it led then.
    pub progress_reset_rejoined: u64,
    /// The learner catch-up throttle's counters (module `throttle`); zero without one.
    pub catch_up: throttle::CatchUpStats,
}

/// What a round's ready left to do after the fsync.
struct PendingReady {
    group: GroupId,
    ready: raft::Ready,
}

/// A node hosting many raft groups, driven by [`Node::round`].
/// Only `D` is bounded here: each `impl` block asks for what its module uses (the
/// suspect and quarantine code, for one, needs neither the transport nor the state machine).
pub struct Node<D: Disk, T, A> {
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
    resolved: ResolvedQueue,
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
    quarantined: BTreeMap<GroupId, Quarantined>,
    /// Serves no client (see [`Node::host_groups_on_disk`]): hands leadership of every group
    /// to a caught-up follower as soon as it leads one. Counts ticks since then.
    passive: Option<u64>,
    /// Ticks spent low on disk (`NodeConfig::lead_room_bytes_min`); 0 while it is not.
    disk_low_ticks: u64,
    /// Ticks since a graceful shutdown began ([`Node::drain`]); `None` before.
    draining: Option<u64>,
    /// Replicas the owner refuses leadership to (module `hand_over`).
    lead_refusals: LeadRefusals,
    /// The read-only views of the hosted groups' logs, shared with handles (module `readers`):
    /// one per group in `groups`.
    readers: LogReaders,
    /// With `NodeConfig::stages`: when an append with entries was first stepped per group since
    /// the group's last round that wrote entries (a follower's part of the trace).
    stages_stepped: BTreeMap<GroupId, tokio::time::Instant>,
    /// The learner catch-up throttle, when configured.
    catch_up_throttle: Option<throttle::CatchUp>,
    /// Read barriers waiting for their group's read state, by request context ([`Node::read_index`]).
    read_waiters: BTreeMap<u64, ReadWaiter>,
    /// The next read barrier's request context (see [`Node::read_index`]).
    read_context_next: u64,
    /// Node liveness and the control messages of hibernation (module `hibernate`).
    liveness: hibernate::Liveness,
    /// The awake groups and the sleeping ones by leader (module `hibernate`): ticks and rounds
    /// visit only the awake ones.
    wakefulness: hibernate::Wakefulness,
    /// The groups this replica leads, as of the last round's soft states ([`Node::leading`]).
    leading: BTreeSet<GroupId>,
    /// The groups whose retention may have something to delete ([`Node::retention_candidates`]):
    /// `unchecked`, those whose log or commit may have changed since their last check (or never
    /// checked); `timed`, those that had more than one segment and retention by time at their
    /// last check (their oldest segment may age out with nothing else changing).
    retention_unchecked: BTreeSet<GroupId>,
    retention_timed: BTreeSet<GroupId>,
    /// Each peer's data-directory incarnation, as its last inbound batch said (module `rejoined`).
    peer_incarnations: BTreeMap<NodeId, u64>,
}

/// A read barrier ([`Node::read_index`]) waiting for raft's read state.
struct ReadWaiter {
    group: GroupId,
    /// Ticks left before it gives up (a leader that has not committed in its term drops read
    /// requests silently; so does a follower that knows no leader).
    ticks_left: usize,
    reply: oneshot::Sender<Result<u64, NodeError>>,
}

/// Ticks a read barrier waits for its read state, in election timeouts: one lets a new leader
/// be elected and commit its first entry; a second, the heartbeat round that confirms it.
const READ_INDEX_ELECTION_TIMEOUTS: usize = 2;

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

impl<D: Disk, T: Transport, A: Apply> Node<D, T, A> {
    pub fn new(config: NodeConfig, disk: D, transport: T, inbox: mpsc::Receiver<Inbound>, apply: A) -> Node<D, T, A> {
        assert_eq!(transport.node_id(), config.node_id, "transport and node disagree on the node id");
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let election_rng = config.election_seed.map(|seed| mix(seed) ^ mix(config.node_id).rotate_left(29));
        let stats = NodeStats::default();
        let incarnation = crate::observe::incarnation_next();
        // A new node object is passive only once `host_groups_on_disk` makes it so.
        let node = config.node_id;
        observe::emit(|| observe::Event::Passive { node, passive: false });
        let catch_up_throttle = config.learner_catch_up_bytes_per_second.map(throttle::CatchUp::new);
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
            resolved: ResolvedQueue::default(),
            incarnation,
            queries_due: Vec::new(),
            answers_due: Vec::new(),
            behind_due: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            passive: None,
            disk_low_ticks: 0,
            draining: None,
            lead_refusals: LeadRefusals::default(),
            readers: LogReaders::default(),
            stages_stepped: BTreeMap::new(),
            catch_up_throttle,
            read_waiters: BTreeMap::new(),
            read_context_next: 0,
            liveness: hibernate::Liveness::default(),
            wakefulness: hibernate::Wakefulness::default(),
            leading: BTreeSet::new(),
            retention_unchecked: BTreeSet::new(),
            retention_timed: BTreeSet::new(),
            peer_incarnations: BTreeMap::new(),
        }
    }

    /// The hosted groups' log readers, for handles that read without the driver
    /// ([`NodeHandle::reading_from`]).
    pub fn readers(&self) -> LogReaders {
        self.readers.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn stats(&self) -> NodeStats {
        let mut stats = self.stats;
        if let Some(throttle) = &self.catch_up_throttle {
            stats.catch_up = throttle.stats();
        }
        stats
    }

    pub fn apply_sink(&self) -> &A {
        &self.apply
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    /// The groups this replica leads, as the last round's soft states told (a cached view for
    /// the owner's periodic chores, e.g. leader balancing: no walk over the groups).
    pub fn leading(&self) -> BTreeSet<GroupId> {
        self.leading.clone()
    }

    /// The groups whose retention may have something to delete now: those whose log, commit or
    /// applied index may have changed since their last [`Node::enforce_retention`] (or never
    /// checked), and those whose last check found more than one segment under retention by
    /// time. Retention deletes nothing from any other group: its log and bounds are as at its
    /// last check, which deleted all it could, and with one segment, or no limit by time,
    /// nothing ages out (`SegmentLog::enforce_retention` never deletes the last segment).
    pub fn retention_candidates(&self) -> BTreeSet<GroupId> {
        self.retention_unchecked.union(&self.retention_timed).copied().collect()
    }

    /// How many of `group`'s segments retention would delete at `now_ms` under the bound it
    /// keeps by itself (below the commit and applied indexes): zero once the owner's periodic
    /// [`Node::enforce_retention`] has caught up. The simulator's R12 c asks it after a run
    /// settles (retention keeps up with its limits: a stale [`Node::retention_candidates`]
    /// would leave segments overdue for good).
    pub fn retention_overdue(&self, group: GroupId, now_ms: i64) -> Result<usize, NodeError> {
        let state = self.groups.get(&group).ok_or(NodeError::GroupUnknown(group))?;
        let raft_log = &state.raw.raft.raft_log;
        let index_bound = raft_log.committed.min(raft_log.applied) + 1;
        Ok(state.store.log().retention_due(now_ms, index_bound))
    }

    /// Notes a retention check of `group` just done (see [`Node::retention_candidates`]).
    fn retention_checked(&mut self, group: GroupId) {
        let Some(state) = self.groups.get(&group) else { return };
        let log = state.store.log();
        self.retention_unchecked.remove(&group);
        if log.segment_count() > 1 && log.config().retention_ms.is_some() {
            self.retention_timed.insert(group);
        } else {
            self.retention_timed.remove(&group);
        }
    }

    /// Files a group just hosted: awake, and unchecked by retention.
    fn note_hosted(&mut self, group: GroupId) {
        self.wakefulness.hosted(group);
        self.retention_unchecked.insert(group);
    }

    /// Forgets a group no longer hosted.
    fn note_unhosted(&mut self, group: GroupId, peers: &[NodeId]) {
        self.forget_hibernation(group, peers);
        self.leading.remove(&group);
        self.retention_unchecked.remove(&group);
        self.retention_timed.remove(&group);
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

    /// Advances every group's logical clock by one tick. A suspect group does not tick (so it
    /// never campaigns); it queries the other voters every `QUERY_INTERVAL_TICKS` instead.
    pub fn tick(&mut self) {
        let node = self.config.node_id;
        let handing_off = self.passive.is_some() || self.draining.is_some() || self.disk_low();
        self.tick_hibernation(handing_off);
        for &group in self.wakefulness.awake() {
            let state = self.groups.get_mut(&group).expect("awake groups are hosted");
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
        self.expire_read_waiters();
        self.hand_off_leadership();
        self.redraw_election_timeouts();
    }

    /// A read barrier (Raft thesis 6.4, ReadIndex; raft-rs's safe read-only mode): `reply` gets
    /// the commit index of a leader that, after the request was made, heard from a quorum that
    /// it still leads. Once this replica has applied up to it, what it reports of its state
    /// includes every entry committed before the request was made, so a high watermark read
    /// then is no older than any acknowledgement completed before (L12 a). From a follower, the
    /// request goes to the leader and back. Fails with [`NodeError::ReadIndexTimedOut`] when no
    /// leader confirms it within [`READ_INDEX_ELECTION_TIMEOUTS`] (no leader, a leader that has
    /// not committed in its term yet, a partition): the caller may retry.
    ///
    /// Request contexts start at the clock's milliseconds times 2^20 when a node object first
    /// asks, so an answer to a request of an earlier run of this node (a message still in
    /// flight) never matches a request of this one.
    pub fn read_index(&mut self, group: GroupId, now_ms: i64, reply: oneshot::Sender<Result<u64, NodeError>>) {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        if self.config.planted.hibernated_leader_reads_locally && self.is_asleep(group) {
            let raft = &self.groups[&group].raw.raft;
            if raft.state == StateRole::Leader {
                let _ = reply.send(Ok(raft.raft_log.committed));
                return;
            }
        }
        self.wake(group, observe::WakeReason::Request);
        let Some(state) = self.groups.get_mut(&group) else {
            let _ = reply.send(Err(NodeError::GroupUnknown(group)));
            return;
        };
        self.read_context_next = self.read_context_next.max(u64::try_from(now_ms).unwrap_or(0) << 20);
        let context = self.read_context_next;
        self.read_context_next += 1;
        state.raw.read_index(context.to_be_bytes().to_vec());
        let ticks_left = READ_INDEX_ELECTION_TIMEOUTS * 2 * self.config.election_tick;
        self.read_waiters.insert(context, ReadWaiter { group, ticks_left, reply });
    }

    fn expire_read_waiters(&mut self) {
        let mut expired = Vec::new();
        for (&context, waiter) in self.read_waiters.iter_mut() {
            waiter.ticks_left = waiter.ticks_left.saturating_sub(1);
            if waiter.ticks_left == 0 {
                expired.push(context);
            }
        }
        for context in expired {
            let waiter = self.read_waiters.remove(&context).expect("just found");
            let _ = waiter.reply.send(Err(NodeError::ReadIndexTimedOut(waiter.group)));
        }
    }

    /// With `election_seed`: replaces raft's draw for every election timer that was just reset
    /// (elapsed 0) by one from the seeded generator. Runs after every tick and round, so the
    /// next tick always compares against our draw.
    fn redraw_election_timeouts(&mut self) {
        let Some(state) = self.election_rng.as_mut() else { return };
        let election_tick = self.config.election_tick;
        for id in self.wakefulness.awake() {
            let group = self.groups.get_mut(id).expect("awake groups are hosted");
            if group.raw.raft.election_elapsed == 0 {
                *state = state.wrapping_add(1);
                let spread = (mix(*state) % election_tick as u64) as usize;
                group.raw.raft.set_randomized_election_timeout(election_tick + spread);
            }
        }
    }

    /// Asks `group` to start an election now (tests, leader balancing). A replica that is no
    /// voter of its configuration (a learner, or one a move removed) does not campaign: raft-rs
    /// would run the election, and votes from the voters could make it leader of a
    /// configuration without itself, where raft-rs panics (found by the simulator under
    /// `--membership`, crash seed 131: a replica a move had removed restarted while the
    /// metadata still named it the preferred leader).
    pub fn campaign(&mut self, group: GroupId) -> Result<(), NodeError> {
        self.wake(group, observe::WakeReason::Request);
        let state = self.groups.get_mut(&group).ok_or(NodeError::GroupUnknown(group))?;
        if state.suspect.is_some() {
            return Err(NodeError::Suspect(group));
        }
        if !state.raw.raft.promotable() {
            tracing::info!(group, "not a voter of the group's configuration: no campaign");
            return Ok(());
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
        self.wake(group, observe::WakeReason::Request);
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
        if state.proposals.is_full() {
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
        let proposal = state.track_proposal(false, durability);
        if let Some(stages) = &self.config.stages {
            stages.handed(group, state.raw.raft.raft_log.last_index());
        }
        proposal
    }

    /// Proposes a membership change (joint consensus when it has several changes, or with
    /// `transition` set). Resolves when the change is committed; a change raft refuses at
    /// append (another one still pending, or an invalid transition) fails definitely, because
    /// raft commits an empty entry in its place.
    pub fn propose_conf_change(&mut self, group: GroupId, change: ConfChangeV2) -> Proposal {
        self.wake(group, observe::WakeReason::Request);
        let Some(state) = self.groups.get_mut(&group) else { return Proposal::failed(ProposeError::GroupUnknown(group)) };
        if state.raw.raft.state != StateRole::Leader {
            return Proposal::failed(ProposeError::NotLeader { group, leader: state.raw.raft.leader_id });
        }
        if state.proposals.is_full() {
            let reason = format!("PROPOSALS_PENDING_MAX ({PROPOSALS_PENDING_MAX}) pending");
            return Proposal::failed(ProposeError::Busy { group, reason });
        }
        if let Err(error) = state.raw.propose_conf_change(Vec::new(), change) {
            return Proposal::failed(ProposeError::Busy { group, reason: error.to_string() });
        }
        state.track_proposal(true, Durability::Committed)
    }

    /// Asks the leader of `group` (this node) to hand leadership to `to`, for `cause`; refused
    /// when `to` must not lead (module `hand_over`: suspect, quarantined, draining, low on disk,
    /// or refused by the owner).
    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId, cause: observe::HandOverCause) -> Result<(), NodeError> {
        if !self.groups.contains_key(&group) {
            return Err(NodeError::GroupUnknown(group));
        }
        self.wake(group, observe::WakeReason::Request);
        self.hand_over(group, to, cause)
    }

    /// Takes the indefinite outcomes resolved since the last call, in the order this node
    /// learned them (see [`ResolvedOutcome`]).
    pub fn take_resolved_outcomes(&mut self) -> Vec<ResolvedOutcome> {
        self.resolved.take()
    }

    /// One round of the driver loop (see the module documentation). An error is fatal: the
    /// node must stop and restart from what is durable.
    pub async fn round(&mut self, now_ms: i64) -> Result<(), NodeError> {
        self.stats.rounds += 1;
        self.cap_learner_windows();
        self.step_inbound();
        self.open_behind_suspicions().await?;
        // `early`: messages raft lets leave before this round's fsync; `outbox`: the rest.
        let mut early: BTreeMap<NodeId, Vec<(GroupId, Message)>> = BTreeMap::new();
        let mut outbox: BTreeMap<NodeId, Vec<(GroupId, Message)>> = BTreeMap::new();
        let mut readies = Vec::new();
        // With stage timing on: the entries each group wrote this round, and when.
        let stages = self.config.stages.clone();
        let mut written: Vec<(GroupId, u64, u64, tokio::time::Instant)> = Vec::new();
        for &group in self.wakefulness.awake() {
            let state = self.groups.get_mut(&group).expect("awake groups are hosted");
            if !state.raw.has_ready() {
                continue;
            }
            // Its log, commit or applied index may move this round: retention checks it again.
            #[cfg(any(madsim, feature = "planted-bugs"))]
            let stale = self.config.planted.retention_candidates_stale;
            #[cfg(not(any(madsim, feature = "planted-bugs")))]
            let stale = false;
            if !stale {
                self.retention_unchecked.insert(group);
            }
            let mut ready = state.raw.ready();
            for read in ready.take_read_states() {
                let context = <[u8; 8]>::try_from(read.request_ctx.as_slice()).map(u64::from_be_bytes);
                let Some(waiter) = context.ok().and_then(|context| self.read_waiters.remove(&context)) else {
                    continue; // given up already, or asked by an earlier run of this node
                };
                debug_assert_eq!(waiter.group, group, "a read state answers the group that asked");
                let _ = waiter.reply.send(Ok(read.index));
            }
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
                    self.leading.remove(&group);
                    state.lose_leadership();
                } else {
                    self.leading.insert(group);
                    let (node, term) = (self.config.node_id, state.raw.raft.term);
                    observe::emit(|| observe::Event::Leader { node, group, term });
                }
            }
            state.proposals.mark_emitted();
            // A leader's messages (appends, heartbeats) may leave before it writes or fsyncs
            // its own entries (Raft thesis 10.2.1): its own entries count toward a commit only
            // once persisted (raft-rs learns that from `advance`), so the followers write while
            // it writes. Its term and vote are durable by now (above), as every message needs.
            queue_messages(&mut early, group, ready.take_messages());
            #[cfg(any(madsim, feature = "planted-bugs"))]
            if self.config.planted.send_before_persist {
                queue_messages(&mut early, group, ready.take_persisted_messages());
            }
            readies.push(PendingReady { group, ready });
        }
        self.throttle_catch_up(&mut early, now_ms);
        #[cfg(any(madsim, feature = "planted-bugs"))]
        self.withhold_snapshots(&mut early);
        for (to, mut messages) in early {
            self.mark_leads_not(&mut messages);
            self.stats.messages_sent += messages.len() as u64;
            observe_sent(self.config.node_id, &self.groups, &messages);
            let snapshots = snapshots_in(&messages);
            self.transport.send(to, messages);
            self.report_snapshots_sent(to, &snapshots);
        }
        let sent_at = tokio::time::Instant::now();
        // Then every ready's snapshot and entries go to the logs.
        for PendingReady { group, ready } in readies.iter_mut() {
            let group = *group;
            let state = self.groups.get_mut(&group).expect("groups change only outside a round");
            if !ready.snapshot().is_empty() {
                // Installing replaces the log: whatever it held past the snapshot may be gone
                // before the install returns (a crash or failed fsync part-way), so the checker
                // hears the lower durable index first (R6 across restarts).
                let index = state.store.log().durable_index().min(ready.snapshot().get_metadata().index);
                observe::emit(|| observe::Event::Durable { node: self.config.node_id, group, index });
                let offset_next = install_snapshot(group, state, ready.snapshot(), &mut self.apply, now_ms).await?;
                let (node, incarnation, index) = (self.config.node_id, self.incarnation, ready.snapshot().get_metadata().index);
                observe::emit(|| observe::Event::Restored { node, incarnation, group, index, offset_next });
                let conf = observe::Conf::of(ready.snapshot().get_metadata().get_conf_state());
                observe::emit(|| observe::Event::ConfApplied {
                    node,
                    incarnation,
                    group,
                    index,
                    conf,
                    source: observe::ConfSource::Restored,
                });
                let index = state.store.log().durable_index();
                observe::emit(|| observe::Event::Durable { node, group, index });
                // The entries at these indices are unknown here now: they stay indefinite.
                state.proposals.snapshot_installed(ready.snapshot().get_metadata().index);
            }
            let entries = ready.take_entries();
            for entry in &entries {
                let (node, index, term) = (self.config.node_id, entry.index, entry.term);
                observe::emit(|| observe::Event::Appended { node, group, index, term, checksum: observe::entry_checksum(entry) });
            }
            self.stats.entries_appended += entries.len() as u64;
            if let Some(first) = entries.first().filter(|first| first.index <= state.store.log().last_index()) {
                // A conflicting suffix goes durably before `append` returns, and a crash or
                // failed fsync after the truncation returns no further: the checker hears the
                // lower durable index before the log drops it (R6 across restarts).
                let index = state.store.log().durable_index().min(first.index - 1);
                observe::emit(|| observe::Event::Durable { node: self.config.node_id, group, index });
            }
            state.store.append(&entries, now_ms).await.map_err(storage_error(group))?;
            if let (Some(stages), Some(first), Some(last)) = (&stages, entries.first(), entries.last()) {
                stages.stamp_at(group, first.index, last.index, sent_at, |s| &mut s.sent);
                stages.stamp(group, first.index, last.index, |s| &mut s.written);
                written.push((group, first.index, last.index, tokio::time::Instant::now()));
            }
            // A conflicting suffix it truncated is no longer durable (R5, and R8's baseline).
            let (node, index) = (self.config.node_id, state.store.log().durable_index());
            observe::emit(|| observe::Event::Durable { node, group, index });
        }
        self.persist(&readies).await?;
        let synced_at = tokio::time::Instant::now();
        if let Some(stages) = &stages {
            written.iter().for_each(|&(group, first, last, _)| stages.stamp(group, first, last, |s| &mut s.synced));
        }
        self.settle_suspicions().await?;
        for PendingReady { group, .. } in &readies {
            let state = self.groups.get_mut(group).expect("groups change only outside a round");
            state.resolve_leader_durable();
        }
        for PendingReady { group, mut ready } in readies {
            let state = self.groups.get_mut(&group).expect("groups change only outside a round");
            queue_messages(&mut outbox, group, ready.take_persisted_messages());
            let committed = ready.take_committed_entries();
            self.stats.entries_committed += committed.len() as u64;
            let applier = (self.config.node_id, self.incarnation);
            stamp_committed(&stages, group, &committed, |s| &mut s.committed);
            apply_committed(applier, group, state, &committed, &mut self.apply, &mut self.resolved).await?;
            stamp_committed(&stages, group, &committed, |s| &mut s.applied);
            let mut light = state.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut hard = state.store.storage().hard_state();
                hard.commit = commit;
                state.store.set_hard_state(&hard);
            }
            queue_messages(&mut outbox, group, light.take_messages());
            let committed = light.take_committed_entries();
            self.stats.entries_committed += committed.len() as u64;
            stamp_committed(&stages, group, &committed, |s| &mut s.committed);
            apply_committed(applier, group, state, &committed, &mut self.apply, &mut self.resolved).await?;
            stamp_committed(&stages, group, &committed, |s| &mut s.applied);
            state.raw.advance_apply();
            state.store.storage().set_applied(state.raw.raft.raft_log.applied);
        }
        for &group in self.wakefulness.awake() {
            let state = self.groups.get_mut(&group).expect("awake groups are hosted");
            // Every conf change applied so far is in the conf-state file.
            state.applied_durable_conf = state.raw.raft.raft_log.applied;
            // R6 rests on this: whatever the round appended is synced before anything leaves.
            assert!(!state.store.is_dirty(), "group {group}: unsynced entries at the end of a round");
            let commit = state.store.hard_state_saved().commit;
            assert!(commit <= state.applied_durable_conf, "group {group}: commit {commit} persisted above the applied index");
        }
        assert_eq!(self.readers.len(), self.groups.len(), "one log reader per hosted group");
        self.serve_fetches().await?;
        self.redraw_election_timeouts();
        self.raise_quarantined_terms().await;
        self.queue_suspect_messages(&mut outbox);
        self.settle_hibernation_requests();
        self.queue_hibernation_messages(&mut outbox);
        self.throttle_catch_up(&mut outbox, now_ms);
        #[cfg(any(madsim, feature = "planted-bugs"))]
        self.withhold_snapshots(&mut outbox);
        for (to, mut messages) in outbox {
            self.mark_leads_not(&mut messages);
            self.stats.messages_sent += messages.len() as u64;
            observe_sent(self.config.node_id, &self.groups, &messages);
            let snapshots = snapshots_in(&messages);
            self.transport.send(to, messages);
            self.report_snapshots_sent(to, &snapshots);
        }
        if let Some(stages) = &stages {
            for (group, _, last, written_at) in written {
                if let Some(stepped) = self.stages_stepped.remove(&group) {
                    stages.follower_round(group, last, stepped, written_at, synced_at);
                }
            }
            // An append stepped but not written this round was refused or already held.
            self.stages_stepped.clear();
        }
        Ok(())
    }

    /// Tells raft each snapshot to `to` left (the groups in `groups`). raft-rs holds a follower
    /// it sent a snapshot to in its Snapshot state, sending it nothing else, until the
    /// follower's answer shows the snapshot arrived or the application reports it: a snapshot
    /// lost on the way (the follower restarted, a message dropped) left the follower behind
    /// for as long as the leader led (found by the simulator's `--retention`, swarm seed 80:
    /// R7, R12 b). Reported as finished once handed to the transport, the follower goes back
    /// to probing: if the snapshot never arrived, the probe is refused and a new one is sent.
    fn report_snapshots_sent(&mut self, to: NodeId, groups: &[GroupId]) {
        for group in groups {
            if let Some(state) = self.groups.get_mut(group) {
                state.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
        }
    }

    /// Holds back the appends to learners beyond the catch-up budget, and releases those the
    /// budget now admits (module `throttle`); nothing when no throttle is configured.
    fn throttle_catch_up(&mut self, outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>, now_ms: i64) {
        let Some(throttle) = self.catch_up_throttle.as_mut() else { return };
        let groups = &self.groups;
        throttle.pass(now_ms, outbox, |group, to, message| {
            let Some(state) = groups.get(&group) else { return throttle::Destination::Stale };
            let raft = &state.raw.raft;
            if raft.state != StateRole::Leader || raft.term != message.term {
                return throttle::Destination::Stale;
            }
            let conf = raft.prs().conf();
            if conf.learners().contains(&to) {
                throttle::Destination::Learner
            } else if conf.voters().contains(to) {
                throttle::Destination::Other
            } else {
                throttle::Destination::Stale
            }
        });
    }

    /// With a throttle: caps the in-flight window of every learner of the groups this node
    /// leads at `LEARNER_INFLIGHT_MESSAGES_MAX` appends, and gives every voter (a learner
    /// promoted since, among them) raft's full window back. Runs before anything is stepped,
    /// so raft never generates more appends for a learner than the throttle's queue may hold
    /// (module `throttle`). A progress raft creates for a new learner starts in Probe state
    /// (one append at a time) and is capped before the answer to its probe is stepped.
    fn cap_learner_windows(&mut self) {
        if self.catch_up_throttle.is_none() {
            return;
        }
        for group in &self.leading {
            let Some(state) = self.groups.get_mut(group) else { continue };
            if state.raw.raft.state != StateRole::Leader {
                continue;
            }
            let learners: Vec<NodeId> = state.raw.raft.prs().conf().learners().iter().copied().collect();
            for (id, progress) in state.raw.raft.mut_prs().iter_mut() {
                let window = match learners.contains(id) {
                    true => throttle::LEARNER_INFLIGHT_MESSAGES_MAX,
                    false => RAFT_INFLIGHT_MESSAGES_MAX,
                };
                progress.ins.set_cap(window);
            }
        }
    }

    /// The planted `snapshot_withheld`: drops every snapshot message (raft keeps the follower
    /// waiting for it, and a new leader's snapshot is dropped again).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    fn withhold_snapshots(&self, outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>) {
        if self.config.planted.snapshot_withheld {
            for messages in outbox.values_mut() {
                messages.retain(|(_, message)| message.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot);
            }
        }
    }

    fn step_inbound(&mut self) {
        for _ in 0..INBOUND_BATCHES_PER_ROUND_MAX {
            let Ok(batch) = self.inbox.try_recv() else { break };
            self.step_batch(batch);
        }
    }

    fn step_batch(&mut self, batch: Inbound) {
        let disk_low = self.disk_low();
        self.heard_from(batch.from);
        self.note_incarnation(batch.from, batch.incarnation);
        for (group, message) in batch.messages {
            if group == NODE_ALIVE_GROUP {
                continue; // an alive message: hearing it was all (module `hibernate`)
            }
            if !self.groups.contains_key(&group) {
                self.answer_for_quarantined(batch.from, group, &message);
                continue;
            }
            if message.to != self.config.node_id || message.from != batch.from {
                tracing::warn!(group, from = batch.from, "dropping a misaddressed raft message");
                continue;
            }
            if self.screen_for_hibernation(batch.from, group, &message) {
                continue;
            }
            if self.screen_behind(group, &message) || self.screen_for_suspect(batch.from, group, &message) {
                continue;
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
            if let Some(stages) = &self.config.stages {
                match message.msg_type {
                    MessageType::MsgAppend if !message.entries.is_empty() => {
                        self.stages_stepped.entry(group).or_insert_with(tokio::time::Instant::now);
                    }
                    MessageType::MsgAppendResponse if !message.reject => stages.stamp(group, 0, message.index, |s| &mut s.acked),
                    _ => {}
                }
            }
            self.note_leads_not(group, &message);
            let state = self.groups.get_mut(&group).expect("hosted: checked above");
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
        // Only awake groups write (a sleeping one wakes before raft steps anything for it).
        let dirty: Vec<GroupId> = self.wakefulness.awake().copied().filter(|group| self.groups[group].store.is_dirty()).collect();
        // Ascending, as `groups` is: the walk below reads the keys only, not the groups.
        let dirty_set: BTreeSet<GroupId> = dirty.iter().copied().collect();
        let syncs = self
            .groups
            .iter_mut()
            .filter(|(group, _)| dirty_set.contains(group))
            .map(|(&group, state)| async move { state.store.sync().await.map_err(storage_error(group)) });
        let synced = match dirty.is_empty() {
            true => Vec::new(),
            false => futures::future::try_join_all(syncs).await?,
        };
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
        for &group in self.wakefulness.awake() {
            let state = self.groups.get_mut(&group).expect("awake groups are hosted");
            let saved = state.store.hard_state_saved();
            let commit_bound = state.raw.raft.raft_log.committed.min(state.applied_durable_conf);
            // The persisted commit never passed the previous round's applied index (nor raft's commit).
            assert!(saved.commit <= commit_bound, "group {group}: persisted commit {} above its bound {commit_bound}", saved.commit);
            if commit_bound >= saved.commit + COMMIT_PERSIST_LAG_MAX {
                let durable = odradek_log::HardState { commit: commit_bound, ..saved };
                state.store.save_hard_state(&crate::storage::raft_hard_state(durable)).await.map_err(storage_error(group))?;
                self.stats.hard_state_saves += 1;
            }
        }
        Ok(())
    }

    async fn serve_fetches(&mut self) -> Result<(), NodeError> {
        for &group in self.wakefulness.awake() {
            let state = self.groups.get_mut(&group).expect("awake groups are hosted");
            for request in state.store.storage().take_fetch_requests() {
                let context = state.store.fetch(request).await.map_err(storage_error(group))?;
                state.raw.on_entries_fetched(context);
                self.stats.log_fetches += 1;
            }
        }
        Ok(())
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
                observe::emit(|| observe::Event::VoteGranted { node, group, to, term, term_saved: saved.term, vote_saved: saved.vote });
            }
            _ => {}
        }
    }
}

/// With stage timing on, stamps `stage` on the traced proposals among `committed`.
fn stamp_committed(
    stages: &Option<Arc<crate::stages::StageClock>>,
    group: GroupId,
    committed: &[raft::eraftpb::Entry],
    stage: fn(&mut crate::stages::LeaderStamps) -> &mut Option<tokio::time::Instant>,
) {
    if let (Some(stages), Some(first), Some(last)) = (stages, committed.first(), committed.last()) {
        stages.stamp(group, first.index, last.index, stage);
    }
}

/// The groups of the snapshot messages among `messages`.
fn snapshots_in(messages: &[(GroupId, Message)]) -> Vec<GroupId> {
    messages.iter().filter(|(_, message)| message.get_msg_type() == MessageType::MsgSnapshot).map(|(group, _)| *group).collect()
}

fn queue_messages(outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>, group: GroupId, messages: Vec<Message>) {
    for message in messages {
        outbox.entry(message.to).or_default().push((group, message));
    }
}

/// SplitMix64 finalizer: spreads the election seed over nodes and groups.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
