//! The acceptance test of the produce path against real processes: 3 nodes, a topic with 3
//! partitions and replication factor 3, 20,000 keyed records with acks=all from two producers
//! while the leader of partition 0 is SIGKILLed and restarted. Then every partition is read from
//! the beginning and checked (CHECKLISTS.md):
//! - L5/L6: every acknowledged record is present, exactly once (no duplicates at all: the
//!   producers are idempotent, and every value is unique);
//! - L7: per key, records appear in the order their producer acknowledged them;
//! - L10/P1: each acknowledged record sits at exactly the offset its acknowledgement named.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use odradek_client::{Admin, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord};

use common::{create_topic_until, ProcessCluster};

const RECORDS_PER_PRODUCER: u64 = 10_000;
const KEYS: u64 = 64;
const PARTITIONS: u32 = 3;

#[derive(Debug)]
struct Acked {
    key: String,
    partition: u32,
    offset: u64,
}

async fn run_producer(bootstrap: Vec<String>, producer_index: u64) -> (BTreeMap<String, Acked>, u64) {
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS_PER_PRODUCER {
        let key = format!("k{}", (i * 7 + producer_index) % KEYS);
        let value = format!("p{producer_index}-{i:06}");
        let delivery = producer.send(ProducerRecord::new("orders", value.clone()).key(key.clone())).await.expect("send queues");
        deliveries.push((key, value, delivery));
        if i % 1000 == 999 {
            // Spread the load over the failover window.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    for (key, value, delivery) in deliveries {
        match delivery.await {
            Ok(metadata) => {
                let offset = metadata.offset.expect("acks=all gives offsets");
                acked.insert(value, Acked { key, partition: metadata.partition, offset });
            }
            Err(_) => failed += 1,
        }
    }
    producer.close().await.expect("close");
    (acked, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_keyed_records_survive_a_leader_sigkill() {
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    create_topic_until(&admin, "orders", PARTITIONS, deadline).await;
    let (victim, term_before) = loop {
        // The node asked may not have applied the new topic yet (UNKNOWN_TOPIC_OR_PARTITION).
        let topic = admin.describe_topic("orders").await;
        if let Ok(topic) = &topic {
            if topic.partitions.iter().all(|p| p.leader != 0 && p.leader_term != 0) {
                break (topic.partitions[0].leader, topic.partitions[0].leader_term);
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leaders: {topic:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let producers: Vec<_> = (0..2).map(|index| tokio::spawn(run_producer(bootstrap.clone(), index))).collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.kill(victim);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| cluster.restart(victim));

    let mut acked: BTreeMap<String, Acked> = BTreeMap::new();
    let mut failed = 0;
    for producer in producers {
        let (mine, failures) = producer.await.unwrap();
        acked.extend(mine);
        failed += failures;
    }
    assert!(acked.len() as u64 + failed == 2 * RECORDS_PER_PRODUCER);
    assert!(acked.len() as u64 >= RECORDS_PER_PRODUCER, "most records are acknowledged ({} of 20000; {failed} failed)", acked.len());

    // The kill forced an election: partition 0 has a leader of a later term now.
    let term_after = loop {
        // The restarted node answers "retry" until its metadata has caught up.
        let Ok(topic) = admin.describe_topic("orders").await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let partition = topic.partitions[0].clone();
        if partition.leader != 0 && partition.leader_term != 0 {
            break partition.leader_term;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(term_after > term_before, "partition 0 stayed in term {term_before}: the kill did not cause a failover");

    // Read everything back.
    let mut consumer = Consumer::new(&addresses, ConsumerConfig::default()).unwrap();
    consumer.assign((0..PARTITIONS).map(|p| ("orders".to_string(), p)).collect()).unwrap();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        consumer.seek("orders", partition, Offset::Beginning).await.unwrap();
        ends.insert(partition, admin.list_offsets("orders", partition, OffsetQuery::Latest).await.unwrap().offset);
    }
    let mut seen: BTreeMap<String, (u32, u64, String)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let read_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (0..PARTITIONS).any(|p| consumer.position("orders", p).unwrap_or(0) < ends[&p]) {
        assert!(tokio::time::Instant::now() < read_deadline, "reading back took over 60 s");
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            if let Some(previous) = seen.insert(value.clone(), (record.partition, record.offset, key)) {
                duplicates.push((value, previous, record.partition, record.offset));
            }
        }
    }
    assert!(duplicates.is_empty(), "L6: duplicated records: {:?}", &duplicates[..duplicates.len().min(5)]);
    for (value, ack) in &acked {
        let Some((partition, offset, key)) = seen.get(value) else { panic!("L5: acknowledged record {value} ({ack:?}) is lost") };
        assert_eq!((*partition, *offset), (ack.partition, ack.offset), "L10: {value} was acknowledged at another offset");
        assert_eq!(*key, ack.key);
    }
    // L7: per key and producer, log order equals acknowledgement (send) order.
    let mut last: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    let keys_seen: BTreeSet<&String> = acked.values().map(|a| &a.key).collect();
    assert_eq!(keys_seen.len() as u64, KEYS);
    for (value, ack) in &acked {
        let producer = value.split('-').next().unwrap().to_string();
        let slot = (ack.key.clone(), producer);
        if let Some((previous_offset, previous_value)) = last.get(&slot) {
            assert!(ack.offset > *previous_offset, "L7: {value} at {} is before {previous_value} at {previous_offset}", ack.offset);
        }
        last.insert(slot, (ack.offset, value.clone()));
    }
    eprintln!("{} acknowledged, {failed} failed, {} read back, leader {victim} killed and restarted", acked.len(), seen.len());

    // Leadership goes back to the preferred replicas (the first of each replica list), which
    // the controller spread over the nodes: the restarted node leads again.
    let balance_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(topic) = admin.describe_topic("orders").await {
            let leaders: Vec<(u64, u64)> = topic.partitions.iter().map(|p| (p.leader, p.replicas[0])).collect();
            if leaders.iter().all(|(leader, preferred)| leader == preferred) {
                let distinct: BTreeSet<u64> = leaders.iter().map(|(leader, _)| *leader).collect();
                assert_eq!(distinct.len(), PARTITIONS as usize, "preferred leaders are spread: {leaders:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < balance_deadline, "leaders not back on preferred replicas: {leaders:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
