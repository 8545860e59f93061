"""``newsevents students train``: distil a student from teacher label folders (Trofimchuk 2022, DvBERT 2021).

Defaults are the seed paper's recipe: 2-layer BiGRU with attentive aggregation, cosine loss ``1 - cos(v_T, v_S)``,
batch 128, Adam 1e-3, ReduceLROnPlateau (patience 2) and early stopping (3 epochs) on the validation loss.

Output folder::

    model/                 the best student so far (HF layout: config.json, model.safetensors, tokenizer.json,
                           newsevents_encoder.json, newsevents_cluster.json with the dev-tuned threshold)
    checkpoint.pt          the last finished epoch (weights, optimiser, scheduler, history): a rerun resumes there
    history.json           per epoch: losses, learning rate, dev-pair F1 and its threshold, seconds
    training_curve.png     the same as a plot
    tokenised.npz          documents tokenised from --input (only those no primary label folder had tokens for)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from students.data import DistillationData, load_distillation_data
from students.encoder import encode_token_lists, pad_batch
from students.losses import cosine_loss, mse_loss, similarity_loss, token_cosine_loss
from students.modeling import StudentConfig, StudentModel
from students.vocab import prune_tokenizer
from teacher.encoder import pick_device


@dataclass
class TrainSettings:
    encoder: str = "gru"
    num_layers: int = 2
    bidirectional: bool = True
    embedding_dim: int = 128
    hidden_dim: int = 128
    aggregation: str = "attentive"
    loss: str = "cosine"  # cosine | mse | both
    batch_size: int = 128
    learning_rate: float = 1e-3
    max_epochs: int = 20
    lr_patience: int = 2
    early_stopping: int = 3
    validation_fraction: float = 0.05
    min_token_count: int = 2  # a piece seen once is noise the embedding table cannot learn
    max_vocab: int = 50_000
    max_tokens: int = 256
    # token embeddings start from: "teacher-output" (each piece alone through the teacher, model2vec's
    # distillation), "teacher-input" (the teacher's input embeddings), or "random"; all PCA'd to the width
    embedding_init: str = "teacher-output"
    sif_coefficient: float = 1e-3  # static students: per-piece weights start at a / (a + p(piece))
    weight_decay: float = 0.0  # AdamW's decoupled decay (regularises a static table's free rows)
    similarity_loss_weight: float = 0.0  # relational term: in-batch pairwise cosines match the teacher's
    token_dropout: float = 0.0  # training only: drop this share of each document's pieces (a bag's augmentation)
    embedding_storage: str = "float"  # "int8": the saved student's token table in int8 (a quarter of the size)
    token_loss_weight: float = 0.0  # > 0 with labels from `teacher label --token-states`: per-token targets too
    center_targets: bool = True  # subtract each teacher's mean vector (e5's has norm 0.86) and renormalise
    head_weights: dict[str, float] = field(default_factory=dict)  # head → loss weight (default 1 primary, 0.5 others)
    gold_pairs: str = ""  # DvBERT teacher annealing: labelled pairs mixed in, λ rising 0 → 1 over the epochs
    gold_weight: float = 1.0
    gold_margin: float = 0.03
    gold_threshold: float = 0.70  # in the centred space the student learns
    gold_exclude_day: str = ""  # keep this day's pairs out of training, to measure on them
    max_docs: int = 0  # 0: all
    seed: int = 0
    threads: int = 0
    device: str = "auto"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_vocabulary(tokens: list[np.ndarray], min_count: int, max_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept teacher ids (seen ``min_count`` times, the ``max_vocab`` most frequent) and their counts."""
    ids, counts = np.unique(np.concatenate(tokens) if tokens else np.zeros(0, np.int64), return_counts=True)
    keep = np.flatnonzero(counts >= min_count)
    if len(keep) > max_vocab:
        keep = np.argsort(-counts, kind="stable")[:max_vocab]
    keep = np.sort(keep)
    return ids[keep], counts[keep]


def token_target_dim(data: DistillationData, settings: TrainSettings) -> int:
    if not settings.token_loss_weight:
        return 0
    if data.token_targets is None:
        raise ValueError("--token-loss-weight needs labels written with `teacher label --token-states K`")
    return int(data.token_targets[0].shape[1])


def kept_positions(length: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Token dropout: keep the first and last piece (<s>, </s>) and a random ``1 - share`` of the others."""
    keep = rng.random(length) >= share
    if length <= 3:
        keep[:] = True
    keep[0] = keep[-1] = True
    return keep


def drop_tokens(tokens: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    return tokens[kept_positions(len(tokens), share, rng)]


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
    from pipeline.documents import InputStats, iter_documents
    from pipeline.embed import document_text
    from pipeline.evaluate import read_pairs

    docs = list(iter_documents(inputs, InputStats()))
    texts = [prefix + document_text(d, max_chars) for d in docs]
    token_lists = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    return DevSet(read_pairs(pairs_path), docs, token_lists)


def dev_scores(model, dev: DevSet, device: str, thresholds: list[float]) -> dict:
    """Dev-pair F1 through the stream's clusterer at each threshold; the best, with its per-day scores."""
    from pipeline.evaluate import evaluate
    from pipeline.schemas import EmbeddedDocument

    vectors = encode_token_lists(model, dev.token_lists, device)
    docs = [EmbeddedDocument(doc_id=d.doc_id, vector=v, model_version="student", title=d.title,
                             published_time=d.published_time, lang=d.lang, url=d.url)
            for d, v in zip(dev.docs, vectors)]
    reports = [evaluate(dev.pairs, docs, "stream", t) for t in thresholds]
    best = max(reports, key=lambda r: r.overall.f1)
    return {"f1": round(best.overall.f1, 4), "threshold": best.threshold,
            "by_day": {day: round(s.f1, 4) for day, s in best.by_day.items()},
            "curve": {f"{r.threshold:.2f}": round(r.overall.f1, 4) for r in reports}}


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


def train(label_dirs: list[str], out_dir: str | Path, settings: TrainSettings, *, inputs: list[str] | None = None,
          teacher_folder: str | Path, dev_pairs: str = "", dev_inputs: list[str] | None = None,
          gold_labels: str = "", progress: bool = True, cache_dir: Path | None = None,
          init_from: str | Path | None = None) -> dict:
    """``cache_dir``: where the teacher's per-piece vectors are kept between runs (``$NEWSEVENTS_HOME/cache``).
    ``init_from``: a student folder to start from: its vocabulary, embedding width and target centres, and every
    weight that fits the architecture ``settings`` name (all of them when it is the same architecture, as
    ``newsevents retrain`` does with the served student; a static student's table when growing it a CNN)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    device = pick_device(settings.device)
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    dev_ids: set[str] = set()
    gold_source = None
    if settings.gold_pairs:
        if not gold_labels:
            raise ValueError("--gold-pairs needs --gold-labels: teacher labels of the pairs' documents")
        gold_source = load_distillation_data([gold_labels])
    data = load_distillation_data(label_dirs, inputs, teacher_tokenizer, cache=out / "tokenised.npz")
    if settings.max_docs:
        data = data.subset(np.arange(min(settings.max_docs, len(data))))
    if len(data) < 10:
        raise ValueError(f"only {len(data)} documents with teacher vectors and tokens in {label_dirs}")
    train_data, val_data = data.split(settings.validation_fraction)
    primary = next(iter(data.targets))
    base = BaseStudent.load(Path(init_from), data.heads) if init_from else None
    centres: dict[str, list[float]] = {}
    if settings.center_targets:
        # The teacher's vectors share one large direction: cosine to the mean vector alone is ~0.86 on e5.
        # A student fitting raw targets first learns that direction and barely separates documents; centred
        # targets put its capacity where documents differ (and the centred teacher itself clusters better).
        for name in data.targets:
            centre = train_data.targets[name][train_data.has_target[name]].mean(axis=0)
            if base is not None and name in base.centres:  # the space the student already learned
                centre = np.asarray(base.centres[name], dtype=np.float32)
            centres[name] = centre.tolist()
            for subset in (train_data, val_data) + ((gold_source,) if gold_source is not None else ()):
                if name in subset.targets:
                    centred = subset.targets[name] - centre
                    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
                    subset.targets[name] = np.where(subset.has_target[name][:, None], centred, 0.0).astype(np.float32)
    weights = {name: settings.head_weights.get(name, 1.0 if name == primary else 0.5) for name in data.targets}

    # the vocabulary: pieces seen in training, then the tokenizer that emits only those
    kept, kept_counts = build_vocabulary(train_data.tokens, settings.min_token_count, settings.max_vocab)
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

    config = StudentConfig(encoder=settings.encoder, num_layers=settings.num_layers,
                           bidirectional=settings.bidirectional, embedding_dim=settings.embedding_dim,
                           hidden_dim=settings.hidden_dim, aggregation=settings.aggregation, heads=data.heads,
                           vocab_size=int(len(tokenizer)), pad_token_id=int(tokenizer.pad_token_id),
                           token_target_dim=token_target_dim(data, settings))
    if base is not None:
        model, config = base.adapted(settings), None
        config = model.config
    else:
        model = StudentModel(config)
        initialise_embeddings(model, settings, Path(teacher_folder), old_to_new, kept, kept_counts, cache_dir, device)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                           patience=settings.lr_patience)
    history: list[dict] = []
    best_val, start_epoch, stale = math.inf, 0, 0
    checkpoint_path = out / "checkpoint.pt"
    resumable = {k: v for k, v in asdict(settings).items() if k not in ("max_epochs", "early_stopping", "threads")}
    run_key = {"settings": resumable, "labels": [str(d) for d in label_dirs], "docs": len(data),
               "vocab": int(len(tokenizer)), "init_from": base.version if base is not None else None}
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state["run_key"] != run_key:
            raise ValueError(f"{checkpoint_path} is from another run ({state['run_key']}); use another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_val, stale = state["history"], state["best_val"], state["stale"]
        start_epoch = len(history)
        print(f"resuming after epoch {start_epoch} (best validation loss {best_val:.4f})")
    thresholds = [round(float(x), 2) for x in np.arange(0.50, 0.945, 0.02)]  # students peak at 0.6-0.85

    def head_loss(predicted, target, mask):
        if not mask.any():
            return predicted.sum() * 0.0
        predicted, target = predicted[mask], target[mask]
        losses = []
        if settings.loss in ("cosine", "both"):
            losses.append(cosine_loss(predicted, target))
        if settings.loss in ("mse", "both"):
            losses.append(mse_loss(predicted, target))
        if settings.similarity_loss_weight and len(predicted) > 1:
            losses.append(settings.similarity_loss_weight * similarity_loss(predicted, target))
        return sum(losses)

    def batch_loss(rows: np.ndarray, token_lists: list, subset: DistillationData,
                   rng: np.random.Generator | None = None):
        batch = [token_lists[r] for r in rows]
        per_token = bool(config.token_target_dim and settings.token_loss_weight and subset.token_targets is not None)
        states = [subset.token_targets[r] for r in rows] if per_token else None
        if rng is not None and settings.token_dropout:
            keeps = [kept_positions(len(t), settings.token_dropout, rng) for t in batch]
            batch = [t[k] for t, k in zip(batch, keeps)]
            states = [s[k] for s, k in zip(states, keeps)] if states is not None else None
        input_ids, mask = pad_batch(batch, config.pad_token_id)
        outputs = model(input_ids.to(device), mask.to(device), all_heads=True)
        total = 0.0
        predicted_tokens = outputs.pop("tokens", None)
        if states is not None:
            predicted = predicted_tokens
            target = torch.zeros_like(predicted)
            for row, rows_states in enumerate(states):
                target[row, :len(rows_states)] = torch.as_tensor(rows_states.astype(np.float32))
            total = settings.token_loss_weight * token_cosine_loss(predicted, target, mask.to(device))
        for name, predicted in outputs.items():
            target = torch.as_tensor(subset.targets[name][rows], device=device)
            has = torch.as_tensor(subset.has_target[name][rows], device=device)
            total = total + weights[name] * head_loss(predicted, target, has)
        return total

    def gold_loss(rng: np.random.Generator, lam: float):
        rows = rng.choice(len(gold), size=min(32, len(gold)), replace=False)
        a_ids, a_mask = pad_batch([gold.first[r] for r in rows], config.pad_token_id)
        b_ids, b_mask = pad_batch([gold.second[r] for r in rows], config.pad_token_id)
        a = model(a_ids.to(device), a_mask.to(device))
        b = model(b_ids.to(device), b_mask.to(device))
        similarity = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        teacher = torch.as_tensor(gold.teacher_similarity[rows], device=device)
        same = torch.as_tensor(gold.same[rows], device=device)
        # gold, in similarity terms: the pair on the right side of the clustering threshold, by a margin
        hard = torch.where(same, torch.clamp(teacher, min=settings.gold_threshold + settings.gold_margin),
                           torch.clamp(teacher, max=settings.gold_threshold - settings.gold_margin))
        return ((similarity - (lam * hard + (1 - lam) * teacher)) ** 2).mean()

    for epoch in range(start_epoch, settings.max_epochs):
        if stale >= settings.early_stopping:
            break
        started = time.perf_counter()
        rng = np.random.default_rng(settings.seed + epoch)
        model.train()
        lam = epoch / max(1, settings.max_epochs - 1)
        train_losses = []
        bar = tqdm(length_bucketed_batches(lengths, settings.batch_size, rng), desc=f"epoch {epoch + 1}",
                   unit="batch", disable=not progress)
        for rows in bar:
            loss = batch_loss(rows, train_tokens, train_data, rng)
            if gold is not None and len(gold):
                loss = loss + settings.gold_weight * gold_loss(rng, lam)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            train_losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(train_losses[-50:]):.4f}")
        model.eval()
        with torch.no_grad():
            val_rows = np.arange(len(val_tokens))
            val_loss = float(np.mean([float(batch_loss(val_rows[i:i + 256], val_tokens, val_data))
                                      for i in range(0, len(val_rows), 256)])) if len(val_rows) else float("nan")
            primary_vectors = encode_token_lists(model, val_tokens, device)
            labelled = val_data.has_target[primary]  # documents only another teacher labelled have no e5 target
            val_cosine = float(np.mean(np.sum(primary_vectors[labelled] * val_data.targets[primary][labelled],
                                              axis=1))) if labelled.any() else float("nan")
        scheduler.step(val_loss)
        row = {"epoch": epoch + 1, "train_loss": round(float(np.mean(train_losses)), 5), "val_loss": round(val_loss, 5),
               "val_cosine_to_teacher": round(val_cosine, 4), "lr": optimizer.param_groups[0]["lr"],
               "gold_lambda": round(lam, 3) if gold is not None else None,
               "seconds": round(time.perf_counter() - started, 1)}
        if dev is not None:
            row["dev"] = dev_scores(model, dev, device, thresholds)
        history.append(row)
        improved = val_loss < best_val - 1e-5
        if improved:
            best_val, stale = val_loss, 0
            save_student(model, tokenizer_dir, out / "model", data, settings, row, overlap, centres,
                         {"labels": [str(Path(d).resolve()) for d in label_dirs],
                          "continued_from": base.version if base is not None else None})
        else:
            stale += 1
        torch.save({"run_key": run_key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "history": history, "best_val": best_val, "stale": stale},
                   out / "checkpoint.pt.tmp")
        os.replace(out / "checkpoint.pt.tmp", checkpoint_path)
        _atomic_write_bytes(out / "history.json", json.dumps(history, indent=2).encode())
        plot_history(history, out / "training_curve.png")
        dev_text = f", dev F1 {row['dev']['f1']:.3f} @ {row['dev']['threshold']:.2f}" if dev is not None else ""
        print(f"epoch {epoch + 1}: train {row['train_loss']:.4f}, val {val_loss:.4f} "
              f"(cosine to teacher {val_cosine:.4f}){dev_text}{'  *' if improved else ''}", flush=True)
    return {"history": history, "model": str(out / "model"), "documents": len(data), "train": len(train_data),
            "validation": len(val_data), "vocab": int(len(tokenizer)), "dev_documents_in_training": overlap}


@dataclass
class BaseStudent:
    """A trained student to continue from."""
    folder: Path
    model: object
    centres: dict[str, list[float]]
    version: str

    @classmethod
    def load(cls, folder: Path, heads: dict[str, int]) -> "BaseStudent":
        import torch

        from students.encoder import is_student_folder
        from teacher.encoder import model_version

        if not is_student_folder(folder):
            raise ValueError(f"{folder} is not a student folder (config.json model_type newsevents-student)")
        model = StudentModel.from_pretrained(folder, dtype=torch.float32).with_embedding_storage("float")
        if dict(model.config.heads) != dict(heads):
            raise ValueError(f"{folder} has heads {model.config.heads}; the labels give {heads}")
        training = folder / "training.json"
        centres = json.loads(training.read_text()).get("target_centres", {}) if training.exists() else {}
        return cls(folder, model, centres, model_version(folder))

    def adapted(self, settings: TrainSettings):
        """This student, or a model of the architecture ``settings`` name holding every weight of it that fits."""
        base = self.model.config
        wanted = {"encoder": settings.encoder, "num_layers": settings.num_layers,
                  "bidirectional": settings.bidirectional, "hidden_dim": settings.hidden_dim,
                  "aggregation": settings.aggregation}
        if all(getattr(base, k) == v for k, v in wanted.items()):
            return self.model
        config = StudentConfig(**{**base.to_dict(), **wanted})
        model = StudentModel(config)
        own = model.state_dict()
        fitting = {k: v for k, v in self.model.state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(fitting, strict=False)
        return model

    def copy_tokenizer(self, teacher_folder: Path, tokenizer_dir: Path) -> np.ndarray:
        import shutil

        from students.vocab import vocabulary_map

        tokenizer_dir.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(self.folder / name, tokenizer_dir / name)
        return vocabulary_map(teacher_folder, self.folder)


def initialise_embeddings(model, settings: TrainSettings, teacher_folder: Path, old_to_new: np.ndarray,
                          kept: np.ndarray, kept_counts: np.ndarray, cache_dir: Path | None, device: str) -> None:
    """Start the token table (and a static student's per-piece weights) from what the teacher computes."""
    import torch

    from students.static import reduce_table, sif_weights, teacher_piece_vectors

    config = model.config
    initial = None
    if settings.embedding_init == "teacher-input":
        initial = teacher_token_embeddings(teacher_folder, old_to_new, config.vocab_size, config.embedding_dim)
    elif settings.embedding_init == "teacher-output":
        cache = cache_dir / "piece-vectors" / f"{teacher_folder.name}.npz" if cache_dir else None
        vectors = teacher_piece_vectors(teacher_folder, kept, device=device, cache=cache)
        table = np.zeros((config.vocab_size, config.embedding_dim), dtype=np.float32)
        table[old_to_new[kept]] = reduce_table(vectors, config.embedding_dim)
        initial = table
    elif settings.embedding_init != "random":
        raise ValueError(f"embedding_init must be teacher-output, teacher-input or random, "
                         f"not {settings.embedding_init!r}")
    with torch.no_grad():
        if initial is not None:
            model.embeddings.weight.copy_(torch.as_tensor(initial))
        model.embeddings.weight[config.pad_token_id].zero_()  # padding must read as nothing (CNN windows)
        if config.encoder == "static":
            weights = np.ones(config.vocab_size, dtype=np.float32)
            weights[old_to_new[kept]] = sif_weights(kept_counts, settings.sif_coefficient)
            model.token_weights.weight.copy_(torch.as_tensor(weights)[:, None])
            model.token_weights.weight[config.pad_token_id].zero_()


def teacher_token_embeddings(teacher_folder: Path, old_to_new: np.ndarray, vocab_size: int,
                             dim: int) -> np.ndarray | None:
    """The teacher's input embeddings of the kept pieces, reduced to ``dim`` by PCA: a student that starts from
    what the teacher knows about each piece needs far fewer steps than one starting from noise."""
    from safetensors import safe_open

    path = teacher_folder / "model.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), framework="numpy") as weights:
        name = next((k for k in weights.keys() if k.endswith("word_embeddings.weight")), None)
        if name is None:
            return None
        table = weights.get_tensor(name).astype(np.float32)
    new_to_old = np.zeros(vocab_size, dtype=np.int64)
    new_to_old[old_to_new] = np.arange(len(old_to_new))  # dropped ids all map to unk; the last write is harmless
    rows = table[new_to_old]
    rows = rows - rows.mean(axis=0)
    _, _, components = np.linalg.svd(rows[: min(len(rows), 50_000)], full_matrices=False)
    reduced = rows @ components[:dim].T if dim <= components.shape[0] else np.pad(rows, ((0, 0), (0, dim - rows.shape[1])))
    reduced *= 1.0 / (np.linalg.norm(reduced, axis=1).mean() + 1e-9)  # rows of unit norm on average
    return reduced.astype(np.float32)


def save_student(model, tokenizer_dir: Path, folder: Path, data: DistillationData, settings: TrainSettings,
                 epoch_row: dict, dev_overlap: int, centres: dict[str, list[float]], provenance: dict) -> None:
    """The HF folder the stream serves: weights, pruned tokenizer, how to use it, its tuned threshold, provenance."""
    import shutil

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # weights stored in fp16 (half the size on disk; inference upcasts to fp32 at load)
    import copy

    served = copy.deepcopy(model).with_embedding_storage(settings.embedding_storage)
    served.half().save_pretrained(tmp, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, tmp / name)
    name = f"student-{model.config.arch_name}"
    (tmp / "newsevents_encoder.json").write_text(json.dumps(
        {"name": name, "pooling": "student", "prefix": data.recipe.get("prefix", ""), "normalize": True}, indent=2))
    if "dev" in epoch_row:
        (tmp / "newsevents_cluster.json").write_text(json.dumps(
            {"threshold": epoch_row["dev"]["threshold"], "tuned_on": "dev pairs during training"}, indent=2))
    (tmp / "training.json").write_text(json.dumps(
        {"teachers": data.teachers, **provenance, "recipe": data.recipe, "documents": len(data),
         "settings": asdict(settings),
         "epoch": epoch_row, "dev_documents_in_training": dev_overlap,
         "target_centres": {k: [round(x, 6) for x in v] for k, v in centres.items()}}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if any("dev" in h for h in history):
        twin = ax.twinx()
        twin.plot(epochs, [h.get("dev", {}).get("f1", float("nan")) for h in history], marker="s", color="C2",
                  label="dev-pair F1")
        twin.set_ylabel("dev-pair F1 (stream clusterer)", color="C2")
    ax.legend(loc="upper center")
    ax.set_title("student distillation")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
