//! Consumer groups against real `odradek server` processes, over the raw protocol: the
//! coordinator found and the offsets topic created on first use, the consumer protocol's
//! incremental reconciliation (no partition ever with two owners), commits fenced by member
//! epoch (C5), committed offsets surviving the coordinator's death (C1), the classic protocol's
//! join and sync, and bad input refused definitely without harm to other groups.

// Real processes and real sockets: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeSet;

use common::raw::{self, call_until, request_with, Raw};
use common::ProcessCluster;
use odradek_client::wire::proto::{self as wire, ErrorCode, Response};

const RETRY: &[ErrorCode] = &[
    ErrorCode::COORDINATOR_NOT_AVAILABLE,
    ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode::NOT_COORDINATOR,
    ErrorCode::LEADER_NOT_AVAILABLE,
    ErrorCode::REQUEST_TIMED_OUT,
    ErrorCode::LEADERSHIP_LOST,
];

/// The coordinator of `group` as `raw`'s node sees it, once one is ready.
fn find_coordinator(raw: &mut Raw, group: &str) -> (u64, String) {
    let request = request_with(1, |r| {
        let mut find = wire::FindCoordinatorRequest::new();
        find.group = group.into();
        r.set_find_coordinator(find);
    });
    let response = call_until(raw, &request, RETRY, 400);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    let found = response.get_find_coordinator();
    (found.node_id, found.address.clone())
}

/// Calls the group's coordinator, following NOT_COORDINATOR and retrying while it loads.
fn call_coordinator(entry: &str, group: &str, request: &wire::Request) -> Response {
    for _ in 0..200 {
        let (_, address) = find_coordinator(&mut Raw::greeted(entry), group);
        if std::net::TcpStream::connect(&address).is_err() {
            // A dead coordinator, still named until a new leader is known.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        let response = Raw::greeted(&address).call(request.clone());
        if !RETRY.contains(&response.error) {
            return response;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no coordinator answered {request:?}");
}

fn heartbeat(
    group: &str,
    member_id: &str,
    epoch: i32,
    subscribe: Option<&[&str]>,
    owned: Option<&BTreeSet<(String, u32)>>,
) -> wire::Request {
    request_with(2, |r| {
        let mut beat = wire::ConsumerGroupHeartbeatRequest::new();
        beat.group = group.into();
        beat.member_id = member_id.into();
        beat.member_epoch = epoch;
        beat.rebalance_timeout_ms = 30_000;
        if let Some(topics) = subscribe {
            beat.subscription_set = true;
            beat.subscribed_topics = topics.iter().map(|t| t.to_string()).collect();
        }
        if let Some(owned) = owned {
            beat.owned_set = true;
            beat.owned = wire_partitions(owned);
        }
        r.set_consumer_group_heartbeat(beat);
    })
}

fn wire_partitions(set: &BTreeSet<(String, u32)>) -> protobuf::RepeatedField<wire::TopicPartitions> {
    let mut out: Vec<wire::TopicPartitions> = Vec::new();
    for (topic, partition) in set {
        match out.last_mut() {
            Some(entry) if entry.topic == *topic => entry.partitions.push(*partition),
            _ => {
                let mut entry = wire::TopicPartitions::new();
                entry.topic = topic.clone();
                entry.partitions.push(*partition);
                out.push(entry);
            }
        }
    }
    out.into()
}

fn assignment(response: &Response) -> BTreeSet<(String, u32)> {
    let beat = response.get_consumer_group_heartbeat();
    beat.assignment.iter().flat_map(|entry| entry.partitions.iter().map(move |p| (entry.topic.clone(), *p))).collect()
}

fn commit(group: &str, member_id: &str, epoch: i32, offsets: &[(&str, u32, i64)]) -> wire::Request {
    request_with(3, |r| {
        let mut commit = wire::OffsetCommitRequest::new();
        commit.group = group.into();
        commit.member_id = member_id.into();
        commit.epoch = epoch;
        for (topic, partition, offset) in offsets {
            let mut entry = wire::OffsetCommitPartition::new();
            entry.topic = topic.to_string();
            entry.partition = *partition;
            entry.offset = *offset;
            commit.offsets.push(entry);
        }
        r.set_offset_commit(commit);
    })
}

fn fetch_offsets(group: &str) -> wire::Request {
    request_with(4, |r| {
        let mut fetch = wire::OffsetFetchRequest::new();
        fetch.group = group.into();
        r.set_offset_fetch(fetch);
    })
}

fn fetched(response: &Response) -> Vec<(String, u32, i64)> {
    response.get_offset_fetch().partitions.iter().map(|p| (p.topic.clone(), p.partition, p.offset)).collect()
}

fn create_topic(cluster: &ProcessCluster, name: &str, partitions: u32) {
    let mut raw = Raw::greeted(&cluster.client_addr(1));
    let retry = [ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::NOT_CONTROLLER];
    let response = call_until(&mut raw, &raw::create_topic(1, name, partitions, 3), &retry, 400);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    assert_eq!(response.get_create_topics().topics[0].error, ErrorCode::NONE, "{response:?}");
}

#[test]
fn consumer_protocol_members_share_partitions_and_commits_survive_the_coordinator() {
    let mut cluster = ProcessCluster::start(3);
    create_topic(&cluster, "orders", 4);
    let entry = cluster.client_addr(1);

    // A joins and gets everything; B joins and gets nothing until A gave its part up.
    let a = call_coordinator(&entry, "g", &heartbeat("g", "", 0, Some(&["orders"]), None));
    assert_eq!(a.error, ErrorCode::NONE, "{a:?}");
    let (a_id, a_epoch) = (a.get_consumer_group_heartbeat().member_id.clone(), a.get_consumer_group_heartbeat().member_epoch);
    let a_owned = assignment(&a);
    assert_eq!(a_owned.len(), 4);
    let b = call_coordinator(&entry, "g", &heartbeat("g", "", 0, Some(&["orders"]), None));
    let b_id = b.get_consumer_group_heartbeat().member_id.clone();
    assert!(assignment(&b).is_empty(), "B must wait while A owns everything: {b:?}");
    let a = call_coordinator(&entry, "g", &heartbeat("g", &a_id, a_epoch, None, Some(&a_owned)));
    let a_kept = assignment(&a);
    assert_eq!(a_kept.len(), 2, "A is asked to revoke two partitions: {a:?}");
    assert_eq!(a.get_consumer_group_heartbeat().member_epoch, a_epoch, "no new epoch before the revocation is confirmed");
    let a = call_coordinator(&entry, "g", &heartbeat("g", &a_id, a_epoch, None, Some(&a_kept)));
    let a_epoch = a.get_consumer_group_heartbeat().member_epoch;
    assert!(a_epoch > 1);
    let b =
        call_coordinator(&entry, "g", &heartbeat("g", &b_id, b.get_consumer_group_heartbeat().member_epoch, None, Some(&BTreeSet::new())));
    let b_owned = assignment(&b);
    assert_eq!(b_owned.len(), 2, "{b:?}");
    assert!(a_kept.is_disjoint(&b_owned), "one partition, two owners: {a_kept:?} {b_owned:?}");

    // Commits: the member's epoch goes, an older one is refused (C5), an unknown member too.
    let ok = call_coordinator(&entry, "g", &commit("g", &a_id, a_epoch, &[("orders", 0, 17), ("orders", 1, 4)]));
    assert_eq!(ok.error, ErrorCode::NONE, "{ok:?}");
    let stale = call_coordinator(&entry, "g", &commit("g", &a_id, a_epoch - 1, &[("orders", 0, 99)]));
    assert_eq!(stale.error, ErrorCode::STALE_MEMBER_EPOCH, "{stale:?}");
    assert!(stale.error.is_definite());
    let stranger = call_coordinator(&entry, "g", &commit("g", "stranger", 1, &[("orders", 0, 99)]));
    assert_eq!(stranger.error, ErrorCode::UNKNOWN_MEMBER_ID, "{stranger:?}");
    let offsets = fetched(&call_coordinator(&entry, "g", &fetch_offsets("g")));
    assert_eq!(offsets, vec![("orders".to_string(), 0, 17), ("orders".to_string(), 1, 4)]);

    // The coordinator dies; its successor answers with every acknowledged commit (C1).
    let (coordinator, _) = find_coordinator(&mut Raw::greeted(&entry), "g");
    cluster.kill(coordinator);
    let survivor = cluster.client_addr(if coordinator == 1 { 2 } else { 1 });
    let offsets = fetched(&call_coordinator(&survivor, "g", &fetch_offsets("g")));
    assert_eq!(offsets, vec![("orders".to_string(), 0, 17), ("orders".to_string(), 1, 4)], "committed offsets survive the coordinator");
    // The members are still there (sessions restart with the new coordinator).
    let again = call_coordinator(&survivor, "g", &heartbeat("g", &a_id, a_epoch, None, Some(&a_kept)));
    assert_eq!(again.error, ErrorCode::NONE, "{again:?}");
    assert_eq!(assignment(&again), a_kept);
}

#[test]
fn bad_group_requests_get_definite_errors_and_harm_nobody() {
    let cluster = ProcessCluster::start(3);
    create_topic(&cluster, "t", 2);
    let entry = cluster.client_addr(2);
    let ok = call_coordinator(&entry, "good", &commit("good", "", -1, &[("t", 0, 5)]));
    assert_eq!(ok.error, ErrorCode::NONE, "a standalone consumer commits without a member: {ok:?}");

    let empty = Raw::greeted(&entry).call(request_with(9, |r| {
        let mut find = wire::FindCoordinatorRequest::new();
        find.group = String::new();
        r.set_find_coordinator(find);
    }));
    assert_eq!(empty.error, ErrorCode::INVALID_GROUP_ID, "{empty:?}");
    let unknown_topic = call_coordinator(&entry, "good", &commit("good", "", -1, &[("nope", 0, 5)]));
    assert_eq!(unknown_topic.error, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "{unknown_topic:?}");
    let no_partition = call_coordinator(&entry, "good", &commit("good", "", -1, &[("t", 7, 5)]));
    assert_eq!(no_partition.error, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "{no_partition:?}");
    let negative = call_coordinator(&entry, "good", &commit("good", "", -1, &[("t", 0, -3)]));
    assert_eq!(negative.error, ErrorCode::INVALID_COMMIT_OFFSET, "{negative:?}");
    let mut big = commit("good", "", -1, &[("t", 0, 6)]);
    big.mut_offset_commit().offsets[0].metadata = "m".repeat(10_000);
    let big = call_coordinator(&entry, "good", &big);
    assert_eq!(big.error, ErrorCode::OFFSET_METADATA_TOO_LARGE, "{big:?}");
    let garbage = call_coordinator(&entry, "good", &heartbeat("good", "", 7, None, None));
    assert!(garbage.error.is_definite() && garbage.error != ErrorCode::NONE, "{garbage:?}");

    // A version-1 connection cannot use groups.
    let mut old = Raw::connect(&entry);
    let hello = old.call(raw::hello(1, 1));
    assert_eq!(hello.get_hello().protocol_version, 1, "{hello:?}");
    let refused = old.call(fetch_offsets("good"));
    assert_eq!(refused.error, ErrorCode::UNSUPPORTED_VERSION, "{refused:?}");

    // The offsets topic cannot be deleted, and nothing above moved the good group's offset.
    let delete = Raw::greeted(&entry).call(request_with(10, |r| {
        let mut delete = wire::DeleteTopicsRequest::new();
        delete.names.push("__consumer_offsets".into());
        r.set_delete_topics(delete);
    }));
    assert_eq!(delete.get_delete_topics().topics[0].error, ErrorCode::INVALID_TOPIC, "{delete:?}");
    assert_eq!(fetched(&call_coordinator(&entry, "good", &fetch_offsets("good"))), vec![("t".to_string(), 0, 5)]);
}

fn join(group: &str, member_id: &str) -> wire::Request {
    request_with(5, |r| {
        let mut join = wire::JoinGroupRequest::new();
        join.group = group.into();
        join.member_id = member_id.into();
        join.session_timeout_ms = 30_000;
        join.rebalance_timeout_ms = 20_000;
        join.protocol_type = "consumer".into();
        let mut protocol = wire::JoinProtocol::new();
        protocol.name = "range".into();
        protocol.metadata = member_id.as_bytes().to_vec();
        join.protocols.push(protocol);
        r.set_join_group(join);
    })
}

fn sync(group: &str, member_id: &str, generation: i32, assignments: &[(&str, &[u8])]) -> wire::Request {
    request_with(6, |r| {
        let mut sync = wire::SyncGroupRequest::new();
        sync.group = group.into();
        sync.member_id = member_id.into();
        sync.generation = generation;
        for (member, bytes) in assignments {
            let mut assignment = wire::SyncAssignment::new();
            assignment.member_id = member.to_string();
            assignment.assignment = bytes.to_vec();
            sync.assignments.push(assignment);
        }
        r.set_sync_group(sync);
    })
}

/// A ConsumerProtocol assignment of partitions of topic "t" (the client's codec).
fn consumer_assignment(version: i16, partitions: &[u32]) -> Vec<u8> {
    use odradek_client::group::protocol::{Assignment, TopicPartitions};
    let topics = vec![TopicPartitions { topic: "t".into(), partitions: partitions.to_vec() }];
    Assignment { version, partitions: topics, user_data: None }.encode().unwrap()
}

fn describe(group: &str) -> wire::Request {
    request_with(8, |r| {
        let mut describe = wire::DescribeGroupsRequest::new();
        describe.groups.push(group.into());
        r.set_describe_groups(describe);
    })
}

fn classic_heartbeat(group: &str, member_id: &str, generation: i32) -> wire::Request {
    request_with(7, |r| {
        let mut beat = wire::HeartbeatRequest::new();
        beat.group = group.into();
        beat.member_id = member_id.into();
        beat.generation = generation;
        r.set_heartbeat(beat);
    })
}

/// Joins from several threads at once (a join waits for the others).
fn join_all(entry: &str, group: &str, member_ids: &[String]) -> Vec<wire::JoinGroupResponse> {
    let handles: Vec<_> = member_ids
        .iter()
        .map(|member_id| {
            let (entry, group, member_id) = (entry.to_string(), group.to_string(), member_id.clone());
            std::thread::spawn(move || call_coordinator(&entry, &group, &join(&group, &member_id)))
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| {
            let response = handle.join().expect("join thread");
            assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
            response.get_join_group().clone()
        })
        .collect()
}

#[test]
fn classic_members_rebalance_through_join_and_sync() {
    let cluster = ProcessCluster::start(3);
    create_topic(&cluster, "t", 2);
    let entry = cluster.client_addr(3);
    let first = join_all(&entry, "c", &[String::new(), String::new()]);
    let generation = first[0].generation;
    assert!(first.iter().all(|joined| joined.generation == generation && joined.leader == first[0].leader));
    let leader = first.iter().find(|joined| joined.member_id == joined.leader).expect("one member leads");
    let follower = first.iter().find(|joined| joined.member_id != joined.leader).expect("one follows");
    assert_eq!(leader.members.len(), 2, "the leader learns every member");
    assert!(follower.members.is_empty());

    // The follower's sync waits for the leader's; both get their part.
    let (entry_f, follower_id) = (entry.clone(), follower.member_id.clone());
    let waiting = std::thread::spawn(move || call_coordinator(&entry_f, "c", &sync("c", &follower_id, generation, &[])));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Bytes that are no ConsumerProtocol assignment are refused, definitely, naming the member.
    let garbage: [(&str, &[u8]); 1] = [(&follower.member_id, b"follower-part")];
    let refused = call_coordinator(&entry, "c", &sync("c", &leader.member_id, generation, &garbage));
    assert_eq!(refused.error, ErrorCode::INVALID_REQUEST, "{refused:?}");
    assert!(refused.error_message.contains(&follower.member_id), "{refused:?}");
    let (leader_part, follower_part) = (consumer_assignment(0, &[0]), consumer_assignment(3, &[1]));
    let assignments: [(&str, &[u8]); 2] = [(&leader.member_id, &leader_part), (&follower.member_id, &follower_part)];
    let led = call_coordinator(&entry, "c", &sync("c", &leader.member_id, generation, &assignments));
    assert_eq!(led.get_sync_group().assignment, leader_part, "{led:?}");
    let followed = waiting.join().unwrap();
    assert_eq!(followed.get_sync_group().assignment, follower_part, "{followed:?}");
    // The coordinator knows who owns what (decoded from the assignments).
    let described = call_coordinator(&entry, "c", &describe("c"));
    let owners: BTreeSet<(String, String, u32)> = described.get_describe_groups().groups[0]
        .members
        .iter()
        .flat_map(|member| {
            member
                .assignment
                .iter()
                .flat_map(move |entry| entry.partitions.iter().map(move |p| (member.member_id.clone(), entry.topic.clone(), *p)))
        })
        .collect();
    let expected: BTreeSet<(String, String, u32)> =
        [(leader.member_id.clone(), "t".to_string(), 0), (follower.member_id.clone(), "t".to_string(), 1)].into_iter().collect();
    assert_eq!(owners, expected, "{described:?}");
    assert_eq!(call_coordinator(&entry, "c", &classic_heartbeat("c", &leader.member_id, generation)).error, ErrorCode::NONE);
    assert_eq!(call_coordinator(&entry, "c", &commit("c", &follower.member_id, generation, &[("t", 1, 3)])).error, ErrorCode::NONE);

    // A third member starts a rebalance: the others learn it from their heartbeats and rejoin.
    let (entry_n, newcomer) = (
        entry.clone(),
        std::thread::spawn({
            let entry = entry.clone();
            move || call_coordinator(&entry, "c", &join("c", ""))
        }),
    );
    let _ = entry_n;
    let mut told = false;
    for _ in 0..100 {
        if call_coordinator(&entry, "c", &classic_heartbeat("c", &leader.member_id, generation)).error == ErrorCode::REBALANCE_IN_PROGRESS {
            told = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(told, "members learn of the rebalance from their heartbeats");
    let second = join_all(&entry, "c", &[leader.member_id.clone(), follower.member_id.clone()]);
    let newcomer = newcomer.join().unwrap();
    assert_eq!(newcomer.error, ErrorCode::NONE, "{newcomer:?}");
    let next = second[0].generation;
    assert!(next > generation);
    assert_eq!(newcomer.get_join_group().generation, next);
    // C5: the old generation can no longer commit.
    let stale = call_coordinator(&entry, "c", &commit("c", &follower.member_id, generation, &[("t", 1, 9)]));
    assert_eq!(stale.error, ErrorCode::ILLEGAL_GENERATION, "{stale:?}");
    let offsets = fetched(&call_coordinator(&entry, "c", &fetch_offsets("c")));
    assert_eq!(offsets, vec![("t".to_string(), 1, 3)]);
}

#[test]
fn a_consumer_join_sent_again_under_its_own_member_id_is_one_member() {
    let cluster = ProcessCluster::start(3);
    create_topic(&cluster, "t", 2);
    let entry = cluster.client_addr(1);
    // The client chose its member id (Kafka 4); the first answer is "lost" and the join is sent
    // again, as is.
    let join = heartbeat("r", "0c9d4a6e-client-chosen", 0, Some(&["t"]), Some(&BTreeSet::new()));
    let first = call_coordinator(&entry, "r", &join);
    assert_eq!(first.error, ErrorCode::NONE, "{first:?}");
    let again = call_coordinator(&entry, "r", &join);
    assert_eq!(again.error, ErrorCode::NONE, "{again:?}");
    let (first, again) = (first.get_consumer_group_heartbeat(), again.get_consumer_group_heartbeat());
    assert_eq!((first.member_id.as_str(), again.member_id.as_str()), ("0c9d4a6e-client-chosen", "0c9d4a6e-client-chosen"));
    assert_eq!(first.member_epoch, again.member_epoch, "the same member, at the same epoch");
    let described = call_coordinator(&entry, "r", &describe("r"));
    let group = &described.get_describe_groups().groups[0];
    assert_eq!(group.members.len(), 1, "a retried join made a second member: {described:?}");
    assert_eq!(group.epoch, 1, "and no rebalance: {described:?}");
    // A member id with control characters is refused, definitely.
    let bad = call_coordinator(&entry, "r", &heartbeat("r", "a\u{7}b", 0, Some(&["t"]), None));
    assert_eq!(bad.error, ErrorCode::INVALID_REQUEST, "{bad:?}");
}
