"""Stream against batch average link on the same vectors: which space to link in, and whether merges close the gap.

    python bench/events_f1.py --labels DIR          # teacher vectors from a `newsevents teacher label` folder
    python bench/events_f1.py --model-dir DIR       # or embed the contest sample with a model (the student)

For each space (raw, centred on the window's global mean, centred per language) and each rule (stream without
merges, as before issue 13; stream with merges; batch average link per day, centred the same way), every
threshold of the grid is scored on the dev pairs and the best is printed, side by side, in one run. Then, for the
shipped configuration (language centring + merges), F1 / precision / recall per language and per day for stream
and batch at their own best thresholds, the number of merges, the largest events, and the best F1 per-language
thresholds could reach (an upper bound: each language at its own best threshold). The F1-vs-threshold curves go
to ``--plot``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluate import embedded_documents, evaluate, in_published_order, read_pairs  # noqa: E402
from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer  # noqa: E402
from pipeline.ops.demo import DEFAULT_INPUT  # noqa: E402
from pipeline.plots import pyplot, save_figure  # noqa: E402

DEFAULT_PAIRS = DEFAULT_INPUT.parents[1] / "eval" / "dev_pairs.tsv"
SPACES = {"raw": "none", "global": "global", "language": "language"}


def best(rows):
    return max(rows, key=lambda r: r.overall.f1)


def stream_stats(docs, threshold: float) -> tuple[int, list[int]]:
    """Merges and the five largest stories of the shipped stream at ``threshold``."""
    clusterer = IncrementalClusterer(ClusterConfig(dim=len(docs[0].vector), threshold=threshold))
    ordered, largest = in_published_order(docs), []
    for start in range(0, len(ordered), 64):
        clusterer.assign(ordered[start:start + 64])
        sizes = sorted(clusterer.event_sizes().values(), reverse=True)[:5]
        largest = max(largest, sizes)  # the window moves on: the largest seen at any point
    return clusterer.merge_count, largest


def per_language_oracle(pairs, docs, grid, clustering) -> float:
    """F1 if each language's pairs were scored at that language's best threshold (stream)."""
    reports = [evaluate(pairs, docs, "stream", t, clustering) for t in grid]
    tp = fp = fn = 0
    for lang in reports[0].by_lang:
        top = max((r.by_lang[lang] for r in reports if lang in r.by_lang), key=lambda s: s.f1)
        tp, fp, fn = tp + top.true_positives, fp + top.false_positives, fn + top.false_negatives
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return 2 * precision * recall / max(precision + recall, 1e-12)


def breakdown(name: str, report) -> list[str]:
    lines = [f"  {name:<7} {report.overall.f1:.4f} P {report.overall.precision:.3f} R {report.overall.recall:.3f} "
             f"@ {report.threshold:.2f}"]
    for group, scores in (("lang", report.by_lang), ("day", report.by_day)):
        for key, s in sorted(scores.items(), key=lambda kv: -kv[1].pairs_scored):
            lines.append(f"      {group} {key:<11} F1 {s.f1:.3f} P {s.precision:.3f} R {s.recall:.3f} "
                         f"({s.pairs_scored} pairs)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", help="a `newsevents teacher label` folder of the contest sample")
    parser.add_argument("--model-dir", help="embed the contest sample with this model instead")
    parser.add_argument("--input", default=str(DEFAULT_INPUT))
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    parser.add_argument("--grid", default="0.40:0.96:0.02", help="from:to:step")
    parser.add_argument("--plot", default="bench/events_f1.png")
    args = parser.parse_args()
    encoder = None
    if args.model_dir:
        from pipeline.models import load_encoder

        encoder = load_encoder(Path(args.model_dir))
    docs, _, _ = embedded_documents([args.input], encoder=encoder, labels_dir=args.labels, max_chars=1500,
                                    batch_size=64)
    pairs = read_pairs(args.pairs)
    start, stop, step = (float(x) for x in args.grid.split(":"))
    grid = [round(float(t), 3) for t in np.arange(start, stop + 1e-9, step)]
    print(f"{len(docs)} documents, {len(pairs)} pairs, model {docs[0].model_version}, thresholds {grid[0]}..{grid[-1]}")
    print(f"{'space':<9} | {'stream, no merges':^26} | {'stream, merges':^26} | {'batch average link':^26}")
    curves = {}
    for space, centring in SPACES.items():
        cells = []
        for rule, mode, merge in (("stream, no merges", "stream", False), ("stream", "stream", True),
                                  ("batch", "batch", True)):
            rows = [evaluate(pairs, docs, mode, t, {"centring": centring, "merge_events": merge}) for t in grid]
            curves[(space, rule)] = [r.overall.f1 for r in rows]
            top = best(rows)
            cells.append(f"{top.overall.f1:.4f} P {top.overall.precision:.3f} R {top.overall.recall:.3f} "
                         f"@{top.threshold:.2f}")
        print(f"{space:<9} | " + " | ".join(cells), flush=True)
    shipped = {"centring": "language", "merge_events": True}
    stream = best([evaluate(pairs, docs, "stream", t, shipped) for t in grid])
    batch = best([evaluate(pairs, docs, "batch", t, shipped) for t in grid])
    print("\nshipped: language centring + merges, each at its own best threshold")
    print("\n".join(breakdown("stream", stream) + breakdown("batch", batch)))
    merges, largest = stream_stats(docs, stream.threshold)
    print(f"  stream: {merges} merges, {stream.clusters} stories for {stream.documents} documents, "
          f"largest {largest}; batch: {batch.clusters} clusters")
    print(f"  per-language thresholds, upper bound: {per_language_oracle(pairs, docs, grid, shipped):.4f} "
          f"(one threshold: {stream.overall.f1:.4f})")
    plot(curves, grid, args.plot, docs[0].model_version)


def plot(curves: dict, grid: list[float], path: str, version: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SPACES), figsize=(4.5 * len(SPACES), 3.6), sharey=True)
    for ax, space in zip(axes, SPACES):
        for (where, rule), f1 in curves.items():
            if where == space:
                ax.plot(grid, f1, label=rule)
        ax.set_title(f"{space} space")
        ax.set_xlabel("threshold")
    axes[0].set_ylabel("dev pair F1")
    axes[0].legend(fontsize="small")
    fig.suptitle(version, fontsize="small")
    print(f"plot: {save_figure(fig, Path(path))}")


if __name__ == "__main__":
    main()
