"""Training data for distillation: token ids of each document and every teacher's vector for it.

Sources are ``newsevents teacher label`` folders. The first folder's teacher is the primary one: the student
reads its tokenizer and serves its space. Its shards already hold the token ids the teacher read. Documents that
only another teacher labelled (USE labels the whole corpus in minutes) are tokenised here from ``inputs`` with the
primary teacher's tokenizer and the same text recipe, so every document feeds every head it has a target for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from teacher.label import load_manifest, read_shards


def head_name(teacher_version: str) -> str:
    """``multilingual-e5-small@c70b…`` → ``e5``; ``use-multilingual-v3@0.2.1`` → ``use``; else a clean prefix."""
    name = teacher_version.split("@", 1)[0].split("+", 1)[0].lower()
    if "e5" in name:
        return "e5"
    if name.startswith("use"):
        return "use"
    return re.sub(r"[^a-z0-9_]", "_", name) or "teacher"


@dataclass
class DistillationData:
    doc_ids: list[str]
    tokens: list[np.ndarray]  # primary teacher's token ids, as it read them
    targets: dict[str, np.ndarray]  # head → (n, dim) float32; zero rows where that teacher has no vector
    has_target: dict[str, np.ndarray]  # head → (n,) bool
    teachers: dict[str, str]  # head → teacher version
    recipe: dict
    token_targets: list[np.ndarray] | None = None  # primary teacher's token states (tokens × K, fp16), if stored

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def heads(self) -> dict[str, int]:
        return {name: int(t.shape[1]) for name, t in self.targets.items()}

    def subset(self, rows: np.ndarray) -> "DistillationData":
        return DistillationData([self.doc_ids[r] for r in rows], [self.tokens[r] for r in rows],
                                {k: v[rows] for k, v in self.targets.items()},
                                {k: v[rows] for k, v in self.has_target.items()}, self.teachers, self.recipe,
                                [self.token_targets[r] for r in rows] if self.token_targets is not None else None)

    def cut(self, max_tokens: int) -> "DistillationData":
        """Each document's first ``max_tokens`` pieces, its last (``</s>``) kept last: a student that reads less than
        the teacher did still learns the teacher's vector of the whole text."""
        def cut_one(array: np.ndarray) -> np.ndarray:
            return array if len(array) <= max_tokens else np.concatenate([array[:max_tokens - 1], array[-1:]])

        if all(len(t) <= max_tokens for t in self.tokens):
            return self
        return DistillationData(self.doc_ids, [cut_one(t) for t in self.tokens], self.targets, self.has_target,
                                self.teachers, self.recipe,
                                [cut_one(s) for s in self.token_targets] if self.token_targets is not None else None)

    def split(self, validation_fraction: float) -> tuple["DistillationData", "DistillationData"]:
        """Deterministic by document id: the same documents validate on every run and resume."""
        held = np.array([int(hashlib.blake2b(d.encode(), digest_size=4).hexdigest(), 16) / 2**32 < validation_fraction
                         for d in self.doc_ids])
        return self.subset(np.flatnonzero(~held)), self.subset(np.flatnonzero(held))


def load_distillation_data(label_dirs: list[str | Path], inputs: list[str] | None = None, tokenizer=None,
                           exclude_ids: set[str] | None = None, cache: Path | None = None) -> DistillationData:
    """Join label folders by document id. ``tokenizer`` (the primary teacher's, with its prefix and max length
    taken from the primary manifest) tokenises documents that have no primary tokens, read from ``inputs``."""
    exclude_ids = exclude_ids or set()
    manifests = [load_manifest(Path(d)) for d in label_dirs]
    for folder, manifest in zip(label_dirs, manifests):
        if manifest is None:
            raise FileNotFoundError(f"{folder}: not a `newsevents teacher label` folder (no manifest.json)")
    primary = head_name(manifests[0]["teacher"])
    recipe = manifests[0]["recipe"]
    vectors: dict[str, dict[str, np.ndarray]] = {}
    tokens: dict[str, np.ndarray] = {}
    token_states: dict[str, np.ndarray] = {}
    teachers: dict[str, str] = {}
    for folder, manifest in zip(label_dirs, manifests):
        name = head_name(manifest["teacher"])
        if name in teachers and teachers[name] != manifest["teacher"]:
            raise ValueError(f"two label folders for head {name!r} from different teachers: "
                             f"{teachers[name]} and {manifest['teacher']}")
        teachers[name] = manifest["teacher"]
        same_tokens = name == primary and manifest["recipe"] == recipe
        for shard in read_shards(Path(folder)):
            offsets = shard["token_offsets"]
            for row, doc_id in enumerate(shard["doc_ids"].tolist()):
                if doc_id in exclude_ids:
                    continue
                vectors.setdefault(name, {})[doc_id] = shard["vectors"][row]
                if same_tokens:
                    tokens[doc_id] = shard["token_ids"][offsets[row]:offsets[row + 1]]
                    if "token_states" in shard:
                        token_states[doc_id] = shard["token_states"][offsets[row]:offsets[row + 1]]
    all_ids = sorted(set().union(*[set(v) for v in vectors.values()]))
    missing = [d for d in all_ids if d not in tokens]
    if missing and cache is not None and cache.exists():
        tokens.update({k: v for k, v in _read_token_cache(cache).items() if k in set(missing)})
        missing = [d for d in all_ids if d not in tokens]
    if missing and inputs and tokenizer is not None:
        found = _tokenise_from_inputs(set(missing), inputs, tokenizer, recipe)
        tokens.update(found)
        if cache is not None and found:
            _write_token_cache(cache, {**(_read_token_cache(cache) if cache.exists() else {}), **found})
    doc_ids = [d for d in all_ids if d in tokens]
    targets, has_target = {}, {}
    for name, by_id in vectors.items():
        dim = len(next(iter(by_id.values())))
        targets[name] = np.zeros((len(doc_ids), dim), dtype=np.float32)
        has_target[name] = np.zeros(len(doc_ids), dtype=bool)
        for row, doc_id in enumerate(doc_ids):
            if doc_id in by_id:
                targets[name][row] = by_id[doc_id]
                has_target[name][row] = True
    # the primary head first: it is the one the stream serves
    order = [primary] + [n for n in targets if n != primary]
    # per-token targets only when every document has them (one folder labelled with --token-states)
    with_states = bool(token_states) and all(d in token_states for d in doc_ids)
    return DistillationData(doc_ids, [tokens[d] for d in doc_ids], {n: targets[n] for n in order},
                            {n: has_target[n] for n in order}, {n: teachers[n] for n in order}, recipe,
                            [token_states[d] for d in doc_ids] if with_states else None)


def _read_token_cache(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        ids, flat, offsets = data["doc_ids"].tolist(), data["token_ids"], data["token_offsets"]
    return {doc_id: flat[offsets[i]:offsets[i + 1]] for i, doc_id in enumerate(ids)}


def _write_token_cache(path: Path, tokens: dict[str, np.ndarray]) -> None:
    from pipeline.files import write_atomic

    ids = sorted(tokens)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(tokens[d]) for d in ids], out=offsets[1:])
    write_atomic(path, lambda f: np.savez(f, doc_ids=np.array(ids),
                                          token_ids=np.concatenate([tokens[d] for d in ids]).astype(np.int32),
                                          token_offsets=offsets), fsync=False, tmp_suffix=".tmp.npz")


def _tokenise_from_inputs(wanted: set[str], inputs: list[str], tokenizer, recipe: dict) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    from pipeline.flow.documents import InputStats, iter_documents
    from pipeline.flow.embed import document_text

    found: dict[str, np.ndarray] = {}
    texts, ids = [], []
    for doc in iter_documents(inputs, InputStats()):
        if doc.doc_id in wanted and doc.doc_id not in found:
            ids.append(doc.doc_id)
            texts.append(recipe.get("prefix", "") + document_text(doc, recipe["max_chars"]))
    for start in tqdm(range(0, len(texts), 512), desc="tokenise", unit="x512 docs"):
        batch = tokenizer(texts[start:start + 512], truncation=True, max_length=recipe["max_length_tokens"])
        for doc_id, row in zip(ids[start:start + 512], batch["input_ids"]):
            found[doc_id] = np.asarray(row, dtype=np.int32)
    return found
