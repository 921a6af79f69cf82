//! The consumer group protocol member (KIP-848: ConsumerGroupHeartbeat), sans-IO. The
//! coordinator assigns; the member heartbeats with its member epoch and what it owns, and
//! reconciles towards the assignment each answer carries.
//!
//! Owns: the member id (chosen by the client, see [`ConsumerMember::with_member_id`]), the
//! member epoch (0 while joining), the latest assignment the
//! coordinator sent (`target`), the partitions the consumer applied (`owned`), and the timers.
//!
//! Reconciliation: when `target` differs from `owned` and no change is pending, the member queues
//! a revocation of `owned − target` and then an assignment of `target − owned` (callbacks run in
//! that order, revocations first), and once the consumer applied them it heartbeats at once with
//! its new `owned`. The coordinator gives a partition to its next owner only after the previous
//! owner's heartbeat stopped listing it, so a partition is never read by two members of a group.
//!
//! Invariants:
//! - At most one request in flight. Every heartbeat carries the full subscription and every
//!   partition the member may be reading: those the consumer applied, those an unapplied change
//!   assigns, and those of the latest assignment not reconciled yet (never fewer, so the
//!   coordinator cannot hand one of them to another member meanwhile); any one answer suffices
//!   to bring the coordinator up to date.
//! - A member joins (epoch 0) owning nothing: a fenced member first has its partitions lost
//!   (applied) and then rejoins.
//! - FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID (or a session that lapsed without an acknowledged
//!   heartbeat) loses every owned partition.
//! - `commit_identity` is `None` while the epoch is 0.
//!
//! Leaving: epoch -1; a static member leaves with -2, which keeps its assignment for its
//! instance id until the session times out.

use std::collections::{BTreeMap, BTreeSet};

use super::member::{
    checked, triage, AssignmentChange, ChangeKind, Changes, CommitIdentity, GroupMember, MemberConfig, RetryBackoff, Step, Triage,
};
use super::TopicPartition;
use crate::error::ClientError;
use crate::wire::proto::{ConsumerGroupHeartbeatRequest, Request_oneof_body as RequestBody, Response, Response_oneof_body as ResponseBody};

/// The longest member id a coordinator accepts (the server's `MEMBER_ID_BYTES_MAX`).
pub const MEMBER_ID_BYTES_MAX: usize = 255;
/// The member epoch that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member leaves with, keeping its assignment for a quick return.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug)]
enum Phase {
    /// Heartbeating (epoch 0 while joining).
    Active,
    /// The application stopped polling: the member left, and rejoins when it polls again.
    Stale,
    Left,
    Failed(ClientError),
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    sent_ms: u64,
    epoch_sent: i32,
}

/// A consumer-protocol group member; see the module docs.
#[derive(Debug)]
pub struct ConsumerMember {
    config: MemberConfig,
    subscription: BTreeSet<String>,
    /// The regular expression the coordinator resolves (KIP-848 SubscribedTopicRegex): `None`
    /// while the member never had one (the field is not sent), `Some("")` once dropped.
    pattern: Option<String>,
    member_id: String,
    epoch: i32,
    heartbeat_interval_ms: u64,
    /// The latest assignment the coordinator sent, and its epoch.
    target: Option<(i32, BTreeSet<TopicPartition>)>,
    owned: BTreeSet<TopicPartition>,
    phase: Phase,
    changes: Changes,
    in_flight: Option<InFlight>,
    /// Something changed that the coordinator should hear about now, not at the next interval.
    report_now: bool,
    backoff: RetryBackoff,
    retry_at_ms: u64,
    heartbeat_next_ms: u64,
    heartbeat_ok_ms: u64,
    poll_ms: u64,
    leaving: bool,
}

impl ConsumerMember {
    /// A member that will join at its first step.
    pub fn new(config: MemberConfig, subscription: BTreeSet<String>, now_ms: u64) -> Result<ConsumerMember, ClientError> {
        config.validate()?;
        let backoff = RetryBackoff::new(config.retry_backoff_ms, config.retry_backoff_max_ms);
        Ok(ConsumerMember {
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            config,
            subscription,
            pattern: None,
            member_id: String::new(),
            epoch: 0,
            target: None,
            owned: BTreeSet::new(),
            phase: Phase::Active,
            changes: Changes::default(),
            in_flight: None,
            report_now: true,
            backoff,
            retry_at_ms: 0,
            heartbeat_next_ms: 0,
            heartbeat_ok_ms: now_ms,
            poll_ms: now_ms,
            leaving: false,
        })
    }

    /// The member id to join with, chosen by the client (Kafka 4, KIP-1082): every join — the
    /// first, one sent again after its answer was lost, a rejoin after a fence — carries it, so
    /// the coordinator never takes one consumer for two members. Without one (empty), the
    /// coordinator gives an id in its first answer. At most [`MEMBER_ID_BYTES_MAX`] bytes.
    pub fn with_member_id(mut self, member_id: String) -> Result<ConsumerMember, ClientError> {
        if member_id.len() > MEMBER_ID_BYTES_MAX || member_id.chars().any(char::is_control) {
            return Err(ClientError::InvalidArgument(format!(
                "member id {member_id:?}: at most {MEMBER_ID_BYTES_MAX} bytes, no control characters"
            )));
        }
        assert!(self.epoch == 0 && self.in_flight.is_none(), "a member id is chosen before the first join");
        self.member_id = member_id;
        Ok(self)
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The member epoch: 0 while joining.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    fn send(&mut self, now_ms: u64, request: ConsumerGroupHeartbeatRequest) -> Step {
        assert!(self.in_flight.is_none(), "one request at a time");
        self.in_flight = Some(InFlight { sent_ms: now_ms, epoch_sent: request.member_epoch });
        Step::Send(RequestBody::consumer_group_heartbeat(request))
    }

    fn heartbeat(&self, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        let mut request = ConsumerGroupHeartbeatRequest::new();
        request.group = self.config.group_id.clone();
        request.member_id = self.member_id.clone();
        request.member_epoch = epoch;
        request.group_instance_id = self.config.group_instance_id.clone().unwrap_or_default();
        request.client_id = self.config.client_id.clone();
        if epoch >= 0 {
            request.rebalance_timeout_ms = self.config.max_poll_interval_ms as u32;
            request.subscription_set = true;
            request.subscribed_topics = self.subscription.iter().cloned().collect::<Vec<_>>().into();
            if let Some(pattern) = &self.pattern {
                request.regex_set = true;
                request.subscribed_regex = pattern.clone();
            }
            request.server_assignor = self.config.server_assignor.clone().unwrap_or_default();
            request.owned_set = true;
            request.owned = super::classic::to_wire_topic_partitions(&self.reported_owned()).into();
        }
        request
    }

    /// What a heartbeat reports as owned: the applied partitions, those an unapplied change
    /// assigns, and those of the latest assignment not reconciled yet — every partition the
    /// consumer may be reading by the time the coordinator reads the report. Reporting a
    /// partition too many only makes the coordinator wait for its revocation; reporting one too
    /// few could let it hand the partition to another member while this one starts on it.
    fn reported_owned(&self) -> BTreeSet<TopicPartition> {
        let mut reported = self.changes.owned_or_pending(&self.owned);
        if let Some((_, target)) = &self.target {
            reported.extend(target.iter().cloned());
        }
        reported
    }

    fn leave_epoch(&self) -> i32 {
        if self.config.group_instance_id.is_some() {
            STATIC_LEAVE_EPOCH
        } else {
            LEAVE_EPOCH
        }
    }

    /// Every owned partition is lost; the member rejoins at epoch 0 (same id) once that is applied.
    fn lose(&mut self) {
        self.changes.push_loss(&self.owned, self.epoch, &self.member_id);
        self.epoch = 0;
        self.target = None;
        self.report_now = true;
    }

    fn fail(&mut self, error: ClientError) {
        tracing::warn!(group = %self.config.group_id, %error, "group member stops");
        self.lose();
        self.phase = Phase::Failed(error);
    }

    /// Queues the changes that bring `owned` to `target`, if none are pending.
    fn reconcile(&mut self) {
        if !self.changes.is_empty() || self.leaving {
            return;
        }
        let Some((epoch, target)) = &self.target else {
            return;
        };
        let revoked: BTreeSet<TopicPartition> = self.owned.difference(target).cloned().collect();
        let added: BTreeSet<TopicPartition> = target.difference(&self.owned).cloned().collect();
        let epoch = *epoch;
        self.changes.push(ChangeKind::Revoked, revoked, epoch, &self.member_id);
        self.changes.push(ChangeKind::Assigned, added, epoch, &self.member_id);
    }

    fn on_heartbeat(&mut self, now_ms: u64, in_flight: InFlight, answer: Result<Response, ClientError>) {
        let response = match checked(answer) {
            Ok(response) => response,
            Err(error) => return self.on_error(now_ms, error),
        };
        let Some(ResponseBody::consumer_group_heartbeat(answer)) = response.body else {
            return self.fail(ClientError::Protocol("ConsumerGroupHeartbeat answered without a body".into()));
        };
        if answer.member_epoch <= 0 || (!self.member_id.is_empty() && !answer.member_id.is_empty() && answer.member_id != self.member_id) {
            return self.fail(ClientError::Protocol(format!(
                "heartbeat answer names member {:?} at epoch {} (this member is {:?})",
                answer.member_id, answer.member_epoch, self.member_id
            )));
        }
        if !answer.member_id.is_empty() {
            self.member_id = answer.member_id.clone();
        }
        self.backoff.reset();
        self.epoch = answer.member_epoch;
        if answer.heartbeat_interval_ms > 0 {
            self.heartbeat_interval_ms = u64::from(answer.heartbeat_interval_ms);
        }
        self.heartbeat_ok_ms = in_flight.sent_ms;
        self.heartbeat_next_ms = now_ms + self.heartbeat_interval_ms;
        let target: BTreeSet<TopicPartition> =
            answer.assignment.iter().flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.clone(), *partition))).collect();
        self.target = Some((self.epoch, target));
        self.reconcile();
    }

    fn on_error(&mut self, now_ms: u64, error: ClientError) {
        tracing::debug!(group = %self.config.group_id, member = %self.member_id, epoch = self.epoch, %error, "heartbeat failed");
        match triage(&error) {
            Triage::Retry | Triage::Rejoin => self.retry_at_ms = now_ms + self.backoff.next_ms(),
            Triage::NewGeneration | Triage::Fenced => self.lose(),
            Triage::Fatal => self.fail(error),
        }
    }
}

impl GroupMember for ConsumerMember {
    fn step(&mut self, now_ms: u64) -> Step {
        if self.in_flight.is_some() || matches!(self.phase, Phase::Left | Phase::Failed(_)) {
            return Step::Wait(None);
        }
        if self.leaving {
            if !self.changes.is_empty() {
                return Step::Wait(None);
            }
            if !self.owned.is_empty() {
                self.target = None;
                self.changes.push(ChangeKind::Revoked, self.owned.clone(), self.epoch, &self.member_id);
                return Step::Wait(None);
            }
            if self.epoch == 0 || matches!(self.phase, Phase::Stale) {
                self.phase = Phase::Left;
                return Step::Wait(None);
            }
            return self.send(now_ms, self.heartbeat(self.leave_epoch()));
        }
        let poll_expired = now_ms.saturating_sub(self.poll_ms) > self.config.max_poll_interval_ms;
        if matches!(self.phase, Phase::Stale) {
            if poll_expired || !self.changes.is_empty() {
                return Step::Wait(None);
            }
            self.phase = Phase::Active;
        }
        if poll_expired {
            tracing::info!(group = %self.config.group_id, member = %self.member_id, "no poll within the max poll interval: leaving the group");
            let leave = self.heartbeat(self.leave_epoch());
            let joined = self.epoch > 0;
            self.lose();
            self.phase = Phase::Stale;
            return if joined { self.send(now_ms, leave) } else { Step::Wait(None) };
        }
        if self.epoch == 0 && !self.changes.is_empty() {
            return Step::Wait(None); // rejoins owning nothing, once the loss is applied
        }
        let session_end_ms = self.heartbeat_ok_ms + self.config.session_timeout_ms;
        if self.epoch > 0 && now_ms >= session_end_ms {
            tracing::info!(group = %self.config.group_id, member = %self.member_id, "no acknowledged heartbeat for a session: partitions lost");
            self.lose();
            return Step::Wait(None);
        }
        let due_ms = if self.report_now { self.retry_at_ms } else { self.heartbeat_next_ms.max(self.retry_at_ms) };
        if now_ms < due_ms {
            let wake_ms = if self.epoch > 0 { due_ms.min(session_end_ms) } else { due_ms };
            return Step::Wait(Some(wake_ms.min(self.poll_ms + self.config.max_poll_interval_ms + 1)));
        }
        assert!(self.epoch > 0 || self.owned.is_empty(), "a member joins owning nothing");
        self.report_now = false;
        self.send(now_ms, self.heartbeat(self.epoch))
    }

    fn on_answer(&mut self, now_ms: u64, answer: Result<Response, ClientError>) {
        let in_flight = self.in_flight.take().expect("an answer to a request in flight");
        if in_flight.epoch_sent < 0 {
            // A leave, answered or not: the member is out either way.
            if self.leaving {
                self.phase = Phase::Left;
            }
            return;
        }
        if !matches!(self.phase, Phase::Active) {
            return;
        }
        self.on_heartbeat(now_ms, in_flight, answer);
    }

    fn on_metadata(&mut self, _now_ms: u64, _partition_counts: BTreeMap<String, u32>) {
        // The coordinator assigns and watches partition counts itself.
    }

    fn metadata_topics(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn set_subscription(&mut self, topics: BTreeSet<String>) {
        if topics != self.subscription {
            self.subscription = topics;
            self.report_now = true;
        }
    }

    fn set_pattern(&mut self, pattern: &str) -> bool {
        if self.pattern.as_deref() != Some(pattern) && !(self.pattern.is_none() && pattern.is_empty()) {
            self.pattern = Some(pattern.to_string());
            self.report_now = true;
        }
        true
    }

    fn polled(&mut self, now_ms: u64) {
        self.poll_ms = now_ms;
    }

    fn take_changes(&mut self) -> Vec<AssignmentChange> {
        self.changes.take()
    }

    fn changes_applied(&mut self, _now_ms: u64) {
        self.changes.applied(&mut self.owned);
        if self.epoch > 0 {
            self.report_now = true; // tell the coordinator what the member owns now
        }
        self.reconcile();
    }

    fn leave(&mut self) {
        self.leaving = true;
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Left | Phase::Failed(_))
    }

    fn commit_identity(&self) -> Option<CommitIdentity> {
        (self.epoch > 0).then(|| CommitIdentity { member_id: self.member_id.clone(), epoch: self.epoch })
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
