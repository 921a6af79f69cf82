//! The real-process Jepsen-style harness behind `odradek-jepsen run` (not built under madsim).
//!
//! One run, in order:
//! 1. proxies for every directed peer link ([`proxy`]), then `--nodes` real `odradek server`
//!    processes on loopback whose peer addresses point at those proxies ([`cluster`]);
//! 2. a topic of `keys` partitions; producer and consumer workers (`--workload log`; with
//!    `--client kafka` through a Kafka client library over the Kafka listeners, [`kafka`]) or
//!    consumer-group members (`--workload subscribe`, [`groups`]), a leader observer (with
//!    `--delete-records` a deleter, DR1; with `--offset-delete` an offset deleter sending raw Kafka
//!    OffsetDelete requests over the nodes' Kafka listeners, C9, [`groups::offset_delete_worker`])
//!    and the nemesis run for `time_limit` ([`workload`], [`nemesis`]);
//! 3. the nemesis stops and heals everything, the workers go on for `recovery`, then stop;
//! 4. every node is killed and restarted (CHECKLISTS L7), then the final drain (a fresh consumer
//!    reads every partition from the beginning to its end),
//!    and with `--workload subscribe` a fresh read of every group's committed offsets;
//! 5. every server is killed; the caller checks the history and writes the report.
//!
//! Bounds: the run lasts about `time_limit + recovery + DRAIN_TIMEOUT` plus setup (each node
//! start is bounded by `NODE_START_TIMEOUT`, topic creation by [`SETUP_TIMEOUT`]); load is
//! bounded by `rate` (sends per second, all producers together) and by one op in flight per
//! worker. Every process the harness starts is killed when the run ends, when it panics
//! ([`cluster::install_panic_hook`]) and when the caller drops the run on ctrl-c
//! ([`cluster::kill_registered`]).

pub mod cluster;
pub mod groups;
pub mod kafka;
pub mod nemesis;
pub mod ports;
pub mod proxy;
pub mod secure;
pub mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, TopicConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;

use crate::history::{Acks, History, HistoryBuilder};
use cluster::ProcessCluster;
use proxy::Proxies;
use workload::{Recorder, WorkloadTarget};

/// Bound on creating the topic and seeing a leader for each of its partitions.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a worker finishing its current op once told to stop.
pub const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most nodes a run may start (the server's own limit is 7 voters).
pub const NODES_MAX: usize = 7;
/// Most sends per second a run may ask for.
pub const RATE_MAX: f64 = 5000.0;
/// The test topic.
pub const TOPIC: &str = "jepsen";

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Producers and consumers that assign every partition (the log checks).
    Log,
    /// Producers and consumer-group members in one group per protocol ([`groups`]), plus the
    /// log checks over their polls and the final drain.
    Subscribe,
}

/// Which client library the producers and consumers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// Odradek's own client over the native listener.
    Native,
    /// An existing Kafka client library over the nodes' Kafka listeners ([`kafka`]).
    Kafka,
}

/// Everything a run is told (stored in the report as `run.json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub workload: Workload,
    pub client: Client,
    pub nodes: usize,
    pub time_limit: Duration,
    /// Sends per second, all producers together.
    pub rate: f64,
    pub nemesis: Vec<String>,
    pub acks: Acks,
    pub binary: PathBuf,
    pub out: PathBuf,
    /// Partitions of the test topic.
    pub keys: u32,
    pub replication_factor: u32,
    pub producers: usize,
    /// Consumer workers (`log`), or members per group (`subscribe`).
    pub consumers: usize,
    pub seed: u64,
    /// Quiet time before each fault, and how long each fault lasts.
    pub fault_quiet: Duration,
    pub fault_window: Duration,
    /// Workers keep running this long after the heal, before the final drain.
    pub recovery: Duration,
    /// Deliberate breakages every server is started with (`--planted-bug`, test builds only).
    pub planted_bugs: Vec<String>,
    /// TLS on client listeners and mutual TLS on peer links (certificates from `odradek tls
    /// init` under `out/certs`); the proxies forward the encrypted bytes unchanged.
    pub tls: bool,
    /// Security on (`--secure`, [`secure`]): SCRAM logins and ACLs on every node.
    pub secure: bool,
    /// A `delete-records` worker ([`workload::deleter_worker`], DR1).
    pub delete_records: bool,
    /// `--workload subscribe`: the consumer-protocol group subscribes with a regex the
    /// coordinator resolves, beside the decoy topic [`groups::decoy_topic`] (C8).
    pub regex: bool,
    /// Short retention on the test topic ([`RETENTION_TOPIC_CONFIG`]): segments deleted under
    /// the faults, lagging replicas caught up by snapshots, log starts recorded
    /// ([`workload::log_start_observer`]).
    pub retention: bool,
    /// `--workload subscribe`: a worker deletes the groups' committed offsets with raw Kafka
    /// OffsetDelete requests over the nodes' Kafka listeners ([`groups::offset_delete_worker`], C9).
    pub offset_delete: bool,
}

/// `--retention`: the test topic's settings. Small segments kept for 8 KiB or 5 s per
/// partition, so that at tens of records per second per partition retention deletes every
/// second or two while the nemesis cuts and kills nodes, and a replica away for a few seconds
/// needs a snapshot.
pub const RETENTION_TOPIC_CONFIG: TopicConfig =
    TopicConfig { segment_bytes: 2048, retention_bytes: 8 * 1024, retention_ms: 5_000, batch_bytes_max: 0 };

impl RunConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(3..=NODES_MAX).contains(&self.nodes) {
            return Err(format!("--nodes {} outside 3..={NODES_MAX}", self.nodes));
        }
        if !(self.rate > 0.0 && self.rate <= RATE_MAX) {
            return Err(format!("--rate {} outside (0, {RATE_MAX}]", self.rate));
        }
        if self.keys == 0 || self.producers == 0 || self.consumers == 0 {
            return Err("--keys, --producers and --consumers must be at least 1".into());
        }
        if self.replication_factor == 0 || self.replication_factor as usize > self.nodes {
            return Err(format!("--replication-factor {} outside 1..={}", self.replication_factor, self.nodes));
        }
        if self.client == Client::Kafka {
            // The library produces with acks=all only and has no consumer groups; it logs in
            // with SASL/SCRAM under `--secure` and speaks TLS under `--tls`.
            if self.acks != Acks::All || self.workload != Workload::Log {
                return Err("--client kafka runs --workload log with --acks all".into());
            }
        }
        if self.regex && self.workload != Workload::Subscribe {
            return Err("--regex runs with --workload subscribe".into());
        }
        if self.retention && (self.workload != Workload::Log || self.client != Client::Native) {
            // The group checks read skipped offsets as gaps; the Kafka library's consumer has no
            // rewind to the log start.
            return Err("--retention runs with --workload log and --client native".into());
        }
        // Nodes that `--nemesis membership` adds open a Kafka listener of their own when the run
        // has Kafka listeners (`ProcessCluster::add_joining`), so the deleter's FindCoordinator
        // can name one and its OffsetDelete reach it.
        if self.offset_delete && self.workload != Workload::Subscribe {
            return Err("--offset-delete runs with --workload subscribe".into());
        }
        if self.delete_records && self.workload != Workload::Log {
            // The group checks (C3, C6) read every skipped offset as a gap; deletion makes gaps.
            return Err("--delete-records runs with --workload log".into());
        }
        if !self.binary.is_file() {
            return Err(format!(
                "server binary {} not found; build it with `cargo build -p odradek-server --bin odradek` or pass --binary",
                self.binary.display()
            ));
        }
        Ok(())
    }
}

/// What a run produced besides its history: facts for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunNotes {
    /// Problems that are not history anomalies but still fail the run (a server that exited by
    /// itself, a final drain that did not finish).
    pub problems: Vec<String>,
    /// Informational lines (addresses, timings).
    pub info: Vec<String>,
    /// The committed log as the final drain read it (for P1, P3, P4).
    #[serde(skip)]
    pub log_dump: Option<Vec<crate::checker::LogRecord>>,
}

/// Runs the whole test; returns the history and notes. `Err` only if the cluster could not be
/// set up (no history worth checking).
pub async fn run(config: &RunConfig) -> Result<(History, RunNotes), String> {
    config.validate()?;
    let mut notes = RunNotes::default();
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let data_dir = config.out.join("cluster");
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;

    // Held until the run ends: restarted nodes bind the same ports again.
    // Peer and client ports per node, then (Kafka client) each node's Kafka listener, then the
    // proxies' ports: every port of the run comes from the block (`ODRADEK_TEST_PORTS`).
    let port_block = ports::reserve(config.nodes * 3 + proxy::proxy_ports(config.nodes)).map_err(|e| format!("choosing ports: {e}"))?;
    let (node_ports, rest) = port_block.ports().split_at(config.nodes * 2);
    let (kafka_ports, proxy_ports) = rest.split_at(config.nodes);
    let (proxy_ports, kafka_proxy_ports) = proxy_ports.split_at(proxy_ports.len() - config.nodes);
    let ports: Vec<(u16, u16)> = node_ports.chunks(2).map(|p| (p[0], p[1])).collect();
    let peer_ports: Vec<u16> = ports.iter().map(|p| p.0).collect();
    let client_ports: Vec<u16> = ports.iter().map(|p| p.1).collect();
    let mut proxies = Proxies::start(&peer_ports, &client_ports, proxy_ports).await.map_err(|e| format!("starting proxies: {e}"))?;
    // The Kafka listeners: for the Kafka client, or for the offset deleter's raw requests.
    let with_kafka = config.client == Client::Kafka || config.offset_delete;
    let kafka_listen = if with_kafka { kafka_ports.to_vec() } else { Vec::new() };
    if with_kafka {
        proxies.start_kafka(&kafka_listen, kafka_proxy_ports).await.map_err(|e| format!("starting Kafka proxies: {e}"))?;
    }
    let proxies = Arc::new(proxies);
    let client_proxies = (1..=config.nodes as u64).map(|id| proxies.client_port(id)).collect();
    let (tls_flags, client_tls) = if config.tls { tls_certificates(config)? } else { (Vec::new(), None) };
    let mut cluster = ProcessCluster::new(&config.binary, &data_dir, &ports, proxies.port_matrix(), client_proxies, &config.planted_bugs)
        .map_err(|e| format!("cluster layout: {e}"))?;
    cluster.set_tls_flags(tls_flags);
    cluster.kafka_ports = kafka_listen.iter().enumerate().map(|(i, &port)| (port, proxies.kafka_port(i as u64 + 1))).collect();
    if config.secure {
        cluster.security_flags = secure::server_flags(&data_dir).map_err(|e| format!("users file: {e}"))?;
    }
    let cluster = Arc::new(Mutex::new(cluster));
    let targets: Vec<_> = {
        let mut cluster = cluster.lock().expect("cluster lock");
        for id in cluster.ids() {
            cluster.spawn(id).map_err(|e| format!("starting node {id} ({}): {e}", config.binary.display()))?;
        }
        cluster.ids().into_iter().map(|id| cluster.listen_target(id)).collect()
    };
    for target in targets {
        cluster::wait_listening(target).await?;
    }
    let bootstrap = cluster.lock().expect("cluster lock").client_addresses();
    notes.info.push(format!("nodes (client addresses): {}", bootstrap.join(", ")));
    let kafka = (config.client == Client::Kafka)
        .then(|| (1..=config.nodes as u64).map(|id| format!("127.0.0.1:{}", proxies.kafka_port(id))).collect::<Vec<_>>());
    if let Some(kafka) = &kafka {
        notes.info.push(format!("client kafka (rskafka) via the Kafka listeners: {}", kafka.join(", ")));
    }
    let mut target =
        WorkloadTarget { bootstrap, topic: TOPIC.to_string(), keys: config.keys, acks: config.acks, tls: client_tls, sasl: None, kafka };
    if config.secure {
        target.sasl = Some(secure::setup(&target).await?);
        notes.info.push("secure: every node requires SCRAM and checks ACLs; the workload logs in as its own user".to_string());
    }
    let topic_config = if config.retention { RETENTION_TOPIC_CONFIG } else { TopicConfig::default() };
    create_topic(&target, &target.topic, target.keys, config.replication_factor, topic_config).await?;
    if config.retention {
        notes.info.push(format!("retention: topic {} keeps {RETENTION_TOPIC_CONFIG:?}", target.topic));
    }
    if config.regex {
        let decoy = groups::decoy_topic(&target.topic);
        create_topic(&target, &decoy, 1, config.replication_factor, TopicConfig::default()).await?;
        notes.info.push(format!("regex: the consumer-protocol group subscribes with a pattern; decoy topic {decoy:?}"));
    }

    let started = Instant::now();
    let recorder = Arc::new(Recorder::new(started));
    let (stop_workers, workers_stopping) = watch::channel(false);
    let (stop_nemesis, nemesis_stopping) = watch::channel(false);
    let mut workers = Vec::new();
    let interval = Duration::from_secs_f64(config.producers as f64 / config.rate);
    for worker in 0..config.producers {
        let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
        let key = worker as u32 % config.keys;
        workers.push(match config.client {
            Client::Native => tokio::spawn(workload::producer_worker(recorder, target, key, interval, rng.gen(), stop)),
            Client::Kafka => tokio::spawn(kafka::producer_worker(recorder, target, key, interval, rng.gen(), stop)),
        });
    }
    match config.workload {
        Workload::Log if config.client == Client::Kafka => {
            for _ in 0..config.consumers {
                let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
                workers.push(tokio::spawn(kafka::consumer_worker(recorder, target, stop)));
            }
        }
        Workload::Log => {
            for _ in 0..config.consumers {
                let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
                workers.push(tokio::spawn(workload::consumer_worker(recorder, target, stop)));
            }
        }
        Workload::Subscribe => {
            for group in groups::GROUPS {
                for _ in 0..config.consumers {
                    let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
                    workers.push(tokio::spawn(groups::member_worker(recorder, target, group, config.regex, rng.gen(), stop)));
                }
            }
        }
    }
    if config.offset_delete {
        let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
        let addresses: Vec<String> = (1..=config.nodes as u64).map(|id| format!("127.0.0.1:{}", proxies.kafka_port(id))).collect();
        notes.info.push(format!("offset-delete: raw OffsetDelete requests via the Kafka listeners {}", addresses.join(", ")));
        workers.push(tokio::spawn(groups::offset_delete_worker(recorder, target, addresses, rng.gen(), stop)));
    }
    workers.push(tokio::spawn(workload::leader_observer(recorder.clone(), target.clone(), workers_stopping.clone())));
    if config.retention {
        let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
        workers.push(tokio::spawn(workload::log_start_observer(recorder, target, stop)));
    }
    if config.delete_records {
        let (recorder, target, stop) = (recorder.clone(), target.clone(), workers_stopping.clone());
        workers.push(tokio::spawn(workload::deleter_worker(recorder, target, rng.gen(), stop)));
    }
    let nemesis = tokio::spawn(nemesis::run(
        recorder.clone(),
        cluster.clone(),
        proxies.clone(),
        (
            config.nemesis.clone(),
            (config.workload == Workload::Subscribe).then(|| target.clone()),
            (target.clone(), config.replication_factor as usize),
        ),
        (config.fault_quiet, config.fault_window),
        SmallRng::seed_from_u64(rng.gen()),
        nemesis_stopping,
    ));

    tokio::time::sleep(config.time_limit).await;
    stop_nemesis.send_replace(true);
    match nemesis.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => notes.problems.push(format!("nemesis: {error}")),
        Err(error) => notes.problems.push(format!("nemesis task: {error}")),
    }
    proxies.heal(); // Whatever the nemesis did, the drain runs on a healed network.
    notes.info.push(format!("healed at {:.1} s", started.elapsed().as_secs_f64()));
    tokio::time::sleep(config.recovery).await;
    stop_workers.send_replace(true);
    for worker in workers {
        let abort = worker.abort_handle();
        if tokio::time::timeout(WORKER_STOP_TIMEOUT, worker).await.is_err() {
            abort.abort();
            notes.problems.push(format!("a worker did not stop within {WORKER_STOP_TIMEOUT:?}; its open op stays indeterminate"));
        }
    }
    for (id, status) in cluster.lock().expect("cluster lock").exited() {
        notes.problems.push(format!("node {id} exited by itself ({status}); see {}", config.out.join("cluster/logs").display()));
    }
    // CHECKLISTS L7: the final drain reads from a cluster whose every node restarted (SIGKILL,
    // then the same flags and data directory), so nothing acknowledged may live only in a
    // process's memory (DR1's planted bug does).
    if let Err(error) = restart_all(&cluster).await {
        notes.problems.push(error);
    }
    notes.info.push(format!("every node restarted for the final drain at {:.1} s", started.elapsed().as_secs_f64()));
    if let Err(error) = workload::final_drain(&recorder, &target).await {
        notes.problems.push(error);
    }
    if config.retention {
        // After the drain: the log starts it may have met (they only grow).
        if let Err(error) = workload::final_log_starts(&recorder, &target).await {
            notes.problems.push(error);
        }
        // R7 / R12 b: a replica retention left behind has caught up by a snapshot.
        match workload::replicas_converged(&target).await {
            Ok(()) => notes.info.push(format!("replicas converged at {:.1} s", started.elapsed().as_secs_f64())),
            Err(error) => notes.problems.push(error),
        }
    }
    if config.workload == Workload::Subscribe {
        if let Err(error) = groups::final_fetch(&recorder, &target).await {
            notes.problems.push(error);
        }
    }
    notes.info.push(format!("drain finished at {:.1} s", started.elapsed().as_secs_f64()));
    notes.problems.extend(recorder.take_problems());
    cluster.lock().expect("cluster lock").kill_all();
    notes.log_dump = recorder.take_log_dump();
    let history = std::mem::replace(&mut *recorder.history(), HistoryBuilder::new(|| 0)).finish();
    Ok((history, notes))
}

/// SIGKILLs and restarts every active node, then waits until each one listens.
async fn restart_all(cluster: &Arc<Mutex<ProcessCluster>>) -> Result<(), String> {
    let targets: Vec<_> = {
        let mut cluster = cluster.lock().expect("cluster lock");
        let ids = cluster.active_ids();
        for &id in &ids {
            cluster.kill(id);
        }
        for &id in &ids {
            cluster.spawn(id).map_err(|e| format!("restarting node {id} for the final drain: {e}"))?;
        }
        ids.into_iter().map(|id| cluster.listen_target(id)).collect()
    };
    for target in targets {
        cluster::wait_listening(target).await?;
    }
    Ok(())
}

/// `odradek tls init` under `out/certs`: the servers' `--tls-dir` flags and the workers' TLS.
fn tls_certificates(config: &RunConfig) -> Result<(Vec<String>, Option<odradek_client::tls::ClientTls>), String> {
    let dir = config.out.join("certs");
    let nodes: Vec<String> = (1..=config.nodes).map(|id| id.to_string()).collect();
    let output = std::process::Command::new(&config.binary)
        .args(["tls", "init", dir.to_str().ok_or("the output dir is not UTF-8")?, "--force", "--nodes", &nodes.join(",")])
        .output()
        .map_err(|e| format!("running {} tls init: {e}", config.binary.display()))?;
    if !output.status.success() {
        return Err(format!("odradek tls init failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let flags = vec!["--tls-dir".to_string(), dir.to_str().expect("checked above").to_string()];
    Ok((flags, Some(odradek_client::tls::ClientTls::new(odradek_client::tls::Pem::File(dir.join("ca.pem"))))))
}

/// Creates `topic` with `partitions` and `topic_config` and waits until each partition has a
/// leader, within [`SETUP_TIMEOUT`].
async fn create_topic(
    target: &WorkloadTarget,
    topic: &str,
    partitions: u32,
    replication_factor: u32,
    topic_config: TopicConfig,
) -> Result<(), String> {
    let bootstrap: Vec<&str> = target.bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::with_cluster(
        odradek_client::ClusterSession::new(&bootstrap, workload::cluster_config(target, "jepsen-setup".into()))
            .map_err(|e| e.to_string())?,
    );
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut error_last = String::new();
    while Instant::now() < deadline {
        let created = admin.create_topic(topic, partitions, replication_factor, topic_config).await;
        match created {
            Ok(()) => break,
            // An earlier attempt may have created it and lost the answer.
            Err(error) if error.code() == Some(ErrorCode::TOPIC_ALREADY_EXISTS) => break,
            Err(error) => error_last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while Instant::now() < deadline {
        if let Ok(described) = admin.describe_topic(topic).await {
            if described.partitions.len() == partitions as usize && described.partitions.iter().all(|p| p.leader != 0) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("topic {topic:?} not ready within {SETUP_TIMEOUT:?} (last create error: {error_last})"))
}
