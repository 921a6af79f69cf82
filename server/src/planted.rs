//! Planted bugs: deliberate breakages the checkers must catch (CHECKLISTS.md "planted bugs"),
//! compiled only into simulation builds (`--cfg madsim`) and builds with the `planted-bugs`
//! feature (the Jepsen harness's teeth test). A normal build has no way to turn one on.
//!
//! A node names its bugs in its config ([`PlantedBug`], by the names the CLI and the simulator
//! use); [`ServerConfig::planted_switches`](crate::config::ServerConfig::planted_switches) turns
//! that list into one [`Planted`] value at start, and the code reads the switch it needs. In a
//! normal build the config has no list, and every switch is off.

use std::str::FromStr;

use serde::Deserialize;

/// One deliberate breakage of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlantedBug {
    /// acks=all is answered once the leader's own log has the batch (acks=1 semantics): an
    /// acknowledged write can be lost when the leader dies (L1 lost write).
    AckBeforeCommit,
    /// Fetch reads up to the end of the local log instead of what is applied: consumers can
    /// see writes that are later truncated (L12, G1a-like aborted reads).
    ServeAboveCommit,
    /// The leader skips the idempotent-producer check: retries are appended again (L6/P2).
    SkipDedup,
    /// A leader deposed while a batch it appended was still replicating answers that produce as
    /// a success (with its own log's end as the offset) instead of LEADERSHIP_LOST: the new
    /// leader may have overwritten the batch, so an acknowledged write is lost (L6/L7, L1).
    StaleLeaderServesProduce,
    /// Followers send append acknowledgements and votes before the round's fsync (breaks R6 in
    /// the consensus crate): a power loss right after can lose an entry a quorum acknowledged.
    FollowerAcksBeforePersist,
    /// The log never fsyncs but says it did: every acknowledgement (own log, votes, append
    /// responses) runs ahead of the disk, and a power loss forgets committed entries.
    AckBeforeFsync,
    /// A failed fsync is logged and ignored instead of stopping the node (fsyncgate): entries it
    /// covered count as durable but may be lost at the next power loss.
    IgnoreFsyncError,
    /// Recovery cuts the log at any damaged entry as if it were a torn tail, dropping the valid
    /// entries after it (R8 b): a replica silently loses committed entries after a bit flip.
    TruncateMidLogCorruption,
    /// A replica whose recovery cut a damaged last entry takes it for a torn write it never
    /// acknowledged and votes as before, though bit rot may have taken an entry it did
    /// acknowledge (R8 e: no protocol-aware recovery).
    TrustRecoveryCut,
    /// A suspect replica grants its vote to a candidate whose log ends in a recent enough term,
    /// without checking that its last index reaches the suspicion's bound: it can elect a
    /// candidate that lacks an entry committed with its lost acknowledgement (R8 e).
    SuspectVoteByTermOnly,
    /// A replica's recovery drops a damaged tail without recording the cut or holding itself
    /// suspect: entries it reported durable vanish silently (R6 across a restart).
    SilentRecoveryCut,
    /// The group coordinator takes an offset commit from a member of an older generation or
    /// member epoch (rewriting it to the current one): a zombie member moves the group's
    /// position (C5).
    AcceptStaleCommit,
    /// A new group coordinator answers before it applied its log, and offset reads skip their
    /// barrier: a fetch of committed offsets can miss an acknowledged commit (C1, C3).
    CoordinatorAnswersBeforeReplay,
    /// The consumer protocol hands a member its target partitions while another member still
    /// owns them: one partition, two owners in one generation.
    AssignmentTwoOwners,
    /// Produce skips its authorization check (write on the topic): any principal, even an
    /// unauthenticated one, appends to any topic (A1: no unauthorized operation takes effect).
    SkipProduceAclCheck,
    /// A node whose data directory is a new incarnation (wiped) takes every empty log for a
    /// new replica and votes at once, as its old identity: its vote can elect a candidate that
    /// lacks entries committed with its old self's acknowledgements (R8 d).
    WipedNodeKeepsIdentity,
    /// The controller's reconciler hosts only the partitions a topic had when the node first
    /// saw it: partitions added later have replicas in the metadata and nobody hosting them,
    /// so they never elect a leader (placement, PL1: new partitions are served).
    AddedPartitionsUnhosted,
    /// A reassignment promotes its learners to voters at once, without waiting for them to
    /// catch up (R11: a voter added by a reassignment holds everything committed when promoted).
    LearnerPromotedEarly,
    /// A reassignment removes the voters outside its target one simple change at a time before
    /// it promotes the learners that replace them: on the way the group has fewer voters than
    /// its replication factor, so one kill leaves it without a quorum of live voters (R10 b).
    RemovalLeavesNoQuorum,
    /// DeleteRecords moves only the leader's own log start, in memory, and is acknowledged
    /// without going through the partition's raft log: the other replicas (and the leader after
    /// a restart) still serve the records, so after a leader change a consumer reads below an
    /// acknowledged deletion (the simulator's delete-records check, plan field `delete_records`).
    DeleteRecordsNotReplicated,
    /// Fetch skips the read barrier a consumer asked for (`fresh_high_watermark`): a follower,
    /// or a deposed or new leader, reports a high watermark older than an acknowledgement that
    /// completed before the poll began (L12 a).
    ReadBarrierSkipped,
    /// DeleteTopics is answered as soon as the deletion is proposed, without waiting for it to
    /// commit: a deletion lost to a leader change is acknowledged, and the topic (with every
    /// record it held) lives on under its name (DT1, the simulator's topic churn).
    DeleteTopicUncommitted,
    /// A node that does not host a group's offsets partition names the partition's preferred
    /// replica as the coordinator (FindCoordinator and NOT_COORDINATOR hints), even when that is
    /// itself: a preferred replica whose copy cannot be opened sends clients back to itself, and
    /// the group's offsets go unanswered (V3; groups seed 175 with `--membership`).
    CoordinatorNamesPreferred,
    /// A hard-state copy is read without checking its CRC: after rot or a torn write in one
    /// copy, the damaged copy can win over the intact one, and the replica reopens with a term
    /// or vote it never saved, forgetting a vote it gave (R8 c; the simulator's plan field
    /// `state_faults` damages single copies).
    HardStateUncheckedCrc,
    /// The repair of a damaged replica (issue 15, `crate::repair`) is reported done as soon as
    /// the rebuilt replica opens, before it caught up (still suspect of its whole log): the
    /// controller, `cluster status` and the metrics call a partition whole while one of its
    /// replicas holds nothing yet (R8 d; the simulator's plan field `state_faults`).
    RepairDoneBeforeCaughtUp,
    /// A leader drops the snapshot a follower behind its log start needs (as if it sent the
    /// entries retention deleted): the follower never catches up (R12 b; the simulator's plan
    /// field `retention`).
    SnapshotWithheld,
    /// A hard-state save writes its copies but skips their fdatasyncs and reports success: a
    /// replica grants a vote (or moves to a new term) that is not on its disk, so a power loss
    /// lets it vote again in that term (R6: the simulator checks every granted vote against
    /// the hard state its disk holds durably at that moment).
    HardStateSavedWithoutSync,
    /// A start-state save (the producer table retention keeps, `odradek_log::StartStateFile`)
    /// skips its fdatasync and directory sync and reports success: retention then deletes the
    /// segments that built the table before the table is on the disk, so a power loss (or a
    /// rename the disk drops) reopens the replica without it (R12 d: the simulator checks the
    /// record its disk holds durably whenever a log start moves; the plan field `state_faults`
    /// with `retention` loses start-state renames).
    StartStateSavedWithoutSync,
    /// Retention deletes segments up to the log's end instead of the persisted commit: entries
    /// not yet committed (or not yet applied) can be deleted (R12 a; the simulator's plan field
    /// `retention`).
    RetentionPastCommit,
    /// A sleeping leader answers a read barrier from its own commit index without waking or
    /// asking a quorum (`odradek_consensus` module `hibernate`): deposed while asleep, it reports
    /// a high watermark older than an acknowledgement that completed before the poll began
    /// (L12 a; the simulator's flag `--hibernate`).
    HibernatedLeaderReadsLocally,
    /// The coordinator matches a member's subscribed regex anywhere in a topic's name instead
    /// of against the whole name (`find` for `matches`): a member subscribed to `t` is handed
    /// the partitions of `decoy-t` (C8; the simulator's plan field `regex`).
    RegexMatchesSubstring,
    /// The open-file budget (`max_open_files`, DESIGN.md "Open-file budget") evicts a file with
    /// unsynced writes, closing it without a sync: a later sync on the reopened file succeeds
    /// while the evicted writes never became durable (fsyncgate), so an acknowledged write can
    /// vanish at power loss (L1, R6; the simulator's `--open-file-budget`).
    EvictedWithoutSync,
    /// Retention deletes segments without saving the idempotent-producer table as the group's
    /// start state (the behaviour before it was kept): after a restart (or a snapshot) the
    /// table is rebuilt from the entries left, so a producer whose batches were all deleted is
    /// forgotten and a late retry of its first batch is appended again (L2 duplicate, P1; the
    /// simulator's plan field `retention`).
    ProducerTableNotKept,
    /// The controller removes a decommissioned node (`RemoveNode`) once it left the controller
    /// voters, without waiting for its replicas to move away (`meta::members::check_remove`
    /// looks only at running moves): partitions still name the removed node, which no longer
    /// runs, so each is left with fewer live replicas than its replication factor (V6; the
    /// simulator's `--grow-shrink`).
    DecommissionBeforeReplicasMoved,
    /// OffsetDelete skips its subscription check: the coordinator answers NONE ("deleted") for
    /// partitions of topics the group is subscribed to, and when the table (which checks again
    /// at the record's index) refuses the removal, reports success anyway; the offsets stay
    /// (C9; the simulator's `--offset-delete`).
    OffsetDeleteIgnoresSubscription,
    /// The node's cached view of retention's candidates (`Node::retention_candidates`, the
    /// cheap idle path under hibernation) goes stale: a round that moves a group's log or
    /// commit does not file it for retention's next check, so retention stops checking it and
    /// its log grows past its limits for good (R12 c; the simulator's `--retention --hibernate`).
    RetentionCandidatesStale,
    /// A node decommissioned and removed keeps serving clients from the metadata it last had
    /// (`NodeContext::is_removed` is never true): its Metadata answers list partition leaders
    /// it no longer knows (V7; the simulator's `--grow-shrink`).
    RemovedNodeServes,
    /// The Kafka listener's Fetch skips its authorization check (read on the topic): an
    /// authenticated principal without a read ACL fetches the topic's records over the Kafka
    /// listener, while the native listener still refuses it (A1 on the Kafka path; the
    /// simulator's `--kafka --secure`).
    KafkaFetchSkipsAclCheck,
    /// The repair of a node's damaged metadata replica (issue 15, `crate::meta_repair`) creates
    /// the rebuilt replica as a new one (not suspect of its whole log: it votes at once) and
    /// reports it repaired as soon as it opens, before it caught up: an empty log that votes
    /// can elect a controller lacking metadata entries committed with the old replica's
    /// acknowledgements (R8 d; the simulator's plan field `state_faults`).
    MetadataRepairDoneBeforeCaughtUp,
    /// A leader forgets which followers said they lead not (`odradek_consensus` module
    /// `hand_over`: a suspect replica, one on a quarantined node, a draining one or one low on
    /// disk): leader balancing, transfer requests, reassignments and a passive or draining
    /// node's own hand-offs may hand leadership to a replica that drops it, stalling the group
    /// for an election timeout (R13; the metadata's refusals of repairs still hold).
    HandOverSkipDropped,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 40] = [
        PlantedBug::AckBeforeCommit,
        PlantedBug::ServeAboveCommit,
        PlantedBug::SkipDedup,
        PlantedBug::StaleLeaderServesProduce,
        PlantedBug::FollowerAcksBeforePersist,
        PlantedBug::AckBeforeFsync,
        PlantedBug::IgnoreFsyncError,
        PlantedBug::TruncateMidLogCorruption,
        PlantedBug::TrustRecoveryCut,
        PlantedBug::SuspectVoteByTermOnly,
        PlantedBug::SilentRecoveryCut,
        PlantedBug::AcceptStaleCommit,
        PlantedBug::CoordinatorAnswersBeforeReplay,
        PlantedBug::AssignmentTwoOwners,
        PlantedBug::SkipProduceAclCheck,
        PlantedBug::WipedNodeKeepsIdentity,
        PlantedBug::AddedPartitionsUnhosted,
        PlantedBug::LearnerPromotedEarly,
        PlantedBug::RemovalLeavesNoQuorum,
        PlantedBug::DeleteRecordsNotReplicated,
        PlantedBug::ReadBarrierSkipped,
        PlantedBug::DeleteTopicUncommitted,
        PlantedBug::CoordinatorNamesPreferred,
        PlantedBug::HardStateUncheckedCrc,
        PlantedBug::RepairDoneBeforeCaughtUp,
        PlantedBug::SnapshotWithheld,
        PlantedBug::HardStateSavedWithoutSync,
        PlantedBug::StartStateSavedWithoutSync,
        PlantedBug::RetentionPastCommit,
        PlantedBug::HibernatedLeaderReadsLocally,
        PlantedBug::RegexMatchesSubstring,
        PlantedBug::EvictedWithoutSync,
        PlantedBug::ProducerTableNotKept,
        PlantedBug::DecommissionBeforeReplicasMoved,
        PlantedBug::OffsetDeleteIgnoresSubscription,
        PlantedBug::RetentionCandidatesStale,
        PlantedBug::RemovedNodeServes,
        PlantedBug::KafkaFetchSkipsAclCheck,
        PlantedBug::MetadataRepairDoneBeforeCaughtUp,
        PlantedBug::HandOverSkipDropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeCommit => "ack-before-commit",
            PlantedBug::ServeAboveCommit => "serve-above-commit",
            PlantedBug::SkipDedup => "skip-dedup",
            PlantedBug::StaleLeaderServesProduce => "stale-leader-serves-produce",
            PlantedBug::FollowerAcksBeforePersist => "follower-acks-before-persist",
            PlantedBug::AckBeforeFsync => "ack-before-fsync",
            PlantedBug::IgnoreFsyncError => "ignore-fsync-error",
            PlantedBug::TruncateMidLogCorruption => "truncate-mid-log-corruption",
            PlantedBug::TrustRecoveryCut => "trust-recovery-cut",
            PlantedBug::SuspectVoteByTermOnly => "suspect-vote-by-term-only",
            PlantedBug::SilentRecoveryCut => "silent-recovery-cut",
            PlantedBug::AcceptStaleCommit => "accept-stale-commit",
            PlantedBug::CoordinatorAnswersBeforeReplay => "coordinator-answers-before-replay",
            PlantedBug::AssignmentTwoOwners => "assignment-two-owners",
            PlantedBug::SkipProduceAclCheck => "skip-produce-acl-check",
            PlantedBug::WipedNodeKeepsIdentity => "wiped-node-keeps-identity",
            PlantedBug::AddedPartitionsUnhosted => "added-partitions-unhosted",
            PlantedBug::LearnerPromotedEarly => "learner-promoted-early",
            PlantedBug::RemovalLeavesNoQuorum => "removal-leaves-no-quorum",
            PlantedBug::DeleteRecordsNotReplicated => "delete-records-not-replicated",
            PlantedBug::ReadBarrierSkipped => "read-barrier-skipped",
            PlantedBug::DeleteTopicUncommitted => "delete-topic-uncommitted",
            PlantedBug::CoordinatorNamesPreferred => "coordinator-names-preferred",
            PlantedBug::HardStateUncheckedCrc => "hard-state-unchecked-crc",
            PlantedBug::RepairDoneBeforeCaughtUp => "repair-done-before-caught-up",
            PlantedBug::SnapshotWithheld => "snapshot-withheld",
            PlantedBug::HardStateSavedWithoutSync => "hard-state-saved-without-sync",
            PlantedBug::StartStateSavedWithoutSync => "start-state-saved-without-sync",
            PlantedBug::RetentionPastCommit => "retention-past-commit",
            PlantedBug::HibernatedLeaderReadsLocally => "hibernated-leader-reads-locally",
            PlantedBug::RegexMatchesSubstring => "regex-matches-substring",
            PlantedBug::EvictedWithoutSync => "evicted-without-sync",
            PlantedBug::ProducerTableNotKept => "producer-table-not-kept",
            PlantedBug::DecommissionBeforeReplicasMoved => "decommission-before-replicas-moved",
            PlantedBug::OffsetDeleteIgnoresSubscription => "offset-delete-ignores-subscription",
            PlantedBug::RetentionCandidatesStale => "retention-candidates-stale",
            PlantedBug::RemovedNodeServes => "removed-node-serves",
            PlantedBug::KafkaFetchSkipsAclCheck => "kafka-fetch-skips-acl-check",
            PlantedBug::MetadataRepairDoneBeforeCaughtUp => "metadata-repair-done-before-caught-up",
            PlantedBug::HandOverSkipDropped => "hand-over-skip-dropped",
        }
    }
}

impl FromStr for PlantedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<PlantedBug, String> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name).ok_or_else(|| {
            let names: Vec<&str> = PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown planted bug {name:?}; known: {}", names.join(", "))
        })
    }
}

/// One node's planted bugs as switches, one per [`PlantedBug`]; all off by default and in every
/// build without planted bugs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    pub ack_before_commit: bool,
    pub serve_above_commit: bool,
    pub skip_dedup: bool,
    pub stale_leader_serves_produce: bool,
    pub follower_acks_before_persist: bool,
    pub ack_before_fsync: bool,
    pub ignore_fsync_error: bool,
    pub truncate_mid_log_corruption: bool,
    pub trust_recovery_cut: bool,
    pub suspect_vote_by_term_only: bool,
    pub silent_recovery_cut: bool,
    pub accept_stale_commit: bool,
    pub coordinator_answers_before_replay: bool,
    pub assignment_two_owners: bool,
    pub skip_produce_acl_check: bool,
    pub wiped_node_keeps_identity: bool,
    pub added_partitions_unhosted: bool,
    pub learner_promoted_early: bool,
    pub removal_leaves_no_quorum: bool,
    pub delete_records_not_replicated: bool,
    pub read_barrier_skipped: bool,
    pub delete_topic_uncommitted: bool,
    pub coordinator_names_preferred: bool,
    pub hard_state_unchecked_crc: bool,
    pub repair_done_before_caught_up: bool,
    pub snapshot_withheld: bool,
    pub hard_state_saved_without_sync: bool,
    pub start_state_saved_without_sync: bool,
    pub retention_past_commit: bool,
    pub hibernated_leader_reads_locally: bool,
    pub regex_matches_substring: bool,
    pub evicted_without_sync: bool,
    pub producer_table_not_kept: bool,
    pub decommission_before_replicas_moved: bool,
    pub offset_delete_ignores_subscription: bool,
    pub retention_candidates_stale: bool,
    pub removed_node_serves: bool,
    pub kafka_fetch_skips_acl_check: bool,
    pub metadata_repair_done_before_caught_up: bool,
    pub hand_over_skip_dropped: bool,
}

impl Planted {
    /// The switches of `bugs`: each listed bug on, the others off.
    pub fn from_bugs(bugs: &[PlantedBug]) -> Planted {
        let on = |bug: PlantedBug| bugs.contains(&bug);
        Planted {
            ack_before_commit: on(PlantedBug::AckBeforeCommit),
            serve_above_commit: on(PlantedBug::ServeAboveCommit),
            skip_dedup: on(PlantedBug::SkipDedup),
            stale_leader_serves_produce: on(PlantedBug::StaleLeaderServesProduce),
            follower_acks_before_persist: on(PlantedBug::FollowerAcksBeforePersist),
            ack_before_fsync: on(PlantedBug::AckBeforeFsync),
            ignore_fsync_error: on(PlantedBug::IgnoreFsyncError),
            truncate_mid_log_corruption: on(PlantedBug::TruncateMidLogCorruption),
            trust_recovery_cut: on(PlantedBug::TrustRecoveryCut),
            suspect_vote_by_term_only: on(PlantedBug::SuspectVoteByTermOnly),
            silent_recovery_cut: on(PlantedBug::SilentRecoveryCut),
            accept_stale_commit: on(PlantedBug::AcceptStaleCommit),
            coordinator_answers_before_replay: on(PlantedBug::CoordinatorAnswersBeforeReplay),
            assignment_two_owners: on(PlantedBug::AssignmentTwoOwners),
            skip_produce_acl_check: on(PlantedBug::SkipProduceAclCheck),
            wiped_node_keeps_identity: on(PlantedBug::WipedNodeKeepsIdentity),
            added_partitions_unhosted: on(PlantedBug::AddedPartitionsUnhosted),
            learner_promoted_early: on(PlantedBug::LearnerPromotedEarly),
            removal_leaves_no_quorum: on(PlantedBug::RemovalLeavesNoQuorum),
            delete_records_not_replicated: on(PlantedBug::DeleteRecordsNotReplicated),
            read_barrier_skipped: on(PlantedBug::ReadBarrierSkipped),
            delete_topic_uncommitted: on(PlantedBug::DeleteTopicUncommitted),
            coordinator_names_preferred: on(PlantedBug::CoordinatorNamesPreferred),
            hard_state_unchecked_crc: on(PlantedBug::HardStateUncheckedCrc),
            repair_done_before_caught_up: on(PlantedBug::RepairDoneBeforeCaughtUp),
            snapshot_withheld: on(PlantedBug::SnapshotWithheld),
            hard_state_saved_without_sync: on(PlantedBug::HardStateSavedWithoutSync),
            start_state_saved_without_sync: on(PlantedBug::StartStateSavedWithoutSync),
            retention_past_commit: on(PlantedBug::RetentionPastCommit),
            hibernated_leader_reads_locally: on(PlantedBug::HibernatedLeaderReadsLocally),
            regex_matches_substring: on(PlantedBug::RegexMatchesSubstring),
            evicted_without_sync: on(PlantedBug::EvictedWithoutSync),
            producer_table_not_kept: on(PlantedBug::ProducerTableNotKept),
            decommission_before_replicas_moved: on(PlantedBug::DecommissionBeforeReplicasMoved),
            offset_delete_ignores_subscription: on(PlantedBug::OffsetDeleteIgnoresSubscription),
            retention_candidates_stale: on(PlantedBug::RetentionCandidatesStale),
            removed_node_serves: on(PlantedBug::RemovedNodeServes),
            kafka_fetch_skips_acl_check: on(PlantedBug::KafkaFetchSkipsAclCheck),
            metadata_repair_done_before_caught_up: on(PlantedBug::MetadataRepairDoneBeforeCaughtUp),
            hand_over_skip_dropped: on(PlantedBug::HandOverSkipDropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Planted, PlantedBug};
    use crate::config::ServerConfig;

    #[test]
    fn each_listed_bug_switches_on_its_own_switch() {
        assert_eq!(Planted::from_bugs(&[]), Planted::default());
        let planted = Planted::from_bugs(&[PlantedBug::SkipDedup, PlantedBug::TrustRecoveryCut]);
        assert_eq!(planted, Planted { skip_dedup: true, trust_recovery_cut: true, ..Planted::default() });
        let all = Planted::from_bugs(&PlantedBug::ALL);
        let each = [
            all.ack_before_commit,
            all.serve_above_commit,
            all.skip_dedup,
            all.stale_leader_serves_produce,
            all.follower_acks_before_persist,
            all.ack_before_fsync,
            all.ignore_fsync_error,
            all.truncate_mid_log_corruption,
            all.trust_recovery_cut,
            all.suspect_vote_by_term_only,
            all.skip_produce_acl_check,
            all.silent_recovery_cut,
            all.wiped_node_keeps_identity,
            all.added_partitions_unhosted,
            all.learner_promoted_early,
            all.removal_leaves_no_quorum,
            all.delete_records_not_replicated,
            all.read_barrier_skipped,
            all.delete_topic_uncommitted,
            all.coordinator_names_preferred,
            all.hard_state_unchecked_crc,
            all.repair_done_before_caught_up,
            all.snapshot_withheld,
            all.hard_state_saved_without_sync,
            all.start_state_saved_without_sync,
            all.retention_past_commit,
            all.hibernated_leader_reads_locally,
            all.regex_matches_substring,
            all.evicted_without_sync,
            all.producer_table_not_kept,
            all.decommission_before_replicas_moved,
            all.offset_delete_ignores_subscription,
            all.retention_candidates_stale,
            all.removed_node_serves,
            all.kafka_fetch_skips_acl_check,
            all.metadata_repair_done_before_caught_up,
            all.hand_over_skip_dropped,
        ];
        assert!(each.iter().all(|on| *on), "every bug has a switch: {all:?}");
    }

    #[test]
    fn a_config_switches_on_exactly_its_listed_bugs() {
        #[allow(unused_mut)] // listed only in simulation and planted-bugs builds
        let mut config = ServerConfig::new(1, "data", Vec::new());
        assert_eq!(config.planted_switches(), Planted::default());
        #[cfg(any(madsim, feature = "planted-bugs"))]
        {
            config.planted_bugs = vec![PlantedBug::ServeAboveCommit];
            assert_eq!(config.planted_switches(), Planted { serve_above_commit: true, ..Planted::default() });
        }
    }

    #[test]
    fn names_round_trip() {
        for bug in PlantedBug::ALL {
            assert_eq!(bug.name().parse::<PlantedBug>(), Ok(bug));
        }
    }
}
