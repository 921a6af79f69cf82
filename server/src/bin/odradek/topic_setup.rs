//! Setting up a topic for a command: create it if it is missing, and wait until every partition has a leader.

use std::time::Duration;

use odradek_client::admin::PartitionState;
use odradek_client::cluster::PartitionInfo;
use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClientError, TopicConfig};

/// Waits until every partition of `topic` has a leader: one a replica reports with its term.
/// The node answering the metadata may not host a partition; where it gives no term (a node
/// without the answer of the partition's replicas only guesses), the replicas are asked
/// directly, so the wait never hangs on one node's view.
pub async fn wait_for_leaders(admin: &Admin, topic: &str, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // `None`: not described this time (a retriable error).
        let leaderless: Option<Vec<u32>> = match admin.describe_topic(topic).await {
            Ok(info) => {
                let mut leaderless = Vec::new();
                for partition in info.partitions.iter().filter(|p| p.leader == 0 || p.leader_term == 0) {
                    if !a_replica_reports_a_leader(admin, topic, partition).await {
                        leaderless.push(partition.partition);
                    }
                }
                Some(leaderless)
            }
            Err(error) if tokio::time::Instant::now() < deadline && error.is_retriable() => None,
            Err(error) => return Err(error.to_string()),
        };
        if leaderless.as_ref().is_some_and(Vec::is_empty) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let which = leaderless.map_or("some partitions".to_string(), |partitions| format!("partitions {partitions:?}"));
            return Err(format!("topic {topic:?}: {which} still without a leader after {} s", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether one of `partition`'s replicas reports a leader of it, in a term.
async fn a_replica_reports_a_leader(admin: &Admin, topic: &str, partition: &PartitionInfo) -> bool {
    let brokers = admin.cluster().metadata().brokers;
    for address in partition.replicas.iter().filter_map(|replica| brokers.get(replica)) {
        let Ok(report) = admin.describe_node(address).await else { continue };
        let reported = |state: &PartitionState| state.topic == topic && state.partition == partition.partition;
        if report.partitions.iter().any(|state| reported(state) && state.leader != 0 && state.term != 0) {
            return true;
        }
    }
    false
}

/// Creates `topic` unless it exists; `Ok(true)` when this call created it. Waits for leaders.
pub async fn ensure_topic(admin: Admin, topic: &str, partitions: u32, replication_factor: u32) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let created = loop {
        match admin.create_topic(topic, partitions, replication_factor, TopicConfig::default()).await {
            Ok(()) => break true,
            Err(ClientError::Server { code: ErrorCode::TOPIC_ALREADY_EXISTS, .. }) => break false,
            // A fresh cluster is still electing its controller.
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(format!("creating topic {topic:?}: {error}")),
        }
    };
    wait_for_leaders(&admin, topic, Duration::from_secs(30)).await?;
    Ok(created)
}
