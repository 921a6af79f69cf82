//! Whole nodes joining a running cluster, and the metadata group's own voters (issue 15), as
//! every node carries them out from the metadata (`meta::members`):
//! - [`dial_members`]: every node adds the peer address of each member that joined to its peer
//!   links (at start from the replayed metadata log, then on every metadata change), so a
//!   joined node is reachable from every node, across restarts of any of them;
//! - [`drive`] (the metadata group's leader, from the controller loop): a node that should
//!   follow the metadata log (a bootstrap member or a joined one) and is not in the metadata
//!   group's configuration is added as a *learner* (it takes the log, votes in nothing); a
//!   recorded change of the controller voters is carried out with the partition
//!   reassignment's plan (`reassign::plan`: learners first, promoted only once caught up, one
//!   joint-consensus change, the leaving leader hands leadership away before leaving, the old
//!   voters leave last), and its end is recorded (`CompleteControllerVoters`).
//!
//! Safety rests on raft's joint consensus as for partitions; the controller refuses a target
//! with no voter, or whose caught-up members are not a majority of it
//! (`request::membership`). Cost: nothing at all (not even a status query) while no node has
//! joined and no change runs, so a cluster of bootstrap members only behaves as before.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use odradek_consensus::transport::PeerBook;
use odradek_consensus::{Durability, EntryMeta, NodeId};
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
use raft::StateRole;

use crate::context::NodeContext;
use crate::meta::{MetaCommand, METADATA_GROUP};
use crate::reassign::Step;
use crate::state::NodeState;

/// How long one pass waits for a conf change it proposed to commit; the next pass looks again.
const CONF_CHANGE_WAIT_TICKS: u64 = 20;

/// Adds every joined member's peer address to this node's peer links (idempotent).
pub fn dial_members(state: &NodeState, peers: &PeerBook) {
    let members: Vec<(NodeId, std::net::SocketAddr)> =
        state.lock().meta.members().values().map(|member| (member.node_id, member.peer_address)).collect();
    for (node, address) in members {
        if node != state.node_id {
            peers.set_peer(node, address);
        }
    }
}

/// The nodes that should follow the metadata log: the bootstrap members and the joined ones.
fn followers_wanted(context: &NodeContext) -> BTreeSet<NodeId> {
    let mut wanted: BTreeSet<NodeId> = context.config.metadata_voters_initial().into_iter().collect();
    wanted.extend(context.state.lock().meta.members().keys().copied());
    wanted
}

/// One pass on the metadata group's leader (module documentation).
pub async fn drive(context: &NodeContext) {
    let (joined_any, target) = {
        let state = context.state.lock();
        (!state.meta.members().is_empty(), state.meta.controller_voters_target().cloned())
    };
    if !joined_any && target.is_none() {
        return;
    }
    let Ok(Some((status, conf))) = context.node.status(METADATA_GROUP).await else { return };
    if status.role != StateRole::Leader {
        return;
    }
    let wanted = followers_wanted(context);
    let in_configuration: BTreeSet<NodeId> =
        conf.voters.iter().chain(&conf.voters_outgoing).chain(&conf.learners).chain(&conf.learners_next).copied().collect();
    let joint = !conf.voters_outgoing.is_empty();
    let missing: Vec<NodeId> = wanted.difference(&in_configuration).copied().collect();
    if !missing.is_empty() && !joint {
        tracing::info!(learners = ?missing, "adding nodes to the metadata group as learners");
        let changes: Vec<_> = missing.iter().map(|&node| (ConfChangeType::AddLearnerNode, node)).collect();
        propose(context, conf_change(&changes, ConfChangeTransition::Auto)).await;
        return;
    }
    let Some(target) = target else { return };
    let step = match crate::reassign::plan(context.state.node_id, &target, &conf, &status) {
        // Members outside the target stay learners: they still follow the metadata log.
        Step::RemoveLearners(nodes) => {
            let stray: Vec<NodeId> = nodes.into_iter().filter(|node| !wanted.contains(node)).collect();
            if stray.is_empty() {
                Step::Complete
            } else {
                Step::RemoveLearners(stray)
            }
        }
        step => step,
    };
    tracing::info!(?target, ?step, "controller voters change step");
    use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
    let change = match step {
        Step::WaitCatchUp(_) | Step::WaitForSuccessor => return,
        Step::TransferLeader { to } => {
            let _ = context.node.transfer_leader(METADATA_GROUP, to).await;
            return;
        }
        Step::Complete => return record_completion(context, target).await,
        Step::AddLearners(nodes) => {
            conf_change(&nodes.iter().map(|&node| (AddLearnerNode, node)).collect::<Vec<_>>(), ConfChangeTransition::Auto)
        }
        Step::RemoveLearners(nodes) => {
            conf_change(&nodes.iter().map(|&node| (RemoveNode, node)).collect::<Vec<_>>(), ConfChangeTransition::Auto)
        }
        Step::EnterJoint { promote, remove } => {
            let changes: Vec<_> =
                promote.iter().map(|&node| (AddNode, node)).chain(remove.iter().map(|&node| (RemoveNode, node))).collect();
            conf_change(&changes, ConfChangeTransition::Explicit)
        }
        Step::LeaveJoint => ConfChangeV2::default(),
    };
    propose(context, change).await;
}

/// The number of `target` nodes that hold every committed metadata entry, as this leader sees
/// it (itself included): a controller-voters change is refused unless they are a majority.
pub fn caught_up_in(me: NodeId, status: &odradek_consensus::GroupStatus, target: &[NodeId]) -> usize {
    target.iter().filter(|&&node| node == me || status.progress.get(&node).is_some_and(|&(matched, _)| matched >= status.commit)).count()
}

fn conf_change(changes: &[(ConfChangeType, NodeId)], transition: ConfChangeTransition) -> ConfChangeV2 {
    let mut change = ConfChangeV2::default();
    change.set_transition(transition);
    for &(change_type, node_id) in changes {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = node_id;
        change.mut_changes().push(single);
    }
    change
}

async fn propose(context: &NodeContext, change: ConfChangeV2) {
    let wait = Duration::from_millis(context.config.tick_ms * CONF_CHANGE_WAIT_TICKS);
    match tokio::time::timeout(wait, context.node.propose_conf_change(METADATA_GROUP, change)).await {
        Ok(Ok(appended)) => tracing::info!(index = appended.index, "metadata group conf change committed"),
        Ok(Err(error)) => tracing::info!(%error, "metadata group conf change failed; the next pass looks again"),
        Err(_) => tracing::info!("metadata group conf change not committed yet; the next pass looks again"),
    }
}

/// This leader's metadata group has the target's voters: records the end of the change.
async fn record_completion(context: &NodeContext, voters: Vec<NodeId>) {
    let payload = Bytes::from(MetaCommand::CompleteControllerVoters { voters: voters.clone() }.encode());
    let ticket = context.node.submit(METADATA_GROUP, payload, EntryMeta::Command, Durability::Committed).await;
    let wait = Duration::from_millis(context.config.tick_ms * CONF_CHANGE_WAIT_TICKS);
    match tokio::time::timeout(wait, ticket.outcome()).await {
        Ok(Ok(_)) => tracing::info!(?voters, "controller voters change completed"),
        Ok(Err(error)) => tracing::info!(%error, "recording the controller voters change failed; will retry"),
        Err(_) => tracing::info!("recording the controller voters change is taking long; will retry"),
    }
}
