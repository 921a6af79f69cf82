//! White-box hooks for the raft checker (`odradek_jepsen::checker::raft`, CHECKLISTS R1 to R6
//! and R8): every [`Node`](crate::Node) reports what it does to the observer installed on the
//! current thread, if any. Under madsim every simulated node of a run lives on the thread
//! that runs the simulation, so one observer sees the whole cluster, and parallel test threads
//! do not mix. Without an observer (every production node) an event costs a thread-local check.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::transport::{GroupId, NodeId};

/// Something a replica did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `node` became the leader of `group` in `term` (R1: at most one per group and term).
    Leader { node: NodeId, group: GroupId, term: u64 },
    /// `node`'s replica of `group` stopped ticking (module `hibernate`); `leader`: it leads.
    Hibernated { node: NodeId, group: GroupId, leader: bool },
    /// `node`'s sleeping replica of `group` woke, and why.
    Woke { node: NodeId, group: GroupId, leader: bool, reason: WakeReason },
    /// `node` wrote the entry at `index` of `term` with this [`entry_checksum`] to its log (R2:
    /// an entry at one (index, term) has one checksum on every replica).
    Appended { node: NodeId, group: GroupId, index: u64, term: u64, checksum: u32 },
    /// `node` applied the committed entry (its [`entry_checksum`], and the offsets its records
    /// take: `base_offset ..offset_next`), or replayed it from its log on opening the group
    /// (R4: every replica applies the same entry at an index, and offsets are dense; R3:
    /// within one `incarnation` of a node, applied indexes grow by one).
    Applied { node: NodeId, incarnation: u64, group: GroupId, index: u64, term: u64, checksum: u32, base_offset: u64, offset_next: u64 },
    /// `node` installed a snapshot up to `index`, whose log continues at offset `offset_next`:
    /// its next applied index is `index + 1`.
    Restored { node: NodeId, incarnation: u64, group: GroupId, index: u64, offset_next: u64 },
    /// `node`'s log of `group` is durable up to `index`: the disk confirmed the fsyncs (after a
    /// round's sync, on opening, after a snapshot install). R5 counts these.
    Durable { node: NodeId, group: GroupId, index: u64 },
    /// `node` opened its log of `group` (at a start) durable up to `index`, after any
    /// [`Event::RecoveryCut`] of that opening (R6: without a cut, what the node reported durable
    /// before is still there), with `term` / `vote` in its hard state as it opened it (R8 c: a
    /// vote the node reported saved is still there, or a later term is).
    Opened { node: NodeId, group: GroupId, index: u64, term: u64, vote: u64 },
    /// `node` told `to` it holds the entries up to `index` (an accepted append), while its log
    /// was durable up to `durable_index` (R6: `index <= durable_index`).
    AppendAccepted { node: NodeId, group: GroupId, to: NodeId, index: u64, durable_index: u64 },
    /// `node` granted `to` its vote in `term`, with `term_saved` / `vote_saved` durable in its
    /// hard state (R6: the vote is saved, or a later term is).
    VoteGranted { node: NodeId, group: GroupId, to: NodeId, term: u64, term_saved: u64, vote_saved: u64 },
    /// Opening `group`, `node`'s recovery cut its log from `index` on, taking the damaged last
    /// entry for a torn write; `suspect` when the node then holds itself suspect (R8 e: entries
    /// the node reported durable may go only if it does).
    RecoveryCut { node: NodeId, group: GroupId, index: u64, suspect: bool },
    /// `node` opened `group` suspect: it may have lost acknowledged entries `cut ..= bound`, and
    /// must neither vote nor lead until [`Event::SuspectCleared`] (R8 e).
    /// `term` is the term it cut in: every lost entry is of that term or older.
    Suspect { node: NodeId, group: GroupId, cut: u64, bound: u64, term: u64 },
    /// Suspect `node` let raft judge `to`'s vote request in `term`: the candidate's log ends at
    /// (`last_term`, `last_index`), which holds everything `node` may have lost (R8 e), judged
    /// against the suspicion's current `bound` (at most the one [`Event::Suspect`] reported).
    SuspectVote { node: NodeId, group: GroupId, to: NodeId, term: u64, last_term: u64, last_index: u64, bound: u64 },
    /// `node` settled its suspicion with its log durable up to `durable`.
    SuspectCleared { node: NodeId, group: GroupId, durable: u64 },
    /// `node` acknowledged an acks=all produce whose entry is at `index`, for a group of
    /// `voters` voters (R5: durable on a quorum of them). Reported by the server.
    Acked { node: NodeId, group: GroupId, index: u64, term: u64, voters: usize },
    /// `node` holds `conf` as `group`'s configuration from `index` on: it applied the conf
    /// change at `index`, installed a snapshot at `index`, or opened the group with the
    /// configuration it saved at `index` (`source` says which). R10: the configurations a group
    /// moves through overlap in a quorum.
    ConfApplied { node: NodeId, incarnation: u64, group: GroupId, index: u64, conf: Conf, source: ConfSource },
    /// Leader `node` of `group` proposes to make learner `voter` a voter, having seen its match
    /// index reach the group's commit index `commit` (R11: a voter added by a reassignment was
    /// caught up when promoted). Reported by the server.
    Promoted { node: NodeId, group: GroupId, voter: NodeId, commit: u64 },
    /// `node` stops hosting `group` and deletes its files (its topic was deleted, or a move
    /// took the replica away): a replica it creates later starts from nothing, as a new one.
    Destroyed { node: NodeId, group: GroupId },
    /// `node` moved the files of `group`, which do not open (damaged), aside to rebuild the
    /// replica empty (issue 15, a damaged replica's repair): what they held is gone from the
    /// group, as for a wiped node (R8 d: the rebuilt replica must not vote until its log is
    /// durable past what was applied before).
    SetAside { node: NodeId, group: GroupId },
    /// `node`'s rebuilt replica of `group` settled its suspicion (every other voter's answer
    /// showed it holds everything): its repair is over (reported by the server).
    Repaired { node: NodeId, group: GroupId },
    /// `node`'s retention deleted `group`'s log below `first_index` (its new log start, whose
    /// first offset is `offset_start`), while its commit index was `commit` (as persisted) and
    /// it had applied up to `applied` (R12 a: retention never deletes an index above either).
    /// A replica that later needs the deleted entries must receive a snapshot (R12 b).
    LogStart { node: NodeId, incarnation: u64, group: GroupId, first_index: u64, offset_start: u64, commit: u64, applied: u64 },
    /// Leader `node` asked raft to hand `group`'s leadership to `to`, for `cause`, having found
    /// `to` caught up (`matched`: its match index, at least the commit index) and not refused:
    /// its last acknowledgement at `matched` did not say it drops hand-overs, and the owner had
    /// not refused it (module `node::hand_over`). R13: `to` was neither suspect nor on a
    /// passive (quarantined) node when that acknowledgement left.
    HandOver { node: NodeId, group: GroupId, to: NodeId, cause: HandOverCause, matched: u64 },
    /// `node` turned passive (its metadata group does not open: quarantined, serving no client)
    /// or, `passive: false`, is not (reported at every start and when a repair ends it). About
    /// the whole node; [`Event::group`] names the metadata group, 0.
    Passive { node: NodeId, passive: bool },
}

/// Why a leader hands its leadership over ([`Event::HandOver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HandOverCause {
    /// The controller's leader balancing, to the preferred replica.
    Balance,
    /// A client's TransferLeader request.
    Request,
    /// A reassignment moving the leadership off a replica it removes.
    Reassign,
    /// A node leaving the controller's voters hands the metadata group away.
    Membership,
    /// A passive (quarantined) node hands off what it wins.
    Passive,
    /// A graceful shutdown drains the node's leaderships.
    Drain,
    /// A node low on disk hands off what it leads.
    DiskLow,
}

impl HandOverCause {
    pub fn name(self) -> &'static str {
        match self {
            HandOverCause::Balance => "leader balancing",
            HandOverCause::Request => "a transfer request",
            HandOverCause::Reassign => "a reassignment",
            HandOverCause::Membership => "a controller voter leaving",
            HandOverCause::Passive => "a passive node's hand-off",
            HandOverCause::Drain => "a graceful shutdown's drain",
            HandOverCause::DiskLow => "a node low on disk",
        }
    }
}

/// A set of node ids below [`NodeSet::ID_LIMIT`], as a bit set (so events stay `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeSet(pub u64);

impl NodeSet {
    /// Node ids an event can name (the simulator and the Jepsen harness use a few small ids).
    pub const ID_LIMIT: NodeId = 64;

    pub fn of(ids: &[NodeId]) -> NodeSet {
        NodeSet(ids.iter().fold(0, |bits, &id| {
            assert!(id < NodeSet::ID_LIMIT, "node id {id} is beyond what an observed event can name");
            bits | (1 << id)
        }))
    }

    pub fn contains(self, id: NodeId) -> bool {
        id < NodeSet::ID_LIMIT && self.0 & (1 << id) != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn ids(self) -> Vec<NodeId> {
        (0..NodeSet::ID_LIMIT).filter(|&id| self.contains(id)).collect()
    }

    /// The ids in exactly one of the two sets.
    pub fn difference_symmetric(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 ^ other.0)
    }

    /// The ids of `self` not in `other`.
    pub fn minus(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & !other.0)
    }
}

/// A raft configuration as events carry it: the voters (the incoming ones while joint), the
/// outgoing voters (empty unless joint) and the learners (incoming and next).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conf {
    pub voters: NodeSet,
    pub voters_outgoing: NodeSet,
    pub learners: NodeSet,
}

impl Conf {
    pub fn of(conf: &raft::eraftpb::ConfState) -> Conf {
        let learners: Vec<NodeId> = conf.learners.iter().chain(&conf.learners_next).copied().collect();
        Conf { voters: NodeSet::of(&conf.voters), voters_outgoing: NodeSet::of(&conf.voters_outgoing), learners: NodeSet::of(&learners) }
    }

    pub fn joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }
}

impl std::fmt::Display for Conf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "voters {:?}", self.voters.ids())?;
        if self.joint() {
            write!(f, " and outgoing {:?}", self.voters_outgoing.ids())?;
        }
        if !self.learners.is_empty() {
            write!(f, ", learners {:?}", self.learners.ids())?;
        }
        Ok(())
    }
}

/// Why a sleeping group woke ([`Event::Woke`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeReason {
    /// A raft message for it arrived from this node.
    Message(NodeId),
    /// A woken follower asked its leader to wake.
    Asked,
    /// A local request: a proposal, a read barrier, a transfer, a campaign.
    Request,
    /// The leader's node went silent.
    LeaderLost,
    /// The node is handing leaderships away (passive, draining or low on disk).
    HandOff,
}

/// Where a [`Event::ConfApplied`] configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfSource {
    /// The conf change at the index was applied: the step from the replica's previous one.
    Applied,
    /// A snapshot at the index was installed (a jump, not a step).
    Restored,
    /// The group was opened (created or restarted) with the configuration saved at the index.
    Opened,
}

impl Event {
    /// The raft group the event is about.
    pub fn group(&self) -> GroupId {
        match *self {
            Event::Leader { group, .. }
            | Event::Appended { group, .. }
            | Event::Applied { group, .. }
            | Event::Restored { group, .. }
            | Event::Durable { group, .. }
            | Event::Opened { group, .. }
            | Event::AppendAccepted { group, .. }
            | Event::VoteGranted { group, .. }
            | Event::RecoveryCut { group, .. }
            | Event::Suspect { group, .. }
            | Event::SuspectCleared { group, .. }
            | Event::SuspectVote { group, .. }
            | Event::Acked { group, .. }
            | Event::ConfApplied { group, .. }
            | Event::Promoted { group, .. }
            | Event::Destroyed { group, .. }
            | Event::SetAside { group, .. }
            | Event::Repaired { group, .. }
            | Event::Hibernated { group, .. }
            | Event::Woke { group, .. }
            | Event::LogStart { group, .. }
            | Event::HandOver { group, .. } => group,
            Event::Passive { .. } => 0,
        }
    }

    /// The node that reported the event.
    pub fn node(&self) -> NodeId {
        match *self {
            Event::Leader { node, .. }
            | Event::Hibernated { node, .. }
            | Event::Woke { node, .. }
            | Event::Appended { node, .. }
            | Event::Applied { node, .. }
            | Event::Restored { node, .. }
            | Event::Durable { node, .. }
            | Event::Opened { node, .. }
            | Event::AppendAccepted { node, .. }
            | Event::VoteGranted { node, .. }
            | Event::RecoveryCut { node, .. }
            | Event::Suspect { node, .. }
            | Event::SuspectVote { node, .. }
            | Event::SuspectCleared { node, .. }
            | Event::Acked { node, .. }
            | Event::ConfApplied { node, .. }
            | Event::Promoted { node, .. }
            | Event::Destroyed { node, .. }
            | Event::SetAside { node, .. }
            | Event::Repaired { node, .. }
            | Event::LogStart { node, .. }
            | Event::HandOver { node, .. }
            | Event::Passive { node, .. } => node,
        }
    }
}

type Sink = Rc<dyn Fn(Event)>;

thread_local! {
    static OBSERVER: RefCell<Option<Sink>> = const { RefCell::new(None) };
    static INCARNATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Sends every event of nodes running on this thread to `observer` (replacing any other).
pub fn install(observer: impl Fn(Event) + 'static) {
    OBSERVER.with(|slot| *slot.borrow_mut() = Some(Rc::new(observer)));
}

/// Stops observing on this thread.
pub fn uninstall() {
    OBSERVER.with(|slot| *slot.borrow_mut() = None);
}

/// Reports the event `make` builds, only if someone observes (checksums cost nothing otherwise).
pub fn emit(make: impl FnOnce() -> Event) {
    let sink = OBSERVER.with(|slot| slot.borrow().clone());
    if let Some(sink) = sink {
        sink(make());
    }
}

/// The checksum events carry for a raft entry: crc32 of its index, term, type, data and context,
/// so two entries with one checksum are the same entry (the same payload, kind, record count and
/// timestamps). Computed only when someone observes (see [`emit`]).
pub fn entry_checksum(entry: &raft::eraftpb::Entry) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&entry.index.to_le_bytes());
    hasher.update(&entry.term.to_le_bytes());
    hasher.update(&(entry.get_entry_type() as i32).to_le_bytes());
    hasher.update(&entry.data);
    hasher.update(&entry.context);
    hasher.finalize()
}

/// A number for a new node object, unique on this thread: a restarted node is a new incarnation.
pub(crate) fn incarnation_next() -> u64 {
    INCARNATIONS.with(|counter| {
        counter.set(counter.get() + 1);
        counter.get()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_installed_observer_only() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        emit(|| panic!("no observer: the event is never built"));
        let sink = seen.clone();
        install(move |event| sink.borrow_mut().push(event));
        emit(|| Event::Leader { node: 1, group: 2, term: 3 });
        uninstall();
        emit(|| panic!("uninstalled"));
        assert_eq!(*seen.borrow(), vec![Event::Leader { node: 1, group: 2, term: 3 }]);
        assert_ne!(incarnation_next(), incarnation_next());
    }
}
