"""Model construction for a distillation run: a new student with its token table initialised from the teacher,
or a trained student to continue from (``BaseStudent``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from students.data import DistillationData
from students.modeling import StudentConfig, StudentModel
from students.settings import TrainSettings


def token_target_dim(data: DistillationData, settings: TrainSettings) -> int:
    if not settings.token_loss_weight:
        return 0
    if data.token_targets is None:
        raise ValueError("--token-loss-weight needs labels written with `teacher label --token-states K`")
    return int(data.token_targets[0].shape[1])


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

        from pipeline.model_folder import is_student_folder, model_version

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


def build_model(run, settings: TrainSettings, teacher_folder: Path, cache_dir: Path | None, device: str,
                resuming: bool = False):
    """The student to train and its config: ``run.base`` adapted to ``settings``, or a new one initialised
    (``resuming``: its weights come from a checkpoint next, so nothing is fitted now)."""
    if settings.encoder == "teacher-cut":
        model = run.base.model if run.base is not None else build_cut_student(run, settings, Path(teacher_folder),
                                                                              device, fit=not resuming)
        model.bert.embeddings.word_embeddings.weight.requires_grad_(settings.train_embeddings)
        return model, model.config
    config = StudentConfig(encoder=settings.encoder, num_layers=settings.num_layers,
                           bidirectional=settings.bidirectional, embedding_dim=settings.embedding_dim,
                           hidden_dim=settings.hidden_dim, aggregation=settings.aggregation, heads=run.data.heads,
                           vocab_size=int(len(run.tokenizer)), pad_token_id=int(run.tokenizer.pad_token_id),
                           token_target_dim=token_target_dim(run.data, settings))
    if run.base is not None:
        model = run.base.adapted(settings)
        config = model.config
    else:
        model = StudentModel(config)
        initialise_embeddings(model, settings, Path(teacher_folder), run.old_to_new, run.kept, run.kept_counts,
                              cache_dir, device)
    return model, config


def build_cut_student(run, settings: TrainSettings, teacher_folder: Path, device: str,
                      fit: bool = True) -> StudentModel:
    """The teacher cut down (``students.cut``): its kept layers and piece rows, and a head fitted by ridge regression
    on ``settings.head_fit_docs`` training documents."""
    from students.cut import copy_teacher_weights, cut_bert_config, new_to_old_ids, parse_kept_layers

    teacher_config = json.loads((teacher_folder / "config.json").read_text())
    layers = parse_kept_layers(settings.kept_layers, int(teacher_config["num_hidden_layers"]))
    vocab_size, pad = int(len(run.tokenizer)), int(run.tokenizer.pad_token_id)
    bert = cut_bert_config(teacher_folder, layers, vocab_size, pad, settings.max_tokens)
    config = StudentConfig(encoder="teacher-cut", num_layers=len(layers), bidirectional=False,
                           embedding_dim=bert["hidden_size"], hidden_dim=bert["hidden_size"], aggregation="mean",
                           heads=run.data.heads, vocab_size=vocab_size, pad_token_id=pad, dropout=0.0,
                           max_positions=bert["max_position_embeddings"], bert_config=bert, kept_layers=layers,
                           token_target_dim=token_target_dim(run.data, settings))
    model = StudentModel(config)
    copy_teacher_weights(model, teacher_folder, layers, new_to_old_ids(run.old_to_new, vocab_size))
    model = model.to(device)
    if settings.head_fit_docs and fit:
        rows = np.flatnonzero(run.train_data.has_target[run.primary])[:settings.head_fit_docs]
        cosine = fit_head(model, [run.train_tokens[r] for r in rows], run.train_data.targets[run.primary][rows],
                          device)
        print(f"teacher-cut {layers}: head fitted on {len(rows)} documents, cosine to the teacher {cosine:.4f}",
              flush=True)
    return model


def fit_head(model, token_lists: list, targets: np.ndarray, device: str, ridge: float = 0.1,
             batch_size: int = 64) -> float:
    """Least squares (with an L2 penalty and a bias) from the pooled states of ``token_lists`` to ``targets``,
    written into the primary head; returns the mean cosine the fitted head reaches on those documents."""
    import torch

    from students.encoder import pad_batch

    head = model.heads[model.config.primary_head]
    states = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(token_lists), batch_size):
            ids, mask = pad_batch(token_lists[start:start + batch_size], model.config.pad_token_id)
            states.append(model.encode_tokens(ids.to(device), mask.to(device)).float().cpu().numpy())
    model.train(was_training)
    x = np.concatenate(states).astype(np.float64)
    mean_x, mean_y = x.mean(0), targets.mean(0).astype(np.float64)
    xc, yc = x - mean_x, targets.astype(np.float64) - mean_y
    weight = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]) * xc.var(), xc.T @ yc)  # (in, out)
    bias = mean_y - mean_x @ weight
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight.T, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    predicted = x @ weight + bias
    predicted /= np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(predicted * targets, axis=1)))
