//! Property test: the segment log against a model (a `Vec<Entry>` plus the length of its
//! durable prefix), under random sequences of append / sync / truncate / retention / reset /
//! crash (process kill or power loss with unsynced loss and torn writes on SimDisk) / reopen.
//!
//! After every operation the log's contents, terms and offset reads equal the model's. After a
//! power loss the log holds the model's durable prefix plus possibly a prefix of what was not
//! yet synced, never anything else; after a process crash, everything (the page cache survives).
#![cfg(not(madsim))]

use crate::common;

use common::*;
use odradek_log::{CrashMode, Entry, LogConfig, SegmentLog, SimDisk};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append entries of these (records, payload bytes) shapes; `new_term` bumps the term first.
    Append {
        shapes: Vec<(u32, usize)>,
        new_term: bool,
    },
    Sync,
    /// Truncate the newest `count` entries (bounded by the log).
    Truncate {
        count: u64,
    },
    /// Retention by size with an index bound `bound_back` entries behind the end.
    Retention {
        keep_bytes: u64,
        bound_back: u64,
    },
    /// Reset the log to start `gap` indices after its end.
    Reset {
        gap: u64,
    },
    Crash(CrashMode),
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0u32..4, 0usize..300), 1..6), prop::bool::weighted(0.15))
            .prop_map(|(shapes, new_term)| Op::Append { shapes, new_term }),
        3 => Just(Op::Sync),
        1 => (0u64..8).prop_map(|count| Op::Truncate { count }),
        1 => (0u64..3000, 0u64..10).prop_map(|(keep_bytes, bound_back)| Op::Retention { keep_bytes, bound_back }),
        1 => (1u64..5).prop_map(|gap| Op::Reset { gap }),
        1 => Just(Op::Crash(CrashMode::PowerLoss)),
        1 => Just(Op::Crash(CrashMode::Process)),
        1 => Just(Op::Reopen),
    ]
}

/// The simple model: entries `first_index ..` in a Vec, the first `durable` of them synced.
struct Model {
    first_index: u64,
    offset_start: u64,
    prev_term: u64,
    entries: Vec<Entry>,
    durable: usize,
    term: u64,
}

impl Model {
    fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }
    fn offset_next(&self) -> u64 {
        self.entries.last().map_or(self.offset_start, |e| e.offset_next())
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first_index {
            return Some(self.prev_term);
        }
        if index < self.first_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index) as usize].term)
    }
}

fn config() -> LogConfig {
    LogConfig { cache_bytes_max: 700, ..tiny_config() }
}

async fn check_equal(log: &SegmentLog<SimDisk>, model: &Model) {
    assert_eq!(log.first_index(), model.first_index);
    assert_eq!(log.last_index(), model.last_index());
    assert_eq!(log.offset_next(), model.offset_next());
    assert_eq!(log.offset_start(), model.offset_start);
    assert_eq!(read_all(log).await, model.entries);
    for index in model.first_index.saturating_sub(2)..=model.last_index() + 1 {
        assert_eq!(log.term(index), model.term_at(index), "term of {index}");
    }
    // Offset reads: every offset in the log finds the entry that holds it.
    for entry in model.entries.iter().filter(|e| e.record_count > 0) {
        let offset = entry.base_offset + u64::from(entry.record_count) - 1;
        let read = log.read_offsets(offset, 1, u64::MAX).await.expect("read by offset");
        assert_eq!(read.first(), Some(entry));
    }
}

async fn run(seed: u64, ops: Vec<Op>) {
    let disk = SimDisk::new(seed);
    let (mut log, _) = SegmentLog::open(disk.clone(), DIR, config(), 0).await.unwrap();
    let mut model = Model { first_index: 1, offset_start: 0, prev_term: 0, entries: Vec::new(), durable: 0, term: 1 };
    for op in ops {
        match op {
            Op::Append { shapes, new_term } => {
                if new_term {
                    model.term += 1;
                }
                let (mut index, mut offset) = (model.last_index() + 1, model.offset_next());
                let mut batch = Vec::new();
                for (records, len) in shapes {
                    let entry = next_entry(index, model.term, offset, records, len);
                    (index, offset) = (index + 1, entry.offset_next());
                    batch.push(entry);
                }
                log.append(&batch, 0).await.unwrap();
                model.entries.extend(batch);
            }
            Op::Sync => {
                log.sync().await.unwrap();
                model.durable = model.entries.len();
            }
            Op::Truncate { count } => {
                let keep = model.entries.len().saturating_sub(count as usize);
                log.truncate_suffix(model.first_index + keep as u64).await.unwrap();
                model.entries.truncate(keep);
                model.durable = model.durable.min(keep);
            }
            Op::Retention { keep_bytes, bound_back } => {
                log.set_config(LogConfig { retention_bytes: Some(keep_bytes), ..config() });
                let bound = (model.last_index() + 1).saturating_sub(bound_back);
                log.enforce_retention(0, bound).await.unwrap();
                let removed = (log.first_index() - model.first_index) as usize;
                assert!(log.first_index() <= bound.max(model.first_index), "retention crossed the bound");
                if removed > 0 {
                    model.prev_term = model.entries[removed - 1].term;
                    model.offset_start = model.entries[removed - 1].offset_next();
                }
                model.entries.drain(..removed);
                model.durable = model.durable.saturating_sub(removed);
                model.first_index += removed as u64;
            }
            Op::Reset { gap } => {
                let first = model.last_index() + 1 + gap;
                let offset = model.offset_next() + gap * 10;
                log.reset(first, offset, model.term, 0).await.unwrap();
                model = Model {
                    first_index: first,
                    offset_start: offset,
                    prev_term: model.term,
                    entries: Vec::new(),
                    durable: 0,
                    term: model.term,
                };
            }
            Op::Crash(mode) => {
                drop(log);
                disk.crash(mode);
                (log, _) = SegmentLog::open(disk.clone(), DIR, config(), 0).await.unwrap();
                let found = read_all(&log).await;
                match mode {
                    CrashMode::Process => assert_eq!(found, model.entries, "a process crash lost page-cache data"),
                    CrashMode::PowerLoss => {
                        assert!(found.len() >= model.durable, "durable entries lost: {} < {}", found.len(), model.durable);
                        assert_eq!(found, model.entries[..found.len()], "not a prefix of what was written");
                        model.entries.truncate(found.len());
                    }
                }
                model.durable = model.entries.len();
            }
            Op::Reopen => {
                drop(log);
                (log, _) = SegmentLog::open(disk.clone(), DIR, config(), 0).await.unwrap();
                model.durable = model.entries.len();
            }
        }
        check_equal(&log, &model).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn segment_log_matches_model(seed in any::<u64>(), ops in prop::collection::vec(op_strategy(), 1..60)) {
        runtime().block_on(run(seed, ops));
    }
}
