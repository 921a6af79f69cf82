//! Partition reassignment against real processes (issue 15, F-M1): 4 nodes, a topic of one
//! partition with replication factor 3 on nodes 1, 2, 3, moved to 2, 3, 4 while a producer
//! runs. The move's bad inputs are refused definitely meanwhile. Afterwards:
//! - L5: every acknowledged record is read back, at the offset its acknowledgement named (L10),
//!   from the new replica set;
//! - the metadata names the target, no reassignment is left in progress, and node 1 has
//!   deleted its copy of the partition while node 4 holds one;
//! - moved back to 1, 2, 3 (node 1 joins again with an empty log, out of the votes until it
//!   has caught up), every acknowledged record is read from nodes 1, 2, 3 and node 4 deleted
//!   its copy.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClusterConfig, ClusterSession, Producer, ProducerConfig, ProducerRecord};

use common::{create_topic_until, read_back_partition, ProcessCluster};

const RECORDS: u64 = 6_000;
const TOPIC: &str = "moving";

async fn run_producer(bootstrap: Vec<String>) -> (BTreeMap<String, u64>, u64) {
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let value = format!("r{i:06}");
        let delivery = producer.send(ProducerRecord::new(TOPIC, value.clone()).partition(0)).await.expect("send queues");
        deliveries.push((value, delivery));
        if i % 200 == 199 {
            // Spread the load over the move.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    for (value, delivery) in deliveries {
        match delivery.await {
            Ok(metadata) => drop(acked.insert(value, metadata.offset.expect("acks=all gives offsets"))),
            Err(_) => failed += 1,
        }
    }
    producer.close().await.expect("close");
    (acked, failed)
}

/// Files under `dir`, at any depth.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.map(|entry| entry.unwrap().path()).map(|path| if path.is_dir() { files_under(&path) } else { 1 }).sum()
    })
}

/// The partition groups (directories with numeric names but 0, the metadata group) of which a
/// data dir holds files (a deleted replica leaves its emptied directories behind).
fn partition_dirs(cluster: &ProcessCluster, id: u64) -> Vec<String> {
    let dir = &cluster.nodes[id as usize - 1].data_dir;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("data dir")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name != "0" && name.parse::<u64>().is_ok() && files_under(&dir.join(name)) > 0)
        .collect();
    names.sort();
    names
}

fn expect_refusal(outcome: Result<(), odradek_client::ClientError>, code: ErrorCode, what: &str) {
    let error = outcome.expect_err(what);
    assert_eq!(error.code(), Some(code), "{what}: {error}");
    assert!(error.is_definite(), "{what} is not definite: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_to_another_replica_set_while_producing() {
    let cluster = ProcessCluster::start(4);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    create_topic_until(&admin, TOPIC, 1, deadline).await;
    loop {
        let topic = admin.describe_topic(TOPIC).await;
        // The preferred replica (node 1) leads: the move must hand its leadership away first.
        if topic.as_ref().is_ok_and(|topic| topic.partitions[0].leader == 1) {
            assert_eq!(topic.unwrap().partitions[0].replicas, vec![1, 2, 3], "the first topic of 4 brokers sits on 1, 2, 3");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 1 does not lead: {topic:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = std::time::Instant::now();
    let producer = tokio::spawn(run_producer(bootstrap.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin.reassign_partition(TOPIC, 0, &[2, 3, 4]).await.expect("reassign");
    // Bad input while the move runs: each refused definitely, none recorded.
    expect_refusal(admin.reassign_partition(TOPIC, 0, &[1, 2, 4]).await, ErrorCode::INVALID_REQUEST, "a second move at once");
    // The client retries UNKNOWN_TOPIC_OR_PARTITION (metadata may lag) until its operation
    // timeout: a short one keeps the test short.
    let config = ClusterConfig { operation_timeout: Duration::from_millis(300), ..ClusterConfig::default() };
    let impatient = Admin::with_cluster(ClusterSession::new(&addresses, config).unwrap());
    expect_refusal(impatient.reassign_partition(TOPIC, 1, &[1, 2, 4]).await, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "no partition 1");
    expect_refusal(impatient.reassign_partition("nothing", 0, &[1, 2, 4]).await, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "no topic");

    wait_moved(&admin, &[2, 3, 4], &cluster).await;
    eprintln!("moved {:?} after the producer started", started.elapsed());
    let leader = admin.describe_topic(TOPIC).await.unwrap().partitions[0].leader;
    assert!([0, 2, 3, 4].contains(&leader), "node {leader}, removed, leads");
    // Refusals against the settled partition: unknown node, fewer replicas, a duplicate.
    expect_refusal(admin.reassign_partition(TOPIC, 0, &[2, 3, 9]).await, ErrorCode::INVALID_REQUEST, "an unknown node");
    expect_refusal(admin.reassign_partition(TOPIC, 0, &[2, 3]).await, ErrorCode::INVALID_REQUEST, "fewer replicas");
    expect_refusal(admin.reassign_partition(TOPIC, 0, &[2, 3, 3]).await, ErrorCode::INVALID_REQUEST, "a duplicate");
    assert_eq!(admin.describe_topic(TOPIC).await.unwrap().partitions[0].replicas, vec![2, 3, 4], "a refused move changed the replicas");

    let (acked, failed) = producer.await.unwrap();
    eprintln!("the producer ended after {:?}", started.elapsed());
    assert_eq!(acked.len() as u64 + failed, RECORDS);
    assert!(acked.len() as u64 >= RECORDS / 2, "most records are acknowledged ({} of {RECORDS}; {failed} failed)", acked.len());

    // Node 1 deleted its copy; node 4 holds one.
    let moved = partition_dirs(&cluster, 4);
    assert_eq!(moved.len(), 1, "node 4 holds exactly the moved partition: {moved:?}");
    wait_deleted(&cluster, 1, &moved[0]).await;
    // L5/L10: every acknowledged record, read from the new replica set (node 1 is not asked).
    read_back_partition(&addresses[1..], TOPIC, 0, &acked).await;

    // And back: node 1, whose copy is gone, joins again as a new replica (it holds no vote
    // until it has caught up) and node 4 leaves.
    admin.reassign_partition(TOPIC, 0, &[1, 2, 3]).await.expect("reassign back");
    wait_moved(&admin, &[1, 2, 3], &cluster).await;
    wait_deleted(&cluster, 4, &moved[0]).await;
    read_back_partition(&addresses[..3], TOPIC, 0, &acked).await;
}

/// Waits until the metadata names `target` and nothing is moving.
async fn wait_moved(admin: &Admin, target: &[u64], cluster: &ProcessCluster) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let described = admin.describe_cluster().await;
        let topic = admin.describe_topic(TOPIC).await;
        if let (Ok(described), Ok(topic)) = (&described, &topic) {
            if described.reassignments.is_empty() && topic.partitions[0].replicas == target {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the move did not complete in 60 s: {described:?} {topic:?}\n{}", cluster.log(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until node `id` holds no file of partition group `group`.
async fn wait_deleted(cluster: &ProcessCluster, id: u64, group: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while partition_dirs(cluster, id).iter().any(|name| name == group) {
        assert!(tokio::time::Instant::now() < deadline, "node {id} still holds group {group} 30 s after the move");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
