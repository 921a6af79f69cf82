//! `odradek-jepsen`: the history model and the checker shared by the Jepsen-style harness and the
//! deterministic simulator (issue 6, items 1 and 2; CHECKLISTS.md "INVARIANT CHECKLIST").
//!
//! What exists:
//! * [`history`]: operations in Jepsen's Kafka-workload shape (send, poll, assign, rewind, crash,
//!   nemesis start/stop, leader changes, the final-drain marker), their JSON-lines form, and a
//!   [`history::HistoryBuilder`] that a workload driver calls (no clock or randomness inside).
//! * [`checker`]: `check(&History, &CheckOptions) -> Verdict` for L1–L13 under the acks-level table,
//!   P2 from the history, P1, P3, P4 from an optional server log dump, and the consumer-group
//!   checks C1–C7 over the group ops (subscribe, rebalance, commit, fetch-committed).
//! * [`model`]: a seeded in-memory model log that generates valid histories, with planted bugs, for
//!   tests, benches and the simulator's own checker tests.
//!
//! * [`harness`] (not under `--cfg madsim`): the real-process harness behind the `odradek-jepsen`
//!   binary: `odradek server` processes on loopback, peer-link proxies for partitions, SIGKILL and
//!   SIGSTOP faults, producer and consumer workers, the final drain.
//! * [`report`] and [`plot`]: the report directory (history, verdict, summary, SVG plots), also
//!   written by `odradek-jepsen check DIR`; both read the history as [`intervals`] (ops from
//!   invoke to completion, faults from start to stop).
//!
//! * [`partitions`]: the partition shapes (which links to cut) both fault injectors use.
//!
//! P1, P3 and P4 need the log with each record's producer: the harness and the simulator take it
//! from their final drain (the client's records carry their producer id, epoch and sequence).
//!
//! Not yet: liveness (V1–V4) in the checker (the simulator checks V1–V3 itself).

pub mod checker;
#[cfg(not(madsim))]
pub mod harness;
pub mod history;
pub mod intervals;
pub mod model;
pub mod partitions;
pub mod plot;
pub mod report;
