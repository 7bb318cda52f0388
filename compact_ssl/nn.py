"""Small nn utilities shared by the method packages: parameter counts, EMA update, the cosine
learning-rate curve and the mixed-label cross-entropy of mixing augmentations."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def count_parameters(module: nn.Module, trainable_only: bool = False, exclude: Iterable[str] = ()) -> int:
    """Number of parameters of ``module``.

    Args:
        trainable_only: count only parameters with ``requires_grad``.
        exclude: name prefixes to leave out (e.g. ``("pred_head.",)``).
    """
    prefixes = tuple(exclude)
    return sum(
        p.numel() for name, p in module.named_parameters()
        if (p.requires_grad or not trainable_only) and not (prefixes and name.startswith(prefixes))
    )


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online``, parameter by parameter
    (MoCo's key encoder, BYOL's target network). Buffers are left alone."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def cosine_lr(base_lr: float, epoch: float, total_epochs: float, eta_min: float = 0.0) -> float:
    """Cosine annealing: ``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / total_epochs)) / 2``,
    ``base_lr`` at epoch 0 and ``eta_min`` at ``total_epochs``."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / total_epochs)) / 2


def mixed_label_cross_entropy(logits: Tensor, labels_a: Tensor, labels_b: Tensor, lam: float | Tensor,
                              weight: Tensor | None = None) -> Tensor:
    """Cross-entropy against a mix of two label sets (mixup, CutMix, Patch-Mix):
    ``lam * CE(logits, a) + (1 - lam) * CE(logits, b)``; ``weight`` are optional class weights."""
    return lam * F.cross_entropy(logits, labels_a, weight=weight) + (1.0 - lam) * F.cross_entropy(
        logits, labels_b, weight=weight)
