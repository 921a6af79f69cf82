//! The nemesis: which faults a run may inject (drawn from the seed: swarm testing) and the loop
//! that injects them, one at a time, each recorded in the history with its start and end.
//!
//! Fault kinds (CHECKLISTS IDs): F-P1 kill, F-P2 pause, F-P3 power loss (with F-S1 lost and F-S2
//! torn unsynced writes, the `SimDisk` crash model), F-P4 power loss of every node at once,
//! F-N1 isolate a node, F-N2 minority/majority split, F-N3 majorities ring (5 nodes), F-N5
//! one-way link loss, F-N6 network latency and jitter, F-S3 bit flips (one node only, never the
//! same item on a quorum: segments, index files, hard and conf state, the last entry of a log
//! too — see [`corruptible_spots`]; the group may refuse to open and then stays down on that
//! node, or hold itself suspect after cutting a rotten last entry), F-S6 read errors,
//! F-S8 fsync errors (fatal: the node stops and is restarted, as by a supervisor), F-S9 slow disk,
//! F-C1 clock offsets per node plus steps while running, F-N9 a connection reset in place of a
//! produce answer and the client cut off longer than its request timeout (answers lost,
//! retries), F-P5 pause-kill and F-P6 part-kill choreographies
//! (these two hold more than a minority by design: the survivors must form the next majority
//! with the node that lost power). BUGGIFY (F-B1, F-B4, F-B5) is switched
//! on for the whole run when the plan says so.
//!
//! Other process and network faults touch at most a minority at a time; every fault is healed
//! before the liveness phase.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId as SimNodeId;
use odradek_jepsen::history::Fault;
use odradek_jepsen::partitions::{cut_between, majorities_ring};
use odradek_log::{CrashMode, LatencyConfig};
use odradek_server::faults::FaultRates;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::SimCluster;
use crate::config::{Scenario, DISK_RESERVE_BYTES};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Kill,
    Pause,
    PowerLoss,
    PowerLossAll,
    Isolate,
    Split,
    Ring,
    OneWay,
    Latency,
    BitFlip,
    ReadError,
    FsyncError,
    SlowDisk,
    ClockStep,
    ClientCut,
    PauseKill,
    PartKill,
    Packets,
    HoldRequest,
    DiskFull,
    ResetResponse,
}

impl FaultKind {
    pub const ALL: [FaultKind; 21] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::PowerLoss,
        FaultKind::PowerLossAll,
        FaultKind::Isolate,
        FaultKind::Split,
        FaultKind::Ring,
        FaultKind::OneWay,
        FaultKind::Latency,
        FaultKind::BitFlip,
        FaultKind::ReadError,
        FaultKind::FsyncError,
        FaultKind::SlowDisk,
        FaultKind::ClockStep,
        FaultKind::ClientCut,
        FaultKind::PauseKill,
        FaultKind::PartKill,
        FaultKind::Packets,
        FaultKind::HoldRequest,
        FaultKind::DiskFull,
        FaultKind::ResetResponse,
    ];

    /// The CHECKLISTS ID and a short name, as recorded in the history.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Kill => "F-P1 kill",
            FaultKind::Pause => "F-P2 pause",
            FaultKind::PowerLoss => "F-P3 power loss",
            FaultKind::PowerLossAll => "F-P4 power loss of every node",
            FaultKind::Isolate => "F-N1 isolate",
            FaultKind::Split => "F-N2 majority split",
            FaultKind::Ring => "F-N3 majorities ring",
            FaultKind::OneWay => "F-N5 one-way",
            FaultKind::Latency => "F-N6 latency",
            FaultKind::BitFlip => "F-S3 bit flips",
            FaultKind::ReadError => "F-S6 read errors",
            FaultKind::FsyncError => "F-S8 fsync errors",
            FaultKind::SlowDisk => "F-S9 slow disk",
            FaultKind::ClockStep => "F-C1 clock step",
            FaultKind::ClientCut => "F-N9 client cut off",
            FaultKind::PauseKill => "F-P5 pause-kill",
            FaultKind::PartKill => "F-P6 part-kill",
            FaultKind::Packets => "F-N6 packet loss, duplication, reordering",
            FaultKind::HoldRequest => "F-N8 one request held",
            FaultKind::DiskFull => "F-S9 disk full",
            FaultKind::ResetResponse => "F-N9 connection reset before the answer",
        }
    }

    fn scenarios(self) -> &'static [Scenario] {
        use Scenario::*;
        match self {
            FaultKind::Kill | FaultKind::Pause | FaultKind::PowerLoss | FaultKind::PowerLossAll | FaultKind::PauseKill => &[Swarm, Crash],
            FaultKind::Isolate
            | FaultKind::Split
            | FaultKind::Ring
            | FaultKind::OneWay
            | FaultKind::Latency
            | FaultKind::ClientCut
            | FaultKind::PartKill
            | FaultKind::Packets
            | FaultKind::HoldRequest
            | FaultKind::ResetResponse => &[Swarm, Network],
            FaultKind::BitFlip | FaultKind::ReadError | FaultKind::FsyncError | FaultKind::SlowDisk | FaultKind::DiskFull => &[Swarm, Disk],
            FaultKind::ClockStep => &[Swarm],
        }
    }
}

/// What the seed drew for a run.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Enabled kinds with their weights.
    pub kinds: Vec<(FaultKind, u32)>,
    /// Quiet time between faults and fault length, ms ranges.
    pub quiet_ms: (u64, u64),
    pub window_ms: (u64, u64),
    /// F-C1: initial wall-clock offsets per node (ms).
    pub clock_offsets: BTreeMap<u64, i64>,
    pub buggify: bool,
    /// The only node F-S3 may corrupt.
    pub corruptible: u64,
    /// Topic segment size when F-S3 is on: small, so sealed segments (its targets) exist.
    pub segment_bytes: Option<u64>,
}

impl FaultPlan {
    pub fn describe(&self) -> String {
        let kinds: Vec<String> = self.kinds.iter().map(|(kind, weight)| format!("{}×{weight}", kind.label())).collect();
        format!(
            "faults [{}], quiet {:?} ms, windows {:?} ms, clock offsets {:?}, buggify {}{}",
            kinds.join(", "),
            self.quiet_ms,
            self.window_ms,
            self.clock_offsets,
            if self.buggify { "on" } else { "off" },
            self.segment_bytes.map(|bytes| format!(", segments of {bytes} bytes")).unwrap_or_default()
        )
    }
}

/// Draws the run's fault plan (swarm: a random subset of the scenario's kinds, random weights).
pub fn draw_plan(scenario: Scenario, nodes: usize, rng: &mut SmallRng) -> FaultPlan {
    let mut plan = FaultPlan {
        quiet_ms: (rng.gen_range(200..800), rng.gen_range(1_000..3_000)),
        window_ms: (rng.gen_range(200..600), rng.gen_range(1_000..3_000)),
        corruptible: rng.gen_range(1..=nodes as u64),
        ..FaultPlan::default()
    };
    if scenario == Scenario::Calm {
        return plan;
    }
    let candidates: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| kind.scenarios().contains(&scenario))
        .filter(|kind| *kind != FaultKind::Ring || nodes >= 5)
        .collect();
    for kind in &candidates {
        // Each kind is on with probability 1/2 (2/3 outside the swarm), weighted 1..=4.
        let on = if scenario == Scenario::Swarm { rng.gen_bool(0.5) } else { rng.gen_bool(0.67) };
        if on {
            plan.kinds.push((*kind, rng.gen_range(1..=4)));
        }
    }
    if plan.kinds.is_empty() {
        plan.kinds.push((*candidates.choose(rng).expect("every scenario but calm has kinds"), 1));
    }
    if scenario == Scenario::Swarm {
        if rng.gen_bool(0.3) {
            plan.clock_offsets = (1..=nodes as u64).map(|node| (node, rng.gen_range(-300_000..=300_000))).collect();
        }
        plan.buggify = rng.gen_bool(0.3);
    }
    if plan.kinds.iter().any(|(kind, _)| *kind == FaultKind::BitFlip) {
        plan.segment_bytes = Some(rng.gen_range(4..=32) * 1024);
    }
    plan
}

/// A random minority of `nodes`, sorted.
fn minority(nodes: &[u64], rng: &mut SmallRng) -> Vec<u64> {
    let size = rng.gen_range(1..=(nodes.len() - 1) / 2);
    let mut chosen: Vec<u64> = nodes.choose_multiple(rng, size).copied().collect();
    chosen.sort_unstable();
    chosen
}

fn fault(kind: FaultKind, details: &[(&str, String)]) -> Fault {
    Fault { fault: kind.label().to_string(), details: details.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
}

/// Runs the safety phase's faults for `duration`, then heals everything (network, disks,
/// paused and stopped nodes). Returns how many faults it injected.
#[allow(clippy::too_many_arguments)] // the run's context; a struct for one call site adds nothing
pub async fn run(
    runtime: &Handle,
    cluster: &Arc<SimCluster>,
    ids: &BTreeMap<u64, SimNodeId>,
    client: SimNodeId,
    plan: &FaultPlan,
    duration: Duration,
    rng: &mut SmallRng,
) -> usize {
    let end = tokio::time::Instant::now() + duration;
    let net = NetSim::current();
    let default_latency = madsim::net::Config::default().send_latency;
    let mut faults = 0;
    let weighted: Vec<FaultKind> = plan.kinds.iter().flat_map(|&(kind, weight)| std::iter::repeat_n(kind, weight as usize)).collect();
    let nodes = cluster.nodes.clone();
    let mut flipped = false;
    while !weighted.is_empty() {
        let quiet = Duration::from_millis(rng.gen_range(plan.quiet_ms.0..=plan.quiet_ms.1));
        let window = Duration::from_millis(rng.gen_range(plan.window_ms.0..=plan.window_ms.1));
        if tokio::time::Instant::now() + quiet + window >= end {
            break;
        }
        tokio::time::sleep(quiet).await;
        restart_stopped(runtime, cluster, ids, false);
        let kind = *weighted.choose(rng).expect("not empty");
        let node = *nodes.choose(rng).expect("nodes");
        faults += 1;
        match kind {
            FaultKind::Kill | FaultKind::PowerLoss => {
                let mode = if kind == FaultKind::Kill { CrashMode::Process } else { CrashMode::PowerLoss };
                let record = fault(kind, &[("node", node.to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} node {node} for {window:?}", kind.label()));
                runtime.kill(ids[&node]);
                cluster.disks[&node].crash(mode);
                tokio::time::sleep(window).await;
                runtime.restart(ids[&node]);
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::PowerLossAll => {
                let record = fault(kind, &[]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} for {window:?}", kind.label()));
                for node in &nodes {
                    runtime.kill(ids[node]);
                    cluster.disks[node].crash(CrashMode::PowerLoss);
                }
                tokio::time::sleep(window).await;
                nodes.iter().for_each(|node| runtime.restart(ids[node]));
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::Pause => {
                let paused = minority(&nodes, rng);
                let record = fault(kind, &[("nodes", format!("{paused:?}"))]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} nodes {paused:?} for {window:?}", kind.label()));
                paused.iter().for_each(|node| runtime.pause(ids[node]));
                tokio::time::sleep(window).await;
                paused.iter().for_each(|node| runtime.resume(ids[node]));
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::Isolate => {
                let record = fault(kind, &[("node", node.to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} node {node} for {window:?}", kind.label()));
                net.clog_node(ids[&node]);
                tokio::time::sleep(window).await;
                net.unclog_node(ids[&node]);
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::Split | FaultKind::Ring => {
                let (cut, description) = if kind == FaultKind::Ring && nodes.len() >= 5 {
                    let mut ring = nodes.clone();
                    ring.shuffle(rng);
                    (majorities_ring(&ring), format!("ring {ring:?}"))
                } else {
                    let small = minority(&nodes, rng);
                    let rest: Vec<u64> = nodes.iter().copied().filter(|n| !small.contains(n)).collect();
                    (cut_between(&small, &rest), format!("{small:?} | {rest:?}"))
                };
                let record = fault(kind, &[("partition", description.clone())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} {description} for {window:?}", kind.label()));
                cut.iter().for_each(|&(a, b)| net.clog_link(ids[&a], ids[&b]));
                tokio::time::sleep(window).await;
                cut.iter().for_each(|&(a, b)| net.unclog_link(ids[&a], ids[&b]));
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::OneWay => {
                let outbound = rng.gen_bool(0.5);
                let direction = if outbound { "cannot send" } else { "cannot receive" };
                let record = fault(kind, &[("node", node.to_string()), ("direction", direction.to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} node {node} {direction} for {window:?}", kind.label()));
                if outbound {
                    net.clog_node_out(ids[&node]);
                } else {
                    net.clog_node_in(ids[&node]);
                }
                tokio::time::sleep(window).await;
                if outbound {
                    net.unclog_node_out(ids[&node]);
                } else {
                    net.unclog_node_in(ids[&node]);
                }
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::Latency => {
                let max_ms = rng.gen_range(5..100);
                let record = fault(kind, &[("latency", format!("1..{max_ms} ms"))]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} 1..{max_ms} ms for {window:?}", kind.label()));
                net.update_config(|config| config.send_latency = Duration::from_millis(1)..Duration::from_millis(max_ms));
                tokio::time::sleep(window).await;
                net.update_config(|config| config.send_latency = default_latency.clone());
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::BitFlip => {
                // Only one node is ever corrupted, and only once per run, while it is down.
                if flipped {
                    faults -= 1;
                    continue;
                }
                flipped = true;
                let victim = plan.corruptible;
                let disk = &cluster.disks[&victim];
                runtime.kill(ids[&victim]);
                disk.crash(CrashMode::Process);
                let spots = corruptible_spots(disk);
                let Some((path, bytes)) = spots.choose(rng).cloned() else {
                    runtime.restart(ids[&victim]);
                    faults -= 1;
                    continue;
                };
                let flips = disk.flip_random_bits_in(&path, bytes, 2);
                cluster.corrupted.lock().expect("corrupted lock").insert(victim);
                let record =
                    fault(kind, &[("node", victim.to_string()), ("file", path.display().to_string()), ("bits", format!("{flips:?}"))]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} node {victim} file {} bits {flips:?}", kind.label(), path.display()));
                tokio::time::sleep(window).await;
                runtime.restart(ids[&victim]);
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::ReadError | FaultKind::FsyncError | FaultKind::SlowDisk => {
                let disk = &cluster.disks[&node];
                let record = fault(kind, &[("node", node.to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} node {node} for {window:?}", kind.label()));
                match kind {
                    FaultKind::ReadError => disk.set_read_error_probability(0.02),
                    FaultKind::FsyncError => disk.fail_next_syncs(rng.gen_range(1..=3)),
                    _ => disk.set_latency(LatencyConfig {
                        read: (Duration::ZERO, Duration::from_millis(5)),
                        write: (Duration::ZERO, Duration::from_millis(5)),
                        sync: (Duration::from_millis(1), Duration::from_millis(rng.gen_range(5..60))),
                    }),
                }
                // A failing or slow disk is often followed by the machine going down: sometimes
                // the node loses power shortly after (during a slow fsync, right after a failed
                // one), which is when acknowledging ahead of the disk shows.
                if kind != FaultKind::ReadError && rng.gen_bool(0.5) {
                    let after = Duration::from_millis(rng.gen_range(0..30));
                    tokio::time::sleep(after).await;
                    cluster.note(format!("node {node} loses power {after:?} into the disk fault"));
                    runtime.kill(ids[&node]);
                    disk.crash(CrashMode::PowerLoss);
                    tokio::time::sleep(window).await;
                    runtime.restart(ids[&node]);
                } else {
                    tokio::time::sleep(window).await;
                }
                disk.set_read_error_probability(0.0);
                disk.fail_next_syncs(0);
                disk.set_latency(LatencyConfig::default());
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::DiskFull => {
                // ENOSPC on one node: 0..2x the free-space reserve left above what it uses now.
                // Below the reserve the node refuses produce (DISK_FULL); a write that finds no
                // room stops the node, as any failed write does (restarted like a supervisor
                // would); the other replicas keep the partitions available.
                let disk = &cluster.disks[&node];
                let room = rng.gen_range(0..2 * DISK_RESERVE_BYTES);
                let record = fault(kind, &[("node", node.to_string()), ("room-bytes", room.to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} node {node}, {room} bytes of room, for {window:?}", kind.label()));
                disk.set_capacity_bytes(Some(disk.used_bytes() + room));
                tokio::time::sleep(window).await;
                disk.set_capacity_bytes(None);
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::Packets => {
                // Every raft message between the nodes may be lost, replayed later or held back
                // (reordered), through the consensus transport's fault layer.
                let rates = FaultRates {
                    drop: rng.gen_range(0.02..0.3),
                    duplicate: rng.gen_range(0.02..0.2),
                    delay: rng.gen_range(0.02..0.3),
                    delay_max: Duration::from_millis(rng.gen_range(10..500)),
                };
                let describe = format!(
                    "drop {:.2}, duplicate {:.2}, delay {:.2} up to {:?}",
                    rates.drop, rates.duplicate, rates.delay, rates.delay_max
                );
                let record = fault(kind, &[("rates", describe.clone())]);
                cluster.history().fault_start(record.clone()).expect("history");
                let before = cluster.faults.peer_messages.as_ref().expect("the simulation sets it").counts();
                cluster.faults.peer_messages.as_ref().expect("set").set(rates);
                tokio::time::sleep(window).await;
                let layer = cluster.faults.peer_messages.as_ref().expect("set");
                layer.clear();
                let after = layer.counts();
                cluster.note(format!(
                    "{} ({describe}) for {window:?}: {} dropped, {} duplicated, {} delayed",
                    kind.label(),
                    after.dropped - before.dropped,
                    after.duplicated - before.duplicated,
                    after.delayed - before.delayed
                ));
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::HoldRequest => {
                // The next produce request any node reads waits longer than the client's request
                // timeout (5 s): it is handled after the client retried it, as a zombie.
                let hold = Duration::from_millis(rng.gen_range(5_500..9_000));
                let record = fault(kind, &[("hold-ms", hold.as_millis().to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                let switch = cluster.faults.request_hold.as_ref().expect("the simulation sets it");
                switch.arm(hold);
                tokio::time::sleep(window).await;
                let caught = !switch.disarm();
                cluster.note(format!("{} for {hold:?}: {}", kind.label(), if caught { "held one" } else { "no request came" }));
                if caught {
                    // The held request is still waiting on its node until the hold ends.
                    tokio::time::sleep(hold).await;
                }
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::ResetResponse => {
                // The next produce a node completes is not answered: its connection is reset
                // instead. The client cannot know whether the write happened (indefinite), and
                // an idempotent producer's retry must not duplicate it (L2).
                let record = fault(kind, &[]);
                cluster.history().fault_start(record.clone()).expect("history");
                let switch = cluster.faults.response_cut.as_ref().expect("the simulation sets it");
                switch.arm(());
                tokio::time::sleep(window).await;
                let caught = !switch.disarm();
                cluster.note(format!("{}: {}", kind.label(), if caught { "reset one connection" } else { "no write completed" }));
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::ClientCut => {
                // Longer than the clients' request timeout (5 s): requests and answers in flight
                // are lost, the clients time out and retry on new connections (indefinite outcomes,
                // idempotent retries).
                let cut = Duration::from_millis(rng.gen_range(5_500..7_000));
                let record = fault(kind, &[("for-ms", cut.as_millis().to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} for {cut:?}", kind.label()));
                net.clog_node(client);
                tokio::time::sleep(cut).await;
                net.unclog_node(client);
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::PauseKill | FaultKind::PartKill => {
                // The NATS choreographies: hold a minority A; power loss of c from the majority,
                // hold the rest B, release A (A and c must form the next majority); restart c;
                // release B. "Hold" is a pause (F-P5) or an isolation (F-P6).
                let mut order = nodes.clone();
                order.shuffle(rng);
                let minority = (nodes.len() - 1) / 2;
                let (a, c, b) = (order[..minority].to_vec(), order[minority], order[minority + 1..].to_vec());
                let pauses = kind == FaultKind::PauseKill;
                let hold = |group: &[u64], on: bool| {
                    for node in group {
                        match (pauses, on) {
                            (true, true) => runtime.pause(ids[node]),
                            (true, false) => runtime.resume(ids[node]),
                            (false, true) => net.clog_node(ids[node]),
                            (false, false) => net.unclog_node(ids[node]),
                        }
                    }
                };
                let record = fault(kind, &[("A", format!("{a:?}")), ("c", c.to_string()), ("B", format!("{b:?}"))]);
                cluster.history().fault_start(record.clone()).expect("history");
                cluster.note(format!("{} A={a:?} c={c} B={b:?}, steps of {window:?}", kind.label()));
                hold(&a, true);
                tokio::time::sleep(window).await;
                runtime.kill(ids[&c]);
                cluster.disks[&c].crash(CrashMode::PowerLoss);
                hold(&b, true);
                hold(&a, false);
                tokio::time::sleep(window / 2).await;
                runtime.restart(ids[&c]);
                tokio::time::sleep(window).await;
                hold(&b, false);
                cluster.history().fault_stop(record).expect("history");
            }
            FaultKind::ClockStep => {
                let step = rng.gen_range(-120_000..=120_000i64);
                let record = fault(kind, &[("node", node.to_string()), ("step-ms", step.to_string())]);
                cluster.history().fault_start(record.clone()).expect("history");
                *cluster.clock_offsets.lock().expect("clock lock").entry(node).or_insert(0) += step;
                cluster.note(format!("{} node {node} by {step} ms", kind.label()));
                cluster.history().fault_stop(record).expect("history");
            }
        }
    }
    // A plan without faults (or the last quiet time) still lasts the whole safety phase.
    tokio::time::sleep_until(end).await;
    // Heal: nothing is left injected before the liveness phase.
    net.update_config(|config| config.send_latency = default_latency);
    for node in &nodes {
        net.unclog_node(ids[node]);
        let disk = &cluster.disks[node];
        disk.set_read_error_probability(0.0);
        disk.fail_next_syncs(0);
        disk.set_latency(LatencyConfig::default());
    }
    // The liveness phase restarts every core node: a start that failed on an injected I/O
    // error now meets a healthy disk (one that fails on damaged files fails again).
    restart_stopped(runtime, cluster, ids, true);
    faults
}

/// Where F-S3 may flip bits: each file with the byte range it may hit. Sealed segments, index
/// files (derived; rebuilt when bad) and the hard- and conf-state files whole (their two mirrored
/// copies survive rot in one; rot in both is corruption, R8 c); the active segment from its
/// header up to the start of its last durable entry (a bad header before entries, or a bad entry
/// followed by a good one, is corruption: the group refuses to open, R8 b); and, as a spot of
/// its own so it is drawn often, the active segment's last durable entry. Damage there looks
/// exactly like a torn write at power loss: recovery cuts it off and the replica holds itself
/// suspect, without votes, until it has the range back or the other voters' answers settle it
/// (protocol-aware recovery, `odradek_consensus` module `node::suspect`; R8 e checks it).
fn corruptible_spots(disk: &odradek_log::SimDisk) -> Vec<(std::path::PathBuf, std::ops::Range<u64>)> {
    use odradek_log::{decode_entry, SEGMENT_HEADER_BYTES};
    let files = disk.files();
    let is_segment = |path: &std::path::Path| path.extension().is_some_and(|e| e == "log");
    let mut spots = Vec::new();
    for path in &files {
        let Some(bytes) = disk.read_file_durable(path) else { continue };
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
        let sealed = is_segment(path) && files.iter().any(|other| is_segment(other) && other.parent() == path.parent() && other > path);
        let whole = sealed || path.extension().is_some_and(|e| e == "idx") || name == "hard_state" || name == "conf_state";
        if whole {
            if bytes.len() > 64 {
                spots.push((path.clone(), 0..bytes.len() as u64));
            }
        } else if is_segment(path) {
            // Walk the durable entries. The header may be hit: with entries after it, a bad header
            // is corruption (the group refuses to open).
            let mut position = SEGMENT_HEADER_BYTES as usize;
            let mut last_start = SEGMENT_HEADER_BYTES as usize;
            while let Some(entry) = bytes.get(position..).and_then(decode_entry) {
                last_start = position;
                position += entry.encoded_bytes();
            }
            if bytes.len() >= SEGMENT_HEADER_BYTES as usize {
                spots.push((path.clone(), 0..last_start as u64));
            }
            if position > last_start {
                spots.push((path.clone(), last_start as u64..position as u64));
            }
        }
    }
    spots
}

/// Restarts every node that stopped by itself (a fatal storage error, a failed start), like a
/// supervisor would; a node that keeps failing to start is left down, unless `all`.
fn restart_stopped(runtime: &Handle, cluster: &Arc<SimCluster>, ids: &BTreeMap<u64, SimNodeId>, all: bool) {
    let stopped = if all { cluster.stopped() } else { cluster.stopped_restartable() };
    for node in stopped {
        cluster.note(format!("restarting node {node}"));
        runtime.kill(ids[&node]);
        cluster.disks[&node].crash(CrashMode::Process);
        runtime.restart(ids[&node]);
    }
}
