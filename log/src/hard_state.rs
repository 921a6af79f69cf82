//! Raft hard state (term, vote, commit, and whether the replica is suspect: see [`Suspicion`])
//! for one group: a small file holding two mirrored, checksummed copies of the state
//! ([`MirroredFile`]), so neither a torn save nor bit rot in one copy ever rolls the state back
//! (a forgotten vote would let the replica vote twice, R8 c).
//!
//! Layout: copy 0 at byte 0, copy 1 at byte `SLOT_STRIDE_BYTES` (a separate 512-byte sector).
//! A copy (little-endian), version 2:
//!
//! ```text
//!  0 magic u32 | 4 version u16 | 6 zero u16 | 8 sequence u64 | 16 term u64 | 24 vote u64
//! 32 commit u64 | 40 suspect cut u64 (0: none) | 48 suspect bound u64 | 56 suspect term u64
//! 64 crc32 over 0..64 u32
//! ```
//!
//! Version 1 (no suspicion, the crc at 40 over 0..40) is still read.
//!
//! The newest valid copy (highest sequence) wins and opening repairs the other. The file is
//! created with the default state on both copies and fsynced (file and directory) before
//! anything can depend on it, so a file that exists with bytes but no valid copy is corruption
//! ([`Error::HardStateCorrupt`]): the group does not open, so the replica never votes with a
//! state it lost (R8 c). An empty file is a creation a crash cut short. (Files written by the
//! earlier alternating-slot layout open the same way: the newest slot wins and is mirrored.)

use std::path::Path;

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::mirrored::{MirroredFile, Opened, PathError, COPY_STRIDE_BYTES};
use crate::planted::Planted;

const SLOT_MAGIC: u32 = 0x4F44_4853; // "ODHS"
const SLOT_VERSION: u16 = 2;
/// Bytes of one copy as a save writes it (version 2).
pub const SLOT_BYTES: usize = 68;
const SLOT_V1_BYTES: usize = 44;
/// Distance between the two copies: one sector each.
pub const SLOT_STRIDE_BYTES: u64 = COPY_STRIDE_BYTES;

/// Raft's durable per-group state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    /// The node voted for in `term` (0: none).
    pub vote: u64,
    pub commit: u64,
    /// Set while the replica may have lost entries it acknowledged (see [`Suspicion`]).
    pub suspect: Option<Suspicion>,
}

/// A replica whose recovery cut a damaged last entry cannot tell a torn write it never
/// acknowledged from bit rot in an entry it did (CHECKLISTS R8 e): from index `cut` up to
/// `bound` it may have acknowledged entries it no longer holds. Until that is settled it must
/// neither vote nor campaign (protocol-aware recovery, see `odradek_consensus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// The first index recovery cut off.
    pub cut: u64,
    /// The highest index the replica may have acknowledged (at least `cut`).
    pub bound: u64,
    /// The replica's term when it cut: every entry it may have lost is of this term or older.
    pub term: u64,
}

impl Suspicion {
    /// Both ranges at once: a replica cut twice may have lost entries of either.
    pub fn merge(self, other: Suspicion) -> Suspicion {
        Suspicion { cut: self.cut.min(other.cut), bound: self.bound.max(other.bound), term: self.term.max(other.term) }
    }
}

/// The mirrored hard-state file of one group.
pub struct HardStateFile<D: Disk> {
    file: MirroredFile<D>,
    sequence: u64,
    current: HardState,
    /// Whether saves skip their syncs (planted hard-state-saved-without-sync).
    unsynced: bool,
}

fn encode_slot(sequence: u64, state: HardState) -> Vec<u8> {
    if let Some(suspect) = state.suspect {
        assert!(suspect.cut >= 1, "a suspicion's cut is an index (0 encodes none)");
        assert!(suspect.bound >= suspect.cut, "a suspicion's bound {} below its cut {}", suspect.bound, suspect.cut);
    }
    let mut out = Vec::with_capacity(SLOT_BYTES);
    out.extend_from_slice(&SLOT_MAGIC.to_le_bytes());
    out.extend_from_slice(&SLOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    let (cut, bound, term) = state.suspect.map_or((0, 0, 0), |s| (s.cut, s.bound, s.term));
    for value in [sequence, state.term, state.vote, state.commit, cut, bound, term] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), SLOT_BYTES, "a copy is SLOT_BYTES long");
    assert_eq!(decode_slot(&out), Some((sequence, state)), "a copy decodes to what was encoded");
    out
}

fn decode_slot(bytes: &[u8]) -> Option<(u64, HardState)> {
    let header = bytes.get(..8)?;
    let magic = u32::from_le_bytes(header[0..4].try_into().unwrap());
    let version = u16::from_le_bytes(header[4..6].try_into().unwrap());
    let slot_bytes = match version {
        1 => SLOT_V1_BYTES,
        SLOT_VERSION => SLOT_BYTES,
        _ => return None,
    };
    let bytes = bytes.get(..slot_bytes)?;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[slot_bytes - 4..].try_into().unwrap());
    if magic != SLOT_MAGIC || crc32fast::hash(&bytes[..slot_bytes - 4]) != crc {
        return None;
    }
    let suspect = (version == SLOT_VERSION && u64_at(40) != 0).then(|| Suspicion { cut: u64_at(40), bound: u64_at(48), term: u64_at(56) });
    Some((u64_at(8), HardState { term: u64_at(16), vote: u64_at(24), commit: u64_at(32), suspect }))
}

/// The hard state a hard-state file's `bytes` hold, as [`HardStateFile::open`] would load it
/// (the newest valid copy), without repairing anything; `None` when no copy is valid (or the
/// bytes are empty: a creation cut short, which opens as the default state). The simulator
/// decodes the bytes its disk holds durably with it, to check that a granted vote is on the disk
/// (CHECKLISTS R6).
pub fn decode_file(bytes: &[u8]) -> Option<HardState> {
    crate::mirrored::newest_copy(bytes, decode_slot).map(|(_, state)| state)
}

fn path_error((path, source): PathError) -> Error {
    Error::Io { path, source }
}

impl<D: Disk> HardStateFile<D> {
    /// Opens the file at `path`, creating it (durably) with the default state if missing, and
    /// repairing a copy that is damaged or behind the other.
    pub async fn open(disk: &D, path: impl AsRef<Path>) -> Result<(HardStateFile<D>, HardState)> {
        HardStateFile::open_with(disk, path, &Planted::default()).await
    }

    /// [`HardStateFile::open`] with the log's planted bugs (simulation and `planted-bugs`
    /// builds: [`Planted::hard_state_unchecked_crc`]).
    pub async fn open_with(disk: &D, path: impl AsRef<Path>, planted: &Planted) -> Result<(HardStateFile<D>, HardState)> {
        let path = path.as_ref();
        let initial = encode_slot(0, HardState::default());
        let unchecked = planted.hard_state_unchecked_crc();
        let unsynced = planted.hard_state_saved_without_sync();
        let decode = |bytes: &[u8]| {
            if unchecked {
                return crate::planted::crc_taken_for_right(bytes, SLOT_BYTES - 4).and_then(|copy| decode_slot(&copy));
            }
            decode_slot(bytes)
        };
        match MirroredFile::open(disk, path, &initial, decode).await.map_err(path_error)? {
            Opened::Created(file) => {
                Ok((HardStateFile { file, sequence: 0, current: HardState::default(), unsynced }, HardState::default()))
            }
            Opened::Loaded { file, sequence, value, repaired } => {
                let suspect = value.suspect;
                assert!(suspect.is_none_or(|s| s.bound >= s.cut), "a saved suspicion {suspect:?} reads back whole");
                if repaired {
                    tracing::warn!(path = %path.display(), ?value, "hard state: one copy was damaged or stale, rewritten");
                }
                Ok((HardStateFile { file, sequence, current: value, unsynced }, value))
            }
            Opened::Corrupt => Err(Error::HardStateCorrupt { path: path.to_path_buf() }),
        }
    }

    /// The last state saved (or loaded).
    pub fn get(&self) -> HardState {
        self.current
    }

    /// Durably saves `state` to both copies (each written and fdatasynced in turn). An error is
    /// fatal for the replica (fsyncgate).
    pub async fn save(&mut self, state: HardState) -> Result<()> {
        let current = self.current;
        assert!(state.term >= current.term, "term never decreases");
        let same_term = state.term == current.term;
        assert!(!same_term || current.vote == 0 || state.vote == current.vote, "a second vote in term {}", state.term);
        let sequence = self.sequence + 1;
        self.file.save_syncing(&encode_slot(sequence, state), !self.unsynced).await.map_err(path_error)?;
        self.sequence = sequence;
        self.current = state;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{CrashMode, DiskFile, OpenMode, SimDisk};

    const PATH: &str = "/data/group-1/hardstate";

    fn state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState { term, vote, commit, suspect: None }
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
    async fn a_flip_in_either_copy_keeps_the_newest_state_and_is_repaired() {
        // F-S3 / R8 c: rot in one copy must not roll the vote back. Every bit of both copies.
        for bit in (0..8 * SLOT_BYTES as u64).chain(8 * SLOT_STRIDE_BYTES..8 * (SLOT_STRIDE_BYTES + SLOT_BYTES as u64)) {
            let disk = SimDisk::new(2);
            let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
            file.save(state(1, 1, 0)).await.unwrap();
            file.save(state(2, 3, 4)).await.unwrap();
            drop(file);
            disk.flip_bit(Path::new(PATH), bit);
            let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
            assert_eq!(loaded, state(2, 3, 4), "flip of bit {bit}");
            // The open rewrote the damaged copy, so rot in the other copy later is harmless too.
            let other = (bit + 8 * SLOT_STRIDE_BYTES) % (16 * SLOT_STRIDE_BYTES);
            disk.flip_bit(Path::new(PATH), other);
            let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
            assert_eq!(loaded, state(2, 3, 4), "flip of bit {bit}, then of bit {other}");
        }
    }

    #[tokio::test]
    async fn a_state_saved_after_a_failed_creation_survives_power_loss() {
        // The creation's first fsync fails; the retry loads what the failed attempt wrote, and
        // must make the file and its name durable before the next save counts on them.
        for seed in 0..16 {
            let disk = SimDisk::new(seed);
            disk.fail_next_syncs(1);
            assert!(HardStateFile::open(&disk, PATH).await.is_err());
            let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
            file.save(state(3, 2, 0)).await.unwrap();
            drop(file);
            disk.crash(CrashMode::PowerLoss);
            let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
            assert_eq!(loaded, state(3, 2, 0), "seed {seed}");
        }
    }

    #[tokio::test]
    async fn a_crash_between_the_two_copies_keeps_the_new_state() {
        // The first copy of a save is durable, the second was never written: the new state wins
        // and the open mirrors it, so a flip in copy 0 afterwards still finds it in copy 1.
        let disk = SimDisk::new(4);
        let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
        file.save(state(3, 2, 5)).await.unwrap();
        drop(file);
        let raw = disk.open(Path::new(PATH), OpenMode::Existing).await.unwrap();
        raw.write_at(0, Bytes::from(encode_slot(2, state(4, 1, 5)))).await.unwrap();
        raw.sync_data().await.unwrap();
        drop(raw);
        disk.crash(CrashMode::PowerLoss);
        let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, state(4, 1, 5));
        disk.flip_bit(Path::new(PATH), 8 * 20);
        let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, state(4, 1, 5));
    }

    #[tokio::test]
    async fn a_suspicion_survives_power_loss_and_version_1_files_still_open() {
        let disk = SimDisk::new(5);
        let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
        let suspect = HardState { suspect: Some(Suspicion { cut: 7, bound: 9, term: 3 }), ..state(3, 0, 2) };
        file.save(suspect).await.unwrap();
        drop(file);
        disk.crash(CrashMode::PowerLoss);
        let (mut file, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, suspect);
        file.save(state(3, 0, 2)).await.unwrap();
        drop(file);
        let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded.suspect, None, "clearing the suspicion is saved too");

        // A version-1 copy (written before suspicions existed) in both places.
        let mut v1 = Vec::new();
        v1.extend_from_slice(&SLOT_MAGIC.to_le_bytes());
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&0u16.to_le_bytes());
        for value in [8u64, 6, 2, 11] {
            v1.extend_from_slice(&value.to_le_bytes());
        }
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let raw = disk.open(Path::new(PATH), OpenMode::Existing).await.unwrap();
        raw.set_len(0).await.unwrap();
        raw.write_at(0, Bytes::from(v1.clone())).await.unwrap();
        raw.write_at(SLOT_STRIDE_BYTES, Bytes::from(v1)).await.unwrap();
        raw.sync_data().await.unwrap();
        drop(raw);
        let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, state(6, 2, 11));
    }

    #[tokio::test]
    async fn decode_file_reads_what_the_disk_holds_durably() {
        let disk = SimDisk::new(6);
        let (mut file, _) = HardStateFile::open(&disk, PATH).await.unwrap();
        let durable = |disk: &SimDisk| decode_file(&disk.read_file_durable(Path::new(PATH)).unwrap());
        assert_eq!(durable(&disk), Some(HardState::default()));
        file.save(state(2, 3, 1)).await.unwrap();
        assert_eq!(durable(&disk), Some(state(2, 3, 1)));
        // One copy damaged: the other holds the state, as opening would find it.
        disk.flip_bit(Path::new(PATH), 8 * 20);
        assert_eq!(durable(&disk), Some(state(2, 3, 1)));
        disk.flip_bit(Path::new(PATH), 8 * (SLOT_STRIDE_BYTES + 20));
        assert_eq!(durable(&disk), None, "both copies damaged");
        assert_eq!(decode_file(&[]), None);
    }

    #[cfg(any(madsim, feature = "planted-bugs"))]
    #[tokio::test]
    async fn planted_save_without_sync_leaves_the_disk_behind() {
        // The planted bug reports success with nothing durable: what the disk holds is the
        // previous state, and a power loss brings it back.
        let disk = SimDisk::new(7);
        let planted = Planted { hard_state_saved_without_sync: true, ..Planted::default() };
        let (mut file, _) = HardStateFile::open_with(&disk, PATH, &planted).await.unwrap();
        file.save(state(1, 2, 0)).await.unwrap();
        assert_eq!(file.get(), state(1, 2, 0));
        assert_eq!(decode_file(&disk.read_file_durable(Path::new(PATH)).unwrap()), Some(HardState::default()));
        drop(file);
        disk.crash(CrashMode::PowerLoss);
        let (_, loaded) = HardStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, HardState::default());
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
