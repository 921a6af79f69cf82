//! Topic churn (plan field `topic_churn`, issue 15): while the nemesis runs, topics named
//! `churn-0`..`churn-2` are created (again: TOPIC_ALREADY_EXISTS), grown by AddPartitions
//! (again and again: refused once at the count) and written to; every outcome is only noted
//! (faults make any of them fail). Deleting and re-creating them is not in yet: R7's
//! convergence check (`scenario::converge`) takes a destroyed replica for a lagging one, since
//! no raft event says a group was destroyed (that event belongs in `consensus::observe`). After
//! the heal, [`final_check`] creates `churn-final`, grows it, and checks the placement
//! invariant PL1 on every topic the metadata has:
//! - every partition has exactly the topic's replication factor of replicas, all distinct, all
//!   nodes of the cluster;
//! - every partition of the grown topic is served: one record is acknowledged on each.
//!
//! Nothing here touches the checked topic `t` or the history.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::{ClientError, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use tokio::task::JoinHandle;

use crate::cluster::SimCluster;
use crate::config::LIVENESS_BOUND;

/// Names churned through (each comes back every few rounds).
const CHURN_NAMES: u64 = 3;
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

/// Starts the churn on the client node until `duration` has passed; resolves to the rounds run.
pub fn start(client: &NodeHandle, cluster: Arc<SimCluster>, duration: Duration) -> JoinHandle<u64> {
    client.spawn(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let Some(admin) = cluster.admin() else { return 0 };
        let mut round = 0;
        while tokio::time::Instant::now() < deadline {
            let name = format!("churn-{}", round % CHURN_NAMES);
            let created =
                tokio::time::timeout(STEP_TIMEOUT, admin.create_topic(&name, 1, REPLICATION_FACTOR as u32, TopicConfig::default())).await;
            tokio::time::sleep(STEP_PAUSE).await;
            let grown = tokio::time::timeout(STEP_TIMEOUT, admin.alter_topic(&name, Some(2 + (round % 2) as u32), &[], false)).await;
            tokio::time::sleep(STEP_PAUSE).await;
            let written = match producer(&cluster).await {
                Some(producer) => {
                    let sent = producer.send(ProducerRecord::new(name.clone(), format!("r{round}")).partition(1)).await;
                    let outcome = match sent {
                        Ok(delivery) => tokio::time::timeout(STEP_TIMEOUT, delivery).await.map(|result| result.map(drop)),
                        Err(error) => Ok(Err(error)),
                    };
                    let _ = tokio::time::timeout(STEP_TIMEOUT, producer.close()).await;
                    format!("{outcome:?}")
                }
                None => "no producer".to_string(),
            };
            cluster.note(format!("churn {name}: create {created:?}, grow {grown:?}, write to partition 1 {written}"));
            round += 1;
        }
        round
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

/// After the heal: grows `churn-final` and checks PL1 on every topic; the problems found.
pub async fn final_check(client: &NodeHandle, cluster: Arc<SimCluster>) -> Vec<String> {
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
            cluster.note(format!("churn: PL1 checked on {} topics, {} problems", names.len(), problems.len()));
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
