//! The Kafka-protocol workload (plan field `kafka`, issue 16): one producer and one consumer that
//! speak Apache Kafka's wire protocol to the nodes' Kafka listeners over the simulated network,
//! with the `kafka-protocol` codecs the listener itself uses. Their ops go into the same history
//! as the native clients' and the same checker judges them (L1–L13 at acks=all).
//!
//! Requests: Metadata (v12) for the partitions' leaders and the brokers' Kafka addresses, Produce
//! (v9, acks=-1, one record per batch built by the native client's `BatchBuilder`), ListOffsets
//! (v5, earliest) where the consumer starts, Fetch (v11) from each partition's leader.
//!
//! Outcome rules (CHECKLISTS "Harness and simulator requirements"):
//! * a send is `ok` with its acknowledged offset on error code 0; `fail` when nothing was
//!   written: no leader known, no connection to it, or a code the Kafka listener gives only
//!   before proposing or for an invalid request ([`definite`], `server/src/kafka/errors.rs`);
//!   `info` otherwise (REQUEST_TIMED_OUT, a connection lost once the request was being written,
//!   no answer within [`SEND_BOUND`]). Every send is its own process, so an `info` retires
//!   nothing else;
//! * the consumer's positions are its own and move only past records it recorded; a poll fetches
//!   every partition and is `ok` with the partitions that answered (with each one's high
//!   watermark, for L12), `fail` if none did.
//!
//! Connections are one per broker and one request at a time; one that failed in any way is
//! dropped (a late answer can never be taken for the next request's).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use odradek_client::batch::{BatchBuilder, Record};
use odradek_client::kafka::KafkaStream;
use odradek_client::scram::Mechanism;
use odradek_jepsen::history::{Acks, Keys, OpF, OpValue, Poll, Send};
use tokio::net::TcpStream;

use crate::cluster::SimCluster;
use crate::config::TOPIC;

/// Bound on one send (metadata, connect, Produce and its answer), simulated time.
pub const SEND_BOUND: Duration = Duration::from_secs(12);
/// Bound on one request of the consumer (metadata, ListOffsets, one partition's Fetch).
pub const READ_BOUND: Duration = Duration::from_secs(3);
/// How long a Fetch waits on the server for records.
const FETCH_WAIT_MS: i32 = 200;
/// Most bytes one Fetch asks for per partition.
const FETCH_BYTES_MAX: i32 = 1 << 20;
/// Largest response frame accepted (a Fetch answer is bounded by [`FETCH_BYTES_MAX`] plus headers).
const RESPONSE_BYTES_MAX: usize = 4 << 20;
/// Produce's own server-side timeout.
const PRODUCE_TIMEOUT_MS: i32 = 10_000;

const METADATA_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 11;
const LIST_OFFSETS_VERSION: i16 = 5;
const API_VERSIONS_VERSION: i16 = 3;
/// The client id of the workload's requests.
const CLIENT_ID: &str = "odradek-sim-kafka";

/// Kafka error codes (Kafka's numbering).
const NONE: i16 = 0;

/// Codes the Kafka listener answers a Produce with only when nothing was proposed, or for a
/// request it refused as invalid: NOT_LEADER_OR_FOLLOWER (6), LEADER_NOT_AVAILABLE (5),
/// UNKNOWN_TOPIC_OR_PARTITION (3), NOT_CONTROLLER (41), KAFKA_STORAGE_ERROR (56, disk full),
/// CORRUPT_MESSAGE (2), MESSAGE_TOO_LARGE (10), INVALID_TOPIC (17), INVALID_REQUIRED_ACKS (21),
/// INVALID_REQUEST (42), INVALID_RECORD (87), UNSUPPORTED_VERSION (35). Not here: its
/// unknown-outcome codes REQUEST_TIMED_OUT (7) and UNKNOWN_SERVER_ERROR (-1), and anything else.
pub fn definite(code: i16) -> bool {
    matches!(code, 2 | 3 | 5 | 6 | 10 | 17 | 21 | 35 | 41 | 42 | 56 | 87)
}

pub use odradek_client::kafka::{CallError, LoginError, SASL_AUTHENTICATION_FAILED};

/// Who a connection logs in as (`--secure`): SASL/SCRAM over SaslHandshake and
/// SaslAuthenticate, with the client crate's Kafka login ([`odradek_client::kafka`]).
pub use odradek_client::connection::SaslCredentials as Login;

/// The workload's login in a secure run (the writer, as the native clients), else none.
fn login_of(cluster: &SimCluster) -> Option<Login> {
    cluster.auth.as_ref().map(|_| {
        let (user, password) = crate::security::WRITER;
        Login { mechanism: Mechanism::Sha256, user: user.to_string(), password: password.to_string() }
    })
}

/// One Kafka connection, one request at a time: the client crate's framing
/// ([`odradek_client::kafka::KafkaStream`]) over a simulated TCP stream.
pub struct KafkaConnection {
    stream: KafkaStream<TcpStream>,
}

impl KafkaConnection {
    /// A connection to `address`, logged in as `login` when given; any failure of the login is
    /// `Unsent` (no request of the caller's went out on it).
    async fn connect(address: SocketAddr, login: Option<&Login>) -> Result<KafkaConnection, CallError> {
        let mut connection = KafkaConnection::open(address).await?;
        if let Some(login) = login {
            connection.login(login).await.map_err(|e| CallError::Unsent(format!("login at {address}: {e}")))?;
        }
        Ok(connection)
    }

    /// A plain connection to `address`.
    pub async fn open(address: SocketAddr) -> Result<KafkaConnection, CallError> {
        let stream = TcpStream::connect(address).await.map_err(|e| CallError::Unsent(format!("connect {address}: {e}")))?;
        Ok(KafkaConnection { stream: KafkaStream::new(stream, CLIENT_ID, RESPONSE_BYTES_MAX) })
    }

    /// ApiVersions (served before any login): whether the node answered.
    pub async fn api_versions(&mut self) -> bool {
        let request = RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("odradek-sim"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        );
        matches!(self.call(ApiKey::ApiVersions, API_VERSIONS_VERSION, request).await, Ok(ResponseKind::ApiVersions(a)) if a.error_code == NONE)
    }

    /// The SCRAM exchange as `login`: SaslHandshake, then two SaslAuthenticate rounds
    /// (client-first, client-final), and the server's signature checked.
    pub async fn login(&mut self, login: &Login) -> Result<(), LoginError> {
        self.stream.login(login).await
    }

    /// Sends `request` at `version` and reads its answer.
    pub async fn call(&mut self, api_key: ApiKey, version: i16, request: RequestKind) -> Result<ResponseKind, CallError> {
        self.stream.call(api_key, version, request).await
    }
}

/// What a client knows of the cluster: its connections and each partition's leader.
struct KafkaClient {
    cluster: Arc<SimCluster>,
    connections: BTreeMap<SocketAddr, KafkaConnection>,
    leaders: BTreeMap<u32, SocketAddr>,
    /// Which bootstrap address the next metadata request goes to (round robin).
    bootstrap_next: usize,
    /// Every connection logs in as this first (`--secure`).
    login: Option<Login>,
}

impl KafkaClient {
    fn new(cluster: Arc<SimCluster>) -> KafkaClient {
        let login = login_of(&cluster);
        KafkaClient { cluster, connections: BTreeMap::new(), leaders: BTreeMap::new(), bootstrap_next: 0, login }
    }

    /// One request to `address` over its connection (made if needed; dropped on any error).
    async fn call(&mut self, address: SocketAddr, api_key: ApiKey, version: i16, request: RequestKind) -> Result<ResponseKind, CallError> {
        let mut connection = match self.connections.remove(&address) {
            Some(connection) => connection,
            None => KafkaConnection::connect(address, self.login.as_ref()).await?,
        };
        let answer = connection.call(api_key, version, request).await?;
        self.connections.insert(address, connection);
        Ok(answer)
    }

    /// Asks one node (round robin) for the topic's leaders; keeps those it names.
    async fn refresh_leaders(&mut self) -> Result<(), String> {
        let bootstrap = self.cluster.kafka_bootstrap();
        let address = bootstrap[self.bootstrap_next % bootstrap.len()];
        self.bootstrap_next += 1;
        let topic = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))));
        let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![topic])));
        let ResponseKind::Metadata(metadata) =
            self.call(address, ApiKey::Metadata, METADATA_VERSION, request).await.map_err(|e| e.to_string())?
        else {
            return Err("a Metadata request got another answer".into());
        };
        let brokers: BTreeMap<i32, SocketAddr> = metadata
            .brokers
            .iter()
            .filter_map(|b| Some((b.node_id.0, SocketAddr::new(b.host.as_str().parse().ok()?, u16::try_from(b.port).ok()?))))
            .collect();
        self.leaders.clear();
        for topic in metadata.topics.iter().filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC)) {
            for partition in topic.partitions.iter().filter(|p| p.error_code == NONE) {
                if let (Ok(index), Some(&leader)) = (u32::try_from(partition.partition_index), brokers.get(&partition.leader_id.0)) {
                    self.leaders.insert(index, leader);
                }
            }
        }
        Ok(())
    }

    /// The leader of `partition`, asking for metadata (within [`READ_BOUND`]) if it is not known.
    async fn leader(&mut self, partition: u32) -> Option<SocketAddr> {
        if !self.leaders.contains_key(&partition) {
            // No leader known afterwards is the caller's answer; a metadata request that timed
            // out may still be answered late on its connection, so none is reused.
            if tokio::time::timeout(READ_BOUND, self.refresh_leaders()).await.is_err() {
                self.connections.clear();
            }
        }
        self.leaders.get(&partition).copied()
    }
}

/// How one send ended.
enum Sent {
    Acked(u64),
    /// Nothing was written.
    Refused,
    /// The write may have happened.
    Unknown,
}

/// A consumer's Fetch of `partition` of the run's topic from `offset`, waiting up to
/// `max_wait_ms` for a first byte.
fn fetch_request(partition: u32, offset: u64, max_wait_ms: i32) -> FetchRequest {
    let asked = FetchPartition::default()
        .with_partition(partition as i32)
        .with_fetch_offset(offset as i64)
        .with_partition_max_bytes(FETCH_BYTES_MAX);
    let topic = FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str(TOPIC))).with_partitions(vec![asked]);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_topics(vec![topic])
}

/// An acks=all Produce of one record, `value` as text, to `partition` of the run's topic.
fn produce_request(partition: u32, value: u64) -> ProduceRequest {
    let mut batch = BatchBuilder::new();
    batch
        .push(&Record {
            timestamp: odradek_client::clock::wall_clock_ms(),
            key: None,
            value: Some(value.to_string().into_bytes().into()),
            headers: Vec::new(),
        })
        .expect("one small record fits a batch");
    let data = PartitionProduceData::default().with_index(partition as i32).with_records(Some(batch.build()));
    let topic = TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partition_data(vec![data]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(PRODUCE_TIMEOUT_MS).with_topic_data(vec![topic])
}

async fn send_one(client: &mut KafkaClient, partition: u32, value: u64) -> Sent {
    let Some(leader) = client.leader(partition).await else { return Sent::Refused };
    let request = produce_request(partition, value);
    match client.call(leader, ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(request)).await {
        Ok(ResponseKind::Produce(produced)) => {
            let answer = produced.responses.first().and_then(|t| t.partition_responses.first());
            match answer {
                Some(answer) if answer.error_code == NONE => match u64::try_from(answer.base_offset) {
                    Ok(offset) => Sent::Acked(offset),
                    Err(_) => Sent::Unknown,
                },
                Some(answer) => {
                    client.leaders.remove(&partition);
                    if definite(answer.error_code) {
                        Sent::Refused
                    } else {
                        Sent::Unknown
                    }
                }
                None => Sent::Unknown,
            }
        }
        Ok(_) => Sent::Unknown,
        Err(CallError::Unsent(_)) => {
            client.leaders.remove(&partition);
            Sent::Refused
        }
        Err(CallError::Lost(_) | CallError::Closed(_)) => {
            client.leaders.remove(&partition);
            Sent::Unknown
        }
    }
}

/// The Kafka producer: `records` unique values (producer `index` × 10⁶ + i) round robin over the
/// partitions, one send at a time, `interval` apart. Returns (acknowledged, failed) sends.
pub async fn produce(cluster: Arc<SimCluster>, index: u64, records: u64, interval: Duration) -> (u64, u64) {
    let mut client = KafkaClient::new(cluster.clone());
    let (mut ok, mut failed) = (0, 0);
    for i in 0..records {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let value = index * 1_000_000 + i;
        let key = (i % u64::from(cluster.load.partitions)) as u32;
        let process = cluster.process();
        let send = Send { key: u64::from(key), values: vec![value], acks: Acks::All, producer: None, offsets: None };
        let handle = cluster.history().invoke_send(process, send.clone()).expect("history");
        let sent = match tokio::time::timeout(SEND_BOUND, send_one(&mut client, key, value)).await {
            Ok(sent) => sent,
            Err(_) => {
                // The connection may still carry the late answer: never reuse it.
                client.connections.clear();
                client.leaders.clear();
                Sent::Unknown
            }
        };
        let mut history = cluster.history();
        match sent {
            Sent::Acked(offset) => {
                ok += 1;
                history.ok(handle, OpValue::Send(Send { offsets: Some(vec![offset]), ..send }))
            }
            Sent::Refused => {
                failed += 1;
                history.fail(handle, OpValue::Send(send))
            }
            Sent::Unknown => {
                failed += 1;
                history.info(handle, OpValue::Send(send))
            }
        }
        .expect("history");
    }
    (ok, failed)
}

/// The earliest offset of `partition` (ListOffsets at its leader), within [`READ_BOUND`].
async fn earliest(client: &mut KafkaClient, partition: u32) -> Option<u64> {
    let leader = client.leader(partition).await?;
    let asked = ListOffsetsPartition::default().with_partition_index(partition as i32).with_timestamp(-2);
    let topic = ListOffsetsTopic::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partitions(vec![asked]);
    let request = RequestKind::ListOffsets(ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![topic]));
    let answer = tokio::time::timeout(READ_BOUND, client.call(leader, ApiKey::ListOffsets, LIST_OFFSETS_VERSION, request)).await;
    let Ok(Ok(ResponseKind::ListOffsets(listed))) = answer else {
        client.connections.remove(&leader);
        client.leaders.remove(&partition);
        return None;
    };
    let answer = listed.topics.first()?.partitions.first()?;
    if answer.error_code != NONE {
        client.leaders.remove(&partition);
        return None;
    }
    u64::try_from(answer.offset).ok()
}

/// One partition's Fetch from `offset` at its leader: the records (offset, value) and the high
/// watermark, or `None` if it did not answer.
async fn fetch(client: &mut KafkaClient, partition: u32, offset: u64) -> Option<(Vec<(u64, u64)>, u64)> {
    let leader = client.leader(partition).await?;
    let request = fetch_request(partition, offset, FETCH_WAIT_MS);
    let answer = tokio::time::timeout(READ_BOUND, client.call(leader, ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(request))).await;
    let Ok(Ok(ResponseKind::Fetch(fetched))) = answer else {
        client.connections.remove(&leader);
        client.leaders.remove(&partition);
        return None;
    };
    let answer = fetched.responses.first()?.partitions.first()?;
    if answer.error_code != NONE {
        client.leaders.remove(&partition);
        return None;
    }
    let high_watermark = u64::try_from(answer.high_watermark).ok()?;
    let mut records = answer.records.clone().unwrap_or_default();
    let mut read = Vec::new();
    while records.has_remaining() {
        let length = odradek_client::batch::batch_bytes_len(&records).ok()?;
        if length > records.len() {
            break; // A partial batch at the end of the answer (Kafka allows it): fetched again next time.
        }
        let batch = records.split_to(length);
        for record in odradek_client::batch::records(&batch).ok()? {
            let record = record.ok()?;
            let offset = u64::try_from(record.offset).ok()?;
            // A record that is not one of ours: u64::MAX is never sent, so L3 reports it.
            let value = record.value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
            read.push((offset, value));
        }
    }
    // Whole batches come back: drop the records below the fetch offset (Kafka clients do too).
    read.retain(|&(o, _)| o >= offset);
    Some((read, high_watermark))
}

/// The Kafka consumer: assigned every partition from its earliest offset (ListOffsets), polls
/// until `deadline`.
pub async fn consume(cluster: Arc<SimCluster>, deadline: tokio::time::Instant) {
    let mut client = KafkaClient::new(cluster.clone());
    let keys: Vec<u64> = (0..u64::from(cluster.load.partitions)).collect();
    let process = cluster.process();
    let assign = cluster.history().invoke(process, OpF::Assign, OpValue::Keys(Keys { keys: keys.clone() })).expect("history");
    let mut positions = BTreeMap::new();
    for partition in 0..cluster.load.partitions {
        loop {
            if let Some(offset) = earliest(&mut client, partition).await {
                positions.insert(partition, offset);
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                cluster.history().fail(assign, OpValue::Keys(Keys { keys })).expect("history");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    cluster.history().ok(assign, OpValue::Keys(Keys { keys })).expect("history");
    let (mut polls_ok, mut read) = (0u64, 0usize);
    while tokio::time::Instant::now() < deadline {
        let handle = cluster.history().invoke_poll(process).expect("history");
        let mut poll = Poll::default();
        let mut answered = 0;
        for partition in 0..cluster.load.partitions {
            let Some((records, high_watermark)) = fetch(&mut client, partition, positions[&partition]).await else { continue };
            answered += 1;
            let key = u64::from(partition);
            poll.hw.insert(key, high_watermark);
            if let Some(&(last, _)) = records.last() {
                positions.insert(partition, last + 1);
            }
            if !records.is_empty() {
                poll.records.insert(key, records);
            }
        }
        if answered == 0 {
            cluster.history().fail(handle, OpValue::Poll(Poll::default())).expect("history");
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            polls_ok += 1;
            read += poll.records.values().map(Vec::len).sum::<usize>();
            cluster.history().ok(handle, OpValue::Poll(poll)).expect("history");
        }
    }
    cluster.note(format!("Kafka consumer: {polls_ok} polls ok, {read} records read"));
}

/// What one intruder attempt over the Kafka listener came to (A1, `crate::security`).
#[derive(Debug)]
pub enum Attempt {
    /// It took effect: a produce acknowledged, or a fetch that returned records.
    Succeeded,
    /// Refused: an authentication or authorization error code, or the connection closed by the
    /// node right after it answered ApiVersions on it (Kafka's answer to a request before a
    /// login: the node refuses to serve it, `server/src/kafka/sasl.rs`).
    Refused,
    /// Anything else: a fault of the run (no connection, no answer, a leader moved).
    Inconclusive,
}

/// Kafka's TOPIC_AUTHORIZATION_FAILED and CLUSTER_AUTHORIZATION_FAILED.
const AUTHORIZATION_FAILED: [i16; 2] = [29, 31];

/// One intruder attempt at `address`'s Kafka listener: ApiVersions, the login (`login`, or none:
/// anonymous), then a Produce of `value` to partition 0 of the run's topic (`Some`) or a Fetch
/// of partition 0 from offset 0 (`None`); one connection, within [`READ_BOUND`] per request.
pub async fn intruder_attempt(address: SocketAddr, login: Option<&Login>, produce: Option<u64>) -> Attempt {
    let Ok(Ok(mut connection)) = tokio::time::timeout(READ_BOUND, KafkaConnection::open(address)).await else {
        return Attempt::Inconclusive;
    };
    if !matches!(tokio::time::timeout(READ_BOUND, connection.api_versions()).await, Ok(true)) {
        return Attempt::Inconclusive;
    }
    if let Some(login) = login {
        match tokio::time::timeout(READ_BOUND, connection.login(login)).await {
            Ok(Ok(())) => {}
            Ok(Err(LoginError::Refused(SASL_AUTHENTICATION_FAILED, _))) => return Attempt::Refused,
            _ => return Attempt::Inconclusive,
        }
    }
    let (api_key, version, request) = match produce {
        Some(value) => (ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(produce_request(0, value))),
        None => (ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(fetch_request(0, 0, 0))),
    };
    let bound = if produce.is_some() { SEND_BOUND } else { READ_BOUND };
    let code = match tokio::time::timeout(bound, connection.call(api_key, version, request)).await {
        Ok(Err(CallError::Closed(_))) => return Attempt::Refused,
        Ok(Ok(ResponseKind::Produce(produced))) => {
            produced.responses.first().and_then(|t| t.partition_responses.first()).map(|p| (p.error_code, false))
        }
        Ok(Ok(ResponseKind::Fetch(fetched))) => fetched
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| (p.error_code, p.records.as_ref().is_some_and(|r| !r.is_empty()))),
        _ => None,
    };
    match code {
        Some((NONE, _)) if produce.is_some() => Attempt::Succeeded,
        Some((NONE, true)) => Attempt::Succeeded,
        Some((code, _)) if AUTHORIZATION_FAILED.contains(&code) => Attempt::Refused,
        _ => Attempt::Inconclusive,
    }
}
