//! Consumer groups, client side: the pieces a [`Consumer`](crate::Consumer) that subscribes
//! (rather than assigns) is built from, from the bytes up.
//!
//! - [`protocol`]: Kafka's ConsumerProtocol encoding of subscriptions and assignments, the
//!   opaque bytes of the classic protocol, so Kafka clients and ours can share a classic group;
//! - [`assignor`]: the classic protocol's client-side assignors (range, roundrobin,
//!   cooperative-sticky), run by the group's leader member;
//!
//! (The member state machines and the consumer's group API build on these.)

pub mod assignor;
pub mod protocol;

/// A partition: (topic, partition number), as [`Consumer::assign`](crate::Consumer::assign) takes them.
pub type TopicPartition = (String, u32);

pub use assignor::Assignor;
