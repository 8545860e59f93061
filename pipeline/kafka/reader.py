"""Reading the output side: ``news.events`` (and ``news.dlq``) as records, and events as readable summaries."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator

from pipeline.config import Settings
from pipeline.kafka import clients
from pipeline.records import DeadLetter, Document, EventAssignment


def make_reader(settings: Settings, topics: list[str], from_beginning: bool = True):
    """A group-less consumer assigned every partition of ``topics`` (``pipeline.kafka.clients.reader``)."""
    return clients.reader(settings, topics, from_beginning)


def iter_records(consumer, idle_timeout_s: float | None, stop: Callable[[], bool] = lambda: False) -> Iterator:
    """Yield consumer records until ``stop()`` or ``idle_timeout_s`` without a record (None: forever)."""
    last = time.monotonic()
    while not stop():
        polled = consumer.poll(timeout_ms=200, max_records=2000)
        if polled:
            for records in polled.values():
                yield from records
            last = time.monotonic()  # after the caller is done with them: a slow caller is not an idle topic
        elif idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
            return


@dataclass
class EventSummary:
    event_id: str
    doc_ids: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    langs: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def size(self) -> int:
        return len(self.doc_ids)

    def to_dict(self, max_titles: int = 5) -> dict:
        return {"event_id": self.event_id, "size": self.size, "langs": dict(self.langs),
                "titles": self.titles[:max_titles], "doc_ids": self.doc_ids}


class EventBook:
    """The first event record per document (a redelivered duplicate is ignored, a different id is a conflict)."""

    def __init__(self) -> None:
        self.by_doc: dict[str, EventAssignment] = {}
        self.conflicts: list[tuple[str, str, str]] = []  # (doc, first event, other event): must stay empty
        self.records = 0  # event records read, duplicates included

    def add(self, assignment: EventAssignment) -> None:
        self.records += 1
        previous = self.by_doc.get(assignment.doc_id)
        if previous is not None and previous.event_id != assignment.event_id:
            self.conflicts.append((assignment.doc_id, previous.event_id, assignment.event_id))
        if previous is None:
            self.by_doc[assignment.doc_id] = assignment

    def events(self) -> list[EventSummary]:
        grouped: dict[str, EventSummary] = {}
        for a in self.by_doc.values():
            summary = grouped.setdefault(a.event_id, EventSummary(a.event_id))
            summary.doc_ids.append(a.doc_id)
            summary.titles.append(a.title)
            summary.langs[a.lang] += 1
        return sorted(grouped.values(), key=lambda s: (-s.size, s.event_id))


def format_event(summary: EventSummary, max_titles: int = 3) -> str:
    langs = ", ".join(f"{k}:{v}" for k, v in sorted(summary.langs.items(), key=lambda kv: -kv[1]))
    lines = [f"{summary.event_id}  {summary.size} docs  [{langs}]"]
    lines += [f"    · {title[:110]}" for title in summary.titles[:max_titles]]
    return "\n".join(lines)


def decode(record) -> EventAssignment | DeadLetter | Document | None:
    """The record of any output topic, by the shape of its value (None for what is not ours)."""
    try:
        raw = record.value
        import orjson

        obj = orjson.loads(raw)
        if "event_id" in obj:
            return EventAssignment.from_dict(obj)
        if "stage" in obj and "reason" in obj:
            return DeadLetter.from_dict(obj)
        if "doc_id" in obj and "title" in obj:
            return Document.from_dict(obj)
    except Exception:
        return None
    return None

def iter_topic_documents(bootstrap_servers: str, topic: str, idle_timeout_s: float = 5.0) -> Iterator[Document]:
    """Every parsed document on a ``news.docs``-like topic, read from the beginning until it goes quiet."""
    reader = make_reader(Settings(bootstrap_servers=bootstrap_servers), [topic])
    try:
        for record in iter_records(reader, idle_timeout_s=idle_timeout_s):
            try:
                yield Document.from_bytes(record.value)
            except ValueError:
                continue
    finally:
        reader.close()
