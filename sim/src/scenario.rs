//! One simulated run: the cluster, the phases, the checks and the report.
//!
//! Phases (CHECKLISTS "Harness and simulator requirements"):
//! 1. setup: the nodes start, the client creates topic `t` (3 partitions, replication 3);
//! 2. safety: producers and a consumer run while the nemesis injects faults for `duration`;
//! 3. liveness: every fault is healed, stopped nodes restart, the producers finish (V1, V2);
//! 4. final drain: a fresh consumer reads every partition to its end (V3);
//! 5. checks: the Jepsen checker over the history, the raft checker over the replicas' events.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::runtime::Handle;
use odradek_client::{Admin, ClientError, OffsetQuery, TopicConfig};
use odradek_consensus::observe::{self, Event, RaftChecker};
use odradek_jepsen::checker::{check, CheckOptions, Verdict};
use odradek_jepsen::history::{History, HistoryBuilder, Process};
use odradek_log::SimDisk;
use odradek_server::config::{Member, ServerConfig};
use odradek_server::faults::{FaultHooks, RequestHold, ResponseCut, TransportFaults};
use odradek_server::planted::PlantedBug;
use odradek_server::Server;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::nemesis::{self, FaultPlan};
use crate::workload;

/// The topic every run writes.
pub const TOPIC: &str = "t";
pub const PARTITIONS: u32 = 3;
/// Bound on the liveness phase's producers and on the final drain (simulated time).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(60);
/// How long after the drain the replicas' applied indexes may take to agree (R7; checked every
/// 100 ms, the run goes on as soon as they do). Over swarm seeds 1–400: p90 0 ms, p99 0.3 s,
/// max 1.6 s. Before the transport's connect bound grew with failed dials, a follower whose
/// dials to a restarted leader kept timing out stayed behind for seconds (seed 81: 8.1 s) or for
/// good (seeds 7512, 7889).
pub const CONVERGENCE_WAIT: Duration = Duration::from_secs(10);
/// A node that failed to start this many times in a row stays down (e.g. corruption found).
const START_FAILURES_MAX: u32 = 2;

/// Which faults a run may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// The seed draws the fault kinds, rates, clock offsets and buggify (swarm testing).
    Swarm,
    /// No faults at all (a baseline).
    Calm,
    /// Process faults only: kill, power loss (one node or all), pause.
    Crash,
    /// Network faults only: isolation, splits, rings, one-way links, latency.
    Network,
    /// Disk faults only, plus the crashes they need: fsync errors, read errors, slow disks,
    /// power loss, bit flips on one node.
    Disk,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [Scenario::Swarm, Scenario::Calm, Scenario::Crash, Scenario::Network, Scenario::Disk];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Swarm => "swarm",
            Scenario::Calm => "calm",
            Scenario::Crash => "crash",
            Scenario::Network => "network",
            Scenario::Disk => "disk",
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> Result<Scenario, String> {
        Scenario::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!("unknown scenario {name:?}; known: {}", names.join(", "))
        })
    }
}

/// Everything a run is told; the rest comes from the seed.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub scenario: Scenario,
    /// 3 or 5; `None`: the seed chooses.
    pub nodes: Option<usize>,
    /// Length of the safety phase (simulated).
    pub duration: Duration,
    pub planted: Vec<PlantedBug>,
}

impl ScenarioConfig {
    pub fn new(seed: u64) -> ScenarioConfig {
        ScenarioConfig { seed, scenario: Scenario::Swarm, nodes: None, duration: Duration::from_secs(20), planted: Vec::new() }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "sim/madsim run --release -p odradek-sim --bin odradek-sim -- run --seed {} --scenario {}",
            self.seed,
            self.scenario.name()
        );
        if let Some(nodes) = self.nodes {
            command += &format!(" --nodes {nodes}");
        }
        if self.duration != ScenarioConfig::new(0).duration {
            command += &format!(" --duration {}", self.duration.as_secs());
        }
        for bug in &self.planted {
            command += &format!(" --planted-bug {}", bug.name());
        }
        command
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub config: ScenarioConfig,
    pub nodes: usize,
    pub plan: FaultPlan,
    /// Compact, time-stamped: faults, leader changes, node failures, progress.
    pub timeline: Vec<String>,
    pub history: History,
    pub verdict: Verdict,
    /// How many white-box events the raft checker saw (R1–R6, R8; its first violation stops the run
    /// as a [`Crash`]).
    pub raft_events: u64,
    /// Run-level failures that are not history anomalies (V1–V3: a drain that never ended).
    pub problems: Vec<String>,
    pub faults: usize,
    pub acked: u64,
    pub failed: u64,
    pub drained: usize,
    pub ends: BTreeMap<u32, u64>,
    pub sim_seconds: f64,
    pub trace_hash: u64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verdict.valid && self.problems.is_empty()
    }

    /// The invariant IDs that failed (history and raft), deduplicated.
    pub fn failed_invariants(&self) -> Vec<&str> {
        let mut ids: Vec<&str> =
            self.verdict.counts.iter().filter(|(_, count)| count.fatal > 0).map(|(kind, _)| kind.invariant()).collect();
        for problem in &self.problems {
            ids.push(problem.split(':').next().filter(|id| id.len() <= 3).unwrap_or("V3"));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// One line: the same for two runs of one seed (the CI replay check compares it).
    pub fn summary_line(&self) -> String {
        format!(
            "seed {}: {} nodes, {} faults, {} acked, {} failed, {} drained (ends {:?}), {} ops, {:.1} s simulated, trace hash {:016x}",
            self.config.seed,
            self.nodes,
            self.faults,
            self.acked,
            self.failed,
            self.drained,
            self.ends,
            self.history.len(),
            self.sim_seconds,
            self.trace_hash
        )
    }

    /// The verdict block: PASS, or every violation with its invariant and the replay command.
    pub fn verdict_text(&self) -> String {
        let mut text = String::new();
        if self.passed() {
            text += "PASS\n";
        } else {
            text += &format!("FAIL: {}\n", self.failed_invariants().join(", "));
            for problem in &self.problems {
                text += &format!("  {problem}\n");
            }
            if !self.verdict.valid {
                text += &self.verdict.to_string();
            }
            text += &format!("replay: {}\n", self.config.replay_command());
        }
        text
    }
}

/// Node `id`'s addresses (ips 10.0.0.id).
pub fn member(node: u64) -> Member {
    let ip = IpAddr::from([10, 0, 0, u8::try_from(node).expect("few nodes")]);
    Member { id: node, peer: SocketAddr::new(ip, 9100), client: SocketAddr::new(ip, 9092) }
}

/// What happened to a node's last incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Starting,
    Up,
    /// Stopped by itself (a fatal storage error, a failed start); the nemesis restarts it.
    Stopped {
        reason: String,
        start_failures: u32,
    },
}

/// State shared by the nodes, the workload and the nemesis (all on one simulation thread).
pub struct Cluster {
    pub nodes: Vec<u64>,
    pub disks: BTreeMap<u64, SimDisk>,
    pub planted: Vec<PlantedBug>,
    pub start: tokio::time::Instant,
    history: Mutex<HistoryBuilder>,
    next_process: Mutex<Process>,
    timeline: Mutex<Vec<String>>,
    pub status: Mutex<BTreeMap<u64, NodeStatus>>,
    /// F-C1: each node's wall clock offset in ms (read at every clock call, so bumps apply live).
    pub clock_offsets: Arc<Mutex<BTreeMap<u64, i64>>>,
    /// Nodes F-S3 corrupted: they may rightly refuse to serve a group (R8 b), so R7 skips them.
    pub corrupted: Mutex<std::collections::BTreeSet<u64>>,
    /// Topic segment size, when the plan sets one.
    pub segment_bytes: Option<u64>,
    /// F-N6 transport fault layer and F-N8 request hold, shared by every node.
    pub faults: FaultHooks,
}

impl Cluster {
    pub fn bootstrap(&self) -> Vec<String> {
        self.nodes.iter().map(|node| member(*node).client.to_string()).collect()
    }

    pub fn process(&self) -> Process {
        let mut next = self.next_process.lock().expect("process lock");
        *next += 1;
        *next
    }

    pub fn history(&self) -> MutexGuard<'_, HistoryBuilder> {
        self.history.lock().expect("history lock")
    }

    /// Adds a timeline line stamped with the simulated time.
    pub fn note(&self, line: impl AsRef<str>) {
        let line = format!("{:>8.3}s  {}", self.start.elapsed().as_secs_f64(), line.as_ref());
        if std::env::var_os("SIM_DEBUG").is_some() {
            eprintln!("{line}");
        }
        self.timeline.lock().expect("timeline lock").push(line);
    }

    fn set_status(&self, node: u64, status: NodeStatus) {
        self.status.lock().expect("status lock").insert(node, status);
    }

    /// One incarnation of a server node: its disk as the last crash left it. Returns when the
    /// node stops by itself; the nemesis then restarts it.
    async fn run_node(self: Arc<Self>, node: u64) {
        let mut config = ServerConfig::new(node, "/data", self.nodes.iter().map(|n| member(*n)).collect());
        config.tick_ms = 50;
        config.balance_interval_ms = 2_000;
        config.disk_check_interval_ms = 500;
        // Simulated clients greet at once and never idle: keep the handshake and idle deadlines
        // past any run, as madsim never cancels a timer (each stale deadline would wake its
        // connection's task once more). `server/tests/floods.rs` tests them with real processes.
        config.handshake_timeout_ms = CONNECTION_DEADLINE_MS;
        config.connection_idle_timeout_ms = CONNECTION_DEADLINE_MS;
        // F-S9 disk full leaves 0..2x this much room: produce is refused with DISK_FULL below it,
        // and a write that finds no room at all stops the node (it is restarted).
        config.disk_reserve_bytes = DISK_RESERVE_BYTES;
        config.planted_bugs = self.planted.clone();
        if let Some(bytes) = self.segment_bytes {
            config.topic_defaults.segment_bytes = bytes;
        }
        let offsets = self.clock_offsets.clone();
        // The simulated wall clock (madsim's, the one the client stamps records with) plus this
        // node's F-C1 offset. (A fixed base instead once made retention delete every sealed
        // segment: the records looked 15 months old.)
        let clock: odradek_server::Clock = Arc::new(move || {
            let offset = offsets.lock().expect("clock lock").get(&node).copied().unwrap_or(0);
            odradek_client::clock::wall_clock_ms() + offset
        });
        let previous_failures = match self.status.lock().expect("status lock").get(&node) {
            Some(NodeStatus::Stopped { start_failures, .. }) => *start_failures,
            _ => 0,
        };
        self.set_status(node, NodeStatus::Starting);
        let server = match Server::start_with(config, self.disks[&node].clone(), clock, self.faults.clone()).await {
            Ok(server) => server,
            Err(error) => {
                self.note(format!("node {node} could not start: {error}"));
                self.set_status(node, NodeStatus::Stopped { reason: error.to_string(), start_failures: previous_failures + 1 });
                return;
            }
        };
        if server.is_quarantined() {
            self.note(format!("node {node} started quarantined (damaged metadata): serving no client, leading no group"));
        }
        self.set_status(node, NodeStatus::Up);
        server.failed().await;
        self.note(format!("node {node} stopped on a fatal error"));
        self.set_status(node, NodeStatus::Stopped { reason: "fatal error".into(), start_failures: 0 });
    }

    /// Nodes that stopped by themselves and may be restarted.
    pub fn stopped_restartable(&self) -> Vec<u64> {
        self.stopped_where(|start_failures| start_failures < START_FAILURES_MAX)
    }

    /// Nodes stopped now, whatever the reason.
    pub fn stopped(&self) -> Vec<u64> {
        self.stopped_where(|_| true)
    }

    /// Nodes that will not come back in this run.
    pub fn given_up(&self) -> Vec<u64> {
        self.stopped_where(|start_failures| start_failures >= START_FAILURES_MAX)
    }

    /// Stopped nodes whose count of failed starts in a row passes `keep`.
    fn stopped_where(&self, keep: impl Fn(u32) -> bool) -> Vec<u64> {
        let status = self.status.lock().expect("status lock");
        let stopped = status.iter().filter_map(|(&node, status)| match status {
            NodeStatus::Stopped { start_failures, .. } => keep(*start_failures).then_some(node),
            _ => None,
        });
        stopped.collect()
    }
}

/// A run that stopped on a panic inside the cluster: an assertion of the consensus or log code
/// (they guard raft's invariants) or raft-rs's own.
#[derive(Clone, Debug)]
pub struct Crash {
    pub config: ScenarioConfig,
    pub message: String,
    /// The invariant the assertion guards, when known.
    pub invariant: Option<&'static str>,
}

impl Crash {
    pub fn verdict_text(&self) -> String {
        format!(
            "FAIL: {} (the cluster panicked: {})\nreplay: {}\n",
            self.invariant.unwrap_or("panic"),
            self.message,
            self.config.replay_command()
        )
    }
}

/// Which invariant a panic message is about: the raft checker's violations (this module stops
/// the run on the first one) and the consensus crate's R6 check name it; the consensus crate's
/// storage assertions and raft-rs's commit check all say a replica lost or rewrote committed
/// entries (R3).
fn invariant_of_panic(message: &str) -> Option<&'static str> {
    // The raft checker's own violations and the consensus crate's R6 check start with the ID.
    for id in ["R1", "R2", "R3", "R4", "R5", "R6", "R8"] {
        if message.starts_with(&format!("{id} ")) || message.starts_with(&format!("{id}:")) {
            return Some(id);
        }
    }
    let r3 = [
        "beyond the log end",
        "truncates committed",
        "never truncate committed",
        "is out of range [last_index",
        "saved above the durable log",
    ];
    r3.iter().any(|needle| message.contains(needle)).then_some("R3")
}

/// Each simulated node's free-space reserve (the server refuses produce below it).
pub const DISK_RESERVE_BYTES: u64 = 256 * 1024;
/// The nodes' handshake and idle deadlines: a simulated day, past any run (see `run_node`).
const CONNECTION_DEADLINE_MS: u64 = 24 * 60 * 60 * 1000;

/// Runs one seed in a fresh simulation (the runtime's seed is the run's seed). A panic inside
/// the simulated cluster becomes a [`Crash`].
pub fn run_seed(config: &ScenarioConfig) -> Result<Report, Crash> {
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(config.seed, madsim::Config::default());
    // A run that hangs (a task waiting forever) ends as a crash instead of spinning: the phases
    // are all bounded, so a run longer than this in simulated time is stuck.
    runtime.set_time_limit(config.duration + 2 * LIVENESS_BOUND + CONVERGENCE_WAIT + Duration::from_secs(120));
    let owned = config.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(async move { run(owned).await })));
    outcome.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Crash { config: config.clone(), invariant: invariant_of_panic(&message), message }
    })
}

/// The run, inside a simulation.
pub async fn run(config: ScenarioConfig) -> Report {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ =
            tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).try_init();
    }
    let runtime = Handle::current();
    let seed = config.seed;
    let mut rng = SmallRng::seed_from_u64(seed);
    let node_count = config.nodes.unwrap_or(if rng.gen_bool(0.3) { 5 } else { 3 });
    assert!(node_count == 3 || node_count == 5, "3 or 5 nodes, not {node_count}");
    let plan = nemesis::draw_plan(config.scenario, node_count, &mut rng);
    if plan.buggify {
        madsim::buggify::enable();
    }

    let start = tokio::time::Instant::now();
    let clock_start = start;
    let nodes: Vec<u64> = (1..=node_count as u64).collect();
    let cluster = Arc::new(Cluster {
        disks: nodes.iter().map(|&node| (node, SimDisk::new(seed ^ node.wrapping_mul(0x9E37_79B9_7F4A_7C15)))).collect(),
        nodes: nodes.clone(),
        planted: config.planted.clone(),
        start,
        history: Mutex::new(HistoryBuilder::new(move || clock_start.elapsed().as_nanos() as u64)),
        next_process: Mutex::new(0),
        timeline: Mutex::new(Vec::new()),
        status: Mutex::new(BTreeMap::new()),
        clock_offsets: Arc::new(Mutex::new(plan.clock_offsets.clone())),
        corrupted: Mutex::new(Default::default()),
        segment_bytes: plan.segment_bytes,
        faults: FaultHooks {
            peer_messages: Some(TransportFaults::new(seed ^ 0x7e57_fa17)),
            request_hold: Some(RequestHold::default()),
            response_cut: Some(ResponseCut::default()),
        },
    });
    cluster.note(format!("seed {seed}: {node_count} nodes, scenario {}, {}", config.scenario.name(), plan.describe()));
    for bug in &config.planted {
        cluster.note(format!("PLANTED BUG {}", bug.name()));
    }

    // White-box raft checks: every replica's events, on this thread.
    let raft = Rc::new(RefCell::new(RaftChecker::default()));
    // SIM_TRACE_GROUP=<group>: print that raft group's white-box events (stderr only; the
    // schedule does not change). Read once, not per event.
    let trace_group: Option<u64> = std::env::var("SIM_TRACE_GROUP").ok().and_then(|g| g.parse().ok());
    {
        let (raft, cluster) = (raft.clone(), cluster.clone());
        observe::install(move |event| {
            match event {
                Event::Leader { node, group, term } => {
                    cluster.note(format!("group {group}: node {node} leads term {term}"));
                    // Topic `t` is the first topic of a fresh cluster: its partitions are raft
                    // groups 1..=PARTITIONS (the controller numbers groups from 1 in creation
                    // order). The checker needs leader changes to tell an explained acks=1 loss
                    // from a bug.
                    if (1..=u64::from(PARTITIONS)).contains(&group) {
                        cluster.history().leader_change(group - 1, Some(node)).expect("history");
                    }
                }
                Event::RecoveryCut { node, group, index, .. } => {
                    cluster.note(format!("group {group}: node {node}'s recovery cut a torn tail from index {index} on"));
                }
                Event::Suspect { node, group, cut, bound, .. } => {
                    cluster.note(format!("group {group}: node {node} is suspect (may have lost {cut}..={bound}): no votes"));
                }
                Event::SuspectCleared { node, group, durable } => {
                    cluster.note(format!("group {group}: node {node} settled its suspicion, durable to {durable}"));
                }
                _ => {}
            }
            if let Some(g) = trace_group {
                let t = cluster.start.elapsed().as_secs_f64();
                if event.group() == g {
                    eprintln!("trace {t:.3} {event:?}");
                }
            }
            let mut checker = raft.borrow_mut();
            checker.record(event);
            // A violation stops the run at once, naming the invariant, the group and the values.
            if let Some(violation) = checker.violations().first() {
                panic!("{violation} (seed {seed})");
            }
        });
    }

    let mut node_ids = BTreeMap::new();
    for &node in &nodes {
        let shared = cluster.clone();
        let id = runtime
            .create_node()
            .name(format!("server-{node}"))
            .ip(member(node).client.ip())
            .init(move || shared.clone().run_node(node))
            .build()
            .id();
        node_ids.insert(node, id);
    }
    let client = runtime.create_node().name("client").ip(IpAddr::from([10, 0, 1, 1])).build();

    let bootstrap = cluster.bootstrap();
    client
        .spawn(async move {
            let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
            let admin = Admin::new(&addresses).expect("admin");
            for _ in 0..600 {
                match admin.create_topic(TOPIC, PARTITIONS, 3, TopicConfig::default()).await {
                    Ok(()) => return,
                    Err(ClientError::Server { code: odradek_client::wire::proto::ErrorCode::TOPIC_ALREADY_EXISTS, .. }) => return,
                    Err(error) if error.is_retriable() => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(error) => panic!("create topic: {error}"),
                }
            }
            panic!("no topic after 600 attempts");
        })
        .await
        .expect("topic task");
    cluster.note("topic created");

    let workload = workload::start(&client, cluster.clone(), &mut rng, config.duration);
    let faults = nemesis::run(&runtime, &cluster, &node_ids, client.id(), &plan, config.duration, &mut rng).await;
    cluster.note(format!("safety phase over after {faults} faults; healed"));

    let (acked, failed) = workload.finish().await;
    cluster.note(format!("producers finished: {acked} acked, {failed} failed"));
    let mut problems = Vec::new();
    let ends = {
        let bootstrap = cluster.bootstrap();
        client
            .spawn(async move {
                let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
                let admin = Admin::new(&addresses).expect("admin");
                let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
                let mut ends = BTreeMap::new();
                for partition in 0..PARTITIONS {
                    while tokio::time::Instant::now() < deadline {
                        match admin.list_offsets(TOPIC, partition, OffsetQuery::Latest).await {
                            Ok(end) => {
                                ends.insert(partition, end.offset);
                                break;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
                ends
            })
            .await
            .expect("ends task")
    };
    if ends.len() != PARTITIONS as usize {
        problems.push(format!("V1: no partition end within {LIVENESS_BOUND:?} for some partition (got {ends:?})"));
    }
    cluster.history().final_drain().expect("history");
    let drain = workload::drain(&client, cluster.clone(), ends.clone()).await;
    if let Err(problem) = &drain {
        problems.push(problem.clone());
    }
    let (drained, log_dump) = drain.unwrap_or_default();
    cluster.note(format!("final drain read {drained} records"));
    // R7: once quiet, every live replica of a group applies the same index (the leaders'
    // heartbeats carry the commit index within a few ticks), checked every 100 ms up to
    // CONVERGENCE_WAIT; the timeline says how long it took.
    let quiet = tokio::time::Instant::now();
    loop {
        let mut down = cluster.given_up();
        down.extend(cluster.corrupted.lock().expect("corrupted lock").iter().copied());
        let diverged: Vec<(u64, BTreeMap<u64, u64>)> = raft
            .borrow()
            .applied_by_node()
            .into_iter()
            .map(|(group, applied)| (group, applied.into_iter().filter(|(node, _)| !down.contains(node)).collect::<BTreeMap<u64, u64>>()))
            .filter(|(_, live)| live.values().collect::<std::collections::BTreeSet<_>>().len() > 1)
            .collect();
        if diverged.is_empty() {
            cluster.note(format!("R7: every group converged {} ms after the drain", quiet.elapsed().as_millis()));
            break;
        }
        if quiet.elapsed() >= CONVERGENCE_WAIT {
            for (group, live) in diverged {
                problems.push(format!("R7: group {group} did not converge within {CONVERGENCE_WAIT:?}: applied index per node {live:?}"));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    observe::uninstall();

    let history = std::mem::replace(&mut *cluster.history(), HistoryBuilder::new(|| 0)).finish();
    let verdict = check(&history, &CheckOptions { log_dump: Some(log_dump), ..CheckOptions::default() });
    let mut lines = Vec::new();
    history.write_json_lines(&mut lines).expect("history serializes");
    let trace_hash =
        lines.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3));
    let raft = Rc::try_unwrap(raft).map(RefCell::into_inner).unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    if acked == 0 && config.planted.is_empty() {
        problems.push("V2: nothing was acknowledged".into());
    }
    let timeline = std::mem::take(&mut *cluster.timeline.lock().expect("timeline lock"));
    Report {
        nodes: node_count,
        plan,
        timeline,
        verdict,
        raft_events: raft.events,
        problems,
        faults,
        acked,
        failed,
        drained,
        ends,
        sim_seconds: start.elapsed().as_secs_f64(),
        trace_hash,
        history,
        config,
    }
}
