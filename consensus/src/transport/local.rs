//! `LocalNetwork`: an in-process, in-memory network for deterministic tests.
//!
//! `LocalTransport::send` does not deliver anything: it appends one [`Envelope`] per message to
//! the network's in-flight list, in call order. The test harness owns delivery: it takes the
//! in-flight envelopes ([`LocalNetwork::take_in_flight`]) and decides, from its seeded RNG,
//! which to deliver ([`LocalNetwork::deliver`]), drop, duplicate, reorder or hold back for a
//! later step. [`LocalNetwork::deliver_all`] is the fault-free schedule (FIFO, all of it).
//!
//! Determinism: nothing here reads a clock or randomness, and envelopes keep the order of the
//! `send` calls, so a harness that drives nodes in a deterministic order sees the same
//! envelopes in the same order on every run.
//!
//! Crash model: re-attaching a node id (a restart) gives it a new incarnation and a new inbox;
//! the old incarnation's transport can no longer send (its sends are dropped and counted), and
//! its old inbox receives nothing more. Envelopes already in flight stay in flight: the harness
//! decides whether a restarted node still receives them.
//!
//! Everything is synchronous (`try_send` on bounded channels), so a harness can drive it with
//! or without an async runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use protobuf::Message as _;
use raft::prelude::Message;
use tokio::sync::mpsc;

use super::{GroupId, Inbound, NodeId, StatsCounters, Transport, TransportStats};

/// Messages held in flight across all nodes before sends are dropped. Far above what a test
/// cluster produces between two harness steps; it exists so a harness that forgets to deliver
/// fails by dropping (visible in stats), not by exhausting memory.
pub const LOCAL_IN_FLIGHT_MESSAGES_MAX: usize = 1024 * 1024;

/// Capacity of each node's inbound channel, as `INBOUND_QUEUE_BATCHES_MAX` is for TCP.
pub const LOCAL_INBOX_BATCHES_MAX: usize = 4096;

/// One raft message in flight between two nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub group_id: GroupId,
    pub message: Message,
}

/// What happened to a delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The destination is not attached (crashed, or never started): dropped.
    NodeUnknown,
    /// The destination's inbox is full (its driver is not keeping up): dropped.
    InboxFull,
}

/// The in-memory network hub. Cheap to clone; clones share the network.
#[derive(Clone, Debug, Default)]
pub struct LocalNetwork {
    state: Arc<Mutex<NetworkState>>,
}

#[derive(Debug, Default)]
struct NetworkState {
    in_flight: Vec<Envelope>,
    nodes: BTreeMap<NodeId, LocalNode>,
    incarnation_next: u64,
    /// Each node's data-directory incarnation, stamped on its deliveries
    /// ([`Inbound::incarnation`]); 0 (not told) unless a test sets one.
    data_incarnations: BTreeMap<NodeId, u64>,
}

#[derive(Debug)]
struct LocalNode {
    incarnation: u64,
    inbox_tx: mpsc::Sender<Inbound>,
    stats: Arc<StatsCounters>,
}

/// One node's handle on a [`LocalNetwork`].
#[derive(Debug)]
pub struct LocalTransport {
    node_id: NodeId,
    incarnation: u64,
    network: LocalNetwork,
    stats: Arc<StatsCounters>,
}

impl LocalNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches node `node_id` (again, after a crash: a new incarnation) and returns its
    /// transport and inbox. Counters start from zero for each incarnation.
    pub fn attach(&self, node_id: NodeId) -> (LocalTransport, mpsc::Receiver<Inbound>) {
        let mut state = self.lock();
        let incarnation = state.incarnation_next;
        state.incarnation_next += 1;
        let (inbox_tx, inbox_rx) = mpsc::channel(LOCAL_INBOX_BATCHES_MAX);
        let stats = Arc::new(StatsCounters::default());
        let node = LocalNode { incarnation, inbox_tx, stats: stats.clone() };
        state.nodes.insert(node_id, node);
        let transport = LocalTransport { node_id, incarnation, network: self.clone(), stats };
        (transport, inbox_rx)
    }

    /// Sets the data-directory incarnation node `node_id`'s deliveries carry from now on (a test
    /// that wipes a node's disk gives it another one).
    pub fn set_data_incarnation(&self, node_id: NodeId, incarnation: u64) {
        self.lock().data_incarnations.insert(node_id, incarnation);
    }

    /// Detaches a node (a crash): its transport stops sending and deliveries to it fail.
    pub fn detach(&self, node_id: NodeId) {
        self.lock().nodes.remove(&node_id);
    }

    /// Removes and returns every envelope in flight, oldest first.
    pub fn take_in_flight(&self) -> Vec<Envelope> {
        std::mem::take(&mut self.lock().in_flight)
    }

    pub fn in_flight_count(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Delivers one message to its destination's inbox.
    pub fn deliver(&self, envelope: Envelope) -> Delivery {
        let Envelope { from, to, group_id, message } = envelope;
        self.deliver_batch(from, to, vec![(group_id, message)])
    }

    /// Delivers `messages` from `from` to `to` as one inbound batch.
    pub fn deliver_batch(&self, from: NodeId, to: NodeId, messages: Vec<(GroupId, Message)>) -> Delivery {
        assert!(!messages.is_empty(), "deliver an empty batch");
        let state = self.lock();
        let messages_count = messages.len() as u64;
        let bytes: u64 = messages.iter().map(|(_, message)| u64::from(message.compute_size())).sum();
        let delivery = match state.nodes.get(&to) {
            None => Delivery::NodeUnknown,
            Some(node) => match node.inbox_tx.try_send(Inbound {
                from,
                incarnation: state.data_incarnations.get(&from).copied().unwrap_or(0),
                messages,
            }) {
                Ok(()) => {
                    node.stats.received(1, messages_count, bytes);
                    Delivery::Delivered
                }
                Err(mpsc::error::TrySendError::Full(_)) => Delivery::InboxFull,
                // The node's driver dropped its inbox: as good as crashed.
                Err(mpsc::error::TrySendError::Closed(_)) => Delivery::NodeUnknown,
            },
        };
        if delivery != Delivery::Delivered {
            if let Some(sender) = state.nodes.get(&from) {
                sender.stats.dropped(1, messages_count);
            }
        }
        delivery
    }

    /// Delivers everything in flight, in send order, batching consecutive envelopes with the
    /// same sender and destination. Returns how many messages were delivered.
    pub fn deliver_all(&self) -> usize {
        let mut delivered = 0;
        let mut in_flight = self.take_in_flight().into_iter().peekable();
        while let Some(first) = in_flight.next() {
            let (from, to) = (first.from, first.to);
            let mut messages = vec![(first.group_id, first.message)];
            while let Some(next) = in_flight.next_if(|e| e.from == from && e.to == to) {
                messages.push((next.group_id, next.message));
            }
            let messages_count = messages.len();
            if self.deliver_batch(from, to, messages) == Delivery::Delivered {
                delivered += messages_count;
            }
        }
        delivered
    }

    /// Counters of the current incarnation of `node_id`, if attached.
    pub fn stats(&self, node_id: NodeId) -> Option<TransportStats> {
        self.lock().nodes.get(&node_id).map(|node| node.stats.snapshot())
    }

    fn lock(&self) -> MutexGuard<'_, NetworkState> {
        // A panic while holding this lock is a bug in this module; propagate it.
        self.state.lock().expect("local network lock poisoned by a panic")
    }
}

impl Transport for LocalTransport {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        if messages.is_empty() {
            return;
        }
        let messages_count = messages.len();
        let mut state = self.network.lock();
        let attached = state.nodes.get(&self.node_id).is_some_and(|node| node.incarnation == self.incarnation);
        let room = state.in_flight.len() + messages_count <= LOCAL_IN_FLIGHT_MESSAGES_MAX;
        if !attached || !room {
            self.stats.dropped(1, messages_count as u64);
            return;
        }
        let bytes: u64 = messages.iter().map(|(_, message)| u64::from(message.compute_size())).sum();
        let from = self.node_id;
        state.in_flight.extend(messages.into_iter().map(|(group_id, message)| Envelope { from, to, group_id, message }));
        self.stats.sent(1, messages_count as u64, bytes);
    }

    fn stats(&self) -> TransportStats {
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::MessageType;

    fn heartbeat(from: NodeId, to: NodeId, term: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgHeartbeat);
        message.from = from;
        message.to = to;
        message.term = term;
        message
    }

    #[test]
    fn deliver_all_is_fifo_and_batches_per_link() {
        let network = LocalNetwork::new();
        let (one, mut inbox_one) = network.attach(1);
        let (two, mut inbox_two) = network.attach(2);
        one.send(2, vec![(7, heartbeat(1, 2, 1)), (8, heartbeat(1, 2, 2))]);
        one.send(2, vec![(9, heartbeat(1, 2, 3))]);
        two.send(1, vec![(7, heartbeat(2, 1, 4))]);
        assert_eq!(network.in_flight_count(), 4);
        assert_eq!(network.deliver_all(), 4);
        assert_eq!(network.in_flight_count(), 0);

        let inbound = inbox_two.try_recv().unwrap();
        assert_eq!(inbound.from, 1);
        let terms: Vec<_> = inbound.messages.iter().map(|(g, m)| (*g, m.term)).collect();
        assert_eq!(terms, vec![(7, 1), (8, 2), (9, 3)]);
        assert!(inbox_two.try_recv().is_err());
        assert_eq!(inbox_one.try_recv().unwrap().messages[0].1.term, 4);

        assert_eq!(one.stats().messages_sent, 3);
        assert_eq!(one.stats().batches_sent, 2);
        assert_eq!(network.stats(2).unwrap().messages_received, 3);
    }

    #[test]
    fn harness_can_reorder_duplicate_and_drop() {
        let network = LocalNetwork::new();
        let (one, _inbox_one) = network.attach(1);
        let (_two, mut inbox_two) = network.attach(2);
        one.send(2, (1..=3).map(|term| (0, heartbeat(1, 2, term))).collect());
        let mut in_flight = network.take_in_flight();
        in_flight.reverse();
        in_flight.remove(1); // drop term 2
        in_flight.push(in_flight[0].clone()); // duplicate term 3
        for envelope in in_flight {
            assert_eq!(network.deliver(envelope), Delivery::Delivered);
        }
        let mut terms = Vec::new();
        while let Ok(inbound) = inbox_two.try_recv() {
            terms.extend(inbound.messages.iter().map(|(_, m)| m.term));
        }
        assert_eq!(terms, vec![3, 1, 3]);
    }

    #[test]
    fn crashed_node_neither_sends_nor_receives_and_restart_gets_new_inbox() {
        let network = LocalNetwork::new();
        let (one, _inbox_one) = network.attach(1);
        let (two_old, mut inbox_two_old) = network.attach(2);
        network.detach(2);
        one.send(2, vec![(0, heartbeat(1, 2, 1))]);
        assert_eq!(network.deliver_all(), 0);
        assert_eq!(one.stats().messages_dropped, 1);

        let (_two_new, mut inbox_two_new) = network.attach(2);
        two_old.send(1, vec![(0, heartbeat(2, 1, 1))]);
        assert_eq!(network.in_flight_count(), 0, "old incarnation must not send");
        assert_eq!(two_old.stats().messages_dropped, 1);

        one.send(2, vec![(0, heartbeat(1, 2, 2))]);
        assert_eq!(network.deliver_all(), 1);
        assert!(inbox_two_old.try_recv().is_err());
        assert_eq!(inbox_two_new.try_recv().unwrap().messages[0].1.term, 2);
    }

    #[test]
    fn full_inbox_drops_and_counts() {
        let network = LocalNetwork::new();
        let (one, _inbox_one) = network.attach(1);
        let (_two, _inbox_two) = network.attach(2);
        for term in 0..LOCAL_INBOX_BATCHES_MAX as u64 + 3 {
            one.send(2, vec![(0, heartbeat(1, 2, term))]);
            // One delivery per send: separate batches, so the inbox fills.
            for envelope in network.take_in_flight() {
                network.deliver(envelope);
            }
        }
        assert_eq!(network.stats(1).unwrap().batches_dropped, 3);
        assert_eq!(network.stats(2).unwrap().batches_received, LOCAL_INBOX_BATCHES_MAX as u64);
    }
}
