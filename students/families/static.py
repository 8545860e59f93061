"""``static``: each piece's row times a learnable per-piece weight, pooled (model2vec / Tokenlearn; no sequence
layer). ``static-cnn``: the same rows plus what convolutions over neighbouring pieces add, projected back into the
rows' space (word order, and the pieces that make one word, which a bag of pieces cannot see). A served static
student runs without torch: ``students.static_runtime``."""

from __future__ import annotations

import torch
from torch import nn

from students.families.convolution import convolutions, convolve

FIELDS = ("embedding_dim",)
CNN_FIELDS = ("num_layers", "hidden_dim", "kernel_size")


def build(model, c) -> int:
    model.embeddings = model.token_table()
    # the per-piece weight (SIF at the start) decides how much a piece counts in the mean
    model.token_weights = nn.Embedding(c.vocab_size, 1, padding_idx=c.pad_token_id)
    if c.encoder == "static-cnn":
        model.convolutions = convolutions(c)
        model.context_projection = nn.Linear(c.hidden_dim, c.embedding_dim)
    return c.embedding_dim


def after_init(model) -> None:
    """Every piece counts once, and a static-cnn starts as the static student it may be initialised from."""
    with torch.no_grad():
        nn.init.ones_(model.token_weights.weight)
        model.token_weights.weight[model.config.pad_token_id].zero_()
        if model.config.encoder == "static-cnn":
            model.context_projection.weight.zero_()
            model.context_projection.bias.zero_()


def encode(model, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted rows to pool, and the rows themselves (unweighted) for a token head."""
    x = model.dropout(model.embeddings(input_ids))
    h, tokens = x * model.token_weights(input_ids), x
    if model.config.encoder == "static-cnn":
        context = model.context_projection(convolve(model.convolutions, x, mask))
        h, tokens = h + context, x + context
    return h, tokens


def arch_name(c) -> str:
    if c.encoder == "static-cnn":
        return f"static-cnn-{c.num_layers}x{c.hidden_dim}-{c.aggregation}-e{c.embedding_dim}"
    return f"static-{c.aggregation}-e{c.embedding_dim}"


def fields(c) -> tuple[str, ...]:
    return FIELDS + (CNN_FIELDS if c.encoder == "static-cnn" else ())
