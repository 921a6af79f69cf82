//! The durable Raft configuration (`ConfState`) of one group: a small file with two checksummed
//! slots written alternately, like the log crate's `HardStateFile`, so a torn write of one slot
//! never loses the last good configuration.
//!
//! Why a file and not a replay of config entries: retention deletes old segments, and with them
//! the config entries that built the configuration, so it cannot always be rebuilt from the log.
//! The driver saves the file (write + fdatasync) when it applies a conf change, before it
//! persists any commit index at or above that change (see `node.rs`), so after a restart the
//! file holds every conf change at or below the persisted commit. It may also hold changes above
//! the persisted commit; `index` says which, and the driver skips re-applying those.
//!
//! Layout: slot 0 at byte 0, slot 1 at byte `CONF_SLOT_STRIDE_BYTES`. A slot (little-endian):
//!
//! ```text
//!  0 magic u32 | 4 version u16 | 6 zero u16 | 8 sequence u64 | 16 index u64 | 24 body_bytes u32
//! 28 body (protobuf eraftpb.ConfState) | 28+body_bytes crc32 over 0..28+body_bytes u32
//! ```
//!
//! The newest valid slot (highest sequence) wins; a file with bytes but no valid slot is
//! corruption, reported as [`ConfStateError::Corrupt`] (the replica must not vote, R8c).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use odradek_log::{Disk, DiskFile, OpenMode};
use protobuf::Message as _;
use raft::eraftpb::ConfState;

const CONF_SLOT_MAGIC: u32 = 0x4F44_4353; // "ODCS"
const CONF_SLOT_VERSION: u16 = 1;
const CONF_SLOT_HEADER_BYTES: usize = 28;
/// Distance between the two slots: one sector each.
pub const CONF_SLOT_STRIDE_BYTES: u64 = 512;
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

/// The two-slot conf-state file of one group.
pub struct ConfStateFile<D: Disk> {
    file: D::File,
    path: PathBuf,
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

fn decode_slot(bytes: &[u8]) -> Option<(u64, u64, ConfState)> {
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
    Some((u64_at(8), u64_at(16), state))
}

impl<D: Disk> ConfStateFile<D> {
    /// Opens the file at `path`, creating it durably with `initial` (at index 0) if missing.
    /// Returns the file, the conf state and the index of the last conf change it includes.
    pub async fn open(disk: &D, path: impl AsRef<Path>, initial: &ConfState) -> Result<(ConfStateFile<D>, ConfState, u64), ConfStateError> {
        let path = path.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConfStateError::Io { path, source }
        };
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        disk.create_dir_all(&dir).await.map_err(io(&dir))?;
        let file = disk.open(&path, OpenMode::CreateOrOpen).await.map_err(io(&path))?;
        if file.len().await.map_err(io(&path))? == 0 {
            file.write_at(0, Bytes::from(encode_slot(0, 0, initial)?)).await.map_err(io(&path))?;
            file.sync_data().await.map_err(io(&path))?;
            disk.sync_dir(&dir).await.map_err(io(&dir))?;
            let conf = ConfStateFile { file, path, sequence: 0, index: 0, current: initial.clone() };
            return Ok((conf, initial.clone(), 0));
        }
        let bytes = file.read_at(0, 2 * CONF_SLOT_STRIDE_BYTES as usize).await.map_err(io(&path))?;
        let slots = [decode_slot(&bytes), bytes.get(CONF_SLOT_STRIDE_BYTES as usize..).and_then(decode_slot)];
        let Some((sequence, index, state)) = slots.into_iter().flatten().max_by_key(|&(sequence, _, _)| sequence) else {
            return Err(ConfStateError::Corrupt { path });
        };
        let conf = ConfStateFile { file, path, sequence, index, current: state.clone() };
        Ok((conf, state, index))
    }

    pub fn get(&self) -> &ConfState {
        &self.current
    }

    /// Index of the last conf change included in the saved state (0: the initial state).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Durably saves `state`, the configuration after applying the conf change at `index`,
    /// into the slot not holding the current one. An error is fatal for the replica.
    pub async fn save(&mut self, state: &ConfState, index: u64) -> Result<(), ConfStateError> {
        assert!(index >= self.index, "conf changes apply in log order: {index} < {}", self.index);
        let sequence = self.sequence + 1;
        let position = (sequence % 2) * CONF_SLOT_STRIDE_BYTES;
        let slot = encode_slot(sequence, index, state)?;
        let io = |source| ConfStateError::Io { path: self.path.clone(), source };
        self.file.write_at(position, Bytes::from(slot)).await.map_err(io)?;
        self.file.sync_data().await.map_err(|source| ConfStateError::Io { path: self.path.clone(), source })?;
        self.sequence = sequence;
        self.index = index;
        self.current = state.clone();
        Ok(())
    }
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
    async fn save_survives_power_loss_and_a_damaged_slot() {
        let disk = SimDisk::new(7);
        let path = Path::new("/g/conf_state");
        let (mut file, state, index) = ConfStateFile::open(&disk, path, &conf(&[1, 2, 3], &[])).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 3], &[]), 0));
        file.save(&conf(&[1, 2, 3], &[4]), 10).await.unwrap();
        file.save(&conf(&[1, 2, 4], &[]), 20).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (_, state, index) = ConfStateFile::open(&disk, path, &ConfState::default()).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 4], &[]), 20));
        // Damage the newest slot (sequence 2 lives in slot 0): the older one wins.
        disk.flip_bit(path, 8 * 20);
        let (_, state, index) = ConfStateFile::open(&disk, path, &ConfState::default()).await.unwrap();
        assert_eq!((state, index), (conf(&[1, 2, 3], &[4]), 10));
        disk.flip_bit(path, (CONF_SLOT_STRIDE_BYTES * 8) + 8 * 20);
        let error = ConfStateFile::open(&disk, path, &ConfState::default()).await.err().expect("both slots bad");
        assert!(matches!(error, ConfStateError::Corrupt { .. }), "{error}");
    }
}
