//! The node's memory budget for requests in flight (issue 19, defect 6; Kafka's
//! `queued.max.request.bytes`): a request's frame body is allocated and read only once the budget
//! admits its whole size, and its bytes stay counted until its handler is done with it. Without
//! it, 16 connections each sending most of a 32 MiB frame held 512 MiB (1,024 could hold 32 GiB).
//!
//! Invariant: the bytes admitted and not yet released never exceed `bytes_max`. A frame larger
//! than the whole budget can never be admitted, so the connection refuses it as too large (the
//! node's Hello advertises the smaller of the frame limit and the budget).
//!
//! Cost: one uncontended lock per request and one per release; the memory held is bounded by `bytes_max` plus what decoding copies (one protobuf
//! parse of each admitted body, so at most about twice the budget).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Bytes of requests a node holds at once, shared by all its client connections.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    bytes_max: usize,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    bytes_in_use: Mutex<usize>,
    /// Told whenever bytes come back; waiting admissions look again.
    released: Notify,
}

/// Bytes admitted for one request; dropping it gives them back.
#[derive(Debug)]
pub struct Admitted {
    bytes: usize,
    shared: Arc<Shared>,
}

impl RequestBudget {
    pub fn new(bytes_max: usize) -> RequestBudget {
        assert!(bytes_max > 0, "a request budget is positive");
        RequestBudget { bytes_max, shared: Arc::default() }
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Bytes admitted and not yet given back.
    pub fn bytes_in_use(&self) -> usize {
        *lock(&self.shared.bytes_in_use)
    }

    /// Waits until `bytes` fit beside the bytes in use and takes them. Not first come, first
    /// served: a small request fits beside a large one that waits (in FIFO order, one large
    /// request waiting behind a slow sender's held frame would stall every connection of the
    /// node); a large one may wait while small ones keep coming, as in Kafka's memory pool.
    /// Cancel-safe: a cancelled wait takes nothing.
    pub async fn admit(&self, bytes: usize) -> Admitted {
        assert!(bytes <= self.bytes_max, "a request of {bytes} bytes can never fit a budget of {}", self.bytes_max);
        loop {
            // Registered before looking, so a release between the look and the wait is seen.
            let released = self.shared.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut in_use = lock(&self.shared.bytes_in_use);
                assert!(*in_use <= self.bytes_max, "{} bytes in use, budget {}", *in_use, self.bytes_max);
                if *in_use + bytes <= self.bytes_max {
                    *in_use += bytes;
                    return Admitted { bytes, shared: self.shared.clone() };
                }
            }
            released.await;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        {
            let mut in_use = lock(&self.shared.bytes_in_use);
            assert!(*in_use >= self.bytes, "admitted bytes are given back once");
            *in_use -= self.bytes;
        }
        self.shared.released.notify_waiters();
    }
}

fn lock(bytes_in_use: &Mutex<usize>) -> std::sync::MutexGuard<'_, usize> {
    bytes_in_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
