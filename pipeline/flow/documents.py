"""Documents from disk, parsed exactly as the stream's parse stage parses them (for labelling and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pipeline.flow.parse import ParseError, document_from_json, parse_html
from pipeline.flow.sources import FORMAT_DOCUMENT_JSON, SourceProblem, iter_sources
from pipeline.records import Document


@dataclass
class InputStats:
    read: int = 0
    unreadable: int = 0  # paths or lines that could not be read
    unparseable: int = 0  # documents the parser dead-letters
    problems: list[str] = field(default_factory=list)


def iter_documents(inputs: list[str | Path], stats: InputStats) -> Iterator[Document]:
    """Contest HTML (files, dirs, tar.gz) and JSONL documents, parsed exactly as the parse stage does."""
    for item in iter_sources(inputs):
        if isinstance(item, SourceProblem):
            stats.unreadable += 1
            stats.problems.append(f"{item.origin}: {item.reason}")
            continue
        stats.read += 1
        try:
            if item.format == FORMAT_DOCUMENT_JSON:
                yield document_from_json(item.value, item.key, None, item.origin)
            else:
                yield parse_html(item.value, item.key, source=item.origin)
        except ParseError as err:
            stats.unparseable += 1
            stats.problems.append(f"{item.origin}: {err.reason}: {err.detail}")
