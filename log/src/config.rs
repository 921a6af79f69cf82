//! [`LogConfig`]: the tunables of one segment log, read by the log and by recovery alike.

use crate::planted::Planted;

/// Tunables of one log. Defaults follow Kafka's where they exist.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Roll to a new segment before one would grow past this.
    pub segment_bytes_max: u64,
    /// Roll to a new segment once the active one is this old (ms since its first entry).
    pub segment_age_ms_max: i64,
    /// One sparse index point per this many bytes of entries.
    pub index_interval_bytes: u64,
    /// Retention by size: delete oldest segments while the rest still hold this much.
    pub retention_bytes: Option<u64>,
    /// Retention by age: delete segments whose newest record is older than this.
    pub retention_ms: Option<i64>,
    /// The newest entries kept in memory for synchronous reads (Raft's `Storage`).
    pub cache_bytes_max: usize,
    /// Deliberate breakages for the checkers' teeth; all off by default, and impossible to
    /// switch on outside simulation and `planted-bugs` builds (see [`Planted`]).
    pub planted: Planted,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes_max: 128 * 1024 * 1024,
            segment_age_ms_max: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            cache_bytes_max: 8 * 1024 * 1024,
            planted: Planted::default(),
        }
    }
}

impl LogConfig {
    /// Panics on tunables no log can run with.
    pub(crate) fn assert_valid(&self) {
        assert!(self.segment_bytes_max > 0, "segment_bytes_max must be positive");
        assert!(self.index_interval_bytes > 0, "index_interval_bytes must be positive");
    }
}
