//! The harness end to end: a short run of `odradek-jepsen` against real `odradek server`
//! processes under kill, pause and partition faults must pass with zero anomalies; its saved
//! report must re-check to the same verdict; and a doctored copy of its history, with one
//! acknowledged value removed from every poll, must be flagged (exit status 1, L6 or L7 naming
//! the value) — the harness has teeth.
//!
//! The server binary: a package's tests cannot depend on another package's binary, and the one
//! in `target/<profile>/` has `--planted-bug` only when a workspace build happened to unify the
//! server's `planted-bugs` feature into it. So the test builds its own (once per test process,
//! with `cargo build -p odradek-server --features planted-bugs`, in this test's profile, into
//! `target/tmp/planted-bugs/`), and `cargo test -p odradek-jepsen` passes alone whatever else was
//! built. `$ODRADEK_BINARY` names another binary instead (it must accept `--planted-bug`).

#![cfg(not(madsim))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use odradek_jepsen::checker::{check, AnomalyKind, CheckOptions, Verdict};
use odradek_jepsen::history::{History, OpF, OpType, OpValue, Value};
use odradek_jepsen::model::{generate, Bug, ModelConfig};
use odradek_jepsen::{intervals, report};

const HARNESS: &str = env!("CARGO_BIN_EXE_odradek-jepsen");

/// The `odradek` binary the runs start: `$ODRADEK_BINARY`, else [`build_planted_server`]'s.
fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    let binary = BINARY.get_or_init(|| std::env::var_os("ODRADEK_BINARY").map_or_else(build_planted_server, PathBuf::from));
    binary.clone()
}

/// Builds `odradek` with the server's `planted-bugs` feature into a target dir of its own
/// (so it never replaces the product binary in `target/<profile>/`), in the profile this test
/// was built in; returns its path. Cargo rebuilds it only when the sources changed.
fn build_planted_server() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("planted-bugs");
    // The harness binary is in target/<profile dir>/: "debug" for the dev profile.
    let profile_dir = Path::new(HARNESS).parent().and_then(Path::file_name).and_then(|name| name.to_str()).expect("a profile dir");
    let profile = if profile_dir == "debug" { "dev" } else { profile_dir };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--locked", "-p", "odradek-server", "--features", "planted-bugs", "--bin", "odradek", "--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .expect("run cargo");
    assert!(output.status.success(), "building the planted-bugs server failed: {}", text(&output));
    let binary = target_dir.join(profile_dir).join("odradek");
    assert!(binary.is_file(), "cargo built no {}: {}", binary.display(), text(&output));
    binary
}

/// A `--nemesis membership` run (F-M1) completed a round, node 4 joined and took a partition,
/// and a node was decommissioned.
fn assert_membership_rounds(history: &History, log: &str) {
    let windows = intervals::fault_windows(history);
    let rounds = windows.iter().filter(|w| w.fault == "F-M1 membership" && w.stop_s.is_some()).count();
    assert!(rounds >= 1, "no completed membership round:\n{log}");
    assert!(log.contains("membership round: node 4 joined"), "node 4 did not join and take a partition:\n{log}");
    assert!(log.contains("decommissioned and stopped"), "no node was decommissioned:\n{log}");
}

fn harness(args: &[&str]) -> Output {
    Command::new(HARNESS).args(args).output().expect("run odradek-jepsen")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `line` without ANSI colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

fn saved_verdict(dir: &Path) -> Verdict {
    serde_json::from_str(&std::fs::read_to_string(dir.join(report::VERDICT_FILE)).expect("verdict.json")).expect("a verdict")
}

/// Removes one acknowledged value from every ok poll (as if the cluster lost it) and writes the
/// doctored history to `to/history.jsonl`. Returns the value.
fn doctor_lose_acked_value(history: &History, to: &Path) -> Value {
    let mut ops = history.ops().to_vec();
    let lost = ops
        .iter()
        .find_map(|op| match (&op.kind, &op.value) {
            (OpType::Ok, OpValue::Send(send)) if op.f == OpF::Send => send.values.first().copied(),
            _ => None,
        })
        .expect("the run acknowledged at least one send");
    for op in &mut ops {
        if let OpValue::Poll(poll) = &mut op.value {
            for records in poll.records.values_mut() {
                records.retain(|&(_, value)| value != lost);
            }
        }
    }
    let doctored = History::from_ops(ops).expect("removing reads keeps the history well formed");
    std::fs::create_dir_all(to).unwrap();
    doctored.write_json_lines(std::fs::File::create(to.join(report::HISTORY_FILE)).unwrap()).unwrap();
    lost
}

#[test]
fn short_real_run_under_kill_pause_partition_passes_and_rechecks() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = harness(&[
        "run",
        "--nodes",
        "3",
        "--time-limit",
        "22",
        "--rate",
        "40",
        "--nemesis",
        "kill,pause,partition,conn-drop",
        "--fault-quiet",
        "2",
        "--fault-window",
        "3",
        "--recovery",
        "4",
        "--seed",
        "7",
        "--binary",
        binary.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");

    // The report directory is complete and the faults really happened.
    for file in [report::HISTORY_FILE, report::VERDICT_FILE, report::SUMMARY_FILE, report::LATENCY_PLOT_FILE, report::THROUGHPUT_PLOT_FILE]
    {
        assert!(out.join(file).is_file(), "{file} missing:\n{log}");
    }
    let history = report::read_history(&out).unwrap();
    let windows = intervals::fault_windows(&history);
    for fault in ["F-P1 kill", "F-P2 pause", "F-N9 client-connection-drops"] {
        assert!(windows.iter().any(|w| w.fault == fault && w.stop_s.is_some()), "no healed {fault} window:\n{log}");
    }
    assert!(windows.iter().any(|w| w.fault.starts_with("F-N") && w.stop_s.is_some()), "no healed partition window:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty(), "{log}");
    assert!(verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100, "too little load to mean anything:\n{log}");
    assert_eq!(verdict.stats.values_unseen, 0, "{log}");

    // `check DIR` re-checks the saved history to the same verdict.
    let rechecked = harness(&["check", out.to_str().unwrap()]);
    assert_eq!(rechecked.status.code(), Some(0), "{}", text(&rechecked));
    let log_dump = report::read_log_dump(&out).unwrap().expect("the run writes the drain's log dump");
    assert!(log_dump.iter().filter(|r| r.producer.is_some()).count() >= 100, "the dump names the idempotent producers:\n{log}");
    assert_eq!(verdict.stats.log_dump_records, log_dump.len() as u64, "P1, P3 and P4 were checked over the dump");
    assert_eq!(check(&history, &CheckOptions { log_dump: Some(log_dump), ..CheckOptions::default() }), verdict);

    // Teeth: the same history with one acknowledged value never read must be flagged.
    let doctored = dir.path().join("doctored");
    let lost = doctor_lose_acked_value(&history, &doctored);
    let flagged = harness(&["check", "--write", doctored.to_str().unwrap()]);
    let flagged_log = text(&flagged);
    assert_eq!(flagged.status.code(), Some(1), "a lost acknowledged write must fail the check:\n{flagged_log}");
    assert!(flagged_log.contains("FAIL"), "{flagged_log}");
    // An acknowledged value no poll ever returned: L6 lost-write (the checker's name for an acked
    // write missing at its offset) or L7 unseen, naming the value.
    let verdict = saved_verdict(&doctored);
    let loss = |kind: AnomalyKind| verdict.has_fatal(kind) && verdict.anomalies.iter().any(|a| a.kind == kind && a.values.contains(&lost));
    assert!(loss(AnomalyKind::LostWrite) || loss(AnomalyKind::Unseen), "value {lost} not flagged:\n{flagged_log}");
}

/// Teeth on real processes: servers that answer acks=all once the leader's own log has the batch
/// (`--planted-bug ack-before-commit`) lose acknowledged writes when a leader is cut off from its
/// followers (it keeps acknowledging what the new majority never sees); the checker must say so.
/// F-P7 / F-M3 on real processes: a node killed, its data directory deleted, restarted empty
/// while producers and consumers run. It rejoins as a new incarnation (R8 d: no vote before it
/// caught up) and no acknowledged write is lost (L1 over the final drain).
#[test]
fn short_real_run_under_wipes_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wipe");
    let args = ["run", "--nodes", "3", "--time-limit", "24", "--rate", "40", "--nemesis", "wipe,kill", "--fault-quiet", "2"];
    let more =
        ["--fault-window", "3", "--recovery", "6", "--seed", "3", "--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_eq!(odradek_jepsen::harness::cluster::JOINING_FILE, odradek_server::data_dir::JOINING_FILE);
    let output = harness(&[&args[..], &more[..]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    let history = report::read_history(&out).unwrap();
    let windows = intervals::fault_windows(&history);
    // A round that found a node still joining injects nothing and says "skipped".
    let wiped = windows.iter().filter(|w| w.fault == "F-P7 wipe" && w.stop_s.is_some() && !w.details.contains("skipped")).count();
    assert!(wiped >= 1, "no healed wipe window:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100, "too little load to mean anything:\n{log}");
}

/// F-M1 on real processes (`--nemesis membership`, issue 15): while producers and consumers run,
/// a node joins (`--join`), a partition is reassigned onto it and another node is decommissioned
/// and stopped, with the operator's admin calls. No acknowledged write is lost and every
/// partition's order holds (the shared checker, L1–L13, over the final drain).
#[test]
fn short_real_run_under_membership_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("membership");
    let args = ["run", "--nodes", "3", "--time-limit", "24", "--rate", "40", "--nemesis", "membership", "--fault-quiet", "2"];
    let more =
        ["--fault-window", "3", "--recovery", "6", "--seed", "5", "--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let output = harness(&[&args[..], &more[..]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    let history = report::read_history(&out).unwrap();
    assert_membership_rounds(&history, &log);
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100, "too little load to mean anything:\n{log}");
}

#[test]
fn planted_ack_before_commit_is_caught_on_real_processes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("planted");
    let output = harness(&[
        "run",
        "--nodes",
        "3",
        "--time-limit",
        "12",
        "--rate",
        "120",
        "--nemesis",
        "partition-one",
        "--fault-quiet",
        "1.5",
        "--fault-window",
        "3",
        "--recovery",
        "3",
        "--seed",
        "11",
        "--planted-bug",
        "ack-before-commit",
        "--binary",
        binary.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "the planted bug must fail the run:\n{log}");
    let verdict = saved_verdict(&out);
    let lost = [AnomalyKind::LostWrite, AnomalyKind::Unseen];
    assert!(lost.iter().any(|&kind| verdict.has_fatal(kind)), "expected a lost acknowledged write (L6/L7):\n{log}");
    println!("{verdict}");
}

/// DR1 on real processes (`--delete-records`): a deleter deletes the low part of a partition
/// every 2 s while nodes are killed (F-P1) and client connections dropped (F-N9); consumers whose
/// position was deleted resume at the new log start and the final drain reads from it. The
/// shared checker must find nothing, and the deletions must have happened and been acknowledged.
#[test]
fn short_real_run_with_delete_records_under_kill_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("delete-records");
    let args = ["run", "--delete-records", "--nodes", "3", "--time-limit", "16", "--rate", "60", "--nemesis", "kill,conn-drop"];
    let more = ["--fault-quiet", "2", "--fault-window", "3", "--recovery", "4", "--seed", "5"];
    let output = harness(&[&args[..], &more[..], &["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    let history = report::read_history(&out).unwrap();
    let deletions: Vec<_> = history
        .ops()
        .iter()
        .filter_map(|op| match (&op.kind, &op.value) {
            (OpType::Ok, OpValue::DeleteRecords(d)) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(deletions.len() >= 2, "too few acknowledged deletions to mean anything:\n{log}");
    assert!(deletions.iter().all(|d| d.log_start.is_some_and(|start| start >= d.before)), "{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100, "too little load to mean anything:\n{log}");
}

/// Short retention on real processes (`--retention`, issue 20): 2 KiB segments kept for 8 KiB
/// or 5 s while one node is killed for 6 s (F-P1) at 150 records/s over 2 keys, so retention
/// deletes what the killed node has not got and it must catch up by a snapshot. Log starts are
/// recorded (`log-start`) and the shared checker requires only the records at or above them; it
/// must find nothing, and the replicas must converge after the drain (R7, R12 b).
#[test]
fn short_real_run_with_retention_under_kill_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("retention");
    let args = ["run", "--retention", "--nodes", "3", "--keys", "2", "--time-limit", "16", "--rate", "150", "--nemesis", "kill"];
    let more = ["--fault-quiet", "3", "--fault-window", "6", "--recovery", "4", "--seed", "12"];
    let output = harness(&[&args[..], &more[..], &["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    assert!(log.contains("replicas converged at"), "{log}");
    let history = report::read_history(&out).unwrap();
    let moved: Vec<u64> = history
        .ops()
        .iter()
        .filter_map(|op| match &op.value {
            OpValue::LogStart(start) if op.f == OpF::LogStart => Some(start.key),
            _ => None,
        })
        .collect();
    for key in [0, 1] {
        assert!(moved.contains(&key), "retention never moved key {key}'s log start:\n{log}");
    }
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
}

/// Teeth for R7 / R12 b on real processes: servers whose leaders drop the snapshot a follower
/// behind their log start needs (`--planted-bug snapshot-withheld`) leave the node killed for 6 s
/// behind for good; no client sees it while the other two serve, but the replicas never
/// converge after the drain.
#[test]
fn planted_snapshot_withheld_is_caught_on_real_processes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("planted-snapshot");
    let args = ["run", "--retention", "--nodes", "3", "--keys", "2", "--time-limit", "16", "--rate", "150", "--nemesis", "kill"];
    let more = ["--fault-quiet", "3", "--fault-window", "6", "--recovery", "4", "--seed", "12"];
    let planted = ["--planted-bug", "snapshot-withheld"];
    let paths = ["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let output = harness(&[&args[..], &more[..], &planted[..], &paths[..]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "the planted bug must fail the run:\n{log}");
    assert!(log.contains("R7: the replicas did not converge"), "expected R7 to name the replica left behind:\n{log}");
}

/// Teeth for DR1 on real processes: servers whose DeleteRecords moves only the leader's log start
/// in memory and acknowledges at once (`--planted-bug delete-records-not-replicated`) give the
/// deleted records back once that leader is killed; the final drain reads them.
#[test]
fn planted_delete_records_not_replicated_is_caught_on_real_processes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("planted-dr");
    let args = ["run", "--delete-records", "--nodes", "3", "--keys", "2", "--time-limit", "16", "--rate", "60", "--nemesis", "kill"];
    let more = ["--fault-quiet", "3", "--fault-window", "2", "--recovery", "3", "--seed", "5"];
    let planted = ["--planted-bug", "delete-records-not-replicated"];
    let paths = ["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let output = harness(&[&args[..], &more[..], &planted[..], &paths[..]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "the planted bug must fail the run:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.has_fatal(AnomalyKind::DeletedRecordRead), "expected DR1 deleted-record-read:\n{log}");
}

/// Issue 16, Kafka clients under faults: the producers and consumers go through rskafka over the
/// nodes' Kafka listeners (`--client kafka`: Produce acks=all, Fetch, Metadata) under kill (F-P1),
/// pause (F-P2), a partition (F-N1..5) and client-connection drops (F-N9, through the Kafka
/// proxies); the shared checker must find nothing (L1–L13 over the Kafka acks and polls, against
/// the native final drain).
#[test]
fn short_real_kafka_client_run_under_kill_pause_partition_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kafka");
    let args = ["run", "--client", "kafka", "--nodes", "3", "--time-limit", "22", "--rate", "40", "--nemesis"];
    let more = ["kill,pause,partition,conn-drop", "--fault-quiet", "2", "--fault-window", "3", "--recovery", "4", "--seed", "7"];
    let output = harness(&[&args[..], &more[..], &["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    assert!(log.contains("client kafka (rskafka) via the Kafka listeners"), "{log}");
    let history = report::read_history(&out).unwrap();
    let windows = intervals::fault_windows(&history);
    for fault in ["F-P1 kill", "F-P2 pause", "F-N9 client-connection-drops"] {
        assert!(windows.iter().any(|w| w.fault == fault && w.stop_s.is_some()), "no healed {fault} window:\n{log}");
    }
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100 && verdict.stats.polls_ok >= 50, "too little load to mean anything:\n{log}");
    assert_eq!(verdict.stats.values_unseen, 0, "{log}");
    // Every record came in through the Kafka listener: rskafka's producer is not idempotent, so
    // no record of the log carries a producer id (the native producers' all do).
    let log_dump = report::read_log_dump(&out).unwrap().expect("the run writes the drain's log dump");
    assert!(log_dump.len() as u64 >= verdict.stats.sends_ok, "{log}");
    assert!(log_dump.iter().all(|r| r.producer.is_none()), "a record did not come through the Kafka client:\n{log}");
}

/// F-M1 through the Kafka listeners (`--client kafka --nemesis membership`): while rskafka
/// produces and fetches, a node joins with a Kafka listener of its own, a partition is
/// reassigned onto it (its leader can move) and another node is decommissioned and stopped. The
/// library follows the moves through Metadata (NOT_LEADER_OR_FOLLOWER or a broken connection
/// drops its cached leader); the shared checker must find nothing (L1–L13), every record came
/// through the Kafka listener, and Kafka clients reached the joined node (its Kafka address was
/// registered, so the run's Metadata named it).
#[test]
fn short_real_kafka_client_run_under_membership_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kafka-membership");
    let args = ["run", "--client", "kafka", "--nodes", "3", "--time-limit", "24", "--rate", "40", "--nemesis", "membership"];
    let more = ["--fault-quiet", "2", "--fault-window", "3", "--recovery", "6", "--seed", "5"];
    let output = harness(&[&args[..], &more[..], &["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    assert!(log.contains("client kafka (rskafka) via the Kafka listeners"), "{log}");
    let history = report::read_history(&out).unwrap();
    assert_membership_rounds(&history, &log);
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100 && verdict.stats.polls_ok >= 50, "too little load to mean anything:\n{log}");
    let log_dump = report::read_log_dump(&out).unwrap().expect("the run writes the drain's log dump");
    assert!(log_dump.iter().all(|r| r.producer.is_none()), "a record did not come through the Kafka client:\n{log}");
    // Node 4 started with a Kafka listener (its "node started" line names the bound address;
    // the log may carry ANSI colour codes).
    let node4 = std::fs::read_to_string(out.join("cluster/logs/node-4.log")).unwrap();
    let started = node4.lines().find(|line| line.contains("node started")).map(strip_ansi).unwrap_or_default();
    assert!(started.contains("kafka=Some(127.0.0.1:"), "node 4 opened no Kafka listener: {started:?}");
}

/// `--client kafka --tls --secure`: the same Kafka client over TLS logging in with SASL/SCRAM
/// (Kafka's SASL_SSL security protocol; the nodes' certificates from `odradek tls init`, every
/// node requiring SCRAM and checking ACLs, so nothing is served before the login) under kill
/// (F-P1) and client-connection drops (F-N9, the proxies forwarding TLS bytes): nothing found
/// (L1–L13), every record through the Kafka listener.
#[test]
fn short_real_kafka_client_run_over_sasl_ssl_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kafka-sasl-ssl");
    let args = ["run", "--client", "kafka", "--tls", "--secure", "--nodes", "3", "--time-limit", "16", "--rate", "40", "--nemesis"];
    let more = ["kill,conn-drop", "--fault-quiet", "2", "--fault-window", "3", "--recovery", "4", "--seed", "5"];
    let output = harness(&[&args[..], &more[..], &["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.is_empty() && verdict.stats.final_drain, "{log}");
    assert!(verdict.stats.sends_ok >= 100 && verdict.stats.polls_ok >= 50, "too little load to mean anything:\n{log}");
    let log_dump = report::read_log_dump(&out).unwrap().expect("the run writes the drain's log dump");
    assert!(log_dump.iter().all(|r| r.producer.is_none()), "a record did not come through the Kafka client:\n{log}");
}

/// Teeth of the Kafka client path: `--planted-bug ack-before-commit` seen through the Kafka
/// listener (its Produce acks=all answered once the leader's own log has the batch) loses
/// acknowledged writes when the leader is cut off; the checker must flag L6 or L7.
#[test]
fn planted_ack_before_commit_is_caught_through_the_kafka_listener() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kafka-planted");
    let args = ["run", "--client", "kafka", "--nodes", "3", "--time-limit", "12", "--rate", "120", "--nemesis", "partition-one"];
    let more = ["--fault-quiet", "1.5", "--fault-window", "3", "--recovery", "3", "--seed", "11", "--planted-bug", "ack-before-commit"];
    let output = harness(&[&args[..], &more[..], &["--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "the planted bug must fail the run:\n{log}");
    let verdict = saved_verdict(&out);
    let lost = [AnomalyKind::LostWrite, AnomalyKind::Unseen];
    assert!(lost.iter().any(|&kind| verdict.has_fatal(kind)), "expected a lost acknowledged write (L6/L7):\n{log}");
}

/// `--client kafka` takes only what the library and the Kafka listener support.
#[test]
fn kafka_client_refuses_what_it_cannot_drive() {
    let binary = server_binary();
    for extra in [&["--acks", "1"][..], &["--workload", "subscribe"]] {
        let args = [&["run", "--client", "kafka", "--binary", binary.to_str().unwrap()][..], extra].concat();
        let output = harness(&args);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {}", text(&output));
        assert!(text(&output).contains("--client kafka runs --workload log"), "{}", text(&output));
    }
}

#[test]
fn check_of_a_missing_report_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = harness(&["check", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

#[test]
fn report_of_model_histories_round_trips_and_flags_planted_bugs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bug, kind) in [("clean", None, None), ("lost", Some(Bug::DropAckedWrite), Some(AnomalyKind::LostWrite))] {
        let generated = generate(&ModelConfig { seed: 3, bug, ..ModelConfig::default() });
        let verdict = check(&generated.history, &CheckOptions::default());
        let out = dir.path().join(name);
        report::write_report(&out, &generated.history, &verdict, &[], &[]).unwrap();
        let summary = std::fs::read_to_string(out.join(report::SUMMARY_FILE)).unwrap();
        assert_eq!(report::read_history(&out).unwrap(), generated.history);
        assert_eq!(saved_verdict(&out), verdict);
        let svg = std::fs::read_to_string(out.join(report::LATENCY_PLOT_FILE)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("send ok"), "latency plot without its send series");
        let checked = harness(&["check", out.to_str().unwrap()]);
        match kind {
            None => {
                assert!(summary.contains("PASS"), "{summary}");
                assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
            }
            Some(kind) => {
                assert!(verdict.has_fatal(kind), "{verdict}");
                assert!(summary.contains("FAIL") && summary.contains(kind.name()), "{summary}");
                assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
            }
        }
    }
}

/// A `--workload subscribe --regex` run of `time_limit` seconds with the coordinator faults
/// (and any `planted` server bug): the classic group subscribes by name, the consumer-protocol
/// group by a pattern the coordinator resolves, beside a decoy topic (C8). Returns the report
/// directory and the harness's output.
fn subscribe_run(dir: &Path, name: &str, time_limit: &str, planted: Option<&str>) -> (PathBuf, Output) {
    subscribe_run_with(dir, name, time_limit, planted, &[])
}

/// [`subscribe_run`] with `extra` flags.
fn subscribe_run_with(dir: &Path, name: &str, time_limit: &str, planted: Option<&str>, extra: &[&str]) -> (PathBuf, Output) {
    let binary = server_binary();
    let out = dir.join(name);
    let mut args = vec![
        "run",
        "--workload",
        "subscribe",
        "--regex",
        "--nodes",
        "3",
        "--time-limit",
        time_limit,
        "--rate",
        "40",
        "--consumers",
        "2",
        "--nemesis",
        "kill-coordinator,pause-coordinator,kill",
        "--fault-quiet",
        "2",
        "--fault-window",
        "3",
        "--recovery",
        "8",
        "--seed",
        "5",
        "--binary",
        binary.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(bug) = planted {
        args.extend(["--planted-bug", bug]);
    }
    args.extend(extra);
    let output = harness(&args);
    (out, output)
}

/// Consumer-group members of both protocols (the consumer-protocol group subscribed by a regex)
/// under coordinator kills and pauses, member crashes and zombie commits: the verdict (log checks
/// and C1–C8) must be valid, and the run must have exercised what it claims to.
#[test]
fn short_real_subscribe_run_under_coordinator_faults_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, output) = subscribe_run(dir.path(), "subscribe", "20", None);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.iter().all(|a| !a.fatal), "{log}");
    assert!(verdict.stats.final_drain, "{log}");
    let groups = &verdict.groups;
    assert_eq!(groups.groups, 2, "one group per protocol:\n{log}");
    assert!(groups.members >= 4, "{log}");
    assert!(groups.rebalances_ok >= 4 && groups.commits_ok >= 20 && groups.fetches_ok >= 2, "too little group activity:\n{log}");
    assert!(groups.registers_checked >= 4 && groups.resumes_checked >= 4, "{log}");
    assert!(groups.commits_fail >= 1, "the zombie commits were refused (and recorded as failed):\n{log}");

    let history = report::read_history(&out).unwrap();
    let windows = intervals::fault_windows(&history);
    for fault in ["F-P1 kill-coordinator", "F-P2 pause-coordinator", "F-P1 kill"] {
        assert!(windows.iter().any(|w| w.fault == fault && w.stop_s.is_some()), "no healed {fault} window:\n{log}");
    }
    let crashes = history.ops().iter().filter(|op| op.f == OpF::Crash).count();
    assert!(crashes >= 1, "no member crashed:\n{log}");
    let summary = std::fs::read_to_string(out.join(report::SUMMARY_FILE)).unwrap();
    assert!(summary.contains("groups 2 members"), "the summary reports the groups:\n{summary}");
    let rechecked = harness(&["check", out.to_str().unwrap()]);
    assert_eq!(rechecked.status.code(), Some(0), "{}", text(&rechecked));
}

/// Teeth: a coordinator that takes commits of an older epoch (`accept-stale-commit`: the zombie
/// commits are accepted) must fail C5; one that hands a member partitions another member still
/// owns (`assignment-two-owners`, which also lets the offsets table apply such a membership)
/// must fail C7; one that matches a regex subscription anywhere in a topic name
/// (`regex-matches-substring`) must fail C8.
#[test]
fn planted_group_bugs_are_caught_on_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, output) = subscribe_run(dir.path(), "accept-stale-commit", "12", Some("accept-stale-commit"));
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "--planted-bug accept-stale-commit must fail the run:\n{log}");
    assert!(saved_verdict(&out).has_fatal(AnomalyKind::StaleCommit), "expected C5 stale-commit:\n{log}");

    let (out, output) = subscribe_run(dir.path(), "assignment-two-owners", "12", Some("assignment-two-owners"));
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "--planted-bug assignment-two-owners must fail the run:\n{log}");
    assert!(saved_verdict(&out).has_fatal(AnomalyKind::DoubleOwnership), "expected C7 double-ownership:\n{log}");

    // A coordinator that matches the consumer-protocol group's pattern anywhere in a name hands
    // out the decoy topic's partition: C8.
    let (out, output) = subscribe_run(dir.path(), "regex-matches-substring", "12", Some("regex-matches-substring"));
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "--planted-bug regex-matches-substring must fail the run:\n{log}");
    assert!(saved_verdict(&out).has_fatal(AnomalyKind::AssignmentOutsideSubscription), "expected C8:\n{log}");
}

/// Teeth for C9 through the Kafka listener (`--offset-delete`: raw Kafka OffsetDelete requests
/// to the groups' coordinators): a coordinator that skips OffsetDelete's subscription check
/// (`offset-delete-ignores-subscription`) answers "deleted" for a group whose members are in
/// and committing, and keeps the offsets: C9 must fail the run.
#[test]
fn planted_offset_delete_ignores_subscription_is_caught_through_the_kafka_listener() {
    let dir = tempfile::tempdir().unwrap();
    let bug = "offset-delete-ignores-subscription";
    let (out, output) = subscribe_run_with(dir.path(), bug, "16", Some(bug), &["--offset-delete"]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "--planted-bug {bug} must fail the run:\n{log}");
    let history = report::read_history(&out).unwrap();
    assert!(history.ops().iter().any(|op| op.f == OpF::OffsetDelete), "no offset-delete op was recorded:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(
        verdict.has_fatal(AnomalyKind::OffsetDeletedWhileSubscribed) || verdict.has_fatal(AnomalyKind::DeletedOffsetReturned),
        "expected C9:\n{log}"
    );
}

/// `--offset-delete --tls --secure`: the raw OffsetDelete and FindCoordinator requests go over
/// TLS and log in with SASL/SCRAM as the workload's user (Kafka's SASL_SSL), as the Kafka client
/// does in those modes: deletions must be answered (a connection that cannot log in records
/// nothing but failures) and the run must pass C9 and the rest.
#[test]
fn short_real_offset_delete_run_over_sasl_ssl_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, output) = subscribe_run_with(dir.path(), "offset-delete-sasl-ssl", "14", None, &["--offset-delete", "--tls", "--secure"]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    assert!(log.contains("offset-delete: raw OffsetDelete requests"), "{log}");
    let history = report::read_history(&out).unwrap();
    let answered = history.ops().iter().filter(|op| op.f == OpF::OffsetDelete && op.kind == OpType::Ok).count();
    assert!(answered >= 1, "no OffsetDelete was answered over SASL_SSL:\n{log}");
}

/// `--offset-delete` takes only what its raw Kafka requests can do.
#[test]
fn offset_delete_refuses_what_it_cannot_drive() {
    let binary = server_binary();
    let output = harness(&["run", "--binary", binary.to_str().unwrap(), "--offset-delete"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--offset-delete runs with --workload subscribe"), "{}", text(&output));
}

/// `--offset-delete --nemesis membership` (F-M1 beside C9): while group members commit and the
/// deleter sends raw Kafka OffsetDelete requests to the groups' coordinators, a node joins with a
/// Kafka listener of its own (registered, so FindCoordinator can name it), a partition is
/// reassigned onto it and another node is decommissioned and stopped. The run must pass (log
/// checks, C1–C9), with completed membership rounds, answered deletions and group activity, and
/// node 4 must have opened its Kafka listener.
#[test]
fn short_real_offset_delete_run_under_membership_passes() {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("offset-delete-membership");
    let args = ["run", "--workload", "subscribe", "--offset-delete", "--consumers", "2", "--nodes", "3", "--time-limit", "24"];
    let more = ["--rate", "40", "--nemesis", "membership", "--fault-quiet", "2", "--fault-window", "3", "--recovery", "8"];
    let last = ["--seed", "5", "--binary", binary.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let output = harness(&[&args[..], &more[..], &last[..]].concat());
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "the run must pass with no anomaly:\n{log}");
    assert!(log.contains("offset-delete: raw OffsetDelete requests"), "{log}");
    let history = report::read_history(&out).unwrap();
    assert_membership_rounds(&history, &log);
    let answered = history.ops().iter().filter(|op| op.f == OpF::OffsetDelete && op.kind == OpType::Ok).count();
    assert!(answered >= 1, "no OffsetDelete was answered:\n{log}");
    let verdict = saved_verdict(&out);
    assert!(verdict.valid && verdict.anomalies.iter().all(|a| !a.fatal) && verdict.stats.final_drain, "{log}");
    assert!(verdict.groups.commits_ok >= 10 && verdict.groups.fetches_ok >= 2, "too little group activity:\n{log}");
    let node4 = std::fs::read_to_string(out.join("cluster/logs/node-4.log")).unwrap();
    let started = node4.lines().find(|line| line.contains("node started")).map(strip_ansi).unwrap_or_default();
    assert!(started.contains("kafka=Some(127.0.0.1:"), "node 4 opened no Kafka listener: {started:?}");
}
