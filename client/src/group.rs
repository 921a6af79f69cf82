//! Consumer groups, client side: the pieces a [`Consumer`](crate::Consumer) that subscribes
//! (rather than assigns) is built from, from the bytes up.
//!
//! - [`protocol`]: Kafka's ConsumerProtocol encoding of subscriptions and assignments, the
//!   opaque bytes of the classic protocol, so Kafka clients and ours can share a classic group;
//! - [`assignor`]: the classic protocol's client-side assignors (range, roundrobin,
//!   cooperative-sticky), run by the group's leader member;
//! - [`member`]: what the two member state machines share, and the change protocol between a
//!   machine and the consumer that applies its assignment changes;
//! - [`classic`] and [`kip848`]: the sans-IO member state machines of the classic protocol
//!   (JoinGroup/SyncGroup/Heartbeat) and of the consumer protocol (KIP-848,
//!   ConsumerGroupHeartbeat);
//!
//! (The IO around the machines and the consumer's group API build on these.)

pub mod assignor;
pub mod classic;
pub mod kip848;
pub mod member;
pub mod protocol;

/// A partition: (topic, partition number), as [`Consumer::assign`](crate::Consumer::assign) takes them.
pub type TopicPartition = (String, u32);

pub use assignor::Assignor;
pub use member::{AssignmentChange, ChangeKind, CommitIdentity};
