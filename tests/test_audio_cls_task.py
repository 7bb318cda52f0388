"""Training wiring: configs, schedule, the three methods, the step-halving average, reloading."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from audio_cls.losses import class_weights
from audio_cls.tasks import IcbhiTask, load_config, load_task
from audio_cls.tasks.icbhi import _first_occurrence
from compact_ssl.nn import cosine_lr

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "egs" / "icbhi" / "patchmix" / "conf"
MINI = ROOT / "egs" / "mini_icbhi" / "patchmix" / "conf"
COUNTS = [30, 22, 15, 18]


@pytest.mark.parametrize("method", ["ce", "patchmix", "patchmix_cl"])
def test_published_configs(method):
    config = load_config(FULL / f"{method}.yaml")
    assert config.method == method
    assert (config.optim.lr, config.optim.weight_decay, config.optim.eta_min_ratio, config.optim.ma_beta) == (
        5e-5, 1e-6, 1e-3, 0.5)
    assert (config.trainer.max_epochs, config.data.batch_size, config.trainer.min_sensitivity) == (50, 8, 5.0)
    assert (config.features.desired_length, config.features.num_mel_bins, config.features.num_frames) == (8.0, 128, 798)
    assert (config.specaug.freq_mask, config.specaug.time_mask, config.specaug.prob) == (48, 160, 0.8413)
    assert (config.model.arch, config.model.init, config.model.swapped_pos_embed) == ("ast_base", "audioset", False)
    args = config.method_args
    assert (args.mix_beta, args.temperature, args.alpha, args.negative_pair, args.target_type) == (
        1.0, 0.06, 1.0, "all", "grad_block")
    assert args.weighted_ce == (method == "ce")  # only the CE script uses --weighted_loss
    # the paper protocol by default: the best epoch is chosen on the test set
    assert (config.data.val_fraction, config.data.val_seed, config.data.selected_on) == (0.0, 0, "test")
    mini = load_config(MINI / f"{method}.yaml")
    assert mini.method == method and mini.model.arch == "ast_tiny" and mini.model.init == "random"
    assert mini.data.selected_on == "test"


def test_config_is_strict(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: ce\noptim:\n  lr: 1e-4\n  warmup: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: optim: unknown keys \['warmup'\]"):
        load_config(bad)
    with pytest.raises(ValueError, match="method must be one of"):
        load_config(overrides=["method=mixup"])
    assert load_config(overrides=["optim.lr=1e-4"]).optim.lr == 1e-4
    assert load_config(overrides=["data.val_fraction=0.2"]).data.selected_on == "validation"
    with pytest.raises(ValueError, match=r"data.val_fraction must be in \[0, 1\), got 1.0"):
        load_config(overrides=["data.val_fraction=1.0"])


def test_cosine_schedule_per_epoch():
    assert cosine_lr(5e-5, 1, 50, 5e-8) == pytest.approx(4.99507e-5, rel=1e-5)
    assert cosine_lr(5e-5, 25, 50, 5e-8) == pytest.approx(2.5025e-5, rel=1e-5)
    assert cosine_lr(5e-5, 50, 50, 5e-8) == pytest.approx(5.0e-8, rel=1e-9)
    task = IcbhiTask(_config("ce"), COUNTS)
    task.config.trainer.max_epochs = 50
    task.config.optim.lr = 5e-5
    setup = task.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert setup["lr_scheduler"]["interval"] == "epoch"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4.99507e-5, rel=1e-5)  # epoch 1
    for _ in range(24):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.5025e-5, rel=1e-5)  # epoch 25


def _config(method: str, *overrides: str):
    return load_config(MINI / f"{method}.yaml", list(overrides))


def _batch(n: int = 6, frames: int = 198):
    torch.manual_seed(0)
    return torch.randn(n, frames, 128), torch.tensor([0, 1, 2, 3, 0, 1][:n]), torch.arange(n)


@pytest.mark.parametrize("method,target", [("ce", "grad_block"), ("patchmix", "grad_block"),
                                           ("patchmix_cl", "grad_block"), ("patchmix_cl", "project_flow")])
def test_each_method_trains(method, target):
    torch.manual_seed(0)
    task = IcbhiTask(_config(method, f"method_args.target_type={target}"), COUNTS)
    spec, labels, _ = _batch()
    losses = task.compute_loss(spec, labels)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert task.backbone.ast.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    if method == "patchmix_cl":
        assert set(losses) == {"loss", "ce", "cl", "lam"}
        torch.testing.assert_close(losses["loss"], losses["ce"] + losses["cl"])
        assert task.projector[0].weight.grad.abs().sum() > 0
    else:
        assert task.projector is None
    if method == "ce":
        torch.testing.assert_close(task.class_weight, class_weights(COUNTS))


@pytest.mark.parametrize("target_type,requires_grad,projected", [
    ("grad_block", False, False), ("grad_flow", True, False),
    ("project_block", False, True), ("project_flow", True, True),
])
def test_contrastive_targets(monkeypatch, target_type, requires_grad, projected):
    import audio_cls.tasks.icbhi as module

    seen = {}

    def spy(mixed, target, perm, lam, temperature, labels, negatives):
        seen.update(mixed=mixed, target=target, lam=lam, temperature=temperature, negatives=negatives)
        return module_loss(mixed, target, perm, lam, temperature, labels, negatives)

    module_loss = module.patchmix_contrastive_loss
    monkeypatch.setattr(module, "patchmix_contrastive_loss", spy)
    torch.manual_seed(0)
    task = IcbhiTask(_config("patchmix_cl", f"method_args.target_type={target_type}"), COUNTS).eval()
    spec, labels, _ = _batch()
    task.compute_loss(spec, labels)
    assert seen["target"].requires_grad == requires_grad
    assert (seen["temperature"], seen["negatives"]) == (0.06, "all") and 0.0 <= seen["lam"] <= 1.0
    with torch.no_grad():
        clean = task.backbone(spec)
        expected = task.projector(clean) if projected else clean
    torch.testing.assert_close(seen["target"].detach(), expected)


def test_projector_width_must_match_for_raw_targets():
    with pytest.raises(ValueError, match="set model.proj_dim: 64"):
        IcbhiTask(_config("patchmix_cl", "model.proj_dim=32"))
    IcbhiTask(_config("patchmix_cl", "model.proj_dim=32", "method_args.target_type=project_block"))
    with pytest.raises(ValueError, match="needs the training class counts"):
        IcbhiTask(_config("ce"))


def _one_step(ma_beta: float, tmp_path: Path) -> tuple[dict, dict, Path]:
    config = _config("ce", f"optim.ma_beta={ma_beta}", "method_args.weighted_ce=false")
    torch.manual_seed(0)
    task = IcbhiTask(config, COUNTS)
    before = {k: v.clone() for k, v in task.state_dict().items()}
    spec, labels, index = _batch()
    loader = DataLoader(TensorDataset(spec, labels, index), batch_size=6)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(task, train_dataloaders=loader)
    trainer.save_checkpoint(tmp_path / f"ma{ma_beta}.ckpt")
    return before, task.state_dict(), tmp_path / f"ma{ma_beta}.ckpt"


def test_moving_average_halves_each_step_and_checkpoint_reloads(tmp_path):
    before, plain, _ = _one_step(0.0, tmp_path)
    before_ma, halved, ckpt = _one_step(0.5, tmp_path)
    weight = "backbone.ast.layers.0.mlp.fc1.weight"
    assert torch.equal(before[weight], before_ma[weight])
    step = plain[weight] - before[weight]
    assert step.abs().max() > 1e-5
    torch.testing.assert_close(halved[weight] - before[weight], 0.5 * step, atol=1e-7, rtol=1e-4)
    task = load_task(ckpt)
    assert not task.training
    spec, _, _ = _batch()
    reference = IcbhiTask(_config("ce", "method_args.weighted_ce=false"), COUNTS).eval()
    reference.load_state_dict(halved)
    with torch.no_grad():
        torch.testing.assert_close(task(spec), reference(spec))


def test_first_occurrence_deduplicates_ddp_padding():
    index = torch.tensor([4, 0, 2, 1, 3, 0, 4])  # two ranks padded by repeating the first cycles
    unique, first = _first_occurrence(index)
    assert unique.tolist() == [0, 1, 2, 3, 4] and first.tolist() == [1, 3, 2, 4, 0]
