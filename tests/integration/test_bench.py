"""`newsevents bench` runs its parts side by side and writes a JSON report with plots."""

from __future__ import annotations

import subprocess
import sys

import orjson


def test_bench_encoders_and_clusterer(tiny_model_dir, contest_tar, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "--what", "encoders,clusterer", "--encoders", "model,use",
         "--reference", str(tiny_model_dir), "--model-dir", str(tiny_model_dir), "--docs", "16", "--batch-sizes", "1,8", "--cluster-sizes", "300,900",
         "--cluster-dim", "32", "--input", str(contest_tar), "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    teacher = str(tiny_model_dir)
    assert [(r["spec"], r["batch_size"]) for r in report["encoders"]] == [
        (teacher, 1), (teacher, 8), ("model", 1), ("model", 8), ("use", 1), ("use", 8)]
    assert all(r["docs_per_s"] > 0 and r["docs"] == 16 for r in report["encoders"])
    rows = {(r["spec"], r["batch_size"]): r for r in report["encoders"]}
    for (spec, batch), row in rows.items():  # each speed-up is over the reference at the same batch size
        assert row["speedup_vs_teacher"] == round(row["docs_per_s"] / rows[(teacher, batch)]["docs_per_s"], 1)
    assert rows[(teacher, 1)]["speedup_vs_teacher"] == 1.0 and rows[("use", 8)]["precision"] == "fp32"
    # before (raw linking, no merges) and after (the settings: centring and merges), in one run
    variants = list(dict.fromkeys(r["clusterer"] for r in report["clusterer"]))
    assert len(variants) == 2 and variants[0].startswith("before")
    for variant in variants:
        rows_of = [r for r in report["clusterer"] if r["clusterer"] == variant]
        assert [r["window_docs"] for r in rows_of] == [300, 900]
        assert all(r["assign_docs_per_s"] > 0 and r["rss_mb"] > 0 for r in rows_of)
        assert [r["measured_docs"] for r in rows_of] == [150, 300]  # half of each step is assigned
    assert all(r["merges"] == 0 for r in report["clusterer"] if r["clusterer"] == variants[0])
    assert sorted(p.rsplit("/", 1)[1] for p in report["plots"]) == ["clusterer.png", "encoders.png"]
    assert (tmp_path / "bench.json").exists()
