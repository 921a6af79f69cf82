//! F-M4, the cluster grows and shrinks (flag `--grow-shrink`, issue 15; nearest checklist IDs
//! F-M1 "add/remove a replica" and F-M3): each draw of the fault takes the next step of
//! - **join**: the spare node (id `nodes + 1`, idle until now) starts with `--join` and goes
//!   through the server's join path (`odradek_server::join`): recorded by the controller, a
//!   learner of the metadata group, hosts replicas once given some;
//! - **grow**: the controller voters are asked to take the joined node in (`ChangeControllers`,
//!   learners first, joint consensus), and when drawn a rebalance spreads replicas onto it;
//! - **shrink**: one node (a bootstrap member or the joined one) is decommissioned: the
//!   controller moves its replicas away, takes it out of the controller voters, removes it; once
//!   the simulator sees it removed it first checks **V7** (within [`REFUSAL_BOUND`] the removed
//!   node, asked directly, serves clients nothing: its Metadata names no leader or controller,
//!   its Fetch is refused), then stops the node for good, as an operator would;
//! - on odd picks, when the joined node is a learner holding the metadata log, the shrink of a
//!   bootstrap member (a controller voter) comes before the grow: the controller replaces the
//!   leaving voter by the joined learner, so the controller group keeps its size (R10 b), and the
//!   grow then finds the joined node a voter already;
//!
//! each step optionally with a kill or an isolation (the stepping node, or another) half a window
//! in, while the existing plan's kills, isolations and disk faults strike between windows. After
//! the heal, [`FaultTargets::grow_shrink_finish`] takes the steps no window reached (an
//! operator finishing the job) and waits for the decommissioned node's removal to stop it, and [`FaultTargets::grow_shrink_converges`] checks V6 (a
//! liveness check like R7 and V5): the decommissioned node holds no replica and is in no
//! group's configuration, the joined node is a broker and a voter of the metadata group (and
//! hosts a replica after a rebalance that moved some), and no move, drain or voter change runs.
//!
//! Every random choice is drawn up front ([`draw`]), a fixed number of draws whatever step comes.

use std::cell::RefCell;
use std::time::Duration;

use odradek_client::{ClientError, ClusterDescription};
use odradek_jepsen::checker::raft::RaftChecker;
use odradek_log::CrashMode;
use rand::rngs::SmallRng;
use rand::Rng;

use super::membership::Companion;
use super::{Fault, FaultTargets, Healing};
use crate::config::{LIVENESS_BOUND, TOPIC};

/// Bound on one admin call of a grow/shrink step.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Between two looks of the final steps and of V6.
const LOOK_PAUSE: Duration = Duration::from_millis(250);
/// The metadata (controller) group (`odradek_server::meta::METADATA_GROUP`).
const METADATA_GROUP: u64 = 0;
/// V7: how long a removed node may still serve clients once the simulator saw its removal (it
/// learns a removal that did not reach it from the controller, at its next registration tick).
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

/// What the removed node at `address` still serves, asked directly: a Metadata answer that
/// names it a broker, a controller or a leader of a partition of the checked topic, or a Fetch
/// of the checked topic answered with records or without an error. `None`: it refused both (or
/// is unreachable: it serves nothing either).
async fn removed_node_serves(address: String, config: odradek_client::ConnectionConfig) -> Option<String> {
    use odradek_client::wire::proto::{
        ErrorCode, FetchRequest, MetadataRequest, Request_oneof_body as Body, Response_oneof_body as Answer,
    };
    let connection = odradek_client::Connection::connect(&address, "v7-probe", config).await.ok()?;
    let mut ask = MetadataRequest::new();
    ask.topics = vec![TOPIC.to_string()].into();
    let answer = connection.request(Body::metadata(ask)).await.ok()?;
    if let (ErrorCode::NONE, Some(Answer::metadata(metadata))) = (answer.error, &answer.body) {
        let me: Vec<u64> = metadata.brokers.iter().map(|broker| broker.node_id).collect();
        let leaders: Vec<(u32, u64)> =
            metadata.topics.iter().flat_map(|topic| &topic.partitions).filter(|p| p.leader != 0).map(|p| (p.partition, p.leader)).collect();
        if !leaders.is_empty() || metadata.controller != 0 {
            return Some(format!("Metadata names leaders {leaders:?} of {TOPIC}, controller {}, brokers {me:?}", metadata.controller));
        }
    }
    let mut fetch = FetchRequest::new();
    fetch.topic = TOPIC.to_string();
    fetch.partition = 0;
    fetch.bytes_max = 1024;
    let answer = connection.request(Body::fetch(fetch)).await.ok()?;
    (answer.error == ErrorCode::NONE).then(|| format!("Fetch of {TOPIC}/0 answered {:?}", answer.body))
}

/// One grow/shrink draw, every random choice made.
#[derive(Clone, Debug)]
pub struct GrowShrinkFault {
    pub companion: Companion,
    /// The companion hits the node of the step (the joining or leaving one), else `other`.
    pub on_subject: bool,
    /// A bootstrap member.
    pub other: u64,
    /// Which node a shrink decommissions (modulo the candidates).
    pub pick: usize,
    /// A grow also asks for a rebalance.
    pub rebalance: bool,
}

/// Draws a grow/shrink fault over the bootstrap members `nodes`.
pub fn draw(nodes: &[u64], rng: &mut SmallRng) -> GrowShrinkFault {
    let companion = [Companion::None, Companion::Kill, Companion::Isolate][rng.gen_range(0..3)];
    let on_subject = rng.gen_bool(0.5);
    let other = nodes[rng.gen_range(0..nodes.len())];
    let pick = rng.gen_range(0..8);
    let rebalance = rng.gen_bool(0.5);
    GrowShrinkFault { companion, on_subject, other, pick, rebalance }
}

impl GrowShrinkFault {
    pub(super) fn details(&self) -> Vec<(&'static str, String)> {
        let mut details = vec![("pick", self.pick.to_string()), ("rebalance", self.rebalance.to_string())];
        if self.companion != Companion::None {
            let whom = if self.on_subject { "the stepping node".to_string() } else { format!("node {}", self.other) };
            details.push(("with", format!("{:?} of {whom}", self.companion)));
        }
        details
    }
}

impl From<GrowShrinkFault> for Fault {
    fn from(fault: GrowShrinkFault) -> Fault {
        Fault::GrowShrink(Box::new(fault))
    }
}

fn describe_error(error: &ClientError) -> String {
    format!("{} ({})", error, if error.is_definite() { "definite" } else { "indefinite" })
}

/// Which step comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Join,
    Grow,
    Shrink,
    Done,
}

impl FaultTargets<'_> {
    fn next_step(&self) -> Step {
        let state = self.cluster.grow_shrink.lock().expect("grow-shrink lock");
        match (state.joined, state.promoted, state.decommissioned) {
            (false, _, _) => Step::Join,
            (true, false, _) => Step::Grow,
            (true, true, None) => Step::Shrink,
            (true, true, Some(_)) => Step::Done,
        }
    }

    fn decommission_recorded(&self) -> bool {
        self.cluster.grow_shrink.lock().expect("grow-shrink lock").decommissioned.is_some()
    }

    /// Whether every step was taken (the nemesis then draws something else).
    pub fn grow_shrink_done(&self) -> bool {
        self.next_step() == Step::Done
    }

    /// An admin call from the client machine, bounded by [`ADMIN_CALL_TIMEOUT`].
    async fn admin_call<T: Send + 'static, F>(
        &self,
        call: impl FnOnce(odradek_client::Admin) -> F + Send + 'static,
    ) -> Option<Result<T, ClientError>>
    where
        F: std::future::Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let admin = self.cluster.admin()?;
        let task = self.client_node.spawn(async move { tokio::time::timeout(ADMIN_CALL_TIMEOUT, call(admin)).await.ok() });
        task.await.expect("admin task")
    }

    async fn describe_cluster(&self) -> Option<ClusterDescription> {
        self.admin_call(|admin| async move { admin.describe_cluster().await }).await?.ok()
    }

    /// Starts the spare node: it joins through the server's join path.
    fn join(&self) -> u64 {
        let spare = self.cluster.spare.expect("--grow-shrink has a spare node");
        self.cluster.grow_shrink.lock().expect("grow-shrink lock").joined = true;
        self.cluster.note(format!("F-M4 join: node {spare} starts with --join"));
        self.runtime.restart(self.ids[&spare]);
        spare
    }

    /// Asks the controller voters to take the joined node in, and a rebalance when `rebalance`.
    async fn grow(&self, rebalance: bool) -> u64 {
        let spare = self.cluster.spare.expect("--grow-shrink has a spare node");
        let said = match self.describe_cluster().await {
            None => "no answer to describe the cluster".to_string(),
            Some(described) if described.controller_voters.contains(&spare) => {
                self.cluster.grow_shrink.lock().expect("grow-shrink lock").promoted = true;
                format!("node {spare} is a controller voter already ({:?})", described.controller_voters)
            }
            Some(described) => {
                let mut voters = described.controller_voters.clone();
                voters.push(spare);
                voters.sort_unstable();
                let asked = voters.clone();
                let outcome = self.admin_call(move |admin| async move { admin.change_controllers(&asked).await }).await;
                let said = match &outcome {
                    Some(Ok(())) => "recorded".to_string(),
                    Some(Err(error)) => describe_error(error),
                    None => "no answer in time".to_string(),
                };
                if matches!(outcome, Some(Ok(()))) {
                    self.cluster.grow_shrink.lock().expect("grow-shrink lock").promoted = true;
                }
                format!("controller voters {:?} -> {voters:?}: {said}", described.controller_voters)
            }
        };
        self.cluster.note(format!("F-M4 grow: {said}"));
        if rebalance {
            let outcome = self.admin_call(|admin| async move { admin.rebalance().await }).await;
            let said = match &outcome {
                Some(Ok(moves)) => format!("{moves} moves recorded"),
                Some(Err(error)) => describe_error(error),
                None => "no answer in time".to_string(),
            };
            if let Some(Ok(moves)) = outcome {
                let mut state = self.cluster.grow_shrink.lock().expect("grow-shrink lock");
                *state.rebalanced.get_or_insert(0) += moves;
            }
            self.cluster.note(format!("F-M4 rebalance: {said}"));
        }
        spare
    }

    /// Decommissions the `pick`th of the nodes that may leave (running members not given up,
    /// not the one F-S3 may rot); the node asked.
    async fn shrink(&self, pick: usize) -> Option<u64> {
        self.shrink_among(pick, self.cluster.members_now()).await
    }

    /// Before the controller voters are asked to take the joined node in: when the controller
    /// reports it a learner holding the metadata log, a bootstrap member (a controller voter)
    /// is decommissioned, and the controller replaces it by the joined node among the voters
    /// (issue 15: the controller group keeps its size; R10 b would flag a shrink). `None`
    /// (nothing asked) otherwise: the step grows as usual.
    async fn shrink_before_grow(&self, pick: usize) -> Option<u64> {
        let spare = self.cluster.spare.expect("--grow-shrink has a spare node");
        let described = self.describe_cluster().await?;
        let held = described.controller_replicas.iter().any(|replica| replica.node_id == spare && replica.lag == 0);
        if !described.controller_learners.contains(&spare) || !held || !described.draining.is_empty() {
            return None;
        }
        self.cluster.note(format!("F-M4: node {spare} is a learner holding the metadata log: a controller voter leaves first"));
        self.shrink_among(pick, self.cluster.nodes.clone()).await
    }

    /// Decommissions the `pick`th of `nodes` that may leave (module documentation).
    async fn shrink_among(&self, pick: usize, nodes: Vec<u64>) -> Option<u64> {
        let given_up = self.cluster.given_up();
        let candidates: Vec<u64> = nodes.into_iter().filter(|node| !given_up.contains(node) && Some(*node) != self.corruptible).collect();
        if candidates.is_empty() {
            return None;
        }
        // An earlier decommission that got no answer may have been recorded: that node leaves,
        // not a second one as well (swarm `--grow-shrink` seed 69: two unanswered decommissions
        // were both recorded, a third followed, and the controller group lost a voter that no
        // live learner could replace, R10 b).
        if let Some(&draining) = self.describe_cluster().await.as_ref().and_then(|described| described.draining.first()) {
            self.cluster.grow_shrink.lock().expect("grow-shrink lock").decommissioned = Some(draining);
            self.cluster.note(format!("F-M4: node {draining} is draining already (an unanswered decommission was recorded)"));
            return Some(draining);
        }
        let node = candidates[pick % candidates.len()];
        let outcome = self.admin_call(move |admin| async move { admin.decommission_node(node).await }).await;
        let said = match &outcome {
            Some(Ok(())) => "recorded".to_string(),
            Some(Err(error)) => describe_error(error),
            None => "no answer in time".to_string(),
        };
        // An indefinite failure may have been recorded: a retry then says "already".
        let recorded = match &outcome {
            Some(Ok(())) => true,
            Some(Err(error)) => error.to_string().contains("already"),
            None => false,
        };
        if recorded {
            self.cluster.grow_shrink.lock().expect("grow-shrink lock").decommissioned = Some(node);
        }
        self.cluster.note(format!("F-M4 decommission node {node}: {said}"));
        Some(node)
    }

    /// Injects one step (module documentation); returns what undoes its companion.
    pub(super) async fn inject_grow_shrink(&self, fault: &GrowShrinkFault, window: Duration) -> Healing {
        let subject = match self.next_step() {
            Step::Join => Some(self.join()),
            // Odd picks: a voter leaves before the grow, if nothing left yet (`shrink_before_grow`).
            Step::Grow if fault.pick % 2 == 1 && !self.decommission_recorded() => match self.shrink_before_grow(fault.pick / 2).await {
                Some(node) => Some(node),
                None => Some(self.grow(fault.rebalance).await),
            },
            Step::Grow => Some(self.grow(fault.rebalance).await),
            Step::Shrink => self.shrink(fault.pick).await,
            Step::Done => None,
        };
        if fault.companion == Companion::None {
            return Healing::Nothing;
        }
        tokio::time::sleep(window / 2).await;
        let node = if fault.on_subject { subject.unwrap_or(fault.other) } else { fault.other };
        if self.cluster.grow_shrink.lock().expect("grow-shrink lock").departed.contains(&node) {
            return Healing::Nothing;
        }
        self.start_companion(fault.companion, node)
    }

    /// Stops the decommissioned node for good once the controller removed it (it is no broker
    /// any more and no longer draining), as an operator would. Asks only while one is pending.
    pub async fn retire_removed(&self) {
        let pending = {
            let state = self.cluster.grow_shrink.lock().expect("grow-shrink lock");
            state.decommissioned.filter(|node| !state.departed.contains(node))
        };
        let Some(node) = pending else { return };
        let Some(described) = self.describe_cluster().await else { return };
        if described.brokers.iter().any(|broker| broker.node_id == node) || described.draining.contains(&node) {
            return;
        }
        self.removed_node_refuses(node).await;
        self.cluster.grow_shrink.lock().expect("grow-shrink lock").departed.insert(node);
        self.runtime.kill(self.ids[&node]);
        self.cluster.disks[&node].crash(CrashMode::Process);
        self.cluster.note(format!("F-M4: node {node} was removed by the controller: stopped for good"));
    }

    /// V7 (module documentation), before the removed `node` is stopped: within
    /// [`REFUSAL_BOUND`] it serves clients nothing (a removal that has not reached it yet is
    /// learned from the controller); a violation is kept for the run's checks.
    async fn removed_node_refuses(&self, node: u64) {
        let start = tokio::time::Instant::now();
        loop {
            let address = crate::cluster::member(node).client.to_string();
            let config = self.cluster.client_config().connection;
            let probe =
                self.client_node.spawn(async move { tokio::time::timeout(ADMIN_CALL_TIMEOUT, removed_node_serves(address, config)).await });
            let served = probe.await.expect("probe task").unwrap_or(None);
            let Some(served) = served else {
                let after = start.elapsed().as_millis();
                self.cluster.note(format!("V7: removed node {node} serves clients nothing ({after} ms after its removal was seen)"));
                return;
            };
            if start.elapsed() >= REFUSAL_BOUND {
                let problem = format!("V7: removed node {node} still serves clients {REFUSAL_BOUND:?} after its removal: {served}");
                self.cluster.note(&problem);
                self.cluster.grow_shrink.lock().expect("grow-shrink lock").violations.push(problem);
                return;
            }
            tokio::time::sleep(LOOK_PAUSE).await;
        }
    }

    /// V7 violations seen (module documentation).
    pub fn grow_shrink_violations(&self) -> Vec<String> {
        self.cluster.grow_shrink.lock().expect("grow-shrink lock").violations.clone()
    }

    /// After the heal: the steps no window reached, as an operator finishing the job would
    /// take them (the spare joins, the controller voters take it in, node `pick` of the
    /// candidates is decommissioned), each retried until recorded, within [`LIVENESS_BOUND`].
    pub async fn grow_shrink_finish(&self) {
        let start = tokio::time::Instant::now();
        while start.elapsed() < LIVENESS_BOUND {
            match self.next_step() {
                Step::Join => {
                    self.join();
                }
                Step::Grow => {
                    self.grow(false).await;
                }
                Step::Shrink => {
                    self.shrink(0).await;
                }
                Step::Done => break,
            }
            tokio::time::sleep(LOOK_PAUSE).await;
        }
        if !self.grow_shrink_done() {
            self.cluster.note(format!("F-M4: the steps were not all recorded within {LIVENESS_BOUND:?}"));
            return;
        }
        // The removed node is stopped before the liveness phase, as an operator would: a removed
        // node left running serves the metadata it had when removed, and clients that ask it are
        // sent to stale leaders (crash seed 23: the final drain read nothing within its bound).
        while start.elapsed() < LIVENESS_BOUND {
            self.retire_removed().await;
            let state = self.cluster.grow_shrink.lock().expect("grow-shrink lock").clone();
            if state.decommissioned.is_none_or(|node| state.departed.contains(&node)) {
                return;
            }
            tokio::time::sleep(LOOK_PAUSE).await;
        }
    }

    /// V6 (module documentation): waits until it holds, stopping the decommissioned node once
    /// removed; how long that took, or the problem.
    pub async fn grow_shrink_converges(&self, raft: &RefCell<RaftChecker>) -> Result<Duration, String> {
        let start = tokio::time::Instant::now();
        loop {
            self.retire_removed().await;
            let why = match self.describe_cluster().await {
                None => Some("no answer to describe the cluster".to_string()),
                Some(described) => {
                    let topic = self.admin_call(|admin| async move { admin.describe_topic(TOPIC).await }).await;
                    match topic {
                        Some(Ok(topic)) => {
                            let replicas: Vec<(u32, Vec<u64>)> = topic.partitions.into_iter().map(|p| (p.partition, p.replicas)).collect();
                            self.grow_shrink_mismatch(&described, &replicas, raft)
                        }
                        _ => Some(format!("no answer to describe {TOPIC}")),
                    }
                }
            };
            let Some(why) = why else { return Ok(start.elapsed()) };
            if start.elapsed() >= LIVENESS_BOUND {
                return Err(format!("V6: the grown and shrunk membership did not converge within {LIVENESS_BOUND:?}: {why}"));
            }
            tokio::time::sleep(LOOK_PAUSE).await;
        }
    }

    /// Why V6 does not hold yet, or `None`.
    fn grow_shrink_mismatch(
        &self,
        described: &ClusterDescription,
        replicas: &[(u32, Vec<u64>)],
        raft: &RefCell<RaftChecker>,
    ) -> Option<String> {
        let state = self.cluster.grow_shrink.lock().expect("grow-shrink lock").clone();
        if !described.reassignments.is_empty() || !described.draining.is_empty() || !described.controller_voters_target.is_empty() {
            return Some(format!(
                "still moving: reassignments {}, draining {:?}, controller voters target {:?}",
                described.reassignments.len(),
                described.draining,
                described.controller_voters_target
            ));
        }
        let raft = raft.borrow();
        let configurations = raft.configurations();
        if let Some(gone) = state.decommissioned {
            if described.brokers.iter().any(|broker| broker.node_id == gone) {
                return Some(format!("decommissioned node {gone} is still a broker"));
            }
            if described.controller_voters.contains(&gone) || described.controller_learners.contains(&gone) {
                return Some(format!(
                    "decommissioned node {gone} is still in the controller group (voters {:?}, learners {:?})",
                    described.controller_voters, described.controller_learners
                ));
            }
            if let Some((partition, set)) = replicas.iter().find(|(_, set)| set.contains(&gone)) {
                return Some(format!("decommissioned node {gone} still holds a replica of {TOPIC}/{partition} ({set:?})"));
            }
            let member = |conf: &odradek_consensus::observe::Conf| {
                conf.voters.contains(gone) || conf.voters_outgoing.contains(gone) || conf.learners.contains(gone)
            };
            if let Some((group, (index, conf))) = configurations.iter().find(|(_, (_, conf))| member(conf)) {
                return Some(format!("decommissioned node {gone} is in group {group}'s configuration at index {index}: {conf}"));
            }
        }
        let spare = self.cluster.spare.filter(|spare| state.joined && state.decommissioned != Some(*spare));
        if let Some(joined) = spare {
            if !described.brokers.iter().any(|broker| broker.node_id == joined) {
                return Some(format!("joined node {joined} is not a broker"));
            }
            let voter = configurations.get(&METADATA_GROUP).is_some_and(|(_, conf)| conf.voters.contains(joined) && !conf.joint());
            if !described.controller_voters.contains(&joined) || !voter {
                return Some(format!(
                    "joined node {joined} is not a voter of the metadata group (controller voters {:?}; configuration {:?})",
                    described.controller_voters,
                    configurations.get(&METADATA_GROUP).map(|(index, conf)| format!("{conf} at index {index}"))
                ));
            }
            let hosts = configurations.iter().any(|(&group, (_, conf))| group != METADATA_GROUP && conf.voters.contains(joined));
            if state.rebalanced.is_some_and(|moves| moves > 0) && !hosts {
                return Some(format!("joined node {joined} hosts no replica after a rebalance that moved some"));
            }
        }
        None
    }
}
