"""Kafka client compatibility checks against an Odradek cluster's Kafka listeners.

Run by scripts/kafka-compat.sh (which installs the clients and starts the cluster):
    python3 scripts/kafka_compat.py BOOTSTRAP [--quick]
Prints one line per check, `RESULT|client|version|feature|detail`, RESULT being PASS or FAIL,
then `N passed, N failed`. Exits non-zero when any check failed.
"""

import sys
import time
import uuid

RESULTS = []


def check(client, version, feature):
    """Decorator: runs the function as one check and records PASS/FAIL."""

    def wrap(function):
        def run(*args):
            try:
                detail = function(*args) or ""
                RESULTS.append(("PASS", client, version, feature, detail))
            except Exception as error:  # a failed check, reported, never fatal to the run
                RESULTS.append(("FAIL", client, version, feature, f"{type(error).__name__}: {error}"[:300]))
            line = RESULTS[-1]
            print("|".join(str(part) for part in line), flush=True)

        return run

    return wrap


def fresh(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def confluent_checks(bootstrap, quick):
    import confluent_kafka
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    version = f"confluent-kafka {confluent_kafka.__version__} / librdkafka {confluent_kafka.libversion()[0]}"
    client = "confluent-kafka"
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(name, partitions=1):
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3)], operation_timeout=30)
        futures[name].result(timeout=30)
        # Wait until metadata shows a leader for every partition.
        for _ in range(100):
            topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
            if topic and topic.error is None and all(p.leader >= 0 for p in topic.partitions.values()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name}: no leaders")

    def produce(name, values, **config):
        producer = Producer({"bootstrap.servers": bootstrap, **config})
        errors = []
        delivered = []

        def on_delivery(error, message):
            if error is not None:
                errors.append(error)
            else:
                delivered.append(message.offset())

        for value in values:
            producer.produce(name, value=value, partition=0, on_delivery=on_delivery)
        remaining = producer.flush(30)
        if remaining or errors:
            raise RuntimeError(f"{remaining} undelivered, errors {errors[:3]}")
        return delivered

    def consume(name, count, offset=OFFSET_BEGINNING):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": fresh("g"), "enable.auto.commit": False})
        consumer.assign([TopicPartition(name, 0, offset)])
        values = []
        deadline = time.time() + 30
        while len(values) < count and time.time() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(str(message.error()))
            values.append(message.value())
        consumer.close()
        return values

    @check(client, version, "metadata (brokers, leaders)")
    def metadata():
        cluster = admin.list_topics(timeout=10)
        if len(cluster.brokers) != 3:
            raise RuntimeError(f"{len(cluster.brokers)} brokers")
        return f"{len(cluster.brokers)} brokers, controller {cluster.controller_id}"

    @check(client, version, "create topic")
    def create_topic(name):
        create(name)

    topic = fresh("cf")
    metadata()
    create_topic(topic)
    for acks in (["0", "1", "all"] if not quick else ["all"]):

        @check(client, version, f"produce acks={acks}, consume from beginning")
        def produce_consume(acks=acks):
            name = fresh(f"cf-acks{acks}")
            create(name)
            values = [f"v{i}".encode() for i in range(100)]
            produce(name, values, acks=acks, **({"enable.idempotence": False} if acks != "all" else {}))
            got = consume(name, len(values))
            if got != values:
                raise RuntimeError(f"consumed {len(got)} of {len(values)}; first {got[:3]}")

        produce_consume()

    for codec in (["gzip", "snappy", "lz4", "zstd"] if not quick else ["lz4"]):

        @check(client, version, f"produce compression.type={codec}, consume back")
        def compressed(codec=codec):
            name = fresh(f"cf-{codec}")
            create(name)
            values = [f'{{"codec":"{codec}","seq":{i},"user":"user-{i % 97:04}","event":"page_view"}}'.encode() for i in range(500)]
            offsets = produce(name, values, **{"compression.type": codec, "linger.ms": 20, "enable.idempotence": True})
            if sorted(offsets) != list(range(len(values))):
                raise RuntimeError(f"offsets {sorted(offsets)[:5]}...")
            got = consume(name, len(values))
            if got != values:
                raise RuntimeError(f"consumed {len(got)} of {len(values)}; first {got[:2]}")
            return f"{len(values)} records"

        compressed()

    @check(client, version, "idempotent produce (enable.idempotence=true)")
    def idempotent():
        name = fresh("cf-idem")
        create(name)
        values = [f"i{i}".encode() for i in range(200)]
        offsets = produce(name, values, **{"enable.idempotence": True, "linger.ms": 5})
        if sorted(offsets) != list(range(200)):
            raise RuntimeError(f"offsets {sorted(offsets)[:5]}...")
        got = consume(name, len(values))
        if got != values:
            raise RuntimeError(f"consumed {len(got)}")

    idempotent()

    @check(client, version, "consume from an offset")
    def from_offset():
        name = fresh("cf-off")
        create(name)
        values = [f"o{i}".encode() for i in range(50)]
        produce(name, values)
        got = consume(name, 20, offset=30)
        if got != values[30:]:
            raise RuntimeError(f"got {got[:3]}")

    from_offset()

    @check(client, version, "list offsets (earliest/latest)")
    def watermarks():
        name = fresh("cf-wm")
        create(name)
        produce(name, [b"a", b"b", b"c"])
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": fresh("g")})
        low, high = consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
        consumer.close()
        if (low, high) != (0, 3):
            raise RuntimeError(f"watermarks {(low, high)}")
        return "0..3"

    watermarks()

    @check(client, version, "delete topic")
    def delete():
        name = fresh("cf-del")
        create(name)
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)
        for _ in range(50):
            if name not in admin.list_topics(timeout=10).topics:
                return
            time.sleep(0.1)
        raise RuntimeError("still listed")

    delete()


def kafka_python_checks(bootstrap, quick):
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    version = f"kafka-python {kafka.__version__}"
    client = "kafka-python"
    servers = bootstrap.split(",")

    def admin():
        return KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=30000)

    def create(name):
        a = admin()
        a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)], timeout_ms=30000)
        a.close()
        # Wait for a leader.
        consumer = KafkaConsumer(bootstrap_servers=servers)
        for _ in range(100):
            partitions = consumer.partitions_for_topic(name)
            if partitions:
                break
            time.sleep(0.1)
            consumer.poll(timeout_ms=10)
        consumer.close()

    def produce(name, values, acks, **config):
        producer = KafkaProducer(bootstrap_servers=servers, acks=acks, retries=5, **config)
        futures = [producer.send(name, value=v, partition=0) for v in values]
        producer.flush(30)
        offsets = [f.get(timeout=30).offset for f in futures] if acks != 0 else []
        producer.close()
        return offsets

    def consume(name, count, offset=None):
        consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        tp = TopicPartition(name, 0)
        consumer.assign([tp])
        if offset is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)
        values = []
        deadline = time.time() + 30
        while len(values) < count and time.time() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        consumer.close()
        return values

    @check(client, version, "metadata (brokers)")
    def metadata():
        a = admin()
        brokers = a.describe_cluster()["brokers"]
        a.close()
        if len(brokers) != 3:
            raise RuntimeError(f"{len(brokers)} brokers")
        return "3 brokers"

    metadata()
    for acks in ([0, 1, "all"] if not quick else ["all"]):

        @check(client, version, f"produce acks={acks}, consume from beginning")
        def produce_consume(acks=acks):
            name = fresh(f"kp-acks{acks}")
            create(name)
            values = [f"v{i}".encode() for i in range(100)]
            produce(name, values, acks)
            got = consume(name, len(values))
            if got != values:
                raise RuntimeError(f"consumed {len(got)} of {len(values)}")

        produce_consume()

    @check(client, version, "produce compression_type=gzip, consume back")
    def gzip_round_trip():
        # kafka-python has gzip built in; its snappy, lz4 and zstd need optional packages.
        name = fresh("kp-gzip")
        create(name)
        values = [f'{{"seq":{i},"event":"page_view"}}'.encode() for i in range(200)]
        produce(name, values, "all", compression_type="gzip", linger_ms=20)
        got = consume(name, len(values))
        if got != values:
            raise RuntimeError(f"consumed {len(got)} of {len(values)}")
        return f"{len(values)} records"

    gzip_round_trip()

    @check(client, version, "consume from an offset")
    def from_offset():
        name = fresh("kp-off")
        create(name)
        values = [f"o{i}".encode() for i in range(50)]
        produce(name, values, "all")
        got = consume(name, 20, offset=30)
        if got != values[30:]:
            raise RuntimeError(f"got {got[:3]}")

    from_offset()

    @check(client, version, "create and delete topic")
    def create_delete():
        name = fresh("kp-del")
        create(name)
        a = admin()
        a.delete_topics([name], timeout_ms=30000)
        a.close()

    create_delete()


def main():
    bootstrap = sys.argv[1]
    quick = "--quick" in sys.argv
    confluent_checks(bootstrap, quick)
    if not quick:
        kafka_python_checks(bootstrap, quick)
    passed = sum(1 for r in RESULTS if r[0] == "PASS")
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
