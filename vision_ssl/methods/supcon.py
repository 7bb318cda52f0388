"""SupCon: supervised contrastive learning on the backbone's projections.

``data.num_views: 2`` is SupCon; ``1`` is SupCon-S (anchors without a same-class partner in the
batch are dropped). ``contrast.supervised: false`` makes the positives the other view of the same
image (SimCLR with SupCon's loss scaling). Under DDP the loss runs over the global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vision_ssl.losses import supcon_loss
from vision_ssl.methods.base import PretrainMethod


class SupCon(PretrainMethod):
    """SupCon (``method: supcon``)."""

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        n = len(views[0])
        z = self.head(self.backbone(torch.cat(views)))
        features = self.gather(z.view(len(views), n, -1).transpose(0, 1))
        c = self.config.contrast
        labels = self.gather(labels, grads=False) if c.supervised else None
        return {"loss": supcon_loss(features, labels, c.temperature, c.base_temperature)}
