//! Property tests for compressed batches (attribute bits 0..2): every codec round-trips bytes
//! and whole batches; the broker's full check (`validate_for_append`) accepts what the producer
//! compresses and refuses corrupt or lying compressed records; decompression bombs are refused
//! at the named limit; and no compressed input, random or crafted behind a valid CRC, panics.

use bytes::Bytes;
use odradek_client::batch::{
    self, compress, compress_batch, decode, decompress, position, validate, validate_for_append, BatchBuilder, BatchError, Compression,
    Record, BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, RECORDS_DECOMPRESSED_BYTES_MAX,
};
use proptest::collection::vec;
use proptest::prelude::*;

const CODECS: [Compression; 4] = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(CODECS.to_vec())
}

/// Records that compress (repeated text with a varying number), `count` of them.
fn compressible_records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{}", i % 7))),
            value: Some(Bytes::from(format!("{{\"event\":\"page_view\",\"user\":\"user-{i:05}\",\"path\":\"/home/index.html\"}}"))),
            headers: vec![],
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

fn plain_batch(records: &[Record]) -> Bytes {
    let mut builder = BatchBuilder::new().producer(9, 0, 0);
    for record in records {
        builder.push(record).unwrap();
    }
    builder.build()
}

fn decoded_records(batch: &[u8]) -> Vec<Record> {
    decode(batch).unwrap().records().map(|view| view.unwrap().to_record()).collect()
}

fn recrc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[position::ATTRIBUTES..]);
    batch[position::CRC..position::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
}

/// A batch with the tiny header of `plain_batch` and `region` as its (compressed) records,
/// `record_count` records, attributes naming `compression`, consistent lengths and a valid CRC.
fn crafted(compression: Compression, record_count: i32, region: &[u8]) -> Vec<u8> {
    let mut batch = plain_batch(&compressible_records(1))[..BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(region);
    let batch_length = (batch.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    batch[position::BATCH_LENGTH..position::PARTITION_LEADER_EPOCH].copy_from_slice(&batch_length.to_be_bytes());
    batch[position::RECORDS_COUNT..position::RECORDS].copy_from_slice(&record_count.to_be_bytes());
    batch[position::LAST_OFFSET_DELTA..position::BASE_TIMESTAMP].copy_from_slice(&(record_count - 1).to_be_bytes());
    batch[position::ATTRIBUTES..position::LAST_OFFSET_DELTA].copy_from_slice(&i16::from(compression.codec()).to_be_bytes());
    // Room for the later timestamps of `compressible_records`.
    let timestamp_max = 1_700_000_000_000i64 + 1_000_000;
    batch[position::MAX_TIMESTAMP..position::PRODUCER_ID].copy_from_slice(&timestamp_max.to_be_bytes());
    recrc(&mut batch);
    batch
}

#[test]
fn every_codec_round_trips_a_batch_and_the_broker_accepts_it() {
    let records = compressible_records(200);
    let plain = plain_batch(&records);
    for compression in CODECS {
        let compressed = compress_batch(plain.clone(), compression);
        let header = validate_for_append(&compressed).unwrap();
        assert_eq!(header.compression(), compression.codec(), "{compression}: compressible records are sent compressed");
        assert!(compressed.len() < plain.len() / 2, "{compression}: {} bytes from {}", compressed.len(), plain.len());
        assert_eq!(header.record_count, 200);
        assert_eq!(decoded_records(&compressed), records, "{compression}");
        assert_eq!(batch::records(&compressed).err(), Some(BatchError::RecordsCompressed { codec: compression.codec() }));
    }
    // None, and an incompressible batch, stay as they are.
    assert_eq!(compress_batch(plain.clone(), Compression::None), plain);
    let noise: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let tiny = plain_batch(&[Record { key: None, value: Some(Bytes::from(noise)), headers: vec![], timestamp: 0 }]);
    for compression in CODECS {
        assert_eq!(compress_batch(tiny.clone(), compression), tiny, "{compression} would not shrink it");
    }
}

#[test]
fn snappy_reads_both_the_xerial_framing_and_a_raw_block() {
    let data = b"librdkafka writes one raw snappy block; the Java client writes xerial frames".repeat(50);
    let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    assert_eq!(decompress(Compression::Snappy, &raw, 1 << 20).unwrap(), data);
    let framed = compress(Compression::Snappy, &data);
    assert_eq!(&framed[..8], &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0]);
    assert_eq!(decompress(Compression::Snappy, &framed, 1 << 20).unwrap(), data);
}

#[test]
fn decompression_bombs_are_refused_at_the_limit() {
    // 16 MiB of zeros compresses to well under a batch with every codec.
    let zeros = vec![0u8; 2 * RECORDS_DECOMPRESSED_BYTES_MAX];
    for compression in CODECS {
        let bomb = compress(compression, &zeros);
        assert!(bomb.len() < BATCH_BYTES_MAX - BATCH_HEADER_BYTES, "{compression}: the bomb is {} bytes", bomb.len());
        let expected = BatchError::DecompressedTooLarge { codec: compression.codec(), bytes_max: RECORDS_DECOMPRESSED_BYTES_MAX };
        assert_eq!(decompress(compression, &bomb, RECORDS_DECOMPRESSED_BYTES_MAX).err(), Some(expected.clone()), "{compression}");
        let batch = crafted(compression, 1, &bomb);
        validate(&batch).unwrap();
        assert_eq!(validate_for_append(&batch).err(), Some(expected.clone()), "{compression}");
        assert_eq!(decode(&batch).err(), Some(expected), "{compression}");
        // Exactly at the limit is fine.
        let at_limit = compress(compression, &zeros[..RECORDS_DECOMPRESSED_BYTES_MAX]);
        assert_eq!(decompress(compression, &at_limit, RECORDS_DECOMPRESSED_BYTES_MAX).unwrap().len(), RECORDS_DECOMPRESSED_BYTES_MAX);
    }
}

#[test]
fn compressed_records_that_disagree_with_the_header_are_refused() {
    let records = compressible_records(10);
    let plain = plain_batch(&records);
    let region = &plain[position::RECORDS..];
    for compression in CODECS {
        let packed = compress(compression, region);
        // The header claims more records than the compressed region holds, or fewer.
        assert_eq!(
            validate_for_append(&crafted(compression, 11, &packed)).err(),
            Some(BatchError::RecordsMissing { record_count: 11, records_found: 10 }),
            "{compression}"
        );
        assert!(matches!(validate_for_append(&crafted(compression, 9, &packed)), Err(BatchError::TrailingBytes { .. })), "{compression}");
        // Garbage that is not this codec's format.
        assert!(
            matches!(validate_for_append(&crafted(compression, 10, b"not compressed at all")), Err(BatchError::DecompressFailed { .. })),
            "{compression}"
        );
        assert!(validate_for_append(&crafted(compression, 10, &packed)).is_ok(), "{compression}");
    }
}

proptest! {
    #[test]
    fn codec_round_trip(compression in codec(), bytes in vec(any::<u8>(), 0..5000), repeat in 1..20usize) {
        let bytes = bytes.repeat(repeat);
        let packed = compress(compression, &bytes);
        prop_assert_eq!(decompress(compression, &packed, bytes.len()).unwrap(), bytes.clone());
        if !bytes.is_empty() {
            let limit = bytes.len() - 1;
            let too_large = BatchError::DecompressedTooLarge { codec: compression.codec(), bytes_max: limit };
            prop_assert_eq!(decompress(compression, &packed, limit).err(), Some(too_large));
        }
    }

    #[test]
    fn batch_round_trip(compression in codec(), count in 1..300usize) {
        let records = compressible_records(count);
        let compressed = compress_batch(plain_batch(&records), compression);
        prop_assert!(validate_for_append(&compressed).is_ok());
        prop_assert_eq!(decoded_records(&compressed), records);
    }

    #[test]
    fn random_compressed_regions_never_panic(compression in codec(), record_count in 1..8i32, region in vec(any::<u8>(), 0..300)) {
        let batch = crafted(compression, record_count, &region);
        let _ = validate_for_append(&batch);
        if let Ok(decoded) = decode(&batch) {
            for record in decoded.records() {
                let _ = record;
            }
        }
    }

    #[test]
    fn corrupted_compressed_bytes_never_panic(compression in codec(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut packed = compress(compression, &plain_batch(&compressible_records(20))[position::RECORDS..]);
        let at = at.index(packed.len());
        packed[at] ^= byte | 1;
        let _ = validate_for_append(&crafted(compression, 20, &packed));
    }
}

/// What a gzip or zstd compressor made for this one input writes (the crates' one-shot APIs):
/// `compress` keeps one compressor per thread and resets it between batches.
fn fresh_compressor_output(compression: Compression, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Zstd => zstd::bulk::compress(bytes, 3).unwrap(),
        other => panic!("{other} keeps no compressor between batches"),
    }
}

proptest! {
    /// A reused compressor writes the bytes a fresh one writes, whatever came before it on the
    /// thread (so a batch's bytes never depend on the batches compressed earlier: the simulator's
    /// traces and every other client's reading stay as they were).
    #[test]
    fn a_reused_compressor_writes_what_a_fresh_one_writes(
        inputs in vec(prop_oneof![vec(any::<u8>(), 0..3000), vec(0u8..4, 0..70_000)], 1..5),
    ) {
        for compression in [Compression::Gzip, Compression::Zstd] {
            for bytes in &inputs {
                prop_assert_eq!(compress(compression, bytes), fresh_compressor_output(compression, bytes), "{}", compression);
            }
        }
    }
}
