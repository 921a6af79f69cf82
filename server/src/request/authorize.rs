//! Authorization of client requests (issue 19): the one table of what each request kind needs
//! ([`check`], before a handler runs), and the filtering of what listings may show
//! ([`filter`], after). Produce is checked in [`super::produce`] (it does not pass through
//! [`super::handle`]); SaslAuthenticate belongs to the connection ([`crate::net::session`]).
//!
//! Kafka's rules, per request:
//! - Produce: write on the topic. Fetch: read on the topic. ListOffsets: describe on the topic.
//! - Metadata: lists only the topics the principal may describe (a named one it may not is
//!   answered TOPIC_AUTHORIZATION_FAILED); DescribeCluster: describe on the cluster.
//! - CreateTopics: create on the cluster or on each topic; DeleteTopics: delete on each topic;
//!   InitProducerId: write on some topic (idempotent producers).
//! - Groups: FindCoordinator and DescribeGroups describe on the group; Join/Sync/Heartbeat/
//!   Leave/ConsumerGroupHeartbeat read on the group; OffsetCommit read on the group and on each
//!   topic; OffsetFetch describe on the group and each named topic; DeleteGroups delete on the
//!   group; ListGroups lists only groups the principal may describe.
//! - Users and ACLs: alter on the cluster; their listings describe on the cluster.
//! - Topic changes (issue 15): AlterTopic alter on the topic; DescribeTopicConfigs describe on
//!   each named topic, or on the cluster when it names none (every topic).
//!
//! Relays: a node that forwards a request (to the controller) checks it here first, as the
//! client's principal, and the forwarded copy travels on a connection authenticated as the
//! nodes' own super user (`[auth] inter_node_user`): a relay is never a way around a check,
//! because the check happens where the client's principal is known.

use odradek_client::wire::proto::{ErrorCode, Request_oneof_body as Body, Response, Response_oneof_body as Answer};

use super::RequestError;
use crate::auth::acl::{self, Operation, ResourceType, CLUSTER_RESOURCE};
use crate::auth::Principal;
use crate::context::NodeContext;

/// Whether `body` is a request of protocol version 3 (authentication, users, ACLs).
pub fn is_security_request(body: &Body) -> bool {
    matches!(
        body,
        Body::sasl_authenticate(_)
            | Body::upsert_user(_)
            | Body::delete_user(_)
            | Body::list_users(_)
            | Body::create_acl(_)
            | Body::delete_acl(_)
            | Body::list_acls(_)
    )
}

/// The wire code of a refusal on a resource of this type.
fn refusal_code(resource_type: ResourceType) -> ErrorCode {
    match resource_type {
        ResourceType::Topic => ErrorCode::TOPIC_AUTHORIZATION_FAILED,
        ResourceType::Group => ErrorCode::GROUP_AUTHORIZATION_FAILED,
        ResourceType::Cluster => ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
    }
}

/// May `principal` do `operation` on the resource? A definite refusal saying who lacked what.
pub fn authorize(
    context: &NodeContext,
    principal: &Principal,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> Result<(), RequestError> {
    let settings = &context.auth.settings;
    if !settings.authorization {
        return Ok(());
    }
    let state = context.state.lock();
    acl::authorize(settings, state.meta.acls(), principal, operation, resource_type, name)
        .map_err(|refusal| RequestError::new(refusal_code(resource_type), refusal.to_string()))
}

fn cluster(context: &NodeContext, principal: &Principal, operation: Operation) -> Result<(), RequestError> {
    authorize(context, principal, operation, ResourceType::Cluster, CLUSTER_RESOURCE)
}

fn topic(context: &NodeContext, principal: &Principal, operation: Operation, name: &str) -> Result<(), RequestError> {
    authorize(context, principal, operation, ResourceType::Topic, name)
}

fn group(context: &NodeContext, principal: &Principal, operation: Operation, name: &str) -> Result<(), RequestError> {
    authorize(context, principal, operation, ResourceType::Group, name)
}

/// Produce's check: write on the topic.
pub fn produce(context: &NodeContext, principal: &Principal, topic_name: &str) -> Result<(), RequestError> {
    topic(context, principal, Operation::Write, topic_name)
}

/// What request `body` needs, checked; the first thing it lacks otherwise.
pub fn check(context: &NodeContext, principal: &Principal, body: &Body) -> Result<(), RequestError> {
    use Operation::{Alter, Create, Delete, Describe, Read, Write};
    if !context.auth.settings.authorization {
        return Ok(());
    }
    match body {
        Body::hello(_) | Body::sasl_authenticate(_) | Body::metadata(_) | Body::list_groups(_) => Ok(()),
        Body::produce(body) => produce(context, principal, &body.topic),
        Body::fetch(body) => topic(context, principal, Read, &body.topic),
        Body::list_offsets(body) => topic(context, principal, Describe, &body.topic),
        Body::describe_cluster(_) => cluster(context, principal, Describe),
        Body::create_topics(body) => {
            if cluster(context, principal, Create).is_ok() {
                return Ok(());
            }
            body.topics.iter().try_for_each(|t| topic(context, principal, Create, &t.name))
        }
        Body::delete_topics(body) => body.names.iter().try_for_each(|name| topic(context, principal, Delete, name)),
        // Kafka's DeleteRecords needs Delete on the topic.
        Body::delete_records(body) => topic(context, principal, Delete, &body.topic),
        Body::init_producer_id(_) => {
            let state = context.state.lock();
            if acl::allows_any(&context.auth.settings, state.meta.acls(), principal, Write, ResourceType::Topic) {
                return Ok(());
            }
            let message = format!("principal {principal} may write no topic: an idempotent producer needs write on some topic");
            Err(RequestError::new(ErrorCode::CLUSTER_AUTHORIZATION_FAILED, message))
        }
        Body::find_coordinator(body) => group(context, principal, Describe, &body.group),
        Body::join_group(body) => group(context, principal, Read, &body.group),
        Body::sync_group(body) => group(context, principal, Read, &body.group),
        Body::heartbeat(body) => group(context, principal, Read, &body.group),
        Body::leave_group(body) => group(context, principal, Read, &body.group),
        Body::consumer_group_heartbeat(body) => group(context, principal, Read, &body.group),
        Body::offset_commit(body) => {
            group(context, principal, Read, &body.group)?;
            body.offsets.iter().try_for_each(|offset| topic(context, principal, Read, &offset.topic))
        }
        Body::offset_fetch(body) => {
            group(context, principal, Describe, &body.group)?;
            body.partitions.iter().try_for_each(|partitions| topic(context, principal, Describe, &partitions.topic))
        }
        Body::describe_groups(body) => body.groups.iter().try_for_each(|name| group(context, principal, Describe, name)),
        Body::delete_groups(body) => body.groups.iter().try_for_each(|name| group(context, principal, Delete, name)),
        // Kafka's OffsetDelete: delete on the group, read on each topic.
        Body::offset_delete(body) => {
            group(context, principal, Delete, &body.group)?;
            body.partitions.iter().try_for_each(|partitions| topic(context, principal, Read, &partitions.topic))
        }
        Body::upsert_user(_)
        | Body::delete_user(_)
        | Body::create_acl(_)
        | Body::delete_acl(_)
        | Body::reassign_partition(_)
        | Body::transfer_leader(_)
        | Body::join_cluster(_)
        | Body::change_controllers(_)
        | Body::decommission_node(_)
        | Body::rebalance(_) => cluster(context, principal, Alter),
        Body::list_users(_) | Body::list_acls(_) => cluster(context, principal, Describe),
        Body::alter_topic(body) => topic(context, principal, Alter, &body.name),
        // Every topic's settings (no name given) is a listing of the cluster's topics.
        Body::describe_topic_configs(body) if body.names.is_empty() => cluster(context, principal, Describe),
        Body::describe_topic_configs(body) => body.names.iter().try_for_each(|name| topic(context, principal, Describe, name)),
    }
}

/// Takes out of a listing what `principal` may not describe: a Metadata answer keeps the topics
/// it may describe (one it named, it may not, becomes TOPIC_AUTHORIZATION_FAILED with no
/// partitions; unnamed ones are dropped), a ListGroups answer the groups.
pub fn filter(context: &NodeContext, principal: &Principal, named_topics: bool, response: &mut Response) {
    if !context.auth.settings.authorization {
        return;
    }
    match response.body.as_mut() {
        Some(Answer::metadata(metadata)) => {
            let mut kept = Vec::new();
            for mut entry in std::mem::take(&mut metadata.topics).into_vec() {
                match topic(context, principal, Operation::Describe, &entry.name) {
                    Ok(()) => kept.push(entry),
                    Err(_) if !named_topics => {}
                    Err(refusal) => {
                        entry.error = ErrorCode::TOPIC_AUTHORIZATION_FAILED;
                        entry.error_message = refusal.message;
                        entry.partitions.clear();
                        kept.push(entry);
                    }
                }
            }
            metadata.topics = kept.into();
        }
        Some(Answer::list_groups(groups)) => {
            let kept: Vec<_> = std::mem::take(&mut groups.groups)
                .into_vec()
                .into_iter()
                .filter(|listed| group(context, principal, Operation::Describe, &listed.group).is_ok())
                .collect();
            groups.groups = kept.into();
        }
        _ => {}
    }
}
