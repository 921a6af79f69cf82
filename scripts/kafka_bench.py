"""Produce throughput through the Kafka listener with a real Kafka client (issue 16's benchmark).

    python3 scripts/kafka_bench.py BOOTSTRAP TOPIC --records N --record-size BYTES \
        [--compression none|gzip|snappy|lz4|zstd] [--linger-ms MS] [--batch-bytes BYTES]

confluent-kafka (librdkafka) producer, acks=all with idempotence (as `odradek bench produce`
with its defaults), every record to partition 0 of TOPIC (create it first, e.g. with
`odradek topic create`). Values are JSON-like events of exactly --record-size bytes, built the
way `odradek bench produce --json` builds them (field names repeat, numbers and a hex pad vary),
so compression ratios are comparable between the two clients. Prints the settings, then one
line `kafka produce: N records in S s: R records/s, M MB/s (acked A, failed F)`.
Run by hand or from server/scripts/bench-kafka.sh; never a timed test.
"""

import argparse
import sys
import time


def json_like_value(producer, i, size):
    """Mirror of bench.rs `json_like_value` (same shape, not byte-identical)."""
    state = ((producer << 40) ^ i ^ 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF

    def next_value():
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return state >> 33

    user = next_value() % 100_000
    event = ["page_view", "click", "purchase", "login"][next_value() % 4]
    whole, cents = next_value() % 1000, next_value() % 100
    ts = 1_700_000_000_000 + next_value() % 1_000_000_000
    text = f'{{"id":{i},"producer":{producer},"user":"user-{user:05}","event":"{event}","amount":{whole}.{cents:02},"ts":{ts},"pad":"'
    pad = []
    while len(text) + len(pad) + 2 < size:
        pad.append(format(next_value() % 16, "x"))
    text = (text + "".join(pad))[: max(size - 2, 0)] + '"}'
    return text.encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--batch-bytes", type=int, default=256 * 1024)
    args = parser.parse_args()

    import confluent_kafka
    from confluent_kafka import Producer

    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": args.linger_ms,
        "batch.size": args.batch_bytes,
        "compression.type": args.compression,
        "queue.buffering.max.kbytes": 32 * 1024,
    }
    print(
        f"kafka produce: confluent-kafka {confluent_kafka.__version__} / librdkafka {confluent_kafka.libversion()[0]}, "
        f"topic {args.topic!r}, {args.records} records of {args.record_size} bytes (JSON-like), acks=all idempotent, "
        f"linger {args.linger_ms} ms, batch.size {args.batch_bytes} B, compression {args.compression}",
        flush=True,
    )
    values = [json_like_value(0, i, args.record_size) for i in range(min(args.records, 10_000))]
    producer = Producer(config)
    acked = failed = 0

    def on_delivery(error, _message):
        nonlocal acked, failed
        if error is None:
            acked += 1
        else:
            failed += 1

    begun = time.monotonic()
    for i in range(args.records):
        while True:
            try:
                producer.produce(args.topic, value=values[i % len(values)], partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.monotonic() - begun
    rate = acked / seconds
    print(
        f"kafka produce: {args.records} records in {seconds:.2f} s: {rate:,.0f} records/s, "
        f"{rate * args.record_size / 1e6:.1f} MB/s (acked {acked}, failed {failed}, undelivered {remaining})"
    )
    sys.exit(0 if failed == 0 and remaining == 0 else 1)


if __name__ == "__main__":
    main()
