//! The group operations of [`Admin`]: list, describe and delete groups, read their committed
//! offsets, and set them (reset) while a group has no members.
//!
//! Each node lists only the groups it coordinates, so `list_groups` asks every broker and
//! merges; a broker that does not answer is named in the result rather than hidden. Per-group
//! requests go to the group's coordinator through [`Coordinator`], with its retries.
//! Setting offsets is an OffsetCommit with member "" and epoch -1, which the coordinator
//! accepts only for a group without members (NON_EMPTY_GROUP otherwise, definite).

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::coordinator::Coordinator;
use super::offsets;
use super::TopicPartition;
use crate::admin::{list_offsets, Admin, OffsetQuery};
use crate::cluster::check;
use crate::error::{ClientError, Result};
use crate::wire::proto::{
    DeleteGroupsRequest, DescribeGroupsRequest, ErrorCode, ListGroupsRequest, Request_oneof_body as RequestBody,
    Response_oneof_body as ResponseBody,
};

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group: String,
    pub protocol_type: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable, Reconciling, Assigning.
    pub state: String,
    /// "classic" or "consumer".
    pub kind: String,
    /// The node that listed it (its coordinator).
    pub coordinator: u64,
}

/// The answer to [`Admin::list_groups`].
#[derive(Debug, Clone, Default)]
pub struct GroupListing {
    /// Every group some broker coordinates, by name.
    pub groups: Vec<ListedGroup>,
    /// Brokers that did not answer, with why: their groups are missing from `groups`.
    pub unreachable: Vec<(u64, ClientError)>,
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// Consumer protocol: the member epoch; classic: the generation.
    pub epoch: i32,
    pub assignment: BTreeSet<TopicPartition>,
    pub subscribed_topics: Vec<String>,
    /// Consumer protocol: the regular expression the coordinator matches topics with (KIP-848).
    pub subscribed_regex: Option<String>,
}

/// The answer to [`Admin::describe_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub kind: String,
    pub protocol_type: String,
    /// Classic: the chosen assignor; consumer protocol: the server assignor.
    pub protocol_name: String,
    /// Classic: the generation; consumer protocol: the group epoch.
    pub epoch: i32,
    pub members: Vec<GroupMemberDescription>,
    /// The committed offsets.
    pub offsets: BTreeMap<TopicPartition, u64>,
    pub coordinator: u64,
}

/// Where [`Admin::reset_group_offsets`] moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's log start offset.
    Earliest,
    /// Each partition's high watermark.
    Latest,
    /// This offset on every partition.
    Offset(u64),
}

fn partitions_of(topics: &[crate::wire::proto::TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics.iter().flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.clone(), *partition))).collect()
}

impl Admin {
    fn coordinator(&self, group: &str) -> Result<Coordinator> {
        Coordinator::new(self.cluster().clone(), group)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.cluster().config().operation_timeout
    }

    /// Every group of the cluster: each broker lists those it coordinates; merged by name.
    pub async fn list_groups(&self) -> Result<GroupListing> {
        self.cluster().refresh_metadata(&[]).await?;
        let brokers = self.cluster().metadata().brokers;
        let mut listing = GroupListing::default();
        let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for (node, address) in brokers {
            let answer = async {
                let connection = self.cluster().connection(&address).await?;
                connection.require_groups()?;
                check(connection.request(RequestBody::list_groups(ListGroupsRequest::new())).await?)
            };
            let response = match answer.await {
                Ok(response) => response,
                Err(error) => {
                    listing.unreachable.push((node, error));
                    continue;
                }
            };
            let Some(ResponseBody::list_groups(listed)) = response.body else {
                listing.unreachable.push((node, ClientError::Protocol("ListGroups answered without groups".into())));
                continue;
            };
            for group in listed.groups.iter() {
                groups.entry(group.group.clone()).or_insert_with(|| ListedGroup {
                    group: group.group.clone(),
                    protocol_type: group.protocol_type.clone(),
                    state: group.state.clone(),
                    kind: group.kind.clone(),
                    coordinator: node,
                });
            }
        }
        listing.groups = groups.into_values().collect();
        Ok(listing)
    }

    /// Members, assignments, state and committed offsets of `group`, from its coordinator.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let coordinator = self.coordinator(group)?;
        let mut request = DescribeGroupsRequest::new();
        request.groups = vec![group.to_string()].into();
        let timeout = self.cluster().config().connection.request_timeout;
        let response = coordinator.request_read(RequestBody::describe_groups(request), timeout, self.deadline()).await?;
        let Some(ResponseBody::describe_groups(described)) = response.body else {
            return Err(ClientError::Protocol("DescribeGroups answered without groups".into()));
        };
        let Some(described) = described.groups.into_iter().find(|described| described.group == group) else {
            return Err(ClientError::Protocol(format!("DescribeGroups did not describe {group:?}")));
        };
        if described.error != ErrorCode::NONE {
            return Err(ClientError::server(described.error, described.error_message));
        }
        let mut offsets = BTreeMap::new();
        for entry in described.offsets.iter().filter(|entry| entry.offset >= 0) {
            offsets.insert((entry.topic.clone(), entry.partition), entry.offset as u64);
        }
        Ok(GroupDescription {
            group: described.group,
            state: described.state,
            kind: described.kind,
            protocol_type: described.protocol_type,
            protocol_name: described.protocol_name,
            epoch: described.epoch,
            members: described
                .members
                .iter()
                .map(|member| GroupMemberDescription {
                    member_id: member.member_id.clone(),
                    group_instance_id: (!member.group_instance_id.is_empty()).then(|| member.group_instance_id.clone()),
                    client_id: member.client_id.clone(),
                    epoch: member.member_epoch,
                    assignment: partitions_of(&member.assignment),
                    subscribed_topics: member.subscribed_topics.to_vec(),
                    subscribed_regex: Some(member.subscribed_regex.clone()).filter(|regex| !regex.is_empty()),
                })
                .collect(),
            offsets,
            coordinator: described.coordinator,
        })
    }

    /// Deletes a group without members (its committed offsets go with it).
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let coordinator = self.coordinator(group)?;
        let mut request = DeleteGroupsRequest::new();
        request.groups = vec![group.to_string()].into();
        let timeout = self.cluster().config().connection.request_timeout;
        let response = coordinator.request(RequestBody::delete_groups(request), timeout, self.deadline()).await?;
        let Some(ResponseBody::delete_groups(deleted)) = response.body else {
            return Err(ClientError::Protocol("DeleteGroups answered without results".into()));
        };
        match deleted.groups.iter().find(|result| result.group == group) {
            None => Err(ClientError::Protocol(format!("DeleteGroups said nothing of {group:?}"))),
            Some(result) if result.error == ErrorCode::NONE => Ok(()),
            Some(result) => Err(ClientError::server(result.error, result.error_message.clone())),
        }
    }

    /// [`describe_group`](Self::describe_group) for each of `groups`, in order.
    pub async fn describe_groups(&self, groups: &[&str]) -> Vec<(String, Result<GroupDescription>)> {
        let mut described = Vec::with_capacity(groups.len());
        for group in groups {
            described.push((group.to_string(), self.describe_group(group).await));
        }
        described
    }

    /// [`delete_group`](Self::delete_group) for each of `groups`, in order.
    pub async fn delete_groups(&self, groups: &[&str]) -> Vec<(String, Result<()>)> {
        let mut deleted = Vec::with_capacity(groups.len());
        for group in groups {
            deleted.push((group.to_string(), self.delete_group(group).await));
        }
        deleted
    }

    /// Every committed offset of `group`.
    pub async fn list_group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, u64>> {
        let coordinator = self.coordinator(group)?;
        let timeout = self.cluster().config().connection.request_timeout;
        let committed = offsets::fetch_committed(&coordinator, &BTreeSet::new(), timeout, self.deadline()).await?;
        Ok(committed.into_iter().filter_map(|(partition, offset)| offset.map(|offset| (partition, offset))).collect())
    }

    /// Sets `group`'s committed offsets (each the next record to consume); only while the group
    /// has no members (NON_EMPTY_GROUP otherwise).
    pub async fn alter_group_offsets(&self, group: &str, offsets: &BTreeMap<TopicPartition, u64>) -> Result<()> {
        let coordinator = self.coordinator(group)?;
        let timeout = self.cluster().config().connection.request_timeout;
        offsets::commit(&coordinator, None, None, offsets, timeout, self.deadline()).await
    }

    /// Moves `group`'s committed offsets of every partition of `topic` to `to`, and returns them;
    /// only while the group has no members.
    pub async fn reset_group_offsets(&self, group: &str, topic: &str, to: ResetTo) -> Result<BTreeMap<TopicPartition, u64>> {
        let described = self.describe_topic(topic).await?;
        let mut offsets = BTreeMap::new();
        for info in &described.partitions {
            let offset = match to {
                ResetTo::Offset(offset) => offset,
                ResetTo::Earliest => list_offsets(self.cluster(), topic, info.partition, OffsetQuery::Earliest).await?.offset,
                ResetTo::Latest => list_offsets(self.cluster(), topic, info.partition, OffsetQuery::Latest).await?.offset,
            };
            offsets.insert((topic.to_string(), info.partition), offset);
        }
        self.alter_group_offsets(group, &offsets).await?;
        Ok(offsets)
    }
}
