"""Learning-rate schedules of the reference scripts, as pure functions of the (fractional) epoch.

``epoch`` counts from 0 and may be fractional (``optimizer steps done / steps per epoch``).
Cosine and step schedules change once per epoch (``floor(epoch)``), as in the reference
scripts; the linear warm-up changes every step.

* ``cosine``: ``eta_min + (lr - eta_min) * (1 + cos(pi * e / E)) / 2`` (MoCo v2 / MixCo with
  ``eta_min = 0``; SelfCon / SupCon with ``eta_min = lr * 1e-3``).
* ``warmup="linear"`` (SupCon / SelfCon): during the first ``W`` epochs the lr rises linearly per
  step from ``warmup_from`` to the cosine value at epoch ``W``
  (lr 0.5, E 1000, W 10, eta_min 5e-4: 0.4998768), then follows the cosine.
* ``warmup="constant"`` (SimCLR of the MixCo repository): ``lr`` for ``W`` epochs, then a cosine
  over the remaining ``E - W`` epochs.
* ``multistep`` (linear evaluation): ``lr * gamma ** (number of milestones <= e)``.
* ``constant``: ``lr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from compact_ssl.nn import cosine_lr

SCHEDULES = ("cosine", "multistep", "constant")
WARMUPS = ("linear", "constant")


def learning_rate(epoch: float, base_lr: float, total_epochs: int, schedule: str = "cosine", eta_min: float = 0.0,
                  warmup_epochs: int = 0, warmup: str = "linear", warmup_from: float = 0.0,
                  milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """Learning rate at fractional ``epoch`` (see the module docstring)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")
    if warmup not in WARMUPS:
        raise ValueError(f"unknown warm-up {warmup!r}; choose one of {WARMUPS}")
    whole = math.floor(epoch)
    if schedule == "multistep":
        return base_lr * gamma ** sum(whole >= m for m in milestones)
    if schedule == "constant":
        return base_lr
    if epoch < warmup_epochs:
        if warmup == "constant":
            return base_lr
        target = cosine_lr(base_lr, warmup_epochs, total_epochs, eta_min)
        return warmup_from + (epoch / warmup_epochs) * (target - warmup_from)
    if warmup == "constant" and warmup_epochs:
        return cosine_lr(base_lr, whole - warmup_epochs, total_epochs - warmup_epochs, eta_min)
    return cosine_lr(base_lr, whole, total_epochs, eta_min)


def lr_lambda(base_lr: float, epochs: int, steps_per_epoch: int, **schedule) -> Callable[[int], float]:
    """Multiplier of ``base_lr`` after ``step`` optimizer steps, for a ``LambdaLR`` stepped every
    step (``schedule``: the keyword arguments of :func:`learning_rate`)."""
    if base_lr == 0:
        return lambda step: 0.0
    return lambda step: learning_rate(step / steps_per_epoch, base_lr, epochs, **schedule) / base_lr
