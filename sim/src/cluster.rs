//! The simulated cluster: the server nodes' disks, addresses and status, the history and the
//! timeline every part of a run writes, and one incarnation of a node ([`SimCluster::run_node`]).
//! The nodes, the workload and the nemesis share it on the one simulation thread.
//!
//! Invariant: a node's [`SimDisk`] outlives every incarnation of the node (kill, power loss and
//! restart act on the same disk), and a node that failed to start [`START_FAILURES_MAX`] times in
//! a row stays down until the liveness phase restarts every node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::runtime::Handle;
use madsim::task::NodeId as SimNodeId;
use odradek_client::ClusterConfig;
use odradek_jepsen::history::{HistoryBuilder, Process};
use odradek_log::SimDisk;
use odradek_server::auth::AuthSettings;
use odradek_server::config::{Member, ServerConfig};
use odradek_server::faults::{FaultHooks, RequestHold, ResponseCut, TransportFaults};
use odradek_server::group::service::GroupSettings;
use odradek_server::planted::PlantedBug;
use odradek_server::Server;

use crate::config::{Load, CONNECTION_DEADLINE_MS, DISK_RESERVE_BYTES};

/// Every node's data directory on its own disk.
const DATA_DIR: &str = "/data";
/// A node that failed to start this many times in a row stays down (e.g. corruption found).
const START_FAILURES_MAX: u32 = 2;

/// Node `id`'s addresses (ips 10.0.0.id).
pub fn member(node: u64) -> Member {
    let ip = IpAddr::from([10, 0, 0, u8::try_from(node).expect("few nodes")]);
    Member { id: node, peer: SocketAddr::new(ip, 9100), client: SocketAddr::new(ip, 9092), kafka: None }
}

/// The port of every node's Kafka listener (plan field `kafka`).
pub const KAFKA_PORT: u16 = 9093;

/// Node `id`'s addresses with its Kafka listener.
pub fn kafka_member(node: u64) -> Member {
    let member = member(node);
    Member { kafka: Some(SocketAddr::new(member.client.ip(), KAFKA_PORT)), ..member }
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

/// Flag `--grow-shrink` (F-M4): where the cluster's growing and shrinking stands.
#[derive(Clone, Debug, Default)]
pub struct GrowShrink {
    /// The spare node was started: it joins (`--join`) and runs from then on.
    pub joined: bool,
    /// The controller voters were asked to take the joined node in (recorded).
    pub promoted: bool,
    /// A rebalance was recorded after the join, with this many moves.
    pub rebalanced: Option<u32>,
    /// The node whose decommission the controller recorded.
    pub decommissioned: Option<u64>,
    /// Decommissioned nodes seen removed and stopped for good, as an operator would: never
    /// restarted again.
    pub departed: BTreeSet<u64>,
    /// V7 violations: a removed node still serving clients (`nemesis::fault::grow_shrink`).
    pub violations: Vec<String>,
}

/// State shared by the nodes, the workload and the nemesis (all on one simulation thread).
pub struct SimCluster {
    /// The bootstrap members (`--node` lists).
    pub nodes: Vec<u64>,
    /// Flag `--grow-shrink`: the id of the node that may join the running cluster (the next
    /// one). Its machine and disk exist from the start; it runs only once the nemesis starts
    /// it (`GrowShrink::joined`).
    pub spare: Option<u64>,
    /// Flag `--grow-shrink`: what the nemesis did so far.
    pub grow_shrink: Mutex<GrowShrink>,
    pub disks: BTreeMap<u64, SimDisk>,
    pub planted_bugs: Vec<PlantedBug>,
    pub start: tokio::time::Instant,
    history: Mutex<HistoryBuilder>,
    process_next: Mutex<Process>,
    timeline: Mutex<Vec<String>>,
    pub node_status: Mutex<BTreeMap<u64, NodeStatus>>,
    /// F-C1: each node's wall clock offset in ms (read at every clock call, so bumps apply live).
    pub clock_offsets_ms: Arc<Mutex<BTreeMap<u64, i64>>>,
    /// Nodes F-S3 corrupted: they may rightly refuse to serve a group (R8 b) until its replica
    /// is repaired (issue 15: set aside and rebuilt), so R7 waits for their repairs.
    pub corrupted: Mutex<BTreeSet<u64>>,
    /// Nodes that started quarantined (their metadata replica is damaged): they serve no
    /// client and run no controller loop, so nothing repairs them and R7 skips them.
    pub passive: Mutex<BTreeSet<u64>>,
    /// Topic segment size, when the plan sets one.
    pub segment_bytes: Option<u64>,
    /// F-N6 transport fault layer and F-N8 request hold, shared by every node.
    pub fault_hooks: FaultHooks,
    /// The coordinator's settings, when the run has consumer groups (else the servers' defaults).
    pub group_settings: Option<GroupSettings>,
    /// `[auth]` of every node in a secure run (`crate::security`); `None`: open.
    pub auth: Option<AuthSettings>,
    /// Nodes whose data directory F-P7 deleted: they start as a new incarnation from then on
    /// (`ServerConfig::data_dir_new`; a restart before it finished joining is still joining).
    pub wiped: Mutex<BTreeSet<u64>>,
    /// Wipes the raft checker has not been told of yet.
    wipes_unrecorded: Mutex<Vec<u64>>,
    /// Wipes per node so far: each gives its data directory another incarnation
    /// ([`SimCluster::incarnation`]).
    wipe_counts: Mutex<BTreeMap<u64, u64>>,
    /// The run's load profile (topic `t`'s partition count among it).
    pub load: Load,
    /// The client's planted bugs (the workload's consumers read with them).
    pub client_planted: odradek_client::planted::Planted,
    /// Plan field `kafka`: every node runs a Kafka listener, which the Kafka workload uses.
    pub kafka: bool,
    /// Flag `--hibernate`: every node puts quiet groups to sleep (`ServerConfig::hibernate`).
    pub hibernate: bool,
    /// Plan field `retention`: topic `t`'s short retention (R12).
    pub retention: Option<crate::nemesis::plan::RetentionPlan>,
    /// Flag `--open-file-budget`: every node's `ServerConfig::max_open_files`.
    pub open_file_budget: Option<usize>,
    /// With `open_file_budget`: what every node's budget did, summed over its incarnations
    /// (sampled each second: "evictions", "reopens", "detached handles", and the most files
    /// one node held, "open max").
    pub open_files: Mutex<BTreeMap<&'static str, u64>>,
    /// Each node's last started server, as the end-of-run checks that ask a node directly see
    /// it (R12 c: its raft driver, and its applied metadata to find topic `t`'s groups). A
    /// crashed incarnation's handle answers errors.
    pub servers: Mutex<BTreeMap<u64, ServerProbe>>,
}

/// A view of one running server for the end-of-run checks ([`SimCluster::servers`]).
#[derive(Clone)]
pub struct ServerProbe {
    pub node: odradek_consensus::NodeHandle,
    pub state: Arc<odradek_server::state::NodeState>,
}

impl SimCluster {
    /// Nodes `1..=node_count`, each with a fresh disk seeded from `seed`; the history's clock
    /// starts now.
    pub fn new(
        seed: u64,
        node_count: usize,
        planted_bugs: Vec<PlantedBug>,
        clock_offsets_ms: BTreeMap<u64, i64>,
        segment_bytes: Option<u64>,
    ) -> SimCluster {
        let start = tokio::time::Instant::now();
        let nodes: Vec<u64> = (1..=node_count as u64).collect();
        SimCluster {
            disks: nodes.iter().map(|&node| (node, SimDisk::new(seed ^ node.wrapping_mul(0x9E37_79B9_7F4A_7C15)))).collect(),
            nodes,
            spare: None,
            grow_shrink: Mutex::new(GrowShrink::default()),
            planted_bugs,
            start,
            history: Mutex::new(HistoryBuilder::new(move || start.elapsed().as_nanos() as u64)),
            process_next: Mutex::new(0),
            timeline: Mutex::new(Vec::new()),
            node_status: Mutex::new(BTreeMap::new()),
            clock_offsets_ms: Arc::new(Mutex::new(clock_offsets_ms)),
            corrupted: Mutex::new(BTreeSet::new()),
            passive: Mutex::new(BTreeSet::new()),
            segment_bytes,
            fault_hooks: FaultHooks {
                peer_messages: Some(TransportFaults::new(seed ^ 0x7e57_fa17)),
                request_hold: Some(RequestHold::default()),
                response_cut: Some(ResponseCut::default()),
            },
            group_settings: None,
            auth: None,
            wiped: Mutex::new(BTreeSet::new()),
            wipes_unrecorded: Mutex::new(Vec::new()),
            wipe_counts: Mutex::new(BTreeMap::new()),
            load: Load::DEFAULT,
            client_planted: odradek_client::planted::Planted::default(),
            kafka: false,
            hibernate: false,
            retention: None,
            open_file_budget: None,
            open_files: Mutex::new(BTreeMap::new()),
            servers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Flag `--grow-shrink`: node `node_count + 1` may join the running cluster (a machine and a
    /// disk of its own, idle until started).
    pub fn with_spare(mut self, seed: u64) -> SimCluster {
        let spare = self.nodes.len() as u64 + 1;
        self.disks.insert(spare, SimDisk::new(seed ^ spare.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        self.spare = Some(spare);
        self
    }

    /// Every node's machine: the bootstrap members, and the spare under `--grow-shrink`.
    pub fn machines(&self) -> Vec<u64> {
        self.nodes.iter().copied().chain(self.spare).collect()
    }

    /// The nodes running or meant to run now: the bootstrap members and the joined spare,
    /// without the decommissioned nodes that departed.
    pub fn members_now(&self) -> Vec<u64> {
        let state = self.grow_shrink.lock().expect("grow-shrink lock");
        let joined = self.spare.filter(|_| state.joined);
        self.nodes.iter().copied().chain(joined).filter(|node| !state.departed.contains(node)).collect()
    }

    fn departed(&self, node: u64) -> bool {
        self.grow_shrink.lock().expect("grow-shrink lock").departed.contains(&node)
    }

    /// F-P7 on `node`, which is down: deletes its data directory (every file of its disk).
    pub fn wipe(&self, node: u64) {
        self.disks[&node].restore(&odradek_log::DiskImage::default());
        self.wiped.lock().expect("wiped lock").insert(node);
        *self.wipe_counts.lock().expect("wipe counts lock").entry(node).or_default() += 1;
        self.wipes_unrecorded.lock().expect("wipes lock").push(node);
    }

    /// The incarnation `node`'s data directory has now, as its lock file would record it
    /// (`odradek_server::data_dir`): one per node, another after each wipe (F-P7). The joined
    /// spare registers it with the controller; every node tells it to its peers, whose raft
    /// leaders forget what an earlier incarnation acknowledged (R11).
    pub fn incarnation(&self, node: u64) -> u64 {
        let wipes = self.wipes(node);
        let base = if Some(node) == self.spare { 0x6a6f_696e_0000_0000 } else { 0x626f_6f74_0000_0000 };
        base | (wipes << 16) | node
    }

    fn wipes(&self, node: u64) -> u64 {
        self.wipe_counts.lock().expect("wipe counts lock").get(&node).copied().unwrap_or(0)
    }

    /// Nodes whose data directory still says they are joining (`odradek_server::data_dir`), and
    /// wiped nodes that have not started since (their disk still empty: the marker is written
    /// at start, and a restart that failed or waits for the next round has not written it yet;
    /// swarm seed 87 wiped a second node in that gap).
    pub fn joining(&self) -> Vec<u64> {
        let marker = std::path::Path::new(DATA_DIR).join(odradek_server::data_dir::JOINING_FILE);
        let wiped = self.wiped.lock().expect("wiped lock");
        self.disks
            .iter()
            .filter(|(node, _)| !self.departed(**node))
            .filter(|(node, disk)| disk.read_file(&marker).is_some() || (wiped.contains(node) && disk.files().is_empty()))
            .map(|(&node, _)| node)
            .collect()
    }

    /// The hard state (term, vote) `node`'s disk holds durably for raft `group` right now, as
    /// its hard-state file would open after a power loss: `None` when no copy of it is valid.
    /// A file that does not exist, or is still empty, opens as the default state (term 0).
    /// R6 against the disk: the raft checker compares every granted vote with it.
    pub fn hard_state_on_disk(&self, node: u64, group: u64) -> Option<(u64, u64)> {
        let path = Path::new(DATA_DIR).join(group.to_string()).join(odradek_consensus::storage::HARD_STATE_FILE);
        let bytes = self.disks.get(&node)?.read_file_durable(&path).unwrap_or_default();
        if bytes.is_empty() {
            return Some((0, 0));
        }
        odradek_log::decode_hard_state_file(&bytes).map(|state| (state.term, state.vote))
    }

    /// The start-state record `node`'s disk holds durably for raft `group` right now, as its
    /// start-state file would open after a power loss: its `as_of_index`, or `None` when no such
    /// file would survive or it does not decode (R12 d: checked whenever a log start moves).
    pub fn start_state_on_disk(&self, node: u64, group: u64) -> Option<u64> {
        let path = Path::new(DATA_DIR).join(group.to_string()).join(odradek_consensus::storage::START_STATE_FILE);
        let bytes = self.disks.get(&node)?.read_file_after_power_loss(&path)?;
        odradek_log::StartState::decode(&bytes).ok().map(|state| state.as_of_index)
    }

    /// The segment files of raft `group`'s log on `node`'s disk whose writes (or names) are not
    /// durable right now (R6 against the disk: an accepted append leaves only after its fsync).
    pub fn segments_unsynced(&self, node: u64, group: u64) -> Vec<String> {
        let Some(disk) = self.disks.get(&node) else { return Vec::new() };
        let dir = Path::new(DATA_DIR).join(group.to_string()).join(odradek_consensus::storage::LOG_DIR);
        disk.files_unsynced_in(&dir)
            .into_iter()
            .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
            .map(|path| path.display().to_string())
            .collect()
    }

    /// The wipes since the last call, for the raft checker.
    pub fn take_wipes_unrecorded(&self) -> Vec<u64> {
        std::mem::take(&mut *self.wipes_unrecorded.lock().expect("wipes lock"))
    }

    /// The workload's client settings: the defaults, authenticated as the writer in a secure run.
    pub fn client_config(&self) -> ClusterConfig {
        let config = ClusterConfig::default();
        match &self.auth {
            Some(_) => {
                let (user, password) = crate::security::WRITER;
                config.with_sasl(odradek_client::scram::Mechanism::Sha256, user, password)
            }
            None => config,
        }
    }

    /// Creates one simulated machine per node (ip 10.0.0.node), each running
    /// [`SimCluster::run_node`] at every (re)start; returns their simulator ids.
    pub fn start_nodes(self: &Arc<Self>, runtime: &Handle) -> BTreeMap<u64, SimNodeId> {
        let mut node_ids = BTreeMap::new();
        for node in self.machines() {
            let cluster = self.clone();
            let id = runtime
                .create_node()
                .name(format!("server-{node}"))
                .ip(member(node).client.ip())
                .init(move || cluster.clone().run_node(node))
                .build()
                .id();
            node_ids.insert(node, id);
        }
        node_ids
    }

    pub fn bootstrap(&self) -> Vec<String> {
        self.nodes.iter().map(|node| member(*node).client.to_string()).collect()
    }

    /// An admin client of the workload's machine, with [`SimCluster::client_config`]; `None`
    /// when the settings are refused.
    pub fn admin(&self) -> Option<odradek_client::Admin> {
        let bootstrap = self.bootstrap();
        let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
        let session = odradek_client::ClusterSession::new(&addresses, self.client_config()).ok()?;
        Some(odradek_client::Admin::with_cluster(session))
    }

    /// The nodes' Kafka listeners (plan field `kafka`).
    pub fn kafka_bootstrap(&self) -> Vec<SocketAddr> {
        assert!(self.kafka, "Kafka listeners run only with the plan field `kafka`");
        self.nodes.iter().map(|node| kafka_member(*node).kafka.expect("a Kafka address")).collect()
    }

    pub fn process(&self) -> Process {
        let mut next = self.process_next.lock().expect("process lock");
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

    /// The timeline so far, leaving it empty.
    pub fn take_timeline(&self) -> Vec<String> {
        std::mem::take(&mut *self.timeline.lock().expect("timeline lock"))
    }

    fn set_status(&self, node: u64, status: NodeStatus) {
        self.node_status.lock().expect("status lock").insert(node, status);
    }

    /// One incarnation of a server node: its disk as the last crash left it. Returns when the
    /// node stops by itself; the nemesis then restarts it.
    async fn run_node(self: Arc<Self>, node: u64) {
        let joining = Some(node) == self.spare;
        if self.departed(node) || (joining && !self.grow_shrink.lock().expect("grow-shrink lock").joined) {
            // Departed for good, or the spare before its join: the machine stays idle.
            return;
        }
        let address = |n: u64| if self.kafka { kafka_member(n) } else { member(n) };
        // The spare knows only itself and joins through the bootstrap members (`--join`).
        let members = if joining { vec![address(node)] } else { self.nodes.iter().map(|&n| address(n)).collect() };
        let mut config = ServerConfig::new(node, DATA_DIR, members);
        if joining {
            config.join = self.nodes.iter().map(|&n| member(n).client).collect();
        }
        config.tick_ms = 50;
        config.balance_interval_ms = 2_000;
        config.disk_check_interval_ms = 500;
        // Off unless the run asks (the server's default is on): every seed keeps its trace.
        config.hibernate = self.hibernate;
        config.max_open_files = self.open_file_budget;
        // Simulated clients greet at once and never idle: keep the handshake and idle deadlines
        // past any run, as madsim never cancels a timer (each stale deadline would wake its
        // connection's task once more). `server/tests/e2e/floods.rs` tests them with real processes.
        config.handshake_timeout_ms = CONNECTION_DEADLINE_MS;
        config.connection_idle_timeout_ms = CONNECTION_DEADLINE_MS;
        // F-S9 disk full leaves 0..2x this much room: produce is refused with DISK_FULL below it,
        // and a write that finds no room at all stops the node (it is restarted).
        config.disk_reserve_bytes = DISK_RESERVE_BYTES;
        config.planted_bugs = self.planted_bugs.clone();
        config.data_dir_new = self.wiped.lock().expect("wiped lock").contains(&node) || joining;
        config.incarnation = self.incarnation(node);
        if joining && self.wipes(node) > 0 {
            // The joined node wiped: it asks to join again under its new identity, replacing
            // the member record of its old one (`odradek server --join --replace`).
            config.join_replace = true;
        }
        if let Some(bytes) = self.segment_bytes {
            config.topic_defaults.segment_bytes = bytes;
        }
        if let Some(groups) = &self.group_settings {
            config.groups = groups.clone();
        }
        if let Some(auth) = &self.auth {
            config.auth = auth.clone();
        }
        let offsets_ms = self.clock_offsets_ms.clone();
        // The simulated wall clock (madsim's, the one the client stamps records with) plus this
        // node's F-C1 offset. (A fixed base instead once made retention delete every sealed
        // segment: the records looked 15 months old.)
        let clock: odradek_server::Clock = Arc::new(move || {
            let offset_ms = offsets_ms.lock().expect("clock lock").get(&node).copied().unwrap_or(0);
            odradek_client::clock::wall_clock_ms() + offset_ms
        });
        let previous_failures = match self.node_status.lock().expect("status lock").get(&node) {
            Some(NodeStatus::Stopped { start_failures, .. }) => *start_failures,
            _ => 0,
        };
        self.set_status(node, NodeStatus::Starting);
        if joining {
            // The server's join path (`odradek server --join`): recorded by the controller, the
            // bootstrap list kept on its disk for its restarts.
            let disk = self.disks[&node].clone();
            if let Err(error) = odradek_server::join::join_cluster(&mut config, &disk).await {
                self.note(format!("node {node} could not start: {error}"));
                self.set_status(node, NodeStatus::Stopped { reason: error, start_failures: previous_failures + 1 });
                return;
            }
        }
        let server = match Server::start_with(config, self.disks[&node].clone(), clock, self.fault_hooks.clone()).await {
            Ok(server) => server,
            Err(error) => {
                self.note(format!("node {node} could not start: {error}"));
                self.set_status(node, NodeStatus::Stopped { reason: error.to_string(), start_failures: previous_failures + 1 });
                return;
            }
        };
        if server.is_quarantined() {
            self.passive.lock().expect("passive lock").insert(node);
            self.note(format!("node {node} started quarantined (damaged metadata): serving no client, leading no group"));
        }
        self.set_status(node, NodeStatus::Up);
        let probe = ServerProbe { node: server.node().clone(), state: server.state().clone() };
        self.servers.lock().expect("servers lock").insert(node, probe);
        if self.open_file_budget.is_some() {
            // Samples the budget's counters (only with the flag: a timer changes the schedule).
            let mut seen = odradek_log::BudgetStats::default();
            let mut failed = std::pin::pin!(server.failed());
            loop {
                tokio::select! {
                    biased;
                    _ = &mut failed => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        let now = server.open_file_stats();
                        let mut totals = self.open_files.lock().expect("open files lock");
                        *totals.entry("evictions").or_default() += now.evictions - seen.evictions;
                        *totals.entry("reopens").or_default() += now.reopens - seen.reopens;
                        *totals.entry("dirty closes").or_default() += now.dirty_closes - seen.dirty_closes;
                        let open_max = totals.entry("open max").or_default();
                        *open_max = (*open_max).max(now.open_max as u64);
                        let detached = totals.entry("detached max").or_default();
                        *detached = (*detached).max(now.detached as u64);
                        seen = now;
                    }
                }
            }
        } else {
            server.failed().await;
        }
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
        let departed = self.grow_shrink.lock().expect("grow-shrink lock").departed.clone();
        let status = self.node_status.lock().expect("status lock");
        let stopped = status.iter().filter(|(node, _)| !departed.contains(node)).filter_map(|(&node, status)| match status {
            NodeStatus::Stopped { start_failures, .. } => keep(*start_failures).then_some(node),
            _ => None,
        });
        stopped.collect()
    }
}
