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
        let Phase::Preparing { joined, .. } = std::mem::take(&mut self.phase) else { panic!("not preparing") };
        let next = next_generation(&self.membership(), &joined, "consumer");
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

fn decode_none(_: &[u8]) -> Option<crate::group::Partitions> {
    None
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
    sync(membership, phase, "g", &request, &decode_none)
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
