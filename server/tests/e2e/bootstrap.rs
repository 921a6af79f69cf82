//! A fresh cluster's nodes are all new incarnations, so each starts joining (DESIGN.md "Node
//! identity and rejoining"): the groups it creates while joining open suspect of their whole log
//! (R8 d) and wait for every other voter's answer before anyone may elect them. Once a node has
//! joined, a group created later (a new topic) is a replica new to its group, not one the node
//! lost: it opens normally and votes at once. Before that was so, every topic of a cluster that
//! had not restarted yet waited for all of its voters (a refused first campaign, an election
//! timeout: the first-write stall of BENCHMARKS.md's side-by-side run; no leader at all with one
//! replica down).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::time::Duration;

use odradek_client::{Admin, Producer, ProducerConfig, ProducerRecord, TopicConfig};

use common::ProcessCluster;

/// What a node logs for each group it creates as a new incarnation's (consensus `node/group.rs`).
const WHOLE_LOG_SUSPECT: &str = "created the group with an empty log";
const JOINED: &str = "joined: every replica of this new incarnation has caught up and votes";
const PARTITIONS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_after_the_nodes_joined_opens_as_new_replicas() {
    let cluster = ProcessCluster::start(3);
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !(1..=3).all(|id| cluster.log(id).contains(JOINED)) {
            assert!(tokio::time::Instant::now() < deadline, "not every node joined within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let suspect_before: Vec<usize> = (1..=3).map(|id| cluster.log(id).matches(WHOLE_LOG_SUSPECT).count()).collect();
        assert!(suspect_before.iter().all(|&count| count >= 1), "the metadata group opened suspect while joining: {suspect_before:?}");

        let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
        let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
        let admin = Admin::new(&addresses).unwrap();
        admin.create_topic("late", PARTITIONS, 3, TopicConfig::default()).await.expect("create topic");
        let producer = Producer::new(&addresses, ProducerConfig::default()).await.expect("producer");
        for partition in 0..PARTITIONS {
            let delivery = producer.send(ProducerRecord::new("late", "v").partition(partition)).await.expect("send queues");
            delivery.await.expect("acknowledged");
        }
        producer.close().await.expect("close");

        let suspect_after: Vec<usize> = (1..=3).map(|id| cluster.log(id).matches(WHOLE_LOG_SUSPECT).count()).collect();
        assert_eq!(suspect_after, suspect_before, "the new topic's replicas opened as lost ones on nodes that had joined");
    }
}
