//! The segment log on real files (FsDisk): a round trip through a temp dir, and a reopen after
//! `kill -9` of a child process that was appending (F-P1). Only synced data is promised: every
//! index the child reported synced must be there, and what is read back must be a valid prefix
//! of what the child wrote.
#![cfg(not(madsim))]

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use odradek_log::{Entry, FsDisk, LogConfig, SegmentLog};

/// Environment variable that turns the `child_appender` test into the appending child.
const CHILD_DIR_VAR: &str = "ODRADEK_LOG_KILL_CHILD_DIR";
/// Bounds on the child, so it stops by itself even if the parent dies.
/// Entries one child run may append beyond what the log already holds (each run gets room: a
/// fixed total let a fast child of an early round leave none to the next on a loaded machine).
const CHILD_ENTRIES_PER_RUN: u64 = 200_000;
const CHILD_SECONDS_MAX: u64 = 30;

fn config() -> LogConfig {
    LogConfig { segment_bytes_max: 64 * 1024, cache_bytes_max: 0, ..LogConfig::default() }
}

/// Entry `index` as the child writes it: a function of the index alone, so the parent can
/// check every byte it reads back.
fn child_entry(index: u64) -> Entry {
    next_entry(index, 1 + index / 1000, (index - 1) * 2, 2, 50 + (index % 13) as usize * 37)
}

#[test]
fn round_trip_on_real_files() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(FsDisk::new(), dir.path(), config(), 0).await.unwrap();
        let entries: Vec<Entry> = (1..=2000).map(child_entry).collect();
        for chunk in entries.chunks(100) {
            log.append(chunk, 0).await.unwrap();
            log.sync().await.unwrap();
        }
        assert!(log.segment_count() > 3);
        log.truncate_suffix(1901).await.unwrap();
        drop(log);
        let (log, report) = SegmentLog::open(FsDisk::new(), dir.path(), config(), 0).await.unwrap();
        assert_eq!(report.entries, 1900);
        assert_eq!(report.indexes_rebuilt, 0);
        assert_eq!(log.read(1, 1901, u64::MAX).await.unwrap(), entries[..1900]);
        assert_eq!(log.read_offsets(1001, u64::MAX, 600).await.unwrap(), entries[500..600]);
    });
}

/// The child: appends and syncs batches forever (bounded), printing each synced index.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else {
        return; // Only meaningful as the child of `reopen_after_kill_9`.
    };
    runtime().block_on(async {
        let (mut log, _) = SegmentLog::open(FsDisk::new(), &dir, config(), 0).await.unwrap();
        let started = Instant::now();
        let mut index = log.last_index() + 1;
        let end = index + CHILD_ENTRIES_PER_RUN;
        let mut batches = 0u64;
        while index < end && started.elapsed() < Duration::from_secs(CHILD_SECONDS_MAX) {
            let batch: Vec<Entry> = (index..index + 20).map(child_entry).collect();
            log.append(&batch, 0).await.unwrap();
            index += 20;
            batches += 1;
            // Every other batch is left unsynced when the next one starts, so the kill often
            // lands with unsynced bytes in the page cache. (Counted per run: the recovered log
            // of an earlier round may end anywhere, so the index says nothing about parity.)
            if batches.is_multiple_of(2) {
                log.sync().await.unwrap();
                println!("synced {}", log.last_index());
            }
        }
    });
}

#[test]
fn reopen_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            // The test's name in this binary (tests/integration/main.rs): its module path below
            // the crate root.
            .args(["--exact", "fs_disk::child_appender", "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the appending child");
        let mut synced = 0u64;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 20 + round * 7;
        let mut seen = 0;
        while seen < target {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(index) = line.strip_prefix("synced ") {
                synced = index.trim().parse().unwrap();
                seen += 1;
            }
        }
        // SIGKILL: no destructors, no flush; the page cache keeps what was written.
        kill_9(child.id());
        child.wait().unwrap();
        assert!(synced > 0, "round {round}: the child never synced");
        runtime().block_on(async {
            let (log, report) = SegmentLog::open(FsDisk::new(), dir.path(), config(), 0).await.unwrap();
            assert!(log.last_index() >= synced, "round {round}: synced index {synced} lost ({report:?})");
            let found = log.read(1, log.last_index() + 1, u64::MAX).await.unwrap();
            for entry in &found {
                assert_eq!(*entry, child_entry(entry.index), "round {round}: wrong data at {}", entry.index);
            }
        });
    }
}

/// `kill -9 <pid>` through the kill(1) command (keeps the test free of `unsafe`).
fn kill_9(pid: u32) {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("run kill");
    assert!(status.success());
}
