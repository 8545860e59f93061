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
* **Centring.** Vectors are linked in a centred space: minus the running mean of their language over the live
  window, renormalised (``pipeline.flow.centring``); what is indexed and summed is the centred vector.
* **Merges.** After a document joins an event, that event and the events of the document's neighbours are
  compared by average link (the mean similarity over all their cross pairs, exact from the running sums); the
  best pair at or above ``merge_threshold`` merges, and again until none does. Batch average link merges the
  same way, so arrival order no longer decides. The smaller event's id becomes an alias
  (``pipeline.flow.event_table``); documents keep the id they were given, later ones get the surviving id.
* **Micro-batches.** A batch's documents are decided one after another: each is searched in the index that holds
  every document decided before it (the batch's earlier ones included) and inserted before the next is
  searched. hnswlib's search is approximate, so meeting the batch's earlier documents any other way (they were
  once compared exactly, with a dense similarity matrix) made a decision depend on where the stream was cut
  into batches, which a crash, a broker restart or the consumer's timing changes.
* **Determinism.** An event's id is a hash of the document that founded it, hnswlib inserts are single-threaded
  and in input order, and a document already assigned gets its event back: replaying the same input, in any
  micro-batches, gives the same ids.
* **Thread safety.** hnswlib can crash when a search runs during an insert: every index call holds one lock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import orjson

from pipeline.flow.centring import WindowCentre
from pipeline.flow.cluster_config import (  # noqa: F401 (re-exported: the stage's config is read from here)
    DEFAULT_THRESHOLD, ClusterConfig, document_epoch_s, event_id_for)
from pipeline.flow.event_table import EventTable
from pipeline.records import EmbeddedDocument, EventAssignment, EventMerge

@dataclass
class Assigned:
    """What one ``assign`` decided: one assignment per input document, in order, and the merges, each with the
    number of new documents decided before it (where a replay puts it back)."""

    assignments: list[EventAssignment]
    merges: list[tuple[int, EventMerge]]


class IncrementalClusterer:
    def __init__(self, config: ClusterConfig):
        self.config = config
        self.index = self._new_index()
        self.buckets: dict[int, list[int]] = {}  # bucket number → index labels of its documents
        self.label_docs: dict[int, str] = {}  # index label → doc id, for live documents
        self.next_label = 0
        self.table = EventTable()
        self.doc_events: dict[str, str] = {}  # live documents → the event id each was given
        self.centre = WindowCentre(config.dim, config.centring, config.centring_prior_docs)
        self.newest_bucket: int | None = None
        self._merges: list[tuple[int, EventMerge]] = []  # of the assign in progress
        self._lock = threading.Lock()

    @property
    def events(self):
        """Live stories by root id."""
        return self.table.events

    @property
    def merge_count(self) -> int:
        return self.table.merge_count

    # --- window -------------------------------------------------------------------------------------------
    def _bucket_of(self, doc: EmbeddedDocument, newest: int | None = -1) -> int:
        newest = self.newest_bucket if newest == -1 else newest
        epoch = document_epoch_s(doc)
        if epoch is None:
            # Undated: file it with the newest documents. Its ingest time would be "now", which for a replayed
            # crawl is years after everything else and would push the whole window out.
            if newest is not None:
                return newest
            epoch = doc.ingested_at_ms / 1000.0 if isinstance(doc.ingested_at_ms, int) else time.time()
        number = int(epoch // self.config.bucket_seconds)
        if newest is not None:
            # Late documents go to the oldest live bucket rather than to one already dropped.
            number = max(number, newest - self.config.window_buckets + 1)
        return number

    def _runs(self, docs: list[EmbeddedDocument]) -> list[list[EmbeddedDocument]]:
        """The batch cut before each document that moves the window on: the window then advances exactly
        where it would have had the documents come one at a time."""
        runs: list[list[EmbeddedDocument]] = []
        newest = self.newest_bucket
        for doc in docs:
            bucket = self._bucket_of(doc, newest)
            if not runs or (newest is not None and bucket > newest):
                runs.append([])
            newest = bucket if newest is None else max(newest, bucket)
            runs[-1].append(doc)
        return runs

    def _new_index(self, saved: Path | None = None, capacity: int | None = None) -> hnswlib.Index:
        """The one place the hnswlib index is made: empty, or loaded from a saved window's file."""
        index = hnswlib.Index(space="ip", dim=self.config.dim)
        if saved is not None:
            index.load_index(str(saved), max_elements=capacity, allow_replace_deleted=True)
        else:
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
        for number in [n for n in self.centre.sums if n < oldest_live]:
            self.centre.drop(number)

    def _drop_bucket(self, number: int) -> None:
        labels = self.buckets.pop(number)
        if not labels:
            return
        vectors = np.asarray(self.index.get_items(labels), dtype=np.float32)
        for row, label in enumerate(labels):
            self.index.mark_deleted(label)
            doc_id = self.label_docs.pop(label)
            event_id = self.doc_events.pop(doc_id, None)
            if event_id is not None:
                self.table.leave(event_id, vectors[row])

    def _prepare(self, docs: list[EmbeddedDocument], new_rows: list[int]):
        """Unit vectors → window advanced → bucket numbers → centred vectors. ``new_rows`` (the documents that
        join the window) are counted and centred one after another, so no centre depends on the batching."""
        vectors = np.stack([np.asarray(d.vector, dtype=np.float32) for d in docs])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self._advance_window(max(self._bucket_of(d) for d in docs))
        bucket_numbers = [self._bucket_of(d) for d in docs]  # clamped against the advanced window
        for row in new_rows:  # redeliveries stay raw: they are neither linked, compared with nor indexed
            vectors[row] = self.centre.add_and_centre(bucket_numbers[row], docs[row].lang, vectors[row])
        return vectors, bucket_numbers

    # --- search -------------------------------------------------------------------------------------------
    def _search(self, vectors: np.ndarray) -> list[list[tuple[float, str, str]]]:
        """For each vector: (similarity, doc id, event id given) of up to ``neighbours`` nearest live documents."""
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
    def assign(self, docs: list[EmbeddedDocument], now_ms: int | None = None) -> Assigned:
        """Assign each document of a micro-batch to an event, in order, and merge the stories that meet."""
        if not docs:
            return Assigned([], [])
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        with self._lock:
            self._merges = []
            results: list[EventAssignment] = []
            decided = 0  # new documents so far in this call: where each merge happened
            for run in self._runs(docs):
                run_results, decided = self._assign_locked(run, now_ms, decided)
                results += run_results
            return Assigned(results, self._merges)

    def _known_event(self, doc: EmbeddedDocument, batch_events: dict[str, str]) -> str | None:
        """The event a redelivered document was given (it is not decided or indexed twice)."""
        founded = event_id_for(doc.doc_id)
        return (self.doc_events.get(doc.doc_id)
                or (founded if founded in self.table else None)  # a founder whose own bucket has left the window
                or batch_events.get(doc.doc_id))

    def _assign_locked(self, docs: list[EmbeddedDocument], now_ms: int,
                       decided: int) -> tuple[list[EventAssignment], int]:
        new_rows = [i for i in _first_unseen(docs, self.doc_events)
                    if event_id_for(docs[i].doc_id) not in self.table]
        vectors, bucket_numbers = self._prepare(docs, new_rows)
        threshold = self.config.threshold
        by_doc: dict[str, str] = {}
        results: list[EventAssignment] = []
        for i, doc in enumerate(docs):
            known = self._known_event(doc, by_doc)
            if known is not None:
                results.append(self._assignment(doc, known, 1.0, doc.doc_id, now_ms))
                continue
            # One document at a time: searched in the index that holds every document decided before it, and
            # inserted before the next is searched. hnswlib's search is approximate, so a document must meet
            # the batch's earlier documents the way it meets the window's: the same graph, whatever the batching.
            [near] = self._search(vectors[i:i + 1])
            event_id, similarity, linked = self._link(vectors[i], near, threshold)
            if event_id is None:
                event_id, similarity, linked = event_id_for(doc.doc_id), 1.0, doc.doc_id
                self.table.found(event_id, vectors[i])
            else:
                self.table.join(event_id, vectors[i])
            decided += 1
            if self.config.merge_events and linked != doc.doc_id:
                event_id = self._merge_around(event_id, near, decided, now_ms, doc.model_version)
            by_doc[doc.doc_id] = self.doc_events[doc.doc_id] = event_id
            self._add([bucket_numbers[i]], vectors[i:i + 1], [doc.doc_id])
            results.append(self._assignment(doc, event_id, similarity, linked, now_ms))
        return results, decided

    def _link(self, vector: np.ndarray, near: list[tuple[float, str, str]],
              threshold: float) -> tuple[str | None, float, str]:
        """The story whose mean similarity is highest and at least ``threshold`` (candidates: stories with a
        member at least that close); None when there is none. Returns (root id, similarity, linked doc)."""
        candidates: dict[str, tuple[float, str]] = {}
        for similarity, other_doc, event_id in near:
            root = self.table.root(event_id)
            if similarity >= threshold and similarity > candidates.get(root, (-2.0, ""))[0]:
                candidates[root] = (similarity, other_doc)
        best_event, best_mean = None, -2.0
        for root in sorted(candidates):  # sorted: ties resolve the same way on every replay
            mean = self.table.mean_similarity(vector, root)
            if mean > best_mean:
                best_event, best_mean = root, mean
        if best_event is None or best_mean < threshold:
            return None, 1.0, ""
        return best_event, *candidates[best_event]

    def _merge_around(self, event_id: str, near: list[tuple[float, str, str]], decided: int, now_ms: int,
                      model_version: str) -> str:
        """Merge ``event_id``'s story with its neighbours' while the best average link clears ``merge_at``."""
        root = self.table.root(event_id)
        others = {self.table.root(e) for _, _, e in near}
        while True:
            others.discard(root)
            best, best_link = None, -2.0
            for other in sorted(others):
                link = self.table.link_similarity(root, other)
                if link > best_link:
                    best, best_link = other, link
            if best is None or best_link < self.config.merge_at:
                return root
            merge = self.table.merge(root, best, now_ms, model_version)
            self._merges.append((decided, merge))
            others.discard(merge.event_id)
            root = merge.into

    def _assignment(self, doc: EmbeddedDocument, event_id: str, similarity: float, linked: str,
                    now_ms: int) -> EventAssignment:
        return EventAssignment(
            doc_id=doc.doc_id, event_id=event_id, model_version=doc.model_version, similarity=round(similarity, 6),
            linked_doc_id=linked, title=doc.title, url=doc.url, lang=doc.lang, published_time=doc.published_time,
            ingested_at_ms=doc.ingested_at_ms, assigned_at_ms=now_ms, event_size=max(1, self.table.size(event_id)),
        )

    def restore(self, docs: list[EmbeddedDocument], event_ids: list[str],
                merges: list[tuple[int, EventMerge]] = (), num_threads: int = -1) -> None:
        """Put documents whose events are already decided back into the window, with the merges decided
        among them (each after that many of the documents), without deciding anything: a restart replaying
        its log (``num_threads=1``: the graph is then built exactly as the live one was, so later searches
        agree), or a benchmark filling a window (every core). Window moves, sums and centres follow the order
        they were made in, so the restored window decides exactly as the one that crashed."""
        if not docs:
            return
        by_doc = dict(zip((d.doc_id for d in docs), event_ids))
        pending = sorted(merges, key=lambda m: m[0])
        decided = 0
        with self._lock:
            for run in self._runs(docs):
                new_rows = _first_unseen(run, self.doc_events)
                vectors, bucket_numbers = self._prepare(run, new_rows)
                for row in new_rows:
                    decided += 1
                    self.table.join(by_doc[run[row].doc_id], vectors[row])
                    self.doc_events[run[row].doc_id] = by_doc[run[row].doc_id]
                    while pending and pending[0][0] <= decided:
                        self.table.replay(pending.pop(0)[1])
                # in input order, as ``assign`` inserted them (on one thread: the same graph)
                self._add([bucket_numbers[r] for r in new_rows], vectors[new_rows],
                          [run[r].doc_id for r in new_rows], num_threads)
            for _, merge in pending:
                self.table.replay(merge)

    def _add(self, numbers: list[int], vectors: np.ndarray, doc_ids: list[str], num_threads: int = 1) -> None:
        """Insert documents (``numbers``: each one's bucket) in the order given: on one thread the same
        documents in the same order make the same graph, however they are grouped into calls."""
        if not doc_ids:
            return
        labels = list(range(self.next_label, self.next_label + len(doc_ids)))
        self.next_label += len(doc_ids)
        capacity, used = self.index.get_max_elements(), self.index.get_current_count()
        free_slots = capacity - used + (used - len(self.label_docs))  # never used + deleted (reusable)
        if len(doc_ids) > free_slots:
            self.index.resize_index(max(capacity * 2, capacity + len(doc_ids)))
        self.index.add_items(vectors, np.asarray(labels), num_threads=num_threads, replace_deleted=True)
        for number, label in zip(numbers, labels):
            self.buckets.setdefault(number, []).append(label)
        self.label_docs.update(zip(labels, doc_ids))

    def known_assignment(self, doc: EmbeddedDocument, now_ms: int | None = None) -> EventAssignment:
        """The event a live document already has (for the same document arriving from another model)."""
        with self._lock:
            return self._assignment(doc, self.doc_events[doc.doc_id], 1.0, doc.doc_id,
                                    now_ms if now_ms is not None else int(time.time() * 1000))

    def live_merges(self) -> list[EventMerge]:
        """The merges of stories still in the window, in the order they were decided."""
        with self._lock:
            return list(self.table.merge_records.values())

    # --- persistence (one folder per window; pipeline.flow.state makes a snapshot of them atomic) -------------
    def to_state(self, folder: Path) -> None:
        """The whole window into ``folder`` (which must exist): hnswlib's index file, the event and centre sums
        as .npy, the bookkeeping as JSON."""
        with self._lock:
            self.index.save_index(str(folder / "index.bin"))
            events, event_sums = self.table.to_state(self.config.dim)
            np.save(folder / "event_sums.npy", event_sums)
            centres, centre_sums = self.centre.to_state()
            np.save(folder / "centre_sums.npy", centre_sums)
            (folder / "clusterer.json").write_bytes(orjson.dumps({
                "config": dataclasses.asdict(self.config), "capacity": self.index.get_max_elements(),
                "next_label": self.next_label, "newest_bucket": self.newest_bucket,
                "buckets": {str(n): labels for n, labels in self.buckets.items()},
                "labels": list(self.label_docs), "label_docs": list(self.label_docs.values()),
                "doc_events": self.doc_events, **events, "centres": centres,
            }))

    @classmethod
    def from_state(cls, folder: Path) -> "IncrementalClusterer":
        """The window ``to_state`` wrote, as it was."""
        state = orjson.loads((folder / "clusterer.json").read_bytes())
        # A snapshot from before centring and merges keeps linking as it did: its index holds raw vectors.
        clusterer = cls(ClusterConfig(**({"centring": "none", "merge_events": False} | state["config"])))
        clusterer.index = clusterer._new_index(folder / "index.bin", state["capacity"])
        clusterer.next_label = state["next_label"]
        clusterer.newest_bucket = state["newest_bucket"]
        clusterer.buckets = {int(n): labels for n, labels in state["buckets"].items()}
        clusterer.label_docs = dict(zip(state["labels"], state["label_docs"]))
        clusterer.doc_events = state["doc_events"]
        clusterer.table = EventTable.from_state(state, np.load(folder / "event_sums.npy"))
        if "centres" in state:
            clusterer.centre = WindowCentre.from_state(state["centres"], np.load(folder / "centre_sums.npy"),
                                                       clusterer.centre)
        return clusterer

    # --- introspection ------------------------------------------------------------------------------------
    @property
    def live_documents(self) -> int:
        return len(self.label_docs)

    def event_sizes(self) -> dict[str, int]:
        """Live stories (root ids) and their sizes."""
        return {event_id: event.size for event_id, event in self.table.events.items()}

    def story_of(self, event_id: str) -> str:
        """The live story an event id belongs to now (itself unless it was merged)."""
        return self.table.root(event_id)


def _first_unseen(docs: list[EmbeddedDocument], seen: dict[str, str]) -> list[int]:
    """Rows of documents not in ``seen``, each document's first occurrence only."""
    rows, first = [], set()
    for row, doc in enumerate(docs):
        if doc.doc_id not in seen and doc.doc_id not in first:
            first.add(doc.doc_id)
            rows.append(row)
    return rows
