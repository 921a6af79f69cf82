//! Setting up a topic for a command: create it if it is missing, and wait until every partition has a leader.

use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClientError, TopicConfig};

/// Waits until every partition of `topic` has a leader.
pub async fn wait_for_leaders(admin: &Admin, topic: &str, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let leaderless = match admin.describe_topic(topic).await {
            Ok(info) => info.partitions.iter().filter(|p| p.leader == 0 || p.leader_term == 0).count(),
            Err(error) if tokio::time::Instant::now() < deadline && error.is_retriable() => usize::MAX,
            Err(error) => return Err(error.to_string()),
        };
        if leaderless == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("topic {topic:?}: partitions still without a leader after {} s", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `topic` unless it exists; `Ok(true)` when this call created it. Waits for leaders.
pub async fn ensure_topic(bootstrap: &str, topic: &str, partitions: u32, replication_factor: u32) -> Result<bool, String> {
    let admin = Admin::new(&[bootstrap]).map_err(|e| e.to_string())?;
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
