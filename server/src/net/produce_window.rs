//! A connection's unanswered produces, bounded in bytes: both listeners (native and Kafka) read
//! a connection's next request only while less than [`PRODUCE_BYTES_IN_FLIGHT_MAX`] bytes of
//! its record batches wait for their answers.
//!
//! Why: a produce is queued to raft before the next request is read, so one client pipelining
//! large batches on one connection can push its partition's leader past raft's uncommitted-bytes
//! limit ([`odradek_consensus::node::RAFT_UNCOMMITTED_BYTES_MAX`]). Raft refuses the proposals
//! beyond it (busy) while later, smaller ones still fit, so a pipeline would come back with
//! holes: earlier batches refused, later ones appended, and a client's retries would append
//! them out of order (librdkafka's 0041_fetch_max_bytes did, over the Kafka listener). With
//! the window the connection waits instead, and every batch is taken in request order. Kafka
//! serves a connection's requests one at a time; this keeps pipelining within the window.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::shutdown::Shutdown;

/// Bytes of record batches in a connection's unanswered produces, at most (a larger request
/// alone counts as this many): a quarter of raft's `max_uncommitted_size`
/// ([`odradek_consensus::node::RAFT_UNCOMMITTED_BYTES_MAX`]), which refuses proposals beyond it.
pub const PRODUCE_BYTES_IN_FLIGHT_MAX: usize = 16 * 1024 * 1024;
const _: () = assert!(PRODUCE_BYTES_IN_FLIGHT_MAX as u64 <= odradek_consensus::node::RAFT_UNCOMMITTED_BYTES_MAX / 4);

/// One connection's window over its unanswered produces (see the module comment).
#[derive(Clone, Debug)]
pub struct ProduceWindow {
    bytes: Arc<Semaphore>,
}

impl Default for ProduceWindow {
    fn default() -> ProduceWindow {
        ProduceWindow::new()
    }
}

impl ProduceWindow {
    pub fn new() -> ProduceWindow {
        ProduceWindow { bytes: Arc::new(Semaphore::new(PRODUCE_BYTES_IN_FLIGHT_MAX)) }
    }

    /// Room for a produce of `bytes` bytes of record batches (a larger one takes the whole
    /// window, an empty one a byte), waiting while the connection's earlier produces hold too
    /// much; the reader calls it before it queues the produce, so nothing after it is read
    /// meanwhile and the order is kept. The room is given back when the permit is dropped,
    /// once the produce is answered. `None` when the node stops first.
    pub async fn admit(&self, bytes: usize, shutdown: &mut Shutdown) -> Option<OwnedSemaphorePermit> {
        let permits = bytes.clamp(1, PRODUCE_BYTES_IN_FLIGHT_MAX) as u32;
        // Room at once is taken without yielding: a connection within its window is served
        // exactly as without one.
        if let Ok(held) = self.bytes.clone().try_acquire_many_owned(permits) {
            return Some(held);
        }
        tokio::select! {
            biased;
            _ = shutdown.stopping() => None,
            held = self.bytes.clone().acquire_many_owned(permits) => held.ok(),
        }
    }

    /// Bytes free in the window now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_produce_waits_until_earlier_ones_give_their_bytes_back() {
        let (_stop, mut shutdown) = crate::shutdown::channel();
        let window = ProduceWindow::new();
        let first = window.admit(10 * 1024 * 1024, &mut shutdown).await.expect("room");
        let second = window.admit(0, &mut shutdown).await.expect("an empty produce takes a byte");
        assert_eq!(window.available(), PRODUCE_BYTES_IN_FLIGHT_MAX - 10 * 1024 * 1024 - 1);
        // 8 MiB more does not fit until the first is answered.
        let waiting = {
            let (window, mut shutdown) = (window.clone(), shutdown.clone());
            tokio::spawn(async move { window.admit(8 * 1024 * 1024, &mut shutdown).await.map(|held| held.num_permits()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap(), Some(8 * 1024 * 1024));
        // A request larger than the window takes all of it, once the window is empty.
        drop(second);
        let whole = window.admit(usize::MAX, &mut shutdown).await.expect("room");
        assert_eq!((whole.num_permits(), window.available()), (PRODUCE_BYTES_IN_FLIGHT_MAX, 0));
    }
}
