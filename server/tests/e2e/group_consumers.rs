//! Consumer groups end to end: the real `odradek-client` `Consumer` with `subscribe` against real
//! `odradek server` processes, in both protocols. Two members share a topic (each partition
//! owned by one member at a time), commit what they processed, one leaves, the other takes its
//! partitions over from the committed offsets: every produced record is consumed, and the final
//! committed offsets equal the log ends (C2: nothing committed past what was delivered; C3: the
//! survivor resumes at the commit, so nothing is skipped).

#![cfg(not(madsim))]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use odradek_client::wire::proto::ErrorCode;
use odradek_client::{
    Admin, ClientError, Consumer, ConsumerConfig, GroupProtocol, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};

use common::ProcessCluster;

const PARTITIONS: u32 = 4;
const RECORDS: u64 = 400;

async fn produce_all(bootstrap: &[&str], topic: &str) {
    let producer = Producer::new(bootstrap, ProducerConfig::default()).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(topic, format!("v{i:04}")).key(format!("k{}", i % 16));
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    for delivery in deliveries {
        delivery.await.expect("acknowledged");
    }
}

fn member_config(group: &str, protocol: GroupProtocol) -> ConsumerConfig {
    ConsumerConfig {
        group_id: Some(group.to_string()),
        group_protocol: protocol,
        group_offset_reset: OffsetReset::Earliest,
        enable_auto_commit: false,
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(200),
        ..ConsumerConfig::default()
    }
}

/// Polls `consumer` once, commits what it returned, and adds the values to `seen`.
async fn poll_and_commit(consumer: &mut Consumer, seen: &mut BTreeMap<String, u32>) -> usize {
    let records = consumer.poll(Duration::from_millis(200)).await.expect("poll");
    for record in &records {
        let value = String::from_utf8(record.value.clone().expect("a value").to_vec()).unwrap();
        *seen.entry(value).or_default() += 1;
    }
    if !records.is_empty() {
        commit(consumer).await;
    }
    records.len()
}

/// Commits `consumer`'s positions (what its polls returned).
async fn commit(consumer: &mut Consumer) {
    // A commit refused because the member's generation or epoch moved on (a rebalance
    // between the poll and the commit) is what Kafka's CommitFailedException is: definite,
    // the records go to the partition's next owner again. Anything else fails the test.
    if let Err(error) = consumer.commit().await {
        let fenced = matches!(error, ClientError::NotMember { .. })
            || error.code().is_some_and(|code| {
                [
                    ErrorCode::STALE_MEMBER_EPOCH,
                    ErrorCode::FENCED_MEMBER_EPOCH,
                    ErrorCode::ILLEGAL_GENERATION,
                    ErrorCode::REBALANCE_IN_PROGRESS,
                    ErrorCode::UNKNOWN_MEMBER_ID,
                ]
                .contains(&code)
            });
        assert!(fenced && error.is_definite(), "commit of what poll returned: {error}");
    }
}

async fn two_members_then_one(protocol: GroupProtocol, group: &str) {
    let cluster = ProcessCluster::start(3);
    let bootstrap_text = cluster.bootstrap();
    let bootstrap: Vec<&str> = bootstrap_text.split(',').collect();
    let admin = Admin::new(&bootstrap).expect("admin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.create_topic("orders", PARTITIONS, 3, TopicConfig::default()).await.is_err() {
        assert!(Instant::now() < deadline, "topic creation kept failing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce_all(&bootstrap, "orders").await;

    let mut first = Consumer::new(&bootstrap, member_config(group, protocol)).expect("consumer");
    first.subscribe(["orders"]).expect("subscribe");
    let mut second = Consumer::new(&bootstrap, member_config(group, protocol)).expect("consumer");
    second.subscribe(["orders"]).expect("subscribe");
    let mut seen = BTreeMap::new();
    // Both members poll until the group has read about half, sharing the partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < (RECORDS / 2) as usize {
        assert!(Instant::now() < deadline, "the group read only {} records", seen.len());
        poll_and_commit(&mut first, &mut seen).await;
        poll_and_commit(&mut second, &mut seen).await;
        let mine: BTreeSet<_> = first.assignment().iter().cloned().collect();
        let theirs: BTreeSet<_> = second.assignment().iter().cloned().collect();
        assert!(mine.is_disjoint(&theirs), "one partition, two owners: {mine:?} and {theirs:?}");
    }
    // The second member leaves; the first takes its partitions over from their commits.
    second.close().await.expect("close commits and leaves");
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < RECORDS as usize {
        assert!(Instant::now() < deadline, "after the leave the group read only {} of {RECORDS}", seen.len());
        poll_and_commit(&mut first, &mut seen).await;
    }
    let missing: Vec<String> = (0..RECORDS).map(|i| format!("v{i:04}")).filter(|v| !seen.contains_key(v)).collect();
    assert!(missing.is_empty(), "never consumed: {missing:?}");
    // Every partition's committed offset is its end: the group's position is durable.
    let ends: BTreeMap<u32, u64> = {
        let description = admin.describe_cluster().await.expect("describe");
        description.partitions.iter().filter(|p| p.topic == "orders").map(|p| (p.partition, p.high_watermark)).collect()
    };
    // A commit a rebalance refused (allowed above) leaves its partition's commit short: the
    // next owner reads the records again, or, when that is the same member (the rebalance did
    // not move the partition), its position is past them and its polls return nothing to
    // commit. So the survivor polls and commits its positions until its commits reach every
    // end, or the deadline, when the assertion below says which fell short.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = admin.list_group_offsets(group).await.expect("offsets");
        let behind = ends.iter().any(|(&partition, &end)| committed.get(&("orders".to_string(), partition)) != Some(&end));
        if !behind || Instant::now() >= deadline {
            break;
        }
        if poll_and_commit(&mut first, &mut seen).await == 0 {
            commit(&mut first).await;
        }
    }
    let committed = admin.list_group_offsets(group).await.expect("offsets");
    for (partition, end) in ends {
        let offset = committed.get(&("orders".to_string(), partition)).copied();
        assert_eq!(offset, Some(end), "partition {partition}: committed {offset:?}, log end {end}");
    }
    first.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_group_shares_and_hands_over_partitions() {
    two_members_then_one(GroupProtocol::Consumer, "kip848").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_protocol_group_shares_and_hands_over_partitions() {
    two_members_then_one(GroupProtocol::Classic, "classic").await;
}
