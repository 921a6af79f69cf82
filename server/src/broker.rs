//! Request handlers: what a node does with each client request (see `client/proto/wire.proto`
//! for the contract and the definite/indefinite error table).
//!
//! Partition requests are served by the replicas that host the partition: produce by the raft
//! leader (a follower answers `NOT_LEADER` with the leader it knows), fetch and list-offsets by
//! any replica, never above what that replica has applied, which is committed (L12).
//! Controller requests (create/delete topics, producer ids) are proposed to the metadata group by
//! its leader; any other node forwards them there, so a client may send them anywhere.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use odradek_client::batch::{set_base_offset, BatchHeader};
use odradek_client::wire::proto::{self as wire, Acks, ErrorCode, OffsetSpec, Request, Request_oneof_body as Body, Response};
use odradek_client::wire::{error_response, read_frame, write_frame, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use odradek_consensus::{Durability, EntryMeta, GroupId, NodeError, NodeHandle, NodeId, ProposeError, StorageFault};
use odradek_log::buggify;
use raft::StateRole;

use crate::config::ServerConfig;
use crate::meta::{self, MetaCommand, MetaOutcome, TopicSettings, METADATA_GROUP};
use crate::planted::PlantedBug;
use crate::state::{rejection_code, Shared, REJECTION_DUPLICATE};

/// The longest a fetch may wait for data.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;
/// Fetch bytes when a request asks for 0, and the most it may ask for.
pub const FETCH_BYTES_DEFAULT: u32 = 1024 * 1024;
pub const FETCH_BYTES_MAX: u32 = 32 * 1024 * 1024;
/// How long a forwarded controller request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a controller request waits for a leader of the metadata group.
const CONTROLLER_WAIT: Duration = Duration::from_secs(10);

/// What every handler needs.
pub struct Context {
    pub config: Arc<ServerConfig>,
    pub shared: Arc<Shared>,
    pub node: NodeHandle,
    pub faults: crate::faults::FaultHooks,
}

fn ok_response(request_id: u64) -> Response {
    let mut response = Response::new();
    response.request_id = request_id;
    response
}

/// The outcome of a produce once it was queued (or refused before): `None` for acks=0.
pub type ProducePending = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Response>> + Send>>;

impl Context {
    /// Answers every request but Hello and Produce (see [`Context::produce`]).
    pub async fn handle(&self, mut request: Request) -> Response {
        let id = request.request_id;
        if !self.shared.is_meta_ready() && !matches!(request.body, Some(Body::hello(_)) | None) {
            return not_ready(id);
        }
        match request.body.take() {
            Some(Body::metadata(body)) => self.metadata(id, body).await,
            Some(Body::create_topics(body)) => self.controller_request(id, Body::create_topics(body)).await,
            Some(Body::delete_topics(body)) => self.controller_request(id, Body::delete_topics(body)).await,
            Some(Body::init_producer_id(body)) => self.controller_request(id, Body::init_producer_id(body)).await,
            Some(Body::describe_cluster(_)) => self.describe_cluster(id).await,
            Some(Body::fetch(body)) => self.fetch(id, body).await,
            Some(Body::list_offsets(body)) => self.list_offsets(id, body).await,
            Some(Body::hello(_)) => error_response(id, ErrorCode::INVALID_REQUEST, "Hello is only valid as a connection's first request"),
            Some(Body::produce(_)) => unreachable!("produce requests go through Context::produce"),
            Some(_) | None => error_response(id, ErrorCode::UNKNOWN_REQUEST, "request names no kind this server knows"),
        }
    }

    // ---- partitions -------------------------------------------------------------------------

    /// Where `topic`/`partition` lives: its group, preferred leader and settings; or the error.
    fn locate(&self, topic: &str, partition: u32) -> Result<(GroupId, NodeId, TopicSettings), (ErrorCode, String)> {
        let inner = self.shared.lock();
        let Some(info) = inner.meta.topic(topic) else {
            return Err((ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {topic:?}")));
        };
        let Some(assignment) = info.partitions.get(partition as usize) else {
            let count = info.partitions.len();
            return Err((
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {topic:?} has {count} partitions; no partition {partition}"),
            ));
        };
        Ok((assignment.group, replica_to_try(&assignment.replicas, self.shared.node_id), info.settings.clone()))
    }

    /// How many replicas (raft voters) the partition of `group` has, per the metadata.
    fn replica_count(&self, group: GroupId) -> Option<usize> {
        let inner = self.shared.lock();
        inner
            .meta
            .topics()
            .values()
            .flat_map(|info| info.partitions.iter())
            .find(|assignment| assignment.group == group)
            .map(|a| a.replicas.len())
    }

    fn not_hosted(&self, id: u64, topic: &str, partition: u32, preferred: NodeId) -> Response {
        let mut response =
            error_response(id, ErrorCode::NOT_LEADER, format!("node {} is not a replica of {topic}/{partition}", self.shared.node_id));
        let mut produce = wire::ProduceResponse::new();
        produce.leader_hint = preferred;
        response.set_produce(produce);
        response
    }

    /// Validates a produce and queues its proposal, in the order requests arrive on the
    /// connection (the caller awaits this before reading the next request); the returned future
    /// waits for the outcome.
    pub async fn produce(self: &Arc<Self>, id: u64, mut body: wire::ProduceRequest) -> ProducePending {
        let acks = body.acks;
        let answer = move |response: Response| -> ProducePending {
            let reply = (acks != Acks::ACKS_NONE).then_some(response);
            Box::pin(async move { reply })
        };
        if !self.shared.is_meta_ready() {
            return answer(not_ready(id));
        }
        let (group, preferred, settings) = match self.locate(&body.topic, body.partition) {
            Ok(found) => found,
            Err((code, message)) => return answer(error_response(id, code, message)),
        };
        if !self.shared.hosts(group) {
            return answer(self.not_hosted(id, &body.topic, body.partition, preferred));
        }
        let batch = Bytes::from(std::mem::take(&mut body.batch));
        let limit = settings.batch_bytes_max as usize;
        if batch.len() > limit {
            let message = format!("a batch of {} bytes exceeds the topic's limit of {limit} bytes", batch.len());
            return answer(error_response(id, ErrorCode::RECORD_TOO_LARGE, message));
        }
        let header = match BatchHeader::parse(&batch) {
            Ok(header) => header,
            Err(error) => return answer(error_response(id, ErrorCode::CORRUPT_BATCH, error.to_string())),
        };
        if header.is_transactional() || header.is_control() {
            return answer(error_response(id, ErrorCode::INVALID_REQUEST, "transactional and control batches are not supported"));
        }
        if header.producer_id >= 0 && acks != Acks::ACKS_ALL {
            return answer(error_response(id, ErrorCode::INVALID_REQUEST, "an idempotent producer must use acks=all"));
        }
        if buggify::fires(0.01) {
            // F-B5: a spurious, definite "not leader" (nothing was proposed); the client must
            // refresh its metadata and retry without losing or duplicating the batch.
            return answer(error_response(id, ErrorCode::NOT_LEADER, "buggify: spurious not-leader"));
        }
        if !self.shared.take_disk_budget(batch.len() as u64) {
            let message = format!(
                "node {} is below its free-space reserve of {} bytes; nothing was appended (free space, or delete data)",
                self.shared.node_id, self.config.disk_reserve_bytes
            );
            return answer(error_response(id, ErrorCode::DISK_FULL, message));
        }
        let record_count = u32::try_from(header.records_count).expect("validated: 1..=BATCH_RECORDS_MAX");
        let meta = EntryMeta::Data { record_count, max_timestamp: header.max_timestamp };
        let ack_on_leader_log = acks == Acks::ACKS_LEADER || self.config.planted(PlantedBug::AckBeforeCommit);
        let durability = if ack_on_leader_log { Durability::LeaderLog } else { Durability::Committed };
        let ticket = self.node.submit(group, batch, meta, durability).await;
        let timeout = Duration::from_millis(u64::from(body.timeout_ms).clamp(1, self.config.request_timeout_ms));
        let this = Arc::clone(self);
        Box::pin(async move {
            let outcome = tokio::time::timeout(timeout, ticket.outcome()).await;
            // F-B4: a late answer (the client may time out and retry a batch that is appended).
            buggify::maybe_delay(0.05, 200).await;
            if acks == Acks::ACKS_NONE {
                return None;
            }
            let mut produce = wire::ProduceResponse::new();
            produce.log_append_time_ms = -1;
            let mut response = ok_response(id);
            match outcome {
                Ok(Ok(appended)) => {
                    produce.base_offset = appended.base_offset;
                    if acks == Acks::ACKS_ALL {
                        // R5, for the simulator's checker: this acknowledgement promises a quorum has it on disk.
                        let (node, index, term) = (this.shared.node_id, appended.index, appended.term);
                        odradek_consensus::observe::emit(|| {
                            let voters = this.replica_count(group).unwrap_or(1);
                            odradek_consensus::observe::Event::Acked { node, group, index, term, voters }
                        });
                    }
                }
                Ok(Err(ProposeError::Rejected { rejection, .. })) if rejection.code == REJECTION_DUPLICATE => {
                    produce.base_offset = rejection.value;
                }
                Ok(Err(ProposeError::LeadershipLost { .. })) if this.config.planted(PlantedBug::StaleLeaderServesProduce) => {
                    // Planted: the deposed leader vouches for a batch it can no longer vouch for.
                    let bounds = this.node.log_bounds(group).await.ok().flatten();
                    produce.base_offset = bounds.map_or(0, |bounds| bounds.next_offset.saturating_sub(1));
                }
                Ok(Err(error)) => {
                    let (code, hint) = this.propose_error(&error, preferred);
                    produce.leader_hint = hint;
                    response = error_response(id, code, error.to_string());
                }
                Err(_) => {
                    let message = format!("no outcome within {} ms; the batch may or may not be appended", timeout.as_millis());
                    response = error_response(id, ErrorCode::REQUEST_TIMED_OUT, message);
                }
            }
            response.set_produce(produce);
            Some(response)
        })
    }

    /// The wire code of a failed proposal, and a leader hint.
    fn propose_error(&self, error: &ProposeError, preferred: NodeId) -> (ErrorCode, NodeId) {
        match error {
            ProposeError::NotLeader { leader, .. } => (ErrorCode::NOT_LEADER, if *leader != 0 { *leader } else { preferred }),
            ProposeError::GroupUnknown(_) | ProposeError::Stopped(_) => (ErrorCode::NOT_LEADER, preferred),
            ProposeError::Superseded { .. } => (ErrorCode::NOT_LEADER, 0),
            ProposeError::Busy { .. } => (ErrorCode::LEADER_NOT_AVAILABLE, 0),
            ProposeError::Invalid { .. } => (ErrorCode::INVALID_REQUEST, 0),
            ProposeError::Rejected { rejection, .. } => (rejection_code(rejection), 0),
            ProposeError::LeadershipLost { .. } | ProposeError::StoppedAfterAppend { .. } | ProposeError::NodeStopped => {
                (ErrorCode::LEADERSHIP_LOST, 0)
            }
        }
    }

    /// (high watermark, log start, applied index) of a hosted partition.
    fn partition_bounds(&self, group: GroupId) -> Option<(u64, u64, u64)> {
        let inner = self.shared.lock();
        let state = &inner.partitions.get(&group)?.state;
        Some((state.high_watermark(), state.log_start_offset(), state.applied_index()))
    }

    /// What fetch may serve: [`Context::partition_bounds`], or with the planted
    /// `ServeAboveCommit` the local log's end.
    async fn fetch_bounds(&self, group: GroupId) -> Option<(u64, u64, u64)> {
        let (high_watermark, log_start, applied) = self.partition_bounds(group)?;
        if self.config.planted(PlantedBug::ServeAboveCommit) {
            if let Ok(Some(bounds)) = self.node.log_bounds(group).await {
                return Some((bounds.next_offset, log_start, u64::MAX));
            }
        }
        Some((high_watermark, log_start, applied))
    }

    async fn fetch(&self, id: u64, body: wire::FetchRequest) -> Response {
        let (group, preferred, _) = match self.locate(&body.topic, body.partition) {
            Ok(found) => found,
            Err((code, message)) => return error_response(id, code, message),
        };
        if buggify::fires(0.01) {
            // F-B5: a spurious retriable error; the consumer must retry from the same position.
            return error_response(id, ErrorCode::NOT_LEADER, "buggify: spurious not-leader");
        }
        let Some(mut high_watermark_rx) = self.shared.watch_high_watermark(group) else {
            return self.not_hosted(id, &body.topic, body.partition, preferred);
        };
        let Some((high_watermark, log_start, _)) = self.fetch_bounds(group).await else {
            return self.not_hosted(id, &body.topic, body.partition, preferred);
        };
        let offset = body.offset;
        if offset < log_start || offset > high_watermark {
            let message = format!(
                "offset {offset} is outside {}/{}: log start {log_start}, high watermark {high_watermark}",
                body.topic, body.partition
            );
            let mut response = error_response(id, ErrorCode::OFFSET_OUT_OF_RANGE, message);
            response.set_fetch(fetch_response(high_watermark, log_start, Vec::new()));
            return response;
        }
        if offset == high_watermark && body.max_wait_ms > 0 {
            let wait = Duration::from_millis(u64::from(body.max_wait_ms.min(FETCH_WAIT_MS_MAX)));
            // Timing out is the normal end of an empty long poll.
            let _ = tokio::time::timeout(wait, high_watermark_rx.wait_for(|hw| *hw > offset)).await;
        }
        let Some((high_watermark, log_start, applied)) = self.fetch_bounds(group).await else {
            return self.not_hosted(id, &body.topic, body.partition, preferred);
        };
        if offset >= high_watermark {
            let mut response = ok_response(id);
            response.set_fetch(fetch_response(high_watermark, log_start, Vec::new()));
            return response;
        }
        let bytes_max = match body.max_bytes {
            0 => FETCH_BYTES_DEFAULT,
            n => n.min(FETCH_BYTES_MAX),
        };
        match self.node.read_records(group, offset, u64::from(bytes_max), applied).await {
            Ok(entries) => {
                let total: usize = entries.iter().map(|e| e.payload.len()).sum();
                let mut batches = Vec::with_capacity(total);
                for entry in entries {
                    let start = batches.len();
                    batches.extend_from_slice(&entry.payload);
                    // The only byte the broker changes: the base offset the log assigned.
                    set_base_offset(&mut batches[start..], entry.base_offset as i64);
                }
                let mut response = ok_response(id);
                response.set_fetch(fetch_response(high_watermark, log_start, batches));
                response
            }
            Err(NodeError::Storage { source: StorageFault::Log(odradek_log::Error::OffsetBelowStart { start_offset, .. }), .. }) => {
                let message = format!("offset {offset} was deleted by retention; the log now starts at {start_offset}");
                let mut response = error_response(id, ErrorCode::OFFSET_OUT_OF_RANGE, message);
                response.set_fetch(fetch_response(high_watermark, start_offset, Vec::new()));
                response
            }
            Err(NodeError::GroupUnknown(_)) => self.not_hosted(id, &body.topic, body.partition, preferred),
            Err(error) => error_response(id, ErrorCode::INTERNAL, format!("reading the log: {error}")),
        }
    }

    async fn list_offsets(&self, id: u64, body: wire::ListOffsetsRequest) -> Response {
        let (group, preferred, _) = match self.locate(&body.topic, body.partition) {
            Ok(found) => found,
            Err((code, message)) => return error_response(id, code, message),
        };
        let refuse = |code: ErrorCode, message: String, hint: NodeId| {
            let mut response = error_response(id, code, message);
            let mut list = wire::ListOffsetsResponse::new();
            list.leader_hint = hint;
            response.set_list_offsets(list);
            response
        };
        let Some((high_watermark, log_start, applied)) = self.partition_bounds(group) else {
            let message = format!("node {} is not a replica of {}/{}", self.shared.node_id, body.topic, body.partition);
            return refuse(ErrorCode::NOT_LEADER, message, preferred);
        };
        // Only the leader's bounds are the partition's (as in Kafka): a follower's high watermark
        // lags, and a client seeking to the end from it would stop short (found by the simulator:
        // swarm seed 719's final drain asked a follower right after a power loss of every node
        // and stopped 7 records before the end). And a new leader answers only once it applied an
        // entry of its own term: before that its high watermark may lag too (Kafka's
        // OFFSET_NOT_AVAILABLE, KIP-207).
        match self.leader_of(group).await {
            Some((leader, term)) if leader == self.shared.node_id => {
                let caught_up = self.shared.lock().partitions.get(&group).is_some_and(|p| p.state.applied_term() == term);
                if !caught_up {
                    let message = format!("node {leader} leads {}/{} but has not caught up its term yet", body.topic, body.partition);
                    return refuse(ErrorCode::LEADER_NOT_AVAILABLE, message, 0);
                }
            }
            Some((leader, _)) if leader != 0 => {
                let message = format!("node {} is not the leader of {}/{}", self.shared.node_id, body.topic, body.partition);
                return refuse(ErrorCode::NOT_LEADER, message, leader);
            }
            _ => {
                let message = format!("{}/{} has no leader right now", body.topic, body.partition);
                return refuse(ErrorCode::LEADER_NOT_AVAILABLE, message, 0);
            }
        }
        let mut list = wire::ListOffsetsResponse::new();
        list.timestamp_ms = -1;
        match body.spec {
            OffsetSpec::EARLIEST => list.offset = log_start,
            OffsetSpec::LATEST => list.offset = high_watermark,
            OffsetSpec::BY_TIMESTAMP => match self.offset_for_timestamp(group, log_start, high_watermark, applied, body.timestamp_ms).await
            {
                Ok(Some((offset, timestamp))) => {
                    list.offset = offset;
                    list.timestamp_ms = timestamp;
                }
                // No record that late: the end of the log (Kafka answers "none"; the end is
                // where a consumer starting from that time would begin).
                Ok(None) => list.offset = high_watermark,
                Err(error) => return error_response(id, ErrorCode::INTERNAL, format!("reading the log: {error}")),
            },
        }
        let mut response = ok_response(id);
        response.set_list_offsets(list);
        response
    }

    /// The first committed record with a timestamp at or after `timestamp`: scans entries by
    /// their max timestamp (in the entry header), then the one batch's records.
    async fn offset_for_timestamp(
        &self,
        group: GroupId,
        log_start: u64,
        high_watermark: u64,
        applied: u64,
        timestamp: i64,
    ) -> Result<Option<(u64, i64)>, NodeError> {
        let mut offset = log_start;
        while offset < high_watermark {
            let entries = self.node.read_records(group, offset, u64::from(FETCH_BYTES_MAX), applied).await?;
            let Some(last) = entries.last() else { return Ok(None) };
            let next = last.base_offset + u64::from(last.record_count);
            for entry in entries.into_iter().filter(|e| e.max_timestamp >= timestamp) {
                let Ok(records) = odradek_client::batch::records(&entry.payload) else { continue };
                for (position, record) in records.enumerate() {
                    let Ok(record) = record else { break };
                    let record_offset = entry.base_offset + position as u64;
                    if record.timestamp >= timestamp && record_offset >= offset {
                        return Ok(Some((record_offset, record.timestamp)));
                    }
                }
            }
            offset = next;
        }
        Ok(None)
    }

    // ---- metadata and cluster state ---------------------------------------------------------

    /// (leader, term) of a group this node hosts; `None` when not hosted.
    async fn leader_of(&self, group: GroupId) -> Option<(NodeId, u64)> {
        let (status, _) = self.node.status(group).await.ok()??;
        Some((status.leader, status.term))
    }

    async fn metadata(&self, id: u64, body: wire::MetadataRequest) -> Response {
        let (brokers, topics) = {
            let inner = self.shared.lock();
            let wanted: Vec<String> =
                if body.topics.is_empty() { inner.meta.topics().keys().cloned().collect() } else { body.topics.to_vec() };
            let topics: Vec<(String, Option<meta::TopicInfo>)> = wanted
                .into_iter()
                .map(|name| {
                    let info = inner.meta.topic(&name).cloned();
                    (name, info)
                })
                .collect();
            (self.brokers(), topics)
        };
        let mut metadata = wire::MetadataResponse::new();
        metadata.brokers = brokers.into();
        metadata.controller = self.leader_of(METADATA_GROUP).await.map_or(0, |(leader, _)| leader);
        for (name, info) in topics {
            let mut topic = wire::TopicMetadata::new();
            topic.name = name.clone();
            match info {
                None => topic.error = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                Some(info) => {
                    for assignment in &info.partitions {
                        let mut partition = wire::PartitionMetadata::new();
                        partition.partition = assignment.partition;
                        partition.replicas = assignment.replicas.clone();
                        // A replica knows the leader; elsewhere the preferred replica is the
                        // best guess (term 0 says it is a guess), and it redirects if wrong.
                        match self.leader_of(assignment.group).await {
                            Some((leader, term)) if leader != 0 => {
                                partition.leader = leader;
                                partition.leader_term = term;
                            }
                            Some(_) => partition.error = ErrorCode::LEADER_NOT_AVAILABLE,
                            None => partition.leader = replica_to_try(&assignment.replicas, self.shared.node_id),
                        }
                        topic.partitions.push(partition);
                    }
                }
            }
            metadata.topics.push(topic);
        }
        let mut response = ok_response(id);
        response.set_metadata(metadata);
        response
    }

    fn brokers(&self) -> Vec<wire::Broker> {
        self.config
            .nodes
            .iter()
            .map(|member| {
                let mut broker = wire::Broker::new();
                broker.node_id = member.id;
                broker.address = member.client.to_string();
                broker
            })
            .collect()
    }

    async fn describe_cluster(&self, id: u64) -> Response {
        let mut cluster = wire::DescribeClusterResponse::new();
        cluster.brokers = self.brokers().into();
        cluster.controller = self.leader_of(METADATA_GROUP).await.map_or(0, |(leader, _)| leader);
        let hosted: Vec<(String, u32, GroupId)> = {
            let inner = self.shared.lock();
            inner
                .meta
                .topics()
                .values()
                .flat_map(|topic| topic.partitions.iter().map(move |p| (topic.name.clone(), p.partition, p.group)))
                .filter(|(_, _, group)| inner.partitions.contains_key(group))
                .collect()
        };
        for (topic, partition, group) in hosted {
            let Ok(Some((status, _))) = self.node.status(group).await else { continue };
            let Some((high_watermark, log_start, _)) = self.partition_bounds(group) else { continue };
            let mut entry = wire::PartitionStatus::new();
            entry.topic = topic;
            entry.partition = partition;
            entry.leader = status.leader;
            entry.term = status.term;
            entry.commit_index = status.commit;
            entry.high_watermark = high_watermark;
            entry.log_start_offset = log_start;
            if status.role == StateRole::Leader {
                for (&node_id, &(matched, _)) in &status.progress {
                    let mut replica = wire::ReplicaStatus::new();
                    replica.node_id = node_id;
                    replica.matched_index = matched;
                    replica.lag = status.last_index.saturating_sub(matched);
                    entry.replicas.push(replica);
                }
            }
            cluster.partitions.push(entry);
        }
        let mut response = ok_response(id);
        response.set_describe_cluster(cluster);
        response
    }

    // ---- controller requests ----------------------------------------------------------------

    /// Runs a controller request here if this node leads the metadata group, else forwards it.
    async fn controller_request(&self, id: u64, body: Body) -> Response {
        let deadline = tokio::time::Instant::now() + CONTROLLER_WAIT;
        let controller = loop {
            match self.leader_of(METADATA_GROUP).await {
                Some((leader, _)) if leader != 0 => break leader,
                _ if tokio::time::Instant::now() >= deadline => {
                    return error_response(id, ErrorCode::NOT_CONTROLLER, "the metadata group has no leader (no quorum of nodes?)");
                }
                _ => tokio::time::sleep(Duration::from_millis(self.config.tick_ms)).await,
            }
        };
        if controller != self.shared.node_id {
            return self.forward(id, controller, body).await;
        }
        match body {
            Body::create_topics(body) => self.create_topics(id, body).await,
            Body::delete_topics(body) => self.delete_topics(id, body).await,
            Body::init_producer_id(body) => self.init_producer_id(id, body).await,
            _ => unreachable!("only controller requests are routed here"),
        }
    }

    /// Sends `body` to the controller over the client protocol and relays its answer.
    async fn forward(&self, id: u64, controller: NodeId, body: Body) -> Response {
        let Some(member) = self.config.nodes.iter().find(|m| m.id == controller) else {
            return error_response(id, ErrorCode::NOT_CONTROLLER, format!("controller {controller} is not a configured node"));
        };
        let address = member.client;
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            let mut hello = wire::Hello::new();
            hello.protocol_version = PROTOCOL_VERSION;
            hello.client_id = format!("node-{}-forward", self.shared.node_id);
            let mut request = Request::new();
            request.request_id = 1;
            request.set_hello(hello);
            write_frame(&mut stream, &request).await?;
            let mut request = Request::new();
            request.request_id = 2;
            request.body = Some(body);
            write_frame(&mut stream, &request).await?;
            for _ in 0..2 {
                let Some(frame) = read_frame(&mut stream, FRAME_BYTES_MAX).await.map_err(std::io::Error::other)? else {
                    return Err(std::io::Error::other("the controller closed the connection"));
                };
                let response = odradek_client::wire::decode_response(&frame).map_err(std::io::Error::other)?;
                if response.request_id == 2 {
                    return Ok(response);
                }
            }
            Err(std::io::Error::other("no answer from the controller"))
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, exchange).await {
            Ok(Ok(mut response)) => {
                response.request_id = id;
                response
            }
            // Sent or not, unknown: indefinite.
            Ok(Err(error)) => error_response(id, ErrorCode::REQUEST_TIMED_OUT, format!("forwarding to controller {controller}: {error}")),
            Err(_) => error_response(id, ErrorCode::REQUEST_TIMED_OUT, format!("controller {controller} did not answer in time")),
        }
    }

    /// Proposes a metadata command and waits until it is applied here.
    async fn propose_meta(&self, command: &MetaCommand, timeout: Duration) -> Result<u64, (ErrorCode, String)> {
        let meta = EntryMeta::Command;
        let ticket = self.node.submit(METADATA_GROUP, Bytes::from(command.encode()), meta, Durability::Committed).await;
        match tokio::time::timeout(timeout, ticket.outcome()).await {
            Ok(Ok(appended)) => Ok(appended.index),
            Ok(Err(error)) if error.is_definite() => Err((ErrorCode::NOT_CONTROLLER, error.to_string())),
            Ok(Err(error)) => Err((ErrorCode::LEADERSHIP_LOST, error.to_string())),
            Err(_) => Err((ErrorCode::REQUEST_TIMED_OUT, "the metadata change did not commit in time".into())),
        }
    }

    fn admin_timeout(timeout_ms: u32) -> Duration {
        Duration::from_millis(if timeout_ms == 0 { 30_000 } else { u64::from(timeout_ms).min(120_000) })
    }

    /// Topic settings with the node's defaults filled in (stored resolved, so every node agrees).
    fn resolve_settings(&self, config: &wire::TopicConfig) -> TopicSettings {
        let defaults = &self.config.topic_defaults;
        TopicSettings {
            retention_ms: if config.retention_ms == 0 { defaults.retention_ms } else { config.retention_ms },
            retention_bytes: if config.retention_bytes == 0 { defaults.retention_bytes } else { config.retention_bytes },
            segment_bytes: if config.segment_bytes <= 0 { defaults.segment_bytes } else { config.segment_bytes as u64 },
            batch_bytes_max: if config.batch_bytes_max == 0 { defaults.batch_bytes_max } else { config.batch_bytes_max },
        }
    }

    async fn create_topics(&self, id: u64, body: wire::CreateTopicsRequest) -> Response {
        let timeout = Self::admin_timeout(body.timeout_ms);
        let mut results = wire::CreateTopicsResponse::new();
        for request in body.topics.iter() {
            let outcome = self.create_topic(request, timeout).await;
            results.topics.push(topic_result(&request.name, outcome));
        }
        let mut response = ok_response(id);
        response.set_create_topics(results);
        response
    }

    async fn create_topic(&self, request: &wire::CreateTopic, timeout: Duration) -> Result<(), (ErrorCode, String)> {
        meta::validate_topic_name(&request.name).map_err(|reason| (ErrorCode::INVALID_TOPIC, reason))?;
        let nodes = self.config.node_ids();
        let defaults = &self.config.topic_defaults;
        let partitions = if request.partitions == 0 { defaults.partitions } else { request.partitions };
        if partitions > meta::PARTITIONS_MAX {
            return Err((ErrorCode::INVALID_PARTITIONS, format!("{partitions} partitions; at most {}", meta::PARTITIONS_MAX)));
        }
        let replication_factor = match request.replication_factor {
            0 => defaults.replication_factor.min(nodes.len() as u32),
            n => n,
        };
        if replication_factor as usize > nodes.len() || replication_factor > meta::REPLICATION_FACTOR_MAX {
            let message =
                format!("replication factor {replication_factor} with {} nodes (at most {})", nodes.len(), meta::REPLICATION_FACTOR_MAX);
            return Err((ErrorCode::INVALID_REPLICATION_FACTOR, message));
        }
        let settings = self.resolve_settings(request.get_config());
        if settings.batch_bytes_max as usize > odradek_client::batch::BATCH_BYTES_MAX {
            return Err((ErrorCode::INVALID_REQUEST, format!("batch_bytes_max above {}", odradek_client::batch::BATCH_BYTES_MAX)));
        }
        let start = {
            let inner = self.shared.lock();
            if inner.meta.topic(&request.name).is_some() {
                return Err((ErrorCode::TOPIC_ALREADY_EXISTS, format!("topic {:?} exists", request.name)));
            }
            inner.meta.topics().len() as u64
        };
        let replicas = meta::assign_replicas(&nodes, partitions, replication_factor, start)
            .map_err(|reason| (ErrorCode::INVALID_REPLICATION_FACTOR, reason))?;
        // Topics may only use registered brokers: register any configured node not yet known.
        crate::controller::register_brokers(self).await;
        let command = MetaCommand::CreateTopic { name: request.name.clone(), replicas, settings };
        let index = self.propose_meta(&command, timeout).await?;
        match self.shared.lock().meta_outcomes.get(&index) {
            Some(MetaOutcome::TopicCreated { .. }) => Ok(()),
            Some(MetaOutcome::TopicExists) => Err((ErrorCode::TOPIC_ALREADY_EXISTS, format!("topic {:?} exists", request.name))),
            Some(MetaOutcome::Rejected(reason)) => Err((ErrorCode::INVALID_REQUEST, reason.clone())),
            other => Err((ErrorCode::INTERNAL, format!("unexpected outcome of CreateTopic: {other:?}"))),
        }
    }

    async fn delete_topics(&self, id: u64, body: wire::DeleteTopicsRequest) -> Response {
        let timeout = Self::admin_timeout(body.timeout_ms);
        let mut results = wire::DeleteTopicsResponse::new();
        for name in body.names.iter() {
            let exists = self.shared.lock().meta.topic(name).is_some();
            let outcome = if exists {
                self.propose_meta(&MetaCommand::DeleteTopic { name: name.clone() }, timeout).await.map(drop)
            } else {
                Err((ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name:?}")))
            };
            results.topics.push(topic_result(name, outcome));
        }
        let mut response = ok_response(id);
        response.set_delete_topics(results);
        response
    }

    async fn init_producer_id(&self, id: u64, body: wire::InitProducerIdRequest) -> Response {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let mut init = wire::InitProducerIdResponse::new();
        if body.producer_id < 0 {
            match self.propose_meta(&MetaCommand::AllocateProducerId, timeout).await {
                // The new producer id is the index of the allocating entry (meta::MetaCommand).
                Ok(index) => match self.shared.lock().meta_outcomes.get(&index) {
                    Some(&MetaOutcome::ProducerId { producer_id, producer_epoch }) => {
                        init.producer_id = producer_id;
                        init.producer_epoch = i32::from(producer_epoch);
                    }
                    other => {
                        return error_response(id, ErrorCode::INTERNAL, format!("unexpected outcome of AllocateProducerId: {other:?}"))
                    }
                },
                Err((code, message)) => return error_response(id, code, message),
            }
        } else {
            let producer_id = body.producer_id;
            if self.shared.lock().meta.producer_epoch(producer_id).is_none() {
                return error_response(id, ErrorCode::UNKNOWN_PRODUCER_ID, format!("producer id {producer_id} was never allocated"));
            }
            let index = match self.propose_meta(&MetaCommand::BumpProducerEpoch { producer_id }, timeout).await {
                Ok(index) => index,
                Err((code, message)) => return error_response(id, code, message),
            };
            match self.shared.lock().meta_outcomes.get(&index) {
                Some(&MetaOutcome::ProducerId { producer_id, producer_epoch }) => {
                    init.producer_id = producer_id;
                    init.producer_epoch = i32::from(producer_epoch);
                }
                Some(MetaOutcome::Rejected(reason)) => return error_response(id, ErrorCode::UNKNOWN_PRODUCER_ID, reason.clone()),
                other => return error_response(id, ErrorCode::INTERNAL, format!("unexpected outcome of BumpProducerEpoch: {other:?}")),
            }
        }
        let mut response = ok_response(id);
        response.set_init_producer_id(init);
        response
    }
}

/// One topic's entry in a CreateTopics/DeleteTopics answer.
fn topic_result(name: &str, outcome: Result<(), (ErrorCode, String)>) -> wire::TopicResult {
    let mut result = wire::TopicResult::new();
    result.name = name.to_string();
    if let Err((code, message)) = outcome {
        result.error = code;
        result.error_message = message;
    }
    result
}

/// The answer of a node whose metadata is still catching up after a start (retriable).
fn not_ready(id: u64) -> Response {
    error_response(id, ErrorCode::LEADER_NOT_AVAILABLE, "this node is catching up on the cluster metadata; retry shortly")
}

fn fetch_response(high_watermark: u64, log_start: u64, batches: Vec<u8>) -> wire::FetchResponse {
    let mut fetch = wire::FetchResponse::new();
    fetch.high_watermark = high_watermark;
    fetch.log_start_offset = log_start;
    fetch.batches = batches;
    fetch
}

/// Where to send a client for a partition this node does not serve: the preferred (first)
/// replica, unless that is this node — an assigned replica that cannot host the group (its files
/// are corrupt, it is still being created) would otherwise send clients back to itself forever
/// (found by the simulator, swarm seed 993: a partition unavailable for a minute after F-S3).
fn replica_to_try(replicas: &[NodeId], me: NodeId) -> NodeId {
    match replicas {
        [first, rest @ ..] if *first == me => rest.first().copied().unwrap_or(me),
        _ => replicas[0],
    }
}

#[cfg(test)]
mod tests {
    use super::replica_to_try;

    #[test]
    fn clients_are_never_sent_back_to_a_node_that_cannot_serve_them() {
        assert_eq!(replica_to_try(&[2, 3, 1], 1), 2, "not a preferred replica: the preferred one");
        assert_eq!(replica_to_try(&[1, 2, 3], 1), 2, "the preferred replica itself: the next one");
        assert_eq!(replica_to_try(&[1, 2, 3], 4), 1, "not a replica at all: the preferred one");
        assert_eq!(replica_to_try(&[1], 1), 1, "a single replica has nobody else to suggest");
    }
}
