//! Decommissioning a node of a running cluster (issue 15, dynamic membership), against real
//! processes: 3 bootstrap members and node 4 joined; node 1 (a controller voter and a replica of
//! every partition it was given) is decommissioned while a producer runs. Checked:
//! - a decommission cancelled while its node drains (node 4): the node stays a broker and is
//!   no longer draining (a cancel of a node not draining is refused);
//! - bad input refused definitely: an unknown node, a node draining already, a second node when
//!   fewer nodes than the replication factor would remain, and (at the end) the controller
//!   group's last voter;
//! - node 1 is listed as draining, leaves the controller voters, every replica moves off it and
//!   it is removed: no broker list or partition names it any more;
//! - L5/L10: every acknowledged record reads back, at its acknowledged offset, from nodes 2, 3, 4.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, Producer, ProducerConfig, ProducerRecord};

use common::{create_topic_until, read_back_partition, wait_until, ProcessCluster};

const TOPIC: &str = "drained";
const RECORDS: u64 = 3_000;

async fn run_producer(addresses: Vec<String>) -> BTreeMap<String, u64> {
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let config = ProducerConfig { request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(&addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let value = format!("r{i:06}");
        deliveries.push((value.clone(), producer.send(ProducerRecord::new(TOPIC, value).partition(0)).await.expect("queued")));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut acked = BTreeMap::new();
    for (value, delivery) in deliveries {
        if let Ok(metadata) = delivery.await {
            acked.insert(value, metadata.offset.expect("acks=all gives offsets"));
        }
    }
    producer.close().await.expect("close");
    acked
}

fn expect_refusal(outcome: Result<(), odradek_client::ClientError>, expected: &str) {
    let error = outcome.expect_err(expected);
    assert_eq!(error.code(), Some(ErrorCode::INVALID_REQUEST), "{expected}: {error}");
    assert!(error.is_definite() && error.to_string().contains(expected), "{expected}: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_node_drains_then_leaves_and_nothing_acknowledged_is_lost() {
    let mut cluster = ProcessCluster::start(3);
    let four = cluster.add_joining(&["--join".to_string(), cluster.client_addr(1)]);
    cluster.restart(four);
    let all: Vec<String> = (1..=4).map(|id| cluster.client_addr(id)).collect();
    let addresses: Vec<&str> = all.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    wait_until("node 4 is registered", 30, || async {
        admin.describe_cluster().await.is_ok_and(|described| described.brokers.iter().any(|broker| broker.node_id == 4))
    })
    .await;
    create_topic_until(&admin, TOPIC, 3, tokio::time::Instant::now() + Duration::from_secs(40)).await;
    wait_until("topic described", 30, || async { admin.describe_topic(TOPIC).await.is_ok() }).await;

    let producer = tokio::spawn(run_producer(all[1..].to_vec()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_refusal(admin.decommission_node(9).await, "not a registered broker");
    // A decommission can be cancelled while the node drains: node 4 stays a member.
    expect_refusal(admin.cancel_decommission(4).await, "not being decommissioned");
    admin.decommission_node(4).await.expect("decommission node 4");
    admin.cancel_decommission(4).await.expect("cancel node 4's decommission");
    wait_until("node 4 no longer drains and stays a broker", 30, || async {
        admin.describe_cluster().await.is_ok_and(|d| d.draining.is_empty() && d.brokers.iter().any(|broker| broker.node_id == 4))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let described = admin.describe_cluster().await.unwrap();
    assert!(described.brokers.iter().any(|broker| broker.node_id == 4), "a cancelled decommission removes nothing: {described:?}");
    admin.decommission_node(1).await.expect("decommission node 1");
    expect_refusal(admin.decommission_node(1).await, "already");
    expect_refusal(admin.decommission_node(2).await, "replication factor 3");
    let draining = admin.describe_cluster().await.unwrap().draining;
    assert!(draining.is_empty() || draining == vec![1], "{draining:?}");

    let survivors = &addresses[1..];
    let survivors_admin = Admin::new(survivors).unwrap();
    wait_until("node 1 is drained and removed", 90, || async {
        let Ok(described) = survivors_admin.describe_node(survivors[0]).await else { return false };
        let Ok(topic) = survivors_admin.describe_topic(TOPIC).await else { return false };
        described.draining.is_empty()
            && described.brokers.iter().all(|broker| broker.node_id != 1)
            && !described.controller_voters.contains(&1)
            && !described.controller_learners.contains(&1)
            && topic.partitions.iter().all(|partition| !partition.replicas.contains(&1) && partition.replicas.len() == 3)
    })
    .await;
    let acked = producer.await.unwrap();
    assert!(acked.len() as u64 >= RECORDS / 2, "most records are acknowledged ({} of {RECORDS})", acked.len());
    cluster.kill(1);
    read_back_partition(survivors, TOPIC, 0, &acked).await;

    // The controller group's last voter is never decommissioned.
    survivors_admin.delete_topic(TOPIC).await.expect("delete the topic");
    survivors_admin.change_controllers(&[3]).await.expect("one controller voter");
    wait_until("node 3 is the only controller voter", 60, || async {
        survivors_admin.describe_cluster().await.is_ok_and(|d| d.controller_voters == vec![3] && d.controller_voters_target.is_empty())
    })
    .await;
    expect_refusal(survivors_admin.decommission_node(3).await, "last voter");
}
