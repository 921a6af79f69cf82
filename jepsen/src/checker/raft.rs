//! The raft checker: CHECKLISTS R1 to R6 and R8 over the events every replica reports through
//! `odradek_consensus::observe` (the simulator installs it for a whole run; the consensus
//! crate's deterministic cluster test for each of its schedules).

use std::collections::{BTreeMap, BTreeSet};

use odradek_consensus::observe::Event;
use odradek_consensus::{GroupId, NodeId};

/// One broken invariant, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `R1` to `R6`, or `R8`.
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
/// indexes grow by one), R4 (every replica applies the same (term, checksum) at an index), R5
/// (an acks=all acknowledgement finds the index durable on a quorum: judged by index, not by
/// entry, so a durable but divergent entry would count) and R6 (accepted appends and granted
/// votes are durable when sent) and R8 (c: no node votes for two candidates in one term, across
/// its restarts; e: recovery cuts off only entries the node never reported durable, unless the
/// node holds itself suspect for a range that covers them, and a suspect node neither leads nor
/// votes until it clears, except for a candidate it judged to hold all it lost).
/// Bounded by the run: one small map entry per appended index and term.
#[derive(Debug, Default)]
pub struct RaftChecker {
    leaders: BTreeMap<(GroupId, u64), NodeId>,
    appended: BTreeMap<(GroupId, u64, u64), (u32, NodeId)>,
    applied: BTreeMap<(GroupId, u64), (u64, u32, NodeId)>,
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
    /// (group, node) -> the suspicion's term, for every replica suspect now (R8 e), across its
    /// restarts.
    suspects: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, node) -> the durable index it had reported before a cut that made it suspect:
    /// the suspicion that follows must cover it.
    cut_below: BTreeMap<(GroupId, NodeId), u64>,
    /// (group, voter, candidate, term) a suspect voter judged to hold everything it lost.
    suspect_votes: BTreeSet<(GroupId, NodeId, NodeId, u64)>,
    violations: Vec<Violation>,
    pub events: u64,
}

/// Violations kept; later ones are only counted (the first ones say what broke).
pub const VIOLATIONS_KEPT: usize = 32;

impl RaftChecker {
    pub fn record(&mut self, event: Event) {
        self.events += 1;
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
                let missing = self.applied.range((group, restored + 1)..(group + 1, 0)).find(|(&(_, index), &(committed, _, _))| {
                    committed_by.get(&(group, index)).is_some_and(|&by| by < term)
                        && (index > durable || held.and_then(|entries| entries.get(&index)) != Some(&committed))
                });
                if let Some((&(_, index), &(committed, _, by))) = missing {
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
            }
            Event::RecoveryCut { node, group, index, suspect } => {
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
            }
            Event::SuspectVote { node, group, to, term, last_term, .. } => {
                let suspect_term = self.suspects.get(&(group, node)).copied().unwrap_or(0);
                if last_term < suspect_term {
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
            }
            Event::AppendAccepted { node, group, to, index, durable_index } => {
                if index > durable_index {
                    self.violate(
                        "R6",
                        group,
                        format!("node {node} told node {to} it holds index {index}; durable only to {durable_index}"),
                    );
                }
            }
            Event::VoteGranted { node, group, to, term, saved_term, saved_vote } => {
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
                if saved_term < term || (saved_term == term && saved_vote != to) {
                    self.violate(
                        "R6",
                        group,
                        format!(
                            "node {node} voted for node {to} in term {term}; its saved hard state: term {saved_term}, vote {saved_vote}"
                        ),
                    );
                }
            }
            Event::Acked { node, group, index, term, voters } => {
                // Replicas whose durable log holds this very entry (or a snapshot past it).
                let holds = |n: NodeId| {
                    self.restored_to.get(&(group, n)).is_some_and(|&at| at >= index)
                        || self.held.get(&(group, n)).and_then(|entries| entries.get(&index)) == Some(&term)
                };
                let durable: Vec<NodeId> = self
                    .durable
                    .range((group, 0)..=(group, NodeId::MAX))
                    .filter(|&(&(_, n), &at)| at >= index && holds(n))
                    .map(|(&(_, n), _)| n)
                    .collect();
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
            Event::Restored { node, incarnation, group, index } => {
                self.last_applied.insert((node, incarnation, group), index);
                let restored = self.restored_to.entry((group, node)).or_default();
                *restored = (*restored).max(index);
            }
            Event::Applied { node, incarnation, group, index, term, checksum } => {
                if let Some(&last) = self.last_applied.get(&(node, incarnation, group)) {
                    if index != last + 1 {
                        self.violate("R3", group, format!("node {node} applied index {index} right after {last}"));
                    }
                }
                self.last_applied.insert((node, incarnation, group), index);
                let highest = self.highest_leader_term.get(&group).copied().unwrap_or(0);
                self.committed_by.entry((group, index)).or_insert(highest);
                let (first_term, first_checksum, by) = *self.applied.entry((group, index)).or_insert((term, checksum, node));
                if (first_term, first_checksum) != (term, checksum) {
                    self.violate(
                        "R4",
                        group,
                        format!(
                            "index {index}: node {by} applied term {first_term} checksum {first_checksum:08x}, \
                             node {node} term {term} checksum {checksum:08x}"
                        ),
                    );
                }
            }
        }
    }

    fn violate(&mut self, invariant: &'static str, group: GroupId, detail: String) {
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(Violation { invariant, group, detail });
        }
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
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

    #[test]
    fn the_checker_catches_each_planted_inconsistency_and_passes_a_clean_run() {
        let clean = [
            Event::Leader { node: 1, group: 7, term: 2 },
            Event::Appended { node: 1, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Appended { node: 2, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 5, term: 2, checksum: 0xaa },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 6, term: 2, checksum: 0xbb },
            Event::Applied { node: 2, incarnation: 2, group: 7, index: 5, term: 2, checksum: 0xaa },
            // A restarted node (new incarnation) applies from its own start again.
            Event::Applied { node: 2, incarnation: 3, group: 7, index: 1, term: 1, checksum: 0x11 },
            // A new leader holds every entry applied so far (R3).
            Event::Appended { node: 2, group: 7, index: 1, term: 1, checksum: 0x11 },
            Event::Appended { node: 2, group: 7, index: 6, term: 2, checksum: 0xbb },
            Event::Durable { node: 2, group: 7, index: 6 },
            Event::Leader { node: 2, group: 7, term: 3 },
            Event::Appended { node: 2, group: 7, index: 40, term: 3, checksum: 0x40 },
            Event::Restored { node: 1, incarnation: 1, group: 7, index: 40 },
            Event::Applied { node: 1, incarnation: 1, group: 7, index: 41, term: 3, checksum: 0x41 },
            Event::Appended { node: 1, group: 7, index: 41, term: 3, checksum: 0x41 },
            Event::Durable { node: 1, group: 7, index: 41 },
            Event::Durable { node: 2, group: 7, index: 40 },
            Event::Durable { node: 3, group: 7, index: 12 },
            Event::Acked { node: 1, group: 7, index: 40, term: 3, voters: 3 },
            Event::AppendAccepted { node: 2, group: 7, to: 1, index: 40, durable_index: 40 },
            Event::VoteGranted { node: 2, group: 7, to: 1, term: 3, saved_term: 3, saved_vote: 1 },
            Event::VoteGranted { node: 3, group: 7, to: 1, term: 3, saved_term: 4, saved_vote: 2 },
            // A torn tail beyond what node 3 reported durable.
            Event::RecoveryCut { node: 3, group: 7, index: 13, suspect: false },
            // Node 2 lost entries it had made durable, holds itself suspect, and votes only
            // after it cleared.
            Event::RecoveryCut { node: 2, group: 7, index: 40, suspect: true },
            // A suspect votes for a candidate it judged complete.
            Event::Suspect { node: 3, group: 9, cut: 5, bound: 6, term: 2 },
            Event::SuspectVote { node: 3, group: 9, to: 1, term: 4, last_term: 3, last_index: 6 },
            Event::VoteGranted { node: 3, group: 9, to: 1, term: 4, saved_term: 4, saved_vote: 1 },
            Event::Suspect { node: 2, group: 7, cut: 40, bound: 40, term: 4 },
            Event::Durable { node: 2, group: 7, index: 39 },
            Event::Durable { node: 2, group: 7, index: 40 },
            Event::SuspectCleared { node: 2, group: 7, durable: 40 },
            Event::VoteGranted { node: 2, group: 7, to: 1, term: 5, saved_term: 5, saved_vote: 1 },
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
            ("R3", vec![Event::Applied { node: 1, incarnation: 1, group: 7, index: 43, term: 3, checksum: 0xcc }]),
            ("R4", vec![Event::Applied { node: 3, incarnation: 4, group: 7, index: 6, term: 3, checksum: 0xbb }]),
            ("R5", vec![Event::Acked { node: 1, group: 7, index: 41, term: 3, voters: 3 }]),
            ("R6", vec![Event::AppendAccepted { node: 2, group: 7, to: 1, index: 41, durable_index: 40 }]),
            ("R6", vec![Event::VoteGranted { node: 3, group: 7, to: 1, term: 5, saved_term: 4, saved_vote: 2 }]),
            ("R6", vec![Event::VoteGranted { node: 3, group: 7, to: 1, term: 4, saved_term: 4, saved_vote: 0 }]),
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
            ("R8", vec![Event::RecoveryCut { node: 3, group: 7, index: 11, suspect: true }]),
            ("R8", vec![Event::VoteGranted { node: 2, group: 7, to: 3, term: 3, saved_term: 3, saved_vote: 3 }]),
            (
                "R8",
                vec![
                    Event::Suspect { node: 3, group: 7, cut: 12, bound: 12, term: 4 },
                    Event::VoteGranted { node: 3, group: 7, to: 1, term: 6, saved_term: 6, saved_vote: 1 },
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
                    Event::SuspectVote { node: 3, group: 7, to: 1, term: 6, last_term: 3, last_index: 20 },
                ],
            ),
        ];
        for (invariant, bad) in planted {
            let mut checker = RaftChecker::default();
            clean.into_iter().for_each(|event| checker.record(event));
            bad.iter().for_each(|&event| checker.record(event));
            let ids: Vec<&str> = checker.violations().iter().map(|v| v.invariant).collect();
            assert_eq!(ids, vec![invariant], "{bad:?}");
        }
    }
}
