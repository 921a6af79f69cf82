//! Multi-raft commit throughput and latency: 3 nodes in one process over loopback TCP, each
//! with real files and real fsync (FsDisk), P partitions (raft groups) with pipelined 1 KiB
//! proposals.
//!
//! `cargo bench -p odradek-consensus --bench raft_bench` (options after `--`: `--seconds S` per
//! configuration, `--in-flight N` proposals outstanding in total, `--partitions 1,16,256`,
//! `--dir PATH`).
//!
//! Prints commits/s, commit latency p50/p99/max (propose to commit acknowledged at the leader)
//! and fsyncs per commit, summed over the three nodes: group commit shows as far fewer log
//! fsyncs than commits when many partitions share a round.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use odradek_consensus::{Apply, Committed, EntryMeta, GroupId, Node, NodeConfig, NodeHandle, NodeId, NodeStats, TcpTransport};
use odradek_log::FsDisk;
use tokio::sync::Semaphore;

const NODES: [NodeId; 3] = [1, 2, 3];
const PROPOSAL_BYTES: usize = 1024;
const TICK: Duration = Duration::from_millis(10);
/// Bound on waiting for every group to elect a leader.
const ELECTION_WAIT_MAX: Duration = Duration::from_secs(60);

/// The bench applies nothing: it measures consensus and the log, not a state machine.
struct Discard;

impl Apply for Discard {
    fn apply(&mut self, _group: GroupId, _entries: &[Committed]) {}
    fn restore(&mut self, _group: GroupId, _index: u64, _term: u64, _offset_next: u64, _start: Option<&odradek_log::StartState>) {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = arg("--seconds").map_or(5.0, |s| s.parse().expect("--seconds takes a number"));
    let in_flight: usize = arg("--in-flight").map_or(256, |s| s.parse().expect("--in-flight takes a number"));
    let partitions: Vec<u64> =
        arg("--partitions").unwrap_or_else(|| "1,16,256".into()).split(',').map(|p| p.parse().expect("--partitions: numbers")).collect();
    let base = arg("--dir").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&base).expect("bench dir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    println!("odradek-consensus bench: 3 nodes, one process, loopback TCP, FsDisk (fdatasync), {PROPOSAL_BYTES} B proposals");
    println!(
        "machine: {} cores; {seconds:.1} s per configuration; {in_flight} proposals in flight in total (at least 1 per partition)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>10} {:>9} {:>10} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "partitions", "commits", "commits/s", "p50 ms", "p99 ms", "max ms", "fsyncs/commit", "rounds/commit"
    );
    for p in partitions {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        runtime.block_on(run(dir.path().to_path_buf(), p, in_flight.max(p as usize), Duration::from_secs_f64(seconds)));
    }
}

async fn start_cluster(dir: PathBuf) -> BTreeMap<NodeId, NodeHandle> {
    let mut transports = BTreeMap::new();
    let mut addresses: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
    for id in NODES {
        let (transport, inbox) = TcpTransport::bind(id, "127.0.0.1:0".parse().unwrap(), BTreeMap::new()).await.expect("bind");
        addresses.insert(id, transport.local_addr());
        transports.insert(id, (transport, inbox));
    }
    let started = Instant::now();
    let mut handles = BTreeMap::new();
    for (id, (transport, inbox)) in transports {
        for (&peer, &address) in addresses.iter().filter(|(&peer, _)| peer != id) {
            transport.set_peer(peer, address);
        }
        let config = NodeConfig::new(id, dir.join(format!("node-{id}")));
        let node = Node::new(config, FsDisk::new(), transport, inbox, Discard);
        let (handle, commands) = NodeHandle::new();
        tokio::spawn(node.run(commands, TICK, move || started.elapsed().as_millis() as i64));
        handles.insert(id, handle);
    }
    handles
}

/// The leader of every group, once each has one.
async fn wait_for_leaders(handles: &BTreeMap<NodeId, NodeHandle>, groups: u64) -> BTreeMap<GroupId, NodeId> {
    let started = Instant::now();
    loop {
        let mut leaders = BTreeMap::new();
        for group in 1..=groups {
            let status = handles[&1].status(group).await.expect("node 1 runs");
            if let Some((status, _)) = status.filter(|(status, _)| status.leader != 0) {
                leaders.insert(group, status.leader);
            }
        }
        if leaders.len() as u64 == groups {
            return leaders;
        }
        assert!(started.elapsed() < ELECTION_WAIT_MAX, "only {} of {groups} groups elected a leader", leaders.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stats_total(handles: &BTreeMap<NodeId, NodeHandle>) -> NodeStats {
    let mut total = NodeStats::default();
    for handle in handles.values() {
        let stats = handle.stats().await.expect("node runs");
        total.rounds += stats.rounds;
        total.log_syncs += stats.log_syncs;
        total.hard_state_saves += stats.hard_state_saves;
    }
    total
}

async fn run(dir: PathBuf, partitions: u64, in_flight: usize, duration: Duration) {
    let handles = start_cluster(dir).await;
    for handle in handles.values() {
        for group in 1..=partitions {
            handle.create_group(group, NODES.to_vec(), 0).await.expect("create group");
        }
    }
    let leaders = wait_for_leaders(&handles, partitions).await;
    let before = stats_total(&handles).await;
    let permits = Arc::new(Semaphore::new(in_flight));
    let latencies = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let payload = Bytes::from(vec![0x42u8; PROPOSAL_BYTES]);
    let meta = EntryMeta::Data { record_count: 1, timestamp_max: 0 };
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut group = 0u64;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    while started.elapsed() < duration {
        let permit = permits.clone().acquire_owned().await.expect("semaphore open");
        group = group % partitions + 1;
        let handle = handles[&leaders[&group]].clone();
        let (latencies, payload) = (latencies.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let one = Instant::now();
            let outcome = handle.propose(group, payload, meta).await;
            if outcome.is_ok() {
                latencies.lock().unwrap().record(one.elapsed().as_micros() as u64).expect("record");
            }
            drop(permit);
            outcome.err().map(|error| format!("{error:?}").split(['(', ' ', '{']).next().unwrap_or("").to_string())
        }));
        if tasks.len() >= 4 * in_flight {
            for task in tasks.drain(..in_flight) {
                if let Some(kind) = task.await.expect("task") {
                    *failures.entry(kind).or_default() += 1;
                }
            }
        }
    }
    for task in tasks {
        if let Some(kind) = task.await.expect("task") {
            *failures.entry(kind).or_default() += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = stats_total(&handles).await;
    let latencies = latencies.lock().unwrap();
    let commits = latencies.len();
    println!(
        "{:>10} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>12.3} {:>12.3}{}",
        partitions,
        commits,
        commits as f64 / elapsed,
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0,
        (after.log_syncs - before.log_syncs) as f64 / commits.max(1) as f64,
        (after.rounds - before.rounds) as f64 / commits.max(1) as f64,
        if failures.is_empty() { String::new() } else { format!("  failed proposals: {failures:?}") }
    );
}
