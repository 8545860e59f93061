"""A student folder's tokenizer without transformers (whose import brings torch): the ``tokenizers`` library on the
folder's ``tokenizer.json``, giving the ids transformers' fast tokenizer gives (a test compares them)."""

from __future__ import annotations

from pathlib import Path


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
