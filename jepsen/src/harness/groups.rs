//! The `subscribe` workload's group members: consumer-group consumers (one tokio task each, each
//! process its own client) in two groups, one per protocol ([`GROUPS`]), that subscribe, poll,
//! commit what each poll returned, read their committed offsets now and then, and crash
//! (dropped without leaving; a new process joins in their place). After the final drain, one
//! fetch of every group's committed offsets (C1's survival check).
//!
//! How the client's public API is mapped onto the history contract ([`crate::history`]):
//! * the consumer applies assignment changes inside `poll`, running the rebalance listener first;
//!   at the first callback of a poll the listener completes the open `poll` op `ok` with no
//!   records (true: a poll returns as soon as it has records, and changes are applied before any
//!   fetch of that round) and invokes a `rebalance` op. So a revocation's op is invoked before
//!   the member reports the key released (the machine counts it released only after the
//!   callbacks), as the contract asks;
//! * the rebalance op completes once every key it assigned has its start position (the
//!   consumer's `Assigned` group event, read after the poll returns): the committed-offset fetch
//!   that chose it happened inside the op. Records that poll returned are recorded as a new
//!   `poll` op invoked after that completion (they were fetched after it, from those positions;
//!   recorded later than they happened, which only narrows what the checks allow);
//! * the member commits explicitly (auto-commit off: its commits are sent from a task inside
//!   `poll`, with no moment the harness could record their invoke), never offset 0, so a start
//!   position of 0 (the reset policy is earliest, and no retention runs) can only mean "nothing
//!   committed" (`from: reset`) and any other start came from a committed offset;
//! * one rebalance op per batch of changes a poll applies, not one per generation or member
//!   epoch: an epoch that changes without a change of partitions is not recorded (the client
//!   reports no event for it). That weakens C7 (a) a little, never makes a check fail wrongly;
//! * a batch that revokes or loses a key it also assigns (or the reverse) cannot be one op: it
//!   completes `info` and the process retires;
//! * a poll cut off by the harness's timer retires the process (its consumer may apply changes
//!   again, which would be recorded twice); one that fails for good (the member machine's fatal
//!   error: a correct cluster never causes one) is a run problem; a consumer dropped with no
//!   retiring op is recorded as a crash, which is what it is to the group;
//! * now and then a member sends a zombie commit ([`zombie_commit_step`]): the offsets it last
//!   committed, under its previous epoch, which a correct coordinator refuses (C5's teeth).
//!
//! `--offset-delete` (C9, [`offset_delete_worker`]): now and then a worker deletes one group's
//! committed offsets of random keys with a raw Kafka OffsetDelete request (the `kafka-protocol`
//! codecs, [`raw`]) sent to the group's coordinator over its Kafka listener (FindCoordinator
//! first, at a random node's). A correct coordinator answers GROUP_SUBSCRIBED_TO_TOPIC for a
//! group subscribed to the test topic (`refused`), and removes the offsets of a group whose
//! members are all gone (`deleted`: a member joining later starts from the reset policy, 0,
//! recorded `from: reset`). Each deletion is one op on the worker's process, asked once:
//! `ok` with the answer per key, `fail` when the whole request was refused before anything was
//! removed (or never sent), `info` otherwise (the process retires).
//!
//! Bounds: polls by [`POLL_TIMEOUT`] plus the harness margin, commits and fetches by
//! [`OP_TIMEOUT_MARGIN`]; a rebalance op stays open over at most [`REBALANCE_POLLS_MAX`] polls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use odradek_client::group::TopicPartition;
use odradek_client::{ClientError, Consumer, ConsumerConfig, GroupEvent, GroupProtocol as ClientProtocol, OffsetReset, RebalanceListener};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use super::kafka::raw;
use super::workload::{cluster_config, sleep_or_stop, Recorder, WorkloadTarget, OP_TIMEOUT_MARGIN, RETRY_PAUSE};
use crate::history::{
    Commit, FetchCommitted, GroupProtocol, Key, Offset, OffsetDelete, OpF, OpHandle, OpValue, Poll, Process, Rebalance, StartFrom,
    StartPosition, Subscribe,
};

/// The groups of a `subscribe` run: one per protocol.
pub const GROUPS: [(&str, GroupProtocol); 2] = [("jepsen-consumer", GroupProtocol::Consumer), ("jepsen-classic", GroupProtocol::Classic)];
/// How long one poll waits for records.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(300);
/// The members' session timeout (classic; the consumer protocol's is the nodes' setting, the
/// same): a crashed member's partitions move after about this long.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(super::cluster::GROUP_SESSION_TIMEOUT_MS as u64);
/// The classic members' heartbeat period.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Per poll: the chance the member crashes (about one crash per member every 50 polls).
pub const CRASH_PROBABILITY: f64 = 0.02;
/// Per poll: the chance the member reads its group's committed offsets.
pub const FETCH_PROBABILITY: f64 = 0.1;
/// Most polls one rebalance op stays open waiting for its start positions; then it ends `info`.
pub const REBALANCE_POLLS_MAX: u32 = 20;
/// Per poll: the chance the member sends a zombie commit (see [`zombie_commit_step`]).
pub const ZOMBIE_PROBABILITY: f64 = 0.05;
/// Most attempts (fresh processes) of the final fetch of a group's committed offsets.
pub const FINAL_FETCH_ATTEMPTS_MAX: u32 = 10;

fn client_protocol(protocol: GroupProtocol) -> ClientProtocol {
    match protocol {
        GroupProtocol::Consumer => ClientProtocol::Consumer,
        GroupProtocol::Classic => ClientProtocol::Classic,
    }
}

/// The wire name of a definite error's code, for a `fail` op's `error`.
fn error_name(error: &ClientError) -> String {
    match error {
        ClientError::Server { code, .. } => format!("{code:?}"),
        ClientError::NotMember { .. } => "NOT_MEMBER".to_string(),
        other => other.to_string(),
    }
}

/// `--regex`: a topic whose name holds a match of the test topic's pattern without being one;
/// a coordinator that matches anywhere in a name hands its partition out (C8).
pub fn decoy_topic(topic: &str) -> String {
    format!("decoy-{topic}")
}

/// A rebalance op being recorded.
#[derive(Default)]
struct PendingRebalance {
    handle: Option<OpHandle>,
    assigned: BTreeSet<Key>,
    /// Partitions assigned of topics other than the test topic (C8 checks them).
    other_topics: BTreeMap<String, Vec<u32>>,
    revoked: BTreeSet<Key>,
    lost: BTreeSet<Key>,
    starts: BTreeMap<Key, Offset>,
    member: Option<String>,
    epoch: Option<u64>,
    /// A key both given and taken in one batch: the op cannot say which came first.
    conflict: bool,
    polls: u32,
}

/// What a member process has open in the history, shared with its rebalance listener.
struct MemberLog {
    recorder: Arc<Recorder>,
    process: Process,
    group: String,
    /// The test topic: its partitions are the keys.
    topic: String,
    member: Option<String>,
    poll: Option<OpHandle>,
    rebalance: Option<PendingRebalance>,
    /// The member id and epoch the last ok rebalance op gave this process.
    given: Option<(String, u64)>,
    /// The keys it holds, with the offsets of its last ok commit of each.
    committed: BTreeMap<Key, Option<Offset>>,
}

impl MemberLog {
    /// A callback ran: the poll so far returned nothing; the rebalance op starts (once per batch).
    fn change(&mut self, partitions: &BTreeSet<TopicPartition>, kind: OpF, lost: bool) {
        let keys: BTreeSet<Key> = partitions.iter().filter(|(topic, _)| *topic == self.topic).map(|(_, p)| u64::from(*p)).collect();
        let others: Vec<&TopicPartition> = partitions.iter().filter(|(topic, _)| *topic != self.topic).collect();
        if self.rebalance.is_none() {
            let mut history = self.recorder.history();
            if let Some(poll) = self.poll.take() {
                history.ok(poll, OpValue::Poll(Poll::default())).expect("completes its own invoke");
            }
            let asked = Rebalance { group: self.group.clone(), member: self.member.clone(), ..Rebalance::default() };
            let handle = history.invoke(self.process, OpF::Rebalance, OpValue::Rebalance(asked)).expect("the member's poll was completed");
            self.rebalance = Some(PendingRebalance { handle: Some(handle), ..PendingRebalance::default() });
        }
        let r = self.rebalance.as_mut().expect("started above");
        match (kind, lost) {
            (OpF::Subscribe, _) => {
                r.conflict |= keys.iter().any(|k| r.revoked.contains(k) || r.lost.contains(k));
                r.assigned.extend(keys);
                for (topic, partition) in others {
                    r.other_topics.entry(topic.clone()).or_default().push(*partition);
                }
            }
            (_, false) => {
                r.conflict |= keys.iter().any(|k| r.assigned.contains(k));
                r.revoked.extend(keys);
            }
            (_, true) => {
                r.conflict |= keys.iter().any(|k| r.assigned.contains(k));
                r.lost.extend(keys);
            }
        }
    }
}

struct Listener(Arc<Mutex<MemberLog>>);

impl Listener {
    fn log(&self) -> std::sync::MutexGuard<'_, MemberLog> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.log().change(partitions, OpF::Rebalance, false);
    }
    fn on_partitions_assigned(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.log().change(partitions, OpF::Subscribe, false);
    }
    fn on_partitions_lost(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.log().change(partitions, OpF::Rebalance, true);
    }
}

/// How one step of a member ended.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Go,
    /// The process is retired (an `info` op): drop the consumer, start a new process.
    Retired,
    /// The consumer is dropped without a retiring op: recorded as a crash (which it is, to the
    /// group), then a new process.
    Abandoned,
}

fn member_config(target: &WorkloadTarget, group: &str, protocol: GroupProtocol, process: Process) -> ConsumerConfig {
    ConsumerConfig {
        cluster: cluster_config(target, format!("jepsen-member-{process}")),
        wait_ms_max: 200,
        group_id: Some(group.to_string()),
        group_protocol: client_protocol(protocol),
        session_timeout: SESSION_TIMEOUT,
        heartbeat_interval: HEARTBEAT_INTERVAL,
        max_poll_interval: Duration::from_secs(30),
        enable_auto_commit: false,
        group_offset_reset: OffsetReset::Earliest,
        metadata_refresh_interval: Duration::from_secs(2),
        ..ConsumerConfig::default()
    }
}

/// One group member worker: a process joins `group`, polls, commits and crashes; the next
/// process takes its place, until `stop`.
pub async fn member_worker(
    recorder: Arc<Recorder>,
    target: WorkloadTarget,
    (group, protocol): (&'static str, GroupProtocol),
    regex: bool,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while !*stop.borrow() {
        let process = recorder.new_process();
        let Ok(mut consumer) = Consumer::new(&target.bootstrap(), member_config(&target, group, protocol, process)) else {
            if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
                return;
            }
            continue;
        };
        let log = Arc::new(Mutex::new(MemberLog {
            recorder: recorder.clone(),
            process,
            group: group.to_string(),
            topic: target.topic.clone(),
            member: None,
            poll: None,
            rebalance: None,
            given: None,
            committed: BTreeMap::new(),
        }));
        consumer.set_rebalance_listener(Box::new(Listener(log.clone()))).expect("a group consumer");
        // `--regex`: the consumer-protocol group names the test topic by a pattern (whole-name
        // matches only: the decoy topic must not be assigned).
        let pattern = (regex && protocol == GroupProtocol::Consumer).then(|| regex::escape(&target.topic));
        let subscribe = match &pattern {
            Some(pattern) => {
                Subscribe { group: group.to_string(), topics: Vec::new(), pattern: Some(pattern.clone()), keys: target.all_keys() }
            }
            None => Subscribe { group: group.to_string(), topics: vec![target.topic.clone()], pattern: None, keys: target.all_keys() },
        };
        let handle = recorder.history().invoke(process, OpF::Subscribe, OpValue::Subscribe(subscribe.clone())).expect("a new process");
        let subscribed = match &pattern {
            Some(pattern) => consumer.subscribe_pattern(pattern),
            None => consumer.subscribe([target.topic.clone()]),
        };
        let joined = subscribed.is_ok();
        {
            let mut history = recorder.history();
            if joined { history.ok(handle, OpValue::Subscribe(subscribe)) } else { history.fail(handle, OpValue::Subscribe(subscribe)) }
                .expect("completes its own invoke");
        }
        while joined && !*stop.borrow() {
            if rng.gen_bool(CRASH_PROBABILITY) {
                // F-K1: dropped without leaving; its partitions move after the session timeout.
                recorder.history().crash(process).expect("a crash always fits");
                break;
            }
            match poll_step(&log, &mut consumer, &target).await {
                Step::Go => {}
                Step::Retired => break,
                Step::Abandoned => {
                    recorder.history().crash(process).expect("a crash always fits");
                    break;
                }
            }
            // A rebalance op still waiting for its start positions keeps the process busy.
            if log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).rebalance.is_some() {
                continue;
            }
            if rng.gen_bool(FETCH_PROBABILITY) && fetch_step(&recorder, process, group, &consumer, &target).await == Err(Step::Retired) {
                break;
            }
            if rng.gen_bool(ZOMBIE_PROBABILITY) && zombie_commit_step(&log, &target).await == Step::Retired {
                break;
            }
        }
        drop(consumer);
        if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
            return;
        }
    }
}

/// One poll (and the rebalance it may carry), then a commit of what it returned.
async fn poll_step(log: &Arc<Mutex<MemberLog>>, consumer: &mut Consumer, target: &WorkloadTarget) -> Step {
    let lock = || log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    {
        let mut log = lock();
        log.member = consumer.group_member().map(|identity| identity.member_id);
        if log.rebalance.is_none() {
            let handle = log.recorder.history().invoke_poll(log.process).expect("a member has one op at a time");
            log.poll = Some(handle);
        }
    }
    let outcome = tokio::time::timeout(POLL_TIMEOUT + OP_TIMEOUT_MARGIN, consumer.poll(POLL_TIMEOUT)).await;
    let (events, _) = consumer.take_group_events();
    // No await while the log is locked: recording a poll's outcome is one synchronous step.
    let decided = record_poll(&mut lock(), outcome, events);
    let (recorder, process, group, next) = match decided {
        Ok(commit) => commit,
        Err(step) => return step,
    };
    let (step, applied) = commit_step(&recorder, process, &group, consumer, next, target).await;
    if let Some(applied) = applied {
        let mut log = lock();
        for (key, offset) in applied {
            if let Some(committed) = log.committed.get_mut(&key) {
                *committed = Some(offset);
            }
        }
    }
    step
}

/// What to commit after a poll: (recorder, process, group, offsets).
type CommitDue = (Arc<Recorder>, Process, String, BTreeMap<TopicPartition, u64>);

/// Records what a poll did (the rebalance it carried, its records); `Ok` with what to commit
/// next, or how the process goes on.
fn record_poll(
    log: &mut MemberLog,
    outcome: Result<Result<Vec<odradek_client::ConsumerRecord>, ClientError>, tokio::time::error::Elapsed>,
    events: Vec<GroupEvent>,
) -> Result<CommitDue, Step> {
    let recorder = log.recorder.clone();
    let process = log.process;
    let group = log.group.clone();
    if let Some(r) = log.rebalance.as_mut() {
        r.polls += 1;
        for event in events {
            match event {
                GroupEvent::Assigned { member_id, epoch, positions, .. } => {
                    let topic = &log.topic;
                    r.starts.extend(positions.into_iter().filter(|((t, _), _)| t == topic).map(|((_, p), offset)| (u64::from(p), offset)));
                    r.member = Some(member_id);
                    r.epoch = u64::try_from(epoch).ok();
                }
                GroupEvent::Revoked { member_id, epoch, .. } | GroupEvent::Lost { member_id, epoch, .. } => {
                    r.member.get_or_insert(member_id);
                    if r.epoch.is_none() {
                        r.epoch = u64::try_from(epoch).ok();
                    }
                }
                GroupEvent::Commit(_) => {} // the harness records its own commits
            }
        }
        let positioned = r.assigned.iter().all(|k| r.starts.contains_key(k));
        let failed = !matches!(outcome, Ok(Ok(_)));
        if r.conflict || (!positioned && (r.polls >= REBALANCE_POLLS_MAX || outcome.is_err())) {
            let r = log.rebalance.take().expect("pending");
            let value = Rebalance { group: group.clone(), member: r.member, ..Rebalance::default() };
            recorder.history().info(r.handle.expect("invoked"), OpValue::Rebalance(value)).expect("completes its own invoke");
            return Err(Step::Retired);
        }
        if positioned {
            let r = log.rebalance.take().expect("pending");
            let start = r
                .assigned
                .iter()
                .map(|k| {
                    let offset = r.starts[k];
                    // Never committed: 0 is the reset policy's (earliest) answer to "nothing committed".
                    let from = if offset == 0 { StartFrom::Reset } else { StartFrom::Committed };
                    (*k, StartPosition { offset, from, committed: None })
                })
                .collect();
            let protocol = GROUPS.iter().find(|(name, _)| *name == group).map(|(_, p)| *p);
            let value = Rebalance {
                group: group.clone(),
                member: r.member,
                protocol,
                epoch: r.epoch,
                assigned: r.assigned.into_iter().collect(),
                revoked: r.revoked.into_iter().collect(),
                lost: r.lost.into_iter().collect(),
                start,
                other_topics: r.other_topics,
                ..Rebalance::default()
            };
            for key in value.revoked.iter().chain(&value.lost) {
                log.committed.remove(key);
            }
            for key in &value.assigned {
                log.committed.insert(*key, None);
            }
            if let (Some(member), Some(epoch)) = (&value.member, value.epoch) {
                log.given = Some((member.clone(), epoch));
            }
            recorder.history().ok(r.handle.expect("invoked"), OpValue::Rebalance(value)).expect("completes its own invoke");
        } else if failed {
            return Err(Step::Go); // the positions come in a later poll, inside the same op
        }
    }
    let records = match outcome {
        Ok(Ok(records)) => records,
        Ok(Err(error)) if error.is_definite() => {
            if let Some(poll) = log.poll.take() {
                recorder.history().fail(poll, OpValue::Poll(Poll::default())).expect("completes its own invoke");
            }
            if error.is_retriable() {
                return Err(Step::Go);
            }
            // The member stopped (its machine's fatal error, returned by every poll from now on):
            // a correct cluster never does that to a member. The process is abandoned.
            recorder.note_problem(format!("a member of group {group:?} (process {process}) stopped: {error}"));
            return Err(Step::Abandoned);
        }
        Ok(Err(_)) => {
            if let Some(poll) = log.poll.take() {
                recorder.history().info(poll, OpValue::Poll(Poll::default())).expect("completes its own invoke");
                return Err(Step::Retired);
            }
            return Err(Step::Go); // nothing open: a failed poll moves no position
        }
        Err(_) => {
            // Cancelled inside: the consumer may apply some changes again, which the listener
            // would record twice. The process goes, whatever it had open.
            if let Some(poll) = log.poll.take() {
                recorder.history().info(poll, OpValue::Poll(Poll::default())).expect("completes its own invoke");
                return Err(Step::Retired);
            }
            return Err(Step::Abandoned);
        }
    };
    if log.rebalance.is_some() {
        // Records while a start position is unknown: the consumer never does that.
        assert!(records.is_empty(), "a poll returned records before every assigned partition had its start position");
        return Err(Step::Go);
    }
    let mut poll = Poll::default();
    let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for record in records.iter().filter(|record| record.topic == log.topic) {
        let value = record.value.as_deref().and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse().ok());
        poll.records.entry(u64::from(record.partition)).or_default().push((record.offset, value.unwrap_or(u64::MAX)));
        next.insert((record.topic.clone(), record.partition), record.offset + 1);
    }
    {
        let mut history = recorder.history();
        let handle = match log.poll.take() {
            Some(handle) => handle,
            None if records.is_empty() => return Err(Step::Go),
            None => history.invoke_poll(process).expect("the rebalance op completed"),
        };
        history.ok(handle, OpValue::Poll(poll)).expect("completes its own invoke");
    }
    if next.is_empty() {
        return Err(Step::Go);
    }
    Ok((recorder, process, group, next))
}

/// A zombie's commit (C5's teeth on real servers): the member commits again the offsets of its
/// last ok commit of the keys it holds, but with the epoch (consumer protocol: member epoch;
/// classic: generation) before the one its last rebalance gave it, as a member that missed
/// that rebalance would. Sent through the client's offset-commit call with that identity (the
/// consumer always commits with its current one). A correct coordinator refuses it
/// (STALE_MEMBER_EPOCH, ILLEGAL_GENERATION); one that takes it fails C5.
async fn zombie_commit_step(log: &Arc<Mutex<MemberLog>>, target: &WorkloadTarget) -> Step {
    let (recorder, process, group, member, epoch, offsets) = {
        let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((member, epoch)) = log.given.clone() else { return Step::Go };
        let offsets: BTreeMap<Key, Offset> = log.committed.iter().filter_map(|(k, o)| o.map(|o| (*k, o))).collect();
        if epoch < 2 || offsets.is_empty() {
            return Step::Go;
        }
        (log.recorder.clone(), log.process, log.group.clone(), member, epoch - 1, offsets)
    };
    let commit = Commit {
        group: group.clone(),
        offsets: offsets.clone(),
        auto: false,
        member: Some(member.clone()),
        epoch: Some(epoch),
        error: None,
    };
    let Ok(cluster) = odradek_client::ClusterSession::new(&target.bootstrap(), cluster_config(target, format!("jepsen-zombie-{process}")))
    else {
        return Step::Go;
    };
    let Ok(coordinator) = odradek_client::group::coordinator::Coordinator::new(cluster, &group) else { return Step::Go };
    let identity = odradek_client::group::CommitIdentity { member_id: member, epoch: i32::try_from(epoch).expect("epochs fit in i32") };
    let partitions: BTreeMap<TopicPartition, u64> = offsets.iter().map(|(k, o)| ((target.topic.clone(), *k as u32), *o)).collect();
    let handle = recorder.history().invoke(process, OpF::Commit, OpValue::Commit(commit.clone())).expect("a member has one op at a time");
    let deadline = tokio::time::Instant::now() + OP_TIMEOUT_MARGIN;
    let outcome = tokio::time::timeout(
        OP_TIMEOUT_MARGIN * 2,
        odradek_client::group::offsets::commit(&coordinator, Some(&identity), None, &partitions, Duration::from_secs(3), deadline),
    )
    .await;
    let mut history = recorder.history();
    match outcome {
        Ok(Ok(())) => {
            history.ok(handle, OpValue::Commit(commit)).expect("completes its own invoke");
            Step::Go
        }
        Ok(Err(error)) if error.is_definite() => {
            history.fail(handle, OpValue::Commit(Commit { error: Some(error_name(&error)), ..commit })).expect("completes its own invoke");
            Step::Go
        }
        Ok(Err(_)) | Err(_) => {
            history.info(handle, OpValue::Commit(commit)).expect("completes its own invoke");
            Step::Retired
        }
    }
}

/// Commits the offsets after what the last poll returned; with them, if the commit was ok.
async fn commit_step(
    recorder: &Recorder,
    process: Process,
    group: &str,
    consumer: &mut Consumer,
    next: BTreeMap<TopicPartition, u64>,
    target: &WorkloadTarget,
) -> (Step, Option<BTreeMap<Key, Offset>>) {
    assert!(next.keys().all(|(topic, _)| topic == &target.topic) && next.values().all(|&o| o > 0), "offsets after returned records");
    let identity = consumer.group_member();
    let commit = Commit {
        group: group.to_string(),
        offsets: next.iter().map(|((_, p), o)| (u64::from(*p), *o)).collect(),
        auto: false,
        member: identity.as_ref().map(|i| i.member_id.clone()),
        epoch: identity.as_ref().and_then(|i| u64::try_from(i.epoch).ok()),
        error: None,
    };
    let handle = recorder.history().invoke(process, OpF::Commit, OpValue::Commit(commit.clone())).expect("a member has one op at a time");
    let outcome = tokio::time::timeout(OP_TIMEOUT_MARGIN * 2, consumer.commit_offsets(next)).await;
    let mut history = recorder.history();
    match outcome {
        Ok(Ok(_)) => {
            let applied = commit.offsets.clone();
            history.ok(handle, OpValue::Commit(commit)).expect("completes its own invoke");
            (Step::Go, Some(applied))
        }
        Ok(Err(error)) if error.is_definite() => {
            history.fail(handle, OpValue::Commit(Commit { error: Some(error_name(&error)), ..commit })).expect("completes its own invoke");
            (Step::Go, None)
        }
        Ok(Err(error)) => {
            history.info(handle, OpValue::Commit(Commit { error: Some(error.to_string()), ..commit })).expect("completes its own invoke");
            (Step::Retired, None)
        }
        Err(_) => {
            history.info(handle, OpValue::Commit(commit)).expect("completes its own invoke");
            (Step::Retired, None)
        }
    }
}

/// A `fetch-committed` of every key: `Ok` if it ended ok, else how the process goes on. The
/// future borrows nothing from the consumer (which is not `Sync`): the fetch is built first.
fn fetch_step<'a>(
    recorder: &'a Recorder,
    process: Process,
    group: &'a str,
    consumer: &Consumer,
    target: &WorkloadTarget,
) -> impl std::future::Future<Output = Result<(), Step>> + Send + use<'a> {
    let keys = target.all_keys();
    let partitions: BTreeSet<TopicPartition> = keys.iter().map(|k| (target.topic.clone(), *k as u32)).collect();
    let committed = consumer.committed(&partitions);
    fetch_recorded(recorder, process, group, keys, committed)
}

async fn fetch_recorded(
    recorder: &Recorder,
    process: Process,
    group: &str,
    keys: Vec<Key>,
    committed: impl std::future::Future<Output = Result<BTreeMap<TopicPartition, Option<u64>>, ClientError>> + Send,
) -> Result<(), Step> {
    let asked = FetchCommitted { group: group.to_string(), keys, ..FetchCommitted::default() };
    let handle = recorder.history().invoke(process, OpF::FetchCommitted, OpValue::FetchCommitted(asked.clone())).expect("one op at a time");
    let outcome = tokio::time::timeout(OP_TIMEOUT_MARGIN * 2, committed).await;
    let mut history = recorder.history();
    match outcome {
        Ok(Ok(committed)) => {
            let offsets = committed.into_iter().map(|((_, p), offset)| (u64::from(p), offset)).collect();
            history.ok(handle, OpValue::FetchCommitted(FetchCommitted { offsets, ..asked })).expect("completes its own invoke");
            Ok(())
        }
        Ok(Err(error)) if error.is_definite() => {
            let failed = FetchCommitted { error: Some(error_name(&error)), ..asked };
            history.fail(handle, OpValue::FetchCommitted(failed)).expect("completes its own invoke");
            Err(Step::Go)
        }
        Ok(Err(_)) | Err(_) => {
            history.info(handle, OpValue::FetchCommitted(asked)).expect("completes its own invoke");
            Err(Step::Retired)
        }
    }
}

/// After the final drain: every group's committed offsets, read by a fresh process (C1: every
/// acked commit survived the faults). Returns an error if some group could not be read.
pub async fn final_fetch(recorder: &Arc<Recorder>, target: &WorkloadTarget) -> Result<(), String> {
    for (group, protocol) in GROUPS {
        let mut fetched = false;
        for _ in 0..FINAL_FETCH_ATTEMPTS_MAX {
            let process = recorder.new_process();
            let Ok(consumer) = Consumer::new(&target.bootstrap(), member_config(target, group, protocol, process)) else { continue };
            if fetch_step(recorder, process, group, &consumer, target).await.is_ok() {
                fetched = true;
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        if !fetched {
            return Err(format!("the final fetch of group {group:?}'s committed offsets failed {FINAL_FETCH_ATTEMPTS_MAX} times"));
        }
    }
    Ok(())
}

/// The node that coordinates `group` now, as its coordinator says (None if nobody answers).
pub async fn coordinator_of(target: &WorkloadTarget, group: &str) -> Option<u64> {
    let admin = odradek_client::Admin::with_cluster(
        odradek_client::ClusterSession::new(&target.bootstrap(), cluster_config(target, "jepsen-nemesis".into())).ok()?,
    );
    let described = tokio::time::timeout(OP_TIMEOUT_MARGIN, admin.describe_group(group)).await.ok()?.ok()?;
    (described.coordinator != 0).then_some(described.coordinator)
}

/// `--offset-delete`: pause between two deletions.
pub const OFFSET_DELETE_INTERVAL: Duration = Duration::from_millis(1500);

/// `--offset-delete` (C9, see the module comment): until stopped, every
/// [`OFFSET_DELETE_INTERVAL`] one `offset-delete` op of a random group of [`GROUPS`] and a
/// random non-empty set of keys, sent to the group's coordinator as `kafka` (the nodes' Kafka
/// addresses) names it. No op is recorded when no coordinator was found.
pub async fn offset_delete_worker(
    recorder: Arc<Recorder>,
    target: WorkloadTarget,
    kafka: Vec<String>,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut process = recorder.new_process();
    let access = raw::Access::of(&target);
    while !sleep_or_stop(OFFSET_DELETE_INTERVAL, &mut stop).await {
        let group = GROUPS[rng.gen_range(0..GROUPS.len())].0;
        let mut keys: Vec<Key> = target.all_keys().into_iter().filter(|_| rng.gen_bool(0.5)).collect();
        if keys.is_empty() {
            keys.push(rng.gen_range(0..u64::from(target.keys)));
        }
        let asked_at = &kafka[rng.gen_range(0..kafka.len())];
        let Some(coordinator) = raw::find_coordinator(asked_at, &access, group, OP_TIMEOUT_MARGIN).await else { continue };
        let asked = OffsetDelete { group: group.to_string(), keys: keys.clone(), ..OffsetDelete::default() };
        let handle = recorder.history().invoke(process, OpF::OffsetDelete, OpValue::OffsetDelete(asked.clone())).expect("one op at a time");
        let outcome = raw::offset_delete(&coordinator, &access, group, &target.topic, &keys, OP_TIMEOUT_MARGIN).await;
        let mut history = recorder.history();
        let retire = matches!(outcome, raw::Deleted::Unknown(_));
        match outcome {
            raw::Deleted::Answered { deleted, refused } => {
                history.ok(handle, OpValue::OffsetDelete(OffsetDelete { deleted, refused, ..asked }))
            }
            raw::Deleted::Failed(error) => history.fail(handle, OpValue::OffsetDelete(OffsetDelete { error: Some(error), ..asked })),
            raw::Deleted::Unknown(error) => history.info(handle, OpValue::OffsetDelete(OffsetDelete { error: Some(error), ..asked })),
        }
        .expect("completes its own invoke");
        drop(history);
        if retire {
            process = recorder.new_process();
        }
    }
}
