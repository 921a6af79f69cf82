//! Shared pieces of the peer load generators: `key=value` arguments, and one `RESULT` line per
//! run with throughput and latency percentiles, in the units `odradek bench` prints (records/s,
//! MB/s, milliseconds), so that `scripts/side-by-side.sh` can put them next to Odradek's.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// `key=value` command-line arguments; every key must be known to the caller.
pub struct Args(BTreeMap<String, String>);

impl Args {
    pub fn parse(known: &[&str]) -> Args {
        let mut values = BTreeMap::new();
        for argument in std::env::args().skip(1) {
            let Some((key, value)) = argument.split_once('=') else { panic!("argument {argument:?} is not key=value") };
            assert!(known.contains(&key), "unknown argument {key:?}; known: {known:?}");
            values.insert(key.to_string(), value.to_string());
        }
        Args(values)
    }

    pub fn text(&self, key: &str, default: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| default.to_string())
    }

    pub fn number(&self, key: &str, default: u64) -> u64 {
        self.0.get(key).map_or(default, |value| value.parse().unwrap_or_else(|e| panic!("{key}={value}: {e}")))
    }
}

/// Latencies of acknowledged writes, in microseconds (1 µs to 60 s, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

pub fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(latency.as_micros().max(1) as u64);
}

/// Prints the run's `RESULT` line: `what` names the system and settings.
pub fn print_result(what: &str, records: u64, record_bytes: u64, elapsed: Duration, histogram: &Histogram<u64>) {
    let seconds = elapsed.as_secs_f64();
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "RESULT {what}: {records} records in {seconds:.2} s: {:.0} records/s, {:.2} MB/s; latency ms p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        records as f64 / seconds,
        (records * record_bytes) as f64 / seconds / 1e6,
        ms(0.50),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1000.0,
    );
}
