//! Followers that fall behind: served from the log when the entry cache is small, and from a
//! metadata snapshot once retention deleted what they miss.

use bytes::Bytes;
use odradek_consensus::EntryMeta;
use odradek_log::CrashMode;

use crate::harness::LocalCluster;

/// Three nodes hosting `group` with 1 KiB segments and retention by size 0 (every sealed segment
/// may go), restarted with that config and a leader elected.
async fn retention_cluster(seed: u64, group: u64) -> LocalCluster {
    let mut cluster = LocalCluster::new(seed, 3, &[group]).await;
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
    cluster
}

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
    let mut cluster = retention_cluster(13, 6).await;
    cluster.propose_and_commit(10, "kept").await;
    cluster.converge().await;
    let leader = cluster.leader(6).unwrap();
    let lagger = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.crash(lagger, CrashMode::Process);
    cluster.propose_and_commit(60, "retained away").await;
    let now_ms = cluster.now_ms;
    let mut deleted = 0;
    for node in cluster.nodes.values_mut() {
        deleted += node.enforce_retention(6, now_ms, u64::MAX, None).await.unwrap().segments_deleted;
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
    let mut cluster = retention_cluster(17, 7).await;
    cluster.propose_and_commit(60, "retained up to a bound").await;
    cluster.converge().await;
    let leader = cluster.leader(7).unwrap();
    let now_ms = cluster.now_ms;
    let node = cluster.nodes.get_mut(&leader).unwrap();
    // A bound at the log start keeps everything; a bound of 30 keeps the segment holding 30.
    assert_eq!(node.enforce_retention(7, now_ms, 1, None).await.unwrap().segments_deleted, 0);
    let deleted = node.enforce_retention(7, now_ms, 30, None).await.unwrap().segments_deleted;
    let first = node.durable_state(7).unwrap().1;
    assert!(deleted > 0 && first > 1, "nothing below index 30 was deleted");
    assert!(first <= 30, "retention deleted index 30 (the log starts at {first})");
    // Without a bound, retention goes up to the commit.
    node.enforce_retention(7, now_ms, u64::MAX, None).await.unwrap();
    assert!(node.durable_state(7).unwrap().1 > first, "no bound, yet nothing more was deleted");
}

/// The state machine's start state (a data partition's producer table) bounds retention, is
/// saved before the entries that built it go, travels to a follower in the snapshot, and comes
/// back to the state machine when a node restarts from a log that starts after it.
#[tokio::test]
async fn the_start_state_bounds_retention_travels_in_snapshots_and_survives_restarts() {
    let mut cluster = retention_cluster(19, 6).await;
    cluster.propose_and_commit(10, "kept").await;
    cluster.converge().await;
    let leader = cluster.leader(6).unwrap();
    let lagger = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.crash(lagger, CrashMode::Process);
    cluster.propose_and_commit(60, "retained away").await;
    let now_ms = cluster.now_ms;
    let state = |as_of_index: u64| odradek_log::StartState { as_of_index, bytes: format!("table as of {as_of_index}").into() };
    // A start state as of index 30 keeps the segment holding 31.
    for node in cluster.nodes.values_mut() {
        node.enforce_retention(6, now_ms, u64::MAX, Some(state(30))).await.unwrap();
        let first = node.durable_state(6).unwrap().1;
        assert!(first <= 31, "the log starts at {first} with a start state as of 30");
    }
    let applied = cluster.nodes[&leader].status(6).unwrap().applied;
    for node in cluster.nodes.values_mut() {
        node.enforce_retention(6, now_ms, u64::MAX, Some(state(applied))).await.unwrap();
    }
    let leader_first = cluster.nodes[&leader].durable_state(6).unwrap().1;
    assert!(leader_first > 31, "the leader's log still starts at {leader_first}");

    cluster.start(lagger).await;
    cluster.converge().await;
    let installed = cluster.recorded.lock().unwrap().restored.iter().filter(|r| r.0 == lagger).cloned().collect::<Vec<_>>();
    let (_, _, index, start) = installed.last().cloned().expect("the lagger installed a snapshot");
    assert!(index >= leader_first - 1 && index <= applied, "snapshot at {index}");
    assert_eq!(start, Some(state(applied)), "the snapshot carried the leader's start state");

    // A restart of the lagger (power loss) hands the saved state back before the replay.
    cluster.crash(lagger, CrashMode::PowerLoss);
    cluster.start(lagger).await;
    let reopened = cluster.recorded.lock().unwrap().restored.iter().filter(|r| r.0 == lagger).last().cloned().unwrap();
    assert_eq!(reopened.3, Some(state(applied)), "the restart restored the start state");
    cluster.propose_and_commit(5, "after restart").await;
    cluster.converge().await;
    cluster.check_logs().await;
}

/// A follower wiped and restarted as a new incarnation of its data directory (issue 15, R11):
/// its leader forgets what the old incarnation acknowledged as soon as a batch from the new one
/// arrives, before raft steps it (module `rejoined`), so it neither counts the empty replica as
/// holding the log nor waits for a heartbeat to show it behind (which deposes the leader: module
/// `suspect`). The new incarnation then catches up from its own acknowledgements.
#[tokio::test]
async fn a_leader_forgets_what_a_wiped_peer_acknowledged() {
    let group = 5;
    let mut cluster = LocalCluster::new(11, 3, &[group]).await;
    for node in cluster.voters.clone() {
        cluster.network.set_data_incarnation(node, 100 + node);
    }
    cluster.elect_all().await;
    cluster.propose_and_commit(10, "before").await;
    let leader = cluster.leader(group).unwrap();
    let wiped = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let matched = |cluster: &LocalCluster| cluster.nodes[&leader].status(group).unwrap().progress[&wiped].0;
    assert!(matched(&cluster) >= 10, "the follower acknowledged the entries");
    cluster.crash(wiped, CrashMode::Process);
    cluster.restore_disk(wiped, &odradek_log::DiskImage::default());
    cluster.network.set_data_incarnation(wiped, 200 + wiped);
    cluster.start(wiped).await;
    // Nothing reaches the wiped node, so no heartbeat shows it behind; the leader hears its
    // new incarnation (its pre-votes) and keeps its quorum with the third node.
    for _ in 0..200 {
        if cluster.nodes[&leader].stats().progress_reset_rejoined > 0 {
            break;
        }
        cluster.round_all().await;
        for envelope in cluster.network.take_in_flight() {
            if (envelope.from == wiped && envelope.to == leader) || (envelope.from != wiped && envelope.to != wiped) {
                cluster.network.deliver(envelope);
            }
        }
    }
    assert_eq!(cluster.nodes[&leader].stats().progress_reset_rejoined, 1, "one group led, reset once");
    assert_eq!(matched(&cluster), 0, "nothing the new incarnation holds is known yet");
    assert_eq!(cluster.leader(group), Some(leader));
    cluster.converge().await;
    assert_eq!(cluster.leader(group), Some(leader), "the wiped node deposed no leader");
    // Its last acknowledgements may still be in flight when it has applied everything.
    let commit = cluster.nodes[&leader].status(group).unwrap().commit;
    cluster.run_until(20, |c| c.nodes[&leader].status(group).unwrap().progress[&wiped].0 >= commit).await;
    assert!(matched(&cluster) >= commit, "caught up from its own acknowledgements");
}

/// Issue 15: a learner catching up under the catch-up throttle. Its leader delays the appends
/// over the budget instead of dropping them (raft-rs counted each in flight when it made it): a
/// dropped one left the learner a gap, it rejected what followed, and the leader probed back
/// and resent, re-reading the log, at a fraction of the rate. Here the learner catches up at
/// about the rate, with no rejection but the first probe's (its log is empty).
#[tokio::test]
async fn a_throttled_learner_catches_up_at_the_rate_without_rejections() {
    const GROUP: u64 = 5;
    const RATE_BYTES_PER_SECOND: u64 = 2_000_000;
    const ENTRY_BYTES: usize = 32 * 1024;
    const ENTRIES: usize = 200; // 6.5 MB: 1 s of burst, then ~2.3 s at the rate
                                // A small entry cache: what the leader sends the learner it reads from its log, as a
                                // leader of a partition much larger than its cache does.
    let mut cluster = LocalCluster::new_with(17, 3, &[GROUP], |c| {
        c.catch_up_bytes_per_second = Some(RATE_BYTES_PER_SECOND);
        c.log_config.cache_bytes_max = 256 * 1024;
    })
    .await;
    cluster.elect_all().await;
    let leader = cluster.leader(GROUP).unwrap();
    let mut proposals = Vec::new();
    for chunk in 0..ENTRIES / 20 {
        for i in 0..20 {
            let payload = Bytes::from(vec![(chunk * 20 + i) as u8; ENTRY_BYTES]);
            let meta = EntryMeta::Data { record_count: 1, timestamp_max: i as i64 };
            proposals.push(cluster.nodes.get_mut(&leader).unwrap().propose(GROUP, payload, meta));
        }
        cluster.run_until(200, |c| c.nodes[&leader].status(GROUP).is_some_and(|s| s.commit == s.last_index)).await;
    }
    assert!(proposals.iter_mut().all(|p| matches!(p.try_outcome(), Some(Ok(_)))), "every entry committed");
    let target = cluster.nodes[&leader].status(GROUP).unwrap().last_index + 1; // and the conf change
    assert!(target as usize > ENTRIES, "the entries committed");

    cluster.joining.insert(4);
    cluster.start(4).await;
    let rejections_before = cluster.append_rejections.load(std::sync::atomic::Ordering::Relaxed);
    let mut change = raft::eraftpb::ConfChangeV2::default();
    let mut single = raft::eraftpb::ConfChangeSingle::default();
    single.set_change_type(raft::eraftpb::ConfChangeType::AddLearnerNode);
    single.node_id = 4;
    change.mut_changes().push(single);
    let mut added = cluster.nodes.get_mut(&leader).unwrap().propose_conf_change(GROUP, change);
    let started_ms = cluster.now_ms;
    let fetches_before = cluster.nodes[&leader].stats().log_fetches;
    cluster.run_until(1000, |c| c.nodes[&4].status(GROUP).is_some_and(|s| s.commit >= target)).await;
    let elapsed_ms = cluster.now_ms - started_ms;
    assert!(matches!(added.try_outcome(), Some(Ok(_))), "the learner was added");
    let rejections = cluster.append_rejections.load(std::sync::atomic::Ordering::Relaxed) - rejections_before;
    let bytes = (ENTRIES * ENTRY_BYTES) as u64;
    let burst_free_ms = ((bytes - RATE_BYTES_PER_SECOND) * 1000 / RATE_BYTES_PER_SECOND) as i64;
    let stats = cluster.nodes[&leader].stats();
    let fetches = stats.log_fetches - fetches_before;
    eprintln!(
        "caught up in {elapsed_ms} ms (at the rate: {burst_free_ms} ms), {rejections} rejections, {fetches} log fetches, leader {stats:?}"
    );
    assert!(rejections <= 1, "{rejections} appends rejected: the learner saw gaps");
    assert!(elapsed_ms >= burst_free_ms, "caught up in {elapsed_ms} ms: faster than the throttle allows");
    assert!(elapsed_ms <= burst_free_ms * 3 / 2 + 500, "caught up in {elapsed_ms} ms: well under the rate");
    assert!(stats.catch_up.appends_delayed > 0, "the throttle held nothing back: {stats:?}");
    assert_eq!(stats.catch_up.appends_dropped, 0, "{stats:?}");
    cluster.converge().await;
    cluster.check_logs().await;
}
