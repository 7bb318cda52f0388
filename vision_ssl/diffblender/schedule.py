"""Gate schedules of DiffBlender sampling (GLIGEN's "scheduled sampling", reference section 3).

A schedule ``(a0, a1, a2, s)`` with ``a0 + a1 + a2 = 1`` over ``T`` steps keeps the scale at
``s`` for the first ``floor(a0 T)`` steps, decays linearly over the next ``n1 = floor(a1 T)``
steps as ``s (n1 - 1 - j) / n1`` (so the last decay step is 0), and is 0 afterwards.
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
