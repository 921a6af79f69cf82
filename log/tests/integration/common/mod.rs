//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use odradek_log::{Entry, EntryKind, LogConfig, SegmentLog, SimDisk};

pub const DIR: &str = "/data/topic-0";

/// A runtime for one test case (the log is async; proptest bodies are not).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Small segments and no cache, so every test crosses segment boundaries and reads from disk.
pub fn tiny_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 600,
        segment_age_ms_max: i64::MAX,
        index_interval_bytes: 128,
        retention_bytes: None,
        retention_ms: None,
        cache_bytes_max: 0,
        ..LogConfig::default()
    }
}

/// The payload of entry `index`: recognisable and of varying length.
pub fn payload_for(index: u64, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (index as usize * 31 + i) as u8).collect::<Vec<u8>>())
}

/// The entry that continues `log` with the given shape.
pub fn next_entry(index: u64, term: u64, offset: u64, records: u32, len: usize) -> Entry {
    if records == 0 {
        Entry::without_records(term, index, EntryKind::Noop, offset, payload_for(index, len))
    } else {
        Entry::data(term, index, offset, records, index as i64 * 10, payload_for(index, len))
    }
}

/// Appends `count` data entries (3 records each) continuing the log.
pub async fn append_data(log: &mut SegmentLog<SimDisk>, count: u64, term: u64) -> Vec<Entry> {
    let mut entries = Vec::new();
    let (mut index, mut offset) = (log.last_index() + 1, log.offset_next());
    for _ in 0..count {
        let entry = next_entry(index, term, offset, 3, 40 + (index % 7) as usize * 9);
        offset = entry.offset_next();
        index += 1;
        entries.push(entry);
    }
    log.append(&entries, 0).await.expect("append");
    entries
}

pub async fn read_all(log: &SegmentLog<SimDisk>) -> Vec<Entry> {
    log.read(log.first_index(), log.last_index() + 1, u64::MAX).await.expect("read all")
}
