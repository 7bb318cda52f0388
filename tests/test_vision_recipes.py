"""The vision recipes: missing dataset roots fail clearly; the mini recipes run every stage end
to end on the scikit-learn digits (slow); 2-process DDP pretraining on CPU with gloo (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from recipe_runs import run_side_by_side

from vision_ssl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# linear-evaluation top-1 (%) measured on 2 CPU cores, mean of seeds 0 and 1 (chance: 10 %;
# random-init encoders of the same recipes give about 85-86 % on the backbone feature)
MEASURED = {"selfcon": {"backbone": 94.3, "subnet": 81.6, "ensemble": 94.4, "knn": 95.3},
            "mixco": {"backbone": 90.3, "knn": 92.6}}


def _run(recipe: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "egs" / recipe / "run.sh"), *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def test_missing_dataset_root_names_download_and_variable(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "CIFAR100"}
    proc = subprocess.run(["bash", str(ROOT / "egs/cifar100/selfcon/run.sh"), "--exp_root", str(tmp_path / "exp"),
                           "--stop_stage", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "cifar-100-python" in proc.stderr and "CIFAR100=<folder> in recipes/db.sh" in proc.stderr
    assert (tmp_path / "exp" / "selfcon_s_r18" / "logs" / "stage0.log").is_file()
    proc = _run("tinyimagenet/mixco", "--exp_root", str(tmp_path / "exp"), "--data_root", str(tmp_path),
                "--stop_stage", "0", timeout=300)
    assert proc.returncode != 0 and "wnids.txt' not found" in proc.stderr + proc.stdout


def test_results_table_mean_and_std(tmp_path):
    from vision_ssl.bin.results import collect, to_markdown

    for seed, (b, e, knn) in enumerate([(70.0, 71.0, 60.0), (72.0, 75.0, None), (74.0, 76.0, 62.0)]):
        (tmp_path / f"seed{seed}" / "linear").mkdir(parents=True)
        (tmp_path / f"seed{seed}" / "linear" / "result.json").write_text(
            json.dumps({"best_top1": {"backbone": b, "ensemble": e}}))
        (tmp_path / f"seed{seed}" / "pretrain_done.json").write_text(json.dumps({"knn_top1": knn}))
    (tmp_path / "seed9").mkdir()  # unfinished seed: ignored
    table = collect(tmp_path)
    assert table["seeds"] == ["seed0", "seed1", "seed2"]
    row = table["rows"]["linear top-1 (backbone)"]
    assert row["mean"] == pytest.approx(72.0) and row["std"] == pytest.approx(2.0)  # sample std (n - 1)
    assert table["rows"]["linear top-1 (ensemble)"]["std"] == pytest.approx(2.6457513)
    assert table["rows"]["kNN top-1 (backbone)"]["values"] == [60.0, 62.0]
    assert "| linear top-1 (backbone) | 72.00 | 2.00 | 70.00, 72.00, 74.00 |" in to_markdown(table)
    with pytest.raises(FileNotFoundError, match="run the linear-evaluation stage first"):
        collect(tmp_path / "seed9")


def test_help_lists_recipe_options():
    proc = _run("mini_digits/mixco", "--help", timeout=60)
    assert proc.returncode == 0
    assert '--conf                   "conf/mixco.yaml"' in proc.stdout and "--seeds" in proc.stdout


@pytest.fixture(scope="module")
def digit_runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """The SelfCon and MixCo digit recipes, side by side (each is pinned to one thread)."""
    root = tmp_path_factory.mktemp("digit_recipes")
    commands = {method: ["bash", str(ROOT / "egs" / "mini_digits" / method / "run.sh"), "--exp_root",
                         str(root / method / "exp"), "--data_root", str(root / method / "digits")]
                for method in ("selfcon", "mixco")}
    return root, run_side_by_side(commands, ENV, root / "logs", timeout=1500)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["selfcon", "mixco"])
def test_mini_recipe_end_to_end(digit_runs, method):
    root, runs = digit_runs
    exp, data, proc = root / method / "exp", root / method / "digits", runs[method]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = exp / method
    for n in range(4):
        assert f"Stage {n}" in proc.stdout and (expdir / "logs" / f"stage{n}.log").is_file()
    table = json.loads((expdir / "results.json").read_text())
    assert table["seeds"] == ["seed0", "seed1"]
    rows = table["rows"]
    measured = MEASURED[method]
    for head in [h for h in measured if h != "knn"]:
        row = rows[f"linear top-1 ({head})"]
        assert len(row["values"]) == 2 and row["mean"] > measured[head] - 6, (head, row)
    assert rows["kNN top-1 (backbone)"]["mean"] > measured["knn"] - 6
    assert "| linear top-1 (backbone) |" in (expdir / "results.md").read_text()
    for seed in (0, 1):
        result = json.loads((expdir / f"seed{seed}" / "linear" / "result.json").read_text())
        assert result["seed"] == seed and result["method"] == ("selfcon" if method == "selfcon" else "mocov2")
        assert (expdir / f"seed{seed}" / "checkpoints" / "last.ckpt").is_file()
    if method == "selfcon":  # re-running finished stages is safe and changes nothing
        proc = _run(f"mini_digits/{method}", "--exp_root", str(exp), "--data_root", str(data), "--stage", "0")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("already finished; skipping") == 8  # 2 seeds x (pretrain, probe, 2 baselines)
        assert json.loads((expdir / "results.json").read_text()) == table


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [("mocov2", ["mixco.enabled=true"]), ("selfcon", ["data.num_views=2"])])
def test_ddp_two_processes_gloo(tmp_path, method, extra):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(2):
            (tmp_path / "data" / split / str(c)).mkdir(parents=True)
            for j in range(16):
                img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
                img.save(tmp_path / "data" / split / str(c) / f"{j}.png")
    cfg = load_config(None, [
        f"method={method}", "model.backbone=tiny_resnet", "moco.queue_size=64", "data.dataset=imagefolder",
        f"data.root={tmp_path / 'data'}", "data.image_size=8", "data.batch_size=8", "data.num_workers=0",
        "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
        "trainer.knn_every_n_epochs=1", "trainer.knn_k=5", *extra])
    conf = tmp_path / "ddp.yaml"
    cfg.save(conf)
    proc = subprocess.run([sys.executable, "-m", "vision_ssl.bin.pretrain", "--config", str(conf), "--expdir",
                           str(tmp_path / "exp")], capture_output=True, text=True, env={**ENV, "PYTHONPATH": str(ROOT)},
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "distributed_backend=gloo" in out and "All distributed processes registered" in out
    ckpt = torch.load(tmp_path / "exp" / "seed0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2  # 32 images / (2 processes x 8)
    if method == "mocov2":  # both processes' keys went into the queue: 2 steps x 2 x 8
        assert ckpt["state_dict"]["queue_ptr"].item() == 32
