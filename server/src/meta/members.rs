//! Dynamic membership in the metadata log (issue 15, whole nodes): nodes that join a running
//! cluster ([`MetaCommand::JoinNode`]) and the metadata group's own voters
//! ([`MetaCommand::SetControllerVoters`], [`MetaCommand::CompleteControllerVoters`]).
//!
//! The bootstrap member list (`--node`) stays in each node's configuration: its members are the
//! metadata group's initial voters and register as brokers as before. A node outside it joins
//! with `odradek server --join` and is recorded here with its identity (the incarnation of its
//! data directory) and its addresses; every node dials the peer addresses recorded here, so the
//! registered members survive restarts of every node (the metadata log is replayed on start).
//!
//! Invariants (checked after every apply):
//! - Every joined member is a registered broker with the same client address.
//! - A member's identity is (id, incarnation): a join under a recorded id with another
//!   incarnation is refused unless it says `replace` (the same member with a new disk), and a
//!   join under a bootstrap member's id is refused while that member is a broker (registered,
//!   or draining): a removed bootstrap member may join again, as a joined member whose
//!   registration comes from its join (a bootstrap list's `RegisterBroker` for it is refused).
//!   Refusals change nothing.
//! - Decommissioning ([`MetaCommand::DecommissionNode`], then [`MetaCommand::RemoveNode`]): a
//!   draining node is a registered broker; it starts draining only if enough other nodes remain
//!   for every topic's replication factor, and is removed only once no partition's replicas or
//!   running target, and no running controller-voters change, names it (so removing it loses
//!   no replica). A removed node is no broker and is never registered again from a bootstrap
//!   list (a join may bring it back).
//! - A controller-voters target is 1..=[`CONTROLLER_VOTERS_MAX`] distinct registered brokers;
//!   at most one runs at a time; only a completion naming it exactly applies.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use odradek_consensus::NodeId;

use super::{BrokerInfo, MetaOutcome, MetadataState, ADDRESS_BYTES_MAX, BROKERS_MAX};
use crate::proto;

/// Voters of the metadata group, at most (as many as a bootstrap list may name).
pub const CONTROLLER_VOTERS_MAX: usize = crate::config::CLUSTER_NODES_MAX;

/// A node that joined the running cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub node_id: NodeId,
    /// Its data directory's incarnation when it joined (or was replaced).
    pub incarnation: u64,
    pub peer_address: SocketAddr,
    pub client_address: SocketAddr,
    /// Where Kafka clients reach it, if it has a Kafka listener.
    pub kafka_address: Option<SocketAddr>,
}

/// What a joining node asks to be recorded as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoiningNode {
    pub node_id: NodeId,
    pub incarnation: u64,
    pub peer_address: String,
    pub client_address: String,
    /// "": no Kafka listener.
    pub kafka_address: String,
    pub replace: bool,
}

/// A broker's advertised Kafka address: empty (none), or a socket address of at most
/// [`ADDRESS_BYTES_MAX`] bytes with a port.
pub(super) fn check_kafka_address(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let address = parse_address("Kafka", text)?;
    if address.port() == 0 {
        return Err(format!("Kafka address {text:?} has no port"));
    }
    Ok(Some(address))
}

fn parse_address(what: &str, text: &str) -> Result<SocketAddr, String> {
    if text.is_empty() || text.len() > ADDRESS_BYTES_MAX {
        return Err(format!("{what} address of {} bytes (1..={ADDRESS_BYTES_MAX})", text.len()));
    }
    text.parse().map_err(|error| format!("{what} address {text:?}: {error}"))
}

impl MetadataState {
    /// Checks that `joining` may be recorded; the member it becomes. The controller calls it
    /// before proposing, and apply calls it again (the log is the authority). A repeated join of
    /// the same identity is allowed (a restart of a joining node retries it).
    pub fn check_join(&self, joining: &JoiningNode) -> Result<MemberInfo, String> {
        let node = joining.node_id;
        if node == 0 {
            return Err("node id 0 is reserved".to_string());
        }
        let peer_address = parse_address("peer", &joining.peer_address)?;
        let client_address = parse_address("client", &joining.client_address)?;
        let kafka_address = check_kafka_address(&joining.kafka_address)?;
        match self.members.get(&node) {
            Some(member) if member.incarnation != joining.incarnation && !joining.replace => {
                return Err(format!(
                    "node {node} is a member already, with another identity (data directory incarnation {:016x}, this one \
                     {:016x}): another node uses this id, or this node's data directory was replaced (start it with --replace)",
                    member.incarnation, joining.incarnation
                ));
            }
            Some(_) => {}
            None if self.draining.contains(&node) => {
                return Err(format!(
                    "node {node} is a member of the cluster's bootstrap list and is being decommissioned: it may rejoin once removed"
                ));
            }
            None if self.brokers.contains_key(&node) => {
                return Err(format!("node {node} is a member of the cluster's bootstrap list: a joining node needs an id of its own"));
            }
            None if self.brokers.len() >= BROKERS_MAX => return Err(format!("already {BROKERS_MAX} brokers")),
            None => {}
        }
        Ok(MemberInfo { node_id: node, incarnation: joining.incarnation, peer_address, client_address, kafka_address })
    }

    pub(super) fn join_node(&mut self, joining: JoiningNode) -> MetaOutcome {
        let member = match self.check_join(&joining) {
            Ok(member) => member,
            Err(reason) => return MetaOutcome::JoinRefused(reason),
        };
        let kafka_address = member.kafka_address.map(|address| address.to_string()).unwrap_or_default();
        let broker = BrokerInfo { node_id: member.node_id, client_address: member.client_address.to_string(), kafka_address };
        self.brokers.insert(member.node_id, broker);
        // A decommissioned node may join again, under a new identity or the same one.
        self.removed.remove(&member.node_id);
        self.members.insert(member.node_id, member);
        MetaOutcome::NodeJoined
    }

    /// Checks that the metadata group's voters may move to `voters`.
    pub fn check_controller_voters(&self, voters: &[NodeId]) -> Result<(), String> {
        if voters.is_empty() {
            return Err("no voter left: the controller group keeps at least one voter".to_string());
        }
        if voters.len() > CONTROLLER_VOTERS_MAX {
            return Err(format!("{} controller voters (at most {CONTROLLER_VOTERS_MAX})", voters.len()));
        }
        for (position, node) in voters.iter().enumerate() {
            if voters[..position].contains(node) {
                return Err(format!("node {node} is named twice"));
            }
            if !self.brokers.contains_key(node) {
                return Err(format!("node {node} is not a registered broker"));
            }
        }
        if let Some(target) = &self.controller_voters_target {
            return Err(format!("the controller voters are moving to {target:?} already; wait for that to finish"));
        }
        Ok(())
    }

    pub(super) fn set_controller_voters(&mut self, voters: Vec<NodeId>) -> MetaOutcome {
        if let Err(reason) = self.check_controller_voters(&voters) {
            return MetaOutcome::ControllerChangeRefused(reason);
        }
        self.controller_voters_target = Some(voters);
        MetaOutcome::ControllerChangeStarted
    }

    pub(super) fn complete_controller_voters(&mut self, voters: Vec<NodeId>) -> MetaOutcome {
        if self.controller_voters_target.as_ref() != Some(&voters) {
            return MetaOutcome::Rejected(format!(
                "controller voters {voters:?} are not the running change's target {:?}",
                self.controller_voters_target
            ));
        }
        self.controller_voters_target = None;
        MetaOutcome::ControllerChangeCompleted
    }

    pub(super) fn check_member_invariants(&self) {
        for (node, member) in &self.members {
            assert_eq!(*node, member.node_id);
            let broker = self.brokers.get(node).expect("a joined member is a registered broker");
            assert_eq!(broker.client_address, member.client_address.to_string(), "a member's client address is its broker's");
        }
        assert!(self.draining.iter().all(|node| self.brokers.contains_key(node)), "a draining node is a registered broker");
        assert!(self.removed.iter().all(|node| !self.brokers.contains_key(node)), "a removed node is no broker");
        if let Some(target) = &self.controller_voters_target {
            assert!(!target.is_empty() && target.len() <= CONTROLLER_VOTERS_MAX);
            assert!(target.iter().all(|node| self.brokers.contains_key(node)), "controller voters are registered brokers");
        }
    }

    /// The nodes that joined the running cluster (not the bootstrap list).
    pub fn members(&self) -> &std::collections::BTreeMap<NodeId, MemberInfo> {
        &self.members
    }

    /// The running change of the metadata group's voters, if any.
    pub fn controller_voters_target(&self) -> Option<&Vec<NodeId>> {
        self.controller_voters_target.as_ref()
    }
}

pub(super) fn encode_join(message: &mut proto::MetaCommand, joining: &JoiningNode) {
    let mut join = proto::JoinNode::new();
    join.set_node_id(joining.node_id);
    join.set_incarnation(joining.incarnation);
    join.set_peer_address(joining.peer_address.clone());
    join.set_client_address(joining.client_address.clone());
    join.set_kafka_address(joining.kafka_address.clone());
    join.set_replace(joining.replace);
    message.set_join_node(join);
}

pub(super) fn decode_join(join: &proto::JoinNode) -> JoiningNode {
    JoiningNode {
        node_id: join.get_node_id(),
        incarnation: join.get_incarnation(),
        peer_address: join.get_peer_address().to_string(),
        client_address: join.get_client_address().to_string(),
        kafka_address: join.get_kafka_address().to_string(),
        replace: join.get_replace(),
    }
}

impl MetadataState {
    /// Checks that `node` may start draining (`odradek node decommission`): a registered broker,
    /// not draining already, and enough nodes left for every topic's replication factor.
    pub fn check_decommission(&self, node: NodeId) -> Result<(), String> {
        if !self.brokers.contains_key(&node) {
            return Err(format!("node {node} is not a registered broker"));
        }
        if self.draining.contains(&node) {
            return Err(format!("node {node} is being decommissioned already"));
        }
        let remaining = self.brokers.keys().filter(|&&broker| broker != node && !self.draining.contains(&broker)).count();
        let widest = self
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |info| (topic, info)))
            .map(|(topic, info)| (info.replicas.len().max(self.reassignments.get(&info.group).map_or(0, Vec::len)), &topic.name))
            .max();
        if let Some((replication_factor, topic)) = widest {
            if remaining < replication_factor {
                return Err(format!(
                    "{remaining} nodes would remain, and topic {topic:?} has replication factor {replication_factor}: \
                     no replica of node {node} could move"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn decommission_node(&mut self, node: NodeId) -> MetaOutcome {
        if let Err(reason) = self.check_decommission(node) {
            return MetaOutcome::DecommissionRefused(reason);
        }
        self.draining.insert(node);
        MetaOutcome::DecommissionStarted
    }

    /// Checks that `node`'s decommission may be cancelled: it is draining (not removed yet).
    pub fn check_cancel_decommission(&self, node: NodeId) -> Result<(), String> {
        if self.removed.contains(&node) {
            return Err(format!("node {node} was decommissioned and removed already"));
        }
        if !self.draining.contains(&node) {
            return Err(format!("node {node} is not being decommissioned"));
        }
        Ok(())
    }

    /// `node` stops draining and stays a member. Partition moves off it that were recorded
    /// already are reassignments of their own and run to their end; no new one starts.
    pub(super) fn cancel_decommission(&mut self, node: NodeId) -> MetaOutcome {
        if let Err(reason) = self.check_cancel_decommission(node) {
            return MetaOutcome::DecommissionRefused(reason);
        }
        self.draining.remove(&node);
        MetaOutcome::DecommissionCancelled
    }

    /// Whether a draining `node` holds nothing any more: no partition's replicas or running
    /// target names it, nor a running change of the controller voters.
    pub fn check_remove(&self, node: NodeId) -> Result<(), String> {
        if !self.draining.contains(&node) {
            return Err(format!("node {node} is not being decommissioned"));
        }
        // Planted bug `decommission-before-replicas-moved`: only running moves are looked at,
        // not the replicas partitions have now.
        let planted = self.planted_removal_while_holding;
        let holding = self.topics.values().flat_map(|topic| &topic.partitions).find(|info| {
            (info.replicas.contains(&node) && !planted) || self.reassignments.get(&info.group).is_some_and(|target| target.contains(&node))
        });
        if let Some(info) = holding {
            return Err(format!("node {node} still holds a replica of partition group {}", info.group));
        }
        if self.controller_voters_target.as_ref().is_some_and(|target| target.contains(&node)) {
            return Err(format!("node {node} is in the running change of the controller voters"));
        }
        Ok(())
    }

    pub(super) fn remove_node(&mut self, node: NodeId) -> MetaOutcome {
        if let Err(reason) = self.check_remove(node) {
            return MetaOutcome::Rejected(reason);
        }
        self.draining.remove(&node);
        self.brokers.remove(&node);
        self.members.remove(&node);
        self.removed.insert(node);
        self.forget_metadata_repair_of(node);
        MetaOutcome::NodeRemoved
    }

    /// Switches the planted bug `decommission-before-replicas-moved` on (`check_remove` then
    /// ignores the replicas partitions hold now). Set once at start, from the node's config.
    pub fn plant_removal_while_holding(&mut self, on: bool) {
        self.planted_removal_while_holding = on;
    }

    /// Nodes being decommissioned: their replicas move away, then they are removed.
    pub fn draining(&self) -> &BTreeSet<NodeId> {
        &self.draining
    }

    /// Nodes decommissioned and removed: never registered again by a bootstrap list.
    pub fn removed(&self) -> &BTreeSet<NodeId> {
        &self.removed
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MetaCommand, MetaOutcome, MetadataState};
    use super::*;

    fn with_bootstrap() -> (MetadataState, u64) {
        let mut state = MetadataState::new();
        let mut index = 0;
        for node in 1..=3 {
            index += 1;
            let broker = BrokerInfo { node_id: node, client_address: format!("127.0.0.1:{}", 9090 + node), kafka_address: String::new() };
            assert_eq!(state.apply(index, &MetaCommand::RegisterBroker(broker).encode()), MetaOutcome::BrokerRegistered);
        }
        (state, index)
    }

    fn joining(node_id: NodeId, incarnation: u64) -> JoiningNode {
        JoiningNode {
            node_id,
            incarnation,
            peer_address: format!("127.0.0.1:{}", 25100 + node_id),
            client_address: format!("127.0.0.1:{}", 25200 + node_id),
            kafka_address: format!("127.0.0.1:{}", 25300 + node_id),
            replace: false,
        }
    }

    /// Applies `command` at the next index; a refusal must change nothing but the index.
    fn apply(state: &mut MetadataState, index: &mut u64, command: MetaCommand) -> MetaOutcome {
        let before = state.clone();
        *index += 1;
        let outcome = state.apply(*index, &command.encode());
        if matches!(outcome, MetaOutcome::JoinRefused(_) | MetaOutcome::ControllerChangeRefused(_) | MetaOutcome::Rejected(_)) {
            let mut expected = before;
            expected.applied_index = *index;
            assert_eq!(*state, expected, "a refusal changes nothing: {outcome:?}");
        }
        outcome
    }

    #[test]
    fn a_joined_node_is_a_broker_and_keeps_its_identity() {
        let (mut state, mut index) = with_bootstrap();
        assert_eq!(apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 7))), MetaOutcome::NodeJoined);
        assert_eq!(state.brokers()[&4].client_address, "127.0.0.1:25204");
        assert_eq!(state.brokers()[&4].kafka_address, "127.0.0.1:25304", "Kafka clients find a joined node too");
        assert_eq!(state.members()[&4].peer_address, "127.0.0.1:25104".parse().unwrap());
        // A restart of the joining node repeats its join: the same identity is accepted.
        assert_eq!(apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 7))), MetaOutcome::NodeJoined);
        // Another identity under the same id is refused, definitely and with the reason.
        let MetaOutcome::JoinRefused(reason) = apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 8))) else {
            panic!("another incarnation under id 4 must be refused");
        };
        assert!(reason.contains("another identity") && reason.contains("--replace"), "{reason}");
        // ... unless it replaces the member (its disk was replaced).
        let replacing = JoiningNode { replace: true, ..joining(4, 8) };
        assert_eq!(apply(&mut state, &mut index, MetaCommand::JoinNode(replacing)), MetaOutcome::NodeJoined);
        assert_eq!(state.members()[&4].incarnation, 8);
    }

    #[test]
    fn bad_joins_are_refused_and_change_nothing() {
        let (mut state, mut index) = with_bootstrap();
        let cases = [
            (joining(2, 1), "bootstrap list"),
            (joining(0, 1), "reserved"),
            (JoiningNode { peer_address: "nowhere".into(), ..joining(4, 1) }, "peer address"),
            (JoiningNode { client_address: String::new(), ..joining(4, 1) }, "client address"),
            (JoiningNode { kafka_address: "127.0.0.1".into(), ..joining(4, 1) }, "Kafka address"),
            (JoiningNode { kafka_address: "127.0.0.1:0".into(), ..joining(4, 1) }, "no port"),
        ];
        for (join, expected) in cases {
            match apply(&mut state, &mut index, MetaCommand::JoinNode(join)) {
                MetaOutcome::JoinRefused(reason) => assert!(reason.contains(expected), "{reason:?} should say {expected:?}"),
                other => panic!("expected a refusal mentioning {expected:?}, got {other:?}"),
            }
        }
        assert!(state.members().is_empty());
    }

    #[test]
    fn controller_voter_changes_are_checked_and_one_at_a_time() {
        let (mut state, mut index) = with_bootstrap();
        apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 1)));
        let refusals = [(vec![], "no voter left"), (vec![1, 1], "twice"), (vec![1, 9], "not a registered broker")];
        for (voters, expected) in refusals {
            match apply(&mut state, &mut index, MetaCommand::SetControllerVoters { voters }) {
                MetaOutcome::ControllerChangeRefused(reason) => assert!(reason.contains(expected), "{reason}"),
                other => panic!("expected a refusal mentioning {expected:?}, got {other:?}"),
            }
        }
        let target = vec![1, 2, 3, 4];
        let started = apply(&mut state, &mut index, MetaCommand::SetControllerVoters { voters: target.clone() });
        assert_eq!(started, MetaOutcome::ControllerChangeStarted);
        assert_eq!(state.controller_voters_target(), Some(&target));
        let second = apply(&mut state, &mut index, MetaCommand::SetControllerVoters { voters: vec![1, 2, 4] });
        assert!(matches!(second, MetaOutcome::ControllerChangeRefused(reason) if reason.contains("already")));
        let wrong = apply(&mut state, &mut index, MetaCommand::CompleteControllerVoters { voters: vec![1, 2, 4] });
        assert!(matches!(wrong, MetaOutcome::Rejected(_)));
        let done = apply(&mut state, &mut index, MetaCommand::CompleteControllerVoters { voters: target });
        assert_eq!(done, MetaOutcome::ControllerChangeCompleted);
        assert_eq!(state.controller_voters_target(), None);
    }

    fn with_topic(state: &mut MetadataState, index: &mut u64, name: &str, replicas: Vec<Vec<NodeId>>) {
        let create = MetaCommand::CreateTopic { name: name.into(), replicas, settings: super::super::TopicSettings::default() };
        assert!(matches!(apply(state, index, create), MetaOutcome::TopicCreated { .. }));
    }

    #[test]
    fn a_cancelled_decommission_stops_the_drain_and_the_node_stays() {
        let (mut state, mut index) = with_bootstrap();
        apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 1)));
        with_topic(&mut state, &mut index, "t", vec![vec![1, 2, 3]]);
        match apply(&mut state, &mut index, MetaCommand::CancelDecommission { node: 4 }) {
            MetaOutcome::DecommissionRefused(reason) => assert!(reason.contains("not being decommissioned"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(apply(&mut state, &mut index, MetaCommand::DecommissionNode { node: 1 }), MetaOutcome::DecommissionStarted);
        assert!(
            crate::membership::next_drain_move(&state, 1, &state.brokers().keys().copied().collect()).is_some(),
            "draining: node 1's partition would move"
        );
        assert_eq!(apply(&mut state, &mut index, MetaCommand::CancelDecommission { node: 1 }), MetaOutcome::DecommissionCancelled);
        assert!(state.draining().is_empty() && state.brokers().contains_key(&1));
        assert!(matches!(apply(&mut state, &mut index, MetaCommand::RemoveNode { node: 1 }), MetaOutcome::Rejected(_)), "not draining");
        // The command round-trips through its encoding.
        let bytes = MetaCommand::CancelDecommission { node: 1 }.encode();
        assert_eq!(MetaCommand::decode(&bytes).unwrap(), MetaCommand::CancelDecommission { node: 1 });
        // It may be decommissioned again.
        assert_eq!(apply(&mut state, &mut index, MetaCommand::DecommissionNode { node: 1 }), MetaOutcome::DecommissionStarted);
    }

    #[test]
    fn a_node_is_removed_only_once_it_holds_nothing() {
        let (mut state, mut index) = with_bootstrap();
        apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 1)));
        with_topic(&mut state, &mut index, "t", vec![vec![1, 2, 3], vec![2, 3, 4]]);
        for (node, expected) in [(9, "not a registered broker")] {
            match apply(&mut state, &mut index, MetaCommand::DecommissionNode { node }) {
                MetaOutcome::DecommissionRefused(reason) => assert!(reason.contains(expected), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(apply(&mut state, &mut index, MetaCommand::DecommissionNode { node: 1 }), MetaOutcome::DecommissionStarted);
        // A draining bootstrap member cannot join again yet (its old identity still holds replicas).
        match apply(&mut state, &mut index, MetaCommand::JoinNode(joining(1, 9))) {
            MetaOutcome::JoinRefused(reason) => assert!(reason.contains("being decommissioned"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Two nodes would remain for replication factor 3.
        match apply(&mut state, &mut index, MetaCommand::DecommissionNode { node: 2 }) {
            MetaOutcome::DecommissionRefused(reason) => assert!(reason.contains("replication factor 3"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Node 1 still holds partition 0: not removed.
        assert!(matches!(apply(&mut state, &mut index, MetaCommand::RemoveNode { node: 1 }), MetaOutcome::Rejected(_)));
        // Node 4 not following the metadata log (quarantined, down): no move goes to it.
        assert!(crate::membership::next_drain_move(&state, 1, &[1, 2, 3].into()).is_none(), "no live destination");
        // The move the driver would start: node 1 replaced, in place, by node 4 (the only one).
        let (topic, partition, target) =
            crate::membership::next_drain_move(&state, 1, &state.brokers().keys().copied().collect()).expect("a move");
        assert_eq!((topic.as_str(), partition, target.clone()), ("t", 0, vec![4, 2, 3]));
        let start = MetaCommand::StartReassignment { topic, partition, replicas: target.clone() };
        assert!(matches!(apply(&mut state, &mut index, start), MetaOutcome::ReassignmentStarted { .. }));
        assert!(
            crate::membership::next_drain_move(&state, 1, &state.brokers().keys().copied().collect()).is_none(),
            "the partition moves already"
        );
        let group = state.partition("t", 0).unwrap().group;
        assert!(matches!(apply(&mut state, &mut index, MetaCommand::RemoveNode { node: 1 }), MetaOutcome::Rejected(_)));
        let complete = MetaCommand::CompleteReassignment { group, replicas: target };
        assert_eq!(apply(&mut state, &mut index, complete), MetaOutcome::ReassignmentCompleted);
        assert_eq!(apply(&mut state, &mut index, MetaCommand::RemoveNode { node: 1 }), MetaOutcome::NodeRemoved);
        assert!(!state.brokers().contains_key(&1) && state.removed().contains(&1) && state.draining().is_empty());
        // A removed node's decommission cannot be cancelled.
        match apply(&mut state, &mut index, MetaCommand::CancelDecommission { node: 1 }) {
            MetaOutcome::DecommissionRefused(reason) => assert!(reason.contains("removed already"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A bootstrap list does not bring it back.
        let again =
            MetaCommand::RegisterBroker(BrokerInfo { node_id: 1, client_address: "127.0.0.1:9091".into(), kafka_address: String::new() });
        assert!(matches!(apply(&mut state, &mut index, again.clone()), MetaOutcome::Rejected(_)));
        // A join does, under a new incarnation (the node came back with an empty directory):
        // then it is a joined member, registered at the addresses it joined with, and a
        // bootstrap list's registration of it (old addresses) is refused.
        assert_eq!(apply(&mut state, &mut index, MetaCommand::JoinNode(joining(1, 9))), MetaOutcome::NodeJoined);
        assert!(!state.removed().contains(&1) && state.members()[&1].incarnation == 9);
        assert_eq!(state.brokers()[&1].client_address, "127.0.0.1:25201");
        match apply(&mut state, &mut index, again) {
            MetaOutcome::Rejected(reason) => assert!(reason.contains("its join registers it"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(state.brokers()[&1].client_address, "127.0.0.1:25201");
    }

    #[test]
    fn a_rebalance_spreads_replicas_and_leaders_over_added_nodes() {
        let (mut state, mut index) = with_bootstrap();
        let placement: Vec<Vec<NodeId>> = (0..6).map(|p| (0..3).map(|j| 1 + (p + j) % 3).collect()).collect();
        with_topic(&mut state, &mut index, "t", placement);
        apply(&mut state, &mut index, MetaCommand::JoinNode(joining(4, 1)));
        apply(&mut state, &mut index, MetaCommand::JoinNode(joining(5, 1)));
        let moves = crate::membership::rebalance_plan(&state, &[1, 2, 3, 4, 5]);
        assert!(!moves.is_empty());
        for (topic, partition, replicas) in moves {
            let start = MetaCommand::StartReassignment { topic: topic.clone(), partition, replicas: replicas.clone() };
            assert!(matches!(apply(&mut state, &mut index, start), MetaOutcome::ReassignmentStarted { .. }), "{replicas:?}");
            let group = state.partition(&topic, partition).unwrap().group;
            let complete = MetaCommand::CompleteReassignment { group, replicas };
            assert_eq!(apply(&mut state, &mut index, complete), MetaOutcome::ReassignmentCompleted);
        }
        let mut load = std::collections::BTreeMap::new();
        let mut leads = std::collections::BTreeMap::new();
        for info in &state.topic("t").unwrap().partitions {
            assert_eq!(info.replicas.len(), 3);
            for node in &info.replicas {
                *load.entry(*node).or_insert(0) += 1;
            }
            *leads.entry(info.replicas[0]).or_insert(0) += 1;
        }
        // 18 replicas over 5 nodes: 3 or 4 each; 6 leaders: 1 or 2 each.
        assert!((1..=5).all(|node| (3..=4).contains(load.get(&node).unwrap_or(&0))), "{load:?}");
        assert!((1..=5).all(|node| (1..=2).contains(leads.get(&node).unwrap_or(&0))), "{leads:?}");
        assert!(crate::membership::rebalance_plan(&state, &[1, 2, 3, 4, 5]).is_empty(), "balanced: nothing more to move");
    }

    #[test]
    fn membership_commands_round_trip() {
        for command in [
            MetaCommand::JoinNode(JoiningNode { replace: true, ..joining(5, u64::MAX) }),
            MetaCommand::SetControllerVoters { voters: vec![1, 4, 5] },
            MetaCommand::CompleteControllerVoters { voters: vec![4] },
            MetaCommand::DecommissionNode { node: 3 },
            MetaCommand::RemoveNode { node: 3 },
        ] {
            assert_eq!(MetaCommand::decode(&command.encode()), Ok(command));
        }
    }
}
