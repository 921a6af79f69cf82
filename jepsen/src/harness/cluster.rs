//! Real `odradek server` processes on loopback, owned by the harness: their ports, data dirs and
//! logs, SIGKILL + restart (F-P1), SIGSTOP / SIGCONT (F-P2), and killing them all on exit.
//!
//! Every node's peer addresses for the *other* nodes point at the harness's link proxies
//! ([`super::proxy`]), so node `i` reaches node `j` only through the proxy of the directed link
//! `i -> j`. A node's own entry names its real peer listener.
//!
//! Invariants:
//! * every child pid the harness spawns is in [`CHILDREN`] until it has been reaped, and the
//!   panic hook ([`install_panic_hook`]) and [`ProcessCluster::kill_all`] SIGKILL every pid in it, so no
//!   server outlives the harness (short of the harness itself being SIGKILLed);
//! * a paused node is resumed before it is killed or restarted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a (re)started node may take to listen for clients.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(20);
/// The Raft tick of the servers the harness starts (as the server's own process tests use).
pub const NODE_TICK_MS: u64 = 20;

/// The consumer-protocol session the nodes give group members (the server's default, 45 s, is
/// longer than a short run: a crashed member's partitions would never move).
pub const GROUP_SESSION_TIMEOUT_MS: u32 = 6_000;

/// Pids of live children of this harness, killed by the panic hook.
static CHILDREN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn children() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    CHILDREN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGKILLs every registered child, then chains to the previous hook. Installed once by `run`.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_registered();
        previous(info);
    }));
}

/// The file a node's data directory holds while it rejoins after a wipe: the server's
/// `odradek_server::data_dir::JOINING_FILE` (the harness runs the binary, it does not link the
/// server; `tests/harness.rs` checks the two agree).
pub const JOINING_FILE: &str = "odradek.joining";

/// SIGKILL (and SIGCONT, in case it was stopped) every child still registered.
pub fn kill_registered() {
    for pid in children().iter() {
        signal(*pid, libc::SIGKILL);
    }
}

fn signal(pid: u32, signal: libc::c_int) -> bool {
    let pid = libc::pid_t::try_from(pid).expect("pids fit in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child we spawned and
    // have not reaped, so it cannot have been reused.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// One server process slot.
#[derive(Debug)]
pub struct Node {
    pub id: u64,
    /// The node's real peer listener (only its own `--node` entry names it).
    pub peer_port: u16,
    pub client_port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// `Some(address)` for a node added to the running cluster ([`ProcessCluster::add_joining`]):
    /// it names only itself and joins through this client address (`--join`).
    pub join: Option<String>,
    /// The Kafka listener of a node added to the running cluster when the run has Kafka
    /// listeners: bound and advertised on this port (no proxy in front of it).
    pub kafka_port: Option<u16>,
    /// Decommissioned and stopped for good ([`ProcessCluster::retire`]): never started again.
    pub retired: bool,
}

/// The cluster's processes. Dropping it kills every process still running.
#[derive(Debug)]
pub struct ProcessCluster {
    binary: PathBuf,
    log_dir: PathBuf,
    pub nodes: Vec<Node>,
    /// `proxy_ports[i][j]`: the port node `i + 1` dials to reach node `j + 1` (0 on the diagonal).
    proxy_ports: Vec<Vec<u16>>,
    /// `client_proxy_ports[i]`: the proxy in front of node `i + 1`'s client listener, which is
    /// what every node advertises for it.
    client_proxy_ports: Vec<u16>,
    /// `--planted-bug` flags for every node (test builds only).
    planted_flags: Vec<String>,
    /// `--tls-dir DIR` for every node when the run is over TLS.
    tls_flags: Vec<String>,
    /// `--auth`/`--authorization` flags for every node (`--secure`, [`super::secure`]).
    pub security_flags: Vec<String>,
    /// With `--client kafka`, per node `(listen port, advertised port)` of its Kafka listener (the
    /// advertised one is the harness's proxy); empty: no Kafka listener.
    pub kafka_ports: Vec<(u16, u16)>,
    /// The bootstrap members (ids `1..=bootstrap_count`); later ids joined the running cluster.
    bootstrap_count: usize,
    /// The ports of the nodes added since the start, held until the node is retired.
    added_ports: std::collections::BTreeMap<u64, super::ports::PortBlock>,
}

impl ProcessCluster {
    /// Lays out one node per `(peer_port, client_port)` under `dir` (data dirs `node-N`, logs
    /// `logs/node-N.log`); starts none.
    pub fn new(
        binary: &Path,
        dir: &Path,
        ports: &[(u16, u16)],
        proxy_ports: Vec<Vec<u16>>,
        client_proxy_ports: Vec<u16>,
        planted_bugs: &[String],
    ) -> std::io::Result<ProcessCluster> {
        assert_eq!(proxy_ports.len(), ports.len());
        assert_eq!(client_proxy_ports.len(), ports.len());
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(peer_port, client_port))| Node {
                id: i as u64 + 1,
                peer_port,
                client_port,
                data_dir: dir.join(format!("node-{}", i + 1)),
                child: None,
                paused: false,
                join: None,
                kafka_port: None,
                retired: false,
            })
            .collect();
        let planted_flags = planted_bugs.iter().flat_map(|bug| ["--planted-bug".to_string(), bug.clone()]).collect();
        Ok(ProcessCluster {
            binary: binary.to_path_buf(),
            log_dir,
            nodes,
            proxy_ports,
            client_proxy_ports,
            planted_flags,
            tls_flags: Vec::new(),
            security_flags: Vec::new(),
            kafka_ports: Vec::new(),
            bootstrap_count: ports.len(),
            added_ports: std::collections::BTreeMap::new(),
        })
    }

    /// Starts every node with these TLS flags (`--tls-dir DIR`) from now on.
    pub fn set_tls_flags(&mut self, flags: Vec<String>) {
        self.tls_flags = flags;
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The bootstrap members not retired: the nodes the other nemesis kinds act on (nodes added
    /// later have no link proxies, so partitions cannot reach them).
    pub fn bootstrap_ids(&self) -> Vec<u64> {
        self.nodes.iter().take(self.bootstrap_count).filter(|n| !n.retired).map(|n| n.id).collect()
    }

    /// Every node not retired, bootstrap members first, then the added ones in the order they
    /// joined.
    pub fn active_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| !n.retired).map(|n| n.id).collect()
    }

    /// Adds node `id` (the next id) with ports and a data directory of its own, joining the
    /// running cluster through `join` (a member's client address); does not start it. When the
    /// run has Kafka listeners the node opens one too, on a port of its own, which it registers
    /// as its Kafka address when it joins (so Kafka clients find it through Metadata).
    pub fn add_joining(&mut self, join: String) -> std::io::Result<u64> {
        let id = self.nodes.len() as u64 + 1;
        let with_kafka = !self.kafka_ports.is_empty();
        let block = super::ports::reserve(if with_kafka { 3 } else { 2 })?;
        let (peer_port, client_port) = (block.ports()[0], block.ports()[1]);
        let kafka_port = with_kafka.then(|| block.ports()[2]);
        let data_dir = self.log_dir.parent().expect("the log dir is inside the cluster dir").join(format!("node-{id}"));
        let join = Some(join);
        self.nodes.push(Node { id, peer_port, client_port, data_dir, child: None, paused: false, join, kafka_port, retired: false });
        self.added_ports.insert(id, block);
        Ok(id)
    }

    /// Stops node `id` for good: it was decommissioned, and the cluster no longer counts it.
    pub fn retire(&mut self, id: u64) {
        self.kill(id);
        self.node_mut(id).retired = true;
        self.added_ports.remove(&id); // never bound again
    }

    /// What clients bootstrap from: the client proxies.
    pub fn client_addresses(&self) -> Vec<String> {
        self.client_proxy_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect()
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.log_dir.join(format!("node-{id}.log"))
    }

    /// The flags node `id` is started with: `--node` entries with its own real peer port and
    /// proxies for the other peers, every client address a client proxy, and `--client-listen`
    /// for its real client port.
    fn node_flags(&self, id: u64) -> Vec<String> {
        let me = id as usize - 1;
        if let Some(join) = &self.nodes[me].join {
            // A joining node names only itself (real ports: no proxies), then whom to join.
            let node = &self.nodes[me];
            let mut member = format!("{id}=127.0.0.1:{}/127.0.0.1:{}", node.peer_port, node.client_port);
            if let Some(kafka) = node.kafka_port {
                // Its Kafka listener binds and registers this address (`--join` sends it).
                member += &format!("/127.0.0.1:{kafka}");
            }
            let mut flags = vec!["--node".to_string(), member, "--join".to_string(), join.clone()];
            flags.extend(["--group-session-timeout-ms".to_string(), GROUP_SESSION_TIMEOUT_MS.to_string()]);
            flags.extend(self.planted_flags.iter().cloned());
            flags.extend(self.tls_flags.iter().cloned());
            flags.extend(self.security_flags.iter().cloned());
            return flags;
        }
        let mut flags: Vec<String> = self
            .nodes
            .iter()
            .take(self.bootstrap_count)
            .enumerate()
            .flat_map(|(j, n)| {
                let peer_port = if j == me { n.peer_port } else { self.proxy_ports[me][j] };
                let mut member = format!("{}=127.0.0.1:{}/127.0.0.1:{}", n.id, peer_port, self.client_proxy_ports[j]);
                if let Some((_, advertised)) = self.kafka_ports.get(j) {
                    member += &format!("/127.0.0.1:{advertised}");
                }
                ["--node".to_string(), member]
            })
            .collect();
        if let Some((listen, _)) = self.kafka_ports.get(me) {
            flags.extend(["--kafka-listen".to_string(), format!("127.0.0.1:{listen}")]);
        }
        flags.extend(["--client-listen".to_string(), format!("127.0.0.1:{}", self.nodes[me].client_port)]);
        flags.extend(["--group-session-timeout-ms".to_string(), GROUP_SESSION_TIMEOUT_MS.to_string()]);
        flags.extend(self.planted_flags.iter().cloned());
        flags.extend(self.tls_flags.iter().cloned());
        flags.extend(self.security_flags.iter().cloned());
        flags
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Spawns node `id` (same flags and data dir every time).
    pub fn spawn(&mut self, id: u64) -> std::io::Result<()> {
        assert!(self.nodes[id as usize - 1].child.is_none(), "node {id} is already running");
        assert!(!self.nodes[id as usize - 1].retired, "node {id} was decommissioned");
        let flags = self.node_flags(id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id))?;
        let binary = self.binary.clone();
        let node = self.node_mut(id);
        std::fs::create_dir_all(&node.data_dir)?;
        let data_dir = node.data_dir.to_str().expect("the data dir is UTF-8").to_string();
        let mut children = children();
        let child = Command::new(binary)
            .arg("server")
            .args(["--id", &id.to_string(), "--data-dir", &data_dir, "--tick-ms", &NODE_TICK_MS.to_string()])
            .args(flags)
            .env("ODRADEK_LOG", "info")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        children.insert(child.id());
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// What [`wait_listening`] needs for node `id`, taken under the cluster's lock.
    pub fn listen_target(&self, id: u64) -> (u64, u16, PathBuf) {
        (id, self.nodes[id as usize - 1].client_port, self.log_path(id))
    }

    /// SIGKILL and reap (F-P1). A no-op for a node that is not running.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            children().remove(&child.id());
        }
        node.paused = false;
    }

    /// F-P7 / F-M3: SIGKILL node `id` and delete its data directory; its next spawn starts it
    /// empty, as a new incarnation that must rejoin (R8 d).
    pub fn wipe(&mut self, id: u64) -> std::io::Result<()> {
        self.kill(id);
        let dir = self.node_mut(id).data_dir.clone();
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Nodes whose data directory says they have not finished joining since a wipe.
    pub fn joining(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).filter(|&id| self.nodes[id as usize - 1].data_dir.join(JOINING_FILE).exists()).collect()
    }

    /// SIGSTOP (F-P2).
    pub fn pause(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(child) = &node.child {
            if signal(child.id(), libc::SIGSTOP) {
                node.paused = true;
            }
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(child) = &node.child {
            if node.paused {
                signal(child.id(), libc::SIGCONT);
            }
        }
        node.paused = false;
    }

    /// Whether the process of node `id` is alive (an unexpected exit is a server bug to report).
    pub fn is_running(&mut self, id: u64) -> bool {
        match self.node_mut(id).child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Nodes whose process exited on its own (not killed by the harness), with the exit status.
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push((node.id, status.to_string()));
                }
            }
        }
        exited
    }

    /// SIGKILL every running node and reap it.
    pub fn kill_all(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }
}

/// Waits until a node accepts client connections, or fails after [`NODE_START_TIMEOUT`].
pub async fn wait_listening((id, port, log): (u64, u16, PathBuf)) -> Result<(), String> {
    let deadline = Instant::now() + NODE_START_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("node {id} did not listen on {port} within {NODE_START_TIMEOUT:?}; see {}", log.display()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
