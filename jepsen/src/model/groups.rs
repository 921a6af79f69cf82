//! A seeded, in-memory model of consumer groups over a correct log: a coordinator per group
//! (committed offsets, members, generations or member epochs), members that subscribe, rebalance,
//! poll, commit by hand and by auto-commit, fetch committed offsets, crash (F-K1/F-K2), and are
//! fenced behind their backs (zombies); producers append with acks=all. It records a history
//! through [`HistoryBuilder`] that must pass every check; with a planted [`GroupBug`] it must fail
//! with the matching C anomaly.
//!
//! The coordinator is a linearizable register per (group, key): a commit takes effect at its
//! completion (an info commit at its completion or never), a fetch reads at its completion.
//! Rebalances run when a group's live members are all idle, in two phases so that a key moves
//! only after its owner revoked it: every member gives up what leaves it (a rebalance op each,
//! classic at a new generation), then every member takes what arrives (classic at the next
//! generation), with start positions fetched from the coordinator (reset to the beginning if
//! nothing is committed). A fenced member keeps polling until a commit is refused with a
//! fencing error; it then records its keys lost and rejoins as a new member.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{
    Acks, Commit, FetchCommitted, Group, GroupProtocol, History, HistoryBuilder, Key, Keys, Offset, OpF, OpHandle, OpValue, Poll, Process,
    Rebalance, Send, StartFrom, StartPosition, Subscribe, Value,
};

/// A bug planted once, about halfway through the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBug {
    /// The coordinator accepts a commit sent with the member's previous epoch (expect C5).
    StaleCommitAccepted,
    /// An auto-commit sent inside a poll commits the records that poll is about to return (C4).
    AutoCommitCurrentPoll,
    /// A commit answered with a definite error is applied anyway, and a fetch reads it (C1).
    FailedCommitApplied,
    /// A rebalance gives a key its owner keeps to a second member as well (C7).
    DoubleAssignment,
    /// A member's first poll of a newly assigned key starts one record after its start (C3).
    ResumeSkip,
    /// A member commits one offset past the last record it was returned (C2).
    CommitPastUnpolled,
}

#[derive(Clone, Debug)]
pub struct GroupModelConfig {
    pub seed: u64,
    /// Ops recorded before the final phase starts.
    pub ops_target: usize,
    pub keys: u64,
    pub groups: usize,
    pub members_per_group: usize,
    pub producers: usize,
    pub protocol: GroupProtocol,
    pub batch_values_max: usize,
    /// Records per key per poll.
    pub poll_records_max: usize,
    pub auto_commit: bool,
    /// Per member step: the process crashes (its replacement joins as a new member).
    pub crash_probability: f64,
    /// Per member step: the coordinator expires the member's session behind its back.
    pub fence_probability: f64,
    /// Per commit: a definite failure (nothing applied), or an indeterminate one.
    pub commit_fail_probability: f64,
    pub commit_info_probability: f64,
    pub bug: Option<GroupBug>,
}

impl Default for GroupModelConfig {
    fn default() -> GroupModelConfig {
        GroupModelConfig {
            seed: 0,
            ops_target: 3_000,
            keys: 4,
            groups: 2,
            members_per_group: 3,
            producers: 2,
            protocol: GroupProtocol::Consumer,
            batch_values_max: 3,
            poll_records_max: 4,
            auto_commit: true,
            crash_probability: 0.01,
            fence_probability: 0.005,
            commit_fail_probability: 0.05,
            commit_info_probability: 0.02,
            bug: None,
        }
    }
}

/// A generated run.
#[derive(Debug)]
pub struct GeneratedGroups {
    pub history: History,
    /// Whether the planted bug (if any) was applied.
    pub bug_planted: bool,
}

/// The process numbers above this are members' auto-commit companions (see `Commit` docs).
const COMPANION_PROCESS_BASE: Process = 1 << 40;

#[derive(Default)]
struct Coordinator {
    committed: BTreeMap<Key, Offset>,
    /// Live member id → its slot.
    members: BTreeMap<String, usize>,
    generation: u64,
    rebalance_due: bool,
}

enum Open {
    Poll(OpHandle),
    /// The commit, and whether it carries a planted bug (it then ends ok).
    Commit(OpHandle, Commit, bool),
}

struct Member {
    process: Process,
    companion: Process,
    group: usize,
    subscribed: bool,
    /// None until it joined (or after it learned it was fenced).
    member: Option<String>,
    epoch: u64,
    /// The member's previous epoch (for the stale-commit bug).
    epoch_previous: u64,
    owned: BTreeSet<Key>,
    positions: BTreeMap<Key, Offset>,
    open: Option<Open>,
    /// Removed by the coordinator without knowing it.
    zombie: bool,
    /// Keys whose first poll must skip one record (the resume bug).
    skip_next: BTreeSet<Key>,
}

struct GroupModel {
    config: GroupModelConfig,
    rng: StdRng,
    time_ns: Arc<AtomicU64>,
    b: HistoryBuilder,
    logs: BTreeMap<Key, Vec<Value>>,
    coordinators: Vec<Coordinator>,
    members: Vec<Member>,
    process_next: Process,
    member_next: u64,
    value_next: Value,
    /// Per (group, key), one past the highest offset any commit was sent with (to plant
    /// `FailedCommitApplied`).
    commit_max: BTreeMap<(usize, Key), Offset>,
    /// (group, key, offset) returned to some member; kept only to plant `CommitPastUnpolled`.
    delivered: BTreeSet<(usize, Key, Offset)>,
    bug_planted: bool,
}

fn group_name(group: usize) -> Group {
    format!("g{group}")
}

/// Runs the group model and returns its history.
pub fn generate_groups(config: &GroupModelConfig) -> GeneratedGroups {
    assert!(config.keys > 0 && config.groups > 0 && config.members_per_group > 0 && config.producers > 0);
    assert!(config.batch_values_max > 0 && config.poll_records_max > 0);
    let time_ns = Arc::new(AtomicU64::new(0));
    let clock = Arc::clone(&time_ns);
    let mut model = GroupModel {
        config: config.clone(),
        rng: StdRng::seed_from_u64(config.seed),
        time_ns,
        b: HistoryBuilder::new(move || clock.load(Ordering::Relaxed)),
        logs: (0..config.keys).map(|k| (k, Vec::new())).collect(),
        coordinators: (0..config.groups).map(|_| Coordinator::default()).collect(),
        members: Vec::new(),
        process_next: config.producers as Process,
        member_next: 0,
        value_next: 0,
        commit_max: BTreeMap::new(),
        delivered: BTreeSet::new(),
        bug_planted: false,
    };
    for group in 0..config.groups {
        for _ in 0..config.members_per_group {
            let member = model.fresh_member(group);
            model.members.push(member);
        }
    }
    while model.b.len() < config.ops_target {
        model.tick();
        model.step();
    }
    model.finish()
}

impl GroupModel {
    fn fresh_member(&mut self, group: usize) -> Member {
        let process = self.process_next;
        self.process_next += 1;
        Member {
            process,
            companion: COMPANION_PROCESS_BASE + process,
            group,
            subscribed: false,
            member: None,
            epoch: 0,
            epoch_previous: 0,
            owned: BTreeSet::new(),
            positions: BTreeMap::new(),
            open: None,
            zombie: false,
            skip_next: BTreeSet::new(),
        }
    }

    fn tick(&mut self) {
        let step = self.rng.gen_range(1..1_000);
        self.time_ns.fetch_add(step, Ordering::Relaxed);
    }

    fn bug_due(&self, bug: GroupBug) -> bool {
        self.config.bug == Some(bug) && !self.bug_planted && self.b.len() >= self.config.ops_target / 2
    }

    fn step(&mut self) {
        for group in 0..self.config.groups {
            let idle = self.members.iter().filter(|m| m.group == group && !m.zombie && m.member.is_some()).all(|m| m.open.is_none());
            if self.coordinators[group].rebalance_due && idle {
                self.rebalance(group);
            }
        }
        let actors = self.config.producers + self.members.len();
        let i = self.rng.gen_range(0..actors);
        if i < self.config.producers {
            self.send(i as Process);
        } else {
            self.member_step(i - self.config.producers);
        }
    }

    fn send(&mut self, process: Process) {
        let key = self.rng.gen_range(0..self.config.keys);
        let n = self.rng.gen_range(1..=self.config.batch_values_max) as u64;
        let values: Vec<Value> = (self.value_next..self.value_next + n).collect();
        self.value_next += n;
        let log = self.logs.get_mut(&key).expect("every key has a log");
        let offsets = (log.len() as Offset..log.len() as Offset + n).collect();
        log.extend(&values);
        let send = Send { key, values, acks: Acks::All, producer: None, offsets: None };
        let handle = self.b.invoke_send(process, send.clone()).expect("producers are idle between steps");
        self.b.ok(handle, OpValue::Send(Send { offsets: Some(offsets), ..send })).expect("open");
    }

    fn member_step(&mut self, i: usize) {
        let group = self.members[i].group;
        if self.rng.gen_bool(self.config.crash_probability) {
            return self.crash(i);
        }
        if self.members[i].open.is_some() {
            return self.complete(i);
        }
        if self.members[i].member.is_none() {
            return self.join(i);
        }
        let rebalancing = self.coordinators[group].rebalance_due && !self.members[i].zombie;
        let roll: f64 = self.rng.gen();
        if roll < self.config.fence_probability && !self.members[i].zombie {
            // The session expired behind the member's back: it becomes a zombie.
            let member = self.members[i].member.clone().expect("joined");
            self.coordinators[group].members.remove(&member);
            self.coordinators[group].rebalance_due = true;
            self.members[i].zombie = true;
        } else if rebalancing {
            // A member waits for the rebalance before it starts another op.
        } else if roll < 0.6 {
            let handle = self.b.invoke_poll(self.members[i].process).expect("idle");
            self.members[i].open = Some(Open::Poll(handle));
        } else if roll < 0.9 || self.members[i].zombie {
            self.invoke_commit(i);
        } else {
            self.fetch(self.members[i].process, group);
        }
    }

    /// A member process joins (first subscribing if it never did): the group will rebalance.
    fn join(&mut self, i: usize) {
        let (process, group) = (self.members[i].process, self.members[i].group);
        if !self.members[i].subscribed {
            self.members[i].subscribed = true;
            let subscribe = OpValue::Subscribe(Subscribe {
                group: group_name(group),
                topics: vec!["t".into()],
                pattern: None,
                keys: (0..self.config.keys).collect(),
            });
            let handle = self.b.invoke(process, OpF::Subscribe, subscribe.clone()).expect("idle");
            self.b.ok(handle, subscribe).expect("open");
        }
        let member = format!("m{:06}", self.member_next);
        self.member_next += 1;
        self.coordinators[group].members.insert(member.clone(), i);
        self.coordinators[group].rebalance_due = true;
        let m = &mut self.members[i];
        (m.member, m.zombie, m.epoch, m.epoch_previous) = (Some(member), false, 0, 0);
    }

    /// The process crashes (F-K1), between ops or inside one (F-K2: between a poll and its
    /// commit, or with the commit in flight, which may or may not take effect); a new process
    /// replaces it and joins as a new member.
    fn crash(&mut self, i: usize) {
        if let Some(Open::Commit(_, commit, planted)) = &self.members[i].open {
            if self.refusal(i, commit, *planted).is_none() && self.rng.gen_bool(0.5) {
                let offsets = commit.offsets.clone();
                self.coordinators[self.members[i].group].committed.extend(offsets);
            }
        }
        self.b.crash(self.members[i].process).expect("records");
        self.leave(i);
        self.members[i] = self.fresh_member(self.members[i].group);
    }

    /// The process is gone (crash or info): the coordinator drops it after its session expires.
    fn leave(&mut self, i: usize) {
        let group = self.members[i].group;
        if let Some(member) = &self.members[i].member {
            if self.coordinators[group].members.remove(member).is_some() {
                self.coordinators[group].rebalance_due = true;
            }
        }
    }

    fn commit_value(&self, i: usize, auto: bool) -> Commit {
        let m = &self.members[i];
        Commit {
            group: group_name(m.group),
            offsets: m.positions.clone(),
            auto,
            member: m.member.clone(),
            epoch: Some(m.epoch),
            error: None,
        }
    }

    /// A commit of the member's positions by the member itself.
    fn invoke_commit(&mut self, i: usize) {
        let mut commit = self.commit_value(i, false);
        let mut planted = false;
        if self.bug_due(GroupBug::StaleCommitAccepted) && self.members[i].epoch_previous > 0 && !self.members[i].zombie {
            commit.epoch = Some(self.members[i].epoch_previous);
            planted = true;
        }
        if self.bug_due(GroupBug::CommitPastUnpolled) && !self.members[i].zombie {
            let (logs, delivered, group) = (&self.logs, &self.delivered, self.members[i].group);
            let unpolled = |k: &Key, o: &Offset| *o < logs[k].len() as Offset && !delivered.contains(&(group, *k, *o));
            if let Some((&k, o)) = commit.offsets.iter_mut().find(|(k, o)| unpolled(k, o)) {
                *o += 1;
                self.members[i].positions.insert(k, *o);
                planted = true;
            }
        }
        // A never-committed offset, so that a read of it can only come from this commit.
        let fresh = self.note_commit(self.members[i].group, &commit);
        if self.bug_due(GroupBug::FailedCommitApplied) && fresh && !self.members[i].zombie {
            planted = true;
        }
        let handle = self.b.invoke(self.members[i].process, OpF::Commit, OpValue::Commit(commit.clone())).expect("idle");
        self.members[i].open = Some(Open::Commit(handle, commit, planted));
    }

    /// Records the offsets a commit is sent with; whether one of them was never sent before.
    fn note_commit(&mut self, group: usize, commit: &Commit) -> bool {
        let mut fresh = false;
        for (&k, &o) in &commit.offsets {
            let max = self.commit_max.entry((group, k)).or_insert(o);
            fresh |= o >= *max;
            *max = (*max).max(o + 1);
        }
        fresh
    }

    fn fetch(&mut self, process: Process, group: usize) {
        let keys: Vec<Key> = (0..self.config.keys).collect();
        let asked = FetchCommitted { group: group_name(group), keys: keys.clone(), ..FetchCommitted::default() };
        let handle = self.b.invoke(process, OpF::FetchCommitted, OpValue::FetchCommitted(asked.clone())).expect("idle");
        let committed = &self.coordinators[group].committed;
        let offsets = keys.iter().map(|k| (*k, committed.get(k).copied())).collect();
        self.b.ok(handle, OpValue::FetchCommitted(FetchCommitted { offsets, ..asked })).expect("open");
    }

    fn complete(&mut self, i: usize) {
        match self.members[i].open.take().expect("complete is called on an open member") {
            Open::Poll(handle) => self.complete_poll(i, handle),
            Open::Commit(handle, commit, planted) => self.complete_commit(i, handle, commit, planted),
        }
    }

    /// The coordinator's answer to a commit: the fencing error that refuses it, if any.
    fn refusal(&self, i: usize, commit: &Commit, planted: bool) -> Option<&'static str> {
        let m = &self.members[i];
        let stale = commit.epoch != Some(m.epoch) && !planted;
        match (m.zombie || stale, self.config.protocol) {
            (false, _) => None,
            (true, GroupProtocol::Classic) => Some("ILLEGAL_GENERATION"),
            (true, GroupProtocol::Consumer) => Some("FENCED_MEMBER_EPOCH"),
        }
    }

    fn complete_commit(&mut self, i: usize, handle: OpHandle, commit: Commit, planted: bool) {
        let group = self.members[i].group;
        let roll: f64 = if planted { 1.0 } else { self.rng.gen() };
        if let Some(error) = self.refusal(i, &commit, planted) {
            self.b.fail(handle, OpValue::Commit(Commit { error: Some(error.into()), ..commit })).expect("open");
            return self.learn_fenced(i, error);
        }
        if planted && self.config.bug == Some(GroupBug::FailedCommitApplied) {
            self.bug_planted = true;
            self.coordinators[group].committed.extend(&commit.offsets);
            self.b.fail(handle, OpValue::Commit(Commit { error: Some("NOT_COORDINATOR".into()), ..commit })).expect("open");
            return self.fetch(self.members[i].process, group);
        }
        if roll < self.config.commit_fail_probability {
            self.b.fail(handle, OpValue::Commit(Commit { error: Some("NOT_COORDINATOR".into()), ..commit })).expect("open");
        } else if roll < self.config.commit_fail_probability + self.config.commit_info_probability {
            if self.rng.gen_bool(0.5) {
                self.coordinators[group].committed.extend(&commit.offsets);
            }
            self.b.info(handle, OpValue::Commit(Commit { error: Some("REQUEST_TIMED_OUT".into()), ..commit })).expect("open");
            self.leave(i);
            self.members[i] = self.fresh_member(group);
        } else {
            self.bug_planted |= planted;
            self.coordinators[group].committed.extend(&commit.offsets);
            self.b.ok(handle, OpValue::Commit(commit)).expect("open");
        }
    }

    /// A zombie learns it was fenced: it records its keys lost and will rejoin as a new member.
    fn learn_fenced(&mut self, i: usize, error: &str) {
        self.leave(i);
        let m = &self.members[i];
        let lost: Vec<Key> = m.owned.iter().copied().collect();
        let asked = Rebalance { group: group_name(m.group), member: m.member.clone(), ..Rebalance::default() };
        let handle = self.b.invoke(m.process, OpF::Rebalance, OpValue::Rebalance(asked.clone())).expect("idle");
        let r = Rebalance { protocol: Some(self.config.protocol), epoch: Some(m.epoch), lost, error: Some(error.into()), ..asked };
        self.b.ok(handle, OpValue::Rebalance(r)).expect("open");
        let m = &mut self.members[i];
        m.owned.clear();
        m.positions.clear();
        m.member = None;
        m.zombie = true;
    }

    fn complete_poll(&mut self, i: usize, handle: OpHandle) {
        let Poll { records, hw } = self.poll_records(i);
        // Kafka's auto-commit runs inside poll: its companion records it while the poll is open.
        if self.config.auto_commit && !self.members[i].zombie && self.rng.gen_bool(0.3) {
            let mut commit = self.commit_value(i, true);
            if self.bug_due(GroupBug::AutoCommitCurrentPoll) {
                if let Some((&k, r)) = records.iter().find(|(_, r)| !r.is_empty()) {
                    commit.offsets.insert(k, r.last().expect("non-empty").0 + 1);
                    self.bug_planted = true;
                }
            }
            self.note_commit(self.members[i].group, &commit);
            let companion = self.members[i].companion;
            let commit_handle = self.b.invoke(companion, OpF::Commit, OpValue::Commit(commit.clone())).expect("companion idle");
            self.coordinators[self.members[i].group].committed.extend(&commit.offsets);
            self.b.ok(commit_handle, OpValue::Commit(commit)).expect("open");
        }
        for (k, r) in &records {
            if let Some(&(last, _)) = r.last() {
                self.members[i].positions.insert(*k, last + 1);
            }
            if self.config.bug == Some(GroupBug::CommitPastUnpolled) {
                self.delivered.extend(r.iter().map(|&(o, _)| (self.members[i].group, *k, o)));
            }
        }
        let records = records.into_iter().filter(|(_, r)| !r.is_empty()).collect();
        self.b.ok(handle, OpValue::Poll(Poll { records, hw })).expect("open");
    }

    /// What a poll returns from the member's positions on its owned keys (with the resume bug).
    fn poll_records(&mut self, i: usize) -> Poll {
        let (mut records, mut hw) = (BTreeMap::new(), BTreeMap::new());
        let keys: Vec<Key> = self.members[i].owned.iter().copied().collect();
        for key in keys {
            let log = &self.logs[&key];
            let mut position = self.members[i].positions.get(&key).copied().unwrap_or(0);
            if self.members[i].skip_next.remove(&key) && position + 1 < log.len() as Offset {
                position += 1;
                self.bug_planted = true;
            }
            let end = (position + self.config.poll_records_max as Offset).min(log.len() as Offset);
            records.insert(key, (position..end).map(|o| (o, log[o as usize])).collect::<Vec<_>>());
            hw.insert(key, log.len() as Offset);
        }
        Poll { records, hw }
    }

    fn record_rebalance(&mut self, i: usize, r: Rebalance) {
        let m = &self.members[i];
        let asked = Rebalance { group: r.group.clone(), member: r.member.clone(), ..Rebalance::default() };
        let handle = self.b.invoke(m.process, OpF::Rebalance, OpValue::Rebalance(asked)).expect("members are idle in a rebalance");
        self.b.ok(handle, OpValue::Rebalance(r)).expect("open");
    }

    /// The member's next generation (classic: the group's) or member epoch.
    fn next_epoch(&mut self, i: usize) -> u64 {
        let epoch = match self.config.protocol {
            GroupProtocol::Classic => self.coordinators[self.members[i].group].generation,
            GroupProtocol::Consumer => self.members[i].epoch + 1,
        };
        let m = &mut self.members[i];
        (m.epoch_previous, m.epoch) = (m.epoch, epoch);
        epoch
    }

    /// Moves keys to the round-robin target in two phases: revokes, then assignments.
    fn rebalance(&mut self, group: usize) {
        let live: Vec<usize> = self.coordinators[group].members.values().copied().collect();
        if live.is_empty() {
            self.coordinators[group].rebalance_due = false;
            return;
        }
        let mut target: BTreeMap<usize, BTreeSet<Key>> = live.iter().map(|&i| (i, BTreeSet::new())).collect();
        for key in 0..self.config.keys {
            let i = live[key as usize % live.len()];
            target.get_mut(&i).expect("live").insert(key);
        }
        let classic = self.config.protocol == GroupProtocol::Classic;
        self.coordinators[group].generation += 1;
        for &i in &live {
            let leaving: Vec<Key> = self.members[i].owned.difference(&target[&i]).copied().collect();
            if leaving.is_empty() && !classic {
                continue;
            }
            let epoch = self.next_epoch(i);
            for k in &leaving {
                self.members[i].owned.remove(k);
                self.members[i].positions.remove(k);
            }
            let m = &self.members[i];
            let r = Rebalance { revoked: leaving, ..self.rebalance_value(m, epoch) };
            self.record_rebalance(i, r);
        }
        self.coordinators[group].generation += 1;
        let double = self.bug_due(GroupBug::DoubleAssignment) && live.len() > 1;
        for (n, &i) in live.iter().enumerate() {
            let mut arriving: Vec<Key> = target[&i].difference(&self.members[i].owned).copied().collect();
            if double && n == 1 {
                if let Some(&k) = self.members[live[0]].owned.iter().next() {
                    arriving.push(k);
                    self.bug_planted = true;
                }
            }
            if arriving.is_empty() && !classic {
                continue;
            }
            let resume_bug = self.bug_due(GroupBug::ResumeSkip);
            let epoch = self.next_epoch(i);
            let mut start = BTreeMap::new();
            for &k in &arriving {
                let position = match self.coordinators[group].committed.get(&k) {
                    Some(&offset) => StartPosition { offset, from: StartFrom::Committed, committed: None },
                    None => StartPosition { offset: 0, from: StartFrom::Reset, committed: None },
                };
                start.insert(k, position);
                self.members[i].owned.insert(k);
                self.members[i].positions.insert(k, position.offset);
                if resume_bug {
                    self.members[i].skip_next.insert(k);
                }
            }
            let m = &self.members[i];
            let r = Rebalance { assigned: arriving, start, ..self.rebalance_value(m, epoch) };
            self.record_rebalance(i, r);
        }
        if double && self.bug_planted {
            // The first owner shows it is still a live member: the double ownership is provable.
            let commit = self.commit_value(live[0], false);
            self.note_commit(group, &commit);
            let handle = self.b.invoke(self.members[live[0]].process, OpF::Commit, OpValue::Commit(commit.clone())).expect("idle");
            self.coordinators[group].committed.extend(&commit.offsets);
            self.b.ok(handle, OpValue::Commit(commit)).expect("open");
        }
        self.coordinators[group].rebalance_due = false;
    }

    fn rebalance_value(&self, m: &Member, epoch: u64) -> Rebalance {
        Rebalance {
            group: group_name(m.group),
            member: m.member.clone(),
            protocol: Some(self.config.protocol),
            epoch: Some(epoch),
            ..Rebalance::default()
        }
    }

    /// Completes open ops, fetches every group's committed offsets after the final-drain
    /// marker, and drains every key with a fresh reader.
    fn finish(mut self) -> GeneratedGroups {
        for i in 0..self.members.len() {
            if self.members[i].open.is_some() {
                self.tick();
                self.complete(i);
            }
        }
        self.b.final_drain().expect("records");
        let reader = self.process_next;
        self.process_next += 1;
        for group in 0..self.config.groups {
            self.tick();
            self.fetch(reader, group);
        }
        for key in 0..self.config.keys {
            let process = self.process_next;
            self.process_next += 1;
            let keys = OpValue::Keys(Keys { keys: vec![key] });
            let handle = self.b.invoke(process, OpF::Assign, keys.clone()).expect("idle");
            self.b.ok(handle, keys).expect("open");
            let log = &self.logs[&key];
            let mut position = 0;
            while position < log.len() as Offset {
                let end = (position + self.config.poll_records_max as Offset).min(log.len() as Offset);
                let records = BTreeMap::from([(key, (position..end).map(|o| (o, log[o as usize])).collect())]);
                let handle = self.b.invoke_poll(process).expect("idle");
                let poll = Poll { records, hw: BTreeMap::from([(key, log.len() as Offset)]) };
                self.b.ok(handle, OpValue::Poll(poll)).expect("open");
                position = end;
            }
        }
        GeneratedGroups { history: self.b.finish(), bug_planted: self.bug_planted }
    }
}
