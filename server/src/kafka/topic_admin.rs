//! Kafka's topic and group admin APIs over the native ones (issues 15 and 16): CreatePartitions
//! and AlterConfigs / IncrementalAlterConfigs as native AlterTopic requests, DescribeConfigs as
//! DescribeTopicConfigs (topics) or this node's defaults (brokers), DeleteGroups as the native
//! DeleteGroups on this node's coordinator, DeleteRecords as the native DeleteRecords on each
//! partition's leader. Nothing here decides anything: the controller checks
//! and applies (`crate::request::topic_change`), all or none per resource.
//!
//! Each resource is answered on its own, as Kafka does: an unknown setting name, a value that is
//! not a number or out of range, an unsupported operation is INVALID_CONFIG for that resource;
//! an unknown resource type is INVALID_REQUEST; a broker resource cannot be altered (our broker
//! settings are static: INVALID_CONFIG).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use odradek_client::wire::proto::{self as wire, ErrorCode, Request_oneof_body as Body, Response};

use super::errors::{self, group_code, kafka_code};
use super::handlers::native;
use crate::auth::Principal;
use crate::context::NodeContext;
use crate::meta::TopicSetting;
use crate::request;

/// Kafka's `ConfigResource.Type` codes.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's `ConfigSource` codes (DescribeConfigs v1+).
pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;
/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
/// The first DescribeConfigs version that carries `config_type` (the codec leaves it out below).
#[cfg(test)]
const CONFIG_TYPE_VERSION_MIN: i16 = 3;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn config_type(setting: TopicSetting) -> i8 {
    match setting {
        TopicSetting::RetentionMs | TopicSetting::RetentionBytes => TYPE_LONG,
        TopicSetting::SegmentBytes | TopicSetting::MaxMessageBytes => TYPE_INT,
    }
}

/// The outcome of a native AlterTopic: (Kafka code, message).
async fn alter_topic(context: &NodeContext, principal: &Principal, id: u64, ask: wire::AlterTopicRequest) -> (i16, Option<StrBytes>) {
    let answer = request::handle(context, principal, native(id, Body::alter_topic(ask))).await;
    let (code, message) = if answer.has_alter_topic() {
        let result = answer.get_alter_topic().get_result();
        (result.error, result.error_message.clone())
    } else {
        (answer.error, answer.error_message.clone())
    };
    (kafka_code(code), (code != ErrorCode::NONE).then(|| text(&message)))
}

/// CreatePartitions: each topic grown to its count by the controller (placed as a creation).
pub async fn create_partitions(context: &NodeContext, principal: &Principal, id: u64, body: CreatePartitionsRequest) -> ResponseKind {
    let mut response = CreatePartitionsResponse::default();
    for topic in &body.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let (code, message) = if topic.assignments.as_ref().is_some_and(|assignments| !assignments.is_empty()) {
            (errors::INVALID_REPLICA_ASSIGNMENT, Some(text("manual replica assignments are not supported")))
        } else if topic.count <= 0 {
            (errors::INVALID_PARTITIONS, Some(text(&format!("a count of {} partitions", topic.count))))
        } else {
            let mut ask = wire::AlterTopicRequest::new();
            ask.name = topic.name.0.to_string();
            ask.partitions = topic.count as u32;
            ask.timeout_ms = u32::try_from(body.timeout_ms).unwrap_or(0);
            ask.validate_only = body.validate_only;
            alter_topic(context, principal, id, ask).await
        };
        response.results.push(result.with_error_code(code).with_error_message(message));
    }
    ResponseKind::CreatePartitions(response)
}

/// A setting change from a Kafka (name, value): INVALID_CONFIG when the name is unknown or the
/// value not a number.
fn setting_change(name: &str, value: Option<&StrBytes>) -> Result<wire::TopicSettingChange, String> {
    let setting = TopicSetting::parse(name).ok_or_else(|| format!("topic config {name:?} is not supported"))?;
    let value = value.map(|v| v.as_str()).unwrap_or_default();
    let number = value.trim().parse::<i64>().map_err(|_| format!("config {name}: {value:?} is not a number"))?;
    let mut change = wire::TopicSettingChange::new();
    change.name = setting.name().to_string();
    change.value = number;
    Ok(change)
}

fn reset(setting: TopicSetting) -> wire::TopicSettingChange {
    let mut change = wire::TopicSettingChange::new();
    change.name = setting.name().to_string();
    change.reset = true;
    change
}

/// One resource of an alter: its changes on a topic through the controller, or the refusal.
async fn alter_resource(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    resource_type: i8,
    name: &str,
    changes: Result<Vec<wire::TopicSettingChange>, String>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    match (resource_type, changes) {
        (RESOURCE_BROKER, _) => (errors::INVALID_CONFIG, Some(text("broker settings are static (the node's configuration file)"))),
        (RESOURCE_TOPIC, Err(message)) => (errors::INVALID_CONFIG, Some(text(&message))),
        (RESOURCE_TOPIC, Ok(changes)) if changes.is_empty() => (errors::NONE, None),
        (RESOURCE_TOPIC, Ok(changes)) => {
            let mut ask = wire::AlterTopicRequest::new();
            ask.name = name.to_string();
            ask.changes = changes.into();
            ask.validate_only = validate_only;
            alter_topic(context, principal, id, ask).await
        }
        (other, _) => (errors::INVALID_REQUEST, Some(text(&format!("resource type {other} is not supported")))),
    }
}

/// IncrementalAlterConfigs: SET and DELETE (back to the default) of the topic settings we have.
pub async fn incremental_alter_configs(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    body: IncrementalAlterConfigsRequest,
) -> ResponseKind {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in &body.resources {
        let changes: Result<Vec<_>, String> = resource
            .configs
            .iter()
            .map(|config| match config.config_operation {
                OP_SET => setting_change(config.name.as_str(), config.value.as_ref()),
                OP_DELETE => TopicSetting::parse(config.name.as_str())
                    .map(reset)
                    .ok_or_else(|| format!("topic config {:?} is not supported", config.name.as_str())),
                op => Err(format!("operation {op} on {:?}: only SET (0) and DELETE (1) apply to these settings", config.name.as_str())),
            })
            .collect();
        let (code, message) =
            alter_resource(context, principal, id, resource.resource_type, resource.resource_name.as_str(), changes, body.validate_only)
                .await;
        response.responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    ResponseKind::IncrementalAlterConfigs(response)
}

/// AlterConfigs (the legacy, whole-set form): the named settings take their values, every other
/// setting goes back to its default, as Kafka replaces a topic's whole override set.
pub async fn alter_configs(context: &NodeContext, principal: &Principal, id: u64, body: AlterConfigsRequest) -> ResponseKind {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut response = AlterConfigsResponse::default();
    for resource in &body.resources {
        let named: Result<Vec<_>, String> =
            resource.configs.iter().map(|config| setting_change(config.name.as_str(), config.value.as_ref())).collect();
        let changes = named.map(|mut changes| {
            for setting in TopicSetting::ALL {
                if !changes.iter().any(|change| change.name == setting.name()) {
                    changes.push(reset(setting));
                }
            }
            changes
        });
        let (code, message) =
            alter_resource(context, principal, id, resource.resource_type, resource.resource_name.as_str(), changes, body.validate_only)
                .await;
        response.responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    ResponseKind::AlterConfigs(response)
}

/// One config entry of a DescribeConfigs answer.
fn described(name: &str, value: i64, source: i8, read_only: bool, kind: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(text(name))
        .with_value(Some(text(&value.to_string())))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(kind)
}

/// The broker settings this node runs with, by Kafka's broker names (all static).
fn broker_configs(context: &NodeContext) -> Vec<DescribeConfigsResourceResult> {
    let defaults = &context.config.topic_defaults;
    let entries: [(&str, i64, i8); 6] = [
        ("log.retention.ms", defaults.retention_ms, TYPE_LONG),
        ("log.retention.bytes", defaults.retention_bytes, TYPE_LONG),
        ("log.segment.bytes", i64::try_from(defaults.segment_bytes).unwrap_or(i64::MAX), TYPE_INT),
        ("message.max.bytes", i64::from(defaults.batch_bytes_max), TYPE_INT),
        ("num.partitions", i64::from(defaults.partitions), TYPE_INT),
        ("default.replication.factor", i64::from(defaults.replication_factor), TYPE_INT),
    ];
    entries.into_iter().map(|(name, value, kind)| described(name, value, SOURCE_STATIC_BROKER_CONFIG, true, kind)).collect()
}

/// DescribeConfigs: a topic's settings (source DYNAMIC_TOPIC_CONFIG when set on the topic,
/// DEFAULT_CONFIG when it holds the default), or this broker's (STATIC_BROKER_CONFIG).
pub async fn describe_configs(context: &NodeContext, principal: &Principal, id: u64, body: DescribeConfigsRequest) -> ResponseKind {
    let mut response = DescribeConfigsResponse::default();
    for resource in &body.resources {
        let name = resource.resource_name.as_str();
        let result =
            DescribeConfigsResult::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name.clone());
        let configs: Result<Vec<DescribeConfigsResourceResult>, (i16, String)> = match resource.resource_type {
            RESOURCE_TOPIC => describe_topic(context, principal, id, name).await,
            RESOURCE_BROKER if name.is_empty() || name == context.state.node_id.to_string() => Ok(broker_configs(context)),
            RESOURCE_BROKER => Err((errors::INVALID_REQUEST, format!("broker {name:?} is not this node; ask that broker"))),
            other => Err((errors::INVALID_REQUEST, format!("resource type {other} is not supported"))),
        };
        let result = match configs {
            Ok(mut configs) => {
                if let Some(keys) = &resource.configuration_keys {
                    configs.retain(|entry| keys.iter().any(|key| key.as_str() == entry.name.as_str()));
                }
                result.with_configs(configs)
            }
            Err((code, message)) => result.with_error_code(code).with_error_message(Some(text(&message))),
        };
        response.results.push(result);
    }
    ResponseKind::DescribeConfigs(response)
}

async fn describe_topic(
    context: &NodeContext,
    principal: &Principal,
    id: u64,
    name: &str,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    let mut ask = wire::DescribeTopicConfigsRequest::new();
    ask.names = vec![name.to_string()].into();
    let answer: Response = request::handle(context, principal, native(id, Body::describe_topic_configs(ask))).await;
    if answer.error != ErrorCode::NONE || !answer.has_describe_topic_configs() {
        return Err((kafka_code(answer.error), answer.error_message.clone()));
    }
    let Some(topic) = answer.get_describe_topic_configs().topics.iter().find(|topic| topic.name == name) else {
        return Err((errors::UNKNOWN_SERVER_ERROR, "the controller did not answer for this topic".to_string()));
    };
    if topic.error != ErrorCode::NONE {
        return Err((kafka_code(topic.error), topic.error_message.clone()));
    }
    Ok(topic
        .settings
        .iter()
        .map(|entry| {
            let source = if entry.is_default { SOURCE_DEFAULT_CONFIG } else { SOURCE_DYNAMIC_TOPIC_CONFIG };
            let kind = TopicSetting::parse(&entry.name).map_or(TYPE_LONG, config_type);
            described(&entry.name, entry.value, source, false, kind)
        })
        .collect())
}

/// DeleteRecords: each partition's log start moved by its leader through the partition's raft
/// log (`crate::request::delete_records`); clients send it to each partition's leader, and a
/// partition this node does not lead gets NOT_LEADER_OR_FOLLOWER. Offset -1 is the high
/// watermark; the answer's low watermark is the log start after the request.
pub async fn delete_records(context: &NodeContext, principal: &Principal, id: u64, body: DeleteRecordsRequest) -> ResponseKind {
    let mut response = DeleteRecordsResponse::default();
    for topic in &body.topics {
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default().with_partition_index(partition.partition_index).with_low_watermark(-1);
            let Ok(index) = u32::try_from(partition.partition_index) else {
                partitions.push(result.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let mut ask = wire::DeleteRecordsRequest::new();
            ask.topic = topic.name.0.to_string();
            ask.partition = index;
            ask.before_offset = partition.offset;
            ask.timeout_ms = u32::try_from(body.timeout_ms).unwrap_or(0);
            let answer = request::handle(context, principal, native(id, Body::delete_records(ask))).await;
            let result = if answer.error == ErrorCode::NONE && answer.has_delete_records() {
                let log_start = i64::try_from(answer.get_delete_records().log_start_offset).expect("offsets fit an i64");
                result.with_low_watermark(log_start)
            } else {
                let code = if answer.error == ErrorCode::NONE { errors::UNKNOWN_SERVER_ERROR } else { kafka_code(answer.error) };
                result.with_error_code(code)
            };
            partitions.push(result);
        }
        response.topics.push(DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions));
    }
    ResponseKind::DeleteRecords(response)
}

/// DeleteGroups on this node's coordinator (clients send it to each group's coordinator).
pub async fn delete_groups(context: &NodeContext, principal: &Principal, id: u64, body: DeleteGroupsRequest) -> ResponseKind {
    let mut ask = wire::DeleteGroupsRequest::new();
    ask.groups = body.groups_names.iter().map(|group| group.0.to_string()).collect::<Vec<_>>().into();
    let answer = request::handle(context, principal, native(id, Body::delete_groups(ask))).await;
    let mut response = DeleteGroupsResponse::default();
    for group in &body.groups_names {
        let code = if answer.has_delete_groups() {
            match answer.get_delete_groups().groups.iter().find(|result| result.group == group.0.as_str()) {
                Some(result) => result.error,
                None => ErrorCode::INTERNAL,
            }
        } else {
            answer.error
        };
        response.results.push(DeletableGroupResult::default().with_group_id(group.clone()).with_error_code(group_code(code)));
    }
    ResponseKind::DeleteGroups(response)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResourceResponse;
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    use kafka_protocol::messages::{ApiKey, GroupId, TopicName};

    use super::*;
    use crate::kafka::codec::{encode, supported_versions};

    /// Every response shape built here, with every field set, encodes at every served version.
    #[test]
    fn every_response_built_here_encodes_at_every_served_version() {
        let message = Some(text("a message"));
        let created = CreatePartitionsTopicResult::default()
            .with_name(TopicName(text("t")))
            .with_error_code(errors::INVALID_PARTITIONS)
            .with_error_message(message.clone());
        let create = ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(vec![created]));
        let altered = AlterConfigsResourceResponse::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text("t"))
            .with_error_code(errors::INVALID_CONFIG)
            .with_error_message(message.clone());
        let incremental = ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default().with_responses(vec![altered]));
        let legacy = LegacyResourceResponse::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text("t"))
            .with_error_code(errors::INVALID_CONFIG)
            .with_error_message(message.clone());
        let alter = ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(vec![legacy]));
        let deleted = DeletableGroupResult::default().with_group_id(GroupId(text("g"))).with_error_code(errors::NON_EMPTY_GROUP);
        let delete = ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(vec![deleted]));
        for (key, response) in [
            (ApiKey::CreatePartitions, create),
            (ApiKey::IncrementalAlterConfigs, incremental),
            (ApiKey::AlterConfigs, alter),
            (ApiKey::DeleteGroups, delete),
        ] {
            let (min, max) = supported_versions(key).unwrap();
            for version in min..=max {
                encode(key, version, 1, &response).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            }
        }
        let (min, max) = supported_versions(ApiKey::DescribeConfigs).unwrap();
        assert!(min < CONFIG_TYPE_VERSION_MIN && CONFIG_TYPE_VERSION_MIN <= max, "both sides of the config_type version are served");
        for version in min..=max {
            let entry = described("retention.ms", 5, SOURCE_DYNAMIC_TOPIC_CONFIG, false, TYPE_LONG);
            let ok =
                DescribeConfigsResult::default().with_resource_type(RESOURCE_TOPIC).with_resource_name(text("t")).with_configs(vec![entry]);
            let refused = DescribeConfigsResult::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(text("u"))
                .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                .with_error_message(message.clone());
            let response = ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(vec![ok, refused]));
            encode(ApiKey::DescribeConfigs, version, 1, &response).unwrap_or_else(|e| panic!("DescribeConfigs v{version}: {e}"));
        }
    }

    #[test]
    fn kafka_setting_changes_are_checked_by_name_and_number() {
        let value = text("60000");
        let change = setting_change("retention.ms", Some(&value)).unwrap();
        assert_eq!((change.name.as_str(), change.value, change.reset), ("retention.ms", 60_000, false));
        assert!(setting_change("cleanup.policy", Some(&value)).unwrap_err().contains("not supported"));
        assert!(setting_change("retention.ms", Some(&text("soon"))).unwrap_err().contains("not a number"));
        assert!(setting_change("retention.ms", None).is_err(), "a null value is no number");
    }
}
