//! Raft hard state (term, vote, commit) for one group: a small file with two checksummed
//! slots, written alternately, so a torn write of one slot never loses the last good state.
//!
//! Layout: slot 0 at byte 0, slot 1 at byte `SLOT_STRIDE_BYTES` (a separate 512-byte sector, so
//! a torn sector reaches at most one slot). A slot (little-endian):
//!
//! ```text
//!  0 magic u32 | 4 version u16 | 6 zero u16 | 8 sequence u64 | 16 term u64 | 24 vote u64
//! 32 commit u64 | 40 crc32 over 0..40 u32
//! ```
//!
//! The newest valid slot (highest sequence) wins. The file is created with a valid slot 0 and
//! fsynced (file and directory) before anything can depend on it, so a file that exists with
//! bytes but no valid slot is corruption ([`Error::HardStateCorrupt`]): the replica must not
//! vote until it recovers (R8c). An empty file is a creation a crash cut short.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{io_error, Error, Result};

const SLOT_MAGIC: u32 = 0x4F44_4853; // "ODHS"
const SLOT_VERSION: u16 = 1;
const SLOT_BYTES: usize = 44;
/// Distance between the two slots: one sector each.
pub const SLOT_STRIDE_BYTES: u64 = 512;

/// Raft's durable per-group state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    /// The node voted for in `term` (0: none).
    pub vote: u64,
    pub commit: u64,
}

/// The two-slot hard-state file of one group.
pub struct HardStateFile<D: Disk> {
    file: D::File,
    path: PathBuf,
    sequence: u64,
    current: HardState,
}

fn encode_slot(sequence: u64, state: HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_BYTES);
    out.extend_from_slice(&SLOT_MAGIC.to_le_bytes());
    out.extend_from_slice(&SLOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    for value in [sequence, state.term, state.vote, state.commit] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), SLOT_BYTES);
    out
}

fn decode_slot(bytes: &[u8]) -> Option<(u64, HardState)> {
    let bytes = bytes.get(..SLOT_BYTES)?;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let version = u16::from_le_bytes(bytes[4..6].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[40..44].try_into().unwrap());
    if magic != SLOT_MAGIC || version != SLOT_VERSION || crc32fast::hash(&bytes[..40]) != crc {
        return None;
    }
    Some((u64_at(8), HardState { term: u64_at(16), vote: u64_at(24), commit: u64_at(32) }))
}

impl<D: Disk> HardStateFile<D> {
    /// Opens the file at `path`, creating it (durably) with the default state if missing.
    pub async fn open(disk: &D, path: impl AsRef<Path>) -> Result<(HardStateFile<D>, HardState)> {
        let path = path.as_ref().to_path_buf();
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        disk.create_dir_all(&dir).await.map_err(io_error(&dir))?;
        let file = disk.open(&path, OpenMode::CreateOrOpen).await.map_err(io_error(&path))?;
        let len = file.len().await.map_err(io_error(&path))?;
        if len == 0 {
            file.write_at(0, Bytes::from(encode_slot(0, HardState::default()))).await.map_err(io_error(&path))?;
            file.sync_data().await.map_err(io_error(&path))?;
            disk.sync_dir(&dir).await.map_err(io_error(&dir))?;
            let state = HardState::default();
            return Ok((HardStateFile { file, path, sequence: 0, current: state }, state));
        }
        let bytes = file.read_at(0, (SLOT_STRIDE_BYTES as usize) + SLOT_BYTES).await.map_err(io_error(&path))?;
        let slots = [decode_slot(&bytes), bytes.get(SLOT_STRIDE_BYTES as usize..).and_then(decode_slot)];
        let Some((sequence, state)) = slots.into_iter().flatten().max_by_key(|&(sequence, _)| sequence) else {
            return Err(Error::HardStateCorrupt { path });
        };
        Ok((HardStateFile { file, path, sequence, current: state }, state))
    }

    /// The last state saved (or loaded).
    pub fn get(&self) -> HardState {
        self.current
    }

    /// Durably saves `state` into the slot not holding the current one (write + fdatasync).
    /// An error is fatal for the replica (fsyncgate).
    pub async fn save(&mut self, state: HardState) -> Result<()> {
        assert!(state.term >= self.current.term, "term never decreases");
        let sequence = self.sequence + 1;
        let position = (sequence % 2) * SLOT_STRIDE_BYTES;
        let path = &self.path;
        self.file.write_at(position, Bytes::from(encode_slot(sequence, state))).await.map_err(io_error(path))?;
        self.file.sync_data().await.map_err(io_error(path))?;
        self.sequence = sequence;
        self.current = state;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrashMode, SimDisk};

    const PATH: &str = "/data/group-1/hardstate";

    fn state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState { term, vote, commit }
    }

    #[tokio::test]
    async fn saves_survive_power_loss_and_alternate_slots() {
        let disk = SimDisk::new(1);
        let (mut file, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, HardState::default());
        for term in 1..=5 {
            file.save(state(term, term % 3, term * 10)).await.unwrap();
        }
        drop(file);
        disk.crash(CrashMode::PowerLoss);
        let (file, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, state(5, 2, 50));
        assert_eq!(file.get(), loaded);
    }

    #[tokio::test]
    async fn a_damaged_slot_falls_back_to_the_other() {
        for bit in [0u64, 77, 130, 8 * 43 + 7] {
            let disk = SimDisk::new(2);
            let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
            file.save(state(1, 1, 0)).await.unwrap(); // sequence 1: slot 1
            file.save(state(2, 3, 4)).await.unwrap(); // sequence 2: slot 0
            drop(file);
            // Damage the newest slot (slot 0): the previous state comes back, never garbage.
            disk.flip_bit(Path::new(PATH), bit);
            let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
            assert_eq!(loaded, state(1, 1, 0), "flip of bit {bit}");
        }
    }

    #[tokio::test]
    async fn both_slots_damaged_is_corruption_not_a_fresh_start() {
        let disk = SimDisk::new(3);
        let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
        file.save(state(1, 1, 0)).await.unwrap();
        file.save(state(2, 3, 4)).await.unwrap();
        drop(file);
        disk.flip_bit(Path::new(PATH), 100);
        disk.flip_bit(Path::new(PATH), SLOT_STRIDE_BYTES * 8 + 100);
        assert!(matches!(HardStateFile::open(&disk, PATH).await, Err(Error::HardStateCorrupt { .. })));
    }

    #[tokio::test]
    async fn a_torn_save_keeps_the_previous_state() {
        // Power loss while a save is unsynced: either the old or the new state, never neither.
        for seed in 0..64 {
            let disk = SimDisk::new(seed);
            disk.set_torn_write_probability(1.0);
            let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
            file.save(state(4, 1, 9)).await.unwrap();
            disk.fail_next_syncs(1); // the next save's write stays pending
            assert!(file.save(state(5, 2, 11)).await.is_err());
            drop(file);
            disk.crash(CrashMode::PowerLoss);
            let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
            assert!(loaded == state(4, 1, 9) || loaded == state(5, 2, 11), "seed {seed}: {loaded:?}");
        }
    }
}
