//! Kafka's consumer-group APIs on the Kafka listener (issue 16), end to end over real sockets
//! with the `kafka-protocol` codecs on the client side: FindCoordinator, the classic protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with static members, OffsetCommit and
//! OffsetFetch, ListGroups and DescribeGroups, each with its error paths (unknown member, wrong
//! generation) answered with Kafka's codes. ConsumerProtocol bytes pass through untouched (the
//! group's leader member assigns). Invariants: C5 (a commit of an older generation is
//! refused), C1 (a committed offset is what a later fetch returns).
//! Real Kafka clients run the same APIs in scripts/kafka-compat.sh.

// Real sockets and a real runtime: not a simulation test.
#![cfg(not(madsim))]

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use odradek_client::group::protocol::{Assignment, Subscription, TopicPartitions};
use odradek_log::SimDisk;
use odradek_server::group::MEMBERS_PER_GROUP_MAX;
use odradek_server::{system_clock, Server};

use crate::kafka_raw;
use kafka_raw::KafkaRaw;

// Kafka's codes, as a client reads them.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const GROUP_ID_NOT_FOUND: i16 = 69;
const UNKNOWN_TOPIC_ID: i16 = 100;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_MAX_SIZE_REACHED: i16 = 81;
const FENCED_MEMBER_EPOCH: i16 = 110;
const INVALID_REGULAR_EXPRESSION: i16 = 128;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

const GROUP: &str = "billing";
const TOPIC: &str = "orders";

/// A one-node cluster with a Kafka listener, a small offsets topic and a short initial
/// rebalance delay.
fn start(runtime: &tokio::runtime::Runtime) -> (Server, String) {
    let mut config = kafka_raw::one_node_config();
    config.groups.offsets_topic_partitions = 2;
    config.groups.initial_rebalance_delay_ms = 200;
    let server = runtime.block_on(Server::start(config, SimDisk::new(21), system_clock())).expect("start");
    let kafka = server.kafka_addr().expect("a Kafka listener").to_string();
    (server, kafka)
}

/// Creates TOPIC with 2 partitions, then waits for GROUP's coordinator (the first
/// FindCoordinator creates the offsets topic: COORDINATOR_NOT_AVAILABLE until it has leaders).
fn prepare(raw: &mut KafkaRaw, kafka: &str) {
    prepare_group(raw, kafka, GROUP);
}

fn prepare_group(raw: &mut KafkaRaw, kafka: &str, group: &str) {
    for _ in 0..400 {
        let topic = CreatableTopic::default().with_name(TopicName(text(TOPIC))).with_num_partitions(2).with_replication_factor(1);
        let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![topic]);
        let ResponseKind::CreateTopics(created) = raw.call(5, RequestKind::CreateTopics(create)) else { panic!() };
        if [0, 36].contains(&created.topics[0].error_code) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for attempt in 0..400 {
        let find = FindCoordinatorRequest::default().with_key(text(group)).with_key_type(0);
        let ResponseKind::FindCoordinator(found) = raw.call(3, RequestKind::FindCoordinator(find)) else { panic!() };
        if found.error_code == NONE {
            assert_eq!(found.node_id.0, 1);
            assert_eq!(format!("{}:{}", found.host.as_str(), found.port), kafka, "the coordinator's Kafka address");
            break;
        }
        assert!([COORDINATOR_NOT_AVAILABLE, 5, 14].contains(&found.error_code), "{found:?}");
        assert!(attempt < 399, "no coordinator");
        std::thread::sleep(Duration::from_millis(50));
    }
    // v4 asks for several keys at once.
    let find = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![text(group)]);
    let ResponseKind::FindCoordinator(found) = raw.call(4, RequestKind::FindCoordinator(find)) else { panic!() };
    assert_eq!(found.coordinators.len(), 1);
    assert_eq!((found.coordinators[0].error_code, found.coordinators[0].node_id.0), (NONE, 1), "{found:?}");
}

fn subscription() -> Bytes {
    Subscription { version: 1, topics: vec![TOPIC.into()], ..Subscription::default() }.encode().unwrap().into()
}

fn assignment(partitions: &[u32]) -> Bytes {
    let partitions = vec![TopicPartitions { topic: TOPIC.into(), partitions: partitions.to_vec() }];
    Assignment { version: 1, partitions, user_data: None }.encode().unwrap().into()
}

fn join(member_id: &str, instance: Option<&str>) -> RequestKind {
    let protocol = JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(subscription());
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(member_id))
            .with_group_instance_id(instance.map(text))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![protocol]),
    )
}

fn joined(response: ResponseKind) -> JoinGroupResponse {
    match response {
        ResponseKind::JoinGroup(joined) => joined,
        other => panic!("{other:?}"),
    }
}

fn sync(member_id: &str, generation: i32, assignments: &[(&str, Bytes)]) -> RequestKind {
    let assignments =
        assignments.iter().map(|(m, a)| SyncGroupRequestAssignment::default().with_member_id(text(m)).with_assignment(a.clone())).collect();
    RequestKind::SyncGroup(
        SyncGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_generation_id(generation)
            .with_member_id(text(member_id))
            .with_assignments(assignments),
    )
}

fn synced(response: ResponseKind) -> SyncGroupResponse {
    match response {
        ResponseKind::SyncGroup(synced) => synced,
        other => panic!("{other:?}"),
    }
}

fn heartbeat(raw: &mut KafkaRaw, member_id: &str, generation: i32) -> i16 {
    let beat =
        HeartbeatRequest::default().with_group_id(GroupId(text(GROUP))).with_generation_id(generation).with_member_id(text(member_id));
    match raw.call(4, RequestKind::Heartbeat(beat)) {
        ResponseKind::Heartbeat(answer) => answer.error_code,
        other => panic!("{other:?}"),
    }
}

/// OffsetCommit v8 of `offset` on both partitions: each partition's code.
fn commit(raw: &mut KafkaRaw, member_id: &str, generation: i32, offset: i64) -> Vec<i16> {
    commit_at(raw, 8, GROUP, member_id, generation, offset)
}

/// OffsetCommit of `version` in `group` of `offset` on both partitions: each partition's code.
fn commit_at(raw: &mut KafkaRaw, version: i16, group: &str, member_id: &str, epoch: i32, offset: i64) -> Vec<i16> {
    commit_as(raw, version, group, (member_id, None), epoch, offset)
}

/// [`commit_at`] naming a member id and a group instance id (v7+).
fn commit_as(
    raw: &mut KafkaRaw,
    version: i16,
    group: &str,
    (member_id, instance): (&str, Option<&str>),
    epoch: i32,
    offset: i64,
) -> Vec<i16> {
    let partitions =
        (0..2).map(|p| OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(offset)).collect();
    let topic = OffsetCommitRequestTopic::default().with_name(TopicName(text(TOPIC))).with_partitions(partitions);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(epoch)
        .with_member_id(text(member_id))
        .with_group_instance_id(instance.map(text))
        .with_topics(vec![topic]);
    let ResponseKind::OffsetCommit(answer) = raw.call(version, RequestKind::OffsetCommit(request)) else { panic!() };
    answer.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

fn describe(raw: &mut KafkaRaw, group: &str) -> kafka_protocol::messages::describe_groups_response::DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(text(group))]);
    let ResponseKind::DescribeGroups(mut answer) = raw.call(5, RequestKind::DescribeGroups(request)) else { panic!() };
    answer.groups.remove(0)
}

/// The classic protocol through Kafka's APIs, one member then two (one static), with the error
/// paths of each API: the codes a Kafka client acts on (rejoin on UNKNOWN_MEMBER_ID and
/// ILLEGAL_GENERATION, rejoin on REBALANCE_IN_PROGRESS).
#[test]
fn classic_groups_and_offsets_through_the_kafka_listener() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut a = KafkaRaw::connect(&kafka);
    prepare(&mut a, &kafka);

    // KIP-394 (v4+): a new member is first given its id, then joins with it.
    let required = joined(a.call(5, join("", None)));
    assert_eq!(required.error_code, MEMBER_ID_REQUIRED, "{required:?}");
    assert!(!required.member_id.is_empty(), "MEMBER_ID_REQUIRED carries the id to join with");
    // One member: it waits out the initial delay, then leads generation 1 and gets every
    // member's metadata back byte for byte.
    let first = joined(a.call(5, join(required.member_id.as_str(), None)));
    assert_eq!(first.error_code, NONE, "{first:?}");
    let (member_a, generation) = (first.member_id.to_string(), first.generation_id);
    assert_eq!(member_a, required.member_id.as_str(), "the member keeps the id it was given");
    assert_eq!(first.leader.as_str(), member_a);
    assert_eq!(first.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(first.members.len(), 1);
    assert_eq!(first.members[0].metadata, subscription(), "the coordinator passes the Subscription through untouched");

    // Ids given with MEMBER_ID_REQUIRED count toward the group's size until they join or lapse:
    // a flood of empty-id joins gets GROUP_MAX_SIZE_REACHED, not an ever-growing set.
    let mut flood = KafkaRaw::connect(&kafka);
    let answers: Vec<i16> = (0..MEMBERS_PER_GROUP_MAX).map(|_| joined(flood.call(5, join("", None))).error_code).collect();
    let given = answers.iter().filter(|&&code| code == MEMBER_ID_REQUIRED).count();
    assert_eq!(given, MEMBERS_PER_GROUP_MAX - 1, "one member and the ids given fill the group: {answers:?}");
    assert_eq!(answers.last(), Some(&GROUP_MAX_SIZE_REACHED));

    // Join error path: an unknown member id.
    assert_eq!(joined(a.call(5, join("ghost", None))).error_code, UNKNOWN_MEMBER_ID);

    // Sync error paths, then the leader's assignment, returned as sent.
    assert_eq!(synced(a.call(3, sync("ghost", generation, &[]))).error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(synced(a.call(3, sync(&member_a, generation + 5, &[]))).error_code, ILLEGAL_GENERATION);
    let mine = synced(a.call(5, sync(&member_a, generation, &[(&member_a, assignment(&[0, 1]))])));
    assert_eq!(mine.error_code, NONE, "{mine:?}");
    assert_eq!(mine.assignment, assignment(&[0, 1]));
    assert_eq!(mine.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));

    // Heartbeat and its error paths.
    assert_eq!(heartbeat(&mut a, &member_a, generation), NONE);
    assert_eq!(heartbeat(&mut a, "ghost", generation), UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&mut a, &member_a, generation - 1), ILLEGAL_GENERATION);

    // OffsetCommit (C5: only the current generation's members commit) and OffsetFetch (C1).
    assert_eq!(commit(&mut a, &member_a, generation, 42), vec![NONE, NONE]);
    assert_eq!(commit(&mut a, &member_a, generation - 1, 99), vec![ILLEGAL_GENERATION; 2]);
    assert_eq!(commit(&mut a, "ghost", generation, 99), vec![UNKNOWN_MEMBER_ID; 2]);
    let topic = OffsetFetchRequestTopic::default().with_name(TopicName(text(TOPIC))).with_partition_indexes(vec![0, 1, 7]);
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(text(GROUP))).with_topics(Some(vec![topic]));
    let ResponseKind::OffsetFetch(fetched) = a.call(7, RequestKind::OffsetFetch(fetch)) else { panic!() };
    assert_eq!(fetched.error_code, NONE);
    let offsets: Vec<(i32, i64)> = fetched.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(offsets, vec![(0, 42), (1, 42), (7, -1)], "the refused commits changed nothing; nothing committed is -1");
    // v8: groups in a batch; no topics named is every committed partition.
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(text(GROUP))).with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text("other")))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default().with_name(TopicName(text(TOPIC))).with_partition_indexes(vec![0])])),
    ]);
    let ResponseKind::OffsetFetch(fetched) = a.call(8, RequestKind::OffsetFetch(fetch)) else { panic!() };
    assert_eq!(fetched.groups.len(), 2);
    let all: Vec<(i32, i64)> = fetched.groups[0].topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(all, vec![(0, 42), (1, 42)]);
    assert_eq!(fetched.groups[1].topics[0].partitions[0].committed_offset, -1);
    // A negative partition index: refused, nothing committed.
    let partition = OffsetCommitRequestPartition::default().with_partition_index(-1).with_committed_offset(1);
    let bad = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(&member_a))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(text(TOPIC))).with_partitions(vec![partition])]);
    let ResponseKind::OffsetCommit(refused) = a.call(8, RequestKind::OffsetCommit(bad)) else { panic!() };
    assert_eq!(refused.topics[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    // ListGroups and DescribeGroups: the group is Stable with member A owning both partitions.
    let list = ListGroupsRequest::default().with_states_filter(vec![text("stable")]);
    let ResponseKind::ListGroups(listed) = a.call(4, RequestKind::ListGroups(list)) else { panic!() };
    assert_eq!(listed.error_code, NONE);
    let names: Vec<(&str, &str)> = listed.groups.iter().map(|g| (g.group_id.0.as_str(), g.group_state.as_str())).collect();
    assert_eq!(names, vec![(GROUP, "Stable")]);
    let list = ListGroupsRequest::default().with_states_filter(vec![text("Empty")]);
    let ResponseKind::ListGroups(listed) = a.call(4, RequestKind::ListGroups(list)) else { panic!() };
    assert!(listed.groups.is_empty(), "the state filter applies: {listed:?}");
    let described = describe(&mut a, GROUP);
    assert_eq!((described.error_code, described.group_state.as_str()), (NONE, "Stable"));
    assert_eq!((described.protocol_type.as_str(), described.protocol_data.as_str()), ("consumer", "range"));
    assert_eq!(described.members.len(), 1);
    let owned = Assignment::decode(&described.members[0].member_assignment).unwrap();
    assert_eq!(owned.partitions, vec![TopicPartitions { topic: TOPIC.into(), partitions: vec![0, 1] }]);
    let unknown = describe(&mut a, "nobody");
    assert_eq!((unknown.error_code, unknown.group_state.as_str()), (NONE, "Dead"), "Kafka describes an unknown group as Dead");

    // A static member joins: a rebalance. A learns of it from its heartbeat and rejoins; both
    // joins are answered with the next generation, A still leading.
    let mut b = KafkaRaw::connect(&kafka);
    b.send(5, 11, join("", Some("instance-b")));
    let mut rebalancing = false;
    for _ in 0..100 {
        match heartbeat(&mut a, &member_a, generation) {
            NONE => std::thread::sleep(Duration::from_millis(20)),
            code => {
                assert_eq!(code, REBALANCE_IN_PROGRESS);
                rebalancing = true;
                break;
            }
        }
    }
    assert!(rebalancing, "A never heard of the rebalance");
    let second_a = joined(a.call(5, join(&member_a, None)));
    let second_b = joined(b.answer(ApiKey::JoinGroup, 5, 11));
    assert_eq!((second_a.error_code, second_b.error_code), (NONE, NONE), "{second_a:?} {second_b:?}");
    let generation_2 = second_a.generation_id;
    assert_eq!(second_b.generation_id, generation_2);
    assert!(generation_2 > generation);
    assert_eq!(second_a.leader.as_str(), member_a);
    assert_eq!(second_a.members.len(), 2, "the leader gets every member");
    assert!(second_b.members.is_empty(), "only the leader gets the members");
    let member_b = second_b.member_id.to_string();
    let instance_b = second_a.members.iter().find(|m| m.member_id.as_str() == member_b).and_then(|m| m.group_instance_id.clone());
    assert_eq!(instance_b.as_ref().map(|i| i.as_str()), Some("instance-b"));
    // An old generation's commit is refused now (C5).
    assert_eq!(commit(&mut a, &member_a, generation, 50), vec![ILLEGAL_GENERATION; 2]);
    // B's sync waits for the leader's.
    b.send(3, 12, sync(&member_b, generation_2, &[]));
    let leader_sync = sync(&member_a, generation_2, &[(&member_a, assignment(&[0])), (&member_b, assignment(&[1]))]);
    assert_eq!(synced(a.call(3, leader_sync)).assignment, assignment(&[0]));
    assert_eq!(synced(b.answer(ApiKey::SyncGroup, 3, 12)).assignment, assignment(&[1]));

    // B restarts with the same instance id: a new member id, the same generation and
    // assignment, no rebalance (A's heartbeats stay clean).
    drop(b);
    let mut b = KafkaRaw::connect(&kafka);
    let back = joined(b.call(5, join("", Some("instance-b"))));
    assert_eq!(back.error_code, NONE, "{back:?}");
    assert_eq!(back.generation_id, generation_2);
    assert_ne!(back.member_id.as_str(), member_b);
    let member_b = back.member_id.to_string();
    assert_eq!(synced(b.call(3, sync(&member_b, generation_2, &[]))).assignment, assignment(&[1]));
    assert_eq!(heartbeat(&mut a, &member_a, generation_2), NONE);
    assert_eq!(heartbeat(&mut b, &member_b, generation_2), NONE);

    // LeaveGroup: a batch with an unknown member (its own code), then B by instance id (v3+),
    // then A alone (v1). The group ends Empty with its offsets kept.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(text(GROUP))).with_members(vec![
        MemberIdentity::default().with_member_id(text("ghost")),
        MemberIdentity::default().with_member_id(text("")).with_group_instance_id(Some(text("instance-b"))),
    ]);
    let ResponseKind::LeaveGroup(left) = b.call(4, RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(left.error_code, NONE);
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![UNKNOWN_MEMBER_ID, NONE], "{left:?}");
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(text(GROUP))).with_member_id(text("ghost"));
    let ResponseKind::LeaveGroup(left) = a.call(1, RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(left.error_code, UNKNOWN_MEMBER_ID);
    // A is asked to rejoin (B left), and leaves instead.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(text(GROUP))).with_member_id(text(&member_a));
    let ResponseKind::LeaveGroup(left) = a.call(1, RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(left.error_code, NONE);
    let mut empty = false;
    for _ in 0..200 {
        let described = describe(&mut a, GROUP);
        if described.group_state.as_str() == "Empty" {
            assert!(described.members.is_empty());
            empty = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(empty, "the group never emptied: {:?}", describe(&mut a, GROUP));
    // A new consumer of the group resumes from the committed offsets (a simple fetch).
    let topic = OffsetFetchRequestTopic::default().with_name(TopicName(text(TOPIC))).with_partition_indexes(vec![0, 1]);
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(text(GROUP))).with_topics(Some(vec![topic]));
    let ResponseKind::OffsetFetch(fetched) = a.call(5, RequestKind::OffsetFetch(fetch)) else { panic!() };
    assert!(fetched.topics[0].partitions.iter().all(|p| p.committed_offset == 42), "{fetched:?}");

    runtime.block_on(server.shutdown()).unwrap();
}

/// A consumer-protocol join (member epoch 0) of `group`, subscribed to [`TOPIC`].
fn subscribe_request(group: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(text(TOPIC))]))
        .with_topic_partitions(Some(Vec::new()))
}

/// Joins `group` with [`subscribe_request`]: the member's id and epoch.
fn join_consumer(raw: &mut KafkaRaw, group: &str) -> (String, i32) {
    let joined = consumer_heartbeat(raw, 0, subscribe_request(group));
    assert_eq!(joined.error_code, NONE, "{joined:?}");
    (joined.member_id.clone().expect("a member id").to_string(), joined.member_epoch)
}

fn consumer_heartbeat(raw: &mut KafkaRaw, version: i16, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    match raw.call(version, RequestKind::ConsumerGroupHeartbeat(request)) {
        ResponseKind::ConsumerGroupHeartbeat(answer) => answer,
        other => panic!("{other:?}"),
    }
}

/// The consumer protocol (KIP-848) through ConsumerGroupHeartbeat: the coordinator assigns,
/// topics are named by the ids Metadata v10+ reports (and resolves), and the error paths a
/// client acts on: FENCED_MEMBER_EPOCH and UNKNOWN_MEMBER_ID (rejoin with epoch 0).
/// ConsumerGroupDescribe shows the member; a classic group is GROUP_ID_NOT_FOUND there.
#[test]
fn consumer_protocol_groups_through_the_kafka_listener() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);
    let group = "kip848";
    prepare_group(&mut raw, &kafka, group);

    // The topic's id, from Metadata v12; and the topic found again by id alone.
    let asked = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(text(TOPIC))));
    let ResponseKind::Metadata(metadata) = raw.call(12, RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![asked]))))
    else {
        panic!()
    };
    let topic_id = metadata.topics[0].topic_id;
    assert!(!topic_id.is_nil(), "Metadata v10+ carries a topic id");
    let by_id = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(None).with_topic_id(topic_id);
    let ResponseKind::Metadata(found) = raw.call(12, RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![by_id]))))
    else {
        panic!()
    };
    assert_eq!(found.topics.len(), 1);
    assert_eq!(found.topics[0].name.as_ref().map(|n| n.0.as_str()), Some(TOPIC));
    // An id that names no topic: UNKNOWN_TOPIC_ID for it (alone, and beside a known one).
    let ghost_id = {
        let mut bytes = *topic_id.as_bytes();
        bytes[15] ^= 0xff; // the name hash's last byte: no topic has this id
        uuid::Uuid::from_bytes(bytes)
    };
    let id_topic = |id| kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(None).with_topic_id(id);
    for asked in [vec![id_topic(ghost_id)], vec![id_topic(topic_id), id_topic(ghost_id)]] {
        let count = asked.len();
        let ResponseKind::Metadata(answer) = raw.call(12, RequestKind::Metadata(MetadataRequest::default().with_topics(Some(asked))))
        else {
            panic!()
        };
        assert_eq!(answer.topics.len(), count, "{answer:?}");
        let ghost = answer.topics.iter().find(|t| t.topic_id == ghost_id).expect("the unknown id is answered");
        assert_eq!((ghost.error_code, ghost.name.is_none()), (UNKNOWN_TOPIC_ID, true));
    }

    // A member joins (epoch 0) and is assigned both partitions, by topic id.
    let join = subscribe_request(group);
    let mut joined = consumer_heartbeat(&mut raw, 0, join.clone());
    assert_eq!(joined.error_code, NONE, "{joined:?}");
    let member_id = joined.member_id.clone().expect("a member id").to_string();
    assert!(joined.member_epoch > 0);
    assert!(joined.heartbeat_interval_ms > 0);
    let mut partitions: Vec<i32> = Vec::new();
    for _ in 0..50 {
        let assignment = joined.assignment.clone().expect("an assignment");
        partitions = assignment.topic_partitions.iter().filter(|t| t.topic_id == topic_id).flat_map(|t| t.partitions.clone()).collect();
        if partitions.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let beat = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_member_id(text(&member_id))
            .with_member_epoch(joined.member_epoch)
            .with_rebalance_timeout_ms(-1);
        joined = consumer_heartbeat(&mut raw, 0, beat);
        assert_eq!(joined.error_code, NONE, "{joined:?}");
    }
    partitions.sort();
    assert_eq!(partitions, vec![0, 1]);
    let epoch = joined.member_epoch;

    // Error paths: a wrong epoch is fenced, an unknown member is unknown.
    let fenced = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(&member_id))
        .with_member_epoch(epoch + 7)
        .with_rebalance_timeout_ms(-1);
    assert_eq!(consumer_heartbeat(&mut raw, 0, fenced).error_code, FENCED_MEMBER_EPOCH);
    let stranger = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text("ghost"))
        .with_member_epoch(3)
        .with_rebalance_timeout_ms(-1);
    assert_eq!(consumer_heartbeat(&mut raw, 0, stranger).error_code, UNKNOWN_MEMBER_ID);

    // A commit at the member epoch, fenced at an older one (C5, STALE_MEMBER_EPOCH).
    assert_eq!(commit_in(&mut raw, group, &member_id, epoch, 9), vec![NONE, NONE]);
    assert_eq!(commit_in(&mut raw, group, &member_id, epoch - 1, 9), vec![113, 113]);

    // ConsumerGroupDescribe: the member with its partitions, by topic id and name.
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(text(group)), GroupId(text("nobody"))]);
    let ResponseKind::ConsumerGroupDescribe(described) = raw.call(0, RequestKind::ConsumerGroupDescribe(request)) else { panic!() };
    let mine = &described.groups[0];
    assert_eq!(mine.error_code, NONE, "{mine:?}");
    assert_eq!(mine.members.len(), 1);
    assert_eq!(mine.members[0].member_id.as_str(), member_id);
    let owned = &mine.members[0].assignment.topic_partitions;
    assert_eq!((owned[0].topic_id, owned[0].topic_name.0.as_str()), (topic_id, TOPIC));
    assert_eq!(described.groups[1].error_code, GROUP_ID_NOT_FOUND);

    // The member leaves (epoch -1): the group is empty.
    let leave = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(&member_id))
        .with_member_epoch(-1)
        .with_rebalance_timeout_ms(-1);
    let left = consumer_heartbeat(&mut raw, 0, leave);
    assert_eq!((left.error_code, left.member_epoch), (NONE, -1));
    let described = describe(&mut raw, group);
    assert!(described.members.is_empty(), "{described:?}");
    runtime.block_on(server.shutdown()).unwrap();
}

/// The ids of every topic, from Metadata v12.
fn topic_ids(raw: &mut KafkaRaw) -> std::collections::BTreeMap<String, uuid::Uuid> {
    let ResponseKind::Metadata(metadata) = raw.call(12, RequestKind::Metadata(MetadataRequest::default().with_topics(None))) else {
        panic!()
    };
    metadata.topics.iter().filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.topic_id))).collect()
}

/// KIP-848's server-side regex (ConsumerGroupHeartbeat v1 SubscribedTopicRegex): the coordinator
/// matches the pattern against whole topic names, now and as topics are created; a pattern that
/// does not compile is INVALID_REGULAR_EXPRESSION (128) and admits no member;
/// ConsumerGroupDescribe shows the pattern. librdkafka with `group.protocol=consumer` does the
/// same in scripts/kafka-compat.sh.
#[test]
fn regex_subscriptions_are_resolved_by_the_coordinator() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);
    let group = "kip848-regex";
    prepare_group(&mut raw, &kafka, group);
    let create = |raw: &mut KafkaRaw, name: &str| {
        let topic = CreatableTopic::default().with_name(TopicName(text(name))).with_num_partitions(1).with_replication_factor(1);
        let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![topic]);
        let ResponseKind::CreateTopics(created) = raw.call(5, RequestKind::CreateTopics(create)) else { panic!() };
        assert_eq!(created.topics[0].error_code, NONE, "{created:?}");
    };
    create(&mut raw, "ordersx"); // its whole name matches `ord.*`
    create(&mut raw, "backorders"); // contains a match but is not one: never assigned

    let join = |pattern: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_regex(Some(text(pattern)))
            .with_topic_partitions(Some(Vec::new()))
    };
    let refused = consumer_heartbeat(&mut raw, 1, join("ord(ers"));
    assert_eq!(refused.error_code, INVALID_REGULAR_EXPRESSION, "{refused:?}");
    assert!(describe(&mut raw, group).members.is_empty(), "a refused join admits no member");

    // Heartbeats until the member owns `want` (topic name -> partitions).
    let owned_topics = |raw: &mut KafkaRaw, answer: &ConsumerGroupHeartbeatResponse| -> Vec<String> {
        let names: std::collections::BTreeMap<uuid::Uuid, String> = topic_ids(raw).into_iter().map(|(name, id)| (id, name)).collect();
        let mut owned: Vec<String> = answer
            .assignment
            .iter()
            .flat_map(|a| a.topic_partitions.iter())
            .flat_map(|t| {
                t.partitions.iter().map(|p| format!("{}-{p}", names.get(&t.topic_id).cloned().unwrap_or_default())).collect::<Vec<_>>()
            })
            .collect();
        owned.sort();
        owned
    };
    let mut answer = consumer_heartbeat(&mut raw, 1, join("ord.*"));
    assert_eq!(answer.error_code, NONE, "{answer:?}");
    let member_id = answer.member_id.clone().expect("a member id").to_string();
    let settle = |raw: &mut KafkaRaw, mut answer: ConsumerGroupHeartbeatResponse, want: &[&str]| {
        for _ in 0..100 {
            if owned_topics(raw, &answer) == want {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(50));
            let beat = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(text(group)))
                .with_member_id(text(&member_id))
                .with_member_epoch(answer.member_epoch)
                .with_rebalance_timeout_ms(-1);
            answer = consumer_heartbeat(raw, 1, beat);
            assert_eq!(answer.error_code, NONE, "{answer:?}");
        }
        panic!("the member never owned {want:?}: {:?}", owned_topics(raw, &answer));
    };
    answer = settle(&mut raw, answer, &["orders-0", "orders-1", "ordersx-0"]);
    // A topic created after the member joined, that the pattern matches: assigned on a later
    // heartbeat, with nothing resent about the subscription.
    create(&mut raw, "ord-late");
    settle(&mut raw, answer, &["ord-late-0", "orders-0", "orders-1", "ordersx-0"]);

    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(text(group))]);
    let ResponseKind::ConsumerGroupDescribe(described) = raw.call(1, RequestKind::ConsumerGroupDescribe(request)) else { panic!() };
    let member = &described.groups[0].members[0];
    assert_eq!(member.subscribed_topic_regex.as_ref().map(|r| r.as_str()), Some("ord.*"));
    assert!(member.subscribed_topic_names.is_empty());
    let leave = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(&member_id))
        .with_member_epoch(-1)
        .with_rebalance_timeout_ms(-1);
    assert_eq!(consumer_heartbeat(&mut raw, 1, leave).error_code, NONE);
    runtime.block_on(server.shutdown()).unwrap();
}

/// OffsetCommit v9 in `group` (member epoch for the consumer protocol).
fn commit_in(raw: &mut KafkaRaw, group: &str, member_id: &str, epoch: i32, offset: i64) -> Vec<i16> {
    commit_at(raw, 9, group, member_id, epoch, offset)
}

/// OffsetDelete (API 47) of `partitions` (topic, partition) in GROUP: the top-level code and
/// each partition's (topic, partition, code) in answer order.
fn offset_delete(raw: &mut KafkaRaw, group: &str, partitions: &[(&str, i32)]) -> (i16, Vec<(String, i32, i16)>) {
    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    let mut topics: Vec<OffsetDeleteRequestTopic> = Vec::new();
    for (topic, partition) in partitions {
        let entry = OffsetDeleteRequestPartition::default().with_partition_index(*partition);
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(existing) => existing.partitions.push(entry),
            None => topics.push(OffsetDeleteRequestTopic::default().with_name(TopicName(text(topic))).with_partitions(vec![entry])),
        }
    }
    let request = OffsetDeleteRequest::default().with_group_id(GroupId(text(group))).with_topics(topics);
    let ResponseKind::OffsetDelete(answer) = raw.call(0, RequestKind::OffsetDelete(request)) else { panic!() };
    let results =
        answer.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))).collect();
    (answer.error_code, results)
}

/// GROUP's committed offset of `topic`/`partition` (-1: none), by OffsetFetch v7.
fn committed(raw: &mut KafkaRaw, topic: &str, partition: i32) -> i64 {
    committed_in(raw, GROUP, topic, partition)
}

/// `group`'s committed offset of `topic`/`partition` (-1: none), by OffsetFetch v7.
fn committed_in(raw: &mut KafkaRaw, group: &str, topic: &str, partition: i32) -> i64 {
    let asked = OffsetFetchRequestTopic::default().with_name(TopicName(text(topic))).with_partition_indexes(vec![partition]);
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(text(group))).with_topics(Some(vec![asked]));
    let ResponseKind::OffsetFetch(fetched) = raw.call(7, RequestKind::OffsetFetch(fetch)) else { panic!() };
    assert_eq!(fetched.error_code, NONE, "{fetched:?}");
    fetched.topics[0].partitions[0].committed_offset
}

/// Kafka's OffsetDelete (API 47) on the coordinator: with a classic consumer member subscribed
/// to TOPIC, deleting TOPIC's offset is GROUP_SUBSCRIBED_TO_TOPIC (86) and keeps it, another
/// topic's offset is removed (a later OffsetFetch is -1: C1 reads the removal), an unknown topic
/// is UNKNOWN_TOPIC_OR_PARTITION and an unknown group GROUP_ID_NOT_FOUND; once the member left,
/// TOPIC's offsets may go too.
#[test]
fn offset_delete_removes_only_offsets_of_topics_the_group_is_not_subscribed_to() {
    const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut a = KafkaRaw::connect(&kafka);
    prepare(&mut a, &kafka);
    let other = CreatableTopic::default().with_name(TopicName(text("refunds"))).with_num_partitions(1).with_replication_factor(1);
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![other]);
    let ResponseKind::CreateTopics(created) = a.call(5, RequestKind::CreateTopics(create)) else { panic!() };
    assert_eq!(created.topics[0].error_code, NONE, "{created:?}");

    let required = joined(a.call(5, join("", None)));
    let first = joined(a.call(5, join(required.member_id.as_str(), None)));
    assert_eq!(first.error_code, NONE, "{first:?}");
    let (member, generation) = (first.member_id.to_string(), first.generation_id);
    assert_eq!(synced(a.call(5, sync(&member, generation, &[(&member, assignment(&[0, 1]))]))).error_code, NONE);
    assert_eq!(commit(&mut a, &member, generation, 42), vec![NONE, NONE]);
    let partition = OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(7);
    let topic = OffsetCommitRequestTopic::default().with_name(TopicName(text("refunds"))).with_partitions(vec![partition]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(&member))
        .with_topics(vec![topic]);
    let ResponseKind::OffsetCommit(answer) = a.call(8, RequestKind::OffsetCommit(request)) else { panic!() };
    assert_eq!(answer.topics[0].partitions[0].error_code, NONE, "{answer:?}");
    assert_eq!(committed(&mut a, "refunds", 0), 7);

    let (code, results) = offset_delete(&mut a, GROUP, &[(TOPIC, 0), ("refunds", 0), ("ghost-topic", 0)]);
    assert_eq!(code, NONE);
    let expected = vec![
        (TOPIC.to_string(), 0, GROUP_SUBSCRIBED_TO_TOPIC),
        ("refunds".to_string(), 0, NONE),
        ("ghost-topic".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
    ];
    assert_eq!(results, expected);
    assert_eq!(committed(&mut a, "refunds", 0), -1, "C1: the removal is what a later fetch reads");
    assert_eq!(committed(&mut a, TOPIC, 0), 42, "a subscribed topic's offset stays");
    assert_eq!(offset_delete(&mut a, "no-such-group", &[(TOPIC, 0)]).0, GROUP_ID_NOT_FOUND);

    let leave = LeaveGroupRequest::default().with_group_id(GroupId(text(GROUP))).with_member_id(text(&member));
    let ResponseKind::LeaveGroup(left) = a.call(1, RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(left.error_code, NONE, "{left:?}");
    let (code, results) = offset_delete(&mut a, GROUP, &[(TOPIC, 0), (TOPIC, 1)]);
    assert_eq!((code, results.iter().map(|r| r.2).collect::<Vec<_>>()), (NONE, vec![NONE, NONE]), "{results:?}");
    assert_eq!(committed(&mut a, TOPIC, 1), -1);
    runtime.block_on(server.shutdown()).unwrap();
}

/// OffsetCommits and OffsetFetches pipelined on one connection take effect in request order, as
/// Kafka serves them (librdkafka's 0030_offset_commit commits asynchronously, then reads back the
/// last offset it was told was committed): 20 commits of rising offsets and a fetch, all written
/// before any answer is read, must leave the last offset committed and the fetch must read it.
#[test]
fn pipelined_offset_commits_and_fetches_take_effect_in_request_order() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);
    prepare(&mut raw, &kafka);
    const COMMITS: i64 = 20;
    for offset in 1..=COMMITS {
        // A consumer outside group management (member "", generation -1) in an empty group.
        let partition = OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
        let topic = OffsetCommitRequestTopic::default().with_name(TopicName(text(TOPIC))).with_partitions(vec![partition]);
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![topic]);
        raw.send(8, offset as i32, RequestKind::OffsetCommit(request));
    }
    let asked = OffsetFetchRequestTopic::default().with_name(TopicName(text(TOPIC))).with_partition_indexes(vec![0]);
    let fetch = OffsetFetchRequest::default().with_group_id(GroupId(text(GROUP))).with_topics(Some(vec![asked]));
    raw.send(7, 1000, RequestKind::OffsetFetch(fetch));
    for offset in 1..=COMMITS {
        let ResponseKind::OffsetCommit(answer) = raw.answer(ApiKey::OffsetCommit, 8, offset as i32) else { panic!() };
        assert_eq!(answer.topics[0].partitions[0].error_code, NONE, "commit {offset}: {answer:?}");
    }
    let ResponseKind::OffsetFetch(fetched) = raw.answer(ApiKey::OffsetFetch, 7, 1000) else { panic!() };
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, COMMITS, "the fetch reads the commit sent just before it");
    assert_eq!(committed(&mut raw, TOPIC, 0), COMMITS, "the last commit sent is the one that stays");
    runtime.block_on(server.shutdown()).unwrap();
}

/// A commit at generation/member epoch -1 that names a member id (librdkafka with
/// `group.protocol=consumer` and assign() only names the id it generated) is a consumer outside
/// group management: taken while the group has no members, as Kafka does. Once the group has
/// members it is refused as Kafka's `validateOffsetCommit` refuses it: naming no member or an
/// unknown one, UNKNOWN_MEMBER_ID (both coordinators: only members commit to a group that is not
/// empty); naming a current member, for its generation: ILLEGAL_GENERATION in a classic group
/// (`ClassicGroup`, any version), STALE_MEMBER_EPOCH in a consumer-protocol group at
/// OffsetCommit v9 and UNSUPPORTED_VERSION below (`ConsumerGroup`: its members must use v9).
/// Nothing is committed by a refusal.
#[test]
fn a_commit_at_epoch_minus_one_naming_a_member_is_taken_only_while_the_group_is_empty() {
    const UNSUPPORTED_VERSION: i16 = 35;
    const STALE_MEMBER_EPOCH: i16 = 113;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);
    prepare(&mut raw, &kafka);
    assert_eq!(commit(&mut raw, "client-generated-id", -1, 42), vec![NONE, NONE]);
    assert_eq!(commit(&mut raw, "", -1, 42), vec![NONE, NONE]);
    assert_eq!(committed(&mut raw, TOPIC, 0), 42);
    // A classic group with a member.
    let required = joined(raw.call(5, join("", None)));
    let first = joined(raw.call(5, join(required.member_id.as_str(), None)));
    assert_eq!(first.error_code, NONE, "{first:?}");
    let member = first.member_id.to_string();
    assert_eq!(commit(&mut raw, "client-generated-id", -1, 43), vec![UNKNOWN_MEMBER_ID; 2], "the group has a member now");
    assert_eq!(commit(&mut raw, "", -1, 43), vec![UNKNOWN_MEMBER_ID; 2], "member \"\" at generation -1");
    assert_eq!(commit(&mut raw, &member, -1, 43), vec![ILLEGAL_GENERATION; 2], "the member at generation -1");
    assert_eq!(commit_at(&mut raw, 9, GROUP, &member, -1, 43), vec![ILLEGAL_GENERATION; 2], "v9 alike");
    assert_eq!(committed(&mut raw, TOPIC, 0), 42);

    // A consumer-protocol group: taken while empty, refused once a member joined.
    let group = "kip848-unmanaged";
    prepare_group(&mut raw, &kafka, group);
    assert_eq!(commit_in(&mut raw, group, "", -1, 7), vec![NONE, NONE]);
    assert_eq!(commit_in(&mut raw, group, "client-generated-id", -1, 7), vec![NONE, NONE]);
    let (member, member_epoch) = join_consumer(&mut raw, group);
    assert_eq!(commit_in(&mut raw, group, "", -1, 8), vec![UNKNOWN_MEMBER_ID; 2], "member \"\" at epoch -1");
    assert_eq!(commit_in(&mut raw, group, "client-generated-id", -1, 8), vec![UNKNOWN_MEMBER_ID; 2]);
    assert_eq!(commit_in(&mut raw, group, &member, -1, 8), vec![STALE_MEMBER_EPOCH; 2], "the member at epoch -1, v9");
    assert_eq!(commit_at(&mut raw, 8, group, &member, -1, 8), vec![UNSUPPORTED_VERSION; 2], "below v9");
    assert_eq!(commit_in(&mut raw, group, &member, member_epoch, 9), vec![NONE; 2], "its own epoch");
    runtime.block_on(server.shutdown()).unwrap();
}

/// The OffsetCommit refusals Kafka 4.0 answers by the group's protocol and the request's
/// version, each as its coordinator code reads:
/// - a group that does not exist, at a generation or member epoch (>= 0): ILLEGAL_GENERATION
///   below v9, GROUP_ID_NOT_FOUND from v9 (`OffsetMetadataManager.validateOffsetCommit`), and
///   the group still does not exist;
/// - a classic group, member "" naming the instance id a static member holds:
///   FENCED_INSTANCE_ID at any generation (`ClassicGroup.validateMember`); an instance id nobody
///   holds, UNKNOWN_MEMBER_ID;
/// - a consumer-protocol member, at an epoch above its own: STALE_MEMBER_EPOCH (any epoch but
///   the member's is stale: `ConsumerGroup.validateMemberEpoch`); at OffsetCommit v8, even at
///   its own epoch: UNSUPPORTED_VERSION (its members must use v9).
///
/// Nothing is committed by a refusal.
#[test]
fn offset_commit_refusals_are_kafka_4_0s() {
    const UNSUPPORTED_VERSION: i16 = 35;
    const FENCED_INSTANCE_ID: i16 = 82;
    const STALE_MEMBER_EPOCH: i16 = 113;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);
    prepare(&mut raw, &kafka);

    let nobody = "never-joined";
    prepare_group(&mut raw, &kafka, nobody);
    for member in ["", "ghost"] {
        assert_eq!(commit_at(&mut raw, 8, nobody, member, 1, 5), vec![ILLEGAL_GENERATION; 2], "member {member:?}, v8");
        assert_eq!(commit_at(&mut raw, 9, nobody, member, 1, 5), vec![GROUP_ID_NOT_FOUND; 2], "member {member:?}, v9");
    }
    assert_eq!(describe(&mut raw, nobody).group_state.as_str(), "Dead", "the refusals created no group");

    // A static member leads a classic group.
    let held = joined(raw.call(5, join("", Some("instance-s"))));
    assert_eq!(held.error_code, NONE, "{held:?}");
    let generation = held.generation_id;
    for (version, epoch) in [(8, -1), (9, -1), (8, generation)] {
        let fenced = commit_as(&mut raw, version, GROUP, ("", Some("instance-s")), epoch, 5);
        assert_eq!(fenced, vec![FENCED_INSTANCE_ID; 2], "v{version}, generation {epoch}");
    }
    assert_eq!(commit_as(&mut raw, 8, GROUP, ("", Some("instance-t")), -1, 5), vec![UNKNOWN_MEMBER_ID; 2], "nobody holds it");
    assert_eq!(committed(&mut raw, TOPIC, 0), -1);

    // A consumer-protocol member.
    let group = "kip848-codes";
    prepare_group(&mut raw, &kafka, group);
    let (member, epoch) = join_consumer(&mut raw, group);
    assert_eq!(commit_in(&mut raw, group, &member, epoch + 1, 5), vec![STALE_MEMBER_EPOCH; 2], "an epoch above the member's");
    assert_eq!(commit_at(&mut raw, 8, group, &member, epoch, 5), vec![UNSUPPORTED_VERSION; 2], "v8 at its own epoch");
    assert_eq!(committed_in(&mut raw, group, TOPIC, 0), -1);
    assert_eq!(commit_in(&mut raw, group, &member, epoch, 6), vec![NONE; 2], "v9 at its own epoch");
    assert_eq!(committed_in(&mut raw, group, TOPIC, 0), 6);
    runtime.block_on(server.shutdown()).unwrap();
}
