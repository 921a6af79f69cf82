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
