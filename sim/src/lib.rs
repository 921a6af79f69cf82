//! `odradek-sim`: the real server and client under madsim — a whole cluster with a seeded
//! nemesis, checked, replayable by seed.
//!
//! A run ([`scenario::run_seed`]) builds 3 or 5 `odradek-server` nodes (each with its own
//! `SimDisk`, which survives kill and restart), a client node running the real `odradek-client`
//! workload, and a nemesis whose fault kinds and rates the seed draws (swarm testing); then a
//! liveness phase (faults off, everything healed, nodes restarted) and a final drain. The history
//! goes through the shared Jepsen checker (L1–L13, P1–P4), and white-box hooks on every replica
//! feed the raft checker (R1–R4, `odradek_consensus::observe`). Same seed, same trace: the
//! report ends with a hash of the history.
//!
//! Modules, each imported only by those after it: `config` (what a run is told, the shape every
//! run shares), `cluster` (the simulated cluster and its nodes), `nemesis` (the fault plan, each
//! fault's inject and heal, the loop), `workload` (the client side), `security` (`--secure`
//! runs: logins, ACLs, the intruder and invariant A1), `report` (what a run found), `scenario`
//! (the phases and the checks).
//!
//! Everything here needs `--cfg madsim` (`sim/madsim ...`); without it the crate is empty and the
//! `odradek-sim` binary only says how to build it.

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod config;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod report;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod security;
#[cfg(madsim)]
pub mod shrink;
#[cfg(madsim)]
mod workload;
