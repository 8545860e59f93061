"""``newsevents bench``: speed figures side by side in one run, written as JSON and PNG plots.

(a) encoders: docs/s and ms/doc per batch size, every encoder on the same documents in the same run;
(b) the stream through the broker: sustained docs/s and publish→event latency at fixed offered loads;
(c) the clusterer alone: assign rate and memory as the live window grows (synthetic event-like vectors).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.config import Settings
from pipeline.plots import pyplot, save_figure


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_encoders(settings: Settings, texts: list[str], encoders: list[str], batch_sizes: list[int],
                   threads: int | None, reference: str = "") -> list[dict]:
    """docs/s of each encoder on the same texts; ``reference`` (default the fp32 teacher, timed first if absent)
    gives every row its ``speedup_vs_teacher``."""
    reference = reference or TEACHER_REFERENCE
    if reference not in encoders:
        encoders = [reference, *encoders]
    import torch

    from pipeline.models import load_teacher, served_model

    rows = []
    for spec in encoders:
        name, _, quantize = spec.rpartition("+")
        if quantize != "int8":  # a "+" inside a folder name is not a precision
            name, quantize = spec, ""
        # "student"/"model": what the stream serves (the shipped student unless --model-dir says otherwise)
        encoder = load_teacher(str(served_model(settings).folder) if name in ("model", "student") else name,
                               home=settings.home_path,
                               device=settings.device, max_length=settings.max_length, quantize=quantize or None,
                               threads=threads)
        encoder.encode(texts[:8])  # warm-up: first calls allocate
        for batch_size in batch_sizes:
            started = time.perf_counter()
            encoder.encode(texts, batch_size=batch_size)
            seconds = time.perf_counter() - started
            rows.append({"encoder": encoder.version, "spec": spec,
                         "precision": getattr(encoder, "precision", "") or quantize or "fp32",
                         "device": getattr(encoder, "device", "cpu"),
                         "threads": torch.get_num_threads(), "batch_size": batch_size, "docs": len(texts),
                         "docs_per_s": round(len(texts) / seconds, 2), "ms_per_doc": round(1000 * seconds / len(texts), 2)})
        del encoder
    return with_speedups(rows, reference)


TEACHER_REFERENCE = "e5"  # the fp32 teacher: what `speedup_vs_teacher` divides by


def with_speedups(rows: list[dict], reference: str = TEACHER_REFERENCE) -> list[dict]:
    """``speedup_vs_teacher``: docs/s over the reference teacher's at the same batch size in the same run
    (same documents and threads); None when the reference was not timed."""
    teacher = {r["batch_size"]: r["docs_per_s"] for r in rows if r["spec"] == reference}
    for row in rows:
        base = teacher.get(row["batch_size"])
        row["speedup_vs_teacher"] = round(row["docs_per_s"] / base, 1) if base else None
    return rows


def bench_stream(settings: Settings, inputs: list[str], loads: list[float], seconds_per_load: float) -> list[dict]:
    from pipeline.ops.demo import run_demo

    rows = []
    skip = 0
    for load in loads:
        limit = max(10, int(load * seconds_per_load))
        # each load gets documents the previous loads did not use, through a fresh broker and workers
        report = run_demo(settings, inputs, limit=limit, progress=False, rate=load, skip=skip,
                          log_dir=tempfile.mkdtemp(prefix="newsevents-bench-"))
        skip += limit
        rows.append({"offered_docs_per_s": load, "docs": report["published"], "docs_per_s": report["docs_per_s"],
                     "latency_p50_ms": report["latency_p50_ms"], "latency_p95_ms": report["latency_p95_ms"],
                     "latency_p99_ms": report["latency_p99_ms"], "model_version": report["model_version"]})
    return rows


class SyntheticStream:
    """Event-like unit vectors: each document near one of n/docs_per_event random centres, times spread
    evenly over ``hours`` (inside the default 48 h window, so the whole stream stays live)."""

    def __init__(self, n: int, dim: int, seed: int = 0, docs_per_event: float = 4.0, hours: float = 40.0):
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.standard_normal((max(1, int(n / docs_per_event)), dim)).astype(np.float32)
        self.n, self.dim, self.hours, self.emitted = n, dim, hours, 0

    def take(self, count: int) -> tuple[list, list[str]]:
        """The next ``count`` documents and the true event of each."""
        from pipeline.records import EmbeddedDocument

        which = self.rng.integers(len(self.centres), size=count)
        vectors = self.centres[which] + 0.25 * self.rng.standard_normal((count, self.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        start, first = 1_573_200_000, self.emitted
        self.emitted += count
        seconds = (start + self.hours * 3600 * np.arange(first, first + count) / self.n).astype("datetime64[s]")
        times = np.char.add(np.datetime_as_string(seconds, unit="s"), "+00:00").tolist()
        docs = [EmbeddedDocument(doc_id=str(first + i), vector=vectors[i], model_version="synthetic",
                                 published_time=times[i]) for i in range(count)]
        return docs, [f"ev-true-{c}" for c in which]


CLUSTERER_VARIANTS = {"before (raw, no merges)": {"centring": "none", "merge_events": False},
                      "after (the settings: centring, merges)": {}}


def bench_clusterer(settings: Settings, sizes: list[int], dim: int, batch_size: int = 256,
                    measured_docs: int = 5_000, variants: dict[str, dict] | None = None) -> list[dict]:
    """Each variant of the clusterer in turn, on the same synthetic stream: grow the window to each size; the
    last ``measured_docs`` before it (at most half) go through ``assign``, the production path (search, decide,
    insert on one thread), and are timed. The rest of the window is filled with ``restore``, the restart path
    (known events, inserts on every core): deciding a million documents one batch at a time would take most of
    the run. Memory is the process's resident size; a later variant may reuse what an earlier one freed."""
    import dataclasses
    import gc

    from pipeline.flow.cluster import IncrementalClusterer
    from pipeline.kafka.stages import cluster_config

    rows = []
    for name, changes in (variants or CLUSTERER_VARIANTS).items():
        gc.collect()
        clusterer = IncrementalClusterer(dataclasses.replace(cluster_config(settings, dim), **changes))
        rows += [{"clusterer": name, **row} for row in _grow(clusterer, sizes, dim, batch_size, measured_docs)]
        del clusterer
    return rows


def _grow(clusterer, sizes: list[int], dim: int, batch_size: int, measured_docs: int) -> list[dict]:
    stream = SyntheticStream(max(sizes), dim)
    rows, done, base = [], 0, rss_mb()
    for size in sorted(sizes):
        measured = min(measured_docs, (size - done) // 2)
        fill_started, filled = time.perf_counter(), 0
        while done + measured < size:
            docs, events = stream.take(min(10 * batch_size, size - measured - done))
            clusterer.restore(docs, events)
            done += len(docs)
            filled += len(docs)
        fill_seconds = time.perf_counter() - fill_started
        started = time.perf_counter()
        while done < size:
            docs, _ = stream.take(min(batch_size, size - done))
            clusterer.assign(docs)
            done += len(docs)
        seconds = time.perf_counter() - started
        rows.append({"window_docs": clusterer.live_documents, "events": len(clusterer.events),
                     "merges": clusterer.merge_count,
                     "assign_docs_per_s": round(measured / seconds, 1), "assign_batch": batch_size,
                     "measured_docs": measured, "fill_docs_per_s": round(filled / fill_seconds, 1) if filled else None,
                     "rss_mb": round(rss_mb(), 1), "rss_growth_mb": round(rss_mb() - base, 1)})
    return rows


def plot_report(report: dict, out_dir: Path) -> list[str]:
    plt = pyplot()
    paths: list[str] = []

    def save(fig, name: str, title: str) -> None:
        fig.axes[0].set_title(title)
        paths.append(str(save_figure(fig, out_dir / name)))

    if report.get("encoders"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for spec in dict.fromkeys(r["spec"] for r in report["encoders"]):
            rows = [r for r in report["encoders"] if r["spec"] == spec]
            ax.plot([r["batch_size"] for r in rows], [r["docs_per_s"] for r in rows], marker="o", label=spec)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("docs/s")
        ax.legend()
        save(fig, "encoders.png", "encoder throughput")
    if report.get("stream"):
        fig, ax = plt.subplots(figsize=(6, 4))
        loads = [r["offered_docs_per_s"] for r in report["stream"]]
        for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            ax.plot(loads, [r[key] / 1000 for r in report["stream"]], marker="o", label=key[8:11])
        ax.set_xlabel("offered load (docs/s)")
        ax.set_ylabel("publish→event latency (s)")
        ax.set_yscale("log")
        ax.legend()
        save(fig, "stream.png", "stream latency")
    if report.get("clusterer"):
        fig, ax = plt.subplots(figsize=(6, 4))
        twin = ax.twinx()
        for number, name in enumerate(dict.fromkeys(r.get("clusterer", "") for r in report["clusterer"])):
            rows = [r for r in report["clusterer"] if r.get("clusterer", "") == name]
            ax.plot([r["window_docs"] for r in rows], [r["assign_docs_per_s"] for r in rows], marker="o",
                    color=f"C{number}", label=f"{name}: docs/s")
            twin.plot([r["window_docs"] for r in rows], [r["rss_growth_mb"] for r in rows], marker="s",
                      linestyle="--", color=f"C{number}", label=f"{name}: memory")
        ax.set_xscale("log")
        ax.set_xlabel("documents in the window")
        ax.set_ylabel("assign docs/s (solid)")
        twin.set_ylabel("memory growth, MB (dashed)")
        ax.legend(fontsize="x-small", loc="lower left")
        save(fig, "clusterer.png", "clusterer as the window grows")
    return paths
