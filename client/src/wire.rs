//! The client wire protocol: protobuf `Request`/`Response` bodies (see `proto/wire.proto`) in
//! length-prefixed frames, pipelined on one connection by request id, opened by a versioned
//! `Hello`.
//!
//! Frame: `[body length: u32 big-endian][body]`. A body above the receiver's
//! [`FRAME_BYTES_MAX`] is refused before it is read (so a bad length cannot make a node allocate
//! gigabytes); the server answers `FRAME_TOO_LARGE` and closes, because it cannot find the next
//! frame boundary without reading the oversized body.
//!
//! The error table ([`proto::ErrorCode::is_definite`]) is shared by server and client: a
//! definite error means the request certainly had no effect, an indefinite one means it may
//! have. A client never reports an indefinite outcome as definite (CHECKLISTS.md, L4 / G1a).

use bytes::{Buf, Bytes, BytesMut};
use protobuf::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub mod proto {
    //! Protobuf types generated at build time from `proto/wire.proto` (pure-Rust codegen).
    include!(concat!(env!("OUT_DIR"), "/proto_modules.rs"));
    pub use wire::*;
}

use proto::{ErrorCode, Request, Response};

/// The newest protocol version this code speaks. Version 2 added consumer groups, version 3
/// authentication and authorization; a server answers a `Hello` with the lower of the client's
/// version and its own, and refuses group requests on a version 1 connection, security
/// requests on a version 1 or 2 one, with `UNSUPPORTED_VERSION`.
pub const PROTOCOL_VERSION: u32 = 3;
/// The oldest protocol version this code still speaks; a `Hello` naming an older one is refused.
pub const PROTOCOL_VERSION_MIN: u32 = 1;
/// The first protocol version with consumer-group requests.
pub const PROTOCOL_VERSION_GROUPS: u32 = 2;
/// The first protocol version with SASL, user and ACL requests.
pub const PROTOCOL_VERSION_SECURITY: u32 = 3;
/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;
/// The largest frame body accepted by default: a fetch response of up to 32 MiB of batches plus
/// its envelope. Larger frames are refused before their body is read.
pub const FRAME_BYTES_MAX: usize = 32 * 1024 * 1024 + 64 * 1024;

impl ErrorCode {
    /// True when the request certainly had no effect (for a produce: nothing was appended).
    /// `NONE` counts as definite: the outcome is known.
    pub fn is_definite(self) -> bool {
        !matches!(self, ErrorCode::REQUEST_TIMED_OUT | ErrorCode::LEADERSHIP_LOST | ErrorCode::INTERNAL)
    }

    /// True when retrying the same request (after refreshing metadata, or finding the group's
    /// coordinator again) may succeed. Group errors that ask a member to rejoin
    /// (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, FENCED_MEMBER_EPOCH) are not
    /// retriable as such: the member must rejoin first.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NOT_LEADER
                | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                | ErrorCode::SHUTTING_DOWN
                | ErrorCode::NOT_CONTROLLER
                | ErrorCode::LEADER_NOT_AVAILABLE
                | ErrorCode::DUPLICATE_IN_FLIGHT
                | ErrorCode::NOT_COORDINATOR
                | ErrorCode::COORDINATOR_NOT_AVAILABLE
                | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
                | ErrorCode::REQUEST_TIMED_OUT
                | ErrorCode::LEADERSHIP_LOST
        )
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {bytes} bytes exceeds the limit of {bytes_max} bytes")]
    TooLarge { bytes: usize, bytes_max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed frame body: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The error code a server answers with before closing the connection, where one applies.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            FrameError::TooLarge { .. } => Some(ErrorCode::FRAME_TOO_LARGE),
            FrameError::Malformed(_) => Some(ErrorCode::MALFORMED_REQUEST),
            FrameError::Truncated | FrameError::Io(_) => None,
        }
    }
}

/// Encodes a message as one frame.
pub fn encode_frame(message: &impl Message) -> Vec<u8> {
    let body = message.write_to_bytes().expect("protobuf encoding of an in-memory message does not fail");
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Splits a byte stream into frame bodies; for callers that own their buffering.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    bytes_max: usize,
}

impl FrameDecoder {
    pub fn new(bytes_max: usize) -> FrameDecoder {
        FrameDecoder { buffer: BytesMut::new(), bytes_max }
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame body, if one has arrived. After `TooLarge` the stream cannot be
    /// resynchronised: the caller must close it.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let bytes = u32::from_be_bytes(self.buffer[..FRAME_HEADER_BYTES].try_into().expect("4 bytes")) as usize;
        if bytes > self.bytes_max {
            return Err(FrameError::TooLarge { bytes, bytes_max: self.bytes_max });
        }
        if self.buffer.len() < FRAME_HEADER_BYTES + bytes {
            self.buffer.reserve(FRAME_HEADER_BYTES + bytes - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(FRAME_HEADER_BYTES);
        Ok(Some(self.buffer.split_to(bytes).freeze()))
    }
}

/// Reads one frame body; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, bytes_max: usize) -> Result<Option<Bytes>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        let read = reader.read(&mut header[filled..]).await?;
        if read == 0 {
            return if filled == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        filled += read;
    }
    let bytes = u32::from_be_bytes(header) as usize;
    if bytes > bytes_max {
        return Err(FrameError::TooLarge { bytes, bytes_max });
    }
    let mut body = vec![0u8; bytes];
    reader.read_exact(&mut body).await.map_err(|error| match error.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(error),
    })?;
    Ok(Some(Bytes::from(body)))
}

/// Writes one frame and flushes (simulated TCP sends only on flush).
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, message: &impl Message) -> std::io::Result<()> {
    writer.write_all(&encode_frame(message)).await?;
    writer.flush().await
}

/// Parses a request body. A body that parses but names no request kind this code knows (a
/// newer client's) is `UNKNOWN_REQUEST`; one that does not parse is `MALFORMED_REQUEST`.
pub fn decode_request(body: &[u8]) -> Result<Request, (u64, ErrorCode, String)> {
    let request = Request::parse_from_bytes(body).map_err(|error| (0, ErrorCode::MALFORMED_REQUEST, error.to_string()))?;
    if request.body.is_none() {
        return Err((request.request_id, ErrorCode::UNKNOWN_REQUEST, "request names no kind this server knows".into()));
    }
    Ok(request)
}

/// Parses a response body.
pub fn decode_response(body: &[u8]) -> Result<Response, FrameError> {
    Response::parse_from_bytes(body).map_err(|error| FrameError::Malformed(error.to_string()))
}

/// An error response to `request_id`.
pub fn error_response(request_id: u64, error: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = Response::new();
    response.request_id = request_id;
    response.error = error;
    response.error_message = message.into();
    response
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;

    fn produce_request(request_id: u64, batch: &[u8]) -> Request {
        let mut produce = ProduceRequest::new();
        produce.topic = "orders".into();
        produce.partition = 3;
        produce.acks = Acks::ACKS_ALL;
        produce.batch = batch.to_vec();
        let mut request = Request::new();
        request.request_id = request_id;
        request.set_produce(produce);
        request
    }

    #[test]
    fn frames_round_trip_through_the_decoder_byte_by_byte() {
        let requests: Vec<Request> = (1..=3).map(|id| produce_request(id, &vec![id as u8; 100 * id as usize])).collect();
        let stream: Vec<u8> = requests.iter().flat_map(encode_frame).collect();
        let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX);
        let mut decoded = Vec::new();
        for byte in stream {
            decoder.extend(&[byte]);
            while let Some(body) = decoder.next_frame().unwrap() {
                decoded.push(decode_request(&body).unwrap());
            }
        }
        assert_eq!(decoded, requests);
    }

    #[test]
    fn oversized_frames_are_refused_before_their_body_arrives() {
        let mut decoder = FrameDecoder::new(1000);
        decoder.extend(&1001u32.to_be_bytes());
        match decoder.next_frame() {
            Err(error @ FrameError::TooLarge { bytes: 1001, bytes_max: 1000 }) => {
                assert_eq!(error.error_code(), Some(ErrorCode::FRAME_TOO_LARGE))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut decoder = FrameDecoder::new(1000);
        decoder.extend(&1000u32.to_be_bytes());
        assert!(decoder.next_frame().unwrap().is_none(), "a frame at the limit is fine, it just has not arrived");
    }

    #[test]
    fn malformed_and_unknown_requests_get_distinct_errors() {
        let garbage = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
        assert_eq!(decode_request(&garbage).unwrap_err().1, ErrorCode::MALFORMED_REQUEST);
        // A request from a newer client: field 99 is a request kind this code does not know.
        let mut newer = Vec::new();
        newer.extend_from_slice(&[0x08, 0x07]); // request_id = 7
        newer.extend_from_slice(&[0x9a, 0x06, 0x02, 0x08, 0x01]); // field 99, length-delimited
        let (request_id, code, _) = decode_request(&newer).unwrap_err();
        assert_eq!((request_id, code), (7, ErrorCode::UNKNOWN_REQUEST));
    }

    #[test]
    fn error_table_keeps_definite_and_indefinite_apart() {
        for code in [ErrorCode::REQUEST_TIMED_OUT, ErrorCode::LEADERSHIP_LOST, ErrorCode::INTERNAL] {
            assert!(!code.is_definite(), "{code:?}");
        }
        for code in [ErrorCode::NOT_LEADER, ErrorCode::CORRUPT_BATCH, ErrorCode::OUT_OF_ORDER_SEQUENCE, ErrorCode::PRODUCER_FENCED] {
            assert!(code.is_definite(), "{code:?}");
        }
        // Every code the protocol defines is in the table one way or the other, on purpose:
        // the indefinite ones are exactly the 1xx range.
        for code in <ErrorCode as protobuf::ProtobufEnum>::values() {
            assert_eq!(code.is_definite(), (*code as i32) < 100, "{code:?}");
        }
    }

    #[tokio::test]
    async fn async_frames_round_trip_and_detect_truncation() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let request = produce_request(9, b"batch bytes");
        write_frame(&mut client, &request).await.unwrap();
        let body = read_frame(&mut server, FRAME_BYTES_MAX).await.unwrap().unwrap();
        assert_eq!(decode_request(&body).unwrap(), request);
        // A frame cut short by a closed connection.
        let frame = encode_frame(&request);
        client.write_all(&frame[..frame.len() - 3]).await.unwrap();
        drop(client);
        assert!(matches!(read_frame(&mut server, FRAME_BYTES_MAX).await, Err(FrameError::Truncated)));
    }

    #[tokio::test]
    async fn clean_end_of_stream_between_frames_is_not_an_error() {
        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert!(read_frame(&mut server, FRAME_BYTES_MAX).await.unwrap().is_none());
    }
}
