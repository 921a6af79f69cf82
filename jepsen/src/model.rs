//! A seeded, in-memory model of a correct partitioned log, driven by producers and consumers, that
//! records a history through [`HistoryBuilder`]. Its histories must pass the checker; with a
//! planted [`Bug`] they must fail with the matching anomaly. Used by tests, the bench, and the
//! simulator's checker tests.
//!
//! The model applies each op at its completion (between invoke and completion, so it is
//! linearizable), assigns dense offsets, appends batches atomically, reports the HW as the log
//! length, and ends with a final drain by fresh consumers that seek to the beginning.
//!
//! [`groups`] is the same for consumer groups (C1–C7).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::LogRecord;
use crate::history::{
    Acks, Fault, History, HistoryBuilder, Key, Keys, Offset, OpF, OpHandle, OpValue, Poll, Process, Producer, Send, Value,
};

pub mod groups;

/// A bug planted once, about halfway through the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Ack a batch without appending it (expect L6 lost-write).
    DropAckedWrite,
    /// Append a batch twice under one producer sequence (expect L2 duplicate and P1).
    DuplicateAppend,
    /// Swap an acked record with the one before it (expect L5 ack-offset-mismatch).
    ReorderRecords,
    /// A consumer skips one record between polls (expect L8 poll-skip).
    SkipOnPoll,
    /// One poll reports a HW at or below an offset acked before it was invoked (expect L12 stale-hw).
    StaleHw,
    /// A send is answered with a definite failure but appended anyway (expect L4 G1a).
    AppendFailedWrite,
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub seed: u64,
    /// Ops recorded before the final drain starts (the drain adds a few more).
    pub ops_target: usize,
    pub keys: u64,
    pub producers: usize,
    pub consumers: usize,
    pub batch_values_max: usize,
    /// Records per key per poll.
    pub poll_records_max: usize,
    pub acks: Acks,
    pub idempotent: bool,
    /// Probability that a send fails definitely (nothing appended).
    pub send_fail_probability: f64,
    /// Probability that an op ends `info` (the process is retired; a send may or may not append).
    pub info_probability: f64,
    pub bug: Option<Bug>,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            seed: 0,
            ops_target: 2_000,
            keys: 3,
            producers: 3,
            consumers: 3,
            batch_values_max: 4,
            poll_records_max: 5,
            acks: Acks::All,
            idempotent: true,
            send_fail_probability: 0.05,
            info_probability: 0.02,
            bug: None,
        }
    }
}

/// A generated run: the history and the server-side log dump at the end.
#[derive(Debug)]
pub struct Generated {
    pub history: History,
    pub log_dump: Vec<LogRecord>,
    /// Whether the planted bug (if any) was applied.
    pub bug_planted: bool,
}

struct Record {
    value: Value,
    producer: Option<Producer>,
}

/// One process slot: the live process in it, and its open op.
struct Slot {
    process: Process,
    consumer: bool,
    open: Option<(OpHandle, Option<Send>)>,
    /// Next producer sequence per key (Kafka sequences are per pid, epoch and partition).
    seq_next: BTreeMap<Key, u64>,
    assigned: Vec<Key>,
    positions: BTreeMap<Key, Offset>,
}

struct Model {
    config: ModelConfig,
    rng: StdRng,
    time_ns: Arc<AtomicU64>,
    builder: HistoryBuilder,
    logs: BTreeMap<Key, Vec<Record>>,
    /// Per key, the op index of the completion that last appended.
    appended_at: BTreeMap<Key, u64>,
    slots: Vec<Slot>,
    process_next: Process,
    value_next: Value,
    bug_planted: bool,
}

/// Runs the model and returns its history.
pub fn generate(config: &ModelConfig) -> Generated {
    assert!(config.keys > 0 && config.producers > 0 && config.consumers > 0 && config.batch_values_max > 0 && config.poll_records_max > 0);
    let time_ns = Arc::new(AtomicU64::new(0));
    let clock = Arc::clone(&time_ns);
    let mut model = Model {
        config: config.clone(),
        rng: StdRng::seed_from_u64(config.seed),
        time_ns,
        builder: HistoryBuilder::new(move || clock.load(Ordering::Relaxed)),
        logs: (0..config.keys).map(|k| (k, Vec::new())).collect(),
        appended_at: BTreeMap::new(),
        slots: Vec::new(),
        process_next: 0,
        value_next: 0,
        bug_planted: false,
    };
    for i in 0..config.producers + config.consumers {
        let slot = model.fresh_slot(i >= config.producers);
        model.slots.push(slot);
    }
    while model.builder.len() < config.ops_target {
        model.tick();
        model.step();
    }
    model.finish()
}

impl Model {
    fn fresh_slot(&mut self, consumer: bool) -> Slot {
        let process = self.process_next;
        self.process_next += 1;
        Slot { process, consumer, open: None, seq_next: BTreeMap::new(), assigned: Vec::new(), positions: BTreeMap::new() }
    }

    fn tick(&mut self) {
        let step = self.rng.gen_range(1..1_000);
        self.time_ns.fetch_add(step, Ordering::Relaxed);
    }

    fn bug_due(&self, bug: Bug) -> bool {
        self.config.bug == Some(bug) && !self.bug_planted && self.builder.len() >= self.config.ops_target / 2
    }

    fn step(&mut self) {
        let i = self.rng.gen_range(0..self.slots.len());
        if self.rng.gen_bool(0.01) {
            self.nemesis();
        } else if self.slots[i].open.is_some() {
            self.complete(i);
        } else if self.slots[i].consumer {
            self.invoke_consumer(i);
        } else {
            self.invoke_send(i);
        }
    }

    /// Fault and leader-change ops: recorded, with no effect on the (correct) model.
    fn nemesis(&mut self) {
        let key = self.rng.gen_range(0..self.config.keys);
        let fault = Fault { fault: "F-N1 isolate".into(), details: BTreeMap::from([("node".into(), format!("n{key}"))]) };
        match self.rng.gen_range(0..3) {
            0 => self.builder.fault_start(fault),
            1 => self.builder.fault_stop(fault),
            _ => self.builder.leader_change(key, Some(key)),
        }
        .expect("nemesis ops always record");
    }

    fn invoke_send(&mut self, i: usize) {
        let key = self.rng.gen_range(0..self.config.keys);
        let n = self.rng.gen_range(1..=self.config.batch_values_max);
        let values: Vec<Value> = (0..n as u64).map(|j| self.value_next + j).collect();
        self.value_next += n as u64;
        let slot = &self.slots[i];
        let producer =
            self.config.idempotent.then_some(Producer { pid: slot.process, epoch: 0, seq: slot.seq_next.get(&key).copied().unwrap_or(0) });
        let send = Send { key, values, acks: self.config.acks, producer, offsets: None };
        let handle = self.builder.invoke_send(slot.process, send.clone()).expect("the slot's process is idle");
        self.slots[i].open = Some((handle, Some(send)));
    }

    fn invoke_consumer(&mut self, i: usize) {
        let process = self.slots[i].process;
        if self.slots[i].assigned.is_empty() || self.rng.gen_bool(0.02) {
            let mut keys: Vec<Key> = (0..self.config.keys).filter(|_| self.rng.gen_bool(0.7)).collect();
            if keys.is_empty() {
                keys.push(0);
            }
            let handle = self.builder.invoke(process, OpF::Assign, OpValue::Keys(Keys { keys: keys.clone() })).expect("idle");
            self.builder.ok(handle, OpValue::Keys(Keys { keys: keys.clone() })).expect("open");
            let slot = &mut self.slots[i];
            slot.positions.retain(|k, _| keys.contains(k));
            slot.assigned = keys;
        } else if self.rng.gen_bool(0.02) {
            let keys = self.slots[i].assigned.clone();
            let handle = self.builder.invoke(process, OpF::Rewind, OpValue::Keys(Keys { keys: keys.clone() })).expect("idle");
            self.builder.ok(handle, OpValue::Keys(Keys { keys })).expect("open");
            self.slots[i].positions.clear();
        } else {
            let handle = self.builder.invoke_poll(process).expect("idle");
            self.slots[i].open = Some((handle, None));
        }
    }

    fn complete(&mut self, i: usize) {
        let (handle, send) = self.slots[i].open.take().expect("complete is called on an open slot");
        let roll: f64 = self.rng.gen();
        match send {
            Some(send) if roll < self.config.send_fail_probability => {
                if self.bug_due(Bug::AppendFailedWrite) {
                    self.bug_planted = true;
                    self.append(&send);
                }
                self.builder.fail(handle, OpValue::Send(send)).expect("open");
            }
            Some(send) if roll < self.config.send_fail_probability + self.config.info_probability => {
                if self.rng.gen_bool(0.5) {
                    self.append(&send);
                }
                self.builder.info(handle, OpValue::Send(send)).expect("open");
                self.slots[i] = self.fresh_slot(false);
            }
            Some(send) => {
                let offsets = self.complete_send_ok(&send);
                *self.slots[i].seq_next.entry(send.key).or_default() += send.values.len() as u64;
                let index = self.builder.ok(handle, OpValue::Send(Send { offsets: Some(offsets), ..send.clone() })).expect("open");
                self.appended_at.insert(send.key, index);
            }
            None if roll < self.config.info_probability => {
                self.builder.info(handle, OpValue::Poll(Poll::default())).expect("open");
                self.slots[i] = self.fresh_slot(true);
            }
            None => {
                let poll = self.poll(i, handle.index);
                self.builder.ok(handle, OpValue::Poll(poll)).expect("open");
            }
        }
    }

    /// Appends an ok send (with the planted write bugs) and returns its ack offsets.
    fn complete_send_ok(&mut self, send: &Send) -> Vec<Offset> {
        let base = self.logs[&send.key].len() as Offset;
        let offsets: Vec<Offset> = (base..base + send.values.len() as u64).collect();
        if self.bug_due(Bug::DropAckedWrite) {
            self.bug_planted = true;
            return offsets;
        }
        self.append(send);
        if self.bug_due(Bug::DuplicateAppend) {
            self.bug_planted = true;
            self.append(send);
        }
        if self.bug_due(Bug::ReorderRecords) && base > 0 {
            self.bug_planted = true;
            self.logs.get_mut(&send.key).expect("every key has a log").swap(base as usize - 1, base as usize);
        }
        offsets
    }

    fn append(&mut self, send: &Send) {
        let log = self.logs.get_mut(&send.key).expect("every key has a log");
        for (j, &value) in send.values.iter().enumerate() {
            let producer = send.producer.map(|p| Producer { seq: p.seq + j as u64, ..p });
            log.push(Record { value, producer });
        }
    }

    /// Reads from the slot's positions on its assigned keys (with the planted poll bugs).
    fn poll(&mut self, i: usize, invoke_index: u64) -> Poll {
        let mut poll = Poll::default();
        let keys = self.slots[i].assigned.clone();
        for key in keys {
            let log = &self.logs[&key];
            let mut position = self.slots[i].positions.get(&key).copied().unwrap_or(0);
            let had_position = self.slots[i].positions.contains_key(&key);
            if had_position && position + 1 < log.len() as Offset && self.bug_due(Bug::SkipOnPoll) {
                self.bug_planted = true;
                position += 1;
            }
            let end = (position + self.config.poll_records_max as Offset).min(log.len() as Offset);
            let records: Vec<(Offset, Value)> = (position..end).map(|o| (o, log[o as usize].value)).collect();
            let mut hw = log.len() as Offset;
            let acked_before = self.appended_at.get(&key).is_some_and(|&at| at < invoke_index);
            if hw > 0 && acked_before && self.bug_due(Bug::StaleHw) {
                self.bug_planted = true;
                hw -= 1;
            }
            poll.hw.insert(key, hw);
            if !records.is_empty() {
                self.slots[i].positions.insert(key, end);
                poll.records.insert(key, records);
            }
        }
        poll
    }

    /// Completes open ops, then drains every key with a fresh consumer that seeks to the start.
    fn finish(mut self) -> Generated {
        for i in 0..self.slots.len() {
            if self.slots[i].open.is_some() {
                self.tick();
                self.complete(i);
            }
        }
        self.builder.final_drain().expect("records");
        for key in 0..self.config.keys {
            let mut slot = self.fresh_slot(true);
            slot.assigned = vec![key];
            let process = slot.process;
            self.slots.push(slot);
            let i = self.slots.len() - 1;
            let keys = OpValue::Keys(Keys { keys: vec![key] });
            let handle = self.builder.invoke(process, OpF::Assign, keys.clone()).expect("idle");
            self.builder.ok(handle, keys.clone()).expect("open");
            let handle = self.builder.invoke(process, OpF::Rewind, keys.clone()).expect("idle");
            self.builder.ok(handle, keys).expect("open");
            while self.slots[i].positions.get(&key).copied().unwrap_or(0) < self.logs[&key].len() as Offset {
                self.tick();
                let handle = self.builder.invoke_poll(process).expect("idle");
                let poll = self.poll(i, handle.index);
                self.builder.ok(handle, OpValue::Poll(poll)).expect("open");
            }
        }
        let log_dump = self
            .logs
            .iter()
            .flat_map(|(&partition, log)| {
                log.iter().enumerate().map(move |(offset, r)| LogRecord { partition, offset: offset as Offset, producer: r.producer })
            })
            .collect();
        Generated { history: self.builder.finish(), log_dump, bug_planted: self.bug_planted }
    }
}
