//! The network seam of the node driver: batches of raft messages, addressed per destination node.
//!
//! The driver hands every Raft message of one round to [`Transport::send`], grouped per
//! destination node, and takes inbound batches from a bounded `mpsc::Receiver<Inbound>` obtained
//! when the transport is built. It never waits on the network: `send` only enqueues.
//!
//! # Contract (what the driver may rely on, and what a fault layer may break)
//! - **Lossy.** Any message may be lost: peer down, queue full, connection reset mid-write.
//!   Raft tolerates loss (retries by heartbeat and append probing), so `send` never blocks and
//!   never reports failure; losses are counted in [`TransportStats`].
//! - **Never corrupts.** A delivered message is exactly a message some node sent, to this node,
//!   from the node named in [`Inbound::from`].
//! - **FIFO per peer while a connection lives.** Messages from one node arrive in the order
//!   they were sent as long as one connection carries them; across a reconnect, old and new
//!   traffic may interleave or be lost, so no order holds across reconnects.
//! - **Bounded.** Every queue has a named maximum; when it is full, new traffic is dropped and
//!   counted rather than buffered.
//!
//! Raft-level faults that real TCP cannot produce (drop, duplicate, reorder, delay one message)
//! are injected by wrapping a `Transport`; [`LocalNetwork`] gives a deterministic harness direct
//! control over every message.
//!
//! # Cost sketch
//! One driver round produces, per destination peer, one batch: heartbeats (~30 B each) for
//! every group plus appends carrying the round's entries. With 1000 groups and 3 nodes that is
//! ~30 KB of heartbeats per peer per heartbeat tick and one frame, one `write`, one `flush` per
//! peer per writer round, so syscalls scale with peers, not groups. Encoding is one protobuf
//! pass per message plus one copy into the frame buffer; the memory bound per peer is
//! `PEER_QUEUE_BATCHES_MAX` batches plus one round of at most `ROUND_BYTES_MAX` encoded bytes.

mod faulty;
mod frame;
mod local;
mod tcp;

use std::sync::atomic::{AtomicU64, Ordering};

use raft::prelude::Message;

pub use faulty::{FaultCounts, FaultRates, FaultyTransport, TransportFaults};
pub use frame::{FRAME_BYTES_MAX, FRAME_HEADER_BYTES, PROTOCOL_VERSION};
pub use local::{Delivery, Envelope, LocalNetwork, LocalTransport, LOCAL_INBOX_BATCHES_MAX, LOCAL_IN_FLIGHT_MESSAGES_MAX};
pub use tcp::{
    node_certificate_name, PeerBook, PeerTls, TcpTransport, ACCEPT_ERROR_BACKOFF, CONNECT_TIMEOUT, CONNECT_TIMEOUT_MAX, HANDSHAKE_TIMEOUT,
    INBOUND_CONNECTIONS_MAX, INBOUND_QUEUE_BATCHES_MAX, PEER_QUEUE_BATCHES_MAX, READ_BUFFER_BYTES, RECONNECT_BACKOFF_MAX,
    RECONNECT_BACKOFF_MIN, ROUND_BYTES_MAX, WRITE_TIMEOUT,
};

/// A node's id: stable for the node's lifetime, equal to its raft peer id in every group.
pub type NodeId = u64;

/// A raft group's id: group 0 is the metadata group, every partition has its own.
pub type GroupId = u64;

/// One inbound batch: raft messages for any number of groups, all from one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    /// The sending node, as established by the connection's handshake (not by the messages).
    pub from: NodeId,
    /// The sender's data-directory incarnation, as its connection's handshake announced it; 0
    /// when not told (an older node, or a transport that does not carry it). A change means
    /// the sender's log is not the one it acknowledged before (the driver's `note_incarnation`).
    pub incarnation: u64,
    pub messages: Vec<(GroupId, Message)>,
}

/// The seam between the node driver and the network. Kept deliberately small so the simulator
/// can wrap it with a fault layer. See the module documentation for the delivery contract.
pub trait Transport: Send + Sync + 'static {
    /// This node's id; the `from` that receivers see.
    fn node_id(&self) -> NodeId;

    /// Queues `messages` (any groups) for node `to` and returns at once. Never blocks, never
    /// fails: if `to` is unknown or its queue is full the batch is dropped and counted.
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>);

    /// A snapshot of this transport's counters.
    fn stats(&self) -> TransportStats;
}

/// Counters of one transport since it started; messages are the raft messages in the batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Batches handed to `send` that left this node: written and flushed (TCP), or put in
    /// flight (local).
    pub batches_sent: u64,
    pub messages_sent: u64,
    /// Encoded bytes written, frame headers included (TCP only).
    pub bytes_sent: u64,
    /// Batches dropped: unknown peer, queue full, or lost with a failed write.
    pub batches_dropped: u64,
    pub messages_dropped: u64,
    /// Batches handed to the inbound queue. Over TCP one per frame, so a batch that needed
    /// more than `FRAME_BYTES_MAX` arrives as several.
    pub batches_received: u64,
    pub messages_received: u64,
    /// Encoded bytes received, frame headers included (TCP only).
    pub bytes_received: u64,
    /// Outbound connections established (handshake completed).
    pub connects: u64,
    /// Outbound connections established to a peer that had been connected before.
    pub reconnects: u64,
    /// Outbound dial or handshake attempts that failed.
    pub connect_failures: u64,
    /// Inbound connections closed for a protocol violation (bad frame, bad version, wrong
    /// sender) or refused because `INBOUND_CONNECTIONS_MAX` was reached.
    pub connections_rejected: u64,
}

/// Shared atomic counters behind [`TransportStats`]. Relaxed ordering: each counter is an
/// independent tally read for monitoring, never used to synchronize.
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    batches_sent: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    batches_dropped: AtomicU64,
    messages_dropped: AtomicU64,
    batches_received: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    connects: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    connections_rejected: AtomicU64,
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

impl StatsCounters {
    pub(crate) fn sent(&self, batches: u64, messages: u64, bytes: u64) {
        add(&self.batches_sent, batches);
        add(&self.messages_sent, messages);
        add(&self.bytes_sent, bytes);
    }

    pub(crate) fn dropped(&self, batches: u64, messages: u64) {
        add(&self.batches_dropped, batches);
        add(&self.messages_dropped, messages);
    }

    pub(crate) fn received(&self, batches: u64, messages: u64, bytes: u64) {
        add(&self.batches_received, batches);
        add(&self.messages_received, messages);
        add(&self.bytes_received, bytes);
    }

    pub(crate) fn connected(&self, reconnect: bool) {
        add(&self.connects, 1);
        add(&self.reconnects, u64::from(reconnect));
    }

    pub(crate) fn connect_failed(&self) {
        add(&self.connect_failures, 1);
    }

    pub(crate) fn connection_rejected(&self) {
        add(&self.connections_rejected, 1);
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TransportStats {
            batches_sent: get(&self.batches_sent),
            messages_sent: get(&self.messages_sent),
            bytes_sent: get(&self.bytes_sent),
            batches_dropped: get(&self.batches_dropped),
            messages_dropped: get(&self.messages_dropped),
            batches_received: get(&self.batches_received),
            messages_received: get(&self.messages_received),
            bytes_received: get(&self.bytes_received),
            connects: get(&self.connects),
            reconnects: get(&self.reconnects),
            connect_failures: get(&self.connect_failures),
            connections_rejected: get(&self.connections_rejected),
        }
    }
}

/// Why a transport operation or connection failed. Connection-level errors close only that
/// connection; they are logged and counted, never surfaced through `send`.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame body of {frame_bytes} bytes exceeds FRAME_BYTES_MAX ({frame_bytes_max})")]
    FrameTooLarge { frame_bytes: u32, frame_bytes_max: u32 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error(
        "peer speaks transport protocol version {version_received}, this node only \
         {version_supported}"
    )]
    VersionUnsupported { version_received: u32, version_supported: u32 },
    #[error("dialed node {node_id_expected} at {addr} but node {node_id_actual} answered")]
    PeerIdMismatch { addr: std::net::SocketAddr, node_id_expected: NodeId, node_id_actual: NodeId },
    #[error("batch claims node {from_node_batch} on a connection from node {from_node_handshake}")]
    SenderMismatch { from_node_batch: NodeId, from_node_handshake: NodeId },
    #[error("acceptor sent data on an outbound-only connection")]
    UnexpectedData,
    #[error("connection closed by peer")]
    Closed,
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("handshake claims node {node_id_claimed} but the peer's certificate names {certificate_name:?}")]
    IdentityMismatch { node_id_claimed: NodeId, certificate_name: Option<String> },
}

impl TransportError {
    fn malformed(error: protobuf::ProtobufError) -> Self {
        TransportError::Malformed(error.to_string())
    }

    /// Whether the peer broke the protocol (as opposed to the network or the peer going away).
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            TransportError::FrameTooLarge { .. }
                | TransportError::Malformed(_)
                | TransportError::VersionUnsupported { .. }
                | TransportError::PeerIdMismatch { .. }
                | TransportError::SenderMismatch { .. }
                | TransportError::UnexpectedData
                | TransportError::Tls(_)
                | TransportError::IdentityMismatch { .. }
        )
    }
}
