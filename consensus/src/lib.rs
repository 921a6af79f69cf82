//! `odradek-consensus`: multi-raft over raft-rs, with raft `Storage` backed by the segment log.
//!
//! Not built yet (issue "Multi-raft consensus over the segment log"). This crate intentionally
//! exports nothing until it does.
