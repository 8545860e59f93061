"""Document → vector. The pure core of the embed stage: the text recipe and batch embedding with any ``Encoder``
(loading one from a model folder is ``pipeline.models.load_encoder``)."""

from __future__ import annotations

from typing import Sequence

from pipeline.model_folder import Encoder
from pipeline.records import Document, EmbeddedDocument

DEFAULT_MAX_CHARS = 1500  # tokenising whole articles only to truncate them is the pipeline's bottleneck


def document_text(doc: Document, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The one text recipe every model sees (teacher, students, stream): title, then body, cut by characters."""
    title = doc.title.strip()
    body = doc.text.strip() or doc.description.strip()
    text = f"{title}\n{body}" if title and body else (title or body)
    return text[:max_chars]


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
