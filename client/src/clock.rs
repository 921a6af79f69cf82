//! The wall clock: the one place in the client that reads `SystemTime::now()`.
//!
//! Everything else measures time with `tokio::time` (which the madsim simulator replaces); the
//! wall clock is only used for record timestamps (Kafka's CreateTime). Keeping it here means a
//! simulation that wants skewed clocks has exactly one function to replace.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as Kafka timestamps records. A clock set before 1970
/// reads as negative milliseconds rather than panicking.
pub fn wall_clock_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wall_clock_is_after_2020() {
        assert!(super::wall_clock_ms() > 1_577_836_800_000);
    }
}
