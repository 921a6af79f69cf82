//! Partition reassignment, carried out (issue 15, F-M1): the partition's raft leader moves its
//! group from the current voters to the target the metadata records (`meta::reassign`), one
//! step per pass of the controller loop ([`drive`]). [`plan`] is the sans-IO core: from the
//! target, the group's applied configuration and the leader's view of its replicas, it names
//! the next step; [`drive`] takes it and the next pass looks again, so a step that failed, a
//! crash or a lost leadership only delays the move.
//!
//! The steps, in order:
//! 1. every target node outside the configuration joins as a *learner* (it takes the log, does
//!    not vote, counts toward no quorum);
//! 2. once every one of them is *caught up* — its match index, as the leader tracks it, is at
//!    least the leader's commit index, so it durably holds every entry the group has committed
//!    (a replica that lags would make the new quorum wait for it, or, counted too early, leave
//!    a quorum that holds less than was acknowledged) — one joint-consensus change (raft's explicit transition)
//!    promotes them and removes the voters outside the target: the group runs under C_old,new,
//!    where every decision needs a majority of both sets;
//! 3. a leader outside the target hands leadership to a caught-up voter of the target (raft's
//!    leader transfer) before anything else: the leaving leader never leaves the joint
//!    configuration itself. A transfer to one voter that has not happened after
//!    [`TRANSFER_TRIES_MAX`] passes (the voter drops hand-overs: suspect, quarantined, low on
//!    disk, or cut off while its match index still looks current) goes to another caught-up
//!    voter of the target, if there is one ([`TransferTries`]);
//! 4. the leader (of the target now) leaves the joint configuration: C_new alone. The old
//!    replicas leave last, only here;
//! 5. learners outside the target (from a move that changed course) are removed;
//! 6. the leader reports completion to the controller, which records the target as the
//!    partition's replicas; every node outside it then deletes its replica's files
//!    (`controller::reconcile`).
//!
//! Safety rests on raft's joint consensus (any two configurations a group can be in overlap in
//! a quorum, because every change goes through C_old,new) and on one change at a time (raft
//! refuses a second conf change while one is unapplied). This module only chooses the order.
//!
//! Cost: one status query per moving partition per pass (every `tick_ms * 10`), and nothing at
//! all for partitions that do not move; catch-up traffic is the leader's ordinary replication.

use std::collections::BTreeSet;
use std::time::Duration;

use odradek_client::wire::proto::{self as wire, Request_oneof_body as Body};
use odradek_consensus::observe::HandOverCause;
use odradek_consensus::{GroupId, GroupStatus, NodeId};
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState};
use raft::StateRole;

use crate::context::NodeContext;

/// How long one pass waits for a conf change it proposed to commit, or for the controller to
/// record a completion; the next pass looks again.
const CONF_CHANGE_WAIT_TICKS: u64 = 20;

/// Passes in a row a leaving leader asks one voter to take over before it asks another
/// caught-up voter of the target (module documentation, step 3).
pub const TRANSFER_TRIES_MAX: u32 = 5;

/// The leader transfers of moves this node asked, per group: the voter asked last and how many
/// passes in a row asked it (kept by the controller loop across passes).
#[derive(Debug, Default)]
pub struct TransferTries(std::collections::BTreeMap<GroupId, (NodeId, u32)>);

impl TransferTries {
    /// The voter the last transfer of `group` asked, and how many passes in a row asked it.
    fn last(&self, group: GroupId) -> Option<(NodeId, u32)> {
        self.0.get(&group).copied()
    }

    /// Notes the step a pass took for `group`.
    fn note(&mut self, group: GroupId, step: &Step) {
        match step {
            Step::TransferLeader { to } => match self.0.get_mut(&group) {
                Some((asked, tries)) if asked == to => *tries += 1,
                _ => {
                    self.0.insert(group, (*to, 1));
                }
            },
            _ => {
                self.0.remove(&group);
            }
        }
    }
}

/// The next step of a move (module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Step 1: these target nodes join as learners.
    AddLearners(Vec<NodeId>),
    /// These learners are not caught up yet.
    WaitCatchUp(Vec<NodeId>),
    /// Step 2: enter C_old,new.
    EnterJoint { promote: Vec<NodeId>, remove: Vec<NodeId> },
    /// Step 3: this leader leaves; `to` leads next.
    TransferLeader { to: NodeId },
    /// Step 3, no voter of the target is caught up to lead yet.
    WaitForSuccessor,
    /// Step 4.
    LeaveJoint,
    /// Step 5.
    RemoveLearners(Vec<NodeId>),
    /// Step 6: the configuration is the target.
    Complete,
}

impl Step {
    /// Where the move stands, for `cluster status`.
    pub fn describe(&self) -> String {
        match self {
            Step::AddLearners(nodes) => format!("adding learners {nodes:?}"),
            Step::WaitCatchUp(nodes) => format!("learners {nodes:?} catching up"),
            Step::EnterJoint { promote, remove } => format!("entering joint consensus (promote {promote:?}, remove {remove:?})"),
            Step::TransferLeader { to } => format!("joint; the leaving leader hands leadership to {to}"),
            Step::WaitForSuccessor => "joint; waiting for a caught-up voter of the target to lead".to_string(),
            Step::LeaveJoint => "leaving joint consensus".to_string(),
            Step::RemoveLearners(nodes) => format!("removing learners {nodes:?}"),
            Step::Complete => "configuration done; recording completion".to_string(),
        }
    }

    /// The raft configuration change this step proposes; `None` for the steps that propose
    /// none (waiting, a leader transfer, recording the completion).
    pub fn conf_change(&self) -> Option<ConfChangeV2> {
        use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
        let (changes, transition): (Vec<_>, _) = match self {
            Step::AddLearners(nodes) => (nodes.iter().map(|&node| (AddLearnerNode, node)).collect(), ConfChangeTransition::Auto),
            Step::RemoveLearners(nodes) => (nodes.iter().map(|&node| (RemoveNode, node)).collect(), ConfChangeTransition::Auto),
            Step::EnterJoint { promote, remove } => (
                promote.iter().map(|&node| (AddNode, node)).chain(remove.iter().map(|&node| (RemoveNode, node))).collect(),
                ConfChangeTransition::Explicit,
            ),
            // An empty change leaves the joint configuration.
            Step::LeaveJoint => return Some(ConfChangeV2::default()),
            Step::WaitCatchUp(_) | Step::TransferLeader { .. } | Step::WaitForSuccessor | Step::Complete => return None,
        };
        let mut change = ConfChangeV2::default();
        change.set_transition(transition);
        for (change_type, node_id) in changes {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change_type);
            single.node_id = node_id;
            change.mut_changes().push(single);
        }
        Some(change)
    }
}

/// Whether `node` holds every entry the group committed, as its leader sees it (module
/// documentation, step 2).
fn caught_up(status: &GroupStatus, node: NodeId) -> bool {
    status.progress.get(&node).is_some_and(|&(matched, _)| matched >= status.commit)
}

/// The next step for the leader `me` of a group with configuration `conf` moving to `target`.
pub fn plan(me: NodeId, target: &[NodeId], conf: &ConfState, status: &GroupStatus) -> Step {
    plan_after(me, target, conf, status, None)
}

/// [`plan`] after the passes before: `last` is the voter the last leader transfer asked and how
/// many passes in a row asked it. A transfer asks it again while it is a caught-up voter of the
/// target, until [`TRANSFER_TRIES_MAX`] passes did; then another such voter if there is one
/// (module documentation, step 3).
pub fn plan_after(me: NodeId, target: &[NodeId], conf: &ConfState, status: &GroupStatus, last: Option<(NodeId, u32)>) -> Step {
    assert_eq!(status.role, StateRole::Leader, "only a leader moves its group");
    assert!(!target.is_empty(), "a reassignment names its target");
    let target_set: BTreeSet<NodeId> = target.iter().copied().collect();
    let voters: BTreeSet<NodeId> = conf.voters.iter().copied().collect();
    let learners: BTreeSet<NodeId> = conf.learners.iter().chain(&conf.learners_next).copied().collect();
    if !conf.voters_outgoing.is_empty() {
        if !target_set.contains(&me) {
            let successors: Vec<NodeId> =
                target.iter().copied().filter(|&node| voters.contains(&node) && caught_up(status, node)).collect();
            let to = match last.filter(|(asked, _)| successors.contains(asked)) {
                Some((asked, tries)) if tries < TRANSFER_TRIES_MAX => Some(asked),
                Some((asked, _)) => successors.iter().copied().find(|&node| node != asked).or(Some(asked)),
                None => successors.first().copied(),
            };
            return match to {
                Some(to) => Step::TransferLeader { to },
                None => Step::WaitForSuccessor,
            };
        }
        return Step::LeaveJoint;
    }
    if voters == target_set {
        let stray: Vec<NodeId> = learners.difference(&target_set).copied().collect();
        return if stray.is_empty() { Step::Complete } else { Step::RemoveLearners(stray) };
    }
    let missing: Vec<NodeId> = target.iter().copied().filter(|node| !voters.contains(node) && !learners.contains(node)).collect();
    if !missing.is_empty() {
        return Step::AddLearners(missing);
    }
    let promote: Vec<NodeId> = target.iter().copied().filter(|node| !voters.contains(node)).collect();
    let lagging: Vec<NodeId> = promote.iter().copied().filter(|&node| !caught_up(status, node)).collect();
    if !lagging.is_empty() {
        return Step::WaitCatchUp(lagging);
    }
    let remove: Vec<NodeId> = voters.difference(&target_set).copied().collect();
    assert!(!promote.is_empty() || !remove.is_empty(), "voters {voters:?} differ from the target {target_set:?}");
    Step::EnterJoint { promote, remove }
}

/// Where the move of `group` stands, as this node sees it: the next step where it leads the
/// partition, else only that the move is recorded.
pub async fn phase(context: &NodeContext, group: GroupId, target: &[NodeId]) -> String {
    match context.node.status(group).await {
        Ok(Some((status, conf))) if status.role == StateRole::Leader => plan(context.state.node_id, target, &conf, &status).describe(),
        _ => "recorded; the partition's leader carries it out".to_string(),
    }
}

/// One pass over the moving partitions this node leads (called from the controller loop).
/// Does nothing, not even a status query, when no partition it hosts moves.
pub async fn drive(context: &NodeContext, hosted: impl Iterator<Item = GroupId>, tries: &mut TransferTries) {
    let moving: Vec<(GroupId, Vec<NodeId>)> = {
        let state = context.state.lock();
        hosted.filter_map(|group| Some((group, state.meta.reassignment_target(group)?.clone()))).collect()
    };
    for (group, target) in moving {
        let Ok(Some((status, conf))) = context.node.status(group).await else { continue };
        if status.role != StateRole::Leader {
            continue;
        }
        #[allow(unused_mut)] // changed only by a planted bug
        let mut step = plan_after(context.state.node_id, &target, &conf, &status, tries.last(group));
        tries.note(group, &step);
        #[cfg(any(madsim, feature = "planted-bugs"))]
        if context.config.planted_switches().learner_promoted_early {
            if let Step::WaitCatchUp(_) = step {
                step = promote_now(&target, &conf);
            }
        }
        tracing::info!(group, ?target, ?step, "reassignment step");
        take_step(context, group, &target, step, status.commit).await;
    }
}

/// Planted bug `learner-promoted-early`: the joint step, as if every learner had caught up.
#[cfg(any(madsim, feature = "planted-bugs"))]
fn promote_now(target: &[NodeId], conf: &ConfState) -> Step {
    let promote: Vec<NodeId> = target.iter().copied().filter(|node| !conf.voters.contains(node)).collect();
    let remove: Vec<NodeId> = conf.voters.iter().copied().filter(|node| !target.contains(node)).collect();
    Step::EnterJoint { promote, remove }
}

/// Takes `step`; `commit` is the group's commit index the step was planned against.
async fn take_step(context: &NodeContext, group: GroupId, target: &[NodeId], step: Step, commit: u64) {
    #[allow(unused_mut)] // changed only by a planted bug
    let mut step = step;
    #[cfg(any(madsim, feature = "planted-bugs"))]
    if context.config.planted_switches().removal_leaves_no_quorum {
        if let Step::EnterJoint { remove, .. } = &step {
            if let Some(&first) = remove.first() {
                // One old voter leaves by a simple change before anyone is promoted.
                step = Step::RemoveLearners(vec![first]);
            }
        }
    }
    if let Step::EnterJoint { promote, .. } = &step {
        // R11: the checker compares each promoted learner's durable log with `commit`.
        let me = context.state.node_id;
        for &voter in promote {
            odradek_consensus::observe::emit(|| odradek_consensus::observe::Event::Promoted { node: me, group, voter, commit });
        }
    }
    let change = match step {
        Step::WaitCatchUp(_) | Step::WaitForSuccessor => return,
        Step::TransferLeader { to } => {
            let _ = context.node.transfer_leader(group, to, HandOverCause::Reassign).await;
            return;
        }
        Step::Complete => return report_completion(context, group, target).await,
        configuration => configuration.conf_change().expect("every other step changes the configuration"),
    };
    let wait = Duration::from_millis(context.config.tick_ms * CONF_CHANGE_WAIT_TICKS);
    match tokio::time::timeout(wait, context.node.propose_conf_change(group, change)).await {
        Ok(Ok(appended)) => tracing::info!(group, index = appended.index, "reassignment conf change committed"),
        Ok(Err(error)) => tracing::info!(group, %error, "reassignment conf change failed; the next pass looks again"),
        Err(_) => tracing::info!(group, "reassignment conf change not committed yet; the next pass looks again"),
    }
}

/// Tells the controller the group's voters are `target` (through the controller request path,
/// which forwards to the controller when that is another node).
async fn report_completion(context: &NodeContext, group: GroupId, target: &[NodeId]) {
    let Some((topic, partition)) = context.state.lock().meta.partition_of_group(group).map(|(t, p)| (t.name.clone(), p.partition)) else {
        return;
    };
    let mut request = wire::ReassignPartitionRequest::new();
    request.topic = topic;
    request.partition = partition;
    request.replicas = target.to_vec();
    request.completed = true;
    // Bounded like a conf change: the controller loop (reconcile, registration) waits on it.
    let wait = Duration::from_millis(context.config.tick_ms * CONF_CHANGE_WAIT_TICKS);
    let request = crate::request::admin::controller_request(context, 0, Body::reassign_partition(request));
    let Ok(response) = tokio::time::timeout(wait, request).await else {
        tracing::info!(group, "recording a reassignment's completion is taking long; the next pass asks again");
        return;
    };
    if response.error == wire::ErrorCode::NONE {
        tracing::info!(group, ?target, "reassignment completed");
    } else {
        tracing::warn!(group, error = ?response.error, message = %response.error_message, "recording a reassignment's completion failed; will retry");
    }
}

#[cfg(test)]
mod tests;
