//! Starting and stopping a node: the raft driver with the controller group, the client
//! listener and the background duties, all on the current runtime (real tokio or madsim).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use odradek_consensus::{FaultyTransport, Node, NodeConfig, NodeError, NodeHandle, NodeId, TcpTransport, Transport, TransportError};

use crate::faults::FaultHooks;
use odradek_log::Disk;
use odradek_seams::watch;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::context::NodeContext;
use crate::group::service::GroupService;
use crate::meta::METADATA_GROUP;
use crate::shutdown::{self, Shutdown};

/// How long a graceful shutdown spends handing leadership away ([`Server::drain`]) at most: a
/// few election timeouts, enough for raft's transfers, bounded so a stop never hangs.
pub const DRAIN_TIME_MAX: Duration = Duration::from_secs(10);
/// How often [`Server::drain`] looks whether the node still leads a group.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(20);
use crate::state::{NodeState, StateMachine};

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("peer transport: {0}")]
    Transport(#[from] TransportError),
    #[error("cannot listen for clients on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] odradek_client::tls::TlsError),
    #[error("cannot measure free disk space: {0}")]
    Disk(#[source] std::io::Error),
    /// A storage fault (or another fatal error) of the raft driver: the node stopped and must
    /// restart from what is on disk.
    #[error("raft driver: {0}")]
    Node(#[from] NodeError),
}

/// Re-measures free space every `disk_check_interval_ms` until shutdown (F-S9).
async fn watch_free_space<D: Disk>(disk: D, config: Arc<ServerConfig>, state: Arc<NodeState>, mut shutdown: Shutdown) {
    let interval = std::time::Duration::from_millis(config.disk_check_interval_ms);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match disk.available_bytes(&config.data_dir).await {
            Ok(available) => state.set_disk_available(available, config.disk_reserve_bytes),
            Err(error) => tracing::warn!(%error, "measuring free disk space failed"),
        }
    }
}

/// How the metadata group opened at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetadataOpened {
    Whole,
    /// A rebuild after damage was under way (`crate::meta_repair`): the replica opened as a
    /// rebuilt one, suspect of its whole log while that is empty.
    Rebuilding,
    /// Its files are damaged: the node is quarantined (passive) until it is rebuilt.
    Quarantined,
}

/// Replays the whole controller log into the metadata before anything is served (or finds its
/// files damaged: the node is quarantined, or a rebuild of them under way).
async fn open_metadata<D: Disk, T: Transport, R: Disk>(
    node: &mut Node<D, T, StateMachine>,
    config: &ServerConfig,
    clock: &Clock,
    disk: &R,
    planted: &crate::planted::Planted,
) -> Result<MetadataOpened, ServerError> {
    let (voters, log_config) = (config.metadata_voters_initial(), config.metadata_log_config());
    // A rebuild of a damaged metadata replica was under way (module `meta_repair`): finish an
    // interrupted set-aside, then open the group as the rebuild does.
    let rebuilding = crate::meta_repair::rebuild_pending(disk, &config.data_dir).await.map_err(ServerError::Disk)?;
    let created = if rebuilding {
        tracing::warn!(node = config.id, "a rebuild of this node's damaged metadata replica is under way");
        node.set_aside_group(METADATA_GROUP, true).await?;
        if planted.metadata_repair_done_before_caught_up {
            node.create_group_with(METADATA_GROUP, &voters, 0, clock(), log_config).await
        } else {
            node.create_group_joining(METADATA_GROUP, &voters, clock(), log_config).await
        }
    } else {
        node.create_group_with(METADATA_GROUP, &voters, 0, clock(), log_config).await
    };
    match created {
        Ok(()) if rebuilding => Ok(MetadataOpened::Rebuilding),
        Ok(()) => Ok(MetadataOpened::Whole),
        // Damaged metadata files (R8 b: never truncated here). Without metadata the node
        // serves no client, but its partition replicas still vote and replicate, and it
        // answers the suspect queries of groups that cannot open: a replica elsewhere that
        // cut a rotten last entry may need this one's copies or word before it votes again
        // (protocol-aware recovery).
        Err(NodeError::Storage { source, .. }) if source.is_corruption() => {
            let (hosted, answering) = node.host_groups_on_disk(clock()).await?;
            tracing::error!(
                node = config.id,
                %source,
                hosted,
                answering,
                "metadata files are damaged: serving no client; hosting the groups on disk without leading them, \
                 until the metadata replica is rebuilt"
            );
            Ok(MetadataOpened::Quarantined)
        }
        Err(error) => Err(error.into()),
    }
}

/// The client listener (none for a quarantined node) and the address clients reach.
async fn listen_for_clients(config: &ServerConfig, quarantined: bool) -> Result<(Option<TcpListener>, SocketAddr), ServerError> {
    let listen = config.client_listen();
    if quarantined {
        return Ok((None, listen));
    }
    let listener = TcpListener::bind(listen).await.map_err(|source| ServerError::Listen { addr: listen, source })?;
    let client_addr = listener.local_addr().map_err(|source| ServerError::Listen { addr: listen, source })?;
    Ok((Some(listener), client_addr))
}

/// The Kafka listener, when this node runs one (never for a quarantined node).
async fn listen_for_kafka(config: &ServerConfig, quarantined: bool) -> Result<Option<TcpListener>, ServerError> {
    let Some(listen) = config.kafka_listen().filter(|_| !quarantined) else { return Ok(None) };
    let listener = TcpListener::bind(listen).await.map_err(|source| ServerError::Listen { addr: listen, source })?;
    Ok(Some(listener))
}

/// What a node needs to serve clients once its metadata group runs: at start, or on a
/// quarantined node once its metadata replica is rebuilt (`crate::meta_repair`).
struct Serving<D: Disk> {
    context: Arc<NodeContext>,
    groups: Arc<GroupService>,
    listener_tls: Option<crate::tls::ListenerTls>,
    space_disk: D,
    /// A joining node's disk, for `data_dir::finish_joining`.
    join_disk: Option<D>,
    shutdown: Shutdown,
}

impl<D: Disk> Serving<D> {
    /// Starts the client-facing tasks and the controller loop on `listener` (and the Kafka
    /// listener, if any).
    fn start(self, listener: TcpListener, kafka: Option<(TcpListener, SocketAddr)>) -> Vec<tokio::task::JoinHandle<()>> {
        let Serving { context, groups, listener_tls, space_disk, join_disk, shutdown } = self;
        let config = context.config.clone();
        // (Spawned in this order since the simulator's schedules depend on it.)
        let kafka = kafka.map(|(listener, bound)| {
            let brokers = crate::kafka::KafkaBrokers::new(&config, bound);
            tokio::spawn(crate::kafka::serve(listener, listener_tls.clone(), context.clone(), brokers, shutdown.clone()))
        });
        let mut tasks = vec![
            tokio::spawn(groups.run_timer(shutdown.clone())),
            tokio::spawn(watch_free_space(space_disk, config.clone(), context.state.clone(), shutdown.clone())),
            tokio::spawn(crate::net::serve(listener, listener_tls, context.clone(), shutdown.clone())),
            tokio::spawn(crate::controller::run(context.clone(), shutdown.clone())),
        ];
        tasks.extend(kafka);
        if let Some(join_disk) = join_disk {
            tasks.push(tokio::spawn(crate::data_dir::finish_joining(context, join_disk, shutdown)));
        }
        tasks
    }

    /// On a quarantined node: repairs the metadata replica (`crate::meta_repair`), then serves
    /// as any node, until shutdown.
    async fn after_metadata_repair(self, disk: D) {
        let context = self.context.clone();
        let mut shutdown = self.shutdown.clone();
        if !crate::meta_repair::repair(&context, &disk, &mut shutdown).await {
            return;
        }
        let listener = match listen_for_clients(&context.config, false).await {
            Ok((Some(listener), _)) => listener,
            Ok((None, _)) => return,
            Err(error) => {
                tracing::error!(%error, "the metadata replica is rebuilt but the client listener cannot bind: serving no client");
                return;
            }
        };
        let kafka = match listen_for_kafka(&context.config, false).await {
            Ok(kafka) => {
                kafka.and_then(|listener| Some((listener.local_addr().ok()?, listener))).map(|(bound, listener)| (listener, bound))
            }
            Err(error) => {
                tracing::error!(%error, "the metadata replica is rebuilt but the Kafka listener cannot bind");
                None
            }
        };
        let finish = tokio::spawn(crate::meta_repair::finish(context.clone(), disk, shutdown));
        let tasks = self.start(listener, kafka);
        tracing::info!(node = context.state.node_id, "serving clients again after the metadata replica's repair");
        for task in tasks.into_iter().chain([finish]) {
            let _ = task.await;
        }
    }
}

/// The metrics endpoint's listener, when configured (also on a quarantined node: it is how an
/// operator sees the quarantine).
async fn listen_for_metrics(config: &ServerConfig) -> Result<Option<(TcpListener, SocketAddr)>, ServerError> {
    let Some(listen) = config.metrics_listen else { return Ok(None) };
    let listener = TcpListener::bind(listen).await.map_err(|source| ServerError::Listen { addr: listen, source })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Listen { addr: listen, source })?;
    Ok(Some((listener, bound)))
}

/// A running node.
pub struct Server {
    shutdown: watch::Sender<bool>,
    node: NodeHandle,
    state: Arc<NodeState>,
    client_addr: SocketAddr,
    /// Where the Kafka listener is bound, if it runs.
    kafka_addr: Option<SocketAddr>,
    /// Where the metrics endpoint is bound, if it runs.
    metrics_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The driver's result: `Ok` after a clean stop.
    driver: oneshot::Receiver<Result<(), NodeError>>,
    /// Tells whoever waits that the driver stopped (a fatal error ends the node).
    stopped: watch::Receiver<bool>,
    /// The metadata files were damaged at start: the node served no client until its
    /// metadata replica was rebuilt (see `start_with` and [`Server::is_quarantined`]).
    quarantined: bool,
    /// What the open-file budget holds and did (all zero without one).
    open_files: Arc<dyn Fn() -> odradek_log::BudgetStats + Send + Sync>,
}

impl Server {
    /// Opens the node's data, rebuilds the metadata from the controller log, joins the peers and
    /// starts serving clients.
    pub async fn start<D: Disk>(config: ServerConfig, disk: D, clock: Clock) -> Result<Server, ServerError> {
        Server::start_with(config, disk, clock, FaultHooks::default()).await
    }

    /// [`Server::start`] with a simulation's fault hooks (none in production).
    pub async fn start_with<D: Disk>(config: ServerConfig, disk: D, clock: Clock, faults: FaultHooks) -> Result<Server, ServerError> {
        config.validate()?;
        let config = Arc::new(config);
        let planted = config.planted_switches();
        let me = config.me().clone();
        let state = NodeState::new(config.id);
        state.lock().meta.plant_removal_while_holding(planted.decommission_before_replicas_moved);
        let peers: BTreeMap<NodeId, SocketAddr> = config.nodes.iter().filter(|m| m.id != config.id).map(|m| (m.id, m.peer)).collect();
        let listener_tls = crate::tls::listener(&config.tls)?;
        let peer_tls = crate::tls::peers(&config.tls)?;
        // Relays dial other nodes' client listeners: over TLS when those speak it, as this node
        // (its peer certificate, checked against the cluster CA and the name node-<id>).
        let relay_tls = if config.tls.clients() { peer_tls.clone() } else { None };
        let (transport, inbox) = TcpTransport::bind_with_tls(config.id, config.incarnation, me.peer, peers, peer_tls).await?;
        let peer_book = transport.peer_book();
        let transport = FaultyTransport::new(transport, faults.peer_messages.clone());
        let mut node_config = NodeConfig::new(config.id, config.data_dir.clone());
        // F-S9: a follower at its disk reserve drops appends instead of failing on ENOSPC.
        node_config.entry_budget = Some(state.disk_budget.clone());
        // Issue 19, defect 4: a node that cannot take the largest batch hands its leaderships away.
        node_config.lead_room_bytes_min = u64::from(config.topic_defaults.batch_bytes_max);
        node_config.log_config = config.log_config(
            config.topic_defaults.retention_ms,
            config.topic_defaults.retention_bytes,
            config.topic_defaults.segment_bytes,
        );
        #[cfg(any(madsim, feature = "planted-bugs"))]
        {
            node_config.planted.send_before_persist = planted.follower_acks_before_persist;
            node_config.planted.trust_recovery_cut = planted.trust_recovery_cut;
            node_config.planted.suspect_vote_by_term_only = planted.suspect_vote_by_term_only;
            node_config.planted.silent_recovery_cut = planted.silent_recovery_cut;
            node_config.planted.snapshot_withheld = planted.snapshot_withheld;
            node_config.planted.retention_past_commit = planted.retention_past_commit;
            node_config.planted.hibernated_leader_reads_locally = planted.hibernated_leader_reads_locally;
            node_config.planted.retention_candidates_stale = planted.retention_candidates_stale;
            node_config.planted.hand_over_skip_dropped = planted.hand_over_skip_dropped;
        }
        // R8 d: a new incarnation's empty logs may be replicas the node lost (module `data_dir`).
        if config.data_dir_new {
            crate::data_dir::mark_joining(&disk, &config.data_dir).await.map_err(ServerError::Disk)?;
            tracing::warn!(
                node = config.id,
                "the data directory is a new incarnation: joining, out of every group's votes until caught up"
            );
        }
        node_config.empty_logs_suspect = config.data_dir_new && !planted.wiped_node_keeps_identity;
        let stages = config.trace_stages.then(|| Arc::new(odradek_consensus::stages::StageClock::new()));
        node_config.stages = stages.clone();
        node_config.learner_catch_up_bytes_per_second =
            (config.learner_catch_up_bytes_per_second > 0).then_some(config.learner_catch_up_bytes_per_second);
        node_config.hibernate = config.hibernate;
        let join_disk = config.data_dir_new.then(|| disk.clone());
        // Free space is known before the first produce, then re-measured periodically.
        let available = disk.available_bytes(&config.data_dir).await.map_err(ServerError::Disk)?;
        state.set_disk_available(available, config.disk_reserve_bytes);
        let space_disk = disk.clone();
        let repair_disk = disk.clone();
        let metrics = Arc::new(crate::metrics::NodeMetrics::new());
        // The open-file budget (DESIGN.md "Open-file budget"): none leaves every call as is.
        let disk = match config.max_open_files {
            Some(budget) => odradek_log::BudgetDisk::with_planted(disk, budget, planted.evicted_without_sync),
            None => odradek_log::BudgetDisk::unbounded(disk),
        };
        let open_files = {
            let disk = disk.clone();
            Arc::new(move || disk.stats())
        };
        let disk = crate::metrics::disk::MeteredDisk::new(disk, metrics.fsync_histogram());
        let mut node = Node::new(node_config, disk, transport, inbox, StateMachine::new(state.clone(), planted));
        let opened = open_metadata(&mut node, &config, &clock, &repair_disk, &planted).await?;
        let quarantined = opened == MetadataOpened::Quarantined;
        state.set_metadata_rebuilding(opened == MetadataOpened::Rebuilding);
        // Members that joined the running cluster, as the replayed metadata log knows them.
        crate::membership::dial_members(&state, &peer_book);
        metrics.set_quarantined(quarantined);
        let metrics_listener = listen_for_metrics(&config).await?;
        let metrics_addr = metrics_listener.as_ref().map(|(_, bound)| *bound);
        let (listener, client_addr) = listen_for_clients(&config, quarantined).await?;
        let kafka_listener = listen_for_kafka(&config, quarantined).await?;
        let kafka_addr = match &kafka_listener {
            Some(listener) => Some(listener.local_addr().map_err(|source| ServerError::Listen { addr: client_addr, source })?),
            None => None,
        };

        // Fetches read the logs through the driver's readers, never through its loop (issue 17).
        let (handle, commands) = NodeHandle::new();
        let handle = handle.reading_from(node.readers());
        let (shutdown, shutdown_rx) = shutdown::channel();
        let (driver_done, driver) = oneshot::channel();
        let (stopped_tx, stopped) = watch::channel(false);
        let tick = config.tick();
        let node_id = config.id;
        let group_clock = clock.clone();
        tokio::spawn(async move {
            let result = node.run(commands, tick, move || clock()).await;
            if let Err(error) = &result {
                tracing::error!(node = node_id, %error, "the raft driver stopped on a fatal error");
            }
            let _ = stopped_tx.send(true);
            let _ = driver_done.send(result);
        });
        let leaders = Default::default();
        let group_planted = crate::group::service::Planted {
            accept_stale_commit: planted.accept_stale_commit,
            answer_before_replay: planted.coordinator_answers_before_replay,
            names_preferred: planted.coordinator_names_preferred,
            give_owned_partitions: planted.assignment_two_owners,
            regex_matches_substring: planted.regex_matches_substring,
            offset_delete_ignores_subscription: planted.offset_delete_ignores_subscription,
        };
        let groups = Arc::new(GroupService::new(handle.clone(), state.clone(), config.clone(), group_clock, group_planted));
        let context = Arc::new(NodeContext {
            config: config.clone(),
            state: state.clone(),
            node: handle.clone(),
            faults,
            planted,
            leaders,
            groups: groups.clone(),
            auth: crate::auth::NodeAuth::new(config.auth.clone()),
            relay_tls,
            metrics,
            stages,
            peers: peer_book,
        });
        let metrics_tasks = metrics_listener.map(|(listener, _)| {
            [
                tokio::spawn(crate::metrics::http::serve(listener, context.clone(), shutdown_rx.clone())),
                tokio::spawn(crate::metrics::run_sampler(context.clone(), shutdown_rx.clone())),
            ]
        });
        let serving = Serving { context: context.clone(), groups, listener_tls, space_disk, join_disk, shutdown: shutdown_rx.clone() };
        let mut tasks = match listener {
            Some(listener) => serving.start(listener, kafka_listener.zip(kafka_addr)),
            // Quarantined: serves once its metadata replica is rebuilt.
            None => vec![tokio::spawn(serving.after_metadata_repair(repair_disk.clone()))],
        };
        if opened == MetadataOpened::Rebuilding {
            tasks.push(tokio::spawn(crate::meta_repair::finish(context, repair_disk, shutdown_rx)));
        }
        tasks.extend(metrics_tasks.into_iter().flatten());
        let (tls_clients, tls_peers) = (config.tls.clients(), config.tls.peers());
        tracing::info!(node = config.id, clients = %client_addr, kafka = ?kafka_addr, metrics = ?metrics_addr, peers = %me.peer, tls_clients, tls_peers, "node started");
        Ok(Server { shutdown, node: handle, state, client_addr, kafka_addr, metrics_addr, tasks, driver, stopped, quarantined, open_files })
    }

    /// The address clients connect to (the real port when configured with port 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Where Kafka clients connect (the real port when configured with port 0), if this node
    /// runs a Kafka listener.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka_addr
    }

    /// Where the metrics endpoint serves `GET /metrics` (the real port when configured with
    /// port 0), if this node runs one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether the node started without its metadata (damaged files): it serves no client,
    /// hosts the groups it has files for without leading them, and answers the suspect queries
    /// of those that cannot open, until its metadata replica is rebuilt (`crate::meta_repair`:
    /// then it serves as any node; this still says it started quarantined).
    pub fn is_quarantined(&self) -> bool {
        self.quarantined
    }

    /// What the open-file budget (`ServerConfig::max_open_files`) holds and did so far.
    pub fn open_file_stats(&self) -> odradek_log::BudgetStats {
        (self.open_files)()
    }

    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// Resolves when the raft driver stopped on its own (a fatal storage error).
    pub async fn failed(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// Graceful shutdown's first half (SIGTERM, ctrl-c): hands the leadership of every group this
    /// node leads, the metadata group's (the controller) included, to a follower holding its
    /// whole log, until it leads none or `within` has passed; returns how many it still leads.
    /// Requests are served meanwhile: a producer whose partition moved is told NOT_LEADER with
    /// the new leader and follows it, instead of waiting out an election after the stop.
    pub async fn drain(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        // The hand-overs skip the replicas the metadata says must not lead (repairs in
        // progress), as the controller's balancing does; the node itself skips those that say
        // they lead not (suspect, quarantined, draining, low on disk).
        let refusals = self.state.lock().meta.lead_refusals();
        let _ = self.node.set_lead_refusals(refusals).await;
        loop {
            let leading = match self.node.drain().await {
                Ok(leading) => leading,
                Err(_) => return 0, // the driver is gone: nothing to hand over
            };
            if leading == 0 || tokio::time::Instant::now() >= deadline {
                return leading;
            }
            tokio::time::sleep(DRAIN_POLL_INTERVAL).await;
        }
    }

    /// Graceful stop: no new connections or requests; requests in flight are answered (or
    /// time out); then the raft driver stops (every appended entry is already fsynced: the
    /// driver syncs before it acknowledges anything).
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.node);
        // Connection tasks still finishing hold handles; the driver stops once they are gone.
        match self.driver.await {
            Ok(result) => Ok(result?),
            Err(_) => Ok(()),
        }
    }
}
