"""The records that flow between stages, and their wire format (orjson).

raw HTML bytes ─parse→ Document ─embed→ EmbeddedDocument ─cluster→ EventAssignment; any stage → DeadLetter.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import orjson


class _Record:
    """orjson (de)serialisation shared by every record; unknown fields are ignored so old readers survive new fields."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_dict(cls, raw: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

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

    def to_dict(self) -> dict:
        raw = asdict(self)
        # base64 float32: 4 bytes per dimension on the wire instead of ~10 for JSON decimals
        raw["vector"] = base64.b64encode(np.asarray(self.vector, dtype="<f4").tobytes()).decode()
        return raw

    @classmethod
    def from_dict(cls, raw: dict) -> "EmbeddedDocument":
        record = super().from_dict(raw)
        record.vector = np.frombuffer(base64.b64decode(raw["vector"]), dtype="<f4").copy()
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
    event_size: int = 1  # members in the live window when this document joined, itself included


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

    @classmethod
    def wrap(cls, stage: str, reason: str, detail: str, key: bytes | str | None, value: bytes | None,
             headers: dict | None = None, failed_at_ms: int = 0) -> "DeadLetter":
        if isinstance(key, bytes):
            key = key.decode("utf-8", errors="replace")
        return cls(stage=stage, reason=reason, detail=detail[:2000], key=key,
                   value_b64=base64.b64encode(value or b"").decode(), headers=headers or {},
                   failed_at_ms=failed_at_ms)

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)
