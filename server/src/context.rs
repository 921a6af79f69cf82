//! What every request handler and background duty of a node works with: its settings, its
//! [`NodeState`], the handle of its raft driver, a simulation's fault hooks and the planted bugs'
//! switches. Built once by
//! [`Server::start_with`](crate::server::Server::start_with) and shared (`Arc`) by the client
//! listener, every connection and the controller's duties.

use std::sync::Arc;

use odradek_consensus::NodeHandle;

use crate::config::ServerConfig;
use crate::faults::FaultHooks;
use crate::planted::Planted;
use crate::request::leaders::LearnedLeaders;
use crate::state::NodeState;

/// A running node's parts, as its tasks see them.
pub struct NodeContext {
    pub config: Arc<ServerConfig>,
    pub state: Arc<NodeState>,
    /// The raft driver: proposals, log reads, group status.
    pub node: NodeHandle,
    pub faults: FaultHooks,
    /// All off outside simulation and `planted-bugs` builds.
    pub planted: Planted,
    /// Leaders of partitions hosted elsewhere, as their replicas reported them.
    pub leaders: LearnedLeaders,
    /// The consumer-group coordinator of the offsets-topic partitions this node leads.
    pub groups: std::sync::Arc<crate::group::service::GroupService>,
    /// Authentication settings and the configured users' credentials (issue 19).
    pub auth: crate::auth::NodeAuth,
    /// TLS for relays to other nodes' client listeners (`request::relay`): the peer links'
    /// certificates, when client listeners speak TLS (None: plaintext).
    pub relay_tls: Option<std::sync::Arc<dyn odradek_consensus::transport::PeerTls>>,
    /// Counted requests, connections and fsyncs, and the sampled partition gauges.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    /// The driver's stage stamps, when `trace_stages` is on (module `odradek_consensus::stages`).
    pub stages: Option<Arc<odradek_consensus::stages::StageClock>>,
    /// The peer links' addresses: members that join the running cluster are added here
    /// (`crate::membership`).
    pub peers: odradek_consensus::transport::PeerBook,
}

impl NodeContext {
    /// Where node `node` serves clients: its bootstrap entry, else its registered broker
    /// address (a node that joined the running cluster).
    pub fn client_address(&self, node: odradek_consensus::NodeId) -> Option<std::net::SocketAddr> {
        if let Some(member) = self.config.nodes.iter().find(|m| m.id == node) {
            return Some(member.client);
        }
        self.state.lock().meta.brokers().get(&node)?.client_address.parse().ok()
    }

    /// Whether this node was removed from the cluster and must serve clients nothing
    /// (`crate::request::removed`); never with the planted bug `removed-node-serves`.
    pub fn is_removed(&self) -> bool {
        !self.planted.removed_node_serves && self.state.was_removed()
    }

    /// The nodes new replicas may go to: the bootstrap members and the nodes that joined, but
    /// those being decommissioned or removed.
    pub fn cluster_node_ids(&self) -> Vec<odradek_consensus::NodeId> {
        let mut ids = self.config.node_ids();
        let state = self.state.lock();
        ids.extend(state.meta.members().keys().copied());
        ids.retain(|id| !state.meta.draining().contains(id) && !state.meta.removed().contains(id));
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}
