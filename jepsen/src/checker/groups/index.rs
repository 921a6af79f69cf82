//! One pass over the history that follows every group member (its group, member id and owned
//! keys) and records the facts the C checks read: commits, committed-offset reads,
//! ownership intervals, resumes, deliveries, fencing and liveness evidence.
//!
//! Facts that depend on "what was known when an op was invoked" (C4's earlier polls, C5's newest
//! epoch given) are taken during the pass, at the invoke; everything else is checked afterwards.
//! Cost: one pass; per group member a set of the (key, offset) pairs it was returned (C4), which
//! is dropped when the process retires; the rest is proportional to the group ops.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{
    is_fencing_error, Commit, GroupProtocol, History, Key, Offset, Op, OpF, OpType, OpValue, Process, Rebalance, StartFrom, StartPosition,
    Subscribe, Value, PROCESS_NEMESIS,
};

use super::super::index::Outcome;
use super::super::verdict::{Anomaly, AnomalyKind, GroupStats, Report};

pub(crate) struct CommitOp<'h> {
    pub invoke: u64,
    pub complete: Option<u64>,
    pub outcome: Outcome,
    pub process: Process,
    pub commit: &'h Commit,
    /// The completion's error code, if any.
    pub error: Option<&'h str>,
    /// C4: offsets of an auto commit that no earlier poll or start position of the member explains.
    pub unexplained: Vec<(Key, Offset)>,
    /// C5: the newest generation (classic, any member) or member epoch (consumer, this member)
    /// given by an ok rebalance completed before this commit was invoked, and that op.
    pub epoch_given: Option<(u64, u64)>,
}

/// An `offset-delete` op (C9): the keys whose offsets it removed (ok: those answered deleted;
/// indeterminate: every key asked, any time after the invoke), and those it was refused.
pub(crate) struct OffsetDeleteOp<'h> {
    pub group: &'h str,
    pub invoke: u64,
    /// `None` while indeterminate.
    pub complete: Option<u64>,
    pub deleted: Vec<Key>,
}

/// A committed-offset read: an ok `fetch-committed` entry, or a start position taken from one.
pub(crate) struct CommittedRead<'h> {
    pub group: &'h str,
    pub key: Key,
    pub value: Option<Offset>,
    pub invoke: u64,
    pub complete: u64,
    /// From a rebalance's start position rather than a fetch-committed op.
    pub from_start: bool,
}

/// A key newly assigned to a member with a start position, and the member's first poll of it.
pub(crate) struct Assignment<'h> {
    pub group: &'h str,
    pub process: Process,
    pub key: Key,
    pub start: StartPosition,
    /// Completion of the rebalance op.
    pub op: u64,
    /// (completion of the first ok poll returning the key, its first offset), if one came before
    /// the key was revoked, lost or rewound, or the process retired.
    pub first_poll: Option<(u64, Offset)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndKind {
    /// Given up cleanly (a rebalance `revoked` it).
    Revoked,
    /// Taken away (`lost`: fenced or session expired).
    Lost,
    /// The process crashed or retired with an info op.
    Retired,
    /// Still owned when the history ends.
    Open,
}

/// A member's ownership of one key, from the rebalance op assigning it to the one ending it.
pub(crate) struct Interval<'h> {
    pub group: &'h str,
    pub key: Key,
    pub process: Process,
    pub member: Option<&'h str>,
    pub assign_invoke: u64,
    pub assign_complete: u64,
    pub end_kind: EndKind,
    /// Invoke of the ending op (u64::MAX while open): the member surely owned the key before it.
    pub end_invoke: u64,
}

/// A record returned to a group member by an ok poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Delivery<'h> {
    pub group: &'h str,
    pub key: Key,
    pub offset: Offset,
    /// The poll's completion.
    pub complete: u64,
    pub value: Value,
    /// Whether the member owned the key when it invoked the poll.
    pub held: bool,
}

/// A classic member's assignment at one generation (the first ok rebalance op at it).
pub(crate) struct GenerationAssignment<'h> {
    pub group: &'h str,
    pub generation: u64,
    pub member: Option<&'h str>,
    pub instance: Option<&'h str>,
    pub process: Process,
    pub owned: Vec<Key>,
    pub op: u64,
}

/// An op that shows the coordinator still treated `member` as a member at a moment inside its
/// interval: an ok commit sent with the member id (the coordinator checks the member when it
/// applies the commit, and the recorder invokes a commit before the consumer sends it).
///
/// A rebalance is no such evidence, whatever epoch it grants: the coordinator granted that
/// epoch in answer to a heartbeat (or join) sent before the consumer applied the change, and the
/// recorder can only invoke the op when the consumer applies it (or, for a new epoch without a
/// change of assignment, after the poll it noticed it in), so the grant may precede the invoke
/// by any time. Taken as liveness, a grant from before the member was fenced, applied after the
/// key moved on, would fail C7 on a zombie (groups seed 166 once the leader's appends left
/// before its fsync).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Liveness<'h> {
    pub invoke: u64,
    pub complete: u64,
    pub member: &'h str,
}

/// Whose polls explain an auto commit (C4): the member id's, or the process's if it has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Consumer<'h> {
    Member(&'h str, &'h str),
    Process(Process),
}

#[derive(Default)]
struct ProcessState<'h> {
    group: Option<&'h str>,
    /// The process's latest `subscribe` (C8).
    subscription: Option<&'h Subscribe>,
    member: Option<&'h str>,
    /// Owned key → interval id.
    owned: BTreeMap<Key, usize>,
    /// Key → assignment id still waiting for its first poll.
    awaiting: BTreeMap<Key, usize>,
    open: Option<&'h Op>,
    open_commit: Option<usize>,
    /// The open `offset-delete` op's id in `deletes`.
    open_delete: Option<usize>,
}

#[derive(Default)]
pub(crate) struct GroupIndex<'h> {
    pub commits: Vec<CommitOp<'h>>,
    /// `offset-delete` ops that may have removed something (ok or indeterminate), in invoke order.
    pub deletes: Vec<OffsetDeleteOp<'h>>,
    /// C9: per (group, member id), the keys its process's latest subscription covered when a
    /// rebalance of the member was recorded.
    pub member_keys: BTreeMap<(&'h str, &'h str), &'h [Key]>,
    pub reads: Vec<CommittedRead<'h>>,
    pub assignments: Vec<Assignment<'h>>,
    pub intervals: Vec<Interval<'h>>,
    /// Sorted by (group, key, offset, complete, ...) after the pass.
    pub deliveries: Vec<Delivery<'h>>,
    pub generations: Vec<GenerationAssignment<'h>>,
    /// Per process: completions of ops that show it was fenced (a fencing error, or keys lost).
    pub fences: BTreeMap<Process, Vec<u64>>,
    /// Per process, in invoke order.
    pub liveness: BTreeMap<Process, Vec<Liveness<'h>>>,
    /// Per (group, key): the highest start position chosen by the reset policy.
    pub reset_floor: BTreeMap<(&'h str, Key), Offset>,
    pub drain_index: Option<u64>,
    pub stats: GroupStats,
    processes: BTreeMap<Process, ProcessState<'h>>,
    /// C4: per consumer and key it holds, the furthest offset it may commit: the start position
    /// of its current assignment of the key, or one past the last record returned since
    /// (`u64::MAX` if the assignment named no start).
    positions: BTreeMap<(Consumer<'h>, Key), Offset>,
    /// C5: classic, per group: (newest generation given, op); consumer, per (group, member).
    classic_given: BTreeMap<&'h str, (u64, u64)>,
    member_given: BTreeMap<(&'h str, &'h str), (u64, u64)>,
    member_protocol: BTreeMap<(&'h str, &'h str), GroupProtocol>,
    /// (group, member id) → the process whose rebalances carry it (a companion process's
    /// commits count as its member's evidence).
    member_process: BTreeMap<(&'h str, &'h str), Process>,
    groups: BTreeSet<&'h str>,
}

/// C8: the topics other than the test topic that a rebalance assigned and the member's
/// subscription does not cover (not named, and not a whole-name match of its pattern), as text;
/// `None` when all are covered. A process that never subscribed is checked against nothing.
fn outside_subscription(subscription: Option<&Subscribe>, r: &Rebalance) -> Option<String> {
    let subscription = subscription.filter(|_| !r.other_topics.is_empty())?;
    let pattern = subscription.pattern.as_deref().and_then(|pattern| regex::Regex::new(&format!("^(?:{pattern})$")).ok());
    let covered = |topic: &str| subscription.topics.iter().any(|t| t == topic) || pattern.as_ref().is_some_and(|p| p.is_match(topic));
    let outside: Vec<String> =
        r.other_topics.iter().filter(|(topic, _)| !covered(topic)).map(|(topic, partitions)| format!("{topic:?} {partitions:?}")).collect();
    let shown = match &subscription.pattern {
        Some(pattern) => format!("topics {:?} and pattern {pattern:?}", subscription.topics),
        None => format!("topics {:?}", subscription.topics),
    };
    (!outside.is_empty()).then(|| format!("{}, outside its subscription ({shown})", outside.join(", ")))
}

fn malformed(report: &mut Report, group: &str, ops: impl IntoIterator<Item = u64>, detail: impl Into<String>) {
    report.push(Anomaly::new(AnomalyKind::MalformedHistory, true).group(group).ops(ops).detail(detail));
}

impl<'h> GroupIndex<'h> {
    pub fn build(history: &'h History, report: &mut Report) -> GroupIndex<'h> {
        let mut index = GroupIndex::default();
        for op in history.ops() {
            if op.process == PROCESS_NEMESIS {
                if op.f == OpF::FinalDrain {
                    index.drain_index.get_or_insert(op.index);
                }
                continue;
            }
            match op.kind {
                OpType::Invoke => index.invoke(op),
                OpType::Info if op.f == OpF::Crash => {
                    index.processes.entry(op.process).or_default().open = None;
                    index.retire(op.process, op.index);
                }
                kind => {
                    let invoke = index.processes.get_mut(&op.process).and_then(|s| s.open.take());
                    let invoke = invoke.expect("validated history: a completion has an open invoke");
                    index.complete(invoke, op, report);
                    if kind == OpType::Info {
                        index.retire(op.process, op.index);
                    }
                }
            }
        }
        for interval in index.intervals.iter_mut().filter(|i| i.end_kind == EndKind::Open) {
            interval.end_invoke = u64::MAX;
        }
        index.deliveries.sort_unstable();
        index.deletes.retain(|d| !d.deleted.is_empty());
        // A companion process's commits join its member's lists out of invoke order.
        for lives in index.liveness.values_mut() {
            lives.sort_by_key(|l| l.invoke);
        }
        for fences in index.fences.values_mut() {
            fences.sort_unstable();
        }
        index.stats.groups = index.groups.len() as u64;
        index.stats.members = index.processes.values().filter(|s| s.group.is_some()).count() as u64;
        for c in &index.commits {
            match c.outcome {
                Outcome::Ok => index.stats.commits_ok += 1,
                Outcome::Fail => index.stats.commits_fail += 1,
                Outcome::Indeterminate => index.stats.commits_indeterminate += 1,
            }
            index.stats.auto_commits += u64::from(c.commit.auto);
        }
        index
    }

    fn consumers(&self, process: Process) -> [Option<Consumer<'h>>; 2] {
        let state = &self.processes[&process];
        let member = state.group.zip(state.member).map(|(g, m)| Consumer::Member(g, m));
        [member, Some(Consumer::Process(process))]
    }

    fn invoke(&mut self, op: &'h Op) {
        let state = self.processes.entry(op.process).or_default();
        state.open = Some(op);
        match &op.value {
            OpValue::Subscribe(s) => {
                state.group = Some(&s.group);
                state.subscription = Some(s);
                self.groups.insert(&s.group);
            }
            OpValue::Keys(keys) if op.f == OpF::Rewind => {
                for k in &keys.keys {
                    state.awaiting.remove(k);
                }
            }
            OpValue::Keys(_) if op.f == OpF::Assign => state.awaiting.clear(),
            OpValue::Commit(commit) => {
                self.groups.insert(&commit.group);
                let id = self.commits.len();
                self.processes.get_mut(&op.process).expect("entry above").open_commit = Some(id);
                let unexplained = if commit.auto { self.unexplained(op.process, commit) } else { Vec::new() };
                let epoch_given = self.epoch_given(commit);
                self.commits.push(CommitOp {
                    invoke: op.index,
                    complete: None,
                    outcome: Outcome::Indeterminate,
                    process: op.process,
                    commit,
                    error: None,
                    unexplained,
                    epoch_given,
                });
            }
            OpValue::OffsetDelete(asked) => {
                self.groups.insert(&asked.group);
                let id = self.deletes.len();
                self.processes.get_mut(&op.process).expect("entry above").open_delete = Some(id);
                self.deletes.push(OffsetDeleteOp { group: &asked.group, invoke: op.index, complete: None, deleted: asked.keys.clone() });
            }
            _ => {}
        }
    }

    /// C4: the offsets of an auto commit beyond what the committing consumer had been returned
    /// (or started at) in its current assignment of the key, when the commit was invoked.
    fn unexplained(&self, process: Process, commit: &'h Commit) -> Vec<(Key, Offset)> {
        let member = commit.member.as_deref().map(|m| Consumer::Member(&commit.group, m));
        let consumers: Vec<Consumer> = member.into_iter().chain(self.consumers(process).into_iter().flatten()).collect();
        let explained = |key: Key, offset: Offset| consumers.iter().any(|c| self.positions.get(&(*c, key)).is_some_and(|&p| offset <= p));
        commit.offsets.iter().map(|(&k, &o)| (k, o)).filter(|&(k, o)| !explained(k, o)).collect()
    }

    /// C5: the newest epoch a commit's member (consumer) or group (classic) had been given.
    fn epoch_given(&self, commit: &'h Commit) -> Option<(u64, u64)> {
        let member = commit.member.as_deref()?;
        commit.epoch?;
        match self.member_protocol.get(&(commit.group.as_str(), member))? {
            GroupProtocol::Classic => self.classic_given.get(commit.group.as_str()).copied(),
            GroupProtocol::Consumer => self.member_given.get(&(commit.group.as_str(), member)).copied(),
        }
    }

    fn complete(&mut self, invoke: &'h Op, op: &'h Op, report: &mut Report) {
        match (&invoke.value, &op.value) {
            (OpValue::Rebalance(asked), OpValue::Rebalance(r)) => {
                if asked.group != r.group {
                    malformed(report, &r.group, [invoke.index, op.index], "rebalance completion names another group");
                } else if op.kind == OpType::Ok {
                    self.rebalance(invoke, op, r, report);
                } else if r.error.as_deref().is_some_and(is_fencing_error) {
                    self.fences.entry(op.process).or_default().push(op.index);
                }
            }
            (OpValue::Commit(asked), OpValue::Commit(c)) => {
                let id = self.processes.get_mut(&op.process).and_then(|s| s.open_commit.take()).expect("a commit invoke opened one");
                if asked.group != c.group || asked.offsets != c.offsets {
                    malformed(report, &c.group, [invoke.index, op.index], "commit completion differs from its invoke");
                }
                let commit = &mut self.commits[id];
                commit.complete = Some(op.index);
                commit.error = c.error.as_deref();
                commit.outcome = match op.kind {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => Outcome::Indeterminate,
                };
                let owner = asked.member.as_deref().and_then(|m| self.member_process.get(&(asked.group.as_str(), m)));
                let owner = owner.copied().unwrap_or(op.process);
                if op.kind == OpType::Fail && c.error.as_deref().is_some_and(is_fencing_error) {
                    self.fences.entry(owner).or_default().push(op.index);
                }
                if let (OpType::Ok, Some(member)) = (op.kind, asked.member.as_deref()) {
                    let liveness = Liveness { invoke: invoke.index, complete: op.index, member };
                    self.liveness.entry(owner).or_default().push(liveness);
                }
            }
            (OpValue::OffsetDelete(asked), OpValue::OffsetDelete(d)) => {
                let id = self.processes.get_mut(&op.process).and_then(|s| s.open_delete.take()).expect("a delete invoke opened one");
                let answered: BTreeSet<Key> = d.deleted.iter().chain(&d.refused).copied().collect();
                let asked_keys: BTreeSet<Key> = asked.keys.iter().copied().collect();
                if asked.group != d.group || (op.kind == OpType::Ok && answered != asked_keys) {
                    malformed(report, &d.group, [invoke.index, op.index], "offset-delete completion differs from its invoke");
                }
                let delete = &mut self.deletes[id];
                match op.kind {
                    OpType::Ok => (delete.complete, delete.deleted) = (Some(op.index), d.deleted.clone()),
                    OpType::Fail => delete.deleted.clear(),
                    _ => {}
                }
            }
            (OpValue::FetchCommitted(asked), OpValue::FetchCommitted(f)) if op.kind == OpType::Ok => {
                self.stats.fetches_ok += 1;
                if asked.group != f.group || f.offsets.keys().any(|k| !asked.keys.contains(k)) {
                    malformed(report, &f.group, [invoke.index, op.index], "fetch-committed answered another group or unasked keys");
                    return;
                }
                for (&key, &value) in &f.offsets {
                    let read =
                        CommittedRead { group: &asked.group, key, value, invoke: invoke.index, complete: op.index, from_start: false };
                    self.reads.push(read);
                }
            }
            (OpValue::Poll(_), OpValue::Poll(poll)) if op.kind == OpType::Ok => {
                let consumers = self.consumers(op.process);
                let state = self.processes.get_mut(&op.process).expect("the invoke created it");
                let Some(group) = state.group else { return };
                for (&key, records) in &poll.records {
                    let held = state.owned.contains_key(&key);
                    for &(offset, value) in records {
                        self.deliveries.push(Delivery { group, key, offset, complete: op.index, value, held });
                    }
                    if let Some(&(last, _)) = records.last() {
                        for c in consumers.iter().flatten() {
                            let position = self.positions.entry((*c, key)).or_insert(last + 1);
                            *position = (*position).max(last + 1);
                        }
                    }
                    if let (Some(id), Some(&(first, _))) = (state.awaiting.remove(&key), records.first()) {
                        self.assignments[id].first_poll = Some((op.index, first));
                    }
                }
                self.stats.deliveries += poll.records.values().map(|r| r.len() as u64).sum::<u64>();
            }
            _ => {}
        }
    }

    /// Applies an ok rebalance: ends and starts intervals, records starts, reads and evidence.
    fn rebalance(&mut self, invoke: &'h Op, op: &'h Op, r: &'h Rebalance, report: &mut Report) {
        self.stats.rebalances_ok += 1;
        self.groups.insert(&r.group);
        let process = op.process;
        let fenced = !r.lost.is_empty() || r.error.as_deref().is_some_and(is_fencing_error);
        if fenced {
            self.fences.entry(process).or_default().push(op.index);
        }
        let state = self.processes.get_mut(&process).expect("the invoke created it");
        state.group.get_or_insert(&r.group);
        if r.member.is_some() {
            state.member = r.member.as_deref();
        }
        if let Some(member) = r.member.as_deref() {
            self.member_process.insert((&r.group, member), process);
            if let Some(subscription) = state.subscription {
                self.member_keys.insert((&r.group, member), &subscription.keys);
            }
            if let Some(protocol) = r.protocol {
                self.member_protocol.insert((&r.group, member), protocol);
            }
        }
        let state = self.processes.get_mut(&process).expect("the invoke created it");
        if let Some(outside) = outside_subscription(state.subscription, r) {
            let detail = format!("a rebalance of member {:?} assigns partitions of {outside}", r.member.as_deref().unwrap_or("?"));
            report.push(Anomaly::new(AnomalyKind::AssignmentOutsideSubscription, true).group(&r.group).ops([op.index]).detail(detail));
        }
        for (key, kind) in r.revoked.iter().map(|k| (*k, EndKind::Revoked)).chain(r.lost.iter().map(|k| (*k, EndKind::Lost))) {
            state.awaiting.remove(&key);
            match state.owned.remove(&key) {
                Some(id) => {
                    let interval = &mut self.intervals[id];
                    (interval.end_kind, interval.end_invoke) = (kind, invoke.index);
                }
                None => {
                    malformed(report, &r.group, [op.index], format!("rebalance revokes or loses key {key}, which the member does not own"))
                }
            }
        }
        for &key in &r.assigned {
            if state.owned.contains_key(&key) {
                malformed(report, &r.group, [op.index], format!("rebalance assigns key {key}, which the member already owns"));
                continue;
            }
            state.owned.insert(key, self.intervals.len());
            self.intervals.push(Interval {
                group: &r.group,
                key,
                process,
                member: r.member.as_deref(),
                assign_invoke: invoke.index,
                assign_complete: op.index,
                end_kind: EndKind::Open,
                end_invoke: u64::MAX,
            });
        }
        for (&key, &start) in &r.start {
            if !r.assigned.contains(&key) {
                malformed(
                    report,
                    &r.group,
                    [op.index],
                    format!("rebalance gives a start position for key {key}, which it does not assign"),
                );
                continue;
            }
            state.awaiting.insert(key, self.assignments.len());
            self.assignments.push(Assignment { group: &r.group, process, key, start, op: op.index, first_poll: None });
            if let Some(value) = start.fetched() {
                let read = CommittedRead { group: &r.group, key, value, invoke: invoke.index, complete: op.index, from_start: true };
                self.reads.push(read);
            }
            if start.from == StartFrom::Reset {
                let floor = self.reset_floor.entry((&r.group, key)).or_insert(start.offset);
                *floor = (*floor).max(start.offset);
            }
        }
        let owned: Vec<Key> = state.owned.keys().copied().collect();
        for c in self.consumers(process).into_iter().flatten() {
            for k in r.revoked.iter().chain(&r.lost) {
                self.positions.remove(&(c, *k));
            }
            for &k in &r.assigned {
                self.positions.insert((c, k), r.start.get(&k).map_or(u64::MAX, |s| s.offset));
            }
        }
        let (Some(epoch), false) = (r.epoch, fenced) else { return };
        match r.protocol {
            Some(GroupProtocol::Classic) => {
                let given = self.classic_given.entry(&r.group).or_insert((epoch, op.index));
                if epoch > given.0 {
                    *given = (epoch, op.index);
                }
                self.generations.push(GenerationAssignment {
                    group: &r.group,
                    generation: epoch,
                    member: r.member.as_deref(),
                    instance: r.instance.as_deref(),
                    process,
                    owned,
                    op: op.index,
                });
            }
            Some(GroupProtocol::Consumer) => {
                if let Some(member) = r.member.as_deref() {
                    let given = self.member_given.entry((&r.group, member)).or_insert((epoch, op.index));
                    if epoch > given.0 {
                        *given = (epoch, op.index);
                    }
                }
            }
            None => {}
        }
    }

    /// The process crashed or retired at op `at`: its ownership ends, its resumes are unknown.
    fn retire(&mut self, process: Process, at: u64) {
        let Some(state) = self.processes.get_mut(&process) else { return };
        for (_, id) in std::mem::take(&mut state.owned) {
            let interval = &mut self.intervals[id];
            (interval.end_kind, interval.end_invoke) = (EndKind::Retired, at);
        }
        state.awaiting.clear();
        state.open_commit = None;
        state.open_delete = None;
        self.positions.retain(|(c, _), _| *c != Consumer::Process(process));
    }
}
