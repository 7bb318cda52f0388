"""Losses of the three methods, as pure functions of tensors.

* Patch-Mix with label mixing is :func:`compact_ssl.nn.mixed_label_cross_entropy`,
  ``lam' * CE(logits, y) + (1 - lam') * CE(logits, y[perm])``.
* :func:`patchmix_contrastive_loss`: Patch-Mix contrastive learning. With ``u`` the normalized
  mixed (projected) features, ``v`` the normalized targets, ``s_ij = u_i . v_j / tau`` and
  ``log p_ij = s_ij - log sum_{k in N_i} exp s_ik``:
  ``L = -mean_i [lam' log p_{i,i} + (1 - lam') log p_{i,perm(i)}]``. ``N_i`` is every target
  (``negatives="all"``) or the targets of other labels plus the two positives (``"diff_label"``).
* :func:`class_weights`: inverse-frequency CE weights normalized to sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

NEGATIVES = ("all", "diff_label")


def patchmix_contrastive_loss(
    mixed: Tensor,
    target: Tensor,
    perm: Tensor,
    lam: float,
    temperature: float = 0.06,
    labels: Tensor | None = None,
    negatives: str = "all",
) -> Tensor:
    """Patch-Mix contrastive loss (see the module docstring).

    Args:
        mixed: (B, D) projected features of the mixed batch.
        target: (B, D) clean targets (detach them for the ``grad_block`` target type).
        perm: (B,) partner of each sample in the mix.
        lam: effective own-patch fraction ``lam'``.
        labels: (B,) class labels, needed for ``negatives="diff_label"``.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if mixed.shape != target.shape:
        raise ValueError(f"mixed {tuple(mixed.shape)} and target {tuple(target.shape)} features differ in shape")
    sim = F.normalize(mixed, dim=1) @ F.normalize(target, dim=1).T / temperature
    # the row max is a constant per row: it cancels in log p and only keeps exp() finite
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()
    rows = torch.arange(sim.shape[0], device=sim.device)
    perm = perm.to(sim.device)
    if negatives == "diff_label":
        if labels is None:
            raise ValueError("negatives='diff_label' needs the labels")
        keep = labels[:, None] != labels[None, :]
        keep[rows, rows] = True
        keep[rows, perm] = True
        sim_for_norm = sim.masked_fill(~keep, float("-inf"))
    else:
        sim_for_norm = sim
    log_prob = sim - torch.logsumexp(sim_for_norm, dim=1, keepdim=True)
    return -(lam * log_prob[rows, rows] + (1.0 - lam) * log_prob[rows, perm]).mean()


def class_weights(counts: Sequence[int]) -> Tensor:
    """CE class weights proportional to ``1 / count``, normalized to sum to 1."""
    counts_t = torch.as_tensor(counts, dtype=torch.float64)
    if (counts_t <= 0).any():
        raise ValueError(f"every class needs training samples for weighted CE, got counts {list(counts)}")
    inverse = 1.0 / counts_t
    return (inverse / inverse.sum()).float()
