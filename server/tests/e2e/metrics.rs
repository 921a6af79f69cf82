//! The metrics endpoint of real processes (`metrics_listen`, issue 15): scraped over HTTP like
//! Prometheus does, its values move with the cluster: after a produce the high watermark gauge
//! of that partition rises on every replica, the leader counts the produce request and its
//! followers' lag, fsyncs are timed. Unknown paths are 404, other methods 405.

// Real processes, real sockets and real time: not a simulation test.
#![cfg(not(madsim))]

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use odradek_client::{Admin, Producer, ProducerConfig, ProducerRecord, TopicConfig};

use common::{without_colors, ProcessCluster};

/// The metrics address node `id` logged at start ("metrics=Some(ADDR)").
fn metrics_addr(cluster: &ProcessCluster, id: u64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = without_colors(&cluster.log(id));
        if let Some(start) = log.find("metrics=Some(") {
            let rest = &log[start + "metrics=Some(".len()..];
            return rest[..rest.find(')').expect("closing parenthesis")].to_string();
        }
        assert!(std::time::Instant::now() < deadline, "node {id} logged no metrics address:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request: (status code, body).
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("the endpoint closes after answering");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    let length: usize =
        head.lines().find_map(|line| line.strip_prefix("Content-Length: ")).and_then(|n| n.parse().ok()).expect("Content-Length");
    assert_eq!(body.len(), length, "the body is as long as announced");
    (status, body.to_string())
}

fn scrape(addr: &str) -> String {
    let (status, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels exactly as encoded) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

fn high_watermark(text: &str) -> Option<f64> {
    sample(text, "odradek_partition_high_watermark{topic=\"metered\",partition=\"0\"}")
}

/// Scrapes `addr` until `check` holds (the sampled values follow the cluster within a second).
fn scrape_until(addr: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(addr);
        if check(&text) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "{addr}: {what} within 20 s; last scrape:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_values_follow_the_cluster() {
    let cluster = ProcessCluster::start_with_settings(3, "metrics_listen = \"127.0.0.1:0\"");
    let endpoints: Vec<String> = (1..=3).map(|id| metrics_addr(&cluster, id)).collect();
    let bootstrap: Vec<String> = cluster.bootstrap().split(',').map(String::from).collect();
    let addresses: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
    let admin = Admin::new(&addresses).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match admin.create_topic("metered", 1, 3, TopicConfig::default()).await {
            Ok(()) => break,
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("create topic: {error}"),
        }
    }
    for endpoint in &endpoints {
        let text = scrape_until(endpoint, "the new partition with a leader", |text| {
            high_watermark(text) == Some(0.0)
                && sample(text, "odradek_partition_leader{topic=\"metered\",partition=\"0\"}").is_some_and(|leader| leader > 0.0)
        });
        assert!(sample(&text, "odradek_controller_leader").is_some_and(|leader| (1.0..=3.0).contains(&leader)), "{text}");
        assert!(sample(&text, "odradek_disk_available_bytes").is_some_and(|bytes| bytes > 0.0), "{text}");
        assert_eq!(sample(&text, "odradek_quarantined"), Some(0.0), "{text}");
        assert!(sample(&text, "odradek_fsync_latency_seconds_count").is_some_and(|count| count > 0.0), "the topic's creation fsynced");
    }

    let records = 5;
    let producer = Producer::new(&addresses, ProducerConfig::default()).await.expect("producer");
    for i in 0..records {
        let delivery = producer.send(ProducerRecord::new("metered", format!("v{i}"))).await.expect("send queues");
        delivery.await.expect("acknowledged");
    }
    producer.close().await.expect("close");

    let mut leaders = Vec::new();
    for endpoint in &endpoints {
        let text =
            scrape_until(endpoint, "the high watermark at the records produced", |text| high_watermark(text) == Some(f64::from(records)));
        let log_end = sample(&text, "odradek_partition_log_end_offset{topic=\"metered\",partition=\"0\"}");
        assert_eq!(log_end, Some(f64::from(records)), "{text}");
        leaders.push(sample(&text, "odradek_partition_leader{topic=\"metered\",partition=\"0\"}").expect("a leader gauge") as u64);
    }
    let leader = leaders[0];
    assert!(leaders.iter().all(|&l| l == leader), "the replicas agree on the leader: {leaders:?}");
    let text = scrape(&endpoints[leader as usize - 1]);
    let produced = sample(&text, "odradek_requests_total{listener=\"native\",api=\"produce\"}").unwrap_or(0.0);
    assert!(produced >= f64::from(records), "the leader counted the produce requests: {produced}\n{text}");
    let latency_count = sample(&text, "odradek_request_latency_seconds_count{listener=\"native\",api=\"produce\"}");
    assert_eq!(latency_count, Some(produced), "one latency per request");
    let lags: Vec<&str> =
        text.lines().filter(|line| line.starts_with("odradek_partition_follower_lag_entries{topic=\"metered\"")).collect();
    assert_eq!(lags.len(), 2, "the leader reports both followers' lag: {lags:?}");

    let (status, _) = http(&endpoints[0], "GET", "/nope");
    assert_eq!(status, 404);
    let (status, _) = http(&endpoints[0], "POST", "/metrics");
    assert_eq!(status, 405);
}
