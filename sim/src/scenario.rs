//! One simulated run: the phases and the checks.
//!
//! Phases (CHECKLISTS "Harness and simulator requirements"):
//! 1. setup: the nodes start, the client creates topic `t` (3 partitions, replication 3);
//! 2. safety: producers and a consumer (and in scenario `groups` the group members) run while
//!    the nemesis injects faults for `duration`;
//! 3. liveness: every fault is healed, stopped nodes restart, the producers finish (V1, V2);
//! 4. final drain: a fresh consumer reads every partition to its end (V3), then (scenario
//!    `groups`) every group's committed offsets are fetched (C1);
//!    with `--secure`, no intruder attempt took effect (A1, `crate::security`); with
//!    `--topic-churn`, a topic grows and every churned topic is placed right and served (PL1);
//!    with `--delete-records`, every acknowledged delete-records held (DR1); with
//!    `--grow-shrink`, the grown and shrunk membership converged (V6);
//! 5. checks: the Jepsen checker over the history, the raft checker over the replicas' events.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::Handle;
use odradek_consensus::observe::{self, Event};
use odradek_jepsen::checker::raft::RaftChecker;
use odradek_jepsen::checker::{check, CheckOptions};
use odradek_jepsen::history::{History, HistoryBuilder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{NodeStatus, SimCluster};
use crate::config::{Load, Scenario, ScenarioConfig, CONVERGENCE_WAIT, LIVENESS_BOUND, TOPIC};
use crate::nemesis;
use crate::nemesis::fault::FaultTargets;
use crate::report::{Crash, Report};
use crate::shrink::InjectedFault;
use crate::{security, workload};

/// Stack of the thread a run gets (virtual memory; a run's futures nest deeply).
const RUN_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Runs one seed in a fresh simulation (the runtime's seed is the run's seed). A panic inside
/// the simulated cluster becomes a [`Crash`]; both carry the faults the nemesis injected.
///
/// Each run gets a new thread: thread-local state would otherwise outlive a run and change the
/// next one in the same process (issue 20: disk seed 5980 after seed 51 took another path than
/// alone). The one that did: rand's `thread_rng`, from which raft-rs draws election timeouts,
/// is seeded once per thread and then continues its stream. On a new thread it is seeded anew
/// through the simulator, as in a fresh process; so are std's hash keys and the consensus
/// crate's observer and incarnation counter. (`sim/tests/same_path.rs` checks a seed run after
/// another replays as alone.)
pub fn run_seed(config: &ScenarioConfig) -> Result<Report, Crash> {
    let owned = config.clone();
    let run = std::thread::Builder::new()
        .name(format!("seed-{}", config.seed))
        .stack_size(RUN_STACK_BYTES)
        .spawn(move || run_seed_on_this_thread(&owned))
        .expect("a thread for the run");
    run.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

fn run_seed_on_this_thread(config: &ScenarioConfig) -> Result<Report, Crash> {
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(config.seed, madsim::Config::default());
    // A run that hangs (a task waiting forever) ends as a crash instead of spinning: the phases
    // are all bounded, so a run longer than this in simulated time is stuck.
    let probes = if config.sleeping_leader_cut || config.late_retry { nemesis::fault::probe::PROBES_TIME_BOUND } else { Duration::ZERO };
    runtime.set_time_limit(config.duration + 2 * LIVENESS_BOUND + CONVERGENCE_WAIT + Duration::from_secs(120) + probes);
    let owned = config.clone();
    let injected = Arc::new(Mutex::new(Vec::new()));
    let sink = injected.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(async move { run_into(owned, sink).await })));
    outcome.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        let injected = std::mem::take(&mut *injected.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        Crash::from_panic(config.clone(), message, injected)
    })
}

/// The run, inside a simulation: the phases in order, with the run's state (the rng, the
/// cluster, the problems found) kept here; the helpers below compute.
pub async fn run(config: ScenarioConfig) -> Report {
    run_into(config, Arc::new(Mutex::new(Vec::new()))).await
}

/// [`run`], pushing each fault the nemesis injects to `injected` as it starts.
async fn run_into(config: ScenarioConfig, injected: Arc<Mutex<Vec<InjectedFault>>>) -> Report {
    log_to_stderr_if_asked();
    let runtime = Handle::current();
    let seed = config.seed;
    let mut rng = SmallRng::seed_from_u64(seed);

    // 1. Setup.
    let larger = rng.gen_bool(0.3);
    // Heavy: 5 nodes, or 7; always more than the replication factor, so placement matters.
    // Membership moves need nodes outside a partition's replicas: 5 nodes at least.
    let drawn = match (config.heavy, larger) {
        (false, _) if config.membership => 5,
        (false, false) => 3,
        (false, true) | (true, false) => 5,
        // F-M4 adds a node: a cluster holds at most 7.
        (true, true) if config.grow_shrink => 5,
        (true, true) => 7,
    };
    let node_count = config.node_count.unwrap_or(drawn);
    assert!([3, 5, 7].contains(&node_count), "3, 5 or 7 nodes, not {node_count}");
    assert!(!(config.grow_shrink && node_count == 7), "--grow-shrink runs with 3 or 5 nodes (a cluster holds at most 7)");
    let extras = nemesis::plan::Extras {
        wipes: config.wipes,
        membership: config.membership,
        state_faults: config.state_faults,
        retention_ms: config.retention.then_some(config.duration.as_millis() as u64),
        grow_shrink: config.grow_shrink,
    };
    let plan = nemesis::plan::draw_plan(config.scenario, node_count, extras, &mut rng);
    assert!(!(config.heavy && config.scenario == Scenario::Groups), "--heavy does not run with scenario groups");
    // Heavy: more partitions than nodes (drawn only then, so other runs keep their draws).
    let load = if config.heavy {
        Load { partitions: rng.gen_range(node_count as u32 + 1..=12), replication: config.replication, heavy: true }
    } else {
        Load { replication: config.replication, ..Load::DEFAULT }
    };
    if plan.buggify {
        madsim::buggify::enable();
    }
    let mut cluster = SimCluster::new(seed, node_count, config.planted_bugs.clone(), plan.clock_offsets_ms.clone(), plan.segment_bytes);
    if config.grow_shrink {
        cluster = cluster.with_spare(seed);
    }
    cluster.load = load;
    cluster.client_planted = odradek_client::planted::Planted::of(&config.client_planted_bugs);
    let with_groups = config.scenario == Scenario::Groups;
    if with_groups {
        cluster.group_settings = Some(workload::groups::server_settings());
    }
    assert!(!(config.secure && with_groups), "--secure does not run with scenario groups (its members do not log in)");
    if config.secure {
        cluster.auth = Some(security::server_settings());
    }
    cluster.kafka = config.kafka;
    // `--sleeping-leader-cut` needs groups that sleep.
    cluster.hibernate = config.hibernate || config.sleeping_leader_cut;
    cluster.open_file_budget = config.open_file_budget;
    if config.open_file_budget.is_some() {
        for disk in cluster.disks.values() {
            disk.set_close_loses_unsynced(true);
        }
    }
    cluster.retention = plan.retention.clone();
    if config.late_retry && cluster.retention.is_none() {
        // `--late-retry` needs retention by bytes with small segments (no draw: fixed).
        cluster.retention = Some(nemesis::plan::RetentionPlan {
            segment_bytes: nemesis::fault::probe::LATE_RETRY_SEGMENT_BYTES,
            retention_bytes: nemesis::fault::probe::LATE_RETRY_RETENTION_BYTES,
            retention_ms: -1,
            lags: Vec::new(),
        });
    }
    let cluster = Arc::new(cluster);
    cluster.note(format!("seed {seed}: {node_count} nodes, scenario {}, {}", config.scenario.name(), plan.describe()));
    for bug in &config.planted_bugs {
        cluster.note(format!("PLANTED BUG {}", bug.name()));
    }
    for bug in &config.client_planted_bugs {
        cluster.note(format!("PLANTED BUG {} (client)", bug.name()));
    }
    // Every path and check named at 0, so a sweep shows the ones no seed reached.
    let names = EVENT_PATHS.iter().chain(TIMELINE_PATHS.iter().map(|(_, path)| path)).chain(RETENTION_PATHS.iter());
    let coverage: Rc<RefCell<BTreeMap<String, u64>>> = Rc::new(RefCell::new(names.map(|name| (name.to_string(), 0)).collect()));
    let watch = Rc::new(RefCell::new(nemesis::fault::probe::GroupWatch::default()));
    let raft = observe_replicas(&cluster, seed, coverage.clone(), watch.clone());
    let node_ids = cluster.start_nodes(&runtime);
    let client = runtime.create_node().name("client").ip(IpAddr::from([10, 0, 1, 1])).build();
    if config.secure {
        security::setup(&client, cluster.clone()).await;
    }
    workload::create_topic(&client, &cluster).await;
    match cluster.load.replication {
        crate::config::REPLICATION => cluster.note("topic created"),
        replication => cluster.note(format!("topic created ({replication} replicas a partition)")),
    }
    if config.regex {
        let decoy = workload::groups::DECOY_TOPIC;
        workload::create_named_topic(&client, &cluster, decoy, 1, odradek_client::TopicConfig::default()).await;
        cluster.note(format!("topic {decoy} created"));
    }

    // 2. Safety: the workload under the nemesis, which heals everything when it ends.
    let planted = odradek_client::planted::Planted::of(&config.client_planted_bugs);
    let workload = workload::start(&client, cluster.clone(), &mut rng, config.duration, planted);
    let intruder = config.secure.then(|| security::start_intruder(&client, cluster.clone(), config.duration));
    let groups = with_groups.then(|| {
        let planted = odradek_client::planted::Planted::of(&config.client_planted_bugs);
        workload::groups::start(&client, cluster.clone(), seed, config.duration, planted, config.regex, config.offset_delete)
    });
    let churn = config.topic_churn.then(|| workload::churn::start(&client, cluster.clone(), config.duration));
    let flips =
        plan.kinds.iter().any(|&(kind, _)| matches!(kind, nemesis::plan::FaultKind::BitFlip | nemesis::plan::FaultKind::StateCopiesBoth));
    let deletions = config.delete_records.then(|| workload::delete_records::start(&client, cluster.clone(), seed, config.duration));
    let targets = FaultTargets::new(&runtime, &cluster, &node_ids, &client).with_corruptible(flips.then_some(plan.corruptible_node));
    let faults = nemesis::run(&targets, &plan, config.duration, &mut rng, config.faults.as_ref(), &injected);
    if plan.retention.is_some() {
        // Plan field `retention`: the lags run beside the nemesis's faults (R12).
        tokio::join!(faults, nemesis::retention_lags(&targets, &plan));
    } else {
        faults.await;
    }
    let injected = injected.lock().expect("injected lock").clone();
    cluster.note(format!("safety phase over after {} faults; healed", injected.len()));
    if config.grow_shrink {
        // F-M4: the steps no window reached, taken now (the decommission runs on meanwhile).
        targets.grow_shrink_finish().await;
    }

    // 3. Liveness: the producers finish, every partition has an end (V1).
    let (acked, failed) = workload.finish().await;
    cluster.note(format!("producers finished: {acked} acked, {failed} failed"));
    let groups = match groups {
        Some(groups) => groups.finish().await,
        None => Vec::new(),
    };
    let mut problems = Vec::new();
    // A1: no intruder attempt took effect.
    if let Some(intruder) = intruder {
        problems.extend(intruder.await.expect("intruder task").violations);
    }
    // PL1 and DT1: after the heal, a topic grows, every churned topic's placement is checked,
    // and no re-created topic serves a record acknowledged before an acknowledged deletion.
    if let Some(churn) = churn {
        let churned = churn.await.expect("churn task");
        cluster.note(format!("churn: {} rounds", churned.rounds));
        problems.extend(workload::churn::final_check(&client, cluster.clone(), churned).await);
    }
    // DR1 is the history checker's (the deleter's ops, the polls and the final drain).
    if let Some(deletions) = deletions {
        let seen = deletions.await.expect("delete-records task");
        cluster.note(format!("delete-records: {} rounds, {} acknowledged, up to {}", seen.rounds, seen.acked, seen.acked_before));
    }
    // The probes of narrow windows (issue 20), with every partition quiet.
    if config.sleeping_leader_cut {
        let outcome = targets.sleeping_leader_cut(&cluster, &watch).await;
        cluster.note(format!("sleeping-leader probe: {outcome}"));
    }
    if config.late_retry {
        let outcome = targets.late_retry(&cluster, &watch).await;
        cluster.note(format!("late-retry probe: {outcome}"));
    }
    let partition_ends = workload::partition_ends(&client, &cluster).await;
    if partition_ends.len() != load.partitions as usize {
        problems.push(format!("V1: no partition end within {LIVENESS_BOUND:?} for some partition (got {partition_ends:?})"));
    }

    // 4. Final drain (V3), then the replicas converge (R7).
    cluster.history().final_drain().expect("history");
    let (drained, log_dump) = match workload::drain(&client, cluster.clone(), partition_ends.clone()).await {
        Ok(drained) => drained,
        Err(problem) => {
            problems.push(problem);
            Default::default()
        }
    };
    cluster.note(format!("final drain read {drained} records"));
    // C1: every group's committed offsets, read after the drain marker (an acked commit survived).
    if !groups.is_empty() {
        for group in workload::groups::final_fetches(&client, cluster.clone(), groups).await {
            problems.push(format!("V3: no fetch of group {group}'s committed offsets within {LIVENESS_BOUND:?}"));
        }
    }
    // V5: every move completed and each group's configuration is its replicas.
    if config.membership {
        match workload::membership::converges(&client, &cluster, &raft).await {
            Ok(after) => cluster.note(format!("V5: membership converged {} ms after the drain", after.as_millis())),
            Err(problem) => problems.push(problem),
        }
    }
    // V6: the departed node holds nothing, the joined one votes in the metadata group.
    if config.grow_shrink {
        match targets.grow_shrink_converges(&raft).await {
            Ok(after) => cluster.note(format!("V6: the grown and shrunk membership converged {} ms after the drain", after.as_millis())),
            Err(problem) => problems.push(problem),
        }
        // V7: the removed node served no client once it was removed (checked before it stopped).
        problems.extend(targets.grow_shrink_violations());
    }
    match converge(&cluster, &raft).await {
        Ok(after) => cluster.note(format!("R7: every group converged {} ms after the drain", after.as_millis())),
        Err(diverged) => {
            problems.extend(diverged.into_iter().map(|(group, live)| {
                format!("R7: group {group} did not converge within {CONVERGENCE_WAIT:?}: applied index per node {live:?}")
            }));
            problems.extend(still_quarantined(&cluster).into_iter().map(|node| {
                format!(
                    "R7: node {node} is still quarantined {CONVERGENCE_WAIT:?} after the drain: its metadata replica was never repaired"
                )
            }));
        }
    }
    // R12 b: every replica that needed entries retention deleted elsewhere got a snapshot.
    problems.extend(retention_lags_served(&cluster, &raft).await);
    // R12 c: retention keeps up with topic `t`'s limits on every live replica.
    if cluster.retention.is_some() {
        problems.extend(retention_kept_up(&cluster).await);
    }
    observe::uninstall();

    // 5. Checks.
    let history = std::mem::replace(&mut *cluster.history(), HistoryBuilder::new(|| 0)).finish();
    // L12 a fails the run: the native consumers ask each fetch for a read barrier
    // (`fresh_high_watermark`). The Kafka-protocol consumer (`--kafka`) cannot ask (Kafka's fetch
    // has no such field), and any replica may answer it: there L12 a is only reported.
    let options = CheckOptions { log_dump: Some(log_dump), stale_hw_fatal: !config.kafka, ..CheckOptions::default() };
    let verdict = check(&history, &options);
    let trace_hash = trace_hash(&history);
    if acked == 0 && config.planted_bugs.is_empty() {
        problems.push("V2: nothing was acknowledged".into());
    }
    let raft_events = raft.borrow().events;
    let timeline = cluster.take_timeline();
    let mut coverage = coverage.take();
    count_timeline_and_verdict(&mut coverage, &timeline, &verdict);
    for (name, count) in cluster.open_files.lock().expect("open files lock").iter() {
        *coverage.entry(format!("open-file budget {name}")).or_default() += count;
    }
    let retention = raft.borrow().retention;
    *coverage.entry(RETENTION_PATHS[0].to_string()).or_default() += retention.replicas_lagging;
    *coverage.entry(RETENTION_PATHS[1].to_string()).or_default() += retention.snapshots_served;
    Report {
        coverage,
        node_count,
        plan,
        timeline,
        verdict,
        raft_events,
        problems,
        fault_count: injected.len(),
        injected,
        acked,
        failed,
        drained,
        partition_ends,
        sim_seconds: cluster.start.elapsed().as_secs_f64(),
        trace_hash,
        history,
        config,
    }
}

/// `SIM_LOG=<filter>`: the cluster's tracing output on stderr (the schedule does not change).
fn log_to_stderr_if_asked() {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ =
            tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).try_init();
    }
}

/// White-box raft checks: installs the hook that feeds every replica's events (on this thread)
/// to a raft checker, notes leader changes and recovery events in the timeline, records the
/// leader changes of the run's topic in the history, and stops the run on the first violation.
fn observe_replicas(
    cluster: &Arc<SimCluster>,
    seed: u64,
    coverage: Rc<RefCell<BTreeMap<String, u64>>>,
    watch: Rc<RefCell<nemesis::fault::probe::GroupWatch>>,
) -> Rc<RefCell<RaftChecker>> {
    let raft = Rc::new(RefCell::new(RaftChecker::default()));
    // SIM_TRACE_GROUP=<group>: print that raft group's white-box events (stderr only; the
    // schedule does not change). Read once, not per event.
    let trace_group: Option<u64> = std::env::var("SIM_TRACE_GROUP").ok().and_then(|g| g.parse().ok());
    let (checker, cluster) = (raft.clone(), cluster.clone());
    observe::install(move |event| {
        // A wipe reaches the checker before any event of the node's next incarnation.
        for node in cluster.take_wipes_unrecorded() {
            checker.borrow_mut().record_wipe(node);
        }
        watch.borrow_mut().record(&event);
        match event {
            Event::Leader { node, group, term } => {
                cluster.note(format!("group {group}: node {node} leads term {term}"));
                // Topic `t` is the first topic of a fresh cluster: its partitions are raft
                // groups 1..=partitions (the controller numbers groups from 1 in creation
                // order). The checker needs leader changes to tell an explained acks=1 loss
                // from a bug.
                if (1..=u64::from(cluster.load.partitions)).contains(&group) {
                    cluster.history().leader_change(group - 1, Some(node)).expect("history");
                }
            }
            Event::RecoveryCut { node, group, index, .. } => {
                cluster.note(format!("group {group}: node {node}'s recovery cut a torn tail from index {index} on"));
            }
            Event::Suspect { node, group, cut, bound, .. } => {
                cluster.note(format!("group {group}: node {node} is suspect (may have lost {cut}..={bound}): no votes"));
            }
            Event::SetAside { node, group } => {
                cluster.note(format!("group {group}: node {node} set its damaged replica's files aside to rebuild it"));
            }
            Event::Repaired { node, group } => {
                cluster.note(format!("group {group}: node {node}'s rebuilt replica caught up: repaired"));
                if group == odradek_server::meta::METADATA_GROUP {
                    // Its metadata replica rebuilt (issue 15, `meta_repair`): a node like any other.
                    cluster.passive.lock().expect("passive lock").remove(&node);
                }
            }
            Event::HandOver { node, group, to, cause, matched } => {
                cluster.note(format!("group {group}: node {node} hands the leadership to node {to} ({}, matched {matched})", cause.name()));
            }
            Event::SuspectCleared { node, group, durable } => {
                cluster.note(format!("group {group}: node {node} settled its suspicion, durable to {durable}"));
            }
            Event::LogStart { node, group, first_index, offset_start, commit, .. } => {
                cluster.note(format!(
                    "group {group}: node {node}'s retention moved its log start to index {first_index} (offset {offset_start}), \
                     commit {commit}"
                ));
                // Records of topic `t` below it may be gone: L6, L7, L13 and P1–P4 skip them.
                if (1..=u64::from(cluster.load.partitions)).contains(&group) {
                    cluster.history().log_start(group - 1, offset_start).expect("history");
                }
            }
            _ => {}
        }
        if let Some(g) = trace_group {
            let t = cluster.start.elapsed().as_secs_f64();
            if event.group() == g {
                eprintln!("trace {t:.3} {event:?}");
            }
        }
        if let Some(path) = event_path(&event) {
            *coverage.borrow_mut().entry(path.to_string()).or_default() += 1;
        }
        let mut checker = checker.borrow_mut();
        // R6 against the disk: what a vote grant or an accepted append promises is durable on the
        // node's disk as it leaves (read only: the schedule does not change).
        match event {
            Event::VoteGranted { node, group, to, term, .. } => {
                checker.record_vote_on_disk(node, group, to, term, cluster.hard_state_on_disk(node, group));
            }
            Event::AppendAccepted { node, group, to, index, .. } => {
                checker.record_append_on_disk(node, group, to, index, &cluster.segments_unsynced(node, group));
            }
            // R12 d: the start state that outlives the deleted entries is on the disk.
            Event::LogStart { node, group, first_index, .. } => {
                checker.record_log_start_on_disk(node, group, first_index, cluster.start_state_on_disk(node, group));
            }
            _ => {}
        }
        checker.record(event);
        // A violation stops the run at once, naming the invariant, the group and the values.
        if let Some(violation) = checker.violations().first() {
            panic!("{violation} (seed {seed})");
        }
    });
    raft
}

/// The coverage counters' names for raft events, in [`event_path`]'s order.
const EVENT_PATHS: [&str; 22] = [
    "path leader elected",
    "path snapshot installed",
    "path recovery cut, suspect",
    "path recovery cut, torn tail",
    "path suspect opened",
    "path suspect vote granted (R8 e checked)",
    "path suspicion cleared",
    "check R5 acks=all ack",
    "check R6 append accepted",
    "check R6 vote granted",
    "check R3/R4 entry applied",
    "check R6 log reopened",
    "check R10 configuration applied",
    "check R11 learner promoted",
    "path replica destroyed",
    "path damaged replica set aside",
    "path quarantined replica repaired",
    "path group hibernated",
    "path group woke",
    "path retention moved log start",
    "path metadata replica repaired",
    "check R13 leadership handed over",
];

/// The raft checker's R12 counters (`RetentionCounts`): a replica behind entries another's
/// retention deleted, and a snapshot that caught one up.
const RETENTION_PATHS: [&str; 2] = ["path retention under lag", "path snapshot install after retention"];

/// Timeline notes that show a rare path: (text in the line, counter name).
const TIMELINE_PATHS: [(&str, &str); 8] = [
    ("started quarantined", "path node started quarantined"),
    ("one copy (copy", "path state file: one copy flipped"),
    ("both copies flipped at bits", "path state file: both copies flipped"),
    ("could not start", "path node start failed"),
    ("stopped on a fatal error", "path node stopped on a fatal error"),
    ("delete Ok(Ok(()))", "path churned topic deleted"),
    ("start state lost:", "path start state: renames lost"),
    ("start state damaged:", "path start state: file damaged"),
];

/// The rare path or check a raft event shows ran, for the coverage counters (`Report::coverage`).
fn event_path(event: &Event) -> Option<&'static str> {
    let index = match event {
        Event::Leader { .. } => 0,
        Event::Restored { .. } => 1,
        Event::RecoveryCut { suspect: true, .. } => 2,
        Event::RecoveryCut { suspect: false, .. } => 3,
        Event::Suspect { .. } => 4,
        Event::SuspectVote { .. } => 5,
        Event::SuspectCleared { .. } => 6,
        Event::Acked { .. } => 7,
        Event::AppendAccepted { .. } => 8,
        Event::VoteGranted { .. } => 9,
        Event::Applied { .. } => 10,
        Event::Opened { .. } => 11,
        Event::ConfApplied { source: observe::ConfSource::Applied, .. } => 12,
        Event::Promoted { .. } => 13,
        Event::Destroyed { .. } => 14,
        Event::SetAside { .. } => 15,
        Event::Repaired { group: odradek_server::meta::METADATA_GROUP, .. } => 20,
        Event::Repaired { .. } => 16,
        Event::Hibernated { .. } => 17,
        Event::Woke { .. } => 18,
        Event::LogStart { .. } => 19,
        Event::HandOver { .. } => 21,
        Event::Passive { .. } => return None,
        Event::ConfApplied { .. } => return None,
        Event::Appended { .. } | Event::Durable { .. } => return None,
    };
    Some(EVENT_PATHS[index])
}

/// Adds to `coverage` the faults the timeline names (each line's first `F-` ID), the rare paths
/// it notes, and each history anomaly kind the verdict reported (not fatal) or failed on.
fn count_timeline_and_verdict(coverage: &mut BTreeMap<String, u64>, timeline: &[String], verdict: &odradek_jepsen::checker::Verdict) {
    for line in timeline {
        let fault = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).find(|word| {
            word.len() >= 4
                && word.starts_with("F-")
                && word[2..3].chars().all(|c| c.is_ascii_uppercase())
                && word[3..].chars().all(|c| c.is_ascii_digit())
        });
        if let Some(fault) = fault {
            *coverage.entry(format!("fault {fault}")).or_default() += 1;
        }
        for (needle, path) in TIMELINE_PATHS {
            if line.contains(needle) {
                *coverage.entry(path.to_string()).or_default() += 1;
            }
        }
    }
    for (kind, count) in &verdict.counts {
        if count.reported > 0 {
            *coverage.entry(format!("anomaly {} reported", kind.name())).or_default() += count.reported;
        }
    }
}

/// R7: once quiet, every live replica of a group applies the same index (the leaders'
/// heartbeats carry the commit index within a few ticks). Checks every 100 ms up to
/// [`CONVERGENCE_WAIT`]; returns how long it took, or each group whose replicas still differ
/// with its applied index per node. Nodes given up do not count. A node whose replica F-S3
/// damaged counts: the replica is repaired (issue 15: set aside, rebuilt and caught up) or R7
/// fails, so no replica is left out of its group forever; a node whose metadata replica F-S3
/// damaged (it started passive) too: its metadata replica is rebuilt (`meta_repair`) and it
/// converges in every group, or R7 fails.
async fn converge(cluster: &SimCluster, raft: &RefCell<RaftChecker>) -> Result<Duration, Vec<(u64, BTreeMap<u64, u64>)>> {
    let quiet = tokio::time::Instant::now();
    loop {
        let down = cluster.given_up();
        // Borrowed only for this look: the replicas' events go on arriving while this waits.
        // A node outside a group's newest configuration no longer hosts it (a move took its
        // replica away): it is not waited for.
        let diverged = diverged_replicas(&raft.borrow(), &down);
        if diverged.is_empty() && still_quarantined(cluster).is_empty() {
            return Ok(quiet.elapsed());
        }
        if quiet.elapsed() >= CONVERGENCE_WAIT {
            return Err(diverged);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member nodes that started quarantined (their metadata replica damaged) and are not repaired
/// yet, nor given up: R7 waits for them too, since a node whose metadata did not move since
/// its damage shows no divergence by its applied indexes alone.
fn still_quarantined(cluster: &SimCluster) -> Vec<u64> {
    let down = cluster.given_up();
    let members = cluster.members_now();
    let passive = cluster.passive.lock().expect("passive lock").clone();
    passive.into_iter().filter(|node| !down.contains(node) && members.contains(node)).collect()
}

/// R12 b: waits (every 100 ms, up to [`CONVERGENCE_WAIT`]) until no live replica is still behind
/// entries another replica's retention deleted (R7 does not see a replica that never applied
/// anything); returns one problem per replica still behind. Returns at once, without waiting,
/// when none is (every run without short retention).
async fn retention_lags_served(cluster: &SimCluster, raft: &RefCell<RaftChecker>) -> Vec<String> {
    let quiet = tokio::time::Instant::now();
    loop {
        let mut down = cluster.given_up();
        down.extend(cluster.corrupted.lock().expect("corrupted lock").iter().copied());
        let unserved = raft.borrow().retention_lag_unserved(&down);
        if unserved.is_empty() || quiet.elapsed() >= CONVERGENCE_WAIT {
            return unserved;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long R12 c gives retention to catch up once the run settled: three periods of the
/// controller's retention chore (5 s), so a replica whose last check just missed a segment
/// ageing out is not blamed.
const RETENTION_KEEP_UP_WAIT: Duration = Duration::from_secs(16);

/// R12 c: waits (every 500 ms, up to [`RETENTION_KEEP_UP_WAIT`]) until no live replica of topic
/// `t` has segments its retention limits make due (`Node::retention_overdue`, under the bound
/// retention keeps by itself: below the commit and applied indexes); returns one problem per
/// replica still behind. Retention that stops checking a group (a stale candidates view) lets
/// its log grow past its limits for good, which no other check sees.
async fn retention_kept_up(cluster: &SimCluster) -> Vec<String> {
    let began = tokio::time::Instant::now();
    loop {
        let overdue = retention_overdue(cluster).await;
        if overdue.is_empty() || began.elapsed() >= RETENTION_KEEP_UP_WAIT {
            return overdue
                .into_iter()
                .map(|(node, group, segments)| {
                    format!(
                        "R12: node {node}'s replica of group {group} still holds {segments} segment(s) past topic {TOPIC}'s retention {RETENTION_KEEP_UP_WAIT:?} after the run settled (R12 c)"
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// (node, group, segments due) for each replica of topic `t` on a live member node whose
/// retention has segments to delete now. Nodes given up, quarantined (they run no controller
/// chores) or corrupted (a replica set aside is rebuilt) are skipped.
async fn retention_overdue(cluster: &SimCluster) -> Vec<(u64, u64, usize)> {
    let mut skipped: BTreeSet<u64> = cluster.given_up().into_iter().collect();
    skipped.extend(cluster.corrupted.lock().expect("corrupted lock").iter().copied());
    skipped.extend(cluster.passive.lock().expect("passive lock").iter().copied());
    let members = cluster.members_now();
    let up: Vec<u64> = cluster
        .node_status
        .lock()
        .expect("status lock")
        .iter()
        .filter(|(node, status)| matches!(status, NodeStatus::Up) && !skipped.contains(node))
        .map(|(&node, _)| node)
        .filter(|node| members.contains(node))
        .collect();
    let mut overdue = Vec::new();
    for node in up {
        let Some(probe) = cluster.servers.lock().expect("servers lock").get(&node).cloned() else { continue };
        let groups: Vec<u64> = {
            let state = probe.state.lock();
            state.meta.topic(TOPIC).iter().flat_map(|topic| &topic.partitions).map(|info| info.group).collect()
        };
        for group in groups {
            // A group the node does not host (or a crashed incarnation's handle) has nothing due.
            if let Ok(segments @ 1..) = probe.node.retention_overdue(group).await {
                overdue.push((node, group, segments));
            }
        }
    }
    overdue
}

/// R7's look: each group whose live replicas (not `down`, and in the group's newest
/// configuration: a node a move took the replica from no longer hosts it) applied different
/// indexes, with the applied index per node.
fn diverged_replicas(checker: &RaftChecker, down: &[u64]) -> Vec<(u64, BTreeMap<u64, u64>)> {
    checker
        .applied_by_node()
        .into_iter()
        .map(|(group, applied)| {
            let member = |node: &u64| checker.members(group).is_none_or(|members| members.contains(*node));
            (group, applied.into_iter().filter(|(node, _)| !down.contains(node) && member(node)).collect::<BTreeMap<u64, u64>>())
        })
        .filter(|(_, live)| live.values().collect::<BTreeSet<_>>().len() > 1)
        .collect()
}

/// FNV-1a over the history's JSON lines: equal for two runs of one seed.
fn trace_hash(history: &History) -> u64 {
    let mut lines = Vec::new();
    history.write_json_lines(&mut lines).expect("history serializes");
    lines.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}
