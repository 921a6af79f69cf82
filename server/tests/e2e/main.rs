//! The server's end-to-end tests: real `odradek server` processes on loopback, real sockets, real
//! files and real time, one module per subject. They are one test binary, not one per file:
//! each binary links the whole server, and 33 of them took about 190 CPU s to build and link on
//! the 2-core CI machine. cargo-nextest still runs every test in a process of its own
//! (`cargo nextest run -p odradek-server -E 'binary(e2e) and test(/^failover::/)'`; with
//! `cargo test`: `cargo test -p odradek-server --test e2e failover::`).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

mod common;
mod kafka_raw;

mod bad_input;
mod bootstrap;
mod cli;
mod cli_edges;
mod cli_groups;
mod cluster_status;
mod compression;
mod data_dir;
mod disk_full;
mod failover;
mod floods;
mod group_consumers;
mod group_offset_reset;
mod group_retention;
mod groups;
mod kafka_admin;
mod kafka_groups;
mod kafka_listener;
mod metadata_repair;
mod metrics;
mod node_decommission;
mod node_join;
mod operator;
mod produce_semantics;
mod reassign;
mod rejoin;
mod repair;
mod rolling_restart;
mod security;
mod tls;
mod topic_alter;
