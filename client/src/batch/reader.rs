//! Reading records out of a validated batch without copying: views borrow keys, values and
//! headers from the batch bytes.
//!
//! Invariant: the iterator yields `Ok` exactly `record_count` times, for offsetDelta 0, 1, …, and
//! only if the records consume the batch to its last byte; otherwise it yields one `Err` and then
//! ends. Every length is checked against the bytes that remain *in its record* before it is used,
//! so no input can make it panic or read past a record.

use std::borrow::Cow;

use bytes::Bytes;

use super::varint::{read_varint, read_varlong, VarintError};
use super::{decompress_records, position, validate, BatchError, BatchHeader, Header, Record, TimestampType, RECORD_HEADERS_MAX};

/// A record header borrowed from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// A record borrowed from the batch, with its offset and timestamp made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// baseOffset + offsetDelta.
    pub offset: i64,
    /// baseTimestamp + timestampDelta.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<HeaderView<'a>>,
}

impl RecordView<'_> {
    /// An owned copy, as a producer would have pushed it.
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers: self
                .headers
                .iter()
                .map(|header| Header { key: header.key.to_string(), value: header.value.map(Bytes::copy_from_slice) })
                .collect(),
            timestamp: self.timestamp,
        }
    }
}

/// Validates an uncompressed `batch` (as [`validate`] does) and returns an iterator over its
/// records, borrowed from `batch`. A compressed batch is refused with
/// [`BatchError::RecordsCompressed`]: its records live in a decompressed buffer, see [`decode`].
pub fn records(batch: &[u8]) -> Result<Records<'_>, BatchError> {
    let header = validate(batch)?;
    if header.compression() != 0 {
        return Err(BatchError::RecordsCompressed { codec: header.compression() });
    }
    Ok(Records { header, bytes: &batch[position::RECORDS..], pos: 0, record_index: 0, done: false })
}

/// A validated batch whose records are ready to read: borrowed from the batch when it is not
/// compressed, decompressed into a buffer of its own when it is. See [`decode`].
#[derive(Debug, Clone)]
pub struct DecodedBatch<'a> {
    header: BatchHeader,
    /// The (uncompressed) records region.
    region: Cow<'a, [u8]>,
}

impl DecodedBatch<'_> {
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The records, with the same guarantees as [`records`]: exactly the header's count of
    /// them, numbered consecutively, consuming the region to its last byte, or an error.
    pub fn records(&self) -> Records<'_> {
        Records { header: self.header, bytes: &self.region, pos: 0, record_index: 0, done: false }
    }
}

/// Validates `batch` and makes its records readable whatever its compression: the way consumers
/// read batches. Decompression is bounded by
/// [`RECORDS_DECOMPRESSED_BYTES_MAX`](super::RECORDS_DECOMPRESSED_BYTES_MAX).
pub fn decode(batch: &[u8]) -> Result<DecodedBatch<'_>, BatchError> {
    let header = validate(batch)?;
    let region = match decompress_records(batch, &header)? {
        None => Cow::Borrowed(&batch[position::RECORDS..]),
        Some(decompressed) => Cow::Owned(decompressed),
    };
    Ok(DecodedBatch { header, region })
}

/// Iterator over the records of one batch; see [`records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    header: BatchHeader,
    /// The records region: everything after the fixed header.
    bytes: &'a [u8],
    pos: usize,
    record_index: usize,
    done: bool,
}

impl Records<'_> {
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let record_count = self.header.record_count;
        if self.record_index == self.header.records_len() {
            self.done = true;
            let bytes_trailing = self.bytes.len() - self.pos;
            return (bytes_trailing > 0).then_some(Err(BatchError::TrailingBytes { record_count, bytes_trailing }));
        }
        if self.pos == self.bytes.len() {
            self.done = true;
            return Some(Err(BatchError::RecordsMissing { record_count, records_found: self.record_index }));
        }
        let mut cursor = Cursor { bytes: self.bytes, pos: self.pos, record_index: self.record_index };
        match read_record(&mut cursor, &self.header) {
            Ok(record) => {
                assert!(cursor.pos > self.pos && cursor.pos <= self.bytes.len());
                self.pos = cursor.pos;
                self.record_index += 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Reads one record at `cursor`, which it leaves just past the record.
fn read_record<'a>(cursor: &mut Cursor<'a>, header: &BatchHeader) -> Result<RecordView<'a>, BatchError> {
    let record_index = cursor.record_index;
    let record_length = cursor.length("length")?;
    // Everything else is read from the record's own bytes, so no field can spill into the next.
    let mut body = Cursor { bytes: cursor.take("length", record_length)?, pos: 0, record_index };

    let attributes = body.i8("attributes")?;
    if attributes != 0 {
        return Err(BatchError::RecordAttributesUnknown { record_index, attributes });
    }
    let timestamp_delta = body.varlong("timestampDelta")?;
    let offset_delta = body.varint("offsetDelta")?;
    if i64::from(offset_delta) != record_index as i64 {
        return Err(BatchError::OffsetDeltaMismatch { record_index, offset_delta });
    }
    let key = body.nullable("keyLength")?;
    let value = body.nullable("valueLength")?;
    let headers_count = body.length("headers count")?;
    if headers_count > RECORD_HEADERS_MAX {
        return Err(BatchError::HeadersTooMany { record_index, headers_count });
    }
    let mut headers = Vec::with_capacity(headers_count);
    for header_index in 0..headers_count {
        let key_length = body.length("headerKeyLength")?;
        let key = std::str::from_utf8(body.take("headerKey", key_length)?)
            .map_err(|_| BatchError::HeaderKeyNotUtf8 { record_index, header_index })?;
        let value = body.nullable("headerValueLength")?;
        headers.push(HeaderView { key, value });
    }
    if body.pos != body.bytes.len() {
        return Err(BatchError::RecordLengthMismatch { record_index, record_length, bytes_used: body.pos });
    }

    let timestamp = header.base_timestamp.checked_add(timestamp_delta).ok_or(BatchError::TimestampOverflow {
        record_index,
        base_timestamp: header.base_timestamp,
        timestamp_delta,
    })?;
    let timestamps_bounded = header.timestamp_type() == TimestampType::CreateTime && !header.has_delete_horizon();
    if timestamps_bounded && timestamp > header.timestamp_max {
        return Err(BatchError::TimestampAboveMax { record_index, timestamp, timestamp_max: header.timestamp_max });
    }
    // validate checked baseOffset + lastOffsetDelta, and offsetDelta <= lastOffsetDelta here.
    let offset = header.base_offset + i64::from(offset_delta);
    Ok(RecordView { offset, timestamp, key, value, headers })
}

/// A read position within one record (or the records region), naming the record in its errors.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    record_index: usize,
}

impl<'a> Cursor<'a> {
    fn varint_error(&self, field: &'static str, error: VarintError) -> BatchError {
        let record_index = self.record_index;
        match error {
            VarintError::Truncated => BatchError::VarintTruncated { record_index, field },
            VarintError::Overflow => BatchError::VarintOverflow { record_index, field },
        }
    }

    fn i8(&mut self, field: &'static str) -> Result<i8, BatchError> {
        let Some(&byte) = self.bytes.get(self.pos) else {
            return Err(BatchError::RecordTruncated { record_index: self.record_index, field });
        };
        self.pos += 1;
        Ok(byte as i8)
    }

    fn varint(&mut self, field: &'static str) -> Result<i32, BatchError> {
        read_varint(self.bytes, &mut self.pos).map_err(|error| self.varint_error(field, error))
    }

    fn varlong(&mut self, field: &'static str) -> Result<i64, BatchError> {
        read_varlong(self.bytes, &mut self.pos).map_err(|error| self.varint_error(field, error))
    }

    /// A length or count that cannot be null.
    fn length(&mut self, field: &'static str) -> Result<usize, BatchError> {
        let length = self.varint(field)?;
        usize::try_from(length).map_err(|_| BatchError::LengthNotNullable { record_index: self.record_index, field, length })
    }

    /// A length-prefixed byte string where length -1 means null.
    fn nullable(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, BatchError> {
        let length = self.varint(field)?;
        match length {
            -1 => Ok(None),
            ..=-2 => Err(BatchError::LengthNegative { record_index: self.record_index, field, length }),
            _ => self.take(field, length as usize).map(Some),
        }
    }

    fn take(&mut self, field: &'static str, length: usize) -> Result<&'a [u8], BatchError> {
        let bytes_remaining = self.bytes.len() - self.pos;
        if length > bytes_remaining {
            let length = i32::try_from(length).expect("lengths come from i32 varints");
            return Err(BatchError::LengthPastEnd { record_index: self.record_index, field, length, bytes_remaining });
        }
        let taken = &self.bytes[self.pos..self.pos + length];
        self.pos += length;
        Ok(taken)
    }
}
