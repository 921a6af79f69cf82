//! Kafka topic ids (KIP-516) for our topics, which are named only: the consumer protocol
//! (KIP-848) names topics by id in assignments, and Metadata v10+ carries them (a client finds a
//! topic's name from its id there).
//!
//! A topic's id is a function of its name and the raft group of its partition 0: every node
//! computes the same id from the applied metadata, and a topic deleted and created again under
//! the same name gets a new id (raft group ids are never reused), as in Kafka. The id is the
//! group id in its high 64 bits and an FNV-1a hash of the name in its low 64 bits, so two live
//! topics never share one (their first groups differ), and it is never the nil UUID (group ids
//! start at 1).

use std::collections::BTreeMap;

use odradek_consensus::GroupId;
use uuid::Uuid;

use crate::context::NodeContext;

/// The id of topic `name` whose partition 0 is raft group `first_group`.
pub fn topic_id(name: &str, first_group: GroupId) -> Uuid {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = name.bytes().fold(FNV_OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME));
    Uuid::from_u64_pair(first_group, hash)
}

/// Every topic's id as this node's applied metadata has them (name → id), internal topics
/// included.
pub fn all(context: &NodeContext) -> BTreeMap<String, Uuid> {
    let applied = context.state.lock();
    applied
        .meta
        .topics()
        .iter()
        .filter_map(|(name, info)| info.partitions.first().map(|p| (name.clone(), topic_id(name, p.group))))
        .collect()
}

/// The name of the topic with id `id`, if this node knows one.
pub fn name_of(ids: &BTreeMap<String, Uuid>, id: Uuid) -> Option<String> {
    ids.iter().find(|(_, known)| **known == id).map(|(name, _)| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_name_and_by_incarnation_and_are_never_nil() {
        let a = topic_id("orders", 7);
        assert_eq!(a, topic_id("orders", 7), "every node computes the same id");
        assert_ne!(a, topic_id("orders", 9), "a topic created again gets a new id");
        assert_ne!(a, topic_id("payments", 7));
        assert!(!topic_id("", 1).is_nil());
        let (high, _) = a.as_u64_pair();
        assert_eq!(high, 7);
    }
}
