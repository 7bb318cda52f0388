"""Update methods: which parameters each variant trains, that the pretrained backbone is never
modified, MixUp / CutMix pairing and weights, support policies and TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from compact_ssl.nn import mixed_label_cross_entropy
from vision_ssl.backbones import build_backbone, count_parameters
from vision_ssl.fewshot import finetune_episode, update_config
from vision_ssl.fewshot.augment import SUPPORT_POLICIES, cutmix, mix_partners, mixup, support_transform, tta_logits
from vision_ssl.fewshot.update import trainable_body_parameters

NORM = ((0.5,) * 3, (0.5,) * 3)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(n)]


def test_trainable_parts_counts():
    bb = build_backbone("resnet10")
    count = lambda parts: sum(p.numel() for p in trainable_body_parameters(bb, parts))  # noqa: E731
    assert count(["full"]) == count_parameters(bb) == 4_905_792
    assert count(["head", "layer4"]) == 3_673_088
    assert count(["head", "stem"]) == 9_536
    bn = sum(m.weight.numel() * 2 for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert count(["head", "bn"]) == bn == 2 * (64 + 64 * 2 + 128 * 3 + 256 * 3 + 512 * 3)
    assert count(["head", "layer4", "bn"]) == 3_673_088 + bn - 2 * 512 * 3
    assert count(["head"]) == 0


@pytest.mark.parametrize("values", [{"parts": ["head"]}, {"parts": ["full"]}, {"parts": ["head", "bn"]},
                                    {"parts": ["full"], "refine": True},
                                    {"parts": ["head"], "augmentation": "hflip", "mix": "mixup"}])
def test_pretrained_backbone_is_never_modified(values):
    torch.manual_seed(0)
    bb = build_backbone("tiny_resnet").eval()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    imgs = _images(20)
    out = finetune_episode(bb, imgs[:5], list(range(5)), imgs[5:], [i % 5 for i in range(15)], 5,
                           update_config({**values, "epochs": 2}), 16, *NORM, np.random.default_rng(0))
    assert out.steps == 4
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())
    assert all(p.requires_grad for p in bb.parameters())


def test_update_config_validation():
    with pytest.raises(ValueError, match="must contain head"):
        update_config({"parts": ["layer4"]})
    with pytest.raises(ValueError, match="unknown keys"):
        update_config({"epoch": 3})
    with pytest.raises(ValueError, match="augmentation must be one of"):
        update_config({"augmentation": "strong"})
    assert update_config({"parts": ["head", "bn"]}).body_train and not update_config({}).body_train


def test_mix_partners():
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    rng = np.random.default_rng(0)
    both = mix_partners(labels, "both", rng)
    assert sorted(both) == list(range(9))
    within = mix_partners(labels, "within", rng)
    assert all(labels[i] == labels[j] for i, j in enumerate(within)) and sorted(within) == list(range(9))
    for seed in range(5):
        between = mix_partners(labels, "between", np.random.default_rng(seed))
        assert all(labels[i] != labels[j] for i, j in enumerate(between))
        assert sorted(between) == list(range(9))  # a class derangement pairs images one to one
    assert list(mix_partners([0, 1], "within", rng)) == [0, 1]  # 1-shot: the image itself


def test_mixup_cutmix_and_mixed_loss():
    x, x2 = torch.zeros(2, 3, 10, 10), torch.ones(2, 3, 10, 10)
    mixed, lam = mixup(x, x2, 0.3)
    assert lam == 0.3 and torch.allclose(mixed, torch.full_like(x, 0.7))
    out, lam = cutmix(x, x2, 0.75, np.random.default_rng(0))
    assert lam == pytest.approx(1.0 - out[0, 0].sum().item() / 100)  # kept area of x
    assert out[0, 0].sum().item() <= 25  # box sides sqrt(1 - 0.75) = half of 10
    logits = torch.tensor([[2.0, 0.0]])
    ce0, ce1 = np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(2.0))
    value = mixed_label_cross_entropy(logits, torch.tensor([0]), torch.tensor([1]), 0.25).item()
    assert value == pytest.approx(0.25 * ce0 + 0.75 * ce1, rel=1e-6)


def test_support_policies_and_tta():
    img = _images(1)[0]
    for policy in SUPPORT_POLICIES:
        assert support_transform(policy, 12, *NORM)(img).shape == (3, 12, 12)
    with pytest.raises(ValueError, match="unknown support augmentation"):
        support_transform("rcrop_l9", 12)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 4)).eval()
    clean = support_transform("none", 12, *NORM)
    imgs = _images(3)
    direct = model(torch.stack([clean(im) for im in imgs]))
    assert torch.allclose(tta_logits(model, imgs, clean, support_transform("base", 12, *NORM), 1), direct)
    # with a deterministic "augmentation" equal to the clean view, more views change nothing
    assert torch.allclose(tta_logits(model, imgs, clean, clean, 4), direct, atol=1e-6)
