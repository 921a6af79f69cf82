//! [`SimDisk`]: an in-memory [`Disk`] with a power-loss model and seeded fault injection, for
//! unit tests and the deterministic simulator.
//!
//! The model, and why it is enough to test the log's crash safety:
//! - Two namespaces. `live` maps paths to inodes as a running process sees them; `durable` is
//!   what survives power loss. Create, rename and remove change `live` only; `sync_dir(dir)`
//!   copies the direct children of `dir` from `live` into `durable`. Directories themselves are
//!   durable as soon as `create_dir_all` returns (the log creates them once, at startup, and
//!   syncs their parent; modelling lost directories would test the setup code, not the log).
//! - Three byte images per inode. `current` is what reads see; `durable` survives power loss;
//!   `pending` lists the writes and `set_len`s since the last successful `sync_data`, in order.
//!   Invariant: `durable` with `pending` applied in order equals `current`.
//! - [`CrashMode::Process`] (F-P1, SIGKILL) keeps everything, because the OS page cache
//!   survives a process crash; pending bytes stay pending, so a later power loss may still
//!   lose them. [`CrashMode::PowerLoss`] (F-P3, F-S1, F-S2) keeps the durable namespace and,
//!   per file, a random prefix of the pending operations, possibly followed by one torn write.
//! - Out-of-order page flushes inside one file are *not* modelled: a later unsynced write never
//!   persists while an earlier one is lost. A real kernel can do that, but the result looks to
//!   the log exactly like bit rot in the middle of an unsynced tail, which F-S3 already covers;
//!   modelling it would only make the log's recovery reports harder to read.
//! - Open handles die with the process: every crash bumps a generation number, and operations
//!   on a handle from an older generation fail ("stale handle after crash").
//!
//! Determinism: every random choice comes from one seeded `StdRng` inside the disk, ordered
//! maps and sets only, and a probability of zero never draws from the RNG, so enabling one kind
//! of fault does not change the choices of another kind that is off. The same seed and the same
//! sequence of calls give the same faults.
//!
//! All state lives behind one `std::sync::Mutex`, never held across an `.await`: latency is
//! drawn under the lock and slept outside it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::{disk_full_error, Disk, DiskFile, OpenMode};

/// The unit a disk writes atomically; a torn write tears on a boundary of these.
const SECTOR_BYTES: u64 = 512;

/// Unsynced operations kept per file. A log syncs every round; a file that piles up a million
/// writes without a sync is a bug, and the bound keeps such a bug from eating the test's memory.
const PENDING_OPS_MAX: usize = 1 << 20;

/// The largest single read, so a corrupt length field can never make us allocate without bound.
const READ_BYTES_MAX: usize = 1 << 30;

/// The chance that, at power loss, the first lost write of a file is torn rather than cleanly
/// lost. High, like VOPR's crash fault probability, because torn tails are where recovery bugs
/// hide.
const TORN_WRITE_PROBABILITY_DEFAULT: f64 = 0.5;

/// `EIO`, the error a failing disk returns for reads, writes and syncs.
const EIO: i32 = 5;

type InodeId = u64;

/// What a crash takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// F-P1: the process is killed (SIGKILL); the OS page cache survives, so every written byte
    /// and every namespace change stays, synced or not. Only open handles die.
    Process,
    /// F-P3: power loss or kernel crash: only durable bytes and durable names survive, plus a
    /// random prefix of each file's unsynced operations, maybe with one torn write (F-S1, F-S2).
    PowerLoss,
}

/// F-S9 slow disk: each operation's delay is drawn uniformly from `(min, max)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyConfig {
    /// Delay of each `read_at`, `(min, max)`.
    pub read: (Duration, Duration),
    /// Delay of each `write_at` and `set_len`, `(min, max)`.
    pub write: (Duration, Duration),
    /// Delay of each `sync_data` and `sync_dir`, `(min, max)`.
    pub sync: (Duration, Duration),
}

/// Counters for tests and benchmarks (for example: how many fsyncs one round cost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Successful `sync_data` calls.
    pub syncs: u64,
    /// Successful `sync_dir` calls.
    pub dir_syncs: u64,
    /// Bytes accepted by successful `write_at` calls.
    pub bytes_written: u64,
    /// Bytes returned by successful `read_at` calls.
    pub bytes_read: u64,
    /// Crashes of either mode.
    pub crashes: u64,
}

/// An operation written but not yet synced.
#[derive(Clone, Debug)]
enum PendingOp {
    Write { offset: u64, data: Bytes },
    SetLen(u64),
}

/// One file's bytes, independent of the names it has.
#[derive(Debug, Default)]
struct Inode {
    /// Bytes that survive power loss.
    durable: Vec<u8>,
    /// Bytes reads see: `durable` with `pending` applied.
    current: Vec<u8>,
    /// Writes and truncations since the last successful `sync_data`, in order.
    pending: Vec<PendingOp>,
    /// F-S6: sectors whose reads fail with `EIO`.
    sectors_bad: BTreeSet<u64>,
    /// Handles of the current generation; the inode is freed once it has no name and no handle.
    handles_open: u64,
    /// With [`SimDisk::set_close_loses_unsynced`]: how many of the first `pending` operations
    /// were unsynced when the file's last handle closed. The next sync does not make them
    /// durable (their writeback failed and nobody was told: fsyncgate), though reads still see
    /// them (the page cache keeps them) until power loss.
    closed_unsynced: usize,
    /// `durable` lacks operations `current` has for good (see `closed_unsynced`), until the
    /// next power loss makes them equal again.
    diverged: bool,
}

#[derive(Debug)]
struct State {
    rng: StdRng,
    /// Bumped by every crash; handles from older generations are stale.
    generation: u64,
    dirs: BTreeSet<PathBuf>,
    live: BTreeMap<PathBuf, InodeId>,
    durable: BTreeMap<PathBuf, InodeId>,
    inodes: BTreeMap<InodeId, Inode>,
    /// Never reused, so a stale handle can never reach a new file.
    inode_next: InodeId,
    torn_write_probability: f64,
    read_error_probability: f64,
    write_error_probability: f64,
    sync_error_probability: f64,
    /// F-S8: how many of the next `sync_data` calls fail regardless of the probability.
    sync_failures_next: u32,
    capacity_bytes: Option<u64>,
    latency: LatencyConfig,
    stats: SimDiskStats,
    /// See [`SimDisk::set_close_loses_unsynced`].
    close_loses_unsynced: bool,
}

/// The durable files of a [`SimDisk`] at one moment ([`SimDisk::image`]).
#[derive(Clone, Debug, Default)]
pub struct DiskImage {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

/// An in-memory disk with a power-loss model and seeded faults. Clones share the same disk.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

/// An open file on a [`SimDisk`]; dies (every call fails) at the disk's next crash.
#[derive(Debug)]
pub struct SimFile {
    state: Arc<Mutex<State>>,
    inode: InodeId,
    generation: u64,
    path: PathBuf,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().expect("SimDisk state poisoned by an earlier panic")
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(EIO)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

fn assert_probability(probability: f64) {
    assert!((0.0..=1.0).contains(&probability), "probability {probability} outside [0, 1]");
}

/// Draws a fault with `probability`; never touches the RNG when it is 0 or 1, so faults that
/// are off leave the other random choices unchanged.
fn draw(rng: &mut StdRng, probability: f64) -> bool {
    if probability <= 0.0 {
        false
    } else if probability >= 1.0 {
        true
    } else {
        rng.gen_bool(probability)
    }
}

fn draw_delay(rng: &mut StdRng, (min, max): (Duration, Duration)) -> Duration {
    assert!(min <= max);
    if min == max {
        min
    } else {
        rng.gen_range(min..=max)
    }
}

async fn sleep_unless_zero(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// The end of a write of `len` bytes at `offset`, or `InvalidInput` if it overflows.
fn write_end(offset: u64, len: usize) -> io::Result<u64> {
    offset.checked_add(len as u64).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past the largest offset"))
}

fn usize_from(value: u64) -> usize {
    usize::try_from(value).expect("SimDisk file offsets fit in memory")
}

/// `pwrite` semantics on a byte image: a gap before `offset` reads as zeros.
fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = usize_from(offset);
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn apply(bytes: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { offset, data } => apply_write(bytes, *offset, data),
        PendingOp::SetLen(len) => bytes.resize(usize_from(*len), 0),
    }
}

/// F-S2: applies only the first `k` whole sectors of a write (`k` random, fewer than the write
/// touches, aligned on absolute file offsets), then fills the write's part of the sector at the
/// tear point with garbage: random bytes or zeros, as a half-written sector reads back.
fn tear(durable: &mut Vec<u8>, offset: u64, data: &[u8], rng: &mut StdRng) {
    assert!(!data.is_empty());
    let end = offset + data.len() as u64;
    let sector_first = offset / SECTOR_BYTES;
    let sector_last = (end - 1) / SECTOR_BYTES;
    let sectors_whole = rng.gen_range(0..=sector_last - sector_first);
    let tear_start = ((sector_first + sectors_whole) * SECTOR_BYTES).max(offset);
    let tear_end = ((sector_first + sectors_whole + 1) * SECTOR_BYTES).min(end);
    assert!(offset <= tear_start && tear_start < tear_end && tear_end <= end);

    apply_write(durable, offset, &data[..usize_from(tear_start - offset)]);
    let mut garbage = vec![0u8; usize_from(tear_end - tear_start)];
    if rng.gen_bool(0.5) {
        rng.fill(&mut garbage[..]);
    }
    apply_write(durable, tear_start, &garbage);
}

impl Inode {
    /// F-P3: keeps a random prefix of the pending operations, maybe tears the next write, and
    /// forgets the rest.
    fn lose_unsynced(&mut self, rng: &mut StdRng, torn_write_probability: f64) {
        let pending = std::mem::take(&mut self.pending);
        self.closed_unsynced = 0;
        self.diverged = false;
        if !pending.is_empty() {
            let persisted = rng.gen_range(0..=pending.len());
            for op in &pending[..persisted] {
                apply(&mut self.durable, op);
            }
            if let Some(PendingOp::Write { offset, data }) = pending.get(persisted) {
                if !data.is_empty() && draw(rng, torn_write_probability) {
                    tear(&mut self.durable, *offset, data, rng);
                }
            }
        }
        self.current.clone_from(&self.durable);
    }

    /// Makes every pending operation durable.
    fn sync(&mut self) {
        let lost = std::mem::take(&mut self.closed_unsynced);
        self.diverged |= lost > 0;
        for op in std::mem::take(&mut self.pending).iter().skip(lost) {
            apply(&mut self.durable, op);
        }
        if !self.diverged {
            // The full comparison is O(file size) per sync; the length catches most drift cheaply.
            assert_eq!(self.durable.len(), self.current.len());
            debug_assert!(self.durable == self.current);
        }
    }

    fn push_pending(&mut self, op: PendingOp) {
        assert!(self.pending.len() < PENDING_OPS_MAX, "more than PENDING_OPS_MAX unsynced operations on one file");
        self.pending.push(op);
    }
}

impl State {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            generation: 0,
            dirs: BTreeSet::new(),
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
            inodes: BTreeMap::new(),
            inode_next: 0,
            torn_write_probability: TORN_WRITE_PROBABILITY_DEFAULT,
            read_error_probability: 0.0,
            write_error_probability: 0.0,
            sync_error_probability: 0.0,
            sync_failures_next: 0,
            capacity_bytes: None,
            latency: LatencyConfig::default(),
            stats: SimDiskStats::default(),
            close_loses_unsynced: false,
        }
    }

    /// The root and the current directory always exist; others once `create_dir_all` made them.
    fn dir_exists(&self, path: &Path) -> bool {
        path.as_os_str().is_empty() || path.parent().is_none() || self.dirs.contains(path)
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent().is_none_or(|parent| self.dir_exists(parent))
    }

    fn is_named(&self, id: InodeId) -> bool {
        self.live.values().any(|&named| named == id) || self.durable.values().any(|&named| named == id)
    }

    /// Frees inodes that no name (live or durable) and no open handle reaches.
    fn collect_garbage(&mut self) {
        let named: BTreeSet<InodeId> = self.live.values().chain(self.durable.values()).copied().collect();
        self.inodes.retain(|id, inode| named.contains(id) || inode.handles_open > 0);
    }

    fn inode_live(&self, path: &Path) -> &Inode {
        let id = self.live.get(path).unwrap_or_else(|| panic!("SimDisk has no file {}", path.display()));
        &self.inodes[id]
    }

    fn inode_live_mut(&mut self, path: &Path) -> &mut Inode {
        let id = *self.live.get(path).unwrap_or_else(|| panic!("SimDisk has no file {}", path.display()));
        self.inodes.get_mut(&id).expect("named inode exists")
    }

    /// Space in use: the current length of every file with a live name or an open handle.
    fn used_bytes(&self) -> u64 {
        let live: BTreeSet<InodeId> = self.live.values().copied().collect();
        self.inodes
            .iter()
            .filter(|(id, inode)| live.contains(id) || inode.handles_open > 0)
            .map(|(_, inode)| inode.current.len() as u64)
            .sum()
    }

    /// F-S9: fails with `ENOSPC` if growing inode `id` by `growth_bytes` would take the space
    /// in use past the capacity. Space in use is the current length of every file that has a
    /// live name or an open handle (an unlinked file keeps its space while it is open).
    fn check_capacity(&self, id: InodeId, growth_bytes: u64) -> io::Result<()> {
        let Some(capacity_bytes) = self.capacity_bytes else {
            return Ok(());
        };
        if growth_bytes == 0 {
            return Ok(());
        }
        let used_bytes = self.used_bytes();
        let live: BTreeSet<InodeId> = self.live.values().copied().collect();
        assert!(live.contains(&id) || self.inodes[&id].handles_open > 0);
        if used_bytes + growth_bytes > capacity_bytes {
            return Err(disk_full_error());
        }
        Ok(())
    }
}

impl SimDisk {
    /// An empty disk whose every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: Arc::new(Mutex::new(State::new(seed))) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Crashes the process (F-P1) or the machine (F-P3, F-S1, F-S2); see [`CrashMode`]. Every
    /// handle opened before the crash is stale afterwards.
    pub fn crash(&self, mode: CrashMode) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.generation += 1;
        state.stats.crashes += 1;
        for inode in state.inodes.values_mut() {
            inode.handles_open = 0;
            // The handles a process crash closed are not closes of a running process: the page
            // cache still holds their unsynced bytes and a later fsync writes them.
            if mode == CrashMode::Process {
                inode.closed_unsynced = 0;
            }
        }
        match mode {
            CrashMode::Process => {}
            CrashMode::PowerLoss => {
                state.live = state.durable.clone();
                let survivors: BTreeSet<InodeId> = state.durable.values().copied().collect();
                for id in survivors {
                    let inode = state.inodes.get_mut(&id).expect("durable inode exists");
                    inode.lose_unsynced(&mut state.rng, state.torn_write_probability);
                }
            }
        }
        state.collect_garbage();
    }

    /// A copy of the disk's durable files and directories, as a backup of the data directory
    /// taken now would hold (see [`SimDisk::restore`]).
    pub fn image(&self) -> DiskImage {
        let state = self.lock();
        let files = state.durable.iter().map(|(path, id)| (path.clone(), state.inodes[id].durable.clone())).collect();
        DiskImage { dirs: state.dirs.clone(), files }
    }

    /// An operator restores the data directory from an older copy (or wipes it, with an empty
    /// image): every file becomes the image's, durably. The process must be down; every handle
    /// goes stale, as at a crash.
    pub fn restore(&self, image: &DiskImage) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.generation += 1;
        for inode in state.inodes.values_mut() {
            inode.handles_open = 0;
        }
        state.live.clear();
        state.durable.clear();
        state.dirs = image.dirs.clone();
        for (path, bytes) in &image.files {
            let id = state.inode_next;
            state.inode_next += 1;
            state.inodes.insert(id, Inode { durable: bytes.clone(), current: bytes.clone(), ..Inode::default() });
            state.live.insert(path.clone(), id);
            state.durable.insert(path.clone(), id);
        }
        state.collect_garbage();
        assert_eq!(state.live.len(), image.files.len());
    }

    /// F-S2: the chance that the first lost write of a file at power loss is torn (default
    /// 0.5; VOPR runs 0.8 to 1.0).
    pub fn set_torn_write_probability(&self, probability: f64) {
        assert_probability(probability);
        self.lock().torn_write_probability = probability;
    }

    /// F-S3 bit flip at rest (test helper): flips `bit` of the file named `path` in its durable
    /// bytes and, if long enough, its current bytes. Panics if the file is missing or the bit
    /// lies beyond its durable bytes.
    pub fn flip_bit(&self, path: &Path, bit: u64) {
        let mut state = self.lock();
        let inode = state.inode_live_mut(path);
        let byte = usize_from(bit / 8);
        let mask = 1u8 << (bit % 8);
        assert!(byte < inode.durable.len(), "bit {bit} beyond the {} durable bytes of {}", inode.durable.len(), path.display());
        inode.durable[byte] ^= mask;
        if let Some(current) = inode.current.get_mut(byte) {
            *current ^= mask;
        }
    }

    /// F-S3 bit rot: flips `count` bits at positions drawn from the RNG (uniform over the
    /// file's durable bytes; a bit may be drawn twice) and returns them. Nothing happens to an
    /// empty file. Panics if the file is missing.
    pub fn flip_random_bits(&self, path: &Path, count: usize) -> Vec<u64> {
        self.flip_random_bits_in(path, 0..u64::MAX, count)
    }

    /// Like [`SimDisk::flip_random_bits`], with the bits drawn from the durable bytes in
    /// `bytes` only (clamped to the file; nothing happens when that leaves no byte).
    pub fn flip_random_bits_in(&self, path: &Path, bytes: std::ops::Range<u64>, count: usize) -> Vec<u64> {
        let bits: Vec<u64> = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let end = bytes.end.min(state.inode_live(path).durable.len() as u64);
            if bytes.start >= end {
                return Vec::new();
            }
            (0..count).map(|_| state.rng.gen_range(bytes.start * 8..end * 8)).collect()
        };
        for &bit in &bits {
            self.flip_bit(path, bit);
        }
        bits
    }

    /// A fault at rest while the file's process is down (F-S2 a torn copy, F-S4 a short one,
    /// F-S7 a lost write that brings older bytes back): the live file `path` holds `bytes` from
    /// now on, durably. Its writes since the last sync must have changed nothing (its durable
    /// bytes are the ones reads see); they are dropped. Panics if the file is missing or has
    /// writes pending that change it.
    pub fn rewrite_at_rest(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.lock();
        let inode = state.inode_live_mut(path);
        assert!(inode.durable == inode.current, "{} has writes pending: rewrite it at rest only once they are synced", path.display());
        inode.pending.clear();
        inode.current = bytes.clone();
        inode.durable = bytes;
    }

    /// A fault at rest while the file's process is down (F-S7: a rename or create the disk lost
    /// after the directory's sync): the file `path` is gone, durably. Panics if it is missing.
    pub fn remove_at_rest(&self, path: &Path) {
        let mut state = self.lock();
        assert!(state.live.remove(path).is_some(), "{} is missing", path.display());
        state.durable.remove(path);
        state.collect_garbage();
    }

    /// The bytes the file named `path` would hold after power loss right now: its name looked
    /// up in the durable namespace (a rename or create not yet made durable by `sync_dir` does
    /// not count), its durable bytes; `None` when no such name would survive.
    pub fn read_file_after_power_loss(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.durable.get(path)?;
        Some(state.inodes[id].durable.clone())
    }

    /// The bytes of the live file `path` that would survive power loss right now, or `None` if
    /// there is no such file.
    pub fn read_file_durable(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.live.get(path)?;
        Some(state.inodes[id].durable.clone())
    }

    /// The live files directly in `dir` that power loss right now would not leave as reads see
    /// them: writes or truncations not yet synced, or a name not yet made durable by
    /// `sync_dir`. Sorted.
    pub fn files_unsynced_in(&self, dir: &Path) -> Vec<PathBuf> {
        let state = self.lock();
        let in_dir = state.live.range(dir.to_path_buf()..).take_while(|(path, _)| path.starts_with(dir));
        in_dir
            .filter(|(path, id)| {
                path.parent() == Some(dir) && (!state.inodes[id].pending.is_empty() || state.durable.get(*path) != Some(id))
            })
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// The length that `path` would have after power loss right now, or `None` if the name
    /// itself would not survive (it is looked up in the durable namespace).
    pub fn file_len_durable(&self, path: &Path) -> Option<u64> {
        let state = self.lock();
        let id = state.durable.get(path)?;
        Some(state.inodes[id].durable.len() as u64)
    }

    /// F-S6 latent sector error: every read of the file named `path` that touches 512-byte
    /// `sector` fails with `EIO`, deterministically and for good (writes do not repair it).
    /// Panics if the file is missing.
    pub fn add_bad_sector(&self, path: &Path, sector: u64) {
        self.lock().inode_live_mut(path).sectors_bad.insert(sector);
    }

    /// F-S6: the chance that any read fails with `EIO`.
    pub fn set_read_error_probability(&self, probability: f64) {
        assert_probability(probability);
        self.lock().read_error_probability = probability;
    }

    /// F-S8 fsyncgate: the next `count` `sync_data` calls fail with `EIO` and leave the pending
    /// bytes pending (a later power loss may or may not keep them).
    pub fn fail_next_syncs(&self, count: u32) {
        self.lock().sync_failures_next = count;
    }

    /// Models what closing a file with unsynced writes risks on Linux (fsyncgate): with `on`,
    /// when a file's last handle closes (other than by a crash) while it has unsynced writes,
    /// those writes never become durable, even though a later `sync_data` on a reopened handle
    /// succeeds; reads still see them until power loss. Off by default (the simulator turns it
    /// on with `--open-file-budget`), so existing runs are unchanged.
    pub fn set_close_loses_unsynced(&self, on: bool) {
        self.lock().close_loses_unsynced = on;
    }

    /// F-S8: the chance that any `sync_data` fails with `EIO`, as [`Self::fail_next_syncs`].
    pub fn set_sync_error_probability(&self, probability: f64) {
        assert_probability(probability);
        self.lock().sync_error_probability = probability;
    }

    /// F-S9 disk full: a write or `set_len` that would grow the space in use past `capacity`
    /// fails with `ENOSPC` and changes nothing. `None` means unlimited.
    pub fn set_capacity_bytes(&self, capacity: Option<u64>) {
        self.lock().capacity_bytes = capacity;
    }

    /// Bytes in use (what [`Self::set_capacity_bytes`] counts against).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// F-S9 gray failure: the chance that any `write_at` fails with `EIO`, writing nothing.
    pub fn set_write_error_probability(&self, probability: f64) {
        assert_probability(probability);
        self.lock().write_error_probability = probability;
    }

    /// F-S9 slow disk: delays for reads, writes and syncs, drawn from the RNG.
    pub fn set_latency(&self, latency: LatencyConfig) {
        for (min, max) in [latency.read, latency.write, latency.sync] {
            assert!(min <= max, "latency min {min:?} above max {max:?}");
        }
        self.lock().latency = latency;
    }

    /// Counters since the disk was made.
    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats
    }

    /// The live file names, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().live.keys().cloned().collect()
    }

    /// The bytes a read of the live file `path` would see now, or `None` if there is none.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.live.get(path)?;
        Some(state.inodes[id].current.clone())
    }
}

/// The names of the `paths` directly in `dir`, in the order given.
fn names_in<'a>(paths: impl Iterator<Item = &'a PathBuf>, dir: &Path) -> Vec<String> {
    paths.filter(|path| path.parent() == Some(dir)).filter_map(|path| path.file_name()?.to_str().map(str::to_owned)).collect()
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.dirs.contains(path) {
            return Err(io::Error::other(format!("{}: is a directory", path.display())));
        }
        let id = match (state.live.get(path).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}: file exists", path.display())));
            }
            (Some(id), OpenMode::Existing | OpenMode::CreateOrOpen) => id,
            (None, OpenMode::Existing) => return Err(not_found(path)),
            (None, OpenMode::CreateOrOpen | OpenMode::CreateNew) => {
                if !state.parent_exists(path) {
                    return Err(not_found(path));
                }
                let id = state.inode_next;
                state.inode_next += 1;
                state.inodes.insert(id, Inode::default());
                state.live.insert(path.to_path_buf(), id);
                id
            }
        };
        state.inodes.get_mut(&id).expect("named inode exists").handles_open += 1;
        Ok(SimFile { state: Arc::clone(&self.state), inode: id, generation: state.generation, path: path.to_path_buf() })
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ancestors: Vec<&Path> = path.ancestors().filter(|dir| !dir.as_os_str().is_empty() && dir.parent().is_some()).collect();
        if let Some(file) = ancestors.iter().find(|dir| state.live.contains_key(**dir)) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}: a file is in the way", file.display())));
        }
        for dir in ancestors {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Files only (subdirectories are not listed), sorted, as [`crate::FsDisk`] does.
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dir_exists(path) {
            return Err(not_found(path));
        }
        // BTreeMap order on whole paths with one parent is the order of the names.
        Ok(names_in(state.live.keys(), path))
    }

    async fn list_subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dir_exists(path) {
            return Err(not_found(path));
        }
        Ok(names_in(state.dirs.iter(), path))
    }

    async fn available_bytes(&self, _path: &Path) -> io::Result<u64> {
        let state = self.lock();
        Ok(match state.capacity_bytes {
            Some(capacity) => capacity.saturating_sub(state.used_bytes()),
            None => u64::MAX,
        })
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if state.live.remove(path).is_none() {
            return Err(not_found(path));
        }
        state.collect_garbage();
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.live.contains_key(from) || !state.parent_exists(to) {
            return Err(not_found(from));
        }
        if state.dirs.contains(to) {
            return Err(io::Error::other(format!("{}: is a directory", to.display())));
        }
        let id = state.live.remove(from).expect("checked above");
        state.live.insert(to.to_path_buf(), id);
        state.collect_garbage();
        Ok(())
    }

    /// Sleeps the sync latency first, then makes the entries durable, so a crash during the
    /// delay loses them.
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let (delay, generation) = {
            let mut guard = self.lock();
            let state = &mut *guard;
            if !state.dir_exists(path) {
                return Err(not_found(path));
            }
            (draw_delay(&mut state.rng, state.latency.sync), state.generation)
        };
        sleep_unless_zero(delay).await;
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.generation != generation {
            return Err(io::Error::other(format!("stale sync_dir after crash: {}", path.display())));
        }
        let in_dir = |file: &PathBuf| file.parent() == Some(path);
        state.durable.retain(|file, _| !in_dir(file));
        for (file, id) in &state.live {
            if in_dir(file) {
                state.durable.insert(file.clone(), *id);
            }
        }
        state.stats.dir_syncs += 1;
        state.collect_garbage();
        Ok(())
    }
}

impl SimFile {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Fails if the disk crashed since this handle was opened, like a dead process's fds.
    fn check_generation(&self, state: &State) -> io::Result<()> {
        if state.generation != self.generation {
            return Err(io::Error::other(format!("stale handle after crash: {}", self.path.display())));
        }
        Ok(())
    }

    /// Runs `f` on this handle's inode under the lock, after the staleness check.
    fn with_inode<T>(&self, f: impl FnOnce(&mut State, InodeId) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.lock();
        self.check_generation(&state)?;
        assert!(state.inodes.contains_key(&self.inode), "open handle's inode exists");
        f(&mut state, self.inode)
    }
}

impl DiskFile for SimFile {
    /// Sleeps the read latency, then reads; F-S6 faults apply.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        assert!(len <= READ_BYTES_MAX, "read of {len} bytes exceeds READ_BYTES_MAX");
        let delay = self.with_inode(|state, _| Ok(draw_delay(&mut state.rng, state.latency.read)))?;
        sleep_unless_zero(delay).await;
        self.with_inode(|state, id| {
            let inode = &state.inodes[&id];
            let len_file = inode.current.len() as u64;
            let start = offset.min(len_file);
            let end = offset.saturating_add(len as u64).min(len_file);
            if start < end {
                let sector_first = start / SECTOR_BYTES;
                let sector_last = (end - 1) / SECTOR_BYTES;
                if inode.sectors_bad.range(sector_first..=sector_last).next().is_some() {
                    return Err(eio());
                }
            }
            let bytes = inode.current[usize_from(start)..usize_from(end)].to_vec();
            if draw(&mut state.rng, state.read_error_probability) {
                return Err(eio());
            }
            state.stats.bytes_read += bytes.len() as u64;
            Ok(bytes)
        })
    }

    /// Applies the write, then sleeps the write latency; F-S9 faults apply (nothing is written
    /// on an error).
    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let delay = self.with_inode(|state, id| {
            let end = write_end(offset, data.len())?;
            if draw(&mut state.rng, state.write_error_probability) {
                return Err(eio());
            }
            let len_current = state.inodes[&id].current.len() as u64;
            let growth_bytes = if data.is_empty() { 0 } else { end.saturating_sub(len_current) };
            state.check_capacity(id, growth_bytes)?;
            let inode = state.inodes.get_mut(&id).expect("checked");
            if !data.is_empty() {
                apply_write(&mut inode.current, offset, &data);
                inode.push_pending(PendingOp::Write { offset, data: data.clone() });
            }
            assert!(data.is_empty() || inode.current.len() as u64 >= end);
            state.stats.bytes_written += data.len() as u64;
            Ok(draw_delay(&mut state.rng, state.latency.write))
        })?;
        sleep_unless_zero(delay).await;
        Ok(())
    }

    /// Sleeps the sync latency first, then makes the pending operations durable, so a crash
    /// during the delay loses them; F-S8 faults apply.
    async fn sync_data(&self) -> io::Result<()> {
        let delay = self.with_inode(|state, _| Ok(draw_delay(&mut state.rng, state.latency.sync)))?;
        sleep_unless_zero(delay).await;
        self.with_inode(|state, id| {
            if state.sync_failures_next > 0 {
                state.sync_failures_next -= 1;
                return Err(eio());
            }
            if draw(&mut state.rng, state.sync_error_probability) {
                return Err(eio());
            }
            state.inodes.get_mut(&id).expect("checked").sync();
            state.stats.syncs += 1;
            Ok(())
        })
    }

    async fn len(&self) -> io::Result<u64> {
        self.with_inode(|state, id| Ok(state.inodes[&id].current.len() as u64))
    }

    /// Applies the new length, then sleeps the write latency; F-S9 disk full applies.
    async fn set_len(&self, len: u64) -> io::Result<()> {
        let delay = self.with_inode(|state, id| {
            let growth_bytes = len.saturating_sub(state.inodes[&id].current.len() as u64);
            state.check_capacity(id, growth_bytes)?;
            let inode = state.inodes.get_mut(&id).expect("checked");
            inode.current.resize(usize_from(len), 0);
            inode.push_pending(PendingOp::SetLen(len));
            Ok(draw_delay(&mut state.rng, state.latency.write))
        })?;
        sleep_unless_zero(delay).await;
        Ok(())
    }
}

impl Drop for SimFile {
    /// Releases the handle; an inode with no name left is freed with its last handle. Stale
    /// handles were already released by the crash.
    fn drop(&mut self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.generation != self.generation {
            return;
        }
        let close_loses_unsynced = state.close_loses_unsynced;
        let inode = state.inodes.get_mut(&self.inode).expect("open handle's inode exists");
        assert!(inode.handles_open > 0);
        inode.handles_open -= 1;
        if inode.handles_open == 0 && close_loses_unsynced {
            inode.closed_unsynced = inode.pending.len();
        }
        if inode.handles_open == 0 && !state.is_named(self.inode) {
            state.inodes.remove(&self.inode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("/data/p0")
    }

    async fn disk_with_dir(seed: u64) -> SimDisk {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(&dir()).await.unwrap();
        disk
    }

    /// A file that exists durably (created, dir-synced) holding `bytes`, synced.
    async fn durable_file(disk: &SimDisk, name: &str, bytes: &[u8]) -> (PathBuf, SimFile) {
        let path = dir().join(name);
        let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
        file.write_at(0, Bytes::copy_from_slice(bytes)).await.unwrap();
        file.sync_data().await.unwrap();
        disk.sync_dir(&dir()).await.unwrap();
        (path, file)
    }

    fn is_eio(error: &io::Error) -> bool {
        error.raw_os_error() == Some(EIO)
    }

    #[tokio::test]
    async fn unsynced_write_lost_on_power_loss_kept_on_process_crash() {
        // Process crash keeps the page cache, synced or not.
        let disk = disk_with_dir(1).await;
        let (path, file) = durable_file(&disk, "a", b"durable").await;
        file.write_at(7, Bytes::from_static(b"-unsynced")).await.unwrap();
        let created = dir().join("created");
        disk.open(&created, OpenMode::CreateNew).await.unwrap();
        disk.crash(CrashMode::Process);
        assert_eq!(disk.read_file(&path).unwrap(), b"durable-unsynced");
        assert_eq!(disk.file_len_durable(&path), Some(7));
        // Namespace changes survive too, dir-synced or not.
        assert_eq!(disk.files(), [path.clone(), created]);

        // ...and the bytes it kept are still unsynced: a power loss afterwards may lose them.
        // With the torn-write chance off, the survivors are a prefix of the pending ops, so
        // the file holds either all or none of the write; across seeds, some lose it.
        let mut lost = 0;
        for seed in 0..32 {
            let disk = disk_with_dir(seed).await;
            disk.set_torn_write_probability(0.0);
            let (path, file) = durable_file(&disk, "a", b"durable").await;
            file.write_at(7, Bytes::from_static(b"-unsynced")).await.unwrap();
            disk.crash(CrashMode::Process);
            disk.crash(CrashMode::PowerLoss);
            let bytes = disk.read_file(&path).unwrap();
            assert!(bytes == b"durable" || bytes == b"durable-unsynced", "{bytes:?}");
            lost += usize::from(bytes == b"durable");
        }
        assert!(lost > 0 && lost < 32, "lost {lost} of 32");
    }

    #[tokio::test]
    async fn closing_a_file_with_unsynced_writes_loses_them_when_modelled() {
        for (modelled, process_crash_between, expected) in
            // Modelled, the closed write is a hole of zeros: only the later one is durable.
            [
                (true, false, &b"durable\0\0\0\0\0\0\0+later"[..]),
                (false, false, b"durable-closed+later"),
                (true, true, b"durable-closed+later"),
            ]
        {
            let disk = disk_with_dir(3).await;
            disk.set_close_loses_unsynced(modelled);
            let (path, file) = durable_file(&disk, "a", b"durable").await;
            file.write_at(7, Bytes::from_static(b"-closed")).await.unwrap();
            drop(file);
            if process_crash_between {
                // Handles closed by a process crash: the page cache still writes them.
                disk.crash(CrashMode::Process);
            }
            let file = disk.open(&path, OpenMode::Existing).await.unwrap();
            assert_eq!(file.read_at(0, 100).await.unwrap(), b"durable-closed", "reads see the page cache");
            file.write_at(14, Bytes::from_static(b"+later")).await.unwrap();
            file.sync_data().await.unwrap();
            disk.crash(CrashMode::PowerLoss);
            assert_eq!(disk.read_file(&path).unwrap(), expected, "modelled {modelled}, process crash {process_crash_between}");
        }
    }

    #[tokio::test]
    async fn unsynced_write_can_be_lost_on_power_loss() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let disk = disk_with_dir(seed).await;
            let (path, file) = durable_file(&disk, "a", &[1; 100]).await;
            file.write_at(100, Bytes::from(vec![2; 100])).await.unwrap();
            file.write_at(200, Bytes::from(vec![3; 100])).await.unwrap();
            disk.crash(CrashMode::PowerLoss);
            let bytes = disk.read_file(&path).unwrap();
            // The synced part always survives.
            assert_eq!(&bytes[..100], &[1; 100][..]);
            assert_eq!(disk.file_len_durable(&path), Some(bytes.len() as u64));
            outcomes.insert(bytes.len());
        }
        // Across seeds: nothing, the first write, or both (maybe torn) survive.
        assert!(outcomes.contains(&100), "{outcomes:?}");
        assert!(outcomes.contains(&300), "{outcomes:?}");
    }

    #[tokio::test]
    async fn synced_write_survives_power_loss() {
        for seed in 0..16 {
            let disk = disk_with_dir(seed).await;
            let (path, file) = durable_file(&disk, "a", b"first").await;
            file.write_at(5, Bytes::from_static(b" second")).await.unwrap();
            file.set_len(9).await.unwrap();
            file.sync_data().await.unwrap();
            disk.crash(CrashMode::PowerLoss);
            assert_eq!(disk.read_file(&path).unwrap(), b"first sec");
            assert_eq!(disk.read_file(&path).unwrap().len(), 9);
        }
    }

    #[tokio::test]
    async fn created_file_without_dir_sync_vanishes_on_power_loss() {
        let disk = disk_with_dir(3).await;
        let path = dir().join("new");
        let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
        file.write_at(0, Bytes::from_static(b"data")).await.unwrap();
        file.sync_data().await.unwrap();
        assert_eq!(disk.files(), std::slice::from_ref(&path));
        assert_eq!(disk.file_len_durable(&path), None);

        disk.crash(CrashMode::PowerLoss);
        assert!(disk.files().is_empty());
        assert_eq!(disk.list_dir(&dir()).await.unwrap(), Vec::<String>::new());
        let error = disk.open(&path, OpenMode::Existing).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        // Directories are durable at once.
        assert!(disk.list_dir(&dir()).await.is_ok());
    }

    #[tokio::test]
    async fn rename_and_remove_durable_only_after_sync_dir() {
        let disk = disk_with_dir(4).await;
        let (old, file) = durable_file(&disk, "a.tmp", b"payload").await;
        drop(file);
        let new = dir().join("a.log");
        disk.rename(&old, &new).await.unwrap();
        assert_eq!(disk.list_dir(&dir()).await.unwrap(), ["a.log"]);

        disk.crash(CrashMode::PowerLoss);
        assert_eq!(disk.list_dir(&dir()).await.unwrap(), ["a.tmp"]);
        assert_eq!(disk.read_file(&old).unwrap(), b"payload");

        disk.rename(&old, &new).await.unwrap();
        disk.sync_dir(&dir()).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        assert_eq!(disk.list_dir(&dir()).await.unwrap(), ["a.log"]);
        assert_eq!(disk.read_file(&new).unwrap(), b"payload");

        disk.remove_file(&new).await.unwrap();
        assert!(disk.files().is_empty());
        disk.crash(CrashMode::PowerLoss);
        assert_eq!(disk.files(), std::slice::from_ref(&new));
        disk.remove_file(&new).await.unwrap();
        disk.sync_dir(&dir()).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        assert!(disk.files().is_empty());
        // Nothing names the inode any more, so it is freed.
        assert!(disk.lock().inodes.is_empty());
    }

    #[tokio::test]
    async fn list_dir_lists_direct_children_only() {
        let disk = disk_with_dir(5).await;
        disk.create_dir_all(&dir().join("sub")).await.unwrap();
        for name in ["b", "a", "sub/c"] {
            disk.open(&dir().join(name), OpenMode::CreateNew).await.unwrap();
        }
        assert_eq!(disk.list_dir(&dir()).await.unwrap(), ["a", "b"]);
        assert_eq!(disk.list_dir(&dir().join("sub")).await.unwrap(), ["c"]);
        assert_eq!(disk.list_subdirs(&dir()).await.unwrap(), ["sub"]);
        let error = disk.list_dir(Path::new("/nowhere")).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let error = disk.open(Path::new("/nowhere/x"), OpenMode::CreateOrOpen).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    /// The surviving bytes must be: the durable prefix, then the write's bytes up to a sector
    /// boundary, then at most one garbage sector (the write's part of it), then old bytes.
    #[tokio::test]
    async fn torn_write_tears_at_sector_boundary() {
        let old = vec![0xAA; 2000];
        let write_offset = 700u64;
        let write = vec![0x55; 1500];
        let write_end = write_offset as usize + write.len();
        let mut full = old.clone();
        apply_write(&mut full, write_offset, &write);

        let (mut torn, mut garbage_random) = (0, 0);
        for seed in 0..200 {
            let disk = disk_with_dir(seed).await;
            disk.set_torn_write_probability(1.0);
            let (path, file) = durable_file(&disk, "seg", &old).await;
            file.write_at(write_offset, Bytes::from(write.clone())).await.unwrap();
            disk.crash(CrashMode::PowerLoss);
            let bytes = disk.read_file(&path).unwrap();
            if bytes == full {
                continue; // The whole write persisted.
            }
            torn += 1;
            let sector_first = write_offset / SECTOR_BYTES;
            let sector_last = (write_end as u64 - 1) / SECTOR_BYTES;
            let explained = (sector_first..=sector_last).any(|sector| {
                let tear_start = (sector * SECTOR_BYTES).max(write_offset) as usize;
                let tear_end = (((sector + 1) * SECTOR_BYTES) as usize).min(write_end);
                bytes.len() == old.len().max(tear_end)
                    && bytes[..tear_start] == full[..tear_start]
                    && bytes[tear_end..] == old[tear_end.min(old.len())..]
            });
            assert!(explained, "seed {seed}: not a sector-aligned tear");
            // Random garbage shows as bytes that are neither old, new nor zero.
            if bytes.iter().any(|&b| b != 0xAA && b != 0x55 && b != 0) {
                garbage_random += 1;
            }
        }
        // Half the runs keep the whole write (a prefix of one op); nearly all others tear.
        assert!(torn > 50, "only {torn} of 200 runs tore");
        assert!(garbage_random > 0 && garbage_random < torn, "{garbage_random} of {torn}");
    }

    #[tokio::test]
    async fn stale_handle_fails_after_crash() {
        for mode in [CrashMode::Process, CrashMode::PowerLoss] {
            let disk = disk_with_dir(6).await;
            let (path, file) = durable_file(&disk, "a", b"x").await;
            disk.crash(mode);
            let error = file.read_at(0, 1).await.unwrap_err();
            assert!(error.to_string().contains("stale handle"), "{error}");
            assert!(file.write_at(0, Bytes::from_static(b"y")).await.is_err());
            assert!(file.sync_data().await.is_err());
            assert!(file.len().await.is_err());
            assert!(file.set_len(0).await.is_err());
            drop(file);
            let file = disk.open(&path, OpenMode::Existing).await.unwrap();
            assert_eq!(file.read_at(0, 1).await.unwrap(), b"x");
        }
    }

    #[tokio::test]
    async fn unlinked_open_file_lives_until_its_handle_drops() {
        let disk = disk_with_dir(7).await;
        let (path, file) = durable_file(&disk, "a", b"x").await;
        disk.remove_file(&path).await.unwrap();
        disk.sync_dir(&dir()).await.unwrap();
        assert_eq!(file.read_at(0, 1).await.unwrap(), b"x");
        assert_eq!(disk.lock().inodes.len(), 1);
        drop(file);
        assert!(disk.lock().inodes.is_empty());
    }

    #[tokio::test]
    async fn disk_full_changes_nothing() {
        let disk = disk_with_dir(8).await;
        assert_eq!(disk.available_bytes(&dir()).await.unwrap(), u64::MAX, "unlimited without a capacity");
        let (path, file) = durable_file(&disk, "a", &[1; 60]).await;
        let other = disk.open(&dir().join("b"), OpenMode::CreateNew).await.unwrap();
        other.write_at(0, Bytes::from(vec![2; 30])).await.unwrap();
        disk.set_capacity_bytes(Some(100));
        assert_eq!(disk.available_bytes(&dir()).await.unwrap(), 10, "100 - 60 - 30");

        let error = file.write_at(50, Bytes::from(vec![3; 21])).await.unwrap_err();
        assert!(crate::disk::is_disk_full(&error), "{error}");
        assert_eq!(disk.read_file(&path).unwrap(), [1; 60]);
        let error = file.set_len(71).await.unwrap_err();
        assert!(crate::disk::is_disk_full(&error), "{error}");
        assert_eq!(file.len().await.unwrap(), 60);
        file.sync_data().await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        assert_eq!(disk.read_file(&path).unwrap(), [1; 60]);

        // Exactly at capacity is fine; overwrites in place need no space.
        let file = disk.open(&path, OpenMode::Existing).await.unwrap();
        file.write_at(50, Bytes::from(vec![3; 50])).await.unwrap();
        file.write_at(0, Bytes::from(vec![4; 100])).await.unwrap();
        assert_eq!(file.len().await.unwrap(), 100);
        let error = file.write_at(100, Bytes::from_static(b"z")).await.unwrap_err();
        assert!(crate::disk::is_disk_full(&error));
        // Freeing space makes room again.
        file.set_len(10).await.unwrap();
        file.write_at(10, Bytes::from(vec![5; 90])).await.unwrap();
    }

    #[tokio::test]
    async fn write_error_writes_nothing() {
        let disk = disk_with_dir(9).await;
        let (path, file) = durable_file(&disk, "a", b"abc").await;
        disk.set_write_error_probability(1.0);
        let error = file.write_at(0, Bytes::from_static(b"xyz")).await.unwrap_err();
        assert!(is_eio(&error), "{error}");
        assert_eq!(disk.read_file(&path).unwrap(), b"abc");
    }

    #[tokio::test]
    async fn sync_failure_returns_eio_and_keeps_data_pending() {
        let disk = disk_with_dir(10).await;
        let (path, file) = durable_file(&disk, "a", b"abc").await;
        file.write_at(3, Bytes::from_static(b"def")).await.unwrap();
        disk.fail_next_syncs(2);
        for _ in 0..2 {
            let error = file.sync_data().await.unwrap_err();
            assert!(is_eio(&error), "{error}");
            assert_eq!(disk.file_len_durable(&path), Some(3));
        }
        assert_eq!(disk.stats().syncs, 1);
        assert_eq!(disk.read_file(&path).unwrap(), b"abcdef");

        disk.set_sync_error_probability(1.0);
        assert!(is_eio(&file.sync_data().await.unwrap_err()));
        assert_eq!(disk.file_len_durable(&path), Some(3));
        disk.set_sync_error_probability(0.0);
        file.sync_data().await.unwrap();
        assert_eq!(disk.file_len_durable(&path), Some(6));
    }

    #[tokio::test]
    async fn bad_sector_read_gives_eio() {
        let disk = disk_with_dir(11).await;
        let (path, file) = durable_file(&disk, "a", &[7; 2048]).await;
        disk.add_bad_sector(&path, 2);
        assert_eq!(file.read_at(0, 1024).await.unwrap(), [7; 1024]);
        assert_eq!(file.read_at(1536, 1000).await.unwrap(), [7; 512]);
        for (offset, len) in [(1024, 1), (1535, 1), (1000, 100), (0, 2048)] {
            let error = file.read_at(offset, len).await.unwrap_err();
            assert!(is_eio(&error), "{offset}+{len}: {error}");
        }
        // Deterministic: it fails again.
        assert!(file.read_at(1024, 1).await.is_err());

        disk.set_read_error_probability(1.0);
        assert!(is_eio(&file.read_at(0, 1).await.unwrap_err()));
    }

    #[tokio::test]
    async fn files_unsynced_in_names_pending_writes_and_names() {
        let disk = disk_with_dir(1).await;
        let (path, file) = durable_file(&disk, "a", b"x").await;
        let dir = path.parent().unwrap().to_path_buf();
        assert!(disk.files_unsynced_in(&dir).is_empty());
        file.write_at(1, Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(disk.files_unsynced_in(&dir), vec![path.clone()]);
        file.sync_data().await.unwrap();
        assert!(disk.files_unsynced_in(&dir).is_empty());
        let other = dir.join("b");
        let new = disk.open(&other, OpenMode::CreateOrOpen).await.unwrap();
        new.sync_data().await.unwrap();
        assert_eq!(disk.files_unsynced_in(&dir), vec![other.clone()], "its name is not durable yet");
        disk.sync_dir(&dir).await.unwrap();
        assert!(disk.files_unsynced_in(&dir).is_empty());
    }

    #[tokio::test]
    async fn bit_flips_change_durable_and_current_bytes() {
        let disk = disk_with_dir(12).await;
        let (path, _file) = durable_file(&disk, "a", &[0; 16]).await;
        disk.flip_bit(&path, 9);
        assert_eq!(disk.read_file(&path).unwrap()[1], 2);
        disk.crash(CrashMode::PowerLoss);
        assert_eq!(disk.read_file(&path).unwrap()[1], 2);

        let bits = disk.flip_random_bits(&path, 3);
        assert_eq!(bits.len(), 3);
        assert!(bits.iter().all(|&bit| bit < 128));
        let ones: u32 = disk.read_file(&path).unwrap().iter().map(|byte| byte.count_ones()).sum();
        // Each flip toggles one bit; a bit drawn twice toggles back.
        assert!(matches!(ones, 0 | 2 | 4), "{ones}");
    }

    #[tokio::test]
    async fn latency_delays_operations() {
        let disk = disk_with_dir(13).await;
        let (_, file) = durable_file(&disk, "a", b"x").await;
        let delay = Duration::from_millis(20);
        disk.set_latency(LatencyConfig { read: (delay, delay), write: (delay, delay), sync: (delay, delay * 2) });
        let start = tokio::time::Instant::now();
        file.read_at(0, 1).await.unwrap();
        file.write_at(1, Bytes::from_static(b"y")).await.unwrap();
        file.sync_data().await.unwrap();
        assert!(start.elapsed() >= delay * 3, "{:?}", start.elapsed());
    }

    /// Runs a random sequence of operations with every fault on and returns a transcript.
    async fn transcript(disk_seed: u64) -> Vec<String> {
        let mut ops = StdRng::seed_from_u64(99);
        let disk = disk_with_dir(disk_seed).await;
        disk.set_write_error_probability(0.05);
        disk.set_read_error_probability(0.05);
        disk.set_sync_error_probability(0.1);
        let mut lines = Vec::new();
        let mut files: BTreeMap<u8, SimFile> = BTreeMap::new();
        for _ in 0..400 {
            let name = ops.gen_range(0..4u8);
            let path = dir().join(format!("f{name}"));
            let line = match ops.gen_range(0..9) {
                0 => {
                    let result = disk.open(&path, OpenMode::CreateOrOpen).await;
                    let line = format!("open {:?}", result.as_ref().err());
                    if let Ok(file) = result {
                        files.insert(name, file);
                    }
                    line
                }
                1 | 2 => match files.get(&name) {
                    Some(file) => {
                        let offset = ops.gen_range(0..3000);
                        let data = vec![ops.gen::<u8>(); ops.gen_range(1..1500)];
                        format!("write {:?}", file.write_at(offset, Bytes::from(data)).await)
                    }
                    None => "no file".to_owned(),
                },
                3 => match files.get(&name) {
                    Some(file) => format!("sync {:?}", file.sync_data().await),
                    None => "no file".to_owned(),
                },
                4 => match files.get(&name) {
                    Some(file) => format!("read {:?}", file.read_at(0, 5000).await),
                    None => "no file".to_owned(),
                },
                5 => format!("sync_dir {:?}", disk.sync_dir(&dir()).await),
                6 => {
                    let to = dir().join(format!("f{}", ops.gen_range(0..4u8)));
                    format!("rename {:?}", disk.rename(&path, &to).await)
                }
                7 => {
                    let mode = if ops.gen_bool(0.5) { CrashMode::Process } else { CrashMode::PowerLoss };
                    disk.crash(mode);
                    files.clear();
                    format!("crash {mode:?}")
                }
                _ => format!("remove {:?}", disk.remove_file(&path).await),
            };
            lines.push(line);
        }
        for path in disk.files() {
            lines.push(format!("{path:?} {:?}", disk.read_file(&path)));
        }
        lines.push(format!("{:?}", disk.stats()));
        lines
    }

    #[tokio::test]
    async fn same_seed_same_faults() {
        let first = transcript(42).await;
        assert_eq!(first, transcript(42).await);
        assert_ne!(first, transcript(43).await);
        assert!(first.iter().any(|line| line.contains("Err")));
    }
}
