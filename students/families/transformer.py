"""``transformer``: a small pre-norm encoder with learned positions over the piece rows."""

from __future__ import annotations

import torch
from torch import nn

FIELDS = ("num_layers", "hidden_dim", "embedding_dim", "num_attention_heads", "max_positions")


def build(model, c) -> int:
    model.embeddings = model.token_table()
    model.input_projection = (nn.Linear(c.embedding_dim, c.hidden_dim) if c.embedding_dim != c.hidden_dim
                              else nn.Identity())
    model.positions = nn.Embedding(c.max_positions, c.hidden_dim)
    layer = nn.TransformerEncoderLayer(c.hidden_dim, c.num_attention_heads, dim_feedforward=2 * c.hidden_dim,
                                       dropout=c.dropout, batch_first=True, norm_first=True)
    model.transformer = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
    return c.hidden_dim


def encode(model, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = model.dropout(model.embeddings(input_ids))
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).clamp(max=model.config.max_positions - 1)
    h = model.transformer(model.input_projection(x) + model.positions(positions), src_key_padding_mask=~mask)
    return h, h


def arch_name(c) -> str:
    return f"transformer-{c.num_layers}x{c.hidden_dim}-{c.aggregation}-e{c.embedding_dim}"
