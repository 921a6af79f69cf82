//! `TcpTransport`: the production transport, over `tokio::net` (which madsim simulates).
//!
//! # Connection scheme
//! Connections are one-way. Each node dials every peer for its *own* outbound traffic (one
//! connection per peer, owned by that peer's writer task) and accepts connections that its
//! peers dial for theirs. So a pair of nodes uses two connections, one per direction. This
//! avoids the tie-breaking needed when both sides dial one shared connection at once, and each
//! direction fails and reconnects on its own. An accepted connection only ever carries frames
//! from dialer to acceptor after the handshake; the acceptor writes nothing after its handshake
//! reply, so the dialer reads from its connection only to notice that it closed.
//!
//! # Addresses learned from handshakes
//! Each handshake carries where its sender accepts connections. A node that is dialed by a
//! node it has no address for (one that joined while it was down, so its replayed metadata
//! does not list it yet) starts a writer to that address (`learn_peer`): otherwise a restarted
//! node whose metadata leader is such a node could hear it but never answer. Addresses the
//! owner set are never moved by a handshake, and peers the owner removed are not re-added.
//!
//! # Incarnations told in handshakes
//! Each handshake also carries the sender's data-directory incarnation (0: not told), and every
//! batch read from an accepted connection is delivered with the incarnation its dialer announced
//! ([`Inbound::incarnation`]): a node wiped and restarted under the same id is a new replica, and
//! a leader must not count what the old one acknowledged (the driver resets its progress).
//!
//! # Peer TLS (issue 19)
//! With a [`PeerTls`] given, every connection is mutual TLS before the handshake: the dialer
//! checks that the acceptor's certificate names `node-<id>` of the peer it dialed (the TLS
//! server name), and the acceptor checks that the dialer's certificate, signed by the cluster
//! CA, names `node-<id>` of the node its handshake claims ([`node_certificate_name`]). A process
//! without such a certificate never gets past the handshake, so it can neither deliver a message
//! nor replace a node's live connection. TLS is an I/O layer here: the frames are the same.
//! Without TLS a handshake is believed as before (a reconnect of a restarted peer and an
//! impostor look the same; only a certificate tells them apart).
//!
//! # Invariants
//! - At most one live outbound connection per peer (one writer task per peer owns it), and at
//!   most one live accepted connection per remote node id: a newer handshake from the same node
//!   closes the older connection, so a half-open connection cannot pin resources. With TLS on,
//!   only a handshake whose certificate names that node counts as "the same node".
//! - Every queue and buffer is bounded: `PEER_QUEUE_BATCHES_MAX` queued batches per peer,
//!   `ROUND_BYTES_MAX` encoded bytes per write round (plus at most one batch over),
//!   `INBOUND_QUEUE_BATCHES_MAX` inbound batches, `INBOUND_CONNECTIONS_MAX` accepted
//!   connections, `FRAME_BYTES_MAX` per frame.
//! - Each writer round is one `write_all` of every frame drained from the queue followed by one
//!   `flush()`: one syscall batch per peer per round, and simulated TCP sends only on flush.
//! - Every await that can wait on the network is bounded by a timeout or by the shutdown signal.
//!
//! # Tasks
//! One accept task, one task per accepted connection, one writer task per peer. They are plain
//! `tokio::spawn`s (madsim has no `JoinSet`); each holds a clone of a "task alive" sender so
//! `shutdown` can wait until every task has ended and dropped its sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use odradek_seams::watch;
use raft::prelude::Message;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn};

use super::frame::{
    decode_batch, decode_handshake, encode_batch, encode_handshake, read_frame, Hello, FRAME_BYTES_MAX, FRAME_HEADER_BYTES,
};
use super::{GroupId, Inbound, NodeId, StatsCounters, Transport, TransportError, TransportStats};

/// Batches queued per peer before `send` starts dropping. A driver round queues at most one
/// batch per peer, so this is ~1000 rounds of slack: enough to ride out a reconnect, small
/// enough that a dead peer costs bounded memory and stale traffic.
pub const PEER_QUEUE_BATCHES_MAX: usize = 1024;

/// Capacity of the inbound channel to the driver. When full, connection readers wait (TCP
/// backpressure pushes the queueing back to the senders' bounded queues) instead of dropping.
pub const INBOUND_QUEUE_BATCHES_MAX: usize = 4096;

/// Accepted connections served at once; more are closed at accept. A cluster needs one per
/// peer; the slack covers reconnects whose old connection has not yet been noticed dead.
pub const INBOUND_CONNECTIONS_MAX: usize = 1024;

/// Soft limit of encoded bytes in one writer round: the writer stops draining its queue once
/// the buffer reaches it, so one round's buffer is at most this plus one batch.
pub const ROUND_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Read buffer of an accepted connection: many small frames (heartbeats) per read syscall.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// First delay before redialing a peer; doubled after each failure up to the maximum.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest delay between dials: about the order of a Raft election timeout, so a peer that
/// comes back is reached within roughly one election.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Bound on the first `TcpStream::connect` to a peer; it doubles with each consecutive failed
/// dial up to [`CONNECT_TIMEOUT_MAX`] (Kafka's `socket.connection.setup.timeout.ms` and
/// `.max.ms`), so a peer behind a slow path is still reached: with a fixed 2 s bound, connects
/// that took 1–5 s (madsim's network BUGGIFY) kept one leader from reaching a restarted
/// follower for the rest of a run (swarm seeds 7512, 7889: R7).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest bound on one connect attempt.
pub const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(16);

/// Bound on the handshake exchange, for both sides: a connection that never says who it is
/// must not hold a task and a connection slot forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on one writer round's write + flush. A peer that stops reading (paused process, full
/// socket buffers) loses this connection; the writer reconnects and its queue drops meanwhile.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

type Batch = Vec<(GroupId, Message)>;

/// Mutual TLS on peer links: the configurations for new connections, each call the current one
/// (an implementation may reload its files; live connections keep theirs). The server config
/// must require client certificates of the cluster CA; the client config must present this
/// node's certificate and trust the cluster CA.
pub trait PeerTls: Send + Sync + 'static {
    fn acceptor_config(&self) -> Arc<rustls::ServerConfig>;
    fn connector_config(&self) -> Arc<rustls::ClientConfig>;
}

/// The DNS name a node's certificate carries: `node-<id>`.
pub fn node_certificate_name(node_id: NodeId) -> String {
    format!("node-{node_id}")
}

/// A byte stream under the peer protocol: TCP, or TLS over TCP.
trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> PeerStream for S {}
type BoxedStream = Box<dyn PeerStream>;

/// The production transport. See the module documentation for the connection scheme.
///
/// Dropping it signals every task to stop; [`TcpTransport::shutdown`] also waits for them.
pub struct TcpTransport {
    endpoint: Arc<Endpoint>,
    local_addr: SocketAddr,
    /// Cloned into every task; taken (dropped) by `shutdown`, so that `tasks_done` ends once
    /// every task has ended. `None` after shutdown.
    task_alive: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    tasks_done: Mutex<Option<mpsc::Receiver<()>>>,
}

/// A handle on a [`TcpTransport`]'s peer addresses that outlives the move of the transport into
/// the raft driver: a node learns the peer addresses of members that join the running cluster
/// (dynamic membership, issue 15) and adds them here. Cheap to clone; after the transport shut
/// down, additions are ignored.
#[derive(Clone)]
pub struct PeerBook {
    endpoint: Arc<Endpoint>,
    task_alive: Arc<Mutex<Option<mpsc::Sender<()>>>>,
}

impl PeerBook {
    /// [`TcpTransport::set_peer`].
    pub fn set_peer(&self, peer_id: NodeId, addr: SocketAddr) {
        set_peer(&self.endpoint, &self.task_alive, peer_id, addr);
    }

    /// [`TcpTransport::remove_peer`].
    pub fn remove_peer(&self, peer_id: NodeId) {
        remove_peer(&self.endpoint, peer_id);
    }

    /// [`TcpTransport::peers`].
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        lock(&self.endpoint.peers).iter().map(|(peer_id, peer)| (*peer_id, *peer.addr_tx.borrow())).collect()
    }
}

/// Adds a peer, or moves an existing one to a new address ([`TcpTransport::set_peer`]).
fn set_peer(endpoint: &Arc<Endpoint>, task_alive: &Mutex<Option<mpsc::Sender<()>>>, peer_id: NodeId, addr: SocketAddr) {
    assert_ne!(peer_id, endpoint.node_id, "a node is not its own peer");
    let mut peers = lock(&endpoint.peers);
    lock(&endpoint.peers_removed).remove(&peer_id);
    if let Some(peer) = peers.get(&peer_id) {
        peer.addr_tx.send_if_modified(|addr_current| {
            let modified = *addr_current != addr;
            *addr_current = addr;
            modified
        });
        return;
    }
    let Some(task_alive) = lock(task_alive).clone() else {
        warn!(peer_id, "set_peer after shutdown ignored");
        return;
    };
    add_peer(endpoint, &mut peers, task_alive, peer_id, addr);
}

/// Starts the writer of a peer not in `peers` (the locked peer table).
fn add_peer(endpoint: &Arc<Endpoint>, peers: &mut BTreeMap<NodeId, Peer>, task_alive: mpsc::Sender<()>, peer_id: NodeId, addr: SocketAddr) {
    let (queue_tx, queue_rx) = mpsc::channel(PEER_QUEUE_BATCHES_MAX);
    let (addr_tx, addr_rx) = watch::channel(addr);
    let replaced = peers.insert(peer_id, Peer { queue_tx, addr_tx });
    assert!(replaced.is_none(), "peer {peer_id} already has a writer");
    tokio::spawn(run_writer(endpoint.clone(), peer_id, queue_rx, addr_rx, task_alive));
}

/// A node that dialed this one said where it listens: if this node has no address for it (it
/// joined the cluster while this node was down, so this node's replayed metadata does not
/// list it), dial it there. Without that, a restarted node whose metadata leader is such a
/// node receives its appends and heartbeats but can answer none of them, and never catches up.
/// A peer the owner knows already keeps the address the owner gave (the handshake never moves
/// it), and a peer the owner removed is not added back.
fn learn_peer(endpoint: &Arc<Endpoint>, task_alive: mpsc::Sender<()>, hello: Hello) {
    let Some(addr) = hello.listen_address else { return };
    if hello.node_id == endpoint.node_id {
        return;
    }
    let mut peers = lock(&endpoint.peers);
    if peers.contains_key(&hello.node_id) || lock(&endpoint.peers_removed).contains(&hello.node_id) {
        return;
    }
    info!(node_id = endpoint.node_id, peer_id = hello.node_id, %addr, "learned a peer's address from its handshake");
    add_peer(endpoint, &mut peers, task_alive, hello.node_id, addr);
}

/// Forgets a peer ([`TcpTransport::remove_peer`]).
fn remove_peer(endpoint: &Endpoint, peer_id: NodeId) {
    let mut peers = lock(&endpoint.peers);
    lock(&endpoint.peers_removed).insert(peer_id);
    if let Some(peer) = peers.remove(&peer_id) {
        let queued = PEER_QUEUE_BATCHES_MAX - peer.queue_tx.capacity();
        debug!(peer_id, queued, "peer removed");
    }
}

struct Endpoint {
    node_id: NodeId,
    stats: StatsCounters,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
    /// Peers the owner removed: a handshake does not add them back (`learn_peer`). Locked only
    /// while `peers` is.
    peers_removed: Mutex<BTreeSet<NodeId>>,
    /// Where this node accepts raft connections, told to every peer in the handshake; `None`
    /// when bound to an unspecified address (0.0.0.0), which no peer could dial.
    listen_address: Option<SocketAddr>,
    /// This node's data-directory incarnation, told to every peer in the handshake (0: none).
    incarnation: u64,
    /// The live accepted connection of each remote node.
    inbound_connections: Mutex<BTreeMap<NodeId, InboundConnection>>,
    inbound_tx: mpsc::Sender<Inbound>,
    shutdown_tx: watch::Sender<bool>,
    tls: Option<Arc<dyn PeerTls>>,
}

/// The handles of one peer's writer task; dropping them stops it.
struct Peer {
    queue_tx: mpsc::Sender<Batch>,
    addr_tx: watch::Sender<SocketAddr>,
}

struct InboundConnection {
    connection_id: u64,
    /// Sending (or dropping) tells the connection's task that a newer one replaced it.
    replaced_tx: oneshot::Sender<()>,
}

impl TcpTransport {
    /// Binds `listen_addr` and starts the transport. `peers` may omit nodes whose address is
    /// not known yet; add them later with [`TcpTransport::set_peer`].
    pub async fn bind(
        node_id: NodeId,
        listen_addr: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), TransportError> {
        let listener = TcpListener::bind(listen_addr).await.map_err(|source| TransportError::Bind { addr: listen_addr, source })?;
        Self::start(node_id, listener, peers)
    }

    /// Starts the transport on an already bound listener. Must run inside the runtime.
    pub fn start(
        node_id: NodeId,
        listener: TcpListener,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), TransportError> {
        Self::start_with_tls(node_id, 0, listener, peers, None)
    }

    /// [`TcpTransport::bind`] with mutual TLS on every peer connection when `tls` is set, for a
    /// node whose data directory is of `incarnation` (told to peers in every handshake; 0: none).
    pub async fn bind_with_tls(
        node_id: NodeId,
        incarnation: u64,
        listen_addr: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: Option<Arc<dyn PeerTls>>,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), TransportError> {
        let listener = TcpListener::bind(listen_addr).await.map_err(|source| TransportError::Bind { addr: listen_addr, source })?;
        Self::start_with_tls(node_id, incarnation, listener, peers, tls)
    }

    /// [`TcpTransport::start`] with mutual TLS on every peer connection when `tls` is set, for a
    /// node whose data directory is of `incarnation` (0: none).
    pub fn start_with_tls(
        node_id: NodeId,
        incarnation: u64,
        listener: TcpListener,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: Option<Arc<dyn PeerTls>>,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), TransportError> {
        let local_addr = listener.local_addr()?;
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE_BATCHES_MAX);
        let (task_alive, tasks_done) = mpsc::channel(1);
        let endpoint = Arc::new(Endpoint {
            node_id,
            stats: StatsCounters::default(),
            peers: Mutex::new(BTreeMap::new()),
            peers_removed: Mutex::new(BTreeSet::new()),
            listen_address: (!local_addr.ip().is_unspecified()).then_some(local_addr),
            incarnation,
            inbound_connections: Mutex::new(BTreeMap::new()),
            inbound_tx,
            shutdown_tx: watch::Sender::new(false),
            tls,
        });
        tokio::spawn(accept_loop(endpoint.clone(), listener, task_alive.clone()));
        let transport = TcpTransport {
            endpoint,
            local_addr,
            task_alive: Arc::new(Mutex::new(Some(task_alive))),
            tasks_done: Mutex::new(Some(tasks_done)),
        };
        for (peer_id, addr) in peers {
            transport.set_peer(peer_id, addr);
        }
        info!(node_id, %local_addr, tls = transport.endpoint.tls.is_some(), "transport listening");
        Ok((transport, inbound_rx))
    }

    /// The address the transport listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a peer, or moves an existing one to a new address (its current connection is
    /// closed and it is redialed at once; queued batches are kept). Must run inside the runtime.
    pub fn set_peer(&self, peer_id: NodeId, addr: SocketAddr) {
        set_peer(&self.endpoint, &self.task_alive, peer_id, addr);
    }

    /// Forgets a peer: its writer stops and its queued batches are dropped.
    pub fn remove_peer(&self, peer_id: NodeId) {
        remove_peer(&self.endpoint, peer_id);
    }

    /// A handle that adds and removes peers after the transport moved into the raft driver.
    pub fn peer_book(&self) -> PeerBook {
        PeerBook { endpoint: self.endpoint.clone(), task_alive: self.task_alive.clone() }
    }

    /// The current peer addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        lock(&self.endpoint.peers).iter().map(|(peer_id, peer)| (*peer_id, *peer.addr_tx.borrow())).collect()
    }

    /// Stops every task and waits until all have ended, so the listening socket and every
    /// connection are closed when this returns (a restart may bind the same address). Queued
    /// batches are dropped: the transport is lossy by contract. Idempotent.
    pub async fn shutdown(&self) {
        self.signal_shutdown();
        lock(&self.task_alive).take();
        let tasks_done = lock(&self.tasks_done).take();
        if let Some(mut tasks_done) = tasks_done {
            // Nothing is ever sent: `recv` returns `None` once every task dropped its sender.
            let none = tasks_done.recv().await;
            assert!(none.is_none());
            info!(node_id = self.endpoint.node_id, "transport shut down");
        }
    }

    fn signal_shutdown(&self) {
        self.endpoint.shutdown_tx.send_replace(true);
        lock(&self.endpoint.peers).clear();
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

impl Transport for TcpTransport {
    fn node_id(&self) -> NodeId {
        self.endpoint.node_id
    }

    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        if messages.is_empty() {
            return;
        }
        let messages_count = messages.len() as u64;
        let queued = match lock(&self.endpoint.peers).get(&to) {
            None => Err("unknown peer"),
            Some(peer) => peer.queue_tx.try_send(messages).map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => "peer queue full",
                mpsc::error::TrySendError::Closed(_) => "peer writer stopped",
            }),
        };
        if let Err(reason) = queued {
            self.endpoint.stats.dropped(1, messages_count);
            debug!(to, messages_count, reason, "batch dropped");
        }
    }

    fn stats(&self) -> TransportStats {
        self.endpoint.stats.snapshot()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug in this module; propagate it.
    mutex.lock().expect("transport lock poisoned by a panic")
}

/// Resolves once shutdown was requested (or the transport is gone).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens when the transport is gone.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop(endpoint: Arc<Endpoint>, listener: TcpListener, task_alive: mpsc::Sender<()>) {
    let mut shutdown = endpoint.shutdown_tx.subscribe();
    let permits = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    let mut connection_id_next: u64 = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accept failed");
                tokio::select! {
                    biased;
                    _ = shutdown_requested(&mut shutdown) => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%remote_addr, INBOUND_CONNECTIONS_MAX, "too many connections; closing new one");
            endpoint.stats.connection_rejected();
            continue;
        };
        connection_id_next += 1;
        tokio::spawn(serve_inbound(endpoint.clone(), stream, remote_addr, connection_id_next, permit, task_alive.clone()));
    }
}

/// Serves one accepted connection until it ends, and logs and counts how it ended.
async fn serve_inbound(
    endpoint: Arc<Endpoint>,
    stream: TcpStream,
    remote_addr: SocketAddr,
    connection_id: u64,
    _permit: OwnedSemaphorePermit,
    task_alive: mpsc::Sender<()>,
) {
    let mut shutdown = endpoint.shutdown_tx.subscribe();
    let ended = tokio::select! {
        biased;
        _ = shutdown_requested(&mut shutdown) => Ok(()),
        ended = serve_inbound_connection(&endpoint, stream, connection_id, task_alive) => ended,
    };
    match ended {
        Ok(()) => debug!(%remote_addr, "inbound connection closed"),
        Err(error) if error.is_protocol_violation() => {
            endpoint.stats.connection_rejected();
            error!(%remote_addr, %error, "inbound connection closed: protocol violation");
        }
        Err(error) => info!(%remote_addr, %error, "inbound connection closed"),
    }
}

async fn serve_inbound_connection(
    endpoint: &Arc<Endpoint>,
    stream: TcpStream,
    connection_id: u64,
    task_alive: mpsc::Sender<()>,
) -> Result<(), TransportError> {
    let (stream, certificate): (BoxedStream, Option<CertificateDer<'static>>) = match &endpoint.tls {
        None => (Box::new(stream), None),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.acceptor_config());
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT))?
                .map_err(|error| TransportError::Tls(error.to_string()))?;
            // The acceptor's config requires a client certificate: rustls fails the handshake
            // without one, so a missing one here is a misconfigured acceptor.
            let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).cloned();
            let certificate = certificate.ok_or_else(|| TransportError::Tls("the dialer presented no certificate".into()))?;
            (Box::new(stream), Some(certificate))
        }
    };
    let mut connection = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let mut body = Vec::new();
    let handshake = accept_handshake(endpoint, certificate.as_ref(), &mut connection, &mut body);
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT))??;
    let (from, incarnation) = (hello.node_id, hello.incarnation);
    learn_peer(endpoint, task_alive, hello);
    let (_registration, mut replaced_rx) = InboundRegistration::new(endpoint, from, connection_id);
    loop {
        let more = tokio::select! {
            biased;
            _ = &mut replaced_rx => {
                debug!(from, "inbound connection replaced by a newer one");
                return Ok(());
            }
            more = read_frame(&mut connection, &mut body) => more?,
        };
        if !more {
            return Ok(());
        }
        let messages = decode_batch(&body, from)?;
        if messages.is_empty() {
            continue;
        }
        let messages_count = messages.len() as u64;
        let inbound = Inbound { from, incarnation, messages };
        tokio::select! {
            biased;
            _ = &mut replaced_rx => return Ok(()),
            delivered = endpoint.inbound_tx.send(inbound) => {
                if delivered.is_err() {
                    debug!(from, "inbound receiver dropped; closing connection");
                    return Ok(());
                }
            }
        }
        let frame_bytes = (FRAME_HEADER_BYTES + body.len()) as u64;
        endpoint.stats.received(1, messages_count, frame_bytes);
    }
}

/// Fails unless `certificate` (verified against the cluster CA by the TLS handshake) names the
/// node `node_id_claimed`.
fn check_identity(certificate: &CertificateDer<'_>, node_id_claimed: NodeId) -> Result<(), TransportError> {
    let parsed = webpki::EndEntityCert::try_from(certificate).map_err(|error| TransportError::Tls(error.to_string()))?;
    let name = ServerName::try_from(node_certificate_name(node_id_claimed)).expect("node-<id> is a valid DNS name");
    if parsed.verify_is_valid_for_subject_name(&name).is_ok() {
        return Ok(());
    }
    let certificate_name = parsed.valid_dns_names().next().map(str::to_string);
    Err(TransportError::IdentityMismatch { node_id_claimed, certificate_name })
}

/// Reads the dialer's handshake, answers with ours, then checks the dialer's. Answering first
/// lets a dialer of another version log the mismatch clearly too. With TLS, a dialer whose
/// `certificate` does not name the node it claims gets no answer: it never counts as connected,
/// and (checked before the connection is registered) never replaces that node's connection.
async fn accept_handshake(
    endpoint: &Endpoint,
    certificate: Option<&CertificateDer<'static>>,
    connection: &mut BufReader<BoxedStream>,
    body: &mut Vec<u8>,
) -> Result<Hello, TransportError> {
    if !read_frame(connection, body).await? {
        return Err(TransportError::Closed);
    }
    if let (Some(certificate), Ok(claimed)) = (certificate, decode_handshake(body)) {
        check_identity(certificate, claimed.node_id)?;
    }
    let mut reply = Vec::new();
    encode_handshake(&mut reply, endpoint.node_id, endpoint.listen_address, endpoint.incarnation);
    connection.get_mut().write_all(&reply).await?;
    connection.get_mut().flush().await?;
    decode_handshake(body)
}

/// Registers a connection as the live one of its node; unregisters on drop unless replaced.
struct InboundRegistration<'a> {
    endpoint: &'a Endpoint,
    from: NodeId,
    connection_id: u64,
}

impl<'a> InboundRegistration<'a> {
    fn new(endpoint: &'a Endpoint, from: NodeId, connection_id: u64) -> (Self, oneshot::Receiver<()>) {
        let (replaced_tx, replaced_rx) = oneshot::channel();
        let replaced = lock(&endpoint.inbound_connections).insert(from, InboundConnection { connection_id, replaced_tx });
        if let Some(replaced) = replaced {
            assert_ne!(replaced.connection_id, connection_id);
            // The older connection may already be gone; then nobody listens, which is fine.
            let _ = replaced.replaced_tx.send(());
        }
        let registration = InboundRegistration { endpoint, from, connection_id };
        (registration, replaced_rx)
    }
}

impl Drop for InboundRegistration<'_> {
    fn drop(&mut self) {
        let mut connections = lock(&self.endpoint.inbound_connections);
        let current = connections.get(&self.from).map(|c| c.connection_id);
        if current == Some(self.connection_id) {
            connections.remove(&self.from);
        }
    }
}

/// How one outbound connection ended.
enum WriterEnd {
    /// Shutdown, or the peer was removed: the writer task ends.
    Stop,
    /// The peer moved: redial at once.
    AddrChanged,
    Failed(TransportError),
}

/// One peer's writer: dials, writes queued batches until the connection fails, backs off and
/// redials, until the peer is removed or the transport shuts down.
async fn run_writer(
    endpoint: Arc<Endpoint>,
    peer_id: NodeId,
    mut queue_rx: mpsc::Receiver<Batch>,
    mut addr_rx: watch::Receiver<SocketAddr>,
    _task_alive: mpsc::Sender<()>,
) {
    let mut shutdown = endpoint.shutdown_tx.subscribe();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut connected_before = false;
    let mut failures_consecutive: u64 = 0;
    let mut buffer = Vec::new();
    loop {
        let addr = *addr_rx.borrow_and_update();
        let dialed = tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => return,
            changed = addr_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            dialed = dial(&endpoint, peer_id, addr, connect_timeout(failures_consecutive)) => dialed,
        };
        match dialed {
            Ok(stream) => {
                endpoint.stats.connected(connected_before);
                info!(node_id = endpoint.node_id, peer_id, %addr, reconnect = connected_before, "connected to peer");
                connected_before = true;
                failures_consecutive = 0;
                backoff = RECONNECT_BACKOFF_MIN;
                let ended = write_batches(&endpoint, stream, &mut queue_rx, &mut addr_rx, &mut shutdown, &mut buffer).await;
                match ended {
                    WriterEnd::Stop => return,
                    WriterEnd::AddrChanged => continue,
                    WriterEnd::Failed(error) => {
                        warn!(node_id = endpoint.node_id, peer_id, %addr, %error, "connection to peer lost");
                    }
                }
            }
            Err(error) => {
                endpoint.stats.connect_failed();
                failures_consecutive += 1;
                if error.is_protocol_violation() {
                    error!(peer_id, %addr, %error, "peer refused: protocol mismatch");
                } else if failures_consecutive == 1 {
                    warn!(node_id = endpoint.node_id, peer_id, %addr, %error, "cannot reach peer; retrying with backoff");
                } else {
                    debug!(node_id = endpoint.node_id, peer_id, %addr, %error, failures_consecutive, "cannot reach peer");
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => return,
            changed = addr_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                backoff = RECONNECT_BACKOFF_MIN;
                continue;
            }
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// The connect bound after `failures` consecutive failed dials: [`CONNECT_TIMEOUT`] doubled
/// per failure, at most [`CONNECT_TIMEOUT_MAX`].
fn connect_timeout(failures: u64) -> Duration {
    CONNECT_TIMEOUT.saturating_mul(1 << failures.min(8)).min(CONNECT_TIMEOUT_MAX)
}

/// Connects to `addr` and exchanges handshakes; checks that the node there is `peer_id`.
/// With TLS, the acceptor's certificate must name `node-<peer_id>`.
async fn dial(endpoint: &Endpoint, peer_id: NodeId, addr: SocketAddr, connect_timeout: Duration) -> Result<BoxedStream, TransportError> {
    let node_id = endpoint.node_id;
    let stream =
        tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await.map_err(|_| TransportError::Timeout(connect_timeout))??;
    // Raft heartbeats and votes are small and latency-bound; never hold them for Nagle.
    stream.set_nodelay(true)?;
    let mut stream: BoxedStream = match &endpoint.tls {
        None => Box::new(stream),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.connector_config());
            let name = ServerName::try_from(node_certificate_name(peer_id)).expect("node-<id> is a valid DNS name");
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT))?
                .map_err(|error| TransportError::Tls(error.to_string()))?;
            Box::new(stream)
        }
    };
    let mut hello = Vec::new();
    encode_handshake(&mut hello, node_id, endpoint.listen_address, endpoint.incarnation);
    let mut body = Vec::new();
    let handshake = async {
        stream.write_all(&hello).await?;
        stream.flush().await?;
        if !read_frame(&mut stream, &mut body).await? {
            return Err(TransportError::Closed);
        }
        decode_handshake(&body)
    };
    let node_id_actual =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT))??.node_id;
    if node_id_actual != peer_id {
        return Err(TransportError::PeerIdMismatch { addr, node_id_expected: peer_id, node_id_actual });
    }
    Ok(stream)
}

/// Writes queued batches to one established connection, one write + flush per round, until
/// the connection fails, the peer moves or is removed, or the transport shuts down.
async fn write_batches(
    endpoint: &Endpoint,
    stream: BoxedStream,
    queue_rx: &mut mpsc::Receiver<Batch>,
    addr_rx: &mut watch::Receiver<SocketAddr>,
    shutdown: &mut watch::Receiver<bool>,
    buffer: &mut Vec<u8>,
) -> WriterEnd {
    // `into_split` is missing under madsim; `io::split` works on both.
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut probe = [0u8; 1];
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown_requested(shutdown) => return WriterEnd::Stop,
            changed = addr_rx.changed() => {
                return if changed.is_err() { WriterEnd::Stop } else { WriterEnd::AddrChanged };
            }
            // The acceptor never writes after its handshake: any read result means trouble,
            // and EOF is how an idle connection learns that the peer went away.
            read = reader.read(&mut probe) => {
                return WriterEnd::Failed(match read {
                    Ok(0) => TransportError::Closed,
                    Ok(_) => TransportError::UnexpectedData,
                    Err(error) => error.into(),
                });
            }
            batch = queue_rx.recv() => match batch {
                Some(batch) => batch,
                None => return WriterEnd::Stop,
            },
        };
        buffer.clear();
        let mut batches: u64 = 0;
        let mut messages: u64 = 0;
        let mut next = Some(first);
        while let Some(batch) = next {
            let encoded = encode_batch(buffer, endpoint.node_id, batch, FRAME_BYTES_MAX);
            batches += 1;
            messages += encoded.messages;
            endpoint.stats.dropped(0, encoded.messages_oversized);
            next = if buffer.len() < ROUND_BYTES_MAX { queue_rx.try_recv().ok() } else { None };
        }
        if buffer.is_empty() {
            // Every message was oversized (already counted); nothing to write.
            endpoint.stats.dropped(batches, 0);
            continue;
        }
        let write = async {
            writer.write_all(buffer).await?;
            // Real TCP: a no-op. Simulated TCP: this is what actually sends.
            writer.flush().await
        };
        let written = tokio::select! {
            biased;
            _ = shutdown_requested(shutdown) => return WriterEnd::Stop,
            written = tokio::time::timeout(WRITE_TIMEOUT, write) => written,
        };
        let failed = match written {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(TransportError::Io(error)),
            Err(_) => Some(TransportError::Timeout(WRITE_TIMEOUT)),
        };
        if let Some(error) = failed {
            endpoint.stats.dropped(batches, messages);
            return WriterEnd::Failed(error);
        }
        endpoint.stats.sent(batches, messages, buffer.len() as u64);
        if buffer.capacity() > ROUND_BYTES_MAX {
            // One huge round must not pin its buffer for the life of the connection.
            buffer.clear();
            buffer.shrink_to(ROUND_BYTES_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_bound_doubles_per_failed_dial_up_to_its_maximum() {
        let bounds: Vec<u64> = (0..6).map(|failures| connect_timeout(failures).as_secs()).collect();
        assert_eq!(bounds, [2, 4, 8, 16, 16, 16]);
        assert_eq!(connect_timeout(u64::MAX), CONNECT_TIMEOUT_MAX);
    }
}

/// Simulated TCP differs from real TCP in ways this module depends on: it sends only on
/// `flush()`, and a killed node's connections vanish. These tests run the real transport on
/// madsim nodes to check that batches flow and that a restarted peer is reconnected.
#[cfg(all(test, madsim))]
mod madsim_tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use madsim::runtime::Handle;
    use raft::prelude::MessageType;

    use super::*;

    fn heartbeat(seq: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgHeartbeat);
        message.from = 1;
        message.to = 2;
        message.index = seq;
        message
    }

    #[madsim::test]
    async fn batches_flow_and_restarted_peer_is_reconnected() {
        let handle = Handle::current();
        let addr_one: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let addr_two: SocketAddr = "10.0.0.2:7000".parse().unwrap();
        // Harness-owned state survives `kill`: one past the highest seq node 2 received.
        let seq_end_two = Arc::new(AtomicU64::new(0));
        let reconnects_one = Arc::new(AtomicU64::new(0));

        let seq_end = seq_end_two.clone();
        let two = handle
            .create_node()
            .name("two")
            .ip(addr_two.ip())
            .init(move || {
                let seq_end = seq_end.clone();
                async move {
                    let peers = BTreeMap::from([(1, addr_one)]);
                    let (_transport, mut inbound_rx) = TcpTransport::bind(2, addr_two, peers).await.unwrap();
                    while let Some(inbound) = inbound_rx.recv().await {
                        assert_eq!(inbound.from, 1);
                        for (_, message) in inbound.messages {
                            seq_end.fetch_max(message.index + 1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .build();
        let reconnects = reconnects_one.clone();
        handle
            .create_node()
            .name("one")
            .ip(addr_one.ip())
            .init(move || {
                let reconnects = reconnects.clone();
                async move {
                    let peers = BTreeMap::from([(2, addr_two)]);
                    let (transport, _inbound_rx) = TcpTransport::bind(1, addr_one, peers).await.unwrap();
                    for seq in 0_u64.. {
                        transport.send(2, vec![(0, heartbeat(seq))]);
                        reconnects.store(transport.stats().reconnects, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
            .build();

        tokio::time::sleep(Duration::from_secs(1)).await;
        let seq_end_before_kill = seq_end_two.load(Ordering::Relaxed);
        assert!(seq_end_before_kill > 50, "{seq_end_before_kill}");
        handle.kill(two.id());
        tokio::time::sleep(Duration::from_secs(1)).await;
        handle.restart(two.id());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let seq_end_after_restart = seq_end_two.load(Ordering::Relaxed);
        assert!(seq_end_after_restart > seq_end_before_kill + 100, "{seq_end_before_kill} {seq_end_after_restart}");
        assert!(reconnects_one.load(Ordering::Relaxed) >= 1);
    }
}
