//! The raft checker: CHECKLISTS R1 to R6 and R8 over the events every replica reports through
//! `odradek_consensus::observe` (the simulator installs it for a whole run; the consensus
//! crate's deterministic cluster test for each of its schedules), plus the checks a harness
//! that can look inside its replicas feeds with what it sees there: commit indexes
//! ([`RaftChecker::record_commit`], [`RaftChecker::record_start`]), acknowledgements with the
//! group's voters ([`RaftChecker::record_ack`]), and replicas' logs
//! ([`RaftChecker::check_logs`]). One checker, so a check strengthened for one harness holds
//! for every harness that feeds it.

use std::collections::{BTreeMap, BTreeSet};

use odradek_consensus::observe::{Conf, Event, NodeSet};
use odradek_consensus::{GroupId, NodeId};

mod hand_over;
mod membership;

/// One broken invariant, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `R1` to `R6`, `R8`, `R10` to `R13`.
    pub invariant: &'static str,
    pub group: GroupId,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} group {}: {}", self.invariant, self.group, self.detail)
    }
}

/// Checks the events of a whole run as they come: R1 (one leader per group and term), R2 (one
/// checksum per (group, index, term) among appended entries), R3 (per node incarnation, applied
/// indexes grow by one and a snapshot never moves them back), R4 (every replica applies the same
/// entry at an index: term, checksum of index, term, type, data and context, and offsets; and
/// offsets are dense: an entry starts where the one before it ends), R5
/// (an acks=all acknowledgement finds the index durable on a quorum: judged by index, not by
/// entry, so a durable but divergent entry would count) and R6 (accepted appends and granted
/// votes are durable when sent) and R8 (c: no node votes for two candidates in one term, across
/// its restarts; e: recovery cuts off only entries the node never reported durable, unless the
/// node holds itself suspect for a range that covers them, and a suspect node neither leads nor
/// votes until it clears, except for a candidate it judged to hold all it lost: a last term at
/// least the suspicion's and a last index at least its bound, which only drops from the one the
/// suspicion began with), and the membership checks R10 (configurations a step apart, never
/// fewer voters than at creation) and R11 (voters added by a move were caught-up learners),
/// module `membership`, and R13 (no leadership hand-over to a replica that said it leads not
/// while suspect or on a quarantined node), module `hand_over`. Bounded by the run: one small map entry per appended index and term.
#[derive(Debug, Default)]
pub struct RaftChecker {
    leaders: BTreeMap<(GroupId, u64), NodeId>,
    appended: BTreeMap<(GroupId, u64, u64), (u32, NodeId)>,
    /// (group, index) -> the entry first applied there (the one every replica must apply).
    applied: BTreeMap<(GroupId, u64), AppliedEntry>,
    /// (node, incarnation, group) -> last applied index.
    last_applied: BTreeMap<(NodeId, u64, GroupId), u64>,
    /// (group, node) -> the latest durable index the node reported.
    durable: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, node) -> index -> the term of the entry the node last wrote there (R5 counts
    /// replicas holding the acknowledged entry itself; R3 checks a new leader holds every
    /// committed entry).
    held: BTreeMap<(GroupId, NodeId), BTreeMap<u64, u64>>,
    /// (group, index) -> a term the entry applied there was committed in or before: the highest
    /// term any node had led the group in when the entry was first applied.
    committed_by: BTreeMap<(GroupId, u64), u64>,
    /// group -> the highest term any node led it in so far.
    highest_leader_term: BTreeMap<GroupId, u64>,
    /// (group, node) -> the highest snapshot index the node installed: its log holds nothing
    /// at or below it, the snapshot does.
    restored_to: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, voter, term) -> the candidate it voted for, across the voter's restarts.
    votes: BTreeMap<(GroupId, NodeId, u64), NodeId>,
    /// (group, voter) -> the newest hard state (term, vote) it reported saved with a granted
    /// vote: every later opening must find that vote, or a later term (R8 c).
    votes_saved: BTreeMap<(GroupId, NodeId), (u64, u64)>,
    /// (group, node) -> the suspicion's term, for every replica suspect now (R8 e), across its
    /// restarts.
    suspects: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, node) -> the bound of the node's current suspicion, as it began (R8 e: a bound
    /// only drops, with the other voters' answers).
    suspect_bounds: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, node) whose recovery cut its log at the opening in progress (R6: only a reported
    /// cut lets the durable index drop across a restart).
    cut_at_open: BTreeSet<(GroupId, NodeId)>,
    /// (group, node) -> the durable index it had reported before a cut that made it suspect:
    /// the suspicion that follows must cover it.
    cut_below: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, voter, candidate, term) a suspect voter judged to hold everything it lost.
    suspect_votes: BTreeSet<(GroupId, NodeId, NodeId, u64)>,
    /// (group, node) -> the commit index the node's latest start reported or has reached since.
    commits: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, node) -> the highest index applied anywhere when the harness wiped the node's
    /// data directory ([`RaftChecker::record_wipe`]), while its log is not yet durable there:
    /// it must not vote in the group (R8 d: a wiped node never votes as its old identity).
    wiped_below: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, node) -> its durable index and held entries when it was last wiped (R5: an
    /// acknowledgement reported after the wipe may rest on answers the node gave before it).
    held_before_wipe: BTreeMap<(GroupId, NodeId), (u64, BTreeMap<u64, u64>)>,
    /// Nodes wiped whose new incarnation has reported nothing yet (it has not started): no
    /// leader can have heard from it, so a promotion of it still rests on the match index its
    /// old self reached (R11 judges such a promotion by what it held when wiped). From its
    /// first event on, leaders must judge it by its new incarnation's acknowledgements.
    wiped_silent: BTreeSet<NodeId>,
    /// R10 and R11 (module `membership`).
    membership: membership::Membership,
    /// R13 (module `hand_over`).
    hand_overs: hand_over::HandOvers,
    /// (group, node) -> the index up to which retention on another replica deleted entries the
    /// node's log did not reach yet: it needs a snapshot (or a leader that still holds them)
    /// to catch up (R12 b).
    needs_snapshot: BTreeMap<(GroupId, NodeId), u64>,
    /// Coverage of R12: log starts retention moved, replicas that needed deleted entries
    /// ([`RaftChecker::needs_snapshot`] set), and snapshots installed that served one.
    pub retention: RetentionCounts,
    violations: Vec<Violation>,
    pub events: u64,
}

/// How often R12's paths ran in a run (coverage counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionCounts {
    /// Retention moved a replica's log start ([`Event::LogStart`]).
    pub log_starts_moved: u64,
    /// A replica's log ended below entries another replica's retention deleted (under lag).
    pub replicas_lagging: u64,
    /// A lagging replica installed a snapshot (covering what it needed, or an older one).
    pub snapshots_served: u64,
}

/// Violations kept; later ones are only counted (the first ones say what broke).
pub const VIOLATIONS_KEPT: usize = 32;

/// The entry first applied at an index of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AppliedEntry {
    term: u64,
    checksum: u32,
    base_offset: u64,
    offset_next: u64,
    /// The node that applied it first.
    node: NodeId,
}

/// One replica's log of a group as a harness read it, for [`RaftChecker::check_logs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaLog {
    pub node: NodeId,
    /// (term, [`odradek_consensus::observe::entry_checksum`]) by index, from the log's first
    /// index to its last (synced or not).
    pub entries: BTreeMap<u64, (u64, u32)>,
    /// The log is fsynced through here.
    pub synced_index: u64,
    pub commit_index: u64,
    pub last_index: u64,
    /// The replica leads the group in the newest term any running replica leads it in.
    pub newest_leader: bool,
}

impl RaftChecker {
    /// The harness deleted `node`'s whole data directory (F-P7, F-M3) while it was down: what
    /// it held is gone (R5 no longer counts it), and until its log of a group is durable up to
    /// the highest index any replica had applied by then, a vote it grants there is an R8 d
    /// violation: it would be voting as the identity whose log it lost.
    pub fn record_wipe(&mut self, node: NodeId) {
        let groups: BTreeSet<GroupId> = self.applied.keys().map(|&(group, _)| group).collect();
        for group in groups {
            let applied_max = self.applied.range((group, 0)..=(group, u64::MAX)).next_back().map_or(0, |(&(_, index), _)| index);
            self.wiped_below.insert((group, node), applied_max);
        }
        // What it held when wiped still justifies an acknowledgement the leader decides on
        // answers it sent before the wipe (R5 judges the ack when it is reported, a moment
        // after the commit that counted them).
        for (&(group, holder), &index) in self.durable.range(..).filter(|&(&(_, holder), _)| holder == node) {
            let entries = self.held.get(&(group, holder)).cloned().unwrap_or_default();
            self.held_before_wipe.insert((group, holder), (index, entries));
        }
        self.wiped_silent.insert(node);
        self.hand_overs.wiped(node);
        self.durable.retain(|&(_, holder), _| holder != node);
        self.held.retain(|&(_, holder), _| holder != node);
        self.restored_to.retain(|&(_, holder), _| holder != node);
        self.commits.retain(|&(_, holder), _| holder != node);
        self.needs_snapshot.retain(|&(_, holder), _| holder != node);
        // Its hard states went with the directory (R8 d judges its votes from now on).
        self.votes_saved.retain(|&(_, holder), _| holder != node);
    }

    /// `node` set its damaged files of `group` aside to rebuild the replica (issue 15): as
    /// [`RaftChecker::record_wipe`] for that one group. Its replica starts over (its applied
    /// indexes too: R3 and R7 judge the rebuilt one), and until its log is durable past the
    /// highest index any replica had applied, a vote it grants there is an R8 d violation.
    fn record_set_aside(&mut self, group: GroupId, node: NodeId) {
        let applied_max = self.applied.range((group, 0)..=(group, u64::MAX)).next_back().map_or(0, |(&(_, index), _)| index);
        self.wiped_below.insert((group, node), applied_max);
        if let Some(&index) = self.durable.get(&(group, node)) {
            let entries = self.held.get(&(group, node)).cloned().unwrap_or_default();
            self.held_before_wipe.insert((group, node), (index, entries));
        }
        self.durable.remove(&(group, node));
        self.held.remove(&(group, node));
        self.restored_to.remove(&(group, node));
        self.commits.remove(&(group, node));
        self.votes_saved.remove(&(group, node));
        self.last_applied.retain(|&(holder, _, of), _| !(holder == node && of == group));
    }

    /// R6 against what the disk holds: when `node` granted `to` its vote in `term`
    /// ([`Event::VoteGranted`]), the hard state its disk held durably at that moment, as its
    /// hard-state file would open after a power loss (`None`: no valid copy survives, or no
    /// file). The event's own `term_saved` / `vote_saved` are what the node believes it saved; a
    /// save that skipped its sync (or whose sync the disk never confirmed) shows only here. A
    /// harness that can read its nodes' durable bytes (the simulator) calls this before
    /// [`RaftChecker::record`] with the event.
    pub fn record_vote_on_disk(&mut self, node: NodeId, group: GroupId, to: NodeId, term: u64, on_disk: Option<(u64, u64)>) {
        let durable = on_disk.is_some_and(|(term_disk, vote_disk)| term_disk > term || (term_disk == term && vote_disk == to));
        if !durable {
            let held = on_disk.map_or("no valid hard state".to_string(), |(t, v)| format!("term {t}, vote {v}"));
            self.violate(
                "R6",
                group,
                format!("node {node} voted for node {to} in term {term}; its disk holds durably {held} (the vote is not on the disk)"),
            );
        }
    }

    /// R12 d, against what the disk holds: when `node`'s retention moved `group`'s log start to
    /// `first_index` ([`Event::LogStart`]), the group's start-state record its disk held durably
    /// at that moment, as the file would open after a power loss: `Some(as_of_index)`, `None`
    /// for no file (or one that does not decode). The trim deletes the entries that built the
    /// state only after the record that outlives them is durable, so the record must reach the
    /// new start (`as_of_index + 1 >= first_index`); a save that skipped its syncs, or segments
    /// deleted before the save, shows here at once (otherwise only after a power loss, as a
    /// replica that does not open or, before every trim left a record, a producer table lost:
    /// L2). A harness that can read its nodes' durable bytes (the simulator) calls this before
    /// [`RaftChecker::record`] with the event.
    pub fn record_log_start_on_disk(&mut self, node: NodeId, group: GroupId, first_index: u64, on_disk: Option<u64>) {
        if on_disk.is_none_or(|as_of_index| as_of_index + 1 < first_index) {
            let held = on_disk.map_or("no start-state record".to_string(), |as_of| format!("a start state as of index {as_of}"));
            self.violate(
                "R12",
                group,
                format!(
                    "node {node}'s retention moved its log start to index {first_index} while its disk held durably {held} \
                     (R12 d: the state that outlives the deleted entries is not on the disk)"
                ),
            );
        }
    }

    /// R6 against what the disk holds: when `node` told `to` it holds the entries up to `index`
    /// ([`Event::AppendAccepted`]), `unsynced` names the log segment files of the group whose
    /// bytes or names its disk did not hold durably at that moment (writes not yet synced). An
    /// accepted append leaves only after the round's fsync, so every segment is durable then: a
    /// pending write means the acknowledgement runs ahead of the disk. A harness that can read
    /// its nodes' disks (the simulator) calls this before [`RaftChecker::record`] with the event.
    pub fn record_append_on_disk(&mut self, node: NodeId, group: GroupId, to: NodeId, index: u64, unsynced: &[String]) {
        if !unsynced.is_empty() {
            self.violate(
                "R6",
                group,
                format!(
                    "node {node} told node {to} it holds index {index} while its disk held log segments {unsynced:?} with writes \
                     not yet durable"
                ),
            );
        }
    }

    pub fn record(&mut self, event: Event) {
        self.events += 1;
        if !self.wiped_silent.is_empty() {
            self.wiped_silent.remove(&event.node());
        }
        match event {
            Event::Leader { node, group, term } => {
                if self.suspects.contains_key(&(group, node)) {
                    self.violate("R8", group, format!("node {node} became leader in term {term} while suspect"));
                }
                // R3 leader completeness: every entry committed in an earlier term (applied
                // anywhere while only earlier terms had leaders) is in the new leader's durable
                // log, or below a snapshot it installed. A late leader of an old term (its vote
                // responses were delayed) need not hold what later terms committed.
                let restored = self.restored_to.get(&(group, node)).copied().unwrap_or(0);
                let durable = self.durable.get(&(group, node)).copied().unwrap_or(0);
                let held = self.held.get(&(group, node));
                let committed_by = &self.committed_by;
                let missing = self.applied.range((group, restored + 1)..(group + 1, 0)).find(
                    |(&(_, index), &AppliedEntry { term: committed, .. })| {
                        committed_by.get(&(group, index)).is_some_and(|&by| by < term)
                            && (index > durable || held.and_then(|entries| entries.get(&index)) != Some(&committed))
                    },
                );
                if let Some((&(_, index), &AppliedEntry { term: committed, node: by, .. })) = missing {
                    self.violate(
                        "R3",
                        group,
                        format!(
                            "node {node} leads term {term} without entry {index} of term {committed}, which node {by} applied \
                             (its log is durable to {durable})"
                        ),
                    );
                }
                let first = *self.leaders.entry((group, term)).or_insert(node);
                let highest = self.highest_leader_term.entry(group).or_default();
                *highest = (*highest).max(term);
                if first != node {
                    self.violate("R1", group, format!("nodes {first} and {node} both led term {term}"));
                }
            }
            Event::Appended { node, group, index, term, checksum } => {
                if let Some(&needed) = self.needs_snapshot.get(&(group, node)) {
                    // R12 b: a replica behind another's log start continues its log only where
                    // it ends (entries from a leader that still holds them) or after a snapshot.
                    let end = self.log_end(group, node);
                    if index > end + 1 {
                        self.violate(
                            "R12",
                            group,
                            format!(
                                "node {node} appended index {index} with its log ending at {end}, behind entries up to {needed} \
                                 that retention deleted, and no snapshot installed (R12 b)"
                            ),
                        );
                    }
                    if index >= needed {
                        self.needs_snapshot.remove(&(group, node));
                    }
                }
                self.held.entry((group, node)).or_default().insert(index, term);
                let (first, by) = *self.appended.entry((group, index, term)).or_insert((checksum, node));
                if first != checksum {
                    self.violate(
                        "R2",
                        group,
                        format!("entry {index} of term {term}: checksum {first:08x} on node {by}, {checksum:08x} on node {node}"),
                    );
                }
            }
            Event::Durable { node, group, index } => {
                self.durable.insert((group, node), index);
                // A cut excuses only the opening it belongs to (one that failed reports none).
                self.cut_at_open.remove(&(group, node));
                if self.wiped_below.get(&(group, node)).is_some_and(|&below| index >= below) {
                    self.wiped_below.remove(&(group, node));
                }
            }
            Event::Opened { node, group, index, term, vote } => {
                // R8 c: the hard state reopens with every vote the node reported saved. One
                // damaged or stale copy of the file must not roll it back (its mirrored copy
                // holds it); a file whose copies are both bad does not open at all.
                if let Some(&(term_saved, vote_saved)) = self.votes_saved.get(&(group, node)) {
                    if term < term_saved || (term == term_saved && vote_saved != 0 && vote != vote_saved) {
                        self.violate(
                            "R8",
                            group,
                            format!(
                                "node {node} reopened its hard state at term {term}, vote {vote}; it had voted with term \
                                 {term_saved}, vote {vote_saved} saved (R8 c: a forgotten vote)"
                            ),
                        );
                    }
                }
                let durable = self.durable.get(&(group, node)).copied().unwrap_or(0);
                let cut = self.cut_at_open.remove(&(group, node));
                if index < durable && !cut {
                    self.violate(
                        "R6",
                        group,
                        format!("node {node} reopened its log durable to {index}; it had reported {durable} durable, and no recovery cut"),
                    );
                }
            }
            Event::RecoveryCut { node, group, index, suspect } => {
                self.cut_at_open.insert((group, node));
                // Bit rot takes at most the last durable entry with it (damage before a valid
                // entry is corruption, never cut): a cut below it truncated mid-log (R8 b); a cut
                // of it must leave the node suspect (R8 e).
                let durable = self.durable.get(&(group, node)).copied().unwrap_or(0);
                if index < durable {
                    self.violate(
                        "R8",
                        group,
                        format!("node {node}'s recovery cut its log from index {index} on, below its last durable entry {durable}"),
                    );
                } else if index == durable && !suspect {
                    self.violate(
                        "R8",
                        group,
                        format!("node {node}'s recovery cut its durable last entry {index} and it does not hold itself suspect"),
                    );
                }
                if index <= durable && suspect {
                    self.cut_below.insert((group, node), durable);
                }
            }
            Event::Suspect { node, group, cut, bound, term } => {
                if let Some(durable) = self.cut_below.remove(&(group, node)) {
                    if bound < durable {
                        self.violate(
                            "R8",
                            group,
                            format!("node {node} is suspect for {cut}..={bound} only; it had reported entries durable up to {durable}"),
                        );
                    }
                }
                self.suspects.insert((group, node), term);
                self.suspect_bounds.insert((group, node), bound);
            }
            Event::SuspectVote { node, group, to, term, last_term, last_index, bound } => {
                let suspect_term = self.suspects.get(&(group, node)).copied().unwrap_or(0);
                let bound_first = self.suspect_bounds.get(&(group, node)).copied().unwrap_or(u64::MAX);
                if bound > bound_first {
                    self.violate(
                        "R8",
                        group,
                        format!("suspect node {node} judged a vote against bound {bound}, above its suspicion's {bound_first}"),
                    );
                }
                if last_index < bound {
                    self.violate(
                        "R8",
                        group,
                        format!("suspect node {node} judged node {to}'s log ending at index {last_index} complete; its bound is {bound}"),
                    );
                }
                if last_term < suspect_term && !self.holds_all_applied_in_every_quorum(group, to) {
                    self.violate(
                        "R8",
                        group,
                        format!(
                            "suspect node {node} (cut in term {suspect_term}) judged node {to}'s log ending in term {last_term} complete"
                        ),
                    );
                }
                self.suspect_votes.insert((group, node, to, term));
            }
            Event::SuspectCleared { node, group, .. } => {
                self.suspects.remove(&(group, node));
                self.suspect_bounds.remove(&(group, node));
            }
            Event::AppendAccepted { node, group, to, index, durable_index } => {
                let suspect = self.suspects.contains_key(&(group, node));
                self.hand_overs.acknowledged(group, node, to, index, suspect);
                if index > durable_index {
                    self.violate(
                        "R6",
                        group,
                        format!("node {node} told node {to} it holds index {index}; durable only to {durable_index}"),
                    );
                }
            }
            Event::VoteGranted { node, group, to, term, term_saved, vote_saved } => {
                // A vote for the other voter of two (in every quorum, so holding every committed
                // entry) counts for no entry the voter lost (DESIGN.md "Replication 2").
                let wiped_below = self.wiped_below.get(&(group, node)).filter(|_| !self.holds_all_applied_in_every_quorum(group, to));
                if let Some(below) = wiped_below {
                    let durable = self.durable.get(&(group, node)).copied().unwrap_or(0);
                    self.violate(
                        "R8",
                        group,
                        format!(
                            "node {node} voted for node {to} in term {term} with its data directory wiped: durable to {durable}, \
                             below index {below} applied before the wipe (R8 d)"
                        ),
                    );
                }
                if self.suspects.contains_key(&(group, node)) && !self.suspect_votes.contains(&(group, node, to, term)) {
                    self.violate(
                        "R8",
                        group,
                        format!("node {node} voted for node {to} in term {term} while suspect, without judging its log complete"),
                    );
                }
                let first = *self.votes.entry((group, node, term)).or_insert(to);
                if first != to {
                    // Only a vote forgotten by a restart allows this (R8 c: lost hard state).
                    self.violate("R8", group, format!("node {node} voted for node {first} and node {to} in term {term}"));
                }
                // A grant for an older term's request may leave while the saved term is newer and
                // has no vote yet (0): a vote saved later in that term replaces it.
                let newest = self.votes_saved.entry((group, node)).or_insert((term_saved, vote_saved));
                if (term_saved, vote_saved != 0) > (newest.0, newest.1 != 0) {
                    *newest = (term_saved, vote_saved);
                }
                if term_saved < term || (term_saved == term && vote_saved != to) {
                    self.violate(
                        "R6",
                        group,
                        format!(
                            "node {node} voted for node {to} in term {term}; its saved hard state: term {term_saved}, vote {vote_saved}"
                        ),
                    );
                }
            }
            Event::Acked { node, group, index, term, voters } => {
                let mut durable = self.holders(group, index, term);
                for (&(_, holder), (at, entries)) in self.held_before_wipe.range((group, 0)..=(group, NodeId::MAX)) {
                    if *at >= index && entries.get(&index) == Some(&term) && !durable.contains(&holder) {
                        durable.push(holder);
                    }
                }
                if durable.len() < voters / 2 + 1 {
                    self.violate(
                        "R5",
                        group,
                        format!(
                            "node {node} acknowledged entry {index} of term {term}; durable only on nodes {durable:?} of {voters} voters"
                        ),
                    );
                }
            }
            Event::Destroyed { node, group } => self.forget_replica(group, node),
            Event::SetAside { node, group } => self.record_set_aside(group, node),
            Event::Repaired { node, group } => {
                // R8 d: a rebuilt replica's repair is over only once its log is durable past
                // what was applied anywhere when its damaged files were set aside.
                if let Some(below) = self.wiped_below.get(&(group, node)) {
                    let durable = self.durable.get(&(group, node)).copied().unwrap_or(0);
                    self.violate(
                        "R8",
                        group,
                        format!("node {node} reported its rebuilt replica repaired while durable to {durable}, below index {below} applied before (R8 d)"),
                    );
                }
            }
            Event::HandOver { node, group, to, cause, matched } => {
                let suspect = self.suspects.contains_key(&(group, to));
                if let Some((invariant, group, detail)) = self.hand_overs.handed_over(node, group, to, cause, matched, suspect) {
                    self.violate(invariant, group, detail);
                }
            }
            Event::Passive { node, passive } => self.hand_overs.passive(node, passive),
            // Hibernation changes no state the checks look at.
            Event::Hibernated { .. } | Event::Woke { .. } => {}
            Event::LogStart { node, incarnation, group, first_index, commit, applied, .. } => {
                self.log_start_moved(node, incarnation, group, first_index, commit, applied)
            }
            Event::ConfApplied { node, group, index, conf, source, .. } => {
                for (invariant, group, detail) in self.membership.conf_applied(node, group, index, conf, source) {
                    self.violate(invariant, group, detail);
                }
            }
            Event::Promoted { node, group, voter, commit } => {
                // R11: the leader judged `voter` caught up to `commit`; its log must be durable
                // there (an accepted append is durable when sent, R6, so its match index is).
                // A voter wiped and not restarted yet: the leader cannot know, and judged by
                // what it held when wiped (wiped a moment later, the same would hold).
                let mut durable = self.durable.get(&(group, voter)).copied().unwrap_or(0);
                if self.wiped_silent.contains(&voter) {
                    if let Some(&(held, _)) = self.held_before_wipe.get(&(group, voter)) {
                        durable = durable.max(held);
                    }
                }
                if durable < commit {
                    self.violate(
                        "R11",
                        group,
                        format!("node {node} promoted learner {voter} with the commit index at {commit}; its log is durable to {durable}"),
                    );
                }
            }
            Event::Restored { node, incarnation, group, index, offset_next } => {
                if let Some(&last) = self.last_applied.get(&(node, incarnation, group)) {
                    if index < last {
                        self.violate("R3", group, format!("node {node} installed a snapshot at {index}, below its applied index {last}"));
                    }
                }
                if let Some(&entry) = self.applied.get(&(group, index)) {
                    if offset_next != entry.offset_next {
                        self.violate(
                            "R4",
                            group,
                            format!(
                                "node {node}'s snapshot at {index} continues at offset {offset_next}; the entry node {} applied there ends at {}",
                                entry.node, entry.offset_next
                            ),
                        );
                    }
                }
                self.last_applied.insert((node, incarnation, group), index);
                let restored = self.restored_to.entry((group, node)).or_default();
                *restored = (*restored).max(index);
                if let Some(&needed) = self.needs_snapshot.get(&(group, node)) {
                    self.retention.snapshots_served += 1;
                    // An older snapshot (sent before the latest deletion) leaves it needing
                    // the entries after it, from a leader that still holds them.
                    if index >= needed {
                        self.needs_snapshot.remove(&(group, node));
                    }
                }
            }
            Event::Applied { node, incarnation, group, index, term, checksum, base_offset, offset_next } => {
                if let Some(&last) = self.last_applied.get(&(node, incarnation, group)) {
                    if index != last + 1 {
                        self.violate("R3", group, format!("node {node} applied index {index} right after {last}"));
                    }
                }
                self.last_applied.insert((node, incarnation, group), index);
                let highest = self.highest_leader_term.get(&group).copied().unwrap_or(0);
                self.committed_by.entry((group, index)).or_insert(highest);
                let previous = index.checked_sub(1).and_then(|before| self.applied.get(&(group, before))).copied();
                if let Some(previous) = previous.filter(|previous| previous.offset_next != base_offset) {
                    self.violate(
                        "R4",
                        group,
                        format!(
                            "node {node} applied index {index} at offset {base_offset}; the entry before it ends at {}",
                            previous.offset_next
                        ),
                    );
                }
                let entry = AppliedEntry { term, checksum, base_offset, offset_next, node };
                let first = *self.applied.entry((group, index)).or_insert(entry);
                if (first.term, first.checksum, first.base_offset, first.offset_next) != (term, checksum, base_offset, offset_next) {
                    self.violate(
                        "R4",
                        group,
                        format!(
                            "index {index}: node {} applied term {} checksum {:08x} offsets {}..{}, \
                             node {node} term {term} checksum {checksum:08x} offsets {base_offset}..{offset_next}",
                            first.node, first.term, first.checksum, first.base_offset, first.offset_next
                        ),
                    );
                }
            }
        }
    }

    /// R3: running `node`'s commit index of `group` is `commit` now; it never regresses while
    /// the node runs.
    pub fn record_commit(&mut self, node: NodeId, group: GroupId, commit: u64) {
        let known = self.commits.entry((group, node)).or_insert(commit);
        let before = *known;
        *known = commit.max(before);
        if commit < before {
            self.violate("R3", group, format!("node {node}'s commit regressed from {before} to {commit}"));
        }
    }

    /// R3: `node` (re)started `group` with commit index `commit`: a restart recovers no commit
    /// above what the group is known to have committed (any replica's commit, any applied index).
    pub fn record_start(&mut self, node: NodeId, group: GroupId, commit: u64) {
        self.commits.remove(&(group, node));
        let committed = self.commits.range((group, 0)..=(group, NodeId::MAX)).map(|(_, &commit)| commit).max().unwrap_or(0);
        let applied = self.applied.range((group, 0)..=(group, u64::MAX)).next_back().map_or(0, |(&(_, index), _)| index);
        if commit > committed.max(applied) {
            self.violate(
                "R3",
                group,
                format!("node {node} recovered commit {commit}, above any known commit ({committed}) and applied index ({applied})"),
            );
        }
        self.commits.insert((group, node), commit);
    }

    /// `node`'s disk was replaced by an older copy of itself (a fault done to it from outside,
    /// as restoring a backup): what it reported durable before is no longer promised, so its
    /// next opening is judged from scratch (R6 across restarts). Its replicas learn they are
    /// behind from the leaders and turn suspect (R8), which the checks still judge.
    pub fn record_disk_replaced(&mut self, node: NodeId) {
        self.durable.retain(|&(_, holder), _| holder != node);
        self.votes_saved.retain(|&(_, holder), _| holder != node);
    }

    /// R5, with the group's voters known: the entry (`index`, `term`) a proposer saw
    /// acknowledged is durable on a majority of each non-empty voter set (both halves of a
    /// joint configuration), counting crashed voters by what they had made durable.
    pub fn record_ack(&mut self, group: GroupId, index: u64, term: u64, voter_sets: &[&[NodeId]]) {
        let holders = self.holders(group, index, term);
        for voters in voter_sets.iter().filter(|voters| !voters.is_empty()) {
            let holding: Vec<NodeId> = voters.iter().copied().filter(|voter| holders.contains(voter)).collect();
            if holding.len() <= voters.len() / 2 {
                self.violate(
                    "R5",
                    group,
                    format!("entry {index} of term {term} was acknowledged; durable only on {holding:?} of voters {voters:?}"),
                );
            }
        }
    }

    /// Checks the logs of a group's running replicas, as a harness read them:
    /// - R2 log matching: where two replicas' fsynced logs hold an entry with the same (index,
    ///   term), it and every earlier entry both hold are identical (term and checksum);
    /// - R3: no replica's log differs from the applied entries at or below its commit, and the
    ///   newest leader holds every applied entry.
    pub fn check_logs(&mut self, group: GroupId, logs: &[ReplicaLog]) {
        for (at, a) in logs.iter().enumerate() {
            for b in &logs[at + 1..] {
                self.check_log_matching(group, a, b);
            }
        }
        let applied_max = self.applied.range((group, 0)..=(group, u64::MAX)).next_back().map_or(0, |(&(_, index), _)| index);
        for log in logs {
            // A stale leader of an older term (not yet stepped down) may lack newer entries.
            let high = if log.newest_leader { applied_max } else { log.commit_index.min(applied_max) };
            if high == 0 {
                continue;
            }
            if log.last_index < high {
                self.violate(
                    "R3",
                    group,
                    format!("node {} misses committed entries: its log ends at {}, below {high}", log.node, log.last_index),
                );
            }
            let diverged = log.entries.range(..=high).find(|(&index, &(term, checksum))| {
                self.applied.get(&(group, index)).is_some_and(|applied| (applied.term, applied.checksum) != (term, checksum))
            });
            if let Some((&index, &(term, checksum))) = diverged {
                let applied = self.applied[&(group, index)];
                self.violate(
                    "R3",
                    group,
                    format!(
                        "node {} holds term {term} checksum {checksum:08x} at committed index {index}; node {} applied term {} checksum {:08x}",
                        log.node, applied.node, applied.term, applied.checksum
                    ),
                );
            }
        }
    }

    /// R2 between the fsynced parts of two replicas' logs.
    fn check_log_matching(&mut self, group: GroupId, a: &ReplicaLog, b: &ReplicaLog) {
        let (entries_a, entries_b) = (a.entries.range(..=a.synced_index), b.entries.range(..=b.synced_index));
        let synced_b: BTreeMap<u64, (u64, u32)> = entries_b.map(|(&index, &entry)| (index, entry)).collect();
        let synced_a: Vec<(u64, (u64, u32))> = entries_a.map(|(&index, &entry)| (index, entry)).collect();
        let same_term = |&&(index, (term, _)): &&(u64, (u64, u32))| synced_b.get(&index).is_some_and(|&(other, _)| other == term);
        let Some(&(matched, _)) = synced_a.iter().rev().find(same_term) else { return };
        let differing = synced_a
            .iter()
            .take_while(|(index, _)| *index <= matched)
            .find(|(index, entry)| synced_b.get(index).is_some_and(|other| other != entry));
        if let Some(&(index, _)) = differing {
            self.violate(
                "R2",
                group,
                format!("nodes {} and {} match at index {matched} but differ at {index} (term, checksum)", a.node, b.node),
            );
        }
    }

    /// Replicas whose durable log holds the entry (`index`, `term`) itself, or a snapshot past it.
    fn holders(&self, group: GroupId, index: u64, term: u64) -> Vec<NodeId> {
        let holds = |n: NodeId| {
            self.restored_to.get(&(group, n)).is_some_and(|&at| at >= index)
                || self.held.get(&(group, n)).and_then(|entries| entries.get(&index)) == Some(&term)
        };
        self.durable
            .range((group, 0)..=(group, NodeId::MAX))
            .filter(|&(&(_, n), &at)| at >= index && holds(n))
            .map(|(&(_, n), _)| n)
            .collect()
    }

    fn violate(&mut self, invariant: &'static str, group: GroupId, detail: String) {
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(Violation { invariant, group, detail });
        }
    }

    /// Leadership hand-overs R13 judged (coverage).
    pub fn hand_overs_judged(&self) -> u64 {
        self.hand_overs.judged
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// `node` destroyed its replica of `group` (files deleted): a replica it creates later is a
    /// new one, judged from scratch (R3, R6, R8 e, R10). Votes are kept: R8 c holds across a
    /// replica's lives.
    /// R12 a: `node`'s retention moved its log of `group` to start at `first_index`: nothing at
    /// or above the commit bound went, judged by the node's persisted `commit` and by what the
    /// checker saw it apply in this `incarnation` (not by the node's own account, `applied`).
    /// Every other replica whose log ends below the deleted entries now needs a snapshot
    /// (R12 b, [`RaftChecker::retention_lag_unserved`]).
    fn log_start_moved(&mut self, node: NodeId, incarnation: u64, group: GroupId, first_index: u64, commit: u64, applied: u64) {
        self.retention.log_starts_moved += 1;
        let deleted = first_index - 1;
        let seen_applied = self.last_applied.get(&(node, incarnation, group)).copied().unwrap_or(0);
        if deleted > commit || deleted > seen_applied {
            self.violate(
                "R12",
                group,
                format!(
                    "node {node}'s retention deleted its log up to index {deleted}; its commit was {commit}, it had applied \
                     {seen_applied} (by its own account {applied}) (R12 a)"
                ),
            );
        }
        let members = self.membership.members(group);
        let replicas: Vec<NodeId> = self
            .durable
            .range((group, 0)..=(group, NodeId::MAX))
            .map(|(&(_, replica), _)| replica)
            .filter(|&replica| replica != node && members.is_none_or(|members| members.contains(replica)))
            .collect();
        for replica in replicas {
            if self.log_end(group, replica) < deleted {
                let needed = self.needs_snapshot.entry((group, replica)).or_insert(0);
                if *needed == 0 {
                    self.retention.replicas_lagging += 1;
                }
                *needed = (*needed).max(deleted);
            }
        }
    }

    /// The highest index `node`'s log of `group` reached: appended, or below a snapshot it
    /// installed (an over-estimate after a truncation or a lost tail, never an under-estimate).
    fn log_end(&self, group: GroupId, node: NodeId) -> u64 {
        let held = self.held.get(&(group, node)).and_then(|entries| entries.keys().next_back().copied()).unwrap_or(0);
        held.max(self.restored_to.get(&(group, node)).copied().unwrap_or(0))
    }

    /// R12 b, once the replicas had time to converge (R7): every replica that needed entries
    /// another's retention deleted got them (a snapshot, or entries from a leader still holding
    /// them), except on the nodes in `down`, and replicas no longer in their group's newest
    /// configuration. Returns one line per replica still behind.
    pub fn retention_lag_unserved(&self, down: &[NodeId]) -> Vec<String> {
        self.needs_snapshot
            .iter()
            .filter(|&(&(group, node), _)| !down.contains(&node) && self.members(group).is_none_or(|members| members.contains(node)))
            .map(|(&(group, node), &needed)| {
                format!(
                    "R12: group {group}: node {node}'s log ends at {}, behind entries up to {needed} that retention deleted, and it \
                     never installed a snapshot (R12 b)",
                    self.log_end(group, node)
                )
            })
            .collect()
    }

    fn forget_replica(&mut self, group: GroupId, node: NodeId) {
        self.needs_snapshot.remove(&(group, node));
        self.durable.remove(&(group, node));
        self.votes_saved.remove(&(group, node));
        self.held.remove(&(group, node));
        self.restored_to.remove(&(group, node));
        self.commits.remove(&(group, node));
        self.cut_at_open.remove(&(group, node));
        self.cut_below.remove(&(group, node));
        self.suspects.remove(&(group, node));
        self.suspect_bounds.remove(&(group, node));
        self.wiped_below.remove(&(group, node));
        self.held_before_wipe.remove(&(group, node));
        self.last_applied.retain(|&(holder, _, of), _| !(holder == node && of == group));
        self.membership.forget(group, node);
        self.hand_overs.forget(group, node);
    }

    /// Whether `candidate` belongs to every quorum of `group`'s newest configuration (as applied
    /// anywhere: the other voters without it are no majority of some half) and its log is
    /// durable up to the highest index applied anywhere: a replica that lost its log may vote
    /// for it (R8 d), since the leader it helps elect holds every entry anyone applied.
    fn holds_all_applied_in_every_quorum(&self, group: GroupId, candidate: NodeId) -> bool {
        let Some((_, conf)) = self.membership.latest().get(&group) else { return false };
        let majority_without = |half: NodeSet| half.minus(NodeSet::of(&[candidate])).len() * 2 > half.len();
        let quorum_without = majority_without(conf.voters) && (conf.voters_outgoing.is_empty() || majority_without(conf.voters_outgoing));
        let applied_max = self.applied.range((group, 0)..=(group, u64::MAX)).next_back().map_or(0, |(&(_, index), _)| index);
        let durable = self.durable.get(&(group, candidate)).copied().unwrap_or(0);
        conf.voters.contains(candidate) && !quorum_without && durable >= applied_max
    }

    /// The nodes in `group`'s newest configuration (voters, outgoing voters, learners) as any
    /// replica applied it; `None` before any replica reported one. A node outside it no longer
    /// hosts the group (R7 does not wait for it).
    pub fn members(&self, group: GroupId) -> Option<NodeSet> {
        self.membership.members(group)
    }

    /// Each group's newest configuration (as applied anywhere) and its index.
    pub fn configurations(&self) -> &BTreeMap<GroupId, (u64, Conf)> {
        self.membership.latest()
    }

    /// Per group, what each node's latest incarnation applied last (R7: after a quiet period
    /// every live replica of a group has applied the same index).
    pub fn applied_by_node(&self) -> BTreeMap<GroupId, BTreeMap<NodeId, u64>> {
        let mut latest: BTreeMap<(GroupId, NodeId), (u64, u64)> = BTreeMap::new();
        for (&(node, incarnation, group), &index) in &self.last_applied {
            let entry = latest.entry((group, node)).or_insert((incarnation, index));
            if incarnation >= entry.0 {
                *entry = (incarnation, index);
            }
        }
        let mut by_group: BTreeMap<GroupId, BTreeMap<NodeId, u64>> = BTreeMap::new();
        for ((group, node), (_, index)) in latest {
            by_group.entry(group).or_default().insert(node, index);
        }
        by_group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node 1 applied 1..=10 of group 3 and node 2 holds 1..=4; node 3 holds nothing yet.
    fn lagging_group() -> RaftChecker {
        let mut checker = RaftChecker::default();
        for node in [1, 2, 3] {
            checker.record(Event::Durable { node, group: 3, index: 0 });
        }
        for index in 1..=10 {
            checker.record(Event::Appended { node: 1, group: 3, index, term: 1, checksum: index as u32 });
            let applied = Event::Applied {
                node: 1,
                incarnation: 1,
                group: 3,
                index,
                term: 1,
                checksum: index as u32,
                base_offset: index,
                offset_next: index + 1,
            };
            checker.record(applied);
            if index <= 4 {
                checker.record(Event::Appended { node: 2, group: 3, index, term: 1, checksum: index as u32 });
            }
        }
        checker
    }

    #[test]
    fn r12_retention_stays_below_the_applied_bound_and_a_lagging_replica_gets_a_snapshot() {
        // R12 a: deleting up to the applied index is fine; past it is not, whatever the node says.
        let mut checker = lagging_group();
        checker.record(Event::LogStart { node: 1, incarnation: 1, group: 3, first_index: 8, offset_start: 8, commit: 10, applied: 10 });
        assert!(checker.violations().is_empty(), "{:?}", checker.violations());
        assert_eq!(checker.retention, RetentionCounts { log_starts_moved: 1, replicas_lagging: 2, snapshots_served: 0 });
        let mut past = lagging_group();
        past.record(Event::LogStart { node: 1, incarnation: 1, group: 3, first_index: 12, offset_start: 12, commit: 11, applied: 11 });
        assert_eq!(past.violations()[0].invariant, "R12", "{:?}", past.violations());
        let mut above_commit = lagging_group();
        above_commit.record(Event::LogStart { node: 1, incarnation: 1, group: 3, first_index: 9, offset_start: 9, commit: 5, applied: 10 });
        assert_eq!(above_commit.violations()[0].invariant, "R12");

        // R12 b: nodes 2 and 3 need entries up to 7; node 2 gets a snapshot, node 3 never does.
        assert_eq!(checker.retention_lag_unserved(&[]).len(), 2);
        checker.record(Event::Restored { node: 2, incarnation: 2, group: 3, index: 9, offset_next: 10 });
        checker.record(Event::Appended { node: 2, group: 3, index: 10, term: 1, checksum: 10 });
        assert!(checker.violations().is_empty(), "{:?}", checker.violations());
        assert_eq!(checker.retention.snapshots_served, 1);
        let unserved = checker.retention_lag_unserved(&[]);
        assert_eq!(unserved.len(), 1, "{unserved:?}");
        assert!(unserved[0].starts_with("R12: group 3: node 3"), "{unserved:?}");
        assert!(checker.retention_lag_unserved(&[3]).is_empty(), "a node given up is not waited for");
        // Node 3 appending past its log end without a snapshot: a gap (R12 b).
        checker.record(Event::Appended { node: 3, group: 3, index: 9, term: 1, checksum: 9 });
        assert_eq!(checker.violations()[0].invariant, "R12", "{:?}", checker.violations());
    }

    #[test]
    fn the_checker_catches_each_planted_inconsistency_and_passes_a_clean_run() {
        let clean = [
            Event::Leader { node: 1, group: 7, term: 2 },
            Event::Appended { node: 1, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Appended { node: 2, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 5, term: 2, checksum: 0xaa, base_offset: 50, offset_next: 60 },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 6, term: 2, checksum: 0xbb, base_offset: 60, offset_next: 70 },
            Event::Applied { node: 2, incarnation: 2, group: 7, index: 5, term: 2, checksum: 0xaa, base_offset: 50, offset_next: 60 },
            // A restarted node (new incarnation) applies from its own start again.
            Event::Applied { node: 2, incarnation: 3, group: 7, index: 1, term: 1, checksum: 0x11, base_offset: 10, offset_next: 20 },
            // A new leader holds every entry applied so far (R3).
            Event::Appended { node: 2, group: 7, index: 1, term: 1, checksum: 0x11 },
            Event::Appended { node: 2, group: 7, index: 6, term: 2, checksum: 0xbb },
            Event::Durable { node: 2, group: 7, index: 6 },
            Event::Leader { node: 2, group: 7, term: 3 },
            Event::Appended { node: 2, group: 7, index: 40, term: 3, checksum: 0x40 },
            Event::Restored { node: 1, incarnation: 1, group: 7, index: 40, offset_next: 410 },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 41, term: 3, checksum: 0x41, base_offset: 410, offset_next: 420 },
            Event::Appended { node: 1, group: 7, index: 41, term: 3, checksum: 0x41 },
            Event::Durable { node: 1, group: 7, index: 41 },
            Event::Durable { node: 2, group: 7, index: 40 },
            Event::Durable { node: 3, group: 7, index: 12 },
            Event::Acked { node: 1, group: 7, index: 40, term: 3, voters: 3 },
            Event::AppendAccepted { node: 2, group: 7, to: 1, index: 40, durable_index: 40 },
            Event::VoteGranted { node: 2, group: 7, to: 1, term: 3, term_saved: 3, vote_saved: 1 },
            Event::VoteGranted { node: 3, group: 7, to: 1, term: 3, term_saved: 4, vote_saved: 2 },
            // A torn tail beyond what node 3 reported durable.
            Event::RecoveryCut { node: 3, group: 7, index: 13, suspect: false },
            // Node 2 lost entries it had made durable, holds itself suspect, and votes only
            // after it cleared.
            Event::RecoveryCut { node: 2, group: 7, index: 40, suspect: true },
            // A suspect votes for a candidate it judged complete.
            Event::Suspect { node: 3, group: 9, cut: 5, bound: 6, term: 2 },
            Event::SuspectVote { node: 3, group: 9, to: 1, term: 4, last_term: 3, last_index: 6, bound: 6 },
            Event::VoteGranted { node: 3, group: 9, to: 1, term: 4, term_saved: 4, vote_saved: 1 },
            Event::Suspect { node: 2, group: 7, cut: 40, bound: 40, term: 4 },
            // Its log reopens short of what it reported durable: the cut says why. Its hard
            // state reopens at the suspicion's new term (no vote), past the vote it saved.
            Event::Opened { node: 2, group: 7, index: 39, term: 4, vote: 0 },
            Event::Durable { node: 2, group: 7, index: 39 },
            Event::Durable { node: 2, group: 7, index: 40 },
            Event::SuspectCleared { node: 2, group: 7, durable: 40 },
            Event::VoteGranted { node: 2, group: 7, to: 1, term: 5, term_saved: 5, vote_saved: 1 },
        ];
        let mut checker = RaftChecker::default();
        clean.into_iter().for_each(|event| checker.record(event));
        assert!(checker.violations().is_empty(), "{:?}", checker.violations());
        assert_eq!(checker.applied_by_node()[&7].values().max(), Some(&41), "the highest index applied");
        // Node 2's latest incarnation (3) applied index 1; node 1's applied 41.
        assert_eq!(checker.applied_by_node(), BTreeMap::from([(7, BTreeMap::from([(1, 41), (2, 1)]))]));

        let planted = [
            ("R1", vec![Event::Leader { node: 1, group: 7, term: 3 }]),
            ("R2", vec![Event::Appended { node: 3, group: 7, index: 5, term: 2, checksum: 0xab }]),
            (
                "R3",
                vec![Event::Applied {
                    node: 1,
                    incarnation: 1,
                    group: 7,
                    index: 43,
                    term: 3,
                    checksum: 0xcc,
                    base_offset: 430,
                    offset_next: 440,
                }],
            ),
            (
                "R4",
                vec![Event::Applied {
                    node: 3,
                    incarnation: 4,
                    group: 7,
                    index: 6,
                    term: 3,
                    checksum: 0xbb,
                    base_offset: 60,
                    offset_next: 70,
                }],
            ),
            ("R5", vec![Event::Acked { node: 1, group: 7, index: 41, term: 3, voters: 3 }]),
            ("R6", vec![Event::AppendAccepted { node: 2, group: 7, to: 1, index: 41, durable_index: 40 }]),
            ("R6", vec![Event::VoteGranted { node: 3, group: 7, to: 1, term: 5, term_saved: 4, vote_saved: 2 }]),
            ("R6", vec![Event::VoteGranted { node: 3, group: 7, to: 1, term: 4, term_saved: 4, vote_saved: 0 }]),
            // Node 3 never wrote entry 1, which node 2 applied.
            ("R3", vec![Event::Leader { node: 3, group: 7, term: 8 }]),
            // Durable far enough on node 3, but with another entry at index 41.
            (
                "R5",
                vec![
                    Event::Appended { node: 3, group: 7, index: 41, term: 2, checksum: 0x39 },
                    Event::Durable { node: 3, group: 7, index: 41 },
                    Event::Acked { node: 1, group: 7, index: 41, term: 3, voters: 3 },
                ],
            ),
            ("R8", vec![Event::RecoveryCut { node: 3, group: 7, index: 12, suspect: false }]),
            // A log reopened short of what node 3 reported durable, with no cut.
            ("R6", vec![Event::Durable { node: 3, group: 7, index: 50 }, Event::Opened { node: 3, group: 7, index: 49, term: 4, vote: 2 }]),
            // A cut at an earlier opening excuses no later one.
            (
                "R6",
                vec![
                    Event::Durable { node: 3, group: 7, index: 50 },
                    Event::RecoveryCut { node: 3, group: 7, index: 51, suspect: false },
                    Event::Opened { node: 3, group: 7, index: 50, term: 4, vote: 2 },
                    Event::Opened { node: 3, group: 7, index: 49, term: 4, vote: 2 },
                ],
            ),
            // Node 3 voted with term 4, vote 2 saved; its hard state reopens with another vote in
            // that term, or an older term (a damaged copy won over the intact one): R8 c.
            ("R8", vec![Event::Opened { node: 3, group: 7, index: 12, term: 4, vote: 1 }]),
            ("R8", vec![Event::Opened { node: 3, group: 7, index: 12, term: 3, vote: 2 }]),
            ("R8", vec![Event::RecoveryCut { node: 3, group: 7, index: 11, suspect: true }]),
            ("R8", vec![Event::VoteGranted { node: 2, group: 7, to: 3, term: 3, term_saved: 3, vote_saved: 3 }]),
            (
                "R8",
                vec![
                    Event::Suspect { node: 3, group: 7, cut: 12, bound: 12, term: 4 },
                    Event::VoteGranted { node: 3, group: 7, to: 1, term: 6, term_saved: 6, vote_saved: 1 },
                ],
            ),
            ("R8", vec![Event::Suspect { node: 1, group: 7, cut: 42, bound: 42, term: 4 }, Event::Leader { node: 1, group: 7, term: 9 }]),
            (
                "R8",
                vec![
                    Event::RecoveryCut { node: 1, group: 7, index: 41, suspect: true },
                    Event::Suspect { node: 1, group: 7, cut: 41, bound: 40, term: 4 },
                ],
            ),
            (
                "R8",
                vec![
                    Event::Suspect { node: 3, group: 7, cut: 12, bound: 12, term: 4 },
                    Event::SuspectVote { node: 3, group: 7, to: 1, term: 6, last_term: 3, last_index: 20, bound: 12 },
                ],
            ),
            // A candidate whose log ends in a recent term but short of the bound.
            (
                "R8",
                vec![
                    Event::Suspect { node: 3, group: 7, cut: 12, bound: 14, term: 4 },
                    Event::SuspectVote { node: 3, group: 7, to: 1, term: 6, last_term: 5, last_index: 13, bound: 14 },
                ],
            ),
            // A bound above the suspicion's own.
            (
                "R8",
                vec![
                    Event::Suspect { node: 3, group: 7, cut: 12, bound: 14, term: 4 },
                    Event::SuspectVote { node: 3, group: 7, to: 1, term: 6, last_term: 5, last_index: 20, bound: 15 },
                ],
            ),
            // Index 7 does not start where index 6 ends.
            (
                "R4",
                vec![Event::Applied {
                    node: 3,
                    incarnation: 9,
                    group: 7,
                    index: 7,
                    term: 2,
                    checksum: 0xcc,
                    base_offset: 65,
                    offset_next: 70,
                }],
            ),
            // A snapshot at 6 that continues at another offset than the entry applied there.
            ("R4", vec![Event::Restored { node: 3, incarnation: 9, group: 7, index: 6, offset_next: 99 }]),
            // A snapshot below what this incarnation applied already.
            ("R3", vec![Event::Restored { node: 1, incarnation: 1, group: 7, index: 30, offset_next: 310 }]),
        ];
        for (invariant, bad) in planted {
            let mut checker = RaftChecker::default();
            clean.into_iter().for_each(|event| checker.record(event));
            bad.iter().for_each(|&event| checker.record(event));
            let ids: Vec<&str> = checker.violations().iter().map(|v| v.invariant).collect();
            assert_eq!(ids, vec![invariant], "{bad:?}");
        }
    }

    #[test]
    fn a_wiped_node_votes_only_once_its_log_is_durable_past_what_was_applied_before_the_wipe() {
        let before = [
            Event::Appended { node: 2, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Durable { node: 2, group: 7, index: 5 },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 5, term: 2, checksum: 0xaa, base_offset: 50, offset_next: 60 },
        ];
        let wiped = || {
            let mut checker = RaftChecker::default();
            before.into_iter().for_each(|event| checker.record(event));
            checker.record_wipe(2);
            checker.record(Event::Durable { node: 2, group: 7, index: 0 });
            checker
        };
        let vote = Event::VoteGranted { node: 2, group: 7, to: 3, term: 4, term_saved: 4, vote_saved: 3 };
        let mut early = wiped();
        early.record(vote);
        let ids: Vec<&str> = early.violations().iter().map(|v| v.invariant).collect();
        assert_eq!(ids, vec!["R8"], "{:?}", early.violations());
        let mut caught_up = wiped();
        caught_up.record(Event::Durable { node: 2, group: 7, index: 5 });
        caught_up.record(vote);
        assert!(caught_up.violations().is_empty(), "{:?}", caught_up.violations());
        let mut other_group = wiped();
        other_group.record(Event::VoteGranted { node: 2, group: 8, to: 3, term: 4, term_saved: 4, vote_saved: 3 });
        assert!(other_group.violations().is_empty(), "a group with nothing applied before the wipe");
    }

    #[test]
    fn a_wiped_node_of_a_pair_votes_early_only_for_the_other_voter_holding_everything_applied() {
        let conf = |voters: &[NodeId]| Event::ConfApplied {
            node: 3,
            incarnation: 1,
            group: 7,
            index: 1,
            conf: Conf { voters: NodeSet::of(voters), ..Conf::default() },
            source: odradek_consensus::observe::ConfSource::Opened,
        };
        let wiped = |voters: &[NodeId], held_by_3: u64| {
            let mut checker = RaftChecker::default();
            checker.record(conf(voters));
            checker.record(Event::Appended { node: 3, group: 7, index: 5, term: 2, checksum: 0xaa });
            checker.record(Event::Durable { node: 3, group: 7, index: held_by_3 });
            checker.record(Event::Applied {
                node: 3,
                incarnation: 1,
                group: 7,
                index: 5,
                term: 2,
                checksum: 0xaa,
                base_offset: 50,
                offset_next: 60,
            });
            checker.record_wipe(2);
            checker.record(Event::VoteGranted { node: 2, group: 7, to: 3, term: 4, term_saved: 4, vote_saved: 3 });
            checker.violations().iter().map(|v| v.invariant).collect::<Vec<_>>()
        };
        assert!(wiped(&[2, 3], 5).is_empty(), "the other voter of two holds everything applied");
        assert_eq!(wiped(&[1, 2, 3], 5), vec!["R8"], "of three voters, 2 and 3 are a quorum without 1");
        assert_eq!(wiped(&[2, 3], 4), vec!["R8"], "a candidate short of what was applied");
    }

    #[test]
    fn a_wiped_learner_is_promoted_on_its_old_acknowledgements_only_until_it_restarts() {
        let wiped = || {
            let mut checker = RaftChecker::default();
            checker.record(Event::Durable { node: 4, group: 7, index: 125 });
            checker.record_wipe(4);
            checker
        };
        let promoted = Event::Promoted { node: 2, group: 7, voter: 4, commit: 125 };
        let ids = |checker: &RaftChecker| checker.violations().iter().map(|v| v.invariant).collect::<Vec<&str>>();
        // Still down: the leader cannot have heard of the wipe.
        let mut down = wiped();
        down.record(promoted);
        assert_eq!(ids(&down), Vec::<&str>::new());
        // Restarted (its new incarnation reported something): judged by what it holds now.
        let mut restarted = wiped();
        restarted.record(Event::Opened { node: 4, group: 0, index: 0, term: 0, vote: 0 });
        restarted.record(promoted);
        assert_eq!(ids(&restarted), vec!["R11"]);
        let mut caught_up = wiped();
        caught_up.record(Event::Durable { node: 4, group: 7, index: 125 });
        caught_up.record(promoted);
        assert_eq!(ids(&caught_up), Vec::<&str>::new());
    }

    /// R13: a hand-over fails only when its target must not lead and every acknowledgement at
    /// the match index the leader relied on said so.
    #[test]
    fn no_hand_over_to_a_replica_that_said_it_leads_not() {
        use odradek_consensus::observe::HandOverCause;
        let ids = |checker: &RaftChecker| checker.violations().iter().map(|v| v.invariant).collect::<Vec<&str>>();
        let ack = |index| Event::AppendAccepted { node: 3, group: 7, to: 1, index, durable_index: index };
        let hand_over = |matched| Event::HandOver { node: 1, group: 7, to: 3, cause: HandOverCause::Balance, matched };
        let suspect = Event::Suspect { node: 3, group: 7, cut: 5, bound: 9, term: 2 };
        // Suspect before it acknowledged index 9: the leader heard it, and handed over anyway.
        let mut told = RaftChecker::default();
        told.record(suspect);
        told.record(ack(9));
        told.record(hand_over(9));
        assert_eq!(ids(&told), vec!["R13"]);
        assert_eq!(told.hand_overs_judged(), 1);
        // Turned suspect after its acknowledgement: the leader could not know.
        let mut late = RaftChecker::default();
        late.record(ack(9));
        late.record(suspect);
        late.record(hand_over(9));
        assert_eq!(ids(&late), Vec::<&str>::new());
        // One of two acknowledgements at the index left before: the leader may have heard that one last.
        let mut mixed = RaftChecker::default();
        mixed.record(ack(9));
        mixed.record(suspect);
        mixed.record(ack(9));
        mixed.record(hand_over(9));
        assert_eq!(ids(&mixed), Vec::<&str>::new());
        // Settled by the hand-over: fine.
        let mut settled = RaftChecker::default();
        settled.record(suspect);
        settled.record(ack(9));
        settled.record(Event::SuspectCleared { node: 3, group: 7, durable: 9 });
        settled.record(hand_over(9));
        assert_eq!(ids(&settled), Vec::<&str>::new());
        // A passive (quarantined) node, until it is passive no more; a wipe forgets it.
        let mut passive = RaftChecker::default();
        passive.record(Event::Passive { node: 3, passive: true });
        passive.record(ack(9));
        passive.record(hand_over(9));
        assert_eq!(ids(&passive), vec!["R13"]);
        passive.record(Event::Passive { node: 3, passive: false });
        passive.record(hand_over(9));
        assert_eq!(ids(&passive), vec!["R13"], "passive no more");
        let mut wiped = RaftChecker::default();
        wiped.record(Event::Passive { node: 3, passive: true });
        wiped.record(ack(9));
        wiped.record_wipe(3);
        wiped.record(hand_over(9));
        assert_eq!(ids(&wiped), Vec::<&str>::new());
    }

    #[test]
    fn a_hard_state_reopens_with_every_vote_it_saved_unless_the_replica_started_over() {
        let voted = || {
            let mut checker = RaftChecker::default();
            checker.record(Event::VoteGranted { node: 2, group: 7, to: 3, term: 4, term_saved: 4, vote_saved: 3 });
            // A late grant for term 5's request, sent with term 6 saved and no vote in it yet.
            checker.record(Event::VoteGranted { node: 2, group: 7, to: 3, term: 5, term_saved: 6, vote_saved: 0 });
            checker.record(Event::VoteGranted { node: 2, group: 7, to: 1, term: 6, term_saved: 6, vote_saved: 1 });
            checker
        };
        let ids = |checker: &RaftChecker| checker.violations().iter().map(|v| v.invariant).collect::<Vec<&str>>();
        for (term, vote, expected) in [(6, 1, vec![]), (7, 0, vec![]), (6, 0, vec!["R8"]), (6, 3, vec!["R8"]), (4, 3, vec!["R8"])] {
            let mut checker = voted();
            checker.record(Event::Opened { node: 2, group: 7, index: 0, term, vote });
            assert_eq!(ids(&checker), expected, "reopened at term {term}, vote {vote}");
        }
        // Only a late grant seen in term 6, with no vote saved in it yet: any vote may follow.
        let mut late = RaftChecker::default();
        late.record(Event::VoteGranted { node: 2, group: 7, to: 3, term: 5, term_saved: 6, vote_saved: 0 });
        late.record(Event::Opened { node: 2, group: 7, index: 0, term: 6, vote: 4 });
        assert_eq!(ids(&late), Vec::<&str>::new());
        late.record(Event::Opened { node: 2, group: 7, index: 0, term: 5, vote: 3 });
        assert_eq!(ids(&late), vec!["R8"], "a term below the saved one");
        // Another node, another group: nothing saved there.
        let mut checker = voted();
        checker.record(Event::Opened { node: 1, group: 7, index: 0, term: 0, vote: 0 });
        checker.record(Event::Opened { node: 2, group: 8, index: 0, term: 0, vote: 0 });
        assert_eq!(ids(&checker), Vec::<&str>::new());
        // A wiped directory, a replaced disk or a destroyed replica starts over.
        let mut wiped = voted();
        wiped.record_wipe(2);
        wiped.record(Event::Opened { node: 2, group: 7, index: 0, term: 1, vote: 0 });
        let mut replaced = voted();
        replaced.record_disk_replaced(2);
        replaced.record(Event::Opened { node: 2, group: 7, index: 0, term: 3, vote: 0 });
        let mut destroyed = voted();
        destroyed.record(Event::Destroyed { node: 2, group: 7 });
        destroyed.record(Event::Opened { node: 2, group: 7, index: 0, term: 0, vote: 0 });
        for checker in [wiped, replaced, destroyed] {
            assert_eq!(ids(&checker), Vec::<&str>::new());
        }
    }

    #[test]
    fn the_checks_a_harness_feeds_catch_what_they_guard() {
        let base = [
            Event::Leader { node: 1, group: 7, term: 2 },
            Event::Appended { node: 1, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Appended { node: 2, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Appended { node: 3, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Durable { node: 1, group: 7, index: 5 },
            Event::Durable { node: 2, group: 7, index: 5 },
            Event::Durable { node: 3, group: 7, index: 4 },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 5, term: 2, checksum: 0xaa, base_offset: 50, offset_next: 60 },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 6, term: 2, checksum: 0xbb, base_offset: 60, offset_next: 70 },
        ];
        let checker = || {
            let mut checker = RaftChecker::default();
            base.into_iter().for_each(|event| checker.record(event));
            checker.record_commit(1, 7, 5);
            checker.record_commit(1, 7, 7);
            checker.record_start(2, 7, 6);
            checker.record_ack(7, 5, 2, &[&[1, 2, 3]]);
            let log = |node, entries: &[(u64, u64, u32)], commit_index, newest_leader| ReplicaLog {
                node,
                entries: entries.iter().map(|&(index, term, checksum)| (index, (term, checksum))).collect(),
                synced_index: entries.last().map_or(0, |&(index, _, _)| index),
                commit_index,
                last_index: entries.last().map_or(0, |&(index, _, _)| index),
                newest_leader,
            };
            let leader = log(1, &[(5, 2, 0xaa), (6, 2, 0xbb), (7, 3, 0xcc)], 6, true);
            checker.check_logs(7, &[leader, log(2, &[(5, 2, 0xaa), (6, 2, 0xbb)], 5, false)]);
            assert!(checker.violations().is_empty(), "{:?}", checker.violations());
            (checker, log)
        };
        let (_, log) = checker();
        type Plant = Box<dyn Fn(&mut RaftChecker)>;
        let planted: [(&str, Plant); 6] = [
            ("R3", Box::new(|c| c.record_commit(1, 7, 6))),
            ("R3", Box::new(|c| c.record_start(3, 7, 9))),
            // Durable on nodes 1 and 2 only: a majority of 1, 2, 3, not of the incoming half.
            ("R5", Box::new(|c| c.record_ack(7, 5, 2, &[&[1, 2, 3], &[3, 4, 5]]))),
            // Same entry at 6, different entries at 5; node 2's commit is below both.
            (
                "R2",
                Box::new(move |c| {
                    c.check_logs(7, &[log(1, &[(5, 2, 0xaa), (6, 2, 0xbb)], 6, true), log(2, &[(5, 2, 0xab), (6, 2, 0xbb)], 4, false)])
                }),
            ),
            // The newest leader lacks applied entry 6.
            ("R3", Box::new(move |c| c.check_logs(7, &[log(3, &[(5, 2, 0xaa)], 5, true)]))),
            // Another entry at committed index 5.
            ("R3", Box::new(move |c| c.check_logs(7, &[log(3, &[(5, 3, 0xdd), (6, 2, 0xbb)], 6, false)]))),
        ];
        for (invariant, plant) in planted {
            let (mut checker, _) = checker();
            plant(&mut checker);
            let ids: Vec<&str> = checker.violations().iter().map(|v| v.invariant).collect();
            assert_eq!(ids, vec![invariant], "{:?}", checker.violations());
        }
    }
}
