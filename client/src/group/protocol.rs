//! Kafka's ConsumerProtocol: the bytes a classic group's members exchange through the
//! coordinator, opaque to the wire (`JoinProtocol.metadata`, `JoinGroupMember.metadata`,
//! `SyncAssignment.assignment`, `SyncGroupResponse.assignment`) for protocol type "consumer".
//! Written from Kafka's protocol documentation, so Kafka clients and ours can share a group.
//!
//! Layout (big-endian, Kafka's non-flexible encoding): an `int16` version, then the fields.
//! - Subscription v0: `topics: [string]`, `user_data: nullable bytes`; v1 adds
//!   `owned_partitions: [topic: string, partitions: [int32]]`; v2 adds `generation_id: int32`;
//!   v3 adds `rack_id: nullable string`.
//! - Assignment v0–v3 (one layout): `assigned_partitions: [topic, partitions]`,
//!   `user_data: nullable bytes`.
//!
//! `string` is an `int16` length and UTF-8 bytes; `nullable string` uses length -1 for null;
//! `nullable bytes` an `int32` length, -1 for null; an array an `int32` count then its items.
//!
//! Invariants:
//! - Decoding never panics and never allocates more than the input could hold: counts are
//!   checked against the bytes left before anything is reserved, and every collection has a
//!   named maximum ([`TOPICS_MAX`], [`PARTITIONS_MAX`], [`USER_DATA_BYTES_MAX`]).
//! - `decode(encode(x)) == x` for every `x` that encodes (property-tested).
//! - A version newer than [`VERSION_MAX`] is read with the newest layout this code knows and its
//!   trailing bytes are ignored (newer versions only append fields, as Kafka's own reader
//!   assumes); a known version with trailing bytes is refused.

use std::fmt;

/// The newest Subscription and Assignment version this code writes and fully reads.
pub const VERSION_MAX: i16 = 3;
/// Most topics in one Subscription or Assignment (across `topics` and `owned_partitions`).
pub const TOPICS_MAX: usize = 100_000;
/// Most partition numbers in one message, over all its topics.
pub const PARTITIONS_MAX: usize = 1_000_000;
/// Largest `user_data`.
pub const USER_DATA_BYTES_MAX: usize = 1024 * 1024;
/// Longest string the encoding can carry (an `int16` length).
pub const STRING_BYTES_MAX: usize = i16::MAX as usize;

/// Why bytes could not be read as (or a value written to) a ConsumerProtocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message cut short: {needed} more bytes needed at byte {at}")]
    Truncated { at: usize, needed: usize },
    #[error("unsupported version {0}")]
    Version(i16),
    #[error("invalid field at byte {at}: {reason}")]
    Invalid { at: usize, reason: String },
    #[error("{what}: {count} is above the limit of {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("{0} trailing bytes after a known version")]
    Trailing(usize),
}

/// Partitions of one topic, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    pub topic: String,
    /// Partition numbers, each at most `i32::MAX` (the encoding's `int32`).
    pub partitions: Vec<u32>,
}

/// What a member tells the group's leader when it joins.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    /// 0..=3 to write; any value ≥ 0 when read.
    pub version: i16,
    pub topics: Vec<String>,
    pub user_data: Option<Vec<u8>>,
    /// v1+: the partitions the member owns now (cooperative rebalancing).
    pub owned_partitions: Vec<TopicPartitions>,
    /// v2+: the generation in which it got them; -1 when unknown (and below v2).
    pub generation_id: i32,
    /// v3+.
    pub rack_id: Option<String>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            version: VERSION_MAX,
            topics: Vec::new(),
            user_data: None,
            owned_partitions: Vec::new(),
            generation_id: -1,
            rack_id: None,
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("version", &self.version)
            .field("topics", &self.topics)
            .field("user_data_bytes", &self.user_data.as_ref().map(Vec::len))
            .field("owned_partitions", &self.owned_partitions)
            .field("generation_id", &self.generation_id)
            .field("rack_id", &self.rack_id)
            .finish()
    }
}

/// What the leader hands each member through SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// 0..=3 to write (one layout); any value ≥ 0 when read.
    pub version: i16,
    pub partitions: Vec<TopicPartitions>,
    pub user_data: Option<Vec<u8>>,
}

impl Default for Assignment {
    fn default() -> Self {
        Assignment { version: VERSION_MAX, partitions: Vec::new(), user_data: None }
    }
}

impl Subscription {
    /// The bytes of this subscription at `self.version`. Fields the version does not have must
    /// hold their defaults (empty, -1, `None`), so nothing is silently dropped.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        check_version(self.version)?;
        if self.version < 1 && !self.owned_partitions.is_empty() {
            return Err(invalid(0, "owned partitions need version 1"));
        }
        if self.version < 2 && self.generation_id != -1 {
            return Err(invalid(0, "a generation id needs version 2"));
        }
        if self.version < 3 && self.rack_id.is_some() {
            return Err(invalid(0, "a rack id needs version 3"));
        }
        check_counts(self.topics.len() + self.owned_partitions.len(), count_partitions(&self.owned_partitions))?;
        let mut writer = Writer::default();
        writer.i16(self.version);
        writer.array_len(self.topics.len());
        for topic in &self.topics {
            writer.string(topic)?;
        }
        writer.nullable_bytes(self.user_data.as_deref())?;
        if self.version >= 1 {
            writer.topic_partitions(&self.owned_partitions)?;
        }
        if self.version >= 2 {
            writer.i32(self.generation_id);
        }
        if self.version >= 3 {
            writer.nullable_string(self.rack_id.as_deref())?;
        }
        Ok(writer.bytes)
    }

    /// Reads a subscription; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Subscription, ProtocolError> {
        let mut reader = Reader { bytes, at: 0 };
        let version = reader.version()?;
        let layout = version.min(VERSION_MAX);
        let topics_count = reader.array_len(2, TOPICS_MAX, "topics")?;
        let mut topics = Vec::with_capacity(topics_count);
        for _ in 0..topics_count {
            topics.push(reader.string()?);
        }
        let user_data = reader.nullable_bytes()?;
        let owned_partitions = if layout >= 1 { reader.topic_partitions(TOPICS_MAX - topics.len())? } else { Vec::new() };
        let generation_id = if layout >= 2 { reader.i32()? } else { -1 };
        let rack_id = if layout >= 3 { reader.nullable_string()? } else { None };
        reader.finish(version)?;
        Ok(Subscription { version, topics, user_data, owned_partitions, generation_id, rack_id })
    }
}

impl Assignment {
    /// The bytes of this assignment at `self.version`.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        check_version(self.version)?;
        check_counts(self.partitions.len(), count_partitions(&self.partitions))?;
        let mut writer = Writer::default();
        writer.i16(self.version);
        writer.topic_partitions(&self.partitions)?;
        writer.nullable_bytes(self.user_data.as_deref())?;
        Ok(writer.bytes)
    }

    /// Reads an assignment; never panics, whatever the bytes. Empty bytes are an empty
    /// assignment, as Kafka's consumer reads them (a leader may send nothing to a member).
    pub fn decode(bytes: &[u8]) -> Result<Assignment, ProtocolError> {
        if bytes.is_empty() {
            return Ok(Assignment::default());
        }
        let mut reader = Reader { bytes, at: 0 };
        let version = reader.version()?;
        let partitions = reader.topic_partitions(TOPICS_MAX)?;
        let user_data = reader.nullable_bytes()?;
        reader.finish(version)?;
        Ok(Assignment { version, partitions, user_data })
    }
}

fn check_version(version: i16) -> Result<(), ProtocolError> {
    if (0..=VERSION_MAX).contains(&version) {
        Ok(())
    } else {
        Err(ProtocolError::Version(version))
    }
}

fn count_partitions(topics: &[TopicPartitions]) -> usize {
    topics.iter().map(|topic| topic.partitions.len()).sum()
}

fn check_counts(topics: usize, partitions: usize) -> Result<(), ProtocolError> {
    if topics > TOPICS_MAX {
        return Err(ProtocolError::TooMany { what: "topics", count: topics, max: TOPICS_MAX });
    }
    if partitions > PARTITIONS_MAX {
        return Err(ProtocolError::TooMany { what: "partitions", count: partitions, max: PARTITIONS_MAX });
    }
    Ok(())
}

fn invalid(at: usize, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Invalid { at, reason: reason.into() }
}

#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn i16(&mut self, value: i16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    fn array_len(&mut self, len: usize) {
        self.i32(i32::try_from(len).expect("collection sizes are checked against limits far below i32::MAX"));
    }

    fn string(&mut self, value: &str) -> Result<(), ProtocolError> {
        if value.len() > STRING_BYTES_MAX {
            return Err(ProtocolError::TooMany { what: "string bytes", count: value.len(), max: STRING_BYTES_MAX });
        }
        self.i16(value.len() as i16);
        self.bytes.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn nullable_string(&mut self, value: Option<&str>) -> Result<(), ProtocolError> {
        match value {
            Some(value) => self.string(value),
            None => {
                self.i16(-1);
                Ok(())
            }
        }
    }

    fn nullable_bytes(&mut self, value: Option<&[u8]>) -> Result<(), ProtocolError> {
        match value {
            Some(value) if value.len() > USER_DATA_BYTES_MAX => {
                Err(ProtocolError::TooMany { what: "user data bytes", count: value.len(), max: USER_DATA_BYTES_MAX })
            }
            Some(value) => {
                self.array_len(value.len());
                self.bytes.extend_from_slice(value);
                Ok(())
            }
            None => {
                self.i32(-1);
                Ok(())
            }
        }
    }

    fn topic_partitions(&mut self, topics: &[TopicPartitions]) -> Result<(), ProtocolError> {
        self.array_len(topics.len());
        for topic in topics {
            self.string(&topic.topic)?;
            self.array_len(topic.partitions.len());
            for &partition in &topic.partitions {
                let partition = i32::try_from(partition).map_err(|_| invalid(self.bytes.len(), format!("partition {partition}")))?;
                self.i32(partition);
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], ProtocolError> {
        let left = self.bytes.len() - self.at;
        if count > left {
            return Err(ProtocolError::Truncated { at: self.at, needed: count - left });
        }
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        Ok(taken)
    }

    fn i16(&mut self) -> Result<i16, ProtocolError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn version(&mut self) -> Result<i16, ProtocolError> {
        let version = self.i16()?;
        if version < 0 {
            return Err(ProtocolError::Version(version));
        }
        Ok(version)
    }

    /// An array count, refused when negative, above `max`, or above what the bytes left could
    /// hold at `item_bytes_min` bytes an item (so a forged count never reserves memory).
    fn array_len(&mut self, item_bytes_min: usize, max: usize, what: &'static str) -> Result<usize, ProtocolError> {
        let at = self.at;
        let count = self.i32()?;
        let count = usize::try_from(count).map_err(|_| invalid(at, format!("{what}: a count of {count}")))?;
        if count > max {
            return Err(ProtocolError::TooMany { what, count, max });
        }
        let left = self.bytes.len() - self.at;
        if count.saturating_mul(item_bytes_min) > left {
            return Err(ProtocolError::Truncated { at: self.at, needed: count * item_bytes_min - left });
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, ProtocolError> {
        let at = self.at;
        let len = self.i16()?;
        let len = usize::try_from(len).map_err(|_| invalid(at, format!("a string of length {len}")))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(at, "a string that is not UTF-8"))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, ProtocolError> {
        let at = self.at;
        match self.i16()? {
            -1 => Ok(None),
            len if len < 0 => Err(invalid(at, format!("a nullable string of length {len}"))),
            _ => {
                self.at = at;
                self.string().map(Some)
            }
        }
    }

    fn nullable_bytes(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let at = self.at;
        match self.i32()? {
            -1 => Ok(None),
            len if len < 0 => Err(invalid(at, format!("nullable bytes of length {len}"))),
            len => {
                let len = len as usize;
                if len > USER_DATA_BYTES_MAX {
                    return Err(ProtocolError::TooMany { what: "user data bytes", count: len, max: USER_DATA_BYTES_MAX });
                }
                Ok(Some(self.take(len)?.to_vec()))
            }
        }
    }

    fn topic_partitions(&mut self, topics_max: usize) -> Result<Vec<TopicPartitions>, ProtocolError> {
        // A topic entry is at least a string length and an array count.
        let count = self.array_len(6, topics_max, "topics")?;
        let mut topics = Vec::with_capacity(count);
        let mut partitions_total = 0usize;
        for _ in 0..count {
            let topic = self.string()?;
            let partitions_count = self.array_len(4, PARTITIONS_MAX - partitions_total, "partitions")?;
            partitions_total += partitions_count;
            let mut partitions = Vec::with_capacity(partitions_count);
            for _ in 0..partitions_count {
                let at = self.at;
                let partition = self.i32()?;
                partitions.push(u32::try_from(partition).map_err(|_| invalid(at, format!("partition {partition}")))?);
            }
            topics.push(TopicPartitions { topic, partitions });
        }
        Ok(topics)
    }

    /// Refuses trailing bytes after a version this code knows; ignores them after a newer one.
    fn finish(&self, version: i16) -> Result<(), ProtocolError> {
        let left = self.bytes.len() - self.at;
        if left > 0 && version <= VERSION_MAX {
            return Err(ProtocolError::Trailing(left));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{0,12}"
    }

    fn topic_partitions() -> impl Strategy<Value = Vec<TopicPartitions>> {
        prop::collection::vec(
            (topic_name(), prop::collection::vec(0u32..=i32::MAX as u32, 0..6))
                .prop_map(|(topic, partitions)| TopicPartitions { topic, partitions }),
            0..5,
        )
    }

    fn subscription() -> impl Strategy<Value = Subscription> {
        (
            0i16..=VERSION_MAX,
            prop::collection::vec(topic_name(), 0..6),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            topic_partitions(),
            any::<i32>(),
            prop::option::of("[a-z0-9-]{0,8}"),
        )
            .prop_map(|(version, topics, user_data, owned, generation_id, rack_id)| Subscription {
                version,
                topics,
                user_data,
                owned_partitions: if version >= 1 { owned } else { Vec::new() },
                generation_id: if version >= 2 { generation_id } else { -1 },
                rack_id: if version >= 3 { rack_id } else { None },
            })
    }

    proptest! {
        #[test]
        fn subscriptions_round_trip(subscription in subscription()) {
            let bytes = subscription.encode().unwrap();
            prop_assert_eq!(Subscription::decode(&bytes).unwrap(), subscription);
        }

        #[test]
        fn assignments_round_trip(
            version in 0i16..=VERSION_MAX,
            partitions in topic_partitions(),
            user_data in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        ) {
            let assignment = Assignment { version, partitions, user_data };
            let bytes = assignment.encode().unwrap();
            prop_assert_eq!(Assignment::decode(&bytes).unwrap(), assignment);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Subscription::decode(&bytes);
            let _ = Assignment::decode(&bytes);
        }

        /// Flipping or cutting bytes of a valid message gives an error or another valid
        /// message, never a panic.
        #[test]
        fn damaged_messages_never_panic(subscription in subscription(), flip in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = subscription.encode().unwrap();
            let at = flip.index(bytes.len());
            bytes[at] ^= 0xa5;
            let _ = Subscription::decode(&bytes);
            let _ = Assignment::decode(&bytes);
            let bytes = subscription.encode().unwrap();
            let _ = Subscription::decode(&bytes[..cut.index(bytes.len())]);
        }
    }

    #[test]
    fn a_version_0_subscription_is_kafkas_layout_byte_for_byte() {
        let subscription = Subscription { version: 0, topics: vec!["ab".into()], ..Subscription::default() };
        let subscription = Subscription { generation_id: -1, ..subscription };
        assert_eq!(subscription.encode().unwrap(), [0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn a_version_1_assignment_is_kafkas_layout_byte_for_byte() {
        let assignment = Assignment {
            version: 1,
            partitions: vec![TopicPartitions { topic: "t".into(), partitions: vec![0, 7] }],
            user_data: Some(vec![9]),
        };
        let expected = [0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 9];
        assert_eq!(assignment.encode().unwrap(), expected);
    }

    #[test]
    fn a_newer_version_is_read_with_the_newest_layout_and_its_extra_fields_ignored() {
        let mut bytes = Subscription { topics: vec!["t".into()], generation_id: 4, ..Subscription::default() }.encode().unwrap();
        bytes[1] = 9; // version 9
        bytes.extend_from_slice(&[1, 2, 3]); // a field version 9 appended
        let decoded = Subscription::decode(&bytes).unwrap();
        assert_eq!((decoded.version, decoded.topics, decoded.generation_id), (9, vec!["t".to_string()], 4));
        bytes[1] = 3;
        assert_eq!(Subscription::decode(&bytes), Err(ProtocolError::Trailing(3)));
    }

    #[test]
    fn forged_counts_are_refused_before_anything_is_reserved() {
        // Version 0, then 2^31 - 1 topics in 4 bytes of input.
        let bytes = [0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(Subscription::decode(&bytes), Err(ProtocolError::TooMany { what: "topics", .. })));
        let bytes = [0, 0, 0, 0, 0x10, 0, 0, 0];
        assert!(matches!(Assignment::decode(&bytes), Err(ProtocolError::Truncated { .. })));
        let negative_partition = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(Assignment::decode(&negative_partition), Err(ProtocolError::Invalid { .. })));
    }

    #[test]
    fn fields_a_version_lacks_are_refused_rather_than_dropped() {
        let subscription = Subscription { version: 1, rack_id: Some("r".into()), ..Subscription::default() };
        assert!(subscription.encode().is_err());
        let subscription = Subscription { version: 0, owned_partitions: vec![TopicPartitions::default()], ..Subscription::default() };
        assert!(subscription.encode().is_err());
        assert!(Subscription { version: 4, ..Subscription::default() }.encode().is_err());
        assert_eq!(Assignment::decode(&[]).unwrap(), Assignment::default(), "no bytes: nothing assigned");
    }
}
