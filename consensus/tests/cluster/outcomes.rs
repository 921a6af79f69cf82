//! Indefinite proposal outcomes (`LeadershipLost`) resolved once their index is applied.

use odradek_consensus::{EntryMeta, GroupId, NodeId, ProposeError};
use raft::StateRole;

use crate::harness::Cluster;

impl Cluster {
    /// One step in which every message from or to `node` is lost, except those from it when
    /// `outbound` is set (a one-way cut: it talks, nobody answers).
    async fn step_cut_off(&mut self, node: NodeId, outbound: bool) {
        self.round_all().await;
        for envelope in self.network.take_in_flight() {
            let cut = envelope.to == node || (envelope.from == node && !outbound);
            if !cut {
                self.network.deliver(envelope);
            }
        }
    }

    /// Proposes on `group`'s leader, which then loses touch with the others until another node
    /// leads and it has stepped down; with `reach_followers` its entry reaches the followers
    /// first. Returns the old leader and the (indefinite) outcome, after healing.
    async fn propose_then_cut_off_the_leader(&mut self, group: GroupId, reach_followers: bool) -> (NodeId, ProposeError) {
        let old = self.leader(group).expect("a leader");
        let mut proposal = self.propose(group, format!("cut off, reaching followers: {reach_followers}"), EntryMeta::Command);
        if reach_followers {
            // The append leaves; the followers' answers do not come back.
            self.step_cut_off(old, true).await;
        }
        for _ in 0..CUT_OFF_STEPS_MAX {
            let replaced = self.leader(group).is_some_and(|leader| leader != old);
            if replaced && self.nodes[&old].status(group).unwrap().role != StateRole::Leader {
                break;
            }
            self.step_cut_off(old, false).await;
        }
        let error = proposal.try_outcome().expect("resolved when leadership was lost").unwrap_err();
        assert!(matches!(error, ProposeError::LeadershipLost { .. }) && !error.is_definite(), "{error}");
        // Heal: the new leader commits something, the old one catches up and applies it.
        self.commit_one_eventually(group).await;
        self.converge().await;
        (old, error)
    }
}

/// Steps a cut-off leader gets to step down while the others elect a new one.
const CUT_OFF_STEPS_MAX: usize = 500;

/// Issue 3 item 5: a proposal that failed indefinitely (`LeadershipLost`) resolves once its
/// node applies the index: a success when the entry committed there is the proposal's (it
/// reached the followers, which committed it under the new leader), a definite failure when
/// another one is (it never left the old leader).
#[tokio::test]
async fn an_indefinite_outcome_resolves_when_its_index_is_applied() {
    let mut cluster = Cluster::new(29, 3, &[8]).await;
    cluster.elect_all().await;
    cluster.propose_and_commit(2, "before").await;
    cluster.converge().await;
    for reach_followers in [true, false] {
        let resolved_before = cluster.recorded.lock().unwrap().resolved.len();
        let (old, error) = cluster.propose_then_cut_off_the_leader(8, reach_followers).await;
        let ProposeError::LeadershipLost { group, index, term } = error else { unreachable!("checked") };
        let recorded = cluster.recorded.lock().unwrap();
        // `check_resolved` took it from the old leader and checked it against the canonical entry.
        let resolved = &recorded.resolved[resolved_before..];
        let outcome = resolved.iter().find(|r| (r.group, r.index, r.term) == (group, index, term));
        let outcome = outcome.unwrap_or_else(|| panic!("node {old}: {error} never resolved; resolved {resolved:?}"));
        let canonical = &recorded.canonical[&(group, index)];
        if reach_followers {
            assert_eq!(outcome.outcome.as_ref().map(|a| (a.index, a.term)), Ok((index, term)), "{canonical:?}");
            assert_eq!(&canonical.payload[..], b"cut off, reaching followers: true");
        } else {
            assert_eq!(outcome.outcome, Err(ProposeError::Superseded { group, index }), "{canonical:?}");
            assert_ne!(canonical.term, term);
        }
    }
}
