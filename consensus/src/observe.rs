//! White-box hooks for the raft checker (`odradek_jepsen::checker::raft`, CHECKLISTS R1 to R6
//! and R8): every [`Node`](crate::Node) reports what it does to the observer installed on the
//! current thread, if any. Under madsim every simulated node of a run lives on the thread
//! that runs the simulation, so one observer sees the whole cluster, and parallel test threads
//! do not mix. Without an observer (every production node) an event costs a thread-local check.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::transport::{GroupId, NodeId};

/// Something a replica did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `node` became the leader of `group` in `term` (R1: at most one per group and term).
    Leader { node: NodeId, group: GroupId, term: u64 },
    /// `node` wrote the entry at `index` of `term` with this [`entry_checksum`] to its log (R2:
    /// an entry at one (index, term) has one checksum on every replica).
    Appended { node: NodeId, group: GroupId, index: u64, term: u64, checksum: u32 },
    /// `node` applied the committed entry (its [`entry_checksum`], and the offsets its records
    /// take: `base_offset ..offset_next`), or replayed it from its log on opening the group
    /// (R4: every replica applies the same entry at an index, and offsets are dense; R3:
    /// within one `incarnation` of a node, applied indexes grow by one).
    Applied { node: NodeId, incarnation: u64, group: GroupId, index: u64, term: u64, checksum: u32, base_offset: u64, offset_next: u64 },
    /// `node` installed a snapshot up to `index`, whose log continues at offset `offset_next`:
    /// its next applied index is `index + 1`.
    Restored { node: NodeId, incarnation: u64, group: GroupId, index: u64, offset_next: u64 },
    /// `node`'s log of `group` is durable up to `index`: the disk confirmed the fsyncs (after a
    /// round's sync, on opening, after a snapshot install). R5 counts these.
    Durable { node: NodeId, group: GroupId, index: u64 },
    /// `node` opened its log of `group` (at a start) durable up to `index`, after any
    /// [`Event::RecoveryCut`] of that opening (R6: without a cut, what the node reported durable
    /// before is still there).
    Opened { node: NodeId, group: GroupId, index: u64 },
    /// `node` told `to` it holds the entries up to `index` (an accepted append), while its log
    /// was durable up to `durable_index` (R6: `index <= durable_index`).
    AppendAccepted { node: NodeId, group: GroupId, to: NodeId, index: u64, durable_index: u64 },
    /// `node` granted `to` its vote in `term`, with `term_saved` / `vote_saved` durable in its
    /// hard state (R6: the vote is saved, or a later term is).
    VoteGranted { node: NodeId, group: GroupId, to: NodeId, term: u64, term_saved: u64, vote_saved: u64 },
    /// Opening `group`, `node`'s recovery cut its log from `index` on, taking the damaged last
    /// entry for a torn write; `suspect` when the node then holds itself suspect (R8 e: entries
    /// the node reported durable may go only if it does).
    RecoveryCut { node: NodeId, group: GroupId, index: u64, suspect: bool },
    /// `node` opened `group` suspect: it may have lost acknowledged entries `cut ..= bound`, and
    /// must neither vote nor lead until [`Event::SuspectCleared`] (R8 e).
    /// `term` is the term it cut in: every lost entry is of that term or older.
    Suspect { node: NodeId, group: GroupId, cut: u64, bound: u64, term: u64 },
    /// Suspect `node` let raft judge `to`'s vote request in `term`: the candidate's log ends at
    /// (`last_term`, `last_index`), which holds everything `node` may have lost (R8 e), judged
    /// against the suspicion's current `bound` (at most the one [`Event::Suspect`] reported).
    SuspectVote { node: NodeId, group: GroupId, to: NodeId, term: u64, last_term: u64, last_index: u64, bound: u64 },
    /// `node` settled its suspicion with its log durable up to `durable`.
    SuspectCleared { node: NodeId, group: GroupId, durable: u64 },
    /// `node` acknowledged an acks=all produce whose entry is at `index`, for a group of
    /// `voters` voters (R5: durable on a quorum of them). Reported by the server.
    Acked { node: NodeId, group: GroupId, index: u64, term: u64, voters: usize },
}

impl Event {
    /// The raft group the event is about.
    pub fn group(&self) -> GroupId {
        match *self {
            Event::Leader { group, .. }
            | Event::Appended { group, .. }
            | Event::Applied { group, .. }
            | Event::Restored { group, .. }
            | Event::Durable { group, .. }
            | Event::Opened { group, .. }
            | Event::AppendAccepted { group, .. }
            | Event::VoteGranted { group, .. }
            | Event::RecoveryCut { group, .. }
            | Event::Suspect { group, .. }
            | Event::SuspectCleared { group, .. }
            | Event::SuspectVote { group, .. }
            | Event::Acked { group, .. } => group,
        }
    }
}

type Sink = Rc<dyn Fn(Event)>;

thread_local! {
    static OBSERVER: RefCell<Option<Sink>> = const { RefCell::new(None) };
    static INCARNATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Sends every event of nodes running on this thread to `observer` (replacing any other).
pub fn install(observer: impl Fn(Event) + 'static) {
    OBSERVER.with(|slot| *slot.borrow_mut() = Some(Rc::new(observer)));
}

/// Stops observing on this thread.
pub fn uninstall() {
    OBSERVER.with(|slot| *slot.borrow_mut() = None);
}

/// Reports the event `make` builds, only if someone observes (checksums cost nothing otherwise).
pub fn emit(make: impl FnOnce() -> Event) {
    let sink = OBSERVER.with(|slot| slot.borrow().clone());
    if let Some(sink) = sink {
        sink(make());
    }
}

/// The checksum events carry for a raft entry: crc32 of its index, term, type, data and context,
/// so two entries with one checksum are the same entry (the same payload, kind, record count and
/// timestamps). Computed only when someone observes (see [`emit`]).
pub fn entry_checksum(entry: &raft::eraftpb::Entry) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&entry.index.to_le_bytes());
    hasher.update(&entry.term.to_le_bytes());
    hasher.update(&(entry.get_entry_type() as i32).to_le_bytes());
    hasher.update(&entry.data);
    hasher.update(&entry.context);
    hasher.finalize()
}

/// A number for a new node object, unique on this thread: a restarted node is a new incarnation.
pub(crate) fn incarnation_next() -> u64 {
    INCARNATIONS.with(|counter| {
        counter.set(counter.get() + 1);
        counter.get()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_installed_observer_only() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        emit(|| panic!("no observer: the event is never built"));
        let sink = seen.clone();
        install(move |event| sink.borrow_mut().push(event));
        emit(|| Event::Leader { node: 1, group: 2, term: 3 });
        uninstall();
        emit(|| panic!("uninstalled"));
        assert_eq!(*seen.borrow(), vec![Event::Leader { node: 1, group: 2, term: 3 }]);
        assert_ne!(incarnation_next(), incarnation_next());
    }
}
