//! The report directory of a run (or of `odradek-jepsen check DIR`):
//! * `history.jsonl`: the history, one op per line ([`crate::history`]);
//! * `verdict.json`: the checker's verdict;
//! * `summary.txt`: ops by kind and outcome, the faults with their windows, the anomalies by
//!   invariant ID with key (partition), values and offsets, and the run's own notes;
//! * `latency.svg`, `throughput.svg`: see [`crate::plot`].
//!
//! Everything here is computed from the history and the verdict alone (no clock, no I/O but the
//! writes), so a saved history re-checks to the same report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::checker::Verdict;
use crate::history::{History, OpF, OpType};
use crate::intervals::{completed_ops, fault_windows, seconds};

pub const HISTORY_FILE: &str = "history.jsonl";
pub const VERDICT_FILE: &str = "verdict.json";
pub const SUMMARY_FILE: &str = "summary.txt";
pub const LATENCY_PLOT_FILE: &str = "latency.svg";
pub const THROUGHPUT_PLOT_FILE: &str = "throughput.svg";
/// The committed log as the final drain read it (P1, P3, P4), one `LogRecord` per line.
pub const LOG_DUMP_FILE: &str = "log_dump.jsonl";

fn f_name(f: OpF) -> String {
    serde_json::to_value(f).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{f:?}"))
}

fn kind_name(kind: OpType) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{kind:?}"))
}

/// The readable summary. `notes` are the run's own lines (problems first, then information).
pub fn summary(history: &History, verdict: &Verdict, problems: &[String], info: &[String]) -> String {
    let mut out = String::new();
    let passed = verdict.valid && problems.is_empty();
    let _ = writeln!(out, "odradek-jepsen: {}", if passed { "PASS (no fatal anomaly)" } else { "FAIL" });
    let _ = writeln!(out, "history: {} ops, {:.1} s", history.len(), history.ops().last().map_or(0.0, |op| seconds(op.time_ns)));
    for line in info {
        let _ = writeln!(out, "  {line}");
    }
    if !problems.is_empty() {
        let _ = writeln!(out, "\nrun problems ({}):", problems.len());
        for line in problems {
            let _ = writeln!(out, "  ! {line}");
        }
    }

    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for op in completed_ops(history) {
        *by_kind.entry((f_name(op.f), kind_name(op.kind))).or_default() += 1;
    }
    let _ = writeln!(out, "\nclient ops (completed):");
    for ((f, kind), count) in &by_kind {
        let _ = writeln!(out, "  {f:<8} {kind:<5} {count}");
    }
    let leader_changes = history.ops().iter().filter(|op| op.f == OpF::LeaderChange).count();
    let _ = writeln!(out, "  leader changes observed: {leader_changes}");

    let windows = fault_windows(history);
    let _ = writeln!(out, "\nfaults ({}):", windows.len());
    for w in &windows {
        let stop = w.stop_s.map_or("never healed".to_string(), |s| format!("{s:7.2} s"));
        let _ = writeln!(out, "  {:7.2} s .. {stop}  {}  {}", w.start_s, w.fault, w.details);
    }

    let _ = writeln!(out, "\nverdict:\n{verdict}");
    if !verdict.anomalies.is_empty() {
        let _ = writeln!(out, "anomaly examples (key = partition):");
        for anomaly in &verdict.anomalies {
            let _ = writeln!(out, "  {anomaly}");
        }
    }
    out
}

/// Writes the whole report directory.
pub fn write_report(dir: &Path, history: &History, verdict: &Verdict, problems: &[String], info: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = std::io::BufWriter::new(std::fs::File::create(dir.join(HISTORY_FILE))?);
    history.write_json_lines(file).map_err(std::io::Error::other)?;
    write_verdict(dir, history, verdict, problems, info)
}

/// Writes everything but the history (what `check DIR` refreshes).
pub fn write_verdict(dir: &Path, history: &History, verdict: &Verdict, problems: &[String], info: &[String]) -> std::io::Result<()> {
    std::fs::write(dir.join(VERDICT_FILE), verdict.to_json_pretty() + "\n")?;
    std::fs::write(dir.join(SUMMARY_FILE), summary(history, verdict, problems, info))?;
    crate::plot::latency(history, &dir.join(LATENCY_PLOT_FILE)).map_err(std::io::Error::other)?;
    crate::plot::throughput(history, &dir.join(THROUGHPUT_PLOT_FILE)).map_err(std::io::Error::other)?;
    Ok(())
}

/// Writes `DIR/log_dump.jsonl`.
pub fn write_log_dump(dir: &Path, dump: &[crate::checker::LogRecord]) -> std::io::Result<()> {
    let mut text = String::new();
    for record in dump {
        text += &serde_json::to_string(record).map_err(std::io::Error::other)?;
        text.push('\n');
    }
    std::fs::write(dir.join(LOG_DUMP_FILE), text)
}

/// Reads `DIR/log_dump.jsonl` if the run wrote one.
pub fn read_log_dump(dir: &Path) -> Result<Option<Vec<crate::checker::LogRecord>>, String> {
    let path = dir.join(LOG_DUMP_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let records = text.lines().map(serde_json::from_str).collect::<Result<Vec<_>, _>>();
    records.map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads `DIR/history.jsonl`.
pub fn read_history(dir: &Path) -> Result<History, String> {
    let path = dir.join(HISTORY_FILE);
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    History::read_json_lines(std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}
