//! A seed takes the same path however it is run (issue 20):
//! - after other seeds in one process (the planted-bug catalogue runs many): no state outlives
//!   a run. Disk seed 5980 after seed 51 used to run another schedule: raft-rs draws election
//!   timeouts from rand's thread generator, seeded once per thread (`run_seed` now gives every
//!   run a new thread);
//! - with the nodes' logging on (`SIM_LOG`), so the one seed a researcher wants to read can be
//!   read with logs.

#![cfg(madsim)]

use std::process::Command;

use odradek_sim::config::{Scenario, ScenarioConfig};
use odradek_sim::scenario::run_seed;

fn disk(seed: u64) -> ScenarioConfig {
    ScenarioConfig { scenario: Scenario::Disk, ..ScenarioConfig::new(seed) }
}

/// The trace hash of disk seed `seed` run alone by the CLI, in its own process, with `SIM_LOG`
/// set to `log` if given.
fn alone_with(seed: u64, log: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_odradek-sim"));
    command.args(["run", "--quiet", "--seed", &seed.to_string(), "--scenario", "disk"]).env_remove("SIM_LOG");
    if let Some(filter) = log {
        command.env("SIM_LOG", filter);
    }
    let output = command.output().expect("odradek-sim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let at = stdout.find("trace hash ").unwrap_or_else(|| panic!("no trace hash in:\n{stdout}"));
    stdout[at + "trace hash ".len()..][..16].to_string()
}

fn alone(seed: u64) -> String {
    alone_with(seed, None)
}

#[test]
fn a_seed_after_another_in_one_process_runs_as_alone() {
    let first = run_seed(&disk(51)).unwrap_or_else(|crash| panic!("disk seed 51 crashed: {crash:?}"));
    assert_eq!(format!("{:016x}", first.trace_hash), alone(51));
    let second = run_seed(&disk(5980)).unwrap_or_else(|crash| panic!("disk seed 5980 crashed: {crash:?}"));
    assert_eq!(format!("{:016x}", second.trace_hash), alone(5980), "disk seed 5980 after 51 took another path than alone");
}

#[test]
fn logging_does_not_change_the_schedule() {
    for seed in [2, 7] {
        let logged = alone_with(seed, Some("debug"));
        assert_eq!(logged, alone(seed), "disk seed {seed} took another path with SIM_LOG=debug");
    }
}
