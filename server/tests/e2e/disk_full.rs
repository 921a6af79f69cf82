//! F-S9, a full disk: a node below its free-space reserve refuses produce with DISK_FULL
//! (definite: nothing appended), keeps serving reads and metadata, loses nothing it
//! acknowledged, and accepts writes again once space is back. One in-process node on loopback
//! over a `SimDisk` with a capacity (no real disk gets filled).

// Real sockets and a real runtime: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::time::Duration;

use odradek_client::wire::proto::{ErrorCode, FetchRequest};
use odradek_jepsen::harness::ports::reserve;
use odradek_log::SimDisk;
use odradek_server::config::{Member, ServerConfig};
use odradek_server::{system_clock, Server};

use common::raw::{call_until, create_topic, fetched_records, metadata, produce, request_with, Raw};

const RESERVE: u64 = 4 * 1024 * 1024;

fn big_batch(index: usize) -> Vec<u8> {
    let value = format!("{index:06}-{}", "x".repeat(60 * 1024));
    common::raw::batch(&value)
}

#[test]
fn a_full_disk_refuses_produce_and_keeps_everything_acknowledged() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port_block = reserve(2).expect("two free ports");
    let ports = port_block.ports();
    let member = Member { id: 1, peer: ([127, 0, 0, 1], ports[0]).into(), client: ([127, 0, 0, 1], ports[1]).into(), kafka: None };
    let mut config = ServerConfig::new(1, "/node1", vec![member]);
    config.tick_ms = 20;
    config.disk_reserve_bytes = RESERVE;
    config.disk_check_interval_ms = 20;
    config.topic_defaults.segment_bytes = 1024 * 1024;
    let disk = SimDisk::new(7);
    disk.set_capacity_bytes(Some(24 * 1024 * 1024));
    let server = runtime.block_on(Server::start(config, disk.clone(), system_clock())).expect("start");
    let addr = server.client_addr().to_string();

    let mut raw = Raw::greeted(&addr);
    let ready = call_until(&mut raw, &metadata(1), &[ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(ready.error, ErrorCode::NONE);
    let created = call_until(&mut raw, &create_topic(2, "full", 1, 1), &[ErrorCode::NOT_CONTROLLER, ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(created.get_create_topics().topics[0].error, ErrorCode::NONE, "{created:?}");

    let mut acked = Vec::new();
    let mut refusal = None;
    for index in 0..1000 {
        let response =
            call_until(&mut raw, &produce(10, "full", big_batch(index)), &[ErrorCode::NOT_LEADER, ErrorCode::LEADER_NOT_AVAILABLE], 400);
        match response.error {
            ErrorCode::NONE => acked.push((response.get_produce().base_offset, index)),
            ErrorCode::DISK_FULL => {
                refusal = Some(response);
                break;
            }
            other => panic!("batch {index}: unexpected {other:?}: {response:?}"),
        }
    }
    let refusal = refusal.expect("the node refuses before 1000 batches of 60 KiB fill 24 MiB");
    assert!(refusal.error_message.contains("reserve"), "{refusal:?}");
    assert!(ErrorCode::DISK_FULL.is_definite());
    assert!(acked.len() >= 100, "about 20 MiB fit before the reserve: only {}", acked.len());

    // Still serving: metadata, and every acknowledged batch reads back at its offset.
    assert_eq!(raw.call(metadata(20)).error, ErrorCode::NONE);
    let mut records = Vec::new();
    while records.len() < acked.len() {
        let mut fetch = FetchRequest::new();
        fetch.topic = "full".into();
        fetch.offset = records.len() as u64;
        fetch.bytes_max = 1024 * 1024;
        let response = raw.call(request_with(21, |r| r.set_fetch(fetch)));
        assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
        let batch = fetched_records(&response);
        assert!(!batch.is_empty(), "no progress at offset {}", records.len());
        records.extend(batch);
    }
    for (offset, index) in &acked {
        let value = &records[*offset as usize].1;
        assert!(value.starts_with(format!("{index:06}-").as_bytes()), "offset {offset} holds another batch");
    }
    assert_eq!(records.len(), acked.len(), "nothing refused was appended");

    // Space comes back: writes are accepted again.
    disk.set_capacity_bytes(None);
    std::thread::sleep(Duration::from_millis(200));
    let response = raw.call(produce(30, "full", big_batch(9999)));
    assert_eq!((response.error, response.get_produce().base_offset), (ErrorCode::NONE, acked.len() as u64), "{response:?}");
    runtime.block_on(server.shutdown()).expect("clean shutdown");
}
