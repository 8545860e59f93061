"""The two brokers: Apache Kafka as `newsevents broker --engine kafka` runs it, and which one the clients detect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.kafka.clients import broker_kind, broker_profile
from pipeline.ops.broker import free_port, kafka_available

needs_kafka = pytest.mark.skipif(not kafka_available(), reason="Apache Kafka's jars are not fetched (deploy/setup.sh)")


def _jvms_of(folder: Path) -> list[int]:
    """PIDs of the JVMs running the broker whose storage is ``folder``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace") if entry.name.isdigit() else ""
            if "kafka.Kafka" in cmdline and str(folder) in cmdline:
                if (entry / "stat").read_text().split()[2] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _start(folder: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "broker", "--engine", "kafka", "--port", str(port),
                             "--durable", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("export KAFKA_BOOTSTRAP_SERVERS="):
            return proc
    raise AssertionError(f"the broker command exited with {proc.wait()} before it was ready")


def test_the_broker_kind_is_detected(kafka_bootstrap, tansu_bootstrap):
    assert broker_kind(Settings(bootstrap_servers=tansu_bootstrap)) == "tansu"
    tansu = broker_profile(Settings(bootstrap_servers=tansu_bootstrap))
    assert (tansu.session_timeout_s, tansu.idempotent, tansu.end_offsets) == (6.0, False, False)
    if kafka_available() and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        assert broker_kind(Settings(bootstrap_servers=kafka_bootstrap)) == "kafka"
        kafka = broker_profile(Settings(bootstrap_servers=kafka_bootstrap, session_timeout_s=10))
        assert (kafka.session_timeout_s, kafka.heartbeat_interval_s, kafka.idempotent, kafka.end_offsets) == (
            10, 3.0, True, True)


@needs_kafka
def test_faust_producers_are_idempotent_on_kafka_only(kafka_bootstrap, tansu_bootstrap, tmp_path):
    from pipeline.kafka.worker import make_app

    for servers, idempotent in ((kafka_bootstrap, True), (tansu_bootstrap, False)):
        settings = Settings(bootstrap_servers=servers, home=str(tmp_path))
        app = make_app(settings, "parse")
        extra = app.producer_transport.create_producer()._settings_extra()
        assert extra.get("enable_idempotence", False) is idempotent, servers


@needs_kafka
def test_kafka_broker_command_dies_with_its_parent_and_keeps_its_storage(tmp_path):
    from kafka import KafkaAdminClient

    folder, port = tmp_path / "kafka", free_port()
    proc = _start(folder, port)
    try:
        assert len(_jvms_of(folder)) == 1
    finally:
        proc.kill()  # SIGKILL: the command cannot stop its JVM itself
        proc.wait()
    deadline = time.monotonic() + 15
    while _jvms_of(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _jvms_of(folder) == [], "the JVM outlived `newsevents broker`"
    proc = _start(folder, port)  # durable: the topics it created are still there
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        assert {"news.raw", "news.events", "news.control"} <= set(admin.list_topics())
        admin.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0 and _jvms_of(folder) == []


def test_transactions_hide_aborted_records_on_kafka(kafka_bootstrap):
    """What tansu gets wrong (aiokafka's InitProducerId fails; read_committed shows aborted records) works on
    Kafka, with kafka-python's and aiokafka's transactional producers alike."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaProducer
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    if broker_kind(Settings(bootstrap_servers=kafka_bootstrap)) != "kafka":
        pytest.skip("transactions need Apache Kafka (tansu shows aborted records to read_committed readers)")
    topic = f"tx-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-kp")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"aborted-1")
    producer.flush()  # on the log, then aborted
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, b"committed-1")
    producer.commit_transaction()
    producer.close()

    async def aiokafka_transactions() -> None:
        tx = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-aio")
        await tx.start()
        try:
            await tx.begin_transaction()
            await tx.send_and_wait(topic, b"aborted-2")
            await tx.abort_transaction()
            async with tx.transaction():
                await tx.send_and_wait(topic, b"committed-2")
        finally:
            await tx.stop()

    asyncio.run(aiokafka_transactions())

    def read(isolation: str) -> list[bytes]:
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level=isolation,
                                 consumer_timeout_ms=3000, enable_auto_commit=False)
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        values = [m.value for m in consumer]
        consumer.close()
        return values

    assert read("read_committed") == [b"committed-1", b"committed-2"]
    assert read("read_uncommitted") == [b"aborted-1", b"committed-1", b"aborted-2", b"committed-2"]
