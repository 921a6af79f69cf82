"""Kafka client compatibility checks against an Odradek cluster's Kafka listeners.

Run by scripts/kafka-compat.sh (which installs the clients and starts the cluster):
    python3 scripts/kafka_compat.py BOOTSTRAP [--quick]
    python3 scripts/kafka_compat.py BOOTSTRAP --security SSL|SASL_SSL --ca CA.pem [--user U]
(the SASL_SSL password from KAFKA_COMPAT_PASSWORD)
Prints one line per check, `RESULT|client|version|feature|detail`, RESULT being PASS or FAIL,
then `N passed, N failed`. Exits non-zero when any check failed.
"""

import os
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


def poll_until(consumer, done, keep, seconds=30):
    """Polls `consumer` until `done()` or `seconds` passed, handing each message to `keep`; a
    message carrying an error raises it."""
    deadline = time.time() + seconds
    while not done() and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            raise RuntimeError(str(message.error()))
        keep(message)


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
        poll_until(consumer, lambda: len(values) >= count, lambda message: values.append(message.value()))
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

    @check(client, version, "topic admin: create_partitions, incremental_alter_configs, describe_configs")
    def topic_admin():
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions, ResourceType

        name = fresh("cf-alter")
        create(name)
        admin.create_partitions([NewPartitions(name, 3)], operation_timeout=30)[name].result(timeout=30)
        for _ in range(100):
            topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
            if topic and len(topic.partitions) == 3 and all(p.leader >= 0 for p in topic.partitions.values()):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("never 3 led partitions")
        try:
            admin.create_partitions([NewPartitions(name, 2)], operation_timeout=30)[name].result(timeout=30)
            raise RuntimeError("a shrink was accepted")
        except confluent_kafka.KafkaException as error:
            if error.args[0].code() != confluent_kafka.KafkaError.INVALID_PARTITIONS:
                raise
        change = ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[change])
        list(admin.incremental_alter_configs([resource]).values())[0].result(timeout=30)
        bad = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
        try:
            list(admin.incremental_alter_configs([bad]).values())[0].result(timeout=30)
            raise RuntimeError("an unknown setting was accepted")
        except confluent_kafka.KafkaException as error:
            if error.args[0].code() != confluent_kafka.KafkaError.INVALID_CONFIG:
                raise
        configs = list(admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values())[0].result(timeout=30)
        retention, segment = configs["retention.ms"], configs["segment.bytes"]
        if retention.value != "60000" or retention.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value or not segment.is_default:
            raise RuntimeError(f"retention.ms {retention.value} source {retention.source}; segment.bytes default {segment.is_default}")
        return "3 partitions, retention.ms 60000 (DYNAMIC_TOPIC_CONFIG), shrink and cleanup.policy refused"

    topic_admin()

    @check(client, version, "topic auto-creation: produce to a topic never created, consume back")
    def auto_create():
        name = fresh("cf-auto")
        produce(name, [b"a0", b"a1", b"a2"])
        got = consume(name, 3, 0)
        if got != [b"a0", b"a1", b"a2"]:
            raise RuntimeError(f"read {got}")
        partitions = len(admin.list_topics(topic=name, timeout=10).topics[name].partitions)
        # The broker's num.partitions (DescribeConfigs) is what auto-creation used.
        from confluent_kafka.admin import ConfigResource

        broker = ConfigResource(ConfigResource.Type.BROKER, "1")
        configs = admin.describe_configs([broker])[broker].result(timeout=30)
        default = int(configs["num.partitions"].value)
        if partitions != default:
            raise RuntimeError(f"created with {partitions} partitions, num.partitions is {default}")
        return f"created with {partitions} partitions, the broker's num.partitions"

    auto_create()

    @check(client, version, "delete_records, then earliest offset and consume from it")
    def delete_records():
        name = fresh("cf-deleterec")
        create(name)
        produce(name, [f"d{i}".encode() for i in range(10)])
        deleted = list(admin.delete_records([TopicPartition(name, 0, 6)], operation_timeout=30).values())[0].result(timeout=30)
        if deleted.low_watermark != 6:
            raise RuntimeError(f"low watermark {deleted.low_watermark}")
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": fresh("cf-dr"), "enable.auto.commit": False})
        low, high = consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
        consumer.close()
        if (low, high) != (6, 10):
            raise RuntimeError(f"watermarks {low}..{high}")
        got = consume(name, 4)
        if got != [b"d6", b"d7", b"d8", b"d9"]:
            raise RuntimeError(f"read from the beginning {got}")
        return "low watermark 6, earliest 6, reads d6..d9"

    delete_records()

    # confluent-kafka's AdminClient has no OffsetDelete (librdkafka's DeleteConsumerGroupOffsets
    # is not bound in Python): kafka-python's admin sends it, against a confluent-kafka member.
    import kafka

    @check("kafka-python", f"kafka-python {kafka.__version__}", "OffsetDelete (delete_group_offsets) beside a confluent-kafka member")
    def offset_delete():
        from kafka import KafkaAdminClient
        from kafka import TopicPartition as KafkaTopicPartition

        subscribed, other = fresh("cf-od-sub"), fresh("cf-od-other")
        create(subscribed)
        create(other)
        produce(subscribed, [b"s0", b"s1", b"s2"])
        group = fresh("cf-od")
        # A commit with no member (the group is empty): offset 5 of the other topic.
        simple = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        simple.commit(offsets=[TopicPartition(other, 0, 5)], asynchronous=False)
        simple.close()
        # A member subscribed to one topic commits it.
        member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        member.subscribe([subscribed])
        deadline = time.time() + 30
        message = None
        while message is None and time.time() < deadline:
            message = member.poll(0.5)
        if message is None or message.error():
            raise RuntimeError(f"the member read nothing: {message and message.error()}")
        member.commit(message=message, asynchronous=False)
        deleter = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
        answer = deleter.delete_group_offsets(group, [KafkaTopicPartition(subscribed, 0), KafkaTopicPartition(other, 0)])
        deleter.close()
        errors = {tp.topic: error.__name__ for tp, error in answer.items()}
        expected = {subscribed: "GroupSubscribedToTopicError", other: "NoError"}
        committed = {tp.topic: tp.offset for tp in member.committed([TopicPartition(subscribed, 0), TopicPartition(other, 0)], timeout=10)}
        member.close()
        if errors != expected:
            raise RuntimeError(f"per-partition errors {errors}")
        if committed[other] >= 0 or committed[subscribed] != 1:
            raise RuntimeError(f"committed after the delete {committed}")
        return "unsubscribed topic's offset removed, subscribed topic's kept (GROUP_SUBSCRIBED_TO_TOPIC)"

    offset_delete()

    def regex_run(protocol, tag, late_topic):
        """A member of a fresh group subscribed to `^PREFIX-.*` reads the two matching topics and
        not the other one; with `late_topic`, also a matching topic created after it subscribed."""
        prefix = fresh(f"cf-{tag}")
        matching, other, late = [f"{prefix}-a", f"{prefix}-b"], fresh(f"cf-no{tag}"), f"{prefix}-late"
        for name in matching + [other]:
            create(name)
        produce(matching[0], [b"a0", b"a1"])
        produce(matching[1], [b"b0"])
        produce(other, [b"x0"])
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": fresh(f"cf-{tag}g"), "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "group.protocol": protocol,
        })
        consumer.subscribe([f"^{prefix}-.*"])
        got = set()
        keep = lambda message: got.add((message.topic(), message.value()))
        poll_until(consumer, lambda: len(got) >= 3, keep)
        expected = {(matching[0], b"a0"), (matching[0], b"a1"), (matching[1], b"b0")}
        if late_topic:
            # Created after the subscription: the coordinator assigns it on a later heartbeat.
            create(late)
            produce(late, [b"l0"])
            expected.add((late, b"l0"))
            poll_until(consumer, lambda: len(got) >= 4, keep, seconds=60)
        # A little longer: the topic that does not match must stay unread.
        for _ in range(4):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                keep(message)
        consumer.close()
        if got != expected:
            raise RuntimeError(f"read {sorted(got)}")

    @check(client, version, "group (classic): regex subscription (librdkafka matches all-topic Metadata)")
    def regex_subscription():
        regex_run("classic", "rx", late_topic=False)
        return "both matching topics read, the other not"

    regex_subscription()

    @check(client, version, "group (consumer): regex subscription resolved by the coordinator (KIP-848), a matching topic created later")
    def regex_subscription_server_side():
        regex_run("consumer", "srx", late_topic=True)
        return "both matching topics and the later one read, the other not"

    regex_subscription_server_side()

    confluent_group_checks(bootstrap, quick, admin, create, client, version)


def confluent_group_checks(bootstrap, quick, admin, create, client, version):
    """Consumer groups with confluent-kafka, for each group protocol librdkafka speaks: members
    sharing partitions (each record consumed once across them), a member killed (its partitions
    move to the others), static members, commit and resume."""
    import multiprocessing
    from confluent_kafka import Consumer, Producer

    def produce_spread(name, count, partitions, prefix):
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(count):
            producer.produce(name, value=f"{prefix}{i}".encode(), partition=i % partitions)
        if producer.flush(30):
            raise RuntimeError("undelivered records")
        return {f"{prefix}{i}".encode() for i in range(count)}

    def consumer(group, protocol, **extra):
        config = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "group.protocol": protocol}
        if protocol == "classic":
            config.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        config.update(extra)
        return Consumer(config)

    def assigned(members, total, timeout=60):
        """Polls every member until their assignments cover `total` partitions, disjointly, each
        member owning some."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for member in members:
                member.poll(0.05)
            owned = [{(tp.topic, tp.partition) for tp in m.assignment()} for m in members]
            if sum(len(o) for o in owned) == total and len(set().union(*owned)) == total and all(owned):
                return owned
        raise RuntimeError(f"assignments never settled: {[sorted(p for _, p in o) for o in owned]}")

    def drain(members, expected, timeout=60):
        """Polls every member until `expected` records arrived; each exactly once."""
        got = []
        deadline = time.time() + timeout
        while len(got) < len(expected) and time.time() < deadline:
            for member in members:
                message = member.poll(0.05)
                if message is not None and not message.error():
                    got.append(message.value())
        if sorted(got) != sorted(expected):
            raise RuntimeError(f"consumed {len(got)} ({len(set(got))} distinct) of {len(expected)}")

    for protocol in ["classic", "consumer"]:

        @check(client, version, f"group ({protocol}): 3 members share 6 partitions, each record consumed once")
        def share(protocol=protocol):
            name, group = fresh("cf-grp"), fresh("g")
            create(name, 6)
            members = [consumer(group, protocol) for _ in range(3)]
            for member in members:
                member.subscribe([name])
            owned = assigned(members, 6)
            expected = produce_spread(name, 300, 6, "r")
            drain(members, expected)
            for member in members:
                member.close()
            return "partitions per member " + "/".join(str(len(o)) for o in owned)

        share()
        if quick:
            continue  # the CI subset: sharing only (a kill waits out a session)

        @check(client, version, f"group ({protocol}): a member killed, its partitions move to the others")
        def killed(protocol=protocol):
            name, group = fresh("cf-kill"), fresh("g")
            create(name, 6)
            victim = multiprocessing.get_context("spawn").Process(target=member_process, args=(bootstrap, group, name, protocol))
            victim.start()
            members = [consumer(group, protocol) for _ in range(2)]
            for member in members:
                member.subscribe([name])
            deadline = time.time() + 60
            while time.time() < deadline:
                for member in members:
                    member.poll(0.05)
                if 0 < sum(len(m.assignment()) for m in members) < 6:
                    break
            owned_before = sum(len(m.assignment()) for m in members)
            if not 0 < owned_before < 6:
                raise RuntimeError(f"the three members never shared the partitions ({owned_before} with the survivors)")
            victim.kill()
            victim.join()
            started = time.time()
            assigned(members, 6, timeout=90)
            moved_s = time.time() - started
            expected = produce_spread(name, 120, 6, "k")
            drain(members, expected)
            for member in members:
                member.close()
            return f"survivors owned {owned_before}/6, all 6 after {moved_s:.1f} s"

        killed()

    for protocol in ([] if quick else ["classic", "consumer"]):

        @check(client, version, f"group ({protocol}): static member restarts with its assignment")
        def static(protocol=protocol):
            name, group = fresh("cf-static"), fresh("g")
            create(name, 4)
            extra = {"session.timeout.ms": 30000} if protocol == "classic" else {}
            members = [consumer(group, protocol, **{"group.instance.id": f"i{n}", **extra}) for n in range(2)]
            for member in members:
                member.subscribe([name])
            before = assigned(members, 4)
            members[0].close()  # a static member does not leave on close (KIP-345; KIP-848: epoch -2)
            back = consumer(group, protocol, **{"group.instance.id": "i0", **extra})
            back.subscribe([name])
            after = assigned([back, members[1]], 4)
            back.close()
            members[1].close()
            if after != before:
                raise RuntimeError(f"assignment changed: {before} -> {after}")
            return "same partitions after restart"

        static()

    for protocol in ([] if quick else ["classic", "consumer"]):

        @check(client, version, f"group ({protocol}): commit, then a new consumer resumes from the committed offset")
        def resume(protocol=protocol):
            name, group = fresh("cf-resume"), fresh("g")
            create(name, 1)
            produce_spread(name, 100, 1, "c")
            first = consumer(group, protocol, **{"enable.auto.commit": False})
            first.subscribe([name])
            seen = []
            deadline = time.time() + 60
            while len(seen) < 40 and time.time() < deadline:
                message = first.poll(0.1)
                if message is not None and not message.error():
                    seen.append(message)
            if len(seen) < 40:
                raise RuntimeError(f"only {len(seen)} records")
            first.commit(message=seen[39], asynchronous=False)
            first.close()
            second = consumer(group, protocol)
            second.subscribe([name])
            deadline = time.time() + 60
            while time.time() < deadline:
                message = second.poll(0.1)
                if message is not None and not message.error():
                    second.close()
                    if message.offset() != 40:
                        raise RuntimeError(f"resumed at {message.offset()}, expected 40")
                    return "resumed at 40"
            second.close()
            raise RuntimeError("the second consumer got nothing")

        resume()


def member_process(bootstrap, group, topic, protocol):
    """A group member in its own process (killed by the "member killed" check)."""
    from confluent_kafka import Consumer

    config = {"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol}
    if protocol == "classic":
        config.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    member = Consumer(config)
    member.subscribe([topic])
    while True:
        member.poll(0.1)


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

    @check(client, version, "group (classic): 2 members share 4 partitions, each record consumed once")
    def share():
        # Each member polls in its own thread: kafka-python drops a join that completes after
        # its poll timed out and joins again, so round-robin short polls never settle.
        import threading

        name, group = fresh("kp-grp"), fresh("g")
        a = admin()
        a.create_topics([NewTopic(name, num_partitions=4, replication_factor=3)], timeout_ms=30000)
        a.close()
        members = [
            KafkaConsumer(name, bootstrap_servers=servers, group_id=group, auto_offset_reset="earliest", session_timeout_ms=6000,
                          heartbeat_interval_ms=500, enable_auto_commit=False)
            for _ in range(2)
        ]
        got, stop, lock = [], threading.Event(), threading.Lock()

        def run(member):
            while not stop.is_set():
                for records in member.poll(timeout_ms=500).values():
                    with lock:
                        got.extend(r.value for r in records)
            member.commit()

        threads = [threading.Thread(target=run, args=(m,)) for m in members]
        for thread in threads:
            thread.start()
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                owned = [member.assignment() for member in members]
                if sum(len(o) for o in owned) == 4 and all(owned):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"assignments never settled: {owned}")
            producer = KafkaProducer(bootstrap_servers=servers, acks="all")
            expected = [f"p{i}".encode() for i in range(200)]
            for i, value in enumerate(expected):
                producer.send(name, value=value, partition=i % 4)
            producer.flush(30)
            producer.close()
            deadline = time.time() + 60
            while len(got) < len(expected) and time.time() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        if sorted(got) != sorted(expected):
            raise RuntimeError(f"consumed {len(got)} ({len(set(got))} distinct) of {len(expected)}")
        committed = sum(members[0].committed(TopicPartition(name, p)) or 0 for p in range(4))
        for member in members:
            member.close()
        # A new member of the group resumes at the committed offsets: nothing left to read.
        resumed = KafkaConsumer(name, bootstrap_servers=servers, group_id=group, auto_offset_reset="earliest")
        left = sum(len(records) for _ in range(20) for records in resumed.poll(timeout_ms=200).values())
        resumed.close()
        if committed != len(expected) or left:
            raise RuntimeError(f"committed {committed} of {len(expected)}; a new member read {left} again")
        return "per member " + "/".join(str(len(o)) for o in owned) + ", committed and resumed"

    share()

    @check(client, version, "admin: create_partitions, alter_configs, describe_configs, delete_groups")
    def topic_and_group_admin():
        from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

        name, group = fresh("kp-alter"), fresh("g")
        create(name)
        a = admin()
        a.create_partitions({name: NewPartitions(total_count=3)}, timeout_ms=30000)
        resource = ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "60000"})
        a.alter_configs([resource], raise_on_unknown=False)
        described = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
        text = str(described)
        if "retention.ms" not in text or "60000" not in text:
            raise RuntimeError(f"describe_configs: {text[:300]}")
        # A group with a committed offset and no members, deleted.
        producer = KafkaProducer(bootstrap_servers=servers, acks="all")
        producer.send(name, value=b"x", partition=0)
        producer.flush(30)
        producer.close()
        member = KafkaConsumer(name, bootstrap_servers=servers, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
        deadline = time.time() + 30
        while not member.poll(timeout_ms=500) and time.time() < deadline:
            pass
        member.commit()
        member.close()
        deleted = a.delete_groups([group])
        a.close()
        # kafka-python 3 answers {group: "OK" or the error's name}; 2.x a list of (group, error).
        outcomes = dict(deleted) if not isinstance(deleted, dict) else deleted
        ok = outcomes.get(group) == "OK" or (outcomes.get(group) is None and group in outcomes)
        if not ok:
            raise RuntimeError(f"delete_groups: {deleted}")
        partitions = KafkaConsumer(bootstrap_servers=servers).partitions_for_topic(name)
        return f"{len(partitions or [])} partitions, retention.ms set, group deleted"

    topic_and_group_admin()



def secure_checks(bootstrap, protocol, ca, user, password):
    """Kafka's SSL or SASL_SSL security protocol against a cluster whose Kafka listeners speak
    TLS (the nodes' client TLS): metadata, topic creation, produce acks=all and consume back,
    a consumer group committing and a new member resuming, all over TLS (and SCRAM for
    SASL_SSL); and a client that speaks plaintext to the TLS port gets no answer."""
    import confluent_kafka
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    version = f"confluent-kafka {confluent_kafka.__version__} / librdkafka {confluent_kafka.libversion()[0]}"
    client = "confluent-kafka"
    settings = {"bootstrap.servers": bootstrap, "security.protocol": protocol, "ssl.ca.location": ca}
    if protocol == "SASL_SSL":
        settings.update({"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password})
    admin = AdminClient(settings)

    @check(client, version, f"{protocol}: metadata (brokers)")
    def metadata():
        cluster = admin.list_topics(timeout=20)
        if len(cluster.brokers) != 3:
            raise RuntimeError(f"{len(cluster.brokers)} brokers")
        return f"{len(cluster.brokers)} brokers"

    @check(client, version, f"{protocol}: create topic, produce acks=all, consume back")
    def produce_consume():
        name = fresh("tls")
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)], operation_timeout=30)[name].result(timeout=30)
        producer = Producer({**settings, "acks": "all"})
        values = [f"s{i}".encode() for i in range(100)]
        errors = []
        for value in values:
            producer.produce(name, value=value, partition=0, on_delivery=lambda e, m: errors.append(e) if e else None)
        remaining = producer.flush(30)
        if remaining or errors:
            raise RuntimeError(f"{remaining} undelivered, errors {errors[:3]}")
        got = consume_group(name, fresh("tls-g"), len(values))
        if got != values:
            raise RuntimeError(f"consumed {len(got)} of {len(values)}; first {got[:3]}")
        return f"{len(values)} records"

    def consume_group(name, group, count, commit_at=None):
        consumer = Consumer({**settings, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        consumer.subscribe([name])
        values = []

        def keep(message):
            values.append(message.value())
            if len(values) == commit_at:
                consumer.commit(message=message, asynchronous=False)

        enough = count if commit_at is None else min(count, commit_at)
        poll_until(consumer, lambda: len(values) >= enough, keep)
        consumer.close()
        return values

    @check(client, version, f"{protocol}: group commit, then a new consumer resumes from the committed offset")
    def group_resume():
        name = fresh("tls-r")
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)], operation_timeout=30)[name].result(timeout=30)
        producer = Producer({**settings, "acks": "all"})
        for i in range(60):
            producer.produce(name, value=f"r{i}".encode(), partition=0)
        if producer.flush(30):
            raise RuntimeError("undelivered")
        group = fresh("tls-rg")
        first = consume_group(name, group, 60, commit_at=40)
        resumed = consume_group(name, group, 20)
        if len(first) != 40 or resumed[:1] != [b"r40"]:
            raise RuntimeError(f"first run {len(first)}, resumed at {resumed[:1]}")
        return "resumed at 40"

    @check(client, version, f"{protocol}: a plaintext client on the TLS port gets no answer")
    def plaintext_refused():
        plain = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        try:
            plain.list_topics(timeout=5)
        except KafkaException as error:
            return f"refused ({error.args[0].name()})"
        raise RuntimeError("a plaintext client was answered on the TLS listener")

    metadata()
    produce_consume()
    group_resume()
    plaintext_refused()


def main():
    bootstrap = sys.argv[1]
    quick = "--quick" in sys.argv
    if "--security" in sys.argv:
        option = lambda name: sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None
        password = os.environ.get("KAFKA_COMPAT_PASSWORD")
        secure_checks(bootstrap, option("--security"), option("--ca"), option("--user"), password)
    else:
        confluent_checks(bootstrap, quick)
        if not quick:
            kafka_python_checks(bootstrap, quick)
    passed = sum(1 for r in RESULTS if r[0] == "PASS")
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
