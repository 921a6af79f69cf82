//! `odradek-sim`: run, sweep and replay simulated clusters (build with `sim/madsim`).
//!
//! ```text
//! sim/madsim run --release -p odradek-sim --bin odradek-sim -- run --seed 7
//! sim/madsim run --release -p odradek-sim --bin odradek-sim -- run --seed 7 --scenario crash --nodes 5 --out store/sim-7
//! sim/madsim run --release -p odradek-sim --bin odradek-sim -- sweep --seeds 1..1000 --jobs 2
//! sim/madsim run --release -p odradek-sim --bin odradek-sim -- shrink --seed 3 --scenario crash --wipes --planted-bug wiped-node-keeps-identity
//! ```
//!
//! `run` prints the timeline (faults, leader changes, node failures, progress), the verdict and
//! a trace hash (equal for two runs of one seed); with `--out DIR` it writes `history.jsonl`,
//! `timeline.txt` and `verdict.txt` there. `sweep` runs each seed in a child process (`run`),
//! `--jobs` at a time, with a progress bar, and ends with a summary, the coverage table (per
//! counter of `run`'s `coverage:` line — fault kinds, rare paths, raft checks, history anomalies
//! only reported — the seeds where it ran and its total; a zero is a gap) and one replay command
//! per failing seed. `shrink` replays a failing seed with fewer faults and shorter windows
//! (`odradek_sim::shrink`, each candidate in a child process) until only the faults that still
//! make it fail one of the same invariants are left, writes that plan and prints the command
//! that replays it (`run --seed N --plan FILE`); `run --plan-out FILE` writes any run's faults
//! as such a plan. Exit status: 0 all passed (shrink: a plan was written), 1 a run failed,
//! 2 usage error.

#[cfg(not(madsim))]
fn main() {
    eprintln!("odradek-sim runs only in the simulation build: sim/madsim run --release -p odradek-sim --bin odradek-sim -- run --seed 1");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(sim::main());
}

#[cfg(madsim)]
mod sim {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use clap::{Args, Parser, Subcommand};
    use indicatif::{ProgressBar, ProgressStyle};
    use odradek_client::planted::PlantedBug as ClientPlantedBug;
    use odradek_server::planted::PlantedBug;
    use odradek_sim::config::{Scenario, ScenarioConfig};
    use odradek_sim::report::Report;
    use odradek_sim::scenario::run_seed;
    use odradek_sim::shrink::{minimize, FaultSelection, InjectedFault, PlanFile, Replayed};

    #[derive(Parser)]
    #[command(name = "odradek-sim", about = "Deterministic simulation of an Odradek cluster: run, sweep and replay seeds")]
    struct Cli {
        #[command(subcommand)]
        command: Command_,
    }

    #[derive(Subcommand)]
    enum Command_ {
        /// Run one seed; print the timeline and the verdict.
        Run {
            #[arg(long)]
            seed: u64,
            #[command(flatten)]
            options: RunOptions,
            /// Write history.jsonl, timeline.txt and verdict.txt here.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Print only the summary line and the verdict, not the timeline.
            #[arg(long)]
            quiet: bool,
            /// Inject only the faults this plan file lists (written by `shrink` or `--plan-out`).
            #[arg(long)]
            plan: Option<PathBuf>,
            /// Write the faults this run injected as a plan file.
            #[arg(long)]
            plan_out: Option<PathBuf>,
        },
        /// Shrink a failing seed's faults to the few that still make it fail; write the plan.
        Shrink {
            #[arg(long)]
            seed: u64,
            #[command(flatten)]
            options: RunOptions,
            /// The plan file to write (default: shrunk-seed-N.json here).
            #[arg(long)]
            out: Option<PathBuf>,
            /// At most this many replays.
            #[arg(long, default_value_t = 200)]
            runs_max: usize,
        },
        /// Run a range of seeds in child processes; summarise.
        Sweep {
            /// A..B (B excluded) or A..=B.
            #[arg(long)]
            seeds: String,
            #[arg(long, default_value_t = 2)]
            jobs: usize,
            /// Stop at the first failing seed: start no more and stop the ones running (the
            /// mutation soak, where one failure is the whole answer).
            #[arg(long)]
            fail_fast: bool,
            #[command(flatten)]
            options: RunOptions,
        },
    }

    #[derive(Args, Clone)]
    struct RunOptions {
        /// swarm (default), calm, crash, network, disk, groups.
        #[arg(long, default_value = "swarm")]
        scenario: String,
        /// 3, 5 or 7 (default: the seed chooses 3 or 5; with --heavy 5 or 7).
        #[arg(long)]
        nodes: Option<usize>,
        /// Simulated seconds of the safety phase.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// A planted bug of the server or the client to switch on (repeatable).
        #[arg(long = "planted-bug")]
        planted: Vec<String>,
        /// Security on: SCRAM logins, ACLs, an intruder; invariant A1 (not with --scenario groups).
        #[arg(long)]
        secure: bool,
        /// F-P7/F-M3 in the plan: the nemesis may also stop a node, delete its data directory
        /// and restart it as a new incarnation (R8 d).
        #[arg(long)]
        wipes: bool,
        /// Heavy load: 5 or 7 nodes, more partitions than nodes, four more producers sending
        /// thousands of records in multi-record compressed batches (not with --scenario groups).
        #[arg(long)]
        heavy: bool,
        /// Topic churn: topics created, grown, deleted and re-created while producing; the
        /// placement invariant PL1 after the heal.
        #[arg(long)]
        topic_churn: bool,
        /// Issue 16: every node runs a Kafka listener, and a Kafka-protocol producer and consumer
        /// run beside the native ones (with --secure they log in with SCRAM, and the intruder
        /// tries the Kafka listener too).
        #[arg(long)]
        kafka: bool,
        /// F-M1/F-M2: partitions reassigned and leader-transfer storms under kills and
        /// partitions; R10/R11 on every configuration, V5 (every move completes) after the heal.
        #[arg(long)]
        membership: bool,
        /// F-M4: the cluster grows and shrinks under the faults: a new node joins (`--join`),
        /// the controller voters take it in, a node is decommissioned; V6 after the heal (the
        /// departed node holds no replica and votes nowhere, the joined one is a metadata voter,
        /// membership converges). 3 or 5 bootstrap nodes.
        #[arg(long)]
        grow_shrink: bool,
        /// DeleteRecords under faults: records of topic `t` deleted below part of its high
        /// watermark; an acknowledged deletion must hold (DR1, in the history checker).
        #[arg(long)]
        delete_records: bool,
        /// Faults on the hard- and conf-state files: one copy flipped, torn, cut short or stale
        /// on any node, both copies once per run on one node (quarantine); R8 c on reopening.
        /// With --retention also a start-state file's renames lost or its bytes damaged, once
        /// per run on that node (the replica does not open from it and is repaired).
        #[arg(long)]
        state_faults: bool,
        /// Every node puts quiet groups to sleep (hibernation, the server's default; off here so
        /// every seed keeps its trace): groups sleep and wake under the faults.
        #[arg(long)]
        hibernate: bool,
        /// Short retention (small segments, a few KiB and/or seconds) on topic `t` while
        /// nodes lag for seconds: a lagging replica catches up by a snapshot (R12).
        #[arg(long)]
        retention: bool,
        /// With --scenario groups: consumer-protocol members subscribe with a regular expression
        /// the coordinator resolves (KIP-848), beside a decoy topic; C8 on every assignment.
        #[arg(long)]
        regex: bool,
        /// With --scenario groups: an admin deletes committed offsets (Kafka's OffsetDelete) of
        /// the member groups and of a group of its own; C9 on every deletion.
        #[arg(long)]
        offset_delete: bool,
        /// Every node keeps at most N partition files open (evicted and reopened on use), and
        /// its disk loses the unsynced writes of a file closed without a sync.
        #[arg(long, value_name = "N")]
        open_file_budget: Option<usize>,
        /// After the producers finish (hibernation on): a partition's sleeping leader is cut off,
        /// the others elect and acknowledge a record, then the client reaches only the old
        /// leader and polls it with a fresh high watermark (L12 a).
        #[arg(long)]
        sleeping_leader_cut: bool,
        /// After the producers finish: an idempotent producer's first batch is committed with
        /// its answer lost, retention (small segments, few KiB) deletes it, every replica of
        /// the partition restarts, then the retry arrives (L2, P5).
        #[arg(long)]
        late_retry: bool,
        /// Replicas of each partition of topic `t`: 3, or 2 (a damaged or wiped replica is
        /// then repaired from the one other voter, no quorum alone).
        #[arg(long, value_name = "N", default_value_t = odradek_sim::config::REPLICATION)]
        replication: u32,
    }

    impl RunOptions {
        fn config(&self, seed: u64) -> Result<ScenarioConfig, String> {
            let scenario: Scenario = self.scenario.parse()?;
            if let Some(nodes) = self.nodes {
                if ![3, 5, 7].contains(&nodes) {
                    return Err(format!("--nodes must be 3, 5 or 7, not {nodes}"));
                }
            }
            if self.heavy && scenario == Scenario::Groups {
                return Err("--heavy does not run with --scenario groups (its members use the default topic)".into());
            }
            if self.secure && scenario == Scenario::Groups {
                return Err("--secure does not run with --scenario groups (its members do not log in)".into());
            }
            if self.grow_shrink && self.nodes == Some(7) {
                return Err("--grow-shrink runs with 3 or 5 nodes (a cluster holds at most 7, the joined node among them)".into());
            }
            if self.regex && scenario != Scenario::Groups {
                return Err("--regex runs with --scenario groups only (its members subscribe)".into());
            }
            if self.offset_delete && scenario != Scenario::Groups {
                return Err("--offset-delete runs with --scenario groups only (it deletes the groups' offsets)".into());
            }
            if let Some(files) = self.open_file_budget {
                let least = odradek_server::config::MAX_OPEN_FILES_MIN;
                if files < least {
                    return Err(format!("--open-file-budget must be at least {least}, not {files}"));
                }
            }
            if ![2, 3].contains(&self.replication) {
                return Err(format!("--replication must be 2 or 3, not {}", self.replication));
            }
            if self.replication != odradek_sim::config::REPLICATION && self.membership {
                return Err("--membership moves partitions of 3 replicas: not with --replication".into());
            }
            if self.duration == 0 || self.duration > 3600 {
                return Err("--duration must be within 1..=3600 seconds".into());
            }
            // A name is the server's planted bug, else the client's.
            let (mut planted_bugs, mut client_planted_bugs) = (Vec::new(), Vec::new());
            for name in &self.planted {
                match (name.parse::<PlantedBug>(), name.parse::<ClientPlantedBug>()) {
                    (Ok(bug), _) => planted_bugs.push(bug),
                    (_, Ok(bug)) => client_planted_bugs.push(bug),
                    (Err(server), Err(client)) => return Err(format!("{server}; {client}")),
                }
            }
            Ok(ScenarioConfig {
                seed,
                scenario,
                node_count: self.nodes,
                duration: Duration::from_secs(self.duration),
                planted_bugs,
                client_planted_bugs,
                secure: self.secure,
                wipes: self.wipes,
                faults: None,
                heavy: self.heavy,
                topic_churn: self.topic_churn,
                kafka: self.kafka,
                membership: self.membership,
                grow_shrink: self.grow_shrink,
                delete_records: self.delete_records,
                state_faults: self.state_faults,
                hibernate: self.hibernate,
                retention: self.retention,
                regex: self.regex,
                offset_delete: self.offset_delete,
                open_file_budget: self.open_file_budget,
                sleeping_leader_cut: self.sleeping_leader_cut,
                late_retry: self.late_retry,
                replication: self.replication,
            })
        }

        fn args(&self) -> Vec<String> {
            let mut args = vec!["--scenario".to_string(), self.scenario.clone(), "--duration".into(), self.duration.to_string()];
            if let Some(nodes) = self.nodes {
                args.extend(["--nodes".to_string(), nodes.to_string()]);
            }
            for bug in &self.planted {
                args.extend(["--planted-bug".to_string(), bug.clone()]);
            }
            if self.secure {
                args.push("--secure".to_string());
            }
            if self.wipes {
                args.push("--wipes".to_string());
            }
            if self.heavy {
                args.push("--heavy".to_string());
            }
            if self.topic_churn {
                args.push("--topic-churn".to_string());
            }
            if self.kafka {
                args.push("--kafka".to_string());
            }
            if self.membership {
                args.push("--membership".to_string());
            }
            if self.grow_shrink {
                args.push("--grow-shrink".to_string());
            }
            if self.delete_records {
                args.push("--delete-records".to_string());
            }
            if self.state_faults {
                args.push("--state-faults".to_string());
            }
            if self.hibernate {
                args.push("--hibernate".to_string());
            }
            if self.retention {
                args.push("--retention".to_string());
            }
            if self.regex {
                args.push("--regex".to_string());
            }
            if self.offset_delete {
                args.push("--offset-delete".to_string());
            }
            if let Some(files) = self.open_file_budget {
                args.extend(["--open-file-budget".to_string(), files.to_string()]);
            }
            if self.sleeping_leader_cut {
                args.push("--sleeping-leader-cut".to_string());
            }
            if self.late_retry {
                args.push("--late-retry".to_string());
            }
            if self.replication != odradek_sim::config::REPLICATION {
                args.extend(["--replication".to_string(), self.replication.to_string()]);
            }
            args
        }
    }

    pub fn main() -> i32 {
        let cli = Cli::parse();
        match cli.command {
            Command_::Run { seed, options, out, quiet, plan, plan_out } => {
                let mut config = match options.config(seed) {
                    Ok(config) => config,
                    Err(error) => return usage(&error),
                };
                if let Some(path) = plan {
                    match PlanFile::read(&path) {
                        Ok(file) => config.faults = Some(file.selection(&path)),
                        Err(error) => return usage(&error),
                    }
                }
                run(&config, out.as_deref(), quiet, plan_out.as_deref())
            }
            Command_::Shrink { seed, options, out, runs_max } => {
                if let Err(error) = options.config(seed) {
                    return usage(&error);
                }
                let out = out.unwrap_or_else(|| PathBuf::from(format!("shrunk-seed-{seed}.json")));
                shrink(seed, &options, &out, runs_max.max(1))
            }
            Command_::Sweep { seeds, jobs, fail_fast, options } => {
                let range = match parse_seeds(&seeds) {
                    Ok(range) => range,
                    Err(error) => return usage(&error),
                };
                if let Err(error) = options.config(0) {
                    return usage(&error);
                }
                sweep(range, jobs.clamp(1, 64), fail_fast, &options)
            }
        }
    }

    fn usage(error: &str) -> i32 {
        eprintln!("odradek-sim: {error}");
        2
    }

    fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>, String> {
        let bad = || format!("--seeds {text:?}: expected A..B or A..=B");
        if let Some((a, b)) = text.split_once("..=") {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            return if a <= b { Ok(a..b + 1) } else { Err(bad()) };
        }
        let (a, b) = text.split_once("..").ok_or_else(bad)?;
        let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a < b {
            Ok(a..b)
        } else {
            Err(bad())
        }
    }

    fn run(config: &ScenarioConfig, out: Option<&Path>, quiet: bool, plan_out: Option<&Path>) -> i32 {
        let wall = Instant::now();
        let report = match run_seed(config) {
            Ok(report) => report,
            Err(crash) => {
                println!("seed {}: crashed", config.seed);
                print!("{}", crash.verdict_text());
                let failure = vec![crash.invariant.unwrap_or("panic").to_string()];
                return match plan_out.map(|path| write_plan(config, failure, crash.injected.clone(), path)) {
                    Some(Err(error)) => usage(&error),
                    _ => 1,
                };
            }
        };
        if let Some(path) = plan_out {
            let failure = report.failed_invariants().into_iter().map(str::to_string).collect();
            if let Err(error) = write_plan(config, failure, report.injected.clone(), path) {
                return usage(&error);
            }
        }
        let wall = wall.elapsed().as_secs_f64();
        if !quiet {
            for line in &report.timeline {
                println!("{line}");
            }
        }
        println!("{}", report.summary_line());
        println!(
            "speed: {:.1} simulated s in {wall:.2} wall s ({:.1}x); raft checker saw {} events",
            report.sim_seconds,
            report.sim_seconds / wall.max(1e-9),
            report.raft_events
        );
        println!("{}", report.coverage_line());
        print!("{}", report.verdict_text());
        if let Some(out) = out {
            if let Err(error) = write_out(out, &report) {
                eprintln!("odradek-sim: writing {}: {error}", out.display());
                return 2;
            }
            println!("wrote {}", out.display());
        }
        if report.passed() {
            0
        } else {
            1
        }
    }

    fn write_out(out: &Path, report: &Report) -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        let history = std::fs::File::create(out.join("history.jsonl"))?;
        report.history.write_json_lines(std::io::BufWriter::new(history)).map_err(std::io::Error::other)?;
        std::fs::write(out.join("timeline.txt"), report.timeline.join("\n") + "\n")?;
        std::fs::write(out.join("verdict.txt"), format!("{}\n{}", report.summary_line(), report.verdict_text()))?;
        Ok(())
    }

    /// One finished seed of a sweep.
    struct Outcome {
        seed: u64,
        passed: bool,
        line: String,
        detail: String,
        /// The run's coverage counters (empty when it crashed).
        coverage: Vec<(String, u64)>,
    }

    /// The counters of a `coverage: name=count; ...` line.
    fn parse_coverage(stdout: &str) -> Vec<(String, u64)> {
        let Some(line) = stdout.lines().find_map(|line| line.strip_prefix("coverage: ")) else { return Vec::new() };
        line.split("; ")
            .filter_map(|part| part.rsplit_once('='))
            .filter_map(|(name, count)| Some((name.to_string(), count.parse().ok()?)))
            .collect()
    }

    fn sweep(seeds: std::ops::Range<u64>, jobs: usize, fail_fast: bool, options: &RunOptions) -> i32 {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(error) => return usage(&format!("locating this executable: {error}")),
        };
        let total = seeds.end - seeds.start;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} seeds, {per_sec}, eta {eta} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        // Children run the seeds; this process only starts them and collects their answers (no
        // threads: it polls the children every few milliseconds).
        let mut queue = seeds.clone();
        let mut running: Vec<(u64, std::process::Child)> = Vec::new();
        let mut outcomes = Vec::new();
        let started = Instant::now();
        let args = options.args();
        loop {
            while running.len() < jobs {
                let Some(seed) = queue.next() else { break };
                let child = Command::new(&exe)
                    .args(["run", "--quiet", "--seed", &seed.to_string()])
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn();
                match child {
                    Ok(child) => running.push((seed, child)),
                    Err(error) => {
                        outcomes.push(Outcome {
                            seed,
                            passed: false,
                            line: String::new(),
                            detail: format!("could not run: {error}"),
                            coverage: Vec::new(),
                        });
                        bar.inc(1);
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            let mut finished = None;
            for (i, (_, child)) in running.iter_mut().enumerate() {
                if !matches!(child.try_wait(), Ok(None)) {
                    finished = Some(i);
                    break;
                }
            }
            let Some(i) = finished else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let (seed, child) = running.swap_remove(i);
            let outcome = match child.wait_with_output() {
                Ok(output) => {
                    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
                    let line = stdout.lines().find(|l| l.starts_with("seed ")).unwrap_or("").to_string();
                    let passed = output.status.code() == Some(0);
                    let detail = if passed {
                        String::new()
                    } else {
                        let stderr = String::from_utf8_lossy(&output.stderr);
                        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
                        format!("{stdout}{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
                    };
                    Outcome { seed, passed, line, detail, coverage: parse_coverage(&stdout) }
                }
                Err(error) => Outcome {
                    seed,
                    passed: false,
                    line: String::new(),
                    detail: format!("could not collect: {error}"),
                    coverage: Vec::new(),
                },
            };
            if !outcome.passed {
                bar.println(format!("seed {seed} FAILED"));
                if fail_fast {
                    // Stopped seeds are neither passed nor failed: they are left out of the summary.
                    queue = seeds.end..seeds.end;
                    for (_, mut child) in running.drain(..) {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
            outcomes.push(outcome);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let wall = started.elapsed().as_secs_f64();
        outcomes.sort_by_key(|o| o.seed);
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "sweep {}..{} ({} seeds, {jobs} jobs): {} passed, {} failed{} in {wall:.1} s ({:.1} seeds/minute)",
            seeds.start,
            seeds.end,
            total,
            outcomes.len() - failed.len(),
            failed.len(),
            match total - outcomes.len() as u64 {
                0 => String::new(),
                stopped => format!(", {stopped} not run (--fail-fast)"),
            },
            outcomes.len() as f64 * 60.0 / wall.max(1e-9)
        );
        let simulated: f64 = outcomes
            .iter()
            .filter_map(|o| o.line.split(", ").find_map(|part| part.strip_suffix(" s simulated")).and_then(|s| s.parse::<f64>().ok()))
            .sum();
        let _ =
            writeln!(stdout, "simulated {simulated:.0} s in {wall:.1} wall s: {:.1} simulated s per wall s", simulated / wall.max(1e-9));
        // Coverage: per counter, the seeds where it ran and its total (a zero is a gap: no
        // seed reached that fault, path or check).
        let mut coverage: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
        for outcome in &outcomes {
            for (name, count) in &outcome.coverage {
                let entry = coverage.entry(name.as_str()).or_default();
                entry.0 += u64::from(*count > 0);
                entry.1 += count;
            }
        }
        let _ = writeln!(stdout, "coverage over {total} seeds (seeds where it ran, total count):");
        for (name, (seeds_ran, count)) in &coverage {
            let _ = writeln!(stdout, "  {name:<48} {seeds_ran:>6} {count:>10}");
        }
        for outcome in &failed {
            let config = options.config(outcome.seed).expect("validated before the sweep");
            let _ = writeln!(stdout, "\nseed {} FAILED; replay: {}\n{}", outcome.seed, config.replay_command(), outcome.detail.trim_end());
        }
        if failed.is_empty() {
            0
        } else {
            1
        }
    }

    /// Writes `faults` as a plan file for `config`'s seed; its replay command names `path`.
    fn write_plan(config: &ScenarioConfig, failure: Vec<String>, faults: Vec<InjectedFault>, path: &Path) -> Result<(), String> {
        let mut replayed = config.clone();
        replayed.faults = Some(FaultSelection { path: Some(path.to_path_buf()), ..FaultSelection::of(&faults) });
        PlanFile { seed: config.seed, failure, replay: replayed.replay_command(), faults }.write(path)
    }

    /// One replay in a child process: `plan` (all of the seed's faults when `None`); what it
    /// failed and injected, or why it could not run.
    fn replay(exe: &Path, seed: u64, options: &RunOptions, plan: Option<&[InjectedFault]>) -> Result<Replayed, String> {
        let dir = std::env::temp_dir();
        let (plan_in, plan_out) = (
            dir.join(format!("odradek-shrink-{}-in.json", std::process::id())),
            dir.join(format!("odradek-shrink-{}-out.json", std::process::id())),
        );
        let _ = std::fs::remove_file(&plan_out);
        let mut command = Command::new(exe);
        command.args(["run", "--quiet", "--seed", &seed.to_string()]).args(options.args()).arg("--plan-out").arg(&plan_out);
        if let Some(faults) = plan {
            let file = PlanFile { seed, failure: Vec::new(), replay: String::new(), faults: faults.to_vec() };
            file.write(&plan_in)?;
            command.arg("--plan").arg(&plan_in);
        }
        let output =
            command.stdin(Stdio::null()).stderr(Stdio::null()).output().map_err(|error| format!("running {}: {error}", exe.display()))?;
        let written = PlanFile::read(&plan_out).map_err(|error| {
            let stdout = String::from_utf8_lossy(&output.stdout);
            format!("the replay wrote no plan ({error}); its output:\n{stdout}")
        })?;
        Ok(Replayed { failed: written.failure, injected: written.faults })
    }

    fn shrink(seed: u64, options: &RunOptions, out: &Path, runs_max: usize) -> i32 {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(error) => return usage(&format!("locating this executable: {error}")),
        };
        let started = Instant::now();
        let original = match replay(&exe, seed, options, None) {
            Ok(outcome) => outcome,
            Err(error) => return usage(&error),
        };
        if original.failed.is_empty() {
            println!("seed {seed} passes: nothing to shrink");
            return 2;
        }
        println!(
            "seed {seed} fails {} with {} faults; shrinking (at most {runs_max} replays)",
            original.failed.join(", "),
            original.injected.len()
        );
        let mut errors = Vec::new();
        let (shrunk, runs) = minimize(&original.injected, &original.failed, runs_max, |candidate| {
            replay(&exe, seed, options, Some(candidate)).unwrap_or_else(|error| {
                errors.push(error);
                Replayed::default()
            })
        });
        if let Some(error) = errors.first() {
            eprintln!("odradek-sim: {} replays could not run; the first: {error}", errors.len());
        }
        let config = options.config(seed).expect("validated by the caller");
        if let Err(error) = write_plan(&config, original.failed.clone(), shrunk.clone(), out) {
            return usage(&error);
        }
        // The written plan, replayed once more through the file itself.
        let check = match replay_file(&exe, seed, options, out) {
            Ok(outcome) => outcome,
            Err(error) => return usage(&error),
        };
        let reproduced = check.failed.iter().any(|id| original.failed.contains(id));
        println!(
            "{} of {} faults left after {runs} replays in {:.1} s; the plan replays to {}",
            shrunk.len(),
            original.injected.len(),
            started.elapsed().as_secs_f64(),
            if check.failed.is_empty() { "PASS (not reproduced)".to_string() } else { format!("FAIL: {}", check.failed.join(", ")) }
        );
        for fault in &shrunk {
            let details: Vec<String> = fault.details.iter().map(|(key, value)| format!("{key} {value}")).collect();
            println!("  round {:>3}: {} ({}) for {} ms", fault.round, fault.fault, details.join(", "), fault.window_ms);
        }
        println!("wrote {}\nreplay: {}", out.display(), PlanFile::read(out).map(|file| file.replay).unwrap_or_default());
        if reproduced {
            0
        } else {
            1
        }
    }

    /// A replay of the plan file at `path` (as a user runs it).
    fn replay_file(exe: &Path, seed: u64, options: &RunOptions, path: &Path) -> Result<Replayed, String> {
        let file = PlanFile::read(path)?;
        replay(exe, seed, options, Some(&file.faults))
    }
}
