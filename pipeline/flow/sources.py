"""Where documents come from: files, directories (recursive), ``.tar.gz`` archives of contest HTML, JSONL.

``iter_sources`` yields ``SourceRecord`` for everything it can read and ``SourceProblem`` for what it
cannot (bad path, unreadable file, bad JSON line), so callers can report both and keep going.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import orjson

HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
FORMAT_HTML = "html"
FORMAT_DOCUMENT_JSON = "document-json"  # an already-parsed document (JSONL input), see Document
_CONTEST_ID = re.compile(r"^-?\d{1,20}$")


@dataclass(frozen=True)
class SourceRecord:
    key: str
    value: bytes
    format: str  # FORMAT_HTML or FORMAT_DOCUMENT_JSON
    origin: str  # path (and member) it came from


@dataclass(frozen=True)
class SourceProblem:
    origin: str
    reason: str


def content_key(value: bytes) -> str:
    return "sha256-" + hashlib.sha256(value).hexdigest()[:24]


def key_for(name: str, value: bytes) -> str:
    """Contest file id (the file stem, an int64) when the name has one, else a content hash."""
    stem = PurePosixPath(name).name.split(".")[0]
    return stem if _CONTEST_ID.match(stem) else content_key(value)


def _has_suffix(name: str, suffixes: tuple[str, ...]) -> bool:
    lower = name.lower()
    return any(lower.endswith(s) for s in suffixes)


def _jsonl_records(lines: Iterator[bytes], origin: str) -> Iterator[SourceRecord | SourceProblem]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{origin}:{number}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            yield SourceProblem(where, f"invalid JSON ({err})")
            continue
        if not isinstance(obj, dict) or not (obj.get("title") or obj.get("text")):
            yield SourceProblem(where, "a JSONL document needs an object with 'title' or 'text'")
            continue
        key = str(obj.get("id") or obj.get("doc_id") or content_key(line.strip()))
        yield SourceRecord(key, orjson.dumps(obj), FORMAT_DOCUMENT_JSON, where)


def _archive_records(path: Path) -> Iterator[SourceRecord | SourceProblem]:
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                origin = f"{path}!{member.name}"
                if _has_suffix(member.name, HTML_SUFFIXES):
                    handle = archive.extractfile(member)
                    value = handle.read() if handle else b""
                    yield SourceRecord(key_for(member.name, value), value, FORMAT_HTML, origin)
                elif _has_suffix(member.name, JSONL_SUFFIXES):
                    handle = archive.extractfile(member)
                    data = handle.read() if handle else b""
                    if member.name.lower().endswith(".gz"):
                        data = gzip.decompress(data)
                    yield from _jsonl_records(iter(data.splitlines()), origin)
    except (tarfile.TarError, OSError, EOFError) as err:
        yield SourceProblem(str(path), f"unreadable archive ({err})")


def _file_records(path: Path) -> Iterator[SourceRecord | SourceProblem]:
    name = path.name
    try:
        if _has_suffix(name, ARCHIVE_SUFFIXES):
            yield from _archive_records(path)
        elif _has_suffix(name, JSONL_SUFFIXES):
            opener = gzip.open if name.lower().endswith(".gz") else open
            with opener(path, "rb") as f:
                yield from _jsonl_records(iter(f), str(path))
        elif _has_suffix(name, HTML_SUFFIXES):
            value = path.read_bytes()
            yield SourceRecord(key_for(name, value), value, FORMAT_HTML, str(path))
        else:
            yield SourceProblem(str(path), "not an .html, .jsonl(.gz) or .tar.gz file")
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        yield SourceProblem(str(path), f"unreadable ({err.__class__.__name__}: {err})")


def iter_sources(paths: list[str | Path]) -> Iterator[SourceRecord | SourceProblem]:
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                yield from _file_records(child)
        elif path.is_file():
            yield from _file_records(path)
        else:
            yield SourceProblem(str(path), "no such file or directory")
