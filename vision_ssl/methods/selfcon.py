"""SelfCon: self-contrastive learning with a multi-exit network.

Sub-networks attach after the configured stages (``selfcon.exits``, default ``[2]``: after
layer2) and map the exit's feature map to the backbone's width (``fc``, ``small`` or ``same``,
see :mod:`vision_ssl.backbones.subnet`). Every exit and the backbone have their own projection
head. ``data.num_views: 1`` is SelfCon-S (the paper's main method), ``2`` SelfCon-M; with
``contrast.supervised: false`` they become -SU / -MU. ``selfcon.alpha > 0`` gives SelfCon-S* / M*:
SupCon(-S) on the backbone only plus ``alpha`` times the SelfCon term with sub-network anchors.
The loss is scaled by ``temperature / base_temperature`` (0.1 / 0.07) as in the reference.

Positives without labels follow the reference code, which differs between the terms: in
SelfCon-MU (``alpha`` 0) the two augmentations of an image are *not* positives of each other, but
in the ``alpha`` term of SelfCon-MU* they are (every output of the same image, either view), and
the backbone term of SelfCon-MU* is SimCLR-style (the other view). SelfCon-SU* has no backbone
term at all: with one view and no labels a backbone anchor has no positive.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vision_ssl.backbones import build_subnetwork
from vision_ssl.config import ExperimentConfig
from vision_ssl.losses import selfcon_loss, supcon_loss
from vision_ssl.methods.base import PretrainMethod


class SelfCon(PretrainMethod):
    """SelfCon (``method: selfcon``)."""

    def __init__(self, config: ExperimentConfig | dict) -> None:
        super().__init__(config)
        s = self.config.selfcon
        self.subnets = nn.ModuleList(build_subnetwork(self.backbone, e, s.subnet) for e in s.exits)
        self.sub_heads = nn.ModuleList(self.make_head() for _ in s.exits)

    def exit_features(self, x: Tensor) -> list[Tensor]:
        """Features before the heads: ``[subnet_1, ..., subnet_E, backbone]``, each ``[B, D]``."""
        maps = self.backbone.forward_stages(x)
        subs = [subnet(maps[e - 1]) for subnet, e in zip(self.subnets, self.config.selfcon.exits)]
        return [*subs, torch.flatten(self.backbone.avgpool(maps[-1]), 1)]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """``backbone``: pooled trunk; ``subnet``: the last exit's sub-network output."""
        *subs, backbone = self.exit_features(x)
        return {"backbone": backbone, "subnet": subs[-1]}

    def feature_dims(self) -> dict[str, int]:
        return {"backbone": self.backbone.out_dim, "subnet": self.backbone.out_dim}

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        v, n = len(views), len(views[0])
        feats = self.exit_features(torch.cat(views))
        z = [head(f) for head, f in zip([*self.sub_heads, self.head], feats)]
        c, alpha = self.config.contrast, self.config.selfcon.alpha
        labels_all = self.gather(labels, grads=False) if c.supervised else None
        # rows of each output: views of the local batch, then processes
        outputs = [self.gather(o.view(v, n, -1).transpose(0, 1)).transpose(0, 1).flatten(0, 1) for o in z]
        if alpha == 0:
            return {"loss": selfcon_loss(outputs, labels_all, c.temperature, c.base_temperature)}
        # without labels the alpha term's classes are the images (repeated over the views by
        # selfcon_loss), so the views of one image are positives of each other, as in the reference
        classes = labels_all if c.supervised else torch.arange(len(outputs[0]) // v, device=outputs[0].device)
        sub = selfcon_loss(outputs, classes, c.temperature, c.base_temperature, sub_anchors_only=True)
        if v == 1 and not c.supervised:  # SelfCon-SU*: the alpha term only
            return {"loss": alpha * sub, "selfcon": sub}
        backbone = self.gather(z[-1].view(v, n, -1).transpose(0, 1))
        base = supcon_loss(backbone, labels_all, c.temperature, c.base_temperature)
        return {"loss": base + alpha * sub, "supcon": base, "selfcon": sub}
