//! Joins a consumer group, prints what the group assigns this member, and commits after each
//! batch of records (at-least-once: a crash between processing and commit re-delivers).
//!
//! `cargo run -p odradek-client --example group_consumer -- --bootstrap 127.0.0.1:9092 --topic demo --group printers`
//!
//! Start it twice with the same `--group`: the partitions are shared between the two, and when
//! one stops (Ctrl-C closes it: it commits and leaves at once) the other takes them over and
//! resumes at the committed offsets. `--classic` uses the classic protocol (the group's leader
//! member assigns with range) instead of the consumer protocol (the coordinator assigns).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use odradek_client::group::TopicPartition;
use odradek_client::{Consumer, ConsumerConfig, GroupProtocol, OffsetReset, RebalanceListener};

/// Prints assignment changes as the consumer applies them (inside `poll`).
struct Printer;

impl RebalanceListener for Printer {
    fn on_partitions_assigned(&mut self, partitions: &BTreeSet<TopicPartition>) {
        eprintln!("assigned: {partitions:?}");
    }
    fn on_partitions_revoked(&mut self, partitions: &BTreeSet<TopicPartition>) {
        eprintln!("revoked: {partitions:?}");
    }
    fn on_partitions_lost(&mut self, partitions: &BTreeSet<TopicPartition>) {
        eprintln!("lost (not committed): {partitions:?}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut topic = "demo".to_string();
    let mut group = "printers".to_string();
    let mut protocol = GroupProtocol::Consumer;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--classic" {
            protocol = GroupProtocol::Classic;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bootstrap" => bootstrap = value,
            "--topic" => topic = value,
            "--group" => group = value,
            other => return Err(format!("unknown argument {other}; use --bootstrap ADDR --topic NAME --group NAME [--classic]").into()),
        }
    }

    let config = ConsumerConfig {
        group_id: Some(group),
        group_protocol: protocol,
        // Commit by hand after processing, rather than every 5 s in the background.
        enable_auto_commit: false,
        group_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&[bootstrap.as_str()], config)?;
    consumer.set_rebalance_listener(Box::new(Printer))?;
    consumer.subscribe([topic])?;
    // Ctrl-C only raises a flag: a poll is never cut short in the middle of a rebalance.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop_on_signal.store(true, Ordering::Relaxed);
    });
    while !stop.load(Ordering::Relaxed) {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        for record in &records {
            let value = record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            println!("{}/{}@{} {value}", record.topic, record.partition, record.offset);
        }
        if !records.is_empty() {
            // The offsets after everything this poll (and every earlier one) returned.
            let outcome = consumer.commit().await?;
            eprintln!("committed {:?} as {} at epoch {}", outcome.offsets, outcome.member_id, outcome.epoch);
        }
    }
    consumer.close().await?;
    Ok(())
}
