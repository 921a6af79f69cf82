//! The classic group member (Kafka's JoinGroup / SyncGroup / Heartbeat / LeaveGroup), sans-IO.
//!
//! Owns: the member id, the generation, the chosen assignor, the partitions the consumer applied
//! (`owned`), and the phase: `Unjoined → Joining → [Assigning →] Syncing → Stable`, back to
//! `Unjoined` on a rebalance, to `Left` or `Failed` at the end.
//!
//! Rebalance protocol: cooperative when every offered assignor is (cooperative-sticky alone),
//! eager otherwise — so Kafka's default list `[range, cooperative-sticky]` is eager, as in
//! Kafka's consumer. Eager: every owned partition is revoked (and applied) before JoinGroup.
//! Cooperative: the member joins with what it owns, and after SyncGroup revokes only what it
//! lost, then rejoins at once so the group can hand those partitions over.
//!
//! Invariants:
//! - At most one request in flight; a JoinGroup is only sent once every queued change is
//!   applied, so the owned partitions it reports are the consumer's.
//! - A partition is only added to `owned` by an Assigned change the consumer applied, and only
//!   removed by an applied Revoked or Lost change.
//! - A generation error or unknown member id (or a session that lapsed without an acknowledged
//!   heartbeat) loses every owned partition and resets the generation before anything else.
//! - `commit_identity` is `None` while the member has no generation.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, Assignor, MemberInput};
use super::member::{
    checked, triage, AssignmentChange, ChangeKind, Changes, CommitIdentity, GroupMember, MemberConfig, RetryBackoff, Step, Triage,
};
use super::protocol::{self, Subscription, TopicPartitions};
use super::TopicPartition;
use crate::error::ClientError;
use crate::wire::proto::{
    HeartbeatRequest, JoinGroupMember, JoinGroupRequest, JoinProtocol, LeaveGroupRequest, LeavingMember, Request_oneof_body as RequestBody,
    Response, Response_oneof_body as ResponseBody, SyncAssignment, SyncGroupRequest,
};

/// The protocol type of consumer groups, as Kafka names it.
pub const PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug)]
enum Phase {
    /// Not in a generation; joins once changes are applied (and, eager, everything revoked).
    Unjoined,
    Joining,
    /// The leader needs partition counts before it can assign.
    Assigning(Vec<JoinGroupMember>),
    /// SyncGroup to send, with the leader's assignments (empty for followers).
    ToSync(Vec<SyncAssignment>),
    Syncing,
    Stable,
    Leaving,
    Left,
    Failed(ClientError),
}

/// What is in flight, and since when.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    sent_ms: u64,
    /// A LeaveGroup sent because the application stopped polling (the member then rejoins).
    leave_for_poll_timeout: bool,
}

/// A classic group member; see the module docs.
#[derive(Debug)]
pub struct ClassicMember {
    config: MemberConfig,
    cooperative: bool,
    subscription: BTreeSet<String>,
    member_id: String,
    generation: i32,
    assignor: Option<Assignor>,
    leader: bool,
    /// Partition counts the leader assigned with, to notice when they change.
    counts_assigned: BTreeMap<String, u32>,
    /// Every member's topics, as the leader last saw them.
    group_topics: BTreeSet<String>,
    owned: BTreeSet<TopicPartition>,
    phase: Phase,
    /// A rejoin is due once the phase allows it.
    rejoin: bool,
    changes: Changes,
    in_flight: Option<InFlight>,
    backoff: RetryBackoff,
    retry_at_ms: u64,
    heartbeat_next_ms: u64,
    /// Send time of the last acknowledged heartbeat (or SyncGroup).
    heartbeat_ok_ms: u64,
    poll_ms: u64,
    leaving: bool,
}

impl ClassicMember {
    /// A member that will join at its first step.
    pub fn new(config: MemberConfig, subscription: BTreeSet<String>, now_ms: u64) -> Result<ClassicMember, ClientError> {
        config.validate()?;
        if config.assignors.is_empty() {
            return Err(ClientError::InvalidArgument("a classic group member needs at least one assignor".into()));
        }
        let cooperative = config.assignors.iter().all(|assignor| assignor.is_cooperative());
        let backoff = RetryBackoff::new(config.retry_backoff_ms, config.retry_backoff_max_ms);
        Ok(ClassicMember {
            config,
            cooperative,
            subscription,
            member_id: String::new(),
            generation: -1,
            assignor: None,
            leader: false,
            counts_assigned: BTreeMap::new(),
            group_topics: BTreeSet::new(),
            owned: BTreeSet::new(),
            phase: Phase::Unjoined,
            rejoin: false,
            changes: Changes::default(),
            in_flight: None,
            backoff,
            retry_at_ms: 0,
            heartbeat_next_ms: 0,
            heartbeat_ok_ms: now_ms,
            poll_ms: now_ms,
            leaving: false,
        })
    }

    /// True when the group rebalances incrementally for this member.
    pub fn is_cooperative(&self) -> bool {
        self.cooperative
    }

    /// The generation, -1 outside one.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// True when this member is the group's leader in the current generation.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    fn send(&mut self, now_ms: u64, body: RequestBody) -> Step {
        assert!(self.in_flight.is_none(), "one request at a time");
        self.in_flight = Some(InFlight { sent_ms: now_ms, leave_for_poll_timeout: false });
        Step::Send(body)
    }

    fn poll_expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.poll_ms) > self.config.max_poll_interval_ms
    }

    /// Every owned partition is lost; the generation (and with `forget_id`, the member id) goes.
    fn lose(&mut self, forget_id: bool) {
        self.changes.push_loss(&self.owned, self.generation, &self.member_id);
        self.generation = -1;
        self.leader = false;
        if forget_id {
            self.member_id.clear();
        }
        self.phase = Phase::Unjoined;
        self.rejoin = false;
    }

    fn retry_later(&mut self, now_ms: u64) {
        self.retry_at_ms = now_ms + self.backoff.next_ms();
    }

    fn fail(&mut self, error: ClientError) {
        tracing::warn!(group = %self.config.group_id, %error, "classic group member stops");
        self.changes.push_loss(&self.owned, self.generation, &self.member_id);
        self.generation = -1;
        self.phase = Phase::Failed(error);
    }

    fn join_request(&self) -> Result<RequestBody, ClientError> {
        let owned = if self.cooperative { to_topic_partitions(&self.owned) } else { Vec::new() };
        let subscription = Subscription {
            topics: self.subscription.iter().cloned().collect(),
            owned_partitions: owned,
            generation_id: self.generation,
            ..Subscription::default()
        };
        let metadata = subscription.encode().map_err(|error| ClientError::InvalidArgument(format!("subscription: {error}")))?;
        let mut request = JoinGroupRequest::new();
        request.group = self.config.group_id.clone();
        request.member_id = self.member_id.clone();
        request.group_instance_id = self.config.group_instance_id.clone().unwrap_or_default();
        request.session_timeout_ms = self.config.session_timeout_ms as u32;
        request.rebalance_timeout_ms = self.config.max_poll_interval_ms as u32;
        request.protocol_type = PROTOCOL_TYPE.to_string();
        request.client_id = self.config.client_id.clone();
        request.protocols = self
            .config
            .assignors
            .iter()
            .map(|assignor| {
                let mut protocol = JoinProtocol::new();
                protocol.name = assignor.name().to_string();
                protocol.metadata = metadata.clone();
                protocol
            })
            .collect::<Vec<_>>()
            .into();
        Ok(RequestBody::join_group(request))
    }

    fn step_unjoined(&mut self, now_ms: u64) -> Step {
        if !self.cooperative && !self.owned.is_empty() {
            // Eager: give everything back before joining (applied before the join goes out).
            self.changes.push(ChangeKind::Revoked, self.owned.clone(), self.generation, &self.member_id);
            return Step::Wait(None);
        }
        if self.poll_expired(now_ms) {
            return Step::Wait(None); // joins again once the application polls
        }
        if now_ms < self.retry_at_ms {
            return Step::Wait(Some(self.retry_at_ms));
        }
        match self.join_request() {
            Ok(body) => {
                self.phase = Phase::Joining;
                self.rejoin = false;
                self.send(now_ms, body)
            }
            Err(error) => {
                self.fail(error);
                Step::Wait(None)
            }
        }
    }

    fn step_stable(&mut self, now_ms: u64) -> Step {
        let session_end_ms = self.heartbeat_ok_ms + self.config.session_timeout_ms;
        if now_ms >= session_end_ms {
            tracing::info!(group = %self.config.group_id, member = %self.member_id, "no acknowledged heartbeat for a session: partitions lost");
            self.lose(false);
            return Step::Wait(None);
        }
        if self.rejoin && self.changes.is_empty() {
            self.phase = Phase::Unjoined;
            return self.step_unjoined(now_ms);
        }
        let due_ms = self.heartbeat_next_ms.max(self.retry_at_ms);
        if now_ms < due_ms {
            return Step::Wait(Some(due_ms.min(session_end_ms)));
        }
        let mut request = HeartbeatRequest::new();
        request.group = self.config.group_id.clone();
        request.generation = self.generation;
        request.member_id = self.member_id.clone();
        request.group_instance_id = self.config.group_instance_id.clone().unwrap_or_default();
        self.send(now_ms, RequestBody::heartbeat(request))
    }

    fn leave_request(&self) -> RequestBody {
        let mut member = LeavingMember::new();
        member.member_id = self.member_id.clone();
        member.group_instance_id = self.config.group_instance_id.clone().unwrap_or_default();
        let mut request = LeaveGroupRequest::new();
        request.group = self.config.group_id.clone();
        request.members = vec![member].into();
        RequestBody::leave_group(request)
    }

    fn sync_request(&self, assignments: Vec<SyncAssignment>) -> RequestBody {
        let mut request = SyncGroupRequest::new();
        request.group = self.config.group_id.clone();
        request.generation = self.generation;
        request.member_id = self.member_id.clone();
        request.group_instance_id = self.config.group_instance_id.clone().unwrap_or_default();
        request.assignments = assignments.into();
        RequestBody::sync_group(request)
    }

    /// The leader's assignment, encoded per member.
    fn assign(&mut self, members: &[JoinGroupMember], counts: &BTreeMap<String, u32>) -> Result<Vec<SyncAssignment>, ClientError> {
        let assignor = self.assignor.expect("a leader knows the group's assignor");
        let inputs: BTreeMap<String, MemberInput> = members.iter().map(|member| (member.member_id.clone(), member_input(member))).collect();
        let assignment = assignor::assign(assignor, &inputs, counts);
        self.counts_assigned = counts.clone();
        assignment
            .into_iter()
            .map(|(member_id, partitions)| {
                let encoded = protocol::Assignment { partitions: to_topic_partitions(&partitions), ..protocol::Assignment::default() }
                    .encode()
                    .map_err(|error| ClientError::InvalidArgument(format!("assignment of {member_id}: {error}")))?;
                let mut sync = SyncAssignment::new();
                sync.member_id = member_id;
                sync.assignment = encoded;
                Ok(sync)
            })
            .collect()
    }

    fn on_join(&mut self, now_ms: u64, answer: Result<Response, ClientError>) {
        let response = match checked(answer) {
            Ok(response) => response,
            Err(error) => return self.on_error(now_ms, error),
        };
        let Some(ResponseBody::join_group(joined)) = response.body else {
            return self.fail(ClientError::Protocol("JoinGroup answered without a join".into()));
        };
        let Some(assignor) = Assignor::from_name(&joined.protocol_name).filter(|assignor| self.config.assignors.contains(assignor)) else {
            return self.fail(ClientError::Protocol(format!(
                "the group chose assignor {:?}, which this member did not offer",
                joined.protocol_name
            )));
        };
        self.backoff.reset();
        self.member_id = joined.member_id;
        self.generation = joined.generation;
        self.assignor = Some(assignor);
        self.leader = joined.leader == self.member_id;
        self.phase = if self.leader && !joined.skip_assignment {
            self.group_topics = joined.members.iter().flat_map(|member| member_input(member).topics).collect();
            Phase::Assigning(joined.members.into_vec())
        } else {
            Phase::ToSync(Vec::new())
        };
    }

    fn on_sync(&mut self, now_ms: u64, sent_ms: u64, answer: Result<Response, ClientError>) {
        let response = match checked(answer) {
            Ok(response) => response,
            Err(error) => return self.on_error(now_ms, error),
        };
        let Some(ResponseBody::sync_group(synced)) = response.body else {
            return self.fail(ClientError::Protocol("SyncGroup answered without an assignment".into()));
        };
        let assignment = match protocol::Assignment::decode(&synced.assignment) {
            Ok(assignment) => assignment,
            Err(error) => return self.fail(ClientError::Protocol(format!("undecodable assignment from the group's leader: {error}"))),
        };
        let assigned: BTreeSet<TopicPartition> = assignment
            .partitions
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.clone(), *partition)))
            .collect();
        let revoked: BTreeSet<TopicPartition> = self.owned.difference(&assigned).cloned().collect();
        let added: BTreeSet<TopicPartition> = assigned.difference(&self.owned).cloned().collect();
        assert!(self.cooperative || revoked.is_empty(), "an eager member revokes everything before it joins");
        self.rejoin = !revoked.is_empty();
        self.changes.push(ChangeKind::Revoked, revoked, self.generation, &self.member_id);
        self.changes.push(ChangeKind::Assigned, added, self.generation, &self.member_id);
        self.backoff.reset();
        self.phase = Phase::Stable;
        self.heartbeat_ok_ms = sent_ms;
        self.heartbeat_next_ms = now_ms + self.config.heartbeat_interval_ms;
    }

    fn on_heartbeat(&mut self, now_ms: u64, sent_ms: u64, answer: Result<Response, ClientError>) {
        match checked(answer) {
            Ok(_) => {
                self.backoff.reset();
                self.heartbeat_ok_ms = sent_ms;
                self.heartbeat_next_ms = sent_ms + self.config.heartbeat_interval_ms;
            }
            Err(error) => self.on_error(now_ms, error),
        }
    }

    fn on_error(&mut self, now_ms: u64, error: ClientError) {
        tracing::debug!(group = %self.config.group_id, member = %self.member_id, %error, phase = ?self.phase, "group request failed");
        match triage(&error) {
            Triage::Retry => {
                self.retry_later(now_ms);
                if !matches!(self.phase, Phase::Stable) {
                    // A join or sync whose outcome is unknown starts over (Kafka does the same).
                    self.phase = Phase::Unjoined;
                }
            }
            Triage::Rejoin => {
                self.rejoin = true;
                if !matches!(self.phase, Phase::Stable) {
                    self.phase = Phase::Unjoined;
                }
            }
            Triage::NewGeneration => self.lose(false),
            Triage::Fenced => self.lose(true),
            Triage::Fatal => self.fail(error),
        }
    }
}

fn member_input(member: &JoinGroupMember) -> MemberInput {
    match Subscription::decode(&member.metadata) {
        Ok(subscription) => MemberInput {
            group_instance_id: (!member.group_instance_id.is_empty()).then(|| member.group_instance_id.clone()),
            topics: subscription.topics.into_iter().collect(),
            owned: subscription
                .owned_partitions
                .iter()
                .flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.clone(), *partition)))
                .collect(),
            generation: subscription.generation_id,
        },
        Err(error) => {
            // A member whose subscription cannot be read gets nothing rather than stopping the
            // whole group's rebalance.
            tracing::warn!(member = %member.member_id, %error, "undecodable subscription; the member gets no partitions");
            MemberInput::default()
        }
    }
}

/// Groups partitions by topic, in order.
pub(crate) fn to_topic_partitions(partitions: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut topics: Vec<TopicPartitions> = Vec::new();
    for (topic, partition) in partitions {
        match topics.last_mut() {
            Some(last) if &last.topic == topic => last.partitions.push(*partition),
            _ => topics.push(TopicPartitions { topic: topic.clone(), partitions: vec![*partition] }),
        }
    }
    topics
}

/// The same grouping as the native protocol's `TopicPartitions` messages (OffsetFetch, the
/// consumer protocol's owned partitions).
pub(crate) fn to_wire_topic_partitions(partitions: &BTreeSet<TopicPartition>) -> Vec<crate::wire::proto::TopicPartitions> {
    to_topic_partitions(partitions)
        .into_iter()
        .map(|topic| {
            let mut wire = crate::wire::proto::TopicPartitions::new();
            wire.topic = topic.topic;
            wire.partitions = topic.partitions;
            wire
        })
        .collect()
}

impl GroupMember for ClassicMember {
    fn step(&mut self, now_ms: u64) -> Step {
        if self.in_flight.is_some() || matches!(self.phase, Phase::Left | Phase::Failed(_) | Phase::Leaving) {
            return Step::Wait(None);
        }
        if self.leaving {
            // Everything owned is revoked (and applied: offsets committed) before the member goes.
            if !self.changes.is_empty() {
                return Step::Wait(None);
            }
            if !self.owned.is_empty() {
                self.changes.push(ChangeKind::Revoked, self.owned.clone(), self.generation, &self.member_id);
                return Step::Wait(None);
            }
            // A static member leaves by letting its session lapse (its instance keeps its place).
            if self.member_id.is_empty() || self.config.group_instance_id.is_some() {
                self.phase = Phase::Left;
                return Step::Wait(None);
            }
            self.phase = Phase::Leaving;
            return self.send(now_ms, self.leave_request());
        }
        if self.poll_expired(now_ms) && self.generation >= 0 {
            tracing::info!(group = %self.config.group_id, member = %self.member_id, "no poll within the max poll interval: leaving the group");
            let dynamic = self.config.group_instance_id.is_none();
            let body = self.leave_request();
            self.lose(dynamic);
            if dynamic {
                let step = self.send(now_ms, body);
                self.in_flight.as_mut().expect("just sent").leave_for_poll_timeout = true;
                return step;
            }
            return Step::Wait(None);
        }
        if !self.changes.is_empty() && !matches!(self.phase, Phase::Stable) {
            return Step::Wait(None);
        }
        match std::mem::replace(&mut self.phase, Phase::Unjoined) {
            Phase::Unjoined => self.step_unjoined(now_ms),
            Phase::Stable => {
                self.phase = Phase::Stable;
                self.step_stable(now_ms)
            }
            Phase::Assigning(members) => {
                let topics = members.iter().flat_map(|member| member_input(member).topics).collect();
                self.phase = Phase::Assigning(members);
                Step::Metadata(topics)
            }
            Phase::ToSync(assignments) => {
                let body = self.sync_request(assignments);
                self.phase = Phase::Syncing;
                self.send(now_ms, body)
            }
            phase @ (Phase::Joining | Phase::Syncing | Phase::Leaving | Phase::Left | Phase::Failed(_)) => {
                unreachable!("{phase:?} has a request in flight or is final")
            }
        }
    }

    fn on_answer(&mut self, now_ms: u64, answer: Result<Response, ClientError>) {
        let in_flight = self.in_flight.take().expect("an answer to a request in flight");
        if in_flight.leave_for_poll_timeout {
            return; // whatever the answer, the member already counts itself out
        }
        match std::mem::replace(&mut self.phase, Phase::Unjoined) {
            Phase::Joining => self.on_join(now_ms, answer),
            Phase::Syncing => self.on_sync(now_ms, in_flight.sent_ms, answer),
            Phase::Stable => {
                self.phase = Phase::Stable;
                self.on_heartbeat(now_ms, in_flight.sent_ms, answer)
            }
            Phase::Leaving => {
                self.generation = -1;
                self.phase = Phase::Left;
            }
            phase => unreachable!("an answer in phase {phase:?}, which sends nothing"),
        }
    }

    fn on_metadata(&mut self, now_ms: u64, partition_counts: BTreeMap<String, u32>) {
        match std::mem::replace(&mut self.phase, Phase::Unjoined) {
            Phase::Assigning(members) => match self.assign(&members, &partition_counts) {
                Ok(assignments) => self.phase = Phase::ToSync(assignments),
                Err(error) => self.fail(error),
            },
            Phase::Stable => {
                self.phase = Phase::Stable;
                let watched: BTreeMap<String, u32> =
                    partition_counts.into_iter().filter(|(topic, _)| self.group_topics.contains(topic)).collect();
                if self.leader && watched != self.counts_assigned {
                    tracing::info!(group = %self.config.group_id, "partition counts changed: the leader rebalances");
                    self.rejoin = true;
                }
            }
            phase => self.phase = phase,
        }
        let _ = now_ms;
    }

    fn metadata_topics(&self) -> BTreeSet<String> {
        if self.leader {
            self.group_topics.clone()
        } else {
            BTreeSet::new()
        }
    }

    fn set_subscription(&mut self, topics: BTreeSet<String>) {
        if topics != self.subscription {
            self.subscription = topics;
            self.rejoin = true;
        }
    }

    fn polled(&mut self, now_ms: u64) {
        self.poll_ms = now_ms;
    }

    fn take_changes(&mut self) -> Vec<AssignmentChange> {
        self.changes.take()
    }

    fn changes_applied(&mut self, _now_ms: u64) {
        self.changes.applied(&mut self.owned);
    }

    fn leave(&mut self) {
        self.leaving = true;
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Left | Phase::Failed(_))
    }

    fn commit_identity(&self) -> Option<CommitIdentity> {
        (self.generation >= 0 && !self.member_id.is_empty())
            .then(|| CommitIdentity { member_id: self.member_id.clone(), epoch: self.generation })
    }

    fn owned(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    fn failure(&self) -> Option<&ClientError> {
        match &self.phase {
            Phase::Failed(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
