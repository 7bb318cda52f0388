"""MixCo: semi-positives from mix-up, scored with soft targets.

The first and second halves of a batch are mixed pixel-wise with one ``lambda`` per pair
(``lambda_i ~ U(0, 1)`` by default; :func:`sample_mix_lambda` also offers ``Beta(a, a)``). The
embedding of mixed image ``i`` is scored against candidate embeddings (keys, then optional queue
entries) with its own temperature ``tau_mix``; the soft target puts ``lambda_i`` on candidate
``i`` and ``1 - lambda_i`` on candidate ``i + N/2`` (queue entries are pure negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vision_ssl.losses.contrastive import moco_loss, nt_xent_loss

LAMBDA_DISTRIBUTIONS = ("uniform", "beta")


def sample_mix_lambda(n: int, distribution: str = "uniform", alpha: float = 1.0,
                      device: torch.device | str | None = None) -> Tensor:
    """``n`` mixing coefficients: ``U(0, 1)`` (MixCo) or ``Beta(alpha, alpha)``; global RNG."""
    if distribution == "uniform":
        return torch.rand(n, device=device)
    if distribution == "beta":
        return torch.distributions.Beta(alpha, alpha).sample((n,)).to(device)
    raise ValueError(f"unknown lambda distribution {distribution!r}; choose one of {LAMBDA_DISTRIBUTIONS}")


def mix_halves(x: Tensor, lam: Tensor) -> Tensor:
    """``lam_i * x_i + (1 - lam_i) * x_{i + N/2}`` for ``i < N/2``: ``[N/2, ...]`` mixed images."""
    n = x.shape[0]
    if n % 2 or lam.shape != (n // 2,):
        raise ValueError(f"mix_halves needs an even batch and N/2 lambdas, got batch {n} and lambdas "
                         f"{tuple(lam.shape)}")
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return lam * x[: n // 2] + (1 - lam) * x[n // 2:]


def mixco_soft_targets(lam: Tensor, num_candidates: int) -> Tensor:
    """Soft targets ``[N/2, num_candidates]`` with ``lam_i`` at column ``i`` and ``1 - lam_i`` at
    column ``i + N/2`` (``N = 2 * len(lam)`` keys come first among the candidates)."""
    half = lam.shape[0]
    if num_candidates < 2 * half:
        raise ValueError(f"mixco_soft_targets: {num_candidates} candidates cannot hold the {2 * half} keys")
    rows = torch.arange(half, device=lam.device)
    targets = torch.zeros(half, num_candidates, dtype=lam.dtype, device=lam.device)
    targets[rows, rows] = lam
    targets[rows, rows + half] = 1 - lam
    return targets


def soft_target_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of ``-sum_c targets * log_softmax(logits)``."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def mixco_loss(mixed: Tensor, keys: Tensor, lam: Tensor, tau_mix: float, queue: Tensor | None = None) -> Tensor:
    """Soft-target cross-entropy of mixed embeddings against the keys (and queue negatives).

    Args:
        mixed: ``[N/2, D]`` embeddings of the mixed images.
        keys: ``[N, D]`` embeddings of the un-mixed images of the batch (MoCo: the keys; SimCLR:
            the other view's projections).
        lam: ``[N/2]`` the mixing coefficients used for ``mixed``.
        tau_mix: temperature of this term.
        queue: optional ``[K, D]`` extra negatives.
    """
    candidates = keys if queue is None else torch.cat([keys, queue])
    logits = F.normalize(mixed, dim=1) @ F.normalize(candidates, dim=1).T / tau_mix
    return soft_target_cross_entropy(logits, mixco_soft_targets(lam.to(logits.dtype), candidates.shape[0]))


def mixco_moco_loss(q: Tensor, k: Tensor, queue: Tensor, mixed: Tensor, lam: Tensor, temperature: float = 0.2,
                    tau_mix: float = 0.05, beta: float = 1.0) -> dict[str, Tensor]:
    """MoCo v2 + MixCo: ``moco_loss(q, k, queue) + beta * mixco_loss(mixed, k, lam, queue)``.

    Returns ``{"loss", "moco", "mix"}``.
    """
    base = moco_loss(q, k, queue, temperature)
    mix = mixco_loss(mixed, k, lam, tau_mix, queue)
    return {"loss": base + beta * mix, "moco": base, "mix": mix}


def mixco_simclr_loss(z1: Tensor, z2: Tensor, mixed1: Tensor, mixed2: Tensor, lam1: Tensor, lam2: Tensor,
                      temperature: float = 0.5, tau_mix: float = 0.5, beta: float = 1.0) -> dict[str, Tensor]:
    """SimCLR + MixCo: NT-Xent plus ``beta`` times the mean of the two per-view mix terms, where
    the mixes of view 1 are scored against view 2's projections only and vice versa.

    Returns ``{"loss", "nt_xent", "mix"}``.
    """
    base = nt_xent_loss(z1, z2, temperature)
    mix = 0.5 * (mixco_loss(mixed1, z2, lam1, tau_mix) + mixco_loss(mixed2, z1, lam2, tau_mix))
    return {"loss": base + beta * mix, "nt_xent": base, "mix": mix}
