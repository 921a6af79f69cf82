//! The client side of a run: creating the topic, producers writing unique values, a consumer
//! polling every partition, an occasional extra topic, the partitions' ends and the final drain,
//! and in the `groups` scenario the consumer groups ([`groups`]). Every client action is
//! recorded in the history as invoke + ok / fail / info (definite errors `fail`, anything else
//! `info`).
//!
//! Producers: two idempotent acks=all producers in every run, plus one whose settings the seed
//! draws — acks=all without idempotence, acks=1 or acks=0 — so the checker's acks table (L1–L13
//! fatal for acks=all, reported for weaker levels) is exercised.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::batch::Compression;
use odradek_client::planted::Planted;
use odradek_client::wire::proto::ErrorCode;
use odradek_client::{
    Admin, ClientError, ClusterSession, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};
use odradek_jepsen::checker::LogRecord;
use odradek_jepsen::history::{Acks, Keys, OpF, OpHandle, OpValue, Poll, Send};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::task::JoinHandle;

pub mod churn;
pub mod delete_records;
pub mod groups;
pub mod kafka;
pub mod membership;

use crate::cluster::SimCluster;
use crate::config::{KAFKA_PRODUCER, LIVENESS_BOUND, TOPIC};

/// Sets how many records a producer sends: one per this much of the safety phase (capped).
const SEND_INTERVAL: Duration = Duration::from_millis(40);
/// The share of the safety phase (percent) the sends are spread over, so that faults late in the
/// phase still meet writes in flight.
const SEND_SPREAD_PERCENT: u32 = 85;

/// One producer's settings.
#[derive(Clone, Copy, Debug)]
struct ProducerKind {
    acks: Acks,
    idempotent: bool,
    records: u64,
    /// Pause between two sends.
    interval: Duration,
    /// First retry delay (Kafka's retry.backoff.ms): eager retries reach a new leader early.
    retry_backoff_ms: u64,
    /// Heavy load only ([`HeavyProducer`]); `None`: the client's defaults.
    heavy: Option<HeavyProducer>,
}

/// A heavy-load producer's batching, pipelining and delivery settings (drawn per producer).
#[derive(Clone, Copy, Debug)]
struct HeavyProducer {
    /// Records wait this long for company: several records per batch.
    linger_ms: u64,
    /// A batch seals at this size: small ones split a linger's records into several batches.
    batch_bytes: usize,
    /// Requests in flight per partition (pipelining; the client forces 1 without idempotence).
    in_flight_max: usize,
    compression: Compression,
    /// Sometimes short, so batches are given up while a leader is unreachable.
    delivery_timeout_ms: u64,
    /// Records sent back to back to one partition before the pause (the pause grows with it):
    /// bursts fill multi-record batches, so a seed's records take fewer raft entries.
    run: u64,
}

/// Attempts at starting a producer (each bounded by the client's request timeout).
const PRODUCER_START_ATTEMPTS_MAX: u32 = 20;
/// Heavy load: sends per producer over the safety phase (at most).
const HEAVY_RECORDS_MAX: u64 = 800;
/// Heavy load: records a producer sends back to back to one partition (drawn per producer).
const HEAVY_RUNS: [u64; 3] = [2, 8, 32];
/// Heavy load: idempotent acks=all producers (besides the one with drawn acks).
const HEAVY_PRODUCERS: usize = 4;

pub struct Workload {
    producers: Vec<JoinHandle<(u64, u64)>>,
    consumer: JoinHandle<(usize, Vec<LogRecord>)>,
    /// The Kafka-protocol consumer (plan field `kafka`).
    kafka_consumer: Option<JoinHandle<()>>,
}

impl Workload {
    /// Waits for the producers (their last records resolve in the liveness phase) and the
    /// consumer; returns (acknowledged, failed) sends.
    pub async fn finish(self) -> (u64, u64) {
        let (mut acked, mut failed) = (0, 0);
        for producer in self.producers {
            let (ok, bad) = producer.await.expect("producer task");
            acked += ok;
            failed += bad;
        }
        self.consumer.await.expect("consumer task");
        if let Some(consumer) = self.kafka_consumer {
            consumer.await.expect("Kafka consumer task");
        }
        (acked, failed)
    }
}

/// Most attempts at creating the run's topic (100 ms apart) before the run gives up.
const CREATE_TOPIC_ATTEMPTS_MAX: u32 = 600;

/// Creates the run's topic from the client node (replication 3), retrying while the cluster
/// comes up.
pub async fn create_topic(client: &NodeHandle, cluster: &SimCluster) {
    // Plan field `retention`: small segments, kept for a few KiB and/or seconds (R12).
    let topic_config = match &cluster.retention {
        Some(r) => TopicConfig {
            retention_ms: r.retention_ms,
            retention_bytes: r.retention_bytes,
            segment_bytes: r.segment_bytes as i64,
            ..TopicConfig::default()
        },
        None => TopicConfig::default(),
    };
    create_replicated_topic(client, cluster, TOPIC, cluster.load.partitions, cluster.load.replication, topic_config).await;
}

/// Creates `name` (replication factor 3), retrying what is retriable; an existing topic is fine.
pub async fn create_named_topic(client: &NodeHandle, cluster: &SimCluster, name: &'static str, partitions: u32, topic_config: TopicConfig) {
    create_replicated_topic(client, cluster, name, partitions, 3, topic_config).await
}

/// [`create_named_topic`] with `replication` replicas a partition.
pub async fn create_replicated_topic(
    client: &NodeHandle,
    cluster: &SimCluster,
    name: &'static str,
    partitions: u32,
    replication: u32,
    topic_config: TopicConfig,
) {
    let bootstrap = cluster.bootstrap();
    let config = cluster.client_config();
    client
        .spawn(async move {
            let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
            let admin = Admin::with_cluster(ClusterSession::new(&addresses, config).expect("admin"));
            for _ in 0..CREATE_TOPIC_ATTEMPTS_MAX {
                match admin.create_topic(name, partitions, replication, topic_config).await {
                    Ok(()) => return,
                    Err(ClientError::Server { code: ErrorCode::TOPIC_ALREADY_EXISTS, .. }) => return,
                    Err(error) if error.is_retriable() => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(error) => panic!("create topic: {error}"),
                }
            }
            panic!("no topic after {CREATE_TOPIC_ATTEMPTS_MAX} attempts");
        })
        .await
        .expect("topic task");
}

/// Each partition's end offset, asked from the client node within [`LIVENESS_BOUND`]; a
/// partition missing from the answer had none in time (V1).
pub async fn partition_ends(client: &NodeHandle, cluster: &SimCluster) -> BTreeMap<u32, u64> {
    let partitions = cluster.load.partitions;
    let bootstrap = cluster.bootstrap();
    let config = cluster.client_config();
    client
        .spawn(async move {
            let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
            let admin = Admin::with_cluster(ClusterSession::new(&addresses, config).expect("admin"));
            let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
            let mut ends = BTreeMap::new();
            for partition in 0..partitions {
                while tokio::time::Instant::now() < deadline {
                    match admin.list_offsets(TOPIC, partition, OffsetQuery::Latest).await {
                        Ok(end) => {
                            ends.insert(partition, end.offset);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
            ends
        })
        .await
        .expect("ends task")
}

/// Starts the producers, the consumer (until the safety phase ends) and the extra topic.
pub fn start(client: &NodeHandle, cluster: Arc<SimCluster>, rng: &mut SmallRng, duration: Duration, planted: Planted) -> Workload {
    let records = (duration.as_millis() / SEND_INTERVAL.as_millis()).clamp(10, 300) as u64 * 6 / 10;
    let retry_backoff_ms = *[100, 10, 1].choose(rng).expect("three");
    let spread = duration * SEND_SPREAD_PERCENT / 100;
    let interval = spread / records as u32;
    let mut kinds = vec![ProducerKind { acks: Acks::All, idempotent: true, records, interval, retry_backoff_ms, heavy: None }; 2];
    let (acks, idempotent) = [(Acks::All, false), (Acks::One, false), (Acks::Zero, false)][rng.gen_range(0..3)];
    kinds.push(ProducerKind { acks, idempotent, records: records / 2, interval: interval * 2, retry_backoff_ms, heavy: None });
    if cluster.load.heavy {
        // Drawn after everything above, so the default load's draws stay as they were.
        kinds = heavy_producers(rng, spread, retry_backoff_ms, kinds.pop().expect("the drawn producer"));
    }
    cluster.note(format!("producers: {kinds:?}"));
    assert!((kinds.len() as u64) <= KAFKA_PRODUCER, "the Kafka producer's values are its own");
    let mut producers: Vec<_> =
        kinds.into_iter().enumerate().map(|(index, kind)| client.spawn(produce(cluster.clone(), index as u64, kind, planted))).collect();
    let deadline = tokio::time::Instant::now() + duration;
    let consumer = client.spawn(consume(cluster.clone(), None, deadline));
    // Plan field `kafka`: a producer and a consumer over the Kafka listeners too (no rng draw,
    // so a run without it is the run it always was).
    let kafka_consumer = cluster.kafka.then(|| {
        cluster.note(format!("Kafka producer {KAFKA_PRODUCER}: {} records, acks=all; Kafka consumer", records / 2));
        producers.push(client.spawn(kafka::produce(cluster.clone(), KAFKA_PRODUCER, records / 2, interval * 2)));
        client.spawn(kafka::consume(cluster.clone(), deadline))
    });
    if rng.gen_bool(0.5) {
        let delay = Duration::from_millis(rng.gen_range(0..duration.as_millis() as u64));
        client.spawn(extra_topic(cluster, delay));
    }
    Workload { producers, consumer, kafka_consumer }
}

/// The heavy load's producers: [`HEAVY_PRODUCERS`] idempotent acks=all ones and `drawn` (its
/// acks kept), each sending up to [`HEAVY_RECORDS_MAX`] records 2..=20 ms apart with its own
/// batching, pipelining, compression and delivery timeout.
fn heavy_producers(rng: &mut SmallRng, spread: Duration, retry_backoff_ms: u64, drawn: ProducerKind) -> Vec<ProducerKind> {
    let mut kinds: Vec<ProducerKind> = (0..HEAVY_PRODUCERS)
        .map(|_| ProducerKind { acks: Acks::All, idempotent: true, records: 0, interval: Duration::ZERO, retry_backoff_ms, heavy: None })
        .collect();
    kinds.push(drawn);
    for kind in &mut kinds {
        kind.interval = Duration::from_millis(rng.gen_range(2..=20));
        kind.records = (spread.as_millis() as u64 / kind.interval.as_millis() as u64).min(HEAVY_RECORDS_MAX);
        kind.heavy = Some(HeavyProducer {
            linger_ms: *[0, 2, 10, 50].choose(rng).expect("four"),
            batch_bytes: *[256, 2_048, 64 * 1024].choose(rng).expect("three"),
            in_flight_max: *[1, 2, 5].choose(rng).expect("three"),
            compression: *Compression::ALL.choose(rng).expect("five"),
            delivery_timeout_ms: if rng.gen_bool(0.25) { rng.gen_range(2_000..8_000) } else { 40_000 },
            run: *HEAVY_RUNS.choose(rng).expect("runs"),
        });
    }
    kinds
}

/// Occasional topic creation while faults run (the controller's path); its outcome is only noted.
async fn extra_topic(cluster: Arc<SimCluster>, delay: Duration) {
    tokio::time::sleep(delay).await;
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let Ok(session) = ClusterSession::new(&addresses, cluster.client_config()) else { return };
    let admin = Admin::with_cluster(session);
    let outcome = tokio::time::timeout(Duration::from_secs(10), admin.create_topic("extra", 2, 3, TopicConfig::default())).await;
    cluster.note(format!("create topic extra: {outcome:?}"));
}

/// One producer: unique values (producer index × 10⁶ + i), explicit partitions.
async fn produce(cluster: Arc<SimCluster>, index: u64, kind: ProducerKind, planted: Planted) -> (u64, u64) {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig {
        request_timeout: Duration::from_secs(5),
        delivery_timeout: Duration::from_secs(40),
        acks: match kind.acks {
            Acks::All => odradek_client::Acks::All,
            Acks::One => odradek_client::Acks::Leader,
            Acks::Zero => odradek_client::Acks::None,
        },
        idempotence: kind.idempotent,
        retry_backoff: Duration::from_millis(kind.retry_backoff_ms),
        cluster: cluster.client_config(),
        planted,
        ..ProducerConfig::default()
    };
    let config = match kind.heavy {
        Some(heavy) => ProducerConfig {
            linger: Duration::from_millis(heavy.linger_ms),
            batch_bytes: heavy.batch_bytes,
            in_flight_max: heavy.in_flight_max,
            compression: heavy.compression,
            delivery_timeout: Duration::from_millis(heavy.delivery_timeout_ms),
            ..config
        },
        None => config,
    };
    // The producer id comes from the controller, which a fault may hold up past the client's
    // timeout: ask again (the first attempt succeeds in a healthy cluster).
    let mut attempts = 0;
    let producer = loop {
        match Producer::new(&addresses, config.clone()).await {
            Ok(producer) => break producer,
            Err(error) if error.is_retriable() && attempts < PRODUCER_START_ATTEMPTS_MAX => {
                attempts += 1;
                cluster.note(format!("producer {index}: no producer id yet ({error}); asking again"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("producer {index}: {error}"),
        }
    };
    let mut pending = Vec::new();
    let run = kind.heavy.map_or(1, |heavy| heavy.run);
    for i in 0..kind.records {
        if i > 0 && i % run == 0 {
            tokio::time::sleep(kind.interval * run as u32).await;
        }
        let value = index * 1_000_000 + i;
        let key = (i / run) % u64::from(cluster.load.partitions);
        let process = cluster.process();
        let identity = producer.identity().map(|id| odradek_jepsen::history::Producer {
            pid: id.producer_id as u64,
            epoch: id.producer_epoch as u64,
            seq: i,
        });
        let send = Send { key, values: vec![value], acks: kind.acks, producer: identity, offsets: None };
        let handle = cluster.history().invoke_send(process, send.clone()).expect("history");
        let record = ProducerRecord::new(TOPIC, value.to_string()).partition(key as u32);
        match producer.send(record).await {
            // The outcome is recorded when it arrives, so the history's completion times are
            // the real ones (real-time order checks depend on them).
            Ok(delivery) => {
                let cluster = cluster.clone();
                pending.push(tokio::spawn(async move {
                    match delivery.await {
                        Ok(metadata) => {
                            let offsets = metadata.offset.map(|offset| vec![offset]);
                            cluster.history().ok(handle, OpValue::Send(Send { offsets, ..send })).expect("history");
                            true
                        }
                        Err(error) => {
                            record_send_failure(&cluster, handle, send, &error);
                            false
                        }
                    }
                }))
            }
            Err(error) => record_send_failure(&cluster, handle, send, &error),
        }
    }
    let (mut ok, mut failed) = (0, 0);
    for outcome in pending {
        if outcome.await.expect("delivery task") {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    let _ = producer.close().await;
    (ok, failed)
}

/// Completes a send that failed: `fail` when the error is definite (nothing was written),
/// `info` when the write may have happened.
fn record_send_failure(cluster: &SimCluster, handle: OpHandle, send: Send, error: &ClientError) {
    let value = OpValue::Send(send);
    let mut history = cluster.history();
    if error.is_definite() { history.fail(handle, value) } else { history.info(handle, value) }.expect("history");
}

/// Polls every partition from the beginning until `deadline` or, for the drain, until every
/// partition's position reaches `ends`. Returns the records read.
/// With `ends` (the final drain) it also returns every record read, by (partition, offset), with
/// its producer: the committed log, for the checker's P1, P3 and P4.
async fn consume(cluster: Arc<SimCluster>, ends: Option<BTreeMap<u32, u64>>, deadline: tokio::time::Instant) -> (usize, Vec<LogRecord>) {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    // Every fetch behind a read barrier, so every poll's high watermark is fresh (L12 a).
    let config = ConsumerConfig {
        wait_ms_max: 200,
        cluster: cluster.client_config(),
        fresh_high_watermark: true,
        planted: cluster.client_planted,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&addresses, config).expect("consumer");
    let partitions = cluster.load.partitions;
    let keys: Vec<u64> = (0..u64::from(partitions)).collect();
    let process = cluster.process();
    let assign = cluster.history().invoke(process, OpF::Assign, OpValue::Keys(Keys { keys: keys.clone() })).expect("history");
    consumer.assign((0..partitions).map(|p| (TOPIC.to_string(), p)).collect()).expect("assign");
    for partition in 0..partitions {
        while consumer.seek(TOPIC, partition, Offset::Beginning).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    cluster.history().ok(assign, OpValue::Keys(Keys { keys })).expect("history");
    let mut read = 0;
    let mut dump = BTreeMap::new();
    loop {
        if let Some(ends) = &ends {
            if (0..partitions).all(|p| consumer.position(TOPIC, p).unwrap_or(0) >= ends.get(&p).copied().unwrap_or(0)) {
                return (read, dump.into_values().collect());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return (read, dump.into_values().collect());
        }
        let handle = cluster.history().invoke_poll(process).expect("history");
        match consumer.poll_with_watermarks(Duration::from_millis(500)).await {
            Ok(polled) => {
                let poll = poll_value(&polled);
                for record in polled.records {
                    read += 1;
                    if ends.is_some() {
                        let producer = record.producer.map(|p| odradek_jepsen::history::Producer {
                            pid: p.producer_id as u64,
                            epoch: p.producer_epoch as u64,
                            seq: p.sequence as u64,
                        });
                        let partition = u64::from(record.partition);
                        dump.insert((partition, record.offset), LogRecord { partition, offset: record.offset, producer });
                    }
                }
                cluster.history().ok(handle, OpValue::Poll(poll)).expect("history");
            }
            // A failed poll moves no position and has no effect: definite.
            Err(error) => {
                cluster.history().fail(handle, OpValue::Poll(Poll::default())).expect("history");
                // Retention (plan field `retention`) deleted the position's records: go on from
                // the log start (the failed poll breaks L8's continuity; the checker knows the
                // log start from the replicas, R12).
                if let ClientError::OffsetOutOfRange { partition, .. } = error {
                    let _ = consumer.seek(TOPIC, partition, Offset::Beginning).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A successful poll as the history records it: each partition's high watermark as its replica
/// reported it in this poll (L12), and the values read with their offsets, per partition.
pub fn poll_value(polled: &odradek_client::Polled) -> Poll {
    let mut poll = Poll::default();
    for ((_, partition), high_watermark) in &polled.high_watermarks {
        poll.hw.insert(u64::from(*partition), *high_watermark);
    }
    for record in &polled.records {
        let value: u64 = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).parse().expect("our values");
        poll.records.entry(u64::from(record.partition)).or_default().push((record.offset, value));
    }
    poll
}

/// The final drain (V3): a fresh consumer reads every partition to `ends` within the bound.
pub async fn drain(client: &NodeHandle, cluster: Arc<SimCluster>, ends: BTreeMap<u32, u64>) -> Result<(usize, Vec<LogRecord>), String> {
    let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
    let wanted = ends.clone();
    let drained = client.spawn(consume(cluster.clone(), Some(ends), deadline)).await.expect("drain task");
    if tokio::time::Instant::now() >= deadline {
        return Err(format!("V3: the final drain did not reach the partition ends {wanted:?} within {LIVENESS_BOUND:?}"));
    }
    Ok(drained)
}
