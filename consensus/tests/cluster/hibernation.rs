//! Hibernation of quiet groups (`NodeConfig::hibernate`, module `node::hibernate`): quiet
//! groups fall asleep on every replica and stop sending, wake on a proposal, elect a new leader
//! when the sleeping leader's node dies, and a read barrier at a sleeping leader deposed
//! meanwhile never confirms its old commit (L12 a; the planted bug that does is in `planted`).

use odradek_consensus::{EntryMeta, NodeError};
use odradek_log::CrashMode;
use tokio::sync::oneshot;

use crate::harness::LocalCluster;

const GROUPS: [u64; 4] = [0, 1, 2, 3];

/// A hibernating 3-node cluster whose groups all elected, committed one entry each, and fell
/// asleep on every replica.
pub(crate) async fn asleep_cluster(seed: u64, planted: bool) -> LocalCluster {
    let mut cluster = LocalCluster::new_with(seed, 3, &GROUPS, |cluster| {
        cluster.hibernate = true;
        cluster.planted_hibernated_leader_reads_locally = planted;
    })
    .await;
    cluster.elect_all().await;
    cluster.propose_and_commit(2, "before").await;
    // The leader waits election_tick quiet ticks (10 here), then its followers follow.
    cluster.run_until(200, all_asleep).await;
    cluster
}

fn all_asleep(cluster: &LocalCluster) -> bool {
    cluster.nodes.values().all(|node| GROUPS.iter().all(|&group| node.is_asleep(group)))
}

#[tokio::test]
async fn quiet_groups_sleep_send_only_alive_messages_and_wake_on_a_proposal() {
    let mut cluster = asleep_cluster(41, false).await;
    let sent_before: u64 = cluster.nodes.values().map(|node| node.stats().messages_sent).sum();
    for _ in 0..100 {
        cluster.step().await;
    }
    assert!(all_asleep(&cluster), "a quiet cluster stays asleep");
    let sent: u64 = cluster.nodes.values().map(|node| node.stats().messages_sent).sum::<u64>() - sent_before;
    // Awake, each of 4 leaders would heartbeat 2 followers every 2 ticks and hear back: 400
    // messages per node in 100 steps. Asleep: one alive message per node pair every 2 ticks.
    assert_eq!(sent, 3 * 2 * 50, "only alive messages: one per other node every heartbeat_tick ticks");
    // A proposal wakes its group and commits.
    let outcomes = cluster.propose_and_commit(1, "after").await;
    assert_eq!(outcomes.len(), GROUPS.len());
    cluster.converge().await;
}

#[tokio::test]
async fn followers_elect_a_new_leader_when_the_sleeping_leaders_node_dies() {
    let mut cluster = asleep_cluster(43, false).await;
    let leader = cluster.leader(1).expect("a leader");
    let term = cluster.nodes[&leader].status(1).expect("hosted").term;
    cluster.crash(leader, CrashMode::Process);
    // The followers hear no alive message from the leader's node for an election timeout,
    // wake with the lease expired, and elect one of themselves.
    cluster.run_until(200, |c| c.leader(1).is_some_and(|new| new != leader && c.nodes[&new].status(1).unwrap().term > term)).await;
    cluster.start(leader).await;
    cluster.commit_one_eventually(1).await;
    cluster.converge().await;
}

/// A read barrier at the sleeping leader of group 1 after the other two elected a new leader
/// and committed while it was cut off, then healed: its answer, if any.
pub(crate) async fn read_at_a_deposed_sleeping_leader(seed: u64, planted: bool) -> (u64, Option<Result<u64, NodeError>>) {
    let mut cluster = asleep_cluster(seed, planted).await;
    let old = cluster.leader(1).expect("a leader");
    // Cut off, the sleeping leader does not wake (nothing asks it to), while the others elect.
    for _ in 0..200 {
        cluster.step_isolating(old).await;
        let others = cluster.nodes.iter().filter(|(&id, _)| id != old);
        if others.filter_map(|(_, node)| node.status(1)).any(|status| status.role == raft::StateRole::Leader) {
            break;
        }
    }
    let new = *cluster
        .nodes
        .keys()
        .find(|&&id| id != old && cluster.nodes[&id].status(1).unwrap().role == raft::StateRole::Leader)
        .expect("a new leader");
    let proposal = cluster.nodes.get_mut(&new).unwrap().propose(1, bytes::Bytes::from_static(b"while cut off"), EntryMeta::Command);
    for _ in 0..50 {
        cluster.step_isolating(old).await;
    }
    let appended = proposal.await.expect("committed by the two");
    assert!(cluster.nodes[&old].is_asleep(1), "the cut-off leader slept through it");
    let (reply, mut answer) = oneshot::channel();
    let now_ms = cluster.now_ms;
    cluster.nodes.get_mut(&old).unwrap().read_index(1, now_ms, reply);
    for _ in 0..100 {
        if let Ok(result) = answer.try_recv() {
            return (appended.index, Some(result));
        }
        cluster.step().await;
    }
    (appended.index, answer.try_recv().ok())
}

#[tokio::test]
async fn a_read_at_a_sleeping_leader_deposed_meanwhile_never_confirms_its_old_commit() {
    let (acknowledged, answer) = read_at_a_deposed_sleeping_leader(47, false).await;
    match answer {
        // L12 a: a confirmed read index covers every write acknowledged before the read began.
        Some(Ok(index)) => assert!(index >= acknowledged, "read index {index} below the acknowledged {acknowledged}"),
        Some(Err(error)) => assert!(matches!(error, NodeError::ReadIndexTimedOut(1)), "{error}"),
        None => panic!("no answer within 100 steps"),
    }
}

/// Each node's cached view of the groups it leads (`Node::leading`, which the server's leader
/// balancing reads instead of asking every group) is the set of groups whose status says it
/// leads, through sleep, a leader's crash, the election that follows and its restart.
#[tokio::test]
async fn the_leading_view_follows_every_leadership_change() {
    fn check_views(cluster: &LocalCluster) {
        for (id, node) in &cluster.nodes {
            let leads: std::collections::BTreeSet<u64> =
                GROUPS.iter().copied().filter(|&g| node.status(g).is_some_and(|s| s.role == raft::StateRole::Leader)).collect();
            assert_eq!(node.leading(), leads, "node {id}: the leading view differs from the groups' roles");
        }
    }
    let mut cluster = asleep_cluster(53, false).await;
    check_views(&cluster);
    assert_eq!(cluster.nodes.values().map(|node| node.leading().len()).sum::<usize>(), GROUPS.len());
    let leader = cluster.leader(1).expect("a leader");
    let term = cluster.nodes[&leader].status(1).expect("hosted").term;
    cluster.crash(leader, CrashMode::Process);
    cluster.run_until(200, |c| c.leader(1).is_some_and(|new| new != leader && c.nodes[&new].status(1).unwrap().term > term)).await;
    check_views(&cluster);
    cluster.start(leader).await;
    cluster.commit_one_eventually(1).await;
    cluster.converge().await;
    check_views(&cluster);
    assert!(!cluster.nodes[&leader].leading().contains(&1) || cluster.leader(1) == Some(leader));
}

/// Retention candidates (`Node::retention_candidates`, the only partitions the server's
/// retention pass visits with hibernation on): every group until its first check; then only
/// those that may still age out (more than one segment, retention by time), which a check far
/// enough in the future trims although they sleep (retention stays on time); then none while
/// nothing changes; then exactly the group whose log changed.
#[tokio::test]
async fn retention_candidates_are_the_groups_that_changed_or_may_age_out() {
    let mut cluster = LocalCluster::new_with(59, 3, &GROUPS, |cluster| {
        cluster.hibernate = true;
        cluster.log_config = odradek_log::LogConfig {
            segment_bytes_max: 1024,
            retention_bytes: None,
            retention_ms: Some(1_000_000),
            ..odradek_log::LogConfig::default()
        };
    })
    .await;
    cluster.elect_all().await;
    cluster.propose_and_commit(60, "segments").await;
    cluster.run_until(300, all_asleep).await;
    let all: std::collections::BTreeSet<u64> = GROUPS.into_iter().collect();
    let now_ms = cluster.now_ms;
    for node in cluster.nodes.values_mut() {
        assert_eq!(node.retention_candidates(), all, "never checked: every group is a candidate");
        for group in GROUPS {
            let report = node.enforce_retention(group, now_ms, u64::MAX, None).await.unwrap();
            assert_eq!(report.segments_deleted, 0, "nothing is a million ms old yet");
        }
        // Several segments each, retention by time: still candidates, asleep and unchanged.
        assert_eq!(node.retention_candidates(), all);
    }
    for _ in 0..50 {
        cluster.step().await;
    }
    assert!(all_asleep(&cluster));
    let later_ms = cluster.now_ms + 2_000_000;
    for node in cluster.nodes.values_mut() {
        assert_eq!(node.retention_candidates(), all, "time alone may make them due");
        for group in GROUPS {
            let report = node.enforce_retention(group, later_ms, u64::MAX, None).await.unwrap();
            assert!(report.segments_deleted > 0, "group {group}: the aged segments were not deleted");
        }
        // One segment left each: nothing can go until the log changes.
        assert!(node.retention_candidates().is_empty(), "{:?}", node.retention_candidates());
    }
    for _ in 0..50 {
        cluster.step().await;
    }
    assert!(all_asleep(&cluster));
    assert!(cluster.nodes.values().all(|node| node.retention_candidates().is_empty()));
    // A write to group 1 wakes it and changes its log on every replica: a candidate again.
    let mut proposal = cluster.propose(1, "after".into(), EntryMeta::Command);
    cluster.run_until(200, |_| proposal.try_outcome().is_some()).await;
    cluster.converge().await;
    for (id, node) in &cluster.nodes {
        assert_eq!(node.retention_candidates(), [1].into_iter().collect(), "node {id}");
    }
}
