//! The checker's output: anomalies named by invariant ID, counts, stats, JSON and a readable summary.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Key, Offset, Value};

/// Most values, offsets or op indices kept in one anomaly (the rest are counted in `detail`).
pub const ANOMALY_ITEMS_MAX: usize = 64;
/// Default for [`super::CheckOptions::anomaly_examples_per_kind_max`].
pub const ANOMALY_EXAMPLES_PER_KIND_MAX: usize = 32;

macro_rules! anomaly_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// An anomaly, named `"<invariant ID> <failure name>"` as in CHECKLISTS.md.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum AnomalyKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl AnomalyKind {
            pub const ALL: &'static [AnomalyKind] = &[$(AnomalyKind::$variant,)*];

            /// E.g. `"L6 lost-write"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(AnomalyKind::$variant => $name,)*
                }
            }
        }
    };
}

anomaly_kinds! {
    MalformedHistory => "H malformed-history",
    InconsistentOffsets => "L1 inconsistent-offsets",
    Duplicate => "L2 duplicate",
    Unexpected => "L3 unexpected",
    G1a => "L4 G1a",
    AckOffsetMismatch => "L5 ack-offset-mismatch",
    LostWrite => "L6 lost-write",
    Acks1Loss => "L6 acks1-loss",
    Unseen => "L7 unseen",
    PollSkip => "L8 poll-skip",
    NonmonotonicPoll => "L8 nonmonotonic-poll",
    IntPollSkip => "L9 int-poll-skip",
    IntNonmonotonicPoll => "L9 int-nonmonotonic-poll",
    NonmonotonicSend => "L10 nonmonotonic-send",
    IntNonmonotonicSend => "L10 int-nonmonotonic-send",
    IntSendSkip => "L10 int-send-skip",
    RealtimeAppendViolation => "L11 realtime-append-violation",
    StaleHw => "L12 stale-hw",
    HwRegression => "L12 hw-regression",
    ReadAboveHw => "L12 read-above-hw",
    ReadThenLost => "L13 read-then-lost",
    DuplicateRecord => "P1 duplicate-record",
    AckDivergence => "P2 ack-divergence",
    SequenceGap => "P3 sequence-gap",
    EpochRegression => "P4 epoch-regression",
    CommitNonlinearizable => "C1 nonlinearizable-commit",
    CommitLost => "C1 lost-commit",
    CommitUnknown => "C1 linearizability-unknown",
    CommitUnverified => "C1 no-final-fetch",
    GroupSkip => "C2 group-skip",
    ResumeSkip => "C3 resume-skip",
    ResumeEarlier => "C3 resume-earlier",
    AutoCommitUnpolled => "C4 auto-commit-unpolled",
    StaleCommit => "C5 stale-commit",
    Redelivery => "C6 redelivery",
    DoubleOwnership => "C7 double-ownership",
    ZombieOwnership => "C7 zombie-overlap",
    AssignmentOutsideSubscription => "C8 assignment-outside-subscription",
    OffsetDeletedWhileSubscribed => "C9 deleted-while-subscribed",
    DeletedOffsetReturned => "C9 deleted-offset-returned",
    DeletedRecordRead => "DR1 deleted-record-read",
    DeletionNotHeld => "DR1 log-start-below-deletion",
}

impl AnomalyKind {
    /// The invariant ID, e.g. `"L6"`.
    pub fn invariant(self) -> &'static str {
        self.name().split(' ').next().expect("names start with the ID")
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One anomaly instance. `fatal == false` means it is reported only (the acks-level table says
/// "report"), and does not make the verdict invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub fatal: bool,
    /// The consumer group (C checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<Offset>,
    /// Indices of the ops involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Anomaly {
    pub fn new(kind: AnomalyKind, fatal: bool) -> Anomaly {
        Anomaly { kind, fatal, group: None, key: None, values: Vec::new(), offsets: Vec::new(), ops: Vec::new(), detail: String::new() }
    }
    pub fn group(mut self, group: impl Into<String>) -> Anomaly {
        self.group = Some(group.into());
        self
    }
    pub fn key(mut self, key: Key) -> Anomaly {
        self.key = Some(key);
        self
    }
    pub fn values(mut self, values: impl IntoIterator<Item = Value>) -> Anomaly {
        self.values = values.into_iter().take(ANOMALY_ITEMS_MAX).collect();
        self
    }
    pub fn offsets(mut self, offsets: impl IntoIterator<Item = Offset>) -> Anomaly {
        self.offsets = offsets.into_iter().take(ANOMALY_ITEMS_MAX).collect();
        self
    }
    pub fn ops(mut self, ops: impl IntoIterator<Item = u64>) -> Anomaly {
        self.ops = ops.into_iter().take(ANOMALY_ITEMS_MAX).collect();
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Anomaly {
        self.detail = detail.into();
        self
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind, if self.fatal { "" } else { " (reported)" })?;
        if let Some(group) = &self.group {
            write!(f, " group={group}")?;
        }
        if let Some(key) = self.key {
            write!(f, " key={key}")?;
        }
        if !self.values.is_empty() {
            write!(f, " values={:?}", self.values)?;
        }
        if !self.offsets.is_empty() {
            write!(f, " offsets={:?}", self.offsets)?;
        }
        if !self.ops.is_empty() {
            write!(f, " ops={:?}", self.ops)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// How many anomalies of one kind were found, fatal and reported-only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyCount {
    pub fatal: u64,
    pub reported: u64,
}

/// Totals over the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub ops: u64,
    pub keys: u64,
    pub sends_ok: u64,
    pub sends_fail: u64,
    /// Info or never completed.
    pub sends_indeterminate: u64,
    pub polls_ok: u64,
    pub values_attempted: u64,
    pub values_acked: u64,
    pub values_read: u64,
    /// Acked values never read (L7's `unseen`, whether or not it counts as a failure).
    pub values_unseen: u64,
    pub final_drain: bool,
    pub log_dump_records: u64,
}

/// Consumer-group totals (C1–C7); all zero in a history without group ops.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    pub groups: u64,
    /// Processes that subscribed to a group.
    pub members: u64,
    pub rebalances_ok: u64,
    pub commits_ok: u64,
    pub commits_fail: u64,
    /// Info or never completed.
    pub commits_indeterminate: u64,
    pub auto_commits: u64,
    pub fetches_ok: u64,
    /// (group, key) registers searched for C1, and how many of them the search gave up on.
    pub registers_checked: u64,
    pub registers_unknown: u64,
    /// Records returned to group members, distinct (group, value) pairs among them, and pairs
    /// returned more than once (C6).
    pub deliveries: u64,
    pub values_delivered: u64,
    pub values_redelivered: u64,
    /// Resumes after an assignment that C3 compared, and those that started before the position.
    pub resumes_checked: u64,
    pub resumes_earlier: u64,
}

/// The result of [`super::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// No fatal anomaly.
    pub valid: bool,
    pub counts: BTreeMap<AnomalyKind, AnomalyCount>,
    /// Examples, at most `anomaly_examples_per_kind_max` per kind, in check order.
    pub anomalies: Vec<Anomaly>,
    pub stats: Stats,
    #[serde(default)]
    pub groups: GroupStats,
}

impl Verdict {
    /// Total anomalies of `kind` (fatal, reported).
    pub fn count(&self, kind: AnomalyKind) -> AnomalyCount {
        self.counts.get(&kind).copied().unwrap_or_default()
    }

    pub fn has_fatal(&self, kind: AnomalyKind) -> bool {
        self.count(kind).fatal > 0
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a verdict always serializes")
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(f, "valid: {}", self.valid)?;
        writeln!(
            f,
            "ops {} keys {} | sends ok {} fail {} indeterminate {} | polls ok {} | values attempted {} acked {} read {} unseen {} | final drain {} | log dump records {}",
            s.ops,
            s.keys,
            s.sends_ok,
            s.sends_fail,
            s.sends_indeterminate,
            s.polls_ok,
            s.values_attempted,
            s.values_acked,
            s.values_read,
            s.values_unseen,
            s.final_drain,
            s.log_dump_records
        )?;
        let g = &self.groups;
        if g.groups > 0 {
            writeln!(
                f,
                "groups {} members {} | rebalances {} | commits ok {} fail {} indeterminate {} (auto {}) | fetches {} | registers {} (unknown {}) | deliveries {} values {} redelivered {} | resumes {} earlier {}",
                g.groups,
                g.members,
                g.rebalances_ok,
                g.commits_ok,
                g.commits_fail,
                g.commits_indeterminate,
                g.auto_commits,
                g.fetches_ok,
                g.registers_checked,
                g.registers_unknown,
                g.deliveries,
                g.values_delivered,
                g.values_redelivered,
                g.resumes_checked,
                g.resumes_earlier
            )?;
        }
        if self.counts.is_empty() {
            return writeln!(f, "no anomalies");
        }
        for (kind, count) in &self.counts {
            writeln!(f, "{kind}: {} fatal, {} reported", count.fatal, count.reported)?;
        }
        for anomaly in &self.anomalies {
            writeln!(f, "  {anomaly}")?;
        }
        Ok(())
    }
}

/// Collects anomalies, keeping counts of all and examples of the first few per kind.
pub(crate) struct Report {
    examples_per_kind_max: usize,
    pub(crate) counts: BTreeMap<AnomalyKind, AnomalyCount>,
    pub(crate) anomalies: Vec<Anomaly>,
}

impl Report {
    pub(crate) fn new(examples_per_kind_max: usize) -> Report {
        Report { examples_per_kind_max, counts: BTreeMap::new(), anomalies: Vec::new() }
    }

    pub(crate) fn push(&mut self, anomaly: Anomaly) {
        let count = self.counts.entry(anomaly.kind).or_default();
        let seen = count.fatal + count.reported;
        if anomaly.fatal {
            count.fatal += 1;
        } else {
            count.reported += 1;
        }
        if seen < self.examples_per_kind_max as u64 {
            self.anomalies.push(anomaly);
        }
    }
}
