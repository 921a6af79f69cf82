//! For every anomaly the checker names: a small hand-written history that has it (it must be
//! reported, fatal or reported-only per the acks-level table) and one that does not (it must pass
//! with no anomaly at all).

mod expect;

use odradek_jepsen::checker::{check, AnomalyKind, CheckOptions, LogRecord, Verdict};
use odradek_jepsen::history::{
    Acks, DeleteRecords, History, HistoryBuilder, Key, Keys, Offset, OpF, OpHandle, OpValue, Poll, Process, Producer, Send, Value,
};

/// A terse history writer over [`HistoryBuilder`].
struct HistoryWriter {
    builder: HistoryBuilder,
}

/// An open send: its handle and invoke value.
struct Open(OpHandle, Send);

impl HistoryWriter {
    fn new() -> HistoryWriter {
        let mut t = 0;
        HistoryWriter {
            builder: HistoryBuilder::new(move || {
                t += 1;
                t
            }),
        }
    }

    fn send_producer(&mut self, p: Process, key: Key, values: &[Value], acks: Acks, producer: Option<Producer>) -> Open {
        let send = Send { key, values: values.to_vec(), acks, producer, offsets: None };
        Open(self.builder.invoke_send(p, send.clone()).unwrap(), send)
    }

    fn send(&mut self, p: Process, key: Key, values: &[Value], acks: Acks) -> Open {
        self.send_producer(p, key, values, acks, None)
    }

    fn ok(&mut self, open: Open, offsets: &[Offset]) {
        let Open(handle, send) = open;
        self.builder.ok(handle, OpValue::Send(Send { offsets: Some(offsets.to_vec()), ..send })).unwrap();
    }

    fn fail(&mut self, open: Open) {
        self.builder.fail(open.0, OpValue::Send(open.1)).unwrap();
    }

    fn info(&mut self, open: Open) {
        self.builder.info(open.0, OpValue::Send(open.1)).unwrap();
    }

    /// An acked send, invoked and completed back to back.
    fn write(&mut self, p: Process, key: Key, values: &[Value], acks: Acks, offsets: &[Offset]) {
        let open = self.send(p, key, values, acks);
        self.ok(open, offsets);
    }

    fn poll_open(&mut self, p: Process) -> OpHandle {
        self.builder.invoke_poll(p).unwrap()
    }

    fn poll_ok(&mut self, handle: OpHandle, records: &[(Key, &[(Offset, Value)])], hw: &[(Key, Offset)]) {
        let poll = Poll { records: records.iter().map(|(k, r)| (*k, r.to_vec())).collect(), hw: hw.iter().copied().collect() };
        self.builder.ok(handle, OpValue::Poll(poll)).unwrap();
    }

    fn poll(&mut self, p: Process, records: &[(Key, &[(Offset, Value)])], hw: &[(Key, Offset)]) {
        let handle = self.poll_open(p);
        self.poll_ok(handle, records, hw);
    }

    fn keys_op(&mut self, p: Process, f: OpF, keys: &[Key]) {
        let value = OpValue::Keys(Keys { keys: keys.to_vec() });
        let handle = self.builder.invoke(p, f, value.clone()).unwrap();
        self.builder.ok(handle, value).unwrap();
    }

    fn assign(&mut self, p: Process, keys: &[Key]) {
        self.keys_op(p, OpF::Assign, keys);
    }

    fn rewind(&mut self, p: Process, keys: &[Key]) {
        self.keys_op(p, OpF::Rewind, keys);
    }

    /// A `delete-records` of `key` below `before`: ok with the log start reported, or (None) info.
    fn delete(&mut self, p: Process, key: Key, before: Offset, log_start: Option<Offset>) {
        let asked = DeleteRecords { key, before, log_start: None };
        let handle = self.builder.invoke(p, OpF::DeleteRecords, OpValue::DeleteRecords(asked.clone())).unwrap();
        match log_start {
            Some(log_start) => self.builder.ok(handle, OpValue::DeleteRecords(DeleteRecords { log_start: Some(log_start), ..asked })),
            None => self.builder.info(handle, OpValue::DeleteRecords(asked)),
        }
        .unwrap();
    }

    fn leader_change(&mut self, key: Key) {
        self.builder.leader_change(key, None).unwrap();
    }

    fn log_start(&mut self, key: Key, offset: Offset) {
        self.builder.log_start(key, offset).unwrap();
    }

    fn drain(&mut self) {
        self.builder.final_drain().unwrap();
    }

    fn done(self) -> History {
        self.builder.finish()
    }
}

const ALL: Acks = Acks::All;
const ONE: Acks = Acks::One;
const ZERO: Acks = Acks::Zero;

struct Case {
    name: &'static str,
    expect: Expect,
    history: fn() -> History,
    log_dump: Option<fn() -> Vec<LogRecord>>,
}

fn case(name: &'static str, expect: Expect, history: fn() -> History) -> Case {
    Case { name, expect, history, log_dump: None }
}

fn dump_case(name: &'static str, expect: Expect, log_dump: fn() -> Vec<LogRecord>) -> Case {
    Case { name, expect, history: || HistoryWriter::new().done(), log_dump: Some(log_dump) }
}

fn rec(partition: Key, offset: Offset, pid: u64, epoch: u64, seq: u64) -> LogRecord {
    LogRecord { partition, offset, producer: Some(Producer { pid, epoch, seq }) }
}

fn idem(pid: u64, seq: u64) -> Option<Producer> {
    Some(Producer { pid, epoch: 0, seq })
}

use expect::Expect::{self, *};
use AnomalyKind::*;

fn cases() -> Vec<Case> {
    vec![
        // H
        case("value sent to two keys", Fatal(MalformedHistory), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.write(1, 1, &[1], ALL, &[0]);
            h.done()
        }),
        case("value twice in one batch", Fatal(MalformedHistory), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 1], ALL, &[0, 1]);
            h.done()
        }),
        // L1
        case("two values at one offset", Fatal(InconsistentOffsets), || {
            let mut h = HistoryWriter::new();
            let (a, b) = (h.send(1, 0, &[1], ALL), h.send(2, 0, &[2], ALL));
            h.ok(a, &[0]);
            h.ok(b, &[0]);
            h.done()
        }),
        case("one value per offset", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.write(2, 0, &[2], ALL, &[1]);
            h.poll(3, &[(0, &[(0, 1), (1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 ack offset reused after failover is not L1", Reported(Acks1Loss), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.leader_change(0);
            h.write(2, 0, &[2], ONE, &[0]);
            h.write(2, 0, &[3], ONE, &[1]);
            h.poll(3, &[(0, &[(0, 2), (1, 3)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 ack offset reused at the highest read offset is a loss", Reported(Acks1Loss), || {
            let mut h = HistoryWriter::new();
            h.write(2, 0, &[2], ONE, &[0]);
            h.write(1, 0, &[1], ONE, &[1]);
            h.leader_change(0);
            h.write(2, 0, &[3], ONE, &[1]);
            h.poll(3, &[(0, &[(0, 2), (1, 3)])], &[(0, 2)]);
            h.done()
        }),
        // L2
        case("idempotent value at two offsets", Fatal(Duplicate), || {
            let mut h = HistoryWriter::new();
            h.send_producer(1, 0, &[1], ALL, idem(1, 0)).pipe(|o| h.ok(o, &[0]));
            h.poll(3, &[(0, &[(0, 1), (1, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("non-idempotent retried value at two offsets is reported", Reported(Duplicate), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.poll(3, &[(0, &[(0, 1), (1, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("unread non-idempotent retries acked at two offsets are reported", Reported(Duplicate), || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1], ALL).pipe(|o| h.fail(o));
            h.write(1, 0, &[1], ALL, &[0]);
            h.write(1, 0, &[1], ALL, &[1]);
            h.done()
        }),
        // L3
        case("read a value never sent", Fatal(Unexpected), || {
            let mut h = HistoryWriter::new();
            h.poll(3, &[(0, &[(0, 99)])], &[(0, 1)]);
            h.done()
        }),
        case("read a value sent to another key", Fatal(Unexpected), || {
            let mut h = HistoryWriter::new();
            h.write(1, 1, &[1], ALL, &[0]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.done()
        }),
        // L4
        case("read a definitely failed value", Fatal(G1a), || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1], ALL).pipe(|o| h.fail(o));
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.done()
        }),
        case("read an indeterminate value; a failed one stays unread", Clean, || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1], ALL).pipe(|o| h.info(o));
            h.send(2, 0, &[2], ALL).pipe(|o| h.fail(o));
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.done()
        }),
        // L5
        case("acks=all read at another offset than acked", Fatal(AckOffsetMismatch), || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1], ALL).pipe(|o| h.ok(o, &[1]));
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=all acked copy below the log start, another copy read: only L2 reported", Reported(Duplicate), || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1], ALL).pipe(|o| h.ok(o, &[1]));
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 2)]);
            h.log_start(0, 2);
            h.done()
        }),
        // Simulator network seed 18 with the deleter on `t`: a plain producer's retry appended
        // the value twice, and a deletion removed the acknowledged copy.
        case("acks=all acked copy below a deletion, its duplicate read later: only L2 reported", Reported(Duplicate), || {
            let mut h = HistoryWriter::new();
            // Value 1 acknowledged at 0; its retry's copy (never acknowledged) sits at 2.
            h.send(1, 0, &[1], ALL).pipe(|o| h.ok(o, &[0]));
            h.write(2, 0, &[2], ALL, &[1]);
            h.delete(5, 0, 2, Some(2));
            h.drain();
            h.poll(9, &[(0, &[(2, 1)])], &[(0, 3)]);
            h.done()
        }),
        case("acks=1 mismatch without a leader change fails", Fatal(AckOffsetMismatch), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[1]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 mismatch across a leader change is reported", Reported(AckOffsetMismatch), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[1]);
            h.leader_change(0);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 mismatch after an earlier leader change is reported (a deposed leader)", Reported(AckOffsetMismatch), || {
            let mut h = HistoryWriter::new();
            h.leader_change(0); // the initial leader
            h.leader_change(0); // a new one; the old one may not know yet
            h.write(1, 0, &[1], ONE, &[1]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 mismatch with a leader change before the ack (after the read) is reported", Reported(AckOffsetMismatch), || {
            let mut h = HistoryWriter::new();
            let open = h.send(1, 0, &[1], ONE);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.leader_change(0);
            h.ok(open, &[1]);
            h.done()
        }),
        case(
            "acks=1 retry's acked copy lost at a later leader change, the first copy read, is reported",
            Reported(AckOffsetMismatch),
            || {
                // Swarm seed 804: attempt one appended at offset 0 (answer lost), the retry at 1 and
                // acked; a new leader then dropped offset 1 (an acks=1 suffix).
                let mut h = HistoryWriter::new();
                h.leader_change(0); // the initial leader
                let open = h.send(1, 0, &[1], ONE);
                h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
                h.ok(open, &[1]);
                h.leader_change(0);
                h.done()
            },
        ),
        case("acks=1 mismatch with only the initial leader known fails", Fatal(AckOffsetMismatch), || {
            let mut h = HistoryWriter::new();
            h.leader_change(0); // the initial leader only
            h.write(1, 0, &[1], ONE, &[1]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 2)]);
            h.done()
        }),
        // L6
        case("acks=all hole below the highest read", Fatal(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.write(1, 0, &[2], ALL, &[1]);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("info write with a batch-mate read has a hole", Fatal(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1, 2], ALL).pipe(|o| h.info(o));
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=0 hole is reported", Reported(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ZERO, &[0]);
            h.write(1, 0, &[2], ZERO, &[1]);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 loss that is not a suffix fails", Fatal(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.write(1, 0, &[2], ONE, &[1]);
            h.leader_change(0);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 loss after an earlier leader change is reported (a deposed leader may ack)", Reported(Acks1Loss), || {
            let mut h = HistoryWriter::new();
            h.leader_change(0); // the initial leader
            h.leader_change(0); // a change: the old leader may not know yet
            h.write(1, 0, &[1], ONE, &[0]);
            h.write(1, 0, &[2], ONE, &[1]);
            h.leader_change(0);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 loss after an earlier leader change and none later is reported (a deposed leader)", Reported(Acks1Loss), || {
            let mut h = HistoryWriter::new();
            h.leader_change(0); // the initial leader
            h.leader_change(0); // a new leader; the old one does not know yet
            h.write(1, 0, &[1], ONE, &[0]);
            h.write(2, 0, &[2], ALL, &[0]);
            h.poll(3, &[(0, &[(0, 2)])], &[(0, 1)]);
            h.done()
        }),
        case("acks=1 loss that is not a suffix fails after only the initial leader is known", Fatal(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.leader_change(0); // the initial leader only
            h.write(1, 0, &[1], ONE, &[0]);
            h.write(1, 0, &[2], ONE, &[1]);
            h.leader_change(0);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("acks=1 loss with no leader change fails", Fatal(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.write(2, 0, &[2], ONE, &[1]);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("no hole when all reads are contiguous", Clean, || {
            let mut h = HistoryWriter::new();
            h.send(1, 0, &[1, 2], ALL).pipe(|o| h.info(o));
            h.write(2, 0, &[3], ALL, &[2]);
            h.poll(3, &[(0, &[(0, 1), (1, 2), (2, 3)])], &[(0, 3)]);
            h.done()
        }),
        // L7
        case("acks=all acked value missing after the final drain", Fatal(Unseen), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.drain();
            h.assign(9, &[0]);
            h.poll(9, &[], &[]);
            h.done()
        }),
        case("acks=1 unseen without a leader change fails", Fatal(Unseen), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.drain();
            h.poll(9, &[], &[(0, 0)]);
            h.done()
        }),
        case("acks=1 unseen suffix after a leader change is reported", Reported(Acks1Loss), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.leader_change(0);
            h.drain();
            h.poll(9, &[], &[(0, 0)]);
            h.done()
        }),
        case("every ack seen in the final drain", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.drain();
            h.assign(9, &[0]);
            h.rewind(9, &[0]);
            h.poll(9, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.done()
        }),
        case("retention deleted an acked value below the log start", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[0, 1]);
            h.log_start(0, 1);
            h.drain();
            h.assign(9, &[0]);
            h.poll(9, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("an acked value at the log start missing after the final drain", Fatal(Unseen), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.log_start(0, 1);
            h.drain();
            h.assign(9, &[0]);
            h.poll(9, &[], &[(0, 3)]);
            h.done()
        }),
        case("unseen without a final drain is not judged", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.done()
        }),
        // L8
        case("poll skips an offset between polls", Fatal(PollSkip), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 3)]);
            h.poll(3, &[(0, &[(2, 3)])], &[(0, 3)]);
            h.done()
        }),
        case("poll skips offsets retention deleted before it: the position went to the log start", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 3)]);
            h.log_start(0, 2);
            h.poll(3, &[(0, &[(2, 3)])], &[(0, 3)]);
            h.done()
        }),
        case("poll skips an offset retention deleted only after it", Fatal(PollSkip), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 3)]);
            h.poll(3, &[(0, &[(2, 3)])], &[(0, 3)]);
            h.log_start(0, 2);
            h.done()
        }),
        case("poll goes backwards between polls", Fatal(NonmonotonicPoll), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[0, 1]);
            h.poll(3, &[(0, &[(0, 1), (1, 2)])], &[(0, 2)]);
            h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("rewind, reassign and a failed poll break continuity", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.poll(3, &[(0, &[(0, 1), (1, 2)])], &[(0, 3)]);
            h.rewind(3, &[0]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 3)]);
            h.assign(3, &[1]);
            h.assign(3, &[0]);
            h.poll(3, &[(0, &[(2, 3)])], &[(0, 3)]);
            let failed = h.poll_open(3);
            h.builder.fail(failed, OpValue::Poll(Poll::default())).unwrap();
            h.poll(3, &[(0, &[(0, 1), (1, 2), (2, 3)])], &[(0, 3)]);
            h.done()
        }),
        // L9
        case("skip inside one poll", Fatal(IntPollSkip), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.poll(3, &[(0, &[(0, 1), (2, 3)])], &[(0, 3)]);
            h.done()
        }),
        case("backwards inside one poll", Fatal(IntNonmonotonicPoll), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[0, 1]);
            h.poll(3, &[(0, &[(1, 2), (0, 1)])], &[(0, 2)]);
            h.done()
        }),
        case("offset gaps never seen in VO are not skips", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.write(1, 0, &[2], ALL, &[5]);
            h.poll(3, &[(0, &[(0, 1), (5, 2)])], &[(0, 6)]);
            h.done()
        }),
        // L10
        case("a later send of a process gets a lower offset", Fatal(NonmonotonicSend), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[5]);
            h.write(1, 0, &[2], ALL, &[3]);
            h.done()
        }),
        case("batch offsets go backwards", Fatal(IntNonmonotonicSend), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[3, 2]);
            h.done()
        }),
        case("batch offsets are not contiguous", Fatal(IntSendSkip), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[2, 4]);
            h.done()
        }),
        case("acks=1 unconfirmed ack offsets are not judged", Reported(Acks1Loss), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[5]);
            h.leader_change(0);
            h.write(1, 0, &[2], ONE, &[3]);
            h.drain();
            h.poll(9, &[(0, &[(3, 2)])], &[(0, 4)]);
            h.done()
        }),
        case("sends of one process increase", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[0, 1]);
            h.write(1, 0, &[3], ALL, &[2]);
            h.write(1, 1, &[4], ALL, &[0]);
            h.done()
        }),
        // L11
        case("a send invoked after another completed gets a lower offset", Fatal(RealtimeAppendViolation), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[5]);
            h.write(2, 0, &[2], ALL, &[3]);
            h.done()
        }),
        case("concurrent sends may land in any order", Clean, || {
            let mut h = HistoryWriter::new();
            let b = h.send(2, 0, &[2], ALL);
            h.write(1, 0, &[1], ALL, &[1]);
            h.ok(b, &[0]);
            h.done()
        }),
        case("acks=1 sends are not real-time ordered", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.write(2, 0, &[2], ONE, &[1]);
            h.done()
        }),
        // L12
        case("HW at or below an offset acked before the poll", Fatal(StaleHw), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ALL, &[0]);
            h.poll(3, &[], &[(0, 0)]);
            h.done()
        }),
        case("HW decreases for one client", Fatal(HwRegression), || {
            let mut h = HistoryWriter::new();
            h.poll(3, &[], &[(0, 3)]);
            h.poll(3, &[], &[(0, 2)]);
            h.done()
        }),
        case("record at or above the reported HW", Fatal(ReadAboveHw), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ONE, &[0, 1]);
            h.poll(3, &[(0, &[(0, 1), (1, 2)])], &[(0, 1)]);
            h.done()
        }),
        case("HW sane, including a poll concurrent with the ack", Clean, || {
            let mut h = HistoryWriter::new();
            let poll = h.poll_open(3);
            h.write(1, 0, &[1], ALL, &[0]);
            h.poll_ok(poll, &[], &[(0, 0)]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.poll(4, &[], &[(0, 1)]);
            h.done()
        }),
        // L13
        case("a read value is replaced by a later poll", Fatal(ReadThenLost), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ONE, &[0]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.leader_change(0);
            h.write(1, 0, &[2], ONE, &[0]);
            h.poll(4, &[(0, &[(0, 2)])], &[(0, 1)]);
            h.done()
        }),
        case("a read value below the log start is absent from the final drain", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2], ALL, &[0, 1]);
            h.poll(3, &[(0, &[(0, 1), (1, 2)])], &[(0, 2)]);
            h.log_start(0, 1);
            h.drain();
            h.assign(9, &[0]);
            h.poll(9, &[(0, &[(1, 2)])], &[(0, 2)]);
            h.done()
        }),
        case("a read value is absent from the final drain", Fatal(ReadThenLost), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ZERO, &[0]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.drain();
            h.poll(9, &[], &[(0, 1)]);
            h.done()
        }),
        case("read values are stable through the drain", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1], ZERO, &[0]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.drain();
            h.poll(9, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.done()
        }),
        // DR1
        case("a record below an acknowledged deletion is read afterwards", Fatal(DeletedRecordRead), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.delete(5, 0, 2, Some(2));
            h.poll(3, &[(0, &[(1, 2), (2, 3)])], &[(0, 3)]);
            h.done()
        }),
        case("a consumer's later poll returns what its fetch read before a deletion", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            // Process 3's first poll failed with its fetch in flight; the fetch was served
            // before the deletion, and the next poll (invoked after it) returns its records.
            let handle = h.poll_open(3);
            h.builder.fail(handle, OpValue::Poll(Poll::default())).unwrap();
            h.delete(5, 0, 2, Some(2));
            h.poll(3, &[(0, &[(1, 2), (2, 3)])], &[]);
            h.done()
        }),
        case("a deletion acknowledged with a lower log start", Fatal(DeletionNotHeld), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3], ALL, &[0, 1, 2]);
            h.delete(5, 0, 2, Some(1));
            h.done()
        }),
        case("records above a deletion are still lost if never read", Fatal(LostWrite), || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3, 4], ALL, &[0, 1, 2, 3]);
            h.delete(5, 0, 2, Some(2));
            h.drain();
            h.poll(9, &[(0, &[(3, 4)])], &[(0, 4)]);
            h.done()
        }),
        case("deleted records are neither lost nor skipped, and a possible deletion counts too", Clean, || {
            let mut h = HistoryWriter::new();
            h.write(1, 0, &[1, 2, 3, 4, 5], ALL, &[0, 1, 2, 3, 4]);
            h.write(1, 1, &[6, 7], ALL, &[0, 1]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 5)]);
            h.delete(5, 0, 3, Some(3));
            h.delete(6, 1, 1, None);
            // Process 3's position (1) was deleted: it resumes at the new log start.
            h.poll(3, &[(0, &[(3, 4)])], &[(0, 5)]);
            h.drain();
            h.poll(9, &[(0, &[(3, 4), (4, 5)]), (1, &[(1, 7)])], &[(0, 5), (1, 2)]);
            h.done()
        }),
        // P2
        case("idempotent retry acked at another offset", Fatal(AckDivergence), || {
            let mut h = HistoryWriter::new();
            h.send_producer(1, 0, &[1], ALL, idem(1, 0)).pipe(|o| h.fail(o));
            h.write(2, 0, &[9], ALL, &[0]);
            h.send_producer(1, 0, &[1], ALL, idem(1, 0)).pipe(|o| h.ok(o, &[1]));
            h.send_producer(1, 0, &[1], ALL, idem(1, 0)).pipe(|o| h.ok(o, &[2]));
            h.done()
        }),
        case("idempotent retry acked at the original offset", Clean, || {
            let mut h = HistoryWriter::new();
            let first = h.send_producer(1, 0, &[1], ALL, idem(1, 0));
            let retry = h.send_producer(2, 0, &[1], ALL, idem(1, 0));
            h.ok(first, &[0]);
            h.ok(retry, &[0]);
            h.poll(3, &[(0, &[(0, 1)])], &[(0, 1)]);
            h.done()
        }),
        // P1, P3, P4
        dump_case("one sequence appended twice", Fatal(DuplicateRecord), || vec![rec(0, 0, 7, 0, 0), rec(0, 1, 7, 0, 0)]),
        dump_case("sequence gap in log order", Fatal(SequenceGap), || vec![rec(0, 0, 7, 0, 0), rec(0, 1, 7, 0, 2)]),
        dump_case("sequence reordered in log order", Fatal(SequenceGap), || vec![rec(0, 0, 7, 0, 1), rec(0, 1, 7, 0, 0)]),
        dump_case("fenced epoch appended after a newer one", Fatal(EpochRegression), || vec![rec(0, 0, 7, 1, 0), rec(0, 1, 7, 0, 5)]),
        dump_case("a well-formed log dump", Clean, || {
            vec![
                rec(0, 0, 7, 0, 0),
                rec(0, 1, 8, 0, 0),
                rec(0, 2, 7, 0, 1),
                rec(0, 3, 7, 1, 0),
                rec(1, 0, 7, 0, 0),
                LogRecord { partition: 0, offset: 4, producer: None },
            ]
        }),
    ]
}

/// `value.pipe(f)`: call a closure on a value inline (keeps the table terse).
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

fn run(case: &Case) -> Verdict {
    let options = CheckOptions { log_dump: case.log_dump.map(|d| d()), ..CheckOptions::default() };
    check(&(case.history)(), &options)
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
fn every_anomaly_kind_has_a_failing_and_a_passing_case() {
    let cases = cases();
    // The consumer-group kinds (C*) have their cases in tests/groups.rs, which checks them alike.
    for kind in AnomalyKind::ALL.iter().filter(|k| !k.invariant().starts_with('C')) {
        assert!(cases.iter().any(|c| matches!(c.expect, Fatal(k) | Reported(k) if k == *kind)), "no case reports {kind}");
    }
    assert!(cases.iter().filter(|c| c.expect == Clean).count() >= 14);
}

#[test]
fn verdict_names_the_anomaly_and_serializes() {
    let mut h = HistoryWriter::new();
    h.write(1, 0, &[1], ALL, &[0]);
    h.write(1, 0, &[2], ALL, &[1]);
    h.poll(3, &[(0, &[(1, 2)])], &[(0, 2)]);
    let verdict = check(&h.done(), &CheckOptions::default());
    let lost = verdict.anomalies.iter().find(|a| a.kind == LostWrite).expect("the lost write is listed");
    assert_eq!((lost.key, &lost.values[..], &lost.offsets[..], &lost.ops[..]), (Some(0), &[1][..], &[0][..], &[1][..]));
    let text = verdict.to_string();
    assert!(text.contains("valid: false") && text.contains("L6 lost-write: 1 fatal, 0 reported"), "{text}");
    let json = verdict.to_json_pretty();
    assert!(json.contains("\"kind\": \"L6 lost-write\""), "{json}");
    let parsed: Verdict = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, verdict);
}

#[test]
fn examples_are_capped_but_every_anomaly_is_counted() {
    let mut h = HistoryWriter::new();
    for v in 0..10 {
        h.poll(3, &[(0, &[(v, 100 + v)])], &[(0, v + 1)]);
    }
    let options = CheckOptions { anomaly_examples_per_kind_max: 3, ..CheckOptions::default() };
    let verdict = check(&h.done(), &options);
    assert_eq!(verdict.count(Unexpected).fatal, 10);
    assert_eq!(verdict.anomalies.iter().filter(|a| a.kind == Unexpected).count(), 3);
}

#[test]
fn lost_values_are_placed_per_writer() {
    let mut h = HistoryWriter::new();
    for (v, o) in [(1, 0), (2, 1), (3, 2), (4, 3)] {
        h.write(1, 0, &[v], ALL, &[o]);
    }
    h.drain();
    h.poll(9, &[(0, &[(1, 2)])], &[(0, 4)]);
    let verdict = check(&h.done(), &CheckOptions::default());
    let detail = |v: Value| verdict.anomalies.iter().find(|a| a.values == [v]).map(|a| (a.kind, a.detail.clone())).unwrap();
    assert_eq!(detail(1), (LostWrite, "lost-prefix".to_string()));
    assert_eq!(detail(3), (Unseen, "lost-postfix".to_string()));
    assert_eq!(verdict.stats.values_unseen, 3);
}
