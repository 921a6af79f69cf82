//! Topic churn (plan field `topic_churn`, issue 15): while the nemesis runs, topics named
//! `churn-0` and `churn-1` are created (again: TOPIC_ALREADY_EXISTS), grown by AddPartitions
//! (again and again: refused once at the count), written to, and on every other visit of a
//! name deleted, so the next visit re-creates it. Every outcome is noted (faults make any of
//! them fail); R7 forgets a replica its node destroyed (`Event::Destroyed`), so a deleted
//! topic's groups are not waited for. After the heal, [`final_check`] creates `churn-final`,
//! grows it, and checks on every topic the metadata has:
//! - **PL1** (placement): every partition has exactly the topic's replication factor of
//!   replicas, all distinct, all nodes of the cluster; every partition of the grown topic is
//!   served: one record is acknowledged on each;
//! - **DT1** (a deleted topic's records stay deleted): a record acknowledged on a topic before
//!   an acknowledged deletion of it is never read from the topic created later under the same
//!   name. Kafka added topic ids for this (KIP-516): a replica that missed a deletion must not
//!   serve its old log as the new topic's. A write or a deletion whose outcome is unknown
//!   constrains nothing (a write retried late may land in the new topic).
//!
//! Nothing here touches the checked topic `t` or the history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::{ClientError, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use tokio::task::JoinHandle;

use crate::cluster::SimCluster;
use crate::config::LIVENESS_BOUND;

/// Names churned through (each comes back every few rounds).
const CHURN_NAMES: u64 = 2;
/// Pause between two churn steps.
const STEP_PAUSE: Duration = Duration::from_millis(300);
/// Bound on one admin call or send during the churn (faults may hold it forever otherwise).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Replication factor of the churned topics.
const REPLICATION_FACTOR: usize = 3;
/// The topic grown after the heal, and its partition counts before and after.
const FINAL_TOPIC: &str = "churn-final";
const FINAL_PARTITIONS_BEFORE: u32 = 1;
const FINAL_PARTITIONS_AFTER: u32 = 3;

async fn producer(cluster: &SimCluster) -> Option<Producer> {
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ProducerConfig {
        request_timeout: STEP_TIMEOUT,
        delivery_timeout: Duration::from_secs(20),
        cluster: cluster.client_config(),
        ..ProducerConfig::default()
    };
    Producer::new(&addresses, config).await.ok()
}

/// The partition the churn writes to (every churned topic has at least 2).
const WRITTEN_PARTITION: u32 = 1;

/// What the churn saw, for DT1.
#[derive(Debug, Default)]
pub struct Churned {
    pub rounds: u64,
    /// Topic name -> the values acknowledged on it and not (yet) under an acknowledged deletion.
    acked_live: BTreeMap<String, BTreeSet<String>>,
    /// Topic name -> the values acknowledged on it before an acknowledged deletion of it.
    deleted: BTreeMap<String, BTreeSet<String>>,
}

/// Starts the churn on the client node until `duration` has passed; resolves to what it saw.
pub fn start(client: &NodeHandle, cluster: Arc<SimCluster>, duration: Duration) -> JoinHandle<Churned> {
    client.spawn(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let mut churned = Churned::default();
        let Some(admin) = cluster.admin() else { return churned };
        while tokio::time::Instant::now() < deadline {
            let round = churned.rounds;
            let name = format!("churn-{}", round % CHURN_NAMES);
            let created =
                tokio::time::timeout(STEP_TIMEOUT, admin.create_topic(&name, 1, REPLICATION_FACTOR as u32, TopicConfig::default())).await;
            tokio::time::sleep(STEP_PAUSE).await;
            let grown = tokio::time::timeout(STEP_TIMEOUT, admin.alter_topic(&name, Some(2 + (round % 2) as u32), &[], false)).await;
            tokio::time::sleep(STEP_PAUSE).await;
            let value = format!("r{round}");
            let written = match producer(&cluster).await {
                Some(producer) => {
                    let sent = producer.send(ProducerRecord::new(name.clone(), value.clone()).partition(WRITTEN_PARTITION)).await;
                    let outcome = match sent {
                        Ok(delivery) => tokio::time::timeout(STEP_TIMEOUT, delivery).await.map(|result| result.map(drop)),
                        Err(error) => Ok(Err(error)),
                    };
                    let _ = tokio::time::timeout(STEP_TIMEOUT, producer.close()).await;
                    if matches!(outcome, Ok(Ok(()))) {
                        churned.acked_live.entry(name.clone()).or_default().insert(value.clone());
                    }
                    format!("{outcome:?}")
                }
                None => "no producer".to_string(),
            };
            // Every other visit of a name ends with its deletion; the next visit re-creates it.
            let deleted = if (round / CHURN_NAMES) % 2 == 1 {
                tokio::time::sleep(STEP_PAUSE).await;
                let deleted = tokio::time::timeout(STEP_TIMEOUT, admin.delete_topic(&name)).await;
                if matches!(deleted, Ok(Ok(()))) {
                    let acked = churned.acked_live.remove(&name).unwrap_or_default();
                    churned.deleted.entry(name.clone()).or_default().extend(acked);
                }
                format!(", delete {deleted:?}")
            } else {
                String::new()
            };
            cluster.note(format!(
                "churn {name}: create {created:?}, grow {grown:?}, write {value} to partition {WRITTEN_PARTITION} {written}{deleted}"
            ));
            churned.rounds += 1;
        }
        churned
    })
}

/// Retries `attempt` on retriable errors within the liveness bound.
async fn until_done<T, F, Fut>(mut attempt: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
    loop {
        match attempt().await {
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            outcome => return outcome,
        }
    }
}

/// After the heal: grows `churn-final` and checks PL1 and DT1 on every topic; the problems found.
pub async fn final_check(client: &NodeHandle, cluster: Arc<SimCluster>, churned: Churned) -> Vec<String> {
    client
        .spawn(async move {
            let Some(admin) = cluster.admin() else { return vec!["PL1: no admin client".to_string()] };
            let mut problems = Vec::new();
            let created =
                until_done(|| admin.create_topic(FINAL_TOPIC, FINAL_PARTITIONS_BEFORE, REPLICATION_FACTOR as u32, TopicConfig::default()))
                    .await;
            if let Err(error) = created {
                return vec![format!("PL1: creating {FINAL_TOPIC} failed after the heal: {error}")];
            }
            // Grown only once its first partition is served (every replica has hosted it).
            if let Err(problem) = serve_each(&cluster, FINAL_PARTITIONS_BEFORE).await {
                return vec![problem];
            }
            let grown = until_done(|| admin.alter_topic(FINAL_TOPIC, Some(FINAL_PARTITIONS_AFTER), &[], false)).await;
            if let Err(error) = grown {
                return vec![format!("PL1: growing {FINAL_TOPIC} to {FINAL_PARTITIONS_AFTER} partitions failed after the heal: {error}")];
            }
            let nodes: BTreeSet<u64> = (1..=cluster.bootstrap().len() as u64).collect();
            let names = until_done(|| admin.list_topics()).await.unwrap_or_default();
            for name in names.iter().filter(|name| name.starts_with("churn-")) {
                let Ok(topic) = until_done(|| admin.describe_topic(name)).await else { continue };
                for partition in &topic.partitions {
                    let replicas: BTreeSet<u64> = partition.replicas.iter().copied().collect();
                    if partition.replicas.len() != REPLICATION_FACTOR || replicas.len() != REPLICATION_FACTOR || !replicas.is_subset(&nodes)
                    {
                        problems.push(format!(
                            "PL1: {name}/{} has replicas {:?}: not {REPLICATION_FACTOR} distinct nodes of {nodes:?}",
                            partition.partition, partition.replicas
                        ));
                    }
                }
            }
            if let Err(problem) = serve_each(&cluster, FINAL_PARTITIONS_AFTER).await {
                problems.push(problem);
            }
            let mut read = 0;
            for name in names.iter().filter(|name| churned.deleted.contains_key(*name)) {
                match read_partition(&cluster, name).await {
                    Ok(values) => {
                        read += values.len();
                        for value in values.iter().filter(|value| churned.deleted[name].contains(*value)) {
                            problems.push(format!(
                                "DT1: {name}/{WRITTEN_PARTITION} serves {value}, acknowledged before an acknowledged deletion of {name}"
                            ));
                        }
                    }
                    Err(problem) => problems.push(problem),
                }
            }
            let deleted: usize = churned.deleted.values().map(BTreeSet::len).sum();
            cluster.note(format!(
                "churn: PL1 checked on {} topics; DT1 on {} re-created topics ({read} records read, {deleted} acknowledged then deleted); {} problems",
                names.len(),
                names.iter().filter(|name| churned.deleted.contains_key(*name)).count(),
                problems.len()
            ));
            problems
        })
        .await
        .expect("churn check task")
}

/// One record acknowledged on each of the first `partitions` partitions of the final topic.
async fn serve_each(cluster: &SimCluster, partitions: u32) -> Result<(), String> {
    let Some(producer) = producer(cluster).await else { return Err("PL1: no producer".to_string()) };
    for partition in 0..partitions {
        let record = ProducerRecord::new(FINAL_TOPIC, format!("p{partition}")).partition(partition);
        let acked = match producer.send(record).await {
            Ok(delivery) => tokio::time::timeout(LIVENESS_BOUND, delivery)
                .await
                .map_err(|_| "no answer".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = acked {
            let _ = tokio::time::timeout(STEP_TIMEOUT, producer.close()).await;
            return Err(format!("PL1: {FINAL_TOPIC}/{partition} is not served (a new partition must be): {error}"));
        }
    }
    let _ = tokio::time::timeout(STEP_TIMEOUT, producer.close()).await;
    Ok(())
}

/// Every value in `name`'s written partition, from its log start to its end (DT1's read), or
/// why it could not be read within the liveness bound. A topic without that partition (created
/// again, not grown yet) has nothing to read.
async fn read_partition(cluster: &SimCluster, name: &str) -> Result<Vec<String>, String> {
    let Some(admin) = cluster.admin() else { return Err("DT1: no admin client".to_string()) };
    let described = until_done(|| admin.describe_topic(name)).await.map_err(|error| format!("DT1: describing {name}: {error}"))?;
    if described.partitions.len() <= WRITTEN_PARTITION as usize {
        return Ok(Vec::new());
    }
    let end = until_done(|| admin.list_offsets(name, WRITTEN_PARTITION, OffsetQuery::Latest))
        .await
        .map_err(|error| format!("DT1: the end of {name}/{WRITTEN_PARTITION}: {error}"))?
        .offset;
    let bootstrap = cluster.bootstrap();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let config = ConsumerConfig { wait_ms_max: 200, cluster: cluster.client_config(), ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(&addresses, config).map_err(|error| format!("DT1: consumer: {error}"))?;
    consumer.assign(vec![(name.to_string(), WRITTEN_PARTITION)]).map_err(|error| format!("DT1: assign: {error}"))?;
    let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
    while let Err(error) = consumer.seek(name, WRITTEN_PARTITION, Offset::Beginning).await {
        if !error.is_retriable() || tokio::time::Instant::now() >= deadline {
            return Err(format!("DT1: seeking {name}/{WRITTEN_PARTITION}: {error}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut values = Vec::new();
    while consumer.position(name, WRITTEN_PARTITION).unwrap_or(0) < end {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("DT1: {name}/{WRITTEN_PARTITION} not read to its end {end} within {LIVENESS_BOUND:?}"));
        }
        // Errors are retried until the deadline: faults are healed, leaders may still move.
        if let Ok(records) = consumer.poll(Duration::from_millis(500)).await {
            values.extend(
                records.into_iter().map(|record| String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()),
            );
        }
    }
    Ok(values)
}
