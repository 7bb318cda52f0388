"""Loss values of section 10 of the vision reference (float64, tolerance 1e-5)."""

from __future__ import annotations

import math

import pytest
import torch

from vision_ssl.losses import (
    mix_halves,
    mixco_loss,
    mixco_moco_loss,
    mixco_simclr_loss,
    mixco_soft_targets,
    moco_loss,
    nt_xent_loss,
    sample_mix_lambda,
    selfcon_loss,
    soft_target_cross_entropy,
    supcon_loss,
)

D64 = torch.float64
E1 = torch.tensor([1.0, 0.0], dtype=D64)
E2 = torch.tensor([0.0, 1.0], dtype=D64)


def _same(n: int, d: int = 8) -> torch.Tensor:
    return torch.ones(n, d, dtype=D64)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_identical_embeddings(tau):
    assert nt_xent_loss(_same(4), _same(4), tau).item() == pytest.approx(math.log(7), abs=1e-5)
    assert math.log(7) == pytest.approx(1.945910, abs=1e-6)


def test_nt_xent_two_images():
    z = torch.stack([E1, E2])
    assert nt_xent_loss(z, z, 1.0).item() == pytest.approx(0.551445, abs=1e-5)
    assert nt_xent_loss(z, z, 0.5).item() == pytest.approx(0.239545, abs=1e-5)


def test_mixco_moco_identical():
    n, k = 4, 8
    out = mixco_moco_loss(_same(n), _same(n), _same(k), _same(n // 2), torch.tensor([0.3, 0.9], dtype=D64),
                          temperature=0.2, tau_mix=0.05, beta=1.0)
    assert out["moco"].item() == pytest.approx(2.197225, abs=1e-5)
    assert out["mix"].item() == pytest.approx(2.484907, abs=1e-5)
    assert out["loss"].item() == pytest.approx(4.682131, abs=1e-5)


def test_mixco_moco_two_dimensional():
    q = torch.stack([E1, E2])
    queue = -q
    mixed = ((E1 + E2) / math.sqrt(2)).unsqueeze(0)
    out = mixco_moco_loss(q, q, queue, mixed, torch.tensor([0.5], dtype=D64), temperature=1.0, tau_mix=1.0)
    assert out["moco"].item() == pytest.approx(0.407606, abs=1e-5)
    assert out["mix"].item() == pytest.approx(0.910769, abs=1e-5)
    assert out["loss"].item() == pytest.approx(1.318375, abs=1e-5)
    assert moco_loss(q, q, queue, 1.0).item() == pytest.approx(-1 + math.log(math.e + 1 / math.e + 1), abs=1e-6)


def test_mixco_simclr_identical():
    lam = torch.tensor([0.2, 0.7], dtype=D64)
    out = mixco_simclr_loss(_same(4), _same(4), _same(2), _same(2), lam, lam.flip(0), temperature=0.5, tau_mix=0.5)
    assert out["loss"].item() == pytest.approx(3.332205, abs=1e-5)
    assert out["mix"].item() == pytest.approx(math.log(4), abs=1e-6)


@pytest.mark.parametrize("n,k", [(4, 8), (6, 0), (8, 16)])
def test_mixco_soft_targets_shape_and_rows(n, k):
    lam = sample_mix_lambda(n // 2).double()
    t = mixco_soft_targets(lam, n + k)
    assert t.shape == (n // 2, n + k)
    assert torch.allclose(t.sum(1), torch.ones(n // 2, dtype=D64))
    for i in range(n // 2):
        assert torch.nonzero(t[i]).flatten().tolist() == [i, i + n // 2] or lam[i] in (0, 1)
        assert t[i, i] == lam[i] and t[i, i + n // 2] == 1 - lam[i]


def test_mix_halves_and_lambda_distributions():
    x = torch.arange(8, dtype=torch.float32).view(4, 2)
    lam = torch.tensor([1.0, 0.25])
    assert torch.equal(mix_halves(x, lam), torch.tensor([[0.0, 1.0], [0.25 * 2 + 0.75 * 6, 0.25 * 3 + 0.75 * 7]]))
    torch.manual_seed(0)
    u = sample_mix_lambda(20000)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003
    b = sample_mix_lambda(20000, "beta", alpha=0.2)
    assert abs(b.mean().item() - 0.5) < 0.02 and abs(b.var().item() - 0.04 / (0.16 * 1.4)) < 0.005  # Beta variance
    with pytest.raises(ValueError, match="even batch"):
        mix_halves(x[:3], lam)
    with pytest.raises(ValueError, match="lambda distribution"):
        sample_mix_lambda(2, "gauss")


def test_soft_target_ce_reduces_to_hard_ce():
    logits = torch.randn(5, 7, dtype=D64)
    y = torch.tensor([0, 3, 6, 2, 2])
    hard = torch.nn.functional.cross_entropy(logits, y)
    one_hot = torch.nn.functional.one_hot(y, 7).double()
    assert soft_target_cross_entropy(logits, one_hot).item() == pytest.approx(hard.item())
    # lambda = 1 makes the mix term a hard CE on candidate i
    keys = torch.randn(4, 3, dtype=D64)
    mixed = torch.randn(2, 3, dtype=D64)
    one = mixco_loss(mixed, keys, torch.ones(2, dtype=D64), 0.7)
    cos = torch.nn.functional.normalize(mixed, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    assert one.item() == pytest.approx(torch.nn.functional.cross_entropy(cos / 0.7, torch.tensor([0, 1])).item())


def test_supcon_and_selfcon_all_identical():
    feats = torch.ones(4, 2, 8, dtype=D64)
    labels = torch.tensor([0, 1, 2, 3])
    assert supcon_loss(feats, labels, 0.1, 0.07).item() == pytest.approx(2.779872, abs=1e-5)
    assert supcon_loss(feats, labels, 0.1, 0.1).item() == pytest.approx(math.log(7), abs=1e-5)
    assert supcon_loss(feats, None, 0.1, 0.07).item() == pytest.approx(2.779872, abs=1e-5)
    outs = [torch.ones(4, 8, dtype=D64), torch.ones(4, 8, dtype=D64)]
    assert selfcon_loss(outs, torch.zeros(4, dtype=torch.long), 0.1, 0.07).item() == pytest.approx(2.779872, abs=1e-5)


def test_selfcon_two_images_two_exits():
    outs = [torch.stack([E1, E2]), torch.stack([E1, E2])]  # [exit, backbone]: image0 -> e1, image1 -> e2
    labels = torch.tensor([0, 1])
    assert selfcon_loss(outs, labels, 1.0, 1.0).item() == pytest.approx(0.551445, abs=1e-5)
    expected = (1 / 0.7) * (-10 + math.log(math.exp(10) + 2))
    assert selfcon_loss(outs, labels, 0.1, 0.07).item() == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(1.2971e-4, rel=1e-3)
    # equal to NT-Xent when the exit plays the second view
    assert selfcon_loss(outs, labels, 1.0, 1.0).item() == pytest.approx(nt_xent_loss(outs[0], outs[1], 1.0).item())


def test_supcon_s_drops_anchors_without_positive():
    feats = torch.stack([E1, E1, E2]).unsqueeze(1)
    assert supcon_loss(feats, torch.tensor([0, 0, 1]), 1.0, 1.0).item() == pytest.approx(0.313262, abs=1e-5)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(feats, torch.tensor([0, 1, 2]), 1.0, 1.0)


def test_selfcon_multiview_unsupervised_and_sub_anchors():
    torch.manual_seed(0)
    b, d = 3, 5
    exit_, back = torch.randn(2 * b, d, dtype=D64), torch.randn(2 * b, d, dtype=D64)
    # -MU: the two augmentations are not positives: each anchor's only positive is its other output
    mu = selfcon_loss([exit_, back], None, 0.5, 0.5)
    z = torch.nn.functional.normalize(torch.cat([exit_, back]), dim=1)
    logits = (z @ z.T / 0.5).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(2 * b) + 2 * b, torch.arange(2 * b)])
    assert mu.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())
    # sub-network anchors only: mean over the first half of the anchors
    sub = selfcon_loss([exit_, back], None, 0.5, 0.5, sub_anchors_only=True)
    per = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert sub.item() == pytest.approx(per[: 2 * b].mean().item())
    # supervised -M: labels of length B are repeated over both views
    labels = torch.tensor([0, 1, 0])
    assert selfcon_loss([exit_, back], labels).item() == pytest.approx(
        selfcon_loss([exit_, back], labels.repeat(2)).item())


def test_losses_have_finite_gradients():
    torch.manual_seed(0)
    feats = torch.randn(6, 2, 4, requires_grad=True)
    supcon_loss(feats, torch.tensor([0, 0, 1, 1, 2, 3])).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    z1, z2 = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    nt_xent_loss(z1, z2).backward()
    assert torch.isfinite(z1.grad).all()
