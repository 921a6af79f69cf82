//! Committed offsets: OffsetCommit and OffsetFetch against a group's coordinator, and the
//! record of every commit ([`CommitOutcome`]) that the consumer keeps for the checkers.
//!
//! Offsets follow Kafka's convention: a committed offset is the next record to consume.
//!
//! Invariants:
//! - A commit is sent with the member id and epoch (classic: generation) captured when it was
//!   issued, never later: a commit issued before a rebalance cannot borrow the next
//!   generation's identity and overwrite the new owner's progress. Without a group generation
//!   (manual assignment, admin resets) it goes as member "" and epoch -1, which the coordinator
//!   accepts only for a group without members.
//! - A commit is all or nothing (the wire contract): one error on any partition fails the whole
//!   commit, definite or indefinite per the shared table. Retries happen only after definite
//!   failures (see [`super::coordinator`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::coordinator::Coordinator;
use super::member::CommitIdentity;
use super::TopicPartition;
use crate::error::{ClientError, Result};
use crate::wire::proto::{
    ErrorCode, OffsetCommitPartition, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, Request_oneof_body as RequestBody,
    Response_oneof_body as ResponseBody,
};

/// Most partitions in one commit or fetch of committed offsets.
pub const COMMIT_PARTITIONS_MAX: usize = 4096;

/// One commit as it was sent, and how it ended: what the checkers of C1, C4 and C5 need.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    pub group: String,
    /// The member id sent ("" for a commit outside a generation).
    pub member_id: String,
    /// The generation (classic) or member epoch (consumer protocol) sent; -1 outside one.
    pub epoch: i32,
    /// True for auto-commits (the interval's, and those before a revocation or a close).
    pub automatic: bool,
    /// The offsets committed: the next record to consume, per partition.
    pub offsets: BTreeMap<TopicPartition, u64>,
    /// `Ok` once the coordinator committed it; otherwise the error, definite or not.
    pub result: std::result::Result<(), ClientError>,
}

/// Sends one commit of `offsets` for `identity` (or as member "" / epoch -1), retrying definite
/// retriable failures until `deadline`.
pub async fn commit(
    coordinator: &Coordinator,
    identity: Option<&CommitIdentity>,
    group_instance_id: Option<&str>,
    offsets: &BTreeMap<TopicPartition, u64>,
    timeout: Duration,
    deadline: Instant,
) -> Result<()> {
    if offsets.len() > COMMIT_PARTITIONS_MAX {
        return Err(ClientError::InvalidArgument(format!("{} partitions in one commit; at most {COMMIT_PARTITIONS_MAX}", offsets.len())));
    }
    let mut request = OffsetCommitRequest::new();
    request.group = coordinator.group().to_string();
    (request.member_id, request.epoch) = match identity {
        Some(identity) => (identity.member_id.clone(), identity.epoch),
        None => (String::new(), -1),
    };
    request.group_instance_id = group_instance_id.unwrap_or_default().to_string();
    for ((topic, partition), offset) in offsets {
        let mut entry = OffsetCommitPartition::new();
        entry.topic = topic.clone();
        entry.partition = *partition;
        entry.offset = i64::try_from(*offset).map_err(|_| ClientError::InvalidArgument(format!("offset {offset}")))?;
        request.offsets.push(entry);
    }
    let response = coordinator.request(RequestBody::offset_commit(request), timeout, deadline).await?;
    let Some(ResponseBody::offset_commit(committed)) = response.body else {
        return Err(ClientError::Protocol("OffsetCommit answered without results".into()));
    };
    // All or nothing: the first partition error is the commit's.
    if let Some(failed) = committed.partitions.iter().find(|result| result.error != ErrorCode::NONE) {
        return Err(ClientError::server(failed.error, format!("{}/{}: {}", failed.topic, failed.partition, failed.error_message)));
    }
    let answered: BTreeSet<(&str, u32)> = committed.partitions.iter().map(|result| (result.topic.as_str(), result.partition)).collect();
    if offsets.keys().any(|(topic, partition)| !answered.contains(&(topic.as_str(), *partition))) {
        // The commit is one entry at the coordinator: an answer that skips partitions is a bug
        // on the other side, and the outcome unknown.
        return Err(ClientError::Protocol("OffsetCommit answered without every partition".into()));
    }
    Ok(())
}

/// The committed offsets of `partitions` (every committed partition of the group when empty);
/// `None` where nothing is committed.
pub async fn fetch_committed(
    coordinator: &Coordinator,
    partitions: &BTreeSet<TopicPartition>,
    timeout: Duration,
    deadline: Instant,
) -> Result<BTreeMap<TopicPartition, Option<u64>>> {
    if partitions.len() > COMMIT_PARTITIONS_MAX {
        return Err(ClientError::InvalidArgument(format!("{} partitions; at most {COMMIT_PARTITIONS_MAX}", partitions.len())));
    }
    let mut request = OffsetFetchRequest::new();
    request.group = coordinator.group().to_string();
    request.partitions = super::classic::to_wire_topic_partitions(partitions).into();
    let response = coordinator.request_read(RequestBody::offset_fetch(request), timeout, deadline).await?;
    let Some(ResponseBody::offset_fetch(fetched)) = response.body else {
        return Err(ClientError::Protocol("OffsetFetch answered without offsets".into()));
    };
    let mut committed: BTreeMap<TopicPartition, Option<u64>> = partitions.iter().map(|partition| (partition.clone(), None)).collect();
    for entry in fetched.partitions.iter() {
        let offset = match entry.offset {
            -1 => None,
            offset => Some(u64::try_from(offset).map_err(|_| ClientError::Protocol(format!("committed offset {offset}")))?),
        };
        let key = (entry.topic.clone(), entry.partition);
        if partitions.is_empty() || committed.contains_key(&key) {
            committed.insert(key, offset);
        }
    }
    Ok(committed)
}

/// Kafka's OffsetDelete: removes the group's committed offsets of `partitions`, except those of
/// topics the group is subscribed to. Per partition the coordinator's code: `NONE` (removed, or
/// nothing was committed), `GROUP_SUBSCRIBED_TO_TOPIC` (kept) or `UNKNOWN_TOPIC_OR_PARTITION`.
/// Retries definite retriable failures until `deadline`; an indefinite failure may have removed
/// any of them.
pub async fn delete(
    coordinator: &Coordinator,
    partitions: &BTreeSet<TopicPartition>,
    timeout: Duration,
    deadline: Instant,
) -> Result<BTreeMap<TopicPartition, ErrorCode>> {
    if partitions.is_empty() || partitions.len() > COMMIT_PARTITIONS_MAX {
        return Err(ClientError::InvalidArgument(format!("{} partitions; 1 to {COMMIT_PARTITIONS_MAX}", partitions.len())));
    }
    let mut request = OffsetDeleteRequest::new();
    request.group = coordinator.group().to_string();
    request.partitions = super::classic::to_wire_topic_partitions(partitions).into();
    let response = coordinator.request(RequestBody::offset_delete(request), timeout, deadline).await?;
    let Some(ResponseBody::offset_delete(deleted)) = response.body else {
        return Err(ClientError::Protocol("OffsetDelete answered without results".into()));
    };
    let codes: BTreeMap<TopicPartition, ErrorCode> =
        deleted.partitions.iter().map(|result| ((result.topic.clone(), result.partition), result.error)).collect();
    if partitions.iter().any(|partition| !codes.contains_key(partition)) {
        return Err(ClientError::Protocol("OffsetDelete answered without every partition".into()));
    }
    Ok(codes)
}
