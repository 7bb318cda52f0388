"""Patch-Mix counts and mixing, mixed-label CE, Patch-Mix contrastive loss, class weights
(worked examples of the reference, section 9)."""

from __future__ import annotations

import math

import pytest
import torch

from audio_cls.losses import class_weights, patchmix_contrastive_loss
from audio_cls.patchmix import apply_patch_mix, draw_lambda, effective_lambda, num_swapped, plan_patch_mix
from compact_ssl.nn import mixed_label_cross_entropy


@pytest.mark.parametrize("lam,k,lam_eff", [(0.3, 663, 0.300633), (0.5, 474, 0.5), (0.9, 94, 0.900844),
                                           (0.05, 900, 0.050633)])
def test_patch_counts_per_lambda(lam, k, lam_eff):
    assert num_swapped(948, lam) == k
    assert effective_lambda(948, lam) == pytest.approx(lam_eff, abs=1e-6)
    plan = plan_patch_mix(8, (12, 79), lam, generator=torch.Generator().manual_seed(0))
    assert plan.positions.numel() == k and plan.positions.unique().numel() == k
    assert plan.lam == pytest.approx(lam_eff, abs=1e-6) and sorted(plan.perm.tolist()) == list(range(8))


def test_time_domain_counts_and_whole_columns():
    assert num_swapped(79, 0.3) == 55 and effective_lambda(79, 0.3) == pytest.approx(0.303797, abs=1e-6)
    plan = plan_patch_mix(4, (12, 79), 0.3, time_domain=True, generator=torch.Generator().manual_seed(1))
    assert plan.positions.numel() == 55 * 12 and plan.lam == pytest.approx(0.303797, abs=1e-6)
    columns = plan.positions % 79
    assert all((columns == c).sum() == 12 for c in columns.unique())  # every frequency row of each column


def test_apply_patch_mix_swaps_shared_positions_from_the_partner():
    patches = torch.randn(4, 948, 3)
    plan = plan_patch_mix(4, (12, 79), 0.7, generator=torch.Generator().manual_seed(2))
    mixed = apply_patch_mix(patches, plan)
    chosen = torch.zeros(948, dtype=torch.bool)
    chosen[plan.positions] = True
    for i in range(4):
        assert torch.equal(mixed[i, chosen], patches[plan.perm[i], chosen])
        assert torch.equal(mixed[i, ~chosen], patches[i, ~chosen])
    assert chosen.sum() == 284 and plan.lam == pytest.approx(1 - 284 / 948)


def test_draw_lambda():
    assert draw_lambda(0.0) == 1.0 and draw_lambda(-1.0) == 1.0
    torch.manual_seed(0)
    draws = torch.tensor([draw_lambda(1.0) for _ in range(4000)])
    assert 0 <= draws.min() and draws.max() <= 1 and abs(draws.mean() - 0.5) < 0.02 and abs(draws.var() - 1 / 12) < 0.01


def test_mixed_label_ce_worked_example():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    ce_a, ce_b = -math.log(math.e**2 / (math.e**2 + 3)), -math.log(1 / (math.e**2 + 3))
    assert (ce_a, ce_b) == (pytest.approx(0.340753, abs=1e-6), pytest.approx(2.340753, abs=1e-6))
    loss = mixed_label_cross_entropy(logits, torch.tensor([0]), torch.tensor([0]), 0.75)  # y_b = y_a
    assert loss.item() == pytest.approx(0.340753, abs=1e-6)
    two = torch.cat([logits, logits])
    loss = mixed_label_cross_entropy(two, torch.tensor([0, 1]), torch.tensor([1, 0]), 0.75)
    # sample 0: 0.75 CE(y=0) + 0.25 CE(y=1) = 0.840753; sample 1: 0.75 CE(y=1) + 0.25 CE(y=0)
    assert loss.item() == pytest.approx((0.840753 + (0.75 * 2.340753 + 0.25 * 0.340753)) / 2, abs=1e-6)
    # the reference fixture, twice: logits [2, 0, 0, 0] with y_a = 0, y_b = 1 and its mirror image
    mirror = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    fixture = mixed_label_cross_entropy(mirror, torch.tensor([0, 1]), torch.tensor([1, 0]), 0.75)
    assert fixture.item() == pytest.approx(0.840753, abs=1e-6)
    # uniform class weights change nothing
    weighted = mixed_label_cross_entropy(two, torch.tensor([0, 1]), torch.tensor([1, 0]), 0.75, weight=torch.ones(4))
    assert weighted.item() == pytest.approx(loss.item(), abs=1e-6)


def test_contrastive_loss_worked_examples():
    eye = torch.eye(2)
    loss = patchmix_contrastive_loss(eye, eye, torch.tensor([0, 1]), lam=1.0, temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6) == pytest.approx(0.313262, abs=1e-6)
    clean = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    perm = torch.tensor([2, 0, 1])
    loss = patchmix_contrastive_loss(mixed, clean, perm, lam=0.75, temperature=0.5)
    assert loss.item() == pytest.approx(0.990556, abs=1e-6)
    loss = patchmix_contrastive_loss(mixed, clean, perm, lam=0.75, temperature=0.5, labels=torch.tensor([0, 0, 1]),
                                     negatives="diff_label")
    assert loss.item() == pytest.approx(0.962767, abs=1e-6)
    # only the directions matter: scaling the features changes nothing
    assert patchmix_contrastive_loss(3 * mixed, 7 * clean, perm, 0.75, 0.5).item() == pytest.approx(0.990556, abs=1e-6)


def test_contrastive_loss_gradient_reaches_only_the_mixed_side_when_blocked():
    mixed = torch.randn(4, 8, requires_grad=True)
    clean = torch.randn(4, 8, requires_grad=True)
    patchmix_contrastive_loss(mixed, clean.detach(), torch.tensor([1, 2, 3, 0]), 0.6, 0.06).backward()
    assert mixed.grad.abs().sum() > 0 and clean.grad is None
    with pytest.raises(ValueError, match="needs the labels"):
        patchmix_contrastive_loss(mixed, clean, torch.arange(4), 0.5, negatives="diff_label")


def test_class_weights():
    weights = class_weights([2063, 1215, 501, 363])
    torch.testing.assert_close(weights, torch.tensor([0.0800, 0.1358, 0.3295, 0.4547]), atol=5e-5, rtol=0)
    assert weights.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="every class needs training samples"):
        class_weights([3, 0, 1, 1])
