//! The nemesis: one fault at a time, in rounds of the enabled kinds shuffled by a seeded rng, each
//! recorded as a `start` op when injected and a `stop` op when healed.
//!
//! Kinds (CHECKLISTS fault IDs):
//! * `kill` (F-P1): SIGKILL a minority of nodes, restart them after the fault window;
//! * `pause` (F-P2): SIGSTOP a minority, SIGCONT after the window;
//! * `partition` picks one of: `partition-one` (F-N1, isolate one node), `partition-majority`
//!   (F-N2, clean minority/majority split), `partition-ring` (F-N3, majorities ring: each node
//!   reaches only its ring neighbours; with 3 nodes that is full connectivity, so it needs 5),
//!   `partition-oneway` (one node cannot send to the others, but hears them). Each is also a kind
//!   of its own.
//!
//! F-N9 (a client connection dropped mid-request) is not injected yet: the clients dial the nodes
//! directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::watch;

use super::cluster::{wait_listening, Cluster};
use super::proxy::Proxies;
use super::workload::{sleep_or_stop, Recorder};
use crate::history::Fault;

/// Fault kinds `--nemesis` accepts.
pub const NEMESIS_KINDS: &[&str] =
    &["kill", "pause", "partition", "partition-one", "partition-majority", "partition-ring", "partition-oneway", "none"];

/// What one injected fault did, to undo it.
enum Injected {
    Killed(Vec<u64>),
    Paused(Vec<u64>),
    Cut,
}

/// Checks `--nemesis` names.
pub fn parse_kinds(text: &str) -> Result<Vec<String>, String> {
    let kinds: Vec<String> = text.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty() && k != "none").collect();
    for kind in &kinds {
        if !NEMESIS_KINDS.contains(&kind.as_str()) {
            return Err(format!("unknown nemesis {kind:?}; known: {}", NEMESIS_KINDS.join(",")));
        }
    }
    Ok(kinds)
}

/// A random minority (1..=(n-1)/2 nodes).
fn minority(ids: &[u64], rng: &mut SmallRng) -> Vec<u64> {
    let size = rng.gen_range(1..=(ids.len() - 1) / 2);
    let mut chosen: Vec<u64> = ids.choose_multiple(rng, size).copied().collect();
    chosen.sort_unstable();
    chosen
}

/// Both directions of every link between `a` and `b`.
fn cut_between(a: &[u64], b: &[u64]) -> BTreeSet<(u64, u64)> {
    a.iter().flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)])).collect()
}

/// The directed links a partition kind cuts, and a description.
fn partition_cut(kind: &str, ids: &[u64], rng: &mut SmallRng) -> (&'static str, BTreeSet<(u64, u64)>, String) {
    let n = ids.len();
    match kind {
        "partition-one" => {
            let one = *ids.choose(rng).expect("a cluster has nodes");
            let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != one).collect();
            ("F-N1 isolate-one", cut_between(&[one], &rest), format!("{one} | {rest:?}"))
        }
        "partition-majority" => {
            let small = minority(ids, rng);
            let rest: Vec<u64> = ids.iter().copied().filter(|i| !small.contains(i)).collect();
            ("F-N2 majority-split", cut_between(&small, &rest), format!("{small:?} | {rest:?}"))
        }
        "partition-ring" if n >= 5 => {
            let mut ring = ids.to_vec();
            ring.shuffle(rng);
            let mut cut = BTreeSet::new();
            for (i, &x) in ring.iter().enumerate() {
                for (j, &y) in ring.iter().enumerate() {
                    let distance = (i + n - j) % n;
                    if x != y && distance != 1 && distance != n - 1 {
                        cut.insert((x, y));
                    }
                }
            }
            ("F-N3 majorities-ring", cut, format!("ring {ring:?}"))
        }
        // With fewer than 5 nodes a ring is full connectivity: cut one direction instead.
        _ => {
            let one = *ids.choose(rng).expect("a cluster has nodes");
            let cut = ids.iter().filter(|&&i| i != one).map(|&i| (one, i)).collect();
            ("F-N one-way", cut, format!("{one} -> others cut, others -> {one} open"))
        }
    }
}

/// Runs faults until `stop`: `quiet`, then one fault for `window`, healed, repeated. Heals
/// whatever is injected before returning.
pub async fn run(
    recorder: Arc<Recorder>,
    cluster: Arc<Mutex<Cluster>>,
    proxies: Arc<Proxies>,
    kinds: Vec<String>,
    (quiet, window): (Duration, Duration),
    mut rng: SmallRng,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let ids = cluster.lock().expect("cluster lock").ids();
    if kinds.is_empty() {
        return Ok(());
    }
    let mut round: Vec<String> = Vec::new();
    loop {
        if sleep_or_stop(quiet, &mut stop).await {
            return Ok(());
        }
        // Rounds of the enabled kinds in a shuffled order: every kind is injected once per
        // round, so a short run still sees each of them.
        if round.is_empty() {
            round = kinds.clone();
            round.shuffle(&mut rng);
        }
        let mut kind = round.pop().expect("refilled above");
        if kind == "partition" {
            kind =
                ["partition-one", "partition-majority", "partition-ring", "partition-oneway"].choose(&mut rng).expect("four").to_string();
        }
        let (fault, injected) = inject(&kind, &ids, &cluster, &proxies, &mut rng);
        recorder.history().fault_start(fault.clone()).expect("nemesis ops always fit");
        // A stopping run cuts the window short; the fault is healed either way.
        let _ = sleep_or_stop(window, &mut stop).await;
        heal(injected, &cluster, &proxies).await?;
        recorder.history().fault_stop(fault).expect("nemesis ops always fit");
        if *stop.borrow() {
            return Ok(());
        }
    }
}

fn inject(kind: &str, ids: &[u64], cluster: &Mutex<Cluster>, proxies: &Proxies, rng: &mut SmallRng) -> (Fault, Injected) {
    let mut details = BTreeMap::new();
    let (name, injected) = match kind {
        "kill" => {
            let nodes = minority(ids, rng);
            let mut cluster = cluster.lock().expect("cluster lock");
            nodes.iter().for_each(|&id| cluster.kill(id));
            details.insert("nodes".to_string(), format!("{nodes:?}"));
            ("F-P1 kill", Injected::Killed(nodes))
        }
        "pause" => {
            let nodes = minority(ids, rng);
            let mut cluster = cluster.lock().expect("cluster lock");
            nodes.iter().for_each(|&id| cluster.pause(id));
            details.insert("nodes".to_string(), format!("{nodes:?}"));
            ("F-P2 pause", Injected::Paused(nodes))
        }
        partition => {
            let (name, cut, description) = partition_cut(partition, ids, rng);
            proxies.set_cut(&cut);
            details.insert("partition".to_string(), description);
            details.insert("links-cut".to_string(), format!("{:?}", cut.iter().map(|(a, b)| format!("{a}->{b}")).collect::<Vec<_>>()));
            (name, Injected::Cut)
        }
    };
    (Fault { fault: name.to_string(), details }, injected)
}

async fn heal(injected: Injected, cluster: &Mutex<Cluster>, proxies: &Proxies) -> Result<(), String> {
    match injected {
        Injected::Killed(nodes) => {
            for id in nodes {
                let target = {
                    let mut cluster = cluster.lock().expect("cluster lock");
                    cluster.spawn(id).map_err(|e| format!("restarting node {id}: {e}"))?;
                    cluster.listen_target(id)
                };
                wait_listening(target).await?;
            }
        }
        Injected::Paused(nodes) => {
            let mut cluster = cluster.lock().expect("cluster lock");
            nodes.iter().for_each(|&id| cluster.resume(id));
        }
        Injected::Cut => proxies.heal(),
    }
    Ok(())
}
