"""The command line as a user runs it: real processes, real broker, clear errors."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.kafka.clients import broker_kind
from pipeline.ops.broker import kafka_available, make_broker

COMMANDS = ["broker", "topics", "publish", "worker", "run", "events", "demo", "teacher", "teacher provision"]


def newsevents(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(command):
    result = newsevents(*command.split(), "--help")
    assert result.returncode == 0 and "usage: newsevents" in result.stdout


def test_publish_reports_bad_paths_and_still_publishes_the_rest(kafka_bootstrap, contest_docs, tmp_path):
    topic = f"{uuid.uuid4().hex[:8]}.raw"
    for doc_id, raw in list(contest_docs.items())[:5]:
        (tmp_path / f"{doc_id}.html").write_bytes(raw)
    (tmp_path / "huge.html").write_bytes(b"<html>" + b"x" * 300_000 + b"</html>")
    result = newsevents("publish", str(tmp_path), str(tmp_path / "missing.tar.gz"), "--raw-topic", topic,
                        "--bootstrap-servers", kafka_bootstrap, "--max-html-bytes", "200000", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "published 5 documents" in result.stdout
    assert "missing.tar.gz: no such file or directory" in result.stderr
    assert "huge.html: 300013 bytes, over the 200000-byte document limit" in result.stderr


def test_bad_settings_and_inputs_are_clear_errors(tmp_path):
    result = newsevents("demo", "--input", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "no such file or directory" in result.stderr and "Traceback" not in result.stderr
    result = newsevents("topics", env={"NEWSEVENTS_PARTITIONS": "four", "PATH": ""})
    assert result.returncode == 2 and "NEWSEVENTS_PARTITIONS='four' is not a valid int" in result.stderr


def test_demo_accounts_for_every_document(contest_docs, tiny_model_dir, tmp_path):
    archive = tmp_path / "unseen.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        items = list(contest_docs.items())[250:330] + [("8000000000000000001", b""), ("8000000000000000002", b"\x00" * 64)]
        for doc_id, raw in items:
            info = tarfile.TarInfo(f"crawl/20191115/00/{doc_id}.html")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    result = newsevents("demo", "--input", str(archive), "--json", "--model-dir", str(tiny_model_dir),
                        "--threshold", "0.99999", "--centring", "none", "--stall-timeout", "120")
    assert result.returncode == 0, result.stderr[-3000:]
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert report["published"] == 82
    assert report["published"] == report["parsed"] + report["dead_lettered"]
    assert report["events_emitted"] == report["parsed"] == 80 and report["dead_lettered"] == 2
    assert report["docs_per_s"] > 0 and report["latency_p95_ms"] >= report["latency_p50_ms"] > 0
    assert Path(report["event_sizes_plot"]).stat().st_size > 1000


@pytest.mark.parametrize("engine", ["tansu", "kafka"])
def test_durable_broker_keeps_records_across_restarts(engine, tmp_path):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    if engine == "kafka" and not kafka_available():
        pytest.skip("Apache Kafka's jars are not fetched (deploy/setup.sh)")
    with make_broker(engine, durable_dir=tmp_path / "store") as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([NewTopic("kept", 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        for i in range(20):
            producer.send("kept", f"v{i}".encode())
        producer.flush()
        producer.close()
        port = broker.port
    with make_broker(engine, port=port, durable_dir=tmp_path / "store") as broker:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, consumer_timeout_ms=5000)
        consumer.assign([TopicPartition("kept", 0)])
        consumer.seek_to_beginning()
        assert [m.value for m in consumer] == [f"v{i}".encode() for i in range(20)]
        consumer.close()


def test_events_command_summarises_the_events_topic(kafka_bootstrap):
    from kafka import KafkaProducer

    from pipeline.config import Settings
    from pipeline.kafka.topics import ensure_topics
    from pipeline.records import EventAssignment

    run = uuid.uuid4().hex[:8]
    settings = Settings(bootstrap_servers=kafka_bootstrap, raw_topic=f"{run}.raw", docs_topic=f"{run}.docs",
                        vectors_topic=f"{run}.vectors", events_topic=f"{run}.events", dlq_topic=f"{run}.dlq", merges_topic=f"{run}.merges")
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for doc, event, title in [("1", "ev-a", "Earthquake in Chile"), ("2", "ev-a", "Chile quake: 7.1"),
                              ("3", "ev-b", "Budget passed"), ("1", "ev-a", "Earthquake in Chile")]:
        record = EventAssignment(doc_id=doc, event_id=event, model_version="m", similarity=1.0, linked_doc_id=doc,
                                 title=title)
        producer.send(settings.events_topic, key=doc.encode(), value=record.to_bytes())
    producer.flush()
    producer.close()
    common = ["--bootstrap-servers", kafka_bootstrap, "--events-topic", settings.events_topic, "--idle-timeout", "2"]
    text = newsevents("events", *common)
    assert text.returncode == 0, text.stderr
    assert "3 documents in 2 stories" in text.stdout  # the redelivered record for doc 1 is not counted twice
    assert text.stdout.index("ev-a  2 docs") < text.stdout.index("ev-b  1 docs")
    assert "Chile quake: 7.1" in text.stdout
    if broker_kind(settings) == "kafka":  # reads to the end offsets instead of waiting for the topic to go quiet
        started = time.monotonic()
        quick = newsevents("events", *common[:-1], "60")
        assert "3 documents in 2 stories" in quick.stdout and time.monotonic() - started < 30
    lines = newsevents("events", "--json", *common).stdout.strip().splitlines()
    assert sorted(orjson.loads(line)["doc_id"] for line in lines) == ["1", "1", "2", "3"]  # every record, raw


def test_teacher_label_errors_are_clear(tmp_path, tiny_model_dir):
    result = newsevents("teacher", "label", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "give INPUT paths or --from-topic TOPIC" in result.stderr
    result = newsevents("teacher", "label", str(tmp_path / "nope.tar.gz"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no such file or directory" in result.stderr
    result = newsevents("teacher", "label", str(tmp_path), "--out", str(tmp_path / "o"), "--teacher", str(tmp_path))
    assert result.returncode == 2 and "not 'e5', 'use' or a Hugging Face model folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_teacher_label_reads_the_docs_topic(kafka_bootstrap, tiny_model_dir, tmp_path):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from pipeline.records import Document
    from teacher.label import load_manifest

    topic = f"{uuid.uuid4().hex[:8]}.docs"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(30):
        producer.send(topic, key=str(i).encode(), value=Document(doc_id=str(i), title=f"title {i}", text="body").to_bytes())
    producer.flush()
    producer.close()
    result = newsevents("teacher", "label", "--from-topic", topic, "--bootstrap-servers", kafka_bootstrap,
                        "--out", str(tmp_path / "labels"), "--teacher", str(tiny_model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    assert load_manifest(tmp_path / "labels")["counts"]["labelled"] == 30
