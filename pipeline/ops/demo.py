"""``newsevents demo``: the whole stream on an embedded broker, from raw HTML to event ids, accounted for.

Starts the broker, creates the topics, starts one worker per stage, publishes the input, waits until every
published document has an event record or a dead-letter record, prints the largest events and the
throughput and latency it measured, and stops everything it started.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import Settings
from pipeline.flow import STAGE_NAMES
from pipeline.kafka.publish import publish
from pipeline.kafka.reader import EventBook, decode, format_event, iter_records, make_reader
from pipeline.kafka.topics import ensure_topics
from pipeline.models import served_model
from pipeline.ops.broker import EmbeddedBroker
from pipeline.ops.supervise import Workers
from pipeline.plots import pyplot, save_figure
from pipeline.records import DeadLetter, Document, EventAssignment, EventMerge

REPO_ROOT = Path(__file__).resolve().parents[2]  # pipeline/ops/demo.py → the checkout
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "data" / "contest_html" / "tgcontest_2019-11-08_2019-11-15.tar.gz"


class DemoError(RuntimeError):
    pass


@dataclass
class Accounting:
    """What came out for the published keys: parsed documents, event records, dead letters."""

    published: set[str]
    parsed: set[str]
    dead: dict[str, DeadLetter]
    book: EventBook

    @classmethod
    def empty(cls, keys: list[str]) -> "Accounting":
        return cls(set(keys), set(), {}, EventBook())

    def add(self, record) -> bool:
        """Returns True when the record settled a published document."""
        item = decode(record)
        if isinstance(item, Document):
            self.parsed.add(item.doc_id)
        elif isinstance(item, EventMerge):
            self.book.add_merge(item)
        elif isinstance(item, EventAssignment):
            fresh = item.doc_id not in self.book.by_doc
            self.book.add(item)
            return fresh and item.doc_id in self.published
        elif isinstance(item, DeadLetter) and item.key is not None:
            fresh = item.key not in self.dead and item.key not in self.book.by_doc
            self.dead.setdefault(item.key, item)
            return fresh and item.key in self.published
        return False

    @property
    def settled(self) -> set[str]:
        return (set(self.book.by_doc) | set(self.dead)) & self.published


def default_input() -> Path:
    if not DEFAULT_INPUT.exists():
        raise DemoError(
            f"no input given and the contest sample is not at {DEFAULT_INPUT}. Point the demo at a crawl: "
            "`newsevents demo --input DIR_OR_TAR_GZ` (contest HTML files named <id>.html, or JSONL documents)")
    return DEFAULT_INPUT


def run_demo(settings: Settings, inputs: list[str] | None = None, limit: int | None = None,
             stall_timeout_s: float = 300.0, progress: bool = True, log_dir: str | Path | None = None,
             top: int = 10, rate: float | None = None, skip: int = 0, warm_up: bool = True) -> dict:
    inputs = inputs or [str(default_input())]
    for path in inputs:
        if not Path(path).exists():
            raise DemoError(f"--input {path}: no such file or directory")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="newsevents-demo-"))
    served_model(settings)  # before the workers start, so they do not race to provision
    if not settings.cluster_state_dir:  # the demo's broker is new each run: so is the clusterer's state
        settings = settings.replace(cluster_state_dir=str(log_dir / "cluster-state"))
    with EmbeddedBroker(log_dir=log_dir) as broker:
        settings = settings.replace(bootstrap_servers=broker.bootstrap_servers)
        ensure_topics(settings)
        with Workers(settings, list(STAGE_NAMES), log_dir=log_dir) as workers:
            reader = make_reader(settings, [settings.docs_topic, settings.vectors_topic, settings.events_topic,
                                            settings.merges_topic, settings.dlq_topic])
            if warm_up:
                warm_up_pipeline(settings, reader, workers, stall_timeout_s)
            started = time.time()
            summary = publish(settings, inputs, limit=limit, progress=progress, rate=rate, skip=skip)
            last_seen = {"publish": time.time()}  # when each stage's last output appeared
            if summary.published == 0:
                raise DemoError("nothing was published: " + "; ".join(summary.problems[:5]))
            books = Accounting.empty(summary.keys)
            bar = tqdm(total=summary.published, desc="events", unit="doc", disable=not progress)
            last_progress = time.monotonic()

            def finished() -> bool:
                dead = workers.dead()
                if dead:
                    raise DemoError(f"worker(s) exited: {dead}; logs in {log_dir}")
                if time.monotonic() - last_progress > stall_timeout_s:
                    raise DemoError(f"no document settled for {stall_timeout_s:.0f}s; logs in {log_dir}")
                return len(books.settled) >= summary.published

            stage_of = {settings.docs_topic: "parse", settings.vectors_topic: "embed",
                        settings.events_topic: "cluster"}
            for record in iter_records(reader, idle_timeout_s=None, stop=finished):
                if record.topic in stage_of:
                    last_seen[stage_of[record.topic]] = time.time()
                if record.topic == settings.vectors_topic:
                    continue  # only timed: documents settle on events and dead letters
                if books.add(record):
                    bar.update(1)
                    last_progress = time.monotonic()
            bar.close()
            reader.close()
            finished_at = time.time()
    report = _report(summary, books, started, finished_at, top, log_dir, rate)
    return {**report, **stage_timeline(last_seen, started)}


def stage_timeline(last_seen: dict[str, float], started: float) -> dict:
    """When each stage put out its last record, from the first publish; the stage that adds the most time after
    the one before it is the one that bounds the run (everything was published at once, or at ``rate``)."""
    order = [s for s in ("publish", *STAGE_NAMES) if s in last_seen]
    done = {s: round(last_seen[s] - started, 2) for s in order}
    added = {s: round(done[s] - (done[order[i - 1]] if i else 0.0), 2) for i, s in enumerate(order)}
    return {"stage_done_s": done, "stage_added_s": added, "bound_by": max(added, key=added.get) if added else None}


WARM_UP_HTML = (b'<html><head><meta property="og:title" content="newsevents warm-up"/></head><body><article>'
                b'<p>A document that goes through every stage before the measured ones.</p></article></body></html>')


def warm_up_pipeline(settings: Settings, reader, workers: Workers, timeout_s: float) -> None:
    """One document end to end before the clock starts: the measured latency is the pipeline's, not the time
    workers take to load the model and join their consumer groups."""
    from pipeline.kafka.publish import make_producer

    key = f"warm-up-{uuid.uuid4().hex}"
    producer = make_producer(settings)
    producer.send(settings.raw_topic, key=key.encode(), value=WARM_UP_HTML)
    producer.flush()
    producer.close()
    deadline = time.monotonic() + timeout_s

    def ready() -> bool:
        if workers.dead():
            raise DemoError(f"worker(s) exited during warm-up: {workers.dead()}")
        if time.monotonic() > deadline:
            raise DemoError(f"the warm-up document got no event within {timeout_s:.0f}s")
        return False

    for record in iter_records(reader, idle_timeout_s=None, stop=ready):
        item = decode(record)
        if isinstance(item, (EventAssignment, DeadLetter)) and (getattr(item, "doc_id", None) or item.key) == key:
            return


def plot_event_sizes(sizes: list[int], path: Path, title: str) -> Path:
    """Histogram of event sizes (log-scaled counts): the shape people check first after a run."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    bins = np.arange(1, max(sizes or [1]) + 2) - 0.5
    ax.hist(sizes, bins=bins, color="#3b6ea8")
    ax.set_yscale("log")
    ax.set_xlabel("documents per event")
    ax.set_ylabel("events")
    ax.set_title(title)
    return save_figure(fig, path)


def _report(summary, books: Accounting, started: float, finished_at: float, top: int, log_dir: Path,
            rate: float | None) -> dict:
    assignments = [a for k, a in books.book.by_doc.items() if k in books.published]
    latencies = np.array([a.assigned_at_ms - a.ingested_at_ms for a in assignments if a.ingested_at_ms] or [0.0])
    elapsed = max(finished_at - started, 1e-9)
    events = books.book.events()
    reasons: dict[str, int] = {}
    for key, letter in books.dead.items():
        if key in books.published:
            reasons[f"{letter.stage}:{letter.reason}"] = reasons.get(f"{letter.stage}:{letter.reason}", 0) + 1
    dead_at_parse = {k for k, letter in books.dead.items() if letter.stage == "parse"} & books.published
    plot = plot_event_sizes([e.size for e in events], log_dir / "event_sizes.png",
                            f"{len(assignments)} documents in {len(events)} stories")
    return {
        "published": summary.published,
        "skipped_at_publish": sum(summary.skipped.values()),
        "parsed": len(books.parsed & books.published),
        "dead_lettered": len(dead_at_parse),  # so published == parsed + dead_lettered
        "dead_lettered_after_parse": len((set(books.dead) & books.published) - dead_at_parse),
        "dead_letter_reasons": reasons,
        "events_emitted": len(assignments),
        "events": len(events),  # stories: events that merged count once
        "merges": len(books.book.merged_into),
        "conflicting_event_ids": len(books.book.conflicts),
        "docs_per_s": round(summary.published / elapsed, 2),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
        "seconds": round(elapsed, 1),
        "offered_rate": rate,
        "model_version": assignments[0].model_version if assignments else None,
        "largest_events": [e.to_dict() for e in events[:top]],
        "logs": str(log_dir),
        "event_sizes_plot": str(plot),
        "_events_text": [format_event(e) for e in events[:top]],
    }


def accounted_for(report: dict) -> bool:
    """Every published document parsed or dead-lettered, every parsed one an event or a later dead letter, and
    no document with two event ids: the demo's verdict."""
    return (report["published"] == report["parsed"] + report["dead_lettered"]
            and report["events_emitted"] + report["dead_lettered_after_parse"] == report["parsed"]
            and report["conflicting_event_ids"] == 0)
