//! The consumer's group side: `subscribe`, rebalance callbacks, committed offsets, auto-commit
//! and `close`. The protocol logic lives in [`crate::group`]; this module applies its outcomes
//! to the consumer's assignment and positions, inside `poll`.
//!
//! Owns: the group session (driver task), the rebalance listener, the commit queue (a task that
//! sends commits one at a time, in the order they were issued), the auto-commit timer, the
//! partitions assigned whose start position is not chosen yet, and the event log.
//!
//! Invariants (on top of the consumer's own):
//! - Assignment changes are applied only inside `poll` (and `close`), in the order the member
//!   machine queued them, each callback running before positions change; the machine counts
//!   them applied only afterwards. Applying a change twice (after a poll was cancelled midway)
//!   does no harm: revoking or losing a partition not assigned, or assigning one already
//!   assigned, changes nothing (callbacks may see it twice).
//! - C4: an auto-commit carries the positions at the start of a poll — positions only move past
//!   records a poll returned, and poll N returns its records at its very end — so it never
//!   commits what the current poll returns. A revocation's auto-commit happens before the poll
//!   returns anything, so the same holds.
//! - A partition's start position is its group's committed offset, or the reset policy when the
//!   group has none; the partition is not fetched before its position is chosen. A position
//!   the log's range no longer (or never) held gets the reset policy too, once the leader
//!   confirms it is out of range.
//! - Commits leave the commit queue in issue order, each with the identity captured at issue;
//!   a lost partition is never committed.
//! - Every commit sent (and every assignment change applied) is recorded in the event log,
//!   bounded by [`GROUP_EVENTS_MAX`] (older events are dropped and counted).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Consumer, ConsumerConfig};
use crate::admin::{list_offsets, OffsetQuery};
use crate::error::{ClientError, Result};
use crate::group::assignor::Assignor;
use crate::group::classic::ClassicMember;
use crate::group::coordinator::Coordinator;
use crate::group::driver::{self, DriverConfig, GroupSession, MemberView, Subscription};
use crate::group::kip848::ConsumerMember;
use crate::group::member::{AssignmentChange, ChangeKind, CommitIdentity, GroupMember, MemberConfig};
use crate::group::offsets::{self, CommitOutcome};
use crate::group::TopicPartition;
use crate::wire::proto::ErrorCode;

/// Most events kept in the group event log before the oldest are dropped.
pub const GROUP_EVENTS_MAX: usize = 65_536;
/// Most commits queued and not yet answered; `commit_async` beyond this fails definitely.
pub const COMMITS_QUEUED_MAX: usize = 64;
/// Most topics one subscription names.
pub const SUBSCRIPTION_TOPICS_MAX: usize = 10_000;

/// Which group protocol a subscribing consumer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// KIP-848: the coordinator assigns, members reconcile incrementally (Kafka 4's default).
    #[default]
    Consumer,
    /// JoinGroup/SyncGroup: the group's leader member assigns with a client-side assignor.
    Classic,
}

/// Where a group member starts reading a partition for which its group has no committed offset,
/// or whose position (a committed offset, say) is out of the log's range: below its start after
/// retention, or above its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only what is written from now on (Kafka's default).
    #[default]
    Latest,
    /// Fail the poll with [`ClientError::NoCommittedOffset`] (no commit) or
    /// [`ClientError::OffsetOutOfRange`] (out of range).
    Error,
}

/// Callbacks a subscribing consumer runs inside `poll` when its assignment changes.
pub trait RebalanceListener: Send {
    /// Before the consumer stops reading `partitions` (after their auto-commit, if on).
    fn on_partitions_revoked(&mut self, partitions: &BTreeSet<TopicPartition>) {
        let _ = partitions;
    }
    /// Before the consumer starts reading `partitions` (their start positions are chosen next).
    fn on_partitions_assigned(&mut self, partitions: &BTreeSet<TopicPartition>) {
        let _ = partitions;
    }
    /// The member lost `partitions` (fenced, session lapsed): another member may own them
    /// already, so nothing of them may be committed. By default: as a revocation, like Kafka.
    fn on_partitions_lost(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.on_partitions_revoked(partitions);
    }
    /// A commit of `offsets` was queued (`automatic`: by auto-commit), to be sent with
    /// `identity` (`None`: a commit outside a generation). Runs when the commit is issued, before
    /// anything is sent; its outcome follows as a [`GroupEvent::Commit`], in issue order.
    /// Recorders of histories need the moment (an auto-commit is issued inside a poll).
    fn on_commit_queued(&mut self, offsets: &BTreeMap<TopicPartition, u64>, automatic: bool, identity: Option<&CommitIdentity>) {
        let _ = (offsets, automatic, identity);
    }
}

/// What happened in the group, in order: for checkers and for applications that prefer
/// events to callbacks. See [`Consumer::take_group_events`].
#[derive(Debug, Clone)]
pub enum GroupEvent {
    /// Partitions assigned, with the start position chosen for each; `reset` names those whose
    /// position came from the reset policy (the group had no committed offset for them).
    Assigned { member_id: String, epoch: i32, positions: BTreeMap<TopicPartition, u64>, reset: BTreeSet<TopicPartition> },
    /// Partitions given back (after their auto-commit, if on).
    Revoked { member_id: String, epoch: i32, partitions: BTreeSet<TopicPartition> },
    /// Partitions lost without a commit.
    Lost { member_id: String, epoch: i32, partitions: BTreeSet<TopicPartition> },
    /// A commit and its outcome.
    Commit(CommitOutcome),
}

#[derive(Debug, Default)]
struct EventLog {
    events: VecDeque<GroupEvent>,
    dropped: u64,
}

impl EventLog {
    fn push(&mut self, event: GroupEvent) {
        if self.events.len() == GROUP_EVENTS_MAX {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// The outcome of [`Consumer::commit_async`], once the coordinator answered.
pub struct CommitHandle {
    answer: oneshot::Receiver<Result<CommitOutcome>>,
}

impl Future for CommitHandle {
    type Output = Result<CommitOutcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer).poll(cx).map(|answer| answer.unwrap_or(Err(ClientError::Closed)))
    }
}

struct CommitJob {
    identity: Option<CommitIdentity>,
    /// The member (none for a commit outside a generation): a commit refused only because the
    /// member's epoch moved on meanwhile is sent again with the new one (see `run_commits`).
    member: Option<MemberView>,
    offsets: BTreeMap<TopicPartition, u64>,
    automatic: bool,
    reply: oneshot::Sender<Result<CommitOutcome>>,
}

/// The group side of a consumer with a `group_id`.
pub(super) struct GroupState {
    coordinator: Arc<Coordinator>,
    session: Option<GroupSession>,
    listener: Option<Box<dyn RebalanceListener>>,
    log: Arc<Mutex<EventLog>>,
    /// Started on first use (a consumer may be built outside a runtime).
    commits: Option<mpsc::Sender<CommitJob>>,
    commit_task_done: Option<oneshot::Receiver<()>>,
    auto_commit_next: Instant,
    /// Assigned, start positions not chosen yet.
    unpositioned: Vec<AssignmentChange>,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupState")
            .field("group", &self.coordinator.group())
            .field("session", &self.session)
            .field("unpositioned", &self.unpositioned)
            .finish()
    }
}

impl GroupState {
    pub(super) fn session(&self) -> Option<&GroupSession> {
        self.session.as_ref()
    }

    pub(super) fn new(cluster: &crate::cluster::ClusterSession, config: &ConsumerConfig) -> Result<Option<GroupState>> {
        let Some(group) = &config.group_id else {
            return Ok(None);
        };
        Ok(Some(GroupState {
            coordinator: Arc::new(Coordinator::new(cluster.clone(), group)?),
            session: None,
            listener: None,
            log: Arc::new(Mutex::new(EventLog::default())),
            commits: None,
            commit_task_done: None,
            auto_commit_next: Instant::now() + config.auto_commit_interval,
            unpositioned: Vec::new(),
        }))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn member_config(config: &ConsumerConfig, group: &str) -> MemberConfig {
    MemberConfig {
        group_id: group.to_string(),
        group_instance_id: config.group_instance_id.clone(),
        client_id: config.cluster.client_id.clone(),
        session_timeout_ms: millis(config.session_timeout),
        heartbeat_interval_ms: millis(config.heartbeat_interval),
        max_poll_interval_ms: millis(config.max_poll_interval),
        retry_backoff_ms: millis(config.cluster.retry_backoff).max(1),
        retry_backoff_max_ms: millis(config.cluster.retry_backoff_max).max(1),
        assignors: config.assignors.clone(),
        server_assignor: config.server_assignor.clone(),
    }
}

/// The commit queue's task: one commit at a time, in issue order.
/// Times one commit is sent again because the member's epoch moved on while it was queued.
const COMMIT_EPOCH_RETRIES_MAX: u32 = 4;

/// The identity to send a commit again with, when the coordinator refused it only because the
/// consumer-protocol member's epoch moved on (STALE_MEMBER_EPOCH, a definite error: nothing was
/// committed) and the member, under the same id, still owns every partition of the commit. The
/// newer epoch is then as legitimate as the old one was (Kafka's consumer does the same); a
/// partition that moved away is never committed under the new epoch.
fn renewed_identity(job: &CommitJob, result: &Result<()>) -> Option<CommitIdentity> {
    let Err(ClientError::Server { code: ErrorCode::STALE_MEMBER_EPOCH, .. }) = result else { return None };
    let (Some(sent), Some(member)) = (&job.identity, &job.member) else { return None };
    let (Some(now), owned) = member.current() else { return None };
    let keeps_all = job.offsets.keys().all(|partition| owned.contains(partition));
    (now.member_id == sent.member_id && now.epoch > sent.epoch && keeps_all).then_some(now)
}

async fn run_commits(
    coordinator: Arc<Coordinator>,
    config: ConsumerConfig,
    log: Arc<Mutex<EventLog>>,
    mut jobs: mpsc::Receiver<CommitJob>,
    done: oneshot::Sender<()>,
) {
    while let Some(mut job) = jobs.recv().await {
        let deadline = Instant::now() + config.cluster.operation_timeout;
        let mut attempts = 0;
        let result = loop {
            let result = offsets::commit(
                &coordinator,
                job.identity.as_ref(),
                config.group_instance_id.as_deref(),
                &job.offsets,
                config.cluster.connection.request_timeout,
                deadline,
            )
            .await;
            attempts += 1;
            match (&result, renewed_identity(&job, &result)) {
                (Err(_), Some(identity)) if attempts < COMMIT_EPOCH_RETRIES_MAX => job.identity = Some(identity),
                _ => break result,
            }
        };
        let (member_id, epoch) = job.identity.map(|identity| (identity.member_id, identity.epoch)).unwrap_or((String::new(), -1));
        let outcome = CommitOutcome {
            group: coordinator.group().to_string(),
            member_id,
            epoch,
            automatic: job.automatic,
            offsets: job.offsets,
            result: result.clone(),
        };
        if let Err(error) = &result {
            tracing::debug!(group = coordinator.group(), %error, automatic = outcome.automatic, "commit failed");
        }
        log.lock().expect("event log lock").push(GroupEvent::Commit(outcome.clone()));
        let _ = job.reply.send(result.map(|()| outcome));
    }
    let _ = done.send(());
}

impl Consumer {
    fn group(&self) -> Result<&GroupState> {
        self.group.as_ref().ok_or_else(|| ClientError::InvalidArgument("the consumer has no group_id".into()))
    }

    fn group_mut(&mut self) -> Result<&mut GroupState> {
        self.group.as_mut().ok_or_else(|| ClientError::InvalidArgument("the consumer has no group_id".into()))
    }

    /// True once `subscribe` (or `subscribe_pattern`) was called.
    pub fn is_subscribed(&self) -> bool {
        self.group.as_ref().is_some_and(|group| group.session.is_some())
    }

    /// Joins the group (`group_id`) subscribed to `topics`, or changes the subscription. The
    /// assignment arrives in later polls. Fails if partitions were assigned by hand. Call it
    /// inside the runtime: it spawns the member's heartbeat task.
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        if topics.len() > SUBSCRIPTION_TOPICS_MAX || topics.iter().any(String::is_empty) {
            return Err(ClientError::InvalidArgument(format!("{} topics (at most {SUBSCRIPTION_TOPICS_MAX}, none empty)", topics.len())));
        }
        self.start_or_resubscribe(Subscription::Topics(topics))
    }

    /// Joins the group subscribed to every topic whose whole name matches the regular
    /// expression `pattern` (internal `__` topics never do), including topics created later.
    /// The consumer protocol sends the pattern to the coordinator, which resolves it (KIP-848's
    /// server-side regex, RE2 syntax); the classic protocol resolves it here, again every
    /// `metadata_refresh_interval`.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<()> {
        self.start_or_resubscribe(Subscription::Pattern(pattern.to_string(), driver::anchored(pattern)?))
    }

    fn start_or_resubscribe(&mut self, subscription: Subscription) -> Result<()> {
        let config = self.config.clone();
        let manual = !self.assignment.is_empty();
        let group = self.group_mut()?;
        if let Some(session) = &group.session {
            session.set_subscription(subscription);
            return Ok(());
        }
        if manual {
            return Err(ClientError::InvalidArgument("subscribe after assign: use one or the other".into()));
        }
        let member_config = member_config(&config, group.coordinator.group());
        let topics = match &subscription {
            Subscription::Topics(topics) => topics.clone(),
            Subscription::Pattern(..) => BTreeSet::new(), // sent to the coordinator, or resolved by the driver before it joins
        };
        let member: Box<dyn GroupMember> = match config.group_protocol {
            GroupProtocol::Classic => Box::new(ClassicMember::new(member_config, topics, 0)?),
            GroupProtocol::Consumer => Box::new(ConsumerMember::new(member_config, topics, 0)?.with_member_id(crate::random::uuid_v4())?),
        };
        let driver_config = DriverConfig {
            request_timeout: config.cluster.connection.request_timeout,
            rebalance_timeout: config.max_poll_interval,
            metadata_refresh_interval: config.metadata_refresh_interval,
            retry_backoff: config.cluster.retry_backoff,
        };
        group.session = Some(GroupSession::start(group.coordinator.clone(), member, subscription, driver_config));
        Ok(())
    }

    /// Sets the callbacks run inside `poll` when the assignment changes.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) -> Result<()> {
        self.group_mut()?.listener = Some(listener);
        Ok(())
    }

    /// The group events since the last call (assignments with start positions, revocations,
    /// losses, commits with their identity and outcome), and how many older ones were dropped.
    pub fn take_group_events(&mut self) -> (Vec<GroupEvent>, u64) {
        let Some(group) = &self.group else {
            return (Vec::new(), 0);
        };
        let mut log = group.log.lock().expect("event log lock");
        let dropped = std::mem::take(&mut log.dropped);
        (log.events.drain(..).collect(), dropped)
    }

    /// The member id and epoch (classic: generation) commits would carry now; `None` outside a
    /// generation.
    pub fn group_member(&self) -> Option<CommitIdentity> {
        self.group.as_ref()?.session.as_ref()?.commit_identity()
    }

    /// Commits the positions of every assigned partition — the offsets after the records that
    /// earlier polls returned — and waits for the outcome.
    pub async fn commit(&mut self) -> Result<CommitOutcome> {
        let offsets = self.positions.clone();
        self.commit_offsets(offsets).await
    }

    /// Commits these offsets (each the next record to consume) and waits for the outcome.
    pub async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, u64>) -> Result<CommitOutcome> {
        self.issue_commit(offsets, false).await
    }

    /// Queues a commit of the positions of every assigned partition and returns at once; the
    /// handle resolves with its outcome. Commits leave in the order they were issued.
    pub fn commit_async(&mut self) -> CommitHandle {
        let offsets = self.positions.clone();
        let (reply, answer) = oneshot::channel();
        match self.queue_commit(offsets, false, reply) {
            Ok(()) => {}
            Err((reply, error)) => {
                let _ = reply.send(Err(error));
            }
        }
        CommitHandle { answer }
    }

    /// The group's committed offsets of `partitions` (`None`: nothing committed). The future
    /// borrows nothing from the consumer (so it is `Send` while the consumer is not `Sync`).
    pub fn committed(
        &self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> impl Future<Output = Result<BTreeMap<TopicPartition, Option<u64>>>> + Send + 'static {
        let coordinator = self.group().map(|group| group.coordinator.clone());
        let partitions = partitions.clone();
        let (timeout, operation_timeout) = (self.config.cluster.connection.request_timeout, self.config.cluster.operation_timeout);
        async move {
            let deadline = Instant::now() + operation_timeout;
            let coordinator = coordinator?;
            offsets::fetch_committed(&coordinator, &partitions, timeout, deadline).await
        }
    }

    async fn issue_commit(&mut self, offsets: BTreeMap<TopicPartition, u64>, automatic: bool) -> Result<CommitOutcome> {
        let (reply, answer) = oneshot::channel();
        if let Err((_, error)) = self.queue_commit(offsets, automatic, reply) {
            return Err(error);
        }
        CommitHandle { answer }.await
    }

    #[allow(clippy::result_large_err)]
    fn queue_commit(
        &mut self,
        offsets: BTreeMap<TopicPartition, u64>,
        automatic: bool,
        reply: oneshot::Sender<Result<CommitOutcome>>,
    ) -> std::result::Result<(), (oneshot::Sender<Result<CommitOutcome>>, ClientError)> {
        let config = self.config.clone();
        let Some(group) = self.group.as_mut() else {
            return Err((reply, ClientError::InvalidArgument("the consumer has no group_id".into())));
        };
        let identity = match &group.session {
            Some(session) => match session.commit_identity() {
                Some(identity) => Some(identity),
                None => {
                    let error =
                        ClientError::NotMember { group: group.coordinator.group().to_string(), reason: "joining or rebalancing".into() };
                    return Err((reply, error));
                }
            },
            None => None,
        };
        let sender = group.commits.get_or_insert_with(|| {
            let (sender, jobs) = mpsc::channel(COMMITS_QUEUED_MAX);
            let (done, done_rx) = oneshot::channel();
            group.commit_task_done = Some(done_rx);
            tokio::spawn(run_commits(group.coordinator.clone(), config, group.log.clone(), jobs, done));
            sender
        });
        let member = group.session.as_ref().map(GroupSession::view);
        let queued = (offsets.clone(), identity.clone());
        sender.try_send(CommitJob { identity, member, offsets, automatic, reply }).map_err(|error| {
            let job = error.into_inner();
            (job.reply, ClientError::InvalidArgument(format!("{COMMITS_QUEUED_MAX} commits already queued")))
        })?;
        if let Some(listener) = group.listener.as_mut() {
            listener.on_commit_queued(&queued.0, automatic, queued.1.as_ref());
        }
        Ok(())
    }

    /// At the start of a poll: tells the member the application is alive, and auto-commits
    /// what earlier polls returned when the interval is up. Returns true when the planted bug
    /// `auto-commit-of-current-poll` put that auto-commit off to the poll's end
    /// ([`Consumer::group_auto_commit`]).
    pub(super) fn group_poll_start(&mut self) -> bool {
        let Some(group) = self.group.as_mut() else {
            return false;
        };
        if let Some(session) = &group.session {
            session.polled();
        }
        if !self.config.enable_auto_commit || Instant::now() < group.auto_commit_next {
            return false;
        }
        group.auto_commit_next = Instant::now() + self.config.auto_commit_interval;
        if self.config.planted.auto_commit_of_current_poll() {
            return true;
        }
        self.group_auto_commit();
        false
    }

    /// Queues an auto-commit of the positions now, unless there are none or the member is
    /// between generations. C4: called at the start of a poll, the positions are those after the
    /// records of earlier polls only.
    pub(super) fn group_auto_commit(&mut self) {
        let Some(group) = self.group.as_ref() else {
            return;
        };
        if self.positions.is_empty() || group.session.as_ref().is_some_and(|session| session.commit_identity().is_none()) {
            return;
        }
        let offsets = self.positions.clone();
        let (reply, _answer) = oneshot::channel();
        if let Err((_, error)) = self.queue_commit(offsets, true, reply) {
            tracing::debug!(%error, "auto-commit not queued");
        }
    }

    /// Applies the member's queued assignment changes (callbacks, auto-commit of revoked
    /// partitions), then chooses start positions for new partitions. Returns the member's fatal
    /// error, if it stopped.
    pub(super) async fn group_apply_changes(&mut self) -> Result<()> {
        let Some(changes) = self.group.as_ref().and_then(|group| group.session.as_ref()).map(GroupSession::take_changes) else {
            return Ok(());
        };
        if !changes.is_empty() {
            for change in &changes {
                self.apply_change(change).await;
            }
            self.group.as_ref().and_then(|group| group.session.as_ref()).expect("a session gave the changes").changes_applied();
        }
        self.position_assigned().await?;
        match self.group.as_ref().and_then(|group| group.session.as_ref()).and_then(GroupSession::failure) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn apply_change(&mut self, change: &AssignmentChange) {
        let partitions = &change.partitions;
        match change.kind {
            ChangeKind::Revoked => {
                let offsets: BTreeMap<TopicPartition, u64> =
                    self.positions.iter().filter(|(partition, _)| partitions.contains(*partition)).map(|(p, o)| (p.clone(), *o)).collect();
                if self.config.enable_auto_commit && !offsets.is_empty() {
                    // Before the revocation is applied, so the member still owns them.
                    let _ = self.issue_commit(offsets, true).await;
                }
                self.with_listener(|listener| listener.on_partitions_revoked(partitions));
                self.drop_partitions(partitions);
                let event =
                    GroupEvent::Revoked { member_id: change.member_id.clone(), epoch: change.epoch, partitions: partitions.clone() };
                self.log_event(event);
            }
            ChangeKind::Lost => {
                self.with_listener(|listener| listener.on_partitions_lost(partitions));
                self.drop_partitions(partitions);
                let event = GroupEvent::Lost { member_id: change.member_id.clone(), epoch: change.epoch, partitions: partitions.clone() };
                self.log_event(event);
            }
            ChangeKind::Assigned => {
                self.with_listener(|listener| listener.on_partitions_assigned(partitions));
                let mut assignment: BTreeSet<TopicPartition> = self.assignment.iter().cloned().collect();
                // Already assigned (a change applied again): keeps its position.
                let new: BTreeSet<TopicPartition> = partitions.difference(&assignment).cloned().collect();
                assignment.extend(new.iter().cloned());
                self.assignment = assignment.into_iter().collect();
                let change = AssignmentChange { partitions: new, ..change.clone() };
                self.group.as_mut().expect("a group consumer").unpositioned.push(change);
            }
        }
    }

    fn with_listener(&mut self, f: impl FnOnce(&mut dyn RebalanceListener)) {
        if let Some(listener) = self.group.as_mut().and_then(|group| group.listener.as_mut()) {
            f(listener.as_mut());
        }
    }

    fn log_event(&self, event: GroupEvent) {
        if let Some(group) = &self.group {
            group.log.lock().expect("event log lock").push(event);
        }
    }

    fn drop_partitions(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.assignment.retain(|partition| !partitions.contains(partition));
        self.positions.retain(|partition, _| !partitions.contains(partition));
        self.fetches.retain(|fetch| !partitions.contains(&fetch.key));
        if let Some(group) = self.group.as_mut() {
            for change in &mut group.unpositioned {
                change.partitions.retain(|partition| !partitions.contains(partition));
            }
        }
    }

    /// Chooses the start position of every newly assigned partition: the group's committed
    /// offset, else the reset policy. Nothing moves unless every one is known.
    async fn position_assigned(&mut self) -> Result<()> {
        let Some(group) = self.group.as_ref() else {
            return Ok(());
        };
        let wanted: BTreeSet<TopicPartition> = group.unpositioned.iter().flat_map(|change| change.partitions.iter().cloned()).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.config.cluster.operation_timeout;
        let timeout = self.config.cluster.connection.request_timeout;
        let committed = offsets::fetch_committed(&group.coordinator, &wanted, timeout, deadline).await?;
        let mut chosen = BTreeMap::new();
        let mut reset = BTreeSet::new();
        for partition in wanted {
            let position = match committed.get(&partition).copied().flatten() {
                Some(offset) => offset,
                None => {
                    reset.insert(partition.clone());
                    let query = match self.config.group_offset_reset {
                        OffsetReset::Earliest => OffsetQuery::Earliest,
                        OffsetReset::Latest => OffsetQuery::Latest,
                        OffsetReset::Error => {
                            return Err(ClientError::NoCommittedOffset { topic: partition.0.clone(), partition: partition.1 });
                        }
                    };
                    list_offsets(&self.cluster, &partition.0, partition.1, query).await?.offset
                }
            };
            chosen.insert(partition, position);
        }
        let group = self.group.as_mut().expect("checked above");
        for change in std::mem::take(&mut group.unpositioned) {
            let positions: BTreeMap<TopicPartition, u64> =
                change.partitions.iter().map(|partition| (partition.clone(), chosen[partition])).collect();
            if !positions.is_empty() {
                let reset = positions.keys().filter(|partition| reset.contains(*partition)).cloned().collect();
                let event = GroupEvent::Assigned { member_id: change.member_id, epoch: change.epoch, positions, reset };
                group.log.lock().expect("event log lock").push(event);
            }
        }
        self.positions.extend(chosen);
        Ok(())
    }

    /// A group-assigned partition whose position `offset` a fetch found out of the log's range
    /// (below its start after retention, or above its end: a committed offset the log no longer
    /// or never held). Kafka's consumer applies its reset policy then, and so does this one: the
    /// range is asked again of the leader and, if `offset` is still outside it, the position
    /// moves to the log start (`Earliest`) or its end (`Latest`), or the poll fails with
    /// [`ClientError::OffsetOutOfRange`] (`Error`; definite, the position stays until a `seek`).
    /// Inside the range now (a replica that lagged answered the fetch), the position stays and
    /// the partition is fetched again. Returns whether the position moved.
    pub(super) async fn group_reset_out_of_range(&mut self, partition: &TopicPartition, offset: u64) -> Result<bool> {
        assert!(self.is_subscribed(), "only a group member's partitions are reset by the group's policy");
        if self.positions.get(partition) != Some(&offset) {
            return Ok(false); // sought elsewhere meanwhile
        }
        let (topic, number) = (partition.0.as_str(), partition.1);
        let start = list_offsets(&self.cluster, topic, number, OffsetQuery::Earliest).await?.offset;
        let end = list_offsets(&self.cluster, topic, number, OffsetQuery::Latest).await?.offset;
        if (start..=end).contains(&offset) {
            return Ok(false);
        }
        let position = match self.config.group_offset_reset {
            OffsetReset::Earliest => start,
            OffsetReset::Latest => end,
            OffsetReset::Error => {
                let (topic, partition) = (topic.to_string(), number);
                return Err(ClientError::OffsetOutOfRange { topic, partition, offset, log_start_offset: start, high_watermark: end });
            }
        };
        tracing::info!(
            topic,
            partition = number,
            offset,
            position,
            start,
            end,
            "position out of the log's range: reset by the group's policy"
        );
        self.positions.insert(partition.clone(), position);
        Ok(true)
    }

    /// Waits until the member signals or `deadline` passes; true if it signalled. (Borrows only
    /// the session across the wait, so `poll`'s future stays `Send`.)
    pub(super) async fn group_signalled(&mut self, deadline: Instant) -> bool {
        match self.group.as_ref().and_then(|group| group.session.as_ref()) {
            Some(session) => tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), session.changed()).await.is_ok(),
            None => false,
        }
    }

    /// Leaves the group: revokes every partition (auto-committing their positions first when
    /// auto-commit is on), sends LeaveGroup (consumer protocol: epoch -1) — a static member
    /// does not leave — and waits, within the operation timeout, for the queued commits to end.
    /// A consumer without a subscription only commits (when auto-commit is on).
    pub async fn close(mut self) -> Result<()> {
        let Some(group) = self.group.as_ref() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.config.cluster.operation_timeout;
        let mut outcome = Ok(());
        if let Some(session) = &group.session {
            session.leave();
            loop {
                if let Err(error) = self.group_apply_changes().await {
                    outcome = Err(error);
                    break;
                }
                let session = self.group.as_ref().and_then(|group| group.session.as_ref()).expect("closing a session");
                if session.is_done() || Instant::now() >= deadline {
                    break;
                }
                self.group_signalled(deadline).await;
            }
        } else if self.config.enable_auto_commit && !self.positions.is_empty() {
            let offsets = self.positions.clone();
            outcome = self.issue_commit(offsets, true).await.map(|_| ());
        }
        let group = self.group.as_mut().expect("checked above");
        group.session = None; // stops the driver task
        group.commits = None; // the commit task ends once its queue is drained
        if let Some(done) = group.commit_task_done.take() {
            let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), done).await;
        }
        outcome
    }
}

/// The consumer settings for groups, with Kafka's defaults.
pub(super) fn default_assignors() -> Vec<Assignor> {
    vec![Assignor::Range, Assignor::CooperativeSticky]
}
