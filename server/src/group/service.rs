//! The coordinator at work: requests in, records written through raft, answers out, and a
//! timer for sessions and rebalance deadlines. The decisions are the pure functions of
//! [`super::classic`] and [`super::consumer`]; this module owns their I/O.
//!
//! A request is served only by the leader of its group's partition of the offsets topic, and
//! only once that leader has applied an entry of its own term (so its table holds every
//! committed record: a new coordinator never answers from a partial table). Otherwise the
//! answer is `NOT_COORDINATOR` (with the leader it knows) or `COORDINATOR_LOAD_IN_PROGRESS`.
//!
//! Writes: every decision is a record proposed to the partition's raft group; the answer waits
//! for it to commit and apply, and reports the table's outcome for it (the log is the authority:
//! a record may be refused at its index even though it looked valid when proposed). Membership
//! records of one group are written one at a time (a per-group async lock), so each is computed
//! from the latest written state; the compare-and-set of `GroupTable::apply` makes that a
//! safety net, not the mechanism. A read of committed offsets first writes a barrier record, so
//! a deposed coordinator cannot answer from a table another leader has moved past (C1).
//!
//! Waiting: a classic JoinGroup waits for its generation, a follower's SyncGroup for the
//! leader's assignment; their answers are delivered through one-shot channels kept with the
//! partition's volatile state and dropped (with `NOT_COORDINATOR`) when leadership changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use odradek_client::wire::proto::ErrorCode;
use odradek_consensus::{Durability, EntryMeta, GroupId, NodeHandle, NodeId};
use raft::StateRole;
use tokio::sync::oneshot;

use super::classic::{self, JoinAnswer, JoinRequest, JoinStep, Phase, SyncRequest, SyncStep};
use super::consumer::{self, HeartbeatAnswer, HeartbeatRequest};
use super::live::{self, Coordinator, Due};
use super::record::{OffsetCommit, Record};
use super::table::{CommitRules, GroupKind, GroupTable, Membership, Outcome};
use super::{partition_for, validate_group_id, GroupError, Partitions, TopicPartition, MEMBERS_PER_GROUP_MAX, OFFSETS_TOPIC};
use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::state::NodeState;

/// The coordinator's settings (`[groups]` in the TOML configuration).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// Partitions of `__consumer_offsets`, fixed when it is created (Kafka: 50; each is a raft
    /// group on its replicas, so fewer here).
    pub offsets_topic_partitions: u32,
    /// Replicas of each; capped at the number of nodes.
    pub offsets_topic_replication_factor: u32,
    /// How long an empty classic group waits for more members before its first generation
    /// (Kafka's `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u32,
    /// Session length of consumer-protocol members (Kafka's `group.consumer.session.timeout.ms`).
    pub consumer_session_timeout_ms: u32,
    /// How often consumer-protocol members heartbeat (`group.consumer.heartbeat.interval.ms`).
    pub consumer_heartbeat_interval_ms: u32,
    /// How often the coordinator checks sessions and deadlines.
    pub timer_tick_ms: u32,
    /// Bytes of records after which the coordinator snapshots its table (at least twice the
    /// table's size): what retention keeps of an offsets partition is about this much.
    pub snapshot_bytes_min: u64,
    /// Segment size of the offsets topic, fixed when it is created.
    pub offsets_segment_bytes: u64,
}

impl Default for GroupSettings {
    fn default() -> GroupSettings {
        GroupSettings {
            offsets_topic_partitions: 16,
            offsets_topic_replication_factor: 3,
            initial_rebalance_delay_ms: 3_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            timer_tick_ms: 100,
            snapshot_bytes_min: super::SNAPSHOT_BYTES_MIN,
            offsets_segment_bytes: super::OFFSETS_SEGMENT_BYTES,
        }
    }
}

impl GroupSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.offsets_topic_partitions == 0 || self.offsets_topic_partitions > crate::meta::PARTITIONS_MAX {
            return Err(format!("groups.offsets_topic_partitions must be within 1..={}", crate::meta::PARTITIONS_MAX));
        }
        if self.offsets_topic_replication_factor == 0 {
            return Err("groups.offsets_topic_replication_factor must be positive".into());
        }
        if self.timer_tick_ms == 0 || self.consumer_heartbeat_interval_ms == 0 {
            return Err("groups.timer_tick_ms and consumer_heartbeat_interval_ms must be positive".into());
        }
        if self.consumer_session_timeout_ms <= self.consumer_heartbeat_interval_ms {
            return Err("groups.consumer_session_timeout_ms must exceed consumer_heartbeat_interval_ms".into());
        }
        if self.snapshot_bytes_min == 0 {
            return Err("groups.snapshot_bytes_min must be positive".into());
        }
        if self.offsets_segment_bytes < OFFSETS_SEGMENT_BYTES_MIN {
            return Err(format!("groups.offsets_segment_bytes must be at least {OFFSETS_SEGMENT_BYTES_MIN}"));
        }
        Ok(())
    }
}

/// The smallest offsets-topic segment accepted (a few records each; below that a segment per
/// record would cost more in files than it saves).
pub const OFFSETS_SEGMENT_BYTES_MIN: u64 = 4 * 1024;

/// Planted bugs of the coordinator (all off in production).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// A commit from a member of an older generation or epoch is accepted (C5).
    pub accept_stale_commit: bool,
    /// A new coordinator answers before it applied its log, and reads skip the barrier (C1).
    pub answer_before_replay: bool,
    /// NOT_COORDINATOR hints name the preferred replica, even this node itself.
    pub names_preferred: bool,
    /// The consumer protocol hands out partitions their old owner still holds (ownership).
    pub give_owned_partitions: bool,
    /// A subscribed regex matches anywhere in a topic name, not the whole name (C8).
    pub regex_matches_substring: bool,
    /// OffsetDelete answers "deleted" for subscribed topics' partitions and reports the table's
    /// refusal as success (C9).
    pub offset_delete_ignores_subscription: bool,
}

/// Why a group request was not served. Definite unless `code` is one of the indefinite codes
/// (a write whose outcome is unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// With `NOT_COORDINATOR`: the node believed to coordinate the group (0: unknown).
    pub coordinator_hint: NodeId,
    /// With `MEMBER_ID_REQUIRED`: the member id to join with.
    pub member_id: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into(), coordinator_hint: 0, member_id: String::new() }
    }

    fn not_coordinator(node: NodeId, hint: NodeId, group: &str) -> Refusal {
        let message = format!("node {node} does not coordinate group {group:?} now");
        Refusal { code: ErrorCode::NOT_COORDINATOR, message, coordinator_hint: hint, member_id: String::new() }
    }
}

impl From<GroupError> for Refusal {
    fn from(error: GroupError) -> Refusal {
        let mut refusal = Refusal::new(error.code(), error.to_string());
        if let GroupError::MemberIdRequired { member } = error {
            refusal.member_id = member;
        }
        refusal
    }
}

type JoinReply = oneshot::Sender<Result<JoinAnswer, Refusal>>;
type SyncReply = oneshot::Sender<Result<(Vec<u8>, String), Refusal>>;

/// One hosted partition of the offsets topic: the committed table (applied by the raft loop)
/// and, on its leader, the volatile coordinator state.
#[derive(Default)]
pub struct CoordinatorPartition {
    pub partition: u32,
    pub table: GroupTable,
    live: Option<Coordinator>,
    joins: BTreeMap<String, BTreeMap<String, JoinReply>>,
    syncs: BTreeMap<String, BTreeMap<String, SyncReply>>,
    writers: BTreeMap<String, Arc<tokio::sync::Mutex<()>>>,
    snapshot_writing: bool,
}

impl CoordinatorPartition {
    /// `planted_two_owners`: the planted bug `assignment-two-owners` (false outside planted runs).
    pub fn new(partition: u32, planted_two_owners: bool) -> CoordinatorPartition {
        CoordinatorPartition {
            partition,
            table: GroupTable::with_planted_two_owners(planted_two_owners),
            ..CoordinatorPartition::default()
        }
    }

    /// The volatile state, valid for `term`: a new term starts afresh and every waiting request
    /// learns that this node no longer coordinates (it may again, in the new term; they retry).
    fn live_for(&mut self, node_id: NodeId, term: u64, settings: &GroupSettings) -> &mut Coordinator {
        if self.live.as_ref().map(|live| live.term) != Some(term) {
            self.drop_waiters(node_id);
            self.live = Some(Coordinator::new(node_id, term, settings.consumer_session_timeout_ms));
        }
        self.live.as_mut().expect("set above")
    }

    fn drop_waiters(&mut self, node_id: NodeId) {
        for (group, waiters) in std::mem::take(&mut self.joins) {
            for (_, reply) in waiters {
                let _ = reply.send(Err(Refusal::not_coordinator(node_id, 0, &group)));
            }
        }
        for (group, waiters) in std::mem::take(&mut self.syncs) {
            for (_, reply) in waiters {
                let _ = reply.send(Err(Refusal::not_coordinator(node_id, 0, &group)));
            }
        }
    }

    /// Leadership was lost: nothing volatile survives.
    pub fn demote(&mut self, node_id: NodeId) {
        self.drop_waiters(node_id);
        self.live = None;
    }

    fn writer(&mut self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.writers.entry(group.to_string()).or_default().clone()
    }
}

/// Where a group is coordinated, once this node is its ready coordinator.
#[derive(Clone, Copy, Debug)]
struct Located {
    raft_group: GroupId,
    term: u64,
}

/// What FindCoordinator learned on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorSearch {
    /// This node hosts the group's partition and knows its leader.
    Leader { node: NodeId, partition: u32 },
    /// This node does not host the partition (not a replica, or its replica could not be
    /// opened: quarantined, still being created) or knows no leader: the hosting replicas know.
    Elsewhere { raft_group: GroupId, partition: u32, replicas: Vec<NodeId> },
}

/// What a described group holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group: String,
    pub state: &'static str,
    pub membership: Membership,
    pub offsets: Vec<(TopicPartition, i64, String)>,
}

/// The coordinator service of one node.
pub struct GroupService {
    node: NodeHandle,
    state: Arc<NodeState>,
    config: Arc<ServerConfig>,
    clock: Clock,
    planted: Planted,
}

impl GroupService {
    pub fn new(node: NodeHandle, state: Arc<NodeState>, config: Arc<ServerConfig>, clock: Clock, planted: Planted) -> GroupService {
        GroupService { node, state, config, clock, planted }
    }

    fn settings(&self) -> &GroupSettings {
        &self.config.groups
    }

    fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// The offsets-topic partition of `group`: (raft group, partition, its replicas, preferred
    /// first), or `None` while the topic does not exist.
    pub fn placement(&self, group: &str) -> Option<(GroupId, u32, Vec<NodeId>)> {
        let applied = self.state.lock();
        let topic = applied.meta.topic(OFFSETS_TOPIC)?;
        let partition = partition_for(group, topic.partitions.len() as u32);
        let assignment = topic.partitions.get(partition as usize)?;
        Some((assignment.group, partition, assignment.replicas.clone()))
    }

    /// FindCoordinator: where `group` is coordinated as far as this node knows, or `None` while
    /// the offsets topic does not exist yet (the caller creates it). The leader is known only
    /// where this node hosts the group's partition; elsewhere the caller asks the hosting
    /// replicas ([`CoordinatorSearch::Elsewhere`]).
    pub async fn find_coordinator(&self, group: &str) -> Result<Option<CoordinatorSearch>, Refusal> {
        validate_group_id(group)?;
        let Some((raft_group, partition, replicas)) = self.placement(group) else { return Ok(None) };
        let search = match self.node.status(raft_group).await {
            Ok(Some((status, _))) if status.leader != 0 => CoordinatorSearch::Leader { node: status.leader, partition },
            _ => CoordinatorSearch::Elsewhere { raft_group, partition, replicas },
        };
        Ok(Some(search))
    }

    /// Checks that this node is the group's ready coordinator.
    async fn locate(&self, group: &str) -> Result<Located, Refusal> {
        validate_group_id(group)?;
        let me = self.state.node_id;
        let Some((raft_group, _, replicas)) = self.placement(group) else {
            return Err(Refusal::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, "the offsets topic does not exist yet; find the coordinator"));
        };
        // Never this node itself: it does not lead the partition (see `replica_to_try`).
        let elsewhere = if self.planted.names_preferred {
            replicas.first().copied().unwrap_or(0) // planted: possibly this node
        } else {
            crate::request::replica_to_try(&replicas, me)
        };
        let status = match self.node.status(raft_group).await {
            Ok(Some((status, _))) => status,
            _ => return Err(Refusal::not_coordinator(me, elsewhere, group)),
        };
        if status.role != StateRole::Leader {
            let hint = if status.leader != 0 { status.leader } else { elsewhere };
            return Err(Refusal::not_coordinator(me, hint, group));
        }
        let mut applied = self.state.lock();
        let applied_term = applied.partitions.get(&raft_group).map_or(0, |partition| partition.state.applied_term());
        if applied_term != status.term && !self.planted.answer_before_replay {
            return Err(Refusal::new(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS, "a new coordinator is still applying its log"));
        }
        let Some(partition) = applied.coordinators.get_mut(&raft_group) else {
            return Err(Refusal::new(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS, "the coordinator has not applied its log yet"));
        };
        partition.live_for(me, status.term, &self.config.groups);
        Ok(Located { raft_group, term: status.term })
    }

    /// Runs `f` on the located partition (its table and live state), under the state lock.
    fn with_partition<T>(&self, at: Located, f: impl FnOnce(&mut CoordinatorPartition, &mut Coordinator) -> T) -> Result<T, Refusal> {
        let me = self.state.node_id;
        let mut applied = self.state.lock();
        let Some(partition) = applied.coordinators.get_mut(&at.raft_group) else {
            return Err(Refusal::not_coordinator(me, 0, ""));
        };
        let mut live = partition.live.take().filter(|live| live.term == at.term).ok_or_else(|| Refusal::not_coordinator(me, 0, ""))?;
        let result = f(partition, &mut live);
        partition.live = Some(live);
        Ok(result)
    }

    fn writer(&self, at: Located, group: &str) -> Result<Arc<tokio::sync::Mutex<()>>, Refusal> {
        self.with_partition(at, |partition, _| partition.writer(group))
    }

    /// Proposes `record` and waits for its outcome at its index.
    async fn write(&self, at: Located, record: &Record) -> Result<Outcome, Refusal> {
        let me = self.state.node_id;
        let ticket = self.node.submit(at.raft_group, Bytes::from(record.encode()), EntryMeta::Command, Durability::Committed).await;
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        match tokio::time::timeout(timeout, ticket.outcome()).await {
            Ok(Ok(appended)) => {
                let applied = self.state.lock();
                let outcome =
                    applied.coordinators.get(&at.raft_group).and_then(|partition| partition.table.outcome(appended.index).cloned());
                outcome.ok_or_else(|| Refusal::new(ErrorCode::INTERNAL, "the record committed but its outcome is no longer known"))
            }
            Ok(Err(error)) if error.is_definite() => Err(Refusal::not_coordinator(me, 0, record.group().unwrap_or_default())),
            Ok(Err(error)) => Err(Refusal::new(ErrorCode::LEADERSHIP_LOST, format!("{error}; the write may or may not have happened"))),
            Err(_) => Err(Refusal::new(
                ErrorCode::REQUEST_TIMED_OUT,
                format!("no outcome within {} ms; the write may or may not have happened", timeout.as_millis()),
            )),
        }
    }

    /// Writes `group`'s new membership computed from the state whose last record was at
    /// `base_index`; on success the volatile state follows it.
    async fn write_membership(&self, at: Located, group: &str, base_index: u64, membership: &Membership) -> Result<(), Refusal> {
        let record = Record::Group { group: group.to_string(), base_index, membership: membership.clone() };
        match self.write(at, &record).await? {
            Outcome::Applied => {
                let now = self.now_ms();
                self.with_partition(at, |_, live| live.written(group, membership, now))?;
                Ok(())
            }
            Outcome::Refused(error) => Err(error.into()),
            Outcome::Stale => Err(Refusal::new(ErrorCode::REBALANCE_IN_PROGRESS, format!("group {group:?} changed meanwhile; rejoin"))),
            Outcome::Undecodable(reason) => Err(Refusal::new(ErrorCode::INTERNAL, reason)),
        }
    }

    /// (membership, its record index) of `group` as committed.
    fn committed(partition: &CoordinatorPartition, group: &str) -> (Membership, u64) {
        partition.table.group(group).map_or_else(|| (Membership::default(), 0), |g| (g.membership.clone(), g.record_index))
    }

    // ---- classic protocol -------------------------------------------------------------------

    pub async fn join_group(self: &Arc<Self>, group: &str, request: JoinRequest) -> Result<JoinAnswer, Refusal> {
        let at = self.locate(group).await?;
        let writer = self.writer(at, group)?;
        let now = self.now_ms();
        let initial_delay_ms = i64::from(self.settings().initial_rebalance_delay_ms);
        let (answer, complete) = {
            let _guard = writer.lock().await;
            let step = self.with_partition(at, |partition, live| {
                let (membership, base_index) = Self::committed(partition, group);
                let live_group = live.group(group, Some(&membership), now);
                // KIP-394: ids given with MEMBER_ID_REQUIRED, until they lapse.
                live_group.pending_member_ids.retain(|_, lapses_ms| *lapses_ms > now);
                if request.require_known_member_id && request.member_id.is_empty() && request.instance_id.is_none() {
                    // Pending ids count toward the group's size, so a flood of empty-id joins
                    // cannot grow the set without bound until their session timeouts lapse.
                    let pending_count = live_group.pending_member_ids.len();
                    if pending_count + membership.members.len() >= MEMBERS_PER_GROUP_MAX {
                        let reason = format!("{pending_count} member ids given and not yet joined, {} members", membership.members.len());
                        return Err(GroupError::GroupMaxSizeReached(reason));
                    }
                    let member = live.new_member_id(&request.client_id);
                    let lapses_ms = now + i64::from(request.session_timeout_ms);
                    live.group(group, Some(&membership), now).pending_member_ids.insert(member.clone(), lapses_ms);
                    return Err(GroupError::MemberIdRequired { member });
                }
                let live_group = live.group(group, Some(&membership), now);
                let pending = live_group.pending_member_ids.remove(&request.member_id).is_some();
                let mut phase = std::mem::take(&mut live_group.phase);
                let step = {
                    let client_id = request.client_id.clone();
                    // A pending id joins as a new member that is given that id.
                    let mut given = pending.then(|| request.member_id.clone());
                    let asked = if pending { JoinRequest { member_id: String::new(), ..request.clone() } } else { request.clone() };
                    let mut new_id = || given.take().unwrap_or_else(|| live.new_member_id(&client_id));
                    classic::join(&membership, &mut phase, &asked, now, initial_delay_ms, &mut new_id)
                };
                live.group(group, Some(&membership), now).phase = phase;
                step.map(|step| (step, membership, base_index))
            })??;
            match step {
                (JoinStep::Rejoined { member_id, membership }, _, base_index) => {
                    self.write_membership(at, group, base_index, &membership).await?;
                    let mut answer = classic::join_answer(&membership, &member_id);
                    answer.skip_assignment = membership.leader == member_id;
                    (Ok(answer), false)
                }
                (JoinStep::Wait { member_id }, membership, _) => {
                    let (reply, waiting) = oneshot::channel();
                    let complete = self.with_partition(at, |partition, live| {
                        let previous = partition.joins.entry(group.to_string()).or_default().insert(member_id.clone(), reply);
                        if let Some(previous) = previous {
                            let _ = previous
                                .send(Err(Refusal::new(ErrorCode::REBALANCE_IN_PROGRESS, "a newer join of this member replaced this one")));
                        }
                        live.touch(group, &membership, &member_id, now);
                        live.live_group(group).is_some_and(|g| classic::join_complete(&membership, &g.phase, now))
                    })?;
                    (Err(waiting), complete)
                }
            }
        };
        let waiting = match answer {
            Ok(answer) => return Ok(answer),
            Err(waiting) => waiting,
        };
        if complete {
            self.complete_join(at, group).await;
        }
        let rebalance_ms = u64::from(request.rebalance_timeout_ms.max(request.session_timeout_ms)) + self.config.request_timeout_ms;
        match tokio::time::timeout(Duration::from_millis(rebalance_ms), waiting).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Refusal::not_coordinator(self.state.node_id, 0, group)),
            Err(_) => Err(Refusal::new(ErrorCode::REBALANCE_IN_PROGRESS, "the join phase did not end in time; rejoin")),
        }
    }

    /// Ends `group`'s join phase if it may end: writes the next generation and answers every
    /// waiting join.
    async fn complete_join(&self, at: Located, group: &str) {
        let Ok(writer) = self.writer(at, group) else { return };
        let _guard = writer.lock().await;
        let now = self.now_ms();
        let prepared = self.with_partition(at, |partition, live| {
            let (membership, base_index) = Self::committed(partition, group);
            let live_group = live.group(group, Some(&membership), now);
            if !classic::join_complete(&membership, &live_group.phase, now) {
                return None;
            }
            let Phase::Preparing { joined, protocol_type, .. } = std::mem::take(&mut live_group.phase) else { return None };
            Some((classic::next_generation(&membership, &joined, &protocol_type), base_index))
        });
        let Ok(Some((next, base_index))) = prepared else { return };
        assert!(next.members.is_empty() || !next.protocol_type.is_empty(), "a classic generation with members has a protocol type");
        let written = self.write_membership(at, group, base_index, &next).await;
        let _ = self.with_partition(at, |partition, _| {
            let waiters = partition.joins.remove(group).unwrap_or_default();
            for (member_id, reply) in waiters {
                let answer = match &written {
                    Ok(()) if next.members.contains_key(&member_id) => Ok(classic::join_answer(&next, &member_id)),
                    Ok(()) => Err(Refusal::new(ErrorCode::UNKNOWN_MEMBER_ID, "the generation was written without this member; rejoin")),
                    Err(refusal) => Err(refusal.clone()),
                };
                let _ = reply.send(answer);
            }
        });
    }

    pub async fn sync_group(&self, group: &str, request: SyncRequest) -> Result<(Vec<u8>, String), Refusal> {
        let at = self.locate(group).await?;
        let writer = self.writer(at, group)?;
        let now = self.now_ms();
        let waiting = {
            let _guard = writer.lock().await;
            let decided = self.with_partition(at, |partition, live| {
                let (membership, base_index) = Self::committed(partition, group);
                let live_group = live.group(group, Some(&membership), now);
                let step = classic::sync(&membership, &live_group.phase, group, &request, &decode_assignment)?;
                live.touch(group, &membership, &request.member_id, now);
                if step == SyncStep::Wait {
                    let (reply, waiting) = oneshot::channel();
                    partition.syncs.entry(group.to_string()).or_default().insert(request.member_id.clone(), reply);
                    return Ok((step, membership, base_index, Some(waiting)));
                }
                Ok::<_, GroupError>((step, membership, base_index, None))
            })??;
            match decided {
                (SyncStep::Answer(assignment), membership, ..) => return Ok((assignment, membership.protocol_name)),
                (SyncStep::Write(next), _, base_index, _) => {
                    self.write_membership(at, group, base_index, &next).await?;
                    self.with_partition(at, |partition, _| {
                        for (member_id, reply) in partition.syncs.remove(group).unwrap_or_default() {
                            let answer = next.members.get(&member_id).map(|m| (m.assignment.clone(), next.protocol_name.clone()));
                            let _ = reply.send(answer.ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_MEMBER_ID, "not in the generation")));
                        }
                    })?;
                    let mine = next.members.get(&request.member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                    return Ok((mine, next.protocol_name));
                }
                (SyncStep::Wait, _, _, waiting) => waiting.expect("a waiter for Wait"),
            }
        };
        let timeout = Duration::from_millis(self.config.request_timeout_ms * 2);
        match tokio::time::timeout(timeout, waiting).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Refusal::not_coordinator(self.state.node_id, 0, group)),
            Err(_) => Err(Refusal::new(ErrorCode::REBALANCE_IN_PROGRESS, "the leader's assignment did not come in time; rejoin")),
        }
    }

    pub async fn heartbeat(&self, group: &str, member_id: &str, generation: i32, instance_id: Option<&str>) -> Result<(), Refusal> {
        let at = self.locate(group).await?;
        let now = self.now_ms();
        self.with_partition(at, |partition, live| {
            let (membership, _) = Self::committed(partition, group);
            let live_group = live.group(group, Some(&membership), now);
            let result = classic::heartbeat(&membership, &live_group.phase, group, member_id, generation, instance_id);
            if result.is_ok() || matches!(result, Err(GroupError::RebalanceInProgress(_))) {
                live.touch(group, &membership, member_id, now);
            }
            result
        })?
        .map_err(Refusal::from)
    }

    /// LeaveGroup: each member by id or by static instance id. Answers per member.
    pub async fn leave_group(
        self: &Arc<Self>,
        group: &str,
        leaving: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), Refusal>>, Refusal> {
        let at = self.locate(group).await?;
        let writer = self.writer(at, group)?;
        let now = self.now_ms();
        let outcome = {
            let _guard = writer.lock().await;
            let (next, base_index, removed, results) = self.with_partition(at, |partition, live| {
                let (membership, base_index) = Self::committed(partition, group);
                let mut ids = Vec::new();
                let mut results = Vec::new();
                for (member_id, instance) in leaving {
                    let by_instance =
                        instance.as_deref().and_then(|instance| membership.member_of_instance(instance)).map(|m| m.member_id.clone());
                    match by_instance.or_else(|| membership.members.contains_key(member_id).then(|| member_id.clone())) {
                        Some(id) => {
                            ids.push(id);
                            results.push(Ok(()));
                        }
                        None => {
                            results.push(Err(Refusal::from(GroupError::UnknownMemberId { group: group.into(), member: member_id.clone() })))
                        }
                    }
                }
                let live_group = live.group(group, Some(&membership), now);
                let mut phase = std::mem::take(&mut live_group.phase);
                let (next, removed) = classic::leave(&membership, &mut phase, &ids, now);
                live.group(group, Some(&membership), now).phase = phase;
                (next, base_index, removed, results)
            })?;
            if !removed.is_empty() {
                self.write_membership(at, group, base_index, &next).await?;
            }
            results
        };
        // Those who stay may now all have joined.
        self.complete_join(at, group).await;
        Ok(outcome)
    }

    // ---- consumer protocol (KIP-848) --------------------------------------------------------

    pub async fn consumer_heartbeat(&self, group: &str, request: HeartbeatRequest) -> Result<(HeartbeatAnswer, u32), Refusal> {
        let at = self.locate(group).await?;
        let writer = self.writer(at, group)?;
        let _guard = writer.lock().await;
        let now = self.now_ms();
        let planted = consumer::Planted {
            give_owned_partitions: self.planted.give_owned_partitions,
            regex_matches_substring: self.planted.regex_matches_substring,
        };
        let counts: BTreeMap<String, u32> = {
            let applied = self.state.lock();
            applied
                .meta
                .topics()
                .iter()
                .filter(|(name, _)| name.as_str() != OFFSETS_TOPIC)
                .map(|(name, info)| (name.clone(), info.partitions.len() as u32))
                .collect()
        };
        let (decision, base_index) = self.with_partition(at, |partition, live| {
            let (_, base_index) = Self::committed(partition, group);
            let existing = partition.table.group(group).map(|found| &found.membership);
            let client_id = request.client_id.clone();
            // Compiled once per pattern while members use it, not on every heartbeat.
            let mut regexes = live.take_regexes(group);
            let decided = {
                let mut new_id = || live.new_member_id(&client_id);
                consumer::heartbeat_cached(existing, &request, &counts, &mut new_id, planted, &mut regexes)
            };
            live.keep_regexes(group, regexes);
            decided.map(|decision| (decision, base_index)).map_err(|error| match error {
                GroupError::UnknownMemberId { member, .. } => GroupError::UnknownMemberId { group: group.to_string(), member },
                other => other,
            })
        })??;
        let member_id = decision.answer.member_id.clone();
        if let Some(membership) = &decision.membership {
            self.write_membership(at, group, base_index, membership).await?;
        }
        if decision.answer.member_epoch >= 0 {
            self.with_partition(at, |partition, live| {
                let (membership, _) = Self::committed(partition, group);
                live.touch(group, &membership, &member_id, now);
            })?;
        }
        Ok((decision.answer, self.settings().consumer_heartbeat_interval_ms))
    }

    // ---- offsets ----------------------------------------------------------------------------

    /// OffsetCommit: all or nothing. `Ok` once applied; a refusal at its index is definite.
    /// `rules` choose the refusals' codes before the write (the record is judged natively at
    /// its index: [`CommitRules`]).
    pub async fn offset_commit(&self, commit: OffsetCommit, rules: CommitRules) -> Result<(), Refusal> {
        let at = self.locate(&commit.group).await?;
        {
            let applied = self.state.lock();
            for ((topic, partition), _, _) in &commit.offsets {
                let exists = applied.meta.topic(topic).is_some_and(|info| (*partition as usize) < info.partitions.len());
                if !exists {
                    return Err(Refusal::new(
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("no partition {topic}/{partition}; nothing was committed"),
                    ));
                }
            }
            if !self.planted.accept_stale_commit {
                let table = &applied
                    .coordinators
                    .get(&at.raft_group)
                    .ok_or_else(|| Refusal::not_coordinator(self.state.node_id, 0, &commit.group))?
                    .table;
                table.validate_commit(&commit, rules)?;
            }
        }
        let mut record = commit;
        if self.planted.accept_stale_commit {
            // Planted: the commit is rewritten to the member's current epoch, so the table takes it.
            let applied = self.state.lock();
            if let Some(group) = applied.coordinators.get(&at.raft_group).and_then(|p| p.table.group(&record.group)) {
                if let Some(member) = group.membership.members.get(&record.member_id) {
                    record.epoch =
                        if group.membership.kind == Some(GroupKind::Classic) { group.membership.epoch } else { member.member_epoch };
                }
            }
        }
        match self.write(at, &Record::Commit(record)).await? {
            Outcome::Applied => Ok(()),
            Outcome::Refused(error) => Err(error.into()),
            Outcome::Stale => Err(Refusal::new(ErrorCode::INTERNAL, "a commit is never stale")),
            Outcome::Undecodable(reason) => Err(Refusal::new(ErrorCode::INTERNAL, reason)),
        }
    }

    /// OffsetFetch: after a barrier, so the answer includes every commit acknowledged before
    /// the request (C1). `partitions` empty: every committed partition.
    pub async fn offset_fetch(&self, group: &str, partitions: &[TopicPartition]) -> Result<Vec<(TopicPartition, i64, String)>, Refusal> {
        let at = self.locate(group).await?;
        if !self.planted.answer_before_replay {
            self.write(at, &Record::Barrier).await?;
        }
        self.with_partition(at, |partition, _| {
            let offsets = partition.table.group(group).map(|g| g.offsets.clone()).unwrap_or_default();
            if partitions.is_empty() {
                offsets.into_iter().map(|(key, committed)| (key, committed.offset, committed.metadata)).collect()
            } else {
                partitions
                    .iter()
                    .map(|key| match offsets.get(key) {
                        Some(committed) => (key.clone(), committed.offset, committed.metadata.clone()),
                        None => (key.clone(), -1, String::new()),
                    })
                    .collect()
            }
        })
    }

    /// OffsetDelete (Kafka API 47): removes `group`'s committed offsets of `partitions` whose
    /// topics the group is not subscribed to; each partition gets its own code: NONE (removed,
    /// or nothing was committed), GROUP_SUBSCRIBED_TO_TOPIC (kept) or UNKNOWN_TOPIC_OR_PARTITION.
    /// Decided under the group's writer lock (membership records are written under it too, so
    /// the subscriptions read are those the record applies on); the table checks again at the
    /// record's index. A refusal of the whole request is definite.
    pub async fn offset_delete(&self, group: &str, partitions: &[TopicPartition]) -> Result<Vec<(TopicPartition, ErrorCode)>, Refusal> {
        let at = self.locate(group).await?;
        let writer = self.writer(at, group)?;
        let _guard = writer.lock().await;
        let exists: Vec<bool> = {
            let applied = self.state.lock();
            partitions
                .iter()
                .map(|(topic, index)| applied.meta.topic(topic).is_some_and(|info| (*index as usize) < info.partitions.len()))
                .collect()
        };
        let decided = self.with_partition(at, |partition, _| -> Result<_, GroupError> {
            partition.table.validate_offset_delete(group, &Partitions::new())?;
            let mut subscribed = partition.table.group(group).map(|found| found.subscribed_topics()).unwrap_or_default();
            if self.planted.offset_delete_ignores_subscription {
                subscribed.clear();
            }
            let mut deletable = Partitions::new();
            let mut codes = Vec::with_capacity(partitions.len());
            for (key, exists) in partitions.iter().zip(&exists) {
                let code = if !exists {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                } else if subscribed.contains(&key.0) {
                    ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    deletable.insert(key.clone());
                    ErrorCode::NONE
                };
                codes.push((key.clone(), code));
            }
            Ok((deletable, codes))
        })?;
        let (deletable, codes) = decided?;
        assert_eq!(codes.len(), partitions.len(), "one code per partition asked");
        if deletable.is_empty() {
            return Ok(codes);
        }
        match self.write(at, &Record::DeleteOffsets { group: group.to_string(), partitions: deletable }).await? {
            Outcome::Applied => Ok(codes),
            // Planted: the table's refusal (subscribed at the record's index) reported as success.
            Outcome::Refused(GroupError::GroupSubscribedToTopic { .. }) if self.planted.offset_delete_ignores_subscription => Ok(codes),
            Outcome::Refused(error) => Err(error.into()),
            other => Err(Refusal::new(ErrorCode::INTERNAL, format!("{other:?}"))),
        }
    }

    // ---- administration ---------------------------------------------------------------------

    /// The groups this node coordinates now: (group, protocol type, state, kind).
    pub async fn list_groups(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let raft_groups: Vec<GroupId> = self.state.lock().coordinators.keys().copied().collect();
        let mut listed = Vec::new();
        for raft_group in raft_groups {
            let Ok(Some((status, _))) = self.node.status(raft_group).await else { continue };
            if status.role != StateRole::Leader {
                continue;
            }
            let applied = self.state.lock();
            let Some(partition) = applied.coordinators.get(&raft_group) else { continue };
            for (id, group) in partition.table.groups() {
                let live = partition.live.as_ref().and_then(|live| live.live_group(id));
                let kind = group.membership.kind.map_or("classic", GroupKind::name);
                listed.push((id.clone(), group.membership.protocol_type.clone(), live::state_name(&group.membership, live), kind));
            }
        }
        listed
    }

    pub async fn describe_group(&self, group: &str) -> Result<DescribedGroup, Refusal> {
        let at = self.locate(group).await?;
        self.with_partition(at, |partition, live| {
            let Some(found) = partition.table.group(group) else {
                return Err(Refusal::from(GroupError::GroupIdNotFound(group.to_string())));
            };
            let state = live::state_name(&found.membership, live.live_group(group));
            let offsets =
                found.offsets.iter().map(|(key, committed)| (key.clone(), committed.offset, committed.metadata.clone())).collect();
            Ok(DescribedGroup { group: group.to_string(), state, membership: found.membership.clone(), offsets })
        })?
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), Refusal> {
        let at = self.locate(group).await?;
        let writer = self.writer(at, group)?;
        let _guard = writer.lock().await;
        match self.write(at, &Record::Delete { group: group.to_string() }).await? {
            Outcome::Applied => {
                self.with_partition(at, |partition, live| {
                    live.forget(group);
                    partition.writers.remove(group);
                })?;
                Ok(())
            }
            Outcome::Refused(error) => Err(error.into()),
            other => Err(Refusal::new(ErrorCode::INTERNAL, format!("{other:?}"))),
        }
    }

    // ---- timers -----------------------------------------------------------------------------

    /// One pass of the coordinator's timer over every partition this node leads: sessions,
    /// join and sync deadlines, revocations, and a snapshot when one is due.
    pub async fn tick(self: &Arc<Self>) {
        let raft_groups: Vec<GroupId> = self.state.lock().coordinators.keys().copied().collect();
        for raft_group in raft_groups {
            let status = match self.node.status(raft_group).await {
                Ok(Some((status, _))) => status,
                _ => continue,
            };
            if status.role != StateRole::Leader {
                if let Some(partition) = self.state.lock().coordinators.get_mut(&raft_group) {
                    if partition.live.is_some() {
                        partition.demote(self.state.node_id);
                    }
                }
                continue;
            }
            let at = Located { raft_group, term: status.term };
            let now = self.now_ms();
            let due = {
                let mut applied = self.state.lock();
                let applied_term = applied.partitions.get(&raft_group).map_or(0, |p| p.state.applied_term());
                if applied_term != status.term {
                    continue;
                }
                let Some(partition) = applied.coordinators.get_mut(&raft_group) else { continue };
                let table = partition.table.clone();
                partition.live_for(self.state.node_id, status.term, &self.config.groups).due(&table, now)
            };
            for due in due {
                self.handle_due(at, due).await;
            }
            self.maybe_snapshot(at).await;
        }
    }

    async fn handle_due(self: &Arc<Self>, at: Located, due: Due) {
        let now = self.now_ms();
        match due {
            Due::JoinDeadline { group } => self.complete_join(at, &group).await,
            Due::SessionsExpired { group, members } => {
                tracing::info!(group, ?members, "group member sessions expired");
                self.remove_members(at, &group, &members, now).await;
            }
            Due::RevocationExpired { group, member } => {
                tracing::info!(group, member, "a member did not revoke its partitions in time; removed");
                self.remove_members(at, &group, &[member], now).await;
            }
            Due::SyncDeadline { group } => {
                // The leader never brought the assignment: everyone rejoins.
                let _ = self.with_partition(at, |partition, live| {
                    let (membership, _) = Self::committed(partition, &group);
                    let live_group = live.group(&group, Some(&membership), now);
                    live_group.sync_deadline_ms = None;
                    let rebalance_ms = membership.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
                    live_group.phase = Phase::Preparing {
                        deadline_ms: now + i64::from(rebalance_ms),
                        joined: BTreeMap::new(),
                        expected: membership.members.keys().cloned().collect(),
                        protocol_type: membership.protocol_type.clone(),
                    };
                    for (_, reply) in partition.syncs.remove(&group).unwrap_or_default() {
                        let _ =
                            reply.send(Err(Refusal::new(ErrorCode::REBALANCE_IN_PROGRESS, "the leader did not assign in time; rejoin")));
                    }
                });
            }
        }
    }

    async fn remove_members(self: &Arc<Self>, at: Located, group: &str, members: &[String], now: i64) {
        let Ok(writer) = self.writer(at, group) else { return };
        {
            let _guard = writer.lock().await;
            let next = self.with_partition(at, |partition, live| {
                let (membership, base_index) = Self::committed(partition, group);
                let present: Vec<String> = members.iter().filter(|m| membership.members.contains_key(*m)).cloned().collect();
                if present.is_empty() {
                    return None;
                }
                match membership.kind {
                    Some(GroupKind::Consumer) => {
                        let mut next = membership.clone();
                        for member in &present {
                            consumer::remove_member(&mut next, member);
                        }
                        Some((next, base_index))
                    }
                    _ => {
                        let live_group = live.group(group, Some(&membership), now);
                        let mut phase = std::mem::take(&mut live_group.phase);
                        let (next, _) = classic::leave(&membership, &mut phase, &present, now);
                        live.group(group, Some(&membership), now).phase = phase;
                        Some((next, base_index))
                    }
                }
            });
            if let Ok(Some((next, base_index))) = next {
                if let Err(refusal) = self.write_membership(at, group, base_index, &next).await {
                    tracing::debug!(group, ?refusal, "removing expired members failed; retried on the next tick");
                }
            }
        }
        self.complete_join(at, group).await;
    }

    /// Writes a snapshot of the partition's table when enough was written since the last one.
    async fn maybe_snapshot(&self, at: Located) {
        let snapshot_bytes_min = self.settings().snapshot_bytes_min;
        let snapshot = self.with_partition(at, |partition, _| {
            if partition.snapshot_writing || !partition.table.snapshot_due(snapshot_bytes_min) {
                return None;
            }
            partition.snapshot_writing = true;
            Some(partition.table.snapshot())
        });
        let Ok(Some(snapshot)) = snapshot else { return };
        let outcome = self.write(at, &snapshot).await;
        tracing::debug!(raft_group = at.raft_group, ?outcome, "coordinator snapshot");
        let mut applied = self.state.lock();
        if let Some(partition) = applied.coordinators.get_mut(&at.raft_group) {
            partition.snapshot_writing = false;
        }
    }

    /// Runs the timer until shutdown.
    pub async fn run_timer(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        let period = Duration::from_millis(u64::from(self.settings().timer_tick_ms));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.stopping() => return,
                _ = tokio::time::sleep(period) => {}
            }
            self.tick().await;
        }
    }

    /// The index below which retention may delete the segments of an offsets partition (its
    /// last applied snapshot; 0 before the first), or `None` for a raft group that is no
    /// offsets partition hosted here.
    pub fn retention_bound(&self, raft_group: GroupId) -> Option<u64> {
        self.state.lock().coordinators.get(&raft_group).map(|partition| partition.table.retention_bound())
    }
}

/// The protocol type whose member metadata and assignments are Kafka's ConsumerProtocol.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The partitions a classic member's assignment bytes give it. For protocol type
/// [`CONSUMER_PROTOCOL_TYPE`] they are a ConsumerProtocol Assignment (versions 0 to 3, and newer
/// ones read as Kafka does: their added trailing fields ignored), decoded with the client's
/// codec (`odradek_client::group::protocol`, so both sides read the same bytes the same way);
/// an error says why they are not one. Any other protocol type (Kafka Connect's, say) is opaque
/// to the coordinator: no partitions.
pub fn decode_assignment(protocol_type: &str, bytes: &[u8]) -> Result<Partitions, String> {
    if protocol_type != CONSUMER_PROTOCOL_TYPE {
        return Ok(Partitions::new());
    }
    let assignment = odradek_client::group::protocol::Assignment::decode(bytes).map_err(|error| error.to_string())?;
    let mut partitions = Partitions::new();
    for topic in assignment.partitions {
        if topic.topic.is_empty() {
            return Err("an assignment names a topic with an empty name".into());
        }
        for partition in topic.partitions {
            if !partitions.insert((topic.topic.clone(), partition)) {
                return Err(format!("the assignment names {}/{partition} twice", topic.topic));
            }
        }
    }
    Ok(partitions)
}
