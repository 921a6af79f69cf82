//! Produce semantics against a real 3-node cluster, through the raw protocol: an idempotent
//! retry after a lost response returns the original offset (P2), sequence gaps are refused,
//! acks=1 and acks=0 append, and no fetch returns anything at or above the high watermark (L12).
//! And one in-process node: a pipeline of large batches past raft's uncommitted limit on one
//! connection is taken whole and in order (the connection's produce window).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use odradek_client::wire::encode_frame;
use odradek_client::wire::proto::{Acks, ErrorCode, FetchRequest, InitProducerIdRequest, MetadataRequest, Request};
use odradek_jepsen::harness::ports::reserve;
use odradek_log::{LatencyConfig, SimDisk};
use odradek_server::config::{Member, ServerConfig};
use odradek_server::{system_clock, Server};

use common::raw::{batch, call_until, create_topic, fetched_records, idempotent_batch, metadata, produce, request_with, Raw};
use common::ProcessCluster;

const ADMIN_SETTLING: [ErrorCode; 2] = [ErrorCode::NOT_CONTROLLER, ErrorCode::LEADER_NOT_AVAILABLE];
const SETTLING: [ErrorCode; 3] = [ErrorCode::NOT_LEADER, ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::DUPLICATE_IN_FLIGHT];

/// The leader of `topic`/0 as the cluster reports it, once one is known.
fn leader(cluster: &ProcessCluster, topic: &str) -> String {
    let mut raw = Raw::greeted(&cluster.client_addr(1));
    for _ in 0..400 {
        let mut request = MetadataRequest::new();
        request.topics.push(topic.into());
        let response = raw.call(request_with(1, |r| r.set_metadata(request)));
        if response.error != ErrorCode::NONE {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        let partition = &response.get_metadata().topics[0].partitions[0];
        if partition.leader != 0 && partition.leader_term != 0 {
            return cluster.client_addr(partition.leader);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no leader for {topic}");
}

fn fetch(topic: &str, offset: u64) -> Request {
    let mut fetch = FetchRequest::new();
    fetch.topic = topic.into();
    fetch.offset = offset;
    fetch.wait_ms_max = 100;
    request_with(50, |r| r.set_fetch(fetch))
}

#[test]
fn idempotent_retries_acks_levels_and_the_high_watermark() {
    let cluster = ProcessCluster::start(3);
    let mut admin = Raw::greeted(&cluster.client_addr(2));
    let response = call_until(&mut admin, &create_topic(1, "p2", 1, 3), &ADMIN_SETTLING, 200);
    assert_eq!(response.get_create_topics().topics[0].error, ErrorCode::NONE, "{response:?}");
    let mut init = InitProducerIdRequest::new();
    init.producer_id = -1;
    let response = call_until(&mut admin, &request_with(2, |r| r.set_init_producer_id(init)), &ADMIN_SETTLING, 200);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    let producer_id = response.get_init_producer_id().producer_id;
    assert!(producer_id > 0);

    // P2: the first attempt's response is lost (the connection dies before it is read).
    let leader_addr = leader(&cluster, "p2");
    let first = produce(10, "p2", idempotent_batch("a", producer_id, 0, 0));
    let mut lost = Raw::greeted(&leader_addr);
    lost.send(&first);
    drop(lost);
    let mut raw = Raw::greeted(&leader_addr);
    let retried = call_until(&mut raw, &first, &SETTLING, 400);
    assert_eq!(retried.error, ErrorCode::NONE, "{retried:?}");
    assert_eq!(retried.get_produce().base_offset, 0, "the retry returns the original offset");
    let again = raw.call(first.clone());
    assert_eq!((again.error, again.get_produce().base_offset), (ErrorCode::NONE, 0), "every retry does");
    let second = raw.call(produce(11, "p2", idempotent_batch("b", producer_id, 0, 1)));
    assert_eq!((second.error, second.get_produce().base_offset), (ErrorCode::NONE, 1), "{second:?}");
    let gap = raw.call(produce(12, "p2", idempotent_batch("c", producer_id, 0, 5)));
    assert_eq!(gap.error, ErrorCode::OUT_OF_ORDER_SEQUENCE, "{gap:?}");
    let third = raw.call(produce(13, "p2", idempotent_batch("d", producer_id, 0, 2)));
    assert_eq!((third.error, third.get_produce().base_offset), (ErrorCode::NONE, 2), "the next sequence is accepted: {third:?}");

    // acks=1: answered after the leader's fsync, with its offset.
    let mut leader_acked = produce(20, "p2", batch("leader-acked"));
    leader_acked.mut_produce().acks = Acks::ACKS_LEADER;
    let response = raw.call(leader_acked);
    assert_eq!((response.error, response.get_produce().base_offset), (ErrorCode::NONE, 3), "{response:?}");
    // acks=0: no answer at all; the next answer on the connection is the next request's.
    let mut unacked = produce(21, "p2", batch("unacked"));
    unacked.mut_produce().acks = Acks::ACKS_NONE;
    raw.send(&unacked);
    let response = raw.call(metadata(22));
    assert_eq!(response.request_id, 22);

    // A bumped epoch fences the old one.
    let mut bump = InitProducerIdRequest::new();
    bump.producer_id = producer_id;
    let response = call_until(&mut admin, &request_with(23, |r| r.set_init_producer_id(bump)), &ADMIN_SETTLING, 200);
    assert_eq!(response.get_init_producer_id().producer_epoch, 1, "{response:?}");
    let fresh = raw.call(produce(24, "p2", idempotent_batch("e", producer_id, 1, 0)));
    assert_eq!((fresh.error, fresh.get_produce().base_offset), (ErrorCode::NONE, 5), "{fresh:?}");
    let fenced = raw.call(produce(25, "p2", idempotent_batch("f", producer_id, 0, 3)));
    assert_eq!(fenced.error, ErrorCode::PRODUCER_FENCED, "{fenced:?}");

    // Everything appended exactly once, in order; nothing above the high watermark (checked in
    // fetched_records).
    let mut records = Vec::new();
    for _ in 0..200 {
        let response = raw.call(fetch("p2", records.len() as u64));
        assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
        records.extend(fetched_records(&response));
        if records.len() >= 6 {
            break;
        }
    }
    let values: Vec<(u64, &[u8])> = records.iter().map(|(offset, value)| (*offset, value.as_slice())).collect();
    assert_eq!(values, vec![(0, &b"a"[..]), (1, b"b"), (2, b"d"), (3, b"leader-acked"), (4, b"unacked"), (5, b"e")]);

    // SIGTERM: a graceful stop with a clean exit; the other nodes keep serving.
    let mut cluster = cluster;
    for id in 1..=3 {
        if cluster.client_addr(id) != leader_addr {
            let status = cluster.terminate(id);
            assert!(status.success(), "node {id} exited with {status} after SIGTERM:\n{}", cluster.log(id));
            break;
        }
    }
    let response = call_until(&mut raw, &fetch("p2", 0), &SETTLING, 400);
    assert_eq!(fetched_records(&response).len(), 6, "the remaining quorum still serves reads");
}

/// InitProducerId for a known producer id bumps its epoch only from the epoch the caller
/// holds: a caller with an older epoch was fenced and must not fence the producer that fenced it.
#[test]
fn init_producer_id_bumps_only_the_epoch_it_was_given() {
    let cluster = ProcessCluster::start(1);
    let mut admin = Raw::greeted(&cluster.client_addr(1));
    let init = |producer_id: i64, producer_epoch: i32| {
        let mut init = InitProducerIdRequest::new();
        init.producer_id = producer_id;
        init.producer_epoch = producer_epoch;
        request_with(2, |r| r.set_init_producer_id(init))
    };
    let response = call_until(&mut admin, &init(-1, -1), &ADMIN_SETTLING, 400);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    let producer_id = response.get_init_producer_id().producer_id;
    assert_eq!(response.get_init_producer_id().producer_epoch, 0);

    let bumped = call_until(&mut admin, &init(producer_id, 0), &ADMIN_SETTLING, 400);
    assert_eq!((bumped.error, bumped.get_init_producer_id().producer_epoch), (ErrorCode::NONE, 1), "{bumped:?}");
    // A second holder of epoch 0 (fenced by the bump) cannot fence the holder of epoch 1.
    let stale = call_until(&mut admin, &init(producer_id, 0), &ADMIN_SETTLING, 400);
    assert_eq!(stale.error, ErrorCode::PRODUCER_FENCED, "{stale:?}");
    assert!(ErrorCode::PRODUCER_FENCED.is_definite());
    assert!(stale.error_message.contains("epoch 1"), "the refusal names the current epoch: {stale:?}");
    // An epoch never handed out is refused too.
    let unknown = call_until(&mut admin, &init(producer_id, 7), &ADMIN_SETTLING, 400);
    assert_eq!(unknown.error, ErrorCode::INVALID_REQUEST, "{unknown:?}");
    let bumped = call_until(&mut admin, &init(producer_id, 1), &ADMIN_SETTLING, 400);
    assert_eq!((bumped.error, bumped.get_init_producer_id().producer_epoch), (ErrorCode::NONE, 2), "{bumped:?}");
}

/// One native producer pipelining more bytes than raft lets a partition hold uncommitted
/// (`RAFT_UNCOMMITTED_BYTES_MAX`, 64 MiB) on one connection: 100 batches of 768 KiB (75 MiB),
/// written before any answer is read, behind a 500 ms fsync that keeps them uncommitted while
/// the pipeline arrives. The connection stops reading while `PRODUCE_BYTES_IN_FLIGHT_MAX`
/// (16 MiB) of its produces are unanswered (`net::ProduceWindow`, the Kafka listener's too), so
/// every batch is taken, at the offset of its place in the pipeline. Without the window the
/// batches past raft's limit were refused (LEADER_NOT_AVAILABLE, busy) while later ones fit
/// and were taken: a client retrying them would append them out of order.
#[test]
fn a_native_pipeline_past_the_uncommitted_limit_is_taken_whole_and_in_order() {
    const BATCHES: u64 = 100;
    const VALUE_BYTES: usize = 768 * 1024;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port_block = reserve(2).expect("two free ports");
    let ports = port_block.ports();
    let member = Member { id: 1, peer: ([127, 0, 0, 1], ports[0]).into(), client: ([127, 0, 0, 1], ports[1]).into(), kafka: None };
    let mut config = ServerConfig::new(1, "/node1", vec![member]);
    config.tick_ms = 20;
    let disk = SimDisk::new(17);
    let server = runtime.block_on(Server::start(config, disk.clone(), system_clock())).expect("start");
    let addr = server.client_addr().to_string();
    let mut raw = Raw::greeted(&addr);
    let ready = call_until(&mut raw, &metadata(1), &[ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(ready.error, ErrorCode::NONE);
    let created = call_until(&mut raw, &create_topic(2, "big", 1, 1), &ADMIN_SETTLING, 400);
    assert_eq!(created.get_create_topics().topics[0].error, ErrorCode::NONE, "{created:?}");
    // The partition's leader is ready once a first small produce is taken (offset 0).
    let first = call_until(&mut raw, &produce(3, "big", batch("first")), &SETTLING, 400);
    assert_eq!((first.error, first.get_produce().base_offset), (ErrorCode::NONE, 0), "{first:?}");

    let sync = Duration::from_millis(500);
    disk.set_latency(LatencyConfig { sync: (sync, sync), ..Default::default() });
    let value = "v".repeat(VALUE_BYTES);
    let mut pipelined = Vec::new();
    for id in 1..=BATCHES {
        pipelined.extend(encode_frame(&produce(100 + id, "big", batch(&format!("{id:03}{value}")))));
    }
    // Written from another thread: the node may stop reading until answers are read here.
    let mut writer = raw.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &pipelined));
    let mut answers = BTreeMap::new();
    for _ in 1..=BATCHES {
        let response = raw.receive().expect("a produce answer");
        let id = response.request_id - 100;
        assert_eq!(response.error, ErrorCode::NONE, "batch {id}: {response:?}");
        answers.insert(id, response.get_produce().base_offset);
    }
    sender.join().unwrap().unwrap();
    let expected: BTreeMap<u64, u64> = (1..=BATCHES).map(|id| (id, id)).collect();
    assert_eq!(answers, expected, "every batch appended, at its place in the pipeline");
    disk.set_latency(LatencyConfig::default());
    drop(raw);
    runtime.block_on(server.shutdown()).unwrap();
}
