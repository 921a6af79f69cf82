//! The fixed batch header: parsing and validating it (what the broker does to every batch it
//! receives), and writing the base offset (the only bytes the broker changes, when it serves a
//! batch on fetch).

use bytes::Buf;

use super::{
    attributes, crc_compute, decode, position, BatchError, Compression, TimestampType, BATCH_BYTES_MAX, BATCH_HEADER_BYTES,
    BATCH_LOG_OVERHEAD_BYTES, BATCH_RECORDS_MAX, MAGIC, RECORD_BYTES_MIN,
};

/// Every field of a batch's fixed header, as [`BatchHeader::parse`] read and checked them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the batchLength field: the whole batch is `BATCH_LOG_OVERHEAD_BYTES + batch_length`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    /// Raw attribute bits; see the accessors below and [`attributes`].
    pub attributes: i16,
    pub last_offset_delta: i32,
    /// Kafka's firstTimestamp: the first record's timestamp, which every timestampDelta is relative to.
    pub base_timestamp: i64,
    pub timestamp_max: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads and validates the header of exactly one batch: `batch` must hold the whole batch and
    /// nothing else (use [`batch_bytes_len`] to split a buffer of several).
    ///
    /// Checks, in this order: enough bytes for the header, magic, batchLength (minimum, the
    /// [`BATCH_BYTES_MAX`] limit, equal to the buffer), the CRC, attributes (unused bits, a
    /// defined compression codec), the records count (1..=[`BATCH_RECORDS_MAX`], and for an
    /// uncompressed batch no more than the bytes can hold), lastOffsetDelta == count - 1, the base offset, and for CreateTime
    /// maxTimestamp >= baseTimestamp. The CRC comes before the field checks so that random
    /// corruption is reported as corruption, not as a strange field.
    pub fn parse(batch: &[u8]) -> Result<BatchHeader, BatchError> {
        if batch.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { what: "batch header", bytes_needed: BATCH_HEADER_BYTES, bytes_available: batch.len() });
        }
        let batch_bytes = batch_bytes_len(batch)?;
        if batch_bytes != batch.len() {
            return Err(BatchError::BatchLengthMismatch { batch_bytes, buffer_bytes: batch.len() });
        }
        let header = BatchHeader::read(batch);
        let crc_computed = crc_compute(batch);
        if crc_computed != header.crc {
            return Err(BatchError::CrcMismatch { crc_stored: header.crc, crc_computed });
        }
        header.check_fields(batch.len() - BATCH_HEADER_BYTES)?;
        assert_eq!(header.bytes_len(), batch.len());
        Ok(header)
    }

    /// Reads the fixed fields without checking them. `batch` holds at least the header.
    fn read(batch: &[u8]) -> BatchHeader {
        assert!(batch.len() >= BATCH_HEADER_BYTES);
        let mut fields = &batch[..BATCH_HEADER_BYTES];
        let header = BatchHeader {
            base_offset: fields.get_i64(),
            batch_length: fields.get_i32(),
            partition_leader_epoch: fields.get_i32(),
            magic: fields.get_i8(),
            crc: fields.get_u32(),
            attributes: fields.get_i16(),
            last_offset_delta: fields.get_i32(),
            base_timestamp: fields.get_i64(),
            timestamp_max: fields.get_i64(),
            producer_id: fields.get_i64(),
            producer_epoch: fields.get_i16(),
            base_sequence: fields.get_i32(),
            record_count: fields.get_i32(),
        };
        assert!(fields.is_empty(), "the header fields add up to BATCH_HEADER_BYTES");
        header
    }

    /// The checks on fields the CRC covers, once the CRC has matched.
    fn check_fields(&self, records_bytes: usize) -> Result<(), BatchError> {
        if self.attributes & attributes::UNUSED_MASK != 0 {
            return Err(BatchError::AttributesUnknown { attributes: self.attributes });
        }
        if Compression::from_codec(self.compression()).is_none() {
            return Err(BatchError::CompressionUnsupported { codec: self.compression() });
        }
        let record_count = self.record_count;
        if record_count < 1 || record_count as usize > BATCH_RECORDS_MAX {
            return Err(BatchError::RecordsCountInvalid { record_count });
        }
        // Compressed records may take fewer bytes than records; their count is checked against
        // the records themselves once decompressed (`validate_for_append`, `decode`).
        if self.compression() == 0 && record_count as usize > records_bytes / RECORD_BYTES_MIN {
            return Err(BatchError::RecordsCountImplausible { record_count, records_bytes });
        }
        if i64::from(self.last_offset_delta) != i64::from(record_count) - 1 {
            return Err(BatchError::LastOffsetDeltaMismatch { last_offset_delta: self.last_offset_delta, record_count });
        }
        if self.base_offset < 0 || self.base_offset.checked_add(i64::from(self.last_offset_delta)).is_none() {
            return Err(BatchError::BaseOffsetInvalid { base_offset: self.base_offset });
        }
        // With a delete horizon, baseTimestamp is the horizon, not the first record's time.
        let timestamps_ordered = self.timestamp_type() == TimestampType::LogAppendTime || self.has_delete_horizon();
        if !timestamps_ordered && self.timestamp_max < self.base_timestamp {
            return Err(BatchError::MaxTimestampBeforeBase { base_timestamp: self.base_timestamp, timestamp_max: self.timestamp_max });
        }
        Ok(())
    }

    /// The whole batch's size in bytes, log overhead included.
    pub fn bytes_len(&self) -> usize {
        BATCH_LOG_OVERHEAD_BYTES + usize::try_from(self.batch_length).expect("a parsed batchLength is positive")
    }

    /// Compression codec (attribute bits 0..2); one of the five defined (0..=4) in a batch that
    /// parsed, see [`Compression::from_codec`].
    pub fn compression(&self) -> u8 {
        (self.attributes & attributes::COMPRESSION_MASK) as u8
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & attributes::TIMESTAMP_TYPE == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & attributes::DELETE_HORIZON != 0
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn offset_last(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Records in the batch, as a count.
    pub fn records_len(&self) -> usize {
        usize::try_from(self.record_count).expect("a parsed records count is positive")
    }
}

/// Validates a batch the way the broker does before appending it: the header and the CRC, no
/// per-record work (see [`BatchHeader::parse`] for the checks). The CRC covers every record byte,
/// so a batch that passes was built by a writer that produced these exact bytes; malformed records
/// written by a buggy producer are caught by [`records`](super::records) on the consumer.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    BatchHeader::parse(batch)
}

/// What the broker runs on every batch it is asked to append: [`validate`], and for a compressed
/// batch also decompression (bounded by
/// [`RECORDS_DECOMPRESSED_BYTES_MAX`](super::RECORDS_DECOMPRESSED_BYTES_MAX)) and a read of
/// every record, so that the records parse and their number is the header's records count
/// (`lastOffsetDelta + 1`). A compressed batch's CRC covers the compressed bytes only, so without
/// this a producer's broken compressor would reach every consumer; an uncompressed batch keeps
/// the header-only check (see the module's cost sketch).
pub fn validate_for_append(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate(batch)?;
    if header.compression() != 0 {
        let decoded = decode(batch)?;
        for record in decoded.records() {
            record?;
        }
    }
    Ok(header)
}

/// Size in bytes of the batch that starts `buffer`, from its first 17 bytes (baseOffset through
/// magic), without reading the rest: how a consumer splits a fetch response holding several
/// batches. Checks the magic and that batchLength is within bounds.
pub fn batch_bytes_len(buffer: &[u8]) -> Result<usize, BatchError> {
    let bytes_needed = position::MAGIC + 1;
    if buffer.len() < bytes_needed {
        return Err(BatchError::Truncated { what: "batchLength and magic", bytes_needed, bytes_available: buffer.len() });
    }
    let magic = buffer[position::MAGIC] as i8;
    if magic != MAGIC {
        return Err(BatchError::MagicUnsupported { magic });
    }
    let batch_length = (&buffer[position::BATCH_LENGTH..]).get_i32();
    let batch_length_min = BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES;
    if batch_length < 0 || (batch_length as usize) < batch_length_min {
        return Err(BatchError::BatchLengthTooSmall { batch_length });
    }
    let batch_bytes = BATCH_LOG_OVERHEAD_BYTES + batch_length as usize;
    if batch_bytes > BATCH_BYTES_MAX {
        return Err(BatchError::BatchTooLarge { batch_bytes, bytes_max: BATCH_BYTES_MAX });
    }
    Ok(batch_bytes)
}

/// Writes baseOffset in place: what the broker does to each batch it serves on fetch (its log
/// keeps the batch as the producer sent it, and the base offset in the log entry's header).
/// baseOffset lies before the CRC-covered region, so the CRC, and every other byte, stays as the
/// producer wrote it.
///
/// # Panics
/// If `batch` is shorter than a header, `base_offset` is negative, or the batch's last offset
/// would overflow an `i64`: the broker computes offsets from its log and has validated the batch,
/// so any of these is a bug in the caller.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES, "set_base_offset on {} bytes, shorter than a batch header", batch.len());
    assert!(base_offset >= 0, "set_base_offset({base_offset}): offsets are never negative");
    let last_offset_delta = (&batch[position::LAST_OFFSET_DELTA..]).get_i32();
    assert!(base_offset.checked_add(i64::from(last_offset_delta)).is_some(), "set_base_offset({base_offset}) overflows the last offset");
    batch[position::BASE_OFFSET..position::BATCH_LENGTH].copy_from_slice(&base_offset.to_be_bytes());
    debug_assert_eq!((&batch[position::BASE_OFFSET..]).get_i64(), base_offset);
}
