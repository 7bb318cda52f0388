r"""DistilHuBERT distillation loss (s3prl "distiller", reference §3.1).

``L = mean_{b,n,t,d} |P - Y| + cos_weight * mean_{b,n,t} [-log sigmoid(cos(P_{bnt}, Y_{bnt}))]``

with predictions ``P`` and teacher targets ``Y`` of shape ``(B, N, T, D)`` (``N`` predicted
teacher layers, e.g. 4/8/12). At a perfect match the cosine term is ``ln(1 + e^-1) =
0.3132617`` (so the loss is not 0); orthogonal vectors give ``ln 2``, opposite ``ln(1 + e)``.

Deviation from s3prl: the released loss is a plain mean that includes padded frames; here
padded frames (``padding_mask`` True) are excluded from both means (identical when unpadded).
Computation is done in at least float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import crop_to_common_length, safe_div, to_compute, valid_frames


def distilhubert_loss(
    pred: Tensor,
    target: Tensor,
    padding_mask: Tensor | None = None,
    cos_weight: float = 1.0,
    eps: float = 1e-8,
) -> dict[str, Tensor]:
    r"""DistilHuBERT L1 + cosine loss.

    Args:
        pred: ``(B, N, T, D)`` head predictions.
        target: ``(B, N, T', D)`` teacher hidden states (cropped with ``pred`` to the common
            frame count). Detach it yourself if it carries a graph.
        padding_mask: ``(B, T)`` bool, True at padded frames.
        cos_weight: ``lambda`` (s3prl ``cosine_loss``, 1.0).
        eps: cosine-similarity denominator guard.

    Returns ``{"loss": l1 + cos_weight * cos, "l1": mean |P - Y| over valid (b, n, t, d),
    "cos": mean -log sigmoid(cos) over valid (b, n, t)}``.
    """
    if pred.dim() != 4 or target.dim() != 4:
        raise ValueError(
            f"distilhubert_loss expects (B, N, T, D) tensors, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    (pred, target), padding_mask = crop_to_common_length([pred, target], padding_mask, dims=2)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    pred = to_compute(pred)
    target = to_compute(target)
    b, n, t, d = pred.shape
    valid = valid_frames(padding_mask, b, t, pred.device).unsqueeze(1).expand(b, n, t)
    zero = pred.new_zeros(())
    n_valid = valid.sum()
    l1_frames = (pred - target).abs().sum(dim=-1)
    l1 = safe_div(torch.where(valid, l1_frames, zero).sum(), n_valid * d)
    cos_frames = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1, eps=eps))
    cos = safe_div(torch.where(valid, cos_frames, zero).sum(), n_valid)
    return {"loss": l1 + cos_weight * cos, "l1": l1, "cos": cos}
