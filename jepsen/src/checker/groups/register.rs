//! C1's search: is one (group, key)'s history of commits and committed-offset reads linearizable
//! as a last-writer-wins register whose initial value is "nothing committed"?
//!
//! An offset deletion (Kafka's OffsetDelete, C9) is a write of "nothing committed".
//! Each commit is a write that takes effect once, at one instant inside its interval; an `ok`
//! write must take effect before it returns, an indeterminate one (`info`, or never completed)
//! takes effect at most once, at any instant after its invoke, or never. A read (an ok offset
//! fetch, or a start position taken from one) returns the register's value at one instant
//! inside its interval.
//!
//! The search is just-in-time linearization (Lowe, "Testing for linearizability", 2017) with
//! memoization over configurations, swept over the history's events in order. A configuration
//! is (register value, which open ops are already linearized, how many indeterminate writes of
//! each value were used). Only a *return* forces a choice: at each return the configurations are
//! closed under "linearize one more open op", those in which the returning op is linearized
//! survive, and the op's bit is freed. If none survive, the history is not linearizable and the
//! returning op is the witness. Two reductions keep the closure small, both exact:
//! * a read is linearized as soon as the register holds its value (reads change nothing, so doing
//!   it earlier never removes a future);
//! * an indeterminate write is applied only when an open, not yet linearized read has its value:
//!   in any linearization such a write can be moved to just before the first read that observes
//!   it, or dropped if none does. Indeterminate writes of one value are interchangeable, so only
//!   their count in use is kept.
//!
//! Moving every linearization point inside a stretch with no return to just before the next
//! return keeps a linearization valid (every op linearized in the stretch is open there), so
//! closing only at returns loses nothing.
//!
//! Cost: per return, (configurations × open writes) moves; a consumer group commits a key from
//! one owner at a time, so a configuration set of a few entries is the normal case. The search
//! is bounded by [`SEARCH_CONFIGS_MAX`] configurations at one instant, [`SEARCH_STEPS_MAX`]
//! moves per register and [`OPEN_OPS_MAX`] concurrently open determinate ops; beyond them the
//! answer is [`Linearizability::Unknown`], never a guess.

use std::collections::BTreeSet;

use crate::history::Offset;

/// Configurations kept at one instant (about 100 bytes each): beyond this the search gives up.
pub(crate) const SEARCH_CONFIGS_MAX: usize = 50_000;
/// Moves explored for one register history: bounds the time of one partition (≈ 1 s).
pub(crate) const SEARCH_STEPS_MAX: u64 = 5_000_000;
/// Determinate ops open at once: one bit each in a configuration.
pub(crate) const OPEN_OPS_MAX: usize = 64;

/// The register's value: `None` is "nothing committed".
pub(crate) type RegisterValue = Option<Offset>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegisterOpKind {
    /// A commit writes `Some(offset)`; an offset deletion (C9) writes `None`.
    Write(RegisterValue),
    Read(RegisterValue),
}

/// One op of the register history. `invoke` and `complete` are history indices (the real-time
/// order); `complete == None` marks an indeterminate write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RegisterOp {
    pub kind: RegisterOpKind,
    pub invoke: u64,
    pub complete: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Linearizability {
    Linearizable,
    /// No linearization lets op `op` (an index into the input) return as it did; `values` are the
    /// values the register could hold just before it returned (sorted, at most a few).
    Violation {
        op: usize,
        values: Vec<RegisterValue>,
    },
    /// The search passed one of its bounds.
    Unknown {
        reason: String,
    },
}

/// Configurations with one value and set of linearized ops compared pairwise by [`prune`].
const PRUNE_GROUP_MAX: usize = 64;
/// Values listed in a violation's witness.
const WITNESS_VALUES_MAX: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Config {
    value: RegisterValue,
    /// Bit per slot: the open determinate op in that slot is linearized.
    done: u64,
    /// (value, count) of indeterminate writes used, sorted by value.
    used: Vec<(RegisterValue, u32)>,
}

impl Config {
    fn used_of(&self, value: RegisterValue) -> u32 {
        self.used.binary_search_by_key(&value, |u| u.0).map_or(0, |i| self.used[i].1)
    }

    fn use_one(&mut self, value: RegisterValue) {
        match self.used.binary_search_by_key(&value, |u| u.0) {
            Ok(i) => self.used[i].1 += 1,
            Err(i) => self.used.insert(i, (value, 1)),
        }
    }
}

/// The sweep's state: which op sits in which slot, and the indeterminate writes seen so far.
struct Sweep<'a> {
    ops: &'a [RegisterOp],
    /// Slot → op index, for open determinate ops.
    slots: [Option<usize>; OPEN_OPS_MAX],
    /// Indeterminate writes invoked so far: (value, count), sorted by value.
    available: Vec<(RegisterValue, u32)>,
    steps: u64,
}

impl Sweep<'_> {
    /// Linearizes every open read that the register's value satisfies.
    fn settle_reads(&self, config: &mut Config) {
        for (slot, op) in self.slots.iter().enumerate() {
            let Some(op) = *op else { continue };
            if config.done & (1 << slot) == 0 && self.ops[op].kind == RegisterOpKind::Read(config.value) {
                config.done |= 1 << slot;
            }
        }
    }

    /// Every configuration reachable from `configs` by linearizing open ops (see the module doc).
    fn close(&mut self, configs: Vec<Config>) -> Result<BTreeSet<Config>, String> {
        let mut seen: BTreeSet<Config> = BTreeSet::new();
        let mut queue: Vec<Config> = Vec::new();
        for mut config in configs {
            self.settle_reads(&mut config);
            if seen.insert(config.clone()) {
                queue.push(config);
            }
        }
        while let Some(config) = queue.pop() {
            let mut next = Vec::new();
            for (slot, op) in self.slots.iter().enumerate() {
                let Some(op) = *op else { continue };
                let bit = 1 << slot;
                if config.done & bit != 0 {
                    continue;
                }
                match self.ops[op].kind {
                    RegisterOpKind::Write(value) => {
                        next.push(Config { value, done: config.done | bit, used: config.used.clone() });
                    }
                    // JIT: an indeterminate write only just before a read that observes it.
                    RegisterOpKind::Read(value) => {
                        let available = self.available.binary_search_by_key(&value, |a| a.0).map_or(0, |i| self.available[i].1);
                        if config.used_of(value) < available && config.value != value {
                            let mut c = Config { value, done: config.done, used: config.used.clone() };
                            c.use_one(value);
                            next.push(c);
                        }
                    }
                }
            }
            for mut c in next {
                self.steps += 1;
                if self.steps > SEARCH_STEPS_MAX {
                    return Err(format!("more than SEARCH_STEPS_MAX ({SEARCH_STEPS_MAX}) moves"));
                }
                self.settle_reads(&mut c);
                if seen.insert(c.clone()) {
                    if seen.len() > SEARCH_CONFIGS_MAX {
                        return Err(format!("more than SEARCH_CONFIGS_MAX ({SEARCH_CONFIGS_MAX}) configurations at one instant"));
                    }
                    queue.push(c);
                }
            }
        }
        Ok(seen)
    }
}

/// Drops configurations that another one dominates: same value and linearized ops, and no more
/// indeterminate writes used of any value (unused ones stay available, so fewer is never worse).
fn prune(configs: BTreeSet<Config>) -> Vec<Config> {
    let configs: Vec<Config> = configs.into_iter().collect();
    let mut kept: Vec<Config> = Vec::with_capacity(configs.len());
    // Sorted by (value, done, used): configurations that can dominate each other are adjacent.
    let mut start = 0;
    while start < configs.len() {
        let end = start + configs[start..].iter().take_while(|c| (c.value, c.done) == (configs[start].value, configs[start].done)).count();
        let group = &configs[start..end];
        // Pairwise comparison is quadratic: a large group is kept whole (pruning only saves work).
        if group.len() > PRUNE_GROUP_MAX {
            kept.extend_from_slice(group);
            start = end;
            continue;
        }
        for (i, c) in group.iter().enumerate() {
            let dominated =
                group.iter().enumerate().any(|(j, d)| i != j && d.used != c.used && d.used.iter().all(|&(v, n)| c.used_of(v) >= n));
            if !dominated {
                kept.push(c.clone());
            }
        }
        start = end;
    }
    kept
}

/// Checks one register history (see the module doc). Reads must have a completion.
pub(crate) fn check_register(ops: &[RegisterOp]) -> Linearizability {
    // Events: (history index, is_return, op); a return sorts after an invoke at the same index.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        assert!(op.complete.is_some() || matches!(op.kind, RegisterOpKind::Write(_)), "a read has a completion");
        assert!(op.complete.is_none_or(|c| c > op.invoke), "an op completes after its invoke");
        events.push((op.invoke, false, i));
        if let Some(complete) = op.complete {
            events.push((complete, true, i));
        }
    }
    events.sort_unstable();
    let mut sweep = Sweep { ops, slots: [None; OPEN_OPS_MAX], available: Vec::new(), steps: 0 };
    let mut configs = vec![Config { value: None, done: 0, used: Vec::new() }];
    for (_, is_return, i) in events {
        let op = &ops[i];
        match (is_return, op.complete, op.kind) {
            (false, None, RegisterOpKind::Write(value)) => match sweep.available.binary_search_by_key(&value, |a| a.0) {
                Ok(j) => sweep.available[j].1 += 1,
                Err(j) => sweep.available.insert(j, (value, 1)),
            },
            (false, _, _) => {
                let Some(slot) = sweep.slots.iter().position(Option::is_none) else {
                    return Linearizability::Unknown { reason: format!("more than OPEN_OPS_MAX ({OPEN_OPS_MAX}) ops open at once") };
                };
                sweep.slots[slot] = Some(i);
            }
            (true, _, _) => {
                let slot = sweep.slots.iter().position(|s| *s == Some(i)).expect("a returning op holds a slot");
                let bit = 1u64 << slot;
                let closed = match sweep.close(configs) {
                    Ok(closed) => closed,
                    Err(reason) => return Linearizability::Unknown { reason },
                };
                let survivors: BTreeSet<Config> = closed
                    .iter()
                    .filter(|c| c.done & bit != 0)
                    .map(|c| Config { value: c.value, done: c.done & !bit, used: c.used.clone() })
                    .collect();
                if survivors.is_empty() {
                    let values: BTreeSet<RegisterValue> = closed.iter().map(|c| c.value).collect();
                    return Linearizability::Violation { op: i, values: values.into_iter().take(WITNESS_VALUES_MAX).collect() };
                }
                sweep.slots[slot] = None;
                configs = prune(survivors);
            }
        }
    }
    Linearizability::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use RegisterOpKind::{Read, Write};

    fn op(kind: RegisterOpKind, invoke: u64, complete: Option<u64>) -> RegisterOp {
        RegisterOp { kind, invoke, complete }
    }

    #[test]
    fn sequential_histories() {
        let ok =
            [op(Read(None), 0, Some(1)), op(Write(Some(5)), 2, Some(3)), op(Read(Some(5)), 4, Some(5)), op(Write(Some(3)), 6, Some(7))];
        assert_eq!(check_register(&ok), Linearizability::Linearizable);
        // A commit acknowledged, then a fetch answers "nothing committed" (a lost commit).
        let lost = [op(Write(Some(5)), 0, Some(1)), op(Read(None), 2, Some(3))];
        assert_eq!(check_register(&lost), Linearizability::Violation { op: 1, values: vec![Some(5)] });
        // A stale read after a newer commit completed.
        let stale = [op(Write(Some(5)), 0, Some(1)), op(Write(Some(7)), 2, Some(3)), op(Read(Some(5)), 4, Some(5))];
        assert_eq!(check_register(&stale), Linearizability::Violation { op: 2, values: vec![Some(7)] });
        // A value nobody wrote.
        let phantom = [op(Read(Some(9)), 0, Some(1))];
        assert!(matches!(check_register(&phantom), Linearizability::Violation { op: 0, .. }));
    }

    #[test]
    fn concurrency_and_indeterminate_writes() {
        // Concurrent writes may take effect in either order.
        let either = [op(Write(Some(5)), 0, Some(3)), op(Write(Some(7)), 1, Some(2)), op(Read(Some(5)), 4, Some(5))];
        assert_eq!(check_register(&either), Linearizability::Linearizable);
        // An indeterminate write may apply late, once.
        let late = [op(Write(Some(5)), 0, None), op(Write(Some(7)), 1, Some(2)), op(Read(Some(5)), 3, Some(4))];
        assert_eq!(check_register(&late), Linearizability::Linearizable);
        let twice = [
            op(Write(Some(5)), 0, None),
            op(Write(Some(7)), 1, Some(2)),
            op(Read(Some(5)), 3, Some(4)),
            op(Write(Some(7)), 5, Some(6)),
            op(Read(Some(5)), 7, Some(8)),
        ];
        assert!(matches!(check_register(&twice), Linearizability::Violation { op: 4, .. }));
        // ... or never.
        let never = [op(Write(Some(5)), 0, None), op(Read(None), 1, Some(2))];
        assert_eq!(check_register(&never), Linearizability::Linearizable);
        // A definite write must have taken effect by its return.
        let missed = [op(Write(Some(5)), 0, Some(3)), op(Read(None), 1, Some(4)), op(Read(None), 5, Some(6))];
        assert!(matches!(check_register(&missed), Linearizability::Violation { op: 2, .. }));
    }

    #[test]
    fn deletions_write_nothing_committed() {
        // An acknowledged deletion, then a fetch still answers the old offset.
        let kept = [op(Write(Some(5)), 0, Some(1)), op(Write(None), 2, Some(3)), op(Read(Some(5)), 4, Some(5))];
        assert_eq!(check_register(&kept), Linearizability::Violation { op: 2, values: vec![None] });
        // An indeterminate deletion may explain a later "nothing committed" ...
        let maybe = [op(Write(Some(5)), 0, Some(1)), op(Write(None), 2, None), op(Read(None), 4, Some(5))];
        assert_eq!(check_register(&maybe), Linearizability::Linearizable);
        // ... but not before it was invoked.
        let early = [op(Write(Some(5)), 0, Some(1)), op(Read(None), 2, Some(3)), op(Write(None), 4, None)];
        assert!(matches!(check_register(&early), Linearizability::Violation { op: 1, .. }));
    }

    /// Whether some subset and order of the ops is a legal register sequence that respects real
    /// time: every determinate op included, indeterminate writes optional.
    fn brute_force(ops: &[RegisterOp]) -> bool {
        fn search(ops: &[RegisterOp], placed: &mut Vec<usize>, value: RegisterValue) -> bool {
            let required_left = (0..ops.len()).any(|i| ops[i].complete.is_some() && !placed.contains(&i));
            if !required_left {
                return true;
            }
            for i in 0..ops.len() {
                if placed.contains(&i) {
                    continue;
                }
                // i may go next only if no unplaced op returned before i was invoked.
                let blocked = (0..ops.len()).any(|j| j != i && !placed.contains(&j) && ops[j].complete.is_some_and(|c| c < ops[i].invoke));
                if blocked {
                    continue;
                }
                let next = match ops[i].kind {
                    Write(v) => v,
                    Read(r) if r == value => value,
                    Read(_) => continue,
                };
                placed.push(i);
                if search(ops, placed, next) {
                    return true;
                }
                placed.pop();
            }
            false
        }
        search(ops, &mut Vec::new(), None)
    }

    fn random_history(rng: &mut StdRng) -> Vec<RegisterOp> {
        let n = rng.gen_range(1..=7);
        let mut times: Vec<u64> = (0..2 * n as u64).collect();
        for i in (1..times.len()).rev() {
            times.swap(i, rng.gen_range(0..=i));
        }
        (0..n)
            .map(|i| {
                let (a, b) = (times[2 * i].min(times[2 * i + 1]), times[2 * i].max(times[2 * i + 1]));
                let value = rng.gen_range(0..3);
                if rng.gen_bool(0.45) {
                    // A write of 0 stands for an offset deletion (C9): it writes "nothing committed".
                    op(Write((value > 0).then_some(value)), a, (!rng.gen_bool(0.25)).then_some(b))
                } else {
                    op(Read((value > 0).then_some(value)), a, Some(b))
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_random_small_histories() {
        let mut rng = StdRng::seed_from_u64(14);
        let (mut linearizable, mut violations) = (0, 0);
        for case in 0..20_000 {
            let ops = random_history(&mut rng);
            let expected = brute_force(&ops);
            let got = check_register(&ops);
            assert_eq!(got == Linearizability::Linearizable, expected, "case {case}: {ops:?} gave {got:?}");
            if expected {
                linearizable += 1;
            } else {
                violations += 1;
            }
        }
        // Both answers are exercised.
        assert!(linearizable > 2_000 && violations > 2_000, "{linearizable} linearizable, {violations} not");
    }

    #[test]
    fn long_sequential_history_is_fast_and_a_pile_of_concurrent_writes_is_unknown_not_wrong() {
        let mut ops = Vec::new();
        for i in 0..100_000u64 {
            ops.push(op(Write(Some(i)), 4 * i, Some(4 * i + 1)));
            ops.push(op(Read(Some(i)), 4 * i + 2, Some(4 * i + 3)));
        }
        assert_eq!(check_register(&ops), Linearizability::Linearizable);
        // 40 definite writes all open at once, then a read nobody can explain: 2^40 subsets.
        let mut pile: Vec<RegisterOp> = (0..40).map(|i| op(Write(Some(i)), i, Some(1_000 + i))).collect();
        pile.push(op(Read(Some(999)), 100, Some(101)));
        assert!(matches!(check_register(&pile), Linearizability::Unknown { .. }));
    }
}
