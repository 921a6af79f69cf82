//! The operator's path (issue 15, dynamic membership), against real processes, with a producer
//! and a consumer running throughout: a 3-node cluster grows to 5 (two nodes join), is
//! rebalanced (replicas and leaders spread over the 5, catch-up throttled by
//! `learner_catch_up_bytes_per_second`), shrinks back to 3 (nodes 1 and 2 decommissioned: every
//! partition they held moves), and then one of the remaining nodes is wiped and comes back
//! (`--join --replace`, a new incarnation). Checked: the balance after the rebalance; the
//! removals; the consumer never sees an offset twice or out of order (L6); and every
//! acknowledged record reads back at its acknowledged offset from the final 3 nodes (L5/L10).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use odradek_client::{Admin, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord};

use common::{create_topic_until, wait_until, ProcessCluster};

const TOPIC: &str = "operated";
const PARTITIONS: u32 = 4;
const THROTTLE: &str = "4000000";

/// Sends until `stop`; every acknowledged record: value -> (partition, offset).
async fn run_producer(addresses: Vec<String>, stop: Arc<AtomicBool>) -> BTreeMap<String, (u32, u64)> {
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let partition = (i % u64::from(PARTITIONS)) as u32;
        let value = format!("r{i:07}");
        deliveries.push((
            value.clone(),
            partition,
            producer.send(ProducerRecord::new(TOPIC, value).partition(partition)).await.expect("queued"),
        ));
        i += 1;
        if i.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut acked = BTreeMap::new();
    for (value, partition, delivery) in deliveries {
        if let Ok(metadata) = delivery.await {
            acked.insert(value, (partition, metadata.offset.expect("acks=all gives offsets")));
        }
    }
    producer.close().await.expect("close");
    acked
}

/// Reads every partition until `stop`: L6 (no offset twice, offsets increase per partition).
async fn run_consumer(addresses: Vec<String>, stop: Arc<AtomicBool>) -> u64 {
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let mut consumer = Consumer::new(&addresses, ConsumerConfig::default()).unwrap();
    consumer.assign((0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect()).unwrap();
    for partition in 0..PARTITIONS {
        consumer.seek(TOPIC, partition, Offset::Beginning).await.unwrap();
    }
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut read = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(records) = consumer.poll(Duration::from_millis(200)).await else { continue };
        for record in records {
            if let Some(&previous) = last.get(&record.partition) {
                assert!(record.offset > previous, "L6: partition {} offset {} after {previous}", record.partition, record.offset);
            }
            last.insert(record.partition, record.offset);
            read += 1;
        }
    }
    read
}

/// L5/L6/L10 from `addresses` only.
async fn read_back(addresses: &[&str], acked: &BTreeMap<String, (u32, u64)>) {
    let admin = Admin::new(addresses).unwrap();
    let mut consumer = Consumer::new(addresses, ConsumerConfig::default()).unwrap();
    consumer.assign((0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect()).unwrap();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        consumer.seek(TOPIC, partition, Offset::Beginning).await.unwrap();
        ends.insert(partition, admin.list_offsets(TOPIC, partition, OffsetQuery::Latest).await.unwrap().offset);
    }
    let mut seen: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while ends.iter().any(|(&partition, &end)| consumer.position(TOPIC, partition).unwrap_or(0) < end) {
        assert!(tokio::time::Instant::now() < deadline, "reading back took over 90 s");
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            assert!(seen.insert(value.clone(), (record.partition, record.offset)).is_none(), "L6: {value} twice");
        }
    }
    for (value, at) in acked {
        assert_eq!(seen.get(value), Some(at), "L5/L10: acknowledged record {value} at {at:?}");
    }
    eprintln!("{} acknowledged records, {} read back from {addresses:?}", acked.len(), seen.len());
}

/// Replicas and preferred leaders per node, as the metadata (through `admin`) names them.
async fn placement(admin: &Admin) -> Option<(BTreeMap<u64, usize>, BTreeMap<u64, usize>)> {
    let topic = admin.describe_topic(TOPIC).await.ok()?;
    let (mut load, mut leads) = (BTreeMap::new(), BTreeMap::new());
    for partition in &topic.partitions {
        for node in &partition.replicas {
            *load.entry(*node).or_insert(0) += 1;
        }
        *leads.entry(partition.replicas[0]).or_insert(0) += 1;
    }
    Some((load, leads))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_rebalance_shrink_and_wipe_while_producing_and_consuming() {
    let mut cluster = ProcessCluster::start_with_settings(3, &format!("learner_catch_up_bytes_per_second = {THROTTLE}"));
    let admin = Admin::new(&[cluster.client_addr(3).as_str()]).unwrap();
    create_topic_until(&admin, TOPIC, PARTITIONS, tokio::time::Instant::now() + Duration::from_secs(40)).await;
    wait_until("the topic is described", 30, || async { admin.describe_topic(TOPIC).await.is_ok() }).await;

    // Grow to 5.
    for _ in 0..2 {
        let flags = ["--join".to_string(), cluster.client_addr(3), "--learner-catch-up-bytes-per-second".to_string(), THROTTLE.to_string()];
        let id = cluster.add_joining(&flags);
        cluster.restart(id);
    }
    wait_until("nodes 4 and 5 are registered", 30, || async {
        admin.describe_cluster().await.is_ok_and(|d| [4, 5].iter().all(|id| d.brokers.iter().any(|b| b.node_id == *id)))
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let everyone: Vec<String> = (1..=5).map(|id| cluster.client_addr(id)).collect();
    let producer = tokio::spawn(run_producer(everyone[2..].to_vec(), stop.clone()));
    let consumer = tokio::spawn(run_consumer(everyone[2..].to_vec(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Rebalance: 12 replicas over 5 nodes (2 or 3 each), 4 leaders (at most 1 each).
    let moves = admin.rebalance().await.expect("rebalance");
    assert!(moves > 0, "the added nodes hold nothing: a rebalance moves partitions");
    wait_until("the rebalance completes with replicas and leaders spread", 120, || async {
        let idle = admin.describe_cluster().await.is_ok_and(|d| d.reassignments.is_empty());
        idle && placement(&admin).await.is_some_and(|(load, leads)| {
            (1..=5).all(|node| (2..=3).contains(load.get(&node).unwrap_or(&0))) && leads.values().all(|&count| count <= 1)
        })
    })
    .await;

    // Shrink back to 3: every partition on nodes 1 and 2 moves.
    for node in [1, 2] {
        admin.decommission_node(node).await.expect("decommission");
        wait_until("the node is drained and removed", 120, || async {
            let removed =
                admin.describe_cluster().await.is_ok_and(|d| d.draining.is_empty() && d.brokers.iter().all(|b| b.node_id != node));
            removed && placement(&admin).await.is_some_and(|(load, _)| !load.contains_key(&node))
        })
        .await;
    }
    cluster.kill(1);
    cluster.kill(2);

    // Wipe node 4: it comes back as a new incarnation of the same member.
    let joined_before = cluster.log(4).matches("joined: every replica").count();
    cluster.kill(4);
    cluster.wipe(4);
    cluster.nodes[3].join_flags.as_mut().unwrap().push("--replace".to_string());
    cluster.restart(4);
    wait_until("node 4, wiped, has joined again", 120, || async {
        cluster.log(4).matches("joined: every replica").count() > joined_before
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let acked = producer.await.unwrap();
    let read = consumer.await.unwrap();
    assert!(acked.len() > 500, "{} records acknowledged", acked.len());
    assert!(read > 0, "the consumer read along");
    let finals: Vec<&str> = everyone[2..].iter().map(String::as_str).collect();
    read_back(&finals, &acked).await;
}
