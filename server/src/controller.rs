//! The background duties of every node, driven by the controller's metadata:
//! - reconcile: host exactly the partition groups the metadata assigns to this node (create
//!   them with the topic's log settings, replaying their logs into the partition state; remove
//!   the ones of deleted topics; host the partitions added to a topic; reopen a partition whose
//!   topic's log settings changed, so that retention and segment rolls follow the new values);
//! - register: the metadata group's leader registers every configured node as a broker;
//! - balance: a leader that is not its partition's preferred replica hands leadership to it
//!   once the preferred replica has caught up (not while the partition moves);
//! - reassign: a partition's leader moves it to the replica set the metadata targets
//!   (`crate::reassign`); a node that is no longer a replica deletes its copy (reconcile);
//! - repair: a replica whose files do not open here is reported, set aside and rebuilt under a
//!   new identity; a partition's leader says when every other voter holds its commit
//!   (`crate::repair`);
//! - retention: trim partition logs by their topic's retention and move their log start; an
//!   offsets-topic partition only below its group table's last snapshot (`crate::group`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use odradek_consensus::observe::HandOverCause;
use odradek_consensus::{GroupId, LeadRefusals, NodeError, NodeId};
use raft::StateRole;

use crate::context::NodeContext;
use crate::meta::{BrokerInfo, MetaCommand, TopicSettings, METADATA_GROUP};
use crate::shutdown::Shutdown;

/// A partition this node hosts: its replicas and log settings when it was created here.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hosted {
    replicas: Vec<NodeId>,
    log_settings: LogSettings,
}

/// The topic settings a partition's log is opened with (segment size, retention): a change of
/// any of them reopens the partition's group here (`reopen_changed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogSettings {
    retention_ms: i64,
    retention_bytes: i64,
    segment_bytes: u64,
}

impl LogSettings {
    fn of(settings: &TopicSettings) -> LogSettings {
        LogSettings {
            retention_ms: settings.retention_ms,
            retention_bytes: settings.retention_bytes,
            segment_bytes: settings.segment_bytes,
        }
    }
}

/// Waits until this node's metadata is as recent as the metadata leader's commit index, then
/// marks it ready (see `NodeState::meta_ready`). The index comes from a read index, which the
/// leader answers with its own commit: the commit a follower sees in a heartbeat is capped at
/// what the leader knows it holds, which after a restart of the whole cluster is nothing (the
/// replay stops at the lazily persisted commit), so it once marked a node ready with none of
/// its metadata, listing no topics and no joined nodes.
///
/// A node that may have been removed while it was down (its data directory is a new
/// incarnation, or its metadata says it drains) asks the controller every
/// `membership::REMOVAL_ASK_TICKS` ticks: removed, it is in no configuration of the metadata
/// group and would wait here forever. Returns `false` once it learns so (it serves clients
/// nothing: `request::removed`) or at shutdown.
async fn catch_up_metadata(context: &NodeContext, shutdown: &mut Shutdown) -> bool {
    let tick = Duration::from_millis(context.config.tick_ms);
    let mut leader_commit = None;
    let ask_every = tick * crate::membership::REMOVAL_ASK_TICKS as u32;
    let mut ask_at = tokio::time::Instant::now() + ask_every;
    loop {
        if tokio::time::Instant::now() >= ask_at {
            if crate::membership::learn_removal_while_catching_up(context).await {
                tracing::warn!("removed from the cluster while down: not catching up on the metadata; serving clients nothing");
                return false;
            }
            ask_at = tokio::time::Instant::now() + ask_every;
        }
        if let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await {
            if leader_commit.is_none() && status.leader != 0 {
                // Bounded by the node's own read-index timeout; asked again after one.
                leader_commit = tokio::select! {
                    biased;
                    _ = shutdown.stopping() => return false,
                    index = context.node.read_index(METADATA_GROUP) => index.ok(),
                };
            }
            if let Some(commit) = leader_commit.filter(|&commit| status.applied >= commit) {
                context.state.meta_ready.store(true, std::sync::atomic::Ordering::Release);
                tracing::info!(
                    applied = status.applied,
                    leader_commit = commit,
                    leader = status.leader,
                    "metadata caught up; serving clients"
                );
                return true;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return false,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(context: Arc<NodeContext>, mut shutdown: Shutdown) {
    if !catch_up_metadata(&context, &mut shutdown).await {
        return;
    }
    destroy_stray_replicas(&context).await;
    let mut versions = context.state.meta_version.subscribe();
    let mut hosted: BTreeMap<GroupId, Hosted> = BTreeMap::new();
    // Planted bug `added-partitions-unhosted` only: partition 0's group -> the count first seen.
    let mut first_seen: BTreeMap<GroupId, usize> = BTreeMap::new();
    // Leader transfers asked by moves, across passes (`reassign::TransferTries`).
    let mut transfer_tries = crate::reassign::TransferTries::default();
    let mut chores = tokio::time::interval(Duration::from_millis(context.config.balance_interval_ms));
    chores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registration = tokio::time::interval(Duration::from_millis(context.config.tick_ms * 10));
    registration.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // With hibernation (the mode for many idle partitions) a pass over every hosted partition
    // is skipped when it has nothing to do (see `Chores`); off, every pass runs as it always did.
    let idle_cheap = context.config.hibernate;
    // The metadata version the last reconcile saw and whether it left nothing to retry; `None`:
    // reconcile at the next pass.
    let mut reconciled: Option<u64> = None;
    let mut chores_due = false;
    // The leadership refusals the node last took (`push_lead_refusals`): none at its start.
    let mut refusals_pushed = LeadRefusals::default();
    loop {
        crate::membership::dial_members(&context.state, &context.peers);
        let version = *versions.borrow();
        if !idle_cheap || chores_due || reconciled != Some(version) {
            // Nothing changed since a reconcile that left nothing to retry: it would do nothing
            // (it depends on the metadata and on its own failures only). Still run at every
            // chores tick, as a backstop.
            let settled = reconcile(&context, &mut hosted, &mut first_seen).await;
            reconciled = settled.then_some(version);
        }
        push_lead_refusals(&context, &mut refusals_pushed).await;
        chores_due = false;
        // Biased: deterministic under the simulator; the periodic ticks cannot starve the rest.
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return,
            _ = registration.tick() => {
                register_brokers(&context).await;
                crate::membership::drive(&context).await;
                crate::membership::learn_removal(&context).await;
                crate::reassign::drive(&context, hosted.keys().copied(), &mut transfer_tries).await;
                crate::repair::drive(&context, hosted.keys().copied()).await;
                crate::repair::rebuilt_replicas_settled(&context, hosted.keys().copied()).await;
            }
            _ = chores.tick() => {
                balance_leaders(&context, &hosted, idle_cheap).await;
                enforce_retention(&context, &hosted, idle_cheap).await;
                chores_due = true;
            }
            changed = versions.changed() => if changed.is_err() { return },
        }
    }
}

/// Gives the node the replicas its metadata says must not lead (`MetadataState::lead_refusals`:
/// repairs in progress), when they changed: the node's own hand-overs (a graceful shutdown's
/// drain, a node low on disk) and every transfer it is asked for skip them (consensus module
/// `hand_over`).
async fn push_lead_refusals(context: &NodeContext, pushed: &mut LeadRefusals) {
    let refusals = context.state.lock().meta.lead_refusals();
    if *pushed != refusals && context.node.set_lead_refusals(refusals.clone()).await.is_ok() {
        *pushed = refusals;
    }
}

/// Once, at start (the metadata caught up): deletes the stored replicas the metadata no longer
/// gives this node, whose topic was deleted or which moved away while this node was down or
/// before it deleted them. Reconcile only ever removes groups it hosts, so these would stay on
/// disk forever (and a simulator's R7 waited for them). Kafka deletes such stray logs at start
/// too (KIP-516).
async fn destroy_stray_replicas(context: &NodeContext) {
    let keep: std::collections::BTreeSet<GroupId> = {
        let state = context.state.lock();
        state.meta.groups_of(context.state.node_id).into_keys().chain([METADATA_GROUP]).collect()
    };
    match context.node.destroy_stray_groups(keep).await {
        Ok(destroyed) if destroyed.is_empty() => {}
        Ok(destroyed) => tracing::info!(?destroyed, "deleted stray replicas: the metadata gives this node none of these groups"),
        Err(error) => tracing::warn!(%error, "deleting stray replicas failed; they stay until the next start"),
    }
}

/// What the metadata gives this node of one partition group: its replicas, the voters a new
/// replica starts from, its topic's settings, and the phase of the repair of this node's replica
/// if one is recorded.
type Desired = (Vec<NodeId>, Vec<NodeId>, TopicSettings, Option<crate::meta::RepairPhase>);

/// Creates and removes partition groups to match the metadata. `true` when it left nothing to
/// retry (every group it created, removed or set aside, it did).
async fn reconcile(context: &NodeContext, hosted: &mut BTreeMap<GroupId, Hosted>, first_seen: &mut BTreeMap<GroupId, usize>) -> bool {
    let mut settled = true;
    let me = context.state.node_id;
    let added_unhosted = context.config.planted_switches().added_partitions_unhosted;
    // group -> (its replicas now, the voters a new replica starts from, its topic's settings,
    // the phase of the repair of this node's replica if one is recorded)
    let desired: BTreeMap<GroupId, Desired> = {
        let state = context.state.lock();
        state
            .meta
            .groups_of(me)
            .into_iter()
            .filter_map(|(group, replicas)| {
                let (topic, info) = state.meta.partition_of_group(group)?;
                if added_unhosted {
                    let seen = *first_seen.entry(topic.partitions[0].group).or_insert(topic.partitions.len());
                    if info.partition as usize >= seen {
                        return None; // planted: a partition added after this node first saw the topic
                    }
                }
                let voters_initial = state.meta.voters_initial(group)?;
                let repair = state.meta.repair(group).filter(|repair| repair.node == me).map(|repair| repair.phase);
                Some((group, (replicas, voters_initial, topic.settings.clone(), repair)))
            })
            .collect()
    };
    reopen_changed(context, hosted, &desired).await;
    let removed: Vec<GroupId> = hosted.keys().filter(|group| !desired.contains_key(group)).copied().collect();
    for group in removed {
        match context.node.destroy_group(group).await {
            Ok(_) => {
                hosted.remove(&group);
                context.state.remove_partition(group);
                tracing::info!(group, "deleted a replica the metadata no longer gives this node (topic deleted or partition moved)");
            }
            Err(error) => {
                settled = false;
                tracing::warn!(group, %error, "removing a partition group failed");
            }
        }
    }
    for (group, (replicas, voters_initial, settings, repair)) in desired {
        if let Some(partition) = hosted.get_mut(&group) {
            // A completed move changes the replicas (and the preferred leader) of a hosted group.
            partition.replicas = replicas;
            continue;
        }
        context.state.add_partition(group);
        let log_settings = LogSettings::of(&settings);
        let log_config = context.config.log_config(settings.retention_ms, settings.retention_bytes, settings.segment_bytes);
        // A group's every replica starts from its bootstrap voters (`MetadataState::voters_initial`);
        // a replica that joins later learns the changes since from the leader's log or snapshot.
        // One that joins a moving partition (this node is only in the target) holds no vote
        // until it has caught up: this node may have held the partition before (R8 d).
        // A replica being rebuilt after damage (`crate::repair`) joins the same way: suspect of
        // its whole log (a crash while its files were set aside finishes that move first).
        let rebuilding = repair == Some(crate::meta::RepairPhase::Rebuilding);
        if rebuilding {
            if let Err(error) = context.node.set_aside_group(group, true).await {
                settled = false;
                context.state.remove_partition(group);
                tracing::warn!(group, %error, "finishing an interrupted set-aside of a damaged replica failed; will retry");
                continue;
            }
        }
        let created = if replicas.contains(&me) && !rebuilding {
            context.node.create_group_with(group, voters_initial, 0, log_config).await
        } else {
            context.node.create_group_joining(group, voters_initial, log_config).await
        };
        match created {
            Ok(()) | Err(NodeError::GroupExists(_)) => {
                tracing::info!(group, ?replicas, "hosting a partition");
                if replicas.first() == Some(&me) {
                    // The preferred replica stands first, so leaders start spread out.
                    let _ = context.node.campaign(group).await;
                }
                hosted.insert(group, Hosted { replicas, log_settings });
            }
            Err(error) => {
                // Retried on the next pass (the next metadata change or chore tick).
                settled = false;
                context.state.remove_partition(group);
                if crate::repair::is_damaged(&error) {
                    crate::repair::replica_does_not_open(context, group, repair, &error).await;
                } else {
                    tracing::error!(group, %error, "creating a partition group failed");
                }
            }
        }
    }
    settled
}

/// Closes the hosted groups whose topic's log settings changed, so that the creation pass of
/// [`reconcile`] reopens them with the new ones (as a restart of this node would): the raft
/// state and the log stay on disk, the partition state is replayed from the log. Its cost is a
/// replay of the partition's log here and, on its leader, an election.
async fn reopen_changed(context: &NodeContext, hosted: &mut BTreeMap<GroupId, Hosted>, desired: &BTreeMap<GroupId, Desired>) {
    let changed: Vec<GroupId> = hosted
        .iter()
        .filter(|(group, partition)| {
            desired.get(group).is_some_and(|(_, _, settings, _)| LogSettings::of(settings) != partition.log_settings)
        })
        .map(|(group, _)| *group)
        .collect();
    for group in changed {
        let removed = context.node.remove_group(group).await;
        hosted.remove(&group);
        context.state.remove_partition(group);
        tracing::info!(group, ?removed, "reopening a partition with its topic's new log settings");
    }
}

/// On the metadata leader: registers configured nodes missing from the metadata, or whose
/// registration differs from the configuration. A member's Kafka address is the one its own
/// `--node` entry gives (this node's: [`ServerConfig::kafka_advertised`]); where the
/// configuration names none, the registered one stays (the member registered it while it led,
/// or another node's configuration named it), so nodes that know less never undo it.
///
/// [`ServerConfig::kafka_advertised`]: crate::config::ServerConfig::kafka_advertised
pub async fn register_brokers(context: &NodeContext) {
    let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await else { return };
    if status.role != StateRole::Leader {
        return;
    }
    let missing: Vec<BrokerInfo> = {
        let state = context.state.lock();
        let bootstrap = context.config.metadata_voters_initial();
        context
            .config
            .nodes
            .iter()
            // A node that joined the running cluster was registered by its join (`meta::members`).
            // Nor does a removed bootstrap member that rejoined (`meta::members`).
            .filter(|member| {
                bootstrap.contains(&member.id)
                    && !state.meta.removed().contains(&member.id)
                    && !state.meta.members().contains_key(&member.id)
            })
            .map(|member| {
                let registered = state.meta.brokers().get(&member.id).map(|broker| broker.kafka_address.clone());
                let configured = if member.id == context.config.id { context.config.kafka_advertised() } else { member.kafka };
                let kafka_address = configured.map(|address| address.to_string()).or(registered).unwrap_or_default();
                BrokerInfo { node_id: member.id, client_address: member.client.to_string(), kafka_address }
            })
            .filter(|broker| state.meta.brokers().get(&broker.node_id) != Some(broker))
            .collect()
    };
    for broker in missing {
        let payload = bytes::Bytes::from(MetaCommand::RegisterBroker(broker.clone()).encode());
        let ticket = context.node.submit(METADATA_GROUP, payload, odradek_consensus::EntryMeta::Command, Default::default()).await;
        if let Err(error) = ticket.outcome().await {
            tracing::debug!(node = broker.node_id, %error, "registering a broker failed; will retry");
            return;
        }
    }
}

/// Moves leadership of hosted partitions to their preferred replica where it has caught up.
/// With `idle_cheap`, asks the status only of the partitions the node's cached view says this
/// replica leads (one query for the view, none per partition that another replica leads): the
/// view follows every leadership change at the round that reports it, so a partition that won
/// its leadership since is balanced at the next pass.
async fn balance_leaders(context: &NodeContext, hosted: &BTreeMap<GroupId, Hosted>, idle_cheap: bool) {
    let me = context.state.node_id;
    let leading = match idle_cheap {
        true => context.node.leading().await.ok(),
        false => None,
    };
    for (&group, partition) in hosted {
        if leading.as_ref().is_some_and(|leading| !leading.contains(&group)) {
            continue;
        }
        let Some(&preferred) = partition.replicas.first() else { continue };
        if preferred == me || context.state.lock().meta.reassignment_target(group).is_some() {
            continue;
        }
        // A preferred replica whose node or replica is being repaired would drop the hand-over
        // (a stall of one election timeout each pass).
        if context.state.lock().meta.leadership_refusal(group, preferred).is_some() {
            continue;
        }
        let Ok(Some((status, _))) = context.node.status(group).await else { continue };
        if status.role != StateRole::Leader {
            continue;
        }
        let caught_up = status.progress.get(&preferred).is_some_and(|&(matched, _)| matched == status.last_index);
        if caught_up {
            tracing::info!(group, to = preferred, "handing leadership to the preferred replica");
            let _ = context.node.transfer_leader(group, preferred, HandOverCause::Balance).await;
        }
    }
}

/// The highest index retention may delete up to (exclusive) in `group`: an offsets-topic
/// partition keeps its group table's last snapshot record and what follows (0 before the first
/// snapshot, or while its table is not hosted here yet: everything is kept); any other topic
/// has no bound beyond the raft commit.
fn retention_index_bound(context: &NodeContext, group: GroupId) -> u64 {
    let offsets_partition =
        context.state.lock().meta.partition_of_group(group).is_some_and(|(topic, _)| topic.name == crate::group::OFFSETS_TOPIC);
    if offsets_partition {
        context.groups.retention_bound(group).unwrap_or(0)
    } else {
        u64::MAX
    }
}

/// Trims hosted partition logs by retention and publishes their new log start. With
/// `idle_cheap`, only the partitions that may have something to delete: the node's retention
/// candidates (log or commit changed since their last check, or segments that may age out:
/// [`odradek_consensus::Node::retention_candidates`]) and the offsets topic's partitions, whose
/// bound moves with their group table's snapshots. The others' last check deleted all it could
/// and nothing they depend on changed, so skipping them deletes nothing later than checking.
async fn enforce_retention(context: &NodeContext, hosted: &BTreeMap<GroupId, Hosted>, idle_cheap: bool) {
    let candidates = match idle_cheap {
        true => context.node.retention_candidates().await.ok(),
        false => None,
    };
    let offsets_groups: std::collections::BTreeSet<GroupId> = match &candidates {
        Some(_) => {
            let state = context.state.lock();
            let topic = state.meta.topic(crate::group::OFFSETS_TOPIC);
            topic.iter().flat_map(|topic| &topic.partitions).map(|info| info.group).collect()
        }
        None => Default::default(),
    };
    for &group in hosted.keys() {
        if candidates.as_ref().is_some_and(|candidates| !candidates.contains(&group) && !offsets_groups.contains(&group)) {
            continue;
        }
        let index_bound_max = retention_index_bound(context, group);
        if index_bound_max == 0 {
            continue;
        }
        // A data partition's producer table outlives the entries that built it (P1, P5).
        let start_state = context.state.lock().partitions.get_mut(&group).and_then(|partition| partition.start_state());
        #[cfg(any(madsim, feature = "planted-bugs"))]
        let start_state = start_state.filter(|_| !context.planted.producer_table_not_kept);
        match context.node.enforce_retention(group, index_bound_max, start_state).await {
            Ok(report) => {
                if let Ok(Some(bounds)) = context.node.log_bounds(group).await {
                    let mut state = context.state.lock();
                    if let Some(partition) = state.partitions.get_mut(&group) {
                        if bounds.offset_start > partition.state.log_start_offset() {
                            partition.state.set_log_start_offset(bounds.offset_start);
                            tracing::info!(group, ?report, offset_start = bounds.offset_start, "retention moved the log start");
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(group, %error, "enforcing retention failed"),
        }
    }
}
