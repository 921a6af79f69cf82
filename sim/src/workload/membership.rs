//! V5, membership converges (issue 15, plan field `membership`): after the heal, every
//! reassignment the nemesis started completes and each partition's raft configuration is the
//! replica set the metadata records, within [`LIVENESS_BOUND`]. Asked from the client machine
//! (the controller's reassignments, the topic's replicas); compared with the newest
//! configuration any replica applied, as the raft checker saw it (R10 judged every step).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use madsim::runtime::NodeHandle;
use odradek_client::{Admin, ClusterSession};
use odradek_jepsen::checker::raft::RaftChecker;

use crate::cluster::SimCluster;
use crate::config::{LIVENESS_BOUND, TOPIC};

/// Between two looks.
const LOOK_PAUSE: Duration = Duration::from_millis(200);
/// Bound on one look's admin calls.
const LOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the cluster says: reassignments in progress and each partition's replicas.
type View = (Vec<String>, BTreeMap<u32, Vec<u64>>);

async fn look(client: &NodeHandle, cluster: &SimCluster) -> Option<View> {
    let bootstrap = cluster.bootstrap();
    let config = cluster.client_config();
    client
        .spawn(async move {
            let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
            let admin = Admin::with_cluster(ClusterSession::new(&addresses, config).ok()?);
            let described = tokio::time::timeout(LOOK_TIMEOUT, admin.describe_cluster()).await.ok()?.ok()?;
            let moving = described
                .reassignments
                .iter()
                .map(|moving| format!("{}/{} {:?} -> {:?}", moving.topic, moving.partition, moving.replicas_from, moving.replicas_to))
                .collect();
            let topic = tokio::time::timeout(LOOK_TIMEOUT, admin.describe_topic(TOPIC)).await.ok()?.ok()?;
            Some((moving, topic.partitions.into_iter().map(|partition| (partition.partition, partition.replicas)).collect()))
        })
        .await
        .expect("look task")
}

/// Why the membership has not converged yet, or `None` once it has.
fn mismatch(view: &Option<View>, raft: &RefCell<RaftChecker>) -> Option<String> {
    let Some((moving, replicas)) = view else { return Some("no answer from the cluster".to_string()) };
    if !moving.is_empty() {
        return Some(format!("reassignments in progress: {moving:?}"));
    }
    let raft = raft.borrow();
    for (&partition, replicas) in replicas {
        // Topic `t`'s partitions are raft groups 1..=partitions (scenario `observe_replicas`).
        let group = u64::from(partition) + 1;
        let Some(&(index, conf)) = raft.configurations().get(&group) else { continue };
        let expected: BTreeSet<u64> = replicas.iter().copied().collect();
        let voters: BTreeSet<u64> = conf.voters.ids().into_iter().collect();
        if voters != expected || conf.joint() || !conf.learners.is_empty() {
            return Some(format!(
                "{TOPIC}/{partition} has replicas {replicas:?} in the metadata; its configuration at index {index} is {conf}"
            ));
        }
    }
    None
}

/// V5: waits until no reassignment runs and every partition's configuration is its replicas;
/// how long that took, or the problem.
pub async fn converges(client: &NodeHandle, cluster: &SimCluster, raft: &RefCell<RaftChecker>) -> Result<Duration, String> {
    let start = tokio::time::Instant::now();
    loop {
        let view = look(client, cluster).await;
        let Some(why) = mismatch(&view, raft) else { return Ok(start.elapsed()) };
        if start.elapsed() >= LIVENESS_BOUND {
            return Err(format!("V5: membership did not converge within {LIVENESS_BOUND:?}: {why}"));
        }
        tokio::time::sleep(LOOK_PAUSE).await;
    }
}
