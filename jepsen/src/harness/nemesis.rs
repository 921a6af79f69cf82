//! The nemesis: one fault at a time, in rounds of the enabled kinds shuffled by a seeded rng, each
//! recorded as a `start` op when injected and a `stop` op when healed.
//!
//! Kinds (CHECKLISTS fault IDs):
//! * `kill` (F-P1): SIGKILL a minority of nodes, restart them after the fault window;
//! * `pause` (F-P2): SIGSTOP a minority, SIGCONT after the window;
//! * `partition` picks one of: `partition-one` (F-N1, isolate one node), `partition-majority`
//!   (F-N2, clean minority/majority split), `partition-ring` (F-N3, majorities ring: each node
//!   reaches only its ring neighbours; with 3 nodes that is full connectivity, so it needs 5),
//!   `partition-oneway` (one node cannot send to the others, but hears them). Each is also a kind
//!   of its own.
//!
//! * `conn-drop` (F-N9): for the window, every 100–500 ms, close every client connection at the
//!   client proxies, losing requests and responses in flight (indefinite acks, retries);
//! * `pause-kill` (F-P5, the NATS choreography): pause a minority A; after a window kill a node c
//!   of the majority, pause the rest of the majority B and resume A; after half a window restart
//!   c; after a window resume B. Real processes keep their page cache across SIGKILL, so c loses
//!   nothing un-fsynced (the simulator's F-P3 covers that);
//! * `part-kill` (F-P6): the same with A and then B cut off by partitions instead of paused.
//!
//! * `kill-coordinator` / `pause-coordinator` (F-P1 / F-P2 aimed, `--workload subscribe`): kill
//!   or pause the node that coordinates one of the run's groups now (the leader of the group's
//!   `__consumer_offsets` partition, as the group's describe names it), the groups taken in
//!   turn; a random node if no coordinator answers.
//!
//! * `wipe` (F-P7 / F-M3): SIGKILL one node and delete its data directory; after the window it
//!   restarts empty, a new incarnation that stays out of every group's votes until it caught up
//!   (R8 d, the server's `data_dir` module). One at a time: no wipe while a wiped node is still
//!   joining (its data directory still holds `odradek.joining`), since a second would be two
//!   failures in a group of three; such a round injects nothing and says so.
//!
//! * `membership` (F-M1, issue 15): while producing, one change of the cluster's membership per
//!   window, with the operator's calls: a new node starts with `--join` (the next id, ports of
//!   its own, no link proxies) and registers; one partition of the test topic is reassigned onto
//!   it (`topic reassign`: learner first, promoted once caught up, the replaced replica leaves
//!   last); then another node is decommissioned (`node decommission`: its replicas move away
//!   first) and, once the controller removed it, stopped for good. The node decommissioned is
//!   one added by an earlier round when there is one, else a bootstrap member (never the one
//!   new nodes join through; the cluster keeps at least `replication_factor` nodes). A step that
//!   does not complete within [`MEMBERSHIP_STEP_TIMEOUT`] ends the round (the run goes on; the
//!   checker judges the history either way). When the run has Kafka listeners (`--client
//!   kafka`, `--offset-delete`) the new node opens one on a port of its own (no proxy in front
//!   of it, so `conn-drop` does not cut its Kafka connections) and registers it when it joins:
//!   Kafka clients find it, and the leaders that move, through Metadata; the offset deleter's
//!   FindCoordinator names it when it coordinates a group. The other kinds act on the bootstrap
//!   members still in the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::watch;

use super::cluster::{wait_listening, ProcessCluster};
use super::proxy::Proxies;
use super::workload::{sleep_or_stop, Recorder, WorkloadTarget};
use crate::history::Fault;
use crate::partitions::{cut_between, majorities_ring};

/// Fault kinds `--nemesis` accepts.
pub const NEMESIS_KINDS: &[&str] = &[
    "kill",
    "pause",
    "partition",
    "partition-one",
    "partition-majority",
    "partition-ring",
    "partition-oneway",
    "conn-drop",
    "pause-kill",
    "part-kill",
    "kill-coordinator",
    "pause-coordinator",
    "wipe",
    "membership",
    "none",
];

/// Bound on each step of a `membership` round (a node joining, a move completing, a node
/// drained and removed).
pub const MEMBERSHIP_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one injected fault did, to undo it.
enum Injected {
    Killed(Vec<u64>),
    Paused(Vec<u64>),
    Cut,
}

/// Checks `--nemesis` names.
pub fn parse_kinds(text: &str) -> Result<Vec<String>, String> {
    let kinds: Vec<String> = text.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty() && k != "none").collect();
    for kind in &kinds {
        if !NEMESIS_KINDS.contains(&kind.as_str()) {
            return Err(format!("unknown nemesis {kind:?}; known: {}", NEMESIS_KINDS.join(",")));
        }
    }
    Ok(kinds)
}

/// A random minority (1..=(n-1)/2 nodes).
fn minority(ids: &[u64], rng: &mut SmallRng) -> Vec<u64> {
    let size = rng.gen_range(1..=(ids.len() - 1) / 2);
    let mut chosen: Vec<u64> = ids.choose_multiple(rng, size).copied().collect();
    chosen.sort_unstable();
    chosen
}

/// The directed links a partition kind cuts, and a description.
fn partition_cut(kind: &str, ids: &[u64], rng: &mut SmallRng) -> (&'static str, BTreeSet<(u64, u64)>, String) {
    let n = ids.len();
    match kind {
        "partition-one" => {
            let one = *ids.choose(rng).expect("a cluster has nodes");
            let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != one).collect();
            ("F-N1 isolate-one", cut_between(&[one], &rest), format!("{one} | {rest:?}"))
        }
        "partition-majority" => {
            let small = minority(ids, rng);
            let rest: Vec<u64> = ids.iter().copied().filter(|i| !small.contains(i)).collect();
            ("F-N2 majority-split", cut_between(&small, &rest), format!("{small:?} | {rest:?}"))
        }
        "partition-ring" if n >= 5 => {
            let mut ring = ids.to_vec();
            ring.shuffle(rng);
            ("F-N3 majorities-ring", majorities_ring(&ring), format!("ring {ring:?}"))
        }
        // With fewer than 5 nodes a ring is full connectivity: cut one direction instead.
        _ => {
            let one = *ids.choose(rng).expect("a cluster has nodes");
            let cut = ids.iter().filter(|&&i| i != one).map(|&i| (one, i)).collect();
            ("F-N5 one-way", cut, format!("{one} -> others cut, others -> {one} open"))
        }
    }
}

/// Runs faults until `stop`: `quiet`, then one fault for `window`, healed, repeated. Heals
/// whatever is injected before returning. `groups_target` (subscribe runs) is where the
/// coordinator faults look up the groups' coordinators; `target` and `replication_factor` are
/// what `membership` rounds administer and the fewest nodes they leave.
pub async fn run(
    recorder: Arc<Recorder>,
    cluster: Arc<Mutex<ProcessCluster>>,
    proxies: Arc<Proxies>,
    (kinds, groups_target, (target, replication_factor)): (Vec<String>, Option<WorkloadTarget>, (WorkloadTarget, usize)),
    (quiet, window): (Duration, Duration),
    mut rng: SmallRng,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    if kinds.is_empty() {
        return Ok(());
    }
    let mut round: Vec<String> = Vec::new();
    let mut coordinator_faults = 0usize;
    loop {
        if sleep_or_stop(quiet, &mut stop).await {
            return Ok(());
        }
        // Rounds of the enabled kinds in a shuffled order: every kind is injected once per
        // round, so a short run still sees each of them.
        if round.is_empty() {
            round = kinds.clone();
            round.shuffle(&mut rng);
        }
        // Decommissioned nodes leave the set the faults act on.
        let ids = cluster.lock().expect("cluster lock").bootstrap_ids();
        let mut kind = round.pop().expect("refilled above");
        if kind == "partition" {
            kind =
                ["partition-one", "partition-majority", "partition-ring", "partition-oneway"].choose(&mut rng).expect("four").to_string();
        }
        match kind.as_str() {
            "conn-drop" => {
                connection_drops(&recorder, &proxies, window, &mut rng, &mut stop).await;
                continue;
            }
            "pause-kill" | "part-kill" => {
                choreography(&kind, &recorder, &ids, &cluster, &proxies, window, &mut rng, &mut stop).await?;
                continue;
            }
            "membership" => {
                membership_round(&recorder, &cluster, &target, replication_factor, &mut rng).await?;
                continue;
            }
            _ => {}
        }
        let aimed = match (kind.as_str(), &groups_target) {
            ("kill-coordinator" | "pause-coordinator", Some(target)) => {
                let (group, _) = super::groups::GROUPS[coordinator_faults % super::groups::GROUPS.len()];
                coordinator_faults += 1;
                super::groups::coordinator_of(target, group).await.filter(|id| ids.contains(id)).map(|id| (group, id))
            }
            _ => None,
        };
        let (fault, injected) = inject(&kind, &ids, &cluster, &proxies, aimed, &mut rng);
        recorder.history().fault_start(fault.clone()).expect("nemesis ops always fit");
        // A stopping run cuts the window short; the fault is healed either way.
        let _ = sleep_or_stop(window, &mut stop).await;
        heal(injected, &cluster, &proxies).await?;
        recorder.history().fault_stop(fault).expect("nemesis ops always fit");
        if *stop.borrow() {
            return Ok(());
        }
    }
}

/// F-N9: resets every client connection at random moments of one window.
async fn connection_drops(recorder: &Recorder, proxies: &Proxies, window: Duration, rng: &mut SmallRng, stop: &mut watch::Receiver<bool>) {
    // Start and stop carry the same fault (that is how windows pair up); the count goes to stderr.
    let fault = Fault { fault: "F-N9 client-connection-drops".to_string(), details: BTreeMap::new() };
    recorder.history().fault_start(fault.clone()).expect("nemesis ops always fit");
    let end = tokio::time::Instant::now() + window;
    let mut resets = 0;
    while tokio::time::Instant::now() < end {
        if sleep_or_stop(Duration::from_millis(rng.gen_range(100..500)), stop).await {
            break;
        }
        proxies.reset_clients();
        resets += 1;
    }
    eprintln!("odradek-jepsen: F-N9 reset every client connection {resets} times");
    recorder.history().fault_stop(fault).expect("nemesis ops always fit");
}

/// F-P5 (`pause-kill`) and F-P6 (`part-kill`), see the module docs. Every step is undone even
/// when the run stops in the middle.
#[allow(clippy::too_many_arguments)]
async fn choreography(
    kind: &str,
    recorder: &Recorder,
    ids: &[u64],
    cluster: &Mutex<ProcessCluster>,
    proxies: &Proxies,
    window: Duration,
    rng: &mut SmallRng,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut order = ids.to_vec();
    order.shuffle(rng);
    let minority = (ids.len() - 1) / 2;
    let mut a = order[..minority].to_vec();
    let c = order[minority];
    let mut b = order[minority + 1..].to_vec();
    a.sort_unstable();
    b.sort_unstable();
    let pauses = kind == "pause-kill";
    let name = if pauses { "F-P5 pause-kill" } else { "F-P6 part-kill" };
    let details = BTreeMap::from([
        ("A".to_string(), format!("{a:?}")),
        ("c".to_string(), c.to_string()),
        ("B".to_string(), format!("{b:?}")),
        (
            "steps".to_string(),
            format!(
                "{} A; kill c; {} B, release A; restart c; release B",
                if pauses { "pause" } else { "isolate" },
                if pauses { "pause" } else { "isolate" }
            ),
        ),
    ]);
    let fault = Fault { fault: name.to_string(), details };
    recorder.history().fault_start(fault.clone()).expect("nemesis ops always fit");
    let others = |group: &[u64]| -> Vec<u64> { ids.iter().copied().filter(|id| !group.contains(id)).collect() };
    // A is held.
    if pauses {
        let mut cluster = cluster.lock().expect("cluster lock");
        a.iter().for_each(|&id| cluster.pause(id));
    } else {
        proxies.set_cut(&cut_between(&a, &others(&a)));
    }
    let mut stopped = sleep_or_stop(window, stop).await;
    // c crashes; B is held and A released: A and c must form the next majority.
    {
        let mut cluster = cluster.lock().expect("cluster lock");
        cluster.kill(c);
        if pauses {
            b.iter().for_each(|&id| cluster.pause(id));
            a.iter().for_each(|&id| cluster.resume(id));
        } else {
            proxies.set_cut(&cut_between(&b, &others(&b)));
        }
    }
    if !stopped {
        stopped = sleep_or_stop(window / 2, stop).await;
    }
    let target = {
        let mut cluster = cluster.lock().expect("cluster lock");
        cluster.spawn(c).map_err(|e| format!("restarting node {c}: {e}"))?;
        cluster.listen_target(c)
    };
    wait_listening(target).await?;
    if !stopped {
        sleep_or_stop(window, stop).await;
    }
    if pauses {
        let mut cluster = cluster.lock().expect("cluster lock");
        b.iter().for_each(|&id| cluster.resume(id));
    } else {
        proxies.heal();
    }
    recorder.history().fault_stop(fault).expect("nemesis ops always fit");
    Ok(())
}

/// One `membership` round (see the module docs): add a node, move a partition onto it,
/// decommission another. `Err` only when a process cannot be started.
async fn membership_round(
    recorder: &Recorder,
    cluster: &Mutex<ProcessCluster>,
    target: &WorkloadTarget,
    replication_factor: usize,
    rng: &mut SmallRng,
) -> Result<(), String> {
    let config = super::workload::cluster_config(target, "jepsen-nemesis-membership".into());
    let admin = match odradek_client::ClusterSession::new(&target.bootstrap(), config) {
        Ok(session) => odradek_client::Admin::with_cluster(session),
        Err(error) => return Err(format!("membership: an admin session: {error}")),
    };
    // Decide the whole round first, so its start op names what it does.
    let (joined, retiring, join_through, partition) = {
        let mut cluster = cluster.lock().expect("cluster lock");
        let bootstrap = cluster.bootstrap_ids();
        let through = *bootstrap.choose(rng).expect("bootstrap members remain");
        let address = cluster.client_addresses()[through as usize - 1].clone();
        let joined = cluster.add_joining(address).map_err(|e| format!("membership: ports for a new node: {e}"))?;
        // Earlier joiners first, oldest first; else a bootstrap member other than `through`.
        let added: Vec<u64> = cluster.active_ids().into_iter().filter(|id| !bootstrap.contains(id) && *id != joined).collect();
        let retiring = match added.first() {
            Some(&oldest) => Some(oldest),
            None => bootstrap.iter().copied().filter(|&id| id != through).collect::<Vec<_>>().choose(rng).copied(),
        };
        // The cluster never shrinks below the replication factor.
        let retiring = retiring.filter(|_| cluster.active_ids().len() > replication_factor);
        (joined, retiring, through, rng.gen_range(0..target.keys))
    };
    let details = BTreeMap::from([
        ("add".to_string(), format!("node {joined}, joining through node {join_through}")),
        ("reassign".to_string(), format!("{}/{partition} onto node {joined}", target.topic)),
        (
            "decommission".to_string(),
            retiring.map_or_else(|| "none (the cluster is at its replication factor)".to_string(), |id| format!("node {id}")),
        ),
    ]);
    let fault = Fault { fault: "F-M1 membership".to_string(), details };
    recorder.history().fault_start(fault.clone()).expect("nemesis ops always fit");
    let outcome = membership_steps(&admin, cluster, target, (joined, retiring, partition)).await;
    match &outcome {
        Ok(done) => eprintln!("odradek-jepsen: membership round: {done}"),
        Err(MembershipError::Step(step)) => eprintln!("odradek-jepsen: membership round stopped: {step}"),
        Err(MembershipError::Process(_)) => {}
    }
    recorder.history().fault_stop(fault).expect("nemesis ops always fit");
    match outcome {
        Err(MembershipError::Process(error)) => Err(error),
        _ => Ok(()),
    }
}

/// Why a membership round stopped early: a step that did not complete in time (the run goes
/// on), or a process that could not be started (the run fails).
enum MembershipError {
    Step(String),
    Process(String),
}

/// Polls `check` every 200 ms until it holds, for at most [`MEMBERSHIP_STEP_TIMEOUT`].
async fn step_until<F, Fut>(what: &str, mut check: F) -> Result<(), MembershipError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_STEP_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(MembershipError::Step(format!("{what}: not within {MEMBERSHIP_STEP_TIMEOUT:?}")))
}

/// The steps of a membership round, in order; a summary of what was done.
async fn membership_steps(
    admin: &odradek_client::Admin,
    cluster: &Mutex<ProcessCluster>,
    target: &WorkloadTarget,
    (joined, retiring, partition): (u64, Option<u64>, u32),
) -> Result<String, MembershipError> {
    // 1. The new node starts, joins and registers.
    let listen = {
        let mut cluster = cluster.lock().expect("cluster lock");
        cluster.spawn(joined).map_err(|e| MembershipError::Process(format!("starting joining node {joined}: {e}")))?;
        cluster.listen_target(joined)
    };
    wait_listening(listen).await.map_err(MembershipError::Process)?;
    step_until(&format!("node {joined} registers"), || async {
        admin.describe_cluster().await.is_ok_and(|described| described.brokers.iter().any(|broker| broker.node_id == joined))
    })
    .await?;
    // 2. One partition moves onto it: its last replica is replaced (the preferred leader stays).
    let topic = admin.describe_topic(&target.topic).await.map_err(|e| MembershipError::Step(format!("describing the topic: {e}")))?;
    let Some(current) = topic.partitions.get(partition as usize).map(|p| p.replicas.clone()) else {
        return Err(MembershipError::Step(format!("the topic has no partition {partition}")));
    };
    let mut replicas = current.clone();
    if let Some(last) = replicas.last_mut() {
        *last = joined;
    }
    admin
        .reassign_partition(&target.topic, partition, &replicas)
        .await
        .map_err(|e| MembershipError::Step(format!("reassigning {partition} from {current:?} to {replicas:?}: {e}")))?;
    step_until(&format!("partition {partition} moves to {replicas:?}"), || async {
        let moved = admin.describe_topic(&target.topic).await.is_ok_and(|topic| {
            topic.partitions.get(partition as usize).is_some_and(|p| {
                let mut have = p.replicas.clone();
                let mut want = replicas.clone();
                have.sort_unstable();
                want.sort_unstable();
                have == want
            })
        });
        moved && admin.describe_cluster().await.is_ok_and(|described| described.reassignments.is_empty())
    })
    .await?;
    // 3. Another node is drained and removed, then stopped for good.
    let Some(retiring) = retiring else {
        return Ok(format!("node {joined} joined; {}/{partition} moved {current:?} -> {replicas:?}; nothing decommissioned", target.topic));
    };
    admin.decommission_node(retiring).await.map_err(|e| MembershipError::Step(format!("decommissioning node {retiring}: {e}")))?;
    step_until(&format!("node {retiring} is drained and removed"), || async {
        admin
            .describe_cluster()
            .await
            .is_ok_and(|described| described.draining.is_empty() && described.brokers.iter().all(|broker| broker.node_id != retiring))
    })
    .await?;
    cluster.lock().expect("cluster lock").retire(retiring);
    Ok(format!(
        "node {joined} joined; {}/{partition} moved {current:?} -> {replicas:?}; node {retiring} decommissioned and stopped",
        target.topic
    ))
}

fn inject(
    kind: &str,
    ids: &[u64],
    cluster: &Mutex<ProcessCluster>,
    proxies: &Proxies,
    aimed: Option<(&str, u64)>,
    rng: &mut SmallRng,
) -> (Fault, Injected) {
    let mut details = BTreeMap::new();
    let (name, injected) = match kind {
        "kill-coordinator" | "pause-coordinator" => {
            let node = match aimed {
                Some((group, node)) => {
                    details.insert("coordinator-of".to_string(), group.to_string());
                    node
                }
                None => {
                    details.insert("coordinator-of".to_string(), "unknown: a random node".to_string());
                    *ids.choose(rng).expect("a cluster has nodes")
                }
            };
            details.insert("nodes".to_string(), format!("[{node}]"));
            let mut cluster = cluster.lock().expect("cluster lock");
            if kind == "kill-coordinator" {
                cluster.kill(node);
                ("F-P1 kill-coordinator", Injected::Killed(vec![node]))
            } else {
                cluster.pause(node);
                ("F-P2 pause-coordinator", Injected::Paused(vec![node]))
            }
        }
        "kill" => {
            let nodes = minority(ids, rng);
            let mut cluster = cluster.lock().expect("cluster lock");
            nodes.iter().for_each(|&id| cluster.kill(id));
            details.insert("nodes".to_string(), format!("{nodes:?}"));
            ("F-P1 kill", Injected::Killed(nodes))
        }
        "wipe" => {
            let mut cluster = cluster.lock().expect("cluster lock");
            let joining = cluster.joining();
            if !joining.is_empty() {
                details.insert("skipped".to_string(), format!("nodes {joining:?} still joining since their wipe"));
                ("F-P7 wipe", Injected::Killed(Vec::new()))
            } else {
                let node = *ids.choose(rng).expect("a cluster has nodes");
                if let Err(error) = cluster.wipe(node) {
                    details.insert("error".to_string(), format!("deleting the data directory failed: {error}"));
                }
                details.insert("nodes".to_string(), format!("[{node}]"));
                ("F-P7 wipe", Injected::Killed(vec![node]))
            }
        }
        "pause" => {
            let nodes = minority(ids, rng);
            let mut cluster = cluster.lock().expect("cluster lock");
            nodes.iter().for_each(|&id| cluster.pause(id));
            details.insert("nodes".to_string(), format!("{nodes:?}"));
            ("F-P2 pause", Injected::Paused(nodes))
        }
        partition => {
            let (name, cut, description) = partition_cut(partition, ids, rng);
            proxies.set_cut(&cut);
            details.insert("partition".to_string(), description);
            details.insert("links-cut".to_string(), format!("{:?}", cut.iter().map(|(a, b)| format!("{a}->{b}")).collect::<Vec<_>>()));
            (name, Injected::Cut)
        }
    };
    (Fault { fault: name.to_string(), details }, injected)
}

async fn heal(injected: Injected, cluster: &Mutex<ProcessCluster>, proxies: &Proxies) -> Result<(), String> {
    match injected {
        Injected::Killed(nodes) => {
            for id in nodes {
                let target = {
                    let mut cluster = cluster.lock().expect("cluster lock");
                    cluster.spawn(id).map_err(|e| format!("restarting node {id}: {e}"))?;
                    cluster.listen_target(id)
                };
                wait_listening(target).await?;
            }
        }
        Injected::Paused(nodes) => {
            let mut cluster = cluster.lock().expect("cluster lock");
            nodes.iter().for_each(|&id| cluster.resume(id));
        }
        Injected::Cut => proxies.heal(),
    }
    Ok(())
}
