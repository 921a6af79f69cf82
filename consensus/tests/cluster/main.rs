//! A deterministic in-process cluster: nodes driven by explicit tick/round/deliver calls from a
//! test scheduler, over `LocalNetwork` and `SimDisk`. The invariants (../shared/CHECKLISTS.md)
//! are judged by the one raft checker (`odradek_jepsen::checker::raft::RaftChecker`), fed two
//! ways; its first violation fails the test with the invariant's ID:
//! - the events every node reports (`odradek_consensus::observe`) as they happen: R1 one leader
//!   per (group, term), R2 one entry per (index, term), R3 applied indexes contiguous per node
//!   incarnation and leader completeness, R4 the identical entry (and dense offsets) applied at
//!   an index everywhere, R6 accepted appends and granted votes durable when sent, R8;
//! - what this harness sees inside its nodes: R3 commit never regresses (`LocalCluster::check`,
//!   after every round) and a restart recovers no commit above any known one
//!   (`LocalCluster::start`); R5 an acknowledged proposal is durable on a quorum of the group's
//!   current voters, both halves of a joint configuration (`LocalCluster::check_ack_durable`, the
//!   moment the harness takes each `Ok(Appended { index, term, .. })`); R2 log matching over
//!   the replicas' fsynced logs and R3 no log differs from the applied entries at or below its
//!   commit, the newest leader holding them all (`LocalCluster::check_logs`, every 25 steps of a
//!   schedule, at its end, and in the retention test); R6 once more from the wire: every append
//!   response and vote grant `TappedTransport` saw leave, judged against the sender's durable
//!   state when it left (`LocalCluster::check_sent`). The planted send-before-fsync bug
//!   (`--features planted-bugs`) is caught as R6, the planted trust-recovery-cut bug as R8.
//!
//! Also: the proposal outcome contract (acknowledged = applied where acknowledged, definite
//! failure = never applied), indefinite outcomes resolved once their index is applied
//! (`LocalCluster::check_resolved`, every round, against the canonical entry), conf changes,
//! retention with metadata snapshots, and the same driver as `Node::run` tasks over
//! `LocalNetwork` and over real TCP with `FsDisk`.
//!
//! The random schedules inject message drop, duplication, delay and reorder, node isolation,
//! majority/minority splits and one-way cuts, crashes with and without unsynced loss, failed
//! fsyncs (a crash) and restarts; every fault heals in a final liveness phase, which must
//! converge and commit (R7's convergence of commit and apply indices, checked by `converge`).
//!
//! Files: `harness` (the cluster, its state machine, the wire tap and the checks it feeds),
//! `schedules` (the random fault schedules and their regressions), and one file per topic:
//! `replication`, `catch_up` (log reads and snapshots for laggards), `membership`, `suspect`
//! (recovery cuts and quarantine), `outcomes` (indefinite proposal outcomes), `tasks` (the
//! driver as `Node::run` tasks, over `LocalNetwork` and TCP) and `planted` (the planted bugs).
//!
//! Real tokio runtimes, sockets and files, so this suite is left out of `--cfg madsim` builds.
#![cfg(not(madsim))]

mod catch_up;
mod harness;
mod hibernation;
mod membership;
mod outcomes;
#[cfg(feature = "planted-bugs")]
mod planted;
mod replication;
mod schedules;
mod suspect;
mod tasks;
