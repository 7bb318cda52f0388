"""BYOL's regression loss and the mixed-supervised combination of the CD-FSL schemes, as pure
functions of tensors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def byol_loss(p1: Tensor, p2: Tensor, t1: Tensor, t2: Tensor) -> Tensor:
    """Symmetric BYOL loss: ``mean(2 - 2 cos(p1, t2)) + mean(2 - 2 cos(p2, t1))``.

    ``p1``, ``p2`` are the online predictions of views 1 and 2, ``t1``, ``t2`` the target
    projections (gradients are not stopped here; the caller computes them without grad). Each
    term lies in [0, 4]: 0 for aligned pairs, 2 for orthogonal ones.
    """
    return regression_term(p1, t2) + regression_term(p2, t1)


def regression_term(p: Tensor, t: Tensor) -> Tensor:
    """``mean_i (2 - 2 cos(p_i, t_i))`` = mean squared distance of the L2-normalised rows."""
    return (2 - 2 * F.cosine_similarity(p, t, dim=-1)).mean()


def mixed_supervised_loss(ce: Tensor, ssl: Tensor, gamma: float) -> Tensor:
    """``(1 - gamma) * ce + gamma * ssl``: gamma 0 gives exactly ``ce``, gamma 1 exactly ``ssl``."""
    return (1 - gamma) * ce + gamma * ssl


def linear_gamma(step: int, total_steps: int) -> float:
    """Linear MSL schedule ``gamma_t = t / (T - 1)``: 0 at the first step, 1 at the last."""
    if total_steps < 2:
        raise ValueError(f"the linear gamma schedule needs at least 2 optimizer steps, got {total_steps}")
    return min(1.0, step / (total_steps - 1))
