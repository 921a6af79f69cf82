//! Repair of a damaged replica in the metadata log (issue 15, CHECKLISTS R8 d, F-S3): a
//! partition replica whose files do not open (a group quarantined after both copies of its
//! state are damaged, a log that fails to open) is rebuilt on its node under a new identity,
//! as a wiped node's replicas are (`crate::repair` carries it out). The metadata records each
//! repair so that the node, the partition's leader and `cluster status` agree on where it is:
//!
//! 1. [`RepairStep::Reported`]: the node reports the replica. A partition with no other
//!    replica is recorded [`RepairPhase::Blocked`]: its damaged files are its only copy, never
//!    reset; the replica stays down and `cluster status` shows it. Otherwise
//!    [`RepairPhase::Waiting`].
//! 2. [`RepairStep::Ready`]: the partition's leader found every other voter caught up to its
//!    commit index: every committed entry is on each of them, so the damaged copy holds nothing
//!    the group needs. [`RepairPhase::Rebuilding`]: the node sets the damaged files aside
//!    (kept for forensics) and rebuilds the replica empty, suspect of its whole log (no vote,
//!    no campaign) until the other voters' answers show it holds everything.
//! 3. [`RepairStep::Done`]: the leader found the rebuilt replica caught up to its commit
//!    index. The repair is forgotten and counted ([`MetadataState::repairs_completed`]).
//!
//! The metadata group's own replica on a node is repaired the same way, recorded under
//! [`METADATA_GROUP`] (`crate::meta_repair` carries it out): the damaged node cannot read the
//! metadata, so it sends its steps through any peer, and the controller (the metadata leader)
//! records `Ready` only once every other metadata voter holds its commit index. Never blocked
//! (a metadata group of one voter has no peer to ask); one at a time, as for a partition.
//!
//! Invariants (checked by [`MetadataState::check_repair_invariants`] after every apply): at
//! most one repair per partition group; a repaired replica is one of its partition's replicas
//! (a metadata replica: its node is not removed);
//! no partition repairs while it moves (a reassignment is refused while a repair runs and the
//! other way round: the leader never drives two changes of one group). A step that does not
//! follow the one before is refused and changes nothing but the applied index; a step repeated
//! (a retry after an indefinite answer) is accepted and changes nothing.

use odradek_consensus::{GroupId, LeadRefusals, NodeId};

use super::{MetaOutcome, MetadataState, METADATA_GROUP};

/// A step of a repair, as the metadata command carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairStep {
    Reported,
    Ready,
    Done,
}

impl RepairStep {
    pub fn code(self) -> u32 {
        match self {
            RepairStep::Reported => 1,
            RepairStep::Ready => 2,
            RepairStep::Done => 3,
        }
    }

    pub fn from_code(code: u32) -> Option<RepairStep> {
        match code {
            1 => Some(RepairStep::Reported),
            2 => Some(RepairStep::Ready),
            3 => Some(RepairStep::Done),
            _ => None,
        }
    }
}

/// Where a recorded repair stands (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairPhase {
    /// The partition's only replica: kept down, never reset.
    Blocked,
    /// Waiting for the leader to find every other voter caught up.
    Waiting,
    /// The damaged files are set aside; the rebuilt replica catches up out of the votes.
    Rebuilding,
}

impl RepairPhase {
    pub fn name(self) -> &'static str {
        match self {
            RepairPhase::Blocked => "blocked",
            RepairPhase::Waiting => "waiting",
            RepairPhase::Rebuilding => "rebuilding",
        }
    }
}

/// A recorded repair: the node whose replica is damaged and the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair {
    pub node: NodeId,
    pub phase: RepairPhase,
}

impl MetadataState {
    /// The repair of `group`'s replica, if one is recorded.
    pub fn repair(&self, group: GroupId) -> Option<Repair> {
        self.repairs.get(&group).copied()
    }

    /// Every recorded repair, by partition group.
    pub fn repairs(&self) -> &std::collections::BTreeMap<GroupId, Repair> {
        &self.repairs
    }

    /// Repairs done since the cluster started.
    pub fn repairs_completed(&self) -> u64 {
        self.repairs_completed
    }

    /// Checks a repair step before it is proposed (and again when it applies): why it cannot
    /// apply, or `Ok(true)` when it changes the state (`Ok(false)`: a repeat, nothing to do).
    pub fn check_repair(&self, group: GroupId, node: NodeId, step: RepairStep) -> Result<bool, String> {
        if group == METADATA_GROUP {
            if node == 0 || self.removed.contains(&node) {
                return Err(format!("node {node} is no member of the cluster: it has no metadata replica to repair"));
            }
        } else {
            let Some((_, info)) = self.partition_of_group(group) else {
                return Err(format!("no partition group {group}"));
            };
            if !info.replicas.contains(&node) {
                return Err(format!("node {node} holds no replica of partition group {group} (replicas {:?})", info.replicas));
            }
        }
        let recorded = self.repairs.get(&group).copied();
        match (step, recorded) {
            (_, Some(repair)) if repair.node != node => {
                Err(format!("partition group {group} is repairing its replica on node {} already; one repair at a time", repair.node))
            }
            (RepairStep::Reported, Some(_)) => Ok(false),
            (RepairStep::Reported, None) if group == METADATA_GROUP => Ok(true),
            (RepairStep::Reported, None) => match self.reassignments.get(&group) {
                Some(target) => Err(format!("partition group {group} is moving to {target:?}; its replica is repaired after the move")),
                None => Ok(true),
            },
            (RepairStep::Ready, Some(Repair { phase: RepairPhase::Waiting, .. })) => Ok(true),
            (RepairStep::Ready, Some(Repair { phase: RepairPhase::Rebuilding, .. })) => Ok(false),
            (RepairStep::Done, Some(Repair { phase: RepairPhase::Rebuilding, .. })) => Ok(true),
            (RepairStep::Done, None) => Ok(false),
            (step, recorded) => Err(format!("repair step {step:?} of node {node}'s replica of group {group} after {recorded:?}")),
        }
    }

    pub(super) fn repair_replica(&mut self, group: GroupId, node: NodeId, step: RepairStep) -> MetaOutcome {
        match self.check_repair(group, node, step) {
            Err(reason) => return MetaOutcome::Rejected(reason),
            Ok(false) => return MetaOutcome::RepairStepped,
            Ok(true) => {}
        }
        match step {
            RepairStep::Reported => {
                // (The metadata group's replica is never blocked: see the module documentation.)
                let only_replica = self.partition_of_group(group).is_some_and(|(_, info)| info.replicas.len() < 2);
                let phase = if only_replica { RepairPhase::Blocked } else { RepairPhase::Waiting };
                self.repairs.insert(group, Repair { node, phase });
            }
            RepairStep::Ready => {
                self.repairs.insert(group, Repair { node, phase: RepairPhase::Rebuilding });
            }
            RepairStep::Done => {
                self.repairs.remove(&group);
                self.repairs_completed += 1;
            }
        }
        MetaOutcome::RepairStepped
    }

    /// Forgets the repair of a deleted partition group.
    pub(super) fn forget_repair(&mut self, group: GroupId) {
        self.repairs.remove(&group);
    }

    /// Forgets the repair of a removed node's metadata replica.
    pub(super) fn forget_metadata_repair_of(&mut self, node: NodeId) {
        if self.repairs.get(&METADATA_GROUP).is_some_and(|repair| repair.node == node) {
            self.repairs.remove(&METADATA_GROUP);
        }
    }

    /// Why `node` must not be handed the leadership of `group` now, if it must not: its
    /// metadata replica is being repaired (the node is quarantined, serving no client and
    /// leading nothing, or still catching up the metadata it rebuilds), or its replica of
    /// `group` is (the files do not open, or the rebuilt replica is suspect of its whole log).
    /// Such a replica drops a leadership hand-over, so a transfer to it stalls the group's
    /// proposals for an election timeout (controller leader balancing and `leader transfer`
    /// skip it: issue 15).
    pub fn leadership_refusal(&self, group: GroupId, node: NodeId) -> Option<String> {
        if let Some(repair) = self.metadata_repair().filter(|repair| repair.node == node) {
            return Some(format!(
                "node {node}'s metadata replica is being repaired ({}): it leads nothing until then",
                repair.phase.name()
            ));
        }
        let repair = self.repair(group).filter(|repair| repair.node == node)?;
        Some(format!("node {node}'s replica of group {group} is being repaired ({}): it cannot lead yet", repair.phase.name()))
    }

    /// Every replica [`MetadataState::leadership_refusal`] names, for the consensus node's own
    /// hand-overs (a graceful shutdown's drain, a node low on disk), which cannot read the
    /// metadata: a node whose metadata replica is being repaired leads nothing, a replica being
    /// repaired leads not its group.
    pub fn lead_refusals(&self) -> LeadRefusals {
        let mut refusals = LeadRefusals::default();
        for (&group, repair) in &self.repairs {
            if group == METADATA_GROUP {
                refusals.nodes.insert(repair.node);
            } else {
                refusals.replicas.insert((group, repair.node));
            }
        }
        refusals
    }

    /// The repair of a node's metadata replica, if one is recorded.
    pub fn metadata_repair(&self) -> Option<Repair> {
        self.repair(METADATA_GROUP)
    }

    pub(super) fn check_repair_invariants(&self) {
        for (&group, repair) in &self.repairs {
            if group == METADATA_GROUP {
                assert!(!self.removed.contains(&repair.node), "a removed node {} repairs its metadata replica", repair.node);
                assert_ne!(repair.phase, RepairPhase::Blocked, "a metadata replica's repair is never blocked");
                continue;
            }
            let (_, info) = self.partition_of_group(group).expect("a repaired group is a live partition");
            assert!(info.replicas.contains(&repair.node), "group {group} repairs node {} outside its replicas", repair.node);
            assert!(!self.reassignments.contains_key(&group), "group {group} repairs a replica while it moves");
        }
    }
}
