//! The learner catch-up throttle (issue 15, rebalancing): a token bucket over the bytes of
//! entries a leader sends to its groups' *learners* (replicas catching up before a
//! reassignment promotes them), so catch-up traffic cannot starve the voters' replication and
//! with it produce. An append over the budget is dropped before it leaves, as the lossy
//! transport may drop any message: raft resends from the learner's progress (probe, then
//! replicate) on a later round, so dropping is always safe and never touches a voter's traffic.
//!
//! Sans IO: the driver passes the time. The bucket holds at most one second of the rate; an
//! append larger than that passes alone when the bucket is full (so no entry is ever starved).

/// A token bucket of bytes per second.
#[derive(Clone, Debug)]
pub struct CatchUpThrottle {
    rate_bytes_per_second: u64,
    tokens_bytes: u64,
    refilled_ms: Option<i64>,
}

impl CatchUpThrottle {
    pub fn new(rate_bytes_per_second: u64) -> CatchUpThrottle {
        assert!(rate_bytes_per_second > 0, "a throttle has a positive rate");
        CatchUpThrottle { rate_bytes_per_second, tokens_bytes: rate_bytes_per_second, refilled_ms: None }
    }

    /// Whether an append of `bytes` may leave at `now_ms` (and takes its tokens if so).
    pub fn admit(&mut self, now_ms: i64, bytes: u64) -> bool {
        let elapsed_ms = self.refilled_ms.map_or(0, |refilled| now_ms.saturating_sub(refilled).max(0)) as u64;
        let refill = elapsed_ms.saturating_mul(self.rate_bytes_per_second) / 1000;
        if refill > 0 || self.refilled_ms.is_none() {
            self.refilled_ms = Some(now_ms);
        }
        self.tokens_bytes = self.tokens_bytes.saturating_add(refill).min(self.rate_bytes_per_second);
        if bytes <= self.tokens_bytes {
            self.tokens_bytes -= bytes;
            return true;
        }
        if self.tokens_bytes == self.rate_bytes_per_second {
            self.tokens_bytes = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_bounds_what_leaves_per_second() {
        let mut throttle = CatchUpThrottle::new(1000);
        assert!(throttle.admit(0, 600));
        assert!(!throttle.admit(0, 600), "over the second's budget");
        assert!(throttle.admit(0, 400));
        assert!(!throttle.admit(100, 200), "100 ms refill 100 bytes");
        assert!(throttle.admit(300, 200), "300 ms refill 300 bytes");
        // Over any long stretch, at most the rate (plus one burst) is admitted.
        let mut admitted = 0;
        for step in 0..10_000 {
            if throttle.admit(1000 + step, 64) {
                admitted += 64;
            }
        }
        assert!(admitted <= 10 * 1000 + 1000, "{admitted} bytes in 10 s at 1000 bytes/s");
        assert!(admitted >= 9 * 1000, "{admitted} bytes in 10 s: the throttle starves its traffic");
    }

    #[test]
    fn an_append_larger_than_the_burst_passes_alone_when_the_bucket_is_full() {
        let mut throttle = CatchUpThrottle::new(100);
        assert!(throttle.admit(0, 10_000), "a full bucket lets a large append through");
        assert!(!throttle.admit(500, 10_000), "not before the bucket is full again");
        assert!(throttle.admit(1000, 10_000));
    }
}
