//! One raft group hosted on this node: its state here ([`Group`]: raft's `RawNode`, the durable
//! store, the open proposals, the suspicion), its lifecycle (create or reopen, remove,
//! destroy), what can be read from it, and the state machine above it ([`Apply`]).
//!
//! Invariants kept here:
//! - A node hosts at most `GROUPS_MAX` groups, each at most once; a group's files live in
//!   `<data_dir>/<group id>/` and only [`Node::destroy_group`] deletes them.
//! - Reopening a group replays the committed entries above the state machine's applied index
//!   (given at `create_group`) into [`Apply::apply`], in index order, before raft runs: the
//!   state machine never misses a committed entry nor sees one twice in an incarnation.
//! - Retention ([`Node::enforce_retention`]) deletes only below the persisted commit, which it
//!   first raises to the applied commit, and below the state machine's own bound (if it gives
//!   one); a follower that needs deleted entries gets a metadata
//!   snapshot (log start index, term and next offset) and resets its log to it (module
//!   `apply`).

use std::collections::BTreeMap;

use bytes::Bytes;
use odradek_log::{Disk, EntryKind, LogConfig, StartState};
use odradek_seams::buggify;
use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState as RaftHardState};
use raft::{RawNode, StateRole};

use crate::observe;
use crate::storage::{EntryMeta, GroupStorage, GroupStore, StorageFault, LOG_READ_BYTES_MAX};
use crate::transport::{GroupId, NodeId, Transport};

use super::errors::{raft_error, storage_error, NodeError, Rejection};
use super::proposals::{Durability, Outcome, Proposal, ProposalBook, Waiter};
use super::suspect;
use super::Node;

/// Groups one node hosts.
pub const GROUPS_MAX: usize = 100_000;

/// Where [`Node::set_aside_group`] keeps the damaged files of replicas it rebuilt, inside the
/// data directory (never a group id, so never taken for a group's directory).
pub const QUARANTINE_DIR: &str = "quarantine";
/// The last file [`Node::set_aside_group`] writes into a quarantine directory: its files are
/// all there.
pub const SET_ASIDE_DONE: &str = "set-aside.done";

/// The files (`subdirs`: the subdirectories) of `dir`; none when it does not exist.
async fn list_or_empty<D: Disk>(disk: &D, dir: &std::path::Path, subdirs: bool) -> std::io::Result<Vec<String>> {
    let listed = if subdirs { disk.list_subdirs(dir).await } else { disk.list_dir(dir).await };
    match listed {
        Ok(names) => Ok(names),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// One committed entry, as handed to the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    /// First offset of the entry's records (the next offset for entries without records).
    pub base_offset: u64,
    pub record_count: u32,
    pub timestamp_max: i64,
    /// The proposer's data (a record batch for `Data`); for `Config` the raft entry type (one
    /// byte) followed by the encoded conf change.
    pub payload: Bytes,
}

impl Committed {
    /// The committed log entry as the state machine sees it.
    pub(super) fn from_log(entry: &odradek_log::Entry) -> Committed {
        Committed {
            index: entry.index,
            term: entry.term,
            kind: entry.kind,
            base_offset: entry.base_offset,
            record_count: entry.record_count,
            timestamp_max: entry.timestamp_max,
            payload: entry.payload.clone(),
        }
    }
}

/// The state machine above the groups: receives committed entries in index order.
pub trait Apply: Send {
    /// Entries of `group`, contiguous and in order, all committed.
    fn apply(&mut self, group: GroupId, entries: &[Committed]);
    /// The group's log starts after `index` (a snapshot replaced it, or retention deleted the
    /// entries up to it before a restart), next offset `offset_next`; `start_state` is what
    /// the state machine saved for that ([`Node::enforce_retention`]'s argument), exact at its
    /// `as_of_index` (at or above `index`): entries up to there are replayed next and their
    /// part in it is already there.
    fn restore(&mut self, group: GroupId, index: u64, term: u64, offset_next: u64, start_state: Option<&StartState>);
    /// Called on the leader for every data or command proposal right before raft gets it, in
    /// the order proposals reach raft (so a check here and the append are atomic): `Err`
    /// refuses it ([`ProposeError::Rejected`], definite). `term` is the leader's term.
    fn admit(&mut self, group: GroupId, term: u64, data: &Bytes, meta: EntryMeta) -> Result<(), Rejection> {
        let _ = (group, term, data, meta);
        Ok(())
    }
    /// Raft refused the proposal [`Apply::admit`] accepted last for `group`: it was not appended.
    fn admit_undone(&mut self, group: GroupId) {
        let _ = group;
    }
}

/// A snapshot of one group's raft state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub role: StateRole,
    pub leader: NodeId,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    /// Leader only: (matched, next) index per replica.
    pub progress: BTreeMap<NodeId, (u64, u64)>,
    /// The replica is suspect after a recovery cut: no votes, no campaign (module `suspect`).
    pub suspect: bool,
}

/// Where a group's log starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    pub offset_start: u64,
    pub offset_next: u64,
    pub first_index: u64,
}

pub(super) struct Group<D: Disk> {
    pub(super) raw: RawNode<GroupStorage>,
    pub(super) store: GroupStore<D>,
    /// Open proposals and indefinite outcomes still to learn (module `proposals`).
    pub(super) proposals: ProposalBook<Waiter>,
    /// The state machine has seen entries up to here (skip re-applying at or below it).
    pub(super) state_machine_applied: u64,
    /// Applied index at the end of the last round: every conf change up to it is in the
    /// conf-state file, so a commit up to it may be persisted.
    pub(super) applied_durable_conf: u64,
    /// Set while the replica may have lost entries it acknowledged (module `suspect`).
    pub(super) suspect: Option<suspect::Suspect>,
    /// Sleeping or awake (module `hibernate`).
    pub(super) hibernation: super::hibernate::Hibernation,
    /// Leader only: the followers whose latest acknowledgement at their match index said they
    /// lead not (module `hand_over`); no leadership goes to them.
    pub(super) peers_leading_not: std::collections::BTreeSet<NodeId>,
}

impl<D: Disk> Group<D> {
    /// Registers the proposal raft just appended to its unstable log.
    pub(super) fn track_proposal(&mut self, conf_change: bool, durability: Durability) -> Proposal {
        let index = self.raw.raft.raft_log.last_index();
        let term = self.raw.raft.term;
        let (waiter, proposal) = Proposal::waiting();
        send_outcomes(self.proposals.track(index, term, conf_change, durability, waiter));
        proposal
    }

    /// This node stopped leading the group: every open proposal fails indefinitely.
    pub(super) fn lose_leadership(&mut self) {
        send_outcomes(self.proposals.leadership_lost());
    }

    /// Resolves the [`Durability::LeaderLog`] proposals whose entries this leader has synced.
    pub(super) fn resolve_leader_durable(&mut self) {
        let synced = self.store.log().synced_index();
        let (raft_log, storage) = (&self.raw.raft.raft_log, self.store.storage());
        send_outcomes(self.proposals.leader_synced(synced, |index| Some((raft_log.term(index).ok()?, storage.base_offset(index)?))));
    }
}

/// Reports the entries replayed into the state machine on opening a group, as applied.
fn observe_replayed(node: NodeId, incarnation: u64, group: GroupId, entries: &[odradek_log::Entry]) {
    for entry in entries {
        let (index, term, base_offset, offset_next) = (entry.index, entry.term, entry.base_offset, entry.offset_next());
        observe::emit(|| {
            let checksum = observe::entry_checksum(&crate::storage::to_raft_entry(entry).expect("the log holds raft entries"));
            observe::Event::Applied { node, incarnation, group, index, term, checksum, base_offset, offset_next }
        });
    }
}

/// Sends outcomes to their proposers (one that stopped waiting is fine to miss).
pub(super) fn send_outcomes(outcomes: impl IntoIterator<Item = Outcome<Waiter>>) {
    for (waiter, outcome) in outcomes {
        let _ = waiter.send(outcome);
    }
}

impl<D: Disk, T: Transport, A: Apply> Node<D, T, A> {
    /// Starts hosting `group`. A new group starts with `voters` as its configuration (every
    /// replica must be created with the same list); an existing one reopens its saved state.
    /// `state_machine_applied` is the last index the state machine has (durably) applied: the
    /// committed entries above it are replayed from the log into [`Apply::apply`].
    pub async fn create_group(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        state_machine_applied: u64,
        now_ms: i64,
    ) -> Result<(), NodeError> {
        let log_config = self.config.log_config.clone();
        self.create_group_with(group, voters, state_machine_applied, now_ms, log_config).await
    }

    /// [`Node::create_group`] with this group's own log settings (segment size, retention).
    pub async fn create_group_with(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        state_machine_applied: u64,
        now_ms: i64,
        log_config: LogConfig,
    ) -> Result<(), NodeError> {
        self.create_group_inner(group, voters, state_machine_applied, now_ms, log_config, false).await
    }

    /// [`Node::create_group_with`] for a replica that joins a running group through a conf
    /// change (a partition moving to this node). With an empty log it opens suspect of its whole
    /// log, as a new incarnation's replica does (`NodeConfig::empty_logs_suspect`): this node
    /// may have been a voter of the group before and deleted its replica when it was removed,
    /// and `voters` (the group's bootstrap configuration, which its log's conf changes apply
    /// to) may name it. Until the other voters' answers show it holds everything, it grants no
    /// vote and never campaigns, so its old self's acknowledgements cannot be outvoted by its
    /// empty log (R8 d).
    pub async fn create_group_joining(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        now_ms: i64,
        log_config: LogConfig,
    ) -> Result<(), NodeError> {
        self.create_group_inner(group, voters, 0, now_ms, log_config, true).await
    }

    async fn create_group_inner(
        &mut self,
        group: GroupId,
        voters: &[NodeId],
        state_machine_applied: u64,
        now_ms: i64,
        log_config: LogConfig,
        joining: bool,
    ) -> Result<(), NodeError> {
        if self.groups.contains_key(&group) {
            return Err(NodeError::GroupExists(group));
        }
        if self.groups.len() >= GROUPS_MAX {
            return Err(NodeError::TooManyGroups);
        }
        let mut initial = ConfState::default();
        initial.set_voters(voters.to_vec());
        let dir = self.config.data_dir.join(group.to_string());
        let mut log_config = log_config;
        if buggify::fires(0.3) {
            // F-B1: tiny segments (a roll every few entries), a sparse index and almost no cache,
            // so rolls, index lookups and reads from disk happen all the time.
            log_config.segment_bytes_max = buggify::pick(1024..64 * 1024);
            log_config.index_interval_bytes = buggify::pick(64..4096);
            log_config.cache_bytes_max = buggify::pick(0..64 * 1024) as usize;
        }
        let node = self.config.node_id;
        let store = match GroupStore::open(self.disk.clone(), &dir, log_config, &initial, now_ms).await {
            Ok(store) => store,
            Err(error) => {
                if let StorageFault::CommittedEntriesLost { cut: index, .. } = error {
                    observe::emit(|| observe::Event::RecoveryCut { node, group, index, suspect: false });
                }
                if error.is_corruption() {
                    // It still answers suspect queries for the group (module `suspect`).
                    self.quarantine(group).await;
                }
                return Err(storage_error(group)(error));
            }
        };
        self.quarantined.remove(&group);
        #[cfg(any(madsim, feature = "planted-bugs"))]
        let store = {
            let mut store = store;
            if (self.config.planted.trust_recovery_cut || self.config.planted.silent_recovery_cut) && store.suspicion().is_some() {
                store.clear_suspicion().await.map_err(storage_error(group))?;
            }
            store
        };
        let mut store = store;
        let whole_log_lost = (self.config.empty_logs_suspect || joining) && is_pristine(&store);
        if whole_log_lost {
            // R8 d: this replica may be one the node held before its directory was wiped; its
            // old self may have voted and acknowledged entries (module `suspect`).
            store.open_suspicion(suspect::WHOLE_LOG_LOST, suspect::WHOLE_LOG_LOST.term + 1).await.map_err(storage_error(group))?;
            // raft starts at the saved term, which is the suspect's query term.
            store.set_hard_state(&crate::storage::raft_hard_state(store.hard_state_saved()));
            tracing::warn!(
                group,
                "a new incarnation of this node's data directory created the group with an empty log: out of its votes \
                 until the other voters' answers show how far it must catch up"
            );
        }
        let suspicion = store.suspicion();
        #[allow(unused_mut)] // changed only by a planted bug
        let mut recovery_cut = store.recovery_cut();
        #[cfg(any(madsim, feature = "planted-bugs"))]
        if self.config.planted.silent_recovery_cut {
            recovery_cut = None;
        }
        if let Some(index) = recovery_cut {
            let suspect = suspicion.is_some();
            observe::emit(|| observe::Event::RecoveryCut { node, group, index, suspect });
        }
        if let Some(suspicion) = suspicion {
            let (cut, bound, term) = (suspicion.cut, suspicion.bound, suspicion.term);
            if !whole_log_lost {
                tracing::warn!(group, cut, bound, term, "recovery cut entries this replica may have acknowledged: suspect until settled");
            }
            observe::emit(|| observe::Event::Suspect { node, group, cut, bound, term });
        }
        let index = store.log().durable_index();
        let saved = store.hard_state_saved();
        observe::emit(|| observe::Event::Opened { node, group, index, term: saved.term, vote: saved.vote });
        observe::emit(|| observe::Event::Durable { node, group, index });
        let storage = store.storage();
        let hard_state = storage.hard_state();
        let applied = hard_state.commit.max(store.log().first_index() - 1);
        // A state machine behind the log start restarts from the log start and the group's
        // start state, then replays up to raft's starting applied index.
        let log_start = store.log().first_index() - 1;
        if state_machine_applied < log_start {
            self.apply.restore(group, log_start, store.log().prev_term(), store.log().offset_start(), store.start_state());
        }
        let mut low = (state_machine_applied + 1).max(store.log().first_index());
        while low <= applied {
            let entries = store.log().read(low, applied + 1, LOG_READ_BYTES_MAX).await.map_err(|e| storage_error(group)(e.into()))?;
            let committed: Vec<Committed> = entries.iter().map(Committed::from_log).collect();
            assert!(committed.iter().zip(low..).all(|(entry, index)| entry.index == index), "group {group}: replay from {low} has a gap");
            low = committed.last().expect("read returns at least one entry").index + 1;
            self.apply.apply(group, &committed);
            observe_replayed(node, self.incarnation, group, &entries);
        }
        let (conf, conf_index) = (observe::Conf::of(&storage.conf_state()), store.conf_state_index());
        let incarnation = self.incarnation;
        observe::emit(|| observe::Event::ConfApplied {
            node,
            incarnation,
            group,
            index: conf_index,
            conf,
            source: observe::ConfSource::Opened,
        });
        let raft_config = self.raft_config(applied);
        let raw = RawNode::new(&raft_config, storage, &self.logger).map_err(raft_error(group))?;
        let group_state = Group {
            raw,
            store,
            proposals: ProposalBook::new(group),
            state_machine_applied: state_machine_applied.max(applied),
            applied_durable_conf: applied,
            // The query term is the new term the store saved with the suspicion.
            suspect: suspicion.map(|suspicion| suspect::Suspect::new(suspicion, hard_state.term)),
            hibernation: Default::default(),
            peers_leading_not: Default::default(),
        };
        self.readers.insert(group, std::sync::Arc::new(group_state.store.reader()));
        self.groups.insert(group, group_state);
        self.note_hosted(group);
        assert!(self.groups.len() <= GROUPS_MAX);
        self.redraw_election_timeouts();
        Ok(())
    }

    /// For a node that cannot run its metadata group (its files are damaged): hosts every other
    /// group it has files for, from the configuration saved with it, so its intact copies still
    /// vote and reach a leader; answers the suspect queries of those that cannot open (module
    /// `suspect`). The node turns passive: it serves no client, so it hands the leadership of
    /// any group it wins to a caught-up follower at once. Returns (groups hosted, groups that
    /// only answer).
    pub async fn host_groups_on_disk(&mut self, now_ms: i64) -> Result<(usize, usize), NodeError> {
        self.passive = Some(0);
        let node = self.config.node_id;
        observe::emit(|| observe::Event::Passive { node, passive: true });
        let data_dir = self.config.data_dir.clone();
        let names = match self.disk.list_subdirs(&data_dir).await {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(storage_error(0)(StorageFault::Log(odradek_log::Error::Io { path: data_dir, source }))),
        };
        let groups: Vec<GroupId> = names
            .iter()
            .filter_map(|name| name.parse().ok())
            .filter(|g| !self.groups.contains_key(g) && !self.quarantined.contains_key(g))
            .collect();
        let mut hosted = 0;
        for group in groups {
            // Only a group whose configuration was saved: a new one would start without voters.
            let conf_path = data_dir.join(group.to_string()).join(crate::storage::CONF_STATE_FILE);
            let opened = match self.disk.open(&conf_path, odradek_log::OpenMode::Existing).await {
                Ok(_) => self.create_group(group, &[], 0, now_ms).await,
                Err(_) => Err(NodeError::GroupUnknown(group)),
            };
            match opened {
                Ok(()) => hosted += 1,
                Err(error) => {
                    tracing::warn!(group, %error, "cannot host a group from its files: answering its suspect queries only");
                    self.quarantine(group).await;
                }
            }
        }
        Ok((hosted, self.quarantined.len()))
    }

    /// Ends what [`Node::host_groups_on_disk`] began: the node runs its metadata group again (its
    /// damaged replica was set aside and rebuilt: the server's `meta_repair`), serves clients,
    /// and may lead groups; nothing else changes (groups hosted stay hosted).
    pub fn end_passive(&mut self) {
        if self.passive.take().is_some() {
            tracing::warn!("the node is passive no more: it may lead groups again");
            let node = self.config.node_id;
            observe::emit(|| observe::Event::Passive { node, passive: false });
        }
    }

    /// Stops hosting `group` (its files stay). Pending proposals fail: definitely if no ready
    /// carried them yet, indefinitely otherwise.
    pub fn remove_group(&mut self, group: GroupId) -> bool {
        let Some(state) = self.groups.remove(&group) else { return false };
        self.note_unhosted(group, &state.hibernation.peers);
        self.readers.remove(group);
        send_outcomes(state.proposals.removed());
        true
    }

    /// Stops hosting `group` (as [`Node::remove_group`]) and deletes its files: for a group
    /// whose topic was deleted. Whatever is in the group's directory goes.
    pub async fn destroy_group(&mut self, group: GroupId) -> Result<bool, NodeError> {
        // Told first: a crash part-way leaves some of the files, which the next opening takes
        // for what they are.
        let node = self.config.node_id;
        observe::emit(|| observe::Event::Destroyed { node, group });
        let hosted = self.remove_group(group);
        self.quarantined.remove(&group);
        let group_dir = self.config.data_dir.join(group.to_string());
        // The segment log's directory first, then the group's own files (hard state, conf state).
        for dir in [group_dir.join(crate::storage::LOG_DIR), group_dir] {
            let io_error =
                |source: std::io::Error| storage_error(group)(StorageFault::Log(odradek_log::Error::Io { path: dir.clone(), source }));
            let names = match self.disk.list_dir(&dir).await {
                Ok(names) => names,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(error)),
            };
            for name in names {
                self.disk.remove_file(&dir.join(name)).await.map_err(io_error)?;
            }
            self.disk.sync_dir(&dir).await.map_err(io_error)?;
        }
        Ok(hosted)
    }

    /// Moves the files of `group`, which is not hosted here (they do not open: damaged), out of
    /// the way into `<data_dir>/quarantine/<group>.<n>/` (the first `n` not taken), keeping them
    /// for forensics, so that the group can be created again empty (issue 15, the repair of a
    /// damaged replica), and stops answering the group's suspect queries from them. The log's
    /// files go first, then the group's own (hard state, conf state), and a marker file
    /// ([`SET_ASIDE_DONE`]) last: a crash part-way leaves a directory without the marker, which
    /// the next call fills instead of a new one (`only_unfinished`: move only then, for a
    /// caller that does not know whether a crash interrupted one). The directory the files went
    /// to, or `None` when nothing was moved. Refused for a hosted group.
    pub async fn set_aside_group(&mut self, group: GroupId, only_unfinished: bool) -> Result<Option<std::path::PathBuf>, NodeError> {
        if self.groups.contains_key(&group) {
            return Err(NodeError::GroupExists(group));
        }
        let io_error = |path: &std::path::Path, source: std::io::Error| {
            storage_error(group)(StorageFault::Log(odradek_log::Error::Io { path: path.to_path_buf(), source }))
        };
        let quarantine = self.config.data_dir.join(QUARANTINE_DIR);
        let taken = list_or_empty(&self.disk, &quarantine, true).await.map_err(|error| io_error(&quarantine, error))?;
        let mut unfinished = None;
        let mut n_free = 0;
        for n in 0.. {
            let name = format!("{group}.{n}");
            if !taken.contains(&name) {
                n_free = n;
                break;
            }
            let dir = quarantine.join(&name);
            let files = list_or_empty(&self.disk, &dir, false).await.map_err(|error| io_error(&dir, error))?;
            if !files.iter().any(|file| file == SET_ASIDE_DONE) {
                unfinished = Some(dir);
                break;
            }
        }
        if only_unfinished && unfinished.is_none() {
            return Ok(None);
        }
        let group_dir = self.config.data_dir.join(group.to_string());
        let log_dir = group_dir.join(crate::storage::LOG_DIR);
        let log_files = list_or_empty(&self.disk, &log_dir, false).await.map_err(|error| io_error(&log_dir, error))?;
        let group_files = list_or_empty(&self.disk, &group_dir, false).await.map_err(|error| io_error(&group_dir, error))?;
        if unfinished.is_none() && log_files.is_empty() && group_files.is_empty() {
            self.quarantined.remove(&group);
            return Ok(None);
        }
        let target = unfinished.unwrap_or_else(|| quarantine.join(format!("{group}.{n_free}")));
        let target_log = target.join(crate::storage::LOG_DIR);
        // Told first: from the first file moved, the group's copy here is no longer whole.
        let node = self.config.node_id;
        observe::emit(|| observe::Event::SetAside { node, group });
        self.disk.create_dir_all(&target_log).await.map_err(|error| io_error(&target_log, error))?;
        self.disk.sync_dir(&quarantine).await.map_err(|error| io_error(&quarantine, error))?;
        for (from_dir, to_dir, names) in [(&log_dir, &target_log, &log_files), (&group_dir, &target, &group_files)] {
            for name in names {
                self.disk.rename(&from_dir.join(name), &to_dir.join(name)).await.map_err(|error| io_error(from_dir, error))?;
            }
            if !names.is_empty() {
                self.disk.sync_dir(to_dir).await.map_err(|error| io_error(to_dir, error))?;
                self.disk.sync_dir(from_dir).await.map_err(|error| io_error(from_dir, error))?;
            }
        }
        let marker = target.join(SET_ASIDE_DONE);
        self.disk.open(&marker, odradek_log::OpenMode::CreateOrOpen).await.map_err(|error| io_error(&marker, error))?;
        self.disk.sync_dir(&target).await.map_err(|error| io_error(&target, error))?;
        self.quarantined.remove(&group);
        tracing::warn!(group, to = %target.display(), "set the damaged files of a replica aside (kept for forensics)");
        Ok(Some(target))
    }

    /// Deletes the files of every group stored in the data directory that is neither hosted
    /// nor in `keep` (a stray replica: its topic was deleted, or it moved away, while this node
    /// was down or before it got to delete it), as [`Node::destroy_group`] does; the groups
    /// deleted. A directory left empty by an earlier deletion is no stray.
    pub async fn destroy_stray_groups(&mut self, keep: &std::collections::BTreeSet<GroupId>) -> Result<Vec<GroupId>, NodeError> {
        let data_dir = self.config.data_dir.clone();
        let names = match self.disk.list_subdirs(&data_dir).await {
            Ok(names) => names,
            Err(error) => {
                // Nothing is lost by keeping strays until the next start: only disk space.
                tracing::warn!(%error, dir = %data_dir.display(), "cannot list the data directory for stray replicas");
                return Ok(Vec::new());
            }
        };
        let mut destroyed = Vec::new();
        for (name, group) in names.iter().filter_map(|name| Some((name, name.parse::<GroupId>().ok()?))) {
            if *name != group.to_string() || keep.contains(&group) || self.groups.contains_key(&group) {
                continue;
            }
            let dir = data_dir.join(name);
            let mut holds_files = false;
            for dir in [dir.join(crate::storage::LOG_DIR), dir] {
                match self.disk.list_dir(&dir).await {
                    Ok(files) => holds_files |= !files.is_empty(),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(storage_error(group)(StorageFault::Log(odradek_log::Error::Io { path: dir, source }))),
                }
            }
            if holds_files {
                self.destroy_group(group).await?;
                destroyed.push(group);
            }
        }
        Ok(destroyed)
    }

    /// The configuration `group` has applied.
    pub fn conf_state(&self, group: GroupId) -> Option<ConfState> {
        Some(self.groups.get(&group)?.store.storage().conf_state())
    }

    /// A snapshot of `group`'s raft state.
    pub fn status(&self, group: GroupId) -> Option<GroupStatus> {
        let state = self.groups.get(&group)?;
        let raft = &state.raw.raft;
        let mut progress = BTreeMap::new();
        if raft.state == StateRole::Leader {
            for (&id, pr) in raft.prs().iter() {
                progress.insert(id, (pr.matched, pr.next_idx));
            }
        }
        Some(GroupStatus {
            role: raft.state,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            progress,
            suspect: state.suspect.is_some(),
        })
    }

    /// Deletes `group`'s log segments that fall out of retention (`LogConfig`), never above
    /// the applied commit, and only segments wholly below `index_bound_max`: a state machine
    /// that cannot rebuild itself from any log start gives the index its state needs kept from
    /// (the group coordinator: its last snapshot record); `u64::MAX` for none. The commit is
    /// persisted first (one hard-state fsync), since after the log start moves a restart must
    /// not find its commit below it. A follower that later needs deleted entries receives a
    /// metadata snapshot of the new log start.
    ///
    /// `start_state` is what the state machine needs to rebuild itself from a later log start
    /// (the idempotent-producer table of a data partition; `None`: nothing): exact as of its
    /// `as_of_index`, which bounds retention too (the log start stays at or below
    /// `as_of_index + 1`). It is saved durably before any segment goes and travels in the
    /// snapshots a follower behind the log start gets; a restart hands it to
    /// [`Apply::restore`].
    pub async fn enforce_retention(
        &mut self,
        group: GroupId,
        now_ms: i64,
        index_bound_max: u64,
        start_state: Option<StartState>,
    ) -> Result<odradek_log::RetentionReport, NodeError> {
        let state = self.groups.get_mut(&group).ok_or(NodeError::GroupUnknown(group))?;
        let index_bound_max = match &start_state {
            Some(start) => index_bound_max.min(start.as_of_index + 1),
            None => index_bound_max,
        };
        if index_bound_max <= state.store.log().first_index() {
            // Nothing may go: every segment holds an index at or above the bound.
            return Ok(odradek_log::RetentionReport::default());
        }
        let raft_log = &state.raw.raft.raft_log;
        // Every conf change at or below `applied` is in the conf-state file already.
        let commit_bound = raft_log.committed.min(raft_log.applied);
        let saved = state.store.hard_state_saved();
        if commit_bound > saved.commit {
            // Term and vote as saved: a newer term or vote is saved by the next round first.
            let hard = odradek_log::HardState { commit: commit_bound, ..saved };
            state.store.save_hard_state(&crate::storage::raft_hard_state(hard)).await.map_err(storage_error(group))?;
            self.stats.hard_state_saves += 1;
        }
        #[cfg(any(madsim, feature = "planted-bugs"))]
        let past_commit = self.config.planted.retention_past_commit;
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        let past_commit = false;
        let index_bound = match past_commit {
            // Planted retention-past-commit: bounded by the log's end.
            true => state.store.log().last_index() + 1,
            false => state.store.hard_state_saved().commit + 1,
        }
        .min(index_bound_max);
        let applied = state.raw.raft.raft_log.applied;
        assert!(
            past_commit || index_bound <= applied + 1,
            "group {group}: retention bound {index_bound} above the applied index {applied}"
        );
        if state.store.log().retention_due(now_ms, index_bound) > 0 {
            // Durable before the entries that built it go (a crash in between finds the new
            // state with the old log start: its entries up to `as_of_index` are skipped). An
            // unchanged state is not written again; with no state, the record that nothing is
            // needed up to the bound is (every trim leaves a record: `save_start_state`).
            // Order on disk: the state written and fdatasynced, renamed, the group directory
            // synced; only then are segments deleted (and the log directory synced).
            state.store.save_start_state(start_state, index_bound).await.map_err(storage_error(group))?;
        }
        let first_before = state.store.log().first_index();
        #[cfg(any(madsim, feature = "planted-bugs"))]
        let report = match past_commit {
            true => state.store.enforce_retention_past_commit(now_ms, index_bound).await,
            false => state.store.enforce_retention(now_ms, index_bound).await,
        };
        #[cfg(not(any(madsim, feature = "planted-bugs")))]
        let report = state.store.enforce_retention(now_ms, index_bound).await;
        let report = report.map_err(storage_error(group))?;
        let first_index = state.store.log().first_index();
        assert!(first_index <= index_bound, "group {group}: retention deleted index {index_bound} (the log starts at {first_index})");
        if first_index != first_before {
            let (node, incarnation, offset_start) = (self.config.node_id, self.incarnation, state.store.log().offset_start());
            let commit = state.store.hard_state_saved().commit;
            observe::emit(|| observe::Event::LogStart { node, incarnation, group, first_index, offset_start, commit, applied });
        }
        self.retention_checked(group);
        Ok(report)
    }

    /// The persisted hard state and log bounds of `group` (for invariant checks).
    pub fn durable_state(&self, group: GroupId) -> Option<(RaftHardState, u64, u64)> {
        let state = self.groups.get(&group)?;
        let hard = crate::storage::raft_hard_state(state.store.hard_state_saved());
        Some((hard, state.store.log().first_index(), state.store.log().synced_index()))
    }

    /// Data entries of `group` holding offsets at or after `offset`, never above raft index
    /// `index_max` (the caller's commit bound), about `bytes_max` bytes (at least one entry
    /// when any is available). See [`odradek_log::SegmentLog::read_offsets`].
    pub async fn read_records(
        &self,
        group: GroupId,
        offset: u64,
        bytes_max: u64,
        index_max: u64,
    ) -> Result<Vec<odradek_log::Entry>, NodeError> {
        let state = self.groups.get(&group).ok_or(NodeError::GroupUnknown(group))?;
        state.store.log().read_offsets(offset, bytes_max, index_max).await.map_err(|e| storage_error(group)(e.into()))
    }

    /// `group`'s log bounds: (first offset kept, next offset, first raft index kept).
    pub fn log_bounds(&self, group: GroupId) -> Option<LogBounds> {
        let log = self.groups.get(&group)?.store.log();
        Some(LogBounds { offset_start: log.offset_start(), offset_next: log.offset_next(), first_index: log.first_index() })
    }

    /// The raft entries `low ..= high` of `group`'s log (for invariant checks).
    pub async fn read_log(&self, group: GroupId, low: u64, high: u64) -> Result<Vec<RaftEntry>, NodeError> {
        let state = self.groups.get(&group).ok_or(NodeError::GroupUnknown(group))?;
        let mut out = Vec::new();
        let mut next = low;
        while next <= high {
            let entries = state.store.read(next, high + 1, LOG_READ_BYTES_MAX).await.map_err(storage_error(group))?;
            next = entries.last().map_or(high + 1, |e| e.index + 1);
            out.extend(entries);
        }
        Ok(out)
    }
}

/// Whether `store` has never held an entry, a term or a suspicion: a replica new here.
fn is_pristine<D: Disk>(store: &GroupStore<D>) -> bool {
    let saved = store.hard_state_saved();
    store.log().last_index() == 0 && saved.term == 0 && saved.vote == 0 && saved.suspect.is_none()
}
