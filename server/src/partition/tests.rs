//! Tests of a partition's state: offsets, every admission rule, leader changes, and a proptest
//! model of an idempotent producer against a raft log with retries, refused proposals and
//! leader changes (checks P1-P5, L7).

use std::collections::BTreeMap;

use bytes::Bytes;
use odradek_client::batch::{set_base_offset, BatchBuilder, Record};
use proptest::prelude::*;

use super::*;

const PID: i64 = 7;

fn info(producer_id: i64, producer_epoch: i16, base_sequence: i32, record_count: u32) -> BatchInfo {
    BatchInfo { producer_id, producer_epoch, base_sequence, record_count }
}

/// A real record batch with these producer fields, its base offset set to `base_offset`.
fn batch_bytes(batch: &BatchInfo, base_offset: u64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    if batch.producer_id >= 0 {
        builder = builder.producer(batch.producer_id, batch.producer_epoch, batch.base_sequence);
    }
    for record in 0..batch.record_count {
        let value = Some(Bytes::from(format!("v{record}")));
        builder.push(&Record { key: None, value, headers: vec![], timestamp: 1_000 }).expect("a small batch");
    }
    let mut bytes = builder.build().to_vec();
    set_base_offset(&mut bytes, base_offset as i64);
    bytes
}

fn apply_noop(state: &mut PartitionState, index: u64, term: u64) {
    state.apply(index, term, EntryKind::Noop, state.high_watermark(), 0, -1, &[]);
}

/// Applies a data entry holding `batch` at the next offset; returns that offset.
fn apply_batch(state: &mut PartitionState, index: u64, term: u64, batch: &BatchInfo) -> u64 {
    let base_offset = state.high_watermark();
    state.apply(index, term, EntryKind::Data, base_offset, batch.record_count, 1_000, &batch_bytes(batch, base_offset));
    base_offset
}

/// A leader of term 1 that applied its noop at index 1.
fn leader() -> PartitionState {
    let mut state = PartitionState::new();
    apply_noop(&mut state, 1, 1);
    state
}

#[test]
fn offsets_follow_data_entries() {
    let mut state = PartitionState::new();
    assert_eq!((state.high_watermark(), state.log_start_offset(), state.applied_index()), (0, 0, 0));
    // A log that starts after retention: index 10, offset 500.
    state.apply(10, 3, EntryKind::Noop, 500, 0, -1, &[]);
    assert_eq!((state.high_watermark(), state.log_start_offset(), state.applied_index(), state.applied_term()), (500, 500, 10, 3));
    assert_eq!(apply_batch(&mut state, 11, 3, &info(-1, -1, -1, 4)), 500);
    state.apply(12, 4, EntryKind::Config, 504, 0, -1, b"conf");
    assert_eq!(apply_batch(&mut state, 13, 4, &info(PID, 0, 0, 2)), 504);
    assert_eq!(state.high_watermark(), 506);
    state.set_log_start_offset(504);
    state.set_log_start_offset(502);
    assert_eq!(state.log_start_offset(), 504, "the log start never moves back");
}

#[test]
fn a_bad_batch_only_advances_offsets() {
    let mut state = leader();
    state.apply(2, 1, EntryKind::Data, 0, 3, 1_000, b"not a batch");
    assert_eq!(state.high_watermark(), 3);
    assert!(state.producers().is_empty());
}

#[test]
#[should_panic(expected = "apply of index 3 after 1")]
fn apply_refuses_a_skipped_index() {
    let mut state = leader();
    apply_noop(&mut state, 3, 1);
}

#[test]
#[should_panic(expected = "starts at offset 5")]
fn apply_refuses_an_offset_gap() {
    let mut state = leader();
    state.apply(2, 1, EntryKind::Noop, 5, 0, -1, &[]);
}

#[test]
#[should_panic(expected = "above the high watermark")]
fn log_start_stays_below_the_high_watermark() {
    leader().set_log_start_offset(1);
}

#[test]
fn restore_resets_offsets_and_producers() {
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(PID, 0, 0, 2));
    state.restore(50, 2, 900);
    assert_eq!((state.high_watermark(), state.log_start_offset(), state.applied_index(), state.applied_term()), (900, 900, 50, 2));
    assert!(state.producers().is_empty());
    assert_eq!(apply_batch(&mut state, 51, 2, &info(PID, 0, 5, 1)), 900);
    assert_eq!(state.high_watermark(), 901);
}

#[test]
fn error_codes() {
    assert_eq!(AdmitError::NotReady.error_code(), ErrorCode::LEADER_NOT_AVAILABLE);
    assert_eq!(AdmitError::DuplicateInFlight.error_code(), ErrorCode::DUPLICATE_IN_FLIGHT);
    assert_eq!(AdmitError::OutOfOrderSequence { expected: 1, got: 2 }.error_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE);
    assert_eq!(AdmitError::ProducerFenced { current: 1, got: 0 }.error_code(), ErrorCode::PRODUCER_FENCED);
    assert_eq!(AdmitError::UnknownProducerId { producer_id: 1 }.error_code(), ErrorCode::UNKNOWN_PRODUCER_ID);
    assert!(AdmitError::NotReady.error_code().is_definite());
}

#[test]
fn not_ready_until_an_entry_of_the_term_is_applied() {
    let mut state = PartitionState::new();
    assert_eq!(state.admit(1, &info(PID, 0, 0, 1)), Err(AdmitError::NotReady));
    assert_eq!(state.admit(1, &info(-1, -1, -1, 1)), Err(AdmitError::NotReady), "also non-idempotent batches");
    apply_noop(&mut state, 1, 1);
    assert_eq!(state.admit(2, &info(PID, 0, 0, 1)), Err(AdmitError::NotReady), "a newer term than applied");
    assert_eq!(state.admit(1, &info(PID, 0, 0, 1)), Ok(Admit::Append));
}

#[test]
fn non_idempotent_batches_always_append_and_record_nothing() {
    let mut state = leader();
    let plain = info(-1, -1, -1, 3);
    assert_eq!(state.admit(1, &plain), Ok(Admit::Append));
    assert_eq!(state.admit(1, &plain), Ok(Admit::Append));
    assert_eq!(state.pending_len(), 0);
    apply_batch(&mut state, 2, 1, &plain);
    assert!(state.producers().is_empty());
}

#[test]
fn a_new_producer_starts_at_sequence_zero() {
    let mut state = leader();
    assert_eq!(state.admit(1, &info(PID, 0, 5, 1)), Err(AdmitError::UnknownProducerId { producer_id: PID }));
    assert_eq!(state.admit(1, &info(PID, -1, 0, 1)), Err(AdmitError::ProducerFenced { current: 0, got: -1 }));
    assert_eq!(state.admit(1, &info(PID, 3, 0, 2)), Ok(Admit::Append), "any epoch may come first");
    assert_eq!(state.pending_len(), 1);
}

#[test]
fn sequences_must_follow_and_retries_after_commit_return_the_original_offset() {
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(-1, -1, -1, 10)); // offsets 0..10
    let first = info(PID, 0, 0, 3);
    assert_eq!(state.admit(1, &first), Ok(Admit::Append));
    assert_eq!(state.admit(1, &info(PID, 0, 4, 1)), Err(AdmitError::OutOfOrderSequence { expected: 3, got: 4 }));
    let second = info(PID, 0, 3, 2);
    assert_eq!(state.admit(1, &second), Ok(Admit::Append), "pending batches count for the next sequence");
    assert_eq!(state.admit(1, &first), Err(AdmitError::DuplicateInFlight));
    assert_eq!(state.admit(1, &second), Err(AdmitError::DuplicateInFlight));
    assert_eq!(apply_batch(&mut state, 3, 1, &first), 10);
    assert_eq!(state.pending_len(), 1);
    assert_eq!(state.admit(1, &first), Ok(Admit::Duplicate { base_offset: 10 }));
    assert_eq!(state.admit(1, &second), Err(AdmitError::DuplicateInFlight));
    assert_eq!(apply_batch(&mut state, 4, 1, &second), 13);
    assert_eq!(state.pending_len(), 0);
    assert_eq!(state.admit(1, &second), Ok(Admit::Duplicate { base_offset: 13 }));
    assert_eq!(state.admit(1, &first), Ok(Admit::Duplicate { base_offset: 10 }));
    // The same first sequence with another count is not a retry.
    assert_eq!(state.admit(1, &info(PID, 0, 3, 1)), Err(AdmitError::OutOfOrderSequence { expected: 5, got: 3 }));
    assert_eq!(state.admit(1, &info(PID, 0, 5, 1)), Ok(Admit::Append));
}

#[test]
fn the_window_keeps_the_last_five_batches() {
    let mut state = leader();
    let batches: Vec<BatchInfo> = (0..7).map(|k| info(PID, 0, k, 1)).collect();
    let offsets: Vec<u64> = batches.iter().enumerate().map(|(k, batch)| apply_batch(&mut state, 2 + k as u64, 1, batch)).collect();
    assert_eq!(state.producers()[&PID].batches.len(), PRODUCER_BATCHES_KEPT);
    for (batch, offset) in batches.iter().zip(&offsets).skip(2) {
        assert_eq!(state.admit(1, batch), Ok(Admit::Duplicate { base_offset: *offset }));
    }
    for batch in &batches[..2] {
        assert_eq!(state.admit(1, batch), Err(AdmitError::OutOfOrderSequence { expected: 7, got: batch.base_sequence }));
    }
    // Pending batches push committed ones out of the window too.
    for k in 7..10 {
        assert_eq!(state.admit(1, &info(PID, 0, k, 1)), Ok(Admit::Append));
    }
    assert_eq!(state.admit(1, &batches[4]), Err(AdmitError::OutOfOrderSequence { expected: 10, got: 4 }));
    assert_eq!(state.admit(1, &batches[5]), Ok(Admit::Duplicate { base_offset: offsets[5] }));
}

#[test]
fn epochs_fence_and_restart_sequences() {
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(PID, 1, 0, 3));
    assert_eq!(state.admit(1, &info(PID, 0, 3, 1)), Err(AdmitError::ProducerFenced { current: 1, got: 0 }));
    assert_eq!(state.admit(1, &info(PID, 0, 0, 3)), Err(AdmitError::ProducerFenced { current: 1, got: 0 }), "even an old retry");
    assert_eq!(state.admit(1, &info(PID, 2, 3, 1)), Err(AdmitError::OutOfOrderSequence { expected: 0, got: 3 }));
    let new_epoch = info(PID, 2, 0, 1);
    assert_eq!(state.admit(1, &new_epoch), Ok(Admit::Append));
    // A pending newer epoch fences the old one already.
    assert_eq!(state.admit(1, &info(PID, 1, 3, 1)), Err(AdmitError::ProducerFenced { current: 2, got: 1 }));
    assert_eq!(state.admit(1, &info(PID, 2, 1, 1)), Ok(Admit::Append));
    apply_batch(&mut state, 3, 1, &new_epoch);
    let producer = &state.producers()[&PID];
    assert_eq!((producer.epoch, producer.batches.len()), (2, 1), "a committed newer epoch resets the window");
}

#[test]
fn sequences_wrap_at_i32_max() {
    assert_eq!(sequence_after(i32::MAX, 1), 0);
    assert_eq!(sequence_after(i32::MAX - 1, 5), 3);
    assert_eq!(sequence_after(5, 2), 7);
    let mut state = leader();
    // A committed batch ending exactly at i32::MAX (apply does not judge sequences).
    let last = info(PID, 0, i32::MAX - 1, 2);
    let offset = apply_batch(&mut state, 2, 1, &last);
    assert_eq!(state.admit(1, &info(PID, 0, i32::MAX, 1)), Err(AdmitError::OutOfOrderSequence { expected: 0, got: i32::MAX }));
    assert_eq!(state.admit(1, &info(PID, 0, 0, 4)), Ok(Admit::Append));
    assert_eq!(state.admit(1, &last), Ok(Admit::Duplicate { base_offset: offset }));
    // A batch spanning the wrap.
    let spanning = info(PID, 0, 4, 1);
    assert_eq!(state.admit(1, &spanning), Ok(Admit::Append));
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(PID, 0, i32::MAX - 2, 5));
    assert_eq!(state.admit(1, &info(PID, 0, 2, 1)), Ok(Admit::Append));
}

#[test]
fn undo_admit_forgets_the_last_admitted_batch() {
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(PID, 0, 0, 2));
    let refused = info(PID, 0, 2, 2);
    assert_eq!(state.admit(1, &refused), Ok(Admit::Append));
    state.undo_admit();
    assert_eq!(state.pending_len(), 0);
    // The batch after the refused one is out of order; the refused one itself is not in flight.
    assert_eq!(state.admit(1, &info(PID, 0, 4, 1)), Err(AdmitError::OutOfOrderSequence { expected: 2, got: 4 }));
    assert_eq!(state.admit(1, &refused), Ok(Admit::Append));
    // An undo after a non-idempotent batch, a duplicate or a refusal takes nothing back.
    assert_eq!(state.admit(1, &info(-1, -1, -1, 1)), Ok(Admit::Append));
    state.undo_admit();
    assert_eq!(state.admit(1, &refused), Err(AdmitError::DuplicateInFlight));
    state.undo_admit();
    assert_eq!(state.admit(1, &info(PID, 0, 0, 2)), Ok(Admit::Duplicate { base_offset: 0 }));
    state.undo_admit();
    assert_eq!(state.pending_len(), 1);
    // Only the last one: a second undo does nothing.
    let next = info(PID, 0, 4, 1);
    assert_eq!(state.admit(1, &next), Ok(Admit::Append));
    state.undo_admit();
    state.undo_admit();
    assert_eq!(state.pending_len(), 1);
    assert_eq!(state.admit(1, &refused), Err(AdmitError::DuplicateInFlight));
}

#[test]
fn a_new_leader_waits_for_its_term_then_sees_the_retry_as_a_duplicate() {
    // Term 1: the old leader admitted and proposed `batch` at index 2; it was not yet applied.
    let batch = info(PID, 0, 0, 3);
    let mut old_leader = leader();
    assert_eq!(old_leader.admit(1, &batch), Ok(Admit::Append));
    // Term 2: the same node is leader again with the entry still in its log, plus its noop at 3.
    // Until the noop is applied, it cannot know, even after applying index 2.
    for state in [&mut old_leader, &mut leader()] {
        assert_eq!(state.admit(2, &batch), Err(AdmitError::NotReady));
        let offset = apply_batch(state, 2, 1, &batch);
        assert_eq!(state.admit(2, &batch), Err(AdmitError::NotReady));
        apply_noop(state, 3, 2);
        assert_eq!(state.admit(2, &batch), Ok(Admit::Duplicate { base_offset: offset }));
        assert_eq!(state.pending_len(), 0);
    }
}

#[test]
fn a_lost_pending_batch_is_forgotten_in_the_next_term() {
    let batch = info(PID, 0, 0, 3);
    let mut state = leader();
    assert_eq!(state.admit(1, &batch), Ok(Admit::Append));
    // The entry was truncated away; term 3's noop took index 2.
    apply_noop(&mut state, 2, 3);
    assert_eq!(state.admit(3, &batch), Ok(Admit::Append), "not DuplicateInFlight: the old proposal is gone");
    assert_eq!(state.pending_len(), 1);
}

#[test]
fn stale_pending_batches_may_commit_out_of_order_through_another_leader() {
    // Term 1: this node admitted a batch of each of two producers; both proposals were lost.
    let (first, second) = (info(PID, 0, 0, 1), info(PID + 1, 0, 0, 2));
    let mut state = leader();
    assert_eq!(state.admit(1, &first), Ok(Admit::Append));
    assert_eq!(state.admit(1, &second), Ok(Admit::Append));
    // Term 2's leader committed the producers' retries in the other order.
    apply_noop(&mut state, 2, 2);
    let offset_second = apply_batch(&mut state, 3, 2, &second);
    let offset_first = apply_batch(&mut state, 4, 2, &first);
    assert_eq!(state.pending_len(), 0);
    apply_noop(&mut state, 5, 3);
    assert_eq!(state.admit(3, &first), Ok(Admit::Duplicate { base_offset: offset_first }));
    assert_eq!(state.admit(3, &second), Ok(Admit::Duplicate { base_offset: offset_second }));
}

#[test]
fn the_least_recent_producer_is_forgotten_beyond_the_limit() {
    let mut state = leader();
    for producer in 0..=PRODUCERS_MAX as i64 {
        apply_batch(&mut state, 2 + producer as u64, 1, &info(producer, 0, 0, 1));
    }
    assert_eq!(state.producers().len(), PRODUCERS_MAX);
    assert!(!state.producers().contains_key(&0));
    assert_eq!(state.admit(1, &info(0, 0, 1, 1)), Err(AdmitError::UnknownProducerId { producer_id: 0 }));
    assert_eq!(state.admit(1, &info(1, 0, 1, 1)), Ok(Admit::Append));
}

#[test]
fn a_start_state_keeps_a_producer_whose_batches_retention_deleted() {
    // Producer PID's only batch is at index 2; retention then deletes indexes 1..=3.
    let mut state = leader();
    let first = info(PID, 0, 0, 2);
    apply_batch(&mut state, 2, 1, &first);
    apply_batch(&mut state, 3, 1, &info(-1, -1, -1, 1));
    let table = state.producer_table().expect("a producer is in the table");
    let mut entries = Vec::new();
    for index in 4..=6 {
        let plain = info(-1, -1, -1, 1);
        entries.push((index, plain));
        apply_batch(&mut state, index, 1, &plain);
    }
    // A restart with the start state (as of index 3): the late retry is a duplicate.
    let mut kept = PartitionState::new();
    kept.restore(3, 1, 3);
    kept.load_producers(3, decode_producer_table(&table).unwrap());
    for (index, batch) in &entries {
        apply_batch(&mut kept, *index, 1, batch);
    }
    assert_eq!(kept.producers(), state.producers());
    assert_eq!(kept.admit(1, &first), Ok(Admit::Duplicate { base_offset: 0 }));
    // Without it (the planted producer-table-not-kept), the retry would be appended again.
    let mut forgot = PartitionState::new();
    forgot.restore(3, 1, 3);
    for (index, batch) in &entries {
        apply_batch(&mut forgot, *index, 1, batch);
    }
    assert_eq!(forgot.admit(1, &first), Ok(Admit::Append));
}

#[test]
fn entries_up_to_the_start_state_are_not_counted_twice() {
    // A start state as of index 4, the log starting at index 3: index 3 and 4 are replayed but
    // are in the table already (a sixth batch would otherwise push the first out of the window
    // early, and index_last would be the same either way).
    let mut state = leader();
    for (index, sequence) in (2..=6).zip(0..) {
        apply_batch(&mut state, index, 1, &info(PID, 0, sequence, 1));
    }
    let mut replayed = PartitionState::new();
    replayed.restore(2, 1, 1);
    let mut prefix = leader();
    for (index, sequence) in (2..=4).zip(0..) {
        apply_batch(&mut prefix, index, 1, &info(PID, 0, sequence, 1));
    }
    replayed.load_producers(4, decode_producer_table(&prefix.producer_table().unwrap()).unwrap());
    for (index, sequence) in (3..=6).zip(1..) {
        apply_batch(&mut replayed, index, 1, &info(PID, 0, sequence, 1));
    }
    assert_eq!(replayed.producers(), state.producers());
    assert_eq!(replayed.producers()[&PID].batches.len(), 5);
}

#[test]
fn a_producer_table_that_breaks_the_rules_does_not_decode() {
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(PID, 3, 0, 2));
    let good = state.producer_table().unwrap();
    assert_eq!(&decode_producer_table(&good).unwrap(), state.producers());
    assert!(decode_producer_table(b"\xff\xff\xff").unwrap_err().contains("not a producer table"));
    let mut producers = state.producers().clone();
    producers.get_mut(&PID).unwrap().batches.clear();
    assert!(decode_producer_table(&encode_producer_table(&producers)).unwrap_err().contains("0 batches"));
    let mut producers = state.producers().clone();
    let batch = producers[&PID].batches[0];
    producers.get_mut(&PID).unwrap().batches.push_back(batch);
    assert!(decode_producer_table(&encode_producer_table(&producers)).unwrap_err().contains("offset order"));
    assert_eq!(PartitionState::new().producer_table(), None, "an empty table is no start state");
}

proptest! {
    /// P5 across retention: a log cut anywhere, with the table saved as of any index at or
    /// after the cut, replays into the table the whole log builds.
    #[test]
    fn replay_from_a_cut_with_the_start_state_rebuilds_the_table(
        batches in prop::collection::vec((0..4i64, 0..2i16, 1..4u32), 1..60),
        cut in any::<prop::sample::Index>(),
        as_of in any::<prop::sample::Index>(),
    ) {
        // Entries 2.. are batches of producers 0..=2 (3: no producer id), each the next in its
        // producer's epoch (a higher epoch restarts at 0; a lower one is fenced on admission,
        // never committed: skipped here).
        let mut next: BTreeMap<i64, (i16, i32)> = BTreeMap::new();
        let mut entries = Vec::new();
        for (producer, epoch, records) in batches {
            if producer == 3 {
                entries.push(info(-1, -1, -1, records));
                continue;
            }
            let (current, sequence) = next.get(&producer).copied().unwrap_or((epoch, 0));
            if epoch < current {
                continue;
            }
            let sequence = if epoch > current { 0 } else { sequence };
            entries.push(info(producer, epoch, sequence, records));
            next.insert(producer, (epoch, sequence + records as i32));
        }
        prop_assume!(!entries.is_empty());
        let last = entries.len() as u64 + 1;
        let mut whole = leader();
        let mut tables = BTreeMap::new();
        let mut offsets = BTreeMap::new();
        for (index, batch) in (2..).zip(&entries) {
            offsets.insert(index, whole.high_watermark());
            apply_batch(&mut whole, index, 1, batch);
            tables.insert(index, whole.producers().clone());
        }
        // The log starts at `first` (2..=last), the table saved as of `first - 1 ..= last`.
        let first = 2 + cut.index(entries.len()) as u64;
        let saved_at = first - 1 + as_of.index((last - first + 2) as usize) as u64;
        let saved = tables.get(&saved_at).cloned().unwrap_or_default();
        let mut replayed = PartitionState::new();
        replayed.restore(first - 1, 1, offsets[&first]);
        replayed.load_producers(saved_at, saved);
        for (index, batch) in (2..).zip(&entries).filter(|(index, _)| *index >= first) {
            apply_batch(&mut replayed, index, 1, batch);
        }
        prop_assert_eq!(replayed.producers(), whole.producers());
        prop_assert_eq!(replayed.high_watermark(), whole.high_watermark());
    }
}

// ---- The model ----------------------------------------------------------------------------

const NODES: usize = 3;
/// Idempotent producers in the model (ids PID, PID + 1, ...).
const PRODUCERS: usize = 2;

#[derive(Clone, Debug)]
enum Action {
    /// A producer sends a batch: its next new one (even `pick`) or a retry of any batch it
    /// ever made (odd). With `refused`, raft refuses the proposal.
    Send { producer: u8, pick: u16, refused: bool },
    /// A batch without a producer id.
    SendPlain,
    /// The leader commits up to `count` more entries.
    Commit { count: u8 },
    /// A node applies up to `count` committed entries (`node` >= NODES: the leader).
    Apply { node: u8, count: u8 },
    /// A new term with leader `node`; `keep` chooses how much of the uncommitted suffix the new
    /// leader's log holds (the rest is lost), then it appends its noop.
    LeaderChange { node: u8, keep: u8 },
    /// A producer takes a new epoch (its old batches stay around as zombie retries).
    BumpEpoch { producer: u8 },
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..PRODUCERS as u8, any::<u16>(), prop::bool::weighted(0.15))
            .prop_map(|(producer, pick, refused)| Action::Send { producer, pick, refused }),
        1 => Just(Action::SendPlain),
        4 => (1..4u8).prop_map(|count| Action::Commit { count }),
        6 => (0..NODES as u8 + 2, 1..8u8).prop_map(|(node, count)| Action::Apply { node, count }),
        1 => (0..NODES as u8, any::<u8>()).prop_map(|(node, keep)| Action::LeaderChange { node, keep }),
        1 => (0..PRODUCERS as u8).prop_map(|producer| Action::BumpEpoch { producer }),
    ]
}

#[derive(Clone, Debug)]
struct ModelEntry {
    term: u64,
    /// None for a noop.
    batch: Option<BatchInfo>,
    base_offset: u64,
}

impl ModelEntry {
    fn record_count(&self) -> u32 {
        self.batch.map_or(0, |batch| batch.record_count)
    }
}

/// One idempotent producer (a client).
#[derive(Clone, Debug, Default)]
struct Producer {
    /// Every batch it made, over all epochs, in order.
    batches: Vec<BatchInfo>,
    epoch: i16,
    /// The next sequence of the current epoch.
    sequence_next: i32,
}

struct Model {
    /// The current leader's log (`log[i]` has raft index i + 1); a prefix of `commit` entries is
    /// committed. Every node's log agrees with it up to what that node applied.
    log: Vec<ModelEntry>,
    commit: usize,
    term: u64,
    leader: usize,
    nodes: Vec<PartitionState>,
    producers: Vec<Producer>,
    /// Batches acknowledged to producers, with their offsets.
    acked: Vec<(BatchInfo, u64)>,
}

impl Model {
    fn new() -> Model {
        let mut model = Model {
            log: vec![],
            commit: 0,
            term: 1,
            leader: 0,
            nodes: vec![PartitionState::new(); NODES],
            producers: vec![Producer::default(); PRODUCERS],
            acked: vec![],
        };
        model.append(None);
        model.commit = 1;
        for node in &mut model.nodes {
            Model::apply_next(node, &model.log[0], 1);
        }
        model
    }

    fn offset_end(&self) -> u64 {
        self.log.last().map_or(0, |entry| entry.base_offset + u64::from(entry.record_count()))
    }

    fn append(&mut self, batch: Option<BatchInfo>) {
        let base_offset = self.offset_end();
        self.log.push(ModelEntry { term: self.term, batch, base_offset });
    }

    fn apply_next(node: &mut PartitionState, entry: &ModelEntry, index: u64) {
        match &entry.batch {
            None => node.apply(index, entry.term, EntryKind::Noop, entry.base_offset, 0, -1, &[]),
            Some(batch) => {
                let payload = batch_bytes(batch, entry.base_offset);
                node.apply(index, entry.term, EntryKind::Data, entry.base_offset, batch.record_count, 1_000, &payload);
            }
        }
    }

    /// What admission must answer, derived from the leader's whole log (the oracle).
    fn expected(&self, batch: &BatchInfo) -> Result<Admit, AdmitError> {
        let leader = &self.nodes[self.leader];
        if leader.applied_term() != self.term {
            return Err(AdmitError::NotReady);
        }
        if batch.producer_id < 0 {
            return Ok(Admit::Append);
        }
        let applied = leader.applied_index() as usize;
        let mine: Vec<(usize, &ModelEntry, BatchInfo)> = self
            .log
            .iter()
            .enumerate()
            .filter_map(|(position, entry)| entry.batch.filter(|b| b.producer_id == batch.producer_id).map(|b| (position, entry, b)))
            .collect();
        let Some(&(_, _, last)) = mine.last() else {
            return if batch.base_sequence == 0 {
                Ok(Admit::Append)
            } else {
                Err(AdmitError::UnknownProducerId { producer_id: batch.producer_id })
            };
        };
        if batch.producer_epoch < last.producer_epoch {
            return Err(AdmitError::ProducerFenced { current: last.producer_epoch, got: batch.producer_epoch });
        }
        if batch.producer_epoch > last.producer_epoch {
            return if batch.base_sequence == 0 {
                Ok(Admit::Append)
            } else {
                Err(AdmitError::OutOfOrderSequence { expected: 0, got: batch.base_sequence })
            };
        }
        let epoch_batches: Vec<_> = mine.iter().filter(|(_, _, b)| b.producer_epoch == last.producer_epoch).collect();
        let window = &epoch_batches[epoch_batches.len().saturating_sub(PRODUCER_BATCHES_KEPT)..];
        if let Some((position, entry, _)) =
            window.iter().find(|(_, _, b)| (b.base_sequence, b.record_count) == (batch.base_sequence, batch.record_count))
        {
            return if *position < applied {
                Ok(Admit::Duplicate { base_offset: entry.base_offset })
            } else {
                Err(AdmitError::DuplicateInFlight)
            };
        }
        let expected = last.sequence_next();
        if batch.base_sequence == expected {
            Ok(Admit::Append)
        } else {
            Err(AdmitError::OutOfOrderSequence { expected, got: batch.base_sequence })
        }
    }

    fn send(&mut self, batch: BatchInfo, refused: bool) -> Result<(), TestCaseError> {
        let expected = self.expected(&batch);
        let term = self.term;
        let outcome = self.nodes[self.leader].admit(term, &batch);
        prop_assert_eq!(&outcome, &expected, "admission of {:?}", batch);
        match outcome {
            Ok(Admit::Append) if refused => self.nodes[self.leader].undo_admit(),
            Ok(Admit::Append) => self.append(Some(batch)),
            Ok(Admit::Duplicate { base_offset }) => self.ack(batch, base_offset)?,
            Err(_) => {}
        }
        Ok(())
    }

    fn ack(&mut self, batch: BatchInfo, base_offset: u64) -> Result<(), TestCaseError> {
        // P2: every ack of one batch carries the same offset.
        if let Some((_, offset)) = self.acked.iter().find(|(acked, _)| *acked == batch) {
            prop_assert_eq!(*offset, base_offset, "two acks of {:?}", batch);
        } else {
            self.acked.push((batch, base_offset));
        }
        Ok(())
    }

    fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match *action {
            Action::Send { producer, pick, refused } => {
                let producer_id = PID + i64::from(producer);
                let producer = &mut self.producers[usize::from(producer)];
                let batch = if pick % 2 == 0 || producer.batches.is_empty() {
                    let record_count = u32::from(pick % 3) + 1;
                    let batch = info(producer_id, producer.epoch, producer.sequence_next, record_count);
                    producer.sequence_next = batch.sequence_next();
                    producer.batches.push(batch);
                    batch
                } else {
                    producer.batches[usize::from(pick / 2) % producer.batches.len()]
                };
                self.send(batch, refused)?;
            }
            Action::SendPlain => self.send(info(-1, -1, -1, 2), false)?,
            Action::Commit { count } => {
                let commit = (self.commit + usize::from(count)).min(self.log.len());
                let newly: Vec<ModelEntry> = self.log[self.commit..commit].to_vec();
                self.commit = commit;
                // acks=all: the producer learns the offset at commit.
                for entry in newly {
                    if let Some(batch) = entry.batch.filter(|batch| batch.producer_id >= 0) {
                        self.ack(batch, entry.base_offset)?;
                    }
                }
            }
            Action::Apply { node, count } => {
                let node = if usize::from(node) < NODES { usize::from(node) } else { self.leader };
                let node = &mut self.nodes[node];
                for _ in 0..count {
                    let applied = node.applied_index() as usize;
                    if applied >= self.commit {
                        break;
                    }
                    Model::apply_next(node, &self.log[applied], applied as u64 + 1);
                }
            }
            Action::LeaderChange { node, keep } => {
                let uncommitted = self.log.len() - self.commit;
                self.log.truncate(self.commit + usize::from(keep) % (uncommitted + 1));
                self.term += 1;
                self.leader = usize::from(node);
                self.append(None);
            }
            Action::BumpEpoch { producer } => {
                let producer = &mut self.producers[usize::from(producer)];
                producer.epoch += 1;
                producer.sequence_next = 0;
            }
        }
        self.check_log()
    }

    /// P1, P3, P4 over the whole log (committed or not), and offsets are continuous.
    fn check_log(&self) -> Result<(), TestCaseError> {
        let mut offset_next = 0;
        let mut last: BTreeMap<i64, BatchInfo> = BTreeMap::new();
        for entry in &self.log {
            prop_assert_eq!(entry.base_offset, offset_next);
            offset_next += u64::from(entry.record_count());
            let Some(batch) = entry.batch.filter(|batch| batch.producer_id >= 0) else { continue };
            match last.get(&batch.producer_id).copied() {
                None => prop_assert_eq!(batch.base_sequence, 0, "the first batch starts at 0"),
                Some(previous) if previous.producer_epoch == batch.producer_epoch => {
                    prop_assert_eq!(batch.base_sequence, previous.sequence_next(), "contiguous sequences: {:?} after {:?}", batch, previous)
                }
                Some(previous) => {
                    prop_assert!(batch.producer_epoch > previous.producer_epoch, "epochs never decrease");
                    prop_assert_eq!(batch.base_sequence, 0, "a new epoch starts at 0");
                }
            }
            last.insert(batch.producer_id, batch);
        }
        // P1 follows: contiguous, increasing sequences per epoch never repeat a batch.
        Ok(())
    }

    /// The end: commit and apply everything, then compare replicas and a replay.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        while self.commit < self.log.len() {
            self.step(&Action::Commit { count: u8::MAX })?;
        }
        for node in 0..NODES {
            while (self.nodes[node].applied_index() as usize) < self.commit {
                self.step(&Action::Apply { node: node as u8, count: u8::MAX })?;
            }
        }
        let mut replay = PartitionState::new();
        for (position, entry) in self.log.iter().enumerate() {
            Model::apply_next(&mut replay, entry, position as u64 + 1);
        }
        for node in &self.nodes {
            prop_assert_eq!(node.applied_index(), replay.applied_index());
            prop_assert_eq!(node.producers(), replay.producers(), "P5: the table is a function of the log");
            prop_assert_eq!(node.high_watermark(), replay.high_watermark());
        }
        // L7: every acked batch is in the log at its acked offset.
        for (batch, offset) in &self.acked {
            let found = self.log.iter().find(|entry| entry.batch == Some(*batch)).map(|entry| entry.base_offset);
            prop_assert_eq!(found, Some(*offset), "acked {:?}", batch);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn producer_model(actions in prop::collection::vec(arb_action(), 1..200)) {
        let mut model = Model::new();
        for action in &actions {
            model.step(action)?;
        }
        model.finish()?;
    }
}

/// DeleteRecords as a command entry: the log start moves up to its offset, never back, never
/// past the high watermark (a command above it stops there), and the command round-trips.
#[test]
fn delete_records_moves_the_log_start_up_to_the_high_watermark() {
    let mut state = leader();
    apply_batch(&mut state, 2, 1, &info(-1, -1, -1, 10));
    let command = PartitionCommand::DeleteRecords { before: 4 };
    assert_eq!(PartitionCommand::decode(&command.encode()), Some(command));
    assert_eq!(PartitionCommand::decode(b"\x01short"), None, "a truncated command is no command");
    assert_eq!(PartitionCommand::decode(&[9; 9]), None, "an unknown command is no command");
    state.apply(3, 1, EntryKind::Command, 10, 0, -1, &command.encode());
    state.delete_records(3, 4);
    assert_eq!((state.log_start_offset(), state.high_watermark()), (4, 10));
    state.delete_records(4, 2);
    assert_eq!(state.log_start_offset(), 4, "never backwards");
    state.delete_records(5, 99);
    assert_eq!(state.log_start_offset(), 10, "never past the high watermark");
    // Replaying the same entries into a fresh state (a restart) rebuilds the same start.
    let mut replayed = leader();
    apply_batch(&mut replayed, 2, 1, &info(-1, -1, -1, 10));
    replayed.delete_records(3, 4);
    assert_eq!(replayed.log_start_offset(), 4);
}
