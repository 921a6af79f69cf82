//! Leadership hand-overs (issue 15): every one this node's leaders start goes through
//! [`Node::hand_over`], which refuses a target that must not lead and reports each hand-over it
//! lets through ([`observe::Event::HandOver`], CHECKLISTS R13 in the raft checker).
//!
//! A replica *leads not* while it drops a leadership hand-over (`MsgTimeoutNow`) or would hand
//! the leadership straight on: suspect (module `suspect`: after a recovery cut, a log found
//! behind at run time, or rebuilt empty), on a passive node (quarantined: its metadata group
//! does not open), on a draining node, or on a node low on disk. A hand-over to it stalls the
//! group's proposals for an election timeout (raft holds them while a transfer is pending),
//! and balancing would retry it every pass. Only the replica knows, so it says so: each append
//! response it sends carries [`LEADS_NOT_CONTEXT`] (raft-rs reads no context on append
//! responses). Its leader keeps, per group, the followers whose latest acknowledgement at or
//! above their match index said so (an older one arriving late, reordered or replayed, changes
//! nothing), and never hands leadership to them. A follower counts as caught up only through an
//! acknowledgement at its match index, so the one the hand-over relies on is the one that
//! speaks: R13 in the raft checker holds every [`observe::Event::HandOver`] to that.
//!
//! The owner (the server) adds what only its metadata knows ([`LeadRefusals`]: a node whose
//! metadata replica is being repaired, a replica being repaired whose files do not open yet),
//! through [`Node::set_lead_refusals`]. Balancing, transfer requests and reassignments ask
//! [`Node::transfer_leader`]; a passive, draining or low node's own hand-offs
//! ([`Node::hand_off_leadership`]) pick among the caught-up followers not refused.
//!
//! Cost: one set lookup per append response a leader steps, one context of 17 bytes on the
//! append responses of a replica that leads not (rare), one bit per follower per led group.

use std::collections::BTreeSet;

use odradek_log::Disk;
use raft::eraftpb::{Message, MessageType};
use raft::StateRole;

use crate::observe::{self, HandOverCause};
use crate::transport::{GroupId, NodeId};

use super::errors::NodeError;
use super::Node;

/// The context of an append response whose sender leads not (module documentation).
pub(super) const LEADS_NOT_CONTEXT: &[u8] = b"odradek/leads-not";

/// Replicas the owner refuses leadership to, from what its metadata knows (module
/// documentation). Replaced whole by each [`Node::set_lead_refusals`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeadRefusals {
    /// Nodes that lead nothing (their metadata replica is being repaired).
    pub nodes: BTreeSet<NodeId>,
    /// (group, node): the node's replica of the group is being repaired.
    pub replicas: BTreeSet<(GroupId, NodeId)>,
}

impl LeadRefusals {
    pub fn refuses(&self, group: GroupId, node: NodeId) -> bool {
        self.nodes.contains(&node) || self.replicas.contains(&(group, node))
    }
}

impl<D: Disk, T, A> Node<D, T, A> {
    /// Whether this node's replica of `group` leads not now (module documentation).
    fn leads_not(&self, group: GroupId) -> bool {
        let suspect = self.groups.get(&group).is_some_and(|state| state.suspect.is_some());
        suspect || self.passive.is_some() || self.draining.is_some() || self.disk_low()
    }

    /// Marks the append responses among `messages` of the groups whose replica here leads not.
    pub(super) fn mark_leads_not(&self, messages: &mut [(GroupId, Message)]) {
        for (group, message) in messages.iter_mut() {
            if message.get_msg_type() == MessageType::MsgAppendResponse && self.leads_not(*group) {
                message.context = LEADS_NOT_CONTEXT.to_vec().into();
            }
        }
    }

    /// A leader learns from an append response whether its sender leads not, before raft steps
    /// it: only from one at or above the sender's match index (an older one says less than what
    /// the leader already heard).
    pub(super) fn note_leads_not(&mut self, group: GroupId, message: &Message) {
        if message.get_msg_type() != MessageType::MsgAppendResponse || message.reject {
            return;
        }
        let Some(state) = self.groups.get_mut(&group) else { return };
        let raft = &state.raw.raft;
        if raft.state != StateRole::Leader {
            return;
        }
        let matched = raft.prs().get(message.from).map_or(0, |progress| progress.matched);
        if message.index < matched {
            return;
        }
        if message.context.as_ref() == LEADS_NOT_CONTEXT {
            state.peers_leading_not.insert(message.from);
        } else {
            state.peers_leading_not.remove(&message.from);
        }
    }

    /// Why `group`'s leadership must not go to `to` now, if it must not.
    pub(super) fn hand_over_refusal(&self, group: GroupId, to: NodeId) -> Option<String> {
        if self.lead_refusals.nodes.contains(&to) {
            return Some(format!("node {to} leads nothing while its metadata replica is being repaired"));
        }
        if self.lead_refusals.replicas.contains(&(group, to)) {
            return Some(format!("node {to}'s replica of group {group} is being repaired"));
        }
        #[cfg(any(madsim, feature = "planted-bugs"))]
        if self.config.planted.hand_over_skip_dropped {
            return None;
        }
        let state = self.groups.get(&group)?;
        state
            .peers_leading_not
            .contains(&to)
            .then(|| format!("node {to}'s replica of group {group} drops hand-overs now (suspect, quarantined, draining or low on disk)"))
    }

    /// Hands `group`'s leadership (this node leads it) to `to` for `cause`, unless `to` must not
    /// lead (module documentation); reports the hand-over.
    pub(super) fn hand_over(&mut self, group: GroupId, to: NodeId, cause: HandOverCause) -> Result<(), NodeError> {
        if let Some(reason) = self.hand_over_refusal(group, to) {
            tracing::debug!(group, to, cause = cause.name(), %reason, "no hand-over");
            return Err(NodeError::HandOverRefused { group, to, reason });
        }
        let node = self.config.node_id;
        let state = self.groups.get_mut(&group).ok_or(NodeError::GroupUnknown(group))?;
        let raft = &state.raw.raft;
        if raft.state == StateRole::Leader && to != node {
            let matched = raft.prs().get(to).map_or(0, |progress| progress.matched);
            observe::emit(|| observe::Event::HandOver { node, group, to, cause, matched });
        }
        state.raw.transfer_leader(to);
        Ok(())
    }

    /// Replaces the replicas the owner refuses leadership to (see [`LeadRefusals`]).
    pub fn set_lead_refusals(&mut self, refusals: LeadRefusals) {
        if refusals != self.lead_refusals {
            tracing::info!(nodes = ?refusals.nodes, replicas = ?refusals.replicas, "leadership refused to");
            self.lead_refusals = refusals;
        }
    }

    /// The caught-up followers of each group this node leads that may take its leadership, for
    /// [`Node::hand_off_leadership`]: (group, candidates sorted).
    pub(super) fn hand_off_candidates(&self) -> Vec<(GroupId, Vec<NodeId>)> {
        let mut candidates = Vec::new();
        for (&group, state) in &self.groups {
            let raft = &state.raw.raft;
            if raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
                continue;
            }
            let last = raft.raft_log.last_index();
            let mut caught_up: Vec<NodeId> = raft
                .prs()
                .iter()
                .filter(|&(&id, pr)| id != raft.id && pr.matched == last)
                .map(|(&id, _)| id)
                .filter(|&id| self.hand_over_refusal(group, id).is_none())
                .collect();
            if caught_up.is_empty() {
                continue;
            }
            // Sorted: the tracker's iteration order is not deterministic.
            caught_up.sort_unstable();
            candidates.push((group, caught_up));
        }
        candidates
    }
}
