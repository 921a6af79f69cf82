//! The consumer-protocol member against a scripted coordinator, and a property test against a
//! model coordinator that hands a partition over only once its previous owner stopped
//! reporting it: no partition is ever applied by two members at once.

use super::*;
use crate::wire::proto::{ConsumerGroupHeartbeatResponse, ErrorCode};
use proptest::prelude::*;

const SESSION_MS: u64 = 10_000;
const HEARTBEAT_MS: u64 = 1_000;
const MAX_POLL_MS: u64 = 60_000;

fn config(instance: Option<&str>) -> MemberConfig {
    MemberConfig {
        group_id: "g".into(),
        group_instance_id: instance.map(String::from),
        client_id: "test".into(),
        session_timeout_ms: SESSION_MS,
        heartbeat_interval_ms: HEARTBEAT_MS,
        max_poll_interval_ms: MAX_POLL_MS,
        retry_backoff_ms: 100,
        retry_backoff_max_ms: 1_000,
        assignors: Vec::new(),
        server_assignor: Some("uniform".into()),
    }
}

fn member(instance: Option<&str>) -> ConsumerMember {
    ConsumerMember::new(config(instance), ["t".to_string()].into(), 0).unwrap()
}

fn partitions(numbers: &[u32]) -> BTreeSet<TopicPartition> {
    numbers.iter().map(|partition| ("t".to_string(), *partition)).collect()
}

fn answer(member_id: &str, epoch: i32, assigned: &[u32]) -> Result<Response, ClientError> {
    let mut answer = ConsumerGroupHeartbeatResponse::new();
    answer.member_id = member_id.into();
    answer.member_epoch = epoch;
    answer.heartbeat_interval_ms = HEARTBEAT_MS as u32;
    answer.assignment = crate::group::classic::to_wire_topic_partitions(&partitions(assigned)).into();
    let mut response = Response::new();
    response.body = Some(ResponseBody::consumer_group_heartbeat(answer));
    Ok(response)
}

fn error(code: ErrorCode) -> Result<Response, ClientError> {
    let mut response = Response::new();
    response.error = code;
    Ok(response)
}

fn heartbeat(step: Step) -> ConsumerGroupHeartbeatRequest {
    match step {
        Step::Send(RequestBody::consumer_group_heartbeat(request)) => request,
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}

fn owned_in(request: &ConsumerGroupHeartbeatRequest) -> BTreeSet<TopicPartition> {
    request.owned.iter().flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.clone(), *partition))).collect()
}

fn apply(member: &mut ConsumerMember, now_ms: u64) -> Vec<(ChangeKind, BTreeSet<TopicPartition>, i32)> {
    let changes = member.take_changes();
    member.changes_applied(now_ms);
    changes.into_iter().map(|change| (change.kind, change.partitions, change.epoch)).collect()
}

/// Joins and reconciles to partitions 0..4 at epoch 1.
fn joined(member: &mut ConsumerMember) {
    let join = heartbeat(member.step(0));
    assert_eq!((join.member_epoch, join.member_id.as_str(), join.subscription_set), (0, "", true));
    assert_eq!(join.subscribed_topics.to_vec(), ["t"]);
    assert_eq!(join.server_assignor, "uniform");
    assert!(owned_in(&join).is_empty());
    member.on_answer(1, answer("m1", 1, &[0, 1, 2, 3]));
    assert_eq!(apply(member, 2), [(ChangeKind::Assigned, partitions(&[0, 1, 2, 3]), 1)]);
    let ack = heartbeat(member.step(2));
    assert_eq!((ack.member_epoch, owned_in(&ack)), (1, partitions(&[0, 1, 2, 3])), "reports what it owns at once");
    member.on_answer(3, answer("m1", 1, &[0, 1, 2, 3]));
    assert_eq!(member.commit_identity(), Some(CommitIdentity { member_id: "m1".into(), epoch: 1 }));
}

#[test]
fn joins_reconciles_and_reports_what_it_owns() {
    let mut member = member(None);
    joined(&mut member);
    assert_eq!(member.step(4), Step::Wait(Some(3 + HEARTBEAT_MS)));
    assert!(apply(&mut member, 4).is_empty());
}

#[test]
fn revokes_before_it_reports_and_adds_after() {
    let mut member = member(None);
    joined(&mut member);
    let _ = heartbeat(member.step(3 + HEARTBEAT_MS));
    member.on_answer(1_010, answer("m1", 2, &[0, 1, 4]));
    // Until the consumer applies the revocation, heartbeats still report 0..4 (and 4, pending).
    let changes = member.take_changes();
    assert_eq!(changes.iter().map(|change| change.kind).collect::<Vec<_>>(), [ChangeKind::Revoked, ChangeKind::Assigned]);
    assert_eq!((changes[0].partitions.clone(), changes[1].partitions.clone()), (partitions(&[2, 3]), partitions(&[4])));
    let before = heartbeat(member.step(1_010 + HEARTBEAT_MS));
    assert_eq!(owned_in(&before), partitions(&[0, 1, 2, 3, 4]), "and what it is about to start on");
    member.on_answer(2_020, answer("m1", 2, &[0, 1, 4]));
    member.changes_applied(2_021);
    let after = heartbeat(member.step(2_021));
    assert_eq!(owned_in(&after), partitions(&[0, 1, 4]));
}

#[test]
fn fencing_loses_everything_and_rejoins_at_epoch_0_with_the_same_id() {
    for code in [ErrorCode::FENCED_MEMBER_EPOCH, ErrorCode::UNKNOWN_MEMBER_ID] {
        let mut member = member(None);
        joined(&mut member);
        let _ = heartbeat(member.step(3 + HEARTBEAT_MS));
        member.on_answer(1_010, error(code));
        assert_eq!(member.commit_identity(), None);
        assert_eq!(member.step(1_010), Step::Wait(None), "{code:?}: joins only once the loss is applied");
        assert_eq!(apply(&mut member, 1_011), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]), 1)]);
        let rejoin = heartbeat(member.step(1_011));
        assert_eq!((rejoin.member_epoch, rejoin.member_id.as_str()), (0, "m1"));
        assert!(owned_in(&rejoin).is_empty());
    }
}

#[test]
fn a_join_whose_answer_was_lost_is_sent_again_under_the_id_the_member_chose() {
    let mut joining = member(None).with_member_id("5b8e0c3a-uuid".into()).unwrap();
    let join = heartbeat(joining.step(0));
    assert_eq!((join.member_epoch, join.member_id.as_str()), (0, "5b8e0c3a-uuid"), "the first join names the chosen id");
    // The answer never comes (the connection dropped): the join is sent again, same id.
    joining.on_answer(5, Err(ClientError::Timeout { timeout_ms: 5 }));
    assert_eq!(joining.commit_identity(), None);
    let retry = match joining.step(5) {
        Step::Wait(Some(at)) => heartbeat(joining.step(at)),
        other => heartbeat(other),
    };
    assert_eq!((retry.member_epoch, retry.member_id.as_str(), owned_in(&retry).len()), (0, "5b8e0c3a-uuid", 0));
    joining.on_answer(300, answer("5b8e0c3a-uuid", 3, &[0, 1]));
    assert_eq!(apply(&mut joining, 301), [(ChangeKind::Assigned, partitions(&[0, 1]), 3)]);
    assert_eq!(joining.commit_identity(), Some(CommitIdentity { member_id: "5b8e0c3a-uuid".into(), epoch: 3 }));
    // An answer naming another member is a protocol error, never silently taken.
    let mut other = member(None).with_member_id("mine".into()).unwrap();
    let _ = heartbeat(other.step(0));
    other.on_answer(1, answer("theirs", 1, &[0]));
    assert!(matches!(other.failure(), Some(ClientError::Protocol(_))));
    // Bad ids are refused before anything is sent.
    assert!(member(None).with_member_id("x".repeat(MEMBER_ID_BYTES_MAX + 1)).is_err());
    assert!(member(None).with_member_id("a\u{0}b".into()).is_err());
}

#[test]
fn retriable_errors_back_off_and_a_lapsed_session_loses_the_partitions() {
    let mut member = member(None);
    joined(&mut member);
    let mut now_ms = 3 + HEARTBEAT_MS;
    while now_ms < 3 + SESSION_MS {
        if let Step::Send(_) = member.step(now_ms) {
            member.on_answer(now_ms, error(ErrorCode::NOT_COORDINATOR));
        }
        assert!(member.take_changes().is_empty(), "nothing lost within the session");
        now_ms += 50;
    }
    assert_eq!(member.step(now_ms), Step::Wait(None));
    assert_eq!(apply(&mut member, now_ms), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]), 1)]);
}

#[test]
fn leaving_uses_epoch_minus_1_and_a_static_member_minus_2() {
    for (instance, epoch) in [(None, LEAVE_EPOCH), (Some("i1"), STATIC_LEAVE_EPOCH)] {
        let mut member = member(instance);
        joined(&mut member);
        member.leave();
        assert_eq!(member.step(10), Step::Wait(None));
        assert_eq!(apply(&mut member, 10), [(ChangeKind::Revoked, partitions(&[0, 1, 2, 3]), 1)]);
        let leave = heartbeat(member.step(10));
        assert_eq!((leave.member_epoch, leave.member_id.as_str()), (epoch, "m1"));
        member.on_answer(11, answer("m1", epoch, &[]));
        assert!(member.is_done());
    }
}

#[test]
fn a_member_that_stops_polling_leaves_and_rejoins_when_polled() {
    let mut member = member(None);
    joined(&mut member);
    let late = MAX_POLL_MS + 10;
    let leave = heartbeat(member.step(late));
    assert_eq!(leave.member_epoch, LEAVE_EPOCH);
    member.on_answer(late, answer("m1", LEAVE_EPOCH, &[]));
    assert_eq!(apply(&mut member, late), [(ChangeKind::Lost, partitions(&[0, 1, 2, 3]), 1)]);
    assert_eq!(member.step(late + 5_000), Step::Wait(None), "no rejoin without a poll");
    member.polled(late + 5_000);
    assert_eq!(heartbeat(member.step(late + 5_000)).member_epoch, 0);
}

#[test]
fn fatal_errors_and_nonsense_answers_stop_the_member() {
    let mut member = member(None);
    joined(&mut member);
    let _ = heartbeat(member.step(3 + HEARTBEAT_MS));
    member.on_answer(1_010, error(ErrorCode::UNSUPPORTED_ASSIGNOR));
    assert!(member.failure().is_some());
    assert!(member.is_done());
    let mut member = self::member(None);
    let _ = heartbeat(member.step(0));
    member.on_answer(1, answer("m1", 0, &[]));
    assert!(matches!(member.failure(), Some(ClientError::Protocol(_))), "epoch 0 is not an answer to a join");
}

/// A model coordinator for the property test: each member's target comes from a random
/// desired assignment, but a partition is only given to a member once no other member reports
/// owning it or was last given it (KIP-848's rule). A fenced member's partitions stay taken until
/// it rejoins owning nothing (a real coordinator fences only after the session, by when the
/// member counts them lost). Members apply changes at random times and poll often.
#[derive(Debug, Clone)]
enum Input {
    Wait(u64),
    /// Answer member `i`'s request (new desired owners for the partitions if `Some`).
    Answer(usize, Option<Vec<usize>>),
    /// Member `i` applies what it took.
    Apply(usize),
    Fence(usize),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => (0u64..3_000).prop_map(Input::Wait),
        6 => (0usize..3, prop::option::of(prop::collection::vec(0usize..3, 6))).prop_map(|(i, owners)| Input::Answer(i, owners)),
        4 => (0usize..3).prop_map(Input::Apply),
        1 => (0usize..3).prop_map(Input::Fence),
    ]
}

proptest! {
    #[test]
    fn no_partition_is_applied_by_two_members_at_once(inputs in prop::collection::vec(input(), 1..200)) {
        let mut members: Vec<ConsumerMember> = (0..3).map(|_| member(None)).collect();
        let mut in_flight: Vec<Option<ConsumerGroupHeartbeatRequest>> = vec![None; 3];
        let mut reported: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); 3];
        let mut given: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); 3];
        let mut desired: Vec<usize> = vec![0, 1, 2, 0, 1, 2];
        let mut epochs = [0i32; 3];
        let mut now_ms = 0;
        for input in inputs {
            match input {
                Input::Wait(ms) => {
                    now_ms += ms;
                    members.iter_mut().for_each(|member| member.polled(now_ms));
                }
                Input::Apply(i) => members[i].changes_applied(now_ms),
                Input::Fence(i) => {
                    if let Some(request) = in_flight[i].take() {
                        if request.member_epoch >= 0 {
                            epochs[i] = 0;
                            members[i].on_answer(now_ms, error(ErrorCode::FENCED_MEMBER_EPOCH));
                        } else {
                            members[i].on_answer(now_ms, answer(&format!("m{i}"), request.member_epoch, &[]));
                        }
                    }
                }
                Input::Answer(i, owners) => {
                    let Some(request) = in_flight[i].take() else { continue };
                    if let Some(owners) = owners {
                        desired = owners;
                    }
                    if request.member_epoch < 0 {
                        members[i].on_answer(now_ms, answer(&format!("m{i}"), request.member_epoch, &[]));
                        continue;
                    }
                    reported[i] = owned_in(&request);
                    epochs[i] += 1;
                    // Keep what it reports and is still desired for it; add desired partitions
                    // nobody else reports.
                    let assigned: Vec<u32> = (0..6u32)
                        .filter(|partition| {
                            let key = ("t".to_string(), *partition);
                            desired[*partition as usize] == i && (0..3).all(|j| j == i || !(reported[j].contains(&key) || given[j].contains(&key)))
                        })
                        .collect();
                    given[i] = partitions(&assigned);
                    members[i].on_answer(now_ms, answer(&format!("m{i}"), epochs[i], &assigned));
                }
            }
            for i in 0..3 {
                if in_flight[i].is_none() {
                    if let Step::Send(RequestBody::consumer_group_heartbeat(request)) = members[i].step(now_ms) {
                        if request.member_epoch == 0 {
                            prop_assert!(owned_in(&request).is_empty(), "joins owning nothing");
                        } else if request.member_epoch > 0 {
                            prop_assert!(owned_in(&request).is_superset(members[i].owned()), "reports at least what it applied");
                        }
                        in_flight[i] = Some(request);
                    }
                }
                let _ = members[i].take_changes();
            }
            // The safety property: what members applied never overlaps.
            for i in 0..3 {
                for j in (i + 1)..3 {
                    let overlap: Vec<_> = members[i].owned().intersection(members[j].owned()).collect();
                    prop_assert!(overlap.is_empty(), "m{} and m{} both own {:?}", i, j, overlap);
                }
            }
        }
    }
}

/// KIP-848's server-side regex: the pattern travels with every heartbeat once set (the
/// coordinator resolves it), a name-only member never sends the field, and dropping the pattern
/// sends "" so that the coordinator forgets it.
#[test]
fn a_pattern_goes_to_the_coordinator_with_every_heartbeat() {
    let mut names_only = member(None);
    let join = heartbeat(names_only.step(0));
    assert!(!join.regex_set, "a member that never had a pattern leaves the field out");

    let mut member = ConsumerMember::new(config(None), BTreeSet::new(), 0).unwrap();
    assert!(member.set_pattern("orders-.*"), "the consumer protocol resolves patterns on the coordinator");
    let join = heartbeat(member.step(0));
    assert_eq!((join.regex_set, join.subscribed_regex.as_str()), (true, "orders-.*"));
    assert!(join.subscribed_topics.is_empty());
    member.on_answer(1, answer("m1", 1, &[]));
    let beat = heartbeat(member.step(1 + HEARTBEAT_MS));
    assert_eq!((beat.regex_set, beat.subscribed_regex.as_str()), (true, "orders-.*"), "every heartbeat carries the full subscription");
    member.on_answer(2 + HEARTBEAT_MS, answer("m1", 1, &[]));
    // Back to names: the next heartbeat goes at once and clears the pattern.
    member.set_subscription(["t".to_string()].into());
    assert!(member.set_pattern(""));
    let beat = heartbeat(member.step(3 + HEARTBEAT_MS));
    assert_eq!((beat.regex_set, beat.subscribed_regex.as_str()), (true, ""));
    assert_eq!(beat.subscribed_topics.to_vec(), ["t"]);
}
