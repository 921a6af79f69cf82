//! Frames on a transport connection: a u32 big-endian body length, then a protobuf body
//! (`proto/transport.proto`).
//!
//! Invariants kept here:
//! - No frame body longer than `FRAME_BYTES_MAX` is ever written, and none is ever read: the
//!   reader checks the length prefix before it reads (or allocates for) the body.
//! - A batch that would not fit one frame is split across several, in order; a single message
//!   that cannot fit any frame is dropped and counted, never sent.
//! - Decoding never panics on peer input; every defect is a `TransportError`.

use std::net::SocketAddr;

use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{GroupId, NodeId, TransportError};
use crate::proto::transport::{GroupMessage, Handshake, MessageBatch};

/// Version of the transport protocol spoken by this build. A peer that announces another
/// version is refused at the handshake instead of having its frames misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body a node writes or accepts, in bytes. Big enough for a Raft append carrying
/// a full driver round of entries (raft's `max_size_per_msg` should stay well below it); small
/// enough that a corrupt or hostile length prefix cannot make a node allocate without bound.
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Bytes of the length prefix in front of every frame body.
pub const FRAME_HEADER_BYTES: usize = 4;

/// What one call of [`encode_batch`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchEncoded {
    pub frames: u64,
    pub messages: u64,
    /// Messages dropped because even alone they would exceed the frame limit.
    pub messages_oversized: u64,
}

/// Appends one frame (length prefix + body) holding `body` to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, body: &impl protobuf::Message) {
    let body_bytes = body.compute_size();
    assert!(body_bytes <= FRAME_BYTES_MAX, "frame body of {body_bytes} bytes over the limit");
    let start = out.len();
    out.extend_from_slice(&body_bytes.to_be_bytes());
    body.write_to_vec(out).expect("encoding an initialized proto3 message into a Vec cannot fail");
    assert_eq!(out.len() - start, FRAME_HEADER_BYTES + body_bytes as usize);
}

/// Who a handshake says its sender is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub node_id: NodeId,
    /// Where the sender accepts raft connections, if it said (and said it readably).
    pub listen_address: Option<SocketAddr>,
    /// The sender's data-directory incarnation; 0 when it did not say.
    pub incarnation: u64,
}

/// Appends the handshake frame this node sends (dialer) or answers with (acceptor).
pub(crate) fn encode_handshake(out: &mut Vec<u8>, node_id: NodeId, listen_address: Option<SocketAddr>, incarnation: u64) {
    let mut handshake = Handshake::new();
    handshake.set_version(PROTOCOL_VERSION);
    handshake.set_node_id(node_id);
    handshake.set_incarnation(incarnation);
    if let Some(address) = listen_address {
        handshake.set_listen_address(address.to_string());
    }
    encode_frame(out, &handshake);
}

/// Decodes a handshake body; refuses other protocol versions. An address that does not parse
/// is left out (it only ever helps to dial back), not a reason to refuse the peer.
pub(crate) fn decode_handshake(body: &[u8]) -> Result<Hello, TransportError> {
    let handshake = Handshake::parse_from_bytes(body).map_err(TransportError::malformed)?;
    if handshake.get_version() != PROTOCOL_VERSION {
        return Err(TransportError::VersionUnsupported { version_received: handshake.get_version(), version_supported: PROTOCOL_VERSION });
    }
    let listen_address = handshake.get_listen_address().parse().ok();
    Ok(Hello { node_id: handshake.get_node_id(), listen_address, incarnation: handshake.get_incarnation() })
}

/// Appends `messages` to `out` as `MessageBatch` frames of at most `frame_bytes_max` body bytes
/// each, in order. Splitting (rather than refusing) keeps one large round from failing as a
/// whole; the receiver sees several batches from the same node, which the contract allows.
pub(crate) fn encode_batch(out: &mut Vec<u8>, from: NodeId, messages: Vec<(GroupId, Message)>, frame_bytes_max: u32) -> BatchEncoded {
    assert!(frame_bytes_max <= FRAME_BYTES_MAX);
    let mut encoded = BatchEncoded::default();
    let mut batch = batch_empty(from);
    let mut batch_bytes = u64::from(batch.compute_size());
    for (group_id, message) in messages {
        let mut group_message = GroupMessage::new();
        group_message.set_group_id(group_id);
        group_message.set_message(message.write_to_bytes().expect("encoding an initialized raft message into a Vec cannot fail"));
        let group_message_bytes = group_message.compute_size();
        // Field tag (1 byte) + length varint + the embedded message.
        let cost = 1 + u64::from(protobuf::rt::compute_raw_varint32_size(group_message_bytes)) + u64::from(group_message_bytes);
        let batch_empty_bytes = u64::from(batch_empty(from).compute_size());
        if batch_empty_bytes + cost > u64::from(frame_bytes_max) {
            tracing::error!(
                group_id,
                message_bytes = group_message_bytes,
                frame_bytes_max,
                "raft message larger than a frame; dropped (lower raft max_size_per_msg)"
            );
            encoded.messages_oversized += 1;
            continue;
        }
        if batch_bytes + cost > u64::from(frame_bytes_max) {
            encode_frame(out, &batch);
            encoded.frames += 1;
            batch = batch_empty(from);
            batch_bytes = batch_empty_bytes;
        }
        batch.mut_messages().push(group_message);
        batch_bytes += cost;
        encoded.messages += 1;
    }
    if !batch.get_messages().is_empty() {
        debug_assert_eq!(u64::from(batch.compute_size()), batch_bytes);
        encode_frame(out, &batch);
        encoded.frames += 1;
    }
    encoded
}

fn batch_empty(from: NodeId) -> MessageBatch {
    let mut batch = MessageBatch::new();
    batch.set_from_node(from);
    batch
}

/// Decodes a `MessageBatch` body received on a connection whose handshake named `from`.
pub(crate) fn decode_batch(body: &[u8], from: NodeId) -> Result<Vec<(GroupId, Message)>, TransportError> {
    let mut batch = MessageBatch::parse_from_bytes(body).map_err(TransportError::malformed)?;
    if batch.get_from_node() != from {
        return Err(TransportError::SenderMismatch { from_node_batch: batch.get_from_node(), from_node_handshake: from });
    }
    let mut messages = Vec::with_capacity(batch.get_messages().len());
    for group_message in batch.mut_messages().iter_mut() {
        let message = Message::parse_from_bytes(group_message.get_message()).map_err(TransportError::malformed)?;
        messages.push((group_message.get_group_id(), message));
    }
    Ok(messages)
}

/// Reads one frame body into `body` (cleared first).
///
/// Returns `Ok(false)` on a clean end of stream before the first byte of a frame, `Ok(true)`
/// when `body` holds a whole frame body. The length is checked before the body is read, and the
/// body buffer grows only as bytes actually arrive, so a lying prefix costs nothing.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, body: &mut Vec<u8>) -> Result<bool, TransportError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut header_filled = 0;
    while header_filled < FRAME_HEADER_BYTES {
        let read_bytes = reader.read(&mut header[header_filled..]).await?;
        if read_bytes == 0 {
            if header_filled == 0 {
                return Ok(false);
            }
            return Err(TransportError::Closed);
        }
        header_filled += read_bytes;
    }
    let body_bytes = u32::from_be_bytes(header);
    if body_bytes > FRAME_BYTES_MAX {
        return Err(TransportError::FrameTooLarge { frame_bytes: body_bytes, frame_bytes_max: FRAME_BYTES_MAX });
    }
    body.clear();
    let read_bytes = reader.take(u64::from(body_bytes)).read_to_end(body).await?;
    if read_bytes != body_bytes as usize {
        return Err(TransportError::Closed);
    }
    assert_eq!(body.len(), body_bytes as usize);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, MessageType};

    fn message(group_id: GroupId, index: u64, payload_bytes: usize) -> (GroupId, Message) {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 1;
        message.to = 2;
        message.term = 7;
        message.index = index;
        let entry = Entry { index: index + 1, term: 7, data: vec![index as u8; payload_bytes].into(), ..Default::default() };
        message.entries = vec![entry].into();
        (group_id, message)
    }

    async fn read_all_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            let mut body = Vec::new();
            if !read_frame(&mut bytes, &mut body).await.unwrap() {
                return frames;
            }
            frames.push(body);
        }
    }

    #[tokio::test]
    async fn batch_round_trips_in_one_frame() {
        let messages: Vec<_> = (0..10).map(|i| message(i % 3, i, 100)).collect();
        let mut out = Vec::new();
        let encoded = encode_batch(&mut out, 1, messages.clone(), FRAME_BYTES_MAX);
        assert_eq!(encoded.frames, 1);
        assert_eq!(encoded.messages, 10);
        let frames = read_all_frames(&out).await;
        assert_eq!(frames.len(), 1);
        assert_eq!(decode_batch(&frames[0], 1).unwrap(), messages);
    }

    #[tokio::test]
    async fn batch_splits_across_frames_in_order_and_drops_oversized() {
        let frame_bytes_max = 1000;
        let mut messages: Vec<_> = (0..20).map(|i| message(i, i, 200)).collect();
        messages.insert(5, message(99, 99, 2000)); // alone larger than a frame
        let mut out = Vec::new();
        let encoded = encode_batch(&mut out, 4, messages.clone(), frame_bytes_max);
        assert_eq!(encoded.messages_oversized, 1);
        assert_eq!(encoded.messages, 20);
        let frames = read_all_frames(&out).await;
        assert_eq!(frames.len() as u64, encoded.frames);
        assert!(frames.len() > 1);
        let mut decoded = Vec::new();
        for frame in &frames {
            assert!(frame.len() <= frame_bytes_max as usize);
            decoded.extend(decode_batch(frame, 4).unwrap());
        }
        messages.remove(5);
        assert_eq!(decoded, messages);
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_refused_before_reading_body() {
        let bytes = (FRAME_BYTES_MAX + 1).to_be_bytes();
        let mut body = Vec::new();
        let error = read_frame(&mut &bytes[..], &mut body).await.unwrap_err();
        assert!(matches!(error, TransportError::FrameTooLarge { .. }), "{error}");
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error_and_empty_stream_is_clean_end() {
        let mut out = Vec::new();
        encode_handshake(&mut out, 3, None, 0);
        let mut body = Vec::new();
        let error = read_frame(&mut &out[..out.len() - 1], &mut body).await.unwrap_err();
        assert!(matches!(error, TransportError::Closed), "{error}");
        let error = read_frame(&mut &out[..2], &mut body).await.unwrap_err();
        assert!(matches!(error, TransportError::Closed), "{error}");
        assert!(!read_frame(&mut &[][..], &mut body).await.unwrap());
    }

    #[tokio::test]
    async fn handshake_round_trips_and_other_versions_are_refused() {
        let mut out = Vec::new();
        let address: SocketAddr = "127.0.0.1:9093".parse().unwrap();
        encode_handshake(&mut out, 42, Some(address), 7);
        encode_handshake(&mut out, 43, None, 0);
        let frames = read_all_frames(&out).await;
        assert_eq!(decode_handshake(&frames[0]).unwrap(), Hello { node_id: 42, listen_address: Some(address), incarnation: 7 });
        assert_eq!(decode_handshake(&frames[1]).unwrap(), Hello { node_id: 43, listen_address: None, incarnation: 0 });
        // An older node's handshake (no address, no incarnation) and an unreadable address: the
        // peer is kept.
        let mut handshake = Handshake::new();
        handshake.set_version(PROTOCOL_VERSION);
        handshake.set_node_id(44);
        handshake.set_listen_address("not an address".into());
        assert_eq!(
            decode_handshake(&handshake.write_to_bytes().unwrap()).unwrap(),
            Hello { node_id: 44, listen_address: None, incarnation: 0 }
        );

        let mut handshake = Handshake::new();
        handshake.set_version(PROTOCOL_VERSION + 1);
        handshake.set_node_id(42);
        let error = decode_handshake(&handshake.write_to_bytes().unwrap()).unwrap_err();
        assert!(
            matches!(
                error,
                TransportError::VersionUnsupported { version_received, .. }
                    if version_received == PROTOCOL_VERSION + 1
            ),
            "{error}"
        );
    }

    #[test]
    fn garbage_and_wrong_sender_are_errors_not_panics() {
        for garbage in [&[0x0f_u8; 16][..], &[0xff; 11][..], &[0x12, 0x05, 0x08][..]] {
            assert!(matches!(decode_batch(garbage, 1), Err(TransportError::Malformed(_))));
        }
        // A well-formed batch whose inner raft message is garbage.
        let mut group_message = GroupMessage::new();
        group_message.set_group_id(1);
        group_message.set_message(vec![0x0f; 8]);
        let mut batch = batch_empty(1);
        batch.mut_messages().push(group_message);
        let body = batch.write_to_bytes().unwrap();
        assert!(matches!(decode_batch(&body, 1), Err(TransportError::Malformed(_))));

        let mut out = Vec::new();
        encode_batch(&mut out, 2, vec![message(1, 1, 1)], FRAME_BYTES_MAX);
        let error = decode_batch(&out[FRAME_HEADER_BYTES..], 3).unwrap_err();
        assert!(matches!(error, TransportError::SenderMismatch { .. }), "{error}");
    }
}
