//! A group's start state: what its state machine needs, besides the entries from the log start
//! on, to rebuild itself after retention (or a snapshot) took the entries before the log start.
//! For a data partition it is the idempotent-producer table (`odradek_server::partition`): the
//! batches that built it may be deleted while a producer can still retry one of them, and a
//! table rebuilt from the remaining entries alone would take that retry for a new batch (P1).
//!
//! The bytes are opaque here; `as_of_index` is the raft index the state is exact at. A replica
//! restores it and then replays its log from the log start, skipping the state's part of every
//! entry at or below `as_of_index` (already in it). The log start is never moved above
//! `as_of_index + 1` (the caller bounds retention by it), so no entry the state lacks is ever
//! deleted.
//!
//! File layout (little-endian), one copy, replaced whole: written to a temporary name, synced,
//! renamed over the file and the directory synced, so a crash leaves the old file or the new one:
//!
//! ```text
//!  0 magic u32 | 4 version u16 | 6 zero u16 | 8 as_of_index u64 | 16 length u32
//! 20 bytes[length] | crc32 over everything before it u32
//! ```
//!
//! A file whose checksum, magic or length is wrong cannot come from a torn save (the rename is
//! the commit point): it is [`Error::Corruption`], and the group does not open from it (its
//! replica is set aside and repaired like one with a damaged segment).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{io_error, Error, Result};

const MAGIC: u32 = 0x4F44_5353; // "ODSS"
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 20;
/// The largest state a file holds (a data partition's full producer table is about 1 MiB).
pub const START_STATE_BYTES_MAX: usize = 64 << 20;

/// A state machine's state at `as_of_index`, opaque to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartState {
    pub as_of_index: u64,
    pub bytes: Bytes,
}

impl StartState {
    /// The file's bytes (see the module comment).
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.bytes.len() <= START_STATE_BYTES_MAX, "a start state of {} bytes", self.bytes.len());
        let mut out = Vec::with_capacity(HEADER_BYTES + self.bytes.len() + 4);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.as_of_index.to_le_bytes());
        out.extend_from_slice(&(self.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.bytes);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads what [`StartState::encode`] wrote; `Err` says what is wrong.
    pub fn decode(data: &[u8]) -> std::result::Result<StartState, String> {
        if data.len() < HEADER_BYTES + 4 {
            return Err(format!("{} bytes, shorter than a header", data.len()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let (magic, version) = (u32_at(0), u16::from_le_bytes([data[4], data[5]]));
        if magic != MAGIC {
            return Err(format!("magic {magic:#x}"));
        }
        let length = u32_at(16) as usize;
        if length > START_STATE_BYTES_MAX || data.len() != HEADER_BYTES + length + 4 {
            return Err(format!("length {length} in a file of {} bytes", data.len()));
        }
        let crc_at = HEADER_BYTES + length;
        if crc32fast::hash(&data[..crc_at]) != u32_at(crc_at) {
            return Err("checksum mismatch".into());
        }
        if version != VERSION {
            return Err(format!("version {version} (this build reads {VERSION})"));
        }
        let as_of_index = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        Ok(StartState { as_of_index, bytes: Bytes::copy_from_slice(&data[HEADER_BYTES..crc_at]) })
    }
}

/// The start-state file of one group (see the module comment).
pub struct StartStateFile<D: Disk> {
    disk: D,
    path: PathBuf,
    current: Option<StartState>,
}

impl<D: Disk> StartStateFile<D> {
    /// Opens the file at `path` (absent: no start state). A temporary file left by a save a
    /// crash interrupted is removed.
    pub async fn open(disk: &D, path: impl AsRef<Path>) -> Result<(StartStateFile<D>, Option<StartState>)> {
        let path = path.as_ref().to_path_buf();
        let temporary = temporary_path(&path);
        if let Err(source) = disk.remove_file(&temporary).await {
            if source.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::Io { path: temporary, source });
            }
        }
        let current = match disk.open(&path, OpenMode::Existing).await {
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::Io { path, source }),
            Ok(file) => {
                let len = file.len().await.map_err(io_error(&path))?;
                let data = file.read_at(0, len as usize).await.map_err(io_error(&path))?;
                let state = StartState::decode(&data).map_err(|detail| Error::Corruption {
                    path: path.clone(),
                    first_index: 0,
                    last_index: 0,
                    detail: format!("start state: {detail}"),
                })?;
                Some(state)
            }
        };
        Ok((StartStateFile { disk: disk.clone(), path, current: current.clone() }, current))
    }

    pub fn current(&self) -> Option<&StartState> {
        self.current.as_ref()
    }

    /// Replaces the state durably (`None` removes the file). Returns only once a crash would
    /// find the new state.
    pub async fn save(&mut self, state: Option<StartState>) -> Result<()> {
        if state == self.current {
            return Ok(());
        }
        let dir = self.path.parent().expect("a start-state file lives in a directory").to_path_buf();
        match &state {
            None => match self.disk.remove_file(&self.path).await {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io { path: self.path.clone(), source }),
                _ => {}
            },
            Some(state) => {
                let temporary = temporary_path(&self.path);
                let file = self.disk.open(&temporary, OpenMode::CreateOrOpen).await.map_err(io_error(&temporary))?;
                file.set_len(0).await.map_err(io_error(&temporary))?;
                file.write_at(0, Bytes::from(state.encode())).await.map_err(io_error(&temporary))?;
                file.sync_data().await.map_err(io_error(&temporary))?;
                drop(file);
                self.disk.rename(&temporary, &self.path).await.map_err(io_error(&self.path))?;
            }
        }
        self.disk.sync_dir(&dir).await.map_err(io_error(&dir))?;
        self.current = state;
        Ok(())
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrashMode, SimDisk};

    const PATH: &str = "/data/7/start_state";

    fn state(as_of_index: u64, bytes: &'static [u8]) -> StartState {
        StartState { as_of_index, bytes: Bytes::from_static(bytes) }
    }

    #[tokio::test]
    async fn saves_survive_power_loss_and_none_removes_the_file() {
        let disk = SimDisk::new(1);
        disk.create_dir_all(Path::new("/data/7")).await.unwrap();
        let (mut file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, None);
        file.save(Some(state(10, b"ten"))).await.unwrap();
        file.save(Some(state(20, b"twenty"))).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (mut file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, Some(state(20, b"twenty")));
        assert_eq!(file.current(), Some(&state(20, b"twenty")));
        file.save(None).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (_, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, None);
    }

    #[tokio::test]
    async fn a_save_cut_short_by_a_crash_leaves_the_old_state_or_the_new() {
        // A crash at every point of the save: the temporary file may hold anything, the file
        // itself is the old state until the rename.
        for seed in 0..40 {
            let disk = SimDisk::new(seed);
            disk.set_torn_write_probability(0.5);
            disk.create_dir_all(Path::new("/data/7")).await.unwrap();
            let (mut file, _) = StartStateFile::open(&disk, PATH).await.unwrap();
            file.save(Some(state(5, b"old"))).await.unwrap();
            let temporary = temporary_path(Path::new(PATH));
            let partial = disk.open(&temporary, OpenMode::CreateOrOpen).await.unwrap();
            partial.write_at(0, Bytes::from(state(9, b"new").encode())).await.unwrap();
            disk.crash(CrashMode::PowerLoss);
            let (_, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
            assert_eq!(loaded, Some(state(5, b"old")), "seed {seed}");
            assert!(disk.read_file(&temporary).is_none(), "the temporary file is removed on open");
        }
    }

    #[tokio::test]
    async fn a_flipped_bit_is_corruption_not_an_absent_state() {
        let disk = SimDisk::new(3);
        disk.create_dir_all(Path::new("/data/7")).await.unwrap();
        let (mut file, _) = StartStateFile::open(&disk, PATH).await.unwrap();
        file.save(Some(state(42, b"producers"))).await.unwrap();
        let bits = 8 * state(42, b"producers").encode().len() as u64;
        for bit in (0..bits).step_by(7) {
            disk.flip_bit(Path::new(PATH), bit);
            let opened = StartStateFile::open(&disk, PATH).await;
            assert!(matches!(opened, Err(Error::Corruption { .. })), "bit {bit}: {:?}", opened.map(|(_, s)| s));
            disk.flip_bit(Path::new(PATH), bit);
        }
        assert_eq!(StartStateFile::open(&disk, PATH).await.unwrap().1, Some(state(42, b"producers")));
    }

    #[test]
    fn decode_names_what_is_wrong() {
        let good = state(7, b"abc").encode();
        assert_eq!(StartState::decode(&good), Ok(state(7, b"abc")));
        assert!(StartState::decode(&good[..good.len() - 1]).unwrap_err().contains("length"));
        assert!(StartState::decode(&good[..10]).unwrap_err().contains("shorter"));
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        assert!(StartState::decode(&bad_magic).unwrap_err().contains("magic"));
        let mut newer = state(7, b"abc").encode();
        newer[4] = 2;
        let crc_at = newer.len() - 4;
        let crc = crc32fast::hash(&newer[..crc_at]);
        newer[crc_at..].copy_from_slice(&crc.to_le_bytes());
        assert!(StartState::decode(&newer).unwrap_err().contains("version 2"));
    }
}
