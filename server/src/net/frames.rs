//! Reading request frames off a client connection in steps that survive cancellation: the
//! progress lives in the [`FrameReader`], so the connection loop may give up waiting (for a
//! deadline, a shutdown) and come back without losing a byte.
//!
//! A body is allocated and read only after the node's [`RequestBudget`] admitted its size (the
//! header is read first); the [`Admitted`] bytes go out with the body, to be held until the
//! request is done.

use bytes::Bytes;
use odradek_client::wire::{FrameError, FRAME_HEADER_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::budget::{Admitted, RequestBudget};

/// One connection's frames, read in steps that survive cancellation (see the module comment).
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    header: [u8; FRAME_HEADER_BYTES],
    header_filled: usize,
    /// The body being read.
    body: Vec<u8>,
    body_filled: usize,
    budget: RequestBudget,
    /// The budget's bytes for the frame being read, once admitted.
    admitted: Option<Admitted>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, budget: RequestBudget) -> FrameReader<R> {
        let header = [0; FRAME_HEADER_BYTES];
        FrameReader { reader, header, header_filled: 0, body: Vec::new(), body_filled: 0, budget, admitted: None }
    }

    /// Whether part of a frame has arrived and the rest has not.
    pub fn is_mid_frame(&self) -> bool {
        self.header_filled > 0
    }

    /// Whether a body buffer is allocated for the frame being read.
    #[cfg(test)]
    fn body_started(&self) -> bool {
        !self.body.is_empty()
    }

    /// The next frame's body with its admitted bytes; `Ok(None)` at a clean end of stream between
    /// frames. A frame above `frame_bytes_max` or the whole budget is `TooLarge` (its body is
    /// never read: the connection cannot go on). Waits for the budget before reading a body.
    /// Cancel-safe.
    pub async fn next(&mut self, frame_bytes_max: usize) -> Result<Option<(Bytes, Admitted)>, FrameError> {
        while self.header_filled < FRAME_HEADER_BYTES {
            let read = self.reader.read(&mut self.header[self.header_filled..]).await?;
            if read == 0 {
                return if self.header_filled == 0 { Ok(None) } else { Err(FrameError::Truncated) };
            }
            self.header_filled += read;
        }
        let bytes = u32::from_be_bytes(self.header) as usize;
        let bytes_max = frame_bytes_max.min(self.budget.bytes_max());
        if bytes > bytes_max {
            return Err(FrameError::TooLarge { bytes, bytes_max });
        }
        if self.admitted.is_none() {
            assert_eq!(self.body_filled, 0, "a body read before its bytes were admitted");
            self.admitted = Some(self.budget.admit(bytes).await);
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
        let admitted = self.admitted.take().expect("a body is read only once admitted");
        Ok(Some((body, admitted)))
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
        let mut frames = FrameReader::new(server, RequestBudget::new(100));
        let mut got = Vec::new();
        for piece in [frame(b"sixsix"), frame(b""), frame(b"seven!!")].concat().chunks(3) {
            tokio::io::AsyncWriteExt::write_all(&mut client, piece).await.unwrap();
            // Give up on the read once it has nothing more to take, as a deadline would.
            if let Ok(frame) = tokio::time::timeout(std::time::Duration::from_millis(5), frames.next(100)).await {
                got.push(frame.unwrap().expect("not at the end").0);
            }
        }
        drop(client);
        while let Some((body, _)) = frames.next(100).await.unwrap() {
            got.push(body);
        }
        assert_eq!(got, vec![Bytes::from_static(b"sixsix"), Bytes::new(), Bytes::from_static(b"seven!!")]);
        assert!(!frames.is_mid_frame());
    }

    #[tokio::test]
    async fn a_frame_above_the_limit_is_too_large() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &frame(b"ninebytes")).await.unwrap();
        let error = FrameReader::new(server, RequestBudget::new(100)).next(8).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { bytes: 9, bytes_max: 8 }), "{error}");
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &frame(b"ninebytes")).await.unwrap();
        let error = FrameReader::new(server, RequestBudget::new(8)).next(100).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { bytes: 9, bytes_max: 8 }), "above the whole budget: {error}");
    }

    /// A frame from `next` within `wait_ms` (in-memory pipes: a waiting frame is blocked, not slow).
    async fn ready<R: AsyncRead + Unpin>(frames: &mut FrameReader<R>, wait_ms: u64) -> Option<(Bytes, Admitted)> {
        let wait = std::time::Duration::from_millis(wait_ms);
        tokio::time::timeout(wait, frames.next(1000)).await.ok().map(|frame| frame.unwrap().expect("a frame"))
    }

    #[tokio::test]
    async fn a_body_is_read_only_when_the_budget_admits_it() {
        let budget = RequestBudget::new(100);
        let (mut slow, server) = tokio::io::duplex(1024);
        let mut held = FrameReader::new(server, budget.clone());
        // Most of an 80-byte frame: its 80 bytes are admitted and held while the rest is awaited.
        tokio::io::AsyncWriteExt::write_all(&mut slow, &frame(&[1; 80])[..50]).await.unwrap();
        assert!(ready(&mut held, 20).await.is_none());
        assert_eq!(budget.bytes_in_use(), 80);
        // Another connection's whole 30-byte frame does not fit beside it: its body is not read.
        let (mut other, server) = tokio::io::duplex(1024);
        let mut waiting = FrameReader::new(server, budget.clone());
        tokio::io::AsyncWriteExt::write_all(&mut other, &frame(&[2; 30])).await.unwrap();
        assert!(ready(&mut waiting, 20).await.is_none(), "a frame beyond the budget was read");
        assert!(!waiting.body_started(), "a body was allocated before its bytes were admitted");
        assert_eq!(budget.bytes_in_use(), 80);
        // The first frame completes, but its bytes stay counted until its request is done.
        tokio::io::AsyncWriteExt::write_all(&mut slow, &frame(&[1; 80])[50..]).await.unwrap();
        let (body, admitted) = ready(&mut held, 5_000).await.expect("the held frame completes");
        assert_eq!(body.len(), 80);
        assert!(ready(&mut waiting, 20).await.is_none());
        drop(admitted);
        let (body, admitted) = ready(&mut waiting, 5_000).await.expect("admitted once the first request is done");
        assert_eq!((body.len(), budget.bytes_in_use()), (30, 30));
        drop(admitted);
        assert_eq!(budget.bytes_in_use(), 0);
    }

    #[tokio::test]
    async fn a_small_frame_fits_beside_a_large_one_that_waits() {
        let budget = RequestBudget::new(100);
        let held = budget.admit(60).await;
        let (mut large, server) = tokio::io::duplex(1024);
        let mut waiting = FrameReader::new(server, budget.clone());
        tokio::io::AsyncWriteExt::write_all(&mut large, &frame(&[1; 50])).await.unwrap();
        let (mut small, server) = tokio::io::duplex(1024);
        let mut fits = FrameReader::new(server, budget.clone());
        tokio::io::AsyncWriteExt::write_all(&mut small, &frame(&[2; 10])).await.unwrap();
        let wait_for_large = tokio::spawn(async move { waiting.next(1000).await.unwrap().expect("a frame") });
        let (body, _small) = ready(&mut fits, 5_000).await.expect("a small frame is not queued behind a large one");
        assert_eq!((body.len(), budget.bytes_in_use()), (10, 70));
        drop(held);
        let (body, _large) = tokio::time::timeout(std::time::Duration::from_secs(5), wait_for_large).await.unwrap().unwrap();
        assert_eq!((body.len(), budget.bytes_in_use()), (50, 60));
    }
}
