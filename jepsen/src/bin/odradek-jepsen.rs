//! `odradek-jepsen`: the Jepsen-style harness against real `odradek server` processes.
//!
//! * `odradek-jepsen run --nodes 3 --time-limit 30 --rate 50 --nemesis kill,pause,partition --acks all --out DIR`
//!   starts a cluster on loopback, runs the workload and the faults, checks the history and
//!   writes the report directory (see `odradek_jepsen::report`);
//! * `odradek-jepsen run --workload subscribe --nemesis kill-coordinator,pause-coordinator,kill ...`
//!   runs consumer-group members (both protocols) instead of assigning consumers, and adds the
//!   group checks C1–C7 to the verdict;
//! * `odradek-jepsen run --client kafka ...` drives the producers and consumers through a Kafka
//!   client library (rskafka) over the nodes' Kafka listeners instead of the native client;
//! * `odradek-jepsen check DIR` re-checks `DIR/history.jsonl` and prints the summary.
//!
//! Exit status: 0 if the history has no fatal anomaly (and the run had no problem such as a
//! server exiting by itself or an unfinished drain), 1 otherwise, 2 on a usage or setup error.

#[cfg(madsim)]
fn main() {
    eprintln!("odradek-jepsen drives real processes and is not built under --cfg madsim");
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() {
    std::process::exit(real::main());
}

#[cfg(not(madsim))]
mod real {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use clap::{Parser, Subcommand, ValueEnum};
    use odradek_jepsen::checker::{check, CheckOptions};
    use odradek_jepsen::harness::{self, cluster, nemesis, RunConfig};
    use odradek_jepsen::history::Acks;
    use odradek_jepsen::report;

    #[derive(Parser)]
    #[command(name = "odradek-jepsen", about = "Jepsen-style tests of real odradek servers on loopback")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum AcksArg {
        All,
        #[value(name = "1")]
        One,
        #[value(name = "0")]
        Zero,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum WorkloadArg {
        /// Producers and consumers that assign every partition.
        Log,
        /// Producers and consumer-group members, one group per protocol (consumer, classic).
        Subscribe,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum ClientArg {
        /// Odradek's own client over the native listener.
        Native,
        /// rskafka (a Kafka client library) over the nodes' Kafka listeners; --workload log,
        /// --acks all only.
        Kafka,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Start a cluster, run the workload under faults, check, write the report.
        Run {
            #[arg(long, default_value_t = 3)]
            nodes: usize,
            /// Seconds of workload under faults (recovery and the final drain come after).
            #[arg(long, default_value_t = 30)]
            time_limit: u64,
            /// Sends per second, all producers together.
            #[arg(long, default_value_t = 50.0)]
            rate: f64,
            /// Comma-separated: kill, pause, partition (any of the partition-* kinds), partition-one,
            /// partition-majority, partition-ring, partition-oneway, conn-drop, pause-kill,
            /// part-kill, kill-coordinator, pause-coordinator, wipe, membership (add a node,
            /// reassign a partition onto it, decommission another), none.
            #[arg(long, default_value = "kill,pause,partition")]
            nemesis: String,
            #[arg(long, value_enum, default_value = "all")]
            acks: AcksArg,
            /// The `odradek` server binary; default: the one next to this executable.
            #[arg(long)]
            binary: Option<PathBuf>,
            /// The report directory (also holds the nodes' data dirs and logs under `cluster/`).
            #[arg(long, default_value = "store/latest")]
            out: PathBuf,
            /// Partitions of the test topic.
            #[arg(long, default_value_t = 4)]
            keys: u32,
            #[arg(long, default_value_t = 3)]
            replication_factor: u32,
            #[arg(long, default_value_t = 4)]
            producers: usize,
            /// Consumer workers (log), or members per group (subscribe).
            #[arg(long, default_value_t = 2)]
            consumers: usize,
            #[arg(long, value_enum, default_value = "log")]
            workload: WorkloadArg,
            /// The client library of the producers and consumers.
            #[arg(long, value_enum, default_value = "native")]
            client: ClientArg,
            /// Seed of the workload's and the nemesis's choices (default: from the clock).
            #[arg(long)]
            seed: Option<u64>,
            /// Seconds between faults.
            #[arg(long, default_value_t = 4.0)]
            fault_quiet: f64,
            /// Seconds each fault lasts.
            #[arg(long, default_value_t = 4.0)]
            fault_window: f64,
            /// Seconds the workload goes on after the heal, before the final drain.
            #[arg(long, default_value_t = 5.0)]
            recovery: f64,
            /// TEST ONLY: start every server with this deliberate breakage (needs an `odradek`
            /// built with `--features planted-bugs`), to show the checker catches it.
            #[arg(long = "planted-bug")]
            planted_bugs: Vec<String>,
            /// Run the cluster with TLS: on every client listener (the workers connect over
            /// TLS) and mutual TLS on peer links, with certificates from `odradek tls init`.
            #[arg(long)]
            tls: bool,
            /// Security on: every node requires SASL/SCRAM and checks ACLs; the workload logs
            /// in as a user granted what it needs.
            #[arg(long)]
            secure: bool,
            /// DeleteRecords under faults (DR1): a worker deletes records below a point between
            /// half and three quarters of a partition's high watermark every 2 s; an acknowledged
            /// deletion must hold (no later poll returns a record below it).
            #[arg(long = "delete-records")]
            delete_records: bool,
            /// With --workload subscribe: the consumer-protocol group subscribes with a regular
            /// expression naming the test topic, which the coordinator resolves (KIP-848), beside
            /// a decoy topic whose name contains a match; C8 checks every assignment.
            #[arg(long)]
            regex: bool,
            /// Short retention on the test topic (2 KiB segments kept for 8 KiB or 5 s per
            /// partition): segments deleted under the faults, lagging replicas caught up by
            /// snapshots; log starts recorded, and only records at or above them must be read
            /// (L6, L7). With --workload log and --client native.
            #[arg(long)]
            retention: bool,
            /// With --workload subscribe: a worker deletes the groups' committed offsets of random
            /// keys now and then with raw Kafka OffsetDelete requests over the nodes' Kafka
            /// listeners (opened for it); C9 checks the deletions.
            #[arg(long = "offset-delete")]
            offset_delete: bool,
        },
        /// Re-check DIR/history.jsonl; print the summary (and rewrite verdict, summary and plots with --write).
        Check {
            dir: PathBuf,
            #[arg(long)]
            write: bool,
        },
    }

    pub fn main() -> i32 {
        let cli = Cli::parse();
        match cli.command {
            Command::Check { dir, write } => check_dir(&dir, write),
            Command::Run {
                nodes,
                time_limit,
                rate,
                nemesis,
                acks,
                binary,
                out,
                keys,
                replication_factor,
                producers,
                consumers,
                workload,
                client,
                seed,
                fault_quiet,
                fault_window,
                recovery,
                planted_bugs,
                tls,
                secure,
                delete_records,
                regex,
                retention,
                offset_delete,
            } => {
                let nemesis = match nemesis::parse_kinds(&nemesis) {
                    Ok(kinds) => kinds,
                    Err(error) => return usage(&error),
                };
                let binary = match binary.map_or_else(default_binary, Ok) {
                    Ok(binary) => binary,
                    Err(error) => return usage(&error),
                };
                let seed = seed.unwrap_or_else(|| {
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                });
                let seconds = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 3600.0));
                let config = RunConfig {
                    workload: match workload {
                        WorkloadArg::Log => harness::Workload::Log,
                        WorkloadArg::Subscribe => harness::Workload::Subscribe,
                    },
                    client: match client {
                        ClientArg::Native => harness::Client::Native,
                        ClientArg::Kafka => harness::Client::Kafka,
                    },
                    nodes,
                    time_limit: Duration::from_secs(time_limit.min(24 * 3600)),
                    rate,
                    nemesis,
                    acks: match acks {
                        AcksArg::All => Acks::All,
                        AcksArg::One => Acks::One,
                        AcksArg::Zero => Acks::Zero,
                    },
                    binary,
                    out,
                    keys,
                    replication_factor,
                    producers,
                    consumers,
                    seed,
                    fault_quiet: seconds(fault_quiet),
                    fault_window: seconds(fault_window),
                    recovery: seconds(recovery),
                    planted_bugs,
                    tls,
                    secure,
                    delete_records,
                    regex,
                    retention,
                    offset_delete,
                };
                if let Err(error) = config.validate() {
                    return usage(&error);
                }
                run(config)
            }
        }
    }

    fn usage(error: &str) -> i32 {
        eprintln!("odradek-jepsen: {error}");
        2
    }

    /// The `odradek` next to this executable (as cargo lays out `target/<profile>/`).
    fn default_binary() -> Result<PathBuf, String> {
        let exe = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
        let dir = exe.parent().ok_or("this executable has no directory")?;
        // Integration tests run from target/<profile>/deps; the binaries are one level up.
        for candidate in [dir.join("odradek"), dir.join("../odradek")] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        Err(format!(
            "no `odradek` server binary next to {}; build it with `cargo build -p odradek-server --bin odradek` or pass --binary",
            exe.display()
        ))
    }

    fn run(config: RunConfig) -> i32 {
        cluster::install_panic_hook();
        if let Err(error) = std::fs::create_dir_all(&config.out) {
            return usage(&format!("creating {}: {error}", config.out.display()));
        }
        let _ = std::fs::write(config.out.join("run.json"), serde_json::to_string_pretty(&config).unwrap_or_default() + "\n");
        eprintln!(
            "odradek-jepsen: seed {} nodes {} nemesis {:?} report {}",
            config.seed,
            config.nodes,
            config.nemesis,
            config.out.display()
        );
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => return usage(&format!("tokio runtime: {error}")),
        };
        let outcome = runtime.block_on(async {
            tokio::select! {
                outcome = harness::run(&config) => Some(outcome),
                _ = tokio::signal::ctrl_c() => None,
            }
        });
        // Whatever happened, no server outlives the harness.
        cluster::kill_registered();
        runtime.shutdown_timeout(Duration::from_secs(2));
        let (history, notes) = match outcome {
            None => {
                eprintln!("odradek-jepsen: interrupted; every server was killed");
                return 130;
            }
            Some(Err(error)) => {
                cluster::kill_registered();
                return usage(&format!("setup failed: {error}"));
            }
            Some(Ok(outcome)) => outcome,
        };
        let options = CheckOptions { log_dump: notes.log_dump.clone(), ..CheckOptions::default() };
        let verdict = check(&history, &options);
        let mut info = notes.info.clone();
        info.insert(
            0,
            format!(
                "workload {:?} client {:?} seed {} nodes {} acks {:?} rate {}/s nemesis {:?}",
                config.workload, config.client, config.seed, config.nodes, config.acks, config.rate, config.nemesis
            ),
        );
        let written = report::write_report(&config.out, &history, &verdict, &notes.problems, &info)
            .and_then(|()| notes.log_dump.as_deref().map_or(Ok(()), |dump| report::write_log_dump(&config.out, dump)));
        if let Err(error) = written {
            eprintln!("odradek-jepsen: writing the report to {}: {error}", config.out.display());
            return 2;
        }
        print!("{}", report::summary(&history, &verdict, &notes.problems, &info));
        println!("report: {}", config.out.display());
        if verdict.valid && notes.problems.is_empty() {
            0
        } else {
            1
        }
    }

    fn check_dir(dir: &Path, write: bool) -> i32 {
        let history = match report::read_history(dir) {
            Ok(history) => history,
            Err(error) => return usage(&error),
        };
        let log_dump = match report::read_log_dump(dir) {
            Ok(dump) => dump,
            Err(error) => return usage(&error),
        };
        let verdict = check(&history, &CheckOptions { log_dump, ..CheckOptions::default() });
        let info = vec![format!("re-checked {}", dir.join(report::HISTORY_FILE).display())];
        if write {
            if let Err(error) = report::write_verdict(dir, &history, &verdict, &[], &info) {
                return usage(&format!("writing the report: {error}"));
            }
        }
        print!("{}", report::summary(&history, &verdict, &[], &info));
        if verdict.valid {
            0
        } else {
            1
        }
    }
}
