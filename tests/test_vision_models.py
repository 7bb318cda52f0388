"""Backbones, SelfCon sub-networks and heads: exact parameter counts of section 10 of the vision
reference, output shapes, and torchvision state-dict compatibility."""

from __future__ import annotations

import pytest
import torch
import torchvision

from vision_ssl.backbones import BACKBONES, build_backbone, build_subnetwork, count_parameters
from vision_ssl.heads import ProjectionHead, linear_classifier


@pytest.mark.parametrize("name,params", [
    ("resnet10", 4_905_792), ("resnet18", 11_176_512), ("resnet18_cifar", 11_168_832),
    ("resnet34", 21_284_672), ("resnet50", 23_508_032),
])
def test_backbone_parameter_counts(name, params):
    assert count_parameters(build_backbone(name)) == params


def test_resnet10_stage_counts_and_output():
    net = build_backbone("resnet10")
    stem = sum(count_parameters(m) for m in (net.conv1, net.bn1))
    assert stem == 9_536
    assert [count_parameters(s) for s in net.stages] == [73_984, 230_144, 919_040, 3_673_088]
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 224, 224)).shape == (2, 512)
        assert net(torch.randn(1, 3, 84, 84)).shape == (1, 512)  # adaptive pooling: 84x84 works too
    # no conv bias anywhere; 1x1 conv + BN shortcut exactly where the width changes
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert [s[0].downsample is not None for s in net.stages] == [False, True, True, True]


def test_resnet10_last_block_reset_set():
    # the parameters ReFine re-randomises in ResNet-10 (block 4 without its first conv/BN)
    block = build_backbone("resnet10").layer4[0]
    parts = (block.conv2, block.bn2, block.downsample[0], block.downsample[1])
    assert sum(count_parameters(m) for m in parts) == 2_492_416
    fan_in = [m.weight[0].numel() for m in (block.conv2, block.downsample[0])]
    assert [round(f ** -0.5, 7) for f in fan_in] == [0.0147314, 0.0625]  # re-init bounds 1/sqrt(fan_in)


def test_resnet18_with_fc_counts():
    base = count_parameters(build_backbone("resnet18"))
    assert base + 512 * 1000 + 1000 == 11_689_512
    assert base + count_parameters(linear_classifier(512, 64)) == 11_209_344
    assert count_parameters(torchvision.models.resnet18()) == 11_689_512


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_strictly(name):
    sd = {k: v for k, v in getattr(torchvision.models, name)().state_dict().items() if not k.startswith("fc.")}
    build_backbone(name).load_state_dict(sd, strict=True)


def test_cifar_stem_and_stage_shapes():
    net = build_backbone("resnet18_cifar").eval()
    assert isinstance(net.maxpool, torch.nn.Identity) and net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    with torch.no_grad():
        maps = net.forward_stages(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert net.stage_channels == [64, 128, 256, 512] and net.out_dim == 512
    assert build_backbone("resnet50_cifar").out_dim == 2048


@pytest.mark.parametrize("kind,exit_stage,params", [
    ("fc", 2, 66_048), ("fc", 1, 33_280), ("fc", 3, 131_584), ("same", 2, 10_493_440), ("small", 2, 4_592_128),
])
def test_selfcon_subnetwork_counts(kind, exit_stage, params):
    backbone = build_backbone("resnet18_cifar")
    sub = build_subnetwork(backbone, exit_stage, kind)
    assert count_parameters(sub) == params
    with torch.no_grad():
        fmap = backbone.forward_stages(torch.randn(2, 3, 32, 32))[exit_stage - 1]
        assert sub.eval()(fmap).shape == (2, 512)


def test_subnetwork_rejects_bad_exit():
    with pytest.raises(ValueError, match="after stage 1, 2 or 3"):
        build_subnetwork(build_backbone("tiny_resnet"), 4, "fc")
    with pytest.raises(ValueError, match="unknown sub-network"):
        build_subnetwork(build_backbone("tiny_resnet"), 2, "large")


def test_heads():
    assert count_parameters(ProjectionHead(512, 512, 128)) == 328_320
    assert count_parameters(ProjectionHead(512, 4096, 256, batch_norm=True)) == 3_158_272  # BYOL projector
    assert count_parameters(ProjectionHead(256, 4096, 256, batch_norm=True)) == 2_109_696  # BYOL predictor
    fc = linear_classifier(512, 10)
    assert abs(fc.weight.std().item() - 0.01) < 0.001 and fc.bias.abs().sum() == 0


def test_registry_lists_and_rejects():
    assert {"resnet10", "resnet18", "resnet18_cifar", "resnet50", "tiny_resnet"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'"):
        build_backbone("resnet19")
