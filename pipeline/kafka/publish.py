"""``newsevents publish``: documents from disk → ``news.raw`` with an idempotent producer."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.config import Settings
from pipeline.flow.sources import SourceProblem, SourceRecord, iter_sources
from pipeline.kafka import clients
from pipeline.records import HEADER_CRAWL, HEADER_FORMAT, HEADER_SOURCE


@dataclass
class PublishSummary:
    published: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason → count
    problems: list[str] = field(default_factory=list)  # "origin: reason", for the user to read
    keys: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"published {self.published} documents in {self.seconds:.1f}s"]
        if self.skipped:
            out.append(f"skipped {sum(self.skipped.values())}: " + ", ".join(f"{n} {r}" for r, n in self.skipped.most_common()))
        return out


def make_producer(settings: Settings):
    return clients.publish_producer(settings)


def publish(settings: Settings, paths: list[str | Path], *, crawl: str = "", limit: int | None = None,
            progress: bool = True, producer=None, rate: float | None = None, skip: int = 0) -> PublishSummary:
    """Publish every readable document; report what was skipped and why. Duplicate keys in one run are skipped.

    ``rate`` paces publishing to that many documents per second (a crawl replayed at a realistic speed);
    ``skip`` passes over the first documents (a benchmark's later rounds take fresh ones).
    """
    summary = PublishSummary()
    own_producer = producer is None
    producer = producer or make_producer(settings)
    seen: set[str] = set()
    started = time.monotonic()
    failures: list[str] = []

    unstored: list[tuple[str, bytes, list]] = []  # acknowledged at offset -1: see send_stored in pipeline.kafka.worker

    def on_error(key: str):
        return lambda err: failures.append(f"{key}: {err}")

    def on_success(key: str, value: bytes, headers: list):
        return lambda meta: unstored.append((key, value, headers)) if meta.offset < 0 else None

    bar = tqdm(desc="publish", unit="doc", disable=not progress, total=limit)
    try:
        for item in iter_sources(paths):
            if limit is not None and summary.published >= limit:
                break
            if isinstance(item, SourceProblem):
                summary.skipped[item.reason.split(" (")[0]] += 1
                summary.problems.append(f"{item.origin}: {item.reason}")
                continue
            assert isinstance(item, SourceRecord)
            if skip > 0:
                skip -= 1
                continue
            if len(item.value) > settings.max_html_bytes:
                reason = f"over the {settings.max_html_bytes}-byte document limit"
                summary.skipped[reason] += 1
                summary.problems.append(f"{item.origin}: {len(item.value)} bytes, {reason} (max_html_bytes)")
                continue
            if item.key in seen:
                summary.skipped["duplicate id in this run"] += 1
                summary.problems.append(f"{item.origin}: id {item.key} already published in this run")
                continue
            seen.add(item.key)
            headers = [(HEADER_FORMAT, item.format.encode()), (HEADER_SOURCE, item.origin.encode()[-500:])]
            if crawl:
                headers.append((HEADER_CRAWL, crawl.encode()))
            producer.send(settings.raw_topic, key=item.key.encode(), value=item.value, headers=headers
                          ).add_callback(on_success(item.key, item.value, headers)).add_errback(on_error(item.key))
            summary.published += 1
            summary.keys.append(item.key)
            bar.update(1)
            if rate:
                ahead = started + summary.published / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
        for _attempt in range(10):
            if not unstored:
                break
            again, unstored[:] = list(unstored), []
            for key, value, headers in again:
                producer.send(settings.raw_topic, key=key.encode(), value=value, headers=headers
                              ).add_callback(on_success(key, value, headers)).add_errback(on_error(key))
            producer.flush()
        failures += [f"{key}: acknowledged at offset -1, not stored" for key, _, _ in unstored]
    finally:
        bar.close()
        if own_producer:
            producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} documents were not acknowledged by the broker, e.g. {failures[:3]}")
    summary.seconds = time.monotonic() - started
    return summary
