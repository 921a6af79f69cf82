//! Compressed batches against real `odradek server` processes (issue 16): for each codec the
//! native producer's batches are accepted, stored and served compressed as sent (the fetched
//! batch names the codec), and the native consumer returns the records exactly as produced; a
//! compressed batch whose records do not decompress or parse, and a decompression bomb, are
//! refused with a definite INVALID_RECORD while the node keeps serving; an undefined codec is
//! CORRUPT_BATCH. Checklist: L5/L6 (every acknowledged record read back once), L10 (at the
//! acknowledged offset).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use odradek_client::batch::{self, compress, position, BatchBuilder, Compression, Record, RECORDS_DECOMPRESSED_BYTES_MAX};
use odradek_client::wire::proto::{ErrorCode, FetchRequest};
use odradek_client::{Admin, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord, TopicConfig};

use common::raw::{batch as plain_batch, call_until, metadata, produce, request_with, Raw};
use common::ProcessCluster;

const RECORDS: u64 = 500;

fn value(compression: Compression, i: u64) -> String {
    format!("{{\"codec\":\"{compression}\",\"seq\":{i},\"user\":\"user-{:04}\",\"event\":\"page_view\"}}", i % 97)
}

async fn create(admin: &Admin, topic: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match admin.create_topic(topic, 1, 3, TopicConfig::default()).await {
            Ok(()) => return,
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("create topic {topic}: {error}"),
        }
    }
}

/// Codecs of the batches a raw fetch from offset 0 returns.
fn fetched_codecs(addr: &str, topic: &str) -> Vec<u8> {
    let mut raw = Raw::greeted(addr);
    let fetch = request_with(90, |request| {
        let mut fetch = FetchRequest::new();
        fetch.topic = topic.into();
        fetch.partition = 0;
        fetch.offset = 0;
        fetch.bytes_max = 4 << 20;
        request.set_fetch(fetch);
    });
    let response = call_until(&mut raw, &fetch, &[ErrorCode::NOT_LEADER, ErrorCode::LEADER_NOT_AVAILABLE], 200);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    let mut codecs = Vec::new();
    let mut rest: &[u8] = &response.get_fetch().batches;
    while !rest.is_empty() {
        let len = batch::batch_bytes_len(rest).unwrap();
        codecs.push(batch::validate(&rest[..len]).unwrap().compression());
        rest = &rest[len..];
    }
    codecs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_through_a_cluster_stored_compressed() {
    let cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let topic = format!("events-{compression}");
        create(&admin, &topic).await;
        let config = ProducerConfig { compression, linger: Duration::from_millis(20), ..ProducerConfig::default() };
        let producer = Producer::new(&addresses, config).await.unwrap();
        let mut deliveries = Vec::new();
        for i in 0..RECORDS {
            let record = ProducerRecord::new(topic.clone(), value(compression, i)).key(format!("k{}", i % 5)).partition(0);
            deliveries.push(producer.send(record).await.unwrap());
        }
        let mut offsets = Vec::new();
        for delivery in deliveries {
            offsets.push(delivery.await.unwrap().offset.expect("acks=all gives offsets"));
        }
        producer.close().await.unwrap();
        assert_eq!(offsets, (0..RECORDS).collect::<Vec<_>>(), "{compression}: L10 one partition, offsets in send order");

        let mut consumer = Consumer::new(&addresses, ConsumerConfig::default()).unwrap();
        consumer.assign(vec![(topic.clone(), 0)]).unwrap();
        consumer.seek(&topic, 0, Offset::Beginning).await.unwrap();
        let mut read = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while (read.len() as u64) < RECORDS {
            assert!(tokio::time::Instant::now() < deadline, "{compression}: read {} of {RECORDS}", read.len());
            read.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
        }
        assert_eq!(read.len() as u64, RECORDS, "{compression}: L6 nothing extra");
        for (i, record) in read.iter().enumerate() {
            let i = i as u64;
            assert_eq!(record.offset, i, "{compression}");
            assert_eq!(record.value.as_deref(), Some(value(compression, i).as_bytes()), "{compression}: L5 the record as sent");
            assert_eq!(record.key.as_deref(), Some(format!("k{}", i % 5).as_bytes()), "{compression}");
        }
        // Stored and served as sent: every batch still names the codec.
        let codecs = fetched_codecs(&cluster.client_addr(1), &topic);
        assert!(!codecs.is_empty() && codecs.iter().all(|&codec| codec == compression.codec()), "{compression}: {codecs:?}");
    }
}

/// A one-record-header batch whose records region is `region`, compressed with `compression`
/// and claiming `record_count` records, with consistent lengths and a valid CRC.
fn crafted(compression: Compression, record_count: i32, region: &[u8]) -> Vec<u8> {
    crafted_codec(compression.codec(), record_count, region)
}

fn crafted_codec(codec: u8, record_count: i32, region: &[u8]) -> Vec<u8> {
    let mut batch = plain_batch("x")[..batch::BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(region);
    let batch_length = (batch.len() - batch::BATCH_LOG_OVERHEAD_BYTES) as i32;
    batch[position::BATCH_LENGTH..position::PARTITION_LEADER_EPOCH].copy_from_slice(&batch_length.to_be_bytes());
    batch[position::RECORDS_COUNT..position::RECORDS].copy_from_slice(&record_count.to_be_bytes());
    batch[position::LAST_OFFSET_DELTA..position::BASE_TIMESTAMP].copy_from_slice(&(record_count - 1).to_be_bytes());
    batch[position::ATTRIBUTES..position::LAST_OFFSET_DELTA].copy_from_slice(&i16::from(codec).to_be_bytes());
    let crc = crc32c::crc32c(&batch[position::ATTRIBUTES..]);
    batch[position::CRC..position::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[test]
fn corrupt_compressed_batches_and_bombs_are_refused_and_the_node_keeps_serving() {
    let cluster = ProcessCluster::start(1);
    let addr = cluster.client_addr(1);
    let ready = call_until(&mut Raw::greeted(&addr), &metadata(1), &[ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(ready.error, ErrorCode::NONE, "{ready:?}");
    let mut raw = Raw::greeted(&addr);
    let response = raw.call(common::raw::create_topic(2, "events", 1, 1));
    assert_eq!(response.get_create_topics().topics[0].error, ErrorCode::NONE, "{response:?}");
    let settle = [ErrorCode::NOT_LEADER, ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION];
    let response = call_until(&mut raw, &produce(3, "events", plain_batch("first")), &settle, 400);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");

    let mut builder = BatchBuilder::new();
    for i in 0..3 {
        builder.push(&Record { key: None, value: Some(Bytes::from(format!("v{i}"))), headers: vec![], timestamp: 1_000 }).unwrap();
    }
    let region = builder.build()[position::RECORDS..].to_vec();
    let zeros = vec![0u8; 2 * RECORDS_DECOMPRESSED_BYTES_MAX];
    for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let refusals = [
            ("not the codec's format", crafted(compression, 3, b"these bytes are not compressed")),
            ("fewer records than the count", crafted(compression, 4, &compress(compression, &region))),
            ("a decompression bomb", crafted(compression, 1, &compress(compression, &zeros))),
        ];
        for (what, bad) in refusals {
            let response = raw.call(produce(10, "events", bad));
            assert_eq!(response.error, ErrorCode::INVALID_RECORD, "{compression}, {what}: {response:?}");
            assert!(!response.error_message.is_empty());
            if what == "a decompression bomb" {
                assert!(response.error_message.contains("limit"), "{response:?}");
            }
        }
        // A good compressed batch on the same connection is appended.
        let response = raw.call(produce(11, "events", crafted(compression, 3, &compress(compression, &region))));
        assert_eq!(response.error, ErrorCode::NONE, "{compression}: {response:?}");
    }
    // An undefined codec fails the header checks.
    for codec in 5..=7 {
        let response = raw.call(produce(12, "events", crafted_codec(codec, 3, &region)));
        assert_eq!(response.error, ErrorCode::CORRUPT_BATCH, "{response:?}");
        assert!(response.error_message.contains("not defined"), "{response:?}");
    }
    // Nothing refused reached the log: 1 + 4 × 3 records, and the node still serves.
    let response = raw.call(produce(13, "events", plain_batch("last")));
    assert_eq!((response.error, response.get_produce().base_offset), (ErrorCode::NONE, 13), "{response:?}");
    let response = Raw::greeted(&addr).call(metadata(14));
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
}
