"""``newsevents teacher label``: documents → shards of teacher vectors (pseudo-labels), resumable.

Output folder::

    manifest.json        teacher name and version, text recipe, max length, shards, counts, throughput
    shard-00000.npz      doc_ids (str), vectors (float32, n × dim), token_ids (int32, concatenated),
                         token_offsets (int64, n + 1: document i's tokens are token_ids[o[i]:o[i+1]]), langs,
                         with --token-states K: token_states (float16, one row of K per token id)
    token_pca.npz        with --token-states: the PCA basis (mean, components) the token states are stored in

Every shard is written to a temporary file and renamed, then the manifest is rewritten the same way, so a
kill at any moment leaves whole shards only. A rerun skips every document id already in a listed shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from pipeline.flow.embed import document_text
from pipeline.flow.documents import InputStats, iter_documents  # noqa: F401 (part of this module's interface)
from pipeline.files import write_atomic
from pipeline.label_folder import MANIFEST, LabelError, load_manifest, read_shards  # noqa: F401 (this module's interface)
from pipeline.records import Document
from teacher.provision import sha256_file

FORMAT_VERSION = 1


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2))  # fsynced: on disk before it is renamed into place


@contextlib.contextmanager
def _exclusive(out_dir: Path):
    """One labelling run per folder: two would number their shards alike and overwrite each other."""
    handle = open(out_dir / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LabelError(f"another labelling run is writing to {out_dir}") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


TOKEN_BASIS = "token_pca.npz"


def token_basis(out_dir: Path, states: list[np.ndarray], dim: int) -> dict[str, np.ndarray]:
    """The PCA basis token states are stored in: fitted once, on the folder's first batch, then kept, so every
    shard of a folder is in the same ``dim``-dimensional space."""
    path = out_dir / TOKEN_BASIS
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return {"mean": stored["mean"], "components": stored["components"]}
    from sklearn.decomposition import PCA

    sample = np.concatenate(states)
    sample = sample[np.random.default_rng(0).permutation(len(sample))[:50_000]]
    pca = PCA(n_components=min(dim, sample.shape[1], len(sample))).fit(sample)
    basis = {"mean": pca.mean_.astype(np.float32), "components": pca.components_.astype(np.float32)}
    write_atomic(path, lambda f: np.savez(f, **basis))
    return basis


def _flush(out_dir: Path, manifest: dict, docs: list[Document], vectors: np.ndarray, tokens: list[np.ndarray],
           token_states: np.ndarray | None = None) -> None:
    index = len(manifest["shards"])
    name = f"shard-{index:05d}.npz"
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tokens], out=offsets[1:])

    def write(f) -> None:
        np.savez(f, doc_ids=np.array([d.doc_id for d in docs]), vectors=vectors.astype(np.float32),
                 token_ids=np.concatenate(tokens).astype(np.int32) if tokens else np.zeros(0, np.int32),
                 token_offsets=offsets, langs=np.array([d.lang for d in docs]),
                 **({"token_states": token_states} if token_states is not None else {}))

    write_atomic(out_dir / name, write)
    manifest["shards"].append({"file": name, "count": len(docs), "sha256": sha256_file(out_dir / name)})
    manifest["counts"]["labelled"] += len(docs)
    _write_manifest(out_dir, manifest)


def label(docs: Iterable[Document], encoder, out_dir: str | Path, *, batch_size: int = 32, max_chars: int,
          shard_size: int = 1024, limit: int | None = None, progress: bool = True, inputs: list[str] | None = None,
          stats: InputStats | None = None, token_states: int = 0) -> dict:
    """Encode every document not yet labelled in ``out_dir`` and append shards; returns the manifest.
    ``token_states``: also store every token's last-layer state, PCA'd to this many dimensions (fp16)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if token_states and not hasattr(encoder, "tokenizer"):
        raise LabelError("--token-states needs a Hugging Face teacher (it has per-token states)")
    with _exclusive(out_dir):
        return _label_locked(docs, encoder, out_dir, batch_size=batch_size, max_chars=max_chars,
                             shard_size=shard_size, limit=limit, progress=progress, inputs=inputs, stats=stats,
                             token_states=token_states)


def _label_locked(docs: Iterable[Document], encoder, out_dir: Path, *, batch_size: int, max_chars: int,
                  shard_size: int, limit: int | None, progress: bool, inputs: list[str] | None,
                  stats: InputStats | None, token_states: int) -> dict:
    for leftover in out_dir.glob("*.tmp"):  # a write cut short by a kill
        leftover.unlink()
    recipe = {"text": "title + newline + body (description when there is no body)", "max_chars": max_chars,
              "prefix": getattr(getattr(encoder, "settings", None), "prefix", ""),
              "max_length_tokens": encoder.max_length}
    manifest = load_manifest(out_dir)
    if manifest is None:
        manifest = {"format": FORMAT_VERSION, "teacher": encoder.version, "dim": encoder.dim, "recipe": recipe,
                    "token_states": token_states, "shards": [], "counts": {"labelled": 0}, "runs": []}
    elif manifest["teacher"] != encoder.version or manifest["recipe"] != recipe:
        raise LabelError(f"{out_dir} holds labels of {manifest['teacher']} with recipe {manifest['recipe']}; "
                         f"this run is {encoder.version} with {recipe}: use another --out")
    elif manifest.get("token_states", 0) != token_states:
        raise LabelError(f"{out_dir} holds token states of {manifest.get('token_states', 0)} dimensions; this run "
                         f"asks for {token_states}: use the same --token-states or another --out")
    done: set[str] = set()
    for shard in manifest["shards"]:
        path = out_dir / shard["file"]
        if not path.exists() or sha256_file(path) != shard["sha256"]:
            raise LabelError(f"{path} is missing or changed since it was written; remove {out_dir} to start over")
        with np.load(path, allow_pickle=False) as data:
            done.update(data["doc_ids"].tolist())
    already = len(done)
    stats = stats or InputStats()
    pending: list[Document] = []
    encoded_docs = skipped = 0
    encode_seconds = 0.0
    bar = tqdm(desc=f"label {encoder.version}", unit="doc", disable=not progress, initial=0)

    def encode_pending() -> None:
        nonlocal encoded_docs, encode_seconds
        started = time.perf_counter()
        texts = [document_text(d, max_chars) for d in pending]
        projected = None
        if token_states:
            vectors, tokens, states = encoder.encode(texts, batch_size=batch_size, return_tokens=True,
                                                     return_token_states=True)
            basis = token_basis(out_dir, states, token_states)
            projected = ((np.concatenate(states) - basis["mean"]) @ basis["components"].T).astype(np.float16)
        else:
            vectors, tokens = encoder.encode(texts, batch_size=batch_size, return_tokens=True)
        encode_seconds += time.perf_counter() - started
        _flush(out_dir, manifest, pending, vectors, tokens, projected)
        encoded_docs += len(pending)
        bar.update(len(pending))
        pending.clear()

    try:
        for doc in docs:
            if doc.doc_id in done:
                skipped += 1
                continue
            if limit is not None and encoded_docs + len(pending) >= limit:
                break
            done.add(doc.doc_id)
            pending.append(doc)
            if len(pending) >= shard_size:
                encode_pending()
        if pending:
            encode_pending()
    finally:
        bar.close()
    run = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "inputs": inputs or [],
           "device": getattr(encoder, "device", "cpu"), "batch_size": batch_size, "labelled": encoded_docs,
           "resumed_after": already, "skipped_already_labelled": skipped, "unparseable": stats.unparseable,
           "unreadable": stats.unreadable, "encode_seconds": round(encode_seconds, 2),
           "docs_per_s": round(encoded_docs / encode_seconds, 2) if encode_seconds else None}
    manifest["runs"].append(run)
    _write_manifest(out_dir, manifest)
    return manifest
