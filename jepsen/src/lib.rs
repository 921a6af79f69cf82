//! `odradek-jepsen`: history model, checkers, the real-process harness, reports and plots.
//!
//! Not built yet (issue "The Jepsen-style harness against real processes"). This crate
//! intentionally exports nothing until it does.
