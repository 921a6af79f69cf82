//! Publishes to a NATS JetStream stream and waits for each publish acknowledgement, with at most
//! `window` publishes outstanding (`window=1`: one write at a time). The stream keeps its
//! messages on file with `replicas` copies (R3: an acknowledgement means stored on two of three
//! servers; NATS does not fsync each message by default).
//!
//! `nats_bench url=nats://127.0.0.1:4222 replicas=3 size=100 records=3000 window=1 max_secs=20`

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use odradek_peer_bench::{latency_histogram, print_result, record_latency, Args};

#[tokio::main]
async fn main() {
    let args = Args::parse(&["url", "replicas", "size", "records", "window", "max_secs"]);
    let url = args.text("url", "nats://127.0.0.1:4222");
    let (replicas, size) = (args.number("replicas", 3) as usize, args.number("size", 100));
    let (records, window) = (args.number("records", 3000), args.number("window", 1).max(1) as usize);
    let deadline = Instant::now() + Duration::from_secs(args.number("max_secs", 20));

    let client = async_nats::connect(url.as_str()).await.expect("connect to NATS");
    let context = jetstream::new(client);
    let name = format!("bench_{size}_{window}");
    let _ = context.delete_stream(&name).await;
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    context.create_stream(config).await.expect("create the stream");
    let subject = format!("{name}.records");
    let payload = Bytes::from(vec![b'x'; size as usize]);

    let mut histogram = latency_histogram();
    let mut outstanding = FuturesUnordered::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    let start = Instant::now();
    while acked < records && Instant::now() < deadline {
        while sent < records && outstanding.len() < window {
            let ack = context.publish(subject.clone(), payload.clone()).await.expect("publish");
            let sent_at = Instant::now();
            outstanding.push(async move { (ack.await, sent_at) });
            sent += 1;
        }
        let Some((ack, sent_at)) = outstanding.next().await else { break };
        ack.expect("publish acknowledged");
        record_latency(&mut histogram, sent_at.elapsed());
        acked += 1;
    }
    let elapsed = start.elapsed();
    print_result(&format!("nats-jetstream R{replicas} size={size} window={window}"), acked, size, elapsed, &histogram);
    let _ = context.delete_stream(&name).await;
}
