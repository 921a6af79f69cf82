//! The reassignment plan against a model of raft's configuration changes: every path ends at
//! the target, promotes only caught-up learners, and never leaves a leader outside the target
//! to leave the joint configuration (F-M1, F-M2).

use std::collections::BTreeMap;

use super::*;

fn conf(voters: &[NodeId], outgoing: &[NodeId], learners: &[NodeId]) -> ConfState {
    let mut conf = ConfState::default();
    conf.set_voters(voters.to_vec());
    conf.set_voters_outgoing(outgoing.to_vec());
    conf.set_learners(learners.to_vec());
    conf
}

/// A leader's status: commit at 10, `matched` per replica.
fn status(matched: &[(NodeId, u64)]) -> GroupStatus {
    GroupStatus {
        role: StateRole::Leader,
        leader: 0,
        term: 2,
        commit: 10,
        applied: 10,
        last_index: 12,
        progress: matched.iter().map(|&(node, index)| (node, (index, index + 1))).collect::<BTreeMap<_, _>>(),
        suspect: false,
    }
}

#[test]
fn each_phase_names_its_step() {
    let all_caught_up = status(&[(1, 12), (2, 12), (3, 12), (4, 12)]);
    // Step 1: the new node joins as a learner.
    assert_eq!(plan(1, &[2, 3, 4], &conf(&[1, 2, 3], &[], &[]), &all_caught_up), Step::AddLearners(vec![4]));
    // Step 2 waits for the learner to hold everything committed (commit 10).
    let lagging = status(&[(1, 12), (2, 12), (3, 12), (4, 9)]);
    assert_eq!(plan(1, &[2, 3, 4], &conf(&[1, 2, 3], &[], &[4]), &lagging), Step::WaitCatchUp(vec![4]));
    let at_commit = status(&[(1, 12), (2, 12), (3, 12), (4, 10)]);
    assert_eq!(plan(1, &[2, 3, 4], &conf(&[1, 2, 3], &[], &[4]), &at_commit), Step::EnterJoint { promote: vec![4], remove: vec![1] });
    // Step 3: the leaving leader (1) hands leadership to the first caught-up voter of the target.
    let joint = conf(&[2, 3, 4], &[1, 2, 3], &[]);
    let two_behind = status(&[(1, 12), (2, 5), (3, 12), (4, 12)]);
    assert_eq!(plan(1, &[2, 3, 4], &joint, &two_behind), Step::TransferLeader { to: 3 });
    let none_caught_up = status(&[(1, 12), (2, 5), (3, 5), (4, 5)]);
    assert_eq!(plan(1, &[2, 3, 4], &joint, &none_caught_up), Step::WaitForSuccessor);
    // Step 4: a leader inside the target leaves the joint configuration.
    assert_eq!(plan(3, &[2, 3, 4], &joint, &all_caught_up), Step::LeaveJoint);
    // Step 5 and 6.
    assert_eq!(plan(3, &[2, 3, 4], &conf(&[2, 3, 4], &[], &[5]), &all_caught_up), Step::RemoveLearners(vec![5]));
    assert_eq!(plan(3, &[2, 3, 4], &conf(&[4, 3, 2], &[], &[]), &all_caught_up), Step::Complete);
}

#[test]
fn a_transfer_that_does_not_happen_goes_to_another_caught_up_voter() {
    let joint = conf(&[2, 3, 4], &[1, 2, 3], &[]);
    let all_caught_up = status(&[(1, 12), (2, 12), (3, 12), (4, 12)]);
    let mut tries = TransferTries::default();
    let mut asked = Vec::new();
    for _ in 0..(2 * TRANSFER_TRIES_MAX + 1) {
        let step = plan_after(1, &[2, 3, 4], &joint, &all_caught_up, tries.last(7));
        tries.note(7, &step);
        let Step::TransferLeader { to } = step else { panic!("{step:?}") };
        asked.push(to);
    }
    // Node 2, the first caught-up voter, is asked TRANSFER_TRIES_MAX times, then node 3 as often,
    // then node 2 again.
    let max = TRANSFER_TRIES_MAX as usize;
    assert!(asked[..max].iter().all(|&to| to == 2), "{asked:?}");
    assert!(asked[max..2 * max].iter().all(|&to| to == 3), "{asked:?}");
    assert_eq!(asked[2 * max], 2, "{asked:?}");
    // With no other caught-up voter, the one asked stays the one asked.
    let only_two = status(&[(1, 12), (2, 12), (3, 5), (4, 5)]);
    let mut tries = TransferTries::default();
    for _ in 0..(TRANSFER_TRIES_MAX + 2) {
        let step = plan_after(1, &[2, 3, 4], &joint, &only_two, tries.last(7));
        assert_eq!(step, Step::TransferLeader { to: 2 });
        tries.note(7, &step);
    }
    // Another step forgets the tries.
    tries.note(7, &Step::LeaveJoint);
    assert_eq!(tries.last(7), None);
}

/// Applies a step to the model configuration the way raft would (joint changes explicit).
fn apply(conf: &mut ConfState, leader: &mut NodeId, step: &Step) {
    match step {
        Step::AddLearners(nodes) => conf.learners.extend(nodes),
        Step::RemoveLearners(nodes) => conf.learners.retain(|node| !nodes.contains(node)),
        Step::EnterJoint { promote, remove } => {
            assert!(conf.voters_outgoing.is_empty());
            conf.voters_outgoing = conf.voters.clone();
            conf.learners.retain(|node| !promote.contains(node));
            conf.voters.retain(|node| !remove.contains(node));
            conf.voters.extend(promote);
        }
        Step::TransferLeader { to } => *leader = *to,
        Step::LeaveJoint => {
            assert!(conf.voters.contains(leader), "leader {leader} left the joint configuration outside the new voters");
            conf.voters_outgoing.clear();
        }
        Step::WaitCatchUp(_) | Step::WaitForSuccessor | Step::Complete => {}
    }
}

proptest::proptest! {
    // Any move between two sets of 1..=5 of 6 nodes, from any leader in the old set, with
    // replicas catching up at random, reaches the target; every promoted learner was caught up
    // when promoted, and two consecutive configurations always share a quorum (each change is
    // a learner change or goes through C_old,new).
    #[test]
    fn every_move_reaches_its_target(
        old in proptest::sample::subsequence(vec![1u64, 2, 3, 4, 5, 6], 1..=5),
        target in proptest::sample::subsequence(vec![1u64, 2, 3, 4, 5, 6], 1..=5),
        leader_pick in 0usize..5,
        catch_up in proptest::collection::vec(proptest::bool::ANY, 64),
    ) {
        proptest::prop_assume!(old != target);
        let mut leader = old[leader_pick % old.len()];
        let mut conf = conf(&old, &[], &[]);
        let mut matched: BTreeMap<NodeId, u64> = old.iter().map(|&node| (node, 10)).collect();
        let mut steps = 0;
        loop {
            steps += 1;
            proptest::prop_assert!(steps < 64, "no end: {conf:?}");
            let st = status(&matched.iter().map(|(&node, &index)| (node, index)).collect::<Vec<_>>());
            let step = plan(leader, &target, &conf, &st);
            if let Step::EnterJoint { promote, .. } = &step {
                for node in promote {
                    proptest::prop_assert!(matched.get(node).is_some_and(|&index| index >= st.commit), "{node} promoted lagging");
                }
            }
            if let Step::TransferLeader { to } = step {
                proptest::prop_assert!(target.contains(&to) && matched[&to] >= st.commit);
            }
            if step == Step::Complete {
                break;
            }
            apply(&mut conf, &mut leader, &step);
            // Learners catch up at random; nodes outside the configuration have no progress.
            for node in conf.learners.iter().chain(&conf.voters) {
                let index = matched.entry(*node).or_insert(0);
                if catch_up[(steps + *node as usize) % catch_up.len()] || steps > 32 {
                    *index = 12;
                }
            }
        }
        let mut voters = conf.voters.clone();
        voters.sort_unstable();
        let mut expected = target.clone();
        expected.sort_unstable();
        proptest::prop_assert_eq!(voters, expected);
        proptest::prop_assert!(target.contains(&leader), "leader {} is outside the target", leader);
    }
}
