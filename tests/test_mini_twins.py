"""Mini twins of the SupCon, SimCLR and SimCLR + MixCo recipes on the scikit-learn digits: their
configs keep the full recipes' loss settings and pass the pretraining dry run (fast); each recipe
runs every stage end to end on CPU with one seed (slow)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from recipe_runs import run_side_by_side

from vision_ssl.bin.pretrain import main as pretrain
from vision_ssl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
#: mini recipe -> the full config it is derived from
FULL = {"supcon": "egs/cifar100/supcon/conf/supcon_r18.yaml",
        "simclr": "egs/tinyimagenet/mixco/conf/simclr_r18.yaml",
        "simclr_mixco": "egs/tinyimagenet/mixco/conf/mixco_simclr_r18.yaml"}
#: keys the mini config must share with its full config (the method, its loss and its views)
SHARED_KEYS = ("method", "contrast", "mixco", "data.num_views", "optim.schedule", "optim.warmup")
# seed 0, 5 pretraining epochs, measured on 2 shared CPU cores (82-95 s per recipe): linear and kNN
# top-1 (%) of the backbone (chance 10 %; the recipe's own baselines, seeds 0-1: a random-init tiny
# ResNet 77.3 % linear / 89.1 % kNN, the raw pixels 95.8 % / 97.6 %)
MEASURED = {"supcon": (97.3, 97.3), "simclr": (89.3, 89.8), "simclr_mixco": (86.7, 88.0)}


def _conf(name: str) -> Path:
    return ROOT / "egs" / "mini_digits" / name / "conf" / f"{name}.yaml"


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize("name", sorted(FULL))
def test_mini_twin_config_matches_full_and_passes_check(name, tmp_path, capsys):
    mini, full = load_config(_conf(name)), load_config(ROOT / FULL[name])
    for key in SHARED_KEYS:
        assert _get(mini, key) == _get(full, key), key
    assert mini.mixco.enabled is (name == "simclr_mixco")
    assert (mini.model.backbone, mini.data.image_size, mini.trainer.accelerator) == ("tiny_resnet", 16, "cpu")
    expdir = tmp_path / "exp"
    assert pretrain(["--config", str(_conf(name)), "--expdir", str(expdir), "--check"]) == []
    assert capsys.readouterr().out.strip() == f"check: {expdir}/seed0: would start"
    assert not expdir.exists()  # a dry run writes nothing


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """The three twin recipes, one seed each, side by side (each is pinned to one thread)."""
    root = tmp_path_factory.mktemp("twins")
    commands = {name: ["bash", str(ROOT / "egs" / "mini_digits" / name / "run.sh"), "--exp_root",
                       str(root / name / "exp"), "--data_root", str(root / name / "digits"), "--seeds", "0"]
                for name in FULL}
    return root, run_side_by_side(commands, ENV, root / "logs", timeout=1200)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL))
def test_mini_twin_recipe_end_to_end(name, twin_runs):
    root, runs = twin_runs
    exp, proc = root / name / "exp", runs[name]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = exp / name
    for n in range(4):
        assert f"Stage {n}" in proc.stdout and (expdir / "logs" / f"stage{n}.log").is_file()
    table = json.loads((expdir / "results.json").read_text())
    assert table["seeds"] == ["seed0"]
    linear, knn = MEASURED[name]
    assert table["rows"]["linear top-1 (backbone)"]["mean"] > linear - 6
    assert table["rows"]["kNN top-1 (backbone)"]["mean"] > knn - 6
    assert "| linear top-1 (backbone) |" in (expdir / "results.md").read_text()
    assert list(table["baselines"]) == ["random_init", "pixels"] and table["chance"] == {"num_classes": 10, "top1": 10.0}
    for kind in ("random_init", "pixels"):
        assert table["baselines"][kind]["seeds"] == ["seed0"]
        assert set(table["baselines"][kind]["rows"]) == {"linear top-1 (backbone)", "kNN top-1 (backbone)"}
    done = json.loads((expdir / "seed0" / "pretrain_done.json").read_text())
    assert (done["method"], done["mixco"], done["epochs"]) == (load_config(_conf(name)).method, name == "simclr_mixco", 5)
    assert json.loads((expdir / "seed0" / "linear" / "result.json").read_text())["seed"] == 0
