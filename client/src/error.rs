//! `ClientError`: every error the Producer, Consumer and Admin APIs return.
//!
//! Invariant: every error says whether it is *definite* (the request certainly had no effect:
//! for a produce, nothing was appended) or *indefinite* (it may or may not have taken effect),
//! through [`ClientError::is_definite`]. Server error codes take their definiteness from the one
//! shared table, [`ErrorCode::is_definite`]. Local failures are definite when nothing can have
//! reached a server (no connection, invalid argument, closed producer) and indefinite as soon as
//! a request may have been written to a socket (timeouts, a connection lost mid-request,
//! unreadable answers).

use std::sync::Arc;

use crate::batch::BatchError;
use crate::wire::proto::ErrorCode;

/// An error from the client APIs; see [`ClientError::is_definite`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error code; definite or not per [`ErrorCode::is_definite`].
    #[error("server error {code:?}: {message}")]
    Server { code: ErrorCode, message: String },

    /// No answer within the request timeout: the request may have taken effect (indefinite).
    #[error("no response within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },

    /// The connection closed with the request outstanding. `sent: false` means the request
    /// certainly never reached the socket (definite); `sent: true` that it may have (indefinite).
    #[error("connection to {address} lost (request possibly sent: {sent}): {reason}")]
    Disconnected { address: String, sent: bool, reason: String },

    /// A connection could not be opened or its handshake failed; nothing was sent (definite).
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },

    /// The node refused the connection for a reason no retry fixes: the two sides disagree on
    /// TLS (one speaks it, the other not; an untrusted or misnamed certificate). Definite.
    #[error("cannot connect to {address}: {reason}")]
    Refused { address: String, reason: String },

    /// An I/O error outside any request (definite: no request was in flight).
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),

    /// The server's answer could not be understood; the request may have taken effect (indefinite).
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// The caller passed something unusable; nothing was sent (definite).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The metadata names no leader for this partition (definite: nothing was sent).
    #[error("no leader known for {topic}/{partition}")]
    NoLeader { topic: String, partition: u32 },

    /// A record batch could not be built or a fetched one is corrupt (definite).
    #[error("record batch: {0}")]
    Batch(#[from] BatchError),

    /// A fetch position outside the partition's log (definite).
    #[error("offset {offset} is out of range for {topic}/{partition}: log start {log_start_offset}, high watermark {high_watermark}")]
    OffsetOutOfRange { topic: String, partition: u32, offset: u64, log_start_offset: u64, high_watermark: u64 },

    /// The producer gave up on a batch after a definite failure of every attempt: nothing of it
    /// was appended (definite).
    #[error("delivery timed out after {attempts} attempts, none of which can have appended the batch; last error: {last}")]
    DeliveryTimeout { attempts: u32, last: Box<ClientError> },

    /// The producer gave up on a batch after at least one attempt whose outcome is unknown: the
    /// batch may or may not have been appended (indefinite), whatever the last error says.
    #[error("delivery outcome unknown after {attempts} attempts (one may have appended the batch); last error: {last}")]
    DeliveryUnknown { attempts: u32, last: Box<ClientError> },

    /// The producer or consumer was closed before the operation could run (definite).
    #[error("the client is closed")]
    Closed,

    /// A group operation that needs a generation (a commit) while the member has none: it is
    /// joining or rebalancing. Nothing was sent (definite).
    #[error("not a member of group {group:?} now: {reason}")]
    NotMember { group: String, reason: String },

    /// A newly assigned partition has no committed offset and the reset policy is `Error`
    /// (definite: no position moved).
    #[error("no committed offset for {topic}/{partition} and the offset reset policy is error")]
    NoCommittedOffset { topic: String, partition: u32 },
}

impl ClientError {
    /// True when the operation certainly had no effect; false when it may have.
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Server { code, .. } => code.is_definite(),
            ClientError::Timeout { .. } | ClientError::Protocol(_) | ClientError::DeliveryUnknown { .. } => false,
            ClientError::Disconnected { sent, .. } => !sent,
            ClientError::Connect { .. }
            | ClientError::Refused { .. }
            | ClientError::Io(_)
            | ClientError::InvalidArgument(_)
            | ClientError::NoLeader { .. }
            | ClientError::Batch(_)
            | ClientError::OffsetOutOfRange { .. }
            | ClientError::DeliveryTimeout { .. }
            | ClientError::Closed
            | ClientError::NotMember { .. }
            | ClientError::NoCommittedOffset { .. } => true,
        }
    }

    /// True when the same request may succeed if retried (after a metadata refresh and a backoff).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::Timeout { .. } | ClientError::Disconnected { .. } | ClientError::Connect { .. } | ClientError::NoLeader { .. } => {
                true
            }
            _ => false,
        }
    }

    /// The server error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A server error from a response's code and message.
    pub fn server(code: ErrorCode, message: impl Into<String>) -> ClientError {
        assert!(code != ErrorCode::NONE, "ErrorCode::NONE is not an error");
        ClientError::Server { code, message: message.into() }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> ClientError {
        ClientError::Io(Arc::new(error))
    }
}

/// Shorthand for results of the client APIs.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: ErrorCode) -> ClientError {
        ClientError::server(code, "")
    }

    #[test]
    fn definiteness_table() {
        let cases: Vec<(ClientError, bool)> = vec![
            (server(ErrorCode::NOT_LEADER), true),
            (server(ErrorCode::OUT_OF_ORDER_SEQUENCE), true),
            (server(ErrorCode::DUPLICATE_IN_FLIGHT), true),
            (server(ErrorCode::REQUEST_TIMED_OUT), false),
            (server(ErrorCode::LEADERSHIP_LOST), false),
            (server(ErrorCode::INTERNAL), false),
            (ClientError::Timeout { timeout_ms: 5 }, false),
            (ClientError::Disconnected { address: "a".into(), sent: true, reason: "eof".into() }, false),
            (ClientError::Disconnected { address: "a".into(), sent: false, reason: "eof".into() }, true),
            (ClientError::Connect { address: "a".into(), reason: "refused".into() }, true),
            (ClientError::Refused { address: "a".into(), reason: "TLS handshake failed".into() }, true),
            (ClientError::Protocol("garbage".into()), false),
            (ClientError::InvalidArgument("x".into()), true),
            (ClientError::NoLeader { topic: "t".into(), partition: 0 }, true),
            (ClientError::DeliveryTimeout { attempts: 3, last: Box::new(server(ErrorCode::NOT_LEADER)) }, true),
            // Whatever the last attempt said, an earlier unknown outcome makes the whole unknown.
            (ClientError::DeliveryUnknown { attempts: 3, last: Box::new(server(ErrorCode::OUT_OF_ORDER_SEQUENCE)) }, false),
            (ClientError::Closed, true),
            (ClientError::NotMember { group: "g".into(), reason: "rebalancing".into() }, true),
            (ClientError::NoCommittedOffset { topic: "t".into(), partition: 0 }, true),
            (server(ErrorCode::NOT_COORDINATOR), true),
            (server(ErrorCode::STALE_MEMBER_EPOCH), true),
        ];
        for (error, definite) in cases {
            assert_eq!(error.is_definite(), definite, "{error}");
        }
    }

    #[test]
    fn retriable_follows_the_wire_table() {
        assert!(server(ErrorCode::NOT_LEADER).is_retriable());
        assert!(!server(ErrorCode::RECORD_TOO_LARGE).is_retriable());
        assert!(ClientError::Timeout { timeout_ms: 1 }.is_retriable());
        assert!(!ClientError::InvalidArgument("x".into()).is_retriable());
        // Issue 19: a TLS disagreement is answered at once, not retried until a timeout.
        assert!(ClientError::Connect { address: "a".into(), reason: "refused".into() }.is_retriable());
        assert!(!ClientError::Refused { address: "a".into(), reason: "TLS handshake failed".into() }.is_retriable());
    }
}
