//! The log crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything the log, its recovery and the hard-state file can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk refused an operation (includes a full disk: see [`Error::is_disk_full`]).
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Checksummed data is damaged in a way a torn write cannot explain: a bad entry followed
    /// by good ones, a broken sequence, a damaged segment header. Never truncated silently;
    /// the damaged entries must be re-fetched from a healthy replica.
    #[error("corruption in {}: entries {first_index}..={last_index} damaged: {detail}", path.display())]
    Corruption { path: PathBuf, first_index: u64, last_index: u64, detail: String },

    /// An appended entry does not continue the log (index or offset gap, term regression).
    #[error(
        "entry out of sequence: expected index {index_expected} at offset {offset_expected} \
         with term >= {term_min}, got index {index} at offset {offset} with term {term}"
    )]
    OutOfSequence { index_expected: u64, offset_expected: u64, term_min: u64, index: u64, offset: u64, term: u64 },

    /// An entry breaks a format rule (payload too large, a data entry without records...).
    #[error("invalid entry at index {index}: {detail}")]
    InvalidEntry { index: u64, detail: String },

    /// The index is below the log start (removed by retention or a snapshot).
    #[error("index {index} is compacted: the log starts at {first_index}")]
    Compacted { index: u64, first_index: u64 },

    /// The index is above the last entry.
    #[error("index {index} is unavailable: the last entry is {last_index}")]
    Unavailable { index: u64, last_index: u64 },

    /// The offset is below the log start offset.
    #[error("offset {offset} is below the log start offset {start_offset}")]
    OffsetBelowStart { offset: u64, start_offset: u64 },

    /// An earlier write or fsync failed; what is durable is unknown until the log is reopened
    /// (fsyncgate: never retry an fsync).
    #[error("the log at {} is poisoned by an earlier write or fsync failure; reopen it", path.display())]
    Poisoned { path: PathBuf },

    /// Both slots of the hard-state file fail their checksum. The replica must not vote until
    /// it has recovered its state from the group.
    #[error("hard state {} is corrupt: both slots fail their checksum", path.display())]
    HardStateCorrupt { path: PathBuf },
}

impl Error {
    /// True when the disk is full (ENOSPC): the caller should stop accepting writes, not crash.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if crate::disk::is_disk_full(source))
    }
}

/// The log crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches the path to an io error.
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}
