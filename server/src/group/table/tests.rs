use proptest::prelude::*;

use odradek_client::wire::proto::ErrorCode;

use super::*;
use crate::group::record::{OffsetCommit, Record};

fn member(id: &str, epoch: i32) -> Member {
    Member { member_id: id.into(), member_epoch: epoch, session_timeout_ms: 10_000, ..Member::default() }
}

fn membership(kind: GroupKind, epoch: i32, members: &[(&str, i32)]) -> Membership {
    Membership {
        kind: Some(kind),
        epoch,
        assignment_epoch: epoch,
        members: members.iter().map(|(id, member_epoch)| (id.to_string(), member(id, *member_epoch))).collect(),
        ..Membership::default()
    }
}

fn commit(group: &str, member_id: &str, epoch: i32, offset: i64) -> Record {
    Record::Commit(OffsetCommit {
        group: group.into(),
        member_id: member_id.into(),
        epoch,
        offsets: vec![(("t".into(), 0), offset, String::new())],
        ..OffsetCommit::default()
    })
}

fn apply(table: &mut GroupTable, record: &Record) -> Outcome {
    let index = table.applied_index() + 1;
    table.apply(index, &record.encode())
}

fn committed(table: &GroupTable, group: &str) -> Option<i64> {
    table.group(group)?.offsets.get(&("t".to_string(), 0)).map(|c| c.offset)
}

#[test]
fn classic_commits_need_the_current_generation_and_its_assignment() {
    let mut table = GroupTable::new();
    let mut generation = membership(GroupKind::Classic, 1, &[("a", 0)]);
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: generation.clone() }), Outcome::Applied);
    assert_eq!(apply(&mut table, &commit("g", "a", 1, 5)), Outcome::Applied);
    // Generation 2 is written and awaits its assignment: nobody commits (CompletingRebalance).
    generation.epoch = 2;
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 1, membership: generation.clone() }), Outcome::Applied);
    assert!(matches!(apply(&mut table, &commit("g", "a", 2, 6)), Outcome::Refused(GroupError::RebalanceInProgress(_))));
    // C5: the older generation is refused, definitely, and the offset stays.
    assert!(matches!(
        apply(&mut table, &commit("g", "a", 1, 7)),
        Outcome::Refused(GroupError::IllegalGeneration { current: 2, got: 1, .. })
    ));
    generation.assignment_epoch = 2;
    let base_index = table.group("g").unwrap().record_index;
    assert_eq!(base_index, 3);
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index, membership: generation }), Outcome::Applied);
    assert_eq!(apply(&mut table, &commit("g", "a", 2, 8)), Outcome::Applied);
    assert!(matches!(apply(&mut table, &commit("g", "b", 2, 9)), Outcome::Refused(GroupError::UnknownMemberId { .. })));
    assert_eq!(committed(&table, "g"), Some(8));
}

#[test]
fn consumer_commits_need_the_members_own_epoch() {
    let mut table = GroupTable::new();
    let group = membership(GroupKind::Consumer, 4, &[("a", 4), ("b", 3)]);
    apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: group });
    assert_eq!(apply(&mut table, &commit("g", "b", 3, 1)), Outcome::Applied);
    assert!(matches!(apply(&mut table, &commit("g", "a", 3, 2)), Outcome::Refused(GroupError::StaleMemberEpoch { current: 4, got: 3 })));
    assert!(matches!(apply(&mut table, &commit("g", "a", 5, 2)), Outcome::Refused(GroupError::FencedMemberEpoch { .. })));
    assert_eq!(committed(&table, "g"), Some(1));
}

#[test]
fn memberless_commits_only_for_empty_groups() {
    let mut table = GroupTable::new();
    assert_eq!(apply(&mut table, &commit("simple", "", -1, 3)), Outcome::Applied, "a standalone consumer's group");
    assert_eq!(committed(&table, "simple"), Some(3));
    apply(&mut table, &Record::Group { group: "busy".into(), base_index: 0, membership: membership(GroupKind::Consumer, 1, &[("a", 1)]) });
    assert!(matches!(apply(&mut table, &commit("busy", "", -1, 3)), Outcome::Refused(GroupError::UnknownMemberId { .. })));
    let Record::Commit(mut reset) = commit("busy", "", -1, 0) else { unreachable!() };
    reset.admin = true;
    assert!(matches!(apply(&mut table, &Record::Commit(reset)), Outcome::Refused(GroupError::NonEmptyGroup(_))));
    assert!(matches!(apply(&mut table, &commit("simple", "", -1, -1)), Outcome::Refused(GroupError::InvalidCommitOffset(_))));
    let Record::Commit(mut big) = commit("simple", "", -1, 4) else { unreachable!() };
    big.offsets[0].2 = "x".repeat(COMMIT_METADATA_BYTES_MAX + 1);
    assert!(matches!(apply(&mut table, &Record::Commit(big)), Outcome::Refused(GroupError::OffsetMetadataTooLarge { .. })));
    assert_eq!(committed(&table, "simple"), Some(3));
}

/// A commit at epoch -1 that names a member id (a Kafka consumer outside group management names
/// the id it generated): taken while the group has no members, as Kafka's
/// `validateOffsetCommit`; once it has members, judged as the named member's commit: unknown
/// member UNKNOWN_MEMBER_ID, a current member refused for its generation (ILLEGAL_GENERATION
/// classic, STALE_MEMBER_EPOCH consumer protocol), the offset unchanged.
#[test]
fn a_commit_at_epoch_minus_one_naming_a_member_is_judged_as_that_members() {
    let mut table = GroupTable::new();
    assert_eq!(apply(&mut table, &commit("g", "generated-id", -1, 3)), Outcome::Applied, "no group yet");
    assert_eq!(committed(&table, "g"), Some(3));
    let empty = Record::Group { group: "g".into(), base_index: 0, membership: membership(GroupKind::Classic, 2, &[]) };
    assert_eq!(apply(&mut table, &empty), Outcome::Applied);
    assert_eq!(apply(&mut table, &commit("g", "generated-id", -1, 4)), Outcome::Applied, "a group with no members");
    let base_index = table.group("g").unwrap().record_index;
    let one = Record::Group { group: "g".into(), base_index, membership: membership(GroupKind::Classic, 3, &[("a", 0)]) };
    assert_eq!(apply(&mut table, &one), Outcome::Applied);
    assert!(matches!(
        apply(&mut table, &commit("g", "a", -1, 5)),
        Outcome::Refused(GroupError::IllegalGeneration { current: 3, got: -1, .. })
    ));
    assert!(matches!(apply(&mut table, &commit("g", "generated-id", -1, 5)), Outcome::Refused(GroupError::UnknownMemberId { .. })));
    assert_eq!(committed(&table, "g"), Some(4));

    let consumer = Record::Group { group: "c".into(), base_index: 0, membership: membership(GroupKind::Consumer, 4, &[("a", 4)]) };
    assert_eq!(apply(&mut table, &consumer), Outcome::Applied);
    assert!(matches!(apply(&mut table, &commit("c", "a", -1, 6)), Outcome::Refused(GroupError::StaleMemberEpoch { current: 4, got: -1 })));
    assert!(matches!(apply(&mut table, &commit("c", "generated-id", -1, 6)), Outcome::Refused(GroupError::UnknownMemberId { .. })));
    assert!(matches!(apply(&mut table, &commit("c", "", -1, 6)), Outcome::Refused(GroupError::UnknownMemberId { .. })));
    assert_eq!(committed(&table, "c"), None);
}

#[test]
fn two_decisions_from_one_state_never_both_apply() {
    let mut table = GroupTable::new();
    let first = membership(GroupKind::Consumer, 1, &[("a", 1)]);
    let second = membership(GroupKind::Consumer, 1, &[("b", 1)]);
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: first.clone() }), Outcome::Applied);
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: second }), Outcome::Stale);
    assert_eq!(table.group("g").unwrap().membership, first);
}

#[test]
fn a_partition_owned_twice_is_refused() {
    let mut table = GroupTable::new();
    let mut broken = membership(GroupKind::Consumer, 1, &[("a", 1), ("b", 1)]);
    for member in broken.members.values_mut() {
        member.assigned.insert(("t".into(), 0));
    }
    assert!(matches!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: broken }), Outcome::Refused(_)));
    assert!(table.group("g").is_none());
}

#[test]
fn groups_with_members_are_not_deleted() {
    let mut table = GroupTable::new();
    apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: membership(GroupKind::Classic, 1, &[("a", 0)]) });
    assert!(matches!(apply(&mut table, &Record::Delete { group: "g".into() }), Outcome::Refused(GroupError::NonEmptyGroup(_))));
    assert!(matches!(apply(&mut table, &Record::Delete { group: "nope".into() }), Outcome::Refused(GroupError::GroupIdNotFound(_))));
    apply(&mut table, &commit("simple", "", -1, 1));
    assert_eq!(apply(&mut table, &Record::Delete { group: "simple".into() }), Outcome::Applied);
    assert!(table.group("simple").is_none());
    assert_eq!(table.bytes(), table.group("g").unwrap().bytes_estimate());
}

/// Kafka's OffsetDelete: a group's offsets of topics it is not subscribed to go; one naming a
/// subscribed topic (a consumer member's subscription, a classic consumer member's Subscription
/// in the chosen protocol, or an owned partition) is refused whole and removes nothing; an
/// unknown group, or a classic group of another protocol type with members, is refused; once
/// the members are gone every offset may go.
#[test]
fn offsets_are_deleted_only_for_topics_the_group_is_not_subscribed_to() {
    let mut table = GroupTable::new();
    let delete = |topics: &[&str]| Record::DeleteOffsets {
        group: "g".into(),
        partitions: topics.iter().map(|topic| (topic.to_string(), 0)).collect(),
    };
    assert!(matches!(apply(&mut table, &delete(&["t"])), Outcome::Refused(GroupError::GroupIdNotFound(_))));
    let mut consumers = membership(GroupKind::Consumer, 1, &[("a", 1)]);
    consumers.protocol_type = CONSUMER_PROTOCOL_TYPE.into();
    consumers.members.get_mut("a").unwrap().subscribed = vec!["t".into()];
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: consumers.clone() }), Outcome::Applied);
    for topic in ["t", "u", "v"] {
        let offsets = vec![((topic.to_string(), 0), 5, String::new())];
        let commit = OffsetCommit { group: "g".into(), member_id: "a".into(), epoch: 1, offsets, ..OffsetCommit::default() };
        assert_eq!(apply(&mut table, &Record::Commit(commit)), Outcome::Applied);
    }
    let offsets = |table: &GroupTable| table.group("g").unwrap().offsets.keys().map(|(topic, _)| topic.clone()).collect::<Vec<_>>();
    assert!(matches!(
        apply(&mut table, &delete(&["u", "t"])),
        Outcome::Refused(GroupError::GroupSubscribedToTopic { ref topic, .. }) if topic == "t"
    ));
    assert_eq!(offsets(&table), ["t", "u", "v"], "a refused delete removes nothing");
    assert_eq!(apply(&mut table, &delete(&["u", "w"])), Outcome::Applied, "a partition with nothing committed is no error");
    assert_eq!(offsets(&table), ["t", "v"]);

    // A classic consumer group: the chosen protocol's Subscription names the topics.
    let subscription = Subscription { version: 0, topics: vec!["v".into()], ..Subscription::default() };
    let mut classic = membership(GroupKind::Classic, 1, &[("a", 0)]);
    classic.protocol_type = CONSUMER_PROTOCOL_TYPE.into();
    classic.protocol_name = "range".into();
    classic.members.get_mut("a").unwrap().protocols = vec![Protocol { name: "range".into(), metadata: subscription.encode().unwrap() }];
    let base_index = table.group("g").unwrap().record_index;
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index, membership: classic.clone() }), Outcome::Applied);
    assert!(matches!(apply(&mut table, &delete(&["v"])), Outcome::Refused(GroupError::GroupSubscribedToTopic { .. })));
    assert_eq!(apply(&mut table, &delete(&["t"])), Outcome::Applied, "t is no longer subscribed");
    // Another protocol type's subscriptions are opaque: refused while it has members.
    let mut connect = classic.clone();
    connect.protocol_type = "connect".into();
    let base_index = table.group("g").unwrap().record_index;
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index, membership: connect }), Outcome::Applied);
    assert!(matches!(apply(&mut table, &delete(&["x"])), Outcome::Refused(GroupError::NonEmptyGroup(_))));
    // Empty: everything may go.
    let base_index = table.group("g").unwrap().record_index;
    let empty = Membership { epoch: 2, ..Membership::default() };
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index, membership: empty }), Outcome::Applied);
    assert_eq!(apply(&mut table, &delete(&["v"])), Outcome::Applied);
    assert!(offsets(&table).is_empty());
    let record = delete(&["t", "u"]);
    assert_eq!(Record::decode(&record.encode()), Ok(record), "the record round-trips");
}

#[test]
fn undecodable_entries_change_nothing_but_the_index() {
    let mut table = GroupTable::new();
    apply(&mut table, &commit("g", "", -1, 1));
    assert!(matches!(table.apply(2, &[0xff, 0x01]), Outcome::Undecodable(_)));
    table.skip(3);
    assert_eq!(table.applied_index(), 3);
    assert_eq!(committed(&table, "g"), Some(1));
}

#[test]
fn a_snapshot_applies_only_if_nothing_came_after_it() {
    let mut table = GroupTable::new();
    apply(&mut table, &commit("g", "", -1, 1));
    let snapshot = table.snapshot();
    apply(&mut table, &commit("g", "", -1, 2));
    assert_eq!(apply(&mut table, &snapshot), Outcome::Stale, "the snapshot would undo offset 2");
    assert_eq!(committed(&table, "g"), Some(2));
    assert_eq!(table.retention_bound(), 0);
    // A raft no-op in between is no record: the snapshot still applies.
    let snapshot = table.snapshot();
    table.skip(table.applied_index() + 1);
    assert_eq!(apply(&mut table, &snapshot), Outcome::Applied);
    assert_eq!(table.retention_bound(), table.applied_index());
}

/// One step of a random coordinator partition log.
#[derive(Clone, Debug)]
enum Step {
    Commit {
        group: u8,
        member: u8,
        epoch: i32,
        offset: i64,
    },
    Members {
        group: u8,
        kind: bool,
        members: Vec<u8>,
        epoch: i32,
        stale: bool,
    },
    Delete {
        group: u8,
    },
    DeleteOffsets {
        group: u8,
    },
    /// A snapshot computed now and written `delay` steps later (a coordinator whose snapshot
    /// raced other records).
    Snapshot {
        delay: u8,
    },
    Noop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, 0i32..4, 0i64..100).prop_map(|(group, member, epoch, offset)| Step::Commit { group, member, epoch, offset }),
        2 => (0u8..3, any::<bool>(), prop::collection::vec(0u8..4, 0..3), 0i32..4, any::<bool>())
            .prop_map(|(group, kind, members, epoch, stale)| Step::Members { group, kind, members, epoch, stale }),
        1 => (0u8..3).prop_map(|group| Step::Delete { group }),
        1 => (0u8..3).prop_map(|group| Step::DeleteOffsets { group }),
        1 => (0u8..3).prop_map(|delay| Step::Snapshot { delay }),
        1 => Just(Step::Noop),
    ]
}

/// Turns steps into log entries (None: a raft no-op), computed against the table as a
/// coordinator would (snapshots of the current table, membership records on its base index).
fn build_log(steps: &[Step]) -> Vec<Option<Vec<u8>>> {
    let mut table = GroupTable::new();
    let mut log = Vec::new();
    let mut delayed: Vec<(u8, Vec<u8>)> = Vec::new();
    for step in steps {
        let due = delayed.iter().position(|(delay, _)| *delay == 0);
        for (delay, _) in delayed.iter_mut() {
            *delay = delay.saturating_sub(1);
        }
        let entry = match step {
            _ if due.is_some() => Some(delayed.remove(due.expect("checked")).1),
            Step::Commit { group, member, epoch, offset } => {
                let member_id = if *member == 0 { String::new() } else { format!("m{member}") };
                let epoch = if *member == 0 { -1 } else { *epoch };
                Some(commit(&format!("g{group}"), &member_id, epoch, *offset).encode())
            }
            Step::Members { group, kind, members, epoch, stale } => {
                let id = format!("g{group}");
                let base = table.group(&id).map_or(0, |g| g.record_index);
                let kind = if *kind { GroupKind::Classic } else { GroupKind::Consumer };
                let mut next = membership(kind, *epoch, &[]);
                for m in members {
                    next.members.insert(format!("m{m}"), member(&format!("m{m}"), *epoch));
                }
                if next.members.is_empty() {
                    next.kind = None;
                }
                let base_index = if *stale { base + 1 } else { base };
                Some(Record::Group { group: id, base_index, membership: next }.encode())
            }
            Step::Delete { group } => Some(Record::Delete { group: format!("g{group}") }.encode()),
            Step::DeleteOffsets { group } => {
                let partitions = [("t".to_string(), 0)].into();
                Some(Record::DeleteOffsets { group: format!("g{group}"), partitions }.encode())
            }
            Step::Snapshot { delay: 0 } => Some(table.snapshot().encode()),
            Step::Snapshot { delay } => {
                delayed.push((*delay, table.snapshot().encode()));
                None
            }
            Step::Noop => None,
        };
        let index = table.applied_index() + 1;
        match &entry {
            Some(bytes) => {
                let before = table.groups().clone();
                let is_snapshot = matches!(Record::decode(bytes), Ok(Record::Snapshot { .. }));
                table.apply(index, bytes);
                // A snapshot applies only where it changes nothing: it is the table as it is.
                assert!(!is_snapshot || *table.groups() == before, "a snapshot at {index} changed the table");
            }
            None => table.skip(index),
        }
        log.push(entry);
    }
    log
}

fn replay(log: &[Option<Vec<u8>>], from: usize) -> GroupTable {
    let mut table = GroupTable::new();
    for (position, entry) in log.iter().enumerate().skip(from) {
        let index = position as u64 + 1;
        match entry {
            Some(bytes) => {
                table.apply(index, bytes);
            }
            None => table.skip(index),
        }
    }
    table
}

proptest! {
    /// Retention keeps the last applied snapshot and what follows: replaying from any start at
    /// or below it rebuilds exactly the table of a full replay (and replays are deterministic).
    #[test]
    fn replay_from_the_retention_bound_rebuilds_the_table(steps in prop::collection::vec(step(), 1..80)) {
        let log = build_log(&steps);
        let full = replay(&log, 0);
        let again = replay(&log, 0);
        prop_assert_eq!(full.groups(), again.groups());
        let bound = full.retention_bound();
        if bound > 0 {
            for start in [bound - 1, (bound - 1) / 2] {
                let trimmed = replay(&log, start as usize);
                prop_assert_eq!(trimmed.groups(), full.groups(), "replay from index {}", start + 1);
                prop_assert_eq!(trimmed.retention_bound(), bound);
            }
        }
        for group in full.groups().values() {
            prop_assert!(group.membership.check().is_ok());
        }
    }
}

#[test]
fn table_limits_hold() {
    let mut table = GroupTable::new();
    for group in 0..GROUPS_PER_PARTITION_MAX {
        assert_eq!(apply(&mut table, &commit(&format!("g{group}"), "", -1, 1)), Outcome::Applied);
    }
    assert!(matches!(apply(&mut table, &commit("one-too-many", "", -1, 1)), Outcome::Refused(GroupError::GroupMaxSizeReached(_))));
    // An existing group may still commit.
    assert_eq!(apply(&mut table, &commit("g0", "", -1, 2)), Outcome::Applied);
}

fn offset_commit(group: &str, member_id: &str, instance: Option<&str>, epoch: i32) -> OffsetCommit {
    OffsetCommit {
        group: group.into(),
        member_id: member_id.into(),
        epoch,
        instance_id: instance.map(String::from),
        offsets: vec![(("t".into(), 0), 1, String::new())],
        ..OffsetCommit::default()
    }
}

/// `CommitRules`: the Kafka listener's rules give Kafka 4.0's refusals by OffsetCommit version
/// (`OffsetMetadataManager`, `ClassicGroup` and `ConsumerGroup.validateOffsetCommit`), the native
/// rules keep the native ones, and no set of rules takes a commit the native rules (the
/// apply-time check) refuse.
#[test]
fn commit_rules_change_only_the_refusals() {
    use CommitRules::{KafkaBelowV9, KafkaV9, Native};
    let mut table = GroupTable::new();
    let mut classic = membership(GroupKind::Classic, 3, &[("a", 0)]);
    classic.members.get_mut("a").unwrap().instance_id = Some("s".into());
    assert_eq!(apply(&mut table, &Record::Group { group: "g".into(), base_index: 0, membership: classic }), Outcome::Applied);
    let consumer = membership(GroupKind::Consumer, 4, &[("a", 4)]);
    assert_eq!(apply(&mut table, &Record::Group { group: "c".into(), base_index: 0, membership: consumer }), Outcome::Applied);
    let empty = membership(GroupKind::Classic, 2, &[]);
    assert_eq!(apply(&mut table, &Record::Group { group: "e".into(), base_index: 0, membership: empty }), Outcome::Applied);
    let code = |commit: &OffsetCommit, rules| table.validate_commit(commit, rules).err().map(|error| error.code());
    let cases = [
        // A group that does not exist, at an epoch.
        (
            offset_commit("nobody", "x", None, 1),
            [Some(ErrorCode::UNKNOWN_MEMBER_ID), Some(ErrorCode::ILLEGAL_GENERATION), Some(ErrorCode::GROUP_ID_NOT_FOUND)],
        ),
        (
            offset_commit("nobody", "", None, 1),
            [Some(ErrorCode::ILLEGAL_GENERATION), Some(ErrorCode::ILLEGAL_GENERATION), Some(ErrorCode::GROUP_ID_NOT_FOUND)],
        ),
        (offset_commit("nobody", "x", None, -1), [None, None, None]),
        // A group that exists with no members, naming no member at an epoch.
        (
            offset_commit("e", "", None, 2),
            [Some(ErrorCode::ILLEGAL_GENERATION), Some(ErrorCode::UNKNOWN_MEMBER_ID), Some(ErrorCode::UNKNOWN_MEMBER_ID)],
        ),
        // Member "" naming the static member's instance id, or one nobody holds.
        (
            offset_commit("g", "", Some("s"), -1),
            [Some(ErrorCode::UNKNOWN_MEMBER_ID), Some(ErrorCode::FENCED_INSTANCE_ID), Some(ErrorCode::FENCED_INSTANCE_ID)],
        ),
        (
            offset_commit("g", "", Some("s"), 3),
            [Some(ErrorCode::UNKNOWN_MEMBER_ID), Some(ErrorCode::FENCED_INSTANCE_ID), Some(ErrorCode::FENCED_INSTANCE_ID)],
        ),
        (offset_commit("g", "", Some("t"), -1), [Some(ErrorCode::UNKNOWN_MEMBER_ID); 3]),
        (offset_commit("g", "a", Some("s"), 3), [None, None, None]),
        // A consumer-protocol member above, at and below its epoch.
        (
            offset_commit("c", "a", None, 5),
            [Some(ErrorCode::FENCED_MEMBER_EPOCH), Some(ErrorCode::UNSUPPORTED_VERSION), Some(ErrorCode::STALE_MEMBER_EPOCH)],
        ),
        (offset_commit("c", "a", None, 4), [None, Some(ErrorCode::UNSUPPORTED_VERSION), None]),
        (
            offset_commit("c", "a", None, 3),
            [Some(ErrorCode::STALE_MEMBER_EPOCH), Some(ErrorCode::UNSUPPORTED_VERSION), Some(ErrorCode::STALE_MEMBER_EPOCH)],
        ),
        (offset_commit("c", "b", None, 4), [Some(ErrorCode::UNKNOWN_MEMBER_ID); 3]),
    ];
    for (commit, expected) in &cases {
        let got = [code(commit, Native), code(commit, KafkaBelowV9), code(commit, KafkaV9)];
        assert_eq!(&got, expected, "{commit:?}");
        if got.iter().any(Option::is_none) {
            assert_eq!(got[0], None, "{commit:?}: taken by some rules, so by the native ones at apply");
        }
    }
}
