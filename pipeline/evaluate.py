"""Pair metrics of the Dialogue Evaluation 2021: a labelled pair is predicted "same event" iff both documents
got the same cluster; F1, precision and recall of the positive class."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class LabelledPair:
    first: str  # document id (contest file id) or URL, whichever the file has
    second: str
    same_event: bool
    lang: str = ""
    confidence: int = 0


@dataclass(frozen=True)
class PairScore:
    f1: float
    precision: float
    recall: float
    pairs_scored: int
    pairs_missing: int
    true_positives: int
    false_positives: int
    false_negatives: int


def read_pairs(path: str | Path) -> list[LabelledPair]:
    """The project's pair files (first_doc, second_doc, quality) or Dialogue-2021 ones (first_url, second_url)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        columns = set(reader.fieldnames or [])
        if {"first_doc", "second_doc"} <= columns:
            first, second = "first_doc", "second_doc"
        elif {"first_url", "second_url"} <= columns:
            first, second = "first_url", "second_url"
        else:
            raise ValueError(f"{path}: needs columns first_doc/second_doc or first_url/second_url, has {sorted(columns)}")
        if "quality" not in columns:
            raise ValueError(f"{path}: no 'quality' column")
        pairs = []
        for row in reader:
            quality = (row.get("quality") or "").strip().upper()
            if quality not in {"OK", "BAD"}:
                continue
            confidence = row.get("confidence") or "0"
            pairs.append(LabelledPair(row[first].strip(), row[second].strip(), quality == "OK",
                                      (row.get("lang") or "").strip(), int(confidence) if confidence.isdigit() else 0))
        return pairs


def score_pairs(pairs: Iterable[LabelledPair], cluster_of: Mapping[str, object]) -> PairScore:
    tp = fp = fn = scored = missing = 0
    for pair in pairs:
        if pair.first not in cluster_of or pair.second not in cluster_of:
            missing += 1
            continue
        scored += 1
        predicted = cluster_of[pair.first] == cluster_of[pair.second]
        tp += predicted and pair.same_event
        fp += predicted and not pair.same_event
        fn += (not predicted) and pair.same_event
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairScore(f1, precision, recall, scored, missing, tp, fp, fn)


def average_link_clusters(vectors: np.ndarray, distance_threshold: float) -> np.ndarray:
    """The Dialogue-2021 baseline: agglomerative clustering, average linkage, cosine distance."""
    from sklearn.cluster import AgglomerativeClustering

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=int)
    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                    distance_threshold=distance_threshold)
    return model.fit_predict(vectors)


# --- the evaluation run: documents → vectors → clusters per day → pair scores --------------------------------------
@dataclass
class EvalReport:
    mode: str
    threshold: float
    overall: PairScore
    by_lang: dict[str, PairScore]
    by_day: dict[str, PairScore]
    documents: int
    clusters: int
    model_version: str

    @property
    def avg_cluster_size(self) -> float:
        return self.documents / self.clusters if self.clusters else 0.0

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"mode": self.mode, "threshold": self.threshold, "model_version": self.model_version,
                **{k: v for k, v in asdict(self.overall).items()}, "avg_cluster_size": round(self.avg_cluster_size, 3),
                "documents": self.documents, "clusters": self.clusters,
                "by_lang": {k: asdict(v) for k, v in sorted(self.by_lang.items())},
                "by_day": {k: asdict(v) for k, v in sorted(self.by_day.items())}}


def day_of(published_time: str | None) -> str:
    return published_time[:10] if published_time else "undated"


def in_published_order(docs: list) -> list:
    """The order a stream would see: by published time (undated first), ties in input order."""
    from pipeline.flow.cluster import document_epoch_s

    return sorted(docs, key=lambda d: document_epoch_s(d) or 0.0)


def cluster_labels(docs: list, mode: str, threshold: float, batch_size: int = 64,
                   clustering: Mapping | None = None) -> dict[str, str]:
    """doc id → cluster. ``batch``: average link per day (the Dialogue baseline), on vectors centred the way the
    stream centres them (each day's mean per language). ``stream``: the production clusterer fed in
    published-time order, micro-batch by micro-batch, with merges resolved (every document labelled by the story
    its event ends up in). ``clustering``: ClusterConfig fields to change (centring, merge_events, ...)."""
    from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer

    if not docs:
        return {}
    config = ClusterConfig(dim=len(docs[0].vector), threshold=threshold, **dict(clustering or {}))
    if mode == "batch":
        return _batch_labels(docs, config)
    if mode != "stream":
        raise ValueError(f"mode must be batch or stream, not {mode!r}")
    ordered = in_published_order(docs)
    clusterer = IncrementalClusterer(config)
    labels, merged_into = {}, {}
    for start in range(0, len(ordered), batch_size):
        assigned = clusterer.assign(ordered[start:start + batch_size])
        labels.update((a.doc_id, a.event_id) for a in assigned.assignments)
        merged_into.update((m.event_id, m.into) for _, m in assigned.merges)
    return {doc_id: resolve_event(event_id, merged_into) for doc_id, event_id in labels.items()}


def resolve_event(event_id: str, merged_into: Mapping[str, str]) -> str:
    """Follow merges from an event id to the story it ended up in."""
    seen = set()
    while event_id in merged_into and event_id not in seen:
        seen.add(event_id)
        event_id = merged_into[event_id]
    return event_id


def _batch_labels(docs: list, config) -> dict[str, str]:
    from pipeline.flow.centring import WindowCentre

    by_day: dict[str, list] = {}
    for doc in docs:
        by_day.setdefault(day_of(doc.published_time), []).append(doc)
    labels = {}
    for day, members in by_day.items():
        vectors = np.stack([np.asarray(d.vector, dtype=np.float32) for d in members])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        centre = WindowCentre(config.dim, config.centring, config.centring_prior_docs)
        langs = [d.lang for d in members]
        for lang, vector in zip(langs, vectors):
            centre.add(0, lang, vector)
        clusters = average_link_clusters(centre.apply(vectors, langs), 1.0 - config.threshold)
        labels.update({d.doc_id: f"{day}-{c}" for d, c in zip(members, clusters)})
    return labels


def evaluate(pairs: list[LabelledPair], docs: list, mode: str, threshold: float,
             clustering: Mapping | None = None) -> EvalReport:
    """``docs``: EmbeddedDocuments of every document of the days to cluster (pairs may name only some)."""
    labels = cluster_labels(docs, mode, threshold, clustering=clustering)
    by_url = {}
    for doc in docs:
        if doc.url and doc.url not in by_url:
            by_url[doc.url] = doc.doc_id
    meta = {d.doc_id: d for d in docs}

    def key(ref: str) -> str:
        return ref if ref in labels else by_url.get(ref, ref)

    resolved = [LabelledPair(key(p.first), key(p.second), p.same_event, p.lang, p.confidence) for p in pairs]
    groups_lang: dict[str, list[LabelledPair]] = {}
    groups_day: dict[str, list[LabelledPair]] = {}
    for pair in resolved:
        first = meta.get(pair.first)
        lang = pair.lang or (first.lang if first else "unknown")
        groups_lang.setdefault(lang, []).append(pair)
        groups_day.setdefault(day_of(first.published_time) if first else "missing", []).append(pair)
    return EvalReport(
        mode=mode, threshold=threshold, overall=score_pairs(resolved, labels),
        by_lang={k: score_pairs(v, labels) for k, v in groups_lang.items()},
        by_day={k: score_pairs(v, labels) for k, v in groups_day.items()},
        documents=len(labels), clusters=len(set(labels.values())),
        model_version=docs[0].model_version if docs else "")


def embedded_documents(inputs: list[str], *, encoder=None, labels_dir: str | None = None, max_chars: int,
                       batch_size: int = 32, progress: bool = False):
    """Every parseable document of ``inputs`` with its vector: encoded now, or read from a teacher label folder.
    Returns (documents, input stats, ids without a vector)."""
    from pipeline.flow.documents import InputStats, iter_documents
    from pipeline.flow.embed import embed
    from pipeline.records import EmbeddedDocument

    stats = InputStats()
    parsed = list(iter_documents(inputs, stats))
    if labels_dir is None:
        from tqdm import tqdm

        out = []
        for start in tqdm(range(0, len(parsed), 256), desc="embed", unit="x256 docs", disable=not progress):
            out += embed(parsed[start:start + 256], encoder, batch_size=batch_size, max_chars=max_chars)
        return out, stats, []
    from pipeline.label_folder import load_manifest, read_shards

    version = load_manifest(Path(labels_dir))["teacher"]
    vectors = {}
    for shard in read_shards(Path(labels_dir)):
        vectors.update(zip(shard["doc_ids"].tolist(), shard["vectors"]))
    out = [EmbeddedDocument(doc_id=d.doc_id, vector=vectors[d.doc_id], model_version=version, title=d.title,
                            published_time=d.published_time, lang=d.lang, url=d.url)
           for d in parsed if d.doc_id in vectors]
    return out, stats, [d.doc_id for d in parsed if d.doc_id not in vectors]


# --- the one threshold sweep: training, ship, retrain, `eval --tune` and `students evaluate` all call it ----------
THRESHOLD_GRID = tuple(round(float(x), 2) for x in np.arange(0.40, 0.965, 0.02))
# every space the stream can link in (pipeline.flow.centring), the stream's default first: it wins ties
CENTRINGS = ("language", "global", "none")


@dataclass
class Sweep:
    """The best report of a sweep, the centring it was found in, and every report of that centring by mode."""
    best: EvalReport
    centring: str
    rows: dict[str, list[EvalReport]]


def threshold_sweep(pairs: list[LabelledPair], docs: list, modes: list[str], grid: Iterable[float] = THRESHOLD_GRID,
                    clustering: Mapping | None = None, centrings: Iterable[str] | None = None) -> Sweep:
    """Every mode at every threshold of ``grid`` in each of ``centrings`` (default: the one ``clustering`` names,
    else the stream's default), and the best report of the last mode (the stream when both run). Ties: on equal
    F1 the threshold nearest the grid's middle (the least fragile), then the centring listed first.
    ``clustering``: the rest of the rules the stream links by (merges, ...), which the threshold is tuned for."""
    from pipeline.flow.centring import DEFAULT_CENTRING

    grid = list(grid)
    clustering = dict(clustering or {})
    spaces = list(centrings or [clustering.get("centring", DEFAULT_CENTRING)])
    middle = float(np.median(grid))
    found: Sweep | None = None
    for centring in spaces:
        options = clustering | {"centring": centring}
        rows = {mode: [evaluate(pairs, docs, mode, t, options) for t in grid] for mode in modes}
        best = max(rows[modes[-1]], key=lambda r: (r.overall.f1, -abs(r.threshold - middle)))
        if found is None or best.overall.f1 > found.best.overall.f1:
            found = Sweep(best, centring, rows)
    return found
