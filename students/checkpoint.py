"""Checkpointing a distillation run: the resumable ``checkpoint.pt``, the served ``model/`` folder of the best epoch,
``history.json`` and ``training_curve.png``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from pipeline.files import replace_folder, staging_folder, write_atomic
from pipeline.model_folder import write_cluster_threshold
from pipeline.plots import pyplot, save_figure
from students.data import DistillationData
from students.settings import TrainSettings


class Checkpoint:
    """The last finished epoch (weights, optimiser, scheduler, history), refused when it is from another run."""

    def __init__(self, path: Path, run_key: dict):
        self.path, self.run_key = path, run_key

    def resume(self, model, optimizer, scheduler, device: str) -> tuple[list[dict], float, int, dict | None]:
        """(history, best validation loss, epochs without improvement, the unfinished epoch's ``{"step",
        "losses"}`` or None): empty when there is nothing to resume."""
        import math

        import torch

        if not self.path.exists():
            return [], math.inf, 0, None
        state = torch.load(self.path, map_location=device, weights_only=False)
        if state["run_key"] != self.run_key:
            raise ValueError(f"{self.path} is from another run ({state['run_key']}); use another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        print(f"resuming after epoch {len(state['history'])} (best validation loss {state['best_val']:.4f})")
        return state["history"], state["best_val"], state["stale"], state.get("partial")

    def save(self, model, optimizer, scheduler, history: list[dict], best_val: float, stale: int,
             partial: dict | None = None) -> None:
        import torch

        state = {"run_key": self.run_key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "history": history, "best_val": best_val, "stale": stale,
                 "partial": partial}
        write_atomic(self.path, lambda f: torch.save(state, f), fsync=False)


def run_key(settings: TrainSettings, label_dirs: list[str], documents: int, vocab: int, init_from: str | None) -> dict:
    """What a checkpoint must match to be resumed (settings that may grow between reruns left out)."""
    growable = {"early_stopping", "threads", "checkpoint_every"} | (
        set() if settings.schedule == "one-cycle" else {"max_epochs"})  # one-cycle's schedule spans max_epochs
    resumable = {k: v for k, v in asdict(settings).items() if k not in growable}
    return {"settings": resumable, "labels": [str(d) for d in label_dirs], "docs": documents, "vocab": vocab,
            "init_from": init_from}


def write_history(history: list[dict], out: Path) -> None:
    write_atomic(out / "history.json", json.dumps(history, indent=2).encode(), fsync=False)
    plot_history(history, out / "training_curve.png")


def save_student(model, tokenizer_dir: Path, folder: Path, data: DistillationData, settings: TrainSettings,
                 epoch_row: dict, dev_overlap: int, centres: dict[str, list[float]], provenance: dict) -> None:
    """The HF folder the stream serves: weights, pruned tokenizer, how to use it, its tuned threshold, provenance."""
    import shutil

    tmp = staging_folder(folder)
    # weights stored in fp16 (half the size on disk; inference upcasts to fp32 at load)
    import copy

    frozen_teacher_rows = model.config.encoder == "teacher-cut" and not settings.train_embeddings
    served = copy.deepcopy(model).with_embedding_storage("q4" if frozen_teacher_rows else settings.embedding_storage)
    served.half().save_pretrained(tmp, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, tmp / name)
    name = f"student-{model.config.arch_name}"
    (tmp / "newsevents_encoder.json").write_text(json.dumps(
        {"name": name, "pooling": "student", "prefix": data.recipe.get("prefix", ""), "normalize": True}, indent=2))
    if "dev" in epoch_row:  # the space and threshold the one sweep found best on the dev pairs
        write_cluster_threshold(tmp, epoch_row["dev"]["threshold"], tuned_on="dev pairs during training",
                                centring=epoch_row["dev"]["centring"])
    (tmp / "training.json").write_text(json.dumps(
        {"teachers": data.teachers, **provenance, "recipe": data.recipe, "documents": len(data),
         "settings": asdict(settings),
         "epoch": epoch_row, "dev_documents_in_training": dev_overlap,
         "target_centres": {k: [round(x, 6) for x in v] for k, v in centres.items()}}, indent=2))
    replace_folder(tmp, folder)


def plot_history(history: list[dict], path: Path) -> None:
    plt = pyplot()
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
    save_figure(fig, path)
