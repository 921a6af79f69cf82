//! What both member state machines ([`super::classic`] and [`super::kip848`]) share: their
//! settings, their outputs (a [`Step`] to take, [`AssignmentChange`]s to apply), the
//! [`GroupMember`] interface the IO driver uses, and the error triage both follow.
//!
//! The machines are sans-IO: time comes in as milliseconds on a monotonic clock the caller
//! owns (`now_ms`), answers come in as `Result<Response, ClientError>`, and requests go out as
//! wire bodies. Nothing here sleeps, spawns or reads a clock.
//!
//! The change protocol between a machine and the consumer that applies its changes:
//! - the machine queues changes (assigned / revoked / lost), in the order they must be applied;
//! - the consumer takes them ([`GroupMember::take_changes`]), runs its callbacks and moves its
//!   positions, then reports them applied ([`GroupMember::changes_applied`]); a consumer
//!   interrupted in between (a cancelled poll) is handed the same changes again, so applying
//!   one twice must do no harm;
//! - only then does the machine count the partitions as owned or released, so a partition is
//!   never reported released (in a JoinGroup's owned list, a consumer heartbeat's `owned`) before
//!   the consumer stopped reading it, and never reported owned before it started.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::Assignor;
use super::TopicPartition;
use crate::error::ClientError;
use crate::wire::proto::{ErrorCode, Request_oneof_body as RequestBody, Response};

/// Settings a member machine runs with, in milliseconds.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub group_id: String,
    /// A static member's stable id; `None` for a dynamic member.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// Classic: sent in JoinGroup. Both: a member that heard nothing from its coordinator for this
    /// long (counted from the send time of its last acknowledged heartbeat, so never later than
    /// the coordinator's own count) takes its partitions as lost.
    pub session_timeout_ms: u64,
    /// Classic: the heartbeat period. Consumer protocol: the period until the coordinator names one.
    pub heartbeat_interval_ms: u64,
    /// The longest the application may go without polling before the member leaves the group;
    /// also the rebalance timeout sent to the coordinator.
    pub max_poll_interval_ms: u64,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Classic: the assignors offered, in order of preference.
    pub assignors: Vec<Assignor>,
    /// Consumer protocol: the server-side assignor asked for; `None` for the coordinator's default.
    pub server_assignor: Option<String>,
}

impl MemberConfig {
    /// Checks the settings once, so the machines can rely on them.
    pub fn validate(&self) -> Result<(), ClientError> {
        let problem = if self.group_id.is_empty() {
            Some("an empty group id".to_string())
        } else if self.group_instance_id.as_deref() == Some("") {
            Some("an empty group instance id".to_string())
        } else if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms {
            Some(format!("heartbeat interval {} ms, session timeout {} ms", self.heartbeat_interval_ms, self.session_timeout_ms))
        } else if self.max_poll_interval_ms == 0 || self.max_poll_interval_ms > u64::from(u32::MAX) {
            Some(format!("max poll interval {} ms", self.max_poll_interval_ms))
        } else if self.session_timeout_ms > u64::from(u32::MAX) {
            Some(format!("session timeout {} ms", self.session_timeout_ms))
        } else if self.retry_backoff_ms == 0 || self.retry_backoff_ms > self.retry_backoff_max_ms {
            Some(format!("retry backoff {} ms up to {} ms", self.retry_backoff_ms, self.retry_backoff_max_ms))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ClientError::InvalidArgument(format!("group settings: {problem}"))),
            None => Ok(()),
        }
    }
}

/// What a change does to the partitions the consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Start reading these (from the group's committed offsets).
    Assigned,
    /// Stop reading these, in order: the member may commit their offsets first.
    Revoked,
    /// Stop reading these at once: someone else may already own them, so do not commit.
    Lost,
}

/// One change of the member's assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentChange {
    pub kind: ChangeKind,
    pub partitions: BTreeSet<TopicPartition>,
    /// Classic: the generation; consumer protocol: the member epoch (for `Lost`, the one lost).
    pub epoch: i32,
    pub member_id: String,
}

/// What the IO driver should do next for a member.
// One Step at a time per member, returned and consumed at once (never stored in bulk): boxing
// the request would cost an allocation per heartbeat and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this to the group's coordinator and hand the outcome to
    /// [`GroupMember::on_answer`]; nothing else is sent for this member meanwhile.
    Send(RequestBody),
    /// Fetch the partition counts of these topics and hand them to
    /// [`GroupMember::on_metadata`] (a classic leader about to assign).
    Metadata(BTreeSet<String>),
    /// Nothing to do before this time (ms), or before some other input arrives; `None`: only an
    /// input can make work.
    Wait(Option<u64>),
}

/// The id and epoch (classic: generation) a commit is sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitIdentity {
    pub member_id: String,
    pub epoch: i32,
}

/// A member machine, as the IO driver and the consumer use it.
pub trait GroupMember: Send + std::fmt::Debug {
    /// The next thing to do at `now_ms`.
    fn step(&mut self, now_ms: u64) -> Step;
    /// The outcome of the request the last [`Step::Send`] asked for.
    fn on_answer(&mut self, now_ms: u64, answer: Result<Response, ClientError>);
    /// Partition counts of the topics the last [`Step::Metadata`] named (or of
    /// [`metadata_topics`](Self::metadata_topics), refreshed); missing topics do not exist.
    fn on_metadata(&mut self, now_ms: u64, partition_counts: BTreeMap<String, u32>);
    /// Topics whose partition counts this member watches (a classic leader: every member's).
    fn metadata_topics(&self) -> BTreeSet<String>;
    /// Replaces the subscription; the member tells the group at its next step.
    fn set_subscription(&mut self, topics: BTreeSet<String>);
    /// Subscribes to the topics whose whole names match `pattern` besides those of
    /// [`set_subscription`](Self::set_subscription), resolved by the coordinator ("" drops it).
    /// False when the protocol has no such field (classic): the caller resolves the pattern.
    fn set_pattern(&mut self, pattern: &str) -> bool {
        let _ = pattern;
        false
    }
    /// The application polled: the member is alive (see `max_poll_interval_ms`).
    fn polled(&mut self, now_ms: u64);
    /// Hands out every change not applied yet, in order (those handed out before included: a
    /// caller interrupted while applying them applies them again); the caller applies them,
    /// then calls [`changes_applied`](Self::changes_applied).
    fn take_changes(&mut self) -> Vec<AssignmentChange>;
    /// The changes last taken are applied.
    fn changes_applied(&mut self, now_ms: u64);
    /// Leave the group at the next step (a static classic member just stops).
    fn leave(&mut self);
    /// True once the member has left, or failed.
    fn is_done(&self) -> bool;
    /// The id and epoch to commit with, if the member is in a generation now.
    fn commit_identity(&self) -> Option<CommitIdentity>;
    /// The partitions the consumer applied as owned.
    fn owned(&self) -> &BTreeSet<TopicPartition>;
    /// A fatal error: the member stopped and will not rejoin.
    fn failure(&self) -> Option<&ClientError>;
}

/// How a member reacts to a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Triage {
    /// The coordinator is unreachable, moved or busy, or the outcome is unknown: the same
    /// request may work later (after the driver found the coordinator again).
    Retry,
    /// Classic: the group is rebalancing: rejoin, keeping the generation's partitions.
    Rejoin,
    /// Classic ILLEGAL_GENERATION: the generation is gone, and with it the partitions.
    NewGeneration,
    /// UNKNOWN_MEMBER_ID (and the consumer protocol's FENCED_MEMBER_EPOCH): the member is
    /// gone, and with it the partitions.
    Fenced,
    /// Nothing will change by retrying: stop, with this error.
    Fatal,
}

pub(crate) fn triage(error: &ClientError) -> Triage {
    match error.code() {
        Some(ErrorCode::REBALANCE_IN_PROGRESS) => Triage::Rejoin,
        Some(ErrorCode::ILLEGAL_GENERATION) => Triage::NewGeneration,
        Some(ErrorCode::UNKNOWN_MEMBER_ID | ErrorCode::FENCED_MEMBER_EPOCH) => Triage::Fenced,
        // A static member whose previous incarnation is still in the group: wait for it to go.
        Some(ErrorCode::UNRELEASED_INSTANCE_ID) => Triage::Retry,
        Some(code) if code.is_retriable() => Triage::Retry,
        Some(_) => Triage::Fatal,
        // A connection failure or a timeout: unknown outcome, but a heartbeat or join may be
        // repeated safely.
        None => match error {
            ClientError::InvalidArgument(_) | ClientError::Closed => Triage::Fatal,
            _ => Triage::Retry,
        },
    }
}

/// The answer as a result: a server error code becomes a [`ClientError`].
pub(crate) fn checked(answer: Result<Response, ClientError>) -> Result<Response, ClientError> {
    crate::cluster::check(answer?)
}

/// Capped exponential backoff in milliseconds, for the machines' retry times.
#[derive(Debug, Clone)]
pub(crate) struct RetryBackoff {
    base_ms: u64,
    max_ms: u64,
    attempt: u32,
}

impl RetryBackoff {
    pub(crate) fn new(base_ms: u64, max_ms: u64) -> RetryBackoff {
        assert!(0 < base_ms && base_ms <= max_ms, "backoff {base_ms} ms up to {max_ms} ms");
        RetryBackoff { base_ms, max_ms, attempt: 0 }
    }

    pub(crate) fn next_ms(&mut self) -> u64 {
        let delay = self.base_ms.saturating_mul(1 << self.attempt.min(16)).min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The pending-change queue both machines keep (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    queued: Vec<AssignmentChange>,
    taken: Vec<AssignmentChange>,
}

/// Most changes queued at once: a rebalance queues at most a revocation and an assignment (or
/// one loss) before it waits for them to be applied.
const CHANGES_QUEUED_MAX: usize = 4;

impl Changes {
    pub(crate) fn push(&mut self, kind: ChangeKind, partitions: BTreeSet<TopicPartition>, epoch: i32, member_id: &str) {
        if partitions.is_empty() {
            return;
        }
        self.queued.push(AssignmentChange { kind, partitions, epoch, member_id: member_id.to_string() });
        assert!(self.queued.len() <= CHANGES_QUEUED_MAX, "changes pile up: {:?}", self.queued);
    }

    /// Everything owned is lost: changes not yet handed out are dropped (the consumer never saw
    /// them), and a Lost change is queued for what will be owned once the handed-out ones are
    /// applied.
    pub(crate) fn push_loss(&mut self, owned: &BTreeSet<TopicPartition>, epoch: i32, member_id: &str) {
        self.queued.clear();
        let mut lost = owned.clone();
        for change in &self.taken {
            match change.kind {
                ChangeKind::Assigned => lost.extend(change.partitions.iter().cloned()),
                ChangeKind::Revoked | ChangeKind::Lost => lost.retain(|partition| !change.partitions.contains(partition)),
            }
        }
        self.push(ChangeKind::Lost, lost, epoch, member_id);
    }

    /// `owned` plus every partition an unapplied change assigns: what the member may be reading
    /// by the time a request reaches the coordinator. Reporting less could let the coordinator
    /// hand such a partition to someone else while the consumer starts on it.
    pub(crate) fn owned_or_pending(&self, owned: &BTreeSet<TopicPartition>) -> BTreeSet<TopicPartition> {
        let mut reported = owned.clone();
        for change in self.taken.iter().chain(&self.queued).filter(|change| change.kind == ChangeKind::Assigned) {
            reported.extend(change.partitions.iter().cloned());
        }
        reported
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.taken.is_empty()
    }

    /// Every change not applied yet: those handed out before (again: a caller interrupted while
    /// applying them applies them again, so applying must be idempotent) and the queued ones.
    pub(crate) fn take(&mut self) -> Vec<AssignmentChange> {
        self.taken.append(&mut self.queued);
        self.taken.clone()
    }

    /// Applies the taken changes to `owned`. Asserts that each makes sense against it: an
    /// assigned partition was not owned, a revoked or lost one was.
    pub(crate) fn applied(&mut self, owned: &mut BTreeSet<TopicPartition>) {
        for change in std::mem::take(&mut self.taken) {
            for partition in change.partitions {
                match change.kind {
                    ChangeKind::Assigned => assert!(owned.insert(partition), "assigned twice"),
                    ChangeKind::Revoked | ChangeKind::Lost => assert!(owned.remove(&partition), "released without being owned"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triage_follows_the_error_table() {
        let server = |code| ClientError::server(code, "");
        assert_eq!(triage(&server(ErrorCode::NOT_COORDINATOR)), Triage::Retry);
        assert_eq!(triage(&server(ErrorCode::REQUEST_TIMED_OUT)), Triage::Retry);
        assert_eq!(triage(&server(ErrorCode::REBALANCE_IN_PROGRESS)), Triage::Rejoin);
        assert_eq!(triage(&server(ErrorCode::ILLEGAL_GENERATION)), Triage::NewGeneration);
        assert_eq!(triage(&server(ErrorCode::FENCED_MEMBER_EPOCH)), Triage::Fenced);
        assert_eq!(triage(&server(ErrorCode::FENCED_INSTANCE_ID)), Triage::Fatal);
        assert_eq!(triage(&ClientError::Timeout { timeout_ms: 1 }), Triage::Retry);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut backoff = RetryBackoff::new(100, 350);
        assert_eq!([backoff.next_ms(), backoff.next_ms(), backoff.next_ms()], [100, 200, 350]);
        backoff.reset();
        assert_eq!(backoff.next_ms(), 100);
    }
}
