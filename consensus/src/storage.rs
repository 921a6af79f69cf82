//! raft-rs `Storage` over the segment log: one group's durable state ([`GroupStore`]) and the
//! synchronous view of it that raft reads ([`GroupStorage`]).
//!
//! # The sync/async bridge
//! raft-rs reads its storage synchronously, while the segment log is async (it goes through the
//! `Disk` trait). So the driver owns the [`SegmentLog`] (inside [`GroupStore`]) and raft gets a
//! cheap clone of [`GroupStorage`], an `Arc<Mutex<StorageView>>` that the store updates after
//! every append, truncation, retention pass or reset, and after every hard-state or conf-state
//! save. The lock is a std mutex held only for in-memory work, never across an `.await`.
//!
//! The view holds no second copy of the log, only what raft needs synchronously:
//! - hard state, conf state, first/last index, the term just below the log start (the
//!   metadata of the implicit snapshot at `first_index - 1`) and the log's term runs;
//! - a bounded cache of the newest raft entries, a contiguous window ending at `last_index`.
//!   It is trimmed from the front to `LogConfig::cache_bytes_max`, but never past the applied
//!   index (the log itself is opened with no cache of its own, so entries are cached once):
//!   raft reads the committed-but-unapplied entries synchronously (for `Ready`, leader transfer
//!   and commit-by-vote, contexts where `can_async()` is false), so those stay cached;
//! - the entries of the last asynchronous fetch (see below).
//!
//! Reads the cache cannot serve, in a context that allows it (`GetEntriesContext::can_async`,
//! i.e. appends to a lagging follower), answer `LogTemporarilyUnavailable` and queue a
//! [`FetchRequest`]. The driver reads those entries from the log asynchronously
//! ([`GroupStore::fetch`]), parks them in the view and calls `RawNode::on_entries_fetched`,
//! which makes raft ask again and get them.
//!
//! # Raft entry <-> log entry
//! The log header has `kind`, `record_count` and `timestamp_max`; raft's entry has `entry_type`,
//! `data` and `context`. The mapping (checked both ways, see [`to_log_entry`]):
//! - `EntryNormal`, empty `data` and empty `context`: a `Noop` (what a new leader appends);
//! - `EntryNormal` with a context of exactly [`ENTRY_CONTEXT_BYTES`] bytes, set by the proposer:
//!   `[kind u8][record_count u32 LE][timestamp_max i64 LE]`, kind 1 = `Data`, 4 = `Command`;
//!   the log payload is `data` unchanged (a record batch for `Data`);
//! - `EntryConfChange` / `EntryConfChangeV2` (context must be empty): a `Config` entry whose
//!   payload is `[entry_type u8]` followed by `data`.
//!
//! `base_offset` is the log's `offset_next` at append, a function of the log prefix, so it is
//! equal on every replica that holds the same prefix (log matching).
//!
//! Cost sketch: payloads are `Bytes` on both sides, so converting an entry shares its payload
//! (no copy; a config entry copies its few bytes once to prefix the type); the log encodes it
//! once into its write buffer, and the cache holds the same shared payload; memory is bounded by
//! `LogConfig::cache_bytes_max` plus the unapplied tail plus one fetch of at most raft's
//! `max_size_per_msg`. Reads that miss the cache cost one log read (checksums verified).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use odradek_log::{Disk, EntryKind, HardStateFile, LogConfig, SegmentLog, StartState, StartStateFile, Suspicion};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry as RaftEntry, EntryType, HardState as RaftHardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::conf_state_file::{ConfStateError, ConfStateFile};

/// Size of the proposer's context on a data or command entry.
pub const ENTRY_CONTEXT_BYTES: usize = 13;
/// Asynchronous fetch requests queued per group before new ones are dropped (raft asks again
/// on the next heartbeat response).
pub const FETCH_REQUESTS_MAX: usize = 16;
/// Bytes read from the log per read call when loading or replaying.
pub const LOG_READ_BYTES_MAX: u64 = 1024 * 1024;

const CONTEXT_KIND_DATA: u8 = 1;
const CONTEXT_KIND_COMMAND: u8 = 4;

/// What a proposer says about its entry; travels in the raft entry's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMeta {
    /// A record batch of `record_count >= 1` records (takes that many offsets).
    Data { record_count: u32, timestamp_max: i64 },
    /// A state-machine command without records.
    Command,
}

impl EntryMeta {
    /// The raft entry context that carries this meta.
    pub fn encode(self) -> Vec<u8> {
        let (kind, record_count, timestamp_max) = match self {
            EntryMeta::Data { record_count, timestamp_max } => (CONTEXT_KIND_DATA, record_count, timestamp_max),
            EntryMeta::Command => (CONTEXT_KIND_COMMAND, 0, -1),
        };
        let mut out = Vec::with_capacity(ENTRY_CONTEXT_BYTES);
        out.push(kind);
        out.extend_from_slice(&record_count.to_le_bytes());
        out.extend_from_slice(&timestamp_max.to_le_bytes());
        out
    }

    fn decode(context: &[u8]) -> Option<EntryMeta> {
        if context.len() != ENTRY_CONTEXT_BYTES {
            return None;
        }
        let record_count = u32::from_le_bytes(context[1..5].try_into().expect("4 bytes"));
        let timestamp_max = i64::from_le_bytes(context[5..13].try_into().expect("8 bytes"));
        match context[0] {
            CONTEXT_KIND_DATA if record_count > 0 => Some(EntryMeta::Data { record_count, timestamp_max }),
            CONTEXT_KIND_COMMAND if record_count == 0 && timestamp_max == -1 => Some(EntryMeta::Command),
            _ => None,
        }
    }
}

/// Errors of the consensus storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageFault {
    #[error("segment log: {0}")]
    Log(#[from] odradek_log::Error),
    #[error("conf state: {0}")]
    ConfState(#[from] ConfStateError),
    #[error("raft entry {index} cannot be stored: {detail}")]
    InvalidEntry { index: u64, detail: String },
    #[error("log entry {index} is not a raft entry this node wrote: {detail}")]
    ForeignEntry { index: u64, detail: String },
    /// The log ends below the commit index the hard state saved, and no cut of a damaged last
    /// entry explains it (that makes the replica suspect instead): entries this node knew
    /// committed vanished whole. The group cannot be served from this replica's files
    /// (CHECKLISTS R8 e).
    #[error("the log ends at {log_end} after recovery cut it from index {cut} on, below the saved commit index {commit}")]
    CommittedEntriesLost { commit: u64, log_end: u64, cut: u64 },
}

impl StorageFault {
    /// Damaged files the replica cannot serve the group from (not an I/O error that a retry
    /// may get past).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageFault::Log(odradek_log::Error::Corruption { .. } | odradek_log::Error::HardStateCorrupt { .. })
                | StorageFault::ConfState(ConfStateError::Corrupt { .. })
                | StorageFault::CommittedEntriesLost { .. }
        )
    }
}

/// Converts a raft entry to the log's entry at `base_offset` (the log's next offset).
pub fn to_log_entry(entry: &RaftEntry, base_offset: u64) -> Result<odradek_log::Entry, StorageFault> {
    let invalid = |detail: &str| StorageFault::InvalidEntry { index: entry.index, detail: detail.into() };
    let payload = entry.data.clone();
    match entry.get_entry_type() {
        EntryType::EntryNormal if entry.data.is_empty() && entry.context.is_empty() => {
            Ok(odradek_log::Entry::without_records(entry.term, entry.index, EntryKind::Noop, base_offset, Bytes::new()))
        }
        EntryType::EntryNormal => match EntryMeta::decode(&entry.context) {
            Some(EntryMeta::Data { record_count, timestamp_max }) => {
                Ok(odradek_log::Entry::data(entry.term, entry.index, base_offset, record_count, timestamp_max, payload))
            }
            Some(EntryMeta::Command) => {
                Ok(odradek_log::Entry::without_records(entry.term, entry.index, EntryKind::Command, base_offset, payload))
            }
            None => Err(invalid("a normal entry with data needs an EntryMeta context")),
        },
        entry_type @ (EntryType::EntryConfChange | EntryType::EntryConfChangeV2) => {
            if !entry.context.is_empty() {
                return Err(invalid("conf change entries carry no context"));
            }
            let mut bytes = Vec::with_capacity(1 + entry.data.len());
            bytes.push(entry_type as u8);
            bytes.extend_from_slice(&entry.data);
            Ok(odradek_log::Entry::without_records(entry.term, entry.index, EntryKind::Config, base_offset, Bytes::from(bytes)))
        }
    }
}

/// Converts a log entry back to the raft entry it was written from.
pub fn to_raft_entry(entry: &odradek_log::Entry) -> Result<RaftEntry, StorageFault> {
    let foreign = |detail: &str| StorageFault::ForeignEntry { index: entry.index, detail: detail.into() };
    let mut out = RaftEntry { term: entry.term, index: entry.index, ..RaftEntry::default() };
    match entry.kind {
        EntryKind::Noop => {
            if !entry.payload.is_empty() {
                return Err(foreign("a noop with a payload"));
            }
        }
        EntryKind::Data => {
            let meta = EntryMeta::Data { record_count: entry.record_count, timestamp_max: entry.timestamp_max };
            out.context = meta.encode().into();
            out.data = entry.payload.clone();
        }
        EntryKind::Command => {
            out.context = EntryMeta::Command.encode().into();
            out.data = entry.payload.clone();
        }
        EntryKind::Config => {
            let entry_type = match entry.payload.first() {
                Some(&byte) if byte == EntryType::EntryConfChange as u8 => EntryType::EntryConfChange,
                Some(&byte) if byte == EntryType::EntryConfChangeV2 as u8 => EntryType::EntryConfChangeV2,
                _ => return Err(foreign("a config entry without its entry type")),
            };
            out.set_entry_type(entry_type);
            out.data = entry.payload.slice(1..);
        }
    }
    Ok(out)
}

/// The log crate's hard state as raft's.
pub fn raft_hard_state(state: odradek_log::HardState) -> RaftHardState {
    RaftHardState { term: state.term, vote: state.vote, commit: state.commit, ..RaftHardState::default() }
}

fn raft_entry_bytes(entry: &RaftEntry) -> usize {
    entry.data.len() + entry.context.len() + 32
}

/// Entries raft asked for in an async-capable context; the driver reads them from the log.
#[derive(Debug)]
pub struct FetchRequest {
    pub low: u64,
    pub high: u64,
    pub bytes_max: Option<u64>,
    pub context: GetEntriesContext,
}

/// What raft reads synchronously; updated by [`GroupStore`] after every change.
#[derive(Debug, Default)]
pub(crate) struct StorageView {
    hard_state: RaftHardState,
    conf_state: ConfState,
    /// The index of the last conf change `conf_state` includes: it travels in the snapshot,
    /// whose own index (the log start) can be below it.
    conf_state_index: u64,
    first_index: u64,
    last_index: u64,
    /// Term of `first_index - 1`: the implicit snapshot's term.
    term_prev: u64,
    /// Offset of the first record in the log: travels in the metadata snapshot.
    offset_start: u64,
    /// The state machine's start state (`odradek_log::StartState`): travels in the snapshot.
    start_state: Option<StartState>,
    /// (first index, term) of each run of equal terms over `first_index ..= last_index`.
    terms: Vec<(u64, u64)>,
    /// Contiguous, ending at `last_index` (or empty); each with its base offset.
    cache: VecDeque<(RaftEntry, u64)>,
    cache_bytes: usize,
    /// Trim the cache to this (the group's `LogConfig::cache_bytes_max`).
    cache_bytes_max: usize,
    /// Entries above this are never trimmed from the cache.
    applied: u64,
    /// The last async fetch: contiguous entries (possibly below the cache).
    fetched: Vec<RaftEntry>,
    fetch_requests: Vec<FetchRequest>,
}

impl StorageView {
    fn cache_first(&self) -> u64 {
        self.cache.front().map_or(self.last_index + 1, |(e, _)| e.index)
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first_index {
            return Some(self.term_prev);
        }
        if index < self.first_index || index > self.last_index {
            return None;
        }
        let at = self.terms.partition_point(|&(first, _)| first <= index);
        assert!(at > 0, "term runs cover the log");
        Some(self.terms[at - 1].1)
    }

    fn on_append<'a>(&mut self, entries: impl Iterator<Item = (&'a RaftEntry, u64)>) {
        for (entry, base_offset) in entries {
            assert_eq!(entry.index, self.last_index + 1, "appends continue the log");
            if self.terms.last().map(|&(_, term)| term) != Some(entry.term) {
                self.terms.push((entry.index, entry.term));
            }
            self.last_index = entry.index;
            self.cache_bytes += raft_entry_bytes(entry);
            self.cache.push_back((entry.clone(), base_offset));
        }
        self.trim_cache();
        assert!(self.cache.back().is_none_or(|(entry, _)| entry.index == self.last_index), "the entry cache ends at the log end");
    }

    fn on_truncate(&mut self, from_index: u64) {
        assert!(from_index > self.hard_state.commit, "never truncate committed entry {from_index}");
        assert!(from_index >= self.first_index, "truncation from {from_index} below the log start {}", self.first_index);
        self.terms.truncate(self.terms.partition_point(|&(first, _)| first < from_index));
        while self.cache.back().is_some_and(|(e, _)| e.index >= from_index) {
            let (entry, _) = self.cache.pop_back().expect("checked");
            self.cache_bytes -= raft_entry_bytes(&entry);
        }
        self.fetched.retain(|e| e.index < from_index);
        self.last_index = from_index - 1;
    }

    fn on_log_start(&mut self, first_index: u64, term_prev: u64, offset_start: u64) {
        assert!(first_index >= self.first_index, "the log start moves back from {} to {first_index}", self.first_index);
        self.first_index = first_index;
        self.term_prev = term_prev;
        self.offset_start = offset_start;
        let keep_from = self.terms.partition_point(|&(start, _)| start <= first_index).saturating_sub(1);
        self.terms.drain(..keep_from);
        if self.last_index < first_index {
            self.last_index = first_index - 1;
            self.terms.clear();
            self.cache.clear();
            self.cache_bytes = 0;
        }
        while self.cache.front().is_some_and(|(e, _)| e.index < first_index) {
            let (entry, _) = self.cache.pop_front().expect("checked");
            self.cache_bytes -= raft_entry_bytes(&entry);
        }
        self.fetched.retain(|e| e.index >= first_index);
    }

    /// The log was replaced by an empty one that starts at `first_index`: also where the old
    /// one held entries after the snapshot (of terms the snapshot's leader overwrote), which
    /// raft must not count as this replica's any more (it reports its last index to the leader).
    fn on_reset(&mut self, first_index: u64, term_prev: u64, offset_start: u64) {
        self.on_log_start(first_index, term_prev, offset_start);
        self.last_index = first_index - 1;
        self.terms.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.fetched.clear();
    }

    fn trim_cache(&mut self) {
        while self.cache_bytes > self.cache_bytes_max && self.cache.front().is_some_and(|(e, _)| e.index <= self.applied) {
            let (entry, _) = self.cache.pop_front().expect("checked");
            self.cache_bytes -= raft_entry_bytes(&entry);
        }
    }

    /// Serves `low .. high` from the cache or the last fetch; `None` when neither has `low`.
    fn serve(&self, low: u64, high: u64) -> Option<Vec<RaftEntry>> {
        let cache_first = self.cache_first();
        if low >= cache_first {
            let skip = (low - cache_first) as usize;
            return Some(self.cache.iter().skip(skip).take((high - low) as usize).map(|(e, _)| e.clone()).collect());
        }
        let fetched_first = self.fetched.first()?.index;
        if low < fetched_first || low > self.fetched.last()?.index {
            return None;
        }
        let skip = (low - fetched_first) as usize;
        Some(self.fetched.iter().skip(skip).take((high - low) as usize).cloned().collect())
    }
}

/// raft-rs `Storage` for one group: a cheap clone of the shared view.
#[derive(Clone, Debug, Default)]
pub struct GroupStorage {
    view: Arc<Mutex<StorageView>>,
}

impl GroupStorage {
    fn lock(&self) -> MutexGuard<'_, StorageView> {
        self.view.lock().expect("storage view lock poisoned by a panic")
    }

    /// Takes the queued async fetch requests (the driver serves them).
    pub fn take_fetch_requests(&self) -> Vec<FetchRequest> {
        std::mem::take(&mut self.lock().fetch_requests)
    }

    /// Records the applied index: entries above it stay cached for raft's synchronous reads.
    pub fn set_applied(&self, applied: u64) {
        let mut view = self.lock();
        assert!(applied >= view.applied, "applied index regressed: {applied} < {}", view.applied);
        assert!(applied <= view.last_index, "applied index {applied} above the log end {}", view.last_index);
        view.applied = applied;
        view.trim_cache();
    }

    pub fn hard_state(&self) -> RaftHardState {
        self.lock().hard_state.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.lock().conf_state.clone()
    }

    /// The base offset of a cached entry (every unapplied entry is cached).
    pub fn base_offset(&self, index: u64) -> Option<u64> {
        let view = self.lock();
        let first = view.cache_first();
        let (entry, base_offset) = view.cache.get(usize::try_from(index.checked_sub(first)?).ok()?)?;
        assert_eq!(entry.index, index);
        Some(*base_offset)
    }

    /// The first cached index (entries from here to `last_index` are in memory).
    pub fn cache_first_index(&self) -> u64 {
        self.lock().cache_first()
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let view = self.lock();
        Ok(RaftState::new(view.hard_state.clone(), view.conf_state.clone()))
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, context: GetEntriesContext) -> raft::Result<Vec<RaftEntry>> {
        let max_size = max_size.into();
        let mut view = self.lock();
        if low < view.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > view.last_index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if low == high {
            return Ok(Vec::new());
        }
        if let Some(mut entries) = view.serve(low, high) {
            // Hot (raft reads here on every append it sends): checked in debug builds only.
            debug_assert!(entries.iter().zip(low..).all(|(entry, index)| entry.index == index), "entries {low}..{high} served with a gap");
            raft::util::limit_size(&mut entries, max_size);
            return Ok(entries);
        }
        if !context.can_async() {
            // Unapplied entries are always cached, and raft reads only those synchronously.
            tracing::error!(low, high, cache_first = view.cache_first(), "synchronous raft read below the entry cache");
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if view.fetch_requests.len() < FETCH_REQUESTS_MAX {
            view.fetch_requests.push(FetchRequest { low, high, bytes_max: max_size, context });
        }
        Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable))
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let view = self.lock();
        if index + 1 < view.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        view.term_at(index).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().last_index)
    }

    /// The snapshot is the log start (index, term), the current configuration, and in `data`
    /// the start offset, the index of the last conf change the configuration includes, and the
    /// group's start state, if it has one ([`encode_snapshot_data`]): what the state machine
    /// needs besides the entries after it.
    ///
    /// The configuration is the latest applied, which can be newer than the snapshot's index
    /// (a conf change in the log after its start): the follower keeps it with that conf change's
    /// index, so that it skips the conf changes it already includes when the entries after the
    /// snapshot reach it. Taken as of the snapshot's index instead, a joint configuration
    /// re-applied its own entering change ("can't apply simple config change in joint config")
    /// and stopped the follower's driver.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let view = self.lock();
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = view.first_index - 1;
        metadata.term = view.term_prev;
        metadata.set_conf_state(view.conf_state.clone());
        if metadata.index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        snapshot.data = encode_snapshot_data(view.offset_start, view.conf_state_index, view.start_state.as_ref()).into();
        Ok(snapshot)
    }
}

/// A snapshot's `data`: the start offset (u64 LE), the index of the last conf change its
/// configuration includes (u64 LE), then, if the group has a start state, its `as_of_index`
/// (u64 LE) and bytes.
pub fn encode_snapshot_data(offset_start: u64, conf_index: u64, start_state: Option<&StartState>) -> Vec<u8> {
    let mut data = offset_start.to_le_bytes().to_vec();
    data.extend_from_slice(&conf_index.to_le_bytes());
    if let Some(state) = start_state {
        data.extend_from_slice(&state.as_of_index.to_le_bytes());
        data.extend_from_slice(&state.bytes);
    }
    data
}

/// What a snapshot's `data` holds ([`encode_snapshot_data`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotData {
    pub offset_start: u64,
    /// The index of the last conf change the snapshot's configuration includes.
    pub conf_index: u64,
    pub start_state: Option<StartState>,
}

/// Reads [`encode_snapshot_data`]; `None` if `data` is shorter than a start offset and a conf
/// index or holds a partial start state.
pub fn decode_snapshot_data(data: &[u8]) -> Option<SnapshotData> {
    let word = |at: usize| -> Option<u64> { Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?)) };
    let (offset_start, conf_index) = (word(0)?, word(8)?);
    let start_state = match data.len() {
        16 => None,
        17..24 => return None,
        _ => Some(StartState { as_of_index: word(16)?, bytes: Bytes::copy_from_slice(&data[24..]) }),
    };
    Some(SnapshotData { offset_start, conf_index, start_state })
}

/// File names inside a group's directory.
pub const LOG_DIR: &str = "log";
pub const HARD_STATE_FILE: &str = "hard_state";
pub const CONF_STATE_FILE: &str = "conf_state";
pub const START_STATE_FILE: &str = "start_state";

/// One group's durable state: the segment log (which is the raft log), the hard-state file and
/// the conf-state file, plus the [`GroupStorage`] view it keeps current. Owned by the driver.
pub struct GroupStore<D: Disk> {
    dir: PathBuf,
    /// Where recovery cut a torn tail off the log on open, if it did.
    recovery_cut: Option<u64>,
    log: SegmentLog<D>,
    hard_state_file: HardStateFile<D>,
    conf_state_file: ConfStateFile<D>,
    start_state_file: StartStateFile<D>,
    /// The log's planted bugs (start-state-saved-without-sync is read here).
    planted: odradek_log::Planted,
    storage: GroupStorage,
}

impl<D: Disk> GroupStore<D> {
    /// Opens (or creates) the group in `dir`. `initial_conf` is the configuration of a new group
    /// (all replicas bootstrap with the same one); an existing group keeps its saved one. Loads
    /// the entries above the persisted commit index into the view's cache: raft reads them
    /// synchronously once they commit.
    pub async fn open(
        disk: D,
        dir: impl AsRef<Path>,
        log_config: LogConfig,
        initial_conf: &ConfState,
        now_ms: i64,
    ) -> Result<GroupStore<D>, StorageFault> {
        let dir = dir.as_ref().to_path_buf();
        let (cache_bytes_max, planted) = (log_config.cache_bytes_max, log_config.planted);
        let log_config = LogConfig { cache_bytes_max: 0, ..log_config };
        let (mut log, report) = SegmentLog::open_deferring_cut(disk.clone(), dir.join(LOG_DIR), log_config, now_ms).await?;
        let recovery_cut = report.torn_tail.map(|torn| torn.index);
        let (mut hard_state_file, mut hard) = HardStateFile::open_with(&disk, dir.join(HARD_STATE_FILE), &planted).await?;
        let (conf_state_file, conf, _) = ConfStateFile::open(&disk, dir.join(CONF_STATE_FILE), initial_conf).await?;
        let (start_state_file, start_state) = StartStateFile::open(&disk, dir.join(START_STATE_FILE)).await?;
        // Every trim and reset leaves a record first, so a log that starts after index 1 has one
        // that reaches its start: a missing or older record is a save the disk lost, and the
        // replica cannot rebuild its state machine from its own files (set aside and repaired).
        start_state_file.check_covers(log.first_index())?;
        let start_state = start_state.filter(|state| !state.is_nothing_needed());
        // Protocol-aware recovery (CHECKLISTS R8 e): a cut that may have taken whole entries
        // may have taken acknowledged ones (rot of the last entry looks exactly like a torn
        // write), so the replica becomes suspect, merged with any suspicion it already had.
        // The suspicion and a new term (no vote) are saved together, before the cut: a leader
        // that may still count this replica's lost acknowledgements is of an older term, and a
        // crash before the cut finds the same tail again. See `node` module `suspect`.
        let lost = report.torn_tail.filter(|torn| torn.index_bound() >= torn.index);
        let lost = lost.map(|torn| Suspicion { cut: torn.index, bound: torn.index_bound().max(hard.commit), term: hard.term });
        // A commit persisted lazily may lag; it never exceeds the log (entries at or below a
        // persisted commit were fsynced first) unless rot took committed entries with the last
        // one. Then the replica is suspect like any other cut and learns the commit again from
        // a leader (the state machines replay only up to the lowered commit).
        if hard.commit > log.last_index() && lost.is_none() {
            let cut = recovery_cut.unwrap_or(log.last_index() + 1);
            return Err(StorageFault::CommittedEntriesLost { commit: hard.commit, log_end: log.last_index(), cut });
        }
        if let Some(suspect) = hard.suspect.into_iter().chain(lost).reduce(Suspicion::merge) {
            let commit = hard.commit.min(log.last_index());
            hard = odradek_log::HardState { term: hard.term + 1, vote: 0, commit, suspect: Some(suspect) };
            hard_state_file.save(hard).await?;
        }
        log.cut_torn_tail().await?;
        assert!(hard.commit <= log.last_index(), "opened with commit {} above the log end {}", hard.commit, log.last_index());
        if hard.commit + 1 < log.first_index() {
            // A snapshot's install resets the log, then saves the snapshot's index as the commit:
            // a crash in between finds the log starting above the saved commit (raft refuses
            // such a hard state). Everything below the log start was committed (a snapshot is of
            // committed entries; retention stays below the persisted commit).
            hard = odradek_log::HardState { commit: log.first_index() - 1, ..hard };
            hard_state_file.save(hard).await?;
        }
        // What the persisted commit covers is committed: readers may read it at once.
        log.set_readable_index(hard.commit);
        let hard_state = raft_hard_state(hard);
        let mut view = StorageView {
            hard_state,
            conf_state: conf,
            conf_state_index: conf_state_file.index(),
            first_index: log.first_index(),
            last_index: log.first_index() - 1,
            term_prev: log.prev_term(),
            offset_start: log.offset_start(),
            start_state,
            applied: hard.commit.max(log.first_index() - 1),
            cache_bytes_max,
            ..StorageView::default()
        };
        let mut low = view.applied + 1;
        let mut entries = Vec::new();
        // Term runs for the part below the loaded window come from the log.
        for index in log.first_index()..low.min(log.last_index() + 1) {
            let term = log.term(index).expect("index within the log");
            if view.terms.last().map(|&(_, t)| t) != Some(term) {
                view.terms.push((index, term));
            }
        }
        view.last_index = (low - 1).min(log.last_index()).max(log.first_index() - 1);
        while low <= log.last_index() {
            for entry in log.read(low, log.last_index() + 1, LOG_READ_BYTES_MAX).await? {
                low = entry.index + 1;
                entries.push((to_raft_entry(&entry)?, entry.base_offset));
            }
        }
        view.on_append(entries.iter().map(|(e, offset)| (e, *offset)));
        assert_eq!(view.last_index, log.last_index());
        let storage = GroupStorage { view: Arc::new(Mutex::new(view)) };
        Ok(GroupStore { dir, recovery_cut, log, hard_state_file, conf_state_file, start_state_file, planted, storage })
    }

    /// The first index recovery cut off as a torn tail when this store opened, if any.
    pub fn recovery_cut(&self) -> Option<u64> {
        self.recovery_cut
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The raft `Storage` handle (a clone shares the view).
    pub fn storage(&self) -> GroupStorage {
        self.storage.clone()
    }

    pub fn log(&self) -> &SegmentLog<D> {
        &self.log
    }

    /// A read-only view of the log for readers outside the driver (`odradek_log::LogReader`).
    pub fn reader(&self) -> odradek_log::LogReader<D::File> {
        self.log.reader()
    }

    /// Entries up to `index` are committed (see [`SegmentLog::set_readable_index`]).
    pub fn set_readable_index(&mut self, index: u64) {
        assert!(index <= self.storage.lock().hard_state.commit, "readable index {index} above the commit");
        self.log.set_readable_index(index);
    }

    /// Index of the last conf change the saved conf state includes.
    pub fn conf_state_index(&self) -> u64 {
        self.conf_state_file.index()
    }

    /// The hard state last saved.
    pub fn hard_state_saved(&self) -> odradek_log::HardState {
        self.hard_state_file.get()
    }

    /// Appends raft's entries (from a `Ready`), first truncating a conflicting suffix. Not
    /// durable until [`GroupStore::sync`]. The truncation itself is durable when it returns.
    pub async fn append(&mut self, entries: &[RaftEntry], now_ms: i64) -> Result<(), StorageFault> {
        let Some(first) = entries.first() else { return Ok(()) };
        assert!(entries.windows(2).all(|pair| pair[1].index == pair[0].index + 1), "append of {} entries with a gap", entries.len());
        assert!(first.index >= self.log.first_index(), "append {} below the log start {}", first.index, self.log.first_index());
        assert!(first.index <= self.log.last_index() + 1, "append {} leaves a gap after {}", first.index, self.log.last_index());
        if first.index <= self.log.last_index() {
            let commit = self.storage.lock().hard_state.commit;
            assert!(first.index > commit, "raft truncates committed entry {} (commit {commit})", first.index);
            self.log.truncate_suffix(first.index).await?;
            self.storage.lock().on_truncate(first.index);
        }
        let mut offset = self.log.offset_next();
        let mut log_entries = Vec::with_capacity(entries.len());
        for entry in entries {
            let log_entry = to_log_entry(entry, offset)?;
            offset = log_entry.offset_next();
            log_entries.push(log_entry);
        }
        self.log.append(&log_entries, now_ms).await?;
        self.storage.lock().on_append(entries.iter().zip(log_entries.iter().map(|e| e.base_offset)));
        assert_eq!(self.log.last_index(), entries.last().expect("not empty").index);
        assert_eq!(self.storage.lock().last_index, self.log.last_index(), "the view ends where the log does");
        assert!(self.log.synced_index() < first.index, "appended entries are durable only after sync");
        Ok(())
    }

    /// Makes every appended entry durable (one fdatasync per dirty segment).
    pub async fn sync(&mut self) -> Result<(), StorageFault> {
        self.log.sync().await?;
        assert_eq!(self.log.synced_index(), self.log.last_index(), "sync leaves every appended entry synced");
        Ok(())
    }

    /// Whether appended entries still wait for [`GroupStore::sync`].
    pub fn is_dirty(&self) -> bool {
        self.log.synced_index() < self.log.last_index()
    }

    /// Durably saves the hard state (an fsync). The view keeps raft's latest hard state, which
    /// the driver sets with [`GroupStore::set_hard_state`] (the saved commit may lag it).
    pub async fn save_hard_state(&mut self, state: &RaftHardState) -> Result<(), StorageFault> {
        let before = self.hard_state_file.get();
        assert!(state.term >= before.term, "term {} saved below the saved term {}", state.term, before.term);
        assert!(state.commit >= before.commit, "commit {} saved below the saved commit {}", state.commit, before.commit);
        // R8 c: one vote per term, never changed once saved.
        assert!(
            state.term > before.term || before.vote == 0 || state.vote == before.vote,
            "term {}: vote {} saved over vote {}",
            state.term,
            state.vote,
            before.vote
        );
        let saved = odradek_log::HardState { term: state.term, vote: state.vote, commit: state.commit, suspect: before.suspect };
        assert!(state.commit <= self.log.synced_index(), "commit {} saved above the durable log {}", state.commit, self.log.synced_index());
        self.hard_state_file.save(saved).await?;
        Ok(())
    }

    /// The saved suspicion, if this replica may have lost entries it acknowledged.
    pub fn suspicion(&self) -> Option<Suspicion> {
        self.hard_state_file.get().suspect
    }

    /// Durably makes the replica suspect at run time (its log turned out behind what it
    /// acknowledged, see `node` module `suspect`): saves `suspicion`, merged with any it had,
    /// together with `term` (no vote), which must be above the saved term.
    pub async fn open_suspicion(&mut self, suspicion: Suspicion, term: u64) -> Result<(), StorageFault> {
        let saved = self.hard_state_file.get();
        assert!(term > saved.term, "a suspicion opens with a new term: {term} after {}", saved.term);
        assert!(suspicion.cut <= self.log.last_index() + 1 && suspicion.cut <= suspicion.bound, "{suspicion:?}");
        let suspect = saved.suspect.into_iter().chain([suspicion]).reduce(Suspicion::merge);
        let commit = saved.commit.min(self.log.synced_index());
        self.hard_state_file.save(odradek_log::HardState { term, vote: 0, commit, suspect }).await?;
        Ok(())
    }

    /// Durably drops the suspicion (the rest of the saved hard state stays).
    pub async fn clear_suspicion(&mut self) -> Result<(), StorageFault> {
        let saved = self.hard_state_file.get();
        assert!(saved.suspect.is_some(), "clearing a suspicion this replica does not hold");
        self.hard_state_file.save(odradek_log::HardState { suspect: None, ..saved }).await?;
        Ok(())
    }

    /// Updates the view's hard state without saving (a commit-only change persisted lazily).
    pub fn set_hard_state(&self, state: &RaftHardState) {
        let mut view = self.storage.lock();
        assert!(state.term >= view.hard_state.term, "raft's term moved back from {} to {}", view.hard_state.term, state.term);
        assert!(state.commit >= view.hard_state.commit, "raft's commit moved back from {} to {}", view.hard_state.commit, state.commit);
        view.hard_state = state.clone();
    }

    /// Durably saves the configuration that results from the conf change at `index`.
    pub async fn save_conf_state(&mut self, state: &ConfState, index: u64) -> Result<(), StorageFault> {
        self.conf_state_file.save(state, index).await?;
        let mut view = self.storage.lock();
        view.conf_state = state.clone();
        view.conf_state_index = index;
        Ok(())
    }

    /// Reads `low .. high` (at most `bytes_max`, at least one entry) from the log as raft entries.
    pub async fn read(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<RaftEntry>, StorageFault> {
        let entries: Vec<RaftEntry> = self.log.read(low, high, bytes_max).await?.iter().map(to_raft_entry).collect::<Result<_, _>>()?;
        assert!(entries.iter().zip(low..high).all(|(entry, index)| entry.index == index), "read {low}..{high} back with a gap");
        assert!(entries.len() as u64 <= high.saturating_sub(low), "read {low}..{high} back past its end");
        Ok(entries)
    }

    /// Serves one async fetch request: reads the entries and parks them in the view, so raft's
    /// retry (after `RawNode::on_entries_fetched`) finds them. Returns the request's context.
    pub async fn fetch(&self, request: FetchRequest) -> Result<GetEntriesContext, StorageFault> {
        let bytes_max = request.bytes_max.unwrap_or(LOG_READ_BYTES_MAX).min(LOG_READ_BYTES_MAX);
        let first = self.log.first_index();
        let high = request.high.min(self.log.last_index() + 1);
        if request.low >= first && request.low < high {
            let entries = self.read(request.low, high, bytes_max).await?;
            self.storage.lock().fetched = entries;
        }
        Ok(request.context)
    }

    /// Deletes segments out of retention below `index_bound` (at most the persisted commit) and
    /// moves the view's log start.
    pub async fn enforce_retention(&mut self, now_ms: i64, index_bound: u64) -> Result<odradek_log::RetentionReport, StorageFault> {
        assert!(index_bound <= self.hard_state_file.get().commit + 1, "retention above the persisted commit");
        self.retain_below(now_ms, index_bound).await
    }

    /// [`GroupStore::enforce_retention`] without its check of the bound against the persisted
    /// commit: only the planted bug retention-past-commit calls it (R12 a must catch it).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub async fn enforce_retention_past_commit(
        &mut self,
        now_ms: i64,
        index_bound: u64,
    ) -> Result<odradek_log::RetentionReport, StorageFault> {
        self.retain_below(now_ms, index_bound).await
    }

    /// The group's start state (see [`odradek_log::StartState`]), if it has one (a record that
    /// nothing is needed is none).
    pub fn start_state(&self) -> Option<&StartState> {
        self.start_state_file.current().filter(|state| !state.is_nothing_needed())
    }

    /// Saves the group's start state durably before a trim or a reset moves the log start to
    /// at most `log_start` (and hands it to snapshots). `None` (the state machine keeps
    /// nothing) saves the record that nothing is needed as of `log_start - 1`: every trim leaves
    /// a record, so a reopened log can tell a lost save from a group that never needed one
    /// ([`odradek_log::StartStateFile::check_covers`]). A record that nothing is needed which
    /// still reaches `log_start` is not written again.
    pub async fn save_start_state(&mut self, state: Option<StartState>, log_start: u64) -> Result<(), StorageFault> {
        assert!(log_start >= 1, "a log starts at index 1 or later");
        let record = state.unwrap_or_else(|| StartState::nothing_needed(log_start - 1));
        assert!(record.as_of_index + 1 >= log_start, "a start state as of {} for a log start at {log_start}", record.as_of_index);
        let current = self.start_state_file.current();
        let still_covers = current.is_some_and(|c| c.is_nothing_needed() && c.as_of_index + 1 >= log_start);
        if !(record.is_nothing_needed() && still_covers) {
            let sync = !self.planted.start_state_saved_without_sync();
            self.start_state_file.save_syncing(record.clone(), sync).await?;
        }
        self.storage.lock().start_state = Some(record).filter(|state| !state.is_nothing_needed());
        Ok(())
    }

    async fn retain_below(&mut self, now_ms: i64, index_bound: u64) -> Result<odradek_log::RetentionReport, StorageFault> {
        let report = self.log.enforce_retention(now_ms, index_bound).await?;
        assert!(self.log.first_index() <= index_bound, "retention deleted index {} and above", index_bound);
        self.storage.lock().on_log_start(self.log.first_index(), self.log.prev_term(), self.log.offset_start());
        assert_eq!(self.storage.lock().last_index, self.log.last_index(), "the view ends where the log does after retention");
        Ok(report)
    }

    /// Replaces the log with an empty one starting after a snapshot at (`index`, `term`) whose
    /// next offset is `offset_next`.
    pub async fn reset(&mut self, index: u64, term: u64, offset_next: u64, now_ms: i64) -> Result<(), StorageFault> {
        self.log.reset(index + 1, offset_next, term, now_ms).await?;
        assert_eq!((self.log.first_index(), self.log.last_index()), (index + 1, index), "a reset log is empty after the snapshot");
        self.storage.lock().on_reset(index + 1, term, offset_next);
        assert_eq!(self.storage.lock().last_index, self.log.last_index(), "the view ends where the reset log does");
        Ok(())
    }
}

/// The conf change encoded in a `Config` raft entry, for the driver to apply.
pub fn decode_conf_change(entry: &RaftEntry) -> Result<raft::eraftpb::ConfChangeV2, StorageFault> {
    let invalid = |detail: String| StorageFault::InvalidEntry { index: entry.index, detail };
    match entry.get_entry_type() {
        EntryType::EntryConfChange => {
            let change = raft::eraftpb::ConfChange::parse_from_bytes(&entry.data).map_err(|e| invalid(e.to_string()))?;
            // raft-proto's `ConfChangeI::into_v2`, which raft does not re-export.
            let mut single = raft::eraftpb::ConfChangeSingle::default();
            single.set_change_type(change.get_change_type());
            single.node_id = change.node_id;
            let mut v2 = raft::eraftpb::ConfChangeV2::default();
            v2.mut_changes().push(single);
            v2.context = change.context;
            Ok(v2)
        }
        EntryType::EntryConfChangeV2 => raft::eraftpb::ConfChangeV2::parse_from_bytes(&entry.data).map_err(|e| invalid(e.to_string())),
        EntryType::EntryNormal => Err(invalid("not a conf change".into())),
    }
}

#[cfg(test)]
mod tests {
    use odradek_log::{CrashMode, SimDisk};
    use raft::Storage as _;

    use super::*;

    #[test]
    fn snapshot_data_round_trips_and_short_or_partial_data_is_refused() {
        let state = StartState { as_of_index: 40, bytes: Bytes::from_static(b"table") };
        for start_state in [None, Some(state)] {
            let data = encode_snapshot_data(1234, 17, start_state.as_ref());
            assert_eq!(decode_snapshot_data(&data), Some(SnapshotData { offset_start: 1234, conf_index: 17, start_state }));
        }
        let data = encode_snapshot_data(1234, 17, None);
        assert_eq!(decode_snapshot_data(&data[..8]), None, "no conf index");
        let mut partial = data.clone();
        partial.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_snapshot_data(&partial), None, "a start state cut inside its index");
    }

    fn conf(voters: &[u64]) -> ConfState {
        let mut state = ConfState::default();
        state.set_voters(voters.to_vec());
        state
    }

    fn normal(term: u64, index: u64, data: &[u8], meta: Option<EntryMeta>) -> RaftEntry {
        let context = meta.map(EntryMeta::encode).unwrap_or_default().into();
        RaftEntry { term, index, data: data.to_vec().into(), context, ..RaftEntry::default() }
    }

    fn conf_change(term: u64, index: u64) -> RaftEntry {
        let mut change = raft::eraftpb::ConfChangeV2::default();
        let mut single = raft::eraftpb::ConfChangeSingle::default();
        single.set_change_type(raft::eraftpb::ConfChangeType::AddLearnerNode);
        single.node_id = 9;
        change.mut_changes().push(single);
        let mut entry = RaftEntry::default();
        entry.set_entry_type(EntryType::EntryConfChangeV2);
        entry.term = term;
        entry.index = index;
        entry.data = change.write_to_bytes().unwrap().into();
        entry
    }

    fn sample(from: u64, to: u64, term: u64) -> Vec<RaftEntry> {
        (from..=to)
            .map(|index| match index % 4 {
                0 => normal(term, index, b"", None),
                1 => normal(
                    term,
                    index,
                    format!("batch {index}").as_bytes(),
                    Some(EntryMeta::Data { record_count: 3, timestamp_max: 100 + index as i64 }),
                ),
                2 => normal(term, index, b"cmd", Some(EntryMeta::Command)),
                _ => conf_change(term, index),
            })
            .collect()
    }

    fn hard(term: u64, vote: u64, commit: u64) -> RaftHardState {
        raft_hard_state(odradek_log::HardState { term, vote, commit, suspect: None })
    }

    async fn open(disk: &SimDisk) -> GroupStore<SimDisk> {
        GroupStore::open(disk.clone(), "/groups/7", LogConfig::default(), &conf(&[1, 2, 3]), 0).await.unwrap()
    }

    #[test]
    fn every_entry_kind_round_trips_through_the_log_entry() {
        let mut offset = 10;
        for entry in sample(1, 12, 3) {
            let log_entry = to_log_entry(&entry, offset).unwrap();
            assert_eq!(log_entry.base_offset, offset);
            offset = log_entry.offset_next();
            assert_eq!(to_raft_entry(&log_entry).unwrap(), entry);
        }
        assert_eq!(offset, 10 + 3 * 3, "three data entries of three records each");
        let bad = normal(1, 1, b"no meta", None);
        assert!(matches!(to_log_entry(&bad, 0), Err(StorageFault::InvalidEntry { .. })));
        let decoded = decode_conf_change(&conf_change(1, 3)).unwrap();
        assert_eq!(decoded.get_changes()[0].node_id, 9);
    }

    // Swarm `--retention --hibernate` seed 909: a node crashed between a snapshot's reset of its
    // log and the save of the snapshot's index as its commit, and raft refused to start from a
    // hard state whose commit (0) was below the log start (50).
    #[tokio::test]
    async fn a_crash_between_a_reset_and_its_commit_save_reopens_at_the_log_start() {
        let disk = SimDisk::new(5);
        let mut store = open(&disk).await;
        store.append(&sample(1, 10, 2), 0).await.unwrap();
        store.sync().await.unwrap();
        // As a snapshot install does: the record first (none needed as of the snapshot).
        store.save_start_state(None, 50).await.unwrap();
        store.reset(49, 3, 100, 0).await.unwrap();
        drop(store);
        disk.crash(CrashMode::PowerLoss);
        let store = open(&disk).await;
        assert_eq!(store.hard_state_saved().commit, 49);
        assert_eq!(store.storage().hard_state().commit, 49);
        assert_eq!(store.storage().first_index().unwrap(), 50);
    }

    // Issue 20: a reset whose start-state record was lost (here: never saved) leaves a log that
    // starts past index 1 with no record: the store refuses to open (the replica is repaired),
    // instead of opening with no state as if none had ever been needed.
    #[tokio::test]
    async fn a_log_start_without_its_start_state_record_does_not_open() {
        let disk = SimDisk::new(6);
        let mut store = open(&disk).await;
        store.append(&sample(1, 10, 2), 0).await.unwrap();
        store.sync().await.unwrap();
        store.reset(49, 3, 100, 0).await.unwrap();
        drop(store);
        disk.crash(CrashMode::PowerLoss);
        let opened = GroupStore::open(disk.clone(), "/groups/7", LogConfig::default(), &conf(&[1, 2, 3]), 0).await;
        assert!(matches!(opened, Err(StorageFault::Log(odradek_log::Error::Corruption { .. }))), "{:?}", opened.err());
    }

    // Disk seed 12 with `--retention`: a follower whose log ran past a snapshot's index (entries
    // of an old term) installed the snapshot, and its view kept the old last index while the
    // log was empty, so the next append did not continue the view (and raft would have
    // reported entries the replica no longer held).
    #[tokio::test]
    async fn a_reset_below_the_log_end_empties_the_view_too() {
        let disk = SimDisk::new(4);
        let mut store = open(&disk).await;
        store.append(&sample(1, 10, 2), 0).await.unwrap();
        store.sync().await.unwrap();
        store.save_hard_state(&hard(3, 0, 4)).await.unwrap();
        store.reset(7, 3, 100, 0).await.unwrap();
        let storage = store.storage();
        assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (8, 7));
        assert_eq!(storage.term(7).unwrap(), 3);
        assert!(storage.term(8).is_err(), "no entry after the snapshot");
        store.append(&sample(8, 9, 3), 0).await.unwrap();
        assert_eq!(storage.last_index().unwrap(), 9);
        assert_eq!(storage.entries(8, 10, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn append_serves_terms_entries_and_snapshot_metadata() {
        let disk = SimDisk::new(1);
        let mut store = open(&disk).await;
        let storage = store.storage();
        assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (1, 0));
        assert_eq!(storage.term(0).unwrap(), 0);
        let mut entries = sample(1, 5, 1);
        entries.extend(sample(6, 9, 2));
        store.append(&entries, 0).await.unwrap();
        assert!(store.is_dirty());
        store.sync().await.unwrap();
        assert!(!store.is_dirty());
        assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (1, 9));
        assert_eq!(storage.term(5).unwrap(), 1);
        assert_eq!(storage.term(6).unwrap(), 2);
        assert!(storage.term(10).is_err());
        let got = storage.entries(2, 8, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got, entries[1..7].to_vec());
        let limited = storage.entries(2, 8, Some(1), GetEntriesContext::empty(false)).unwrap();
        assert_eq!(limited.len(), 1, "limit_size keeps at least one entry");
        let snapshot = storage.snapshot(0, 2).unwrap();
        assert_eq!((snapshot.get_metadata().index, snapshot.get_metadata().term), (0, 0));
        assert_eq!(snapshot.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        // A conf change applied after the log start: the snapshot (still at the log start)
        // names the change's index with the configuration it carries.
        store.save_conf_state(&conf(&[1, 2, 3, 4]), 7).await.unwrap();
        let snapshot = storage.snapshot(0, 2).unwrap();
        assert_eq!(snapshot.get_metadata().index, 0);
        assert_eq!(snapshot.get_metadata().get_conf_state().voters, vec![1, 2, 3, 4]);
        let data = decode_snapshot_data(&snapshot.data).expect("decodes");
        assert_eq!((data.offset_start, data.conf_index, data.start_state), (0, 7, None));
        // A conflicting suffix from a new leader replaces entries 8..
        let replacement = sample(8, 10, 3);
        store.append(&replacement, 0).await.unwrap();
        assert_eq!(storage.last_index().unwrap(), 10);
        assert_eq!(storage.term(7).unwrap(), 2);
        assert_eq!(storage.term(8).unwrap(), 3);
        assert_eq!(storage.entries(7, 11, None, GetEntriesContext::empty(false)).unwrap()[1..], replacement[..]);
        assert_eq!(store.read(1, 11, u64::MAX).await.unwrap()[7..], replacement[..]);
    }

    /// A damaged last entry is cut and makes the replica suspect (R8 e), even at or below the
    /// saved commit; a log that ends below its commit for no visible reason is a clear error.
    #[tokio::test]
    async fn a_cut_makes_the_replica_suspect_and_a_log_short_of_its_commit_is_an_error() {
        let disk = SimDisk::new(3);
        {
            let mut store = open(&disk).await;
            store.append(&sample(1, 10, 2), 0).await.unwrap();
            store.sync().await.unwrap();
            store.save_hard_state(&hard(2, 1, 8)).await.unwrap();
        }
        disk.crash(CrashMode::Process);
        let segment = disk.files().into_iter().find(|path| path.extension().is_some_and(|e| e == "log")).expect("a segment");
        let len = disk.read_file(&segment).unwrap().len() as u64;
        // The last entry's payload: the log takes it for a torn write and cuts entry 10.
        disk.flip_bit(&segment, (len - 2) * 8);
        let store = open(&disk).await;
        assert_eq!((store.recovery_cut(), store.log().last_index()), (Some(10), 9));
        // It may have acknowledged entry 10 (R8 e): suspect, in a new term without a vote.
        let suspect = store.suspicion().expect("a cut of a whole entry makes the replica suspect");
        assert_eq!(suspect.cut, 10);
        assert!(suspect.bound >= 10, "{suspect:?}");
        assert_eq!((store.hard_state_saved().term, store.hard_state_saved().vote), (3, 0));
        drop(store);
        disk.crash(CrashMode::Process);
        let len = disk.read_file(&segment).unwrap().len() as u64;
        disk.flip_bit(&segment, (len - 2) * 8);
        disk.crash(CrashMode::Process);
        let mut store = open(&disk).await;
        assert_eq!(store.recovery_cut(), Some(9));
        assert_eq!(store.suspicion().map(|s| (s.cut, s.bound >= suspect.bound)), Some((9, true)), "merged with the first");
        assert_eq!(store.hard_state_saved().term, 4);
        store.clear_suspicion().await.unwrap();
        drop(store);
        disk.crash(CrashMode::PowerLoss);
        let store = open(&disk).await;
        assert_eq!((store.suspicion(), store.hard_state_saved().term), (None, 4), "the clear is durable");
        drop(store);
        // Now the last entry is 8, which the hard state says is committed: suspect too, with the
        // commit lowered to what the log holds (a leader tells it again).
        let len = disk.read_file(&segment).unwrap().len() as u64;
        disk.flip_bit(&segment, (len - 2) * 8);
        let store = open(&disk).await;
        assert_eq!(store.suspicion().map(|s| s.cut), Some(8));
        assert!(store.suspicion().unwrap().bound >= 8);
        assert_eq!(store.hard_state_saved().commit, 7);
        assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 7);
        drop(store);
        // A log that ends below the saved commit with no damaged tail to explain it is an error.
        let path = std::path::Path::new("/groups/7").join(HARD_STATE_FILE);
        let (mut file, saved) = odradek_log::HardStateFile::open(&disk, &path).await.unwrap();
        file.save(odradek_log::HardState { commit: 8, suspect: None, ..saved }).await.unwrap();
        let reopened = GroupStore::open(disk.clone(), "/groups/7", LogConfig::default(), &conf(&[1, 2, 3]), 0).await;
        let error = reopened.err().expect("committed entry 8 is gone");
        assert!(matches!(error, StorageFault::CommittedEntriesLost { commit: 8, log_end: 7, cut: 8 }), "{error}");
    }

    #[tokio::test]
    async fn restart_recovers_hard_state_conf_state_and_entries() {
        let disk = SimDisk::new(2);
        let entries = sample(1, 20, 4);
        {
            let mut store = open(&disk).await;
            store.append(&entries, 0).await.unwrap();
            store.sync().await.unwrap();
            store.save_hard_state(&hard(4, 2, 12)).await.unwrap();
            store.save_conf_state(&conf(&[1, 2, 3, 9]), 11).await.unwrap();
            // Unsynced: lost at power loss.
            store.append(&sample(21, 25, 4), 0).await.unwrap();
        }
        disk.crash(CrashMode::PowerLoss);
        let store = open(&disk).await;
        let storage = store.storage();
        let state = storage.initial_state().unwrap();
        // A torn tail of whole (unsynced) entries cannot be told from lost acknowledged ones:
        // then the replica is suspect, in the next term without a vote.
        let expected = if store.suspicion().is_some() { hard(5, 0, 12) } else { hard(4, 2, 12) };
        assert_eq!(state.hard_state, expected);
        assert_eq!(state.conf_state, conf(&[1, 2, 3, 9]));
        assert_eq!(store.conf_state_index(), 11);
        assert_eq!(storage.last_index().unwrap(), 20);
        assert_eq!(storage.term(20).unwrap(), 4);
        // Above the commit: cached for raft's synchronous reads.
        assert_eq!(storage.cache_first_index(), 13);
        assert_eq!(storage.entries(13, 21, None, GetEntriesContext::empty(false)).unwrap(), entries[12..].to_vec());
        assert_eq!(store.read(1, 21, u64::MAX).await.unwrap(), entries);
    }

    #[tokio::test]
    async fn uncached_reads_are_fetched_asynchronously() {
        let disk = SimDisk::new(3);
        let entries = sample(1, 10, 1);
        {
            let mut store = open(&disk).await;
            store.append(&entries, 0).await.unwrap();
            store.sync().await.unwrap();
            store.save_hard_state(&hard(1, 1, 10)).await.unwrap();
        }
        disk.crash(CrashMode::Process);
        let store = open(&disk).await;
        let storage = store.storage();
        assert_eq!(storage.cache_first_index(), 11, "everything committed: nothing cached");
        let error = storage.entries(3, 8, None, GetEntriesContext::empty(true)).unwrap_err();
        assert_eq!(error, raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        let sync_error = storage.entries(3, 8, None, GetEntriesContext::empty(false)).unwrap_err();
        assert_eq!(sync_error, raft::Error::Store(StorageError::Unavailable));
        let requests = storage.take_fetch_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].low, requests[0].high), (3, 8));
        let request = requests.into_iter().next().unwrap();
        let context = store.fetch(request).await.unwrap();
        assert!(context.can_async());
        assert_eq!(storage.entries(3, 8, None, GetEntriesContext::empty(true)).unwrap(), entries[2..7].to_vec());
        assert_eq!(
            storage.entries(1, 2, None, GetEntriesContext::empty(true)).unwrap_err(),
            raft::Error::Store(StorageError::LogTemporarilyUnavailable)
        );
    }

    #[tokio::test]
    async fn cache_never_drops_unapplied_entries() {
        let disk = SimDisk::new(4);
        let mut store = open(&disk).await;
        let storage = store.storage();
        let big = vec![7u8; 512 * 1024];
        let meta = Some(EntryMeta::Data { record_count: 1, timestamp_max: 0 });
        let entries: Vec<RaftEntry> = (1..=20).map(|index| normal(1, index, &big, meta)).collect();
        store.append(&entries, 0).await.unwrap();
        assert_eq!(storage.cache_first_index(), 1, "nothing applied: all 10 MiB stay cached");
        storage.set_applied(15);
        let first = storage.cache_first_index();
        assert!(first > 1 && first <= 16, "trimmed to the bound but not past applied: {first}");
        storage.set_applied(20);
        let cached = 21 - storage.cache_first_index();
        assert!(cached as usize * big.len() <= LogConfig::default().cache_bytes_max, "{cached} entries cached");
    }
}
