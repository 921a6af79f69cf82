//! A peer that comes back as a new incarnation (CHECKLISTS R11, R8 d; issue 15).
//!
//! A leader tracks, per replica, the highest index it knows the replica holds durably (raft's
//! `Progress::matched`), and raft-rs never lowers it: a rejection at or below it reads as a
//! stale message. That is sound while a replica keeps its disk. A node whose data directory
//! was wiped (or replaced) and that restarts under the same id is a new replica holding none
//! of it: its groups open whole-log suspect (module `suspect`), so it never votes with the
//! missing log, but the leader's old `matched` still counts it as holding everything it
//! acknowledged before: a move could promote such a learner as caught up (R11), the leader
//! counts it towards commits, and a leader transfer could pick it. Until now only the leader's
//! next heartbeat corrected that, by showing the new replica "behind" (module `suspect`), which
//! then takes a term above the leader's and deposes it.
//!
//! So the transport delivers every inbound batch with the sender's data-directory incarnation
//! ([`Inbound::incarnation`](crate::transport::Inbound::incarnation), told in the connection's
//! handshake), and when a peer's incarnation changes the driver, before stepping that batch,
//! resets the peer's progress in every group this node leads (the metadata group included):
//! nothing matched, probing from the first index, so raft finds what the new replica holds
//! from its own answers, and a promotion, a commit or a transfer waits for acknowledgements of
//! the new incarnation. Its heartbeats then carry a commit of 0, so the new replica has no
//! reason to depose the leader. Groups this node leads later start every progress afresh
//! anyway (raft's `become_leader`).
//!
//! Not reset: an incarnation of 0 (the sender did not say: an older node, a transport without
//! handshakes), and the first incarnation heard from a peer since this node started (its
//! groups' progress then is of this node's own leadership, which began after it started).
//! A batch still in flight from the old incarnation after the new one's first batch looks like
//! one more change and resets again; the new incarnation's next answer resets once more. That
//! costs a probe round, never safety: every reset only lowers what the leader counts.

use raft::StateRole;

use crate::observe::WakeReason;
use crate::transport::NodeId;

use super::Node;

impl<D: odradek_log::Disk, T, A> Node<D, T, A> {
    /// Notes that a batch from `from` came from its data directory's `incarnation`; resets the
    /// peer's progress in every group this node leads when that changed (module documentation).
    pub(super) fn note_incarnation(&mut self, from: NodeId, incarnation: u64) {
        if incarnation == 0 {
            return;
        }
        let Some(previous) = self.peer_incarnations.insert(from, incarnation) else { return };
        if previous == incarnation {
            return;
        }
        let mut reset = Vec::new();
        for (&group, state) in &mut self.groups {
            let raft = &mut state.raw.raft;
            if raft.state != StateRole::Leader {
                continue;
            }
            let Some(progress) = raft.mut_prs().get_mut(from) else { continue };
            progress.matched = 0;
            progress.committed_index = 0;
            // Probing from index 1, not from a snapshot the old incarnation was sent.
            progress.snapshot_failure();
            progress.become_probe();
            reset.push(group);
        }
        self.stats.progress_reset_rejoined += reset.len() as u64;
        tracing::info!(
            node = self.config.node_id,
            peer = from,
            previous,
            incarnation,
            groups = reset.len(),
            "a peer came back as a new incarnation: its progress in the groups this node leads starts over"
        );
        // A sleeping group's leader would not probe until something woke it.
        for group in reset {
            self.wake(group, WakeReason::Message(from));
        }
    }
}
