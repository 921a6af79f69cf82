//! Kafka's topic and group admin APIs on the Kafka listener (issues 15 and 16), end to end over
//! real sockets with the `kafka-protocol` codecs on the client side: ApiVersions advertises them;
//! CreatePartitions grows a topic (a shrink, an unknown topic, a manual assignment are refused
//! with Kafka's codes; validate-only changes nothing); DescribeConfigs reports topic settings
//! with their source (DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG) and this broker's (STATIC), filtered
//! by key; IncrementalAlterConfigs and AlterConfigs change what we support and refuse the rest
//! per resource (INVALID_CONFIG), the other resources of the request still applied; DeleteGroups
//! refuses a group with members and deletes an empty one. Real clients: scripts/kafka-compat.sh.

// Real sockets and a real runtime: not a simulation test.
#![cfg(not(madsim))]

use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use odradek_log::SimDisk;
use odradek_server::{system_clock, Server};

use crate::kafka_raw;
use kafka_raw::KafkaRaw;

// Kafka's codes and enums, as a client reads them.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_LONG: i8 = 5;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn start(runtime: &tokio::runtime::Runtime) -> (Server, String) {
    let mut config = kafka_raw::one_node_config();
    config.groups.offsets_topic_partitions = 1;
    config.groups.initial_rebalance_delay_ms = 0;
    let server = runtime.block_on(Server::start(config, SimDisk::new(29), system_clock())).expect("start");
    let kafka = server.kafka_addr().expect("a Kafka listener").to_string();
    (server, kafka)
}

/// Retries `request` while it answers one of the `transient` codes (a node still electing).
fn call_until(
    raw: &mut KafkaRaw,
    version: i16,
    request: RequestKind,
    code: impl Fn(&ResponseKind) -> i16,
    transient: &[i16],
) -> ResponseKind {
    for _ in 0..400 {
        let response = raw.call(version, request.clone());
        if !transient.contains(&code(&response)) {
            return response;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{request:?} never settled");
}

fn partitions_of(raw: &mut KafkaRaw, topic: &str) -> usize {
    let wanted = metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(text(topic))));
    let ResponseKind::Metadata(metadata) = raw.call(9, RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![wanted]))))
    else {
        panic!()
    };
    metadata.topics[0].partitions.len()
}

fn create_partitions(raw: &mut KafkaRaw, topic: &str, count: i32, validate_only: bool) -> (i16, Option<StrBytes>) {
    let grow = CreatePartitionsTopic::default().with_name(TopicName(text(topic))).with_count(count);
    let request = CreatePartitionsRequest::default().with_topics(vec![grow]).with_timeout_ms(10_000).with_validate_only(validate_only);
    let ResponseKind::CreatePartitions(created) = raw.call(3, RequestKind::CreatePartitions(request)) else { panic!() };
    assert_eq!(created.results.len(), 1);
    assert_eq!(created.results[0].name.0.as_str(), topic);
    (created.results[0].error_code, created.results[0].error_message.clone())
}

fn describe(
    raw: &mut KafkaRaw,
    version: i16,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> describe_configs_response::DescribeConfigsResult {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_configuration_keys(keys.map(|keys| keys.iter().map(|key| text(key)).collect()));
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let ResponseKind::DescribeConfigs(described) = raw.call(version, RequestKind::DescribeConfigs(request)) else { panic!() };
    assert_eq!(described.results.len(), 1);
    described.results.into_iter().next().unwrap()
}

/// (value, source) of a topic setting.
fn topic_setting(raw: &mut KafkaRaw, topic: &str, name: &str) -> (String, i8) {
    let result = describe(raw, 4, TOPIC, topic, None);
    assert_eq!(result.error_code, NONE, "{result:?}");
    let entry = result.configs.iter().find(|entry| entry.name.as_str() == name).unwrap_or_else(|| panic!("{name} in {result:?}"));
    (entry.value.as_ref().unwrap().to_string(), entry.config_source)
}

/// One config change of an IncrementalAlterConfigs: (name, operation, value).
type Change<'a> = (&'a str, i8, Option<&'a str>);

fn incremental(raw: &mut KafkaRaw, resources: Vec<(i8, &str, Vec<Change>)>) -> Vec<i16> {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let resources = resources
        .into_iter()
        .map(|(kind, name, configs)| {
            let configs = configs
                .into_iter()
                .map(|(key, op, value)| {
                    AlterableConfig::default().with_name(text(key)).with_config_operation(op).with_value(value.map(text))
                })
                .collect();
            AlterConfigsResource::default().with_resource_type(kind).with_resource_name(text(name)).with_configs(configs)
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(resources);
    let ResponseKind::IncrementalAlterConfigs(altered) = raw.call(1, RequestKind::IncrementalAlterConfigs(request)) else { panic!() };
    altered.responses.iter().map(|response| response.error_code).collect()
}

fn legacy_alter(raw: &mut KafkaRaw, topic: &str, configs: Vec<(&str, &str)>) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let configs =
        configs.into_iter().map(|(key, value)| AlterableConfig::default().with_name(text(key)).with_value(Some(text(value)))).collect();
    let resource = AlterConfigsResource::default().with_resource_type(TOPIC).with_resource_name(text(topic)).with_configs(configs);
    let request = AlterConfigsRequest::default().with_resources(vec![resource]);
    let ResponseKind::AlterConfigs(altered) = raw.call(2, RequestKind::AlterConfigs(request)) else { panic!() };
    altered.responses[0].error_code
}

fn delete_group(raw: &mut KafkaRaw, group: &str) -> i16 {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(group))]);
    let ResponseKind::DeleteGroups(deleted) = raw.call(2, RequestKind::DeleteGroups(request)) else { panic!() };
    assert_eq!(deleted.results[0].group_id.0.as_str(), group);
    deleted.results[0].error_code
}

#[test]
fn topic_and_group_admin_through_the_kafka_listener() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, kafka) = start(&runtime);
    let mut raw = KafkaRaw::connect(&kafka);

    // Advertised.
    let ResponseKind::ApiVersions(versions) = raw.call(3, RequestKind::ApiVersions(ApiVersionsRequest::default())) else { panic!() };
    for (key, min, max) in [
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::DeleteGroups, 0, 2),
    ] {
        let entry = versions.api_keys.iter().find(|entry| entry.api_key == key as i16).unwrap_or_else(|| panic!("{key:?} advertised"));
        assert_eq!((entry.min_version, entry.max_version), (min, max), "{key:?}");
    }

    let topic = CreatableTopic::default().with_name(TopicName(text("orders"))).with_num_partitions(1).with_replication_factor(1);
    let create = RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![topic]));
    let created =
        call_until(&mut raw, 5, create, |r| if let ResponseKind::CreateTopics(c) = r { c.topics[0].error_code } else { -2 }, &[5, 41]);
    let ResponseKind::CreateTopics(created) = created else { panic!() };
    assert_eq!(created.topics[0].error_code, NONE, "{created:?}");

    // CreatePartitions.
    assert_eq!(create_partitions(&mut raw, "orders", 5, true).0, NONE, "validate only");
    assert_eq!(partitions_of(&mut raw, "orders"), 1, "validate only changes nothing");
    assert_eq!(create_partitions(&mut raw, "orders", 3, false).0, NONE);
    assert_eq!(partitions_of(&mut raw, "orders"), 3);
    let (code, message) = create_partitions(&mut raw, "orders", 2, false);
    assert_eq!(code, INVALID_PARTITIONS, "a shrink");
    assert!(message.unwrap().contains("only grows"));
    assert_eq!(create_partitions(&mut raw, "orders", 3, false).0, INVALID_PARTITIONS, "the same count");
    assert_eq!(create_partitions(&mut raw, "nope", 3, false).0, UNKNOWN_TOPIC_OR_PARTITION);
    let manual = CreatePartitionsTopic::default()
        .with_name(TopicName(text("orders")))
        .with_count(4)
        .with_assignments(Some(vec![CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)])]));
    let request = CreatePartitionsRequest::default().with_topics(vec![manual]).with_timeout_ms(10_000);
    let ResponseKind::CreatePartitions(refused) = raw.call(3, RequestKind::CreatePartitions(request)) else { panic!() };
    assert_eq!(refused.results[0].error_code, INVALID_REPLICA_ASSIGNMENT);
    assert_eq!(partitions_of(&mut raw, "orders"), 3, "refusals change nothing");

    // DescribeConfigs: topic (default source, typed at v3+; v1 too), broker, filters, errors.
    assert_eq!(topic_setting(&mut raw, "orders", "retention.ms").1, SOURCE_DEFAULT);
    let typed = describe(&mut raw, 4, TOPIC, "orders", Some(&["retention.ms"]));
    assert_eq!(typed.configs.len(), 1, "filtered by key");
    assert_eq!(typed.configs[0].config_type, TYPE_LONG);
    assert_eq!(describe(&mut raw, 1, TOPIC, "orders", None).configs.len(), 4);
    let broker = describe(&mut raw, 4, BROKER, "1", None);
    assert_eq!(broker.error_code, NONE);
    let segment = broker.configs.iter().find(|entry| entry.name.as_str() == "log.segment.bytes").expect("log.segment.bytes");
    assert_eq!((segment.config_source, segment.read_only), (SOURCE_STATIC_BROKER, true));
    assert_eq!(describe(&mut raw, 4, TOPIC, "nope", None).error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(describe(&mut raw, 4, BROKER, "7", None).error_code, INVALID_REQUEST);
    assert_eq!(describe(&mut raw, 4, 99, "x", None).error_code, INVALID_REQUEST);

    // IncrementalAlterConfigs: per resource; SET and DELETE.
    let codes = incremental(
        &mut raw,
        vec![
            (TOPIC, "orders", vec![("retention.ms", 0, Some("60000"))]),
            (TOPIC, "orders", vec![("cleanup.policy", 0, Some("compact"))]),
            (TOPIC, "orders", vec![("retention.bytes", 2, Some("1"))]),
            (TOPIC, "orders", vec![("retention.bytes", 0, Some("-7"))]),
            (BROKER, "1", vec![("log.retention.ms", 0, Some("1"))]),
            (TOPIC, "nope", vec![("retention.ms", 0, Some("1"))]),
        ],
    );
    assert_eq!(codes, [NONE, INVALID_CONFIG, INVALID_CONFIG, INVALID_CONFIG, INVALID_CONFIG, UNKNOWN_TOPIC_OR_PARTITION]);
    assert_eq!(topic_setting(&mut raw, "orders", "retention.ms"), ("60000".to_string(), SOURCE_DYNAMIC_TOPIC));
    assert_eq!(topic_setting(&mut raw, "orders", "retention.bytes").1, SOURCE_DEFAULT, "refused resources changed nothing");
    assert_eq!(incremental(&mut raw, vec![(TOPIC, "orders", vec![("retention.ms", 1, None)])]), [NONE]);
    assert_eq!(topic_setting(&mut raw, "orders", "retention.ms").1, SOURCE_DEFAULT, "DELETE is back to the default");

    // AlterConfigs replaces the whole set: what it does not name goes back to the default.
    assert_eq!(incremental(&mut raw, vec![(TOPIC, "orders", vec![("retention.ms", 0, Some("60000"))])]), [NONE]);
    assert_eq!(legacy_alter(&mut raw, "orders", vec![("segment.bytes", "1048576")]), NONE);
    assert_eq!(topic_setting(&mut raw, "orders", "segment.bytes"), ("1048576".to_string(), SOURCE_DYNAMIC_TOPIC));
    assert_eq!(topic_setting(&mut raw, "orders", "retention.ms").1, SOURCE_DEFAULT);
    assert_eq!(legacy_alter(&mut raw, "orders", vec![("segment.bytes", "big")]), INVALID_CONFIG);
    assert_eq!(topic_setting(&mut raw, "orders", "segment.bytes").0, "1048576", "a refusal changes nothing");

    // DeleteGroups: a group with a member is not deleted; once empty it is; then it is unknown.
    let find = RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(text("billing")).with_key_type(0));
    call_until(&mut raw, 3, find, |r| if let ResponseKind::FindCoordinator(f) = r { f.error_code } else { -2 }, &[5, 14, 15]);
    let protocol =
        JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0\0\0\0\0"));
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(text("billing")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![protocol]);
    let ResponseKind::JoinGroup(joined) = raw.call(3, RequestKind::JoinGroup(join)) else { panic!() };
    assert_eq!(joined.error_code, NONE, "{joined:?}");
    assert_eq!(delete_group(&mut raw, "billing"), NON_EMPTY_GROUP);
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(text("billing"))).with_member_id(joined.member_id.clone());
    let ResponseKind::LeaveGroup(left) = raw.call(1, RequestKind::LeaveGroup(leave)) else { panic!() };
    assert_eq!(left.error_code, NONE);
    assert_eq!(delete_group(&mut raw, "billing"), NONE);
    assert_eq!(delete_group(&mut raw, "billing"), GROUP_ID_NOT_FOUND);
    drop(server);
}
