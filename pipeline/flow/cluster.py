"""vector → event. The pure core of the cluster stage: an incremental average-link clusterer on hnswlib.

* **Window.** Documents live in time buckets (``bucket_hours``, by published time), all in one hnswlib index.
  When the newest bucket moves past ``window_hours`` the oldest buckets are dropped whole: their documents are
  marked deleted and new documents reuse their slots (``replace_deleted``), so the index stays the size of the
  window. One index, not one per bucket: every query then searches one graph instead of eight, which is what
  makes a million-document window affordable (``newsevents bench --what clusterer``).
* **Linkage.** A document joins the event whose *mean* cosine similarity to all of its live members is highest,
  if that mean is at least ``threshold``; otherwise it founds a new event. This is the average-link criterion
  of the Dialogue-2021 baseline applied one document at a time, and it is exact: for unit vectors the mean
  similarity to a set equals the dot product with the set's mean vector, so each event keeps a running sum.
  Candidate events are those of the ``neighbours`` nearest documents (an event whose mean clears the threshold
  has a member that does).
* **Micro-batches.** A batch is queried against the index at once; links inside the batch are resolved exactly
  with a small dense similarity matrix, in input order; then the batch is added.
* **Determinism.** An event's id is a hash of the document that founded it, hnswlib inserts are single-threaded,
  and a document already assigned gets its event back: replaying the same input gives the same ids.
* **Thread safety.** hnswlib can crash when a search runs during an insert: every index call holds one lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import hnswlib
import numpy as np
import orjson

from pipeline.records import EmbeddedDocument, EventAssignment

DEFAULT_THRESHOLD = 0.92  # mean cosine similarity; tuned for e5-small on eval/dev_pairs.tsv (bench/cluster_f1.py)


@dataclass(frozen=True)
class ClusterConfig:
    dim: int
    threshold: float = DEFAULT_THRESHOLD
    neighbours: int = 20
    bucket_hours: float = 6.0
    window_hours: float = 48.0
    hnsw_m: int = 16
    hnsw_ef_construction: int = 40  # 2.3x faster inserts than 100; same dev F1 (bench notes in README)
    hnsw_ef: int = 64
    initial_capacity: int = 1024

    @property
    def bucket_seconds(self) -> float:
        return self.bucket_hours * 3600.0

    @property
    def window_buckets(self) -> int:
        return max(1, math.ceil(self.window_hours / self.bucket_hours))


def event_id_for(founder_doc_id: str) -> str:
    return "ev-" + hashlib.blake2b(founder_doc_id.encode(), digest_size=8).hexdigest()


def document_epoch_s(doc: EmbeddedDocument) -> float | None:
    """Event time: the article's published time; None when it has none we can trust.

    A time more than an hour after the record reached Kafka is a bad clock or a typo, not news from the future.
    """
    if not isinstance(doc.published_time, str):
        return None
    try:
        published = datetime.fromisoformat(doc.published_time).timestamp()
    except ValueError:
        return None
    if isinstance(doc.ingested_at_ms, int) and published > doc.ingested_at_ms / 1000.0 + 3600.0:
        return None
    return published



@dataclass
class _Event:
    vector_sum: np.ndarray
    size: int


class IncrementalClusterer:
    def __init__(self, config: ClusterConfig):
        self.config = config
        self.index = self._new_index()
        self.buckets: dict[int, list[int]] = {}  # bucket number → index labels of its documents
        self.label_docs: dict[int, str] = {}  # index label → doc id, for live documents
        self.next_label = 0
        self.events: dict[str, _Event] = {}
        self.doc_events: dict[str, str] = {}  # live documents → event id
        self.newest_bucket: int | None = None
        self._lock = threading.Lock()

    # --- window -------------------------------------------------------------------------------------------
    def _bucket_of(self, doc: EmbeddedDocument) -> int:
        epoch = document_epoch_s(doc)
        if epoch is None:
            # Undated: file it with the newest documents. Its ingest time would be "now", which for a replayed
            # crawl is years after everything else and would push the whole window out.
            if self.newest_bucket is not None:
                return self.newest_bucket
            epoch = doc.ingested_at_ms / 1000.0 if isinstance(doc.ingested_at_ms, int) else time.time()
        number = int(epoch // self.config.bucket_seconds)
        if self.newest_bucket is not None:
            # Late documents go to the oldest live bucket rather than to one already dropped.
            number = max(number, self.newest_bucket - self.config.window_buckets + 1)
        return number

    def _new_index(self) -> hnswlib.Index:
        index = hnswlib.Index(space="ip", dim=self.config.dim)
        index.init_index(max_elements=self.config.initial_capacity, M=self.config.hnsw_m,
                         ef_construction=self.config.hnsw_ef_construction, random_seed=100,
                         allow_replace_deleted=True)
        index.set_ef(max(self.config.hnsw_ef, self.config.neighbours))
        return index

    def _advance_window(self, bucket: int) -> None:
        if self.newest_bucket is not None and bucket <= self.newest_bucket:
            return
        self.newest_bucket = bucket
        oldest_live = bucket - self.config.window_buckets + 1
        for number in [n for n in self.buckets if n < oldest_live]:
            self._drop_bucket(number)

    def _drop_bucket(self, number: int) -> None:
        labels = self.buckets.pop(number)
        if not labels:
            return
        vectors = np.asarray(self.index.get_items(labels), dtype=np.float32)
        for row, label in enumerate(labels):
            self.index.mark_deleted(label)
            doc_id = self.label_docs.pop(label)
            event_id = self.doc_events.pop(doc_id, None)
            event = self.events.get(event_id) if event_id is not None else None
            if event is None:
                continue
            event.size -= 1
            if event.size == 0:
                del self.events[event_id]
            else:
                event.vector_sum -= vectors[row]

    # --- search -------------------------------------------------------------------------------------------
    def _search(self, vectors: np.ndarray) -> list[list[tuple[float, str, str]]]:
        """For each vector: (similarity, doc id, event id) of up to ``neighbours`` nearest live documents."""
        k = min(self.config.neighbours, len(self.label_docs))
        while k > 0:
            try:
                # queries are independent of each other: threads change nothing in the answers, unlike inserts
                labels, distances = self.index.knn_query(vectors, k=k, num_threads=-1)
                break
            except RuntimeError:  # deleted slots can leave fewer than k reachable live documents
                k //= 2
        if k == 0:
            return [[] for _ in range(len(vectors))]
        found = []
        for row_labels, row_distances in zip(labels.tolist(), distances.tolist()):
            row = []
            for label, distance in zip(row_labels, row_distances):
                doc_id = self.label_docs[label]
                row.append((1.0 - distance, doc_id, self.doc_events[doc_id]))
            found.append(row)
        return found

    # --- the decision -------------------------------------------------------------------------------------
    def assign(self, docs: list[EmbeddedDocument], now_ms: int | None = None) -> list[EventAssignment]:
        """Assign each document of a micro-batch to an event, in order. One assignment per input document."""
        if not docs:
            return []
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        with self._lock:
            return self._assign_locked(docs, now_ms)

    def _assign_locked(self, docs: list[EmbeddedDocument], now_ms: int) -> list[EventAssignment]:
        vectors = np.stack([np.asarray(d.vector, dtype=np.float32) for d in docs])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        bucket_numbers = [self._bucket_of(d) for d in docs]
        self._advance_window(max(bucket_numbers))
        bucket_numbers = [self._bucket_of(d) for d in docs]  # re-clamp against the advanced window
        neighbours = self._search(vectors)
        in_batch = vectors @ vectors.T
        threshold = self.config.threshold
        batch_events: list[str | None] = [None] * len(docs)
        results: list[EventAssignment] = []
        new_members: dict[int, list[int]] = {}
        first_in_batch: dict[str, int] = {}
        for i, doc in enumerate(docs):
            founded = event_id_for(doc.doc_id)
            known = (self.doc_events.get(doc.doc_id)
                     or (founded if founded in self.events else None)  # a founder whose own bucket has left the window
                     or (batch_events[first_in_batch[doc.doc_id]] if doc.doc_id in first_in_batch else None))
            first_in_batch.setdefault(doc.doc_id, i)
            if known is not None:  # a redelivered document keeps its event, and is not indexed twice
                batch_events[i] = known
                results.append(self._assignment(doc, known, 1.0, doc.doc_id, now_ms))
                continue
            # candidate event → (best similarity, linked doc) over close-enough neighbours and earlier batch docs
            candidates: dict[str, tuple[float, str]] = {}
            for similarity, other_doc, event_id in neighbours[i]:
                if similarity >= threshold and similarity > candidates.get(event_id, (-2.0, ""))[0]:
                    candidates[event_id] = (similarity, other_doc)
            for j in np.flatnonzero(in_batch[i, :i] >= threshold):
                similarity = float(in_batch[i, j])
                event_id = batch_events[j]
                if event_id is not None and similarity > candidates.get(event_id, (-2.0, ""))[0]:
                    candidates[event_id] = (similarity, docs[j].doc_id)
            best_event, best_mean = None, -2.0
            for event_id in sorted(candidates):  # sorted: ties resolve the same way on every replay
                event = self.events[event_id]
                mean = float(vectors[i] @ event.vector_sum) / event.size
                if mean > best_mean:
                    best_event, best_mean = event_id, mean
            if best_event is not None and best_mean >= threshold:
                event_id = best_event
                similarity, linked = candidates[best_event]
                self.events[event_id].vector_sum += vectors[i]
                self.events[event_id].size += 1
            else:
                event_id, similarity, linked = founded, 1.0, doc.doc_id
                self.events[event_id] = _Event(vectors[i].copy(), 1)
            batch_events[i] = event_id
            self.doc_events[doc.doc_id] = event_id
            new_members.setdefault(bucket_numbers[i], []).append(i)
            results.append(self._assignment(doc, event_id, similarity, linked, now_ms))
        for number, rows in new_members.items():
            self._add(number, vectors[rows], [docs[r].doc_id for r in rows])
        return results

    def _assignment(self, doc: EmbeddedDocument, event_id: str, similarity: float, linked: str,
                    now_ms: int) -> EventAssignment:
        return EventAssignment(
            doc_id=doc.doc_id, event_id=event_id, model_version=doc.model_version, similarity=round(similarity, 6),
            linked_doc_id=linked, title=doc.title, url=doc.url, lang=doc.lang, published_time=doc.published_time,
            ingested_at_ms=doc.ingested_at_ms, assigned_at_ms=now_ms,
            event_size=self.events[event_id].size if event_id in self.events else 1,
        )

    def restore(self, docs: list[EmbeddedDocument], event_ids: list[str], num_threads: int = -1) -> None:
        """Put documents whose events are already decided back into the window, without deciding anything:
        a restart rebuilding its window from what it emitted, or a benchmark filling one. Inserts run on
        every core, since no decision depends on this batch's graph order."""
        with self._lock:
            vectors = np.stack([np.asarray(d.vector, dtype=np.float32) for d in docs])
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            bucket_numbers = [self._bucket_of(d) for d in docs]
            self._advance_window(max(bucket_numbers))
            rows_by_bucket: dict[int, list[int]] = {}
            for row, (doc, event_id) in enumerate(zip(docs, event_ids)):
                if doc.doc_id in self.doc_events:
                    continue
                event = self.events.get(event_id)
                if event is None:
                    self.events[event_id] = _Event(vectors[row].copy(), 1)
                else:
                    event.vector_sum += vectors[row]
                    event.size += 1
                self.doc_events[doc.doc_id] = event_id
                rows_by_bucket.setdefault(self._bucket_of(doc), []).append(row)
            for number, rows in rows_by_bucket.items():
                self._add(number, vectors[rows], [docs[r].doc_id for r in rows], num_threads)

    def _add(self, number: int, vectors: np.ndarray, doc_ids: list[str], num_threads: int = 1) -> None:
        labels = list(range(self.next_label, self.next_label + len(doc_ids)))
        self.next_label += len(doc_ids)
        capacity, used = self.index.get_max_elements(), self.index.get_current_count()
        free_slots = capacity - used + (used - len(self.label_docs))  # never used + deleted (reusable)
        if len(doc_ids) > free_slots:
            self.index.resize_index(max(capacity * 2, capacity + len(doc_ids)))
        self.index.add_items(vectors, np.asarray(labels), num_threads=num_threads, replace_deleted=True)
        self.buckets.setdefault(number, []).extend(labels)
        self.label_docs.update(zip(labels, doc_ids))

    def known_assignment(self, doc: EmbeddedDocument, now_ms: int | None = None) -> EventAssignment:
        """The event a live document already has (for the same document arriving from another model)."""
        with self._lock:
            return self._assignment(doc, self.doc_events[doc.doc_id], 1.0, doc.doc_id,
                                    now_ms if now_ms is not None else int(time.time() * 1000))

    # --- persistence ------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """The whole window into ``folder`` (which must exist): hnswlib's index file, the event sums as .npy
        and the bookkeeping as JSON. The caller makes it atomic (``pipeline.flow.state``)."""
        with self._lock:
            self.index.save_index(str(folder / "index.bin"))
            event_ids = list(self.events)
            sums = (np.stack([self.events[e].vector_sum for e in event_ids]) if event_ids
                    else np.zeros((0, self.config.dim), dtype=np.float32))
            np.save(folder / "event_sums.npy", sums.astype(np.float32))
            (folder / "clusterer.json").write_bytes(orjson.dumps({
                "config": dataclasses.asdict(self.config),
                "capacity": self.index.get_max_elements(),
                "next_label": self.next_label,
                "newest_bucket": self.newest_bucket,
                "buckets": {str(n): labels for n, labels in self.buckets.items()},
                "labels": list(self.label_docs), "label_docs": list(self.label_docs.values()),
                "doc_events": self.doc_events,
                "event_ids": event_ids, "event_sizes": [self.events[e].size for e in event_ids],
            }))

    @classmethod
    def load(cls, folder: Path) -> "IncrementalClusterer":
        state = orjson.loads((folder / "clusterer.json").read_bytes())
        clusterer = cls(ClusterConfig(**state["config"]))
        index = hnswlib.Index(space="ip", dim=clusterer.config.dim)
        index.load_index(str(folder / "index.bin"), max_elements=state["capacity"], allow_replace_deleted=True)
        index.set_ef(max(clusterer.config.hnsw_ef, clusterer.config.neighbours))
        clusterer.index = index
        clusterer.next_label = state["next_label"]
        clusterer.newest_bucket = state["newest_bucket"]
        clusterer.buckets = {int(n): labels for n, labels in state["buckets"].items()}
        clusterer.label_docs = dict(zip(state["labels"], state["label_docs"]))
        clusterer.doc_events = state["doc_events"]
        sums = np.load(folder / "event_sums.npy")
        clusterer.events = {e: _Event(sums[row].copy(), size)
                            for row, (e, size) in enumerate(zip(state["event_ids"], state["event_sizes"]))}
        return clusterer

    # --- introspection ------------------------------------------------------------------------------------
    @property
    def live_documents(self) -> int:
        return len(self.label_docs)

    def event_sizes(self) -> dict[str, int]:
        return {event_id: event.size for event_id, event in self.events.items()}
