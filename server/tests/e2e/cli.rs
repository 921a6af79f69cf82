//! The CLI end to end, as a new user runs it: `odradek playground` in one terminal, then
//! `topic create`, `produce` (stdin lines, key:value) and `consume` in another — here through
//! `sh -c` pipelines against the real binary.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_odradek");

struct Playground(Child);

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port_block() -> u16 {
    // Three consecutive client ports, with the peer, Kafka and metrics ports 10000, 20000 and
    // 30000 above them (the playground's layout), all free now. Client ports below the kernel's
    // ephemeral range (32768 and up), so no port-0 bind elsewhere takes one of them; a start
    // spread by the process id.
    let start = 20_000 + (std::process::id() % 500) as u16 * 10;
    for base in (start..25_000).step_by(10).chain((20_000..start).step_by(10)) {
        let all_free = (0..3).all(|i| {
            [0, 10_000, 20_000, 30_000].iter().all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + i + offset)).is_ok())
        });
        if all_free {
            return base;
        }
    }
    panic!("no free port block");
}

/// Runs `odradek ARGS` through the shell (so pipelines work), bounded in time.
fn sh(script: &str, bootstrap: &str) -> String {
    let output = Command::new("timeout")
        .args(["60", "sh", "-c", script])
        .env("ODRADEK", BIN)
        .env("ODRADEK_BOOTSTRAP", bootstrap)
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`{script}` failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn playground_topic_create_produce_consume() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port_block();
    let mut child = Command::new(BIN)
        .args(["playground", "--port", &port.to_string(), "--data-dir", data.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the playground");
    let stdout = child.stdout.take().unwrap();
    let playground = Playground(child);
    // The playground prints what to type next once the demo topic is ready.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the playground prints its banner within 60 s");
        banner.push(line.clone());
        if line.contains("Ctrl-C stops the cluster") {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(banner.contains("Topic \"demo\""), "{banner}");
    assert!(banner.contains("odradek produce"), "the banner says what to type next: {banner}");
    let metrics = banner.lines().find_map(|line| line.strip_prefix("Metrics for Prometheus: ")).expect("the metrics addresses");
    assert_eq!(metrics.split(' ').filter(|url| url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics")).count(), 3, "{banner}");
    let bootstrap = format!("127.0.0.1:{port}");

    let created = sh("$ODRADEK topic create shell-test --partitions 2 --replication-factor 3", &bootstrap);
    assert!(created.contains("Created topic \"shell-test\""), "{created}");
    let listed = sh("$ODRADEK topic list", &bootstrap);
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["demo", "shell-test"]);
    let described = sh("$ODRADEK topic describe shell-test", &bootstrap);
    assert!(described.contains("2 partitions"), "{described}");

    let produced =
        sh("printf 'a:1\\nb:2\\na:3\\nb:4\\nc:5\\n' | $ODRADEK produce --topic shell-test --key-separator : --print-offsets", &bootstrap);
    assert_eq!(produced.lines().count(), 5, "one partition/offset line per record: {produced}");

    let consumed = sh("$ODRADEK consume --topic shell-test --from-beginning --print-key", &bootstrap);
    let mut records: Vec<&str> = consumed.lines().collect();
    // Per key, order is kept (a key always lands on one partition).
    let per_key = |key: &str| records.iter().filter(|r| r.starts_with(key)).map(|r| r.to_string()).collect::<Vec<_>>();
    assert_eq!(per_key("a\t"), vec!["a\t1", "a\t3"]);
    assert_eq!(per_key("b\t"), vec!["b\t2", "b\t4"]);
    records.sort_unstable();
    assert_eq!(records, vec!["a\t1", "a\t3", "b\t2", "b\t4", "c\t5"]);

    let status = sh("$ODRADEK cluster status", &bootstrap);
    assert!(status.contains("shell-test"), "{status}");
    assert!(status.contains("controller: "), "{status}");

    let bench = sh("$ODRADEK bench produce --topic bench-test --records 2000 --record-size 100 --partitions 2", &bootstrap);
    assert!(bench.contains("records/s") && bench.contains("p99.9"), "{bench}");
    // One consumer, no group: the group settings are not required (they were, by mistake).
    let consumed = sh("$ODRADEK bench consume --topic bench-test", &bootstrap);
    assert!(consumed.contains("consume (latency = one poll): 2000 records in"), "{consumed}");

    let deleted = sh("$ODRADEK topic delete shell-test", &bootstrap);
    assert!(deleted.contains("Deleted topic \"shell-test\""), "{deleted}");
    let listed = sh("$ODRADEK topic list", &bootstrap);
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["bench-test", "demo"]);
    // Its partitions' files go too (group ids 4 and 5: demo took 1 to 3).
    let leftovers = || -> Vec<std::path::PathBuf> {
        let mut left = Vec::new();
        for node in 1..=3 {
            for group in [4, 5] {
                let dir = data.path().join(format!("node-{node}")).join(group.to_string());
                for dir in [dir.join("log"), dir] {
                    let entries = std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect());
                    left.extend(entries.unwrap_or_else(|_| Vec::new()));
                }
            }
        }
        left
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(leftovers(), Vec::<std::path::PathBuf>::new(), "a deleted topic's files are removed");
    drop(playground);
}
