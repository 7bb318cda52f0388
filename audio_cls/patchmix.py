"""Patch-Mix: swap a random subset of patch embeddings between the samples of a batch.

Applied after the patch-embedding convolution and before the CLS/DIST tokens and positional
embeddings are added. One set of ``k = floor(M * (1 - lam))`` patch positions out of the ``M``
patches is drawn for the whole batch; sample ``i`` receives sample ``perm[i]``'s embeddings at
those positions, so positions are preserved. Labels and loss weights use the effective ratio
``lam' = 1 - k / M`` (the fraction of the sample's own patches), not the raw draw. The time-domain
variant swaps whole time columns (all frequency rows of ``k = floor(T * (1 - lam))`` columns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PatchMixPlan:
    """One mixing draw: ``positions`` (flat patch indices, frequency-major), ``perm`` (partner of
    each sample) and ``lam`` (the effective own-patch fraction)."""

    positions: Tensor
    perm: Tensor
    lam: float


def num_swapped(units: int, lam: float) -> int:
    """Patches (or time columns) taken from the partner: ``floor(units * (1 - lam))``."""
    return int(math.floor(units * (1.0 - lam)))


def effective_lambda(units: int, lam: float) -> float:
    """``1 - k / units`` for ``k = num_swapped(units, lam)``."""
    return 1.0 - num_swapped(units, lam) / units


def draw_lambda(beta: float) -> float:
    """``lam ~ Beta(beta, beta)`` from torch's global RNG; ``beta <= 0`` disables mixing (``lam = 1``)."""
    if beta <= 0:
        return 1.0
    return float(torch.distributions.Beta(beta, beta).sample())


def plan_patch_mix(
    batch_size: int,
    grid: tuple[int, int],
    lam: float,
    time_domain: bool = False,
    generator: torch.Generator | None = None,
) -> PatchMixPlan:
    """Draw the permutation and the swapped positions for a (frequency, time) patch ``grid``."""
    freq, time = grid
    perm = torch.randperm(batch_size, generator=generator)
    if time_domain:
        k = num_swapped(time, lam)
        columns = torch.randperm(time, generator=generator)[:k]
        positions = (torch.arange(freq).unsqueeze(1) * time + columns.unsqueeze(0)).reshape(-1)
        return PatchMixPlan(positions.sort().values, perm, 1.0 - k / time)
    total = freq * time
    k = num_swapped(total, lam)
    positions = torch.randperm(total, generator=generator)[:k]
    return PatchMixPlan(positions.sort().values, perm, 1.0 - k / total)


def apply_patch_mix(patches: Tensor, plan: PatchMixPlan) -> Tensor:
    """Patches (B, M, D) with ``plan.positions`` of sample i replaced by those of ``plan.perm[i]``."""
    mixed = patches.clone()
    positions = plan.positions.to(patches.device)
    perm = plan.perm.to(patches.device)
    mixed[:, positions] = patches[perm][:, positions]
    return mixed
