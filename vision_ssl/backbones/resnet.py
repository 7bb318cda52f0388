"""ResNets in the ImageNet layout (7x7/2 stem + max-pool) and the CIFAR layout (3x3/1 stem, no
max-pool), built from torchvision's residual blocks.

Module names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer4.1.downsample.0``,
...), so a torchvision ``resnet18``/``resnet50`` state dict without its ``fc`` loads with
``strict=True`` into the ImageNet-layout backbone of the same depth. There is no classifier: the
forward pass returns the globally average-pooled feature of the last stage.

The CD-FSL ResNet-10 is this class with one basic block per stage: its 1x1-conv + BN shortcut
where the width changes and its He-normal convolution init are exactly torchvision's. The
original pools with a fixed 7x7 window (so only 224x224 inputs work); here pooling is adaptive,
which gives the same output at 224x224 and also accepts other sizes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

Block = type[BasicBlock] | type[Bottleneck]
Stem = Literal["imagenet", "cifar"]


def make_stage(block: Block, in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """One ResNet stage: ``blocks`` residual blocks of ``width`` (output ``width * expansion``);
    the first block strides and gets a 1x1 conv + BN shortcut when the shape changes."""
    out_channels = width * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [block(in_channels, width, stride, downsample)]
    layers += [block(out_channels, width) for _ in range(blocks - 1)]
    stage = nn.Sequential(*layers)
    init_weights(stage)
    return stage


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet init: He-normal (fan-out) convolutions, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """ResNet trunk without classifier.

    Args:
        block: torchvision ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage (four stages).
        widths: base width of each stage (output channels are ``width * block.expansion``).
        stem: ``"imagenet"`` (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool) or ``"cifar"``
            (3x3 stride-1 conv, BN, ReLU, no max-pool) for 32x32 / 64x64 images.

    Attributes:
        out_dim: width of the pooled feature returned by :meth:`forward`.
        stage_channels: output channels of ``layer1`` .. ``layer4``.
    """

    def __init__(self, block: Block, layers: list[int], widths: tuple[int, ...] = (64, 128, 256, 512),
                 stem: Stem = "imagenet") -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"ResNet needs 4 stages, got layers={layers} widths={widths}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.block = block
        self.layers = list(layers)
        self.widths = tuple(widths)
        self.stem_type = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        init_weights(self)
        channels = widths[0]
        self.stage_channels: list[int] = []
        for i, (width, blocks) in enumerate(zip(widths, layers)):
            stage = make_stage(block, channels, width, blocks, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
            channels = width * block.expansion
            self.stage_channels.append(channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, layer2, layer3, layer4]``."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Feature maps after each of the four stages (the exits of a multi-exit network)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, x: Tensor) -> Tensor:
        """Pooled feature ``[B, out_dim]`` of a batch of images ``[B, 3, H, W]``."""
        return torch.flatten(self.avgpool(self.forward_stages(x)[-1]), 1)
