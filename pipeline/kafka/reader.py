"""Reading the output side: ``news.events`` (and ``news.dlq``) as records, and events as readable summaries."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator

from pipeline.config import Settings
from pipeline.evaluate import resolve_event
from pipeline.kafka import clients
from pipeline.records import DeadLetter, Document, EventAssignment, EventMerge


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


def iter_to_end(settings: Settings, consumer, idle_timeout_s: float) -> Iterator:
    """Yield what the topics hold now: on Kafka up to the end offsets taken at the start (no idle wait); on tansu,
    whose end offsets are wrong, until ``idle_timeout_s`` without a record."""
    if not clients.broker_profile(settings).end_offsets:
        yield from iter_records(consumer, idle_timeout_s)
        return
    ends = {tp: end for tp, end in consumer.end_offsets(list(consumer.assignment())).items() if end > 0}

    def reached() -> bool:
        return all(consumer.position(tp) >= end for tp, end in ends.items())

    yield from iter_records(consumer, idle_timeout_s=None, stop=reached)


@dataclass
class EventSummary:
    event_id: str  # the story's surviving id
    doc_ids: list[str] = field(default_factory=list)
    merged_ids: set[str] = field(default_factory=set)  # ids its documents were given that merged into it
    titles: list[str] = field(default_factory=list)
    langs: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def size(self) -> int:
        return len(self.doc_ids)

    def to_dict(self, max_titles: int = 5) -> dict:
        return {"event_id": self.event_id, "size": self.size, "langs": dict(self.langs),
                "titles": self.titles[:max_titles], "doc_ids": self.doc_ids, "merged_ids": sorted(self.merged_ids)}


class EventBook:
    """The first event record per document (a redelivered duplicate is ignored, a different id is a conflict),
    and the merges of ``news.event-merges``, through which any event id resolves to its story."""

    def __init__(self) -> None:
        self.by_doc: dict[str, EventAssignment] = {}
        self.conflicts: list[tuple[str, str, str]] = []  # (doc, first event, other event): must stay empty
        self.records = 0  # event records read, duplicates included
        self.merged_into: dict[str, str] = {}  # absorbed id → the id it merged into
        self.merge_conflicts: list[tuple[str, str, str]] = []  # (absorbed, into, other into): must stay empty

    def add_merge(self, merge: EventMerge) -> None:
        previous = self.merged_into.get(merge.event_id)
        if previous is not None and previous != merge.into:
            self.merge_conflicts.append((merge.event_id, previous, merge.into))
        if previous is None:
            self.merged_into[merge.event_id] = merge.into

    def story(self, event_id: str) -> str:
        """The id an event id's story survives under (itself when it never merged)."""
        return resolve_event(event_id, self.merged_into)

    def add(self, assignment: EventAssignment) -> None:
        self.records += 1
        previous = self.by_doc.get(assignment.doc_id)
        if previous is not None and previous.event_id != assignment.event_id:
            self.conflicts.append((assignment.doc_id, previous.event_id, assignment.event_id))
        if previous is None:
            self.by_doc[assignment.doc_id] = assignment

    def events(self) -> list[EventSummary]:
        """Stories, merged, largest first."""
        grouped: dict[str, EventSummary] = {}
        for a in self.by_doc.values():
            story = self.story(a.event_id)
            summary = grouped.setdefault(story, EventSummary(story))
            if a.event_id != story:
                summary.merged_ids.add(a.event_id)
            summary.doc_ids.append(a.doc_id)
            summary.titles.append(a.title)
            summary.langs[a.lang] += 1
        return sorted(grouped.values(), key=lambda s: (-s.size, s.event_id))


def format_event(summary: EventSummary, max_titles: int = 3) -> str:
    langs = ", ".join(f"{k}:{v}" for k, v in sorted(summary.langs.items(), key=lambda kv: -kv[1]))
    merged = f"  (merged from {len(summary.merged_ids)} more)" if summary.merged_ids else ""
    lines = [f"{summary.event_id}  {summary.size} docs  [{langs}]{merged}"]
    lines += [f"    · {title[:110]}" for title in summary.titles[:max_titles]]
    return "\n".join(lines)


def decode(record) -> EventAssignment | EventMerge | DeadLetter | Document | None:
    """The record of any output topic, by the shape of its value (None for what is not ours)."""
    try:
        raw = record.value
        import orjson

        obj = orjson.loads(raw)
        if obj.get("type") == "merge":
            return EventMerge.from_dict(obj)
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
