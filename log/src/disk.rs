//! The `Disk` seam: every byte the log (and later the hard state, snapshots and producer
//! state) reads or writes goes through these two traits.
//!
//! Two implementations: [`crate::FsDisk`] (real files, real fsync) and [`crate::SimDisk`] (in
//! memory, with a power-loss model and seeded fault injection, for tests and the simulator).
//!
//! The contract callers rely on, and that both implementations keep:
//! - `write_at` makes bytes visible to later reads at once, but not durable: only a successful
//!   `sync_data` on that file makes every earlier write to it durable.
//! - Creating, renaming or removing a file is durable only after `sync_dir` on its parent.
//! - An error from `sync_data` is final for the caller (fsyncgate): the written-but-unsynced
//!   bytes may or may not survive a crash, so the only safe reaction is to stop and recover
//!   from what is durable. The log poisons itself on it.
//!
//! Every method returns a `Send` future so the callers' futures can run on tokio's
//! multi-threaded runtime and under madsim alike.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// How [`Disk::open`] treats an existing or missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file; `NotFound` if it does not exist.
    Existing,
    /// Create the file if missing, open it if present.
    CreateOrOpen,
    /// Create a new file; `AlreadyExists` if it exists.
    CreateNew,
}

/// A file system: namespace operations plus opening files.
pub trait Disk: Clone + Send + Sync + 'static {
    /// An open file.
    type File: DiskFile;

    /// Opens (and maybe creates) the file at `path`. A created file is durable only after
    /// `sync_dir` of its parent directory.
    fn open(&self, path: &Path, mode: OpenMode) -> impl Future<Output = io::Result<Self::File>> + Send;

    /// Creates a directory and its missing parents (durable at once in both implementations).
    fn create_dir_all(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;

    /// The names of the files directly in `path`, sorted.
    fn list_dir(&self, path: &Path) -> impl Future<Output = io::Result<Vec<String>>> + Send;

    /// The names of the directories directly in `path`, sorted.
    fn list_subdirs(&self, path: &Path) -> impl Future<Output = io::Result<Vec<String>>> + Send;

    /// Removes a file. Durable after `sync_dir` of its parent.
    fn remove_file(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;

    /// Atomically renames `from` to `to`, replacing `to`. Durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + Send;

    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;

    /// Bytes still free for writes on the file system holding `path` (F-S9: a node refuses new
    /// data before the disk is full).
    fn available_bytes(&self, path: &Path) -> impl Future<Output = io::Result<u64>> + Send;
}

/// One open file, addressed by position (no cursor, so it can be shared).
#[allow(clippy::len_without_is_empty)] // a file of length 0 is not "empty" in any useful sense here
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `len` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Vec<u8>>> + Send;

    /// Writes all of `data` at `offset`, growing the file if needed. Visible at once, durable
    /// only after `sync_data`.
    fn write_at(&self, offset: u64, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Makes every earlier write and `set_len` of this file durable (fdatasync).
    fn sync_data(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// The current length of the file.
    fn len(&self) -> impl Future<Output = io::Result<u64>> + Send;

    /// Truncates or extends (with zeros) the file. Durable after `sync_data`.
    fn set_len(&self, len: u64) -> impl Future<Output = io::Result<()>> + Send;
}

/// A shared open file (a segment's, held by the log and its readers) is the same file.
impl<F: DiskFile> DiskFile for Arc<F> {
    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        (**self).read_at(offset, len)
    }

    fn write_at(&self, offset: u64, data: Bytes) -> impl Future<Output = io::Result<()>> + Send {
        (**self).write_at(offset, data)
    }

    fn sync_data(&self) -> impl Future<Output = io::Result<()>> + Send {
        (**self).sync_data()
    }

    fn len(&self) -> impl Future<Output = io::Result<u64>> + Send {
        (**self).len()
    }

    fn set_len(&self, len: u64) -> impl Future<Output = io::Result<()>> + Send {
        (**self).set_len(len)
    }
}

/// The `ENOSPC` error both implementations return when the disk is full.
pub fn disk_full_error() -> io::Error {
    io::Error::from_raw_os_error(28)
}

/// True for the error a full disk gives (`ENOSPC`).
pub fn is_disk_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(28) || error.kind() == io::ErrorKind::StorageFull
}
