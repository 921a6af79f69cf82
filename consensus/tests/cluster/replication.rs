//! Elections, replication and the group lifecycle on a healthy cluster (and one crash).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use odradek_consensus::observe::HandOverCause;
use odradek_consensus::{EntryMeta, LeadRefusals, NodeError, NodeId, ProposeError};
use odradek_log::{CrashMode, EntryKind};

use crate::harness::LocalCluster;

#[tokio::test]
async fn three_nodes_elect_propose_and_apply_identically() {
    let mut cluster = LocalCluster::new(11, 3, &[0, 1, 2, 7]).await;
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
    let empty = EntryMeta::Data { record_count: 0, timestamp_max: 0 };
    let error = cluster.nodes.get_mut(&leader).unwrap().propose(1, Bytes::new(), empty).await.unwrap_err();
    assert!(matches!(error, ProposeError::Invalid { .. }) && error.is_definite(), "{error}");
    // Leader transfer to a caught-up follower.
    let leader = cluster.leader(2).unwrap();
    let target = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    cluster.nodes.get_mut(&leader).unwrap().transfer_leader(2, target, HandOverCause::Request).unwrap();
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
    let mut cluster = LocalCluster::new(17, 3, &[4]).await;
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
        cluster.nodes.get_mut(&follower).unwrap().transfer_leader(4, other, HandOverCause::Request).unwrap();
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
    let mut cluster = LocalCluster::new(5, 3, &[0, 3, 4]).await;
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
    let mut cluster = LocalCluster::new(3, 3, &[0]).await;
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
    let mut cluster = LocalCluster::new(17, 3, &[4]).await;
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

/// Issue 19, defect 4: a leader whose disk falls below its reserve hands the leadership of its
/// groups to caught-up followers, and takes it back neither by a hand-over (as the server's
/// balancing asks for) nor otherwise while it stays low; the groups keep committing, and once
/// it has room again it catches up.
#[tokio::test]
async fn a_leader_low_on_disk_hands_leadership_away_and_does_not_take_it_back() {
    let groups = [3, 4];
    let mut cluster = LocalCluster::new(19, 3, &groups).await;
    // Room for the small entries of this test, not for the largest write: low, yet caught up.
    cluster.lead_room_bytes_min = 1024 * 1024;
    let low = 1;
    let budget = Arc::new(AtomicI64::new(i64::MAX));
    cluster.entry_budgets.insert(low, budget.clone());
    cluster.crash(low, CrashMode::Process);
    cluster.start(low).await;
    cluster.elect_all().await;
    for group in groups {
        let leader = cluster.leader(group).unwrap();
        if leader != low {
            cluster.nodes.get_mut(&leader).unwrap().transfer_leader(group, low, HandOverCause::Request).unwrap();
            cluster.run_until(200, |c| c.leader(group) == Some(low)).await;
        }
    }
    cluster.propose_and_commit(5, "before").await;

    budget.store(64 * 1024, Ordering::Release);
    cluster.run_until(300, |c| groups.iter().all(|&g| c.leader(g).is_some_and(|leader| leader != low))).await;
    assert!(cluster.nodes[&low].stats().leaderships_handed_off_disk_low >= 2, "{:?}", cluster.nodes[&low].stats());
    // Balancing asks for the hand-over back: the leader refuses it when the low node's latest
    // acknowledgement said it leads not (module `hand_over`), else the low node drops it.
    let mut refused_by_leader = 0;
    for group in groups {
        let leader = cluster.leader(group).unwrap();
        match cluster.nodes.get_mut(&leader).unwrap().transfer_leader(group, low, HandOverCause::Balance) {
            Err(NodeError::HandOverRefused { to, .. }) if to == low => refused_by_leader += 1,
            outcome => outcome.unwrap(),
        }
    }
    for _ in 0..300 {
        cluster.step().await;
        for group in groups {
            assert_ne!(cluster.leader(group), Some(low), "group {group}: the node low on disk took the leadership back");
        }
    }
    let stats = cluster.nodes[&low].stats();
    assert!(stats.transfers_refused_disk_low + refused_by_leader > 0, "{stats:?}");
    // The hand-overs asked above were given up; the healthy replicas commit without the low one.
    cluster.propose_and_commit(3, "while low").await;
    for group in groups {
        assert_ne!(cluster.leader(group), Some(low));
    }

    budget.store(i64::MAX, Ordering::Release);
    cluster.propose_and_commit(3, "after").await;
    cluster.converge().await;
}

/// Issue 15: a replica that drops hand-overs says so in its acknowledgements (consensus module
/// `hand_over`), and its leader hands it nothing: here a follower turned passive, as a node whose
/// metadata replica does not open is before it has reported itself to the controller (nothing in
/// the metadata refuses it yet). A transfer asked for it (leader balancing, a transfer request)
/// is refused at once, and a graceful shutdown's drain skips it and the replicas the owner
/// refuses (`Node::set_lead_refusals`: repairs the metadata records), waiting instead.
#[tokio::test]
async fn no_leadership_goes_to_a_passive_follower_nor_to_one_the_owner_refuses() {
    let group = 4;
    let mut cluster = LocalCluster::new(23, 3, &[group]).await;
    cluster.elect_all().await;
    let leader = cluster.leader(group).unwrap();
    let others: Vec<NodeId> = cluster.voters.iter().copied().filter(|&id| id != leader).collect();
    let (passive, healthy) = (others[0], others[1]);
    let now_ms = cluster.now_ms;
    cluster.nodes.get_mut(&passive).unwrap().host_groups_on_disk(now_ms).await.unwrap();
    cluster.propose_and_commit(3, "passive").await;
    cluster.converge().await;
    let status = cluster.nodes[&leader].status(group).unwrap();
    assert_eq!(status.progress[&passive].0, status.last_index, "caught up: only what it says keeps it out");

    let refused = cluster.nodes.get_mut(&leader).unwrap().transfer_leader(group, passive, HandOverCause::Balance);
    assert!(matches!(refused, Err(NodeError::HandOverRefused { to, .. }) if to == passive), "{refused:?}");
    // The owner refuses the healthy follower too: a drain has nobody to hand to, and waits.
    let owner = LeadRefusals { nodes: BTreeSet::new(), replicas: BTreeSet::from([(group, healthy)]) };
    cluster.nodes.get_mut(&leader).unwrap().set_lead_refusals(owner);
    assert_eq!(cluster.nodes.get_mut(&leader).unwrap().drain(), 1);
    for _ in 0..200 {
        cluster.step().await;
        assert_eq!(cluster.leader(group), Some(leader), "the drain handed the leadership to a replica that must not lead");
    }
    // Refused no more: the healthy follower takes it, never the passive one.
    cluster.nodes.get_mut(&leader).unwrap().set_lead_refusals(LeadRefusals::default());
    cluster.run_until(200, |c| c.leader(group).is_some_and(|now| now != leader)).await;
    assert_eq!(cluster.leader(group), Some(healthy));
    cluster.judge(|_| {});
    assert!(cluster.raft.borrow().hand_overs_judged() >= 1);
}
