//! The history checker: `check(&History, &CheckOptions) -> Verdict`.
//!
//! Checks (IDs from CHECKLISTS.md "INVARIANT CHECKLIST"), each applied per the acks-level table:
//! * L1 inconsistent-offsets, L2 duplicate, over VO(k) = all ok polls plus the acks of acks=all
//!   sends (acks=1 acks are not in VO: after a failover their offset may hold another value).
//!   L2 fails under idempotence, acks=0, or `client_retries == false`; otherwise it is reported.
//! * L3 unexpected, L4 G1a: every level.
//! * L5 ack-offset-mismatch: fails under acks=all; under acks=1 fails only if no leader change was
//!   recorded between the send's invoke and the poll's completion (nor, with client retries, any
//!   time after the invoke: the acked copy may be a retry's duplicate lost later), else reported;
//!   n/a at acks=0.
//! * L6 lost-write and L7 unseen: fail under acks=all; reported under acks=0; under acks=1 a loss
//!   is `L6 acks1-loss` (reported) only if a leader change of the key was recorded after the send
//!   was invoked *and* the loss is a suffix (no acks=1 value acked before that change at a higher
//!   offset survived); otherwise it fails. L7 needs a `final-drain` marker; it tags each unseen
//!   value lost-prefix / lost-middle / lost-postfix per writer process.
//!   For an indeterminate send, a value's offset is derived from a read batch-mate (batches are
//!   atomic and contiguous), so an info write with some write read counts for L6.
//! * L8 poll-skip / nonmonotonic-poll: per process and key, between successive ok polls; an
//!   assign that newly adds or drops the key, a group rebalance that assigns, revokes or loses it
//!   (C3 checks where the next poll resumes), a rewind, a failed or info poll, or a crash breaks
//!   continuity. L9: inside one poll's list.
//! * L10: per writer session (process, producer pid and epoch) and key, over ack offsets: all of
//!   them under acks=all; under acks=1 only those a poll confirmed; not at acks=0. Offsets inside a
//!   batch must be contiguous (Odradek assigns dense offsets and appends a batch atomically).
//! * L11 realtime-append-violation: acks=all only.
//! * L12 stale-hw (acks=all acks only), hw-regression and read-above-hw (every level). The HW is
//!   exclusive: the next offset to be committed.
//! * L13 read-then-lost: every level; a value read at (k, o) must not be replaced at o by a later
//!   poll and must be in the final drain at o (when the history has one).
//! * P2 ack-divergence from the history (fails for idempotent sends, reported otherwise); P1, P3,
//!   P4 from the server log dump in [`CheckOptions::log_dump`] (P4 is checked per partition: log
//!   order across partitions is not defined).
//! * C1–C7, the consumer-group checks, in [`groups`] (its module comment says what each reads and
//!   why it is sound under indeterminate outcomes, retries, crashes and rebalances).
//! * DR1 (an acknowledged deletion holds), over `delete-records` ops: an ok deletion whose reported
//!   log start is below its offset (`log-start-below-deletion`), and a record below an acknowledged
//!   deletion's offset returned by a poll invoked after that deletion completed
//!   (`deleted-record-read`), both fatal. Records below the offset of any deletion that may have
//!   applied (ok or indeterminate) are exempt from the loss checks L6, L7 and L13, and a poll that
//!   skips only offsets below a deletion invoked before it completed is no L8 poll-skip (a consumer
//!   whose position was deleted resumes at the new log start).
//! * `H malformed-history`: a value written to two keys, a completion that differs from its invoke,
//!   an ok send whose offsets do not match its values, or a rebalance that revokes a key its
//!   member does not own (or assigns one it does).

mod groups;
mod index;
mod log_dump;
pub mod raft;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::history::{Acks, History, Key, Offset, Process, Producer, Value};
use index::{runs, AckPrefix, Index, Outcome, ProcessEvent, SendOp};
use verdict::Report;
pub use verdict::{Anomaly, AnomalyCount, AnomalyKind, GroupStats, Stats, Verdict, ANOMALY_EXAMPLES_PER_KIND_MAX, ANOMALY_ITEMS_MAX};

/// One record of a server-side log dump (P1, P3, P4): where it sits and who produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogRecord {
    pub partition: Key,
    pub offset: Offset,
    /// The record's own producer id, epoch and sequence; None for non-idempotent records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<Producer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// Whether non-idempotent clients retry sends. If they do, L2 duplicates and P2 divergences of
    /// non-idempotent sends are reported, not failures.
    pub client_retries: bool,
    /// The server log dump, if the run took one; enables P1, P3 and P4.
    pub log_dump: Option<Vec<LogRecord>>,
    /// Examples kept per anomaly kind; every anomaly is counted.
    pub anomaly_examples_per_kind_max: usize,
    /// Whether L12 a (stale-hw) fails the run; otherwise stale-hw anomalies are reported. A
    /// system whose fetches any replica may answer promises no fresh high watermark: a follower,
    /// or a new leader before it applied its term's first entry, reports a high watermark below
    /// an offset already acknowledged (the simulator sees this under crashes alone).
    #[serde(default = "fatal_by_default")]
    pub stale_hw_fatal: bool,
}

fn fatal_by_default() -> bool {
    true
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            client_retries: true,
            log_dump: None,
            anomaly_examples_per_kind_max: ANOMALY_EXAMPLES_PER_KIND_MAX,
            stale_hw_fatal: true,
        }
    }
}

/// Checks `history` against L1–L13, DR1, P1–P4 and C1–C7 (see the module comment).
pub fn check(history: &History, options: &CheckOptions) -> Verdict {
    let mut report = Report::new(options.anomaly_examples_per_kind_max);
    let index = Index::build(history, &mut report);
    check_offsets(&index, options, &mut report);
    check_reads(&index, &mut report);
    check_acks(&index, options, &mut report);
    let values_unseen = check_losses(&index, &mut report);
    check_polls(&index, &mut report);
    check_sends(&index, &mut report);
    check_realtime(&index, &mut report);
    check_hw(&index, options.stale_hw_fatal, &mut report);
    check_read_stability(&index, &mut report);
    check_deletions(history, &index, &mut report);
    if let Some(dump) = &options.log_dump {
        // Retention: a drain that found its position deleted went on from the log start, so
        // only the records from the highest log start on are one contiguous run.
        let kept = |r: &&LogRecord| index.log_start.get(&r.partition).is_none_or(|&start| r.offset >= start);
        let dump: Vec<LogRecord> = dump.iter().filter(kept).copied().collect();
        log_dump::check_log_dump(&dump, &mut report);
    }
    let groups = groups::check_groups(history, &index, &mut report);
    let stats = stats(history, &index, options, values_unseen);
    let valid = report.counts.values().all(|c| c.fatal == 0);
    Verdict { valid, counts: report.counts, anomalies: report.anomalies, stats, groups }
}

fn stats(history: &History, index: &Index, options: &CheckOptions, values_unseen: u64) -> Stats {
    let count = |outcome| index.sends.iter().filter(|s| s.outcome == outcome).count() as u64;
    let keys: BTreeSet<Key> = index.sends.iter().map(|s| s.send.key).chain(index.vo_offsets.keys().copied()).collect();
    Stats {
        ops: history.len() as u64,
        keys: keys.len() as u64,
        sends_ok: count(Outcome::Ok),
        sends_fail: count(Outcome::Fail),
        sends_indeterminate: count(Outcome::Indeterminate),
        polls_ok: index.polls.len() as u64,
        values_attempted: index.writes.len() as u64,
        values_acked: index.writes.values().filter(|w| index.value_outcome(w) == Outcome::Ok).count() as u64,
        values_read: runs(&index.reads_by_value, |r| (r.key, r.value)).count() as u64,
        values_unseen,
        final_drain: index.drain_index.is_some(),
        log_dump_records: options.log_dump.as_ref().map_or(0, |d| d.len() as u64),
    }
}

fn sorted_unique<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_unstable();
    items.dedup();
    items
}

/// L1 (one value per offset) and L2 (one offset per value), over VO(k).
fn check_offsets(index: &Index, options: &CheckOptions, report: &mut Report) {
    for run in runs(&index.vo, |e| (e.key, e.offset)) {
        if run.iter().any(|e| e.value != run[0].value) {
            let anomaly = Anomaly::new(AnomalyKind::InconsistentOffsets, true).key(run[0].key).offsets([run[0].offset]);
            report.push(anomaly.values(sorted_unique(run.iter().map(|e| e.value))).ops(sorted_unique(run.iter().map(|e| e.op))));
        }
    }
    // L2: a value's positions in VO are its read offsets plus its acks=all ack offsets. Unread
    // values can have several only through retried sends, so only those are looked up.
    for run in runs(&index.reads_by_value, |r| (r.key, r.value)) {
        let (key, value, offset) = (run[0].key, run[0].value, run[0].offset);
        let write = index.writes.get(&value).filter(|w| w.key == key);
        let acks = write.into_iter().flat_map(|w| committed_acks(index, w));
        if run.iter().all(|r| r.offset == offset) && acks.clone().all(|(o, _)| o == offset) {
            continue;
        }
        let positions = run.iter().map(|r| (r.offset, index.polls[r.poll as usize].complete)).chain(acks).collect();
        duplicate(index, options, key, value, positions, report);
    }
    for (&value, w) in index.writes.iter().filter(|(_, w)| !w.retries.is_empty()) {
        let positions: Vec<(Offset, u64)> = committed_acks(index, w).collect();
        if index.reads_of(w.key, value).is_empty() && positions.iter().any(|&(o, _)| o != positions[0].0) {
            duplicate(index, options, w.key, value, positions, report);
        }
    }
}

/// Ack offsets (and completion op) of a value's ok acks=all sends: its non-read positions in VO.
fn committed_acks<'a>(index: &'a Index, w: &'a index::Write) -> impl Iterator<Item = (Offset, u64)> + Clone + 'a {
    w.sends().filter_map(|(id, position)| {
        let s = &index.sends[id as usize];
        (s.send.acks == Acks::All).then_some((s.acked_offsets()?[position as usize], s.complete?))
    })
}

/// Reports an L2 duplicate: `value` at several offsets of `key` (positions: offset and op).
fn duplicate(index: &Index, options: &CheckOptions, key: Key, value: Value, positions: Vec<(Offset, u64)>, report: &mut Report) {
    let write = index.writes.get(&value).filter(|w| w.key == key);
    let fatal = !options.client_retries || write.is_some_and(|w| index.producer(w).is_some() || index.acks(w) == Acks::Zero);
    let anomaly = Anomaly::new(AnomalyKind::Duplicate, fatal).key(key).values([value]);
    report.push(anomaly.offsets(sorted_unique(positions.iter().map(|p| p.0))).ops(sorted_unique(positions.iter().map(|p| p.1))));
}

/// L3 (reads were attempted, under that key) and L4 (reads were not definitely failed).
fn check_reads(index: &Index, report: &mut Report) {
    for run in runs(&index.reads_by_value, |r| (r.key, r.value)) {
        let (key, value) = (run[0].key, run[0].value);
        let ops = sorted_unique(run.iter().map(|r| index.polls[r.poll as usize].complete));
        let offsets = sorted_unique(run.iter().map(|r| r.offset));
        let anomaly = |kind| Anomaly::new(kind, true).key(key).values([value]).offsets(offsets.clone());
        match index.writes.get(&value) {
            None => report.push(anomaly(AnomalyKind::Unexpected).ops(ops).detail("value was never sent")),
            Some(w) if w.key != key => {
                report.push(anomaly(AnomalyKind::Unexpected).ops(ops).detail(format!("value was sent to key {}", w.key)))
            }
            Some(w) if index.value_outcome(w) == Outcome::Fail => {
                let sends = w.sends().filter_map(|(id, _)| index.sends[id as usize].complete);
                report.push(
                    anomaly(AnomalyKind::G1a).ops(sorted_unique(sends.chain(ops))).detail("every send of the value failed definitely"),
                );
            }
            Some(_) => {}
        }
    }
}

/// L5 (a read value sits at its acked offset) and P2 (all acks of a value agree).
fn check_acks(index: &Index, options: &CheckOptions, report: &mut Report) {
    for (&value, w) in &index.writes {
        let acked: Vec<(&SendOp, Offset)> = w
            .sends()
            .filter_map(|(id, position)| {
                let s = &index.sends[id as usize];
                s.acked_offsets().map(|o| (s, o[position as usize]))
            })
            .collect();
        let Some(&(_, offset_first)) = acked.first() else { continue };
        if acked.iter().any(|&(_, o)| o != offset_first) {
            let fatal = index.producer(w).is_some() || !options.client_retries;
            let anomaly = Anomaly::new(AnomalyKind::AckDivergence, fatal).key(w.key).values([value]);
            let ops = acked.iter().filter_map(|(s, _)| s.complete);
            report.push(anomaly.offsets(acked.iter().map(|&(_, o)| o)).ops(ops).detail("ok acks of one value carry different offsets"));
        }
        let reads = index.reads_of(w.key, value);
        for &(s, offset) in &acked {
            // With a duplicate (L2) a value is read at several offsets; one of them must be the ack's.
            if reads.iter().any(|r| r.offset == offset) {
                continue;
            }
            // Retention, or a delete-records that may have applied (DR1), deleted the ack's copy
            // before a poll read it (a retry's duplicate was read elsewhere): nothing to compare.
            if index.log_start.get(&w.key).is_some_and(|&start| offset < start) || offset < index.deletable(w.key) {
                continue;
            }
            let Some(read) = reads.first() else { continue };
            let poll = &index.polls[read.poll as usize];
            let fatal = match s.send.acks {
                Acks::Zero => continue,
                // A leader change while the send or the read was open, or an earlier one (a
                // deposed leader that did not know yet may acknowledge at an offset the new
                // leader reuses): explained. Swarm seed 34: a retry acknowledged by a deposed
                // leader after the first attempt had been committed and read elsewhere.
                // With client retries, a retry can also append the value a second time: the ack
                // names the retry's copy, a later leader change loses that copy (an acks=1 suffix
                // loss, L6 reported) and reads find only the first one. Swarm seed 804.
                Acks::One => {
                    let end = poll.complete.max(s.complete.unwrap_or(0));
                    let open = index.leader_change_between(w.key, s.invoke, end).is_some();
                    let deposed = index.changed_leader_before(w.key, s.invoke).is_some();
                    let duplicate_lost = options.client_retries && index.changed_leader_after(w.key, s.invoke).is_some();
                    !(open || deposed || duplicate_lost)
                }
                Acks::All => true,
            };
            let anomaly = Anomaly::new(AnomalyKind::AckOffsetMismatch, fatal).key(w.key).values([value]);
            let detail = format!("acked at offset {offset}, read at offset {}", read.offset);
            report.push(anomaly.offsets([offset, read.offset]).ops([s.complete.unwrap_or(s.invoke), poll.complete]).detail(detail));
        }
    }
}

/// Where an unread value is known to sit: its highest ack offset, or for an indeterminate send
/// the offset implied by a batch-mate that was read.
fn known_offset(index: &Index, w: &index::Write, outcome: Outcome) -> Option<(Offset, usize)> {
    let mut known = None;
    for (id, position) in w.sends() {
        let s = &index.sends[id as usize];
        let offset = match (outcome, s.acked_offsets()) {
            (Outcome::Ok, Some(offsets)) => Some(offsets[position as usize]),
            (Outcome::Indeterminate, _) => s.send.values.iter().enumerate().find_map(|(q, &u)| {
                let read = index.reads_of(w.key, u).first()?;
                (read.offset + position as u64).checked_sub(q as u64)
            }),
            _ => None,
        };
        if let Some(offset) = offset {
            if known.is_none_or(|(k, _)| offset > k) {
                known = Some((offset, id as usize));
            }
        }
    }
    known
}

/// Per key, acks=1 ok values that a poll confirmed at their ack offset, by completion index.
fn acks1_survivors(index: &Index) -> BTreeMap<Key, AckPrefix> {
    let mut survivors: BTreeMap<Key, Vec<(u64, Offset)>> = BTreeMap::new();
    for s in index.sends.iter().filter(|s| s.send.acks == Acks::One) {
        let Some(offsets) = s.acked_offsets() else { continue };
        for (&value, &offset) in s.send.values.iter().zip(offsets) {
            if index.reads_of(s.send.key, value).iter().any(|r| r.offset == offset) {
                survivors.entry(s.send.key).or_default().push((s.complete.expect("ok sends complete"), offset));
            }
        }
    }
    survivors
        .into_iter()
        .map(|(key, mut acks)| {
            acks.sort_unstable();
            (key, AckPrefix::from_sorted(&acks))
        })
        .collect()
}

/// For a lost value: its kind and whether it fails, per the acks-level table.
fn loss_verdict(
    index: &Index,
    survivors: &BTreeMap<Key, AckPrefix>,
    kind: AnomalyKind,
    send: &SendOp,
    offset: Option<Offset>,
) -> (AnomalyKind, bool, String) {
    match send.send.acks {
        Acks::All => (kind, true, String::new()),
        Acks::Zero => (kind, false, "acks=0".into()),
        Acks::One => {
            let key = send.send.key;
            // After an earlier leader change the send may have reached a deposed leader that did
            // not know it yet: it appends and acknowledges at offsets the new leader also hands
            // out, and loses them when it learns, with no further change recorded; its lost
            // suffix need not lie above the new leader's survivors either. The suffix rule is
            // only sound for sends of the first leadership (found by the simulator).
            if let Some(earlier) = index.changed_leader_before(key, send.invoke) {
                return (AnomalyKind::Acks1Loss, false, format!("acks=1 loss after leader change op {earlier}: maybe a deposed leader"));
            }
            let Some(change) = index.leader_change_between(key, send.invoke, u64::MAX) else {
                return (kind, true, "acks=1 loss with no leader change recorded after the send".into());
            };
            let survivor = survivors.get(&key).and_then(|s| s.max_before(change));
            match (survivor, offset) {
                (Some((higher, op)), Some(offset)) if higher > offset => (
                    kind,
                    true,
                    format!("acks=1 loss is not a suffix: offset {higher} acked by op {op} before leader change op {change} survived"),
                ),
                _ => (AnomalyKind::Acks1Loss, false, format!("acks=1 suffix lost at leader change op {change}")),
            }
        }
    }
}

/// L6 (no holes below the highest read) and L7 (after the final drain every ack was read).
/// Returns how many acked values were never read.
fn check_losses(index: &Index, report: &mut Report) -> u64 {
    // b(k): the highest first-offset of a read value.
    let mut read_bound: BTreeMap<Key, Offset> = BTreeMap::new();
    for run in runs(&index.reads_by_value, |r| (r.key, r.value)) {
        let write = index.writes.get(&run[0].value).filter(|w| w.key == run[0].key);
        let first = run[0].offset.min(write.and_then(|w| committed_ack_min(index, w)).unwrap_or(Offset::MAX));
        let bound = read_bound.entry(run[0].key).or_insert(first);
        *bound = (*bound).max(first);
    }
    let survivors = acks1_survivors(index);
    let positions = unseen_positions(index);
    let mut values_unseen = 0;
    for (&value, w) in &index.writes {
        let outcome = index.value_outcome(w);
        if outcome == Outcome::Fail || !index.reads_of(w.key, value).is_empty() {
            continue;
        }
        let known = known_offset(index, w, outcome);
        // DR1 or retention: a value a deletion may have removed, or retention deleted, before anyone
        // read it is not lost (unknown offset: it may be).
        let gone = |bound: Offset| known.is_none_or(|(o, _)| o < bound);
        let deleted = index.deletable(w.key);
        if (deleted > 0 && gone(deleted)) || index.log_start.get(&w.key).is_some_and(|&start| gone(start)) {
            continue;
        }
        values_unseen += u64::from(outcome == Outcome::Ok);
        let below_read = matches!((known, read_bound.get(&w.key)), (Some((o, _)), Some(&b)) if o <= b);
        let kind = match (below_read, outcome, index.drain_index) {
            (true, _, _) => AnomalyKind::LostWrite,
            (false, Outcome::Ok, Some(_)) => AnomalyKind::Unseen,
            _ => continue,
        };
        let send = &index.sends[known.map_or(w.first.0 as usize, |(_, id)| id)];
        let (kind, fatal, detail) = loss_verdict(index, &survivors, kind, send, known.map(|(o, _)| o));
        let position = positions.get(&value).copied().unwrap_or("");
        let detail = [position, &detail].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join("; ");
        let anomaly = Anomaly::new(kind, fatal).key(w.key).values([value]).offsets(known.map(|(o, _)| o));
        report.push(anomaly.ops([send.complete.unwrap_or(send.invoke)]).detail(detail));
    }
    values_unseen
}

/// The lowest acks=all ack offset of a value (its first index in VO besides reads).
fn committed_ack_min(index: &Index, w: &index::Write) -> Option<Offset> {
    committed_acks(index, w).map(|(o, _)| o).min()
}

/// For each acked, never-read value: lost-prefix, lost-middle or lost-postfix within its writer
/// process's acked values to that key (in send order).
fn unseen_positions(index: &Index) -> BTreeMap<Value, &'static str> {
    let mut acked: Vec<(Process, Key, u64, usize, Value, bool)> = Vec::new();
    for s in index.sends.iter().filter(|s| s.outcome == Outcome::Ok) {
        for (position, &value) in s.send.values.iter().enumerate() {
            let seen = !index.reads_of(s.send.key, value).is_empty();
            acked.push((s.process, s.send.key, s.invoke, position, value, seen));
        }
    }
    acked.sort_unstable();
    let mut positions = BTreeMap::new();
    for run in runs(&acked, |a| (a.0, a.1)) {
        let first_seen = run.iter().position(|a| a.5);
        let last_seen = run.iter().rposition(|a| a.5);
        for (i, a) in run.iter().enumerate().filter(|(_, a)| !a.5) {
            let position = match (first_seen, last_seen) {
                (Some(first), _) if i < first => "lost-prefix",
                (_, Some(last)) if i > last => "lost-postfix",
                (Some(_), Some(_)) => "lost-middle",
                _ => "lost-all (nothing this process acked to the key was read)",
            };
            positions.insert(a.4, position);
        }
    }
    positions
}

/// L8 (between polls of a process) and L9 (inside one poll).
fn check_polls(index: &Index, report: &mut Report) {
    // (process, key) → (offset, idx, op) of the last record the process polled.
    let mut position: BTreeMap<(Process, Key), (Offset, usize, u64)> = BTreeMap::new();
    let mut assigned: BTreeMap<Process, &[Key]> = BTreeMap::new();
    for event in &index.events {
        match *event {
            ProcessEvent::Assign(process, keys) => {
                let old = assigned.insert(process, keys).unwrap_or_default();
                for k in old.iter().filter(|k| !keys.contains(k)).chain(keys.iter().filter(|k| !old.contains(k))) {
                    position.remove(&(process, *k));
                }
            }
            ProcessEvent::Rewind(process, keys) => {
                for k in keys {
                    position.remove(&(process, *k));
                }
            }
            ProcessEvent::Rebalance(process, r) => {
                for k in r.assigned.iter().chain(&r.revoked).chain(&r.lost) {
                    position.remove(&(process, *k));
                }
            }
            ProcessEvent::Reset(process) => {
                let keys: Vec<(Process, Key)> = position.range((process, 0)..=(process, Key::MAX)).map(|(k, _)| *k).collect();
                for k in keys {
                    position.remove(&k);
                }
            }
            ProcessEvent::PollOk(poll) => check_poll(index, poll, &mut position, report),
        }
    }
}

fn check_poll(index: &Index, poll: usize, position: &mut BTreeMap<(Process, Key), (Offset, usize, u64)>, report: &mut Report) {
    let p = &index.polls[poll];
    for (&key, records) in &p.poll.records {
        let rank = |offset| index.rank(key, offset).expect("every read offset is in VO");
        for pair in records.windows(2) {
            let ((o1, v1), (o2, v2)) = (pair[0], pair[1]);
            let kind = if o2 <= o1 {
                AnomalyKind::IntNonmonotonicPoll
            } else if rank(o2) - rank(o1) > 1 {
                AnomalyKind::IntPollSkip
            } else {
                continue;
            };
            let skipped = index.vo_between(key, o1, o2).iter().copied();
            report.push(
                Anomaly::new(kind, true).key(key).values([v1, v2]).offsets([o1].into_iter().chain(skipped).chain([o2])).ops([p.complete]),
            );
        }
        let (Some(&(first, value)), Some(&(last, _))) = (records.first(), records.last()) else { continue };
        if let Some((previous, previous_rank, op)) = position.insert((p.process, key), (last, rank(last), p.complete)) {
            let delta = rank(first) as i64 - previous_rank as i64;
            // DR1: a skip over offsets that a deletion invoked before this poll completed may
            // have removed is the consumer resuming at the new log start.
            // Retention likewise: the consumer's position went to the log start (its reset
            // policy, or a rewind).
            let deleted = index.deletable_before(key, p.complete).max(index.log_start_before(key, p.complete));
            let kind = match delta {
                1 => continue,
                d if d > 1 && index.vo_between(key, previous, first).iter().all(|&o| o < deleted) => continue,
                d if d > 1 => AnomalyKind::PollSkip,
                _ => AnomalyKind::NonmonotonicPoll,
            };
            let skipped = index.vo_between(key, previous, first).iter().copied();
            let anomaly = Anomaly::new(kind, true).key(key).values([value]).ops([op, p.complete]);
            report.push(anomaly.offsets([previous].into_iter().chain(skipped).chain([first])).detail(format!("idx delta {delta}")));
        }
    }
}

/// L10: per writer session and key, acked offsets increase; inside a batch they are contiguous.
fn check_sends(index: &Index, report: &mut Report) {
    type Session = (Process, Option<(u64, u64)>, Key);
    let mut last: BTreeMap<Session, (Offset, u64)> = BTreeMap::new();
    for s in &index.sends {
        let (Some(offsets), Some(complete)) = (s.acked_offsets(), s.complete) else { continue };
        let key = s.send.key;
        let confirmed: Vec<(usize, Offset, Value)> = match s.send.acks {
            Acks::Zero => continue,
            Acks::All => offsets.iter().zip(&s.send.values).enumerate().map(|(i, (&o, &v))| (i, o, v)).collect(),
            Acks::One => offsets
                .iter()
                .zip(&s.send.values)
                .enumerate()
                .filter(|(_, (&o, &v))| index.reads_of(key, v).iter().any(|r| r.offset == o))
                .map(|(i, (&o, &v))| (i, o, v))
                .collect(),
        };
        for pair in confirmed.windows(2) {
            let ((i, oi, vi), (j, oj, vj)) = (pair[0], pair[1]);
            let kind = match oj.checked_sub(oi) {
                Some(d) if d == (j - i) as u64 => continue,
                Some(d) if d > (j - i) as u64 => AnomalyKind::IntSendSkip,
                _ => AnomalyKind::IntNonmonotonicSend,
            };
            report.push(Anomaly::new(kind, true).key(key).values([vi, vj]).offsets([oi, oj]).ops([complete]));
        }
        let (Some(&(_, first, value)), Some(&(_, last_offset, _))) = (confirmed.first(), confirmed.last()) else { continue };
        let session = (s.process, s.send.producer.map(|p| (p.pid, p.epoch)), key);
        if let Some((previous, op)) = last.insert(session, (last_offset, complete)) {
            if first <= previous {
                report.push(
                    Anomaly::new(AnomalyKind::NonmonotonicSend, true)
                        .key(key)
                        .values([value])
                        .offsets([previous, first])
                        .ops([op, complete]),
                );
            }
        }
    }
}

/// L11: an acks=all send invoked after another acks=all send to the key completed gets a higher
/// offset. A send whose values were all acked before it was invoked (a retry) is skipped.
fn check_realtime(index: &Index, report: &mut Report) {
    for s in index.sends.iter().filter(|s| s.send.acks == Acks::All) {
        let Some(offsets) = s.acked_offsets() else { continue };
        let Some((max, op)) = index.acks_all.get(&s.send.key).and_then(|a| a.max_before(s.invoke)) else { continue };
        let first = offsets.iter().copied().min().expect("batches are non-empty");
        if first > max || acked_before(index, s) {
            continue;
        }
        let anomaly = Anomaly::new(AnomalyKind::RealtimeAppendViolation, true).key(s.send.key).values(s.send.values.iter().copied());
        let detail = format!("offset {max} was acked (op {op}) before this send was invoked, yet it got offset {first}");
        report.push(anomaly.offsets([max, first]).ops([op, s.invoke, s.complete.expect("ok sends complete")]).detail(detail));
    }
}

/// Whether every value of `s` was acked by another send completed before `s` was invoked.
fn acked_before(index: &Index, s: &SendOp) -> bool {
    s.send.values.iter().all(|v| {
        index.writes[v].sends().any(|(id, _)| {
            let other = &index.sends[id as usize];
            other.outcome == Outcome::Ok && other.complete.is_some_and(|c| c < s.invoke)
        })
    })
}

/// L12: (a) stale-hw after acks=all acks (reported only, unless `stale_hw_fatal`), (b)
/// per-process HW regression, (c) reads at or above HW.
fn check_hw(index: &Index, stale_hw_fatal: bool, report: &mut Report) {
    let mut hw_last: BTreeMap<(Process, Key), (Offset, u64)> = BTreeMap::new();
    for p in &index.polls {
        for (&key, &hw) in &p.poll.hw {
            if let Some((acked, op)) = index.acks_all.get(&key).and_then(|a| a.max_before(p.invoke)) {
                if hw <= acked {
                    let detail = format!("offset {acked} was acked with acks=all (op {op}) before the poll, which reports HW {hw}");
                    report.push(
                        Anomaly::new(AnomalyKind::StaleHw, stale_hw_fatal)
                            .key(key)
                            .offsets([acked, hw])
                            .ops([op, p.complete])
                            .detail(detail),
                    );
                }
            }
            if let Some((previous, op)) = hw_last.insert((p.process, key), (hw, p.complete)) {
                if hw < previous {
                    report.push(Anomaly::new(AnomalyKind::HwRegression, true).key(key).offsets([previous, hw]).ops([op, p.complete]));
                }
            }
        }
        for (&key, records) in &p.poll.records {
            let Some(&hw) = p.poll.hw.get(&key) else { continue };
            let above: Vec<(Offset, Value)> = records.iter().copied().filter(|&(o, _)| o >= hw).collect();
            if !above.is_empty() {
                let anomaly = Anomaly::new(AnomalyKind::ReadAboveHw, true).key(key).values(above.iter().map(|r| r.1));
                report.push(anomaly.offsets(above.iter().map(|r| r.0)).ops([p.complete]).detail(format!("reported HW {hw}")));
            }
        }
    }
}

/// DR1: an acknowledged deletion reported a log start at or above its offset, and no consumer
/// whose first op was invoked after it completed returned a record below that offset.
///
/// Dated by the consumer process's first op, not by the poll that returned the record: a
/// consumer keeps a fetch that outlived its poll (one that failed or timed out) in flight and
/// hands its records to a later poll (the client's consumer does), so a poll invoked after the
/// deletion may return records a fetch read before it (simulator, network seed 18 with the
/// deleter on the checked topic). A process is one consumer, and it fetches only after its
/// first op began. The final drain's fresh consumer is judged in full.
fn check_deletions(history: &History, index: &Index, report: &mut Report) {
    for deletions in index.deletions.values() {
        for d in deletions.iter().filter(|d| d.outcome == Outcome::Ok) {
            if let Some(log_start) = d.log_start.filter(|&start| start < d.asked.before) {
                let anomaly = Anomaly::new(AnomalyKind::DeletionNotHeld, true).key(d.asked.key).offsets([d.asked.before, log_start]);
                let detail = format!("delete-records to {} acknowledged with log start {log_start}", d.asked.before);
                report.push(anomaly.ops([d.complete.expect("ok ops complete")]).detail(detail));
            }
        }
    }
    let mut first_op: BTreeMap<Process, u64> = BTreeMap::new();
    for op in history.ops() {
        first_op.entry(op.process).or_insert(op.index);
    }
    for p in &index.polls {
        for (&key, records) in &p.poll.records {
            let since = first_op.get(&p.process).copied().unwrap_or(p.invoke).min(p.invoke);
            let Some((deleted, complete)) = index.deleted_before(key, since) else { continue };
            for &(offset, value) in records.iter().filter(|&&(offset, _)| offset < deleted) {
                let anomaly = Anomaly::new(AnomalyKind::DeletedRecordRead, true).key(key).values([value]).offsets([offset]);
                let detail = format!("read after a delete-records to {deleted} was acknowledged");
                report.push(anomaly.ops([complete, p.complete]).detail(detail));
            }
        }
    }
}

/// L13: a value read at (k, o) is never replaced at o by a later poll, and is in the final drain.
fn check_read_stability(index: &Index, report: &mut Report) {
    for run in runs(&index.reads_by_offset, |r| (r.key, r.offset)) {
        let (key, offset) = (run[0].key, run[0].offset);
        // Per distinct value: (value, earliest completion, latest invoke, read in the drain).
        let values: Vec<(Value, u64, u64, bool)> = runs(run, |r| r.value)
            .map(|v| {
                let polls = v.iter().map(|r| &index.polls[r.poll as usize]);
                let complete_min = polls.clone().map(|p| p.complete).min().expect("runs are non-empty");
                let invoke_max = polls.clone().map(|p| p.invoke).max().expect("runs are non-empty");
                (v[0].value, complete_min, invoke_max, polls.clone().any(|p| p.drain))
            })
            .collect();
        for &(v, complete_v, _, in_drain) in &values {
            let later = values.iter().find(|&&(w, _, invoke_w, _)| w != v && complete_v < invoke_w);
            if let Some(&(w, _, invoke_w, _)) = later {
                let detail = format!("read, then a later poll returned value {w} at the offset");
                report.push(
                    Anomaly::new(AnomalyKind::ReadThenLost, true)
                        .key(key)
                        .values([v, w])
                        .offsets([offset])
                        .ops([complete_v, invoke_w])
                        .detail(detail),
                );
            } else if index.drain_index.is_some()
                && !in_drain
                && offset >= index.deletable(key)
                && index.log_start.get(&key).is_none_or(|&start| offset >= start)
            {
                let anomaly = Anomaly::new(AnomalyKind::ReadThenLost, true).key(key).values([v]).offsets([offset]).ops([complete_v]);
                report.push(anomaly.detail("read, but absent from the final drain at this offset"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::index::equal_range;
    use super::*;

    #[test]
    fn equal_range_and_runs() {
        let v = [1, 2, 2, 2, 5];
        assert_eq!(equal_range(&v, |x| x.cmp(&2)), &[2, 2, 2]);
        assert!(equal_range(&v, |x| x.cmp(&3)).is_empty());
        let r: Vec<&[i32]> = runs(&v, |x| *x).collect();
        assert_eq!(r, vec![&[1][..], &[2, 2, 2][..], &[5][..]]);
    }

    #[test]
    fn every_kind_has_an_id_and_name() {
        for kind in AnomalyKind::ALL {
            let (id, name) = kind.name().split_once(' ').unwrap();
            assert_eq!(kind.invariant(), id);
            assert!(!name.is_empty());
            assert_eq!(serde_json::to_string(kind).unwrap(), format!("\"{}\"", kind.name()));
        }
    }
}
