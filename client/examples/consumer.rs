//! Consumes every partition of a topic from the beginning and prints the records.
//!
//! `cargo run -p odradek-client --example consumer -- --bootstrap 127.0.0.1:9092 --topic demo`

use futures::StreamExt;
use odradek_client::{Admin, Consumer, ConsumerConfig, Offset};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut topic = "demo".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bootstrap" => bootstrap = value,
            "--topic" => topic = value,
            other => return Err(format!("unknown argument {other}; use --bootstrap ADDR --topic NAME").into()),
        }
    }

    let described = Admin::new(&[bootstrap.as_str()])?.describe_topic(&topic).await?;
    let mut consumer = Consumer::new(&[bootstrap.as_str()], ConsumerConfig::default())?;
    consumer.assign(described.partitions.iter().map(|info| (topic.clone(), info.partition)).collect())?;
    for info in &described.partitions {
        consumer.seek(&topic, info.partition, Offset::Beginning).await?;
    }
    let mut records = std::pin::pin!(consumer.stream());
    while let Some(record) = records.next().await {
        match record {
            Ok(record) => {
                let value = record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                println!("{}/{}@{} {value}", record.topic, record.partition, record.offset);
            }
            Err(error) => eprintln!("poll failed: {error}"),
        }
    }
    Ok(())
}
