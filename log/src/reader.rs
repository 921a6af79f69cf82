//! [`LogReader`]: a read-only view of a [`crate::SegmentLog`] that other tasks read without
//! going through the log's owner (the raft driver), so a consumer reading fast never delays the
//! owner's appends, fsyncs and commits (issue 17, "reads off the write path").
//!
//! The owner publishes, after every change of its segments (append, roll, truncation,
//! retention, reset), the list of segments with each one's open file, its length and its sparse
//! index, and separately the *readable index*: the last index whose entry is committed, so its
//! bytes never change again while this log object lives (raft never truncates a committed entry,
//! and an entry is written before it can be committed locally). A reader plans its read under
//! the view's lock (which segments, from which index point), drops the lock, and reads the files
//! itself, stopping before any entry past the readable index (and past the caller's bound, the
//! applied high watermark). It never parses a byte past the readable entries, so an append or a
//! truncation running at the same time in the same file cannot show it a half-written entry.
//!
//! How a reader holds a segment: by its open file handle (`Arc` of the file), taken while
//! planning. Retention, truncation and reset remove segment files by name only; the handle
//! keeps the file's bytes readable until the reader drops it (POSIX unlink semantics, which
//! [`crate::SimDisk`] models with its per-inode handle count). A reader that planned before a
//! retention pass may so serve entries that pass just deleted: they were committed, and the
//! read is as if it had run a moment earlier. The next read plans on the new view and gets
//! [`Error::OffsetBelowStart`].
//!
//! Invariants (asserted by the owner when it publishes and by the reader on what it returns):
//! - the view's segments are the log's, in order, each with the length written so far;
//! - the readable index never passes the log's last index, and a truncation never cuts at or
//!   below it;
//! - a read returns dense data entries starting with the one holding the asked offset, none
//!   past `min(index_max, readable index)`.
//!
//! Cost sketch: the view copies each segment's sparse index once (24 B per
//! `index_interval_bytes` of entries, 0.6 % of the data by default) and then only the points
//! an append adds; the owner takes the write lock once per append and per published index, a
//! reader takes the read lock once per read (no I/O under either).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::disk::DiskFile;
use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::segment::{EntryCursor, IndexPoint, Segment, SegmentStart, SEGMENT_HEADER_BYTES};

/// A cloneable, read-only handle on a log's published view (see the module comment).
pub struct LogReader<F> {
    view: Arc<RwLock<View<F>>>,
}

impl<F> Clone for LogReader<F> {
    fn clone(&self) -> LogReader<F> {
        LogReader { view: Arc::clone(&self.view) }
    }
}

/// What the owner last published.
pub(crate) struct View<F> {
    segments: Vec<ViewSegment<F>>,
    /// Entries at or below this index are committed: their bytes never change.
    readable_index: u64,
}

struct ViewSegment<F> {
    start: SegmentStart,
    file: Arc<F>,
    path: PathBuf,
    /// The file's length with every entry written so far (never a half-written one).
    bytes: u64,
    points: Vec<IndexPoint>,
}

/// One segment's part of a planned read: where to start and where the written bytes end.
struct Planned<F> {
    file: Arc<F>,
    path: PathBuf,
    position: u64,
    index: u64,
    end: u64,
}

impl<F> View<F> {
    pub(crate) fn new(readable_index: u64) -> View<F> {
        View { segments: Vec::new(), readable_index }
    }
}

impl<F: DiskFile> LogReader<F> {
    pub(crate) fn new(view: Arc<RwLock<View<F>>>) -> LogReader<F> {
        LogReader { view }
    }

    fn view(&self) -> RwLockReadGuard<'_, View<F>> {
        self.view.read().expect("a log view's lock is never poisoned: no code panics holding it")
    }

    /// The last index a read may return (the last committed entry the owner published).
    pub fn readable_index(&self) -> u64 {
        self.view().readable_index
    }

    /// Offset of the first record still in the log, as last published.
    pub fn offset_start(&self) -> u64 {
        self.view().segments.first().map_or(0, |segment| segment.start.first_offset)
    }

    /// Data entries holding records at or after `offset`, starting with the one that holds
    /// `offset`, never past index `index_max` (the caller's bound: its applied high watermark)
    /// nor past the readable index, at most `bytes_max` (but at least one entry when any is
    /// available). The same contract as [`crate::SegmentLog::read_offsets`]. The read is planned
    /// (and its segments held) when this is called, not when the future is first polled.
    pub fn read_offsets(&self, offset: u64, bytes_max: u64, index_max: u64) -> impl Future<Output = Result<Vec<Entry>>> + Send + 'static {
        let index_max = index_max.min(self.readable_index());
        read_planned(self.plan(offset), offset, bytes_max, index_max)
    }

    /// [`LogReader::read_offsets`] bounded only by what is written, past the readable index:
    /// the planted bug that serves uncommitted entries (server `ServeAboveCommit`). Such reads
    /// may meet a half-rewritten entry and fail as corruption; a planted bug may.
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub fn read_offsets_past_commit(&self, offset: u64, bytes_max: u64) -> impl Future<Output = Result<Vec<Entry>>> + Send + 'static {
        read_planned(self.plan(offset), offset, bytes_max, u64::MAX)
    }

    /// The segments a read at `offset` visits, each from its index point at or before the entry
    /// holding `offset` (only the first needs that; the rest start at their first entry).
    fn plan(&self, offset: u64) -> Result<Vec<Planned<F>>> {
        let view = self.view();
        let Some(first) = view.segments.first() else { return Ok(Vec::new()) };
        if offset < first.start.first_offset {
            return Err(Error::OffsetBelowStart { offset, offset_start: first.start.first_offset });
        }
        let at = view.segments.partition_point(|s| s.start.first_offset <= offset) - 1;
        let plan: Vec<Planned<F>> = view.segments[at..]
            .iter()
            .enumerate()
            .map(|(n, segment)| {
                let (position, index) = match n {
                    0 => match segment.points.partition_point(|point| point.offset <= offset) {
                        0 => (SEGMENT_HEADER_BYTES, segment.start.first_index),
                        k => (segment.points[k - 1].position, segment.points[k - 1].index),
                    },
                    _ => (SEGMENT_HEADER_BYTES, segment.start.first_index),
                };
                assert!(position <= segment.bytes, "index point at {position} past the segment's end {}", segment.bytes);
                Planned { file: Arc::clone(&segment.file), path: segment.path.clone(), position, index, end: segment.bytes }
            })
            .collect();
        Ok(plan)
    }
}

/// Reads a planned read's segments, stopping before any entry past `index_max`.
async fn read_planned<F: DiskFile>(plan: Result<Vec<Planned<F>>>, offset: u64, bytes_max: u64, index_max: u64) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    'segments: for planned in &plan? {
        let mut cursor = EntryCursor::new(planned.position, planned.index, planned.end);
        // Checked before the cursor parses the next entry: past `index_max` the bytes may be
        // changing under us (an append, or a truncation of uncommitted entries).
        while cursor.index_next() <= index_max {
            let Some((_, header, payload)) = cursor.next(&*planned.file, &planned.path, true).await? else { break };
            if header.kind != EntryKind::Data || header.offset_next() <= offset {
                continue;
            }
            if !out.is_empty() && bytes + header.encoded_bytes() as u64 > bytes_max {
                break 'segments;
            }
            bytes += header.encoded_bytes() as u64;
            out.push(header.into_entry(payload));
        }
        if cursor.index_next() > index_max {
            break;
        }
    }
    crate::log::assert_offsets_read(&out, offset, index_max);
    Ok(out)
}

/// The owner's side: brings the view in line with its segments.
pub(crate) struct Publisher<F> {
    view: Arc<RwLock<View<F>>>,
}

impl<F: DiskFile> Publisher<F> {
    pub(crate) fn new(readable_index: u64) -> Publisher<F> {
        Publisher { view: Arc::new(RwLock::new(View::new(readable_index))) }
    }

    pub(crate) fn reader(&self) -> LogReader<F> {
        LogReader::new(Arc::clone(&self.view))
    }

    fn view_mut(&self) -> RwLockWriteGuard<'_, View<F>> {
        self.view.write().expect("a log view's lock is never poisoned: no code panics holding it")
    }

    /// Publishes `segments` (every entry they count written). A segment already in the view
    /// (the same open file) keeps its copied index points and takes only the new ones, unless
    /// `points_rewritten` (a truncation rebuilt the active segment's points).
    pub(crate) fn publish(&self, segments: &[Segment<F>], last_index: u64, points_rewritten: bool) {
        let mut view = self.view_mut();
        let mut old = std::mem::take(&mut view.segments).into_iter().peekable();
        let mut published = Vec::with_capacity(segments.len());
        for segment in segments {
            // Segments only leave from the front (retention) or the back (truncation, reset).
            while old.peek().is_some_and(|o| !Arc::ptr_eq(&o.file, &segment.file) && o.start.first_index < segment.start.first_index) {
                old.next();
            }
            let kept = old.next_if(|o| Arc::ptr_eq(&o.file, &segment.file));
            let mut entry = kept.unwrap_or_else(|| ViewSegment {
                start: segment.start,
                file: Arc::clone(&segment.file),
                path: segment.path.clone(),
                bytes: SEGMENT_HEADER_BYTES,
                points: Vec::new(),
            });
            if points_rewritten || entry.points.len() > segment.points.len() {
                entry.points.clear();
            }
            let have = entry.points.len();
            entry.points.extend_from_slice(&segment.points[have..]);
            entry.bytes = segment.bytes;
            assert!(entry.start == segment.start, "a view segment changed its start");
            assert!(entry.points.last() == segment.points.last(), "a view segment's index points differ from the log's");
            published.push(entry);
        }
        view.segments = published;
        assert!(view.readable_index <= last_index, "readable index {} past the log's end {last_index}", view.readable_index);
    }

    /// Entries at or below `index` are committed (the owner applies them next).
    pub(crate) fn set_readable_index(&self, index: u64, last_index: u64) {
        assert!(index <= last_index, "readable index {index} past the log's end {last_index}");
        self.view_mut().readable_index = index;
    }

    /// A truncation from `from_index` (or a reset starting there) is about to remove entries:
    /// none of them may be readable.
    pub(crate) fn assert_not_readable(&self, from_index: u64) {
        let readable = self.view_mut().readable_index;
        assert!(from_index > readable, "entries from {from_index} removed, but readers may read up to {readable}");
    }

    /// A reset replaced the whole log: the new one's entries start at `first_index`.
    pub(crate) fn lower_readable_below(&self, first_index: u64) {
        let mut view = self.view_mut();
        view.readable_index = view.readable_index.min(first_index - 1);
    }
}
