//! Network partitions (F-N1, F-N2, F-N3, one-way) through harness-owned TCP proxies: one per
//! *directed* peer link `i -> j`. Odradek's peer transport uses one-way connections (node `i`
//! dials node `j` for its own outbound Raft traffic), so blocking the proxy of `i -> j` cuts
//! exactly that direction, and a two-way cut blocks both proxies of a pair.
//!
//! A blocked link closes its open connections at once and closes every new one right after
//! accepting it (a refused / reset path rather than a silent black hole: bytes are never dropped
//! from the middle of a stream, which would only corrupt framing after the heal).
//!
//! F-N9 (a client connection dropped mid-request) goes through a second set of proxies, one per
//! node, in front of each node's client listener: the nodes advertise the proxies' addresses
//! (`--client-listen` binds the real listener elsewhere), so every client connection passes one,
//! and [`Proxies::reset_clients`] closes them all at once, losing the requests and responses in
//! flight.
//!
//! Every proxy listens on a port of the run's reserved block ([`super::ports`], so within
//! `ODRADEK_TEST_PORTS` when it is set), never on a kernel-chosen one: [`proxy_ports`] says how
//! many a cluster's proxies take.
//!
//! Bounds: at most [`LINK_CONNECTIONS_MAX`] relayed connections per link at once (the transport
//! keeps one per direction; the slack covers reconnects); each relay copies with tokio's
//! fixed-size buffers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relayed connections per link at once; more are closed at accept.
pub const LINK_CONNECTIONS_MAX: usize = 64;

/// One directed link's proxy.
#[derive(Debug)]
struct Link {
    from: u64,
    to: u64,
    port: u16,
    /// `true` while the link is cut.
    blocked: watch::Sender<bool>,
}

/// One node's client-listener proxy.
#[derive(Debug)]
struct ClientLink {
    port: u16,
    /// Bumped to close every open client connection through this proxy.
    resets: watch::Sender<u64>,
}

/// All the peer-link proxies of a cluster of `n` nodes, and one client proxy per node (and one
/// per node's Kafka listener with `--client kafka`).
#[derive(Debug)]
pub struct Proxies {
    links: Vec<Link>,
    clients: Vec<ClientLink>,
    /// In front of each node's Kafka listener ([`Proxies::start_kafka`]); reset with the others.
    kafka: Vec<ClientLink>,
    nodes: usize,
}

/// Ports the proxies of an `nodes`-node cluster listen on: one per node's client listener, one
/// per directed peer link and one per node's Kafka listener (the Kafka ones last, for
/// [`Proxies::start_kafka`]).
pub fn proxy_ports(nodes: usize) -> usize {
    nodes + nodes * (nodes - 1) + nodes
}

/// A listener on `127.0.0.1:port`, a port of the run's block.
async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("proxy port 127.0.0.1:{port} of the reserved block: {e}")))
}

impl Proxies {
    /// Binds a proxy for every directed pair (ids `1..=n`) relaying to
    /// `127.0.0.1:peer_ports[j]`, and one in front of every `client_ports[j]`, on `listen` (ports
    /// of the run's block: the clients' first, then the links'; at least `n * n` of them). The
    /// ports are known (and held) before any node starts.
    pub async fn start(peer_ports: &[u16], client_ports: &[u16], listen: &[u16]) -> std::io::Result<Proxies> {
        let nodes = peer_ports.len();
        assert_eq!(client_ports.len(), nodes);
        assert!(listen.len() >= nodes * nodes, "{} proxy ports for {nodes} nodes; {} needed", listen.len(), nodes * nodes);
        let mut listen = listen.iter().copied();
        let (_, no_resets) = watch::channel(0u64);
        let (_, unblocked) = watch::channel(false);
        let mut clients = Vec::with_capacity(nodes);
        for &target in client_ports {
            let listener = bind(listen.next().expect("counted above")).await?;
            let port = listener.local_addr()?.port();
            let (resets, watching) = watch::channel(0u64);
            tokio::spawn(relay_accepts(listener, target, unblocked.clone(), watching));
            clients.push(ClientLink { port, resets });
        }
        let mut links = Vec::with_capacity(nodes * nodes);
        for from in 1..=nodes as u64 {
            for to in 1..=nodes as u64 {
                if from == to {
                    continue;
                }
                let listener = bind(listen.next().expect("counted above")).await?;
                let port = listener.local_addr()?.port();
                let (blocked, watching) = watch::channel(false);
                tokio::spawn(relay_accepts(listener, peer_ports[to as usize - 1], watching, no_resets.clone()));
                links.push(Link { from, to, port, blocked });
            }
        }
        Ok(Proxies { links, clients, kafka: Vec::new(), nodes })
    }

    /// Binds one proxy in front of every node's Kafka listener (`kafka_ports[j]` for node
    /// `j + 1`) on `listen[j]` (ports of the run's block), reset by [`Proxies::reset_clients`]
    /// like the client proxies.
    pub async fn start_kafka(&mut self, kafka_ports: &[u16], listen: &[u16]) -> std::io::Result<()> {
        assert_eq!(kafka_ports.len(), self.nodes);
        assert_eq!(listen.len(), self.nodes, "one Kafka proxy port per node");
        assert!(self.kafka.is_empty(), "the Kafka proxies start once");
        let (_, unblocked) = watch::channel(false);
        for (&target, &port) in kafka_ports.iter().zip(listen) {
            let listener = bind(port).await?;
            let port = listener.local_addr()?.port();
            let (resets, watching) = watch::channel(0u64);
            tokio::spawn(relay_accepts(listener, target, unblocked.clone(), watching));
            self.kafka.push(ClientLink { port, resets });
        }
        Ok(())
    }

    /// The port Kafka clients dial to reach node `id`'s Kafka listener.
    pub fn kafka_port(&self, id: u64) -> u16 {
        self.kafka[id as usize - 1].port
    }

    /// The port clients dial to reach node `id`'s client listener.
    pub fn client_port(&self, id: u64) -> u16 {
        self.clients[id as usize - 1].port
    }

    /// Closes every open client connection (F-N9); new ones are accepted as before.
    pub fn reset_clients(&self) {
        for client in self.clients.iter().chain(&self.kafka) {
            client.resets.send_modify(|generation| *generation += 1);
        }
    }

    /// The port node `from` must dial to reach node `to`.
    pub fn port(&self, from: u64, to: u64) -> u16 {
        self.links.iter().find(|l| l.from == from && l.to == to).map(|l| l.port).expect("a link between two distinct nodes")
    }

    /// `ports[i][j]`: what node `i + 1` dials to reach `j + 1` (0 on the diagonal).
    pub fn port_matrix(&self) -> Vec<Vec<u16>> {
        (1..=self.nodes as u64).map(|i| (1..=self.nodes as u64).map(|j| if i == j { 0 } else { self.port(i, j) }).collect()).collect()
    }

    /// Cuts exactly the directed links in `cut` and heals every other.
    pub fn set_cut(&self, cut: &BTreeSet<(u64, u64)>) {
        for link in &self.links {
            link.blocked.send_replace(cut.contains(&(link.from, link.to)));
        }
    }

    pub fn heal(&self) {
        self.set_cut(&BTreeSet::new());
    }
}

async fn relay_accepts(listener: TcpListener, target_port: u16, blocked: watch::Receiver<bool>, resets: watch::Receiver<u64>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if *blocked.borrow() || open.load(Ordering::Relaxed) >= LINK_CONNECTIONS_MAX {
            drop(inbound);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (open, blocked, mut resets) = (open.clone(), blocked.clone(), resets.clone());
        resets.mark_unchanged();
        tokio::spawn(async move {
            relay(inbound, target_port, blocked, resets).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Copies both ways until either side closes, the link is cut or the connections are reset.
async fn relay(mut inbound: TcpStream, target_port: u16, mut blocked: watch::Receiver<bool>, mut resets: watch::Receiver<u64>) {
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        // A closed sender (client links are never cut, peer links never reset) disables its
        // branch instead of ending the relay.
        Ok(_) = blocked.wait_for(|b| *b) => {}
        Ok(()) = resets.changed() => {}
    }
    // Dropping both streams closes them: the cut is seen as a reset / EOF by both nodes.
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every proxy listens on a port it was given from the run's block (so within
    /// `ODRADEK_TEST_PORTS`), none on a kernel-chosen one, and no two on the same port.
    #[tokio::test]
    async fn proxies_listen_on_ports_of_the_reserved_block() {
        let nodes = 3;
        let block = super::super::ports::reserve(nodes * 3 + proxy_ports(nodes)).unwrap();
        let (targets, listen) = block.ports().split_at(nodes * 3);
        let (listen, kafka_listen) = listen.split_at(listen.len() - nodes);
        let mut proxies = Proxies::start(&targets[..nodes], &targets[nodes..2 * nodes], listen).await.unwrap();
        proxies.start_kafka(&targets[2 * nodes..], kafka_listen).await.unwrap();
        let ids = 1..=nodes as u64;
        let mut used: BTreeSet<u16> = ids.clone().flat_map(|id| [proxies.client_port(id), proxies.kafka_port(id)]).collect();
        used.extend(ids.clone().flat_map(|i| ids.clone().filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| proxies.port(i, j)));
        assert_eq!(used.len(), proxy_ports(nodes), "one port per proxy");
        assert!(used.iter().all(|port| block.ports()[nodes * 3..].contains(port)), "{used:?} outside {:?}", block.ports());
    }
}
