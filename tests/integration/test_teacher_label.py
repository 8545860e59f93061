"""A labelling run killed with SIGKILL resumes without redoing or losing shards."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import numpy as np

from teacher.label import load_manifest, read_shards


def test_killed_label_run_resumes_without_redoing_or_losing_shards(contest_docs, tiny_model_dir, tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for doc_id, raw in contest_docs.items():
        (crawl / f"{doc_id}.html").write_bytes(raw)
    out = tmp_path / "labels"
    command = [sys.executable, "-m", "pipeline.cli", "teacher", "label", str(crawl), "--out", str(out),
               "--teacher", str(tiny_model_dir), "--shard-size", "16", "--batch-size", "8", "--quiet",
               "--threads", "1"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        manifest = load_manifest(out) if (out / "manifest.json").exists() else None
        if manifest and len(manifest["shards"]) >= 3:
            break
        assert first.poll() is None, "the run ended before it could be killed: make it slower"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = load_manifest(out)
    hashes = {s["file"]: hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() for s in before["shards"]}
    assert 0 < before["counts"]["labelled"] < len(contest_docs)

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    after = load_manifest(out)
    for name, digest in hashes.items():  # nothing redone: the shards written before the kill are untouched
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert after["shards"][: len(before["shards"])] == before["shards"]
    ids = np.concatenate([s["doc_ids"] for s in read_shards(out)]).tolist()
    assert len(ids) == len(set(ids)), "no document labelled twice"
    unparseable = after["runs"][-1]["unparseable"]
    assert len(ids) + unparseable == len(contest_docs), "nothing lost"
    assert after["runs"][-1]["resumed_after"] >= before["counts"]["labelled"]
    assert not list(out.glob("*.tmp"))
