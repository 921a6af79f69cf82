//! `BatchError`: everything that can be wrong with a record batch, built or received.
//!
//! Every variant is *definite*: a batch that fails to build was never sent, and a batch that
//! fails validation is refused before anything is appended, so the records were certainly not
//! written. Messages name the field (with the spec's name for it), the record's index within the
//! batch where there is one, and the values that disagree.

use super::{BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, BATCH_RECORDS_MAX, MAGIC, RECORD_BYTES_MIN, RECORD_HEADERS_MAX};

/// A record batch could not be built, or bytes are not a valid RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    // ---- Batch header (checked by `validate`, no per-record work) ----
    #[error("batch truncated: {what} needs {bytes_needed} bytes but the buffer holds {bytes_available}")]
    Truncated { what: &'static str, bytes_needed: usize, bytes_available: usize },

    #[error("magic byte is {magic}; only {MAGIC} (RecordBatch v2) is supported")]
    MagicUnsupported { magic: i8 },

    #[error("batchLength is {batch_length}; a batch needs at least {} bytes after the batchLength field", BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES)]
    BatchLengthTooSmall { batch_length: i32 },

    #[error("batch is {batch_bytes} bytes, above the limit of {bytes_max}")]
    BatchTooLarge { batch_bytes: usize, bytes_max: usize },

    #[error("batchLength says the batch is {batch_bytes} bytes, but the buffer holds {buffer_bytes}")]
    BatchLengthMismatch { batch_bytes: usize, buffer_bytes: usize },

    #[error("CRC-32C mismatch: the header says {crc_stored:#010x}, attributes..end hash to {crc_computed:#010x}")]
    CrcMismatch { crc_stored: u32, crc_computed: u32 },

    #[error("compression codec {codec} ({}) is not defined; codecs are 0 (none), 1 (gzip), 2 (snappy), 3 (lz4) and 4 (zstd)", compression_name(*codec))]
    CompressionUnsupported { codec: u8 },

    // ---- Compressed records (checked by `decode` and `validate_for_append`) ----
    #[error("the {} records do not decompress: {reason}", compression_name(*codec))]
    DecompressFailed { codec: u8, reason: String },

    #[error("the {} records decompress to more than the limit of {bytes_max} bytes", compression_name(*codec))]
    DecompressedTooLarge { codec: u8, bytes_max: usize },

    #[error("the batch's records are {} compressed: read them with batch::decode, not batch::records", compression_name(*codec))]
    RecordsCompressed { codec: u8 },

    #[error("attributes {attributes:#06x} set unused bits (7..15 must be zero)")]
    AttributesUnknown { attributes: i16 },

    #[error("records count is {record_count}; a batch holds 1 to {BATCH_RECORDS_MAX} records")]
    RecordsCountInvalid { record_count: i32 },

    #[error("records count {record_count} cannot fit in {records_bytes} bytes of records (each takes at least {RECORD_BYTES_MIN})")]
    RecordsCountImplausible { record_count: i32, records_bytes: usize },

    #[error("lastOffsetDelta is {last_offset_delta} but the batch holds {record_count} records (expected {})", i64::from(*record_count) - 1)]
    LastOffsetDeltaMismatch { last_offset_delta: i32, record_count: i32 },

    #[error("baseOffset {base_offset} is invalid: it must be >= 0 and baseOffset + lastOffsetDelta must fit in an i64")]
    BaseOffsetInvalid { base_offset: i64 },

    #[error("maxTimestamp {timestamp_max} is before baseTimestamp {base_timestamp} in a CreateTime batch")]
    MaxTimestampBeforeBase { base_timestamp: i64, timestamp_max: i64 },

    // ---- Records (checked while iterating `records`) ----
    #[error("record {record_index}: the record's bytes end before its {field}")]
    RecordTruncated { record_index: usize, field: &'static str },

    #[error("record {record_index}: {field} is a truncated varint (the record's bytes end mid-value)")]
    VarintTruncated { record_index: usize, field: &'static str },

    #[error("record {record_index}: {field} is a malformed varint (too many bytes, or bits beyond its width)")]
    VarintOverflow { record_index: usize, field: &'static str },

    #[error("record {record_index}: {field} is {length}; only -1 (null) may be negative")]
    LengthNegative { record_index: usize, field: &'static str, length: i32 },

    #[error("record {record_index}: {field} is {length}, but {field} cannot be negative (no null here)")]
    LengthNotNullable { record_index: usize, field: &'static str, length: i32 },

    #[error("record {record_index}: {field} is {length} but only {bytes_remaining} bytes remain")]
    LengthPastEnd { record_index: usize, field: &'static str, length: i32, bytes_remaining: usize },

    #[error("record {record_index}: length says {record_length} bytes but its fields take {bytes_used}")]
    RecordLengthMismatch { record_index: usize, record_length: usize, bytes_used: usize },

    #[error("record {record_index}: attributes {attributes:#04x} are unused in v2 and must be zero")]
    RecordAttributesUnknown { record_index: usize, attributes: i8 },

    #[error("record {record_index}: offsetDelta is {offset_delta}, expected {record_index} (records are numbered consecutively)")]
    OffsetDeltaMismatch { record_index: usize, offset_delta: i32 },

    #[error("record {record_index}: baseTimestamp {base_timestamp} + timestampDelta {timestamp_delta} overflows an i64")]
    TimestampOverflow { record_index: usize, base_timestamp: i64, timestamp_delta: i64 },

    #[error("record {record_index}: timestamp {timestamp} is after the batch's maxTimestamp {timestamp_max}")]
    TimestampAboveMax { record_index: usize, timestamp: i64, timestamp_max: i64 },

    #[error("record {record_index}: headers count is {headers_count}, above the limit of {RECORD_HEADERS_MAX}")]
    HeadersTooMany { record_index: usize, headers_count: usize },

    #[error("record {record_index}: header {header_index} has a key that is not valid UTF-8")]
    HeaderKeyNotUtf8 { record_index: usize, header_index: usize },

    #[error("records count says {record_count} records but the bytes end after {records_found}")]
    RecordsMissing { record_count: i32, records_found: usize },

    #[error("{bytes_trailing} bytes of trailing garbage after the last of {record_count} records")]
    TrailingBytes { record_count: i32, bytes_trailing: usize },

    // ---- Building ----
    #[error("batch is full: it already holds {BATCH_RECORDS_MAX} records")]
    RecordsFull,

    #[error("batch is full: adding a {record_bytes}-byte record would make it {batch_bytes} bytes, above the limit of {bytes_max}")]
    BytesFull { record_bytes: usize, batch_bytes: usize, bytes_max: usize },

    #[error("record of {record_bytes} bytes cannot fit in any batch: with the batch header it exceeds the limit of {bytes_max}")]
    RecordTooLarge { record_bytes: usize, bytes_max: usize },

    #[error("record has {headers_count} headers, above the limit of {RECORD_HEADERS_MAX}")]
    RecordHeadersTooMany { headers_count: usize },

    #[error("record timestamp {timestamp} is too far from the batch's baseTimestamp {base_timestamp} for an i64 delta")]
    TimestampDeltaOverflow { timestamp: i64, base_timestamp: i64 },
}

impl BatchError {
    /// Always true: a batch that fails to build or validate was certainly not applied.
    pub fn is_definite(&self) -> bool {
        true
    }
}

/// The spec's names for the compression codecs in attribute bits 0..2.
pub(crate) fn compression_name(codec: u8) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "undefined",
    }
}
