//! One partition's state on a replica: the committed offsets (high watermark, log start) and
//! the idempotent-producer table, with the leader's admission rules for produce batches.
//!
//! The server calls [`PartitionState::apply`] for every committed entry of the partition's raft
//! group, in index order (also on restart, replaying the log), and on the leader
//! [`PartitionState::admit`] for every produce batch right before proposing it, inside the raft
//! loop, so admission and proposing are one atomic step; [`PartitionState::undo_admit`] when
//! raft then refused the proposal.
//!
//! Admission is decided against the committed table plus the batches admitted in the current
//! term and not yet applied ("pending"). Once the leader has applied an entry of its own term,
//! every entry of earlier terms in its log is applied (they all precede that entry), and every
//! later entry of its log is one it proposed in this term, i.e. pending. So committed + pending
//! is the producer state of the leader's whole log, uncommitted suffix included (DESIGN.md,
//! "Idempotent producer"). Before that point the leader may hold unapplied entries of earlier
//! terms that it knows nothing about, so it answers `NotReady` (a definite, retriable error).
//!
//! Invariants (checked by the tests in `partition/tests.rs`):
//! - P1/P2: a batch (producer id, epoch, base sequence) is appended at most once; a retry of a
//!   committed batch gets the offset the original was committed at.
//! - P3: per producer and epoch, sequences in log order are contiguous (wrapping at `i32::MAX`).
//! - P4: epochs per producer never decrease in log order.
//! - P5: the committed table is a function of the committed log alone: replaying the same
//!   entries into a fresh state rebuilds it (restart), equal on every replica. Where retention
//!   or a snapshot took the log's first entries, the table as of some index at or after the log
//!   start ([`PartitionState::producer_table`], the group's start state, see
//!   `odradek_log::StartState`) is restored first and the replay skips its part of the entries
//!   up to that index ([`PartitionState::load_producers`]): the same table again. Without it a
//!   producer whose batches were all deleted would be forgotten, and a late retry of its first
//!   batch (sequence 0) appended a second time.
//! - Offsets: every entry's `base_offset` equals the high watermark before it (Log Matching makes
//!   it equal on every replica), and only data entries move it.
//!
//! Cost sketch: per producer, [`PRODUCER_BATCHES_KEPT`] batches of 16 bytes plus map overhead,
//! about 200 bytes; [`PRODUCERS_MAX`] bounds a partition's table at about 2 MiB. Admission scans
//! the producer's window and the pending list (bounded by [`PENDING_BATCHES_MAX`], in practice by
//! raft's uncommitted-bytes limit: a few dozen batches), well under a microsecond per batch.

use std::collections::{BTreeMap, VecDeque};

use odradek_client::batch::BatchHeader;
use odradek_client::wire::proto::ErrorCode;
use odradek_log::EntryKind;

/// Batches remembered per producer for de-duplication (Kafka's window, which its clients rely
/// on: at most 5 requests in flight per connection).
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// Producers a partition remembers. Beyond it, the producer that appended least recently is
/// forgotten (deterministically: by the index of its last batch), as Kafka expires idle
/// producer ids; its next batch must then start a new epoch or sequence 0, else it gets
/// `UnknownProducerId`.
pub const PRODUCERS_MAX: usize = 10_000;
/// Batches admitted and not yet applied, at most; beyond it admission answers `NotReady`
/// (retriable) until some commit.
pub const PENDING_BATCHES_MAX: usize = 1 << 14;

/// A command in a data partition's raft log (an `EntryKind::Command` entry; the offsets
/// topic's partitions carry the coordinator's records there instead and never these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionCommand {
    /// Kafka's DeleteRecords: the log start moves up to `before`.
    DeleteRecords { before: u64 },
}

/// The first byte of an encoded [`PartitionCommand::DeleteRecords`].
const COMMAND_DELETE_RECORDS: u8 = 1;
const COMMAND_DELETE_RECORDS_BYTES: usize = 9;

impl PartitionCommand {
    pub fn encode(self) -> Vec<u8> {
        match self {
            PartitionCommand::DeleteRecords { before } => {
                let mut out = Vec::with_capacity(COMMAND_DELETE_RECORDS_BYTES);
                out.push(COMMAND_DELETE_RECORDS);
                out.extend_from_slice(&before.to_be_bytes());
                out
            }
        }
    }

    /// `None` for bytes that are no command of this version (ignored with a warning by apply).
    pub fn decode(payload: &[u8]) -> Option<PartitionCommand> {
        match payload {
            [COMMAND_DELETE_RECORDS, rest @ ..] if payload.len() == COMMAND_DELETE_RECORDS_BYTES => {
                Some(PartitionCommand::DeleteRecords { before: u64::from_be_bytes(rest.try_into().ok()?) })
            }
            _ => None,
        }
    }
}

/// The producer fields of a record batch header that admission looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// At least 1 (a parsed header has 1..=BATCH_RECORDS_MAX records).
    pub record_count: u32,
}

impl BatchInfo {
    /// From a header that [`BatchHeader::parse`] accepted.
    pub fn from_header(header: &BatchHeader) -> BatchInfo {
        let record_count = u32::try_from(header.record_count).expect("a parsed batch has a positive records count");
        assert!(record_count >= 1, "a parsed batch has at least one record");
        BatchInfo {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            record_count,
        }
    }

    /// The sequence the producer's next batch must start at.
    pub fn sequence_next(&self) -> i32 {
        sequence_after(self.base_sequence, self.record_count)
    }
}

/// The sequence after `record_count` records starting at `base_sequence`: sequences wrap from
/// `i32::MAX` to 0, as Kafka's do.
pub fn sequence_after(base_sequence: i32, record_count: u32) -> i32 {
    let modulus = i64::from(i32::MAX) + 1;
    i32::try_from((i64::from(base_sequence) + i64::from(record_count)).rem_euclid(modulus)).expect("reduced modulo 2^31")
}

/// What the leader should do with an admitted batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Propose it.
    Append,
    /// A retry of a committed batch: answer success with the original offset, append nothing.
    Duplicate { base_offset: u64 },
}

/// Why a batch is refused. Every one is definite: nothing was appended by this attempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// This leader has not yet applied an entry of its own term: its producer table may miss
    /// entries of earlier terms still in its log.
    #[error("the leader is still applying entries of earlier terms")]
    NotReady,
    /// A retry of a batch admitted in this term and not yet applied.
    #[error("the first attempt of this batch is still being replicated")]
    DuplicateInFlight,
    #[error("out-of-order sequence: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("producer fenced: the current epoch is {current}, the batch has {got}")]
    ProducerFenced { current: i16, got: i16 },
    #[error("unknown producer id {producer_id}: its first batch must have sequence 0")]
    UnknownProducerId { producer_id: i64 },
}

impl AdmitError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AdmitError::NotReady => ErrorCode::LEADER_NOT_AVAILABLE,
            AdmitError::DuplicateInFlight => ErrorCode::DUPLICATE_IN_FLIGHT,
            AdmitError::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE,
            AdmitError::ProducerFenced { .. } => ErrorCode::PRODUCER_FENCED,
            AdmitError::UnknownProducerId { .. } => ErrorCode::UNKNOWN_PRODUCER_ID,
        }
    }
}

/// A committed batch in a producer's de-duplication window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedBatch {
    pub base_sequence: i32,
    pub record_count: u32,
    pub base_offset: u64,
}

/// One producer's committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: i16,
    /// The last batches of `epoch`, oldest first; 1..=PRODUCER_BATCHES_KEPT of them.
    pub batches: VecDeque<CommittedBatch>,
    /// The raft index of the last batch (orders producers for eviction).
    pub index_last: u64,
}

/// Where a batch of a producer's admission window lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Committed { base_offset: u64 },
    Pending,
}

/// A producer's state as the leader's whole log has it: committed, then pending batches.
#[derive(Debug)]
struct ProducerView {
    epoch: i16,
    /// (base sequence, record count, slot), oldest first, at most PRODUCER_BATCHES_KEPT.
    window: VecDeque<(i32, u32, Slot)>,
}

impl ProducerView {
    fn push(&mut self, base_sequence: i32, record_count: u32, slot: Slot) {
        self.window.push_back((base_sequence, record_count, slot));
        if self.window.len() > PRODUCER_BATCHES_KEPT {
            self.window.pop_front();
        }
    }
}

/// One partition's state on a replica. See the module comment.
#[derive(Clone, Debug, Default)]
pub struct PartitionState {
    applied_index: u64,
    applied_term: u64,
    /// The next offset after the last applied (committed) record.
    high_watermark: u64,
    log_start_offset: u64,
    /// The committed producer table (a function of the applied entries only).
    producers: BTreeMap<i64, ProducerState>,
    /// The table was restored as of this index: entries up to it are in it already.
    producers_as_of: u64,
    /// Moves with every change of `producers` (what a cached encoding is checked against).
    producers_version: u64,
    /// Idempotent batches admitted in `pending_term` and not yet applied, in proposal order.
    pending: VecDeque<BatchInfo>,
    pending_term: u64,
    /// Whether the last `admit` pushed onto `pending` (what `undo_admit` takes back).
    pending_pushed_last: bool,
}

impl PartitionState {
    pub fn new() -> PartitionState {
        PartitionState::default()
    }

    /// A committed entry. `payload` is the record batch for Data entries (a batch whose header
    /// does not parse only advances offsets, with a warning).
    ///
    /// Panics if entries are skipped or offsets are not continuous: both mean the log or the
    /// caller is broken, and going on would serve wrong offsets. The first entry a fresh state
    /// applies may have any index and offset (the log may start after retention).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        index: u64,
        term: u64,
        kind: EntryKind,
        base_offset: u64,
        record_count: u32,
        timestamp_max: i64,
        payload: &[u8],
    ) {
        let _ = timestamp_max; // ListOffsets by timestamp is served from the log's index.
        let fresh = self.applied_index == 0;
        assert!(fresh || index == self.applied_index + 1, "apply of index {index} after {}", self.applied_index);
        assert!(index > 0, "raft indexes start at 1");
        assert!(term >= self.applied_term, "apply of term {term} after term {}", self.applied_term);
        if fresh {
            self.high_watermark = base_offset;
            self.log_start_offset = base_offset;
        }
        assert_eq!(
            base_offset, self.high_watermark,
            "entry {index} starts at offset {base_offset}, the previous ended at {}",
            self.high_watermark
        );
        self.applied_index = index;
        self.applied_term = term;
        if kind != EntryKind::Data {
            assert_eq!(record_count, 0, "a {kind:?} entry at index {index} holds no records");
            self.check_invariants();
            return;
        }
        self.high_watermark = base_offset.checked_add(u64::from(record_count)).expect("offsets fit in u64");
        match BatchHeader::parse(payload) {
            Err(error) => tracing::warn!(index, base_offset, %error, "committed data entry is not a valid batch; offsets only"),
            Ok(header) => {
                if i64::from(header.record_count) != i64::from(record_count) {
                    tracing::warn!(
                        index,
                        record_count,
                        header_records = header.record_count,
                        "entry and batch disagree on the record count"
                    );
                }
                self.apply_batch(index, &BatchInfo::from_header(&header), base_offset);
            }
        }
        self.check_invariants();
    }

    /// A committed batch: updates the producer table and retires its pending admission.
    fn apply_batch(&mut self, index: u64, batch: &BatchInfo, base_offset: u64) {
        if let Some(position) = self.pending.iter().position(|pending| pending == batch) {
            // Usually the front (one term's proposals commit in order); a stale pending batch of
            // an older term may also match a retry that another leader committed.
            self.pending.remove(position);
            if position == self.pending.len() {
                self.pending_pushed_last = false;
            }
        }
        if batch.producer_id < 0 || index <= self.producers_as_of {
            return;
        }
        self.producers_version += 1;
        if !self.producers.contains_key(&batch.producer_id) && self.producers.len() >= PRODUCERS_MAX {
            let (evicted, _) = self.producers.iter().min_by_key(|(_, producer)| producer.index_last).expect("the table is full");
            let evicted = *evicted;
            self.producers.remove(&evicted);
        }
        let committed = CommittedBatch { base_sequence: batch.base_sequence, record_count: batch.record_count, base_offset };
        let producer = self.producers.entry(batch.producer_id).or_insert_with(|| ProducerState {
            epoch: batch.producer_epoch,
            batches: VecDeque::new(),
            index_last: index,
        });
        if batch.producer_epoch < producer.epoch {
            // Admission fences these (P4); a committed one means an old leader let it through.
            tracing::warn!(
                index,
                producer_id = batch.producer_id,
                epoch = batch.producer_epoch,
                current = producer.epoch,
                "committed batch of a fenced epoch; ignored by the producer table"
            );
            return;
        }
        if batch.producer_epoch > producer.epoch {
            producer.epoch = batch.producer_epoch;
            producer.batches.clear();
        }
        producer.batches.push_back(committed);
        if producer.batches.len() > PRODUCER_BATCHES_KEPT {
            producer.batches.pop_front();
        }
        producer.index_last = index;
        Self::check_producer(producer, self.high_watermark);
    }

    /// A producer's committed window after a batch of it was applied: 1..=PRODUCER_BATCHES_KEPT
    /// batches of one epoch, in offset order, the last one ending at or below the high watermark.
    fn check_producer(producer: &ProducerState, high_watermark: u64) {
        assert!(!producer.batches.is_empty(), "a producer in the table has a batch");
        assert!(producer.batches.len() <= PRODUCER_BATCHES_KEPT, "a producer keeps at most {PRODUCER_BATCHES_KEPT} batches");
        for pair in producer.batches.iter().zip(producer.batches.iter().skip(1)) {
            assert!(pair.0.base_offset < pair.1.base_offset, "a producer's batches are in offset order");
        }
        let last = producer.batches.back().expect("not empty");
        let last_end = last.base_offset + u64::from(last.record_count);
        assert!(last_end <= high_watermark, "a committed batch ends at {last_end}, above the high watermark {high_watermark}");
    }

    /// What holds after every change: the log start at or below the high watermark, and the
    /// producer table and pending list within their limits.
    fn check_invariants(&self) {
        assert!(
            self.log_start_offset <= self.high_watermark,
            "log start {} above the high watermark {}",
            self.log_start_offset,
            self.high_watermark
        );
        assert!(self.producers.len() <= PRODUCERS_MAX, "{} producers, above {PRODUCERS_MAX}", self.producers.len());
        assert!(self.pending.len() <= PENDING_BATCHES_MAX, "{} pending batches, above {PENDING_BATCHES_MAX}", self.pending.len());
        assert!(!self.pending_pushed_last || !self.pending.is_empty(), "the last admission's batch is pending");
    }

    /// The log was replaced at `index` by a snapshot whose next offset is `offset_next`: the
    /// high watermark and log start become `offset_next`, the producer table is cleared (the
    /// caller then loads the start state's, [`PartitionState::load_producers`]).
    pub fn restore(&mut self, index: u64, term: u64, offset_next: u64) {
        assert!(index >= self.applied_index, "a snapshot at {index} below the applied index {}", self.applied_index);
        self.applied_index = index;
        self.applied_term = term;
        self.high_watermark = offset_next;
        self.log_start_offset = offset_next;
        self.producers.clear();
        self.producers_as_of = 0;
        self.producers_version += 1;
        self.pending.clear();
        self.pending_pushed_last = false;
        self.check_invariants();
    }

    /// Leader-side admission of a produce batch about to be proposed; `term` is the leader's
    /// current raft term. See the module comment and the rules in DESIGN.md.
    pub fn admit(&mut self, term: u64, batch: &BatchInfo) -> Result<Admit, AdmitError> {
        assert!(batch.record_count >= 1, "a batch has at least one record");
        self.pending_pushed_last = false;
        if term != self.pending_term {
            // Those proposals either committed (and `apply` saw them) or never will.
            self.pending.clear();
            self.pending_term = term;
        }
        if self.applied_term != term {
            return Err(AdmitError::NotReady);
        }
        if batch.producer_id < 0 {
            return Ok(Admit::Append);
        }
        let admit = self.admit_idempotent(batch)?;
        if admit == Admit::Append {
            if self.pending.len() >= PENDING_BATCHES_MAX {
                return Err(AdmitError::NotReady);
            }
            self.pending.push_back(*batch);
            self.pending_pushed_last = true;
            assert_eq!(self.pending.back(), Some(batch), "an admitted idempotent batch is pending");
        }
        self.check_invariants();
        Ok(admit)
    }

    /// The admission rules for a batch with a producer id, against committed + pending.
    fn admit_idempotent(&self, batch: &BatchInfo) -> Result<Admit, AdmitError> {
        let Some(view) = self.producer_view(batch.producer_id) else {
            if batch.producer_epoch < 0 {
                return Err(AdmitError::ProducerFenced { current: 0, got: batch.producer_epoch });
            }
            if batch.base_sequence != 0 {
                return Err(AdmitError::UnknownProducerId { producer_id: batch.producer_id });
            }
            return Ok(Admit::Append);
        };
        if batch.producer_epoch < view.epoch || batch.producer_epoch < 0 {
            return Err(AdmitError::ProducerFenced { current: view.epoch, got: batch.producer_epoch });
        }
        if batch.producer_epoch > view.epoch {
            // A new epoch starts a fresh sequence.
            if batch.base_sequence != 0 {
                return Err(AdmitError::OutOfOrderSequence { expected: 0, got: batch.base_sequence });
            }
            return Ok(Admit::Append);
        }
        let retry = view
            .window
            .iter()
            .find(|(base_sequence, record_count, _)| (*base_sequence, *record_count) == (batch.base_sequence, batch.record_count));
        match retry {
            Some((_, _, Slot::Committed { base_offset })) => return Ok(Admit::Duplicate { base_offset: *base_offset }),
            Some((_, _, Slot::Pending)) => return Err(AdmitError::DuplicateInFlight),
            None => {}
        }
        let &(base_sequence_last, record_count_last, _) = view.window.back().expect("a known producer has a batch");
        let expected = sequence_after(base_sequence_last, record_count_last);
        if batch.base_sequence != expected {
            return Err(AdmitError::OutOfOrderSequence { expected, got: batch.base_sequence });
        }
        Ok(Admit::Append)
    }

    /// A producer's state over the committed table and the pending batches, or None if neither
    /// knows it.
    fn producer_view(&self, producer_id: i64) -> Option<ProducerView> {
        let mut view = self.producers.get(&producer_id).map(|producer| ProducerView {
            epoch: producer.epoch,
            window: producer
                .batches
                .iter()
                .map(|batch| (batch.base_sequence, batch.record_count, Slot::Committed { base_offset: batch.base_offset }))
                .collect(),
        });
        for pending in self.pending.iter().filter(|pending| pending.producer_id == producer_id) {
            match &mut view {
                Some(view) if pending.producer_epoch == view.epoch => view.push(pending.base_sequence, pending.record_count, Slot::Pending),
                _ => {
                    // A new producer or a newer epoch (admission fences older ones) starts over.
                    debug_assert!(view.as_ref().is_none_or(|view| pending.producer_epoch > view.epoch));
                    let mut fresh = ProducerView { epoch: pending.producer_epoch, window: VecDeque::new() };
                    fresh.push(pending.base_sequence, pending.record_count, Slot::Pending);
                    view = Some(fresh);
                }
            }
        }
        view
    }

    /// The batch admitted last was not proposed after all: forget it. Does nothing if the last
    /// `admit` recorded nothing (a non-idempotent batch, a duplicate, a refusal).
    pub fn undo_admit(&mut self) {
        if self.pending_pushed_last {
            self.pending.pop_back().expect("the last admission pushed a batch");
            self.pending_pushed_last = false;
        }
        self.check_invariants();
    }

    /// The next offset after the last committed record (= the committed end).
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// A committed DeleteRecords command ([`PartitionCommand::DeleteRecords`]): the log start
    /// moves up to `before` (never backwards). A leader proposes it only at or below its applied
    /// high watermark, and every entry before it in the log is applied here first, so `before` is
    /// at or below the high watermark on every replica; one above it (a broken leader) moves the
    /// log start no further than the high watermark, so no replica ever claims a start beyond
    /// its records.
    pub fn delete_records(&mut self, index: u64, before: u64) {
        if before > self.high_watermark {
            tracing::error!(index, before, high_watermark = self.high_watermark, "delete-records above the high watermark; stopped there");
        }
        self.log_start_offset = self.log_start_offset.max(before.min(self.high_watermark));
        self.check_invariants();
    }

    /// Retention moved the log start (never backwards, never above the high watermark).
    pub fn set_log_start_offset(&mut self, offset: u64) {
        assert!(offset <= self.high_watermark, "log start {offset} above the high watermark {}", self.high_watermark);
        self.log_start_offset = self.log_start_offset.max(offset);
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn applied_term(&self) -> u64 {
        self.applied_term
    }

    /// The committed producer table (for a snapshot, a log-dump endpoint, and tests).
    pub fn producers(&self) -> &BTreeMap<i64, ProducerState> {
        &self.producers
    }

    /// The index the table was restored as of (0: built from the log alone).
    pub fn producers_as_of(&self) -> u64 {
        self.producers_as_of
    }

    /// Changes with every change of the producer table.
    pub fn producers_version(&self) -> u64 {
        self.producers_version
    }

    /// The table as of `as_of` (a start state: [`encode_producer_table`]), right after
    /// [`PartitionState::restore`] at or below `as_of`: the replay that follows skips the
    /// table's part of every entry up to `as_of`.
    pub fn load_producers(&mut self, as_of: u64, producers: BTreeMap<i64, ProducerState>) {
        assert!(as_of >= self.applied_index, "a producer table as of {as_of}, below the applied index {}", self.applied_index);
        assert!(self.producers.is_empty(), "a producer table loads into an empty one (after a restore)");
        assert!(producers.len() <= PRODUCERS_MAX, "a loaded table of {} producers", producers.len());
        self.producers = producers;
        self.producers_as_of = as_of;
        self.producers_version += 1;
    }

    /// The committed table as a start state's bytes, exact as of [`PartitionState::applied_index`];
    /// `None` while it is empty (nothing to keep).
    pub fn producer_table(&self) -> Option<Vec<u8>> {
        (!self.producers.is_empty()).then(|| encode_producer_table(&self.producers))
    }

    /// Idempotent batches admitted in the current term and not yet applied.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// A producer table's bytes (`proto/partition.proto`).
pub fn encode_producer_table(producers: &BTreeMap<i64, ProducerState>) -> Vec<u8> {
    use crate::proto::partition as pb;
    use protobuf::Message as _;
    let mut table = pb::ProducerTable::new();
    for (&producer_id, producer) in producers {
        let mut entry = pb::Producer::new();
        entry.producer_id = producer_id;
        entry.epoch = i32::from(producer.epoch);
        entry.index_last = producer.index_last;
        for batch in &producer.batches {
            let mut out = pb::ProducerBatch::new();
            out.base_sequence = batch.base_sequence;
            out.record_count = batch.record_count;
            out.base_offset = batch.base_offset;
            entry.batches.push(out);
        }
        table.producers.push(entry);
    }
    table.write_to_bytes().expect("a producer table encodes")
}

/// Reads [`encode_producer_table`]'s bytes, checking what admission relies on: epochs within
/// i16, 1..=[`PRODUCER_BATCHES_KEPT`] batches per producer in offset order, at most
/// [`PRODUCERS_MAX`] producers, each once.
pub fn decode_producer_table(bytes: &[u8]) -> Result<BTreeMap<i64, ProducerState>, String> {
    use crate::proto::partition as pb;
    use protobuf::Message as _;
    let table = pb::ProducerTable::parse_from_bytes(bytes).map_err(|error| format!("not a producer table: {error}"))?;
    if table.producers.len() > PRODUCERS_MAX {
        return Err(format!("{} producers, above {PRODUCERS_MAX}", table.producers.len()));
    }
    let mut producers = BTreeMap::new();
    for entry in &table.producers {
        let epoch = i16::try_from(entry.epoch).map_err(|_| format!("producer {}: epoch {}", entry.producer_id, entry.epoch))?;
        if entry.producer_id < 0 || entry.batches.is_empty() || entry.batches.len() > PRODUCER_BATCHES_KEPT {
            return Err(format!("producer {} with {} batches", entry.producer_id, entry.batches.len()));
        }
        let batches: VecDeque<CommittedBatch> = entry
            .batches
            .iter()
            .map(|batch| CommittedBatch {
                base_sequence: batch.base_sequence,
                record_count: batch.record_count,
                base_offset: batch.base_offset,
            })
            .collect();
        if batches.iter().zip(batches.iter().skip(1)).any(|(a, b)| a.base_offset >= b.base_offset)
            || batches.iter().any(|b| b.record_count == 0)
        {
            return Err(format!("producer {}: batches out of offset order or empty", entry.producer_id));
        }
        if producers.insert(entry.producer_id, ProducerState { epoch, batches, index_last: entry.index_last }).is_some() {
            return Err(format!("producer {} twice", entry.producer_id));
        }
    }
    Ok(producers)
}

#[cfg(test)]
mod tests;
