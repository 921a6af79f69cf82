//! A node whose disk is replaced rejoins under a new incarnation (CHECKLISTS F-P7, F-M3, R8 d;
//! DESIGN.md "Node identity and rejoining"): 3 nodes, acknowledged records on a topic of
//! replication factor 3, node 2 stopped, its data directory deleted, and restarted. It must
//! stay out of every group's votes until its log holds what the other voters held (the
//! suspicion of its whole log settles only once its log reaches a bound above 0), finish
//! joining, and then serve as a voter: with node 1 stopped, nodes 2 and 3 elect leaders and every
//! acknowledged record is read back (L5) at its acknowledged offset (L10).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::{Admin, Producer, ProducerConfig, ProducerRecord};

use common::{
    create_topic_replicated_until, create_topic_until, read_back_partition, wait_for_log, wait_for_partition_leader, without_colors,
    ProcessCluster,
};

const TOPIC: &str = "replaced";
const PARTITIONS: u32 = 3;
const RECORDS: u64 = 3_000;
const WIPED: u64 = 2;

/// Value → (partition, offset) of every acknowledged record.
async fn produce(addresses: &[&str]) -> BTreeMap<String, (u32, u64)> {
    produce_to(addresses, TOPIC).await
}

/// [`produce`] to `topic`.
async fn produce_to(addresses: &[&str], topic: &str) -> BTreeMap<String, (u32, u64)> {
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let value = format!("v{i:06}");
        let record = ProducerRecord::new(topic, value.clone()).key(format!("k{}", i % 16));
        deliveries.push((value, producer.send(record).await.expect("send queues")));
    }
    let mut acked = BTreeMap::new();
    for (value, delivery) in deliveries {
        if let Ok(metadata) = delivery.await {
            acked.insert(value, (metadata.partition, metadata.offset.expect("acks=all gives offsets")));
        }
    }
    producer.close().await.expect("close");
    acked
}

/// The `bound` of every "suspicion settled" line in `log` (one per group that settled).
fn settled_bounds(log: &str) -> Vec<u64> {
    without_colors(log)
        .lines()
        .filter(|line| line.contains("suspicion settled"))
        .filter_map(|line| line.split_whitespace().find_map(|field| field.strip_prefix("bound=")))
        .map(|bound| bound.parse().expect("a bound is a number"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_under_a_new_incarnation_and_catches_up_before_it_votes() {
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    create_topic_until(&admin, TOPIC, PARTITIONS, tokio::time::Instant::now() + Duration::from_secs(30)).await;
    let acked = produce(&addresses).await;
    assert!(acked.len() as u64 >= RECORDS * 9 / 10, "most records are acknowledged: {} of {RECORDS}", acked.len());
    // Every node of a new cluster started as a new incarnation, and settled at once.
    assert!(cluster.log(WIPED).contains("joined: every replica"), "a new cluster joins:\n{}", cluster.log(WIPED));
    let settled_before = settled_bounds(&cluster.log(WIPED)).len();

    cluster.kill(WIPED);
    cluster.wipe(WIPED);
    tokio::task::block_in_place(|| cluster.restart(WIPED));
    // The log file goes on from the first start, which joined once already.
    wait_for_log(&cluster, WIPED, "joined: every replica", 2, Duration::from_secs(60)).await;
    let log = cluster.log(WIPED);
    assert!(log.matches("the data directory is a new incarnation").count() == 2, "started twice as a new incarnation:\n{log}");
    // R8 d: the metadata group and each partition settled only once the log reached what the
    // other voters held, which after the produce is more than nothing.
    let bounds = settled_bounds(&log)[settled_before..].to_vec();
    assert_eq!(bounds.len(), 1 + PARTITIONS as usize, "one settled suspicion per group: {bounds:?}\n{log}");
    assert!(bounds.iter().all(|&bound| bound > 0), "every group had to catch up before voting: {bounds:?}");

    // Node 2 is a voter again: without node 1, nodes 2 and 3 elect leaders and serve everything.
    cluster.kill(1);
    let survivors = [cluster.client_addr(2), cluster.client_addr(3)];
    let survivors: Vec<&str> = survivors.iter().map(String::as_str).collect();
    read_back_every_acked(&survivors, TOPIC, &acked).await;
    eprintln!("{} acknowledged records read back from nodes 2 and 3 after node 2's disk was replaced", acked.len());
}

/// Every acknowledged record (`acked`: value -> (partition, offset)) of `topic` is read back
/// through `addresses` at its offset, once (L5, L6, L10), each partition within 60 s of a leader.
async fn read_back_every_acked(addresses: &[&str], topic: &str, acked: &BTreeMap<String, (u32, u64)>) {
    for partition in 0..PARTITIONS {
        let of_partition: BTreeMap<String, u64> =
            acked.iter().filter(|(_, &(p, _))| p == partition).map(|(value, &(_, offset))| (value.clone(), offset)).collect();
        wait_for_partition_leader(addresses, topic, partition, Duration::from_secs(60)).await;
        read_back_partition(addresses, topic, partition, &of_partition).await;
    }
}

/// Replication factor 2 (issue 15, "RF 2 repair"): a wiped node's replica of a partition of two
/// replicas can settle only from the other one, which cannot lead alone. Here both other nodes
/// restart while node 2 is down, so no partition it shares has a leader when it comes back: its
/// replicas, suspect of their whole logs, must vote for the other voter of their pair (in every
/// quorum of the two, so it holds every committed entry: consensus `Suspect::may_vote_for`) and
/// catch up from it. Before, they voted for nobody and node 2 never joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_partitions_of_two_replicas_that_have_no_leader() {
    const TOPIC_RF2: &str = "replaced-rf2";
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    create_topic_replicated_until(&admin, TOPIC_RF2, PARTITIONS, 2, tokio::time::Instant::now() + Duration::from_secs(30)).await;
    let acked = produce_to(&addresses, TOPIC_RF2).await;
    assert!(acked.len() as u64 >= RECORDS * 9 / 10, "most records are acknowledged: {} of {RECORDS}", acked.len());
    // Three partitions of two replicas on three nodes: node 2 holds two of them (spread evenly).
    let topic = admin.describe_topic(TOPIC_RF2).await.unwrap();
    let shared = topic.partitions.iter().filter(|partition| partition.replicas.contains(&WIPED)).count();
    assert!(shared >= 1, "node {WIPED} holds a replica: {topic:?}");
    let settled_before = settled_bounds(&cluster.log(WIPED)).len();

    cluster.kill(WIPED);
    cluster.wipe(WIPED);
    // Every other node restarts while node 2 is down (one at a time: the metadata keeps a
    // quorum of two once each is back), so no partition it shares has a leader any more.
    for other in [1, 3] {
        cluster.kill(other);
        tokio::task::block_in_place(|| cluster.restart(other));
    }
    tokio::task::block_in_place(|| cluster.restart(WIPED));
    wait_for_log(&cluster, WIPED, "joined: every replica", 2, Duration::from_secs(60)).await;
    let log = cluster.log(WIPED);
    let bounds = settled_bounds(&log)[settled_before..].to_vec();
    assert_eq!(bounds.len(), 1 + shared, "one settled suspicion per group: {bounds:?}\n{log}");
    assert!(bounds.iter().all(|&bound| bound > 0), "every group had to catch up before voting: {bounds:?}");
    read_back_every_acked(&addresses, TOPIC_RF2, &acked).await;
    eprintln!("{} acknowledged records read back after node {WIPED} rejoined {shared} partitions of two replicas", acked.len());
}
