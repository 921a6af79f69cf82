//! Topic changes at runtime (issue 15): AlterTopic (add partitions, change settings) and
//! DescribeTopicConfigs, both answered by the controller (any other node forwards them, as
//! [`super::admin`]), so a describe right after a change shows it.
//!
//! An AlterTopic is checked whole against the controller's metadata before anything is proposed
//! (unknown topic, a count not above the current one, an unknown setting, a value out of range:
//! a definite error, nothing changed). It then proposes at most two metadata commands, the
//! partitions first (`meta::MetaCommand::AddPartitions`, `AlterTopicSettings`); each is applied
//! all or none, and apply checks again (the metadata may have moved between check and commit).
//! The partitions of a topic are placed as a creation would place them
//! (`meta::assign_added_partitions`); every node's reconciler (`crate::controller`) starts
//! hosting its new replicas and reopens its replicas of a topic whose log settings changed.

use std::time::Duration;

use odradek_client::wire::proto::{self as wire, ErrorCode, Response};

use super::admin::{admin_timeout, propose_meta, topic_result};
use super::{ok_response, RequestError};
use crate::context::NodeContext;
use crate::group::OFFSETS_TOPIC;
use crate::meta::{self, MetaCommand, MetaOutcome, TopicSetting, TopicSettings};

/// The metadata commands an AlterTopic proposes, checked against the controller's metadata.
#[derive(Debug, Default)]
struct AlterPlan {
    add_partitions: Option<MetaCommand>,
    alter_settings: Option<MetaCommand>,
}

/// The node's default for `setting` (what a topic created without it holds).
pub fn setting_default(context: &NodeContext, setting: TopicSetting) -> i64 {
    let defaults = &context.config.topic_defaults;
    let settings = TopicSettings {
        retention_ms: defaults.retention_ms,
        retention_bytes: defaults.retention_bytes,
        segment_bytes: defaults.segment_bytes,
        batch_bytes_max: defaults.batch_bytes_max,
    };
    setting.get(&settings)
}

/// The setting a change names, or INVALID_CONFIG naming the known ones.
pub fn parse_setting(name: &str) -> Result<TopicSetting, RequestError> {
    TopicSetting::parse(name).ok_or_else(|| {
        let known: Vec<&str> = TopicSetting::ALL.iter().map(|setting| setting.name()).collect();
        RequestError::new(ErrorCode::INVALID_CONFIG, format!("unknown topic setting {name:?}; known: {}", known.join(", ")))
    })
}

fn plan(context: &NodeContext, body: &wire::AlterTopicRequest) -> Result<AlterPlan, RequestError> {
    if body.partitions == 0 && body.changes.is_empty() {
        return Err(RequestError::new(ErrorCode::INVALID_REQUEST, "nothing to change: no partition count and no setting"));
    }
    let nodes = context.cluster_node_ids();
    let state = context.state.lock();
    let Some(topic) = state.meta.topic(&body.name) else {
        return Err(RequestError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {:?}", body.name)));
    };
    let mut plan = AlterPlan::default();
    if body.partitions != 0 {
        if topic.name == OFFSETS_TOPIC {
            let message = format!("{OFFSETS_TOPIC} keeps its partition count: a group's partition is a hash of its id modulo the count");
            return Err(RequestError::new(ErrorCode::INVALID_PARTITIONS, message));
        }
        let replicas = meta::assign_added_partitions(&nodes, topic, body.partitions)
            .map_err(|reason| RequestError::new(ErrorCode::INVALID_PARTITIONS, reason))?;
        let partitions_before = topic.partitions.len() as u32;
        plan.add_partitions = Some(MetaCommand::AddPartitions { name: topic.name.clone(), partitions_before, replicas });
    }
    if !body.changes.is_empty() {
        let mut changes = Vec::with_capacity(body.changes.len());
        for change in body.changes.iter() {
            let setting = parse_setting(&change.name)?;
            let value = if change.reset { setting_default(context, setting) } else { change.value };
            changes.push((setting, value));
        }
        meta::changed_settings(&topic.settings, &changes).map_err(|reason| RequestError::new(ErrorCode::INVALID_CONFIG, reason))?;
        plan.alter_settings = Some(MetaCommand::AlterTopicSettings { name: topic.name.clone(), changes });
    }
    Ok(plan)
}

/// Proposes one command of the plan and maps its applied outcome.
async fn propose(context: &NodeContext, command: &MetaCommand, timeout: Duration) -> Result<(), RequestError> {
    let index = propose_meta(context, command, timeout).await?;
    let refused_code = match command {
        MetaCommand::AddPartitions { .. } => ErrorCode::INVALID_PARTITIONS,
        _ => ErrorCode::INVALID_CONFIG,
    };
    match context.state.lock().meta_outcomes.get(&index) {
        Some(MetaOutcome::PartitionsAdded { .. } | MetaOutcome::TopicSettingsChanged) => Ok(()),
        Some(MetaOutcome::TopicUnknown) => Err(RequestError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "the topic was deleted meanwhile")),
        Some(MetaOutcome::Rejected(reason)) => Err(RequestError::new(refused_code, reason.clone())),
        other => Err(RequestError::new(ErrorCode::INTERNAL, format!("unexpected outcome of {command:?}: {other:?}"))),
    }
}

async fn alter(context: &NodeContext, body: &wire::AlterTopicRequest) -> Result<(), RequestError> {
    let plan = plan(context, body)?;
    if body.validate_only {
        return Ok(());
    }
    let timeout = admin_timeout(body.timeout_ms);
    if let Some(command) = &plan.add_partitions {
        // New partitions may only use registered brokers: register any configured node not yet known.
        crate::controller::register_brokers(context).await;
        propose(context, command, timeout).await?;
    }
    if let Some(command) = &plan.alter_settings {
        propose(context, command, timeout).await?;
    }
    Ok(())
}

/// AlterTopic, on the controller.
pub async fn alter_topic(context: &NodeContext, id: u64, body: wire::AlterTopicRequest) -> Response {
    let outcome = alter(context, &body).await;
    if let Err(error) = &outcome {
        tracing::info!(topic = %body.name, code = ?error.code, message = %error.message, "topic change refused");
    }
    let mut altered = wire::AlterTopicResponse::new();
    altered.set_result(topic_result(&body.name, outcome));
    let mut response = ok_response(id);
    response.set_alter_topic(altered);
    response
}

/// DescribeTopicConfigs, on the controller: every setting of each named topic (every topic when
/// none is named), its value and whether it equals this node's default.
pub fn describe_topic_configs(context: &NodeContext, id: u64, body: wire::DescribeTopicConfigsRequest) -> Response {
    let state = context.state.lock();
    let names: Vec<String> =
        if body.names.is_empty() { state.meta.topics().keys().cloned().collect() } else { body.names.iter().cloned().collect() };
    let mut described = wire::DescribeTopicConfigsResponse::new();
    for name in names {
        let mut configs = wire::TopicConfigs::new();
        match state.meta.topic(&name) {
            None => {
                configs.error = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION;
                configs.error_message = format!("no topic {name:?}");
            }
            Some(topic) => {
                for setting in TopicSetting::ALL {
                    let mut entry = wire::TopicSettingValue::new();
                    entry.name = setting.name().to_string();
                    entry.value = setting.get(&topic.settings);
                    entry.is_default = entry.value == setting_default(context, setting);
                    configs.settings.push(entry);
                }
            }
        }
        configs.name = name;
        described.topics.push(configs);
    }
    let mut response = ok_response(id);
    response.set_describe_topic_configs(described);
    response
}
