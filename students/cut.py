"""The ``teacher-cut`` student: the teacher itself, cut down (layer-keeping distillation, sentence-transformers'
``examples/training/distillation``).

It keeps the teacher's piece embeddings (for the pruned vocabulary's pieces only), its position and type embeddings,
its embedding LayerNorm and K of its layers (the bottom K, or a spread that keeps the top one), reads a shorter input,
mean-pools over the attention mask like e5, and maps the pooled state into the teacher's (centred) space with a linear
head with a bias, fitted by ridge regression before training starts: the cut model's output mean is far from the
teacher's, and a least-squares head is where gradient descent would spend its first thousand steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# teacher BertConfig fields a cut keeps as they are (the rest is the cut's own: layers, vocabulary, padding)
_BERT_FIELDS = ("hidden_size", "num_attention_heads", "intermediate_size", "hidden_act", "hidden_dropout_prob",
                "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")


def parse_kept_layers(spec: str, teacher_layers: int) -> list[int]:
    """``bottom-3`` → [0, 1, 2]; ``spread-3`` → first, middle, last ([0, 5, 11] of 12); ``0,5,11`` → as written."""
    spec = spec.strip()
    if spec.startswith("bottom-"):
        layers = list(range(int(spec.split("-", 1)[1])))
    elif spec.startswith("spread-"):
        k = int(spec.split("-", 1)[1])
        layers = sorted({round(i * (teacher_layers - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
    else:
        layers = sorted({int(x) for x in spec.split(",") if x.strip()})
    if not layers or layers[0] < 0 or layers[-1] >= teacher_layers:
        raise ValueError(f"kept layers {spec!r}: need 1..{teacher_layers} layers numbered 0..{teacher_layers - 1} "
                         "(bottom-K, spread-K or a comma list)")
    return layers


def cut_bert_config(teacher_folder: Path, kept_layers: list[int], vocab_size: int, pad_token_id: int,
                    max_tokens: int) -> dict:
    """The cut teacher's BertConfig as a dict: the teacher's width and heads, ``len(kept_layers)`` layers, the pruned
    vocabulary, and positions only as many as the student reads."""
    teacher = json.loads((Path(teacher_folder) / "config.json").read_text())
    config = {k: teacher[k] for k in _BERT_FIELDS if k in teacher}
    config["max_position_embeddings"] = min(int(teacher.get("max_position_embeddings", 512)), max_tokens)
    return {**config, "num_hidden_layers": len(kept_layers), "vocab_size": int(vocab_size),
            "pad_token_id": int(pad_token_id)}


def cut_bert(config):
    """The BertModel a ``StudentConfig(encoder="teacher-cut")`` describes (randomly initialised; weights come from
    ``copy_teacher_weights`` or ``from_pretrained``). A config saved without a ``bert_config`` (tests of every
    encoder) gets a small one from the student's own width and layer count."""
    from transformers import BertConfig, BertModel

    c = config
    bert = c.bert_config or {
        "hidden_size": c.hidden_dim, "num_attention_heads": c.num_attention_heads,
        "intermediate_size": 2 * c.hidden_dim, "num_hidden_layers": c.num_layers, "vocab_size": c.vocab_size,
        "pad_token_id": c.pad_token_id, "max_position_embeddings": c.max_positions}
    # "eager" attention exports to ONNX as plain MatMul/Softmax, which ONNX Runtime fuses and quantises
    return BertModel(BertConfig(**bert, attn_implementation="eager"), add_pooling_layer=False)


def copy_teacher_weights(model, teacher_folder: Path, kept_layers: list[int], new_to_old: np.ndarray) -> None:
    """Fill the student's cut BERT from the teacher: piece rows by ``new_to_old`` (student id → teacher id), the
    first positions, the type embeddings, the embedding LayerNorm and the kept layers, renumbered 0..K-1."""
    import torch
    from safetensors import safe_open

    target = model.bert.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    with safe_open(str(Path(teacher_folder) / "model.safetensors"), framework="pt") as weights:
        names = {k.removeprefix("bert.").removeprefix("model."): k for k in weights.keys()}
        for name in target:
            source = name
            if name.startswith("encoder.layer."):
                index, rest = name[len("encoder.layer."):].split(".", 1)
                source = f"encoder.layer.{kept_layers[int(index)]}.{rest}"
            if source not in names:
                raise ValueError(f"{teacher_folder}: the teacher has no weight {source!r} to cut from")
            tensor = weights.get_tensor(names[source]).float()
            if name == "embeddings.word_embeddings.weight":
                tensor = tensor[torch.as_tensor(new_to_old)]
            elif name == "embeddings.position_embeddings.weight":
                tensor = tensor[:target[name].shape[0]]
            loaded[name] = tensor
    model.bert.load_state_dict(loaded, strict=False)


def new_to_old_ids(old_to_new: np.ndarray, vocab_size: int, unk_old: int = 3) -> np.ndarray:
    """student id → the teacher id it came from (``old_to_new`` maps every dropped teacher id to unk)."""
    new_to_old = np.full(vocab_size, unk_old, dtype=np.int64)
    kept = np.flatnonzero(old_to_new != old_to_new[unk_old])
    new_to_old[old_to_new[kept]] = kept
    new_to_old[old_to_new[unk_old]] = unk_old
    return new_to_old


# --- the piece table in the teacher's own 4-bit blocks (numpy only: ONNX serving imports no torch) -----
Q4_BLOCK = 32  # weights per block, as in the teacher's own Q4_0 file (teacher/provision.py)


def q4_0_pack(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float rows (n, d) → (nibbles (n, d/2) uint8, scales (n, d/32) fp16) by ggml's Q4_0 rule: per block of 32
    the value of largest magnitude is -8 scale. Exact for rows that were Q4_0 already: the teacher's piece rows."""
    n, d = rows.shape
    blocks = rows.astype(np.float32).reshape(n, d // Q4_BLOCK, Q4_BLOCK)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)
    scale = (extreme / -8.0).astype(np.float16)
    inverse = np.where(scale != 0, 1.0 / scale.astype(np.float32), 0.0)
    nibbles = np.clip(np.round(blocks * inverse) + 8, 0, 15).astype(np.uint8).reshape(n, d)
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8), scale[..., 0]


def q4_0_unpack(packed: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The inverse of ``q4_0_pack`` for any leading shape: (..., d/2) uint8 and (..., d/32) → (..., d) float32."""
    nibbles = np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
    values = (nibbles.astype(np.float32) - 8.0).reshape(*scales.shape, Q4_BLOCK)
    return (values * scales.astype(np.float32)[..., None]).reshape(nibbles.shape)
