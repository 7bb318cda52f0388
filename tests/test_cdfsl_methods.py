"""CD-FSL pretraining schemes (reference vision.md 4.2 / 10): BYOL loss, heads and EMA target; the
mixed-supervised loss at gamma 0 / 1 and its linear schedule; SL; the mixed source + target
batches; two-stage initialisation and checkpoint round trips."""

from __future__ import annotations

import math
from dataclasses import replace

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from compact_ssl.training import build_trainer
from vision_ssl.backbones import count_parameters
from vision_ssl.bin.pretrain import Pretraining
from vision_ssl.config import load_config
from vision_ssl.data.datamodules import PretrainDataModule
from vision_ssl.data.mixed import MixedDataModule, pretrain_datamodule
from vision_ssl.losses import byol_loss, linear_gamma, mixed_supervised_loss
from vision_ssl.methods import (
    BYOL,
    SimCLR,
    SupervisedSource,
    build_method,
    init_from_checkpoint,
    load_pretrained,
    method_class,
)
from vision_ssl.methods.cdfsl import MSLBYOL, MSLSimCLR

TINY = ["model.backbone=tiny_resnet", "byol.hidden_dim=32", "byol.out_dim=16", "data.image_size=8"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(root, classes: int, per_class: int, seed: int = 0, split: str = "train") -> None:
    """``root/split/<c>/<j>.png``: random 8x8 RGB images."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / split / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{j}.png")


def _config(*overrides: str):
    return load_config(None, [*TINY, *overrides])


# ---- pure losses ---------------------------------------------------------------------------
def test_byol_loss_values():
    e1, e2 = torch.eye(2, dtype=torch.float64)
    a = torch.stack([e1, e2])
    assert byol_loss(a, a, a, a).item() == pytest.approx(0.0, abs=1e-12)  # aligned: 0 + 0
    assert byol_loss(a, a, a.flip(0), a.flip(0)).item() == pytest.approx(4.0)  # orthogonal: 2 + 2
    assert byol_loss(a, a, -a, -a).item() == pytest.approx(8.0)  # opposite: 4 + 4
    # p1 = e1 vs t2 = (e1 + e2) (cos 1/sqrt 2), p2 = e2 vs t1 = 3 e2 (cos 1): 2 - sqrt 2 + 0
    p1, p2, t1, t2 = e1[None], e2[None], 3 * e2[None], (e1 + e2)[None]
    assert byol_loss(p1, p2, t1, t2).item() == pytest.approx(2 - math.sqrt(2), abs=1e-12)
    assert byol_loss(p2, p1, t2, t1).item() == pytest.approx(2 - math.sqrt(2), abs=1e-12)  # symmetric
    assert byol_loss(5 * p1, p2, t1, 0.1 * t2).item() == pytest.approx(2 - math.sqrt(2), abs=1e-12)  # scale-free


def test_mixed_supervised_loss_gamma_endpoints_and_linear_schedule():
    ce, ssl = torch.tensor(1.2345678, dtype=torch.float64), torch.tensor(7.654321, dtype=torch.float64)
    assert torch.equal(mixed_supervised_loss(ce, ssl, 0.0), ce)  # exactly the CE loss
    assert torch.equal(mixed_supervised_loss(ce, ssl, 1.0), ssl)  # exactly the SSL loss
    assert mixed_supervised_loss(ce, ssl, 0.875).item() == pytest.approx(0.125 * 1.2345678 + 0.875 * 7.654321)
    assert [linear_gamma(t, 5) for t in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="at least 2 optimizer steps"):
        linear_gamma(0, 1)


def test_config_checks():
    assert _config("method=msl", "cdfsl.num_classes=3").cdfsl.gamma == 0.875
    with pytest.raises(ValueError, match=r"cdfsl.gamma must lie in \[0, 1\]"):
        _config("method=msl", "cdfsl.gamma=1.5")
    with pytest.raises(ValueError, match="cdfsl.ssl must be one of"):
        _config("method=msl", "cdfsl.ssl=moco")
    with pytest.raises(ValueError, match="data.num_views: 1"):
        _config("method=sl", "data.num_views=2")
    with pytest.raises(ValueError, match="optim.optimizer must be one of"):
        _config("optim.optimizer=lamb")


# ---- BYOL ----------------------------------------------------------------------------------
def test_byol_head_sizes_and_target():
    model = build_method(load_config(None, ["method=byol", "model.backbone=resnet10"]))
    assert count_parameters(model.head) == 3_158_272  # projector 512 -> 4096 (BN) -> 256
    assert count_parameters(model.predictor) == 2_109_696  # predictor 256 -> 4096 (BN) -> 256
    assert count_parameters(model.target_backbone) == count_parameters(model.backbone) == 4_905_792
    assert count_parameters(model, trainable_only=True) == 4_905_792 + 3_158_272 + 2_109_696
    assert model.config.byol.ema == 0.99


def test_byol_ema_update_and_reset(one_thread):
    torch.manual_seed(0)
    model = BYOL(_config("method=byol"))
    with torch.no_grad():
        for p in model.target_backbone.parameters():
            p.add_(1.0)
    online = [p.clone() for p in model.backbone.parameters()]
    before = [p.clone() for p in model.target_backbone.parameters()]
    model.update_target()
    for o, t0, t in zip(online, before, model.target_backbone.parameters()):
        torch.testing.assert_close(t, 0.99 * t0 + 0.01 * o)
    model.reset_target()
    for o, t in zip(model.backbone.parameters(), model.target_backbone.parameters()):
        assert torch.equal(o, t)
    x = torch.randn(4, 3, 8, 8)
    out = model.compute_loss([x, x.flip(-1)], torch.zeros(4, dtype=torch.long))
    assert 0 < out["loss"].item() < 8 and out["loss"].requires_grad
    assert all(p.grad is None for p in model.target_backbone.parameters())
    out["loss"].backward()
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert model.predictor.net[0].weight.grad is not None


# ---- SL and MSL ----------------------------------------------------------------------------
def _copy_shared(src, dst) -> None:
    """Load ``src``'s backbone + classifier (+ head for the same SSL) into ``dst``."""
    own = dst.state_dict()
    dst.load_state_dict({k: v for k, v in src.state_dict().items() if k in own and v.shape == own[k].shape},
                        strict=False)


@pytest.mark.parametrize("ssl,ssl_class", [("simclr", SimCLR), ("byol", BYOL)])
def test_msl_gamma_zero_is_sl_and_gamma_one_is_ssl(ssl, ssl_class, one_thread):
    torch.manual_seed(0)
    base = ["method=msl", f"cdfsl.ssl={ssl}", "cdfsl.num_classes=3", "contrast.temperature=1.0"]
    x1, x2, xs = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.randn(6, 3, 8, 8)
    ys = torch.tensor([0, 1, 2, 0, 1, 2])
    msl0 = build_method(_config(*base, "cdfsl.gamma=0"))
    assert type(msl0) is (MSLSimCLR if ssl == "simclr" else MSLBYOL)
    sl = SupervisedSource(_config("method=sl", "data.num_views=1", "cdfsl.num_classes=3"))
    _copy_shared(msl0, sl)
    out = msl0.compute_loss([x1, x2, xs], ys)
    assert torch.equal(out["loss"], sl.compute_loss([xs], ys)["loss"])
    assert torch.equal(out["loss"], out["ce"]) and out["gamma"].item() == 0.0
    msl1 = build_method(_config(*base, "cdfsl.gamma=1"))
    alone = ssl_class(_config(f"method={ssl}", "contrast.temperature=1.0"))
    _copy_shared(msl1, alone)
    out = msl1.compute_loss([x1, x2, xs], ys)
    assert torch.equal(out["loss"], alone.compute_loss([x1, x2], ys)["loss"])
    assert torch.equal(out["loss"], out["ssl"])
    mid = msl1.compute_loss([x1, x2, xs], ys)
    msl1.config.cdfsl.gamma = 0.875
    mixed = msl1.compute_loss([x1, x2, xs], ys)
    torch.testing.assert_close(mixed["loss"], 0.125 * mixed["ce"] + 0.875 * mid["ssl"])


def test_sl_counts_source_classes_and_round_trips(tmp_path, one_thread):
    _images(tmp_path / "src", classes=4, per_class=8)
    _images(tmp_path / "src", classes=4, per_class=2, split="test")
    cfg = _config("method=sl", "data.num_views=1", "data.dataset=imagefolder", f"data.root={tmp_path / 'src'}",
                  "data.batch_size=8", "data.num_workers=0", "data.train_aug=plain", "trainer.max_epochs=2",
                  "trainer.accelerator=cpu", "trainer.devices=1", "trainer.knn_every_n_epochs=0",
                  "trainer.log_every_n_steps=1", "optim.schedule=multistep", "optim.lr=0.05")
    assert method_class(cfg) is SupervisedSource and isinstance(pretrain_datamodule(cfg), PretrainDataModule)
    summary = Pretraining().run(cfg, tmp_path / "exp")
    assert summary["steps"] == 8  # 32 images / 8, 2 epochs
    model = load_pretrained(summary["checkpoint"])
    assert model.config.cdfsl.num_classes == 4 and model.classifier.out_features == 4
    assert isinstance(model.head, torch.nn.Identity)
    ckpt = torch.load(summary["checkpoint"], weights_only=False)
    assert torch.equal(model.classifier.weight, ckpt["state_dict"]["classifier.weight"])


# ---- mixed batches, the linear schedule, two-stage ------------------------------------------
def test_mixed_datamodule_cycles_source_per_target_epoch(tmp_path):
    _images(tmp_path / "tgt", classes=2, per_class=8)  # 16 target images: 4 batches of 4
    _images(tmp_path / "src", classes=3, per_class=2)  # 6 source images, batches of 4: cycles
    cfg = _config("method=msl", "cdfsl.num_classes=3", "data.dataset=imagefolder", f"data.root={tmp_path / 'tgt'}",
                  "data.batch_size=4", "data.num_workers=0", f"cdfsl.source_root={tmp_path / 'src'}",
                  "cdfsl.source_batch_size=4")
    data = pretrain_datamodule(cfg)
    assert isinstance(data, MixedDataModule)
    data.setup()
    loader = data.train_dataloader()
    for _ in range(2):  # every epoch: one pass over the target, source reshuffled and cycled
        batches = list(loader)
        assert len(batches) == 4
        labels = []
        for batch, *_ in batches:
            (t1, t2), _ = batch["target"]
            (xs,), ys = batch["source"]
            assert t1.shape == t2.shape == (4, 3, 8, 8) and xs.shape == (4, 3, 8, 8)
            labels += ys.tolist()
        counts = np.bincount(labels, minlength=3)
        assert counts.sum() == 16 and counts.min() >= 4  # 16 draws = 2 full passes over 6 + 4


def test_msl_linear_gamma_over_steps_and_two_stage_init(tmp_path, one_thread):
    _images(tmp_path / "tgt", classes=2, per_class=6)
    _images(tmp_path / "src", classes=3, per_class=4)
    common = ["data.dataset=imagefolder", "data.num_workers=0", "data.train_aug=plain", "trainer.accelerator=cpu",
              "trainer.devices=1", "trainer.knn_every_n_epochs=0", "trainer.log_every_n_steps=1",
              "optim.schedule=constant", "optim.lr=0.01"]
    sl = Pretraining().run(_config("method=sl", "data.num_views=1", f"data.root={tmp_path / 'src'}", "data.batch_size=4",
                          "trainer.max_epochs=1", *common), tmp_path / "sl")
    stage1 = torch.load(sl["checkpoint"], weights_only=False)["state_dict"]
    cfg = _config("method=msl", "cdfsl.ssl=byol", "cdfsl.gamma_schedule=linear", f"data.root={tmp_path / 'tgt'}",
                  "data.batch_size=4", f"cdfsl.source_root={tmp_path / 'src'}", "cdfsl.source_batch_size=4",
                  "trainer.max_epochs=2", f"cdfsl.init_from={sl['checkpoint']}", *common)
    model = build_method(cfg)
    assert model.config.cdfsl.num_classes == 3
    for key in ("backbone.conv1.weight", "backbone.layer4.0.bn2.running_mean", "classifier.weight"):
        assert torch.equal(model.state_dict()[key], stage1[key])
    assert not torch.equal(model.target_backbone.conv1.weight, stage1["backbone.conv1.weight"])

    seen = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 0:  # the BYOL target starts from the loaded backbone
                assert torch.equal(module.target_backbone.conv1.weight, stage1["backbone.conv1.weight"])
            seen.append(module.gamma())

    trainer = build_trainer(replace(cfg.trainer, max_epochs=2, precision="32-true"), tmp_path / "msl", [],
                            callbacks=[Spy()], enable_checkpointing=False)
    trainer.fit(model, datamodule=pretrain_datamodule(cfg))
    assert trainer.global_step == 6  # 12 target images / 4 per step, 2 epochs
    assert seen == pytest.approx([t / 5 for t in range(6)])  # gamma_t = t / (T - 1)


def test_init_from_errors_and_ssl_second_stage(tmp_path):
    sl = SupervisedSource(_config("method=sl", "data.num_views=1", "cdfsl.num_classes=3"))
    path = tmp_path / "sl.ckpt"
    torch.save({"state_dict": sl.state_dict()}, path)
    simclr = SimCLR(_config("method=simclr"))
    assert init_from_checkpoint(simclr, path) == ["backbone"]  # no classifier to carry over
    assert torch.equal(simclr.backbone.layer1[0].conv1.weight, sl.backbone.layer1[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="first-stage checkpoint"):
        init_from_checkpoint(simclr, tmp_path / "missing.ckpt")
    msl = MSLSimCLR(_config("method=msl", "cdfsl.num_classes=5"))
    with pytest.raises(ValueError, match=r"shapes of \['classifier.weight', 'classifier.bias'\] differ"):
        init_from_checkpoint(msl, path)
    wide = SimCLR(load_config(None, ["method=simclr", "model.backbone=resnet10"]))
    with pytest.raises(ValueError, match=r"shapes of \['backbone.conv1.weight'"):
        init_from_checkpoint(wide, path)
    torch.save({"state_dict": {k: v for k, v in sl.state_dict().items() if k.startswith("classifier.")}}, path)
    with pytest.raises(ValueError, match="lacks backbone weights"):
        init_from_checkpoint(simclr, path)
