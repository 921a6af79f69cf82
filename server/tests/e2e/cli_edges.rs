//! The CLI where a new user trips (issue 19): commands whose output is cut off by the reader
//! (`| head -1`), topic creation seen from a node that hosts only some of its partitions,
//! consuming what does not exist, and where keyless records land. Real processes on loopback.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::ProcessCluster;

const BIN: &str = env!("CARGO_BIN_EXE_odradek");

/// Seconds any one CLI command may run before `timeout` stops it (a hung command fails the
/// test instead of hanging it).
const COMMAND_SECONDS_MAX: &str = "90";

/// A command line of `odradek ARGS` against `bootstrap`, bounded in time.
fn odradek(bootstrap: &str, args: &[&str]) -> Command {
    let mut command = Command::new("timeout");
    command.arg(COMMAND_SECONDS_MAX).arg(BIN).args(args).env("ODRADEK_BOOTSTRAP", bootstrap).env("RUST_BACKTRACE", "0");
    command
}

/// Runs `odradek ARGS` with `input` on stdin; its output.
fn run(bootstrap: &str, args: &[&str], input: &str) -> Output {
    let mut child = odradek(bootstrap, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// `run`, asserting success; its stdout.
fn run_ok(bootstrap: &str, args: &[&str], input: &str) -> String {
    let output = run(bootstrap, args, input);
    assert!(
        output.status.success(),
        "odradek {args:?}: {}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs `odradek ARGS` with its stdout already closed by the reader (as `| head -1` does once
/// it has its line): every write gets EPIPE. The read end is dropped right after the spawn,
/// long before the command has connected to the cluster and has anything to print.
fn run_with_stdout_closed(bootstrap: &str, args: &[&str], input: &str) -> Output {
    let mut child = odradek(bootstrap, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_command_ends_quietly_when_its_reader_closes_the_pipe() {
    let cluster = ProcessCluster::start(3);
    let bootstrap = cluster.bootstrap();
    run_ok(&bootstrap, &["topic", "create", "piped", "-p", "2", "-r", "3"], "");
    run_ok(&bootstrap, &["produce", "-t", "piped", "-p", "0"], "a\nb\nc\n");
    let commands: [&[&str]; 5] = [
        &["cluster", "status"],
        &["topic", "list"],
        &["topic", "describe", "piped"],
        &["consume", "-t", "piped"],
        &["produce", "-t", "piped", "-p", "1", "--print-offsets"],
    ];
    for args in commands {
        let output = run_with_stdout_closed(&bootstrap, args, "d\ne\n");
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("panicked"), "odradek {args:?} panicked on the closed pipe: {stderr}");
        assert!(output.status.success(), "odradek {args:?} ended with {} on the closed pipe: {stderr}", output.status);
    }
    // The producer stopped printing, not producing.
    let consumed = run_ok(&bootstrap, &["consume", "-t", "piped", "-p", "1"], "");
    assert_eq!(consumed.lines().collect::<Vec<_>>(), vec!["d", "e"]);
}

/// The metadata answer of the node at `addr` for `topic` once every partition has a leader
/// with its term (a node that does not host a partition must still know who leads it), or the
/// last answer after `attempts` tries 50 ms apart.
fn metadata_with_every_leader(addr: &str, topic: &str, attempts: usize) -> odradek_client::wire::proto::TopicMetadata {
    use odradek_client::wire::proto::{ErrorCode, MetadataRequest};
    let mut raw = common::raw::Raw::greeted(addr);
    let mut last = None;
    for _ in 0..attempts {
        let mut request = MetadataRequest::new();
        request.topics.push(topic.into());
        let response = raw.call(common::raw::request_with(1, |r| r.set_metadata(request)));
        if response.error == ErrorCode::NONE {
            let answer = response.get_metadata().topics[0].clone();
            if !answer.partitions.is_empty() && answer.partitions.iter().all(|p| p.leader != 0 && p.leader_term != 0) {
                return answer;
            }
            last = Some(answer);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("node {addr}: some partition of {topic} still has no leader with a term: {last:?}");
}

#[test]
fn topic_create_through_a_node_outside_some_partitions_finds_every_leader() {
    let cluster = ProcessCluster::start(3);
    // Node 1 hosts two of three partitions with two copies, one of three with one copy.
    let node1 = cluster.client_addr(1);
    for (topic, replication_factor) in [("two-copies", "2"), ("one-copy", "1")] {
        let created = run_ok(&node1, &["topic", "create", topic, "-p", "3", "-r", replication_factor], "");
        assert!(created.contains(&format!("Created topic \"{topic}\"")), "{created}");
    }
}

#[test]
fn a_node_outside_a_partition_reports_its_leader_and_term() {
    let cluster = ProcessCluster::start(3);
    run_ok(&cluster.bootstrap(), &["topic", "create", "spread", "-p", "3", "-r", "1"], "");
    for id in 1..=3 {
        let topic = metadata_with_every_leader(&cluster.client_addr(id), "spread", 400);
        for partition in &topic.partitions {
            assert_eq!(partition.replicas.len(), 1);
            assert_eq!(partition.leader, partition.replicas[0], "node {id} names the only replica as leader: {partition:?}");
        }
    }
}

#[test]
fn consuming_what_does_not_exist_fails_at_once_with_the_reason() {
    let cluster = ProcessCluster::start(1);
    let bootstrap = cluster.bootstrap();
    run_ok(&bootstrap, &["topic", "create", "three", "-p", "3", "-r", "1"], "");
    run_ok(&bootstrap, &["produce", "-t", "three", "-p", "0"], "a\nb\n");

    let output = run(&bootstrap, &["consume", "-t", "three", "-p", "7"], "");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("has 3 partitions") && stderr.contains("no partition 7"), "{stderr}");

    let output = run(&bootstrap, &["consume", "-t", "three", "-p", "0", "--offset", "1000"], "");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "an offset beyond the end is an error, not an empty read: {stderr}");
    assert!(stderr.contains("offset 1000") && stderr.contains("end of three/0 is 2"), "{stderr}");

    // At the end exactly is not beyond it: nothing to read yet.
    assert_eq!(run_ok(&bootstrap, &["consume", "-t", "three", "-p", "0", "--offset", "2"], ""), "");
    assert_eq!(run_ok(&bootstrap, &["consume", "-t", "three", "-p", "0", "--offset", "1"], ""), "b\n");
}

/// How many producer processes may all start on partition 0 before the test calls it a
/// pattern: a random start among 3 partitions does so with probability 3^-20.
const PRODUCER_PROCESSES_MAX: usize = 20;

#[test]
fn keyless_producer_processes_do_not_all_start_on_partition_0() {
    let cluster = ProcessCluster::start(1);
    let bootstrap = cluster.bootstrap();
    run_ok(&bootstrap, &["topic", "create", "sticky", "-p", "3", "-r", "1"], "");
    let mut partitions = Vec::new();
    for _ in 0..PRODUCER_PROCESSES_MAX {
        let printed = run_ok(&bootstrap, &["produce", "-t", "sticky", "--print-offsets"], "keyless\n");
        let partition: u32 = printed.split('\t').next().unwrap().trim().parse().unwrap();
        assert!(partition < 3, "{printed}");
        partitions.push(partition);
        if partition != 0 {
            return;
        }
    }
    panic!("{PRODUCER_PROCESSES_MAX} producer processes all sent their first keyless record to partition 0: {partitions:?}");
}
