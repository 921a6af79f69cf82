//! `odradek-client`: the client side of Odradek — producer, consumer and admin APIs over the
//! Odradek wire protocol.
//!
//! Modules, from the wire up:
//! - [`batch`]: the Kafka RecordBatch v2 codec that producers build, brokers validate and
//!   consumers read, the same bytes all the way but baseOffset, which a broker fills in on fetch;
//! - [`wire`]: the protocol (protobuf messages in length-prefixed frames, pipelined by request
//!   id, a versioned handshake) and the one table of definite and indefinite errors;
//! - [`connection`]: one pipelined connection to one broker;
//! - [`cluster`]: the metadata cache and connection pool every API shares, with retries;
//! - [`partitioner`]: Kafka-compatible key hashing (murmur2) and sticky keyless partitioning;
//! - [`producer`], [`consumer`], [`admin`]: the APIs;
//! - [`group`]: consumer groups (the ConsumerProtocol codec, assignors, the sans-IO member state
//!   machines of the classic and the consumer protocol, and their IO), behind
//!   [`Consumer::subscribe`] and the group operations of [`Admin`];
//! - [`error`]: [`ClientError`], which always says whether a failure is definite (certainly
//!   no effect) or indefinite (maybe applied);
//! - [`clock`]: the only reader of the wall clock (record timestamps); [`random`]: the only
//!   reader of randomness (member ids);
//! - [`scram`]: SASL/SCRAM-SHA-256/512 authentication, both sides, sans-IO;
//! - [`planted`]: the client's planted bugs (simulation builds only).
//!
//! Everything runs on `tokio`, which is the madsim simulator's tokio under `--cfg madsim`.
//!
//! ```no_run
//! # async fn example() -> Result<(), odradek_client::ClientError> {
//! use std::time::Duration;
//! use odradek_client::{Admin, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord, TopicConfig};
//!
//! let bootstrap = ["127.0.0.1:9092"];
//! Admin::new(&bootstrap)?.create_topic("demo", 3, 3, TopicConfig::default()).await?;
//!
//! let producer = Producer::new(&bootstrap, ProducerConfig::default()).await?;
//! let delivery = producer.send(ProducerRecord::new("demo", "hello").key("k")).await?;
//! let metadata = delivery.await?;
//!
//! let mut consumer = Consumer::new(&bootstrap, ConsumerConfig::default())?;
//! consumer.assign(vec![("demo".to_string(), metadata.partition)])?;
//! consumer.seek("demo", metadata.partition, Offset::Beginning).await?;
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod batch;
pub mod clock;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod partitioner;
pub mod planted;
pub mod producer;
pub mod random;
pub mod scram;
pub mod tls;
pub mod wire;

pub use admin::{Admin, ClusterDescription, ListedOffset, OffsetQuery, SettingChange, TopicConfig, TopicSettingValue};
pub use batch::Header;
pub use cluster::{ClusterConfig, ClusterSession, Metadata, PartitionInfo, TopicInfo};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{
    CommitHandle, Consumer, ConsumerConfig, ConsumerRecord, GroupEvent, GroupProtocol, Offset, OffsetReset, Polled, RebalanceListener,
    RecordProducer,
};
pub use error::ClientError;
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
