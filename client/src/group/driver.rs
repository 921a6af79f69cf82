//! The IO side of a group member: one spawned task that steps the member machine, sends what it
//! asks for to the coordinator, and sleeps until its next timer or input. Heartbeats therefore
//! keep going between the application's polls; assignment changes wait, queued in the machine,
//! until the consumer takes and applies them inside a poll.
//!
//! Owns: the task, and (shared with the consumer behind one mutex) the member machine and the
//! subscription (topic list or pattern). The task never holds the lock across an await.
//!
//! Invariants:
//! - One request in flight per member (the machine's rule; the task awaits each answer).
//! - A pattern subscription goes to the coordinator when the member takes it there (the consumer
//!   protocol: KIP-848's server-side regex, [`GroupMember::set_pattern`]); otherwise (classic)
//!   it is resolved against all-topic metadata before the member's first step and again every
//!   `metadata_refresh_interval`; internal topics (`__` prefix) never match.
//! - Every wait is bounded: by the machine's next timer, the next metadata refresh, or an input.
//! - Dropping the [`GroupSession`] stops the task at its next wake-up without leaving the group
//!   (the session then times out); [`GroupSession::leave`] is the graceful way.
//!
//! Cost: one heartbeat per `heartbeat_interval` per member (a few dozen bytes), one metadata
//! request per refresh interval for a pattern or a classic leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::coordinator::Coordinator;
use super::member::{AssignmentChange, CommitIdentity, GroupMember, Step};
use super::TopicPartition;
use crate::error::ClientError;
use crate::wire::proto::Request_oneof_body as RequestBody;

/// Added to the rebalance timeout for a JoinGroup's own timeout: the coordinator may hold a join
/// for the whole rebalance timeout before it answers.
const JOIN_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// What the member subscribes to.
#[derive(Debug, Clone)]
pub enum Subscription {
    Topics(BTreeSet<String>),
    /// A regular expression matched against whole topic names: as the application gave it, and
    /// compiled ([`anchored`]).
    Pattern(String, regex::Regex),
}

/// Settings of the driver task.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Bound on a request other than JoinGroup.
    pub request_timeout: Duration,
    /// The rebalance timeout the member sends (a JoinGroup may take this long).
    pub rebalance_timeout: Duration,
    pub metadata_refresh_interval: Duration,
    pub retry_backoff: Duration,
}

struct State {
    member: Box<dyn GroupMember>,
    subscription: Subscription,
    /// Set by the dropped session: the task ends at its next wake-up.
    stopped: bool,
    /// A new pattern: resolve it before the next step rather than at the next refresh.
    resolve_now: bool,
    /// The member took the pattern to the coordinator: nothing to resolve here.
    pattern_on_server: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the task: a new input for the machine.
    wake_task: Notify,
    /// Wakes the consumer: the machine may have changes for it.
    wake_consumer: Notify,
    started: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("group state lock"))
    }
}

/// A running member: the consumer's handle on the driver task.
pub struct GroupSession {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GroupSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared
            .with(|state| f.debug_struct("GroupSession").field("member", &state.member).field("subscription", &state.subscription).finish())
    }
}

impl GroupSession {
    /// Starts the driver task for `member`.
    pub fn start(
        coordinator: Arc<Coordinator>,
        member: Box<dyn GroupMember>,
        subscription: Subscription,
        config: DriverConfig,
    ) -> GroupSession {
        let mut member = member;
        let pattern_on_server = matches!(&subscription, Subscription::Pattern(pattern, _) if member.set_pattern(pattern));
        let shared = Arc::new(Shared {
            state: Mutex::new(State { member, subscription, stopped: false, resolve_now: false, pattern_on_server }),
            wake_task: Notify::new(),
            wake_consumer: Notify::new(),
            started: Instant::now(),
        });
        tokio::spawn(run(shared.clone(), coordinator, config));
        GroupSession { shared }
    }

    /// Milliseconds on the member's clock.
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    pub fn set_subscription(&self, subscription: Subscription) {
        self.shared.with(|state| {
            match &subscription {
                Subscription::Topics(topics) => {
                    state.member.set_subscription(topics.clone());
                    if state.pattern_on_server {
                        state.member.set_pattern("");
                        state.pattern_on_server = false;
                    }
                }
                Subscription::Pattern(pattern, _) => {
                    state.pattern_on_server = state.member.set_pattern(pattern);
                    if state.pattern_on_server {
                        state.member.set_subscription(BTreeSet::new());
                    } else {
                        state.resolve_now = true;
                    }
                }
            }
            state.subscription = subscription;
        });
        self.shared.wake_task.notify_one();
    }

    /// The application polled.
    pub fn polled(&self) {
        let now_ms = self.now_ms();
        self.shared.with(|state| state.member.polled(now_ms));
        self.shared.wake_task.notify_one();
    }

    pub fn take_changes(&self) -> Vec<AssignmentChange> {
        self.shared.with(|state| state.member.take_changes())
    }

    pub fn changes_applied(&self) {
        let now_ms = self.now_ms();
        self.shared.with(|state| state.member.changes_applied(now_ms));
        self.shared.wake_task.notify_one();
    }

    pub fn commit_identity(&self) -> Option<CommitIdentity> {
        self.shared.with(|state| state.member.commit_identity())
    }

    pub fn owned(&self) -> BTreeSet<TopicPartition> {
        self.shared.with(|state| state.member.owned().clone())
    }

    pub fn failure(&self) -> Option<ClientError> {
        self.shared.with(|state| state.member.failure().cloned())
    }

    pub fn is_done(&self) -> bool {
        self.shared.with(|state| state.member.is_done())
    }

    /// Asks the member to leave; see [`GroupMember::leave`].
    pub fn leave(&self) {
        self.shared.with(|state| state.member.leave());
        self.shared.wake_task.notify_one();
    }

    /// Resolves once the member may have something new for the consumer (or at once if it
    /// signalled since the last call).
    pub async fn changed(&self) {
        self.shared.wake_consumer.notified().await;
    }
}

/// What the commit task may read of a running member: its identity and what it owns now.
#[derive(Clone)]
pub struct MemberView {
    shared: Arc<Shared>,
}

impl MemberView {
    /// The member's identity for commits now (`None` while joining) and the partitions it owns.
    pub fn current(&self) -> (Option<CommitIdentity>, BTreeSet<TopicPartition>) {
        self.shared.with(|state| (state.member.commit_identity(), state.member.owned().clone()))
    }
}

impl GroupSession {
    /// A view of this member for another task.
    pub fn view(&self) -> MemberView {
        MemberView { shared: self.shared.clone() }
    }
}

impl Drop for GroupSession {
    fn drop(&mut self) {
        self.shared.with(|state| state.stopped = true);
        self.shared.wake_task.notify_one();
    }
}

/// The driver task.
async fn run(shared: Arc<Shared>, coordinator: Arc<Coordinator>, config: DriverConfig) {
    let needs_resolving = shared.with(|state| matches!(state.subscription, Subscription::Pattern(..)) && !state.pattern_on_server);
    let mut refresh_at = if needs_resolving { Instant::now() } else { Instant::now() + config.metadata_refresh_interval };
    loop {
        let resolve_now = shared.with(|state| std::mem::take(&mut state.resolve_now));
        if resolve_now || Instant::now() >= refresh_at {
            refresh(&shared, &coordinator).await;
            refresh_at = Instant::now() + config.metadata_refresh_interval;
        }
        let step = shared.with(|state| if state.stopped { None } else { Some(state.member.step(shared.now_ms())) });
        let Some(step) = step else {
            return;
        };
        match step {
            Step::Send(body) => {
                let timeout = match &body {
                    RequestBody::join_group(_) => config.rebalance_timeout + JOIN_TIMEOUT_MARGIN,
                    _ => config.request_timeout,
                };
                let answer = coordinator.request_once(body, timeout).await;
                if let Err(error) = &answer {
                    if error.is_retriable() {
                        tracing::debug!(group = coordinator.group(), %error, "group request failed");
                    }
                }
                shared.with(|state| state.member.on_answer(shared.now_ms(), answer));
            }
            Step::Metadata(topics) => match partition_counts(&coordinator, &topics).await {
                Ok(counts) => shared.with(|state| state.member.on_metadata(shared.now_ms(), counts)),
                Err(error) => {
                    tracing::debug!(group = coordinator.group(), %error, "metadata for the assignment failed; retrying");
                    tokio::time::sleep(config.retry_backoff).await;
                }
            },
            Step::Wait(until_ms) => {
                shared.wake_consumer.notify_one();
                if shared.with(|state| state.member.is_done()) {
                    return;
                }
                let until = until_ms.map(|ms| shared.started + Duration::from_millis(ms)).unwrap_or(refresh_at).min(refresh_at);
                // Biased (inputs first): a simulation replays the same branch order.
                tokio::select! {
                    biased;
                    _ = shared.wake_task.notified() => {}
                    _ = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
        }
        shared.wake_consumer.notify_one();
    }
}

/// Re-resolves a pattern subscription, and gives a member that watches partition counts (a
/// classic leader) fresh ones.
async fn refresh(shared: &Shared, coordinator: &Coordinator) {
    let (pattern, watched) = shared.with(|state| {
        let pattern = match &state.subscription {
            Subscription::Pattern(_, pattern) if !state.pattern_on_server => Some(pattern.clone()),
            Subscription::Pattern(..) | Subscription::Topics(_) => None,
        };
        (pattern, state.member.metadata_topics())
    });
    if let Some(pattern) = pattern {
        let cluster = coordinator.cluster();
        match cluster.refresh_metadata(&[]).await {
            Ok(()) => {
                let topics = matching_topics(&pattern, cluster.metadata().topics.keys());
                shared.with(|state| state.member.set_subscription(topics));
            }
            Err(error) => tracing::debug!(group = coordinator.group(), %error, "metadata refresh for the pattern failed"),
        }
    }
    if !watched.is_empty() {
        if let Ok(counts) = partition_counts(coordinator, &watched).await {
            shared.with(|state| state.member.on_metadata(shared.now_ms(), counts));
        }
    }
}

/// Longest pattern accepted, in bytes (the regex crate bounds the compiled size on its own).
pub const PATTERN_BYTES_MAX: usize = 1024;

/// `pattern` compiled to match whole topic names only, as Kafka's pattern subscriptions do.
pub fn anchored(pattern: &str) -> crate::error::Result<regex::Regex> {
    if pattern.len() > PATTERN_BYTES_MAX {
        return Err(ClientError::InvalidArgument(format!("a pattern of {} bytes; at most {PATTERN_BYTES_MAX}", pattern.len())));
    }
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|error| ClientError::InvalidArgument(format!("pattern {pattern:?}: {error}")))
}

/// The topics an [`anchored`] pattern matches, internal topics (`__` prefix) excluded.
pub fn matching_topics<'a>(pattern: &regex::Regex, topics: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    topics.into_iter().filter(|topic| !topic.starts_with("__") && pattern.is_match(topic)).cloned().collect()
}

/// Fresh partition counts of `topics`; topics that do not exist are missing from the map.
async fn partition_counts(coordinator: &Coordinator, topics: &BTreeSet<String>) -> crate::error::Result<BTreeMap<String, u32>> {
    let cluster = coordinator.cluster();
    let wanted: Vec<String> = topics.iter().cloned().collect();
    cluster.refresh_metadata(&wanted).await?;
    let metadata = cluster.metadata();
    Ok(wanted.into_iter().filter_map(|topic| metadata.topics.get(&topic).map(|info| (topic, info.partitions.len() as u32))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_names_and_never_internal_topics() {
        let pattern = anchored("orders-.*").unwrap();
        let topics: Vec<String> = ["orders-eu", "orders-us", "my-orders-eu", "__orders-x", "orders"].map(String::from).into();
        let matched: Vec<String> = matching_topics(&pattern, &topics).into_iter().collect();
        assert_eq!(matched, ["orders-eu", "orders-us"]);
        let pattern = anchored("orders|orders-e|payments").unwrap();
        let matched: Vec<String> = matching_topics(&pattern, &topics).into_iter().collect();
        assert_eq!(matched, ["orders"], "an alternation matches whole names only");
        assert!(anchored("(unclosed").is_err());
    }
}
