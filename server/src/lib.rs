//! `odradek-server`: the node process, the controller (metadata group), partitions, the client
//! protocol listener and the `odradek` binary.
//!
//! - [`config`]: a node's settings (flags or TOML) and the cluster's member list;
//! - [`meta`]: the controller's state machine (brokers, topics, replica assignments, producer
//!   ids), replicated by raft group 0;
//! - [`partition`]: one partition's replica state (high watermark, log start, the idempotent
//!   producer table with its admission rules);
//! - [`state`]: both, shared between the raft loop (the [`odradek_consensus::Apply`] side) and
//!   the request handlers;
//! - [`broker`]: the request handlers; [`net`]: the client listener and connections;
//! - [`controller`]: hosting the assigned partition groups, broker registration, leader
//!   balancing, retention;
//! - [`server`]: starting and stopping a node; [`faults`]: a simulation's fault hooks.

pub mod broker;
pub mod clock;
pub mod config;
pub mod controller;
pub mod faults;
pub mod group;
pub mod meta;
pub mod net;
pub mod partition;
pub mod planted;
pub mod server;
pub mod state;

pub use clock::{system_clock, Clock};
pub use config::{Member, ServerConfig};
pub use server::{Server, ServerError};

pub mod proto {
    //! Protobuf types generated at build time from `proto/meta.proto` (pure-Rust codegen).
    include!(concat!(env!("OUT_DIR"), "/proto_modules.rs"));
    pub use meta::*;
}
