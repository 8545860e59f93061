"""``teacher-cut``: the teacher itself cut down, its piece table and K of its layers (``students.cut`` builds and
fills it); its last layer's states are pooled."""

from __future__ import annotations

import torch

from students.cut import cut_bert

# bert_config describes the cut; the rest sizes the small BERT of tests made without one
FIELDS = ("bert_config", "kept_layers", "num_layers", "hidden_dim", "num_attention_heads", "max_positions")


def build(model, c) -> int:
    model.bert = cut_bert(c)
    if c.embedding_storage != "float":
        model.bert.embeddings.word_embeddings = model.token_table(model.bert.config.hidden_size)
    return model.bert.config.hidden_size


def token_table_slot(model) -> tuple[torch.nn.Module, str]:
    return model.bert.embeddings, "word_embeddings"


def encode(model, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = model.bert(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
    return h, h


def arch_name(c) -> str:
    layers = "".join(f"-{i}" for i in c.kept_layers) if c.kept_layers else f"-{c.num_layers}"
    return f"teacher-cut{layers}-{c.aggregation}"
