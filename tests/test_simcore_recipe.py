"""The SimCore recipes: options and missing roots fail clearly; the mini recipe runs every stage
end to end on the digits (+ Omniglot where the test data has it, see conftest.SHARED_DATA) on CPU (slow)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
OMNIGLOT = SHARED_DATA / "omniglot"
#: target-digit (3 / 5 / 8) images in the open set, with or without Omniglot
OPEN_SET_TARGET = 284

# measured on 2 CPU cores with Omniglot in the open set (7,067 images, 284 of the target digits
# 3 / 5 / 8, i.e. 0.040): linear top-1 (%) on the 3-class target test set (chance 33 %) and the
# share of target-class images in the coreset
# (on an AMD EPYC machine the same code and pins give 86.7, 92.6 and 94.1: these few-epoch trainings follow
# the CPU's floating-point kernels, so the test allows TOP1_MARGIN below the figures, far above chance)
MEASURED = {"top1": {"target_only": 94.8, "simcore": 94.1, "random": 94.1},
            "target_class_fraction": {"simcore": 0.269, "random": 0.040}}
# measured on 2 CPU cores without Omniglot (open set: 1,227 digits, 284 of them targets, i.e. 0.231): the
# coreset takes 1,036 of them, so no coreset can beat a 284 / 1036 = 0.274 target share; SimCore reaches
# 0.269 (279 of the 284 target images), uniform sampling 0.227 (235, the 0.844 expected of 1036 / 1227)
MEASURED_DIGITS_ONLY = {"target_recall": {"simcore": 0.982}}
#: points of top-1 below MEASURED that still pass (the spread between the two CPUs above is 8.1)
TOP1_MARGIN = 12


def _run(recipe: str, *args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "egs" / recipe / "run.sh"), *args], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


def test_help_lists_options():
    proc = _run("simcore", "--help", timeout=60)
    assert proc.returncode == 0
    assert '--coreset_conf           "conf/coreset.yaml"' in proc.stdout and "--samplers" in proc.stdout


def test_missing_roots_name_variable_and_download(tmp_path):
    env = {k: v for k, v in ENV.items() if k not in ("SIMCORE_DATA", "IMAGENET")}
    proc = _run("simcore", "--exp_root", str(tmp_path), "--stop_stage", "0", env=env, timeout=120)
    assert proc.returncode != 0
    assert "SIMCORE_DATA=<folder> in recipes/db.sh" in proc.stderr and "cub/{train,test}" in proc.stderr
    (tmp_path / "cub" / "train").mkdir(parents=True)
    proc = _run("simcore", "--exp_root", str(tmp_path), "--stop_stage", "0", "--target_root",
                str(tmp_path / "cub"), env=env, timeout=120)
    assert proc.returncode != 0 and "IMAGENET=<folder> in recipes/db.sh" in proc.stderr
    assert "ILSVRC2012" in proc.stderr


@pytest.mark.slow
def test_mini_recipe_end_to_end(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    # Omniglot joins the open set only where the test data has it; the flag overrides run.sh's own lookup
    with_omniglot = all((OMNIGLOT / f"images_background_small{i}.zip").is_file() for i in (1, 2))
    proc = _run("mini_digits/simcore", "--exp_root", str(exp), "--data_dir", str(data),
                "--omniglot", str(OMNIGLOT) if with_omniglot else "")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = exp / "digits358"
    for n in range(7):
        assert f"Stage {n}" in proc.stdout and (expdir / "logs" / f"stage{n}.log").is_file()
    mini = json.loads((data / "mini.json").read_text())
    assert mini["target_train"] == 120 and mini["open_set_target_class"] == 137 + 136 + 131 - 120 == OPEN_SET_TARGET
    assert mini["open_set"] == 1347 - 120 + (5840 if with_omniglot else 0)
    assert mini["open_set_omniglot"] == (5840 if with_omniglot else 0)
    simcore = json.loads((expdir / "coreset" / "simcore" / "summary.json").read_text())
    random = json.loads((expdir / "coreset" / "random" / "summary.json").read_text())
    assert simcore["reason"] == "stop" and simcore["stop_round"] == simcore["rounds"] + 1 > 20
    assert random["size"] == simcore["size"] and random["epochs"] == simcore["epochs"]
    assert simcore["epochs"] == min(30, 4000 // simcore["size"])
    table = json.loads((expdir / "results.json").read_text())
    rows = table["rows"]
    assert list(rows) == ["target_only", "simcore", "random"]
    for run, top1 in MEASURED["top1"].items():
        assert rows[run]["top1"] > top1 - TOP1_MARGIN, (run, rows[run])
    # SimCore pulls the target digits out of the open set; uniform sampling gets the base rate
    base = table["open_set_target_class_fraction"]
    assert base == pytest.approx(OPEN_SET_TARGET / mini["open_set"])
    assert rows["random"]["target_class_fraction"] < 2 * base + 0.02
    if with_omniglot:
        assert rows["simcore"]["target_class_fraction"] > 3 * base
        assert rows["simcore"]["target_class_fraction"] > MEASURED["target_class_fraction"]["simcore"] - 0.1
    else:
        # digits only: the coreset holds most of the open set, so 3 x the base share is out of reach; measure
        # instead how many of the 284 target images each coreset holds (uniform: its share of the open set)
        size = simcore["size"]
        recall = {run: rows[run]["target_class_fraction"] * size / OPEN_SET_TARGET for run in ("simcore", "random")}
        uniform = size / mini["open_set"]
        assert size < 0.9 * mini["open_set"], size  # else even uniform sampling would hold 90 % of the targets
        assert recall["simcore"] > max(MEASURED_DIGITS_ONLY["target_recall"]["simcore"] - 0.05, uniform + 0.06), (
            recall, uniform)
        assert abs(recall["random"] - uniform) < 0.08, (recall, uniform)
    assert "| simcore |" in (expdir / "results.md").read_text()
    # trivial baselines, probed once per recipe run: untrained network, raw pixels, chance 1/3
    assert list(table["baselines"]) == ["random_init", "pixels"] and table["chance"]["num_classes"] == 3
    assert "| chance (1/3) | 33.33 |" in (expdir / "results.md").read_text()
    assert len((expdir / "coreset" / "simcore" / "train.tsv").read_text().splitlines()) == 120 + simcore["size"]


def test_configs_follow_reference():
    from torchvision import transforms as T

    from vision_ssl.augment import build_transform
    from vision_ssl.config import load_config
    from vision_ssl.simcore import load_coreset_config

    full = load_config(ROOT / "egs/simcore/conf/simclr_r50.yaml")
    assert (full.method, full.model.backbone, full.data.batch_size, full.contrast.temperature) == (
        "simclr", "resnet50", 512, 0.07)
    assert full.optim.nesterov and full.optim.lr == 0.1 and full.optim.eta_min_ratio == 1e-3
    assert (full.linear.lr, full.linear.epochs, full.linear.milestones, full.linear.nesterov) == (10.0, 100, [60, 80],
                                                                                                  True)
    coreset = load_coreset_config(ROOT / "egs/simcore/conf/coreset.yaml")
    assert (coreset.k, coreset.patience, coreset.threshold, coreset.budget_ratio, coreset.max_epochs,
            coreset.epoch_reference) == (100, 20, 0.95, 50, 5000, 1_281_167)
    mini = load_coreset_config(ROOT / "egs/mini_digits/simcore/conf/coreset.yaml")
    assert (mini.k, mini.patience, mini.threshold) == (10, 20, 0.95)
    steps = build_transform("simcore", 224).transforms
    assert not any(isinstance(t, T.GaussianBlur) for t in steps)  # SimCore's SimCLR: no blur
    jitter = next(t for t in steps if isinstance(t, T.RandomApply))
    assert jitter.p == 0.8 and jitter.transforms[0].brightness == pytest.approx((0.2, 1.8))
    assert jitter.transforms[0].hue == pytest.approx((-0.2, 0.2))
    assert build_transform("rrc02_flip", 224).transforms[0].scale == (0.2, 1.0)
