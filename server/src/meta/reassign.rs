//! Partition reassignment in the metadata log (issue 15, F-M1/F-M2): the controller records a
//! partition's target replica set ([`MetaCommand::StartReassignment`]), the partition's leader
//! drives its raft group there (`crate::reassign`), and reports the end
//! ([`MetaCommand::CompleteReassignment`]), which makes the target the partition's replicas.
//!
//! Invariants (checked by [`MetadataState::check_reassignment_invariants`] after every apply):
//! - At most one reassignment per partition group: a second one is refused while one runs, so
//!   the leader never sees two targets.
//! - A target is 1..=[`REPLICATION_FACTOR_MAX`] distinct registered brokers, at least as many as
//!   the partition had when the move started (a move never lowers the replication factor).
//! - Every node of the current replicas or of a running target hosts the group (`groups_of`):
//!   the old replicas keep theirs until the completion, so they leave last.
//! - A group's bootstrap voters (the replica list it was created with) are remembered once its
//!   replicas change: a replica added later must create the group with the configuration its
//!   log's first conf change applies to (consensus `Node::create_group`), not the current one.
//! - Only a completion naming exactly the running target applies; anything else is refused and
//!   changes nothing but the applied index.

use odradek_consensus::{GroupId, NodeId};

use super::{MetaOutcome, MetadataState, REPLICATION_FACTOR_MAX};

/// Why a reassignment cannot start: each is definite (nothing was recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReassignRefusal {
    /// No such topic or partition.
    PartitionUnknown(String),
    /// The partition is moving already.
    InProgress(String),
    /// The replica list breaks a rule (unknown node, duplicate, too few, too many).
    Invalid(String),
}

impl ReassignRefusal {
    pub fn message(&self) -> &str {
        match self {
            ReassignRefusal::PartitionUnknown(message) | ReassignRefusal::InProgress(message) | ReassignRefusal::Invalid(message) => {
                message
            }
        }
    }
}

/// A reassignment in progress, as `cluster status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassignmentInfo {
    pub topic: String,
    pub partition: u32,
    pub group: GroupId,
    pub replicas_from: Vec<NodeId>,
    pub replicas_to: Vec<NodeId>,
}

impl MetadataState {
    /// Checks that `topic`/`partition` may move to `replicas`; its group when it may. The
    /// controller calls it before proposing, and apply calls it again (the log is the authority).
    pub fn check_reassignment(&self, topic: &str, partition: u32, replicas: &[NodeId]) -> Result<GroupId, ReassignRefusal> {
        let Some(info) = self.partition(topic, partition) else {
            return Err(ReassignRefusal::PartitionUnknown(format!("no partition {topic}/{partition}")));
        };
        if let Some(target) = self.reassignments.get(&info.group) {
            return Err(ReassignRefusal::InProgress(format!(
                "partition {topic}/{partition} is moving to {target:?} already; wait for that to finish"
            )));
        }
        if let Some(repair) = self.repairs.get(&info.group) {
            return Err(ReassignRefusal::InProgress(format!(
                "partition {topic}/{partition} is repairing its replica on node {} ({}); move it once that is done",
                repair.node,
                repair.phase.name()
            )));
        }
        if replicas.is_empty() || replicas.len() > REPLICATION_FACTOR_MAX as usize {
            return Err(ReassignRefusal::Invalid(format!("{} replicas (1..={REPLICATION_FACTOR_MAX})", replicas.len())));
        }
        if replicas.len() < info.replicas.len() {
            return Err(ReassignRefusal::Invalid(format!(
                "{} replicas for partition {topic}/{partition}, which has {}: a reassignment never lowers the replication factor",
                replicas.len(),
                info.replicas.len()
            )));
        }
        for (position, node) in replicas.iter().enumerate() {
            if replicas[..position].contains(node) {
                return Err(ReassignRefusal::Invalid(format!("node {node} is named twice")));
            }
            if !self.brokers.contains_key(node) {
                return Err(ReassignRefusal::Invalid(format!("node {node} is not a registered broker")));
            }
        }
        if replicas == info.replicas.as_slice() {
            return Err(ReassignRefusal::Invalid(format!("partition {topic}/{partition} has replicas {replicas:?} already")));
        }
        Ok(info.group)
    }

    pub(super) fn start_reassignment(&mut self, topic: &str, partition: u32, replicas: Vec<NodeId>) -> MetaOutcome {
        match self.check_reassignment(topic, partition, &replicas) {
            Err(refusal) => MetaOutcome::ReassignmentRefused(refusal),
            Ok(group) => {
                self.reassignments.insert(group, replicas);
                MetaOutcome::ReassignmentStarted { group }
            }
        }
    }

    pub(super) fn complete_reassignment(&mut self, group: GroupId, replicas: Vec<NodeId>) -> MetaOutcome {
        if self.reassignments.get(&group) != Some(&replicas) {
            return MetaOutcome::Rejected(format!("group {group} is not moving to {replicas:?}"));
        }
        let location = self.groups.get(&group).expect("a running reassignment's group is live").clone();
        let topic = self.topics.get_mut(&location.topic).expect("the group index names live topics");
        let info = &mut topic.partitions[location.partition as usize];
        assert_eq!(info.group, group);
        let replicas_from = std::mem::replace(&mut info.replicas, replicas);
        self.voters_initial.entry(group).or_insert(replicas_from);
        self.reassignments.remove(&group);
        MetaOutcome::ReassignmentCompleted
    }

    /// Forgets the reassignment state of a deleted partition group.
    pub(super) fn forget_reassignment(&mut self, group: GroupId) {
        self.reassignments.remove(&group);
        self.voters_initial.remove(&group);
    }

    pub(super) fn check_reassignment_invariants(&self) {
        for (group, target) in &self.reassignments {
            assert!(self.groups.contains_key(group), "a reassignment of a dead group {group}");
            assert!(!target.is_empty() && target.len() <= REPLICATION_FACTOR_MAX as usize);
            assert!(target.iter().enumerate().all(|(i, node)| !target[..i].contains(node)), "a target names a node twice");
        }
        for group in self.voters_initial.keys() {
            assert!(self.groups.contains_key(group), "bootstrap voters of a dead group {group}");
        }
    }

    /// The target of `group`'s running reassignment.
    pub fn reassignment_target(&self, group: GroupId) -> Option<&Vec<NodeId>> {
        self.reassignments.get(&group)
    }

    /// Every running reassignment, by group.
    pub fn reassignments(&self) -> Vec<ReassignmentInfo> {
        self.reassignments
            .iter()
            .map(|(&group, target)| {
                let (topic, info) = self.partition_of_group(group).expect("a running reassignment's group is live");
                ReassignmentInfo {
                    topic: topic.name.clone(),
                    partition: info.partition,
                    group,
                    replicas_from: info.replicas.clone(),
                    replicas_to: target.clone(),
                }
            })
            .collect()
    }

    /// The voters `group` was created with: the configuration every new replica of it starts
    /// from (its log's conf changes apply on top of it).
    pub fn voters_initial(&self, group: GroupId) -> Option<Vec<NodeId>> {
        if let Some(voters) = self.voters_initial.get(&group) {
            return Some(voters.clone());
        }
        Some(self.partition_of_group(group)?.1.replicas.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{BrokerInfo, MetaCommand, TopicSettings};

    fn step(state: &mut MetadataState, command: &MetaCommand) -> MetaOutcome {
        let index = state.applied_index() + 1;
        state.apply(index, &command.encode())
    }

    /// Brokers 1..=5, topic "t" with one partition on 1, 2, 3 (group 1).
    fn cluster() -> MetadataState {
        let mut state = MetadataState::new();
        for node_id in 1..=5 {
            let broker = BrokerInfo { node_id, client_address: format!("10.0.0.{node_id}:9092"), kafka_address: String::new() };
            assert_eq!(step(&mut state, &MetaCommand::RegisterBroker(broker)), MetaOutcome::BrokerRegistered);
        }
        let create = MetaCommand::CreateTopic { name: "t".into(), replicas: vec![vec![1, 2, 3]], settings: TopicSettings::default() };
        assert_eq!(step(&mut state, &create), MetaOutcome::TopicCreated { groups: vec![1] });
        state
    }

    fn start(replicas: &[NodeId]) -> MetaCommand {
        MetaCommand::StartReassignment { topic: "t".into(), partition: 0, replicas: replicas.to_vec() }
    }

    /// A refused command changes nothing but the applied index.
    fn assert_refused(state: &mut MetadataState, command: &MetaCommand, expected: fn(&MetaOutcome) -> bool) {
        let before = state.clone();
        let outcome = step(state, command);
        assert!(expected(&outcome), "{command:?} gave {outcome:?}");
        let mut after = state.clone();
        after.applied_index = before.applied_index;
        assert_eq!(after, before, "a refused {command:?} changed the state");
    }

    // F-M1: the whole life of a move: hosted by old and new replicas until it completes, then
    // only by the target; the bootstrap voters are remembered for later joiners.
    #[test]
    fn a_reassignment_starts_is_hosted_by_both_sets_and_completes() {
        let mut state = cluster();
        assert_eq!(step(&mut state, &start(&[2, 3, 4])), MetaOutcome::ReassignmentStarted { group: 1 });
        assert!(state.groups_of(4).contains_key(&1), "the new replica does not host the group while it moves");
        assert!(state.groups_of(1).contains_key(&1), "the old replica left before the move completed");
        assert_eq!(state.voters_initial(1), Some(vec![1, 2, 3]));
        let moving = state.reassignments();
        assert_eq!((moving[0].replicas_from.clone(), moving[0].replicas_to.clone()), (vec![1, 2, 3], vec![2, 3, 4]));

        let complete = MetaCommand::CompleteReassignment { group: 1, replicas: vec![2, 3, 4] };
        assert_eq!(step(&mut state, &complete), MetaOutcome::ReassignmentCompleted);
        assert_eq!(state.partition("t", 0).unwrap().replicas, vec![2, 3, 4]);
        assert!(!state.groups_of(1).contains_key(&1), "the removed replica still hosts the group");
        assert!(state.reassignments().is_empty());
        assert_eq!(state.voters_initial(1), Some(vec![1, 2, 3]), "a joiner must start from the bootstrap voters");
        // A second move back keeps the first bootstrap voters.
        assert_eq!(step(&mut state, &start(&[1, 2, 3])), MetaOutcome::ReassignmentStarted { group: 1 });
        let complete = MetaCommand::CompleteReassignment { group: 1, replicas: vec![1, 2, 3] };
        assert_eq!(step(&mut state, &complete), MetaOutcome::ReassignmentCompleted);
        assert_eq!(state.voters_initial(1), Some(vec![1, 2, 3]));
        // Deleting the topic forgets it all.
        assert_eq!(step(&mut state, &MetaCommand::DeleteTopic { name: "t".into() }), MetaOutcome::TopicDeleted);
        assert_eq!(state.voters_initial(1), None);
    }

    #[test]
    fn bad_reassignments_are_refused_definitely_and_change_nothing() {
        let mut state = cluster();
        let unknown = |o: &MetaOutcome| matches!(o, MetaOutcome::ReassignmentRefused(ReassignRefusal::PartitionUnknown(_)));
        let invalid = |o: &MetaOutcome| matches!(o, MetaOutcome::ReassignmentRefused(ReassignRefusal::Invalid(_)));
        let running = |o: &MetaOutcome| matches!(o, MetaOutcome::ReassignmentRefused(ReassignRefusal::InProgress(_)));
        let other_partition = MetaCommand::StartReassignment { topic: "t".into(), partition: 1, replicas: vec![2, 3, 4] };
        assert_refused(&mut state, &other_partition, unknown);
        let other_topic = MetaCommand::StartReassignment { topic: "u".into(), partition: 0, replicas: vec![2, 3, 4] };
        assert_refused(&mut state, &other_topic, unknown);
        assert_refused(&mut state, &start(&[2, 3, 9]), invalid); // unknown node
        assert_refused(&mut state, &start(&[2, 3, 0]), invalid); // reserved id
        assert_refused(&mut state, &start(&[2, 4]), invalid); // fewer replicas than the partition has
        assert_refused(&mut state, &start(&[2, 4, 4]), invalid); // a duplicate
        assert_refused(&mut state, &start(&[]), invalid);
        assert_refused(&mut state, &start(&[1, 2, 3, 4, 5, 6]), invalid); // above the maximum
        assert_refused(&mut state, &start(&[1, 2, 3]), invalid); // already there
                                                                 // A completion nobody started.
        let complete = MetaCommand::CompleteReassignment { group: 1, replicas: vec![2, 3, 4] };
        assert_refused(&mut state, &complete, |o| matches!(o, MetaOutcome::Rejected(_)));

        assert_eq!(step(&mut state, &start(&[2, 3, 4])), MetaOutcome::ReassignmentStarted { group: 1 });
        // A second move of the same partition while the first runs, and a completion with
        // another target than the running one.
        assert_refused(&mut state, &start(&[3, 4, 5]), running);
        let complete = MetaCommand::CompleteReassignment { group: 1, replicas: vec![3, 4, 5] };
        assert_refused(&mut state, &complete, |o| matches!(o, MetaOutcome::Rejected(_)));
        assert_eq!(state.reassignment_target(1), Some(&vec![2, 3, 4]));
    }

    #[test]
    fn reassignment_commands_round_trip() {
        for command in [start(&[2, 3, 4]), MetaCommand::CompleteReassignment { group: 7, replicas: vec![5, 1] }] {
            assert_eq!(MetaCommand::decode(&command.encode()), Ok(command));
        }
    }
}
