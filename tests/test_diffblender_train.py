"""DiffBlender adapter training through the experiment runner: the ``train`` / ``trainer`` config
split, the checks made before anything is written, and a short run on a tiny base (outputs,
skip when finished, config drift refused or recorded, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from compact_ssl.config import ConfigError
from vision_ssl.bin.diffblender import main
from vision_ssl.diffblender.config import DiffBlenderConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "egs/mini_shapes/diffblender/conf/diffblender.yaml"
COCO = ROOT / "egs/coco/diffblender/conf/diffblender_sd14.yaml"


def test_trainer_section_holds_the_lightning_settings():
    defaults = DiffBlenderConfig().trainer
    assert (defaults.precision, defaults.max_steps, defaults.max_epochs, defaults.ckpt_every_n_steps,
            defaults.grad_clip, defaults.seed) == ("bf16-mixed", 500000, -1, 1000, 1.0, 0)
    mini, coco = load_config(MINI), load_config(COCO)
    assert (mini.trainer.max_steps, mini.trainer.precision, mini.trainer.accelerator, mini.trainer.devices,
            mini.trainer.ckpt_every_n_steps) == (3000, "32-true", "cpu", 1, 200)
    assert (mini.train.lr, mini.train.warmup_steps, mini.train.timestep_sampling) == (1e-3, 50, "cubic")
    assert (coco.trainer.max_steps, coco.trainer.precision, coco.train.lr) == (500000, "bf16-mixed", 5e-5)
    # the trainer fields left the train section: an old override names the valid keys
    with pytest.raises(ConfigError, match=r"train: unknown keys \['max_steps'\]; valid keys: .*'warmup_steps'"):
        load_config(MINI, ["train.max_steps=10"])


def test_train_checks_base_and_modalities_before_writing(tmp_path, capsys):
    expdir = tmp_path / "train"
    for override, message in (("base=''", "ERROR: base is empty: set it to a diffusers Stable Diffusion folder"),
                              ("data.modalities=[box,keypoint]",
                               "ERROR: data.modalities ['keypoint'] have no encoder in adapter.modalities")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--config", str(MINI), "--expdir", str(expdir), "--set", override])
        assert exit_info.value.code == 1 and message in capsys.readouterr().err
    assert not expdir.exists()


def test_unknown_sub_command_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit"])
    assert exit_info.value.code == 2 and "invalid choice: 'fit'" in capsys.readouterr().err


def test_train_run_skip_drift_and_resume(tmp_path, capsys):
    from safetensors import safe_open

    from vision_ssl.diffblender.tiny import build_tiny_components, save_tiny_base
    from vision_ssl.diffblender.weights import read_adapter_config

    torch.set_num_threads(1)
    base = tmp_path / "base"
    save_tiny_base(build_tiny_components(tmp_path / "tok"), base)
    expdir = tmp_path / "train"
    args = ["train", "--config", str(MINI), "--expdir", str(expdir), "--set", f"base={base}",
            "--set", "data.resolution=16", "--set", "data.shapes_count=8", "--set", "data.shapes_val_count=4",
            "--set", "data.batch_size=4", "--set", "trainer.ckpt_every_n_steps=1",
            "--set", "trainer.log_every_n_steps=1"]
    assert main([*args, "--set", "trainer.max_steps=3"]) == 0
    done = json.loads((expdir / "train_done.json").read_text())
    assert done["steps"] == 3 and done["adapter"] == str(expdir / "adapter.safetensors")
    assert done["trainable_parameters"] > 0 and "train/loss" in done["metrics"]
    with safe_open(str(expdir / "adapter.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith(("unet.", "vae.", "text_encoder.")) for k in keys)  # the adapter alone
    assert list(read_adapter_config(expdir / "adapter.safetensors").modalities) == ["sketch", "box", "color"]
    assert yaml.safe_load((expdir / "config.yaml").read_text())["trainer"]["max_steps"] == 3
    last = torch.load(expdir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3 and all(k.startswith("adapter.") for k in last["state_dict"])
    assert (expdir / "csv" / "metrics.csv").is_file() and (expdir / "tensorboard").is_dir()
    capsys.readouterr()
    # finished: skipped; the sample section does not touch the weights and may change
    assert main([*args, "--set", "trainer.max_steps=3", "--set", "sample.guidance_scale=2.0"]) == 0
    assert f"{expdir}: already finished; skipping" in capsys.readouterr().out
    # more steps under the same run: refused, then continued with --resume force and recorded
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--set", "trainer.max_steps=4"])
    assert exit_info.value.code == 1 and "trainer.max_steps: 3 -> 4" in capsys.readouterr().err
    assert main([*args, "--set", "trainer.max_steps=4", "--resume", "force"]) == 0
    assert "Resuming from" in capsys.readouterr().out
    assert json.loads((expdir / "train_done.json").read_text())["steps"] == 4
    changes = yaml.safe_load((expdir / "config_changes.yaml").read_text())
    assert changes[-1]["changes"] == {"trainer.max_steps": {"old": 3, "new": 4}}
