"""Fault tests on Apache Kafka (tansu without its jars): kill -9 of each stage, a broker restart, hostile input,
SIGTERM, overload.

The same harness as ``newsevents soak`` (pipeline/soak.py), shortened to fit CI.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter

from kafka import KafkaProducer

from pipeline.config import Settings
from pipeline.flow import STAGE_NAMES
from pipeline.kafka.reader import iter_records, make_reader
from pipeline.kafka.topics import ensure_topics
from pipeline.ops.backpressure import run_backpressure
from pipeline.ops.broker import kafka_available
from pipeline.ops.fuzz import hostile_inputs
from pipeline.ops.soak import SoakPlan, run_soak
from pipeline.ops.supervise import Workers
from pipeline.records import DeadLetter, Document

# In the language-centred space the tiny random model's documents spread out: at 0.3 the clusterer puts
# documents into events (about 200 for 1,000) and merges some (about 20), so a re-decided document or merge
# would show up as a conflict (a singleton-only clustering would hide it: a document founding its own event
# twice gets the same id twice).
THRESHOLD = 0.3


def _settings(kafka_bootstrap: str, tiny_model_dir, tmp_path, **changes) -> Settings:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, group_prefix=f"test-{run}", raw_topic=f"{run}.raw",
        docs_topic=f"{run}.docs", vectors_topic=f"{run}.vectors", events_topic=f"{run}.events",
        dlq_topic=f"{run}.dlq", merges_topic=f"{run}.merges", control_topic=f"{run}.control", partitions=2, model_dir=str(tiny_model_dir),
        threshold=THRESHOLD, home=str(tmp_path / "home"), cluster_state_dir=str(tmp_path / "cluster-state"),
        **changes)
    return settings


def test_kill_9_of_every_stage_and_a_broker_restart_lose_nothing_and_change_no_event(tiny_model_dir, contest_tar,
                                                                                     tmp_path):
    plan = SoakPlan(documents=1000, bad_inputs=300, rate=50.0, rounds=1, down_s=1.0, stall_timeout_s=120.0,
                    broker="kafka" if kafka_available() else "tansu")
    settings = _settings("unused", tiny_model_dir, tmp_path)
    report = run_soak(settings, plan, [str(contest_tar)], tmp_path / "soak", progress=False)
    print("\n".join(report.lines()))
    assert report.kills == Counter(parse=1, embed=1, cluster=1) and report.broker_restarts == 1
    assert report.documents_with_event + report.dead_lettered == 1300
    assert report.lost == [] and report.conflicting == []
    assert report.events < report.documents_with_event / 2  # documents were merged into events
    assert report.merges > 0 and report.merge_conflicts == []  # and events into stories
    assert report.differs_from_uninterrupted == []  # the same ids and aliases as a run without faults
    assert report.unexpected_exits == Counter()


def test_ten_thousand_hostile_inputs_through_the_parse_worker(kafka_bootstrap, tiny_model_dir, contest_docs,
                                                              tmp_path):
    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path)
    ensure_topics(settings)
    inputs = list(hostile_inputs(10_000, seed=7, real_pages=list(contest_docs.values())[:50]))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20,
                             max_request_size=settings.max_message_bytes + 64 * 1024)
    for item in inputs:
        producer.send(settings.raw_topic, key=item.key.encode(), value=item.value, headers=item.headers)
    producer.flush()
    producer.close()
    keys = {item.key for item in inputs}
    outcome: dict[str, list[str]] = {}
    with Workers(settings, ["parse"], log_dir=tmp_path / "logs") as workers:
        reader = make_reader(settings, [settings.docs_topic, settings.dlq_topic])
        deadline = time.monotonic() + 300

        def done() -> bool:
            assert not workers.dead(), f"the parse worker died: {workers.dead()}"
            assert time.monotonic() < deadline, f"{len(outcome)}/{len(keys)} accounted for"
            return len(outcome) == len(keys)

        for record in iter_records(reader, idle_timeout_s=None, stop=done):
            key = record.key.decode()
            if record.topic == settings.docs_topic:
                outcome.setdefault(key, []).append("doc:" + Document.from_bytes(record.value).doc_id)
            else:
                letter = DeadLetter.from_bytes(record.value)
                assert letter.reason and letter.detail, letter
                outcome.setdefault(key, []).append(f"dlq:{letter.reason}")
        reader.close()
    assert set(outcome) == keys
    assert all(len(v) == 1 for v in outcome.values())
    reasons = Counter(v[0].split(":")[1] if v[0].startswith("dlq") else "parsed" for v in outcome.values())
    print(reasons)
    assert "internal-error" not in reasons  # a bug in parsing would show up here, not as a crash
    assert {"binary", "not-utf8", "not-html", "tag-soup", "too-large", "bad-json", "parsed"} <= set(reasons)


def test_sigterm_finishes_the_batch_flushes_and_commits(kafka_bootstrap, tiny_model_dir, contest_docs, tmp_path):
    from pipeline.kafka.publish import publish
    from pipeline.ops.demo import Accounting

    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path, embed_batch_size=16)
    ensure_topics(settings)
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for doc_id, raw in list(contest_docs.items())[:300]:
        (crawl / f"{doc_id}.html").write_bytes(raw)
    with Workers(settings, list(STAGE_NAMES), log_dir=tmp_path / "logs") as workers:
        summary = publish(settings, [crawl], progress=False, rate=30.0, limit=150)
        embed = workers.processes["embed"]
        embed.send_signal(signal.SIGTERM)
        assert embed.wait(30) == 0  # a clean exit, not a kill by the timeout
        workers.start_one("embed")
        summary.keys += publish(settings, [crawl], progress=False, skip=150).keys
        books = Accounting.empty(summary.keys)
        reader = make_reader(settings, [settings.events_topic, settings.dlq_topic])
        deadline = time.monotonic() + 180
        for record in iter_records(reader, idle_timeout_s=None,
                                   stop=lambda: len(books.settled) == 300 or time.monotonic() > deadline):
            books.add(record)
        reader.close()
        vectors = Counter(r.key for r in iter_records(make_reader(settings, [settings.vectors_topic]), 3.0))
    assert books.settled == books.published and books.book.conflicts == []
    assert max(vectors.values()) == 1  # the stopped worker committed what it had embedded: nothing embedded twice


def test_an_overloaded_embed_worker_keeps_its_memory_bounded_and_catches_up(kafka_bootstrap, tiny_model_dir,
                                                                            contest_tar, tmp_path):
    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path)
    report = run_backpressure(settings, [str(contest_tar)], tmp_path / "logs", overload=10.0, overload_s=3.0,
                              recovery_s=90.0, recovery_load=0.25, backlog=500)
    print("\n".join(report.lines()))
    assert report.offered_factor >= 5.0, "the test did not manage to overload the worker"
    assert report.peak_lag > 3 * report.sustainable_rate  # a real backlog built up
    assert report.rss_peak_mb - report.rss_baseline_mb < 400
    assert report.final_lag == 0 and report.recovery_s is not None
