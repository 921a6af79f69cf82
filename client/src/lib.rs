//! `odradek-client`: the client side of Odradek.
//!
//! Only the record-batch codec (`batch`) exists so far: the RecordBatch v2 format that producers
//! build, brokers validate and consumers read.

pub mod batch;
