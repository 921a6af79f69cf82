//! Membership changes: learners, joint consensus, a refused second change, and the
//! configuration surviving a restart.

use odradek_consensus::{EntryMeta, NodeId, ProposeError};
use odradek_log::CrashMode;

use crate::harness::Cluster;

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

fn conf_change(changes: &[(raft::eraftpb::ConfChangeType, NodeId)]) -> raft::eraftpb::ConfChangeV2 {
    let mut change = raft::eraftpb::ConfChangeV2::default();
    for &(change_type, node_id) in changes {
        let mut single = raft::eraftpb::ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = node_id;
        change.mut_changes().push(single);
    }
    change
}

#[tokio::test]
async fn conf_changes_commit_persist_and_survive_a_restart() {
    use raft::eraftpb::ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
    let mut cluster = Cluster::new(21, 3, &[0]).await;
    cluster.elect_all().await;
    let leader = cluster.leader(0).unwrap();
    let mut proposal = cluster.nodes.get_mut(&leader).unwrap().propose_conf_change(0, conf_change(&[(AddLearnerNode, 4)]));
    // A second change while the first is unapplied: raft replaces it with an empty entry.
    let mut refused = cluster.nodes.get_mut(&leader).unwrap().propose_conf_change(0, conf_change(&[(AddLearnerNode, 5)]));
    cluster.run_until(200, |c| c.nodes.values().all(|n| n.conf_state(0).unwrap().learners == vec![4])).await;
    assert!(proposal.try_outcome().unwrap().is_ok());
    let error = refused.try_outcome().unwrap().unwrap_err();
    assert!(matches!(error, ProposeError::Busy { .. }) && error.is_definite(), "{error}");

    // Joint consensus: replace a follower by node 4 (a learner until now) in one change.
    let removed = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();
    let change = conf_change(&[(AddNode, 4), (RemoveNode, removed)]);
    let mut proposal = cluster.nodes.get_mut(&leader).unwrap().propose_conf_change(0, change);
    let mut expected: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&id| id != removed).collect();
    expected.sort_unstable();
    let remaining: Vec<NodeId> = expected.iter().copied().filter(|&id| id != 4).collect();
    let left_joint = |c: &Cluster| {
        remaining.iter().all(|id| {
            let conf = c.nodes[id].conf_state(0).unwrap();
            sorted(&conf.voters) == expected && conf.voters_outgoing.is_empty() && conf.learners.is_empty()
        })
    };
    cluster.run_until(300, left_joint).await;
    assert!(proposal.try_outcome().unwrap().is_ok());

    // The configuration is durable: a restarted replica comes back with it.
    let survivor = *remaining.iter().find(|&&id| id != leader).unwrap();
    cluster.crash(survivor, CrashMode::PowerLoss);
    cluster.start(survivor).await;
    let conf = cluster.nodes[&survivor].conf_state(0).unwrap();
    assert_eq!((sorted(&conf.voters), conf.learners), (expected.clone(), vec![]));
    // The two remaining voters (of three, one of them absent) still commit.
    cluster.crash(removed, CrashMode::Process);
    let mut committed = false;
    for attempt in 0..20 {
        cluster.run_until(500, |c| c.leader(0).is_some()).await;
        let mut proposal = cluster.propose(0, format!("after reconfiguration #{attempt}"), EntryMeta::Command);
        for _ in 0..100 {
            match proposal.try_outcome() {
                Some(outcome) => {
                    committed = outcome.is_ok();
                    break;
                }
                None => cluster.step().await,
            }
        }
        if committed {
            break;
        }
    }
    assert!(committed, "voters {expected:?} commit nothing");
}
