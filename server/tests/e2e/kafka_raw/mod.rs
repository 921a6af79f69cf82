//! A blocking Kafka client for the Kafka-listener tests (`kafka_listener.rs`, `kafka_groups.rs`):
//! request frames written with the `kafka-protocol` codecs, response frames read back and decoded
//! whole (no trailing bytes). Correlation ids are the caller's where a test pipelines or damages
//! frames, and counted up otherwise ([`KafkaRaw::call`] checks the answer carries its own).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use odradek_server::config::{Member, ServerConfig};

/// A one-node cluster's settings with a Kafka listener on an ephemeral port (tick 20 ms).
pub fn one_node_config() -> ServerConfig {
    let ports: Vec<u16> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let member = Member { id: 1, peer: ([127, 0, 0, 1], ports[0]).into(), client: ([127, 0, 0, 1], ports[1]).into(), kafka: None };
    let mut config = ServerConfig::new(1, "/node1", vec![member]);
    config.tick_ms = 20;
    config.kafka_listen = Some(([127, 0, 0, 1], 0).into());
    config
}

/// A TLS connection (rustls over a blocking socket).
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub struct KafkaRaw<S = TcpStream> {
    pub stream: S,
    correlation_next: i32,
}

impl KafkaRaw {
    pub fn connect(addr: &str) -> KafkaRaw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        KafkaRaw { stream, correlation_next: 1 }
    }

    /// One request frame: the length, the header (API key from the request), the body
    /// (`odradek_client::kafka::frame`, the framing every hand-written Kafka client here uses).
    pub fn frame(version: i16, correlation_id: i32, request: &RequestKind) -> Vec<u8> {
        odradek_client::kafka::frame(api_key(request), version, correlation_id, "odradek-test", request)
    }
    /// A TLS connection to `addr` verified with `tls` (the handshake runs on the first
    /// exchange; a failed one surfaces as a closed connection).
    pub fn connect_tls(addr: &str, tls: &odradek_client::tls::ClientTls) -> KafkaRaw<TlsStream> {
        let socket = TcpStream::connect(addr).expect("connect");
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let connection = rustls::ClientConnection::new(tls.config().unwrap(), tls.server_name_for(addr).unwrap()).unwrap();
        KafkaRaw { stream: rustls::StreamOwned::new(connection, socket), correlation_next: 1 }
    }
}

impl<S: Read + Write> KafkaRaw<S> {
    pub fn send(&mut self, version: i16, correlation_id: i32, request: RequestKind) {
        self.stream.write_all(&KafkaRaw::frame(version, correlation_id, &request)).unwrap();
    }

    /// The next response's correlation id and body, or `None` once the server closed.
    pub fn receive(&mut self, key: ApiKey, version: i16) -> Option<(i32, ResponseKind)> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut body).ok()?;
        let decoded = odradek_client::kafka::decode_response(key, version, Bytes::from(body));
        Some(decoded.unwrap_or_else(|e| panic!("{key:?} v{version}: {e}")))
    }

    /// The next response, which must answer `correlation_id`.
    pub fn answer(&mut self, key: ApiKey, version: i16, correlation_id: i32) -> ResponseKind {
        let (id, response) = self.receive(key, version).expect("a response");
        assert_eq!(id, correlation_id, "{key:?} v{version}: answered out of order");
        response
    }

    /// Sends `request` at `version` and waits for its answer.
    pub fn call(&mut self, version: i16, request: RequestKind) -> ResponseKind {
        let (key, correlation_id) = (api_key(&request), self.correlation_next);
        self.correlation_next += 1;
        self.send(version, correlation_id, request);
        self.answer(key, version, correlation_id)
    }

    pub fn assert_closed(&mut self) {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            // A reset (unread bytes at the server's close), or a TLS stream ended without
            // close_notify.
            Err(error) if matches!(error.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof) => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }
}

/// The API a request is for.
pub fn api_key(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
        RequestKind::ConsumerGroupDescribe(_) => ApiKey::ConsumerGroupDescribe,
        RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        RequestKind::AlterConfigs(_) => ApiKey::AlterConfigs,
        RequestKind::DeleteGroups(_) => ApiKey::DeleteGroups,
        RequestKind::DeleteRecords(_) => ApiKey::DeleteRecords,
        RequestKind::SaslHandshake(_) => ApiKey::SaslHandshake,
        RequestKind::SaslAuthenticate(_) => ApiKey::SaslAuthenticate,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::OffsetDelete(_) => ApiKey::OffsetDelete,
        other => panic!("not used by the tests: {other:?}"),
    }
}
