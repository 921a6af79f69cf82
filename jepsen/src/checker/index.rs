//! The indexes the invariants are checked over, built in one pass over the history plus sorts.
//!
//! Cost sketch for a 1M-op history (≈250k sends, ≈250k polls, ≈1M records read): pairing is one
//! pass; reads and the version order are flat vectors sorted once (n log n, ~40 bytes per record);
//! lookups are binary searches. Nothing is quadratic in the history length: per-offset work is
//! quadratic only in the number of *distinct values at one offset*, which is 1 in a valid history.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::history::{
    Acks, DeleteRecords, History, Key, Offset, Op, OpF, OpType, OpValue, Poll, Process, Producer, Rebalance, Send, Value,
};

use super::verdict::{Anomaly, AnomalyKind, Report};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Fail,
    /// `info`, or never completed.
    Indeterminate,
}

pub(crate) struct SendOp<'h> {
    pub invoke: u64,
    pub complete: Option<u64>,
    pub process: Process,
    pub outcome: Outcome,
    pub send: &'h Send,
    /// One per value, from an `ok` completion.
    pub offsets: Option<&'h [Offset]>,
}

impl SendOp<'_> {
    /// Ack offsets of an ok send that has them.
    pub fn acked_offsets(&self) -> Option<&[Offset]> {
        if self.outcome == Outcome::Ok {
            self.offsets
        } else {
            None
        }
    }
}

pub(crate) struct PollOp<'h> {
    pub invoke: u64,
    pub complete: u64,
    pub process: Process,
    pub poll: &'h Poll,
    pub drain: bool,
}

/// Per-process events that decide poll continuity (L8), in history order.
pub(crate) enum ProcessEvent<'h> {
    Assign(Process, &'h [Key]),
    Rewind(Process, &'h [Key]),
    /// A group member's assignment changed (ok rebalance): the keys it names start afresh.
    Rebalance(Process, &'h Rebalance),
    /// Index into `Index::polls`.
    PollOk(usize),
    /// A poll that ended fail or info, or a crash: the position is unknown afterwards.
    Reset(Process),
}

/// A `delete-records` op (DR1): what it asked and how it ended.
pub(crate) struct Deletion<'h> {
    pub invoke: u64,
    pub complete: Option<u64>,
    pub outcome: Outcome,
    pub asked: &'h DeleteRecords,
    /// The log start an ok completion reported.
    pub log_start: Option<Offset>,
}

/// Where a value was written: its key and every send of it (retries repeat a value).
pub(crate) struct Write {
    pub key: Key,
    /// (send id, position in the batch).
    pub first: (u32, u32),
    pub retries: Vec<(u32, u32)>,
}

impl Write {
    pub fn sends(&self) -> impl Iterator<Item = (u32, u32)> + Clone + '_ {
        std::iter::once(self.first).chain(self.retries.iter().copied())
    }
}

/// One record returned by an ok poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Read {
    pub key: Key,
    pub offset: Offset,
    pub value: Value,
    /// Index into `Index::polls`.
    pub poll: u32,
}

/// One element of the version order VO(k): a value at an offset, from a poll or a committed ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct VoEntry {
    pub key: Key,
    pub offset: Offset,
    pub value: Value,
    pub from_read: bool,
    pub op: u64,
}

/// For one key, ack offsets of acks=all ok sends by completion index, with the running maximum:
/// "the highest offset acked before index i" in O(log n) (L11, L12a).
#[derive(Default)]
pub(crate) struct AckPrefix {
    completes: Vec<u64>,
    /// (max offset so far, op index of the send that acked it).
    max: Vec<(Offset, u64)>,
}

impl AckPrefix {
    /// From (completion index, offset) pairs sorted by completion index.
    pub fn from_sorted(acks: &[(u64, Offset)]) -> AckPrefix {
        let mut prefix = AckPrefix::default();
        for &(complete, offset) in acks {
            prefix.push(complete, offset);
        }
        prefix
    }

    fn push(&mut self, complete: u64, offset: Offset) {
        debug_assert!(self.completes.last().is_none_or(|&c| c <= complete));
        let max = match self.max.last() {
            Some(&(m, op)) if m >= offset => (m, op),
            _ => (offset, complete),
        };
        self.completes.push(complete);
        self.max.push(max);
    }

    /// The highest offset acked by a send completed strictly before `index`.
    pub fn max_before(&self, index: u64) -> Option<(Offset, u64)> {
        let n = self.completes.partition_point(|&c| c < index);
        n.checked_sub(1).map(|i| self.max[i])
    }
}

pub(crate) struct Index<'h> {
    pub sends: Vec<SendOp<'h>>,
    /// Ok polls, in completion order.
    pub polls: Vec<PollOp<'h>>,
    pub events: Vec<ProcessEvent<'h>>,
    pub leader_changes: BTreeMap<Key, Vec<u64>>,
    pub drain_index: Option<u64>,
    /// Per key, the highest log start retention moved it to (`log-start` ops): records below
    /// may be gone.
    pub log_start: BTreeMap<Key, Offset>,
    /// Per key, each `log-start` op that raised it: (op index, log start), in op order.
    log_starts: BTreeMap<Key, Vec<(u64, Offset)>>,
    pub writes: BTreeMap<Value, Write>,
    /// Sorted by (key, offset, value, poll).
    pub reads_by_offset: Vec<Read>,
    /// Sorted by (key, value, offset, poll).
    pub reads_by_value: Vec<Read>,
    /// Sorted by (key, offset, value, ...).
    pub vo: Vec<VoEntry>,
    /// Distinct offsets of VO(k), sorted: an offset's position is its dense index idx.
    pub vo_offsets: BTreeMap<Key, Vec<Offset>>,
    pub acks_all: BTreeMap<Key, AckPrefix>,
    /// `delete-records` ops per key, in invoke order (DR1).
    pub deletions: BTreeMap<Key, Vec<Deletion<'h>>>,
}

/// The contiguous run of `sorted` for which `cmp` returns Equal (`cmp` orders the probe).
pub(crate) fn equal_range<T>(sorted: &[T], cmp: impl Fn(&T) -> Ordering) -> &[T] {
    let lo = sorted.partition_point(|x| cmp(x) == Ordering::Less);
    let hi = lo + sorted[lo..].partition_point(|x| cmp(x) != Ordering::Greater);
    &sorted[lo..hi]
}

/// Merges two sorted sequences into one sorted vector.
fn merge_sorted<T: Ord>(a: impl Iterator<Item = T>, b: impl Iterator<Item = T>) -> Vec<T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut merged = Vec::with_capacity(a.size_hint().0 + b.size_hint().0);
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x <= y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return merged,
        };
        merged.extend(if take_a { a.next() } else { b.next() });
    }
}

/// Splits a sorted slice into maximal runs with equal `key`.
pub(crate) fn runs<T, K: PartialEq>(sorted: &[T], key: impl Fn(&T) -> K) -> impl Iterator<Item = &[T]> {
    let mut rest = sorted;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let k = key(first);
        let n = rest.iter().position(|x| key(x) != k).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

impl<'h> Index<'h> {
    pub fn build(history: &'h History, report: &mut Report) -> Index<'h> {
        let mut index = Index {
            sends: Vec::new(),
            polls: Vec::new(),
            events: Vec::new(),
            leader_changes: BTreeMap::new(),
            drain_index: None,
            log_start: BTreeMap::new(),
            log_starts: BTreeMap::new(),
            writes: BTreeMap::new(),
            reads_by_offset: Vec::new(),
            reads_by_value: Vec::new(),
            vo: Vec::new(),
            vo_offsets: BTreeMap::new(),
            acks_all: BTreeMap::new(),
            deletions: BTreeMap::new(),
        };
        index.pair(history.ops(), report);
        index.index_writes(report);
        index.index_reads_and_vo();
        index
    }

    /// Pairs invokes with completions (the history is validated: one open op per process).
    fn pair(&mut self, ops: &'h [Op], report: &mut Report) {
        let mut open: BTreeMap<Process, &'h Op> = BTreeMap::new();
        for op in ops {
            match (op.f, op.kind) {
                (OpF::LeaderChange, _) => {
                    if let OpValue::LeaderChange(lc) = &op.value {
                        self.leader_changes.entry(lc.key).or_default().push(op.index);
                    }
                }
                (OpF::FinalDrain, _) => {
                    self.drain_index.get_or_insert(op.index);
                }
                (OpF::LogStart, _) => {
                    if let OpValue::LogStart(start) = &op.value {
                        let known = self.log_start.entry(start.key).or_insert(0);
                        if start.offset > *known {
                            *known = start.offset;
                            self.log_starts.entry(start.key).or_default().push((op.index, start.offset));
                        }
                    }
                }
                (OpF::Start | OpF::Stop, _) => {}
                (OpF::Crash, _) => {
                    if let Some(invoke) = open.remove(&op.process) {
                        self.close(invoke, None, report);
                    }
                    self.events.push(ProcessEvent::Reset(op.process));
                }
                (_, OpType::Invoke) => {
                    open.insert(op.process, op);
                    match &op.value {
                        OpValue::Keys(keys) if op.f == OpF::Assign => self.events.push(ProcessEvent::Assign(op.process, &keys.keys)),
                        OpValue::Keys(keys) if op.f == OpF::Rewind => self.events.push(ProcessEvent::Rewind(op.process, &keys.keys)),
                        _ => {}
                    }
                }
                _ => {
                    let invoke = open.remove(&op.process).expect("validated history: a completion has an open invoke");
                    self.close(invoke, Some(op), report);
                }
            }
        }
        for invoke in open.into_values() {
            self.close(invoke, None, report);
        }
        self.sends.sort_by_key(|s| s.invoke);
    }

    /// Records one invoke and its completion (None: never completed or crashed).
    fn close(&mut self, invoke: &'h Op, complete: Option<&'h Op>, report: &mut Report) {
        let kind = complete.map_or(OpType::Info, |c| c.kind);
        match (&invoke.value, complete.map(|c| &c.value)) {
            (OpValue::Send(send), completion) => {
                let outcome = match kind {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => Outcome::Indeterminate,
                };
                let mut offsets = None;
                if let Some(OpValue::Send(done)) = completion {
                    if done.key != send.key || done.values != send.values {
                        let anomaly = Anomaly::new(AnomalyKind::MalformedHistory, true).key(send.key).values(done.values.clone());
                        report.push(
                            anomaly.ops([invoke.index, complete.map_or(0, |c| c.index)]).detail("completion differs from its invoke"),
                        );
                    }
                    if let Some(o) = &done.offsets {
                        if o.len() == send.values.len() {
                            offsets = Some(&o[..]);
                        } else if outcome == Outcome::Ok {
                            let anomaly = Anomaly::new(AnomalyKind::MalformedHistory, true).key(send.key).ops([invoke.index]);
                            report.push(anomaly.detail("send ok has a different number of offsets than values"));
                        }
                    }
                }
                self.sends.push(SendOp {
                    invoke: invoke.index,
                    complete: complete.map(|c| c.index),
                    process: invoke.process,
                    outcome,
                    send,
                    offsets,
                });
            }
            (OpValue::Poll(_), Some(OpValue::Poll(poll))) if kind == OpType::Ok => {
                let complete = complete.expect("ok has a completion");
                let drain = self.drain_index.is_some_and(|d| d < invoke.index);
                self.events.push(ProcessEvent::PollOk(self.polls.len()));
                self.polls.push(PollOp { invoke: invoke.index, complete: complete.index, process: invoke.process, poll, drain });
            }
            (OpValue::Poll(_), _) => self.events.push(ProcessEvent::Reset(invoke.process)),
            (OpValue::DeleteRecords(asked), completion) => {
                let outcome = match kind {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => Outcome::Indeterminate,
                };
                let log_start = match completion {
                    Some(OpValue::DeleteRecords(done)) if outcome == Outcome::Ok => done.log_start,
                    _ => None,
                };
                let deletion = Deletion { invoke: invoke.index, complete: complete.map(|c| c.index), outcome, asked, log_start };
                let deletions = self.deletions.entry(asked.key).or_default();
                let at = deletions.partition_point(|d| d.invoke < invoke.index);
                deletions.insert(at, deletion);
            }
            (OpValue::Rebalance(_), Some(OpValue::Rebalance(rebalance))) if kind == OpType::Ok => {
                self.events.push(ProcessEvent::Rebalance(invoke.process, rebalance));
            }
            _ => {}
        }
    }

    /// Builds value → writes; a value sent to two keys, or twice in one batch, is malformed.
    fn index_writes(&mut self, report: &mut Report) {
        let mut acks_all: BTreeMap<Key, Vec<(u64, Offset)>> = BTreeMap::new();
        for (id, s) in self.sends.iter().enumerate() {
            for (position, &value) in s.send.values.iter().enumerate() {
                let at = (id as u32, position as u32);
                match self.writes.get_mut(&value) {
                    None => {
                        self.writes.insert(value, Write { key: s.send.key, first: at, retries: Vec::new() });
                    }
                    Some(w) if w.key == s.send.key && w.sends().all(|(other, _)| other != at.0) => w.retries.push(at),
                    Some(w) => {
                        let detail = if w.key == s.send.key {
                            "value appears twice in one batch (values must be unique)".to_string()
                        } else {
                            format!("value written to key {} and key {} (values must be unique)", w.key, s.send.key)
                        };
                        let first = self.sends[w.first.0 as usize].invoke;
                        report
                            .push(Anomaly::new(AnomalyKind::MalformedHistory, true).values([value]).ops([first, s.invoke]).detail(detail));
                    }
                }
            }
            if let (Outcome::Ok, Some(offsets), Acks::All) = (s.outcome, s.offsets, s.send.acks) {
                let max = offsets.iter().copied().max().expect("offsets has one per value; batches are non-empty");
                acks_all.entry(s.send.key).or_default().push((s.complete.expect("ok sends complete"), max));
            }
        }
        // Sends are sorted by invoke; the running maximum needs completion order.
        for (key, mut acks) in acks_all {
            acks.sort_unstable();
            self.acks_all.insert(key, AckPrefix::from_sorted(&acks));
        }
    }

    /// Flattens poll results into sorted read vectors, and builds VO(k) from all reads plus the
    /// acks of acks=all ok sends (acks=1 acks are left out: after a failover the offset may hold
    /// another value).
    fn index_reads_and_vo(&mut self) {
        for (id, p) in self.polls.iter().enumerate() {
            for (&key, records) in &p.poll.records {
                for &(offset, value) in records {
                    self.reads_by_offset.push(Read { key, offset, value, poll: id as u32 });
                }
            }
        }
        self.reads_by_offset.sort_unstable();
        self.reads_by_value = self.reads_by_offset.clone();
        self.reads_by_value.sort_unstable_by_key(|r| (r.key, r.value, r.offset, r.poll));
        let mut acks = Vec::new();
        for s in &self.sends {
            if let (Some(offsets), Acks::All) = (s.acked_offsets(), s.send.acks) {
                let op = s.complete.expect("ok sends complete");
                for (&value, &offset) in s.send.values.iter().zip(offsets) {
                    acks.push(VoEntry { key: s.send.key, offset, value, from_read: false, op });
                }
            }
        }
        acks.sort_unstable();
        // Polls are numbered in completion order, so reads sorted by (key, offset, value, poll) are
        // already sorted as VO entries: merge rather than sort the union again.
        let reads = self.reads_by_offset.iter().map(|r| VoEntry {
            key: r.key,
            offset: r.offset,
            value: r.value,
            from_read: true,
            op: self.polls[r.poll as usize].complete,
        });
        self.vo = merge_sorted(reads, acks.into_iter());
        debug_assert!(self.vo.is_sorted());
        for run in runs(&self.vo, |e| e.key) {
            let mut offsets: Vec<Offset> = run.iter().map(|e| e.offset).collect();
            offsets.dedup();
            self.vo_offsets.insert(run[0].key, offsets);
        }
    }

    /// idx of `offset` in VO(key), if the offset is in it.
    pub fn rank(&self, key: Key, offset: Offset) -> Option<usize> {
        self.vo_offsets.get(&key)?.binary_search(&offset).ok()
    }

    /// Offsets of VO(key) strictly between two offsets (for skip reports).
    pub fn vo_between(&self, key: Key, low: Offset, high: Offset) -> &[Offset] {
        let Some(offsets) = self.vo_offsets.get(&key) else { return &[] };
        let lo = offsets.partition_point(|&o| o <= low);
        let hi = offsets.partition_point(|&o| o < high);
        &offsets[lo..hi.max(lo)]
    }

    /// All reads of `value` under `key`.
    pub fn reads_of(&self, key: Key, value: Value) -> &[Read] {
        equal_range(&self.reads_by_value, |r| (r.key, r.value).cmp(&(key, value)))
    }

    /// Whether `key` changed leader before op `before`: a leader op other than the first one
    /// recorded (which only names the initial leader).
    pub fn changed_leader_before(&self, key: Key, before: u64) -> Option<u64> {
        self.leader_changes.get(&key)?.iter().skip(1).copied().find(|&c| c < before)
    }

    /// The first leader change of `key` after op `after`, not counting the initial leader.
    pub fn changed_leader_after(&self, key: Key, after: u64) -> Option<u64> {
        self.leader_changes.get(&key)?.iter().skip(1).copied().find(|&c| c > after)
    }

    /// Whether a leader change of `key` is recorded strictly between two op indices.
    pub fn leader_change_between(&self, key: Key, low: u64, high: u64) -> Option<u64> {
        let changes = self.leader_changes.get(&key)?;
        let i = changes.partition_point(|&c| c <= low);
        changes.get(i).copied().filter(|&c| c < high)
    }

    /// The outcome of `value` over all its sends: ok if any send is ok; else indeterminate if any
    /// is; else fail (every attempt definitely failed).
    pub fn value_outcome(&self, write: &Write) -> Outcome {
        let mut outcome = Outcome::Fail;
        for (send, _) in write.sends() {
            match self.sends[send as usize].outcome {
                Outcome::Ok => return Outcome::Ok,
                Outcome::Indeterminate => outcome = Outcome::Indeterminate,
                Outcome::Fail => {}
            }
        }
        outcome
    }

    /// The highest offset below which `key`'s records may have been deleted by a `delete-records`
    /// invoked before op `before` (ok or indeterminate; a failed one deleted nothing). 0 if none.
    /// `key`'s highest log start recorded by a `log-start` op before op `before` (0 if none):
    /// records below it may be gone by then. The simulator records a log start as retention
    /// moves it, so this is the bound for what a consumer could still read at that op (Jepsen
    /// learns log starts late and runs group workloads without retention).
    pub fn log_start_before(&self, key: Key, before: u64) -> Offset {
        let starts = self.log_starts.get(&key).map_or(&[][..], Vec::as_slice);
        starts.partition_point(|&(op, _)| op < before).checked_sub(1).map_or(0, |i| starts[i].1)
    }

    pub fn deletable_before(&self, key: Key, before: u64) -> Offset {
        let deletions = self.deletions.get(&key).map_or(&[][..], Vec::as_slice);
        deletions.iter().filter(|d| d.invoke < before && d.outcome != Outcome::Fail).map(|d| d.asked.before).max().unwrap_or(0)
    }

    /// The highest offset below which `key`'s records may have been deleted at any time (DR1
    /// exempts them from the loss checks L6, L7 and L13). 0 if none.
    pub fn deletable(&self, key: Key) -> Offset {
        self.deletable_before(key, u64::MAX)
    }

    /// The acknowledged deletion of `key` with the highest offset among those completed before op
    /// `before`: (its offset, its completion). Records below it must never be read after it.
    pub fn deleted_before(&self, key: Key, before: u64) -> Option<(Offset, u64)> {
        let deletions = self.deletions.get(&key)?;
        let acked = deletions.iter().filter(|d| d.outcome == Outcome::Ok);
        acked.filter_map(|d| d.complete.filter(|&c| c < before).map(|c| (d.asked.before, c))).max()
    }

    /// Producer of the value's first send, if idempotent.
    pub fn producer(&self, write: &Write) -> Option<Producer> {
        self.sends[write.first.0 as usize].send.producer
    }

    pub fn acks(&self, write: &Write) -> Acks {
        self.sends[write.first.0 as usize].send.acks
    }
}
