//! Protocol-aware recovery (CHECKLISTS R8 e): a replica whose recovery cut an entry it may have
//! acknowledged is suspect and votes it away to nobody; a replica whose group cannot open still
//! answers a suspect's queries.

use bytes::Bytes;
use odradek_consensus::{EntryMeta, GroupId, NodeId};
use odradek_log::{CrashMode, SimDisk};

use crate::harness::LocalCluster;

/// F-S3 on the last entry, R8 e (protocol-aware recovery). An entry commits on the leader and
/// one follower only; the follower's copy, its last entry, rots while it is down; the leader
/// goes down too. The follower's recovery cuts the entry like a torn write. Were it to vote as
/// usual, the third node (which never had the entry) would win with its vote and overwrite a
/// committed entry. Suspect, it neither votes nor campaigns, so there is no leader until the old
/// one returns; then the entry survives everywhere.
pub(crate) async fn rotted_last_entry(planted_trust_recovery_cut: bool) {
    let group = 3;
    let mut cluster = LocalCluster::new(41, 3, &[group]).await;
    cluster.planted_trust_recovery_cut = planted_trust_recovery_cut;
    cluster.elect_all().await;
    cluster.propose_and_commit(3, "before").await;
    cluster.converge().await;
    let leader = cluster.leader(group).unwrap();
    let others: Vec<NodeId> = cluster.voters.iter().copied().filter(|&id| id != leader).collect();
    let (follower, outsider) = (others[0], others[1]);

    // The outsider is cut off: the entry commits on the leader and the follower alone.
    let meta = EntryMeta::Data { record_count: 1, timestamp_max: 0 };
    let mut proposal = cluster.nodes.get_mut(&leader).unwrap().propose(group, Bytes::from("precious"), meta);
    let mut committed = None;
    for _ in 0..200 {
        cluster.step_isolating(outsider).await;
        if let Some(outcome) = proposal.try_outcome() {
            committed = Some(outcome.expect("commits on the leader and the follower").index);
            break;
        }
    }
    let index = committed.expect("the entry commits");
    cluster.run_until(50, |c| c.recorded.lock().unwrap().applied.get(&(leader, group)) == Some(&index)).await;
    assert_eq!(cluster.nodes[&follower].durable_state(group).unwrap().2, index, "the follower's last durable entry");

    // Both go down; the follower's last entry rots (one bit of its payload).
    cluster.crash(leader, CrashMode::PowerLoss);
    cluster.crash(follower, CrashMode::PowerLoss);
    let disk = cluster.disks[&follower].clone();
    let mut segments: Vec<_> = disk.files().into_iter().filter(|path| path.extension().is_some_and(|e| e == "log")).collect();
    segments.sort();
    let segment = segments.pop().expect("a segment");
    let length = disk.read_file(&segment).unwrap().len() as u64;
    disk.flip_bit(&segment, (length - 2) * 8);
    cluster.start(follower).await;
    let status = cluster.nodes[&follower].status(group).unwrap();
    assert_eq!(status.last_index, index - 1, "recovery cut the rotten entry");
    assert_eq!(status.suspect, !planted_trust_recovery_cut);

    // Only the follower and the outsider run: no leader may arise from the follower's vote.
    for _ in 0..300 {
        cluster.step().await;
    }
    if !planted_trust_recovery_cut {
        assert_eq!(cluster.leader(group), None, "a suspect replica gave its vote");
        assert!(cluster.nodes[&follower].stats().votes_refused_suspect > 0);
        assert!(cluster.nodes[&follower].status(group).unwrap().suspect);
    }

    // The leader returns: the group recovers with the entry.
    cluster.start(leader).await;
    cluster.elect_all().await;
    cluster.propose_and_commit(2, "after").await;
    cluster.converge().await;
    let recorded = cluster.recorded.lock().unwrap();
    assert_eq!(recorded.canonical[&(group, index)].payload, Bytes::from("precious"));
    drop(recorded);
    let follower_status = cluster.nodes[&follower].status(group).unwrap();
    assert!(!follower_status.suspect, "the suspicion clears once the log holds the lost range again");
    assert!(cluster.nodes[&follower].stats().suspicions_cleared >= u64::from(!planted_trust_recovery_cut));
}

/// The last segment file of `group` on `disk`.
fn last_segment(disk: &SimDisk, group: GroupId) -> std::path::PathBuf {
    let dir = format!("/data/{group}/");
    let mut segments: Vec<_> =
        disk.files().into_iter().filter(|path| path.starts_with(&dir) && path.extension().is_some_and(|e| e == "log")).collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// R8 b and e together (disk seed 51 of the simulator): one replica's log rots in the middle, so
/// its group refuses to open; another's last entry rots, so it is suspect. The third replica
/// alone holds the group intact. The suspect's bound from its cut bytes lies past every log, and
/// the leader it needs cannot be elected without its vote, so without an answer from the
/// replica that cannot open, nothing moves. That replica answers with the highest intact index
/// in its files; the suspect's bound drops to what the healthy replica holds, it votes for it,
/// and its log fills and settles.
#[tokio::test]
async fn a_replica_whose_group_cannot_open_still_answers_a_suspect() {
    let group = 3;
    let mut cluster = LocalCluster::new(43, 3, &[group]).await;
    cluster.elect_all().await;
    cluster.propose_and_commit(6, "before").await;
    // A large last entry: the cut bytes could hold dozens of entries, so the suspect's own bound
    // lies far past every log.
    let meta = EntryMeta::Data { record_count: 1, timestamp_max: 0 };
    let mut large = cluster.propose(group, "x".repeat(4000), meta);
    cluster.run_until(200, |_| large.try_outcome().is_some()).await;
    cluster.converge().await;
    let healthy = cluster.leader(group).unwrap();
    let others: Vec<NodeId> = cluster.voters.iter().copied().filter(|&id| id != healthy).collect();
    let (broken, suspect) = (others[0], others[1]);
    for id in [broken, suspect] {
        cluster.crash(id, CrashMode::PowerLoss);
    }
    // Mid-log rot: a payload bit of the first entry (valid entries follow it).
    let disk = cluster.disks[&broken].clone();
    disk.flip_bit(&last_segment(&disk, group), (odradek_log::SEGMENT_HEADER_BYTES + 60) * 8);
    let disk = cluster.disks[&suspect].clone();
    let segment = last_segment(&disk, group);
    let length = disk.read_file(&segment).unwrap().len() as u64;
    disk.flip_bit(&segment, (length - 2) * 8);
    cluster.broken.insert(broken);
    cluster.start(broken).await;
    cluster.start(suspect).await;
    assert!(cluster.nodes[&broken].status(group).is_none(), "the corrupted group stays closed");
    assert!(cluster.nodes[&suspect].status(group).unwrap().suspect);
    cluster
        .run_until(500, |c| {
            let settled = !c.nodes[&suspect].status(group).unwrap().suspect;
            settled && c.leader(group).is_some()
        })
        .await;
    assert_eq!(cluster.nodes[&suspect].stats().suspicions_cleared, 1);
}

#[tokio::test]
async fn a_replica_whose_acknowledged_last_entry_rotted_does_not_vote_it_away() {
    rotted_last_entry(false).await;
}

/// Issue 19, defect 3: a follower's data directory is replaced by an older copy of itself while
/// it is down. The leader still counts the follower's acknowledgements past the copy, so its
/// heartbeat carries a commit beyond the follower's log, on which raft-rs aborted ("to_commit
/// N is out of range [last_index M]"). The follower turns suspect instead: its new term deposes
/// that leader, it gives no vote while the third replica is down (so no leader arises), and
/// once that replica is back it catches up from a leader elected without its vote, settles, and
/// every acknowledged entry is still there.
#[tokio::test]
async fn a_replica_restored_from_an_older_copy_turns_suspect_and_catches_up() {
    let group = 3;
    let mut cluster = LocalCluster::new(47, 3, &[group]).await;
    cluster.elect_all().await;
    let early = cluster.propose_and_commit(4, "early").await;
    cluster.converge().await;
    let leader = cluster.leader(group).unwrap();
    let others: Vec<NodeId> = cluster.voters.iter().copied().filter(|&id| id != leader).collect();
    let (restored, third) = (others[0], others[1]);
    let copy = cluster.disks[&restored].image();
    let later = cluster.propose_and_commit(12, "later").await;
    cluster.converge().await;
    let acknowledged = cluster.nodes[&restored].status(group).unwrap().last_index;
    assert_eq!(cluster.nodes[&leader].status(group).unwrap().progress[&restored].0, acknowledged);

    cluster.crash(restored, CrashMode::Process);
    cluster.crash(third, CrashMode::Process);
    cluster.restore_disk(restored, &copy);
    cluster.start(restored).await;
    let behind = cluster.nodes[&restored].status(group).unwrap().last_index;
    assert!(behind < acknowledged, "the copy is older: {behind} < {acknowledged}");
    for _ in 0..300 {
        cluster.step().await;
    }
    let status = cluster.nodes[&restored].status(group).unwrap();
    assert!(status.suspect, "the restored replica holds itself suspect: {status:?}");
    assert_eq!(cluster.nodes[&restored].stats().logs_found_behind, 1);
    assert_eq!(cluster.leader(group), None, "a leader arose with the vote of a replica that lost acknowledged entries");
    assert!(cluster.nodes[&restored].stats().votes_refused_suspect > 0);

    cluster.start(third).await;
    cluster.elect_all().await;
    assert_ne!(cluster.leader(group), Some(restored));
    let after = cluster.propose_and_commit(3, "after").await;
    cluster.converge().await;
    let status = cluster.nodes[&restored].status(group).unwrap();
    assert!(!status.suspect, "the suspicion settles once the log holds what the others hold: {status:?}");
    assert!(status.last_index >= acknowledged);
    let checks = cluster.recorded.lock().unwrap();
    for (index, term) in early.iter().chain(&later).chain(&after) {
        let entry = &checks.canonical[&(group, *index)];
        assert_eq!(entry.term, *term, "acknowledged entry {index} was replaced");
        assert!(checks.applied[&(restored, group)] >= *index, "the restored replica applied {index}");
    }
}
