"""Pretraining methods (SimCLR, MoCo v2, MixCo, SupCon, SelfCon), their cross-process ordering,
the kNN monitor, the linear probe, and pretrain -> linear evaluation with crash and resume."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import vision_ssl.methods.mocov2 as mocov2_module
from vision_ssl.bin.linear_eval import LinearEvaluation
from vision_ssl.bin.pretrain import Pretraining
from vision_ssl.config import load_config
from vision_ssl.eval import knn_scores
from vision_ssl.losses import mix_halves, mixco_loss, mixco_simclr_loss, selfcon_loss
from vision_ssl.methods import MoCoV2, SelfCon, build_method, load_pretrained

TINY = ["model.backbone=tiny_resnet", "model.proj_dim=16", "moco.queue_size=24"]


def _method(method: str, *extra: str):
    torch.manual_seed(0)
    return build_method(load_config(None, [f"method={method}", *TINY, *extra]))


def _batch(views: int, n: int = 8, size: int = 16):
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1][:n])
    return [torch.randn(n, 3, size, size, generator=g) for _ in range(views)], labels


@pytest.mark.parametrize("method,extra,views,terms", [
    ("simclr", [], 2, {"loss"}),
    ("simclr", ["mixco.enabled=true", "mixco.tau_mix=0.5"], 2, {"loss", "nt_xent", "mix"}),
    ("mocov2", [], 2, {"loss", "acc"}),
    ("mocov2", ["mixco.enabled=true"], 2, {"loss", "moco", "mix", "acc"}),
    ("supcon", [], 2, {"loss"}),
    ("supcon", ["data.num_views=1"], 1, {"loss"}),
    ("selfcon", ["data.num_views=1"], 1, {"loss"}),
    ("selfcon", ["data.num_views=2", "contrast.supervised=false"], 2, {"loss"}),
    ("selfcon", ["data.num_views=1", "selfcon.alpha=0.5", "selfcon.exits=[1, 2]", "selfcon.subnet=small"], 1,
     {"loss", "supcon", "selfcon"}),
])
def test_methods_train_one_step(method, extra, views, terms):
    model = _method(method, f"data.num_views={views}", *extra)
    x, y = _batch(views)
    out = model.compute_loss(x, y)
    assert set(out) == terms and torch.isfinite(out["loss"])
    if "mix" in out:
        base = out.get("moco", out.get("nt_xent"))
        assert out["loss"].item() == pytest.approx((base + out["mix"]).item(), rel=1e-6)
    out["loss"].backward()
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_non_finite_loss_stops_with_a_message(monkeypatch):
    model = _method("supcon")
    monkeypatch.setattr(model, "compute_loss", lambda views, labels: {"loss": torch.tensor(float("nan"))})
    with pytest.raises(RuntimeError, match="supcon: loss is nan at step 0.*lower optim.lr"):
        model.training_step(_batch(2), 0)


def test_moco_queue_and_momentum():
    model = _method("mocov2", "moco.momentum=0.9")
    assert all(not p.requires_grad for p in [*model.key_backbone.parameters(), *model.key_head.parameters()])
    q0 = next(model.backbone.parameters()).detach().clone()
    k0 = next(model.key_backbone.parameters()).detach().clone()
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)
    model.momentum_update()
    assert torch.allclose(next(model.key_backbone.parameters()), 0.9 * k0 + 0.1 * (q0 + 1.0))
    keys = torch.nn.functional.normalize(torch.randn(10, 16), dim=1)
    for _ in range(3):  # 30 keys into a 24-entry queue: wraps around
        model.enqueue(keys)
    assert model.queue_ptr.item() == 30 % 24
    assert torch.allclose(model.queue[:6], keys[4:]) and torch.allclose(model.queue[10:20], keys)
    assert torch.allclose(model.queue[20:], keys[:4])


def test_mixco_moco_mix_term_from_its_pieces(monkeypatch):
    lam = torch.tensor([0.0, 1.0, 0.5, 0.25])
    monkeypatch.setattr(mocov2_module, "sample_mix_lambda", lambda n, *a, **k: lam[:n])
    model = _method("mocov2", "mixco.enabled=true").eval()  # eval: per-sample embeddings
    x, y = _batch(2)
    queue_before = model.queue.clone()
    out = model.compute_loss(x, y)
    with torch.no_grad():  # key encoder == query encoder at init, so the momentum step leaves it unchanged
        q_mix = model.head(model.backbone(mix_halves(x[0], lam)))
        k = model.key_head(model.key_backbone(x[1]))
    assert out["mix"].item() == pytest.approx(mixco_loss(q_mix, k, lam, 0.05, queue_before).item(), rel=1e-5)
    # only the regular keys were enqueued
    assert torch.allclose(model.queue[:8], torch.nn.functional.normalize(k, dim=1), atol=1e-6)
    assert model.queue_ptr.item() == 8


class _SimulatedRanks:
    """Replays another rank's tensors so that one process computes what rank 0 of a 2-process
    run computes: all_gather returns [rank0 tensor, recorded rank1 tensor]."""

    def __init__(self, model):
        self.model, self.recorded, self.replay = model, [], None

    def __call__(self, x, sync_grads=False):
        if self.replay is None:
            self.recorded.append(x.detach().clone())
            return torch.stack([x, x])
        return torch.stack([x, self.replay.pop(0)])


def _two_rank_loss(model, batches, monkeypatch):
    gather = _SimulatedRanks(model)
    monkeypatch.setattr(type(model), "world_size", property(lambda self: 2))
    monkeypatch.setattr(model, "all_gather", gather)
    model.compute_loss(*batches[1])  # "rank 1": record what it contributes
    gather.replay = gather.recorded
    return model.compute_loss(*batches[0])


def test_simclr_mixco_global_batch_under_two_ranks(monkeypatch):
    model = _method("simclr", "mixco.enabled=true", "mixco.tau_mix=0.5", "contrast.temperature=0.5").eval()
    lams = [torch.tensor([0.2, 0.9, 0.4, 0.7]), torch.tensor([0.6, 0.1, 0.8, 0.3]),
            torch.tensor([0.5, 0.5, 0.05, 0.95]), torch.tensor([0.3, 0.3, 0.6, 0.6])]
    calls = iter([lams[2], lams[3], lams[0], lams[1]])  # rank 1 draws first in the simulation
    import vision_ssl.methods.simclr as simclr_module
    monkeypatch.setattr(simclr_module, "sample_mix_lambda", lambda *a, **k: next(calls))
    b0, b1 = _batch(2), _batch(2)
    b1 = ([v.flip(0) + 0.5 for v in b1[0]], b1[1])
    got = _two_rank_loss(model, [b0, b1], monkeypatch)
    # reference: one process with the global batch in [first halves, second halves] order
    with torch.no_grad():
        def z(x):
            return model.head(model.backbone(x))

        glob = [torch.cat([b0[0][v][:4], b1[0][v][:4], b0[0][v][4:], b1[0][v][4:]]) for v in range(2)]
        lam1, lam2 = torch.cat([lams[0], lams[2]]), torch.cat([lams[1], lams[3]])
        want = mixco_simclr_loss(z(glob[0]), z(glob[1]), z(mix_halves(glob[0], lam1)), z(mix_halves(glob[1], lam2)),
                                 lam1, lam2, 0.5, 0.5)
    assert got["loss"].item() == pytest.approx(want["loss"].item(), rel=1e-5)
    assert got["mix"].item() == pytest.approx(want["mix"].item(), rel=1e-5)


def test_selfcon_multiview_global_batch_under_two_ranks(monkeypatch):
    model = _method("selfcon", "data.num_views=2").eval()
    b0, b1 = _batch(2, n=4), _batch(2, n=4)
    b1 = ([v + 1.0 for v in b1[0]], torch.tensor([2, 2, 1, 3]))
    got = _two_rank_loss(model, [b0, b1], monkeypatch)["loss"]
    with torch.no_grad():
        outs = [model.exit_features(torch.cat([b0[0][v], b1[0][v]])) for v in range(2)]
        z = [torch.cat([head(outs[0][i]), head(outs[1][i])]) for i, head in enumerate([*model.sub_heads, model.head])]
        want = selfcon_loss(z, torch.cat([b0[1], b1[1]]))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_selfcon_features_and_exits():
    model = _method("selfcon", "selfcon.exits=[1, 3]", "selfcon.subnet=same").eval()
    assert isinstance(model, SelfCon) and len(model.subnets) == 2 and len(model.sub_heads) == 2
    with torch.no_grad():
        feats = model.features(torch.randn(2, 3, 16, 16))
    assert set(feats) == {"backbone", "subnet"} and feats["subnet"].shape == (2, 128) == feats["backbone"].shape


def test_knn_scores_weighted_votes():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    labels = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.05]])
    s = knn_scores(q, bank, labels, num_classes=2, k=2, temperature=0.5)
    cos = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    assert s[0, 0].item() == pytest.approx(torch.exp(cos[0, 0] / 0.5).item(), rel=1e-6)
    assert s[0, 1].item() == pytest.approx(torch.exp(cos[0, 2] / 0.5).item(), rel=1e-6)
    assert knn_scores(q, bank, labels, 2, k=200).shape == (1, 2)  # k capped by the bank size


# ---- pretrain -> linear evaluation on a small ImageFolder, with a crash and resume ------------

def _image_folder(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 4)):
        for c in range(3):
            (root / split / str(c)).mkdir(parents=True, exist_ok=True)
            for j in range(n):
                img = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8)
                img[..., c] += 180  # the class is the dominant colour channel
                Image.fromarray(img).save(root / split / str(c) / f"{j}.png")
    return root


class _Crash(L.Callback):
    def __init__(self, at_epoch: int):
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("simulated crash")


@pytest.fixture
def one_thread():
    """Small convolutions on a shared 2-core machine run several times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small_config(root: Path, method: str, *extra: str):
    return load_config(None, [
        f"method={method}", *TINY, "data.dataset=imagefolder", f"data.root={root}", "data.image_size=8",
        "data.batch_size=12", "data.num_workers=0", "data.num_views=1", "data.train_aug=supcon",
        "optim.lr=0.05", "trainer.max_epochs=3", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.log_every_n_steps=1", "trainer.knn_every_n_epochs=1", "trainer.knn_k=5",
        "trainer.ckpt_every_n_epochs=2",
        "linear.epochs=3", "linear.batch_size=12", "linear.lr=0.5", "linear.milestones=[2]", "linear.train_aug=plain",
        "linear.features=[backbone, subnet]", *extra])


def test_pretrain_crash_resume_then_linear_eval(tmp_path, one_thread):
    root = _image_folder(tmp_path / "data")
    cfg = _small_config(root, "selfcon")
    expdir = tmp_path / "exp" / "seed0"
    with pytest.raises(RuntimeError, match="simulated crash"):
        Pretraining().run(cfg, expdir, callbacks=[_Crash(at_epoch=2)])
    ckpts = expdir / "checkpoints"
    first = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert first["epoch"] == 1 and (ckpts / "epoch=1.ckpt").is_file() and not list(ckpts.glob("*.tmp"))
    assert not (expdir / "pretrain_done.json").exists()
    summary = Pretraining().run(cfg, expdir)
    assert summary["epochs"] == 3 and summary["steps"] == 9 and 0 <= summary["knn_top1"] <= 100
    assert Pretraining().run(cfg, expdir) == summary  # finished: skipped
    metrics = (expdir / "csv" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "knn/top1" in metrics

    model = load_pretrained(ckpts / "last.ckpt")
    assert isinstance(model, SelfCon) and not model.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = LinearEvaluation().run(cfg, expdir / "linear")
    assert set(result["best_top1"]) == {"backbone", "subnet", "ensemble"}
    assert all(0 <= v <= 100 for v in result["best_top1"].values())
    assert result["best_top1"]["backbone"] >= result["last_top1"]["backbone"]
    assert json.loads((expdir / "linear" / "result.json").read_text()) == result
    assert LinearEvaluation().run(cfg, expdir / "linear") == result  # finished: skipped
    # the probe never touched the encoder: weights and BN running statistics are unchanged
    probe_state = torch.load(expdir / "linear" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key, value in before.items():
        assert torch.equal(probe_state[f"encoder.{key}"], value), key


def test_moco_checkpoint_roundtrip(tmp_path, one_thread):
    root = _image_folder(tmp_path / "data", per_class=4)
    cfg = _small_config(root, "mocov2", "data.num_views=2", "mixco.enabled=true", "trainer.max_epochs=1",
                        "trainer.knn_every_n_epochs=0", "linear.features=[backbone]")
    summary = Pretraining().run(cfg, tmp_path / "exp")
    assert summary["knn_top1"] is None and summary["steps"] == 1
    model = load_pretrained(tmp_path / "exp" / "checkpoints" / "last.ckpt")
    assert isinstance(model, MoCoV2) and model.queue_ptr.item() == 12
    with pytest.raises(FileNotFoundError, match="run the pretraining stage first"):
        load_pretrained(tmp_path / "nothing.ckpt")
