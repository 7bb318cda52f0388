"""Gate schedules of DiffBlender sampling (GLIGEN's "scheduled sampling", reference section 3).

A schedule ``(a0, a1, a2, s)`` with ``a0 + a1 + a2 = 1`` over ``T`` steps keeps the scale at
``s`` for the first ``floor(a0 T)`` steps, decays linearly over the next ``n1 = floor(a1 T)``
steps as ``s (n1 - 1 - j) / n1`` (so the last decay step is 0), and is 0 afterwards. ``T`` counts
sampling steps, not UNet evaluations (see :func:`evaluation_gate_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def gate_schedule(gate: Sequence[float], num_steps: int) -> list[float]:
    """The per-step scales of ``gate = (a0, a1, a2, s)`` over ``num_steps`` sampling steps."""
    if len(gate) != 4:
        raise ValueError(f"a gate schedule is (a0, a1, a2, scale), got {tuple(gate)!r}")
    a0, a1, a2, scale = (float(v) for v in gate)
    if min(a0, a1, a2) < 0 or not math.isclose(a0 + a1 + a2, 1.0, abs_tol=1e-6):
        raise ValueError(f"gate schedule fractions a0 + a1 + a2 must be non-negative and sum to 1, got {tuple(gate)!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    n0 = math.floor(a0 * num_steps)
    n1 = math.floor(a1 * num_steps)
    decay = [scale * (n1 - 1 - j) / n1 for j in range(n1)]
    return ([scale] * n0 + decay + [0.0] * num_steps)[:num_steps]


def evaluation_steps(num_evaluations: int, num_steps: int) -> list[int]:
    """The sampling step each of ``num_evaluations`` UNet evaluations belongs to.

    A multistep sampler may evaluate the UNet more often than it has steps: PLMS (diffusers'
    ``PNDMScheduler`` with ``skip_prk_steps``) starts with an improved-Euler step of two
    evaluations, so 50 steps make 51 evaluations (timesteps 981, 961, 961, 941, ...). The extra
    evaluations are step 0's; the official sampler gives them step 0's gate, so evaluation ``k``
    belongs to step ``max(0, k - extra)``.
    """
    extra = num_evaluations - num_steps
    if extra < 0:
        raise ValueError(f"{num_evaluations} UNet evaluations cannot cover {num_steps} sampling steps")
    return [max(0, k - extra) for k in range(num_evaluations)]


def evaluation_gate_schedule(gate: Sequence[float], num_steps: int, num_evaluations: int) -> list[float]:
    """The scale of each UNet evaluation: :func:`gate_schedule` over the ``num_steps`` sampling
    steps (not over the evaluations), mapped by :func:`evaluation_steps`."""
    per_step = gate_schedule(gate, num_steps)
    return [per_step[step] for step in evaluation_steps(num_evaluations, num_steps)]
