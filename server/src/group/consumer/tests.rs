use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// The topics of the cluster in most tests: `t` with 6 partitions, `u` with 2.
fn topics() -> BTreeMap<String, u32> {
    [("t".to_string(), 6), ("u".to_string(), 2)].into_iter().collect()
}

struct Fixture {
    membership: Option<Membership>,
    issued: u64,
    topics: BTreeMap<String, u32>,
    /// The group's compiled regexes, kept across heartbeats as the coordinator keeps them.
    regexes: RegexCache,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { membership: None, issued: 0, topics: topics(), regexes: RegexCache::default() }
    }

    fn beat(&mut self, request: HeartbeatRequest) -> Result<HeartbeatAnswer, GroupError> {
        self.beat_with(request, Planted::default())
    }

    fn beat_with(&mut self, request: HeartbeatRequest, planted: Planted) -> Result<HeartbeatAnswer, GroupError> {
        let issued = &mut self.issued;
        let mut new_id = || {
            *issued += 1;
            format!("m{issued}")
        };
        let decision = heartbeat_cached(self.membership.as_ref(), &request, &self.topics, &mut new_id, planted, &mut self.regexes)?;
        if let Some(next) = decision.membership {
            self.membership = Some(next);
        }
        Ok(decision.answer)
    }

    fn member(&self, id: &str) -> &crate::group::table::Member {
        &self.membership.as_ref().unwrap().members[id]
    }
}

fn join(subscription: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        member_epoch: 0,
        subscription: Some(subscription.iter().map(|s| s.to_string()).collect()),
        rebalance_timeout_ms: 5_000,
        ..HeartbeatRequest::default()
    }
}

fn beat(answer: &HeartbeatAnswer, owned: &Partitions) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: answer.member_id.clone(),
        member_epoch: answer.member_epoch,
        owned: Some(owned.clone()),
        rebalance_timeout_ms: 5_000,
        ..HeartbeatRequest::default()
    }
}

#[test]
fn a_joining_member_gets_free_partitions_at_once() {
    let mut group = Fixture::new();
    let a = group.beat(join(&["t"])).unwrap();
    assert_eq!((a.member_id.as_str(), a.member_epoch, a.assignment.len()), ("m1", 1, 6));
    let membership = group.membership.as_ref().unwrap();
    assert_eq!((membership.epoch, membership.assignment_epoch), (1, 1));
}

#[test]
fn partitions_move_only_after_their_owner_revoked_them() {
    let mut group = Fixture::new();
    let a = group.beat(join(&["t"])).unwrap();
    let b = group.beat(join(&["t"])).unwrap();
    // b is at the new epoch but gets nothing: a still owns everything.
    assert_eq!((b.member_epoch, b.assignment.len()), (2, 0));
    // a is asked to give up three partitions; its epoch stays until it confirms.
    let a2 = group.beat(beat(&a, &a.assignment)).unwrap();
    assert_eq!((a2.member_epoch, a2.assignment.len()), (1, 3));
    assert_eq!(group.member(&a.member_id).revoking.len(), 3);
    // b still gets nothing while a has not confirmed.
    let b2 = group.beat(beat(&b, &b.assignment)).unwrap();
    assert!(b2.assignment.is_empty());
    // a confirms (owns only its three now) and moves to epoch 2.
    let a3 = group.beat(beat(&a2, &a2.assignment)).unwrap();
    assert_eq!((a3.member_epoch, a3.assignment.len()), (2, 3));
    let b3 = group.beat(beat(&b2, &b2.assignment)).unwrap();
    assert_eq!(b3.assignment.len(), 3);
    assert!(a3.assignment.is_disjoint(&b3.assignment));
}

#[test]
fn a_wrong_epoch_is_fenced_but_a_lost_answer_is_forgiven() {
    let mut group = Fixture::new();
    let a = group.beat(join(&["t", "u"])).unwrap();
    let mut stale = beat(&a, &a.assignment);
    stale.member_epoch = a.member_epoch + 5;
    assert!(matches!(group.beat(stale), Err(GroupError::FencedMemberEpoch { .. })));
    // b joins; a's next answer (epoch 1 → revoking) is "lost", a sends epoch 1 again: fine.
    group.beat(join(&["t"])).unwrap();
    let a2 = group.beat(beat(&a, &a.assignment)).unwrap();
    let a3 = group.beat(beat(&a2, &a2.assignment)).unwrap();
    assert_eq!(a3.member_epoch, 2);
    let previous = HeartbeatRequest { member_epoch: 1, ..beat(&a3, &a3.assignment) };
    assert_eq!(group.beat(previous).unwrap().member_epoch, 2, "the previous epoch with owned ⊆ assigned is accepted");
    let unknown = HeartbeatRequest { member_id: "nobody".into(), member_epoch: 3, ..HeartbeatRequest::default() };
    assert!(matches!(group.beat(unknown), Err(GroupError::UnknownMemberId { .. })));
}

#[test]
fn a_retried_join_with_the_members_own_id_is_the_same_member() {
    let mut group = Fixture::new();
    let chosen = HeartbeatRequest { member_id: "3f2a-client-chosen".into(), ..join(&["t"]) };
    let a = group.beat(chosen.clone()).unwrap();
    assert_eq!(a.member_id, "3f2a-client-chosen", "the coordinator keeps the id the member chose");
    let b = group.beat(join(&["t"])).unwrap();
    let epoch = group.membership.as_ref().unwrap().epoch;
    // a's answer was lost: it joins again, same id, epoch 0, owning nothing.
    let again = group.beat(chosen.clone()).unwrap();
    let membership = group.membership.as_ref().unwrap();
    assert_eq!(membership.members.len(), 2, "no second member for a retried join");
    assert_eq!(membership.epoch, epoch, "and no rebalance");
    assert_eq!((again.member_id.as_str(), again.member_epoch), ("3f2a-client-chosen", a.member_epoch));
    assert_eq!(again.assignment, group.member(&a.member_id).assigned, "it learns what it owns now");
    assert!(again.assignment.is_disjoint(&group.member(&b.member_id).owned().cloned().collect()));
    // Bad ids: refused definitely.
    let control = HeartbeatRequest { member_id: "a\nb".into(), ..join(&["t"]) };
    assert!(matches!(group.beat(control), Err(GroupError::InvalidRequest(_))));
    let long = HeartbeatRequest { member_id: "m".repeat(MEMBER_ID_BYTES_MAX + 1), ..join(&["t"]) };
    assert!(matches!(group.beat(long), Err(GroupError::InvalidRequest(_))));
    let stolen = HeartbeatRequest { instance_id: Some("host-z".into()), ..chosen };
    assert!(matches!(group.beat(stolen), Err(GroupError::InvalidRequest(_))), "a dynamic member's id with an instance id");
}

#[test]
fn a_static_member_comes_back_without_a_rebalance() {
    let mut group = Fixture::new();
    let request = HeartbeatRequest { instance_id: Some("host-1".into()), ..join(&["t"]) };
    let a = group.beat(request.clone()).unwrap();
    let other = group.beat(join(&["t"])).unwrap();
    let _ = other;
    let epoch = group.membership.as_ref().unwrap().epoch;
    let leave = HeartbeatRequest { member_epoch: -2, ..beat(&a, &a.assignment) };
    assert_eq!(group.beat(leave).unwrap().member_epoch, -2);
    let before = group.member(&a.member_id).clone();
    let back = group.beat(request).unwrap();
    assert_ne!(back.member_id, a.member_id, "a new member id");
    assert_eq!(group.membership.as_ref().unwrap().epoch, epoch, "no rebalance");
    let owned = |member: &crate::group::table::Member| member.owned().cloned().collect::<Partitions>();
    assert_eq!(owned(group.member(&back.member_id)), owned(&before), "it owns what its instance owned");
    // A second process claiming the live instance is refused.
    let thief = HeartbeatRequest { instance_id: Some("host-1".into()), ..join(&["t"]) };
    assert!(matches!(group.beat(thief), Err(GroupError::UnreleasedInstanceId { .. })));
}

#[test]
fn leaving_frees_partitions_and_moves_the_epoch() {
    let mut group = Fixture::new();
    let a = group.beat(join(&["t"])).unwrap();
    let leave = HeartbeatRequest { member_epoch: -1, ..beat(&a, &a.assignment) };
    assert_eq!(group.beat(leave).unwrap().member_epoch, -1);
    let membership = group.membership.as_ref().unwrap();
    assert!(membership.members.is_empty());
    assert_eq!(membership.kind, None, "an empty group can become a classic one");
    let b = group.beat(join(&["t"])).unwrap();
    assert_eq!(b.assignment.len(), 6);
    assert!(b.member_epoch > a.member_epoch);
}

#[test]
fn the_planted_bug_gives_one_partition_two_owners() {
    let mut group = Fixture::new();
    let planted = Planted { give_owned_partitions: true, ..Planted::default() };
    group.beat_with(join(&["t"]), planted).unwrap();
    group.beat_with(join(&["t"]), planted).unwrap();
    let membership = group.membership.clone().unwrap();
    assert!(membership.check().is_err(), "two owners of one partition");
    // It reaches the members only if the log takes it: the planted node's table does (on every
    // replica of a planted run), a normal one refuses it.
    let record = crate::group::record::Record::Group { group: "g".into(), base_index: 0, membership }.encode();
    let mut planted_table = crate::group::table::GroupTable::with_planted_two_owners(true);
    assert_eq!(planted_table.apply(1, &record), crate::group::table::Outcome::Applied);
    let mut table = crate::group::table::GroupTable::new();
    assert!(matches!(table.apply(1, &record), crate::group::table::Outcome::Refused(GroupError::InvalidRequest(_))));
}

/// A member as a well-behaved client runs it: it owns what it was last told.
#[derive(Clone, Debug)]
enum Action {
    Join {
        instance: bool,
    },
    Beat {
        member: usize,
    },
    Leave {
        member: usize,
    },
    Subscribe {
        member: usize,
        both: bool,
    },
    Expire {
        member: usize,
    },
    /// The member's last answer was lost and it joins again under its id, owning nothing.
    RetryJoin {
        member: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => any::<bool>().prop_map(|instance| Action::Join { instance }),
        8 => (0usize..6).prop_map(|member| Action::Beat { member }),
        1 => (0usize..6).prop_map(|member| Action::Leave { member }),
        1 => (0usize..6, any::<bool>()).prop_map(|(member, both)| Action::Subscribe { member, both }),
        1 => (0usize..6).prop_map(|member| Action::Expire { member }),
        1 => (0usize..6).prop_map(|member| Action::RetryJoin { member }),
    ]
}

proptest! {
    /// Whatever members do, no partition ever has two owners, and once they all keep
    /// heartbeating, every member reaches the target epoch holding exactly its target.
    #[test]
    fn ownership_stays_exclusive_and_converges(actions in prop::collection::vec(action(), 1..60)) {
        let mut group = Fixture::new();
        let mut clients: BTreeMap<String, HeartbeatAnswer> = BTreeMap::new();
        let mut instances = 0;
        for action in actions {
            let ids: Vec<String> = clients.keys().cloned().collect();
            let pick = |i: usize| ids.get(i % ids.len().max(1)).cloned();
            match action {
                Action::Join { instance } => {
                    instances += 1;
                    let request = HeartbeatRequest { instance_id: instance.then(|| format!("i{instances}")), ..join(&["t"]) };
                    if let Ok(answer) = group.beat(request) {
                        clients.insert(answer.member_id.clone(), answer);
                    }
                }
                Action::Beat { member } | Action::Subscribe { member, .. } | Action::RetryJoin { member } if ids.is_empty() => { let _ = member; }
                Action::RetryJoin { member } => {
                    let id = pick(member).unwrap();
                    let members_before = group.membership.as_ref().map_or(0, |m| m.members.len());
                    let instance_id = group.member(&id).instance_id.clone();
                    let answer = group.beat(HeartbeatRequest { member_id: id.clone(), instance_id, owned: Some(Partitions::new()), ..join(&["t"]) });
                    prop_assert!(answer.is_ok(), "a retried join failed: {:?}", answer);
                    prop_assert_eq!(group.membership.as_ref().unwrap().members.len(), members_before, "a retried join added a member");
                    clients.insert(id, answer.unwrap());
                }
                Action::Beat { member } => {
                    let id = pick(member).unwrap();
                    let last = clients[&id].clone();
                    let answer = group.beat(beat(&last, &last.assignment));
                    prop_assert!(answer.is_ok(), "a well-behaved member's heartbeat failed: {:?}", answer);
                    clients.insert(id, answer.unwrap());
                }
                Action::Subscribe { member, both } => {
                    let id = pick(member).unwrap();
                    let last = clients[&id].clone();
                    let topics: Vec<String> = if both { vec!["t".into(), "u".into()] } else { vec!["u".into()] };
                    let request = HeartbeatRequest { subscription: Some(topics), ..beat(&last, &last.assignment) };
                    let answer = group.beat(request);
                    prop_assert!(answer.is_ok(), "a subscription change failed: {:?}", answer);
                    clients.insert(id, answer.unwrap());
                }
                Action::Leave { member } | Action::Expire { member } if ids.is_empty() => { let _ = member; }
                Action::Leave { member } => {
                    let id = pick(member).unwrap();
                    let last = clients.remove(&id).unwrap();
                    let _ = group.beat(HeartbeatRequest { member_epoch: -1, ..beat(&last, &last.assignment) });
                }
                Action::Expire { member } => {
                    let id = pick(member).unwrap();
                    clients.remove(&id);
                    if let Some(membership) = group.membership.as_mut() {
                        if membership.members.contains_key(&id) { remove_member(membership, &id); }
                    }
                }
            }
            if let Some(membership) = &group.membership {
                prop_assert!(membership.check().is_ok(), "{:?}", membership.check());
            }
        }
        // Quiescence: everyone heartbeats until nothing changes.
        for _ in 0..6 {
            for id in clients.keys().cloned().collect::<Vec<_>>() {
                let last = clients[&id].clone();
                let answer = group.beat(beat(&last, &last.assignment)).expect("a live member keeps its place");
                clients.insert(id, answer);
            }
        }
        if let Some(membership) = &group.membership {
            for (id, member) in &membership.members {
                prop_assert_eq!(member.member_epoch, membership.assignment_epoch, "{} converged", id);
                let target = membership.target.get(id).cloned().unwrap_or_default();
                prop_assert_eq!(&member.assigned, &target);
                prop_assert!(member.revoking.is_empty());
            }
        }
    }
}

// ---- regex subscriptions (KIP-848 SubscribedTopicRegex) --------------------------------------

fn join_regex(pattern: &str) -> HeartbeatRequest {
    HeartbeatRequest { member_epoch: 0, subscribed_regex: Some(pattern.into()), rebalance_timeout_ms: 5_000, ..HeartbeatRequest::default() }
}

fn topics_of(assignment: &Partitions) -> Vec<&str> {
    let mut names: Vec<&str> = assignment.iter().map(|(topic, _)| topic.as_str()).collect();
    names.dedup();
    names
}

#[test]
fn a_regex_subscribes_to_every_topic_whose_whole_name_matches() {
    let mut group = Fixture::new();
    group.topics.insert("orders-eu".into(), 2);
    group.topics.insert("orders-us".into(), 1);
    group.topics.insert("old-orders-eu".into(), 3);
    // `orders-.*` matches a whole name: not `old-orders-eu`, which only contains a match.
    let a = group.beat(join_regex("orders-.*")).unwrap();
    assert_eq!(topics_of(&a.assignment), ["orders-eu", "orders-us"]);
    assert_eq!(a.assignment.len(), 3);
    assert_eq!(group.member(&a.member_id).subscribed_regex.as_deref(), Some("orders-.*"));
}

#[test]
fn a_topic_created_later_that_the_regex_matches_joins_the_assignment() {
    let mut group = Fixture::new();
    let a = group.beat(join_regex("t|new")).unwrap();
    assert_eq!((topics_of(&a.assignment), a.member_epoch), (vec!["t"], 1));
    // The coordinator sees the new topic on the member's next heartbeat: the group epoch moves
    // and the member gets its partitions, with nothing sent about its subscription.
    group.topics.insert("new".into(), 2);
    let a = group.beat(beat(&a, &a.assignment)).unwrap();
    assert_eq!((topics_of(&a.assignment), a.member_epoch), (vec!["new", "t"], 2));
    // Deleted again: its partitions leave the target; the member is asked to revoke them.
    group.topics.remove("new");
    let a = group.beat(beat(&a, &a.assignment)).unwrap();
    assert_eq!(topics_of(&a.assignment), ["t"]);
}

#[test]
fn names_and_a_regex_add_up_and_an_empty_regex_drops_it() {
    let mut group = Fixture::new();
    group.topics.insert("logs-a".into(), 1);
    let joined = HeartbeatRequest { subscription: Some(vec!["u".into()]), ..join_regex("logs-.*") };
    let a = group.beat(joined).unwrap();
    assert_eq!(topics_of(&a.assignment), ["logs-a", "u"]);
    let epoch = group.membership.as_ref().unwrap().epoch;
    // "" removes the regex (a move of the group epoch); the named topic stays.
    let a = group.beat(HeartbeatRequest { subscribed_regex: Some(String::new()), ..beat(&a, &a.assignment) }).unwrap();
    assert_eq!(group.membership.as_ref().unwrap().epoch, epoch + 1);
    assert_eq!(topics_of(&a.assignment), ["u"]);
    assert_eq!(group.member(&a.member_id).subscribed_regex, None);
}

#[test]
fn members_with_one_regex_share_its_topics() {
    let mut group = Fixture::new();
    let a = group.beat(join_regex("[tu]")).unwrap();
    let b = group.beat(join_regex("[tu]")).unwrap();
    let a = group.beat(beat(&a, &a.assignment)).unwrap();
    let a = group.beat(beat(&a, &a.assignment)).unwrap();
    let b = group.beat(beat(&b, &b.assignment)).unwrap();
    assert_eq!(a.assignment.len() + b.assignment.len(), 8, "t's 6 and u's 2 partitions, each once");
    assert!(a.assignment.is_disjoint(&b.assignment));
}

#[test]
fn a_regex_that_does_not_compile_is_refused_and_changes_nothing() {
    let mut group = Fixture::new();
    for pattern in ["orders-(", "a)|(b", "[z-a]"] {
        let refused = group.beat(join_regex(pattern));
        assert!(matches!(refused, Err(GroupError::InvalidRegularExpression(_))), "{pattern}: {refused:?}");
        assert_eq!(refused.unwrap_err().code(), odradek_client::wire::proto::ErrorCode::INVALID_REGULAR_EXPRESSION);
    }
    let too_long = "a".repeat(crate::group::SUBSCRIBED_REGEX_BYTES_MAX + 1);
    assert!(matches!(group.beat(join_regex(&too_long)), Err(GroupError::InvalidRegularExpression(_))));
    assert!(group.membership.is_none(), "nothing was written");
    // A member already in the group keeps its subscription when its new regex is refused.
    let a = group.beat(join_regex("t")).unwrap();
    let refused = group.beat(HeartbeatRequest { subscribed_regex: Some("(".into()), ..beat(&a, &a.assignment) });
    assert!(matches!(refused, Err(GroupError::InvalidRegularExpression(_))));
    assert_eq!(group.member(&a.member_id).subscribed_regex.as_deref(), Some("t"));
}

#[test]
fn a_regex_is_compiled_once_while_members_use_it_and_an_invalid_one_is_refused_every_time() {
    let mut group = Fixture::new();
    let a = group.beat(join_regex("[tu]")).unwrap();
    assert_eq!(group.regexes.compilations(), 1);
    let mut a = group.beat(beat(&a, &a.assignment)).unwrap();
    let b = group.beat(join_regex("[tu]")).unwrap();
    for _ in 0..5 {
        a = group.beat(HeartbeatRequest { subscribed_regex: Some("[tu]".into()), ..beat(&a, &a.assignment) }).unwrap();
    }
    assert_eq!(group.regexes.compilations(), 1, "validated and resolved from the cache on every later heartbeat");
    // An invalid pattern: INVALID_REGULAR_EXPRESSION each time, never cached.
    for _ in 0..2 {
        let refused = group.beat(HeartbeatRequest { subscribed_regex: Some("orders-(".into()), ..beat(&b, &b.assignment) });
        assert!(matches!(refused, Err(GroupError::InvalidRegularExpression(_))), "{refused:?}");
        assert_eq!(refused.unwrap_err().code(), odradek_client::wire::proto::ErrorCode::INVALID_REGULAR_EXPRESSION);
    }
    assert_eq!(group.regexes.compilations(), 3);
    assert_eq!(group.regexes.len(), 1, "only the members' pattern is kept");
    // A change of pattern compiles the new one; the old one goes once no member uses it.
    let a = group.beat(HeartbeatRequest { subscribed_regex: Some("t".into()), ..beat(&a, &a.assignment) }).unwrap();
    let _ = group.beat(HeartbeatRequest { subscribed_regex: Some("t".into()), ..beat(&b, &b.assignment) }).unwrap();
    assert_eq!(group.regexes.compilations(), 4);
    assert_eq!(group.regexes.len(), 1);
    // Both members leave: nothing is kept.
    let _ = group.beat(HeartbeatRequest { member_epoch: -1, ..beat(&a, &a.assignment) }).unwrap();
    let _ = group.beat(HeartbeatRequest { member_epoch: -1, ..beat(&b, &b.assignment) }).unwrap();
    assert!(group.regexes.is_empty());
}

#[test]
fn a_join_without_names_or_a_regex_is_refused() {
    let mut group = Fixture::new();
    let bare = HeartbeatRequest { member_epoch: 0, rebalance_timeout_ms: 5_000, ..HeartbeatRequest::default() };
    assert!(matches!(group.beat(bare), Err(GroupError::InvalidRequest(_))));
}

#[test]
fn offset_delete_sees_the_topics_a_regex_matched_even_before_anyone_owns_them() {
    let mut group = Fixture::new();
    group.topics.insert("logs-a".into(), 1);
    let a = group.beat(join_regex("logs-.*")).unwrap();
    let mut membership = group.membership.clone().unwrap();
    assert_eq!(membership.subscribed_partitions.keys().collect::<Vec<_>>(), ["logs-a"]);
    // The member has not taken its partition yet (as between a target change and its next
    // heartbeat): the group is subscribed to the topic all the same (GROUP_SUBSCRIBED_TO_TOPIC).
    membership.members.get_mut(&a.member_id).unwrap().assigned.clear();
    let found = crate::group::table::Group { membership, ..crate::group::table::Group::default() };
    assert!(found.subscribed_topics().contains("logs-a"));
}

#[test]
fn the_planted_substring_match_hands_out_a_topic_that_only_contains_a_match() {
    let mut group = Fixture::new();
    group.topics.insert("decoy-t".into(), 1);
    let a = group.beat(join_regex("t")).unwrap();
    assert_eq!(topics_of(&a.assignment), ["t"], "whole names only");
    let mut planted = Fixture::new();
    planted.topics.insert("decoy-t".into(), 1);
    let a = planted.beat_with(join_regex("t"), Planted { regex_matches_substring: true, ..Planted::default() }).unwrap();
    assert_eq!(topics_of(&a.assignment), ["decoy-t", "t"]);
}
