//! Which partition a record goes to.
//!
//! - Keyed records: Kafka's default, `to_positive(murmur2(key)) % partitions`, so a key maps to
//!   the same partition here as in a Kafka producer, and always the same one for a fixed
//!   partition count. murmur2 is written from the public description of MurmurHash2 (Austin
//!   Appleby) with the seed and finalisation Kafka documents: seed `0x9747b28c`, 4-byte
//!   little-endian blocks.
//! - Keyless records: "sticky" — all go to one partition until about a batch's worth of bytes
//!   has gone there, then the next partition (round robin). Batches fill up instead of
//!   spreading one record per partition per linger (Kafka's KIP-480 / KIP-794). The first
//!   sticky partition is random per partitioner, as Kafka's: otherwise every short-lived
//!   producer (one `odradek produce` per line of a script) would put everything on partition 0.
//!   It is drawn from the OS generator (the simulator's under madsim, so a seed replays) once,
//!   at the first keyless record; keyed records and explicit partitions never draw.
//!
//! Invariant: the chosen partition is always `< partitions`.

use std::collections::BTreeMap;

/// MurmurHash2 (32-bit) of `data` with Kafka's seed, as Kafka's `Utils.murmur2` computes it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let mut h: u32 = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes(block.try_into().expect("chunks of 4"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (index, byte) in tail.iter().enumerate() {
            h ^= u32::from(*byte) << (8 * index);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(hash: i32) -> u32 {
    (hash & 0x7fff_ffff) as u32
}

/// The partition Kafka's default partitioner gives a keyed record.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

/// Sticky state for keyless records, per topic.
#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: u32,
    bytes: usize,
}

/// Chooses partitions; see the module comment.
#[derive(Debug)]
pub struct Partitioner {
    /// Bytes sent to a sticky partition before switching to the next: one batch's worth.
    sticky_bytes_max: usize,
    sticky: BTreeMap<String, Sticky>,
    /// Spreads the first sticky partition of each topic: the next topic starts here.
    /// `None` until the first keyless record, then random.
    topic_start_next: Option<u32>,
}

impl Partitioner {
    /// A partitioner that moves keyless records on after `sticky_bytes_max` bytes, starting at
    /// a random partition.
    pub fn new(sticky_bytes_max: usize) -> Partitioner {
        assert!(sticky_bytes_max > 0);
        Partitioner { sticky_bytes_max, sticky: BTreeMap::new(), topic_start_next: None }
    }

    /// A partitioner whose first keyless record goes to `first % partitions` (tests).
    pub fn starting_at(sticky_bytes_max: usize, first: u32) -> Partitioner {
        Partitioner { topic_start_next: Some(first), ..Partitioner::new(sticky_bytes_max) }
    }

    /// The partition for a record of `record_bytes` bytes to `topic`, which has `partitions`.
    pub fn partition(&mut self, topic: &str, key: Option<&[u8]>, record_bytes: usize, partitions: u32) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        if !self.sticky.contains_key(topic) {
            let start = *self.topic_start_next.get_or_insert_with(|| rand::RngCore::next_u32(&mut rand::rngs::OsRng));
            self.sticky.insert(topic.to_string(), Sticky { partition: start % partitions, bytes: 0 });
            self.topic_start_next = Some(start.wrapping_add(1));
        }
        let sticky = self.sticky.get_mut(topic).expect("inserted above");
        if sticky.partition >= partitions {
            *sticky = Sticky { partition: 0, bytes: 0 };
        }
        if sticky.bytes >= self.sticky_bytes_max {
            *sticky = Sticky { partition: (sticky.partition + 1) % partitions, bytes: 0 };
        }
        sticky.bytes += record_bytes.max(1);
        let partition = sticky.partition;
        assert!(partition < partitions);
        partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_vectors() {
        // Kafka's UtilsTest.testMurmur2 vectors.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "murmur2({:?})", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keys_map_to_stable_partitions_and_spread() {
        let mut counts = [0u32; 8];
        for index in 0..8000 {
            let key = format!("key-{index}");
            let partition = partition_for_key(key.as_bytes(), 8);
            assert_eq!(partition, partition_for_key(key.as_bytes(), 8));
            counts[partition as usize] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "{counts:?}");
        }
        let mut partitioner = Partitioner::new(100);
        assert_eq!(partitioner.partition("t", Some(b"21"), 10, 8), partition_for_key(b"21", 8));
    }

    #[test]
    fn to_positive_clears_only_the_sign_bit() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn keyless_records_stick_for_a_batch_then_move_on() {
        let mut partitioner = Partitioner::starting_at(100, 0);
        let first: Vec<u32> = (0..10).map(|_| partitioner.partition("t", None, 10, 3)).collect();
        assert!(first.iter().all(|partition| *partition == first[0]), "{first:?}");
        let next = partitioner.partition("t", None, 10, 3);
        assert_eq!(next, (first[0] + 1) % 3);
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[partitioner.partition("t", None, 10, 3) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
        // Fewer partitions than before: still in range.
        assert!(partitioner.partition("t", None, 10, 1) == 0);
        // The next topic starts one further on.
        assert_eq!(partitioner.partition("u", None, 10, 3), 1);
    }

    #[test]
    fn the_first_sticky_partition_is_where_the_partitioner_starts() {
        for first in [0, 1, 2, 3, u32::MAX] {
            let mut partitioner = Partitioner::starting_at(100, first);
            assert_eq!(partitioner.partition("t", None, 10, 3), first % 3);
        }
        // Random otherwise: 64 partitioners of 1024 partitions do not all start at one place.
        let firsts: std::collections::BTreeSet<u32> = (0..64).map(|_| Partitioner::new(100).partition("t", None, 10, 1024)).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }
}
