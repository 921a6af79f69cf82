//! Append+fsync and sequential-read throughput of the segment log on real files (FsDisk),
//! against the raw disk doing the same bytes (plain positional write + fdatasync).
//!
//! `cargo bench -p odradek-log` (optionally `-- --seconds S` per run, `--repeats N` runs per
//! configuration, `--dir PATH` for the data directory; default: under the target directory).
//!
//! One append = one entry whose payload is one producer batch of `batch` bytes (the log never
//! looks into it), followed by one `sync`. Records per batch = batch / record size, so the
//! record size changes the records/s figure, not the log's work: the log does no per-record
//! work by design. The raw figure writes the same bytes (entry header included) at the same
//! positions with one fdatasync each.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use odradek_log::{Entry, FsDisk, LogConfig, SegmentLog, ENTRY_HEADER_BYTES};

const RECORD_BYTES: [usize; 2] = [100, 1024];
const BATCH_BYTES: [usize; 6] = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];
/// Bounds per configuration, so the whole run stays a few minutes.
const APPENDS_MAX: usize = 20_000;
const BYTES_MAX: u64 = 512 << 20;

struct Figures {
    mb_per_s: f64,
    seconds: f64,
    appends: usize,
    latency_us: Histogram<u64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = arg("--seconds").map_or(1.0, |s| s.parse().expect("--seconds takes a number"));
    let repeats: usize = arg("--repeats").map_or(3, |s| s.parse().expect("--repeats takes a number"));
    let base = arg("--dir").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&base).expect("bench dir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    println!("odradek-log bench: append+fsync vs raw write+fdatasync, then sequential read");
    println!(
        "machine: {} cores, {}; data dir {}; {:.1} s per run, {} runs per configuration (medians; max {} appends, {} MiB per run)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        base.display(),
        seconds,
        repeats,
        APPENDS_MAX,
        BYTES_MAX >> 20
    );
    println!(
        "{:>7} {:>8} {:>9} {:>10} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "record", "batch", "appends", "records/s", "log MB/s", "raw MB/s", "ratio", "p50 us", "p99 us", "max us", "read MB/s"
    );
    for record_bytes in RECORD_BYTES {
        for batch_bytes in BATCH_BYTES {
            let limit = Duration::from_secs_f64(seconds);
            // Alternate log and raw runs and report medians: the machine is shared and noisy.
            let mut runs = Vec::new();
            for _ in 0..repeats {
                let dir = tempfile::tempdir_in(&base).expect("temp dir");
                let (log, read_mb_per_s) = runtime.block_on(log_run(dir.path(), batch_bytes, record_bytes, limit));
                let raw = raw_run(&dir.path().join("raw.bin"), batch_bytes + ENTRY_HEADER_BYTES, log.appends);
                runs.push((log, raw, read_mb_per_s));
            }
            let median = |mut values: Vec<f64>| {
                values.sort_by(f64::total_cmp);
                values[values.len() / 2]
            };
            let log_mb_per_s = median(runs.iter().map(|r| r.0.mb_per_s).collect());
            let raw_mb_per_s = median(runs.iter().map(|r| r.1.mb_per_s).collect());
            let ratio = median(runs.iter().map(|r| r.0.mb_per_s / r.1.mb_per_s).collect());
            let records_per_s =
                median(runs.iter().map(|r| (r.0.appends * (batch_bytes / record_bytes).max(1)) as f64 / r.0.seconds).collect());
            let mut latency_us = Histogram::<u64>::new(3).expect("histogram");
            for run in &runs {
                latency_us.add(&run.0.latency_us).expect("same histogram bounds");
            }
            println!(
                "{:>7} {:>8} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>5.0}% {:>9} {:>9} {:>9} {:>10.1}",
                record_bytes,
                batch_bytes,
                runs.iter().map(|r| r.0.appends).sum::<usize>(),
                records_per_s,
                log_mb_per_s,
                raw_mb_per_s,
                100.0 * ratio,
                latency_us.value_at_quantile(0.5),
                latency_us.value_at_quantile(0.99),
                latency_us.max(),
                median(runs.iter().map(|r| r.2).collect())
            );
        }
    }
}

/// Appends one `batch_bytes` entry + sync until the time or size bound; then reads it all back.
async fn log_run(dir: &Path, batch_bytes: usize, record_bytes: usize, limit: Duration) -> (Figures, f64) {
    let config = LogConfig { cache_bytes_max: 0, ..LogConfig::default() };
    let (mut log, _) = SegmentLog::open(FsDisk::new(), dir, config, 0).await.expect("open");
    let payload = Bytes::from(vec![0x5a; batch_bytes]);
    let records = (batch_bytes / record_bytes).max(1) as u32;
    let mut latency_us = Histogram::<u64>::new(3).expect("histogram");
    let started = Instant::now();
    let mut appends = 0usize;
    while started.elapsed() < limit && appends < APPENDS_MAX && (appends as u64 * batch_bytes as u64) < BYTES_MAX {
        let index = log.last_index() + 1;
        let entry = Entry::data(1, index, log.offset_next(), records, 0, payload.clone());
        let one = Instant::now();
        log.append(&[entry], 0).await.expect("append");
        log.sync().await.expect("sync");
        latency_us.record(one.elapsed().as_micros() as u64).expect("record");
        appends += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = appends as f64 * (batch_bytes + ENTRY_HEADER_BYTES) as f64;
    let figures = Figures { mb_per_s: bytes / 1e6 / elapsed, seconds: elapsed, appends, latency_us };

    let read_started = Instant::now();
    let mut low = log.first_index();
    let mut read_bytes = 0u64;
    while low <= log.last_index() {
        let entries = log.read(low, log.last_index() + 1, 1 << 20).await.expect("read");
        read_bytes += entries.iter().map(|e| e.encoded_bytes() as u64).sum::<u64>();
        low = entries.last().expect("at least one").index + 1;
    }
    let read_mb_per_s = read_bytes as f64 / 1e6 / read_started.elapsed().as_secs_f64();
    (figures, read_mb_per_s)
}

/// The same bytes, written with no log at all: pwrite + fdatasync per batch.
fn raw_run(path: &Path, write_bytes: usize, writes: usize) -> Figures {
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).expect("raw file");
    let buffer = vec![0x5a; write_bytes];
    let mut latency_us = Histogram::<u64>::new(3).expect("histogram");
    let started = Instant::now();
    for i in 0..writes {
        let one = Instant::now();
        file.write_all_at(&buffer, (i * write_bytes) as u64).expect("write");
        file.sync_data().expect("fdatasync");
        latency_us.record(one.elapsed().as_micros() as u64).expect("record");
    }
    let elapsed = started.elapsed().as_secs_f64();
    Figures { mb_per_s: (writes * write_bytes) as f64 / 1e6 / elapsed, seconds: elapsed, appends: writes, latency_us }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown cpu".into())
}
