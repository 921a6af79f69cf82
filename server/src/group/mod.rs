//! Consumer groups: the coordinator of Kafka-style groups on the replicated log.
//!
//! Where the state lives: the internal topic [`OFFSETS_TOPIC`] (`__consumer_offsets`) has
//! `offsets_topic_partitions` partitions, replicated like any topic; group `g` belongs to
//! partition [`partition_for`]`(g)` (Java's `String.hashCode`, as Kafka), and that partition's raft
//! leader is `g`'s coordinator. The partition's log holds [`record::Record`]s as command
//! entries: a group's whole membership state after each decision, offset commits, deletions and
//! periodic snapshots of the whole table. Every replica applies them in index order to a
//! [`table::GroupTable`], so the committed group state is a function of the log alone (R4).
//!
//! Two protocols, one state machine ([`table::Membership`]):
//! - classic ([`classic`]): members rejoin on every rebalance (JoinGroup), the leader member
//!   assigns with a client-side assignor (SyncGroup); a generation is the group epoch;
//! - consumer, KIP-848 ([`consumer`]): one request (ConsumerGroupHeartbeat); the coordinator
//!   assigns with a server-side assignor ([`assignor`]) and reconciles each member
//!   incrementally, handing a partition to its new owner only after its old owner stopped
//!   owning it.
//!
//! Both are transitions over the same membership record, validated the same way on commit.
//!
//! What must survive a coordinator change is written first and answered after: a generation
//! or member epoch is in a committed record before any member hears of it, and an offset commit
//! is acknowledged only once applied. The log is the authority: [`table::GroupTable::apply`]
//! validates every record again against the committed state at its index (a commit from a
//! member of an older generation or epoch, or from a non-member, is refused there: C5), and a
//! membership record applies only on the state it was computed from (compare-and-set on the
//! group's last record index), so concurrent decisions can never overwrite each other.
//!
//! What is volatile, on the coordinator only ([`live`]): session deadlines, classic join and
//! sync barriers, revocation deadlines. A new coordinator rebuilds them from the table: every
//! member gets a fresh session, a classic group awaiting its assignment waits for its leader's
//! SyncGroup again.
//!
//! Storage stays bounded: every table limit below is enforced by `apply` (deterministically),
//! so the whole table always fits one [`record::Record::Snapshot`]; the coordinator writes one
//! when enough bytes of records followed the last, and retention deletes only segments wholly
//! below the latest applied snapshot ([`table::GroupTable::retention_bound`]). The controller
//! passes that index to the raft group's retention as an extra bound (each replica its own
//! table's), and the offsets topic's retention by size is 1 byte, so every segment below it
//! goes. The latest commit per (group, topic, partition) is then in the snapshot or after it:
//! a restarted replica, a new leader, or a follower that catches up by a raft snapshot (a new
//! log start; its table starts empty, see `GroupTable::restore`) replays from a log start at or
//! below the latest snapshot record and rebuilds the same table.
//!
//! Cost sketch: a commit is one raft entry of ~50 bytes per partition plus the group name; a
//! membership change writes the group's state (~200 bytes per member plus assignments), so a
//! 100-member rebalance writes ~20 KB per step. A snapshot of a full table is at most
//! [`TABLE_BYTES_MAX`] and is written at most once per [`SNAPSHOT_BYTES_MIN`] of records.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod live;
pub mod record;
pub mod service;
pub mod table;

use odradek_client::wire::proto::ErrorCode;

/// The internal topic holding every group's records.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Bytes of a group id, at most (Kafka has no limit; a bound keeps records small).
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Bytes of a member id, instance id or client id, at most.
pub const MEMBER_ID_BYTES_MAX: usize = 255;
/// Members of one group, at most (Kafka's `group.consumer.max.size` is 200 by default).
pub const MEMBERS_PER_GROUP_MAX: usize = 256;
/// Groups one coordinator partition holds, at most.
pub const GROUPS_PER_PARTITION_MAX: usize = 8192;
/// Committed offsets of one group, at most.
pub const OFFSETS_PER_GROUP_MAX: usize = 16 * 1024;
/// Bytes of a commit's metadata string (Kafka's `offset.metadata.max.bytes`).
pub const COMMIT_METADATA_BYTES_MAX: usize = 4096;
/// Protocols (client-side assignors) a classic member may offer.
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 16;
/// Bytes of one classic protocol's metadata or one member's assignment.
pub const PROTOCOL_BYTES_MAX: usize = 64 * 1024;
/// Topics one member may subscribe to.
pub const SUBSCRIBED_TOPICS_MAX: usize = 1024;
/// The longest subscribed regular expression (KIP-848 SubscribedTopicRegex), in bytes.
pub const SUBSCRIBED_REGEX_BYTES_MAX: usize = 1024;
/// Bytes of a whole coordinator partition's table: its snapshot must fit one log entry
/// (`odradek_log::ENTRY_PAYLOAD_BYTES_MAX` is 32 MiB) with room to spare.
pub const TABLE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// By default a snapshot is written once this many bytes of records followed the last one, and
/// at least twice the table's size (so snapshots cost at most half of what the log writes).
pub const SNAPSHOT_BYTES_MIN: u64 = 1024 * 1024;
/// The offsets topic's segments by default: small, so retention can soon drop what a snapshot
/// made redundant (a segment goes only once wholly below the last snapshot).
pub const OFFSETS_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Outcomes of applied records kept for their proposers.
pub const OUTCOMES_KEPT: usize = 4096;
/// Session timeouts a classic member may ask for (Kafka's `group.min/max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MIN: u32 = 1_000;
pub const SESSION_TIMEOUT_MS_MAX: u32 = 300_000;
/// Rebalance timeouts, at most (Kafka's `max.poll.interval.ms` tops out far higher; a bound keeps
/// a stuck rebalance from holding a group for long).
pub const REBALANCE_TIMEOUT_MS_MAX: u32 = 600_000;

/// A topic and a partition.
pub type TopicPartition = (String, u32);
/// A set of partitions, ordered (deterministic iteration).
pub type Partitions = std::collections::BTreeSet<TopicPartition>;

/// Java's `String.hashCode` over UTF-16 code units: Kafka places groups with it.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The partition of [`OFFSETS_TOPIC`] that holds `group` (Kafka's `abs(hashCode) % n`, with
/// `abs(i32::MIN)` taken as 0 as Kafka's `Utils.abs` does).
pub fn partition_for(group: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "the offsets topic has at least one partition");
    let hash = java_string_hash(group);
    let positive = if hash == i32::MIN { 0 } else { hash.unsigned_abs() };
    positive % partitions
}

/// A group id the coordinator accepts: non-empty, at most [`GROUP_ID_BYTES_MAX`] bytes, no
/// control characters.
pub fn validate_group_id(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        return Err(GroupError::InvalidGroupId("a group id may not be empty".into()));
    }
    if group.len() > GROUP_ID_BYTES_MAX {
        return Err(GroupError::InvalidGroupId(format!("a group id of {} bytes exceeds {GROUP_ID_BYTES_MAX}", group.len())));
    }
    if group.chars().any(char::is_control) {
        return Err(GroupError::InvalidGroupId(format!("group id {group:?} holds control characters")));
    }
    Ok(())
}

/// Why the coordinator refused a request or a record. Every one is definite: nothing was
/// written by the request that got it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("{0}")]
    InvalidGroupId(String),
    #[error("group {0:?} is not known to its coordinator")]
    GroupIdNotFound(String),
    #[error("member {member:?} is not in group {group:?}; rejoin")]
    UnknownMemberId { group: String, member: String },
    #[error("generation {got} is not group {group:?}'s generation {current}; rejoin")]
    IllegalGeneration { group: String, current: i32, got: i32 },
    #[error("group {0:?} is rebalancing; rejoin")]
    RebalanceInProgress(String),
    #[error("member epoch {got} is not the member's epoch {current}; rejoin with epoch 0")]
    FencedMemberEpoch { current: i32, got: i32 },
    #[error("member epoch {got} is older than the member's epoch {current}")]
    StaleMemberEpoch { current: i32, got: i32 },
    /// Kafka's OffsetCommit below v9 from a consumer-protocol member ([`table::CommitRules`]).
    #[error("member {member:?} uses the consumer protocol: commit with OffsetCommit v9 or above")]
    UnsupportedCommitVersion { member: String },
    #[error("static instance {instance:?} is now held by member {member:?}")]
    FencedInstanceId { instance: String, member: String },
    #[error("static instance {instance:?} is still held by live member {member:?}")]
    UnreleasedInstanceId { instance: String, member: String },
    #[error("{0}")]
    InconsistentGroupProtocol(String),
    #[error("no server-side assignor named {0:?} (uniform, range)")]
    UnsupportedAssignor(String),
    #[error("session timeout {got} ms outside {SESSION_TIMEOUT_MS_MIN}..={SESSION_TIMEOUT_MS_MAX} ms")]
    InvalidSessionTimeout { got: u32 },
    #[error("{0}")]
    GroupMaxSizeReached(String),
    #[error("group {0:?} still has members")]
    NonEmptyGroup(String),
    #[error("group {group:?} is subscribed to topic {topic:?}: its offsets stay while it is")]
    GroupSubscribedToTopic { group: String, topic: String },
    #[error("commit metadata of {bytes} bytes exceeds {COMMIT_METADATA_BYTES_MAX} bytes")]
    OffsetMetadataTooLarge { bytes: usize },
    #[error("{0}")]
    InvalidCommitOffset(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// KIP-848: a subscribed regex that does not compile, or is longer than [`SUBSCRIBED_REGEX_BYTES_MAX`].
    #[error("{0}")]
    InvalidRegularExpression(String),
    /// KIP-394: the member was given id `member` (kept pending for its session) and must join
    /// again with it.
    #[error("join again with member id {member:?}")]
    MemberIdRequired { member: String },
}

impl GroupError {
    /// The wire code (every one definite: `ErrorCode::is_definite`).
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::InvalidGroupId(_) => ErrorCode::INVALID_GROUP_ID,
            GroupError::GroupIdNotFound(_) => ErrorCode::GROUP_ID_NOT_FOUND,
            GroupError::UnknownMemberId { .. } => ErrorCode::UNKNOWN_MEMBER_ID,
            GroupError::MemberIdRequired { .. } => ErrorCode::MEMBER_ID_REQUIRED,
            GroupError::IllegalGeneration { .. } => ErrorCode::ILLEGAL_GENERATION,
            GroupError::RebalanceInProgress(_) => ErrorCode::REBALANCE_IN_PROGRESS,
            GroupError::FencedMemberEpoch { .. } => ErrorCode::FENCED_MEMBER_EPOCH,
            GroupError::StaleMemberEpoch { .. } => ErrorCode::STALE_MEMBER_EPOCH,
            GroupError::UnsupportedCommitVersion { .. } => ErrorCode::UNSUPPORTED_VERSION,
            GroupError::FencedInstanceId { .. } => ErrorCode::FENCED_INSTANCE_ID,
            GroupError::UnreleasedInstanceId { .. } => ErrorCode::UNRELEASED_INSTANCE_ID,
            GroupError::InconsistentGroupProtocol(_) => ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
            GroupError::UnsupportedAssignor(_) => ErrorCode::UNSUPPORTED_ASSIGNOR,
            GroupError::InvalidSessionTimeout { .. } => ErrorCode::INVALID_SESSION_TIMEOUT,
            GroupError::GroupMaxSizeReached(_) => ErrorCode::GROUP_MAX_SIZE_REACHED,
            GroupError::NonEmptyGroup(_) => ErrorCode::NON_EMPTY_GROUP,
            GroupError::GroupSubscribedToTopic { .. } => ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC,
            GroupError::OffsetMetadataTooLarge { .. } => ErrorCode::OFFSET_METADATA_TOO_LARGE,
            GroupError::InvalidCommitOffset(_) => ErrorCode::INVALID_COMMIT_OFFSET,
            GroupError::InvalidRequest(_) => ErrorCode::INVALID_REQUEST,
            GroupError::InvalidRegularExpression(_) => ErrorCode::INVALID_REGULAR_EXPRESSION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_placed_as_kafka_places_them() {
        // Java's "my-group".hashCode() is -1906497762 (s[0]*31^(n-1) + ... in wrapping i32).
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 97 * 31 + 98);
        let hash = java_string_hash("my-group");
        assert_eq!(partition_for("my-group", 50), hash.unsigned_abs() % 50);
        // Overflow wraps as in Java; the partition is always in range.
        for group in ["a-very-long-group-name-that-overflows-the-hash-many-times", "ünïcödé", "🙂"] {
            assert!(partition_for(group, 7) < 7);
        }
    }

    #[test]
    fn group_ids_are_checked() {
        assert!(validate_group_id("orders-service").is_ok());
        assert_eq!(validate_group_id("").unwrap_err().code(), ErrorCode::INVALID_GROUP_ID);
        assert_eq!(validate_group_id(&"g".repeat(GROUP_ID_BYTES_MAX + 1)).unwrap_err().code(), ErrorCode::INVALID_GROUP_ID);
        assert_eq!(validate_group_id("a\nb").unwrap_err().code(), ErrorCode::INVALID_GROUP_ID);
    }

    #[test]
    fn every_group_error_is_definite() {
        let errors = [
            GroupError::InvalidGroupId(String::new()),
            GroupError::GroupIdNotFound(String::new()),
            GroupError::UnknownMemberId { group: String::new(), member: String::new() },
            GroupError::IllegalGeneration { group: String::new(), current: 2, got: 1 },
            GroupError::RebalanceInProgress(String::new()),
            GroupError::FencedMemberEpoch { current: 2, got: 3 },
            GroupError::StaleMemberEpoch { current: 2, got: 1 },
            GroupError::UnsupportedCommitVersion { member: String::new() },
            GroupError::NonEmptyGroup(String::new()),
        ];
        for error in errors {
            assert!(error.code().is_definite(), "{error:?}");
            assert!(!error.code().is_retriable(), "{error:?}: a member must rejoin, not retry");
        }
    }
}
