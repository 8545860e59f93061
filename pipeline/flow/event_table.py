"""The live events of a window: running vector sums, and the aliases that merges leave behind.

An event is its members' vector sum and count, which is all exact average link needs: for unit vectors the mean
similarity of a document to an event is ``v · sum / size``, and the mean similarity between two events (average
link between clusters) is ``sum_a · sum_b / (size_a * size_b)``.

When two events merge, the smaller one's id becomes an **alias** of the larger one's (ties: the smaller id, so
replays agree) and the survivor's sum becomes the sum of both. A document keeps the id it was given; ``root``
resolves any id to its live story. Aliases always point at the root (flattened on each merge) and are forgotten
with their story when its last member leaves the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.records import EventMerge


@dataclass
class Event:
    vector_sum: np.ndarray
    size: int


class EventTable:
    def __init__(self) -> None:
        self.events: dict[str, Event] = {}  # root id → event
        self.aliases: dict[str, str] = {}  # absorbed id → root id
        self.absorbed: dict[str, list[str]] = {}  # root id → ids it absorbed (directly or not)
        self.merge_records: dict[str, EventMerge] = {}  # absorbed id → its merge, while its story is live
        self.merge_count = 0  # merges decided by this table, ever (restores included)

    def root(self, event_id: str) -> str:
        return self.aliases.get(event_id, event_id)

    def __contains__(self, event_id: str) -> bool:
        return self.root(event_id) in self.events

    def get(self, event_id: str) -> Event | None:
        return self.events.get(self.root(event_id))

    def size(self, event_id: str) -> int:
        event = self.get(event_id)
        return event.size if event is not None else 0

    # --- membership ---------------------------------------------------------------------------------------
    def found(self, event_id: str, vector: np.ndarray) -> None:
        self.events[event_id] = Event(vector.astype(np.float32, copy=True), 1)

    def join(self, event_id: str, vector: np.ndarray) -> None:
        """Add a member to ``event_id``'s story, founding it when no story has that id."""
        event = self.get(event_id)
        if event is None:
            self.found(event_id, vector)
        else:
            event.vector_sum += vector
            event.size += 1

    def leave(self, event_id: str, vector: np.ndarray) -> None:
        """A member leaves the window; a story with no members left is forgotten with its aliases."""
        root = self.root(event_id)
        event = self.events.get(root)
        if event is None:
            return
        event.size -= 1
        if event.size > 0:
            event.vector_sum -= vector
            return
        del self.events[root]
        for absorbed in self.absorbed.pop(root, []):
            self.aliases.pop(absorbed, None)
            self.merge_records.pop(absorbed, None)

    # --- similarity and merges ----------------------------------------------------------------------------
    def mean_similarity(self, vector: np.ndarray, event_id: str) -> float:
        event = self.events[self.root(event_id)]
        return float(vector @ event.vector_sum) / event.size

    def link_similarity(self, first: str, second: str) -> float:
        """Average link between two stories: the mean similarity over every pair of their members."""
        a, b = self.events[self.root(first)], self.events[self.root(second)]
        return float(a.vector_sum @ b.vector_sum) / (a.size * b.size)

    def merge(self, first: str, second: str, at_ms: int, model_version: str = "") -> EventMerge:
        """Merge two live stories (the larger survives; ties: the smaller id); returns the record of the merge."""
        a, b = self.root(first), self.root(second)
        if a == b:
            raise ValueError(f"{first} and {second} are one story already")
        survivor, absorbed = (a, b) if (self.events[a].size, b) > (self.events[b].size, a) else (b, a)
        return self._absorb(absorbed, survivor, at_ms, model_version)

    def replay(self, merge: EventMerge) -> None:
        """A logged merge again, as it was decided (a replay follows the log rather than deciding again)."""
        self._absorb(self.root(merge.event_id), self.root(merge.into), merge.at_ms, merge.model_version)

    def _absorb(self, absorbed: str, survivor: str, at_ms: int, model_version: str) -> EventMerge:
        self.events[survivor].vector_sum += self.events[absorbed].vector_sum
        self.events[survivor].size += self.events.pop(absorbed).size
        record = EventMerge(event_id=absorbed, into=survivor, at_ms=at_ms, model_version=model_version)
        self._alias(record)
        self.merge_count += 1
        return record

    def _alias(self, merge: EventMerge) -> None:
        """``merge.event_id`` and every id it had absorbed now resolve to ``merge.into``'s root."""
        survivor = self.root(merge.into)
        moved = [merge.event_id] + self.absorbed.pop(merge.event_id, [])
        for event_id in moved:
            self.aliases[event_id] = survivor
        self.absorbed.setdefault(survivor, []).extend(moved)
        self.merge_records[merge.event_id] = merge

    # --- persistence --------------------------------------------------------------------------------------
    def to_state(self, dim: int) -> tuple[dict, np.ndarray]:
        ids = list(self.events)
        sums = (np.stack([self.events[e].vector_sum for e in ids]) if ids else np.zeros((0, dim))).astype(np.float32)
        meta = {"event_ids": ids, "event_sizes": [self.events[e].size for e in ids],
                "merges": [m.to_dict() for m in self.merge_records.values()], "merge_count": self.merge_count}
        return meta, sums

    @classmethod
    def from_state(cls, meta: dict, sums: np.ndarray) -> "EventTable":
        table = cls()
        table.events = {e: Event(sums[row].copy(), size)
                        for row, (e, size) in enumerate(zip(meta["event_ids"], meta["event_sizes"]))}
        for raw in meta.get("merges", []):  # in decision order: re-aliasing them rebuilds the flattened aliases
            table._alias(EventMerge.from_dict(raw))
        table.merge_count = int(meta.get("merge_count", len(table.merge_records)))
        return table
