//! The records of `__consumer_offsets` (`proto/groups.proto`) and their codec.
//!
//! A record is what the coordinator proposes and every replica applies
//! ([`super::table::GroupTable::apply`]). Decoding never panics: bytes that do not decode, or
//! decode to no known record, are refused by `apply` and change nothing but the applied index.
//! The encoding is canonical for the state it carries (members, targets and offsets in
//! `BTreeMap` order), so equal states encode to equal bytes.

use std::collections::BTreeMap;

use protobuf::{Message, RepeatedField};

use super::table::{CommittedOffset, Group, GroupKind, Member, Membership, Protocol};
use super::{Partitions, TopicPartition};
use crate::proto::groups as pb;

/// One record of a coordinator partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// `group`'s whole membership after a decision, computed from the state whose last group
    /// record was at `base_index` (0: none).
    Group { group: String, base_index: u64, membership: Membership },
    /// Offsets committed by a member (or, with no member, by a simple consumer or an operator).
    Commit(OffsetCommit),
    /// Removes an empty group and its offsets.
    Delete { group: String },
    /// Removes some of a group's committed offsets (Kafka's OffsetDelete): refused, removing
    /// nothing, while the group is subscribed to one of their topics.
    DeleteOffsets { group: String, partitions: Partitions },
    /// The whole table as of the coordinator record at `as_of_index`.
    Snapshot { as_of_index: u64, groups: Vec<Group> },
    /// Changes nothing; written before a read so a deposed coordinator cannot answer it.
    Barrier,
}

/// An offset commit: every offset or none applies.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OffsetCommit {
    pub group: String,
    /// `""`: no member (epoch -1).
    pub member_id: String,
    /// The classic generation or the member epoch the member committed with; -1 with no member.
    pub epoch: i32,
    pub instance_id: Option<String>,
    /// (partition, offset, metadata), in request order.
    pub offsets: Vec<(TopicPartition, i64, String)>,
    /// An operator's reset (`odradek group reset-offsets`): refused while the group has members.
    pub admin: bool,
}

/// Why bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("group record does not decode: {0}")]
    Decode(String),
    #[error("group record holds no known record (written by a newer version?)")]
    RecordMissing,
    #[error("group record has an unknown group kind {0}")]
    KindUnknown(u32),
}

impl Record {
    /// The group a record is about (`None` for a snapshot).
    pub fn group(&self) -> Option<&str> {
        match self {
            Record::Group { group, .. } | Record::Delete { group } | Record::DeleteOffsets { group, .. } => Some(group),
            Record::Commit(commit) => Some(&commit.group),
            Record::Snapshot { .. } | Record::Barrier => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut message = pb::Record::new();
        match self {
            Record::Group { group, base_index, membership } => message.set_group(encode_state(group, *base_index, membership)),
            Record::Commit(commit) => {
                let mut out = pb::OffsetCommit::new();
                out.set_group(commit.group.clone());
                out.set_member_id(commit.member_id.clone());
                out.set_epoch(commit.epoch);
                out.set_instance_id(commit.instance_id.clone().unwrap_or_default());
                out.set_offsets(
                    commit
                        .offsets
                        .iter()
                        .map(|((topic, partition), offset, metadata)| offset_entry(topic, *partition, *offset, metadata))
                        .collect(),
                );
                out.set_admin(commit.admin);
                message.set_commit(out);
            }
            Record::Delete { group } => {
                let mut delete = pb::DeleteGroup::new();
                delete.set_group(group.clone());
                message.set_delete(delete);
            }
            Record::DeleteOffsets { group, partitions } => {
                let mut delete = pb::DeleteOffsets::new();
                delete.set_group(group.clone());
                delete.set_partitions(encode_partitions(partitions));
                message.set_delete_offsets(delete);
            }
            Record::Snapshot { as_of_index, groups } => {
                let mut snapshot = pb::Snapshot::new();
                snapshot.set_as_of_index(*as_of_index);
                for group in groups {
                    let mut entry = pb::SnapshotGroup::new();
                    entry.set_state(encode_state(&group.id, 0, &group.membership));
                    for ((topic, partition), committed) in &group.offsets {
                        entry.mut_offsets().push(offset_entry(topic, *partition, committed.offset, &committed.metadata));
                        entry.mut_commit_indexes().push(committed.commit_index);
                    }
                    entry.set_record_index(group.record_index);
                    snapshot.mut_groups().push(entry);
                }
                message.set_snapshot(snapshot);
            }
            Record::Barrier => message.set_barrier(pb::Barrier::new()),
        }
        message.write_to_bytes().expect("a group record always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        use pb::Record_oneof_record as Oneof;
        let message = pb::Record::parse_from_bytes(bytes).map_err(|error| RecordError::Decode(error.to_string()))?;
        Ok(match message.record {
            None => return Err(RecordError::RecordMissing),
            Some(Oneof::group(state)) => {
                let (group, base_index, membership) = decode_state(&state)?;
                Record::Group { group, base_index, membership }
            }
            Some(Oneof::commit(commit)) => Record::Commit(OffsetCommit {
                group: commit.get_group().to_string(),
                member_id: commit.get_member_id().to_string(),
                epoch: commit.get_epoch(),
                instance_id: non_empty(commit.get_instance_id()),
                offsets: commit
                    .get_offsets()
                    .iter()
                    .map(|entry| {
                        ((entry.get_topic().to_string(), entry.get_partition()), entry.get_offset(), entry.get_metadata().to_string())
                    })
                    .collect(),
                admin: commit.get_admin(),
            }),
            Some(Oneof::delete(delete)) => Record::Delete { group: delete.get_group().to_string() },
            Some(Oneof::delete_offsets(delete)) => {
                Record::DeleteOffsets { group: delete.get_group().to_string(), partitions: decode_partitions(delete.get_partitions()) }
            }
            Some(Oneof::snapshot(snapshot)) => {
                let mut groups = Vec::with_capacity(snapshot.get_groups().len());
                for entry in snapshot.get_groups() {
                    let (id, _, membership) = decode_state(entry.get_state())?;
                    let indexes = entry.get_commit_indexes();
                    let offsets = entry
                        .get_offsets()
                        .iter()
                        .enumerate()
                        .map(|(position, offset)| {
                            let committed = CommittedOffset {
                                offset: offset.get_offset(),
                                metadata: offset.get_metadata().to_string(),
                                commit_index: indexes.get(position).copied().unwrap_or(0),
                            };
                            ((offset.get_topic().to_string(), offset.get_partition()), committed)
                        })
                        .collect();
                    groups.push(Group { id, membership, record_index: entry.get_record_index(), offsets });
                }
                Record::Snapshot { as_of_index: snapshot.get_as_of_index(), groups }
            }
            Some(Oneof::barrier(_)) => Record::Barrier,
        })
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn offset_entry(topic: &str, partition: u32, offset: i64, metadata: &str) -> pb::OffsetEntry {
    let mut entry = pb::OffsetEntry::new();
    entry.set_topic(topic.to_string());
    entry.set_partition(partition);
    entry.set_offset(offset);
    entry.set_metadata(metadata.to_string());
    entry
}

/// Partitions grouped by topic, topics and partitions ascending.
pub fn encode_partitions(partitions: &Partitions) -> RepeatedField<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut entry = pb::TopicPartitions::new();
            entry.set_topic(topic.to_string());
            entry.set_partitions(partitions);
            entry
        })
        .collect()
}

pub fn decode_partitions(entries: &[pb::TopicPartitions]) -> Partitions {
    entries
        .iter()
        .flat_map(|entry| entry.get_partitions().iter().map(move |&partition| (entry.get_topic().to_string(), partition)))
        .collect()
}

fn kind_code(kind: Option<GroupKind>) -> u32 {
    match kind {
        None => 0,
        Some(GroupKind::Classic) => 1,
        Some(GroupKind::Consumer) => 2,
    }
}

fn encode_state(group: &str, base_index: u64, membership: &Membership) -> pb::GroupState {
    let mut state = pb::GroupState::new();
    state.set_group(group.to_string());
    state.set_base_index(base_index);
    state.set_kind(kind_code(membership.kind));
    state.set_epoch(membership.epoch);
    state.set_protocol_type(membership.protocol_type.clone());
    state.set_protocol_name(membership.protocol_name.clone());
    state.set_leader(membership.leader.clone());
    for member in membership.members.values() {
        let mut out = pb::Member::new();
        out.set_member_id(member.member_id.clone());
        out.set_instance_id(member.instance_id.clone().unwrap_or_default());
        out.set_client_id(member.client_id.clone());
        out.set_session_timeout_ms(member.session_timeout_ms);
        out.set_rebalance_timeout_ms(member.rebalance_timeout_ms);
        out.set_subscribed_topics(member.subscribed.clone().into());
        out.set_subscribed_regex(member.subscribed_regex.clone().unwrap_or_default());
        for protocol in &member.protocols {
            let mut entry = pb::Protocol::new();
            entry.set_name(protocol.name.clone());
            entry.set_metadata(protocol.metadata.clone());
            out.mut_protocols().push(entry);
        }
        out.set_assignment(member.assignment.clone());
        out.set_member_epoch(member.member_epoch);
        out.set_member_epoch_previous(member.member_epoch_previous);
        out.set_assigned(encode_partitions(&member.assigned));
        out.set_revoking(encode_partitions(&member.revoking));
        out.set_left(member.left);
        state.mut_members().push(out);
    }
    state.set_assignment_epoch(membership.assignment_epoch);
    for (member_id, partitions) in &membership.target {
        let mut target = pb::MemberTarget::new();
        target.set_member_id(member_id.clone());
        target.set_partitions(encode_partitions(partitions));
        state.mut_target().push(target);
    }
    for (topic, &partitions) in &membership.subscribed_partitions {
        let mut count = pb::PartitionCount::new();
        count.set_topic(topic.clone());
        count.set_partitions(partitions);
        state.mut_subscribed_partitions().push(count);
    }
    state
}

fn decode_state(state: &pb::GroupState) -> Result<(String, u64, Membership), RecordError> {
    let kind = match state.get_kind() {
        0 => None,
        1 => Some(GroupKind::Classic),
        2 => Some(GroupKind::Consumer),
        other => return Err(RecordError::KindUnknown(other)),
    };
    let members = state
        .get_members()
        .iter()
        .map(|member| {
            let decoded = Member {
                member_id: member.get_member_id().to_string(),
                instance_id: non_empty(member.get_instance_id()),
                client_id: member.get_client_id().to_string(),
                session_timeout_ms: member.get_session_timeout_ms(),
                rebalance_timeout_ms: member.get_rebalance_timeout_ms(),
                subscribed: member.get_subscribed_topics().to_vec(),
                subscribed_regex: non_empty(member.get_subscribed_regex()),
                protocols: member
                    .get_protocols()
                    .iter()
                    .map(|protocol| Protocol { name: protocol.get_name().to_string(), metadata: protocol.get_metadata().to_vec() })
                    .collect(),
                assignment: member.get_assignment().to_vec(),
                member_epoch: member.get_member_epoch(),
                member_epoch_previous: member.get_member_epoch_previous(),
                assigned: decode_partitions(member.get_assigned()),
                revoking: decode_partitions(member.get_revoking()),
                left: member.get_left(),
            };
            (decoded.member_id.clone(), decoded)
        })
        .collect();
    let membership = Membership {
        kind,
        epoch: state.get_epoch(),
        protocol_type: state.get_protocol_type().to_string(),
        protocol_name: state.get_protocol_name().to_string(),
        leader: state.get_leader().to_string(),
        members,
        assignment_epoch: state.get_assignment_epoch(),
        target: state
            .get_target()
            .iter()
            .map(|target| (target.get_member_id().to_string(), decode_partitions(target.get_partitions())))
            .collect(),
        subscribed_partitions: state
            .get_subscribed_partitions()
            .iter()
            .map(|count| (count.get_topic().to_string(), count.get_partitions()))
            .collect(),
    };
    Ok((state.get_group().to_string(), state.get_base_index(), membership))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(list: &[(&str, u32)]) -> Partitions {
        list.iter().map(|(topic, partition)| (topic.to_string(), *partition)).collect()
    }

    fn sample_membership() -> Membership {
        let mut members = BTreeMap::new();
        members.insert(
            "m-1".to_string(),
            Member {
                member_id: "m-1".into(),
                instance_id: Some("host-a".into()),
                client_id: "app".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                subscribed: vec!["orders".into()],
                subscribed_regex: Some("orders-.*".into()),
                protocols: vec![Protocol { name: "range".into(), metadata: vec![0, 1, 2] }],
                assignment: vec![9, 9],
                member_epoch: 4,
                member_epoch_previous: 3,
                assigned: partitions(&[("orders", 0), ("orders", 2)]),
                revoking: partitions(&[("orders", 1)]),
                left: false,
            },
        );
        Membership {
            kind: Some(GroupKind::Consumer),
            epoch: 5,
            protocol_type: "consumer".into(),
            protocol_name: "uniform".into(),
            leader: String::new(),
            members,
            assignment_epoch: 5,
            target: [("m-1".to_string(), partitions(&[("orders", 0), ("orders", 2)]))].into_iter().collect(),
            subscribed_partitions: [("orders".to_string(), 3)].into_iter().collect(),
        }
    }

    #[test]
    fn every_record_round_trips() {
        let membership = sample_membership();
        let mut offsets = BTreeMap::new();
        offsets.insert(("orders".to_string(), 1), CommittedOffset { offset: 42, metadata: "m".into(), commit_index: 17 });
        let records = vec![
            Record::Group { group: "g".into(), base_index: 12, membership: membership.clone() },
            Record::Commit(OffsetCommit {
                group: "g".into(),
                member_id: "m-1".into(),
                epoch: 4,
                instance_id: Some("host-a".into()),
                offsets: vec![(("orders".into(), 1), 42, "meta".into()), (("orders".into(), 0), 7, String::new())],
                admin: false,
            }),
            Record::Delete { group: "g".into() },
            Record::Barrier,
            Record::Snapshot { as_of_index: 30, groups: vec![Group { id: "g".into(), membership, record_index: 12, offsets }] },
        ];
        for record in records {
            let bytes = record.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), record);
            assert_eq!(Record::decode(&bytes).unwrap().encode(), bytes, "canonical encoding");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(Record::decode(&[0xff, 0xff, 0xff]), Err(RecordError::Decode(_))));
        assert_eq!(Record::decode(&[]), Err(RecordError::RecordMissing));
        let mut state = pb::GroupState::new();
        state.set_kind(9);
        let mut message = pb::Record::new();
        message.set_group(state);
        assert_eq!(Record::decode(&message.write_to_bytes().unwrap()), Err(RecordError::KindUnknown(9)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Record::decode(&bytes);
        }
    }
}
