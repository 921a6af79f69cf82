//! Topic changes at runtime (issue 15): adding partitions to a topic and changing its settings,
//! as metadata commands ([`MetaCommand::AddPartitions`], [`MetaCommand::AlterTopicSettings`]).
//!
//! Invariants (on top of the metadata state's own, `meta.rs`):
//! - A topic only grows: added partitions are appended after the existing ones, get fresh group
//!   ids from the same counter as a creation, and have the replication factor of partition 0,
//!   distinct replicas, all registered brokers.
//! - An addition names the partition count its proposer saw (`partitions_before`): applied only
//!   if the topic still has that many, so a retried or raced addition never adds twice.
//! - A settings change is all or none: every named setting is known and its value in range, or
//!   nothing changes. It carries only the settings it changes, so two concurrent changes of
//!   different settings both land (no read-modify-write of the whole settings record).
//! - Settings are stored resolved (a reset to the default carries the proposer's default value),
//!   so every replica applies the same value.

use odradek_client::batch::BATCH_BYTES_MAX;
use odradek_consensus::NodeId;

use super::{
    assign_replicas, GroupLocation, MetaCommand, MetaError, MetaOutcome, MetadataState, PartitionInfo, TopicInfo, TopicSettings,
    PARTITIONS_MAX,
};
use crate::proto;

/// Smallest segment size a change may set: below it every few records would roll a segment.
pub const SEGMENT_BYTES_MIN: i64 = 1024;
/// Largest segment size a change may set (Kafka's `segment.bytes` is an int).
pub const SEGMENT_BYTES_MAX: i64 = i32::MAX as i64;
/// Settings one change may name, at most (there are only [`TopicSetting::ALL`]; a repeat is refused).
pub const SETTING_CHANGES_MAX: usize = TopicSetting::ALL.len();

/// A topic setting that can change at runtime, by its Kafka name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicSetting {
    RetentionMs,
    RetentionBytes,
    SegmentBytes,
    /// The largest batch the topic accepts (`TopicSettings::batch_bytes_max`).
    MaxMessageBytes,
}

impl TopicSetting {
    pub const ALL: [TopicSetting; 4] =
        [TopicSetting::RetentionMs, TopicSetting::RetentionBytes, TopicSetting::SegmentBytes, TopicSetting::MaxMessageBytes];

    /// Kafka's name of the setting.
    pub fn name(self) -> &'static str {
        match self {
            TopicSetting::RetentionMs => "retention.ms",
            TopicSetting::RetentionBytes => "retention.bytes",
            TopicSetting::SegmentBytes => "segment.bytes",
            TopicSetting::MaxMessageBytes => "max.message.bytes",
        }
    }

    pub fn parse(name: &str) -> Option<TopicSetting> {
        TopicSetting::ALL.into_iter().find(|setting| setting.name() == name)
    }

    /// Its value in `settings` (sizes above `i64::MAX` saturate).
    pub fn get(self, settings: &TopicSettings) -> i64 {
        match self {
            TopicSetting::RetentionMs => settings.retention_ms,
            TopicSetting::RetentionBytes => settings.retention_bytes,
            TopicSetting::SegmentBytes => i64::try_from(settings.segment_bytes).unwrap_or(i64::MAX),
            TopicSetting::MaxMessageBytes => i64::from(settings.batch_bytes_max),
        }
    }

    /// Checks `value` against the setting's range.
    pub fn validate(self, value: i64) -> Result<(), String> {
        let ok = match self {
            // 0 would mean "the broker default" in a creation; a change carries the value itself.
            TopicSetting::RetentionMs | TopicSetting::RetentionBytes => value == -1 || value >= 1,
            TopicSetting::SegmentBytes => (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&value),
            TopicSetting::MaxMessageBytes => (1..=BATCH_BYTES_MAX as i64).contains(&value),
        };
        match (ok, self) {
            (true, _) => Ok(()),
            (false, TopicSetting::RetentionMs | TopicSetting::RetentionBytes) => {
                Err(format!("{} {value}: -1 (no limit) or a positive value", self.name()))
            }
            (false, TopicSetting::SegmentBytes) => Err(format!("segment.bytes {value}: within {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}")),
            (false, TopicSetting::MaxMessageBytes) => Err(format!("max.message.bytes {value}: within 1..={BATCH_BYTES_MAX}")),
        }
    }

    /// Sets a value [`TopicSetting::validate`] accepted.
    fn set(self, settings: &mut TopicSettings, value: i64) {
        assert!(self.validate(value).is_ok(), "{} {value} was validated", self.name());
        match self {
            TopicSetting::RetentionMs => settings.retention_ms = value,
            TopicSetting::RetentionBytes => settings.retention_bytes = value,
            TopicSetting::SegmentBytes => settings.segment_bytes = value as u64,
            TopicSetting::MaxMessageBytes => settings.batch_bytes_max = value as u32,
        }
    }
}

/// `settings` with `changes` applied, or why not (nothing is applied then): every setting is
/// named at most once, every value is in range.
pub fn changed_settings(settings: &TopicSettings, changes: &[(TopicSetting, i64)]) -> Result<TopicSettings, String> {
    if changes.is_empty() || changes.len() > SETTING_CHANGES_MAX {
        return Err(format!("{} setting changes (1..={SETTING_CHANGES_MAX})", changes.len()));
    }
    let mut changed = settings.clone();
    for (position, &(setting, value)) in changes.iter().enumerate() {
        if changes[..position].iter().any(|(earlier, _)| *earlier == setting) {
            return Err(format!("{} is named twice", setting.name()));
        }
        setting.validate(value)?;
        setting.set(&mut changed, value);
    }
    for &(setting, value) in changes {
        assert_eq!(setting.get(&changed), value, "{} holds the value set", setting.name());
    }
    Ok(changed)
}

/// Replica lists for partitions `partitions_before..partitions_after` of `topic`, placed as a
/// creation would have placed them ([`assign_replicas`]): the round robin is continued from
/// partition 0's preferred leader, with the replication factor of partition 0.
pub fn assign_added_partitions(brokers: &[NodeId], topic: &TopicInfo, partitions_after: u32) -> Result<Vec<Vec<NodeId>>, String> {
    let partitions_before = topic.partitions.len() as u32;
    if partitions_after <= partitions_before {
        return Err(format!(
            "topic {:?} has {partitions_before} partitions; a topic only grows (asked for {partitions_after})",
            topic.name
        ));
    }
    if partitions_after > PARTITIONS_MAX {
        return Err(format!("{partitions_after} partitions; at most {PARTITIONS_MAX}"));
    }
    let first = topic.partitions.first().expect("a topic has a partition");
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    // Partition 0's leader index in the sorted broker list: where the creation started.
    let start = sorted.iter().position(|node| *node == first.replicas[0]).unwrap_or(0) as u64;
    let mut all = assign_replicas(&sorted, partitions_after, first.replicas.len() as u32, start)?;
    let added = all.split_off(partitions_before as usize);
    assert_eq!(added.len(), (partitions_after - partitions_before) as usize);
    Ok(added)
}

pub(super) fn encode_add_partitions(message: &mut proto::MetaCommand, name: &str, partitions_before: u32, replicas: &[Vec<NodeId>]) {
    let mut add = proto::AddPartitions::new();
    add.set_name(name.to_string());
    add.set_partitions_before(partitions_before);
    for list in replicas {
        let mut replica_list = proto::ReplicaList::new();
        replica_list.set_replicas(list.clone());
        add.mut_partitions().push(replica_list);
    }
    message.set_add_partitions(add);
}

pub(super) fn decode_add_partitions(add: &proto::AddPartitions) -> MetaCommand {
    MetaCommand::AddPartitions {
        name: add.get_name().to_string(),
        partitions_before: add.get_partitions_before(),
        replicas: add.get_partitions().iter().map(|list| list.get_replicas().to_vec()).collect(),
    }
}

pub(super) fn encode_alter_settings(message: &mut proto::MetaCommand, name: &str, changes: &[(TopicSetting, i64)]) {
    let mut alter = proto::AlterTopicSettings::new();
    alter.set_name(name.to_string());
    for &(setting, value) in changes {
        let mut change = proto::TopicSettingChange::new();
        change.set_name(setting.name().to_string());
        change.set_value(value);
        alter.mut_changes().push(change);
    }
    message.set_alter_topic_settings(alter);
}

pub(super) fn decode_alter_settings(alter: &proto::AlterTopicSettings) -> Result<MetaCommand, MetaError> {
    let changes = alter
        .get_changes()
        .iter()
        .map(|change| {
            let setting = TopicSetting::parse(change.get_name())
                .ok_or_else(|| MetaError::Decode(format!("unknown topic setting {:?}", change.get_name())))?;
            Ok((setting, change.get_value()))
        })
        .collect::<Result<Vec<_>, MetaError>>()?;
    Ok(MetaCommand::AlterTopicSettings { name: alter.get_name().to_string(), changes })
}

impl MetadataState {
    /// Appends partitions with the given replica lists to topic `name` if it still has
    /// `partitions_before` partitions.
    pub(super) fn add_partitions(&mut self, name: &str, partitions_before: u32, replicas: Vec<Vec<NodeId>>) -> MetaOutcome {
        let Some(topic) = self.topics.get(name) else {
            return MetaOutcome::TopicUnknown;
        };
        let count = topic.partitions.len();
        if count != partitions_before as usize {
            return MetaOutcome::Rejected(format!("topic {name:?} has {count} partitions, not {partitions_before} (changed meanwhile)"));
        }
        if replicas.is_empty() || count + replicas.len() > PARTITIONS_MAX as usize {
            return MetaOutcome::Rejected(format!("{count} + {} partitions (adding 1..={PARTITIONS_MAX} in all)", replicas.len()));
        }
        let replication_factor = topic.partitions[0].replicas.len();
        if let Some(list) = replicas.iter().find(|list| list.len() != replication_factor) {
            return MetaOutcome::Rejected(format!("an added partition has {} replicas; the topic has {replication_factor}", list.len()));
        }
        // Distinct, registered, within the cluster's partition limit.
        if let Err(reason) = self.validate_assignment(&replicas) {
            return MetaOutcome::Rejected(reason);
        }
        let Some(group_end) = self.group_next.checked_add(replicas.len() as u64) else {
            return MetaOutcome::Rejected("group ids exhausted".to_string());
        };
        let added: Vec<PartitionInfo> = replicas
            .into_iter()
            .zip(self.group_next..group_end)
            .enumerate()
            .map(|(offset, (replicas, group))| PartitionInfo { partition: (count + offset) as u32, group, replicas })
            .collect();
        self.group_next = group_end;
        for info in &added {
            let previous = self.groups.insert(info.group, GroupLocation { topic: name.to_string(), partition: info.partition });
            assert!(previous.is_none(), "group ids are never reused");
        }
        let groups = added.iter().map(|info| info.group).collect();
        let topic = self.topics.get_mut(name).expect("checked above");
        topic.partitions.extend(added);
        assert!(topic.partitions.iter().enumerate().all(|(p, info)| info.partition as usize == p), "partitions[p].partition == p");
        assert!(topic.partitions.iter().all(|info| info.replicas.len() == replication_factor));
        MetaOutcome::PartitionsAdded { groups }
    }

    /// Changes the named settings of topic `name`, all or none.
    pub(super) fn alter_topic_settings(&mut self, name: &str, changes: &[(TopicSetting, i64)]) -> MetaOutcome {
        let Some(topic) = self.topics.get_mut(name) else {
            return MetaOutcome::TopicUnknown;
        };
        match changed_settings(&topic.settings, changes) {
            Ok(settings) => {
                topic.settings = settings;
                MetaOutcome::TopicSettingsChanged
            }
            Err(reason) => MetaOutcome::Rejected(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The metadata state machine's topic changes: growth, settings, every refusal changing
    //! nothing, and the entries' encoding (old entries still decode: `meta/tests.rs`).

    use super::*;
    use crate::meta::{BrokerInfo, METADATA_GROUP};

    fn state_with_topic(partitions: usize) -> MetadataState {
        let mut state = MetadataState::new();
        for node in 1..=4 {
            let broker = BrokerInfo { node_id: node, client_address: format!("10.0.0.{node}:9092"), kafka_address: String::new() };
            assert_eq!(step(&mut state, &MetaCommand::RegisterBroker(broker)), MetaOutcome::BrokerRegistered);
        }
        let replicas = assign_replicas(&[1, 2, 3, 4], partitions as u32, 3, 1).unwrap();
        let create = MetaCommand::CreateTopic { name: "orders".into(), replicas, settings: TopicSettings::default() };
        assert!(matches!(step(&mut state, &create), MetaOutcome::TopicCreated { .. }));
        state
    }

    fn step(state: &mut MetadataState, command: &MetaCommand) -> MetaOutcome {
        let encoded = command.encode();
        assert_eq!(MetaCommand::decode(&encoded).as_ref(), Ok(command), "the entry round-trips");
        let index = state.applied_index() + 1;
        state.apply(index, &encoded)
    }

    /// A refused command changes nothing but the applied index.
    fn assert_refused(state: &mut MetadataState, command: &MetaCommand) -> MetaOutcome {
        let before = state.clone();
        let outcome = step(state, command);
        assert!(matches!(outcome, MetaOutcome::Rejected(_) | MetaOutcome::TopicUnknown), "{command:?} gave {outcome:?}");
        let mut expected = before;
        expected.applied_index = state.applied_index();
        assert_eq!(*state, expected, "a refused command changed nothing else");
        outcome
    }

    fn add(name: &str, partitions_before: u32, replicas: Vec<Vec<NodeId>>) -> MetaCommand {
        MetaCommand::AddPartitions { name: name.into(), partitions_before, replicas }
    }

    #[test]
    fn added_partitions_are_appended_with_fresh_groups_and_placed_like_a_creation() {
        let mut state = state_with_topic(2);
        let topic = state.topic("orders").unwrap().clone();
        let added = assign_added_partitions(&[4, 3, 2, 1], &topic, 5).unwrap();
        // Placed like a creation of 5 partitions with the same start.
        let created = assign_replicas(&[1, 2, 3, 4], 5, 3, 1).unwrap();
        assert_eq!(added, created[2..].to_vec());
        let group_next = state.group_next();
        let outcome = step(&mut state, &add("orders", 2, added.clone()));
        assert_eq!(outcome, MetaOutcome::PartitionsAdded { groups: vec![group_next, group_next + 1, group_next + 2] });
        let orders = state.topic("orders").unwrap();
        assert_eq!(orders.partitions.len(), 5);
        assert_eq!(orders.partitions[..2], topic.partitions[..], "existing partitions are untouched");
        for (p, info) in orders.partitions.iter().enumerate().skip(2) {
            assert_eq!(info.partition as usize, p);
            assert_eq!(info.replicas, added[p - 2]);
            assert_eq!(state.partition_of_group(info.group).map(|(_, found)| found.partition), Some(p as u32));
        }
        assert_eq!(state.groups_of(1).len() + state.groups_of(2).len() + state.groups_of(3).len() + state.groups_of(4).len(), 15);
    }

    #[test]
    fn refuses_bad_additions_and_changes_nothing() {
        let mut state = state_with_topic(2);
        assert_eq!(assert_refused(&mut state, &add("nope", 2, vec![vec![1, 2, 3]])), MetaOutcome::TopicUnknown);
        assert_refused(&mut state, &add("orders", 1, vec![vec![1, 2, 3]])); // the count moved meanwhile
        assert_refused(&mut state, &add("orders", 2, vec![])); // nothing to add
        assert_refused(&mut state, &add("orders", 2, vec![vec![1, 2]])); // replication factor differs
        assert_refused(&mut state, &add("orders", 2, vec![vec![1, 1, 2]])); // a node twice
        assert_refused(&mut state, &add("orders", 2, vec![vec![1, 2, 9]])); // not a broker
        assert_refused(&mut state, &add("orders", 2, vec![vec![1, 2, 3]; PARTITIONS_MAX as usize - 1])); // too many
                                                                                                         // A retried addition (same partitions_before) after the first one landed: refused.
        assert!(matches!(step(&mut state, &add("orders", 2, vec![vec![1, 2, 3]])), MetaOutcome::PartitionsAdded { .. }));
        assert_refused(&mut state, &add("orders", 2, vec![vec![1, 2, 3]]));
        assert_eq!(state.topic("orders").unwrap().partitions.len(), 3);
    }

    #[test]
    fn a_topic_never_shrinks_and_is_capped() {
        let state = state_with_topic(3);
        let topic = state.topic("orders").unwrap();
        assert!(assign_added_partitions(&[1, 2, 3, 4], topic, 3).unwrap_err().contains("only grows"));
        assert!(assign_added_partitions(&[1, 2, 3, 4], topic, 2).is_err());
        assert!(assign_added_partitions(&[1, 2, 3, 4], topic, PARTITIONS_MAX + 1).is_err());
        assert!(assign_added_partitions(&[1, 2], topic, 4).is_err(), "replication factor 3 on 2 brokers");
    }

    #[test]
    fn settings_change_all_or_none() {
        let mut state = state_with_topic(1);
        let change = |changes: Vec<(TopicSetting, i64)>| MetaCommand::AlterTopicSettings { name: "orders".into(), changes };
        let outcome = step(&mut state, &change(vec![(TopicSetting::RetentionMs, 60_000), (TopicSetting::SegmentBytes, 4096)]));
        assert_eq!(outcome, MetaOutcome::TopicSettingsChanged);
        let settings = state.topic("orders").unwrap().settings.clone();
        assert_eq!((settings.retention_ms, settings.segment_bytes, settings.retention_bytes), (60_000, 4096, 0));
        // A second change of another setting keeps the first (changes carry only what they set).
        step(&mut state, &change(vec![(TopicSetting::RetentionBytes, -1)]));
        let settings = state.topic("orders").unwrap().settings.clone();
        assert_eq!((settings.retention_ms, settings.retention_bytes), (60_000, -1));
        // One bad value among good ones: nothing changes.
        assert_refused(&mut state, &change(vec![(TopicSetting::RetentionMs, 5), (TopicSetting::SegmentBytes, 10)]));
        assert_refused(&mut state, &change(vec![(TopicSetting::RetentionMs, 0)]));
        assert_refused(&mut state, &change(vec![(TopicSetting::RetentionBytes, -2)]));
        assert_refused(&mut state, &change(vec![(TopicSetting::MaxMessageBytes, BATCH_BYTES_MAX as i64 + 1)]));
        assert_refused(&mut state, &change(vec![(TopicSetting::MaxMessageBytes, 0)]));
        assert_refused(&mut state, &change(vec![(TopicSetting::SegmentBytes, SEGMENT_BYTES_MAX + 1)]));
        assert_refused(&mut state, &change(vec![(TopicSetting::RetentionMs, 1), (TopicSetting::RetentionMs, 2)]));
        assert_refused(&mut state, &change(vec![]));
        let unknown = MetaCommand::AlterTopicSettings { name: "nope".into(), changes: vec![(TopicSetting::RetentionMs, 1)] };
        assert_eq!(assert_refused(&mut state, &unknown), MetaOutcome::TopicUnknown);
        assert_eq!(state.topic("orders").unwrap().settings, settings);
    }

    #[test]
    fn an_unknown_setting_name_in_an_entry_does_not_decode() {
        let mut message = proto::MetaCommand::new();
        let mut alter = proto::AlterTopicSettings::new();
        alter.set_name("orders".into());
        let mut change = proto::TopicSettingChange::new();
        change.set_name("cleanup.policy".into());
        alter.mut_changes().push(change);
        message.set_alter_topic_settings(alter);
        let bytes = protobuf::Message::write_to_bytes(&message).unwrap();
        assert!(matches!(MetaCommand::decode(&bytes), Err(MetaError::Decode(_))));
        let mut state = state_with_topic(1);
        let before = state.topic("orders").cloned();
        let index = state.applied_index() + 1;
        assert!(matches!(state.apply(index, &bytes), MetaOutcome::Rejected(_)));
        assert_eq!(state.topic("orders").cloned(), before);
        assert!(state.partition_of_group(METADATA_GROUP).is_none());
    }

    #[test]
    fn setting_names_are_kafkas_and_parse_back() {
        for setting in TopicSetting::ALL {
            assert_eq!(TopicSetting::parse(setting.name()), Some(setting));
        }
        assert_eq!(TopicSetting::parse("retention.MS"), None);
        assert_eq!(TopicSetting::parse("cleanup.policy"), None);
    }
}
