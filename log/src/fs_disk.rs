//! [`FsDisk`]: the [`Disk`] seam over real files, for production nodes and the Jepsen harness.
//!
//! What it owns: turning each trait call into the matching positional system call (`pread`,
//! `pwrite`, `fdatasync`, `ftruncate`, directory `fsync`) and running it off the async threads.
//!
//! Why the blocking pool: an `fdatasync` can take milliseconds (seconds on a sick disk, F-S9);
//! run inline it would stall every network task sharing that runtime thread. Under
//! `--cfg madsim` the same call runs inline, because madsim has no blocking pool and simulated
//! nodes use [`crate::SimDisk`] anyway.
//!
//! Invariants kept:
//! - No file cursor: every read and write names its offset, so one [`FsFile`] can be shared by
//!   concurrent readers and the single writer without a lock.
//! - Errors keep their [`io::ErrorKind`] (so [`crate::is_disk_full`] still recognises `ENOSPC`)
//!   and gain the operation and path in their message, for operators reading the log.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::disk::{Disk, DiskFile, OpenMode};

/// The largest single read, so a corrupt length field can never make us allocate without
/// bound: the log reads at most a segment at a time, far below this.
const READ_BYTES_MAX: usize = 1 << 30;

/// The real file system.
#[derive(Clone, Debug, Default)]
pub struct FsDisk {}

impl FsDisk {
    /// A handle on the real file system (stateless: paths are used as given).
    pub fn new() -> Self {
        Self {}
    }
}

/// An open real file: shared positional I/O on one file descriptor.
#[derive(Clone, Debug)]
pub struct FsFile {
    file: Arc<fs::File>,
    path: Arc<PathBuf>,
}

/// Runs a blocking file system call on tokio's blocking pool, so it never stalls the async
/// worker threads. A panic inside `f` is resumed here, as if the call had been inline.
#[cfg(not(madsim))]
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(io::Error::other(format!("blocking disk task cancelled: {error}"))),
    }
}

/// Under madsim there is no blocking pool: run the call inline (simulated nodes use `SimDisk`;
/// this path only serves tools that touch real files from inside a simulation).
#[cfg(madsim)]
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    f()
}

/// Adds the operation and path to an error, keeping its kind for callers that classify it.
fn context(error: io::Error, operation: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{operation} {}: {error}", path.display()))
}

/// The names of the files (or, with `dirs`, the directories) directly in `path`, sorted.
async fn list_entries(path: &Path, dirs: bool) -> io::Result<Vec<String>> {
    let path = path.to_path_buf();
    blocking(move || {
        let mut names = Vec::new();
        let entries = fs::read_dir(&path).map_err(|error| context(error, "list_dir", &path))?;
        for entry in entries {
            let entry = entry.map_err(|error| context(error, "list_dir", &path))?;
            let file_type = entry.file_type().map_err(|error| context(error, "list_dir", &path))?;
            if if dirs { !file_type.is_dir() } else { !file_type.is_file() } {
                continue;
            }
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => {
                    tracing::warn!(dir = %path.display(), ?name, "skipping non-UTF-8 file name");
                }
            }
        }
        names.sort();
        Ok(names)
    })
    .await
}

impl Disk for FsDisk {
    type File = FsFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FsFile> {
        let path = path.to_path_buf();
        blocking(move || {
            let mut options = fs::OpenOptions::new();
            options.read(true).write(true);
            match mode {
                OpenMode::Existing => {}
                OpenMode::CreateOrOpen => {
                    options.create(true);
                }
                OpenMode::CreateNew => {
                    options.create_new(true);
                }
            }
            let file = options.open(&path).map_err(|error| context(error, "open", &path))?;
            Ok(FsFile { file: Arc::new(file), path: Arc::new(path) })
        })
        .await
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || fs::create_dir_all(&path).map_err(|error| context(error, "create_dir_all", &path))).await
    }

    /// Regular files only (subdirectories are skipped), by name, sorted. Names that are not
    /// UTF-8 cannot be ours, so they are skipped with a warning rather than failing startup.
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        list_entries(path, false).await
    }

    /// Directories only, as `list_dir` lists files.
    async fn list_subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        list_entries(path, true).await
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || fs::remove_file(&path).map_err(|error| context(error, "remove", &path))).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let from = from.to_path_buf();
        let to = to.to_path_buf();
        blocking(move || {
            fs::rename(&from, &to).map_err(|error| {
                let operation = format!("rename to {}", to.display());
                context(error, &operation, &from)
            })
        })
        .await
    }

    /// `fsync` on the directory itself: the only way to make a create, rename or remove in it
    /// survive power loss on Linux file systems.
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || {
            let dir = fs::File::open(&path).map_err(|error| context(error, "open dir", &path))?;
            dir.sync_all().map_err(|error| context(error, "sync_dir", &path))
        })
        .await
    }

    async fn available_bytes(&self, path: &Path) -> io::Result<u64> {
        let path = path.to_path_buf();
        blocking(move || fs4::available_space(&path).map_err(|error| context(error, "available_space", &path))).await
    }
}

impl DiskFile for FsFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        assert!(len <= READ_BYTES_MAX, "read of {len} bytes exceeds READ_BYTES_MAX");
        let file = Arc::clone(&self.file);
        let path = Arc::clone(&self.path);
        blocking(move || {
            let mut buffer = vec![0u8; len];
            let mut filled = 0;
            // Each pass either makes progress, stops at the end of the file, or retries an
            // interrupted call; `pread` may return fewer bytes than asked before the end.
            while filled < len {
                let position = offset + filled as u64;
                match file.read_at(&mut buffer[filled..], position) {
                    Ok(0) => break,
                    Ok(count) => filled += count,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(context(error, "read", &path)),
                }
            }
            assert!(filled <= len);
            buffer.truncate(filled);
            Ok(buffer)
        })
        .await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        let path = Arc::clone(&self.path);
        blocking(move || file.write_all_at(&data, offset).map_err(|error| context(error, "write", &path))).await
    }

    /// `fdatasync`: data and the size, not the timestamps, which we never read.
    async fn sync_data(&self) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        let path = Arc::clone(&self.path);
        blocking(move || file.sync_data().map_err(|error| context(error, "sync", &path))).await
    }

    async fn len(&self) -> io::Result<u64> {
        let file = Arc::clone(&self.file);
        let path = Arc::clone(&self.path);
        blocking(move || {
            let metadata = file.metadata().map_err(|error| context(error, "metadata", &path))?;
            Ok(metadata.len())
        })
        .await
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        let path = Arc::clone(&self.path);
        blocking(move || file.set_len(len).map_err(|error| context(error, "set_len", &path))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn available_bytes_reports_the_file_system_and_names_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let free = disk.available_bytes(dir.path()).await.unwrap();
        assert!(free > 0, "a temp dir's file system has room");
        let error = disk.available_bytes(&dir.path().join("missing")).await.unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }

    #[tokio::test]
    async fn files_and_directories_are_listed_apart() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        disk.create_dir_all(&dir.path().join("7")).await.unwrap();
        disk.create_dir_all(&dir.path().join("3")).await.unwrap();
        disk.open(&dir.path().join("b"), OpenMode::CreateNew).await.unwrap();
        disk.open(&dir.path().join("a"), OpenMode::CreateNew).await.unwrap();
        assert_eq!(disk.list_dir(dir.path()).await.unwrap(), ["a", "b"]);
        assert_eq!(disk.list_subdirs(dir.path()).await.unwrap(), ["3", "7"]);
    }

    #[tokio::test]
    async fn write_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let path = dir.path().join("a.log");
        let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
        file.write_at(0, Bytes::from_static(b"hello ")).await.unwrap();
        file.write_at(6, Bytes::from_static(b"world")).await.unwrap();
        file.sync_data().await.unwrap();
        assert_eq!(file.len().await.unwrap(), 11);
        assert_eq!(file.read_at(0, 11).await.unwrap(), b"hello world");
        assert_eq!(file.read_at(6, 5).await.unwrap(), b"world");

        // A second handle sees the same bytes (no per-handle cursor or cache).
        let again = disk.open(&path, OpenMode::Existing).await.unwrap();
        assert_eq!(again.read_at(0, 5).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn write_past_end_fills_gap_with_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let file = disk.open(&dir.path().join("gap"), OpenMode::CreateNew).await.unwrap();
        file.write_at(4, Bytes::from_static(b"xy")).await.unwrap();
        assert_eq!(file.read_at(0, 6).await.unwrap(), b"\0\0\0\0xy");
    }

    #[tokio::test]
    async fn read_past_end_is_short() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let file = disk.open(&dir.path().join("short"), OpenMode::CreateNew).await.unwrap();
        file.write_at(0, Bytes::from_static(b"abcdef")).await.unwrap();
        assert_eq!(file.read_at(4, 100).await.unwrap(), b"ef");
        assert_eq!(file.read_at(6, 10).await.unwrap(), b"");
        assert_eq!(file.read_at(1000, 10).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn set_len_truncates_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let file = disk.open(&dir.path().join("t"), OpenMode::CreateNew).await.unwrap();
        file.write_at(0, Bytes::from_static(b"0123456789")).await.unwrap();
        file.set_len(4).await.unwrap();
        assert_eq!(file.len().await.unwrap(), 4);
        assert_eq!(file.read_at(0, 10).await.unwrap(), b"0123");
        file.set_len(6).await.unwrap();
        assert_eq!(file.read_at(0, 10).await.unwrap(), b"0123\0\0");
    }

    #[tokio::test]
    async fn rename_remove_and_list_dir() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let sub = dir.path().join("p0");
        disk.create_dir_all(&sub.join("nested")).await.unwrap();
        for name in ["b.log", "a.log", "c.tmp"] {
            let file = disk.open(&sub.join(name), OpenMode::CreateNew).await.unwrap();
            file.write_at(0, Bytes::from(name.as_bytes().to_vec())).await.unwrap();
        }
        disk.sync_dir(&sub).await.unwrap();
        // Sorted, files only: the `nested` directory is not listed.
        assert_eq!(disk.list_dir(&sub).await.unwrap(), ["a.log", "b.log", "c.tmp"]);

        // Rename replaces the target.
        disk.rename(&sub.join("c.tmp"), &sub.join("a.log")).await.unwrap();
        disk.remove_file(&sub.join("b.log")).await.unwrap();
        disk.sync_dir(&sub).await.unwrap();
        assert_eq!(disk.list_dir(&sub).await.unwrap(), ["a.log"]);
        let file = disk.open(&sub.join("a.log"), OpenMode::Existing).await.unwrap();
        assert_eq!(file.read_at(0, 100).await.unwrap(), b"c.tmp");

        let missing = disk.remove_file(&sub.join("b.log")).await.unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let missing = disk.list_dir(&dir.path().join("none")).await.unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new();
        let path = dir.path().join("m");

        let error = disk.open(&path, OpenMode::Existing).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("open"), "{error}");

        let file = disk.open(&path, OpenMode::CreateOrOpen).await.unwrap();
        file.write_at(0, Bytes::from_static(b"kept")).await.unwrap();
        drop(file);

        let error = disk.open(&path, OpenMode::CreateNew).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);

        // CreateOrOpen on an existing file opens it without truncating.
        let file = disk.open(&path, OpenMode::CreateOrOpen).await.unwrap();
        assert_eq!(file.read_at(0, 10).await.unwrap(), b"kept");
        let file = disk.open(&path, OpenMode::Existing).await.unwrap();
        assert_eq!(file.len().await.unwrap(), 4);
    }
}
