"""Token ids for students without transformers (whose import brings torch): the folder's tokenizer through the
``tokenizers`` library, giving the ids transformers' fast tokenizer gives (a test compares them), and the padding
and length batching every runtime (torch, ONNX Runtime, numpy) shares."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np


class FolderTokenizer:
    def __init__(self, folder: str | Path, prefix: str, max_length: int):
        from tokenizers import Tokenizer

        self.prefix = prefix
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)

    def __call__(self, texts: list[str]) -> list[list[int]]:
        # transformers' tokenizer drops trailing whitespace before the end piece; so does this one
        return [e.ids for e in self.tokenizer.encode_batch([(self.prefix + t).rstrip() for t in texts])]


def pad_token_lists(token_lists: list, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask), both (batch, longest) int64: the lists left-aligned, ``pad_id`` and mask 0 after each."""
    length = max(1, max(len(t) for t in token_lists))
    ids = np.full((len(token_lists), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_lists), length), dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        ids[row, :len(tokens)], mask[row, :len(tokens)] = tokens, 1
    return ids, mask


def length_batches(token_lists: list, batch_size: int) -> Iterator[list[int]]:
    """Positions of ``token_lists`` in batches of similar length (shortest first): less padding."""
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
