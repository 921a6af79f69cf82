//! Decommissioning a node of a running cluster (issue 15, dynamic membership), against real
//! processes: 3 bootstrap members and node 4 joined; node 1 (a controller voter and a replica of
//! every partition it was given) is decommissioned while a producer runs. Checked:
//! - a decommission cancelled while its node drains (node 4): the node stays a broker and is
//!   no longer draining (a cancel of a node not draining is refused);
//! - bad input refused definitely: an unknown node, a node draining already, a second node when
//!   fewer nodes than the replication factor would remain, and (at the end) the controller
//!   group's last voter;
//! - node 1 is listed as draining, leaves the controller voters (replaced there by node 4, a
//!   live non-voter, so the controller group keeps 3 voters), every replica moves off it and it
//!   is removed: no broker list or partition names it any more;
//! - V7: node 1, removed but still running, serves clients nothing (its Metadata names no
//!   leader, controller or itself; Produce and Fetch are refused NOT_LEADER);
//! - L5/L10: every acknowledged record reads back, at its acknowledged offset, from nodes 2, 3, 4.
//!
//! And a removed bootstrap member rejoins (issue 15, R8 d, F-M3; as in KRaft, only through the
//! join path under a new incarnation): on 3 bootstrap members, node 3 is decommissioned and
//! removed, then
//! - while it is still a member, a join under id 3 (a fresh directory) is refused definitely,
//!   and once removed, so is one at other addresses than its `--node` entry;
//! - started with `--join` on its old data directory, it exits with the reason (its old
//!   identity never comes back);
//! - started with `--join` on an emptied directory, it is registered again, follows the
//!   metadata log as a learner (the controller voters stay 1 and 2: as node 3 itself applied
//!   the configuration, it votes in nothing), takes a replica of a new topic and holds every
//!   acknowledged record; restarts of node 3 (from its `odradek.bootstrap`, which names itself)
//!   and of node 1 (whose bootstrap list names node 3) keep all of that.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::wire::proto::{ErrorCode, FetchRequest};
use odradek_client::{Admin, Producer, ProducerConfig, ProducerRecord};

use common::raw::{self, Raw};
use common::{create_topic_until, read_back_partition, refused_join, wait_until, ProcessCluster};

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
            && described.controller_voters == vec![2, 3, 4]
            && !described.controller_learners.contains(&1)
            && topic.partitions.iter().all(|partition| !partition.replicas.contains(&1) && partition.replicas.len() == 3)
    })
    .await;
    let acked = producer.await.unwrap();
    assert!(acked.len() as u64 >= RECORDS / 2, "most records are acknowledged ({} of {RECORDS})", acked.len());
    removed_node_refuses_clients(&cluster.client_addr(1)).await;
    cluster.kill(1);
    read_back_partition(survivors, TOPIC, 0, &acked).await;

    // The controller group's last voter is never decommissioned.
    survivors_admin.delete_topic(TOPIC).await.expect("delete the topic");
    // Node 3's copy of the metadata log may be behind the commit the topic's deletion just made:
    // the controller waits for it to catch up within the request instead of refusing.
    survivors_admin.change_controllers(&[3]).await.expect("one controller voter");
    wait_until("node 3 is the only controller voter", 60, || async {
        survivors_admin.describe_cluster().await.is_ok_and(|d| d.controller_voters == vec![3] && d.controller_voters_target.is_empty())
    })
    .await;
    expect_refusal(survivors_admin.decommission_node(3).await, "last voter");
}

/// V7, against the removed node itself (still running): it serves clients nothing from the
/// metadata it last had. Its Metadata lists the other brokers only, no controller and no
/// partition (the topic LEADER_NOT_AVAILABLE, so a client refreshes elsewhere); Produce and
/// Fetch are refused NOT_LEADER (definite, nothing appended or read); a controller request
/// NOT_CONTROLLER.
async fn removed_node_refuses_clients(address: &str) {
    let address = address.to_string();
    wait_until("removed node 1 refuses clients", 30, || {
        let address = address.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut raw = Raw::greeted(&address);
                let mut ask = raw::metadata(2);
                ask.mut_metadata().topics.push(TOPIC.to_string());
                let answer = raw.call(ask);
                answer.error == ErrorCode::NONE
                    && answer.get_metadata().controller == 0
                    && answer.get_metadata().brokers.iter().all(|broker| broker.node_id != 1)
                    && answer
                        .get_metadata()
                        .topics
                        .iter()
                        .all(|topic| topic.error == ErrorCode::LEADER_NOT_AVAILABLE && topic.partitions.is_empty())
            })
            .await
            .unwrap()
        }
    })
    .await;
    let address = address.clone();
    tokio::task::spawn_blocking(move || {
        let mut raw = Raw::greeted(&address);
        let produced = raw.call(raw::produce(3, TOPIC, raw::batch("after-removal")));
        assert_eq!(produced.error, ErrorCode::NOT_LEADER, "{produced:?}");
        assert!(produced.error_message.contains("removed from the cluster"), "{produced:?}");
        let fetched = raw.call(raw::request_with(4, |request| {
            let mut fetch = FetchRequest::new();
            fetch.topic = TOPIC.to_string();
            fetch.bytes_max = 1024;
            request.set_fetch(fetch);
        }));
        assert_eq!(fetched.error, ErrorCode::NOT_LEADER, "{fetched:?}");
        assert!(raw::fetched_records(&fetched).is_empty(), "{fetched:?}");
        let described = raw.call(raw::request_with(5, |request| request.set_describe_cluster(Default::default())));
        assert_eq!(described.error, ErrorCode::NOT_CONTROLLER, "{described:?}");
    })
    .await
    .unwrap();
}

/// Waits until node `id` (as it applied the metadata itself) lists node 3 as a broker and a
/// learner of the metadata group whose voters are 1 and 2.
async fn wait_node_three_back(admin: &Admin, address: &str, what: &str) {
    wait_until(what, 60, || async {
        admin.describe_node(address).await.is_ok_and(|described| {
            described.brokers.iter().any(|broker| broker.node_id == 3)
                && described.controller_voters == vec![1, 2]
                && described.controller_learners.contains(&3)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_bootstrap_member_rejoins_only_under_a_new_incarnation() {
    let mut cluster = ProcessCluster::start(3);
    let all: Vec<String> = (1..=3).map(|id| cluster.client_addr(id)).collect();
    let addresses: Vec<&str> = all.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    let seed = cluster.client_addr(1);
    wait_until("the cluster has a controller", 40, || async { admin.describe_cluster().await.is_ok_and(|d| d.controller != 0) }).await;

    // Node 3 is a member still: its id does not join, whatever the directory.
    let stderr = refused_join(3, &seed);
    assert!(stderr.contains("bootstrap list and was not removed") && stderr.contains("INVALID_REQUEST"), "{stderr}");

    admin.decommission_node(3).await.expect("decommission node 3");
    let survivors = Admin::new(&addresses[..2]).unwrap();
    wait_until("node 3 is removed, as node 1 applied it", 90, || async {
        survivors.describe_node(addresses[0]).await.is_ok_and(|described| {
            described.draining.is_empty()
                && described.brokers.iter().all(|broker| broker.node_id != 3)
                && described.controller_voters == vec![1, 2]
                && !described.controller_learners.contains(&3)
        })
    })
    .await;
    cluster.kill(3);
    // Removed, it rejoins only at the addresses every node's bootstrap list gives it.
    let stderr = refused_join(3, &seed);
    assert!(stderr.contains("but the bootstrap list names it") && stderr.contains("INVALID_REQUEST"), "{stderr}");

    // Its old data directory is its old identity: refused before asking, the process ends.
    cluster.rejoin(3, &["--join".to_string(), seed.clone()]);
    cluster.spawn_only(3);
    let status = cluster.wait_exit(3, Duration::from_secs(20)).expect("node 3 on its old directory exits");
    assert!(!status.success());
    let log = common::without_colors(&cluster.log(3));
    assert!(log.contains("holds a bootstrap member's state") && log.contains("empty data directory"), "{log}");

    // Emptied: a new incarnation, recorded by the join; a learner of the metadata group.
    cluster.wipe(3);
    cluster.restart(3);
    let three = cluster.client_addr(3);
    wait_node_three_back(&survivors, addresses[0], "node 1 lists node 3 back, as a metadata learner").await;
    wait_node_three_back(&admin, &three, "node 3 applied the metadata: a learner, voters 1 and 2").await;

    // It takes replicas again: a topic of replication factor 3 needs it.
    create_topic_until(&survivors, "back", 1, tokio::time::Instant::now() + Duration::from_secs(40)).await;
    wait_until("topic back is described", 30, || async { survivors.describe_topic("back").await.is_ok() }).await;
    let producer = Producer::new(&addresses[..2], ProducerConfig::default()).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let value = format!("b{i:04}");
        deliveries.push((value.clone(), producer.send(ProducerRecord::new("back", value).partition(0)).await.expect("queued")));
    }
    let mut acked = BTreeMap::new();
    for (value, delivery) in deliveries {
        acked.insert(value, delivery.await.expect("acknowledged").offset.expect("acks=all gives offsets"));
    }
    producer.close().await.expect("close");
    let last = *acked.values().max().unwrap();
    let holds_everything = |admin: Admin, address: String| async move {
        admin.describe_node(&address).await.is_ok_and(|described| {
            described.partitions.iter().any(|partition| partition.topic == "back" && partition.high_watermark > last)
        })
    };
    wait_until("node 3's replica holds every acknowledged record", 60, || holds_everything(admin.clone(), three.clone())).await;
    read_back_partition(&[three.as_str()], "back", 0, &acked).await;

    // Restarts: node 3 from its odradek.bootstrap (naming itself), node 1 from its flags.
    cluster.terminate(3);
    cluster.restart(3);
    cluster.terminate(1);
    cluster.restart(1);
    wait_node_three_back(&admin, &three, "node 3 restarted: still a learner, voters 1 and 2").await;
    wait_node_three_back(&admin, addresses[0], "node 1 restarted: node 3 still a broker and a learner").await;
    let listed = admin.describe_node(addresses[0]).await.unwrap();
    assert!(listed.brokers.iter().any(|broker| broker.node_id == 3 && broker.address == three), "{listed:?}");
    wait_until("node 3 still holds every acknowledged record", 60, || holds_everything(admin.clone(), three.clone())).await;
    read_back_partition(&[three.as_str()], "back", 0, &acked).await;
}
