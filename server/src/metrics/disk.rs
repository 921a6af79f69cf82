//! A [`Disk`] that times every fsync (file data and directories) into a histogram and otherwise
//! passes each call through unchanged: the same results, the same order, no extra await points
//! (so a simulation runs exactly as on the bare disk).

use std::future::Future;
use std::io;
use std::path::Path;

use bytes::Bytes;
use odradek_log::{Disk, DiskFile, OpenMode};
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;

/// `inner` with its fsyncs timed into `fsync_latency`.
#[derive(Clone, Debug)]
pub struct MeteredDisk<D> {
    inner: D,
    fsync_latency: Histogram,
}

impl<D> MeteredDisk<D> {
    pub fn new(inner: D, fsync_latency: Histogram) -> MeteredDisk<D> {
        MeteredDisk { inner, fsync_latency }
    }
}

/// An open file of a [`MeteredDisk`].
pub struct MeteredFile<F> {
    inner: F,
    fsync_latency: Histogram,
}

/// Runs `sync` and records how long it took (failed fsyncs too: a slow failure is news).
async fn timed<T>(histogram: &Histogram, sync: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let started = Instant::now();
    let result = sync.await;
    histogram.observe(started.elapsed().as_secs_f64());
    result
}

impl<D: Disk> Disk for MeteredDisk<D> {
    type File = MeteredFile<D::File>;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File> {
        Ok(MeteredFile { inner: self.inner.open(path, mode).await?, fsync_latency: self.fsync_latency.clone() })
    }

    fn create_dir_all(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> impl Future<Output = io::Result<Vec<String>>> + Send {
        self.inner.list_dir(path)
    }

    fn list_subdirs(&self, path: &Path) -> impl Future<Output = io::Result<Vec<String>>> + Send {
        self.inner.list_subdirs(path)
    }

    fn remove_file(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send {
        timed(&self.fsync_latency, self.inner.sync_dir(path))
    }

    fn available_bytes(&self, path: &Path) -> impl Future<Output = io::Result<u64>> + Send {
        self.inner.available_bytes(path)
    }
}

impl<F: DiskFile> DiskFile for MeteredFile<F> {
    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        self.inner.read_at(offset, len)
    }

    fn write_at(&self, offset: u64, data: Bytes) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.write_at(offset, data)
    }

    fn sync_data(&self) -> impl Future<Output = io::Result<()>> + Send {
        timed(&self.fsync_latency, self.inner.sync_data())
    }

    fn len(&self) -> impl Future<Output = io::Result<u64>> + Send {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> impl Future<Output = io::Result<()>> + Send {
        self.inner.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use odradek_log::SimDisk;

    /// The histogram's count of observations, as the text format shows it.
    fn count(histogram: &Histogram) -> u64 {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("fsync", "", histogram.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines().find_map(|line| line.strip_prefix("fsync_count ")).expect("a count line").parse().unwrap()
    }

    #[tokio::test]
    async fn every_fsync_is_timed_and_nothing_else() {
        let histogram = Histogram::new([0.001]);
        let disk = MeteredDisk::new(SimDisk::new(1), histogram.clone());
        let dir = Path::new("/data");
        disk.create_dir_all(dir).await.unwrap();
        let file = disk.open(&dir.join("a"), OpenMode::CreateNew).await.unwrap();
        file.write_at(0, Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(count(&histogram), 0, "writes are not fsyncs");
        file.sync_data().await.unwrap();
        disk.sync_dir(dir).await.unwrap();
        assert_eq!(count(&histogram), 2, "one file fsync and one directory fsync");
        assert_eq!(file.read_at(0, 3).await.unwrap(), b"abc", "reads pass through");
    }
}
