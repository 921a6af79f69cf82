//! `odradek-server`: the node process, the controller (metadata group), partitions, the client
//! protocol listener and the `odradek` binary.
//!
//! - [`auth`]: principals, SCRAM users and ACLs (who may do what, issue 19);
//! - [`config`]: a node's settings (flags or TOML) and the cluster's member list;
//! - [`data_dir`]: the data directory's lock and the identity of the node that owns it;
//! - [`meta`]: the controller's state machine (brokers, topics, replica assignments, producer
//!   ids), replicated by raft group 0;
//! - [`partition`]: one partition's replica state (high watermark, log start, the idempotent
//!   producer table with its admission rules);
//! - [`state`]: both, shared between the raft loop (the [`odradek_consensus::Apply`] side) and
//!   the request handlers;
//! - [`context`]: what every request handler and background duty works with;
//!   [`shutdown`]: the signal that stops them;
//! - [`net`]: the client listener and connections; [`request`]: the request handlers, one
//!   module per request family (produce, fetch, metadata, admin);
//! - [`kafka`]: the Kafka wire-protocol listener, translating Kafka requests into the native
//!   request handlers; [`alloc`]: the allocator that keeps a bad Kafka frame from aborting;
//! - [`controller`]: hosting the assigned partition groups, broker registration, leader
//!   balancing, retention;
//! - [`metrics`]: the Prometheus registry and its text endpoint (`--metrics-listen`);
//! - [`server`]: starting and stopping a node; [`faults`]: a simulation's fault hooks;
//!   [`planted`]: the planted bugs of simulation and test builds.

#[cfg(unix)]
pub mod alloc;
pub mod auth;
pub mod clock;
pub mod config;
pub mod context;
pub mod controller;
pub mod data_dir;
pub mod faults;
pub mod group;
pub mod join;
pub mod kafka;
pub mod membership;
pub mod meta;
pub mod meta_repair;
pub mod metrics;
pub mod net;
pub mod partition;
pub mod planted;
pub mod reassign;
pub mod repair;
pub mod request;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;

pub use clock::{system_clock, Clock};
pub use config::{Member, ServerConfig};
pub use server::{Server, ServerError};

pub mod proto {
    //! Protobuf types generated at build time from `proto/meta.proto` (pure-Rust codegen).
    include!(concat!(env!("OUT_DIR"), "/proto_modules.rs"));
    pub use meta::*;
}

/// Huge allocations reserved lazily: a bad Kafka frame cannot abort the node (see [`alloc`]).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: alloc::LazyHuge = alloc::LazyHuge;
