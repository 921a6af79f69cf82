//! Opening a log directory: verify every segment and every entry checksum, tell a torn tail
//! (truncated) from corruption (reported, never truncated), and rebuild derived index files.
//!
//! The rule (DESIGN.md "Disk faults"): a bad entry with no valid entry after it, in the last
//! segment, is a torn tail — the last write before a crash — and is cut off. A bad entry
//! *followed by* a valid one, a bad entry in a sealed segment (sealed segments are fsynced
//! before the next one is created), a broken index/offset/term sequence or a damaged segment
//! header is corruption: [`Error::Corruption`] with the damaged index range.
//!
//! Cost: one sequential read of every segment per open, bounded by `segment_bytes_max` of
//! memory at a time.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::config::LogConfig;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::entry::{EntryHeader, ENTRY_HEADER_BYTES, ENTRY_MAGIC};
use crate::error::{io_error, Error, Result};
use crate::segment::{
    encode_index, index_file_name, parse_segment_file_name, segment_file_name, Segment, SegmentStart, SEGMENT_HEADER_BYTES,
};

/// Name of the file that holds the start of a log being reset (see `SegmentLog::reset`) before
/// the reset commits.
pub const RESET_PENDING_FILE: &str = "reset.pending";
/// Name of that file once the reset has committed.
pub const RESET_COMMITTED_FILE: &str = "reset.committed";
/// How much of a file recovery reads per call.
const RECOVERY_READ_BYTES: usize = 8 * 1024 * 1024;

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub entries: u64,
    /// A torn tail that was cut off: the first index lost and how many bytes went.
    pub torn_tail: Option<TornTail>,
    /// A last segment whose header never became durable, removed.
    pub torn_segment_removed: bool,
    /// Index files written because they were missing, stale or damaged.
    pub indexes_rebuilt: usize,
    /// A reset interrupted after its commit point and finished on open.
    pub reset_completed: bool,
}

/// The torn tail recovery cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Index the first cut-off (partial) entry would have had.
    pub index: u64,
    pub bytes: u64,
}

impl TornTail {
    /// The highest index the cut-off bytes could have held whole: an upper bound of what the
    /// replica may have acknowledged there (rot keeps a file's length, and every entry is at
    /// least a header). Below `index` when no whole entry fits: nothing acknowledged was lost.
    pub fn index_bound(&self) -> u64 {
        assert!(self.index >= 1, "a torn tail is at an index");
        self.index - 1 + self.bytes / crate::entry::ENTRY_HEADER_BYTES as u64
    }
}

/// The segments found on disk, verified, oldest first (possibly none). With `defer_cut`, a torn
/// tail of the last segment is reported but left in the file (the segment's `bytes` end before
/// it): the caller records what the cut may lose, then cuts (`SegmentLog::cut_torn_tail`).
pub async fn recover<D: Disk>(
    disk: &D,
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
    defer_cut: bool,
) -> Result<(Vec<Segment<D::File>>, RecoveryReport)> {
    let truncate_any_damage = config.planted.truncate_corruption();
    let mut report = RecoveryReport::default();
    disk.create_dir_all(dir).await.map_err(io_error(dir))?;
    report.reset_completed = finish_reset(disk, dir).await?;
    let names = disk.list_dir(dir).await.map_err(io_error(dir))?;
    let mut firsts: Vec<u64> = names.iter().filter_map(|name| parse_segment_file_name(name)).collect();
    firsts.sort_unstable();

    let mut segments: Vec<Segment<D::File>> = Vec::new();
    for (i, &first_index) in firsts.iter().enumerate() {
        let first_index_next = firsts.get(i + 1).copied();
        let path = dir.join(segment_file_name(first_index));
        let file = disk.open(&path, OpenMode::Existing).await.map_err(io_error(&path))?;
        let bytes = read_whole(&file, &path).await?;
        let Some(start) = SegmentStart::decode(&bytes) else {
            if !is_torn_creation(first_index, first_index_next, i == 0, bytes.len()) {
                let last_index = first_index_next.map_or(u64::MAX, |next| next - 1);
                return Err(corruption(&path, first_index, last_index, "bad segment header".into()));
            }
            drop(file);
            remove_durably(disk, dir, &[path]).await?;
            report.torn_segment_removed = true;
            continue;
        };
        check_start(&path, first_index, start, segments.last())?;
        let mut segment = Segment::new(start, file, path, now_ms);
        let mut drop_later_segments = false;
        if let Some(bad) = scan(&mut segment, &bytes, config.index_interval_bytes) {
            check_torn(&segment, &bytes, &bad, first_index_next, truncate_any_damage)?;
            // Torn tail: cut it off, durably, before anything is appended after it.
            if !(defer_cut && first_index_next.is_none()) {
                segment.file.set_len(bad.position).await.map_err(io_error(&segment.path))?;
                segment.file.sync_data().await.map_err(io_error(&segment.path))?;
            }
            report.torn_tail = Some(TornTail { index: segment.last_index + 1, bytes: bytes.len() as u64 - bad.position });
            // Only the planted bug cuts a sealed segment: the log ends at the damage.
            drop_later_segments = first_index_next.is_some();
        }
        report.entries += segment.last_index + 1 - segment.start.first_index;
        segments.push(segment);
        if drop_later_segments {
            let later: Vec<PathBuf> = firsts[i + 1..].iter().map(|&later| dir.join(segment_file_name(later))).collect();
            remove_durably(disk, dir, &later).await?;
            break;
        }
    }
    // What recovery accepted becomes durable before anything is appended after it: the last
    // segment may be one whose creation failed before its fsyncs (an EIO, then a retry that
    // reopened it: swarm seed 5034 lost synced entries to a power loss because the file's name
    // had never been made durable), or hold writes a process crash left unsynced.
    if let Some(last) = segments.last() {
        last.file.sync_data().await.map_err(io_error(&last.path))?;
        disk.sync_dir(dir).await.map_err(io_error(dir))?;
    }
    report.segments = segments.len();
    report.indexes_rebuilt = reconcile_index_files(disk, dir, &names, &segments).await?;
    assert_recovered(&segments, &report);
    Ok((segments, report))
}

/// What recovery hands over: segments that continue each other, and a torn tail (if any) just
/// after the last entry.
fn assert_recovered<F>(segments: &[Segment<F>], report: &RecoveryReport) {
    for pair in segments.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        assert!(next.start.first_index == prev.last_index + 1, "segment {} does not continue by index", next.start.first_index);
        assert!(next.start.first_offset == prev.offset_next, "segment {} does not continue by offset", next.start.first_index);
        assert!(next.start.prev_term == prev.last_term, "segment {} does not continue by term", next.start.first_index);
    }
    let entries: u64 = segments.iter().map(|segment| segment.last_index + 1 - segment.start.first_index).sum();
    assert_eq!(report.entries, entries, "the report counts the entries recovered");
    if let Some(torn) = report.torn_tail {
        let last = segments.last().expect("a torn tail is in a segment");
        assert_eq!(torn.index, last.last_index + 1, "the torn tail follows the last entry");
        assert!(torn.bytes > 0, "a torn tail holds bytes");
    }
}

fn corruption(path: &Path, first_index: u64, last_index: u64, detail: String) -> Error {
    Error::Corruption { path: path.to_path_buf(), first_index, last_index, detail }
}

/// Whether a segment file whose header does not decode is a creation a crash cut short: the
/// header is fsynced (file, then directory) before any entry is written, so that is a last
/// segment with no room for entries, and not a lone first segment past index 1 (a log starts
/// there only after a reset or retention, and either way that header was durable long before).
fn is_torn_creation(first_index: u64, first_index_next: Option<u64>, is_first: bool, file_bytes: usize) -> bool {
    first_index_next.is_none() && file_bytes as u64 <= SEGMENT_HEADER_BYTES && (!is_first || first_index == 1)
}

/// Checks that the header of the segment file named for `first_index` names that index and
/// continues the segment before it (index, offset and term).
fn check_start<F>(path: &Path, first_index: u64, start: SegmentStart, prev: Option<&Segment<F>>) -> Result<()> {
    if start.first_index != first_index {
        return Err(corruption(path, first_index, first_index, format!("header names first index {}", start.first_index)));
    }
    let Some(prev) = prev else {
        return Ok(());
    };
    if start.first_index != prev.last_index + 1 || start.first_offset != prev.offset_next || start.prev_term != prev.last_term {
        return Err(corruption(
            path,
            prev.last_index + 1,
            start.first_index.max(prev.last_index + 1),
            format!(
                "segment does not continue the previous one (index {} offset {} term {} after index {} offset {} term {})",
                start.first_index, start.first_offset, start.prev_term, prev.last_index, prev.offset_next, prev.last_term
            ),
        ));
    }
    Ok(())
}

/// Checks that the damage `bad` that stopped the scan of `segment` (whose file holds `bytes`) is
/// a torn tail: an entry that is not whole or fails its checksum, with no valid entry after it,
/// in the last segment (none follows at `first_index_next`). Anything else is corruption; the
/// planted bug (`truncate_any_damage`) takes any damage but a broken sequence for a torn tail.
fn check_torn<F>(
    segment: &Segment<F>,
    bytes: &[u8],
    bad: &BadEntry,
    first_index_next: Option<u64>,
    truncate_any_damage: bool,
) -> Result<()> {
    assert_eq!(bad.position, segment.bytes, "the scan stopped where the entries it accepted end");
    let expected = segment.last_index + 1;
    if let Some(detail) = &bad.sequence_error {
        return Err(corruption(&segment.path, expected, expected, detail.clone()));
    }
    if truncate_any_damage {
        return Ok(());
    }
    if let Some(found) = find_valid_entry_after(bytes, bad.position, segment.last_index) {
        return Err(corruption(&segment.path, expected, found - 1, "bad entry followed by valid entries".into()));
    }
    if let Some(next) = first_index_next {
        return Err(corruption(&segment.path, expected, next - 1, "bad entry in a sealed segment".into()));
    }
    Ok(())
}

/// Removes `paths` and then makes the removal durable (one directory fsync).
async fn remove_durably<D: Disk>(disk: &D, dir: &Path, paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        disk.remove_file(path).await.map_err(io_error(path))?;
    }
    disk.sync_dir(dir).await.map_err(io_error(dir))
}

/// The highest index of any checksum-valid entry in the segments of `dir`, damaged or not (0
/// when there is none): an upper bound of what a replica whose log refuses to open still holds
/// intact. Reads every segment once and tries every entry magic, so it is for the rare failed
/// open only.
pub async fn highest_intact_index<D: Disk>(disk: &D, dir: &Path) -> Result<u64> {
    let mut highest = 0;
    for name in disk.list_dir(dir).await.map_err(io_error(dir))? {
        if parse_segment_file_name(&name).is_none() {
            continue;
        }
        let path = dir.join(&name);
        let file = disk.open(&path, OpenMode::Existing).await.map_err(io_error(&path))?;
        let bytes = read_whole(&file, &path).await?;
        highest = valid_entries_from(&bytes, 0).map(|header| header.index).fold(highest, u64::max);
    }
    Ok(highest)
}

/// Where and why a scan stopped early.
struct BadEntry {
    position: u64,
    /// Set when the entry is intact but does not continue the sequence (always corruption).
    sequence_error: Option<String>,
}

/// Notes every valid entry of `bytes` into `segment`; returns the first bad one, if any.
fn scan<F: DiskFile>(segment: &mut Segment<F>, bytes: &[u8], index_interval_bytes: u64) -> Option<BadEntry> {
    let mut position = SEGMENT_HEADER_BYTES as usize;
    while position < bytes.len() {
        let Some(header) = valid_entry_at(bytes, position) else {
            return Some(BadEntry { position: position as u64, sequence_error: None });
        };
        if header.index != segment.last_index + 1 || header.base_offset != segment.offset_next || header.term < segment.last_term {
            return Some(BadEntry {
                position: position as u64,
                sequence_error: Some(format!(
                    "entry index {} offset {} term {} does not follow index {} offset {} term {}",
                    header.index, header.base_offset, header.term, segment.last_index, segment.offset_next, segment.last_term
                )),
            });
        }
        segment.note_entry(&header, position as u64, index_interval_bytes);
        position += header.encoded_bytes();
    }
    assert_eq!(segment.bytes, bytes.len() as u64, "a clean scan accounts for every byte");
    None
}

/// The header of a whole, checksum-valid entry at `position`, if there is one.
fn valid_entry_at(bytes: &[u8], position: usize) -> Option<EntryHeader> {
    let header = EntryHeader::parse(bytes.get(position..)?)?;
    let end = position.checked_add(header.encoded_bytes())?;
    let entry = bytes.get(position..end)?;
    header.verify(&entry[..ENTRY_HEADER_BYTES], &entry[ENTRY_HEADER_BYTES..]).then_some(header)
}

/// The index of a valid entry starting anywhere after `position` with an index above
/// `last_good_index`: proof that the damage is not a torn tail.
fn find_valid_entry_after(bytes: &[u8], position: u64, last_good_index: u64) -> Option<u64> {
    valid_entries_from(bytes, position as usize + 1).find(|header| header.index > last_good_index).map(|header| header.index)
}

/// Every whole, checksum-valid entry that starts at or after `start`, wherever it starts (each
/// position holding the entry magic is tried), in file order.
fn valid_entries_from(bytes: &[u8], start: usize) -> impl Iterator<Item = EntryHeader> + '_ {
    let magic = ENTRY_MAGIC.to_le_bytes();
    let end = bytes.len().checked_sub(ENTRY_HEADER_BYTES);
    end.into_iter()
        .flat_map(move |end| start..=end)
        .filter(move |&at| bytes[at..at + 2] == magic)
        .filter_map(move |at| valid_entry_at(bytes, at))
}

async fn read_whole<F: DiskFile>(file: &F, path: &Path) -> Result<Vec<u8>> {
    let len = file.len().await.map_err(io_error(path))?;
    let mut bytes = Vec::with_capacity(len as usize);
    while (bytes.len() as u64) < len {
        let want = RECOVERY_READ_BYTES.min((len - bytes.len() as u64) as usize);
        let chunk = file.read_at(bytes.len() as u64, want).await.map_err(io_error(path))?;
        assert!(chunk.len() <= want, "a read of {want} bytes returned {}", chunk.len());
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Index files are derived: a sealed segment gets one equal to its scan, the active (last)
/// segment and removed segments get none. Returns how many were (re)written.
async fn reconcile_index_files<D: Disk>(disk: &D, dir: &Path, names: &[String], segments: &[Segment<D::File>]) -> Result<usize> {
    let mut rebuilt = 0;
    let sealed = segments.len().saturating_sub(1);
    for segment in &segments[..sealed] {
        let path = segment.index_path();
        let expected = encode_index(&segment.points);
        let found = match disk.open(&path, OpenMode::Existing).await {
            Ok(file) => read_whole(&file, &path).await.ok(),
            Err(_) => None,
        };
        if found.as_deref() != Some(&expected[..]) {
            write_index_file(disk, &path, expected).await?;
            rebuilt += 1;
        }
    }
    let keep: Vec<String> = segments[..sealed].iter().map(|s| index_file_name(s.start.first_index)).collect();
    let mut removed = false;
    for name in names.iter().filter(|name| name.ends_with(".idx") && !keep.contains(name)) {
        let path = dir.join(name);
        disk.remove_file(&path).await.map_err(io_error(&path))?;
        removed = true;
    }
    if removed || rebuilt > 0 {
        disk.sync_dir(dir).await.map_err(io_error(dir))?;
    }
    assert!(rebuilt <= sealed, "{rebuilt} index files rebuilt for {sealed} sealed segments");
    Ok(rebuilt)
}

/// Writes a sealed segment's index file (fsynced; a torn one is rebuilt on the next open).
pub async fn write_index_file<D: Disk>(disk: &D, path: &Path, contents: Vec<u8>) -> Result<()> {
    assert!(contents.len() >= 16, "an index file holds at least its header and crc");
    let file = disk.open(path, OpenMode::CreateOrOpen).await.map_err(io_error(path))?;
    let len = contents.len() as u64;
    file.write_at(0, Bytes::from(contents)).await.map_err(io_error(path))?;
    file.set_len(len).await.map_err(io_error(path))?;
    file.sync_data().await.map_err(io_error(path))?;
    Ok(())
}

/// Finishes or discards a reset a crash interrupted. A pending reset never committed: drop
/// it. A committed one: remove every old segment and index, then move the new first segment
/// into place.
async fn finish_reset<D: Disk>(disk: &D, dir: &Path) -> Result<bool> {
    let names = disk.list_dir(dir).await.map_err(io_error(dir))?;
    if names.iter().any(|name| name == RESET_PENDING_FILE) {
        let path = dir.join(RESET_PENDING_FILE);
        disk.remove_file(&path).await.map_err(io_error(&path))?;
        disk.sync_dir(dir).await.map_err(io_error(dir))?;
    }
    if !names.iter().any(|name| name == RESET_COMMITTED_FILE) {
        return Ok(false);
    }
    let committed = dir.join(RESET_COMMITTED_FILE);
    let file = disk.open(&committed, OpenMode::Existing).await.map_err(io_error(&committed))?;
    let header = read_whole(&file, &committed).await?;
    let start = SegmentStart::decode(&header).ok_or_else(|| Error::Corruption {
        path: committed.clone(),
        first_index: 0,
        last_index: u64::MAX,
        detail: "committed reset file has a bad header".into(),
    })?;
    for name in names.iter().filter(|name| name.ends_with(".log") || name.ends_with(".idx")) {
        let path = dir.join(name);
        disk.remove_file(&path).await.map_err(io_error(&path))?;
    }
    let target = dir.join(segment_file_name(start.first_index));
    disk.rename(&committed, &target).await.map_err(io_error(&target))?;
    disk.sync_dir(dir).await.map_err(io_error(dir))?;
    Ok(true)
}
