//! `odradek-sim`: the whole cluster under madsim, with a nemesis, workloads and seed replay.
//!
//! Not built yet (issue "The deterministic cluster simulator"). This crate intentionally exports
//! nothing until it does.
