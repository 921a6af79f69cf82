//! A blocking client speaking the raw wire protocol, for tests that need to send what a real
//! client never would (bad frames, dropped responses, exact retries).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use odradek_client::batch::{BatchBuilder, Record};
use odradek_client::wire::proto::{
    Acks, CreateTopic, CreateTopicsRequest, ErrorCode, Hello, MetadataRequest, ProduceRequest, Request, Response,
};
use odradek_client::wire::{decode_response, encode_frame, PROTOCOL_VERSION};

pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw { stream }
    }

    pub fn greeted(addr: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        let response = raw.call(hello(1, PROTOCOL_VERSION));
        assert_eq!(response.error, ErrorCode::NONE, "{response:?}");
        raw
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, request: &Request) {
        self.send_bytes(&encode_frame(request));
    }

    /// The next response, or `None` when the server closed the connection.
    pub fn receive(&mut self) -> Option<Response> {
        let mut header = [0u8; 4];
        if self.stream.read_exact(&mut header).is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(decode_response(&body).expect("the server sends well-formed responses"))
    }

    pub fn call(&mut self, request: Request) -> Response {
        self.send(&request);
        let response = self.receive().expect("a response");
        assert_eq!(response.request_id, request.request_id);
        response
    }

    pub fn assert_closed(&mut self) {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }
}

pub fn hello(id: u64, version: u32) -> Request {
    let mut hello = Hello::new();
    hello.protocol_version = version;
    hello.client_id = "bad-input-test".into();
    let mut request = Request::new();
    request.request_id = id;
    request.set_hello(hello);
    request
}

pub fn metadata(id: u64) -> Request {
    let mut request = Request::new();
    request.request_id = id;
    request.set_metadata(MetadataRequest::new());
    request
}

pub fn create_topic(id: u64, name: &str, partitions: u32, replication_factor: u32) -> Request {
    let mut topic = CreateTopic::new();
    topic.name = name.into();
    topic.partitions = partitions;
    topic.replication_factor = replication_factor;
    let mut create = CreateTopicsRequest::new();
    create.topics.push(topic);
    let mut request = Request::new();
    request.request_id = id;
    request.set_create_topics(create);
    request
}

pub fn produce(id: u64, topic: &str, batch: Vec<u8>) -> Request {
    let mut produce = ProduceRequest::new();
    produce.topic = topic.into();
    produce.partition = 0;
    produce.acks = Acks::ACKS_ALL;
    produce.timeout_ms = 10_000;
    produce.batch = batch;
    let mut request = Request::new();
    request.request_id = id;
    request.set_produce(produce);
    request
}

pub fn batch(value: &str) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.push(&Record { timestamp: 1_000, key: None, value: Some(value.as_bytes().to_vec().into()), headers: Vec::new() }).unwrap();
    builder.build().to_vec()
}

/// A one-record batch of an idempotent producer.
pub fn idempotent_batch(value: &str, producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let mut builder = BatchBuilder::new().producer(producer_id, epoch, sequence);
    builder.push(&Record { timestamp: 1_000, key: None, value: Some(value.as_bytes().to_vec().into()), headers: Vec::new() }).unwrap();
    builder.build().to_vec()
}

pub fn request_with(id: u64, set: impl FnOnce(&mut Request)) -> Request {
    let mut request = Request::new();
    request.request_id = id;
    set(&mut request);
    request
}

/// Calls until the answer is not one of `retry` (leaders settling after creation or a
/// failover), at most `attempts` times 50 ms apart.
pub fn call_until(raw: &mut Raw, request: &Request, retry: &[ErrorCode], attempts: usize) -> Response {
    for _ in 0..attempts {
        let response = raw.call(request.clone());
        if !retry.contains(&response.error) {
            return response;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    raw.call(request.clone())
}

/// Checks a fetch response's batches against L12 (nothing at or above the high watermark) and
/// returns (offset, value) of every record.
pub fn fetched_records(response: &Response) -> Vec<(u64, Vec<u8>)> {
    let fetch = response.get_fetch();
    let mut out = Vec::new();
    let mut rest: &[u8] = &fetch.batches;
    while !rest.is_empty() {
        let len = odradek_client::batch::batch_bytes_len(rest).expect("whole batches");
        for record in odradek_client::batch::decode(&rest[..len]).expect("valid batch").records() {
            let record = record.expect("valid record");
            let offset = u64::try_from(record.offset).unwrap();
            assert!(offset < fetch.high_watermark, "L12: offset {offset} returned at or above the high watermark {}", fetch.high_watermark);
            out.push((offset, record.value.unwrap_or_default().to_vec()));
        }
        rest = &rest[len..];
    }
    out
}
