"""Classifier-free and mode-specific guidance of DiffBlender (reference section 3).

``eps = eps_u + w (eps_c - eps_u) + sum_m w_m (eps_c - eps_{c minus m})``. The unconditional
branch nulls the text and every token modality but keeps the image-form conditions; the
mode-nulled branch keeps everything except modality ``m``. The condition helpers work on
(raw or prepared) condition dicts, where an absent key means a null modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Weight = float | Sequence[float] | torch.Tensor


def _per_sample(weight: Weight, like: torch.Tensor) -> torch.Tensor | float:
    """A scalar stays a scalar; a per-sample list becomes a B x 1 x ... tensor."""
    if isinstance(weight, (int, float)):
        return float(weight)
    w = torch.as_tensor(weight, dtype=like.dtype, device=like.device)
    if w.numel() != like.shape[0]:
        raise ValueError(f"a per-sample guidance weight needs {like.shape[0]} values, got {w.numel()}")
    return w.reshape(-1, *([1] * (like.ndim - 1)))


def combine_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float,
                     mode_terms: Sequence[tuple[torch.Tensor, Weight]] = ()) -> torch.Tensor:
    """Guided noise prediction from the unconditional, conditional and mode-nulled predictions.

    ``mode_terms`` holds ``(eps_without_m, w_m)`` pairs; ``w_m`` is a float or one value per sample.
    """
    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    for eps_without, weight in mode_terms:
        eps = eps + _per_sample(weight, eps_cond) * (eps_cond - eps_without)
    return eps


def unconditional(conditions: dict[str, Any], image_modalities: Sequence[str]) -> dict[str, Any]:
    """The unconditional branch's conditions: only the image-form entries are kept."""
    return {name: cond for name, cond in conditions.items() if name in image_modalities}


def without_modality(conditions: dict[str, Any], modality: str) -> dict[str, Any]:
    """The conditions with ``modality`` nulled (removed); the other entries are the same objects."""
    if modality not in conditions:
        raise ValueError(f"mode guidance on {modality!r}, which is not among the given conditions {sorted(conditions)}")
    return {name: cond for name, cond in conditions.items() if name != modality}
