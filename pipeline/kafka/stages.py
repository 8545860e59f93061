"""The three stages as batch functions from consumed records to records to produce.

No Kafka client here: the faust wrapper (``pipeline.kafka.worker``) feeds ``InRecord`` batches in and sends the
``OutRecord`` list out, so each stage is testable without a broker. A stage never raises on input: what it
cannot process becomes a dead letter with the original record and the reason.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Settings
from pipeline.flow import STAGE_NAMES
from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer
from pipeline.flow.embed import embed
from pipeline.flow.parse import ParseError, document_from_json, parse_html
from pipeline.flow.sources import FORMAT_DOCUMENT_JSON
from pipeline.flow.state import ClusterStateStore, Decision, MergeDecision, StateError
from pipeline.models import ServedModel, cluster_space, load_served_encoder, served_model
from pipeline.records import HEADER_FORMAT, HEADER_SOURCE, DeadLetter, Document, EmbeddedDocument

log = logging.getLogger(__name__)


@dataclass
class InRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass
class OutRecord:
    topic: str
    key: bytes
    value: bytes


def now_ms() -> int:
    return int(time.time() * 1000)


class Stage:
    name = "stage"

    def __init__(self, settings: Settings):
        self.settings = settings

    def dead_letter(self, record: InRecord, reason: str, detail: str) -> OutRecord:
        # base64 grows a value by a third: cut what would not fit in the dead-letter topic (its source is kept)
        letter = DeadLetter.wrap(self.name, reason, detail, record.key, record.value,
                                 {k: v.decode("utf-8", "replace") for k, v in record.headers.items()}, now_ms(),
                                 (record.topic, record.partition, record.offset),
                                 max_value_bytes=self.settings.max_message_bytes * 2 // 3)
        return OutRecord(self.settings.dlq_topic, record.key or b"", letter.to_bytes())

    def process(self, batch: list[InRecord]) -> list[OutRecord]:
        raise NotImplementedError

    def close(self) -> None:
        """Called once on graceful shutdown, after the last batch."""

    def process_safely(self, batch: list[InRecord]) -> list[OutRecord]:
        """``process``, but a bug can only cost the records that trigger it: they become ``internal-error`` letters.

        Failures of the stage's own storage are not the records' fault: they propagate, and the worker stops
        without committing (the batch is redelivered to its successor)."""
        try:
            return self.process(batch)
        except (StateError, OSError):
            raise
        except Exception:
            log.exception("%s: batch of %d failed; retrying record by record", self.name, len(batch))
        out: list[OutRecord] = []
        for record in batch:
            try:
                out += self.process([record])
            except (StateError, OSError):
                raise
            except Exception as err:
                out.append(self.dead_letter(record, "internal-error", f"{err!r}\n{traceback.format_exc(limit=3)}"))
        return out



class ParseStage(Stage):
    name = "parse"

    def process(self, batch: list[InRecord]) -> list[OutRecord]:
        out = []
        for record in batch:
            if not record.key:
                out.append(self.dead_letter(record, "no-key", "records on the raw topic need the document id as key"))
                continue
            doc_id = record.key.decode("utf-8", "replace")
            source = record.headers.get(HEADER_SOURCE, b"").decode("utf-8", "replace") or None
            try:
                if record.headers.get(HEADER_FORMAT) == FORMAT_DOCUMENT_JSON.encode():
                    doc = document_from_json(record.value or b"", doc_id, record.timestamp_ms, source)
                else:
                    doc = parse_html(record.value or b"", doc_id, source=source, ingested_at_ms=record.timestamp_ms,
                                     max_bytes=self.settings.max_html_bytes)
            except ParseError as err:
                out.append(self.dead_letter(record, err.reason, err.detail))
                continue
            out.append(OutRecord(self.settings.docs_topic, record.key, doc.to_bytes()))
        return out


class EmbedStage(Stage):
    """Embeds with one model at a time. ``switch_model`` replaces it between batches (the Kafka wrapper runs both
    on the same single thread), so every batch is embedded by exactly one model, and every vector says which."""

    name = "embed"

    def __init__(self, settings: Settings, encoder=None, served: ServedModel | None = None):
        """``served`` defaults to ``served_model(settings)``; with ``encoder`` alone (tests, benchmarks) the
        vectors carry no space and the cluster stage decides."""
        super().__init__(settings)
        self.served = served or (None if encoder is not None else served_model(settings))
        self.encoder = encoder or self._load(self.served)
        if self.served is not None:
            log.warning("embed: serving %s: %s", self.encoder.version, self.served.describe())

    def _load(self, served: ServedModel):
        return load_served_encoder(self.settings, served.folder)

    def switch_model(self, served: ServedModel) -> str:
        """Serve ``served`` from the next batch on; returns the new model version. Raises if it cannot load
        (the current model stays)."""
        encoder = self._load(served)
        self.encoder, self.served = encoder, served
        log.warning("embed: now serving %s: %s", encoder.version, served.describe())
        return encoder.version

    def process(self, batch: list[InRecord]) -> list[OutRecord]:
        out, records, docs = [], [], []
        encoder, served = self.encoder, self.served  # one model for the whole batch
        for record in batch:
            try:
                docs.append(Document.from_bytes(record.value or b""))
                records.append(record)
            except ValueError as err:
                out.append(self.dead_letter(record, "bad-document", f"not a Document record: {err}"))
        try:
            embedded = embed(docs, encoder, self.settings.embed_batch_size, self.settings.max_chars)
        except Exception:
            log.exception("batch embedding failed; retrying one document at a time")
            embedded = []
            for record, doc in zip(records, docs):
                try:
                    embedded += embed([doc], encoder, 1, self.settings.max_chars)
                except Exception as err:
                    out.append(self.dead_letter(record, "embed-failed", repr(err)))
        if served is not None:
            for vector in embedded:
                vector.cluster_threshold, vector.cluster_centring = served.threshold, served.centring
        out += [OutRecord(self.settings.vectors_topic, e.doc_id.encode(), e.to_bytes()) for e in embedded]
        return out


def cluster_config(settings: Settings, dim: int, doc: EmbeddedDocument | None = None) -> ClusterConfig:
    """The space the vector's model was tuned in, as the vector carries it from the embed stage (a vector that
    carries none: the served model's), through the one rule of ``pipeline.models.cluster_space``."""
    if doc is not None and doc.cluster_threshold:
        centring, threshold, _, _ = cluster_space(settings, doc.cluster_threshold, doc.cluster_centring)
    else:
        served = served_model(settings, provision=False)
        centring, threshold = served.centring, served.threshold
    return ClusterConfig(dim=dim, threshold=threshold, **(settings.cluster_options | {"centring": centring}))


class ClusterStage(Stage):
    """One clusterer per embedding space ("generation"), keyed by the vectors' model version.

    A promoted model starts a new generation: vectors of different models are not comparable, so its documents
    found new events rather than joining the old model's. The previous generations stay (up to
    ``MAX_GENERATIONS``) for vectors of the old model still in flight. A document already assigned in any
    generation keeps that event, so a document embedded twice across a model switch (a redelivery) never gets
    a second event id.

    With ``state_dir`` every batch's new decisions, merges included, are logged durably before ``process``
    returns them, and the stage starts from what the folder holds (``pipeline.flow.state``): a restarted worker
    gives every document it already decided the same event id. Merges go to the compacted ``merges_topic``,
    keyed by the absorbed id; a restarted worker publishes the merges of its live window again with its first
    batch, since a crash may have come between logging a merge and producing it (the same key and value again
    change nothing on a compacted topic).
    """

    name = "cluster"
    MAX_GENERATIONS = 3

    def __init__(self, settings: Settings, state_dir: str | Path | None = None):
        super().__init__(settings)
        self.generations: dict[str, IncrementalClusterer] = {}  # model version → clusterer, oldest first
        self.offsets: dict[str, int] = {}  # "topic:partition" → last input offset decided
        self.store: ClusterStateStore | None = None
        self.unconfirmed_merges: list[OutRecord] = []  # recovered merges, produced again with the first batch
        if state_dir is not None:
            self.store = ClusterStateStore(state_dir, settings.snapshot_every_docs, settings.snapshot_every_s)
            recovered = self.store.recover(self._add_generation)
            self.generations, self.offsets = recovered.generations, recovered.offsets
            log.warning("cluster: state %s: snapshot %d + %d logged batches (%d documents, %d torn bytes cut); "
                        "%d live documents; input decided up to %s", self.store.folder, recovered.snapshot,
                        recovered.logged_batches, recovered.logged_documents, recovered.torn_bytes,
                        sum(g.live_documents for g in self.generations.values()), self.offsets or "nothing")
            self.unconfirmed_merges = [self._merge_record(m) for g in self.generations.values()
                                       for m in g.live_merges()]

    def _merge_record(self, merge) -> OutRecord:
        return OutRecord(self.settings.merges_topic, merge.event_id.encode(), merge.to_bytes())

    @property
    def clusterer(self) -> IncrementalClusterer | None:
        """The newest generation."""
        return next(reversed(self.generations.values()), None)

    def _add_generation(self, version: str, config: ClusterConfig,
                        generations: dict[str, IncrementalClusterer]) -> IncrementalClusterer:
        clusterer = generations[version] = IncrementalClusterer(config)
        while len(generations) > self.MAX_GENERATIONS:
            generations.pop(next(iter(generations)))
        return clusterer

    def _generation(self, doc: EmbeddedDocument) -> IncrementalClusterer:
        clusterer = self.generations.get(doc.model_version)
        if clusterer is None:
            config = cluster_config(self.settings, len(doc.vector), doc)
            clusterer = self._add_generation(doc.model_version, config, self.generations)
            if self.store is not None:
                self.store.log_generation(doc.model_version, config)
            log.warning("cluster: new generation for %s (%d-d, threshold %.3f, %s centring)", doc.model_version,
                        config.dim, config.threshold, config.centring)
        return clusterer

    def process(self, batch: list[InRecord]) -> list[OutRecord]:
        out, self.unconfirmed_merges = self.unconfirmed_merges, []
        groups: dict[str, list[EmbeddedDocument]] = {}
        for record in batch:
            try:
                doc = EmbeddedDocument.from_bytes(record.value or b"")
            except ValueError as err:
                out.append(self.dead_letter(record, "bad-vector", f"not an EmbeddedDocument record: {err}"))
                continue
            clusterer = self._generation(doc)
            if len(doc.vector) != clusterer.config.dim:
                out.append(self.dead_letter(record, "dimension-mismatch", f"{len(doc.vector)}-d vector from "
                                            f"{doc.model_version}, whose index is {clusterer.config.dim}-d"))
                continue
            known = next(((v, g) for v, g in self.generations.items()
                          if v != doc.model_version and doc.doc_id in g.doc_events), None)
            if known is not None:
                assignment = known[1].known_assignment(doc)
                out.append(OutRecord(self.settings.events_topic, doc.doc_id.encode(), assignment.to_bytes()))
                continue
            groups.setdefault(doc.model_version, []).append(doc)
        decisions: list[Decision] = []
        merges: list[MergeDecision] = []
        try:
            for version, docs in groups.items():
                generation = self.generations[version]
                undecided = {d.doc_id for d in docs if d.doc_id not in generation.doc_events}
                assigned = generation.assign(docs)
                for doc, assignment in zip(docs, assigned.assignments):
                    out.append(OutRecord(self.settings.events_topic, assignment.doc_id.encode(), assignment.to_bytes()))
                    if doc.doc_id in undecided and generation.doc_events.get(doc.doc_id) == assignment.event_id:
                        undecided.discard(doc.doc_id)  # once: a batch may carry a document twice
                        decisions.append(Decision(doc, assignment.event_id))
                for after, merge in assigned.merges:  # `after`: counted in this generation's decisions
                    merges.append(MergeDecision(after, merge))
                    out.append(self._merge_record(merge))
        finally:
            # Even when a later group fails: what is decided in memory is logged before anything is produced
            # (the record-by-record retry would emit it as already known).
            for record in batch:
                where = f"{record.topic}:{record.partition}"
                if record.offset > self.offsets.get(where, -1):
                    self.offsets[where] = record.offset
            if self.store is not None and decisions:
                self.store.log_batch(decisions, self.offsets, merges)
        if self.store is not None and self.store.snapshot_due():
            self.store.snapshot(self.generations, self.offsets)
        return out

    def close(self) -> None:
        """Snapshot (a restart then replays no log) and release the state folder."""
        if self.store is not None:
            if self.store.logged_since_snapshot:
                self.store.snapshot(self.generations, self.offsets)
            self.store.close()
            self.store = None


STAGES = dict(zip(STAGE_NAMES, (ParseStage, EmbedStage, ClusterStage)))
