"""The ICBHI recipes: the mini twin end to end on CPU (slow), re-runs and resume, and the full
recipe's message when the corpus is missing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ce", "patchmix", "patchmix_cl")
TEST_COUNTS = [63, 54, 40, 31]
#: the plumbing tests run the mini recipe on a short budget: 2 seeds, 3 epochs, no real-sample stage
SHORT = ["--seeds", "1 2", "--train_args", "trainer.max_epochs=3", "--real_samples", ""]


def _run(recipe: str, work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / f"egs/{recipe}/patchmix/run.sh"), "--corpus_root", str(work / "corpus"),
           "--datadir", str(work / "data"), "--exp_root", str(work / "exp"), "--dumpdir", str(work / "dump"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


def test_full_recipe_without_corpus_says_what_to_download(tmp_path):
    env = {**os.environ, "ICBHI": ""}
    proc = subprocess.run(["bash", str(ROOT / "egs/icbhi/patchmix/run.sh"), "--exp_root", str(tmp_path / "exp"),
                           "--stop_stage", "0"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "Download the ICBHI 2017 Respiratory Sound Database" in proc.stderr
    assert "Set ICBHI=<folder> in recipes/db.sh" in proc.stderr
    help_text = subprocess.run(["bash", str(ROOT / "egs/icbhi/patchmix/run.sh"), "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert '--seeds' in help_text and '"1 2 3 4 5"' in help_text and "--pretrained" in help_text


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("mini_icbhi")
    proc = _run("mini_icbhi", work, *SHORT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work, work / "exp" / "ast_tiny_patchmix"


def _epochs(metrics_csv: Path) -> list[dict]:
    rows = [r for r in csv.DictReader(open(metrics_csv)) if r.get("val_score")]
    return [{k: float(v) for k, v in r.items() if v} for r in rows]


@pytest.mark.slow
def test_mini_recipe_end_to_end(mini_run):
    work, exp = mini_run
    for n in range(5):
        assert (exp / "logs" / f"stage{n}.log").is_file()
    counts = json.loads((work / "data" / "counts.json").read_text())
    assert counts["counts"] == {"train": [100, 64, 59, 49], "test": TEST_COUNTS} and len(counts["renamed"]) == 33
    assert "total         272     188     460" in (exp / "logs" / "stage1.log").read_text()
    caches = sorted(p.name for p in (work / "dump" / "features").iterdir())
    assert len(caches) == 2 and caches[0].startswith("test-") and caches[1].startswith("train-")  # shared by 3 confs
    for method in METHODS:
        for seed in (1, 2):
            run = exp / method / f"seed{seed}"
            assert json.loads((run / "done.json").read_text())["epochs"] == 3
            epochs = _epochs(run / "csv" / "metrics.csv")
            assert len(epochs) == 3
            for which in ("best", "last"):
                scores = json.loads((run / "eval" / which / "scores.json").read_text())
                assert (run / "eval" / which / "confusion.png").stat().st_size > 5000
                assert scores["num_cycles"] == 188 and [sum(r) for r in scores["confusion"]] == TEST_COUNTS
                assert 0 <= scores["score"] <= 100 and scores["seed"] == seed and scores["method"] == method
            # the evaluation of best.ckpt reproduces the per-epoch test scores of the selected epoch
            selection = [e["val_score"] if e["val_se"] > 5 else -1.0 for e in epochs]
            chosen = selection.index(max(selection))
            best = json.loads((run / "eval" / "best" / "scores.json").read_text())
            assert best["epoch"] == chosen + 1
            assert best["score"] == pytest.approx(epochs[chosen]["val_score"], abs=1e-4)
            assert best["sensitivity"] == pytest.approx(epochs[chosen]["val_se"], abs=1e-4)
            last = json.loads((run / "eval" / "last" / "scores.json").read_text())
            assert last["epoch"] == 3 and last["score"] == pytest.approx(epochs[-1]["val_score"], abs=1e-4)
    results = json.loads((exp / "results.json").read_text())
    selections = {**{m: ("best", "last") for m in METHODS}, **{f"{m}_clean": ("best_val", "last") for m in METHODS}}
    assert [(r["method"], r["selection"]) for r in results] == [
        (folder, w) for folder in sorted(selections) for w in selections[folder]]  # method folders by name
    for row in results:
        assert row["seeds"] == [1, 2]
        values = row["metrics"]["score"]["values"]
        assert row["metrics"]["score"]["mean"] == pytest.approx(sum(values) / 2)
        assert row["metrics"]["score"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    table = (exp / "results.md").read_text()
    assert table.count("| ce |") == 2 and "best epoch on test (paper protocol)" in table and " ± " in table
    assert "best epoch on validation (clean protocol)" in table


@pytest.mark.slow
def test_mini_recipe_rerun_and_resume(mini_run):
    work, exp = mini_run
    proc = _run("mini_icbhi", work, *SHORT, "--stage", "3", "--stop_stage", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("already finished; skipping") == 12  # 3 methods x 2 seeds x 2 protocols
    # more epochs is a changed config: refused, naming the key, unless continued deliberately
    run = exp / "ce" / "seed1"
    more = [*SHORT, "--stage", "3", "--stop_stage", "3", "--confs", "conf/ce.yaml", "--seeds", "1",
            "--train_args", "trainer.max_epochs=4"]
    proc = _run("mini_icbhi", work, *more)
    assert proc.returncode != 0 and "trainer.max_epochs: 3 -> 4" in proc.stderr and "--resume force" in proc.stderr
    assert json.loads((run / "done.json").read_text())["epochs"] == 3
    proc = _run("mini_icbhi", work, *more, "--resume", "force")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Resuming from {run}/checkpoints/last.ckpt" in proc.stdout
    assert "trainer.max_epochs" in (run / "config_changes.yaml").read_text()
    assert json.loads((run / "done.json").read_text())["epochs"] == 4
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 4 * (272 // 8)
    assert [e["epoch"] for e in _epochs(run / "csv" / "metrics.csv")][-1] == 3
