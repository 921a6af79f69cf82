//! `cargo bench -p odradek-jepsen --bench check`: generates a valid ~1M-op model history (acks=all,
//! idempotent producers, faults and leader changes recorded, final drain) and times the checker
//! on it, plus JSON-lines write and parse; then the same for a ~1M-op consumer-group history
//! (C1–C7 on top of the log checks). Prints the machine and the settings.

use std::time::Instant;

use odradek_jepsen::checker::{check, CheckOptions};
use odradek_jepsen::history::History;
use odradek_jepsen::model::groups::{generate_groups, GroupModelConfig};
use odradek_jepsen::model::{generate, ModelConfig};

const OPS_TARGET: usize = 1_000_000;

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown");
    format!("{} × {}", std::thread::available_parallelism().map_or(0, |n| n.get()), model.trim())
}

/// CPU seconds (user + system) this thread has used, from /proc (Linux; clock ticks of 10 ms):
/// the machine is shared, so wall time alone overstates the cost under load.
fn thread_cpu_s() -> f64 {
    const CLOCK_TICKS_PER_S: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_S
}

fn main() {
    let config = ModelConfig { seed: 1, ops_target: OPS_TARGET, keys: 8, producers: 8, consumers: 8, ..ModelConfig::default() };
    println!("machine: {}", cpu_model());
    println!("settings: {config:?}");

    let start = Instant::now();
    let generated = generate(&config);
    let generate_s = start.elapsed().as_secs_f64();
    let options = CheckOptions { log_dump: Some(generated.log_dump.clone()), ..CheckOptions::default() };

    let (start, cpu_start) = (Instant::now(), thread_cpu_s());
    let verdict = check(&generated.history, &options);
    let check_s = start.elapsed().as_secs_f64();
    let check_cpu_s = thread_cpu_s() - cpu_start;
    assert!(verdict.valid, "the model history must pass:\n{verdict}");

    let start = Instant::now();
    let mut bytes = Vec::new();
    generated.history.write_json_lines(&mut bytes).expect("writes to memory");
    let write_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let parsed = History::read_json_lines(&bytes[..]).expect("parses its own output");
    let parse_s = start.elapsed().as_secs_f64();
    assert_eq!(parsed.len(), generated.history.len());

    let s = &verdict.stats;
    println!(
        "history: {} ops, {} sends ok, {} polls ok, {} values acked, {} read, {} log records, {:.1} MB JSON lines",
        s.ops,
        s.sends_ok,
        s.polls_ok,
        s.values_acked,
        s.values_read,
        s.log_dump_records,
        bytes.len() as f64 / 1e6
    );
    println!("generate: {generate_s:.2} s");
    println!("check: {check_s:.2} s wall, {check_cpu_s:.2} s CPU ({:.0} ops/s wall)", s.ops as f64 / check_s);
    println!("load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    println!("json-lines write: {write_s:.2} s, parse + validate: {parse_s:.2} s");
    groups();
}

/// The consumer-group history: members that rebalance, commit (by hand and auto), crash and are
/// fenced, in four groups over eight keys.
fn groups() {
    let config = GroupModelConfig {
        seed: 1,
        ops_target: OPS_TARGET,
        keys: 8,
        groups: 4,
        members_per_group: 4,
        producers: 4,
        ..GroupModelConfig::default()
    };
    println!("\ngroup settings: {config:?}");
    let start = Instant::now();
    let generated = generate_groups(&config);
    let generate_s = start.elapsed().as_secs_f64();
    let (start, cpu_start) = (Instant::now(), thread_cpu_s());
    let verdict = check(&generated.history, &CheckOptions::default());
    let check_s = start.elapsed().as_secs_f64();
    let check_cpu_s = thread_cpu_s() - cpu_start;
    assert!(verdict.valid, "the group model history must pass:\n{verdict}");
    let g = &verdict.groups;
    println!(
        "group history: {} ops, {} rebalances, {} commits ok ({} auto), {} fetches, {} registers, {} deliveries, {} resumes",
        verdict.stats.ops,
        g.rebalances_ok,
        g.commits_ok,
        g.auto_commits,
        g.fetches_ok,
        g.registers_checked,
        g.deliveries,
        g.resumes_checked
    );
    println!("generate: {generate_s:.2} s");
    println!("check: {check_s:.2} s wall, {check_cpu_s:.2} s CPU ({:.0} ops/s wall)", verdict.stats.ops as f64 / check_s);
    println!("load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    println!("peak resident memory of the bench: {}", status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM unknown"));
}
