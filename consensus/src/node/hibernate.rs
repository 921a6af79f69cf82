//! Hibernation of quiet groups (issue 17; as TiKV's hibernate regions): with
//! [`NodeConfig::hibernate`](super::NodeConfig::hibernate), a group with nothing to do stops
//! ticking and heartbeating until it has work, so a node hosting thousands of idle partitions
//! costs about what it costs with none.
//!
//! - **The leader puts a group to sleep.** At a tick, a leader whose group has been quiet for
//!   `election_tick` ticks in a row — no ready, every entry committed and applied, every replica
//!   (voters and learners) matched up to its last index, no proposal, read, conf change or
//!   leadership transfer in flight, not suspect, the node neither passive, draining nor low on
//!   disk, and every other replica's node heard from within an election timeout — stops ticking
//!   the group and sends each replica a *hibernate* control message (term, last index, commit).
//! - **A follower follows it to sleep** at the end of the round that stepped that message, only
//!   if it still follows that leader in that term, holds exactly the leader's log, has committed
//!   and applied it all and has no ready. Otherwise it stays awake: then it times out and its
//!   pre-vote wakes the leader, which heartbeats again (churn, never a wrong state).
//! - **Waking.** Any raft message for a sleeping group wakes it before raft steps it; so does
//!   every local request: a proposal, a conf change, a read barrier, a transfer or a campaign.
//!   A leader wakes with a fresh check-quorum window (it heard from every replica when it slept)
//!   and heartbeats at once, so its followers wake too. A follower woken by anything but its
//!   leader asks the leader to wake (a *wake* control message), so the leader heartbeats again
//!   before the follower's election timer, which resumes where it stopped, runs out.
//! - **Node liveness, not group heartbeats.** Every `heartbeat_tick` ticks a node sends one
//!   *alive* message to every node it shares a sleeping group with (one per node pair, not per
//!   group); any batch from a node counts as hearing from it. A sleeping follower whose leader's
//!   node has been silent for `election_tick` ticks wakes with its leader lease expired, so it
//!   campaigns within one randomized election timeout and grants votes at once.
//! - **Reads stay linearizable** without leases: a read barrier ([`Node::read_index`]) wakes the
//!   group and goes through raft's ReadIndex, a quorum round in the leader's current term, so a
//!   sleeping leader that was deposed meanwhile learns of the new term from the answers instead
//!   of confirming its old commit (the planted `hibernated_leader_reads_locally` answers from
//!   its own commit index instead; `consensus/tests/cluster/planted.rs` catches it). A sleeping leader does not wake when a
//!   follower's node goes silent: nothing it could do then needs it, since every read and write
//!   wakes it and runs check-quorum again.
//!
//! Control messages travel as raft `MsgCheckQuorum` messages (never sent between nodes by raft
//! itself) with their own contexts, as the `suspect` module's do, and never reach raft. The
//! alive message names no group: it goes under [`NODE_ALIVE_GROUP`].

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::{Message, MessageType};
use raft::StateRole;

use super::suspect::control;
use super::{Node, NodeId};
use crate::observe::{self, WakeReason};
use crate::transport::GroupId;

/// The group id alive messages travel under; no group has it.
pub const NODE_ALIVE_GROUP: GroupId = u64::MAX;

const HIBERNATE_CONTEXT: &[u8] = b"odradek-hibernate";
const WAKE_CONTEXT: &[u8] = b"odradek-wake";
const ALIVE_CONTEXT: &[u8] = b"odradek-alive";

/// A control message of this module, taken out of the inbound raft messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Control {
    /// The leader put the group to sleep at (term, last index `index`, commit `commit`).
    Hibernate { term: u64, index: u64, commit: u64 },
    /// A woken follower asks its leader to wake.
    Wake,
    /// The sender's node is up.
    Alive,
}

pub(super) fn classify(message: &Message) -> Option<Control> {
    if message.get_msg_type() != MessageType::MsgCheckQuorum {
        return None;
    }
    match message.get_context() {
        HIBERNATE_CONTEXT => Some(Control::Hibernate { term: message.term, index: message.index, commit: message.commit }),
        WAKE_CONTEXT => Some(Control::Wake),
        ALIVE_CONTEXT => Some(Control::Alive),
        _ => None,
    }
}

/// One group's hibernation state on this node.
#[derive(Clone, Debug, Default)]
pub(super) struct Hibernation {
    /// The other replicas (voters and learners) when it fell asleep (whether it sleeps, and
    /// under which leader, is the node's [`Wakefulness`]).
    pub(super) peers: Vec<NodeId>,
    /// Consecutive ticks the leader found the group quiet.
    pub(super) quiet_ticks: usize,
    /// A hibernate message stepped this round (a follower decides at the end of the round).
    pub(super) asked: Option<(NodeId, u64, u64, u64)>,
}

/// The node's side: who it heard from, and who it shares sleeping groups with.
#[derive(Clone, Debug, Default)]
pub(super) struct Liveness {
    /// Node ticks so far.
    pub(super) ticks: u64,
    /// The tick at which the last batch from each node arrived.
    pub(super) heard_at: std::collections::BTreeMap<NodeId, u64>,
    /// Sleeping groups per other replica's node (an alive message goes to each).
    pub(super) sleeping_with: std::collections::BTreeMap<NodeId, usize>,
    /// Nodes found silent (their followers woken once), until heard from again.
    pub(super) silent: std::collections::BTreeSet<NodeId>,
    /// Control messages to send at the end of the next round.
    pub(super) due: Vec<(NodeId, GroupId, Message)>,
    /// The groups that stepped a hibernate message this round (their `Hibernation::asked`).
    pub(super) asked: BTreeSet<GroupId>,
}

/// Which hosted groups are awake, and the sleeping ones filed under the leader they slept with,
/// so that the driver's per-tick and per-round work visits only awake groups and due wakes
/// (issue 17: with 10,000 sleeping partitions, walking every group on every tick and round cost
/// ~8 % of a core per node).
///
/// A sleeping follower's only deadline is its leader's node falling silent: heard from last
/// at tick `heard_at[leader]`, it is due to wake at `heard_at[leader] + election_tick`, the same
/// tick for every group that leader leads. So the deadlines are kept per leader node (ordered by
/// node, a handful), and the groups due are those filed under a node found silent. A sleeping
/// leader has no deadline: it wakes on a message or a request. Without hibernation every group
/// is awake, and [`Wakefulness::awake`] lists them all in ascending order, as the walk over
/// every group did.
#[derive(Clone, Debug, Default)]
pub(super) struct Wakefulness {
    awake: BTreeSet<GroupId>,
    /// Sleeping groups per leader (this node for the groups it leads).
    sleeping: BTreeMap<NodeId, BTreeSet<GroupId>>,
    /// The leader each sleeping group is filed under.
    filed_under: BTreeMap<GroupId, NodeId>,
}

impl Wakefulness {
    /// A group just hosted (awake).
    pub(super) fn hosted(&mut self, group: GroupId) {
        assert!(!self.filed_under.contains_key(&group), "group {group} hosted twice");
        assert!(self.awake.insert(group), "group {group} hosted twice");
    }

    /// A group no longer hosted, awake or asleep.
    pub(super) fn unhosted(&mut self, group: GroupId) {
        if !self.awake.remove(&group) {
            self.unfile(group);
        }
    }

    /// An awake group falls asleep, led by `leader`.
    pub(super) fn fell_asleep(&mut self, group: GroupId, leader: NodeId) {
        assert!(self.awake.remove(&group), "group {group} fell asleep while not awake");
        self.sleeping.entry(leader).or_default().insert(group);
        self.filed_under.insert(group, leader);
    }

    /// A sleeping group wakes.
    pub(super) fn woke(&mut self, group: GroupId) {
        assert!(!self.awake.contains(&group), "group {group} woke while awake");
        self.unfile(group);
        self.awake.insert(group);
    }

    fn unfile(&mut self, group: GroupId) {
        let leader = self.filed_under.remove(&group).unwrap_or_else(|| panic!("group {group} is neither awake nor asleep"));
        let groups = self.sleeping.get_mut(&leader).expect("filed");
        groups.remove(&group);
        if groups.is_empty() {
            self.sleeping.remove(&leader);
        }
    }

    /// The awake groups, in ascending order.
    pub(super) fn awake(&self) -> impl Iterator<Item = &GroupId> {
        self.awake.iter()
    }

    #[cfg(test)]
    fn is_awake(&self, group: GroupId) -> bool {
        self.awake.contains(&group)
    }

    /// Whether `group` sleeps (a hosted group that is not awake).
    pub(super) fn is_asleep(&self, group: GroupId) -> bool {
        self.filed_under.contains_key(&group)
    }

    /// The sleeping groups due to wake because the nodes `silent` went silent: those that
    /// sleep under one of them as leader, in ascending order.
    pub(super) fn due(&self, silent: &[NodeId]) -> Vec<GroupId> {
        let mut due: Vec<GroupId> = silent.iter().filter_map(|node| self.sleeping.get(node)).flatten().copied().collect();
        due.sort_unstable();
        due
    }

    /// Every sleeping group, in ascending order.
    pub(super) fn sleeping(&self) -> Vec<GroupId> {
        self.filed_under.keys().copied().collect()
    }
}

impl<D: odradek_log::Disk, T, A> Node<D, T, A> {
    /// Whether this node hears from `peer` within an election timeout.
    fn heard_recently(&self, peer: NodeId) -> bool {
        let ticks = self.liveness.ticks;
        self.liveness.heard_at.get(&peer).is_some_and(|&at| ticks - at < self.config.election_tick as u64)
    }

    /// Notes a batch from `from` (any batch is a sign of life).
    pub(super) fn heard_from(&mut self, from: NodeId) {
        if !self.config.hibernate {
            return;
        }
        self.liveness.heard_at.insert(from, self.liveness.ticks);
        self.liveness.silent.remove(&from);
    }

    /// Takes this module's control messages out of the inbound ones: `true` when consumed.
    pub(super) fn screen_for_hibernation(&mut self, from: NodeId, group: GroupId, message: &Message) -> bool {
        let Some(control) = classify(message) else {
            if !self.config.hibernate {
                return false;
            }
            if self.echo_of_last_heartbeat(group, message) {
                return true;
            }
            self.wake(group, WakeReason::Message(from));
            return false;
        };
        if !self.config.hibernate {
            return true; // a peer with hibernation on: this node stays awake, and so does raft
        }
        match control {
            Control::Alive => {}
            Control::Wake => self.wake(group, WakeReason::Asked),
            Control::Hibernate { term, index, commit } => {
                if let Some(state) = self.groups.get_mut(&group) {
                    state.hibernation.asked = Some((from, term, index, commit));
                    self.liveness.asked.insert(group);
                }
            }
        }
        true
    }

    /// A follower's answer to the heartbeats or appends a sleeping leader sent before it fell
    /// asleep (still in flight then): an accepted append or heartbeat response of its term tells
    /// it nothing (it fell asleep knowing every replica matched its whole log, and no read was
    /// waiting), so it is dropped instead of waking the group. Anything else wakes it.
    fn echo_of_last_heartbeat(&self, group: GroupId, message: &Message) -> bool {
        let Some(state) = self.groups.get(&group) else { return false };
        let raft = &state.raw.raft;
        let answer = matches!(message.get_msg_type(), MessageType::MsgHeartbeatResponse | MessageType::MsgAppendResponse);
        self.wakefulness.is_asleep(group)
            && raft.state == StateRole::Leader
            && answer
            && !message.reject
            && message.term == raft.term
            && message.get_context().is_empty()
            && message.index <= raft.raft_log.last_index()
    }

    /// Wakes `group` if it sleeps (see the module documentation).
    pub(super) fn wake(&mut self, group: GroupId, reason: WakeReason) {
        let node = self.config.node_id;
        let election_tick = self.config.election_tick;
        if !self.wakefulness.is_asleep(group) {
            return;
        }
        let Some(state) = self.groups.get_mut(&group) else { return };
        self.wakefulness.woke(group);
        for peer in std::mem::take(&mut state.hibernation.peers) {
            if let Some(count) = self.liveness.sleeping_with.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.liveness.sleeping_with.remove(&peer);
                }
            }
        }
        let raft = &mut state.raw.raft;
        let leads = raft.state == StateRole::Leader;
        if leads {
            // It heard from every replica when it fell asleep: a fresh check-quorum window, and
            // heartbeats now, so the followers wake and keep it (they answer within the window).
            raft.election_elapsed = 0;
            state.raw.ping();
        } else if reason == WakeReason::LeaderLost {
            // The lease is over: campaign within one randomized timeout, grant votes at once.
            raft.election_elapsed = election_tick;
        } else {
            let leader = raft.leader_id;
            let by_leader = matches!(reason, WakeReason::Message(from) if from == leader);
            if leader != raft::INVALID_ID && leader != node && !by_leader {
                self.liveness.due.push((leader, group, control(node, leader, WAKE_CONTEXT)));
            }
        }
        observe::emit(|| observe::Event::Woke { node, group, leader: leads, reason });
    }

    fn fall_asleep(&mut self, group: GroupId, leader: NodeId) {
        let node = self.config.node_id;
        let state = self.groups.get_mut(&group).expect("hosted");
        let conf = state.store.storage().conf_state();
        let mut peers: Vec<NodeId> = conf.voters.iter().chain(&conf.learners).copied().filter(|&id| id != node).collect();
        peers.sort_unstable();
        peers.dedup();
        for &peer in &peers {
            *self.liveness.sleeping_with.entry(peer).or_default() += 1;
        }
        let leads = leader == node;
        self.wakefulness.fell_asleep(group, leader);
        let hibernation = &mut state.hibernation;
        hibernation.quiet_ticks = 0;
        if leads {
            let raft = &state.raw.raft;
            for &peer in &peers {
                let mut message = control(node, peer, HIBERNATE_CONTEXT);
                message.term = raft.term;
                message.index = raft.raft_log.last_index();
                message.commit = raft.raft_log.committed;
                self.liveness.due.push((peer, group, message));
            }
        }
        state.hibernation.peers = peers;
        observe::emit(|| observe::Event::Hibernated { node, group, leader: leads });
    }

    /// At every tick: counts the node's ticks, sends alive messages, wakes followers whose
    /// leader's node went silent, and puts the leaders' quiet groups to sleep.
    pub(super) fn tick_hibernation(&mut self, handing_off: bool) {
        if !self.config.hibernate {
            return;
        }
        self.liveness.ticks += 1;
        let node = self.config.node_id;
        if self.liveness.ticks.is_multiple_of(self.config.heartbeat_tick.max(1) as u64) {
            let peers: Vec<NodeId> = self.liveness.sleeping_with.keys().copied().collect();
            for peer in peers {
                self.liveness.due.push((peer, NODE_ALIVE_GROUP, control(node, peer, ALIVE_CONTEXT)));
            }
        }
        let newly_silent: Vec<NodeId> = self
            .liveness
            .sleeping_with
            .keys()
            .copied()
            .filter(|&peer| !self.liveness.silent.contains(&peer) && !self.heard_recently(peer))
            .collect();
        if !newly_silent.is_empty() {
            self.liveness.silent.extend(newly_silent.iter().copied());
            // The followers sleeping under a silent node's leadership (never this node: it is
            // no peer of its own).
            for group in self.wakefulness.due(&newly_silent) {
                self.wake(group, WakeReason::LeaderLost);
            }
        }
        if handing_off {
            for group in self.wakefulness.sleeping() {
                self.wake(group, WakeReason::HandOff);
            }
            return;
        }
        let quiet_ticks_min = self.config.election_tick;
        let quiet: Vec<(GroupId, bool)> =
            self.wakefulness.awake().map(|&group| (group, self.quiet_leader(group, &self.groups[&group]))).collect();
        let mut falling = Vec::new();
        for (group, quiet) in quiet {
            let hibernation = &mut self.groups.get_mut(&group).expect("listed").hibernation;
            hibernation.quiet_ticks = if quiet { hibernation.quiet_ticks + 1 } else { 0 };
            if hibernation.quiet_ticks >= quiet_ticks_min {
                falling.push(group);
            }
        }
        for group in falling {
            self.fall_asleep(group, node);
        }
    }

    /// Whether this replica leads `group` and the group is quiet (see the module documentation).
    fn quiet_leader(&self, group: GroupId, state: &super::Group<D>) -> bool {
        let raft = &state.raw.raft;
        if raft.state != StateRole::Leader || state.suspect.is_some() || raft.lead_transferee.is_some() || state.raw.has_ready() {
            return false;
        }
        let (last, committed, applied) = (raft.raft_log.last_index(), raft.raft_log.committed, raft.raft_log.applied);
        if committed != last || applied != committed || raft.pending_conf_index > applied || raft.pending_read_count() > 0 {
            return false;
        }
        if !state.proposals.is_idle() || self.read_waiters.values().any(|waiter| waiter.group == group) {
            return false;
        }
        let conf = state.store.storage().conf_state();
        if !conf.voters_outgoing.is_empty() || !conf.learners_next.is_empty() {
            return false;
        }
        let node = self.config.node_id;
        raft.prs().iter().all(|(&id, progress)| id == node || (progress.matched == last && self.heard_recently(id)))
    }

    /// At the end of a round: the followers asked to sleep this round go to sleep if they still
    /// match the leader's state exactly.
    pub(super) fn settle_hibernation_requests(&mut self) {
        if !self.config.hibernate {
            return;
        }
        let mut falling = Vec::new();
        for group in std::mem::take(&mut self.liveness.asked) {
            let Some(state) = self.groups.get_mut(&group) else { continue };
            let Some((leader, term, index, commit)) = state.hibernation.asked.take() else { continue };
            let raft = &state.raw.raft;
            let log = &raft.raft_log;
            let matches = raft.state == StateRole::Follower
                && raft.term == term
                && raft.leader_id == leader
                && log.last_index() == index
                && log.committed == commit
                && log.applied == commit
                && state.suspect.is_none()
                && !state.raw.has_ready();
            if matches && !self.wakefulness.is_asleep(group) {
                falling.push((group, leader));
            }
        }
        for (group, leader) in falling {
            self.fall_asleep(group, leader);
        }
    }

    /// Queues this module's control messages for the round's outbox.
    pub(super) fn queue_hibernation_messages(&mut self, outbox: &mut std::collections::BTreeMap<NodeId, Vec<(GroupId, Message)>>) {
        for (to, group, message) in self.liveness.due.drain(..) {
            outbox.entry(to).or_default().push((group, message));
        }
    }

    /// Whether `group` sleeps here (tests, status).
    pub fn is_asleep(&self, group: GroupId) -> bool {
        self.wakefulness.is_asleep(group)
    }

    /// Removes a group's traces when it leaves this node.
    pub(super) fn forget_hibernation(&mut self, group: GroupId, peers: &[NodeId]) {
        self.wakefulness.unhosted(group);
        self.liveness.asked.remove(&group);
        for peer in peers {
            if let Some(count) = self.liveness.sleeping_with.get_mut(peer) {
                *count -= 1;
                if *count == 0 {
                    self.liveness.sleeping_with.remove(peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Wakefulness;

    fn awake(wakefulness: &Wakefulness) -> Vec<u64> {
        wakefulness.awake().copied().collect()
    }

    #[test]
    fn hosted_groups_are_awake_in_ascending_order_and_sleepers_leave_the_walk() {
        let mut wakefulness = Wakefulness::default();
        for group in [5, 1, 9, 3] {
            wakefulness.hosted(group);
        }
        assert_eq!(awake(&wakefulness), [1, 3, 5, 9]);
        wakefulness.fell_asleep(3, 1); // this node (1) leads it
        wakefulness.fell_asleep(9, 2);
        assert_eq!(awake(&wakefulness), [1, 5]);
        assert!(!wakefulness.is_awake(3) && !wakefulness.is_awake(9) && wakefulness.is_awake(5));
        assert_eq!(wakefulness.sleeping(), [3, 9]);
        wakefulness.woke(9);
        assert_eq!(awake(&wakefulness), [1, 5, 9]);
        assert_eq!(wakefulness.sleeping(), [3]);
        // Unhosted asleep or awake, a group leaves every set.
        wakefulness.unhosted(3);
        wakefulness.unhosted(5);
        assert_eq!(awake(&wakefulness), [1, 9]);
        assert!(wakefulness.sleeping().is_empty());
        assert!(wakefulness.due(&[1, 2, 3]).is_empty());
        // Hosted again after removal: awake.
        wakefulness.hosted(3);
        assert_eq!(awake(&wakefulness), [1, 3, 9]);
    }

    #[test]
    fn due_wakes_are_the_groups_sleeping_under_a_silent_leader_in_ascending_order() {
        let mut wakefulness = Wakefulness::default();
        for group in 1..=8 {
            wakefulness.hosted(group);
        }
        // Leaders: node 2 for 7, 2, 5; node 3 for 4, 1; this node (1) for 8.
        for (group, leader) in [(7, 2), (4, 3), (2, 2), (8, 1), (5, 2), (1, 3)] {
            wakefulness.fell_asleep(group, leader);
        }
        assert_eq!(awake(&wakefulness), [3, 6]);
        assert_eq!(wakefulness.due(&[2]), [2, 5, 7]);
        assert_eq!(wakefulness.due(&[3, 2]), [1, 2, 4, 5, 7]);
        assert!(wakefulness.due(&[4]).is_empty(), "no group sleeps under node 4");
        // A group woken by a message is no longer due; one that sleeps again is filed under
        // its new leader.
        wakefulness.woke(5);
        wakefulness.fell_asleep(5, 3);
        assert_eq!(wakefulness.due(&[2]), [2, 7]);
        assert_eq!(wakefulness.due(&[3]), [1, 4, 5]);
        for group in wakefulness.due(&[2, 3]) {
            wakefulness.woke(group);
        }
        assert_eq!(awake(&wakefulness), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(wakefulness.sleeping(), [8]);
    }

    #[test]
    #[should_panic(expected = "fell asleep while not awake")]
    fn a_group_cannot_fall_asleep_twice() {
        let mut wakefulness = Wakefulness::default();
        wakefulness.hosted(1);
        wakefulness.fell_asleep(1, 2);
        wakefulness.fell_asleep(1, 2);
    }

    #[test]
    #[should_panic(expected = "woke while awake")]
    fn an_awake_group_cannot_wake() {
        let mut wakefulness = Wakefulness::default();
        wakefulness.hosted(1);
        wakefulness.woke(1);
    }
}
