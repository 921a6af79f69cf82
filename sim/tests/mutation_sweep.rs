//! The simulator as a mutant killer (issue 20, `scripts/mutation-score.sh`): every scenario the
//! simulator has, on a fixed range of seeds, each seed in its own process through the CLI's
//! `sweep --fail-fast`. The mutation soak builds one mutant of the code at a time and runs this
//! test alone: a mutant is killed when any seed fails an invariant (or crashes), and the panic
//! message names the scenario and the first seed that killed it.
//!
//! `ODRADEK_MUTANT_SEEDS` (default 2) is the number of seeds per scenario: the soak uses 200 (and
//! 1,000 for the mutants that survive 200). The seeds go in rounds of growing size over all
//! scenarios (1..=10 of every scenario, then up to 50, then the rest), so a mutant most seeds
//! catch dies in seconds whichever scenario sees it. In CI it runs with the default: two seeds
//! of each scenario, which checks that every scenario below still runs and passes unmutated.

#![cfg(madsim)]

use std::process::Command;

/// Each scenario of the simulator and the options that select it (`odradek-sim run --help`).
const SCENARIOS: &[&[&str]] = &[
    &["--scenario", "swarm"],
    &["--scenario", "crash"],
    &["--scenario", "network"],
    &["--scenario", "disk"],
    &["--scenario", "groups"],
    &["--scenario", "swarm", "--heavy"],
    &["--scenario", "disk", "--wipes"],
    &["--scenario", "crash", "--wipes"],
    &["--scenario", "swarm", "--kafka"],
    &["--scenario", "crash", "--topic-churn"],
    &["--scenario", "swarm", "--secure"],
    &["--scenario", "disk", "--state-faults"],
];

/// The last seed of each round (the last round ends at the seed count).
const ROUND_ENDS: [u64; 2] = [10, 50];

fn seeds_per_scenario() -> u64 {
    match std::env::var("ODRADEK_MUTANT_SEEDS") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("ODRADEK_MUTANT_SEEDS={text:?}: expected a number of seeds")),
        Err(_) => 2,
    }
}

#[test]
fn every_scenario_passes_its_seeds() {
    let seeds = seeds_per_scenario();
    assert!(seeds >= 1, "ODRADEK_MUTANT_SEEDS must be at least 1");
    let mut first = 1;
    for last in ROUND_ENDS.into_iter().filter(|&end| end < seeds).chain([seeds]) {
        for scenario in SCENARIOS {
            let output = Command::new(env!("CARGO_BIN_EXE_odradek-sim"))
                .args(["sweep", "--fail-fast", "--jobs", "2", "--seeds", &format!("{first}..={last}")])
                .args(*scenario)
                .env_remove("SIM_LOG")
                .output()
                .expect("odradek-sim runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let failed = stdout.lines().find(|line| line.contains(" FAILED; replay: ")).unwrap_or("");
            assert!(
                output.status.success(),
                "killed by {} at seeds {first}..={last}: {failed}\n{stdout}{}",
                scenario.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        first = last + 1;
    }
}
