//! A group member whose committed offset is out of the log's range — below its start after
//! retention deleted segments, or above its end — applies its `group_offset_reset` policy, as
//! Kafka's consumer applies `auto.offset.reset`: earliest reads from the log start, latest from
//! its end, error fails the poll with a definite `OffsetOutOfRange`. Not a poll that fails, or
//! fetches, forever. One in-process node on loopback over real files.

// Real sockets and a real runtime: not a simulation test.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{
    Admin, ClientError, Consumer, ConsumerConfig, ConsumerRecord, OffsetQuery, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};
use odradek_jepsen::harness::ports::reserve;
use odradek_log::FsDisk;
use odradek_server::config::{Member, ServerConfig};
use odradek_server::{system_clock, Server};

const RECORDS: u64 = 300;

async fn start(dir: &std::path::Path, ports: &[u16]) -> Server {
    let member = Member { id: 1, peer: ([127, 0, 0, 1], ports[0]).into(), client: ([127, 0, 0, 1], ports[1]).into(), kafka: None };
    let data_dir = dir.join("node-1");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut config = ServerConfig::new(1, data_dir, vec![member]);
    config.tick_ms = 20;
    config.balance_interval_ms = 100;
    Server::start(config, FsDisk::new(), system_clock()).await.expect("start")
}

fn config(group: &str, reset: OffsetReset) -> ConsumerConfig {
    ConsumerConfig {
        group_id: Some(group.to_string()),
        group_offset_reset: reset,
        enable_auto_commit: false,
        heartbeat_interval: Duration::from_millis(200),
        ..ConsumerConfig::default()
    }
}

/// Commits `offset` for the group, joins it, and polls until records come or the poll fails.
async fn first_poll(
    bootstrap: &[&str],
    admin: &Admin,
    group: &str,
    offset: u64,
    reset: OffsetReset,
) -> Result<Vec<ConsumerRecord>, ClientError> {
    let committed: BTreeMap<(String, u32), u64> = [(("r".to_string(), 0), offset)].into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = admin.alter_group_offsets(group, &committed).await {
        assert!(Instant::now() < deadline, "commit for {group}: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut consumer = Consumer::new(bootstrap, config(group, reset)).unwrap();
    consumer.subscribe(["r"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        match consumer.poll(Duration::from_millis(300)).await {
            Ok(records) if records.is_empty() => assert!(Instant::now() < deadline, "{group}: no records and no error"),
            other => break other,
        }
    };
    consumer.close().await.expect("close");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_committed_offset_gets_the_groups_reset_policy() {
    let dir = tempfile::tempdir().unwrap();
    let port_block = reserve(2).expect("two free ports");
    let server = start(dir.path(), port_block.ports()).await;
    let address = server.client_addr().to_string();
    let bootstrap = [address.as_str()];
    let admin = Admin::new(&bootstrap).unwrap();
    // Small segments and retention by size: old segments go, the log start moves up.
    let topic = TopicConfig { retention_ms: -1, retention_bytes: 1, segment_bytes: 2048, ..TopicConfig::default() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = admin.create_topic("r", 1, 1, topic).await {
        assert!(Instant::now() < deadline, "create: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer = Producer::new(&bootstrap, ProducerConfig::default()).await.unwrap();
    for i in 0..RECORDS {
        producer.send(ProducerRecord::new("r", format!("v{i:04}"))).await.unwrap().await.expect("acknowledged");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let start = loop {
        let start = admin.list_offsets("r", 0, OffsetQuery::Earliest).await.unwrap().offset;
        if start > 0 {
            break start;
        }
        assert!(Instant::now() < deadline, "retention never moved the log start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let end = admin.list_offsets("r", 0, OffsetQuery::Latest).await.unwrap().offset;
    assert!(start < end && end == RECORDS, "log {start}..{end}");

    // In range: no reset, the member resumes at its commit.
    let records = first_poll(&bootstrap, &admin, "in-range", end - 3, OffsetReset::Earliest).await.unwrap();
    assert_eq!(records[0].offset, end - 3);
    // Retention may still be deleting segments (it runs now and then until only the active
    // segment is left), so the log start a reset finds lies between the start read before the
    // poll and the one read after it.
    let earliest = async || admin.list_offsets("r", 0, OffsetQuery::Earliest).await.unwrap().offset;
    // Below the log start (deleted by retention) and above its end: earliest reads from the start.
    for (group, offset, what) in [("below", 0, "below the start, earliest"), ("above", end + 1_000, "above the end, earliest")] {
        let before = earliest().await;
        let records = first_poll(&bootstrap, &admin, group, offset, OffsetReset::Earliest).await.unwrap();
        let after = earliest().await;
        assert!(
            start <= before && (before..=after).contains(&records[0].offset),
            "{what}: {} not in {before}..={after}",
            records[0].offset
        );
    }
    // Error: a definite error naming the range, every time.
    for (group, offset) in [("error-below", 0), ("error-above", end + 1_000)] {
        let before = earliest().await;
        let outcome = first_poll(&bootstrap, &admin, group, offset, OffsetReset::Error).await;
        let after = earliest().await;
        match outcome {
            Err(error @ ClientError::OffsetOutOfRange { .. }) => {
                assert!(error.is_definite(), "{error}");
                let ClientError::OffsetOutOfRange { offset: got, log_start_offset, high_watermark, .. } = error else { unreachable!() };
                assert_eq!((got, high_watermark), (offset, end));
                assert!((before..=after).contains(&log_start_offset), "{group}: log start {log_start_offset} not in {before}..={after}");
            }
            other => panic!("{group}: expected OffsetOutOfRange, got {other:?}"),
        }
    }
    // Latest: from the end, so only what is written after the reset. The record is produced
    // while the member polls.
    let producing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        producer.send(ProducerRecord::new("r", "after the reset")).await.unwrap().await.expect("acknowledged");
    });
    let records = first_poll(&bootstrap, &admin, "latest", 0, OffsetReset::Latest).await.unwrap();
    assert_eq!((records[0].offset, records.len()), (end, 1), "below the start, latest");
    producing.await.unwrap();
    assert!(ErrorCode::OFFSET_OUT_OF_RANGE.is_definite());
    server.shutdown().await.unwrap();
}
