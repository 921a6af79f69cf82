//! The consumer: reads assigned partitions from their leaders, in offset order, from positions
//! the caller sets with `seek` (or the `auto_offset_reset` default). With a `group_id` it can
//! instead `subscribe` and have its group assign partitions and remember committed offsets
//! (see [`membership`] and [`crate::group`]).
//!
//! Owns: the assignment and one position per assigned partition (the offset of the next record
//! to return). Invariants:
//! - Positions only move forward, and only past records returned to the caller: a poll that
//!   fails returns no records and moves no position, so nothing is skipped. Only a `seek`, or
//!   a group member's reset of a position out of the log's range (its group's
//!   `group_offset_reset`, as Kafka's `auto.offset.reset`), moves one elsewhere.
//! - Every fetched batch is validated (CRC included) before any of its records is returned;
//!   records below the position (a batch that starts earlier) are skipped, never repeated.
//!
//! Cost: at most one Fetch in flight per assigned partition, all at once (pipelined on the
//! leaders' connections), each a long poll of up to `wait_ms_max`. A poll returns as soon as one
//! partition has records; the other fetches stay in flight for the next poll, so an idle
//! partition's long poll never delays a busy one. Decoding is one CRC pass per batch plus a
//! varint walk per record.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use std::task::Poll;
use tokio::time::Instant;

use crate::admin::{list_offsets, OffsetQuery};
use crate::batch::{self, BatchError, Header};
use crate::cluster::{leader_hint, Backoff, ClusterConfig, ClusterSession};
use crate::error::{ClientError, Result};
use crate::planted::Planted;
use crate::wire::proto::{ErrorCode, FetchRequest, FetchResponse, Request_oneof_body as RequestBody, Response_oneof_body as ResponseBody};

mod membership;

pub use membership::{CommitHandle, GroupEvent, GroupProtocol, OffsetReset, RebalanceListener, GROUP_EVENTS_MAX};

/// Most partitions one consumer may be assigned.
pub const ASSIGNMENT_PARTITIONS_MAX: usize = 4096;
/// How long one step of [`Consumer::stream`] polls for.
const STREAM_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Where to read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The log start offset.
    Beginning,
    /// The high watermark: only records committed from now on.
    End,
    /// This offset.
    At(u64),
}

/// Consumer settings; start from `ConsumerConfig::default()`.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub cluster: ClusterConfig,
    /// Most batch bytes one partition's fetch returns.
    pub bytes_max: u32,
    /// Long poll: how long the leader waits for `bytes_min`.
    pub wait_ms_max: u32,
    pub bytes_min: u32,
    /// Where a partition assigned without a `seek` starts.
    pub auto_offset_reset: Offset,
    /// The consumer group to join (`subscribe`) or commit for; `None`: no group.
    pub group_id: Option<String>,
    /// A static member's stable id: a quick restart with the same id keeps its partitions.
    pub group_instance_id: Option<String>,
    pub group_protocol: GroupProtocol,
    /// Consumer protocol: the coordinator's assignor to use ("uniform", "range"); `None`: its default.
    pub server_assignor: Option<String>,
    /// Classic protocol: the assignors offered, in order of preference.
    pub assignors: Vec<crate::group::Assignor>,
    /// Classic: the session the coordinator keeps without a heartbeat. Both: a member with no
    /// acknowledged heartbeat for this long takes its partitions as lost.
    pub session_timeout: Duration,
    /// Classic: how often the member heartbeats (the consumer protocol's coordinator says).
    pub heartbeat_interval: Duration,
    /// The longest the application may go between polls before the member leaves its group;
    /// also the rebalance timeout.
    pub max_poll_interval: Duration,
    /// Commit the positions of earlier polls every `auto_commit_interval` (at the start of a
    /// poll), before a revocation, and on close.
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// Where a group member starts a partition its group has no committed offset for, or one
    /// whose position is out of the log's range (Kafka's `auto.offset.reset`).
    pub group_offset_reset: OffsetReset,
    /// How often a pattern subscription (and a classic leader's view of partition counts) is
    /// refreshed.
    pub metadata_refresh_interval: Duration,
    /// Each fetch asks for a read barrier first (raft ReadIndex): the high watermark a poll
    /// reports then covers every write acknowledged before the poll began, whichever replica
    /// answers (L12 a). Costs the leader a heartbeat round per fetch; off by default, as a
    /// Kafka consumer's high watermark may lag too.
    pub fresh_high_watermark: bool,
    /// Planted bugs (the simulator's catalogue); off by default and in every normal build.
    pub planted: crate::planted::Planted,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            cluster: ClusterConfig::default(),
            bytes_max: 1024 * 1024,
            wait_ms_max: 500,
            bytes_min: 1,
            auto_offset_reset: Offset::End,
            group_id: None,
            group_instance_id: None,
            group_protocol: GroupProtocol::default(),
            server_assignor: None,
            assignors: membership::default_assignors(),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            group_offset_reset: OffsetReset::default(),
            metadata_refresh_interval: Duration::from_secs(30),
            fresh_high_watermark: false,
            planted: crate::planted::Planted::default(),
        }
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch (CreateTime or LogAppendTime, per the topic).
    pub timestamp: i64,
    /// The idempotent producer that wrote it and the record's own sequence number (its batch's
    /// base sequence plus its position in the batch); `None` for non-idempotent records. Kafka's
    /// consumer does not expose this; checkers of the idempotence guarantees (P1, P3, P4) need it.
    pub producer: Option<RecordProducer>,
}

/// Who wrote a record, for an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub sequence: i32,
}

/// Reads records from assigned partitions.
///
/// ```no_run
/// # async fn example() -> Result<(), odradek_client::ClientError> {
/// use std::time::Duration;
/// use odradek_client::{Consumer, ConsumerConfig, Offset};
///
/// let mut consumer = Consumer::new(&["127.0.0.1:9092"], ConsumerConfig::default())?;
/// consumer.assign(vec![("orders".to_string(), 0)])?;
/// consumer.seek("orders", 0, Offset::Beginning).await?;
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}/{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    cluster: ClusterSession,
    config: ConsumerConfig,
    assignment: Vec<(String, u32)>,
    positions: BTreeMap<(String, u32), u64>,
    /// At most one fetch per assigned partition, kept across polls: a poll returns as soon as
    /// one partition has records, and the other partitions' long polls carry on.
    fetches: Vec<PendingFetch>,
    backoff: Backoff,
    /// The group side, with a `group_id`.
    group: Option<membership::GroupState>,
    /// Counts the polls started: a fetch remembers the poll that started it, so a poll reports
    /// only high watermarks read after it began.
    polls_started: u64,
}

/// A fetch in flight for one partition, from `offset`.
struct PendingFetch {
    key: (String, u32),
    offset: u64,
    /// The poll (of `Consumer::polls_started`) during which it was sent.
    poll: u64,
    answer: BoxFuture<'static, Result<FetchResponse>>,
}

/// What one poll read: the records and, per partition, the high watermark the partition's
/// replica reported with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Polled {
    pub records: Vec<ConsumerRecord>,
    /// (topic, partition) -> the high watermark of the last answer for that partition among the
    /// fetches this poll sent (a fetch sent by an earlier poll, still in flight when this one
    /// began, may have been answered before it: its high watermark is left out). The server
    /// promises every record of a listed partition lies below its high watermark (CHECKLISTS
    /// L12 c); the client passes on what it was told.
    pub high_watermarks: BTreeMap<(String, u32), u64>,
}

impl std::fmt::Debug for PendingFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFetch").field("key", &self.key).field("offset", &self.offset).finish()
    }
}

impl Consumer {
    /// A consumer with no assignment; connects on first use. Fails on an invalid `group_id`.
    pub fn new(bootstrap: &[&str], config: ConsumerConfig) -> Result<Consumer> {
        let cluster = ClusterSession::new(bootstrap, config.cluster.clone())?;
        Consumer::with_cluster(cluster, config)
    }

    /// A consumer sharing a cluster handle. Fails on an invalid `group_id`.
    pub fn with_cluster(cluster: ClusterSession, config: ConsumerConfig) -> Result<Consumer> {
        let backoff = cluster.backoff();
        let group = membership::GroupState::new(&cluster, &config)?;
        Ok(Consumer {
            cluster,
            config,
            assignment: Vec::new(),
            positions: BTreeMap::new(),
            fetches: Vec::new(),
            backoff,
            group,
            polls_started: 0,
        })
    }

    /// Replaces the assignment. Partitions that stay keep their positions. Refused while
    /// subscribed: the group assigns then.
    pub fn assign(&mut self, partitions: Vec<(String, u32)>) -> Result<()> {
        if self.is_subscribed() {
            return Err(ClientError::InvalidArgument("assign while subscribed: the group assigns".into()));
        }
        if partitions.len() > ASSIGNMENT_PARTITIONS_MAX {
            return Err(ClientError::InvalidArgument(format!(
                "{} partitions assigned; at most {ASSIGNMENT_PARTITIONS_MAX}",
                partitions.len()
            )));
        }
        let mut assignment = partitions;
        assignment.sort();
        assignment.dedup();
        self.positions.retain(|key, _| assignment.contains(key));
        self.fetches.retain(|fetch| assignment.contains(&fetch.key));
        self.assignment = assignment;
        Ok(())
    }

    /// The assigned partitions, sorted.
    pub fn assignment(&self) -> &[(String, u32)] {
        &self.assignment
    }

    /// Sets where the next poll reads `topic`/`partition` from, and returns that offset.
    pub async fn seek(&mut self, topic: &str, partition: u32, offset: Offset) -> Result<u64> {
        let key = (topic.to_string(), partition);
        if !self.assignment.contains(&key) {
            return Err(ClientError::InvalidArgument(format!("{topic}/{partition} is not assigned")));
        }
        let position = match offset {
            Offset::At(offset) => offset,
            Offset::Beginning => list_offsets(&self.cluster, topic, partition, OffsetQuery::Earliest).await?.offset,
            Offset::End => list_offsets(&self.cluster, topic, partition, OffsetQuery::Latest).await?.offset,
        };
        self.positions.insert(key, position);
        Ok(position)
    }

    /// The offset of the next record a poll would return, once known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions.get(&(topic.to_string(), partition)).copied()
    }

    /// Fetches from every assigned partition until some records arrive or `timeout` passes
    /// (then `Ok` and empty). Retriable errors (leader moved, connection lost) are retried
    /// within the timeout; other errors, OFFSET_OUT_OF_RANGE among them, are returned and move
    /// no position — but a subscribed consumer meets an out-of-range position with its group's
    /// reset policy (`group_offset_reset`: earliest, latest, or this error).
    ///
    /// Subscribed, a poll also applies the group's assignment changes first (callbacks,
    /// auto-commit of revoked partitions, start positions), auto-commits what earlier polls
    /// returned when the interval is up, and returns the member's fatal error if it stopped.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        Ok(self.poll_with_watermarks(timeout).await?.records)
    }

    /// [`Consumer::poll`], with the high watermark each partition's replica reported (Kafka's
    /// consumer keeps it internally for its lag metrics; checkers of L12 need it per poll).
    pub async fn poll_with_watermarks(&mut self, timeout: Duration) -> Result<Polled> {
        let deadline = Instant::now() + timeout;
        self.polls_started += 1;
        let mut high_watermarks = BTreeMap::new();
        let auto_commit_at_end = self.group_poll_start();
        loop {
            self.group_apply_changes().await?;
            for (topic, partition) in self.assignment.clone() {
                if self.position(&topic, partition).is_none() {
                    self.seek(&topic, partition, self.config.auto_offset_reset).await?;
                }
            }
            self.start_fetches();
            if self.fetches.is_empty() {
                if self.group_signalled(deadline).await {
                    continue; // the group may have assigned something
                }
                tokio::time::sleep_until(deadline).await;
                return Ok(Polled { records: Vec::new(), high_watermarks });
            }
            let outcomes = match self.next_answers_until(deadline).await {
                Some(outcomes) => outcomes,
                None if Instant::now() < deadline => continue, // the group signalled
                None => return Ok(Polled { records: Vec::new(), high_watermarks }), // the fetches stay in flight for the next poll
            };

            let mut records = Vec::new();
            let mut positions = Vec::new();
            let mut retriable = None;
            let mut fatal = None;
            let mut out_of_range = Vec::new();
            for (key, offset, poll, outcome) in outcomes {
                match outcome {
                    Ok(fetched) => match decode_batches_with(&key.0, key.1, offset, &fetched.batches, &mut records, self.config.planted) {
                        Ok(position) => {
                            if poll == self.polls_started {
                                high_watermarks.insert(key.clone(), fetched.high_watermark);
                            }
                            positions.push((key, position));
                        }
                        Err(error) => fatal = Some(error),
                    },
                    Err(error) if error.is_retriable() => retriable = Some(error),
                    // A group member applies its group's reset policy (below); a consumer that
                    // assigned by hand gets the error and seeks.
                    Err(ClientError::OffsetOutOfRange { .. }) if self.is_subscribed() => out_of_range.push((key, offset)),
                    Err(error) => fatal = Some(error),
                }
            }
            if let Some(error) = fatal {
                // No position moves: the records decoded alongside are fetched again later.
                return Err(error);
            }
            let mut lagging = false;
            for (key, offset) in &out_of_range {
                // Fails the poll (no position moved) under the `Error` policy.
                lagging |= !self.group_reset_out_of_range(key, *offset).await?;
            }
            for (key, position) in positions {
                assert!(position >= self.positions[&key], "positions only move forward");
                self.positions.insert(key, position);
            }
            if !records.is_empty() {
                self.backoff.reset();
                if auto_commit_at_end {
                    // Planted bug (C4): commits the positions after the records returned now.
                    self.group_auto_commit();
                }
                return Ok(Polled { records, high_watermarks });
            }
            if Instant::now() >= deadline {
                return Ok(Polled { records, high_watermarks });
            }
            if let Some(error) = &retriable {
                tracing::debug!(%error, "fetch failed; retrying");
            }
            if retriable.is_some() || lagging {
                // `lagging`: a replica answered out of range what the leader holds; it catches up.
                let delay = self.backoff.next_delay().min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Starts a fetch for every assigned partition that has none in flight from its position
    /// (one from an older position, before a `seek`, is dropped).
    fn start_fetches(&mut self) {
        let positions = &self.positions;
        self.fetches.retain(|fetch| positions.get(&fetch.key) == Some(&fetch.offset));
        for key in &self.assignment {
            if self.fetches.iter().any(|fetch| &fetch.key == key) {
                continue;
            }
            let offset = self.positions[key];
            let answer = fetch(self.cluster.clone(), self.config.clone(), key.0.clone(), key.1, offset).boxed();
            self.fetches.push(PendingFetch { key: key.clone(), offset, poll: self.polls_started, answer });
        }
        assert!(self.fetches.len() <= self.assignment.len(), "at most one fetch per assigned partition");
    }

    /// The finished fetches, or `None` at `deadline` or when the group signals first.
    async fn next_answers_until(&mut self, deadline: Instant) -> Option<Vec<Answered>> {
        let session = self.group.as_ref().and_then(membership::GroupState::session);
        let Some(session) = session else {
            return tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.next_answers()).await.ok();
        };
        let fetches = &mut self.fetches;
        // Biased (fetch answers first): a simulation replays the same branch order.
        tokio::select! {
            biased;
            outcomes = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), next_answers(fetches)) => outcomes.ok(),
            _ = session.changed() => None,
        }
    }

    /// Waits for at least one fetch to finish and takes every finished one.
    async fn next_answers(&mut self) -> Vec<Answered> {
        next_answers(&mut self.fetches).await
    }

    /// The records of the assigned partitions as a stream, polling as needed. An error is
    /// yielded once, then the stream goes on polling (after a backoff).
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold((self, VecDeque::new(), false), |(consumer, mut buffered, errored)| async move {
            if errored {
                tokio::time::sleep(consumer.config.cluster.retry_backoff).await;
            }
            loop {
                if let Some(record) = buffered.pop_front() {
                    return Some((Ok(record), (consumer, buffered, false)));
                }
                match consumer.poll(STREAM_POLL_INTERVAL).await {
                    Ok(records) => buffered.extend(records),
                    Err(error) => return Some((Err(error), (consumer, buffered, true))),
                }
            }
        })
    }
}

/// A finished fetch: its partition, the offset it read from, the poll that sent it, the answer.
type Answered = ((String, u32), u64, u64, Result<FetchResponse>);

/// Waits for at least one of `fetches` to finish and takes every finished one.
async fn next_answers(fetches: &mut Vec<PendingFetch>) -> Vec<Answered> {
    assert!(!fetches.is_empty());
    futures::future::poll_fn(|cx| {
        let mut finished = Vec::new();
        let mut index = 0;
        while index < fetches.len() {
            match fetches[index].answer.as_mut().poll(cx) {
                Poll::Ready(outcome) => {
                    let fetch = fetches.swap_remove(index);
                    finished.push((fetch.key, fetch.offset, fetch.poll, outcome));
                }
                Poll::Pending => index += 1,
            }
        }
        if finished.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(finished)
        }
    })
    .await
}

/// One Fetch attempt against the partition's leader; a server error comes back as `Err`, with
/// the cache told about the leader hint.
async fn fetch(cluster: ClusterSession, config: ConsumerConfig, topic: String, partition: u32, offset: u64) -> Result<FetchResponse> {
    let wait_ms = config.wait_ms_max;
    let outcome = async {
        let connection = cluster.leader_connection(&topic, partition).await.map_err(|error| (error, 0))?;
        let mut request = FetchRequest::new();
        request.topic = topic.clone();
        request.partition = partition;
        request.offset = offset;
        request.bytes_max = config.bytes_max;
        request.wait_ms_max = wait_ms;
        request.bytes_min = config.bytes_min;
        request.fresh_high_watermark = config.fresh_high_watermark;
        let timeout = config.cluster.connection.request_timeout + Duration::from_millis(u64::from(wait_ms));
        let answer = connection.start_with_timeout(RequestBody::fetch(request), timeout).await.map_err(|error| (error, 0))?;
        let response = answer.await.map_err(|error| (error, 0))?;
        let hint = leader_hint(&response);
        let fetched = match response.body {
            Some(ResponseBody::fetch(fetched)) => Some(fetched),
            _ => None,
        };
        match (response.error, fetched) {
            (ErrorCode::NONE, Some(fetched)) => Ok(fetched),
            (ErrorCode::NONE, None) => Err((ClientError::Protocol("Fetch answered without batches".into()), 0)),
            (ErrorCode::OFFSET_OUT_OF_RANGE, fetched) => {
                let fetched = fetched.unwrap_or_default();
                Err((
                    ClientError::OffsetOutOfRange {
                        topic: topic.clone(),
                        partition,
                        offset,
                        log_start_offset: fetched.log_start_offset,
                        high_watermark: fetched.high_watermark,
                    },
                    0,
                ))
            }
            (code, _) => Err((ClientError::server(code, response.error_message), hint)),
        }
    };
    let outcome: Result<FetchResponse, (ClientError, u64)> = outcome.await;
    outcome.map_err(|(error, hint)| {
        cluster.note_error(&topic, partition, &error, hint);
        error
    })
}

/// Decodes concatenated batches into `records` from `position` on; returns the new position.
/// A batch cut short at the end (the fetch's byte limit) is left for the next fetch.
pub fn decode_batches(topic: &str, partition: u32, position: u64, batches: &[u8], records: &mut Vec<ConsumerRecord>) -> Result<u64> {
    decode_batches_with(topic, partition, position, batches, records, Planted::default())
}

/// [`decode_batches`] with a consumer's planted bugs (all off outside the simulator).
fn decode_batches_with(
    topic: &str,
    partition: u32,
    position: u64,
    batches: &[u8],
    records: &mut Vec<ConsumerRecord>,
    planted: Planted,
) -> Result<u64> {
    let records_before = records.len();
    let mut rest = batches;
    let mut position_next = position;
    while !rest.is_empty() {
        let batch_bytes = match batch::batch_bytes_len(rest) {
            Ok(batch_bytes) if batch_bytes <= rest.len() => batch_bytes,
            Ok(_) | Err(BatchError::Truncated { .. }) => break,
            Err(error) => {
                records.truncate(records_before);
                return Err(error.into());
            }
        };
        let (batch, after) = rest.split_at(batch_bytes);
        rest = after;
        let records_before_batch = records.len();
        let decoded = decode_batch(topic, partition, position_next, batch, records);
        if planted.compressed_batch_last_record_dropped()
            && decoded.is_ok()
            && batch::decode(batch).is_ok_and(|decoded| decoded.header().compression() != 0)
            && records.len() > records_before_batch
        {
            records.pop(); // planted: the last decompressed record is lost, the position moves on
        }
        match decoded {
            Ok(next) => position_next = next,
            Err(error) => {
                records.truncate(records_before);
                return Err(error);
            }
        }
    }
    Ok(position_next)
}

/// Decodes one whole batch; records below `position` are skipped.
fn decode_batch(topic: &str, partition: u32, position: u64, batch: &[u8], records: &mut Vec<ConsumerRecord>) -> Result<u64> {
    let decoded = batch::decode(batch)?;
    let header = *decoded.header();
    let offset_next = u64::try_from(header.offset_last()).expect("validated offsets are not negative") + 1;
    if offset_next <= position {
        return Ok(position);
    }
    if header.is_control() {
        return Ok(offset_next);
    }
    for record in decoded.records() {
        let record = record?;
        let offset = u64::try_from(record.offset).expect("validated offsets are not negative");
        if offset < position {
            continue;
        }
        let owned = record.to_record();
        let producer = (header.producer_id >= 0).then(|| {
            let delta = i32::try_from(record.offset - header.base_offset).expect("validated: a batch's deltas fit i32");
            RecordProducer {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                sequence: crate::producer::sequence_add(header.base_sequence, delta),
            }
        });
        records.push(ConsumerRecord {
            topic: topic.to_string(),
            partition,
            offset,
            key: owned.key,
            value: owned.value,
            headers: owned.headers,
            timestamp: owned.timestamp,
            producer,
        });
    }
    Ok(offset_next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{set_base_offset, BatchBuilder, Record};

    #[test]
    fn records_carry_their_producer_and_sequence_wrapping_like_kafka() {
        let mut builder = BatchBuilder::new().producer(7, 2, i32::MAX - 1);
        for value in ["a", "b", "c"] {
            builder.push(&Record { key: None, value: Some(Bytes::from(value)), headers: vec![], timestamp: 5 }).unwrap();
        }
        let mut bytes = builder.build().to_vec();
        set_base_offset(&mut bytes, 40);
        let mut records = Vec::new();
        decode_batches("t", 0, 41, &bytes, &mut records).unwrap();
        let seen: Vec<(u64, Option<RecordProducer>)> = records.iter().map(|r| (r.offset, r.producer)).collect();
        let producer = |sequence| Some(RecordProducer { producer_id: 7, producer_epoch: 2, sequence });
        assert_eq!(seen, vec![(41, producer(i32::MAX)), (42, producer(0))], "record 40 is below the position");
        let mut plain = Vec::new();
        decode_batches("t", 0, 0, &batch_at(0, &["x"]), &mut plain).unwrap();
        assert_eq!(plain[0].producer, None);
    }

    fn batch_at(offset_base: i64, values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for value in values {
            builder.push(&Record { key: None, value: Some(Bytes::from(value.to_string())), headers: vec![], timestamp: 5 }).unwrap();
        }
        let mut bytes = builder.build().to_vec();
        set_base_offset(&mut bytes, offset_base);
        bytes
    }

    fn values(records: &[ConsumerRecord]) -> Vec<(u64, String)> {
        records.iter().map(|record| (record.offset, String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap())).collect()
    }

    #[test]
    fn decodes_concatenated_batches_skipping_below_the_position() {
        let mut bytes = batch_at(10, &["a", "b", "c"]);
        bytes.extend(batch_at(13, &["d", "e"]));
        let mut records = Vec::new();
        let position = decode_batches("t", 0, 11, &bytes, &mut records).unwrap();
        assert_eq!(position, 15);
        assert_eq!(values(&records), [(11, "b".into()), (12, "c".into()), (13, "d".into()), (14, "e".into())]);
    }

    #[test]
    fn a_truncated_last_batch_waits_for_the_next_fetch() {
        let mut bytes = batch_at(0, &["a"]);
        let second = batch_at(1, &["b", "c"]);
        bytes.extend_from_slice(&second[..second.len() - 4]);
        let mut records = Vec::new();
        assert_eq!(decode_batches("t", 0, 0, &bytes, &mut records).unwrap(), 1);
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn a_corrupt_batch_fails_the_whole_decode() {
        let mut bytes = batch_at(0, &["a"]);
        let mut second = batch_at(1, &["b"]);
        let last = second.len() - 1;
        second[last] ^= 0x01;
        bytes.extend(second);
        let mut records = Vec::new();
        let error = decode_batches("t", 0, 0, &bytes, &mut records).unwrap_err();
        assert!(matches!(error, ClientError::Batch(BatchError::CrcMismatch { .. })), "{error}");
        assert!(records.is_empty(), "no record of a failed decode is returned");
    }
}
