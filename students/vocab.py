"""Vocabulary pruning: a student keeps only the teacher's token ids seen in its training data.

The teacher's XLM-R tokenizer has 250,002 pieces; a news crawl uses a few tens of thousands. We write a copy of
the teacher's ``tokenizer.json`` whose Unigram vocabulary holds the special tokens and the seen pieces only,
renumbered densely. The tokenizer itself then emits the new ids (the remap happens at tokenisation), so the
embedding table has one row per kept piece and the student's folder carries a 1-2 MB tokenizer, not 17 MB.

Why this is exact: Unigram picks the highest-scoring segmentation. Removing pieces removes options, so a text
whose best segmentation used only kept pieces is segmented exactly as before; only text that needs an unseen
piece is segmented differently (into smaller kept pieces, or ``<unk>``). ``prune_tokenizer`` checks this on
the training texts it is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

TOKENIZER_CONFIG = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>",
                    "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "cls_token": "<s>",
                    "pad_token": "<pad>", "mask_token": "<mask>"}


def seen_token_ids(token_lists: Iterable[np.ndarray]) -> np.ndarray:
    seen: set[int] = set()
    for tokens in token_lists:
        seen.update(np.unique(tokens).tolist())
    return np.array(sorted(seen), dtype=np.int64)


def prune_tokenizer(teacher_folder: Path, kept_ids: np.ndarray, out_folder: Path) -> np.ndarray:
    """Write the pruned tokenizer into ``out_folder``; return ``old id → new id`` (unk for dropped ids)."""
    spec = json.loads((Path(teacher_folder) / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"vocabulary pruning supports Unigram tokenizers (XLM-R, e5); this one is {model.get('type')}")
    vocab = model["vocab"]
    special = sorted({t["id"] for t in spec["added_tokens"]})
    keep = sorted(set(special) | {int(i) for i in kept_ids if 0 <= int(i) < len(vocab)})
    old_to_new = np.full(len(vocab), -1, dtype=np.int64)
    old_to_new[keep] = np.arange(len(keep))
    unk_new = int(old_to_new[model["unk_id"]])
    model["vocab"] = [vocab[i] for i in keep]
    model["unk_id"] = unk_new
    for token in spec["added_tokens"]:
        token["id"] = int(old_to_new[token["id"]])
    for entry in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        entry["ids"] = [int(old_to_new[i]) for i in entry["ids"]]
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    (out_folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    (out_folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    old_to_new[old_to_new < 0] = unk_new
    return old_to_new


def vocabulary_map(teacher_folder: Path, student_folder: Path) -> np.ndarray:
    """``teacher id → student id`` for a student whose tokenizer was pruned from this teacher's (unk elsewhere):
    how teacher labels, which store the teacher's ids, are read by a student that already exists."""
    def pieces(folder: Path) -> list[str]:
        spec = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))
        if spec["model"].get("type") != "Unigram":
            raise ValueError(f"{folder}: expected a Unigram tokenizer, found {spec['model'].get('type')}")
        return [piece for piece, _ in spec["model"]["vocab"]]

    student_spec = json.loads((Path(student_folder) / "tokenizer.json").read_text(encoding="utf-8"))
    student_ids = {piece: i for i, piece in enumerate(pieces(student_folder))}
    old_to_new = np.full(len(pieces(teacher_folder)), int(student_spec["model"]["unk_id"]), dtype=np.int64)
    for old, piece in enumerate(pieces(teacher_folder)):
        if piece in student_ids:
            old_to_new[old] = student_ids[piece]
    return old_to_new
