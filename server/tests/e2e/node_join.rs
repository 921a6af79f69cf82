//! Whole nodes joining a running cluster (issue 15, dynamic membership), against real
//! processes: 3 bootstrap members, then node 4 started with `--join` (its `--node` names only
//! itself). Checked:
//! - node 4 is registered (every node lists it as a broker), learns the metadata log as a
//!   learner of the metadata group, and can receive replicas (a partition moved onto it serves
//!   every acknowledged record, L5/L10; a new topic places replicas on it);
//! - bad joins are refused definitely and the process exits with the reason: a bootstrap
//!   member's id, and node 4's id with another identity (a fresh data directory);
//! - the controller group's voters change through joint consensus: refusals (no voter left, an
//!   unknown node), then a move to voters 3 and 4, after which the metadata commits with nodes 1
//!   and 2 down (only a configuration of 3 and 4 can);
//! - the registered members survive restarts of every node: all four stopped and restarted,
//!   node 1 still lists node 4 and every topic, and every acknowledged record reads back;
//! - Kafka clients find a joined node: with Kafka listeners on every node, a bootstrap member's
//!   Kafka Metadata lists node 4 at the Kafka address it joined with, and node 4's lists every
//!   bootstrap member at theirs (the brokers' registered Kafka addresses, `meta::members`).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;
use crate::kafka_raw;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClusterConfig, ClusterSession, Producer, ProducerConfig, ProducerRecord, TopicConfig};

use kafka_protocol::messages::{MetadataRequest, RequestKind, ResponseKind};

use common::{create_topic_until, read_back_partition, refused_join, wait_until, ProcessCluster};

const TOPIC: &str = "grown";
const RECORDS: u64 = 1_000;

async fn produce(addresses: &[&str], topic: &str, from: u64, count: u64) -> BTreeMap<String, u64> {
    let producer = Producer::new(addresses, ProducerConfig::default()).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let value = format!("r{i:06}");
        deliveries.push((value.clone(), producer.send(ProducerRecord::new(topic, value).partition(0)).await.expect("queued")));
    }
    let mut acked = BTreeMap::new();
    for (value, delivery) in deliveries {
        let metadata = delivery.await.expect("acknowledged");
        acked.insert(value, metadata.offset.expect("acks=all gives offsets"));
    }
    producer.close().await.expect("close");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_running_cluster_and_the_controller_voters_move() {
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    create_topic_until(&admin, TOPIC, 1, tokio::time::Instant::now() + Duration::from_secs(40)).await;
    let mut acked = produce(&addresses, TOPIC, 0, RECORDS).await;

    // Node 4 joins through node 1 only.
    let seed = cluster.client_addr(1);
    let four = cluster.add_joining(&["--join".to_string(), seed.clone()]);
    assert_eq!(four, 4);
    cluster.restart(four);
    let four_address = cluster.client_addr(four);
    wait_until("node 4 registered and a learner of the metadata group, as node 4 itself applied it", 60, || async {
        match admin.describe_node(&four_address).await {
            Ok(report) => {
                report.brokers.iter().any(|broker| broker.node_id == 4)
                    && report.controller_learners.contains(&4)
                    && report.controller_voters == vec![1, 2, 3]
            }
            Err(_) => false,
        }
    })
    .await;
    let listed = admin.describe_node(&cluster.client_addr(2)).await.unwrap();
    assert!(listed.brokers.iter().any(|broker| broker.node_id == 4 && broker.address == four_address), "{listed:?}");

    // Refused joins: a bootstrap member's id; node 4's id with another data directory.
    let stderr = refused_join(2, &seed);
    assert!(stderr.contains("bootstrap list") && stderr.contains("INVALID_REQUEST"), "{stderr}");
    let stderr = refused_join(4, &seed);
    assert!(stderr.contains("another identity") && stderr.contains("--replace"), "{stderr}");

    // Node 4 can receive replicas: the partition moves onto it.
    admin.reassign_partition(TOPIC, 0, &[2, 3, 4]).await.expect("reassign onto node 4");
    wait_until("the move onto node 4 completes", 60, || async {
        let moved = admin.describe_topic(TOPIC).await.is_ok_and(|topic| topic.partitions[0].replicas == vec![2, 3, 4]);
        moved && admin.describe_cluster().await.is_ok_and(|cluster| cluster.reassignments.is_empty())
    })
    .await;
    read_back_partition(&[four_address.as_str()], TOPIC, 0, &acked).await;
    let on_four = admin.describe_node(&four_address).await.unwrap();
    assert!(on_four.partitions.iter().any(|p| p.topic == TOPIC), "node 4 hosts the moved partition: {on_four:?}");
    // New topics place replicas on node 4 too.
    admin.create_topic("spread", 4, 3, TopicConfig::default()).await.expect("create spread");
    wait_until("topic spread is described", 30, || async { admin.describe_topic("spread").await.is_ok() }).await;
    let spread = admin.describe_topic("spread").await.unwrap();
    assert!(spread.partitions.iter().any(|p| p.replicas.contains(&4)), "a new topic uses node 4: {spread:?}");

    // The controller group's voters: refusals, then a move to 3 and 4.
    for (voters, expected) in [(vec![], "no voter left"), (vec![3, 9], "not a registered broker"), (vec![3, 3], "twice")] {
        let error = admin.change_controllers(&voters).await.expect_err(expected);
        assert_eq!(error.code(), Some(ErrorCode::INVALID_REQUEST), "{error}");
        assert!(error.is_definite() && error.to_string().contains(expected), "{error}");
    }
    admin.change_controllers(&[3, 4]).await.expect("move the controller voters");
    wait_until("the controller voters are 3 and 4", 60, || async {
        let described = admin.describe_cluster().await;
        described.is_ok_and(|described| described.controller_voters == vec![3, 4] && described.controller_voters_target.is_empty())
    })
    .await;
    // Only voters {3, 4} can commit metadata with nodes 1 and 2 down.
    cluster.kill(1);
    cluster.kill(2);
    let survivors = [cluster.client_addr(3), four_address.clone()];
    let survivors: Vec<&str> = survivors.iter().map(String::as_str).collect();
    let admin_survivors = Admin::new(&survivors).unwrap();
    admin_survivors.create_topic("while-1-and-2-are-down", 1, 2, TopicConfig::default()).await.expect("metadata commits on 3 and 4");
    // A target whose majority is down is refused (definite, nothing proposed) once the
    // controller has waited half the request's timeout for it to catch up.
    let short = ClusterConfig { operation_timeout: Duration::from_secs(4), ..ClusterConfig::default() };
    let admin_short = Admin::with_cluster(ClusterSession::new(&survivors, short).unwrap());
    let error = admin_short.change_controllers(&[1, 2, 3]).await.expect_err("voters 1 and 2 are down");
    assert_eq!(error.code(), Some(ErrorCode::INVALID_REQUEST), "{error}");
    assert!(error.is_definite() && error.to_string().contains("held the metadata log"), "{error}");
    let described = admin_survivors.describe_cluster().await.expect("describe the cluster");
    assert!(described.controller_voters == vec![3, 4] && described.controller_voters_target.is_empty(), "{described:?}");
    cluster.restart(1);
    cluster.restart(2);
    acked.extend(produce(&addresses, TOPIC, RECORDS, RECORDS).await);

    // Every node stopped and restarted: the members and the metadata survive.
    for id in 1..=4 {
        assert!(cluster.terminate(id).success(), "node {id} stops cleanly");
    }
    for id in 1..=4 {
        cluster.restart(id);
    }
    let node_one = cluster.client_addr(1);
    wait_until("node 1, restarted, lists node 4 and every topic", 60, || async {
        admin
            .describe_node(&node_one)
            .await
            .is_ok_and(|report| report.brokers.iter().any(|broker| broker.node_id == 4) && report.controller_voters == vec![3, 4])
            && Admin::new(&[node_one.as_str()])
                .unwrap()
                .list_topics()
                .await
                .is_ok_and(|topics| topics.contains(&"while-1-and-2-are-down".to_string()))
    })
    .await;
    let everyone: Vec<String> = (1..=4).map(|id| cluster.client_addr(id)).collect();
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    read_back_partition(&everyone, TOPIC, 0, &acked).await;
}

/// The brokers a node's Kafka listener advertises: node id → "host:port" (none while it does
/// not listen yet).
fn kafka_brokers(kafka_address: &str) -> BTreeMap<i32, String> {
    if std::net::TcpStream::connect(kafka_address).is_err() {
        return BTreeMap::new();
    }
    let mut raw = kafka_raw::KafkaRaw::connect(kafka_address);
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(Vec::new())));
    let ResponseKind::Metadata(metadata) = raw.call(12, request) else { panic!("not a Metadata answer") };
    metadata.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_find_a_joined_node_and_it_finds_the_others() {
    let mut cluster = ProcessCluster::start_with_kafka(3);
    let seed = cluster.client_addr(1);
    let four = cluster.add_joining(&["--join".to_string(), seed]);
    cluster.restart(four);
    let every: BTreeMap<i32, String> = (1..=4).map(|id| (id as i32, cluster.kafka_addr(id))).collect();
    for node in 1..=4 {
        let kafka = cluster.kafka_addr(node);
        let every = every.clone();
        wait_until(&format!("node {node}'s Kafka Metadata lists all four brokers at their Kafka addresses"), 60, || {
            let (kafka, every) = (kafka.clone(), every.clone());
            async move { tokio::task::spawn_blocking(move || kafka_brokers(&kafka) == every).await.unwrap() }
        })
        .await;
    }
}
