//! Connection floods against a real `odradek server` (issue 19, defect 5): connections that
//! never say Hello or go quiet cannot lock new clients out, and one address cannot take every
//! connection. Every load here is bounded in count, and every wait in attempts.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use odradek_client::wire::proto::ErrorCode;
use odradek_client::wire::{encode_frame, PROTOCOL_VERSION};

use common::raw::{batch, call_until, hello, metadata, produce, Raw};
use common::ProcessCluster;

/// Connections a test node accepts at once.
const CONNECTIONS_MAX: usize = 8;
/// Attempts at a fresh client, 100 ms apart, before the node counts as locked up.
const ATTEMPTS_MAX: usize = 300;

/// A node ready to serve clients (asked from 127.0.0.3, so the tests' own address starts with
/// none of its connections counted).
fn ready(cluster: &ProcessCluster) {
    let mut raw = connect_from(&cluster.client_addr(1), "127.0.0.3");
    assert_eq!(raw.call(hello(1, PROTOCOL_VERSION)).error, ErrorCode::NONE);
    let response = call_until(&mut raw, &metadata(1), &[ErrorCode::LEADER_NOT_AVAILABLE], 400);
    assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
}

/// A connection to `addr` from the loopback address `local_ip`.
fn connect_from(addr: &str, local_ip: &str) -> Raw {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local_ip}:0").parse().unwrap()).unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    Raw { stream }
}

/// Whether a fresh client is served now: connect, Hello, Metadata, each answered (a refused
/// connection is closed before any answer).
fn fresh_client_served(addr: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr) else { return false };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = Raw { stream };
    for request in [hello(1, PROTOCOL_VERSION), metadata(2)] {
        if raw.stream.write_all(&encode_frame(&request)).is_err() {
            return false;
        }
        match raw.receive() {
            Some(response) if response.error == ErrorCode::NONE => {}
            _ => return false,
        }
    }
    true
}

/// Waits, at most `ATTEMPTS_MAX` times, for a fresh client to be served.
fn a_fresh_client_gets_in(addr: &str) -> bool {
    for _ in 0..ATTEMPTS_MAX {
        if fresh_client_served(addr) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Whether the server closed `stream` (end of stream or reset), reading at most 30 s.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn connections_that_never_say_hello_cannot_lock_new_clients_out() {
    let settings = format!("connections_max = {CONNECTIONS_MAX}\nhandshake_timeout_ms = 300");
    let cluster = ProcessCluster::start_with_settings(1, &settings);
    ready(&cluster);
    let addr = cluster.client_addr(1);
    // Every connection slot taken by a peer that never says Hello.
    let mut silent: Vec<Raw> = (0..CONNECTIONS_MAX).map(|_| Raw::connect(&addr)).collect();
    assert!(a_fresh_client_gets_in(&addr), "connections without a Hello locked new clients out");
    let mut timed_out = 0;
    for raw in &mut silent {
        let answer = raw.receive().expect("a connection without a Hello is told why it is closed");
        // The last may have come while `ready`'s connection was still counted.
        if answer.error != ErrorCode::TOO_MANY_CONNECTIONS {
            assert_eq!(answer.error, ErrorCode::HELLO_REQUIRED, "{answer:?}");
            assert!(answer.error_message.contains("no Hello within 300 ms"), "{}", answer.error_message);
            timed_out += 1;
        }
        assert!(closed_by_server(&mut raw.stream), "a connection without a Hello stays open past the handshake deadline");
    }
    assert!(timed_out >= CONNECTIONS_MAX - 1, "only {timed_out} silent connections held a slot until their deadline");
}

#[test]
fn idle_connections_are_closed_and_one_address_cannot_take_every_slot() {
    let settings = format!("connections_max = {CONNECTIONS_MAX}\nconnection_idle_timeout_ms = 500\nconnections_per_address_max = 4");
    let cluster = ProcessCluster::start_with_settings(1, &settings);
    ready(&cluster);
    let addr = cluster.client_addr(1);
    // Four greeted connections from 127.0.0.1: the address's share.
    let mut idle: Vec<Raw> = (0..4).map(|_| Raw::greeted(&addr)).collect();
    // A fifth from the same address is told why and closed; another address still gets in.
    let mut fifth = Raw::connect(&addr);
    fifth.send(&hello(1, PROTOCOL_VERSION));
    let refusal = fifth.receive().expect("a refused connection is told why");
    assert_eq!(refusal.error, ErrorCode::TOO_MANY_CONNECTIONS, "{refusal:?}");
    assert!(refusal.error_message.contains("your address"), "{}", refusal.error_message);
    assert!(closed_by_server(&mut fifth.stream), "a refused connection is closed");
    let mut elsewhere = connect_from(&addr, "127.0.0.2");
    assert_eq!(elsewhere.call(hello(1, PROTOCOL_VERSION)).error, ErrorCode::NONE, "another address is served");
    // Quiet past the idle timeout: closed, and the address may connect again.
    for raw in &mut idle {
        assert!(closed_by_server(&mut raw.stream), "an idle connection stays open past the idle timeout");
    }
    assert!(a_fresh_client_gets_in(&addr));
}

#[test]
fn a_large_frame_is_read_only_when_the_request_budget_admits_it() {
    const BUDGET_BYTES: usize = 1024 * 1024;
    let cluster = ProcessCluster::start_with_settings(1, &format!("request_bytes_in_flight_max = {BUDGET_BYTES}"));
    ready(&cluster);
    let addr = cluster.client_addr(1);
    // The Hello advertises the budget as the frame limit; a frame above it can never be admitted.
    let mut greedy = Raw::connect(&addr);
    let greeting = greedy.call(hello(1, PROTOCOL_VERSION));
    assert_eq!(greeting.get_hello().frame_bytes_max as usize, BUDGET_BYTES, "{greeting:?}");
    greedy.send_bytes(&(BUDGET_BYTES as u32 + 1).to_be_bytes());
    assert_eq!(greedy.receive().expect("an answer").error, ErrorCode::FRAME_TOO_LARGE);
    // One client holds most of a frame of three quarters of the budget.
    let mut holder = Raw::greeted(&addr);
    let held_bytes = 3 * BUDGET_BYTES / 4;
    holder.send_bytes(&(held_bytes as u32).to_be_bytes());
    holder.send_bytes(&vec![0u8; held_bytes / 2]);
    // Another's request of half the budget does not fit beside it: it is not read, so not answered.
    let mut waiting = Raw::greeted(&addr);
    let request = produce(7, "no-such-topic", batch(&"x".repeat(BUDGET_BYTES / 2)));
    waiting.send(&request);
    waiting.stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut header = [0u8; 4];
    let early = waiting.stream.read(&mut header);
    assert!(
        matches!(&early, Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a request beyond the budget was read and answered: {early:?}"
    );
    // Small requests still fit.
    let mut small = Raw::greeted(&addr);
    assert_eq!(small.call(metadata(2)).error, ErrorCode::NONE);
    // The holder goes away mid-frame: its bytes come back and the waiting request is read.
    drop(holder);
    waiting.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let answer = waiting.receive().expect("the waiting request is answered once the budget admits it");
    assert_eq!(answer.request_id, 7, "{answer:?}");
}
