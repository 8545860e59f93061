"""A static student served by numpy: no torch in the worker (model2vec's ``StaticModel`` shape).

Its forward pass is a lookup and a weighted mean: each piece's row (int8 with a scale per row, or float) times its
learned per-piece weight, pooled over the document (mean, attention or the first piece), then the linear head and L2
normalisation. The same arithmetic as ``StudentModel`` in torch, in float32, read from the same folder
(``students.tokenizing`` reads its tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.model_folder import EncoderSettings, model_version
from students.tokenizing import FolderTokenizer, length_batches, pad_token_lists

SERVED_ENCODERS = ("static",)  # static-cnn needs its convolutions: torch serves it
SERVED_STORAGES = ("float", "int8")


def numpy_served(folder: Path) -> bool:
    """Whether this folder is a student the numpy runtime serves."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    return (config.get("encoder") in SERVED_ENCODERS
            and config.get("embedding_storage", "float") in SERVED_STORAGES)


class StaticNumpyEncoder:
    """``encode(texts) -> (n, dim)`` unit vectors from a static student folder."""

    def __init__(self, folder: str | Path, max_length: int = 256):
        from safetensors.numpy import load_file

        self.folder = Path(folder)
        self.settings = EncoderSettings.from_folder(self.folder)
        self.config = json.loads((self.folder / "config.json").read_text())
        weights = {k: v.astype(np.float32) if v.dtype != np.int8 else v
                   for k, v in load_file(str(self.folder / "model.safetensors")).items()}
        if self.config.get("embedding_storage", "float") == "int8":
            self.rows, self.row_scale = weights["embeddings.weight_int8"], weights["embeddings.scale"]
        else:
            self.rows, self.row_scale = weights["embeddings.weight"], None
        self.piece_weights = weights["token_weights.weight"][:, 0]
        head = next(iter(self.config["heads"]))
        self.head_weight, self.head_bias = weights[f"heads.{head}.weight"], weights[f"heads.{head}.bias"]
        self.attention = [weights[f"attention.{i}.{p}"] for i in (0, 2) for p in ("weight", "bias")] \
            if self.config.get("aggregation") == "attentive" else None
        self.tokenize = FolderTokenizer(self.folder, self.settings.prefix, max_length)
        self.dim = int(self.head_weight.shape[0])
        self.pad_id = int(self.config.get("pad_token_id", 1))
        self.device, self.precision = "cpu", f"{self.config.get('embedding_storage', 'float')}-numpy"
        self.version = model_version(self.folder)

    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            out[start:start + batch_size] = self.encode_ids(self.tokenize(texts[start:start + batch_size]))
        return out

    def encode_ids(self, token_lists: list[list[int]], batch_size: int = 256) -> np.ndarray:
        """Token id lists → unit vectors, in input order; padded batches of similar length, pooled by matmul."""
        pooled = np.zeros((len(token_lists), self.head_weight.shape[1]), dtype=np.float32)
        for rows in length_batches(token_lists, batch_size):
            pooled[rows] = self._pooled(*pad_token_lists([token_lists[i] for i in rows], self.pad_id))
        vectors = pooled @ self.head_weight.T + self.head_bias
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = mask.astype(np.float32)
        rows = self.rows[ids].astype(np.float32)
        if self.row_scale is not None:
            rows *= self.row_scale[ids]
        states = rows * self.piece_weights[ids][..., None]
        aggregation = self.config.get("aggregation", "mean")
        if aggregation == "cls":
            return states[:, 0]
        if aggregation == "mean":
            weights = mask / np.maximum(mask.sum(1, keepdims=True), 1.0)
        else:
            w1, b1, w2, b2 = self.attention
            scores = (np.tanh(states @ w1.T + b1) @ w2.T + b2)[..., 0]
            scores = np.where(mask > 0, scores, -np.inf)
            scores = np.exp(scores - scores.max(1, keepdims=True))
            weights = scores / scores.sum(1, keepdims=True)
        return (weights[:, None, :] @ states)[:, 0]
