//! F-S3 / R8(a): every single-bit flip in a synced log is detected, on open or on read, and
//! never returns wrong data. Exhaustive over every bit of a small log's files; sampled on a
//! larger one.
//!
//! Allowed outcomes for a flip at rest, before open:
//! - open fails with `Corruption` (or, for a flipped segment header, `Corruption` too);
//! - open succeeds having cut a torn tail, and the flipped bit lies in the cut-off last entry
//!   (a flip in the last entry cannot be told from a torn last write; the report says what was
//!   cut, and the consensus layer refuses it when the cut reaches committed entries);
//! - open succeeds having rebuilt an index file (flips in derived index files).
//!
//! In every case what the log returns is exactly a prefix of what was written.
//! For a flip while the log is open, reads return the right entries or `Corruption`.
#![cfg(not(madsim))]

use crate::common;

use std::path::PathBuf;

use common::*;
use odradek_log::{Entry, Error, LogConfig, SegmentLog, SimDisk};
use rand::{Rng, SeedableRng};

/// Builds a synced log of `count` entries on a fresh disk.
async fn build(count: u64) -> (SimDisk, Vec<Entry>) {
    let disk = SimDisk::new(99);
    let (mut log, _) = SegmentLog::open(disk.clone(), DIR, config(), 0).await.unwrap();
    let written = append_data(&mut log, count, 3).await;
    log.sync().await.unwrap();
    (disk, written)
}

fn config() -> LogConfig {
    LogConfig { segment_bytes_max: 400, ..tiny_config() }
}

#[derive(Default, Debug)]
struct Outcomes {
    corruption_on_open: usize,
    torn_tail_cut: usize,
    index_rebuilt: usize,
    corruption_on_read: usize,
}

/// Flips one bit at rest, opens, reads everything; panics on any wrong data.
async fn flip_and_check(count: u64, file: &PathBuf, bit: u64, outcomes: &mut Outcomes) {
    let (disk, written) = build(count).await;
    disk.flip_bit(file, bit);
    let is_index = file.extension().is_some_and(|e| e == "idx");
    match SegmentLog::open(disk.clone(), DIR, config(), 0).await {
        Err(Error::Corruption { .. }) => {
            assert!(!is_index, "a flip in a derived index file must be repaired, not fatal");
            outcomes.corruption_on_open += 1;
        }
        Err(other) => panic!("flip of bit {bit} in {file:?}: unexpected error {other}"),
        Ok((log, report)) => {
            let found = read_all(&log).await;
            assert_eq!(found, written[..found.len()], "flip of bit {bit} in {file:?} returned wrong data");
            if is_index {
                assert_eq!(report.indexes_rebuilt, 1, "flip of bit {bit} in {file:?} went unnoticed");
                assert_eq!(found.len(), written.len());
                outcomes.index_rebuilt += 1;
            } else {
                let torn = report.torn_tail.unwrap_or_else(|| panic!("flip of bit {bit} in {file:?} went unnoticed"));
                assert_eq!(torn.index, count, "only the last entry may be taken for a torn tail");
                assert_eq!(found.len() as u64, count - 1);
                outcomes.torn_tail_cut += 1;
            }
        }
    }
}

fn data_files(disk: &SimDisk) -> Vec<PathBuf> {
    disk.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log" || e == "idx")).collect()
}

#[test]
fn every_bit_flip_in_a_small_log_is_detected() {
    runtime().block_on(async {
        let count = 8;
        let (disk, _) = build(count).await;
        let mut outcomes = Outcomes::default();
        let mut bits = 0u64;
        for file in data_files(&disk) {
            let len = disk.file_len_durable(&file).unwrap();
            for bit in 0..len * 8 {
                flip_and_check(count, &file, bit, &mut outcomes).await;
                bits += 1;
            }
        }
        assert!(bits > 8_000, "the small log has {bits} bits");
        assert!(outcomes.corruption_on_open > 0 && outcomes.torn_tail_cut > 0 && outcomes.index_rebuilt > 0, "{outcomes:?}");
    });
}

#[test]
fn sampled_bit_flips_in_a_larger_log_are_detected() {
    runtime().block_on(async {
        let count = 300;
        let (disk, _) = build(count).await;
        let files = data_files(&disk);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut outcomes = Outcomes::default();
        for _ in 0..400 {
            let file = &files[rng.gen_range(0..files.len())];
            let bit = rng.gen_range(0..disk.file_len_durable(file).unwrap() * 8);
            flip_and_check(count, file, bit, &mut outcomes).await;
        }
        assert!(outcomes.corruption_on_open > 0, "{outcomes:?}");
    });
}

#[test]
fn bit_flips_while_open_are_caught_on_read() {
    runtime().block_on(async {
        let count = 40;
        let (disk, written) = build(count).await;
        let (log, _) = SegmentLog::open(disk.clone(), DIR, config(), 0).await.unwrap();
        let segments: Vec<PathBuf> = data_files(&disk).into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut outcomes = Outcomes::default();
        for _ in 0..300 {
            let file = &segments[rng.gen_range(0..segments.len())];
            // Past the segment header: the open log has its header in memory already.
            let len = disk.file_len_durable(file).unwrap();
            let bit = rng.gen_range(odradek_log::SEGMENT_HEADER_BYTES * 8..len * 8);
            disk.flip_bit(file, bit);
            match log.read(log.first_index(), log.last_index() + 1, u64::MAX).await {
                Ok(found) => panic!("flip of bit {bit} in {file:?} read back without error ({} entries)", found.len()),
                Err(Error::Corruption { .. }) => outcomes.corruption_on_read += 1,
                Err(other) => panic!("unexpected error {other}"),
            }
            disk.flip_bit(file, bit);
            assert_eq!(read_all(&log).await, written);
        }
        assert_eq!(outcomes.corruption_on_read, 300);
    });
}
