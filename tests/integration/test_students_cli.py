"""`newsevents students train | evaluate | list` as users run them, on labels of a tiny real teacher."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson

from test_eval import crawl_with_pairs


def newsevents(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_train_resumes_and_the_student_is_evaluated_beside_its_teacher(contest_docs, tiny_model_dir, tmp_path):
    crawl, pairs = crawl_with_pairs(contest_docs, tmp_path)
    labels = tmp_path / "labels"
    result = newsevents("teacher", "label", str(crawl), "--out", str(labels), "--teacher", str(tiny_model_dir),
                        "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    train = ["students", "train", "--labels", str(labels), "--out", str(tmp_path / "run"), "--teacher-model",
             str(tiny_model_dir), "--arch", "cnn", "--embedding-dim", "32", "--hidden-dim", "32", "--layers", "1",
             "--aggregation", "attentive", "--schedule", "plateau",  # one-cycle (the default) fixes max_epochs
             "--dev-pairs", str(pairs), "--dev-input", str(crawl), "--min-token-count", "1", "--quiet"]
    first = newsevents(*train, "--max-epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = newsevents(*train, "--max-epochs", "2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after epoch 1" in second.stdout
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0.0 <= h["dev"]["f1"] <= 1.0 and h["dev"]["by_day"] for h in history)
    model = tmp_path / "run" / "model"
    names = {p.name for p in model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "newsevents_encoder.json",
            "newsevents_cluster.json", "training.json"} <= names
    assert (tmp_path / "run" / "training_curve.png").stat().st_size > 1000
    assert json.loads((model / "config.json").read_text())["model_type"] == "newsevents-student"

    evaluated = newsevents("students", "evaluate", "--model", str(model), "--teacher", str(tiny_model_dir),
                           "--pairs", str(pairs), "--input", str(crawl), "--speed-docs", "16", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = orjson.loads(evaluated.stdout.strip().splitlines()[-1])
    assert [r["role"] for r in rows] == ["teacher", "student"]
    assert all(r["docs_per_s"] > 0 and 0.0 <= r["stream_f1"] <= 1.0 for r in rows)
    assert rows[1]["model_version"].startswith("student-cnn-1x32-attentive-e32@")

    listed = newsevents("students", "list", "--home", str(tmp_path / "home"))
    assert listed.returncode == 0 and "no models registered" in listed.stdout
    promoted = newsevents("students", "promote", str(model), "--home", str(tmp_path / "home"), "--registry-only")
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    listed = newsevents("students", "list", "--home", str(tmp_path / "home"))
    assert listed.stdout.startswith("* v1"), listed.stdout


def test_train_errors_are_clear(tmp_path):
    result = newsevents("students", "train", "--labels", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = newsevents("students", "train", "--labels", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                        "--teacher-model", str(tmp_path / "empty"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
