//! The coordinator's volatile state for one coordinator partition: what only the current leader
//! keeps, rebuilt from the committed table when leadership (the term) changes.
//!
//! Per group: the classic join phase, the deadline for a classic leader's assignment, each
//! member's session deadline, and since when a consumer-protocol member has been asked to revoke.
//! None of it needs to survive a coordinator change: a new coordinator gives every member a
//! fresh session (so a coordinator change never expires anyone), waits again for an awaited
//! classic assignment, and lets joins in progress be retried by their clients.
//!
//! Time is the node's clock (`crate::clock::Clock`, milliseconds), so the simulator's clock
//! faults (F-C1..3) reach sessions and rebalance timeouts.

use std::collections::BTreeMap;

use super::classic::Phase;
use super::table::{GroupKind, GroupTable, Membership};

/// One group's volatile state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveGroup {
    pub phase: Phase,
    /// Classic: when a generation awaiting its assignment gives up on its leader.
    pub sync_deadline_ms: Option<i64>,
    /// Member → when its session ends without a heartbeat.
    pub sessions: BTreeMap<String, i64>,
    /// Consumer protocol: member → when it was first seen with partitions to revoke.
    pub revoking_since: BTreeMap<String, i64>,
    /// Classic (KIP-394): member ids given with MEMBER_ID_REQUIRED and not yet used to join →
    /// when they lapse (the join's session timeout later). A join naming one is a new member.
    pub pending_member_ids: BTreeMap<String, i64>,
}

/// What the coordinator's timer must do for a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// These members' sessions ended: remove them.
    SessionsExpired { group: String, members: Vec<String> },
    /// A classic join phase reached its deadline: write the next generation.
    JoinDeadline { group: String },
    /// A classic leader did not bring its assignment in time: rebalance again.
    SyncDeadline { group: String },
    /// A consumer-protocol member did not revoke within its rebalance timeout: remove it.
    RevocationExpired { group: String, member: String },
}

/// The volatile state of one coordinator partition, valid for one raft term.
#[derive(Clone, Debug)]
pub struct Coordinator {
    pub term: u64,
    node_id: u64,
    groups: BTreeMap<String, LiveGroup>,
    member_ids_issued: u64,
    /// Session length of consumer-protocol members (the coordinator's setting, as Kafka's
    /// `group.consumer.session.timeout.ms`).
    consumer_session_ms: i64,
    /// Consumer protocol: each group's compiled subscribed regexes (`consumer::RegexCache`).
    regexes: BTreeMap<String, super::consumer::RegexCache>,
}

impl Coordinator {
    pub fn new(node_id: u64, term: u64, consumer_session_ms: u32) -> Coordinator {
        Coordinator {
            term,
            node_id,
            groups: BTreeMap::new(),
            member_ids_issued: 0,
            consumer_session_ms: i64::from(consumer_session_ms),
            regexes: BTreeMap::new(),
        }
    }

    /// A member id no other member of this partition was given: unique per (node, term,
    /// counter), and deterministic (no randomness, so a simulated run replays).
    pub fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_ids_issued += 1;
        let prefix: String = client_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(64).collect();
        let prefix = if prefix.is_empty() { "member".to_string() } else { prefix };
        format!("{prefix}-{}-{}-{}", self.node_id, self.term, self.member_ids_issued)
    }

    /// `group`'s volatile state, built on first use from its committed membership: every member
    /// gets a fresh session, an awaited classic assignment a fresh deadline.
    pub fn group(&mut self, group: &str, membership: Option<&Membership>, now_ms: i64) -> &mut LiveGroup {
        let consumer_session_ms = self.consumer_session_ms;
        self.groups.entry(group.to_string()).or_insert_with(|| {
            let mut live = LiveGroup::default();
            if let Some(membership) = membership {
                for member in membership.members.values() {
                    live.sessions
                        .insert(member.member_id.clone(), now_ms + session_ms(membership, member.session_timeout_ms, consumer_session_ms));
                }
                if membership.awaiting_assignment() {
                    let rebalance_ms = membership.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
                    live.sync_deadline_ms = Some(now_ms + i64::from(rebalance_ms));
                }
            }
            live
        })
    }

    /// Forgets a group's volatile state (deleted, or its state will be rebuilt).
    pub fn forget(&mut self, group: &str) {
        self.groups.remove(group);
        self.regexes.remove(group);
    }

    /// Takes `group`'s compiled regexes out for a heartbeat (empty if none are kept).
    pub fn take_regexes(&mut self, group: &str) -> super::consumer::RegexCache {
        self.regexes.remove(group).unwrap_or_default()
    }

    /// Keeps `group`'s compiled regexes after a heartbeat (dropped when it holds none).
    pub fn keep_regexes(&mut self, group: &str, regexes: super::consumer::RegexCache) {
        if !regexes.is_empty() {
            self.regexes.insert(group.to_string(), regexes);
        }
    }

    /// A heartbeat (or join, sync, commit) from `member`: its session starts again.
    pub fn touch(&mut self, group: &str, membership: &Membership, member_id: &str, now_ms: i64) {
        let consumer_session_ms = self.consumer_session_ms;
        let live = self.group(group, Some(membership), now_ms);
        let timeout = membership
            .members
            .get(member_id)
            .map_or(consumer_session_ms, |m| session_ms(membership, m.session_timeout_ms, consumer_session_ms));
        live.sessions.insert(member_id.to_string(), now_ms + timeout);
    }

    /// Keeps the volatile state in step with a membership that was just written.
    pub fn written(&mut self, group: &str, membership: &Membership, now_ms: i64) {
        let consumer_session_ms = self.consumer_session_ms;
        let live = self.group(group, Some(membership), now_ms);
        live.sessions.retain(|member, _| membership.members.contains_key(member));
        for member in membership.members.values() {
            live.sessions
                .entry(member.member_id.clone())
                .or_insert(now_ms + session_ms(membership, member.session_timeout_ms, consumer_session_ms));
        }
        live.revoking_since.retain(|member, _| membership.members.get(member).is_some_and(|m| !m.revoking.is_empty()));
        for member in membership.members.values().filter(|m| !m.revoking.is_empty()) {
            live.revoking_since.entry(member.member_id.clone()).or_insert(now_ms);
        }
        live.sync_deadline_ms = if membership.awaiting_assignment() {
            let rebalance_ms = membership.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
            Some(live.sync_deadline_ms.unwrap_or(now_ms + i64::from(rebalance_ms)))
        } else {
            None
        };
    }

    /// Everything due at `now_ms`, in group order.
    pub fn due(&mut self, table: &GroupTable, now_ms: i64) -> Vec<Due> {
        let mut due = Vec::new();
        let empty = Membership::default();
        // Groups with members in the table, and groups only the volatile state knows (a first
        // join phase, before any record of the group was written).
        let mut ids: Vec<&String> =
            table.groups().iter().filter(|(_, group)| !group.membership.members.is_empty()).map(|(id, _)| id).collect();
        let live_ids: Vec<String> = self.groups.keys().cloned().collect();
        ids.extend(live_ids.iter());
        ids.sort();
        ids.dedup();
        for id in ids {
            let membership = table.group(id).map_or(&empty, |group| &group.membership);
            let live = self.group(id, Some(membership), now_ms);
            let expired: Vec<String> = live
                .sessions
                .iter()
                .filter(|(member, deadline)| **deadline <= now_ms && membership.members.contains_key(*member))
                .map(|(member, _)| member.clone())
                .collect();
            if !expired.is_empty() {
                due.push(Due::SessionsExpired { group: id.clone(), members: expired });
            }
            if let Phase::Preparing { deadline_ms, .. } = &live.phase {
                if *deadline_ms <= now_ms {
                    due.push(Due::JoinDeadline { group: id.clone() });
                }
            }
            if live.sync_deadline_ms.is_some_and(|deadline| deadline <= now_ms) && membership.awaiting_assignment() {
                due.push(Due::SyncDeadline { group: id.clone() });
            }
            if membership.kind == Some(GroupKind::Consumer) {
                for (member, since) in &live.revoking_since {
                    let Some(state) = membership.members.get(member) else { continue };
                    if !state.revoking.is_empty() && since + i64::from(state.rebalance_timeout_ms.max(1)) <= now_ms {
                        due.push(Due::RevocationExpired { group: id.clone(), member: member.clone() });
                    }
                }
            }
        }
        due
    }

    /// The groups with volatile state (for the timer and describe).
    pub fn live_groups(&self) -> &BTreeMap<String, LiveGroup> {
        &self.groups
    }

    pub fn live_group(&self, group: &str) -> Option<&LiveGroup> {
        self.groups.get(group)
    }
}

/// A member's session length: its own (classic) or the coordinator's (consumer protocol).
fn session_ms(membership: &Membership, member_session_ms: u32, consumer_session_ms: i64) -> i64 {
    match membership.kind {
        Some(GroupKind::Classic) => i64::from(member_session_ms),
        _ => consumer_session_ms,
    }
}

/// The state name Kafka's tools show for a group.
pub fn state_name(membership: &Membership, live: Option<&LiveGroup>) -> &'static str {
    if membership.members.is_empty() {
        return "Empty";
    }
    match membership.kind {
        Some(GroupKind::Classic) => match live.map(|live| &live.phase) {
            Some(Phase::Preparing { .. }) => "PreparingRebalance",
            _ if membership.awaiting_assignment() => "CompletingRebalance",
            _ => "Stable",
        },
        Some(GroupKind::Consumer) => {
            let reconciling =
                membership.members.values().any(|member| member.member_epoch != membership.assignment_epoch || !member.revoking.is_empty());
            if reconciling {
                "Reconciling"
            } else {
                "Stable"
            }
        }
        None => "Empty",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::table::Member;

    fn membership(kind: GroupKind, members: &[&str]) -> Membership {
        Membership {
            kind: Some(kind),
            epoch: 3,
            assignment_epoch: 3,
            members: members
                .iter()
                .map(|id| {
                    (
                        id.to_string(),
                        Member { member_id: id.to_string(), session_timeout_ms: 10_000, rebalance_timeout_ms: 5_000, ..Member::default() },
                    )
                })
                .collect(),
            ..Membership::default()
        }
    }

    #[test]
    fn member_ids_are_unique_and_deterministic() {
        let mut a = Coordinator::new(2, 7, 45_000);
        let mut b = Coordinator::new(2, 7, 45_000);
        let ids: Vec<String> = (0..3).map(|_| a.new_member_id("my app!")).collect();
        assert_eq!(ids, (0..3).map(|_| b.new_member_id("my app!")).collect::<Vec<_>>());
        assert_eq!(ids[0], "myapp-2-7-1");
        let mut next_term = Coordinator::new(2, 8, 45_000);
        assert_ne!(next_term.new_member_id("my app!"), ids[0], "another term never repeats an id");
    }

    #[test]
    fn a_new_coordinator_gives_every_member_a_fresh_session() {
        let mut coordinator = Coordinator::new(1, 1, 45_000);
        let classic = membership(GroupKind::Classic, &["a", "b"]);
        let live = coordinator.group("g", Some(&classic), 1_000);
        assert_eq!(live.sessions.values().copied().collect::<Vec<_>>(), vec![11_000, 11_000]);
        let consumer = membership(GroupKind::Consumer, &["c"]);
        let live = coordinator.group("h", Some(&consumer), 1_000);
        assert_eq!(live.sessions["c"], 46_000, "consumer-protocol sessions are the coordinator's setting");
    }

    #[test]
    fn expired_sessions_and_awaited_assignments_come_due() {
        let mut coordinator = Coordinator::new(1, 1, 45_000);
        let mut table = GroupTable::new();
        let mut awaiting = membership(GroupKind::Classic, &["a", "b"]);
        awaiting.epoch = 4; // generation 4 written, its assignment not yet
        let record = crate::group::record::Record::Group { group: "g".into(), base_index: 0, membership: awaiting.clone() };
        assert_eq!(table.apply(1, &record.encode()), crate::group::table::Outcome::Applied);
        assert!(coordinator.due(&table, 1_000).is_empty());
        coordinator.touch("g", &awaiting, "a", 4_000);
        assert_eq!(coordinator.due(&table, 6_000), vec![Due::SyncDeadline { group: "g".into() }]);
        let due = coordinator.due(&table, 11_000);
        assert_eq!(due[0], Due::SessionsExpired { group: "g".into(), members: vec!["b".into()] }, "a heartbeat moved a's deadline to 14 s");
    }

    #[test]
    fn a_first_join_phase_comes_due_before_the_group_has_any_record() {
        let mut coordinator = Coordinator::new(1, 1, 45_000);
        let table = GroupTable::new();
        coordinator.group("new", None, 0).phase =
            Phase::Preparing { deadline_ms: 3_000, joined: BTreeMap::new(), expected: Vec::new(), protocol_type: String::new() };
        assert!(coordinator.due(&table, 2_999).is_empty());
        assert_eq!(coordinator.due(&table, 3_000), vec![Due::JoinDeadline { group: "new".into() }]);
    }
}
