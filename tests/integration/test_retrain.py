"""`newsevents retrain` end to end on a tiny real teacher: label a new crawl, continue the served student, gate
on gold pairs, once promoting (registry and news.control) and once refusing."""

from __future__ import annotations

import json

import orjson

from test_eval import crawl_with_pairs
from test_students_cli import newsevents


def served_student(contest_docs, tiny_model_dir, tmp_path):
    """Old labels of one crawl, a static student trained on them, and a second crawl it has not seen."""
    crawl, pairs = crawl_with_pairs(contest_docs, tmp_path)
    new_crawl = tmp_path / "new-crawl"
    new_crawl.mkdir()
    for doc_id, raw in list(contest_docs.items())[40:90]:
        (new_crawl / f"{doc_id}.html").write_bytes(raw)
    (new_crawl / f"{next(iter(contest_docs))}.html").write_bytes(next(iter(contest_docs.values())))  # old document
    labels = tmp_path / "labels"
    result = newsevents("teacher", "label", str(crawl), "--out", str(labels), "--teacher", str(tiny_model_dir),
                        "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    result = newsevents("students", "train", "--labels", str(labels), "--out", str(tmp_path / "run"),
                        "--teacher-model", str(tiny_model_dir), "--arch", "static", "--embedding-dim", "32",
                        "--aggregation", "mean", "--min-token-count", "1", "--max-epochs", "1",
                        "--home", str(tmp_path / "home"), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return crawl, pairs, new_crawl, labels, tmp_path / "run" / "model"


def test_retrain_promotes_then_refuses(contest_docs, tiny_model_dir, tmp_path, kafka_bootstrap):
    crawl, pairs, new_crawl, labels, student = served_student(contest_docs, tiny_model_dir, tmp_path)
    home = tmp_path / "home"
    common = ["retrain", "--crawl", str(new_crawl), "--teacher", str(tiny_model_dir), "--gold-pairs", str(pairs),
              "--gold-input", str(crawl), "--model-dir", str(student), "--home", str(home), "--epochs", "1",
              "--speed-docs", "16", "--bootstrap-servers", kafka_bootstrap, "--quiet", "--json"]

    promoted = newsevents(*common, "--work-dir", str(tmp_path / "job1"), "--min-gain", "-1")
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    report = orjson.loads(promoted.stdout.strip().splitlines()[-1])
    assert report["decision"] == "promoted" and ">=" in report["reason"]
    assert report["labelling"]["new_documents_labelled"] == 50  # the old document is not labelled again
    assert report["labelling"]["already_in_old_labels"] == 1
    assert report["training"]["documents"] == 91  # old and new labels
    scores = report["scores"]
    assert scores["served"]["model_dir"] == str(student.resolve())
    assert all(0.0 <= s["stream_f1"] <= 1.0 and s["docs_per_s"] > 0 for s in scores.values())
    assert report["promotion"]["announced"] is True
    promoted_record = json.loads((home / "registry" / "promoted.json").read_text())
    assert promoted_record["model_version"] == report["promotion"]["model_version"] == scores["candidate"][
        "model_version"]
    candidate_training = json.loads((tmp_path / "job1" / "train" / "model" / "training.json").read_text())
    assert candidate_training["continued_from"] == scores["served"]["model_version"]
    for name in ("report.json", "report.md", "training_curve.png"):
        assert (tmp_path / "job1" / name).stat().st_size > 100
    again = newsevents(*common, "--work-dir", str(tmp_path / "job1"), "--min-gain", "-1")
    assert again.returncode == 0 and orjson.loads(again.stdout.strip().splitlines()[-1])["already_decided"]

    refused = newsevents(*common, "--work-dir", str(tmp_path / "job2"), "--min-gain", "2")
    assert refused.returncode == 3, refused.stderr[-3000:]
    report = orjson.loads(refused.stdout.strip().splitlines()[-1])
    assert report["decision"] == "refused" and "the served model stays" in report["reason"]
    assert "promotion" not in report
    assert json.loads((home / "registry" / "promoted.json").read_text()) == promoted_record  # unchanged


def test_retrain_errors_are_clear(tmp_path, tiny_model_dir):
    missing = newsevents("retrain", "--crawl", str(tmp_path / "nowhere"), "--work-dir", str(tmp_path / "job"),
                         "--gold-pairs", str(tmp_path / "p.tsv"), "--gold-input", str(tmp_path))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "crawl").mkdir()
    (tmp_path / "p.tsv").write_text("first_doc\tsecond_doc\tquality\n")
    teacher_served = newsevents("retrain", "--crawl", str(tmp_path / "crawl"), "--work-dir", str(tmp_path / "job"),
                                "--gold-pairs", str(tmp_path / "p.tsv"), "--gold-input", str(tmp_path / "crawl"),
                                "--model-dir", str(tiny_model_dir))
    assert teacher_served.returncode == 2 and "--labels" in teacher_served.stderr, teacher_served.stderr[-2000:]


def test_ship_scores_the_student_beside_the_centred_teacher_and_decides_if_it_serves(contest_docs, tiny_model_dir,
                                                                                     tmp_path):
    from pipeline.model_folder import shipped_student_serves

    crawl, pairs, _, labels, student = served_student(contest_docs, tiny_model_dir, tmp_path)
    shipped = tmp_path / "shipped"
    result = newsevents("students", "ship", str(student), "--teacher-labels", str(labels), "--pairs", str(pairs),
                        "--input", str(crawl), "--to", str(shipped), "--bar", "1.0", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["serve_by_default"] is True and shipped_student_serves(shipped)  # a bar of 1.0 always passes
    teacher = max(record["teacher_centred"]["stream_f1"], record["teacher_raw"]["stream_f1"])
    assert record["gap"] == round(teacher - record["student"]["stream_f1"], 4)
    assert record["runtime"] == "torch" and record["quantisation"] is None  # a static student: no ONNX export
    assert json.loads((shipped / "newsevents_cluster.json").read_text())["centring"] == record["student"]["centring"]
    assert json.loads((shipped / "release.json").read_text())["student"] == record["student"]
    assert (shipped / "model.safetensors").exists() and record["size_mb"] > 0
    strict = newsevents("students", "ship", str(student), "--teacher-labels", str(labels), "--pairs", str(pairs),
                        "--input", str(crawl), "--to", str(shipped), "--bar", "-1.0", "--json")
    assert strict.returncode == 0 and not shipped_student_serves(shipped)  # no student beats the teacher by 1.0
    too_big = newsevents("students", "ship", str(student), "--teacher-labels", str(labels), "--pairs", str(pairs),
                         "--input", str(crawl), "--to", str(tmp_path / "other"), "--max-mb", "0.001")
    assert too_big.returncode == 2 and "over --max-mb" in too_big.stderr and not (tmp_path / "other").exists()


def test_a_cut_student_ships_int8_through_onnx_runtime_only_within_its_bar(contest_docs, tiny_model_dir, tmp_path):
    from pipeline.models import load_encoder, model_version
    from students.onnx_folder import layers_in_onnx
    from students.onnx_serving import OnnxStudentEncoder

    crawl, pairs, _, labels, _ = served_student(contest_docs, tiny_model_dir, tmp_path)
    result = newsevents("students", "train", "--labels", str(labels), "--out", str(tmp_path / "cut"),
                        "--teacher-model", str(tiny_model_dir), "--arch", "teacher-cut", "--kept-layers", "bottom-1",
                        "--max-tokens", "64", "--min-token-count", "1", "--max-epochs", "1", "--head-fit-docs", "20",
                        "--home", str(tmp_path / "home"), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    shipped = tmp_path / "shipped-cut"
    result = newsevents("students", "ship", str(tmp_path / "cut" / "model"), "--teacher-labels", str(labels),
                        "--pairs", str(pairs), "--input", str(crawl), "--to", str(shipped), "--bar", "1.0", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    quantisation = record["quantisation"]
    assert 0.9 < quantisation["cosine_int8_to_fp32_mean"] <= 1.0
    int8_kept_its_f1 = quantisation["int8_stream_f1"] >= quantisation["fp32_stream_f1"] - quantisation["bar"]
    assert record["runtime"] == ("onnxruntime-int8" if int8_kept_its_f1 else "torch")
    assert (shipped / "model.onnx").exists() == int8_kept_its_f1
    assert layers_in_onnx(shipped) == int8_kept_its_f1  # served int8: the layers shipped once, in the graph
    assert record["student"]["model_version"] == model_version(shipped)
    assert isinstance(load_encoder(shipped, device="cpu"), OnnxStudentEncoder) == int8_kept_its_f1
    assert record["student"]["stream_f1"] == quantisation["int8_stream_f1" if int8_kept_its_f1 else "fp32_stream_f1"]
    cluster = json.loads((shipped / "newsevents_cluster.json").read_text())
    assert (cluster["threshold"], cluster["centring"]) == (record["student"]["threshold"],
                                                          record["student"]["centring"])
    assert not (tmp_path / "shipped-cut.staging").exists()

    # retrain continues the shipped cut student and hands the candidate over exported as the served one is
    new_crawl = tmp_path / "new-crawl"  # made by served_student: 50 documents the labels lack
    home = tmp_path / "home-cut"
    result = newsevents("retrain", "--crawl", str(new_crawl), "--teacher", str(tiny_model_dir), "--gold-pairs",
                        str(pairs), "--gold-input", str(crawl), "--model-dir", str(shipped), "--home", str(home),
                        "--epochs", "1", "--speed-docs", "16", "--work-dir", str(tmp_path / "job-cut"),
                        "--min-gain", "-1", "--registry-only", "--quiet", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert report["decision"] == "promoted"
    candidate = tmp_path / "job-cut" / "train" / "model"
    assert json.loads((candidate / "config.json").read_text())["encoder"] == "teacher-cut"
    assert (candidate / "model.onnx").exists() == int8_kept_its_f1
    assert json.loads((candidate / "training.json").read_text())["continued_from"] == record["student"][
        "model_version"]
