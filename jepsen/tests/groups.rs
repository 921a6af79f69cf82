//! Teeth for the consumer-group checks C1–C9: for every group anomaly kind, a small hand-written
//! history that has it (fatal or reported, as the checker's rules say) and histories that do not
//! (they must pass with no anomaly at all).

mod expect;

use std::collections::BTreeMap;

use odradek_jepsen::checker::{check, AnomalyKind, CheckOptions, GroupStats, Verdict};
use odradek_jepsen::history::{
    Acks, Commit, FetchCommitted, GroupProtocol, History, HistoryBuilder, Key, Keys, Offset, OffsetDelete, OpF, OpValue, Poll, Process,
    Rebalance, Send, StartFrom, StartPosition, Subscribe, Value,
};

const GROUP: &str = "g";

/// A terse group-history writer over [`HistoryBuilder`]. Every op completes at once unless split.
struct G {
    b: HistoryBuilder,
}

/// How a commit ends.
#[derive(Clone, Copy)]
enum End {
    Ok,
    Fail(&'static str),
    Info,
}

impl G {
    fn new() -> G {
        let mut t = 0;
        G {
            b: HistoryBuilder::new(move || {
                t += 1;
                t
            }),
        }
    }

    /// An acks=all send of `values` to `key` at consecutive offsets from `first`.
    fn write(&mut self, p: Process, key: Key, first: Offset, values: &[Value]) {
        let send = Send { key, values: values.to_vec(), acks: Acks::All, producer: None, offsets: None };
        let handle = self.b.invoke_send(p, send.clone()).unwrap();
        let offsets = (first..first + values.len() as u64).collect();
        self.b.ok(handle, OpValue::Send(Send { offsets: Some(offsets), ..send })).unwrap();
    }

    fn subscribe(&mut self, p: Process) {
        let value = OpValue::Subscribe(Subscribe { group: GROUP.into(), topics: vec!["t".into()], pattern: None, keys: vec![0, 1] });
        let handle = self.b.invoke(p, OpF::Subscribe, value.clone()).unwrap();
        self.b.ok(handle, value).unwrap();
    }

    /// Subscribes by the regular expression `pattern` alone (KIP-848's server-side regex).
    fn subscribe_pattern(&mut self, p: Process, pattern: &str) {
        let value =
            OpValue::Subscribe(Subscribe { group: GROUP.into(), topics: Vec::new(), pattern: Some(pattern.into()), keys: vec![0, 1] });
        let handle = self.b.invoke(p, OpF::Subscribe, value.clone()).unwrap();
        self.b.ok(handle, value).unwrap();
    }

    fn rebalance(&mut self, p: Process, r: Rebalance) {
        let asked = Rebalance { group: r.group.clone(), member: r.member.clone(), ..Rebalance::default() };
        let handle = self.b.invoke(p, OpF::Rebalance, OpValue::Rebalance(asked)).unwrap();
        self.b.ok(handle, OpValue::Rebalance(r)).unwrap();
    }

    fn poll(&mut self, p: Process, key: Key, records: &[(Offset, Value)]) {
        let handle = self.b.invoke_poll(p).unwrap();
        let poll = Poll { records: BTreeMap::from([(key, records.to_vec())]), hw: BTreeMap::new() };
        self.b.ok(handle, OpValue::Poll(poll)).unwrap();
    }

    fn commit_value(member: Option<&str>, epoch: Option<u64>, offsets: &[(Key, Offset)], auto: bool) -> Commit {
        Commit {
            group: GROUP.into(),
            offsets: offsets.iter().copied().collect(),
            auto,
            member: member.map(str::to_string),
            epoch,
            error: None,
        }
    }

    fn end_commit(&mut self, handle: odradek_jepsen::history::OpHandle, commit: Commit, end: End) {
        match end {
            End::Ok => self.b.ok(handle, OpValue::Commit(commit)),
            End::Fail(error) => self.b.fail(handle, OpValue::Commit(Commit { error: Some(error.into()), ..commit })),
            End::Info => self.b.info(handle, OpValue::Commit(Commit { error: Some("REQUEST_TIMED_OUT".into()), ..commit })),
        }
        .unwrap();
    }

    fn commit(&mut self, p: Process, member: Option<&str>, epoch: Option<u64>, offsets: &[(Key, Offset)], auto: bool, end: End) {
        let commit = G::commit_value(member, epoch, offsets, auto);
        let handle = self.b.invoke(p, OpF::Commit, OpValue::Commit(commit.clone())).unwrap();
        self.end_commit(handle, commit, end);
    }

    fn fetch(&mut self, p: Process, answer: &[(Key, Option<Offset>)]) {
        let asked = FetchCommitted { group: GROUP.into(), keys: answer.iter().map(|a| a.0).collect(), ..FetchCommitted::default() };
        let handle = self.b.invoke(p, OpF::FetchCommitted, OpValue::FetchCommitted(asked.clone())).unwrap();
        self.b.ok(handle, OpValue::FetchCommitted(FetchCommitted { offsets: answer.iter().copied().collect(), ..asked })).unwrap();
    }

    /// An offset deletion of `deleted` and `refused` keys, ok; or info (`deleted` asked, outcome unknown).
    fn delete_offsets(&mut self, p: Process, deleted: &[Key], refused: &[Key], end: End) {
        let keys = deleted.iter().chain(refused).copied().collect();
        let asked = OffsetDelete { group: GROUP.into(), keys, ..OffsetDelete::default() };
        let handle = self.b.invoke(p, OpF::OffsetDelete, OpValue::OffsetDelete(asked.clone())).unwrap();
        let done = match end {
            End::Ok => OffsetDelete { deleted: deleted.to_vec(), refused: refused.to_vec(), ..asked },
            End::Fail(error) => OffsetDelete { error: Some(error.into()), ..asked },
            End::Info => OffsetDelete { error: Some("REQUEST_TIMED_OUT".into()), ..asked },
        };
        match end {
            End::Ok => self.b.ok(handle, OpValue::OffsetDelete(done)),
            End::Fail(_) => self.b.fail(handle, OpValue::OffsetDelete(done)),
            End::Info => self.b.info(handle, OpValue::OffsetDelete(done)),
        }
        .unwrap();
    }

    /// The final drain: the marker, then a fresh process reads `key` from the beginning.
    fn drain(&mut self, p: Process, key: Key, records: &[(Offset, Value)]) {
        self.b.final_drain().unwrap();
        self.read_all(p, key, records);
    }

    /// A process outside the group reads `key` from the beginning (so no acked record is lost to L6).
    fn read_all(&mut self, p: Process, key: Key, records: &[(Offset, Value)]) {
        let keys = OpValue::Keys(Keys { keys: vec![key] });
        let handle = self.b.invoke(p, OpF::Assign, keys.clone()).unwrap();
        self.b.ok(handle, keys).unwrap();
        self.poll(p, key, records);
    }

    fn crash(&mut self, p: Process) {
        self.b.crash(p).unwrap();
    }

    fn done(self) -> History {
        self.b.finish()
    }
}

fn member(name: &str, protocol: GroupProtocol, epoch: u64) -> Rebalance {
    Rebalance { group: GROUP.into(), member: Some(name.into()), protocol: Some(protocol), epoch: Some(epoch), ..Rebalance::default() }
}

fn consumer(name: &str, epoch: u64) -> Rebalance {
    member(name, GroupProtocol::Consumer, epoch)
}

fn classic(name: &str, generation: u64) -> Rebalance {
    member(name, GroupProtocol::Classic, generation)
}

fn starts(starts: &[(Key, Offset, StartFrom)]) -> BTreeMap<Key, StartPosition> {
    starts.iter().map(|&(k, offset, from)| (k, StartPosition { offset, from, committed: None })).collect()
}

use odradek_jepsen::history::StartFrom::{Committed, Reset};

/// Process numbers: producers 1.., members 10.., companions (auto-commit inside a poll) 100..,
/// readers 200...
const PRODUCER: Process = 1;
const READER: Process = 200;

/// Writes values 100, 101, 102 at offsets 0..3 of key 0.
fn three_records(g: &mut G) {
    g.write(PRODUCER, 0, 0, &[100, 101, 102]);
}

/// Member 10 (m1, consumer protocol, epoch 1) is assigned key 0 starting from nothing committed.
fn first_member(g: &mut G) {
    g.subscribe(10);
    g.rebalance(10, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), ..consumer("m1", 1) });
}

struct Case {
    name: &'static str,
    expect: Expect,
    history: fn() -> History,
}

fn case(name: &'static str, expect: Expect, history: fn() -> History) -> Case {
    Case { name, expect, history }
}

use expect::Expect::{self, *};
use AnomalyKind::*;

fn cases() -> Vec<Case> {
    vec![
        // A whole valid life: poll, commit, crash, resume at the commit, final fetch after drain.
        case("consume, commit, crash, resume, final fetch", Clean, || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 1)], false, End::Ok);
            g.crash(10);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 1, Committed)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(1, 101), (2, 102)]);
            g.commit(11, Some("m2"), Some(2), &[(0, 3)], true, End::Ok);
            g.drain(READER, 0, &[(0, 100), (1, 101), (2, 102)]);
            g.fetch(READER, &[(0, Some(3)), (1, None)]);
            g.done()
        }),
        // C1
        case("fetch answers a commit that failed definitely (new coordinator, uncommitted state)", Fatal(CommitNonlinearizable), || {
            let mut g = G::new();
            g.commit(10, None, None, &[(0, 5)], false, End::Fail("NOT_COORDINATOR"));
            g.fetch(11, &[(0, Some(5))]);
            g.done()
        }),
        case("fetch returns an older offset after a newer commit completed", Fatal(CommitNonlinearizable), || {
            let mut g = G::new();
            g.commit(10, None, None, &[(0, 5)], false, End::Ok);
            g.commit(10, None, None, &[(0, 7)], false, End::Ok);
            g.fetch(11, &[(0, Some(5))]);
            g.done()
        }),
        case("start position from a committed offset nobody committed", Fatal(CommitNonlinearizable), || {
            let mut g = G::new();
            three_records(&mut g);
            g.subscribe(10);
            g.rebalance(10, Rebalance { assigned: vec![0], start: starts(&[(0, 2, Committed)]), ..consumer("m1", 1) });
            g.poll(10, 0, &[(2, 102)]);
            g.done()
        }),
        case("acked commit gone after the final drain", Fatal(CommitLost), || {
            let mut g = G::new();
            g.commit(10, None, None, &[(0, 5)], false, End::Ok);
            g.b.final_drain().unwrap();
            g.fetch(READER, &[(0, None)]);
            g.done()
        }),
        case("indeterminate commits may apply late or never", Clean, || {
            let mut g = G::new();
            g.commit(10, None, None, &[(0, 5)], false, End::Info);
            g.commit(11, None, None, &[(0, 7)], false, End::Ok);
            g.fetch(12, &[(0, Some(7))]);
            g.fetch(12, &[(0, Some(5))]);
            g.commit(13, None, None, &[(0, 9)], false, End::Info);
            g.b.final_drain().unwrap();
            g.fetch(READER, &[(0, Some(5))]);
            g.done()
        }),
        case("no fetch after the final drain leaves the acked commit unverified", Reported(CommitUnverified), || {
            let mut g = G::new();
            g.commit(10, None, None, &[(0, 5)], false, End::Ok);
            g.fetch(11, &[(0, Some(5))]);
            g.b.final_drain().unwrap();
            g.done()
        }),
        case("a pile of concurrent commits is unknown, not failed", Reported(CommitUnknown), || {
            let mut g = G::new();
            let commits: Vec<_> = (0..70)
                .map(|i| {
                    let commit = G::commit_value(None, None, &[(0, i)], false);
                    (g.b.invoke(10 + i, OpF::Commit, OpValue::Commit(commit.clone())).unwrap(), commit)
                })
                .collect();
            g.fetch(300, &[(0, Some(1_000))]);
            for (handle, commit) in commits {
                g.end_commit(handle, commit, End::Ok);
            }
            g.done()
        }),
        // C2
        case("committed offset past values no member polled", Fatal(GroupSkip), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 3)], false, End::Ok);
            g.done()
        }),
        case("commit invoked before the poll returning the record completed", Fatal(GroupSkip), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            let poll = g.b.invoke_poll(10).unwrap();
            g.commit(100, Some("m1"), Some(1), &[(0, 3)], false, End::Ok);
            g.b.ok(poll, OpValue::Poll(Poll { records: BTreeMap::from([(0, vec![(0, 100), (1, 101), (2, 102)])]), hw: BTreeMap::new() }))
                .unwrap();
            g.done()
        }),
        case("reset to latest skips the older records legitimately", Clean, || {
            let mut g = G::new();
            three_records(&mut g);
            g.subscribe(10);
            g.rebalance(10, Rebalance { assigned: vec![0], start: starts(&[(0, 2, Reset)]), ..consumer("m1", 1) });
            g.poll(10, 0, &[(2, 102)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 3)], false, End::Ok);
            g.read_all(READER, 0, &[(0, 100), (1, 101), (2, 102)]);
            g.done()
        }),
        case("commit past records retention deleted before any poll skips nothing", Clean, || {
            let mut g = G::new();
            three_records(&mut g);
            g.b.log_start(0, 2).unwrap();
            first_member(&mut g);
            g.poll(10, 0, &[(2, 102)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 3)], false, End::Ok);
            g.done()
        }),
        case("commit past a record above the log start that no member polled", Fatal(GroupSkip), || {
            let mut g = G::new();
            g.write(PRODUCER, 0, 0, &[100, 101, 102, 103]);
            g.b.log_start(0, 2).unwrap();
            first_member(&mut g);
            g.poll(10, 0, &[(3, 103)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 4)], false, End::Ok);
            g.done()
        }),
        // C3
        case("resume after the committed offset skips a record", Fatal(ResumeSkip), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 1)], false, End::Ok);
            g.crash(10);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 1, Committed)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(2, 102)]);
            g.done()
        }),
        case("resume past records retention deleted skips nothing", Clean, || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 1)], false, End::Ok);
            g.crash(10);
            g.b.log_start(0, 2).unwrap();
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 1, Committed)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(2, 102)]);
            g.done()
        }),
        // The bound is the log start recorded before the poll completed: a record that retention
        // deleted only later existed when the first poll passed over it.
        case("a first poll past a record retention deleted only later is a skip", Fatal(ResumeSkip), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 1)], false, End::Ok);
            g.crash(10);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 1, Committed)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(2, 102)]);
            g.b.log_start(0, 3).unwrap();
            g.done()
        }),
        case("resume past a record above the log start is still a skip", Fatal(ResumeSkip), || {
            let mut g = G::new();
            g.write(PRODUCER, 0, 0, &[100, 101, 102, 103]);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 1)], false, End::Ok);
            g.crash(10);
            g.b.log_start(0, 2).unwrap();
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 1, Committed)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(3, 103)]);
            g.done()
        }),
        case("resume before the committed offset is re-delivery, reported", Reported(ResumeEarlier), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100)]);
            g.commit(10, Some("m1"), Some(1), &[(0, 1)], false, End::Ok);
            g.crash(10);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 1, Committed)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(0, 100), (1, 101)]);
            g.done()
        }),
        // C4
        case("auto-commit of the current poll's records", Fatal(AutoCommitUnpolled), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            let poll = g.b.invoke_poll(10).unwrap();
            // Sent inside the poll: recorded by the member's companion process.
            g.commit(100, Some("m1"), Some(1), &[(0, 2)], true, End::Ok);
            g.b.ok(poll, OpValue::Poll(Poll { records: BTreeMap::from([(0, vec![(0, 100), (1, 101)])]), hw: BTreeMap::new() })).unwrap();
            g.done()
        }),
        case("auto-commit of the start position and of an earlier poll", Clean, || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            let poll = g.b.invoke_poll(10).unwrap();
            g.commit(100, Some("m1"), Some(1), &[(0, 0)], true, End::Ok);
            g.b.ok(poll, OpValue::Poll(Poll { records: BTreeMap::from([(0, vec![(0, 100), (1, 101)])]), hw: BTreeMap::new() })).unwrap();
            let poll = g.b.invoke_poll(10).unwrap();
            g.commit(100, Some("m1"), Some(1), &[(0, 2)], true, End::Ok);
            g.b.ok(poll, OpValue::Poll(Poll { records: BTreeMap::from([(0, vec![(2, 102)])]), hw: BTreeMap::new() })).unwrap();
            g.commit(10, Some("m1"), Some(1), &[(0, 3)], true, End::Ok);
            g.done()
        }),
        case("auto-commit of the log start retention moved the position to", Clean, || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.b.log_start(0, 2).unwrap();
            let poll = g.b.invoke_poll(10).unwrap();
            g.commit(100, Some("m1"), Some(1), &[(0, 2)], true, End::Ok);
            g.b.ok(poll, OpValue::Poll(Poll { records: BTreeMap::from([(0, vec![(2, 102)])]), hw: BTreeMap::new() })).unwrap();
            g.done()
        }),
        case("auto-commit past the log start of records no poll returned", Fatal(AutoCommitUnpolled), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.b.log_start(0, 1).unwrap();
            let poll = g.b.invoke_poll(10).unwrap();
            g.commit(100, Some("m1"), Some(1), &[(0, 2)], true, End::Ok);
            g.b.ok(poll, OpValue::Poll(Poll { records: BTreeMap::from([(0, vec![(2, 102)])]), hw: BTreeMap::new() })).unwrap();
            g.done()
        }),
        // C5
        case("commit accepted from a stale classic generation", Fatal(StaleCommit), || {
            let mut g = G::new();
            g.subscribe(10);
            g.rebalance(10, Rebalance { assigned: vec![0, 1], ..classic("m1", 1) });
            g.subscribe(11);
            g.rebalance(10, Rebalance { revoked: vec![1], ..classic("m1", 2) });
            g.rebalance(11, Rebalance { assigned: vec![1], ..classic("m2", 2) });
            g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Ok);
            g.done()
        }),
        case("commit accepted from an older member epoch", Fatal(StaleCommit), || {
            let mut g = G::new();
            first_member(&mut g);
            g.rebalance(10, Rebalance { assigned: vec![1], start: starts(&[(1, 0, Reset)]), ..consumer("m1", 3) });
            g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Ok);
            g.done()
        }),
        case("stale commits refused definitely", Clean, || {
            let mut g = G::new();
            g.subscribe(10);
            g.rebalance(10, Rebalance { assigned: vec![0, 1], ..classic("m1", 1) });
            g.subscribe(11);
            g.rebalance(10, Rebalance { revoked: vec![1], ..classic("m1", 2) });
            g.rebalance(11, Rebalance { assigned: vec![1], ..classic("m2", 2) });
            g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Fail("ILLEGAL_GENERATION"));
            g.commit(10, Some("m1"), Some(2), &[(0, 0)], false, End::Ok);
            g.done()
        }),
        // C6
        case("a crash between poll and commit re-delivers", Reported(Redelivery), || {
            let mut g = G::new();
            three_records(&mut g);
            first_member(&mut g);
            g.poll(10, 0, &[(0, 100), (1, 101)]);
            g.crash(10);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), ..consumer("m2", 2) });
            g.poll(11, 0, &[(0, 100), (1, 101), (2, 102)]);
            g.commit(11, Some("m2"), Some(2), &[(0, 3)], false, End::Ok);
            g.done()
        }),
        // C7
        case("one classic generation gives a key to two members", Fatal(DoubleOwnership), || {
            let mut g = G::new();
            g.subscribe(10);
            g.subscribe(11);
            g.rebalance(10, Rebalance { assigned: vec![0, 1], ..classic("m1", 1) });
            g.rebalance(11, Rebalance { assigned: vec![1], ..classic("m2", 1) });
            g.done()
        }),
        case("consumer protocol moves a key while its owner is still a live member", Fatal(DoubleOwnership), || {
            let mut g = G::new();
            first_member(&mut g);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), ..consumer("m2", 1) });
            g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Ok);
            g.done()
        }),
        case("a fenced zombie's overlap is reported", Reported(ZombieOwnership), || {
            let mut g = G::new();
            first_member(&mut g);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), ..consumer("m2", 1) });
            g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Fail("FENCED_MEMBER_EPOCH"));
            g.rebalance(10, Rebalance { lost: vec![0], error: Some("FENCED_MEMBER_EPOCH".into()), ..consumer("m1", 1) });
            g.done()
        }),
        // Groups seed 166: an epoch granted before the owner was fenced, recorded after the key
        // moved on (a rebalance is invoked after its grant), is no evidence of a live owner.
        case("a newer epoch recorded after the key moved is a zombie overlap, not C7", Reported(ZombieOwnership), || {
            let mut g = G::new();
            first_member(&mut g);
            g.subscribe(11);
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), ..consumer("m2", 3) });
            g.rebalance(10, consumer("m1", 2));
            g.done()
        }),
        case("a key moves only after its owner revoked it", Clean, || {
            let mut g = G::new();
            first_member(&mut g);
            g.subscribe(11);
            g.rebalance(10, Rebalance { revoked: vec![0], ..consumer("m1", 2) });
            g.rebalance(11, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), ..consumer("m2", 3) });
            g.commit(10, Some("m1"), Some(2), &[(1, 0)], false, End::Ok);
            g.rebalance(10, Rebalance { assigned: vec![1], start: starts(&[(1, 0, Committed)]), ..consumer("m1", 4) });
            g.done()
        }),
        case("cooperative rebalance moves a key across generations", Clean, || {
            let mut g = G::new();
            g.subscribe(10);
            g.rebalance(10, Rebalance { assigned: vec![0, 1], start: starts(&[(0, 0, Reset), (1, 0, Reset)]), ..classic("m1", 1) });
            g.subscribe(11);
            g.rebalance(10, Rebalance { revoked: vec![1], ..classic("m1", 2) });
            g.rebalance(11, classic("m2", 2));
            g.rebalance(10, classic("m1", 3));
            g.rebalance(11, Rebalance { assigned: vec![1], start: starts(&[(1, 0, Reset)]), ..classic("m2", 3) });
            g.commit(11, Some("m2"), Some(3), &[(1, 0)], false, End::Ok);
            g.commit(10, Some("m1"), Some(3), &[(0, 0)], false, End::Ok);
            g.done()
        }),
        case("a committed offset out of the log's range resets, and reads that offset", Clean, || {
            let mut g = G::new();
            g.commit(9, None, None, &[(0, 50)], false, End::Ok);
            g.subscribe(10);
            let start = StartPosition { offset: 0, from: Reset, committed: Some(50) };
            g.rebalance(10, Rebalance { assigned: vec![0], start: BTreeMap::from([(0, start)]), ..consumer("m1", 1) });
            g.done()
        }),
        // C8
        case("a pattern's member is assigned a topic whose name only contains a match", Fatal(AssignmentOutsideSubscription), || {
            let mut g = G::new();
            g.subscribe_pattern(10, "t|orders-.*");
            let other_topics = BTreeMap::from([("orders-eu".to_string(), vec![0]), ("old-orders-eu".to_string(), vec![0, 1])]);
            g.rebalance(10, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), other_topics, ..consumer("m1", 1) });
            g.done()
        }),
        case("a member subscribed by name is assigned another topic", Fatal(AssignmentOutsideSubscription), || {
            let mut g = G::new();
            g.subscribe(10);
            let other_topics = BTreeMap::from([("u".to_string(), vec![2])]);
            g.rebalance(10, Rebalance { other_topics, ..classic("m1", 1) });
            g.done()
        }),
        case("a pattern's member is assigned the topics whose whole names match", Clean, || {
            let mut g = G::new();
            g.subscribe_pattern(10, "t|orders-.*");
            let other_topics = BTreeMap::from([("orders-eu".to_string(), vec![0]), ("orders-us".to_string(), vec![0, 1])]);
            g.rebalance(10, Rebalance { assigned: vec![0], start: starts(&[(0, 0, Reset)]), other_topics, ..consumer("m1", 1) });
            g.done()
        }),
        // C9
        case(
            "an offset deletion is acknowledged while a subscribed member commits before and after",
            Fatal(OffsetDeletedWhileSubscribed),
            || {
                let mut g = G::new();
                first_member(&mut g);
                g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Ok);
                g.delete_offsets(20, &[0], &[], End::Ok);
                g.commit(10, Some("m1"), Some(1), &[(0, 0)], false, End::Ok);
                g.done()
            },
        ),
        case("a fetch after an acknowledged offset deletion returns the old offset", Fatal(DeletedOffsetReturned), || {
            let mut g = G::new();
            g.commit(9, None, None, &[(0, 5)], false, End::Ok);
            g.delete_offsets(20, &[0], &[], End::Ok);
            g.fetch(READER, &[(0, Some(5))]);
            g.done()
        }),
        case("offset deletions: refused while subscribed, done once the member left, a commit after", Clean, || {
            let mut g = G::new();
            first_member(&mut g);
            g.commit(10, Some("m1"), Some(1), &[(0, 2)], false, End::Ok);
            g.delete_offsets(20, &[], &[0], End::Ok);
            g.commit(10, Some("m1"), Some(1), &[(0, 2)], false, End::Ok);
            g.fetch(READER, &[(0, Some(2))]);
            // The member's session expires (it learns it later): the group is empty, the
            // deletion goes through, a fetch sees nothing; a simple commit, then its offset.
            g.delete_offsets(20, &[0], &[], End::Ok);
            g.fetch(READER, &[(0, None)]);
            g.commit(9, None, None, &[(0, 7)], false, End::Ok);
            g.fetch(READER, &[(0, Some(7))]);
            // An indeterminate deletion may or may not have happened.
            g.delete_offsets(20, &[0], &[], End::Info);
            g.fetch(READER, &[(0, Some(7))]);
            g.fetch(READER, &[(0, None)]);
            g.done()
        }),
        // H: the recorder's bookkeeping is checked too.
        case("a rebalance revokes a key the member does not own", Fatal(MalformedHistory), || {
            let mut g = G::new();
            first_member(&mut g);
            g.rebalance(10, Rebalance { revoked: vec![1], ..consumer("m1", 2) });
            g.done()
        }),
    ]
}

fn run(case: &Case) -> Verdict {
    check(&(case.history)(), &CheckOptions::default())
}

#[test]
fn every_case_gets_its_expected_verdict() {
    let mut failures = Vec::new();
    for case in cases() {
        let verdict = run(&case);
        if !case.expect.met_by(&verdict) {
            failures.push(format!("case {:?} expected {:?}, got:\n{verdict}", case.name, case.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_group_anomaly_kind_has_a_case() {
    let cases = cases();
    for kind in AnomalyKind::ALL.iter().filter(|k| k.invariant().starts_with('C')) {
        assert!(cases.iter().any(|c| matches!(c.expect, Fatal(k) | Reported(k) if k == *kind)), "no case reports {kind}");
    }
    assert!(cases.iter().filter(|c| c.expect == Clean).count() >= 7);
}

#[test]
fn group_results_are_in_the_verdict_json_and_summary() {
    let history = cases().into_iter().find(|c| c.expect == Fatal(StaleCommit)).map(|c| (c.history)()).unwrap();
    let verdict = check(&history, &CheckOptions::default());
    let stale = verdict.anomalies.iter().find(|a| a.kind == StaleCommit).expect("listed");
    assert_eq!(stale.group.as_deref(), Some(GROUP));
    assert_eq!(verdict.groups.groups, 1);
    assert_eq!(verdict.groups.commits_ok, 1);
    let text = verdict.to_string();
    assert!(
        text.contains("C5 stale-commit: 1 fatal, 0 reported") && text.contains("group=g") && text.contains("groups 1 members 2"),
        "{text}"
    );
    let json = verdict.to_json_pretty();
    assert!(json.contains("\"kind\": \"C5 stale-commit\"") && json.contains("\"group\": \"g\""), "{json}");
    assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
    // A verdict written before the group checks existed still parses.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("groups");
    assert_eq!(serde_json::from_value::<Verdict>(old).unwrap().groups, GroupStats::default());
}
