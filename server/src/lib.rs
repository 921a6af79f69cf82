//! `odradek-server`: node process, controller, partitions, RPC and the `odradek` binary.
//!
//! Not built yet (issue "Brokers, wire protocol, Rust client and CLI"). This crate intentionally
//! exports nothing until it does.
