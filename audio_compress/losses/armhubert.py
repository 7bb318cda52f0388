r"""ARMHuBERT masking distillation loss and a span-mask sampler (reference §2.2).

Each training step runs the teacher on the clean input (``H^l``) and on a span-masked input
(``H~^l``), and the student (on the clean input with its mask embedding written at the same
positions ``M``) gives per-layer projections ``P^l``. With the per-frame error
``e(a, b) = mean_D (a - b)^2``:

``L_l = [ sum_{(b,t) in M, valid} e(P^l, H^l) + sum_{(b,t) not in M, valid} e(P^l, H~^l) ] / N_valid``

``L = last_weight * L_last + hint_weight * sum_{l < last} L_l``  (released: 1.0 and 0.1; hints
are summed, not averaged).

Deviation from the released code: there the unmasked set included padded frames and the sum
was divided by the padded ``B * T``. Here padded frames never contribute and we divide by the
number of valid frames ``N_valid`` (equal to ``B * T`` when nothing is padded, so the two agree
on unpadded batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import check_same_length, crop_to_common_length, safe_div, to_compute, valid_frames


def _frame_error(a: Tensor, b: Tensor) -> Tensor:
    """Per-frame squared error averaged over the feature dim: ``(B, T, D) -> (B, T)``."""
    if a.shape != b.shape:
        raise ValueError(f"prediction {tuple(a.shape)} and target {tuple(b.shape)} shapes differ")
    return (to_compute(a) - to_compute(b)).pow(2).mean(dim=-1)


def masking_distillation_loss(
    student_proj: Sequence[Tensor],
    teacher_clean: Sequence[Tensor],
    teacher_masked: Sequence[Tensor] | None,
    mask: Tensor | None,
    padding_mask: Tensor | None = None,
    last_weight: float = 1.0,
    hint_weight: float = 0.1,
) -> dict[str, Tensor]:
    r"""ARMHuBERT masking distillation loss.

    Args:
        student_proj: ``L`` per-layer student projections ``P^l``, each ``(B, T, D)``.
        teacher_clean: ``L`` teacher outputs on the clean input ``H^l``.
        teacher_masked: ``L`` teacher outputs on the masked input ``H~^l``; ``None`` means
            "same as ``teacher_clean``".
        mask: ``(B, T)`` bool, True at masked frames (``M``); ``None`` means no frame is masked.
        padding_mask: ``(B, T)`` bool, True at padded frames (never contribute).
        last_weight: weight of the last layer term (``rec_loss_weight``, 1.0).
        hint_weight: weight of the sum of the other layers (``random_layer_weight``, 0.1).

    Returns a dict with ``"loss"`` (weighted total), ``"last"`` (``L_last``), ``"hints"``
    (unweighted ``sum_{l<last} L_l``; 0 when ``L = 1``) and ``"per_layer"`` (1-D tensor of
    the ``L`` values ``L_l``). All tensors are cropped to the common frame count.
    """
    check_same_length(student_proj, teacher_clean, "masking_distillation_loss")
    if teacher_masked is None:
        teacher_masked = teacher_clean
    check_same_length(student_proj, teacher_masked, "masking_distillation_loss (teacher_masked)")
    n = len(student_proj)
    tensors = [*student_proj, *teacher_clean, *teacher_masked]
    if mask is not None:
        if mask.dim() != 2:
            raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
        tensors.append(mask)
    cropped, padding_mask = crop_to_common_length(tensors, padding_mask)
    preds, clean, masked = cropped[:n], cropped[n : 2 * n], cropped[2 * n : 3 * n]
    b, t = preds[0].shape[:2]
    valid = valid_frames(padding_mask, b, t, preds[0].device)
    m = cropped[3 * n].bool() if mask is not None else torch.zeros_like(valid)
    n_valid = valid.sum()
    per_layer = []
    for p, h, h_masked in zip(preds, clean, masked):
        err = torch.where(m, _frame_error(p, h), _frame_error(p, h_masked))
        err = torch.where(valid, err, err.new_zeros(()))
        per_layer.append(safe_div(err.sum(), n_valid))
    last = per_layer[-1]
    hints = sum(per_layer[:-1], last.new_zeros(()))
    return {
        "loss": last_weight * last + hint_weight * hints,
        "last": last,
        "hints": hints,
        "per_layer": torch.stack(per_layer),
    }


def plain_distillation_loss(
    student_proj: Sequence[Tensor],
    teacher_clean: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    last_weight: float = 1.0,
    hint_weight: float = 0.1,
) -> dict[str, Tensor]:
    r"""Unmasked distillation loss used for validation (reference §2.2, "Validation").

    Per layer: ``L_l = mean over valid frames and feature dims of (P^l - H^l)^2``; total
    ``last_weight * L_last + hint_weight * sum_{l<last} L_l``. This is exactly
    :func:`masking_distillation_loss` with an empty mask and ``H~ = H`` (the mean of per-frame
    means over D equals the mean over (frames, D)), and is implemented that way. The released
    code averaged over the padded ``(B, T, D)``; we exclude padded frames.
    """
    return masking_distillation_loss(
        student_proj, teacher_clean, None, None, padding_mask, last_weight, hint_weight
    )


def sample_span_mask(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    padding_mask: Tensor | None = None,
    min_masks: int = 2,
    min_space: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Sample non-overlapping time-span masks (fairseq ``no_overlap`` semantics, our own code).

    For every row with ``n`` valid frames:

    1. the number of spans is ``max(min_masks, floor(mask_prob * n / mask_length + u))`` with
       ``u ~ U(0, 1)`` (probabilistic rounding);
    2. spans of exactly ``mask_length`` frames are placed one after another: the free space is
       a list of intervals (initially the maximal runs of valid frames); an interval is drawn
       with probability proportional to the number of start positions it offers, a start is
       drawn uniformly in it, and the interval is split into the parts left of and right of
       the span, each shrunk by ``min_space`` frames on the span's side, so consecutive spans
       are separated by at least ``min_space`` unmasked frames and never overlap;
    3. if no interval can hold another span, placement stops (rows that are too short get as
       many spans as fit, possibly none; this never raises and never masks padding).

    Unlike fairseq's default (``require_same_masks``) we do not subsample masked frames to
    equalise counts across the batch, so every masked run has length exactly ``mask_length``
    when ``min_space >= 1``. Because spans cannot overlap, the masked fraction is capped below
    ``mask_prob`` for large ``mask_prob`` (random placement jams; e.g. ``mask_prob=0.8``,
    ``mask_length=10`` masks roughly 65-70% of a long row).

    Args:
        shape: ``(B, T)``.
        mask_prob: target masked fraction; ``mask_prob * n / mask_length`` spans are requested
            per row of ``n`` valid frames.
        mask_length: span length in frames (>= 1).
        padding_mask: optional ``(B, T)`` bool, True at padded frames.
        min_masks: minimum number of spans requested per row.
        min_space: minimum number of unmasked frames between two spans.
        generator: torch random generator (CPU) for reproducibility.

    Returns a bool ``(B, T)`` tensor, True at masked frames, on ``padding_mask``'s device
    (CPU otherwise).
    """
    bsz, length = shape
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    if min_space < 0:
        raise ValueError(f"min_space must be >= 0, got {min_space}")
    device = padding_mask.device if padding_mask is not None else torch.device("cpu")
    valid = valid_frames(padding_mask, bsz, length, device).cpu()
    out = torch.zeros(bsz, length, dtype=torch.bool)

    def randint(high: int) -> int:
        return int(torch.randint(high, (1,), generator=generator).item())

    for row in range(bsz):
        row_valid = valid[row].tolist()
        n_valid = sum(row_valid)
        u = float(torch.rand((), generator=generator).item())
        num_spans = max(min_masks, int(mask_prob * n_valid / mask_length + u))
        # Maximal runs of valid frames as half-open intervals [s, e).
        free: list[tuple[int, int]] = []
        start = None
        for i, v in enumerate(row_valid + [False]):
            if v and start is None:
                start = i
            elif not v and start is not None:
                free.append((start, i))
                start = None
        for _ in range(num_spans):
            counts = [max(0, e - s - mask_length + 1) for s, e in free]
            total = sum(counts)
            if total == 0:
                break
            r = randint(total)
            k = 0
            while r >= counts[k]:
                r -= counts[k]
                k += 1
            s, e = free.pop(k)
            p = s + r
            out[row, p : p + mask_length] = True
            left = (s, p - min_space)
            right = (p + mask_length + min_space, e)
            free.extend(iv for iv in (left, right) if iv[1] - iv[0] >= mask_length)
    return out.to(device)
