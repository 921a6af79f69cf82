//! The consumer-group CLI end to end against three real server processes: `consume --group`
//! (both protocols, resuming from the group's commits), `group list`, `group describe`,
//! `group reset-offsets`, `group delete`, and their errors for an unknown group and for a group
//! that still has members; and `bench consume --group` (its throughput phase).

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ProcessCluster;

const BIN: &str = env!("CARGO_BIN_EXE_odradek");
const RECORDS: usize = 30;
const PARTITIONS: u32 = 3;

/// Runs `odradek ARGS` (with `stdin` piped in), bounded in time.
fn odradek(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(BIN)
        .args(args)
        .env("ODRADEK_BOOTSTRAP", bootstrap)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run odradek");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("wait for odradek")
}

/// Stdout of a command that must succeed.
fn ok(bootstrap: &str, args: &[&str]) -> String {
    let output = odradek(bootstrap, args, None);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`odradek {}` failed: {}\nstdout: {stdout}\nstderr: {}",
        args.join(" "),
        output.status,
        stderr(&output)
    );
    stdout
}

/// Stderr of a command that must fail.
fn fails(bootstrap: &str, args: &[&str]) -> String {
    let output = odradek(bootstrap, args, None);
    assert!(!output.status.success(), "`odradek {}` should fail; stdout: {}", args.join(" "), String::from_utf8_lossy(&output.stdout));
    stderr(&output)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// The rows of `group describe`'s partition table for `topic`: (partition, committed, log end, lag).
fn partition_rows(described: &str, topic: &str) -> Vec<(u32, String, String, String)> {
    described
        .lines()
        .filter(|line| line.starts_with(&format!("{topic} ")))
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[1].parse().unwrap(), cells[2].to_string(), cells[3].to_string(), cells[4].to_string())
        })
        .collect()
}

/// Sorted values printed by a consume.
fn values(stdout: &str) -> Vec<u32> {
    let mut values: Vec<u32> = stdout.lines().map(|line| line.parse().expect("a record value")).collect();
    values.sort_unstable();
    values
}

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn group_commands_from_consume_to_delete() {
    let cluster = ProcessCluster::start(3);
    let bootstrap = cluster.bootstrap();
    let b = bootstrap.as_str();
    ok(b, &["topic", "create", "orders", "--partitions", &PARTITIONS.to_string()]);
    // Keyed, so the records spread over the partitions.
    let input: String = (1..=RECORDS).map(|v| format!("k{v}:{v}\n")).collect();
    let produced = odradek(b, &["produce", "--topic", "orders", "--key-separator", ":"], Some(&input));
    assert!(produced.status.success(), "produce: {}", stderr(&produced));
    let all: Vec<u32> = (1..=RECORDS as u32).collect();

    assert_eq!(ok(b, &["group", "list"]).trim(), "(no groups)");
    let unknown = fails(b, &["group", "describe", "nobody"]);
    assert!(unknown.contains("group \"nobody\" does not exist"), "{unknown}");
    let unknown = fails(b, &["group", "delete", "nobody"]);
    assert!(unknown.contains("group \"nobody\" does not exist"), "{unknown}");

    // Consumer protocol: the only member gets every partition, prints everything, commits it.
    let consumed = ok(b, &["consume", "--topic", "orders", "--group", "billing"]);
    assert_eq!(values(&consumed), all);
    let described = ok(b, &["group", "describe", "billing"]);
    assert!(described.contains("Group \"billing\": no members, state Empty"), "close left the group: {described}");
    assert!(described.contains("Members: none"), "{described}");
    let rows = partition_rows(&described, "orders");
    assert_eq!(rows.len(), PARTITIONS as usize, "{described}");
    let committed: u64 = rows.iter().map(|(_, committed, _, _)| committed.parse::<u64>().unwrap()).sum();
    assert_eq!(committed, RECORDS as u64, "every record committed: {described}");
    assert!(rows.iter().all(|(_, committed, end, lag)| committed == end && lag == "0"), "{described}");
    // Started again, the group resumes at its commits: nothing left to print.
    assert_eq!(ok(b, &["consume", "--topic", "orders", "--group", "billing"]), "");

    let listed = ok(b, &["group", "list"]);
    let billing = listed.lines().find(|line| line.starts_with("billing ")).unwrap_or_else(|| panic!("{listed}"));
    assert!(billing.contains("Empty"), "{listed}");

    // Reset to the beginning: everything is consumed again.
    let reset = ok(b, &["group", "reset-offsets", "billing", "--topic", "orders", "--to-earliest"]);
    assert!(reset.contains("Reset the committed offsets of group \"billing\""), "{reset}");
    let rows = partition_rows(&ok(b, &["group", "describe", "billing"]), "orders");
    assert!(rows.iter().all(|(_, committed, end, lag)| committed == "0" && lag == end), "{rows:?}");
    assert_eq!(values(&ok(b, &["consume", "--topic", "orders", "--group", "billing"])), all);
    // To an offset, then to the end.
    ok(b, &["group", "reset-offsets", "billing", "--topic", "orders", "--to-offset", "2"]);
    let rows = partition_rows(&ok(b, &["group", "describe", "billing"]), "orders");
    assert!(rows.iter().all(|(_, committed, end, lag)| committed == "2" && lag.parse::<u64>().unwrap() + 2 == end.parse::<u64>().unwrap()));
    ok(b, &["group", "reset-offsets", "billing", "--topic", "orders", "--to-latest"]);
    let rows = partition_rows(&ok(b, &["group", "describe", "billing"]), "orders");
    assert!(rows.iter().all(|(_, committed, end, lag)| committed == end && lag == "0"), "{rows:?}");
    let missing = fails(b, &["group", "reset-offsets", "billing", "--topic", "orders"]);
    assert!(missing.contains("--to-earliest"), "clap names the choices: {missing}");

    // Classic protocol, stopped after 7 records: exactly those 7 are committed.
    let consumed = ok(b, &["consume", "--topic", "orders", "--group", "audit", "--group-protocol", "classic", "--max-records", "7"]);
    assert_eq!(consumed.lines().count(), 7, "{consumed}");
    let described = ok(b, &["group", "describe", "audit"]);
    let committed: u64 = partition_rows(&described, "orders").iter().filter_map(|(_, committed, _, _)| committed.parse::<u64>().ok()).sum();
    assert_eq!(committed, 7, "{described}");
    // The rest, by a second run in the same group: together, each record once.
    let rest = ok(b, &["consume", "--topic", "orders", "--group", "audit", "--group-protocol", "classic"]);
    let mut both = values(&consumed);
    both.extend(values(&rest));
    both.sort_unstable();
    assert_eq!(both, all);

    // A group with a live member: describe shows it and its partitions; reset and delete refuse.
    // (Consumer protocol: the coordinator knows the assignment. A classic group's assignment is
    // opaque to it, so describe shows no partitions for classic members.)
    let member = Command::new(BIN)
        .args(["consume", "--topic", "orders", "--group", "live", "--follow"])
        .env("ODRADEK_BOOTSTRAP", b)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a following group consumer");
    let mut member = Background(member);
    let deadline = Instant::now() + Duration::from_secs(30);
    let described = loop {
        let output = odradek(b, &["group", "describe", "live"], None);
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        if output.status.success() && stdout.contains("Members (1)") && stdout.contains("orders/0,orders/1,orders/2") {
            break stdout;
        }
        assert!(Instant::now() < deadline, "the member never showed with its partitions: {stdout} {}", stderr(&output));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(described.contains("Group \"live\": consumer protocol, state Stable, group epoch"), "{described}");
    // Each partition row names the member that owns it, and the member committed everything.
    let member_id = described.lines().find(|l| l.contains("orders/0,")).unwrap().split_whitespace().next().unwrap().to_string();
    let owned = described.lines().filter(|l| l.starts_with("orders ") && l.ends_with(&format!(" {member_id}"))).count();
    assert_eq!(owned, PARTITIONS as usize, "{described}");
    let busy = fails(b, &["group", "reset-offsets", "live", "--topic", "orders", "--to-earliest"]);
    assert!(busy.contains("group \"live\" still has members"), "{busy}");
    let busy = fails(b, &["group", "delete", "live"]);
    assert!(busy.contains("group \"live\" still has members"), "{busy}");
    // Ctrl-C: the member leaves at once, and the group can go.
    let status = Command::new("kill").args(["-INT", &member.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while member.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "consume --group did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deleted = ok(b, &["group", "delete", "live"]);
    assert!(deleted.contains("Deleted group \"live\""), "{deleted}");
    let gone = fails(b, &["group", "describe", "live"]);
    assert!(gone.contains("does not exist"), "{gone}");
    let listed = ok(b, &["group", "list"]);
    assert!(listed.contains("billing") && listed.contains("audit") && !listed.contains("live"), "{listed}");

    // The group bench runs and reports (no failover phase here: it waits out a session).
    let bench = ok(b, &["bench", "consume", "--topic", "orders", "--group", "bench", "--members", "2", "--no-failover"]);
    assert!(bench.contains(&format!("group consume: {RECORDS} records")) && bench.contains("commits, latency ms p50"), "{bench}");
}
