//! The repair of a damaged replica, carried out (issue 15, CHECKLISTS R8 d, F-S3): a partition
//! replica whose files do not open on this node (both copies of its hard state damaged, a log
//! that fails its checks: the consensus node quarantines it and answers its suspect queries
//! from what the files hold) is rebuilt here under a new identity, as a wiped node's replicas
//! are, instead of staying out of its group forever. The metadata records each step
//! (`meta::repair`); the controller loop of each node takes its part once per pass:
//!
//! - **The damaged node** ([`replica_does_not_open`], called by `controller::reconcile` when
//!   creating the group fails on damaged files) reports the replica ([`RepairStep::Reported`]).
//!   The partition's only replica is recorded blocked: its files are never reset, the replica
//!   stays down and `cluster status` shows it. Otherwise, once the leader says it may
//!   ([`RepairPhase::Rebuilding`]), the node moves the damaged files aside (kept under
//!   `<data_dir>/quarantine/` for forensics: consensus `Node::set_aside_group`) and creates the
//!   replica empty, *suspect of its whole log*: it grants no vote and never campaigns until every
//!   other voter has told it its last index and its log is durable up to the largest (consensus
//!   module `suspect`) — it takes appends and snapshots as a learner does, and is a voter again
//!   only once caught up. Its raft id stays the node id; the suspicion is its new identity.
//!   When the suspicion settles, the node reports the repair done ([`RepairStep::Done`],
//!   [`rebuilt_replicas_settled`]).
//! - **The partition's leader** ([`drive`]) says the node may rebuild ([`RepairStep::Ready`])
//!   only once every other voter's match index is at least its commit index: every committed
//!   entry is then on each voter but the damaged one (the leader holds them all by raft's leader
//!   completeness; the others by their match), so the damaged copy, and the answers to suspect
//!   queries it gave, hold nothing the group still needs from it. Until then the node keeps the
//!   files and answers from them. In a group of two voters the other one says so, leader or
//!   not ([`sole_other_voter`]): it holds every committed entry, and it cannot lead alone. The
//!   rebuilt replica then votes for it (consensus `Suspect::may_vote_for`: a candidate in every
//!   quorum) and catches up from it.
//!
//! A crash while the files move leaves a quarantine directory without its marker: the next
//! pass finishes the move before the group is created (`set_aside_group(.., only_unfinished)`),
//! so a replica is never opened from part of its old files.
//!
//! Cost: nothing (not a status query) while no repair is recorded.

use std::collections::BTreeSet;
use std::time::Duration;

use odradek_client::wire::proto::{self as wire, Request_oneof_body as Body};
use odradek_consensus::{GroupId, GroupStatus, NodeError, NodeId};
use raft::eraftpb::ConfState;
use raft::StateRole;

use crate::context::NodeContext;
use crate::meta::{RepairPhase, RepairStep, METADATA_GROUP};

/// How long one pass waits for the controller to record a step; the next pass asks again.
const STEP_WAIT_TICKS: u64 = 20;

/// Whether creating a group failed on damaged files (the consensus node quarantined it).
pub fn is_damaged(error: &NodeError) -> bool {
    matches!(error, NodeError::Storage { source, .. } if source.is_corruption())
}

/// On the node whose replica of `group` does not open (`error`): reports it, or, once the
/// leader said it may, sets the damaged files aside so that the next pass of
/// `controller::reconcile` creates the replica empty and suspect (module documentation).
pub async fn replica_does_not_open(context: &NodeContext, group: GroupId, phase: Option<RepairPhase>, error: &NodeError) {
    let me = context.state.node_id;
    match phase {
        None => {
            tracing::warn!(group, %error, "this replica's files are damaged: reporting it for repair");
            send_step(context, group, me, RepairStep::Reported).await;
        }
        Some(RepairPhase::Blocked) => {
            tracing::debug!(group, %error, "this damaged replica is its partition's only one: kept down, never reset")
        }
        Some(RepairPhase::Waiting) => {
            tracing::debug!(group, "this damaged replica waits for the partition's other voters to catch up before it is rebuilt")
        }
        Some(RepairPhase::Rebuilding) => match context.node.set_aside_group(group, false).await {
            Ok(moved) => tracing::warn!(group, ?moved, "rebuilding a damaged replica: its files are set aside"),
            Err(error) => tracing::warn!(group, %error, "setting a damaged replica's files aside failed; the next pass tries again"),
        },
    }
}

/// On the repairing node: reports done every rebuilt replica whose suspicion settled (its log
/// holds everything the other voters had when they answered), and finishes the move of the
/// files of one whose set-aside a crash interrupted (before it is created again).
pub async fn rebuilt_replicas_settled(context: &NodeContext, hosted: impl Iterator<Item = GroupId>) {
    let me = context.state.node_id;
    let rebuilding: Vec<GroupId> = {
        let state = context.state.lock();
        hosted
            .filter(|&group| group != METADATA_GROUP) // its own path: `crate::meta_repair`
            .filter(|&group| state.meta.repair(group).is_some_and(|repair| repair.node == me && repair.phase == RepairPhase::Rebuilding))
            .collect()
    };
    let done_early = context.config.planted_switches().repair_done_before_caught_up;
    for group in rebuilding {
        let Ok(Some((status, _))) = context.node.status(group).await else { continue };
        // (Planted `repair-done-before-caught-up`: done as soon as the replica opened.)
        if status.suspect && !done_early {
            continue;
        }
        odradek_consensus::observe::emit(|| odradek_consensus::observe::Event::Repaired { node: me, group });
        send_step(context, group, me, RepairStep::Done).await;
    }
}

/// One pass over the repairs of the partitions this node leads (called from the controller
/// loop): says "ready" for each one waiting whose other voters are all caught up.
pub async fn drive(context: &NodeContext, hosted: impl Iterator<Item = GroupId>) {
    let me = context.state.node_id;
    let waiting: Vec<(GroupId, NodeId)> = {
        let state = context.state.lock();
        hosted
            .filter(|&group| group != METADATA_GROUP) // its own path: `crate::meta_repair`
            .filter_map(|group| {
                let repair = state.meta.repair(group)?;
                (repair.node != me && repair.phase == RepairPhase::Waiting).then_some((group, repair.node))
            })
            .collect()
    };
    for (group, damaged) in waiting {
        let Ok(Some((status, conf))) = context.node.status(group).await else { continue };
        if sole_other_voter(&status, &conf, damaged, me) {
            // A group of two: this replica holds every committed entry (each needed it), leader
            // or not; and with the damaged one out, it cannot lead until the rebuilt one votes.
            tracing::info!(group, damaged, "the only other voter holds every committed entry: the damaged replica may be rebuilt");
            send_step(context, group, damaged, RepairStep::Ready).await;
            continue;
        }
        if status.role != StateRole::Leader || status.commit == 0 {
            continue;
        }
        let lagging = voters_behind_commit(&status, &conf, damaged, me);
        if !lagging.is_empty() {
            tracing::info!(group, damaged, ?lagging, "a damaged replica is rebuilt once every other voter has caught up");
            continue;
        }
        tracing::info!(group, damaged, commit = status.commit, "every other voter holds the commit: the damaged replica may be rebuilt");
        send_step(context, group, damaged, RepairStep::Ready).await;
    }
}

/// Whether this node (`me`, whose replica of the group is `status`) is the group's only voter
/// besides `damaged`, with a sound log (not suspect): every committed entry is then on it, as on
/// a leader whose other voters all caught up. This is how a partition of replication 2 is
/// repaired: with one voter damaged the other cannot lead (no quorum alone), so the leader's
/// rule below would wait forever.
pub fn sole_other_voter(status: &GroupStatus, conf: &ConfState, damaged: NodeId, me: NodeId) -> bool {
    let voters: BTreeSet<NodeId> = conf.voters.iter().chain(&conf.voters_outgoing).copied().collect();
    !status.suspect && voters.contains(&me) && voters.contains(&damaged) && voters.len() == 2
}

/// The voters of a group this node leads (`status`, `conf`), besides `damaged` and the leader
/// `me`, whose match index is below the commit index: a damaged replica (of a partition, or of
/// the metadata, `crate::request::reassign`) is rebuilt only once there are none, so every
/// committed entry is on each voter but the damaged one.
pub fn voters_behind_commit(status: &GroupStatus, conf: &ConfState, damaged: NodeId, me: NodeId) -> Vec<NodeId> {
    let behind: BTreeSet<NodeId> = conf
        .voters
        .iter()
        .chain(&conf.voters_outgoing)
        .copied()
        .filter(|&voter| voter != damaged && voter != me)
        .filter(|voter| status.progress.get(voter).is_none_or(|&(matched, _)| matched < status.commit))
        .collect();
    behind.into_iter().collect()
}

/// Asks the controller to record `step` of the repair of `node`'s replica of `group` (through
/// the controller request path, which forwards to the controller when that is another node).
async fn send_step(context: &NodeContext, group: GroupId, node: NodeId, step: RepairStep) {
    let Some((topic, partition)) = context.state.lock().meta.partition_of_group(group).map(|(t, p)| (t.name.clone(), p.partition)) else {
        return;
    };
    let mut request = wire::ReassignPartitionRequest::new();
    request.topic = topic;
    request.partition = partition;
    request.repair_node = node;
    request.repair_step = step.code();
    // Bounded: the controller loop (reconcile, registration) waits on it.
    let wait = Duration::from_millis(context.config.tick_ms * STEP_WAIT_TICKS);
    let request = crate::request::admin::controller_request(context, 0, Body::reassign_partition(request));
    let Ok(response) = tokio::time::timeout(wait, request).await else {
        tracing::info!(group, ?step, "recording a repair step is taking long; the next pass asks again");
        return;
    };
    if response.error == wire::ErrorCode::NONE {
        tracing::info!(group, node, ?step, "repair step recorded");
    } else {
        tracing::warn!(group, node, ?step, error = ?response.error, message = %response.error_message, "recording a repair step failed; will retry");
    }
}
