"""The whole stream on a real broker: raw HTML in, one event record per document out, bad input dead-lettered."""

from __future__ import annotations

import time
from pathlib import Path
import uuid
from collections import Counter

import pytest

from pipeline.config import Settings
from pipeline.flow import STAGE_NAMES
from pipeline.kafka.publish import publish
from pipeline.kafka.reader import decode, iter_records, make_reader
from pipeline.kafka.topics import ensure_topics
from pipeline.ops.demo import Accounting
from pipeline.ops.supervise import Workers
from pipeline.records import DeadLetter, EventAssignment

MALFORMED = {
    "empty": b"",
    "whitespace": b"   \n  ",
    "binary-zeros": b"\x00" * 512,
    "binary-png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    "latin1-bytes": "<html><body><article><p>caf\xe9 cr\xe8me</p></article></body></html>".encode("latin-1"),
    "bad-utf8": b"<html><body><article><p>\xc3\x28\xa0\xa1</p></article></body></html>",
    "plain-text": b"this is not html at all, just words",
    "json": b'{"title": "not html"}',
    "no-article": b"<html><body><div>menu</div><div>footer</div></body></html>",
    "empty-article": b"<html><body><article>   </article></body></html>",
    "only-scripts": b"<html><body><article><script>alert(1)</script></article></body></html>",
    "deep-divs": b"<html><body><article>" + b"<div>" * 3000 + b"x" + b"</div>" * 3000 + b"</article></body></html>",
    "deep-spans": b"<html><body><article>" + b"<span>" * 3000 + b"x" + b"</article></body></html>",
    "truncated-head": b"<!DOCTYPE html><html><head><meta property=",
    "control-chars": b"<html>" + b"\x01\x02\x03\x04\x05\x06" * 400 + b"</html>",
    "svg": b"<svg xmlns='http://www.w3.org/2000/svg'><circle r='1'/></svg>",
    "empty-title-no-body": b"<html><head><meta property='og:title' content=' '/></head><body></body></html>",
    "comment-only": b"<!-- nothing here --><html></html>",
    "nul-in-html": b"<html><body><article><p>a\x00b</p></article></body></html>",
    "utf16": "<html><body><article><p>hello</p></article></body></html>".encode("utf-16"),
    "xml": b"<?xml version='1.0'?><rss><channel><item>x</item></channel></rss>",
}


@pytest.fixture
def stream_settings(any_bootstrap, tiny_model_dir, tmp_path) -> Settings:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=any_bootstrap, group_prefix=f"test-{run}", raw_topic=f"{run}.raw",
        docs_topic=f"{run}.docs", vectors_topic=f"{run}.vectors", events_topic=f"{run}.events", dlq_topic=f"{run}.dlq", merges_topic=f"{run}.merges",
        control_topic=f"{run}.control",  # no other test's promotion on news.control reaches these workers
        partitions=2, model_dir=str(tiny_model_dir), threshold=0.99999, embed_batch_size=32, embed_max_wait_s=0.2,
        home=str(tmp_path / "home"), centring="none",  # raw space: at 0.99999 only reposts join
    )
    ensure_topics(settings)
    return settings


def collect(settings: Settings, keys: list[str], workers: Workers, timeout_s: float = 240.0):
    """Read every output topic until each key is settled; returns the accounting and all raw outputs per key."""
    reader = make_reader(settings, [settings.docs_topic, settings.events_topic, settings.dlq_topic])
    books = Accounting.empty(keys)
    events_per_doc: Counter = Counter()
    letters_per_key: Counter = Counter()
    deadline = time.monotonic() + timeout_s

    def done() -> bool:
        assert not workers.dead(), f"a worker died: {workers.dead()}"
        assert time.monotonic() < deadline, f"only {len(books.settled)}/{len(keys)} settled in {timeout_s}s"
        return len(books.settled) == len(keys)

    for record in iter_records(reader, idle_timeout_s=None, stop=done):
        item = decode(record)
        if isinstance(item, EventAssignment):
            events_per_doc[item.doc_id] += 1
        elif isinstance(item, DeadLetter):
            letters_per_key[item.key] += 1
        books.add(record)
    # anything late would show up now
    for record in iter_records(reader, idle_timeout_s=3.0):
        item = decode(record)
        if isinstance(item, EventAssignment):
            events_per_doc[item.doc_id] += 1
        elif isinstance(item, DeadLetter):
            letters_per_key[item.key] += 1
    reader.close()
    return books, events_per_doc, letters_per_key


def test_stream_accounts_for_every_document(stream_settings, contest_docs, tmp_path):
    good = dict(list(contest_docs.items())[:220])
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for doc_id, raw in good.items():
        (crawl / f"{doc_id}.html").write_bytes(raw)
    reposts = {}
    for n, (doc_id, raw) in enumerate(list(good.items())[:10]):
        repost_id = str(9_000_000_000_000_000_000 + n)  # same article republished under another id
        (crawl / f"{repost_id}.html").write_bytes(raw)
        reposts[repost_id] = doc_id
    bad = {}
    for n, (name, raw) in enumerate(MALFORMED.items()):
        bad_id = str(8_000_000_000_000_000_000 + n)
        (crawl / f"{bad_id}.html").write_bytes(raw)
        bad[bad_id] = name

    with Workers(stream_settings, list(STAGE_NAMES), log_dir=tmp_path / "logs") as workers:
        summary = publish(stream_settings, [crawl], progress=False)
        assert summary.published == len(good) + len(reposts) + len(bad) and not summary.skipped
        books, events_per_doc, letters_per_key = collect(stream_settings, summary.keys, workers)

    good_ids = set(good) | set(reposts)
    assert {doc for doc, n in events_per_doc.items() if n == 1} == good_ids, "one event record per good document"
    assert all(events_per_doc[d] == 1 for d in good_ids)
    assert set(letters_per_key) == set(bad), "one dead letter per bad document, none for good ones"
    assert all(n == 1 for n in letters_per_key.values())
    for bad_id, name in bad.items():
        letter = books.dead[bad_id]
        assert letter.stage == "parse" and letter.reason and letter.detail, name
        assert letter.value == MALFORMED[name], "the dead letter carries the original bytes"
    for repost_id, original in reposts.items():
        assert books.book.by_doc[repost_id].event_id == books.book.by_doc[original].event_id
        assert books.book.by_doc[repost_id].similarity > 0.9999
    assert books.book.conflicts == []
    # the tiny random model still separates most distinct articles at this threshold
    assert len({a.event_id for a in books.book.by_doc.values()}) > 50
    one = books.book.by_doc[next(iter(good))]
    assert one.model_version.startswith("tiny-bert@") and one.ingested_at_ms and one.assigned_at_ms >= one.ingested_at_ms


def test_promoting_a_model_mid_stream_loses_and_double_assigns_nothing(kafka_bootstrap, tiny_model_dir,
                                                                        contest_docs, tmp_path):
    """Workers start on the tiny BERT; a tiny student is promoted while documents flow. Every document gets
    exactly one event id, documents after the switch carry the student's version, and nothing is lost."""
    import subprocess
    import sys

    from pipeline.flow.parse import parse_html
    from tiny_model import build_tiny_student

    run = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, group_prefix=f"test-{run}", raw_topic=f"{run}.raw",
        docs_topic=f"{run}.docs", vectors_topic=f"{run}.vectors", events_topic=f"{run}.events",
        dlq_topic=f"{run}.dlq", merges_topic=f"{run}.merges", control_topic=f"{run}.control", partitions=2, model_dir=str(tiny_model_dir),
        embed_batch_size=16, embed_max_wait_s=0.2, home=str(tmp_path / "home"))
    ensure_topics(settings)
    items = list(contest_docs.items())[:240]
    texts = [parse_html(raw, doc_id).title for doc_id, raw in items]
    student = build_tiny_student(tmp_path / "student", tiny_model_dir, texts)
    halves = []
    for n, part in enumerate((items[:120], items[120:])):
        crawl = tmp_path / f"crawl{n}"
        crawl.mkdir()
        for doc_id, raw in part:
            (crawl / f"{doc_id}.html").write_bytes(raw)
        halves.append(crawl)

    with Workers(settings, list(STAGE_NAMES), log_dir=tmp_path / "logs") as workers:
        first = publish(settings, [halves[0]], progress=False, rate=40.0)
        reader = make_reader(settings, [settings.events_topic])
        seen: set[str] = set()
        for record in iter_records(reader, idle_timeout_s=None, stop=lambda: len(seen) >= 60 or bool(workers.dead())):
            seen.add(record.key.decode())
        reader.close()
        # the switch lands while the first half is still flowing (documents 60..120 are in flight)
        promote = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "students", "promote", str(student), "--home", settings.home,
             "--bootstrap-servers", kafka_bootstrap, "--control-topic", settings.control_topic],
            capture_output=True, text=True, timeout=120)
        assert promote.returncode == 0, promote.stderr[-2000:]
        second = publish(settings, [halves[1]], progress=False, rate=40.0)
        books, events_per_doc, _ = collect(settings, first.keys + second.keys, workers)

    keys = set(first.keys) | set(second.keys)
    assert set(books.book.by_doc) == keys, "every document got an event"
    assert books.book.conflicts == [], "no document got two different event ids"
    versions = Counter(a.model_version for a in books.book.by_doc.values())
    assert any(v.startswith("tiny-bert@") for v in versions)
    assert any(v.startswith("tiny-student-cnn@") for v in versions), versions
    assert all(books.book.by_doc[k].model_version.startswith("tiny-student") for k in second.keys[-20:])
    assert "promoted" in promote.stdout and (Path(settings.home) / "registry" / "student" / "v1").exists()
