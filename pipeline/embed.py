"""Document → vector. The pure core of the embed stage: text recipe, encoder loading, batch embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from pipeline.schemas import Document, EmbeddedDocument

DEFAULT_MAX_CHARS = 1500  # tokenising whole articles only to truncate them is the pipeline's bottleneck


class Encoder(Protocol):
    version: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


def document_text(doc: Document, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The one text recipe every model sees (teacher, students, stream): title, then body, cut by characters."""
    title = doc.title.strip()
    body = doc.text.strip() or doc.description.strip()
    text = f"{title}\n{body}" if title and body else (title or body)
    return text[:max_chars]


def load_encoder(folder: str | Path, device: str = "auto", max_length: int = 256,
                 quantize: str | None = None, threads: int | None = None) -> Encoder:
    """Load the encoder a model folder describes: a distilled student, or any Hugging Face encoder."""
    from students.encoder import StudentEncoder, is_student_folder
    from teacher.encoder import HFEncoder

    if is_student_folder(folder):
        return StudentEncoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)
    return HFEncoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)


def embed(docs: Sequence[Document], encoder: Encoder, batch_size: int = 32,
          max_chars: int = DEFAULT_MAX_CHARS) -> list[EmbeddedDocument]:
    """A batch of documents → the same batch with unit vectors and the model version."""
    if not docs:
        return []
    vectors = encoder.encode([document_text(d, max_chars) for d in docs], batch_size=batch_size)
    return [
        EmbeddedDocument(doc_id=d.doc_id, vector=v, model_version=encoder.version, title=d.title,
                         published_time=d.published_time, ingested_at_ms=d.ingested_at_ms, lang=d.lang, url=d.url)
        for d, v in zip(docs, vectors)
    ]
