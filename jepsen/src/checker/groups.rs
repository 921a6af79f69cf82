//! The consumer-group checks C1–C9 (CHECKLISTS.md section C; C7 is ownership, from issue 14;
//! C8 assignment within the subscription, from issue 16's regex subscriptions; C9 offset
//! deletion, from issue 16's OffsetDelete), over the group ops of the history (`subscribe`,
//! `rebalance`, `commit`, `fetch-committed`, `offset-delete`) and
//! the polls of group members. The op shapes and the recorder's contract are in
//! [`crate::history`] ([`Rebalance`](crate::history::Rebalance), [`Commit`](crate::history::Commit)).
//!
//! Terms. A *member* is a process after its `subscribe`; it *holds* key k between the ok
//! rebalance that assigns k and the one that revokes or loses it (or its crash / retirement).
//! A *delivery* is a record an ok poll returned to a member; a *held* delivery is one of a key
//! the member held when it invoked the poll. Offsets are exclusive (a committed offset is the
//! next record to consume). "Before" is history order: op A completed before op B was invoked.
//! VO(k) is the version order of the L checks (all polls plus acks=all acks).
//!
//! * **C1 commit linearizability.** Per (group, key), a last-writer-wins register whose initial
//!   value is "nothing committed". Writes: every commit that is ok (applied once inside its
//!   interval) or indeterminate (info or never completed: applied at most once, any time after
//!   its invoke); definite failures are left out. Reads: every ok `fetch-committed` entry, and
//!   every start position that came from a fetch (`from: committed` reads its offset, `from:
//!   reset` reads "nothing committed", or the out-of-range offset it names), over the rebalance
//!   op's interval. The search is exact ([`register`]); if it passes its bounds the register is
//!   reported `C1 linearizability-unknown` and counted, never failed. A violation found at a
//!   fetch invoked after the final-drain marker is `C1 lost-commit` (an acked commit did not
//!   survive); elsewhere `C1 nonlinearizable-commit`. With a final drain, a register with an ok
//!   commit and no fetch after the marker is reported `C1 no-final-fetch`.
//!   Sound because every write and read allowed by the recorder's contract is modelled with the
//!   widest interval it can have taken effect in; retries inside one op happen only after
//!   definite errors, so each op applies at most once.
//! * **C2 no group skip.** For each (g, k) and each offset o of VO(k) that some ok or
//!   indeterminate commit moved past (commit offset > o): let E be the earliest completion of an
//!   ok such commit (∞ if none) and L the latest invoke of such a commit invoked before E. The
//!   first commit to move the register past o took effect before E (it precedes every ok one),
//!   so it was invoked at or before L. It fails if no held delivery of o in g completed before L.
//!   Offsets below a start position chosen by the reset policy in g (reset to latest) are
//!   exempt, and so is o if a simple/admin commit (no member id) can have been the first mover:
//!   neither needs a poll, and so is o below a log start recorded before L (`log-start` ops:
//!   retention may have deleted it before any member fetched it). Sound: L is the most
//!   favourable choice of the first mover.
//! * **C3 resume position.** For each key a rebalance assigned with a start position s: the
//!   member's first ok poll that returns the key (before the key is revoked, lost or rewound,
//!   or the process retires) starts at offset f. f > s with a VO(k) offset in [s, f) fails (a
//!   record that existed, since f did, was skipped), except offsets below a log start recorded
//!   before the poll completed (retention deleted them); f < s is reported and counted (re-delivery);
//!   a failed poll does not end the wait (a definite failure moved nothing).
//! * **C4 auto-commit of polled records only.** Each `auto` commit's offset o for k (whatever
//!   its outcome: the client chose it) must not exceed, when the commit was invoked, the
//!   consumer's position in its current assignment of k: the start position, or one past the
//!   last record an ok poll returned since. The consumer is the commit's member id (an
//!   auto-commit sent inside a poll is recorded by a companion process with the member's id) and
//!   the committing process; an assignment without a start position allows any offset. The
//!   current poll has not completed when the commit is invoked, so its records never count, nor
//!   do records returned under an earlier assignment of the key (re-delivered ones must be
//!   returned again before they are committed again). An offset at or below a log start
//!   recorded before the commit is allowed: the reset policy moves a position retention
//!   deleted to the log start without a poll.
//! * **C5 stale commits refused.** An ok commit sent with generation / member epoch e fails if,
//!   before it was invoked, an ok rebalance had given e' > e: to any member of the group for the
//!   classic protocol (the generation is group-wide), to the same member for the consumer
//!   protocol. Commits without a member id or epoch (simple/admin) are not checked. Assumes the
//!   group is not deleted during the run (a new group restarts its generations).
//! * **C6 re-delivery (report only).** Per group, the distinct values delivered to its members
//!   and how many were delivered more than once.
//! * **C7 ownership.** (a) Classic: at one generation (the first ok rebalance of each member
//!   at it, without `lost`/`error`), members' assignments are disjoint; members sharing a static
//!   instance id are a replacement, reported as `C7 zombie-overlap`. (b) Both protocols: two
//!   processes' intervals of a key must not overlap: B's assigning op completed before A's
//!   ending op was invoked, A assigned first. By the recorder's contract A had not yet released
//!   the key, so the coordinator may only have moved it if A was fenced. The overlap fails when
//!   A's process shows it was still the same unfenced member afterwards: an ok commit with A's
//!   member id invoked after B's assignment completed, with no fencing evidence (a fail with a
//!   fencing error, or a rebalance losing keys or naming a fencing error) between A's assignment
//!   and that commit. Sound because the coordinator checks a commit's member when it applies it,
//!   inside the commit's interval. A rebalance granting A a newer epoch is not evidence: the
//!   coordinator granted it in answer to a request sent before the consumer applied (and the
//!   recorder invoked) the change, possibly before A was fenced and B was given the key.
//!   Otherwise (A lost the key, was fenced, crashed or retired, or shows nothing) it is reported
//!   as `C7 zombie-overlap`.
//!
//! * **C8 assignment within the subscription.** Every ok rebalance's `other_topics` (partitions
//!   of topics other than the test topic, whose partitions are the keys) must be covered by the
//!   process's latest `subscribe`: named in its `topics`, or a whole-name match of its `pattern`
//!   (as `^(?:pattern)$`, the coordinator's rule). A topic whose name merely contains a match is
//!   not covered: that is what a coordinator matching with `find` hands out.
//! * **C9 offset deletion (Kafka's OffsetDelete, issue 16).** An `offset-delete` that removes
//!   a key's committed offset writes "nothing committed" into C1's register (ok: inside its
//!   interval; info or unfinished: at most once, any time after its invoke). Besides, two
//!   direct checks ([`offset_delete`]): (a) `C9 deleted-while-subscribed`: an ok deletion
//!   answered "deleted" for key k while the group was surely subscribed to the test topic: some
//!   member whose subscription covers k has an ok commit with one member id and epoch completed
//!   before the deletion was invoked and another with the same id and epoch invoked after it
//!   completed (the coordinator accepts a commit only from a current member at its current
//!   epoch, and a member removed and joining again comes back at a newer epoch, so it was a
//!   member throughout); Kafka answers GROUP_SUBSCRIBED_TO_TOPIC then. (b)
//!   `C9 deleted-offset-returned`: an ok fetch-committed invoked after an ok deletion of k
//!   completed returns an offset for k, though no commit of k that can have taken effect after
//!   the deletion (not failed, invoked before the fetch completed, and not completed before the
//!   deletion was invoked) exists.
//!
//! Crashes (F-K1/F-K2) end a member's intervals and pending resumes; its open commit is
//! indeterminate. A new process replacing it is a new member. Rebalances of L8 continuity: a
//! rebalance that assigns, revokes or loses a key restarts the key's position (C3 checks it).
//!
//! Cost: one pass over the history ([`index`]), sorts of the deliveries and commits, and the C1
//! search per (group, key). `cargo bench --bench check`: a 1.13M-op group-model history (4
//! groups, 8 keys, 113k ok commits, 1.2M deliveries) checks in 2.9 s CPU with the log checks.

mod delivery;
mod index;
mod offset_delete;
mod ownership;
mod register;

use std::collections::BTreeMap;

use crate::history::{History, Key, Offset};

use super::index::{Index, Outcome};
use super::verdict::{Anomaly, AnomalyKind, GroupStats, Report};
use index::GroupIndex;
use register::{check_register, Linearizability, RegisterOp, RegisterOpKind};

/// Checks C1–C9 (C8 during the index pass) and returns the group totals (all zero without group ops).
pub(crate) fn check_groups(history: &History, index: &Index, report: &mut Report) -> GroupStats {
    let groups = GroupIndex::build(history, report);
    let mut stats = groups.stats.clone();
    if stats.groups == 0 {
        return stats;
    }
    check_commits(&groups, &mut stats, report);
    delivery::check_group_skips(&groups, index, report);
    delivery::check_resumes(&groups, index, &mut stats, report);
    check_auto_commits(&groups, index, report);
    check_stale_commits(&groups, report);
    delivery::count_redeliveries(&groups, &mut stats, report);
    ownership::check_generations(&groups, report);
    ownership::check_intervals(&groups, report);
    offset_delete::check_offset_deletes(&groups, report);
    stats
}

/// Which history op a register op stands for.
#[derive(Clone, Copy)]
enum Source {
    Commit,
    /// An `offset-delete` (C9).
    Delete,
    /// Index into `GroupIndex::reads`.
    Read(usize),
}

fn show(value: Option<Offset>) -> String {
    value.map_or("nothing committed".to_string(), |o| o.to_string())
}

/// C1: per (group, key), commits and committed-offset reads form a linearizable register.
fn check_commits(groups: &GroupIndex, stats: &mut GroupStats, report: &mut Report) {
    let mut registers: BTreeMap<(&str, Key), Vec<(RegisterOp, Source)>> = BTreeMap::new();
    for c in &groups.commits {
        let complete = match c.outcome {
            Outcome::Fail => continue,
            Outcome::Ok => Some(c.complete.expect("ok commits complete")),
            Outcome::Indeterminate => None,
        };
        for (&key, &offset) in &c.commit.offsets {
            let op = RegisterOp { kind: RegisterOpKind::Write(Some(offset)), invoke: c.invoke, complete };
            registers.entry((&c.commit.group, key)).or_default().push((op, Source::Commit));
        }
    }
    // C9: an offset deletion writes "nothing committed".
    for d in &groups.deletes {
        for &key in &d.deleted {
            let op = RegisterOp { kind: RegisterOpKind::Write(None), invoke: d.invoke, complete: d.complete };
            registers.entry((d.group, key)).or_default().push((op, Source::Delete));
        }
    }
    for (id, r) in groups.reads.iter().enumerate() {
        let op = RegisterOp { kind: RegisterOpKind::Read(r.value), invoke: r.invoke, complete: Some(r.complete) };
        registers.entry((r.group, r.key)).or_default().push((op, Source::Read(id)));
    }
    for ((group, key), ops) in registers {
        stats.registers_checked += 1;
        let register: Vec<RegisterOp> = ops.iter().map(|(op, _)| *op).collect();
        match check_register(&register) {
            Linearizability::Linearizable => {}
            Linearizability::Unknown { reason } => {
                stats.registers_unknown += 1;
                let anomaly = Anomaly::new(AnomalyKind::CommitUnknown, false).group(group).key(key);
                report.push(anomaly.detail(format!("{} ops; the search gave up: {reason}", ops.len())));
            }
            Linearizability::Violation { op, values } => {
                report.push(violation(groups, group, key, &ops, op, &values));
            }
        }
        let Some(drain) = groups.drain_index else { continue };
        let acked = ops.iter().any(|(op, source)| matches!(source, Source::Commit) && op.complete.is_some());
        let fetched_after =
            ops.iter().any(|(op, source)| matches!(source, Source::Read(r) if !groups.reads[*r].from_start && op.invoke > drain));
        if acked && !fetched_after {
            let anomaly = Anomaly::new(AnomalyKind::CommitUnverified, false).group(group).key(key);
            report.push(anomaly.detail("an ok commit, and no fetch-committed after the final-drain marker to show it survived"));
        }
    }
}

/// The C1 anomaly for a register whose op `at` could not return as it did.
fn violation(groups: &GroupIndex, group: &str, key: Key, ops: &[(RegisterOp, Source)], at: usize, values: &[Option<Offset>]) -> Anomaly {
    let (op, source) = ops[at];
    let possible = values.iter().map(|v| show(*v)).collect::<Vec<_>>().join(", ");
    let (what, lost) = match (op.kind, source) {
        (RegisterOpKind::Read(value), Source::Read(r)) => {
            let read = &groups.reads[r];
            let what = if read.from_start { "start position taken from a fetch" } else { "fetch-committed" };
            let after_drain = !read.from_start && groups.drain_index.is_some_and(|d| read.invoke > d);
            (format!("{what} returned {}", show(value)), after_drain)
        }
        (RegisterOpKind::Write(Some(offset)), _) => (format!("commit of {offset}"), false),
        (RegisterOpKind::Write(None), _) => ("offset deletion".to_string(), false),
        (RegisterOpKind::Read(value), _) => (format!("read of {}", show(value)), false),
    };
    // The newest ok commit completed before the op was invoked: the usual culprit.
    let previous = ops
        .iter()
        .filter(|(o, s)| matches!(s, Source::Commit) && o.complete.is_some_and(|c| c < op.invoke))
        .max_by_key(|(o, _)| o.complete);
    let kind = if lost { AnomalyKind::CommitLost } else { AnomalyKind::CommitNonlinearizable };
    let mut anomaly = Anomaly::new(kind, true).group(group).key(key);
    anomaly = anomaly.offsets(values.iter().flatten().copied().chain(match op.kind {
        RegisterOpKind::Read(v) | RegisterOpKind::Write(v) => v,
    }));
    let mut detail = format!("{what}, but the committed offset could only be {possible} when it returned");
    if let Some((p, _)) = previous {
        if let RegisterOpKind::Write(Some(o)) = p.kind {
            detail += &format!(" (the last ok commit before it, of {o}, completed at op {})", p.complete.expect("filtered"));
        }
    }
    let ops_named = previous.and_then(|(p, _)| p.complete).into_iter().chain([op.invoke]).chain(op.complete);
    anomaly.ops(ops_named).detail(detail)
}

/// C4: auto commits name only offsets the member had already been returned (or started at).
fn check_auto_commits(groups: &GroupIndex, index: &Index, report: &mut Report) {
    for c in groups.commits.iter().filter(|c| !c.unexplained.is_empty()) {
        // A position the member's reset policy moved to the log start after retention is no
        // poll's: an offset at or below the log start recorded before the commit moves nothing
        // past a record that could still be read.
        for &(key, offset) in c.unexplained.iter().filter(|&&(key, offset)| offset > index.log_start_before(key, c.invoke)) {
            let detail = format!(
                "process {} auto-committed offset {offset}: no earlier poll of the member returned offset {} and it was no start position",
                c.process,
                offset.wrapping_sub(1)
            );
            let anomaly = Anomaly::new(AnomalyKind::AutoCommitUnpolled, true).group(c.commit.group.clone()).key(key).offsets([offset]);
            report.push(anomaly.ops([c.invoke]).detail(detail));
        }
    }
}

/// C5: no commit is accepted with a generation or member epoch older than one already given.
fn check_stale_commits(groups: &GroupIndex, report: &mut Report) {
    for c in groups.commits.iter().filter(|c| c.outcome == Outcome::Ok) {
        let (Some(epoch), Some((given, op))) = (c.commit.epoch, c.epoch_given) else { continue };
        if epoch >= given {
            continue;
        }
        let detail = format!(
            "commit by member {} with epoch {epoch} was accepted after epoch {given} had been given (op {op})",
            c.commit.member.as_deref().unwrap_or("?")
        );
        let anomaly = Anomaly::new(AnomalyKind::StaleCommit, true).group(c.commit.group.clone());
        report.push(
            anomaly
                .offsets(c.commit.offsets.values().copied())
                .ops([op, c.invoke, c.complete.expect("ok commits complete")])
                .detail(detail),
        );
    }
}
