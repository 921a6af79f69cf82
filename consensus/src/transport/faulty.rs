//! The transport fault layer (CHECKLISTS F-N6): wraps any [`Transport`] and, while a
//! [`TransportFaults`] switch says so, drops single raft messages, delivers a copy of one again
//! later (a replay, after newer traffic), or holds one back for a while (so later messages
//! overtake it). Real TCP between two live nodes never does any of this, but raft must survive
//! it, and the simulator's nemesis turns it on for windows of a run.
//!
//! Decisions are per message and come from the switch's own seeded generator, so a simulation
//! replays them. Without a switch (every production node) `send` is a plain pass-through.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft::prelude::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{GroupId, NodeId, Transport, TransportStats};

/// How often each fault hits a message; all zero means the layer delivers everything at once.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    /// Chance a message is lost.
    pub drop: f64,
    /// Chance a message is delivered and, later, delivered again.
    pub duplicate: f64,
    /// Chance a message is held back (and so reordered behind later ones).
    pub delay: f64,
    /// Holds and replays wait a uniform `0..=delay_max`.
    pub delay_max: Duration,
}

/// What the layer did, for timelines and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub dropped: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

#[derive(Debug)]
struct State {
    rates: FaultRates,
    rng: StdRng,
    counts: FaultCounts,
}

/// The switch shared by every node of a cluster: whoever holds a clone changes the rates live.
#[derive(Clone, Debug)]
pub struct TransportFaults {
    state: Arc<Mutex<State>>,
}

enum Fate {
    Deliver,
    Drop,
    /// Deliver now and once more after the delay.
    Duplicate(Duration),
    Delay(Duration),
}

impl TransportFaults {
    /// Off (all rates zero); decisions drawn from `seed`.
    pub fn new(seed: u64) -> TransportFaults {
        let state = State { rates: FaultRates::default(), rng: StdRng::seed_from_u64(seed), counts: FaultCounts::default() };
        TransportFaults { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set(&self, rates: FaultRates) {
        for rate in [rates.drop, rates.duplicate, rates.delay] {
            assert!((0.0..=1.0).contains(&rate), "fault rate {rate} outside [0, 1]");
        }
        self.lock().rates = rates;
    }

    pub fn clear(&self) {
        self.set(FaultRates::default());
    }

    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }

    fn fate(&self) -> Fate {
        let mut state = self.lock();
        let rates = state.rates;
        if rates == FaultRates::default() {
            return Fate::Deliver;
        }
        let state = &mut *state;
        let wait = |rng: &mut StdRng| rng.gen_range(Duration::ZERO..=rates.delay_max);
        if state.rng.gen_bool(rates.drop) {
            state.counts.dropped += 1;
            Fate::Drop
        } else if state.rng.gen_bool(rates.duplicate) {
            state.counts.duplicated += 1;
            Fate::Duplicate(wait(&mut state.rng))
        } else if state.rng.gen_bool(rates.delay) {
            state.counts.delayed += 1;
            Fate::Delay(wait(&mut state.rng))
        } else {
            Fate::Deliver
        }
    }
}

/// `transport` behind the fault layer; with `faults: None` it only forwards.
pub struct FaultyTransport<T> {
    transport: Arc<T>,
    faults: Option<TransportFaults>,
}

impl<T: Transport> FaultyTransport<T> {
    pub fn new(transport: T, faults: Option<TransportFaults>) -> FaultyTransport<T> {
        FaultyTransport { transport: Arc::new(transport), faults }
    }

    fn later(&self, to: NodeId, message: (GroupId, Message), wait: Duration) {
        let transport = self.transport.clone();
        // On the sending node's runtime: a node that dies takes its held messages with it.
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            transport.send(to, vec![message]);
        });
    }
}

impl<T: Transport> Transport for FaultyTransport<T> {
    fn node_id(&self) -> NodeId {
        self.transport.node_id()
    }

    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        let Some(faults) = &self.faults else {
            return self.transport.send(to, messages);
        };
        let mut now = Vec::with_capacity(messages.len());
        for message in messages {
            match faults.fate() {
                Fate::Deliver => now.push(message),
                Fate::Drop => {}
                Fate::Duplicate(wait) => {
                    self.later(to, message.clone(), wait);
                    now.push(message);
                }
                Fate::Delay(wait) => self.later(to, message, wait),
            }
        }
        if !now.is_empty() {
            self.transport.send(to, now);
        }
    }

    fn stats(&self) -> TransportStats {
        self.transport.stats()
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what reaches it.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(NodeId, u64)>>);

    impl Transport for Recorder {
        fn node_id(&self) -> NodeId {
            1
        }
        fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
            self.0.lock().unwrap().extend(messages.into_iter().map(|(_, m)| (to, m.index)));
        }
        fn stats(&self) -> TransportStats {
            TransportStats::default()
        }
    }

    fn message(index: u64) -> (GroupId, Message) {
        (7, Message { index, ..Default::default() })
    }

    fn run(rates: FaultRates, count: u64) -> (Vec<(NodeId, u64)>, FaultCounts) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async {
            let faults = TransportFaults::new(9);
            faults.set(rates);
            let recorder = Arc::new(Recorder::default());
            let layer = FaultyTransport { transport: recorder.clone(), faults: Some(faults.clone()) };
            for index in 0..count {
                layer.send(2, vec![message(index)]);
            }
            // Every hold is at most `delay_max` (a few ms here): long over after this.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let delivered = recorder.0.lock().unwrap().clone();
            (delivered, faults.counts())
        })
    }

    #[test]
    fn without_faults_every_message_arrives_once_in_order() {
        let (delivered, counts) = run(FaultRates::default(), 50);
        assert_eq!(delivered, (0..50).map(|i| (2, i)).collect::<Vec<_>>());
        assert_eq!(counts, FaultCounts::default());
    }

    #[test]
    fn drops_duplicates_and_delays_show_in_what_arrives() {
        let rates = FaultRates { drop: 0.2, duplicate: 0.2, delay: 0.3, delay_max: Duration::from_millis(5) };
        let (delivered, counts) = run(rates, 400);
        assert!(counts.dropped > 0 && counts.duplicated > 0 && counts.delayed > 0, "{counts:?}");
        assert_eq!(delivered.len() as u64, 400 - counts.dropped + counts.duplicated);
        let indexes: Vec<u64> = delivered.iter().map(|&(_, i)| i).collect();
        assert!(indexes.windows(2).any(|w| w[1] < w[0]), "held messages arrive after later ones");
        let mut unique = indexes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len() as u64, 400 - counts.dropped, "only drops lose messages");
    }
}
