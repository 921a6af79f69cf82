//! Unit tests: each header field, each error, a hand-checked tiny batch, and the builder's limits.

use bytes::Bytes;

use super::*;

/// Bit-at-a-time CRC-32C straight from the definition (reflected polynomial 0x82F63B78, initial
/// value and final XOR 0xFFFFFFFF): an oracle independent of the `crc32c` crate.
fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>, timestamp: i64) -> Record {
    Record { key: key.map(Bytes::from_static), value: value.map(Bytes::from_static), headers: vec![], timestamp }
}

/// One record, key "k", value "v", timestamp 1000, producer 7 epoch 1 sequence 0.
fn tiny_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new().producer(7, 1, 0);
    builder.push(&record(Some(b"k"), Some(b"v"), 1000)).unwrap();
    builder.build().to_vec()
}

fn put_at(batch: &mut [u8], at: usize, bytes: &[u8]) {
    batch[at..at + bytes.len()].copy_from_slice(bytes);
}

fn recrc(batch: &mut [u8]) {
    let crc = crc32c_bitwise(&batch[position::ATTRIBUTES..]);
    put_at(batch, position::CRC, &crc.to_be_bytes());
}

/// The tiny batch's header with `region` as its records, `record_count` records, consistent
/// lengths and a valid CRC: for records that are malformed beneath a correct header.
fn with_records_region(record_count: i32, region: &[u8]) -> Vec<u8> {
    let mut batch = tiny_batch()[..BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(region);
    let batch_length = (batch.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    put_at(&mut batch, position::BATCH_LENGTH, &batch_length.to_be_bytes());
    put_at(&mut batch, position::RECORDS_COUNT, &record_count.to_be_bytes());
    put_at(&mut batch, position::LAST_OFFSET_DELTA, &(record_count - 1).to_be_bytes());
    recrc(&mut batch);
    batch
}

/// The first record's error (or success) in a crafted batch.
fn first_record(batch: &[u8]) -> Result<RecordView<'_>, BatchError> {
    records(batch)?.next().expect("a batch yields at least one item")
}

/// A record whose body is `body`, prefixed with its correct length.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut region = vec![(body.len() as u8) * 2];
    assert!(body.len() < 64, "one-byte length prefix");
    region.extend_from_slice(body);
    region
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    // The CRC-32C catalogue's check value: the CRC of the ASCII digits "123456789".
    assert_eq!(crc32c_bitwise(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn tiny_batch_bytes_field_by_field() {
    #[rustfmt::skip]
    let mut expected: Vec<u8> = vec![
        0, 0, 0, 0, 0, 0, 0, 0,         // baseOffset 0 (the broker assigns it)
        0, 0, 0, 58,                    // batchLength: 70 bytes - 12
        0xff, 0xff, 0xff, 0xff,         // partitionLeaderEpoch -1
        2,                              // magic
        0, 0, 0, 0,                     // crc, filled in below
        0, 0,                           // attributes: no compression, CreateTime, plain
        0, 0, 0, 0,                     // lastOffsetDelta 0
        0, 0, 0, 0, 0, 0, 0x03, 0xe8,   // baseTimestamp 1000
        0, 0, 0, 0, 0, 0, 0x03, 0xe8,   // maxTimestamp 1000
        0, 0, 0, 0, 0, 0, 0, 7,         // producerId 7
        0, 1,                           // producerEpoch 1
        0, 0, 0, 0,                     // baseSequence 0
        0, 0, 0, 1,                     // records count 1
        0x10,                           // record length 8 (zigzag 16)
        0,                              // record attributes
        0,                              // timestampDelta 0
        0,                              // offsetDelta 0
        0x02, b'k',                     // keyLength 1, key
        0x02, b'v',                     // valueLength 1, value
        0,                              // headers count 0
    ];
    let crc = crc32c_bitwise(&expected[position::ATTRIBUTES..]);
    // Pinned so that a change in either the oracle or the layout shows up here.
    assert_eq!(crc, 0x23C8_EE7D, "CRC-32C of attributes..end is {crc:#010x}");
    put_at(&mut expected, position::CRC, &crc.to_be_bytes());

    let batch = tiny_batch();
    assert_eq!(batch, expected);
    let header = validate(&batch).unwrap();
    assert_eq!(header.crc, crc);
    let decoded: Vec<_> = records(&batch).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(decoded, [RecordView { offset: 0, timestamp: 1000, key: Some(&b"k"[..]), value: Some(&b"v"[..]), headers: vec![] }]);
}

#[test]
fn header_fields_are_written_and_parsed_at_their_positions() {
    let mut builder = BatchBuilder::new()
        .producer(0x0102_0304_0506_0708, 0x0a0b, 0x1112_1314)
        .timestamp_type(TimestampType::LogAppendTime)
        .transactional(true)
        .control(true);
    for timestamp in [5_000, 3_000, 9_000] {
        builder.push(&record(None, Some(b"x"), timestamp)).unwrap();
    }
    let mut batch = builder.build().to_vec();
    set_base_offset(&mut batch, 0x2122_2324_2526_2728);
    let header = BatchHeader::parse(&batch).unwrap();
    assert_eq!(
        header,
        BatchHeader {
            base_offset: 0x2122_2324_2526_2728,
            batch_length: (batch.len() - BATCH_LOG_OVERHEAD_BYTES) as i32,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            magic: 2,
            crc: crc32c_bitwise(&batch[position::ATTRIBUTES..]),
            attributes: 0x08 | 0x10 | 0x20,
            last_offset_delta: 2,
            base_timestamp: 5_000,
            timestamp_max: 9_000,
            producer_id: 0x0102_0304_0506_0708,
            producer_epoch: 0x0a0b,
            base_sequence: 0x1112_1314,
            record_count: 3,
        }
    );
    let at = |position: usize, len: usize| batch[position..position + len].to_vec();
    assert_eq!(at(position::BASE_OFFSET, 8), 0x2122_2324_2526_2728i64.to_be_bytes());
    assert_eq!(at(position::PARTITION_LEADER_EPOCH, 4), (-1i32).to_be_bytes());
    assert_eq!(at(position::MAGIC, 1), [2]);
    assert_eq!(at(position::ATTRIBUTES, 2), [0x00, 0x38]);
    assert_eq!(at(position::LAST_OFFSET_DELTA, 4), 2i32.to_be_bytes());
    assert_eq!(at(position::BASE_TIMESTAMP, 8), 5_000i64.to_be_bytes());
    assert_eq!(at(position::MAX_TIMESTAMP, 8), 9_000i64.to_be_bytes());
    assert_eq!(at(position::PRODUCER_ID, 8), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(at(position::PRODUCER_EPOCH, 2), [0x0a, 0x0b]);
    assert_eq!(at(position::BASE_SEQUENCE, 4), [0x11, 0x12, 0x13, 0x14]);
    assert_eq!(at(position::RECORDS_COUNT, 4), 3i32.to_be_bytes());
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert!(header.is_transactional() && header.is_control() && !header.has_delete_horizon());
    assert_eq!(header.compression(), 0);
    assert_eq!(header.offset_last(), 0x2122_2324_2526_2728 + 2);
    assert_eq!((header.records_len(), header.bytes_len()), (3, batch.len()));

    // Timestamps are deltas from the first record's, negative ones included.
    let views: Vec<_> = records(&batch).unwrap().collect::<Result<_, _>>().unwrap();
    let timestamps: Vec<i64> = views.iter().map(|view| view.timestamp).collect();
    assert_eq!(timestamps, [5_000, 3_000, 9_000]);
    let offsets: Vec<i64> = views.iter().map(|view| view.offset).collect();
    assert_eq!(offsets, [0x2122_2324_2526_2728, 0x2122_2324_2526_2729, 0x2122_2324_2526_272a]);
}

#[test]
fn builder_defaults_say_no_producer_and_create_time() {
    let header = validate(&tiny_batch()).unwrap();
    let header_default = {
        let mut builder = BatchBuilder::default();
        builder.push(&record(None, None, -5)).unwrap();
        validate(&builder.build()).unwrap()
    };
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    assert!(!header.is_transactional() && !header.is_control());
    assert_eq!((header_default.producer_id, header_default.producer_epoch, header_default.base_sequence), (-1, -1, -1));
    assert_eq!((header_default.base_timestamp, header_default.timestamp_max), (-5, -5));
}

#[test]
fn header_errors_name_the_field() {
    let tiny = tiny_batch();

    assert_eq!(validate(&tiny[..60]), Err(BatchError::Truncated { what: "batch header", bytes_needed: 61, bytes_available: 60 }));

    let mut batch = tiny.clone();
    batch[position::MAGIC] = 1;
    assert_eq!(validate(&batch), Err(BatchError::MagicUnsupported { magic: 1 }));

    let mut batch = tiny.clone();
    put_at(&mut batch, position::BATCH_LENGTH, &48i32.to_be_bytes());
    assert_eq!(validate(&batch), Err(BatchError::BatchLengthTooSmall { batch_length: 48 }));
    put_at(&mut batch, position::BATCH_LENGTH, &(-1i32).to_be_bytes());
    assert_eq!(validate(&batch), Err(BatchError::BatchLengthTooSmall { batch_length: -1 }));
    put_at(&mut batch, position::BATCH_LENGTH, &((BATCH_BYTES_MAX - 11) as i32).to_be_bytes());
    assert_eq!(validate(&batch), Err(BatchError::BatchTooLarge { batch_bytes: BATCH_BYTES_MAX + 1, bytes_max: BATCH_BYTES_MAX }));

    let mut batch = tiny.clone();
    batch.push(0);
    assert_eq!(validate(&batch), Err(BatchError::BatchLengthMismatch { batch_bytes: 70, buffer_bytes: 71 }));

    let mut batch = tiny.clone();
    *batch.last_mut().unwrap() ^= 1;
    let crc_stored = u32::from_be_bytes(tiny[17..21].try_into().unwrap());
    assert_eq!(validate(&batch), Err(BatchError::CrcMismatch { crc_stored, crc_computed: crc32c_bitwise(&batch[position::ATTRIBUTES..]) }));
}

#[test]
fn header_field_errors_behind_a_valid_crc() {
    let tiny = tiny_batch();
    let check = |at: usize, bytes: &[u8], expected: BatchError| {
        let mut batch = tiny.clone();
        put_at(&mut batch, at, bytes);
        recrc(&mut batch);
        assert_eq!(validate(&batch), Err(expected.clone()), "writing {bytes:?} at {at}");
        assert_eq!(records(&batch).err(), Some(expected));
    };
    for codec in 5..=7u8 {
        check(position::ATTRIBUTES, &i16::from(codec).to_be_bytes(), BatchError::CompressionUnsupported { codec });
    }
    // A defined codec passes the header checks; the records (plain bytes, not that codec's
    // format) are refused once decompressed, and `records` refuses to read them raw.
    for codec in 1..=4u8 {
        let mut batch = tiny.clone();
        put_at(&mut batch, position::ATTRIBUTES, &i16::from(codec).to_be_bytes());
        recrc(&mut batch);
        assert_eq!(validate(&batch).map(|header| header.compression()), Ok(codec));
        assert_eq!(records(&batch).err(), Some(BatchError::RecordsCompressed { codec }));
        assert!(super::validate_for_append(&batch).is_err(), "codec {codec} over plain records must not validate");
    }
    check(position::ATTRIBUTES, &0x0080i16.to_be_bytes(), BatchError::AttributesUnknown { attributes: 0x80 });
    check(position::ATTRIBUTES, &(-0x8000i16).to_be_bytes(), BatchError::AttributesUnknown { attributes: -0x8000 });
    check(position::RECORDS_COUNT, &0i32.to_be_bytes(), BatchError::RecordsCountInvalid { record_count: 0 });
    check(position::RECORDS_COUNT, &(-3i32).to_be_bytes(), BatchError::RecordsCountInvalid { record_count: -3 });
    let over = BATCH_RECORDS_MAX as i32 + 1;
    check(position::RECORDS_COUNT, &over.to_be_bytes(), BatchError::RecordsCountInvalid { record_count: over });
    check(position::RECORDS_COUNT, &2i32.to_be_bytes(), BatchError::RecordsCountImplausible { record_count: 2, records_bytes: 9 });
    check(position::LAST_OFFSET_DELTA, &5i32.to_be_bytes(), BatchError::LastOffsetDeltaMismatch { last_offset_delta: 5, record_count: 1 });
    check(position::MAX_TIMESTAMP, &999i64.to_be_bytes(), BatchError::MaxTimestampBeforeBase { base_timestamp: 1000, timestamp_max: 999 });
    check(position::BASE_OFFSET, &(-1i64).to_be_bytes(), BatchError::BaseOffsetInvalid { base_offset: -1 });

    // LogAppendTime and a delete horizon lift the maxTimestamp >= baseTimestamp rule.
    for attributes in [attributes::TIMESTAMP_TYPE, attributes::DELETE_HORIZON] {
        let mut batch = tiny.clone();
        put_at(&mut batch, position::MAX_TIMESTAMP, &999i64.to_be_bytes());
        put_at(&mut batch, position::ATTRIBUTES, &attributes.to_be_bytes());
        recrc(&mut batch);
        validate(&batch).unwrap();
    }
}

#[test]
fn base_offset_must_leave_room_for_the_last_offset() {
    let mut builder = BatchBuilder::new();
    builder.push(&record(None, None, 0)).unwrap();
    builder.push(&record(None, None, 0)).unwrap();
    let mut batch = builder.build().to_vec();
    put_at(&mut batch, position::BASE_OFFSET, &i64::MAX.to_be_bytes());
    assert_eq!(validate(&batch), Err(BatchError::BaseOffsetInvalid { base_offset: i64::MAX }));
    set_base_offset(&mut batch, i64::MAX - 1);
    assert_eq!(validate(&batch).unwrap().offset_last(), i64::MAX);
}

#[test]
fn set_base_offset_leaves_the_crc_and_every_other_byte_alone() {
    let tiny = tiny_batch();
    let mut batch = tiny.clone();
    set_base_offset(&mut batch, 123_456_789);
    assert_eq!(batch[8..], tiny[8..]);
    let header = validate(&batch).unwrap();
    assert_eq!((header.base_offset, header.crc), (123_456_789, validate(&tiny).unwrap().crc));
    assert_eq!(first_record(&batch).unwrap().offset, 123_456_789);
}

#[test]
#[should_panic(expected = "offsets are never negative")]
fn set_base_offset_refuses_a_negative_offset() {
    set_base_offset(&mut tiny_batch(), -1);
}

#[test]
fn batch_bytes_len_splits_concatenated_batches() {
    let mut builder = BatchBuilder::new();
    builder.push(&record(Some(b"a longer key"), None, 1)).unwrap();
    let second = builder.build();
    let mut buffer = tiny_batch();
    buffer.extend_from_slice(&second);
    let first_bytes = batch_bytes_len(&buffer).unwrap();
    assert_eq!(first_bytes, 70);
    assert_eq!(batch_bytes_len(&buffer[first_bytes..]).unwrap(), second.len());
    validate(&buffer[..first_bytes]).unwrap();
    validate(&buffer[first_bytes..]).unwrap();
    assert_eq!(
        batch_bytes_len(&buffer[..16]),
        Err(BatchError::Truncated { what: "batchLength and magic", bytes_needed: 17, bytes_available: 16 })
    );
}

#[test]
fn record_errors_behind_a_valid_header() {
    let record_error = |region: &[u8]| first_record(&with_records_region(1, region)).unwrap_err();
    let base = [0u8, 0, 0]; // attributes, timestampDelta 0, offsetDelta 0
    let body = |rest: &[u8]| [&base[..], rest].concat();

    // Sanity: the crafted well-formed record decodes.
    let good = framed(&body(&[0x02, b'k', 0x01, 0x00]));
    assert_eq!(first_record(&with_records_region(1, &good)).unwrap().key, Some(&b"k"[..]));

    assert_eq!(record_error(&[0x01, 0, 0, 0, 0, 0, 0, 0]), BatchError::LengthNotNullable { record_index: 0, field: "length", length: -1 });
    assert_eq!(
        record_error(&[0x7e, 0, 0, 0, 0, 0, 0, 0]),
        BatchError::LengthPastEnd { record_index: 0, field: "length", length: 63, bytes_remaining: 7 }
    );
    assert_eq!(
        record_error(&framed(&body(&[0x03, 0x01, 0x00]))),
        BatchError::LengthNegative { record_index: 0, field: "keyLength", length: -2 }
    );
    assert_eq!(
        record_error(&framed(&body(&[0x01, 0x05, 0x00]))),
        BatchError::LengthNegative { record_index: 0, field: "valueLength", length: -3 }
    );
    assert_eq!(
        record_error(&framed(&body(&[0xc8, 0x01, 0x01, 0x00]))),
        BatchError::LengthPastEnd { record_index: 0, field: "keyLength", length: 100, bytes_remaining: 2 }
    );
    assert_eq!(
        record_error(&framed(&body(&[0x01, 0x01, 0x00, 0x00]))),
        BatchError::RecordLengthMismatch { record_index: 0, record_length: 7, bytes_used: 6 }
    );
    assert_eq!(
        record_error(&framed(&[0x04, 0, 0, 0x01, 0x01, 0x00])),
        BatchError::RecordAttributesUnknown { record_index: 0, attributes: 4 }
    );
    assert_eq!(
        record_error(&framed(&[0, 0, 0x02, 0x01, 0x01, 0x00])),
        BatchError::OffsetDeltaMismatch { record_index: 0, offset_delta: 1 }
    );
    assert_eq!(
        record_error(&framed(&[0, 0x02, 0, 0x01, 0x01, 0x00])),
        BatchError::TimestampAboveMax { record_index: 0, timestamp: 1001, timestamp_max: 1000 }
    );
    let mut overlong = vec![0u8];
    overlong.extend_from_slice(&[0x80; 10]);
    overlong.extend_from_slice(&[0x00, 0, 0x01, 0x01, 0x00]);
    assert_eq!(record_error(&framed(&overlong)), BatchError::VarintOverflow { record_index: 0, field: "timestampDelta" });
    assert_eq!(record_error(&[0x04, 0x00, 0x80, 0, 0, 0, 0]), BatchError::VarintTruncated { record_index: 0, field: "timestampDelta" });
    assert_eq!(record_error(&[0x00, 0, 0, 0, 0, 0, 0]), BatchError::RecordTruncated { record_index: 0, field: "attributes" });
    assert_eq!(
        record_error(&framed(&body(&[0x01, 0x01, 0x01]))),
        BatchError::LengthNotNullable { record_index: 0, field: "headers count", length: -1 }
    );
    assert_eq!(record_error(&framed(&body(&[0x01, 0x01, 0x82, 0x04]))), BatchError::HeadersTooMany { record_index: 0, headers_count: 257 });
    assert_eq!(
        record_error(&framed(&body(&[0x01, 0x01, 0x02, 0x02, 0xff, 0x01]))),
        BatchError::HeaderKeyNotUtf8 { record_index: 0, header_index: 0 }
    );
    assert_eq!(
        record_error(&framed(&body(&[0x01, 0x01, 0x02, 0x01, 0x01]))),
        BatchError::LengthNotNullable { record_index: 0, field: "headerKeyLength", length: -1 }
    );
    assert_eq!(
        record_error(&framed(&body(&[0x01, 0x01, 0x02, 0x00, 0x03]))),
        BatchError::LengthNegative { record_index: 0, field: "headerValueLength", length: -2 }
    );
}

#[test]
fn record_count_mismatches_are_rejected() {
    let good = framed(&[0, 0, 0, 0x01, 0x02, b'v', 0x00]);

    // One record more in the bytes than the count says: trailing garbage.
    let mut two = good.clone();
    two.extend_from_slice(&framed(&[0, 0, 0x02, 0x01, 0x02, b'v', 0x00]));
    let batch = with_records_region(1, &two);
    let mut items = records(&batch).unwrap();
    assert!(items.next().unwrap().is_ok());
    assert_eq!(items.next(), Some(Err(BatchError::TrailingBytes { record_count: 1, bytes_trailing: 8 })));
    assert_eq!(items.next(), None, "the iterator stops after an error");

    // A single byte of garbage after the last record.
    let batch = with_records_region(1, &[&good[..], &[0]].concat());
    let items: Vec<_> = records(&batch).unwrap().collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], Err(BatchError::TrailingBytes { record_count: 1, bytes_trailing: 1 }));

    // The count says two, the bytes hold one (padded within the record so the count is plausible).
    let mut padded_value = vec![0u8, 0, 0, 0x01, 0x20];
    padded_value.extend_from_slice(&[b'v'; 16]);
    padded_value.push(0x00);
    let batch = with_records_region(2, &framed(&padded_value));
    let mut items = records(&batch).unwrap();
    assert_eq!(items.next().unwrap().unwrap().value.map(<[u8]>::len), Some(16));
    assert_eq!(items.next(), Some(Err(BatchError::RecordsMissing { record_count: 2, records_found: 1 })));
    assert_eq!(items.next(), None);
}

#[test]
fn timestamp_overflow_is_an_error_not_a_wrap() {
    let region = framed(&[0, 0x02, 0, 0x01, 0x01, 0x00]); // timestampDelta +1
    let mut batch = with_records_region(1, &region);
    put_at(&mut batch, position::BASE_TIMESTAMP, &i64::MAX.to_be_bytes());
    put_at(&mut batch, position::MAX_TIMESTAMP, &i64::MAX.to_be_bytes());
    recrc(&mut batch);
    assert_eq!(first_record(&batch), Err(BatchError::TimestampOverflow { record_index: 0, base_timestamp: i64::MAX, timestamp_delta: 1 }));
}

#[test]
fn error_messages_say_exactly_what_is_wrong() {
    let cases = [
        (
            BatchError::CompressionUnsupported { codec: 5 },
            "compression codec 5 (undefined) is not defined; codecs are 0 (none), 1 (gzip), 2 (snappy), 3 (lz4) and 4 (zstd)",
        ),
        (BatchError::DecompressedTooLarge { codec: 4, bytes_max: 10 }, "the zstd records decompress to more than the limit of 10 bytes"),
        (BatchError::MagicUnsupported { magic: 1 }, "magic byte is 1; only 2 (RecordBatch v2) is supported"),
        (
            BatchError::CrcMismatch { crc_stored: 0xdead_beef, crc_computed: 0x0000_0001 },
            "CRC-32C mismatch: the header says 0xdeadbeef, attributes..end hash to 0x00000001",
        ),
        (
            BatchError::LastOffsetDeltaMismatch { last_offset_delta: 5, record_count: 1 },
            "lastOffsetDelta is 5 but the batch holds 1 records (expected 0)",
        ),
        (
            BatchError::LengthNegative { record_index: 3, field: "keyLength", length: -2 },
            "record 3: keyLength is -2; only -1 (null) may be negative",
        ),
        (BatchError::TrailingBytes { record_count: 2, bytes_trailing: 5 }, "5 bytes of trailing garbage after the last of 2 records"),
        (BatchError::RecordsCountInvalid { record_count: 0 }, "records count is 0; a batch holds 1 to 65536 records"),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
        assert!(error.is_definite());
    }
}

#[test]
fn bytes_len_is_exact_after_every_push() {
    let mut builder = BatchBuilder::new();
    assert_eq!(builder.bytes_len(), BATCH_HEADER_BYTES);
    let records = [
        record(None, None, 0),
        Record {
            key: Some(Bytes::from(vec![7u8; 200])),
            value: Some(Bytes::from(vec![9u8; 70_000])),
            headers: vec![
                Header { key: "é".repeat(40), value: Some(Bytes::from_static(b"h")) },
                Header { key: String::new(), value: None },
            ],
            timestamp: -1_000_000_000_000,
        },
        record(Some(b""), Some(b""), i64::from(i32::MAX) * 4),
    ];
    for record in &records {
        let record_bytes = builder.record_bytes_len(record);
        let bytes_before = builder.bytes_len();
        builder.push(record).unwrap();
        assert_eq!(builder.bytes_len(), bytes_before + record_bytes);
    }
    let bytes_len = builder.bytes_len();
    let batch = builder.build();
    assert_eq!(batch.len(), bytes_len);
    let decoded: Vec<Record> = super::records(&batch).unwrap().map(|view| view.unwrap().to_record()).collect();
    assert_eq!(decoded, records);
}

#[test]
fn push_refuses_past_the_limits_and_leaves_the_batch_unchanged() {
    let mut builder = BatchBuilder::new().bytes_max(100);
    builder.push(&record(None, Some(&[1; 20]), -1)).unwrap();
    let bytes_before = builder.bytes_len();
    // length 1 + attributes 1 + timestampDelta 1 + offsetDelta 1 + null key 1 + value 1+20 + headers count 1.
    assert_eq!(
        builder.push(&record(None, Some(&[1; 20]), 0)),
        Err(BatchError::BytesFull { record_bytes: 27, batch_bytes: bytes_before + 27, bytes_max: 100 })
    );
    assert_eq!(builder.push(&record(None, Some(&[1; 40]), 0)), Err(BatchError::RecordTooLarge { record_bytes: 47, bytes_max: 100 }));
    let too_many_headers =
        Record { headers: vec![Header { key: String::new(), value: None }; RECORD_HEADERS_MAX + 1], ..record(None, None, 0) };
    assert_eq!(builder.push(&too_many_headers), Err(BatchError::RecordHeadersTooMany { headers_count: RECORD_HEADERS_MAX + 1 }));
    assert_eq!(
        builder.push(&record(None, None, i64::MAX)),
        Err(BatchError::TimestampDeltaOverflow { timestamp: i64::MAX, base_timestamp: -1 })
    );
    assert_eq!((builder.records_len(), builder.bytes_len()), (1, bytes_before));
    validate(&builder.build()).unwrap();
}

#[test]
fn push_stops_at_batch_records_max() {
    let mut builder = BatchBuilder::new();
    let tiny = record(None, None, 0);
    for _ in 0..BATCH_RECORDS_MAX {
        builder.push(&tiny).unwrap();
    }
    assert_eq!(builder.push(&tiny), Err(BatchError::RecordsFull));
    let batch = builder.build();
    assert_eq!(records(&batch).unwrap().filter(Result::is_ok).count(), BATCH_RECORDS_MAX);
}

#[test]
#[should_panic(expected = "empty batch")]
fn build_refuses_an_empty_batch() {
    let _ = BatchBuilder::new().build();
}

#[test]
fn last_offset_delta_must_be_exactly_count_minus_one() {
    let mut builder = BatchBuilder::new();
    builder.push(&record(Some(b"a"), None, 0)).unwrap();
    builder.push(&record(Some(b"b"), None, 0)).unwrap();
    let batch = builder.build().to_vec();
    for last_offset_delta in [0i32, 2, -1, i32::MAX] {
        let mut batch = batch.clone();
        put_at(&mut batch, position::LAST_OFFSET_DELTA, &last_offset_delta.to_be_bytes());
        recrc(&mut batch);
        assert_eq!(validate(&batch), Err(BatchError::LastOffsetDeltaMismatch { last_offset_delta, record_count: 2 }));
    }
}
