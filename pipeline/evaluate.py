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
