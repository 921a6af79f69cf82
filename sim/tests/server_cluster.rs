//! The real server and client under madsim: three `odradek-server` nodes (each with its own
//! `SimDisk`, which survives kill and restart), client nodes running the real `odradek-client`
//! producer and consumer with unique values, a seeded nemesis, and the shared Jepsen checker
//! (L1–L13, P2) over the recorded history.
//!
//! Phases: a safety phase with faults (F-P1 kill + restart with unsynced writes lost, F-P3/F-P4
//! power loss with torn writes, F-N1 isolating a node; at most one node down at a time, so a
//! quorum can always make progress), then healing and a liveness phase (V1–V3: every
//! partition elects a leader and the final drain reads every acknowledged write).
//!
//! ```text
//! sim/madsim test -p odradek-sim --test server_cluster -- --nocapture          # seed from MADSIM_TEST_SEED (default: time)
//! MADSIM_TEST_SEED=7 MADSIM_TEST_NUM=16 sim/madsim test -p odradek-sim --test server_cluster
//! MADSIM_TEST_SEED=7 MADSIM_TEST_CHECK_DETERMINISM=1 sim/madsim test -p odradek-sim --test server_cluster
//! ```
//! A failure prints the seed and the command that replays it. The run prints a trace hash (of
//! the history) so two runs of one seed can be compared.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::Handle;
use odradek_client::{
    Admin, ClientError, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};
use odradek_jepsen::checker::{check, CheckOptions};
use odradek_jepsen::history::{Acks, Fault, HistoryBuilder, Keys, OpF, OpValue, Poll, Process, Send};
use odradek_log::{CrashMode, SimDisk};
use odradek_server::config::{Member, ServerConfig};
use odradek_server::planted::PlantedBug;
use odradek_server::Server;
use rand::{Rng, SeedableRng};

const NODES: [u64; 3] = [1, 2, 3];
const PARTITIONS: u32 = 3;
const PRODUCERS: u64 = 2;
const RECORDS_PER_PRODUCER: u64 = 300;
const SAFETY_PHASE: Duration = Duration::from_secs(20);
const CLOCK_BASE_MS: i64 = 1_700_000_000_000;

fn member(node: u64) -> Member {
    let ip = IpAddr::from([10, 0, 0, u8::try_from(node).unwrap()]);
    Member { id: node, peer: SocketAddr::new(ip, 9100), client: SocketAddr::new(ip, 9092) }
}

fn bootstrap() -> Vec<String> {
    NODES.iter().map(|node| member(*node).client.to_string()).collect()
}

struct Cluster {
    disks: BTreeMap<u64, SimDisk>,
    planted: Vec<PlantedBug>,
    start: tokio::time::Instant,
    history: Mutex<HistoryBuilder>,
    next_process: Mutex<Process>,
}

impl Cluster {
    fn process(&self) -> Process {
        let mut next = self.next_process.lock().unwrap();
        *next += 1;
        *next
    }

    fn history(&self) -> std::sync::MutexGuard<'_, HistoryBuilder> {
        self.history.lock().unwrap()
    }

    /// One incarnation of a server node: its disk as the last crash left it.
    async fn run_node(self: Arc<Self>, node: u64) {
        let mut config = ServerConfig::new(node, "/data", NODES.iter().map(|n| member(*n)).collect());
        config.tick_ms = 50;
        config.balance_interval_ms = 2_000;
        config.disk_check_interval_ms = 500;
        config.planted_bugs = self.planted.clone();
        let start = self.start;
        let clock: odradek_server::Clock = Arc::new(move || CLOCK_BASE_MS + start.elapsed().as_millis() as i64);
        let server = Server::start(config, self.disks[&node].clone(), clock).await.expect("server start");
        server.failed().await;
        panic!("node {node}: the raft driver stopped on a fatal error");
    }
}

/// One producer: unique values, explicit partitions, every record its own history process.
async fn produce(cluster: Arc<Cluster>, index: u64) -> (u64, u64) {
    let addresses = bootstrap();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let config =
        ProducerConfig { request_timeout: Duration::from_secs(5), delivery_timeout: Duration::from_secs(40), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await.expect("producer");
    let mut pending = Vec::new();
    for i in 0..RECORDS_PER_PRODUCER {
        let value = index * 1_000_000 + i;
        let key = u64::from((i % u64::from(PARTITIONS)) as u32);
        let process = cluster.process();
        // The producer is idempotent: the checker then treats any duplicate as fatal (L2/P2).
        // (The sequence is informational: the client numbers batches, not records.)
        let identity = producer.identity().map(|id| odradek_jepsen::history::Producer {
            pid: id.producer_id as u64,
            epoch: id.producer_epoch as u64,
            seq: i,
        });
        let send = Send { key, values: vec![value], acks: Acks::All, producer: identity, offsets: None };
        let handle = cluster.history().invoke_send(process, send.clone()).expect("history");
        let record = ProducerRecord::new("t", value.to_string()).partition(key as u32);
        match producer.send(record).await {
            Ok(delivery) => pending.push((handle, send, delivery)),
            Err(error) => {
                let value = OpValue::Send(send);
                if error.is_definite() {
                    cluster.history().fail(handle, value).expect("history");
                } else {
                    cluster.history().info(handle, value).expect("history");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let (mut ok, mut failed) = (0, 0);
    for (handle, send, mut delivery) in pending {
        let outcome = loop {
            match tokio::time::timeout(Duration::from_secs(5), &mut delivery).await {
                Ok(outcome) => break outcome,
                Err(_) => debug(&format!("producer {index}: still waiting for value {:?} (partition {})", send.values, send.key)),
            }
        };
        match outcome {
            Ok(metadata) => {
                ok += 1;
                let offsets = metadata.offset.map(|offset| vec![offset]);
                cluster.history().ok(handle, OpValue::Send(Send { offsets, ..send })).expect("history");
            }
            Err(error) => {
                failed += 1;
                if error.is_definite() {
                    cluster.history().fail(handle, OpValue::Send(send)).expect("history");
                } else {
                    cluster.history().info(handle, OpValue::Send(send)).expect("history");
                }
            }
        }
    }
    debug(&format!("producer {index}: deliveries done"));
    let _ = producer.close().await;
    (ok, failed)
}

/// Polls every partition until `stop` (or, in the drain, until the ends) and records each poll.
async fn consume(cluster: Arc<Cluster>, ends: Option<BTreeMap<u32, u64>>, deadline: tokio::time::Instant) -> usize {
    let addresses = bootstrap();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let mut consumer = Consumer::new(&addresses, ConsumerConfig { max_wait_ms: 200, ..ConsumerConfig::default() }).expect("consumer");
    let keys: Vec<u64> = (0..u64::from(PARTITIONS)).collect();
    let process = cluster.process();
    let assign = cluster.history().invoke(process, OpF::Assign, OpValue::Keys(Keys { keys: keys.clone() })).expect("history");
    consumer.assign((0..PARTITIONS).map(|p| ("t".to_string(), p)).collect()).expect("assign");
    for partition in 0..PARTITIONS {
        loop {
            match consumer.seek("t", partition, Offset::Beginning).await {
                Ok(_) => break,
                Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(error) => panic!("seek failed at the deadline: {error}"),
            }
        }
    }
    cluster.history().ok(assign, OpValue::Keys(Keys { keys })).expect("history");
    let mut read = 0;
    loop {
        if let Some(ends) = &ends {
            if (0..PARTITIONS).all(|p| consumer.position("t", p).unwrap_or(0) >= ends[&p]) {
                return read;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            assert!(ends.is_none(), "the final drain did not reach the end of every partition in time");
            return read;
        }
        let handle = cluster.history().invoke_poll(process).expect("history");
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                let mut poll = Poll::default();
                for record in records {
                    let value: u64 = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).parse().expect("our values");
                    poll.records.entry(u64::from(record.partition)).or_default().push((record.offset, value));
                    read += 1;
                }
                cluster.history().ok(handle, OpValue::Poll(poll)).expect("history");
            }
            // A failed poll moves no position and has no effect: definite.
            Err(_) => {
                cluster.history().fail(handle, OpValue::Poll(Poll::default())).expect("history");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn debug(message: &str) {
    if std::env::var("SIM_DEBUG").is_ok() {
        eprintln!("debug: {message}");
    }
}

fn fault(name: &str, node: u64) -> Fault {
    Fault { fault: name.into(), details: BTreeMap::from([("node".to_string(), node.to_string())]) }
}

async fn scenario(planted: Vec<PlantedBug>) -> odradek_jepsen::checker::Verdict {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ =
            tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).try_init();
    }
    let runtime = Handle::current();
    let seed = runtime.seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let start = tokio::time::Instant::now();
    let clock_start = start;
    let cluster = Arc::new(Cluster {
        disks: NODES.iter().map(|node| (*node, SimDisk::new(seed ^ node.wrapping_mul(0x9E37_79B9_7F4A_7C15)))).collect(),
        planted: planted.clone(),
        start,
        history: Mutex::new(HistoryBuilder::new(move || clock_start.elapsed().as_nanos() as u64)),
        next_process: Mutex::new(0),
    });
    let mut node_ids = BTreeMap::new();
    for node in NODES {
        let shared = cluster.clone();
        let id = runtime
            .create_node()
            .name(format!("server-{node}"))
            .ip(member(node).client.ip())
            .init(move || shared.clone().run_node(node))
            .build()
            .id();
        node_ids.insert(node, id);
    }
    let client = runtime.create_node().name("client").ip(IpAddr::from([10, 0, 1, 1])).build();
    if std::env::var("SIM_DEBUG").is_ok() {
        let watched = cluster.clone();
        client.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!("debug: t={:?} ops={}", watched.start.elapsed(), watched.history().len());
                let addresses = bootstrap();
                let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
                if let Ok(admin) = Admin::new(&addresses) {
                    match tokio::time::timeout(Duration::from_millis(500), admin.describe_topic("t")).await {
                        Ok(Ok(topic)) => {
                            eprintln!(
                                "debug:   leaders {:?}",
                                topic.partitions.iter().map(|p| (p.leader, p.leader_term)).collect::<Vec<_>>()
                            );
                        }
                        other => eprintln!("debug:   describe: {other:?}"),
                    }
                }
            }
        });
    }

    // The topic.
    client
        .spawn(async move {
            let addresses = bootstrap();
            let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
            let admin = Admin::new(&addresses).unwrap();
            for _ in 0..200 {
                match admin.create_topic("t", PARTITIONS, 3, TopicConfig::default()).await {
                    Ok(()) => return,
                    Err(error) if error.is_retriable() => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(ClientError::Server { code: odradek_client::wire::proto::ErrorCode::TOPIC_ALREADY_EXISTS, .. }) => return,
                    Err(error) => panic!("create topic: {error}"),
                }
            }
            panic!("no topic after 200 attempts");
        })
        .await
        .unwrap();

    let producers: Vec<_> = (0..PRODUCERS).map(|index| client.spawn(produce(cluster.clone(), index))).collect();
    let safety_end = tokio::time::Instant::now() + SAFETY_PHASE;
    let consumer = client.spawn(consume(cluster.clone(), None, safety_end));

    // Nemesis: one fault at a time, one node at a time (a quorum always remains).
    let mut faults = 0;
    while tokio::time::Instant::now() + Duration::from_secs(4) < safety_end {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2_000))).await;
        let node = NODES[rng.gen_range(0..NODES.len())];
        let down = Duration::from_millis(rng.gen_range(300..2_500));
        faults += 1;
        match rng.gen_range(0..3) {
            0 | 1 => {
                let (name, mode) =
                    if rng.gen_bool(0.5) { ("F-P1 kill", CrashMode::Process) } else { ("F-P3 power loss", CrashMode::PowerLoss) };
                cluster.history().fault_start(fault(name, node)).unwrap();
                debug(&format!("{name} node {node} for {down:?} at {:?}", cluster.start.elapsed()));
                runtime.kill(node_ids[&node]);
                cluster.disks[&node].crash(mode);
                tokio::time::sleep(down).await;
                runtime.restart(node_ids[&node]);
                cluster.history().fault_stop(fault(name, node)).unwrap();
            }
            _ => {
                cluster.history().fault_start(fault("F-N1 isolate", node)).unwrap();
                debug(&format!("isolate node {node} for {down:?} at {:?}", cluster.start.elapsed()));
                let net = madsim::net::NetSim::current();
                net.clog_node(node_ids[&node]);
                tokio::time::sleep(down).await;
                net.unclog_node(node_ids[&node]);
                cluster.history().fault_stop(fault("F-N1 isolate", node)).unwrap();
            }
        }
    }

    debug(&format!("safety phase over after {faults} faults"));
    // Liveness: everything healed; the producers finish, then the final drain.
    let (mut acked, mut failed) = (0, 0);
    for producer in producers {
        let (ok, bad) = producer.await.unwrap();
        debug(&format!("a producer finished: {ok} ok {bad} failed"));
        acked += ok;
        failed += bad;
    }
    let polled = consumer.await.unwrap();
    debug("consumer finished");
    let ends = client
        .spawn(async move {
            let addresses = bootstrap();
            let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
            let admin = Admin::new(&addresses).unwrap();
            let mut ends = BTreeMap::new();
            for partition in 0..PARTITIONS {
                let end = loop {
                    match admin.list_offsets("t", partition, OffsetQuery::Latest).await {
                        Ok(end) => break end.offset,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                ends.insert(partition, end);
            }
            ends
        })
        .await
        .unwrap();
    debug(&format!("ends {ends:?}"));
    cluster.history().final_drain().unwrap();
    let drained =
        client.spawn(consume(cluster.clone(), Some(ends.clone()), tokio::time::Instant::now() + Duration::from_secs(30))).await.unwrap();

    let history = std::mem::replace(&mut *cluster.history(), HistoryBuilder::new(|| 0)).finish();
    let verdict = check(&history, &CheckOptions::default());
    let mut lines = Vec::new();
    history.write_json_lines(&mut lines).unwrap();
    let trace_hash =
        lines.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3));
    println!(
        "seed {seed}: {faults} faults, {acked} acked, {failed} failed, {polled} read while faulting, {drained} drained (ends {ends:?}), {} ops, trace hash {trace_hash:016x}",
        history.len()
    );
    if planted.is_empty() {
        assert!(
            verdict.valid,
            "seed {seed}: the checker found anomalies. Replay: MADSIM_TEST_SEED={seed} sim/madsim test -p odradek-sim --test server_cluster -- --nocapture\n{verdict}"
        );
        assert!(acked > 0, "seed {seed}: nothing was acknowledged");
    }
    verdict
}

#[madsim::test]
async fn safety_then_liveness_with_faults() {
    scenario(Vec::new()).await;
}

/// The checker's teeth: with a planted bug, some seed of a fixed range must fail, and the
/// invariant that caught it is named. Seeds run in sequence, each in its own simulation.
fn planted_bug_is_caught(bug: PlantedBug, seeds: std::ops::RangeInclusive<u64>, invariants: &[&str]) {
    for seed in seeds.clone() {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let verdict = runtime.block_on(scenario(vec![bug]));
        if !verdict.valid {
            let caught: Vec<&str> = verdict.counts.iter().filter(|(_, count)| count.fatal > 0).map(|(kind, _)| kind.invariant()).collect();
            println!("planted {}: caught at seed {seed} by {caught:?}", bug.name());
            assert!(
                caught.iter().any(|id| invariants.contains(id)),
                "planted {}: seed {seed} caught by {caught:?}, expected one of {invariants:?}",
                bug.name()
            );
            return;
        }
    }
    panic!("planted {}: no seed in {seeds:?} caught it", bug.name());
}

#[test]
fn planted_ack_before_commit_is_caught() {
    planted_bug_is_caught(PlantedBug::AckBeforeCommit, 1..=30, &["L6", "L7", "L5", "L13", "L1"]);
}

#[test]
fn planted_skip_dedup_is_caught() {
    planted_bug_is_caught(PlantedBug::SkipDedup, 1..=30, &["L2", "L6", "L1", "L10", "P2"]);
}

#[test]
fn planted_serve_above_commit_is_caught() {
    planted_bug_is_caught(PlantedBug::ServeAboveCommit, 1..=30, &["L4", "L12", "L13", "L3", "L1"]);
}
