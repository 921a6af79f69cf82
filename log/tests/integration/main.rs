//! The segment log's integration tests, one module per subject, in one test binary (each binary
//! links the log and its dependencies at opt-level 2: five of them took about 60 CPU s to build on
//! the 2-core CI machine). `cargo test -p odradek-log --test integration model::`.

// Built in the normal configuration only, as each file was (their runtime is a plain tokio one).
#![cfg(not(madsim))]

mod common;

mod bit_flips;
mod fs_disk;
mod model;
mod reader;
mod segment_log;
