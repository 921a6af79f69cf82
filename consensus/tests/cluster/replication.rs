//! Elections, replication and the group lifecycle on a healthy cluster (and one crash).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use odradek_consensus::{EntryMeta, ProposeError};
use odradek_log::{CrashMode, EntryKind};

use crate::harness::Cluster;

#[tokio::test]
async fn three_nodes_elect_propose_and_apply_identically() {
    let mut cluster = Cluster::new(11, 3, &[0, 1, 2, 7]).await;
    cluster.elect_all().await;
    let outcomes = cluster.propose_and_commit(12, "a").await;
    assert_eq!(outcomes.len(), 4 * 12);
    cluster.converge().await;
    for &group in &cluster.groups {
        let applied = cluster.applied_payloads(group);
        let data: Vec<&Bytes> = applied.iter().filter(|(kind, _)| *kind != EntryKind::Noop).map(|(_, p)| p).collect();
        let expected: Vec<String> = (0..12).map(|i| format!("a g{group} #{i}")).collect();
        assert_eq!(data.iter().map(|p| String::from_utf8(p.to_vec()).unwrap()).collect::<Vec<_>>(), expected);
    }
    // A follower refuses proposals definitely.
    let leader = cluster.leader(1).unwrap();
    let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let outcome = cluster.nodes.get_mut(&follower).unwrap().propose(1, Bytes::from_static(b"x"), EntryMeta::Command).await;
    let error = outcome.unwrap_err();
    assert!(matches!(error, ProposeError::NotLeader { leader: hint, .. } if hint == leader), "{error}");
    assert!(error.is_definite());
    let empty = EntryMeta::Data { record_count: 0, max_timestamp: 0 };
    let error = cluster.nodes.get_mut(&leader).unwrap().propose(1, Bytes::new(), empty).await.unwrap_err();
    assert!(matches!(error, ProposeError::Invalid { .. }) && error.is_definite(), "{error}");
    // Leader transfer to a caught-up follower.
    let leader = cluster.leader(2).unwrap();
    let target = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.nodes.get_mut(&leader).unwrap().transfer_leader(2, target).unwrap();
    cluster.run_until(100, |c| c.leader(2) == Some(target)).await;
    // Group commit: fewer log fsyncs than entries appended.
    let stats = cluster.nodes[&leader].stats();
    assert!(stats.log_syncs < stats.entries_appended, "{stats:?}");
}

// F-S9: a follower whose disk is at its reserve drops appends (as if lost) instead of failing
// its round on ENOSPC and stopping; the group commits on the others, and once there is room
// again the follower catches up.
#[tokio::test]
async fn a_follower_at_its_disk_reserve_drops_appends_and_catches_up_later() {
    let mut cluster = Cluster::new(17, 3, &[4]).await;
    cluster.elect_all().await;
    let leader = cluster.leader(4).unwrap();
    let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let budget = Arc::new(AtomicI64::new(0));
    cluster.entry_budgets.insert(follower, budget.clone());
    cluster.crash(follower, CrashMode::Process);
    cluster.start(follower).await;
    cluster.elect_all().await;
    if cluster.leader(4) == Some(follower) {
        let other = *cluster.nodes.keys().find(|&&id| id != follower).unwrap();
        cluster.nodes.get_mut(&follower).unwrap().transfer_leader(4, other).unwrap();
        cluster.run_until(200, |c| c.leader(4) == Some(other)).await;
    }
    let leader = cluster.leader(4).unwrap();
    cluster.propose_and_commit(20, "full").await;
    for _ in 0..100 {
        cluster.step().await; // heartbeats: the leader keeps retrying the follower
    }
    let commit = cluster.nodes[&leader].status(4).unwrap().commit;
    let behind = cluster.nodes[&follower].status(4).unwrap().last_index;
    assert!(behind < commit, "the full follower took entries: last index {behind}, commit {commit}");
    assert!(
        cluster.nodes[&follower].stats().appends_refused_disk_low > 0,
        "{:?} {:?} leader {leader} follower {follower}",
        cluster.nodes[&follower].stats(),
        cluster.nodes[&follower].status(4)
    );
    assert!(cluster.nodes.contains_key(&follower), "the full follower stays up");
    budget.store(i64::MAX, Ordering::Release);
    cluster.converge().await;
    assert_eq!(cluster.recorded.lock().unwrap().applied[&(follower, 4)], cluster.nodes[&leader].status(4).unwrap().commit);
}

#[tokio::test]
async fn a_node_crashed_with_power_loss_restarts_and_catches_up() {
    let mut cluster = Cluster::new(5, 3, &[0, 3, 4]).await;
    cluster.elect_all().await;
    cluster.propose_and_commit(10, "before").await;
    cluster.converge().await;
    // Crash a node that leads some group if there is one: the others must re-elect.
    let victim = cluster.leader(3).unwrap();
    cluster.crash(victim, CrashMode::PowerLoss);
    cluster.elect_all().await;
    cluster.propose_and_commit(10, "during").await;
    cluster.start(victim).await;
    cluster.propose_and_commit(5, "after").await;
    cluster.converge().await;
    let recorded = cluster.recorded.lock().unwrap();
    for &group in &cluster.groups {
        let applied = recorded.applied[&(victim, group)];
        assert!(applied >= 25, "group {group}: the restarted node applied only {applied}");
    }
}

#[tokio::test]
async fn groups_are_created_and_removed_while_running() {
    let mut cluster = Cluster::new(3, 3, &[0]).await;
    cluster.elect_all().await;
    for node in cluster.nodes.values_mut() {
        node.create_group(9, &[1, 2, 3], 0, 0).await.unwrap();
    }
    cluster.groups.push(9);
    cluster.elect_all().await;
    cluster.propose_and_commit(3, "x").await;
    let leader = cluster.leader(9).unwrap();
    let mut pending = cluster.propose(9, "never appended".into(), EntryMeta::Command);
    assert!(cluster.nodes.get_mut(&leader).unwrap().remove_group(9));
    let error = pending.try_outcome().expect("resolved on removal").unwrap_err();
    assert_eq!(error, ProposeError::Stopped(9));
    assert!(error.is_definite());
    for node in cluster.nodes.values_mut() {
        node.remove_group(9);
    }
    cluster.groups.retain(|&g| g != 9);
    cluster.propose_and_commit(3, "y").await;
}

#[tokio::test]
async fn commit_is_persisted_lazily_within_its_lag_bound() {
    use odradek_consensus::node::COMMIT_PERSIST_LAG_MAX;
    let mut cluster = Cluster::new(17, 3, &[4]).await;
    cluster.elect_all().await;
    let saves_before: u64 = cluster.nodes.values().map(|n| n.stats().hard_state_saves).sum();
    let count = COMMIT_PERSIST_LAG_MAX as usize + 200;
    cluster.propose_and_commit(count, "lazy").await;
    cluster.converge().await;
    // The bound only covers what was applied by an earlier round.
    cluster.step().await;
    let saves: u64 = cluster.nodes.values().map(|n| n.stats().hard_state_saves).sum::<u64>() - saves_before;
    assert!(saves <= 2 * 3, "commit-only changes fsynced the hard state {saves} times");
    for (id, node) in &cluster.nodes {
        let commit = node.status(4).unwrap().commit;
        let durable = node.durable_state(4).unwrap().0.commit;
        assert!(durable <= commit && commit - durable <= COMMIT_PERSIST_LAG_MAX, "node {id}: durable commit {durable}, commit {commit}");
        assert!(durable >= COMMIT_PERSIST_LAG_MAX, "node {id}: durable commit {durable} never advanced");
    }
}
