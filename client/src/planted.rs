//! Planted bugs of the client: deliberate breakages the checkers must catch (CHECKLISTS.md,
//! issue 14's catalogue), switched on only in simulation builds (`--cfg madsim`). A consumer
//! reads its switches from [`ConsumerConfig::planted`](crate::ConsumerConfig::planted), a
//! producer from [`ProducerConfig::planted`](crate::ProducerConfig::planted); in any other build
//! every switch reads false whatever the field says, so a normal build has no way to turn one on.

use std::str::FromStr;

/// One deliberate breakage of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedBug {
    /// The auto-commit due at the start of a poll is sent at its end instead, with the positions
    /// after the records that poll is about to return: the group's position moves past records
    /// the application has not seen yet (C4; lost on a crash right after the poll).
    AutoCommitOfCurrentPoll,
    /// The producer reports every record of a batch at the batch's base offset instead of base
    /// plus its place in the batch: acknowledged offsets are wrong for all but the first record
    /// of a multi-record batch (L5). Invisible while every batch holds one record.
    RecordOffsetIsBatchBase,
    /// The consumer loses the last record of every compressed batch it decodes (an off-by-one
    /// over the decompressed records) and still moves its position past the batch: an
    /// acknowledged record is never read (L7, and L1 in the final drain). Invisible without
    /// compression.
    CompressedBatchLastRecordDropped,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 3] =
        [PlantedBug::AutoCommitOfCurrentPoll, PlantedBug::RecordOffsetIsBatchBase, PlantedBug::CompressedBatchLastRecordDropped];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AutoCommitOfCurrentPoll => "auto-commit-of-current-poll",
            PlantedBug::RecordOffsetIsBatchBase => "record-offset-is-batch-base",
            PlantedBug::CompressedBatchLastRecordDropped => "compressed-batch-last-record-dropped",
        }
    }
}

impl FromStr for PlantedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<PlantedBug, String> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name).ok_or_else(|| {
            let names: Vec<&str> = PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown client planted bug {name:?}; known: {}", names.join(", "))
        })
    }
}

/// A consumer's planted bugs as switches; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    auto_commit_of_current_poll: bool,
    record_offset_is_batch_base: bool,
    compressed_batch_last_record_dropped: bool,
}

impl Planted {
    /// The switches for `bugs`.
    pub fn of(bugs: &[PlantedBug]) -> Planted {
        Planted {
            auto_commit_of_current_poll: bugs.contains(&PlantedBug::AutoCommitOfCurrentPoll),
            record_offset_is_batch_base: bugs.contains(&PlantedBug::RecordOffsetIsBatchBase),
            compressed_batch_last_record_dropped: bugs.contains(&PlantedBug::CompressedBatchLastRecordDropped),
        }
    }

    /// [`PlantedBug::CompressedBatchLastRecordDropped`], in a simulation build only.
    pub fn compressed_batch_last_record_dropped(self) -> bool {
        cfg!(madsim) && self.compressed_batch_last_record_dropped
    }

    /// [`PlantedBug::RecordOffsetIsBatchBase`], in a simulation build only.
    pub fn record_offset_is_batch_base(self) -> bool {
        cfg!(madsim) && self.record_offset_is_batch_base
    }

    /// [`PlantedBug::AutoCommitOfCurrentPoll`], in a simulation build only.
    pub fn auto_commit_of_current_poll(self) -> bool {
        cfg!(madsim) && self.auto_commit_of_current_poll
    }
}
