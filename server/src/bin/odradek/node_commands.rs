//! `odradek server` and `odradek playground`.

use std::path::PathBuf;

use clap::Args;
use odradek_log::FsDisk;
use odradek_server::config::{parse_member, Member, ServerConfig, TlsSettings};
use odradek_server::data_dir::DataDirLock;
use odradek_server::{system_clock, Server};

use crate::output::{note, say};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// A TOML configuration file (see README); flags below are ignored when given.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// This node's id (one of the --node entries).
    #[arg(long, required_unless_present = "config")]
    id: Option<u64>,
    /// Where this node keeps its data.
    #[arg(long, required_unless_present = "config")]
    data_dir: Option<PathBuf>,
    /// A cluster member, ID=PEER_ADDR/CLIENT_ADDR[/KAFKA_ADDR]; repeat for every node, this one
    /// included. KAFKA_ADDR is where Kafka clients reach that node (its Kafka listener).
    /// Example: --node 1=127.0.0.1:19092/127.0.0.1:9092/127.0.0.1:29092
    #[arg(long = "node", value_parser = parse_member, required_unless_present = "config")]
    nodes: Vec<Member>,
    /// Join a running cluster through this member's client address (repeat for more; any one
    /// that answers will do). The --node list then names this node only (its own addresses);
    /// the bootstrap members are learned from the cluster and kept in the data directory
    /// (`odradek.bootstrap`), so a restart needs no member up to start.
    #[arg(long = "join", value_delimiter = ',')]
    join: Vec<std::net::SocketAddr>,
    /// With --join: this node is a member already and comes back with a new (wiped or
    /// replaced) data directory; without it the cluster refuses a new identity under a
    /// member's id.
    #[arg(long, requires = "join")]
    replace: bool,
    /// Bytes per second this node sends to replicas catching up (reassignments, rebalance,
    /// decommission), over all its partitions, so catch-up cannot starve produce; 0: unlimited.
    #[arg(long, default_value_t = 0)]
    learner_catch_up_bytes_per_second: u64,
    /// Raft tick in milliseconds (elections start after 10 ticks without a leader).
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Bind the client listener here instead of this node's advertised CLIENT_ADDR (for NAT,
    /// containers, or a proxy in front of the node).
    #[arg(long)]
    client_listen: Option<std::net::SocketAddr>,
    /// Run a Kafka wire-protocol listener here (kcat, librdkafka, kafka-python, Java clients).
    /// Other nodes' Kafka addresses come from their --node entries; this node advertises its
    /// own --node Kafka address, else this one.
    #[arg(long)]
    kafka_listen: Option<std::net::SocketAddr>,
    /// `off`: a Kafka client's Metadata or Produce naming a topic that does not exist is
    /// answered UNKNOWN_TOPIC_OR_PARTITION instead of creating the topic with the defaults
    /// (Kafka's `auto.create.topics.enable`, on by default as in Kafka).
    #[arg(long, value_parser = ["on", "off"], default_value = "on")]
    auto_create_topics: String,
    /// Partitions of a topic created without a count: auto-created by a Kafka client, or a
    /// CreateTopics asking for the default (Kafka's `num.partitions`, reported by
    /// DescribeConfigs; default 1, as Kafka). Give every node the same value.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    default_partitions: u32,
    /// Serve metrics for Prometheus here (`GET /metrics`, OpenMetrics text). Off by default.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log the time of every produce request per stage of its path (and of every follower
    /// round) as `odradek_stages` lines at info: see `server/scripts/bench-latency.sh` STAGES=1.
    #[arg(long)]
    trace_stages: bool,
    /// `off`: every partition's raft group ticks and heartbeats even when idle (the default
    /// `on` puts quiet groups to sleep until they have work; DESIGN.md "Hibernation"). Give
    /// every node the same value.
    #[arg(long, value_parser = ["on", "off"], default_value = "on")]
    hibernate: String,
    /// The most partition files (segments, hard and configuration states) the node keeps open
    /// at once; past it the least recently used are closed and reopened on use (DESIGN.md
    /// "Open-file budget"). Default: the open-file limit (the node raises its soft limit to the
    /// hard one at start) minus room for connections and other descriptors; `0`: no budget.
    #[arg(long)]
    max_open_files: Option<usize>,
    /// Session timeout (ms) of consumer-protocol group members: how long the coordinator keeps
    /// a silent member's partitions (default 45000; their heartbeat interval becomes at most a
    /// third of it).
    #[arg(long)]
    group_session_timeout_ms: Option<u32>,
    /// TLS with the files `odradek tls init DIR` wrote: DIR/node-<id>.pem and .key on the
    /// client listener and peer links, DIR/ca.pem as the peers' CA. The flags below override.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// The client listener's certificate chain (PEM): clients must connect with TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client listener's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS on the client listener).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Mutual TLS on peer links: this node's certificate (naming node-<id>), with
    /// --peer-tls-key and --peer-tls-ca.
    #[arg(long, requires_all = ["peer_tls_key", "peer_tls_ca"])]
    peer_tls_cert: Option<PathBuf>,
    /// This node's private key for peer links (PEM).
    #[arg(long, requires_all = ["peer_tls_cert", "peer_tls_ca"])]
    peer_tls_key: Option<PathBuf>,
    /// The cluster CA that signs every node's certificate.
    #[arg(long, requires_all = ["peer_tls_cert", "peer_tls_key"])]
    peer_tls_ca: Option<PathBuf>,
    /// `scram`: clients must authenticate with SASL/SCRAM-SHA-256/512 (needs --users-file and
    /// --inter-node-user). Default: none (open, as on loopback).
    #[arg(long, value_parser = ["none", "scram"], default_value = "none")]
    auth: String,
    /// `on`: every request is checked against the ACLs; nothing is allowed by default (needs
    /// --auth scram).
    #[arg(long, value_parser = ["off", "on"], default_value = "off")]
    authorization: String,
    /// A principal allowed everything (User:NAME); repeat for more.
    #[arg(long = "super-user")]
    super_users: Vec<String>,
    /// A file of NAME:PASSWORD lines: users every node knows from its configuration (the first
    /// administrator, the nodes' own user). Keep it readable by the node's account only.
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// The user (of --users-file, a super user) nodes authenticate as when they relay requests.
    #[arg(long)]
    inter_node_user: Option<String>,
    /// TEST ONLY (`planted-bugs` builds): run with a deliberate breakage the checkers must catch.
    #[cfg(feature = "planted-bugs")]
    #[arg(long = "planted-bug")]
    planted_bugs: Vec<odradek_server::planted::PlantedBug>,
}

/// The `[tls]` settings the flags ask for: `--tls-dir`'s files, each overridden by its flag.
fn tls_settings(args: &ServerArgs, id: u64) -> TlsSettings {
    let mut tls = args.tls_dir.as_deref().map(|dir| TlsSettings::from_dir(dir, id)).unwrap_or_default();
    let flags = [
        (&mut tls.cert, &args.tls_cert),
        (&mut tls.key, &args.tls_key),
        (&mut tls.client_ca, &args.tls_client_ca),
        (&mut tls.peer_cert, &args.peer_tls_cert),
        (&mut tls.peer_key, &args.peer_tls_key),
        (&mut tls.peer_ca, &args.peer_tls_ca),
    ];
    for (setting, flag) in flags {
        if flag.is_some() {
            setting.clone_from(flag);
        }
    }
    tls
}

/// `--group-session-timeout-ms`: the consumer protocol's session, and a heartbeat interval that
/// fits three times into it.
fn set_group_session(config: &mut ServerConfig, session_ms: Option<u32>) {
    if let Some(session_ms) = session_ms {
        config.groups.consumer_session_timeout_ms = session_ms;
        config.groups.consumer_heartbeat_interval_ms = config.groups.consumer_heartbeat_interval_ms.min(session_ms / 3).max(1);
    }
}

/// Descriptors the node needs besides its partitions' files: client connections (at most
/// `connections_max`) plus this many for peer links, listeners, directory syncs, the data
/// directory's lock, the blocking pool's transient opens and the budget's allowed overshoot
/// (files with unsynced writes and calls in flight keep theirs).
const DESCRIPTORS_OTHER: u64 = 1024;

/// Raises the soft open-file limit to the hard one and returns the open-file budget: `flag` if
/// given (`0`: none), else the limit minus room for everything else (`DESCRIPTORS_OTHER`,
/// `connections_max`). Logs what it got, so an operator sees both.
fn open_file_budget(flag: Option<usize>, connections_max: usize) -> Result<Option<usize>, String> {
    let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(|e| format!("getrlimit(RLIMIT_NOFILE): {e}"))?;
    let soft = match rlimit::increase_nofile_limit(hard) {
        Ok(soft) => soft,
        Err(error) => {
            tracing::warn!(%error, soft_before, hard, "could not raise the open-file limit");
            soft_before
        }
    };
    let room = DESCRIPTORS_OTHER + connections_max as u64;
    let budget = match flag {
        Some(0) => None,
        Some(files) => Some(files),
        None if soft == rlimit::INFINITY => None,
        None => {
            let files = soft.saturating_sub(room);
            if (files as usize) < odradek_server::config::MAX_OPEN_FILES_MIN {
                return Err(format!(
                    "the open-file limit {soft} leaves no room for partition files after {room} descriptors for connections and the \
                     rest: raise it (ulimit -n, LimitNOFILE) or lower connections_max"
                ));
            }
            Some(files as usize)
        }
    };
    if let (Some(files), true) = (budget, soft != rlimit::INFINITY) {
        if files as u64 + room > soft {
            tracing::warn!(files, soft, room, "--max-open-files leaves less than {room} descriptors under the open-file limit");
        }
    }
    tracing::info!(soft_before, soft, hard, max_open_files = ?budget, "open-file limit and budget");
    Ok(budget)
}

/// Runs one node until SIGTERM or ctrl-c, then shuts it down gracefully.
pub async fn server(args: ServerArgs) -> Result<(), String> {
    #[allow(unused_mut)] // set only in planted-bugs builds
    let mut config = match args.config {
        Some(path) => ServerConfig::from_file(path).map_err(|e| e.to_string())?,
        None => {
            let mut config =
                ServerConfig::new(args.id.expect("clap: required"), args.data_dir.clone().expect("clap: required"), args.nodes.clone());
            config.tick_ms = args.tick_ms;
            config.client_listen = args.client_listen;
            config.kafka_listen = args.kafka_listen;
            config.metrics_listen = args.metrics_listen;
            config.trace_stages = args.trace_stages;
            config.hibernate = args.hibernate == "on";
            config.join = args.join.clone();
            config.join_replace = args.replace;
            config.learner_catch_up_bytes_per_second = args.learner_catch_up_bytes_per_second;
            config.auto_create_topics = args.auto_create_topics == "on";
            config.topic_defaults.partitions = args.default_partitions;
            if let (Some(listen), Some(me)) = (args.kafka_listen, config.nodes.iter_mut().find(|m| Some(m.id) == args.id)) {
                me.kafka.get_or_insert(listen);
            }
            set_group_session(&mut config, args.group_session_timeout_ms);
            config.tls = tls_settings(&args, config.id);
            config.auth.sasl = args.auth == "scram";
            config.auth.authorization = args.authorization == "on";
            config.auth.super_users = args.super_users.iter().cloned().collect();
            config.auth.inter_node_user = args.inter_node_user.clone();
            if let Some(path) = &args.users_file {
                let text = std::fs::read_to_string(path).map_err(|e| format!("--users-file {}: {e}", path.display()))?;
                let users = odradek_server::auth::parse_users_file(&text).map_err(|e| format!("--users-file {}: {e}", path.display()))?;
                config.auth.users = users.into_iter().map(|(name, password)| (name, odradek_server::auth::Secret(password))).collect();
            }
            config.validate().map_err(|e| e.to_string())?;
            config
        }
    };
    #[cfg(feature = "planted-bugs")]
    if !args.planted_bugs.is_empty() {
        tracing::warn!(bugs = ?args.planted_bugs, "running with PLANTED BUGS: this node breaks its guarantees on purpose");
        config.planted_bugs = args.planted_bugs.clone();
    }
    config.max_open_files = open_file_budget(args.max_open_files.or(config.max_open_files), config.connections_max)?;
    // Held until the process ends: no second process and no other node on this directory.
    let data_dir = DataDirLock::acquire(&config.data_dir, config.id).map_err(|e| e.to_string())?;
    config.data_dir_new = data_dir.is_new();
    config.incarnation = data_dir.identity().incarnation;
    if config.is_joining_member() {
        odradek_server::join::join_cluster(&mut config, &FsDisk::new()).await?;
    }
    let server = Server::start(config, FsDisk::new(), system_clock()).await.map_err(|e| e.to_string())?;
    tokio::select! {
        _ = termination() => {
            tracing::info!("shutting down: handing leadership away first");
            let leading = server.drain(odradek_server::server::DRAIN_TIME_MAX).await;
            tracing::info!(leading, "shutting down");
            server.shutdown().await.map_err(|e| e.to_string())
        }
        _ = server.failed() => Err("the node stopped on a fatal error (see the log above)".into()),
    }
}

/// SIGTERM or ctrl-c.
async fn termination() {
    #[cfg(all(unix, not(madsim)))]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(any(not(unix), madsim))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Args, Debug)]
pub struct PlaygroundArgs {
    /// Data directory (kept across runs). Default: $ODRADEK_HOME/playground, else
    /// ~/.odradek/playground.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Client port of the first node; the nodes use this port and the next two, peer ports
    /// 10000 above them and Kafka ports 20000 above them.
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Session timeout (ms) of consumer-protocol group members: how long the coordinator keeps
    /// a silent member's partitions (default 45000; their heartbeat interval becomes at most a
    /// third of it).
    #[arg(long)]
    group_session_timeout_ms: Option<u32>,
}

fn default_playground_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("ODRADEK_HOME") {
        return PathBuf::from(home).join("playground");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".odradek").join("playground")
}

/// The playground's Kafka listeners are this far above the client ports (9092 -> 29092).
const PLAYGROUND_KAFKA_PORT_OFFSET: u16 = 20_000;
/// The playground's metrics endpoints are this far above the client ports (9092 -> 39092): fixed
/// like the others, so a kernel-chosen port cannot land on a port another node is about to bind.
const PLAYGROUND_METRICS_PORT_OFFSET: u16 = 30_000;

/// The playground cluster's members.
pub fn playground_members(port: u16) -> Result<Vec<Member>, String> {
    (0..3u16)
        .map(|i| {
            let client = port.checked_add(i).ok_or("--port too high")?;
            let peer = client.checked_add(10_000).ok_or("--port too high")?;
            let kafka = client.checked_add(PLAYGROUND_KAFKA_PORT_OFFSET).ok_or("--port too high")?;
            client.checked_add(PLAYGROUND_METRICS_PORT_OFFSET).ok_or("--port too high")?;
            Ok(Member {
                id: u64::from(i) + 1,
                peer: ([127, 0, 0, 1], peer).into(),
                client: ([127, 0, 0, 1], client).into(),
                kafka: Some(([127, 0, 0, 1], kafka).into()),
            })
        })
        .collect()
}

/// Three nodes in this process, a demo topic, and instructions; runs until ctrl-c.
pub async fn playground(args: PlaygroundArgs) -> Result<(), String> {
    let data_dir = args.data_dir.unwrap_or_else(default_playground_dir);
    let members = playground_members(args.port)?;
    let mut servers = Vec::new();
    // Held until the playground ends.
    let mut locks = Vec::new();
    for member in &members {
        let dir = data_dir.join(format!("node-{}", member.id));
        let lock = DataDirLock::acquire(&dir, member.id).map_err(|e| format!("{e} (is another playground running on it?)"))?;
        let mut config = ServerConfig::new(member.id, dir, members.clone());
        config.data_dir_new = lock.is_new();
        locks.push(lock);
        config.tick_ms = 50;
        config.topic_defaults.partitions = args.partitions;
        let metrics_port = member.client.port() + PLAYGROUND_METRICS_PORT_OFFSET; // checked by playground_members
        config.metrics_listen = Some(([127, 0, 0, 1], metrics_port).into());
        set_group_session(&mut config, args.group_session_timeout_ms);
        let server = Server::start(config, FsDisk::new(), system_clock())
            .await
            .map_err(|e| format!("node {}: {e} (is another playground running? try --port)", member.id))?;
        servers.push(server);
    }
    let bootstrap = members[0].client.to_string();
    let created =
        crate::topic_setup::ensure_topic(odradek_client::Admin::new(&[&bootstrap]).map_err(|e| e.to_string())?, "demo", args.partitions, 3)
            .await?;
    let addresses: Vec<String> = members.iter().map(|m| m.client.to_string()).collect();
    say!("Odradek playground: 3 nodes on {}", addresses.join(", "));
    say!("Data: {} (kept across runs; delete it to start over)", data_dir.display());
    say!("Topic \"demo\" {}: {} partitions, replication factor 3.", if created { "created" } else { "ready" }, args.partitions);
    say!("");
    say!("Next, in another terminal:");
    let flag = if bootstrap == crate::DEFAULT_BOOTSTRAP { String::new() } else { format!(" --bootstrap {bootstrap}") };
    say!("  odradek produce{flag} --topic demo                 # one record per line; key:value with --key-separator :");
    say!("  odradek consume{flag} --topic demo --from-beginning --follow");
    say!("  odradek topic list{flag}");
    say!("  odradek cluster status{flag}");
    let kafka: Vec<String> = members.iter().filter_map(|m| m.kafka).map(|k| k.to_string()).collect();
    say!("Kafka clients connect to {} (the Kafka wire protocol), for example:", kafka.join(", "));
    say!("  echo hello | kcat -P -b {} -t demo -p 0 && kcat -C -b {} -t demo -p 0 -o beginning -e", kafka[0], kafka[0]);
    let metrics: Vec<String> = servers.iter().filter_map(|s| s.metrics_addr()).map(|a| format!("http://{a}/metrics")).collect();
    say!("Metrics for Prometheus: {}", metrics.join(" "));
    say!("");
    say!("Ctrl-C stops the cluster.");
    let failed = futures::future::select_all(servers.iter().map(|s| Box::pin(s.failed())));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = failed => note!("odradek: a playground node stopped on a fatal error"),
    }
    for server in servers {
        let _ = server.shutdown().await;
    }
    drop(locks);
    Ok(())
}
