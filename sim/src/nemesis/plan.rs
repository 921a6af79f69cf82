//! What a run's nemesis may inject, as the seed draws it (swarm testing): the fault kinds of
//! the run's scenario, each on or off with a weight, the quiet times and windows between and of
//! faults, the initial clock offsets, BUGGIFY, and which one node F-S3 may corrupt. Pure: the
//! plan is a function of the scenario, the node count and the rng.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::config::Scenario;

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
    /// F-P1 on the node that coordinates a group (leads its `__consumer_offsets` partition).
    CoordinatorKill,
    /// F-N1 on a group's coordinator.
    CoordinatorIsolate,
    /// F-C1 on a group's coordinator, forward by more than a session: its members expire.
    CoordinatorClockStep,
    /// F-P7/F-M3: stop a node, delete its whole data directory, restart it as a new
    /// incarnation. Only in plans that ask for it (`ScenarioConfig::wipes`).
    Wipe,
    /// F-M1: reassign a partition of the checked topic (grow, shrink refused, swap, move to a
    /// node that is down), sometimes with a kill or isolation. Only in plans that ask for it
    /// (`ScenarioConfig::membership`).
    Reassign,
    /// F-M2: a storm of leader transfers, sometimes with a kill or isolation. Only with
    /// `ScenarioConfig::membership`.
    LeaderStorm,
    /// F-S3 on one copy of a hard- or conf-state file (bits of its record flipped), any node.
    /// This and the four below only in plans that ask for them (`ScenarioConfig::state_faults`;
    /// the node is down while its file is damaged, see `fault::FaultTargets::damage_state_file`).
    StateCopyFlip,
    /// F-S2: one copy torn, its record garbage from some byte on (a save cut by power loss).
    StateCopyTorn,
    /// F-S4: the file cut short inside its second copy (a short write, a partial restore).
    StateCopyShort,
    /// F-S7: one copy holds an older record again (a write the disk lost after its fsync).
    StateCopyStale,
    /// F-S3 on both copies of one file, on the one node F-S3 may corrupt, once per run: the
    /// group does not open there (quarantine, R8 c).
    StateCopiesBoth,
    /// F-M4 (nearest checklist IDs: F-M1 add/remove a replica, F-M3): the cluster grows and
    /// shrinks, one step per draw: a brand-new node joins (the server's `--join` path), the
    /// controller voters take it in (sometimes with a rebalance), then a node (a bootstrap
    /// member or the joined one) is decommissioned, sometimes with a kill or an isolation. Only
    /// with `ScenarioConfig::grow_shrink`.
    GrowShrink,
    /// F-S7 on a start-state file (`odradek_log::StartStateFile`): the renames of its latest
    /// saves lost (a directory update the disk dropped after its sync), so it holds an older
    /// record again, or none. On the one node F-S3 may corrupt, once per run (with the one
    /// below); only in plans with both `state_faults` and `retention` (trims write the file).
    /// Opening finds a record that no longer reaches the log start and refuses (the replica is
    /// set aside and repaired), or one that still does and goes on from it.
    StartStateLost,
    /// F-S2, F-S3 or F-S4 on a start-state file: torn from some byte on, two bits flipped, or
    /// cut short (one copy: opening refuses it, the replica is repaired). As above.
    StartStateDamaged,
}

impl FaultKind {
    pub const ALL: [FaultKind; 35] = [
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
        FaultKind::CoordinatorKill,
        FaultKind::CoordinatorIsolate,
        FaultKind::CoordinatorClockStep,
        FaultKind::Wipe,
        FaultKind::Reassign,
        FaultKind::LeaderStorm,
        FaultKind::StateCopyFlip,
        FaultKind::StateCopyTorn,
        FaultKind::StateCopyShort,
        FaultKind::StateCopyStale,
        FaultKind::StateCopiesBoth,
        FaultKind::GrowShrink,
        FaultKind::StartStateLost,
        FaultKind::StartStateDamaged,
    ];

    /// The faults on start-state files (`ScenarioConfig::state_faults` with `retention`).
    pub const START_STATE: [FaultKind; 2] = [FaultKind::StartStateLost, FaultKind::StartStateDamaged];

    /// The faults on the hard- and conf-state files (`ScenarioConfig::state_faults`).
    pub const STATE_FILE: [FaultKind; 5] = [
        FaultKind::StateCopyFlip,
        FaultKind::StateCopyTorn,
        FaultKind::StateCopyShort,
        FaultKind::StateCopyStale,
        FaultKind::StateCopiesBoth,
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
            FaultKind::CoordinatorKill => "F-P1 kill of a group coordinator",
            FaultKind::CoordinatorIsolate => "F-N1 isolate a group coordinator",
            FaultKind::CoordinatorClockStep => "F-C1 clock step on a group coordinator",
            FaultKind::Wipe => "F-P7 wipe and restart as a new incarnation",
            FaultKind::Reassign => "F-M1 reassign a partition",
            FaultKind::LeaderStorm => "F-M2 leader-transfer storm",
            FaultKind::StateCopyFlip => "F-S3 bit flips in one copy of a state file",
            FaultKind::StateCopyTorn => "F-S2 torn copy of a state file",
            FaultKind::StateCopyShort => "F-S4 state file cut short in its second copy",
            FaultKind::StateCopyStale => "F-S7 stale copy of a state file",
            FaultKind::StateCopiesBoth => "F-S3 bit flips in both copies of a state file",
            FaultKind::GrowShrink => "F-M4 grow or shrink the cluster",
            FaultKind::StartStateLost => "F-S7 start-state renames lost",
            FaultKind::StartStateDamaged => "F-S2/F-S3/F-S4 start-state file damaged",
        }
    }

    /// Whether the fault damages a hard- or conf-state file.
    pub fn on_state_file(self) -> bool {
        FaultKind::STATE_FILE.contains(&self)
    }

    /// Whether the fault damages a start-state file.
    pub fn on_start_state(self) -> bool {
        FaultKind::START_STATE.contains(&self)
    }

    /// Whether the fault hits a group's coordinator (the nemesis looks it up first).
    pub fn at_coordinator(self) -> bool {
        matches!(self, FaultKind::CoordinatorKill | FaultKind::CoordinatorIsolate | FaultKind::CoordinatorClockStep)
    }

    fn scenarios(self) -> &'static [Scenario] {
        use Scenario::*;
        match self {
            FaultKind::Kill | FaultKind::Pause | FaultKind::PowerLoss | FaultKind::PowerLossAll => &[Swarm, Crash, Groups],
            FaultKind::PauseKill => &[Swarm, Crash, Groups],
            FaultKind::Isolate
            | FaultKind::Split
            | FaultKind::OneWay
            | FaultKind::Latency
            | FaultKind::ClientCut
            | FaultKind::Packets
            | FaultKind::ResetResponse => &[Swarm, Network, Groups],
            FaultKind::Ring | FaultKind::PartKill | FaultKind::HoldRequest => &[Swarm, Network, Groups],
            FaultKind::SlowDisk => &[Swarm, Disk, Groups],
            FaultKind::BitFlip | FaultKind::ReadError | FaultKind::FsyncError | FaultKind::DiskFull => &[Swarm, Disk, Groups],
            FaultKind::ClockStep => &[Swarm, Groups],
            FaultKind::CoordinatorKill | FaultKind::CoordinatorIsolate | FaultKind::CoordinatorClockStep => &[Groups],
            // Never drawn with the others: the plan adds it when asked (`draw_plan`'s `wipes`),
            // so the draws of every existing seed stay as they were.
            FaultKind::Wipe | FaultKind::Reassign | FaultKind::LeaderStorm | FaultKind::GrowShrink => &[],
            FaultKind::StateCopyFlip
            | FaultKind::StateCopyTorn
            | FaultKind::StateCopyShort
            | FaultKind::StateCopyStale
            | FaultKind::StateCopiesBoth
            | FaultKind::StartStateLost
            | FaultKind::StartStateDamaged => &[],
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
    pub clock_offsets_ms: BTreeMap<u64, i64>,
    pub buggify: bool,
    /// The only node F-S3 may corrupt.
    pub corruptible_node: u64,
    /// Topic segment size when F-S3 is on: small, so sealed segments (its targets) exist.
    pub segment_bytes: Option<u64>,
    /// Plan field `retention`: topic `t`'s short retention and the lags that outlast it.
    pub retention: Option<RetentionPlan>,
}

/// Short retention under lag (plan field `retention`, R12): topic `t`'s settings, and the
/// windows in which one node is isolated (F-N1) while the others' retention deletes what it
/// has not got yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPlan {
    pub segment_bytes: u64,
    /// -1: no size limit (then `retention_ms` is set).
    pub retention_bytes: i64,
    /// -1: no age limit (then `retention_bytes` is set).
    pub retention_ms: i64,
    /// (start after the safety phase began, node, window), in ms; one at a time, each over
    /// before the phase ends.
    pub lags: Vec<(u64, u64, u64)>,
}

impl RetentionPlan {
    /// Draws the settings and up to three lags (4–7 s each) within `duration_ms` of safety phase.
    fn draw(nodes: usize, duration_ms: u64, rng: &mut SmallRng) -> RetentionPlan {
        let segment_bytes = rng.gen_range(1..=4) * 1024;
        let (retention_bytes, retention_ms) = match rng.gen_range(0..3) {
            0 => (rng.gen_range(2..=8) * 1024, -1),
            1 => (-1, rng.gen_range(2_000..=8_000)),
            _ => (rng.gen_range(2..=8) * 1024, rng.gen_range(2_000..=8_000)),
        };
        let mut lags = Vec::new();
        let mut at = rng.gen_range(1_000..=3_000);
        for _ in 0..3 {
            // A node cut off for long finds its peers' dials backed off (up to 16 s): the last
            // lag ends 5 s before the heal, so that it is back before R7 and R12 b judge.
            let window = rng.gen_range(4_000..=7_000);
            if at + window + 5_000 > duration_ms {
                break;
            }
            lags.push((at, rng.gen_range(1..=nodes as u64), window));
            at += window + rng.gen_range(1_000..=3_000);
        }
        RetentionPlan { segment_bytes, retention_bytes, retention_ms, lags }
    }
}

impl FaultPlan {
    pub fn describe(&self) -> String {
        let kinds: Vec<String> = self.kinds.iter().map(|(kind, weight)| format!("{}×{weight}", kind.label())).collect();
        format!(
            "faults [{}], quiet {:?} ms, windows {:?} ms, clock offsets {:?}, buggify {}{}",
            kinds.join(", "),
            self.quiet_ms,
            self.window_ms,
            self.clock_offsets_ms,
            if self.buggify { "on" } else { "off" },
            self.segment_bytes.map(|bytes| format!(", segments of {bytes} bytes")).unwrap_or_default()
        ) + &self.retention.as_ref().map(|r| format!(", {r:?}")).unwrap_or_default()
    }
}

/// What a run adds to its scenario's fault kinds (plan fields, each off by default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// F-P7 (`FaultKind::Wipe`).
    pub wipes: bool,
    /// F-M1 and F-M2 (`FaultKind::Reassign`, `FaultKind::LeaderStorm`).
    pub membership: bool,
    /// The faults on hard- and conf-state files ([`FaultKind::STATE_FILE`]).
    pub state_faults: bool,
    /// Short retention under lag ([`RetentionPlan`]), over a safety phase of this many ms.
    pub retention_ms: Option<u64>,
    /// F-M4 (`FaultKind::GrowShrink`).
    pub grow_shrink: bool,
}

/// Draws the run's fault plan (swarm: a random subset of the scenario's kinds, random weights).
/// The `extras` are added after that, each drawn after everything before it (so a run without
/// one keeps the draws it had before it existed): F-P7, then F-M1 and F-M2, then the faults on
/// state files, then F-M4.
pub fn draw_plan(scenario: Scenario, nodes: usize, extras: Extras, rng: &mut SmallRng) -> FaultPlan {
    let Extras { wipes, membership, state_faults, retention_ms, grow_shrink } = extras;
    let mut plan = FaultPlan {
        quiet_ms: (rng.gen_range(200..800), rng.gen_range(1_000..3_000)),
        window_ms: (rng.gen_range(200..600), rng.gen_range(1_000..3_000)),
        corruptible_node: rng.gen_range(1..=nodes as u64),
        ..FaultPlan::default()
    };
    if scenario == Scenario::Calm {
        // Calm has no faults, but it may still retain briefly (the lags are its only faults).
        plan.retention = retention_ms.map(|duration_ms| RetentionPlan::draw(nodes, duration_ms, rng));
        return plan;
    }
    let candidates: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| kind.scenarios().contains(&scenario))
        .filter(|kind| *kind != FaultKind::Ring || nodes >= 5)
        .collect();
    for kind in &candidates {
        // Each kind is on with probability 1/2 (2/3 outside the swarm), weighted 1..=4; the
        // faults aimed at a coordinator are always on in the groups scenario, weighted 3..=6.
        if kind.at_coordinator() {
            plan.kinds.push((*kind, rng.gen_range(3..=6)));
            continue;
        }
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
            plan.clock_offsets_ms = (1..=nodes as u64).map(|node| (node, rng.gen_range(-300_000..=300_000))).collect();
        }
        plan.buggify = rng.gen_bool(0.3);
    }
    if plan.kinds.iter().any(|(kind, _)| *kind == FaultKind::BitFlip) {
        plan.segment_bytes = Some(rng.gen_range(4..=32) * 1024);
    }
    if wipes {
        plan.kinds.push((FaultKind::Wipe, rng.gen_range(2..=6)));
    }
    if membership {
        plan.kinds.push((FaultKind::Reassign, rng.gen_range(5..=10)));
        plan.kinds.push((FaultKind::LeaderStorm, rng.gen_range(2..=4)));
    }
    if state_faults {
        // Single copies often (any node, any time: the other copy holds the state); both copies
        // at most once per run, on the one node F-S3 may corrupt (the nemesis sees to it).
        for kind in FaultKind::STATE_FILE {
            let weight = if kind == FaultKind::StateCopiesBoth { 1 } else { rng.gen_range(2..=5) };
            plan.kinds.push((kind, weight));
        }
    }
    if grow_shrink {
        // Three steps (join, grow the controller voters, decommission): often enough to reach
        // them all in a safety phase.
        plan.kinds.push((FaultKind::GrowShrink, rng.gen_range(6..=12)));
    }
    plan.retention = retention_ms.map(|duration_ms| RetentionPlan::draw(nodes, duration_ms, rng));
    if state_faults && plan.retention.is_some() {
        // Drawn last, so that plans without them keep their draws. Start-state files exist
        // only where trims ran, so only with short retention; at most one of these per run, on
        // the node F-S3 may corrupt (the nemesis sees to it).
        for kind in FaultKind::START_STATE {
            plan.kinds.push((kind, rng.gen_range(2..=4)));
        }
    }
    plan
}
