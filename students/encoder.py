"""A student folder as an encoder: the same ``encode(texts) -> (n, dim)`` as the teacher's, so the embed stage,
``eval`` and ``bench`` take either."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.model_folder import EncoderSettings, model_version, pick_device, quantize_int8, set_torch_threads
from students.tokenizing import length_batches, pad_token_lists


class StudentEncoder:
    def __init__(self, folder: str | Path, device: str = "auto", max_length: int = 256, threads: int | None = None,
                 quantize: str | None = None):
        import torch
        from transformers import AutoTokenizer

        from students.modeling import StudentModel

        self.folder = Path(folder)
        self.settings = EncoderSettings.from_folder(self.folder)
        self.device = pick_device(device)
        set_torch_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        model = StudentModel.from_pretrained(self.folder, dtype=torch.float32).eval()
        self.max_length = min(max_length, model.config.max_input_tokens or max_length)
        if quantize == "int8":
            model = quantize_int8(model, self.device, {torch.nn.Linear, torch.nn.GRU, torch.nn.LSTM})
        self.model = model.to(self.device)
        self.dim = int(self.model.config.output_dim)
        self.version = model_version(self.folder) + (f"+{quantize}" if quantize else "")

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer([self.settings.prefix + t for t in texts], truncation=True,
                              max_length=self.max_length)["input_ids"]

    def encode_ids(self, token_lists: list, batch_size: int = 128) -> np.ndarray:
        """Token id lists (already in the student's vocabulary) → unit vectors, in input order."""
        return encode_token_lists(self.model, token_lists, self.device, batch_size)

    def encode(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.encode_ids(self.tokenize(texts), batch_size)


def encode_token_lists(model, token_lists: list, device: str, batch_size: int = 128) -> np.ndarray:
    import torch

    out = np.zeros((len(token_lists), model.config.output_dim), dtype=np.float32)
    pad = model.config.pad_token_id
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for idx in length_batches(token_lists, batch_size):
            input_ids, mask = pad_batch([token_lists[i] for i in idx], pad)
            vectors = model(input_ids.to(device), mask.to(device))
            out[idx] = torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()
    model.train(was_training)
    return out


def pad_batch(token_lists: list, pad_id: int):
    """``pad_token_lists`` as torch tensors."""
    import torch

    ids, mask = pad_token_lists(token_lists, pad_id)
    return torch.from_numpy(ids), torch.from_numpy(mask)
