//! The consumer protocol (KIP-848) as transitions of a group's [`Membership`]: one heartbeat
//! request carries joins, leaves, subscription changes and the partitions a member owns; the
//! coordinator answers with the member's epoch and assignment.
//!
//! The group epoch moves on every change of members, subscriptions, assignor or subscribed
//! partition counts; the target assignment is then recomputed by the server-side assignor
//! ([`super::assignor`]). Each member reconciles toward its target on its own heartbeats:
//! 1. while it owns partitions the target moved away, it is asked to revoke them (they leave
//!    its assignment and wait in `revoking`, its epoch unchanged) until a heartbeat reports it
//!    no longer owns them;
//! 2. then it moves to the target epoch, keeping its target partitions and receiving those no
//!    other member owns; partitions another member still owns come on a later heartbeat.
//!
//! So no partition is ever owned by two members (checked by [`Membership::check`] on every
//! write), and a member keeps every partition that does not move (incremental, no
//! stop-the-world rebalance).
//!
//! These are pure functions: the caller supplies the partition counts of topics and a fresh
//! member id, and writes the returned membership (if any) before it answers.

use std::collections::BTreeMap;

use regex::Regex;

use super::assignor::{ServerAssignor, ASSIGNOR_DEFAULT};
use super::table::{GroupKind, Member, Membership};
use super::{GroupError, Partitions, MEMBERS_PER_GROUP_MAX, MEMBER_ID_BYTES_MAX, SUBSCRIBED_REGEX_BYTES_MAX, SUBSCRIBED_TOPICS_MAX};

/// A `ConsumerGroupHeartbeat` as the coordinator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub member_id: String,
    /// 0 join, -1 leave, -2 static temporary leave, otherwise the member's epoch.
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rebalance_timeout_ms: u32,
    /// `None`: unchanged since the last heartbeat.
    pub subscription: Option<Vec<String>>,
    /// A regular expression (KIP-848 SubscribedTopicRegex): the member also subscribes to every
    /// topic whose whole name matches it, now or created later. `None`: unchanged; `Some("")`:
    /// no regex.
    pub subscribed_regex: Option<String>,
    /// `None`: unchanged (or the default on a join).
    pub server_assignor: Option<String>,
    /// `None`: not reported.
    pub owned: Option<Partitions>,
    pub client_id: String,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub assignment: Partitions,
}

/// What a heartbeat decided: the membership to write first (when it changed), then the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub membership: Option<Membership>,
    pub answer: HeartbeatAnswer,
}

/// Planted bugs of this module (all off in production; see `crate::planted`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// A member at the target epoch receives its target partitions even while another member
    /// still owns them (one partition, two owners: the checker's ownership rule must catch it).
    pub give_owned_partitions: bool,
    /// A subscribed regex matches anywhere in a topic's name, not the whole name (C8).
    pub regex_matches_substring: bool,
}

/// The compiled whole-name regexes of one group's members (see [`whole_name_regex`]), kept by
/// the coordinator's live state between heartbeats so that a subscribed regex is compiled once
/// when it appears, not on every heartbeat (validated, then resolved against the topics).
/// After each heartbeat only the patterns of the group's members stay (at most
/// `MEMBERS_PER_GROUP_MAX`); a refused pattern is never kept, so it is compiled, and refused,
/// again on each request that sends it. Volatile: a new coordinator term starts empty.
#[derive(Clone, Debug, Default)]
pub struct RegexCache {
    compiled: BTreeMap<String, Regex>,
    /// Compilations so far (each one is two `regex` builds: alone, then anchored).
    compilations: u64,
}

impl RegexCache {
    /// `pattern` compiled for whole names: cached, or compiled now (and cached if valid).
    fn whole_name(&mut self, pattern: &str) -> Result<&Regex, GroupError> {
        if !self.compiled.contains_key(pattern) {
            self.compilations += 1;
            let regex = whole_name_regex(pattern)?;
            self.compiled.insert(pattern.to_string(), regex);
        }
        Ok(&self.compiled[pattern])
    }

    /// Keeps only the patterns `membership`'s members subscribe with.
    fn retain_members_of(&mut self, membership: Option<&Membership>) {
        let patterns: std::collections::BTreeSet<&str> =
            membership.into_iter().flat_map(|m| m.members.values().filter_map(|member| member.subscribed_regex.as_deref())).collect();
        self.compiled.retain(|pattern, _| patterns.contains(pattern.as_str()));
    }

    /// How many patterns were compiled through this cache.
    pub fn compilations(&self) -> u64 {
        self.compilations
    }

    /// How many compiled patterns it holds.
    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }
}

/// Applies one heartbeat to `current` (None: an unknown group). `topics` holds every topic
/// that exists (internal ones aside) with its partition count; `new_member_id` a fresh id when
/// the member names none. Compiles the regexes it needs afresh: [`heartbeat_cached`] with a
/// cache that lives only for this call.
pub fn heartbeat(
    current: Option<&Membership>,
    request: &HeartbeatRequest,
    topics: &BTreeMap<String, u32>,
    new_member_id: &mut dyn FnMut() -> String,
    planted: Planted,
) -> Result<Decision, GroupError> {
    heartbeat_cached(current, request, topics, new_member_id, planted, &mut RegexCache::default())
}

/// [`heartbeat`] with the group's compiled regexes in `regexes` (the coordinator keeps one per
/// group): the answer is the same, only the compilations are saved.
pub fn heartbeat_cached(
    current: Option<&Membership>,
    request: &HeartbeatRequest,
    topics: &BTreeMap<String, u32>,
    new_member_id: &mut dyn FnMut() -> String,
    planted: Planted,
    regexes: &mut RegexCache,
) -> Result<Decision, GroupError> {
    let decision = decide(current, request, topics, new_member_id, planted, regexes);
    let kept = match &decision {
        Ok(Decision { membership: Some(membership), .. }) => Some(membership),
        _ => current,
    };
    regexes.retain_members_of(kept);
    decision
}

fn decide(
    current: Option<&Membership>,
    request: &HeartbeatRequest,
    topics: &BTreeMap<String, u32>,
    new_member_id: &mut dyn FnMut() -> String,
    planted: Planted,
    regexes: &mut RegexCache,
) -> Result<Decision, GroupError> {
    validate(request, regexes)?;
    let mut membership = current.cloned().unwrap_or_default();
    match membership.kind {
        Some(GroupKind::Classic) if !membership.members.is_empty() => {
            return Err(GroupError::InconsistentGroupProtocol("the group is a classic group with members; use JoinGroup".into()))
        }
        Some(GroupKind::Consumer) => {}
        _ => {
            membership.kind = Some(GroupKind::Consumer);
            membership.protocol_type = "consumer".into();
            membership.leader.clear();
            if membership.protocol_name.is_empty() {
                membership.protocol_name = ASSIGNOR_DEFAULT.into();
            }
        }
    }
    let epoch_before = membership.epoch;
    let member_id = match request.member_epoch {
        0 => join(&mut membership, request, new_member_id)?,
        -1 => {
            let member_id = existing(&membership, request)?.member_id.clone();
            remove_member(&mut membership, &member_id);
            return Ok(Decision {
                membership: Some(membership),
                answer: HeartbeatAnswer { member_id, member_epoch: -1, ..HeartbeatAnswer::default() },
            });
        }
        -2 => {
            let member = existing(&membership, request)?;
            if member.instance_id.is_none() {
                return Err(GroupError::InvalidRequest("only a static member (with an instance id) may leave with epoch -2".into()));
            }
            let member_id = member.member_id.clone();
            membership.members.get_mut(&member_id).expect("found").left = true;
            let answer = HeartbeatAnswer { member_id, member_epoch: -2, ..HeartbeatAnswer::default() };
            return Ok(Decision { membership: changed(current, membership), answer });
        }
        epoch if epoch > 0 => {
            let member = existing(&membership, request)?;
            let lost_answer =
                epoch == member.member_epoch_previous && request.owned.as_ref().is_some_and(|owned| owned.is_subset(&member.assigned));
            if epoch != member.member_epoch && !lost_answer {
                return Err(GroupError::FencedMemberEpoch { current: member.member_epoch, got: epoch });
            }
            member.member_id.clone()
        }
        other => return Err(GroupError::InvalidRequest(format!("member epoch {other} is not a heartbeat's (0, -1, -2 or positive)"))),
    };
    update_member(&mut membership, &member_id, request)?;
    // One heartbeat moves the group epoch at most once, however many things it changed.
    membership.epoch = membership.epoch.min(epoch_before + 1);
    refresh_target(&mut membership, topics, planted, regexes);
    reconcile(&mut membership, &member_id, planted);
    let member = &membership.members[&member_id];
    let answer = HeartbeatAnswer { member_id: member_id.clone(), member_epoch: member.member_epoch, assignment: member.assigned.clone() };
    if !planted.give_owned_partitions {
        membership.check().map_err(GroupError::InvalidRequest)?;
    }
    Ok(Decision { membership: changed(current, membership), answer })
}

fn changed(current: Option<&Membership>, membership: Membership) -> Option<Membership> {
    (current != Some(&membership)).then_some(membership)
}

fn validate(request: &HeartbeatRequest, regexes: &mut RegexCache) -> Result<(), GroupError> {
    let ids = [Some(&request.member_id), request.instance_id.as_ref(), Some(&request.client_id)];
    if ids.into_iter().flatten().any(|id| id.len() > MEMBER_ID_BYTES_MAX) {
        return Err(GroupError::InvalidRequest(format!("a member, instance or client id above {MEMBER_ID_BYTES_MAX} bytes")));
    }
    if request.member_id.chars().any(char::is_control) {
        return Err(GroupError::InvalidRequest(format!("member id {:?} holds control characters", request.member_id)));
    }
    if let Some(topics) = &request.subscription {
        if topics.len() > SUBSCRIBED_TOPICS_MAX {
            return Err(GroupError::InvalidRequest(format!("{} subscribed topics, at most {SUBSCRIBED_TOPICS_MAX}", topics.len())));
        }
    }
    if let Some(name) = &request.server_assignor {
        ServerAssignor::from_name(name)?;
    }
    if let Some(pattern) = request.subscribed_regex.as_deref().filter(|pattern| !pattern.is_empty()) {
        regexes.whole_name(pattern)?;
    }
    Ok(())
}

/// `pattern` compiled to match a topic's whole name (Kafka matches RE2/J patterns with
/// `matches()`, not `find()`): INVALID_REGULAR_EXPRESSION when it does not compile on its own,
/// is longer than [`SUBSCRIBED_REGEX_BYTES_MAX`], or compiles to more than a bounded program.
pub fn whole_name_regex(pattern: &str) -> Result<Regex, GroupError> {
    let invalid = |why: String| {
        GroupError::InvalidRegularExpression(format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {why}"))
    };
    if pattern.len() > SUBSCRIBED_REGEX_BYTES_MAX {
        return Err(invalid(format!("{} bytes, at most {SUBSCRIBED_REGEX_BYTES_MAX}", pattern.len())));
    }
    let build = |text: &str| regex::RegexBuilder::new(text).size_limit(REGEX_PROGRAM_BYTES_MAX).build();
    // Compiled alone first: a pattern such as `a)|(b` would otherwise change meaning inside the
    // anchoring group below.
    build(pattern).map_err(|error| invalid(error.to_string()))?;
    build(&format!("^(?:{pattern})$")).map_err(|error| invalid(error.to_string()))
}

/// The compiled size a subscribed regex may reach (the regex crate's `size_limit`).
const REGEX_PROGRAM_BYTES_MAX: usize = 1 << 20;

fn existing<'a>(membership: &'a Membership, request: &HeartbeatRequest) -> Result<&'a Member, GroupError> {
    match membership.members.get(&request.member_id) {
        Some(member) if !member.left => Ok(member),
        _ => Err(GroupError::UnknownMemberId { group: String::new(), member: request.member_id.clone() }),
    }
}

/// A join (epoch 0): a new member (with the id it chose, or a fresh one when it names none), the
/// same member joining again under its id (a retried join, or a rejoin after it was fenced), or
/// a static member taking its instance's place back.
fn join(membership: &mut Membership, request: &HeartbeatRequest, new_member_id: &mut dyn FnMut() -> String) -> Result<String, GroupError> {
    if request.subscription.is_none() && request.subscribed_regex.is_none() {
        return Err(GroupError::InvalidRequest("a joining member must send its subscribed topic names or regex".into()));
    }
    if let Some(instance) = &request.instance_id {
        if let Some(holder) = membership.member_of_instance(instance) {
            let rejoining_itself = !request.member_id.is_empty() && holder.member_id == request.member_id;
            if !holder.left && !rejoining_itself {
                return Err(GroupError::UnreleasedInstanceId { instance: instance.clone(), member: holder.member_id.clone() });
            }
            // The instance comes back: the new member takes the old one's assignment, epoch
            // and target, and the group epoch stays (no rebalance for a quick restart).
            let old_id = holder.member_id.clone();
            let mut member = membership.members.remove(&old_id).expect("found");
            member.member_id = if request.member_id.is_empty() { new_member_id() } else { request.member_id.clone() };
            member.left = false;
            let id = member.member_id.clone();
            membership.members.insert(id.clone(), member);
            if let Some(target) = membership.target.remove(&old_id) {
                membership.target.insert(id.clone(), target);
            }
            return Ok(id);
        }
    }
    if let Some(member) = membership.members.get(&request.member_id) {
        // The same member joining again under the id it chose (KIP-1082: a Kafka 4 client keeps
        // one member id for its life): a join whose answer was lost, or a member that was fenced
        // and released what it owned. It stays the member it is — its epoch and assignment, no
        // new member and no rebalance — and the answer brings it up to date; what it no longer
        // owns (its report on a join is empty) is released from `revoking` by `update_member`.
        if member.instance_id != request.instance_id {
            return Err(GroupError::InvalidRequest(format!(
                "member id {:?} belongs to a member with instance id {:?}, not {:?}",
                request.member_id, member.instance_id, request.instance_id
            )));
        }
        return Ok(request.member_id.clone());
    }
    if membership.members.len() >= MEMBERS_PER_GROUP_MAX {
        return Err(GroupError::GroupMaxSizeReached(format!("the group has {MEMBERS_PER_GROUP_MAX} members")));
    }
    let member_id = if request.member_id.is_empty() { new_member_id() } else { request.member_id.clone() };
    membership
        .members
        .insert(member_id.clone(), Member { member_id: member_id.clone(), instance_id: request.instance_id.clone(), ..Member::default() });
    membership.epoch += 1;
    Ok(member_id)
}

/// Takes the request's fields into the member; a subscription or assignor change moves the
/// group epoch.
fn update_member(membership: &mut Membership, member_id: &str, request: &HeartbeatRequest) -> Result<(), GroupError> {
    if let Some(name) = &request.server_assignor {
        let assignor = ServerAssignor::from_name(name)?.name();
        if membership.protocol_name != assignor {
            membership.protocol_name = assignor.to_string();
            membership.epoch += 1;
        }
    }
    let member = membership.members.get_mut(member_id).expect("the member exists");
    member.client_id.clone_from(&request.client_id);
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    if let Some(topics) = &request.subscription {
        let mut topics = topics.clone();
        topics.sort();
        topics.dedup();
        if member.subscribed != topics {
            member.subscribed = topics;
            membership.epoch += 1;
        }
    }
    if let Some(pattern) = &request.subscribed_regex {
        let pattern = Some(pattern.clone()).filter(|pattern| !pattern.is_empty());
        if member.subscribed_regex != pattern {
            member.subscribed_regex = pattern;
            membership.epoch += 1;
        }
    }
    if let Some(owned) = &request.owned {
        // What it no longer owns is released: revocation confirmed.
        member.revoking.retain(|partition| owned.contains(partition));
    }
    Ok(())
}

/// Recomputes the target when the group epoch moved past it, or the subscribed topics or their
/// partition counts changed (which moves the epoch first): a topic created, deleted or grown
/// that a member names or its regex matches.
fn refresh_target(membership: &mut Membership, topics: &BTreeMap<String, u32>, planted: Planted, regexes: &mut RegexCache) {
    let subscriptions = resolved_subscriptions(membership, topics, planted, regexes);
    let counts: BTreeMap<String, u32> =
        subscriptions.values().flatten().filter_map(|topic| Some((topic.clone(), *topics.get(topic)?))).collect();
    if counts != membership.subscribed_partitions && membership.assignment_epoch == membership.epoch {
        membership.epoch += 1;
    }
    if membership.epoch == membership.assignment_epoch {
        return;
    }
    let assignor = ServerAssignor::from_name(&membership.protocol_name).unwrap_or(ServerAssignor::Uniform);
    membership.target = assignor.assign(&subscriptions, &counts, &membership.target);
    membership.subscribed_partitions = counts;
    membership.assignment_epoch = membership.epoch;
}

/// Each member's subscription as the assignor sees it: the topics it names (existing or not)
/// and every existing topic its regex matches, sorted. Each distinct regex is matched once, from
/// `regexes` (compiled there when it is new); one that no longer compiles (it was checked when
/// the member sent it) matches nothing.
fn resolved_subscriptions(
    membership: &Membership,
    topics: &BTreeMap<String, u32>,
    planted: Planted,
    regexes: &mut RegexCache,
) -> BTreeMap<String, Vec<String>> {
    let mut matched: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for pattern in membership.members.values().filter_map(|member| member.subscribed_regex.as_deref()) {
        if matched.contains_key(pattern) {
            continue;
        }
        let topics_matched = if planted.regex_matches_substring {
            Regex::new(pattern).map(|regex| topics.keys().filter(|topic| regex.is_match(topic)).collect()).unwrap_or_default()
        } else {
            regexes.whole_name(pattern).map(|regex| topics.keys().filter(|topic| regex.is_match(topic)).collect()).unwrap_or_default()
        };
        matched.insert(pattern, topics_matched);
    }
    membership
        .members
        .iter()
        .map(|(id, member)| {
            let mut subscribed = member.subscribed.clone();
            if let Some(pattern) = member.subscribed_regex.as_deref() {
                subscribed.extend(matched[pattern].iter().map(|topic| (*topic).clone()));
                subscribed.sort();
                subscribed.dedup();
            }
            (id.clone(), subscribed)
        })
        .collect()
}

/// Moves `member_id` one step toward its target (see the module comment).
pub fn reconcile(membership: &mut Membership, member_id: &str, planted: Planted) {
    let target_epoch = membership.assignment_epoch;
    let target = membership.target.get(member_id).cloned().unwrap_or_default();
    let owned_by_others: Partitions =
        membership.members.iter().filter(|(id, _)| id.as_str() != member_id).flat_map(|(_, member)| member.owned().cloned()).collect();
    let member = membership.members.get_mut(member_id).expect("reconciling a member of the group");
    if !member.revoking.is_empty() {
        return;
    }
    if member.member_epoch < target_epoch {
        let revoke: Partitions = member.assigned.difference(&target).cloned().collect();
        if !revoke.is_empty() {
            member.assigned.retain(|partition| !revoke.contains(partition));
            member.revoking = revoke;
            return;
        }
        member.member_epoch_previous = member.member_epoch;
        member.member_epoch = target_epoch;
    }
    let free: Partitions =
        if planted.give_owned_partitions { target.clone() } else { target.difference(&owned_by_others).cloned().collect() };
    let kept: Partitions = member.assigned.intersection(&target).cloned().collect();
    member.assigned = kept.union(&free).cloned().collect();
    debug_assert!(member.assigned.is_subset(&target));
}

/// Removes a member (left, session expired, or fenced): its partitions are free, the group
/// epoch moves. An emptied group keeps its offsets and loses its kind.
pub fn remove_member(membership: &mut Membership, member_id: &str) {
    assert!(membership.members.remove(member_id).is_some(), "removing a member that is not in the group");
    membership.target.remove(member_id);
    membership.epoch += 1;
    if membership.members.is_empty() {
        let epoch = membership.epoch;
        *membership = Membership { epoch, assignment_epoch: epoch, ..Membership::default() };
    }
}

#[cfg(test)]
mod tests;
