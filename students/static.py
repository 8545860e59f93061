"""Static tables that start from what the teacher computes (model2vec's distillation, Tokenlearn's weights).

A static student's table row for a piece is the teacher's own output for that piece: ``[<s>, piece, </s>]``
through the teacher, mean pooled (``model2vec.distill.inference.create_embeddings``), then PCA'd to the
student's width (``model2vec``'s ``apply_pca``). Its per-piece weight starts from SIF on the piece's corpus
frequency (``a / (a + p)``), so frequent pieces ("the", "в", punctuation) count little. Training on teacher
labels then moves the rows, the weights and a linear head (Tokenlearn's recipe).

The teacher's pass over the vocabulary costs ~1 ms per piece on two CPU cores, so it is cached per teacher
version and piece set in the training folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.files import write_atomic

DEFAULT_SIF = 1e-3  # SIF's ``a``; Tokenlearn and model2vec use 1e-3 .. 1e-4


def _model2vec_inference():
    try:
        from model2vec.distill import inference
    except ImportError as err:
        raise ImportError(f"static students need model2vec's distillation ({err}): pip install 'newsevents[train]' "
                          "skeletoken==0.6.1 --no-deps (deploy/setup.sh does)") from err
    return inference


def teacher_piece_vectors(teacher_folder: str | Path, piece_ids: np.ndarray, *, device: str = "cpu",
                          cache: Path | None = None) -> np.ndarray:
    """The teacher's mean-pooled output for each piece alone, ``(len(piece_ids), hidden)`` float32.

    ``piece_ids`` are ids in the teacher's own vocabulary. ``cache`` (an .npz) keeps every piece computed so far
    for this teacher: a later student with another vocabulary pays only for the pieces that are new."""
    from pipeline.model_folder import model_version

    piece_ids = np.asarray(piece_ids, dtype=np.int64)
    version = model_version(Path(teacher_folder))
    known_ids, known = np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["teacher"]) == version:
                known_ids, known = stored["piece_ids"], stored["vectors"].astype(np.float32)
    missing = np.setdiff1d(piece_ids, known_ids)
    if len(missing):
        computed = _run_pieces(Path(teacher_folder), missing, device)
        known_ids = np.concatenate([known_ids, missing])
        known = np.concatenate([known, computed]) if len(known) else computed
        order = np.argsort(known_ids)
        known_ids, known = known_ids[order], known[order]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, lambda f: np.savez(f, teacher=np.array(version), piece_ids=known_ids, vectors=known),
                         fsync=False, tmp_suffix=".tmp.npz")
    return known[np.searchsorted(known_ids, piece_ids)]


def _run_pieces(teacher_folder: Path, piece_ids: np.ndarray, device: str) -> np.ndarray:
    """``[<s>, piece, </s>]`` for each piece through the teacher, mean pooled (model2vec's distillation core)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    create_embeddings = _model2vec_inference().create_embeddings
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    model = AutoModel.from_pretrained(teacher_folder, dtype=torch.float32)
    bos = tokenizer.cls_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    sequences = [[int(bos), int(piece), int(eos)] for piece in piece_ids]
    vectors = create_embeddings(model, sequences, device=device, pad_token_id=int(tokenizer.pad_token_id))
    return vectors.astype(np.float32)


def sif_weights(counts: np.ndarray, a: float = DEFAULT_SIF) -> np.ndarray:
    """Smooth inverse frequency ``a / (a + p(piece))`` from corpus counts (Arora et al. 2017)."""
    counts = np.asarray(counts, dtype=np.float64)
    probability = counts / max(1.0, counts.sum())
    return (a / (a + probability)).astype(np.float32)


def reduce_table(vectors: np.ndarray, dim: int) -> np.ndarray:
    """PCA to ``dim`` (model2vec's ``apply_pca``), rows scaled to unit norm on average."""
    apply_pca = _model2vec_inference().apply_pca
    centred = vectors - vectors.mean(axis=0)
    reduced = apply_pca(centred, dim) if dim < vectors.shape[1] else centred
    if reduced.shape[1] < dim:  # wider than the teacher: pad with zeros, training fills them
        reduced = np.pad(reduced, ((0, 0), (0, dim - reduced.shape[1])))
    return (reduced / (np.linalg.norm(reduced, axis=1).mean() + 1e-9)).astype(np.float32)
