//! `odradek bench produce|consume`: load generators in the spirit of kafka-producer-perf-test,
//! printing a progress line per second and, at the end, throughput and latency percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use odradek_client::{Acks, Consumer, ConsumerConfig, Offset, OffsetQuery, Producer, ProducerConfig, ProducerRecord};

use crate::client_commands::{AcksArg, Bootstrap};
use crate::output::{note, say};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Produce fixed-size records as fast as allowed; report throughput and ack latency.
    Produce(ProduceBench),
    /// Read a topic from the beginning; report throughput and fetch latency. With --group: as a
    /// consumer group of --members members (throughput, commit latency, failover time).
    Consume(ConsumeBench),
}

#[derive(Args, Debug)]
pub struct ProduceBench {
    #[arg(long, short = 't', default_value = "bench")]
    topic: String,
    /// Records to send in total.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Value bytes per record.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Distinct keys (0: keyless records, spread over partitions).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Partitions, when the topic is created here.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Replication factor, when the topic is created here.
    #[arg(long, default_value_t = 3)]
    replication_factor: u32,
    /// Concurrent producers (each its own connections).
    #[arg(long, default_value_t = 1)]
    producers: u32,
    #[arg(long, value_enum, default_value = "all")]
    acks: AcksArg,
    /// Records per second across all producers; 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Largest batch in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: usize,
    /// How long a batch waits for more records (ms).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Compress each batch: none, gzip, snappy, lz4 or zstd (Kafka's compression.type).
    #[arg(long, default_value = "none")]
    compression: odradek_client::batch::Compression,
    /// JSON-like values (an event with repeated field names and varying numbers, padded to
    /// --record-size) instead of one repeated byte: what compression benchmarks should send.
    #[arg(long)]
    json: bool,
    /// Write one line per acknowledged record to this file: the wall-clock time it was sent
    /// (ms since the Unix epoch) and its ack latency (µs), so a script can take percentiles
    /// over any window of the run (e.g. while replicas catch up: scripts/rebalance-bench.sh).
    #[arg(long)]
    latency_log: Option<std::path::PathBuf>,
    /// Stop sending once this file exists (checked before each record), then wait for the
    /// acknowledgements and report as usual: a run whose length a script decides.
    #[arg(long)]
    stop_file: Option<std::path::PathBuf>,
}

/// A JSON-like event of exactly `bytes` bytes (at least 2), different for each `(producer, i)`:
/// field names repeat from record to record and the numbers vary, so it compresses the way
/// application events do (a run of one byte would compress a thousandfold).
fn json_like_value(producer: u64, i: u64, bytes: usize) -> Bytes {
    let mut state = (producer << 40) ^ i ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut text = format!(
        "{{\"id\":{i},\"producer\":{producer},\"user\":\"user-{:05}\",\"event\":\"{}\",\"amount\":{}.{:02},\"ts\":{},\"pad\":\"",
        next() % 100_000,
        ["page_view", "click", "purchase", "login"][(next() % 4) as usize],
        next() % 1000,
        next() % 100,
        1_700_000_000_000 + next() % 1_000_000_000,
    );
    while text.len() + 2 < bytes {
        text.push_str(&format!("{:x}", next() % 16));
    }
    text.truncate(bytes.saturating_sub(2));
    text.push_str("\"}");
    Bytes::from(text)
}

#[derive(Args, Debug)]
pub struct ConsumeBench {
    #[arg(long, short = 't', default_value = "bench")]
    topic: String,
    /// Stop after this many records (0: everything up to the current end).
    #[arg(long, default_value_t = 0)]
    records: u64,
    /// Bytes per fetch request.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    fetch_bytes: u32,
    /// Keep reading as records arrive (a consumer following producers from the beginning) and
    /// stop once no record came for this long; 0: stop at the end found when starting.
    #[arg(long, default_value_t = 0)]
    follow_idle_ms: u64,
    /// Ask every fetch for a read barrier (`fresh_high_watermark`: the leader confirms its
    /// leadership with a quorum round before answering, so the high watermark covers every write
    /// acknowledged before the fetch), as the simulator's and Jepsen's consumers do.
    #[arg(long)]
    read_barrier: bool,
    /// Consumer-group bench settings (used with --group).
    #[command(flatten)]
    group: Option<crate::bench_group::GroupBenchArgs>,
}

pub async fn bench(bootstrap: &Bootstrap, command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Produce(args) => produce(bootstrap, args).await,
        BenchCommand::Consume(args) => consume(bootstrap, args).await,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Prints throughput and latency (µs in the histogram, shown in ms).
fn summary(what: &str, records: u64, bytes: u64, elapsed: Duration, latency: &Histogram<u64>) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ms = |us: u64| us as f64 / 1000.0;
    say!(
        "{what}: {records} records in {seconds:.2} s: {:.0} records/s, {:.2} MB/s; latency ms p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        records as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.value_at_quantile(0.999)),
        ms(latency.max()),
    );
}

async fn produce(bootstrap: &Bootstrap, args: ProduceBench) -> Result<(), String> {
    let addresses = bootstrap.addresses();
    let created = crate::topic_setup::ensure_topic(bootstrap.admin()?, &args.topic, args.partitions, args.replication_factor).await?;
    let partitions = bootstrap.admin()?.describe_topic(&args.topic).await.map_err(|e| e.to_string())?.partitions.len();
    let acks = args.acks.to_acks();
    say!(
        "bench produce: topic {:?} ({} partitions{}), {} records of {} bytes, keys {}, producers {}, acks {:?}, rate {}, batch {} B, linger {} ms, compression {}{}",
        args.topic,
        partitions,
        if created { ", created" } else { "" },
        args.records,
        args.record_size,
        args.keys,
        args.producers,
        acks,
        if args.rate == 0 { "unlimited".to_string() } else { format!("{}/s", args.rate) },
        args.batch_bytes,
        args.linger_ms,
        args.compression,
        if args.json { ", JSON-like values" } else { "" }
    );
    let latency = Arc::new(Mutex::new(histogram()));
    let latency_log = match &args.latency_log {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| format!("--latency-log {}: {e}", path.display()))?;
            Some(Arc::new(Mutex::new(std::io::BufWriter::new(file))))
        }
        None => None,
    };
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = {
        let (acked, latency) = (acked.clone(), latency.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let now = acked.load(Ordering::Relaxed);
                let p99 = latency.lock().unwrap().value_at_quantile(0.99) as f64 / 1000.0;
                note!("{:>6.1} s  {:>9} records/s  {:>8} acked  p99 so far {p99:.2} ms", start.elapsed().as_secs_f64(), now - last, now);
                last = now;
            }
        })
    };
    let value = Bytes::from(vec![b'x'; args.record_size]);
    let mut producers = Vec::new();
    for index in 0..u64::from(args.producers) {
        let count = args.records / u64::from(args.producers) + u64::from(index < args.records % u64::from(args.producers));
        let config = ProducerConfig {
            acks,
            idempotence: acks == Acks::All,
            batch_bytes: args.batch_bytes,
            linger: Duration::from_millis(args.linger_ms),
            compression: args.compression,
            cluster: bootstrap.cluster_config()?,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(&addresses, config).await.map_err(|e| e.to_string())?;
        let (topic, value, keys, latency, acked, failed) =
            (args.topic.clone(), value.clone(), args.keys, latency.clone(), acked.clone(), failed.clone());
        let json = args.json;
        let (latency_log, stop_file) = (latency_log.clone(), args.stop_file.clone());
        let per_producer_rate = args.rate / u64::from(args.producers);
        producers.push(tokio::spawn(async move {
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            let send_failed = failed.clone();
            let collector = tokio::spawn(async move {
                while let Some((sent, delivery)) = done_rx.recv().await {
                    let delivery: odradek_client::DeliveryFuture = delivery;
                    match delivery.await {
                        Ok(_) => {
                            let us = Instant::now().duration_since(sent).as_micros() as u64;
                            latency.lock().unwrap().saturating_record(us.max(1));
                            if let Some(log) = &latency_log {
                                use std::io::Write;
                                let age = Instant::now().duration_since(sent);
                                let sent_ms = std::time::SystemTime::now()
                                    .checked_sub(age)
                                    .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                                    .map_or(0, |since| since.as_millis());
                                let _ = writeln!(log.lock().unwrap(), "{sent_ms} {us}");
                            }
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            let begun = tokio::time::Instant::now();
            for i in 0..count {
                if stop_file.as_ref().is_some_and(|path| path.exists()) {
                    break;
                }
                if per_producer_rate > 0 {
                    let due = begun + Duration::from_secs_f64(i as f64 / per_producer_rate as f64);
                    tokio::time::sleep_until(due).await;
                }
                let value = if json { json_like_value(index, i, value.len()) } else { value.clone() };
                let mut record = ProducerRecord::new(topic.clone(), value);
                if keys > 0 {
                    record = record.key(format!("key-{}", (index * 1_000_003 + i) % keys));
                }
                let sent = Instant::now();
                match producer.send(record).await {
                    Ok(delivery) => {
                        let _ = done_tx.send((sent, delivery));
                    }
                    Err(_) => {
                        send_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            drop(done_tx);
            let _ = producer.flush().await;
            let _ = collector.await;
            let _ = producer.close().await;
        }));
    }
    for producer in producers {
        let _ = producer.await;
    }
    let elapsed = start.elapsed();
    progress.abort();
    if let Some(log) = &latency_log {
        use std::io::Write;
        log.lock().unwrap().flush().map_err(|e| format!("--latency-log: {e}"))?;
    }
    let acked = acked.load(Ordering::Relaxed);
    let latency = latency.lock().unwrap();
    summary("produce", acked, acked * args.record_size as u64, elapsed, &latency);
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} records failed"));
    }
    Ok(())
}

async fn consume(bootstrap: &Bootstrap, args: ConsumeBench) -> Result<(), String> {
    if let Some(group) = args.group {
        return crate::bench_group::consume_group(bootstrap, &args.topic, args.records, args.fetch_bytes, group).await;
    }
    let addresses = bootstrap.addresses();
    let admin = bootstrap.admin()?;
    let topic = admin.describe_topic(&args.topic).await.map_err(|e| e.to_string())?;
    let mut target = 0;
    for partition in &topic.partitions {
        let start = admin.list_offsets(&args.topic, partition.partition, OffsetQuery::Earliest).await.map_err(|e| e.to_string())?.offset;
        let end = admin.list_offsets(&args.topic, partition.partition, OffsetQuery::Latest).await.map_err(|e| e.to_string())?.offset;
        target += end - start;
    }
    if args.records > 0 {
        target = target.min(args.records);
    }
    let follow_idle = (args.follow_idle_ms > 0).then(|| Duration::from_millis(args.follow_idle_ms));
    if follow_idle.is_some() {
        target = if args.records > 0 { args.records } else { u64::MAX };
    }
    say!(
        "bench consume: topic {:?} ({} partitions), {target} records, fetch {} B, read barrier {}",
        args.topic,
        topic.partitions.len(),
        args.fetch_bytes,
        if args.read_barrier { "on" } else { "off" }
    );
    let config = ConsumerConfig {
        bytes_max: args.fetch_bytes,
        cluster: bootstrap.cluster_config()?,
        fresh_high_watermark: args.read_barrier,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&addresses, config).map_err(|e| e.to_string())?;
    consumer.assign(topic.partitions.iter().map(|p| (args.topic.clone(), p.partition)).collect()).map_err(|e| e.to_string())?;
    for partition in &topic.partitions {
        consumer.seek(&args.topic, partition.partition, Offset::Beginning).await.map_err(|e| e.to_string())?;
    }
    let mut latency = histogram();
    let (mut records, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut last_records = 0;
    let mut last_record = Instant::now();
    // Following, a poll waits at most this long, so an idle end is seen within it.
    let poll_wait = follow_idle.map_or(Duration::from_secs(5), |idle| idle.min(Duration::from_millis(200)));
    while records < target {
        if follow_idle.is_some_and(|idle| last_record.elapsed() >= idle) {
            break;
        }
        let polled = Instant::now();
        let batch = consumer.poll(poll_wait).await.map_err(|e| e.to_string())?;
        if batch.is_empty() && follow_idle.is_some() {
            continue;
        }
        last_record = Instant::now();
        latency.saturating_record((polled.elapsed().as_micros() as u64).max(1));
        records += batch.len() as u64;
        bytes += batch.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64).sum::<u64>();
        if last_report.elapsed() >= Duration::from_secs(1) {
            note!("{:>6.1} s  {:>9} records/s  {records} read", start.elapsed().as_secs_f64(), records - last_records);
            last_report = Instant::now();
            last_records = records;
        }
    }
    // Following, the idle wait at the end is not reading time.
    let elapsed = if follow_idle.is_some() { last_record.duration_since(start) } else { start.elapsed() };
    summary("consume (latency = one poll)", records, bytes, elapsed, &latency);
    Ok(())
}
