"""The training objective of a distillation run, per batch: each head's loss against its teacher (cosine, MSE,
relational), the per-token loss, and the gold-pair loss of teacher annealing (``students.losses`` holds the terms)."""

from __future__ import annotations

import numpy as np

from students.data import DistillationData
from students.encoder import pad_batch
from students.losses import cosine_loss, mse_loss, similarity_loss, token_cosine_loss
from students.preparation import GoldPairs, kept_positions
from students.settings import TrainSettings


class Objective:
    def __init__(self, model, config, settings: TrainSettings, weights: dict[str, float], device: str,
                 gold: GoldPairs | None):
        self.model, self.config, self.settings, self.weights, self.device, self.gold = (
            model, config, settings, weights, device, gold)

    def head_loss(self, predicted, target, mask):
        settings = self.settings
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

    def batch_loss(self, rows: np.ndarray, token_lists: list, subset: DistillationData,
                   rng: np.random.Generator | None = None):
        import torch

        settings, config, model, device = self.settings, self.config, self.model, self.device
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
            total = total + self.weights[name] * self.head_loss(predicted, target, has)
        return total

    def gold_loss(self, rng: np.random.Generator, lam: float):
        import torch

        settings, config, model, device, gold = self.settings, self.config, self.model, self.device, self.gold
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
