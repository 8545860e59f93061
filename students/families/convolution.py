"""``cnn``: stacked 1-D convolutions over the piece rows (padding stays zero and does not leak in)."""

from __future__ import annotations

import torch
from torch import nn

FIELDS = ("num_layers", "hidden_dim", "embedding_dim", "kernel_size")


def convolutions(c) -> nn.ModuleList:
    """``num_layers`` same-length convolutions from the rows' width to ``hidden_dim`` (also static-cnn's)."""
    return nn.ModuleList(nn.Conv1d(c.embedding_dim if i == 0 else c.hidden_dim, c.hidden_dim, c.kernel_size,
                                   padding=c.kernel_size // 2) for i in range(c.num_layers))


def convolve(layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, length, width) → (batch, length, hidden), each layer ReLU'd and re-masked."""
    h = x.transpose(1, 2)
    for conv in layers:
        h = torch.relu(conv(h)) * mask.unsqueeze(1)
    return h.transpose(1, 2)


def build(model, c) -> int:
    model.embeddings = model.token_table()
    model.convolutions = convolutions(c)
    return c.hidden_dim


def encode(model, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = convolve(model.convolutions, model.dropout(model.embeddings(input_ids)), mask)
    return h, h


def arch_name(c) -> str:
    return f"cnn-{c.num_layers}x{c.hidden_dim}-{c.aggregation}-e{c.embedding_dim}"
