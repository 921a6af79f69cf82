//! The committed group table of one coordinator partition: what every replica holds after
//! applying the partition's records in index order.
//!
//! Invariants (checked by the tests below and the coordinator's property tests):
//! - Deterministic: the table is a function of the applied records (no clock, no randomness,
//!   `BTreeMap` everywhere), so replicas that applied the same prefix hold equal tables (R4).
//! - `apply` never panics on a payload: an undecodable record changes nothing but the applied
//!   index; an invalid one is refused with the [`GroupError`] its proposer reports.
//! - A commit applies only for the member and epoch the group holds at that index (C5): classic,
//!   the member is in the group and names its generation, whose assignment is in place; consumer
//!   protocol, the member names its own member epoch. A commit with no member applies only to a
//!   group without members.
//! - A membership record applies only on the state it was computed from (its `base_index` is
//!   the group's `record_index`): two decisions computed from one state never both apply.
//! - No partition is owned (assigned, or being revoked in a consumer group) by two members.
//! - Every limit of the module root holds after every apply, so the table fits one snapshot.
//! - A snapshot applies only if no coordinator record came after its `as_of_index`; then the
//!   table equals what it was at `as_of_index`, and [`GroupTable::retention_bound`] moves to the
//!   snapshot's index: replaying the log from any start at or below it rebuilds the same table.

use std::collections::{BTreeMap, BTreeSet};

use odradek_client::group::protocol::Subscription;

use super::record::{OffsetCommit, Record};
use super::service::CONSUMER_PROTOCOL_TYPE;
use super::{
    GroupError, Partitions, TopicPartition, COMMIT_METADATA_BYTES_MAX, GROUPS_PER_PARTITION_MAX, MEMBERS_PER_GROUP_MAX,
    OFFSETS_PER_GROUP_MAX, OUTCOMES_KEPT, TABLE_BYTES_MAX,
};

/// Which protocol drives a group while it has members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKind {
    Classic,
    Consumer,
}

impl GroupKind {
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Classic => "classic",
            GroupKind::Consumer => "consumer",
        }
    }
}

/// Whose refusals a commit gets (the wire's `CommitRules`). Kafka 4.0 answers some commits by
/// the OffsetCommit version (`OffsetMetadataManager.validateOffsetCommit`,
/// `ConsumerGroup.validateOffsetCommit`, `ClassicGroup.validateOffsetCommit`); the native
/// protocol keeps its own answers. Only refusals differ: a commit one set of rules takes, every
/// set takes, so the apply-time check ([`CommitRules::Native`]) never undoes a proposer's check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CommitRules {
    #[default]
    Native,
    /// Kafka's OffsetCommit below v9: [`CommitRules::KafkaV9`], and a consumer-protocol member
    /// is refused whatever its epoch (its client must use v9+), a group that does not exist is
    /// ILLEGAL_GENERATION.
    KafkaBelowV9,
    /// Kafka's OffsetCommit v9+: a group that does not exist is GROUP_ID_NOT_FOUND, a member
    /// epoch above the member's STALE_MEMBER_EPOCH, member "" naming a static member's instance
    /// id in a classic group FENCED_INSTANCE_ID.
    KafkaV9,
}

/// A classic member's protocol (client-side assignor) and its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Protocol {
    pub name: String,
    pub metadata: Vec<u8>,
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub subscribed: Vec<String>,
    /// Consumer protocol: a regular expression (KIP-848); the member also subscribes to every
    /// topic whose whole name it matches (resolved by the coordinator, see `consumer.rs`).
    pub subscribed_regex: Option<String>,
    /// Classic: the protocols offered at the last join, in the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// Classic: the assignment the leader member gave this member (opaque bytes).
    pub assignment: Vec<u8>,
    /// Consumer protocol: the member's epoch (0 until its first reconciliation).
    pub member_epoch: i32,
    /// The epoch before the last change (a member whose last answer was lost may still send it).
    pub member_epoch_previous: i32,
    /// Partitions the member may consume now (classic: decoded from `assignment`).
    pub assigned: Partitions,
    /// Consumer protocol: partitions the member was asked to give up and has not yet confirmed.
    pub revoking: Partitions,
    /// A static member that left temporarily (epoch -2): its assignment waits for its instance.
    pub left: bool,
}

impl Member {
    /// Everything the member may still be consuming.
    pub fn owned(&self) -> impl Iterator<Item = &TopicPartition> {
        self.assigned.iter().chain(self.revoking.iter())
    }
}

/// A group's membership: the part both protocols share, replaced whole by a group record.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    /// `None`: no members (offsets only, or every member left).
    pub kind: Option<GroupKind>,
    /// Classic: the generation; consumer: the group epoch (bumped by every membership or
    /// subscription change).
    pub epoch: i32,
    pub protocol_type: String,
    /// Classic: the chosen client-side assignor; consumer: the server-side assignor.
    pub protocol_name: String,
    /// Classic: the leader member.
    pub leader: String,
    pub members: BTreeMap<String, Member>,
    /// Classic: the generation whose assignment the leader delivered (`== epoch` once synced);
    /// consumer: the epoch of `target`.
    pub assignment_epoch: i32,
    /// Consumer: the target assignment computed at `assignment_epoch`.
    pub target: BTreeMap<String, Partitions>,
    /// Consumer: the partition counts of the subscribed topics at `assignment_epoch`.
    pub subscribed_partitions: BTreeMap<String, u32>,
}

impl Membership {
    /// A classic group whose generation has no assignment yet (CompletingRebalance).
    pub fn awaiting_assignment(&self) -> bool {
        self.kind == Some(GroupKind::Classic) && self.assignment_epoch < self.epoch
    }

    /// The member holding static `instance`, if any.
    pub fn member_of_instance(&self, instance: &str) -> Option<&Member> {
        self.members.values().find(|member| member.instance_id.as_deref() == Some(instance))
    }

    /// Checks the membership invariants: members keyed by their ids, instance ids unique, and
    /// no partition owned by two members (either protocol).
    pub fn check(&self) -> Result<(), String> {
        self.check_with(false)
    }

    /// [`Membership::check`], with the ownership rule off when `two_owners_allowed` (the planted
    /// bug `assignment-two-owners` only: a record that breaks it must reach the members, for
    /// the checkers to catch).
    pub fn check_with(&self, two_owners_allowed: bool) -> Result<(), String> {
        let mut instances = BTreeMap::new();
        let mut owners: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
        for (id, member) in &self.members {
            if *id != member.member_id {
                return Err(format!("member keyed {id:?} has id {:?}", member.member_id));
            }
            if let Some(instance) = &member.instance_id {
                if let Some(other) = instances.insert(instance, id) {
                    return Err(format!("instance {instance:?} held by {other:?} and {id:?}"));
                }
            }
            // Classic: `assigned` is decoded from the leader's assignment of this generation.
            for partition in member.owned().filter(|_| !two_owners_allowed) {
                if let Some(other) = owners.insert(partition, id) {
                    return Err(format!("{}/{} owned by {other:?} and {id:?}", partition.0, partition.1));
                }
            }
        }
        if self.members.len() > MEMBERS_PER_GROUP_MAX {
            return Err(format!("{} members, at most {MEMBERS_PER_GROUP_MAX}", self.members.len()));
        }
        if self.kind.is_none() && !self.members.is_empty() {
            return Err("members in a group of no kind".into());
        }
        Ok(())
    }
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub metadata: String,
    /// The raft index of the commit that set it.
    pub commit_index: u64,
}

/// One group: membership and committed offsets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Group {
    pub id: String,
    pub membership: Membership,
    /// The index of the last group record applied to this group (0: none).
    pub record_index: u64,
    pub offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

impl Group {
    fn new(id: &str) -> Group {
        Group { id: id.to_string(), ..Group::default() }
    }

    /// A close upper estimate of the group's encoded bytes (for [`TABLE_BYTES_MAX`]).
    pub fn bytes_estimate(&self) -> usize {
        let members: usize = self
            .membership
            .members
            .values()
            .map(|member| {
                64 + member.member_id.len()
                    + member.instance_id.as_ref().map_or(0, String::len)
                    + member.client_id.len()
                    + member.subscribed.iter().map(|topic| topic.len() + 4).sum::<usize>()
                    + member.subscribed_regex.as_ref().map_or(0, String::len)
                    + member.protocols.iter().map(|protocol| protocol.name.len() + protocol.metadata.len() + 8).sum::<usize>()
                    + member.assignment.len()
                    + member.owned().map(|(topic, _)| topic.len() + 8).sum::<usize>()
            })
            .sum();
        let target: usize = self
            .membership
            .target
            .iter()
            .map(|(id, partitions)| id.len() + partitions.iter().map(|(topic, _)| topic.len() + 8).sum::<usize>())
            .sum();
        let offsets: usize = self.offsets.iter().map(|((topic, _), committed)| topic.len() + committed.metadata.len() + 32).sum();
        64 + self.id.len()
            + self.membership.protocol_type.len()
            + self.membership.protocol_name.len()
            + self.membership.leader.len()
            + members
            + target
            + offsets
    }

    /// The topics the group is subscribed to, as Kafka's OffsetDelete reads them: every
    /// member's subscribed topics (consumer protocol; with the topics its regex matched when the
    /// target was last computed: `subscribed_partitions`), the topics of a classic consumer-protocol
    /// member's Subscription in the group's chosen protocol, and the topic of every partition a
    /// member owns. Metadata that does not decode as a Subscription adds nothing (Kafka then
    /// knows no subscription either); owned partitions still count.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        let membership = &self.membership;
        let mut topics: BTreeSet<String> = membership.subscribed_partitions.keys().cloned().collect();
        for member in membership.members.values() {
            topics.extend(member.subscribed.iter().cloned());
            topics.extend(member.owned().map(|(topic, _)| topic.clone()));
            if membership.kind == Some(GroupKind::Classic) && membership.protocol_type == CONSUMER_PROTOCOL_TYPE {
                let chosen = member.protocols.iter().find(|protocol| protocol.name == membership.protocol_name);
                if let Some(subscription) = chosen.and_then(|protocol| Subscription::decode(&protocol.metadata).ok()) {
                    topics.extend(subscription.topics);
                }
            }
        }
        topics
    }
}

/// What applying one record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Nothing changed: the reason (a definite error for the proposer).
    Refused(GroupError),
    /// A membership record or snapshot computed from a state that changed before it applied:
    /// nothing changed; the proposer may compute it again.
    Stale,
    /// Bytes that are no record: nothing changed.
    Undecodable(String),
}

/// One coordinator partition's committed table.
#[derive(Clone, Debug, Default)]
pub struct GroupTable {
    groups: BTreeMap<String, Group>,
    applied_index: u64,
    /// The index of the last coordinator record applied (a snapshot applies only if none came
    /// after its `as_of_index`).
    record_index_last: u64,
    /// The index of the last snapshot applied (0: none): retention keeps it and what follows.
    snapshot_index: u64,
    /// Bytes of records applied since the last snapshot.
    bytes_since_snapshot: u64,
    bytes: usize,
    /// Index → outcome of recent records, for their proposers.
    outcomes: BTreeMap<u64, Outcome>,
    /// Planted bug `assignment-two-owners` (always false outside planted runs, and equal on
    /// every replica of one run): records that give one partition two owners apply.
    planted_two_owners: bool,
}

impl GroupTable {
    pub fn new() -> GroupTable {
        GroupTable::default()
    }

    /// A table of a node running the planted bug `assignment-two-owners`
    /// (`crate::planted::Planted::assignment_two_owners`; false otherwise).
    pub fn with_planted_two_owners(planted_two_owners: bool) -> GroupTable {
        GroupTable { planted_two_owners, ..GroupTable::default() }
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> &BTreeMap<String, Group> {
        &self.groups
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn record_index_last(&self) -> u64 {
        self.record_index_last
    }

    /// Retention may delete segments wholly below this index: the last applied snapshot (0:
    /// none yet, keep everything).
    pub fn retention_bound(&self) -> u64 {
        self.snapshot_index
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether enough was written since the last snapshot to write another: `bytes_min` of
    /// records and at least twice the table's size (so snapshots cost at most half of what the
    /// log writes).
    pub fn snapshot_due(&self, bytes_min: u64) -> bool {
        self.bytes_since_snapshot >= bytes_min.max(2 * self.bytes as u64)
    }

    /// The outcome of the record applied at `index`, while it is remembered.
    pub fn outcome(&self, index: u64) -> Option<&Outcome> {
        self.outcomes.get(&index)
    }

    /// A snapshot record of the whole table as it is now.
    pub fn snapshot(&self) -> Record {
        Record::Snapshot { as_of_index: self.record_index_last, groups: self.groups.values().cloned().collect() }
    }

    /// The log was replaced below `index` by a raft snapshot (a follower behind retention): the
    /// table is unknown until the next snapshot record, which the log holds (retention never
    /// deletes above the last one).
    pub fn restore(&mut self, index: u64) {
        assert!(index >= self.applied_index, "restore at {index} below the applied index {}", self.applied_index);
        *self = GroupTable { applied_index: index, planted_two_owners: self.planted_two_owners, ..GroupTable::default() };
    }

    /// Applies a non-record entry (a raft no-op or configuration change) at `index`.
    pub fn skip(&mut self, index: u64) {
        self.advance(index);
    }

    fn advance(&mut self, index: u64) {
        assert!(self.applied_index == 0 || index == self.applied_index + 1, "apply of index {index} after {}", self.applied_index);
        self.applied_index = index;
    }

    /// Applies the record at `index`.
    pub fn apply(&mut self, index: u64, payload: &[u8]) -> Outcome {
        self.advance(index);
        let outcome = match Record::decode(payload) {
            Err(error) => Outcome::Undecodable(error.to_string()),
            Ok(record) => {
                let snapshot_as_of = match &record {
                    Record::Snapshot { as_of_index, .. } => Some(*as_of_index),
                    _ => None,
                };
                let barrier = record == Record::Barrier;
                let outcome = self.apply_record(index, record);
                match snapshot_as_of {
                    // A barrier changes nothing, for snapshots either.
                    None if barrier => {}
                    // A snapshot is no record for the next snapshot's as-of rule: it changed
                    // nothing a later snapshot could miss.
                    None => {
                        self.record_index_last = index;
                        self.bytes_since_snapshot += payload.len() as u64;
                    }
                    // The table now reflects the records up to the snapshot's as-of index, on
                    // every replica: one that replays from the snapshot itself must refuse an
                    // older snapshot after it exactly as one that replayed everything does.
                    Some(as_of_index) if outcome == Outcome::Applied => {
                        self.record_index_last = self.record_index_last.max(as_of_index);
                        self.snapshot_index = index;
                        self.bytes_since_snapshot = 0;
                    }
                    Some(_) => {}
                }
                outcome
            }
        };
        self.outcomes.insert(index, outcome.clone());
        if self.outcomes.len() > OUTCOMES_KEPT {
            self.outcomes.pop_first();
        }
        debug_assert_eq!(self.bytes, self.groups.values().map(Group::bytes_estimate).sum::<usize>(), "table byte count drifted");
        assert!(self.groups.len() <= super::GROUPS_PER_PARTITION_MAX, "{} groups", self.groups.len());
        outcome
    }

    fn apply_record(&mut self, index: u64, record: Record) -> Outcome {
        match record {
            Record::Barrier => Outcome::Applied,
            Record::Group { group, base_index, membership } => self.apply_membership(index, group, base_index, membership),
            // Native rules at apply: they refuse no commit that another set of rules took.
            Record::Commit(commit) => match self.validate_commit(&commit, CommitRules::Native) {
                Err(error) => Outcome::Refused(error),
                Ok(()) => self.update_group(&commit.group, |group| {
                    for ((topic, partition), offset, metadata) in &commit.offsets {
                        group.offsets.insert(
                            (topic.clone(), *partition),
                            CommittedOffset { offset: *offset, metadata: metadata.clone(), commit_index: index },
                        );
                    }
                    if group.offsets.len() > OFFSETS_PER_GROUP_MAX {
                        return Err(GroupError::GroupMaxSizeReached(format!(
                            "group {:?} would hold more than {OFFSETS_PER_GROUP_MAX} offsets",
                            group.id
                        )));
                    }
                    Ok(())
                }),
            },
            Record::Delete { group } => match self.groups.get(&group) {
                None => Outcome::Refused(GroupError::GroupIdNotFound(group)),
                Some(existing) if !existing.membership.members.is_empty() => Outcome::Refused(GroupError::NonEmptyGroup(group)),
                Some(existing) => {
                    self.bytes -= existing.bytes_estimate();
                    self.groups.remove(&group);
                    Outcome::Applied
                }
            },
            Record::DeleteOffsets { group, partitions } => match self.validate_offset_delete(&group, &partitions) {
                Err(error) => Outcome::Refused(error),
                Ok(()) => self.update_group(&group, |found| {
                    for partition in &partitions {
                        found.offsets.remove(partition);
                    }
                    Ok(())
                }),
            },
            Record::Snapshot { as_of_index, groups } => {
                if self.record_index_last > as_of_index {
                    return Outcome::Stale;
                }
                let table: BTreeMap<String, Group> = groups.into_iter().map(|group| (group.id.clone(), group)).collect();
                let bytes = table.values().map(Group::bytes_estimate).sum();
                if table.len() > GROUPS_PER_PARTITION_MAX || bytes > TABLE_BYTES_MAX {
                    return Outcome::Refused(GroupError::GroupMaxSizeReached("a snapshot above the table's limits".into()));
                }
                if let Some((id, error)) =
                    table.iter().find_map(|(id, group)| group.membership.check_with(self.planted_two_owners).err().map(|error| (id, error)))
                {
                    return Outcome::Refused(GroupError::InvalidRequest(format!("snapshot of group {id:?}: {error}")));
                }
                self.groups = table;
                self.bytes = bytes;
                Outcome::Applied
            }
        }
    }

    fn apply_membership(&mut self, index: u64, group: String, base_index: u64, membership: Membership) -> Outcome {
        let current = self.groups.get(&group).map_or(0, |existing| existing.record_index);
        if current != base_index {
            return Outcome::Stale;
        }
        if let Err(error) = membership.check_with(self.planted_two_owners) {
            return Outcome::Refused(GroupError::InvalidRequest(format!("group {group:?}: {error}")));
        }
        self.update_group(&group, |existing| {
            existing.membership = membership;
            existing.record_index = index;
            Ok(())
        })
    }

    /// Runs `change` on a copy of `id`'s group (a fresh one if unknown) and keeps it only if
    /// every table limit still holds.
    fn update_group(&mut self, id: &str, change: impl FnOnce(&mut Group) -> Result<(), GroupError>) -> Outcome {
        let existing = self.groups.get(id);
        if existing.is_none() && self.groups.len() >= GROUPS_PER_PARTITION_MAX {
            return Outcome::Refused(GroupError::GroupMaxSizeReached(format!("this coordinator holds {GROUPS_PER_PARTITION_MAX} groups")));
        }
        let bytes_before = existing.map_or(0, Group::bytes_estimate);
        let mut group = existing.cloned().unwrap_or_else(|| Group::new(id));
        if let Err(error) = change(&mut group) {
            return Outcome::Refused(error);
        }
        let bytes_after = group.bytes_estimate();
        if self.bytes - bytes_before + bytes_after > TABLE_BYTES_MAX {
            return Outcome::Refused(GroupError::GroupMaxSizeReached(format!(
                "this coordinator's table would exceed {TABLE_BYTES_MAX} bytes"
            )));
        }
        self.bytes = self.bytes - bytes_before + bytes_after;
        self.groups.insert(id.to_string(), group);
        Outcome::Applied
    }

    /// Whether `group`'s offsets of `partitions` may be removed now (Kafka's OffsetDelete): the
    /// group exists, is not a classic group of another protocol type with members (whose
    /// subscriptions are opaque: NON_EMPTY_GROUP, as Kafka), and is subscribed to none of their
    /// topics. The coordinator checks it before proposing; `apply` checks it again at the
    /// record's index, which is the authority.
    pub fn validate_offset_delete(&self, group: &str, partitions: &Partitions) -> Result<(), GroupError> {
        let Some(found) = self.groups.get(group) else { return Err(GroupError::GroupIdNotFound(group.to_string())) };
        let membership = &found.membership;
        if !membership.members.is_empty() && membership.protocol_type != CONSUMER_PROTOCOL_TYPE {
            return Err(GroupError::NonEmptyGroup(group.to_string()));
        }
        let subscribed = found.subscribed_topics();
        match partitions.iter().find(|(topic, _)| subscribed.contains(topic)) {
            Some((topic, _)) => Err(GroupError::GroupSubscribedToTopic { group: group.to_string(), topic: topic.clone() }),
            None => Ok(()),
        }
    }

    /// Whether `commit` may apply to the group as it is now (C5). The coordinator checks it
    /// before proposing; `apply` checks it again at the commit's index, which is the authority.
    pub fn validate_commit(&self, commit: &OffsetCommit, rules: CommitRules) -> Result<(), GroupError> {
        for ((topic, partition), offset, metadata) in &commit.offsets {
            if *offset < 0 {
                return Err(GroupError::InvalidCommitOffset(format!("offset {offset} for {topic}/{partition} is negative")));
            }
            if metadata.len() > COMMIT_METADATA_BYTES_MAX {
                return Err(GroupError::OffsetMetadataTooLarge { bytes: metadata.len() });
            }
        }
        let group = self.groups.get(&commit.group);
        let kafka = rules != CommitRules::Native;
        // Kafka: a commit at a generation or member epoch to a group that does not exist is
        // GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION below (kept for older clients).
        if group.is_none() && commit.epoch >= 0 && kafka {
            return Err(if rules == CommitRules::KafkaV9 {
                GroupError::GroupIdNotFound(commit.group.clone())
            } else {
                GroupError::IllegalGeneration { group: commit.group.clone(), current: -1, got: commit.epoch }
            });
        }
        let membership = group.map(|group| &group.membership);
        let has_members = membership.is_some_and(|membership| !membership.members.is_empty());
        // A negative generation or member epoch is a commit from outside group management (an
        // assign()-only consumer): taken while the group has no members, whatever member id it
        // names, as Kafka's `validateOffsetCommit` does. Once the group has members, a commit
        // naming one is judged below as that member's: at epoch -1 it is refused for its
        // generation (IllegalGeneration, StaleMemberEpoch), as Kafka refuses it.
        if commit.epoch < 0 && !commit.member_id.is_empty() && !has_members {
            return Ok(());
        }
        if commit.member_id.is_empty() {
            if kafka {
                // Kafka's `ClassicGroup.validateMember`: an instance id held by a member other
                // than the one named ("" is never one) fences the commit.
                if let Some(holder) = membership.and_then(|membership| static_holder(membership, commit.instance_id.as_deref())) {
                    return Err(GroupError::FencedInstanceId { instance: commit.instance_id.clone().unwrap_or_default(), member: holder });
                }
            }
            return match membership {
                Some(membership) if !membership.members.is_empty() && commit.admin => Err(GroupError::NonEmptyGroup(commit.group.clone())),
                Some(membership) if !membership.members.is_empty() => {
                    Err(GroupError::UnknownMemberId { group: commit.group.clone(), member: String::new() })
                }
                // Kafka: the group exists (checked above) and has no member "".
                _ if commit.epoch >= 0 && kafka => Err(GroupError::UnknownMemberId { group: commit.group.clone(), member: String::new() }),
                _ if commit.epoch >= 0 => {
                    Err(GroupError::IllegalGeneration { group: commit.group.clone(), current: -1, got: commit.epoch })
                }
                _ => Ok(()),
            };
        }
        let unknown = || GroupError::UnknownMemberId { group: commit.group.clone(), member: commit.member_id.clone() };
        let membership = membership.ok_or_else(unknown)?;
        let member = membership.members.get(&commit.member_id).ok_or_else(unknown)?;
        if let (Some(instance), Some(held)) = (&commit.instance_id, &member.instance_id) {
            if instance != held {
                return Err(GroupError::FencedInstanceId { instance: instance.clone(), member: member.member_id.clone() });
            }
        }
        match membership.kind {
            Some(GroupKind::Classic) => {
                if commit.epoch != membership.epoch {
                    return Err(GroupError::IllegalGeneration {
                        group: commit.group.clone(),
                        current: membership.epoch,
                        got: commit.epoch,
                    });
                }
                if membership.awaiting_assignment() {
                    return Err(GroupError::RebalanceInProgress(commit.group.clone()));
                }
                Ok(())
            }
            // Kafka's `ConsumerGroup.validateOffsetCommit`: the version first, then the epoch,
            // any other than the member's being stale.
            Some(GroupKind::Consumer) if rules == CommitRules::KafkaBelowV9 => {
                Err(GroupError::UnsupportedCommitVersion { member: commit.member_id.clone() })
            }
            Some(GroupKind::Consumer) => match commit.epoch.cmp(&member.member_epoch) {
                std::cmp::Ordering::Equal => Ok(()),
                std::cmp::Ordering::Greater if !kafka => {
                    Err(GroupError::FencedMemberEpoch { current: member.member_epoch, got: commit.epoch })
                }
                _ => Err(GroupError::StaleMemberEpoch { current: member.member_epoch, got: commit.epoch }),
            },
            None => Err(unknown()),
        }
    }
}

/// The member of a classic group that holds `instance` as its static instance id, if any.
fn static_holder(membership: &Membership, instance: Option<&str>) -> Option<String> {
    let instance = instance?;
    if membership.kind != Some(GroupKind::Classic) {
        return None;
    }
    let holder = membership.member_of_instance(instance)?;
    assert!(!holder.member_id.is_empty(), "every member has an id");
    Some(holder.member_id.clone())
}

#[cfg(test)]
mod tests;
