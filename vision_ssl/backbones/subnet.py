"""SelfCon sub-networks: what turns an intermediate feature map of a ResNet into a feature of the
backbone's output width.

``fc``
    global average pooling, then one linear map from the exit's channels to ``out_dim``
    (ResNet-18 after layer2: 128 -> 512, 66,048 parameters).
``same``
    non-shared, freshly initialised copies of the remaining stages with the same depths, then
    average pooling (ResNet-18 after layer2: new layer3 + layer4, 10,493,440 parameters).
``small``
    the same with half the blocks per stage (at least one; ResNet-18 after layer2: 4,592,128).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vision_ssl.backbones.resnet import ResNet, make_stage

SUBNETS = ("fc", "small", "same")


class FCSubnetwork(nn.Module):
    """Average pooling + linear map (the ``fc`` sub-network)."""

    def __init__(self, in_channels: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, out_dim)

    def forward(self, feature_map: Tensor) -> Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(feature_map, 1), 1))


class StageSubnetwork(nn.Module):
    """Copies of the backbone's remaining stages + average pooling (``same`` / ``small``)."""

    def __init__(self, stages: list[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.Sequential(*stages)

    def forward(self, feature_map: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(feature_map), 1), 1)


def build_subnetwork(backbone: ResNet, exit_stage: int, kind: str) -> nn.Module:
    """Sub-network for an exit placed after stage ``exit_stage`` (1, 2 or 3) of ``backbone``.

    Its output has the backbone's ``out_dim``, so the exit's feature and the backbone's feature
    can share a linear-evaluation protocol and projection-head shape.
    """
    if exit_stage not in (1, 2, 3):
        raise ValueError(f"a SelfCon exit goes after stage 1, 2 or 3 of 4, got {exit_stage}")
    if kind not in SUBNETS:
        raise ValueError(f"unknown sub-network {kind!r}; choose one of {SUBNETS}")
    in_channels = backbone.stage_channels[exit_stage - 1]
    if kind == "fc":
        return FCSubnetwork(in_channels, backbone.out_dim)
    stages = []
    for width, blocks in zip(backbone.widths[exit_stage:], backbone.layers[exit_stage:]):
        stages.append(make_stage(backbone.block, in_channels, width,
                                 blocks if kind == "same" else max(1, blocks // 2), stride=2))
        in_channels = width * backbone.block.expansion
    return StageSubnetwork(stages)
