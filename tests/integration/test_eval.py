"""`newsevents eval` as users run it: both pair formats, missing documents, tuning, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson

from pipeline.model_folder import model_version


def newsevents(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=300)


def crawl_with_pairs(contest_docs, tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    items = list(contest_docs.items())[:40]
    for doc_id, raw in items:
        (crawl / f"{doc_id}.html").write_bytes(raw)
    repost = "9000000000000000001"
    (crawl / f"{repost}.html").write_bytes(items[0][1])  # the same article again: a sure positive
    ids = [doc_id for doc_id, _ in items]
    rows = ["pair_id\tlang\tfirst_doc\tsecond_doc\tfirst_url\tsecond_url\tquality\tconfidence",
            f"p0\tru\t{ids[0]}\t{repost}\tu\tu\tOK\t3",
            f"p1\ten\t{ids[1]}\t{ids[2]}\tu\tu\tBAD\t3",
            f"p2\ten\t{ids[3]}\t{ids[4]}\tu\tu\tBAD\t1",
            f"p3\ten\t{ids[5]}\t123\tu\tu\tOK\t3"]  # 123 is not in the crawl
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("\n".join(rows) + "\n")
    return crawl, pairs


def test_eval_reports_scores_coverage_and_breakdowns(contest_docs, tiny_model_dir, tmp_path):
    crawl, pairs = crawl_with_pairs(contest_docs, tmp_path)
    result = newsevents("eval", "--pairs", str(pairs), "--input", str(crawl), "--model-dir", str(tiny_model_dir),
                        "--threshold", "0.99999", "--centring", "none", "--mode", "stream", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert report["pairs_scored"] == 3 and report["pairs_missing"] == 1
    assert report["true_positives"] == 1 and report["false_positives"] == 0 and report["false_negatives"] == 0
    assert report["f1"] == 1.0 and report["precision"] == 1.0 and report["recall"] == 1.0
    assert report["avg_cluster_size"] > 1.0 and set(report["by_lang"]) == {"ru", "en"}
    confident = newsevents("eval", "--pairs", str(pairs), "--input", str(crawl), "--model-dir", str(tiny_model_dir),
                           "--threshold", "0.99999", "--centring", "none", "--mode", "batch", "--json",
                           "--min-confidence", "3")
    assert orjson.loads(confident.stdout.strip().splitlines()[-1])["pairs_scored"] == 2


def test_eval_reads_dialogue_url_pairs_and_tunes_into_the_model(contest_docs, tiny_model_dir, tmp_path):
    import shutil

    from pipeline.flow.parse import parse_html

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    crawl, _ = crawl_with_pairs(contest_docs, tmp_path)
    first, second = [parse_html(raw, k) for k, raw in list(contest_docs.items())[6:8]]
    (tmp_path / "dialogue.tsv").write_text(f"quality\tfirst_url\tsecond_url\nBAD\t{first.url}\t{second.url}\n")
    version = model_version(model)
    result = newsevents("eval", "--pairs", str(tmp_path / "dialogue.tsv"), "--input", str(crawl), "--model-dir",
                        str(model), "--tune", "--tune-from", "0.9", "--tune-to", "0.99", "--tune-step", "0.03",
                        "--write-threshold", "--mode", "stream")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "best (stream, language centring)" in result.stdout  # tuned in the space the stream links in
    written = json.loads((model / "newsevents_cluster.json").read_text())
    assert written["threshold"] > 0 and written["centring"] == "language"  # tuned in the space the stream links in
    assert model_version(model) == version  # a tuned threshold is not a new embedding space
    tuned = newsevents("eval", "--pairs", str(tmp_path / "dialogue.tsv"), "--input", str(crawl), "--model-dir",
                       str(model), "--tune", "--tune-from", "0.9", "--tune-to", "0.99", "--tune-step", "0.03",
                       "--mode", "both", "--json")  # numpy thresholds once crashed the JSON writer
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    report = json.loads(tuned.stdout.strip().splitlines()[-1])
    assert [r["threshold"] for r in report["grid"]["stream"]] == [0.9, 0.93, 0.96, 0.99]
    assert report["best"]["mode"] == "stream" and set(report["grid"]) == {"batch", "stream"}


def test_eval_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    result = newsevents("eval", "--pairs", str(bad), "--input", str(tmp_path))
    assert result.returncode == 2 and "needs columns" in result.stderr and "Traceback" not in result.stderr
    result = newsevents("eval", "--pairs", str(tmp_path / "none.tsv"), "--input", str(tmp_path))
    assert result.returncode == 2 and "no such file" in result.stderr
