"""Backbone registry: ``build_backbone(name)`` returns a :class:`~vision_ssl.backbones.resnet.ResNet`
trunk (no classifier) whose forward gives pooled features of width ``out_dim``.

=================  =====================================================  ==============
name               architecture                                           parameters
=================  =====================================================  ==============
``resnet10``       CD-FSL ResNet-10 (1 basic block per stage), ImageNet    4,905,792
``resnet18``       ResNet-18, ImageNet layout                             11,176,512
``resnet34``       ResNet-34, ImageNet layout                             21,284,672
``resnet50``       ResNet-50, ImageNet layout                             23,508,032
``*_cifar``        same depths with the CIFAR stem (3x3/1 conv, no pool)  e.g. 11,168,832
``tiny_resnet``    CIFAR stem, 1 block per stage, widths 16/32/64/128     for CPU tests
=================  =====================================================  ==============
"""

from __future__ import annotations

from torchvision.models.resnet import BasicBlock, Bottleneck

from compact_ssl.nn import count_parameters
from vision_ssl.backbones.resnet import ResNet, init_weights, make_stage
from vision_ssl.backbones.subnet import SUBNETS, build_subnetwork

_DEPTHS = {
    "resnet10": (BasicBlock, [1, 1, 1, 1]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}

BACKBONES: tuple[str, ...] = (*_DEPTHS, *(f"{n}_cifar" for n in _DEPTHS), "tiny_resnet")


def build_backbone(name: str) -> ResNet:
    """Build a registered backbone by name (see the module docstring for the list)."""
    if name == "tiny_resnet":
        return ResNet(BasicBlock, [1, 1, 1, 1], widths=(16, 32, 64, 128), stem="cifar")
    base, _, layout = name.partition("_")
    if base not in _DEPTHS or layout not in ("", "cifar"):
        raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONES)}")
    block, layers = _DEPTHS[base]
    return ResNet(block, layers, stem="cifar" if layout else "imagenet")


__all__ = ["BACKBONES", "SUBNETS", "ResNet", "build_backbone", "build_subnetwork", "count_parameters",
           "init_weights", "make_stage"]
