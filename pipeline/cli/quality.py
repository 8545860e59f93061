"""``newsevents eval | bench``: clustering quality on labelled pairs, and speed side by side."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import orjson

from pipeline.cli.common import add_settings, fail, load_settings
from pipeline.config import Settings


def _format_score(name: str, score) -> str:
    return (f"{name:<14} F1 {score.f1:.3f}  P {score.precision:.3f}  R {score.recall:.3f}  "
            f"pairs {score.pairs_scored:>4} (+{score.pairs_missing} missing)")


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.evaluate import THRESHOLD_GRID, embedded_documents, evaluate, read_pairs, threshold_sweep
    from pipeline.models import (load_encoder, model_in_its_space, served_model, tuning_spaces,
                                 write_cluster_threshold)

    settings = load_settings(args)
    for path in [args.pairs, *args.input]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    pairs = [p for p in read_pairs(args.pairs) if p.confidence >= args.min_confidence]
    if not pairs:
        return fail(f"{args.pairs}: no labelled pairs with confidence >= {args.min_confidence}")
    # --labels are the teacher's vectors: linked in the teacher's space
    served = model_in_its_space(settings, settings.teacher_dir, "--labels") if args.labels else served_model(settings)
    print(f"model: {served.describe()}", file=sys.stderr)
    encoder = None
    if args.labels is None:
        encoder = load_encoder(served.folder, device=settings.device, max_length=settings.max_length,
                               quantize=settings.quantize or None, threads=settings.threads or None)
    docs, stats, unlabelled = embedded_documents(args.input, encoder=encoder, labels_dir=args.labels,
                                                 max_chars=settings.max_chars, progress=not args.json)
    if not docs:
        return fail("no documents could be read from --input: " + "; ".join(stats.problems[:5]))
    modes = ["batch", "stream"] if args.mode == "both" else [args.mode]
    centring, threshold = served.centring, served.threshold
    clustering = settings.cluster_options | {"centring": centring}
    if args.tune:
        grid = THRESHOLD_GRID if args.tune_from is None and args.tune_to is None and args.tune_step is None else [
            round(float(x), 3) for x in np.arange(args.tune_from or THRESHOLD_GRID[0],
                                                  (args.tune_to or THRESHOLD_GRID[-1]) + 1e-9, args.tune_step or 0.02)]
        sweep = threshold_sweep(pairs, docs, modes, grid, clustering, centrings=tuning_spaces(settings))
        rows, best, centring = sweep.rows, sweep.best, sweep.centring
        if args.json:
            print(orjson.dumps({"grid": {m: [r.to_dict() for r in rs] for m, rs in rows.items()},
                                "best": best.to_dict(), "centring": centring}).decode())
        else:
            print(f"{'threshold':>9} " + " ".join(f"{m + ' F1':>12}" for m in modes) + f"   ({centring} centring)")
            for i, t in enumerate(grid):
                print(f"{t:>9.3f} " + " ".join(f"{rows[m][i].overall.f1:>12.3f}" for m in modes))
            print(f"best ({best.mode}, {centring} centring): {best.threshold:.3f}, F1 {best.overall.f1:.3f}")
        if args.write_threshold:
            if args.labels is not None:
                return fail("--write-threshold needs the model itself (--model-dir), not --labels")
            write_cluster_threshold(served.folder, best.threshold, tuned_on=f"{args.pairs} ({best.mode})",
                                    centring=centring)
            print(f"wrote cluster_threshold {best.threshold:.3f} to {served.folder}", file=sys.stderr)
        return 0
    reports = [evaluate(pairs, docs, mode, threshold, clustering) for mode in modes]
    if args.json:
        out = reports[0].to_dict() if len(reports) == 1 else {r.mode: r.to_dict() for r in reports}
        out_extra = {"unparseable": stats.unparseable, "unreadable": stats.unreadable, "without_vector": len(unlabelled)}
        print(orjson.dumps({**out, **out_extra}).decode())
        return 0
    for report in reports:
        print(f"\n{report.mode} clustering at similarity {report.threshold:.3f} ({centring} centring), "
              f"{report.documents} documents in "
              f"{report.clusters} clusters (average size {report.avg_cluster_size:.2f}), model {report.model_version}")
        print(_format_score("all", report.overall))
        for lang, score in sorted(report.by_lang.items(), key=lambda kv: -kv[1].pairs_scored):
            print(_format_score(f"  lang {lang}", score))
        for day, score in sorted(report.by_day.items()):
            print(_format_score(f"  day {day}", score))
    if stats.unparseable or unlabelled:
        print(f"\n{stats.unparseable} documents did not parse, {len(unlabelled)} had no vector in --labels")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.flow.documents import InputStats, iter_documents
    from pipeline.flow.embed import document_text
    from pipeline.models import served_model
    from pipeline.ops import bench
    from pipeline.ops.demo import default_input

    settings = load_settings(args)
    parts = {p.strip() for p in args.what.split(",")}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = args.input or [str(default_input())]
    report: dict = {"machine": {"cpus": os.cpu_count(), "cuda": _cuda_name()}, "settings": {
        "max_length": settings.max_length, "max_chars": settings.max_chars}}
    if "encoders" in parts:
        docs = []
        for doc in iter_documents(inputs, InputStats()):
            docs.append(doc)
            if len(docs) >= args.docs:
                break
        texts = [document_text(d, settings.max_chars) for d in docs]
        specs = args.encoders.split(",")
        if "student" in specs and served_model(settings, provision=False).folder_from == "teacher":
            specs.remove("student")  # nothing promoted or shipped: "student" would time the teacher twice
            print("bench: no student promoted or shipped; timing the teachers only", file=sys.stderr)
        report["encoders"] = bench.bench_encoders(settings, texts, specs,
                                                  [int(b) for b in args.batch_sizes.split(",")], settings.threads or None,
                                                  reference=args.reference)
    if "stream" in parts:
        report["stream"] = bench.bench_stream(settings, inputs, [float(x) for x in args.loads.split(",")],
                                              args.seconds_per_load)
    if "clusterer" in parts:
        report["clusterer"] = bench.bench_clusterer(settings, [int(x) for x in args.cluster_sizes.split(",")],
                                                    args.cluster_dim, measured_docs=args.cluster_measured_docs)
    report["plots"] = bench.plot_report(report, out_dir)
    (out_dir / "bench.json").write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        print(orjson.dumps(report).decode())
        return 0
    for row in report.get("encoders", []):
        speedup = f"{row['speedup_vs_teacher']:>6.1f}x the fp32 teacher" if row["speedup_vs_teacher"] else ""
        print(f"encoder {row['spec']:<10} batch {row['batch_size']:>3}: {row['docs_per_s']:>7.1f} docs/s "
              f"{row['ms_per_doc']:>7.1f} ms/doc ({row['device']}, {row['threads']} threads) {speedup}")
    for row in report.get("stream", []):
        print(f"stream offered {row['offered_docs_per_s']:>5} docs/s: sustained {row['docs_per_s']:>5} docs/s, latency "
              f"p50 {row['latency_p50_ms']:.0f} ms, p95 {row['latency_p95_ms']:.0f} ms, p99 {row['latency_p99_ms']:.0f} ms")
    for row in report.get("clusterer", []):
        print(f"clusterer {row['clusterer']:<40} window {row['window_docs']:>8} docs ({row['events']} events, "
              f"{row['merges']} merges): {row['assign_docs_per_s']:>8.0f} docs/s, RSS {row['rss_mb']:.0f} MB "
              f"(+{row['rss_growth_mb']:.0f})")
    print(f"report {out_dir / 'bench.json'}; plots {', '.join(report['plots'])}")
    return 0


def _cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def register(sub) -> None:
    """Add this group's commands to the ``newsevents`` sub-parsers."""
    p = sub.add_parser("eval", help="pair F1/precision/recall of the clusterer on labelled pairs (Dialogue 2021)")
    p.add_argument("--pairs", required=True, help="TSV: first_doc/second_doc or first_url/second_url, quality")
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="documents of the pairs' days: contest HTML dirs/tar.gz or JSONL (repeatable)")
    p.add_argument("--labels", help="read vectors from a `teacher label` folder instead of embedding")
    p.add_argument("--mode", choices=["batch", "stream", "both"], default="both",
                   help="batch: average link per day (the Dialogue baseline); stream: the production clusterer")
    p.add_argument("--min-confidence", type=int, default=0, help="only pairs labelled with at least this confidence")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--tune", action="store_true", help="sweep the threshold and report the best")
    p.add_argument("--tune-from", type=float, help="default: the one grid, 0.40-0.96 by 0.02 (pipeline.evaluate)")
    p.add_argument("--tune-to", type=float)
    p.add_argument("--tune-step", type=float)
    p.add_argument("--write-threshold", action="store_true", help="with --tune: store the best in the model folder")
    add_settings(p, ("model_dir", "device", "quantize", "max_length", "max_chars", "threads", "threshold", "home",
                     "centring", "merge_events", "merge_threshold", "neighbours"))
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="encoder, stream and clusterer speed, side by side; JSON report and PNG plots")
    p.add_argument("--what", default="encoders,stream,clusterer", help="which parts to run")
    p.add_argument("--input", action="append", metavar="PATH", help="documents (default: the contest sample)")
    p.add_argument("--encoders", default="student,e5,e5+int8,use",
                   help="comma-separated: student (the served model: the shipped student, or --model-dir), e5, use, "
                        "or a model folder; each optionally +int8")
    p.add_argument("--docs", type=int, default=64, help="documents per encoder measurement")
    p.add_argument("--reference", default="e5", help="the encoder every speedup_vs_teacher divides by, timed in the "
                   "same run (default e5: the fp32 teacher)")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--loads", default="2,8", help="offered loads (docs/s) for the stream")
    p.add_argument("--seconds-per-load", type=float, default=20.0)
    p.add_argument("--cluster-sizes", default="10000,100000,1000000", help="window sizes to measure at")
    p.add_argument("--cluster-measured-docs", type=int, default=5000,
                   help="documents timed through assign at each size (the rest of the window is bulk-restored)")
    p.add_argument("--cluster-dim", type=int, default=384)
    p.add_argument("--out", default="bench-results", help="folder for bench.json and the plots")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_settings(p, tuple(f.name for f in fields(Settings) if f.name != "bootstrap_servers"))
    p.set_defaults(func=cmd_bench)
