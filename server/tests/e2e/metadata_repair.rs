//! A node whose *metadata* replica is damaged is repaired and serves again (issue 15; CHECKLISTS
//! R8 d, F-S3; DESIGN.md "Repair of a damaged replica"): 3 nodes, acknowledged records on a
//! partition of replication factor 3, node 2 stopped, both copies of its metadata group's hard
//! state damaged, and restarted. It starts quarantined (no client listener); it reports its
//! metadata replica through a peer, the controller finds every other metadata voter holding
//! its commit, node 2 sets the damaged files aside (kept under `quarantine/0.0/`) and rebuilds
//! the replica, out of the votes until it holds what the others held (its suspicion settles
//! only at a bound above 0), serves clients again, and reports the repair done: `cluster
//! status` shows it. Then, with node 1 stopped, nodes 2 and 3 still run the controller (a
//! topic is created through node 2) and serve every acknowledged record (L5) at its
//! acknowledged offset (L10).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{Admin, ClientError, OffsetQuery, Producer, ProducerConfig, ProducerRecord};

use common::{
    assert_set_aside_kept, create_topic_until, produce_acked, read_back_partition, rebuilt_replica_settled, settled_bounds, wait_for_log,
    wait_for_repairs_done, wait_until, without_colors, ProcessCluster,
};

const TOPIC: &str = "kept";
const RECORDS: u64 = 1_000;
const DAMAGED: u64 = 2;
/// The metadata group's directory name.
const METADATA_GROUP: u64 = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_damaged_metadata_replica_is_rebuilt_and_serves_again() {
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    create_topic_until(&admin, TOPIC, 1, tokio::time::Instant::now() + Duration::from_secs(30)).await;
    let acked = produce_acked(&addresses, TOPIC, RECORDS).await;
    assert!(acked.len() as u64 >= RECORDS * 9 / 10, "most records are acknowledged: {} of {RECORDS}", acked.len());

    // Both copies of node 2's metadata hard state damaged while it is down.
    let data_dir = cluster.nodes[DAMAGED as usize - 1].data_dir.clone();
    let hard_state = data_dir.join(METADATA_GROUP.to_string()).join("hard_state");
    cluster.kill(DAMAGED);
    let length = std::fs::metadata(&hard_state).unwrap().len() as usize;
    let settled_before = settled_bounds(&cluster.log(DAMAGED), METADATA_GROUP).len();
    std::fs::write(&hard_state, vec![0xa5; length]).unwrap();
    cluster.spawn_only(DAMAGED);

    let quarantined = "metadata files are damaged: serving no client";
    let before = without_colors(&cluster.log(DAMAGED)).matches(quarantined).count();
    wait_for_log(&cluster, DAMAGED, quarantined, before.max(1), Duration::from_secs(30)).await;
    wait_for_log(&cluster, DAMAGED, "rebuilding the damaged metadata replica: its files are set aside", 1, Duration::from_secs(60)).await;
    // The damaged files are kept, complete, for forensics.
    let set_aside = data_dir.join("quarantine").join(format!("{METADATA_GROUP}.0"));
    assert_set_aside_kept(&set_aside, length);

    // R8 d: the rebuilt replica settled only once its log reached what the other voters held.
    rebuilt_replica_settled(&cluster, DAMAGED, METADATA_GROUP, settled_before).await;
    wait_for_log(&cluster, DAMAGED, "the rebuilt metadata replica has caught up and votes: repaired", 1, Duration::from_secs(60)).await;
    // The repair is over, as the controller records it; the marker is gone.
    wait_for_repairs_done(&admin, 1, "the metadata repair").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while data_dir.join("odradek.metadata-rebuild").exists() {
        assert!(tokio::time::Instant::now() < deadline, "the rebuild marker stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Node 2 serves clients again and is a metadata voter again: without node 1, nodes 2 and 3
    // elect a controller (a topic is created through node 2) and serve every acknowledged record.
    cluster.kill(1);
    let node2 = cluster.client_addr(DAMAGED);
    let admin = Admin::new(&[node2.as_str()]).unwrap();
    create_topic_until(&admin, "after-repair", 1, tokio::time::Instant::now() + Duration::from_secs(60)).await;
    let survivors = [cluster.client_addr(2), cluster.client_addr(3)];
    let survivors: Vec<&str> = survivors.iter().map(String::as_str).collect();
    let survivors_admin = Admin::new(&survivors).unwrap();
    wait_until("the partition has a leader on nodes 2 and 3", 60, || async {
        survivors_admin.list_offsets(TOPIC, 0, OffsetQuery::Latest).await.is_ok()
    })
    .await;
    read_back_partition(&survivors, TOPIC, 0, &acked).await;
    eprintln!("{} acknowledged records read back from nodes 2 and 3 after node 2's metadata replica was repaired", acked.len());
}

/// How many of `records` records sent to topic `transfer` through `addresses` are acknowledged
/// (acks=all), by a producer without idempotence: a producer id comes from the controller,
/// which a cluster without a metadata quorum does not have.
async fn produce_plain(addresses: &[&str], records: u64) -> usize {
    let config = ProducerConfig { idempotence: false, request_timeout: Duration::from_secs(10), ..ProducerConfig::default() };
    let producer = Producer::new(addresses, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..records {
        deliveries.push(producer.send(ProducerRecord::new("transfer", format!("w{i:06}"))).await.expect("send queues"));
    }
    let mut acked = 0;
    for delivery in deliveries {
        acked += usize::from(delivery.await.is_ok());
    }
    producer.close().await.expect("close");
    acked
}

/// A leadership transfer to a replica on a quarantined node is refused, definitely, with the
/// reason, and leadership stays (issue 15, R13; `request::transfer`, consensus `hand_over`).
/// Node 3 is stopped and node 2 restarted with its metadata replica damaged: it stays
/// quarantined (its repair needs the controller, which needs a metadata quorum: node 1 alone is
/// none) while it hosts its partition replica, which acknowledges appends without leading.
/// Node 1 leads the partition with node 2's acknowledgements; `leader transfer` to node 2 gets
/// INVALID_REQUEST naming why, and node 1 still leads. Once node 3 is back, node 2 is repaired
/// and the same transfer goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_transfer_to_a_replica_on_a_quarantined_node_is_refused_and_leadership_stays() {
    const TOPIC_TRANSFER: &str = "transfer";
    let mut cluster = ProcessCluster::start(3);
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    create_topic_until(&admin, TOPIC_TRANSFER, 1, tokio::time::Instant::now() + Duration::from_secs(30)).await;
    let acked = produce_acked(&addresses, TOPIC_TRANSFER, 100).await;
    assert!(!acked.is_empty(), "records are acknowledged");

    let data_dir = cluster.nodes[DAMAGED as usize - 1].data_dir.clone();
    let hard_state = data_dir.join(METADATA_GROUP.to_string()).join("hard_state");
    cluster.kill(DAMAGED);
    cluster.kill(3);
    let length = std::fs::metadata(&hard_state).unwrap().len() as usize;
    std::fs::write(&hard_state, vec![0xa5; length]).unwrap();
    cluster.spawn_only(DAMAGED);
    let quarantined = "metadata files are damaged: serving no client";
    let before = without_colors(&cluster.log(DAMAGED)).matches(quarantined).count();
    wait_for_log(&cluster, DAMAGED, quarantined, before.max(1), Duration::from_secs(30)).await;

    // Node 1 leads with node 2's acknowledgements; appends reach node 2, whose answers say it
    // leads not. (Records through node 1 only: node 2 serves no client.)
    let node1 = cluster.client_addr(1);
    let node1 = [node1.as_str()];
    let admin = Admin::new(&node1).unwrap();
    let more = produce_plain(&node1, 50).await;
    assert!(more > 0, "node 1 leads the partition with node 2's acknowledgements");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        match admin.transfer_leader(TOPIC_TRANSFER, 0, DAMAGED).await {
            Err(ClientError::Server { code: ErrorCode::INVALID_REQUEST, message }) if message.contains("drops hand-overs now") => {
                break message
            }
            Ok(()) => panic!("leadership went to node {DAMAGED}, whose node is quarantined"),
            Err(error) if error.is_definite() || error.is_retriable() => {
                // Not caught up yet, or no leader yet: definite, nothing moved; ask again.
                assert!(tokio::time::Instant::now() < deadline, "never refused for the quarantine: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("an indefinite answer to a transfer that must be refused: {error}"),
        }
    };
    eprintln!("refused: {refusal}");
    assert!(refusal.contains(&format!("node {DAMAGED}")), "the refusal names the node: {refusal}");
    // Leadership stayed: a transfer to the current leader succeeds at once, and node 1 still
    // acknowledges records (alone it could not: node 2 never took the leadership).
    tokio::time::sleep(Duration::from_secs(1)).await;
    admin.transfer_leader(TOPIC_TRANSFER, 0, 1).await.expect("node 1 still leads");
    assert!(produce_plain(&node1, 10).await > 0, "node 1 still leads");
    assert!(!without_colors(&cluster.log(DAMAGED)).contains("rebuilding the damaged metadata replica"), "still quarantined");

    // Node 3 back: node 2's metadata replica is repaired, and the same transfer goes through.
    tokio::task::block_in_place(|| cluster.restart(3));
    wait_for_log(&cluster, DAMAGED, "the rebuilt metadata replica has caught up and votes: repaired", 1, Duration::from_secs(60)).await;
    // (A leader learns that a follower leads again from its next append answer: records.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(produce_plain(&node1, 10).await > 0, "the partition still takes records");
        match admin.transfer_leader(TOPIC_TRANSFER, 0, DAMAGED).await {
            Ok(()) => break,
            Err(error) => {
                assert!(tokio::time::Instant::now() < deadline, "a transfer to the repaired node never went through: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
