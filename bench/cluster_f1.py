"""Dev-pair F1 of the stream clusterer beside the batch average-link baseline, over a threshold sweep.

    python bench/cluster_f1.py [--model-dir DIR] [--cache vectors.npz | --labels DIR] [--input TAR] [--pairs TSV]

Parses the contest sample, embeds every document once (cached in --cache), clusters each day's documents
both ways and prints one table, so the two clusterers are compared in one run on the same vectors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import Settings  # noqa: E402
from pipeline.ops.demo import DEFAULT_INPUT  # noqa: E402
from pipeline.flow.embed import DEFAULT_MAX_CHARS  # noqa: E402
from pipeline.models import load_encoder  # noqa: E402
from pipeline.evaluate import cluster_labels, embedded_documents, in_published_order, read_pairs, score_pairs  # noqa: E402
from pipeline.records import EmbeddedDocument  # noqa: E402

DEFAULT_PAIRS = DEFAULT_INPUT.parents[1] / "eval" / "dev_pairs.tsv"
# The linkage rules compared on raw vectors, as measured in the README; centring and merges: bench/events_f1.py
RAW = {"centring": "none", "merge_events": False}


def embedded_corpus(args) -> list[EmbeddedDocument]:
    """The same documents and vectors `newsevents eval` uses: embedded now, from a label folder, or from --cache."""
    cache = Path(args.cache) if args.cache and not args.labels else None
    if cache and cache.exists():
        data = np.load(cache, allow_pickle=False)
        return [EmbeddedDocument(doc_id=str(i), vector=v, model_version=str(data["version"]), published_time=str(t) or None)
                for i, v, t in zip(data["ids"], data["vecs"], data["times"])]
    encoder = None if args.labels else load_encoder(args.model_dir, max_length=args.max_length)
    started = time.perf_counter()
    out, _, _ = embedded_documents([args.input], encoder=encoder, labels_dir=args.labels,
                                   max_chars=DEFAULT_MAX_CHARS, batch_size=32)
    print(f"{len(out)} documents ready in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    if cache:
        np.savez(cache, ids=np.array([d.doc_id for d in out]), vecs=np.stack([d.vector for d in out]),
                 times=np.array([d.published_time or "" for d in out]), version=encoder.version)
    return out


def nearest_labels(docs: list[EmbeddedDocument], threshold: float) -> dict[str, str]:
    """Baseline linkage: join the event of the single nearest earlier document (exact search)."""
    ordered = in_published_order(docs)
    vectors = np.stack([d.vector for d in ordered])
    events: list[int] = []
    for i in range(len(ordered)):
        if i:
            similarities = vectors[:i] @ vectors[i]
            j = int(np.argmax(similarities))
            events.append(events[j] if similarities[j] >= threshold else i)
        else:
            events.append(0)
    return {d.doc_id: str(e) for d, e in zip(ordered, events)}


def largest_event_coherence(docs: list[EmbeddedDocument], labels: dict[str, str], top: int = 5) -> float:
    """Mean pairwise similarity inside the ``top`` largest events: chaining shows up as a low value."""
    by_event: dict[str, list[np.ndarray]] = {}
    vectors = {d.doc_id: d.vector for d in docs}
    for doc_id, event in labels.items():
        by_event.setdefault(event, []).append(vectors[doc_id])
    largest = sorted(by_event.values(), key=len, reverse=True)[:top]
    means = []
    for members in largest:
        m = np.stack(members)
        n = len(m)
        if n > 1:
            means.append(float(((m @ m.T).sum() - n) / (n * n - n)))
    return float(np.mean(means)) if means else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(Settings().teacher_dir))
    parser.add_argument("--input", default=str(DEFAULT_INPUT))
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    parser.add_argument("--cache", help="npz of vectors to reuse (written on the first run)")
    parser.add_argument("--labels", help="a `newsevents teacher label` folder to read vectors from instead")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--thresholds", default="0.86,0.87,0.88,0.89,0.90,0.91,0.92")
    parser.add_argument("--center-on", metavar="LABELS",
                        help="subtract the mean vector of this label folder (e.g. the teacher's corpus labels) "
                             "and renormalise: what a student with centred targets learns")
    args = parser.parse_args()
    docs = embedded_corpus(args)
    if args.center_on:
        from teacher.label import read_shards

        centre = np.concatenate([s["vectors"] for s in read_shards(Path(args.center_on))]).mean(axis=0)
        print(f"centred on the mean of {args.center_on} (norm {np.linalg.norm(centre):.3f})")
        for doc in docs:
            vector = doc.vector - centre
            doc.vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    pairs = read_pairs(args.pairs)
    print(f"{len(docs)} documents, {len(pairs)} pairs, model {docs[0].model_version}")
    print("F1 / precision / recall on the pairs; coh = mean pairwise similarity inside the 5 largest events")
    print(f"{'threshold':>9} | {'batch average link':^24} | {'stream, nearest document':^30} | "
          f"{'stream, this clusterer':^30} | stream s")
    for threshold in (float(t) for t in args.thresholds.split(",")):
        b = score_pairs(pairs, cluster_labels(docs, 'batch', threshold, clustering=RAW))
        nearest = nearest_labels(docs, threshold)
        n = score_pairs(pairs, nearest)
        started = time.perf_counter()
        ours = cluster_labels(docs, 'stream', threshold, clustering=RAW)
        took = time.perf_counter() - started
        s = score_pairs(pairs, ours)
        print(f"{threshold:>9.3f} | {b.f1:.3f} {b.precision:.3f} {b.recall:.3f}        | "
              f"{n.f1:.3f} {n.precision:.3f} {n.recall:.3f} coh {largest_event_coherence(docs, nearest):.3f} | "
              f"{s.f1:.3f} {s.precision:.3f} {s.recall:.3f} coh {largest_event_coherence(docs, ours):.3f} | "
              f"{took:5.1f}  (pairs missing {s.pairs_missing})")


if __name__ == "__main__":
    main()
