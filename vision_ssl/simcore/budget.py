"""Coreset size, the random-sampling baseline and SimCore's epoch recomputation (reference 3.2,
steps 5-6)."""

from __future__ import annotations

import math

import numpy as np

IMAGENET_TRAIN_SIZE = 1_281_167  #: the open set whose epochs the reference's rule counts


def coreset_budget(n_target: int, n_open: int, stop: bool, budget_ratio: float = 50.0,
                   sampling_ratio: float | None = None) -> int:
    """Most open-set samples to select: ``budget_ratio * |X|`` with the stopping rule, otherwise
    ``floor(sampling_ratio * |U|)``; never more than ``|U|``."""
    if stop:
        return min(n_open, int(budget_ratio * n_target))
    if sampling_ratio is None or not 0 < sampling_ratio <= 1:
        raise ValueError(f"without the stopping rule a sampling ratio in (0, 1] is needed, got {sampling_ratio}")
    return math.floor(sampling_ratio * n_open)


def random_coreset(n_open: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random baseline: ``size`` distinct open-set indices drawn uniformly, sorted."""
    if not 0 <= size <= n_open:
        raise ValueError(f"cannot draw {size} samples from an open set of {n_open}")
    return np.sort(rng.choice(n_open, size, replace=False))


def recompute_epochs(coreset_size: int, max_epochs: int, reference_size: int = IMAGENET_TRAIN_SIZE,
                     visits: int = 100, scale: float = 1.0) -> int:
    """Pretraining epochs on ``X`` + coreset: ``floor(scale * min(max_epochs, floor(visits *
    reference_size / |S|)))``, i.e. about ``visits`` epochs of the reference open set, capped, then
    scaled (``scale`` 0.2 when starting from an already pretrained SSL checkpoint). An empty
    coreset keeps ``max_epochs`` (unscaled).

    The cap comes before the scale as in the reference code: scaling first would let a coreset
    smaller than ``visits * reference_size / max_epochs`` (25,624 for ImageNet and 5000 epochs)
    train up to ``1 / scale`` times longer.
    """
    if coreset_size <= 0:
        return max_epochs
    # integer arithmetic for the visit count: no rounding surprises at exact multiples
    capped = min(max_epochs, visits * reference_size // coreset_size)
    return capped if scale == 1.0 else math.floor(scale * capped)
