"""HuBERT's masked-prediction head and loss.

The last Transformer output goes through a final projection; its cosine similarity with one learned
embedding per cluster, divided by a temperature (0.1 in HuBERT), gives the logits. The loss is HuBERT's
``alpha L_m + (1 - alpha) L_u``, written as ``L_m + w L_u`` (fairseq's ``pred_masked_weight`` 1 and
``pred_nomask_weight`` w): the cross-entropy of the frame's cluster id averaged over the masked frames,
plus ``w`` times the same over the unmasked valid frames. The paper's base models use ``w = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PredictionHead(nn.Module):
    """``final_proj`` (hidden -> dim) and ``label_embs`` (K, dim); logits are cosine similarities / temperature."""

    def __init__(self, hidden_size: int, proj_dim: int, num_clusters: int, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.final_proj = nn.Linear(hidden_size, proj_dim)
        self.label_embs = nn.Parameter(torch.empty(num_clusters, proj_dim))
        nn.init.uniform_(self.label_embs)
        self.temperature = temperature

    def forward(self, hidden: Tensor) -> Tensor:
        """``(B, T, hidden)`` -> ``(B, T, K)`` logits."""
        proj = F.normalize(self.final_proj(hidden), dim=-1)
        return proj @ F.normalize(self.label_embs, dim=-1).T / self.temperature


def masked_prediction_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy over the masked frames and the accuracy there.

    Args:
        logits: ``(B, T, K)``.
        targets: ``(B, T)`` cluster ids.
        mask: ``(B, T)`` bool, True at masked (valid) frames; nothing else counts.

    Returns ``(loss, accuracy)``; both 0 when no frame is masked.
    """
    picked, labels = logits[mask], targets[mask]
    if labels.numel() == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    loss = F.cross_entropy(picked.float(), labels)
    accuracy = (picked.argmax(dim=-1) == labels).float().mean()
    return loss, accuracy


def hubert_loss(logits: Tensor, targets: Tensor, mask: Tensor, valid: Tensor, unmasked_weight: float = 0.0
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """``L_m + unmasked_weight * L_u`` over the valid frames, and the accuracies.

    Args:
        logits: ``(B, T, K)``.
        targets: ``(B, T)`` cluster ids.
        mask: ``(B, T)`` bool, True at masked frames.
        valid: ``(B, T)`` bool, True at real (not padded) frames.
        unmasked_weight: ``w``; at 0 the unmasked frames are not even scored.

    Returns ``(loss, {"masked_acc", ["unmasked_acc"]})``.
    """
    loss, accuracy = masked_prediction_loss(logits, targets, mask & valid)
    stats = {"masked_acc": accuracy}
    if unmasked_weight > 0:
        unmasked, stats["unmasked_acc"] = masked_prediction_loss(logits, targets, ~mask & valid)
        loss = loss + unmasked_weight * unmasked
    return loss, stats
