//! [`LogReaders`]: the read-only views of the hosted groups' logs ([`odradek_log::LogReader`]),
//! shared by the driver with its [`super::NodeHandle`]s, so fetches read committed entries
//! without a command through the driver's loop (issue 17: a consumer reading fast must not
//! delay commits on its node).
//!
//! The driver keeps the map in step with the groups it hosts (insert on create, remove on
//! remove/destroy) and publishes each log's readable index just before it applies committed
//! entries (module `apply`), so a reader is never behind the state machine's applied index and
//! never ahead of raft's commit. Each reader holds the segments it planned to read by their open
//! files, so retention or a snapshot install may delete them meanwhile (module
//! `odradek_log::reader`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use odradek_log::{DiskFile, Entry, LogReader};

use crate::transport::GroupId;

/// One group's log reader, with the file type erased (the server is not generic over disks).
pub trait ReadOffsets: Send + Sync {
    /// See [`LogReader::read_offsets`].
    fn read_offsets(&self, offset: u64, bytes_max: u64, index_max: u64) -> BoxFuture<'static, odradek_log::Result<Vec<Entry>>>;

    /// See `LogReader::read_offsets_past_commit` (planted bugs only).
    #[cfg(any(madsim, feature = "planted-bugs"))]
    fn read_offsets_past_commit(&self, offset: u64, bytes_max: u64) -> BoxFuture<'static, odradek_log::Result<Vec<Entry>>>;
}

impl<F: DiskFile> ReadOffsets for LogReader<F> {
    fn read_offsets(&self, offset: u64, bytes_max: u64, index_max: u64) -> BoxFuture<'static, odradek_log::Result<Vec<Entry>>> {
        Box::pin(LogReader::read_offsets(self, offset, bytes_max, index_max))
    }

    #[cfg(any(madsim, feature = "planted-bugs"))]
    fn read_offsets_past_commit(&self, offset: u64, bytes_max: u64) -> BoxFuture<'static, odradek_log::Result<Vec<Entry>>> {
        Box::pin(LogReader::read_offsets_past_commit(self, offset, bytes_max))
    }
}

/// The readers of every group the driver hosts (a clone shares the map).
#[derive(Clone, Default)]
pub struct LogReaders {
    readers: Arc<Mutex<BTreeMap<GroupId, Arc<dyn ReadOffsets>>>>,
}

impl std::fmt::Debug for LogReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReaders").field("groups", &self.lock().keys().collect::<Vec<_>>()).finish()
    }
}

impl LogReaders {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<GroupId, Arc<dyn ReadOffsets>>> {
        self.readers.lock().expect("the readers' map is never poisoned: no code panics holding it")
    }

    /// `group`'s reader, while the driver hosts it.
    pub fn get(&self, group: GroupId) -> Option<Arc<dyn ReadOffsets>> {
        self.lock().get(&group).cloned()
    }

    pub(super) fn insert(&self, group: GroupId, reader: Arc<dyn ReadOffsets>) {
        self.lock().insert(group, reader);
    }

    pub(super) fn remove(&self, group: GroupId) {
        self.lock().remove(&group);
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}
