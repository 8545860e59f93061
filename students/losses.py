"""Distillation losses: each takes the student's vectors and the teacher's (centred, unit) targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - cos(student, teacher)`` per document, averaged (the seed paper's loss)."""
    return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()


def mse_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error per vector (summed over dimensions), averaged over documents."""
    return F.mse_loss(predicted, target) * target.shape[1]


def similarity_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relational distillation: the student's cosine between every two documents of the batch should be the
    teacher's. Clustering reads nothing but these similarities, and a batch of ``b`` documents gives
    ``b(b-1)/2`` targets instead of ``b``."""
    p = F.normalize(predicted, dim=-1)
    t = F.normalize(target, dim=-1)
    difference = p @ p.T - t @ t.T
    off_diagonal = ~torch.eye(len(p), dtype=torch.bool, device=p.device)
    return (difference[off_diagonal] ** 2).mean()


def token_cosine_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token distillation: ``1 - cos`` between the student's prediction of each token's teacher state and
    that state (PCA'd, stored by ``teacher label --token-states``), over real tokens: hundreds of targets per
    labelled document instead of one."""
    cosines = F.cosine_similarity(predicted, target, dim=-1)
    real = mask.bool()
    return (1.0 - cosines[real]).mean()
