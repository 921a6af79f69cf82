//! The consumer's group side against a scripted fake cluster on loopback: two brokers that
//! serve Metadata, ListOffsets and Fetch from in-memory logs, and a fake coordinator (on the
//! node the test chooses) for both group protocols, with committed offsets, injected errors,
//! lost answers and a coordinator that moves. Checks the glue: join → assignment → poll →
//! commit → rebalance → revoke → close, fencing, a moved coordinator, auto-commit never
//! committing the current poll (C4), definite and indefinite commit failures, a version-1
//! server, and the Admin group operations. No test depends on timing beyond "eventually".

// Under madsim nothing here runs (the loopback sockets are real); it must still compile.
#![cfg_attr(madsim, allow(unused))]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use odradek_client::batch::{set_base_offset, BatchBuilder, Record};
use odradek_client::group::admin::ResetTo;
use odradek_client::group::protocol::{Assignment, TopicPartitions as ProtocolTopicPartitions};
use odradek_client::group::TopicPartition;
use odradek_client::wire::proto::{
    Broker, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsResponse, DescribeGroupsResponse, DescribedGroup,
    DescribedMember, ErrorCode, FetchResponse, FindCoordinatorResponse, GroupResult, HeartbeatResponse, HelloResponse, JoinGroupMember,
    JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse, ListOffsetsResponse, ListedGroup, MetadataResponse,
    OffsetCommitPartitionResult, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchPartition, OffsetFetchResponse, OffsetSpec,
    PartitionMetadata, Request, Request_oneof_body as RequestBody, Response, Response_oneof_body as ResponseBody, SyncGroupResponse,
    TopicMetadata, TopicPartitions,
};
use odradek_client::wire::{decode_request, read_frame, write_frame, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use odradek_client::{
    Admin, ClientError, ClusterConfig, Consumer, ConsumerConfig, ConsumerRecord, GroupEvent, GroupProtocol, OffsetReset, RebalanceListener,
};
use tokio::net::{TcpListener, TcpStream};

const TOPIC: &str = "t";
const GROUP: &str = "g";
const PARTITIONS: u32 = 4;
const RECORDS_PER_PARTITION: u64 = 10;
/// Every test finishes well within this; a hang fails instead of blocking the suite.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT_MS: u32 = 20;
/// Records one fake fetch returns at most.
const FETCH_RECORDS_MAX: usize = 3;

/// A consumer-protocol member as the fake coordinator tracks it.
#[derive(Debug, Default, Clone)]
struct Member {
    epoch: i32,
    /// What its last heartbeat said it owns.
    reported: BTreeSet<TopicPartition>,
    /// What the coordinator last gave it.
    given: BTreeSet<TopicPartition>,
}

#[derive(Default)]
struct FakeCluster {
    /// Addresses by node id.
    brokers: BTreeMap<u64, String>,
    coordinator: u64,
    /// The version every node answers a Hello with.
    protocol_version: u32,
    logs: Vec<Vec<String>>,
    committed: BTreeMap<TopicPartition, i64>,
    /// Every OffsetCommit received, with the node it reached.
    commits: Vec<(u64, OffsetCommitRequest)>,
    /// Every group request: (node, kind).
    requests: Vec<(u64, &'static str)>,
    /// Answer the next request of this kind with this error.
    faults: VecDeque<(&'static str, ErrorCode)>,
    /// Commit (apply) the next OffsetCommit but lose its answer.
    commit_answers_lost: usize,
    members: BTreeMap<String, Member>,
    member_next: u32,
    /// Consumer-protocol leaves (member id, epoch).
    leaves: Vec<(String, i32)>,
    /// The topics and regex (None: not sent) of the last consumer-protocol heartbeat, and its
    /// instance id.
    subscribed: Vec<String>,
    subscribed_regex: Option<String>,
    instance_id: String,
    /// Classic: the generation, and the last SyncGroup's assignments.
    generation: i32,
    classic_assignments: BTreeMap<String, Vec<u8>>,
    classic_leaves: Vec<String>,
}

type Shared = Arc<Mutex<FakeCluster>>;

struct Fake {
    state: Shared,
}

impl Fake {
    /// Two brokers (nodes 1 and 2); node 1 coordinates the group at first.
    async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeCluster {
            coordinator: 1,
            protocol_version: PROTOCOL_VERSION,
            logs: (0..PARTITIONS).map(|p| (0..RECORDS_PER_PARTITION).map(|o| format!("p{p}-{o}")).collect()).collect(),
            ..FakeCluster::default()
        }));
        for node in [1, 2] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            state.lock().unwrap().brokers.insert(node, listener.local_addr().unwrap().to_string());
            let state = state.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, state.clone(), node));
                }
            });
        }
        Fake { state }
    }

    fn bootstrap(&self) -> String {
        self.with(|cluster| cluster.brokers[&1].clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeCluster) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

async fn serve(stream: TcpStream, state: Shared, node: u64) {
    let (mut reader, writer) = tokio::io::split(stream);
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    while let Ok(Some(body)) = read_frame(&mut reader, FRAME_BYTES_MAX).await {
        let request = decode_request(&body).unwrap();
        let (state, writer) = (state.clone(), writer.clone());
        let hello = matches!(request.body, Some(RequestBody::hello(_)));
        let serve_one = async move {
            let wait_ms = match &request.body {
                Some(RequestBody::fetch(fetch)) => fetch.wait_ms_max.min(1000),
                _ => 0,
            };
            let mut answer = handle(&state, node, &request);
            let mut waited_ms = 0;
            while waited_ms < wait_ms
                && matches!(&answer, Some(Response { body: Some(ResponseBody::fetch(fetch)), .. }) if fetch.batches.is_empty())
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited_ms += 10;
                answer = handle(&state, node, &request);
            }
            if let Some(response) = answer {
                let _ = write_frame(&mut *writer.lock().await, &response).await;
            }
        };
        if hello {
            serve_one.await;
        } else {
            tokio::spawn(serve_one);
        }
    }
}

fn respond(request: &Request, body: ResponseBody) -> Option<Response> {
    let mut response = Response::new();
    response.request_id = request.request_id;
    response.body = Some(body);
    Some(response)
}

fn refuse(request: &Request, code: ErrorCode, hint: u64) -> Option<Response> {
    let mut response = Response::new();
    response.request_id = request.request_id;
    response.error = code;
    response.error_message = format!("fake says {code:?}");
    response.coordinator_hint = hint;
    Some(response)
}

fn wire_partitions(partitions: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut topics: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    topics
        .into_iter()
        .map(|(topic, partitions)| {
            let mut wire = TopicPartitions::new();
            wire.topic = topic.to_string();
            wire.partitions = partitions;
            wire
        })
        .collect()
}

fn from_wire(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics.iter().flat_map(|topic| topic.partitions.iter().map(|p| (topic.topic.clone(), *p))).collect()
}

fn group_kind(body: &RequestBody) -> Option<&'static str> {
    Some(match body {
        RequestBody::join_group(_) => "join",
        RequestBody::sync_group(_) => "sync",
        RequestBody::heartbeat(_) => "heartbeat",
        RequestBody::leave_group(_) => "leave",
        RequestBody::consumer_group_heartbeat(_) => "consumer_heartbeat",
        RequestBody::offset_commit(_) => "commit",
        RequestBody::offset_fetch(_) => "fetch_offsets",
        RequestBody::describe_groups(_) => "describe",
        RequestBody::delete_groups(_) => "delete",
        _ => return None,
    })
}

fn handle(state: &Shared, node: u64, request: &Request) -> Option<Response> {
    let mut cluster = state.lock().unwrap();
    let body = request.body.as_ref().unwrap();
    if let Some(kind) = group_kind(body) {
        cluster.requests.push((node, kind));
        if node != cluster.coordinator {
            return refuse(request, ErrorCode::NOT_COORDINATOR, cluster.coordinator);
        }
        if let Some(index) = cluster.faults.iter().position(|(faulty, _)| *faulty == kind) {
            let (_, code) = cluster.faults.remove(index).unwrap();
            return refuse(request, code, 0);
        }
    }
    match body {
        RequestBody::hello(_) => {
            let mut answer = HelloResponse::new();
            answer.protocol_version = cluster.protocol_version;
            answer.node_id = node;
            respond(request, ResponseBody::hello(answer))
        }
        RequestBody::metadata(_) => {
            let mut answer = MetadataResponse::new();
            answer.brokers = cluster
                .brokers
                .iter()
                .map(|(node, address)| {
                    let mut broker = Broker::new();
                    broker.node_id = *node;
                    broker.address = address.clone();
                    broker
                })
                .collect::<Vec<_>>()
                .into();
            answer.controller = 1;
            let mut topic = TopicMetadata::new();
            topic.name = TOPIC.into();
            topic.partitions = (0..PARTITIONS)
                .map(|partition| {
                    let mut info = PartitionMetadata::new();
                    info.partition = partition;
                    info.leader = 1;
                    info.leader_term = 1;
                    info.replicas = vec![1];
                    info
                })
                .collect::<Vec<_>>()
                .into();
            answer.topics = vec![topic].into();
            respond(request, ResponseBody::metadata(answer))
        }
        RequestBody::list_offsets(list) => {
            let mut answer = ListOffsetsResponse::new();
            answer.offset = if list.spec == OffsetSpec::EARLIEST { 0 } else { cluster.logs[list.partition as usize].len() as u64 };
            respond(request, ResponseBody::list_offsets(answer))
        }
        RequestBody::fetch(fetch) => {
            let log = &cluster.logs[fetch.partition as usize];
            let mut answer = FetchResponse::new();
            answer.high_watermark = log.len() as u64;
            if (fetch.offset as usize) < log.len() {
                let mut builder = BatchBuilder::new();
                // A few records per fetch, so a partition takes several polls.
                for value in log[fetch.offset as usize..].iter().take(FETCH_RECORDS_MAX) {
                    builder.push(&Record { key: None, value: Some(Bytes::from(value.clone())), headers: vec![], timestamp: 1 }).unwrap();
                }
                let mut batch = builder.build().to_vec();
                set_base_offset(&mut batch, fetch.offset as i64);
                answer.batches = batch;
            }
            respond(request, ResponseBody::fetch(answer))
        }
        RequestBody::find_coordinator(_) => {
            let mut answer = FindCoordinatorResponse::new();
            answer.node_id = cluster.coordinator;
            answer.address = cluster.brokers[&cluster.coordinator].clone();
            respond(request, ResponseBody::find_coordinator(answer))
        }
        RequestBody::consumer_group_heartbeat(heartbeat) => consumer_heartbeat(&mut cluster, request, heartbeat),
        RequestBody::join_group(join) => {
            cluster.generation += 1;
            let member_id = if join.member_id.is_empty() { "classic-1".to_string() } else { join.member_id.clone() };
            let mut answer = JoinGroupResponse::new();
            answer.generation = cluster.generation;
            answer.protocol_name = join.protocols[0].name.clone();
            answer.leader = member_id.clone();
            answer.member_id = member_id.clone();
            let mut member = JoinGroupMember::new();
            member.member_id = member_id;
            member.metadata = join.protocols[0].metadata.clone();
            answer.members = vec![member].into();
            respond(request, ResponseBody::join_group(answer))
        }
        RequestBody::sync_group(sync) => {
            if sync.generation != cluster.generation {
                return refuse(request, ErrorCode::ILLEGAL_GENERATION, 0);
            }
            for assignment in sync.assignments.iter() {
                cluster.classic_assignments.insert(assignment.member_id.clone(), assignment.assignment.clone());
            }
            let mut answer = SyncGroupResponse::new();
            answer.assignment = cluster.classic_assignments.get(&sync.member_id).cloned().unwrap_or_default();
            respond(request, ResponseBody::sync_group(answer))
        }
        RequestBody::heartbeat(heartbeat) => {
            if heartbeat.generation != cluster.generation {
                return refuse(request, ErrorCode::ILLEGAL_GENERATION, 0);
            }
            respond(request, ResponseBody::heartbeat(HeartbeatResponse::new()))
        }
        RequestBody::leave_group(leave) => {
            for member in leave.members.iter() {
                cluster.classic_leaves.push(member.member_id.clone());
            }
            respond(request, ResponseBody::leave_group(LeaveGroupResponse::new()))
        }
        RequestBody::offset_commit(commit) => {
            cluster.commits.push((node, commit.clone()));
            let known = commit.member_id.is_empty()
                || cluster.members.get(&commit.member_id).is_some_and(|member| member.epoch == commit.epoch)
                || (commit.member_id.starts_with("classic") && commit.epoch == cluster.generation);
            if !known {
                return refuse(request, ErrorCode::STALE_MEMBER_EPOCH, 0);
            }
            if commit.member_id.is_empty() && !cluster.members.is_empty() {
                return refuse(request, ErrorCode::NON_EMPTY_GROUP, 0);
            }
            let mut answer = OffsetCommitResponse::new();
            for entry in commit.offsets.iter() {
                cluster.committed.insert((entry.topic.clone(), entry.partition), entry.offset);
                let mut result = OffsetCommitPartitionResult::new();
                result.topic = entry.topic.clone();
                result.partition = entry.partition;
                answer.partitions.push(result);
            }
            if cluster.commit_answers_lost > 0 {
                cluster.commit_answers_lost -= 1;
                return None;
            }
            respond(request, ResponseBody::offset_commit(answer))
        }
        RequestBody::offset_fetch(fetch) => {
            let wanted = from_wire(&fetch.partitions);
            let mut answer = OffsetFetchResponse::new();
            for (partition, offset) in &cluster.committed {
                if wanted.is_empty() || wanted.contains(partition) {
                    let mut entry = OffsetFetchPartition::new();
                    entry.topic = partition.0.clone();
                    entry.partition = partition.1;
                    entry.offset = *offset;
                    answer.partitions.push(entry);
                }
            }
            respond(request, ResponseBody::offset_fetch(answer))
        }
        RequestBody::list_groups(_) => {
            let mut answer = ListGroupsResponse::new();
            if node == cluster.coordinator {
                let mut group = ListedGroup::new();
                group.group = GROUP.into();
                group.kind = "consumer".into();
                group.state = if cluster.members.is_empty() { "Empty".into() } else { "Stable".into() };
                answer.groups.push(group);
            }
            respond(request, ResponseBody::list_groups(answer))
        }
        RequestBody::describe_groups(_) => {
            let mut group = DescribedGroup::new();
            group.group = GROUP.into();
            group.kind = "consumer".into();
            group.coordinator = cluster.coordinator;
            for (id, member) in &cluster.members {
                let mut described = DescribedMember::new();
                described.member_id = id.clone();
                described.member_epoch = member.epoch;
                described.assignment = wire_partitions(&member.given).into();
                group.members.push(described);
            }
            for (partition, offset) in &cluster.committed {
                let mut entry = OffsetFetchPartition::new();
                entry.topic = partition.0.clone();
                entry.partition = partition.1;
                entry.offset = *offset;
                group.offsets.push(entry);
            }
            let mut answer = DescribeGroupsResponse::new();
            answer.groups.push(group);
            respond(request, ResponseBody::describe_groups(answer))
        }
        RequestBody::delete_groups(delete) => {
            let mut answer = DeleteGroupsResponse::new();
            for group in delete.groups.iter() {
                let mut result = GroupResult::new();
                result.group = group.clone();
                if !cluster.members.is_empty() {
                    result.error = ErrorCode::NON_EMPTY_GROUP;
                } else {
                    cluster.committed.clear();
                }
                answer.groups.push(result);
            }
            respond(request, ResponseBody::delete_groups(answer))
        }
        other => panic!("the fake does not serve {other:?}"),
    }
}

/// KIP-848 in miniature: partitions spread round-robin over the members in id order, each
/// handed over only once no other member reports it or was given it.
fn consumer_heartbeat(cluster: &mut FakeCluster, request: &Request, heartbeat: &ConsumerGroupHeartbeatRequest) -> Option<Response> {
    if heartbeat.member_epoch < 0 {
        cluster.leaves.push((heartbeat.member_id.clone(), heartbeat.member_epoch));
        cluster.members.remove(&heartbeat.member_id);
        let mut answer = ConsumerGroupHeartbeatResponse::new();
        answer.member_id = heartbeat.member_id.clone();
        answer.member_epoch = heartbeat.member_epoch;
        return respond(request, ResponseBody::consumer_group_heartbeat(answer));
    }
    cluster.subscribed = heartbeat.subscribed_topics.to_vec();
    cluster.subscribed_regex = heartbeat.regex_set.then(|| heartbeat.subscribed_regex.clone());
    cluster.instance_id = heartbeat.group_instance_id.clone();
    let member_id = if heartbeat.member_id.is_empty() {
        cluster.member_next += 1;
        format!("member-{}", cluster.member_next)
    } else {
        heartbeat.member_id.clone()
    };
    if heartbeat.member_epoch > 0 && cluster.members.get(&member_id).is_none_or(|member| member.epoch != heartbeat.member_epoch) {
        return refuse(request, ErrorCode::FENCED_MEMBER_EPOCH, 0);
    }
    let member = cluster.members.entry(member_id.clone()).or_default();
    member.reported = from_wire(&heartbeat.owned);
    let ids: Vec<String> = cluster.members.keys().cloned().collect();
    let index = ids.iter().position(|id| *id == member_id).unwrap();
    let given: BTreeSet<TopicPartition> = (0..PARTITIONS)
        .filter(|partition| *partition as usize % ids.len() == index)
        .map(|partition| (TOPIC.to_string(), partition))
        .filter(|partition| {
            cluster
                .members
                .iter()
                .all(|(id, other)| *id == member_id || !(other.reported.contains(partition) || other.given.contains(partition)))
        })
        .collect();
    let member = cluster.members.get_mut(&member_id).unwrap();
    if member.epoch == 0 || member.given != given {
        member.epoch += 1;
    }
    member.given = given.clone();
    let mut answer = ConsumerGroupHeartbeatResponse::new();
    answer.member_id = member_id;
    answer.member_epoch = member.epoch;
    answer.heartbeat_interval_ms = HEARTBEAT_MS;
    answer.assignment = wire_partitions(&given).into();
    respond(request, ResponseBody::consumer_group_heartbeat(answer))
}

fn config(protocol: GroupProtocol) -> ConsumerConfig {
    let mut cluster = ClusterConfig {
        retry_backoff: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(20),
        operation_timeout: Duration::from_secs(5),
        ..ClusterConfig::default()
    };
    cluster.connection.request_timeout = Duration::from_secs(2);
    ConsumerConfig {
        cluster,
        wait_ms_max: 50,
        group_id: Some(GROUP.into()),
        group_protocol: protocol,
        heartbeat_interval: Duration::from_millis(u64::from(HEARTBEAT_MS)),
        session_timeout: Duration::from_secs(20),
        max_poll_interval: Duration::from_secs(60),
        enable_auto_commit: false,
        group_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}

/// A callback a listener saw: its kind and partitions.
type Callback = (&'static str, BTreeSet<TopicPartition>);

/// What a listener saw, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Callback>>>);

impl RebalanceListener for Seen {
    fn on_partitions_revoked(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.0.lock().unwrap().push(("revoked", partitions.clone()));
    }
    fn on_partitions_assigned(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.0.lock().unwrap().push(("assigned", partitions.clone()));
    }
    fn on_partitions_lost(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.0.lock().unwrap().push(("lost", partitions.clone()));
    }
}

fn partitions(numbers: &[u32]) -> BTreeSet<TopicPartition> {
    numbers.iter().map(|partition| (TOPIC.to_string(), *partition)).collect()
}

async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test finished in time")
}

/// Polls until `done` holds for the records so far; returns them.
async fn poll_until(consumer: &mut Consumer, mut done: impl FnMut(&[ConsumerRecord], &Consumer) -> bool) -> Vec<ConsumerRecord> {
    let mut records = Vec::new();
    while !done(&records, consumer) {
        records.extend(consumer.poll(Duration::from_millis(50)).await.unwrap());
    }
    records
}

fn assigned_events(events: &[GroupEvent]) -> Vec<BTreeMap<TopicPartition, u64>> {
    events
        .iter()
        .filter_map(|event| if let GroupEvent::Assigned { positions, .. } = event { Some(positions.clone()) } else { None })
        .collect()
}

#[cfg(not(madsim))]
#[tokio::test]
async fn join_poll_commit_rebalance_revoke_close() {
    bounded(async {
        let fake = Fake::start().await;
        fake.with(|cluster| cluster.committed.insert((TOPIC.into(), 0), 5));
        let bootstrap = fake.bootstrap();
        let mut first = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        let seen = Seen::default();
        first.set_rebalance_listener(Box::new(seen.clone())).unwrap();
        first.subscribe([TOPIC]).unwrap();

        // Everything is assigned to the only member; partition 0 resumes at the group's commit.
        let records = poll_until(&mut first, |records, _| records.len() == (4 * RECORDS_PER_PARTITION - 5) as usize).await;
        assert_eq!(records.iter().filter(|record| record.partition == 0).map(|record| record.offset).min(), Some(5));
        let (events, dropped) = first.take_group_events();
        assert_eq!(dropped, 0);
        let positions: BTreeMap<TopicPartition, u64> = assigned_events(&events).into_iter().flatten().collect();
        assert_eq!(positions, [0, 1, 2, 3].map(|p| ((TOPIC.to_string(), p), if p == 0 { 5 } else { 0 })).into());
        assert_eq!(seen.0.lock().unwrap().clone(), [("assigned", partitions(&[0, 1, 2, 3]))]);

        // A synchronous commit of what the polls returned, with the member's identity.
        let identity = first.group_member().expect("in the group");
        let outcome = first.commit().await.unwrap();
        assert_eq!((outcome.member_id.as_str(), outcome.epoch, outcome.automatic), (identity.member_id.as_str(), identity.epoch, false));
        assert_eq!(outcome.offsets.values().copied().collect::<Vec<_>>(), [RECORDS_PER_PARTITION; 4]);
        assert_eq!(fake.with(|cluster| cluster.committed.values().copied().collect::<Vec<_>>()), [RECORDS_PER_PARTITION as i64; 4]);
        let committed = first.committed(&partitions(&[0, 3])).await.unwrap();
        assert_eq!(committed.values().copied().collect::<Vec<_>>(), [Some(RECORDS_PER_PARTITION); 2]);

        // A second member joins: the first revokes half, and only then does the second get it.
        let mut second = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        second.subscribe([TOPIC]).unwrap();
        while first.assignment().len() == 4 || second.assignment().len() < 2 {
            assert!(first.poll(Duration::from_millis(20)).await.unwrap().is_empty());
            assert!(second.poll(Duration::from_millis(20)).await.unwrap().is_empty(), "the second resumes at the commits");
            let first_owned: BTreeSet<_> = first.assignment().iter().cloned().collect();
            assert!(second.assignment().iter().all(|partition| !first_owned.contains(partition)), "a partition in two members");
        }
        let revoked: Vec<_> = seen.0.lock().unwrap().iter().filter(|(kind, _)| *kind == "revoked").cloned().collect();
        assert_eq!(revoked.len(), 1);
        let (second_events, _) = second.take_group_events();
        for positions in assigned_events(&second_events) {
            assert!(positions.values().all(|position| *position == RECORDS_PER_PARTITION), "starts at the commits: {positions:?}");
        }

        // Close: the first leaves (epoch -1) and the second ends up with everything.
        let first_id = first.group_member().unwrap().member_id;
        first.close().await.unwrap();
        assert!(fake.with(|cluster| cluster.leaves.contains(&(first_id.clone(), -1))));
        while second.assignment().len() < 4 {
            second.poll(Duration::from_millis(20)).await.unwrap();
        }
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_fenced_member_loses_its_partitions_and_rejoins_with_its_id() {
    bounded(async {
        let fake = Fake::start().await;
        let bootstrap = fake.bootstrap();
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        let seen = Seen::default();
        consumer.set_rebalance_listener(Box::new(seen.clone())).unwrap();
        consumer.subscribe([TOPIC]).unwrap();
        poll_until(&mut consumer, |_, consumer| consumer.assignment().len() == 4).await;
        let before = consumer.group_member().unwrap();
        fake.with(|cluster| cluster.faults.push_back(("consumer_heartbeat", ErrorCode::FENCED_MEMBER_EPOCH)));
        poll_until(&mut consumer, |_, _| seen.0.lock().unwrap().iter().any(|(kind, _)| *kind == "lost")).await;
        let (events, _) = consumer.take_group_events();
        assert!(events
            .iter()
            .any(|event| matches!(event, GroupEvent::Lost { partitions, epoch, .. } if partitions.len() == 4 && *epoch == before.epoch)));
        assert!(!events.iter().any(|event| matches!(event, GroupEvent::Commit(_))), "nothing lost is committed");
        poll_until(&mut consumer, |_, consumer| consumer.assignment().len() == 4).await;
        assert_eq!(consumer.group_member().unwrap().member_id, before.member_id, "rejoins at epoch 0 with the same id");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_moved_coordinator_is_followed_through_its_hint() {
    bounded(async {
        let fake = Fake::start().await;
        let bootstrap = fake.bootstrap();
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        consumer.subscribe([TOPIC]).unwrap();
        poll_until(&mut consumer, |_, consumer| consumer.assignment().len() == 4).await;
        fake.with(|cluster| cluster.coordinator = 2);
        let moved_at = fake.with(|cluster| cluster.requests.len());
        poll_until(&mut consumer, |_, _| fake.with(|cluster| cluster.requests[moved_at..].iter().any(|(node, _)| *node == 2))).await;
        let outcome = consumer.commit().await.unwrap();
        assert_eq!(fake.with(|cluster| cluster.commits.last().map(|(node, _)| *node)), Some(2));
        assert_eq!(outcome.offsets.len(), 4);
        assert_eq!(consumer.assignment().len(), 4, "a moved coordinator is not a rebalance");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn auto_commit_commits_only_what_earlier_polls_returned() {
    bounded(async {
        let fake = Fake::start().await;
        let bootstrap = fake.bootstrap();
        let config = ConsumerConfig {
            enable_auto_commit: true,
            auto_commit_interval: Duration::ZERO, // at the start of every poll
            ..config(GroupProtocol::Consumer)
        };
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config).unwrap();
        consumer.subscribe([TOPIC]).unwrap();
        // returned[p]: the offset after the last record of partition p returned so far.
        let mut returned: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut checked = 0;
        let mut automatic = 0;
        for _ in 0..400 {
            let before = returned.clone();
            for record in consumer.poll(Duration::from_millis(20)).await.unwrap() {
                returned.insert((record.topic.clone(), record.partition), record.offset + 1);
            }
            // Commits leave in issue order: once this (empty, manual) one is answered, every
            // auto-commit issued during the poll is in the log. Each must be at or below what
            // the polls before it returned.
            consumer.commit_offsets(BTreeMap::new()).await.unwrap();
            let (events, _) = consumer.take_group_events();
            for event in events {
                let GroupEvent::Commit(outcome) = event else { continue };
                if !outcome.automatic {
                    continue;
                }
                automatic += 1;
                for (partition, offset) in &outcome.offsets {
                    let returned_before = before.get(partition).copied().unwrap_or(0);
                    assert!(
                        *offset <= returned_before,
                        "C4: auto-commit of {partition:?}@{offset}, but earlier polls returned only up to {returned_before}"
                    );
                    checked += 1;
                }
            }
            if returned.values().all(|offset| *offset == RECORDS_PER_PARTITION) && returned.len() == 4 && automatic > 10 {
                break;
            }
        }
        assert!(checked > 0, "some auto-commits were checked");
        // The last poll's records are committed by the next poll's auto-commit, not before.
        let last = consumer.poll(Duration::from_millis(20)).await.unwrap();
        assert!(last.is_empty());
        for _ in 0..100 {
            if fake.with(|cluster| {
                cluster.committed.values().all(|offset| *offset == RECORDS_PER_PARTITION as i64) && cluster.committed.len() == 4
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.with(|cluster| cluster.committed.values().copied().collect::<Vec<_>>()), [RECORDS_PER_PARTITION as i64; 4]);
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn commit_failures_keep_definite_and_indefinite_apart() {
    bounded(async {
        let fake = Fake::start().await;
        let bootstrap = fake.bootstrap();
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        consumer.subscribe([TOPIC]).unwrap();
        poll_until(&mut consumer, |records, _| records.len() == 40).await;

        fake.with(|cluster| cluster.faults.push_back(("commit", ErrorCode::STALE_MEMBER_EPOCH)));
        let error = consumer.commit().await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::STALE_MEMBER_EPOCH));
        assert!(error.is_definite());

        // NOT_COORDINATOR is definite and retried; the retry lands.
        fake.with(|cluster| cluster.faults.push_back(("commit", ErrorCode::NOT_COORDINATOR)));
        consumer.commit().await.unwrap();

        // A lost answer: indefinite, and not retried (the coordinator may have applied it).
        let commits_before = fake.with(|cluster| cluster.commits.len());
        fake.with(|cluster| cluster.commit_answers_lost = 1);
        let config_timeout = Duration::from_secs(2);
        let error = tokio::time::timeout(config_timeout * 3, consumer.commit()).await.unwrap().unwrap_err();
        assert!(!error.is_definite(), "{error}");
        assert_eq!(fake.with(|cluster| cluster.commits.len()), commits_before + 1, "an unknown outcome is not retried");

        let (events, _) = consumer.take_group_events();
        let results: Vec<Option<bool>> = events
            .iter()
            .filter_map(|event| {
                if let GroupEvent::Commit(outcome) = event {
                    Some(outcome.result.as_ref().err().map(ClientError::is_definite))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(results, [Some(true), None, Some(false)], "every commit is in the log with its outcome");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn the_classic_protocol_joins_as_leader_assigns_and_revokes_eagerly_on_a_rebalance() {
    bounded(async {
        let fake = Fake::start().await;
        let bootstrap = fake.bootstrap();
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Classic)).unwrap();
        let seen = Seen::default();
        consumer.set_rebalance_listener(Box::new(seen.clone())).unwrap();
        consumer.subscribe([TOPIC]).unwrap();
        poll_until(&mut consumer, |records, _| records.len() == 40).await;
        let assignment = fake.with(|cluster| cluster.classic_assignments["classic-1"].clone());
        let decoded = Assignment::decode(&assignment).unwrap();
        assert_eq!(decoded.partitions, [ProtocolTopicPartitions { topic: TOPIC.into(), partitions: vec![0, 1, 2, 3] }], "range, as leader");
        let generation = consumer.group_member().unwrap().epoch;
        consumer.commit().await.unwrap();

        fake.with(|cluster| cluster.faults.push_back(("heartbeat", ErrorCode::REBALANCE_IN_PROGRESS)));
        poll_until(&mut consumer, |_, consumer| consumer.group_member().is_some_and(|member| member.epoch > generation)).await;
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [("assigned", partitions(&[0, 1, 2, 3])), ("revoked", partitions(&[0, 1, 2, 3])), ("assigned", partitions(&[0, 1, 2, 3]))],
            "eager: everything revoked before the rejoin"
        );
        consumer.close().await.unwrap();
        assert_eq!(fake.with(|cluster| cluster.classic_leaves.clone()), ["classic-1"]);
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_version_1_server_refuses_groups_definitely_but_serves_the_rest() {
    bounded(async {
        let fake = Fake::start().await;
        fake.with(|cluster| cluster.protocol_version = 1);
        let bootstrap = fake.bootstrap();
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        let error = consumer.committed(&partitions(&[0])).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::UNSUPPORTED_VERSION));
        assert!(error.is_definite());
        consumer.subscribe([TOPIC]).unwrap();
        let error = loop {
            match consumer.poll(Duration::from_millis(50)).await {
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        assert_eq!(error.code(), Some(ErrorCode::UNSUPPORTED_VERSION), "{error}");
        assert!(fake.with(|cluster| cluster.requests.is_empty()), "no group request reached a version-1 server");
        let admin = Admin::new(&[bootstrap.as_str()]).unwrap();
        assert_eq!(admin.list_topics().await.unwrap(), [TOPIC], "the rest of the protocol works");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn admin_lists_describes_resets_and_deletes_groups() {
    bounded(async {
        let fake = Fake::start().await;
        fake.with(|cluster| cluster.coordinator = 2);
        let bootstrap = fake.bootstrap();
        let admin = Admin::new(&[bootstrap.as_str()]).unwrap();
        let listing = admin.list_groups().await.unwrap();
        assert!(listing.unreachable.is_empty());
        assert_eq!(listing.groups.iter().map(|group| (group.group.as_str(), group.coordinator)).collect::<Vec<_>>(), [(GROUP, 2)]);

        let reset = admin.reset_group_offsets(GROUP, TOPIC, ResetTo::Latest).await.unwrap();
        assert_eq!(reset.values().copied().collect::<Vec<_>>(), [RECORDS_PER_PARTITION; 4]);
        let (node, commit) = fake.with(|cluster| cluster.commits.last().cloned().unwrap());
        assert_eq!((node, commit.member_id.as_str(), commit.epoch), (2, "", -1), "an admin commit, sent to the coordinator");
        admin.alter_group_offsets(GROUP, &[((TOPIC.to_string(), 1), 3)].into()).await.unwrap();
        let offsets = admin.list_group_offsets(GROUP).await.unwrap();
        assert_eq!(offsets[&(TOPIC.to_string(), 1)], 3);
        let described = admin.describe_group(GROUP).await.unwrap();
        assert_eq!((described.coordinator, described.offsets.len()), (2, 4));

        // With a member, resets and deletes are refused.
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config(GroupProtocol::Consumer)).unwrap();
        consumer.subscribe([TOPIC]).unwrap();
        poll_until(&mut consumer, |_, consumer| consumer.assignment().len() == 4).await;
        let described = admin.describe_group(GROUP).await.unwrap();
        assert_eq!(described.members.len(), 1);
        assert_eq!(described.members[0].assignment.len(), 4);
        let error = admin.reset_group_offsets(GROUP, TOPIC, ResetTo::Earliest).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::NON_EMPTY_GROUP));
        assert_eq!(admin.delete_group(GROUP).await.unwrap_err().code(), Some(ErrorCode::NON_EMPTY_GROUP));
        consumer.close().await.unwrap();
        let deleted = admin.delete_groups(&[GROUP]).await;
        assert_eq!(deleted.len(), 1);
        deleted[0].1.as_ref().unwrap();
        assert!(admin.list_group_offsets(GROUP).await.unwrap().is_empty());
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_pattern_subscription_goes_to_the_coordinator_and_a_static_member_leaves_temporarily() {
    bounded(async {
        let fake = Fake::start().await;
        let bootstrap = fake.bootstrap();
        let config = ConsumerConfig { group_instance_id: Some("instance-7".into()), ..config(GroupProtocol::Consumer) };
        let mut consumer = Consumer::new(&[bootstrap.as_str()], config).unwrap();
        assert!(consumer.subscribe_pattern("(unclosed").is_err());
        consumer.subscribe_pattern("t|other-.*").unwrap();
        assert!(consumer.assign(vec![(TOPIC.to_string(), 0)]).is_err(), "a subscribed consumer is assigned by its group");
        poll_until(&mut consumer, |_, consumer| consumer.assignment().len() == 4).await;
        // The consumer protocol leaves the pattern to the coordinator (KIP-848's server-side
        // regex): no names, the pattern as given.
        assert_eq!(
            fake.with(|cluster| (cluster.subscribed.clone(), cluster.subscribed_regex.clone(), cluster.instance_id.clone())),
            (Vec::new(), Some("t|other-.*".to_string()), "instance-7".to_string())
        );
        // Subscribing by name again drops the pattern.
        consumer.subscribe([TOPIC]).unwrap();
        poll_until(&mut consumer, |_, _| {
            fake.with(|cluster| cluster.subscribed_regex.as_deref() == Some("") && cluster.subscribed == [TOPIC])
        })
        .await;
        let member_id = consumer.group_member().unwrap().member_id;
        consumer.close().await.unwrap();
        assert_eq!(fake.with(|cluster| cluster.leaves.clone()), [(member_id, -2)], "a static member leaves with epoch -2");
    })
    .await;
}
