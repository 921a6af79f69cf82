//! The segment log of one partition replica (or one Raft group): append, sync, read by index
//! or offset, suffix truncation for Raft conflicts, retention, reset for snapshot installs.
//!
//! Invariants kept here (asserted on every append and checked again by recovery):
//! - indices are dense: `first_index ..= last_index`, each entry's index = previous + 1;
//! - offsets are dense: each entry's `base_offset` = previous entry's `offset_next`;
//! - terms never decrease along the log;
//! - an entry is durable iff its index <= `synced_index` (only `sync` advances it, and a
//!   sealed segment is fsynced before the next one exists).
//!
//! Cost sketch: an append is one positional write per touched segment (one buffer encoded for
//! the whole batch), a sync one fdatasync per dirty segment. Reads pull 256 KiB chunks and verify
//! every checksum. Memory per segment: a sparse index point per `index_interval_bytes` (24 B
//! per 4 KiB by default), plus one (first index, term) pair per term change in the log, plus a
//! bounded cache of the newest entries for Raft's synchronous `Storage` reads.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::config::LogConfig;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::entry::{Entry, EntryHeader, EntryKind, ENTRY_PAYLOAD_BYTES_MAX};
use crate::error::{io_error, Error, Result};
use crate::reader::{LogReader, Publisher};
use crate::recovery::{self, write_index_file, RecoveryReport, RESET_COMMITTED_FILE, RESET_PENDING_FILE};
use crate::segment::{create_segment, encode_index, EntryCursor, Segment, SegmentStart, SEGMENT_HEADER_BYTES};

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// A replica's log: a directory of segments.
pub struct SegmentLog<D: Disk> {
    disk: D,
    dir: PathBuf,
    config: LogConfig,
    /// Oldest first; never empty; only the last one takes appends.
    segments: Vec<Segment<D::File>>,
    /// (first index, term) of each run of equal terms, covering first_index ..= last_index.
    terms: Vec<(u64, u64)>,
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    synced_index: u64,
    /// What the disk confirmed: `synced_index` unless a planted bug made the log skip or
    /// ignore an fsync (see [`SegmentLog::durable_index`]).
    durable_index: u64,
    /// A planted bug skipped or ignored an fsync: `durable_index` stays where it was for good
    /// (after a failed fsync the kernel may have dropped the data: "fsyncgate").
    durable_stuck: bool,
    /// Set by any failed write or fsync: what is durable is unknown until reopened.
    poisoned: bool,
    /// A torn tail recovery found is still in the active segment's file, past its last entry
    /// (see [`SegmentLog::open_deferring_cut`]).
    torn_tail_pending: bool,
    /// What this log's readers see ([`LogReader`]): republished after every change of the
    /// segments, and the readable index its owner sets.
    publisher: Publisher<D::File>,
}

impl<D: Disk> SegmentLog<D> {
    /// Opens (or creates, starting at index 1 and offset 0) the log in `dir`, verifying every
    /// entry. `now_ms` starts the age of the active segment.
    pub async fn open(disk: D, dir: impl AsRef<Path>, config: LogConfig, now_ms: i64) -> Result<(SegmentLog<D>, RecoveryReport)> {
        let (mut log, report) = SegmentLog::open_deferring_cut(disk, dir, config, now_ms).await?;
        log.cut_torn_tail().await?;
        assert!(!log.torn_tail_pending, "open leaves no torn tail in the file");
        Ok((log, report))
    }

    /// [`SegmentLog::open`], except that a torn tail (`RecoveryReport::torn_tail`) stays in the
    /// file until [`SegmentLog::cut_torn_tail`] or the next append or truncation: the caller
    /// first makes durable what the cut may lose (a replica cannot tell a torn write from rot
    /// in an entry it acknowledged), so a crash between the two cannot forget it.
    pub async fn open_deferring_cut(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(SegmentLog<D>, RecoveryReport)> {
        config.assert_valid();
        let dir = dir.as_ref().to_path_buf();
        let (mut segments, report) = recovery::recover(&disk, &dir, &config, now_ms, true).await?;
        if segments.is_empty() {
            let start = SegmentStart { first_index: 1, first_offset: 0, prev_term: 0 };
            segments.push(create_segment(&disk, &dir, start, now_ms).await?);
        }
        let mut log = SegmentLog {
            disk,
            dir,
            config,
            segments,
            terms: Vec::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            synced_index: 0,
            durable_index: 0,
            durable_stuck: false,
            poisoned: false,
            torn_tail_pending: report.torn_tail.is_some(),
            publisher: Publisher::new(0),
        };
        log.rebuild_terms().await?;
        // After a process crash the page cache may still hold unsynced bytes that recovery
        // read back; make them durable before reporting them as synced (sealed segments were
        // fsynced when they rolled).
        log.segments.last_mut().expect("a log always has a segment").dirty = true;
        log.sync().await?;
        assert!(log.synced_index == log.last_index(), "an opened log is synced to its end");
        log.publish(false);
        let torn_index = report.torn_tail.map(|torn| torn.index);
        assert!(torn_index.is_none_or(|index| index == log.last_index() + 1), "a torn tail {torn_index:?} follows the log's end");
        Ok((log, report))
    }

    /// Cuts off the torn tail recovery left in place, durably (nothing when there is none).
    pub async fn cut_torn_tail(&mut self) -> Result<()> {
        if !self.torn_tail_pending {
            return Ok(());
        }
        self.check_usable()?;
        let segment = self.segments.last_mut().expect("a log always has a segment");
        assert!(segment.bytes >= SEGMENT_HEADER_BYTES, "the cut keeps the segment header");
        let cut = async {
            segment.file.set_len(segment.bytes).await?;
            segment.file.sync_data().await
        };
        if let Err(source) = cut.await {
            self.poisoned = true;
            return Err(Error::Io { path: segment.path.clone(), source });
        }
        self.torn_tail_pending = false;
        Ok(())
    }

    /// Term runs come from one header-only pass; recovery has verified the bytes already.
    async fn rebuild_terms(&mut self) -> Result<()> {
        self.terms.clear();
        for segment in &self.segments {
            let mut cursor = EntryCursor::new(SEGMENT_HEADER_BYTES, segment.start.first_index, segment.bytes);
            while let Some((_, header, _)) = cursor.next(&segment.file, &segment.path, false).await? {
                if self.terms.last().map(|&(_, term)| term) != Some(header.term) {
                    self.terms.push((header.index, header.term));
                }
            }
        }
        self.assert_terms_cover();
        Ok(())
    }

    /// The term runs cover the log: the first starts at or before `first_index` and the last
    /// has `last_term` (nothing to check in an empty log, where `term` answers from the start).
    fn assert_terms_cover(&self) {
        if self.last_index() < self.first_index() {
            return;
        }
        let (first_run_index, _) = *self.terms.first().expect("a log with entries has a term run");
        assert!(first_run_index <= self.first_index(), "the first term run starts at {first_run_index}, inside the log");
        let (_, last_run_term) = *self.terms.last().expect("a log with entries has a term run");
        assert!(last_run_term == self.last_term(), "the last term run has term {last_run_term}, not the last entry's");
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A read-only handle other tasks read committed entries through, without this log's owner
    /// (module `reader`). It follows this log until the log is dropped.
    pub fn reader(&self) -> LogReader<D::File> {
        self.publisher.reader()
    }

    /// Entries at or below `index` are committed: readers may read up to it (never above the
    /// log's end; a later truncation must not cut at or below it).
    pub fn set_readable_index(&mut self, index: u64) {
        self.publisher.set_readable_index(index, self.last_index());
    }

    /// Brings the readers' view in line with the segments (after every change of them).
    fn publish(&self, points_rewritten: bool) {
        self.publisher.publish(&self.segments, self.last_index(), points_rewritten);
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Changes the tunables (e.g. a topic's retention altered at run time); they apply from
    /// the next append or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        config.assert_valid();
        self.config = config;
    }

    /// The first index present (`last_index + 1` when the log is empty).
    pub fn first_index(&self) -> u64 {
        self.segments[0].start.first_index
    }

    /// The last index present (`first_index - 1` when the log is empty).
    pub fn last_index(&self) -> u64 {
        let last_index = self.active().last_index;
        assert!(last_index + 1 >= self.first_index(), "the log ends at {last_index}, before its start");
        last_index
    }

    /// Term of the last entry (or of `first_index - 1` when empty).
    pub fn last_term(&self) -> u64 {
        self.active().last_term
    }

    /// Offset of the first record still in the log.
    pub fn offset_start(&self) -> u64 {
        self.segments[0].start.first_offset
    }

    /// The offset the next record will take.
    pub fn offset_next(&self) -> u64 {
        self.active().offset_next
    }

    /// Term of the entry just below the log start (0 when the log starts at index 1).
    pub fn prev_term(&self) -> u64 {
        self.segments[0].start.prev_term
    }

    /// The last index known durable (fsynced).
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    /// The last index whose every fsync the disk answered with success. The same as
    /// [`Self::synced_index`] except under the planted bugs that skip or ignore fsyncs, where
    /// the log believes more than the disk promised; the simulator's R5 and R6 checks read this.
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    pub fn segment_count(&self) -> usize {
        assert!(!self.segments.is_empty(), "a log always has a segment");
        self.segments.len()
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn active(&self) -> &Segment<D::File> {
        self.segments.last().expect("a log always has a segment")
    }

    /// The term of `index`, for `first_index - 1 ..= last_index`.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first_index() {
            return Some(self.prev_term());
        }
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        let at = self.terms.partition_point(|&(first, _)| first <= index);
        assert!(at > 0, "term runs cover the log");
        let term = self.terms[at - 1].1;
        assert!(term <= self.last_term(), "term {term} of index {index} above the last entry's");
        Some(term)
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.dir.clone() });
        }
        Ok(())
    }

    /// Checks that `entries` continue the log and follow the format rules.
    fn check_sequence(&self, entries: &[Entry]) -> Result<()> {
        let (mut index, mut offset, mut term) = (self.last_index(), self.offset_next(), self.last_term());
        for entry in entries {
            if entry.index != index + 1 || entry.base_offset != offset || entry.term < term {
                return Err(Error::OutOfSequence {
                    index_expected: index + 1,
                    offset_expected: offset,
                    term_min: term,
                    index: entry.index,
                    offset: entry.base_offset,
                    term: entry.term,
                });
            }
            let invalid = |detail: String| Err(Error::InvalidEntry { index: entry.index, detail });
            if entry.payload.len() > ENTRY_PAYLOAD_BYTES_MAX {
                return invalid(format!("payload of {} bytes exceeds {ENTRY_PAYLOAD_BYTES_MAX}", entry.payload.len()));
            }
            if (entry.kind == EntryKind::Data) != (entry.record_count > 0) {
                return invalid("data entries and only data entries hold records".into());
            }
            (index, offset, term) = (entry.index, entry.offset_next(), entry.term);
        }
        Ok(())
    }

    /// Appends entries (visible to reads at once, durable after [`SegmentLog::sync`]). Rolls
    /// to a new segment by size or age (`now_ms`). The whole batch is checked before any byte
    /// is written, so a refused batch changes nothing.
    pub async fn append(&mut self, entries: &[Entry], now_ms: i64) -> Result<()> {
        self.check_usable()?;
        self.check_sequence(entries)?;
        self.cut_torn_tail().await?;
        let index_end = entries.last().map_or(self.last_index(), |entry| entry.index);
        let mut buffer: Vec<u8> = Vec::new();
        let mut buffer_position = self.active().bytes;
        for entry in entries {
            if self.should_roll(entry, now_ms) {
                self.write_active(std::mem::take(&mut buffer), buffer_position).await?;
                self.roll(now_ms).await?;
                buffer_position = self.active().bytes;
            }
            assert!(entry.index == self.last_index() + 1, "entry {} appended after {}", entry.index, self.last_index());
            assert!(entry.term >= self.last_term(), "entry {} of term {} after term {}", entry.index, entry.term, self.last_term());
            let position = self.active().bytes;
            let segment = self.segments.last_mut().expect("a log always has a segment");
            if segment.is_empty() {
                segment.created_ms = now_ms;
            }
            entry.encode_into(&mut buffer);
            let header = EntryHeader::parse(&buffer[buffer.len() - entry.encoded_bytes()..]).expect("just encoded");
            assert!(header.index == entry.index, "encoded header of entry {} names index {}", entry.index, header.index);
            assert!(header.term == entry.term, "encoded header of entry {} names term {}", entry.index, header.term);
            assert!(header.base_offset == entry.base_offset, "encoded header of entry {} names offset {}", entry.index, header.base_offset);
            segment.note_entry(&header, position, self.config.index_interval_bytes);
            if self.terms.last().map(|&(_, term)| term) != Some(entry.term) {
                self.terms.push((entry.index, entry.term));
            }
            self.cache_push(entry.clone());
        }
        self.write_active(buffer, buffer_position).await?;
        assert!(self.last_index() == index_end, "the log ends at {} after appending up to {index_end}", self.last_index());
        self.assert_terms_cover();
        self.publish(false);
        Ok(())
    }

    /// `segment.bytes` already counts the entries buffered but not yet written.
    fn should_roll(&self, entry: &Entry, now_ms: i64) -> bool {
        let segment = self.active();
        !segment.is_empty()
            && (segment.bytes + entry.encoded_bytes() as u64 > self.config.segment_bytes_max
                || now_ms.saturating_sub(segment.created_ms) >= self.config.segment_age_ms_max)
    }

    async fn write_active(&mut self, buffer: Vec<u8>, position: u64) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        let segment = self.segments.last_mut().expect("a log always has a segment");
        assert_eq!(position + buffer.len() as u64, segment.bytes, "the buffer ends where the segment's entries end");
        segment.dirty = true;
        if let Err(source) = segment.file.write_at(position, Bytes::from(buffer)).await {
            self.poisoned = true;
            return Err(Error::Io { path: segment.path.clone(), source });
        }
        Ok(())
    }

    /// Seals the active segment (fsynced, index written) and starts a new one after it.
    async fn roll(&mut self, now_ms: i64) -> Result<()> {
        self.sync_segments().await?;
        let segment = self.active();
        let index_path = segment.index_path();
        let index_contents = encode_index(&segment.points);
        let start = SegmentStart { first_index: segment.last_index + 1, first_offset: segment.offset_next, prev_term: segment.last_term };
        write_index_file(&self.disk, &index_path, index_contents).await?;
        let created = create_segment(&self.disk, &self.dir, start, now_ms).await;
        let segment = created.inspect_err(|_| self.poisoned = true)?;
        assert!(segment.is_empty(), "a rolled segment starts empty");
        self.segments.push(segment);
        Ok(())
    }

    /// Makes every appended entry durable: one fdatasync per dirty segment.
    pub async fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        let confirmed = self.sync_segments().await?;
        self.synced_index = self.last_index();
        self.durable_stuck |= !confirmed;
        if !self.durable_stuck {
            self.durable_index = self.last_index();
        }
        assert!(self.synced_index == self.last_index(), "sync covers the whole log");
        assert!(self.segments.iter().all(|segment| !segment.dirty), "sync leaves no segment dirty");
        self.assert_durable_follows_synced();
        Ok(())
    }

    /// Unless a planted bug made the log skip or ignore an fsync, what it holds synced is what
    /// the disk confirmed.
    fn assert_durable_follows_synced(&self) {
        let (durable, synced) = (self.durable_index, self.synced_index);
        assert!(self.durable_stuck || durable == synced, "durable index {durable} differs from synced index {synced}");
    }

    /// Whether the disk confirmed every fsync (false only under a planted bug).
    async fn sync_segments(&mut self) -> Result<bool> {
        let planted = self.config.planted;
        let mut confirmed = true;
        for segment in self.segments.iter_mut().filter(|s| s.dirty) {
            if planted.skip_fsync() {
                segment.dirty = false;
                confirmed = false;
                continue;
            }
            let synced = segment.file.sync_data().await;
            if let (Err(error), true) = (&synced, planted.ignore_fsync_errors()) {
                tracing::warn!(%error, "planted bug: ignoring a failed fsync");
                segment.dirty = false;
                confirmed = false;
                continue;
            }
            if let Err(source) = synced {
                // fsyncgate: never retry; what is durable is unknown until reopened.
                self.poisoned = true;
                return Err(Error::Io { path: segment.path.clone(), source });
            }
            segment.dirty = false;
        }
        assert!(confirmed || planted.skip_fsync() || planted.ignore_fsync_errors(), "only a planted bug leaves an fsync unconfirmed");
        Ok(confirmed)
    }

    fn cache_push(&mut self, entry: Entry) {
        let back_index = self.cache.back().map(|back| back.index);
        assert!(back_index.is_none_or(|back| back + 1 == entry.index), "cache of {back_index:?} continued by {}", entry.index);
        self.cache_bytes += entry.encoded_bytes();
        self.cache.push_back(entry);
        while self.cache_bytes > self.config.cache_bytes_max {
            let old = self.cache.pop_front().expect("cache holds bytes");
            self.cache_bytes -= old.encoded_bytes();
        }
        assert!(self.cache_bytes <= self.config.cache_bytes_max, "the cache holds at most cache_bytes_max");
    }

    /// Entries `low .. high` from the in-memory cache of the newest entries, at most
    /// `bytes_max` (but at least one); `None` when the cache does not hold them all.
    pub fn entries_cached(&self, low: u64, high: u64, bytes_max: u64) -> Option<Vec<Entry>> {
        let first = self.cache.front()?.index;
        if low < first || high > self.last_index() + 1 || low >= high {
            return None;
        }
        let skip = (low - first) as usize;
        let entries = take_within(self.cache.iter().skip(skip).take((high - low) as usize).cloned(), bytes_max);
        assert_read(&entries, low, high);
        Some(entries)
    }

    /// Entries `low .. high` (by index), at most `bytes_max` of them (but at least one).
    pub async fn read(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>> {
        self.check_usable()?;
        if low < self.first_index() {
            return Err(Error::Compacted { index: low, first_index: self.first_index() });
        }
        if high > self.last_index() + 1 {
            return Err(Error::Unavailable { index: high - 1, last_index: self.last_index() });
        }
        if low >= high {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.entries_cached(low, high, bytes_max) {
            return Ok(entries);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let at = self.segments.partition_point(|s| s.start.first_index <= low) - 1;
        'segments: for segment in &self.segments[at..] {
            let (position, index) = segment.position_for_index(low.max(segment.start.first_index));
            let mut cursor = EntryCursor::new(position, index, segment.bytes);
            while let Some((_, header, payload)) = cursor.next(&segment.file, &segment.path, true).await? {
                if header.index < low {
                    continue;
                }
                if header.index >= high || (!out.is_empty() && bytes + header.encoded_bytes() as u64 > bytes_max) {
                    break 'segments;
                }
                bytes += header.encoded_bytes() as u64;
                out.push(header.into_entry(payload));
            }
        }
        assert_read(&out, low, high);
        Ok(out)
    }

    /// Data entries holding records at or after `offset`, starting with the one that holds
    /// `offset`, never past index `index_max` (the caller's commit bound), at most `bytes_max`
    /// (but at least one entry when any is available).
    pub async fn read_offsets(&self, offset: u64, bytes_max: u64, index_max: u64) -> Result<Vec<Entry>> {
        self.check_usable()?;
        if offset < self.offset_start() {
            return Err(Error::OffsetBelowStart { offset, offset_start: self.offset_start() });
        }
        let mut out = Vec::new();
        if offset >= self.offset_next() {
            return Ok(out);
        }
        let mut bytes = 0u64;
        let at = self.segments.partition_point(|s| s.start.first_offset <= offset) - 1;
        'segments: for segment in &self.segments[at..] {
            let (position, index) = segment.position_for_offset(offset);
            let mut cursor = EntryCursor::new(position, index, segment.bytes);
            while let Some((_, header, payload)) = cursor.next(&segment.file, &segment.path, true).await? {
                if header.index > index_max {
                    break 'segments;
                }
                if header.kind != EntryKind::Data || header.offset_next() <= offset {
                    continue;
                }
                if !out.is_empty() && bytes + header.encoded_bytes() as u64 > bytes_max {
                    break 'segments;
                }
                bytes += header.encoded_bytes() as u64;
                out.push(header.into_entry(payload));
            }
        }
        assert_offsets_read(&out, offset, index_max);
        Ok(out)
    }

    /// Removes every entry at or after `from_index` (a Raft conflict), durably before it
    /// returns. The caller guarantees no removed entry is committed.
    pub async fn truncate_suffix(&mut self, from_index: u64) -> Result<()> {
        self.check_usable()?;
        self.cut_torn_tail().await?;
        if from_index < self.first_index() {
            return Err(Error::Compacted { index: from_index, first_index: self.first_index() });
        }
        if from_index > self.last_index() {
            return Ok(());
        }
        self.publisher.assert_not_readable(from_index);
        // Newest segments first, so a crash part-way leaves a valid (longer) log.
        while self.segments.len() > 1 && self.active().start.first_index >= from_index {
            let segment = self.segments.pop().expect("more than one segment");
            let path = segment.path.clone();
            drop(segment);
            self.remove_durably(&[path]).await?;
        }
        let interval = self.config.index_interval_bytes;
        let segment = self.segments.last_mut().expect("a log always has a segment");
        let keep_bytes = segment.truncate_to(from_index - 1, interval).await?;
        let truncated = async {
            segment.file.set_len(keep_bytes).await?;
            segment.file.sync_data().await
        };
        if let Err(source) = truncated.await {
            self.poisoned = true;
            return Err(Error::Io { path: self.active().path.clone(), source });
        }
        // The now-active segment may have been sealed before: its index file is stale.
        let index_path = self.active().index_path();
        if self.disk.open(&index_path, OpenMode::Existing).await.is_ok() {
            self.remove_durably(&[index_path]).await?;
        }
        self.terms.truncate(self.terms.partition_point(|&(first, _)| first < from_index));
        while self.cache.back().is_some_and(|e| e.index >= from_index) {
            let entry = self.cache.pop_back().expect("checked");
            self.cache_bytes -= entry.encoded_bytes();
        }
        self.synced_index = self.synced_index.min(self.last_index());
        self.durable_index = self.durable_index.min(self.last_index());
        assert_eq!(self.last_index(), from_index - 1, "the log ends just before the truncation point");
        let cache_back = self.cache.back().map(|back| back.index);
        assert!(cache_back.is_none_or(|back| back < from_index), "the cache still holds {cache_back:?}");
        self.assert_terms_cover();
        self.assert_durable_follows_synced();
        self.publish(true);
        Ok(())
    }

    async fn remove_durably(&mut self, paths: &[PathBuf]) -> Result<()> {
        for path in paths {
            if let Err(source) = self.disk.remove_file(path).await {
                if source.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::Io { path: path.clone(), source });
                }
            }
        }
        self.disk.sync_dir(&self.dir).await.map_err(io_error(&self.dir))
    }

    /// How many segments [`SegmentLog::enforce_retention`] would delete now (the oldest ones),
    /// so a caller can save what must outlive them first.
    pub fn retention_due(&self, now_ms: i64, index_bound: u64) -> usize {
        let mut size = self.size_bytes();
        let mut due = 0;
        for oldest in &self.segments[..self.segments.len() - 1] {
            if oldest.last_index >= index_bound {
                break;
            }
            let by_age = self.config.retention_ms.is_some_and(|ms| oldest.timestamp_max < now_ms.saturating_sub(ms));
            let by_size = self.config.retention_bytes.is_some_and(|bytes| size - oldest.bytes >= bytes);
            if !by_age && !by_size {
                break;
            }
            size -= oldest.bytes;
            due += 1;
        }
        due
    }

    /// Deletes whole sealed segments, oldest first, that fall out of retention by age (newest
    /// record older than `retention_ms` before `now_ms`) or by size (the rest still hold
    /// `retention_bytes`). Never deletes the active segment, nor a segment with any entry at or
    /// above `index_bound` (the caller passes its commit / apply bound).
    pub async fn enforce_retention(&mut self, now_ms: i64, index_bound: u64) -> Result<RetentionReport> {
        self.check_usable()?;
        let mut report = RetentionReport::default();
        for _ in 0..self.retention_due(now_ms, index_bound) {
            let segment = self.segments.remove(0);
            report.segments_deleted += 1;
            report.bytes_deleted += segment.bytes;
            let paths = [segment.path.clone(), segment.index_path()];
            drop(segment);
            self.remove_durably(&paths).await?;
        }
        let first = self.first_index();
        let keep_from = self.terms.partition_point(|&(start, _)| start <= first).saturating_sub(1);
        self.terms.drain(..keep_from);
        while self.cache.front().is_some_and(|e| e.index < first) {
            let entry = self.cache.pop_front().expect("checked");
            self.cache_bytes -= entry.encoded_bytes();
        }
        let deleted = report.segments_deleted;
        assert!(deleted == 0 || first <= index_bound, "retention deleted entries up to {} at or above {index_bound}", first - 1);
        self.assert_terms_cover();
        self.publish(false);
        Ok(report)
    }

    /// Replaces the whole log with an empty one that starts at `start` (a follower installing
    /// a snapshot that is past its log). Crash-safe: the new first segment is written under a
    /// pending name, renamed to its committed name (the commit point), then the old segments
    /// are removed and it moves into place; recovery finishes or discards an interrupted reset.
    pub async fn reset(&mut self, first_index: u64, first_offset: u64, prev_term: u64, now_ms: i64) -> Result<()> {
        self.check_usable()?;
        assert!(first_index >= 1, "a log starts at index 1 or later");
        let start = SegmentStart { first_index, first_offset, prev_term };
        let pending = self.dir.join(RESET_PENDING_FILE);
        let committed = self.dir.join(RESET_COMMITTED_FILE);
        let staged = async {
            let file = self.disk.open(&pending, OpenMode::CreateOrOpen).await?;
            file.set_len(0).await?;
            file.write_at(0, Bytes::from(start.encode())).await?;
            file.sync_data().await?;
            self.disk.sync_dir(&self.dir).await?;
            self.disk.rename(&pending, &committed).await?;
            self.disk.sync_dir(&self.dir).await
        };
        if let Err(source) = staged.await {
            self.poisoned = true;
            return Err(Error::Io { path: pending, source });
        }
        self.segments.clear();
        self.torn_tail_pending = false;
        self.cache.clear();
        self.cache_bytes = 0;
        let (segments, _) =
            recovery::recover(&self.disk, &self.dir, &self.config, now_ms, false).await.inspect_err(|_| self.poisoned = true)?;
        assert_eq!(segments.len(), 1, "a reset leaves one segment");
        assert_eq!(segments[0].start, start, "the reset's segment starts where asked");
        assert!(segments[0].is_empty(), "the reset's segment holds no entry");
        self.segments = segments;
        self.terms.clear();
        self.synced_index = self.last_index();
        if !self.durable_stuck {
            self.durable_index = self.last_index();
        }
        self.assert_durable_follows_synced();
        self.publisher.lower_readable_below(first_index);
        self.publish(true);
        Ok(())
    }
}

/// Takes entries until `bytes_max` would be exceeded, but always at least one.
fn take_within(entries: impl Iterator<Item = Entry>, bytes_max: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for entry in entries {
        if !out.is_empty() && bytes + entry.encoded_bytes() as u64 > bytes_max {
            break;
        }
        bytes += entry.encoded_bytes() as u64;
        out.push(entry);
    }
    out
}

/// What a read by index returns: consecutive entries from `low`, all below `high`, at least one
/// when `low < high` (the caller has checked that the log holds `low .. high`).
fn assert_read(entries: &[Entry], low: u64, high: u64) {
    assert!(low >= high || !entries.is_empty(), "a read of {low}..{high} returned nothing");
    for (entry, index) in entries.iter().zip(low..) {
        assert!(entry.index == index, "a read of {low}..{high} returned entry {} in place of {index}", entry.index);
        assert!(entry.index < high, "a read of {low}..{high} returned entry {}", entry.index);
    }
}

/// What a read by offset returns: data entries, the first holding `offset`, each continuing the
/// offsets of the one before, in index order, none past `index_max`.
pub(crate) fn assert_offsets_read(entries: &[Entry], offset: u64, index_max: u64) {
    if let Some(first) = entries.first() {
        assert!(first.base_offset <= offset, "a read from offset {offset} starts at offset {}", first.base_offset);
        assert!(first.offset_next() > offset, "a read from offset {offset} starts before it, at entry {}", first.index);
    }
    for pair in entries.windows(2) {
        assert!(pair[1].base_offset == pair[0].offset_next(), "offsets of entries {} and {} are not dense", pair[0].index, pair[1].index);
        assert!(pair[1].index > pair[0].index, "entry {} read after entry {}", pair[1].index, pair[0].index);
    }
    for entry in entries {
        assert!(entry.kind == EntryKind::Data, "a read by offset returned {:?} entry {}", entry.kind, entry.index);
        assert!(entry.index <= index_max, "a read bounded by index {index_max} returned entry {}", entry.index);
    }
}
