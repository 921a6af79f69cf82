//! What a run found: a [`Report`] (the verdict, the timeline, the history and the numbers the
//! summary line prints) or a [`Crash`] (a panic inside the cluster, with the invariant it guards
//! when the message names one).

use std::collections::BTreeMap;

use odradek_jepsen::checker::Verdict;
use odradek_jepsen::history::History;

use crate::config::ScenarioConfig;
use crate::nemesis::plan::FaultPlan;
use crate::shrink::InjectedFault;

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub config: ScenarioConfig,
    pub node_count: usize,
    pub plan: FaultPlan,
    /// Compact, time-stamped: faults, leader changes, node failures, progress.
    pub timeline: Vec<String>,
    pub history: History,
    pub verdict: Verdict,
    /// How many white-box events the raft checker saw (R1–R6, R8; its first violation stops the run
    /// as a [`Crash`]).
    pub raft_events: u64,
    /// Run-level failures that are not history anomalies (V1–V3: a drain that never ended).
    pub problems: Vec<String>,
    pub fault_count: usize,
    /// The faults the nemesis injected, in order (a shrunk plan is a subset of them).
    pub injected: Vec<InjectedFault>,
    pub acked: u64,
    pub failed: u64,
    pub drained: usize,
    /// Each partition's end offset after the liveness phase (V1).
    pub partition_ends: BTreeMap<u32, u64>,
    pub sim_seconds: f64,
    pub trace_hash: u64,
    /// How often each fault kind, rare path and check ran (`odradek-sim sweep` sums them):
    /// name -> count.
    pub coverage: BTreeMap<String, u64>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verdict.valid && self.problems.is_empty()
    }

    /// The invariant IDs that failed (history and raft), deduplicated.
    pub fn failed_invariants(&self) -> Vec<&str> {
        let mut ids: Vec<&str> =
            self.verdict.counts.iter().filter(|(_, count)| count.fatal > 0).map(|(kind, _)| kind.invariant()).collect();
        for problem in &self.problems {
            ids.push(problem.split(':').next().filter(|id| id.len() <= 3).unwrap_or("V3"));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// One line: the same for two runs of one seed (the CI replay check compares it).
    pub fn summary_line(&self) -> String {
        format!(
            "seed {}: {} nodes, {} faults, {} acked, {} failed, {} drained (ends {:?}), {} ops, {:.1} s simulated, trace hash {:016x}",
            self.config.seed,
            self.node_count,
            self.fault_count,
            self.acked,
            self.failed,
            self.drained,
            self.partition_ends,
            self.history.len(),
            self.sim_seconds,
            self.trace_hash
        )
    }

    /// `coverage: name=count; ...` (one line; `sweep` parses it).
    pub fn coverage_line(&self) -> String {
        let parts: Vec<String> = self.coverage.iter().map(|(name, count)| format!("{name}={count}")).collect();
        format!("coverage: {}", parts.join("; "))
    }

    /// The verdict block: PASS, or every violation with its invariant and the replay command.
    pub fn verdict_text(&self) -> String {
        let mut text = String::new();
        if self.passed() {
            text += "PASS\n";
        } else {
            text += &format!("FAIL: {}\n", self.failed_invariants().join(", "));
            for problem in &self.problems {
                text += &format!("  {problem}\n");
            }
            if !self.verdict.valid {
                text += &self.verdict.to_string();
            }
            text += &format!("replay: {}\n", self.config.replay_command());
        }
        text
    }
}

/// A run that stopped on a panic inside the cluster: an assertion of the consensus or log code
/// (they guard raft's invariants) or raft-rs's own.
#[derive(Clone, Debug)]
pub struct Crash {
    pub config: Box<ScenarioConfig>,
    pub message: String,
    /// The invariant the assertion guards, when known.
    pub invariant: Option<&'static str>,
    /// The faults injected before the panic.
    pub injected: Vec<InjectedFault>,
}

impl Crash {
    /// The crash of the run `config` on a panic with `message`.
    pub fn from_panic(config: ScenarioConfig, message: String, injected: Vec<InjectedFault>) -> Crash {
        Crash { config: Box::new(config), invariant: invariant_of_panic(&message), message, injected }
    }

    pub fn verdict_text(&self) -> String {
        format!(
            "FAIL: {} (the cluster panicked: {})\nreplay: {}\n",
            self.invariant.unwrap_or("panic"),
            self.message,
            self.config.replay_command()
        )
    }
}

/// Which invariant a panic message is about: the raft checker's violations (the run stops on the
/// first one) and the consensus crate's R6 check name it; the hard-state file's check that a
/// loaded suspicion reads back whole is R8 (c: a damaged copy used); the consensus crate's
/// storage assertions and raft-rs's commit check all say a replica lost or rewrote committed
/// entries (R3).
fn invariant_of_panic(message: &str) -> Option<&'static str> {
    // The raft checker's own violations and the consensus crate's R6 check start with the ID.
    for id in ["R1", "R2", "R3", "R4", "R5", "R6", "R8", "R10", "R11", "R12", "R13"] {
        if message.starts_with(&format!("{id} ")) || message.starts_with(&format!("{id}:")) {
            return Some(id);
        }
    }
    // The hard-state file's own check that a copy it loaded holds a state a save could have
    // written: a damaged copy taken for good (R8 c, corrupted hard state used).
    if message.contains("reads back whole") {
        return Some("R8");
    }
    let r3 = [
        "beyond the log end",
        "truncates committed",
        "never truncate committed",
        "is out of range [last_index",
        "saved above the durable log",
    ];
    r3.iter().any(|needle| message.contains(needle)).then_some("R3")
}
