//! Property tests for the record-batch codec: arbitrary records round-trip; the broker's offset
//! rewrite keeps batches valid; every single-bit flip and every truncation is caught by
//! `validate`; and no input, random or crafted behind a valid CRC, makes the reader panic.

use std::sync::OnceLock;

use bytes::Bytes;
use odradek_client::batch::{
    position, records, set_base_offset, validate, BatchBuilder, BatchError, Header, Record, TimestampType, BATCH_HEADER_BYTES,
    BATCH_LOG_OVERHEAD_BYTES, BATCH_RECORDS_MAX,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Timestamps within ±2^41 ms (about ±70 years) of the epoch: deltas of either sign, always
/// representable.
const TIMESTAMP_ABS_MAX: i64 = 1 << 41;
/// Largest base offset a proptest picks: leaves room for a full batch's offsets.
const OFFSET_BASE_MAX: i64 = i64::MAX - BATCH_RECORDS_MAX as i64;

fn bytes_nullable() -> impl Strategy<Value = Option<Bytes>> {
    // Null, empty and binary (any byte values) all occur.
    option::of(vec(any::<u8>(), 0..40).prop_map(Bytes::from))
}

fn header() -> impl Strategy<Value = Header> {
    ("\\PC{0,8}", bytes_nullable()).prop_map(|(key, value)| Header { key, value })
}

fn record() -> impl Strategy<Value = Record> {
    (bytes_nullable(), bytes_nullable(), vec(header(), 0..4), -TIMESTAMP_ABS_MAX..TIMESTAMP_ABS_MAX)
        .prop_map(|(key, value, headers, timestamp)| Record { key, value, headers, timestamp })
}

#[derive(Debug, Clone)]
struct Settings {
    producer_id: i64,
    producer_epoch: i16,
    sequence_base: i32,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
}

fn settings() -> impl Strategy<Value = Settings> {
    (any::<i64>(), any::<i16>(), any::<i32>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(producer_id, producer_epoch, sequence_base, log_append_time, transactional, control)| Settings {
            producer_id,
            producer_epoch,
            sequence_base,
            timestamp_type: if log_append_time { TimestampType::LogAppendTime } else { TimestampType::CreateTime },
            transactional,
            control,
        },
    )
}

fn build(settings: &Settings, records: &[Record]) -> Bytes {
    let mut builder = BatchBuilder::new()
        .producer(settings.producer_id, settings.producer_epoch, settings.sequence_base)
        .timestamp_type(settings.timestamp_type)
        .transactional(settings.transactional)
        .control(settings.control);
    for record in records {
        builder.push(record).expect("proptest records fit in one batch");
    }
    builder.build()
}

/// Decodes every record, failing on the first error.
fn decode(batch: &[u8]) -> Result<Vec<(i64, Record)>, BatchError> {
    records(batch)?.map(|view| view.map(|view| (view.offset, view.to_record()))).collect()
}

fn recrc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[position::ATTRIBUTES..]);
    batch[position::CRC..position::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
}

fn small_batch() -> Vec<u8> {
    let records = [
        Record { key: Some(Bytes::from_static(b"key")), value: None, headers: vec![], timestamp: 10 },
        Record {
            key: None,
            value: Some(Bytes::from_static(b"value")),
            headers: vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"1")) }],
            timestamp: 7,
        },
    ];
    let settings = Settings {
        producer_id: 5,
        producer_epoch: 2,
        sequence_base: 40,
        timestamp_type: TimestampType::CreateTime,
        transactional: false,
        control: false,
    };
    build(&settings, &records).to_vec()
}

/// About 200 KiB: 2000 records with keys, 100-byte values and a header, built once.
fn big_batch() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut builder = BatchBuilder::new().producer(9, 0, 0);
        for index in 0..2000u32 {
            let record = Record {
                key: Some(Bytes::from(index.to_be_bytes().to_vec())),
                value: Some(Bytes::from(vec![index as u8; 100])),
                headers: vec![Header { key: "index".into(), value: Some(Bytes::from(index.to_string())) }],
                timestamp: 1_700_000_000_000 + i64::from(index % 7) - 3,
            };
            builder.push(&record).unwrap();
        }
        builder.build().to_vec()
    })
}

fn assert_flip_rejected(batch: &[u8], bit: usize) {
    let mut flipped = batch.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    match validate(&flipped) {
        Err(BatchError::CrcMismatch { .. }) => {}
        other => panic!("flipping bit {bit} (byte {}) gave {other:?}, expected a CRC mismatch", bit / 8),
    }
}

#[test]
fn every_bit_flip_in_the_crc_field_and_covered_region_is_rejected_small() {
    let batch = small_batch();
    validate(&batch).unwrap();
    for bit in position::CRC * 8..batch.len() * 8 {
        assert_flip_rejected(&batch, bit);
    }
}

#[test]
fn every_bit_flip_in_batch_length_or_magic_is_rejected() {
    let batch = small_batch();
    for bit in (position::BATCH_LENGTH * 8..position::PARTITION_LEADER_EPOCH * 8).chain(position::MAGIC * 8..position::CRC * 8) {
        let mut flipped = batch.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(validate(&flipped).is_err(), "flipping bit {bit} was accepted");
    }
}

#[test]
fn base_offset_and_leader_epoch_are_outside_the_crc_by_design() {
    // The broker rewrites them without re-hashing; only a negative base offset is refused.
    let batch = small_batch();
    for bit in (0..position::BATCH_LENGTH * 8).chain(position::PARTITION_LEADER_EPOCH * 8..position::MAGIC * 8) {
        let mut flipped = batch.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let sign_bit_of_base_offset = bit == 7;
        assert_eq!(validate(&flipped).is_err(), sign_bit_of_base_offset, "bit {bit}");
    }
}

#[test]
fn every_truncation_is_rejected_small() {
    let batch = small_batch();
    for len in 0..batch.len() {
        assert!(validate(&batch[..len]).is_err(), "a {len}-byte prefix was accepted");
        assert!(records(&batch[..len]).is_err(), "records() accepted a {len}-byte prefix");
    }
    for extra in [&[0u8][..], &[0, 0, 0, 0, 0, 0, 0]] {
        assert!(validate(&[&batch[..], extra].concat()).is_err(), "appending {extra:?} was accepted");
    }
}

proptest! {
    #[test]
    fn records_round_trip(records in vec(record(), 1..16), settings in settings(), offset_base in 0..OFFSET_BASE_MAX) {
        let batch = build(&settings, &records);
        let mut stored = batch.to_vec();
        set_base_offset(&mut stored, offset_base);
        let header = validate(&stored).unwrap();
        prop_assert_eq!(header.records_len(), records.len());
        prop_assert_eq!(header.bytes_len(), batch.len());
        prop_assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence),
            (settings.producer_id, settings.producer_epoch, settings.sequence_base));
        prop_assert_eq!(header.timestamp_type(), settings.timestamp_type);
        prop_assert_eq!((header.is_transactional(), header.is_control()), (settings.transactional, settings.control));
        prop_assert_eq!(header.base_timestamp, records[0].timestamp);
        prop_assert_eq!(header.max_timestamp, records.iter().map(|record| record.timestamp).max().unwrap());
        prop_assert_eq!(header.offset_last(), offset_base + records.len() as i64 - 1);

        let decoded = decode(&stored).unwrap();
        let expected: Vec<(i64, Record)> = records.iter().cloned().enumerate().map(|(index, record)| (offset_base + index as i64, record)).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn set_base_offset_keeps_validation_passing(records in vec(record(), 1..4), offsets in vec(0..OFFSET_BASE_MAX, 1..4)) {
        let settings = Settings { producer_id: 1, producer_epoch: 0, sequence_base: 0, timestamp_type: TimestampType::CreateTime, transactional: false, control: false };
        let batch = build(&settings, &records);
        let crc = validate(&batch).unwrap().crc;
        let mut stored = batch.to_vec();
        for offset_base in offsets {
            set_base_offset(&mut stored, offset_base);
            let header = validate(&stored).unwrap();
            prop_assert_eq!((header.base_offset, header.crc), (offset_base, crc));
            prop_assert_eq!(&stored[position::BATCH_LENGTH..], &batch[position::BATCH_LENGTH..]);
        }
    }

    #[test]
    fn bit_flips_in_a_big_batch_are_rejected(bit_sampled in any::<prop::sample::Index>()) {
        let batch = big_batch();
        let bits_covered = (batch.len() - position::CRC) * 8;
        assert_flip_rejected(batch, position::CRC * 8 + bit_sampled.index(bits_covered));
    }

    #[test]
    fn truncations_of_a_big_batch_are_rejected(len_sampled in any::<prop::sample::Index>()) {
        let batch = big_batch();
        let len = len_sampled.index(batch.len());
        prop_assert!(validate(&batch[..len]).is_err());
    }

    #[test]
    fn validate_never_panics_on_random_bytes(bytes in vec(any::<u8>(), 0..300)) {
        if validate(&bytes).is_ok() {
            let _ = decode(&bytes);
        }
    }

    /// Random records behind a header that is right in every respect, CRC included: the reader
    /// must reject or accept without panicking, and never yield more records than the count.
    #[test]
    fn records_never_panics_behind_a_valid_header(records_count in 1..8i32, region in vec(any::<u8>(), 0..200), base_timestamp in any::<i64>()) {
        let mut batch = small_batch()[..BATCH_HEADER_BYTES].to_vec();
        batch.extend_from_slice(&region);
        let batch_length = (batch.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
        batch[position::BATCH_LENGTH..position::PARTITION_LEADER_EPOCH].copy_from_slice(&batch_length.to_be_bytes());
        batch[position::RECORDS_COUNT..position::RECORDS].copy_from_slice(&records_count.to_be_bytes());
        batch[position::LAST_OFFSET_DELTA..position::BASE_TIMESTAMP].copy_from_slice(&(records_count - 1).to_be_bytes());
        batch[position::BASE_TIMESTAMP..position::MAX_TIMESTAMP].copy_from_slice(&base_timestamp.to_be_bytes());
        batch[position::MAX_TIMESTAMP..position::PRODUCER_ID].copy_from_slice(&i64::MAX.to_be_bytes());
        recrc(&mut batch);
        if let Ok(items) = records(&batch) {
            let items: Vec<_> = items.collect();
            let oks = items.iter().filter(|item| item.is_ok()).count();
            prop_assert!(oks <= records_count as usize);
            prop_assert!(items.iter().take(oks).all(Result::is_ok), "errors come last");
            prop_assert!(items.len() <= oks + 1, "at most one error, then the iterator ends");
        }
    }

    /// A corrupted record byte with the CRC recomputed over it (a buggy writer, not a bad disk):
    /// decoding fails cleanly or yields exactly the declared number of records.
    #[test]
    fn corrupt_records_with_a_recomputed_crc_never_panic(records in vec(record(), 1..6), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let settings = Settings { producer_id: 1, producer_epoch: 0, sequence_base: 0, timestamp_type: TimestampType::CreateTime, transactional: false, control: false };
        let mut batch = build(&settings, &records).to_vec();
        let at = position::RECORDS + at.index(batch.len() - position::RECORDS);
        batch[at] = byte;
        recrc(&mut batch);
        if let Ok(decoded) = decode(&batch) {
            prop_assert_eq!(decoded.len(), records.len());
        }
    }
}
