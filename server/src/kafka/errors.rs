//! Our error codes as Kafka's, so that a Kafka client retries exactly when it is safe.
//!
//! The native protocol says of each error whether the request was definitely not carried out
//! (nothing proposed) or its outcome is unknown (`client/proto/wire.proto`). Kafka clients act
//! on the code alone: a retriable code is retried (after a metadata refresh for the
//! "not leader" family), a fatal one is handed to the application. So:
//! - refusals before anything was proposed are Kafka's retriable refusals
//!   (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, ...): a retry cannot duplicate;
//! - unknown outcomes (no outcome within the timeout, leadership lost after proposing) are
//!   REQUEST_TIMED_OUT, which Kafka clients treat as "may have been written": an idempotent
//!   producer's retry is deduplicated, a plain producer's retry may duplicate, exactly as
//!   against Kafka;
//! - invalid requests are Kafka's non-retriable codes.
//!
//! The table is in DESIGN.md ("Kafka listener"); [`kafka_code`] is the one place it lives.

use odradek_client::wire::proto::ErrorCode;

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const NOT_CONTROLLER: i16 = 41;
pub const INVALID_REQUEST: i16 = 42;
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const FENCED_MEMBER_EPOCH: i16 = 110;
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub const STALE_MEMBER_EPOCH: i16 = 113;
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const INVALID_RECORD: i16 = 87;

/// The Kafka code for one of ours (the table in the module comment and DESIGN.md).
pub fn kafka_code(code: ErrorCode) -> i16 {
    use ErrorCode as E;
    match code {
        E::NONE => NONE,
        // Refused before anything was proposed: retriable, a retry cannot duplicate.
        E::NOT_LEADER | E::SHUTTING_DOWN => NOT_LEADER_OR_FOLLOWER,
        E::LEADER_NOT_AVAILABLE => LEADER_NOT_AVAILABLE,
        E::DISK_FULL => KAFKA_STORAGE_ERROR,
        E::NOT_CONTROLLER => NOT_CONTROLLER,
        E::NOT_COORDINATOR => NOT_COORDINATOR,
        E::COORDINATOR_NOT_AVAILABLE => COORDINATOR_NOT_AVAILABLE,
        E::COORDINATOR_LOAD_IN_PROGRESS => COORDINATOR_LOAD_IN_PROGRESS,
        // Outcome unknown: the batch may be appended. An idempotent producer's first attempt
        // still in flight is the same for its retry (deduplicated once it lands).
        E::REQUEST_TIMED_OUT | E::LEADERSHIP_LOST | E::DUPLICATE_IN_FLIGHT | E::INTERNAL => REQUEST_TIMED_OUT,
        // Invalid requests: not retriable.
        E::UNSUPPORTED_VERSION | E::UNKNOWN_REQUEST => UNSUPPORTED_VERSION,
        E::MALFORMED_REQUEST | E::HELLO_REQUIRED | E::INVALID_REQUEST => INVALID_REQUEST,
        E::FRAME_TOO_LARGE | E::RECORD_TOO_LARGE => MESSAGE_TOO_LARGE,
        E::INVALID_TOPIC => INVALID_TOPIC_EXCEPTION,
        E::UNKNOWN_TOPIC_OR_PARTITION => UNKNOWN_TOPIC_OR_PARTITION,
        E::TOPIC_ALREADY_EXISTS => TOPIC_ALREADY_EXISTS,
        E::INVALID_PARTITIONS => INVALID_PARTITIONS,
        E::INVALID_REPLICATION_FACTOR => INVALID_REPLICATION_FACTOR,
        E::CORRUPT_BATCH => CORRUPT_MESSAGE,
        // Kafka's LogValidator answer for records that do not decompress or parse: not retriable.
        E::INVALID_RECORD => INVALID_RECORD,
        E::OUT_OF_ORDER_SEQUENCE => OUT_OF_ORDER_SEQUENCE_NUMBER,
        E::PRODUCER_FENCED => INVALID_PRODUCER_EPOCH,
        E::UNKNOWN_PRODUCER_ID => UNKNOWN_PRODUCER_ID,
        E::OFFSET_OUT_OF_RANGE => OFFSET_OUT_OF_RANGE,
        E::TOO_MANY_CONNECTIONS => UNKNOWN_SERVER_ERROR,
        E::INVALID_GROUP_ID => INVALID_GROUP_ID,
        E::GROUP_ID_NOT_FOUND => GROUP_ID_NOT_FOUND,
        E::UNKNOWN_MEMBER_ID => UNKNOWN_MEMBER_ID,
        E::ILLEGAL_GENERATION => ILLEGAL_GENERATION,
        E::REBALANCE_IN_PROGRESS => REBALANCE_IN_PROGRESS,
        E::FENCED_MEMBER_EPOCH => FENCED_MEMBER_EPOCH,
        E::STALE_MEMBER_EPOCH => STALE_MEMBER_EPOCH,
        E::FENCED_INSTANCE_ID => FENCED_INSTANCE_ID,
        E::UNRELEASED_INSTANCE_ID => UNRELEASED_INSTANCE_ID,
        E::INCONSISTENT_GROUP_PROTOCOL => INCONSISTENT_GROUP_PROTOCOL,
        E::UNSUPPORTED_ASSIGNOR => UNSUPPORTED_ASSIGNOR,
        E::INVALID_SESSION_TIMEOUT => INVALID_SESSION_TIMEOUT,
        E::GROUP_MAX_SIZE_REACHED => GROUP_MAX_SIZE_REACHED,
        E::NON_EMPTY_GROUP => NON_EMPTY_GROUP,
        E::GROUP_SUBSCRIBED_TO_TOPIC => GROUP_SUBSCRIBED_TO_TOPIC,
        E::INVALID_REGULAR_EXPRESSION => INVALID_REGULAR_EXPRESSION,
        E::OFFSET_METADATA_TOO_LARGE => OFFSET_METADATA_TOO_LARGE,
        E::INVALID_COMMIT_OFFSET => INVALID_COMMIT_OFFSET_SIZE,
        E::MEMBER_ID_REQUIRED => MEMBER_ID_REQUIRED,
        // Security: definite refusals (the Kafka listener's connections are User:ANONYMOUS).
        E::AUTHENTICATION_FAILED => SASL_AUTHENTICATION_FAILED,
        E::TOPIC_AUTHORIZATION_FAILED => TOPIC_AUTHORIZATION_FAILED,
        E::GROUP_AUTHORIZATION_FAILED => GROUP_AUTHORIZATION_FAILED,
        E::CLUSTER_AUTHORIZATION_FAILED => CLUSTER_AUTHORIZATION_FAILED,
        E::UNSUPPORTED_SASL_MECHANISM => UNSUPPORTED_SASL_MECHANISM,
        E::USER_NOT_FOUND | E::ACL_NOT_FOUND => RESOURCE_NOT_FOUND,
        E::INVALID_CONFIG => INVALID_CONFIG,
    }
}

/// The Kafka code for one of ours in the answer to a group API (JoinGroup, SyncGroup,
/// Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
/// ConsumerGroupHeartbeat, ConsumerGroupDescribe). Kafka clients rediscover the coordinator on
/// NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE only, so the "ask elsewhere / later" family is
/// mapped there, as Kafka's coordinator does:
/// - a node not (or no longer) leading the group's coordinator partition, or shutting down:
///   NOT_COORDINATOR;
/// - no leader yet, a node still catching up, or a write whose outcome is unknown (an offset
///   commit is idempotent: committing the same offsets again is safe): COORDINATOR_NOT_AVAILABLE;
/// - everything else as [`kafka_code`].
pub fn group_code(code: ErrorCode) -> i16 {
    use ErrorCode as E;
    match code {
        E::NOT_LEADER | E::SHUTTING_DOWN => NOT_COORDINATOR,
        E::LEADER_NOT_AVAILABLE | E::REQUEST_TIMED_OUT | E::LEADERSHIP_LOST => COORDINATOR_NOT_AVAILABLE,
        E::INTERNAL => UNKNOWN_SERVER_ERROR,
        other => kafka_code(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes a Kafka client retries (Kafka's `RetriableException` subclasses).
    const RETRIABLE: &[i16] = &[
        NOT_LEADER_OR_FOLLOWER,
        LEADER_NOT_AVAILABLE,
        REQUEST_TIMED_OUT,
        KAFKA_STORAGE_ERROR,
        NOT_CONTROLLER,
        NOT_COORDINATOR,
        COORDINATOR_NOT_AVAILABLE,
        COORDINATOR_LOAD_IN_PROGRESS,
        UNKNOWN_TOPIC_OR_PARTITION,
        CORRUPT_MESSAGE,
    ];

    #[test]
    fn refusals_before_proposing_and_unknown_outcomes_are_retriable_and_distinct() {
        // Definite: nothing proposed. The client refreshes metadata and retries.
        assert_eq!(kafka_code(ErrorCode::NOT_LEADER), NOT_LEADER_OR_FOLLOWER);
        assert_eq!(kafka_code(ErrorCode::SHUTTING_DOWN), NOT_LEADER_OR_FOLLOWER);
        // Indefinite: the batch may be appended; never reported as a clean refusal.
        for unknown in [ErrorCode::REQUEST_TIMED_OUT, ErrorCode::LEADERSHIP_LOST, ErrorCode::DUPLICATE_IN_FLIGHT, ErrorCode::INTERNAL] {
            assert_eq!(kafka_code(unknown), REQUEST_TIMED_OUT, "{unknown:?}");
        }
        for retriable in [ErrorCode::NOT_LEADER, ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::REQUEST_TIMED_OUT, ErrorCode::DISK_FULL] {
            assert!(RETRIABLE.contains(&kafka_code(retriable)), "{retriable:?} must be retriable for a Kafka client");
        }
        // Group APIs: "ask elsewhere or later" is what makes a Kafka client find the coordinator again.
        assert_eq!(group_code(ErrorCode::NOT_COORDINATOR), NOT_COORDINATOR);
        assert_eq!(group_code(ErrorCode::NOT_LEADER), NOT_COORDINATOR);
        for later in [ErrorCode::COORDINATOR_NOT_AVAILABLE, ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::REQUEST_TIMED_OUT] {
            assert_eq!(group_code(later), COORDINATOR_NOT_AVAILABLE, "{later:?}");
        }
        for (ours, theirs) in [
            (ErrorCode::UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID),
            (ErrorCode::ILLEGAL_GENERATION, ILLEGAL_GENERATION),
            (ErrorCode::REBALANCE_IN_PROGRESS, REBALANCE_IN_PROGRESS),
            (ErrorCode::FENCED_INSTANCE_ID, FENCED_INSTANCE_ID),
        ] {
            assert_eq!(group_code(ours), theirs, "{ours:?}");
        }
        // Invalid input is never retried.
        for fatal in [
            ErrorCode::INVALID_REQUEST,
            ErrorCode::RECORD_TOO_LARGE,
            ErrorCode::PRODUCER_FENCED,
            ErrorCode::OUT_OF_ORDER_SEQUENCE,
            ErrorCode::INVALID_RECORD,
        ] {
            assert!(!RETRIABLE.contains(&kafka_code(fatal)), "{fatal:?} must not be retried");
        }
    }
}
