//! `odradek-client`: the client side of Odradek.
//!
//! What exists so far:
//! - [`batch`]: the Kafka RecordBatch v2 codec that producers build, brokers validate and
//!   consumers read, byte for byte the same all the way;
//! - [`wire`]: the client protocol (protobuf messages in length-prefixed frames, pipelined by
//!   request id, a versioned handshake) and the one table of definite and indefinite errors.
//!
//! The `Producer`, `Consumer` and `Admin` APIs come with the server.

pub mod batch;
pub mod wire;
