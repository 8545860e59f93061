"""``ffn``: a per-token MLP over the piece rows, then pooling: a bag of embeddings with a learned transform."""

from __future__ import annotations

import torch
from torch import nn

FIELDS = ("num_layers", "hidden_dim", "embedding_dim")


def build(model, c) -> int:
    model.embeddings = model.token_table()
    model.token_mlp = nn.Sequential(*[m for i in range(c.num_layers) for m in (
        nn.Linear(c.embedding_dim if i == 0 else c.hidden_dim, c.hidden_dim), nn.ReLU())])
    return c.hidden_dim


def encode(model, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = model.token_mlp(model.dropout(model.embeddings(input_ids)))
    return h, h


def arch_name(c) -> str:
    return f"ffn-{c.num_layers}x{c.hidden_dim}-{c.aggregation}-e{c.embedding_dim}"
