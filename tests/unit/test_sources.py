import gzip
import io
import tarfile

from pipeline.flow.sources import FORMAT_DOCUMENT_JSON, FORMAT_HTML, SourceProblem, SourceRecord, iter_sources


def test_directories_archives_and_jsonl(tmp_path):
    (tmp_path / "d" / "20191108" / "18").mkdir(parents=True)
    (tmp_path / "d" / "20191108" / "18" / "123456789.html").write_bytes(b"<html>a</html>")
    (tmp_path / "d" / "notes.txt").write_text("not a document")
    archive = tmp_path / "crawl.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"<html>b</html>"
        info = tarfile.TarInfo("x/20191115/00/987.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    jsonl = tmp_path / "docs.jsonl.gz"
    with gzip.open(jsonl, "wt") as f:
        f.write('{"id": "j1", "title": "T", "text": "body"}\n{broken\n\n{"id": "j2"}\n')
    items = list(iter_sources([tmp_path / "d", archive, jsonl, tmp_path / "missing"]))
    records = [i for i in items if isinstance(i, SourceRecord)]
    problems = [i for i in items if isinstance(i, SourceProblem)]
    assert [(r.key, r.format) for r in records] == [("123456789", FORMAT_HTML), ("987", FORMAT_HTML),
                                                    ("j1", FORMAT_DOCUMENT_JSON)]
    reasons = sorted(p.reason.split(" (")[0] for p in problems)
    assert reasons == ["a JSONL document needs an object with 'title' or 'text'", "invalid JSON",
                       "no such file or directory", "not an .html, .jsonl(.gz) or .tar.gz file"]


def test_names_without_a_contest_id_get_a_content_hash(tmp_path):
    (tmp_path / "story.html").write_bytes(b"<html>same</html>")
    (tmp_path / "copy.html").write_bytes(b"<html>same</html>")
    keys = [i.key for i in iter_sources([tmp_path])]
    assert keys[0] == keys[1] and keys[0].startswith("sha256-")


def test_corrupt_archive_is_a_problem_not_a_crash(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    [problem] = list(iter_sources([bad]))
    assert isinstance(problem, SourceProblem) and "unreadable archive" in problem.reason
