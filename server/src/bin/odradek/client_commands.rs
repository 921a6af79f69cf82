//! `odradek topic`, `produce`, `consume` and `cluster status`: the client crate behind a CLI.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use odradek_client::scram::Mechanism;
use odradek_client::tls::{ClientTls, Pem};
use odradek_client::{
    Acks, Admin, ClientError, ClusterConfig, ClusterSession, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig,
    ProducerRecord, SettingChange, TopicConfig,
};

use crate::output::{note, say};

/// Where to connect: comma-separated `host:port` of any nodes.
#[derive(Args, Debug, Clone)]
pub struct Bootstrap {
    /// Comma-separated addresses of any nodes of the cluster.
    #[arg(long, short = 'b', env = "ODRADEK_BOOTSTRAP", default_value = crate::DEFAULT_BOOTSTRAP, global = true)]
    pub bootstrap: String,
    /// Connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, env = "ODRADEK_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to present, for listeners that require one (with --tls-key).
    #[arg(long, env = "ODRADEK_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "ODRADEK_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name to check the servers' certificates against (default: the host dialed).
    #[arg(long, global = true)]
    pub tls_server_name: Option<String>,
    /// Authenticate as this user (SASL/SCRAM); the password comes from the environment variable
    /// ODRADEK_PASSWORD (never a flag: flags show in `ps`).
    #[arg(long, env = "ODRADEK_USER", global = true)]
    pub user: Option<String>,
    /// The SCRAM mechanism to authenticate with.
    #[arg(long, default_value = "scram-sha-512", global = true)]
    pub sasl_mechanism: String,
}

impl Bootstrap {
    pub fn addresses(&self) -> Vec<&str> {
        self.bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()).collect()
    }

    /// The client settings: defaults, over TLS with `--tls-ca`, authenticated as `--user`.
    pub fn cluster_config(&self) -> Result<ClusterConfig, String> {
        let mut config = ClusterConfig::default();
        config.connection.tls = self.tls()?;
        let Some(user) = &self.user else { return Ok(config) };
        let mechanism = Mechanism::parse(&self.sasl_mechanism)
            .ok_or_else(|| format!("--sasl-mechanism {:?}: scram-sha-256 or scram-sha-512", self.sasl_mechanism))?;
        let password = std::env::var("ODRADEK_PASSWORD").map_err(|_| format!("--user {user} needs its password in ODRADEK_PASSWORD"))?;
        Ok(config.with_sasl(mechanism, user, &password))
    }

    /// The TLS settings of `--tls-ca`, `--tls-cert`, `--tls-key` (None: plaintext).
    fn tls(&self) -> Result<Option<ClientTls>, String> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() {
                return Err("--tls-cert needs --tls-ca (the CA that signs the servers' certificates)".into());
            }
            return Ok(None);
        };
        let mut tls = ClientTls::new(Pem::File(ca.clone()));
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls.identity = Some((Pem::File(cert.clone()), Pem::File(key.clone())));
        }
        tls.server_name = self.tls_server_name.clone();
        // Read now: a missing or bad file is reported before any connection is tried.
        tls.config().map_err(|e| e.to_string())?;
        Ok(Some(tls))
    }

    /// An admin client for these nodes, as `--user`.
    pub fn admin(&self) -> Result<Admin, String> {
        let session = ClusterSession::new(&self.addresses(), self.cluster_config()?).map_err(explain)?;
        Ok(Admin::with_cluster(session))
    }
}

pub(crate) fn explain(error: ClientError) -> String {
    let kind = if error.is_definite() { "definite: it had no effect" } else { "indefinite: it may have taken effect" };
    format!("{error} ({kind})")
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic and wait until every partition has a leader.
    Create {
        /// 1 to 249 characters of [a-zA-Z0-9._-].
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        /// Copies of each partition, on distinct nodes (at most the number of nodes).
        #[arg(long, short = 'r', default_value_t = 3)]
        replication_factor: u32,
        /// Delete data older than this (ms); -1 keeps it forever; default: the broker's.
        #[arg(long)]
        retention_ms: Option<i64>,
        /// Delete the oldest data beyond this many bytes per partition; -1: no limit.
        #[arg(long)]
        retention_bytes: Option<i64>,
        /// Roll log segments at this size.
        #[arg(long)]
        segment_bytes: Option<i64>,
    },
    /// Move a partition to other replicas (the first leads by preference). Returns once the move
    /// is recorded; `cluster status` shows it until the partition's leader has done it.
    Reassign {
        name: String,
        #[arg(long)]
        partition: u32,
        /// Node ids, comma-separated (e.g. 2,4,5); at least as many as the partition has now.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<u64>,
    },
    /// List topic names.
    List,
    /// Show a topic's partitions, leaders and replicas (with --configs: its settings instead).
    Describe {
        name: String,
        /// Each setting, its value, and whether it is the broker's default.
        #[arg(long)]
        configs: bool,
    },
    /// Change a topic at runtime: add partitions, change its settings (all checked first:
    /// nothing changes when anything is wrong).
    Alter(AlterArgs),
    /// Delete a topic (its data is no longer served).
    Delete { name: String },
    /// Delete a partition's records below an offset (Kafka's DeleteRecords): its log start
    /// moves there on every replica, so consumers can no longer read below it. Segments go when
    /// retention removes them.
    DeleteRecords {
        topic: String,
        #[arg(long, short = 'p')]
        partition: u32,
        /// The new log start; at most the high watermark. Default: the high watermark (every
        /// record so far).
        #[arg(long)]
        before: Option<u64>,
    },
}

pub async fn topic(bootstrap: &Bootstrap, command: TopicCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    match command {
        TopicCommand::Create { name, partitions, replication_factor, retention_ms, retention_bytes, segment_bytes } => {
            let config = TopicConfig {
                retention_ms: retention_ms.unwrap_or(0),
                retention_bytes: retention_bytes.unwrap_or(0),
                segment_bytes: segment_bytes.unwrap_or(0),
                ..TopicConfig::default()
            };
            admin.create_topic(&name, partitions, replication_factor, config).await.map_err(explain)?;
            crate::topic_setup::wait_for_leaders(&admin, &name, Duration::from_secs(30)).await?;
            say!("Created topic {name:?}: {partitions} partitions, replication factor {replication_factor}.");
        }
        TopicCommand::Reassign { name, partition, replicas } => {
            admin.reassign_partition(&name, partition, &replicas).await.map_err(explain)?;
            say!("Reassigning {name}/{partition} to {}: recorded; `odradek cluster status` shows its progress.", node_list(&replicas));
        }
        TopicCommand::List => {
            let mut names = admin.list_topics().await.map_err(explain)?;
            names.sort();
            for name in names {
                say!("{name}");
            }
        }
        TopicCommand::Alter(args) => alter_topic(&admin, args).await?,
        TopicCommand::Describe { name, configs: true } => {
            let settings = admin.describe_topic_configs(&name).await.map_err(explain)?;
            say!("Topic {name:?} settings:");
            say!("{:<20} {:>20}  source", "name", "value");
            for setting in settings {
                let source = if setting.is_default { "default" } else { "topic" };
                say!("{:<20} {:>20}  {source}", setting.name, setting.value);
            }
        }
        TopicCommand::Describe { name, configs: false } => {
            let topic = admin.describe_topic(&name).await.map_err(explain)?;
            say!("Topic {:?}: {} partitions", topic.name, topic.partitions.len());
            say!("{:>9}  {:>6}  replicas", "partition", "leader");
            for partition in &topic.partitions {
                let leader = if partition.leader == 0 { "-".to_string() } else { partition.leader.to_string() };
                let replicas: Vec<String> = partition.replicas.iter().map(u64::to_string).collect();
                say!("{:>9}  {:>6}  {}", partition.partition, leader, replicas.join(","));
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await.map_err(explain)?;
            say!("Deleted topic {name:?}.");
        }
        TopicCommand::DeleteRecords { topic, partition, before } => {
            let log_start = admin.delete_records(&topic, partition, before).await.map_err(explain)?;
            say!("{topic}/{partition} now starts at offset {log_start}.");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct AlterArgs {
    name: String,
    /// Grow the topic to this many partitions (more than it has; a topic never shrinks).
    #[arg(long, short = 'p')]
    partitions: Option<u32>,
    /// Delete data older than this (ms); -1 keeps it forever.
    #[arg(long)]
    retention_ms: Option<i64>,
    /// Delete the oldest data beyond this many bytes per partition; -1: no limit.
    #[arg(long)]
    retention_bytes: Option<i64>,
    /// Roll log segments at this size (new segments; existing ones keep theirs).
    #[arg(long)]
    segment_bytes: Option<i64>,
    /// The largest batch the topic accepts.
    #[arg(long)]
    max_message_bytes: Option<i64>,
    /// Set a setting by its Kafka name (repeatable), e.g. --config retention.ms=60000.
    #[arg(long, value_name = "NAME=VALUE")]
    config: Vec<String>,
    /// Put a setting back to the broker's default (repeatable), e.g. --reset retention.ms.
    #[arg(long, value_name = "NAME")]
    reset: Vec<String>,
    /// Check the change and report, changing nothing.
    #[arg(long)]
    validate_only: bool,
}

impl AlterArgs {
    fn changes(&self) -> Result<Vec<SettingChange>, String> {
        let flags = [
            ("retention.ms", self.retention_ms),
            ("retention.bytes", self.retention_bytes),
            ("segment.bytes", self.segment_bytes),
            ("max.message.bytes", self.max_message_bytes),
        ];
        let mut changes: Vec<SettingChange> =
            flags.into_iter().filter_map(|(name, value)| Some(SettingChange::Set(name.to_string(), value?))).collect();
        for pair in &self.config {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(format!("--config {pair:?}: expected NAME=VALUE"));
            };
            let value = value.trim().parse::<i64>().map_err(|error| format!("--config {pair:?}: the value is not an integer ({error})"))?;
            changes.push(SettingChange::Set(name.trim().to_string(), value));
        }
        changes.extend(self.reset.iter().map(|name| SettingChange::Reset(name.clone())));
        Ok(changes)
    }
}

async fn alter_topic(admin: &Admin, args: AlterArgs) -> Result<(), String> {
    let changes = args.changes()?;
    if args.partitions.is_none() && changes.is_empty() {
        return Err("nothing to change: give --partitions or a setting (see --help)".to_string());
    }
    admin.alter_topic(&args.name, args.partitions, &changes, args.validate_only).await.map_err(explain)?;
    let name = &args.name;
    if args.validate_only {
        say!("Topic {name:?}: the change is valid (nothing changed).");
        return Ok(());
    }
    if let Some(partitions) = args.partitions {
        // The answering node may not have applied the addition yet: wait until it shows.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while admin.describe_topic(name).await.map_err(explain)?.partitions.len() < partitions as usize {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("topic {name:?}: {partitions} partitions not in the metadata after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crate::topic_setup::wait_for_leaders(admin, name, Duration::from_secs(30)).await?;
        say!("Topic {name:?} now has {partitions} partitions.");
    }
    if !changes.is_empty() {
        say!("Topic {name:?}: {} setting(s) changed.", changes.len());
    }
    Ok(())
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksArg {
    /// After a quorum has the records on disk.
    All,
    /// After the leader's own fsync.
    #[value(name = "1")]
    Leader,
    /// Never answered.
    #[value(name = "0")]
    None,
}

impl AcksArg {
    pub fn to_acks(self) -> Acks {
        match self {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
            AcksArg::None => Acks::None,
        }
    }
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// The topic to write to.
    #[arg(long, short = 't')]
    topic: String,
    /// When the cluster acknowledges: all (a majority fsynced), 1 (the leader fsynced), 0 (never).
    #[arg(long, value_enum, default_value = "all")]
    acks: AcksArg,
    /// Send every record to this partition (default: by key, or spread when keyless).
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// Split each line at the first SEP into key and value (e.g. --key-separator :).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Compress each batch: none, gzip, snappy, lz4 or zstd (Kafka's compression.type).
    #[arg(long, default_value = "none")]
    compression: odradek_client::batch::Compression,
    /// Turn the idempotent producer off (required for acks 1 and 0).
    #[arg(long)]
    no_idempotence: bool,
    /// Print partition and offset of every record once acknowledged.
    #[arg(long)]
    print_offsets: bool,
}

/// One record per stdin line.
pub async fn produce(bootstrap: &Bootstrap, args: ProduceArgs) -> Result<(), String> {
    let acks = args.acks.to_acks();
    let config = ProducerConfig {
        acks,
        idempotence: !args.no_idempotence && acks == Acks::All,
        cluster: bootstrap.cluster_config()?,
        compression: args.compression,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&bootstrap.addresses(), config).await.map_err(explain)?;
    let (lines, mut lines_rx) = tokio::sync::mpsc::channel::<String>(1024);
    // Stdin is blocking: read it on its own thread (the CLI runs on real tokio only).
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut deliveries = std::collections::VecDeque::new();
    let mut sent = 0u64;
    while let Some(line) = lines_rx.recv().await {
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_string()), value.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut record = ProducerRecord::new(args.topic.clone(), value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        deliveries.push_back(producer.send(record).await.map_err(explain)?);
        sent += 1;
        // Report as acknowledgements come in, without waiting for the end of input.
        while deliveries.len() > 4096 {
            let oldest = deliveries.pop_front().expect("more than 4096 queued");
            report(oldest.await, args.print_offsets)?;
        }
    }
    producer.flush().await.map_err(explain)?;
    let mut failed = 0;
    for delivery in deliveries {
        if report(delivery.await, args.print_offsets).is_err() {
            failed += 1;
        }
    }
    producer.close().await.map_err(explain)?;
    note!("Produced {} of {sent} records to {:?}.", sent - failed, args.topic);
    if failed > 0 {
        return Err(format!("{failed} records failed"));
    }
    Ok(())
}

fn report(outcome: Result<odradek_client::RecordMetadata, ClientError>, print: bool) -> Result<(), String> {
    match outcome {
        Ok(metadata) => {
            if print {
                // A closed stdout stops the printing, not the producing.
                match metadata.offset {
                    Some(offset) => say!("{}\t{}", metadata.partition, offset),
                    None => say!("{}\t-", metadata.partition),
                };
            }
            Ok(())
        }
        Err(error) => {
            let message = explain(error);
            note!("odradek: record failed: {message}");
            Err(message)
        }
    }
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long, short = 't')]
    pub(crate) topic: String,
    /// Only these partitions (repeat the flag); default: all.
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Vec<u32>,
    /// Start at the beginning of each partition (the default). With --group: where a partition
    /// without a committed offset starts.
    #[arg(long, conflicts_with_all = ["from_end", "offset"])]
    from_beginning: bool,
    /// Start after the last committed record. With --group: where a partition without a
    /// committed offset starts.
    #[arg(long, conflicts_with = "offset")]
    pub(crate) from_end: bool,
    /// Start at this offset in every partition read.
    #[arg(long, conflicts_with = "group")]
    offset: Option<u64>,
    /// Keep waiting for new records (default: stop at the end of the log).
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Print each record's key (tab-separated before the value).
    #[arg(long)]
    print_key: bool,
    /// Print partition:offset before each record.
    #[arg(long)]
    print_offset: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub(crate) max_records: Option<u64>,
    /// Join this consumer group: the group shares the topic's partitions among its members and
    /// remembers (commits) how far this consumer got, after each batch printed.
    #[arg(long, short = 'g')]
    pub(crate) group: Option<String>,
    /// With --group: the group protocol (consumer: KIP-848, the coordinator assigns; classic:
    /// JoinGroup/SyncGroup, the group's leader member assigns).
    #[arg(long, value_enum, default_value = "consumer", requires = "group")]
    pub(crate) group_protocol: GroupProtocolArg,
    /// With --group: a static member id (a restart within the session timeout keeps the
    /// member's partitions without a rebalance).
    #[arg(long, requires = "group")]
    pub(crate) group_instance_id: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocolArg {
    /// KIP-848: the coordinator assigns, members reconcile incrementally.
    Consumer,
    /// JoinGroup/SyncGroup: the group's leader member assigns.
    Classic,
}

impl GroupProtocolArg {
    pub fn to_protocol(self) -> odradek_client::GroupProtocol {
        match self {
            GroupProtocolArg::Consumer => odradek_client::GroupProtocol::Consumer,
            GroupProtocolArg::Classic => odradek_client::GroupProtocol::Classic,
        }
    }
}

/// How `consume` prints a record.
pub(crate) struct RecordFormat {
    pub print_key: bool,
    pub print_offset: bool,
}

impl RecordFormat {
    pub(crate) fn of(args: &ConsumeArgs) -> RecordFormat {
        RecordFormat { print_key: args.print_key, print_offset: args.print_offset }
    }

    /// One record as a line (without the newline): partition:offset and key first if asked.
    pub(crate) fn line(&self, record: &odradek_client::ConsumerRecord) -> String {
        let mut line = String::new();
        if self.print_offset {
            line.push_str(&format!("{}:{}\t", record.partition, record.offset));
        }
        if self.print_key {
            let key = record.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            line.push_str(&format!("{key}\t"));
        }
        line.push_str(&record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default());
        line
    }
}

/// Prints records, one per line.
pub async fn consume(bootstrap: &Bootstrap, args: ConsumeArgs) -> Result<(), String> {
    if args.group.is_some() {
        return crate::group_commands::consume_in_group(bootstrap, args).await;
    }
    let addresses = bootstrap.addresses();
    let admin = bootstrap.admin()?;
    let topic = admin.describe_topic(&args.topic).await.map_err(explain)?;
    let partitions: Vec<u32> =
        if args.partition.is_empty() { topic.partitions.iter().map(|p| p.partition).collect() } else { args.partition.clone() };
    // A partition the topic does not have is a mistake to report now: the client would take
    // it for metadata not yet caught up and retry until its operation timeout.
    if let Some(missing) = partitions.iter().find(|&&p| !topic.partitions.iter().any(|info| info.partition == p)) {
        let count = topic.partitions.len();
        return Err(format!("topic {:?} has {count} partitions (0 to {}); no partition {missing}", args.topic, count.saturating_sub(1)));
    }
    // Each partition's high watermark as of now: where reading stops without --follow, and
    // the bound an --offset must not pass.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    if !args.follow || args.offset.is_some() {
        for &partition in &partitions {
            let end = admin.list_offsets(&args.topic, partition, OffsetQuery::Latest).await.map_err(explain)?;
            ends.insert(partition, end.offset);
        }
    }
    if let Some(offset) = args.offset {
        if let Some((partition, end)) = ends.iter().find(|(_, &end)| offset > end) {
            let topic = &args.topic;
            return Err(format!(
                "--offset {offset} is beyond the end of {topic}/{partition}: the end of {topic}/{partition} is {end} (the offset the next record gets)"
            ));
        }
    }
    let consumer_config = ConsumerConfig { cluster: bootstrap.cluster_config()?, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(&addresses, consumer_config).map_err(explain)?;
    consumer.assign(partitions.iter().map(|&p| (args.topic.clone(), p)).collect()).map_err(explain)?;
    let start = match (args.from_end, args.offset) {
        (true, _) => Offset::End,
        (false, Some(offset)) => Offset::At(offset),
        (false, None) => Offset::Beginning,
    };
    for &partition in &partitions {
        consumer.seek(&args.topic, partition, start).await.map_err(explain)?;
    }
    let mut printed = 0u64;
    let format = RecordFormat::of(&args);
    loop {
        if !args.follow && partitions.iter().all(|&p| consumer.position(&args.topic, p).unwrap_or(0) >= ends[&p]) {
            break;
        }
        let records = consumer.poll(Duration::from_millis(500)).await.map_err(explain)?;
        for record in records {
            if !args.follow && record.offset >= ends[&record.partition] {
                continue;
            }
            if !say!("{}", format.line(&record)) {
                return Ok(()); // stdout closed (e.g. piped into head): nobody reads on
            }
            printed += 1;
            if args.max_records.is_some_and(|max| printed >= max) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Take a node out of the cluster: its controller vote and every replica move to other
    /// nodes first (reassignments), then it is removed. Returns once recorded; `cluster status`
    /// shows it draining until it is gone. Refused for an unknown node, when fewer nodes would
    /// remain than a topic's replication factor, or for the controller group's last voter.
    Decommission {
        /// The node's id.
        id: u64,
        /// Stop a running decommission instead: the node stays a member (moves off it that
        /// were recorded already run to their end).
        #[arg(long)]
        cancel: bool,
    },
}

pub async fn node(bootstrap: &Bootstrap, command: NodeCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    let NodeCommand::Decommission { id, cancel } = command;
    if cancel {
        admin.cancel_decommission(id).await.map_err(explain)?;
        say!("Decommission of node {id} cancelled: it stays a member.");
        return Ok(());
    }
    admin.decommission_node(id).await.map_err(explain)?;
    say!("Decommissioning node {id}: recorded; its replicas move away, then it is removed (`odradek cluster status` shows it draining).");
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Nodes (up or unreachable, their metadata lag), suspect replicas, learners, reassignments
    /// in progress, damaged replicas being repaired (and repairs done), and per partition: leader, term, commit index, high watermark, each
    /// replica's lag and the caught-up set (as the partition's leader reports them).
    Status,
    /// Move the controller (metadata) group's voters to these nodes, through joint consensus
    /// (new voters catch up as learners first). Returns once the change is recorded; refused
    /// with no voter left or when a majority of the new voters does not hold the metadata log.
    /// Spread replicas, then preferred leaders, evenly over the nodes (after adding nodes):
    /// one reassignment per partition that changes; catch-up traffic is bounded by each
    /// node's --learner-catch-up-bytes-per-second.
    Rebalance,
    Controllers {
        /// Node ids, comma-separated (e.g. 1,2,4).
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
    },
}

/// Node ids as `1,2,3`.
fn node_list(nodes: &[u64]) -> String {
    nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub async fn cluster(bootstrap: &Bootstrap, command: ClusterCommand) -> Result<(), String> {
    let admin = bootstrap.admin()?;
    if let ClusterCommand::Rebalance = command {
        let moves = admin.rebalance().await.map_err(explain)?;
        say!("Rebalance: {moves} partition moves recorded; `odradek cluster status` shows their progress.");
        return Ok(());
    }
    if let ClusterCommand::Controllers { voters } = command {
        admin.change_controllers(&voters).await.map_err(explain)?;
        say!("Controller voters moving to {}: recorded; `odradek cluster status` shows the metadata group.", node_list(&voters));
        return Ok(());
    }
    let description = admin.describe_cluster().await.map_err(explain)?;
    // Each node reports the partitions it hosts; the leader's report has the follower lags.
    let mut partitions: BTreeMap<(String, u32), odradek_client::admin::PartitionState> = BTreeMap::new();
    let mut reachable = BTreeMap::new();
    // (topic, partition, node) of every replica that reports itself suspect.
    let mut suspects = Vec::new();
    let mut learners = BTreeMap::new();
    let mut reassignments = BTreeMap::new();
    // Only the controller reports the metadata log's replicas.
    let mut controller_replicas = description.controller_replicas.clone();
    for broker in &description.brokers {
        match admin.describe_node(&broker.address).await {
            Ok(report) => {
                reachable.insert(broker.node_id, "up");
                if !report.controller_replicas.is_empty() {
                    controller_replicas = report.controller_replicas;
                }
                for moving in report.reassignments {
                    reassignments.insert((moving.topic.clone(), moving.partition), moving);
                }
                for partition in report.partitions {
                    let key = (partition.topic.clone(), partition.partition);
                    if partition.suspect {
                        suspects.push(format!("{}/{} on node {}", key.0, key.1, broker.node_id));
                    }
                    if !partition.learners.is_empty() {
                        learners.insert(key.clone(), partition.learners.clone());
                    }
                    let is_leader_report = partition.leader == broker.node_id;
                    if is_leader_report || !partitions.contains_key(&key) {
                        partitions.insert(key, partition);
                    }
                }
            }
            Err(_) => {
                reachable.insert(broker.node_id, "unreachable");
            }
        }
    }
    say!("Nodes (controller: {}):", if description.controller == 0 { "none".into() } else { description.controller.to_string() });
    for broker in &description.brokers {
        let metadata_lag = controller_replicas.iter().find(|r| r.node_id == broker.node_id).map(|r| r.lag);
        let metadata_lag = metadata_lag.map_or("?".to_string(), |lag| lag.to_string());
        let draining = if description.draining.contains(&broker.node_id) { "  draining" } else { "" };
        say!(
            "  {}  {}  {}  metadata lag {metadata_lag}{draining}",
            broker.node_id,
            broker.address,
            reachable.get(&broker.node_id).unwrap_or(&"?")
        );
    }
    let none_or = |items: Vec<String>| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    let target = if description.controller_voters_target.is_empty() {
        String::new()
    } else {
        format!("; moving to {}", node_list(&description.controller_voters_target))
    };
    say!(
        "Controller voters: {}; learners: {}{target}",
        node_list(&description.controller_voters),
        none_or(description.controller_learners.iter().map(u64::to_string).collect())
    );
    say!("Suspect replicas: {}", none_or(suspects));
    let learners = learners.iter().map(|((topic, partition), nodes)| format!("{topic}/{partition}: {}", node_list(nodes))).collect();
    say!("Learners: {}", none_or(learners));
    let moving = reassignments
        .values()
        .map(|m| format!("{}/{}: {} -> {} ({})", m.topic, m.partition, node_list(&m.replicas_from), node_list(&m.replicas_to), m.phase))
        .collect();
    say!("Reassignments in progress: {}", none_or(moving));
    let repairs = description
        .repairs
        .iter()
        .map(|r| match r.metadata {
            true => format!("the metadata replica on node {} ({})", r.node, r.phase),
            false => format!("{}/{} on node {} ({})", r.topic, r.partition, r.node, r.phase),
        })
        .collect();
    say!("Damaged replicas being repaired: {}; repairs done: {}", none_or(repairs), description.repairs_completed);
    say!("");
    say!(
        "{:<24} {:>9} {:>6} {:>6} {:>12} {:>14}  {:<16} {:<12} caught up",
        "topic",
        "partition",
        "leader",
        "term",
        "commit",
        "high watermark",
        "replicas (node:lag)",
        "assigned"
    );
    for ((topic, partition), state) in &partitions {
        let replicas: Vec<String> = state.replicas.iter().map(|r| format!("{}:{}", r.node_id, r.lag)).collect();
        let leader = if state.leader == 0 { "-".to_string() } else { state.leader.to_string() };
        let (replicas, caught_up) = if replicas.is_empty() {
            ("(leader not reachable)".to_string(), "?".to_string())
        } else {
            (replicas.join(" "), node_list(&state.caught_up()))
        };
        say!(
            "{topic:<24} {partition:>9} {leader:>6} {:>6} {:>12} {:>14}  {replicas:<16} {:<12} {caught_up}",
            state.term,
            state.commit_index,
            state.high_watermark,
            node_list(&state.assigned)
        );
    }
    if partitions.is_empty() {
        say!("(no partitions)");
    }
    Ok(())
}
