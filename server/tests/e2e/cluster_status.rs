//! `odradek cluster status` against real processes (issue 15, visibility): every node up, no
//! suspect replica, no learner, no reassignment, and a partition's caught-up set naming all its
//! replicas; after a follower is killed and records are produced, that node is unreachable and
//! falls out of the caught-up set, while its assignment stays.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ProcessCluster;

const BIN: &str = env!("CARGO_BIN_EXE_odradek");

/// `odradek ARGS` (stdin empty): success and stdout, or failure and stderr.
fn odradek(bootstrap: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new("timeout").arg("60").arg(BIN).args(args).env("ODRADEK_BOOTSTRAP", bootstrap).output().expect("run odradek");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{}: {stderr}", output.status))
    }
}

/// Runs `cluster status` until `check` holds; its last output.
fn status_until(bootstrap: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = odradek(bootstrap, &["cluster", "status"]).unwrap_or_else(|error| error);
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} within 30 s; last status:\n{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (leader, assigned, caught up) of `topic`'s partition 0 in a status output.
fn partition_line(status: &str, topic: &str) -> Option<(String, String, String)> {
    let line = status.lines().find(|line| line.starts_with(&format!("{topic} ")))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let [_, partition, leader, ..] = words.as_slice() else { return None };
    assert_eq!(*partition, "0");
    Some((leader.to_string(), words[words.len() - 2].to_string(), words[words.len() - 1].to_string()))
}

/// The state word of node `id` in a status output ("up", "unreachable").
fn node_state(status: &str, id: u64) -> Option<String> {
    let line = status.lines().find(|line| line.trim_start().starts_with(&format!("{id}  ")))?;
    line.split_whitespace().nth(2).map(String::from)
}

#[test]
fn status_shows_nodes_suspects_learners_reassignments_and_caught_up_replicas() {
    let mut cluster = ProcessCluster::start(3);
    let bootstrap = cluster.bootstrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = odradek(&bootstrap, &["topic", "create", "watched", "-p", "1", "-r", "3"]) {
        assert!(Instant::now() < deadline, "topic create: {error}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = status_until(&bootstrap, "every replica caught up", |status| {
        partition_line(status, "watched").is_some_and(|(_, assigned, caught_up)| {
            let mut assigned: Vec<&str> = assigned.split(',').collect();
            assigned.sort_unstable();
            assigned == ["1", "2", "3"] && caught_up == "1,2,3"
        }) && (1..=3).all(|id| node_state(status, id).as_deref() == Some("up"))
    });
    for section in ["Suspect replicas: none", "Learners: none", "Reassignments in progress: none"] {
        assert!(status.contains(section), "{section:?} in:\n{status}");
    }
    assert!(status.contains("metadata lag 0"), "the controller reports the metadata replicas:\n{status}");
    let controller: u64 =
        status.lines().find_map(|line| line.strip_prefix("Nodes (controller: ")?.strip_suffix("):")?.parse().ok()).expect("a controller");
    let (leader, _, _) = partition_line(&status, "watched").unwrap();
    let leader: u64 = leader.parse().expect("a leader");
    let victim = (1..=3).find(|&id| id != leader && id != controller).expect("three nodes");

    cluster.kill(victim);
    let produced = Command::new("sh")
        .args(["-c", "printf 'a\\nb\\nc\\n' | timeout 60 \"$ODRADEK\" produce -t watched -p 0"])
        .env("ODRADEK", BIN)
        .env("ODRADEK_BOOTSTRAP", &bootstrap)
        .status()
        .expect("produce");
    assert!(produced.success());
    let others: Vec<String> = (1..=3).filter(|&id| id != victim).map(|id| id.to_string()).collect();
    let status = status_until(&bootstrap, "the killed follower out of the caught-up set", |status| {
        node_state(status, victim).as_deref() == Some("unreachable")
            && partition_line(status, "watched").is_some_and(|(_, _, caught_up)| caught_up == others.join(","))
    });
    let (_, assigned, _) = partition_line(&status, "watched").unwrap();
    assert!(assigned.split(',').any(|id| id == victim.to_string()), "still assigned to node {victim}:\n{status}");
}
