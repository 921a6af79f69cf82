//! Graceful shutdown and leader transfer against real processes (issue 15, F-M2):
//! - a rolling restart of all 3 nodes (SIGTERM, wait for the exit, start again) while an
//!   idempotent producer runs: each node hands the leadership of its partitions and of the
//!   metadata group away before it stops, so the producer follows the new leaders instead of
//!   waiting out elections; every record is acknowledged (no failure, definite or not), and
//!   every acknowledged record is read back at its acknowledged offset (L5, L10);
//! - `partition transfer-leader` moves a partition's leadership to a named voter on demand,
//!   and refuses definitely a node that is not a voter.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord};

use common::{create_topic_until, without_colors, ProcessCluster};

const TOPIC: &str = "rolling";
const PARTITIONS: u32 = 3;

/// Sends records until `stop` turns true; (value -> (partition, offset)) of the acknowledged
/// ones, and the number of failed sends.
async fn run_producer(bootstrap: Vec<String>, stop: tokio::sync::watch::Receiver<bool>) -> (BTreeMap<String, (u32, u64)>, u64) {
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    let mut i = 0u64;
    while !*stop.borrow() {
        let value = format!("r{i:07}");
        let record = ProducerRecord::new(TOPIC, value.clone()).partition((i % u64::from(PARTITIONS)) as u32);
        deliveries.push((value, producer.send(record).await.expect("send queues")));
        i += 1;
        if i.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    for (value, delivery) in deliveries {
        match delivery.await {
            Ok(metadata) => drop(acked.insert(value, (metadata.partition, metadata.offset.expect("acks=all gives offsets")))),
            Err(error) => {
                eprintln!("{value}: {error}");
                failed += 1;
            }
        }
    }
    producer.close().await.expect("close");
    (acked, failed)
}

async fn leaders(admin: &Admin) -> Option<Vec<u64>> {
    let topic = admin.describe_topic(TOPIC).await.ok()?;
    let leaders: Vec<u64> = topic.partitions.iter().map(|p| p.leader).collect();
    leaders.iter().all(|&leader| leader != 0).then_some(leaders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing_and_fails_no_send() {
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    create_topic_until(&admin, TOPIC, PARTITIONS, deadline).await;
    while leaders(&admin).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(run_producer(bootstrap.clone(), stopped));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for id in 1..=3 {
        let status = tokio::task::block_in_place(|| cluster.terminate(id));
        assert!(status.success(), "node {id} stopped with {status}:\n{}", cluster.log(id));
        let log = without_colors(&cluster.log(id));
        assert!(log.contains("shutting down leading=0"), "node {id} still led a group when it stopped:\n{log}");
        tokio::task::block_in_place(|| cluster.restart(id));
        // Let it catch up before the next one goes.
        tokio::time::sleep(Duration::from_millis(3000)).await;
    }
    stop.send(true).unwrap();
    let (acked, failed) = producer.await.unwrap();
    assert_eq!(failed, 0, "sends failed during the rolling restart ({} acknowledged)", acked.len());
    assert!(acked.len() > 1000, "only {} records sent", acked.len());

    // L5/L10: every acknowledged record, at its offset.
    let mut consumer = Consumer::new(&addresses, ConsumerConfig::default()).unwrap();
    consumer.assign((0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect()).unwrap();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        consumer.seek(TOPIC, partition, Offset::Beginning).await.unwrap();
        ends.insert(partition, admin.list_offsets(TOPIC, partition, OffsetQuery::Latest).await.unwrap().offset);
    }
    let mut seen: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    let read_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (0..PARTITIONS).any(|p| consumer.position(TOPIC, p).unwrap_or(0) < ends[&p]) {
        assert!(tokio::time::Instant::now() < read_deadline, "reading back took over 60 s");
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            assert!(seen.insert(value.clone(), (record.partition, record.offset)).is_none(), "L6: {value} twice");
        }
    }
    for (value, at) in &acked {
        assert_eq!(seen.get(value), Some(at), "L5/L10: acknowledged record {value}");
    }
    eprintln!("{} acknowledged, 0 failed, {} read back after a rolling restart of 3 nodes", acked.len(), seen.len());

    // Leader transfer on demand: to each voter in turn; a non-voter is refused definitely.
    let leader = leaders(&admin).await.expect("leaders")[0];
    let to = if leader == 3 { 2 } else { 3 };
    admin.transfer_leader(TOPIC, 0, to).await.expect("transfer leader");
    assert_eq!(leaders(&admin).await.expect("leaders")[0], to, "the transfer answered before node {to} led");
    let error = admin.transfer_leader(TOPIC, 0, 9).await.expect_err("node 9 is not a voter");
    assert_eq!(error.code(), Some(ErrorCode::INVALID_REQUEST), "{error}");
    assert!(error.is_definite());
}
