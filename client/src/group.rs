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
//! - [`coordinator`]: finding the group's coordinator and sending it requests (IO);
//! - [`driver`]: the spawned task that steps a member machine (heartbeats keep going between
//!   polls) (IO);
//! - [`offsets`]: OffsetCommit and OffsetFetch (IO), and the record of every commit
//!   ([`CommitOutcome`]) the checkers read;
//! - [`admin`]: the group operations of [`Admin`](crate::Admin).
//!
//! The example `client/examples/group_consumer.rs` subscribes, polls and commits:
//!
//! ```no_run
//! # async fn example() -> Result<(), odradek_client::ClientError> {
//! use std::time::Duration;
//! use odradek_client::{Consumer, ConsumerConfig};
//!
//! let config = ConsumerConfig { group_id: Some("billing".into()), enable_auto_commit: false, ..ConsumerConfig::default() };
//! let mut consumer = Consumer::new(&["127.0.0.1:9092"], config)?;
//! consumer.subscribe(["orders"])?;
//! loop {
//!     let records = consumer.poll(Duration::from_secs(1)).await?;
//!     for record in &records {
//!         println!("{}/{}@{}", record.topic, record.partition, record.offset);
//!     }
//!     if !records.is_empty() {
//!         consumer.commit().await?; // what this poll (and every earlier one) returned
//!     }
//! #   break;
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod assignor;
pub mod classic;
pub mod coordinator;
pub mod driver;
pub mod kip848;
pub mod member;
pub mod offsets;
pub mod protocol;

/// A partition: (topic, partition number), as [`Consumer::assign`](crate::Consumer::assign) takes them.
pub type TopicPartition = (String, u32);

pub use assignor::Assignor;
pub use member::{AssignmentChange, ChangeKind, CommitIdentity};
pub use offsets::CommitOutcome;
