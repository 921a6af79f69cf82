//! The classic protocol (Kafka's JoinGroup / SyncGroup / Heartbeat / LeaveGroup) as transitions
//! of a group's [`Membership`] and its volatile [`Phase`] on the coordinator.
//!
//! A rebalance: a join (or a leave, an expired session, a failed sync) moves the group to
//! `Preparing`; every member must join again within the rebalance timeout (members learn of it
//! from `REBALANCE_IN_PROGRESS` heartbeats). When all have joined, or the deadline passes, the
//! coordinator writes the next generation (members, chosen protocol, leader) and only then
//! answers the joins: the group is `Completing` until the leader member's SyncGroup brings the
//! assignment, which is written before any member receives its part; then `Stable`.
//!
//! What is committed: the generation with its members (at the end of the join phase), the
//! assignment (at the leader's sync), and departures (a leave or an expired session writes the
//! members without it, same generation). Commits are validated against that (C5): a member of
//! the current generation may commit while the next one is being prepared, as in Kafka, but not
//! once a newer generation is written, nor while its assignment is awaited.
//!
//! Static members (an instance id): a member restarting with its instance id takes its old
//! place — new member id, same generation and assignment — without a rebalance, and a static
//! member that stops does not leave: only its session's end removes it.
//!
//! Pure functions: the caller keeps the phase and the waiting requests, supplies member ids and
//! the clock, writes the returned membership and then answers.

use std::collections::BTreeMap;

use super::table::{GroupKind, Member, Membership, Protocol};
use super::{
    GroupError, MEMBERS_PER_GROUP_MAX, MEMBER_ID_BYTES_MAX, PROTOCOLS_PER_MEMBER_MAX, PROTOCOL_BYTES_MAX, REBALANCE_TIMEOUT_MS_MAX,
    SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN,
};

/// Where a classic group is between its committed generations (volatile, coordinator only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Nothing in progress (an empty group, or a generation with its assignment, or one
    /// awaiting it: see [`Membership::awaiting_assignment`]).
    #[default]
    Stable,
    /// Members are (re)joining; the next generation is written when all of `expected` joined or
    /// at `deadline_ms`. `protocol_type` is the group's (the first joiner's, in an empty group):
    /// the next generation carries it.
    Preparing { deadline_ms: i64, joined: BTreeMap<String, Member>, expected: Vec<String>, protocol_type: String },
}

/// A JoinGroup as the coordinator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub client_id: String,
    /// KIP-394: a new dynamic member (no member id, no instance id) is given its id first
    /// ([`GroupError::MemberIdRequired`], by the service) and joins with it.
    pub require_known_member_id: bool,
}

/// What a join does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinStep {
    /// The member (with this id) waits for the generation to be written.
    Wait { member_id: String },
    /// A static member took its instance's place back: write `membership`, then answer at once
    /// with the current generation (and `skip_assignment` if it leads).
    Rejoined { member_id: String, membership: Membership },
}

/// The answer a member gets once its generation is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinAnswer {
    pub generation: i32,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
    pub skip_assignment: bool,
}

/// Checks a join's fields and that it can share the group's protocol.
fn validate(membership: &Membership, phase: &Phase, request: &JoinRequest) -> Result<(), GroupError> {
    if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&request.session_timeout_ms) {
        return Err(GroupError::InvalidSessionTimeout { got: request.session_timeout_ms });
    }
    if request.rebalance_timeout_ms > REBALANCE_TIMEOUT_MS_MAX {
        return Err(GroupError::InvalidRequest(format!("rebalance timeout above {REBALANCE_TIMEOUT_MS_MAX} ms")));
    }
    let ids = [Some(&request.member_id), request.instance_id.as_ref(), Some(&request.client_id)];
    if ids.into_iter().flatten().any(|id| id.len() > MEMBER_ID_BYTES_MAX) {
        return Err(GroupError::InvalidRequest(format!("a member, instance or client id above {MEMBER_ID_BYTES_MAX} bytes")));
    }
    if request.protocol_type.is_empty() || request.protocols.is_empty() || request.protocols.len() > PROTOCOLS_PER_MEMBER_MAX {
        return Err(GroupError::InconsistentGroupProtocol(format!(
            "a join needs a protocol type and 1..={PROTOCOLS_PER_MEMBER_MAX} protocols"
        )));
    }
    if request.protocols.iter().any(|protocol| protocol.metadata.len() > PROTOCOL_BYTES_MAX || protocol.name.len() > MEMBER_ID_BYTES_MAX) {
        return Err(GroupError::InvalidRequest(format!("protocol metadata above {PROTOCOL_BYTES_MAX} bytes")));
    }
    if membership.kind == Some(GroupKind::Consumer) && !membership.members.is_empty() {
        return Err(GroupError::InconsistentGroupProtocol("the group uses the consumer protocol; use ConsumerGroupHeartbeat".into()));
    }
    let (others, protocol_type): (Vec<&Member>, &str) = match phase {
        Phase::Preparing { joined, protocol_type, .. } => {
            (joined.values().filter(|member| member.member_id != request.member_id).collect(), protocol_type)
        }
        Phase::Stable => {
            (membership.members.values().filter(|member| member.member_id != request.member_id).collect(), &membership.protocol_type)
        }
    };
    if let Some(other) = others.first() {
        if protocol_type != request.protocol_type && !protocol_type.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol(format!("the group's protocol type is {protocol_type:?}")));
        }
        let common =
            request.protocols.iter().any(|protocol| others.iter().all(|member| member.protocols.iter().any(|p| p.name == protocol.name)));
        if !common {
            return Err(GroupError::InconsistentGroupProtocol(format!("no protocol in common with member {:?}", other.member_id)));
        }
    }
    Ok(())
}

/// A JoinGroup. `live` lists the members whose sessions have not expired; `deadline_ms` is when
/// a newly started join phase ends.
pub fn join(
    membership: &Membership,
    phase: &mut Phase,
    request: &JoinRequest,
    now_ms: i64,
    initial_delay_ms: i64,
    new_member_id: &mut dyn FnMut() -> String,
) -> Result<JoinStep, GroupError> {
    validate(membership, phase, request)?;
    let mut member_id = request.member_id.clone();
    if !member_id.is_empty() && !membership.members.contains_key(&member_id) && !joined_contains(phase, &member_id) {
        return Err(GroupError::UnknownMemberId { group: String::new(), member: member_id });
    }
    if let Some(instance) = &request.instance_id {
        if let Some(holder) = membership.member_of_instance(instance) {
            if member_id.is_empty() || member_id != holder.member_id {
                let replaced = holder.member_id.clone();
                member_id = new_member_id();
                if *phase == Phase::Stable && same_protocols(&holder.protocols, &request.protocols) {
                    let mut next = membership.clone();
                    let mut member = next.members.remove(&replaced).expect("found");
                    member.member_id = member_id.clone();
                    member.session_timeout_ms = request.session_timeout_ms;
                    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                    member.client_id.clone_from(&request.client_id);
                    next.members.insert(member_id.clone(), member);
                    if next.leader == replaced {
                        next.leader.clone_from(&member_id);
                    }
                    return Ok(JoinStep::Rejoined { member_id, membership: next });
                }
                if let Phase::Preparing { joined, expected, .. } = phase {
                    joined.remove(&replaced);
                    for id in expected.iter_mut().filter(|id| **id == replaced) {
                        id.clone_from(&member_id);
                    }
                }
            }
        }
    }
    if member_id.is_empty() {
        member_id = new_member_id();
    }
    let member = Member {
        member_id: member_id.clone(),
        instance_id: request.instance_id.clone(),
        client_id: request.client_id.clone(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        protocols: request.protocols.clone(),
        ..Member::default()
    };
    if let Phase::Stable = phase {
        let deadline_ms = if membership.members.is_empty() {
            now_ms + initial_delay_ms
        } else {
            now_ms
                + i64::from(
                    membership.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0).max(request.rebalance_timeout_ms),
                )
        };
        let protocol_type =
            if membership.protocol_type.is_empty() { request.protocol_type.clone() } else { membership.protocol_type.clone() };
        *phase = Phase::Preparing {
            deadline_ms,
            joined: BTreeMap::new(),
            expected: membership.members.keys().cloned().collect(),
            protocol_type,
        };
    }
    let Phase::Preparing { joined, deadline_ms, protocol_type, .. } = phase else { unreachable!("preparing") };
    if joined.is_empty() && membership.members.is_empty() {
        // The first joiner of an empty group sets its protocol type (validated against it above
        // once anyone has joined).
        protocol_type.clone_from(&request.protocol_type);
    }
    if !joined.contains_key(&member_id) && joined.len() >= MEMBERS_PER_GROUP_MAX {
        return Err(GroupError::GroupMaxSizeReached(format!("the group has {MEMBERS_PER_GROUP_MAX} members")));
    }
    if membership.members.is_empty() {
        // An empty group waits a little for more members (Kafka's initial rebalance delay),
        // each new one extending the wait up to its rebalance timeout.
        *deadline_ms = (*deadline_ms).max((now_ms + initial_delay_ms).min(now_ms + i64::from(request.rebalance_timeout_ms)));
    }
    joined.insert(member_id.clone(), member);
    Ok(JoinStep::Wait { member_id })
}

fn joined_contains(phase: &Phase, member_id: &str) -> bool {
    matches!(phase, Phase::Preparing { joined, .. } if joined.contains_key(member_id))
}

fn same_protocols(a: &[Protocol], b: &[Protocol]) -> bool {
    a == b
}

/// Whether the join phase can end now: every expected member joined (and the group was not
/// empty: an empty group waits out its initial delay), or the deadline passed.
pub fn join_complete(membership: &Membership, phase: &Phase, now_ms: i64) -> bool {
    match phase {
        Phase::Stable => false,
        Phase::Preparing { deadline_ms, joined, expected, .. } => {
            now_ms >= *deadline_ms
                || (!membership.members.is_empty() && expected.iter().all(|id| joined.contains_key(id)) && !joined.is_empty())
        }
    }
}

/// The next generation from the members that joined: the chosen protocol is the one most
/// members prefer among those every member offers (ties: the first by name), the leader stays
/// if it rejoined. `None` members joined: the group empties.
pub fn next_generation(membership: &Membership, joined: &BTreeMap<String, Member>, protocol_type: &str) -> Membership {
    let epoch = membership.epoch + 1;
    if joined.is_empty() {
        return Membership { epoch, assignment_epoch: epoch, ..Membership::default() };
    }
    let candidates: Vec<&String> = joined
        .values()
        .next()
        .expect("non-empty")
        .protocols
        .iter()
        .map(|protocol| &protocol.name)
        .filter(|name| joined.values().all(|member| member.protocols.iter().any(|p| &p.name == *name)))
        .collect();
    let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
    for member in joined.values() {
        if let Some(favourite) = member.protocols.iter().map(|p| &p.name).find(|name| candidates.contains(name)) {
            *votes.entry(favourite).or_default() += 1;
        }
    }
    let protocol_name = votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(name, _)| (*name).clone()).unwrap_or_default();
    let leader =
        if joined.contains_key(&membership.leader) { membership.leader.clone() } else { joined.keys().next().expect("non-empty").clone() };
    Membership {
        kind: Some(GroupKind::Classic),
        epoch,
        protocol_type: protocol_type.to_string(),
        protocol_name,
        leader,
        members: joined.clone(),
        assignment_epoch: membership.assignment_epoch.min(epoch - 1),
        target: BTreeMap::new(),
        subscribed_partitions: BTreeMap::new(),
    }
}

/// The answer each member of a newly written generation gets.
pub fn join_answer(membership: &Membership, member_id: &str) -> JoinAnswer {
    let leads = membership.leader == member_id;
    let members = if leads {
        membership
            .members
            .values()
            .map(|member| {
                let metadata =
                    member.protocols.iter().find(|p| p.name == membership.protocol_name).map(|p| p.metadata.clone()).unwrap_or_default();
                (member.member_id.clone(), member.instance_id.clone(), metadata)
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinAnswer {
        generation: membership.epoch,
        protocol_name: membership.protocol_name.clone(),
        leader: membership.leader.clone(),
        member_id: member_id.to_string(),
        members,
        skip_assignment: false,
    }
}

/// Checks a request naming (member, generation, instance) against the committed membership.
pub fn check_member(
    membership: &Membership,
    group: &str,
    member_id: &str,
    generation: i32,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    let Some(member) = membership.members.get(member_id) else {
        if let Some(holder) = instance_id.and_then(|instance| membership.member_of_instance(instance)) {
            return Err(GroupError::FencedInstanceId {
                instance: instance_id.unwrap_or_default().to_string(),
                member: holder.member_id.clone(),
            });
        }
        return Err(GroupError::UnknownMemberId { group: group.to_string(), member: member_id.to_string() });
    };
    if let (Some(instance), Some(held)) = (instance_id, &member.instance_id) {
        if instance != held {
            return Err(GroupError::FencedInstanceId { instance: instance.to_string(), member: member_id.to_string() });
        }
    }
    if generation != membership.epoch {
        return Err(GroupError::IllegalGeneration { group: group.to_string(), current: membership.epoch, got: generation });
    }
    Ok(())
}

/// What a SyncGroup does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// The assignment is in place: this member's part.
    Answer(Vec<u8>),
    /// The leader brought the assignment: write `membership`, then answer every waiting member.
    Write(Membership),
    /// Wait for the leader's assignment.
    Wait,
}

/// A SyncGroup as the coordinator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncRequest {
    pub member_id: String,
    pub generation: i32,
    pub instance_id: Option<String>,
    /// From the leader: member → its assignment bytes.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// Reads the partitions a member's assignment bytes give it, for a protocol type (the
/// coordinator's is `service::decode_assignment`); `Err` says why the bytes are unreadable.
pub type DecodeAssignment = dyn Fn(&str, &[u8]) -> Result<super::Partitions, String>;

/// A SyncGroup. `decode` turns a member's assignment bytes, for the group's protocol type, into
/// the partitions it owns (DescribeGroups, the ownership checks); bytes it cannot read refuse the
/// leader's sync (definite: nothing is written). No partition goes to two members of one
/// generation: a leader that assigns one twice is refused too.
pub fn sync(
    membership: &Membership,
    phase: &Phase,
    group: &str,
    request: &SyncRequest,
    decode: &DecodeAssignment,
) -> Result<SyncStep, GroupError> {
    let SyncRequest { member_id, generation, instance_id, assignments } = request;
    let (member_id, generation) = (member_id.as_str(), *generation);
    check_member(membership, group, member_id, generation, instance_id.as_deref())?;
    if matches!(phase, Phase::Preparing { .. }) {
        return Err(GroupError::RebalanceInProgress(group.to_string()));
    }
    if !membership.awaiting_assignment() {
        return Ok(SyncStep::Answer(membership.members[member_id].assignment.clone()));
    }
    if member_id != membership.leader {
        return Ok(SyncStep::Wait);
    }
    let mut next = membership.clone();
    for (target, bytes) in assignments {
        if bytes.len() > super::PROTOCOL_BYTES_MAX {
            return Err(GroupError::InvalidRequest(format!("an assignment above {} bytes", super::PROTOCOL_BYTES_MAX)));
        }
        let Some(member) = next.members.get_mut(target) else {
            return Err(GroupError::InvalidRequest(format!("the assignment names {target:?}, who is not in generation {generation}")));
        };
        member.assigned = decode(&membership.protocol_type, bytes).map_err(|reason| {
            GroupError::InvalidRequest(format!(
                "the assignment of member {target:?} does not decode as a {:?} assignment: {reason}",
                membership.protocol_type
            ))
        })?;
        member.assignment.clone_from(bytes);
    }
    let mut owners: BTreeMap<&super::TopicPartition, &str> = BTreeMap::new();
    for member in next.members.values() {
        for partition in &member.assigned {
            if let Some(other) = owners.insert(partition, &member.member_id) {
                return Err(GroupError::InvalidRequest(format!(
                    "the assignment gives {}/{} to both {other:?} and {:?}",
                    partition.0, partition.1, member.member_id
                )));
            }
        }
    }
    next.assignment_epoch = next.epoch;
    Ok(SyncStep::Write(next))
}

/// A Heartbeat: `Ok` keeps the session; a rebalance in progress asks the member to rejoin.
pub fn heartbeat(
    membership: &Membership,
    phase: &Phase,
    group: &str,
    member_id: &str,
    generation: i32,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    check_member(membership, group, member_id, generation, instance_id)?;
    if matches!(phase, Phase::Preparing { .. }) {
        return Err(GroupError::RebalanceInProgress(group.to_string()));
    }
    Ok(())
}

/// Members leave (LeaveGroup, or their sessions ended): the membership without them (same
/// generation), and a new join phase for those who stay. Unknown members are skipped; the
/// returned list says which were removed.
pub fn leave(membership: &Membership, phase: &mut Phase, leaving: &[String], now_ms: i64) -> (Membership, Vec<String>) {
    let mut next = membership.clone();
    let mut removed = Vec::new();
    for member_id in leaving {
        if next.members.remove(member_id).is_some() {
            removed.push(member_id.clone());
        }
        if let Phase::Preparing { joined, expected, .. } = phase {
            joined.remove(member_id);
            expected.retain(|id| id != member_id);
        }
    }
    if removed.contains(&next.leader) {
        next.leader = next.members.keys().next().cloned().unwrap_or_default();
    }
    if next.members.is_empty() {
        let epoch = next.epoch;
        next = Membership { epoch, assignment_epoch: epoch, ..Membership::default() };
        if matches!(phase, Phase::Preparing { joined, .. } if joined.is_empty()) {
            *phase = Phase::Stable;
        }
    } else if !removed.is_empty() && *phase == Phase::Stable {
        let rebalance_ms = next.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        *phase = Phase::Preparing {
            deadline_ms: now_ms + i64::from(rebalance_ms),
            joined: BTreeMap::new(),
            expected: next.members.keys().cloned().collect(),
            protocol_type: next.protocol_type.clone(),
        };
    }
    (next, removed)
}

#[cfg(test)]
mod tests;
