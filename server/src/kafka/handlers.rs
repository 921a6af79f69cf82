//! Each Kafka request as the native requests the node already serves ([`crate::request`]):
//! a Kafka request names many topics and partitions, a native one a single partition, so a
//! handler fans out into native requests, runs them through the same handlers the native
//! listener uses (same checks, same guarantees), and gathers the answers into Kafka's shape.
//! Nothing here decides anything about the log: it only translates.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use odradek_client::batch::{attributes, position, Compression, BATCH_HEADER_BYTES};
use odradek_client::wire::proto::{self as wire, Acks, ErrorCode, OffsetSpec, Request, Request_oneof_body as Body, Response};

use super::codec::api_versions;
use super::errors::{self, kafka_code};
use super::KafkaBrokers;
use crate::auth::Principal;
use crate::context::NodeContext;
use crate::request;
use crate::request::produce::ProducePending;

/// The most a fetch waits for data (Kafka's `fetch.max.wait.ms` is a client setting; this is
/// the node's bound on it, the native fetch's).
const FETCH_WAIT_MS_MAX: i32 = request::fetch::FETCH_WAIT_MS_MAX as i32;

/// The cluster id this listener reports (Kafka clients only display it).
const CLUSTER_ID: &str = "odradek";

/// A native request with its body.
pub(super) fn native(id: u64, body: Body) -> Request {
    let mut request = Request::new();
    request.request_id = id;
    request.body = Some(body);
    request
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A Kafka leader epoch from a raft term (terms start at 1; 0, "a guess", is Kafka's -1, unknown).
fn leader_epoch(term: u64) -> i32 {
    if term == 0 {
        -1
    } else {
        i32::try_from(term).unwrap_or(i32::MAX)
    }
}

fn node_id(node: u64) -> BrokerId {
    BrokerId(i32::try_from(node).expect("node ids fit an i32 (CLUSTER_NODES_MAX nodes, small ids)"))
}

pub fn api_versions_response() -> ResponseKind {
    ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(api_versions()))
}

/// Metadata: the native answer, with each broker's Kafka address. Topics with no Kafka
/// address for their leader still list it (the client reports the broker as unreachable).
pub async fn metadata(
    context: &NodeContext,
    principal: &Principal,
    brokers: &KafkaBrokers,
    id: u64,
    version: i16,
    body: MetadataRequest,
) -> ResponseKind {
    // v0: an empty list is every topic; v1+: null is every topic, empty is none.
    // v10+ may name a topic by id alone (a KIP-848 consumer resolving its assignment).
    let ids = super::topic_ids::all(context);
    // Below v4 the field is absent and Kafka always auto-creates.
    let auto_create_asked = version < 4 || body.allow_auto_topic_creation;
    // Ids that name no topic here: answered UNKNOWN_TOPIC_ID, as Kafka does.
    let mut unknown_ids = Vec::new();
    let names: Option<Vec<String>> = match body.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|t| {
                    let named = t.name.map(|n| n.0.to_string()).filter(|n| !n.is_empty());
                    let found = named.or_else(|| super::topic_ids::name_of(&ids, t.topic_id));
                    if found.is_none() && !t.topic_id.is_nil() {
                        unknown_ids.push(t.topic_id);
                    }
                    found
                })
                .collect(),
        ),
    };
    let mut response = MetadataResponse::default().with_cluster_id(Some(text(CLUSTER_ID))).with_brokers(
        brokers
            .current(context)
            .iter()
            .map(|(&node, address)| {
                MetadataResponseBroker::default()
                    .with_node_id(node_id(node))
                    .with_host(text(&address.ip().to_string()))
                    .with_port(i32::from(address.port()))
            })
            .collect(),
    );
    // No topics asked (an admin client finding the controller): the native request for all
    // topics, answered without them.
    let no_topics = names.as_ref().is_some_and(|names| names.is_empty());
    let unknown: Vec<MetadataResponseTopic> = unknown_ids
        .iter()
        .map(|&topic_id| MetadataResponseTopic::default().with_error_code(errors::UNKNOWN_TOPIC_ID).with_name(None).with_topic_id(topic_id))
        .collect();
    let auto_created = match &names {
        Some(names) if auto_create_asked && !names.is_empty() => auto_create(context, principal, id, names).await,
        _ => BTreeMap::new(),
    };
    let mut ask = wire::MetadataRequest::new();
    ask.topics = names.clone().unwrap_or_default().into();
    let answer = request::handle(context, principal, native(id, Body::metadata(ask))).await;
    if answer.error != ErrorCode::NONE || !answer.has_metadata() {
        // The node is still catching up: every asked topic gets the (retriable) code.
        let code = if answer.error == ErrorCode::NONE { errors::LEADER_NOT_AVAILABLE } else { kafka_code(answer.error) };
        response.topics = names
            .unwrap_or_default()
            .iter()
            .map(|name| MetadataResponseTopic::default().with_error_code(code).with_name(Some(TopicName(text(name)))))
            .collect();
        return ResponseKind::Metadata(response.with_controller_id(BrokerId(-1)));
    }
    let native_metadata = answer.get_metadata();
    response.controller_id = if native_metadata.controller == 0 { BrokerId(-1) } else { node_id(native_metadata.controller) };
    if no_topics {
        return ResponseKind::Metadata(response.with_topics(unknown));
    }
    for topic in &native_metadata.topics {
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let leader = if p.leader == 0 { BrokerId(-1) } else { node_id(p.leader) };
                let replicas: Vec<BrokerId> = p.replicas.iter().map(|&r| node_id(r)).collect();
                let isr =
                    if p.in_sync_replicas.is_empty() { replicas.clone() } else { p.in_sync_replicas.iter().map(|&r| node_id(r)).collect() };
                MetadataResponsePartition::default()
                    .with_error_code(kafka_code(p.error))
                    .with_partition_index(p.partition as i32)
                    .with_leader_id(leader)
                    .with_leader_epoch(leader_epoch(p.leader_term))
                    .with_replica_nodes(replicas)
                    .with_isr_nodes(isr)
            })
            .collect();
        let code = match (topic.error, auto_created.get(&topic.name)) {
            // Created, but this node has not applied it yet: retriable, as Kafka answers a
            // topic it has just auto-created.
            (ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, Some(&(errors::NONE, _))) => errors::LEADER_NOT_AVAILABLE,
            (ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, Some(&(refused, _))) => refused,
            (error, _) => kafka_code(error),
        };
        response.topics.push(
            MetadataResponseTopic::default()
                .with_error_code(code)
                .with_name(Some(TopicName(text(&topic.name))))
                .with_is_internal(topic.name.starts_with("__"))
                .with_topic_id(if version >= 10 { ids.get(&topic.name).copied().unwrap_or_default() } else { Default::default() })
                .with_partitions(partitions),
        );
    }
    response.topics.extend(unknown);
    ResponseKind::Metadata(response)
}

/// One partition's produce: queued natively, or refused here.
enum PartitionPending {
    Queued(ProducePending),
    Refused(i16, String),
}

/// Produce: queues every partition's batch now, in request order (so one producer's pipelined
/// batches keep their order, as on the native listener), and returns the future of the answer
/// (`None` for acks=0: Kafka sends nothing back).
pub async fn produce(
    context: &Arc<NodeContext>,
    principal: &Principal,
    id: u64,
    body: ProduceRequest,
) -> Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>> {
    let acks = match body.acks {
        -1 => Some(Acks::ACKS_ALL),
        1 => Some(Acks::ACKS_LEADER),
        0 => Some(Acks::ACKS_NONE),
        _ => None,
    };
    if body.transactional_id.is_some() {
        let response = refuse_produce(&body, errors::INVALID_REQUEST, "transactions are not supported");
        return Box::pin(async move { Some(response) });
    }
    let Some(acks) = acks else {
        let response = refuse_produce(&body, errors::INVALID_REQUIRED_ACKS, "acks must be -1, 0 or 1");
        return Box::pin(async move { Some(response) });
    };
    let mut pending: Vec<(String, i32, PartitionPending)> = Vec::new();
    for topic in body.topic_data {
        let name = topic.name.0.to_string();
        for partition in topic.partition_data {
            let index = partition.index;
            let refusal = match (&partition.records, u32::try_from(index)) {
                (_, Err(_)) => Some((errors::UNKNOWN_TOPIC_OR_PARTITION, "a negative partition index".to_string())),
                (None, _) => Some((errors::CORRUPT_MESSAGE, "no records".to_string())),
                (Some(records), _) => compression_refusal(records),
            };
            let future = match refusal {
                Some((code, message)) => PartitionPending::Refused(code, message),
                None => {
                    let mut native_produce = wire::ProduceRequest::new();
                    native_produce.topic = name.clone();
                    native_produce.partition = index as u32;
                    native_produce.acks = acks;
                    native_produce.timeout_ms = u32::try_from(body.timeout_ms).unwrap_or(0);
                    native_produce.batch = partition.records.expect("checked above").to_vec();
                    PartitionPending::Queued(request::produce::produce(context, principal, id, native_produce).await)
                }
            };
            pending.push((name.clone(), index, future));
        }
    }
    let (context, principal) = (context.clone(), principal.clone());
    Box::pin(async move {
        let mut response = ProduceResponse::default();
        for (name, index, future) in pending {
            let partition = match future {
                PartitionPending::Queued(future) => match future.await {
                    None => continue,
                    Some(answer) => produce_partition(index, &answer),
                },
                PartitionPending::Refused(code, message) => PartitionProduceResponse::default()
                    .with_index(index)
                    .with_error_code(code)
                    .with_base_offset(-1)
                    .with_error_message(Some(text(&message))),
            };
            match response.responses.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(topic) => topic.partition_responses.push(partition),
                None => response
                    .responses
                    .push(TopicProduceResponse::default().with_name(TopicName(text(&name))).with_partition_responses(vec![partition])),
            }
        }
        auto_create_for_produce(&context, &principal, id, &mut response).await;
        (acks != Acks::ACKS_NONE).then_some(ResponseKind::Produce(response))
    })
}

/// How long an auto-creation may take before the client is told to retry (its next Metadata
/// or Produce tries again).
const AUTO_CREATE_TIMEOUT_MS: u32 = 10_000;

/// Kafka's `auto.create.topics.enable` (the node's `auto_create_topics`): the topics of `names`
/// this node does not know are created through the controller with the topic defaults, as a
/// Kafka broker creates a topic a client names. Returns, for each topic it asked for, the Kafka
/// code of the outcome: NONE when the topic now exists (created, or created meanwhile by
/// another), a retriable LEADER_NOT_AVAILABLE when the controller could not be reached or timed
/// out, and the refusal's own code otherwise (INVALID_TOPIC_EXCEPTION for a name Kafka and we
/// refuse). Topics this node knows are not asked for: an empty map when auto-creation is off.
async fn auto_create(context: &NodeContext, principal: &Principal, id: u64, names: &[String]) -> BTreeMap<String, (i16, String)> {
    if !context.config.auto_create_topics {
        return BTreeMap::new();
    }
    let unknown: Vec<String> = {
        let state = context.state.lock();
        let mut unknown: Vec<String> = names.iter().filter(|name| state.meta.topic(name).is_none()).cloned().collect();
        unknown.sort();
        unknown.dedup();
        unknown
    };
    if unknown.is_empty() {
        return BTreeMap::new();
    }
    let mut ask = wire::CreateTopicsRequest::new();
    ask.timeout_ms = AUTO_CREATE_TIMEOUT_MS;
    for name in &unknown {
        // Partitions and replication factor 0: the node's topic defaults.
        let mut create = wire::CreateTopic::new();
        create.name = name.clone();
        ask.topics.push(create);
    }
    let answer = request::handle(context, principal, native(id, Body::create_topics(ask))).await;
    unknown
        .into_iter()
        .map(|name| {
            let (native_code, message) = if answer.has_create_topics() {
                let result = answer.get_create_topics().topics.iter().find(|t| t.name == name);
                result.map_or((ErrorCode::INTERNAL, "the controller did not answer for this topic".to_string()), |t| {
                    (t.error, t.error_message.clone())
                })
            } else {
                (answer.error, answer.error_message.clone())
            };
            let code = match native_code {
                ErrorCode::NONE | ErrorCode::TOPIC_ALREADY_EXISTS => errors::NONE,
                other => match kafka_code(other) {
                    errors::NOT_CONTROLLER | errors::REQUEST_TIMED_OUT | errors::NOT_LEADER_OR_FOLLOWER => errors::LEADER_NOT_AVAILABLE,
                    code => code,
                },
            };
            tracing::info!(topic = %name, code, %message, "auto-creating a topic a Kafka client named");
            (name, (code, message))
        })
        .collect()
}

/// A produce to topics that do not exist auto-creates them ([`auto_create`]); the partitions
/// stay refused with the retriable UNKNOWN_TOPIC_OR_PARTITION (the client refreshes its
/// metadata and sends again), or get the creation's refusal (an invalid name).
async fn auto_create_for_produce(context: &NodeContext, principal: &Principal, id: u64, response: &mut ProduceResponse) {
    let unknown: Vec<String> = response
        .responses
        .iter()
        .filter(|topic| topic.partition_responses.iter().any(|p| p.error_code == errors::UNKNOWN_TOPIC_OR_PARTITION))
        .map(|topic| topic.name.0.to_string())
        .collect();
    if unknown.is_empty() {
        return;
    }
    let outcomes = auto_create(context, principal, id, &unknown).await;
    for topic in &mut response.responses {
        let Some((code, message)) = outcomes.get(topic.name.0.as_str()) else { continue };
        if *code == errors::NONE || *code == errors::LEADER_NOT_AVAILABLE {
            continue;
        }
        for partition in topic.partition_responses.iter_mut().filter(|p| p.error_code == errors::UNKNOWN_TOPIC_OR_PARTITION) {
            partition.error_code = *code;
            partition.error_message = Some(text(&format!("topic {:?} cannot be auto-created: {message}", topic.name.0.as_str())));
        }
    }
}

/// A batch naming a compression codec Kafka does not define (5..=7): UNSUPPORTED_COMPRESSION_TYPE,
/// as Kafka answers (the native checks would call it corrupt, which a Kafka client retries
/// forever). The five defined codecs go on to the native checks, which decompress and read them.
fn compression_refusal(records: &[u8]) -> Option<(i16, String)> {
    if records.len() < BATCH_HEADER_BYTES {
        return None;
    }
    let attributes = i16::from_be_bytes([records[position::ATTRIBUTES], records[position::ATTRIBUTES + 1]]);
    let codec = (attributes & attributes::COMPRESSION_MASK) as u8;
    Compression::from_codec(codec)
        .is_none()
        .then(|| (errors::UNSUPPORTED_COMPRESSION_TYPE, format!("compression codec {codec} is not defined (0..=4 are)")))
}

fn produce_partition(index: i32, answer: &Response) -> PartitionProduceResponse {
    let partition = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
    if answer.error != ErrorCode::NONE {
        return partition
            .with_error_code(kafka_code(answer.error))
            .with_base_offset(-1)
            .with_error_message(Some(text(&answer.error_message)));
    }
    let base_offset = i64::try_from(answer.get_produce().base_offset).expect("offsets fit an i64");
    partition.with_base_offset(base_offset).with_log_start_offset(-1)
}

/// Every partition of a produce refused with `code` (a whole-request refusal).
fn refuse_produce(body: &ProduceRequest, code: i16, message: &str) -> ResponseKind {
    let mut response = ProduceResponse::default();
    for topic in &body.topic_data {
        let partitions = topic
            .partition_data
            .iter()
            .map(|p| {
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(code)
                    .with_base_offset(-1)
                    .with_error_message(Some(text(message)))
            })
            .collect();
        response.responses.push(TopicProduceResponse::default().with_name(topic.name.clone()).with_partition_responses(partitions));
    }
    ResponseKind::Produce(response)
}

/// One partition of a fetch.
#[derive(Clone, Debug)]
struct FetchWanted {
    topic: String,
    partition: i32,
    offset: i64,
    bytes_max: u32,
}

/// Fetch, session-less: every partition is read by the native fetch; when none has data, the
/// request waits (up to its max wait) for the first partition that gets some, then reads all
/// of them again. Fetch sessions are declined (session id 0 in the answer, which tells the
/// client to keep sending full fetches); an incremental fetch in a session gets
/// FETCH_SESSION_ID_NOT_FOUND.
pub async fn fetch(context: &NodeContext, principal: &Principal, id: u64, body: FetchRequest) -> ResponseKind {
    if body.session_id != 0 || body.session_epoch > 0 {
        return ResponseKind::Fetch(FetchResponse::default().with_error_code(errors::FETCH_SESSION_ID_NOT_FOUND));
    }
    let wanted: Vec<FetchWanted> = body
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| FetchWanted {
                topic: topic.topic.0.to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                bytes_max: u32::try_from(p.partition_max_bytes).unwrap_or(0).max(1),
            })
        })
        .collect();
    let mut answers = fetch_all(context, principal, id, &wanted).await;
    let bytes: usize = answers.iter().map(|a| a.records.as_ref().map_or(0, |r| r.len())).sum();
    let anything = bytes > 0 || answers.iter().any(|a| a.error_code != errors::NONE);
    let wait_ms = body.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX);
    if !anything && wait_ms > 0 && !wanted.is_empty() {
        // Long poll: wait for the first partition with data, then read every partition again.
        let mut waits: FuturesUnordered<_> = wanted.iter().map(|w| fetch_one(context, principal, id, w, wait_ms as u32)).collect();
        let deadline = tokio::time::sleep(Duration::from_millis(wait_ms as u64));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                next = waits.next() => match next {
                    None => break,
                    Some(answer) if answer.records.as_ref().is_some_and(|r| !r.is_empty()) || answer.error_code != errors::NONE => break,
                    Some(_) => {}
                },
            }
        }
        drop(waits);
        answers = fetch_all(context, principal, id, &wanted).await;
    }
    let mut response = FetchResponse::default();
    for (want, answer) in wanted.iter().zip(answers) {
        match response.responses.iter_mut().find(|t| t.topic.0.as_str() == want.topic) {
            Some(topic) => topic.partitions.push(answer),
            None => response
                .responses
                .push(FetchableTopicResponse::default().with_topic(TopicName(text(&want.topic))).with_partitions(vec![answer])),
        }
    }
    ResponseKind::Fetch(response)
}

async fn fetch_all(context: &NodeContext, principal: &Principal, id: u64, wanted: &[FetchWanted]) -> Vec<PartitionData> {
    futures::future::join_all(wanted.iter().map(|want| fetch_one(context, principal, id, want, 0))).await
}

/// One partition through the native fetch: whole batches from the one holding the offset,
/// records never null.
async fn fetch_one(context: &NodeContext, principal: &Principal, id: u64, want: &FetchWanted, wait_ms: u32) -> PartitionData {
    let data = PartitionData::default().with_partition_index(want.partition).with_records(Some(Default::default()));
    let (Ok(partition), Ok(offset)) = (u32::try_from(want.partition), u64::try_from(want.offset)) else {
        let code = if want.partition < 0 { errors::UNKNOWN_TOPIC_OR_PARTITION } else { errors::OFFSET_OUT_OF_RANGE };
        return data.with_error_code(code);
    };
    let mut ask = wire::FetchRequest::new();
    ask.topic = want.topic.clone();
    ask.partition = partition;
    ask.offset = offset;
    ask.bytes_max = want.bytes_max;
    ask.wait_ms_max = wait_ms;
    // Planted bug (simulation and test builds only): the Kafka listener's Fetch goes straight to
    // the native fetch, past its read check on the topic (A1 on the Kafka path).
    let answer = if context.planted.kafka_fetch_skips_acl_check && context.state.is_meta_ready() {
        request::fetch::fetch(context, id, ask).await
    } else {
        request::handle(context, principal, native(id, Body::fetch(ask))).await
    };
    let data = data.with_error_code(kafka_code(answer.error));
    if !answer.has_fetch() {
        return data;
    }
    let fetched = answer.get_fetch();
    let high_watermark = i64::try_from(fetched.high_watermark).expect("offsets fit an i64");
    data.with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(i64::try_from(fetched.log_start_offset).expect("offsets fit an i64"))
        .with_aborted_transactions(Some(Vec::new()))
        .with_records(Some(bytes::Bytes::copy_from_slice(&fetched.batches)))
}

/// ListOffsets: earliest (-2), latest (-1) or the first offset at a timestamp, each through
/// the native ListOffsets (served by the partition's leader only).
pub async fn list_offsets(context: &NodeContext, principal: &Principal, id: u64, body: ListOffsetsRequest) -> ResponseKind {
    let mut response = ListOffsetsResponse::default();
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let answer = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_timestamp(-1).with_offset(-1);
            let Ok(partition) = u32::try_from(p.partition_index) else {
                partitions.push(answer.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let mut ask = wire::ListOffsetsRequest::new();
            ask.topic = name.clone();
            ask.partition = partition;
            match p.timestamp {
                -2 => ask.spec = OffsetSpec::EARLIEST,
                -1 => ask.spec = OffsetSpec::LATEST,
                t if t >= 0 => {
                    ask.spec = OffsetSpec::BY_TIMESTAMP;
                    ask.timestamp_ms = t;
                }
                _ => {
                    partitions.push(answer.with_error_code(errors::INVALID_REQUEST));
                    continue;
                }
            }
            let native_answer = request::handle(context, principal, native(id, Body::list_offsets(ask))).await;
            if native_answer.error != ErrorCode::NONE || !native_answer.has_list_offsets() {
                partitions.push(answer.with_error_code(kafka_code(native_answer.error)));
                continue;
            }
            let listed = native_answer.get_list_offsets();
            partitions
                .push(answer.with_offset(i64::try_from(listed.offset).expect("offsets fit an i64")).with_timestamp(listed.timestamp_ms));
        }
        response.topics.push(ListOffsetsTopicResponse::default().with_name(TopicName(text(&name))).with_partitions(partitions));
    }
    ResponseKind::ListOffsets(response)
}

/// Kafka topic configs this listener maps onto ours.
fn topic_config(configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig]) -> Result<wire::TopicConfig, String> {
    let mut config = wire::TopicConfig::new();
    for entry in configs {
        let value = entry.value.as_ref().map(|v| v.as_str()).unwrap_or_default();
        let number = || value.parse::<i64>().map_err(|_| format!("config {}: {value:?} is not a number", entry.name.as_str()));
        match entry.name.as_str() {
            "retention.ms" => config.retention_ms = number()?,
            "retention.bytes" => config.retention_bytes = number()?,
            "segment.bytes" => config.segment_bytes = number()?,
            "max.message.bytes" => config.batch_bytes_max = u32::try_from(number()?).map_err(|e| e.to_string())?,
            other => return Err(format!("topic config {other:?} is not supported")),
        }
    }
    Ok(config)
}

/// CreateTopics through the controller (any node forwards it there).
pub async fn create_topics(context: &NodeContext, principal: &Principal, id: u64, body: CreateTopicsRequest) -> ResponseKind {
    let mut response = CreateTopicsResponse::default();
    let mut ask = wire::CreateTopicsRequest::new();
    ask.timeout_ms = u32::try_from(body.timeout_ms).unwrap_or(0);
    for topic in &body.topics {
        let result = CreatableTopicResult::default().with_name(topic.name.clone()).with_num_partitions(-1).with_replication_factor(-1);
        let refusal = if body.validate_only {
            Some((errors::INVALID_REQUEST, "validate_only is not supported".to_string()))
        } else if !topic.assignments.is_empty() {
            Some((errors::INVALID_REPLICA_ASSIGNMENT, "manual replica assignments are not supported".to_string()))
        } else {
            None
        };
        let config = match (refusal, topic_config(&topic.configs)) {
            (Some((code, message)), _) => {
                response.topics.push(result.with_error_code(code).with_error_message(Some(text(&message))));
                continue;
            }
            (None, Err(message)) => {
                response.topics.push(result.with_error_code(errors::INVALID_CONFIG).with_error_message(Some(text(&message))));
                continue;
            }
            (None, Ok(config)) => config,
        };
        let mut create = wire::CreateTopic::new();
        create.name = topic.name.0.to_string();
        create.partitions = u32::try_from(topic.num_partitions).unwrap_or(0);
        create.replication_factor = u32::try_from(topic.replication_factor).unwrap_or(0);
        create.set_config(config);
        ask.topics.push(create);
        response.topics.push(result);
    }
    if ask.topics.is_empty() {
        return ResponseKind::CreateTopics(response);
    }
    let answer = request::handle(context, principal, native(id, Body::create_topics(ask))).await;
    for result in response.topics.iter_mut().filter(|r| r.error_code == errors::NONE) {
        let (code, message) = if answer.has_create_topics() {
            match answer.get_create_topics().topics.iter().find(|t| t.name == result.name.0.as_str()) {
                Some(native_result) => (native_result.error, native_result.error_message.clone()),
                None => (ErrorCode::INTERNAL, "the controller did not answer for this topic".to_string()),
            }
        } else {
            (answer.error, answer.error_message.clone())
        };
        result.error_code = kafka_code(code);
        if code != ErrorCode::NONE {
            result.error_message = Some(text(&message));
        }
    }
    ResponseKind::CreateTopics(response)
}

/// DeleteTopics through the controller, by name (topic ids are not kept).
pub async fn delete_topics(context: &NodeContext, principal: &Principal, id: u64, body: DeleteTopicsRequest) -> ResponseKind {
    let mut names: Vec<String> = body.topic_names.iter().map(|n| n.0.to_string()).collect();
    let mut response = DeleteTopicsResponse::default();
    for state in &body.topics {
        match &state.name {
            Some(name) => names.push(name.0.to_string()),
            None => response.responses.push(
                DeletableTopicResult::default()
                    .with_topic_id(state.topic_id)
                    .with_error_code(errors::UNKNOWN_TOPIC_ID)
                    .with_error_message(Some(text("topic ids are not supported; delete by name"))),
            ),
        }
    }
    if names.is_empty() {
        return ResponseKind::DeleteTopics(response);
    }
    let mut ask = wire::DeleteTopicsRequest::new();
    ask.names = names.clone().into();
    ask.timeout_ms = u32::try_from(body.timeout_ms).unwrap_or(0);
    let answer = request::handle(context, principal, native(id, Body::delete_topics(ask))).await;
    for name in names {
        let (code, message) = if answer.has_delete_topics() {
            match answer.get_delete_topics().topics.iter().find(|t| t.name == name) {
                Some(result) => (result.error, result.error_message.clone()),
                None => (ErrorCode::INTERNAL, "the controller did not answer for this topic".to_string()),
            }
        } else {
            (answer.error, answer.error_message.clone())
        };
        let mut result = DeletableTopicResult::default().with_name(Some(TopicName(text(&name)))).with_error_code(kafka_code(code));
        if code != ErrorCode::NONE {
            result.error_message = Some(text(&message));
        }
        response.responses.push(result);
    }
    ResponseKind::DeleteTopics(response)
}

/// InitProducerId for idempotent producers (transactional ids are refused).
pub async fn init_producer_id(context: &NodeContext, principal: &Principal, id: u64, body: InitProducerIdRequest) -> ResponseKind {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if body.transactional_id.is_some() {
        return ResponseKind::InitProducerId(response.with_error_code(errors::INVALID_REQUEST));
    }
    let mut ask = wire::InitProducerIdRequest::new();
    ask.producer_id = body.producer_id.0;
    ask.producer_epoch = i32::from(body.producer_epoch);
    let answer = request::handle(context, principal, native(id, Body::init_producer_id(ask))).await;
    if answer.error != ErrorCode::NONE || !answer.has_init_producer_id() {
        return ResponseKind::InitProducerId(response.with_error_code(kafka_code(answer.error)));
    }
    let given = answer.get_init_producer_id();
    let Ok(epoch) = i16::try_from(given.producer_epoch) else {
        return ResponseKind::InitProducerId(response.with_error_code(errors::INVALID_PRODUCER_EPOCH));
    };
    ResponseKind::InitProducerId(response.with_producer_id(ProducerId(given.producer_id)).with_producer_epoch(epoch))
}

/// FindCoordinator for groups (key type 0); v4+ asks for several keys at once.
pub async fn find_coordinator(
    context: &NodeContext,
    principal: &Principal,
    brokers: &KafkaBrokers,
    id: u64,
    version: i16,
    body: FindCoordinatorRequest,
) -> ResponseKind {
    let keys: Vec<StrBytes> = if version >= 4 { body.coordinator_keys.clone() } else { vec![body.key.clone()] };
    let addresses = brokers.current(context);
    let mut coordinators = Vec::new();
    for key in keys {
        let coordinator = Coordinator::default().with_key(key.clone()).with_node_id(BrokerId(-1)).with_port(-1);
        if body.key_type != 0 {
            let message = "transaction coordinators are not supported";
            coordinators.push(coordinator.with_error_code(errors::INVALID_REQUEST).with_error_message(Some(text(message))));
            continue;
        }
        let mut ask = wire::FindCoordinatorRequest::new();
        ask.group = key.to_string();
        let answer = request::handle(context, principal, native(id, Body::find_coordinator(ask))).await;
        let found = answer.has_find_coordinator().then(|| answer.get_find_coordinator().node_id);
        let coordinator = match found.filter(|_| answer.error == ErrorCode::NONE).and_then(|node| addresses.get(&node).map(|a| (node, a))) {
            Some((node, address)) => {
                coordinator.with_node_id(node_id(node)).with_host(text(&address.ip().to_string())).with_port(i32::from(address.port()))
            }
            None if answer.error == ErrorCode::NONE => coordinator
                .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
                .with_error_message(Some(text("the coordinator has no Kafka listener"))),
            None => coordinator.with_error_code(kafka_code(answer.error)).with_error_message(Some(text(&answer.error_message))),
        };
        coordinators.push(coordinator);
    }
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = coordinators;
    } else {
        let only = coordinators.pop().expect("one key below v4");
        response = response
            .with_error_code(only.error_code)
            .with_error_message(only.error_message)
            .with_node_id(only.node_id)
            .with_host(only.host)
            .with_port(only.port);
    }
    ResponseKind::FindCoordinator(response)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiKey, ProduceRequest};

    use super::*;
    use crate::kafka::codec::{encode, supported_versions};

    /// Every response shape the handlers build, with every field they set, encodes at every
    /// version this listener speaks (the codec refuses a field a version cannot carry, and a
    /// response that does not encode would leave the client waiting).
    #[test]
    fn every_response_the_handlers_build_encodes_at_every_served_version() {
        let message = Some(text("a message"));
        let mut produce = refuse_produce(&ProduceRequest::default(), errors::NOT_LEADER_OR_FOLLOWER, "m");
        if let ResponseKind::Produce(body) = &mut produce {
            let partition = PartitionProduceResponse::default().with_index(0).with_base_offset(7).with_log_start_offset(-1);
            let refused = PartitionProduceResponse::default().with_error_code(6).with_base_offset(-1).with_error_message(message.clone());
            body.responses
                .push(TopicProduceResponse::default().with_name(TopicName(text("t"))).with_partition_responses(vec![partition, refused]));
        }
        let fetched = PartitionData::default()
            .with_high_watermark(3)
            .with_last_stable_offset(3)
            .with_log_start_offset(0)
            .with_aborted_transactions(Some(Vec::new()))
            .with_records(Some(bytes::Bytes::from_static(b"batches")));
        let fetch = ResponseKind::Fetch(
            FetchResponse::default()
                .with_responses(vec![FetchableTopicResponse::default().with_topic(TopicName(text("t"))).with_partitions(vec![fetched])]),
        );
        let partition =
            MetadataResponsePartition::default().with_leader_id(BrokerId(1)).with_leader_epoch(2).with_replica_nodes(vec![BrokerId(1)]);
        let topic = MetadataResponseTopic::default().with_name(Some(TopicName(text("t")))).with_partitions(vec![partition]);
        let broker = MetadataResponseBroker::default().with_node_id(BrokerId(1)).with_host(text("127.0.0.1")).with_port(9092);
        let metadata = ResponseKind::Metadata(
            MetadataResponse::default()
                .with_cluster_id(Some(text(CLUSTER_ID)))
                .with_brokers(vec![broker])
                .with_controller_id(BrokerId(1))
                .with_topics(vec![topic]),
        );
        let listed = ListOffsetsPartitionResponse::default().with_partition_index(0).with_timestamp(-1).with_offset(4).with_error_code(0);
        let list_offsets = ResponseKind::ListOffsets(
            ListOffsetsResponse::default()
                .with_topics(vec![ListOffsetsTopicResponse::default().with_name(TopicName(text("t"))).with_partitions(vec![listed])]),
        );
        let created = CreatableTopicResult::default()
            .with_name(TopicName(text("t")))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_error_code(36)
            .with_error_message(message.clone());
        let create = ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(vec![created]));
        let deleted =
            DeletableTopicResult::default().with_name(Some(TopicName(text("t")))).with_error_code(3).with_error_message(message.clone());
        let delete = ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(vec![deleted]));
        let init = ResponseKind::InitProducerId(InitProducerIdResponse::default().with_producer_id(ProducerId(5)).with_producer_epoch(1));
        let cases = [
            (ApiKey::Produce, produce),
            (ApiKey::Fetch, fetch),
            (ApiKey::Metadata, metadata),
            (ApiKey::ListOffsets, list_offsets),
            (ApiKey::CreateTopics, create),
            (ApiKey::DeleteTopics, delete),
            (ApiKey::InitProducerId, init),
            (ApiKey::ApiVersions, api_versions_response()),
        ];
        for (key, response) in cases {
            let (min, max) = supported_versions(key).unwrap();
            for version in min..=max {
                encode(key, version, 1, &response).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            }
        }
        for version in 0..=3 {
            let coordinator = FindCoordinatorResponse::default()
                .with_error_code(15)
                .with_error_message(message.clone())
                .with_node_id(BrokerId(-1))
                .with_host(text(""))
                .with_port(-1);
            encode(ApiKey::FindCoordinator, version, 1, &ResponseKind::FindCoordinator(coordinator)).unwrap();
        }
        let coordinator = Coordinator::default()
            .with_key(text("g"))
            .with_node_id(BrokerId(2))
            .with_host(text("h"))
            .with_port(1)
            .with_error_message(message);
        let batched = FindCoordinatorResponse::default().with_coordinators(vec![coordinator]);
        encode(ApiKey::FindCoordinator, 4, 1, &ResponseKind::FindCoordinator(batched)).unwrap();
    }
}
