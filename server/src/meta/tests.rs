//! Tests of the controller's state machine: apply sequences, every refusal, determinism, the
//! command encoding and replica assignment.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};

fn broker(node_id: NodeId) -> MetaCommand {
    MetaCommand::RegisterBroker(BrokerInfo { node_id, client_address: format!("10.0.0.{node_id}:9092"), kafka_address: String::new() })
}

fn create(name: &str, replicas: Vec<Vec<NodeId>>) -> MetaCommand {
    MetaCommand::CreateTopic { name: name.to_string(), replicas, settings: TopicSettings::default() }
}

/// A state with brokers 1, 2, 3 registered at indexes 1..=3.
fn three_brokers() -> MetadataState {
    let mut state = MetadataState::new();
    for node in 1..=3 {
        assert_eq!(state.apply(node, &broker(node).encode()), MetaOutcome::BrokerRegistered);
    }
    state
}

/// Applies a command at the next index and returns the outcome.
fn step(state: &mut MetadataState, command: &MetaCommand) -> MetaOutcome {
    let index = state.applied_index() + 1;
    state.apply(index, &command.encode())
}

/// Applies a command that must be refused and checks that only the applied index moved.
fn assert_rejected(state: &mut MetadataState, command: &MetaCommand) {
    let before = state.clone();
    let outcome = step(state, command);
    assert!(matches!(outcome, MetaOutcome::Rejected(_)), "{command:?} gave {outcome:?}");
    assert_eq!(state.applied_index(), before.applied_index() + 1);
    let mut expected = before;
    expected.applied_index = state.applied_index();
    assert_eq!(*state, expected, "a rejected command changed nothing else");
}

#[test]
fn register_create_delete_sequence() {
    let mut state = three_brokers();
    assert_eq!(state.brokers().len(), 3);
    assert_eq!(state.group_next(), 1);

    let outcome = step(&mut state, &create("orders", vec![vec![1, 2], vec![2, 3], vec![3, 1]]));
    assert_eq!(outcome, MetaOutcome::TopicCreated { groups: vec![1, 2, 3] });
    let orders = state.topic("orders").unwrap();
    assert_eq!(orders.partitions.len(), 3);
    assert_eq!(state.partition("orders", 1), Some(&PartitionInfo { partition: 1, group: 2, replicas: vec![2, 3] }));
    assert_eq!(state.partition("orders", 3), None);
    assert_eq!(state.partition("nope", 0), None);
    let (topic, info) = state.partition_of_group(3).unwrap();
    assert_eq!((topic.name.as_str(), info.partition), ("orders", 2));
    assert_eq!(state.partition_of_group(METADATA_GROUP), None);
    assert_eq!(state.groups_of(1), BTreeMap::from([(1, vec![1, 2]), (3, vec![3, 1])]));
    assert_eq!(state.groups_of(9), BTreeMap::new());

    let outcome = step(&mut state, &create("events", vec![vec![3]]));
    assert_eq!(outcome, MetaOutcome::TopicCreated { groups: vec![4] });
    assert_eq!(step(&mut state, &create("orders", vec![vec![1]])), MetaOutcome::TopicExists);
    assert_eq!(state.topic("orders").unwrap().partitions.len(), 3, "TopicExists changes nothing");

    assert_eq!(step(&mut state, &MetaCommand::DeleteTopic { name: "orders".into() }), MetaOutcome::TopicDeleted);
    assert_eq!(state.topic("orders"), None);
    assert_eq!(state.partition_of_group(1), None);
    assert_eq!(state.groups_of(1), BTreeMap::new());
    assert_eq!(step(&mut state, &MetaCommand::DeleteTopic { name: "orders".into() }), MetaOutcome::TopicUnknown);

    // Group ids are never reused, not even by a topic of the same name.
    let outcome = step(&mut state, &create("orders", vec![vec![1, 2]]));
    assert_eq!(outcome, MetaOutcome::TopicCreated { groups: vec![5] });
    assert_eq!(state.topics().keys().collect::<Vec<_>>(), ["events", "orders"]);
    assert_eq!(state.applied_index(), 9);
}

#[test]
fn register_broker_replaces_address() {
    let mut state = three_brokers();
    let moved = BrokerInfo { node_id: 2, client_address: "10.9.9.9:9092".into(), kafka_address: String::new() };
    assert_eq!(step(&mut state, &MetaCommand::RegisterBroker(moved.clone())), MetaOutcome::BrokerRegistered);
    assert_eq!(state.brokers().len(), 3);
    assert_eq!(state.brokers()[&2], moved);
}

#[test]
fn producer_ids_are_indexes_and_epochs_bump() {
    let mut state = three_brokers();
    assert_eq!(state.apply(10, &MetaCommand::AllocateProducerId.encode()), MetaOutcome::ProducerId { producer_id: 10, producer_epoch: 0 });
    assert_eq!(state.apply(12, &MetaCommand::AllocateProducerId.encode()), MetaOutcome::ProducerId { producer_id: 12, producer_epoch: 0 });
    assert_eq!(state.producer_epoch(10), Some(0));
    let bump = MetaCommand::BumpProducerEpoch { producer_id: 10, from_epoch: None };
    assert_eq!(step(&mut state, &bump), MetaOutcome::ProducerId { producer_id: 10, producer_epoch: 1 });
    assert_eq!(step(&mut state, &bump), MetaOutcome::ProducerId { producer_id: 10, producer_epoch: 2 });
    assert_eq!(state.producer_epoch(10), Some(2));
    assert_eq!(state.producer_epoch(12), Some(0));
    assert_eq!(state.producer_epoch(11), None);
}

#[test]
fn a_bump_from_a_stale_epoch_changes_nothing() {
    let mut state = three_brokers();
    let producer_id = state.applied_index() as i64 + 1;
    step(&mut state, &MetaCommand::AllocateProducerId);
    let from = |epoch| MetaCommand::BumpProducerEpoch { producer_id, from_epoch: Some(epoch) };
    assert_eq!(step(&mut state, &from(0)), MetaOutcome::ProducerId { producer_id, producer_epoch: 1 });
    // Two callers held epoch 0: the second finds it fenced, and the first keeps epoch 1.
    let before = state.clone();
    assert_eq!(step(&mut state, &from(0)), MetaOutcome::EpochMismatch { producer_epoch: 1 });
    assert_eq!(step(&mut state, &from(5)), MetaOutcome::EpochMismatch { producer_epoch: 1 });
    assert_eq!(state.producer_epoch(producer_id), Some(1));
    assert_eq!(state.producers, before.producers, "a mismatch changes no epoch");
    assert_eq!(step(&mut state, &from(1)), MetaOutcome::ProducerId { producer_id, producer_epoch: 2 });
}

#[test]
fn rejects_bad_producer_commands() {
    let mut state = three_brokers();
    // Never allocated: above the applied index, an index that held another command, negative.
    assert_rejected(&mut state, &MetaCommand::BumpProducerEpoch { producer_id: 100, from_epoch: None });
    assert_rejected(&mut state, &MetaCommand::BumpProducerEpoch { producer_id: 2, from_epoch: None });
    assert_rejected(&mut state, &MetaCommand::BumpProducerEpoch { producer_id: -1, from_epoch: None });
    // The last epoch cannot be bumped.
    let producer_id = state.applied_index() as i64 + 1;
    step(&mut state, &MetaCommand::AllocateProducerId);
    state.producers.insert(producer_id, i16::MAX - 1);
    let bump = MetaCommand::BumpProducerEpoch { producer_id, from_epoch: None };
    assert_eq!(step(&mut state, &bump), MetaOutcome::ProducerId { producer_id, producer_epoch: i16::MAX });
    assert_rejected(&mut state, &bump);
    assert_eq!(state.producer_epoch(producer_id), Some(i16::MAX));
}

#[test]
fn forgets_the_oldest_producer_beyond_the_limit() {
    let mut state = MetadataState::new();
    for index in 1..=PRODUCERS_MAX as u64 + 1 {
        step(&mut state, &MetaCommand::AllocateProducerId);
        assert_eq!(state.applied_index(), index);
    }
    assert_eq!(state.producers.len(), PRODUCERS_MAX);
    assert_eq!(state.producer_epoch(1), None);
    assert_eq!(state.producer_epoch(2), Some(0));
    assert_rejected(&mut state, &MetaCommand::BumpProducerEpoch { producer_id: 1, from_epoch: None });
}

#[test]
fn rejects_invalid_topics() {
    let mut state = three_brokers();
    let name_long = "x".repeat(TOPIC_NAME_BYTES_MAX + 1);
    for name in ["", ".", "..", "a b", "tópico", "a/b", name_long.as_str()] {
        assert_rejected(&mut state, &create(name, vec![vec![1]]));
    }
    // Zero partitions, too many partitions.
    assert_rejected(&mut state, &create("t", vec![]));
    assert_rejected(&mut state, &create("t", vec![vec![1]; PARTITIONS_MAX as usize + 1]));
    // Empty replica list, too many replicas, duplicates, unknown brokers, uneven factors.
    assert_rejected(&mut state, &create("t", vec![vec![]]));
    let mut state_big = state.clone();
    for node in 4..=6 {
        step(&mut state_big, &broker(node));
    }
    assert_rejected(&mut state_big, &create("t", vec![vec![1, 2, 3, 4, 5, 6]]));
    assert_rejected(&mut state, &create("t", vec![vec![1, 2, 1]]));
    assert_rejected(&mut state, &create("t", vec![vec![1, 2], vec![3, 3]]));
    assert_rejected(&mut state, &create("t", vec![vec![1, 4]]));
    assert_rejected(&mut state, &create("t", vec![vec![0]]));
    assert_rejected(&mut state, &create("t", vec![vec![1, 2], vec![3]]));
    // Bad settings.
    for settings in [
        TopicSettings { retention_ms: -2, ..TopicSettings::default() },
        TopicSettings { retention_bytes: -5, ..TopicSettings::default() },
        TopicSettings { batch_bytes_max: BATCH_BYTES_MAX as u32 + 1, ..TopicSettings::default() },
    ] {
        assert_rejected(&mut state, &MetaCommand::CreateTopic { name: "t".into(), replicas: vec![vec![1]], settings });
    }
    assert!(state.topics().is_empty());
    assert_eq!(state.group_next(), 1, "refused topics take no group ids");
    // The limits themselves are fine.
    let settings =
        TopicSettings { retention_ms: -1, retention_bytes: -1, segment_bytes: u64::MAX, batch_bytes_max: BATCH_BYTES_MAX as u32 };
    let replicas = vec![vec![1, 2, 3]; PARTITIONS_MAX as usize];
    let outcome = step(&mut state, &MetaCommand::CreateTopic { name: "x".repeat(TOPIC_NAME_BYTES_MAX), replicas, settings });
    assert!(matches!(outcome, MetaOutcome::TopicCreated { ref groups } if groups.len() == PARTITIONS_MAX as usize));
}

#[test]
fn rejects_topics_beyond_the_cluster_partition_limit() {
    let mut state = three_brokers();
    let topics_full = PARTITIONS_CLUSTER_MAX / PARTITIONS_MAX as usize;
    for topic in 0..topics_full {
        let outcome = step(&mut state, &create(&format!("t{topic}"), vec![vec![1]; PARTITIONS_MAX as usize]));
        assert!(matches!(outcome, MetaOutcome::TopicCreated { .. }));
    }
    assert_rejected(&mut state, &create("one-more", vec![vec![1]]));
    step(&mut state, &MetaCommand::DeleteTopic { name: "t0".into() });
    assert!(matches!(step(&mut state, &create("one-more", vec![vec![1]])), MetaOutcome::TopicCreated { .. }));
}

#[test]
fn rejects_bad_brokers_and_payloads() {
    let mut state = three_brokers();
    assert_rejected(
        &mut state,
        &MetaCommand::RegisterBroker(BrokerInfo { node_id: 0, client_address: "a:1".into(), kafka_address: String::new() }),
    );
    assert_rejected(
        &mut state,
        &MetaCommand::RegisterBroker(BrokerInfo { node_id: 4, client_address: String::new(), kafka_address: String::new() }),
    );
    let long = BrokerInfo { node_id: 4, client_address: "a".repeat(ADDRESS_BYTES_MAX + 1), kafka_address: String::new() };
    assert_rejected(&mut state, &MetaCommand::RegisterBroker(long));
    for kafka_address in ["nowhere", "10.0.0.4:0"] {
        let bad_kafka = BrokerInfo { node_id: 4, client_address: "10.0.0.4:9092".into(), kafka_address: kafka_address.into() };
        assert_rejected(&mut state, &MetaCommand::RegisterBroker(bad_kafka));
    }

    // Undecodable bytes and an empty command (no oneof case) are skipped.
    let before = state.clone();
    assert!(matches!(state.apply(10, &[0xff, 0xff, 0xff]), MetaOutcome::Rejected(_)));
    assert!(matches!(state.apply(11, &[]), MetaOutcome::Rejected(_)));
    assert_eq!(MetaCommand::decode(&[]), Err(MetaError::CommandMissing));
    assert_eq!(state.applied_index(), 11);
    assert_eq!((state.brokers(), state.topics()), (before.brokers(), before.topics()));

    // A replayed (old) index changes nothing at all.
    let before = state.clone();
    assert!(matches!(state.apply(11, &broker(7).encode()), MetaOutcome::Rejected(_)));
    assert!(matches!(state.apply(3, &broker(7).encode()), MetaOutcome::Rejected(_)));
    assert_eq!(state, before);
}

#[test]
fn rejects_brokers_beyond_the_limit() {
    let mut state = MetadataState::new();
    for node in 1..=BROKERS_MAX as u64 {
        assert_eq!(step(&mut state, &broker(node)), MetaOutcome::BrokerRegistered);
    }
    assert_rejected(&mut state, &broker(BROKERS_MAX as u64 + 1));
    assert_eq!(step(&mut state, &broker(1)), MetaOutcome::BrokerRegistered, "re-registering is still fine");
}

#[test]
fn validate_topic_name_follows_kafka() {
    for good in ["a", "A-b_c.d", "0", "...", "x".repeat(249).as_str()] {
        assert_eq!(validate_topic_name(good), Ok(()), "{good}");
    }
    for bad in ["", ".", "..", "a b", "a,b", "ü", "x".repeat(250).as_str()] {
        assert!(validate_topic_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn topic_settings_convert_from_and_to_config() {
    let settings = TopicSettings { retention_ms: -1, retention_bytes: 1 << 30, segment_bytes: 1 << 20, batch_bytes_max: 1000 };
    assert_eq!(TopicSettings::from_config(&settings.to_config()), Ok(settings));
    let mut config = TopicConfig::new();
    config.set_segment_bytes(-1);
    assert!(TopicSettings::from_config(&config).is_err());
    config.set_segment_bytes(0);
    config.set_retention_ms(-3);
    assert!(TopicSettings::from_config(&config).is_err());
}

#[test]
fn assign_replicas_small_example() {
    // Three brokers, rf 2: leaders round-robin from `start`, followers shift each round.
    let assignment = assign_replicas(&[3, 1, 2], 4, 2, 0).unwrap();
    assert_eq!(assignment, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 3]]);
    let rotated = assign_replicas(&[1, 2, 3], 3, 1, 1).unwrap();
    assert_eq!(rotated, vec![vec![2], vec![3], vec![1]]);
}

#[test]
fn assign_replicas_refuses_impossible_requests() {
    assert!(assign_replicas(&[1, 2], 1, 3, 0).is_err(), "rf above the broker count");
    assert!(assign_replicas(&[1, 1, 2], 1, 3, 0).is_err(), "duplicate ids count once");
    assert!(assign_replicas(&[], 1, 1, 0).is_err());
    assert!(assign_replicas(&[1], 0, 1, 0).is_err());
    assert!(assign_replicas(&[1], PARTITIONS_MAX + 1, 1, 0).is_err());
    assert!(assign_replicas(&[1, 2, 3, 4, 5, 6], 1, 0, 0).is_err());
    assert!(assign_replicas(&[1, 2, 3, 4, 5, 6], 1, REPLICATION_FACTOR_MAX + 1, 0).is_err());
}

fn arb_settings() -> impl Strategy<Value = TopicSettings> {
    (any::<i64>(), any::<i64>(), any::<u64>(), any::<u32>()).prop_map(|(retention_ms, retention_bytes, segment_bytes, batch_bytes_max)| {
        TopicSettings { retention_ms, retention_bytes, segment_bytes, batch_bytes_max }
    })
}

fn arb_command() -> impl Strategy<Value = MetaCommand> {
    prop_oneof![
        (0..8u64, "[a-z0-9:.]{0,20}").prop_map(|(node_id, client_address)| MetaCommand::RegisterBroker(BrokerInfo {
            node_id,
            client_address,
            kafka_address: String::new()
        })),
        ("[a-z.]{0,6}", prop::collection::vec(prop::collection::vec(0..8u64, 0..4), 0..5), arb_settings())
            .prop_map(|(name, replicas, settings)| MetaCommand::CreateTopic { name, replicas, settings }),
        "[a-z.]{0,6}".prop_map(|name| MetaCommand::DeleteTopic { name }),
        Just(MetaCommand::AllocateProducerId),
        (-2..40i64, prop::option::of(-1..3i16))
            .prop_map(|(producer_id, from_epoch)| MetaCommand::BumpProducerEpoch { producer_id, from_epoch }),
        ("[a-z*]{0,3}", any::<bool>()).prop_map(|(name, well_formed)| {
            let mut credential = Credential::derive(Mechanism::Sha256, "pw", b"salt", odradek_client::scram::ITERATIONS_MIN);
            if !well_formed {
                credential.stored_key.pop();
            }
            MetaCommand::UpsertUser { name, credential }
        }),
        "[a-z]{0,3}".prop_map(|name| MetaCommand::DeleteUser { name }),
        (any::<bool>(), "[a-z*]{0,2}", any::<bool>()).prop_map(|(create, name, deny)| {
            let acl = topic_acl("User:alice", &name, if deny { Permission::Deny } else { Permission::Allow });
            if create {
                MetaCommand::CreateAcl(acl)
            } else {
                MetaCommand::DeleteAcl(acl)
            }
        }),
        ("[a-z.]{0,6}", 0..4u32, prop::collection::vec(prop::collection::vec(0..8u64, 0..4), 0..3))
            .prop_map(|(name, partitions_before, replicas)| MetaCommand::AddPartitions { name, partitions_before, replicas }),
        ("[a-z.]{0,6}", prop::collection::vec((prop::sample::select(TopicSetting::ALL.to_vec()), -2..5000i64), 0..3))
            .prop_map(|(name, changes)| MetaCommand::AlterTopicSettings { name, changes }),
        (0..4u64, 0..5u64, prop::sample::select(vec![RepairStep::Reported, RepairStep::Ready, RepairStep::Done]))
            .prop_map(|(group, node, step)| MetaCommand::RepairReplica { group, node, step }),
    ]
}

fn topic_acl(principal: &str, topic: &str, permission: Permission) -> AclBinding {
    AclBinding {
        principal: principal.to_string(),
        resource_type: ResourceType::Topic,
        resource_name: topic.to_string(),
        pattern: PatternType::Literal,
        operation: Operation::Write,
        permission,
    }
}

#[test]
fn users_are_stored_as_credentials_and_deleted() {
    let mut state = MetadataState::new();
    let credential = Credential::derive(Mechanism::Sha512, "pw", b"salt", odradek_client::scram::ITERATIONS_MIN);
    let upsert = MetaCommand::UpsertUser { name: "alice".into(), credential: credential.clone() };
    assert_eq!(step(&mut state, &upsert), MetaOutcome::UserUpserted);
    assert_eq!(state.user("alice"), Some(&credential));
    let changed = Credential::derive(Mechanism::Sha256, "pw2", b"salt", odradek_client::scram::ITERATIONS_MIN);
    assert_eq!(step(&mut state, &MetaCommand::UpsertUser { name: "alice".into(), credential: changed.clone() }), MetaOutcome::UserUpserted);
    assert_eq!(state.user("alice"), Some(&changed), "an upsert replaces the credential");
    let mut weak = changed.clone();
    weak.iterations = 1;
    assert_rejected(&mut state, &MetaCommand::UpsertUser { name: "bob".into(), credential: weak });
    assert_rejected(&mut state, &MetaCommand::UpsertUser { name: "ANONYMOUS".into(), credential: changed });
    assert_eq!(step(&mut state, &MetaCommand::DeleteUser { name: "alice".into() }), MetaOutcome::UserDeleted);
    assert_eq!(step(&mut state, &MetaCommand::DeleteUser { name: "alice".into() }), MetaOutcome::UserUnknown);
    assert!(state.users().is_empty());
}

#[test]
fn acls_are_a_set_of_valid_bindings() {
    let mut state = MetadataState::new();
    let acl = topic_acl("User:alice", "t", Permission::Allow);
    assert_eq!(step(&mut state, &MetaCommand::CreateAcl(acl.clone())), MetaOutcome::AclCreated);
    assert_eq!(step(&mut state, &MetaCommand::CreateAcl(acl.clone())), MetaOutcome::AclExists);
    assert_rejected(&mut state, &MetaCommand::CreateAcl(topic_acl("alice", "t", Permission::Allow)));
    assert_eq!(state.acls().len(), 1);
    assert_eq!(step(&mut state, &MetaCommand::DeleteAcl(acl.clone())), MetaOutcome::AclDeleted);
    assert_eq!(step(&mut state, &MetaCommand::DeleteAcl(acl)), MetaOutcome::AclUnknown);
    assert!(state.acls().is_empty());
}

/// A log entry: a command, or garbage bytes.
fn arb_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![8 => arb_command().prop_map(|command| command.encode()), 1 => prop::collection::vec(any::<u8>(), 0..16)]
}

proptest! {
    #[test]
    fn encode_decode_round_trip(command in arb_command()) {
        prop_assert_eq!(MetaCommand::decode(&command.encode()), Ok(command));
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = MetaCommand::decode(&bytes);
    }

    /// Two replicas fed the same log (with index gaps, as other entry kinds leave) end equal,
    /// and a refused command changes nothing but the applied index.
    #[test]
    fn apply_is_deterministic(payloads in prop::collection::vec((1..3u64, arb_payload()), 0..60)) {
        let mut first = MetadataState::new();
        let mut second = MetadataState::new();
        let mut index = 0;
        for (gap, payload) in &payloads {
            index += gap;
            let before = first.clone();
            let outcome = first.apply(index, payload);
            prop_assert_eq!(second.apply(index, payload), outcome.clone());
            prop_assert_eq!(&first, &second);
            if let MetaOutcome::Rejected(_) | MetaOutcome::TopicExists | MetaOutcome::TopicUnknown = outcome {
                let mut expected = before;
                expected.applied_index = index;
                prop_assert_eq!(&first, &expected);
            }
            // The group index and the topics agree.
            for topic in first.topics().values() {
                for info in &topic.partitions {
                    let (found_topic, found) = first.partition_of_group(info.group).unwrap();
                    prop_assert_eq!((&found_topic.name, found), (&topic.name, info));
                    prop_assert!(info.group >= 1 && info.group < first.group_next());
                }
            }
        }
    }

    #[test]
    fn assign_replicas_spreads_evenly(brokers in prop::collection::btree_set(1..100u64, 1..8), partitions in 1..60u32, rf in 1..=REPLICATION_FACTOR_MAX, start in any::<u64>()) {
        let brokers: Vec<NodeId> = brokers.into_iter().collect();
        let n = brokers.len() as u32;
        let result = assign_replicas(&brokers, partitions, rf, start);
        if rf > n {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let assignment = result.unwrap();
        prop_assert_eq!(assignment.len(), partitions as usize);
        let mut leaders: BTreeMap<NodeId, u32> = brokers.iter().map(|b| (*b, 0)).collect();
        let mut replicas: BTreeMap<NodeId, u32> = leaders.clone();
        for list in &assignment {
            prop_assert_eq!(list.len(), rf as usize);
            let distinct: std::collections::BTreeSet<_> = list.iter().collect();
            prop_assert_eq!(distinct.len(), list.len(), "no duplicates in {:?}", list);
            *leaders.get_mut(&list[0]).unwrap() += 1;
            for node in list {
                *replicas.get_mut(node).expect("only given brokers") += 1;
            }
        }
        for count in leaders.values() {
            prop_assert!(*count == partitions / n || *count == partitions.div_ceil(n), "leaders {:?}", leaders);
        }
        let replicas_min = replicas.values().min().unwrap();
        let replicas_max = replicas.values().max().unwrap();
        prop_assert!(replicas_max - replicas_min <= rf, "replicas {:?}", replicas);
        // The first leader rotates with `start`.
        prop_assert_eq!(assignment[0][0], brokers[(start % u64::from(n)) as usize]);
    }
}

/// The repair of a damaged replica (module `repair`): reported, ready, done, in that order;
/// refused out of order, for another node while one runs, for a node outside the replicas, and
/// while the partition moves; the only replica is blocked; a repeat changes nothing.
#[test]
fn a_damaged_replica_is_repaired_step_by_step_and_never_out_of_order() {
    let mut state = three_brokers();
    assert!(matches!(step(&mut state, &create("t", vec![vec![1, 2, 3]])), MetaOutcome::TopicCreated { .. }));
    assert!(matches!(step(&mut state, &create("solo", vec![vec![2]])), MetaOutcome::TopicCreated { .. }));
    let (group, only) = (state.topic("t").unwrap().partitions[0].group, state.topic("solo").unwrap().partitions[0].group);
    let repair = |group, node, step| MetaCommand::RepairReplica { group, node, step };
    assert_rejected(&mut state, &repair(group, 3, RepairStep::Ready));
    // A completion with nothing recorded is a retry of one recorded already: nothing changes.
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Done)), MetaOutcome::RepairStepped);
    assert_eq!((state.repairs().len(), state.repairs_completed()), (0, 0));
    assert_rejected(&mut state, &repair(group, 4, RepairStep::Reported));
    assert_rejected(&mut state, &repair(99, 3, RepairStep::Reported));
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert_eq!(state.repair(group), Some(Repair { node: 3, phase: RepairPhase::Waiting }));
    let recorded = state.clone();
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert_eq!(state.repairs(), recorded.repairs(), "a repeated report changes nothing");
    assert_rejected(&mut state, &repair(group, 2, RepairStep::Reported));
    assert_rejected(&mut state, &repair(group, 3, RepairStep::Done));
    let moving = MetaCommand::StartReassignment { topic: "t".into(), partition: 0, replicas: vec![2, 1, 3] };
    assert!(
        matches!(step(&mut state, &moving), MetaOutcome::ReassignmentRefused(ReassignRefusal::InProgress(_))),
        "no move while repairing"
    );
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Ready)), MetaOutcome::RepairStepped);
    assert_eq!(state.repair(group), Some(Repair { node: 3, phase: RepairPhase::Rebuilding }));
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Ready)), MetaOutcome::RepairStepped);
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Done)), MetaOutcome::RepairStepped);
    assert_eq!((state.repair(group), state.repairs_completed()), (None, 1));
    assert_eq!(step(&mut state, &repair(group, 3, RepairStep::Done)), MetaOutcome::RepairStepped);
    assert_eq!(state.repairs_completed(), 1, "a repeated completion counts once");
    // The partition's only replica: recorded, never reset.
    assert_eq!(step(&mut state, &repair(only, 2, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert_eq!(state.repair(only), Some(Repair { node: 2, phase: RepairPhase::Blocked }));
    assert_rejected(&mut state, &repair(only, 2, RepairStep::Ready));
    // A partition that moves repairs after the move; a deleted topic forgets its repairs.
    assert!(matches!(step(&mut state, &moving), MetaOutcome::ReassignmentStarted { .. }));
    assert_rejected(&mut state, &repair(group, 1, RepairStep::Reported));
    assert_eq!(step(&mut state, &MetaCommand::DeleteTopic { name: "solo".into() }), MetaOutcome::TopicDeleted);
    assert!(state.repairs().is_empty(), "the blocked repair went with its topic");
}

/// The repair of a node's damaged metadata replica (module `repair`, `crate::meta_repair`),
/// recorded under the metadata group: reported (waiting, never blocked), ready, done, in that
/// order; one node at a time; refused for no node; counted with the partition repairs.
#[test]
fn a_damaged_metadata_replica_is_repaired_step_by_step_one_node_at_a_time() {
    let mut state = three_brokers();
    let repair = |node, step| MetaCommand::RepairReplica { group: METADATA_GROUP, node, step };
    assert_rejected(&mut state, &repair(0, RepairStep::Reported));
    assert_rejected(&mut state, &repair(2, RepairStep::Ready));
    assert_eq!(step(&mut state, &repair(2, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert_eq!(state.metadata_repair(), Some(Repair { node: 2, phase: RepairPhase::Waiting }));
    assert_eq!(step(&mut state, &repair(2, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert_eq!(state.metadata_repair(), Some(Repair { node: 2, phase: RepairPhase::Waiting }), "a repeat changes nothing");
    assert_rejected(&mut state, &repair(3, RepairStep::Reported));
    assert_rejected(&mut state, &repair(2, RepairStep::Done));
    assert_eq!(step(&mut state, &repair(2, RepairStep::Ready)), MetaOutcome::RepairStepped);
    assert_eq!(state.metadata_repair(), Some(Repair { node: 2, phase: RepairPhase::Rebuilding }));
    assert_eq!(step(&mut state, &repair(2, RepairStep::Ready)), MetaOutcome::RepairStepped);
    assert_eq!(step(&mut state, &repair(2, RepairStep::Done)), MetaOutcome::RepairStepped);
    assert_eq!((state.metadata_repair(), state.repairs_completed()), (None, 1));
    assert_eq!(step(&mut state, &repair(2, RepairStep::Done)), MetaOutcome::RepairStepped);
    assert_eq!(state.repairs_completed(), 1, "a repeated completion counts once");
    // The next node's turn.
    assert_eq!(step(&mut state, &repair(3, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert_eq!(state.metadata_repair(), Some(Repair { node: 3, phase: RepairPhase::Waiting }));
}

/// Leadership is never handed to a node whose metadata replica is being repaired (quarantined,
/// or catching up), nor to a replica being repaired: `leadership_refusal` names them, and
/// `lead_refusals` (what the consensus node's own hand-overs skip: a drain, a node low on disk)
/// refuses exactly the same replicas at every step.
#[test]
fn no_leadership_goes_to_a_replica_or_node_being_repaired() {
    let mut state = three_brokers();
    assert!(matches!(step(&mut state, &create("t", vec![vec![1, 2, 3]])), MetaOutcome::TopicCreated { .. }));
    let group = state.topic("t").unwrap().partitions[0].group;
    let agree = |state: &MetadataState| {
        let refusals = state.lead_refusals();
        for g in [METADATA_GROUP, group, group + 1] {
            for node in [1, 2, 3] {
                assert_eq!(refusals.refuses(g, node), state.leadership_refusal(g, node).is_some(), "group {g}, node {node}: {refusals:?}");
            }
        }
    };
    for node in [1, 2, 3] {
        assert_eq!(state.leadership_refusal(group, node), None, "nothing is repaired");
    }
    agree(&state);
    let metadata = |node, step| MetaCommand::RepairReplica { group: METADATA_GROUP, node, step };
    assert_eq!(step(&mut state, &metadata(2, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert!(state.leadership_refusal(group, 2).is_some_and(|why| why.contains("metadata replica")), "a quarantined node");
    agree(&state);
    assert_eq!(step(&mut state, &metadata(2, RepairStep::Ready)), MetaOutcome::RepairStepped);
    assert!(state.leadership_refusal(group, 2).is_some(), "a node still catching up its metadata");
    assert_eq!(state.leadership_refusal(group, 3), None);
    agree(&state);
    assert_eq!(step(&mut state, &metadata(2, RepairStep::Done)), MetaOutcome::RepairStepped);
    assert_eq!(state.leadership_refusal(group, 2), None, "repaired");
    agree(&state);
    let replica = |node, step| MetaCommand::RepairReplica { group, node, step };
    assert_eq!(step(&mut state, &replica(3, RepairStep::Reported)), MetaOutcome::RepairStepped);
    assert!(state.leadership_refusal(group, 3).is_some_and(|why| why.contains("replica of group")));
    assert_eq!(state.leadership_refusal(group, 1), None);
    agree(&state);
    assert_eq!(state.lead_refusals().replicas.len(), 1, "the repair of one replica refuses that replica alone");
}
