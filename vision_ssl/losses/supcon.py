"""Supervised-contrastive loss (SupCon) and SelfCon's multi-exit form of it.

Both are one formula (``supcon_loss``): all ``M = N * V`` l2-normalised vectors are anchors;
for an anchor ``a`` the denominator runs over every other vector, the positives ``P(a)`` are the
other vectors with the same label (without labels: the same row, i.e. the same image), and

    loss = -(temperature / base_temperature) * mean_a [ mean_{p in P(a)} log softmax_a(p) ]

over the anchors that have at least one positive (SupCon-S drops the others). The factor
``temperature / base_temperature`` is the SupCon convention kept by SelfCon (``base_temperature``
0.07 with ``temperature`` 0.1 multiplies the loss by about 1.43).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def supcon_loss(features: Tensor, labels: Tensor | None = None, temperature: float = 0.1,
                base_temperature: float = 0.07, anchor_views: Sequence[int] | None = None) -> Tensor:
    """SupCon loss over ``features`` ``[N, V, D]`` (N images, V vectors each).

    Args:
        features: projections; row ``i`` holds the V vectors of image (or group) ``i``.
        labels: ``[N]`` class labels; ``None`` makes each row its own class (SimCLR-style
            positives: the other vectors of the same row).
        temperature: softmax temperature.
        base_temperature: the loss is scaled by ``temperature / base_temperature``.
        anchor_views: restrict anchors to these view indices (all vectors remain positives and
            negatives); ``None`` uses every vector as an anchor.

    Raises:
        ValueError: when no anchor has a positive (e.g. one view and all labels distinct).
    """
    if features.dim() != 3:
        raise ValueError(f"supcon_loss expects features [N, V, D], got shape {tuple(features.shape)}")
    n, v, _ = features.shape
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"supcon_loss: labels must have shape ({n},), got {tuple(labels.shape)}")
    # view-major order: vector m = view * N + image
    z = F.normalize(features, dim=-1).transpose(0, 1).reshape(v * n, -1)
    ids = (labels if labels is not None else torch.arange(n, device=z.device)).repeat(v)
    self_mask = torch.eye(v * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (ids[:, None] == ids[None, :]) & ~self_mask
    num_pos = positives.sum(dim=1)
    anchors = num_pos > 0
    if anchor_views is not None:
        view_of = torch.arange(v, device=z.device).repeat_interleave(n)
        anchors &= torch.isin(view_of, torch.as_tensor(list(anchor_views), device=z.device))
    if not bool(anchors.any()):
        raise ValueError("supcon_loss: no anchor has a positive; use more views, labels with repeats, "
                         "or more than one exit")
    mean_log_prob_pos = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / num_pos.clamp(min=1)
    return -(temperature / base_temperature) * mean_log_prob_pos[anchors].mean()


def selfcon_loss(outputs: Sequence[Tensor], labels: Tensor | None = None, temperature: float = 0.1,
                 base_temperature: float = 0.07, sub_anchors_only: bool = False) -> Tensor:
    """SelfCon loss over the outputs of a multi-exit network.

    Args:
        outputs: ``[exit_1, ..., exit_E, backbone]`` projections, each ``[n, D]``. SelfCon-S:
            ``n = B`` (one view). SelfCon-M: ``n = 2B``, the two views' batches concatenated.
        labels: ``[B]`` or ``[n]`` labels (``[B]`` is repeated over the views). ``None``
            (SelfCon-SU / -MU): positives are the other outputs of the same row, so the two
            augmentations of an image are *not* positives of each other.
        temperature, base_temperature: as in :func:`supcon_loss`.
        sub_anchors_only: only the sub-network outputs are anchors (the alpha-term of
            SelfCon-S* / -M*).
    """
    features = torch.stack(list(outputs), dim=1)
    n = features.shape[0]
    if labels is not None and labels.shape[0] != n:
        if n % labels.shape[0]:
            raise ValueError(f"selfcon_loss: {labels.shape[0]} labels do not divide {n} rows")
        labels = labels.repeat(n // labels.shape[0])
    anchor_views = range(len(outputs) - 1) if sub_anchors_only else None
    return supcon_loss(features, labels, temperature, base_temperature, anchor_views)
