//! One segment: a file `<first_index:020>.log` holding a header and then entries back to back,
//! plus its sparse index (in memory always; on disk as `<first_index:020>.idx` once sealed).
//!
//! Segment header (little-endian, `SEGMENT_HEADER_BYTES` = 40), written and fsynced (file and
//! directory) before any entry goes in, so every segment names where it starts even when empty:
//!
//! ```text
//!  0 magic u32 | 4 version u16 | 6 zero u16 | 8 first_index u64 | 16 first_offset u64
//! 24 prev_term u64 (term of first_index - 1) | 32 crc32 over 0..32 u32 | 36 zero u32
//! ```
//!
//! Index file: magic u32, version u16, zero u16, count u32, then `count` points of (index u64,
//! offset u64, position u64), then crc32 over all before. It is derived data: recovery checks it
//! against the scan and rewrites it when missing or different.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::disk::{Disk, DiskFile};
use crate::entry::{EntryHeader, ENTRY_HEADER_BYTES};
use crate::error::{io_error, Error, Result};

pub const SEGMENT_HEADER_BYTES: u64 = 40;
const SEGMENT_MAGIC: u32 = 0x4F44_5347; // "ODSG"
const SEGMENT_VERSION: u16 = 1;
const INDEX_MAGIC: u32 = 0x4F44_4958; // "ODIX"
const INDEX_VERSION: u16 = 1;
const INDEX_POINT_BYTES: usize = 24;
/// How much a sequential read pulls from the disk at once.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Where a segment starts: what its header records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentStart {
    pub first_index: u64,
    pub first_offset: u64,
    /// Term of the entry at `first_index - 1` (0 when there is none).
    pub prev_term: u64,
}

impl SegmentStart {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.first_index >= 1, "a segment starts at index 1 or later");
        let mut out = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
        out.extend_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.first_index.to_le_bytes());
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        out.extend_from_slice(&self.prev_term.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(out.len() as u64, SEGMENT_HEADER_BYTES, "a segment header is SEGMENT_HEADER_BYTES long");
        assert_eq!(SegmentStart::decode(&out), Some(*self), "a segment header decodes to what was encoded");
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<SegmentStart> {
        if bytes.len() < SEGMENT_HEADER_BYTES as usize {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let version = u16::from_le_bytes(bytes[4..6].try_into().unwrap());
        let crc = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
        if magic != SEGMENT_MAGIC || version != SEGMENT_VERSION || crc32fast::hash(&bytes[0..32]) != crc {
            return None;
        }
        if bytes[6..8] != [0, 0] || bytes[36..40] != [0, 0, 0, 0] {
            return None;
        }
        Some(SegmentStart { first_index: u64_at(8), first_offset: u64_at(16), prev_term: u64_at(24) })
    }
}

/// A sparse index point: the entry at `index` starts at file `position` and has `base_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPoint {
    pub index: u64,
    pub offset: u64,
    pub position: u64,
}

pub fn encode_index(points: &[IndexPoint]) -> Vec<u8> {
    for pair in points.windows(2) {
        assert!(pair[0].index < pair[1].index, "index points out of index order at {}", pair[1].index);
        assert!(pair[0].offset <= pair[1].offset, "index points out of offset order at {}", pair[1].index);
        assert!(pair[0].position < pair[1].position, "index points out of file order at {}", pair[1].index);
    }
    let mut out = Vec::with_capacity(12 + points.len() * INDEX_POINT_BYTES + 4);
    out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for point in points {
        out.extend_from_slice(&point.index.to_le_bytes());
        out.extend_from_slice(&point.offset.to_le_bytes());
        out.extend_from_slice(&point.position.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), 12 + points.len() * INDEX_POINT_BYTES + 4, "an index file is its header, points and crc");
    out
}

pub fn segment_file_name(first_index: u64) -> String {
    let name = format!("{first_index:020}.log");
    assert_eq!(parse_segment_file_name(&name), Some(first_index), "segment file names parse back");
    name
}

pub fn index_file_name(first_index: u64) -> String {
    format!("{first_index:020}.idx")
}

/// Parses `<20 digits>.log`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment's in-memory state.
pub struct Segment<F> {
    pub start: SegmentStart,
    /// Shared with the log's readers ([`crate::LogReader`]), which keep it open while they read.
    pub file: Arc<F>,
    pub path: PathBuf,
    /// File length, header included.
    pub bytes: u64,
    /// Last index in this segment; `start.first_index - 1` when empty.
    pub last_index: u64,
    pub last_term: u64,
    pub offset_next: u64,
    /// Largest record timestamp in the segment, -1 when it holds no records.
    pub timestamp_max: i64,
    pub points: Vec<IndexPoint>,
    pub bytes_since_point: u64,
    /// When this segment took its first entry (or was opened), for roll by age.
    pub created_ms: i64,
    /// Written since the last fsync.
    pub dirty: bool,
}

impl<F> Segment<F> {
    pub fn new(start: SegmentStart, file: F, path: PathBuf, now_ms: i64) -> Segment<F> {
        assert!(start.first_index >= 1, "a segment starts at index 1 or later");
        Segment {
            start,
            file: Arc::new(file),
            path,
            bytes: SEGMENT_HEADER_BYTES,
            last_index: start.first_index - 1,
            last_term: start.prev_term,
            offset_next: start.first_offset,
            timestamp_max: -1,
            points: Vec::new(),
            bytes_since_point: 0,
            created_ms: now_ms,
            dirty: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.last_index < self.start.first_index
    }

    pub fn index_path(&self) -> PathBuf {
        self.path.with_extension("idx")
    }

    /// Records an entry that now sits at `position` (in memory only).
    pub fn note_entry(&mut self, header: &EntryHeader, position: u64, index_interval_bytes: u64) {
        assert_eq!(header.index, self.last_index + 1, "entries are dense by index");
        assert_eq!(header.base_offset, self.offset_next, "entries are dense by offset");
        assert!(header.term >= self.last_term, "entry {} of term {} after term {}", header.index, header.term, self.last_term);
        assert_eq!(position, self.bytes, "entry {} sits right after the one before", header.index);
        if self.points.is_empty() || self.bytes_since_point >= index_interval_bytes {
            self.points.push(IndexPoint { index: header.index, offset: header.base_offset, position });
            self.bytes_since_point = 0;
        }
        let entry_bytes = header.encoded_bytes() as u64;
        self.bytes_since_point += entry_bytes;
        self.bytes += entry_bytes;
        self.last_index = header.index;
        self.last_term = header.term;
        self.offset_next = header.offset_next();
        if header.record_count > 0 {
            self.timestamp_max = self.timestamp_max.max(header.timestamp_max);
        }
        let point = self.points.last().expect("the first entry gets an index point");
        assert_eq!(self.bytes_since_point, self.bytes - point.position, "bytes_since_point counts from the last index point");
    }

    /// The file position (and index) of the indexed entry at or before `index`.
    pub fn position_for_index(&self, index: u64) -> (u64, u64) {
        self.position_for(|point| point.index <= index)
    }

    /// The file position (and index) of the indexed entry at or before the entry holding
    /// `offset`.
    pub fn position_for_offset(&self, offset: u64) -> (u64, u64) {
        self.position_for(|point| point.offset <= offset)
    }

    /// The last index point satisfying `at_or_before` (points are sorted by index and offset),
    /// or the first entry of the segment.
    fn position_for(&self, at_or_before: impl Fn(&IndexPoint) -> bool) -> (u64, u64) {
        let (position, index) = match self.points.partition_point(at_or_before) {
            0 => (SEGMENT_HEADER_BYTES, self.start.first_index),
            at => (self.points[at - 1].position, self.points[at - 1].index),
        };
        assert!(position <= self.bytes, "index point at {position} past the segment's end {}", self.bytes);
        assert!(index <= self.last_index + 1, "index point of entry {index} past the segment's last {}", self.last_index);
        (position, index)
    }
}

impl<F: DiskFile> Segment<F> {
    /// Rebuilds the in-memory state after a suffix truncation that keeps entries up to
    /// `last_index` (which must be in this segment or `first_index - 1`), by re-scanning the kept
    /// part. Returns the new file length.
    pub async fn truncate_to(&mut self, last_index: u64, index_interval_bytes: u64) -> Result<u64> {
        assert!(last_index + 1 >= self.start.first_index, "truncation to {last_index} below the segment's start");
        assert!(last_index <= self.last_index, "truncation to {last_index} past the segment's last {}", self.last_index);
        let mut rebuilt = Segment::new(self.start, (), self.path.clone(), self.created_ms);
        if last_index >= self.start.first_index {
            let mut cursor = EntryCursor::new(SEGMENT_HEADER_BYTES, self.start.first_index, self.bytes);
            while let Some((position, header, _)) = cursor.next(&self.file, &self.path, false).await? {
                rebuilt.note_entry(&header, position, index_interval_bytes);
                if header.index == last_index {
                    break;
                }
            }
        }
        assert_eq!(rebuilt.last_index, last_index, "the rescan stops at the truncation point");
        self.bytes = rebuilt.bytes;
        self.last_index = rebuilt.last_index;
        self.last_term = rebuilt.last_term;
        self.offset_next = rebuilt.offset_next;
        self.timestamp_max = rebuilt.timestamp_max;
        self.points = rebuilt.points;
        self.bytes_since_point = rebuilt.bytes_since_point;
        Ok(self.bytes)
    }
}

/// Creates a segment file holding only its header, durable (file and directory fsynced).
pub async fn create_segment<D: Disk>(disk: &D, dir: &Path, start: SegmentStart, now_ms: i64) -> Result<Segment<D::File>> {
    let path = dir.join(segment_file_name(start.first_index));
    let file = disk.open(&path, crate::OpenMode::CreateNew).await.map_err(io_error(&path))?;
    file.write_at(0, Bytes::from(start.encode())).await.map_err(io_error(&path))?;
    file.sync_data().await.map_err(io_error(&path))?;
    disk.sync_dir(dir).await.map_err(io_error(dir))?;
    let segment = Segment::new(start, file, path, now_ms);
    assert!(segment.is_empty(), "a new segment holds no entry");
    Ok(segment)
}

/// Reads entries one by one from a file, pulling `READ_CHUNK_BYTES` at a time, verifying every
/// checksum and the index sequence. Any damage is [`Error::Corruption`]: this cursor serves
/// reads of data recovery has already accepted, so damage here is corruption at rest.
pub struct EntryCursor {
    position: u64,
    index_next: u64,
    end: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl EntryCursor {
    /// The index of the entry [`EntryCursor::next`] reads next.
    pub fn index_next(&self) -> u64 {
        self.index_next
    }

    pub fn new(position: u64, index_next: u64, end: u64) -> EntryCursor {
        assert!(position >= SEGMENT_HEADER_BYTES, "entries start after the segment header");
        assert!(position <= end, "a cursor at {position} past its end {end}");
        EntryCursor { position, index_next, end, buffer: Vec::new(), buffer_start: position }
    }

    /// Makes `[position, position + len)` available in the buffer.
    async fn fill<F: DiskFile>(&mut self, file: &F, path: &Path, len: usize) -> Result<bool> {
        let have_end = self.buffer_start + self.buffer.len() as u64;
        if self.position >= self.buffer_start && self.position + len as u64 <= have_end {
            return Ok(true);
        }
        if self.position + len as u64 > self.end {
            return Ok(false);
        }
        let want = len.max(READ_CHUNK_BYTES).min((self.end - self.position) as usize);
        self.buffer = file.read_at(self.position, want).await.map_err(io_error(path))?;
        self.buffer_start = self.position;
        Ok(self.buffer.len() >= len)
    }

    /// The next entry: its position, header and payload (`None` past the end). With
    /// `want_payload` false the payload comes back empty (it is still checksummed).
    pub async fn next<F: DiskFile>(&mut self, file: &F, path: &Path, want_payload: bool) -> Result<Option<(u64, EntryHeader, Bytes)>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let damaged = |detail: &str, index: u64| Error::Corruption {
            path: path.to_path_buf(),
            first_index: index,
            last_index: index,
            detail: detail.to_string(),
        };
        if !self.fill(file, path, ENTRY_HEADER_BYTES).await? {
            return Err(damaged("entry header cut short", self.index_next));
        }
        let at = (self.position - self.buffer_start) as usize;
        let header =
            EntryHeader::parse(&self.buffer[at..at + ENTRY_HEADER_BYTES]).ok_or_else(|| damaged("bad entry header", self.index_next))?;
        if header.index != self.index_next {
            return Err(damaged("entry index out of sequence", self.index_next));
        }
        let entry_bytes = header.encoded_bytes();
        if !self.fill(file, path, entry_bytes).await? {
            return Err(damaged("entry cut short", self.index_next));
        }
        let at = (self.position - self.buffer_start) as usize;
        let bytes = &self.buffer[at..at + entry_bytes];
        if !header.verify(&bytes[..ENTRY_HEADER_BYTES], &bytes[ENTRY_HEADER_BYTES..]) {
            return Err(damaged("entry checksum mismatch", self.index_next));
        }
        let payload = if want_payload { Bytes::copy_from_slice(&bytes[ENTRY_HEADER_BYTES..]) } else { Bytes::new() };
        let position = self.position;
        self.position += entry_bytes as u64;
        self.index_next += 1;
        assert!(self.position <= self.end, "entry {} read past the cursor's end", header.index);
        assert!(!want_payload || payload.len() == header.payload_bytes as usize, "entry {} read with a short payload", header.index);
        Ok(Some((position, header, payload)))
    }
}
