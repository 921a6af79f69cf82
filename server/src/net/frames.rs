//! Reading request frames off a client connection in steps that survive cancellation: the
//! progress lives in the [`FrameReader`], so the connection loop may give up waiting (for a
//! deadline, a shutdown) and come back without losing a byte.

use bytes::Bytes;
use odradek_client::wire::{FrameError, FRAME_HEADER_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One connection's frames, read in steps that survive cancellation (see the module comment).
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    header: [u8; FRAME_HEADER_BYTES],
    header_filled: usize,
    /// The body being read.
    body: Vec<u8>,
    body_filled: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> FrameReader<R> {
        FrameReader { reader, header: [0; FRAME_HEADER_BYTES], header_filled: 0, body: Vec::new(), body_filled: 0 }
    }

    /// Whether part of a frame has arrived and the rest has not.
    pub fn is_mid_frame(&self) -> bool {
        self.header_filled > 0
    }

    /// The next frame's body; `Ok(None)` at a clean end of stream between frames. A frame above
    /// `frame_bytes_max` is `TooLarge` (its body is never read: the connection cannot go on).
    /// Cancel-safe.
    pub async fn next(&mut self, frame_bytes_max: usize) -> Result<Option<Bytes>, FrameError> {
        while self.header_filled < FRAME_HEADER_BYTES {
            let read = self.reader.read(&mut self.header[self.header_filled..]).await?;
            if read == 0 {
                return if self.header_filled == 0 { Ok(None) } else { Err(FrameError::Truncated) };
            }
            self.header_filled += read;
        }
        let bytes = u32::from_be_bytes(self.header) as usize;
        if bytes > frame_bytes_max {
            return Err(FrameError::TooLarge { bytes, bytes_max: frame_bytes_max });
        }
        if self.body.len() != bytes {
            assert_eq!(self.body_filled, 0, "a body buffer resized mid-read");
            self.body = vec![0; bytes];
        }
        while self.body_filled < bytes {
            let read = self.reader.read(&mut self.body[self.body_filled..]).await?;
            if read == 0 {
                return Err(FrameError::Truncated);
            }
            self.body_filled += read;
        }
        let body = Bytes::from(std::mem::take(&mut self.body));
        (self.header_filled, self.body_filled) = (0, 0);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn a_frame_read_in_pieces_survives_cancelled_reads() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut frames = FrameReader::new(server);
        let mut got = Vec::new();
        for piece in [frame(b"sixsix"), frame(b""), frame(b"seven!!")].concat().chunks(3) {
            tokio::io::AsyncWriteExt::write_all(&mut client, piece).await.unwrap();
            // Give up on the read once it has nothing more to take, as a deadline would.
            if let Ok(frame) = tokio::time::timeout(std::time::Duration::from_millis(5), frames.next(100)).await {
                got.push(frame.unwrap().expect("not at the end"));
            }
        }
        drop(client);
        while let Some(body) = frames.next(100).await.unwrap() {
            got.push(body);
        }
        assert_eq!(got, vec![Bytes::from_static(b"sixsix"), Bytes::new(), Bytes::from_static(b"seven!!")]);
        assert!(!frames.is_mid_frame());
    }

    #[tokio::test]
    async fn a_frame_above_the_limit_is_too_large() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &frame(b"ninebytes")).await.unwrap();
        let error = FrameReader::new(server).next(8).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { bytes: 9, bytes_max: 8 }), "{error}");
    }
}
