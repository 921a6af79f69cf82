//! [`LogConfig`]: the tunables of one segment log, read by the log and by recovery alike.

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
    /// Planted bug (simulation and `planted-bugs` builds only): `sync` marks everything durable
    /// without an fsync, so acknowledgements run ahead of the disk (ack-before-fsync).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub planted_skip_fsync: bool,
    /// Planted bug: a failed fsync is logged and treated as a success instead of poisoning the
    /// log (fsyncgate: the data it covered may be gone).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub planted_ignore_fsync_errors: bool,
    /// Planted bug: recovery treats any damaged entry as a torn tail and cuts the log there,
    /// dropping the valid entries and segments after it (truncate-mid-log-corruption; breaks
    /// CHECKLISTS R8 b: committed entries vanish from the replica).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub planted_truncate_corruption: bool,
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
            #[cfg(any(madsim, feature = "planted-bugs"))]
            planted_skip_fsync: false,
            #[cfg(any(madsim, feature = "planted-bugs"))]
            planted_ignore_fsync_errors: false,
            #[cfg(any(madsim, feature = "planted-bugs"))]
            planted_truncate_corruption: false,
        }
    }
}
