//! TransferLeader: hands a partition's leadership to another voter on demand (issue 15,
//! F-M2). Served by the partition's leader (any other node answers NOT_LEADER, which the client
//! follows); the target must be a voter of the group's configuration, caught up (its match
//! index at least the commit index) and not being repaired (its node's metadata replica or its
//! replica of the group: it would drop the hand-over), nor saying it leads not (suspect, on a
//! quarantined, draining or low node: consensus module `hand_over`), else the refusal is
//! definite. The answer waits until the
//! target leads, at most the request's timeout: a timeout is indefinite (raft may still move
//! leadership), and a request naming the current leader succeeds at once.

use std::time::Duration;

use odradek_client::wire::proto::{self as wire, ErrorCode, Response};
use odradek_consensus::observe::HandOverCause;
use odradek_consensus::NodeError;
use raft::StateRole;

use super::{locate, ok_response, RequestError};
use crate::context::NodeContext;

/// How long a transfer waits for the new leader by default, and at most.
const TRANSFER_WAIT_MS_DEFAULT: u64 = 10_000;
const TRANSFER_WAIT_MS_MAX: u64 = 60_000;

pub async fn transfer_leader(context: &NodeContext, id: u64, body: wire::TransferLeaderRequest) -> Response {
    match transfer(context, &body).await {
        Ok(()) => ok_response(id),
        Err(error) => error.into_response(id),
    }
}

async fn transfer(context: &NodeContext, body: &wire::TransferLeaderRequest) -> Result<(), RequestError> {
    let group = locate(context, &body.topic, body.partition)?.group;
    let me = context.state.node_id;
    let Ok(Some((status, conf))) = context.node.status(group).await else {
        return Err(RequestError::new(ErrorCode::NOT_LEADER, format!("node {me} is not a replica of {}/{}", body.topic, body.partition)));
    };
    if status.leader == body.to {
        return Ok(());
    }
    if status.role != StateRole::Leader {
        return Err(RequestError::new(ErrorCode::NOT_LEADER, format!("node {me} does not lead {}/{}", body.topic, body.partition)));
    }
    if !conf.voters.contains(&body.to) {
        let message = format!("node {} is not a voter of {}/{} (voters {:?})", body.to, body.topic, body.partition, conf.voters);
        return Err(RequestError::new(ErrorCode::INVALID_REQUEST, message));
    }
    if let Some(refusal) = context.state.lock().meta.leadership_refusal(group, body.to) {
        return Err(RequestError::new(ErrorCode::INVALID_REQUEST, format!("{refusal}; retry once it is repaired")));
    }
    let matched = status.progress.get(&body.to).map_or(0, |&(matched, _)| matched);
    if matched < status.commit {
        let message = format!("node {} is not caught up (matched {matched} < commit {}); retry later", body.to, status.commit);
        return Err(RequestError::new(ErrorCode::INVALID_REQUEST, message));
    }
    context.node.transfer_leader(group, body.to, HandOverCause::Request).await.map_err(|error| match error {
        // The target drops hand-overs now (suspect, quarantined, draining, low on disk): definite, nothing moved.
        NodeError::HandOverRefused { .. } => RequestError::new(ErrorCode::INVALID_REQUEST, format!("{error}; retry later")),
        error => RequestError::new(ErrorCode::NOT_LEADER, error.to_string()),
    })?;
    let wait_ms = match u64::from(body.timeout_ms) {
        0 => TRANSFER_WAIT_MS_DEFAULT,
        ms => ms.min(TRANSFER_WAIT_MS_MAX),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        if let Ok(Some((status, _))) = context.node.status(group).await {
            if status.leader == body.to {
                tracing::info!(group, to = body.to, "leadership transferred on demand");
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let message = format!("node {} did not take the leadership within {wait_ms} ms", body.to);
            return Err(RequestError::new(ErrorCode::REQUEST_TIMED_OUT, message));
        }
        tokio::time::sleep(Duration::from_millis(context.config.tick_ms)).await;
    }
}
