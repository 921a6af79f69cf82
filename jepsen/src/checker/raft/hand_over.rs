//! Leadership hand-overs (issue 15): **R13 — no hand-over to a replica that must not lead.**
//! A leader hands a group's leadership over (leader balancing, a transfer request, a
//! reassignment, a controller voter leaving, a passive, draining or low node's own hand-off:
//! [`Event::HandOver`]) never to a replica that is suspect in that group (from
//! [`Event::Suspect`] until [`Event::SuspectCleared`]) or on a passive node (quarantined: its
//! metadata group does not open, [`Event::Passive`]) when the acknowledgement the leader relies
//! on left it. Such a replica drops the hand-over, and the group's proposals stall for an
//! election timeout.
//!
//! What the leader can know: it counts a follower caught up through the follower's
//! acknowledgement at its match index (the hand-over reports that index), and a replica that
//! must not lead says so in each acknowledgement (consensus module `hand_over`). So R13 fails
//! a hand-over only when its target must not lead now *and* every acknowledgement it sent
//! that leader at the reported match index ([`Event::AppendAccepted`]) left while it must not
//! lead: whichever of them the leader heard last said so. A replica that turned suspect after
//! its last acknowledgement is not held against the leader (it cannot know yet; the replica
//! drops the hand-over, and raft gives up on it after an election timeout).
//!
//! Bounded: per (group, follower, leader) the last [`ACKS_KEPT`] acknowledged indexes.

use std::collections::{BTreeMap, BTreeSet};

use odradek_consensus::observe::HandOverCause;
use odradek_consensus::{GroupId, NodeId};

use super::membership::Finding;

/// Acknowledged indexes remembered per (group, follower, leader): a hand-over's match index is
/// the follower's latest acknowledgement the leader heard, a few at most behind its latest sent.
pub(super) const ACKS_KEPT: usize = 32;

/// What R13 remembers.
#[derive(Debug, Default)]
pub(super) struct HandOvers {
    /// Nodes passive now (quarantined).
    passive: BTreeSet<NodeId>,
    /// (group, follower, leader) -> acknowledged index -> every acknowledgement at that index
    /// left while the follower must not lead.
    acks: BTreeMap<(GroupId, NodeId, NodeId), BTreeMap<u64, bool>>,
    /// Hand-overs judged, for the coverage counters.
    pub(super) judged: u64,
}

impl HandOvers {
    pub(super) fn passive(&mut self, node: NodeId, passive: bool) {
        if passive {
            self.passive.insert(node);
        } else {
            self.passive.remove(&node);
        }
    }

    /// The harness wiped `node`: its next incarnation reports what it is.
    pub(super) fn wiped(&mut self, node: NodeId) {
        self.passive.remove(&node);
    }

    /// Why `node`'s replica of `group` must not lead now (`suspect`: the checker's own record).
    fn leads_not(&self, node: NodeId, suspect: bool) -> Option<&'static str> {
        match (suspect, self.passive.contains(&node)) {
            (true, _) => Some("suspect"),
            (false, true) => Some("on a quarantined (passive) node"),
            (false, false) => None,
        }
    }

    /// `node` acknowledged entries up to `index` of `group` to `leader`.
    pub(super) fn acknowledged(&mut self, group: GroupId, node: NodeId, leader: NodeId, index: u64, suspect: bool) {
        let leads_not = self.leads_not(node, suspect).is_some();
        let acks = self.acks.entry((group, node, leader)).or_default();
        let every = acks.entry(index).or_insert(true);
        *every = *every && leads_not;
        while acks.len() > ACKS_KEPT {
            acks.pop_first();
        }
    }

    /// R13 for `leader`'s hand-over of `group` to `to`, whose match index was `matched`.
    pub(super) fn handed_over(
        &mut self,
        leader: NodeId,
        group: GroupId,
        to: NodeId,
        cause: HandOverCause,
        matched: u64,
        suspect: bool,
    ) -> Option<Finding> {
        self.judged += 1;
        let why = self.leads_not(to, suspect)?;
        let told = self.acks.get(&(group, to, leader)).and_then(|acks| acks.get(&matched)).copied();
        (told == Some(true)).then(|| {
            let detail = format!(
                "node {leader} handed the leadership to node {to} ({}) while it was {why}; every acknowledgement of index \
                 {matched} (its match index) it sent node {leader} said it leads not",
                cause.name()
            );
            ("R13", group, detail)
        })
    }

    /// `node` no longer hosts `group`.
    pub(super) fn forget(&mut self, group: GroupId, node: NodeId) {
        self.acks.retain(|&(of, follower, _), _| !(of == group && follower == node));
    }
}
