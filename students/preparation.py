"""Data preparation for a distillation run: vocabulary, batches, the dev set scored each epoch, gold pairs, and
``prepare_run``, which turns label folders into everything the epoch loop reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.flow.centring import centre_and_normalise
from students.construction import BaseStudent
from students.data import DistillationData, load_distillation_data
from students.encoder import encode_token_lists
from students.settings import TrainSettings
from students.vocab import prune_tokenizer


def build_vocabulary(tokens: list[np.ndarray], min_count: int, max_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept teacher ids (seen ``min_count`` times, the ``max_vocab`` most frequent) and their counts."""
    ids, counts = np.unique(np.concatenate(tokens) if tokens else np.zeros(0, np.int64), return_counts=True)
    keep = np.flatnonzero(counts >= min_count)
    if len(keep) > max_vocab:
        keep = np.argsort(-counts, kind="stable")[:max_vocab]
    keep = np.sort(keep)
    return ids[keep], counts[keep]


def with_pieces_of(kept: np.ndarray, counts: np.ndarray, inputs: list[str], teacher_tokenizer, recipe: dict,
                   max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """``kept`` and the teacher ids of the documents in ``inputs`` (read as the labels were), with zero counts."""
    from pipeline.flow.documents import InputStats, iter_documents
    from pipeline.flow.embed import document_text

    texts = [recipe.get("prefix", "") + document_text(d, recipe["max_chars"])
             for d in iter_documents(inputs, InputStats())]
    ids = np.unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in
                                    teacher_tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]]))
    extra = np.setdiff1d(ids, kept)
    merged = np.concatenate([kept, extra])
    order = np.argsort(merged, kind="stable")
    return merged[order], np.concatenate([counts, np.zeros(len(extra), dtype=counts.dtype)])[order]


def kept_positions(length: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Token dropout: keep the first and last piece (<s>, </s>) and a random ``1 - share`` of the others."""
    keep = rng.random(length) >= share
    if length <= 3:
        keep[:] = True
    keep[0] = keep[-1] = True
    return keep



def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort within windows of 50 batches by length (little padding), shuffle the batches."""
    order = rng.permutation(len(lengths))
    batches = []
    window = batch_size * 50
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class DevSet:
    """Labelled pairs and every document of their days, tokenised for the student, to score each epoch."""
    pairs: list
    docs: list  # parsed Documents
    token_lists: list


def load_dev_set(pairs_path: str, inputs: list[str], tokenizer, prefix: str, max_chars: int, max_tokens: int) -> DevSet:
    from pipeline.evaluate import read_pairs
    from pipeline.flow.documents import InputStats, iter_documents
    from pipeline.flow.embed import document_text

    docs = list(iter_documents(inputs, InputStats()))
    texts = [prefix + document_text(d, max_chars) for d in docs]
    token_lists = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    return DevSet(read_pairs(pairs_path), docs, token_lists)


def dev_scores(model, dev: DevSet, device: str) -> dict:
    """Dev-pair F1 through the stream's clusterer at the best threshold and centring of the one sweep
    (``pipeline.evaluate.threshold_sweep``, as ``students ship`` and ``eval --tune`` score), with per-day scores."""
    from pipeline.evaluate import CENTRINGS, threshold_sweep
    from pipeline.records import EmbeddedDocument

    vectors = encode_token_lists(model, dev.token_lists, device)
    docs = [EmbeddedDocument(doc_id=d.doc_id, vector=v, model_version="student", title=d.title,
                             published_time=d.published_time, lang=d.lang, url=d.url)
            for d, v in zip(dev.docs, vectors)]
    sweep = threshold_sweep(dev.pairs, docs, ["stream"], centrings=CENTRINGS)
    best = sweep.best
    return {"f1": round(best.overall.f1, 4), "threshold": best.threshold, "centring": sweep.centring,
            "by_day": {day: round(s.f1, 4) for day, s in best.by_day.items()},
            "curve": {f"{r.threshold:.2f}": round(r.overall.f1, 4) for r in sweep.rows["stream"]}}


class GoldPairs:
    """Labelled pairs whose documents have primary-teacher vectors and tokens (DvBERT's hard labels)."""

    def __init__(self, pairs: list, data: DistillationData, old_to_new: np.ndarray):
        row = {d: i for i, d in enumerate(data.doc_ids)}
        primary = next(iter(data.targets))
        kept = [p for p in pairs if p.first in row and p.second in row]
        self.first = [old_to_new[data.tokens[row[p.first]]] for p in kept]
        self.second = [old_to_new[data.tokens[row[p.second]]] for p in kept]
        t = data.targets[primary]
        self.teacher_similarity = np.array([float(t[row[p.first]] @ t[row[p.second]]) for p in kept], np.float32)
        self.same = np.array([p.same_event for p in kept], dtype=bool)

    def __len__(self) -> int:
        return len(self.same)


@dataclass
class PreparedRun:
    """What the epoch loop reads: the split data (targets centred), the student's vocabulary and token lists."""
    data: DistillationData
    train_data: DistillationData
    val_data: DistillationData
    primary: str
    base: BaseStudent | None
    centres: dict[str, list[float]]
    weights: dict[str, float]  # head → loss weight
    kept: np.ndarray
    kept_counts: np.ndarray
    tokenizer_dir: Path
    tokenizer: object
    old_to_new: np.ndarray
    train_tokens: list
    val_tokens: list
    lengths: np.ndarray
    dev: DevSet | None
    gold: GoldPairs | None
    overlap: int  # dev documents that are also training documents


def centre_targets(settings: TrainSettings, data: DistillationData, subsets: tuple, base: BaseStudent | None,
                   train_data: DistillationData) -> dict[str, list[float]]:
    """Subtract each teacher's mean vector from its targets and renormalise, in place; returns the centres.

    The teacher's vectors share one large direction: cosine to the mean vector alone is ~0.86 on e5. A student
    fitting raw targets first learns that direction and barely separates documents; centred targets put its
    capacity where documents differ (and the centred teacher itself clusters better)."""
    centres: dict[str, list[float]] = {}
    if not settings.center_targets:
        return centres
    for name in data.targets:
        centre = train_data.targets[name][train_data.has_target[name]].mean(axis=0)
        if base is not None and name in base.centres:  # the space the student already learned
            centre = np.asarray(base.centres[name], dtype=np.float32)
        centres[name] = centre.tolist()
        for subset in subsets:
            if name in subset.targets:
                centred = centre_and_normalise(subset.targets[name], centre)
                subset.targets[name] = np.where(subset.has_target[name][:, None], centred, 0.0).astype(np.float32)
    return centres


def prepare_run(label_dirs: list[str], out: Path, settings: TrainSettings, *, inputs: list[str] | None,
                teacher_folder: str | Path, teacher_tokenizer, dev_pairs: str, dev_inputs: list[str] | None,
                gold_labels: str, init_from: str | Path | None) -> PreparedRun:
    from transformers import AutoTokenizer

    dev_ids: set[str] = set()
    gold_source = None
    if settings.gold_pairs:
        if not gold_labels:
            raise ValueError("--gold-pairs needs --gold-labels: teacher labels of the pairs' documents")
        gold_source = load_distillation_data([gold_labels])
    data = load_distillation_data(label_dirs, inputs, teacher_tokenizer, cache=out / "tokenised.npz")
    if settings.max_docs:
        data = data.subset(np.arange(min(settings.max_docs, len(data))))
    data = data.cut(settings.max_tokens)
    if len(data) < 10:
        raise ValueError(f"only {len(data)} documents with teacher vectors and tokens in {label_dirs}")
    train_data, val_data = data.split(settings.validation_fraction)
    primary = next(iter(data.targets))
    base = BaseStudent.load(Path(init_from), data.heads) if init_from else None
    centres = centre_targets(settings, data, (train_data, val_data) + ((gold_source,) if gold_source is not None else ()),
                             base, train_data)
    weights = {name: settings.head_weights.get(name, 1.0 if name == primary else 0.5) for name in data.targets}

    # the vocabulary: pieces seen in training, then the tokenizer that emits only those
    kept, kept_counts = build_vocabulary(train_data.tokens, settings.min_token_count, settings.max_vocab)
    if settings.encoder == "teacher-cut" and dev_inputs and base is None:
        # the cut teacher's rows are the teacher's own, meaningful untrained: keep the pieces the served days use too
        kept, kept_counts = with_pieces_of(kept, kept_counts, dev_inputs, teacher_tokenizer, data.recipe,
                                           settings.max_tokens)
    tokenizer_dir = out / "tokenizer"
    if base is not None:  # a student that exists keeps its vocabulary: new pieces read as smaller ones or unk
        old_to_new = base.copy_tokenizer(Path(teacher_folder), tokenizer_dir)
    else:
        old_to_new = prune_tokenizer(Path(teacher_folder), kept, tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    train_tokens = [old_to_new[t] for t in train_data.tokens]
    val_tokens = [old_to_new[t] for t in val_data.tokens]
    lengths = np.array([len(t) for t in train_tokens])
    dev = None
    if dev_pairs and dev_inputs:
        dev = load_dev_set(dev_pairs, dev_inputs, tokenizer, data.recipe.get("prefix", ""), data.recipe["max_chars"],
                           settings.max_tokens)
        dev_ids = {d.doc_id for d in dev.docs}
    gold = None
    if gold_source is not None:
        from pipeline.evaluate import day_of, read_pairs

        pairs = read_pairs(settings.gold_pairs)
        if settings.gold_exclude_day:
            if dev is None:
                raise ValueError("--gold-exclude-day needs --dev-pairs and --dev-input (the documents' days)")
            day = {d.doc_id: day_of(d.published_time) for d in dev.docs}
            pairs = [p for p in pairs if day.get(p.first) != settings.gold_exclude_day]
        gold = GoldPairs(pairs, gold_source, old_to_new)
    overlap = len(dev_ids & set(train_data.doc_ids))
    return PreparedRun(data, train_data, val_data, primary, base, centres, weights, kept, kept_counts, tokenizer_dir,
                       tokenizer, old_to_new, train_tokens, val_tokens, lengths, dev, gold, overlap)
