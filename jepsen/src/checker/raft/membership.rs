//! Membership checks of the raft checker (issue 15, F-M1/F-M2), over the configurations every
//! replica reports ([`Event::ConfApplied`]) and the promotions leaders report
//! ([`Event::Promoted`]):
//!
//! - **R10 a — configurations overlap.** Every replica that applies a conf change at an index
//!   holds the same configuration after it (the first one seen there is canonical), and within
//!   one opening of a replica each configuration is one step from the one before: entering joint
//!   consensus (the outgoing voters are the voters before), leaving it (the voters stay the
//!   incoming ones), or a simple change (voters differ by at most one node; learners may come and
//!   go). Two configurations one such step apart always share a quorum, so a group never has two
//!   configurations that could each decide without the other.
//! - **R10 b — no removal below the replication factor.** No configuration (each half of a joint
//!   one counted alone) has fewer voters than the group was created with: a reassignment never
//!   lowers the replication factor, so a fault the group survived before a move it survives
//!   during it (a group of 3 voters brought to 2 loses its quorum of live voters to one kill).
//! - **R11 — promoted when caught up.** A node that becomes a voter by a change was a learner in
//!   the configuration before (learners first), and when its leader proposed the promotion the
//!   node's log was durable up to the commit index the leader judged it by.
//!
//! Applied, restored (snapshot) and opened configurations are kept per (group, node); a snapshot
//! or an opening starts a new chain (a jump from wherever the replica was is no step).
//! Bounded by the run: one small entry per conf change and per replica.

use std::collections::BTreeMap;

use odradek_consensus::observe::{Conf, ConfSource, NodeSet};
use odradek_consensus::{GroupId, NodeId};

/// One membership violation: the invariant and what shows it.
pub(super) type Finding = (&'static str, GroupId, String);

/// What the membership checks remember.
#[derive(Debug, Default)]
pub(super) struct Membership {
    /// (group, index) -> the configuration first applied at that conf change, and by whom.
    canonical: BTreeMap<(GroupId, u64), (Conf, NodeId)>,
    /// (group, node) -> the replica's configuration now, and the index it holds it from.
    current: BTreeMap<(GroupId, NodeId), (Conf, u64)>,
    /// group -> its voters at creation (the configuration a replica opened it with at index 0).
    voters_initial: BTreeMap<GroupId, NodeSet>,
    /// group -> the configuration at the highest conf-change index applied anywhere.
    latest: BTreeMap<GroupId, (u64, Conf)>,
}

impl Membership {
    /// R10 and the learner half of R11 for one reported configuration.
    pub(super) fn conf_applied(&mut self, node: NodeId, group: GroupId, index: u64, conf: Conf, source: ConfSource) -> Vec<Finding> {
        let mut findings = Vec::new();
        if conf.voters.is_empty() {
            findings.push(("R10", group, format!("node {node} holds a configuration without voters at index {index}: {conf}")));
        }
        if source == ConfSource::Opened && index == 0 {
            let initial = *self.voters_initial.entry(group).or_insert(conf.voters);
            if initial != conf.voters {
                findings.push((
                    "R10",
                    group,
                    format!("node {node} created the group with voters {:?}; it was created with {:?}", conf.voters.ids(), initial.ids()),
                ));
            }
        }
        if source != ConfSource::Restored {
            // A snapshot's index is no conf change's: only changes and saved ones are compared.
            let (first, by) = *self.canonical.entry((group, index)).or_insert((conf, node));
            if first != conf {
                findings.push(("R10", group, format!("at index {index} node {by} holds {first}, node {node} holds {conf}")));
            }
        }
        if let Some(&initial) = self.voters_initial.get(&group) {
            let halves = [conf.voters, conf.voters_outgoing];
            if halves.iter().any(|half| !half.is_empty() && half.len() < initial.len()) {
                findings.push((
                    "R10",
                    group,
                    format!(
                        "node {node} applied {conf} at index {index}: fewer voters than the {} the group was created with (R10 b)",
                        initial.len()
                    ),
                ));
            }
        }
        let previous = self.current.insert((group, node), (conf, index));
        if source == ConfSource::Applied {
            if let Some((before, at)) = previous {
                if let Err(why) = one_step(&before, &conf) {
                    findings.push(("R10", group, format!("node {node} went from {before} (index {at}) to {conf} (index {index}): {why}")));
                }
                let joined = conf.voters.minus(before.voters).minus(before.voters_outgoing);
                for voter in joined.ids() {
                    if !before.learners.contains(voter) {
                        findings.push((
                            "R11",
                            group,
                            format!("node {voter} became a voter at index {index} without being a learner before ({before})"),
                        ));
                    }
                }
            }
        }
        let latest = self.latest.entry(group).or_insert((index, conf));
        if index > latest.0 {
            *latest = (index, conf);
        }
        findings
    }

    /// `node` destroyed its replica of `group`: its next one starts a new chain.
    pub(super) fn forget(&mut self, group: GroupId, node: NodeId) {
        self.current.remove(&(group, node));
    }

    /// The nodes in `group`'s newest configuration (voters, outgoing voters and learners), as
    /// applied anywhere; `None` if no replica reported one.
    pub(super) fn members(&self, group: GroupId) -> Option<NodeSet> {
        self.latest.get(&group).map(|(_, conf)| NodeSet(conf.voters.0 | conf.voters_outgoing.0 | conf.learners.0))
    }

    /// The newest configuration of each group, with its index.
    pub(super) fn latest(&self) -> &BTreeMap<GroupId, (u64, Conf)> {
        &self.latest
    }
}

/// Whether `after` is one step from `before` (module documentation, R10 a); why not if not.
fn one_step(before: &Conf, after: &Conf) -> Result<(), String> {
    match (before.joint(), after.joint()) {
        (false, true) if after.voters_outgoing == before.voters => Ok(()),
        (false, true) => Err("the joint configuration's outgoing voters are not the voters before".to_string()),
        (true, false) if after.voters == before.voters => Ok(()),
        (true, false) => Err("leaving joint consensus changed the incoming voters".to_string()),
        (true, true) if after.voters == before.voters && after.voters_outgoing == before.voters_outgoing => Ok(()),
        (true, true) => Err("a second change while joint".to_string()),
        (false, false) if before.voters.difference_symmetric(after.voters).len() <= 1 => Ok(()),
        (false, false) => Err("a simple change of more than one voter".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[NodeId], outgoing: &[NodeId], learners: &[NodeId]) -> Conf {
        Conf { voters: NodeSet::of(voters), voters_outgoing: NodeSet::of(outgoing), learners: NodeSet::of(learners) }
    }

    fn invariants(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|(invariant, _, _)| *invariant).collect()
    }

    /// A whole swap of node 1 for node 4 the way `server::reassign` does it: no finding.
    #[test]
    fn a_reassignment_through_joint_consensus_passes() {
        let mut membership = Membership::default();
        let steps = [
            (0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened),
            (10, conf(&[1, 2, 3], &[], &[4]), ConfSource::Applied),
            (20, conf(&[2, 3, 4], &[1, 2, 3], &[]), ConfSource::Applied),
            (21, conf(&[2, 3, 4], &[], &[]), ConfSource::Applied),
        ];
        for node in 1..=3 {
            for (index, conf, source) in steps {
                assert_eq!(membership.conf_applied(node, 1, index, conf, source), vec![], "node {node} index {index}");
            }
        }
        assert_eq!(membership.members(1), Some(NodeSet::of(&[2, 3, 4])));
    }

    // R10 a: a jump of two voters, a second change while joint, and a replica that applied
    // another configuration at the same index.
    #[test]
    fn configurations_more_than_one_step_apart_are_caught() {
        let mut membership = Membership::default();
        assert!(membership.conf_applied(1, 1, 0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened).is_empty());
        let jump = membership.conf_applied(1, 1, 5, conf(&[1, 4, 5], &[], &[4, 5]), ConfSource::Applied);
        assert!(invariants(&jump).contains(&"R10"), "{jump:?}");
        let mut membership = Membership::default();
        membership.conf_applied(1, 1, 0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened);
        assert!(membership.conf_applied(1, 1, 5, conf(&[1, 2, 4], &[1, 2, 3], &[]), ConfSource::Applied).len() == 1); // 4 no learner
        let twice = membership.conf_applied(1, 1, 6, conf(&[1, 2, 5], &[1, 2, 3], &[]), ConfSource::Applied);
        assert!(invariants(&twice).contains(&"R10"), "{twice:?}");
        let other = membership.conf_applied(2, 1, 6, conf(&[1, 2, 4], &[1, 2, 3], &[]), ConfSource::Applied);
        assert_eq!(invariants(&other), vec!["R10"], "{other:?}");
    }

    // R10 b: removing a voter of three before its replacement is promoted.
    #[test]
    fn a_removal_below_the_replication_factor_is_caught() {
        let mut membership = Membership::default();
        membership.conf_applied(2, 1, 0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened);
        membership.conf_applied(2, 1, 10, conf(&[1, 2, 3], &[], &[4]), ConfSource::Applied);
        let removed = membership.conf_applied(2, 1, 11, conf(&[2, 3], &[], &[4]), ConfSource::Applied);
        assert_eq!(invariants(&removed), vec!["R10"], "{removed:?}");
        assert!(removed[0].2.contains("R10 b"));
    }

    // R11: a voter that was never a learner.
    #[test]
    fn a_voter_added_without_being_a_learner_is_caught() {
        let mut membership = Membership::default();
        membership.conf_applied(1, 1, 0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened);
        let added = membership.conf_applied(1, 1, 3, conf(&[1, 2, 3, 4], &[], &[]), ConfSource::Applied);
        assert_eq!(invariants(&added), vec!["R11"], "{added:?}");
    }

    // A snapshot or an opening is a jump, not a step; a joiner created with other bootstrap
    // voters is caught.
    #[test]
    fn snapshots_restart_the_chain_and_bootstraps_must_agree() {
        let mut membership = Membership::default();
        membership.conf_applied(1, 1, 0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened);
        assert!(membership.conf_applied(4, 1, 0, conf(&[1, 2, 3], &[], &[]), ConfSource::Opened).is_empty());
        assert!(membership.conf_applied(4, 1, 40, conf(&[2, 3, 4], &[], &[]), ConfSource::Restored).is_empty());
        let wrong = membership.conf_applied(5, 1, 0, conf(&[2, 3, 4], &[], &[]), ConfSource::Opened);
        assert!(invariants(&wrong).contains(&"R10"), "{wrong:?}");
    }
}
