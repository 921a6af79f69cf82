//! `odradek-consensus`: multi-raft over raft-rs, with raft `Storage` backed by the segment log.
//!
//! Modules so far:
//! - [`transport`]: the network seam of the node driver (batches of raft messages per peer),
//!   its TCP implementation and an in-memory network for deterministic tests.
//! - [`proto`]: protobuf types generated from `proto/*.proto` by `build.rs`.
//!
//! The raft storage over the segment log and the node driver are in progress.

pub mod proto {
    //! Protobuf types generated at build time from `proto/*.proto` (pure-Rust codegen).
    include!(concat!(env!("OUT_DIR"), "/proto_modules.rs"));
}

pub mod transport;

pub use transport::{GroupId, Inbound, LocalNetwork, LocalTransport, NodeId, TcpTransport, Transport, TransportError, TransportStats};
