"""``TrainSettings``: every knob of a distillation run (the command line's flags, ``training.json``'s settings)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainSettings:
    """The defaults are the recipe of the student shipped in ``students/default`` (its ``training.json``; a test
    keeps them equal), so ``students train`` and a ``retrain`` with no student served train the shipped recipe: six
    of the teacher's layers keeping the top one, 192 tokens, one epoch. The shipped student is that run continued
    one more epoch at half the rate (``--init-from``, as ``retrain`` continues; ``deploy/reproduce_student.sh``)."""
    encoder: str = "teacher-cut"
    num_layers: int = 2
    bidirectional: bool = True
    embedding_dim: int = 256
    hidden_dim: int = 128
    aggregation: str = "mean"
    loss: str = "cosine"  # cosine | mse | both
    batch_size: int = 32
    learning_rate: float = 2e-4
    max_epochs: int = 1
    lr_patience: int = 2
    early_stopping: int = 3
    validation_fraction: float = 0.05
    min_token_count: int = 1  # frozen teacher rows need no count to be learnt (a static table: use 2)
    max_vocab: int = 120_000
    max_tokens: int = 192
    # token embeddings start from: "teacher-output" (each piece alone through the teacher, model2vec's
    # distillation), "teacher-input" (the teacher's input embeddings), or "random"; all PCA'd to the width
    embedding_init: str = "teacher-output"
    sif_coefficient: float = 1e-3  # static students: per-piece weights start at a / (a + p(piece))
    weight_decay: float = 0.0  # AdamW's decoupled decay (regularises a static table's free rows)
    similarity_loss_weight: float = 0.0  # relational term: in-batch pairwise cosines match the teacher's
    token_dropout: float = 0.0  # training only: drop this share of each document's pieces (a bag's augmentation)
    # the saved student's token table: "int8" (a scale per row, a quarter of fp32) or "float"; a teacher-cut
    # student's frozen piece rows are always saved in the teacher's own Q4_0 blocks (exact)
    embedding_storage: str = "int8"
    token_loss_weight: float = 0.0  # > 0 with labels from `teacher label --token-states`: per-token targets too
    center_targets: bool = True  # subtract each teacher's mean vector (e5's has norm 0.86) and renormalise
    head_weights: dict[str, float] = field(default_factory=dict)  # head → loss weight (default 1 primary, 0.5 others)
    gold_pairs: str = ""  # DvBERT teacher annealing: labelled pairs mixed in, λ rising 0 → 1 over the epochs
    gold_weight: float = 1.0
    gold_margin: float = 0.03
    gold_threshold: float = 0.70  # in the centred space the student learns
    gold_exclude_day: str = ""  # keep this day's pairs out of training, to measure on them
    # teacher-cut: which teacher layers to keep (bottom-K, spread-K or "0,5,11") and whether its piece rows train
    kept_layers: str = "0,2,4,6,8,11"
    train_embeddings: bool = False
    head_fit_docs: int = 6000  # teacher-cut: documents the ridge-fitted head starts from (0: a random head)
    # "plateau": halve the rate when the validation loss stalls (per epoch); "one-cycle": warm up over the first
    # warmup share of all max_epochs' steps, then anneal (per step; a long run's schedule is fixed at its start)
    schedule: str = "one-cycle"
    warmup: float = 0.03
    checkpoint_every: int = 100  # steps between mid-epoch checkpoints (an epoch can be an hour on a CPU)
    max_docs: int = 0  # 0: all
    seed: int = 0
    threads: int = 0
    device: str = "auto"
