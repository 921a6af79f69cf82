//! Controller requests: CreateTopics, DeleteTopics and InitProducerId (and the requests of
//! `security` and `topic_change`, routed here). The metadata group's
//! leader (the controller) checks each and proposes it to the metadata group, then answers from
//! the outcome its own apply recorded (`AppliedState::meta_outcomes`); any other node forwards
//! the request there over the client protocol and relays the answer.

use std::time::Duration;

use bytes::Bytes;
use odradek_client::wire::error_response;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body, Response};
use odradek_consensus::{Durability, EntryMeta, NodeId};

use super::{leader_of, ok_response, RequestError};
use crate::context::NodeContext;
use crate::group::OFFSETS_TOPIC;
use crate::meta::{self, MetaCommand, MetaOutcome, TopicSettings, METADATA_GROUP};

/// How long a forwarded controller request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a controller request waits for a leader of the metadata group.
const CONTROLLER_WAIT: Duration = Duration::from_secs(10);

/// Runs a controller request here if this node leads the metadata group, else forwards it.
pub async fn controller_request(context: &NodeContext, id: u64, body: Body) -> Response {
    let deadline = tokio::time::Instant::now() + CONTROLLER_WAIT;
    let controller = loop {
        match leader_of(context, METADATA_GROUP).await {
            Some((leader, _)) if leader != 0 => break leader,
            _ if tokio::time::Instant::now() >= deadline => {
                return error_response(id, ErrorCode::NOT_CONTROLLER, "the metadata group has no leader (no quorum of nodes?)");
            }
            _ => tokio::time::sleep(Duration::from_millis(context.config.tick_ms)).await,
        }
    };
    if controller != context.state.node_id {
        return forward(context, id, controller, body).await;
    }
    match body {
        Body::create_topics(body) => create_topics(context, id, body).await,
        Body::delete_topics(body) => delete_topics(context, id, body).await,
        Body::init_producer_id(body) => init_producer_id(context, id, body).await,
        Body::upsert_user(body) => super::security::upsert_user(context, id, body).await,
        Body::delete_user(body) => super::security::delete_user(context, id, body).await,
        Body::create_acl(body) => super::security::create_acl(context, id, body).await,
        Body::delete_acl(body) => super::security::delete_acl(context, id, body).await,
        // Read on the controller: a list right after a change shows it.
        Body::list_users(_) => super::security::list_users(context, id),
        Body::list_acls(_) => super::security::list_acls(context, id),
        Body::describe_topic_configs(body) => super::topic_change::describe_topic_configs(context, id, body),
        Body::alter_topic(body) => super::topic_change::alter_topic(context, id, body).await,
        Body::reassign_partition(body) => super::reassign::reassign_partition(context, id, body).await,
        Body::join_cluster(body) => super::membership::join_cluster(context, id, body).await,
        Body::change_controllers(body) => super::membership::change_controllers(context, id, body).await,
        Body::decommission_node(body) => super::membership::decommission_node(context, id, body).await,
        Body::rebalance(body) => super::membership::rebalance(context, id, body).await,
        _ => unreachable!("only controller requests are routed here"),
    }
}

/// Sends `body` to the controller over the client protocol and relays its answer.
async fn forward(context: &NodeContext, id: u64, controller: NodeId, body: Body) -> Response {
    if context.client_address(controller).is_none() {
        return error_response(id, ErrorCode::NOT_CONTROLLER, format!("controller {controller} is not a known node"));
    }
    match tokio::time::timeout(FORWARD_TIMEOUT, super::relay::call(context, controller, "forward", body)).await {
        Ok(Ok(mut response)) => {
            response.request_id = id;
            response
        }
        // Sent or not, unknown: indefinite.
        Ok(Err(error)) => error_response(id, ErrorCode::REQUEST_TIMED_OUT, format!("forwarding to controller {controller}: {error}")),
        Err(_) => error_response(id, ErrorCode::REQUEST_TIMED_OUT, format!("controller {controller} did not answer in time")),
    }
}

/// Proposes a metadata command and waits until it is applied here; its raft index.
pub(super) async fn propose_meta(context: &NodeContext, command: &MetaCommand, timeout: Duration) -> Result<u64, RequestError> {
    let meta = EntryMeta::Command;
    let ticket = context.node.submit(METADATA_GROUP, Bytes::from(command.encode()), meta, Durability::Committed).await;
    match tokio::time::timeout(timeout, ticket.outcome()).await {
        Ok(Ok(appended)) => Ok(appended.index),
        Ok(Err(error)) if error.is_definite() => Err(RequestError::new(ErrorCode::NOT_CONTROLLER, error.to_string())),
        Ok(Err(error)) => Err(RequestError::new(ErrorCode::LEADERSHIP_LOST, error.to_string())),
        Err(_) => Err(RequestError::new(ErrorCode::REQUEST_TIMED_OUT, "the metadata change did not commit in time")),
    }
}

pub(super) fn admin_timeout(timeout_ms: u32) -> Duration {
    Duration::from_millis(if timeout_ms == 0 { 30_000 } else { u64::from(timeout_ms).min(120_000) })
}

/// Topic settings with the node's defaults filled in (stored resolved, so every node agrees).
fn resolve_settings(context: &NodeContext, config: &wire::TopicConfig) -> TopicSettings {
    let defaults = &context.config.topic_defaults;
    TopicSettings {
        retention_ms: if config.retention_ms == 0 { defaults.retention_ms } else { config.retention_ms },
        retention_bytes: if config.retention_bytes == 0 { defaults.retention_bytes } else { config.retention_bytes },
        segment_bytes: if config.segment_bytes <= 0 { defaults.segment_bytes } else { config.segment_bytes as u64 },
        batch_bytes_max: if config.batch_bytes_max == 0 { defaults.batch_bytes_max } else { config.batch_bytes_max },
    }
}

async fn create_topics(context: &NodeContext, id: u64, body: wire::CreateTopicsRequest) -> Response {
    let timeout = admin_timeout(body.timeout_ms);
    let mut results = wire::CreateTopicsResponse::new();
    for request in body.topics.iter() {
        let outcome = create_topic(context, request, timeout).await;
        results.topics.push(topic_result(&request.name, outcome));
    }
    let mut response = ok_response(id);
    response.set_create_topics(results);
    response
}

async fn create_topic(context: &NodeContext, request: &wire::CreateTopic, timeout: Duration) -> Result<(), RequestError> {
    meta::validate_topic_name(&request.name).map_err(|reason| RequestError::new(ErrorCode::INVALID_TOPIC, reason))?;
    let offsets_topic;
    let request = if request.name == OFFSETS_TOPIC {
        // The offsets topic has the coordinator's settings, whatever a request asks.
        offsets_topic = offsets_topic_request(context);
        &offsets_topic
    } else {
        request
    };
    let nodes = context.cluster_node_ids();
    let defaults = &context.config.topic_defaults;
    let partitions = if request.partitions == 0 { defaults.partitions } else { request.partitions };
    if partitions > meta::PARTITIONS_MAX {
        let message = format!("{partitions} partitions; at most {}", meta::PARTITIONS_MAX);
        return Err(RequestError::new(ErrorCode::INVALID_PARTITIONS, message));
    }
    let replication_factor = match request.replication_factor {
        0 => defaults.replication_factor.min(nodes.len() as u32),
        n => n,
    };
    if replication_factor as usize > nodes.len() || replication_factor > meta::REPLICATION_FACTOR_MAX {
        let message =
            format!("replication factor {replication_factor} with {} nodes (at most {})", nodes.len(), meta::REPLICATION_FACTOR_MAX);
        return Err(RequestError::new(ErrorCode::INVALID_REPLICATION_FACTOR, message));
    }
    let settings = resolve_settings(context, request.get_config());
    if settings.batch_bytes_max as usize > odradek_client::batch::BATCH_BYTES_MAX {
        let message = format!("batch_bytes_max above {}", odradek_client::batch::BATCH_BYTES_MAX);
        return Err(RequestError::new(ErrorCode::INVALID_REQUEST, message));
    }
    let start = {
        let state = context.state.lock();
        if state.meta.topic(&request.name).is_some() {
            return Err(RequestError::new(ErrorCode::TOPIC_ALREADY_EXISTS, format!("topic {:?} exists", request.name)));
        }
        state.meta.topics().len() as u64
    };
    let replicas = meta::assign_replicas(&nodes, partitions, replication_factor, start)
        .map_err(|reason| RequestError::new(ErrorCode::INVALID_REPLICATION_FACTOR, reason))?;
    // Topics may only use registered brokers: register any configured node not yet known.
    crate::controller::register_brokers(context).await;
    let command = MetaCommand::CreateTopic { name: request.name.clone(), replicas, settings };
    let index = propose_meta(context, &command, timeout).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::TopicCreated { .. }) => Ok(()),
        Some(MetaOutcome::TopicExists) => {
            Err(RequestError::new(ErrorCode::TOPIC_ALREADY_EXISTS, format!("topic {:?} exists", request.name)))
        }
        Some(MetaOutcome::Rejected(reason)) => Err(RequestError::new(ErrorCode::INVALID_REQUEST, reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of CreateTopic: {other:?}"))),
    }
}

/// The creation of the offsets topic: the coordinator's partition count and replication, no
/// retention by age, and retention by size down to the last snapshot of each partition's group
/// table (`GroupTable::retention_bound` keeps it and what follows).
fn offsets_topic_request(context: &NodeContext) -> wire::CreateTopic {
    let settings = &context.config.groups;
    let mut create = wire::CreateTopic::new();
    create.name = OFFSETS_TOPIC.to_string();
    create.partitions = settings.offsets_topic_partitions;
    create.replication_factor = settings.offsets_topic_replication_factor.min(context.cluster_node_ids().len() as u32);
    let mut config = wire::TopicConfig::new();
    config.retention_ms = -1;
    config.retention_bytes = 1;
    config.segment_bytes = settings.offsets_segment_bytes as i64;
    create.set_config(config);
    create
}

async fn delete_topics(context: &NodeContext, id: u64, body: wire::DeleteTopicsRequest) -> Response {
    let timeout = admin_timeout(body.timeout_ms);
    let mut results = wire::DeleteTopicsResponse::new();
    for name in body.names.iter() {
        let exists = context.state.lock().meta.topic(name).is_some();
        let outcome = if name == OFFSETS_TOPIC {
            Err(RequestError::new(
                ErrorCode::INVALID_TOPIC,
                format!("{OFFSETS_TOPIC} holds every consumer group's state; it is not deleted"),
            ))
        } else if exists && context.planted.delete_topic_uncommitted {
            // Planted bug: answered once proposed; the commit is not waited for.
            let command = Bytes::from(MetaCommand::DeleteTopic { name: name.clone() }.encode());
            drop(context.node.submit(METADATA_GROUP, command, EntryMeta::Command, Durability::Committed).await);
            Ok(())
        } else if exists {
            propose_meta(context, &MetaCommand::DeleteTopic { name: name.clone() }, timeout).await.map(drop)
        } else {
            Err(RequestError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name:?}")))
        };
        results.topics.push(topic_result(name, outcome));
    }
    let mut response = ok_response(id);
    response.set_delete_topics(results);
    response
}

/// A new producer id (`producer_id < 0`), or the next epoch of a known one, bumped from the
/// epoch the caller holds (`producer_epoch`).
async fn init_producer_id(context: &NodeContext, id: u64, body: wire::InitProducerIdRequest) -> Response {
    let timeout = Duration::from_millis(context.config.request_timeout_ms);
    let outcome = if body.producer_id < 0 {
        allocate_producer_id(context, timeout).await
    } else {
        match i16::try_from(body.producer_epoch) {
            Ok(epoch) if epoch >= 0 => bump_producer_epoch(context, body.producer_id, epoch, timeout).await,
            _ => Err(RequestError::new(ErrorCode::INVALID_REQUEST, format!("producer epoch {} is out of range", body.producer_epoch))),
        }
    };
    match outcome {
        Ok((producer_id, producer_epoch)) => {
            let mut init = wire::InitProducerIdResponse::new();
            init.producer_id = producer_id;
            init.producer_epoch = i32::from(producer_epoch);
            let mut response = ok_response(id);
            response.set_init_producer_id(init);
            response
        }
        Err(error) => error.into_response(id),
    }
}

/// (producer id, epoch 0) of a newly allocated producer id.
async fn allocate_producer_id(context: &NodeContext, timeout: Duration) -> Result<(i64, i16), RequestError> {
    let index = propose_meta(context, &MetaCommand::AllocateProducerId, timeout).await?;
    // The new producer id is the index of the allocating entry (meta::MetaCommand).
    match context.state.lock().meta_outcomes.get(&index) {
        Some(&MetaOutcome::ProducerId { producer_id, producer_epoch }) => Ok((producer_id, producer_epoch)),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of AllocateProducerId: {other:?}"))),
    }
}

/// (producer id, its new epoch) after fencing `epoch`, the caller's. An older epoch was fenced
/// already, by another caller that now holds the current one: refused (`PRODUCER_FENCED`,
/// definite), or the fenced caller would fence its successor. The metadata apply checks it
/// again, atomically with the bump (two callers of one epoch race to it).
async fn bump_producer_epoch(context: &NodeContext, producer_id: i64, epoch: i16, timeout: Duration) -> Result<(i64, i16), RequestError> {
    let Some(current) = context.state.lock().meta.producer_epoch(producer_id) else {
        let message = format!("producer id {producer_id} was never allocated");
        return Err(RequestError::new(ErrorCode::UNKNOWN_PRODUCER_ID, message));
    };
    if epoch != current {
        return Err(epoch_mismatch(producer_id, epoch, current));
    }
    let command = MetaCommand::BumpProducerEpoch { producer_id, from_epoch: Some(epoch) };
    let index = propose_meta(context, &command, timeout).await?;
    match context.state.lock().meta_outcomes.get(&index) {
        Some(&MetaOutcome::ProducerId { producer_id, producer_epoch }) => Ok((producer_id, producer_epoch)),
        Some(&MetaOutcome::EpochMismatch { producer_epoch }) => Err(epoch_mismatch(producer_id, epoch, producer_epoch)),
        Some(MetaOutcome::Rejected(reason)) => Err(RequestError::new(ErrorCode::UNKNOWN_PRODUCER_ID, reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of BumpProducerEpoch: {other:?}"))),
    }
}

/// Why a bump from `epoch` was refused, the producer being at `current`.
fn epoch_mismatch(producer_id: i64, epoch: i16, current: i16) -> RequestError {
    if epoch < current {
        let message = format!("producer id {producer_id} epoch {epoch} was fenced: the producer is at epoch {current}");
        RequestError::new(ErrorCode::PRODUCER_FENCED, message)
    } else {
        let message = format!("producer id {producer_id} never had epoch {epoch}: it is at epoch {current}");
        RequestError::new(ErrorCode::INVALID_REQUEST, message)
    }
}

/// One topic's entry in a CreateTopics/DeleteTopics answer.
pub(super) fn topic_result(name: &str, outcome: Result<(), RequestError>) -> wire::TopicResult {
    let mut result = wire::TopicResult::new();
    result.name = name.to_string();
    if let Err(error) = outcome {
        result.error = error.code;
        result.error_message = error.message;
    }
    result
}
