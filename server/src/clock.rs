//! Wall-clock time for the server: the one place that reads the system clock. The simulator
//! passes its own [`Clock`] (with a per-node offset: fault F-C1).

use std::sync::Arc;

/// Milliseconds since the Unix epoch, as this node sees them.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock (madsim intercepts it in simulation builds).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    })
}
