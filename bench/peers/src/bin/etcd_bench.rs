//! Puts keys into etcd from `concurrency` clients, each waiting for its put's answer before the
//! next (`concurrency=1`: one write at a time). etcd fsyncs its Raft log before it answers: the
//! promise Odradek's acks=all makes.
//!
//! `etcd_bench endpoints=127.0.0.1:2379 size=100 records=3000 concurrency=1 max_secs=20`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use odradek_peer_bench::{latency_histogram, print_result, record_latency, Args};

#[tokio::main]
async fn main() {
    let args = Args::parse(&["endpoints", "size", "records", "concurrency", "max_secs"]);
    let endpoints: Vec<String> = args.text("endpoints", "127.0.0.1:2379").split(',').map(str::to_string).collect();
    let (size, records) = (args.number("size", 100), args.number("records", 3000));
    let concurrency = args.number("concurrency", 1).max(1);
    let deadline = Instant::now() + Duration::from_secs(args.number("max_secs", 20));

    let client = etcd_client::Client::connect(&endpoints, None).await.expect("connect to etcd");
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (mut kv, next) = (client.kv_client(), next.clone());
            tokio::spawn(async move {
                let mut histogram = latency_histogram();
                let value = vec![b'x'; size as usize];
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= records || Instant::now() >= deadline {
                        return histogram;
                    }
                    let sent_at = Instant::now();
                    kv.put(format!("bench/{n:012}"), value.clone(), None).await.expect("put");
                    record_latency(&mut histogram, sent_at.elapsed());
                }
            })
        })
        .collect();
    let mut histogram = latency_histogram();
    for worker in workers {
        histogram.add(worker.await.expect("worker")).expect("same bounds");
    }
    let elapsed = start.elapsed();
    print_result(&format!("etcd size={size} concurrency={concurrency}"), histogram.len(), size, elapsed, &histogram);
}
