//! Membership faults (issue 15; plan field `membership`, `--membership`): F-M1 reassignments
//! of the checked topic's partitions (grow the replication factor, try to shrink it, swap a
//! replica, move to a node that is down or cut off for the window) and F-M2 leader-transfer
//! storms, each optionally with a kill or an isolation of one node while it runs.
//!
//! Every random choice is drawn up front ([`draw`]), a fixed number of draws whatever the
//! cluster looks like, so a replay that leaves a round out keeps the nemesis's draws in step.
//! The replica set a move starts from is read from the cluster at injection (`describe_topic`
//! from the client machine) and the target computed from it and the draws ([`target_of`]).
//!
//! A reassignment goes on after its window: the partition's leader carries it out while later
//! faults strike, which is the point (the raft checker's R10/R11 judge every configuration it
//! passes through; V5 checks every move completed after the heal).

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::ClientError;
use odradek_log::CrashMode;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{Fault, FaultTargets, Healing};
use crate::config::TOPIC;

/// Bound on one admin call of a membership fault (a fault may hold it forever otherwise).
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Leader transfers per storm (spread over its window).
const STORM_TRANSFERS_MAX: usize = 8;
/// The largest replication factor a grow reaches (the cluster has 5 or 7 nodes under
/// `--membership`: a node outside every set stays for swaps).
const REPLICATION_FACTOR_GROWN_MAX: usize = 4;

/// How a move changes the partition's replica set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveKind {
    /// One more replica (up to [`REPLICATION_FACTOR_GROWN_MAX`]; else a swap).
    Grow,
    /// One replica fewer: the metadata must refuse it definitely (a move never lowers the
    /// replication factor).
    Shrink,
    /// One replica replaced by a node outside the set.
    Swap,
    /// A swap whose incoming node is down (killed) for the window.
    SwapToDown,
}

/// What else happens to one node while the membership fault runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Companion {
    None,
    Kill,
    Isolate,
}

/// Which node the companion hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The node joining the set (the first drawn node otherwise).
    Incoming,
    /// A replica leaving the set, or one in it.
    Outgoing,
    /// The first drawn node.
    Any,
}

/// One membership fault with every random choice drawn.
#[derive(Clone, Debug)]
pub struct Membership {
    /// `None`: a leader-transfer storm.
    pub kind: Option<MoveKind>,
    pub partition: u32,
    /// The cluster's nodes, shuffled: new replicas are taken from its front.
    pub order: Vec<u64>,
    /// Which replica a swap replaces (modulo the set's size).
    pub pick: usize,
    pub companion: Companion,
    pub role: Role,
    /// Storm: (partition, which replica leads next (modulo the set's size)) per transfer.
    pub transfers: Vec<(u32, usize)>,
}

/// Draws a move (`storm` false) or a leader-transfer storm over `nodes` and `partitions`.
pub fn draw(storm: bool, nodes: &[u64], partitions: u32, rng: &mut SmallRng) -> Membership {
    let kind = [MoveKind::Grow, MoveKind::Shrink, MoveKind::Swap, MoveKind::Swap, MoveKind::SwapToDown][rng.gen_range(0..5)];
    let partition = rng.gen_range(0..partitions);
    let mut order = nodes.to_vec();
    order.shuffle(rng);
    let pick = rng.gen_range(0..8);
    let companion = [Companion::None, Companion::Kill, Companion::Isolate][rng.gen_range(0..3)];
    let role = [Role::Incoming, Role::Outgoing, Role::Any][rng.gen_range(0..3)];
    let transfers = (0..STORM_TRANSFERS_MAX).map(|_| (rng.gen_range(0..partitions), rng.gen_range(0..8))).collect();
    let (companion, role) = if !storm && kind == MoveKind::SwapToDown { (Companion::Kill, Role::Incoming) } else { (companion, role) };
    Membership { kind: (!storm).then_some(kind), partition, order, pick, companion, role, transfers }
}

/// The target of `kind` from `current` (module documentation); `current` reordered when no
/// node is left outside the set for a swap.
pub fn target_of(kind: MoveKind, current: &[u64], order: &[u64], pick: usize) -> Vec<u64> {
    assert!(!current.is_empty(), "a partition has replicas");
    let outside = order.iter().copied().find(|node| !current.contains(node));
    match (kind, outside) {
        (MoveKind::Grow, Some(node)) if current.len() < REPLICATION_FACTOR_GROWN_MAX => current.iter().copied().chain([node]).collect(),
        (MoveKind::Shrink, _) => current[..current.len() - 1].to_vec(),
        (_, Some(node)) => {
            let mut target = current.to_vec();
            target[pick % current.len()] = node;
            target
        }
        (_, None) => {
            let mut target = current.to_vec();
            target.rotate_left(1);
            target
        }
    }
}

impl Membership {
    pub(super) fn details(&self) -> Vec<(&'static str, String)> {
        let mut details = vec![("partition", self.partition.to_string()), ("order", format!("{:?}", self.order))];
        match self.kind {
            Some(kind) => details.extend([("move", format!("{kind:?}")), ("pick", self.pick.to_string())]),
            None => details.push(("transfers", format!("{:?}", self.transfers))),
        }
        if self.companion != Companion::None {
            details.push(("with", format!("{:?} of the {:?} node", self.companion, self.role)));
        }
        details
    }

    pub(super) fn start_line(&self, window: Duration) -> String {
        let details: Vec<String> = self.details().into_iter().map(|(key, value)| format!("{key} {value}")).collect();
        format!("{} for {window:?}", details.join(", "))
    }

    /// The node the companion hits, given the move's sets.
    fn companion_node(&self, current: &[u64], target: &[u64]) -> u64 {
        let incoming = target.iter().copied().find(|node| !current.contains(node));
        let outgoing = current.iter().copied().find(|node| !target.contains(node)).or(current.first().copied());
        match self.role {
            Role::Incoming => incoming.unwrap_or(self.order[0]),
            Role::Outgoing => outgoing.unwrap_or(self.order[0]),
            Role::Any => self.order[0],
        }
    }
}

impl FaultTargets<'_> {
    /// Every partition's replicas of the checked topic, asked from the client machine.
    async fn replicas(&self) -> Option<BTreeMap<u32, Vec<u64>>> {
        let admin = self.cluster.admin()?;
        let lookup = self.client_node.spawn(async move {
            let topic = tokio::time::timeout(ADMIN_CALL_TIMEOUT, admin.describe_topic(TOPIC)).await.ok()?.ok()?;
            Some(topic.partitions.into_iter().map(|partition| (partition.partition, partition.replicas)).collect())
        });
        lookup.await.expect("lookup task")
    }

    /// Injects a membership fault: the companion first, then the move or the storm (a storm
    /// takes its whole window here). Returns what undoes the companion.
    pub(super) async fn inject_membership(&self, fault: &Membership, window: Duration) -> Healing {
        let label = if fault.kind.is_some() { "F-M1" } else { "F-M2" };
        let Some(replicas) = self.replicas().await else {
            self.cluster.note(format!("{label}: no answer to describe {TOPIC}; nothing moved"));
            if fault.kind.is_none() {
                tokio::time::sleep(window).await;
            }
            return Healing::Nothing;
        };
        let current = replicas.get(&fault.partition).cloned().unwrap_or_default();
        if current.is_empty() {
            self.cluster.note(format!("{label}: {TOPIC}/{} has no replicas listed; nothing moved", fault.partition));
            return Healing::Nothing;
        }
        // No replica moves to a node that may rot or that keeps failing to start.
        let given_up = self.cluster.given_up();
        let order: Vec<u64> =
            fault.order.iter().copied().filter(|node| Some(*node) != self.corruptible && !given_up.contains(node)).collect();
        let target = fault.kind.map(|kind| target_of(kind, &current, &order, fault.pick)).unwrap_or_else(|| current.clone());
        let healing = self.start_companion(fault.companion, fault.companion_node(&current, &target));
        match fault.kind {
            Some(kind) => self.reassign(kind, fault.partition, &current, target).await,
            None => self.storm(fault, &replicas, window).await,
        }
        healing
    }

    pub(super) fn start_companion(&self, companion: Companion, node: u64) -> Healing {
        match companion {
            Companion::None => Healing::Nothing,
            Companion::Kill => {
                self.cluster.note(format!("membership fault: node {node} killed for the window"));
                self.crash(node, CrashMode::Process);
                Healing::Restart(vec![node])
            }
            Companion::Isolate => {
                self.cluster.note(format!("membership fault: node {node} isolated for the window"));
                self.net.clog_node(self.ids[&node]);
                Healing::Unclog(vec![self.ids[&node]])
            }
        }
    }

    async fn reassign(&self, kind: MoveKind, partition: u32, current: &[u64], target: Vec<u64>) {
        let Some(admin) = self.cluster.admin() else { return };
        let asked = target.clone();
        let call = self
            .client_node
            .spawn(async move { tokio::time::timeout(ADMIN_CALL_TIMEOUT, admin.reassign_partition(TOPIC, partition, &asked)).await });
        let outcome = call.await.expect("reassign task");
        let said = match &outcome {
            Ok(Ok(())) => "recorded".to_string(),
            Ok(Err(error)) => describe_error(error),
            Err(_) => "no answer in time".to_string(),
        };
        self.cluster.note(format!("F-M1 {kind:?} of {TOPIC}/{partition}: {current:?} -> {target:?}: {said}"));
    }

    /// Leader transfers spread over `window`, each to a replica of its partition.
    async fn storm(&self, fault: &Membership, replicas: &BTreeMap<u32, Vec<u64>>, window: Duration) {
        let pause = window / fault.transfers.len().max(1) as u32;
        let mut done = Vec::new();
        for &(partition, pick) in &fault.transfers {
            let started = tokio::time::Instant::now();
            if let (Some(admin), Some(set)) = (self.cluster.admin(), replicas.get(&partition).filter(|set| !set.is_empty())) {
                let to = set[pick % set.len()];
                let call = self.client_node.spawn(async move {
                    tokio::time::timeout(
                        ADMIN_CALL_TIMEOUT.min(pause.max(Duration::from_millis(1))),
                        admin.transfer_leader(TOPIC, partition, to),
                    )
                    .await
                });
                let outcome = call.await.expect("transfer task");
                done.push(format!("{partition}->{to} {}", if matches!(outcome, Ok(Ok(()))) { "ok" } else { "no" }));
            }
            let spent = started.elapsed();
            if spent < pause {
                tokio::time::sleep(pause - spent).await;
            }
        }
        self.cluster.note(format!("F-M2 leader transfers on {TOPIC}: {}", done.join(", ")));
    }
}

fn describe_error(error: &ClientError) -> String {
    format!("{} ({})", error, if error.is_definite() { "definite" } else { "indefinite" })
}

impl From<Membership> for Fault {
    fn from(membership: Membership) -> Fault {
        Fault::Membership(Box::new(membership))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_grow_shrink_swap_and_reorder() {
        let order = [5, 1, 4, 2, 3];
        assert_eq!(target_of(MoveKind::Grow, &[1, 2, 3], &order, 0), vec![1, 2, 3, 5]);
        assert_eq!(target_of(MoveKind::Grow, &[1, 2, 3, 5], &order, 0), vec![4, 2, 3, 5], "at the maximum a grow swaps");
        assert_eq!(target_of(MoveKind::Shrink, &[1, 2, 3], &order, 0), vec![1, 2]);
        assert_eq!(target_of(MoveKind::Swap, &[1, 2, 3], &order, 4), vec![1, 5, 3]);
        assert_eq!(target_of(MoveKind::SwapToDown, &[1, 2, 3, 4, 5], &order, 4), vec![2, 3, 4, 5, 1], "no node outside");
    }
}
