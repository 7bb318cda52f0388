"""Fidelity to the reference implementations (reference vision.md): SelfCon-MU* / -SU* positives,
per-view forward passes of SimCLR + MixCo and BYOL, and the TTA view counts and zero head bias of
the few-shot fine-tuning. (The SimCore epoch rule is tested in test_simcore_selection.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vision_ssl.fewshot.update as update_module
import vision_ssl.methods.simclr as simclr_module
from vision_ssl.backbones import build_backbone
from vision_ssl.config import load_config
from vision_ssl.fewshot import UPDATE_PRESETS, evaluate_fewshot, finetune_episode, update_config
from vision_ssl.fewshot.augment import prefix_means, support_transform, tta_logits, tta_view_logits
from vision_ssl.fewshot.study import to_markdown
from vision_ssl.fewshot.update import new_head
from vision_ssl.losses import byol_loss, mix_halves, mixco_simclr_loss
from vision_ssl.methods import build_method


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster single-threaded than contending for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = ["model.backbone=tiny_resnet", "model.proj_dim=16", "byol.hidden_dim=32", "byol.out_dim=16"]
E = math.e


def _method(method: str, *extra: str):
    torch.manual_seed(0)
    return build_method(load_config(None, [f"method={method}", *TINY, *extra]))


def _views(n: int = 8, views: int = 2, size: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    # a different offset per view: the views' batch statistics differ, as augmented views' do
    return [torch.randn(n, 3, size, size, generator=g) + 2.0 * v for v in range(views)]


# ---- SelfCon-MU* / -SU* (reference 2.3) -------------------------------------------------------------
def _one_hot(*idx: int) -> torch.Tensor:
    return torch.eye(4)[list(idx)]


def _selfcon_loss_on(features: list[torch.Tensor], views: int, monkeypatch, *extra: str) -> dict[str, torch.Tensor]:
    """compute_loss of a SelfCon (one exit) whose [sub-network, backbone] outputs are ``features``
    (rows view-major: view 0 images, then view 1 images) and whose heads are identities."""
    model = _method("selfcon", f"data.num_views={views}", "contrast.supervised=false", *extra)
    model.head, model.sub_heads = nn.Identity(), nn.ModuleList([nn.Identity()])
    monkeypatch.setattr(model, "exit_features", lambda x: features)
    b = len(features[0]) // views
    return model.compute_loss([torch.zeros(b, 3, 16, 16)] * views, torch.zeros(b, dtype=torch.long))


# 2 images x 2 views, one exit: image 0 -> e1 (view 0), e2 (view 1); image 1 -> e3, e4; the sub-network
# and the backbone output the same vector for a given (image, view). Rows: (v0 i0, v0 i1, v1 i0, v1 i1).
MU_FEATURES = [_one_hot(0, 2, 1, 3), _one_hot(0, 2, 1, 3)]


@pytest.mark.parametrize("tau,tau_b", [(1.0, 1.0), (0.1, 0.07)])
def test_selfcon_mu_star_views_are_positives_in_the_alpha_term(monkeypatch, tau, tau_b):
    out = _selfcon_loss_on(MU_FEATURES, 2, monkeypatch, "selfcon.alpha=0.5", f"contrast.temperature={tau}",
                           f"contrast.base_temperature={tau_b}")
    # alpha term: anchor sub(i0, v0) = e1 sees 7 others, only backbone(i0, v0) = e1 aligned (logit 1/tau):
    # Z = e^(1/tau) + 6. Positives: every other output of image 0 in either view, logits (1/tau, 0, 0), so
    # the mean log-probability is (1/tau) / 3 - ln Z; all four sub anchors alike.
    selfcon = (tau / tau_b) * (math.log(math.exp(1 / tau) + 6) - (1 / tau) / 3)
    # backbone term (SimCLR-style): anchor e1 against e2, e3, e4 (all orthogonal), positive e2: ln 3
    supcon = (tau / tau_b) * math.log(3)
    assert out["selfcon"].item() == pytest.approx(selfcon, rel=1e-6)
    assert out["supcon"].item() == pytest.approx(supcon, rel=1e-6)
    assert out["loss"].item() == pytest.approx(supcon + 0.5 * selfcon, rel=1e-6)
    if tau == 1.0:
        # ln(e + 6) - 1/3; the old per-view positives (backbone(i0, v0) only) gave ln(e + 6) - 1 = 1.165421
        assert selfcon == pytest.approx(1.832088, abs=1e-6)


def test_selfcon_mu_without_alpha_keeps_the_views_apart(monkeypatch):
    # SelfCon-MU (alpha 0): the reference's identity mask over 2B rows, so an anchor's only positive is
    # the other output of its own (image, view): ln(e + 6) - 1 for all eight anchors
    out = _selfcon_loss_on(MU_FEATURES, 2, monkeypatch, "contrast.temperature=1.0", "contrast.base_temperature=1.0")
    assert out["loss"].item() == pytest.approx(math.log(E + 6) - 1, rel=1e-6)


def test_selfcon_su_star_has_only_the_alpha_term(monkeypatch):
    # one view, no labels: image 0 -> e1 (sub and backbone), image 1 -> e3. Anchor sub(i0) = e1: Z = e + 2,
    # positive backbone(i0): ln(e + 2) - 1 = 0.551445 (the NT-Xent value of reference 10). No backbone term
    # (a lone backbone anchor has no positive), as in the reference's SelfCon-SU*.
    out = _selfcon_loss_on([_one_hot(0, 2), _one_hot(0, 2)], 1, monkeypatch, "selfcon.alpha=0.5",
                           "contrast.temperature=1.0", "contrast.base_temperature=1.0")
    assert set(out) == {"loss", "selfcon"}
    assert out["selfcon"].item() == pytest.approx(0.551445, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * (math.log(E + 2) - 1), rel=1e-6)


# ---- forward passes of SimCLR + MixCo and BYOL (reference 1.2, 4.2) -------------------------------
def test_single_pass_resolution_and_validation():
    assert _method("simclr").single_pass  # CD-FSL / SimCore SimCLR: both views in one pass
    assert not _method("simclr", "mixco.enabled=true").single_pass
    assert not _method("byol").single_pass
    assert not _method("msl", "cdfsl.ssl=byol", "cdfsl.num_classes=3").single_pass
    assert _method("msl", "cdfsl.num_classes=3").single_pass
    assert _method("byol", "model.single_pass=true").single_pass
    assert not _method("simclr", "model.single_pass=false").single_pass
    with pytest.raises(ValueError, match="model.single_pass applies to simclr, byol and msl"):
        load_config(None, ["method=selfcon", "model.single_pass=false"])


def test_encode_batches_per_view_batchnorm_statistics():
    model = _method("simclr", "mixco.enabled=true").train()
    x1, x2 = _views()
    lam = torch.tensor([0.2, 0.9, 0.4, 0.7])
    batches = [x1, x2, mix_halves(x1, lam), mix_halves(x2, lam)]
    with torch.no_grad():
        separate = [model.project(b) for b in batches]
        joint = model.project(torch.cat(batches)).split([8, 8, 4, 4])
        default = model.encode_batches(model.project, batches)
        model.config.model.single_pass = True
        single = model.encode_batches(model.project, batches)
    for got, want in zip(default, separate):
        assert torch.allclose(got, want, atol=1e-6)
    for got, want in zip(single, joint):
        assert torch.allclose(got, want, atol=1e-6)
    # train-mode BatchNorm: the concatenated batch's statistics differ from each view's own
    assert max((a - b).abs().max().item() for a, b in zip(single, separate)) > 1e-3


@pytest.mark.parametrize("single_pass", [False, True])
def test_simclr_mixco_loss_per_pass(monkeypatch, single_pass):
    lams = [torch.tensor([0.2, 0.9, 0.4, 0.7]), torch.tensor([0.6, 0.1, 0.8, 0.3])]
    calls = iter(lams)
    monkeypatch.setattr(simclr_module, "sample_mix_lambda", lambda *a, **k: next(calls))
    model = _method("simclr", "mixco.enabled=true", "mixco.tau_mix=0.5", "contrast.temperature=0.5",
                    f"model.single_pass={str(single_pass).lower()}").train()
    x1, x2 = _views()
    got = model.compute_loss([x1, x2], torch.zeros(8, dtype=torch.long))
    with torch.no_grad():
        batches = [x1, x2, mix_halves(x1, lams[0]), mix_halves(x2, lams[1])]
        if single_pass:
            z = model.project(torch.cat(batches)).split([8, 8, 4, 4])
        else:
            z = [model.project(b) for b in batches]
        want = mixco_simclr_loss(*z, lams[0], lams[1], 0.5, 0.5)
    assert got["loss"].item() == pytest.approx(want["loss"].item(), rel=1e-6)
    assert got["mix"].item() == pytest.approx(want["mix"].item(), rel=1e-6)


@pytest.mark.parametrize("single_pass", [False, True])
def test_byol_loss_per_pass(single_pass):
    model = _method("byol", f"model.single_pass={str(single_pass).lower()}").train()
    x1, x2 = _views()
    got = model.compute_loss([x1, x2], torch.zeros(8, dtype=torch.long))["loss"]
    with torch.no_grad():
        if single_pass:
            p1, p2 = model.predict(torch.cat([x1, x2])).split(8)
            t1, t2 = model.target_project(torch.cat([x1, x2])).split(8)
        else:
            p1, p2 = model.predict(x1), model.predict(x2)
            t1, t2 = model.target_project(x1), model.target_project(x2)
        want = byol_loss(p1, p2, t1, t2)
        other = _method("byol", f"model.single_pass={str(not single_pass).lower()}").train()
        other.load_state_dict(model.state_dict())
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # the grouping matters for BatchNorm in train mode (backbone, projector and predictor)
    assert abs(other.compute_loss([x1, x2], torch.zeros(8, dtype=torch.long))["loss"].item() - got.item()) > 1e-4


# ---- few-shot fine-tuning: TTA view counts and the head bias (reference 5, 6.2) ---------------------
NORM = ((0.5,) * 3, (0.5,) * 3)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(n)]


def test_tta_prefix_means_equal_separate_runs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4)).eval()
    clean, augment = support_transform("none", 12, *NORM), support_transform("base", 12, *NORM)
    imgs = _images(5)
    torch.manual_seed(7)
    views = tta_view_logits(model, imgs, clean, augment, 8)
    assert views.shape == (8, 5, 4)
    means = prefix_means(views, [1, 2, 4, 8])
    # prefix mean by hand: (view 0 + view 1) / 2
    assert torch.allclose(means[2], (views[0] + views[1]) / 2, atol=1e-6)
    for n in (1, 2, 4, 8):
        torch.manual_seed(7)
        assert torch.allclose(means[n], tta_logits(model, imgs, clean, augment, n), atol=1e-6)


def test_tta_view_counts_from_one_episode_equal_separate_episodes():
    backbone = build_backbone("tiny_resnet").eval()
    imgs = _images(30)
    support, query = imgs[:10], imgs[10:]
    s_labels, q_labels = [i % 5 for i in range(10)], [i % 5 for i in range(20)]

    def run(views):
        torch.manual_seed(3)
        config = update_config({"parts": ["full"], "epochs": 2, "augmentation": "rcrop", "tta_views": views})
        return finetune_episode(backbone, support, s_labels, query, q_labels, 5, config, 16, *NORM,
                                np.random.default_rng(3))

    together = run([4, 1, 2, 8])
    assert sorted(together.tta_accuracy) == [1, 2, 4, 8] and together.accuracy == together.tta_accuracy[8]
    for n in (1, 2, 4, 8):
        alone = run(n)
        assert alone.tta_accuracy == {n: alone.accuracy}
        assert together.tta_accuracy[n] == alone.accuracy


class _Images:
    """Minimal labelled dataset for evaluate_fewshot: 6 classes x 12 random images."""

    def __init__(self) -> None:
        self.targets = [c for c in range(6) for _ in range(12)]
        self.images = _images(len(self.targets), seed=5)

    def load(self, i: int) -> Image.Image:
        return self.images[i]


def test_evaluate_reports_every_tta_count():
    torch.manual_seed(0)
    backbone, data = build_backbone("tiny_resnet").eval(), _Images()

    def run(views):
        config = update_config({"parts": ["head"], "epochs": 2, "tta_views": views, "tta_augmentation": "rcrop"})
        return evaluate_fewshot(backbone, data, config, n_way=5, shots=1, queries=5, episodes=3, image_size=16,
                                mean=NORM[0], std=NORM[1], progress=False).to_dict()

    report = run([1, 2, 4])
    assert [t["views"] for t in report["tta"]] == [1, 2, 4]
    assert report["mean"] == report["tta"][-1]["mean"]
    for entry in report["tta"]:
        alone = run(entry["views"])
        assert "tta" not in alone
        assert entry["per_episode"] == alone["per_episode"] and entry["mean"] == pytest.approx(alone["mean"])


def test_zero_head_bias_is_zero_initialised_then_trained(monkeypatch):
    torch.manual_seed(0)
    default = new_head(8, 5)
    torch.manual_seed(0)
    zeroed = new_head(8, 5, zero_bias=True)
    assert torch.equal(zeroed.bias, torch.zeros(5)) and default.bias.abs().sum() > 0
    assert torch.equal(zeroed.weight, default.weight)  # same weight draw
    assert zeroed.bias.requires_grad  # the ReFine-era code trains it (all head parameters in the optimizer)
    assert UPDATE_PRESETS["refine"]["zero_head_bias"] and not update_config({}).zero_head_bias

    heads = []

    def recording_head(*args, **kwargs):
        heads.append(new_head(*args, **kwargs))
        heads.append(heads[-1].bias.detach().clone())
        return heads[-2]

    monkeypatch.setattr(update_module, "new_head", recording_head)
    imgs = _images(20)
    finetune_episode(build_backbone("tiny_resnet").eval(), imgs[:5], list(range(5)), imgs[5:],
                     [i % 5 for i in range(15)], 5, update_config({"parts": ["full"], "epochs": 2,
                                                                    "zero_head_bias": True}),
                     16, *NORM, np.random.default_rng(0))
    head, initial_bias = heads
    assert torch.equal(initial_bias, torch.zeros(5))
    assert head.bias.abs().sum() > 0  # not frozen: fine-tuning moved it


def test_markdown_lists_every_tta_count():
    entry = {"shots": 5, "update": "ft_da_tta", "mean": 62.0, "ci95": 0.5, "episodes": 600,
             "tta": [{"views": 1, "mean": 60.0, "ci95": 0.7}, {"views": 32, "mean": 62.0, "ci95": 0.5}]}
    table = to_markdown([{"dataset": "eurosat", "results": [entry]}])
    assert "| eurosat | ft_da_tta | 62.00 ± 0.50 |" in table
    assert "| eurosat | ft_da_tta [tta 1] | 60.00 ± 0.70 |" in table
    assert "| eurosat | ft_da_tta [tta 32] | 62.00 ± 0.50 |" in table
