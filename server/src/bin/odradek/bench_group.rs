//! `odradek bench consume --group G --members K`: a consumer group's throughput, its commit
//! latency, and how long a dead member's partitions go unconsumed.
//!
//! Phase 1 (throughput): K members (tasks of this process, each its own client) join G,
//! subscribed to the topic, and read what the topic holds now, each committing after every
//! non-empty poll (a synchronous commit, the offsets after the records it returned). Reported:
//! records/s and MB/s of the group, commit latency percentiles.
//!
//! Phase 2 (failover, K ≥ 2): a producer keeps every partition fed (one record per partition
//! every [`FEED_INTERVAL`]); once every member has consumed a fresh record, one member is
//! dropped without leaving (as a crashed process: no LeaveGroup, its heartbeats stop). Reported:
//! per partition it owned, the time from its death until another member consumed a record of
//! that partition, with the session timeout, since that is what the coordinator waits for.
//!
//! Bounds: phase 1 stops at the target or after [`THROUGHPUT_PHASE_MAX`]; phase 2 waits at most
//! the session timeout plus [`FAILOVER_SLACK`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use odradek_client::{Consumer, ConsumerConfig, OffsetQuery, OffsetReset, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::watch;

use crate::client_commands::{Bootstrap, GroupProtocolArg};
use crate::output::{note, say};

/// Longest the throughput phase runs.
pub const THROUGHPUT_PHASE_MAX: Duration = Duration::from_secs(300);
/// How long after the session timeout the failover phase waits before it gives up.
pub const FAILOVER_SLACK: Duration = Duration::from_secs(30);
/// Phase 2: one record per partition this often.
pub const FEED_INTERVAL: Duration = Duration::from_millis(20);
/// Most members one bench runs.
pub const MEMBERS_MAX: u32 = 64;
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub struct GroupBenchArgs {
    /// Consume as this consumer group (its members share the partitions and commit).
    /// Not required on its own: without it (and the settings below) the bench is one consumer.
    #[arg(long, short = 'g', required = false)]
    pub group: String,
    /// Members of the group (tasks of this process, each its own client).
    #[arg(long, default_value_t = 3)]
    pub members: u32,
    #[arg(long, value_enum, default_value = "consumer")]
    pub group_protocol: GroupProtocolArg,
    /// The members' session timeout (ms): how long the coordinator waits for a silent member.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Classic protocol: the heartbeat interval (ms).
    #[arg(long, default_value_t = 1_000)]
    pub heartbeat_interval_ms: u64,
    /// Skip the failover phase.
    #[arg(long)]
    pub no_failover: bool,
}

/// What the members share.
struct Shared {
    records: AtomicU64,
    bytes: AtomicU64,
    commit_errors: AtomicU64,
    commit_latency: Mutex<Histogram<u64>>,
    /// Per partition: the member that last consumed a record of it, and when.
    consumed: Mutex<BTreeMap<u32, (u32, Instant)>>,
    /// Per member: its assignment after its last poll.
    assignment: Mutex<BTreeMap<u32, BTreeSet<u32>>>,
}

fn member_config(args: &GroupBenchArgs, fetch_bytes: u32, index: u32, cluster: &odradek_client::ClusterConfig) -> ConsumerConfig {
    let mut config = ConsumerConfig {
        bytes_max: fetch_bytes,
        group_id: Some(args.group.clone()),
        group_protocol: args.group_protocol.to_protocol(),
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
        enable_auto_commit: false,
        group_offset_reset: OffsetReset::Earliest,
        cluster: cluster.clone(),
        ..ConsumerConfig::default()
    };
    config.cluster.client_id = format!("bench-member-{index}");
    config
}

/// One member: polls, counts, commits after every non-empty poll; leaves the group on `stop`.
async fn member(
    index: u32,
    addresses: Vec<String>,
    config: ConsumerConfig,
    topic: String,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let bootstrap: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let Ok(mut consumer) = Consumer::new(&bootstrap, config) else { return };
    if consumer.subscribe([topic]).is_err() {
        return;
    }
    while !*stop.borrow() {
        let polled = tokio::select! {
            biased;
            _ = stop.changed() => break,
            polled = consumer.poll(POLL_TIMEOUT) => polled,
        };
        let assigned: BTreeSet<u32> = consumer.assignment().iter().map(|(_, p)| *p).collect();
        shared.assignment.lock().unwrap().insert(index, assigned);
        let Ok(records) = polled else { continue };
        if records.is_empty() {
            continue;
        }
        let now = Instant::now();
        let mut next = BTreeMap::new();
        {
            let mut consumed = shared.consumed.lock().unwrap();
            for record in &records {
                consumed.insert(record.partition, (index, now));
                next.insert((record.topic.clone(), record.partition), record.offset + 1);
            }
        }
        shared.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        let bytes: u64 = records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64).sum();
        shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        let started = Instant::now();
        match consumer.commit_offsets(next).await {
            Ok(_) => shared.commit_latency.lock().unwrap().saturating_record((started.elapsed().as_micros() as u64).max(1)),
            Err(_) => {
                shared.commit_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = consumer.close().await;
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub async fn consume_group(
    bootstrap: &Bootstrap,
    topic: &str,
    records_max: u64,
    fetch_bytes: u32,
    args: GroupBenchArgs,
) -> Result<(), String> {
    if args.members == 0 || args.members > MEMBERS_MAX {
        return Err(format!("--members {} outside 1..={MEMBERS_MAX}", args.members));
    }
    let addresses: Vec<String> = bootstrap.addresses().into_iter().map(String::from).collect();
    let admin = bootstrap.admin()?;
    let cluster = bootstrap.cluster_config()?;
    let info = admin.describe_topic(topic).await.map_err(|e| e.to_string())?;
    let mut target = 0;
    for partition in &info.partitions {
        let start = admin.list_offsets(topic, partition.partition, OffsetQuery::Earliest).await.map_err(|e| e.to_string())?.offset;
        let end = admin.list_offsets(topic, partition.partition, OffsetQuery::Latest).await.map_err(|e| e.to_string())?.offset;
        target += end - start;
    }
    if records_max > 0 {
        target = target.min(records_max);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    say!(
        "bench consume --group: group {:?} ({:?} protocol), {} members, topic {topic:?} ({} partitions), {target} records, fetch {fetch_bytes} B, \
         commit after every non-empty poll (sync), member session timeout {} ms (the consumer protocol's is the nodes' setting), \
         heartbeat {} ms; machine: {cores} cores",
        args.group,
        args.group_protocol,
        args.members,
        info.partitions.len(),
        args.session_timeout_ms,
        args.heartbeat_interval_ms
    );
    let shared = Arc::new(Shared {
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        commit_errors: AtomicU64::new(0),
        commit_latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")),
        consumed: Mutex::new(BTreeMap::new()),
        assignment: Mutex::new(BTreeMap::new()),
    });
    let (stop_all, stopping) = watch::channel(false);
    let start = Instant::now();
    let mut members = BTreeMap::new();
    for index in 0..args.members {
        let config = member_config(&args, fetch_bytes, index, &cluster);
        let task = member(index, addresses.clone(), config, topic.to_string(), shared.clone(), stopping.clone());
        members.insert(index, tokio::spawn(task));
    }
    // Phase 1: the group reads what the topic holds.
    let mut last = (Instant::now(), 0);
    while shared.records.load(Ordering::Relaxed) < target && start.elapsed() < THROUGHPUT_PHASE_MAX {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = shared.records.load(Ordering::Relaxed);
            note!("{:>6.1} s  {:>9} records/s  {now} read", start.elapsed().as_secs_f64(), now - last.1);
            last = (Instant::now(), now);
        }
    }
    let elapsed = start.elapsed();
    let (records, bytes) = (shared.records.load(Ordering::Relaxed), shared.bytes.load(Ordering::Relaxed));
    let seconds = elapsed.as_secs_f64().max(1e-9);
    {
        let latency = shared.commit_latency.lock().unwrap();
        say!(
            "group consume: {records} records in {seconds:.2} s (from the first member's start, joins included): {:.0} records/s, {:.2} MB/s; \
             {} commits, latency ms p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}; {} commits failed",
            records as f64 / seconds,
            bytes as f64 / seconds / 1e6,
            latency.len(),
            ms(latency.value_at_quantile(0.50)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.value_at_quantile(0.999)),
            ms(latency.max()),
            shared.commit_errors.load(Ordering::Relaxed)
        );
    }
    if records < target {
        let _ = stop_all.send(true);
        return Err(format!("the group read {records} of {target} records within {} s", THROUGHPUT_PHASE_MAX.as_secs()));
    }
    let failover = if args.members >= 2 && !args.no_failover {
        failover(&addresses, &cluster, topic, &info, &args, &shared, &mut members).await
    } else {
        Ok(())
    };
    let _ = stop_all.send(true);
    for (_, task) in members {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    failover
}

/// Phase 2: keep the partitions fed, drop one member, time until its partitions are read again.
async fn failover(
    addresses: &[String],
    cluster: &odradek_client::ClusterConfig,
    topic: &str,
    info: &odradek_client::TopicInfo,
    args: &GroupBenchArgs,
    shared: &Arc<Shared>,
    members: &mut BTreeMap<u32, tokio::task::JoinHandle<()>>,
) -> Result<(), String> {
    let bootstrap: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let producer = Producer::new(&bootstrap, ProducerConfig { cluster: cluster.clone(), ..ProducerConfig::default() })
        .await
        .map_err(|e| e.to_string())?;
    let partitions: Vec<u32> = info.partitions.iter().map(|p| p.partition).collect();
    let (stop_feed, mut feed_stopping) = watch::channel(false);
    let feed = {
        let (topic, partitions) = (topic.to_string(), partitions.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FEED_INTERVAL);
            loop {
                tokio::select! {
                    biased;
                    _ = feed_stopping.changed() => break,
                    _ = ticker.tick() => {}
                }
                for &partition in &partitions {
                    let record = ProducerRecord::new(topic.clone(), b"failover".to_vec()).partition(partition);
                    if let Ok(delivery) = producer.send(record).await {
                        drop(delivery); // acknowledged in the background
                    }
                }
            }
            let _ = producer.close().await;
        })
    };
    // Steady state: every partition consumed after the feed began, by a member that owns it.
    let fed = Instant::now();
    let steady_by = fed + Duration::from_millis(args.session_timeout_ms) + FAILOVER_SLACK;
    let victim = loop {
        let consumed = shared.consumed.lock().unwrap().clone();
        let steady = partitions.iter().all(|p| consumed.get(p).is_some_and(|(_, at)| *at > fed));
        let assignment = shared.assignment.lock().unwrap().clone();
        let victim = assignment.iter().find(|(_, owned)| !owned.is_empty()).map(|(index, owned)| (*index, owned.clone()));
        match victim {
            Some(victim) if steady => break victim,
            _ if Instant::now() > steady_by => {
                let _ = stop_feed.send(true);
                return Err("the group never reached a steady state with the feed running".into());
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (index, owned) = victim;
    // The member dies: its task (and with it its client, heartbeats and all) is dropped.
    members.remove(&index).expect("a running member").abort();
    let died = Instant::now();
    let deadline = died + Duration::from_millis(args.session_timeout_ms) + FAILOVER_SLACK;
    let mut resumed: BTreeMap<u32, Duration> = BTreeMap::new();
    while resumed.len() < owned.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let consumed = shared.consumed.lock().unwrap();
        for partition in &owned {
            if let Some((by, at)) = consumed.get(partition) {
                if *by != index && *at > died {
                    resumed.entry(*partition).or_insert_with(|| at.duration_since(died));
                }
            }
        }
    }
    let _ = stop_feed.send(true);
    let _ = feed.await;
    let owned_list: Vec<String> = owned.iter().map(u32::to_string).collect();
    if resumed.len() < owned.len() {
        return Err(format!(
            "member {index} died owning partitions {}; only {} of them were consumed again within {} s",
            owned_list.join(","),
            resumed.len(),
            (deadline - died).as_secs()
        ));
    }
    let times: Vec<String> = resumed.iter().map(|(p, d)| format!("{p}: {} ms", d.as_millis())).collect();
    let worst = resumed.values().max().expect("at least one partition");
    say!(
        "member death -> its partitions consumed again: max {} ms (per partition {}); {:?} protocol, session timeout {}",
        worst.as_millis(),
        times.join(", "),
        args.group_protocol,
        match args.group_protocol {
            GroupProtocolArg::Classic => format!("{} ms (sent by the members)", args.session_timeout_ms),
            GroupProtocolArg::Consumer => "the coordinator's (`--group-session-timeout-ms` of the nodes)".to_string(),
        }
    );
    Ok(())
}
