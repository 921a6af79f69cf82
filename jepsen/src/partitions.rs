//! Network partition shapes shared by the real-process harness and the simulator's nemesis:
//! which directed links a partition cuts, for ids `1..=n`.

use std::collections::BTreeSet;

/// Both directions of every link between `a` and `b` (F-N1 with one node, F-N2 with a minority).
pub fn cut_between(a: &[u64], b: &[u64]) -> BTreeSet<(u64, u64)> {
    a.iter().flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)])).collect()
}

/// F-N3 majorities ring: in `ring` order each node reaches only its two neighbours, so every
/// node sees a majority (itself and two others of five) but no two majorities agree. Cuts every
/// other directed link.
pub fn majorities_ring(ring: &[u64]) -> BTreeSet<(u64, u64)> {
    let n = ring.len();
    let mut cut = BTreeSet::new();
    for (i, &x) in ring.iter().enumerate() {
        for (j, &y) in ring.iter().enumerate() {
            let distance = (i + n - j) % n;
            if x != y && distance != 1 && distance != n - 1 {
                cut.insert((x, y));
            }
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_of_five_keeps_only_neighbours() {
        let cut = majorities_ring(&[1, 2, 3, 4, 5]);
        assert_eq!(cut.len(), 5 * 2, "each node loses its two non-neighbours");
        assert!(!cut.contains(&(1, 2)) && !cut.contains(&(1, 5)) && cut.contains(&(1, 3)) && cut.contains(&(3, 1)));
        assert_eq!(cut_between(&[1], &[2, 3]), BTreeSet::from([(1, 2), (2, 1), (1, 3), (3, 1)]));
    }
}
