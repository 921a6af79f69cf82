//! Bad input against a real `odradek server` process: each gets a clear error, the connection
//! closes only where no later frame can be trusted, and the node keeps serving everyone else.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::time::{Duration, Instant};

use odradek_client::wire::proto::{ErrorCode, FetchRequest, Request};
use odradek_client::wire::{FRAME_BYTES_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};

use common::raw::{batch, create_topic, hello, metadata, produce, Raw};
use common::ProcessCluster;

/// The node still answers a fresh client.
fn still_serving(addr: &str) {
    let mut raw = Raw::greeted(addr);
    let response = raw.call(metadata(99));
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
}

#[test]
fn bad_input_gets_a_clear_error_and_the_node_keeps_serving() {
    let cluster = ProcessCluster::start(1);
    let addr = cluster.client_addr(1);
    // Ready once it has elected itself and caught up on its metadata.
    let ready = common::raw::call_until(&mut Raw::greeted(&addr), &metadata(1), &[ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(ready.error, ErrorCode::NONE, "{ready:?}");

    // The first request must be a Hello, of a version the node speaks.
    let mut raw = Raw::connect(&addr);
    let response = raw.call(metadata(1));
    assert_eq!(response.error, ErrorCode::HELLO_REQUIRED);
    raw.assert_closed();
    // Older than any version the node speaks: refused and closed. Newer: the node answers with
    // its own newest version, which the client then speaks (negotiation, as Kafka's
    // ApiVersions lets a newer client fall back).
    let mut raw = Raw::connect(&addr);
    let response = raw.call(hello(1, PROTOCOL_VERSION_MIN - 1));
    assert_eq!(response.error, ErrorCode::UNSUPPORTED_VERSION);
    assert!(response.error_message.contains("not supported"), "{response:?}");
    raw.assert_closed();
    let mut raw = Raw::connect(&addr);
    let response = raw.call(hello(1, PROTOCOL_VERSION + 7));
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    assert_eq!(response.get_hello().protocol_version, PROTOCOL_VERSION);
    still_serving(&addr);

    // A frame above the limit: refused before its body is read, then closed.
    let mut raw = Raw::greeted(&addr);
    raw.send_bytes(&((FRAME_BYTES_MAX as u32) + 1).to_be_bytes());
    let response = raw.receive().expect("an error response");
    assert_eq!(response.error, ErrorCode::FRAME_TOO_LARGE);
    raw.assert_closed();
    still_serving(&addr);

    // A body that is not a protobuf Request: answered, then closed.
    let mut raw = Raw::greeted(&addr);
    raw.send_bytes(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let response = raw.receive().expect("an error response");
    assert_eq!(response.error, ErrorCode::MALFORMED_REQUEST);
    raw.assert_closed();
    still_serving(&addr);

    // A well-formed request of a kind this node does not know (field 50): answered, and the
    // connection stays usable.
    let mut raw = Raw::greeted(&addr);
    raw.send_bytes(&[0, 0, 0, 5, 0x08, 0x07, 0x92, 0x03, 0x00]);
    let response = raw.receive().expect("an error response");
    assert_eq!((response.request_id, response.error), (7, ErrorCode::UNKNOWN_REQUEST));
    let response = raw.call(metadata(8));
    assert_eq!(response.error, ErrorCode::NONE, "the connection survives an unknown request");

    // Invalid topic names and counts.
    for (name, partitions, rf, expected) in [
        ("", 1, 1, ErrorCode::INVALID_TOPIC),
        ("has space", 1, 1, ErrorCode::INVALID_TOPIC),
        ("..", 1, 1, ErrorCode::INVALID_TOPIC),
        (&"x".repeat(250), 1, 1, ErrorCode::INVALID_TOPIC),
        ("ok-name", 100_000, 1, ErrorCode::INVALID_PARTITIONS),
        ("ok-name", 1, 3, ErrorCode::INVALID_REPLICATION_FACTOR),
    ] {
        let response = raw.call(create_topic(10, name, partitions, rf));
        assert_eq!(response.error, ErrorCode::NONE);
        let result = &response.get_create_topics().topics[0];
        assert_eq!(result.error, expected, "topic {name:?} ({partitions} partitions, rf {rf}): {result:?}");
        assert!(!result.error_message.is_empty(), "the error says why");
    }

    // Producing to a missing topic; then to a real one with a corrupted batch.
    let response = raw.call(produce(20, "missing", batch("v")));
    assert_eq!(response.error, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    let response = raw.call(create_topic(21, "events", 1, 1));
    assert_eq!(response.get_create_topics().topics[0].error, ErrorCode::NONE, "{response:?}");
    let mut corrupted = batch("hello");
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x40;
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        // The partition's group needs a moment to elect its leader after creation.
        let response = raw.call(produce(22, "events", corrupted.clone()));
        if response.error != ErrorCode::NOT_LEADER || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(response.error, ErrorCode::CORRUPT_BATCH, "{response:?}");
    assert!(response.error_message.to_lowercase().contains("crc"), "{response:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        let response = raw.call(produce(23, "events", batch("hello")));
        if response.error == ErrorCode::NONE || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
    assert_eq!(response.get_produce().base_offset, 0);

    // Fetching outside the log.
    let mut fetch = FetchRequest::new();
    fetch.topic = "events".into();
    fetch.partition = 0;
    fetch.offset = 5;
    let mut request = Request::new();
    request.request_id = 30;
    request.set_fetch(fetch);
    let response = raw.call(request);
    assert_eq!(response.error, ErrorCode::OFFSET_OUT_OF_RANGE, "{response:?}");
    assert_eq!(response.get_fetch().high_watermark, 1);
    assert!(response.error_message.contains("high watermark 1"), "{response:?}");

    still_serving(&addr);
}
