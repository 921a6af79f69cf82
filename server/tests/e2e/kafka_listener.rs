//! The Kafka listener (issue 16) end to end over real sockets, with the `kafka-protocol` codecs
//! on the client side: negotiation, topic creation, pipelined produces answered in order
//! (acks=0 answered never), fetch of whole batches with the base offsets the log assigned and
//! the high watermark (L12), and bad input (unknown API, unsupported version, oversized and
//! truncated frames, a frame naming a huge array) closing only its own connection.
//! TLS (Kafka's SSL and SASL_SSL) with the node's client TLS configuration, a plaintext client
//! on the TLS port closed. Real Kafka clients (kcat, librdkafka, kafka-python) are run by
//! scripts/kafka-compat.sh.

// Real sockets and a real runtime: not a simulation test.
#![cfg(not(madsim))]

use std::io::{Read, Write};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use odradek_client::batch::{BatchBuilder, Record};
use odradek_log::SimDisk;
use odradek_server::config::ServerConfig;
use odradek_server::{system_clock, Server};

use crate::kafka_raw;
use kafka_raw::KafkaRaw;

fn batch(value: &str) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(&Record { timestamp: 1_000, key: None, value: Some(value.as_bytes().to_vec().into()), headers: Vec::new() }).unwrap();
    builder.build()
}

fn produce(topic: &str, acks: i16, value: &str) -> RequestKind {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(batch(value)));
    let topic = TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partition_data(vec![partition]);
    RequestKind::Produce(ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![topic]))
}

fn fetch(topic: &str, offset: i64) -> RequestKind {
    let partition = FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![partition]);
    RequestKind::Fetch(
        FetchRequest::default().with_max_wait_ms(100).with_max_bytes(1 << 20).with_session_epoch(-1).with_topics(vec![topic]),
    )
}

/// A one-node cluster with a Kafka listener on an ephemeral port.
fn start(runtime: &tokio::runtime::Runtime) -> (Server, String) {
    let config = kafka_raw::one_node_config();
    let server = runtime.block_on(Server::start(config, SimDisk::new(11), system_clock())).expect("start");
    let kafka = server.kafka_addr().expect("a Kafka listener").to_string();
    (server, kafka)
}

/// Creates `topic` (1 partition) and waits until its leader answers a fetch.
fn create_topic<S: Read + Write>(raw: &mut KafkaRaw<S>, topic: &str) {
    for _ in 0..400 {
        let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(created) = raw.call(5, RequestKind::CreateTopics(create)) else {
            panic!("not a CreateTopics answer")
        };
        let code = created.topics[0].error_code;
        if code == 0 || code == 36 {
            break;
        }
        // 41 NOT_CONTROLLER / 5 LEADER_NOT_AVAILABLE: the node is still electing.
        assert!([5, 41].contains(&code), "create: {created:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..400 {
        let ResponseKind::Fetch(fetched) = raw.call(11, fetch(topic, 0)) else { panic!() };
        if fetched.responses[0].partitions[0].error_code == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{topic} never got a leader");
}

#[test]
fn pipelined_produces_are_answered_in_order_and_fetch_serves_whole_batches() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);
    let ResponseKind::ApiVersions(versions) = raw.call(3, RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
    assert_eq!(versions.error_code, 0);
    assert!(versions.api_keys.iter().any(|v| v.api_key == ApiKey::Produce as i16 && v.min_version == 3));
    create_topic(&mut raw, "k");

    // Pipelined: five produces in one write (the fourth with acks=0), then a metadata request.
    let mut pipelined = Vec::new();
    for (id, acks) in [(11, -1), (12, 1), (13, -1), (14, 0), (15, -1)] {
        pipelined.extend(KafkaRaw::frame(9, id, &produce("k", acks, &format!("record-{id}"))));
    }
    // Null topics: every topic (an empty list would be none).
    pipelined.extend(KafkaRaw::frame(12, 16, &RequestKind::Metadata(MetadataRequest::default().with_topics(None))));
    raw.stream.write_all(&pipelined).unwrap();
    let mut base_offsets = Vec::new();
    for expected in [11, 12, 13, 15] {
        let (id, response) = raw.receive(ApiKey::Produce, 9).expect("a produce answer");
        assert_eq!(id, expected, "answers in request order, none for acks=0");
        let ResponseKind::Produce(produced) = response else { panic!() };
        let partition = &produced.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "{produced:?}");
        base_offsets.push(partition.base_offset);
    }
    assert_eq!(base_offsets, vec![0, 1, 2, 4], "the acks=0 batch took offset 3, in arrival order");
    let (id, response) = raw.receive(ApiKey::Metadata, 12).expect("the metadata answer");
    let ResponseKind::Metadata(metadata) = response else { panic!() };
    assert_eq!(id, 16);
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port as u16, server.kafka_addr().unwrap().port(), "brokers are advertised at their Kafka address");
    let partition = &metadata.topics.iter().find(|t| t.name.as_ref().unwrap().as_str() == "k").unwrap().partitions[0];
    assert_eq!(partition.leader_id, BrokerId(1));
    assert!(partition.leader_epoch >= 1, "leader epochs are raft terms");

    // Fetch from offset 2: the batch holding it and the rest, with the log's base offsets.
    let ResponseKind::Fetch(fetched) = raw.call(11, fetch("k", 2)) else { panic!() };
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!((partition.error_code, partition.high_watermark, partition.log_start_offset), (0, 5, 0));
    let mut records = partition.records.clone().expect("records are never null");
    let mut values = Vec::new();
    while records.has_remaining() {
        let length = odradek_client::batch::batch_bytes_len(&records).expect("whole batches");
        let one = records.split_to(length);
        for record in odradek_client::batch::records(&one).unwrap() {
            let record = record.unwrap();
            assert!(record.offset < partition.high_watermark, "L12: nothing at or above the high watermark");
            values.push((record.offset, String::from_utf8(record.value.unwrap().to_vec()).unwrap()));
        }
    }
    let expected: Vec<(i64, String)> = [(2, 13), (3, 14), (4, 15)].iter().map(|&(o, id)| (o, format!("record-{id}"))).collect();
    assert_eq!(values, expected);
    // At the end: an empty, non-null record set after the wait.
    let ResponseKind::Fetch(fetched) = raw.call(11, fetch("k", 5)) else { panic!() };
    assert_eq!(fetched.responses[0].partitions[0].records.as_ref().map(|r| r.len()), Some(0));
    runtime.block_on(server.shutdown()).unwrap();
}

/// One producer pipelining more bytes than raft lets a partition hold uncommitted
/// (`RAFT_UNCOMMITTED_BYTES_MAX`, 64 MiB) on one connection, as librdkafka does with large
/// messages (0041_fetch_max_bytes: 1,000 records of 500 KB): the connection stops reading while
/// PRODUCE_BYTES_IN_FLIGHT_MAX bytes of its produces are unanswered, so every batch is taken, in
/// request order. Before, the batches past the limit were refused with LEADER_NOT_AVAILABLE
/// while later ones were taken, and librdkafka's retries appended them out of order. A slow
/// fsync (the disk's sync latency) keeps the batches uncommitted long enough for the whole
/// pipeline to arrive.
#[test]
fn a_pipeline_past_the_uncommitted_limit_is_taken_whole_and_in_order() {
    const BATCHES: i32 = 100;
    const VALUE_BYTES: usize = 768 * 1024; // 100 batches: 75 MiB, past raft's 64 MiB
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let disk = SimDisk::new(12);
    let server = runtime.block_on(Server::start(kafka_raw::one_node_config(), disk.clone(), system_clock())).expect("start");
    let kafka = server.kafka_addr().expect("a Kafka listener").to_string();
    let mut raw = KafkaRaw::connect(&kafka);
    create_topic(&mut raw, "big");
    let sync = Duration::from_millis(500);
    disk.set_latency(odradek_log::LatencyConfig { sync: (sync, sync), ..Default::default() });
    let value = "v".repeat(VALUE_BYTES);
    let mut pipelined = Vec::new();
    for id in 0..BATCHES {
        pipelined.extend(KafkaRaw::frame(9, id, &produce("big", -1, &format!("{id:03}{value}"))));
    }
    raw.stream.write_all(&pipelined).unwrap();
    let mut base_offsets = Vec::new();
    for expected in 0..BATCHES {
        let (id, response) = raw.receive(ApiKey::Produce, 9).expect("a produce answer");
        assert_eq!(id, expected, "answers in request order");
        let ResponseKind::Produce(produced) = response else { panic!() };
        let partition = &produced.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "batch {id}: {:?}", partition.error_message);
        base_offsets.push(partition.base_offset);
    }
    assert_eq!(base_offsets, (0..i64::from(BATCHES)).collect::<Vec<_>>(), "every batch appended, in request order");
    disk.set_latency(odradek_log::LatencyConfig::default());
    runtime.block_on(server.shutdown()).unwrap();
}

#[test]
fn bad_input_closes_its_own_connection_and_the_node_keeps_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut good = KafkaRaw::connect(&kafka);
    create_topic(&mut good, "bad");

    // ApiVersions newer than ours: error 35 with our versions in a v0 body (KIP-511).
    let mut newer = KafkaRaw::connect(&kafka);
    let mut frame = KafkaRaw::frame(3, 2, &RequestKind::ApiVersions(ApiVersionsRequest::default()));
    frame[6..8].copy_from_slice(&77i16.to_be_bytes());
    newer.stream.write_all(&frame).unwrap();
    let (id, response) = newer.receive(ApiKey::ApiVersions, 0).expect("an answer");
    let ResponseKind::ApiVersions(versions) = response else { panic!() };
    assert_eq!((id, versions.error_code), (2, 35));
    assert!(!versions.api_keys.is_empty());

    let metadata = KafkaRaw::frame(1, 3, &RequestKind::Metadata(MetadataRequest::default()));
    let mut unknown_api = metadata.clone();
    unknown_api[4..6].copy_from_slice(&4242i16.to_be_bytes());
    let mut too_new = metadata.clone();
    too_new[6..8].copy_from_slice(&99i16.to_be_bytes());
    let oversized = u32::MAX.to_be_bytes().to_vec();
    let mut huge_array = vec![0, 0, 0, 14];
    for field in [&3i16.to_be_bytes()[..], &1i16.to_be_bytes(), &1i32.to_be_bytes(), &(-1i16).to_be_bytes(), &i32::MAX.to_be_bytes()] {
        huge_array.extend_from_slice(field);
    }
    for (what, bytes, then_close) in [
        ("an unknown API key", unknown_api, false),
        ("an unsupported version", too_new, false),
        ("an oversized frame", oversized, false),
        ("a frame naming a huge array", huge_array, false),
        ("a truncated frame", metadata[..metadata.len() - 3].to_vec(), true),
    ] {
        let mut bad = KafkaRaw::connect(&kafka);
        bad.stream.write_all(&bytes).unwrap();
        if then_close {
            bad.stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        bad.assert_closed();
        // The other connection is still served.
        let ResponseKind::Produce(produced) = good.call(9, produce("bad", -1, what)) else { panic!() };
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0, "after {what}: {produced:?}");
    }
    runtime.block_on(server.shutdown()).unwrap();
}

/// One topic's Metadata entry (v12), asking the node to auto-create it or not.
fn metadata_of(raw: &mut KafkaRaw, topic: &str, allow_auto_topic_creation: bool) -> metadata_response::MetadataResponseTopic {
    let asked = metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into()))));
    let request = MetadataRequest::default().with_topics(Some(vec![asked])).with_allow_auto_topic_creation(allow_auto_topic_creation);
    let ResponseKind::Metadata(metadata) = raw.call(12, RequestKind::Metadata(request)) else { panic!("not a Metadata answer") };
    assert_eq!(metadata.topics.len(), 1, "{metadata:?}");
    metadata.topics[0].clone()
}

/// Retries `step` every 50 ms until it is true (20 s at most).
fn eventually(what: &str, mut step: impl FnMut() -> bool) {
    for _ in 0..400 {
        if step() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} never happened");
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

/// Kafka's `auto.create.topics.enable` (on by default): a Metadata request that allows it and a
/// produce to a topic that does not exist create the topic with the node's defaults (here 2
/// partitions); the answers meanwhile are Kafka's retriable ones (LEADER_NOT_AVAILABLE,
/// UNKNOWN_TOPIC_OR_PARTITION), so a client retries into the new topic. A Metadata request that
/// does not allow it creates nothing, and an invalid name gets INVALID_TOPIC_EXCEPTION.
#[test]
fn topics_a_kafka_client_names_are_auto_created_with_the_defaults() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = kafka_raw::one_node_config();
    config.topic_defaults.partitions = 2;
    config.topic_defaults.replication_factor = 1;
    let server = runtime.block_on(Server::start(config, SimDisk::new(12), system_clock())).expect("start");
    let mut raw = KafkaRaw::connect(&server.kafka_addr().unwrap().to_string());

    // Not allowed: nothing is created, however often asked. (Waits out the first election: the
    // node answers a known code once its metadata is ready.)
    eventually("the node answering for an unknown topic", || {
        metadata_of(&mut raw, "quiet", false).error_code == UNKNOWN_TOPIC_OR_PARTITION
    });
    assert_eq!(metadata_of(&mut raw, "quiet", false).error_code, UNKNOWN_TOPIC_OR_PARTITION, "not created when not allowed");

    // Allowed: created with the defaults, answered retriably until it has leaders.
    eventually("the auto-created topic with its leaders", || {
        let topic = metadata_of(&mut raw, "made", true);
        assert!([0, LEADER_NOT_AVAILABLE].contains(&topic.error_code), "retriable until ready: {topic:?}");
        topic.error_code == 0 && topic.partitions.iter().all(|p| p.error_code == 0 && p.leader_id.0 == 1)
    });
    assert_eq!(metadata_of(&mut raw, "made", false).partitions.len(), 2, "the default partition count");

    // An invalid name: refused clearly, never created.
    assert_eq!(metadata_of(&mut raw, "no spaces!", true).error_code, INVALID_TOPIC_EXCEPTION);

    // A produce to a topic that does not exist creates it; the client's retry lands.
    let mut codes = Vec::new();
    eventually("a produce into the topic it auto-created", || {
        let ResponseKind::Produce(produced) = raw.call(9, produce("sent", -1, "first")) else { panic!() };
        let partition = &produced.responses[0].partition_responses[0];
        codes.push(partition.error_code);
        partition.error_code == 0
    });
    assert_eq!(codes[0], UNKNOWN_TOPIC_OR_PARTITION, "the first produce is refused retriably, nothing appended: {codes:?}");
    assert!(codes.iter().all(|&c| [0, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, 6].contains(&c)), "{codes:?}");
    assert_eq!(metadata_of(&mut raw, "sent", false).partitions.len(), 2);
    let ResponseKind::Produce(produced) = raw.call(9, produce("bad name!", -1, "x")) else { panic!() };
    let refused = &produced.responses[0].partition_responses[0];
    assert_eq!(refused.error_code, INVALID_TOPIC_EXCEPTION, "{refused:?}");
    assert!(refused.error_message.as_ref().is_some_and(|m| m.contains("cannot be auto-created")), "{refused:?}");
    runtime.block_on(server.shutdown()).unwrap();
}

/// With `auto_create_topics = false` a Kafka client naming an unknown topic creates nothing:
/// Metadata and Produce answer UNKNOWN_TOPIC_OR_PARTITION, as a Kafka broker with
/// `auto.create.topics.enable=false` does.
#[test]
fn auto_creation_off_creates_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = kafka_raw::one_node_config();
    config.auto_create_topics = false;
    let server = runtime.block_on(Server::start(config, SimDisk::new(13), system_clock())).expect("start");
    let mut raw = KafkaRaw::connect(&server.kafka_addr().unwrap().to_string());
    create_topic(&mut raw, "known");
    for _ in 0..3 {
        assert_eq!(metadata_of(&mut raw, "ghost", true).error_code, UNKNOWN_TOPIC_OR_PARTITION);
        let ResponseKind::Produce(produced) = raw.call(9, produce("ghost", -1, "x")) else { panic!() };
        assert_eq!(produced.responses[0].partition_responses[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    }
    runtime.block_on(server.shutdown()).unwrap();
}

const OFFSET_OUT_OF_RANGE: i16 = 1;

/// DeleteRecords for partition 0 of `topic`: (error code, low watermark).
fn delete_records(raw: &mut KafkaRaw, version: i16, topic: &str, offset: i64) -> (i16, i64) {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    let partition = DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset);
    let asked = DeleteRecordsTopic::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![partition]);
    let request = DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![asked]);
    let ResponseKind::DeleteRecords(deleted) = raw.call(version, RequestKind::DeleteRecords(request)) else { panic!() };
    let partition = &deleted.topics[0].partitions[0];
    (partition.error_code, partition.low_watermark)
}

/// ListOffsets earliest (-2) of partition 0 of `topic`.
fn earliest(raw: &mut KafkaRaw, topic: &str) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let partition = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2);
    let asked = ListOffsetsTopic::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![partition]);
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![asked]);
    let ResponseKind::ListOffsets(listed) = raw.call(6, RequestKind::ListOffsets(request)) else { panic!() };
    let partition = &listed.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{listed:?}");
    partition.offset
}

/// The first record offset a fetch from `offset` returns, or its error code.
fn first_fetched(raw: &mut KafkaRaw, topic: &str, offset: i64) -> Result<i64, i16> {
    let ResponseKind::Fetch(fetched) = raw.call(11, fetch(topic, offset)) else { panic!() };
    let partition = &fetched.responses[0].partitions[0];
    if partition.error_code != 0 {
        return Err(partition.error_code);
    }
    let mut records = partition.records.clone().expect("records are never null");
    let first = records.split_to(odradek_client::batch::batch_bytes_len(&records).expect("whole batches"));
    let record = odradek_client::batch::records(&first).unwrap().next().expect("a record").unwrap();
    Ok(record.offset)
}

/// DeleteRecords (Kafka API 21) moves the log start through the partition's raft log: a fetch
/// below it is OFFSET_OUT_OF_RANGE, ListOffsets earliest and the fetch's log start report it,
/// it never moves back nor past the high watermark (above it: OFFSET_OUT_OF_RANGE, nothing
/// changed; -1: up to the high watermark), produce goes on, and it survives a restart (the
/// command entry is replayed with the log).
#[test]
fn delete_records_moves_the_log_start_for_good() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = kafka_raw::one_node_config();
    let disk = SimDisk::new(14);
    let server = runtime.block_on(Server::start(config.clone(), disk.clone(), system_clock())).expect("start");
    let mut raw = KafkaRaw::connect(&server.kafka_addr().unwrap().to_string());
    create_topic(&mut raw, "dr");
    for i in 0..5 {
        let ResponseKind::Produce(produced) = raw.call(9, produce("dr", -1, &format!("r{i}"))) else { panic!() };
        assert_eq!(produced.responses[0].partition_responses[0].base_offset, i);
    }
    assert_eq!(delete_records(&mut raw, 0, "dr", 3), (0, 3));
    assert_eq!(first_fetched(&mut raw, "dr", 2), Err(OFFSET_OUT_OF_RANGE), "below the log start");
    assert_eq!(first_fetched(&mut raw, "dr", 3), Ok(3));
    assert_eq!(earliest(&mut raw, "dr"), 3);
    assert_eq!(delete_records(&mut raw, 2, "dr", 1), (0, 3), "never backwards");
    assert_eq!(delete_records(&mut raw, 1, "dr", 6), (OFFSET_OUT_OF_RANGE, -1), "never past the high watermark (5)");
    assert_eq!(earliest(&mut raw, "dr"), 3, "a refused deletion changes nothing");
    let ResponseKind::Produce(produced) = raw.call(9, produce("dr", -1, "r5")) else { panic!() };
    assert_eq!(produced.responses[0].partition_responses[0].base_offset, 5, "offsets go on");
    assert_eq!(delete_records(&mut raw, 2, "dr", -1), (0, 6), "-1: up to the high watermark");
    assert_eq!(first_fetched(&mut raw, "dr", 5), Err(OFFSET_OUT_OF_RANGE));
    let (code, _) = delete_records(&mut raw, 2, "ghost-topic-x", 1);
    assert_ne!(code, 0, "an unknown topic is refused");
    runtime.block_on(server.shutdown()).unwrap();

    // The deletion is in the partition's raft log: a restart (same node and disk, fresh ports:
    // the old ones may linger) replays it.
    let config = ServerConfig { nodes: kafka_raw::one_node_config().nodes, ..config };
    let server = runtime.block_on(Server::start(config, disk, system_clock())).expect("restart");
    let mut raw = KafkaRaw::connect(&server.kafka_addr().unwrap().to_string());
    eventually("the restarted node serving dr", || earliest_or_error(&mut raw, "dr").is_some());
    assert_eq!(earliest(&mut raw, "dr"), 6, "the log start survives the restart");
    assert_eq!(first_fetched(&mut raw, "dr", 4), Err(OFFSET_OUT_OF_RANGE));
    runtime.block_on(server.shutdown()).unwrap();
}

/// ListOffsets earliest, `None` while the partition has no leader.
fn earliest_or_error(raw: &mut KafkaRaw, topic: &str) -> Option<i64> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let partition = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2);
    let asked = ListOffsetsTopic::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![partition]);
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![asked]);
    let ResponseKind::ListOffsets(listed) = raw.call(6, RequestKind::ListOffsets(request)) else { panic!() };
    let partition = &listed.topics[0].partitions[0];
    (partition.error_code == 0).then_some(partition.offset)
}

/// One SCRAM-SHA-256 exchange over SaslHandshake v1 and SaslAuthenticate v2: the final
/// answer's error code (0: logged in).
fn scram_login<S: Read + Write>(raw: &mut KafkaRaw<S>, user: &str, password: &str) -> i16 {
    use odradek_client::scram::{ClientScram, Mechanism};
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256"));
    let ResponseKind::SaslHandshake(shaken) = raw.call(1, RequestKind::SaslHandshake(handshake)) else { panic!() };
    assert_eq!(shaken.error_code, 0, "{shaken:?}");
    assert!(shaken.mechanisms.iter().any(|m| m.as_str() == "SCRAM-SHA-512"), "both SCRAM mechanisms offered: {shaken:?}");
    let (client, first) = ClientScram::new(Mechanism::Sha256, user, password, "kafkanonce1");
    let ask = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(first.into_bytes()));
    let ResponseKind::SaslAuthenticate(challenge) = raw.call(2, RequestKind::SaslAuthenticate(ask)) else { panic!() };
    if challenge.error_code != 0 {
        return challenge.error_code;
    }
    let server_first = String::from_utf8(challenge.auth_bytes.to_vec()).unwrap();
    let (proof, client_final) = client.final_message(&server_first).unwrap();
    let ask = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(client_final.into_bytes()));
    let ResponseKind::SaslAuthenticate(done) = raw.call(2, RequestKind::SaslAuthenticate(ask)) else { panic!() };
    if done.error_code == 0 {
        proof.verify(std::str::from_utf8(&done.auth_bytes).unwrap()).expect("the server proves it knows the credential");
    }
    done.error_code
}

/// SASL on the Kafka listener (`[auth] sasl`): SCRAM-SHA-256 over SaslHandshake v1 and
/// SaslAuthenticate with the node's user store logs a Kafka client in; before that only
/// ApiVersions is answered and anything else closes the connection; a wrong password is
/// SASL_AUTHENTICATION_FAILED (58) and closes it; PLAIN is not offered (33).
#[test]
fn kafka_clients_log_in_with_scram_where_the_node_requires_sasl() {
    use odradek_server::auth::Secret;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = kafka_raw::one_node_config();
    config.auth.sasl = true;
    config.auth.inter_node_user = Some("node".into());
    config.auth.super_users = ["User:node".to_string()].into();
    config.auth.users = [("node".to_string(), Secret("node-pw".into())), ("alice".to_string(), Secret("alice-pw".into()))].into();
    config.validate().expect("a Kafka listener runs with [auth] sasl");
    let server = runtime.block_on(Server::start(config, SimDisk::new(15), system_clock())).expect("start");
    let kafka = server.kafka_addr().unwrap().to_string();

    // Not logged in: ApiVersions is answered, Metadata closes the connection.
    let mut anonymous = KafkaRaw::connect(&kafka);
    let ResponseKind::ApiVersions(versions) = anonymous.call(3, RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
    assert!(versions.api_keys.iter().any(|v| v.api_key == ApiKey::SaslAuthenticate as i16));
    anonymous.send(12, 9, RequestKind::Metadata(MetadataRequest::default().with_topics(None)));
    anonymous.assert_closed();

    // A wrong password: 58, closed.
    let mut wrong = KafkaRaw::connect(&kafka);
    eventually("the node knowing its users", || {
        let mut probe = KafkaRaw::connect(&kafka);
        scram_login(&mut probe, "alice", "alice-pw") == 0
    });
    assert_eq!(scram_login(&mut wrong, "alice", "not-it"), 58);
    wrong.assert_closed();

    // PLAIN is not offered.
    let mut plain = KafkaRaw::connect(&kafka);
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let ResponseKind::SaslHandshake(refused) = plain.call(1, RequestKind::SaslHandshake(handshake)) else { panic!() };
    assert_eq!(refused.error_code, 33);

    // Logged in: served as User:alice (no authorization here, so everything).
    let mut alice = KafkaRaw::connect(&kafka);
    assert_eq!(scram_login(&mut alice, "alice", "alice-pw"), 0);
    create_topic(&mut alice, "secured");
    let ResponseKind::Produce(produced) = alice.call(9, produce("secured", -1, "hello")) else { panic!() };
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0, "{produced:?}");
    assert_ne!(scram_login(&mut alice, "alice", "alice-pw"), 0, "one exchange per connection");
    runtime.block_on(server.shutdown()).unwrap();
}

/// `odradek tls init DIR --nodes 1`: the CA, node 1's certificate (127.0.0.1 among its names)
/// and a client certificate (`client`).
fn certificates(dir: &std::path::Path) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_odradek"))
        .args(["tls", "init", dir.to_str().unwrap(), "--nodes", "1"])
        .output()
        .expect("run odradek tls init");
    assert!(output.status.success(), "odradek tls init: {}", String::from_utf8_lossy(&output.stderr));
}

/// Node 1's client TLS from the files in `dir` (client certificates required with `client_ca`).
fn tls_settings(dir: &std::path::Path, client_ca: bool) -> odradek_server::config::TlsSettings {
    odradek_server::config::TlsSettings {
        cert: Some(dir.join("node-1.pem")),
        key: Some(dir.join("node-1.key")),
        client_ca: client_ca.then(|| dir.join("ca.pem")),
        ..Default::default()
    }
}

fn trusting(dir: &std::path::Path) -> odradek_client::tls::ClientTls {
    odradek_client::tls::ClientTls::new(odradek_client::tls::Pem::File(dir.join("ca.pem")))
}

/// Produces `value` with acks=all to partition 0 of `topic` and reads it back at its offset.
fn produce_and_read_back<S: Read + Write>(raw: &mut KafkaRaw<S>, topic: &str, value: &str) {
    let ResponseKind::Produce(produced) = raw.call(9, produce(topic, -1, value)) else { panic!() };
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "{produced:?}");
    let ResponseKind::Fetch(fetched) = raw.call(11, fetch(topic, partition.base_offset)) else { panic!() };
    let records = fetched.responses[0].partitions[0].records.clone().expect("records");
    let wanted = value.as_bytes();
    assert!(records.windows(wanted.len()).any(|window| window == wanted), "the fetch returns the batch produced ({value})");
}

/// Kafka's SSL security protocol: with the node's client TLS configured the Kafka listener
/// speaks TLS only. A TLS client that trusts the cluster CA negotiates, creates a topic,
/// produces and reads back (L5 for one record); a plaintext client gets its connection closed
/// without an answer, and the node keeps serving TLS clients. With `client_ca` a client without
/// a certificate fails the handshake and one with the CA's client certificate is served.
#[test]
fn the_kafka_listener_speaks_tls_where_the_node_does() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let mut config = kafka_raw::one_node_config();
    config.tls = tls_settings(dir.path(), false);
    let server = runtime.block_on(Server::start(config, SimDisk::new(16), system_clock())).expect("start");
    let kafka = server.kafka_addr().unwrap().to_string();

    let mut secure = KafkaRaw::connect_tls(&kafka, &trusting(dir.path()));
    let ResponseKind::ApiVersions(versions) = secure.call(3, RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
    assert_eq!(versions.error_code, 0);
    create_topic(&mut secure, "sealed");
    produce_and_read_back(&mut secure, "sealed", "over-tls-1");

    // A plaintext Kafka client on the TLS port: closed, nothing answered.
    let mut plain = KafkaRaw::connect(&kafka);
    plain.send(3, 1, RequestKind::ApiVersions(ApiVersionsRequest::default()));
    plain.assert_closed();
    // The node goes on serving the open TLS connection and new ones.
    produce_and_read_back(&mut secure, "sealed", "over-tls-2");
    let mut again = KafkaRaw::connect_tls(&kafka, &trusting(dir.path()));
    produce_and_read_back(&mut again, "sealed", "over-tls-3");
    runtime.block_on(server.shutdown()).unwrap();

    // Client certificates required (Kafka's ssl.client.auth=required).
    let mut config = kafka_raw::one_node_config();
    config.tls = tls_settings(dir.path(), true);
    let server = runtime.block_on(Server::start(config, SimDisk::new(17), system_clock())).expect("start");
    let kafka = server.kafka_addr().unwrap().to_string();
    let mut anonymous = KafkaRaw::connect_tls(&kafka, &trusting(dir.path()));
    // The write may fail or not (TLS 1.3 sends before the server checks); the answer never comes.
    let _ = anonymous.stream.write_all(&KafkaRaw::frame(3, 1, &RequestKind::ApiVersions(ApiVersionsRequest::default())));
    assert!(anonymous.receive(ApiKey::ApiVersions, 3).is_none(), "a client without a certificate is served");
    let mut identified = trusting(dir.path());
    let file = |name: &str| odradek_client::tls::Pem::File(dir.path().join(name));
    identified.identity = Some((file("client.pem"), file("client.key")));
    let mut client = KafkaRaw::connect_tls(&kafka, &identified);
    create_topic(&mut client, "sealed");
    produce_and_read_back(&mut client, "sealed", "mutual");
    runtime.block_on(server.shutdown()).unwrap();
}

/// Kafka's SASL_SSL security protocol: `[auth] sasl` and the node's client TLS together. Over
/// TLS, nothing but ApiVersions before a SCRAM exchange (Metadata closes the connection), a
/// wrong password is SASL_AUTHENTICATION_FAILED (58), and a logged-in client produces and reads
/// back.
#[test]
fn kafka_clients_log_in_with_scram_over_tls() {
    use odradek_server::auth::Secret;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let mut config = kafka_raw::one_node_config();
    config.tls = tls_settings(dir.path(), false);
    config.auth.sasl = true;
    config.auth.inter_node_user = Some("node".into());
    config.auth.super_users = ["User:node".to_string()].into();
    config.auth.users = [("node".to_string(), Secret("node-pw".into())), ("alice".to_string(), Secret("alice-pw".into()))].into();
    let server = runtime.block_on(Server::start(config, SimDisk::new(18), system_clock())).expect("start");
    let kafka = server.kafka_addr().unwrap().to_string();
    let tls = trusting(dir.path());

    let mut anonymous = KafkaRaw::connect_tls(&kafka, &tls);
    let ResponseKind::ApiVersions(versions) = anonymous.call(3, RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
    assert_eq!(versions.error_code, 0);
    anonymous.send(12, 9, RequestKind::Metadata(MetadataRequest::default().with_topics(None)));
    anonymous.assert_closed();

    eventually("the node knowing its users", || scram_login(&mut KafkaRaw::connect_tls(&kafka, &tls), "alice", "alice-pw") == 0);
    let mut wrong = KafkaRaw::connect_tls(&kafka, &tls);
    assert_eq!(scram_login(&mut wrong, "alice", "not-it"), 58);
    wrong.assert_closed();

    let mut alice = KafkaRaw::connect_tls(&kafka, &tls);
    assert_eq!(scram_login(&mut alice, "alice", "alice-pw"), 0);
    create_topic(&mut alice, "sealed");
    produce_and_read_back(&mut alice, "sealed", "sasl-ssl");
    runtime.block_on(server.shutdown()).unwrap();
}

/// Kills the node process when the test ends, passed or not.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `odradek server --default-partitions 3` (Kafka's `num.partitions`): a topic a Kafka client
/// names is auto-created with 3 partitions, and DescribeConfigs reports `num.partitions` 3.
#[test]
fn the_default_partitions_flag_is_what_auto_creation_uses_and_describe_configs_reports() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let kafka = format!("127.0.0.1:{}", ports[2]);
    let member = format!("1=127.0.0.1:{}/127.0.0.1:{}/{kafka}", ports[0], ports[1]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_odradek"))
        .args(["server", "--id", "1", "--tick-ms", "20", "--default-partitions", "3", "--kafka-listen", &kafka, "--node", &member])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start odradek server");
    let _node = Node(child);
    let mut raw = None;
    eventually("the Kafka listener accepting", || {
        raw = std::net::TcpStream::connect(&kafka).is_ok().then(|| KafkaRaw::connect(&kafka));
        raw.is_some()
    });
    let mut raw = raw.expect("connected");
    eventually("the auto-created topic with its leaders", || {
        let topic = metadata_of(&mut raw, "defaulted", true);
        topic.error_code == 0 && topic.partitions.iter().all(|p| p.error_code == 0)
    });
    assert_eq!(metadata_of(&mut raw, "defaulted", false).partitions.len(), 3);
    let broker = DescribeConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(StrBytes::from_static_str("1"))
        .with_configuration_keys(None);
    let request = DescribeConfigsRequest::default().with_resources(vec![broker]);
    let ResponseKind::DescribeConfigs(described) = raw.call(4, RequestKind::DescribeConfigs(request)) else { panic!() };
    let result = &described.results[0];
    assert_eq!(result.error_code, 0, "{described:?}");
    let setting = result.configs.iter().find(|c| c.name.as_str() == "num.partitions").expect("num.partitions reported");
    assert_eq!(setting.value.as_ref().map(|v| v.as_str()), Some("3"));
}
