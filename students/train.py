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

import time
from pathlib import Path

import numpy as np

from pipeline.files import portable_path
from pipeline.model_folder import pick_device, set_torch_threads
from students.checkpoint import Checkpoint, run_key, save_student, write_history
from students.construction import BaseStudent, build_model  # noqa: F401 (BaseStudent: part of this module's interface)
from students.encoder import encode_token_lists
from students.objective import Objective
from students.preparation import PreparedRun, build_vocabulary, dev_scores, length_bucketed_batches, prepare_run  # noqa: F401,E501
from students.settings import TrainSettings


def train(label_dirs: list[str], out_dir: str | Path, settings: TrainSettings, *, inputs: list[str] | None = None,
          teacher_folder: str | Path, dev_pairs: str = "", dev_inputs: list[str] | None = None,
          gold_labels: str = "", progress: bool = True, cache_dir: Path | None = None,
          init_from: str | Path | None = None) -> dict:
    """``cache_dir``: where the teacher's per-piece vectors are kept between runs (``$NEWSEVENTS_HOME/cache``).
    ``init_from``: a student folder to start from: its vocabulary, embedding width and target centres, and every
    weight that fits the architecture ``settings`` name (all of them when it is the same architecture, as
    ``newsevents retrain`` does with the served student; a static student's table when growing it a CNN)."""
    import torch
    from transformers import AutoTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_torch_threads(settings.threads)
    torch.manual_seed(settings.seed)
    device = pick_device(settings.device)
    run = prepare_run(label_dirs, out, settings, inputs=inputs, teacher_folder=teacher_folder,
                      teacher_tokenizer=AutoTokenizer.from_pretrained(teacher_folder), dev_pairs=dev_pairs,
                      dev_inputs=dev_inputs, gold_labels=gold_labels, init_from=init_from)
    resuming = (out / "checkpoint.pt").exists()
    model, config = build_model(run, settings, Path(teacher_folder), cache_dir, device, resuming=resuming)
    model = model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = len(length_bucketed_batches(run.lengths, settings.batch_size, np.random.default_rng(0)))
    scheduler = make_scheduler(optimizer, settings, steps_per_epoch)
    checkpoint = Checkpoint(out / "checkpoint.pt", run_key(settings, label_dirs, len(run.data), int(len(run.tokenizer)),
                                                           run.base.version if run.base is not None else None))
    history, best_val, stale, partial = checkpoint.resume(model, optimizer, scheduler, device)
    objective = Objective(model, config, settings, run.weights, device, run.gold)
    print(f"{config.arch_name}: {sum(p.numel() for p in trainable):,} trainable parameters, "
          f"{steps_per_epoch} steps an epoch of {len(run.train_data)} documents", flush=True)
    for epoch in range(len(history), settings.max_epochs):
        if stale >= settings.early_stopping:
            break

        def save_partial(step: int, losses: list[float]) -> None:
            checkpoint.save(model, optimizer, scheduler, history, best_val, stale,
                            {"step": step, "losses": losses, "torch_rng": torch.get_rng_state()})  # dropout resumes

        row = run_epoch(epoch, run, objective, optimizer, settings, device, progress,
                        scheduler=scheduler if settings.schedule == "one-cycle" else None,
                        partial=partial, save_partial=save_partial)
        partial = None
        if settings.schedule == "plateau":
            scheduler.step(row["val_loss_exact"])
        row["lr"] = optimizer.param_groups[0]["lr"]
        val_loss = row.pop("val_loss_exact")
        if run.dev is not None:
            row["dev"] = dev_scores(model, run.dev, device)
        history.append(row)
        improved = val_loss < best_val - 1e-5
        if improved:
            best_val, stale = val_loss, 0
            save_student(model, run.tokenizer_dir, out / "model", run.data, settings, row, run.overlap, run.centres,
                         {"labels": [portable_path(d) for d in label_dirs],
                          "continued_from": run.base.version if run.base is not None else None})
        else:
            stale += 1
        checkpoint.save(model, optimizer, scheduler, history, best_val, stale)
        write_history(history, out)
        dev_text = (f", dev F1 {row['dev']['f1']:.3f} @ {row['dev']['threshold']:.2f} {row['dev']['centring']}"
                    if run.dev is not None else "")
        print(f"epoch {epoch + 1}: train {row['train_loss']:.4f}, val {val_loss:.4f} "
              f"(cosine to teacher {row['val_cosine_to_teacher']:.4f}){dev_text}{'  *' if improved else ''}", flush=True)
    return {"history": history, "model": str(out / "model"), "documents": len(run.data), "train": len(run.train_data),
            "validation": len(run.val_data), "vocab": int(len(run.tokenizer)), "dev_documents_in_training": run.overlap}


ETA_BATCHES = 5


def make_scheduler(optimizer, settings: TrainSettings, steps_per_epoch: int):
    import torch

    if settings.schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.learning_rate, total_steps=max(1, steps_per_epoch * settings.max_epochs),
            pct_start=settings.warmup, anneal_strategy="cos", cycle_momentum=False)
    if settings.schedule != "plateau":
        raise ValueError(f"schedule must be plateau or one-cycle, not {settings.schedule!r}")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=settings.lr_patience)


def run_epoch(epoch: int, run: PreparedRun, objective: Objective, optimizer, settings: TrainSettings, device: str,
              progress: bool, scheduler=None, partial: dict | None = None, save_partial=None) -> dict:
    """One pass over the training batches, then the validation loss and cosine; the epoch's history row.

    ``scheduler`` steps after every batch (one-cycle). ``partial`` resumes the epoch after its first ``step``
    batches (the order is the same on every run: it comes from the seed and the epoch); ``save_partial(step,
    losses)`` is called every ``settings.checkpoint_every`` batches."""
    import torch
    from tqdm import tqdm

    model = objective.model
    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed + epoch)
    model.train()
    lam = epoch / max(1, settings.max_epochs - 1)
    batches = length_bucketed_batches(run.lengths, settings.batch_size, rng)
    first = partial["step"] if partial else 0
    train_losses = list(partial["losses"]) if partial else []
    if first:
        print(f"resuming epoch {epoch + 1} after {first} of {len(batches)} batches", flush=True)
        if partial.get("torch_rng") is not None:
            torch.set_rng_state(partial["torch_rng"])
    bar = tqdm(batches, desc=f"epoch {epoch + 1}", unit="batch", disable=not progress, initial=first,
               total=len(batches))
    done_docs, timer = 0, time.perf_counter()
    for step, rows in enumerate(batches[first:], start=first + 1):
        loss = objective.batch_loss(rows, run.train_tokens, run.train_data, rng)
        if run.gold is not None and len(run.gold):
            loss = loss + settings.gold_weight * objective.gold_loss(rng, lam)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        train_losses.append(loss.item())
        done_docs += len(rows)
        if step == first + ETA_BATCHES:  # say early what a long run costs, measured on its own first batches
            per_batch = (time.perf_counter() - timer) / ETA_BATCHES
            print(f"{per_batch:.1f} s a batch: an epoch of {len(batches)} batches takes about "
                  f"{per_batch * len(batches) / 60:.0f} minutes here", flush=True)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(train_losses[-50:]):.4f}",
                        docs_s=f"{done_docs / (time.perf_counter() - timer):.1f}")
        if save_partial is not None and settings.checkpoint_every and step % settings.checkpoint_every == 0 \
                and step < len(batches):
            save_partial(step, train_losses)
    bar.close()
    val_loss, val_cosine = validate(run, objective, device)
    # the row's keys in the order history.json has always had them ("lr" is filled in after the scheduler step)
    return {"epoch": epoch + 1, "train_loss": round(float(np.mean(train_losses)), 5), "val_loss": round(val_loss, 5),
            "val_cosine_to_teacher": round(val_cosine, 4), "lr": None,
            "gold_lambda": round(lam, 3) if run.gold is not None else None,
            "seconds": round(time.perf_counter() - started, 1), "val_loss_exact": val_loss}


def validate(run: PreparedRun, objective: Objective, device: str) -> tuple[float, float]:
    """Validation loss, and the primary head's mean cosine to its (centred) teacher on the validation documents."""
    import torch

    model = objective.model
    model.eval()
    with torch.no_grad():
        val_rows = np.arange(len(run.val_tokens))
        val_loss = float(np.mean([float(objective.batch_loss(val_rows[i:i + 256], run.val_tokens, run.val_data))
                                  for i in range(0, len(val_rows), 256)])) if len(val_rows) else float("nan")
        primary_vectors = encode_token_lists(model, run.val_tokens, device)
        labelled = run.val_data.has_target[run.primary]  # documents only another teacher labelled have no e5 target
        val_cosine = float(np.mean(np.sum(primary_vectors[labelled] * run.val_data.targets[run.primary][labelled],
                                          axis=1))) if labelled.any() else float("nan")
    return val_loss, val_cosine
