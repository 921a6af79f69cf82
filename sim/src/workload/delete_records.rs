//! DeleteRecords under faults (plan field `delete_records`, issue 16): while the nemesis runs,
//! a deleter deletes records of the checked topic `t` below a point between half and three
//! quarters of a random partition's high watermark (ListOffsets latest), about once a second,
//! and records each call as a `delete-records` op of the history, as the Jepsen harness's
//! deleter does (`odradek_jepsen::harness::workload::deleter_worker`). The shared checker holds
//! it to **DR1** (an acknowledged deletion holds): an ok deletion reports a log start at least its
//! offset, and no consumer that started polling after it (the final drain's included, which
//! reads every partition from its log start after the heal) returns a record below it. Records
//! a deletion may have removed are not counted lost (L6, L7, L13), and a consumer that resumes at
//! the new log start has not skipped (L8); the producers and consumers of `t` run beside it.
//!
//! The log start may legitimately be higher than any deletion asked (a snapshot replacing the
//! log moves it to the snapshot's end), so only the lower bound is checked. The server checks the
//! other side itself: a replica's log start never passes its high watermark (an assertion in
//! `PartitionState`, which ends the run as a panic).

use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::OffsetQuery;
use odradek_jepsen::history::{DeleteRecords, OpF, OpValue};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use crate::cluster::SimCluster;
use crate::config::TOPIC;

/// Pause between two deletions.
const STEP_PAUSE: Duration = Duration::from_millis(1_000);
/// Bound on one admin call (faults may hold it forever otherwise).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the safety phase did (for the run's notes).
#[derive(Debug, Default)]
pub struct Deletions {
    pub rounds: u64,
    /// Deletions acknowledged, and the largest offset one was acknowledged to.
    pub acked: u64,
    pub acked_before: u64,
}

/// Starts the deleter on the client node until `duration` has passed; its draws come from a
/// stream of its own (`seed`), so the other workloads' draws stay as they were.
pub fn start(client: &NodeHandle, cluster: Arc<SimCluster>, seed: u64, duration: Duration) -> JoinHandle<Deletions> {
    client.spawn(async move {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6472_5f64_656c_6574);
        let deadline = tokio::time::Instant::now() + duration;
        let mut seen = Deletions::default();
        let Some(admin) = cluster.admin() else { return seen };
        let partitions = cluster.load.partitions;
        let mut process = cluster.process();
        while tokio::time::Instant::now() + STEP_PAUSE < deadline {
            seen.rounds += 1;
            tokio::time::sleep(STEP_PAUSE).await;
            let key = rng.gen_range(0..partitions);
            let Ok(Ok(latest)) = tokio::time::timeout(STEP_TIMEOUT, admin.list_offsets(TOPIC, key, OffsetQuery::Latest)).await else {
                continue;
            };
            if latest.offset < 4 {
                continue;
            }
            let before = rng.gen_range(latest.offset / 2..=latest.offset * 3 / 4);
            let asked = DeleteRecords { key: u64::from(key), before, log_start: None };
            let handle = cluster.history().invoke(process, OpF::DeleteRecords, OpValue::DeleteRecords(asked.clone())).expect("history");
            match tokio::time::timeout(STEP_TIMEOUT, admin.delete_records(TOPIC, key, Some(before))).await {
                Ok(Ok(log_start)) => {
                    seen.acked += 1;
                    seen.acked_before = seen.acked_before.max(before);
                    let done = DeleteRecords { log_start: Some(log_start), ..asked };
                    cluster.history().ok(handle, OpValue::DeleteRecords(done)).expect("history");
                }
                Ok(Err(error)) if error.is_definite() => {
                    cluster.history().fail(handle, OpValue::DeleteRecords(asked)).expect("history");
                }
                outcome => {
                    let why = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_string(),
                    };
                    cluster.note(format!("delete-records: {TOPIC}/{key} to {before}: outcome unknown ({why})"));
                    // Possibly applied at any time from now on; the process is done (one op each).
                    cluster.history().info(handle, OpValue::DeleteRecords(asked)).expect("history");
                    process = cluster.process();
                }
            }
        }
        seen
    })
}
