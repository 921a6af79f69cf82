//! Produces N numbered lines to a topic and prints where each landed.
//!
//! `cargo run -p odradek-client --example producer -- --bootstrap 127.0.0.1:9092 --topic demo --count 10`

use odradek_client::{Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut topic = "demo".to_string();
    let mut count: u64 = 10;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bootstrap" => bootstrap = value,
            "--topic" => topic = value,
            "--count" => count = value.parse()?,
            other => return Err(format!("unknown argument {other}; use --bootstrap ADDR --topic NAME --count N").into()),
        }
    }

    let producer = Producer::new(&[bootstrap.as_str()], ProducerConfig::default()).await?;
    let mut deliveries = Vec::new();
    for index in 0..count {
        let record = ProducerRecord::new(topic.clone(), format!("line {index}")).key(format!("key-{index}"));
        deliveries.push(producer.send(record).await?);
    }
    for (index, delivery) in deliveries.into_iter().enumerate() {
        match delivery.await {
            Ok(metadata) => println!("line {index} -> {}/{} offset {:?}", metadata.topic, metadata.partition, metadata.offset),
            Err(error) => println!("line {index} failed ({}): {error}", if error.is_definite() { "definite" } else { "indefinite" }),
        }
    }
    producer.close().await?;
    Ok(())
}
