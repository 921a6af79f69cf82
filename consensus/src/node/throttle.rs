//! The learner catch-up throttle (issue 15, rebalancing): a token bucket over the bytes of
//! entries a leader sends to its groups' *learners* (replicas catching up before a
//! reassignment promotes them), so catch-up traffic cannot starve the voters' replication and
//! with it produce.
//!
//! An append over the budget is *delayed*, never dropped: raft-rs counted it in flight when it
//! made it (the learner's progress is in Replicate state), so a dropped append leaves the
//! learner a gap; it rejects the appends after it, the leader probes back and sends again from
//! the learner's last index, re-reading from the log what it had read already, and in Replicate
//! state it then generates a whole in-flight window at once (`RAFT_INFLIGHT_MESSAGES_MAX`
//! messages of up to `RAFT_MESSAGE_BYTES_MAX`: up to 256 MiB read and encoded in one round, most
//! of it dropped again). That cycle ran the throttled catch-up of a 1 GiB partition at about
//! 60 % of its rate and, one run in two, starved produce on the same leader (issue 15's bench,
//! 2026-12-08). So [`CatchUp`] queues the appends over the budget per (learner, group), in
//! order, and releases them at the start of later passes as tokens accrue.
//!
//! What keeps the queues small: the driver caps a learner's in-flight window at
//! [`LEARNER_INFLIGHT_MESSAGES_MAX`] while a throttle is set (raft generates no append past it
//! until the learner acknowledges), and heartbeats to a learner with appends queued are dropped
//! (a heartbeat's response frees one in-flight slot in raft-rs: `free_first_one`, which would
//! let raft generate one more append per heartbeat, beyond what the learner acknowledged).
//! A queue therefore holds at most the window (8 MiB per learner and group); all queues
//! together at most [`CATCH_UP_QUEUE_BYTES_MAX`], past which an append is dropped as before
//! (safe: the transport may drop anything; raft resends). Any append to a learner with appends
//! queued queues behind them, empty ones too (an empty append overtaking the entries before it
//! would be rejected as a gap). Queued appends whose group this node no longer leads in their
//! term are discarded at release; those to a learner since promoted leave at once, unthrottled.
//!
//! Sans IO: the driver passes the time and says, per (group, peer), what the peer is now. The
//! bucket holds at most one second of the rate; an append larger than that passes alone when
//! the bucket is full (so no entry is ever starved).
//!
//! Cost: one map lookup per outbound message to a peer with a queue or an append; the queued
//! messages themselves (bounded above), held by the node, not copied.

use std::collections::{BTreeMap, VecDeque};

use raft::eraftpb::{Message, MessageType};

use crate::transport::{GroupId, NodeId};

/// Append messages in flight per learner (raft's `Inflights` cap) while a throttle is set: 8
/// messages of up to 1 MiB, which covers a round trip of 400 ms at 20 MB/s.
pub const LEARNER_INFLIGHT_MESSAGES_MAX: usize = 8;
/// Bytes of entries all the catch-up queues of a node may hold together; an append past it is
/// dropped (as the throttle did with every append over its budget before the queues).
pub const CATCH_UP_QUEUE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// What a message's destination is now, in the message's group, as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A learner of a group this node leads in the message's term: throttled.
    Learner,
    /// A voter (a learner promoted since), or any message not from the group's leader: not
    /// throttled.
    Other,
    /// The group is gone, or this node no longer leads it in the message's term: a queued
    /// append is discarded (raft no longer tracks it).
    Stale,
}

/// Counters of the throttle since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpStats {
    /// Appends to learners queued because the bucket was empty or earlier ones were queued.
    pub appends_delayed: u64,
    /// Appends dropped because the queues held `CATCH_UP_QUEUE_BYTES_MAX`.
    pub appends_dropped: u64,
    /// Queued appends discarded at release: their group is gone or led by another term.
    pub appends_stale: u64,
    /// Heartbeats to a learner with appends queued, dropped.
    pub heartbeats_dropped: u64,
}

/// The throttle: a token bucket and the appends waiting for it, per (learner, group).
#[derive(Debug)]
pub struct CatchUp {
    bucket: CatchUpThrottle,
    queues: BTreeMap<(NodeId, GroupId), VecDeque<Message>>,
    queued_bytes: u64,
    stats: CatchUpStats,
}

/// Bytes of entries in an append (what the bucket counts).
fn entry_bytes(message: &Message) -> u64 {
    message.entries.iter().map(|entry| entry.data.len() as u64).sum()
}

impl CatchUp {
    pub fn new(rate_bytes_per_second: u64) -> CatchUp {
        CatchUp {
            bucket: CatchUpThrottle::new(rate_bytes_per_second),
            queues: BTreeMap::new(),
            queued_bytes: 0,
            stats: CatchUpStats::default(),
        }
    }

    pub fn stats(&self) -> CatchUpStats {
        self.stats
    }

    /// Bytes of entries queued, over all learners and groups.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// Whether appends to `to` of `group` wait in a queue.
    pub fn is_queued(&self, to: NodeId, group: GroupId) -> bool {
        self.queues.contains_key(&(to, group))
    }

    /// One pass over the messages about to leave, per destination node: first the queued
    /// appends the bucket now admits (or whose learner was promoted) go out, in order and ahead
    /// of the new messages; then each new append to a learner leaves if nothing of its (learner,
    /// group) waits and the bucket admits it, else it queues. Heartbeats to a learner with
    /// appends queued are dropped (see the module documentation). `destination` says what a
    /// message's destination is now.
    pub fn pass(
        &mut self,
        now_ms: i64,
        outbox: &mut BTreeMap<NodeId, Vec<(GroupId, Message)>>,
        destination: impl Fn(GroupId, NodeId, &Message) -> Destination,
    ) {
        let mut released: BTreeMap<NodeId, Vec<(GroupId, Message)>> = BTreeMap::new();
        let keys: Vec<(NodeId, GroupId)> = self.queues.keys().copied().collect();
        for (to, group) in keys {
            let queue = self.queues.get_mut(&(to, group)).expect("listed");
            while let Some(front) = queue.front() {
                let bytes = entry_bytes(front);
                let now = destination(group, to, front);
                if now == Destination::Learner && !self.bucket.admit(now_ms, bytes) {
                    break;
                }
                let message = queue.pop_front().expect("front");
                self.queued_bytes -= bytes;
                match now {
                    Destination::Stale => self.stats.appends_stale += 1,
                    Destination::Learner | Destination::Other => released.entry(to).or_default().push((group, message)),
                }
            }
            if queue.is_empty() {
                self.queues.remove(&(to, group));
            }
        }
        for (to, messages) in outbox.iter_mut() {
            let mut kept = released.remove(to).unwrap_or_default();
            for (group, message) in std::mem::take(messages) {
                let kind = message.get_msg_type();
                if kind != MessageType::MsgAppend && kind != MessageType::MsgHeartbeat {
                    kept.push((group, message));
                    continue;
                }
                if destination(group, *to, &message) != Destination::Learner {
                    kept.push((group, message));
                    continue;
                }
                let queued = self.queues.contains_key(&(*to, group));
                if kind == MessageType::MsgHeartbeat {
                    if queued {
                        self.stats.heartbeats_dropped += 1;
                    } else {
                        kept.push((group, message));
                    }
                    continue;
                }
                let bytes = entry_bytes(&message);
                if !queued && (message.entries.is_empty() || self.bucket.admit(now_ms, bytes)) {
                    kept.push((group, message));
                    continue;
                }
                if self.queued_bytes + bytes > CATCH_UP_QUEUE_BYTES_MAX {
                    self.stats.appends_dropped += 1;
                    continue;
                }
                self.queued_bytes += bytes;
                self.stats.appends_delayed += 1;
                self.queues.entry((*to, group)).or_default().push_back(message);
            }
            *messages = kept;
        }
        // Released appends to nodes with nothing new this pass.
        for (to, messages) in released {
            outbox.insert(to, messages);
        }
        debug_assert_eq!(
            self.queued_bytes,
            self.queues.values().flatten().map(entry_bytes).sum::<u64>(),
            "the queued byte count matches the queues"
        );
    }
}

/// A token bucket of bytes per second.
#[derive(Clone, Debug)]
pub struct CatchUpThrottle {
    rate_bytes_per_second: u64,
    tokens_bytes: u64,
    refilled_ms: Option<i64>,
}

impl CatchUpThrottle {
    pub fn new(rate_bytes_per_second: u64) -> CatchUpThrottle {
        assert!(rate_bytes_per_second > 0, "a throttle has a positive rate");
        CatchUpThrottle { rate_bytes_per_second, tokens_bytes: rate_bytes_per_second, refilled_ms: None }
    }

    /// Whether an append of `bytes` may leave at `now_ms` (and takes its tokens if so).
    pub fn admit(&mut self, now_ms: i64, bytes: u64) -> bool {
        let elapsed_ms = self.refilled_ms.map_or(0, |refilled| now_ms.saturating_sub(refilled).max(0)) as u64;
        let refill = elapsed_ms.saturating_mul(self.rate_bytes_per_second) / 1000;
        if refill > 0 || self.refilled_ms.is_none() {
            self.refilled_ms = Some(now_ms);
        }
        self.tokens_bytes = self.tokens_bytes.saturating_add(refill).min(self.rate_bytes_per_second);
        if bytes <= self.tokens_bytes {
            self.tokens_bytes -= bytes;
            return true;
        }
        if self.tokens_bytes == self.rate_bytes_per_second {
            self.tokens_bytes = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(index: u64, bytes: usize) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.to = 4;
        message.term = 2;
        message.index = index;
        if bytes > 0 {
            message.entries.push(raft::eraftpb::Entry { index: index + 1, data: vec![0; bytes].into(), ..Default::default() });
        }
        message
    }

    fn heartbeat() -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgHeartbeat);
        message.to = 4;
        message
    }

    /// The `index` of every append to node 4 of group 7 in `outbox`, in order.
    fn indexes(outbox: &BTreeMap<NodeId, Vec<(GroupId, Message)>>) -> Vec<u64> {
        let appends = outbox.get(&4).into_iter().flatten();
        appends.filter(|(group, m)| *group == 7 && m.get_msg_type() == MessageType::MsgAppend).map(|(_, m)| m.index).collect()
    }

    fn outbox_of(messages: Vec<Message>) -> BTreeMap<NodeId, Vec<(GroupId, Message)>> {
        BTreeMap::from([(4, messages.into_iter().map(|m| (7, m)).collect())])
    }

    #[test]
    fn appends_over_the_budget_wait_and_leave_in_order_as_tokens_accrue() {
        let mut throttle = CatchUp::new(1000);
        let learner = |_: GroupId, _: NodeId, _: &Message| Destination::Learner;
        // 1000 tokens: the first two of 400 bytes leave, the rest wait, an empty append too.
        let mut outbox = outbox_of(vec![append(0, 400), append(1, 400), append(2, 400), append(3, 0), append(4, 400)]);
        throttle.pass(0, &mut outbox, learner);
        assert_eq!(indexes(&outbox), vec![0, 1]);
        assert_eq!(throttle.queued_bytes(), 800);
        // A heartbeat to the learner is dropped while appends wait; the next append queues behind.
        let mut outbox = outbox_of(vec![heartbeat(), append(5, 100)]);
        throttle.pass(100, &mut outbox, learner);
        assert_eq!(outbox[&4].len(), 0, "{outbox:?}");
        assert_eq!(throttle.stats().heartbeats_dropped, 1);
        // 400 ms later 200 + 400 tokens: index 2 and the empty 3 leave, 4 does not yet.
        let mut outbox = BTreeMap::new();
        throttle.pass(500, &mut outbox, learner);
        assert_eq!(indexes(&outbox), vec![2, 3]);
        let mut outbox = outbox_of(vec![append(6, 10)]);
        throttle.pass(2000, &mut outbox, learner);
        assert_eq!(indexes(&outbox), vec![4, 5, 6], "released ahead of the new one, in order");
        assert_eq!(throttle.queued_bytes(), 0);
        assert!(!throttle.is_queued(4, 7));
        let stats = throttle.stats();
        assert_eq!((stats.appends_delayed, stats.appends_dropped, stats.appends_stale), (4, 0, 0));
        // Nothing waits: a heartbeat leaves again.
        let mut outbox = outbox_of(vec![heartbeat()]);
        throttle.pass(2000, &mut outbox, learner);
        assert_eq!(outbox[&4].len(), 1);
    }

    #[test]
    fn a_promoted_learner_gets_its_queue_at_once_and_a_deposed_leader_discards_it() {
        let mut throttle = CatchUp::new(100);
        let learner = |_: GroupId, _: NodeId, _: &Message| Destination::Learner;
        let mut outbox = outbox_of(vec![append(0, 100), append(1, 100), append(2, 100)]);
        throttle.pass(0, &mut outbox, learner);
        assert_eq!(indexes(&outbox), vec![0]);
        // Promoted: what waited leaves at once, before the new append, with no tokens.
        let mut outbox = outbox_of(vec![append(3, 100)]);
        throttle.pass(10, &mut outbox, |_, _, _| Destination::Other);
        assert_eq!(indexes(&outbox), vec![1, 2, 3]);
        // Queued again, then the leader is deposed: the queue is discarded, not sent.
        let mut outbox = outbox_of(vec![append(4, 1000), append(5, 100)]);
        throttle.pass(20, &mut outbox, learner);
        assert_eq!(throttle.queued_bytes(), 1100);
        let mut outbox = BTreeMap::new();
        throttle.pass(10_000, &mut outbox, |_, _, _| Destination::Stale);
        assert!(outbox.is_empty(), "{outbox:?}");
        assert_eq!((throttle.queued_bytes(), throttle.stats().appends_stale), (0, 2));
    }

    #[test]
    fn the_queues_hold_at_most_their_bound_and_other_traffic_passes() {
        let mut throttle = CatchUp::new(1);
        let piece = (CATCH_UP_QUEUE_BYTES_MAX / 4) as usize;
        let learner = |_: GroupId, to: NodeId, _: &Message| if to == 4 { Destination::Learner } else { Destination::Other };
        let mut outbox = outbox_of((0..8).map(|index| append(index, piece)).collect());
        let mut voter = append(0, piece);
        voter.to = 5;
        outbox.insert(5, vec![(7, voter)]);
        throttle.pass(0, &mut outbox, learner);
        // The first leaves alone on the full bucket; four wait; three are dropped.
        assert_eq!(indexes(&outbox), vec![0]);
        assert_eq!(outbox[&5].len(), 1, "a voter's append is never held");
        assert_eq!(throttle.queued_bytes(), CATCH_UP_QUEUE_BYTES_MAX);
        assert_eq!((throttle.stats().appends_delayed, throttle.stats().appends_dropped), (4, 3));
    }

    #[test]
    fn the_rate_bounds_what_leaves_per_second() {
        let mut throttle = CatchUpThrottle::new(1000);
        assert!(throttle.admit(0, 600));
        assert!(!throttle.admit(0, 600), "over the second's budget");
        assert!(throttle.admit(0, 400));
        assert!(!throttle.admit(100, 200), "100 ms refill 100 bytes");
        assert!(throttle.admit(300, 200), "300 ms refill 300 bytes");
        // Over any long stretch, at most the rate (plus one burst) is admitted.
        let mut admitted = 0;
        for step in 0..10_000 {
            if throttle.admit(1000 + step, 64) {
                admitted += 64;
            }
        }
        assert!(admitted <= 10 * 1000 + 1000, "{admitted} bytes in 10 s at 1000 bytes/s");
        assert!(admitted >= 9 * 1000, "{admitted} bytes in 10 s: the throttle starves its traffic");
    }

    #[test]
    fn an_append_larger_than_the_burst_passes_alone_when_the_bucket_is_full() {
        let mut throttle = CatchUpThrottle::new(100);
        assert!(throttle.admit(0, 10_000), "a full bucket lets a large append through");
        assert!(!throttle.admit(500, 10_000), "not before the bucket is full again");
        assert!(throttle.admit(1000, 10_000));
    }
}
