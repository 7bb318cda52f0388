"""A killed-and-resumed distillation run ends exactly where the uninterrupted one does: the data
position, the global random states and ARMHuBERT's span-mask generator are all checkpointed."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch

from audio_compress.bin.distill import Distillation
from audio_compress.tasks.config import load_config

pytestmark = pytest.mark.slow  # two tiny distillation runs, about 30 s


class _Kill(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 5:
            raise RuntimeError("simulated kill")


def _config(wave_dirs):
    train, dev = wave_dirs
    return load_config(None, [
        "method=armhubert", "student=tiny_arm", "teacher=tiny_hubert", "student_overrides={proj_dim: 64}",
        f"data.train={train}", f"data.dev={dev}", "data.max_batch_samples=48000", "data.num_workers=0",
        "trainer.precision=32-true", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_steps=8",
        "trainer.ckpt_every_n_steps=2", "trainer.val_every_n_steps=4", "trainer.log_every_n_steps=1", "optim.lr=1e-3",
    ])


def _val_losses(rundir):
    with open(rundir / "csv" / "metrics.csv", newline="") as f:
        return [(r["step"], float(r["val_loss"])) for r in csv.DictReader(f) if r.get("val_loss")]


def test_killed_armhubert_run_resumes_to_the_uninterrupted_result(wave_dirs, tmp_path):
    cfg = _config(wave_dirs)
    reference = Distillation().run(cfg, tmp_path / "reference")
    with pytest.raises(RuntimeError, match="simulated kill"):
        Distillation().run(cfg, tmp_path / "killed", callbacks=[_Kill()])
    assert torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    resumed = Distillation().run(cfg, tmp_path / "killed")
    assert resumed["steps"] == reference["steps"] == 8
    assert resumed["best_val_loss"] == reference["best_val_loss"]
    assert _val_losses(tmp_path / "killed") == _val_losses(tmp_path / "reference")
    final = torch.load(resumed["last_checkpoint"], weights_only=False)["state_dict"]
    expected = torch.load(reference["last_checkpoint"], weights_only=False)["state_dict"]
    for key, value in expected.items():
        assert torch.equal(final[key], value), key
