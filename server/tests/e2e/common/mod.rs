//! Real `odradek server` processes on loopback for the end-to-end tests: free ports, a temp
//! data dir per node, SIGKILL and restart, and every process killed when the cluster drops.

#![allow(dead_code)]

pub mod raw;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odradek_client::{Admin, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use odradek_jepsen::harness::ports::{reserve, PortBlock};

pub struct NodeProcess {
    pub id: u64,
    pub peer_port: u16,
    pub client_port: u16,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    /// A node that starts by joining: its extra flags (`--join ADDR`, ...).
    pub join_flags: Option<Vec<String>>,
    /// Listed in the other nodes' bootstrap list (`--node`): the nodes the cluster started
    /// with, also once one of them rejoins ([`ProcessCluster::rejoin`]).
    pub bootstrap_member: bool,
    /// Its Kafka listener's port, advertised in its `--node` entry
    /// ([`ProcessCluster::start_with_kafka`]).
    pub kafka_port: Option<u16>,
}

impl NodeProcess {
    /// Its `--node` entry: `ID=PEER/CLIENT`, with `/KAFKA` when it has a Kafka listener.
    fn member_spec(&self) -> String {
        let kafka = self.kafka_port.map(|port| format!("/127.0.0.1:{port}")).unwrap_or_default();
        format!("{}=127.0.0.1:{}/127.0.0.1:{}{kafka}", self.id, self.peer_port, self.client_port)
    }
}

pub struct ProcessCluster {
    pub nodes: Vec<NodeProcess>,
    _dir: tempfile::TempDir,
    log_dir: PathBuf,
    /// Top-level TOML settings every node runs with (`odradek server --config`); none: flags.
    settings: Option<String>,
    /// The nodes' ports, reserved while the cluster lives (restarts bind them again).
    _ports: PortBlock,
    /// The ports of nodes added later ([`ProcessCluster::add_joining`]).
    _ports_added: Vec<PortBlock>,
    /// Every node has a Kafka listener ([`ProcessCluster::start_with_kafka`]).
    kafka: bool,
}

impl ProcessCluster {
    /// Starts `count` nodes and waits until each accepts client connections.
    pub fn start(count: usize) -> ProcessCluster {
        ProcessCluster::start_inner(count, None)
    }

    /// [`ProcessCluster::start`] with top-level TOML `settings` (e.g. `connections_max = 8`)
    /// in every node's configuration file.
    pub fn start_with_settings(count: usize, settings: &str) -> ProcessCluster {
        ProcessCluster::start_inner(count, Some(settings.to_string()))
    }

    /// [`ProcessCluster::start`] with a Kafka listener on every node, each one's address in its
    /// `--node` entry (`ID=PEER/CLIENT/KAFKA`); nodes added later get one too.
    pub fn start_with_kafka(count: usize) -> ProcessCluster {
        ProcessCluster::start_full(count, None, true)
    }

    fn start_inner(count: usize, settings: Option<String>) -> ProcessCluster {
        ProcessCluster::start_full(count, settings, false)
    }

    fn start_full(count: usize, settings: Option<String>, kafka: bool) -> ProcessCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let per_node = if kafka { 3 } else { 2 };
        let port_block = reserve(count * per_node).expect("free ports");
        let ports = port_block.ports();
        let nodes = (0..count)
            .map(|i| NodeProcess {
                id: i as u64 + 1,
                peer_port: ports[per_node * i],
                client_port: ports[per_node * i + 1],
                data_dir: dir.path().join(format!("node-{}", i + 1)),
                child: None,
                join_flags: None,
                bootstrap_member: true,
                kafka_port: kafka.then(|| ports[per_node * i + 2]),
            })
            .collect();
        let log_dir = dir.path().join("logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let mut cluster = ProcessCluster { nodes, _dir: dir, log_dir, settings, _ports: port_block, _ports_added: Vec::new(), kafka };
        for id in 1..=count as u64 {
            cluster.spawn(id);
        }
        for id in 1..=count as u64 {
            cluster.wait_listening(id);
        }
        cluster
    }

    fn node_flags(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.bootstrap_member).flat_map(|n| ["--node".to_string(), n.member_spec()]).collect()
    }

    /// A configuration file for node `id` with `settings` (the flags' equivalent, plus them).
    /// Settings come before `[[nodes]]`, so they may end in a table (`[tls]`).
    fn config_file(&self, id: u64, settings: &str) -> PathBuf {
        let node = &self.nodes[id as usize - 1];
        // `{id}` in the settings is this node's id (per-node file names: TLS certificates).
        let settings = settings.replace("{id}", &id.to_string());
        let mut text = format!("id = {id}\ndata_dir = {:?}\ntick_ms = 20\n{settings}\n", node.data_dir.to_str().unwrap());
        for n in self.nodes.iter().filter(|n| n.bootstrap_member) {
            text.push_str(&format!(
                "[[nodes]]\nid = {}\npeer = \"127.0.0.1:{}\"\nclient = \"127.0.0.1:{}\"\n",
                n.id, n.peer_port, n.client_port
            ));
        }
        let path = self.log_dir.join(format!("node-{id}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn spawn(&mut self, id: u64) {
        let node = &self.nodes[id as usize - 1];
        let flags = |members: Vec<String>| -> Vec<String> {
            let mut args: Vec<String> = vec![
                "--id".into(),
                id.to_string(),
                "--data-dir".into(),
                node.data_dir.to_str().unwrap().into(),
                "--tick-ms".into(),
                "20".into(),
            ];
            args.extend(members);
            args
        };
        let args: Vec<String> = match (&node.join_flags, &self.settings) {
            // A joining node names only itself, then how to join.
            (Some(joining), _) => {
                let own = node.member_spec();
                flags(["--node".to_string(), own].into_iter().chain(joining.iter().cloned()).collect())
            }
            (None, Some(settings)) => vec!["--config".into(), self.config_file(id, settings).to_str().unwrap().into()],
            (None, None) => flags(self.node_flags()),
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_dir.join(format!("node-{id}.log"))).unwrap();
        let node = &mut self.nodes[id as usize - 1];
        std::fs::create_dir_all(&node.data_dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_odradek"))
            .arg("server")
            .args(args)
            .env("ODRADEK_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn odradek server");
        node.child = Some(child);
    }

    fn wait_listening(&self, id: u64) {
        let port = self.nodes[id as usize - 1].client_port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node {id} did not listen on {port} within 20 s; log:\n{}", self.log(id));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's log so far (for failure messages).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("node-{id}.log"))).unwrap_or_default()
    }

    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    /// Node `id`'s Kafka address ([`ProcessCluster::start_with_kafka`]).
    pub fn kafka_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.nodes[id as usize - 1].kafka_port.expect("a cluster started with Kafka listeners"))
    }

    pub fn client_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.nodes[id as usize - 1].client_port)
    }

    /// SIGKILL: no shutdown, unsynced data as the kernel has it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[id as usize - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let mut child = self.nodes[id as usize - 1].child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {id} did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Adds node `id` (the next id, outside the bootstrap list) with its own ports and data
    /// directory, joining through `flags` (e.g. `--join 127.0.0.1:PORT`); does not start it.
    pub fn add_joining(&mut self, flags: &[String]) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let block = reserve(if self.kafka { 3 } else { 2 }).expect("free ports");
        let ports = block.ports();
        let data_dir = self.log_dir.parent().unwrap().join(format!("node-{id}"));
        self.nodes.push(NodeProcess {
            id,
            peer_port: ports[0],
            client_port: ports[1],
            data_dir,
            child: None,
            join_flags: Some(flags.to_vec()),
            bootstrap_member: false,
            kafka_port: self.kafka.then(|| ports[2]),
        });
        self._ports_added.push(block);
        id
    }

    /// Makes stopped bootstrap member `id` start by joining through `flags` from now on (a
    /// removed member coming back), same ports and data directory; the others keep listing it
    /// in their bootstrap lists. Does not start it.
    pub fn rejoin(&mut self, id: u64, flags: &[String]) {
        let node = &mut self.nodes[id as usize - 1];
        assert!(node.bootstrap_member && node.child.is_none(), "rejoin a stopped bootstrap member");
        node.join_flags = Some(flags.to_vec());
    }

    /// Starts node `id` (spawned, not waited for): for a start that must fail.
    pub fn spawn_only(&mut self, id: u64) {
        self.spawn(id);
    }

    /// Waits until node `id`'s process exits (within `within`); its exit status.
    pub fn wait_exit(&mut self, id: u64, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.nodes[id as usize - 1].child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.nodes[id as usize - 1].child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
        self.wait_listening(id);
    }

    /// Deletes a stopped node's whole data directory (F-P7: a replaced disk).
    pub fn wipe(&mut self, id: u64) {
        let node = &self.nodes[id as usize - 1];
        assert!(node.child.is_none(), "wipe node {id} only while it is stopped");
        std::fs::remove_dir_all(&node.data_dir).expect("remove the data directory");
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        match self.nodes[id as usize - 1].child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = self.log(node.id);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- node {} log (last 40 lines) ----", node.id);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Creates topic `name` with replication 3, retrying retriable refusals (a cluster still
/// electing its controller) 100 ms apart until `deadline`; panics on anything else.
pub async fn create_topic_until(admin: &Admin, name: &str, partitions: u32, deadline: tokio::time::Instant) {
    create_topic_replicated_until(admin, name, partitions, 3, deadline).await
}

/// [`create_topic_until`] with `replication` replicas a partition.
pub async fn create_topic_replicated_until(admin: &Admin, name: &str, partitions: u32, replication: u32, deadline: tokio::time::Instant) {
    loop {
        match admin.create_topic(name, partitions, replication, TopicConfig::default()).await {
            Ok(()) => return,
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("create topic: {error}"),
        }
    }
}

/// `text` without its terminal colour codes (ESC [ ... m): a node's log is coloured.
pub fn without_colors(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// L5/L6/L10: reading partition `partition` of `topic` from `addresses` only, up to its end when
/// called, every acknowledged record (value -> offset) is there once, at its acknowledged
/// offset; within 60 s.
pub async fn read_back_partition(addresses: &[&str], topic: &str, partition: u32, acked: &std::collections::BTreeMap<String, u64>) {
    let admin = Admin::new(addresses).unwrap();
    let end = admin.list_offsets(topic, partition, OffsetQuery::Latest).await.unwrap().offset;
    let mut consumer = Consumer::new(addresses, ConsumerConfig::default()).unwrap();
    consumer.assign(vec![(topic.to_string(), partition)]).unwrap();
    consumer.seek(topic, partition, Offset::Beginning).await.unwrap();
    let mut seen: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while consumer.position(topic, partition).unwrap_or(0) < end {
        assert!(tokio::time::Instant::now() < deadline, "reading back took over 60 s");
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            assert!(seen.insert(value.clone(), record.offset).is_none(), "L6: {value} twice");
        }
    }
    for (value, offset) in acked {
        assert_eq!(seen.get(value), Some(offset), "L5/L10: acknowledged record {value} at {offset}");
    }
    eprintln!("{} acknowledged, {} read back from {addresses:?}", acked.len(), seen.len());
}

/// Waits (up to `within`) until partition `partition` of `topic` has a leader that answers
/// through `addresses` (a ListOffsets succeeds): before [`read_back_partition`], after restarts.
pub async fn wait_for_partition_leader(addresses: &[&str], topic: &str, partition: u32, within: Duration) {
    let admin = Admin::new(addresses).unwrap();
    let deadline = tokio::time::Instant::now() + within;
    while let Err(error) = admin.list_offsets(topic, partition, OffsetQuery::Latest).await {
        assert!(tokio::time::Instant::now() < deadline, "partition {partition} of {topic} has no leader through {addresses:?}: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, asking every 100 ms; panics naming `what` after `seconds`.
pub async fn wait_until<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {seconds} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `odradek server --join seed` as node `id` on a fresh data directory and waits for it to
/// exit (the join must be refused); its stderr.
pub fn refused_join(id: u64, seed: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ports = reserve(2).expect("free ports");
    let (peer, client) = (ports.ports()[0], ports.ports()[1]);
    let output = Command::new(env!("CARGO_BIN_EXE_odradek"))
        .args(["server", "--id", &id.to_string(), "--data-dir", dir.path().join("data").to_str().unwrap(), "--tick-ms", "20"])
        .args(["--node", &format!("{id}=127.0.0.1:{peer}/127.0.0.1:{client}"), "--join", seed])
        .env("ODRADEK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run odradek server");
    assert!(!output.status.success(), "a refused join must end the process");
    without_colors(&String::from_utf8_lossy(&output.stderr))
}

/// Sends `records` values `v000000`.. to `topic` (one partition) with acks=all and returns value →
/// offset of every acknowledged one.
pub async fn produce_acked(addresses: &[&str], topic: &str, records: u64) -> std::collections::BTreeMap<String, u64> {
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..records {
        let value = format!("v{i:06}");
        deliveries.push((value.clone(), producer.send(ProducerRecord::new(topic, value)).await.expect("send queues")));
    }
    let mut acked = std::collections::BTreeMap::new();
    for (value, delivery) in deliveries {
        if let Ok(metadata) = delivery.await {
            acked.insert(value, metadata.offset.expect("acks=all gives offsets"));
        }
    }
    producer.close().await.expect("close");
    acked
}

/// The `bound` of every "suspicion settled" line of `group` in a node's `log`.
pub fn settled_bounds(log: &str, group: u64) -> Vec<u64> {
    without_colors(log)
        .lines()
        .filter(|line| line.contains("suspicion settled") && line.contains(&format!("group={group} ")))
        .filter_map(|line| line.split_whitespace().find_map(|field| field.strip_prefix("bound=")))
        .map(|bound| bound.parse().expect("a bound is a number"))
        .collect()
}

/// Waits until node `id`'s log (colours stripped) holds `text` at least `count` times.
pub async fn wait_for_log(cluster: &ProcessCluster, id: u64, text: &str, count: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while without_colors(&cluster.log(id)).matches(text).count() < count {
        assert!(tokio::time::Instant::now() < deadline, "node {id} never logged {text:?} within {within:?}:\n{}", cluster.log(id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A damaged replica's files set aside under `set_aside` (its quarantine directory) are kept
/// complete for forensics: both state files, the set-aside marker, the log's segments, and the
/// hard state's damaged bytes (`damaged_length` bytes of 0xa5) as they were.
pub fn assert_set_aside_kept(set_aside: &std::path::Path, damaged_length: usize) {
    for kept in ["hard_state", "conf_state", "set-aside.done"] {
        assert!(set_aside.join(kept).exists(), "{} kept", set_aside.join(kept).display());
    }
    assert_eq!(std::fs::read(set_aside.join("hard_state")).unwrap(), vec![0xa5; damaged_length], "the damaged bytes as they were");
    assert!(std::fs::read_dir(set_aside.join("log")).unwrap().count() > 0, "the log's segments kept");
}

/// Waits (up to 60 s) until the controller records no repair in progress and `completed`
/// repairs done since the cluster started (`describe_cluster`), else fails naming `what`.
pub async fn wait_for_repairs_done(admin: &Admin, completed: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let described = admin.describe_cluster().await;
        if let Ok(described) = &described {
            if described.repairs.is_empty() && described.repairs_completed == completed {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} never completed: {described:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// R8 d on real processes: waits (up to 60 s) until node `id`'s rebuilt replica of `group`
/// settled once more than the `settled_before` times it had, asserts it settled exactly once
/// and only at a bound above 0 (it caught up before voting), and returns that bound.
pub async fn rebuilt_replica_settled(cluster: &ProcessCluster, id: u64, group: u64, settled_before: usize) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let bounds = loop {
        let bounds = settled_bounds(&cluster.log(id), group);
        if bounds.len() > settled_before {
            break bounds;
        }
        assert!(tokio::time::Instant::now() < deadline, "the rebuilt replica of group {group} never settled:\n{}", cluster.log(id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(bounds.len(), settled_before + 1, "the rebuilt replica of group {group} settled once: {bounds:?}");
    let bound = bounds[settled_before];
    assert!(bound > 0, "the rebuilt replica of group {group} had to catch up before voting: bound {bound}");
    bound
}
