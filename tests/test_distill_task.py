"""Distillation wiring: config, schedule, layer mapping, the Lightning module, resume and DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import lightning as L
import pytest
import torch

from audio_compress.bin.distill import Distillation
from audio_compress.dump import dump_teacher_features
from audio_compress.methods import default_teacher_layers, get_method
from audio_compress.models import get_student_config
from audio_compress.tasks.config import load_config
from audio_compress.tasks.datamodule import DistillDataModule
from audio_compress.tasks.distill import DistillationTask, warmup_linear_decay
from audio_compress.teachers import load_teacher
from compact_ssl.training import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]


def _overrides(wave_dirs, method="star", student="tiny_star") -> list[str]:
    train, dev = wave_dirs
    return [
        f"method={method}", f"student={student}", "teacher=tiny_hubert",
        f"data.train={train}", f"data.dev={dev}", "data.max_batch_samples=64000", "data.num_workers=0",
        "trainer.precision=32-true", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.max_steps=6", "trainer.ckpt_every_n_steps=2", "trainer.val_every_n_steps=3",
        "trainer.log_every_n_steps=1", "optim.lr=1e-3",
    ]


def _config(wave_dirs, method="star", student="tiny_star", **trainer):
    overrides = _overrides(wave_dirs, method, student) + [f"trainer.{k}={v}" for k, v in trainer.items()]
    return load_config(None, overrides)


def test_warmup_linear_decay_values():
    values = [warmup_linear_decay(s, 10, 110) for s in (0, 5, 10, 60, 110, 200)]
    assert values == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    assert warmup_linear_decay(0, 0, 10) == 1.0


def test_default_teacher_layers():
    assert default_teacher_layers(12, 12) == list(range(1, 13))
    assert default_teacher_layers(3, 4) == [1, 3, 4]
    assert default_teacher_layers(2, 12) == [6, 12]


def test_config_strict_keys_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: armhubert\noptim:\n  lr: 0.005\n  betas: [0.9, 0.98]\n")
    cfg = load_config(path, ["trainer.max_steps=7", "loss.mask_prob=0.4"])
    assert (cfg.method, cfg.optim.lr, cfg.optim.betas, cfg.trainer.max_steps, cfg.loss.mask_prob) == (
        "armhubert", 0.005, (0.9, 0.98), 7, 0.4)
    cfg.save(tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    path.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        load_config(path)
    with pytest.raises(ValueError, match="unknown method"):
        load_config(None, ["method=fitnet"])


def _method(cfg, teacher_layers: int):
    return get_method(cfg.method)(cfg, get_student_config(cfg.student, **cfg.student_overrides), teacher_layers)


def test_needed_teacher_layers_per_method(wave_dirs):
    cfg = _config(wave_dirs)
    assert _method(cfg, 4).teacher_layers() == [0, 1, 3, 4]
    cfg = _config(wave_dirs, method="distilhubert", student="tiny_distil")
    assert _method(cfg, 4).teacher_layers() == [2, 3, 4]


def test_arm_projection_width_must_match_teacher(wave_dirs):
    cfg = load_config(None, ["method=armhubert", "student=tiny_arm", "student_overrides={proj_dim: 32}", "teacher=tiny_hubert"])
    with pytest.raises(ValueError, match="proj_dim=32 but the teacher is 64 wide"):
        DistillationTask(cfg)


@pytest.mark.parametrize("method,student", [("star", "tiny_star"), ("armhubert", "tiny_arm"), ("distilhubert", "tiny_distil")])
def test_each_method_gives_finite_loss_and_gradients(wave_dirs, method, student):
    task = DistillationTask(_config(wave_dirs, method=method, student=student))
    data = DistillDataModule(task.config.data)
    batch = next(iter(data.train_dataloader()))
    losses = task.compute_loss(batch, train=True)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    losses["loss"].backward()
    grads = [p.grad for p in task.student.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5])
    assert all(p.grad is None for p in task.teacher.parameters())


def test_star_attention_term_is_added(wave_dirs):
    plain = DistillationTask(_config(wave_dirs)).eval()
    with_attn = DistillationTask(load_config(None, [*_overrides(wave_dirs), "loss.attn_weight=0.5"])).eval()
    with_attn.load_state_dict(plain.state_dict())
    batch = next(iter(DistillDataModule(plain.config.data).val_dataloader()))
    with torch.no_grad():
        a = plain.compute_loss(batch, train=False)
        b = with_attn.compute_loss(batch, train=False)
    assert b["attn"] > 0
    torch.testing.assert_close(b["loss"], a["loss"] + 0.5 * b["attn"], rtol=1e-4, atol=1e-5)


def test_nonfinite_loss_stops_with_message(wave_dirs, monkeypatch):
    task = DistillationTask(_config(wave_dirs))
    batch = next(iter(DistillDataModule(task.config.data).train_dataloader()))
    monkeypatch.setattr(task, "compute_loss", lambda b, train: {"loss": torch.tensor(float("nan"))})
    with pytest.raises(NonFiniteLossError, match="non-finite training loss.*lower the learning rate"):
        task.training_step(batch, 0)


def test_checkpoint_leaves_out_teacher(wave_dirs):
    task = DistillationTask(_config(wave_dirs))
    ckpt = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(ckpt)
    assert ckpt["state_dict"] and not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    task.on_load_checkpoint(ckpt)
    task.load_state_dict(ckpt["state_dict"], strict=True)


def test_dump_targets_train_like_online(wave_dirs, tmp_path):
    """The star loss computed from dumped targets equals the online one (to fp16 rounding)."""
    cfg = _config(wave_dirs)
    teacher = load_teacher("tiny_hubert")
    layers = _method(cfg, teacher.num_layers).teacher_layers()
    dump = dump_teacher_features(teacher, cfg.data.train, tmp_path / "dump", layers, progress=False)
    cfg.data.max_batch_size = 1  # batch of one: the online teacher then sees exactly what the dump saw
    task = DistillationTask(cfg, teacher=teacher).eval()
    online_loader = DistillDataModule(replace(cfg.data, dev=cfg.data.train)).val_dataloader()
    dumped_loader = DistillDataModule(replace(cfg.data, dev=cfg.data.train, dev_dump_dir=str(dump))).val_dataloader()
    with torch.no_grad():
        for b_online, b_dumped in zip(online_loader, dumped_loader):
            assert b_online.utt_ids == b_dumped.utt_ids
            a = task.compute_loss(b_online, train=False)["loss"]
            b = task.compute_loss(b_dumped, train=False)["loss"]
            assert torch.isclose(a, b, rtol=2e-3), (a, b)


class _Interrupt(L.Callback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_final_step(wave_dirs, tmp_path):
    cfg = _config(wave_dirs)
    expdir = tmp_path / "exp"
    with pytest.raises(RuntimeError, match="simulated crash"):
        Distillation().run(cfg, expdir, callbacks=[_Interrupt(at_step=5)])
    ckpts = expdir / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 4
    assert not list(ckpts.glob("*.tmp"))
    first_step4 = torch.load(ckpts / "step=4.ckpt", weights_only=False)["state_dict"]
    last = Distillation().run(cfg, expdir)["last_checkpoint"]
    final = torch.load(last, weights_only=False)
    assert final["global_step"] == cfg.trainer.max_steps == 6
    assert (ckpts / "step=6.ckpt").is_file()
    # the resumed run started from the saved weights, not from scratch
    assert torch.equal(torch.load(ckpts / "step=4.ckpt", weights_only=False)["state_dict"]["student.encoder.layer_norm.weight"],
                       first_step4["student.encoder.layer_norm.weight"])
    metrics = (expdir / "csv" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val_loss" in metrics


@pytest.mark.slow
def test_ddp_two_processes_gloo(wave_dirs, tmp_path):
    cfg = _config(wave_dirs, strategy="ddp", devices=2, max_steps=4)
    conf = tmp_path / "ddp.yaml"
    cfg.save(conf)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "audio_compress.bin.distill", "--config", str(conf), "--expdir", str(tmp_path / "exp")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered" in proc.stderr + proc.stdout
    final = torch.load(tmp_path / "exp" / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == 4
    assert math.isfinite(float(final["callbacks"][next(k for k in final["callbacks"] if "val_loss" in k)]["best_model_score"]))


def test_init_from_teacher_copies_layers(wave_dirs):
    cfg = load_config(None, [*_overrides(wave_dirs, "distilhubert", "tiny_distil"), "init_from_teacher=true",
                             "init_teacher_layers=[3, 4]",
                             "student_overrides={pos_conv_kernel: 16, pos_conv_groups: 4}"])
    task = DistillationTask(cfg)
    teacher_layers = task.teacher.model.encoder.layers
    assert torch.equal(task.student.encoder.layers[0].fc2.weight, teacher_layers[2].feed_forward.output_dense.weight)
    assert torch.equal(task.student.encoder.layers[1].fc1.bias, teacher_layers[3].feed_forward.intermediate_dense.bias)


def test_init_from_teacher_copies_only_the_named_parts(wave_dirs):
    """A student narrower than its teacher (64 vs 128) cannot take its positional convolution, but can take its
    CNN alone; a part name that does not exist is refused."""
    overrides = [*_overrides(wave_dirs, "star", "tiny_star"), "init_from_teacher=true", "init_teacher_layers=[]"]
    with pytest.raises(ValueError, match="pos_conv"):
        DistillationTask(load_config(None, overrides), teacher=_wide_teacher())
    wide = _wide_teacher()
    task = DistillationTask(load_config(None, [*overrides, "init_teacher_parts=[conv]"]), teacher=wide)
    for ours, theirs in zip(task.student.feature_extractor.conv_layers, wide.model.feature_extractor.conv_layers):
        assert torch.equal(ours.conv.weight, theirs.conv.weight)
    with pytest.raises(ValueError, match=r"unknown parts \['layers'\]"):
        load_config(None, [*overrides, "init_teacher_parts=[conv, layers]"])


def _wide_teacher():
    from audio_compress.teachers import FrozenTeacher, get_config
    from audio_compress.teachers.configs import model_class_for

    config = get_config("tiny_hubert", hidden_size=128, intermediate_size=256)
    torch.manual_seed(5)
    return FrozenTeacher(model_class_for(config)(config))


SPEECH_CONFS = sorted([*(ROOT / "egs").glob("mini_speech/*/conf/*.yaml"), *(ROOT / "egs").glob("librispeech/*/conf/*.yaml")])


@pytest.mark.parametrize("conf", SPEECH_CONFS, ids=lambda p: str(p.relative_to(ROOT / "egs")))
def test_every_recipe_config_loads(conf):
    cfg = load_config(conf)
    from audio_compress.models import get_student_config

    get_student_config(cfg.student, **cfg.student_overrides)


def test_bf16_mixed_precision_and_accumulation_train(wave_dirs, tmp_path):
    cfg = _config(wave_dirs, precision="bf16-mixed", accumulate_grad_batches=2, max_steps=2, val_every_n_steps=4)
    last = Distillation().run(cfg, tmp_path / "exp", resume="never")["last_checkpoint"]
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 2  # optimizer steps: 4 batches with accumulation 2
    assert all(torch.isfinite(v).all() for k, v in ckpt["state_dict"].items() if k.startswith("student."))
