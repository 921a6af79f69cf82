//! Source rules that keep a simulation seed replayable inside one process (madsim's determinism
//! check reruns a seed in the same process; the planted-bug tests run many seeds in one).
//!
//! tokio draws its `select!` branch order and its `watch` waiter shards from a thread generator
//! whose seed mixes in a process-global counter, so a second simulation in a process took other
//! paths than the first. Code that runs under the simulator therefore writes `biased;` in every
//! `tokio::select!` and uses `odradek_seams::watch` instead of `tokio::sync::watch`. This test reads
//! the crates that run under madsim and names every line that breaks a rule; it runs in the
//! normal build (it needs no simulator).

use std::path::{Path, PathBuf};

const SIMULATED_CRATES: &[&str] = &["sim/seams/src", "log/src", "consensus/src", "server/src", "client/src", "sim/src"];
/// The `odradek` command line never runs in a simulation.
const NOT_SIMULATED: &[&str] = &["server/src/bin"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if NOT_SIMULATED.iter().any(|skip| path.ends_with(skip)) {
            continue;
        } else if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `file:line` of every rule broken in `source`.
fn violations(name: &str, source: &str) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if code.contains("select!") {
            let next = lines[i + 1..].iter().map(|l| l.trim()).find(|l| !l.is_empty() && !l.starts_with("//"));
            if next != Some("biased;") {
                found.push(format!("{name}:{}: `select!` without `biased;` first", i + 1));
            }
        }
        let tokio_watch = code.contains("sync::watch") || (code.contains("tokio::sync::{") && code.contains("watch"));
        if tokio_watch && !name.ends_with("sim/seams/src/watch.rs") {
            found.push(format!("{name}:{}: tokio's watch (use odradek_seams::watch)", i + 1));
        }
    }
    found
}

#[test]
fn simulated_code_has_no_process_seeded_scheduling() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut files = Vec::new();
    for dir in SIMULATED_CRATES {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(files.len() > 20, "found only {} source files under {SIMULATED_CRATES:?}", files.len());
    let broken: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let source = std::fs::read_to_string(path).expect("readable source");
            violations(&path.strip_prefix(root).unwrap_or(path).display().to_string(), &source)
        })
        .collect();
    assert!(broken.is_empty(), "rules for replayable simulations broken:\n{}", broken.join("\n"));
}

#[test]
fn the_rules_catch_what_they_are_for() {
    let unbiased = "let x = tokio::select! {\n    // a comment\n    a = f() => a,\n};";
    assert_eq!(violations("a.rs", unbiased).len(), 1);
    let biased = "let x = tokio::select! {\n    biased;\n    a = f() => a,\n};";
    assert!(violations("a.rs", biased).is_empty());
    assert_eq!(violations("b.rs", "use tokio::sync::watch;").len(), 1);
    assert_eq!(violations("c.rs", "use tokio::sync::{mpsc, watch};").len(), 1);
    assert!(violations("sim/seams/src/watch.rs", "pub use tokio::sync::watch::{channel};").is_empty());
    assert!(violations("d.rs", "// tokio::select! in a comment").is_empty());
}
