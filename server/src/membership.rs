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
//!   voters leave last), and its end is recorded (`CompleteControllerVoters`);
//! - decommissioning ([`drain`], same leader, once no voter change runs): a draining node that
//!   is a controller voter is taken out of the voters first (a change to the others, refused
//!   while they would not be a quorum of caught-up nodes); then its replicas move away through
//!   partition reassignments (at most [`DRAIN_MOVES_MAX`] moves running, each replacing the
//!   node in place by the eligible broker holding the fewest replicas); once no partition and
//!   no move names it, it is removed (`RemoveNode`) and leaves the metadata group. Only a
//!   completed reassignment takes a replica off it, and a reassignment completes only once its
//!   new replicas have caught up, so removing the node loses no replica.
//!
//! Safety rests on raft's joint consensus as for partitions; the controller refuses a target
//! with no voter, or whose caught-up members are not a majority of it
//! (`request::membership`). Cost: nothing at all (not even a status query) while no node has
//! joined and no change runs, so a cluster of bootstrap members only behaves as before.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use odradek_consensus::observe::HandOverCause;
use odradek_consensus::transport::PeerBook;
use odradek_consensus::{Durability, EntryMeta, NodeId};
use raft::eraftpb::{ConfChangeV2, ConfState};
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

/// The nodes that should follow the metadata log: the bootstrap members and the joined ones,
/// but those removed.
fn followers_wanted(context: &NodeContext) -> BTreeSet<NodeId> {
    let mut wanted: BTreeSet<NodeId> = context.config.metadata_voters_initial().into_iter().collect();
    let state = context.state.lock();
    wanted.extend(state.meta.members().keys().copied());
    wanted.retain(|node| !state.meta.removed().contains(node));
    wanted
}

/// One pass on the metadata group's leader (module documentation).
pub async fn drive(context: &NodeContext) {
    let (changed_any, target) = {
        let state = context.state.lock();
        let meta = &state.meta;
        let changed_any = !meta.members().is_empty() || !meta.draining().is_empty() || !meta.removed().is_empty();
        (changed_any, meta.controller_voters_target().cloned())
    };
    if !changed_any && target.is_none() {
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
        propose(context, Step::AddLearners(missing).conf_change().expect("adding learners changes the configuration")).await;
        return;
    }
    // Removed nodes leave the metadata group (they are learners by then: see `drain`).
    let gone: Vec<NodeId> = {
        let state = context.state.lock();
        conf.learners.iter().copied().filter(|node| state.meta.removed().contains(node)).collect()
    };
    if !gone.is_empty() && !joint {
        tracing::info!(learners = ?gone, "removed nodes leave the metadata group");
        propose(context, Step::RemoveLearners(gone).conf_change().expect("removing learners changes the configuration")).await;
        return;
    }
    let Some(target) = target else {
        return drain(context, &conf, &status).await;
    };
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
    let change = match step {
        Step::WaitCatchUp(_) | Step::WaitForSuccessor => return,
        Step::TransferLeader { to } => {
            let _ = context.node.transfer_leader(METADATA_GROUP, to, HandOverCause::Membership).await;
            return;
        }
        Step::Complete => return record_completion(context, target).await,
        configuration => configuration.conf_change().expect("every other step changes the configuration"),
    };
    propose(context, change).await;
}

/// The number of `target` nodes that hold every committed metadata entry, as this leader sees
/// it (itself included): a controller-voters change is refused unless they are a majority.
pub fn caught_up_in(me: NodeId, status: &odradek_consensus::GroupStatus, target: &[NodeId]) -> usize {
    let following = following_metadata(me, status);
    target.iter().filter(|node| following.contains(node)).count()
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

/// A learner of the metadata group at most this many entries behind its commit counts as live
/// (it acknowledged entries lately): it may replace a leaving controller voter, and is promoted
/// only once it caught up.
const LIVE_LAG_MAX: u64 = 100;

/// The controller voters once voter `node` leaves them (it is decommissioned), as the metadata
/// group's leader `me` sees the group (`conf`, `status`): `node` is replaced by a live non-voter
/// (a learner of the metadata group within [`LIVE_LAG_MAX`] entries of the commit, a broker
/// neither draining nor removed; the one furthest along, then the lowest id) so the controller
/// group keeps its size; the change then makes it a voter through the voters-change plan
/// (learner first, promoted only once caught up, joint consensus). With no such node the group
/// shrinks, only if the remaining voters that hold the metadata log are a quorum of them;
/// otherwise the reason why not.
pub fn controller_voters_without(
    meta: &crate::meta::MetadataState,
    conf: &ConfState,
    status: &odradek_consensus::GroupStatus,
    me: NodeId,
    node: NodeId,
) -> Result<Vec<NodeId>, String> {
    let mut target: Vec<NodeId> = conf.voters.iter().copied().filter(|&voter| voter != node).collect();
    let replacement = replacement_candidates(meta, conf, node)
        .filter(|learner| status.progress.get(learner).is_some_and(|&(matched, _)| matched > 0 && matched + LIVE_LAG_MAX >= status.commit))
        .max_by_key(|learner| (status.progress.get(learner).map_or(0, |&(matched, _)| matched), std::cmp::Reverse(*learner)));
    if let Some(replacement) = replacement {
        target.push(replacement);
        target.sort_unstable();
        return Ok(target);
    }
    let live = caught_up_in(me, status, &target);
    if target.is_empty() || live * 2 <= target.len() {
        return Err(format!(
            "node {node} is a controller voter and no live non-voter can replace it: only {live} of the remaining voters {target:?} \
             hold the metadata log, not a quorum of them"
        ));
    }
    Ok(target)
}

/// The learners of the metadata group that may replace leaving voter `node`: brokers neither
/// draining nor removed.
fn replacement_candidates<'a>(
    meta: &'a crate::meta::MetadataState,
    conf: &'a ConfState,
    node: NodeId,
) -> impl Iterator<Item = NodeId> + 'a {
    conf.learners.iter().copied().filter(move |learner| {
        *learner != node && meta.brokers().contains_key(learner) && !meta.draining().contains(learner) && !meta.removed().contains(learner)
    })
}

/// A learner that may replace leaving voter `node` but that this leader has not heard from
/// (no progress, or nothing matched: a leader elected a moment ago knows no learner's log yet):
/// the drain waits for it rather than shrink the controller group it might have kept whole.
pub fn replacement_unheard(
    meta: &crate::meta::MetadataState,
    conf: &ConfState,
    status: &odradek_consensus::GroupStatus,
    node: NodeId,
) -> Option<NodeId> {
    replacement_candidates(meta, conf, node).find(|learner| status.progress.get(learner).is_none_or(|&(matched, _)| matched == 0))
}

/// Partition moves the decommission driver keeps running at once, at most (each is catch-up
/// traffic to a new replica).
const DRAIN_MOVES_MAX: usize = 4;

/// Proposes a metadata command on this leader and waits (bounded) for its commit.
async fn submit_meta(context: &NodeContext, command: MetaCommand) {
    let payload = Bytes::from(command.encode());
    let ticket = context.node.submit(METADATA_GROUP, payload, EntryMeta::Command, Durability::Committed).await;
    let wait = Duration::from_millis(context.config.tick_ms * CONF_CHANGE_WAIT_TICKS);
    match tokio::time::timeout(wait, ticket.outcome()).await {
        Ok(Ok(appended)) => tracing::info!(?command, index = appended.index, "membership command committed"),
        Ok(Err(error)) => tracing::info!(?command, %error, "membership command failed; the next pass looks again"),
        Err(_) => tracing::info!(?command, "membership command not committed yet; the next pass looks again"),
    }
}

/// The nodes the metadata group's leader `me` sees holding the whole committed metadata log
/// (itself included): the brokers a move may take a replica to. A node that does not follow
/// the metadata log cannot host a new replica (it never learns of it): one quarantined (its
/// metadata files damaged: it hosts only the groups it had), down or cut off. Choosing it
/// left a move waiting forever for a learner that never came (disk `--grow-shrink` seeds 21 and
/// 68, V6). Like Kafka's controller, which places replicas only on unfenced brokers.
pub fn following_metadata(me: NodeId, status: &odradek_consensus::GroupStatus) -> BTreeSet<NodeId> {
    let mut live: BTreeSet<NodeId> =
        status.progress.iter().filter(|&(_, &(matched, _))| matched >= status.commit).map(|(&node, _)| node).collect();
    live.insert(me);
    live
}

/// The next move off draining `node`: a partition it holds that is not moving, and its target
/// (`node` replaced, in place, by the eligible broker holding the fewest replicas; eligible:
/// not draining, not a replica already, and in `live`, see [`following_metadata`]).
pub fn next_drain_move(meta: &crate::meta::MetadataState, node: NodeId, live: &BTreeSet<NodeId>) -> Option<(String, u32, Vec<NodeId>)> {
    let load = replica_load(meta);
    for topic in meta.topics().values() {
        for info in &topic.partitions {
            // A partition repairing a replica moves once that is done (`meta::repair`).
            if !info.replicas.contains(&node) || meta.reassignment_target(info.group).is_some() || meta.repair(info.group).is_some() {
                continue;
            }
            let eligible = meta
                .brokers()
                .keys()
                .copied()
                .filter(|broker| !meta.draining().contains(broker) && !info.replicas.contains(broker) && live.contains(broker))
                .min_by_key(|broker| (load.get(broker).copied().unwrap_or(0), *broker));
            let Some(replacement) = eligible else { continue };
            let target: Vec<NodeId> = info.replicas.iter().map(|&replica| if replica == node { replacement } else { replica }).collect();
            return Some((topic.name.clone(), info.partition, target));
        }
    }
    None
}

/// Replicas per broker, counting a running move's target as where the partition will be.
pub fn replica_load(meta: &crate::meta::MetadataState) -> std::collections::BTreeMap<NodeId, usize> {
    let mut load: std::collections::BTreeMap<NodeId, usize> = meta.brokers().keys().map(|&broker| (broker, 0)).collect();
    for info in meta.topics().values().flat_map(|topic| &topic.partitions) {
        let placed = meta.reassignment_target(info.group).unwrap_or(&info.replicas);
        for node in placed {
            *load.entry(*node).or_insert(0) += 1;
        }
    }
    load
}

/// One pass of decommissioning (module documentation): the controller voters leave a draining
/// node, its replicas move away (a few at a time), and once nothing holds it, it is removed.
async fn drain(context: &NodeContext, conf: &ConfState, status: &odradek_consensus::GroupStatus) {
    let draining: Vec<NodeId> = context.state.lock().meta.draining().iter().copied().collect();
    for node in draining {
        let voters: Vec<NodeId> = conf.voters.iter().chain(&conf.voters_outgoing).copied().collect();
        if voters.contains(&node) {
            let target = {
                let state = context.state.lock();
                if let Some(learner) = replacement_unheard(&state.meta, conf, status, node) {
                    tracing::info!(node, learner, "a draining controller voter waits to hear from a learner that may replace it");
                    return;
                }
                controller_voters_without(&state.meta, conf, status, context.state.node_id, node)
            };
            match target {
                Ok(target) => return submit_meta(context, MetaCommand::SetControllerVoters { voters: target }).await,
                Err(reason) => {
                    tracing::warn!(node, ?voters, reason, "a draining node is a controller voter and cannot leave the voters yet");
                    return;
                }
            }
        }
        let (moving, next, removable) = {
            let state = context.state.lock();
            let live = following_metadata(context.state.node_id, status);
            (state.meta.reassignments().len(), next_drain_move(&state.meta, node, &live), state.meta.check_remove(node).is_ok())
        };
        if removable {
            return submit_meta(context, MetaCommand::RemoveNode { node }).await;
        }
        if let Some((topic, partition, replicas)) = next.filter(|_| moving < DRAIN_MOVES_MAX) {
            tracing::info!(node, topic, partition, ?replicas, "decommission: moving a replica off the node");
            return submit_meta(context, MetaCommand::StartReassignment { topic, partition, replicas }).await;
        }
    }
}

/// The moves of a rebalance (`odradek cluster rebalance`): every partition not moving is
/// placed so that replicas, then preferred leaders, spread evenly over `nodes` (most and least
/// loaded differ by at most one where a move can do it). A replica moves from the most loaded
/// node to the least loaded one in place; a preferred leader changes by reordering a
/// partition's replicas (a move of the same set, which completes at once). Only the
/// partitions whose replica list changes are returned, as (topic, partition, target).
pub fn rebalance_plan(meta: &crate::meta::MetadataState, nodes: &[NodeId]) -> Vec<(String, u32, Vec<NodeId>)> {
    use std::collections::BTreeMap;
    let mut placement: BTreeMap<(String, u32), Vec<NodeId>> = BTreeMap::new();
    let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|&node| (node, 0)).collect();
    let mut leads: BTreeMap<NodeId, usize> = nodes.iter().map(|&node| (node, 0)).collect();
    for topic in meta.topics().values() {
        for info in &topic.partitions {
            let placed = match meta.reassignment_target(info.group) {
                Some(target) => target.clone(),
                // Repairing a replica: it stays where it is (`meta::repair`).
                None if meta.repair(info.group).is_some() => info.replicas.clone(),
                None => {
                    placement.insert((topic.name.clone(), info.partition), info.replicas.clone());
                    info.replicas.clone()
                }
            };
            for node in &placed {
                if let Some(count) = load.get_mut(node) {
                    *count += 1;
                }
            }
            if let Some(count) = placed.first().and_then(|first| leads.get_mut(first)) {
                *count += 1;
            }
        }
    }
    let extreme = |counts: &BTreeMap<NodeId, usize>| {
        let most = counts.iter().max_by_key(|(node, count)| (**count, std::cmp::Reverse(**node))).map(|(n, c)| (*n, *c));
        let least = counts.iter().min_by_key(|(node, count)| (**count, **node)).map(|(n, c)| (*n, *c));
        most.zip(least)
    };
    let rounds_max = placement.len() * nodes.len().max(1) + 1;
    for _ in 0..rounds_max {
        let Some(((most, most_count), (least, least_count))) = extreme(&load) else { break };
        if most_count <= least_count + 1 {
            break;
        }
        let Some(replicas) = placement.values_mut().find(|replicas| replicas.contains(&most) && !replicas.contains(&least)) else {
            break;
        };
        let position = replicas.iter().position(|&node| node == most).expect("found by it");
        if position == 0 {
            *leads.get_mut(&most).expect("a node") -= 1;
            *leads.get_mut(&least).expect("a node") += 1;
        }
        replicas[position] = least;
        *load.get_mut(&most).expect("a node") -= 1;
        *load.get_mut(&least).expect("a node") += 1;
    }
    for _ in 0..rounds_max {
        let Some(((most, most_count), (least, least_count))) = extreme(&leads) else { break };
        if most_count <= least_count + 1 {
            break;
        }
        let Some(replicas) = placement.values_mut().find(|replicas| replicas.first() == Some(&most) && replicas.contains(&least)) else {
            break;
        };
        let position = replicas.iter().position(|&node| node == least).expect("found by it");
        replicas.swap(0, position);
        *leads.get_mut(&most).expect("a node") -= 1;
        *leads.get_mut(&least).expect("a node") += 1;
    }
    placement
        .into_iter()
        .filter(|((topic, partition), replicas)| meta.partition(topic, *partition).is_some_and(|info| &info.replicas != replicas))
        .map(|((topic, partition), replicas)| (topic, partition, replicas))
        .collect()
}

/// A draining node that missed its own removal (it left the metadata group, so the entry that
/// removed it may never reach it: it was down or cut off then) asks the controller, at each
/// registration tick while its own metadata says it drains: the metadata leader it knows, or
/// the node another node names as controller, or each other broker in turn; only the
/// controller's own answer counts (a lagging node's metadata may predate the removal). Once the
/// controller lists it as removed, it serves clients nothing more (`request::removed`).
/// Nothing happens on a node that is not draining.
pub async fn learn_removal(context: &NodeContext) {
    let me = context.state.node_id;
    let candidates: Vec<NodeId> = {
        let state = context.state.lock();
        if !state.meta.draining().contains(&me) || state.meta.removed().contains(&me) {
            return;
        }
        state.meta.brokers().keys().copied().filter(|&node| node != me).collect()
    };
    if context.state.was_removed() {
        return;
    }
    ask_controller_whether_removed(context, candidates, false).await;
}

/// Ticks a node whose metadata has not caught up waits between two questions of
/// [`learn_removal_while_catching_up`] (the first after as many).
pub const REMOVAL_ASK_TICKS: u64 = 40;

/// [`learn_removal`] for a node whose metadata has not caught up since it started, asked by
/// the catch-up wait every [`REMOVAL_ASK_TICKS`] when the node's data directory is a new
/// incarnation or its own metadata says it drains: a node removed while it was down (or wiped)
/// is in no configuration of the metadata group any more, so no leader ever sends it the log
/// and it would wait forever, answering every client "catching up; retry shortly" (crash seed
/// 11 with `--wipes --grow-shrink`: the decommissioned node 1 was wiped, removed while down,
/// then restarted from its `--node` list, and the clients that asked it first never moved on).
/// Asks every member it knows of (its bootstrap list and its metadata's brokers: it may know no
/// client address of the controller, a node that joined after its metadata ends). Any node's
/// committed metadata listing it removed is believed: a removal is undone only by a join, which
/// this process did not make (it started from its `--node` list with a new directory, or with
/// its own metadata saying it drains). Returns whether it learned it was removed (it then
/// serves clients nothing).
pub async fn learn_removal_while_catching_up(context: &NodeContext) -> bool {
    let me = context.state.node_id;
    if context.state.was_removed() {
        return true;
    }
    let candidates: Vec<NodeId> = {
        let state = context.state.lock();
        // A node started with --join joined just now: its join committed after any removal of
        // an earlier self, so a lagging member's metadata that still lists it removed must not
        // be believed (it would serve nothing for good). It asks only if it drains.
        let new_directory = context.config.data_dir_new && !context.config.is_joining_member();
        if !new_directory && !state.meta.draining().contains(&me) {
            return false;
        }
        let known: BTreeSet<NodeId> =
            context.config.nodes.iter().map(|member| member.id).chain(state.meta.brokers().keys().copied()).collect();
        known.into_iter().filter(|&node| node != me).collect()
    };
    ask_controller_whether_removed(context, candidates, true).await;
    context.state.was_removed()
}

/// Asks the controller whether this node was removed: the metadata leader this node knows
/// first, then `candidates` in turn, following the controller each answer names; only the
/// controller's own answer counts, or with `any_removal` any answer that lists this node
/// removed. Marks the node removed when it says so.
async fn ask_controller_whether_removed(context: &NodeContext, mut candidates: Vec<NodeId>, any_removal: bool) {
    let me = context.state.node_id;
    if let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await {
        if status.leader != 0 && status.leader != me {
            candidates.retain(|&node| node != status.leader);
            candidates.insert(0, status.leader);
        }
    }
    let wait = Duration::from_millis(context.config.tick_ms * CONF_CHANGE_WAIT_TICKS);
    let mut asked = BTreeSet::new();
    while let Some(to) = candidates.first().copied() {
        candidates.remove(0);
        if !asked.insert(to) {
            continue;
        }
        let body = odradek_client::wire::proto::Request_oneof_body::describe_cluster(Default::default());
        let Ok(Ok(response)) = tokio::time::timeout(wait, crate::request::relay::call(context, to, "removal", body)).await else {
            continue;
        };
        if response.error != odradek_client::wire::proto::ErrorCode::NONE || !response.has_describe_cluster() {
            continue;
        }
        let described = response.get_describe_cluster();
        if any_removal && described.removed.contains(&me) {
            tracing::warn!(asked = to, "the cluster's metadata says this node was removed: serving clients nothing more");
            context.state.learn_removed();
            return;
        }
        if described.controller != described.node_id {
            if described.controller != 0 && described.controller != me {
                candidates.insert(0, described.controller);
            }
            continue;
        }
        if described.removed.contains(&me) {
            tracing::warn!(controller = to, "the controller says this node was removed from the cluster: serving clients nothing more");
            context.state.learn_removed();
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use odradek_consensus::GroupStatus;
    use raft::eraftpb::ConfState;
    use raft::StateRole;

    use super::controller_voters_without;
    use crate::meta::{BrokerInfo, JoiningNode, MetaCommand, MetadataState};

    /// Brokers 1..=3 (bootstrap) and 4, 5 (joined), as applied by the metadata state machine.
    fn metadata() -> MetadataState {
        let mut meta = MetadataState::new();
        let mut index = 0;
        let mut apply = |meta: &mut MetadataState, command: MetaCommand| {
            index += 1;
            meta.apply(index, &command.encode());
        };
        for node in 1..=3 {
            let broker = BrokerInfo { node_id: node, client_address: format!("127.0.0.1:{}", 9090 + node), kafka_address: String::new() };
            apply(&mut meta, MetaCommand::RegisterBroker(broker));
        }
        for node in 4..=5 {
            let join = JoiningNode {
                node_id: node,
                incarnation: 1,
                peer_address: format!("127.0.0.1:{}", 25100 + node),
                client_address: format!("127.0.0.1:{}", 25200 + node),
                kafka_address: String::new(),
                replace: false,
            };
            apply(&mut meta, MetaCommand::JoinNode(join));
        }
        meta
    }

    /// Leader 1's view: commit 100, each listed node matched at the index given.
    fn status(matched: &[(u64, u64)]) -> GroupStatus {
        GroupStatus {
            role: StateRole::Leader,
            leader: 1,
            term: 2,
            commit: 100,
            applied: 100,
            last_index: 100,
            progress: matched.iter().map(|&(node, index)| (node, (index, index + 1))).collect(),
            suspect: false,
        }
    }

    fn conf(voters: &[u64], learners: &[u64]) -> ConfState {
        ConfState { voters: voters.to_vec(), learners: learners.to_vec(), ..ConfState::default() }
    }

    #[test]
    fn a_leaving_controller_voter_is_replaced_by_a_live_non_voter() {
        let meta = metadata();
        let all = status(&[(2, 100), (3, 100), (4, 100), (5, 100)]);
        // Learners 4 and 5 hold the log: the lowest replaces voter 3; the group keeps 3 voters.
        assert_eq!(controller_voters_without(&meta, &conf(&[1, 2, 3], &[4, 5]), &all, 1, 3), Ok(vec![1, 2, 4]));
        // Learner 4 is a little behind: learner 5, further along, replaces the voter.
        let four_behind = status(&[(2, 100), (3, 100), (4, 95), (5, 100)]);
        assert_eq!(controller_voters_without(&meta, &conf(&[1, 2, 3], &[4, 5]), &four_behind, 1, 3), Ok(vec![1, 2, 5]));
        // Learner 5 never acknowledged anything: learner 4, a little behind, replaces the voter
        // (the change promotes it only once it caught up).
        let five_silent = status(&[(2, 100), (3, 100), (4, 95), (5, 0)]);
        assert_eq!(controller_voters_without(&meta, &conf(&[1, 2, 3], &[4, 5]), &five_silent, 1, 3), Ok(vec![1, 2, 4]));
    }

    #[test]
    fn without_a_live_non_voter_the_group_shrinks_only_keeping_a_quorum() {
        let meta = metadata();
        // No learner: voters 1 and 2 hold the log, a quorum of the 2 that remain.
        let live = status(&[(2, 100), (3, 100)]);
        assert_eq!(controller_voters_without(&meta, &conf(&[1, 2, 3], &[]), &live, 1, 3), Ok(vec![1, 2]));
        // A learner that never acknowledged anything is no replacement; voter 2 lags: only 1 of
        // the remaining 2 holds the log, no quorum: refused, with the reason.
        let lagging = status(&[(2, 10), (3, 100), (4, 0)]);
        let refused = controller_voters_without(&meta, &conf(&[1, 2, 3], &[4]), &lagging, 1, 3).expect_err("no quorum would remain");
        assert!(refused.contains("no live non-voter") && refused.contains("not a quorum"), "{refused}");
        // A draining learner replaces nobody.
        let mut draining = meta.clone();
        draining.apply(1_000, &MetaCommand::DecommissionNode { node: 4 }.encode());
        let with_draining = status(&[(2, 10), (3, 100), (4, 100)]);
        assert!(controller_voters_without(&draining, &conf(&[1, 2, 3], &[4]), &with_draining, 1, 3).is_err());
        // The drain waits for a learner this leader has not heard from yet (newly elected), and
        // only for one that could replace the voter.
        assert_eq!(super::replacement_unheard(&meta, &conf(&[1, 2, 3], &[4]), &lagging, 3), Some(4));
        assert_eq!(super::replacement_unheard(&meta, &conf(&[1, 2, 3], &[4]), &live, 3), Some(4), "no progress known");
        assert_eq!(super::replacement_unheard(&meta, &conf(&[1, 2, 3], &[4]), &with_draining, 3), None);
        assert_eq!(super::replacement_unheard(&draining, &conf(&[1, 2, 3], &[4]), &lagging, 3), None, "draining: no replacement");
    }
}
