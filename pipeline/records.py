"""The records that flow between stages, and their wire format (orjson).

raw HTML bytes ─parse→ Document ─embed→ EmbeddedDocument ─cluster→ EventAssignment (+ EventMerge); any stage →
DeadLetter.
Beside them: the headers a raw record carries, and ``Promotion``, the record of ``news.control`` (JSON).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import orjson

from pipeline.model_folder import model_version

# Headers of a news.raw record (written by `newsevents publish`, read by the parse stage)
HEADER_FORMAT = "format"
HEADER_SOURCE = "source"
HEADER_CRAWL = "crawl"

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "dict": (dict,), "bool": (bool,),
          "None": (type(None),)}


def _check(name: str, annotation: str, value) -> None:
    """Field types as annotated (``str | None`` and friends): a record from the wire is not trusted."""
    allowed = tuple(t for part in annotation.split("|") for t in _TYPES.get(part.strip(), (object,)))
    if not isinstance(value, allowed) or (isinstance(value, bool) and not {bool, object} & set(allowed)):
        raise ValueError(f"field {name!r} must be {annotation}, got {type(value).__name__}")


class _Record:
    """orjson (de)serialisation shared by every record; unknown fields are ignored so old readers survive new fields."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_dict(cls, raw: dict):
        if not isinstance(raw, dict):
            raise ValueError(f"a {cls.__name__} must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        for name, value in values.items():
            _check(name, str(known[name].type), value)
        missing = [n for n, f in known.items() if n not in values and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"a {cls.__name__} needs {', '.join(missing)}")
        return cls(**values)

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.from_dict(orjson.loads(data))


@dataclass
class Document(_Record):
    """A parsed article. ``published_time`` is ISO 8601 with a UTC offset; ``ingested_at_ms`` is the raw record's timestamp."""

    doc_id: str
    title: str
    text: str
    url: str | None = None
    site_name: str | None = None
    published_time: str | None = None
    description: str = ""
    lang: str = "und"
    source: str | None = None
    ingested_at_ms: int | None = None


@dataclass
class EmbeddedDocument(_Record):
    """A document's vector plus what the clusterer and the event consumers need from the document."""

    doc_id: str
    vector: np.ndarray
    model_version: str
    title: str = ""
    published_time: str | None = None
    ingested_at_ms: int | None = None
    lang: str = "und"
    url: str | None = None
    cluster_threshold: float | None = None  # tuned for the model that made the vector (None: the clusterer's)
    cluster_centring: str | None = None  # the space that threshold is for (None: raw, from producers before it)

    @property
    def vector_b64(self) -> str:
        """base64 float32: 4 bytes per dimension on the wire instead of ~10 for JSON decimals."""
        return base64.b64encode(np.asarray(self.vector, dtype="<f4").tobytes()).decode()

    def to_dict(self) -> dict:
        return asdict(self) | {"vector": self.vector_b64}

    @classmethod
    def from_dict(cls, raw: dict) -> "EmbeddedDocument":
        if not isinstance(raw, dict) or not isinstance(raw.get("vector"), str):
            raise ValueError("an EmbeddedDocument needs a base64 'vector'")
        encoded = raw["vector"]
        record = super().from_dict({k: v for k, v in raw.items() if k != "vector"} | {"vector": None})
        record.vector = np.frombuffer(base64.b64decode(encoded, validate=True), dtype="<f4").copy()
        if record.vector.size == 0 or not np.isfinite(record.vector).all():
            raise ValueError("the vector is empty or not finite")
        return record


@dataclass
class EventAssignment(_Record):
    """One per document on ``news.events``: which event it belongs to and why."""

    doc_id: str
    event_id: str
    model_version: str
    similarity: float  # cosine to ``linked_doc_id`` (1.0 for the document that founded the event)
    linked_doc_id: str
    title: str = ""
    url: str | None = None
    lang: str = "und"
    published_time: str | None = None  # the article's own time
    ingested_at_ms: int | None = None  # when it was published to news.raw
    assigned_at_ms: int = 0
    event_size: int = 1  # members in the live window when this record was made, this document included


@dataclass
class EventMerge(_Record):
    """One per merge on ``news.event-merges`` (compacted, keyed by ``event_id``): the story ``event_id`` is part of
    the story ``into`` from ``at_ms`` on. Follow ``into`` until it has no record of its own to resolve any id."""

    event_id: str
    into: str
    at_ms: int
    model_version: str = ""
    type: str = "merge"


@dataclass
class DeadLetter(_Record):
    """Input a stage could not process, with the original bytes so nothing a user published is lost."""

    stage: str
    reason: str
    detail: str
    key: str | None
    value_b64: str
    headers: dict = field(default_factory=dict)
    failed_at_ms: int = 0
    source_topic: str = ""  # where the original record is, for as long as that topic retains it
    source_partition: int = -1
    source_offset: int = -1
    value_size: int = 0
    value_truncated: bool = False  # only values too large for the dead-letter topic are cut (see source_*)

    @classmethod
    def wrap(cls, stage: str, reason: str, detail: str, key: bytes | str | None, value: bytes | None,
             headers: dict | None = None, failed_at_ms: int = 0, source: tuple[str, int, int] = ("", -1, -1),
             max_value_bytes: int = 2 * 1024 * 1024) -> "DeadLetter":
        if isinstance(key, bytes):
            key = key.decode("utf-8", errors="replace")
        value = value or b""
        return cls(stage=stage, reason=reason, detail=detail[:2000], key=key,
                   value_b64=base64.b64encode(value[:max_value_bytes]).decode(), headers=headers or {},
                   failed_at_ms=failed_at_ms, source_topic=source[0], source_partition=source[1],
                   source_offset=source[2], value_size=len(value), value_truncated=len(value) > max_value_bytes)

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)

@dataclass(frozen=True)
class Promotion:
    model_dir: str
    model_version: str
    promoted_at_ms: int
    # No threshold or centring: the worker reads them from the folder through pipeline.models.served_model, the
    # one place that decides them (a "threshold" in older records is ignored).

    def to_bytes(self) -> bytes:
        return json.dumps({"type": "promote", **asdict(self)}).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> "Promotion":
        raw = json.loads(value)
        if not isinstance(raw, dict) or raw.get("type") != "promote":
            raise ValueError("not a promotion record")
        return cls(str(raw["model_dir"]), str(raw["model_version"]), int(raw["promoted_at_ms"]))

    @classmethod
    def of(cls, folder: Path) -> "Promotion":
        folder = Path(folder).resolve()
        return cls(str(folder), model_version(folder), int(time.time() * 1000))
