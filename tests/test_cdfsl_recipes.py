"""The CD-FSL recipes: missing roots fail clearly, every scheme's config loads with the published
hyperparameters, and the mini twin runs every scheme end to end on the digits (slow)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from vision_ssl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
#: scheme -> method of its (last-stage) model
SCHEMES = {"sl": "sl", "ssl_simclr": "simclr", "ssl_byol": "byol", "msl_simclr": "msl", "msl_byol": "msl",
           "twostage_simclr": "simclr", "twostage_msl_simclr": "msl"}

# 5-way (1-shot, 5-shot) accuracy (%) on the digits 5-9 target over 10 episodes, linear probe,
# measured on CPU (the randomly initialised tiny ResNet of the SL config gives 32.4 / 68.8)
MEASURED = {
    "sl": (62.5, 81.6), "ssl_simclr": (59.7, 79.3), "ssl_byol": (44.3, 71.3), "msl_simclr": (71.9, 89.2),
    "msl_byol": (53.7, 80.9), "twostage_simclr": (70.8, 85.1), "twostage_msl_simclr": (69.5, 84.8),
}
#: points below MEASURED that still pass: on an AMD EPYC machine the same code and pins give sl 55.5 / 80.1 (7.0
#: below on 1-shot) and others up to 13.8 above, as these short trainings follow the CPU's floating-point kernels;
#: 10 episodes have a 95 % interval of about 4.5 points
SHOT_MARGIN = 10


def _run(recipe: str, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "egs" / recipe / "run.sh"), *args], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


def test_full_configs_hold_the_published_hyperparameters():
    conf = ROOT / "egs" / "cdfsl" / "conf"
    for name in ("sl", "simclr", "byol", "msl_simclr", "msl_byol"):
        c = load_config(conf / f"{name}.yaml")
        assert (c.model.backbone, c.data.image_size, c.data.batch_size, c.trainer.max_epochs) == \
            ("resnet10", 224, 64, 1000), name
        assert (c.optim.schedule, c.optim.milestones, c.optim.gamma) == ("multistep", [400, 600, 800], 0.1), name
        if name == "byol":  # BYOL without source labels: Adam 3e-4
            assert (c.optim.optimizer, c.optim.lr, c.optim.weight_decay) == ("adam", 3e-4, 0.0)
        else:
            assert (c.optim.optimizer, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == \
                ("sgd", 0.1, 0.9, 1e-4), name
        if "simclr" in name:
            assert (c.contrast.temperature, c.model.head_hidden, c.model.proj_dim, c.model.head_bn) == \
                (1.0, None, 128, False)
        if "byol" in name:
            assert (c.byol.hidden_dim, c.byol.out_dim, c.byol.ema) == (4096, 256, 0.99)
        if name.startswith("msl"):
            assert (c.cdfsl.gamma, c.cdfsl.gamma_schedule, c.cdfsl.source_batch_size) == (0.875, "constant", 64)
            assert (c.cdfsl.source_dataset, c.cdfsl.source_split, c.cdfsl.ssl) == ("miniimagenet", "train", name[4:])
        if name != "sl":
            assert (c.data.train_split, c.data.num_views) == ("unlabeled", 2)
    for scheme in SCHEMES:
        assert f"--schemes {scheme}" in (ROOT / "egs" / "cdfsl" / scheme / "run.sh").read_text()


def test_missing_roots_name_the_variables(tmp_path):
    env = {k: v for k, v in ENV.items() if k not in ("MINIIMAGENET", "EUROSAT")}
    proc = _run("cdfsl/msl_simclr", "--exp_root", str(tmp_path / "exp"), "--stop_stage", "0", env=env, timeout=120)
    assert proc.returncode != 0
    assert "MINIIMAGENET=<folder> in recipes/db.sh" in proc.stderr and "--source_root" in proc.stderr
    assert (tmp_path / "exp" / "msl_simclr" / "logs" / "stage0.log").is_file()
    proc = _run("cdfsl/ssl_simclr", "--exp_root", str(tmp_path / "exp"), "--stop_stage", "0", "--targets", "eurosat",
                env=env, timeout=120)
    assert proc.returncode != 0 and "EUROSAT=<folder> in recipes/db.sh" in proc.stderr
    proc = _run("cdfsl/sl", "--schemes", "sl msl", "--stop_stage", "0", timeout=60)
    assert proc.returncode != 0 and "unknown scheme 'msl'" in proc.stderr


def test_help_lists_scheme_options():
    proc = _run("mini_digits/cdfsl", "--help", timeout=60)
    assert proc.returncode == 0
    assert f'--schemes                "{" ".join(SCHEMES)}"' in proc.stdout and "--target_roots" in proc.stdout


def test_results_table_rows_and_missing_summary(tmp_path):
    from vision_ssl.bin.results import cdfsl_markdown as to_markdown
    from vision_ssl.bin.results import collect_cdfsl as collect

    for scheme, acc in (("sl", 60.0), ("msl_simclr", 70.0)):
        (tmp_path / scheme / "eurosat").mkdir(parents=True)
        results = [{"shots": k, "update": "lp", "mean": acc + k, "ci95": 0.5, "episodes": 600} for k in (5, 1)]
        (tmp_path / scheme / "eurosat" / "summary.json").write_text(json.dumps({"results": results}))
    rows = collect(tmp_path, ["msl_simclr", "sl"], ["eurosat"])
    assert [(r["scheme"], r["shots"][1]["mean"], r["shots"][5]["mean"]) for r in rows] == \
        [("msl_simclr", 71.0, 75.0), ("sl", 61.0, 65.0)]
    table = to_markdown(rows)
    assert table.splitlines()[0] == "| scheme | target | update | 1-shot | 5-shot |"
    assert "| msl_simclr | eurosat | lp | 71.00 ± 0.50 | 75.00 ± 0.50 |" in table and "600 episodes" in table
    with pytest.raises(FileNotFoundError, match=r"ssl_byol/eurosat/summary.json not found; run the few-shot stage"):
        collect(tmp_path, ["ssl_byol"], ["eurosat"])


@pytest.mark.slow
def test_mini_recipe_every_scheme_end_to_end(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    proc = _run("mini_digits/cdfsl", "--exp_root", str(exp), "--source_root", str(data / "source"),
                "--digits_target_dir", str(data / "target"), "--target_roots", f"folder={data / 'target' / 'train'}",
                "--episodes", "10")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(4):
        assert f"Stage {n}" in proc.stdout and (exp / "schemes" / "logs" / f"stage{n}.log").is_file()
    assert proc.stdout.count("pretraining already finished") == 0  # SL trained once, then reused
    for scheme, method in SCHEMES.items():
        model_dir = exp / "sl" if scheme == "sl" else exp / scheme / "folder"
        done = json.loads((model_dir / "seed0" / "pretrain_done.json").read_text())
        assert done["method"] == method and done["steps"] == (50 if scheme == "sl" else 40), scheme
    for scheme in ("twostage_simclr", "twostage_msl_simclr"):
        loaded = "backbone + classifier" if "msl" in scheme else "backbone"
        assert f"{SCHEMES[scheme]}: {loaded} initialised from {exp / 'sl'}" in proc.stdout
    rows = json.loads((exp / "schemes" / "results.json").read_text())["rows"]
    assert [(r["scheme"], r["target"], r["update"]) for r in rows] == [(s, "folder", "lp") for s in SCHEMES]
    table = (exp / "schemes" / "results.md").read_text()
    for row in rows:
        one, five = row["shots"]["1"], row["shots"]["5"]
        assert one["episodes"] == five["episodes"] == 10
        low1, low5 = MEASURED[row["scheme"]]
        assert one["mean"] > low1 - SHOT_MARGIN and five["mean"] > low5 - SHOT_MARGIN, row
        assert f"| {row['scheme']} | folder | lp | {one['mean']:.2f} ± {one['ci95']:.2f} |" in table
    baselines = json.loads((exp / "schemes" / "results.json").read_text())["baselines"]
    assert [(r["scheme"], r["update"]) for r in baselines] == [
        ("baseline: random-init network", "lp"), ("baseline: raw pixels", "lp")]
    assert "| chance (1/5) | all | – | 20.00 | 20.00 |" in table
    proc = _run("mini_digits/cdfsl", "--exp_root", str(exp), "--stage", "3")  # re-running is safe
    assert proc.returncode == 0 and (exp / "schemes" / "results.md").read_text() == table
