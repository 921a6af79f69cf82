//! Building a batch: records are encoded into one buffer as they are pushed, behind a reserved
//! header that `build` fills in last (it needs the count, the timestamps and then the CRC).
//!
//! Invariant: `buf.len()` is at all times the exact size `build` would return, so a producer can
//! cap batches by bytes without encoding anything twice.

use bytes::{BufMut, Bytes, BytesMut};

use super::varint::{put_varint, put_varlong, uvarint_len, varint_len, varlong_len};
use super::{
    attributes, crc_compute, position, validate, BatchError, TimestampType, BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES,
    BATCH_RECORDS_MAX, MAGIC, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, RECORD_HEADERS_MAX,
};

/// A record header: a UTF-8 key (never null, per the spec's `headerKey: String`) and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record to append. `None` and an empty value are different things on the wire (length -1
/// versus 0) and stay different after a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch (CreateTime), as Kafka uses them.
    pub timestamp: i64,
}

/// Builds one RecordBatch v2, as a producer does for one partition.
///
/// The producer settings go in first; then records are pushed until [`push`](Self::push) says the
/// batch is full (the record is left with the caller, who builds this batch and starts another);
/// [`build`](Self::build) writes the header and the CRC. The result passes [`validate`] and
/// has baseOffset 0, which the broker replaces with [`set_base_offset`](super::set_base_offset).
///
/// ```
/// use bytes::Bytes;
/// use odradek_client::batch::{records, set_base_offset, validate, BatchBuilder, Header, Record};
///
/// let mut builder = BatchBuilder::new().producer(42, 0, 100);
/// builder.push(&Record {
///     key: Some(Bytes::from_static(b"user-1")),
///     value: Some(Bytes::from_static(b"clicked")),
///     headers: vec![Header { key: "trace".to_string(), value: None }],
///     timestamp: 1_700_000_000_000,
/// })?;
/// builder.push(&Record { key: None, value: Some(Bytes::from_static(b"")), headers: vec![], timestamp: 1_700_000_000_005 })?;
/// assert_eq!(builder.records_len(), 2);
/// let batch_bytes = builder.bytes_len();
///
/// let batch = builder.build();
/// assert_eq!(batch.len(), batch_bytes);
///
/// // The broker: validate, then assign offsets without touching the CRC.
/// let mut stored = batch.to_vec();
/// let header = validate(&stored)?;
/// assert_eq!((header.producer_id, header.base_sequence, header.records_count), (42, 100, 2));
/// set_base_offset(&mut stored, 1000);
/// validate(&stored)?;
///
/// // A consumer: decode the records, with absolute offsets and timestamps.
/// let offsets: Vec<i64> = records(&stored)?.map(|record| record.map(|r| r.offset)).collect::<Result<_, _>>()?;
/// assert_eq!(offsets, [1000, 1001]);
/// # Ok::<(), odradek_client::batch::BatchError>(())
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    /// Reserved header, then the encoded records.
    buf: BytesMut,
    bytes_max: usize,
    records_count: usize,
    /// The first record's timestamp; meaningful once a record is in.
    timestamp_base: i64,
    timestamp_max: i64,
    producer_id: i64,
    producer_epoch: i16,
    sequence_base: i32,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    /// An empty batch with no producer id (not idempotent), CreateTime, not transactional, not
    /// control, and a size cap of [`BATCH_BYTES_MAX`].
    pub fn new() -> BatchBuilder {
        let mut buf = BytesMut::new();
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            buf,
            bytes_max: BATCH_BYTES_MAX,
            records_count: 0,
            timestamp_base: 0,
            timestamp_max: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            sequence_base: NO_SEQUENCE,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
        }
    }

    /// The idempotent producer's identity and the sequence number of this batch's first record:
    /// the broker de-duplicates retries by (producer id, epoch, sequence).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, sequence_base: i32) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.sequence_base = sequence_base;
        self
    }

    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> BatchBuilder {
        self.timestamp_type = timestamp_type;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> BatchBuilder {
        self.transactional = transactional;
        self
    }

    pub fn control(mut self, control: bool) -> BatchBuilder {
        self.control = control;
        self
    }

    /// Caps the built batch at `bytes_max` bytes, header included: how a producer bounds its
    /// request size (Kafka's `batch.size`).
    ///
    /// # Panics
    /// If `bytes_max` is above [`BATCH_BYTES_MAX`] (the broker would refuse the batch) or too small
    /// for a header and one record, or if records were already pushed.
    pub fn bytes_max(mut self, bytes_max: usize) -> BatchBuilder {
        assert!(bytes_max <= BATCH_BYTES_MAX, "bytes_max {bytes_max} is above BATCH_BYTES_MAX {BATCH_BYTES_MAX}");
        assert!(bytes_max >= BATCH_HEADER_BYTES + super::RECORD_BYTES_MIN, "bytes_max {bytes_max} cannot hold a single record");
        assert_eq!(self.records_count, 0, "bytes_max is set before pushing records");
        self.bytes_max = bytes_max;
        self
    }

    pub fn records_len(&self) -> usize {
        self.records_count
    }

    pub fn is_empty(&self) -> bool {
        self.records_count == 0
    }

    /// Exact size in bytes of the batch [`build`](Self::build) would return now.
    pub fn bytes_len(&self) -> usize {
        self.buf.len()
    }

    /// Exact bytes `record` would add if it were pushed next (saturating at `usize::MAX`), so a
    /// producer can decide before pushing.
    pub fn record_bytes_len(&self, record: &Record) -> usize {
        let timestamp_delta = record.timestamp.checked_sub(self.timestamp_base_for(record)).unwrap_or(i64::MAX);
        record_bytes_len(record, timestamp_delta, self.offset_delta_next())
    }

    /// Appends `record`, or says why it cannot and leaves the batch unchanged. [`BatchError::RecordsFull`]
    /// and [`BatchError::BytesFull`] mean "build this batch and push the record into a new one";
    /// [`BatchError::RecordTooLarge`] means no batch can ever hold it. The record is borrowed so
    /// that it stays with the caller in either case.
    pub fn push(&mut self, record: &Record) -> Result<(), BatchError> {
        if record.headers.len() > RECORD_HEADERS_MAX {
            return Err(BatchError::RecordHeadersTooMany { headers_count: record.headers.len() });
        }
        let timestamp_base = self.timestamp_base_for(record);
        let Some(timestamp_delta) = record.timestamp.checked_sub(timestamp_base) else {
            return Err(BatchError::TimestampDeltaOverflow { timestamp: record.timestamp, base_timestamp: timestamp_base });
        };
        let offset_delta = self.offset_delta_next();
        let record_bytes = record_bytes_len(record, timestamp_delta, offset_delta);
        if record_bytes > self.bytes_max - BATCH_HEADER_BYTES {
            return Err(BatchError::RecordTooLarge { record_bytes, bytes_max: self.bytes_max });
        }
        if self.records_count == BATCH_RECORDS_MAX {
            return Err(BatchError::RecordsFull);
        }
        let batch_bytes = self.buf.len() + record_bytes;
        if batch_bytes > self.bytes_max {
            return Err(BatchError::BytesFull { record_bytes, batch_bytes, bytes_max: self.bytes_max });
        }

        let bytes_before = self.buf.len();
        put_record(&mut self.buf, record, timestamp_delta, offset_delta, record_bytes);
        assert_eq!(self.buf.len(), bytes_before + record_bytes, "record_bytes_len agrees with the encoder");
        if self.records_count == 0 {
            self.timestamp_base = record.timestamp;
            self.timestamp_max = record.timestamp;
        }
        self.timestamp_max = self.timestamp_max.max(record.timestamp);
        self.records_count += 1;
        Ok(())
    }

    /// Writes the header and the CRC and returns the batch.
    ///
    /// # Panics
    /// On an empty builder: a batch holds at least one record (check [`is_empty`](Self::is_empty)).
    pub fn build(self) -> Bytes {
        assert!(self.records_count > 0, "BatchBuilder::build on an empty batch; a batch holds at least one record");
        let attributes = self.attributes();
        let mut buf = self.buf;
        let batch_length = i32::try_from(buf.len() - BATCH_LOG_OVERHEAD_BYTES).expect("bytes_max keeps the batch within an i32");
        let records_count = i32::try_from(self.records_count).expect("BATCH_RECORDS_MAX fits in an i32");

        let mut header = &mut buf[..BATCH_HEADER_BYTES];
        header.put_i64(0); // baseOffset: assigned by the broker.
        header.put_i32(batch_length);
        header.put_i32(NO_PARTITION_LEADER_EPOCH);
        header.put_i8(MAGIC);
        header.put_u32(0); // crc: computed below, over the bytes that follow it.
        header.put_i16(attributes);
        header.put_i32(records_count - 1); // lastOffsetDelta
        header.put_i64(self.timestamp_base);
        header.put_i64(self.timestamp_max);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.sequence_base);
        header.put_i32(records_count);
        assert!(header.is_empty(), "the header fields fill BATCH_HEADER_BYTES exactly");

        let crc = crc_compute(&buf);
        buf[position::CRC..position::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
        let batch = buf.freeze();
        // A second CRC pass: kept to debug builds, as encoding is on the producer's hot path.
        debug_assert_eq!(validate(&batch).map(|header| header.records_len()), Ok(self.records_count));
        batch
    }

    fn attributes(&self) -> i16 {
        let mut bits = 0; // compression: none
        if self.timestamp_type == TimestampType::LogAppendTime {
            bits |= attributes::TIMESTAMP_TYPE;
        }
        if self.transactional {
            bits |= attributes::TRANSACTIONAL;
        }
        if self.control {
            bits |= attributes::CONTROL;
        }
        bits
    }

    /// The base timestamp the batch has, or would have if `record` were its first.
    fn timestamp_base_for(&self, record: &Record) -> i64 {
        if self.records_count == 0 {
            record.timestamp
        } else {
            self.timestamp_base
        }
    }

    fn offset_delta_next(&self) -> i32 {
        i32::try_from(self.records_count).expect("BATCH_RECORDS_MAX fits in an i32")
    }
}

/// Encoded size of a length-prefixed field of `len` bytes (or null).
fn nullable_bytes_len(len: Option<usize>) -> usize {
    match len {
        None => varint_len(-1),
        Some(len) => length_prefix_len(len).saturating_add(len),
    }
}

/// Size of the varint holding a non-negative length, without narrowing it first: zigzag of a
/// non-negative n is 2n, whatever the width.
fn length_prefix_len(len: usize) -> usize {
    uvarint_len((len as u64).saturating_mul(2))
}

/// Bytes after the record's length prefix.
fn record_body_bytes_len(record: &Record, timestamp_delta: i64, offset_delta: i32) -> usize {
    let headers_bytes = record.headers.iter().fold(length_prefix_len(record.headers.len()), |sum, header| {
        sum.saturating_add(nullable_bytes_len(Some(header.key.len())))
            .saturating_add(nullable_bytes_len(header.value.as_ref().map(Bytes::len)))
    });
    (1 + varlong_len(timestamp_delta) + varint_len(offset_delta))
        .saturating_add(nullable_bytes_len(record.key.as_ref().map(Bytes::len)))
        .saturating_add(nullable_bytes_len(record.value.as_ref().map(Bytes::len)))
        .saturating_add(headers_bytes)
}

/// The record's whole encoded size, length prefix included.
fn record_bytes_len(record: &Record, timestamp_delta: i64, offset_delta: i32) -> usize {
    let body_bytes = record_body_bytes_len(record, timestamp_delta, offset_delta);
    length_prefix_len(body_bytes).saturating_add(body_bytes)
}

/// Encodes one record. The caller has checked that `record_bytes` is within the batch limit, so
/// every length fits in an `i32`.
fn put_record(buf: &mut BytesMut, record: &Record, timestamp_delta: i64, offset_delta: i32, record_bytes: usize) {
    assert!(record_bytes <= BATCH_BYTES_MAX);
    let body_bytes = record_body_bytes_len(record, timestamp_delta, offset_delta);
    put_length(buf, body_bytes);
    buf.put_i8(0); // record attributes: unused in v2
    put_varlong(buf, timestamp_delta);
    put_varint(buf, offset_delta);
    put_nullable(buf, record.key.as_deref());
    put_nullable(buf, record.value.as_deref());
    put_length(buf, record.headers.len());
    for header in &record.headers {
        put_length(buf, header.key.len());
        buf.put_slice(header.key.as_bytes());
        put_nullable(buf, header.value.as_deref());
    }
}

fn put_length(buf: &mut BytesMut, len: usize) {
    put_varint(buf, i32::try_from(len).expect("lengths within BATCH_BYTES_MAX fit in an i32"));
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(bytes) => {
            put_length(buf, bytes.len());
            buf.put_slice(bytes);
        }
    }
}
