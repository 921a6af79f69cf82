//! Server-side assignors of the consumer protocol (KIP-848): `uniform` (the default: balanced
//! and sticky) and `range` (per topic, contiguous ranges over the sorted members).
//!
//! Both are pure functions of (members with their subscriptions, partition counts, the previous
//! target) and iterate only `BTreeMap`s, so every replica and every run computes the same
//! assignment. Invariants (property-tested below): every partition of a subscribed topic goes to
//! exactly one member subscribed to that topic (none when nobody subscribes), and nothing else
//! is assigned; `uniform` gives members with the same subscriptions counts that differ by at most
//! one, and keeps a partition with its previous owner unless balance requires moving it.
//!
//! Cost: `uniform` is O(P · M) for P partitions and M members (one pass to place the free
//! partitions, then at most P moves, each scanning the members); a group at its limits (256
//! members, a few thousand partitions) assigns in milliseconds.

use std::collections::BTreeMap;

use super::{GroupError, Partitions, TopicPartition};

/// The server-side assignors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAssignor {
    Uniform,
    Range,
}

/// The assignor used when a group names none.
pub const ASSIGNOR_DEFAULT: &str = "uniform";

impl ServerAssignor {
    pub fn from_name(name: &str) -> Result<ServerAssignor, GroupError> {
        match name {
            "" | "uniform" => Ok(ServerAssignor::Uniform),
            "range" => Ok(ServerAssignor::Range),
            other => Err(GroupError::UnsupportedAssignor(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ServerAssignor::Uniform => "uniform",
            ServerAssignor::Range => "range",
        }
    }

    /// The target assignment: member → partitions. `subscriptions` holds every member (with
    /// an empty set when it subscribes to nothing); `partitions` the partition count of every
    /// topic that exists; `previous` the last target (uniform keeps it where it can).
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, Vec<String>>,
        partitions: &BTreeMap<String, u32>,
        previous: &BTreeMap<String, Partitions>,
    ) -> BTreeMap<String, Partitions> {
        let target = match self {
            ServerAssignor::Uniform => uniform(subscriptions, partitions, previous),
            ServerAssignor::Range => range(subscriptions, partitions),
        };
        debug_assert!(check(subscriptions, partitions, &target).is_ok(), "{:?}", check(subscriptions, partitions, &target));
        target
    }
}

/// Every member subscribed to `topic`, in id order.
fn subscribers<'a>(subscriptions: &'a BTreeMap<String, Vec<String>>, topic: &str) -> Vec<&'a String> {
    subscriptions.iter().filter(|(_, topics)| topics.iter().any(|t| t == topic)).map(|(member, _)| member).collect()
}

/// Subscribed topics that exist, each once, in name order.
fn subscribed_topics<'a>(subscriptions: &'a BTreeMap<String, Vec<String>>, partitions: &BTreeMap<String, u32>) -> Vec<&'a String> {
    let mut topics: Vec<&String> = subscriptions.values().flatten().filter(|topic| partitions.contains_key(*topic)).collect();
    topics.sort();
    topics.dedup();
    topics
}

fn empty_target(subscriptions: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Partitions> {
    subscriptions.keys().map(|member| (member.clone(), Partitions::new())).collect()
}

fn range(subscriptions: &BTreeMap<String, Vec<String>>, partitions: &BTreeMap<String, u32>) -> BTreeMap<String, Partitions> {
    let mut target = empty_target(subscriptions);
    for topic in subscribed_topics(subscriptions, partitions) {
        let members = subscribers(subscriptions, topic);
        let count = partitions[topic];
        let members_count = members.len() as u32;
        let (per_member, extra) = (count / members_count, count % members_count);
        let mut next = 0;
        for (position, member) in members.into_iter().enumerate() {
            let take = per_member + u32::from((position as u32) < extra);
            let slot = target.get_mut(member).expect("every member has a slot");
            slot.extend((next..next + take).map(|partition| (topic.clone(), partition)));
            next += take;
        }
        assert_eq!(next, count, "range placed every partition of {topic}");
    }
    target
}

fn uniform(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let mut target = empty_target(subscriptions);
    let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
    // Keep what each member had, where it still subscribes and the partition still exists.
    for (member, had) in previous {
        let Some(topics) = subscriptions.get(member) else { continue };
        for (topic, partition) in had {
            let exists = partitions.get(topic).is_some_and(|&count| *partition < count);
            if exists && topics.contains(topic) && !owner.contains_key(&(topic.clone(), *partition)) {
                owner.insert((topic.clone(), *partition), member.clone());
                target.get_mut(member).expect("a subscribed member").insert((topic.clone(), *partition));
            }
        }
    }
    // Place every free partition on the least loaded eligible member.
    let topics = subscribed_topics(subscriptions, partitions);
    for topic in &topics {
        let eligible = subscribers(subscriptions, topic);
        for partition in 0..partitions[*topic] {
            let key = ((*topic).clone(), partition);
            if owner.contains_key(&key) {
                continue;
            }
            let chosen =
                eligible.iter().min_by_key(|member| (target[**member].len(), **member)).expect("a subscribed topic has a subscriber");
            owner.insert(key.clone(), (*chosen).clone());
            target.get_mut(*chosen).expect("eligible").insert(key);
        }
    }
    // Balance: move a partition from a member to an eligible one holding at least two fewer,
    // until none can move. Each move lowers the sum of squared counts, so this ends; the bound
    // is a guard, not the reason.
    let moves_max = owner.len() * subscriptions.len().max(1);
    for _ in 0..moves_max {
        let mut best: Option<(usize, TopicPartition, String, String)> = None;
        for (key, from) in &owner {
            let from_count = target[from].len();
            let eligible = subscribers(subscriptions, &key.0);
            let Some(to) = eligible
                .into_iter()
                .filter(|member| target[*member].len() + 1 < from_count)
                .min_by_key(|member| (target[*member].len(), *member))
            else {
                continue;
            };
            let gap = from_count - target[to].len();
            if best.as_ref().is_none_or(|(best_gap, ..)| gap > *best_gap) {
                best = Some((gap, key.clone(), from.clone(), to.clone()));
            }
        }
        let Some((_, key, from, to)) = best else { break };
        target.get_mut(&from).expect("owner").remove(&key);
        target.get_mut(&to).expect("eligible").insert(key.clone());
        owner.insert(key, to);
    }
    target
}

/// Checks the assignor invariants (see the module comment).
pub fn check(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, u32>,
    target: &BTreeMap<String, Partitions>,
) -> Result<(), String> {
    let mut seen: BTreeMap<&TopicPartition, &String> = BTreeMap::new();
    for (member, assigned) in target {
        let topics = subscriptions.get(member).ok_or_else(|| format!("{member} is no member"))?;
        for key in assigned {
            if !topics.contains(&key.0) {
                return Err(format!("{member} got {}/{} without subscribing", key.0, key.1));
            }
            if partitions.get(&key.0).is_none_or(|&count| key.1 >= count) {
                return Err(format!("{member} got {}/{}, which does not exist", key.0, key.1));
            }
            if let Some(other) = seen.insert(key, member) {
                return Err(format!("{}/{} went to {other} and {member}", key.0, key.1));
            }
        }
    }
    for topic in subscribed_topics(subscriptions, partitions) {
        for partition in 0..partitions[topic] {
            if !seen.contains_key(&(topic.clone(), partition)) {
                return Err(format!("{topic}/{partition} went to nobody"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members.iter().map(|(member, topics)| (member.to_string(), topics.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn counts(target: &BTreeMap<String, Partitions>) -> Vec<usize> {
        target.values().map(Partitions::len).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_the_extra() {
        let subs = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let parts: BTreeMap<String, u32> = [("t".to_string(), 7)].into_iter().collect();
        let target = ServerAssignor::Range.assign(&subs, &parts, &BTreeMap::new());
        let of = |member: &str| target[member].iter().map(|(_, p)| *p).collect::<Vec<_>>();
        assert_eq!((of("a"), of("b"), of("c")), (vec![0, 1, 2], vec![3, 4], vec![5, 6]));
    }

    #[test]
    fn uniform_keeps_partitions_where_balance_allows() {
        let subs = subscriptions(&[("a", &["t"]), ("b", &["t"])]);
        let parts: BTreeMap<String, u32> = [("t".to_string(), 4)].into_iter().collect();
        let first = ServerAssignor::Uniform.assign(&subs, &parts, &BTreeMap::new());
        assert_eq!(counts(&first), vec![2, 2]);
        // A third member joins: it takes one partition from someone; the rest stay put.
        let subs3 = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let second = ServerAssignor::Uniform.assign(&subs3, &parts, &first);
        let moved = first.iter().map(|(member, had)| had.difference(&second[member]).count()).sum::<usize>();
        assert_eq!(moved, 1, "{first:?} -> {second:?}");
        assert_eq!(second["c"].len(), 1);
    }

    fn arbitrary_case() -> impl Strategy<Value = (BTreeMap<String, Vec<String>>, BTreeMap<String, u32>, u64)> {
        let topics = prop::collection::btree_map(prop::sample::select(vec!["t0", "t1", "t2", "t3"]), 0u32..12, 0..4);
        let members = prop::collection::btree_map(
            "m[0-9]",
            prop::collection::vec(prop::sample::select(vec!["t0", "t1", "t2", "t3", "gone"]), 0..4),
            0..8,
        );
        (members, topics, any::<u64>()).prop_map(|(members, topics, seed)| {
            let subs = members.into_iter().map(|(m, ts)| (m, ts.into_iter().map(String::from).collect())).collect();
            let parts = topics.into_iter().map(|(t, n)| (t.to_string(), n)).collect();
            (subs, parts, seed)
        })
    }

    proptest! {
        #[test]
        fn every_assignor_places_each_subscribed_partition_once((subs, parts, seed) in arbitrary_case()) {
            for assignor in [ServerAssignor::Uniform, ServerAssignor::Range] {
                // A previous target from another member set (as after a leave) must not matter.
                let mut previous = BTreeMap::new();
                for (position, member) in subs.keys().enumerate() {
                    if (seed >> (position % 64)) & 1 == 1 {
                        previous.insert(member.clone(), [("t0".to_string(), position as u32), ("t9".to_string(), 0)].into_iter().collect());
                    }
                }
                let target = assignor.assign(&subs, &parts, &previous);
                prop_assert!(check(&subs, &parts, &target).is_ok(), "{:?}: {:?}", assignor, check(&subs, &parts, &target));
                prop_assert_eq!(&target, &assignor.assign(&subs, &parts, &previous), "deterministic");
            }
        }

        #[test]
        fn uniform_balances_equal_subscriptions(members in 1usize..8, count in 0u32..40, seed in any::<u64>()) {
            let subs: BTreeMap<String, Vec<String>> = (0..members).map(|m| (format!("m{m}"), vec!["t".to_string()])).collect();
            let parts: BTreeMap<String, u32> = [("t".to_string(), count)].into_iter().collect();
            // A sticky start: some arbitrary earlier target.
            let mut previous: BTreeMap<String, Partitions> = BTreeMap::new();
            for partition in 0..count {
                let member = format!("m{}", (seed.rotate_left(partition) as usize) % (members + 1));
                previous.entry(member).or_default().insert(("t".to_string(), partition));
            }
            let target = ServerAssignor::Uniform.assign(&subs, &parts, &previous);
            let sizes = counts(&target);
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
            // Sticky: a member keeps at least min(had, its fair share floor) of what it had.
            let floor = count as usize / members;
            for (member, had) in &previous {
                if let Some(now) = target.get(member) {
                    prop_assert!(had.intersection(now).count() >= had.len().min(floor), "{} lost more than balance needs", member);
                }
            }
        }
    }
}
