//! JoinCluster and ChangeControllers on the controller (issue 15, whole nodes): records a node
//! that joins the running cluster, or a change of the metadata group's voters
//! (`meta::members`); `crate::membership` carries both out. Every refusal is definite and
//! checked before proposing; the metadata apply checks the same again, and its outcome is what
//! the caller hears.

use std::time::Duration;

use odradek_client::wire::proto::{self as wire, ErrorCode, Response};
use raft::StateRole;

use super::admin::{admin_timeout, propose_meta};
use super::{ok_response, RequestError};
use crate::context::NodeContext;
use crate::meta::{JoiningNode, MetaCommand, MetaOutcome, METADATA_GROUP};

fn invalid(reason: impl Into<String>) -> RequestError {
    RequestError::new(ErrorCode::INVALID_REQUEST, reason.into())
}

fn member(node_id: u64, peer: String, client: String) -> wire::ClusterMember {
    let mut member = wire::ClusterMember::new();
    member.node_id = node_id;
    member.peer_address = peer;
    member.client_address = client;
    member
}

pub async fn join_cluster(context: &NodeContext, id: u64, body: wire::JoinClusterRequest) -> Response {
    match join(context, &body).await {
        Ok(()) => {
            let mut joined = wire::JoinClusterResponse::new();
            let bootstrap = context.config.metadata_voters_initial();
            for node in context.config.nodes.iter().filter(|node| bootstrap.contains(&node.id)) {
                joined.bootstrap.push(member(node.id, node.peer.to_string(), node.client.to_string()));
            }
            for node in context.state.lock().meta.members().values() {
                joined.joined.push(member(node.node_id, node.peer_address.to_string(), node.client_address.to_string()));
            }
            let mut response = ok_response(id);
            response.set_join_cluster(joined);
            response
        }
        Err(error) => error.into_response(id),
    }
}

async fn join(context: &NodeContext, body: &wire::JoinClusterRequest) -> Result<(), RequestError> {
    // A bootstrap member's id joins only once the metadata says that member was removed (a
    // decommissioned node coming back under a new incarnation, module `join`).
    let bootstrap = context.config.metadata_voters_initial().contains(&body.node_id);
    if bootstrap && !context.state.lock().meta.removed().contains(&body.node_id) {
        return Err(invalid(format!(
            "node {} is a member of the cluster's bootstrap list and was not removed: a joining node needs an id of its \
             own (a bootstrap member rejoins only once decommissioned and removed, with an empty data directory)",
            body.node_id
        )));
    }
    // Every node's bootstrap list still names it (peer links, Metadata answers, relays): it
    // rejoins at those addresses.
    if let Some(listed) = context.config.nodes.iter().find(|node| bootstrap && node.id == body.node_id) {
        let (peer, client) = (listed.peer.to_string(), listed.client.to_string());
        if body.peer_address != peer || body.client_address != client {
            return Err(invalid(format!(
                "node {} rejoins at {}/{}, but the bootstrap list names it {peer}/{client}: a removed bootstrap member \
                 rejoins at the addresses of its --node entry",
                body.node_id, body.peer_address, body.client_address
            )));
        }
    }
    let joining = JoiningNode {
        node_id: body.node_id,
        incarnation: body.incarnation,
        peer_address: body.peer_address.clone(),
        client_address: body.client_address.clone(),
        kafka_address: body.kafka_address.clone(),
        replace: body.replace,
    };
    let recorded = context.state.lock().meta.check_join(&joining).map_err(invalid)?;
    let index = propose_meta(context, &MetaCommand::JoinNode(joining), admin_timeout(body.timeout_ms)).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::NodeJoined) => {
            tracing::info!(node = recorded.node_id, peer = %recorded.peer_address, client = %recorded.client_address, "a node joined the cluster");
            Ok(())
        }
        Some(MetaOutcome::JoinRefused(reason)) => Err(invalid(reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of JoinNode: {other:?}"))),
    }
}

/// How often a controller change looks again at whether its target voters hold the metadata log.
const CONTROLLER_CATCH_UP_POLL: Duration = Duration::from_millis(50);

pub async fn change_controllers(context: &NodeContext, id: u64, body: wire::ChangeControllersRequest) -> Response {
    match change(context, &body).await {
        Ok(()) => ok_response(id),
        Err(error) => error.into_response(id),
    }
}

async fn change(context: &NodeContext, body: &wire::ChangeControllersRequest) -> Result<(), RequestError> {
    context.state.lock().meta.check_controller_voters(&body.voters).map_err(invalid)?;
    // Break no quorum: a majority of the target must hold the metadata log already, so the
    // new configuration can decide as soon as the change is made. A target that lags (the
    // commit before this request has not reached it yet) catches up by itself: wait for it
    // within half the request's timeout (the refusal must reach the caller before its own
    // timeout does), and refuse only a target that stays behind.
    let timeout = admin_timeout(body.timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let catch_up_deadline = tokio::time::Instant::now() + timeout / 2;
    loop {
        let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await else {
            return Err(RequestError::new(ErrorCode::NOT_CONTROLLER, "the metadata group is not hosted here"));
        };
        if status.role != StateRole::Leader {
            return Err(RequestError::new(ErrorCode::NOT_CONTROLLER, "this node no longer leads the metadata group"));
        }
        let caught_up = crate::membership::caught_up_in(context.state.node_id, &status, &body.voters);
        if caught_up * 2 > body.voters.len() {
            break;
        }
        if tokio::time::Instant::now() + CONTROLLER_CATCH_UP_POLL >= catch_up_deadline {
            return Err(invalid(format!(
                "only {caught_up} of the voters {:?} held the metadata log within half the request's timeout: the controller \
                 group would have no quorum of live voters",
                body.voters
            )));
        }
        tokio::time::sleep(CONTROLLER_CATCH_UP_POLL).await;
    }
    let command = MetaCommand::SetControllerVoters { voters: body.voters.clone() };
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let index = propose_meta(context, &command, remaining).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::ControllerChangeStarted) => {
            tracing::info!(voters = ?body.voters, "controller voters change recorded");
            Ok(())
        }
        Some(MetaOutcome::ControllerChangeRefused(reason)) => Err(invalid(reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of SetControllerVoters: {other:?}"))),
    }
}

pub async fn decommission_node(context: &NodeContext, id: u64, body: wire::DecommissionNodeRequest) -> Response {
    match decommission(context, &body).await {
        Ok(()) => ok_response(id),
        Err(error) => error.into_response(id),
    }
}

async fn decommission(context: &NodeContext, body: &wire::DecommissionNodeRequest) -> Result<(), RequestError> {
    let node = body.node_id;
    if body.cancel {
        return cancel_decommission(context, body).await;
    }
    context.state.lock().meta.check_decommission(node).map_err(invalid)?;
    let Ok(Some((status, conf))) = context.node.status(METADATA_GROUP).await else {
        return Err(RequestError::new(ErrorCode::NOT_CONTROLLER, "the metadata group is not hosted here"));
    };
    if status.role != StateRole::Leader {
        return Err(RequestError::new(ErrorCode::NOT_CONTROLLER, "this node no longer leads the metadata group"));
    }
    if conf.voters == [node] {
        return Err(invalid(format!("node {node} is the controller group's last voter: add voters first (`odradek cluster controllers`)")));
    }
    // A controller voter leaves the voters first: replaced by a live non-voter, or the group
    // shrinks only if a quorum of live voters remains (`membership::controller_voters_without`).
    if conf.voters.contains(&node) {
        let me = context.state.node_id;
        crate::membership::controller_voters_without(&context.state.lock().meta, &conf, &status, me, node).map_err(invalid)?;
    }
    let index = propose_meta(context, &MetaCommand::DecommissionNode { node }, admin_timeout(body.timeout_ms)).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::DecommissionStarted) => {
            tracing::info!(node, "decommission recorded: the node drains");
            Ok(())
        }
        Some(MetaOutcome::DecommissionRefused(reason)) => Err(invalid(reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of DecommissionNode: {other:?}"))),
    }
}

/// `odradek node decommission N --cancel`: the node stops draining and stays a member.
async fn cancel_decommission(context: &NodeContext, body: &wire::DecommissionNodeRequest) -> Result<(), RequestError> {
    let node = body.node_id;
    context.state.lock().meta.check_cancel_decommission(node).map_err(invalid)?;
    let index = propose_meta(context, &MetaCommand::CancelDecommission { node }, admin_timeout(body.timeout_ms)).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::DecommissionCancelled) => {
            tracing::info!(node, "decommission cancelled: the node stays");
            Ok(())
        }
        Some(MetaOutcome::DecommissionRefused(reason)) => Err(invalid(reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of CancelDecommission: {other:?}"))),
    }
}

pub async fn rebalance(context: &NodeContext, id: u64, body: wire::RebalanceRequest) -> Response {
    let mut nodes = context.cluster_node_ids();
    // Only nodes that follow the metadata log can take a replica (`membership::following_metadata`).
    if let Ok(Some((status, _))) = context.node.status(METADATA_GROUP).await {
        if status.role == StateRole::Leader {
            let live = crate::membership::following_metadata(context.state.node_id, &status);
            nodes.retain(|node| live.contains(node));
        }
    }
    let moves = crate::membership::rebalance_plan(&context.state.lock().meta, &nodes);
    let mut recorded = 0;
    for (topic, partition, replicas) in moves {
        if context.state.lock().meta.check_reassignment(&topic, partition, &replicas).is_err() {
            continue; // it started moving meanwhile
        }
        let command = MetaCommand::StartReassignment { topic: topic.clone(), partition, replicas: replicas.clone() };
        let index = match propose_meta(context, &command, admin_timeout(body.timeout_ms)).await {
            Ok(index) => index,
            Err(error) => return error.into_response(id),
        };
        if matches!(context.state.lock().meta_outcomes.get(&index), Some(MetaOutcome::ReassignmentStarted { .. })) {
            tracing::info!(topic, partition, ?replicas, "rebalance: partition move recorded");
            recorded += 1;
        }
    }
    let mut rebalanced = wire::RebalanceResponse::new();
    rebalanced.moves = recorded;
    let mut response = ok_response(id);
    response.set_rebalance(rebalanced);
    response
}
