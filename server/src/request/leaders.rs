//! Leaders of partitions this node does not host. Raft tells a node the leader of each group it
//! hosts; for any other partition it asks the nodes that host it (DescribeCluster over the
//! client protocol: each node reports the leader and term of every partition it hosts) and keeps
//! the answers for [`LEARNED_LEADER_KEPT_FOR`]. Without this a node outside a partition could
//! only guess its preferred replica with term 0, and a client asking that node (`odradek topic
//! create` waiting for leaders) never learned of a leader at all (issue 19).
//!
//! Invariants: a learned leader is one a hosting replica reported in that term (never a guess);
//! of two answers for one partition the higher term wins; what this node learned never
//! overrides what raft tells it about a group it hosts (callers ask only for the others).
//!
//! Cost sketch: a Metadata request naming partitions hosted elsewhere costs, once per
//! `LEARNED_LEADER_KEPT_FOR`, one connection and one DescribeCluster exchange to each other node
//! hosting them (at most `CLUSTER_NODES_MAX - 1`, concurrently, bounded by
//! `LEADER_QUERY_TIMEOUT`); the answers are a few dozen bytes per hosted partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use odradek_client::wire::proto::{DescribeClusterRequest, ErrorCode, Request_oneof_body as Body, Response_oneof_body as ResponseBody};
use odradek_consensus::{GroupId, NodeId};
use tokio::time::Instant;

use crate::context::NodeContext;

/// How long a learned leader is served before the hosting replicas are asked again. A stale
/// one costs a client one redirect (NOT_LEADER with the new leader's hint).
pub const LEARNED_LEADER_KEPT_FOR: Duration = Duration::from_secs(1);
/// How long one node may take to report its partitions' leaders.
pub const LEADER_QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Learned leaders kept; past this, the whole map is dropped (it refills on demand).
pub const LEARNED_LEADERS_MAX: usize = crate::meta::PARTITIONS_CLUSTER_MAX;

/// A leader a hosting replica reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Learned {
    leader: NodeId,
    term: u64,
    at: Instant,
}

/// What this node learned of the leaders of partitions it does not host (see the module doc).
#[derive(Debug, Default)]
pub struct LearnedLeaders {
    learned: Mutex<BTreeMap<GroupId, Learned>>,
}

impl LearnedLeaders {
    /// The (leader, term) of each of `groups` (group → its replicas) that a hosting replica
    /// reported, asking those whose answer is older than `LEARNED_LEADER_KEPT_FOR`. A group
    /// whose replicas did not answer in time is missing from the result.
    pub async fn leaders(&self, context: &NodeContext, groups: &BTreeMap<GroupId, Vec<NodeId>>) -> BTreeMap<GroupId, (NodeId, u64)> {
        let me = context.state.node_id;
        let now = Instant::now();
        let stale: BTreeSet<NodeId> = {
            let learned = self.lock();
            groups
                .iter()
                .filter(|(group, _)| learned.get(group).is_none_or(|entry| now.duration_since(entry.at) >= LEARNED_LEADER_KEPT_FOR))
                .flat_map(|(_, replicas)| replicas.iter().copied())
                .filter(|&node| node != me)
                .collect()
        };
        if !stale.is_empty() {
            let answers = futures::future::join_all(stale.iter().map(|&node| hosted_leaders(context, node))).await;
            let at = Instant::now();
            let mut learned = self.lock();
            if learned.len() > LEARNED_LEADERS_MAX {
                learned.clear();
            }
            for (group, leader, term) in answers.into_iter().flatten() {
                let entry = learned.entry(group).or_insert(Learned { leader, term, at });
                if term >= entry.term {
                    *entry = Learned { leader, term, at };
                }
            }
        }
        let learned = self.lock();
        groups.keys().filter_map(|group| learned.get(group).map(|entry| (*group, (entry.leader, entry.term)))).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<GroupId, Learned>> {
        self.learned.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// (group, leader, term) of every partition `node` hosts and knows a leader of; empty when it
/// does not answer in time.
async fn hosted_leaders(context: &NodeContext, node: NodeId) -> Vec<(GroupId, NodeId, u64)> {
    let body = Body::describe_cluster(DescribeClusterRequest::new());
    let response = match tokio::time::timeout(LEADER_QUERY_TIMEOUT, super::relay::call(context, node, "leaders", body)).await {
        Ok(Ok(response)) if response.error == ErrorCode::NONE => response,
        Ok(Ok(response)) => {
            tracing::debug!(node, error = ?response.error, "a node did not report its partitions' leaders");
            return Vec::new();
        }
        Ok(Err(error)) => {
            tracing::debug!(node, %error, "asking a node for its partitions' leaders failed");
            return Vec::new();
        }
        Err(_) => {
            tracing::debug!(node, "a node did not report its partitions' leaders in time");
            return Vec::new();
        }
    };
    let Some(ResponseBody::describe_cluster(described)) = response.body else { return Vec::new() };
    let state = context.state.lock();
    described
        .partitions
        .iter()
        .filter(|status| status.leader != 0 && status.term != 0)
        .filter_map(|status| Some((state.meta.partition(&status.topic, status.partition)?.group, status.leader, status.term)))
        .collect()
}
