//! The log's read-only view ([`odradek_log::LogReader`], issue 17 "reads off the write path"):
//! a reader returns what the log itself returns for the same read, never past the readable
//! index (L12: nothing above what the replica applied), and a segment it planned to read stays
//! readable after retention, a truncation or a reset removed its file.
#![cfg(not(madsim))]

use crate::common;

use common::*;
use odradek_log::{Disk, Error, LogConfig, LogReader, SegmentLog, SimDisk};

type SimReader = LogReader<<SimDisk as Disk>::File>;

/// Every offset read through the reader equals the log's own read bounded by the same index.
async fn assert_reader_matches(log: &SegmentLog<SimDisk>, reader: &SimReader, index_max: u64) {
    for offset in log.offset_start()..log.offset_next() + 2 {
        for bytes_max in [1, 200, u64::MAX] {
            let ours = reader.read_offsets(offset, bytes_max, index_max).await.expect("reader read");
            let log_read = log.read_offsets(offset, bytes_max, index_max.min(reader.readable_index())).await.expect("log read");
            assert_eq!(ours, log_read, "offset {offset}, bytes_max {bytes_max}, index_max {index_max}");
        }
    }
}

#[test]
fn reader_reads_what_the_log_reads_up_to_the_readable_index() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let (mut log, _) = SegmentLog::open(disk.clone(), DIR, tiny_config(), 0).await.unwrap();
        let reader = log.reader();
        assert_eq!(reader.readable_index(), 0);
        let written = append_data(&mut log, 40, 1).await;
        log.sync().await.unwrap();
        assert!(log.segment_count() > 5, "tiny segments roll: {}", log.segment_count());
        // Nothing is readable before the owner says so, whatever the caller's bound.
        assert!(reader.read_offsets(0, u64::MAX, u64::MAX).await.unwrap().is_empty());
        log.set_readable_index(25);
        assert_eq!(reader.read_offsets(0, u64::MAX, u64::MAX).await.unwrap(), written[..25]);
        assert_eq!(reader.read_offsets(31, u64::MAX, 15).await.unwrap(), written[10..15]);
        assert_reader_matches(&log, &reader, u64::MAX).await;
        assert_reader_matches(&log, &reader, 17).await;
        // Uncommitted entries past the readable index may be truncated; readers never saw them.
        log.truncate_suffix(30).await.unwrap();
        let more = append_data(&mut log, 10, 2).await;
        log.sync().await.unwrap();
        log.set_readable_index(log.last_index());
        let mut expected = written[..29].to_vec();
        expected.extend(more);
        assert_eq!(reader.read_offsets(0, u64::MAX, u64::MAX).await.unwrap(), expected);
        assert_reader_matches(&log, &reader, u64::MAX).await;
    });
}

#[test]
#[should_panic(expected = "readers may read up to")]
fn truncating_a_readable_entry_is_refused() {
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let (mut log, _) = SegmentLog::open(disk.clone(), DIR, tiny_config(), 0).await.unwrap();
        append_data(&mut log, 10, 1).await;
        log.sync().await.unwrap();
        log.set_readable_index(6);
        log.truncate_suffix(6).await.unwrap();
    });
}

#[test]
fn a_planned_read_survives_retention_and_the_next_one_sees_the_new_start() {
    runtime().block_on(async {
        let disk = SimDisk::new(9);
        let config = LogConfig { retention_bytes: Some(1), ..tiny_config() };
        let (mut log, _) = SegmentLog::open(disk.clone(), DIR, config, 0).await.unwrap();
        let reader = log.reader();
        let written = append_data(&mut log, 40, 1).await;
        log.sync().await.unwrap();
        log.set_readable_index(40);
        // A read started before the retention pass: its future holds the segments' files.
        let early = reader.read_offsets(0, u64::MAX, u64::MAX);
        let report = log.enforce_retention(0, 41).await.unwrap();
        assert!(report.segments_deleted > 0, "retention deleted segments: {report:?}");
        assert!(log.offset_start() > 0);
        assert_eq!(early.await.unwrap(), written, "the files a read planned on stay readable");
        assert!(matches!(reader.read_offsets(0, u64::MAX, u64::MAX).await, Err(Error::OffsetBelowStart { .. })));
        assert_eq!(reader.offset_start(), log.offset_start());
        assert_reader_matches(&log, &reader, u64::MAX).await;
        // A reset (snapshot install) replaces every segment: the reader follows.
        log.reset(60, 500, 3, 0).await.unwrap();
        assert_eq!(reader.offset_start(), 500);
        assert!(reader.read_offsets(500, u64::MAX, u64::MAX).await.unwrap().is_empty());
        assert!(matches!(reader.read_offsets(0, u64::MAX, u64::MAX).await, Err(Error::OffsetBelowStart { .. })));
    });
}
