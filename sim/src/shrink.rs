//! Minimal failing plans (issue 20): which of a failing run's faults matter.
//!
//! A run's nemesis numbers its fault rounds (every fault it draws and may inject, in order) and
//! records the ones it injected ([`InjectedFault`]). A [`FaultSelection`] replays the same seed
//! with only some of those rounds injected, each with a window no longer than drawn: the
//! nemesis still makes every random draw and waits every quiet time and window, so the kept
//! faults are the same faults at the same simulated times, and only what the dropped ones did
//! is gone. (The rest of the run is not frozen: without a fault, elections and retries go
//! differently, which is why every candidate is run, not predicted.)
//!
//! [`minimize`] is delta debugging (Zeller's ddmin) over the injected rounds: it keeps a subset
//! while the run still fails with one of the original invariants; then each kept window is
//! halved while the failure stays. The result is a [`PlanFile`]: the faults that matter and the
//! command that replays them (`odradek-sim run --seed N --plan FILE`; `odradek-sim shrink`
//! writes it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The shortest window the shrinker tries (ms): below it a fault is barely a fault.
pub const WINDOW_MS_MIN: u64 = 50;

/// One fault a run injected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// The nemesis's round number (counts every fault it drew and could inject).
    pub round: u32,
    /// Its CHECKLISTS label (`F-P1 kill`).
    pub fault: String,
    /// What the history recorded with it (node, partition, bits...).
    pub details: BTreeMap<String, String>,
    /// How long it was on.
    pub window_ms: u64,
}

/// Which rounds a replay injects, each with its window (ms); every other round is drawn and
/// its time passes, but it is not injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSelection {
    pub rounds: BTreeMap<u32, u64>,
    /// The plan file it came from (for the replay command).
    pub path: Option<PathBuf>,
}

impl FaultSelection {
    /// The window round `round` gets (no longer than `drawn_ms`), or `None`: not injected.
    pub fn window_ms(&self, round: u32, drawn_ms: u64) -> Option<u64> {
        self.rounds.get(&round).map(|&window_ms| window_ms.min(drawn_ms))
    }

    pub fn of(faults: &[InjectedFault]) -> FaultSelection {
        FaultSelection { rounds: faults.iter().map(|fault| (fault.round, fault.window_ms)).collect(), path: None }
    }
}

/// A (shrunk) plan as written to a file: the run it belongs to, the failure it reproduces and
/// the faults it injects.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub seed: u64,
    /// The invariants the original run failed (one of them must fail again).
    pub failure: Vec<String>,
    /// The command that replays it (this file as `--plan`).
    pub replay: String,
    pub faults: Vec<InjectedFault>,
}

impl PlanFile {
    pub fn read(path: &Path) -> Result<PlanFile, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))?;
        serde_json::from_str(&text).map_err(|error| format!("{} is not a plan file: {error}", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("a plan serialises");
        std::fs::write(path, text + "\n").map_err(|error| format!("writing {}: {error}", path.display()))
    }

    pub fn selection(&self, path: &Path) -> FaultSelection {
        FaultSelection { path: Some(path.to_path_buf()), ..FaultSelection::of(&self.faults) }
    }
}

/// What one candidate run did: the invariants it failed (empty: it passed) and the faults it
/// injected.
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    pub failed: Vec<String>,
    pub injected: Vec<InjectedFault>,
}

/// Shrinks `original` (a failing run's injected faults, failing `target`) with `run` (a replay
/// injecting only the faults it is given, [`FaultSelection::of`]), at most `runs_max` runs. A candidate reproduces when it fails one of `target`'s invariants. Returns
/// the smallest reproducing fault list found (what that run injected, windows included) and
/// how many runs it took.
pub fn minimize(
    original: &[InjectedFault],
    target: &[String],
    runs_max: usize,
    mut run: impl FnMut(&[InjectedFault]) -> Replayed,
) -> (Vec<InjectedFault>, usize) {
    let mut runs = 0;
    let mut attempt = |candidate: &[InjectedFault], runs: &mut usize| -> Option<Vec<InjectedFault>> {
        if *runs >= runs_max {
            return None;
        }
        *runs += 1;
        let outcome = run(candidate);
        outcome.failed.iter().any(|id| target.contains(id)).then_some(outcome.injected)
    };
    // No fault at all first: some failures need none.
    if let Some(injected) = attempt(&[], &mut runs) {
        return (injected, runs);
    }
    // ddmin over the rounds.
    let mut current = original.to_vec();
    let mut chunks = 2;
    while current.len() >= 2 && runs < runs_max {
        let size = current.len().div_ceil(chunks);
        let parts: Vec<Vec<InjectedFault>> = current.chunks(size).map(<[_]>::to_vec).collect();
        let mut reduced = None;
        for part in &parts {
            if let Some(injected) = attempt(part, &mut runs) {
                reduced = Some((injected, 2));
                break;
            }
        }
        if reduced.is_none() && parts.len() > 2 {
            for i in 0..parts.len() {
                let complement: Vec<InjectedFault> =
                    parts.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, part)| part.clone()).collect();
                if let Some(injected) = attempt(&complement, &mut runs) {
                    reduced = Some((injected, (chunks - 1).max(2)));
                    break;
                }
            }
        }
        match reduced {
            // What the candidate run injected (a dropped fault can make a later one skip too).
            Some((injected, next_chunks)) if injected.len() < current.len() => {
                current = injected;
                chunks = next_chunks.min(current.len().max(2));
            }
            _ if chunks < current.len() => chunks = (chunks * 2).min(current.len()),
            _ => break,
        }
    }
    // Shorter windows, one fault at a time.
    for i in 0..current.len() {
        while current[i].window_ms / 2 >= WINDOW_MS_MIN && runs < runs_max {
            let mut candidate = current.clone();
            candidate[i].window_ms /= 2;
            match attempt(&candidate, &mut runs) {
                Some(injected) if injected.len() == current.len() => current = injected,
                _ => break,
            }
        }
    }
    (current, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(count: u32) -> Vec<InjectedFault> {
        (0..count).map(|round| InjectedFault { round, fault: "F-P1 kill".into(), details: BTreeMap::new(), window_ms: 1_600 }).collect()
    }

    /// A stand-in for the simulator: the run fails R5 when rounds 3 and 11 are both injected
    /// and round 11's window is at least 400 ms; it injects exactly what it is told.
    fn model(faults: &[InjectedFault]) -> Replayed {
        let selection = FaultSelection::of(faults);
        let failed = selection.rounds.contains_key(&3) && selection.rounds.get(&11).is_some_and(|&window| window >= 400);
        let injected = selection
            .rounds
            .iter()
            .map(|(&round, &window_ms)| InjectedFault { round, fault: "F-P1 kill".into(), details: BTreeMap::new(), window_ms })
            .collect();
        Replayed { failed: if failed { vec!["R5".into()] } else { vec![] }, injected }
    }

    #[test]
    fn ddmin_finds_the_two_faults_that_matter_and_their_shortest_windows() {
        let (shrunk, runs) = minimize(&faults(20), &["R5".into()], 500, model);
        let rounds: Vec<(u32, u64)> = shrunk.iter().map(|fault| (fault.round, fault.window_ms)).collect();
        assert_eq!(rounds, vec![(3, 50), (11, 400)]);
        assert!(runs < 100, "{runs} runs");
    }

    #[test]
    fn another_invariant_does_not_count_as_the_same_failure() {
        let (shrunk, _) = minimize(&faults(8), &["L1".into()], 100, model);
        assert_eq!(shrunk.len(), 8, "nothing reproduces L1, so nothing is dropped");
    }

    #[test]
    fn the_run_budget_is_kept() {
        let mut runs = 0;
        minimize(&faults(40), &["R5".into()], 7, |candidate| {
            runs += 1;
            model(candidate)
        });
        assert_eq!(runs, 7);
    }

    #[test]
    fn a_replay_window_is_never_longer_than_drawn() {
        let selection = FaultSelection::of(&faults(2));
        assert_eq!(selection.window_ms(1, 900), Some(900));
        assert_eq!(selection.window_ms(1, 5_000), Some(1_600));
        assert_eq!(selection.window_ms(2, 900), None);
    }
}
