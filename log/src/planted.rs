//! [`Planted`]: the log's planted bugs, deliberate breakages of its durability rules that the
//! simulator's and the Jepsen harness's checkers must catch (CHECKLISTS.md "planted bugs"; the
//! server's `PlantedBug` names them and switches them on through [`crate::LogConfig::planted`]).
//!
//! The switches exist only in simulation builds (`--cfg madsim`) and builds with the
//! `planted-bugs` feature. In every other build [`Planted`] has no fields, so no planted bug can
//! be switched on, and each query below is the constant `false` that compiles its site away.

/// One switch per planted bug of the log; [`Default`] has every one off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// `sync` marks everything durable without an fsync, so acknowledgements run ahead of the
    /// disk (ack-before-fsync).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub skip_fsync: bool,
    /// A failed fsync is logged and treated as a success instead of poisoning the log
    /// (fsyncgate: the data it covered may be gone).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub ignore_fsync_errors: bool,
    /// Recovery treats any damaged entry as a torn tail and cuts the log there, dropping the
    /// valid entries and segments after it (truncate-mid-log-corruption; breaks CHECKLISTS R8 b:
    /// committed entries vanish from the replica).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub truncate_corruption: bool,
    /// A hard-state copy is read without checking its CRC: a copy whose magic and version
    /// survived bit rot or a torn write is taken as it reads, so a damaged copy can win over the
    /// intact one and the replica reopens with a term or vote it never saved
    /// (hard-state-unchecked-crc; breaks CHECKLISTS R8 c).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub hard_state_unchecked_crc: bool,
    /// A hard-state save writes both copies but skips their fdatasyncs and still reports
    /// success: a vote or a new term the replica acts on may not be on the disk
    /// (hard-state-saved-without-sync; breaks CHECKLISTS R6, which the simulator checks
    /// against the bytes its disk holds durably when a vote is granted).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub hard_state_saved_without_sync: bool,
    /// A start-state save (`crate::StartStateFile`) skips its fdatasync and its directory sync
    /// and still reports success: the trim after it deletes segments, durably, before the state
    /// that must outlive them is on the disk (start-state-saved-without-sync; breaks CHECKLISTS
    /// R12 d, which the simulator checks against the bytes its disk holds durably whenever a
    /// log start moves).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    pub start_state_saved_without_sync: bool,
}

impl Planted {
    /// Whether `sync` marks entries durable without an fsync.
    pub fn skip_fsync(&self) -> bool {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return self.skip_fsync;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        false
    }

    /// Whether a failed fsync counts as a success.
    pub fn ignore_fsync_errors(&self) -> bool {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return self.ignore_fsync_errors;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        false
    }

    /// Whether recovery cuts the log at any damaged entry, as if it were a torn tail.
    pub fn truncate_corruption(&self) -> bool {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return self.truncate_corruption;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        false
    }

    /// Whether a hard-state copy is read without checking its CRC.
    pub fn hard_state_unchecked_crc(&self) -> bool {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return self.hard_state_unchecked_crc;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        false
    }

    /// Whether a hard-state save skips its fdatasyncs.
    pub fn hard_state_saved_without_sync(&self) -> bool {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return self.hard_state_saved_without_sync;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        false
    }
}

impl Planted {
    /// Whether a start-state save skips its syncs.
    pub fn start_state_saved_without_sync(&self) -> bool {
        #[cfg(any(madsim, feature = "planted-bugs"))]
        return self.start_state_saved_without_sync;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        false
    }
}

/// The planted bug hard-state-unchecked-crc: `bytes` up to `crc_at + 4` with the CRC32 at
/// `crc_at` replaced by the one of the bytes before it, so the copy decodes whatever rot or a
/// torn write did to it; `None` when the bytes are too short to hold a CRC there.
pub(crate) fn crc_taken_for_right(bytes: &[u8], crc_at: usize) -> Option<Vec<u8>> {
    let mut copy = bytes.get(..crc_at + 4)?.to_vec();
    let crc = crc32fast::hash(&copy[..crc_at]);
    copy[crc_at..].copy_from_slice(&crc.to_le_bytes());
    Some(copy)
}
