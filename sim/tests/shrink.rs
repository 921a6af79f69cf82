//! Minimal failing plans (issue 20) through the researcher's CLI: `odradek-sim run --plan-out`
//! writes a run's faults, `run --plan` replays them (all of them: the very same run), and
//! `shrink` cuts a planted bug's failing seed down to the faults that matter and writes a plan
//! that replays to the same failure.

#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

use odradek_sim::shrink::PlanFile;

const BIN: &str = env!("CARGO_BIN_EXE_odradek-sim");

fn sim(args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).args(args).output().expect("odradek-sim runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

fn trace_hash(stdout: &str) -> &str {
    let at = stdout.find("trace hash ").unwrap_or_else(|| panic!("no trace hash in:\n{stdout}"));
    &stdout[at..at + "trace hash ".len() + 16]
}

// Every round replayed with its own window is the run itself: same faults at the same times,
// same trace. (Disk seed 5 injects several faults of different kinds.)
#[test]
fn a_plan_of_every_fault_replays_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("all.json");
    let plan = plan.to_str().unwrap();
    let (status, original) = sim(&["run", "--quiet", "--seed", "5", "--scenario", "disk", "--plan-out", plan]);
    assert_eq!(status, 0, "{original}");
    let file = PlanFile::read(Path::new(plan)).unwrap();
    assert!(file.faults.len() >= 2, "disk seed 5 injects several faults: {file:?}");
    assert!(file.failure.is_empty());
    let (status, replayed) = sim(&["run", "--quiet", "--seed", "5", "--scenario", "disk", "--plan", plan]);
    assert_eq!(status, 0, "{replayed}");
    assert_eq!(trace_hash(&replayed), trace_hash(&original));
    // A plan without its first fault is another run.
    let mut fewer = file.clone();
    fewer.faults.remove(0);
    let fewer_path = dir.path().join("fewer.json");
    fewer.write(&fewer_path).unwrap();
    let (_, other) = sim(&["run", "--quiet", "--seed", "5", "--scenario", "disk", "--plan", fewer_path.to_str().unwrap()]);
    assert_ne!(trace_hash(&other), trace_hash(&original));
}

// The catalogue's silent-recovery-cut (R6) at disk seed 12: shrunk to the one bit flip that
// matters, and the written plan replays to R6 through `run --plan`.
#[test]
fn a_shrunk_plan_replays_to_the_same_failure() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("shrunk.json");
    let plan = plan.to_str().unwrap();
    let bug = ["--scenario", "disk", "--planted-bug", "silent-recovery-cut"];
    let (_, original) = sim(&[&["run", "--quiet", "--seed", "12"][..], &bug].concat());
    assert!(original.contains("FAIL: R6"), "{original}");
    let (status, shrunk) = sim(&[&["shrink", "--seed", "12", "--out", plan][..], &bug].concat());
    assert_eq!(status, 0, "{shrunk}");
    let file = PlanFile::read(Path::new(plan)).unwrap();
    assert_eq!(file.failure, vec!["R6".to_string()]);
    assert!(!file.faults.is_empty() && file.faults.iter().all(|fault| fault.fault.starts_with("F-S3")), "{file:?}");
    assert!(file.replay.ends_with(&format!("--plan {plan}")), "{}", file.replay);
    let (status, replayed) = sim(&[&["run", "--quiet", "--seed", "12", "--plan", plan][..], &bug].concat());
    assert_eq!(status, 1);
    assert!(replayed.contains("FAIL: R6"), "{replayed}");
}
