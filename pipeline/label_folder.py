"""The label-folder contract: what ``newsevents teacher label`` writes and students, ``eval`` and the benchmarks read.

    manifest.json      teacher name@hash, dimension, text recipe, shards with sha256 and counts, one entry per run
    shard-00000.npz    doc_ids, vectors (float32 n×dim), token_ids + token_offsets (ragged), langs

A leaf like ``pipeline.model_folder``: reading labels needs no teacher.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

MANIFEST = "manifest.json"


class LabelError(RuntimeError):
    pass


def load_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def read_shards(out_dir: Path, keys: tuple[str, ...] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The shards a manifest lists, in order (what the student trainer reads); ``keys``: only those arrays
    (a token-state folder is 30x the size of its document ids)."""
    manifest = load_manifest(Path(out_dir))
    if manifest is None:
        raise LabelError(f"{out_dir}: no {MANIFEST}")
    for shard in manifest["shards"]:
        with np.load(Path(out_dir) / shard["file"], allow_pickle=False) as data:
            yield {k: data[k] for k in data.files if keys is None or k in keys}
