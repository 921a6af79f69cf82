//! Client-side (classic protocol) assignors, run by the group's leader member: `range`,
//! `roundrobin` and `cooperative-sticky`, with Kafka's semantics. Pure functions from the
//! members (subscriptions, owned partitions, generations) and the topics' partition counts to
//! an assignment; every map is a `BTreeMap`, so the same input gives the same output.
//!
//! Invariants of every assignment returned (property-tested below):
//! - every member of the input appears in the output (maybe with nothing);
//! - a partition goes to at most one member, and only to a member subscribed to its topic, and
//!   only if its topic exists with that partition;
//! - `range` and `roundrobin` assign every partition of every subscribed topic (exactly one
//!   owner); `roundrobin` and `cooperative-sticky` balance counts within 1 when every member
//!   has the same subscription;
//! - `cooperative-sticky` keeps each partition with its current owner where balance allows, and
//!   never hands a partition to a member in the same generation in which another member still
//!   claims to own it: such a partition stays unassigned, its owner revokes it (it is missing
//!   from the owner's new assignment), and the follow-up rebalance hands it over.
//!
//! Cost: `range` is O(topics × members); `roundrobin` O(partitions × members) at worst (members
//! skipped for topics they do not want); `cooperative-sticky` O(partitions × log members) to
//! place, plus at most one move per partition (uniform subscriptions) each costing
//! O(members × topics of the donor). A thousand partitions over a hundred members is well under
//! a millisecond of the leader's time per rebalance.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;

/// A classic assignor, by the name it has in JoinGroup's protocol list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to members in order (Kafka's default).
    Range,
    /// All partitions in order, dealt to members in turn.
    RoundRobin,
    /// Balanced and sticky, with incremental (cooperative) rebalancing.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name Kafka uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor called `name`, if this client has it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky].into_iter().find(|assignor| assignor.name() == name)
    }

    /// True when a group using it rebalances incrementally: members keep their partitions
    /// through a rebalance and revoke only what moved.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }
}

/// One member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberInput {
    pub group_instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    /// What the member says it owns now (empty for eager members).
    pub owned: BTreeSet<TopicPartition>,
    /// The generation of `owned`; -1 when the member did not say.
    pub generation: i32,
}

/// member id → partitions.
pub type GroupAssignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// Assigns the partitions of `partition_counts` (topic → number of partitions) to `members`
/// (member id → input). Topics a member subscribes to that are not in `partition_counts` are
/// ignored (they do not exist, or the leader's metadata does not know them yet).
pub fn assign(assignor: Assignor, members: &BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) -> GroupAssignment {
    let assignment = match assignor {
        Assignor::Range => range(members, partition_counts),
        Assignor::RoundRobin => round_robin(members, partition_counts),
        Assignor::CooperativeSticky => cooperative_sticky(members, partition_counts),
    };
    check(&assignment, members, partition_counts);
    assignment
}

/// The postconditions every assignor keeps (see the module docs).
fn check(assignment: &GroupAssignment, members: &BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) {
    assert!(assignment.keys().eq(members.keys()), "every member, and only members, get an assignment");
    let mut owners = BTreeSet::new();
    for (member, partitions) in assignment {
        for (topic, partition) in partitions {
            assert!(members[member].topics.contains(topic), "{topic}/{partition} given to {member}, not subscribed to it");
            assert!(partition_counts.get(topic).is_some_and(|count| partition < count), "{topic}/{partition} does not exist");
            assert!(owners.insert((topic, partition)), "{topic}/{partition} given to two members");
        }
    }
}

/// Members in Kafka's order: static members by instance id first, then dynamic ones by id.
fn member_order(members: &BTreeMap<String, MemberInput>) -> Vec<&str> {
    let mut order: Vec<(&MemberInput, &str)> = members.iter().map(|(id, input)| (input, id.as_str())).collect();
    order.sort_by(|(a, a_id), (b, b_id)| {
        (a.group_instance_id.is_none(), &a.group_instance_id, a_id).cmp(&(b.group_instance_id.is_none(), &b.group_instance_id, b_id))
    });
    order.into_iter().map(|(_, id)| id).collect()
}

fn empty_assignment(members: &BTreeMap<String, MemberInput>) -> GroupAssignment {
    members.keys().map(|id| (id.clone(), BTreeSet::new())).collect()
}

fn subscribed_topics<'a>(members: &'a BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) -> BTreeSet<&'a String> {
    members.values().flat_map(|member| &member.topics).filter(|topic| partition_counts.contains_key(*topic)).collect()
}

fn range(members: &BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    let order = member_order(members);
    for topic in subscribed_topics(members, partition_counts) {
        let consumers: Vec<&str> = order.iter().copied().filter(|id| members[*id].topics.contains(topic)).collect();
        let partitions = partition_counts[topic];
        let count = consumers.len() as u32;
        let (each, extra) = (partitions / count, partitions % count);
        for (index, consumer) in consumers.into_iter().enumerate() {
            let index = index as u32;
            let start = each * index + index.min(extra);
            let len = each + u32::from(index < extra);
            let set = assignment.get_mut(consumer).expect("every member is in the assignment");
            set.extend((start..start + len).map(|partition| (topic.clone(), partition)));
        }
    }
    assignment
}

fn round_robin(members: &BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    let order = member_order(members);
    let mut next = 0usize;
    for topic in subscribed_topics(members, partition_counts) {
        for partition in 0..partition_counts[topic] {
            // Some member wants this topic (it is in `subscribed_topics`), so this ends within
            // one turn of the circle.
            let member = loop {
                let member = order[next % order.len()];
                next += 1;
                if members[member].topics.contains(topic) {
                    break member;
                }
            };
            assignment.get_mut(member).expect("every member is in the assignment").insert((topic.clone(), partition));
        }
    }
    assignment
}

/// The sticky, balanced assignment, then the cooperative cut (see the module docs).
fn cooperative_sticky(members: &BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) -> GroupAssignment {
    let mut assignment = sticky_target(members, partition_counts);
    let mut claimants: BTreeMap<&TopicPartition, BTreeSet<&str>> = BTreeMap::new();
    for (id, member) in members {
        for partition in &member.owned {
            claimants.entry(partition).or_default().insert(id);
        }
    }
    for (id, partitions) in assignment.iter_mut() {
        let owned = &members[id].owned;
        partitions.retain(|partition| {
            owned.contains(partition) || claimants.get(partition).is_none_or(|claimants| claimants.iter().all(|claimant| claimant == id))
        });
    }
    assignment
}

/// The balanced assignment cooperative-sticky aims for, before partitions still owned by
/// someone else are held back. Public to the crate for the property tests.
pub(crate) fn sticky_target(members: &BTreeMap<String, MemberInput>, partition_counts: &BTreeMap<String, u32>) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    if members.is_empty() {
        return assignment;
    }
    let rank: BTreeMap<&str, usize> = member_order(members).into_iter().enumerate().map(|(rank, id)| (id, rank)).collect();
    let all: BTreeSet<TopicPartition> = subscribed_topics(members, partition_counts)
        .into_iter()
        .flat_map(|topic| (0..partition_counts[topic]).map(move |partition| (topic.clone(), partition)))
        .collect();

    // 1. Each partition stays with its valid previous owner: the claimant of the highest
    //    generation that still subscribes to its topic (ties: the first in member order).
    let mut previous: BTreeMap<&TopicPartition, (i32, std::cmp::Reverse<usize>, &str)> = BTreeMap::new();
    for (id, member) in members {
        for partition in member.owned.iter().filter(|partition| all.contains(*partition) && member.topics.contains(&partition.0)) {
            let candidate = (member.generation, std::cmp::Reverse(rank[id.as_str()]), id.as_str());
            let best = previous.entry(partition).or_insert(candidate);
            if candidate > *best {
                *best = candidate;
            }
        }
    }
    for (partition, (_, _, owner)) in &previous {
        assignment.get_mut(*owner).expect("claimants are members").insert((*partition).clone());
    }

    // 2. The rest go, least flexible first, to the eligible member with the fewest.
    let mut unassigned: Vec<&TopicPartition> = all.iter().filter(|partition| !previous.contains_key(partition)).collect();
    let eligible_counts: BTreeMap<&String, usize> = unassigned
        .iter()
        .map(|(topic, _)| topic)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|topic| (topic, eligible(members, topic).count()))
        .collect();
    unassigned.sort_by_key(|partition| (eligible_counts[&partition.0], *partition));
    for partition in unassigned {
        let member = eligible(members, &partition.0)
            .min_by_key(|id| (assignment[*id].len(), rank[id]))
            .expect("some member subscribes to every topic in `all`");
        assignment.get_mut(member).expect("a member").insert(partition.clone());
    }

    // 3. Moves from the fullest members to the emptiest eligible ones, while some member has
    //    two more than another that could take one of its partitions. Each move lowers the sum
    //    of squared counts, so this ends; with uniform subscriptions each partition moves at
    //    most once (a donor never receives, a receiver never donates).
    let moves_max = all.len();
    for _ in 0..moves_max {
        let Some((donor, partition, receiver)) = next_move(members, &assignment, &rank) else {
            break;
        };
        assignment.get_mut(&donor).expect("a member").remove(&partition);
        assignment.get_mut(&receiver).expect("a member").insert(partition);
    }
    assignment
}

/// The members subscribed to `topic`.
fn eligible<'a>(members: &'a BTreeMap<String, MemberInput>, topic: &'a String) -> impl Iterator<Item = &'a str> + 'a {
    members.iter().filter(move |(_, member)| member.topics.contains(topic)).map(|(id, _)| id.as_str())
}

/// The next balancing move: from the member with the most partitions (then the latest in
/// order) that has a partition some eligible member with at least two fewer could take. The
/// partition moved is one the donor did not own before if it has any, else its highest.
fn next_move(
    members: &BTreeMap<String, MemberInput>,
    assignment: &GroupAssignment,
    rank: &BTreeMap<&str, usize>,
) -> Option<(String, TopicPartition, String)> {
    let mut donors: Vec<(&String, &BTreeSet<TopicPartition>)> = assignment.iter().collect();
    donors.sort_by_key(|(id, partitions)| std::cmp::Reverse((partitions.len(), rank[id.as_str()])));
    for (donor, partitions) in donors {
        let count = partitions.len();
        // The emptiest eligible receiver per topic of the donor.
        let mut receivers: BTreeMap<&String, Option<&String>> = BTreeMap::new();
        for (topic, _) in partitions {
            receivers.entry(topic).or_insert_with(|| {
                members
                    .iter()
                    .filter(|(id, member)| *id != donor && member.topics.contains(topic) && assignment[*id].len() + 2 <= count)
                    .min_by_key(|(id, _)| (assignment[*id].len(), rank[id.as_str()]))
                    .map(|(id, _)| id)
            });
        }
        let owned = &members[donor].owned;
        let movable = |partition: &&TopicPartition| receivers[&partition.0].is_some();
        let choice = partitions
            .iter()
            .rev()
            .filter(movable)
            .find(|partition| !owned.contains(*partition))
            .or_else(|| partitions.iter().rev().find(movable));
        if let Some(partition) = choice {
            let receiver = receivers[&partition.0].expect("movable");
            return Some((donor.clone(), partition.clone(), receiver.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOPICS: [&str; 3] = ["a", "b", "c"];

    fn counts(partitions: &[u32]) -> BTreeMap<String, u32> {
        TOPICS.iter().zip(partitions).map(|(topic, count)| (topic.to_string(), *count)).collect()
    }

    fn member(topics: &[&str], owned: &[(&str, u32)], generation: i32) -> MemberInput {
        MemberInput {
            group_instance_id: None,
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            owned: owned.iter().map(|(topic, partition)| (topic.to_string(), *partition)).collect(),
            generation,
        }
    }

    fn all_partitions(members: &BTreeMap<String, MemberInput>, counts: &BTreeMap<String, u32>) -> BTreeSet<TopicPartition> {
        subscribed_topics(members, counts).into_iter().flat_map(|topic| (0..counts[topic]).map(move |p| (topic.clone(), p))).collect()
    }

    fn spread(assignment: &GroupAssignment) -> usize {
        let sizes: Vec<usize> = assignment.values().map(BTreeSet::len).collect();
        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
    }

    /// Members with arbitrary subscriptions over the three topics, and arbitrary (possibly
    /// conflicting, possibly stale) owned partitions.
    fn group() -> impl Strategy<Value = (BTreeMap<String, MemberInput>, BTreeMap<String, u32>)> {
        (prop::collection::vec(0u32..7, 3), 1usize..7).prop_flat_map(|(partitions, size)| {
            let member = (prop::sample::subsequence(TOPICS.to_vec(), 0..=3), prop::collection::vec((0usize..3, 0u32..8), 0..6), -1i32..4)
                .prop_map(|(topics, owned, generation)| {
                    let owned: Vec<(&str, u32)> = owned.into_iter().map(|(topic, partition)| (TOPICS[topic], partition)).collect();
                    member(&topics, &owned, generation)
                });
            (prop::collection::vec(member, size), Just(counts(&partitions)))
                .prop_map(|(members, counts)| (members.into_iter().enumerate().map(|(i, m)| (format!("m{i}"), m)).collect(), counts))
        })
    }

    /// Members that all subscribe to the same topics and own disjoint, valid partitions.
    fn uniform_group() -> impl Strategy<Value = (BTreeMap<String, MemberInput>, BTreeMap<String, u32>)> {
        (prop::collection::vec(0u32..9, 3), 1usize..7, prop::sample::subsequence(TOPICS.to_vec(), 1..=3), any::<u64>()).prop_map(
            |(partitions, size, topics, seed)| {
                let counts = counts(&partitions);
                let mut members: BTreeMap<String, MemberInput> = (0..size).map(|i| (format!("m{i}"), member(&topics, &[], 1))).collect();
                // Scatter some partitions among the members as their current ownership.
                let mut state = seed;
                for topic in &topics {
                    for partition in 0..counts[*topic] {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let pick = (state >> 33) as usize % (size + 2);
                        if pick < size {
                            members.get_mut(&format!("m{pick}")).unwrap().owned.insert((topic.to_string(), partition));
                        }
                    }
                }
                (members, counts)
            },
        )
    }

    proptest! {
        #[test]
        fn range_and_roundrobin_assign_every_subscribed_partition_once((members, counts) in group()) {
            for assignor in [Assignor::Range, Assignor::RoundRobin] {
                let assignment = assign(assignor, &members, &counts);
                let assigned: BTreeSet<TopicPartition> = assignment.values().flatten().cloned().collect();
                let total: usize = assignment.values().map(BTreeSet::len).sum();
                prop_assert_eq!(total, assigned.len(), "{:?}: no partition twice", assignor);
                prop_assert_eq!(assigned, all_partitions(&members, &counts), "{:?}: every partition", assignor);
                prop_assert_eq!(assign(assignor, &members, &counts), assignment, "{:?}: deterministic", assignor);
            }
        }

        #[test]
        fn cooperative_sticky_never_hands_over_a_partition_someone_still_owns((members, counts) in group()) {
            let assignment = assign(Assignor::CooperativeSticky, &members, &counts);
            for (id, partitions) in &assignment {
                for partition in partitions.iter().filter(|partition| !members[id].owned.contains(*partition)) {
                    let other = members.iter().find(|(other, member)| *other != id && member.owned.contains(partition));
                    prop_assert!(other.is_none(), "{:?} handed to {} while {:?} owns it", partition, id, other.map(|(id, _)| id));
                }
            }
            prop_assert_eq!(assign(Assignor::CooperativeSticky, &members, &counts), assignment, "deterministic");
        }

        #[test]
        fn uniform_subscriptions_are_balanced_and_sticky((members, counts) in uniform_group()) {
            prop_assert!(spread(&assign(Assignor::RoundRobin, &members, &counts)) <= 1);
            let target = sticky_target(&members, &counts);
            prop_assert!(spread(&target) <= 1, "target {:?}", target);
            let total = all_partitions(&members, &counts).len();
            let floor = total / members.len();
            let first = assign(Assignor::CooperativeSticky, &members, &counts);
            for (id, member) in &members {
                let kept = member.owned.intersection(&first[id]).count();
                prop_assert!(kept >= member.owned.len().min(floor), "{} kept {} of {:?} (floor {})", id, kept, member.owned, floor);
            }
            // The follow-up rebalance: each member revoked what it lost and owns its first
            // assignment; now everything is assigned, balanced, and nothing it kept moves.
            let next: BTreeMap<String, MemberInput> = members
                .iter()
                .map(|(id, member)| (id.clone(), MemberInput { owned: first[id].clone(), generation: 2, ..member.clone() }))
                .collect();
            let second = assign(Assignor::CooperativeSticky, &next, &counts);
            prop_assert_eq!(second.values().map(BTreeSet::len).sum::<usize>(), total, "{:?}", second);
            prop_assert!(spread(&second) <= 1, "{:?}", second);
            for (id, partitions) in &first {
                prop_assert!(partitions.is_subset(&second[id]), "{} lost a partition it kept: {:?} → {:?}", id, partitions, second[id]);
            }
        }
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions_per_topic() {
        let members: BTreeMap<String, MemberInput> =
            [("m1", member(&["a", "b"], &[], -1)), ("m2", member(&["a", "b"], &[], -1))].map(|(id, m)| (id.to_string(), m)).into();
        let assignment = assign(Assignor::Range, &members, &counts(&[3, 3]));
        let names = |id: &str| assignment[id].iter().map(|(t, p)| format!("{t}{p}")).collect::<Vec<_>>();
        assert_eq!(names("m1"), ["a0", "a1", "b0", "b1"]);
        assert_eq!(names("m2"), ["a2", "b2"]);
        let assignment = assign(Assignor::RoundRobin, &members, &counts(&[3, 3]));
        let names = |id: &str| assignment[id].iter().map(|(t, p)| format!("{t}{p}")).collect::<Vec<_>>();
        assert_eq!(names("m1"), ["a0", "a2", "b1"]);
        assert_eq!(names("m2"), ["a1", "b0", "b2"]);
    }

    #[test]
    fn static_members_come_first_in_order_of_instance_id() {
        let mut members: BTreeMap<String, MemberInput> =
            [("a-dynamic", member(&["a"], &[], -1)), ("z-static", member(&["a"], &[], -1))].map(|(id, m)| (id.to_string(), m)).into();
        members.get_mut("z-static").unwrap().group_instance_id = Some("instance-1".into());
        let assignment = assign(Assignor::Range, &members, &counts(&[3]));
        assert_eq!(assignment["z-static"].len(), 2, "the static member is first in order and gets the extra partition");
    }

    #[test]
    fn a_new_member_gets_partitions_only_after_their_owner_revoked_them() {
        let owned: Vec<(&str, u32)> = (0..4).map(|p| ("a", p)).collect();
        let members: BTreeMap<String, MemberInput> =
            [("m1", member(&["a"], &owned, 3)), ("m2", member(&["a"], &[], -1))].map(|(id, m)| (id.to_string(), m)).into();
        let first = assign(Assignor::CooperativeSticky, &members, &counts(&[4]));
        assert_eq!(first["m1"].len(), 2, "m1 keeps two and revokes two");
        assert!(first["m2"].is_empty(), "m1 still owns what m2 will get");
        let mut members = members;
        members.get_mut("m1").unwrap().owned = first["m1"].clone();
        let second = assign(Assignor::CooperativeSticky, &members, &counts(&[4]));
        assert_eq!((second["m1"].clone(), second["m2"].len()), (first["m1"].clone(), 2));
    }

    #[test]
    fn the_claim_of_the_newest_generation_wins() {
        let members: BTreeMap<String, MemberInput> =
            [("m1", member(&["a"], &[("a", 0)], 5)), ("m2", member(&["a"], &[("a", 0)], 4))].map(|(id, m)| (id.to_string(), m)).into();
        let assignment = assign(Assignor::CooperativeSticky, &members, &counts(&[1]));
        assert!(assignment["m1"].contains(&("a".to_string(), 0)), "m1 keeps it; m2's claim is stale and m2 must revoke");
        assert!(assignment["m2"].is_empty());
    }

    #[test]
    fn names_round_trip() {
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky] {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        assert_eq!(Assignor::from_name("sticky"), None);
    }
}
