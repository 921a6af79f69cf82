//! Followers that fall behind: served from the log when the entry cache is small, and from a
//! metadata snapshot once retention deleted what they miss.

use odradek_log::CrashMode;

use crate::harness::LocalCluster;

#[tokio::test]
async fn a_lagging_follower_is_served_from_the_log_when_the_cache_is_small() {
    let mut cluster = LocalCluster::new(9, 3, &[5]).await;
    cluster.log_config.cache_bytes_max = 256;
    for node in cluster.voters.clone() {
        cluster.crash(node, CrashMode::Process);
        cluster.start(node).await;
    }
    cluster.elect_all().await;
    let leader = cluster.leader(5).unwrap();
    let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.crash(follower, CrashMode::PowerLoss);
    cluster.propose_and_commit(40, "while down").await;
    assert_eq!(cluster.nodes[&leader].stats().log_fetches, 0);
    cluster.start(follower).await;
    cluster.converge().await;
    assert!(cluster.nodes[&leader].stats().log_fetches > 0, "the leader never read the log for the follower");
    assert_eq!(cluster.recorded.lock().unwrap().applied[&(follower, 5)], cluster.nodes[&leader].status(5).unwrap().commit);
}

#[tokio::test]
async fn a_follower_behind_retention_catches_up_from_a_metadata_snapshot() {
    let mut cluster = LocalCluster::new(13, 3, &[6]).await;
    cluster.log_config = odradek_log::LogConfig {
        segment_bytes_max: 1024,
        retention_bytes: Some(0),
        retention_ms: None,
        ..odradek_log::LogConfig::default()
    };
    for node in cluster.voters.clone() {
        cluster.crash(node, CrashMode::Process);
        cluster.start(node).await;
    }
    cluster.elect_all().await;
    cluster.propose_and_commit(10, "kept").await;
    cluster.converge().await;
    let leader = cluster.leader(6).unwrap();
    let lagger = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.crash(lagger, CrashMode::Process);
    cluster.propose_and_commit(60, "retained away").await;
    let now_ms = cluster.now_ms;
    let mut deleted = 0;
    for node in cluster.nodes.values_mut() {
        deleted += node.enforce_retention(6, now_ms, u64::MAX).await.unwrap().segments_deleted;
    }
    assert!(deleted > 0, "retention deleted nothing");
    let leader_first = cluster.nodes[&leader].durable_state(6).unwrap().1;
    assert!(leader_first > 12, "the leader's log still starts at {leader_first}");

    cluster.start(lagger).await;
    cluster.converge().await;
    assert!(cluster.recorded.lock().unwrap().restores >= 1, "no snapshot was installed");
    assert!(cluster.nodes[&lagger].durable_state(6).unwrap().1 > 12, "the lagger's log was not reset");
    cluster.propose_and_commit(5, "after").await;
    cluster.converge().await;
    cluster.check_logs().await;
    // The reset log and its hard state survive a power loss.
    cluster.crash(lagger, CrashMode::PowerLoss);
    cluster.start(lagger).await;
    cluster.propose_and_commit(5, "after restart").await;
    cluster.converge().await;
    cluster.check_logs().await;
}

#[tokio::test]
async fn retention_keeps_every_segment_at_or_above_the_state_machines_bound() {
    let mut cluster = LocalCluster::new(17, 3, &[7]).await;
    cluster.log_config = odradek_log::LogConfig {
        segment_bytes_max: 1024,
        retention_bytes: Some(0),
        retention_ms: None,
        ..odradek_log::LogConfig::default()
    };
    for node in cluster.voters.clone() {
        cluster.crash(node, CrashMode::Process);
        cluster.start(node).await;
    }
    cluster.elect_all().await;
    cluster.propose_and_commit(60, "retained up to a bound").await;
    cluster.converge().await;
    let leader = cluster.leader(7).unwrap();
    let now_ms = cluster.now_ms;
    let node = cluster.nodes.get_mut(&leader).unwrap();
    // A bound at the log start keeps everything; a bound of 30 keeps the segment holding 30.
    assert_eq!(node.enforce_retention(7, now_ms, 1).await.unwrap().segments_deleted, 0);
    let deleted = node.enforce_retention(7, now_ms, 30).await.unwrap().segments_deleted;
    let first = node.durable_state(7).unwrap().1;
    assert!(deleted > 0 && first > 1, "nothing below index 30 was deleted");
    assert!(first <= 30, "retention deleted index 30 (the log starts at {first})");
    // Without a bound, retention goes up to the commit.
    node.enforce_retention(7, now_ms, u64::MAX).await.unwrap();
    assert!(node.durable_state(7).unwrap().1 > first, "no bound, yet nothing more was deleted");
}
