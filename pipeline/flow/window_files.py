"""One clusterer's window on disk: hnswlib's index file, the event and centre sums as .npy, the bookkeeping as
JSON. ``pipeline.flow.state`` puts one such folder per generation in each snapshot and makes it atomic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hnswlib
import numpy as np
import orjson

from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer
from pipeline.flow.event_table import EventTable


def save_window(clusterer: IncrementalClusterer, folder: Path) -> None:
    """The whole window into ``folder``, which must exist."""
    with clusterer._lock:
        clusterer.index.save_index(str(folder / "index.bin"))
        events, sums = clusterer.table.to_state(clusterer.config.dim)
        np.save(folder / "event_sums.npy", sums)
        centres, centre_sums = clusterer.centre.to_state()
        np.save(folder / "centre_sums.npy", centre_sums)
        (folder / "clusterer.json").write_bytes(orjson.dumps({
            "config": dataclasses.asdict(clusterer.config),
            "capacity": clusterer.index.get_max_elements(),
            "next_label": clusterer.next_label,
            "newest_bucket": clusterer.newest_bucket,
            "buckets": {str(n): labels for n, labels in clusterer.buckets.items()},
            "labels": list(clusterer.label_docs), "label_docs": list(clusterer.label_docs.values()),
            "doc_events": clusterer.doc_events, **events, "centres": centres,
        }))


def load_window(folder: Path) -> IncrementalClusterer:
    state = orjson.loads((folder / "clusterer.json").read_bytes())
    # A snapshot from before centring and merges keeps linking as it did: its index holds raw vectors.
    config = {"centring": "none", "merge_events": False} | state["config"]
    clusterer = IncrementalClusterer(ClusterConfig(**config))
    index = hnswlib.Index(space="ip", dim=clusterer.config.dim)
    index.load_index(str(folder / "index.bin"), max_elements=state["capacity"], allow_replace_deleted=True)
    index.set_ef(max(clusterer.config.hnsw_ef, clusterer.config.neighbours))
    clusterer.index = index
    clusterer.next_label = state["next_label"]
    clusterer.newest_bucket = state["newest_bucket"]
    clusterer.buckets = {int(n): labels for n, labels in state["buckets"].items()}
    clusterer.label_docs = dict(zip(state["labels"], state["label_docs"]))
    clusterer.doc_events = state["doc_events"]
    clusterer.table = EventTable.from_state(state, np.load(folder / "event_sums.npy"))
    if "centres" in state:
        clusterer.centre.load_state(state["centres"], np.load(folder / "centre_sums.npy"))
    return clusterer
