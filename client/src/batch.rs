//! Record batches in Apache Kafka's RecordBatch v2 layout (magic 2): the unit a producer sends,
//! the broker validates and appends, the log stores byte for byte, and a consumer receives with
//! only its baseOffset filled in (by the broker on fetch, [`set_base_offset`]).
//!
//! Written from the "Record Batch", "Record" and "Record Header" sections of Kafka's public
//! message-format documentation. Layout (fixed fields big-endian; varints zigzag, as protobuf's
//! `sint32`/`sint64`):
//!
//! ```text
//!  0 baseOffset            i64  \ log overhead: outside the CRC, so the broker can assign
//!  8 batchLength           i32  / offsets without re-hashing (bytes after this field)
//! 12 partitionLeaderEpoch  i32
//! 16 magic                 i8   = 2
//! 17 crc                   u32  CRC-32C (Castagnoli) of bytes 21..end
//! 21 attributes            i16  bits 0-2 compression, 3 timestampType, 4 isTransactional,
//!                               5 isControl, 6 hasDeleteHorizonMs, 7-15 unused
//! 23 lastOffsetDelta       i32
//! 27 baseTimestamp         i64  (firstTimestamp)
//! 35 maxTimestamp          i64
//! 43 producerId            i64
//! 51 producerEpoch         i16
//! 53 baseSequence          i32
//! 57 records count         i32
//! 61 records: length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
//!             keyLength varint (-1 = null), key, valueLength varint (-1 = null), value,
//!             headers count varint, headers: headerKeyLength varint, headerKey (UTF-8),
//!             headerValueLength varint (-1 = null), headerValue
//! ```
//!
//! Invariants this module keeps, on both sides of the wire:
//! - A batch that [`validate`] accepts has magic 2, a `batchLength` equal to the buffer, a CRC that
//!   matches, a defined compression codec (none, gzip, snappy, lz4, zstd), no unused attribute bits,
//!   1..=[`BATCH_RECORDS_MAX`] records, `lastOffsetDelta == count - 1`, a base offset whose last
//!   offset fits in an `i64`, and, for CreateTime, `maxTimestamp >= baseTimestamp`.
//! - A batch [`BatchBuilder::build`] returns passes [`validate`]; [`set_base_offset`] keeps it so.
//! - [`records`] (uncompressed batches) and [`decode`] (any batch) yield exactly `count` records
//!   with offsetDelta 0, 1, 2, … and consume every (decompressed) byte, or yield an error and stop.
//! - A batch that [`validate_for_append`] accepts also decompresses within
//!   [`RECORDS_DECOMPRESSED_BYTES_MAX`] and its records read without error: what the broker
//!   requires before it appends a compressed batch (stored and served compressed, as sent).
//!
//! Cost sketch (why the broker stops at [`validate`]): validation is one CRC-32C pass plus a
//! fixed 61-byte header read. CRC-32C uses the SSE 4.2 / ARMv8 CRC instruction where the CPU has
//! one, several GB/s per core, so a full 1 MiB batch costs on the order of 100 µs, and the broker
//! does no per-record work at all on an uncompressed batch: per-record decoding ([`records`]) is
//! for consumers, who pay it once per record they read. A compressed batch the broker decompresses
//! and reads once ([`validate_for_append`]), since its CRC only vouches for the compressed bytes. Encoding costs one copy of keys, values and headers into the batch
//! buffer plus the same CRC pass.

mod builder;
mod compression;
mod error;
mod header;
mod reader;
mod varint;

pub use builder::{BatchBuilder, Header, Record};
pub use compression::{
    batch_compression, compress, compress_batch, decompress, decompress_records, Compression, RECORDS_DECOMPRESSED_BYTES_MAX,
};
pub use error::BatchError;
pub use header::{batch_bytes_len, set_base_offset, validate, validate_for_append, BatchHeader};
pub use reader::{decode, records, DecodedBatch, HeaderView, RecordView, Records};

/// The only batch format we read or write: RecordBatch v2.
pub const MAGIC: i8 = 2;

/// baseOffset + batchLength: the bytes in front of what `batchLength` counts.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;

/// Fixed header bytes, from baseOffset through the records count.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Largest batch, header included, that we build or accept. Kafka's default
/// `max.message.bytes` is about 1 MiB; a batch is one Raft entry, so this also bounds an entry.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

/// Most records in one batch. Bounds per-batch work on the consumer side and keeps every
/// offsetDelta well inside an `i32`; with tiny records a full batch is about 0.5 MiB.
pub const BATCH_RECORDS_MAX: usize = 1 << 16;

/// Most headers on one record. Kafka sets none; this bounds the per-record allocation.
pub const RECORD_HEADERS_MAX: usize = 256;

/// Smallest possible encoded record: length, attributes, timestampDelta, offsetDelta, keyLength,
/// valueLength and headers count, one byte each. Lets `validate` reject an absurd records count
/// without decoding a record.
pub const RECORD_BYTES_MIN: usize = 7;

/// producerId of a batch from a producer without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// producerEpoch of a batch from a producer without idempotence.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// baseSequence of a batch from a producer without idempotence.
pub const NO_SEQUENCE: i32 = -1;
/// partitionLeaderEpoch as a producer sends it (the broker knows the epoch, the producer does not).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Byte positions of the fixed header fields (see the layout in the module comment).
pub mod position {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    /// Start of the CRC-covered region, which runs to the end of the batch.
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORDS_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
}

/// Attribute bits of the batch header.
pub mod attributes {
    /// Bits 0..2: the compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub const COMPRESSION_MASK: i16 = 0x07;
    /// Bit 3: 0 CreateTime, 1 LogAppendTime.
    pub const TIMESTAMP_TYPE: i16 = 0x08;
    /// Bit 4: the batch belongs to a transaction.
    pub const TRANSACTIONAL: i16 = 0x10;
    /// Bit 5: the batch holds control records (transaction markers).
    pub const CONTROL: i16 = 0x20;
    /// Bit 6: baseTimestamp holds the delete horizon set by compaction.
    pub const DELETE_HORIZON: i16 = 0x40;
    /// Bits 7..15: unused; we reject batches that set them rather than guess their meaning.
    pub const UNUSED_MASK: i16 = !0x7f;
}

/// Which clock a batch's timestamps come from (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer when the record was created.
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// CRC-32C of the covered region `batch[position::ATTRIBUTES..]`.
fn crc_compute(batch: &[u8]) -> u32 {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    crc32c::crc32c(&batch[position::ATTRIBUTES..])
}

#[cfg(test)]
mod tests;
