//! One fault: drawn ([`FaultTargets::draw`], every random choice made up front), injected
//! ([`FaultTargets::inject`], which returns the [`Healing`] that undoes it) and healed, inside one
//! window ([`FaultTargets::run_window`]): the history records its start and its stop, the
//! timeline says what it did.
//!
//! Invariant: what a fault switches on is switched off in its own window (network cuts and
//! latency, disk misbehaviour, paused nodes, nodes it took down), so faults never overlap; what
//! it leaves behind by design stays (flipped bits, a stepped clock). Nodes that stop by
//! themselves are the nemesis loop's business (it restarts them between windows).
//!
//! The order of the random draws, the sleeps and the history and timeline entries is the
//! schedule of a run: it is what a seed replays, and changing it changes every trace.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId as SimNodeId;
use odradek_jepsen::history;
use odradek_jepsen::partitions::{cut_between, majorities_ring};
use odradek_log::{decode_entry, CrashMode, LatencyConfig, SimDisk, COPY_STRIDE_BYTES, HARD_STATE_SLOT_BYTES, SEGMENT_HEADER_BYTES};
use odradek_server::faults::{FaultRates, TransportFaults};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

pub use membership::Membership;

use super::plan::FaultKind;
use crate::cluster::SimCluster;
use crate::config::DISK_RESERVE_BYTES;

mod grow_shrink;
mod membership;
pub mod probe;

/// How long the nemesis waits to learn which node coordinates a group.
const COORDINATOR_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// F-C1 on a coordinator: how far forward its clock steps (ms), past the groups' session.
const COORDINATOR_CLOCK_STEP_MS: (i64, i64) = (4_000, 60_000);

/// F-S6: the chance that a read of the faulty disk fails.
const READ_ERROR_PROBABILITY: f64 = 0.02;

/// One fault with every random choice drawn.
pub enum Fault {
    /// F-P1 (a process crash) or F-P3 (power loss) of one node.
    Crash { node: u64, mode: CrashMode },
    /// F-P4: every node loses power at once.
    PowerLossAll,
    /// F-P7/F-M3: the node is killed, its data directory deleted; restarted when the window ends.
    Wipe { node: u64 },
    /// F-P2: a minority is paused.
    Pause { nodes: Vec<u64> },
    /// F-N1: one node reaches no one.
    Isolate { node: u64 },
    /// F-N2, F-N3: these directed links are cut (a split or a majorities ring).
    Partition { links: BTreeSet<(u64, u64)>, description: String },
    /// F-N5: one node cannot send (`outbound`) or cannot receive.
    OneWay { node: u64, outbound: bool },
    /// F-N6: every message takes 1 to `latency_ms_max` ms.
    Latency { latency_ms_max: u64 },
    /// F-S3: bits flipped in one file of a node's disk, written while the node was down (see
    /// [`FaultTargets::flip_bits`]); the window keeps it down.
    BitFlip { node: u64, path: PathBuf, bits: Vec<u64> },
    /// F-S2, F-S3, F-S4, F-S7 on a hard- or conf-state file, written while the node was down
    /// (see [`FaultTargets::damage_state_file`]); the window keeps it down.
    StateFile { node: u64, path: PathBuf, damage: StateDamage },
    /// F-S6, F-S8, F-S9 slow disk: one node's disk misbehaves; with `power_loss_after`, the
    /// node also loses power that long into the fault.
    Disk { node: u64, injury: DiskInjury, power_loss_after: Option<Duration> },
    /// F-S9 disk full: the node's disk has `room_bytes` left above what it uses now.
    DiskFull { node: u64, room_bytes: u64 },
    /// F-N6: raft messages between the nodes are dropped, duplicated and delayed.
    Packets { rates: FaultRates },
    /// F-N8: the next produce request any node reads waits `hold` before it is handled.
    HoldRequest { hold: Duration },
    /// F-N9: the next produce a node completes gets a connection reset instead of its answer.
    ResetResponse,
    /// F-N9: the client node is cut off for `cut` (not the drawn window).
    ClientCut { cut: Duration },
    /// F-P5 (`pauses`) and F-P6: hold the minority `a`; power loss of `c`, hold `b` (the rest),
    /// release `a`; restart `c`; release `b`. Holding is a pause or an isolation.
    Choreography { pauses: bool, a: Vec<u64>, c: u64, b: Vec<u64> },
    /// F-C1: one node's wall clock jumps by `step_ms`.
    ClockStep { node: u64, step_ms: i64 },
    /// F-M1 (a move) or F-M2 (a leader-transfer storm), module `membership`.
    Membership(Box<Membership>),
    /// F-M4: the cluster's next grow or shrink step, module `grow_shrink`.
    GrowShrink(Box<grow_shrink::GrowShrinkFault>),
}

/// What a fault did to a state file (two copies of one record, `COPY_STRIDE_BYTES` apart).
pub enum StateDamage {
    /// F-S3: these bits of one copy's record flipped.
    Flip { copy: u64, bits: Vec<u64> },
    /// F-S2: one copy's record is garbage from `from_byte` (within the copy) on.
    Torn { copy: u64, from_byte: u64 },
    /// F-S4: the file cut to `len_bytes`, inside its second copy.
    Short { len_bytes: u64 },
    /// F-S7: one copy holds the record of sequence `sequence_old` again (the file's newest is
    /// `sequence`).
    Stale { copy: u64, sequence_old: u64, sequence: u64 },
    /// F-S3 in both copies: these bits flipped, one in each copy's record.
    Both { bits: Vec<u64> },
    /// F-S7 on a start-state file: back to the record as of `as_of_old` (`None`: no file), the
    /// renames since lost (its newest is as of `as_of`).
    StartLost { as_of_old: Option<u64>, as_of: u64 },
    /// F-S3 on a start-state file: these bits flipped.
    StartFlip { bits: Vec<u64> },
    /// F-S2 on a start-state file: garbage from `from_byte` on.
    StartTorn { from_byte: u64 },
    /// F-S4 on a start-state file: cut to `len_bytes`.
    StartShort { len_bytes: u64 },
}

impl std::fmt::Display for StateDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDamage::Flip { copy, bits } => write!(f, "one copy (copy {copy}) flipped at bits {bits:?}"),
            StateDamage::Torn { copy, from_byte } => write!(f, "copy {copy}: torn from its byte {from_byte} on"),
            StateDamage::Short { len_bytes } => write!(f, "cut to {len_bytes} bytes"),
            StateDamage::Stale { copy, sequence_old, sequence } => {
                write!(f, "copy {copy}: back to sequence {sequence_old} (the newest is {sequence})")
            }
            StateDamage::Both { bits } => write!(f, "both copies flipped at bits {bits:?}"),
            StateDamage::StartLost { as_of_old: Some(old), as_of } => {
                write!(f, "start state lost: back to the record as of {old} (the newest is as of {as_of})")
            }
            StateDamage::StartLost { as_of_old: None, as_of } => write!(f, "start state lost: no file (the newest is as of {as_of})"),
            StateDamage::StartFlip { bits } => write!(f, "start state damaged: flipped at bits {bits:?}"),
            StateDamage::StartTorn { from_byte } => write!(f, "start state damaged: torn from its byte {from_byte} on"),
            StateDamage::StartShort { len_bytes } => write!(f, "start state damaged: cut to {len_bytes} bytes"),
        }
    }
}

/// How a faulty disk misbehaves.
pub enum DiskInjury {
    /// F-S6: reads fail with [`READ_ERROR_PROBABILITY`].
    ReadErrors,
    /// F-S8: the next this many fsyncs fail.
    FailedSyncs(u32),
    /// F-S9: every operation is slow.
    Slow(LatencyConfig),
}

/// What undoes an injected fault.
enum Healing {
    /// Restart these nodes (they were killed or lost power).
    Restart(Vec<u64>),
    /// Resume these paused nodes.
    Resume(Vec<u64>),
    /// Reconnect these simulated machines (nodes or the client).
    Unclog(Vec<SimNodeId>),
    /// Reconnect these directed links.
    Relink(BTreeSet<(u64, u64)>),
    OneWay {
        node: u64,
        outbound: bool,
    },
    Latency,
    /// Heal the node's disk, after restarting the node if the fault took its power.
    Disk {
        node: u64,
        restart: bool,
    },
    DiskFull {
        node: u64,
    },
    /// Stop the message faults; the timeline gets what they did since `counts_before`.
    Packets {
        rates: FaultRates,
        counts_before: [u64; 3],
    },
    /// Disarm the hold; a request caught by it is still held for `hold` after the window.
    HoldRequest {
        hold: Duration,
    },
    ResetResponse,
    /// A clock step stays: there is nothing to undo.
    Nothing,
}

/// Files' images by (node, path), as remembered for F-S7.
type FileImages = BTreeMap<(u64, PathBuf), Vec<u8>>;
/// One file's path and bytes.
type FileImage = (PathBuf, Vec<u8>);

/// What faults act on: the simulator's runtime and network, the cluster, its server machines
/// and the client machine.
pub struct FaultTargets<'a> {
    runtime: &'a Handle,
    cluster: &'a SimCluster,
    ids: &'a BTreeMap<u64, SimNodeId>,
    client: SimNodeId,
    /// The client machine, where a group's coordinator is looked up.
    client_node: &'a NodeHandle,
    net: Arc<NetSim>,
    latency_default: Range<Duration>,
    /// The one node F-S3 may corrupt, when the plan has it: no move takes a replica there (a
    /// node whose metadata log rotted never learns of the move, beyond the fault model).
    corruptible: Option<u64>,
    /// F-S7's older records: every node's state files whose copies agreed, as they were at the
    /// start of the round before the last ([`FaultTargets::remember_state_files`]), and at the
    /// last.
    state_files_older: Mutex<FileImages>,
    state_files_newer: Mutex<FileImages>,
    /// The same for start-state files ([`FaultTargets::remember_start_states`]).
    start_states_older: Mutex<FileImages>,
    start_states_newer: Mutex<FileImages>,
}

impl<'a> FaultTargets<'a> {
    pub fn new(runtime: &'a Handle, cluster: &'a SimCluster, ids: &'a BTreeMap<u64, SimNodeId>, client_node: &'a NodeHandle) -> Self {
        assert_eq!(ids.keys().copied().collect::<Vec<u64>>(), cluster.machines(), "a simulated machine per node");
        FaultTargets {
            runtime,
            cluster,
            ids,
            client: client_node.id(),
            client_node,
            net: NetSim::current(),
            latency_default: madsim::net::Config::default().send_latency,
            corruptible: None,
            state_files_older: Mutex::new(BTreeMap::new()),
            state_files_newer: Mutex::new(BTreeMap::new()),
            start_states_older: Mutex::new(BTreeMap::new()),
            start_states_newer: Mutex::new(BTreeMap::new()),
        }
    }

    /// Names the node F-S3 may corrupt (module `membership` moves no replica there).
    pub fn with_corruptible(self, corruptible: Option<u64>) -> Self {
        FaultTargets { corruptible, ..self }
    }

    /// The node coordinating `group` now, asked from the client machine (DescribeGroups, within
    /// [`COORDINATOR_LOOKUP_TIMEOUT`]); `None` if no answer came.
    pub async fn coordinator_of(&self, group: &str) -> Option<u64> {
        let bootstrap = self.cluster.bootstrap();
        let group = group.to_string();
        let lookup = self.client_node.spawn(async move {
            let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
            let admin = odradek_client::Admin::new(&addresses).ok()?;
            let description = tokio::time::timeout(COORDINATOR_LOOKUP_TIMEOUT, admin.describe_group(&group)).await.ok()?.ok()?;
            Some(description.coordinator)
        });
        lookup.await.expect("lookup task").filter(|node| self.cluster.nodes.contains(node))
    }

    pub fn cluster(&self) -> &SimCluster {
        self.cluster
    }

    /// Draws a fault of `kind` (`node`: the node it hits when it hits one). Not for F-S3 nor the
    /// faults on state files, whose choices depend on the disk ([`FaultTargets::flip_bits`],
    /// [`FaultTargets::damage_state_file`]).
    pub fn draw(&self, kind: FaultKind, node: u64, rng: &mut SmallRng) -> Fault {
        let nodes = &self.cluster.nodes;
        match kind {
            FaultKind::Kill | FaultKind::CoordinatorKill => Fault::Crash { node, mode: CrashMode::Process },
            FaultKind::CoordinatorIsolate => Fault::Isolate { node },
            // Forward: the coordinator's sessions and rebalance deadlines pass at once.
            FaultKind::CoordinatorClockStep => {
                Fault::ClockStep { node, step_ms: rng.gen_range(COORDINATOR_CLOCK_STEP_MS.0..=COORDINATOR_CLOCK_STEP_MS.1) }
            }
            FaultKind::PowerLoss => Fault::Crash { node, mode: CrashMode::PowerLoss },
            FaultKind::PowerLossAll => Fault::PowerLossAll,
            FaultKind::Wipe => Fault::Wipe { node },
            FaultKind::Pause => Fault::Pause { nodes: minority(nodes, rng) },
            FaultKind::Isolate => Fault::Isolate { node },
            FaultKind::Split | FaultKind::Ring => {
                if kind == FaultKind::Ring && nodes.len() >= 5 {
                    let mut ring = nodes.clone();
                    ring.shuffle(rng);
                    Fault::Partition { links: majorities_ring(&ring), description: format!("ring {ring:?}") }
                } else {
                    let small = minority(nodes, rng);
                    let rest: Vec<u64> = nodes.iter().copied().filter(|n| !small.contains(n)).collect();
                    Fault::Partition { links: cut_between(&small, &rest), description: format!("{small:?} | {rest:?}") }
                }
            }
            FaultKind::OneWay => Fault::OneWay { node, outbound: rng.gen_bool(0.5) },
            FaultKind::Latency => Fault::Latency { latency_ms_max: rng.gen_range(5..100) },
            FaultKind::BitFlip => unreachable!("F-S3 is drawn by flip_bits"),
            FaultKind::StateCopyFlip
            | FaultKind::StateCopyTorn
            | FaultKind::StateCopyShort
            | FaultKind::StateCopyStale
            | FaultKind::StateCopiesBoth => unreachable!("faults on state files are drawn by damage_state_file"),
            FaultKind::StartStateLost | FaultKind::StartStateDamaged => {
                unreachable!("faults on start-state files are drawn by damage_start_state")
            }
            FaultKind::ReadError | FaultKind::FsyncError | FaultKind::SlowDisk => draw_disk(kind, node, rng),
            // ENOSPC on one node: 0..2x the free-space reserve left above what it uses now.
            // Below the reserve the node refuses produce (DISK_FULL); a write that finds no room
            // stops the node, as any failed write does (restarted like a supervisor would); the
            // other replicas keep the partitions available.
            FaultKind::DiskFull => Fault::DiskFull { node, room_bytes: rng.gen_range(0..2 * DISK_RESERVE_BYTES) },
            // Every raft message between the nodes may be lost, replayed later or held back
            // (reordered), through the consensus transport's fault layer.
            FaultKind::Packets => Fault::Packets {
                rates: FaultRates {
                    drop: rng.gen_range(0.02..0.3),
                    duplicate: rng.gen_range(0.02..0.2),
                    delay: rng.gen_range(0.02..0.3),
                    delay_max: Duration::from_millis(rng.gen_range(10..500)),
                },
            },
            // Longer than the client's request timeout (5 s): the request is handled after the
            // client retried it, as a zombie.
            FaultKind::HoldRequest => Fault::HoldRequest { hold: Duration::from_millis(rng.gen_range(5_500..9_000)) },
            // The client cannot know whether the write happened (indefinite), and an idempotent
            // producer's retry must not duplicate it (L2).
            FaultKind::ResetResponse => Fault::ResetResponse,
            // Longer than the clients' request timeout (5 s): requests and answers in flight are
            // lost, the clients time out and retry on new connections (indefinite outcomes,
            // idempotent retries).
            FaultKind::ClientCut => Fault::ClientCut { cut: Duration::from_millis(rng.gen_range(5_500..7_000)) },
            // The NATS choreographies; the survivors must form the next majority with the node
            // that lost power.
            FaultKind::PauseKill | FaultKind::PartKill => {
                let mut order = nodes.clone();
                order.shuffle(rng);
                let minority = (nodes.len() - 1) / 2;
                let (a, c, b) = (order[..minority].to_vec(), order[minority], order[minority + 1..].to_vec());
                Fault::Choreography { pauses: kind == FaultKind::PauseKill, a, c, b }
            }
            FaultKind::ClockStep => Fault::ClockStep { node, step_ms: rng.gen_range(-120_000..=120_000i64) },
            FaultKind::Reassign | FaultKind::LeaderStorm => {
                membership::draw(kind == FaultKind::LeaderStorm, nodes, self.cluster.load.partitions, rng).into()
            }
            FaultKind::GrowShrink => grow_shrink::draw(nodes, rng).into(),
        }
    }

    /// F-S3, drawn and written before its window opens (the record names the bits): takes
    /// `node` down, flips bits in one of its [`corruptible_spots`] and marks it corrupted.
    /// `None` (the node restarted) when its disk has no spot to corrupt.
    pub fn flip_bits(&self, node: u64, rng: &mut SmallRng) -> Option<Fault> {
        let disk = &self.cluster.disks[&node];
        self.crash(node, CrashMode::Process);
        let spots = corruptible_spots(disk);
        let Some((path, bytes)) = spots.choose(rng).cloned() else {
            self.runtime.restart(self.ids[&node]);
            return None;
        };
        let bits = disk.flip_random_bits_in(&path, bytes, 2);
        self.cluster.corrupted.lock().expect("corrupted lock").insert(node);
        Some(Fault::BitFlip { node, path, bits })
    }

    /// The draws of [`FaultTargets::flip_bits`] without the flip (a replay that leaves the
    /// round out keeps the nemesis's random draws in step); whether a spot was there to flip.
    pub fn draw_flip_spot(&self, node: u64, rng: &mut SmallRng) -> bool {
        corruptible_spots(&self.cluster.disks[&node]).choose(rng).is_some()
    }

    /// Remembers every node's state files as they are now (those whose two copies agree); the
    /// images of the call before become the ones F-S7 brings back. Reads only: nothing the run
    /// does changes.
    pub fn remember_state_files(&self) {
        self.remember(state_files_settled, &self.state_files_newer, &self.state_files_older);
    }

    /// Every node's files that `settled` picks, as they are now, into `newer`; `newer`'s
    /// images move to `older`.
    fn remember(&self, settled: fn(&SimDisk) -> Vec<FileImage>, newer: &Mutex<FileImages>, older: &Mutex<FileImages>) {
        let now: FileImages = self
            .cluster
            .disks
            .iter()
            .flat_map(|(&node, disk)| settled(disk).into_iter().map(move |(path, bytes)| ((node, path), bytes)))
            .collect();
        let before = std::mem::replace(&mut *newer.lock().expect("file images lock"), now);
        *older.lock().expect("file images lock") = before;
    }

    /// A fault of `kind` (one of `FaultKind::STATE_FILE`) on one of `node`'s hard- or
    /// conf-state files whose two copies agree (`state_files_settled`): drawn, and with `apply`
    /// written while the node is down (it is killed first and stays down for the window; both
    /// copies damaged marks it corrupted). F-S7 takes a copy back to a record remembered
    /// earlier, of a lower sequence. `None` when the node has no such file (with `apply`, the
    /// node is restarted). Without `apply` the same random draws are made and nothing changes
    /// (a replay that leaves the round out).
    ///
    /// One damaged copy leaves the other holding the newest record, on any node; the opening
    /// picks it and repairs the damaged one (`odradek_log::MirroredFile`). A file is damaged
    /// only while its copies agree, so no second fault reaches its other copy before a repair.
    pub fn damage_state_file(&self, kind: FaultKind, node: u64, rng: &mut SmallRng, apply: bool) -> Option<Fault> {
        let disk = &self.cluster.disks[&node];
        if apply {
            self.crash(node, CrashMode::Process);
        }
        let older = self.state_files_older.lock().expect("state files lock");
        // Each file with its bytes and, for F-S7, the older record it goes back to.
        let candidates: Vec<_> = state_files_settled(disk)
            .into_iter()
            .filter_map(|(path, bytes)| match kind {
                FaultKind::StateCopyStale => {
                    let old = older.get(&(node, path.clone())).filter(|old| sequence_of(old) < sequence_of(&bytes))?;
                    Some((path, bytes, Some(old)))
                }
                _ => Some((path, bytes, None)),
            })
            .collect();
        let Some((path, bytes, old)) = candidates.choose(rng).cloned() else {
            if apply {
                self.runtime.restart(self.ids[&node]);
            }
            return None;
        };
        let stride = COPY_STRIDE_BYTES;
        let record_bytes = record_bytes_of(&path, &bytes);
        let mut damaged = bytes.clone();
        let mut flip = |bit: u64| damaged[(bit / 8) as usize] ^= 1u8 << (bit % 8);
        let copy = rng.gen_range(0..2u64);
        let damage = match kind {
            FaultKind::StateCopyFlip => {
                let bits: Vec<u64> = (0..2).map(|_| rng.gen_range(copy * stride * 8..(copy * stride + record_bytes) * 8)).collect();
                bits.iter().for_each(|&bit| flip(bit));
                StateDamage::Flip { copy, bits }
            }
            FaultKind::StateCopiesBoth => {
                let bits: Vec<u64> = (0..2).map(|copy| rng.gen_range(copy * stride * 8..(copy * stride + record_bytes) * 8)).collect();
                bits.iter().for_each(|&bit| flip(bit));
                StateDamage::Both { bits }
            }
            FaultKind::StateCopyTorn => {
                let from_byte = rng.gen_range(0..record_bytes);
                for at in copy * stride + from_byte..copy * stride + record_bytes {
                    damaged[at as usize] = rng.gen();
                }
                StateDamage::Torn { copy, from_byte }
            }
            FaultKind::StateCopyShort => {
                let len_bytes = stride + rng.gen_range(0..record_bytes);
                damaged.truncate(len_bytes as usize);
                StateDamage::Short { len_bytes }
            }
            FaultKind::StateCopyStale => {
                let old = old.expect("an older record was found");
                let old_record = &old[..record_bytes_of(&path, old) as usize];
                let at = (copy * stride) as usize;
                if damaged.len() < at + old_record.len() {
                    damaged.resize(at + old_record.len(), 0);
                }
                damaged[at..at + old_record.len()].copy_from_slice(old_record);
                StateDamage::Stale { copy, sequence_old: sequence_of(old), sequence: sequence_of(&bytes) }
            }
            _ => unreachable!("{kind:?} is not a fault on a state file"),
        };
        drop(older);
        if apply {
            disk.rewrite_at_rest(&path, damaged);
            if kind == FaultKind::StateCopiesBoth {
                self.cluster.corrupted.lock().expect("corrupted lock").insert(node);
            }
        }
        Some(Fault::StateFile { node, path, damage })
    }

    /// Remembers every node's start-state files as they are now (synced ones), like
    /// [`FaultTargets::remember_state_files`]: the images of the call before are the ones
    /// `FaultKind::StartStateLost` brings back (a file missing from them is removed). Reads only.
    pub fn remember_start_states(&self) {
        self.remember(start_states_settled, &self.start_states_newer, &self.start_states_older);
    }

    /// A fault of `kind` (one of `FaultKind::START_STATE`) on one of `node`'s start-state files
    /// (`odradek_log::StartStateFile`, one copy), written while the node is down (it is killed
    /// first and stays down for the window), like [`FaultTargets::damage_state_file`]. F-S7
    /// brings back the file as remembered at the round before the last (removing it when it was
    /// not there then): the renames of its latest saves lost; only a file that changed since is
    /// drawn. Otherwise one of F-S2 (torn), F-S3 (two bits flipped), F-S4 (cut short). The node
    /// counts as corrupted: its replica may rightly refuse to open (and is repaired). `None`
    /// when the node has no such file.
    pub fn damage_start_state(&self, kind: FaultKind, node: u64, rng: &mut SmallRng, apply: bool) -> Option<Fault> {
        let disk = &self.cluster.disks[&node];
        if apply {
            self.crash(node, CrashMode::Process);
        }
        let older = self.start_states_older.lock().expect("start states lock");
        let candidates: Vec<(PathBuf, Vec<u8>, Option<Vec<u8>>)> = start_states_settled(disk)
            .into_iter()
            .filter_map(|(path, bytes)| {
                let old = older.get(&(node, path.clone())).cloned();
                let changed = old.as_ref() != Some(&bytes);
                (kind != FaultKind::StartStateLost || changed).then_some((path, bytes, old))
            })
            .collect();
        drop(older);
        let Some((path, bytes, old)) = candidates.choose(rng).cloned() else {
            if apply {
                self.runtime.restart(self.ids[&node]);
            }
            return None;
        };
        let as_of = |bytes: &[u8]| odradek_log::StartState::decode(bytes).map(|state| state.as_of_index).unwrap_or(u64::MAX);
        let (damaged, damage) = match kind {
            FaultKind::StartStateLost => {
                let damage = StateDamage::StartLost { as_of_old: old.as_deref().map(as_of), as_of: as_of(&bytes) };
                (old, damage)
            }
            FaultKind::StartStateDamaged => {
                let mut damaged = bytes.clone();
                let len = bytes.len() as u64;
                let damage = match rng.gen_range(0..3) {
                    0 => {
                        let bits: Vec<u64> = (0..2).map(|_| rng.gen_range(0..len * 8)).collect();
                        for &bit in &bits {
                            damaged[(bit / 8) as usize] ^= 1u8 << (bit % 8);
                        }
                        StateDamage::StartFlip { bits }
                    }
                    1 => {
                        let from_byte = rng.gen_range(0..len);
                        for at in from_byte..len {
                            damaged[at as usize] = rng.gen();
                        }
                        StateDamage::StartTorn { from_byte }
                    }
                    _ => {
                        let len_bytes = rng.gen_range(0..len);
                        damaged.truncate(len_bytes as usize);
                        StateDamage::StartShort { len_bytes }
                    }
                };
                (Some(damaged), damage)
            }
            _ => unreachable!("{kind:?} is not a fault on a start-state file"),
        };
        if apply {
            match damaged {
                Some(bytes) => disk.rewrite_at_rest(&path, bytes),
                None => disk.remove_at_rest(&path),
            }
            self.cluster.corrupted.lock().expect("corrupted lock").insert(node);
        }
        Some(Fault::StateFile { node, path, damage })
    }

    /// One fault's window: its start recorded and told, the fault injected, the window waited
    /// out, the fault healed, its stop recorded.
    pub async fn run_window(&self, kind: FaultKind, fault: Fault, window: Duration) {
        let record = history::Fault { fault: kind.label().to_string(), details: fault.details() };
        self.cluster.history().fault_start(record.clone()).expect("history");
        if let Some(line) = fault.start_line(window) {
            self.cluster.note(format!("{} {line}", kind.label()));
        }
        let healing = self.inject(&fault, window).await;
        if let Some(length) = fault.length(window) {
            tokio::time::sleep(length).await;
        }
        self.heal(healing, kind, window).await;
        self.cluster.history().fault_stop(record).expect("history");
    }

    /// Applies `fault`; returns what undoes it. Most faults take effect at once; a disk fault
    /// that ends in a power loss and the choreographies run their steps here, all but the last
    /// window.
    async fn inject(&self, fault: &Fault, window: Duration) -> Healing {
        match fault {
            Fault::Crash { node, mode } => {
                self.crash(*node, *mode);
                Healing::Restart(vec![*node])
            }
            Fault::Wipe { node } => {
                self.crash(*node, CrashMode::Process);
                self.cluster.wipe(*node);
                Healing::Restart(vec![*node])
            }
            Fault::PowerLossAll => {
                for &node in &self.cluster.nodes {
                    self.crash(node, CrashMode::PowerLoss);
                }
                Healing::Restart(self.cluster.nodes.clone())
            }
            Fault::Pause { nodes } => {
                nodes.iter().for_each(|node| self.runtime.pause(self.ids[node]));
                Healing::Resume(nodes.clone())
            }
            Fault::Isolate { node } => {
                self.net.clog_node(self.ids[node]);
                Healing::Unclog(vec![self.ids[node]])
            }
            Fault::Partition { links, .. } => {
                links.iter().for_each(|&(a, b)| self.net.clog_link(self.ids[&a], self.ids[&b]));
                Healing::Relink(links.clone())
            }
            Fault::OneWay { node, outbound } => {
                if *outbound {
                    self.net.clog_node_out(self.ids[node]);
                } else {
                    self.net.clog_node_in(self.ids[node]);
                }
                Healing::OneWay { node: *node, outbound: *outbound }
            }
            Fault::Latency { latency_ms_max } => {
                let latency = Duration::from_millis(1)..Duration::from_millis(*latency_ms_max);
                self.net.update_config(|config| config.send_latency = latency);
                Healing::Latency
            }
            Fault::BitFlip { node, .. } | Fault::StateFile { node, .. } => Healing::Restart(vec![*node]),
            Fault::Disk { node, injury, power_loss_after } => self.injure_disk(*node, injury, *power_loss_after).await,
            Fault::DiskFull { node, room_bytes } => {
                let disk = &self.cluster.disks[node];
                disk.set_capacity_bytes(Some(disk.used_bytes() + room_bytes));
                Healing::DiskFull { node: *node }
            }
            Fault::Packets { rates } => {
                let layer = self.peer_messages();
                let counts_before = packet_counts(layer);
                layer.set(*rates);
                Healing::Packets { rates: *rates, counts_before }
            }
            Fault::HoldRequest { hold } => {
                self.cluster.fault_hooks.request_hold.as_ref().expect("the simulation sets it").arm(*hold);
                Healing::HoldRequest { hold: *hold }
            }
            Fault::ResetResponse => {
                self.cluster.fault_hooks.response_cut.as_ref().expect("the simulation sets it").arm(());
                Healing::ResetResponse
            }
            Fault::ClientCut { .. } => {
                self.net.clog_node(self.client);
                Healing::Unclog(vec![self.client])
            }
            Fault::Choreography { pauses, a, c, b } => self.choreograph(*pauses, a, *c, b, window).await,
            Fault::ClockStep { node, step_ms } => {
                *self.cluster.clock_offsets_ms.lock().expect("clock lock").entry(*node).or_insert(0) += step_ms;
                Healing::Nothing
            }
            Fault::Membership(membership) => self.inject_membership(membership, window).await,
            Fault::GrowShrink(fault) => self.inject_grow_shrink(fault, window).await,
        }
    }

    /// F-S6, F-S8, F-S9 slow disk on `node`, and the power loss `power_loss_after` into it.
    async fn injure_disk(&self, node: u64, injury: &DiskInjury, power_loss_after: Option<Duration>) -> Healing {
        let disk = &self.cluster.disks[&node];
        match injury {
            DiskInjury::ReadErrors => disk.set_read_error_probability(READ_ERROR_PROBABILITY),
            DiskInjury::FailedSyncs(count) => disk.fail_next_syncs(*count),
            DiskInjury::Slow(latency) => disk.set_latency(*latency),
        }
        if let Some(after) = power_loss_after {
            tokio::time::sleep(after).await;
            self.cluster.note(format!("node {node} loses power {after:?} into the disk fault"));
            self.crash(node, CrashMode::PowerLoss);
        }
        Healing::Disk { node, restart: power_loss_after.is_some() }
    }

    /// The F-P5 / F-P6 steps but the last: hold `a`; a window later power loss of `c`, hold `b`,
    /// release `a`; half a window later restart `c`. What is left to heal: release `b`.
    async fn choreograph(&self, pauses: bool, a: &[u64], c: u64, b: &[u64], window: Duration) -> Healing {
        self.hold(pauses, a);
        tokio::time::sleep(window).await;
        self.crash(c, CrashMode::PowerLoss);
        self.hold(pauses, b);
        self.release(pauses, a);
        tokio::time::sleep(window / 2).await;
        self.runtime.restart(self.ids[&c]);
        if pauses {
            Healing::Resume(b.to_vec())
        } else {
            Healing::Unclog(b.iter().map(|node| self.ids[node]).collect())
        }
    }

    /// Undoes an injected fault of `kind` whose window was `window`.
    async fn heal(&self, healing: Healing, kind: FaultKind, window: Duration) {
        match healing {
            Healing::Restart(nodes) => nodes.iter().for_each(|node| self.runtime.restart(self.ids[node])),
            Healing::Resume(nodes) => nodes.iter().for_each(|node| self.runtime.resume(self.ids[node])),
            Healing::Unclog(machines) => machines.into_iter().for_each(|machine| self.net.unclog_node(machine)),
            Healing::Relink(links) => links.iter().for_each(|&(a, b)| self.net.unclog_link(self.ids[&a], self.ids[&b])),
            Healing::OneWay { node, outbound } => {
                if outbound {
                    self.net.unclog_node_out(self.ids[&node]);
                } else {
                    self.net.unclog_node_in(self.ids[&node]);
                }
            }
            Healing::Latency => self.net.update_config(|config| config.send_latency = self.latency_default.clone()),
            Healing::Disk { node, restart } => {
                if restart {
                    self.runtime.restart(self.ids[&node]);
                }
                heal_disk(&self.cluster.disks[&node]);
            }
            Healing::DiskFull { node } => self.cluster.disks[&node].set_capacity_bytes(None),
            Healing::Packets { rates, counts_before: [dropped, duplicated, delayed] } => {
                let layer = self.peer_messages();
                layer.clear();
                let [dropped_after, duplicated_after, delayed_after] = packet_counts(layer);
                self.cluster.note(format!(
                    "{} ({}) for {window:?}: {} dropped, {} duplicated, {} delayed",
                    kind.label(),
                    describe_rates(&rates),
                    dropped_after - dropped,
                    duplicated_after - duplicated,
                    delayed_after - delayed
                ));
            }
            Healing::HoldRequest { hold } => {
                let caught = !self.cluster.fault_hooks.request_hold.as_ref().expect("the simulation sets it").disarm();
                self.cluster.note(format!("{} for {hold:?}: {}", kind.label(), if caught { "held one" } else { "no request came" }));
                if caught {
                    // The held request is still waiting on its node until the hold ends.
                    tokio::time::sleep(hold).await;
                }
            }
            Healing::ResetResponse => {
                let caught = !self.cluster.fault_hooks.response_cut.as_ref().expect("the simulation sets it").disarm();
                self.cluster.note(format!("{}: {}", kind.label(), if caught { "reset one connection" } else { "no write completed" }));
            }
            Healing::Nothing => {}
        }
    }

    /// Heals whatever could still be injected: latency, clogged machines, disk faults.
    pub fn heal_all(&self) {
        self.net.update_config(|config| config.send_latency = self.latency_default.clone());
        for node in self.cluster.machines() {
            self.net.unclog_node(self.ids[&node]);
            heal_disk(&self.cluster.disks[&node]);
        }
    }

    /// Restarts every node that stopped by itself (a fatal storage error, a failed start), like
    /// a supervisor would; a node that keeps failing to start is left down, unless `all`.
    pub fn restart_stopped(&self, all: bool) {
        let stopped = if all { self.cluster.stopped() } else { self.cluster.stopped_restartable() };
        for node in stopped {
            self.cluster.note(format!("restarting node {node}"));
            self.crash(node, CrashMode::Process);
            self.runtime.restart(self.ids[&node]);
        }
    }

    /// Kills node `node`'s machine and crashes its disk the `mode` way.
    fn crash(&self, node: u64, mode: CrashMode) {
        self.runtime.kill(self.ids[&node]);
        self.cluster.disks[&node].crash(mode);
    }

    /// Holds `nodes`: pauses them (`pauses`) or isolates them.
    pub(crate) fn hold(&self, pauses: bool, nodes: &[u64]) {
        for node in nodes {
            if pauses {
                self.runtime.pause(self.ids[node]);
            } else {
                self.net.clog_node(self.ids[node]);
            }
        }
    }

    /// Undoes [`FaultTargets::hold`].
    pub(crate) fn release(&self, pauses: bool, nodes: &[u64]) {
        for node in nodes {
            if pauses {
                self.runtime.resume(self.ids[node]);
            } else {
                self.net.unclog_node(self.ids[node]);
            }
        }
    }

    fn peer_messages(&self) -> &TransportFaults {
        self.cluster.fault_hooks.peer_messages.as_ref().expect("the simulation sets it")
    }
}

impl Fault {
    /// The details the history records with the fault's start and stop.
    pub(crate) fn details(&self) -> BTreeMap<String, String> {
        let details: Vec<(&str, String)> = match self {
            Fault::Crash { node, .. } | Fault::Isolate { node } | Fault::Disk { node, .. } | Fault::Wipe { node } => {
                vec![("node", node.to_string())]
            }
            Fault::PowerLossAll | Fault::ResetResponse => vec![],
            Fault::Pause { nodes } => vec![("nodes", format!("{nodes:?}"))],
            Fault::Partition { description, .. } => vec![("partition", description.clone())],
            Fault::OneWay { node, outbound } => vec![("node", node.to_string()), ("direction", direction(*outbound).to_string())],
            Fault::Latency { latency_ms_max } => vec![("latency", format!("1..{latency_ms_max} ms"))],
            Fault::BitFlip { node, path, bits } => {
                vec![("node", node.to_string()), ("file", path.display().to_string()), ("bits", format!("{bits:?}"))]
            }
            Fault::StateFile { node, path, damage } => {
                vec![("node", node.to_string()), ("file", path.display().to_string()), ("damage", damage.to_string())]
            }
            Fault::DiskFull { node, room_bytes } => vec![("node", node.to_string()), ("room-bytes", room_bytes.to_string())],
            Fault::Packets { rates } => vec![("rates", describe_rates(rates))],
            Fault::HoldRequest { hold } => vec![("hold-ms", hold.as_millis().to_string())],
            Fault::ClientCut { cut } => vec![("for-ms", cut.as_millis().to_string())],
            Fault::Choreography { a, c, b, .. } => vec![("A", format!("{a:?}")), ("c", c.to_string()), ("B", format!("{b:?}"))],
            Fault::ClockStep { node, step_ms } => vec![("node", node.to_string()), ("step-ms", step_ms.to_string())],
            Fault::Membership(membership) => membership.details(),
            Fault::GrowShrink(fault) => fault.details(),
        };
        details.into_iter().map(|(key, value)| (key.to_string(), value)).collect()
    }

    /// The timeline line at the start of the window, after the fault's label; `None` for faults
    /// that say what they did when healed.
    fn start_line(&self, window: Duration) -> Option<String> {
        let line = match self {
            Fault::Crash { node, .. } | Fault::Isolate { node } | Fault::Disk { node, .. } | Fault::Wipe { node } => {
                format!("node {node} for {window:?}")
            }
            Fault::PowerLossAll => format!("for {window:?}"),
            Fault::Pause { nodes } => format!("nodes {nodes:?} for {window:?}"),
            Fault::Partition { description, .. } => format!("{description} for {window:?}"),
            Fault::OneWay { node, outbound } => format!("node {node} {} for {window:?}", direction(*outbound)),
            Fault::Latency { latency_ms_max } => format!("1..{latency_ms_max} ms for {window:?}"),
            Fault::BitFlip { node, path, bits } => format!("node {node} file {} bits {bits:?}", path.display()),
            Fault::StateFile { node, path, damage } => format!("node {node} file {}: {damage}", path.display()),
            Fault::DiskFull { node, room_bytes } => format!("node {node}, {room_bytes} bytes of room, for {window:?}"),
            Fault::Packets { .. } | Fault::HoldRequest { .. } | Fault::ResetResponse => return None,
            Fault::ClientCut { cut } => format!("for {cut:?}"),
            Fault::Choreography { a, c, b, .. } => format!("A={a:?} c={c} B={b:?}, steps of {window:?}"),
            Fault::ClockStep { node, step_ms } => format!("node {node} by {step_ms} ms"),
            Fault::Membership(membership) => membership.start_line(window),
            // Each step says what it did.
            Fault::GrowShrink(_) => return None,
        };
        Some(line)
    }

    /// How long the fault stays injected after [`FaultTargets::inject`] returns: the drawn
    /// window, but F-N9's own cut for the client; `None` for a clock step (instant, nothing to
    /// heal).
    fn length(&self, window: Duration) -> Option<Duration> {
        match self {
            Fault::ClientCut { cut } => Some(*cut),
            Fault::ClockStep { .. } => None,
            // A storm's transfers took the window already.
            Fault::Membership(membership) if membership.kind.is_none() => Some(Duration::ZERO),
            _ => Some(window),
        }
    }
}

/// F-S6, F-S8 or F-S9 slow disk on `node`. A failing or slow disk is often followed by the
/// machine going down: sometimes the node loses power shortly after (during a slow fsync, right
/// after a failed one), which is when acknowledging ahead of the disk shows.
fn draw_disk(kind: FaultKind, node: u64, rng: &mut SmallRng) -> Fault {
    let injury = match kind {
        FaultKind::ReadError => DiskInjury::ReadErrors,
        FaultKind::FsyncError => DiskInjury::FailedSyncs(rng.gen_range(1..=3)),
        _ => DiskInjury::Slow(LatencyConfig {
            read: (Duration::ZERO, Duration::from_millis(5)),
            write: (Duration::ZERO, Duration::from_millis(5)),
            sync: (Duration::from_millis(1), Duration::from_millis(rng.gen_range(5..60))),
        }),
    };
    let power_loss = kind != FaultKind::ReadError && rng.gen_bool(0.5);
    let power_loss_after = power_loss.then(|| Duration::from_millis(rng.gen_range(0..30)));
    Fault::Disk { node, injury, power_loss_after }
}

fn direction(outbound: bool) -> &'static str {
    if outbound {
        "cannot send"
    } else {
        "cannot receive"
    }
}

fn describe_rates(rates: &FaultRates) -> String {
    format!("drop {:.2}, duplicate {:.2}, delay {:.2} up to {:?}", rates.drop, rates.duplicate, rates.delay, rates.delay_max)
}

/// What the peer-message fault layer did so far: dropped, duplicated, delayed.
fn packet_counts(layer: &TransportFaults) -> [u64; 3] {
    let counts = layer.counts();
    [counts.dropped, counts.duplicated, counts.delayed]
}

/// Clears every disk fault: read errors, failing fsyncs, latency.
fn heal_disk(disk: &SimDisk) {
    disk.set_read_error_probability(0.0);
    disk.fail_next_syncs(0);
    disk.set_latency(LatencyConfig::default());
}

/// A random minority of `nodes`, sorted.
fn minority(nodes: &[u64], rng: &mut SmallRng) -> Vec<u64> {
    let size = rng.gen_range(1..=(nodes.len() - 1) / 2);
    let mut chosen: Vec<u64> = nodes.choose_multiple(rng, size).copied().collect();
    chosen.sort_unstable();
    chosen
}

/// The hard- and conf-state files of `disk` (`odradek_consensus::storage::HARD_STATE_FILE`,
/// `CONF_STATE_FILE`) whose two copies hold the same record with nothing pending: each with
/// its bytes. A copy is one `COPY_STRIDE_BYTES` sector; the second one runs to the file's end.
fn state_files_settled(disk: &SimDisk) -> Vec<(PathBuf, Vec<u8>)> {
    let stride = COPY_STRIDE_BYTES as usize;
    let names = [odradek_consensus::storage::HARD_STATE_FILE, odradek_consensus::storage::CONF_STATE_FILE];
    let is_state_file = |path: &PathBuf| path.file_name().and_then(|name| name.to_str()).is_some_and(|name| names.contains(&name));
    disk.files()
        .into_iter()
        .filter(is_state_file)
        .filter_map(|path| {
            let bytes = disk.read_file_durable(&path)?;
            let agree = bytes.len() > stride && bytes.len() <= 2 * stride && bytes[..bytes.len() - stride] == bytes[stride..];
            (agree && disk.read_file(&path)? == bytes).then_some((path, bytes))
        })
        .collect()
}

/// The start-state files of `disk` (`odradek_consensus::storage::START_STATE_FILE`) whose bytes
/// and name are durable as reads see them: each with its bytes.
fn start_states_settled(disk: &SimDisk) -> Vec<(PathBuf, Vec<u8>)> {
    let name = odradek_consensus::storage::START_STATE_FILE;
    disk.files()
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|file| file == name))
        .filter_map(|path| {
            let bytes = disk.read_file_after_power_loss(&path)?;
            (!bytes.is_empty() && disk.read_file(&path)? == bytes).then_some((path, bytes))
        })
        .collect()
}

/// The bytes of the record in a state file's first copy (a repair may leave padding after it,
/// which no fault needs to hit): a hard state's fixed size, or a conf state's header (28 bytes,
/// the body's length at 24..28), body and CRC (`odradek_consensus::conf_state_file`). Never past
/// the second copy's end.
fn record_bytes_of(path: &Path, bytes: &[u8]) -> u64 {
    let in_second_copy = bytes.len() as u64 - COPY_STRIDE_BYTES;
    let record = if path.file_name().is_some_and(|name| name == odradek_consensus::storage::HARD_STATE_FILE) {
        HARD_STATE_SLOT_BYTES as u64
    } else {
        28 + u64::from(u32::from_le_bytes(bytes[24..28].try_into().expect("a conf state copy has its header"))) + 4
    };
    record.min(in_second_copy)
}

/// The sequence number of a state file's first copy (bytes 8..16 of both layouts: the log's
/// hard state, the consensus crate's conf state).
fn sequence_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[8..16].try_into().expect("a copy holds its sequence"))
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
fn corruptible_spots(disk: &SimDisk) -> Vec<(PathBuf, Range<u64>)> {
    let files = disk.files();
    let is_segment = |path: &Path| path.extension().is_some_and(|e| e == "log");
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
            let mut entry_last_start = SEGMENT_HEADER_BYTES as usize;
            while let Some(entry) = bytes.get(position..).and_then(decode_entry) {
                entry_last_start = position;
                position += entry.encoded_bytes();
            }
            if bytes.len() >= SEGMENT_HEADER_BYTES as usize {
                spots.push((path.clone(), 0..entry_last_start as u64));
            }
            if position > entry_last_start {
                spots.push((path.clone(), entry_last_start as u64..position as u64));
            }
        }
    }
    spots
}
