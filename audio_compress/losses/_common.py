"""Shared helpers for the loss functions: length cropping, validity masks, dtype promotion.

All losses in this package take a frame-level ``padding_mask`` of shape ``(B, T)`` that is
**True at padded frames** (package convention). Padded frames never contribute to any loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def compute_dtype(x: Tensor) -> torch.dtype:
    """Dtype used for loss arithmetic: at least float32.

    Half-precision inputs (float16 / bfloat16) are promoted to float32 because Gram products
    and squared errors over hundreds of channels and frames overflow in fp16 (cf. s3prl#378);
    float64 inputs stay float64.
    """
    return torch.promote_types(x.dtype, torch.float32)


def to_compute(x: Tensor) -> Tensor:
    """Cast ``x`` to :func:`compute_dtype` (no copy if already there)."""
    return x.to(compute_dtype(x))


def crop_to_common_length(
    tensors: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    dims: int | Sequence[int] = 1,
) -> tuple[list[Tensor], Tensor | None]:
    """Crop every tensor (and the padding mask) to the shortest time length among them.

    ``dims`` names the time axis (or axes, e.g. ``(-2, -1)`` for ``(B, H, T, T)`` attention
    maps) of every tensor in ``tensors``; the padding mask's time axis is its dim 1. The common
    length is the minimum over all those axes and over ``padding_mask.shape[1]``. Frames past it
    are dropped from the end. This absorbs off-by-one frame counts between teacher and student
    (a teacher that is one frame longer, or one layer that is one frame shorter; see s3prl#331).

    Returns ``(cropped_tensors, cropped_padding_mask)``; the mask is returned as bool (or None).
    """
    if isinstance(dims, int):
        dims = (dims,)
    tensors = list(tensors)
    lengths = [t.shape[d] for t in tensors for d in dims]
    if padding_mask is not None:
        if padding_mask.dim() != 2:
            raise ValueError(
                f"padding_mask must be a frame-level (B, T) tensor, got shape {tuple(padding_mask.shape)}"
            )
        lengths.append(padding_mask.shape[1])
    if not lengths:
        return tensors, padding_mask
    t_common = min(lengths)
    out = []
    for t in tensors:
        for d in dims:
            if t.shape[d] != t_common:
                t = t.narrow(d, 0, t_common)
        out.append(t)
    if padding_mask is not None:
        padding_mask = padding_mask[:, :t_common].bool()
    return out, padding_mask


def valid_frames(padding_mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    """Bool ``(B, T)`` tensor that is True at **valid** (unpadded) frames.

    ``padding_mask=None`` means every frame is valid.
    """
    if padding_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if tuple(padding_mask.shape) != (batch, length):
        raise ValueError(
            f"padding_mask has shape {tuple(padding_mask.shape)}, expected ({batch}, {length})"
        )
    return ~padding_mask.to(device=device, dtype=torch.bool)


def check_same_length(student: Sequence, teacher: Sequence, what: str) -> None:
    """Raise ``ValueError`` unless the student and teacher lists have equal, non-zero length."""
    if len(student) != len(teacher):
        raise ValueError(
            f"{what}: student has {len(student)} entries but teacher has {len(teacher)}; "
            "they must be paired 1:1"
        )
    if len(student) == 0:
        raise ValueError(f"{what}: empty list of tensors")


def safe_div(num: Tensor, den: Tensor | int | float) -> Tensor:
    """``num / max(den, 1)``: 0 (with the graph kept) when nothing was counted."""
    if isinstance(den, Tensor):
        return num / den.clamp_min(1).to(num.dtype)
    return num / max(den, 1)
