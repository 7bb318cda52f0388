"""Instance-discrimination losses: NT-Xent (SimCLR) and the MoCo InfoNCE over a queue.

Embeddings are l2-normalised inside (cosine similarity), so raw projections can be passed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent: mean over the 2N anchors of the cross-entropy that picks the other view
    of the same image among the 2N - 1 other embeddings.

    Args:
        z1, z2: ``[N, D]`` projections of the two views (row i of both is image i).
        temperature: softmax temperature.

    ``N`` identical embeddings give ``ln(2N - 1)`` for any temperature.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent_loss expects two [N, D] tensors of one shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def moco_logits(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo logits ``[N, 1 + K]``: column 0 is ``q_i . k_i``, then ``q_i . n_j`` for the K queue
    entries, all divided by ``temperature``."""
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    return torch.cat([positive, q @ queue.T], dim=1) / temperature


def moco_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """MoCo InfoNCE: mean cross-entropy of :func:`moco_logits` with the positive at index 0.

    Args:
        q: ``[N, D]`` queries (gradient flows).
        k: ``[N, D]`` keys of the other view (momentum encoder; pass them detached).
        queue: ``[K, D]`` negatives from past batches.
    """
    logits = moco_logits(q, k, queue, temperature)
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
