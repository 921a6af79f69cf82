//! The history model: what a workload driver (the real-process harness or the simulator) records,
//! and its JSON-lines form.
//!
//! One [`Op`] per line, in Jepsen's Kafka-workload shape:
//! `{"index":0,"time":12,"process":3,"type":"invoke","f":"send","value":{"key":1,"values":[7],"acks":"all"}}`.
//! `process` is a number, or `"nemesis"` for fault and observer ops ([`PROCESS_NEMESIS`]).
//!
//! Invariants kept by [`History::from_ops`] and [`HistoryBuilder`]:
//! * `index` is dense: op `i` has `index == i`;
//! * `time` (monotonic nanoseconds from the caller's clock) never decreases;
//! * a process has at most one open invoke, completes it with the same `f`, and never acts
//!   again after an `info` completion or a `crash` (it is retired; CHECKLISTS "history model").
//!
//! The library reads no clock itself: the simulator must stay deterministic.
//!
//! # Consumer-group ops (issue 14; checked by C1–C7)
//!
//! A process becomes a member of a group with `subscribe`; its polls are ordinary `poll` ops, and
//! they count as the group's deliveries of the keys it owns. Shapes (JSON `value`s):
//! * `subscribe` `{"group":"g","keys":[0,1,2]}` ([`Subscribe`]; invoke and completion alike).
//! * `rebalance`: one invoke/ok pair each time the member's assignment, generation or member epoch
//!   changes ([`Rebalance`]). Invoke `{"group":"g","member":"m1"}` (what is known so far); ok
//!   `{"group":"g","member":"m1","protocol":"consumer","epoch":7,"assigned":[2],"revoked":[0],
//!   "lost":[],"start":{"2":{"offset":40,"from":"committed"}}}`. A member that learns it was
//!   fenced records an ok rebalance losing what it owned, with the `error`. Fail: nothing changed.
//! * `commit` ([`Commit`]): invoke `{"group":"g","offsets":{"2":41},"auto":true,"member":"m1",
//!   "epoch":7}`; completion the same, ok (applied), fail (definitely not applied; `error` names
//!   the code, e.g. `"ILLEGAL_GENERATION"`) or info (maybe applied).
//! * `fetch-committed` ([`FetchCommitted`]): invoke `{"group":"g","keys":[0,2]}`; ok adds
//!   `"offsets":{"0":null,"2":41}` (null: nothing committed).
//!
//! Offsets follow Kafka's exclusive convention: a committed offset is the next record to consume.
//! What the recorder must guarantee for the checks to be sound is listed in [`Rebalance`] and
//! [`Commit`] (and in the checker's `groups` module).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

/// A partition of the test topic.
pub type Key = u64;
/// A record value; globally unique across the history (the driver encodes e.g. process and counter).
pub type Value = u64;
/// A log offset within one key.
pub type Offset = u64;
/// A logical, single-threaded client process. Retired after `info` or `crash`.
pub type Process = u64;

/// The process of fault (nemesis) and observer ops; serialized as `"nemesis"`.
pub const PROCESS_NEMESIS: Process = u64::MAX;
/// Longest JSON line accepted by [`History::read_json_lines`]; a poll of many records stays far below.
pub const HISTORY_LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// `type` of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    /// A *definite* failure: the op certainly had no effect.
    Fail,
    /// Indeterminate: the op may or may not have taken effect. Retires the process.
    Info,
}

/// `f` of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpF {
    /// Produce a batch to one key. Value: [`Send`].
    Send,
    /// Fetch from the assigned keys. Value: [`Poll`].
    Poll,
    /// Replace the process's assignment. Value: [`Keys`].
    Assign,
    /// Seek the process's consumer position (to the beginning, or back after a failed poll).
    /// Breaks poll continuity (L8) for those keys. Value: [`Keys`].
    Rewind,
    /// The client process crashed (F-K1); it is retired. Value: null.
    Crash,
    /// A fault starts (nemesis). Value: [`Fault`].
    Start,
    /// A fault stops (nemesis). Value: [`Fault`].
    Stop,
    /// The leader of a key changed (observed by the harness or known to the simulator). Value:
    /// [`LeaderChange`]. The acks=1 rules (L5, L6, L7) depend on it.
    LeaderChange,
    /// Marks where the final drain begins (healed cluster, fresh clients, seek to beginning).
    /// Polls invoked after it are drain polls (L7, L13). Value: null.
    FinalDrain,
    /// Retention moved a key's log start (known to the simulator): records below `offset` may
    /// be gone, so L6, L7, L13 and P1–P4 do not ask for them; at and above it everything
    /// still must be there. Value: [`LogStart`].
    LogStart,
    /// Join a consumer group: the process is a member from now on. Value: [`Subscribe`].
    Subscribe,
    /// The member's assignment, generation or member epoch changed. Value: [`Rebalance`].
    Rebalance,
    /// Commit offsets for a group. Value: [`Commit`].
    Commit,
    /// Read a group's committed offsets. Value: [`FetchCommitted`].
    FetchCommitted,
    /// Delete a key's records below an offset (DeleteRecords; DR1). Value: [`DeleteRecords`].
    DeleteRecords,
    /// Delete a group's committed offsets of some keys (Kafka's OffsetDelete; C9). Value:
    /// [`OffsetDelete`].
    OffsetDelete,
}

impl OpF {
    /// Whether ops with this `f` belong to the nemesis process ([`PROCESS_NEMESIS`]).
    pub fn is_nemesis(self) -> bool {
        matches!(self, OpF::Start | OpF::Stop | OpF::LeaderChange | OpF::FinalDrain | OpF::LogStart)
    }
}

/// Producer acknowledgement level of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Acks {
    #[serde(rename = "0")]
    Zero,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "all")]
    All,
}

/// Idempotent-producer identity of a batch: `seq` is the sequence of its first record; record `i`
/// of the batch has sequence `seq + i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Producer {
    pub pid: u64,
    pub epoch: u64,
    pub seq: u64,
}

/// Value of a `send`: the invoke carries key, values, acks and producer; an `ok` completion repeats
/// them and adds one offset per value (absent under acks=0 if the server returns none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pub key: Key,
    pub values: Vec<Value>,
    pub acks: Acks,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<Producer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<Vec<Offset>>,
}

/// Value of a `poll`: empty on invoke, fail and info; on `ok`, per key the records returned in order
/// and the high watermark (the next offset to be committed, exclusive) reported with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub records: BTreeMap<Key, Vec<(Offset, Value)>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hw: BTreeMap<Key, Offset>,
}

/// Value of `assign` and `rewind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    pub keys: Vec<Key>,
}

/// Value of nemesis `start` / `stop`: the fault ID or name (e.g. "F-P1 kill") and free details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub fault: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// Value of `leader-change`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderChange {
    pub key: Key,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
}

/// Value of `log-start`: some replica of `key` deleted its records below `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogStart {
    pub key: Key,
    pub offset: Offset,
}

/// A consumer group's name.
pub type Group = String;

/// Value of `subscribe`: the group, the topics named, a regular expression (the member also
/// subscribes to every topic whose whole name matches it: KIP-848's server-side regex, or a
/// client-side pattern), and the keys (partitions of the test topic) its subscription covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub group: Group,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<Key>,
}

/// Which of Kafka's group protocols a member speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup; `epoch` is the group generation, shared by all members.
    Classic,
    /// KIP-848 ConsumerGroupHeartbeat; `epoch` is the member's own member epoch.
    Consumer,
}

/// Where a newly assigned key's start position came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// The group's committed offset, fetched during the rebalance op; `offset` is that offset.
    Committed,
    /// The reset policy (earliest/latest): the fetch found no committed offset, or (when
    /// [`StartPosition::committed`] is set) found one outside the log's range.
    Reset,
}

/// The position a member chose for a newly assigned key: its first poll of the key starts there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartPosition {
    pub offset: Offset,
    pub from: StartFrom,
    /// With `from: reset`: the committed offset the fetch returned that was out of range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Offset>,
}

impl StartPosition {
    /// What the member's offset fetch returned, if the position came from one: `Some(None)` for
    /// "nothing committed", `Some(Some(c))` for a committed offset c.
    pub fn fetched(&self) -> Option<Option<Offset>> {
        match self.from {
            StartFrom::Committed => Some(Some(self.offset)),
            StartFrom::Reset => Some(self.committed),
        }
    }
}

/// Value of `rebalance`. The invoke carries the group (and the member id if known); an `ok`
/// completion carries the outcome: member id, protocol, generation or member epoch, the keys
/// newly `assigned`, `revoked` (given up cleanly) and `lost` (taken away: the member was fenced
/// or its session expired), and for each newly assigned key the start position.
///
/// Recording contract (the ownership and resume checks rely on it):
/// * one op per new generation (classic) or member epoch (consumer), even if the assignment did
///   not change; deltas are against the member's previous assignment. The generation or epoch
///   was granted before the op completed, possibly long before it was invoked (a heartbeat's
///   answer applied later, or noticed only after a poll): the checks read it as "given by the
///   completion" (C5), never as "still a member after the invoke" (C7 takes only commits);
/// * the op that revokes a key is *invoked* before the member tells the coordinator it released
///   the key (classic: before its JoinGroup; consumer: before the heartbeat listing what it owns);
/// * the op that assigns a key *completes* after the member received the assignment, and the
///   offset fetch that chose its start position happens inside the op;
/// * a member that learns it was fenced (UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH,
///   ILLEGAL_GENERATION, FENCED_INSTANCE_ID) records it before it acts under a new membership:
///   an ok rebalance with `lost` (possibly empty) and `error`, or a fail of the op that got it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebalance {
    pub group: Group,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Static membership: the group instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<GroupProtocol>,
    /// Classic: the generation; consumer: the member epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assigned: Vec<Key>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<Key>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<Key>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub start: BTreeMap<Key, StartPosition>,
    /// Partitions the op assigned of topics other than the test topic (whose partitions are the
    /// keys): C8 checks them against the member's subscription.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_topics: BTreeMap<String, Vec<u32>>,
    /// The error that ended the membership (a fencing error) or failed the op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Value of `commit`: offsets per key (the next record to consume), whether the client's
/// auto-commit sent it, and the member id and generation / member epoch it was sent with (both
/// absent for a simple or admin commit). The completion repeats it, with the `error` on fail or
/// info.
///
/// Recording contract: one op applies at most once. A client may retry inside an op only after
/// a definite error; after an indefinite one it ends the op `info` (C1 treats an ok commit as
/// applied once inside its interval, an info one at most once, at any time after its invoke).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub group: Group,
    pub offsets: BTreeMap<Key, Offset>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Value of `fetch-committed`: the invoke names the keys; an ok completion adds, per key, the
/// committed offset or null for "nothing committed".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchCommitted {
    pub group: Group,
    pub keys: Vec<Key>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub offsets: BTreeMap<Key, Option<Offset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Value of `delete-records`: the invoke names the key and the offset below which its records are
/// deleted; an ok completion adds the log start the server reported (DR1: at least `before`).
///
/// Recording contract: one op asks once (a client may retry only after a definite error); the
/// checker treats an ok deletion as holding from its completion, and an info or unfinished one as
/// possibly applied at any time after its invoke.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRecords {
    pub key: Key,
    pub before: Offset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start: Option<Offset>,
}

/// Value of `offset-delete` (Kafka's OffsetDelete, C9): the invoke names the group and the keys
/// (partitions of the test topic) whose committed offsets it asks to remove; an ok completion
/// splits them into `deleted` (answered NONE: removed, or nothing was committed) and `refused`
/// (answered GROUP_SUBSCRIBED_TO_TOPIC: kept); a fail or info carries the `error`.
///
/// Recording contract: one op asks once (a client may retry only after a definite error). An ok
/// op's `deleted` keys are removed at one instant inside its interval; a fail removed nothing;
/// an info or unfinished op may have removed any key it asked, at any time after its invoke.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetDelete {
    pub group: Group,
    pub keys: Vec<Key>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<Key>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Key>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The error codes (wire.proto names) that tell a member it is no longer the member it was.
pub const FENCING_ERRORS: &[&str] = &["UNKNOWN_MEMBER_ID", "FENCED_MEMBER_EPOCH", "ILLEGAL_GENERATION", "FENCED_INSTANCE_ID"];

/// Whether `error` is one of [`FENCING_ERRORS`].
pub fn is_fencing_error(error: &str) -> bool {
    FENCING_ERRORS.contains(&error)
}

/// The `value` of an op; which variant is allowed depends on `f` (see [`OpF`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OpValue {
    None,
    Send(Send),
    Poll(Poll),
    Keys(Keys),
    Fault(Fault),
    LeaderChange(LeaderChange),
    LogStart(LogStart),
    Subscribe(Subscribe),
    Rebalance(Rebalance),
    Commit(Commit),
    FetchCommitted(FetchCommitted),
    DeleteRecords(DeleteRecords),
    OffsetDelete(OffsetDelete),
}

impl OpValue {
    /// Parses a JSON value as the value shape that `f` takes.
    fn from_json(f: OpF, value: serde_json::Value) -> Result<OpValue, serde_json::Error> {
        Ok(match f {
            OpF::Send => OpValue::Send(serde_json::from_value(value)?),
            OpF::Poll if value.is_null() => OpValue::Poll(Poll::default()),
            OpF::Poll => OpValue::Poll(serde_json::from_value(value)?),
            OpF::Assign | OpF::Rewind => OpValue::Keys(serde_json::from_value(value)?),
            OpF::Start | OpF::Stop => OpValue::Fault(serde_json::from_value(value)?),
            OpF::LeaderChange => OpValue::LeaderChange(serde_json::from_value(value)?),
            OpF::LogStart => OpValue::LogStart(serde_json::from_value(value)?),
            OpF::Subscribe => OpValue::Subscribe(serde_json::from_value(value)?),
            OpF::Rebalance => OpValue::Rebalance(serde_json::from_value(value)?),
            OpF::Commit => OpValue::Commit(serde_json::from_value(value)?),
            OpF::FetchCommitted => OpValue::FetchCommitted(serde_json::from_value(value)?),
            OpF::DeleteRecords => OpValue::DeleteRecords(serde_json::from_value(value)?),
            OpF::OffsetDelete => OpValue::OffsetDelete(serde_json::from_value(value)?),
            OpF::Crash | OpF::FinalDrain => {
                let () = serde_json::from_value(value)?;
                OpValue::None
            }
        })
    }

    /// Whether this value has the shape `f` takes.
    pub fn fits(&self, f: OpF) -> bool {
        matches!(
            (f, self),
            (OpF::Send, OpValue::Send(_))
                | (OpF::Poll, OpValue::Poll(_))
                | (OpF::Assign | OpF::Rewind, OpValue::Keys(_))
                | (OpF::Start | OpF::Stop, OpValue::Fault(_))
                | (OpF::LeaderChange, OpValue::LeaderChange(_))
                | (OpF::LogStart, OpValue::LogStart(_))
                | (OpF::Subscribe, OpValue::Subscribe(_))
                | (OpF::Rebalance, OpValue::Rebalance(_))
                | (OpF::Commit, OpValue::Commit(_))
                | (OpF::FetchCommitted, OpValue::FetchCommitted(_))
                | (OpF::DeleteRecords, OpValue::DeleteRecords(_))
                | (OpF::OffsetDelete, OpValue::OffsetDelete(_))
                | (OpF::Crash | OpF::FinalDrain, OpValue::None)
        )
    }
}

/// One history operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OpJson")]
pub struct Op {
    pub index: u64,
    #[serde(rename = "time")]
    pub time_ns: u64,
    #[serde(with = "process_json")]
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: OpF,
    pub value: OpValue,
}

/// The wire form of an op before its value is parsed according to `f`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpJson {
    index: u64,
    time: u64,
    #[serde(with = "process_json")]
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: OpF,
    #[serde(default)]
    value: serde_json::Value,
}

impl TryFrom<OpJson> for Op {
    type Error = serde_json::Error;
    fn try_from(op: OpJson) -> Result<Op, serde_json::Error> {
        let value = OpValue::from_json(op.f, op.value)?;
        Ok(Op { index: op.index, time_ns: op.time, process: op.process, kind: op.kind, f: op.f, value })
    }
}

mod process_json {
    use super::{Process, PROCESS_NEMESIS};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(process: &Process, s: S) -> Result<S::Ok, S::Error> {
        if *process == PROCESS_NEMESIS {
            s.serialize_str("nemesis")
        } else {
            s.serialize_u64(*process)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ProcessJson {
        Number(u64),
        Name(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Process, D::Error> {
        match ProcessJson::deserialize(d)? {
            ProcessJson::Number(n) => Ok(n),
            ProcessJson::Name(name) if name == "nemesis" => Ok(PROCESS_NEMESIS),
            ProcessJson::Name(name) => Err(serde::de::Error::custom(format!("unknown process {name:?}"))),
        }
    }
}

/// Errors building, validating or parsing a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("line {line}: longer than HISTORY_LINE_BYTES_MAX ({max} bytes)", max = HISTORY_LINE_BYTES_MAX)]
    LineTooLong { line: usize },
    #[error("op at position {position} has index {index}: indices must be dense from 0")]
    IndexGap { position: usize, index: u64 },
    #[error("op {index}: time {time_ns} ns is before the previous op's {time_ns_previous} ns")]
    TimeWentBackwards { index: u64, time_ns: u64, time_ns_previous: u64 },
    #[error("op {index}: process {process} already has an open invoke (op {open})")]
    ProcessBusy { index: u64, process: Process, open: u64 },
    #[error("op {index}: process {process} was retired (info or crash) and may not act again")]
    ProcessRetired { index: u64, process: Process },
    #[error("op {index}: completion for process {process} has no open invoke")]
    NoOpenInvoke { index: u64, process: Process },
    #[error("op {index}: completion f {f:?} does not match its invoke's f {f_invoke:?}")]
    CompletionMismatch { index: u64, f: OpF, f_invoke: OpF },
    #[error("op {index}: f {f:?} by process {process}: fault, leader-change and final-drain ops are the nemesis's, and only those")]
    WrongProcess { index: u64, process: Process, f: OpF },
    #[error("op {index}: value does not fit f {f:?}")]
    ValueMismatch { index: u64, f: OpF },
}

/// A validated history (see the module invariants).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

/// Process bookkeeping shared by [`History::from_ops`] and [`HistoryBuilder`].
#[derive(Default)]
struct Processes {
    /// Open invoke per process: (index, f).
    open: BTreeMap<Process, (u64, OpF)>,
    retired: BTreeSet<Process>,
    time_ns_last: u64,
}

impl Processes {
    /// Checks `op` against the invariants and applies it.
    fn admit(&mut self, op: &Op) -> Result<(), HistoryError> {
        let index = op.index;
        if op.time_ns < self.time_ns_last {
            return Err(HistoryError::TimeWentBackwards { index, time_ns: op.time_ns, time_ns_previous: self.time_ns_last });
        }
        if !op.value.fits(op.f) {
            return Err(HistoryError::ValueMismatch { index, f: op.f });
        }
        self.time_ns_last = op.time_ns;
        if (op.process == PROCESS_NEMESIS) != op.f.is_nemesis() {
            return Err(HistoryError::WrongProcess { index, process: op.process, f: op.f });
        }
        if op.process == PROCESS_NEMESIS {
            return Ok(()); // Nemesis and observer ops may overlap freely.
        }
        if self.retired.contains(&op.process) {
            return Err(HistoryError::ProcessRetired { index, process: op.process });
        }
        match (op.kind, self.open.get(&op.process).copied()) {
            (OpType::Invoke, Some((open, _))) => return Err(HistoryError::ProcessBusy { index, process: op.process, open }),
            (OpType::Invoke, None) => {
                self.open.insert(op.process, (index, op.f));
            }
            // A crash is a standalone info op: it retires the process, open invoke or not.
            (OpType::Info, _) if op.f == OpF::Crash => {
                self.open.remove(&op.process);
                self.retired.insert(op.process);
            }
            (_, None) => return Err(HistoryError::NoOpenInvoke { index, process: op.process }),
            (_, Some((_, f_invoke))) if f_invoke != op.f => return Err(HistoryError::CompletionMismatch { index, f: op.f, f_invoke }),
            (kind, Some(_)) => {
                self.open.remove(&op.process);
                if kind == OpType::Info {
                    self.retired.insert(op.process);
                }
            }
        }
        Ok(())
    }
}

impl History {
    /// Validates `ops` (dense indices, monotonic time, process discipline, value shapes).
    pub fn from_ops(ops: Vec<Op>) -> Result<History, HistoryError> {
        let mut processes = Processes::default();
        for (position, op) in ops.iter().enumerate() {
            if op.index != position as u64 {
                return Err(HistoryError::IndexGap { position, index: op.index });
            }
            processes.admit(op)?;
        }
        Ok(History { ops })
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// Writes one JSON object per line.
    pub fn write_json_lines<W: Write>(&self, mut writer: W) -> Result<(), HistoryError> {
        for op in &self.ops {
            serde_json::to_writer(&mut writer, op).map_err(|source| HistoryError::Json { line: op.index as usize + 1, source })?;
            writer.write_all(b"\n")?;
        }
        writer.flush()?;
        Ok(())
    }

    /// Reads JSON lines (blank lines are skipped) and validates the result.
    pub fn read_json_lines<R: BufRead>(mut reader: R) -> Result<History, HistoryError> {
        let mut ops = Vec::new();
        let mut line = Vec::new();
        let mut line_number = 0;
        loop {
            line.clear();
            line_number += 1;
            let n = Read::take(&mut reader, HISTORY_LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.len() > HISTORY_LINE_BYTES_MAX {
                return Err(HistoryError::LineTooLong { line: line_number });
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let op: Op = serde_json::from_slice(&line).map_err(|source| HistoryError::Json { line: line_number, source })?;
            ops.push(op);
        }
        History::from_ops(ops)
    }
}

/// An open invoke, returned by [`HistoryBuilder::invoke`]; complete it exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an invoke must be completed with ok, fail or info"]
pub struct OpHandle {
    pub process: Process,
    pub index: u64,
    pub f: OpF,
}

/// Records a history as a workload driver runs. Indices are assigned here; times come from the
/// caller's monotonic clock (nanoseconds), read once per recorded op.
pub struct HistoryBuilder {
    ops: Vec<Op>,
    processes: Processes,
    clock_ns: Box<dyn FnMut() -> u64 + std::marker::Send>,
}

impl std::fmt::Debug for HistoryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryBuilder").field("ops", &self.ops.len()).finish()
    }
}

impl HistoryBuilder {
    /// `clock_ns` must be monotonic (e.g. the simulator's virtual time, or `Instant` elapsed in the
    /// harness); a step backwards is an error on the op that observes it.
    pub fn new(clock_ns: impl FnMut() -> u64 + std::marker::Send + 'static) -> HistoryBuilder {
        HistoryBuilder { ops: Vec::new(), processes: Processes::default(), clock_ns: Box::new(clock_ns) }
    }

    fn record(&mut self, process: Process, kind: OpType, f: OpF, value: OpValue) -> Result<u64, HistoryError> {
        let index = self.ops.len() as u64;
        let op = Op { index, time_ns: (self.clock_ns)(), process, kind, f, value };
        self.processes.admit(&op)?;
        self.ops.push(op);
        Ok(index)
    }

    /// Records an invoke by a client process.
    pub fn invoke(&mut self, process: Process, f: OpF, value: OpValue) -> Result<OpHandle, HistoryError> {
        assert_ne!(process, PROCESS_NEMESIS, "nemesis ops are recorded with fault_start / fault_stop");
        let index = self.record(process, OpType::Invoke, f, value)?;
        Ok(OpHandle { process, index, f })
    }

    pub fn invoke_send(&mut self, process: Process, send: Send) -> Result<OpHandle, HistoryError> {
        assert!(send.offsets.is_none(), "a send invoke carries no offsets");
        self.invoke(process, OpF::Send, OpValue::Send(send))
    }

    pub fn invoke_poll(&mut self, process: Process) -> Result<OpHandle, HistoryError> {
        self.invoke(process, OpF::Poll, OpValue::Poll(Poll::default()))
    }

    /// Completes `handle` with `kind` (ok, fail or info); returns the completion's index.
    /// An info completion retires the process.
    pub fn complete(&mut self, handle: OpHandle, kind: OpType, value: OpValue) -> Result<u64, HistoryError> {
        assert_ne!(kind, OpType::Invoke, "complete takes ok, fail or info");
        self.record(handle.process, kind, handle.f, value)
    }

    pub fn ok(&mut self, handle: OpHandle, value: OpValue) -> Result<u64, HistoryError> {
        self.complete(handle, OpType::Ok, value)
    }

    pub fn fail(&mut self, handle: OpHandle, value: OpValue) -> Result<u64, HistoryError> {
        self.complete(handle, OpType::Fail, value)
    }

    pub fn info(&mut self, handle: OpHandle, value: OpValue) -> Result<u64, HistoryError> {
        self.complete(handle, OpType::Info, value)
    }

    /// The client process crashed (F-K1): records an info `crash` and retires it. An open invoke
    /// stays indeterminate.
    pub fn crash(&mut self, process: Process) -> Result<u64, HistoryError> {
        self.record(process, OpType::Info, OpF::Crash, OpValue::None)
    }

    pub fn fault_start(&mut self, fault: Fault) -> Result<u64, HistoryError> {
        self.record(PROCESS_NEMESIS, OpType::Info, OpF::Start, OpValue::Fault(fault))
    }

    pub fn fault_stop(&mut self, fault: Fault) -> Result<u64, HistoryError> {
        self.record(PROCESS_NEMESIS, OpType::Info, OpF::Stop, OpValue::Fault(fault))
    }

    pub fn leader_change(&mut self, key: Key, leader: Option<u64>) -> Result<u64, HistoryError> {
        self.record(PROCESS_NEMESIS, OpType::Info, OpF::LeaderChange, OpValue::LeaderChange(LeaderChange { key, leader }))
    }

    /// Retention moved `key`'s log start to `offset` on some replica.
    pub fn log_start(&mut self, key: Key, offset: Offset) -> Result<u64, HistoryError> {
        self.record(PROCESS_NEMESIS, OpType::Info, OpF::LogStart, OpValue::LogStart(LogStart { key, offset }))
    }

    /// Marks the start of the final drain; polls invoked after this are drain polls.
    pub fn final_drain(&mut self) -> Result<u64, HistoryError> {
        self.record(PROCESS_NEMESIS, OpType::Info, OpF::FinalDrain, OpValue::None)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The history so far. Open invokes stay open (indeterminate).
    pub fn finish(self) -> History {
        History { ops: self.ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> HistoryBuilder {
        let mut t = 0;
        HistoryBuilder::new(move || {
            t += 10;
            t
        })
    }

    #[test]
    fn json_lines_round_trip() {
        let mut b = builder();
        b.fault_start(Fault { fault: "F-P1 kill".into(), details: BTreeMap::from([("node".into(), "n2".into())]) }).unwrap();
        let a = b.invoke(1, OpF::Assign, OpValue::Keys(Keys { keys: vec![0, 1] })).unwrap();
        b.ok(a, OpValue::Keys(Keys { keys: vec![0, 1] })).unwrap();
        let producer = Some(Producer { pid: 9, epoch: 1, seq: 0 });
        let send = Send { key: 0, values: vec![10, 11], acks: Acks::All, producer, offsets: None };
        let s = b.invoke_send(2, send.clone()).unwrap();
        b.ok(s, OpValue::Send(Send { offsets: Some(vec![0, 1]), ..send })).unwrap();
        let p = b.invoke_poll(1).unwrap();
        let poll = Poll { records: BTreeMap::from([(0, vec![(0, 10), (1, 11)])]), hw: BTreeMap::from([(0, 2), (1, 0)]) };
        b.ok(p, OpValue::Poll(poll)).unwrap();
        let s = b.invoke_send(3, Send { key: 1, values: vec![12], acks: Acks::Zero, producer: None, offsets: None }).unwrap();
        b.info(s, OpValue::Send(Send { key: 1, values: vec![12], acks: Acks::Zero, producer: None, offsets: None })).unwrap();
        b.leader_change(1, Some(2)).unwrap();
        b.crash(1).unwrap();
        b.final_drain().unwrap();
        let r = b.invoke(4, OpF::Rewind, OpValue::Keys(Keys { keys: vec![0] })).unwrap();
        b.fail(r, OpValue::Keys(Keys { keys: vec![0] })).unwrap();
        b.fault_stop(Fault { fault: "F-P1 kill".into(), details: BTreeMap::new() }).unwrap();
        let history = b.finish();

        let mut bytes = Vec::new();
        history.write_json_lines(&mut bytes).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), history.len());
        assert!(text.starts_with(r#"{"index":0,"time":10,"process":"nemesis","type":"info","f":"start","value":{"fault":"F-P1 kill""#));
        assert!(text.contains(
            r#""f":"send","value":{"key":0,"values":[10,11],"acks":"all","producer":{"pid":9,"epoch":1,"seq":0},"offsets":[0,1]}"#
        ));
        assert!(text.contains(r#""value":{"records":{"0":[[0,10],[1,11]]},"hw":{"0":2,"1":0}}"#));
        let parsed = History::read_json_lines(&bytes[..]).unwrap();
        assert_eq!(parsed, history);
    }

    #[test]
    fn parse_accepts_jepsen_style_null_values_and_rejects_bad_shapes() {
        let ok = "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"poll\",\"value\":null}\n\n\
                  {\"index\":1,\"time\":2,\"process\":0,\"type\":\"info\",\"f\":\"crash\"}\n";
        let h = History::read_json_lines(ok.as_bytes()).unwrap();
        assert_eq!(h.ops()[0].value, OpValue::Poll(Poll::default()));
        let bad_value = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":{"key":0}}"#;
        assert!(matches!(History::read_json_lines(bad_value.as_bytes()), Err(HistoryError::Json { line: 1, .. })));
        let client_fault = r#"{"index":0,"time":1,"process":0,"type":"info","f":"final-drain","value":null}"#;
        assert!(matches!(History::read_json_lines(client_fault.as_bytes()), Err(HistoryError::WrongProcess { .. })));
        let nemesis_send = r#"{"index":0,"time":1,"process":"nemesis","type":"ok","f":"send","value":{"key":0,"values":[1],"acks":"1"}}"#;
        assert!(matches!(History::read_json_lines(nemesis_send.as_bytes()), Err(HistoryError::WrongProcess { .. })));
        let bad_index = r#"{"index":1,"time":1,"process":0,"type":"invoke","f":"poll","value":null}"#;
        assert!(matches!(History::read_json_lines(bad_index.as_bytes()), Err(HistoryError::IndexGap { .. })));
    }

    #[test]
    fn builder_enforces_process_discipline() {
        let mut b = builder();
        let p = b.invoke_poll(1).unwrap();
        assert!(matches!(b.invoke_poll(1), Err(HistoryError::ProcessBusy { process: 1, .. })));
        b.info(p, OpValue::Poll(Poll::default())).unwrap();
        assert!(matches!(b.invoke_poll(1), Err(HistoryError::ProcessRetired { process: 1, .. })));
        let stray = OpHandle { process: 2, index: 0, f: OpF::Poll };
        assert!(matches!(b.ok(stray, OpValue::Poll(Poll::default())), Err(HistoryError::NoOpenInvoke { .. })));
        let h = b.invoke_poll(3).unwrap();
        assert!(matches!(b.ok(h, OpValue::None), Err(HistoryError::ValueMismatch { .. })));
    }

    /// The consumer-group shapes, exactly as a recorder writes them (the client's contract).
    const GROUP_LINES: &str = r#"{"index":0,"time":1,"process":5,"type":"invoke","f":"subscribe","value":{"group":"g","topics":["t"],"keys":[0,1]}}
{"index":1,"time":2,"process":5,"type":"ok","f":"subscribe","value":{"group":"g","topics":["t"],"keys":[0,1]}}
{"index":2,"time":3,"process":5,"type":"invoke","f":"rebalance","value":{"group":"g"}}
{"index":3,"time":4,"process":5,"type":"ok","f":"rebalance","value":{"group":"g","member":"m1","protocol":"consumer","epoch":3,"assigned":[0,1],"start":{"0":{"offset":7,"from":"committed"},"1":{"offset":0,"from":"reset"}}}}
{"index":4,"time":5,"process":5,"type":"invoke","f":"poll","value":{}}
{"index":5,"time":6,"process":5,"type":"ok","f":"poll","value":{"records":{"0":[[7,70]]},"hw":{"0":8,"1":0}}}
{"index":6,"time":7,"process":5,"type":"invoke","f":"commit","value":{"group":"g","offsets":{"0":8},"auto":true,"member":"m1","epoch":3}}
{"index":7,"time":8,"process":5,"type":"ok","f":"commit","value":{"group":"g","offsets":{"0":8},"auto":true,"member":"m1","epoch":3}}
{"index":8,"time":9,"process":5,"type":"invoke","f":"commit","value":{"group":"g","offsets":{"0":8},"member":"m1","epoch":2}}
{"index":9,"time":10,"process":5,"type":"fail","f":"commit","value":{"group":"g","offsets":{"0":8},"member":"m1","epoch":2,"error":"STALE_MEMBER_EPOCH"}}
{"index":10,"time":11,"process":5,"type":"invoke","f":"fetch-committed","value":{"group":"g","keys":[0,1]}}
{"index":11,"time":12,"process":5,"type":"ok","f":"fetch-committed","value":{"group":"g","keys":[0,1],"offsets":{"0":8,"1":null}}}
{"index":12,"time":13,"process":5,"type":"invoke","f":"rebalance","value":{"group":"g","member":"m1"}}
{"index":13,"time":14,"process":5,"type":"ok","f":"rebalance","value":{"group":"g","member":"m1","protocol":"consumer","epoch":3,"lost":[0,1],"error":"FENCED_MEMBER_EPOCH"}}
"#;

    #[test]
    fn group_ops_parse_and_round_trip_byte_for_byte() {
        let history = History::read_json_lines(GROUP_LINES.as_bytes()).unwrap();
        let OpValue::Rebalance(rebalance) = &history.ops()[3].value else { panic!("a rebalance") };
        assert_eq!((rebalance.protocol, rebalance.epoch, &rebalance.assigned[..]), (Some(GroupProtocol::Consumer), Some(3), &[0, 1][..]));
        assert_eq!(rebalance.start[&0].fetched(), Some(Some(7)));
        assert_eq!(rebalance.start[&1].fetched(), Some(None));
        let OpValue::FetchCommitted(fetch) = &history.ops()[11].value else { panic!("a fetch") };
        assert_eq!(fetch.offsets, BTreeMap::from([(0, Some(8)), (1, None)]));
        assert!(matches!(&history.ops()[7].value, OpValue::Commit(c) if c.auto && c.offsets[&0] == 8));
        let mut bytes = Vec::new();
        history.write_json_lines(&mut bytes).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), GROUP_LINES);
    }

    #[test]
    fn group_op_values_are_checked_against_f() {
        let unknown_field =
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"commit","value":{"group":"g","offsets":{},"generation":3}}"#;
        assert!(matches!(History::read_json_lines(unknown_field.as_bytes()), Err(HistoryError::Json { line: 1, .. })));
        let no_group = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"rebalance","value":{"member":"m"}}"#;
        assert!(matches!(History::read_json_lines(no_group.as_bytes()), Err(HistoryError::Json { line: 1, .. })));
        let mut b = builder();
        let h = b.invoke(1, OpF::Commit, OpValue::Commit(Commit { group: "g".into(), ..Commit::default() })).unwrap();
        assert!(matches!(b.ok(h, OpValue::Keys(Keys { keys: vec![] })), Err(HistoryError::ValueMismatch { .. })));
        assert!(is_fencing_error("ILLEGAL_GENERATION") && !is_fencing_error("STALE_MEMBER_EPOCH"));
    }

    #[test]
    fn builder_rejects_a_clock_that_goes_backwards() {
        let mut times = vec![5, 3].into_iter();
        let mut b = HistoryBuilder::new(move || times.next().unwrap());
        b.final_drain().unwrap();
        assert!(matches!(b.final_drain(), Err(HistoryError::TimeWentBackwards { index: 1, .. })));
    }
}
