//! `odradek-log`: the checksummed segment log that is both a partition's data and its Raft log.
//!
//! See `../shared/DESIGN.md` ("The segment log"). Everything on disk goes through [`Disk`]:
//! [`FsDisk`] in production, [`SimDisk`] (power-loss model, seeded faults) in tests and the
//! simulator. The log stores entries ([`Entry`]) whose payloads (record batches) it never looks
//! into; [`SegmentLog`] verifies every checksum on open and on read, cuts off a torn tail and
//! reports anything else as [`Error::Corruption`]. [`HardStateFile`] keeps Raft's term, vote and
//! commit in two mirrored, checksummed copies ([`MirroredFile`]).

mod budget_disk;
mod config;
mod disk;
mod entry;
mod error;
mod fs_disk;
mod hard_state;
mod log;
mod mirrored;
mod planted;
mod reader;
mod recovery;
mod segment;
mod sim_disk;
mod start_state;

pub use budget_disk::{BudgetDisk, BudgetFile, BudgetStats};
pub use config::LogConfig;
pub use disk::{disk_full_error, is_disk_full, Disk, DiskFile, OpenMode};
pub use entry::{decode_entry, Entry, EntryHeader, EntryKind, ENTRY_HEADER_BYTES, ENTRY_PAYLOAD_BYTES_MAX};
pub use error::{Error, Result};
pub use fs_disk::FsDisk;
pub use hard_state::{
    decode_file as decode_hard_state_file, HardState, HardStateFile, Suspicion, SLOT_BYTES as HARD_STATE_SLOT_BYTES, SLOT_STRIDE_BYTES,
};
pub use log::{RetentionReport, SegmentLog};
pub use mirrored::{MirroredFile, Opened as MirroredOpened, PathError, COPY_STRIDE_BYTES};
pub use planted::Planted;
pub use reader::LogReader;
pub use recovery::{highest_intact_index, RecoveryReport, TornTail};
pub use segment::{index_file_name, segment_file_name, SEGMENT_HEADER_BYTES};
pub use sim_disk::{CrashMode, DiskImage, LatencyConfig, SimDisk, SimDiskStats};
pub use start_state::{StartState, StartStateFile, START_STATE_BYTES_MAX};
