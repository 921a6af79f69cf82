//! `--client kafka`: producers and consumers that reach the cluster through an existing Kafka
//! client library (rskafka) over the nodes' Kafka listeners, so the shared checker judges the
//! Kafka listener's acks and ordering under the same faults as the native client.
//!
//! What goes through Kafka: every `send` (Produce, acks=all) and every consumer `poll` (Fetch),
//! with Metadata for leaders done by the library. What stays native: topic creation, the leader
//! observer and the final drain (the drain reads the same log, so a record the Kafka listener
//! acknowledged and lost is still missing from it: L6 / L7).
//!
//! Outcome rules (CHECKLISTS "Harness and simulator requirements", as in [`super::workload`]):
//! * the library's own retries are off ([`no_retries`]): each send is exactly one Produce request,
//!   so its error alone says whether the value can be in the log;
//! * [`is_definite`]: a refusal the Kafka listener gives only before proposing
//!   (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, ... : `server/src/kafka/errors.rs`), an invalid
//!   request, or no connection at all (the request was never written) completes the send `fail`;
//!   anything else (REQUEST_TIMED_OUT, a broken connection after the request was written, a
//!   response that does not parse, no answer within [`SEND_TIMEOUT`]) completes it `info` and
//!   retires the process;
//! * a consumer keeps its positions itself (one per key, moved only past records it recorded), so
//!   a failed fetch moves nothing and needs no rewind; a poll fetches every key at once and is
//!   `ok` with the keys that answered (a key that did not answer contributes nothing and keeps its
//!   position: no L8 skip can come from it), `fail` if none answered, `info` if the whole poll
//!   overran the harness's bound.
//!
//! rskafka has no idempotent producer: sends carry no producer id (P2 and the idempotence checks
//! do not apply), and a duplicate is a server fault since the client never resends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rskafka::client::error::{Error as KafkaError, ProtocolError, RequestError};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use tokio::sync::watch;

use super::workload::{sleep_or_stop, Recorder, WorkloadTarget, OP_TIMEOUT_MARGIN, RETRY_PAUSE};
use crate::history::{Acks, Keys, OpF, OpValue, Poll, Process, Send, Value};

/// Longest a Kafka send may take before the harness records it `info` (the Produce request's own
/// timeout is the library's 30 s, so this is what bounds a send to a paused or cut-off leader).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one Fetch waits on the server for records.
pub const FETCH_WAIT_MS: i32 = 200;
/// Bound on one key's fetch within a poll (a paused leader never answers).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes one Fetch asks for per key.
pub const FETCH_BYTES_MAX: i32 = 1 << 20;

/// Library retries off: the first retriable error ends the call (a zero deadline), so one call
/// is one request and [`is_definite`] can judge its outcome.
pub fn no_retries() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        base: 2.0,
        deadline: Some(Duration::ZERO),
    }
}

/// Whether a failed Produce certainly appended nothing (see the module comment). Unknown shapes
/// are indefinite: claiming `fail` for a write that happened would be a false L3/L6 verdict.
pub fn is_definite(error: &KafkaError) -> bool {
    match error {
        // A retriable error cut short by the zero deadline: judge the error it wraps.
        KafkaError::RetryFailed(rskafka::BackoffError::DeadlineExceded { source, .. }) => {
            source.downcast_ref::<KafkaError>().is_some_and(is_definite)
        }
        // No connection to the leader (or no metadata to find it): nothing was written.
        KafkaError::Connection(_) => true,
        // Refused before any byte went out.
        KafkaError::Request(RequestError::NoVersionMatch { .. }) => true,
        KafkaError::ServerError { protocol_error, .. } => definite_code(*protocol_error),
        _ => false,
    }
}

/// Kafka error codes the Kafka listener answers a Produce with only when nothing was proposed
/// (`server/src/kafka/errors.rs`: refusals before proposing and invalid requests). Its only
/// unknown-outcome codes are REQUEST_TIMED_OUT and UNKNOWN_SERVER_ERROR, which are not here.
fn definite_code(code: ProtocolError) -> bool {
    use ProtocolError as P;
    matches!(
        code,
        P::NotLeaderOrFollower
            | P::LeaderNotAvailable
            | P::UnknownTopicOrPartition
            | P::NotController
            | P::KafkaStorageError
            | P::CorruptMessage
            | P::MessageTooLarge
            | P::InvalidTopicException
            | P::InvalidRequiredAcks
            | P::InvalidRequest
            | P::InvalidRecord
            | P::UnsupportedVersion
            | P::UnsupportedForMessageFormat
            | P::TopicAuthorizationFailed
            | P::ClusterAuthorizationFailed
    )
}

/// The Kafka addresses clients bootstrap from.
fn kafka_bootstrap(target: &WorkloadTarget) -> Vec<String> {
    target.kafka.clone().expect("a Kafka worker runs only with --client kafka")
}

/// A new library client (metadata from any node), within [`OP_TIMEOUT_MARGIN`].
async fn new_client(target: &WorkloadTarget, process: Process) -> Option<Client> {
    let mut builder = ClientBuilder::new(kafka_bootstrap(target)).client_id(format!("jepsen-kafka-{process}")).backoff_config(no_retries());
    // `--tls`: Kafka's SSL security protocol, trusting the run's CA (the nodes' certificates
    // name 127.0.0.1, where the listeners and the fault proxies are).
    if let Some(tls) = &target.tls {
        builder = builder.tls_config(tls.config().ok()?);
    }
    // `--secure`: SASL/SCRAM as the workload's own user (Kafka's SASL_PLAINTEXT, or SASL_SSL
    // with `--tls`), the mechanism the native client uses.
    if let Some(sasl) = &target.sasl {
        let credentials = rskafka::client::Credentials { username: sasl.user.clone(), password: sasl.password.clone() };
        builder = builder.sasl_config(match sasl.mechanism {
            odradek_client::scram::Mechanism::Sha256 => rskafka::client::SaslConfig::ScramSha256(credentials),
            odradek_client::scram::Mechanism::Sha512 => rskafka::client::SaslConfig::ScramSha512(credentials),
        });
    }
    tokio::time::timeout(OP_TIMEOUT_MARGIN, builder.build()).await.ok()?.ok()
}

/// A partition client for `key` (it finds the leader now), within [`OP_TIMEOUT_MARGIN`].
async fn partition_client(client: &Client, target: &WorkloadTarget, key: u32) -> Option<PartitionClient> {
    let partition = i32::try_from(key).expect("keys are partition numbers");
    let made = client.partition_client(target.topic.clone(), partition, UnknownTopicHandling::Error);
    tokio::time::timeout(OP_TIMEOUT_MARGIN, made).await.ok()?.ok()
}

/// One Kafka producer worker: as [`super::workload::producer_worker`], one value at a time to
/// `key`, `interval` apart, each value one Produce request with acks=all.
pub async fn producer_worker(
    recorder: Arc<Recorder>,
    target: WorkloadTarget,
    key: u32,
    interval: Duration,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    assert_eq!(target.acks, Acks::All, "the Kafka client produces with acks=all only");
    let mut rng = SmallRng::seed_from_u64(seed);
    if sleep_or_stop(interval.mul_f64(rng.gen::<f64>()), &mut stop).await {
        return;
    }
    while !*stop.borrow() {
        let process = recorder.new_process();
        let client = match new_client(&target, process).await {
            Some(client) => client,
            None => {
                // No op was recorded for this process: it simply never acts.
                if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let mut partition = None;
        let mut tick = Instant::now();
        loop {
            tick += interval;
            let now = Instant::now();
            if tick < now {
                tick = now; // Behind schedule (a slow op): do not burst to catch up.
            }
            if sleep_or_stop(tick - now, &mut stop).await {
                return;
            }
            // The library finds the new leader itself after NOT_LEADER_OR_FOLLOWER. A partition
            // client that could not be made (no leader yet, or the library's cached connection
            // is to a node that was killed or paused) ends this client: the next process starts
            // from a new one. A run that kept it made not one send in 22 s (a local test run
            // under load, 2026-12-07), likely every producer retrying through a first client
            // whose cached connection never recovered.
            if partition.is_none() {
                partition = partition_client(&client, &target, key).await;
            }
            let Some(partition) = &partition else { break };
            if !send_one(&recorder, &target, partition, process, key).await {
                break; // Retired: carry on as a new process.
            }
        }
        if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
            return;
        }
    }
}

/// One Kafka send op; returns false if it ended `info` (the process is retired).
async fn send_one(recorder: &Recorder, target: &WorkloadTarget, partition: &PartitionClient, process: Process, key: u32) -> bool {
    let value = recorder.new_value();
    let send = Send { key: u64::from(key), values: vec![value], acks: target.acks, producer: None, offsets: None };
    let handle = recorder.history().invoke_send(process, send.clone()).expect("a producer process has one op at a time");
    let record = Record {
        key: None,
        value: Some(value.to_string().into_bytes()),
        headers: BTreeMap::new(),
        // The checks never read timestamps; a constant keeps the harness off the wall clock.
        timestamp: rskafka::chrono::DateTime::UNIX_EPOCH,
    };
    let outcome = tokio::time::timeout(SEND_TIMEOUT, partition.produce(vec![record], Default::default())).await;
    let mut history = recorder.history();
    match outcome {
        Ok(Ok(offsets)) => {
            assert_eq!(offsets.len(), 1, "one record sent, one offset acknowledged");
            let offsets = offsets.iter().map(|&o| u64::try_from(o).expect("acknowledged offsets are not negative")).collect();
            history.ok(handle, OpValue::Send(Send { offsets: Some(offsets), ..send })).expect("completes its own invoke");
            true
        }
        Ok(Err(error)) if is_definite(&error) => {
            history.fail(handle, OpValue::Send(send)).expect("completes its own invoke");
            true
        }
        Ok(Err(_)) | Err(_) => {
            history.info(handle, OpValue::Send(send)).expect("completes its own invoke");
            false
        }
    }
}

/// A Kafka consumer process: one partition client per key and its own positions.
struct KafkaConsumer {
    partitions: BTreeMap<u32, Arc<PartitionClient>>,
    /// The next offset to fetch, per key.
    positions: BTreeMap<u32, i64>,
}

/// A new consumer process positioned at the beginning of every key, with an `assign` op (ok once
/// every key's partition client found its leader, fail otherwise: the process is abandoned).
async fn new_consumer(recorder: &Recorder, target: &WorkloadTarget, process: Process) -> Option<KafkaConsumer> {
    let keys = OpValue::Keys(Keys { keys: target.all_keys() });
    let handle = recorder.history().invoke(process, OpF::Assign, keys.clone()).expect("a new process is idle");
    let mut partitions = BTreeMap::new();
    if let Some(client) = new_client(target, process).await {
        for key in 0..target.keys {
            let Some(partition) = partition_client(&client, target, key).await else { break };
            partitions.insert(key, Arc::new(partition));
        }
    }
    let mut history = recorder.history();
    if partitions.len() < target.keys as usize {
        history.fail(handle, keys).expect("completes its own invoke");
        return None;
    }
    history.ok(handle, keys).expect("completes its own invoke");
    let positions = (0..target.keys).map(|k| (k, 0)).collect();
    Some(KafkaConsumer { partitions, positions })
}

/// How a Kafka poll ended.
enum Polled {
    Ok,
    Fail,
    /// A key's offset is out of range: the process stops (a new one starts from the beginning).
    OutOfRange,
    Info,
}

/// One poll op: a Fetch of every key at once.
async fn poll_one(recorder: &Recorder, consumer: &mut KafkaConsumer, process: Process) -> Polled {
    let handle = recorder.history().invoke_poll(process).expect("a consumer process has one op at a time");
    let fetches: Vec<_> = consumer
        .partitions
        .iter()
        .map(|(&key, partition)| {
            let (partition, offset) = (partition.clone(), consumer.positions[&key]);
            let fetch = tokio::spawn(async move {
                tokio::time::timeout(FETCH_TIMEOUT, partition.fetch_records(offset, 1..FETCH_BYTES_MAX, FETCH_WAIT_MS)).await
            });
            (key, fetch)
        })
        .collect();
    let gathered = tokio::time::timeout(FETCH_TIMEOUT + OP_TIMEOUT_MARGIN, async {
        let mut gathered = Vec::with_capacity(fetches.len());
        for (key, fetch) in fetches {
            gathered.push((key, fetch.await));
        }
        gathered
    })
    .await;
    let mut history = recorder.history();
    let Ok(gathered) = gathered else {
        history.info(handle, OpValue::Poll(Poll::default())).expect("completes its own invoke");
        return Polled::Info;
    };
    let mut poll = Poll::default();
    let (mut answered, mut out_of_range) = (0, false);
    for (key, fetched) in gathered {
        let records = match fetched {
            Ok(Ok(Ok((records, _high_watermark)))) => records,
            Ok(Ok(Err(KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }))) => {
                out_of_range = true;
                continue;
            }
            _ => continue,
        };
        answered += 1;
        let position = consumer.positions.get_mut(&key).expect("a position per assigned key");
        for record in records {
            // A record that is not one of ours cannot be written by this harness: u64::MAX is
            // never a value it sends, so the checker reports it as L3 unexpected.
            let value = record
                .record
                .value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<Value>().ok())
                .unwrap_or(Value::MAX);
            let offset = u64::try_from(record.offset).expect("fetched offsets are not negative");
            poll.records.entry(u64::from(key)).or_default().push((offset, value));
            *position = (*position).max(record.offset + 1);
        }
    }
    if answered == 0 {
        history.fail(handle, OpValue::Poll(Poll::default())).expect("completes its own invoke");
        return if out_of_range { Polled::OutOfRange } else { Polled::Fail };
    }
    history.ok(handle, OpValue::Poll(poll)).expect("completes its own invoke");
    if out_of_range {
        Polled::OutOfRange
    } else {
        Polled::Ok
    }
}

/// Pause after a poll no key answered, before the next one.
pub const FAILED_POLL_PAUSE: Duration = Duration::from_millis(100);

/// One Kafka consumer worker: polls every key continuously from the beginning.
pub async fn consumer_worker(recorder: Arc<Recorder>, target: WorkloadTarget, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let process = recorder.new_process();
        let Some(mut consumer) = new_consumer(&recorder, &target, process).await else {
            if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
                return;
            }
            continue;
        };
        while !*stop.borrow() {
            match poll_one(&recorder, &mut consumer, process).await {
                Polled::Ok => {}
                Polled::Fail => {
                    if sleep_or_stop(FAILED_POLL_PAUSE, &mut stop).await {
                        return;
                    }
                }
                Polled::OutOfRange | Polled::Info => break,
            }
        }
        if sleep_or_stop(RETRY_PAUSE, &mut stop).await {
            return;
        }
    }
}

/// `--offset-delete` (C9): raw Kafka requests over a node's Kafka listener with the
/// `kafka-protocol` codecs (the server's own), for what neither rskafka nor the native client
/// sends: FindCoordinator (v4, to find a group's coordinator) and OffsetDelete (v0). One
/// request at a time on a connection of its own, reached as the Kafka client reaches the
/// listeners ([`Access`]): TLS under `--tls`, a SASL/SCRAM login as the workload's user under
/// `--secure`, with the client crate's TLS handshake and Kafka login
/// (`odradek_client::tls::ClientTls::handshake`, `odradek_client::kafka`).
pub mod raw {
    use std::time::Duration;

    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    use kafka_protocol::messages::{
        ApiKey, FindCoordinatorRequest, GroupId, OffsetDeleteRequest, OffsetDeleteResponse, RequestKind, ResponseKind, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use odradek_client::connection::SaslCredentials;
    use odradek_client::kafka::{CallError, KafkaStream};
    use odradek_client::tls::{ClientTls, Stream};
    use tokio::net::TcpStream;

    use super::super::workload::WorkloadTarget;
    use crate::history::Key;

    const FIND_COORDINATOR_VERSION: i16 = 4;
    const OFFSET_DELETE_VERSION: i16 = 0;
    /// Largest answer accepted (these answers are small).
    const RESPONSE_BYTES_MAX: usize = 1 << 20;
    const CLIENT_ID: &str = "odradek-jepsen";

    /// Kafka error codes this module reads (Kafka's numbering).
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

    /// How a connection reaches a Kafka listener: as the run's Kafka client does (TLS trusting
    /// the run's CA with `--tls`, logged in as the workload's user with `--secure`).
    #[derive(Clone, Debug, Default)]
    pub struct Access {
        pub tls: Option<ClientTls>,
        pub sasl: Option<SaslCredentials>,
    }

    impl Access {
        /// The workers' TLS and login.
        pub fn of(target: &WorkloadTarget) -> Access {
            Access { tls: target.tls.clone(), sasl: target.sasl.clone() }
        }
    }

    /// Why a request got no answer.
    #[derive(Debug)]
    pub enum RawError {
        /// Nothing of the request left this client (no connection, no TLS session or no login).
        Unsent(String),
        /// The request may have reached the node.
        Lost(String),
    }

    /// A connection to `address` as `access` says, ready for requests.
    async fn open(address: &str, access: &Access) -> Result<KafkaStream<Box<dyn Stream>>, String> {
        let stream = TcpStream::connect(address).await.map_err(|e| format!("connect {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Stream> = match &access.tls {
            None => Box::new(stream),
            Some(tls) => Box::new(tls.handshake(address, stream).await.map_err(|e| format!("{address}: {e}"))?),
        };
        let mut stream = KafkaStream::new(stream, CLIENT_ID, RESPONSE_BYTES_MAX);
        if let Some(login) = &access.sasl {
            stream.login(login).await.map_err(|e| format!("login at {address}: {e}"))?;
        }
        Ok(stream)
    }

    /// One request to `address` on a fresh connection (`access`): the connection (TLS, login)
    /// bounded by `timeout`, then the request and its answer bounded by `timeout`.
    pub async fn call(
        address: &str,
        access: &Access,
        api_key: ApiKey,
        version: i16,
        request: RequestKind,
        timeout: Duration,
    ) -> Result<ResponseKind, RawError> {
        let mut stream = match tokio::time::timeout(timeout, open(address, access)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(why)) => return Err(RawError::Unsent(why)),
            Err(_) => return Err(RawError::Unsent(format!("{address}: no connection within {timeout:?}"))),
        };
        match tokio::time::timeout(timeout, stream.call(api_key, version, request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(CallError::Unsent(why))) => Err(RawError::Unsent(why)),
            Ok(Err(error @ (CallError::Lost(_) | CallError::Closed(_)))) => Err(RawError::Lost(error.to_string())),
            Err(_) => Err(RawError::Lost(format!("{api_key:?}: no answer within {timeout:?}"))),
        }
    }

    /// The Kafka address (`host:port`) of `group`'s coordinator as the node at `address` names
    /// it; `None` when it named none (or did not answer).
    pub async fn find_coordinator(address: &str, access: &Access, group: &str, timeout: Duration) -> Option<String> {
        let request =
            FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let answer =
            call(address, access, ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION, RequestKind::FindCoordinator(request), timeout).await;
        let Ok(ResponseKind::FindCoordinator(found)) = answer else { return None };
        let coordinator = found.coordinators.first().filter(|c| c.error_code == NONE && c.port > 0)?;
        Some(format!("{}:{}", coordinator.host.as_str(), coordinator.port))
    }

    /// How one OffsetDelete ended, in the history's terms.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Deleted {
        /// Answered per key: `deleted` (NONE) and `refused` (GROUP_SUBSCRIBED_TO_TOPIC, or an
        /// unknown partition: kept).
        Answered { deleted: Vec<Key>, refused: Vec<Key> },
        /// Refused as a whole with a code given before anything was removed (the coordinator
        /// family, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, INVALID_GROUP_ID,
        /// GROUP_AUTHORIZATION_FAILED), or never sent: removed nothing.
        Failed(String),
        /// Anything else: may have removed any key asked.
        Unknown(String),
    }

    /// Top-level OffsetDelete codes that mean nothing was removed: COORDINATOR_LOAD_IN_PROGRESS
    /// (14), COORDINATOR_NOT_AVAILABLE (15), NOT_COORDINATOR (16), INVALID_GROUP_ID (24),
    /// GROUP_AUTHORIZATION_FAILED (30), NON_EMPTY_GROUP (68), GROUP_ID_NOT_FOUND (69). Not here:
    /// REQUEST_TIMED_OUT (7), UNKNOWN_SERVER_ERROR (-1) and anything else.
    pub fn definite_group_code(code: i16) -> bool {
        matches!(code, 14 | 15 | 16 | 24 | 30 | 68 | 69)
    }

    /// Judges an OffsetDelete answer for `keys` of `topic` (see [`Deleted`]): every key must be
    /// answered, each with NONE, GROUP_SUBSCRIBED_TO_TOPIC or UNKNOWN_TOPIC_OR_PARTITION;
    /// any other shape is `Unknown`.
    pub fn judge(answer: &OffsetDeleteResponse, topic: &str, keys: &[Key]) -> Deleted {
        if answer.error_code != NONE {
            let name = format!("kafka error {}", answer.error_code);
            return if definite_group_code(answer.error_code) { Deleted::Failed(name) } else { Deleted::Unknown(name) };
        }
        let (mut deleted, mut refused) = (Vec::new(), Vec::new());
        for &key in keys {
            let code = answer
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| i64::from(p.partition_index) == key as i64)
                .map(|p| p.error_code);
            match code {
                Some(NONE) => deleted.push(key),
                Some(GROUP_SUBSCRIBED_TO_TOPIC | UNKNOWN_TOPIC_OR_PARTITION) => refused.push(key),
                Some(code) => return Deleted::Unknown(format!("key {key}: kafka error {code}")),
                None => return Deleted::Unknown(format!("key {key}: not answered")),
            }
        }
        Deleted::Answered { deleted, refused }
    }

    /// One OffsetDelete of `group`'s committed offsets of `keys` (partitions of `topic`) at the
    /// coordinator `address` (reached as `access` says), within `timeout`.
    pub async fn offset_delete(address: &str, access: &Access, group: &str, topic: &str, keys: &[Key], timeout: Duration) -> Deleted {
        let partitions = keys.iter().map(|&k| OffsetDeleteRequestPartition::default().with_partition_index(k as i32)).collect();
        let asked =
            OffsetDeleteRequestTopic::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(partitions);
        let request =
            OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_string(group.to_string()))).with_topics(vec![asked]);
        match call(address, access, ApiKey::OffsetDelete, OFFSET_DELETE_VERSION, RequestKind::OffsetDelete(request), timeout).await {
            Ok(ResponseKind::OffsetDelete(answer)) => judge(&answer, topic, keys),
            Ok(_) => Deleted::Unknown("an OffsetDelete got another answer".into()),
            Err(RawError::Unsent(why)) => Deleted::Failed(why),
            Err(RawError::Lost(why)) => Deleted::Unknown(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: ProtocolError) -> KafkaError {
        KafkaError::ServerError {
            protocol_error: code,
            error_message: None,
            request: rskafka::client::error::RequestContext::Partition("jepsen".into(), 0),
            response: None,
            is_virtual: false,
        }
    }

    fn cut_short(error: KafkaError) -> KafkaError {
        KafkaError::RetryFailed(rskafka::BackoffError::DeadlineExceded { deadline: Duration::ZERO, source: Box::new(error) })
    }

    /// The outcome table of the module comment: refusals before proposing are `fail`, unknown
    /// outcomes `info`, also when the library wrapped them in its retry error.
    #[test]
    fn kafka_errors_map_to_definite_and_indefinite_outcomes() {
        for refused in [ProtocolError::NotLeaderOrFollower, ProtocolError::LeaderNotAvailable, ProtocolError::InvalidRequest] {
            assert!(is_definite(&server(refused)), "{refused:?}");
            assert!(is_definite(&cut_short(server(refused))), "{refused:?} after the zero deadline");
        }
        for unknown in [ProtocolError::RequestTimedOut, ProtocolError::UnknownServerError, ProtocolError::NetworkException] {
            assert!(!is_definite(&server(unknown)), "{unknown:?}");
            assert!(!is_definite(&cut_short(server(unknown))), "{unknown:?} after the zero deadline");
        }
        let broken = RequestError::IO(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(!is_definite(&KafkaError::Request(broken)), "a connection broken after the request was written");
        assert!(!is_definite(&KafkaError::Timeout));
        assert!(!is_definite(&KafkaError::InvalidResponse("garbled".into())));
    }

    /// `--offset-delete`: an OffsetDelete answer splits its keys into deleted and refused; a
    /// refusal of the whole request before anything was removed is `Failed`; an unknown code,
    /// an unanswered key or a timeout is `Unknown`.
    #[test]
    fn offset_delete_answers_map_to_ok_fail_and_info() {
        use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
        use kafka_protocol::messages::{OffsetDeleteResponse, TopicName};
        use kafka_protocol::protocol::StrBytes;
        use raw::{judge, Deleted};
        let answer = |codes: &[(i32, i16)]| {
            let partitions =
                codes.iter().map(|&(p, c)| OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(c)).collect();
            let topic =
                OffsetDeleteResponseTopic::default().with_name(TopicName(StrBytes::from_static_str("t"))).with_partitions(partitions);
            OffsetDeleteResponse::default().with_topics(vec![topic])
        };
        assert_eq!(
            judge(&answer(&[(0, 0), (1, raw::GROUP_SUBSCRIBED_TO_TOPIC), (2, 0)]), "t", &[0, 1, 2]),
            Deleted::Answered { deleted: vec![0, 2], refused: vec![1] }
        );
        assert!(matches!(judge(&answer(&[(0, 0)]), "t", &[0, 1]), Deleted::Unknown(_)), "a key not answered");
        assert!(matches!(judge(&answer(&[(0, 7)]), "t", &[0]), Deleted::Unknown(_)), "REQUEST_TIMED_OUT on a key");
        assert!(matches!(judge(&answer(&[(0, 0)]), "u", &[0]), Deleted::Unknown(_)), "another topic's answer");
        assert!(matches!(judge(&OffsetDeleteResponse::default().with_error_code(16), "t", &[0]), Deleted::Failed(_)), "NOT_COORDINATOR");
        assert!(matches!(judge(&OffsetDeleteResponse::default().with_error_code(7), "t", &[0]), Deleted::Unknown(_)), "REQUEST_TIMED_OUT");
    }
}
