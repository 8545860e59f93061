"""Learning curves of student directions from their training folders: dev F1 (stream) and validation cosine
against the number of labelled documents, one line per direction, as a PNG and a Markdown table.

    python bench/learning_curve.py --run "static=runs/s6k,runs/s20k,runs/sall" --run "ffn=..." --out curve.png

Each run folder is a ``newsevents students train --out`` folder; its best epoch (lowest validation loss, the
saved model) is the point plotted, at the run's number of training documents.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.plots import pyplot, save_figure  # noqa: E402


def best_epoch(run: Path) -> dict:
    history = json.loads((run / "history.json").read_text())
    best = min(history, key=lambda h: h["val_loss"])
    training = json.loads((run / "model" / "training.json").read_text())
    return {"documents": training["documents"], "epoch": best["epoch"], "epochs": len(history),
            "val_cosine": best["val_cosine_to_teacher"], "dev_f1": best.get("dev", {}).get("f1"),
            "threshold": best.get("dev", {}).get("threshold"), "run": str(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR,DIR,...")
    parser.add_argument("--quoted", action="append", default=[], metavar="NAME=DOCS:F1:COSINE;...",
                        help="points measured elsewhere (e.g. an earlier session's runs), drawn dashed")
    parser.add_argument("--out", default="learning_curve.png")
    parser.add_argument("--teacher-f1", type=float, help="a horizontal line: the centred teacher's dev F1")
    args = parser.parse_args()
    curves = {}
    for spec in args.run:
        name, _, dirs = spec.partition("=")
        curves[name] = sorted((best_epoch(Path(d)) for d in dirs.split(",") if d), key=lambda p: p["documents"])

    quoted = {}
    for spec in args.quoted:
        name, _, points = spec.partition("=")
        quoted[name] = [dict(zip(("documents", "dev_f1", "val_cosine"), map(float, p.split(":"))))
                        for p in points.split(";")]
    fig, (f1_axis, cos_axis) = pyplot().subplots(1, 2, figsize=(11, 4))
    for name, points in curves.items():
        docs = [p["documents"] for p in points]
        f1_axis.plot(docs, [p["dev_f1"] for p in points], marker="o", label=name)
        cos_axis.plot(docs, [p["val_cosine"] for p in points], marker="o", label=name)
    for name, points in quoted.items():
        docs = [p["documents"] for p in points]
        f1_axis.plot(docs, [p["dev_f1"] for p in points], marker="x", linestyle="--", label=name)
        cos_axis.plot(docs, [p["val_cosine"] for p in points], marker="x", linestyle="--", label=name)
    if args.teacher_f1:
        f1_axis.axhline(args.teacher_f1, color="grey", linestyle="--", label="centred teacher")
        f1_axis.axhline(args.teacher_f1 - 0.01, color="grey", linestyle=":", label="ship bar (teacher - 0.01)")
    for axis, label in ((f1_axis, "dev-pair F1 (stream clusterer)"), (cos_axis, "validation cosine to teacher")):
        axis.set_xscale("log")
        axis.set_xlabel("labelled documents")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    f1_axis.legend(fontsize=8)
    save_figure(fig, Path(args.out), "student learning curves")
    print("| direction | documents | best epoch | validation cosine | dev F1 (stream) | threshold |")
    print("|---|---|---|---|---|---|")
    for name, points in curves.items():
        for p in points:
            print(f"| {name} | {p['documents']:,} | {p['epoch']}/{p['epochs']} | {p['val_cosine']:.4f} | "
                  f"{p['dev_f1']:.3f} | {p['threshold']} |")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
