use super::*;
use crate::group::record::{OffsetCommit, Record};
use crate::group::table::{GroupTable, Outcome};

fn request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: instance.map(String::from),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|name| Protocol { name: name.to_string(), metadata: name.as_bytes().to_vec() }).collect(),
        client_id: "app".into(),
        require_known_member_id: false,
    }
}

struct Fixture {
    table: GroupTable,
    phase: Phase,
    issued: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { table: GroupTable::new(), phase: Phase::Stable, issued: 0 }
    }

    fn membership(&self) -> Membership {
        self.table.group("g").map(|g| g.membership.clone()).unwrap_or_default()
    }

    fn write(&mut self, membership: Membership) {
        let base_index = self.table.group("g").map_or(0, |g| g.record_index);
        let index = self.table.applied_index() + 1;
        let outcome = self.table.apply(index, &Record::Group { group: "g".into(), base_index, membership }.encode());
        assert_eq!(outcome, Outcome::Applied);
    }

    fn join(&mut self, request: JoinRequest, now_ms: i64) -> Result<JoinStep, GroupError> {
        let membership = self.membership();
        let issued = &mut self.issued;
        let mut new_id = || {
            *issued += 1;
            format!("m{issued}")
        };
        join(&membership, &mut self.phase, &request, now_ms, 3_000, &mut new_id)
    }

    /// Ends the join phase the way the coordinator does: writes the next generation.
    fn complete(&mut self) -> Membership {
        let Phase::Preparing { joined, protocol_type, .. } = std::mem::take(&mut self.phase) else { panic!("not preparing") };
        let next = next_generation(&self.membership(), &joined, &protocol_type);
        self.write(next.clone());
        next
    }

    fn commit(&mut self, member: &str, generation: i32) -> Outcome {
        let index = self.table.applied_index() + 1;
        let commit = OffsetCommit {
            group: "g".into(),
            member_id: member.into(),
            epoch: generation,
            offsets: vec![(("t".into(), 0), 1, String::new())],
            ..OffsetCommit::default()
        };
        self.table.apply(index, &Record::Commit(commit).encode())
    }
}

/// Reads no partitions from any assignment (the tests below that are not about decoding).
fn decode_opaque(_: &str, _: &[u8]) -> Result<crate::group::Partitions, String> {
    Ok(crate::group::Partitions::new())
}

fn sync_as(
    membership: &Membership,
    phase: &Phase,
    member_id: &str,
    generation: i32,
    instance: Option<&str>,
    assignments: &[(String, Vec<u8>)],
) -> Result<SyncStep, GroupError> {
    let request =
        SyncRequest { member_id: member_id.into(), generation, instance_id: instance.map(String::from), assignments: assignments.to_vec() };
    sync(membership, phase, "g", &request, &decode_opaque)
}

#[test]
fn a_rebalance_writes_the_generation_then_the_leaders_assignment() {
    let mut group = Fixture::new();
    let JoinStep::Wait { member_id: a } = group.join(request("", None, &["range", "roundrobin"]), 0).unwrap() else { panic!() };
    let JoinStep::Wait { member_id: b } = group.join(request("", None, &["roundrobin", "range"]), 10).unwrap() else { panic!() };
    assert!(!join_complete(&group.membership(), &group.phase, 2_000), "an empty group waits its initial delay");
    assert!(join_complete(&group.membership(), &group.phase, 3_010));
    let generation = group.complete();
    assert_eq!((generation.epoch, generation.leader.as_str()), (1, a.as_str()));
    assert_eq!(generation.protocol_name, "range", "a tie of votes goes to the first name");
    let answer = join_answer(&generation, &a);
    assert_eq!(answer.members.len(), 2, "the leader learns every member's metadata");
    assert!(join_answer(&generation, &b).members.is_empty());
    // Before the leader syncs, the follower waits and nobody commits.
    assert_eq!(sync_as(&generation, &group.phase, &b, 1, None, &[]).unwrap(), SyncStep::Wait);
    assert!(matches!(group.commit(&b, 1), Outcome::Refused(GroupError::RebalanceInProgress(_))));
    let assignments = vec![(a.clone(), vec![1]), (b.clone(), vec![2])];
    let SyncStep::Write(synced) = sync_as(&generation, &group.phase, &a, 1, None, &assignments).unwrap() else { panic!() };
    group.write(synced.clone());
    assert_eq!(sync_as(&synced, &group.phase, &b, 1, None, &[]).unwrap(), SyncStep::Answer(vec![2]));
    assert_eq!(group.commit(&b, 1), Outcome::Applied);
}

#[test]
fn a_new_member_starts_a_rebalance_and_the_old_generation_is_fenced() {
    let mut group = Fixture::new();
    let JoinStep::Wait { member_id: a } = group.join(request("", None, &["range"]), 0).unwrap() else { panic!() };
    let generation = group.complete();
    let SyncStep::Write(synced) = sync_as(&generation, &group.phase, &a, 1, None, &[(a.clone(), vec![])]).unwrap() else { panic!() };
    group.write(synced);
    assert_eq!(heartbeat(&group.membership(), &group.phase, "g", &a, 1, None), Ok(()));
    group.join(request("", None, &["range"]), 100).unwrap();
    assert!(matches!(heartbeat(&group.membership(), &group.phase, "g", &a, 1, None), Err(GroupError::RebalanceInProgress(_))));
    // Kafka allows the current generation to commit while the next is prepared.
    assert_eq!(group.commit(&a, 1), Outcome::Applied);
    assert!(!join_complete(&group.membership(), &group.phase, 200), "a has not rejoined");
    group.join(request(&a, None, &["range"]), 300).unwrap();
    assert!(join_complete(&group.membership(), &group.phase, 300));
    group.complete();
    // C5: generation 1 is over.
    assert!(matches!(group.commit(&a, 1), Outcome::Refused(GroupError::IllegalGeneration { .. })));
    assert!(matches!(heartbeat(&group.membership(), &group.phase, "g", &a, 1, None), Err(GroupError::IllegalGeneration { .. })));
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let mut group = Fixture::new();
    let JoinStep::Wait { member_id: a } = group.join(request("", Some("host-a"), &["range"]), 0).unwrap() else { panic!() };
    let generation = group.complete();
    let SyncStep::Write(synced) = sync_as(&generation, &group.phase, &a, 1, None, &[(a.clone(), vec![7])]).unwrap() else { panic!() };
    group.write(synced);
    let JoinStep::Rejoined { member_id, membership } = group.join(request("", Some("host-a"), &["range"]), 50).unwrap() else { panic!() };
    assert_ne!(member_id, a);
    assert_eq!((membership.epoch, membership.leader.clone()), (1, member_id.clone()));
    group.write(membership);
    assert_eq!(group.phase, Phase::Stable);
    assert_eq!(sync_as(&group.membership(), &group.phase, &member_id, 1, Some("host-a"), &[]).unwrap(), SyncStep::Answer(vec![7]));
    // The old process is fenced.
    assert!(matches!(heartbeat(&group.membership(), &group.phase, "g", &a, 1, Some("host-a")), Err(GroupError::FencedInstanceId { .. })));
}

#[test]
fn a_leave_keeps_the_generation_and_asks_the_rest_to_rejoin() {
    let mut group = Fixture::new();
    let JoinStep::Wait { member_id: a } = group.join(request("", None, &["range"]), 0).unwrap() else { panic!() };
    let JoinStep::Wait { member_id: b } = group.join(request("", None, &["range"]), 0).unwrap() else { panic!() };
    let generation = group.complete();
    let (next, removed) = leave(&generation, &mut group.phase, &[b.clone(), "stranger".into()], 1_000);
    assert_eq!(removed, vec![b.clone()]);
    assert_eq!(next.epoch, generation.epoch);
    assert!(matches!(group.phase, Phase::Preparing { .. }));
    group.write(next);
    assert!(matches!(group.commit(&b, 1), Outcome::Refused(GroupError::UnknownMemberId { .. })));
    let (empty, _) = leave(&group.membership(), &mut group.phase, &[a], 1_000);
    assert!(empty.members.is_empty());
    assert_eq!(empty.kind, None);
}

#[test]
fn joins_must_share_a_protocol() {
    let mut group = Fixture::new();
    group.join(request("", None, &["range"]), 0).unwrap();
    assert!(matches!(group.join(request("", None, &["sticky"]), 0), Err(GroupError::InconsistentGroupProtocol(_))));
    let mut bad = request("", None, &["range"]);
    bad.session_timeout_ms = 10;
    assert!(matches!(group.join(bad, 0), Err(GroupError::InvalidSessionTimeout { got: 10 })));
    assert!(matches!(group.join(request("ghost", None, &["range"]), 0), Err(GroupError::UnknownMemberId { .. })));
}

/// ConsumerProtocol assignment bytes (the client's codec) giving `partitions` of topic "t".
fn consumer_assignment(version: i16, partitions: &[u32]) -> Vec<u8> {
    use odradek_client::group::protocol::{Assignment, TopicPartitions};
    let topics = vec![TopicPartitions { topic: "t".into(), partitions: partitions.to_vec() }];
    Assignment { version, partitions: topics, user_data: Some(b"sticky".to_vec()) }.encode().unwrap()
}

fn real_sync(membership: &Membership, member_id: &str, assignments: &[(String, Vec<u8>)]) -> Result<SyncStep, GroupError> {
    let request =
        SyncRequest { member_id: member_id.into(), generation: membership.epoch, instance_id: None, assignments: assignments.to_vec() };
    sync(membership, &Phase::Stable, "g", &request, &crate::group::service::decode_assignment)
}

#[test]
fn the_coordinator_reads_which_partitions_each_classic_member_owns() {
    let mut group = Fixture::new();
    let JoinStep::Wait { member_id: a } = group.join(request("", None, &["range"]), 0).unwrap() else { panic!() };
    let JoinStep::Wait { member_id: b } = group.join(request("", None, &["range"]), 0).unwrap() else { panic!() };
    let generation = group.complete();
    assert_eq!(generation.protocol_type, "consumer");
    let parts = |list: &[u32]| list.iter().map(|p| ("t".to_string(), *p)).collect::<crate::group::Partitions>();
    // Every version Kafka's clients write (0 to 3 share one layout) decodes; a newer one too
    // (read as Kafka reads it), and empty bytes are an empty assignment.
    for version in 0..=3 {
        let assignments = vec![(a.clone(), consumer_assignment(version, &[0, 2])), (b.clone(), consumer_assignment(version, &[1]))];
        let SyncStep::Write(synced) = real_sync(&generation, &a, &assignments).unwrap() else { panic!() };
        assert_eq!(synced.members[&a].assigned, parts(&[0, 2]), "version {version}");
        assert_eq!(synced.members[&b].assigned, parts(&[1]), "version {version}");
        assert_eq!(synced.members[&a].assignment, assignments[0].1, "the bytes go to the member unchanged");
    }
    let mut newer = consumer_assignment(3, &[3]);
    newer[1] = 7; // version 7, with a field this code does not know appended
    newer.extend_from_slice(&[0, 0, 0, 1]);
    let SyncStep::Write(synced) = real_sync(&generation, &a, &[(a.clone(), newer), (b.clone(), Vec::new())]).unwrap() else { panic!() };
    assert_eq!((synced.members[&a].assigned.clone(), synced.members[&b].assigned.clone()), (parts(&[3]), parts(&[])));
    group.write(synced);
    assert_eq!(group.membership().members[&a].assigned, parts(&[3]), "the decoded partitions are committed with the assignment");

    // Bad input: definite, clear refusals; nothing is written.
    let garbage = real_sync(&generation, &a, &[(b.clone(), vec![0, 0, 0, 0, 0, 9])]).unwrap_err();
    assert!(
        matches!(&garbage, GroupError::InvalidRequest(reason) if reason.contains(&b) && reason.contains("does not decode")),
        "{garbage}"
    );
    let negative = real_sync(&generation, &a, &[(b.clone(), vec![0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])]).unwrap_err();
    assert!(matches!(negative, GroupError::InvalidRequest(_)), "{negative}");
    let twice = vec![(a.clone(), consumer_assignment(1, &[0, 1])), (b.clone(), consumer_assignment(1, &[1]))];
    let twice = real_sync(&generation, &a, &twice).unwrap_err();
    assert!(matches!(&twice, GroupError::InvalidRequest(reason) if reason.contains("t/1")), "one partition, two owners: {twice}");
    assert!(twice.code().is_definite());
    // The log refuses a generation with one partition owned twice, whoever computed it.
    let mut doubled = generation.clone();
    for member in doubled.members.values_mut() {
        member.assigned = parts(&[5]);
    }
    assert!(doubled.check().is_err());
}

#[test]
fn another_protocol_types_assignments_stay_opaque() {
    let mut group = Fixture::new();
    let mut connect = request("", None, &["sessioned"]);
    connect.protocol_type = "connect".into();
    let JoinStep::Wait { member_id: a } = group.join(connect.clone(), 0).unwrap() else { panic!() };
    assert!(matches!(group.join(request("", None, &["sessioned"]), 0), Err(GroupError::InconsistentGroupProtocol(_))));
    let generation = group.complete();
    assert_eq!(generation.protocol_type, "connect", "the first joiner's protocol type, not \"consumer\"");
    let SyncStep::Write(synced) = real_sync(&generation, &a, &[(a.clone(), b"worker config".to_vec())]).unwrap() else { panic!() };
    assert!(synced.members[&a].assigned.is_empty());
    assert_eq!(synced.members[&a].assignment, b"worker config".to_vec());
}
