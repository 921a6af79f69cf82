//! The nemesis: the loop that injects a run's faults, one at a time, each recorded in the
//! history with its start and end. Which faults a run may inject is drawn from the seed
//! ([`plan`]: swarm testing); each fault is drawn, injected and healed in its own window
//! ([`fault`]).
//!
//! Fault kinds (CHECKLISTS IDs): F-P1 kill, F-P2 pause, F-P3 power loss (with F-S1 lost and F-S2
//! torn unsynced writes, the `SimDisk` crash model), F-P4 power loss of every node at once,
//! F-N1 isolate a node, F-N2 minority/majority split, F-N3 majorities ring (5 nodes), F-N5
//! one-way link loss, F-N6 network latency and jitter, F-S3 bit flips (one node only, never the
//! same item on a quorum: segments, index files, hard and conf state, the last entry of a log
//! too — see `corruptible_spots` in [`fault`]; the group may refuse to open and then stays down on that
//! node, or hold itself suspect after cutting a rotten last entry), F-S6 read errors,
//! F-S8 fsync errors (fatal: the node stops and is restarted, as by a supervisor), F-S9 slow disk,
//! F-C1 clock offsets per node plus steps while running, faults aimed at a consumer group's
//! coordinator (F-P1 kill, F-N1 isolation, F-C1 a forward step past the sessions), F-N9 a connection reset in place of a
//! produce answer and the client cut off longer than its request timeout (answers lost,
//! retries), F-P5 pause-kill and F-P6 part-kill choreographies
//! (these two hold more than a minority by design: the survivors must form the next majority
//! with the node that lost power). BUGGIFY (F-B1, F-B4, F-B5) is switched
//! on for the whole run when the plan says so.
//!
//! With the plan field `state_faults`, faults on the hard- and conf-state files (two mirrored
//! copies each, `odradek_log::MirroredFile`), written while the node is down: F-S3 bit flips in
//! one copy, F-S2 one copy torn, F-S4 the file cut short in its second copy, F-S7 one copy back
//! to an older record (a write lost after its fsync), all on any node (the other copy holds the
//! state, and the opening repairs the damaged one); and F-S3 in both copies of one file, once per
//! run on the one node F-S3 may corrupt (the group does not open there and is quarantined). See
//! `FaultTargets::damage_state_file` in [`fault`]. With `retention` too, faults on start-state
//! files (`odradek_log::StartStateFile`, written by trims), once per run on that node: F-S7 the
//! renames of its latest saves lost (an older record again, or none), or F-S2/F-S3/F-S4 its
//! one copy torn, flipped or cut short (`FaultTargets::damage_start_state`).
//!
//! Other process and network faults touch at most a minority at a time; every fault is healed
//! before the liveness phase.

pub(crate) mod fault;
pub mod plan;

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::config::GROUP_NAMES;
use crate::shrink::{FaultSelection, InjectedFault};
use fault::FaultTargets;
use plan::{FaultKind, FaultPlan};

/// Runs the safety phase's faults for `duration`, then heals everything (network, disks,
/// paused and stopped nodes). Every fault it injects is pushed to `injected` as it starts (a
/// run that panics keeps the list).
///
/// Each round: a quiet time, then one fault's window ([`FaultTargets::run_window`]), both drawn
/// from `plan`'s ranges; a round that would end after `duration` is not started. With a
/// `selection` (a replayed, shrunk plan: [`crate::shrink`]), a round it leaves out is drawn and
/// its window waited, but nothing is injected; a kept round's window may be shorter (the rest
/// of the drawn window passes quietly).
pub async fn run(
    targets: &FaultTargets<'_>,
    plan: &FaultPlan,
    duration: Duration,
    rng: &mut SmallRng,
    selection: Option<&FaultSelection>,
    injected: &Mutex<Vec<InjectedFault>>,
) {
    let end = tokio::time::Instant::now() + duration;
    let mut round = 0;
    let weighted: Vec<FaultKind> = plan.kinds.iter().flat_map(|&(kind, weight)| std::iter::repeat_n(kind, weight as usize)).collect();
    let mut flipped = false;
    // Both copies of a state file damaged (once per run, on the corruptible node).
    let mut both_damaged = false;
    let wipes = plan.kinds.iter().any(|&(kind, _)| kind == FaultKind::Wipe);
    let state_faults = plan.kinds.iter().any(|&(kind, _)| kind.on_state_file());
    // A start-state file lost or damaged (once per run, on the corruptible node).
    let mut start_damaged = false;
    let start_faults = plan.kinds.iter().any(|&(kind, _)| kind.on_start_state());
    let grow_shrink = plan.kinds.iter().any(|&(kind, _)| kind == FaultKind::GrowShrink);
    while !weighted.is_empty() {
        let quiet = Duration::from_millis(rng.gen_range(plan.quiet_ms.0..=plan.quiet_ms.1));
        let window = Duration::from_millis(rng.gen_range(plan.window_ms.0..=plan.window_ms.1));
        if tokio::time::Instant::now() + quiet + window >= end {
            break;
        }
        tokio::time::sleep(quiet).await;
        targets.restart_stopped(false);
        if state_faults {
            // F-S7's older records: the state files as they are at this round's start.
            targets.remember_state_files();
        }
        if start_faults {
            // F-S7 on start-state files: the files as they are at this round's start.
            targets.remember_start_states();
        }
        if grow_shrink {
            // F-M4: a decommissioned node the controller removed is stopped for good.
            targets.retire_removed().await;
        }
        let kind = *weighted.choose(rng).expect("not empty");
        // Under F-M4 a fault may hit the joined node too, and no longer a departed one.
        let candidates = if grow_shrink { targets.cluster().members_now() } else { targets.cluster().nodes.clone() };
        let mut node = *candidates.choose(rng).expect("nodes");
        if kind.at_coordinator() {
            // The group's coordinator now; the drawn node if no answer came.
            let group = GROUP_NAMES.choose(rng).expect("groups");
            node = targets.coordinator_of(group).await.unwrap_or(node);
        }
        let skipped = match kind {
            // Only one node is ever corrupted, and only once per run, while it is down.
            FaultKind::BitFlip => flipped || (wipes && !targets.cluster().joining().is_empty()),
            // One wipe at a time: a second node wiped before the first has caught up could
            // leave a group with one complete log and two replicas that may not vote for it
            // (safe, but the run could not converge: beyond the fault model).
            // A wipe and a bit flip are two failures: a node still joining needs every other
            // voter's answer, and a replica the flip damaged may never give one (quarantined).
            // Safe and unavailable, beyond the fault model (one failure per group): so no flip
            // while a wiped node joins (above), and no wipe once a node was flipped. (Plans
            // without wipes keep their draws: every node is joining while a fresh cluster
            // bootstraps.)
            FaultKind::Wipe => !targets.cluster().joining().is_empty() || flipped || both_damaged || start_damaged,
            // Like F-S3's bit flips: one corrupted node, once, never while a wiped node joins.
            FaultKind::StateCopiesBoth => both_damaged || (wipes && !targets.cluster().joining().is_empty()),
            // The same for a start-state file (one copy: any damage is corruption).
            kind if kind.on_start_state() => start_damaged || (wipes && !targets.cluster().joining().is_empty()),
            // F-M4: one step per draw, until all were taken.
            FaultKind::GrowShrink => targets.grow_shrink_done(),
            _ => false,
        };
        if skipped {
            continue;
        }
        let this_round = round;
        round += 1;
        let window_ms = window.as_millis() as u64;
        let Some(kept_ms) = selection.map_or(Some(window_ms), |selection| selection.window_ms(this_round, window_ms)) else {
            // Left out of the replay: the same draws, and the window passes all the same
            // whenever the run would have injected something.
            let drawn = match kind {
                FaultKind::BitFlip => {
                    flipped = true;
                    targets.draw_flip_spot(plan.corruptible_node, rng)
                }
                kind if kind.on_state_file() => {
                    let node = if kind == FaultKind::StateCopiesBoth { plan.corruptible_node } else { node };
                    let drawn = targets.damage_state_file(kind, node, rng, false).is_some();
                    both_damaged |= drawn && kind == FaultKind::StateCopiesBoth;
                    drawn
                }
                kind if kind.on_start_state() => {
                    let drawn = targets.damage_start_state(kind, plan.corruptible_node, rng, false).is_some();
                    start_damaged |= drawn;
                    drawn
                }
                _ => {
                    targets.draw(kind, node, rng);
                    true
                }
            };
            if drawn {
                tokio::time::sleep(window).await;
            }
            continue;
        };
        let fault = match kind {
            FaultKind::BitFlip => {
                flipped = true;
                targets.flip_bits(plan.corruptible_node, rng)
            }
            kind if kind.on_state_file() => {
                let node = if kind == FaultKind::StateCopiesBoth { plan.corruptible_node } else { node };
                let fault = targets.damage_state_file(kind, node, rng, true);
                both_damaged |= fault.is_some() && kind == FaultKind::StateCopiesBoth;
                fault
            }
            kind if kind.on_start_state() => {
                let fault = targets.damage_start_state(kind, plan.corruptible_node, rng, true);
                start_damaged |= fault.is_some();
                fault
            }
            _ => Some(targets.draw(kind, node, rng)),
        };
        let Some(fault) = fault else { continue };
        injected.lock().expect("injected lock").push(InjectedFault {
            round: this_round,
            fault: kind.label().to_string(),
            details: fault.details(),
            window_ms: kept_ms,
        });
        let kept = Duration::from_millis(kept_ms);
        targets.run_window(kind, fault, kept).await;
        if kept < window {
            tokio::time::sleep(window - kept).await;
        }
    }
    // A plan without faults (or the last quiet time) still lasts the whole safety phase.
    tokio::time::sleep_until(end).await;
    // Heal: nothing is left injected before the liveness phase.
    targets.heal_all();
    // The liveness phase restarts every core node: a start that failed on an injected I/O
    // error now meets a healthy disk (one that fails on damaged files fails again).
    targets.restart_stopped(true);
}

/// Plan field `retention` (R12): isolates each lag's node (F-N1) for its window, beside the
/// nemesis's own faults, so that the other replicas' short retention deletes entries it has not
/// got: once back it needs a snapshot. Every window ends before the safety phase does.
pub async fn retention_lags(targets: &FaultTargets<'_>, plan: &FaultPlan) {
    let Some(retention) = &plan.retention else { return };
    let start = tokio::time::Instant::now();
    for &(at_ms, node, window_ms) in &retention.lags {
        tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
        targets.cluster().note(format!("F-N1 isolate node {node} for {window_ms} ms (retention lag)"));
        targets.hold(false, &[node]);
        tokio::time::sleep(Duration::from_millis(window_ms)).await;
        targets.release(false, &[node]);
        targets.cluster().note(format!("retention lag of node {node} over"));
    }
}
