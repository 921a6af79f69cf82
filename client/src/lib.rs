//! `odradek-client`: wire protocol, record batches, producer, consumer and admin.
//!
//! Not built yet (issue "Brokers, wire protocol, Rust client and CLI"). This crate intentionally
//! exports nothing until it does.
