//! The deterministic cluster every test here drives: nodes over `LocalNetwork` and `SimDisk`,
//! stepped by explicit tick/round/deliver calls, with a recording state machine
//! ([`Recorder`]), a wire tap for R6 ([`TappedTransport`]), and the one raft checker installed
//! as the observer of their events and fed what the harness sees inside them (see the crate
//! documentation for which check runs where).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use odradek_consensus::observe::{self, Event};
use odradek_consensus::{
    Appended, Apply, Committed, EntryMeta, GroupId, LocalNetwork, LocalTransport, Node, NodeConfig, NodeId, Proposal, ProposeError,
    Transport, TransportStats,
};
use odradek_jepsen::checker::raft::{RaftChecker, ReplicaLog};
use odradek_log::{CrashMode, EntryKind, SimDisk};
use raft::eraftpb::{HardState as RaftHardState, Message, MessageType};
use raft::StateRole;

/// What the state machines were handed, for the proposal outcome checks and the tests' own
/// questions (the raft checker judges R4 from the nodes' events).
#[derive(Default)]
pub(crate) struct Recorded {
    /// The first entry any replica applied at (group, index).
    pub(crate) canonical: BTreeMap<(GroupId, u64), Committed>,
    /// Per node incarnation: last applied index per group.
    pub(crate) applied: BTreeMap<(NodeId, GroupId), u64>,
    /// Snapshots installed (Apply::restore calls).
    pub(crate) restores: u64,
    /// Every Apply::restore: node, group, index and the start state it was handed.
    pub(crate) restored: Vec<(NodeId, GroupId, u64, Option<odradek_log::StartState>)>,
    /// Indefinite proposal outcomes resolved, all checked against the canonical entries.
    pub(crate) resolved: Vec<odradek_consensus::ResolvedOutcome>,
}

pub(crate) struct Recorder {
    pub(crate) node: NodeId,
    pub(crate) recorded: Arc<Mutex<Recorded>>,
}

impl Apply for Recorder {
    fn apply(&mut self, group: GroupId, entries: &[Committed]) {
        let mut recorded = self.recorded.lock().unwrap();
        for entry in entries {
            recorded.applied.insert((self.node, group), entry.index);
            recorded.canonical.entry((group, entry.index)).or_insert_with(|| entry.clone());
        }
    }

    fn restore(&mut self, group: GroupId, index: u64, _term: u64, _offset_next: u64, start: Option<&odradek_log::StartState>) {
        let mut recorded = self.recorded.lock().unwrap();
        recorded.restores += 1;
        recorded.restored.push((self.node, group, index, start.cloned()));
        recorded.applied.insert((self.node, group), index);
    }
}

/// One message the R6 check looks at (an append response or vote grant), as it was sent.
pub(crate) struct Sent {
    pub(crate) from: NodeId,
    pub(crate) group: GroupId,
    pub(crate) message: Message,
    /// The sender's disk syncs (data and directory) done when the message was sent.
    pub(crate) disk_syncs: u64,
}

pub(crate) fn disk_syncs(disk: &SimDisk) -> u64 {
    let stats = disk.stats();
    stats.syncs + stats.dir_syncs
}

/// `LocalTransport` plus a tap for R6: every append response and vote grant a node sends is
/// recorded with the count of its disk's syncs at that moment, for [`LocalCluster::check_sent`].
pub(crate) struct TappedTransport {
    pub(crate) local: LocalTransport,
    pub(crate) disk: SimDisk,
    pub(crate) sent: Arc<Mutex<Vec<Sent>>>,
    /// Append responses sent with `reject` set, over all nodes.
    pub(crate) append_rejections: Arc<AtomicU64>,
}

impl Transport for TappedTransport {
    fn node_id(&self) -> NodeId {
        self.local.node_id()
    }

    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        let covered = [MessageType::MsgAppendResponse, MessageType::MsgRequestVoteResponse];
        let mut sent = self.sent.lock().unwrap();
        for (group, message) in &messages {
            if message.get_msg_type() == MessageType::MsgAppendResponse && message.reject {
                self.append_rejections.fetch_add(1, Ordering::Relaxed);
            }
            if covered.contains(&message.get_msg_type()) && !message.reject {
                let from = self.local.node_id();
                sent.push(Sent { from, group: *group, message: message.clone(), disk_syncs: disk_syncs(&self.disk) });
            }
        }
        drop(sent);
        self.local.send(to, messages);
    }

    fn stats(&self) -> TransportStats {
        self.local.stats()
    }
}

/// What of one group a node has made durable: the saved hard state and the fsynced log end.
pub(crate) type Durable = BTreeMap<GroupId, (RaftHardState, u64)>;

/// Installs, on this thread, the one raft checker as the observer of every node's events; its
/// first violation panics, naming the invariant.
pub(crate) fn observe_raft() -> Rc<RefCell<RaftChecker>> {
    let checker = Rc::new(RefCell::new(RaftChecker::default()));
    let sink = checker.clone();
    observe::install(move |event| {
        let mut checker = sink.borrow_mut();
        checker.record(event);
        if let Some(violation) = checker.violations().first() {
            panic!("{violation}");
        }
    });
    checker
}

pub(crate) type TestNode = Node<SimDisk, TappedTransport, Recorder>;

pub(crate) struct LocalCluster {
    pub(crate) network: LocalNetwork,
    pub(crate) disks: BTreeMap<NodeId, SimDisk>,
    pub(crate) nodes: BTreeMap<NodeId, TestNode>,
    pub(crate) voters: Vec<NodeId>,
    pub(crate) groups: Vec<GroupId>,
    pub(crate) recorded: Arc<Mutex<Recorded>>,
    /// Messages sent and not yet checked for R6.
    pub(crate) sent: Arc<Mutex<Vec<Sent>>>,
    /// The raft checker, also the observer of the nodes' events on this thread.
    pub(crate) raft: Rc<RefCell<RaftChecker>>,
    pub(crate) seed: u64,
    pub(crate) now_ms: i64,
    /// Every group's log settings; a small `cache_bytes_max` forces raft's async log fetches.
    pub(crate) log_config: odradek_log::LogConfig,
    /// Failed fsyncs are injected: a round error crashes the node instead of failing the test.
    pub(crate) fsync_faults: bool,
    /// Nodes crashed by a failed round, for the scheduler to restart.
    pub(crate) failed: Vec<NodeId>,
    /// Run the nodes with the planted R6 bug (feature `planted-bugs`).
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    pub(crate) planted_send_before_persist: bool,
    /// Run the nodes with the planted R8 e bug: a recovery cut is trusted, no suspicion.
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    pub(crate) planted_trust_recovery_cut: bool,
    /// Nodes whose groups may refuse to open (a test corrupted their files).
    pub(crate) broken: std::collections::BTreeSet<NodeId>,
    /// Per node, the disk budget its follower appends draw from (F-S9); none: unlimited.
    pub(crate) entry_budgets: BTreeMap<NodeId, Arc<AtomicI64>>,
    /// `NodeConfig::lead_room_bytes_min` of every node.
    pub(crate) lead_room_bytes_min: u64,
    /// `NodeConfig::hibernate` of every node.
    pub(crate) hibernate: bool,
    /// `NodeConfig::learner_catch_up_bytes_per_second` of every node.
    pub(crate) catch_up_bytes_per_second: Option<u64>,
    /// Nodes that host their groups as replicas joining through a conf change
    /// (`Node::create_group_joining`), not as bootstrap voters.
    pub(crate) joining: std::collections::BTreeSet<NodeId>,
    /// Append responses sent with `reject` set, over all nodes (the wire tap counts them).
    pub(crate) append_rejections: Arc<AtomicU64>,
    /// Run the nodes with the planted hibernated-leader-reads-locally bug.
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    pub(crate) planted_hibernated_leader_reads_locally: bool,
}

impl LocalCluster {
    pub(crate) async fn new(seed: u64, node_count: u64, groups: &[GroupId]) -> LocalCluster {
        LocalCluster::new_with(seed, node_count, groups, |_| {}).await
    }

    /// [`LocalCluster::new`] with settings `set` changes before any node starts.
    pub(crate) async fn new_with(seed: u64, node_count: u64, groups: &[GroupId], set: impl FnOnce(&mut LocalCluster)) -> LocalCluster {
        let voters: Vec<NodeId> = (1..=node_count).collect();
        let disks = voters.iter().map(|&id| (id, SimDisk::new(seed.wrapping_mul(31).wrapping_add(id)))).collect();
        let mut cluster = LocalCluster {
            network: LocalNetwork::new(),
            disks,
            nodes: BTreeMap::new(),
            voters: voters.clone(),
            groups: groups.to_vec(),
            recorded: Arc::default(),
            sent: Arc::default(),
            raft: observe_raft(),
            seed,
            now_ms: 0,
            log_config: odradek_log::LogConfig::default(),
            fsync_faults: false,
            failed: Vec::new(),
            planted_send_before_persist: false,
            planted_trust_recovery_cut: false,
            broken: Default::default(),
            entry_budgets: BTreeMap::new(),
            lead_room_bytes_min: 0,
            hibernate: false,
            catch_up_bytes_per_second: None,
            joining: Default::default(),
            append_rejections: Arc::default(),
            planted_hibernated_leader_reads_locally: false,
        };
        set(&mut cluster);
        for id in voters {
            cluster.start(id).await;
        }
        cluster
    }

    pub(crate) async fn start(&mut self, id: NodeId) {
        let (local, inbox) = self.network.attach(id);
        let seed = self.seed;
        let disk = self.disks.entry(id).or_insert_with(|| SimDisk::new(seed.wrapping_mul(31).wrapping_add(id))).clone();
        let transport = TappedTransport { local, disk, sent: self.sent.clone(), append_rejections: self.append_rejections.clone() };
        let mut config = NodeConfig::new(id, "/data");
        config.election_seed = Some(self.seed);
        config.log_config = self.log_config.clone();
        config.entry_budget = self.entry_budgets.get(&id).cloned();
        config.lead_room_bytes_min = self.lead_room_bytes_min;
        config.hibernate = self.hibernate;
        config.learner_catch_up_bytes_per_second = self.catch_up_bytes_per_second;
        #[cfg(feature = "planted-bugs")]
        {
            config.planted.send_before_persist = self.planted_send_before_persist;
            config.planted.trust_recovery_cut = self.planted_trust_recovery_cut;
            config.planted.hibernated_leader_reads_locally = self.planted_hibernated_leader_reads_locally;
        }
        let recorder = Recorder { node: id, recorded: self.recorded.clone() };
        {
            // A new incarnation re-applies from index 1 (its state machine is in memory).
            let mut recorded = self.recorded.lock().unwrap();
            recorded.applied.retain(|&(node, _), _| node != id);
        }
        let mut node = Node::new(config, self.disks[&id].clone(), transport, inbox, recorder);
        for &group in &self.groups {
            let created = match self.joining.contains(&id) {
                true => node.create_group_joining(group, &self.voters, self.now_ms, self.log_config.clone()).await,
                false => node.create_group(group, &self.voters, 0, self.now_ms).await,
            };
            if let Err(error) = created {
                assert!(self.broken.contains(&id), "node {id} group {group}: {error}");
            }
        }
        // R3: a restart recovers no commit above what the group is known to have committed.
        for &group in &self.groups {
            let Some(status) = node.status(group) else { continue };
            self.judge(|raft| raft.record_start(id, group, status.commit));
        }
        self.nodes.insert(id, node);
    }

    /// Feeds the raft checker what this harness saw; its first violation fails the test.
    pub(crate) fn judge(&self, feed: impl FnOnce(&mut RaftChecker)) {
        let mut raft = self.raft.borrow_mut();
        feed(&mut raft);
        if let Some(violation) = raft.violations().first() {
            panic!("{violation}");
        }
    }

    pub(crate) fn crash(&mut self, id: NodeId, mode: CrashMode) {
        self.network.detach(id);
        self.nodes.remove(&id).expect("node was running");
        self.disks[&id].crash(mode);
        self.disks[&id].fail_next_syncs(0);
    }

    /// Replaces crashed node `id`'s disk by an older `copy` of it, and tells the checker.
    pub(crate) fn restore_disk(&mut self, id: NodeId, copy: &odradek_log::DiskImage) {
        assert!(!self.nodes.contains_key(&id), "node {id} is down while its disk is replaced");
        self.disks[&id].restore(copy);
        self.raft.borrow_mut().record_disk_replaced(id);
    }

    /// One scheduler step: every node ticks and runs a round, then the network delivers all.
    pub(crate) async fn step(&mut self) {
        self.round_all().await;
        self.network.deliver_all();
    }

    /// One scheduler step in which nothing reaches or leaves `isolated`.
    pub(crate) async fn step_isolating(&mut self, isolated: NodeId) {
        self.round_all().await;
        for envelope in self.network.take_in_flight() {
            if envelope.from != isolated && envelope.to != isolated {
                self.network.deliver(envelope);
            }
        }
    }

    pub(crate) async fn round_all(&mut self) {
        self.now_ms += 10;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let before = self.durable(id);
            let node = self.nodes.get_mut(&id).expect("listed");
            node.tick();
            let outcome = node.round(self.now_ms).await;
            // Also after a failed round: what it sent before failing is checked against what
            // it had made durable when it failed (the node is crashed below).
            self.check_sent(id, &before);
            if let Err(error) = outcome {
                // A failed fsync is fatal (fsyncgate): the node stops and restarts from what
                // is durable. Anything else is a bug.
                assert!(self.fsync_faults, "node {id}: {error}");
                self.crash(id, CrashMode::PowerLoss);
                self.failed.push(id);
            } else {
                self.check_resolved(id);
            }
        }
        self.check();
    }

    pub(crate) fn durable(&self, id: NodeId) -> Durable {
        let node = &self.nodes[&id];
        let groups = self.groups.iter().filter_map(|&g| node.durable_state(g).map(|(hard, _, synced)| (g, (hard, synced))));
        groups.collect()
    }

    /// R6 (persist before send), for what node `id` sent in the round that just ended: an
    /// append response claiming index `i` needs the sender's log fsynced through `i`; a vote
    /// grant in term `t` needs a durable hard state of term `t` with the vote for the candidate,
    /// or of a later term (the grant was superseded in the same round, and the node can never
    /// vote in `t` again). Pre-vote responses promise nothing and are exempt.
    ///
    /// "Durable at send time": a message sent when the disk had done as many syncs as at the
    /// end of the round is judged against the durable state at the end of the round (nothing
    /// became durable after it left); a message sent before some of the round's syncs is
    /// judged against the durable state at the start of the round (what was durable when it
    /// left is at least that, and the round's own syncs came too late for it).
    pub(crate) fn check_sent(&self, id: NodeId, before: &Durable) {
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        let after = self.durable(id);
        let syncs_after = disk_syncs(&self.disks[&id]);
        for Sent { from, group, message, disk_syncs } in sent {
            assert_eq!(from, id, "a message was sent outside its node's round");
            let durable = if disk_syncs == syncs_after { &after } else { before };
            let Some(&(ref hard, synced)) = durable.get(&group) else { continue };
            let to = message.to;
            let event = match message.get_msg_type() {
                MessageType::MsgAppendResponse => {
                    Event::AppendAccepted { node: id, group, to, index: message.index, durable_index: synced }
                }
                MessageType::MsgRequestVoteResponse => {
                    Event::VoteGranted { node: id, group, to, term: message.term, term_saved: hard.term, vote_saved: hard.vote }
                }
                other => unreachable!("the tap records no {other:?}"),
            };
            self.judge(|raft| raft.record(event));
        }
    }

    /// R5, at the moment the harness sees a proposal acknowledged with `(index, term)`: the
    /// entry is durable on a quorum of the group's current voters (both halves of a joint
    /// configuration), counting crashed voters by what they had made durable.
    pub(crate) fn check_ack_durable(&self, group: GroupId, index: u64, term: u64) {
        // The configuration of the replica that has applied the most is the current one.
        let newest = self.nodes.values().max_by_key(|n| n.status(group).map_or(0, |s| s.applied)).expect("a running node");
        let conf = newest.conf_state(group).expect("the group is hosted");
        self.judge(|raft| raft.record_ack(group, index, term, &[&conf.voters, &conf.voters_outgoing]));
    }

    /// Indefinite outcomes that node `id` resolved: it applied their index, so the canonical
    /// entry there is known; the resolution is a success iff that entry has the proposal's term.
    pub(crate) fn check_resolved(&mut self, id: NodeId) {
        let resolved = self.nodes.get_mut(&id).expect("running").take_resolved_outcomes();
        let mut recorded = self.recorded.lock().unwrap();
        for outcome in resolved {
            let canonical = recorded.canonical.get(&(outcome.group, outcome.index)).expect("resolved only once applied");
            match &outcome.outcome {
                Ok(committed) => {
                    let position = (committed.index, committed.term, committed.base_offset);
                    assert_eq!(
                        position,
                        (canonical.index, canonical.term, canonical.base_offset),
                        "node {id}: {outcome:?} but {canonical:?} was committed"
                    );
                    assert_eq!(outcome.term, canonical.term, "node {id}: {outcome:?} but {canonical:?} was committed");
                }
                Err(ProposeError::Superseded { .. }) => {
                    assert_ne!(outcome.term, canonical.term, "node {id}: {outcome:?} but {canonical:?} was committed")
                }
                // A conf change raft replaced by an empty entry at append.
                Err(ProposeError::Busy { .. }) => assert!(
                    outcome.term == canonical.term && canonical.kind != EntryKind::Config,
                    "node {id}: {outcome:?} but {canonical:?} was committed"
                ),
                Err(other) => panic!("node {id}: {other} is no resolution"),
            }
            recorded.resolved.push(outcome);
        }
    }

    /// R3: no running replica's commit regressed.
    pub(crate) fn check(&self) {
        for (&id, node) in &self.nodes {
            for &group in &self.groups {
                // A group whose files cannot open is not hosted (see `broken`).
                let Some(status) = node.status(group) else { continue };
                self.judge(|raft| raft.record_commit(id, group, status.commit));
            }
        }
    }

    pub(crate) fn leader(&self, group: GroupId) -> Option<NodeId> {
        let statuses = self.nodes.iter().filter_map(|(&id, node)| Some((id, node.status(group)?)));
        statuses.filter(|(_, s)| s.role == StateRole::Leader).max_by_key(|(_, s)| s.term).map(|(id, _)| id)
    }

    pub(crate) async fn run_until(&mut self, steps_max: usize, mut done: impl FnMut(&LocalCluster) -> bool) {
        for _ in 0..steps_max {
            if done(self) {
                return;
            }
            self.step().await;
        }
        if !done(self) {
            let recorded = self.recorded.lock().unwrap();
            for (id, node) in &self.nodes {
                for &g in &self.groups {
                    eprintln!(
                        "node {id} g{g}: {:?} applied {:?} stats {:?}",
                        node.status(g),
                        recorded.applied.get(&(*id, g)),
                        node.stats()
                    );
                }
            }
        }
        assert!(done(self), "not done after {steps_max} steps");
    }

    pub(crate) async fn elect_all(&mut self) {
        let groups = self.groups.clone();
        self.run_until(500, |c| groups.iter().all(|&g| c.leader(g).is_some())).await;
    }

    pub(crate) fn propose(&mut self, group: GroupId, payload: String, meta: EntryMeta) -> Proposal {
        let leader = self.leader(group).expect("a leader");
        self.nodes.get_mut(&leader).unwrap().propose(group, Bytes::from(payload), meta)
    }

    /// Proposes `count` data entries to every group and waits for them all to commit.
    pub(crate) async fn propose_and_commit(&mut self, count: usize, tag: &str) -> Vec<(u64, u64)> {
        let mut proposals = Vec::new();
        for &group in &self.groups.clone() {
            for i in 0..count {
                let meta = if i % 3 == 2 {
                    EntryMeta::Command
                } else {
                    EntryMeta::Data { record_count: 1 + i as u32 % 4, timestamp_max: i as i64 }
                };
                proposals.push((group, self.propose(group, format!("{tag} g{group} #{i}"), meta)));
            }
        }
        let mut outcomes: Vec<Option<(u64, u64)>> = vec![None; proposals.len()];
        for _ in 0..500 {
            for ((group, proposal), outcome) in proposals.iter_mut().zip(outcomes.iter_mut()) {
                if let Some(result) = proposal.try_outcome() {
                    let Appended { index, term, .. } = result.expect("no faults: every proposal commits");
                    self.check_ack_durable(*group, index, term);
                    *outcome = Some((index, term));
                }
            }
            if outcomes.iter().all(Option::is_some) {
                return outcomes.into_iter().map(Option::unwrap).collect();
            }
            self.step().await;
        }
        panic!("proposals did not commit");
    }

    /// Steps until every running node has applied everything its group's leader committed.
    pub(crate) async fn converge(&mut self) {
        let groups = self.groups.clone();
        self.run_until(500, |c| {
            groups.iter().all(|&g| {
                let Some(leader) = c.leader(g) else { return false };
                let commit = c.nodes[&leader].status(g).unwrap().commit;
                let recorded = c.recorded.lock().unwrap();
                c.nodes.keys().all(|&id| recorded.applied.get(&(id, g)).copied().unwrap_or(0) == commit)
            })
        })
        .await;
    }

    pub(crate) fn applied_payloads(&self, group: GroupId) -> Vec<(EntryKind, Bytes)> {
        let recorded = self.recorded.lock().unwrap();
        recorded.canonical.range((group, 0)..(group + 1, 0)).map(|(_, e)| (e.kind, e.payload.clone())).collect()
    }

    /// Liveness after healing: a proposal commits, allowing for leadership still settling
    /// (a just-healed leader may step down by check-quorum and fail the first attempts).
    pub(crate) async fn commit_one_eventually(&mut self, group: GroupId) {
        for attempt in 0..20 {
            self.run_until(500, |c| c.leader(group).is_some()).await;
            let mut proposal = self.propose(group, format!("final g{group} #{attempt}"), EntryMeta::Command);
            for _ in 0..100 {
                match proposal.try_outcome() {
                    Some(Ok(Appended { index, term, .. })) => {
                        self.check_ack_durable(group, index, term);
                        return;
                    }
                    Some(Err(_)) => break,
                    None => self.step().await,
                }
            }
        }
        panic!("liveness: group {group} commits nothing after healing");
    }

    /// R2 and R3 over the running replicas' logs (see [`RaftChecker::check_logs`]).
    pub(crate) async fn check_logs(&self) {
        for &group in &self.groups {
            let newest_leader = self.leader(group);
            let mut logs = Vec::new();
            for (&id, node) in &self.nodes {
                let (Some(status), Some((_, first_index, synced_index))) = (node.status(group), node.durable_state(group)) else {
                    continue;
                };
                let entries = if status.last_index >= first_index {
                    node.read_log(group, first_index, status.last_index).await.unwrap()
                } else {
                    Vec::new()
                };
                logs.push(ReplicaLog {
                    node: id,
                    entries: entries.iter().map(|e| (e.index, (e.term, observe::entry_checksum(e)))).collect(),
                    synced_index,
                    commit_index: status.commit,
                    last_index: status.last_index,
                    newest_leader: newest_leader == Some(id),
                });
            }
            self.judge(|raft| raft.check_logs(group, &logs));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        observe::uninstall();
    }
}
