//! The planted bugs (`--features planted-bugs`) and the checks that must catch them.

use crate::schedules::{run_schedule_on, Faults};
use crate::suspect::rotted_last_entry;

/// The rotted-last-entry schedule (module `suspect`) with the planted bug: the cut is trusted,
/// the follower votes, and the outsider would overwrite the committed entry. Caught as R8 as soon as the follower restarts:
/// its recovery cut an entry it had reported durable, and it does not hold itself suspect.
#[tokio::test]
#[should_panic(expected = "R8 group 3: node")]
async fn planted_trust_recovery_cut_loses_a_committed_entry() {
    rotted_last_entry(true).await;
}

/// The planted R6 bug (send before fsync) must be caught by the random schedules (module
/// `schedules`), as R6 itself: an append response or vote grant leaves before the round's
/// fsync (the node's own event, and `LocalCluster::check_sent` from the wire). The panic must name
/// R6, not some later consequence (R3, R4).
#[test]
fn planted_send_before_persist_is_caught_by_r6() {
    let faults = Faults {
        drop: 0.05,
        duplicate: 0.02,
        delay: 0.05,
        reorder: 0.5,
        crash: 0.01,
        restart: 0.2,
        isolate: 0.01,
        partition: 0.01,
        fsync_failure: 0.05,
    };
    let cache_bytes_max = odradek_log::LogConfig::default().cache_bytes_max;
    for seed in 0..PLANTED_SEEDS_MAX {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let run = std::panic::AssertUnwindSafe(|| runtime.block_on(run_schedule_on(seed, faults, cache_bytes_max, true)));
        let Err(panic) = std::panic::catch_unwind(run) else { continue };
        let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        let message = message.unwrap_or_default();
        assert!(message.starts_with("R6 "), "seed {seed}: the planted bug was caught, but not by R6: {message}");
        // The same schedule without the bug passes.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_schedule_on(seed, faults, cache_bytes_max, false));
        return;
    }
    panic!("{PLANTED_SEEDS_MAX} schedules never caught the planted send-before-fsync bug");
}

/// Schedules the planted-bug test tries before giving up.
const PLANTED_SEEDS_MAX: u64 = 64;

/// The planted hibernated-leader-reads-locally bug: a sleeping leader, deposed while cut off,
/// confirms a read index from its own old commit, below a write the new leader acknowledged
/// before the read began (L12 a). The same schedule without the bug never confirms it
/// (`hibernation::a_read_at_a_sleeping_leader_deposed_meanwhile_never_confirms_its_old_commit`).
#[tokio::test]
async fn planted_hibernated_leader_reads_locally_confirms_a_stale_read() {
    let (acknowledged, answer) = crate::hibernation::read_at_a_deposed_sleeping_leader(47, true).await;
    let index = answer.expect("answered at once").expect("confirmed");
    assert!(index < acknowledged, "the planted bug confirmed {index}, not below the acknowledged {acknowledged}");
}
