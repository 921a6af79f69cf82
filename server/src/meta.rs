//! The controller's state machine: what raft group 0 (the metadata group) replicates.
//!
//! It owns the cluster's registered brokers, the topics with their partitions, each partition's
//! raft group id and replica list, producer-id allocation, and the users (their SCRAM
//! credentials, never a password) and ACLs of issue 19. Commands ([`MetaCommand`]) are
//! protobuf messages (`proto/meta.proto`) proposed to group 0; every node applies the committed
//! ones in index order with [`MetadataState::apply`].
//!
//! Invariants:
//! - Deterministic: the state is a function of the committed log alone (no clock, no randomness,
//!   no hash-map iteration order), so every replica that applied the same prefix holds an equal
//!   state (checks R4 for group 0).
//! - `apply` never panics on a payload: an undecodable or invalid command changes nothing but
//!   `applied_index` and reports [`MetaOutcome::Rejected`]. Proposers validate first; apply
//!   validates again because the log is the authority and may hold a command proposed against an
//!   older state (e.g. a broker's registration raced a topic creation).
//! - Group ids come from a counter that starts at 1 and only grows: a deleted topic's groups are
//!   never reused, so a stale replica of a deleted partition can never join a new one.
//! - Producer ids are the raft indexes of their `AllocateProducerId` entries: unique, positive
//!   and increasing without any extra state.
//! - A partition moves to another replica set through a recorded reassignment (module
//!   `reassign`): at most one per partition, its target checked like a topic's assignment.
//! - Every collection has a limit ([`BROKERS_MAX`], [`PARTITIONS_CLUSTER_MAX`],
//!   [`PRODUCERS_MAX`], [`USERS_MAX`], [`ACLS_MAX`]).
//! - A stored credential is well formed (its mechanism's key lengths, at least
//!   `scram::ITERATIONS_MIN` iterations) and a stored ACL passes `AclBinding::validate`.
//!
//! Cost sketch: every command is a few hundred bytes and applies in microseconds; the whole state
//! of a cluster at its limits (1k brokers, 64k partitions x 5 replicas, 64k producers) is a few
//! MiB, so replaying the metadata log on start is cheap.

use std::collections::{BTreeMap, BTreeSet};

use odradek_client::batch::BATCH_BYTES_MAX;
use odradek_client::scram::{Credential, Mechanism};
use odradek_client::wire::proto::TopicConfig;
use odradek_consensus::{GroupId, NodeId};
use protobuf::Message;

use crate::auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use crate::proto;

mod members;
mod reassign;
mod repair;
pub use members::{JoiningNode, MemberInfo, CONTROLLER_VOTERS_MAX};
pub use reassign::{ReassignRefusal, ReassignmentInfo};
pub use repair::{Repair, RepairPhase, RepairStep};

/// The metadata (controller) raft group.
pub const METADATA_GROUP: GroupId = 0;
/// Replicas per partition, at most.
pub const REPLICATION_FACTOR_MAX: u32 = 5;
/// Partitions per topic, at most.
pub const PARTITIONS_MAX: u32 = 1024;
/// Partitions in the whole cluster, at most (each is a raft group every replica hosts).
pub const PARTITIONS_CLUSTER_MAX: usize = 1 << 16;
/// Registered brokers, at most.
pub const BROKERS_MAX: usize = 1024;
/// Bytes of a broker's client address, at most.
pub const ADDRESS_BYTES_MAX: usize = 255;
/// Kafka's limit on a topic name's length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Producer ids the controller remembers (for epoch bumps). Beyond it the oldest id is
/// forgotten: a later bump of it is refused and that producer must allocate a new id, which is
/// what Kafka does once a producer id expires.
pub const PRODUCERS_MAX: usize = 1 << 16;
/// Users (SCRAM credentials) the cluster stores, at most.
pub const USERS_MAX: usize = 4096;
/// ACL bindings the cluster stores, at most (every request scans them: `auth::acl`).
pub const ACLS_MAX: usize = 4096;

/// A node that serves clients, as it registered itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: NodeId,
    pub client_address: String,
    /// Where Kafka clients reach it ("": no Kafka listener, or none advertised).
    pub kafka_address: String,
}

/// Per-topic settings. 0 means the broker default; -1 means unlimited (retention only).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TopicSettings {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub batch_bytes_max: u32,
}

impl TopicSettings {
    /// From the client protocol's `TopicConfig`, checked ([`TopicSettings::validate`]).
    pub fn from_config(config: &TopicConfig) -> Result<TopicSettings, String> {
        let segment_bytes =
            u64::try_from(config.get_segment_bytes()).map_err(|_| format!("segment_bytes {} is negative", config.get_segment_bytes()))?;
        let settings = TopicSettings {
            retention_ms: config.get_retention_ms(),
            retention_bytes: config.get_retention_bytes(),
            segment_bytes,
            batch_bytes_max: config.get_batch_bytes_max(),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// To the client protocol's `TopicConfig` (segment sizes above `i64::MAX` saturate).
    pub fn to_config(&self) -> TopicConfig {
        let mut config = TopicConfig::new();
        config.set_retention_ms(self.retention_ms);
        config.set_retention_bytes(self.retention_bytes);
        config.set_segment_bytes(i64::try_from(self.segment_bytes).unwrap_or(i64::MAX));
        config.set_batch_bytes_max(self.batch_bytes_max);
        config
    }

    /// Retention values are -1 (unlimited), 0 (default) or positive; a batch limit is at most
    /// [`BATCH_BYTES_MAX`].
    pub fn validate(&self) -> Result<(), String> {
        if self.retention_ms < -1 {
            return Err(format!("retention_ms {} is below -1", self.retention_ms));
        }
        if self.retention_bytes < -1 {
            return Err(format!("retention_bytes {} is below -1", self.retention_bytes));
        }
        if self.batch_bytes_max as usize > BATCH_BYTES_MAX {
            return Err(format!("batch_bytes_max {} is above {BATCH_BYTES_MAX}", self.batch_bytes_max));
        }
        Ok(())
    }
}

/// One partition of a topic and the raft group that replicates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub group: GroupId,
    /// `replicas[0]` is the preferred leader.
    pub replicas: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// `partitions[p].partition == p`.
    pub partitions: Vec<PartitionInfo>,
    pub settings: TopicSettings,
}

/// A command of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaCommand {
    /// Adds a broker, or replaces the address of a registered one.
    RegisterBroker(BrokerInfo),
    /// One replica list per partition, computed by the proposer ([`assign_replicas`]).
    CreateTopic {
        name: String,
        replicas: Vec<Vec<NodeId>>,
        settings: TopicSettings,
    },
    DeleteTopic {
        name: String,
    },
    /// The new producer id is the raft index of this entry (epoch 0).
    AllocateProducerId,
    /// Fences the producer's current epoch. With `from_epoch`, only if that is still the
    /// current one (a caller holding an older epoch was fenced itself); `None` in entries
    /// written before the check existed.
    BumpProducerEpoch {
        producer_id: i64,
        from_epoch: Option<i16>,
    },
    /// Creates a user or replaces its credential.
    UpsertUser {
        name: String,
        credential: Credential,
    },
    DeleteUser {
        name: String,
    },
    CreateAcl(AclBinding),
    DeleteAcl(AclBinding),
    /// Appends partitions to a topic that still has `partitions_before` (module `topic_change`).
    AddPartitions {
        name: String,
        partitions_before: u32,
        replicas: Vec<Vec<NodeId>>,
    },
    /// Sets some of a topic's settings, all or none (module `topic_change`).
    AlterTopicSettings {
        name: String,
        changes: Vec<(TopicSetting, i64)>,
    },
    /// Moves a partition to `replicas` (module `reassign`).
    StartReassignment {
        topic: String,
        partition: u32,
        replicas: Vec<NodeId>,
    },
    /// The partition group's configuration is `replicas`, its running reassignment's target.
    CompleteReassignment {
        group: GroupId,
        replicas: Vec<NodeId>,
    },
    /// A node outside the bootstrap list joins the running cluster (module `members`).
    JoinNode(JoiningNode),
    /// The metadata group's voters move to `voters` (module `members`).
    SetControllerVoters {
        voters: Vec<NodeId>,
    },
    /// The metadata group's voters are `voters`, the running change's target.
    CompleteControllerVoters {
        voters: Vec<NodeId>,
    },
    /// `node` starts draining: its replicas move away, then it is removed (module `members`).
    DecommissionNode {
        node: NodeId,
    },
    /// `node` stops draining and stays (module `members`); encoded as a `DecommissionNode`
    /// with `cancel` set.
    CancelDecommission {
        node: NodeId,
    },
    /// A drained `node` leaves the cluster (module `members`).
    RemoveNode {
        node: NodeId,
    },
    /// A step of the repair of `node`'s damaged replica of `group` (module `repair`).
    RepairReplica {
        group: GroupId,
        node: NodeId,
        step: RepairStep,
    },
}

fn encode_acl(acl: &AclBinding) -> proto::AclBinding {
    let mut message = proto::AclBinding::new();
    message.set_principal(acl.principal.clone());
    message.set_resource_type(acl.resource_type.name().to_string());
    message.set_resource_name(acl.resource_name.clone());
    message.set_pattern(acl.pattern.name().to_string());
    message.set_operation(acl.operation.name().to_string());
    message.set_permission(acl.permission.name().to_string());
    message
}

fn decode_acl(message: &proto::AclBinding) -> Result<AclBinding, MetaError> {
    let bad = |what: &str, value: &str| MetaError::Decode(format!("ACL {what} {value:?}"));
    Ok(AclBinding {
        principal: message.get_principal().to_string(),
        resource_type: ResourceType::parse(message.get_resource_type()).ok_or_else(|| bad("resource type", message.get_resource_type()))?,
        resource_name: message.get_resource_name().to_string(),
        pattern: PatternType::parse(message.get_pattern()).ok_or_else(|| bad("pattern", message.get_pattern()))?,
        operation: Operation::parse(message.get_operation()).ok_or_else(|| bad("operation", message.get_operation()))?,
        permission: Permission::parse(message.get_permission()).ok_or_else(|| bad("permission", message.get_permission()))?,
    })
}

/// Why bytes are not a [`MetaCommand`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("metadata command does not decode: {0}")]
    Decode(String),
    #[error("metadata command holds no known command (written by a newer version?)")]
    CommandMissing,
}

impl MetaCommand {
    pub fn encode(&self) -> Vec<u8> {
        let mut message = proto::MetaCommand::new();
        match self {
            MetaCommand::RegisterBroker(broker) => {
                let mut info = proto::BrokerInfo::new();
                info.set_node_id(broker.node_id);
                info.set_client_address(broker.client_address.clone());
                info.set_kafka_address(broker.kafka_address.clone());
                let mut register = proto::RegisterBroker::new();
                register.set_broker(info);
                message.set_register_broker(register);
            }
            MetaCommand::CreateTopic { name, replicas, settings } => {
                let mut create = proto::CreateTopic::new();
                create.set_name(name.clone());
                for partition_replicas in replicas {
                    let mut list = proto::ReplicaList::new();
                    list.set_replicas(partition_replicas.clone());
                    create.mut_partitions().push(list);
                }
                let mut settings_message = proto::TopicSettings::new();
                settings_message.set_retention_ms(settings.retention_ms);
                settings_message.set_retention_bytes(settings.retention_bytes);
                settings_message.set_segment_bytes(settings.segment_bytes);
                settings_message.set_batch_bytes_max(settings.batch_bytes_max);
                create.set_settings(settings_message);
                message.set_create_topic(create);
            }
            MetaCommand::DeleteTopic { name } => {
                let mut delete = proto::DeleteTopic::new();
                delete.set_name(name.clone());
                message.set_delete_topic(delete);
            }
            MetaCommand::AllocateProducerId => message.set_allocate_producer_id(proto::AllocateProducerId::new()),
            MetaCommand::BumpProducerEpoch { producer_id, from_epoch } => {
                let mut bump = proto::BumpProducerEpoch::new();
                bump.set_producer_id(*producer_id);
                if let Some(epoch) = from_epoch {
                    bump.set_epoch_checked(true);
                    bump.set_producer_epoch(i32::from(*epoch));
                }
                message.set_bump_producer_epoch(bump);
            }
            MetaCommand::UpsertUser { name, credential } => {
                let mut stored = proto::ScramCredential::new();
                stored.set_mechanism(credential.mechanism.name().to_string());
                stored.set_salt(credential.salt.clone());
                stored.set_iterations(credential.iterations);
                stored.set_stored_key(credential.stored_key.clone());
                stored.set_server_key(credential.server_key.clone());
                let mut upsert = proto::UpsertUser::new();
                upsert.set_name(name.clone());
                upsert.set_credential(stored);
                message.set_upsert_user(upsert);
            }
            MetaCommand::DeleteUser { name } => {
                let mut delete = proto::DeleteUser::new();
                delete.set_name(name.clone());
                message.set_delete_user(delete);
            }
            MetaCommand::CreateAcl(acl) => {
                let mut create = proto::CreateAcl::new();
                create.set_acl(encode_acl(acl));
                message.set_create_acl(create);
            }
            MetaCommand::DeleteAcl(acl) => {
                let mut delete = proto::DeleteAcl::new();
                delete.set_acl(encode_acl(acl));
                message.set_delete_acl(delete);
            }
            MetaCommand::AddPartitions { name, partitions_before, replicas } => {
                topic_change::encode_add_partitions(&mut message, name, *partitions_before, replicas)
            }
            MetaCommand::AlterTopicSettings { name, changes } => topic_change::encode_alter_settings(&mut message, name, changes),
            MetaCommand::StartReassignment { topic, partition, replicas } => {
                let mut start = proto::StartReassignment::new();
                start.set_topic(topic.clone());
                start.set_partition(*partition);
                start.set_replicas(replicas.clone());
                message.set_start_reassignment(start);
            }
            MetaCommand::CompleteReassignment { group, replicas } => {
                let mut complete = proto::CompleteReassignment::new();
                complete.set_group(*group);
                complete.set_replicas(replicas.clone());
                message.set_complete_reassignment(complete);
            }
            MetaCommand::JoinNode(joining) => members::encode_join(&mut message, joining),
            MetaCommand::SetControllerVoters { voters } => {
                let mut set = proto::SetControllerVoters::new();
                set.set_voters(voters.clone());
                message.set_set_controller_voters(set);
            }
            MetaCommand::CompleteControllerVoters { voters } => {
                let mut complete = proto::CompleteControllerVoters::new();
                complete.set_voters(voters.clone());
                message.set_complete_controller_voters(complete);
            }
            MetaCommand::DecommissionNode { node } => {
                let mut decommission = proto::DecommissionNode::new();
                decommission.set_node_id(*node);
                message.set_decommission_node(decommission);
            }
            MetaCommand::CancelDecommission { node } => {
                let mut decommission = proto::DecommissionNode::new();
                decommission.set_node_id(*node);
                decommission.set_cancel(true);
                message.set_decommission_node(decommission);
            }
            MetaCommand::RemoveNode { node } => {
                let mut remove = proto::RemoveNode::new();
                remove.set_node_id(*node);
                message.set_remove_node(remove);
            }
            MetaCommand::RepairReplica { group, node, step } => {
                let mut repair = proto::RepairReplica::new();
                repair.set_group(*group);
                repair.set_node(*node);
                repair.set_step(step.code());
                message.set_repair_replica(repair);
            }
        }
        message.write_to_bytes().expect("a metadata command always encodes (all fields are set)")
    }

    pub fn decode(bytes: &[u8]) -> Result<MetaCommand, MetaError> {
        use proto::MetaCommand_oneof_command as Command;
        let message = proto::MetaCommand::parse_from_bytes(bytes).map_err(|error| MetaError::Decode(error.to_string()))?;
        let command = match message.command {
            None => return Err(MetaError::CommandMissing),
            Some(Command::register_broker(register)) => {
                let broker = register.get_broker();
                MetaCommand::RegisterBroker(BrokerInfo {
                    node_id: broker.get_node_id(),
                    client_address: broker.get_client_address().to_string(),
                    kafka_address: broker.get_kafka_address().to_string(),
                })
            }
            Some(Command::create_topic(create)) => {
                let settings = create.get_settings();
                MetaCommand::CreateTopic {
                    name: create.get_name().to_string(),
                    replicas: create.get_partitions().iter().map(|list| list.get_replicas().to_vec()).collect(),
                    settings: TopicSettings {
                        retention_ms: settings.get_retention_ms(),
                        retention_bytes: settings.get_retention_bytes(),
                        segment_bytes: settings.get_segment_bytes(),
                        batch_bytes_max: settings.get_batch_bytes_max(),
                    },
                }
            }
            Some(Command::delete_topic(delete)) => MetaCommand::DeleteTopic { name: delete.get_name().to_string() },
            Some(Command::allocate_producer_id(_)) => MetaCommand::AllocateProducerId,
            Some(Command::bump_producer_epoch(bump)) => {
                let from_epoch = match bump.get_epoch_checked() {
                    false => None,
                    true => Some(
                        i16::try_from(bump.get_producer_epoch())
                            .map_err(|_| MetaError::Decode(format!("producer epoch {} out of range", bump.get_producer_epoch())))?,
                    ),
                };
                MetaCommand::BumpProducerEpoch { producer_id: bump.get_producer_id(), from_epoch }
            }
            Some(Command::upsert_user(upsert)) => {
                let stored = upsert.get_credential();
                let mechanism = Mechanism::parse(stored.get_mechanism())
                    .ok_or_else(|| MetaError::Decode(format!("SCRAM mechanism {:?}", stored.get_mechanism())))?;
                let credential = Credential {
                    mechanism,
                    salt: stored.get_salt().to_vec(),
                    iterations: stored.get_iterations(),
                    stored_key: stored.get_stored_key().to_vec(),
                    server_key: stored.get_server_key().to_vec(),
                };
                MetaCommand::UpsertUser { name: upsert.get_name().to_string(), credential }
            }
            Some(Command::delete_user(delete)) => MetaCommand::DeleteUser { name: delete.get_name().to_string() },
            Some(Command::create_acl(create)) => MetaCommand::CreateAcl(decode_acl(create.get_acl())?),
            Some(Command::delete_acl(delete)) => MetaCommand::DeleteAcl(decode_acl(delete.get_acl())?),
            Some(Command::add_partitions(add)) => topic_change::decode_add_partitions(&add),
            Some(Command::alter_topic_settings(alter)) => topic_change::decode_alter_settings(&alter)?,
            Some(Command::start_reassignment(start)) => MetaCommand::StartReassignment {
                topic: start.get_topic().to_string(),
                partition: start.get_partition(),
                replicas: start.get_replicas().to_vec(),
            },
            Some(Command::complete_reassignment(complete)) => {
                MetaCommand::CompleteReassignment { group: complete.get_group(), replicas: complete.get_replicas().to_vec() }
            }
            Some(Command::join_node(join)) => MetaCommand::JoinNode(members::decode_join(&join)),
            Some(Command::set_controller_voters(set)) => MetaCommand::SetControllerVoters { voters: set.get_voters().to_vec() },
            Some(Command::complete_controller_voters(complete)) => {
                MetaCommand::CompleteControllerVoters { voters: complete.get_voters().to_vec() }
            }
            Some(Command::decommission_node(decommission)) if decommission.get_cancel() => {
                MetaCommand::CancelDecommission { node: decommission.get_node_id() }
            }
            Some(Command::decommission_node(decommission)) => MetaCommand::DecommissionNode { node: decommission.get_node_id() },
            Some(Command::remove_node(remove)) => MetaCommand::RemoveNode { node: remove.get_node_id() },
            Some(Command::repair_replica(repair)) => MetaCommand::RepairReplica {
                group: repair.get_group(),
                node: repair.get_node(),
                step: RepairStep::from_code(repair.get_step())
                    .ok_or_else(|| MetaError::Decode(format!("repair step {}", repair.get_step())))?,
            },
        };
        Ok(command)
    }
}

/// What applying one command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaOutcome {
    BrokerRegistered,
    /// The new partitions' raft groups, in partition order.
    TopicCreated {
        groups: Vec<GroupId>,
    },
    TopicExists,
    TopicDeleted,
    TopicUnknown,
    ProducerId {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// A bump named an epoch that is not the producer's current one (`producer_epoch`):
    /// nothing changed except the applied index.
    EpochMismatch {
        producer_epoch: i16,
    },
    UserUpserted,
    UserDeleted,
    UserUnknown,
    AclCreated,
    /// The binding was stored already: nothing changed.
    AclExists,
    AclDeleted,
    AclUnknown,
    /// The added partitions' raft groups, in partition order.
    PartitionsAdded {
        groups: Vec<GroupId>,
    },
    TopicSettingsChanged,
    /// The partition (its raft `group`) is moving to the target.
    ReassignmentStarted {
        group: GroupId,
    },
    /// Nothing changed (except the applied index): why the move cannot start.
    ReassignmentRefused(ReassignRefusal),
    ReassignmentCompleted,
    NodeJoined,
    /// Nothing changed (except the applied index): why the node cannot join.
    JoinRefused(String),
    ControllerChangeStarted,
    /// Nothing changed (except the applied index): why the controller voters cannot change.
    ControllerChangeRefused(String),
    ControllerChangeCompleted,
    DecommissionStarted,
    /// Nothing changed (except the applied index): why the node cannot be decommissioned (or
    /// its decommission cancelled).
    DecommissionRefused(String),
    DecommissionCancelled,
    NodeRemoved,
    /// A repair step applied (or was a repeat: nothing changed).
    RepairStepped,
    /// Nothing changed (except the applied index): the reason.
    Rejected(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupLocation {
    topic: String,
    partition: u32,
}

/// The metadata group's replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataState {
    applied_index: u64,
    brokers: BTreeMap<NodeId, BrokerInfo>,
    topics: BTreeMap<String, TopicInfo>,
    /// Every live partition group → where it belongs. `groups.len()` is the cluster's partitions.
    groups: BTreeMap<GroupId, GroupLocation>,
    /// The first group id never handed out (0 is the metadata group, so this starts at 1).
    group_next: GroupId,
    /// Producer id → current epoch.
    producers: BTreeMap<i64, i16>,
    /// User name → SCRAM credential.
    users: BTreeMap<String, Credential>,
    acls: BTreeSet<AclBinding>,
    /// Partition group → the target of its running reassignment (module `reassign`).
    reassignments: BTreeMap<GroupId, Vec<NodeId>>,
    /// Partition group → the voters it was created with, once its replicas changed.
    voters_initial: BTreeMap<GroupId, Vec<NodeId>>,
    /// Nodes that joined the running cluster (module `members`).
    members: BTreeMap<NodeId, MemberInfo>,
    /// The running change of the metadata group's voters (module `members`).
    controller_voters_target: Option<Vec<NodeId>>,
    /// Nodes being decommissioned (module `members`).
    draining: BTreeSet<NodeId>,
    /// Nodes decommissioned and removed (module `members`).
    removed: BTreeSet<NodeId>,
    /// Partition group → the repair of its damaged replica (module `repair`).
    repairs: BTreeMap<GroupId, Repair>,
    /// Repairs done (module `repair`).
    repairs_completed: u64,
    /// Planted bug `decommission-before-replicas-moved` (module `members`): a draining node is
    /// removable while partitions still name it. Off everywhere but in simulation runs that
    /// plant it.
    planted_removal_while_holding: bool,
}

impl Default for MetadataState {
    /// The empty state: no brokers, no topics, group ids handed out from 1.
    fn default() -> MetadataState {
        MetadataState {
            applied_index: 0,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_next: METADATA_GROUP + 1,
            producers: BTreeMap::new(),
            users: BTreeMap::new(),
            acls: BTreeSet::new(),
            reassignments: BTreeMap::new(),
            voters_initial: BTreeMap::new(),
            members: BTreeMap::new(),
            controller_voters_target: None,
            draining: BTreeSet::new(),
            removed: BTreeSet::new(),
            repairs: BTreeMap::new(),
            repairs_completed: 0,
            planted_removal_while_holding: false,
        }
    }
}

impl MetadataState {
    pub fn new() -> MetadataState {
        MetadataState::default()
    }

    /// Applies the committed command at raft `index`. Deterministic (same log → same state on
    /// every replica); never panics on bad input: an undecodable or invalid command is skipped
    /// with `Rejected` and changes nothing except `applied_index`. An index at or below the
    /// applied one (a replay) is `Rejected` and changes nothing at all.
    pub fn apply(&mut self, index: u64, payload: &[u8]) -> MetaOutcome {
        if index <= self.applied_index {
            return MetaOutcome::Rejected(format!("index {index} is not above the applied index {}", self.applied_index));
        }
        self.applied_index = index;
        // Every refusal returns before the first change (tests check it: apply_is_deterministic).
        let outcome = match MetaCommand::decode(payload) {
            Err(error) => MetaOutcome::Rejected(error.to_string()),
            Ok(command) => self.apply_command(index, command),
        };
        assert_eq!(self.applied_index, index, "a command moved the applied index");
        self.check_invariants();
        outcome
    }

    fn apply_command(&mut self, index: u64, command: MetaCommand) -> MetaOutcome {
        match command {
            MetaCommand::RegisterBroker(broker) => self.register_broker(broker),
            MetaCommand::CreateTopic { name, replicas, settings } => self.create_topic(name, replicas, settings),
            MetaCommand::DeleteTopic { name } => self.delete_topic(&name),
            MetaCommand::AllocateProducerId => self.allocate_producer_id(index),
            MetaCommand::BumpProducerEpoch { producer_id, from_epoch } => self.bump_producer_epoch(producer_id, from_epoch),
            MetaCommand::UpsertUser { name, credential } => self.upsert_user(name, credential),
            MetaCommand::DeleteUser { name } => match self.users.remove(&name) {
                Some(_) => MetaOutcome::UserDeleted,
                None => MetaOutcome::UserUnknown,
            },
            MetaCommand::CreateAcl(acl) => self.create_acl(acl),
            MetaCommand::DeleteAcl(acl) => match self.acls.remove(&acl) {
                true => MetaOutcome::AclDeleted,
                false => MetaOutcome::AclUnknown,
            },
            MetaCommand::AddPartitions { name, partitions_before, replicas } => self.add_partitions(&name, partitions_before, replicas),
            MetaCommand::AlterTopicSettings { name, changes } => self.alter_topic_settings(&name, &changes),
            MetaCommand::StartReassignment { topic, partition, replicas } => self.start_reassignment(&topic, partition, replicas),
            MetaCommand::CompleteReassignment { group, replicas } => self.complete_reassignment(group, replicas),
            MetaCommand::JoinNode(joining) => self.join_node(joining),
            MetaCommand::SetControllerVoters { voters } => self.set_controller_voters(voters),
            MetaCommand::CompleteControllerVoters { voters } => self.complete_controller_voters(voters),
            MetaCommand::DecommissionNode { node } => self.decommission_node(node),
            MetaCommand::CancelDecommission { node } => self.cancel_decommission(node),
            MetaCommand::RemoveNode { node } => self.remove_node(node),
            MetaCommand::RepairReplica { group, node, step } => self.repair_replica(group, node, step),
        }
    }

    fn upsert_user(&mut self, name: String, credential: Credential) -> MetaOutcome {
        if let Err(reason) = crate::auth::validate_user_name(&name) {
            return MetaOutcome::Rejected(reason);
        }
        if !credential.is_well_formed() {
            return MetaOutcome::Rejected(format!("a malformed {} credential for user {name:?}", credential.mechanism.name()));
        }
        if !self.users.contains_key(&name) && self.users.len() >= USERS_MAX {
            return MetaOutcome::Rejected(format!("already {USERS_MAX} users"));
        }
        self.users.insert(name, credential);
        MetaOutcome::UserUpserted
    }

    fn create_acl(&mut self, acl: AclBinding) -> MetaOutcome {
        if let Err(reason) = acl.validate() {
            return MetaOutcome::Rejected(reason);
        }
        if self.acls.contains(&acl) {
            return MetaOutcome::AclExists;
        }
        if self.acls.len() >= ACLS_MAX {
            return MetaOutcome::Rejected(format!("already {ACLS_MAX} ACLs"));
        }
        self.acls.insert(acl);
        MetaOutcome::AclCreated
    }

    fn register_broker(&mut self, broker: BrokerInfo) -> MetaOutcome {
        // raft-rs reserves node id 0 (INVALID_ID).
        if broker.node_id == 0 {
            return MetaOutcome::Rejected("node id 0 is reserved".to_string());
        }
        if broker.client_address.is_empty() || broker.client_address.len() > ADDRESS_BYTES_MAX {
            return MetaOutcome::Rejected(format!("client address of {} bytes (1..={ADDRESS_BYTES_MAX})", broker.client_address.len()));
        }
        if let Err(reason) = members::check_kafka_address(&broker.kafka_address) {
            return MetaOutcome::Rejected(reason);
        }
        if self.removed.contains(&broker.node_id) {
            return MetaOutcome::Rejected(format!("node {} was decommissioned and removed", broker.node_id));
        }
        // A removed bootstrap member that rejoined is registered by its join, at the addresses
        // it joined with, not by a bootstrap list (`meta::members`).
        if self.members.contains_key(&broker.node_id) {
            return MetaOutcome::Rejected(format!("node {} joined the running cluster: its join registers it", broker.node_id));
        }
        if !self.brokers.contains_key(&broker.node_id) && self.brokers.len() >= BROKERS_MAX {
            return MetaOutcome::Rejected(format!("already {BROKERS_MAX} brokers"));
        }
        self.brokers.insert(broker.node_id, broker);
        MetaOutcome::BrokerRegistered
    }

    fn create_topic(&mut self, name: String, replicas: Vec<Vec<NodeId>>, settings: TopicSettings) -> MetaOutcome {
        if let Err(reason) = validate_topic_name(&name) {
            return MetaOutcome::Rejected(reason);
        }
        if self.topics.contains_key(&name) {
            return MetaOutcome::TopicExists;
        }
        if let Err(reason) = self.validate_assignment(&replicas).and_then(|()| settings.validate()) {
            return MetaOutcome::Rejected(reason);
        }
        let partitions_len = replicas.len() as u64; // <= PARTITIONS_MAX after validation
        let Some(group_end) = self.group_next.checked_add(partitions_len) else {
            return MetaOutcome::Rejected("group ids exhausted".to_string());
        };
        let partitions: Vec<PartitionInfo> = replicas
            .into_iter()
            .zip(self.group_next..group_end)
            .enumerate()
            .map(|(partition, (replicas, group))| PartitionInfo { partition: partition as u32, group, replicas })
            .collect();
        self.group_next = group_end;
        for info in &partitions {
            let previous = self.groups.insert(info.group, GroupLocation { topic: name.clone(), partition: info.partition });
            assert!(previous.is_none(), "group ids are never reused");
        }
        let groups = partitions.iter().map(|info| info.group).collect();
        self.topics.insert(name.clone(), TopicInfo { name, partitions, settings });
        MetaOutcome::TopicCreated { groups }
    }

    fn validate_assignment(&self, replicas: &[Vec<NodeId>]) -> Result<(), String> {
        if replicas.is_empty() || replicas.len() > PARTITIONS_MAX as usize {
            return Err(format!("{} partitions (1..={PARTITIONS_MAX})", replicas.len()));
        }
        if self.groups.len() + replicas.len() > PARTITIONS_CLUSTER_MAX {
            return Err(format!("the cluster would have more than {PARTITIONS_CLUSTER_MAX} partitions"));
        }
        let replication_factor = replicas[0].len();
        for (partition, list) in replicas.iter().enumerate() {
            if list.is_empty() || list.len() > REPLICATION_FACTOR_MAX as usize {
                return Err(format!("partition {partition} has {} replicas (1..={REPLICATION_FACTOR_MAX})", list.len()));
            }
            if list.len() != replication_factor {
                return Err(format!("partition {partition} has {} replicas, partition 0 has {replication_factor}", list.len()));
            }
            for (position, node) in list.iter().enumerate() {
                if list[..position].contains(node) {
                    return Err(format!("partition {partition} names node {node} twice"));
                }
                if !self.brokers.contains_key(node) {
                    return Err(format!("partition {partition} names node {node}, which is not a registered broker"));
                }
            }
        }
        Ok(())
    }

    fn delete_topic(&mut self, name: &str) -> MetaOutcome {
        let Some(topic) = self.topics.remove(name) else {
            return MetaOutcome::TopicUnknown;
        };
        for info in &topic.partitions {
            let location = self.groups.remove(&info.group);
            assert!(location.is_some(), "every live partition's group is indexed");
            self.forget_reassignment(info.group);
            self.forget_repair(info.group);
        }
        MetaOutcome::TopicDeleted
    }

    fn allocate_producer_id(&mut self, index: u64) -> MetaOutcome {
        let Ok(producer_id) = i64::try_from(index) else {
            return MetaOutcome::Rejected(format!("index {index} does not fit a producer id"));
        };
        assert!(self.producers.keys().next_back().is_none_or(|last| *last < producer_id), "producer ids increase with the index");
        if self.producers.len() >= PRODUCERS_MAX {
            // Ids are indexes, so the smallest is the oldest.
            self.producers.pop_first();
        }
        self.producers.insert(producer_id, 0);
        MetaOutcome::ProducerId { producer_id, producer_epoch: 0 }
    }

    fn bump_producer_epoch(&mut self, producer_id: i64, from_epoch: Option<i16>) -> MetaOutcome {
        let Some(epoch) = self.producers.get_mut(&producer_id) else {
            return MetaOutcome::Rejected(format!("unknown producer id {producer_id}"));
        };
        if from_epoch.is_some_and(|from| from != *epoch) {
            return MetaOutcome::EpochMismatch { producer_epoch: *epoch };
        }
        let Some(epoch_next) = epoch.checked_add(1) else {
            return MetaOutcome::Rejected(format!("producer id {producer_id} is at the last epoch; allocate a new id"));
        };
        *epoch = epoch_next;
        MetaOutcome::ProducerId { producer_id, producer_epoch: epoch_next }
    }

    fn check_invariants(&self) {
        assert!(self.group_next > METADATA_GROUP);
        assert!(self.groups.len() <= PARTITIONS_CLUSTER_MAX);
        assert!(self.brokers.len() <= BROKERS_MAX);
        assert!(self.producers.len() <= PRODUCERS_MAX);
        assert!(self.users.len() <= USERS_MAX);
        assert!(self.acls.len() <= ACLS_MAX);
        self.check_reassignment_invariants();
        self.check_repair_invariants();
        self.check_member_invariants();
        if cfg!(debug_assertions) {
            assert!(self.users.values().all(Credential::is_well_formed));
            assert!(self.acls.iter().all(|acl| acl.validate().is_ok()));
        }
        if cfg!(debug_assertions) {
            let partitions: usize = self.topics.values().map(|topic| topic.partitions.len()).sum();
            assert_eq!(partitions, self.groups.len());
            assert!(self.groups.keys().next_back().is_none_or(|group| *group < self.group_next));
            for topic in self.topics.values() {
                let indexed = topic.partitions.iter().enumerate().all(|(p, info)| info.partition as usize == p);
                assert!(indexed, "topic {:?}: partitions[p].partition == p (added partitions are appended)", topic.name);
            }
        }
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn brokers(&self) -> &BTreeMap<NodeId, BrokerInfo> {
        &self.brokers
    }

    pub fn topics(&self) -> &BTreeMap<String, TopicInfo> {
        &self.topics
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionInfo> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }

    pub fn partition_of_group(&self, group: GroupId) -> Option<(&TopicInfo, &PartitionInfo)> {
        let location = self.groups.get(&group)?;
        let topic = self.topics.get(&location.topic).expect("the group index names live topics");
        let info = &topic.partitions[location.partition as usize];
        assert_eq!(info.group, group);
        Some((topic, info))
    }

    /// Every partition group with `node` among its replicas or its running reassignment's
    /// target: group → replicas.
    pub fn groups_of(&self, node: NodeId) -> BTreeMap<GroupId, Vec<NodeId>> {
        let moving_to = |group: GroupId| self.reassignments.get(&group).is_some_and(|target| target.contains(&node));
        self.topics
            .values()
            .flat_map(|topic| &topic.partitions)
            .filter(|info| info.replicas.contains(&node) || moving_to(info.group))
            .map(|info| (info.group, info.replicas.clone()))
            .collect()
    }

    /// The current epoch of a known producer id.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).copied()
    }

    /// The SCRAM credential of a user of the metadata log.
    pub fn user(&self, name: &str) -> Option<&Credential> {
        self.users.get(name)
    }

    pub fn users(&self) -> &BTreeMap<String, Credential> {
        &self.users
    }

    pub fn acls(&self) -> &BTreeSet<AclBinding> {
        &self.acls
    }

    /// The first group id the next topic gets.
    pub fn group_next(&self) -> GroupId {
        self.group_next
    }
}

/// Kafka's rules: 1..=249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name is empty".to_string());
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!("a topic name of {} characters (at most {TOPIC_NAME_BYTES_MAX})", name.len()));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a topic name"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name {name:?} has {bad:?}; only [a-zA-Z0-9._-] are allowed"));
    }
    Ok(())
}

/// Spreads replicas and preferred leaders over `brokers` (sorted ids), Kafka-style round robin
/// with `start` rotating the first leader (the proposer passes e.g. the number of existing
/// topics): partition p's replicas are rf distinct brokers, preferred leaders spread evenly.
///
/// Partition p's leader is `brokers[(start + p) % n]`, so each broker leads ⌊p/n⌋ or ⌈p/n⌉
/// partitions. Its followers sit at distances `1 + (shift + j) % (n - 1)` after the leader, where
/// the shift grows by one every n partitions: that spreads followers over all brokers instead of
/// always pairing a leader with its next neighbours (Kafka's `assignReplicasToBrokers`).
pub fn assign_replicas(brokers: &[NodeId], partitions: u32, replication_factor: u32, start: u64) -> Result<Vec<Vec<NodeId>>, String> {
    let mut brokers = brokers.to_vec();
    brokers.sort_unstable();
    brokers.dedup();
    let n = brokers.len() as u64;
    if partitions == 0 || partitions > PARTITIONS_MAX {
        return Err(format!("{partitions} partitions (1..={PARTITIONS_MAX})"));
    }
    if replication_factor == 0 || replication_factor > REPLICATION_FACTOR_MAX {
        return Err(format!("replication factor {replication_factor} (1..={REPLICATION_FACTOR_MAX})"));
    }
    if u64::from(replication_factor) > n {
        return Err(format!("replication factor {replication_factor} with {n} brokers"));
    }
    let first = start % n;
    let shift_base = (start / n) % n;
    let assignment: Vec<Vec<NodeId>> = (0..u64::from(partitions))
        .map(|p| {
            let leader = (first + p) % n;
            let shift = shift_base + p / n;
            let followers = (0..u64::from(replication_factor) - 1).map(|j| brokers[((leader + 1 + (shift + j) % (n - 1)) % n) as usize]);
            std::iter::once(brokers[leader as usize]).chain(followers).collect()
        })
        .collect();
    for list in &assignment {
        assert_eq!(list.len(), replication_factor as usize);
        assert!(list.iter().enumerate().all(|(i, node)| !list[..i].contains(node)), "replicas are distinct");
    }
    Ok(assignment)
}

#[cfg(test)]
mod tests;
mod topic_change;

pub use topic_change::{assign_added_partitions, changed_settings, TopicSetting, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
