"""``gru`` / ``lstm``: 1-2 recurrent layers over the piece rows, bidirectional or not (the seed paper's student)."""

from __future__ import annotations

import torch
from torch import nn

FIELDS = ("num_layers", "bidirectional", "hidden_dim", "embedding_dim")


def build(model, c) -> int:
    rnn = nn.GRU if c.encoder == "gru" else nn.LSTM
    model.embeddings = model.token_table()
    model.rnn = rnn(c.embedding_dim, c.hidden_dim, num_layers=c.num_layers, batch_first=True,
                    bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0)
    return c.hidden_dim * (2 if c.bidirectional else 1)


def encode(model, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = model.dropout(model.embeddings(input_ids))
    lengths = mask.sum(1).clamp(min=1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    h, _ = model.rnn(packed)
    h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=input_ids.shape[1])
    return h, h


def arch_name(c) -> str:
    prefix = "bi" if c.bidirectional else ""
    return f"{prefix}{c.encoder}-{c.num_layers}x{c.hidden_dim}-{c.aggregation}-e{c.embedding_dim}"
