//! `odradek-seams`: the determinism seams every simulated crate shares, at the bottom of the
//! crate graph (it depends on tokio, and on madsim only under `--cfg madsim`).
//!
//! - [`buggify`]: BUGGIFY sites, which take rare but legal paths in simulation runs and compile
//!   away everywhere else.
//! - [`watch`]: a single-value broadcast channel that is tokio's in normal builds and wakes its
//!   waiters in a fixed order under madsim, so a seed replays inside one process.
//!
//! Code that runs under the simulator uses these instead of `tokio::sync::watch` and its own
//! random draws; `sim/tests/determinism_rules.rs` enforces the watch rule.

pub mod buggify;
pub mod watch;
