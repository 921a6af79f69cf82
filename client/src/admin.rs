//! Cluster administration: topics (create, delete, list, describe), the cluster's state, and
//! partition offsets.
//!
//! Admin requests go to the controller (any broker when none is known yet) and are retried on
//! retriable errors, NOT_CONTROLLER included, within the cluster's operation timeout. A
//! `create_topic` retried after an indefinite failure may answer TOPIC_ALREADY_EXISTS for the
//! topic its own first attempt created.

use crate::cluster::{ClusterConfig, ClusterSession, TopicInfo};
use crate::error::{ClientError, Result};
use crate::wire::proto::{
    self, CreateTopic, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, ErrorCode, ListOffsetsRequest,
    Request_oneof_body as RequestBody, Response_oneof_body as ResponseBody, TopicResult,
};

/// Per-topic settings; 0 means the broker default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicConfig {
    /// How long records are kept; -1 keeps them forever.
    pub retention_ms: i64,
    /// How many bytes a partition keeps; -1 sets no limit.
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    /// Largest batch the topic accepts.
    pub batch_bytes_max: u32,
}

/// A change of one topic setting ([`Admin::alter_topic`]), by Kafka's name: `retention.ms`,
/// `retention.bytes`, `segment.bytes`, `max.message.bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingChange {
    Set(String, i64),
    /// Back to the broker's default.
    Reset(String),
}

/// One setting of a topic as [`Admin::describe_topic_configs`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettingValue {
    pub name: String,
    pub value: i64,
    /// Equal to the answering broker's default for the setting.
    pub is_default: bool,
}

/// Which offset [`Admin::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next committed record will get.
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    ByTimestamp(i64),
}

/// An offset and the timestamp the broker gave with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: u64,
    pub timestamp_ms: i64,
}

/// A broker as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: u64,
    pub address: String,
}

/// One replica's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub node_id: u64,
    pub matched_index: u64,
    /// The leader's last index minus `matched_index`.
    pub lag: u64,
}

/// One partition's replication state, from its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: u32,
    pub leader: u64,
    pub term: u64,
    pub commit_index: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// Every voter's progress, in the leader's report only (empty in a follower's).
    pub replicas: Vec<ReplicaInfo>,
    /// The reporting replica is suspect after a recovery cut: it does not vote.
    pub suspect: bool,
    /// The replicas the metadata assigns, preferred first.
    pub assigned: Vec<u64>,
    /// Replicas catching up that do not vote yet.
    pub learners: Vec<u64>,
}

impl PartitionState {
    /// The voters that have everything the leader has (lag 0): Kafka's in-sync replicas, as far
    /// as the leader's report tells (empty in a follower's report).
    pub fn caught_up(&self) -> Vec<u64> {
        self.replicas.iter().filter(|replica| replica.lag == 0).map(|replica| replica.node_id).collect()
    }
}

/// A partition moving from one replica set to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: u32,
    pub replicas_from: Vec<u64>,
    pub replicas_to: Vec<u64>,
    /// Where the move stands, for people.
    pub phase: String,
}

/// A replica whose files do not open (damaged) and where its repair stands (issue 15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRepair {
    pub topic: String,
    pub partition: u32,
    pub node: u64,
    /// "blocked" (the partition's only replica: kept down, never reset), "waiting" (for the
    /// other voters to catch up) or "rebuilding" (set aside, catching up out of the votes).
    pub phase: String,
    /// The node's metadata replica (`topic` and `partition` empty), never "blocked".
    pub metadata: bool,
}

/// The answer to [`Admin::describe_cluster`] (or [`Admin::describe_node`]): one node's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub brokers: Vec<BrokerInfo>,
    /// The controller's node id; 0 if unknown.
    pub controller: u64,
    /// The partitions the answering node hosts.
    pub partitions: Vec<PartitionState>,
    /// The node that answered.
    pub node_id: u64,
    /// In the controller's report only: each node's replica of the metadata log.
    pub controller_replicas: Vec<ReplicaInfo>,
    /// Reassignments in progress, per the answering node's metadata.
    pub reassignments: Vec<Reassignment>,
    /// The metadata (controller) group's voters and learners, as the answering node applied
    /// its configuration.
    pub controller_voters: Vec<u64>,
    pub controller_learners: Vec<u64>,
    /// The target of a change of the controller voters in progress (empty: none).
    pub controller_voters_target: Vec<u64>,
    /// Nodes being decommissioned.
    pub draining: Vec<u64>,
    /// Repairs of damaged replicas in progress, per the answering node's metadata.
    pub repairs: Vec<ReplicaRepair>,
    /// Repairs done since the cluster started.
    pub repairs_completed: u64,
}

/// Administrative operations on a cluster.
///
/// ```no_run
/// # async fn example() -> Result<(), odradek_client::ClientError> {
/// use odradek_client::{Admin, TopicConfig};
///
/// let admin = Admin::new(&["127.0.0.1:9092"])?;
/// admin.create_topic("orders", 6, 3, TopicConfig::default()).await?;
/// for topic in admin.list_topics().await? {
///     println!("{topic}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: ClusterSession,
}

impl Admin {
    /// An admin client with default settings; connects on first use.
    pub fn new(bootstrap: &[&str]) -> Result<Admin> {
        Ok(Admin { cluster: ClusterSession::new(bootstrap, ClusterConfig::default())? })
    }

    /// An admin client sharing a cluster handle.
    pub fn with_cluster(cluster: ClusterSession) -> Admin {
        Admin { cluster }
    }

    /// The cluster handle (metadata cache and connections) this admin client uses.
    pub fn cluster(&self) -> &ClusterSession {
        &self.cluster
    }

    fn timeout_ms(&self) -> u32 {
        u32::try_from(self.cluster.config().operation_timeout.as_millis()).unwrap_or(u32::MAX)
    }

    /// Creates a topic.
    pub async fn create_topic(&self, name: &str, partitions: u32, replication_factor: u32, config: TopicConfig) -> Result<()> {
        if name.is_empty() || partitions == 0 || replication_factor == 0 {
            return Err(ClientError::InvalidArgument(format!(
                "topic {name:?} with {partitions} partitions and {replication_factor} replicas"
            )));
        }
        let mut wire_config = proto::TopicConfig::new();
        wire_config.retention_ms = config.retention_ms;
        wire_config.retention_bytes = config.retention_bytes;
        wire_config.segment_bytes = config.segment_bytes;
        wire_config.batch_bytes_max = config.batch_bytes_max;
        let mut topic = CreateTopic::new();
        topic.name = name.to_string();
        topic.partitions = partitions;
        topic.replication_factor = replication_factor;
        topic.config = Some(wire_config).into();
        let mut request = CreateTopicsRequest::new();
        request.topics = vec![topic].into();
        request.timeout_ms = self.timeout_ms();
        let response = self.cluster.controller_request(RequestBody::create_topics(request)).await?;
        let Some(ResponseBody::create_topics(created)) = &response.body else {
            return Err(ClientError::Protocol(format!("CreateTopics answered without results: {response:?}")));
        };
        let result = topic_result(&created.topics, name);
        self.cluster.mark_stale(name);
        result
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let mut request = DeleteTopicsRequest::new();
        request.names = vec![name.to_string()].into();
        request.timeout_ms = self.timeout_ms();
        let response = self.cluster.controller_request(RequestBody::delete_topics(request)).await?;
        let Some(ResponseBody::delete_topics(deleted)) = &response.body else {
            return Err(ClientError::Protocol(format!("DeleteTopics answered without results: {response:?}")));
        };
        let result = topic_result(&deleted.topics, name);
        self.cluster.mark_stale(name);
        result
    }

    /// Changes a topic at runtime: grows it to `partitions` (`None`: unchanged; never fewer than
    /// now) and changes settings, all checked before anything changes (a definite error then).
    /// With both, partitions are added first. `validate_only` checks and changes nothing.
    pub async fn alter_topic(&self, name: &str, partitions: Option<u32>, changes: &[SettingChange], validate_only: bool) -> Result<()> {
        let mut request = proto::AlterTopicRequest::new();
        request.name = name.to_string();
        request.partitions = partitions.unwrap_or(0);
        if partitions == Some(0) {
            return Err(ClientError::InvalidArgument(format!("topic {name:?} with 0 partitions")));
        }
        for change in changes {
            let mut wire_change = proto::TopicSettingChange::new();
            match change {
                SettingChange::Set(setting, value) => {
                    wire_change.name = setting.clone();
                    wire_change.value = *value;
                }
                SettingChange::Reset(setting) => {
                    wire_change.name = setting.clone();
                    wire_change.reset = true;
                }
            }
            request.changes.push(wire_change);
        }
        request.timeout_ms = self.timeout_ms();
        request.validate_only = validate_only;
        let response = self.cluster.controller_request(RequestBody::alter_topic(request)).await?;
        let Some(ResponseBody::alter_topic(altered)) = &response.body else {
            return Err(ClientError::Protocol(format!("AlterTopic answered without a result: {response:?}")));
        };
        let result = topic_result(std::slice::from_ref(altered.get_result()), name);
        self.cluster.mark_stale(name);
        result
    }

    /// A topic's settings, each with its value and whether it is the broker's default.
    pub async fn describe_topic_configs(&self, name: &str) -> Result<Vec<TopicSettingValue>> {
        let mut request = proto::DescribeTopicConfigsRequest::new();
        request.names = vec![name.to_string()].into();
        let response = self.cluster.controller_request(RequestBody::describe_topic_configs(request)).await?;
        let Some(ResponseBody::describe_topic_configs(described)) = &response.body else {
            return Err(ClientError::Protocol(format!("DescribeTopicConfigs answered without configs: {response:?}")));
        };
        let Some(configs) = described.topics.iter().find(|configs| configs.name == name) else {
            return Err(ClientError::Protocol(format!("no configs for topic {name:?}")));
        };
        if configs.error != ErrorCode::NONE {
            return Err(ClientError::server(configs.error, configs.error_message.clone()));
        }
        Ok(configs
            .settings
            .iter()
            .map(|entry| TopicSettingValue { name: entry.name.clone(), value: entry.value, is_default: entry.is_default })
            .collect())
    }

    /// Every topic's name, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        self.cluster.refresh_metadata(&[]).await?;
        let mut names: Vec<String> = self.cluster.metadata().topics.into_keys().collect();
        names.sort();
        Ok(names)
    }

    /// A topic's partitions, leaders and replicas, freshly fetched.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        self.cluster.refresh_metadata(&[name.to_string()]).await?;
        self.cluster
            .metadata()
            .topics
            .get(name)
            .map(|info| TopicInfo::clone(info))
            .ok_or_else(|| ClientError::server(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic {name:?} does not exist")))
    }

    /// Brokers, controller, and every partition's replication state.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let response = self.cluster.controller_request(RequestBody::describe_cluster(DescribeClusterRequest::new())).await?;
        describe_from(response)
    }

    /// Creates user `name` (or changes its password): the SCRAM credential is computed here, with
    /// a fresh salt and `iterations` (at least 4096); the password never leaves this process.
    pub async fn upsert_user(&self, name: &str, password: &str, mechanism: crate::scram::Mechanism, iterations: u32) -> Result<()> {
        if password.is_empty() || iterations < crate::scram::ITERATIONS_MIN {
            return Err(ClientError::InvalidArgument(format!(
                "an empty password, or {iterations} iterations (at least {})",
                crate::scram::ITERATIONS_MIN
            )));
        }
        let credential = crate::scram::Credential::generate(mechanism, password, iterations);
        let mut request = proto::UpsertUserRequest::new();
        request.name = name.to_string();
        request.mechanism = mechanism.name().to_string();
        request.salt = credential.salt;
        request.iterations = credential.iterations;
        request.stored_key = credential.stored_key;
        request.server_key = credential.server_key;
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::upsert_user(request)).await.map(drop)
    }

    /// Deletes user `name`: its connections lose their access at their next request.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let mut request = proto::DeleteUserRequest::new();
        request.name = name.to_string();
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::delete_user(request)).await.map(drop)
    }

    /// The users of the metadata log: (name, mechanism, iterations).
    pub async fn list_users(&self) -> Result<Vec<(String, String, u32)>> {
        let response = self.cluster.controller_request(RequestBody::list_users(proto::ListUsersRequest::new())).await?;
        Ok(response.get_list_users().users.iter().map(|user| (user.name.clone(), user.mechanism.clone(), user.iterations)).collect())
    }

    /// Adds an ACL (already there: nothing changes).
    pub async fn create_acl(&self, acl: proto::Acl) -> Result<()> {
        let mut request = proto::CreateAclRequest::new();
        request.set_acl(acl);
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::create_acl(request)).await.map(drop)
    }

    /// Removes exactly this ACL (`ACL_NOT_FOUND` when there is none such).
    pub async fn delete_acl(&self, acl: proto::Acl) -> Result<()> {
        let mut request = proto::DeleteAclRequest::new();
        request.set_acl(acl);
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::delete_acl(request)).await.map(drop)
    }

    /// Every ACL of the cluster.
    pub async fn list_acls(&self) -> Result<Vec<proto::Acl>> {
        let response = self.cluster.controller_request(RequestBody::list_acls(proto::ListAclsRequest::new())).await?;
        Ok(response.get_list_acls().acls.to_vec())
    }

    /// Moves partition `partition` of `topic` to `replicas` (the first is the preferred
    /// leader). Returns once the controller recorded the move; the partition's leader carries
    /// it out (new replicas catch up as learners, then one joint-consensus change) and
    /// [`Admin::describe_node`] lists it under `reassignments` until it is done. Retried after
    /// an indefinite failure, it may refuse with "moving already" for its own first attempt.
    pub async fn reassign_partition(&self, topic: &str, partition: u32, replicas: &[u64]) -> Result<()> {
        let mut request = proto::ReassignPartitionRequest::new();
        request.topic = topic.to_string();
        request.partition = partition;
        request.replicas = replicas.to_vec();
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::reassign_partition(request)).await.map(drop)
    }

    /// Records node `request.node_id` joining the running cluster (what `odradek server
    /// --join` sends before it starts); the answer names the bootstrap members and every node
    /// that joined. A definite refusal (INVALID_REQUEST) says why: a bootstrap member's id, or an
    /// id that joined already with another data directory (without `replace`).
    pub async fn join_cluster(&self, mut request: proto::JoinClusterRequest) -> Result<proto::JoinClusterResponse> {
        request.timeout_ms = self.timeout_ms();
        let response = self.cluster.controller_request(RequestBody::join_cluster(request)).await?;
        match response.body {
            Some(ResponseBody::join_cluster(joined)) => Ok(joined),
            _ => Err(ClientError::Protocol("a JoinCluster answer without its body".into())),
        }
    }

    /// Decommissions node `node_id`: returns once the controller recorded it; the node drains
    /// (its replicas move away) and is then removed ([`Admin::describe_cluster`] lists it under
    /// `draining` meanwhile).
    pub async fn decommission_node(&self, node_id: u64) -> Result<()> {
        let mut request = proto::DecommissionNodeRequest::new();
        request.node_id = node_id;
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::decommission_node(request)).await.map(drop)
    }

    /// Cancels node `node_id`'s running decommission: it stops draining and stays a member
    /// (partition moves off it that were recorded already run to their end). Refused (definite)
    /// when the node is not draining or was removed already.
    pub async fn cancel_decommission(&self, node_id: u64) -> Result<()> {
        let mut request = proto::DecommissionNodeRequest::new();
        request.node_id = node_id;
        request.cancel = true;
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::decommission_node(request)).await.map(drop)
    }

    /// Spreads replicas, then preferred leaders, evenly over the cluster's nodes; returns the
    /// number of partition moves recorded ([`Admin::describe_cluster`] lists them until done).
    pub async fn rebalance(&self) -> Result<u32> {
        let mut request = proto::RebalanceRequest::new();
        request.timeout_ms = self.timeout_ms();
        let response = self.cluster.controller_request(RequestBody::rebalance(request)).await?;
        match response.body {
            Some(ResponseBody::rebalance(rebalanced)) => Ok(rebalanced.moves),
            _ => Err(ClientError::Protocol("a Rebalance answer without its body".into())),
        }
    }

    /// Moves the controller (metadata) group's voters to `voters`, through joint consensus;
    /// returns once the controller recorded the change (`cluster status` shows it until done).
    pub async fn change_controllers(&self, voters: &[u64]) -> Result<()> {
        let mut request = proto::ChangeControllersRequest::new();
        request.voters = voters.to_vec();
        request.timeout_ms = self.timeout_ms();
        self.cluster.controller_request(RequestBody::change_controllers(request)).await.map(drop)
    }

    /// Hands the leadership of `topic`/`partition` to node `to`, a caught-up voter of the
    /// partition; returns once `to` leads.
    pub async fn transfer_leader(&self, topic: &str, partition: u32, to: u64) -> Result<()> {
        let mut request = proto::TransferLeaderRequest::new();
        request.topic = topic.to_string();
        request.partition = partition;
        request.to = to;
        request.timeout_ms = self.timeout_ms();
        self.cluster.partition_request(topic, partition, RequestBody::transfer_leader(request)).await.map(drop)
    }

    /// Deletes the records of `topic`/`partition` below `before` (Kafka's DeleteRecords; `None`:
    /// up to the high watermark): the partition's log start moves there on every replica,
    /// through the partition's raft log. Returns the log start after the request. An offset
    /// above the high watermark is refused (OFFSET_OUT_OF_RANGE); one at or below the log start
    /// changes nothing.
    pub async fn delete_records(&self, topic: &str, partition: u32, before: Option<u64>) -> Result<u64> {
        let mut request = proto::DeleteRecordsRequest::new();
        request.topic = topic.to_string();
        request.partition = partition;
        request.before_offset = before.map_or(-1, |offset| i64::try_from(offset).unwrap_or(i64::MAX));
        request.timeout_ms = self.timeout_ms();
        let response = self.cluster.partition_request(topic, partition, RequestBody::delete_records(request)).await?;
        Ok(response.get_delete_records().log_start_offset)
    }

    /// What one node (at `address`) reports: the brokers, the controller it knows, and the
    /// partitions it hosts (with follower lag where it leads). `odradek cluster status` merges
    /// every node's report.
    pub async fn describe_node(&self, address: &str) -> Result<ClusterDescription> {
        let connection = self.cluster.connection(address).await?;
        let response = crate::cluster::check(connection.request(RequestBody::describe_cluster(DescribeClusterRequest::new())).await?)?;
        describe_from(response)
    }
}

fn replica_info(replica: &proto::ReplicaStatus) -> ReplicaInfo {
    ReplicaInfo { node_id: replica.node_id, matched_index: replica.matched_index, lag: replica.lag }
}

fn describe_from(response: proto::Response) -> Result<ClusterDescription> {
    {
        let Some(ResponseBody::describe_cluster(described)) = &response.body else {
            return Err(ClientError::Protocol(format!("DescribeCluster answered without a description: {response:?}")));
        };
        Ok(ClusterDescription {
            brokers: described
                .brokers
                .iter()
                .map(|broker| BrokerInfo { node_id: broker.node_id, address: broker.address.clone() })
                .collect(),
            controller: described.controller,
            partitions: described
                .partitions
                .iter()
                .map(|status| PartitionState {
                    topic: status.topic.clone(),
                    partition: status.partition,
                    leader: status.leader,
                    term: status.term,
                    commit_index: status.commit_index,
                    high_watermark: status.high_watermark,
                    log_start_offset: status.log_start_offset,
                    replicas: status.replicas.iter().map(replica_info).collect(),
                    suspect: status.suspect,
                    assigned: status.assigned.clone(),
                    learners: status.learners.clone(),
                })
                .collect(),
            node_id: described.node_id,
            controller_replicas: described.controller_replicas.iter().map(replica_info).collect(),
            controller_voters: described.controller_voters.clone(),
            controller_learners: described.controller_learners.clone(),
            controller_voters_target: described.controller_voters_target.clone(),
            draining: described.draining.clone(),
            repairs: described
                .repairs
                .iter()
                .map(|repair| ReplicaRepair {
                    topic: repair.topic.clone(),
                    partition: repair.partition,
                    node: repair.node,
                    phase: repair.phase.clone(),
                    metadata: repair.metadata,
                })
                .collect(),
            repairs_completed: described.repairs_completed,
            reassignments: described
                .reassignments
                .iter()
                .map(|moving| Reassignment {
                    topic: moving.topic.clone(),
                    partition: moving.partition,
                    replicas_from: moving.replicas_from.clone(),
                    replicas_to: moving.replicas_to.clone(),
                    phase: moving.phase.clone(),
                })
                .collect(),
        })
    }
}

impl Admin {
    /// An offset of `topic`/`partition`, asked of its leader.
    pub async fn list_offsets(&self, topic: &str, partition: u32, query: OffsetQuery) -> Result<ListedOffset> {
        list_offsets(&self.cluster, topic, partition, query).await
    }
}

/// The named topic's result in a CreateTopics/DeleteTopics answer.
fn topic_result(results: &[TopicResult], name: &str) -> Result<()> {
    match results.iter().find(|result| result.name == name) {
        None => Err(ClientError::Protocol(format!("no result for topic {name:?}"))),
        Some(result) if result.error == ErrorCode::NONE => Ok(()),
        Some(result) => Err(ClientError::server(result.error, result.error_message.clone())),
    }
}

/// ListOffsets against the partition's leader, retried on retriable errors.
pub async fn list_offsets(cluster: &ClusterSession, topic: &str, partition: u32, query: OffsetQuery) -> Result<ListedOffset> {
    let mut request = ListOffsetsRequest::new();
    request.topic = topic.to_string();
    request.partition = partition;
    (request.spec, request.timestamp_ms) = match query {
        OffsetQuery::Earliest => (proto::OffsetSpec::EARLIEST, 0),
        OffsetQuery::Latest => (proto::OffsetSpec::LATEST, 0),
        OffsetQuery::ByTimestamp(timestamp_ms) => (proto::OffsetSpec::BY_TIMESTAMP, timestamp_ms),
    };
    let response = cluster.partition_request(topic, partition, RequestBody::list_offsets(request)).await?;
    let Some(ResponseBody::list_offsets(listed)) = &response.body else {
        return Err(ClientError::Protocol(format!("ListOffsets answered without an offset: {response:?}")));
    };
    Ok(ListedOffset { offset: listed.offset, timestamp_ms: listed.timestamp_ms })
}
