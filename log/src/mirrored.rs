//! [`MirroredFile`]: a small record kept as two identical copies, one per 512-byte sector, for
//! the state a replica must never silently roll back (Raft's hard state, the group's
//! configuration).
//!
//! Why copies and not two slots written alternately: with alternating slots, bit rot in the
//! newest slot (F-S3) makes the older slot win, and nothing tells that apart from a torn save —
//! a replica would come back with a vote it already gave away forgotten, and could vote twice
//! in one term (R8 c). With copies, every save writes the new record to copy 0, syncs, then
//! writes copy 1 and syncs, and `save` returns only after both are durable. So:
//! - a crash during the copy-0 write leaves copy 1 with the previous record, which is right,
//!   since the save never returned (nothing can depend on it);
//! - a crash during the copy-1 write leaves copy 0 with the new record, which is right too;
//! - bit rot in one copy at rest leaves the other holding the same, newest record.
//!
//! Opening picks the valid copy with the highest sequence and, when the two differ, rewrites the
//! other one; it syncs the file and its directory before returning, so the record in use is always on both copies and a
//! later single flip still finds it. Both copies bad is corruption: the caller refuses to open.
//!
//! Each record carries its own sequence number and checksum; this module only places, compares
//! and repairs copies through the caller's `decode`.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::disk::{Disk, DiskFile, OpenMode};

/// Distance between the two copies: one sector each, so a torn sector reaches at most one.
pub const COPY_STRIDE_BYTES: u64 = 512;

/// A file of two mirrored copies of one record (see the module documentation).
pub struct MirroredFile<D: Disk> {
    file: D::File,
    path: PathBuf,
}

/// What [`MirroredFile::open`] found.
pub enum Opened<D: Disk, T> {
    /// The file did not exist (or was empty): `initial` was written to both copies, durably.
    Created(MirroredFile<D>),
    /// The newest valid copy (its sequence and value); `repaired` when the other copy was bad or
    /// older and has been rewritten.
    Loaded { file: MirroredFile<D>, sequence: u64, value: T, repaired: bool },
    /// Both copies fail `decode`: corruption, the caller must not go on with a default.
    Corrupt,
}

/// An I/O error on one path of a mirrored file.
pub type PathError = (PathBuf, io::Error);

impl<D: Disk> MirroredFile<D> {
    /// Opens `path`, creating it durably (file and directory) with the encoded `initial` record
    /// when missing or empty. `decode` returns a copy's sequence and value, or `None` for a copy
    /// that fails its checksum.
    pub async fn open<T>(
        disk: &D,
        path: &Path,
        initial: &[u8],
        decode: impl Fn(&[u8]) -> Option<(u64, T)>,
    ) -> Result<Opened<D, T>, PathError> {
        assert!(initial.len() as u64 <= COPY_STRIDE_BYTES, "a record fits one copy");
        fn at(path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
            move |error| (path.to_path_buf(), error)
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        disk.create_dir_all(&dir).await.map_err(at(&dir))?;
        let file = disk.open(path, OpenMode::CreateOrOpen).await.map_err(at(path))?;
        let mirrored = Self { file, path: path.to_path_buf() };
        if mirrored.file.len().await.map_err(at(path))? == 0 {
            mirrored.save(initial).await?;
            disk.sync_dir(&dir).await.map_err(at(&dir))?;
            return Ok(Opened::Created(mirrored));
        }
        let bytes = mirrored.file.read_at(0, 2 * COPY_STRIDE_BYTES as usize).await.map_err(at(path))?;
        let (decoded, winner) = decode_copies(&bytes, decode);
        let sequences = [decoded[0].as_ref().map(|d| d.0), decoded[1].as_ref().map(|d| d.0)];
        let Some(winner) = winner else { return Ok(Opened::Corrupt) };
        let copy = |i: usize| copy_of(&bytes, i);
        let repaired = sequences[0] != sequences[1];
        if repaired {
            let good = copy(winner).expect("the winning copy was read").to_vec();
            let other = (1 - winner) as u64 * COPY_STRIDE_BYTES;
            mirrored.file.write_at(other, Bytes::from(good)).await.map_err(at(path))?;
        }
        // What was loaded becomes durable, bytes and name, before anything depends on it: the
        // file may be one whose creation failed before its fsyncs and was retried (the segment
        // log's swarm seed 5034), or hold a save a process crash left unsynced.
        mirrored.file.sync_data().await.map_err(at(path))?;
        disk.sync_dir(&dir).await.map_err(at(&dir))?;
        let [first, second] = decoded;
        let (sequence, value) = if winner == 0 { first } else { second }.expect("the winner decoded");
        let loser = sequences[1 - winner];
        assert!(loser.is_none_or(|other| other <= sequence), "copy of sequence {loser:?} lost to older {sequence}");
        Ok(Opened::Loaded { file: mirrored, sequence, value, repaired })
    }

    /// Durably saves `record` (already encoded, with a sequence above the current one): copy 0,
    /// sync, copy 1, sync. An error is fatal for the replica (fsyncgate): the caller stops and
    /// reopens, which repairs whichever copy the failure left behind.
    pub async fn save(&self, record: &[u8]) -> Result<(), PathError> {
        self.save_syncing(record, true).await
    }

    /// [`MirroredFile::save`], with the syncs left out when `sync` is false: only the planted bug
    /// hard-state-saved-without-sync (`crate::Planted`) asks for that.
    pub(crate) async fn save_syncing(&self, record: &[u8], sync: bool) -> Result<(), PathError> {
        assert!(record.len() as u64 <= COPY_STRIDE_BYTES, "a record fits one copy");
        assert!(!record.is_empty(), "an empty record reads back as a file being created");
        for position in [0, COPY_STRIDE_BYTES] {
            self.file.write_at(position, Bytes::copy_from_slice(record)).await.map_err(|error| (self.path.clone(), error))?;
            if sync {
                self.file.sync_data().await.map_err(|error| (self.path.clone(), error))?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copy `i` (0 or 1) of a mirrored file's `bytes`: one `COPY_STRIDE_BYTES` sector, the second
/// running to the end of the bytes; `None` past them.
fn copy_of(bytes: &[u8], i: usize) -> Option<&[u8]> {
    bytes.get(i * COPY_STRIDE_BYTES as usize..).and_then(|b| b.get(..b.len().min(COPY_STRIDE_BYTES as usize)))
}

/// Both copies of a mirrored file's `bytes` through `decode`, and the copy opening takes: the
/// valid one with the highest sequence (copy 0 on a tie), `None` when neither is valid.
fn decode_copies<T>(bytes: &[u8], decode: impl Fn(&[u8]) -> Option<(u64, T)>) -> ([Option<(u64, T)>; 2], Option<usize>) {
    let decoded = [copy_of(bytes, 0).and_then(&decode), copy_of(bytes, 1).and_then(&decode)];
    let winner = match [decoded[0].as_ref().map(|d| d.0), decoded[1].as_ref().map(|d| d.0)] {
        [None, None] => None,
        [Some(a), Some(b)] if b > a => Some(1),
        [None, Some(_)] => Some(1),
        _ => Some(0),
    };
    (decoded, winner)
}

/// The record a mirrored file's `bytes` hold, as [`MirroredFile::open`] would load it (the
/// newest valid copy, its sequence and value), without repairing anything: `None` when neither
/// copy is valid (or the bytes are empty, a creation cut short). The simulator reads the bytes
/// a disk holds durably with it (CHECKLISTS R6).
pub fn newest_copy<T>(bytes: &[u8], decode: impl Fn(&[u8]) -> Option<(u64, T)>) -> Option<(u64, T)> {
    let (decoded, winner) = decode_copies(bytes, decode);
    let [first, second] = decoded;
    if winner? == 0 {
        first
    } else {
        second
    }
}
