//! The producer: batches records per partition, sends them to partition leaders, retries, and
//! resolves each record's future with its offset.
//!
//! Shape: [`Producer::send`] picks the partition ([`Partitioner`]) and hands the record to that
//! partition's task, one task per partition written to. The task owns everything about its
//! partition — the open batch, sealed batches awaiting acknowledgement, the requests in flight,
//! the producer id and sequence numbers — in one loop, so no lock guards the ordering logic.
//!
//! Invariants of a partition task:
//! - Batches are sealed, sequenced and sent in the order their records were sent; the requests
//!   in flight (at most `in_flight_max`) are always the oldest unacknowledged batches, and
//!   outcomes are handled in the order the requests were sent.
//! - After a failed attempt no new request is sent until every request in flight has its
//!   outcome; then, after a backoff, sending resumes from the oldest unacknowledged batch. An
//!   acknowledged batch is never sent again.
//! - A retry sends the same bytes (same producer id, epoch and sequence), so the leader can
//!   de-duplicate it. Bytes are only re-stamped (new producer id, sequences from 0) for batches
//!   none of whose attempts can have been appended.
//! - A batch any of whose attempts had an unknown outcome ends `Ok` or indefinite
//!   ([`ClientError::DeliveryUnknown`]), never with a definite error.
//!
//! Limits: `buffer_bytes` bounds the bytes of records sent but not yet resolved (`send` waits for
//! room); `batch_bytes` bounds a request; `delivery_timeout` bounds how long a record may wait.
//!
//! Cost sketch: per record, one copy into the batch buffer and a varint header; per batch, one
//! CRC-32C pass (several GB/s) and one request. With linger 5 ms and 256 KiB batches, one
//! partition under load sends ~5 requests in flight of 256 KiB: throughput is bound by the
//! leader's commit latency × 5 batches rather than by client CPU.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::batch::{self, BatchBuilder, BatchError, Compression, Header, Record, BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use crate::clock::wall_clock_ms;
use crate::cluster::{leader_hint, Backoff, ClusterConfig, ClusterSession};
use crate::connection::ResponseFuture;
use crate::error::{ClientError, Result};
use crate::partitioner::Partitioner;
use crate::wire::proto::{
    self, ErrorCode, InitProducerIdRequest, ProduceRequest, Request_oneof_body as RequestBody, Response,
    Response_oneof_body as ResponseBody,
};

/// Largest `in_flight_max` accepted (Kafka's limit for idempotent producers is 5).
pub const IN_FLIGHT_MAX: usize = 16;
/// Added to `request_timeout` for the client's own timer, so the server's REQUEST_TIMED_OUT
/// answer (sent after `request_timeout`) normally arrives before the client gives up on it.
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);
/// Bytes a record is charged against `buffer_bytes` beyond its key, value and headers.
const RECORD_OVERHEAD_BYTES: usize = 32;

/// When the leader answers a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// After the batch is committed (a quorum has it on disk). Required for idempotence.
    #[default]
    All,
    /// After the leader's own fsync.
    Leader,
    /// Never: the record future resolves once the request is queued, with no offset.
    None,
}

impl Acks {
    fn to_wire(self) -> proto::Acks {
        match self {
            Acks::All => proto::Acks::ACKS_ALL,
            Acks::Leader => proto::Acks::ACKS_LEADER,
            Acks::None => proto::Acks::ACKS_NONE,
        }
    }
}

/// Producer settings; start from `ProducerConfig::default()`.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub cluster: ClusterConfig,
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// Largest batch (one request), header included; at most [`BATCH_BYTES_MAX`]. A single
    /// larger record is sent alone in a batch of up to `BATCH_BYTES_MAX`.
    pub batch_bytes: usize,
    /// Requests in flight per partition, 1..=[`IN_FLIGHT_MAX`]; forced to 1 without idempotence
    /// (otherwise a retry could overtake a later batch).
    pub in_flight_max: usize,
    /// Bound on one produce attempt (sent to the server as its timeout).
    pub request_timeout: Duration,
    /// Bound on a record's whole life, retries included, from `send` to its outcome.
    pub delivery_timeout: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// How long `send` waits for a topic the metadata does not list (yet): a topic just
    /// created may not have reached the node asked. Kafka's producer waits the same way,
    /// bounded by `max.block.ms`. Then `send` fails with UNKNOWN_TOPIC_OR_PARTITION.
    pub topic_wait: Duration,
    /// Producer id and sequence numbers, so that retries are never appended twice.
    pub idempotence: bool,
    /// Bytes of records sent but not yet resolved; `send` waits beyond this.
    pub buffer_bytes: usize,
    /// Codec for the records of each batch (Kafka's `compression.type`); none by default.
    /// `batch_bytes` bounds a batch before compression. A batch that compression would not make
    /// smaller is sent uncompressed ([`batch::compress_batch`]).
    pub compression: Compression,
    /// Planted bugs (the simulator's catalogue); off by default and in every normal build.
    pub planted: crate::planted::Planted,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            cluster: ClusterConfig::default(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_bytes: 256 * 1024,
            in_flight_max: 5,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            topic_wait: Duration::from_secs(10),
            idempotence: true,
            buffer_bytes: 32 * 1024 * 1024,
            compression: Compression::None,
            planted: crate::planted::Planted::default(),
        }
    }
}

impl ProducerConfig {
    /// Checks the settings and applies the forced ones (`in_flight_max` 1 without idempotence).
    fn validated(mut self) -> Result<ProducerConfig> {
        let invalid = |message: String| Err(ClientError::InvalidArgument(message));
        if self.idempotence && self.acks != Acks::All {
            return invalid(format!("idempotence needs acks=All, not {:?}", self.acks));
        }
        if self.batch_bytes > BATCH_BYTES_MAX || self.batch_bytes < BATCH_HEADER_BYTES + batch::RECORD_BYTES_MIN {
            return invalid(format!(
                "batch_bytes {} outside {}..={BATCH_BYTES_MAX}",
                self.batch_bytes,
                BATCH_HEADER_BYTES + batch::RECORD_BYTES_MIN
            ));
        }
        if self.in_flight_max == 0 || self.in_flight_max > IN_FLIGHT_MAX {
            return invalid(format!("in_flight_max {} outside 1..={IN_FLIGHT_MAX}", self.in_flight_max));
        }
        if self.buffer_bytes < BATCH_BYTES_MAX || self.buffer_bytes > u32::MAX as usize {
            return invalid(format!("buffer_bytes {} outside {BATCH_BYTES_MAX}..=u32::MAX", self.buffer_bytes));
        }
        if self.retry_backoff > self.retry_backoff_max {
            return invalid("retry_backoff above retry_backoff_max".into());
        }
        if !self.idempotence {
            self.in_flight_max = 1;
        }
        Ok(self)
    }
}

/// A record to send. `partition: None` lets the partitioner choose (by key, or sticky).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` takes the wall clock at `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record with no headers, timestamped at `send`.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord { topic: topic.into(), partition: None, key: None, value: value.into(), headers: Vec::new(), timestamp: None }
    }

    /// Sets the key (which then chooses the partition, unless one is set).
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// Sends to this partition, whatever the key.
    pub fn partition(mut self, partition: u32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: u32,
    /// The record's offset; `None` with acks=None, where the server never says.
    pub offset: Option<u64>,
    /// The record's timestamp: the broker's append time for LogAppendTime topics, else its own.
    pub timestamp: i64,
}

/// The outcome of one sent record; resolves when its batch is acknowledged or given up.
pub struct DeliveryFuture {
    outcome: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.outcome).poll(cx).map(|outcome| match outcome {
            Ok(outcome) => outcome,
            // The partition task ended without an outcome (it panicked): the record may have
            // been sent.
            Err(_) => {
                Err(ClientError::DeliveryUnknown { attempts: 0, last: Box::new(ClientError::Protocol("producer task ended".into())) })
            }
        })
    }
}

/// The idempotent producer's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

struct ProducerInner {
    cluster: ClusterSession,
    config: ProducerConfig,
    /// The identity every partition starts with; a partition that has to give up a batch gets
    /// a fresh one of its own.
    identity: Option<ProducerIdentity>,
    partitioner: Mutex<Partitioner>,
    partitions: Mutex<BTreeMap<(String, u32), mpsc::UnboundedSender<Command>>>,
    buffer: Arc<Semaphore>,
    closed: AtomicBool,
}

/// Sends records; cheap to clone (clones share batches and connections).
///
/// ```no_run
/// # async fn example() -> Result<(), odradek_client::ClientError> {
/// use odradek_client::{Producer, ProducerConfig, ProducerRecord};
///
/// let producer = Producer::new(&["127.0.0.1:9092"], ProducerConfig::default()).await?;
/// let delivery = producer.send(ProducerRecord::new("orders", "hello").key("user-1")).await?;
/// let metadata = delivery.await?;
/// println!("appended at {}/{} offset {:?}", metadata.topic, metadata.partition, metadata.offset);
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

impl Producer {
    /// Validates the config and, with idempotence, obtains a producer id from the cluster.
    pub async fn new(bootstrap: &[&str], config: ProducerConfig) -> Result<Producer> {
        let config = config.validated()?;
        let mut cluster_config = config.cluster.clone();
        cluster_config.retry_backoff = config.retry_backoff;
        cluster_config.retry_backoff_max = config.retry_backoff_max;
        let cluster = ClusterSession::new(bootstrap, cluster_config)?;
        Producer::with_cluster(cluster, config).await
    }

    /// A producer sharing an existing cluster handle (its metadata and connections).
    pub async fn with_cluster(cluster: ClusterSession, config: ProducerConfig) -> Result<Producer> {
        let config = config.validated()?;
        let identity = if config.idempotence { Some(init_producer_id(&cluster).await?) } else { None };
        Ok(Producer {
            inner: Arc::new(ProducerInner {
                cluster,
                partitioner: Mutex::new(Partitioner::new(config.batch_bytes)),
                buffer: Arc::new(Semaphore::new(config.buffer_bytes)),
                config,
                identity,
                partitions: Mutex::new(BTreeMap::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// `topic`'s metadata, asked again (with backoff) while no node lists it, up to
    /// `topic_wait`.
    async fn topic_info(&self, topic: &str) -> Result<Arc<crate::cluster::TopicInfo>> {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.topic_wait;
        let mut backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        loop {
            let outcome = self.inner.cluster.topic(topic).await;
            let unknown = matches!(&outcome, Err(error) if error.code() == Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION));
            let delay = backoff.next_delay();
            if !unknown || Instant::now() + delay >= deadline {
                return outcome;
            }
            tracing::debug!(topic, "the metadata lists no such topic (yet); asking again");
            tokio::time::sleep(delay).await;
        }
    }

    /// The identity the producer started with (`None` without idempotence).
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.inner.identity
    }

    /// Enqueues a record. Returns once the record is in its partition's batch (waiting for
    /// buffer room if needed); the returned future resolves with its offset once its batch is
    /// acknowledged, or with the error that ended it. An `Err` here is definite.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let topic_info = self.topic_info(&record.topic).await?;
        let partitions = u32::try_from(topic_info.partitions.len()).expect("partition counts fit in a u32");
        if partitions == 0 {
            return Err(ClientError::NoLeader { topic: record.topic, partition: 0 });
        }
        let record_bytes = RECORD_OVERHEAD_BYTES
            + record.key.as_ref().map_or(0, Bytes::len)
            + record.value.len()
            + record.headers.iter().map(|header| header.key.len() + header.value.as_ref().map_or(0, Bytes::len) + 8).sum::<usize>();
        let partition = match record.partition {
            Some(partition) if partition >= partitions => {
                return Err(ClientError::InvalidArgument(format!("{} has {partitions} partitions, not {}", record.topic, partition + 1)))
            }
            Some(partition) => partition,
            None => {
                let mut partitioner = self.inner.partitioner.lock().expect("partitioner lock");
                partitioner.partition(&record.topic, record.key.as_deref(), record_bytes, partitions)
            }
        };
        // A record can never need more than a whole batch of buffer.
        let permits = record_bytes.min(BATCH_BYTES_MAX);
        self.inner.buffer.acquire_many(permits as u32).await.expect("the buffer semaphore is never closed").forget();
        let (reply, outcome) = oneshot::channel();
        let append = Command::Append {
            record: Record {
                key: record.key,
                value: Some(record.value),
                headers: record.headers,
                timestamp: record.timestamp.unwrap_or_else(wall_clock_ms),
            },
            permits,
            reply,
        };
        let sender = self.partition_sender(&record.topic, partition);
        if sender.send(append).is_err() {
            self.inner.buffer.add_permits(permits);
            return Err(ClientError::Closed);
        }
        Ok(DeliveryFuture { outcome })
    }

    /// Sends a record and waits for its outcome.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    /// Waits until every record whose `send` returned before this call has its outcome (sending
    /// open batches without waiting for their linger).
    pub async fn flush(&self) -> Result<()> {
        let senders: Vec<_> = self.inner.partitions.lock().expect("partitions lock").values().cloned().collect();
        let mut waiting = Vec::with_capacity(senders.len());
        for sender in senders {
            let (done, wait) = oneshot::channel();
            if sender.send(Command::Flush { done }).is_ok() {
                waiting.push(wait);
            }
        }
        for wait in waiting {
            let _ = wait.await;
        }
        Ok(())
    }

    /// Refuses further sends, then flushes. Partition tasks end once their work is done.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.flush().await?;
        self.inner.partitions.lock().expect("partitions lock").clear();
        Ok(())
    }

    fn partition_sender(&self, topic: &str, partition: u32) -> mpsc::UnboundedSender<Command> {
        let mut partitions = self.inner.partitions.lock().expect("partitions lock");
        let key = (topic.to_string(), partition);
        if let Some(sender) = partitions.get(&key) {
            if !sender.is_closed() {
                return sender.clone();
            }
        }
        let (sender, commands) = mpsc::unbounded_channel();
        let task = PartitionTask::new(
            self.inner.cluster.clone(),
            self.inner.config.clone(),
            topic,
            partition,
            self.inner.identity,
            self.inner.buffer.clone(),
        );
        tokio::spawn(task.run(commands));
        partitions.insert(key, sender.clone());
        sender
    }
}

/// Asks the cluster for a new producer id (epoch 0), retrying retriable failures.
pub async fn init_producer_id(cluster: &ClusterSession) -> Result<ProducerIdentity> {
    let mut request = InitProducerIdRequest::new();
    request.producer_id = -1;
    request.producer_epoch = -1;
    let response = cluster.controller_request(RequestBody::init_producer_id(request)).await?;
    let Some(ResponseBody::init_producer_id(init)) = &response.body else {
        return Err(ClientError::Protocol(format!("InitProducerId answered without a producer id: {response:?}")));
    };
    if init.producer_id < 0 || !(0..=i32::from(i16::MAX)).contains(&init.producer_epoch) {
        return Err(ClientError::Protocol(format!("InitProducerId gave id {} epoch {}", init.producer_id, init.producer_epoch)));
    }
    Ok(ProducerIdentity { producer_id: init.producer_id, producer_epoch: init.producer_epoch as i16 })
}

/// `sequence + increment`, wrapping from `i32::MAX` to 0 as Kafka's sequence numbers do.
pub fn sequence_add(sequence: i32, increment: i32) -> i32 {
    assert!(sequence >= 0 && increment >= 0, "sequences and increments are never negative");
    ((i64::from(sequence) + i64::from(increment)) % (i64::from(i32::MAX) + 1)) as i32
}

/// A copy of `batch` with a new producer id, epoch and base sequence, and its CRC recomputed.
pub fn restamp(batch: &[u8], identity: ProducerIdentity, sequence_base: i32) -> Bytes {
    use crate::batch::position;
    let mut bytes = BytesMut::from(batch);
    bytes[position::PRODUCER_ID..position::PRODUCER_EPOCH].copy_from_slice(&identity.producer_id.to_be_bytes());
    bytes[position::PRODUCER_EPOCH..position::BASE_SEQUENCE].copy_from_slice(&identity.producer_epoch.to_be_bytes());
    bytes[position::BASE_SEQUENCE..position::RECORDS_COUNT].copy_from_slice(&sequence_base.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[position::ATTRIBUTES..]);
    bytes[position::CRC..position::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    let bytes = bytes.freeze();
    debug_assert!(batch::validate(&bytes).is_ok_and(|header| header.base_sequence == sequence_base));
    bytes
}

enum Command {
    Append { record: Record, permits: usize, reply: oneshot::Sender<Result<RecordMetadata>> },
    Flush { done: oneshot::Sender<()> },
}

/// One record waiting for its batch's outcome.
struct Waiter {
    reply: oneshot::Sender<Result<RecordMetadata>>,
    timestamp: i64,
}

/// The batch being filled.
struct OpenBatch {
    builder: BatchBuilder,
    waiters: Vec<Waiter>,
    permits: usize,
    created: Instant,
    linger_deadline: Instant,
}

/// A sealed batch, from sealing to its outcome.
struct SealedBatch {
    id: u64,
    bytes: Bytes,
    waiters: Vec<Waiter>,
    permits: usize,
    created: Instant,
    record_count: i32,
    attempts: u32,
    /// Some attempt's outcome is unknown: the batch may already be in the log.
    indefinite: bool,
    in_flight: bool,
    /// The last attempt's error and whether it rules out a plain retry.
    last_error: Option<ClientError>,
    fatal: bool,
}

/// The state and loop of one partition; see the module comment.
struct PartitionTask {
    cluster: ClusterSession,
    config: ProducerConfig,
    topic: String,
    partition: u32,
    identity: Option<ProducerIdentity>,
    sequence_next: i32,
    buffer: Arc<Semaphore>,
    open: Option<OpenBatch>,
    /// Sealed, unresolved batches in sealing order (ids increasing).
    queue: VecDeque<SealedBatch>,
    /// Requests in flight, oldest first: (batch id, answer).
    in_flight: VecDeque<(u64, ResponseFuture)>,
    batch_id_next: u64,
    /// An attempt failed: send nothing until the in-flight requests are done.
    recovering: bool,
    retry_at: Option<Instant>,
    /// The producer id was abandoned: get a new one before sending anything more.
    identity_pending: bool,
    backoff: Backoff,
    /// (last batch id the flush covers, who waits).
    flushes: Vec<(u64, oneshot::Sender<()>)>,
}

impl PartitionTask {
    fn new(
        cluster: ClusterSession,
        config: ProducerConfig,
        topic: &str,
        partition: u32,
        identity: Option<ProducerIdentity>,
        buffer: Arc<Semaphore>,
    ) -> PartitionTask {
        let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        PartitionTask {
            cluster,
            config,
            topic: topic.to_string(),
            partition,
            identity,
            sequence_next: 0,
            buffer,
            open: None,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            batch_id_next: 1,
            recovering: false,
            retry_at: None,
            identity_pending: false,
            backoff,
            flushes: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut commands_open = true;
        loop {
            self.seal_if_sendable();
            self.dispatch().await;
            if self.recovering && self.in_flight.is_empty() {
                // The failure happened while sending (no leader known, no connection), so no
                // outstanding answer will wake this loop: run the recovery pass now, which
                // arms the retry timer. (Found by the simulator, seed 10: records stuck forever
                // once the producer stopped sending new ones.)
                self.dispatch().await;
            }
            self.answer_flushes();
            if !commands_open && self.open.is_none() && self.queue.is_empty() {
                assert!(self.in_flight.is_empty());
                return;
            }
            let linger_deadline = self.open.as_ref().map(|open| open.linger_deadline);
            let retry_at = self.retry_at;
            let has_in_flight = !self.in_flight.is_empty();
            let in_flight = &mut self.in_flight;
            // Biased, so the simulator replays it (tokio's unbiased choice draws from a
            // process-global seed); the order is a priority in which appends come last, so a
            // flood of them cannot starve answers (bounded by the in-flight cap) or the timers.
            tokio::select! {
                biased;
                // Outcomes are taken in sending order: later answers wait in their futures.
                outcome = async { (&mut in_flight.front_mut().expect("guarded").1).await }, if has_in_flight => {
                    let (id, _) = self.in_flight.pop_front().expect("guarded");
                    self.on_outcome(id, outcome);
                }
                _ = sleep_until_some(retry_at), if retry_at.is_some() => self.retry_at = None,
                _ = sleep_until_some(linger_deadline), if linger_deadline.is_some() => self.seal(),
                command = commands.recv(), if commands_open => match command {
                    Some(Command::Append { record, permits, reply }) => self.append(record, permits, reply),
                    Some(Command::Flush { done }) => {
                        self.seal();
                        self.flushes.push((self.batch_id_next - 1, done));
                    }
                    None => {
                        commands_open = false;
                        self.seal();
                    }
                },
            }
        }
    }

    fn append(&mut self, record: Record, permits: usize, reply: oneshot::Sender<Result<RecordMetadata>>) {
        let waiter = Waiter { reply, timestamp: record.timestamp };
        if self.open.is_none() {
            self.open = Some(self.open_batch(self.config.batch_bytes));
        }
        let open = self.open.as_mut().expect("opened above");
        match open.builder.push(&record) {
            Ok(()) => {
                open.waiters.push(waiter);
                open.permits += permits;
                return;
            }
            Err(BatchError::BytesFull { .. } | BatchError::RecordsFull) => {
                self.seal();
                self.open = Some(self.open_batch(self.config.batch_bytes));
            }
            Err(BatchError::RecordTooLarge { .. }) => {
                // Too large for a normal batch: alone in a batch of up to BATCH_BYTES_MAX.
                if open.builder.is_empty() {
                    self.open = None;
                } else {
                    self.seal();
                }
                self.open = Some(self.open_batch(BATCH_BYTES_MAX));
            }
            Err(error) => {
                self.buffer.add_permits(permits);
                let _ = waiter.reply.send(Err(ClientError::Batch(error)));
                return;
            }
        }
        let open = self.open.as_mut().expect("opened above");
        match open.builder.push(&record) {
            Ok(()) => {
                open.waiters.push(waiter);
                open.permits += permits;
            }
            Err(error) => {
                self.buffer.add_permits(permits);
                let _ = waiter.reply.send(Err(ClientError::Batch(error)));
            }
        }
        if self.open.as_ref().is_some_and(|open| open.builder.is_empty()) {
            self.open = None;
        }
    }

    /// With `linger` zero, seals the open batch as soon as it can leave at once (the window has
    /// room and no sealed batch waits before it), instead of on the linger timer: tokio rounds a
    /// timer's deadline up to its next millisecond tick, so a deadline of "now" made every
    /// record wait up to 1 ms (issue 17). While it cannot leave, records keep joining it.
    fn seal_if_sendable(&mut self) {
        let sendable = self.in_flight.len() < self.config.in_flight_max
            && !self.recovering
            && self.retry_at.is_none()
            && !self.identity_pending
            && self.queue.iter().all(|batch| batch.in_flight);
        if self.config.linger.is_zero() && sendable {
            self.seal();
        }
    }

    fn open_batch(&self, bytes_max: usize) -> OpenBatch {
        let now = Instant::now();
        OpenBatch {
            builder: BatchBuilder::new().bytes_max(bytes_max),
            waiters: Vec::new(),
            permits: 0,
            created: now,
            linger_deadline: now + self.config.linger,
        }
    }

    /// Closes the open batch (if any): stamps its sequence and queues it for sending.
    fn seal(&mut self) {
        let Some(open) = self.open.take() else { return };
        if open.builder.is_empty() {
            return;
        }
        let record_count = i32::try_from(open.builder.records_len()).expect("BATCH_RECORDS_MAX fits in an i32");
        let builder = match self.identity {
            Some(identity) => {
                let sequence_base = self.sequence_next;
                self.sequence_next = sequence_add(sequence_base, record_count);
                open.builder.producer(identity.producer_id, identity.producer_epoch, sequence_base)
            }
            None => open.builder,
        };
        let id = self.batch_id_next;
        self.batch_id_next += 1;
        assert_eq!(open.waiters.len(), record_count as usize, "one waiter per record");
        self.queue.push_back(SealedBatch {
            id,
            bytes: batch::compress_batch(builder.build(), self.config.compression),
            waiters: open.waiters,
            permits: open.permits,
            created: open.created,
            record_count,
            attempts: 0,
            indefinite: false,
            in_flight: false,
            last_error: None,
            fatal: false,
        });
    }

    /// Sends what the window allows; after a failure, waits for the window to drain, gives up
    /// on what must be given up, and resumes after a backoff.
    async fn dispatch(&mut self) {
        if self.recovering {
            if !self.in_flight.is_empty() {
                return;
            }
            self.recovering = false;
            self.give_up();
            self.retry_at = Some(Instant::now() + self.backoff.next_delay());
            return;
        }
        if self.retry_at.is_some_and(|retry_at| Instant::now() < retry_at) {
            return;
        }
        self.retry_at = None;
        if self.identity_pending && !self.queue.is_empty() {
            assert!(self.in_flight.is_empty(), "nothing is sent while the producer id is pending");
            match init_producer_id(&self.cluster).await {
                Ok(identity) => self.adopt_identity(identity),
                Err(error) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, %error, "InitProducerId failed; will retry");
                    // Back off, and let expired batches go, through the recovery pass.
                    self.recovering = true;
                    return;
                }
            }
        }
        while self.in_flight.len() < self.config.in_flight_max {
            let Some(index) = self.queue.iter().position(|batch| !batch.in_flight) else { return };
            debug_assert!(self.queue.iter().skip(index).all(|batch| !batch.in_flight), "in-flight batches are a prefix");
            let connection = match self.cluster.leader_connection(&self.topic, self.partition).await {
                Ok(connection) => connection,
                Err(error) => {
                    self.cluster.note_error(&self.topic, self.partition, &error, 0);
                    self.attempt_failed(index, error);
                    return;
                }
            };
            let batch = &mut self.queue[index];
            let mut produce = ProduceRequest::new();
            produce.topic = self.topic.clone();
            produce.partition = self.partition;
            produce.acks = self.config.acks.to_wire();
            produce.timeout_ms = u32::try_from(self.config.request_timeout.as_millis()).unwrap_or(u32::MAX);
            produce.batch = batch.bytes.to_vec();
            batch.attempts += 1;
            let id = batch.id;
            if self.config.acks == Acks::None {
                match connection.send_oneway(RequestBody::produce(produce)).await {
                    Ok(()) => {
                        let batch = self.queue.remove(index).expect("index from position");
                        self.complete(batch, None, -1);
                    }
                    Err(error) => {
                        self.attempt_failed(index, error);
                        return;
                    }
                }
                continue;
            }
            let timeout = self.config.request_timeout + REQUEST_TIMEOUT_MARGIN;
            match connection.start_with_timeout(RequestBody::produce(produce), timeout).await {
                Ok(answer) => {
                    self.queue[index].in_flight = true;
                    self.in_flight.push_back((id, answer));
                }
                Err(error) => {
                    self.cluster.note_error(&self.topic, self.partition, &error, 0);
                    self.attempt_failed(index, error);
                    return;
                }
            }
        }
    }

    /// Records a failed attempt of `queue[index]` and starts recovering.
    fn attempt_failed(&mut self, index: usize, error: ClientError) {
        let recovering_already = self.recovering;
        let batch = &mut self.queue[index];
        batch.in_flight = false;
        if !error.is_definite() {
            batch.indefinite = true;
        }
        let code = error.code();
        // An out-of-order sequence behind an earlier failure in this window is that failure's
        // echo (the predecessor is missing); anywhere else it means the leader lost our state.
        let echo = recovering_already && code == Some(ErrorCode::OUT_OF_ORDER_SEQUENCE);
        batch.fatal = !(error.is_retriable() || echo);
        tracing::debug!(topic = %self.topic, partition = self.partition, batch = batch.id, attempts = batch.attempts, %error, fatal = batch.fatal, "produce attempt failed");
        batch.last_error = Some(error);
        self.recovering = true;
    }

    fn on_outcome(&mut self, id: u64, outcome: Result<Response>) {
        let Some(index) = self.queue.iter().position(|batch| batch.id == id) else {
            unreachable!("an in-flight batch stays queued until its outcome");
        };
        self.queue[index].in_flight = false;
        let response = match outcome {
            Ok(response) => response,
            Err(error) => {
                self.cluster.note_error(&self.topic, self.partition, &error, 0);
                return self.attempt_failed(index, error);
            }
        };
        if response.error != ErrorCode::NONE {
            let error = ClientError::server(response.error, response.error_message.clone());
            self.cluster.note_error(&self.topic, self.partition, &error, leader_hint(&response));
            return self.attempt_failed(index, error);
        }
        let Some(ResponseBody::produce(produce)) = &response.body else {
            let error = ClientError::Protocol(format!("Produce answered without a produce body: {response:?}"));
            return self.attempt_failed(index, error);
        };
        let batch = self.queue.remove(index).expect("index from position");
        if !self.recovering {
            self.backoff.reset();
        }
        self.complete(batch, Some(produce.base_offset), produce.log_append_time_ms);
    }

    /// Resolves every record of an appended batch: record k has offset `offset_base + k`.
    fn complete(&mut self, batch: SealedBatch, offset_base: Option<u64>, log_append_time_ms: i64) {
        self.buffer.add_permits(batch.permits);
        for (index, waiter) in batch.waiters.into_iter().enumerate() {
            let metadata = RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: offset_base.map(|base| if self.config.planted.record_offset_is_batch_base() { base } else { base + index as u64 }),
                timestamp: if log_append_time_ms >= 0 { log_append_time_ms } else { waiter.timestamp },
            };
            let _ = waiter.reply.send(Ok(metadata));
        }
    }

    /// Fails every record of a batch given up on; indefinite if any attempt was.
    fn fail(&mut self, batch: SealedBatch, expired: bool) {
        self.buffer.add_permits(batch.permits);
        let attempts = batch.attempts;
        let last = batch.last_error.unwrap_or(ClientError::Timeout { timeout_ms: self.config.delivery_timeout.as_millis() as u64 });
        let error = if batch.indefinite {
            ClientError::DeliveryUnknown { attempts, last: Box::new(last) }
        } else if expired {
            ClientError::DeliveryTimeout { attempts, last: Box::new(last) }
        } else {
            last
        };
        assert!(!batch.indefinite || !error.is_definite(), "an indefinite attempt never ends definite");
        tracing::debug!(topic = %self.topic, partition = self.partition, batch = batch.id, records = batch.record_count, %error, "giving up on a batch");
        for waiter in batch.waiters {
            let _ = waiter.reply.send(Err(error.clone()));
        }
    }

    /// With nothing in flight: fails the batches that are expired or cannot succeed by retrying.
    /// Under idempotence, a gap in our sequences would block every later batch, so it then
    /// abandons the producer id: the remaining batches are re-stamped under a new one, from
    /// sequence 0, before anything more is sent ([`adopt_identity`](Self::adopt_identity)) —
    /// except those with an unknown outcome, which could be appended twice under a new id:
    /// those are failed (indefinite) here.
    fn give_up(&mut self) {
        assert!(self.in_flight.is_empty() && self.queue.iter().all(|batch| !batch.in_flight));
        let now = Instant::now();
        let mut identity_reset = false;
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for mut batch in std::mem::take(&mut self.queue) {
            let expired = now >= batch.created + self.config.delivery_timeout;
            let identity_error = batch.fatal
                && matches!(
                    batch.last_error.as_ref().and_then(ClientError::code),
                    Some(ErrorCode::OUT_OF_ORDER_SEQUENCE | ErrorCode::UNKNOWN_PRODUCER_ID | ErrorCode::PRODUCER_FENCED)
                );
            if expired || (batch.fatal && !(identity_error && !batch.indefinite && self.identity.is_some())) {
                identity_reset = true;
                self.fail(batch, expired);
                continue;
            }
            if identity_error {
                // Never appended under this id: safe to send again under a new one.
                identity_reset = true;
                batch.fatal = false;
            }
            kept.push_back(batch);
        }
        self.queue = kept;
        if !identity_reset || self.identity.is_none() {
            return;
        }
        let (unknown, restampable): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.queue).into_iter().partition(|batch| batch.indefinite);
        for batch in unknown {
            self.fail(batch, false);
        }
        self.queue = restampable;
        self.identity_pending = true;
    }

    /// Takes a new producer id: re-stamps every queued batch (none has an unknown outcome, and
    /// none is in flight) with sequences from 0, in order.
    fn adopt_identity(&mut self, identity: ProducerIdentity) {
        assert!(self.identity_pending && self.in_flight.is_empty());
        assert!(self.queue.iter().all(|batch| !batch.indefinite), "a batch with an unknown outcome is never re-stamped");
        let mut sequence = 0;
        for batch in &mut self.queue {
            batch.bytes = restamp(&batch.bytes, identity, sequence);
            sequence = sequence_add(sequence, batch.record_count);
        }
        // The open batch is stamped when sealed, from here on.
        self.sequence_next = sequence;
        self.identity = Some(identity);
        self.identity_pending = false;
        tracing::info!(topic = %self.topic, partition = self.partition, producer_id = identity.producer_id, "new producer id after giving up on a batch");
    }

    fn answer_flushes(&mut self) {
        let oldest_unresolved = self.queue.front().map(|batch| batch.id);
        let mut still = Vec::new();
        for (target, done) in std::mem::take(&mut self.flushes) {
            if oldest_unresolved.is_some_and(|oldest| oldest <= target) {
                still.push((target, done));
            } else {
                let _ = done.send(());
            }
        }
        self.flushes = still;
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(sequence_add(0, 5), 5);
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn restamp_changes_identity_and_keeps_the_batch_valid() {
        let mut builder = BatchBuilder::new().producer(7, 0, 40);
        for index in 0..3 {
            builder
                .push(&Record { key: None, value: Some(Bytes::from(format!("v{index}"))), headers: vec![], timestamp: 1000 + index })
                .unwrap();
        }
        let original = builder.build();
        let restamped = restamp(&original, ProducerIdentity { producer_id: 99, producer_epoch: 3 }, 0);
        let header = batch::validate(&restamped).unwrap();
        assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence, header.record_count), (99, 3, 0, 3));
        let values: Vec<_> = batch::records(&restamped).unwrap().map(|record| record.unwrap().value.unwrap().to_vec()).collect();
        assert_eq!(values, [b"v0".to_vec(), b"v1".to_vec(), b"v2".to_vec()]);
    }

    #[test]
    fn config_validation() {
        assert!(ProducerConfig::default().validated().is_ok());
        let leader_idempotent = ProducerConfig { acks: Acks::Leader, ..ProducerConfig::default() };
        assert!(matches!(leader_idempotent.validated(), Err(ClientError::InvalidArgument(_))));
        let plain = ProducerConfig { acks: Acks::Leader, idempotence: false, ..ProducerConfig::default() }.validated().unwrap();
        assert_eq!(plain.in_flight_max, 1, "without idempotence one request in flight keeps order");
        let huge = ProducerConfig { batch_bytes: BATCH_BYTES_MAX + 1, ..ProducerConfig::default() };
        assert!(huge.validated().is_err());
    }
}
