//! Who owns a data directory: an exclusive OS advisory lock on `<data_dir>/odradek.lock`, held
//! for the life of the process, and the identity of the node that uses the directory, recorded
//! in that file.
//!
//! Two processes on one directory would append to the same segment files and overwrite each
//! other's hard states (each believing its own writes durable: R6 and R3 gone), and a node
//! started on another node's directory would vote with that node's log under its own id. Both
//! are refused at start ([`DataDirError`]), before anything in the directory is opened.
//!
//! The file holds `node_id`, `incarnation` (a random id drawn when the directory is first
//! used: a wiped or replaced directory gets another one, so a later check can tell a
//! directory's history from a node id alone) and `pid` (who holds the lock now, for the
//! message). A directory used before this file existed is adopted by the node that opens it.
//!
//! # Identity and rejoining (CHECKLISTS R8 d, F-P7, F-M3)
//! A raft replica is (node id, incarnation): the raft id stays the node id, and a new
//! incarnation cannot tell a replica it lost (the directory was wiped or replaced) from one that
//! is new to its group. So a node whose directory is a new incarnation is *joining*: it writes
//! [`JOINING_FILE`] before its lock file records the new incarnation, and while that file exists
//! every group it creates with an empty log opens suspect of its whole log (consensus
//! `NodeConfig::empty_logs_suspect`): that replica grants no vote and never campaigns until every
//! other voter has told it its last index and its own log is durable up to the largest. Until
//! then it only takes appends (as a learner would) and its acknowledgements count for what it
//! really holds. [`finish_joining`] removes the file once the metadata replica has caught up and
//! every replica the metadata gives this node is hosted and settled, and then turns the suspicion
//! of empty logs off in the running node (`NodeHandle::end_joining`): a group created later (a
//! new topic) is new to the group, not lost. A crash before that finds the file again, so a
//! replica created after the crash is suspect too.
//!
//! The lock is `flock(2)` through `fs4` (released by the kernel when the process ends, however
//! it ends; a lock file left behind by a killed process is no obstacle). It only exists for
//! real files: the simulator's disks ([`odradek_log::SimDisk`]) live inside one process and take
//! no lock (the `odradek` command takes it before starting a node on [`odradek_log::FsDisk`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use odradek_consensus::NodeId;
use odradek_log::{Disk, OpenMode};

use crate::context::NodeContext;
use crate::meta::METADATA_GROUP;
use crate::shutdown::Shutdown;

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "odradek.lock";
/// Present while the node of a new incarnation has not yet hosted and settled every replica the
/// metadata gives it (see the module documentation).
pub const JOINING_FILE: &str = "odradek.joining";
/// The longest lock file read: a few short lines; anything longer is not one of ours.
pub const LOCK_FILE_BYTES_MAX: u64 = 4096;

/// The node a data directory belongs to, as its lock file records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub node_id: NodeId,
    /// Drawn at random when the directory was first used.
    pub incarnation: u64,
}

/// Why a node may not use a data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {dir} is in use by another odradek process ({holder}); two processes on one directory would corrupt it")]
    InUse { dir: PathBuf, holder: String },
    #[error("data directory {dir} belongs to node {owner}, not node {node} (check --id and --data-dir)")]
    OtherNode { dir: PathBuf, owner: NodeId, node: NodeId },
    #[error("data directory {dir}: {LOCK_FILE} is not an odradek lock file ({reason}); move it away if the directory is right")]
    Unreadable { dir: PathBuf, reason: String },
    #[error("data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A data directory locked by this process for node [`DataDirLock::identity`]; the lock goes
/// when this is dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    identity: Identity,
    /// [`JOINING_FILE`] exists: the directory is a new incarnation that has not finished joining.
    joining: bool,
    /// Holds the lock.
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (created if missing) for node `node_id`: refused when another process holds
    /// it or it belongs to another node; records the identity (keeping a recorded incarnation).
    pub fn acquire(dir: &Path, node_id: NodeId) -> Result<DataDirLock, DataDirError> {
        let io = |source| DataDirError::Io { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_FILE)).map_err(io)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let holder = match read_lock_file(&mut file) {
                    Ok(Some(recorded)) => format!("node {}, pid {}", recorded.identity.node_id, recorded.pid),
                    _ => "unknown".to_string(),
                };
                return Err(DataDirError::InUse { dir: dir.to_path_buf(), holder });
            }
            Err(fs4::TryLockError::Error(source)) => return Err(io(source)),
        }
        let recorded = read_lock_file(&mut file).map_err(|reason| DataDirError::Unreadable { dir: dir.to_path_buf(), reason })?;
        let identity = match recorded {
            Some(recorded) if recorded.identity.node_id != node_id => {
                return Err(DataDirError::OtherNode { dir: dir.to_path_buf(), owner: recorded.identity.node_id, node: node_id });
            }
            Some(recorded) => recorded.identity,
            None => {
                // Before the lock file records the new incarnation: a crash in between must
                // still find the directory joining.
                let marker = File::create(dir.join(JOINING_FILE)).map_err(io)?;
                marker.sync_all().map_err(io)?;
                File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
                Identity { node_id, incarnation: rand::RngCore::next_u64(&mut rand::rngs::OsRng) }
            }
        };
        let joining = dir.join(JOINING_FILE).exists();
        let text = lock_file_text(identity, std::process::id());
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        assert_eq!(read_lock_file(&mut file).ok().flatten().map(|r| r.identity), Some(identity), "the lock file reads back");
        Ok(DataDirLock { identity, joining, _file: file })
    }

    /// The node this directory belongs to.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The directory is a new incarnation that has not finished joining (module documentation):
    /// what `ServerConfig::data_dir_new` must say.
    pub fn is_new(&self) -> bool {
        self.joining
    }
}

/// For a node whose data directory is new (`ServerConfig::data_dir_new`): makes sure
/// [`JOINING_FILE`] exists on `disk` (the simulator's disks have no lock file to do it).
pub async fn mark_joining<D: Disk>(disk: &D, dir: &Path) -> std::io::Result<()> {
    disk.create_dir_all(dir).await?;
    disk.open(&dir.join(JOINING_FILE), OpenMode::CreateOrOpen).await?;
    disk.sync_dir(dir).await
}

/// Whether a joining node is done: its metadata replica settled and applied what it held when
/// it settled (`metadata_bound`, noted then), and every replica the metadata gives it is hosted
/// and settled.
async fn joined(context: &NodeContext, metadata_bound: &mut Option<u64>) -> bool {
    let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await else { return false };
    if status.suspect {
        return false;
    }
    let bound = *metadata_bound.get_or_insert(status.last_index);
    if status.applied < bound || !context.state.meta_ready.load(std::sync::atomic::Ordering::Acquire) {
        return false;
    }
    let groups = context.state.lock().meta.groups_of(context.state.node_id);
    for (group, _) in groups {
        match context.node.status(group).await {
            Ok(Some((status, _))) if !status.suspect => {}
            _ => return false,
        }
    }
    true
}

/// Runs on a joining node until it has joined (see [`joined`]), then removes [`JOINING_FILE`]:
/// from then on an empty log is a replica new to its group.
pub async fn finish_joining<D: Disk>(context: Arc<NodeContext>, disk: D, mut shutdown: Shutdown) {
    let dir = context.config.data_dir.clone();
    let interval = Duration::from_millis(context.config.tick_ms * JOIN_CHECK_INTERVAL_TICKS);
    let mut metadata_bound = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !joined(&context, &mut metadata_bound).await {
            continue;
        }
        let removed = match disk.remove_file(&dir.join(JOINING_FILE)).await {
            Ok(()) => disk.sync_dir(&dir).await,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        };
        match removed {
            Ok(()) => {
                // Groups created from now on (new topics) open as new replicas, not as ones this
                // node lost: without this, every group of a fresh cluster waited for all its
                // voters' answers before electing, until the nodes' first restart.
                if context.node.end_joining().await.is_err() {
                    return; // the node is stopping
                }
                tracing::info!(node = context.state.node_id, "joined: every replica of this new incarnation has caught up and votes");
                return;
            }
            Err(error) => tracing::warn!(%error, "removing the joining marker failed; will retry"),
        }
    }
}

/// Ticks between two checks of whether a joining node is done.
pub const JOIN_CHECK_INTERVAL_TICKS: u64 = 10;

/// What a lock file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recorded {
    identity: Identity,
    pid: u32,
}

fn lock_file_text(identity: Identity, pid: u32) -> String {
    format!(
        "# The odradek node that uses this data directory; locked while it runs.\nnode_id = {}\nincarnation = \"{:016x}\"\npid = {pid}\n",
        identity.node_id, identity.incarnation
    )
}

/// The lock file's record; `None` when it is empty (new, or its first write never finished).
fn read_lock_file(file: &mut File) -> Result<Option<Recorded>, String> {
    file.rewind().map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(LOCK_FILE_BYTES_MAX + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > LOCK_FILE_BYTES_MAX {
        return Err(format!("longer than {LOCK_FILE_BYTES_MAX} bytes"));
    }
    parse_lock_file(&text)
}

fn parse_lock_file(text: &str) -> Result<Option<Recorded>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let (mut node_id, mut incarnation, mut pid) = (None, None, None);
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let (key, value) = line.split_once('=').ok_or_else(|| format!("line {line:?} is not key = value"))?;
        let value = value.trim().trim_matches('"');
        match key.trim() {
            "node_id" => node_id = Some(value.parse::<NodeId>().map_err(|e| format!("node_id {value:?}: {e}"))?),
            "incarnation" => incarnation = Some(u64::from_str_radix(value, 16).map_err(|e| format!("incarnation {value:?}: {e}"))?),
            "pid" => pid = Some(value.parse::<u32>().map_err(|e| format!("pid {value:?}: {e}"))?),
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    match (node_id, incarnation, pid) {
        (Some(node_id), Some(incarnation), Some(pid)) if node_id != 0 => {
            Ok(Some(Recorded { identity: Identity { node_id, incarnation }, pid }))
        }
        _ => Err("node_id, incarnation or pid missing".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_at_a_time_and_only_the_recorded_node() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), 3).expect("a fresh directory");
        assert_eq!(first.identity().node_id, 3);
        assert!(first.is_new(), "a first use is a new incarnation");
        std::fs::remove_file(dir.path().join(JOINING_FILE)).unwrap();
        // flock locks belong to an open file: a second open conflicts even in this process.
        let error = DataDirLock::acquire(dir.path(), 3).expect_err("locked");
        assert!(matches!(error, DataDirError::InUse { .. }), "{error}");
        assert!(error.to_string().contains(&format!("node 3, pid {}", std::process::id())), "{error}");
        let incarnation = first.identity().incarnation;
        drop(first);
        let again = DataDirLock::acquire(dir.path(), 3).expect("released with its holder");
        assert_eq!(again.identity().incarnation, incarnation, "a directory keeps its incarnation");
        drop(again);
        let error = DataDirLock::acquire(dir.path(), 4).expect_err("node 3's directory");
        assert!(matches!(error, DataDirError::OtherNode { owner: 3, node: 4, .. }), "{error}");
        // A wiped directory is a new incarnation, joining until the server says it joined.
        assert!(!again_is_new(dir.path(), 3), "a known directory is not joining");
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let fresh = DataDirLock::acquire(dir.path(), 4).expect("a wiped directory");
        assert_ne!(fresh.identity().incarnation, incarnation);
        assert!(fresh.is_new() && dir.path().join(JOINING_FILE).exists());
        drop(fresh);
        assert!(DataDirLock::acquire(dir.path(), 4).unwrap().is_new(), "still joining after a restart");
        std::fs::remove_file(dir.path().join(JOINING_FILE)).unwrap();
        assert!(!DataDirLock::acquire(dir.path(), 4).unwrap().is_new(), "joined");
    }

    /// Whether `dir` opens as a new incarnation for `node_id` (released at once).
    fn again_is_new(dir: &Path, node_id: NodeId) -> bool {
        DataDirLock::acquire(dir, node_id).unwrap().is_new()
    }

    #[test]
    fn a_lock_file_round_trips_and_a_foreign_one_is_refused() {
        let identity = Identity { node_id: 7, incarnation: 0xfeed_beef_0000_0001 };
        assert_eq!(parse_lock_file(&lock_file_text(identity, 42)), Ok(Some(Recorded { identity, pid: 42 })));
        assert_eq!(parse_lock_file(" \n"), Ok(None));
        for foreign in ["hello", "node_id = x\n", "node_id = 1\n", "node_id = 0\nincarnation = \"1\"\npid = 1\n", "color = 1\n"] {
            assert!(parse_lock_file(foreign).is_err(), "{foreign:?}");
        }
    }
}
