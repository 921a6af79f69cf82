//! The classic member against a scripted coordinator: the happy path, each rebalance trigger,
//! and a property test that drives it with arbitrary answers, timer jumps and slow appliers.

use super::*;
use crate::wire::proto::{
    ErrorCode, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, Request_oneof_body as RequestBody, SyncGroupResponse,
};
use proptest::prelude::*;

const SESSION_MS: u64 = 10_000;
const HEARTBEAT_MS: u64 = 1_000;
const MAX_POLL_MS: u64 = 60_000;

fn config(assignors: Vec<Assignor>, instance: Option<&str>) -> MemberConfig {
    MemberConfig {
        group_id: "g".into(),
        group_instance_id: instance.map(String::from),
        client_id: "test".into(),
        session_timeout_ms: SESSION_MS,
        heartbeat_interval_ms: HEARTBEAT_MS,
        max_poll_interval_ms: MAX_POLL_MS,
        retry_backoff_ms: 100,
        retry_backoff_max_ms: 1_000,
        assignors,
        server_assignor: None,
    }
}

fn member(assignors: Vec<Assignor>) -> ClassicMember {
    ClassicMember::new(config(assignors, None), ["t".to_string()].into(), 0).unwrap()
}

fn ok(body: ResponseBody) -> Result<Response, ClientError> {
    let mut response = Response::new();
    response.body = Some(body);
    Ok(response)
}

fn error(code: ErrorCode) -> Result<Response, ClientError> {
    let mut response = Response::new();
    response.error = code;
    Ok(response)
}

fn partitions(numbers: &[u32]) -> BTreeSet<TopicPartition> {
    numbers.iter().map(|partition| ("t".to_string(), *partition)).collect()
}

fn joined(member_id: &str, generation: i32, leader: &str, members: &[(&str, &Subscription)]) -> Result<Response, ClientError> {
    let mut answer = JoinGroupResponse::new();
    answer.member_id = member_id.into();
    answer.generation = generation;
    answer.leader = leader.into();
    answer.protocol_name = "cooperative-sticky".into();
    answer.members = members
        .iter()
        .map(|(id, subscription)| {
            let mut member = JoinGroupMember::new();
            member.member_id = id.to_string();
            member.metadata = subscription.encode().unwrap();
            member
        })
        .collect::<Vec<_>>()
        .into();
    ok(ResponseBody::join_group(answer))
}

fn synced(assigned: &BTreeSet<TopicPartition>) -> Result<Response, ClientError> {
    let mut answer = SyncGroupResponse::new();
    answer.assignment = protocol::Assignment { partitions: to_topic_partitions(assigned), ..Default::default() }.encode().unwrap();
    ok(ResponseBody::sync_group(answer))
}

fn expect_send(step: Step) -> RequestBody {
    match step {
        Step::Send(body) => body,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn join_subscription(body: &RequestBody) -> Subscription {
    let RequestBody::join_group(join) = body else { panic!("expected a JoinGroup, got {body:?}") };
    Subscription::decode(&join.protocols[0].metadata).unwrap()
}

fn apply(member: &mut ClassicMember, now_ms: u64) -> Vec<(ChangeKind, BTreeSet<TopicPartition>)> {
    let changes = member.take_changes();
    member.changes_applied(now_ms);
    changes.into_iter().map(|change| (change.kind, change.partitions)).collect()
}

/// Joins as the only member (and leader) of a 4-partition topic, through to Stable.
fn stable(member: &mut ClassicMember) {
    let join = expect_send(member.step(0));
    let subscription = join_subscription(&join);
    assert_eq!(subscription.topics, ["t"]);
    member.on_answer(1, joined("m1", 1, "m1", &[("m1", &subscription)]));
    assert_eq!(member.step(1), Step::Metadata(["t".to_string()].into()));
    member.on_metadata(2, [("t".to_string(), 4)].into());
    let RequestBody::sync_group(sync) = expect_send(member.step(2)) else { panic!("expected a SyncGroup") };
    assert_eq!((sync.generation, sync.assignments.len()), (1, 1));
    let assignment = protocol::Assignment::decode(&sync.assignments[0].assignment).unwrap();
    member.on_answer(3, synced(&partitions(&assignment.partitions[0].partitions)));
    assert_eq!(apply(member, 3), [(ChangeKind::Assigned, partitions(&[0, 1, 2, 3]))]);
    assert_eq!(member.commit_identity(), Some(CommitIdentity { member_id: "m1".into(), epoch: 1 }));
}

#[test]
fn joins_assigns_as_leader_and_heartbeats() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    assert_eq!(member.step(10), Step::Wait(Some(3 + HEARTBEAT_MS)));
    let RequestBody::heartbeat(heartbeat) = expect_send(member.step(3 + HEARTBEAT_MS)) else { panic!("expected a heartbeat") };
    assert_eq!((heartbeat.generation, heartbeat.member_id.as_str()), (1, "m1"));
    member.on_answer(3 + HEARTBEAT_MS, ok(ResponseBody::heartbeat(HeartbeatResponse::new())));
    assert!(matches!(member.step(3 + HEARTBEAT_MS + 1), Step::Wait(Some(_))));
}

#[test]
fn eager_members_revoke_everything_before_they_rejoin() {
    let mut member = member(vec![Assignor::Range, Assignor::CooperativeSticky]);
    assert!(!member.is_cooperative(), "one eager assignor makes the member eager, as in Kafka");
    stable(&mut member);
    let _ = expect_send(member.step(3 + HEARTBEAT_MS));
    member.on_answer(3 + HEARTBEAT_MS, error(ErrorCode::REBALANCE_IN_PROGRESS));
    assert_eq!(member.step(3 + HEARTBEAT_MS), Step::Wait(None), "the join waits for the revocation");
    assert_eq!(apply(&mut member, 3 + HEARTBEAT_MS), [(ChangeKind::Revoked, partitions(&[0, 1, 2, 3]))]);
    let join = expect_send(member.step(3 + HEARTBEAT_MS));
    let subscription = join_subscription(&join);
    assert!(subscription.owned_partitions.is_empty());
    assert_eq!(subscription.generation_id, 1);
}

#[test]
fn cooperative_members_rejoin_owning_and_revoke_only_what_moved() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    let _ = expect_send(member.step(3 + HEARTBEAT_MS));
    member.on_answer(3 + HEARTBEAT_MS, error(ErrorCode::REBALANCE_IN_PROGRESS));
    let join = expect_send(member.step(3 + HEARTBEAT_MS));
    let subscription = join_subscription(&join);
    assert_eq!(subscription.owned_partitions, to_topic_partitions(&partitions(&[0, 1, 2, 3])));
    // A follower now: the leader gave it half.
    member.on_answer(3_000, joined("m1", 2, "m0", &[]));
    let _ = expect_send(member.step(3_000));
    member.on_answer(3_001, synced(&partitions(&[0, 1])));
    assert_eq!(apply(&mut member, 3_001), [(ChangeKind::Revoked, partitions(&[2, 3]))]);
    let join = expect_send(member.step(3_001));
    assert_eq!(join_subscription(&join).owned_partitions, to_topic_partitions(&partitions(&[0, 1])), "rejoins at once to hand them over");
}

#[test]
fn generation_errors_lose_the_partitions_and_unknown_members_rejoin_as_new() {
    for (code, member_id) in [(ErrorCode::ILLEGAL_GENERATION, "m1"), (ErrorCode::UNKNOWN_MEMBER_ID, "")] {
        let mut member = member(vec![Assignor::CooperativeSticky]);
        stable(&mut member);
        let _ = expect_send(member.step(3 + HEARTBEAT_MS));
        member.on_answer(3 + HEARTBEAT_MS, error(code));
        assert_eq!(member.commit_identity(), None, "{code:?}: no commits from a lost generation");
        assert_eq!(member.step(3 + HEARTBEAT_MS), Step::Wait(None));
        assert_eq!(apply(&mut member, 3 + HEARTBEAT_MS), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]))]);
        let RequestBody::join_group(join) = expect_send(member.step(3 + HEARTBEAT_MS)) else { panic!() };
        assert_eq!(join.member_id, member_id, "{code:?}");
    }
}

#[test]
fn a_session_without_acknowledged_heartbeats_loses_the_partitions() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    let sent = 3 + HEARTBEAT_MS;
    let _ = expect_send(member.step(sent));
    member.on_answer(sent + 5_000, Err(ClientError::Timeout { timeout_ms: 5_000 }));
    // The session counts from the send time of the last acknowledged message (the SyncGroup at 2).
    assert!(matches!(member.step(2 + SESSION_MS - 1), Step::Send(_)), "still heartbeating (retrying)");
    member.on_answer(2 + SESSION_MS - 1, Err(ClientError::Timeout { timeout_ms: 1 }));
    let _ = member.step(2 + SESSION_MS);
    assert_eq!(apply(&mut member, 2 + SESSION_MS), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]))]);
}

#[test]
fn a_member_that_stops_polling_leaves_and_rejoins_when_polled() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    for now_ms in (HEARTBEAT_MS..MAX_POLL_MS).step_by(HEARTBEAT_MS as usize) {
        if let Step::Send(_) = member.step(now_ms + 2) {
            member.on_answer(now_ms + 2, ok(ResponseBody::heartbeat(HeartbeatResponse::new())));
        }
    }
    let late = MAX_POLL_MS + 10;
    assert!(matches!(expect_send(member.step(late)), RequestBody::leave_group(_)));
    member.on_answer(late, ok(ResponseBody::leave_group(LeaveGroupResponse::new())));
    assert_eq!(apply(&mut member, late), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]))]);
    assert_eq!(member.step(late + 1), Step::Wait(None), "no rejoin without a poll");
    member.polled(late + 2);
    let RequestBody::join_group(join) = expect_send(member.step(late + 2)) else { panic!() };
    assert_eq!(join.member_id, "", "a dynamic member left, so it joins as new");
}

#[test]
fn leaving_revokes_then_sends_leave_group_but_a_static_member_just_stops() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    member.leave();
    assert_eq!(member.step(5), Step::Wait(None));
    assert_eq!(apply(&mut member, 5), [(ChangeKind::Revoked, partitions(&[0, 1, 2, 3]))]);
    let RequestBody::leave_group(leave) = expect_send(member.step(5)) else { panic!() };
    assert_eq!(leave.members[0].member_id, "m1");
    member.on_answer(6, Err(ClientError::Timeout { timeout_ms: 1 }));
    assert!(member.is_done());

    let mut member = ClassicMember::new(config(vec![Assignor::CooperativeSticky], Some("i1")), ["t".to_string()].into(), 0).unwrap();
    stable(&mut member);
    member.leave();
    let _ = member.step(5);
    apply(&mut member, 5);
    assert_eq!(member.step(5), Step::Wait(None));
    assert!(member.is_done(), "a static member leaves by letting its session lapse");
}

#[test]
fn fatal_errors_stop_the_member() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    let _ = expect_send(member.step(3 + HEARTBEAT_MS));
    member.on_answer(3 + HEARTBEAT_MS, error(ErrorCode::FENCED_INSTANCE_ID));
    assert_eq!(member.failure().and_then(ClientError::code), Some(ErrorCode::FENCED_INSTANCE_ID));
    assert_eq!(apply(&mut member, 3 + HEARTBEAT_MS), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]))]);
    assert_eq!(member.step(3 + HEARTBEAT_MS), Step::Wait(None));
    assert!(member.is_done());
}

#[test]
fn a_leader_rebalances_when_partition_counts_change() {
    let mut member = member(vec![Assignor::CooperativeSticky]);
    stable(&mut member);
    assert_eq!(member.metadata_topics(), ["t".to_string()].into());
    member.on_metadata(10, [("t".to_string(), 4)].into());
    assert!(matches!(member.step(10), Step::Wait(_)), "same counts: nothing to do");
    member.on_metadata(11, [("t".to_string(), 6)].into());
    assert!(matches!(expect_send(member.step(11)), RequestBody::join_group(_)));
}

/// One input to the member in the property test.
#[derive(Debug, Clone)]
enum Input {
    /// Advance the clock.
    Wait(u64),
    /// Answer the request in flight: Ok (with an assignment of these partitions for a sync),
    /// or this error.
    Answer(Result<Vec<u32>, ErrorCode>),
    /// The consumer applies what it took.
    Apply,
    Poll,
    Subscribe(bool),
    Metadata(u32),
    Leave,
}

fn input() -> impl Strategy<Value = Input> {
    let codes = prop::sample::select(vec![
        ErrorCode::NOT_COORDINATOR,
        ErrorCode::COORDINATOR_NOT_AVAILABLE,
        ErrorCode::REQUEST_TIMED_OUT,
        ErrorCode::REBALANCE_IN_PROGRESS,
        ErrorCode::ILLEGAL_GENERATION,
        ErrorCode::UNKNOWN_MEMBER_ID,
        ErrorCode::FENCED_INSTANCE_ID,
    ]);
    prop_oneof![
        4 => (0u64..4_000).prop_map(Input::Wait),
        6 => prop::collection::vec(0u32..6, 0..6).prop_map(|partitions| Input::Answer(Ok(partitions))),
        2 => codes.prop_map(|code| Input::Answer(Err(code))),
        4 => Just(Input::Apply),
        3 => Just(Input::Poll),
        1 => any::<bool>().prop_map(Input::Subscribe),
        1 => (0u32..8).prop_map(Input::Metadata),
        1 => Just(Input::Leave),
    ]
}

proptest! {
    /// Whatever the coordinator answers and whenever the consumer applies changes: a join never
    /// goes out with changes pending; an eager join reports nothing owned and a cooperative one
    /// exactly what the consumer applied; changes are consistent with what is owned (asserted
    /// inside); the member never has two requests in flight (asserted inside); and a commit
    /// identity exists only inside a generation.
    #[test]
    fn the_member_keeps_its_invariants_under_any_answers(cooperative: bool, inputs in prop::collection::vec(input(), 1..120)) {
        let assignors = if cooperative { vec![Assignor::CooperativeSticky] } else { vec![Assignor::Range, Assignor::CooperativeSticky] };
        let mut member = member(assignors);
        let mut now_ms = 0;
        let mut in_flight: Option<RequestBody> = None;
        let mut generation = 0;
        let mut taken = Vec::new();
        for input in inputs {
            match input {
                Input::Wait(ms) => now_ms += ms,
                Input::Apply => {
                    if !taken.is_empty() {
                        member.changes_applied(now_ms);
                        taken.clear();
                    }
                }
                Input::Poll => member.polled(now_ms),
                Input::Subscribe(both) => {
                    let topics = if both { ["t", "u"].map(String::from).into() } else { ["t".to_string()].into() };
                    member.set_subscription(topics);
                }
                Input::Metadata(count) => member.on_metadata(now_ms, [("t".to_string(), count)].into()),
                Input::Leave => member.leave(),
                Input::Answer(answer) => {
                    let Some(body) = in_flight.take() else { continue };
                    let response = match (answer, &body) {
                        (Err(code), _) => error(code),
                        (Ok(_), RequestBody::join_group(join)) => {
                            generation += 1;
                            let id = if join.member_id.is_empty() { "m1" } else { join.member_id.as_str() };
                            let subscription = Subscription::decode(&join.protocols[0].metadata).unwrap();
                            let mut response = joined(id, generation, if generation % 2 == 0 { id } else { "other" }, &[(id, &subscription)]);
                            if let Ok(Response { body: Some(ResponseBody::join_group(join)), .. }) = &mut response {
                                join.protocol_name = if cooperative { "cooperative-sticky".into() } else { "range".into() };
                            }
                            response
                        }
                        (Ok(assigned), RequestBody::sync_group(_)) => synced(&partitions(&assigned)),
                        (Ok(_), RequestBody::heartbeat(_)) => ok(ResponseBody::heartbeat(HeartbeatResponse::new())),
                        (Ok(_), RequestBody::leave_group(_)) => ok(ResponseBody::leave_group(LeaveGroupResponse::new())),
                        (Ok(_), other) => panic!("unexpected request {other:?}"),
                    };
                    member.on_answer(now_ms, response);
                }
            }
            if taken.is_empty() {
                taken = member.take_changes();
            }
            match member.step(now_ms) {
                Step::Send(body) => {
                    prop_assert!(in_flight.is_none(), "two requests in flight");
                    if let RequestBody::join_group(join) = &body {
                        prop_assert!(taken.is_empty(), "a join with changes unapplied");
                        let owned = Subscription::decode(&join.protocols[0].metadata).unwrap().owned_partitions;
                        let expected = if cooperative { to_topic_partitions(member.owned()) } else { Vec::new() };
                        prop_assert_eq!(owned, expected);
                        prop_assert!(cooperative || member.owned().is_empty(), "an eager member joins owning nothing");
                    }
                    in_flight = Some(body);
                }
                Step::Metadata(_) => member.on_metadata(now_ms, [("t".to_string(), 6)].into()),
                Step::Wait(until) => prop_assert!(until.is_none_or(|until| until > now_ms) || member.is_done()),
            }
            if let Some(identity) = member.commit_identity() {
                prop_assert!(identity.epoch >= 1 && identity.epoch == member.generation());
            }
        }
    }
}
