//! The client side of a run: producer and consumer workers (one tokio task each, each with its
//! own client), the leader observer, and the final drain. Every client action is recorded in the
//! shared history as invoke + ok / fail / info.
//!
//! Rules kept (CHECKLISTS "Harness and simulator requirements"):
//! * values are unique across the run (one global counter); a record's bytes are its value in
//!   decimal;
//! * a definite error (`ClientError::is_definite`) completes the op `fail`, anything else (an
//!   indefinite error, or no answer within the harness's own bound) `info`; a process that gets
//!   `info` is retired and the worker carries on as a new process with a new client;
//! * a poll that fails is followed by a `rewind` (seek to the positions the consumer had, which
//!   a failed poll does not move); a poll that ends `info` retires the consumer.
//!
//! Every op is bounded: sends by [`SEND_TIMEOUT`], polls by [`POLL_TIMEOUT`] plus
//! [`OP_TIMEOUT_MARGIN`], seeks and metadata calls by [`OP_TIMEOUT_MARGIN`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use odradek_client::{
    Admin, ClientError, ClusterConfig, ConnectionConfig, Consumer, ConsumerConfig, Offset as SeekTo, Producer, ProducerConfig,
    ProducerRecord,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::checker::LogRecord;
use crate::history::{Acks, DeleteRecords, HistoryBuilder, Key, Keys, Offset, OpF, OpValue, Poll, Process, Send, Value};

/// Longest a send may take before the harness records it `info` (the producer's own delivery
/// timeout is shorter, so this only fires if the client hangs).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(12);
/// How long one poll waits for records.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Added to client-side bounds for the harness's own timer.
pub const OP_TIMEOUT_MARGIN: Duration = Duration::from_secs(6);
/// Pause between a failed client construction or retirement and the next attempt.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How often the observer asks for the partitions' leaders.
pub const OBSERVE_INTERVAL: Duration = Duration::from_millis(250);
/// Longest the final drain may take (T_drain).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared recording side of a run.
pub struct Recorder {
    history: Mutex<HistoryBuilder>,
    /// Highest acks=1 ack offset per key (locked only under `history`).
    ack_offset_max: Mutex<BTreeMap<Key, Offset>>,
    process_next: AtomicU64,
    value_next: AtomicU64,
    /// From the start of the final drain: every record it read, by (key, offset), with its
    /// producer — the committed log, for the checker's P1, P3 and P4.
    dump: Mutex<Option<BTreeMap<(Key, Offset), LogRecord>>>,
    /// Problems a worker saw that the history cannot hold (a group member that stopped on a
    /// fatal error), at most [`WORKER_PROBLEMS_MAX`]; they fail the run.
    problems: Mutex<Vec<String>>,
}

/// Most worker problems kept (the first ones; later ones are counted in the last line).
pub const WORKER_PROBLEMS_MAX: usize = 20;

impl Recorder {
    pub fn new(started: Instant) -> Recorder {
        let clock = move || u64::try_from(started.elapsed().as_nanos()).expect("a run lasts less than 584 years");
        Recorder {
            history: Mutex::new(HistoryBuilder::new(clock)),
            ack_offset_max: Mutex::new(BTreeMap::new()),
            process_next: AtomicU64::new(0),
            value_next: AtomicU64::new(1),
            dump: Mutex::new(None),
            problems: Mutex::new(Vec::new()),
        }
    }

    /// Notes a problem for the run's notes (bounded by [`WORKER_PROBLEMS_MAX`]).
    pub fn note_problem(&self, problem: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if problems.len() < WORKER_PROBLEMS_MAX {
            problems.push(problem);
        } else if problems.len() == WORKER_PROBLEMS_MAX {
            problems.push(format!("... more worker problems after the first {WORKER_PROBLEMS_MAX}"));
        }
    }

    /// The problems noted so far.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The records the final drain read (None if it never started), in log order per key.
    pub fn take_log_dump(&self) -> Option<Vec<LogRecord>> {
        let dump = self.dump.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()?;
        Some(dump.into_values().collect())
    }

    /// The history, locked. Recording never awaits, so the lock is held only for one op.
    pub fn history(&self) -> MutexGuard<'_, HistoryBuilder> {
        self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn new_process(&self) -> Process {
        self.process_next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn new_value(&self) -> Value {
        self.value_next.fetch_add(1, Ordering::Relaxed)
    }

    pub fn into_history(self) -> crate::history::History {
        self.history.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).finish()
    }
}

/// What every worker needs to reach the cluster.
#[derive(Clone, Debug)]
pub struct WorkloadTarget {
    pub bootstrap: Vec<String>,
    pub topic: String,
    pub keys: u32,
    pub acks: Acks,
    /// The workers' TLS (None: plaintext).
    pub tls: Option<odradek_client::tls::ClientTls>,
    /// The workload's login in a secure run.
    pub sasl: Option<odradek_client::connection::SaslCredentials>,
    /// The nodes' Kafka addresses with `--client kafka` ([`super::kafka`]): producers and
    /// consumers go through them; None: the native client.
    pub kafka: Option<Vec<String>>,
}

impl WorkloadTarget {
    pub(crate) fn bootstrap(&self) -> Vec<&str> {
        self.bootstrap.iter().map(String::as_str).collect()
    }

    pub(crate) fn all_keys(&self) -> Vec<Key> {
        (0..u64::from(self.keys)).collect()
    }

    fn assignment(&self) -> Vec<(String, u32)> {
        (0..self.keys).map(|k| (self.topic.clone(), k)).collect()
    }
}

/// Short client bounds: a fault must turn into an op outcome within seconds, not minutes.
pub fn cluster_config(target: &WorkloadTarget, client_id: String) -> ClusterConfig {
    ClusterConfig {
        client_id,
        connection: ConnectionConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            tls: target.tls.clone(),
            sasl: target.sasl.clone(),
            ..Default::default()
        },
        retry_backoff: Duration::from_millis(50),
        retry_backoff_max: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(5),
    }
}

fn producer_config(target: &WorkloadTarget, acks: Acks, process: Process) -> ProducerConfig {
    let (acks, idempotence) = match acks {
        Acks::All => (odradek_client::Acks::All, true),
        Acks::One => (odradek_client::Acks::Leader, false),
        Acks::Zero => (odradek_client::Acks::None, false),
    };
    ProducerConfig {
        cluster: cluster_config(target, format!("jepsen-producer-{process}")),
        acks,
        idempotence,
        linger: Duration::from_millis(1),
        request_timeout: Duration::from_secs(3),
        delivery_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// Sleeps `duration` unless `stop` turns true first; returns whether the run is stopping.
pub async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// One producer worker: sends one value at a time to `key`, `interval` apart (start to start).
/// One key per worker (not a random key per send): an unavailable partition then stalls only
/// its own workers, and the plots show partial availability instead of every worker ending up
/// blocked on the one stuck partition.
pub async fn producer_worker(
    recorder: Arc<Recorder>,
    target: WorkloadTarget,
    key: u32,
    interval: Duration,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    // Start the workers out of step so their sends interleave.
    if sleep_or_stop(interval.mul_f64(rng.gen::<f64>()), &mut stop).await {
        return;
    }
    while !*stop.borrow() {
        let process = recorder.new_process();
        let producer = match tokio::time::timeout(
            OP_TIMEOUT_MARGIN,
            Producer::new(&target.bootstrap(), producer_config(&target, target.acks, process)),
        )
        .await
        {
            Ok(Ok(producer)) => producer,
            _ => {
                // No op was recorded for this process: it simply never acts.
                if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let mut tick = Instant::now();
        loop {
            tick += interval;
            let now = Instant::now();
            if tick < now {
                tick = now; // Behind schedule (a slow op): do not burst to catch up.
            }
            if sleep_or_stop(tick - now, &mut stop).await {
                let _ = tokio::time::timeout(OP_TIMEOUT_MARGIN, producer.close()).await;
                return;
            }
            if !send_one(&recorder, &target, &producer, process, key).await {
                break; // Retired: carry on as a new process.
            }
        }
        let _ = tokio::time::timeout(OP_TIMEOUT_MARGIN, producer.close()).await;
        if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
            return;
        }
    }
}

/// One send op; returns false if it ended `info` (the process is retired).
async fn send_one(recorder: &Recorder, target: &WorkloadTarget, producer: &Producer, process: Process, key: u32) -> bool {
    let value = recorder.new_value();
    let send = Send { key: u64::from(key), values: vec![value], acks: target.acks, producer: None, offsets: None };
    let handle = recorder.history().invoke_send(process, send.clone()).expect("a producer process has one op at a time");
    let record = ProducerRecord::new(target.topic.clone(), value.to_string().into_bytes()).partition(key);
    let outcome = tokio::time::timeout(SEND_TIMEOUT, async { producer.send(record).await?.await }).await;
    let mut history = recorder.history();
    match outcome {
        Ok(Ok(metadata)) => {
            assert_eq!(metadata.partition, key, "the record was sent to the partition it named");
            if let (Acks::One, Some(offset)) = (target.acks, metadata.offset) {
                note_acks1_offset(recorder, &mut history, u64::from(key), offset);
            }
            let offsets = metadata.offset.map(|offset| vec![offset]);
            history.ok(handle, OpValue::Send(Send { offsets, ..send })).expect("completes its own invoke");
            true
        }
        Ok(Err(error)) if error.is_definite() => {
            history.fail(handle, OpValue::Send(send)).expect("completes its own invoke");
            true
        }
        Ok(Err(_)) | Err(_) => {
            history.info(handle, OpValue::Send(send)).expect("completes its own invoke");
            false
        }
    }
}

/// Under acks=1, an ack at or below an offset already acked on the key proves the log was
/// truncated, so a new leader was elected; record that leader change (leader unknown) before
/// the ack, since the observer's sampling may see it only later (and the acks=1 rules L5–L7
/// judge losses by the recorded leader changes).
fn note_acks1_offset(recorder: &Recorder, history: &mut HistoryBuilder, key: Key, offset: Offset) {
    let mut ack_offset_max = recorder.ack_offset_max.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match ack_offset_max.get(&key).copied() {
        Some(max) if offset <= max => {
            history.leader_change(key, None).expect("nemesis ops always fit");
        }
        _ => {
            ack_offset_max.insert(key, offset);
        }
    }
}

/// How a consumer op ended.
enum Ended {
    Ok,
    Fail,
    Info,
}

fn ended<T>(outcome: Result<Result<T, ClientError>, tokio::time::error::Elapsed>) -> (Ended, Option<T>) {
    match outcome {
        Ok(Ok(value)) => (Ended::Ok, Some(value)),
        Ok(Err(error)) if error.is_definite() => (Ended::Fail, None),
        Ok(Err(_)) | Err(_) => (Ended::Info, None),
    }
}

/// A new consumer process: assigned every key, positioned at the beginning. `None` if the
/// process was retired (or could not start) on the way.
async fn new_consumer(recorder: &Recorder, target: &WorkloadTarget, process: Process) -> Option<Consumer> {
    let config = ConsumerConfig {
        cluster: cluster_config(target, format!("jepsen-consumer-{process}")),
        auto_offset_reset: SeekTo::Beginning,
        wait_ms_max: 200,
        // Every fetch behind a read barrier: each poll's high watermark covers every write
        // acknowledged before it began, so L12 a (stale-hw) fails a run.
        fresh_high_watermark: true,
        ..Default::default()
    };
    let mut consumer = Consumer::new(&target.bootstrap(), config).ok()?;
    let keys = OpValue::Keys(Keys { keys: target.all_keys() });
    let handle = recorder.history().invoke(process, OpF::Assign, keys.clone()).expect("a new process is idle");
    let assigned = consumer.assign(target.assignment());
    {
        let mut history = recorder.history();
        if assigned.is_err() {
            history.fail(handle, keys).expect("completes its own invoke");
            return None;
        }
        history.ok(handle, keys).expect("completes its own invoke");
    }
    let positions = (0..target.keys).map(|k| (k, SeekTo::Beginning)).collect();
    match rewind(recorder, target, &mut consumer, process, positions).await {
        Ended::Ok => Some(consumer),
        // A process whose start failed is abandoned (never acts again) rather than retired:
        // the history allows that, and the worker starts afresh.
        Ended::Fail | Ended::Info => None,
    }
}

/// A `rewind` op: seeks each key to its position.
async fn rewind(
    recorder: &Recorder,
    target: &WorkloadTarget,
    consumer: &mut Consumer,
    process: Process,
    positions: Vec<(u32, SeekTo)>,
) -> Ended {
    let keys = OpValue::Keys(Keys { keys: positions.iter().map(|(k, _)| u64::from(*k)).collect() });
    let handle = recorder.history().invoke(process, OpF::Rewind, keys.clone()).expect("a consumer process has one op at a time");
    let outcome = tokio::time::timeout(OP_TIMEOUT_MARGIN, async {
        for (key, position) in positions {
            consumer.seek(&target.topic, key, position).await?;
        }
        Ok(())
    })
    .await;
    let (how, _) = ended(outcome);
    let mut history = recorder.history();
    match how {
        Ended::Ok => history.ok(handle, keys),
        Ended::Fail => history.fail(handle, keys),
        Ended::Info => history.info(handle, keys),
    }
    .expect("completes its own invoke");
    how
}

/// One poll op, and the partition whose position was below its log start when the poll failed
/// with OFFSET_OUT_OF_RANGE (deleted by DeleteRecords or retention): the caller rewinds it to
/// the log start, as a Kafka consumer's `auto.offset.reset=earliest` would.
async fn poll_one(recorder: &Recorder, consumer: &mut Consumer, process: Process) -> (Ended, Option<u32>) {
    let handle = recorder.history().invoke_poll(process).expect("a consumer process has one op at a time");
    let outcome = tokio::time::timeout(POLL_TIMEOUT + OP_TIMEOUT_MARGIN, consumer.poll_with_watermarks(POLL_TIMEOUT)).await;
    let out_of_range = match &outcome {
        Ok(Err(ClientError::OffsetOutOfRange { partition, .. })) => Some(*partition),
        _ => None,
    };
    let (how, polled) = ended(outcome);
    let mut poll = Poll::default();
    let records = polled.map(|polled| {
        // L12: each partition's high watermark as its replica reported it in this poll.
        for ((_, partition), high_watermark) in polled.high_watermarks {
            poll.hw.insert(u64::from(partition), high_watermark);
        }
        polled.records
    });
    let mut dump = recorder.dump.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for record in records.into_iter().flatten() {
        let value = record.value.as_deref().and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<Value>().ok());
        // A record that is not one of ours cannot be written by this harness: u64::MAX is never
        // a value it sends, so the checker reports it as L3 unexpected.
        let value = value.unwrap_or(Value::MAX);
        let key = u64::from(record.partition);
        poll.records.entry(key).or_default().push((record.offset, value));
        if let Some(dump) = dump.as_mut() {
            let producer = record.producer.map(|p| crate::history::Producer {
                pid: p.producer_id as u64,
                epoch: p.producer_epoch as u64,
                seq: p.sequence as u64,
            });
            dump.insert((key, record.offset), LogRecord { partition: key, offset: record.offset, producer });
        }
    }
    drop(dump);
    let mut history = recorder.history();
    match how {
        Ended::Ok => history.ok(handle, OpValue::Poll(poll)),
        Ended::Fail => history.fail(handle, OpValue::Poll(Poll::default())),
        Ended::Info => history.info(handle, OpValue::Poll(Poll::default())),
    }
    .expect("completes its own invoke");
    (how, out_of_range)
}

/// Where a consumer goes on after a failed poll: every key where it was, except the one whose
/// position was deleted (`out_of_range`), which goes to its log start (a rewind op, so the
/// checker's continuity rules know the position jumped).
fn positions_after_failed_poll(target: &WorkloadTarget, consumer: &Consumer, out_of_range: Option<u32>) -> Vec<(u32, SeekTo)> {
    (0..target.keys)
        .filter_map(|k| match out_of_range == Some(k) {
            true => Some((k, SeekTo::Beginning)),
            false => consumer.position(&target.topic, k).map(|p| (k, SeekTo::At(p))),
        })
        .collect()
}

/// Pause after a failed poll (and its rewind) before the next poll.
pub const FAILED_POLL_PAUSE: Duration = Duration::from_millis(50);

/// One consumer worker: polls every key continuously.
pub async fn consumer_worker(recorder: Arc<Recorder>, target: WorkloadTarget, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let process = recorder.new_process();
        let Some(mut consumer) = new_consumer(&recorder, &target, process).await else {
            if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
                return;
            }
            continue;
        };
        while !*stop.borrow() {
            match poll_one(&recorder, &mut consumer, process).await {
                (Ended::Ok, _) => {}
                (Ended::Fail, out_of_range) => {
                    let positions = positions_after_failed_poll(&target, &consumer, out_of_range);
                    if let Ended::Fail | Ended::Info = rewind(&recorder, &target, &mut consumer, process, positions).await {
                        break;
                    }
                    // Without a pause a poll that fails at once (a refused connection) spins:
                    // the long pause-kill run showed 1,800 rewinds a second.
                    if sleep_or_stop(FAILED_POLL_PAUSE, &mut stop).await {
                        return;
                    }
                }
                (Ended::Info, _) => break,
            }
        }
        if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
            return;
        }
    }
}

/// Records a `leader-change` whenever some node reports a partition at a higher Raft term than
/// seen before. Every node is asked for its own view (`describe_node`: the groups it hosts, with
/// the leader and term its replica knows), so a change is seen even if only the nodes on one side
/// of a partition know of it. Sampled every [`OBSERVE_INTERVAL`]: a leadership shorter than that
/// can still be missed, which matters only for the acks=1 rules (L5–L7).
pub async fn leader_observer(recorder: Arc<Recorder>, target: WorkloadTarget, mut stop: watch::Receiver<bool>) {
    let Ok(admin) = odradek_client::ClusterSession::new(&target.bootstrap(), cluster_config(&target, "jepsen-observer".into()))
        .map(Admin::with_cluster)
    else {
        return;
    };
    let mut term_max: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    while !sleep_or_stop(OBSERVE_INTERVAL, &mut stop).await {
        let asks: Vec<_> = target
            .bootstrap
            .iter()
            .map(|address| {
                let (admin, address) = (admin.clone(), address.clone());
                tokio::spawn(async move { tokio::time::timeout(OBSERVE_INTERVAL * 4, admin.describe_node(&address)).await })
            })
            .collect();
        for ask in asks {
            let Ok(Ok(Ok(view))) = ask.await else { continue };
            for partition in view.partitions.iter().filter(|p| p.topic == target.topic) {
                // (term, leader): a higher term, or the leader of a term first seen leaderless.
                let seen = term_max.entry(partition.partition).or_insert((0, 0));
                let now = (partition.term, partition.leader);
                if now.0 > seen.0 || (now.0 == seen.0 && seen.1 == 0 && now.1 != 0) {
                    *seen = now;
                    let leader = (partition.leader != 0).then_some(partition.leader);
                    recorder.history().leader_change(u64::from(partition.partition), leader).expect("nemesis ops always fit");
                }
            }
        }
    }
}

/// Short retention (`--retention`): records, for each key, every log start higher than the last
/// seen (`log-start`; ListOffsets earliest through the partition's leader), every
/// [`OBSERVE_INTERVAL`] until stopped. The checker then requires only the records at or above a
/// key's highest log start (L6, L7, P1–P4), and a consumer whose position retention deleted
/// rewinds to the log start. [`record_log_starts`] runs once more after the final drain.
pub async fn log_start_observer(recorder: Arc<Recorder>, target: WorkloadTarget, mut stop: watch::Receiver<bool>) {
    let Ok(admin) = odradek_client::ClusterSession::new(&target.bootstrap(), cluster_config(&target, "jepsen-log-starts".into()))
        .map(Admin::with_cluster)
    else {
        return;
    };
    let mut seen = BTreeMap::new();
    while !sleep_or_stop(OBSERVE_INTERVAL, &mut stop).await {
        record_log_starts(&recorder, &target, &admin, &mut seen).await;
    }
}

/// One round of [`log_start_observer`]: asks each key's log start once and records the ones that
/// moved past `seen`; returns the keys that did not answer.
pub async fn record_log_starts(recorder: &Recorder, target: &WorkloadTarget, admin: &Admin, seen: &mut BTreeMap<u32, u64>) -> Vec<u32> {
    let mut unanswered = Vec::new();
    for key in 0..target.keys {
        let asked = admin.list_offsets(&target.topic, key, odradek_client::OffsetQuery::Earliest);
        let Ok(Ok(listed)) = tokio::time::timeout(OP_TIMEOUT_MARGIN, asked).await else {
            unanswered.push(key);
            continue;
        };
        let known = seen.entry(key).or_insert(0);
        if listed.offset > *known {
            *known = listed.offset;
            recorder.history().log_start(u64::from(key), listed.offset).expect("nemesis ops always fit");
        }
    }
    unanswered
}

/// After the final drain: every key's log start as it is now, retried within [`DRAIN_TIMEOUT`]
/// (a log start only grows, so this one covers every record retention deleted before or during
/// the drain).
pub async fn final_log_starts(recorder: &Recorder, target: &WorkloadTarget) -> Result<(), String> {
    let admin = odradek_client::ClusterSession::new(&target.bootstrap(), cluster_config(target, "jepsen-log-starts-final".into()))
        .map(Admin::with_cluster)
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut seen = BTreeMap::new();
    loop {
        let unanswered = record_log_starts(recorder, target, &admin, &mut seen).await;
        if unanswered.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no log start of keys {unanswered:?} within {DRAIN_TIMEOUT:?} after the final drain"));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// How long the replicas get to converge after the final drain ([`replicas_converged`]).
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// R7 and R12 b on real processes (`--retention`): after the final drain, every partition's
/// leader must report each of its voters caught up (lag 0) within [`CONVERGE_TIMEOUT`]. The
/// workers are stopped and the network healed, so a replica that retention left behind its
/// peers' log start must have got a snapshot by then; one that never does (a snapshot withheld,
/// a lost install) stays behind for good, which no client sees while the others serve.
pub async fn replicas_converged(target: &WorkloadTarget) -> Result<(), String> {
    let admin = odradek_client::ClusterSession::new(&target.bootstrap(), cluster_config(target, "jepsen-converge".into()))
        .map(Admin::with_cluster)
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        // Per key, the last leader report seen: (its voters behind, as (node, lag)).
        let mut behind: BTreeMap<u32, Vec<(u64, u64)>> = (0..target.keys).map(|key| (key, vec![(0, u64::MAX)])).collect();
        for address in &target.bootstrap {
            let Ok(Ok(view)) = tokio::time::timeout(OP_TIMEOUT_MARGIN, admin.describe_node(address)).await else { continue };
            for partition in view.partitions.iter().filter(|p| p.topic == target.topic && !p.replicas.is_empty()) {
                let lagging = partition.replicas.iter().filter(|r| r.lag > 0).map(|r| (r.node_id, r.lag)).collect();
                behind.insert(partition.partition, lagging);
            }
        }
        behind.retain(|_, lagging| !lagging.is_empty());
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let detail: Vec<String> = behind
                .iter()
                .map(|(key, lagging)| match lagging.as_slice() {
                    [(0, u64::MAX)] => format!("key {key}: no leader reported"),
                    _ => format!("key {key}: voters behind the leader (node, entries) {lagging:?}"),
                })
                .collect();
            return Err(format!("R7: the replicas did not converge within {CONVERGE_TIMEOUT:?} after the drain: {}", detail.join("; ")));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// How often the deleter deletes.
pub const DELETE_INTERVAL: Duration = Duration::from_secs(2);

/// DeleteRecords under faults (`--delete-records`, DR1): every [`DELETE_INTERVAL`] one `delete-records`
/// op on a random key, to a point between half and three quarters of the key's high watermark
/// as ListOffsets latest reports it (so consumers keep most of the log to read). A deletion that
/// ends `info` retires the process, as every op's does.
pub async fn deleter_worker(recorder: Arc<Recorder>, target: WorkloadTarget, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut process = recorder.new_process();
    let mut admin = None;
    while !sleep_or_stop(DELETE_INTERVAL, &mut stop).await {
        if admin.is_none() {
            let config = cluster_config(&target, format!("jepsen-deleter-{process}"));
            admin = odradek_client::ClusterSession::new(&target.bootstrap(), config).ok().map(Admin::with_cluster);
        }
        let Some(admin) = &admin else { continue };
        let key = rng.gen_range(0..target.keys);
        let latest = tokio::time::timeout(OP_TIMEOUT_MARGIN, admin.list_offsets(&target.topic, key, odradek_client::OffsetQuery::Latest));
        let Ok(Ok(latest)) = latest.await else { continue };
        if latest.offset < 4 {
            continue;
        }
        let before = rng.gen_range(latest.offset / 2..=latest.offset * 3 / 4);
        let asked = DeleteRecords { key: u64::from(key), before, log_start: None };
        let handle =
            recorder.history().invoke(process, OpF::DeleteRecords, OpValue::DeleteRecords(asked.clone())).expect("one op at a time");
        let outcome = tokio::time::timeout(OP_TIMEOUT_MARGIN, admin.delete_records(&target.topic, key, Some(before))).await;
        let (how, log_start) = ended(outcome);
        let mut history = recorder.history();
        match how {
            Ended::Ok => history.ok(handle, OpValue::DeleteRecords(DeleteRecords { log_start, ..asked })),
            Ended::Fail => history.fail(handle, OpValue::DeleteRecords(asked)),
            Ended::Info => history.info(handle, OpValue::DeleteRecords(asked)),
        }
        .expect("completes its own invoke");
        drop(history);
        if matches!(how, Ended::Info) {
            process = recorder.new_process();
        }
    }
}

/// The final drain (CHECKLISTS requirement 5): a fresh consumer reads every key from the
/// beginning until it reaches each key's end offset as listed after the heal, retrying with new
/// processes up to [`DRAIN_TIMEOUT`]. Returns whether every key was read to its end.
pub async fn final_drain(recorder: &Recorder, target: &WorkloadTarget) -> Result<(), String> {
    recorder.history().final_drain().expect("nemesis ops always fit");
    *recorder.dump.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(BTreeMap::new());
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    // Default client bounds (not `cluster_config`'s short ones), logged in as the workload.
    let mut config = ClusterConfig::default();
    config.connection.sasl = target.sasl.clone();
    config.connection.tls = target.tls.clone();
    let admin = Admin::with_cluster(odradek_client::ClusterSession::new(&target.bootstrap(), config).map_err(|e| e.to_string())?);
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    while ends.len() < target.keys as usize {
        if Instant::now() > deadline {
            return Err(format!("the final drain could not list the end offsets of every key within {DRAIN_TIMEOUT:?}"));
        }
        for key in 0..target.keys {
            if ends.contains_key(&key) {
                continue;
            }
            let listed =
                tokio::time::timeout(OP_TIMEOUT_MARGIN, admin.list_offsets(&target.topic, key, odradek_client::OffsetQuery::Latest));
            if let Ok(Ok(listed)) = listed.await {
                ends.insert(key, listed.offset);
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    'processes: while Instant::now() < deadline {
        let process = recorder.new_process();
        let Some(mut consumer) = new_consumer(recorder, target, process).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        loop {
            let caught_up = ends.iter().all(|(k, end)| consumer.position(&target.topic, *k).is_some_and(|p| p >= *end));
            if caught_up {
                return Ok(());
            }
            if Instant::now() > deadline {
                break 'processes;
            }
            match poll_one(recorder, &mut consumer, process).await {
                (Ended::Ok, _) => {}
                (Ended::Fail, out_of_range) => {
                    let positions = positions_after_failed_poll(target, &consumer, out_of_range);
                    if let Ended::Fail | Ended::Info = rewind(recorder, target, &mut consumer, process, positions).await {
                        continue 'processes;
                    }
                }
                (Ended::Info, _) => continue 'processes,
            }
        }
    }
    Err(format!("the final drain did not reach the end offsets {ends:?} within {DRAIN_TIMEOUT:?}"))
}
