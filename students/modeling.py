"""The student zoo of the seed paper (Trofimchuk 2022, Table 7) as one Hugging Face model class, its sequence
encoders one module per family in ``students.families``.

token ids → embeddings (64 or 128) → sequence encoder → aggregation → one linear layer per teacher head.

* encoders: ``gru`` / ``lstm`` (1-2 layers, bidirectional or not), ``transformer`` (a small encoder with learned
  positions), ``cnn`` (stacked 1-D convolutions), ``ffn`` (a per-token MLP: a bag of embeddings), ``static``
  (each piece's row times a learnable per-piece weight: model2vec / Tokenlearn, no sequence layer at all),
  ``static-cnn`` (the static rows plus what convolutions over neighbouring pieces add, projected back into the
  rows' space: the word order and the pieces that make up one word, which a bag of pieces cannot see);
  ``teacher-cut`` (the teacher itself cut down: its embeddings and a few of its layers, ``students.cut``);
* aggregation: ``mean`` or ``attentive`` (``a_t = softmax(MLP(h_t))``, ``c = Σ a_t h_t``), padding masked in both,
  or ``cls`` (the state at the first position, the ``<s>`` token);
* heads: one linear layer per teacher, ``{"e5": 384}`` by default; with several teachers the first is the one
  the stream serves (the others only shape training, DvBERT-style).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from students.cut import Q4_BLOCK, q4_0_pack, q4_0_unpack

ENCODERS = ("gru", "lstm", "transformer", "cnn", "ffn", "static", "static-cnn", "teacher-cut")
AGGREGATIONS = ("mean", "attentive", "cls")
# read by some families only (students.families: each module's FIELDS); the rest every student reads
FAMILY_FIELDS = {"num_layers", "bidirectional", "embedding_dim", "hidden_dim", "num_attention_heads", "max_positions",
                 "kernel_size", "bert_config", "kept_layers"}


class StudentConfig(PretrainedConfig):
    model_type = "newsevents-student"

    def __init__(self, encoder: str = "gru", num_layers: int = 2, bidirectional: bool = True,
                 embedding_dim: int = 128, hidden_dim: int = 128, aggregation: str = "attentive",
                 heads: dict[str, int] | None = None, vocab_size: int = 250_002, pad_token_id: int = 1,
                 dropout: float = 0.1, num_attention_heads: int = 4, max_positions: int = 512, kernel_size: int = 3,
                 embedding_storage: str = "float", token_target_dim: int = 0,
                 bert_config: dict | None = None, kept_layers: list[int] | None = None, **kwargs):
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, not {encoder!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        self.encoder = encoder
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.aggregation = aggregation
        self.heads = dict(heads or {"e5": 384})
        self.vocab_size = vocab_size
        self.dropout = dropout
        self.num_attention_heads = num_attention_heads
        self.max_positions = max_positions
        self.kernel_size = kernel_size
        if embedding_storage not in ("float", "int8", "q4"):
            raise ValueError(f"embedding_storage must be float, int8 or q4, not {embedding_storage!r}")
        # int8: the table on disk and in memory, a scale per row; q4: the teacher's Q4_0 blocks (a cut teacher's)
        self.embedding_storage = embedding_storage
        self.token_target_dim = token_target_dim  # > 0: a training-only head predicting the teacher's token states
        # teacher-cut: the cut teacher's BertConfig (its layers, width, vocabulary) and which teacher layers it kept
        self.bert_config = dict(bert_config) if bert_config else None
        self.kept_layers = list(kept_layers) if kept_layers else None
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def primary_head(self) -> str:
        return next(iter(self.heads))

    @property
    def output_dim(self) -> int:
        return self.heads[self.primary_head]

    @property
    def max_input_tokens(self) -> int | None:
        """The most pieces the student can read (a cut teacher has positions for its training length only)."""
        return int(self.bert_config["max_position_embeddings"]) if self.bert_config else None

    @property
    def arch_name(self) -> str:
        """Short name for tables: bigru-2x128-attentive-e64."""
        return self.family.arch_name(self)

    @property
    def family(self):
        from students.families import FAMILIES

        return FAMILIES[self.encoder]

    def to_dict(self) -> dict:
        """Only the fields this student's family reads (and the shared ones): a saved config says what it is.
        Folders saved with every field still load; a field left out takes its default."""
        out = super().to_dict()
        family = self.family
        used = set(family.fields(self) if hasattr(family, "fields") else family.FIELDS)
        for name in FAMILY_FIELDS - used:
            out.pop(name, None)
        return out


class Int8Embedding(nn.Module):
    """A frozen token table stored as int8 with one scale per row (absmax / 127): a quarter of fp32 on disk and
    in memory, at cosine > 0.9999 to the float rows. Served students only; training dequantises first."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.zeros(num_embeddings, 1))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> "Int8Embedding":
        weight = embedding.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        module = cls(*weight.shape)
        module.weight_int8.copy_(torch.round(weight / scale).to(torch.int8))
        module.scale.copy_(scale)
        return module

    def to_float(self, padding_idx: int | None) -> nn.Embedding:
        embedding = nn.Embedding(*self.weight_int8.shape, padding_idx=padding_idx)
        with torch.no_grad():
            embedding.weight.copy_(self.weight_int8.float() * self.scale.float())
        return embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.weight_int8[input_ids].float() * self.scale[input_ids].float()


class Q4Embedding(nn.Module):
    """A frozen token table in the teacher's 4-bit blocks (4.5 bits a weight): a cut teacher's piece rows at a
    seventh of fp32 and bit-exact, since the teacher's table was Q4_0 to begin with."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.register_buffer("weight_q4", torch.zeros(num_embeddings, embedding_dim // 2, dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros(num_embeddings, embedding_dim // Q4_BLOCK, dtype=torch.float16))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> "Q4Embedding":
        packed, scale = q4_0_pack(embedding.weight.detach().float().cpu().numpy())
        module = cls(*embedding.weight.shape)
        module.weight_q4.copy_(torch.as_tensor(packed))
        module.scale.copy_(torch.as_tensor(scale))
        return module

    def to_float(self, padding_idx: int | None) -> nn.Embedding:
        rows = q4_0_unpack(self.weight_q4.cpu().numpy(), self.scale.cpu().numpy())
        embedding = nn.Embedding(*rows.shape, padding_idx=padding_idx)
        with torch.no_grad():
            embedding.weight.copy_(torch.as_tensor(rows))
        return embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        packed = self.weight_q4[input_ids]
        nibbles = torch.stack([packed & 15, packed >> 4], dim=-1).flatten(-2).float() - 8.0
        scales = self.scale[input_ids].float().repeat_interleave(Q4_BLOCK, dim=-1)
        return nibbles * scales


TABLES = {"int8": Int8Embedding, "q4": Q4Embedding}


class StudentModel(PreTrainedModel):
    """The token table, pooling and heads every student shares, around its family's sequence encoder
    (``students.families``: each registers its layers here, under the names saved folders use)."""

    config_class = StudentConfig
    base_model_prefix = "student"
    main_input_name = "input_ids"

    def __init__(self, config: StudentConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.dropout)
        width = self.family.build(self, config)
        if config.aggregation == "attentive":
            self.attention = nn.Sequential(nn.Linear(width, width // 2), nn.Tanh(), nn.Linear(width // 2, 1))
        self.heads = nn.ModuleDict({name: nn.Linear(width, dim) for name, dim in config.heads.items()})
        if config.token_target_dim:
            self.token_head = nn.Linear(width, config.token_target_dim)
        self.post_init()
        if hasattr(self.family, "after_init"):
            self.family.after_init(self)

    @property
    def family(self):
        from students.families import FAMILIES

        return FAMILIES[self.config.encoder]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> "StudentModel":
        """``PreTrainedModel.from_pretrained``; a shipped ONNX-served folder, which keeps its layers only in its
        int8 graph (``students.onnx_folder``), loads them from there, dequantised."""
        from students.onnx_folder import layers_in_onnx

        folder = Path(str(pretrained_model_name_or_path))
        if not (folder.is_dir() and layers_in_onnx(folder)):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        return cls._from_onnx_layers(folder, kwargs.get("dtype") or torch.float32)

    @classmethod
    def _from_onnx_layers(cls, folder: Path, dtype: torch.dtype) -> "StudentModel":
        from safetensors.torch import load_file

        from students.onnx_folder import WEIGHTS_FILE, layers_from_onnx

        model = cls(StudentConfig.from_pretrained(folder))
        wanted = model.state_dict()
        table = load_file(str(folder / WEIGHTS_FILE))
        state = {k: torch.from_numpy(v) for k, v in layers_from_onnx(folder, set(wanted) - set(table)).items()}
        state.update(table)
        missing = [k for k in wanted if k not in state and not k.startswith("token_head.")]  # training-only
        if missing:
            raise ValueError(f"{folder}: model.onnx does not hold this student's layers (no {missing[:3]})")
        model.load_state_dict(state, strict=False)
        return model.to(dtype).eval()

    def token_table(self, dim: int | None = None) -> nn.Module:
        """The piece table in the configured storage (float while training)."""
        c = self.config
        dim = dim or c.embedding_dim
        if c.embedding_storage != "float":
            return TABLES[c.embedding_storage](c.vocab_size, dim)
        return nn.Embedding(c.vocab_size, dim, padding_idx=c.pad_token_id)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def with_embedding_storage(self, storage: str) -> "StudentModel":
        """Switch the token table between float (training) and int8/q4 (serving), in place."""
        if storage == self.config.embedding_storage:
            return self
        slot = getattr(self.family, "token_table_slot", None)
        owner, name = slot(self) if slot else (self, "embeddings")
        table = getattr(owner, name)
        if not isinstance(table, nn.Embedding):
            table = table.to_float(self.config.pad_token_id)
        setattr(owner, name, TABLES[storage].from_float(table) if storage != "float" else table)
        self.config.embedding_storage = storage
        return self

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, length) → the aggregated document state, before the heads."""
        return self.encode_with_token_states(input_ids, attention_mask)[0]

    def encode_with_token_states(self, input_ids: torch.Tensor,
                                 attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The aggregated document state and each token's state (for a static student: its row, unweighted)."""
        mask = attention_mask.bool()
        h, tokens = self.family.encode(self, input_ids, mask)
        return self.pool(self.dropout(h), mask), tokens

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states → one state per document: the first token's (cls), attention-weighted or the mean,
        padding masked."""
        if self.config.aggregation == "cls":
            return h[:, 0]
        if self.config.aggregation == "attentive":
            scores = self.attention(h).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=1).nan_to_num(0.0)
        else:
            weights = mask.float() / mask.sum(1, keepdim=True).clamp(min=1)
        return (weights.unsqueeze(-1) * h).sum(1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                all_heads: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        """The primary head's vectors (unnormalised), or every head's when ``all_heads`` (then also
        ``"tokens"``: the token head's prediction of the teacher's token states, when the model has one)."""
        state, tokens = self.encode_with_token_states(input_ids, attention_mask)
        if all_heads:
            outputs = {name: head(state) for name, head in self.heads.items()}
            if self.config.token_target_dim:
                outputs["tokens"] = self.token_head(tokens)
            return outputs
        return self.heads[self.config.primary_head](state)
