//! A node's settings: from command-line flags or a TOML file (`odradek server --config F`).
//!
//! Every node of a cluster is given the same member list (`[[nodes]]`: id, peer address for
//! raft traffic, client address for producers and consumers); the controller group's voters
//! are exactly those nodes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use odradek_consensus::NodeId;
use odradek_log::LogConfig;
use serde::Deserialize;

use crate::planted::Planted;

/// The most nodes a cluster may list (controller voters).
pub const CLUSTER_NODES_MAX: usize = 7;

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: NodeId,
    /// Raft traffic between nodes.
    pub peer: SocketAddr,
    /// The client protocol (what producers, consumers and the CLI connect to).
    pub client: SocketAddr,
    /// Where Kafka clients reach this node (its Kafka listener), if it runs one.
    #[serde(default)]
    pub kafka: Option<SocketAddr>,
}

/// Topic settings used when a create request leaves them at 0.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    pub partitions: u32,
    /// Capped at the number of nodes.
    pub replication_factor: u32,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    /// The largest record batch a producer may send.
    pub batch_bytes_max: u32,
}

impl Default for TopicDefaults {
    fn default() -> TopicDefaults {
        TopicDefaults {
            partitions: 1,
            replication_factor: 3,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 128 * 1024 * 1024,
            batch_bytes_max: 1024 * 1024,
        }
    }
}

/// TLS files (PEM) of a node (issue 19). All unset: plaintext, as before. Files are re-read
/// when they change (looked at most once a second, on a new connection); live connections keep
/// the certificate they started with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The client listener's certificate chain and key: clients connect with TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// When set, clients must present a certificate this CA signed (mutual TLS); its first DNS
    /// name is the connection's TLS principal.
    pub client_ca: Option<PathBuf>,
    /// Mutual TLS on peer links: this node's certificate (its DNS names include `node-<id>`),
    /// its key, and the cluster CA every node's certificate is signed by. All three or none.
    pub peer_cert: Option<PathBuf>,
    pub peer_key: Option<PathBuf>,
    pub peer_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// The files of `odradek tls init DIR` for node `id`: its certificate on both listeners,
    /// the CA for peers (client certificates stay optional).
    pub fn from_dir(dir: &std::path::Path, id: NodeId) -> TlsSettings {
        let node = |extension: &str| Some(dir.join(format!("node-{id}.{extension}")));
        TlsSettings {
            cert: node("pem"),
            key: node("key"),
            client_ca: None,
            peer_cert: node("pem"),
            peer_key: node("key"),
            peer_ca: Some(dir.join("ca.pem")),
        }
    }

    /// Whether the client listener speaks TLS.
    pub fn clients(&self) -> bool {
        self.cert.is_some()
    }

    /// Whether peer links are mutual TLS.
    pub fn peers(&self) -> bool {
        self.peer_cert.is_some()
    }

    fn validate(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("tls.cert and tls.key go together".into());
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return Err("tls.client_ca needs tls.cert and tls.key (client certificates are asked for over TLS)".into());
        }
        let peer_set = [&self.peer_cert, &self.peer_key, &self.peer_ca].iter().filter(|path| path.is_some()).count();
        if peer_set != 0 && peer_set != 3 {
            return Err("tls.peer_cert, tls.peer_key and tls.peer_ca go together".into());
        }
        Ok(())
    }
}

/// Everything a node needs to run.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's id (one of `nodes`).
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// The bootstrap member list, this node included (its other members are the metadata
    /// group's initial voters). A node that joins a running cluster (`join`) lists itself and,
    /// once it has joined, the bootstrap members the cluster told it.
    pub nodes: Vec<Member>,
    /// Client addresses of members of a running cluster this node joins (`--join`; Redpanda's
    /// seed servers, KRaft's bootstrap servers); empty for a bootstrap member.
    #[serde(default)]
    pub join: Vec<SocketAddr>,
    /// With `join`: this node is a member already and comes back with a new data directory
    /// (its identity, the incarnation, changes; without this the controller refuses it).
    #[serde(default)]
    pub join_replace: bool,
    /// Bytes per second this node, as a partition leader, sends to learners catching up
    /// (reassignments, rebalancing), over all its partitions; 0: unlimited. Keeps catch-up
    /// traffic from starving produce (Kafka's replication throttles).
    #[serde(default)]
    pub learner_catch_up_bytes_per_second: u64,
    /// Where this node's client listener binds, when that differs from the client address the
    /// member list advertises (Kafka's `listeners` vs `advertised.listeners`: NAT, containers, a
    /// proxy in front). Default: the advertised address.
    #[serde(default)]
    pub client_listen: Option<SocketAddr>,
    /// Where this node's Kafka listener binds (`--kafka-listen`); none when unset and this
    /// node's member entry names no Kafka address. Default: the advertised Kafka address.
    #[serde(default)]
    pub kafka_listen: Option<SocketAddr>,
    /// Where this node serves its metrics to Prometheus (`GET /metrics`); none when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Raft's logical clock period; elections start after 10 ticks without a leader.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Upper bound on a produce request's own timeout.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Open client connections accepted at once; more are refused.
    #[serde(default = "default_connections_max")]
    pub connections_max: usize,
    /// Requests one connection may have in flight; the connection's reader waits past it.
    #[serde(default = "default_connection_requests_max")]
    pub connection_requests_max: usize,
    /// Open client connections from one IP address at once; more from it are refused, so one
    /// host cannot take every slot of `connections_max`.
    #[serde(default = "default_connections_per_address_max")]
    pub connections_per_address_max: usize,
    /// A new connection that has not sent its Hello within this is closed.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// A connection with nothing in flight that sends no whole request for this long is closed
    /// (Kafka's `connections.max.idle.ms`).
    #[serde(default = "default_connection_idle_timeout_ms")]
    pub connection_idle_timeout_ms: u64,
    /// Bytes of client requests the node holds at once, over all connections (Kafka's
    /// `queued.max.request.bytes`): a request's body is read only when it fits. A frame larger
    /// than this is refused as too large.
    #[serde(default = "default_request_bytes_in_flight_max")]
    pub request_bytes_in_flight_max: usize,

    /// How often the leader-balancing pass runs (moves leadership to preferred replicas).
    #[serde(default = "default_balance_interval_ms")]
    pub balance_interval_ms: u64,
    /// Produce is refused with DISK_FULL once the data dir's file system has less than this
    /// free (raft's own small writes — elections, heartbeats' commits — still fit in it).
    #[serde(default = "default_disk_reserve_bytes")]
    pub disk_reserve_bytes: u64,
    /// How often free space is measured (between two measurements every accepted batch is
    /// subtracted from the last one).
    #[serde(default = "default_disk_check_interval_ms")]
    pub disk_check_interval_ms: u64,
    #[serde(default)]
    pub topic_defaults: TopicDefaults,
    /// Kafka's `auto.create.topics.enable`: a Kafka client's Metadata request (with
    /// `allow_auto_topic_creation`, always below v4) or Produce naming a topic that does not
    /// exist creates it with `topic_defaults`, as a Kafka broker does. On by default, as in
    /// Kafka. The native listener never creates topics implicitly.
    #[serde(default = "default_auto_create_topics")]
    pub auto_create_topics: bool,
    /// TLS on the client listener and peer links (`[tls]`; default: none).
    #[serde(default)]
    pub tls: TlsSettings,
    /// The consumer-group coordinator (`[groups]`).
    #[serde(default)]
    pub groups: crate::group::service::GroupSettings,
    /// Authentication and authorization (`[auth]`, issue 19): all off by default.
    #[serde(default)]
    pub auth: crate::auth::AuthSettings,
    /// Time every produce request per stage of its path (connection task, driver, fsync,
    /// followers, commit, apply, answer) and log one `odradek_stages` line per request and per
    /// follower round at info (issue 17; `server/scripts/bench-latency.sh` with `STAGES=1`).
    /// Off by default: then each stage costs one test.
    #[serde(default)]
    pub trace_stages: bool,
    /// Quiet partitions stop ticking and heartbeating until they have work (issue 17, DESIGN.md
    /// "Hibernation"): a raft group whose leader finds it quiet for an election timeout sleeps
    /// on every replica; any message, write or read wakes it, and one alive message per node
    /// pair replaces the groups' heartbeats. On by default; give every node the same value.
    #[serde(default = "default_hibernate")]
    pub hibernate: bool,
    /// The most real files the node's partitions keep open at once (DESIGN.md "Open-file
    /// budget"; RocksDB's `max_open_files`): file handles past it are closed least recently
    /// used first and reopened on use, so a node hosting 10,000 replicas stays within its
    /// open-file limit. `None`: every file stays open while in use (the simulator's default).
    /// The `odradek` command sets it from the open-file limit unless `--max-open-files` does.
    #[serde(default)]
    pub max_open_files: Option<usize>,
    /// Deliberate breakages for the checkers' teeth (simulation and `planted-bugs` builds only).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    #[serde(default)]
    pub planted_bugs: Vec<crate::planted::PlantedBug>,
    /// The data directory is a new incarnation (never read from the file: whoever opened the
    /// directory says so, [`crate::data_dir::DataDirLock::is_new`]); the node is *joining* until
    /// it hosts every replica the metadata gives it (module `data_dir`, R8 d).
    #[serde(skip)]
    pub data_dir_new: bool,
    /// The data directory's incarnation (never read from the file: the lock file records it,
    /// [`crate::data_dir::Identity`]); what a joining node registers as its identity.
    #[serde(skip)]
    pub incarnation: u64,
    /// For a node that joined (`--join`): the bootstrap member ids the cluster answered (the
    /// metadata group's initial voters), which may name this node itself when it is a bootstrap
    /// member that was decommissioned and removed, and rejoins under a new incarnation (module
    /// `join`). Never read from the file: `join::join_cluster` sets it. Empty: the listed
    /// members but this node.
    #[serde(skip)]
    pub join_bootstrap: Vec<NodeId>,
}

fn default_auto_create_topics() -> bool {
    true
}
/// The smallest open-file budget: a few files per group being written at once (a segment, its
/// hard state, its configuration) must fit, or every write would reopen its file.
pub const MAX_OPEN_FILES_MIN: usize = 4;

fn default_hibernate() -> bool {
    true
}
fn default_tick_ms() -> u64 {
    100
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_connections_max() -> usize {
    1024
}
fn default_connection_requests_max() -> usize {
    256
}
fn default_connections_per_address_max() -> usize {
    256
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_connection_idle_timeout_ms() -> u64 {
    10 * 60 * 1000
}
/// About eight of the largest frames at once.
fn default_request_bytes_in_flight_max() -> usize {
    256 * 1024 * 1024
}

fn default_balance_interval_ms() -> u64 {
    5_000
}
fn default_disk_reserve_bytes() -> u64 {
    128 * 1024 * 1024
}
fn default_disk_check_interval_ms() -> u64 {
    1_000
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// A configuration with defaults for everything but identity and membership.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>, nodes: Vec<Member>) -> ServerConfig {
        ServerConfig {
            id,
            data_dir: data_dir.into(),
            nodes,
            client_listen: None,
            kafka_listen: None,
            metrics_listen: None,
            tick_ms: default_tick_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            connections_max: default_connections_max(),
            connection_requests_max: default_connection_requests_max(),
            connections_per_address_max: default_connections_per_address_max(),
            handshake_timeout_ms: default_handshake_timeout_ms(),
            connection_idle_timeout_ms: default_connection_idle_timeout_ms(),
            request_bytes_in_flight_max: default_request_bytes_in_flight_max(),
            balance_interval_ms: default_balance_interval_ms(),
            disk_reserve_bytes: default_disk_reserve_bytes(),
            disk_check_interval_ms: default_disk_check_interval_ms(),
            topic_defaults: TopicDefaults::default(),
            auto_create_topics: default_auto_create_topics(),
            tls: TlsSettings::default(),
            groups: crate::group::service::GroupSettings::default(),
            auth: crate::auth::AuthSettings::default(),
            trace_stages: false,
            hibernate: default_hibernate(),
            max_open_files: None,
            #[cfg(any(madsim, feature = "planted-bugs"))]
            planted_bugs: Vec::new(),
            data_dir_new: false,
            join: Vec::new(),
            join_replace: false,
            learner_catch_up_bytes_per_second: 0,
            incarnation: 0,
            join_bootstrap: Vec::new(),
        }
    }

    /// Parses and validates a TOML configuration.
    pub fn from_toml(text: &str) -> Result<ServerConfig, ConfigError> {
        let config: ServerConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<ServerConfig, ConfigError> {
        let path = path.into();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?;
        ServerConfig::from_toml(&text)
    }

    /// Checks what a node cannot run without.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.id == 0 {
            return invalid("node ids start at 1".into());
        }
        if let Err(message) = self.tls.validate() {
            return invalid(message);
        }
        if self.nodes.is_empty() || self.nodes.len() > CLUSTER_NODES_MAX {
            return invalid(format!("a cluster lists 1 to {CLUSTER_NODES_MAX} nodes, not {}", self.nodes.len()));
        }
        let mut ids = BTreeMap::new();
        for member in &self.nodes {
            if member.id == 0 {
                return invalid("node ids start at 1".into());
            }
            if ids.insert(member.id, member).is_some() {
                return invalid(format!("node {} is listed twice", member.id));
            }
        }
        if !ids.contains_key(&self.id) {
            return invalid(format!("this node's id {} is not among the listed nodes", self.id));
        }
        if self.join_replace && self.join.is_empty() {
            return invalid("join_replace (--replace) goes with join (--join)".into());
        }
        self.auth.validate().map_err(ConfigError::Invalid)?;
        if self.tick_ms == 0 || self.tick_ms > 10_000 {
            return invalid(format!("tick_ms must be within 1..=10000, not {}", self.tick_ms));
        }
        if self.disk_check_interval_ms == 0 {
            return invalid("disk_check_interval_ms must be positive".into());
        }
        if self.max_open_files.is_some_and(|files| files < MAX_OPEN_FILES_MIN) {
            return invalid(format!("max_open_files must be at least {MAX_OPEN_FILES_MIN}, not {}", self.max_open_files.unwrap_or(0)));
        }
        if self.connections_max == 0 || self.connection_requests_max == 0 || self.connections_per_address_max == 0 {
            return invalid("connections_max, connection_requests_max and connections_per_address_max must be positive".into());
        }
        if self.handshake_timeout_ms == 0 || self.connection_idle_timeout_ms == 0 {
            return invalid("handshake_timeout_ms and connection_idle_timeout_ms must be positive".into());
        }
        if self.request_bytes_in_flight_max == 0 {
            return invalid("request_bytes_in_flight_max must be positive".into());
        }

        let defaults = &self.topic_defaults;
        if defaults.partitions == 0 || defaults.replication_factor == 0 {
            return invalid("topic_defaults: partitions and replication_factor must be positive".into());
        }
        if defaults.batch_bytes_max as usize > odradek_client::batch::BATCH_BYTES_MAX || defaults.batch_bytes_max == 0 {
            return invalid(format!("topic_defaults.batch_bytes_max must be within 1..={}", odradek_client::batch::BATCH_BYTES_MAX));
        }
        self.groups.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// This node's planted bugs as switches, built from `planted_bugs` (all off in normal
    /// builds, which have no list). Built once at start; the code reads the switch it needs.
    pub fn planted_switches(&self) -> Planted {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return Planted::from_bugs(&self.planted_bugs);
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        Planted::default()
    }

    /// This node's own entry in the member list.
    pub fn me(&self) -> &Member {
        self.nodes.iter().find(|m| m.id == self.id).expect("validated: this node is listed")
    }

    /// The address this node's client listener binds.
    pub fn client_listen(&self) -> SocketAddr {
        self.client_listen.unwrap_or(self.me().client)
    }

    /// The address this node's Kafka listener binds, if it runs one.
    pub fn kafka_listen(&self) -> Option<SocketAddr> {
        self.kafka_listen.or(self.me().kafka)
    }

    /// The Kafka address this node registers for other nodes to advertise: its own member
    /// entry's, else the listen address when that is one a client can dial (not a wildcard,
    /// not port 0). None: no Kafka listener, or only one whose address is known once bound
    /// (other nodes then cannot name it; the node itself still does).
    pub fn kafka_advertised(&self) -> Option<SocketAddr> {
        let dialable = |address: &SocketAddr| address.port() != 0 && !address.ip().is_unspecified();
        self.kafka_listen()?;
        self.me().kafka.filter(dialable).or(self.kafka_listen.filter(dialable))
    }

    /// The metadata group's initial voters: the bootstrap members (for a joining node, those
    /// the cluster answered, [`ServerConfig::join_bootstrap`]; before it answered, the listed
    /// members but itself). A removed bootstrap member that rejoins is one of them: its
    /// metadata replica starts from the group's true initial configuration, and its empty log
    /// keeps it out of every vote until it has caught up (R8 d), by which time the log's conf
    /// changes have made it a learner.
    pub fn metadata_voters_initial(&self) -> Vec<NodeId> {
        if !self.join.is_empty() && !self.join_bootstrap.is_empty() {
            let mut ids = self.join_bootstrap.clone();
            ids.sort_unstable();
            ids.dedup();
            return ids;
        }
        let mut ids = self.node_ids();
        if !self.join.is_empty() {
            ids.retain(|&id| id != self.id);
        }
        ids
    }

    /// Whether this node joined a running cluster instead of bootstrapping it.
    pub fn is_joining_member(&self) -> bool {
        !self.join.is_empty()
    }

    /// The member ids, sorted (for a bootstrap member: the controller group's initial voters).
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.nodes.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn connection_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.connection_idle_timeout_ms)
    }

    /// The segment-log settings of a partition with these (already defaulted) settings.
    pub fn log_config(&self, retention_ms: i64, retention_bytes: i64, segment_bytes: u64) -> LogConfig {
        self.with_planted_log_bugs(LogConfig {
            segment_bytes_max: segment_bytes,
            retention_ms: (retention_ms >= 0).then_some(retention_ms),
            retention_bytes: u64::try_from(retention_bytes).ok(),
            ..LogConfig::default()
        })
    }

    /// The controller log is never trimmed: every node rebuilds the metadata from it.
    pub fn metadata_log_config(&self) -> LogConfig {
        self.with_planted_log_bugs(LogConfig { retention_ms: None, retention_bytes: None, ..LogConfig::default() })
    }

    #[allow(unused_mut)] // changed only in simulation and planted-bugs builds
    fn with_planted_log_bugs(&self, mut config: LogConfig) -> LogConfig {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        {
            let planted = self.planted_switches();
            config.planted.skip_fsync = planted.ack_before_fsync;
            config.planted.ignore_fsync_errors = planted.ignore_fsync_error;
            config.planted.truncate_corruption = planted.truncate_mid_log_corruption;
            config.planted.hard_state_unchecked_crc = planted.hard_state_unchecked_crc;
            config.planted.hard_state_saved_without_sync = planted.hard_state_saved_without_sync;
            config.planted.start_state_saved_without_sync = planted.start_state_saved_without_sync;
        }
        config
    }
}

/// Parses `ID=PEER_ADDR/CLIENT_ADDR` (the `--node` flag).
pub fn parse_member(text: &str) -> Result<Member, String> {
    let expected = || format!("{text:?}: expected ID=PEER_ADDR/CLIENT_ADDR[/KAFKA_ADDR]");
    let (id, addrs) = text.split_once('=').ok_or_else(expected)?;
    let (peer, client) = addrs.split_once('/').ok_or_else(expected)?;
    let (client, kafka) = match client.split_once('/') {
        Some((client, kafka)) => (client, Some(kafka.trim().parse().map_err(|e| format!("{text:?}: Kafka address: {e}"))?)),
        None => (client, None),
    };
    let id = id.trim().parse().map_err(|e| format!("{text:?}: node id: {e}"))?;
    let peer = peer.trim().parse().map_err(|e| format!("{text:?}: peer address: {e}"))?;
    let client = client.trim().parse().map_err(|e| format!("{text:?}: client address: {e}"))?;
    Ok(Member { id, peer, client, kafka })
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        id = 2
        data_dir = "/var/lib/odradek"
        tick_ms = 50
        [[nodes]]
        id = 1
        peer = "127.0.0.1:9101"
        client = "127.0.0.1:9091"
        [[nodes]]
        id = 2
        peer = "127.0.0.1:9102"
        client = "127.0.0.1:9092"
        [[nodes]]
        id = 3
        peer = "127.0.0.1:9103"
        client = "127.0.0.1:9093"
        [topic_defaults]
        partitions = 6
    "#;

    #[test]
    fn a_toml_file_gives_membership_and_keeps_defaults() {
        let config = ServerConfig::from_toml(THREE).unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.node_ids(), vec![1, 2, 3]);
        assert_eq!(config.me().client, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(config.tick_ms, 50);
        assert_eq!(config.topic_defaults.partitions, 6);
        assert_eq!(config.topic_defaults.replication_factor, 3, "unset fields keep their default");
        assert_eq!(config.request_timeout_ms, 30_000);
        assert_eq!((config.handshake_timeout_ms, config.connection_idle_timeout_ms), (10_000, 600_000));
        assert_eq!(config.connections_per_address_max, 256);
        assert!(config.auto_create_topics, "topics are auto-created by default, as in Kafka");
        let off = ServerConfig::from_toml(&THREE.replace("tick_ms = 50", "tick_ms = 50\nauto_create_topics = false")).unwrap();
        assert!(!off.auto_create_topics);
        assert_eq!(config.client_listen(), config.me().client, "the listener binds the advertised address by default");
        let behind_a_proxy =
            ServerConfig::from_toml(&THREE.replace("tick_ms = 50", "tick_ms = 50\nclient_listen = \"127.0.0.1:19092\"")).unwrap();
        assert_eq!(behind_a_proxy.client_listen(), "127.0.0.1:19092".parse().unwrap());
        assert_eq!(behind_a_proxy.me().client, "127.0.0.1:9092".parse().unwrap(), "still advertised to clients");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let cases = [
            (THREE.replacen("id = 2", "id = 4", 1), "not among the listed nodes"),
            (THREE.replace("id = 3", "id = 1"), "listed twice"),
            (THREE.replace("tick_ms = 50", "tick_ms = 0"), "tick_ms"),
            (THREE.replace("tick_ms = 50", "tick_ms = 50\nhandshake_timeout_ms = 0"), "handshake_timeout_ms"),
            (THREE.replace("tick_ms = 50", "tick_ms = 50\nconnections_per_address_max = 0"), "connections_per_address_max"),
            (THREE.replace("tick_ms = 50", "tick_ms = 50\nrequest_bytes_in_flight_max = 0"), "request_bytes_in_flight_max"),
            (THREE.replace("partitions = 6", "partitions = 0"), "partitions"),
            (THREE.replace("tick_ms = 50", "tick_ms = 50\nbogus = 1"), "unknown field"),
            (THREE.replace("\"127.0.0.1:9103\"", "\"nowhere\""), "invalid"),
        ];
        for (text, expected) in cases {
            let error = ServerConfig::from_toml(&text).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn kafka_addresses_are_optional_in_toml() {
        let config = ServerConfig::from_toml(THREE).unwrap();
        assert_eq!((config.kafka_listen(), config.me().kafka), (None, None), "no Kafka listener unless asked");
        let with_kafka = THREE.replace("client = \"127.0.0.1:9092\"", "client = \"127.0.0.1:9092\"\nkafka = \"127.0.0.1:29092\"");
        let config = ServerConfig::from_toml(&with_kafka).unwrap();
        assert_eq!(config.kafka_listen(), Some("127.0.0.1:29092".parse().unwrap()), "binds the advertised Kafka address by default");
        let config =
            ServerConfig::from_toml(&with_kafka.replace("tick_ms = 50", "tick_ms = 50\nkafka_listen = \"0.0.0.0:29092\"")).unwrap();
        assert_eq!(config.kafka_listen(), Some("0.0.0.0:29092".parse().unwrap()));
    }

    #[test]
    fn kafka_listener_runs_where_clients_must_log_in() {
        let mut config = ServerConfig::from_toml(THREE).unwrap();
        config.kafka_listen = Some("127.0.0.1:29092".parse().unwrap());
        config.validate().unwrap();
        config.auth.sasl = true;
        config.auth.inter_node_user = Some("node".into());
        config.auth.users.insert("node".into(), crate::auth::Secret("pw".into()));
        config.auth.super_users.insert("User:node".into());
        // Its clients log in with SaslHandshake/SaslAuthenticate (kafka::sasl).
        config.validate().unwrap();
    }

    #[test]
    fn node_flags_parse_and_explain_mistakes() {
        let member = parse_member("3=127.0.0.1:9103/127.0.0.1:9093").unwrap();
        assert_eq!((member.id, member.peer.port(), member.client.port(), member.kafka), (3, 9103, 9093, None));
        let member = parse_member("3=127.0.0.1:9103/127.0.0.1:9093/127.0.0.1:29093").unwrap();
        assert_eq!(member.kafka.map(|k| k.port()), Some(29093), "an optional Kafka address");
        assert!(parse_member("3=127.0.0.1:9103/127.0.0.1:9093/x").unwrap_err().contains("Kafka address"));
        assert!(parse_member("3=127.0.0.1:9103").unwrap_err().contains("expected ID=PEER_ADDR/CLIENT_ADDR"));
        assert!(parse_member("x=127.0.0.1:1/127.0.0.1:2").unwrap_err().contains("node id"));
        assert!(parse_member("1=127.0.0.1/127.0.0.1:2").unwrap_err().contains("peer address"));
    }
}
