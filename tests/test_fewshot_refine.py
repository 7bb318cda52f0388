"""ReFine re-randomization (reference 5, 10): exactly the listed parameters, PyTorch default init
bounds, BN affine reset, running statistics and everything else untouched."""

from __future__ import annotations

import copy

import pytest
import torch

from vision_ssl.backbones import build_backbone
from vision_ssl.fewshot import default_refine_layers, rerandomize, resolve_layers

RESNET10_SET = ["layer4.0.conv2", "layer4.0.bn2", "layer4.0.downsample.0", "layer4.0.downsample.1"]


@pytest.fixture(scope="module")
def resnet10():
    torch.manual_seed(0)
    model = build_backbone("resnet10")
    with torch.no_grad():  # non-trivial BN state, as after pretraining
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model


def test_default_set_and_short_names(resnet10):
    assert default_refine_layers(resnet10) == RESNET10_SET
    assert resolve_layers(resnet10, ["4.c2", "4.b2", "4.cs", "4.bs"]) == RESNET10_SET
    assert resolve_layers(resnet10, None) == RESNET10_SET
    assert default_refine_layers(build_backbone("resnet18")) == ["layer4.1.conv2", "layer4.1.bn2"]
    assert default_refine_layers(build_backbone("resnet50"))[:2] == ["layer4.2.conv3", "layer4.2.bn3"]
    with pytest.raises(ValueError, match="not a module of the backbone"):
        resolve_layers(resnet10, ["layer9.conv"])


def test_resnet10_reset_counts_bounds_and_untouched_rest(resnet10):
    model = copy.deepcopy(resnet10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count = rerandomize(model, None, generator=torch.Generator().manual_seed(1))
    assert count == 2_492_416
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer4.0.conv2.weight", "layer4.0.bn2.weight", "layer4.0.bn2.bias",
                       "layer4.0.downsample.0.weight", "layer4.0.downsample.1.weight",
                       "layer4.0.downsample.1.bias"}
    for name, bound in (("layer4.0.conv2.weight", 0.0147314), ("layer4.0.downsample.0.weight", 0.0625)):
        w = after[name]
        assert w.abs().max().item() <= bound + 1e-7
        assert w.abs().max().item() == pytest.approx(bound, rel=1e-3)  # 131k-2.4M uniform draws reach the edge
        assert w.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.01)
    for bn in ("layer4.0.bn2", "layer4.0.downsample.1"):
        assert torch.equal(after[f"{bn}.weight"], torch.ones(512))
        assert torch.equal(after[f"{bn}.bias"], torch.zeros(512))
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(after[f"{bn}.{buf}"], before[f"{bn}.{buf}"])


def test_generator_makes_draws_reproducible_and_reinit_copies(resnet10):
    a, b = copy.deepcopy(resnet10), copy.deepcopy(resnet10)
    rerandomize(a, generator=torch.Generator().manual_seed(5))
    rerandomize(b, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.layer4[0].conv2.weight, b.layer4[0].conv2.weight)
    init = build_backbone("resnet10").state_dict()
    c = copy.deepcopy(resnet10)
    assert rerandomize(c, ["4.c2", "4.bs"], initial=init) == 2_359_296 + 1024
    assert torch.equal(c.layer4[0].conv2.weight, init["layer4.0.conv2.weight"])
    assert torch.equal(c.layer4[0].downsample[1].bias, init["layer4.0.downsample.1.bias"])
    assert torch.equal(c.layer4[0].bn2.weight, resnet10.layer4[0].bn2.weight)  # not listed: kept
