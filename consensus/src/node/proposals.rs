//! Proposals and their outcomes: [`Proposal`] (what a proposer waits on) and [`ProposalBook`],
//! the sans-IO record of one group's open proposals and of the indefinite outcomes it still
//! waits to learn, plus [`ResolvedQueue`], the node's bounded queue of outcomes learned late.
//!
//! A proposal refused by raft (not leader, transfer in progress, too many uncommitted bytes)
//! fails definitely at once (the driver, `Node::propose_with`). Once accepted it resolves on
//! commit: success when the committed entry at its index has its term, a definite failure when
//! another entry was committed there; it fails *indefinitely* if this node loses leadership
//! first (the entry may still commit under a later leader) and definitely if the group is
//! removed before any ready carried it (it never left memory).
//!
//! Indefinite outcomes resolved later: a proposal failed with `LeadershipLost { index, term }`
//! is remembered per group (at most `INDEFINITE_PROPOSALS_MAX`) until this node applies
//! `index`; then the committed entry there decides it, a success if it has the proposal's term
//! (and kind), a definite failure otherwise, queued as a [`ResolvedOutcome`] for
//! `Node::take_resolved_outcomes` (at most `RESOLVED_OUTCOMES_MAX` waiting). The records live
//! in memory: a restart, a group removal, or a snapshot past the index leaves the outcome
//! indefinite.
//!
//! The book is plain synchronous code: the driver tells it what raft did (appended, carried in
//! a ready, synced, committed, lost leadership, installed a snapshot, removed the group) and
//! sends the outcomes it returns to their waiters (`W`: a oneshot sender in the driver, a number
//! in the model test below). Invariants kept here, asserted where they can break:
//! - at most `PROPOSALS_PENDING_MAX` open proposals per group, at most one per index;
//! - every proposal gets exactly one outcome, and a success only from the entry it proposed
//!   (same index and term) or, with [`Durability::LeaderLog`], once its own entry is synced;
//! - no indefinite record outlives the applied index it waits for, and at most
//!   `INDEFINITE_PROPOSALS_MAX` per group and `RESOLVED_OUTCOMES_MAX` resolved ones wait.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::transport::GroupId;

use super::errors::ProposeError;

/// Proposals waiting for commit per group before new ones are refused (definitely).
pub const PROPOSALS_PENDING_MAX: usize = 4096;
/// Indefinitely failed proposals remembered per group until this node learns their fate; past
/// this, the one at the lowest index is forgotten (its outcome stays unknown).
pub const INDEFINITE_PROPOSALS_MAX: usize = PROPOSALS_PENDING_MAX;
/// Resolved outcomes waiting for `Node::take_resolved_outcomes`; past this, the oldest one is
/// dropped (with a warning).
pub const RESOLVED_OUTCOMES_MAX: usize = 16 * 1024;

/// Where a proposal landed: its raft position and the first offset of its records (the log's
/// next offset for entries without records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub term: u64,
    pub base_offset: u64,
}

/// When a proposal resolves `Ok`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once committed: a quorum of the current voters has it on disk (acks=all).
    #[default]
    Committed,
    /// Once the leader's own log has it on disk (acks=1): a later leader may lack it. A
    /// proposal resolved this way is no longer tracked (no `LeadershipLost`, no resolution).
    LeaderLog,
}

/// The outcome of a proposal: resolves with where it was appended once committed (or, with
/// [`Durability::LeaderLog`], once the leader's log has it on disk).
#[derive(Debug)]
pub struct Proposal {
    state: ProposalState,
}

#[derive(Debug)]
enum ProposalState {
    Waiting(oneshot::Receiver<Result<Appended, ProposeError>>),
    Failed(ProposeError),
    Done,
}

/// A dropped sender means the node itself went away (crash, shutdown) with the proposal open.
fn node_gone<T>(outcome: Result<Result<T, ProposeError>, oneshot::error::RecvError>) -> Result<T, ProposeError> {
    outcome.unwrap_or(Err(ProposeError::NodeStopped))
}

impl Proposal {
    pub(super) fn failed(error: ProposeError) -> Proposal {
        Proposal { state: ProposalState::Failed(error) }
    }

    /// A proposal waiting for its outcome, and where the driver sends that outcome.
    pub(super) fn waiting() -> (Waiter, Proposal) {
        let (waiter, receiver) = oneshot::channel();
        (waiter, Proposal { state: ProposalState::Waiting(receiver) })
    }

    /// The outcome, once, when known (for schedulers that do not poll futures); `None` while
    /// pending and after the outcome was taken.
    pub fn try_outcome(&mut self) -> Option<Result<Appended, ProposeError>> {
        let outcome = match &mut self.state {
            ProposalState::Done => return None,
            ProposalState::Failed(error) => Err(error.clone()),
            ProposalState::Waiting(receiver) => match receiver.try_recv() {
                Ok(outcome) => outcome,
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => Err(ProposeError::NodeStopped),
            },
        };
        self.state = ProposalState::Done;
        Some(outcome)
    }
}

impl Future for Proposal {
    type Output = Result<Appended, ProposeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match &mut self.state {
            ProposalState::Done => panic!("a Proposal is polled after completion"),
            ProposalState::Failed(error) => Err(error.clone()),
            ProposalState::Waiting(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => node_gone(outcome),
            },
        };
        self.state = ProposalState::Done;
        Poll::Ready(outcome)
    }
}

/// The late answer to a proposal that failed with [`ProposeError::LeadershipLost`]: this node
/// applied the proposal's index after all and so knows what was committed there. Taken with
/// [`Node::take_resolved_outcomes`](super::Node::take_resolved_outcomes) (or
/// [`NodeHandle::take_resolved_outcomes`](super::NodeHandle::take_resolved_outcomes)); match it to
/// the error by `(group, index, term)`.
///
/// Best effort: the record of an open indefinite outcome lives in memory (a restart forgets it),
/// is bounded per group (`INDEFINITE_PROPOSALS_MAX`), and is dropped unresolved when a snapshot
/// moves this node's log past the index (the entry there is then unknown to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedOutcome {
    pub group: GroupId,
    pub index: u64,
    /// The term the proposal was appended in.
    pub term: u64,
    /// `Ok`: the proposal committed. `Err`: a definite failure, `Superseded`
    /// (another entry was committed there) or `Busy` (raft replaced a conf change by an empty
    /// entry).
    pub outcome: Result<Appended, ProposeError>,
}

/// Where the driver sends a proposal's outcome.
pub(super) type Waiter = oneshot::Sender<Result<Appended, ProposeError>>;

/// An outcome for the proposer behind a waiter.
pub(super) type Outcome<W> = (W, Result<Appended, ProposeError>);

/// A committed entry, as the book needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CommittedAt {
    pub index: u64,
    pub term: u64,
    /// A conf change entry (raft replaces a refused conf change by an empty normal entry).
    pub conf_change: bool,
    pub base_offset: u64,
}

struct Pending<W> {
    term: u64,
    /// Some ready has carried the entry (it may be on disk or on other nodes).
    emitted: bool,
    /// A membership change: raft may have replaced it by an empty entry at append.
    conf_change: bool,
    durability: Durability,
    waiter: W,
}

/// What the resolution of an indefinitely failed proposal needs besides its `(index, term)`.
#[derive(Clone, Copy, Debug)]
struct Indefinite {
    conf_change: bool,
}

/// One group's open proposals (by index) and its indefinitely failed ones (by index and term)
/// until this node applies their index. See the module documentation.
pub(super) struct ProposalBook<W> {
    group: GroupId,
    pending: BTreeMap<u64, Pending<W>>,
    indefinite: BTreeMap<(u64, u64), Indefinite>,
}

impl<W> ProposalBook<W> {
    pub fn new(group: GroupId) -> ProposalBook<W> {
        ProposalBook { group, pending: BTreeMap::new(), indefinite: BTreeMap::new() }
    }

    /// No proposal open (module `hibernate`).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// No room for another open proposal (`PROPOSALS_PENDING_MAX`).
    pub fn is_full(&self) -> bool {
        self.pending.len() >= PROPOSALS_PENDING_MAX
    }

    /// Raft appended a proposal at (`index`, `term`) to its unstable log. An older proposal
    /// still open at this index lost its entry to a truncation while this node was briefly not
    /// the leader (within one round, so no soft-state change failed it): it fails indefinitely,
    /// and that outcome is returned.
    pub fn track(&mut self, index: u64, term: u64, conf_change: bool, durability: Durability, waiter: W) -> Option<Outcome<W>> {
        assert!(!self.is_full(), "group {}: a proposal tracked past PROPOSALS_PENDING_MAX", self.group);
        assert!(index > 0, "group {}: a proposal at index 0", self.group);
        let displaced = self.pending.insert(index, Pending { term, emitted: false, conf_change, durability, waiter })?;
        assert!(displaced.term < term, "group {}: two proposals at index {index} in term {term}", self.group);
        Some(self.fail_indefinitely(index, displaced))
    }

    /// A ready carried every open proposal's entry (to the log, maybe to other nodes).
    pub fn mark_emitted(&mut self) {
        self.pending.values_mut().for_each(|pending| pending.emitted = true);
    }

    /// This node stopped leading: every open proposal fails indefinitely.
    pub fn leadership_lost(&mut self) -> Vec<Outcome<W>> {
        let pending = std::mem::take(&mut self.pending);
        pending.into_iter().map(|(index, pending)| self.fail_indefinitely(index, pending)).collect()
    }

    /// The leader's log is synced through `synced`: resolves the emitted
    /// [`Durability::LeaderLog`] proposals there. `position` gives the (term, base offset) of
    /// the log's entry at an index; a proposal whose entry is not there (cannot happen for an
    /// unapplied entry of this leader) fails indefinitely rather than with a guess.
    pub fn leader_synced(&mut self, synced: u64, position: impl Fn(u64) -> Option<(u64, u64)>) -> Vec<Outcome<W>> {
        let durable: Vec<u64> = self
            .pending
            .range(..=synced)
            .filter(|(_, pending)| pending.durability == Durability::LeaderLog && pending.emitted)
            .map(|(&index, _)| index)
            .collect();
        let mut outcomes = Vec::with_capacity(durable.len());
        for index in durable {
            let pending = self.pending.remove(&index).expect("listed above");
            match position(index) {
                Some((term, base_offset)) if term == pending.term => {
                    outcomes.push((pending.waiter, Ok(Appended { index, term, base_offset })));
                }
                _ => outcomes.push(self.fail_indefinitely(index, pending)),
            }
        }
        outcomes
    }

    /// `entry` is committed and applied here: the open proposal at its index resolves (its
    /// outcome is returned), and so does every indefinite one (queued on `resolved`).
    pub fn committed(&mut self, entry: CommittedAt, resolved: &mut ResolvedQueue) -> Option<Outcome<W>> {
        let group = self.group;
        let outcome =
            self.pending.remove(&entry.index).map(|pending| (pending.waiter, resolve(group, entry, pending.term, pending.conf_change)));
        let index = entry.index;
        while let Some((&(_, term), &indefinite)) = self.indefinite.range((index, 0)..=(index, u64::MAX)).next() {
            self.indefinite.remove(&(index, term));
            resolved.push(ResolvedOutcome { group, index, term, outcome: resolve(group, entry, term, indefinite.conf_change) });
        }
        outcome
    }

    /// Every entry through `last` is committed and applied here: an open proposal at or below
    /// it can no longer commit (its index was superseded).
    pub fn committed_through(&mut self, last: u64) -> Vec<Outcome<W>> {
        let mut outcomes = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > last {
                break;
            }
            let index = *entry.key();
            outcomes.push((entry.remove().waiter, Err(ProposeError::Superseded { group: self.group, index })));
        }
        // Every index up to `last` was applied just now or before: nothing below it stays open.
        assert!(
            self.pending.first_key_value().is_none_or(|(&index, _)| index > last),
            "group {}: an open proposal outlived its index",
            self.group
        );
        assert!(
            self.indefinite.first_key_value().is_none_or(|(&(index, _), _)| index > last),
            "group {}: an indefinite proposal outlived its index",
            self.group
        );
        outcomes
    }

    /// A snapshot replaced the log through `index`: the entries there are unknown here, so the
    /// indefinite outcomes at or below it stay indefinite.
    pub fn snapshot_installed(&mut self, index: u64) {
        self.indefinite.retain(|&(at, _), _| at > index);
    }

    /// The group is no longer hosted: every open proposal fails, definitely if no ready carried
    /// it yet, indefinitely otherwise.
    pub fn removed(self) -> Vec<Outcome<W>> {
        let group = self.group;
        let outcomes = self.pending.into_iter().map(|(index, pending)| {
            let error = if pending.emitted { ProposeError::StoppedAfterAppend { group, index } } else { ProposeError::Stopped(group) };
            (pending.waiter, Err(error))
        });
        outcomes.collect()
    }

    /// Fails `pending` with `LeadershipLost` and remembers it, to resolve once `index` is applied.
    fn fail_indefinitely(&mut self, index: u64, pending: Pending<W>) -> Outcome<W> {
        let term = pending.term;
        if self.indefinite.len() >= INDEFINITE_PROPOSALS_MAX {
            self.indefinite.pop_first();
        }
        self.indefinite.insert((index, term), Indefinite { conf_change: pending.conf_change });
        assert!(self.indefinite.len() <= INDEFINITE_PROPOSALS_MAX);
        (pending.waiter, Err(ProposeError::LeadershipLost { group: self.group, index, term }))
    }
}

/// The outcome of a proposal made at `entry.index` in `term`, now that `entry` is committed.
fn resolve(group: GroupId, entry: CommittedAt, term: u64, conf_change: bool) -> Result<Appended, ProposeError> {
    if term != entry.term {
        Err(ProposeError::Superseded { group, index: entry.index })
    } else if conf_change && !entry.conf_change {
        let reason = "raft refused the conf change (another one pending, or invalid)".to_string();
        Err(ProposeError::Busy { group, reason })
    } else {
        Ok(Appended { index: entry.index, term: entry.term, base_offset: entry.base_offset })
    }
}

/// Indefinite outcomes resolved since the last [`ResolvedQueue::take`], oldest first (at most
/// `RESOLVED_OUTCOMES_MAX`: past it, the oldest is dropped with a warning).
#[derive(Debug, Default)]
pub(super) struct ResolvedQueue {
    outcomes: VecDeque<ResolvedOutcome>,
}

impl ResolvedQueue {
    pub fn push(&mut self, outcome: ResolvedOutcome) {
        if self.outcomes.len() >= RESOLVED_OUTCOMES_MAX {
            let dropped = self.outcomes.pop_front();
            tracing::warn!(group = outcome.group, ?dropped, "resolved proposal outcomes are not being taken; dropping the oldest");
        }
        self.outcomes.push_back(outcome);
        assert!(self.outcomes.len() <= RESOLVED_OUTCOMES_MAX);
    }

    pub fn take(&mut self) -> Vec<ResolvedOutcome> {
        self.outcomes.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    //! [`ProposalBook`] and [`ResolvedQueue`] against a model of one replica's raft log: the
    //! entries it holds with their terms, what it committed at each index, and its proposals.
    //! The outcomes must agree with what committed: a success only for the entry proposed (same
    //! index and term, and a conf change only if raft kept it one), a definite failure only when
    //! another entry committed there (or the proposal never left memory), an indefinite one only
    //! on leadership loss, and every indefinite one resolved exactly when its index is applied.

    use proptest::prelude::*;

    use super::*;

    const GROUP: GroupId = 7;

    /// What the model's replica does between two looks at the book (one driver round or less).
    #[derive(Clone, Debug)]
    enum Op {
        /// As leader, proposes; a conf change raft may replace by an empty entry.
        Propose { conf_change: bool, replaced: bool, leader_log: bool },
        /// A ready carries the open proposals and the round syncs the log to its end.
        Ready,
        /// Stops leading (the driver sees the soft-state change).
        StepDown,
        /// Wins an election in a new term and appends its empty entry.
        Elect,
        /// As follower, a newer leader replaces the log after `keep` uncommitted entries with
        /// `count` of its own.
        Overwrite { keep: usize, count: usize },
        /// As leader, within one round: a newer leader truncates the log after `keep`
        /// uncommitted entries and appends `count` of its own, then this node wins again. The
        /// driver sees no soft-state change, so the book is not told.
        Flip { keep: usize, count: usize },
        /// Commits and applies the next `count` entries.
        Commit { count: usize },
        /// As follower, installs a snapshot `ahead` entries past the commit.
        Snapshot { ahead: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), any::<bool>(), any::<bool>())
                .prop_map(|(conf_change, replaced, leader_log)| Op::Propose { conf_change, replaced, leader_log }),
            3 => Just(Op::Ready),
            2 => Just(Op::StepDown),
            2 => Just(Op::Elect),
            2 => (0..4usize, 1..4usize).prop_map(|(keep, count)| Op::Overwrite { keep, count }),
            1 => (0..4usize, 1..4usize).prop_map(|(keep, count)| Op::Flip { keep, count }),
            3 => (1..5usize).prop_map(|count| Op::Commit { count }),
            1 => (1..4u64).prop_map(|ahead| Op::Snapshot { ahead }),
        ]
    }

    #[derive(Clone, Copy, Debug)]
    struct LogEntry {
        term: u64,
        conf_change: bool,
    }

    #[derive(Debug)]
    struct ModelProposal {
        index: u64,
        term: u64,
        conf_change: bool,
        leader_log: bool,
        emitted: bool,
        outcome: Option<Result<Appended, ProposeError>>,
        /// Failed with `LeadershipLost`: waits for its resolution.
        indefinite: bool,
        /// A snapshot moved past its index before it was applied here: never resolved.
        forgotten: bool,
        resolution: Option<Result<Appended, ProposeError>>,
    }

    #[derive(Debug, Default)]
    struct Model {
        term: u64,
        leader: bool,
        /// The replica's log, index 1 first; entries under a snapshot are `None`.
        log: Vec<Option<LogEntry>>,
        commit: u64,
        synced: u64,
        /// What was committed and applied here at each index (not under a snapshot).
        committed: BTreeMap<u64, LogEntry>,
        proposals: Vec<ModelProposal>,
    }

    /// Any function of the entry's position will do; a different entry gets another offset.
    fn base_offset(index: u64, term: u64) -> u64 {
        index * 1000 + term
    }

    impl Model {
        fn last_index(&self) -> u64 {
            self.log.len() as u64
        }

        fn entry(&self, index: u64) -> Option<LogEntry> {
            self.log.get(usize::try_from(index).ok()?.checked_sub(1)?).copied().flatten()
        }

        /// A newer leader's entries replace everything after `keep` uncommitted ones.
        fn overwrite(&mut self, keep: usize, count: usize) {
            self.term += 1;
            let length = (self.commit as usize + keep).min(self.log.len());
            self.log.truncate(length);
            self.synced = self.synced.min(length as u64);
            self.log.extend((0..count).map(|_| Some(LogEntry { term: self.term, conf_change: false })));
        }

        fn elect(&mut self) {
            self.term += 1;
            self.leader = true;
            self.log.push(Some(LogEntry { term: self.term, conf_change: false }));
        }

        /// Takes one direct outcome for proposal `id` and checks it against the log.
        fn deliver(&mut self, id: usize, outcome: Result<Appended, ProposeError>) {
            let commit = self.commit;
            let synced = self.synced;
            let committed = &self.committed;
            let proposal = &mut self.proposals[id];
            assert!(proposal.outcome.is_none(), "proposal {id} got a second outcome {outcome:?}: {proposal:?}");
            let (index, term) = (proposal.index, proposal.term);
            match &outcome {
                Ok(appended) => {
                    assert_eq!((appended.index, appended.term), (index, term), "{proposal:?}");
                    assert_eq!(appended.base_offset, base_offset(index, term), "{proposal:?}");
                    match committed.get(&index) {
                        Some(entry) => assert_eq!((entry.term, entry.conf_change), (term, proposal.conf_change), "{proposal:?}"),
                        // Not committed yet: only an acks=1 proposal whose own entry is synced.
                        None => assert!(proposal.leader_log && proposal.emitted && index <= synced, "{proposal:?}"),
                    }
                }
                Err(ProposeError::Superseded { index: at, .. }) => {
                    assert_eq!(*at, index);
                    assert_ne!(committed.get(&index).map(|entry| entry.term), Some(term), "{proposal:?} {committed:?}");
                    assert!(committed.contains_key(&index), "superseded before its index committed: {proposal:?}");
                }
                Err(ProposeError::Busy { .. }) => {
                    let entry = committed.get(&index).expect("refused once committed");
                    assert!(proposal.conf_change && entry.term == term && !entry.conf_change, "{proposal:?} {entry:?}");
                }
                Err(ProposeError::LeadershipLost { group, index: at, term: in_term }) => {
                    assert_eq!((*group, *at, *in_term), (GROUP, index, term));
                    assert!(index > commit, "indefinite at {index} though committed through {commit}");
                    proposal.indefinite = true;
                }
                Err(ProposeError::Stopped(_)) => assert!(!proposal.emitted, "{proposal:?}"),
                Err(ProposeError::StoppedAfterAppend { index: at, .. }) => assert!(proposal.emitted && *at == index, "{proposal:?}"),
                Err(other) => panic!("the book never raises {other}"),
            }
            proposal.outcome = Some(outcome);
        }

        fn deliver_all(&mut self, outcomes: impl IntoIterator<Item = Outcome<usize>>) {
            outcomes.into_iter().for_each(|(id, outcome)| self.deliver(id, outcome));
        }

        /// Checks the outcomes resolved late: each one for an indefinite proposal whose index
        /// is now applied, saying what committed there; and none missing.
        fn check_resolved(&mut self, resolved: Vec<ResolvedOutcome>) {
            for late in resolved {
                let id = self.proposals.iter().position(|p| p.indefinite && (p.index, p.term) == (late.index, late.term));
                let id = id.unwrap_or_else(|| panic!("{late:?} resolves no indefinite proposal"));
                let entry = self.committed[&late.index];
                let proposal = &mut self.proposals[id];
                assert!(proposal.resolution.is_none() && !proposal.forgotten, "{late:?}: {proposal:?}");
                let expected = if entry.term != proposal.term {
                    Err(ProposeError::Superseded { group: GROUP, index: late.index })
                } else if proposal.conf_change && !entry.conf_change {
                    Err(ProposeError::Busy {
                        group: GROUP,
                        reason: "raft refused the conf change (another one pending, or invalid)".into(),
                    })
                } else {
                    Ok(Appended { index: late.index, term: late.term, base_offset: base_offset(late.index, late.term) })
                };
                assert_eq!(late.outcome, expected, "{proposal:?}");
                proposal.resolution = Some(late.outcome);
            }
            for proposal in &self.proposals {
                if proposal.indefinite && !proposal.forgotten && self.committed.contains_key(&proposal.index) {
                    assert!(proposal.resolution.is_some(), "{proposal:?} applied here but never resolved");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn outcomes_agree_with_what_committed(ops in proptest::collection::vec(op(), 1..80)) {
            let mut book: ProposalBook<usize> = ProposalBook::new(GROUP);
            let mut resolved = ResolvedQueue::default();
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Propose { conf_change, replaced, leader_log } if model.leader => {
                        let (index, term) = (model.last_index() + 1, model.term);
                        model.log.push(Some(LogEntry { term, conf_change: conf_change && !replaced }));
                        let durability = if leader_log { Durability::LeaderLog } else { Durability::Committed };
                        let id = model.proposals.len();
                        model.proposals.push(ModelProposal {
                            index, term, conf_change, leader_log, emitted: false, outcome: None,
                            indefinite: false, forgotten: false, resolution: None,
                        });
                        model.deliver_all(book.track(index, term, conf_change, durability, id));
                    }
                    Op::Propose { .. } => {}
                    Op::Ready => {
                        book.mark_emitted();
                        model.proposals.iter_mut().filter(|p| p.outcome.is_none()).for_each(|p| p.emitted = true);
                        model.synced = model.last_index();
                        let position = |index| model.entry(index).map(|entry| (entry.term, base_offset(index, entry.term)));
                        let outcomes = book.leader_synced(model.synced, position);
                        model.deliver_all(outcomes);
                    }
                    Op::StepDown if model.leader => {
                        model.leader = false;
                        model.deliver_all(book.leadership_lost());
                    }
                    Op::StepDown => {}
                    Op::Elect if !model.leader => model.elect(),
                    Op::Elect => {}
                    Op::Overwrite { keep, count } if !model.leader => model.overwrite(keep, count),
                    Op::Overwrite { .. } => {}
                    Op::Flip { keep, count } if model.leader => {
                        model.overwrite(keep, count);
                        model.elect();
                    }
                    Op::Flip { .. } => {}
                    Op::Commit { count } => {
                        let last = (model.commit + count as u64).min(model.last_index());
                        if last == model.commit {
                            continue;
                        }
                        for index in model.commit + 1..=last {
                            let entry = model.entry(index).expect("above the snapshot");
                            model.committed.insert(index, entry);
                            model.commit = index;
                            let at = CommittedAt { index, term: entry.term, conf_change: entry.conf_change, base_offset: base_offset(index, entry.term) };
                            model.deliver_all(book.committed(at, &mut resolved));
                        }
                        model.deliver_all(book.committed_through(last));
                        model.check_resolved(resolved.take());
                    }
                    Op::Snapshot { ahead } if !model.leader => {
                        let index = model.commit + ahead;
                        model.log = vec![None; index as usize];
                        (model.commit, model.synced) = (index, index);
                        model.proposals.iter_mut().filter(|p| p.indefinite && p.index <= index && p.resolution.is_none()).for_each(|p| p.forgotten = true);
                        book.snapshot_installed(index);
                    }
                    Op::Snapshot { .. } => {}
                }
                let open = model.proposals.iter().filter(|p| p.outcome.is_none()).count();
                prop_assert_eq!(book.pending.len(), open, "open proposals");
                let waiting = model.proposals.iter().filter(|p| p.indefinite && !p.forgotten && p.resolution.is_none()).count();
                prop_assert_eq!(book.indefinite.len(), waiting, "indefinite proposals remembered");
            }
            // Removing the group settles every proposal still open.
            let outcomes = book.removed();
            model.deliver_all(outcomes);
            for proposal in &model.proposals {
                prop_assert!(proposal.outcome.is_some(), "{:?} never resolved", proposal);
            }
        }
    }

    #[test]
    fn resolved_outcomes_past_the_bound_drop_the_oldest() {
        let mut queue = ResolvedQueue::default();
        let outcome =
            |index| ResolvedOutcome { group: GROUP, index, term: 1, outcome: Err(ProposeError::Superseded { group: GROUP, index }) };
        for index in 0..RESOLVED_OUTCOMES_MAX as u64 + 3 {
            queue.push(outcome(index));
        }
        let taken = queue.take();
        assert_eq!(taken.len(), RESOLVED_OUTCOMES_MAX);
        assert_eq!(taken.first().map(|r| r.index), Some(3));
        assert!(queue.take().is_empty());
    }

    #[test]
    fn indefinite_records_past_the_bound_forget_the_lowest_index() {
        let mut book: ProposalBook<u64> = ProposalBook::new(GROUP);
        for index in 1..=INDEFINITE_PROPOSALS_MAX as u64 + 2 {
            book.track(index, 1, false, Durability::Committed, index);
            if book.is_full() {
                book.leadership_lost();
            }
        }
        book.leadership_lost();
        assert_eq!(book.indefinite.len(), INDEFINITE_PROPOSALS_MAX);
        assert_eq!(book.indefinite.first_key_value().map(|(&(index, _), _)| index), Some(3));
    }
}
