//! The state machine's admission hook ([`Apply::admit`]) and leader-log durability
//! ([`Durability::LeaderLog`], acks=1), on a single-voter group where every round commits.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use odradek_consensus::{
    Appended, Apply, Committed, Durability, EntryMeta, GroupId, LocalNetwork, Node, NodeConfig, ProposeError, Rejection,
};
use odradek_log::SimDisk;

#[derive(Default)]
struct Log {
    admitted: Vec<(GroupId, u64, Bytes)>,
    undone: usize,
    applied: Vec<(u64, u64, Bytes)>,
}

/// Refuses payloads starting with "bad"; records what it admits and applies.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<Log>>);

impl Apply for Gate {
    fn apply(&mut self, _group: GroupId, entries: &[Committed]) {
        let mut log = self.0.lock().unwrap();
        log.applied.extend(entries.iter().filter(|e| !e.payload.is_empty()).map(|e| (e.index, e.base_offset, e.payload.clone())));
    }
    fn restore(&mut self, _group: GroupId, _index: u64, _term: u64, _offset_next: u64, _start: Option<&odradek_log::StartState>) {}
    fn admit(&mut self, group: GroupId, term: u64, data: &Bytes, _meta: EntryMeta) -> Result<(), Rejection> {
        if data.starts_with(b"bad") {
            return Err(Rejection { code: 7, value: data.len() as u64, reason: "bad payload".into() });
        }
        self.0.lock().unwrap().admitted.push((group, term, data.clone()));
        Ok(())
    }
    fn admit_undone(&mut self, _group: GroupId) {
        self.0.lock().unwrap().undone += 1;
    }
}

async fn single_node(gate: Gate) -> Node<SimDisk, odradek_consensus::LocalTransport, Gate> {
    let network = LocalNetwork::new();
    let (transport, inbox) = network.attach(1);
    let mut node = Node::new(NodeConfig::new(1, "/data"), SimDisk::new(1), transport, inbox, gate);
    node.create_group(5, &[1], 0, 0).await.unwrap();
    node.campaign(5).unwrap();
    for _ in 0..5 {
        node.round(0).await.unwrap();
    }
    assert_eq!(node.status(5).unwrap().leader, 1, "a single voter elects itself");
    node
}

fn data(records: u32) -> EntryMeta {
    EntryMeta::Data { record_count: records, timestamp_max: 0 }
}

#[tokio::test]
async fn a_rejected_proposal_never_reaches_raft_and_says_why() {
    let gate = Gate::default();
    let mut node = single_node(gate.clone()).await;
    let last_before = node.status(5).unwrap().last_index;
    let mut refused = node.propose(5, Bytes::from_static(b"bad batch"), data(1));
    let rejection = Rejection { code: 7, value: 9, reason: "bad payload".into() };
    assert_eq!(refused.try_outcome(), Some(Err(ProposeError::Rejected { group: 5, rejection })));
    assert!(refused.try_outcome().is_none(), "an outcome is taken once");
    node.round(0).await.unwrap();
    assert_eq!(node.status(5).unwrap().last_index, last_before, "nothing appended");
    assert!(ProposeError::Rejected { group: 5, rejection: Rejection { code: 0, value: 0, reason: String::new() } }.is_definite());

    let mut accepted = node.propose(5, Bytes::from_static(b"good"), data(3));
    for _ in 0..3 {
        node.round(0).await.unwrap();
    }
    let Some(Ok(Appended { index, base_offset, .. })) = accepted.try_outcome() else { panic!("the admitted proposal commits") };
    let log = gate.0.lock().unwrap();
    assert_eq!(log.admitted.len(), 1);
    assert_eq!(log.applied, vec![(index, base_offset, Bytes::from_static(b"good"))]);
}

#[tokio::test]
async fn leader_log_durability_resolves_with_the_offsets_the_log_assigned() {
    let gate = Gate::default();
    let mut node = single_node(gate.clone()).await;
    let mut first = node.propose_with(5, Bytes::from_static(b"a"), data(4), Durability::LeaderLog);
    let mut second = node.propose_with(5, Bytes::from_static(b"b"), data(2), Durability::LeaderLog);
    let mut third = node.propose(5, Bytes::from_static(b"c"), data(1));
    assert!(first.try_outcome().is_none(), "nothing is durable before a round");
    node.round(0).await.unwrap();
    let first = first.try_outcome().expect("durable after the round's fsync").unwrap();
    let second = second.try_outcome().expect("durable after the round's fsync").unwrap();
    assert_eq!(second.base_offset, first.base_offset + 4, "offsets follow record counts");
    assert_eq!(second.index, first.index + 1);
    for _ in 0..3 {
        node.round(0).await.unwrap();
    }
    let third = third.try_outcome().expect("committed").unwrap();
    assert_eq!(third.base_offset, second.base_offset + 2);
    let applied = gate.0.lock().unwrap().applied.clone();
    let positions: Vec<(u64, u64)> = applied.iter().map(|(index, offset, _)| (*index, *offset)).collect();
    assert_eq!(positions, vec![(first.index, first.base_offset), (second.index, second.base_offset), (third.index, third.base_offset)]);
}

#[tokio::test]
async fn raft_refusing_an_admitted_proposal_undoes_the_admission() {
    let gate = Gate::default();
    let mut node = single_node(gate.clone()).await;
    // Raft refuses proposals beyond RAFT_UNCOMMITTED_BYTES_MAX (64 MiB) of uncommitted payload.
    let big = Bytes::from(vec![1u8; 16 * 1024 * 1024]);
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        let mut proposal = node.propose(5, big.clone(), data(1));
        outcomes.push(proposal.try_outcome());
    }
    let refused = outcomes.iter().filter(|o| matches!(o, Some(Err(ProposeError::Busy { .. })))).count();
    assert!(refused >= 1, "raft refuses some: {outcomes:?}");
    let log = gate.0.lock().unwrap();
    assert_eq!((log.admitted.len(), log.undone), (6, refused), "every refusal after admission is undone");
}

#[tokio::test]
async fn destroying_a_group_stops_it_and_deletes_its_files() {
    use odradek_log::Disk;
    let network = LocalNetwork::new();
    let (transport, inbox) = network.attach(1);
    let disk = SimDisk::new(3);
    let mut node = Node::new(NodeConfig::new(1, "/data"), disk.clone(), transport, inbox, Gate::default());
    node.create_group(5, &[1], 0, 0).await.unwrap();
    node.create_group(6, &[1], 0, 0).await.unwrap();
    node.campaign(5).unwrap();
    let mut proposal = node.propose(5, Bytes::from_static(b"x"), data(1));
    for _ in 0..5 {
        node.round(0).await.unwrap();
    }
    assert!(proposal.try_outcome().is_some());
    assert!(!disk.list_dir(std::path::Path::new("/data/5")).await.unwrap().is_empty());
    assert!(!disk.list_dir(std::path::Path::new("/data/5/log")).await.unwrap().is_empty());
    assert!(node.destroy_group(5).await.unwrap(), "it was hosted");
    assert!(node.status(5).is_none());
    assert_eq!(disk.list_dir(std::path::Path::new("/data/5")).await.unwrap(), Vec::<String>::new());
    assert_eq!(disk.list_dir(std::path::Path::new("/data/5/log")).await.unwrap(), Vec::<String>::new(), "segments too");
    assert!(!disk.list_dir(std::path::Path::new("/data/6")).await.unwrap().is_empty(), "other groups keep their files");
    assert!(!node.destroy_group(5).await.unwrap(), "destroying twice is harmless");
}

/// A stray replica (stored, not hosted, not kept: its topic was deleted or it moved away while
/// the node was down) loses its files at the next start; hosted and kept groups keep theirs,
/// and a directory emptied by an earlier deletion is no stray.
#[tokio::test]
async fn stray_groups_are_destroyed_and_the_rest_kept() {
    use odradek_log::Disk;
    let network = LocalNetwork::new();
    let (transport, inbox) = network.attach(1);
    let disk = SimDisk::new(3);
    let mut node = Node::new(NodeConfig::new(1, "/data"), disk.clone(), transport, inbox, Gate::default());
    for group in [5, 6, 7] {
        node.create_group(group, &[1], 0, 0).await.unwrap();
    }
    for _ in 0..3 {
        node.round(0).await.unwrap();
    }
    // Groups 5 and 7 stop being hosted without a deletion (as after a restart that does not
    // open them); 7 is still the node's (kept), 5 is not.
    assert!(node.remove_group(5) && node.remove_group(7));
    let files = |group: u64| {
        let disk = disk.clone();
        async move { disk.list_dir(std::path::Path::new(&format!("/data/{group}"))).await.unwrap_or_default() }
    };
    assert!(!files(5).await.is_empty() && !files(7).await.is_empty());
    // 6 is hosted, 7 is kept: only 5 goes.
    let keep = std::collections::BTreeSet::from([7]);
    assert_eq!(node.destroy_stray_groups(&keep).await.unwrap(), vec![5]);
    assert!(files(5).await.is_empty(), "the stray's files are deleted");
    assert!(!files(6).await.is_empty() && !files(7).await.is_empty(), "hosted and kept groups keep theirs");
    assert_eq!(node.destroy_stray_groups(&keep).await.unwrap(), Vec::<u64>::new(), "an emptied directory is no stray");
}
