//! The consumer-group workload (issue 14, scenario `groups`): one or two groups on the run's
//! topic, each with a few member slots whose consumers subscribe, poll, commit (by hand or by
//! auto-commit), leave (`close`), crash (dropped without a close, F-K1/F-K2) and come back,
//! sometimes as static members; a reader per group that fetches the committed offsets now and
//! then; and the final fetch of every group's offsets after the drain. One group speaks the
//! classic protocol (range, round-robin or cooperative-sticky, the client-side assignors), the
//! other the consumer protocol (KIP-848); with one group the seed picks.
//!
//! Every client action is recorded per the checker contract of `odradek_jepsen::history`
//! ("Consumer-group ops"), which the checks C1–C7 rely on:
//! * a member's polls are `poll` ops of its process; a poll during which the assignment changed
//!   is recorded as a poll that returned nothing, the `rebalance` op(s), and a poll holding the
//!   records (invoked after the rebalance completed, so its records are of keys held);
//! * the rebalance op of a poll is *invoked* from the rebalance listener, at the first change
//!   the consumer applies, so before the member tells the coordinator it released anything;
//!   it completes after the poll, from the consumer's group events (start positions chosen
//!   inside it). Later changes within the same poll, and epoch changes without a change of
//!   assignment, get their own invoke/ok pair after the poll. Such an op is invoked after the
//!   coordinator granted what it reports (the heartbeat task applies answers between and during
//!   polls), so the checker takes a rebalance's epoch as granted by its completion (C5) and never
//!   as evidence that the member was still live after its invoke (C7 takes only commits);
//! * every commit (by hand or automatic) is invoked from the listener's `on_commit_queued`,
//!   when the consumer issues it (inside the poll for an auto-commit), on a process of its own,
//!   and completed from its `GroupEvent::Commit` (commits complete in issue order); one the
//!   consumer never reports (a crash, a close) stays open: indeterminate;
//! * every start position comes from a committed offset: each group's offsets start at 0 by a
//!   simple commit, confirmed by a fetch, before any member joins; only after an offset deletion
//!   (flag `--offset-delete`) can a member start from the reset policy, recorded `from: reset`
//!   (the consumer's event names those partitions).
//!
//! Flag `--offset-delete` (C9): an admin ([`run_offset_deletes`]) deletes committed offsets now
//! and then, recorded as `offset-delete` ops: of the member groups' keys (refused with
//! GROUP_SUBSCRIBED_TO_TOPIC while a member subscribes, done when the group is empty), and of
//! [`ADMIN_GROUP`], a group without members whose offsets the admin commits (simple commits)
//! and fetches itself.
//!
//! Bounds: member slots per group ([`MEMBERS_PER_GROUP_MAX`]), incarnations by the safety
//! phase's length over the shortest lifetime, polls per incarnation by its lifetime over the
//! poll time, attempts of the setup and final fetches ([`FETCH_ATTEMPTS_MAX`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::group::coordinator::Coordinator;
use odradek_client::group::{offsets, Assignor, CommitIdentity, TopicPartition};
use odradek_client::planted::Planted;
use odradek_client::wire::proto::ErrorCode;
use odradek_client::{
    ClientError, ClusterConfig, ClusterSession, ConnectionConfig, Consumer, ConsumerConfig, ConsumerRecord, GroupEvent, GroupProtocol,
    OffsetReset, RebalanceListener,
};
use odradek_jepsen::history::{
    self, Commit, FetchCommitted, Key, OffsetDelete, OpF, OpHandle, OpValue, Poll, Process, Rebalance, StartFrom, StartPosition, Subscribe,
};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use crate::cluster::SimCluster;
use crate::config::{GROUP_NAMES, LIVENESS_BOUND, PARTITIONS, TOPIC};

/// Most member slots of one group.
const MEMBERS_PER_GROUP_MAX: usize = 3;
/// Both protocols' session: short, so that clock steps, isolations and pauses expire it
/// within a run. The servers' consumer-protocol session is the same (see `server_settings`).
const SESSION: Duration = Duration::from_millis(3_000);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long one poll waits.
const POLL_TIMEOUT: Duration = Duration::from_millis(300);
/// Shortest and longest life of one consumer incarnation before it leaves or crashes.
const LIFETIME_MS: (u64, u64) = (2_000, 9_000);
/// Pause before a slot's next incarnation joins.
const RESTART_PAUSE_MS: (u64, u64) = (50, 2_000);
/// Attempts (200 ms apart) of the initial commit and of each final fetch.
const FETCH_ATTEMPTS_MAX: u32 = 300;
/// The group readers' retry backoff (first, most).
const READER_BACKOFF_MIN: Duration = Duration::from_millis(2);
const READER_BACKOFF_MAX: Duration = Duration::from_millis(20);
/// Most zombie commits (with an earlier generation or member epoch) of one incarnation.
const ZOMBIE_COMMITS_MAX: u32 = 3;
/// How often a group's reader fetches its committed offsets (C1 reads).
const READ_INTERVAL_MS: (u64, u64) = (100, 500);

/// The coordinator settings the `groups` scenario gives every node: short sessions and
/// heartbeats (so they expire within a run), a short initial rebalance delay, few offsets
/// partitions (each is a raft group), and snapshots and segments small enough that retention
/// deletes offsets segments under the run's faults (the snapshot bound of `group::table`).
pub fn server_settings() -> odradek_server::group::service::GroupSettings {
    odradek_server::group::service::GroupSettings {
        offsets_topic_partitions: 4,
        offsets_topic_replication_factor: 3,
        initial_rebalance_delay_ms: 300,
        consumer_session_timeout_ms: SESSION.as_millis() as u32,
        consumer_heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
        timer_tick_ms: 100,
        snapshot_bytes_min: OFFSETS_SNAPSHOT_BYTES_MIN,
        offsets_segment_bytes: OFFSETS_SEGMENT_BYTES,
    }
}

/// Bytes of coordinator records between table snapshots in this scenario (default 1 MiB).
const OFFSETS_SNAPSHOT_BYTES_MIN: u64 = 16 * 1024;
/// Segment size of the offsets partitions in this scenario (default 4 MiB).
const OFFSETS_SEGMENT_BYTES: u64 = 32 * 1024;

/// One group as the seed drew it.
#[derive(Clone, Debug)]
struct GroupPlan {
    name: String,
    protocol: GroupProtocol,
    /// Classic: the one assignor every member offers.
    assignor: Assignor,
    slots: Vec<SlotPlan>,
    /// Plan field `regex` (consumer protocol only): members subscribe with [`PATTERN`].
    pattern: Option<String>,
}

/// One member slot: its settings, the same for each incarnation.
#[derive(Clone, Debug)]
struct SlotPlan {
    /// Static membership: the instance id every incarnation uses.
    instance: Option<String>,
    auto_commit: bool,
    auto_commit_interval: Duration,
    /// Share (percent) of incarnations that end in a crash rather than a close.
    crash_percent: u32,
    seed: u64,
}

/// The running group workload.
pub struct GroupWorkload {
    groups: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl GroupWorkload {
    /// Waits for every member and reader (each stops at the end of the safety phase).
    pub async fn finish(self) -> Vec<String> {
        for task in self.tasks {
            task.await.expect("group task");
        }
        self.groups
    }
}

/// Draws the groups from `seed` (a stream of its own: the other workloads' draws stay as they
/// were) and starts them; everything stops by `duration` from now.
/// With `offset_delete` (flag `--offset-delete`), an admin also deletes committed offsets
/// ([`run_offset_deletes`], C9), on a stream of its own drawn after everything else.
pub fn start(
    client: &NodeHandle,
    cluster: Arc<SimCluster>,
    seed: u64,
    duration: Duration,
    planted: Planted,
    regex: bool,
    offset_delete: bool,
) -> GroupWorkload {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6770_5f77_6f72_6b6c);
    let mut plans = draw_groups(&mut rng);
    for plan in plans.iter_mut().filter(|plan| regex && plan.protocol == GroupProtocol::Consumer) {
        plan.pattern = Some(PATTERN.to_string());
    }
    cluster.note(format!("groups: {plans:?}"));
    let deadline = tokio::time::Instant::now() + duration;
    let mut groups: Vec<String> = plans.iter().map(|plan| plan.name.clone()).collect();
    let mut tasks: Vec<JoinHandle<()>> =
        plans.into_iter().map(|plan| client.spawn(run_group(cluster.clone(), plan, deadline, planted))).collect();
    if offset_delete {
        let member_groups = groups.clone();
        tasks.push(client.spawn(run_offset_deletes(cluster.clone(), member_groups, seed, deadline)));
        groups.push(ADMIN_GROUP.to_string());
    }
    GroupWorkload { groups, tasks }
}

fn draw_groups(rng: &mut SmallRng) -> Vec<GroupPlan> {
    let count = rng.gen_range(1..=GROUP_NAMES.len());
    let first = if rng.gen_bool(0.5) { GroupProtocol::Classic } else { GroupProtocol::Consumer };
    (0..count)
        .map(|index| {
            let protocol = match (index, first) {
                (0, protocol) => protocol,
                (_, GroupProtocol::Classic) => GroupProtocol::Consumer,
                (_, GroupProtocol::Consumer) => GroupProtocol::Classic,
            };
            let assignor = *[Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky].choose(rng).expect("three");
            let name = GROUP_NAMES[index].to_string();
            let slots = (0..rng.gen_range(2..=MEMBERS_PER_GROUP_MAX))
                .map(|slot| SlotPlan {
                    instance: rng.gen_bool(0.3).then(|| format!("{name}-static-{slot}")),
                    auto_commit: rng.gen_bool(0.6),
                    auto_commit_interval: Duration::from_millis(rng.gen_range(200..1_500)),
                    crash_percent: rng.gen_range(0..=60),
                    seed: rng.gen(),
                })
                .collect();
            GroupPlan { name, protocol, assignor, slots, pattern: None }
        })
        .collect()
}

fn bootstrap(cluster: &SimCluster) -> Vec<String> {
    cluster.bootstrap()
}

fn keys() -> Vec<Key> {
    (0..u64::from(PARTITIONS)).collect()
}

/// Flag `--offset-delete`: a group without members whose offsets the admin commits, fetches and
/// deletes (the deletions go through; C9's fetch-after-delete check reads them).
pub const ADMIN_GROUP: &str = "g-admin";
/// Pause between two of the admin's actions (ms).
const ADMIN_PAUSE_MS: (u64, u64) = (150, 700);

/// Flag `--offset-delete`: until `deadline`, the admin picks one action at a time: delete some
/// keys' committed offsets of a member group or of [`ADMIN_GROUP`], commit offsets to
/// [`ADMIN_GROUP`] (a simple commit), or fetch them. Every action is one op on a process of its
/// own; a deletion asks once (`Coordinator::request` retries only after definite errors).
async fn run_offset_deletes(cluster: Arc<SimCluster>, member_groups: Vec<String>, seed: u64, deadline: tokio::time::Instant) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6f66_6673_6574_2d64);
    let bootstrap = bootstrap(&cluster);
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let mut coordinators: BTreeMap<String, Coordinator> = BTreeMap::new();
    for group in member_groups.iter().map(String::as_str).chain([ADMIN_GROUP]) {
        let session = ClusterSession::new(&addresses, cluster_config()).expect("cluster");
        coordinators.insert(group.to_string(), Coordinator::new(session, group).expect("coordinator"));
    }
    let admin = plain_consumer(&cluster, ADMIN_GROUP, true);
    // Bounded by the safety phase over the shortest pause.
    let actions_max = 1 + deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64 / ADMIN_PAUSE_MS.0;
    let (mut deleted, mut refused) = (0u64, 0u64);
    for _ in 0..actions_max {
        let pause = Duration::from_millis(rng.gen_range(ADMIN_PAUSE_MS.0..=ADMIN_PAUSE_MS.1));
        if tokio::time::Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        let mut keys: Vec<Key> = keys().into_iter().filter(|_| rng.gen_bool(0.5)).collect();
        if keys.is_empty() {
            keys.push(rng.gen_range(0..u64::from(PARTITIONS)));
        }
        match rng.gen_range(0..10) {
            0..=3 => {
                let group = member_groups.choose(&mut rng).expect("at least one group");
                if let Some((d, r)) = delete_offsets(&cluster, &coordinators[group], &keys).await {
                    (deleted, refused) = (deleted + d, refused + r);
                }
            }
            4..=5 => {
                if let Some((d, r)) = delete_offsets(&cluster, &coordinators[ADMIN_GROUP], &keys).await {
                    (deleted, refused) = (deleted + d, refused + r);
                }
            }
            6..=7 => {
                let offset = rng.gen_range(0..1_000);
                let offsets: BTreeMap<TopicPartition, u64> = keys.iter().map(|&k| ((TOPIC.to_string(), k as u32), offset)).collect();
                let commit =
                    Commit { group: ADMIN_GROUP.to_string(), offsets: keys.iter().map(|&k| (k, offset)).collect(), ..Commit::default() };
                let process = cluster.process();
                let handle = cluster.history().invoke(process, OpF::Commit, OpValue::Commit(commit.clone())).expect("history");
                let timeout = cluster_config().connection.request_timeout;
                let op_deadline = tokio::time::Instant::now() + cluster_config().operation_timeout;
                let result = offsets::commit(&coordinators[ADMIN_GROUP], None, None, &offsets, timeout, op_deadline).await;
                complete_commit(&cluster, handle, commit, &result);
            }
            _ => {
                fetch_committed(&cluster, &admin, ADMIN_GROUP).await;
            }
        }
    }
    cluster.note(format!("offset deletions: {deleted} keys answered deleted, {refused} refused"));
}

/// One recorded `offset-delete` of `keys` through `coordinator`; (deleted, refused) counts when
/// it was answered.
async fn delete_offsets(cluster: &SimCluster, coordinator: &Coordinator, keys: &[Key]) -> Option<(u64, u64)> {
    let partitions: BTreeSet<TopicPartition> = keys.iter().map(|&k| (TOPIC.to_string(), k as u32)).collect();
    let asked = OffsetDelete { group: coordinator.group().to_string(), keys: keys.to_vec(), ..OffsetDelete::default() };
    let process = cluster.process();
    let handle = cluster.history().invoke(process, OpF::OffsetDelete, OpValue::OffsetDelete(asked.clone())).expect("history");
    let timeout = cluster_config().connection.request_timeout;
    let deadline = tokio::time::Instant::now() + cluster_config().operation_timeout;
    let result = offsets::delete(coordinator, &partitions, timeout, deadline).await;
    let mut history = cluster.history();
    match result {
        Ok(codes) => {
            let (mut deleted, mut refused) = (Vec::new(), Vec::new());
            for ((_, partition), code) in codes {
                // NONE: removed (or nothing was committed); anything else kept it.
                if code == ErrorCode::NONE {
                    deleted.push(u64::from(partition))
                } else {
                    refused.push(u64::from(partition))
                }
            }
            let counts = (deleted.len() as u64, refused.len() as u64);
            history.ok(handle, OpValue::OffsetDelete(OffsetDelete { deleted, refused, ..asked })).expect("history");
            Some(counts)
        }
        Err(error) if error.is_definite() => {
            history.fail(handle, OpValue::OffsetDelete(OffsetDelete { error: Some(error_name(&error)), ..asked })).expect("history");
            None
        }
        Err(error) => {
            history.info(handle, OpValue::OffsetDelete(OffsetDelete { error: Some(error_name(&error)), ..asked })).expect("history");
            None
        }
    }
}

/// The key of a partition of the test topic; `None` for another topic's (only a regex
/// subscription, plan field `regex`, can be handed one: C8 checks those).
fn key_of((topic, partition): &TopicPartition) -> Option<Key> {
    (topic == TOPIC).then(|| u64::from(*partition))
}

/// Plan field `regex`: consumer-protocol members subscribe with this pattern, which the
/// coordinator resolves (KIP-848); as a whole-name match it names only the test topic.
pub const PATTERN: &str = TOPIC;
/// Plan field `regex`: a topic whose name holds a match of [`PATTERN`] without being one: a
/// coordinator that matches anywhere in a name hands its partition out (C8).
pub const DECOY_TOPIC: &str = "decoy-t";

fn partitions() -> BTreeSet<TopicPartition> {
    (0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect()
}

/// Requests time out well within a session (a member stuck on a dead coordinator looks for the
/// next one in time); operations give up after a few sessions.
fn cluster_config() -> ClusterConfig {
    let connection = ConnectionConfig { request_timeout: Duration::from_millis(1_500), ..ConnectionConfig::default() };
    ClusterConfig { operation_timeout: Duration::from_secs(8), connection, ..ClusterConfig::default() }
}

/// A consumer of `group` outside any generation (simple commits, fetches).
fn plain_consumer(cluster: &SimCluster, group: &str, eager: bool) -> Consumer {
    let bootstrap = bootstrap(cluster);
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let mut cluster_config = cluster_config();
    if eager {
        // A reader that retries at once finds a new coordinator in its first moments.
        (cluster_config.retry_backoff, cluster_config.retry_backoff_max) = (READER_BACKOFF_MIN, READER_BACKOFF_MAX);
    }
    let config = ConsumerConfig {
        group_id: Some(group.to_string()),
        enable_auto_commit: false,
        cluster: cluster_config,
        ..ConsumerConfig::default()
    };
    Consumer::new(&addresses, config).expect("consumer")
}

/// One group: its offsets start at 0, then its member slots and its reader run to `deadline`.
async fn run_group(cluster: Arc<SimCluster>, plan: GroupPlan, deadline: tokio::time::Instant, planted: Planted) {
    if !initial_offsets(&cluster, &plan.name, deadline).await {
        cluster.note(format!("group {}: no initial offsets before the end of the safety phase", plan.name));
        return;
    }
    cluster.note(format!("group {}: offsets start at 0", plan.name));
    let mut tasks = Vec::new();
    for slot in &plan.slots {
        tasks.push(tokio::spawn(run_slot(cluster.clone(), plan.clone(), slot.clone(), deadline, planted)));
    }
    tasks.push(tokio::spawn(read_committed(cluster.clone(), plan.name.clone(), plan.slots[0].seed, deadline)));
    for task in tasks {
        task.await.expect("group member task");
    }
}

/// Commits offset 0 for every key of `group` (a simple commit, no member), until a fetch shows
/// every key committed: from then on every start position is a committed offset.
async fn initial_offsets(cluster: &SimCluster, group: &str, deadline: tokio::time::Instant) -> bool {
    let mut consumer = plain_consumer(cluster, group, false);
    for _ in 0..FETCH_ATTEMPTS_MAX {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let offsets: BTreeMap<TopicPartition, u64> = partitions().into_iter().map(|partition| (partition, 0)).collect();
        let commit = Commit { group: group.to_string(), offsets: keys().into_iter().map(|k| (k, 0)).collect(), ..Commit::default() };
        let process = cluster.process();
        let handle = cluster.history().invoke(process, OpF::Commit, OpValue::Commit(commit.clone())).expect("history");
        let result = consumer.commit_offsets(offsets).await.map(|_| ());
        complete_commit(cluster, handle, commit, &result);
        if fetch_committed(cluster, &consumer, group).await.is_some_and(|offsets| offsets.values().all(Option::is_some)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// One recorded `fetch-committed` of every key of `group` through `consumer` (one of the
/// group, outside any generation), on a process of its own; the offsets when it succeeded.
fn fetch_committed<'a>(
    cluster: &'a SimCluster,
    consumer: &Consumer,
    group: &'a str,
) -> impl std::future::Future<Output = Option<BTreeMap<Key, Option<u64>>>> + 'a {
    // The future borrows nothing from the consumer (which is not `Sync`); it starts when awaited.
    let committed = consumer.committed(&partitions());
    record_fetch(cluster, committed, group)
}

async fn record_fetch(
    cluster: &SimCluster,
    committed: impl std::future::Future<Output = Result<BTreeMap<TopicPartition, Option<u64>>, ClientError>>,
    group: &str,
) -> Option<BTreeMap<Key, Option<u64>>> {
    let process = cluster.process();
    let asked = FetchCommitted { group: group.to_string(), keys: keys(), ..FetchCommitted::default() };
    let handle = cluster.history().invoke(process, OpF::FetchCommitted, OpValue::FetchCommitted(asked.clone())).expect("history");
    match committed.await {
        Ok(committed) => {
            let offsets: BTreeMap<Key, Option<u64>> = committed.into_iter().map(|((_, p), o)| (u64::from(p), o)).collect();
            cluster.history().ok(handle, OpValue::FetchCommitted(FetchCommitted { offsets: offsets.clone(), ..asked })).expect("history");
            Some(offsets)
        }
        // A read has no effect: a failed one is definite.
        Err(error) => {
            let value = FetchCommitted { error: Some(error_name(&error)), ..asked };
            cluster.history().fail(handle, OpValue::FetchCommitted(value)).expect("history");
            None
        }
    }
}

/// Fetches `group`'s committed offsets now and then until `deadline` (C1's reads while members
/// commit and coordinators move).
async fn read_committed(cluster: Arc<SimCluster>, group: String, seed: u64, deadline: tokio::time::Instant) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x7265_6164);
    let consumer = plain_consumer(&cluster, &group, true);
    loop {
        let pause = Duration::from_millis(rng.gen_range(READ_INTERVAL_MS.0..=READ_INTERVAL_MS.1));
        if tokio::time::Instant::now() + pause >= deadline {
            return;
        }
        tokio::time::sleep(pause).await;
        fetch_committed(&cluster, &consumer, &group).await;
    }
}

/// The final fetch of every group's committed offsets, after the final-drain marker (C1: every
/// acknowledged commit survived). Retries within [`LIVENESS_BOUND`]; false if none succeeded.
pub async fn final_fetches(client: &NodeHandle, cluster: Arc<SimCluster>, groups: Vec<String>) -> Vec<String> {
    client
        .spawn(async move {
            let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
            let mut missing = Vec::new();
            for group in groups {
                let consumer = plain_consumer(&cluster, &group, false);
                let mut fetched = false;
                for _ in 0..FETCH_ATTEMPTS_MAX {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    if let Some(offsets) = fetch_committed(&cluster, &consumer, &group).await {
                        cluster.note(format!("group {group}: committed at the end {offsets:?}"));
                        fetched = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if !fetched {
                    missing.push(group);
                }
            }
            missing
        })
        .await
        .expect("final fetch task")
}

/// A member slot: incarnations one after another until `deadline`.
async fn run_slot(cluster: Arc<SimCluster>, plan: GroupPlan, slot: SlotPlan, deadline: tokio::time::Instant, planted: Planted) {
    let mut rng = SmallRng::seed_from_u64(slot.seed);
    let incarnations_max = 1 + (deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64) / LIFETIME_MS.0;
    for _ in 0..incarnations_max {
        let lifetime = Duration::from_millis(rng.gen_range(LIFETIME_MS.0..=LIFETIME_MS.1));
        let end = (tokio::time::Instant::now() + lifetime).min(deadline);
        let crash = rng.gen_range(0..100) < slot.crash_percent && end < deadline;
        run_incarnation(&cluster, &plan, &slot, end, crash, rng.gen(), planted).await;
        let pause = Duration::from_millis(rng.gen_range(RESTART_PAUSE_MS.0..=RESTART_PAUSE_MS.1));
        if tokio::time::Instant::now() + pause >= deadline {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// One consumer incarnation: subscribe, poll (and commit) until `end`, then close or crash.
async fn run_incarnation(
    cluster: &Arc<SimCluster>,
    plan: &GroupPlan,
    slot: &SlotPlan,
    end: tokio::time::Instant,
    crash: bool,
    seed: u64,
    planted: Planted,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let bootstrap = bootstrap(cluster);
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ConsumerConfig {
        cluster: cluster_config(),
        wait_ms_max: 200,
        group_id: Some(plan.name.clone()),
        group_instance_id: slot.instance.clone(),
        group_protocol: plan.protocol,
        assignors: vec![plan.assignor],
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT_INTERVAL,
        max_poll_interval: Duration::from_secs(20),
        enable_auto_commit: slot.auto_commit,
        auto_commit_interval: slot.auto_commit_interval,
        group_offset_reset: OffsetReset::Earliest,
        planted,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&addresses, config).expect("consumer");
    let process = cluster.process();
    let recorder = Arc::new(Mutex::new(Recorder::new(cluster.clone(), process, plan, slot.instance.clone())));
    consumer.set_rebalance_listener(Box::new(Listener(recorder.clone()))).expect("a group consumer");
    let subscribe = match &plan.pattern {
        Some(pattern) => Subscribe { group: plan.name.clone(), topics: Vec::new(), pattern: Some(pattern.clone()), keys: keys() },
        None => Subscribe { group: plan.name.clone(), topics: vec![TOPIC.to_string()], pattern: None, keys: keys() },
    };
    let handle = cluster.history().invoke(process, OpF::Subscribe, OpValue::Subscribe(subscribe.clone())).expect("history");
    match &plan.pattern {
        Some(pattern) => consumer.subscribe_pattern(pattern).expect("subscribe"),
        None => consumer.subscribe([TOPIC]).expect("subscribe"),
    }
    cluster.history().ok(handle, OpValue::Subscribe(subscribe)).expect("history");

    let coordinator =
        Coordinator::new(ClusterSession::new(&addresses, cluster_config()).expect("cluster"), &plan.name).expect("coordinator");
    let mut identity_earlier: Option<CommitIdentity> = None;
    let mut zombie_commits = 0;
    while tokio::time::Instant::now() < end {
        recorder.lock().expect("recorder").poll_start();
        let outcome = consumer.poll(POLL_TIMEOUT).await;
        let (events, dropped) = consumer.take_group_events();
        assert_eq!(dropped, 0, "the group event log is read after every poll");
        let identity = consumer.group_member();
        let failed = outcome.is_err();
        recorder.lock().expect("recorder").poll_end(outcome, events, identity.clone());
        if let Some(now) = identity {
            let moved_on = identity_earlier.as_ref().filter(|earlier| earlier.member_id == now.member_id && earlier.epoch < now.epoch);
            if let Some(earlier) = moved_on.filter(|_| zombie_commits < ZOMBIE_COMMITS_MAX && rng.gen_bool(0.5)) {
                zombie_commits += 1;
                let positions =
                    consumer.assignment().iter().filter_map(|(t, p)| Some(((t.clone(), *p), consumer.position(t, *p)?))).collect();
                zombie_commit(cluster, &coordinator, earlier, slot.instance.as_deref(), positions).await;
            }
            identity_earlier = Some(now);
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else if !slot.auto_commit && rng.gen_bool(0.3) && !consumer.assignment().is_empty() {
            // By hand: the positions after the records earlier polls returned.
            let _ = consumer.commit().await;
            let (events, _) = consumer.take_group_events();
            recorder.lock().expect("recorder").commit_events(&events);
        }
    }
    if crash {
        // F-K1/F-K2: dropped between polls without a close; its open commits stay open.
        cluster.history().crash(process).expect("history");
        drop(consumer);
        return;
    }
    // Close: revokes everything (auto-committing first), leaves. Its events cannot be read
    // afterwards: its commits stay open (indeterminate), its revocation completes from what the
    // listener saw.
    let outcome = consumer.close().await;
    cluster.note(format!("group {}: process {process} closed: {outcome:?}", plan.name));
    recorder.lock().expect("recorder").closed();
}

/// A zombie's commit: `positions` sent with the `earlier` generation or member epoch, after
/// the member moved on (a commit delayed in flight, F-N8, or an application holding on to an
/// old membership). Recorded with that identity on a process of its own; the coordinator must
/// refuse it (C5).
async fn zombie_commit(
    cluster: &SimCluster,
    coordinator: &Coordinator,
    earlier: &CommitIdentity,
    instance: Option<&str>,
    positions: BTreeMap<TopicPartition, u64>,
) {
    if positions.is_empty() {
        return;
    }
    let commit = Commit {
        group: coordinator.group().to_string(),
        offsets: positions.iter().filter_map(|(tp, o)| Some((key_of(tp)?, *o))).collect(),
        member: Some(earlier.member_id.clone()),
        epoch: u64::try_from(earlier.epoch).ok(),
        ..Commit::default()
    };
    let process = cluster.process();
    let handle = cluster.history().invoke(process, OpF::Commit, OpValue::Commit(commit.clone())).expect("history");
    let timeout = cluster_config().connection.request_timeout;
    let deadline = tokio::time::Instant::now() + cluster_config().operation_timeout;
    let result = offsets::commit(coordinator, Some(earlier), instance, &positions, timeout, deadline).await;
    cluster.note(format!("group {}: zombie commit with epoch {}: {result:?}", commit.group, earlier.epoch));
    complete_commit(cluster, handle, commit, &result);
}

/// The process's open op, if any.
enum Open {
    Nothing,
    Poll(OpHandle),
    /// A rebalance op invoked when the consumer applied a change (its invoke value).
    Rebalance(OpHandle, Box<Rebalance>),
}

/// A change the listener saw: revoked, lost or assigned, and the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Revoked(Key),
    Lost(Key),
    Assigned(Key),
}

/// What one member incarnation has recorded and has open; shared by its task and its listener.
struct Recorder {
    cluster: Arc<SimCluster>,
    process: Process,
    group: String,
    instance: Option<String>,
    protocol: history::GroupProtocol,
    open: Open,
    /// The changes the listener saw since the last poll ended, in order.
    seen: Vec<Seen>,
    /// The changes of the open rebalance op, in order.
    open_seen: Vec<Seen>,
    /// Changes already recorded by the listener (see [`Recorder::change`]); their events add
    /// nothing.
    declared: Vec<Seen>,
    /// Commits issued and not yet reported, in issue order: (process, handle, value).
    commits: VecDeque<(Process, OpHandle, Commit)>,
    /// The member id and epoch last recorded.
    member: Option<(String, i32)>,
    /// The keys held, as recorded.
    held: BTreeSet<Key>,
    /// Keys the consumer assigned whose start positions are not chosen yet (their offset fetch
    /// failed): the next poll is recorded as the rebalance that chooses them.
    unpositioned: BTreeSet<Key>,
}

impl Recorder {
    fn new(cluster: Arc<SimCluster>, process: Process, plan: &GroupPlan, instance: Option<String>) -> Recorder {
        Recorder {
            cluster,
            process,
            group: plan.name.clone(),
            instance,
            protocol: match plan.protocol {
                GroupProtocol::Classic => history::GroupProtocol::Classic,
                GroupProtocol::Consumer => history::GroupProtocol::Consumer,
            },
            open: Open::Nothing,
            seen: Vec::new(),
            open_seen: Vec::new(),
            declared: Vec::new(),
            commits: VecDeque::new(),
            member: None,
            held: BTreeSet::new(),
            unpositioned: BTreeSet::new(),
        }
    }

    fn asked(&self, member: Option<String>) -> Rebalance {
        Rebalance { group: self.group.clone(), member, instance: self.instance.clone(), ..Rebalance::default() }
    }

    fn invoke_rebalance(&mut self) {
        let asked = self.asked(self.member.as_ref().map(|(member, _)| member.clone()));
        let handle = self.cluster.history().invoke(self.process, OpF::Rebalance, OpValue::Rebalance(asked.clone())).expect("history");
        self.open = Open::Rebalance(handle, Box::new(asked));
    }

    fn poll_start(&mut self) {
        assert!(matches!(self.open, Open::Nothing), "one op at a time per process");
        if self.unpositioned.is_empty() {
            self.open = Open::Poll(self.cluster.history().invoke_poll(self.process).expect("history"));
        } else {
            self.invoke_rebalance();
        }
    }

    /// From the listener: the consumer applies a change. The poll so far returned nothing (a
    /// poll returns its records at its very end); the rebalance op opens now, before the member
    /// reports the change to the coordinator. A revocation after an assignment in the same op
    /// (two reconciliations in one poll) first completes the op with what the listener saw (no
    /// epoch, no start positions: those arrive with the poll's events), so that the revocation
    /// is invoked in time too.
    fn change(&mut self, partitions: &BTreeSet<TopicPartition>, seen: fn(Key) -> Seen) {
        let changes: Vec<Seen> = partitions.iter().filter_map(key_of).map(seen).collect();
        if changes.is_empty() {
            return;
        }
        let releases = !matches!(changes[0], Seen::Assigned(_));
        match std::mem::replace(&mut self.open, Open::Nothing) {
            Open::Poll(handle) => {
                self.cluster.history().ok(handle, OpValue::Poll(Poll::default())).expect("history");
                self.invoke_rebalance();
            }
            open @ Open::Rebalance(..) => {
                self.open = open;
                if releases {
                    self.split_after_assignment();
                } else {
                    self.split_after_release();
                }
            }
            // Inside `close`: no poll was open.
            Open::Nothing => self.invoke_rebalance(),
        }
        self.seen.extend(changes.iter().copied());
        self.open_seen.extend(changes);
    }

    /// If the open rebalance op has assigned keys, completes it with what the listener saw and
    /// opens the next: what follows (a revocation, an auto-commit before one) must come after
    /// the assignment in the history.
    fn split_after_assignment(&mut self) {
        if self.open_seen.iter().any(|c| matches!(c, Seen::Assigned(_))) {
            self.split_open();
        }
    }

    /// If the open rebalance op released keys (revoked or lost), completes it with what the
    /// listener saw and opens the next for the assignment that follows (a new epoch: a member
    /// fenced and rejoining, or the second half of a cooperative rebalance). Without this the
    /// assignment's op would be invoked only when the poll ends, after its start positions
    /// were fetched and after commits that completed during the poll, so C1 would order that
    /// fetch after commits it ran concurrently with (groups seed 55 once the leader's appends
    /// left before its fsync).
    fn split_after_release(&mut self) {
        if self.open_seen.iter().any(|c| matches!(c, Seen::Revoked(_) | Seen::Lost(_))) {
            self.split_open();
        }
    }

    /// Completes the open rebalance op with the changes the listener saw, and opens the next.
    fn split_open(&mut self) {
        let Open::Rebalance(handle, asked) = std::mem::replace(&mut self.open, Open::Nothing) else {
            unreachable!("changes are seen inside an open rebalance op")
        };
        let mut value = Rebalance { protocol: Some(self.protocol), ..*asked };
        if let Some((member, epoch)) = &self.member {
            value.member = Some(member.clone());
            value.epoch = u64::try_from(*epoch).ok();
        }
        for change in std::mem::take(&mut self.open_seen) {
            match change {
                Seen::Revoked(key) => value.revoked.push(key),
                Seen::Lost(key) => value.lost.push(key),
                Seen::Assigned(key) => value.assigned.push(key),
            }
            self.declared.push(change);
        }
        self.hold(&value);
        self.cluster.history().ok(handle, OpValue::Rebalance(value)).expect("history");
        self.invoke_rebalance();
    }

    /// The keys held after `rebalance`.
    fn hold(&mut self, rebalance: &Rebalance) {
        for key in rebalance.revoked.iter().chain(&rebalance.lost) {
            self.held.remove(key);
        }
        self.held.extend(rebalance.assigned.iter().copied());
    }

    /// From the listener: a commit was issued. Recorded on a process of its own.
    fn commit_queued(&mut self, offsets: &BTreeMap<TopicPartition, u64>, automatic: bool, identity: Option<&CommitIdentity>) {
        if automatic && matches!(self.open, Open::Rebalance(..)) {
            // The auto-commit before a revocation, after an assignment in the same poll: the
            // assignment is recorded first, under the membership the commit names.
            if let Some(identity) = identity {
                self.member = Some((identity.member_id.clone(), identity.epoch));
            }
            self.split_after_assignment();
        }
        let commit = Commit {
            group: self.group.clone(),
            offsets: offsets.iter().filter_map(|(tp, o)| Some((key_of(tp)?, *o))).collect(),
            auto: automatic,
            member: identity.map(|identity| identity.member_id.clone()),
            epoch: identity.and_then(|identity| u64::try_from(identity.epoch).ok()),
            error: None,
        };
        let process = self.cluster.process();
        let handle = self.cluster.history().invoke(process, OpF::Commit, OpValue::Commit(commit.clone())).expect("history");
        self.commits.push_back((process, handle, commit));
    }

    /// Completes the commits the events report, oldest first.
    fn commit_events(&mut self, events: &[GroupEvent]) {
        for event in events {
            if let GroupEvent::Commit(outcome) = event {
                let (_, handle, mut commit) = self.commits.pop_front().expect("every reported commit was issued");
                let keyed = outcome.offsets.keys().filter_map(key_of).count();
                assert_eq!(commit.offsets.len(), keyed, "commits complete in issue order");
                commit.member = (!outcome.member_id.is_empty()).then(|| outcome.member_id.clone());
                commit.epoch = u64::try_from(outcome.epoch).ok();
                complete_commit(&self.cluster, handle, commit, &outcome.result);
            }
        }
    }

    /// The poll's changes from its events, less those the listener recorded already.
    fn undeclared(&mut self, events: &[GroupEvent]) -> Vec<GroupEvent> {
        let mut declared = std::mem::take(&mut self.declared);
        let mut take = |change: Seen| match declared.iter().position(|d| *d == change) {
            Some(index) => {
                declared.remove(index);
                false
            }
            None => true,
        };
        let key = |(_, p): &TopicPartition| u64::from(*p);
        let mut left = Vec::new();
        for event in events {
            let event = match event {
                GroupEvent::Assigned { member_id, epoch, positions, reset } => {
                    let positions = positions.iter().filter(|(tp, _)| take(Seen::Assigned(key(tp)))).map(|(tp, o)| (tp.clone(), *o));
                    GroupEvent::Assigned {
                        member_id: member_id.clone(),
                        epoch: *epoch,
                        positions: positions.collect(),
                        reset: reset.clone(),
                    }
                }
                GroupEvent::Revoked { member_id, epoch, partitions } => {
                    let partitions = partitions.iter().filter(|tp| take(Seen::Revoked(key(tp)))).cloned().collect();
                    GroupEvent::Revoked { member_id: member_id.clone(), epoch: *epoch, partitions }
                }
                GroupEvent::Lost { member_id, epoch, partitions } => {
                    let partitions = partitions.iter().filter(|tp| take(Seen::Lost(key(tp)))).cloned().collect();
                    GroupEvent::Lost { member_id: member_id.clone(), epoch: *epoch, partitions }
                }
                GroupEvent::Commit(_) => continue,
            };
            left.push(event);
        }
        left
    }

    /// After a poll: its commits, its rebalance op(s), its records, a new epoch.
    fn poll_end(&mut self, outcome: Result<Vec<ConsumerRecord>, ClientError>, events: Vec<GroupEvent>, identity: Option<CommitIdentity>) {
        self.commit_events(&events);
        let (events, other_topics) = split_other_topics(events);
        // Start positions chosen in this poll, and what is left to choose.
        for change in std::mem::take(&mut self.seen) {
            match change {
                Seen::Assigned(key) => self.unpositioned.insert(key),
                Seen::Revoked(key) | Seen::Lost(key) => self.unpositioned.remove(&key),
            };
        }
        for event in &events {
            if let GroupEvent::Assigned { positions, .. } = event {
                for (_, partition) in positions.keys() {
                    self.unpositioned.remove(&u64::from(*partition));
                }
            }
        }
        let undeclared = self.undeclared(&events);
        let changes = rebalances(&self.group, &self.instance, self.protocol, &undeclared);
        self.open_seen.clear();
        let mut open = std::mem::replace(&mut self.open, Open::Nothing);
        if let (false, Open::Poll(_)) = (changes.is_empty(), &open) {
            // Changes applied without the listener (start positions chosen in a later poll):
            // the poll so far returned nothing.
            if let Open::Poll(handle) = std::mem::replace(&mut open, Open::Nothing) {
                self.cluster.history().ok(handle, OpValue::Poll(Poll::default())).expect("history");
            }
        }
        for change in &changes {
            self.member = Some((change.member.clone().unwrap_or_default(), change.epoch.map_or(-1, |e| e as i32)));
            self.hold(change);
            let mut history = self.cluster.history();
            let handle = match std::mem::replace(&mut open, Open::Nothing) {
                Open::Rebalance(handle, _) => handle,
                other => {
                    open = other;
                    history.invoke(self.process, OpF::Rebalance, OpValue::Rebalance(self.asked(change.member.clone()))).expect("history")
                }
            };
            history.ok(handle, OpValue::Rebalance(change.clone())).expect("history");
        }
        let mut history = self.cluster.history();
        let records_left = match open {
            Open::Rebalance(handle, asked) => {
                // Nothing applied after all: nothing changed.
                history.fail(handle, OpValue::Rebalance(*asked)).expect("history");
                true
            }
            Open::Poll(handle) => {
                match &outcome {
                    Ok(records) => history.ok(handle, OpValue::Poll(poll_value(records))),
                    // A failed poll moves no position: definite.
                    Err(_) => history.fail(handle, OpValue::Poll(Poll::default())),
                }
                .expect("history");
                false
            }
            Open::Nothing => true,
        };
        if let (true, Ok(records)) = (records_left, &outcome) {
            if !records.is_empty() {
                // Returned after the changes: a poll of the keys now held.
                let handle = history.invoke_poll(self.process).expect("history");
                history.ok(handle, OpValue::Poll(poll_value(records))).expect("history");
            }
        }
        // A new epoch (or member id) without a change of assignment.
        if let Some(identity) = identity {
            let now = (identity.member_id.clone(), identity.epoch);
            if self.member.as_ref() != Some(&now) {
                self.member = Some(now);
                let asked = self.asked(Some(identity.member_id.clone()));
                let handle = history.invoke(self.process, OpF::Rebalance, OpValue::Rebalance(asked.clone())).expect("history");
                let value = Rebalance { protocol: Some(self.protocol), epoch: u64::try_from(identity.epoch).ok(), ..asked };
                history.ok(handle, OpValue::Rebalance(value)).expect("history");
            }
        }
        if !other_topics.is_empty() {
            // Partitions of another topic (plan field `regex`), once the poll's ops are done: an
            // op of their own, which C8 checks against the subscription; the keys' bookkeeping
            // never sees them.
            let asked = self.asked(self.member.as_ref().map(|(member, _)| member.clone()));
            let handle = history.invoke(self.process, OpF::Rebalance, OpValue::Rebalance(asked.clone())).expect("history");
            history.ok(handle, OpValue::Rebalance(Rebalance { protocol: Some(self.protocol), other_topics, ..asked })).expect("history");
        }
    }

    /// After `close`: the revocation the listener opened completes with what it saw; the
    /// member left.
    fn closed(&mut self) {
        if let Open::Rebalance(handle, asked) = std::mem::replace(&mut self.open, Open::Nothing) {
            let mut value = Rebalance { protocol: Some(self.protocol), ..*asked };
            for change in std::mem::take(&mut self.open_seen) {
                match change {
                    Seen::Revoked(key) if self.held.contains(&key) => value.revoked.push(key),
                    Seen::Lost(key) if self.held.contains(&key) => value.lost.push(key),
                    _ => {}
                }
            }
            self.cluster.history().ok(handle, OpValue::Rebalance(value)).expect("history");
        }
    }
}

/// The events without partitions of topics other than the test topic, and the partitions of
/// other topics they assigned (plan field `regex`; none otherwise).
fn split_other_topics(events: Vec<GroupEvent>) -> (Vec<GroupEvent>, BTreeMap<String, Vec<u32>>) {
    let mut other_topics: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let events = events
        .into_iter()
        .map(|event| match event {
            GroupEvent::Assigned { member_id, epoch, positions, reset } => {
                for (topic, partition) in positions.keys().filter(|tp| key_of(tp).is_none()) {
                    other_topics.entry(topic.clone()).or_default().push(*partition);
                }
                let positions = positions.into_iter().filter(|(tp, _)| key_of(tp).is_some()).collect();
                GroupEvent::Assigned { member_id, epoch, positions, reset }
            }
            GroupEvent::Revoked { member_id, epoch, partitions } => {
                GroupEvent::Revoked { member_id, epoch, partitions: partitions.into_iter().filter(|tp| key_of(tp).is_some()).collect() }
            }
            GroupEvent::Lost { member_id, epoch, partitions } => {
                GroupEvent::Lost { member_id, epoch, partitions: partitions.into_iter().filter(|tp| key_of(tp).is_some()).collect() }
            }
            commit @ GroupEvent::Commit(_) => commit,
        })
        .collect();
    (events, other_topics)
}

/// The rebalance ops a poll's events make: consecutive changes at one epoch form one op, but a
/// revocation or loss after an assignment starts the next (an op's releases come first).
fn rebalances(group: &str, instance: &Option<String>, protocol: history::GroupProtocol, events: &[GroupEvent]) -> Vec<Rebalance> {
    let mut ops: Vec<Rebalance> = Vec::new();
    for event in events {
        let (member, epoch, releases, empty) = match event {
            GroupEvent::Assigned { member_id, epoch, positions, .. } => (member_id, *epoch, false, positions.is_empty()),
            GroupEvent::Revoked { member_id, epoch, partitions } | GroupEvent::Lost { member_id, epoch, partitions } => {
                (member_id, *epoch, true, partitions.is_empty())
            }
            GroupEvent::Commit(_) => continue,
        };
        if empty {
            continue;
        }
        let epoch = u64::try_from(epoch).ok();
        let same = ops.last().is_some_and(|last| {
            let after_assignment = releases && !last.assigned.is_empty();
            last.member.as_deref() == Some(member.as_str()) && last.epoch == epoch && !after_assignment
        });
        if !same {
            ops.push(Rebalance {
                group: group.to_string(),
                member: Some(member.clone()),
                instance: instance.clone(),
                protocol: Some(protocol),
                epoch,
                ..Rebalance::default()
            });
        }
        let op = ops.last_mut().expect("pushed above");
        match event {
            GroupEvent::Assigned { positions, reset, .. } => {
                for (tp, offset) in positions {
                    let key = u64::from(tp.1);
                    op.assigned.push(key);
                    // The reset policy's position when no offset was committed (after an offset
                    // deletion, flag `--offset-delete`): it read "nothing committed" (C1).
                    let from = if reset.contains(tp) { StartFrom::Reset } else { StartFrom::Committed };
                    op.start.insert(key, StartPosition { offset: *offset, from, committed: None });
                }
            }
            GroupEvent::Revoked { partitions, .. } => op.revoked.extend(partitions.iter().map(|(_, p)| u64::from(*p))),
            GroupEvent::Lost { partitions, .. } => op.lost.extend(partitions.iter().map(|(_, p)| u64::from(*p))),
            GroupEvent::Commit(_) => unreachable!("skipped above"),
        }
    }
    ops
}

fn poll_value(records: &[ConsumerRecord]) -> Poll {
    let mut poll = Poll::default();
    for record in records.iter().filter(|record| record.topic == TOPIC) {
        let value: u64 = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).parse().expect("our values");
        poll.records.entry(u64::from(record.partition)).or_default().push((record.offset, value));
    }
    poll
}

/// Completes a commit: ok, fail on a definite error (certainly not applied), info otherwise.
fn complete_commit(cluster: &SimCluster, handle: OpHandle, commit: Commit, result: &Result<(), ClientError>) {
    let mut history = cluster.history();
    match result {
        Ok(()) => history.ok(handle, OpValue::Commit(commit)),
        Err(error) if error.is_definite() => history.fail(handle, OpValue::Commit(Commit { error: Some(error_name(error)), ..commit })),
        Err(error) => history.info(handle, OpValue::Commit(Commit { error: Some(error_name(error)), ..commit })),
    }
    .expect("history");
}

/// The wire name of a server's error code (the checker knows the fencing ones), else the error.
fn error_name(error: &ClientError) -> String {
    match error {
        ClientError::Server { code, .. } => format!("{code:?}"),
        other => other.to_string(),
    }
}

/// The rebalance listener: tells the recorder when changes are applied and commits issued.
struct Listener(Arc<Mutex<Recorder>>);

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.0.lock().expect("recorder").change(partitions, Seen::Revoked);
    }
    fn on_partitions_assigned(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.0.lock().expect("recorder").change(partitions, Seen::Assigned);
    }
    fn on_partitions_lost(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.0.lock().expect("recorder").change(partitions, Seen::Lost);
    }
    fn on_commit_queued(&mut self, offsets: &BTreeMap<TopicPartition, u64>, automatic: bool, identity: Option<&CommitIdentity>) {
        self.0.lock().expect("recorder").commit_queued(offsets, automatic, identity);
    }
}
