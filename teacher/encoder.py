"""A text encoder loaded from any Hugging Face encoder folder: ``encode(texts) -> (n, dim)`` unit vectors.

Pooling (mean over the attention mask, or CLS), the text prefix (e5 wants ``"passage: "``) and whether to
L2-normalise come from ``newsevents_encoder.json`` in the folder when present (``pipeline.model_folder``), so a model folder carries
how it must be used. The token limit is the caller's (``max_length``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.model_folder import EncoderSettings, model_version, pick_device, quantize_int8, set_torch_threads


class HFEncoder:
    """Runs a transformers ``AutoModel`` and pools its last hidden state into unit vectors."""

    def __init__(self, folder: str | Path, device: str = "auto", max_length: int = 256,
                 quantize: str | None = None, threads: int | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        if not (self.folder / "config.json").exists():
            raise FileNotFoundError(f"{self.folder} is not a Hugging Face model folder (no config.json)")
        self.settings = EncoderSettings.from_folder(self.folder)
        self.device = pick_device(device)
        self.max_length = max_length
        set_torch_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        model = AutoModel.from_pretrained(self.folder, dtype=torch.float32)
        model.eval()
        if quantize == "int8":
            model = quantize_int8(model, self.device, {torch.nn.Linear})
        elif self.device.startswith("cuda"):
            model = model.half()
        self.model = model.to(self.device)
        self.dim = int(model.config.hidden_size)
        precision = f"+{quantize}" if quantize else ("+fp16" if self.device.startswith("cuda") else "")
        self.version = model_version(self.folder) + precision  # labels of different precisions never mix

    def encode(self, texts: list[str], batch_size: int = 32, return_tokens: bool = False,
               return_token_states: bool = False):
        """Encode in length-sorted batches (less padding); vectors in input order.

        ``return_tokens``: also the token ids each text was encoded from (after prefix and truncation), which
        is what a student trained on these vectors must read. ``return_token_states`` (with it): also each
        token's last-layer state, ``(tokens, hidden)`` per text: the student's per-token targets.
        """
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * len(texts)
        states: list[np.ndarray] = [np.zeros((0, self.dim), dtype=np.float32)] * len(texts)
        prefixed = [self.settings.prefix + t for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(prefixed[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenizer([prefixed[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                if return_tokens:  # by the mask, so left-padding tokenizers are read right too
                    for row, i in enumerate(idx):
                        kept = batch["attention_mask"][row].bool()
                        tokens[i] = batch["input_ids"][row][kept].numpy().astype(np.int32)
                batch = batch.to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                if return_token_states:
                    for row, i in enumerate(idx):
                        states[i] = hidden[row][batch["attention_mask"][row].bool()].cpu().numpy()
                if self.settings.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                if self.settings.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.cpu().numpy()
        if return_token_states:
            return out, tokens, states
        return (out, tokens) if return_tokens else out
