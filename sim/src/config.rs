//! What a run is told ([`ScenarioConfig`], [`Scenario`]) and the shape every run shares: the
//! topic it writes, its partitions, the bounds of its liveness phase and each node's disk
//! reserve. The cluster, the nemesis, the workload and the phases all read these; none of them
//! owns them.

use std::str::FromStr;
use std::time::Duration;

use odradek_client::planted::PlantedBug as ClientPlantedBug;
use odradek_server::planted::PlantedBug;

use crate::shrink::FaultSelection;

/// The topic every run writes.
pub const TOPIC: &str = "t";
pub const PARTITIONS: u32 = 3;
/// Replicas of each partition of topic `t` unless `--replication` says otherwise.
pub const REPLICATION: u32 = 3;
/// The consumer groups a `groups` run may use (the nemesis aims coordinator faults at their
/// coordinators).
pub const GROUP_NAMES: [&str; 2] = ["g0", "g1"];
/// The Kafka producer's index (plan field `kafka`): its values are this × 10⁶ + i, after the
/// native producers (0, 1, 2, and up to 4 under heavy load).
pub const KAFKA_PRODUCER: u64 = 9;
/// Bound on the liveness phase's producers and on the final drain (simulated time).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(60);
/// How long after the drain the replicas' applied indexes may take to agree (R7; checked every
/// 100 ms, the run goes on as soon as they do). Over swarm seeds 1–400: p90 0 ms, p99 0.3 s,
/// max 1.6 s. Before the transport's connect bound grew with failed dials, a follower whose
/// dials to a restarted leader kept timing out stayed behind for seconds (seed 81: 8.1 s) or for
/// good (seeds 7512, 7889).
pub const CONVERGENCE_WAIT: Duration = Duration::from_secs(10);
/// Each simulated node's free-space reserve (the server refuses produce below it).
pub const DISK_RESERVE_BYTES: u64 = 256 * 1024;
/// The nodes' handshake and idle deadlines: a simulated day, past any run (see `SimCluster`).
pub const CONNECTION_DEADLINE_MS: u64 = 24 * 60 * 60 * 1000;

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
    /// Consumer groups (issue 14): the group workload beside the producers, process, network and
    /// clock faults, and faults aimed at a group's coordinator (kill, isolation, clock steps).
    Groups,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [Scenario::Swarm, Scenario::Calm, Scenario::Crash, Scenario::Network, Scenario::Disk, Scenario::Groups];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Swarm => "swarm",
            Scenario::Calm => "calm",
            Scenario::Crash => "crash",
            Scenario::Network => "network",
            Scenario::Disk => "disk",
            Scenario::Groups => "groups",
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
    pub node_count: Option<usize>,
    /// Length of the safety phase (simulated).
    pub duration: Duration,
    pub planted_bugs: Vec<PlantedBug>,
    /// Planted bugs of the client (the group workload's consumers).
    pub client_planted_bugs: Vec<ClientPlantedBug>,
    /// Security on (`crate::security`): SCRAM logins, ACLs, an intruder, invariant A1. Not with
    /// scenario `groups` (its members do not log in yet).
    pub secure: bool,
    /// F-P7/F-M3 in the plan (a plan field, off by default so every seed keeps its trace): the
    /// nemesis may stop a node, delete its data directory and restart it (`FaultKind::Wipe`).
    pub wipes: bool,
    /// Issue 16 (a plan field, off by default so every seed keeps its trace): every node runs a
    /// Kafka listener, and a Kafka-protocol producer and consumer (`workload::kafka`) run beside
    /// the native ones. With `secure` they log in as the writer (SCRAM), and the intruder tries
    /// the Kafka listener too (A1, `crate::security`).
    pub kafka: bool,
    /// Topic churn (a plan field, off by default so every seed keeps its trace): while the
    /// nemesis runs, topics are created, grown (AddPartitions), deleted and created again under
    /// the same names; after the heal a topic is grown and the placement invariant PL1 checked
    /// (`crate::workload::churn`).
    pub topic_churn: bool,
    /// F-M1/F-M2 in the plan (a plan field, off by default so every seed keeps its trace): the
    /// nemesis may reassign partitions of the checked topic (grow, shrink refused, swap, move
    /// to a down node) and run leader-transfer storms, with kills and isolations
    /// (`FaultKind::Reassign`, `FaultKind::LeaderStorm`); the cluster has 5 nodes unless told
    /// (7 under `heavy`), and after the heal every move must complete (V5).
    pub membership: bool,
    /// F-M4 in the plan (flag `--grow-shrink`, off by default so every seed keeps its trace): the
    /// cluster grows and shrinks under the faults: a brand-new node (id `nodes + 1`) joins
    /// through the server's `--join` path, the controller voters take it in (sometimes with a
    /// rebalance), and a node is decommissioned (its replicas move away, then it leaves; the
    /// simulator then stops it for good). Checked after the heal (V6,
    /// `crate::workload::grow_shrink`). 3 or 5 bootstrap nodes (the cluster holds at most 7).
    pub grow_shrink: bool,
    /// DeleteRecords under faults (a plan field, off by default so every seed keeps its trace):
    /// records of the checked topic `t` deleted while the nemesis runs, as history ops; an
    /// acknowledged deletion must hold (DR1, `crate::workload::delete_records`).
    pub delete_records: bool,
    /// A replay of some of the seed's fault rounds (`--plan FILE`, [`crate::shrink`]); `None`:
    /// every round the seed draws.
    pub faults: Option<FaultSelection>,
    /// The heavy load profile (`--heavy`, off by default so every seed keeps its trace; not
    /// with scenario `groups`): 5 or 7 nodes, more partitions than nodes, four idempotent
    /// producers sending thousands of records in multi-record batches of drawn sizes, with
    /// compression, pipelining and sometimes short delivery timeouts ([`Load`]).
    pub heavy: bool,
    /// Faults on the hard- and conf-state files (a plan field, off by default so every seed
    /// keeps its trace): one copy of a file flipped (F-S3), torn (F-S2), cut short (F-S4) or
    /// stale (F-S7) on any node, and once per run both copies on the one node F-S3 may corrupt
    /// (its group there does not open: quarantine). R8 c checks every reopened hard state
    /// against the votes its node reported saved (`nemesis::plan::FaultKind::STATE_FILE`).
    /// With `retention` too, once per run on that node, a start-state file's renames lost or
    /// its bytes damaged (`FaultKind::START_STATE`).
    pub state_faults: bool,
    /// Hibernation of quiet groups on every node (`--hibernate`, off by default so every seed
    /// keeps its trace; the server's own default is on): groups sleep and wake under the faults,
    /// and the coverage counts "path group hibernated" and "path group woke".
    pub hibernate: bool,
    /// Short retention under follower lag (issue 20; a plan field, off by default so every seed
    /// keeps its trace): topic `t` gets small segments and a retention of a few KiB and/or
    /// seconds, and the nemesis isolates a node for seconds at a time so that the others'
    /// retention deletes entries it has not got: it must catch up by a snapshot (R12).
    pub retention: bool,
    /// Regular-expression subscriptions (issue 16; a plan field, off by default so every seed
    /// keeps its trace; scenario `groups` only): consumer-protocol members subscribe with a
    /// pattern the coordinator resolves (KIP-848), beside a decoy topic whose name contains a
    /// match without being one; C8 checks every assignment against the subscription.
    pub regex: bool,
    /// Offset deletions (issue 16, Kafka's OffsetDelete; flag `--offset-delete`, off by default
    /// so every seed keeps its trace; scenario `groups` only): an admin deletes committed
    /// offsets of the member groups (refused while subscribed) and of an admin group of its own,
    /// as `offset-delete` history ops; C9 checks them (`workload::groups::run_offset_deletes`).
    pub offset_delete: bool,
    /// Flag `--open-file-budget N` (off by default so every seed keeps its trace): every node
    /// keeps at most N partition files open (`ServerConfig::max_open_files`, DESIGN.md
    /// "Open-file budget"), evicting and reopening them under the faults, and each node's disk
    /// models an unsynced close losing its writes (`SimDisk::set_close_loses_unsynced`), so
    /// closing a dirty file (the planted bug evicted-without-sync) shows as lost writes.
    pub open_file_budget: Option<usize>,
    /// Flag `--sleeping-leader-cut` (issue 20; off by default so every seed keeps its trace;
    /// hibernation on): after the producers finish, a partition whose leader sleeps loses that
    /// leader to a cut, the others elect and acknowledge a record, then the client reaches only
    /// the old leader and polls it with a fresh high watermark (L12 a;
    /// `nemesis::fault::probe`).
    pub sleeping_leader_cut: bool,
    /// Flag `--late-retry` (issue 20; off by default so every seed keeps its trace; topic `t`
    /// gets byte retention with small segments unless the plan has `retention`): after the
    /// producers finish, an idempotent producer's first batch is committed with its answer lost,
    /// retention deletes it, every replica restarts, then the retry arrives (L2, P5;
    /// `nemesis::fault::probe`).
    pub late_retry: bool,
    /// Flag `--replication N` (issue 15, "RF 2 repair"; 3 by default, so every seed keeps its
    /// trace): topic `t` is created with N replicas a partition (2 or 3). With 2, a damaged
    /// (`--state-faults`) or wiped (`--wipes`) replica is repaired from the one other voter,
    /// which is no quorum alone (DESIGN.md "Replication 2").
    pub replication: u32,
}

/// What a run's client and cluster are sized to: drawn from the seed under `--heavy`, the
/// defaults otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Partitions of topic `t`.
    pub partitions: u32,
    /// Replicas of each partition of topic `t` (`ScenarioConfig::replication`).
    pub replication: u32,
    pub heavy: bool,
}

impl Load {
    pub const DEFAULT: Load = Load { partitions: PARTITIONS, replication: REPLICATION, heavy: false };
}

impl ScenarioConfig {
    pub fn new(seed: u64) -> ScenarioConfig {
        ScenarioConfig {
            seed,
            scenario: Scenario::Swarm,
            node_count: None,
            duration: Duration::from_secs(20),
            planted_bugs: Vec::new(),
            client_planted_bugs: Vec::new(),
            secure: false,
            wipes: false,
            faults: None,
            heavy: false,
            topic_churn: false,
            delete_records: false,
            kafka: false,
            membership: false,
            grow_shrink: false,
            state_faults: false,
            hibernate: false,
            retention: false,
            regex: false,
            offset_delete: false,
            open_file_budget: None,
            sleeping_leader_cut: false,
            late_retry: false,
            replication: REPLICATION,
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "sim/madsim run --release -p odradek-sim --bin odradek-sim -- run --seed {} --scenario {}",
            self.seed,
            self.scenario.name()
        );
        if let Some(nodes) = self.node_count {
            command += &format!(" --nodes {nodes}");
        }
        if self.duration != ScenarioConfig::new(0).duration {
            command += &format!(" --duration {}", self.duration.as_secs());
        }
        if self.secure {
            command += " --secure";
        }
        if self.wipes {
            command += " --wipes";
        }
        if self.heavy {
            command += " --heavy";
        }
        if self.topic_churn {
            command += " --topic-churn";
        }
        if self.kafka {
            command += " --kafka";
        }
        if self.membership {
            command += " --membership";
        }
        if self.grow_shrink {
            command += " --grow-shrink";
        }
        if self.delete_records {
            command += " --delete-records";
        }
        if self.state_faults {
            command += " --state-faults";
        }
        if self.hibernate {
            command += " --hibernate";
        }
        if self.retention {
            command += " --retention";
        }
        if self.regex {
            command += " --regex";
        }
        if self.offset_delete {
            command += " --offset-delete";
        }
        if let Some(files) = self.open_file_budget {
            command += &format!(" --open-file-budget {files}");
        }
        if self.sleeping_leader_cut {
            command += " --sleeping-leader-cut";
        }
        if self.late_retry {
            command += " --late-retry";
        }
        if self.replication != REPLICATION {
            command += &format!(" --replication {}", self.replication);
        }
        for bug in &self.planted_bugs {
            command += &format!(" --planted-bug {}", bug.name());
        }
        for bug in &self.client_planted_bugs {
            command += &format!(" --planted-bug {}", bug.name());
        }
        if let Some(path) = self.faults.as_ref().and_then(|faults| faults.path.as_ref()) {
            command += &format!(" --plan {}", path.display());
        }
        command
    }
}
