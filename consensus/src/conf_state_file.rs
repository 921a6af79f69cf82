//! The durable Raft configuration (`ConfState`) of one group: a small file with two mirrored,
//! checksummed copies ([`MirroredFile`], like the log crate's `HardStateFile`), so neither a torn
//! save nor bit rot in one copy (F-S3) ever rolls the configuration back.
//!
//! Why a file and not a replay of config entries: retention deletes old segments, and with them
//! the config entries that built the configuration, so it cannot always be rebuilt from the log.
//! The driver saves the file (write + fdatasync) when it applies a conf change, before it
//! persists any commit index at or above that change (see `node.rs`), so after a restart the
//! file holds every conf change at or below the persisted commit. It may also hold changes above
//! the persisted commit; `index` says which, and the driver skips re-applying those.
//!
//! Layout: copy 0 at byte 0, copy 1 at byte `CONF_SLOT_STRIDE_BYTES`. A copy (little-endian):
//!
//! ```text
//!  0 magic u32 | 4 version u16 | 6 zero u16 | 8 sequence u64 | 16 index u64 | 24 body_bytes u32
//! 28 body (protobuf eraftpb.ConfState) | 28+body_bytes crc32 over 0..28+body_bytes u32
//! ```
//!
//! The newest valid copy (highest sequence) wins and opening repairs the other; a file with
//! bytes but no valid copy is corruption, reported as [`ConfStateError::Corrupt`] (the group
//! does not open, so the replica never votes with a configuration it lost, R8 c).

use std::path::{Path, PathBuf};

use odradek_log::{Disk, MirroredFile, MirroredOpened, PathError, COPY_STRIDE_BYTES};
use protobuf::Message as _;
use raft::eraftpb::ConfState;

const CONF_SLOT_MAGIC: u32 = 0x4F44_4353; // "ODCS"
const CONF_SLOT_VERSION: u16 = 1;
const CONF_SLOT_HEADER_BYTES: usize = 28;
/// Distance between the two copies: one sector each.
pub const CONF_SLOT_STRIDE_BYTES: u64 = COPY_STRIDE_BYTES;
/// The largest encoded `ConfState` a slot holds (about 50 members with 8-byte ids).
pub const CONF_STATE_BYTES_MAX: usize = CONF_SLOT_STRIDE_BYTES as usize - CONF_SLOT_HEADER_BYTES - 4;

/// Errors of the conf-state file.
#[derive(Debug, thiserror::Error)]
pub enum ConfStateError {
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("conf state {} is corrupt: both slots fail their checksum", path.display())]
    Corrupt { path: PathBuf },
    #[error("conf state of {bytes} bytes exceeds CONF_STATE_BYTES_MAX ({CONF_STATE_BYTES_MAX})")]
    TooLarge { bytes: usize },
}

/// The mirrored conf-state file of one group.
pub struct ConfStateFile<D: Disk> {
    file: MirroredFile<D>,
    sequence: u64,
    index: u64,
    current: ConfState,
}

fn encode_slot(sequence: u64, index: u64, state: &ConfState) -> Result<Vec<u8>, ConfStateError> {
    let body = state.write_to_bytes().expect("a ConfState always encodes");
    if body.len() > CONF_STATE_BYTES_MAX {
        return Err(ConfStateError::TooLarge { bytes: body.len() });
    }
    let mut out = Vec::with_capacity(CONF_SLOT_HEADER_BYTES + body.len() + 4);
    out.extend_from_slice(&CONF_SLOT_MAGIC.to_le_bytes());
    out.extend_from_slice(&CONF_SLOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert!(out.len() <= CONF_SLOT_STRIDE_BYTES as usize);
    Ok(out)
}

/// A copy's sequence, then the index of its last conf change and the state.
fn decode_slot(bytes: &[u8]) -> Option<(u64, (u64, ConfState))> {
    let header = bytes.get(..CONF_SLOT_HEADER_BYTES)?;
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let magic = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let version = u16::from_le_bytes(header[4..6].try_into().expect("2 bytes"));
    let body_bytes = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes")) as usize;
    if magic != CONF_SLOT_MAGIC || version != CONF_SLOT_VERSION || body_bytes > CONF_STATE_BYTES_MAX {
        return None;
    }
    let end = CONF_SLOT_HEADER_BYTES + body_bytes;
    let crc = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..end]) != crc {
        return None;
    }
    let state = ConfState::parse_from_bytes(&bytes[CONF_SLOT_HEADER_BYTES..end]).ok()?;
    Some((u64_at(8), (u64_at(16), state)))
}

impl<D: Disk> ConfStateFile<D> {
    /// Opens the file at `path`, creating it durably with `initial` (at index 0) if missing,
    /// and repairing a copy that is damaged or behind the other. Returns the file, the conf
    /// state and the index of the last conf change it includes.
    pub async fn open(disk: &D, path: impl AsRef<Path>, initial: &ConfState) -> Result<(ConfStateFile<D>, ConfState, u64), ConfStateError> {
        let path = path.as_ref();
        let first = encode_slot(0, 0, initial)?;
        match MirroredFile::open(disk, path, &first, decode_slot).await.map_err(io_error)? {
            MirroredOpened::Created(file) => {
                Ok((ConfStateFile { file, sequence: 0, index: 0, current: initial.clone() }, initial.clone(), 0))
            }
            MirroredOpened::Loaded { file, sequence, value: (index, state), repaired } => {
                if repaired {
                    tracing::warn!(path = %path.display(), index, "conf state: one copy was damaged or stale, rewritten");
                }
                Ok((ConfStateFile { file, sequence, index, current: state.clone() }, state, index))
            }
            MirroredOpened::Corrupt => Err(ConfStateError::Corrupt { path: path.to_path_buf() }),
        }
    }

    pub fn get(&self) -> &ConfState {
        &self.current
    }

    /// Index of the last conf change included in the saved state (0: the initial state).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Durably saves `state`, the configuration after applying the conf change at `index`, to
    /// both copies. An error is fatal for the replica.
    pub async fn save(&mut self, state: &ConfState, index: u64) -> Result<(), ConfStateError> {
        assert!(index >= self.index, "conf changes apply in log order: {index} < {}", self.index);
        let sequence = self.sequence + 1;
        self.file.save(&encode_slot(sequence, index, state)?).await.map_err(io_error)?;
        self.sequence = sequence;
        self.index = index;
        self.current = state.clone();
        Ok(())
    }
}

fn io_error((path, source): PathError) -> ConfStateError {
    ConfStateError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use odradek_log::{CrashMode, SimDisk};

    use super::*;

    fn conf(voters: &[u64], learners: &[u64]) -> ConfState {
        let mut state = ConfState::default();
        state.set_voters(voters.to_vec());
        state.set_learners(learners.to_vec());
        state
    }

    #[tokio::test]
    async fn save_survives_power_loss_and_a_damaged_copy() {
        let disk = SimDisk::new(7);
        let path = Path::new("/g/conf_state");
        let (mut file, state, index) = ConfStateFile::open(&disk, path, &conf(&[1, 2, 3], &[])).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 3], &[]), 0));
        file.save(&conf(&[1, 2, 3], &[4]), 10).await.unwrap();
        file.save(&conf(&[1, 2, 4], &[]), 20).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (_, state, index) = ConfStateFile::open(&disk, path, &ConfState::default()).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 4], &[]), 20));
        // Damage one copy: the other still holds the newest state (never the older one, F-S3),
        // and the open repairs the damaged copy, so later damage to the other is harmless too.
        disk.flip_bit(path, 8 * 20);
        let (_, state, index) = ConfStateFile::open(&disk, path, &ConfState::default()).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 4], &[]), 20));
        disk.flip_bit(path, (CONF_SLOT_STRIDE_BYTES * 8) + 8 * 20);
        let (_, state, index) = ConfStateFile::open(&disk, path, &ConfState::default()).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 4], &[]), 20));
        // Both copies damaged (with no open in between): corruption, never the initial state.
        disk.flip_bit(path, 8 * 20);
        disk.flip_bit(path, (CONF_SLOT_STRIDE_BYTES * 8) + 8 * 20);
        let error = ConfStateFile::open(&disk, path, &ConfState::default()).await.err().expect("both slots bad");
        assert!(matches!(error, ConfStateError::Corrupt { .. }), "{error}");
    }
}
