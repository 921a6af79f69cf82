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
}
