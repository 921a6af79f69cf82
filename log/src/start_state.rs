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
//! deleted. A record of no bytes says that nothing is needed as of `as_of_index` (an empty
//! producer table, or a state machine that keeps nothing): it bounds the log start all the same.
//!
//! **Every trim leaves a record.** The file is written before a trim or a reset moves the log
//! start (never removed afterwards), so a log that starts after index 1 always has a record
//! whose `as_of_index + 1` reaches its start ([`StartStateFile::check_covers`]). Without that
//! rule a group whose first save was lost (a rename the disk dropped at power loss, a save that
//! skipped its syncs) reopened as one that never needed a state: silently, with an empty
//! producer table, so a retried batch was appended twice (L2). Now a missing or older record is
//! [`Error::Corruption`] on opening, like a damaged file.
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
    /// The record that nothing is needed as of `as_of_index` (see the module comment).
    pub fn nothing_needed(as_of_index: u64) -> StartState {
        StartState { as_of_index, bytes: Bytes::new() }
    }

    /// Whether this is a record that nothing is needed ([`StartState::nothing_needed`]).
    pub fn is_nothing_needed(&self) -> bool {
        self.bytes.is_empty()
    }

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

    /// The record as of which the log may start (see [`StartStateFile::check_covers`]).
    ///
    /// A log that starts at `first_index` needs a record with `as_of_index + 1 >= first_index`
    /// when `first_index > 1`: no file means the save that recorded the trim was lost, an older
    /// record means a later one was; both are corruption (the replica's producer table cannot
    /// be rebuilt from its own files), never a silent empty state.
    pub fn check_covers(&self, first_index: u64) -> Result<()> {
        let corrupt = |lost_from: u64, detail: String| {
            Err(Error::Corruption { path: self.path.clone(), first_index: lost_from, last_index: first_index - 1, detail })
        };
        match &self.current {
            None if first_index > 1 => corrupt(
                1,
                format!("the log starts at index {first_index} but no start state is on disk: the save before its trim was lost"),
            ),
            Some(state) if state.as_of_index + 1 < first_index => corrupt(
                state.as_of_index + 1,
                format!("the start state is as of index {}, the log starts at {first_index}: a later save was lost", state.as_of_index),
            ),
            _ => Ok(()),
        }
    }

    /// Replaces the record durably: returns only once a crash would find the new one. The
    /// file is never removed (see the module comment).
    pub async fn save(&mut self, state: StartState) -> Result<()> {
        self.save_syncing(state, true).await
    }

    /// [`StartStateFile::save`], with its fdatasync and directory sync left out when `sync` is
    /// false: only the planted bug start-state-saved-without-sync (`crate::Planted`) asks for
    /// that (the trim then deletes segments before the state that outlives them is durable).
    pub async fn save_syncing(&mut self, state: StartState, sync: bool) -> Result<()> {
        if self.current.as_ref() == Some(&state) {
            return Ok(());
        }
        let dir = self.path.parent().expect("a start-state file lives in a directory").to_path_buf();
        let temporary = temporary_path(&self.path);
        let file = self.disk.open(&temporary, OpenMode::CreateOrOpen).await.map_err(io_error(&temporary))?;
        file.set_len(0).await.map_err(io_error(&temporary))?;
        file.write_at(0, Bytes::from(state.encode())).await.map_err(io_error(&temporary))?;
        if sync {
            file.sync_data().await.map_err(io_error(&temporary))?;
        }
        drop(file);
        self.disk.rename(&temporary, &self.path).await.map_err(io_error(&self.path))?;
        if sync {
            self.disk.sync_dir(&dir).await.map_err(io_error(&dir))?;
        }
        self.current = Some(state);
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
    async fn saves_survive_power_loss_and_a_nothing_needed_record_is_kept() {
        let disk = SimDisk::new(1);
        disk.create_dir_all(Path::new("/data/7")).await.unwrap();
        let (mut file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, None);
        file.save(state(10, b"ten")).await.unwrap();
        file.save(state(20, b"twenty")).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (mut file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, Some(state(20, b"twenty")));
        assert_eq!(file.current(), Some(&state(20, b"twenty")));
        file.save(StartState::nothing_needed(30)).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, Some(StartState::nothing_needed(30)));
        assert!(loaded.unwrap().is_nothing_needed());
        assert!(file.check_covers(31).is_ok());
        assert!(matches!(file.check_covers(32), Err(Error::Corruption { first_index: 31, last_index: 31, .. })));
    }

    #[tokio::test]
    async fn a_log_that_starts_past_index_1_without_a_record_is_corruption() {
        let disk = SimDisk::new(2);
        disk.create_dir_all(Path::new("/data/7")).await.unwrap();
        let (file, _) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert!(file.check_covers(1).is_ok(), "a log never trimmed needs no record");
        let missing = file.check_covers(2);
        assert!(
            matches!(&missing, Err(Error::Corruption { first_index: 1, last_index: 1, detail, .. }) if detail.contains("lost")),
            "{missing:?}"
        );
    }

    /// The power-loss case of a trim (the known gap of issue 20): the first save after a trim
    /// whose rename never became durable (here: a save that skipped its syncs, as the planted
    /// bug start-state-saved-without-sync does), then the trim deletes segments durably. The
    /// reopened log starts past index 1 with no record: corruption, not an empty state.
    #[tokio::test]
    async fn a_first_save_lost_at_power_loss_before_a_durable_trim_is_found_on_reopening() {
        use crate::entry::{Entry, EntryKind};
        use crate::{LogConfig, SegmentLog};
        let disk = SimDisk::new(4);
        let config = LogConfig { segment_bytes_max: 4096, retention_bytes: Some(1), retention_ms: None, ..LogConfig::default() };
        let (mut log, _) = SegmentLog::open(disk.clone(), "/data/7/log", config.clone(), 0).await.unwrap();
        let mut offset = 0;
        for index in 1..=40u64 {
            let payload = Bytes::from(vec![index as u8; 300]);
            let entry = Entry { index, term: 1, base_offset: offset, record_count: 1, kind: EntryKind::Data, timestamp_max: 0, payload };
            offset = entry.offset_next();
            log.append(&[entry], 0).await.unwrap();
        }
        log.sync().await.unwrap();
        let (mut file, _) = StartStateFile::open(&disk, PATH).await.unwrap();
        let bound = 30;
        assert!(log.retention_due(0, bound) > 0, "segments to delete");
        file.save_syncing(state(bound - 1, b"producers"), false).await.unwrap();
        let report = log.enforce_retention(0, bound).await.unwrap();
        assert!(report.segments_deleted > 0 && log.first_index() > 1, "the trim moved the log start: {report:?}");
        let first_index = log.first_index();
        drop(log);
        disk.crash(CrashMode::PowerLoss);
        let (log, _) = SegmentLog::open(disk.clone(), "/data/7/log", config, 0).await.unwrap();
        assert_eq!(log.first_index(), first_index, "the deletions were durable");
        let (file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, None, "the unsynced rename is gone");
        assert!(matches!(file.check_covers(log.first_index()), Err(Error::Corruption { .. })));

        // The same trim with the save durable first: the record survives and covers the start.
        let (mut file, _) = StartStateFile::open(&disk, PATH).await.unwrap();
        file.save(state(first_index + 5, b"producers")).await.unwrap();
        disk.crash(CrashMode::PowerLoss);
        let (file, loaded) = StartStateFile::open(&disk, PATH).await.unwrap();
        assert_eq!(loaded, Some(state(first_index + 5, b"producers")));
        assert!(file.check_covers(first_index).is_ok());
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
            file.save(state(5, b"old")).await.unwrap();
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
        file.save(state(42, b"producers")).await.unwrap();
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
