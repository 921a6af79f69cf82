//! `odradek-consensus`: multi-raft over raft-rs, with raft `Storage` backed by the segment log.
//!
//! Modules so far:
//! - [`transport`]: the network seam of the node driver (batches of raft messages per peer),
//!   its TCP implementation and an in-memory network for deterministic tests.
//! - [`proto`]: protobuf types generated from `proto/*.proto` by `build.rs`.
//! - [`storage`]: raft-rs `Storage` over the segment log (the sync view raft reads, the async
//!   store the driver owns) and the raft entry <-> log entry mapping.
//! - [`conf_state_file`]: the durable, two-slot raft configuration of a group.
//! - [`node`]: the driver hosting many groups in one loop (group commit, persist before send),
//!   proposals with definite/indefinite outcomes (indefinite ones resolved later where this
//!   node learns the committed entry: [`ResolvedOutcome`]), and the [`Apply`] interface.
//! - [`stages`]: per-stage timing of one write, off unless a node is given a clock for it.
//! - [`observe`]: the events every node reports to an observer installed on its thread, which
//!   the raft checker (`odradek_jepsen::checker::raft`) judges in the simulator and in
//!   `tests/cluster/`.
//!
//! The R* invariants of ../shared/CHECKLISTS.md: the driver keeps R6 (persist before send) and
//! asserts its storage pre- and post-conditions; `tests/cluster/` runs seeded random schedules
//! under that checker (its crate documentation says which check runs where).

pub mod proto {
    //! Protobuf types generated at build time from `proto/*.proto` (pure-Rust codegen).
    include!(concat!(env!("OUT_DIR"), "/proto_modules.rs"));
}

pub mod transport;

pub mod conf_state_file;
pub mod node;
pub mod observe;
pub mod stages;
pub mod storage;

pub use conf_state_file::{ConfStateError, ConfStateFile};
#[cfg(any(madsim, feature = "planted-bugs"))]
pub use node::Planted;
pub use node::{
    take_budget, Appended, Apply, Committed, Durability, GroupStatus, LeadRefusals, LogBounds, Node, NodeConfig, NodeError, NodeHandle,
    NodeStats, Proposal, ProposalTicket, ProposeError, Rejection, ResolvedOutcome, QUARANTINE_DIR, SET_ASIDE_DONE,
};
pub use storage::{EntryMeta, GroupStorage, GroupStore, StorageFault};
pub use transport::{
    FaultRates, FaultyTransport, GroupId, Inbound, LocalNetwork, LocalTransport, NodeId, TcpTransport, Transport, TransportError,
    TransportFaults, TransportStats,
};
