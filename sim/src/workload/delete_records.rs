//! DeleteRecords under faults (plan field `delete_records`, issue 16): while the nemesis runs,
//! one task writes records to its own topic `dr` (1 partition, 3 replicas) and, after each
//! acknowledged record, deletes the records below it (`Admin::delete_records`), then asks the
//! partition's leader for its log start (ListOffsets earliest). Its invariant:
//!
//! - **DR1** (an acknowledged deletion holds): once a delete-records to offset X has been
//!   acknowledged, every ListOffsets earliest invoked afterwards answers at least X, through
//!   leader changes, crashes and restarts; after the heal the log start is at least the largest
//!   acknowledged X. A deletion that failed or timed out may or may not have happened, so it
//!   constrains nothing.
//!
//! The log start may legitimately be higher than any deletion asked (a snapshot replacing the
//! log moves it to the snapshot's end), so only the lower bound is checked. The server checks the
//! other side itself: a replica's log start never passes its high watermark (an assertion in
//! `PartitionState`, which ends the run as a panic).
//!
//! Nothing here touches the checked topic `t` or the history.

use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::wire::proto::ErrorCode;
use odradek_client::{ClientError, OffsetQuery, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use tokio::task::JoinHandle;

use crate::cluster::SimCluster;
use crate::config::LIVENESS_BOUND;

/// The topic records are written to and deleted from.
pub const TOPIC: &str = "dr";
/// Pause between two rounds.
const STEP_PAUSE: Duration = Duration::from_millis(200);
/// Bound on one admin call or send (faults may hold it forever otherwise).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the safety phase saw: the largest acknowledged deletion and the DR1 violations.
#[derive(Debug, Default)]
pub struct Deletions {
    /// The largest offset a delete-records was acknowledged to (0: none).
    pub acked_before: u64,
    pub acked: u64,
    pub rounds: u64,
    pub problems: Vec<String>,
}

async fn producer(cluster: &SimCluster) -> Option<Producer> {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig {
        request_timeout: STEP_TIMEOUT,
        delivery_timeout: Duration::from_secs(10),
        cluster: cluster.client_config(),
        ..ProducerConfig::default()
    };
    Producer::new(&addresses, config).await.ok()
}

/// One record to partition 0; its offset once acknowledged.
async fn write(producer: &Producer, round: u64) -> Option<u64> {
    let delivery = producer.send(ProducerRecord::new(TOPIC, format!("d{round}")).partition(0)).await.ok()?;
    tokio::time::timeout(STEP_TIMEOUT, delivery).await.ok()?.ok().and_then(|delivered| delivered.offset)
}

/// Starts the writes and deletions on the client node until `duration` has passed.
pub fn start(client: &NodeHandle, cluster: Arc<SimCluster>, duration: Duration) -> JoinHandle<Deletions> {
    client.spawn(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let mut seen = Deletions::default();
        let Some(admin) = cluster.admin() else { return seen };
        let mut created = false;
        let mut producer = None;
        while tokio::time::Instant::now() < deadline {
            seen.rounds += 1;
            tokio::time::sleep(STEP_PAUSE).await;
            if !created {
                let outcome = tokio::time::timeout(STEP_TIMEOUT, admin.create_topic(TOPIC, 1, 3, TopicConfig::default())).await;
                created = matches!(outcome, Ok(Ok(()) | Err(ClientError::Server { code: ErrorCode::TOPIC_ALREADY_EXISTS, .. })));
                continue;
            }
            if producer.is_none() {
                producer = self::producer(&cluster).await;
            }
            let Some(writer) = &producer else { continue };
            let Some(offset) = write(writer, seen.rounds).await else { continue };
            let before = offset + 1;
            match tokio::time::timeout(STEP_TIMEOUT, admin.delete_records(TOPIC, 0, Some(before))).await {
                Ok(Ok(log_start)) => {
                    seen.acked += 1;
                    seen.acked_before = seen.acked_before.max(before);
                    if log_start < before {
                        seen.problems.push(format!("DR1: delete-records to {before} acknowledged with log start {log_start}"));
                    }
                }
                outcome => cluster.note(format!("delete-records: {TOPIC}/0 to {before}: {outcome:?}")),
            }
            // Invoked after every acknowledged deletion so far completed.
            if let Ok(Ok(earliest)) = tokio::time::timeout(STEP_TIMEOUT, admin.list_offsets(TOPIC, 0, OffsetQuery::Earliest)).await {
                if earliest.offset < seen.acked_before {
                    seen.problems.push(format!(
                        "DR1: ListOffsets earliest of {TOPIC}/0 answered {} after a delete-records to {} was acknowledged (round {})",
                        earliest.offset, seen.acked_before, seen.rounds
                    ));
                }
            }
        }
        if let Some(producer) = producer {
            let _ = tokio::time::timeout(STEP_TIMEOUT, producer.close()).await;
        }
        seen
    })
}

/// After the heal: the log start is at least the largest acknowledged deletion (DR1); the
/// problems of the run and of this check.
pub async fn final_check(client: &NodeHandle, cluster: Arc<SimCluster>, seen: Deletions) -> Vec<String> {
    cluster.note(format!("delete-records: {} rounds, {} deletions acknowledged, up to {}", seen.rounds, seen.acked, seen.acked_before));
    let mut problems = seen.problems;
    if seen.acked == 0 {
        return problems;
    }
    let acked_before = seen.acked_before;
    let checked = client
        .spawn(async move {
            let admin = cluster.admin()?;
            let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
            while tokio::time::Instant::now() < deadline {
                if let Ok(Ok(earliest)) = tokio::time::timeout(STEP_TIMEOUT, admin.list_offsets(TOPIC, 0, OffsetQuery::Earliest)).await {
                    return Some(earliest.offset);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        })
        .await
        .expect("delete-records check task");
    match checked {
        Some(earliest) if earliest < acked_before => problems
            .push(format!("DR1: after the heal {TOPIC}/0 starts at {earliest}, below the acknowledged delete-records to {acked_before}")),
        Some(_) => {}
        None => problems.push(format!("V1: no log start of {TOPIC}/0 within {LIVENESS_BOUND:?} after the heal")),
    }
    problems
}
