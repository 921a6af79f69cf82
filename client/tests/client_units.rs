//! The client APIs against a fake broker on loopback: a small in-memory server that speaks the
//! wire protocol (Hello, Metadata, InitProducerId, Produce with idempotent de-duplication, Fetch,
//! ListOffsets, CreateTopics) and can be told to lose answers or refuse requests, so retries,
//! de-duplication, ordering and error definiteness can be checked without a real cluster.

// Under madsim only the simulated smoke test at the end runs; the loopback tests are compiled out.
#![cfg_attr(madsim, allow(unused))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use odradek_client::batch::{self, set_base_offset};
use odradek_client::wire::proto::{
    Broker, CreateTopicsResponse, ErrorCode, FetchResponse, HelloResponse, InitProducerIdResponse, ListOffsetsResponse, MetadataResponse,
    OffsetSpec, PartitionMetadata, ProduceResponse, Request, Request_oneof_body as RequestBody, Response,
    Response_oneof_body as ResponseBody, TopicMetadata, TopicResult,
};
use odradek_client::wire::{decode_request, read_frame, write_frame, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use odradek_client::{Acks, Admin, ClientError, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use tokio::net::{TcpListener, TcpStream};

const TOPIC: &str = "t";
/// Every test finishes well within this; a hang fails instead of blocking the suite.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// One produce attempt as the fake broker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempt {
    partition: u32,
    producer_id: i64,
    base_sequence: i32,
    records: i32,
}

/// What the fake broker does to the next produce requests, in order of precedence.
#[derive(Debug, Default)]
struct Faults {
    /// Append, but send no answer.
    appended_answers_lost: usize,
    /// Neither append nor answer.
    requests_lost: usize,
    /// Answer with this error without appending, this many times.
    refusals: Vec<ErrorCode>,
}

/// An appended idempotent batch: (base sequence, records, base offset).
type Appended = (i32, i32, u64);

#[derive(Default)]
struct FakeBroker {
    partitions: u32,
    /// Per partition: stored batches (base offsets set), and the next offset.
    logs: Vec<Vec<Vec<u8>>>,
    offsets_next: Vec<u64>,
    /// (producer id, partition) → appended (base sequence, records, base offset), in order.
    sequences: HashMap<(i64, u32), Vec<Appended>>,
    producer_id_next: i64,
    init_producer_ids: usize,
    attempts: Vec<Attempt>,
    faults: Faults,
}

type Shared = Arc<Mutex<FakeBroker>>;

struct Fake {
    address: String,
    state: Shared,
}

impl Fake {
    async fn start(partitions: u32) -> Fake {
        Fake::start_at("127.0.0.1:0", partitions).await
    }

    /// A fake broker listening on `bind`, which names its own address in the metadata.
    async fn start_at(bind: &str, partitions: u32) -> Fake {
        let listener = TcpListener::bind(bind).await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(FakeBroker {
            partitions,
            logs: vec![Vec::new(); partitions as usize],
            offsets_next: vec![0; partitions as usize],
            producer_id_next: 1000,
            ..FakeBroker::default()
        }));
        let accept_state = state.clone();
        let accept_address = address.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accept_state.clone(), accept_address.clone()));
            }
        });
        Fake { address, state }
    }

    fn bootstrap(&self) -> [&str; 1] {
        [self.address.as_str()]
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeBroker) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Every stored value of a partition, in offset order, with its offset.
    fn stored(&self, partition: u32) -> Vec<(u64, String)> {
        self.with(|broker| {
            broker.logs[partition as usize]
                .iter()
                .flat_map(|batch| {
                    batch::records(batch)
                        .unwrap()
                        .map(|record| {
                            let record = record.unwrap();
                            (record.offset as u64, String::from_utf8(record.value.unwrap().to_vec()).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
    }
}

async fn serve(stream: TcpStream, state: Shared, address: String) {
    let (mut reader, writer) = tokio::io::split(stream);
    // Requests are served concurrently (a long-polling fetch does not hold up the others), so
    // answers go out in whatever order they are ready.
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    while let Ok(Some(body)) = read_frame(&mut reader, FRAME_BYTES_MAX).await {
        let request = decode_request(&body).unwrap();
        let (state, address, writer) = (state.clone(), address.clone(), writer.clone());
        let serve_one = async move {
            let wait_ms = match &request.body {
                Some(RequestBody::fetch(fetch)) => fetch.max_wait_ms.min(5000),
                _ => 0,
            };
            let mut answer = handle(&state, &address, &request);
            let mut waited_ms = 0;
            while waited_ms < wait_ms
                && matches!(&answer, Some(Response { error: ErrorCode::NONE, body: Some(ResponseBody::fetch(fetch)), .. }) if fetch.batches.is_empty())
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited_ms += 10;
                answer = handle(&state, &address, &request);
            }
            if let Some(response) = answer {
                let _ = write_frame(&mut *writer.lock().await, &response).await;
            }
        };
        if matches!(&request_kind(&body), Some(RequestBody::hello(_))) {
            serve_one.await; // the handshake is answered before anything else is read
        } else {
            tokio::spawn(serve_one);
        }
    }
}

fn request_kind(body: &[u8]) -> Option<RequestBody> {
    decode_request(body).ok().and_then(|request| request.body)
}

fn respond(request: &Request, body: ResponseBody) -> Option<Response> {
    let mut response = Response::new();
    response.request_id = request.request_id;
    response.body = Some(body);
    Some(response)
}

fn refuse(request: &Request, code: ErrorCode, body: Option<ResponseBody>) -> Option<Response> {
    let mut response = Response::new();
    response.request_id = request.request_id;
    response.error = code;
    response.error_message = format!("fake broker says {code:?}");
    response.body = body;
    Some(response)
}

fn handle(state: &Shared, address: &str, request: &Request) -> Option<Response> {
    let mut broker = state.lock().unwrap();
    match request.body.as_ref().unwrap() {
        RequestBody::hello(hello) => {
            assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
            let mut answer = HelloResponse::new();
            answer.protocol_version = PROTOCOL_VERSION;
            answer.node_id = 1;
            answer.frame_bytes_max = FRAME_BYTES_MAX as u32;
            respond(request, ResponseBody::hello(answer))
        }
        RequestBody::metadata(_) => {
            let mut answer = MetadataResponse::new();
            let mut me = Broker::new();
            me.node_id = 1;
            me.address = address.to_string();
            answer.brokers = vec![me].into();
            answer.controller = 1;
            let mut topic = TopicMetadata::new();
            topic.name = TOPIC.to_string();
            topic.partitions = (0..broker.partitions)
                .map(|partition| {
                    let mut info = PartitionMetadata::new();
                    info.partition = partition;
                    info.leader = 1;
                    info.replicas = vec![1];
                    info
                })
                .collect::<Vec<_>>()
                .into();
            answer.topics = vec![topic].into();
            respond(request, ResponseBody::metadata(answer))
        }
        RequestBody::init_producer_id(_) => {
            broker.init_producer_ids += 1;
            let mut answer = InitProducerIdResponse::new();
            answer.producer_id = broker.producer_id_next;
            broker.producer_id_next += 1;
            answer.producer_epoch = 0;
            respond(request, ResponseBody::init_producer_id(answer))
        }
        RequestBody::create_topics(create) => {
            let mut answer = CreateTopicsResponse::new();
            answer.topics = create
                .topics
                .iter()
                .map(|topic| {
                    let mut result = TopicResult::new();
                    result.name = topic.name.clone();
                    if topic.name == TOPIC {
                        result.error = ErrorCode::TOPIC_ALREADY_EXISTS;
                    }
                    result
                })
                .collect::<Vec<_>>()
                .into();
            respond(request, ResponseBody::create_topics(answer))
        }
        RequestBody::produce(produce) => produce_answer(&mut broker, request, produce),
        RequestBody::fetch(fetch) => {
            let partition = fetch.partition as usize;
            let mut answer = FetchResponse::new();
            answer.high_watermark = broker.offsets_next[partition];
            if fetch.offset > broker.offsets_next[partition] {
                return refuse(request, ErrorCode::OFFSET_OUT_OF_RANGE, Some(ResponseBody::fetch(answer)));
            }
            for stored in &broker.logs[partition] {
                let header = batch::validate(stored).unwrap();
                if header.offset_last() as u64 >= fetch.offset && answer.batches.len() < fetch.max_bytes as usize {
                    answer.batches.extend_from_slice(stored);
                }
            }
            respond(request, ResponseBody::fetch(answer))
        }
        RequestBody::list_offsets(list) => {
            let mut answer = ListOffsetsResponse::new();
            answer.offset = match list.spec {
                OffsetSpec::EARLIEST => 0,
                _ => broker.offsets_next[list.partition as usize],
            };
            respond(request, ResponseBody::list_offsets(answer))
        }
        other => panic!("the fake broker does not serve {other:?}"),
    }
}

/// Produce with idempotent de-duplication, as the real leader does it.
fn produce_answer(broker: &mut FakeBroker, request: &Request, produce: &odradek_client::wire::proto::ProduceRequest) -> Option<Response> {
    let header = batch::validate(&produce.batch).expect("the client sends valid batches");
    let partition = produce.partition;
    broker.attempts.push(Attempt {
        partition,
        producer_id: header.producer_id,
        base_sequence: header.base_sequence,
        records: header.records_count,
    });
    if broker.faults.requests_lost > 0 {
        broker.faults.requests_lost -= 1;
        return None;
    }
    if !broker.faults.refusals.is_empty() {
        let code = broker.faults.refusals.remove(0);
        let mut answer = ProduceResponse::new();
        answer.leader_hint = if code == ErrorCode::NOT_LEADER { 1 } else { 0 };
        return refuse(request, code, Some(ResponseBody::produce(answer)));
    }
    let mut offset_base = None;
    if header.producer_id >= 0 {
        let appended = broker.sequences.entry((header.producer_id, partition)).or_default();
        let expected = appended.last().map_or(0, |(sequence, records, _)| sequence + records);
        if let Some((_, _, offset)) = appended.iter().find(|(sequence, _, _)| *sequence == header.base_sequence) {
            offset_base = Some(*offset); // a retry of an appended batch: its original offset
        } else if header.base_sequence != expected {
            return refuse(request, ErrorCode::OUT_OF_ORDER_SEQUENCE, None);
        }
    }
    let offset_base = match offset_base {
        Some(offset) => offset,
        None => {
            let offset = broker.offsets_next[partition as usize];
            let mut stored = produce.batch.clone();
            set_base_offset(&mut stored, offset as i64);
            broker.logs[partition as usize].push(stored);
            broker.offsets_next[partition as usize] += header.records_count as u64;
            if header.producer_id >= 0 {
                broker.sequences.entry((header.producer_id, partition)).or_default().push((
                    header.base_sequence,
                    header.records_count,
                    offset,
                ));
            }
            offset
        }
    };
    if broker.faults.appended_answers_lost > 0 {
        broker.faults.appended_answers_lost -= 1;
        return None;
    }
    let mut answer = ProduceResponse::new();
    answer.base_offset = offset_base;
    answer.log_append_time_ms = -1;
    respond(request, ResponseBody::produce(answer))
}

fn fast_config() -> ProducerConfig {
    let mut config =
        ProducerConfig { linger: Duration::from_millis(2), request_timeout: Duration::from_millis(200), ..ProducerConfig::default() };
    config.retry_backoff = Duration::from_millis(10);
    config.retry_backoff_max = Duration::from_millis(50);
    config
}

async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test finished in time")
}

#[cfg(not(madsim))]
#[tokio::test]
async fn produce_then_consume_round_trip_keeps_keys_and_order() {
    bounded(async {
        let fake = Fake::start(3).await;
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let mut deliveries = Vec::new();
        for index in 0..200 {
            let record = ProducerRecord::new(TOPIC, format!("v{index}")).key(format!("k{}", index % 7));
            deliveries.push(producer.send(record).await.unwrap());
        }
        let mut partition_of_key = HashMap::new();
        let mut offset_last = HashMap::new();
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.unwrap();
            let offset = metadata.offset.expect("acks=all gives offsets");
            assert_eq!(
                *partition_of_key.entry(index % 7).or_insert(metadata.partition),
                metadata.partition,
                "a key stays on its partition"
            );
            if let Some(previous) = offset_last.insert(metadata.partition, offset) {
                assert!(offset > previous, "offsets follow send order within a partition");
            }
            assert!(fake.stored(metadata.partition).contains(&(offset, format!("v{index}"))), "record {index} is stored at its offset");
        }
        producer.close().await.unwrap();

        let mut consumer = Consumer::new(&fake.bootstrap(), ConsumerConfig::default()).unwrap();
        consumer.assign((0..3).map(|partition| (TOPIC.to_string(), partition)).collect()).unwrap();
        for partition in 0..3 {
            assert_eq!(consumer.seek(TOPIC, partition, Offset::Beginning).await.unwrap(), 0);
        }
        let mut consumed = Vec::new();
        while consumed.len() < 200 {
            consumed.extend(consumer.poll(Duration::from_secs(1)).await.unwrap());
        }
        assert_eq!(consumed.len(), 200, "nothing read twice");
        for partition in 0..3 {
            let read: Vec<(u64, String)> = consumed
                .iter()
                .filter(|record| record.partition == partition)
                .map(|record| (record.offset, String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()))
                .collect();
            assert_eq!(read, fake.stored(partition));
            assert_eq!(consumer.position(TOPIC, partition), Some(read.len() as u64));
        }
        assert!(consumer.poll(Duration::from_millis(100)).await.unwrap().is_empty());
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_sequence_and_not_appended_twice() {
    bounded(async {
        let fake = Fake::start(1).await;
        fake.with(|broker| broker.faults.appended_answers_lost = 1);
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let metadata = producer.send_and_wait(ProducerRecord::new(TOPIC, "once")).await.unwrap();
        assert_eq!(metadata.offset, Some(0), "the retry learns the original offset");
        let attempts = fake.with(|broker| broker.attempts.clone());
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_eq!(attempts[0], attempts[1], "the retry carries the same producer id and sequence");
        assert_eq!(fake.stored(0), [(0, "once".to_string())]);
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn retries_keep_order_with_several_requests_in_flight() {
    bounded(async {
        let fake = Fake::start(1).await;
        // The second request vanishes: the ones behind it get OUT_OF_ORDER_SEQUENCE until it is resent.
        let producer = Producer::new(&fake.bootstrap(), ProducerConfig { batch_bytes: 200, ..fast_config() }).await.unwrap();
        let first = producer.send(ProducerRecord::new(TOPIC, "v0".to_string())).await.unwrap();
        producer.flush().await.unwrap();
        first.await.unwrap();
        fake.with(|broker| broker.faults.requests_lost = 1);
        let mut deliveries = Vec::new();
        for index in 1..60 {
            deliveries.push(producer.send(ProducerRecord::new(TOPIC, format!("v{index}"))).await.unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
        let stored: Vec<String> = fake.stored(0).into_iter().map(|(_, value)| value).collect();
        let expected: Vec<String> = (0..60).map(|index| format!("v{index}")).collect();
        assert_eq!(stored, expected, "no loss, no duplicate, send order");
        let (batches, attempts) = fake.with(|broker| (broker.logs[0].len(), broker.attempts.clone()));
        assert!(batches > 5, "small batches, so several were in flight: {batches}");
        let resent = attempts.len() - batches;
        assert!(resent >= 2, "the lost request and at least one behind it were sent again: {attempts:?}");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn not_leader_is_retried() {
    bounded(async {
        let fake = Fake::start(1).await;
        fake.with(|broker| broker.faults.refusals = vec![ErrorCode::NOT_LEADER, ErrorCode::LEADER_NOT_AVAILABLE]);
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let metadata = producer.send_and_wait(ProducerRecord::new(TOPIC, "x")).await.unwrap();
        assert_eq!(metadata.offset, Some(0));
        assert_eq!(fake.with(|broker| broker.attempts.len()), 3);
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_definite_refusal_fails_the_batch_definitely_and_later_batches_start_afresh() {
    bounded(async {
        let fake = Fake::start(1).await;
        fake.with(|broker| broker.faults.refusals = vec![ErrorCode::RECORD_TOO_LARGE]);
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let error = producer.send_and_wait(ProducerRecord::new(TOPIC, "refused")).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::RECORD_TOO_LARGE), "{error}");
        assert!(error.is_definite());
        let metadata = producer.send_and_wait(ProducerRecord::new(TOPIC, "next")).await.unwrap();
        assert_eq!(metadata.offset, Some(0));
        let (init_producer_ids, attempts) = fake.with(|broker| (broker.init_producer_ids, broker.attempts.clone()));
        assert_eq!(init_producer_ids, 2, "a fresh producer id after giving up");
        assert_ne!(attempts[0].producer_id, attempts[1].producer_id);
        assert_eq!(attempts[1].base_sequence, 0, "sequences restart at 0 under the new id");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_unknown_outcome_is_never_reported_as_definite() {
    bounded(async {
        let fake = Fake::start(1).await;
        // First attempt lost (outcome unknown to the client), then a definite, fatal refusal.
        fake.with(|broker| {
            broker.faults.requests_lost = 1;
            broker.faults.refusals = vec![ErrorCode::CORRUPT_BATCH];
        });
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let error = producer.send_and_wait(ProducerRecord::new(TOPIC, "maybe")).await.unwrap_err();
        assert!(!error.is_definite(), "{error}");
        assert!(matches!(error, ClientError::DeliveryUnknown { attempts: 2, .. }), "{error}");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn delivery_timeout_bounds_retries() {
    bounded(async {
        let fake = Fake::start(1).await;
        fake.with(|broker| broker.faults.refusals = vec![ErrorCode::NOT_LEADER; 1000]);
        let config = ProducerConfig { delivery_timeout: Duration::from_millis(300), ..fast_config() };
        let producer = Producer::new(&fake.bootstrap(), config).await.unwrap();
        let error = producer.send_and_wait(ProducerRecord::new(TOPIC, "late")).await.unwrap_err();
        assert!(matches!(error, ClientError::DeliveryTimeout { .. }), "{error}");
        assert!(error.is_definite(), "every attempt was refused before appending");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn acks_none_resolves_without_an_offset() {
    bounded(async {
        let fake = Fake::start(1).await;
        let config = ProducerConfig { acks: Acks::None, idempotence: false, ..fast_config() };
        let producer = Producer::new(&fake.bootstrap(), config).await.unwrap();
        let metadata = producer.send_and_wait(ProducerRecord::new(TOPIC, "fire")).await.unwrap();
        assert_eq!(metadata.offset, None);
        for _ in 0..100 {
            if !fake.stored(0).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.stored(0), [(0, "fire".to_string())]);
        assert_eq!(fake.with(|broker| broker.attempts[0].producer_id), -1, "no producer id without idempotence");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn fetching_outside_the_log_names_the_partition_and_its_bounds() {
    bounded(async {
        let fake = Fake::start(2).await;
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        producer.send_and_wait(ProducerRecord::new(TOPIC, "a").partition(1)).await.unwrap();
        let mut consumer = Consumer::new(&fake.bootstrap(), ConsumerConfig::default()).unwrap();
        consumer.assign(vec![(TOPIC.to_string(), 1)]).unwrap();
        assert_eq!(consumer.seek(TOPIC, 1, Offset::End).await.unwrap(), 1);
        consumer.seek(TOPIC, 1, Offset::At(50)).await.unwrap();
        match consumer.poll(Duration::from_millis(200)).await {
            Err(ClientError::OffsetOutOfRange { topic, partition: 1, offset: 50, high_watermark: 1, .. }) => assert_eq!(topic, TOPIC),
            other => panic!("expected OffsetOutOfRange, got {other:?}"),
        }
        assert_eq!(consumer.position(TOPIC, 1), Some(50), "a failed poll moves no position");
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn admin_lists_and_describes_topics() {
    bounded(async {
        let fake = Fake::start(4).await;
        let admin = Admin::new(&fake.bootstrap()).unwrap();
        assert_eq!(admin.list_topics().await.unwrap(), [TOPIC.to_string()]);
        let described = admin.describe_topic(TOPIC).await.unwrap();
        assert_eq!(described.partitions.len(), 4);
        assert!(described.partitions.iter().all(|partition| partition.leader == 1));
        admin.create_topic("other", 1, 1, TopicConfig::default()).await.unwrap();
        let error = admin.create_topic(TOPIC, 1, 1, TopicConfig::default()).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::TOPIC_ALREADY_EXISTS));
        assert!(error.is_definite());
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_dead_connection_fails_requests_indefinitely_and_the_pool_replaces_it() {
    bounded(async {
        // A server that completes the handshake, reads one request, and closes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = tokio::io::split(stream);
                    let body = read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap();
                    let hello = decode_request(&body).unwrap();
                    let mut answer = HelloResponse::new();
                    answer.protocol_version = PROTOCOL_VERSION;
                    write_frame(&mut writer, &respond(&hello, ResponseBody::hello(answer)).unwrap()).await.unwrap();
                    let _ = read_frame(&mut reader, FRAME_BYTES_MAX).await;
                });
            }
        });
        let connection = odradek_client::Connection::connect(&address, "test", Default::default()).await.unwrap();
        let error = connection.request(RequestBody::metadata(Default::default())).await.unwrap_err();
        assert!(matches!(error, ClientError::Disconnected { sent: true, .. }), "{error}");
        assert!(!error.is_definite());
        // Once the connection is known dead, nothing more is sent on it: definite.
        for _ in 0..100 {
            if connection.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let error = connection.request(RequestBody::metadata(Default::default())).await.unwrap_err();
        assert!(matches!(error, ClientError::Disconnected { sent: false, .. }), "{error}");
        assert!(error.is_definite());

        let cluster = odradek_client::Cluster::new(&[address.as_str()], Default::default()).unwrap();
        let pooled = cluster.connection(&address).await.unwrap();
        let _ = pooled.request(RequestBody::metadata(Default::default())).await;
        for _ in 0..100 {
            if pooled.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let replacement = cluster.connection(&address).await.unwrap();
        assert!(!replacement.is_closed(), "a closed connection is replaced, not handed out");
    })
    .await;
}

/// A server that says Hello, then answers every `batch` requests in reverse order of arrival
/// (each answer's message names the request id it answers), and never answers a request whose
/// Metadata names the topic "silent".
async fn reversing_server(batch: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = tokio::io::split(stream);
                let body = read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap();
                let hello = decode_request(&body).unwrap();
                let mut answer = HelloResponse::new();
                answer.protocol_version = PROTOCOL_VERSION;
                write_frame(&mut writer, &respond(&hello, ResponseBody::hello(answer)).unwrap()).await.unwrap();
                let mut held = Vec::new();
                while let Ok(Some(body)) = read_frame(&mut reader, FRAME_BYTES_MAX).await {
                    let request = decode_request(&body).unwrap();
                    if matches!(&request.body, Some(RequestBody::metadata(metadata)) if metadata.topics.iter().any(|topic| topic == "silent"))
                    {
                        continue;
                    }
                    held.push(request);
                    if held.len() == batch {
                        for request in held.drain(..).rev() {
                            let mut response = Response::new();
                            response.request_id = request.request_id;
                            response.error_message = format!("answer to {}", request.request_id);
                            write_frame(&mut writer, &response).await.unwrap();
                        }
                    }
                }
            });
        }
    });
    address
}

#[cfg(not(madsim))]
#[tokio::test]
async fn pipelined_answers_are_matched_by_request_id_in_any_order() {
    bounded(async {
        let address = reversing_server(3).await;
        let connection = odradek_client::Connection::connect(&address, "test", Default::default()).await.unwrap();
        let first = connection.start(RequestBody::metadata(Default::default())).await.unwrap();
        let second = connection.start(RequestBody::metadata(Default::default())).await.unwrap();
        let third = connection.start(RequestBody::metadata(Default::default())).await.unwrap();
        let (first, second, third) = (first.await.unwrap(), second.await.unwrap(), third.await.unwrap());
        let ids = [first.request_id, second.request_id, third.request_id];
        assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids follow the order requests were queued: {ids:?}");
        for response in [first, second, third] {
            assert_eq!(response.error_message, format!("answer to {}", response.request_id));
        }
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_unanswered_request_times_out_indefinitely() {
    bounded(async {
        let address = reversing_server(1).await;
        let config = odradek_client::ConnectionConfig { request_timeout: Duration::from_millis(100), ..Default::default() };
        let connection = odradek_client::Connection::connect(&address, "test", config).await.unwrap();
        let mut silent = odradek_client::wire::proto::MetadataRequest::new();
        silent.topics = vec!["silent".to_string()].into();
        let error = connection.request(RequestBody::metadata(silent)).await.unwrap_err();
        assert!(matches!(error, ClientError::Timeout { timeout_ms: 100 }), "{error}");
        assert!(!error.is_definite());
        // The connection stays usable.
        connection.request(RequestBody::metadata(Default::default())).await.unwrap();
    })
    .await;
}

/// The same client code under the madsim simulator: a broker node and a client node on the
/// simulated network (`RUSTFLAGS="--cfg madsim" cargo test -p odradek-client --test client_units`).
#[cfg(madsim)]
#[madsim::test]
async fn producer_and_consumer_run_under_the_simulator() {
    let handle = madsim::runtime::Handle::current();
    let broker = handle.create_node().name("broker").ip("10.0.0.1".parse().unwrap()).build();
    let client = handle.create_node().name("client").ip("10.0.0.2".parse().unwrap()).build();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    broker.spawn(async move {
        let fake = Fake::start_at("10.0.0.1:9092", 2).await;
        fake.with(|broker| broker.faults.appended_answers_lost = 1);
        let _ = started_tx.send(fake.state.clone());
        futures::future::pending::<()>().await;
    });
    let state = started_rx.await.unwrap();
    let outcome = client.spawn(async move {
        let bootstrap = ["10.0.0.1:9092"];
        let producer = Producer::new(&bootstrap, fast_config()).await.unwrap();
        let mut deliveries = Vec::new();
        for index in 0..20 {
            deliveries.push(producer.send(ProducerRecord::new(TOPIC, format!("v{index}")).partition(index % 2)).await.unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
        let mut consumer = Consumer::new(&bootstrap, ConsumerConfig::default()).unwrap();
        consumer.assign(vec![(TOPIC.to_string(), 0), (TOPIC.to_string(), 1)]).unwrap();
        consumer.seek(TOPIC, 0, Offset::Beginning).await.unwrap();
        consumer.seek(TOPIC, 1, Offset::Beginning).await.unwrap();
        let mut consumed = Vec::new();
        while consumed.len() < 20 {
            consumed.extend(consumer.poll(Duration::from_secs(1)).await.unwrap());
        }
        consumed.len()
    });
    assert_eq!(outcome.await.unwrap(), 20, "every record read once, the lost answer's retry de-duplicated");
    let stored: usize = state.lock().unwrap().offsets_next.iter().map(|next| *next as usize).sum();
    assert_eq!(stored, 20);
}

#[cfg(not(madsim))]
#[tokio::test]
async fn a_leader_that_lost_our_sequence_state_gets_the_batch_again_under_a_new_producer_id() {
    bounded(async {
        let fake = Fake::start(1).await;
        fake.with(|broker| broker.faults.refusals = vec![ErrorCode::OUT_OF_ORDER_SEQUENCE]);
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let metadata = producer.send_and_wait(ProducerRecord::new(TOPIC, "again")).await.unwrap();
        assert_eq!(metadata.offset, Some(0), "never appended, so safe to send under a new id");
        let (init_producer_ids, attempts) = fake.with(|broker| (broker.init_producer_ids, broker.attempts.clone()));
        assert_eq!(init_producer_ids, 2);
        assert_eq!(attempts.len(), 2);
        assert_ne!(attempts[0].producer_id, attempts[1].producer_id);
        assert_eq!((attempts[1].base_sequence, attempts[1].records), (0, 1));
        assert_eq!(fake.stored(0), [(0, "again".to_string())]);
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn flush_sends_open_batches_without_waiting_for_their_linger() {
    bounded(async {
        let fake = Fake::start(1).await;
        let producer = Producer::new(&fake.bootstrap(), ProducerConfig { linger: Duration::from_secs(60), ..fast_config() }).await.unwrap();
        let delivery = producer.send(ProducerRecord::new(TOPIC, "lingering")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), producer.flush()).await.expect("flush does not wait out the linger").unwrap();
        assert_eq!(delivery.await.unwrap().offset, Some(0));
        producer.close().await.unwrap();
        let error = producer.send(ProducerRecord::new(TOPIC, "late")).await.err().expect("a closed producer refuses records");
        assert!(matches!(error, ClientError::Closed) && error.is_definite());
    })
    .await;
}

#[cfg(not(madsim))]
#[tokio::test]
async fn an_idle_partition_does_not_hold_up_a_busy_one() {
    bounded(async {
        let fake = Fake::start(2).await;
        let producer = Producer::new(&fake.bootstrap(), fast_config()).await.unwrap();
        let mut consumer = Consumer::new(&fake.bootstrap(), ConsumerConfig { max_wait_ms: 3000, ..ConsumerConfig::default() }).unwrap();
        consumer.assign(vec![(TOPIC.to_string(), 0), (TOPIC.to_string(), 1)]).unwrap();
        consumer.seek(TOPIC, 0, Offset::Beginning).await.unwrap();
        consumer.seek(TOPIC, 1, Offset::Beginning).await.unwrap();
        for round in 0..3u64 {
            producer.send_and_wait(ProducerRecord::new(TOPIC, format!("r{round}")).partition(0)).await.unwrap();
            let started = tokio::time::Instant::now();
            let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
            assert!(started.elapsed() < Duration::from_millis(1500), "round {round} took {:?}", started.elapsed());
            assert_eq!(records.iter().map(|record| (record.partition, record.offset)).collect::<Vec<_>>(), [(0, round)]);
        }
    })
    .await;
}
