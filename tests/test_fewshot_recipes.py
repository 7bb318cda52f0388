"""Few-shot entry points and recipes: the fewshot_eval JSON contract, the study report, missing
target roots, and the mini fsl_update / refine recipes end to end on the digits (slow)."""

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

from vision_ssl.backbones import build_backbone

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
CDFSL_VARS = ("MINIIMAGENET", "TIEREDIMAGENET", "CROPDISEASE", "EUROSAT", "ISIC", "CHESTX", "CUB", "CARS", "PLACES",
              "PLANTAE")

# measured with the recipe defaults (15 episodes) on CPU: accuracy (%) 1-shot / 5-shot (chance 20 %)
MEASURED = {"lp": (41.1, 68.3), "ft": (50.1, 81.2), "ft_last": (47.4, 75.6), "ft_da_tta": (49.9, 79.6),
            "refine_ft": (49.3, 79.5), "refine": (60.0, 87.9)}


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in ENV.items() if k not in CDFSL_VARS}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_fewshot_eval_json_contract(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for j in range(8):
            img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
            img.save(tmp_path / "data" / f"c{c}" / f"{j}.png")
    torch.save(build_backbone("tiny_resnet").state_dict(), tmp_path / "w.pt")
    out = tmp_path / "res" / "result.json"
    proc = _run([sys.executable, "-m", "vision_ssl.bin.fewshot_eval", "--backbone", "tiny_resnet", "--weights",
                 str(tmp_path / "w.pt"), "--dataset", "folder", "--root", str(tmp_path / "data"), "--split", "all",
                 "--n_way", "3", "--shots", "1", "2", "--queries", "4", "--episodes", "3", "--update", "lp", "ft",
                 "--set", "epochs=2", "--image_size", "16", "--device", "cpu", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dataset"] == "folder" and result["checkpoint"] == str(tmp_path / "w.pt")
    assert [(r["update"], r["shots"], r["episodes"]) for r in result["results"]] == [
        ("lp", 1, 3), ("lp", 2, 3), ("ft", 1, 3), ("ft", 2, 3)]
    for r in result["results"]:
        assert len(r["per_episode"]) == 3 and r["mean"] == pytest.approx(np.mean(r["per_episode"]))
        assert r["ci95"] == pytest.approx(1.96 * np.std(r["per_episode"], ddof=1) / np.sqrt(3))
        assert all(round(a * 12 / 100, 6).is_integer() for a in r["per_episode"])  # k / 12 queries correct
    proc = _run([sys.executable, "-m", "vision_ssl.bin.fewshot_eval", "--backbone", "tiny_resnet", "--weights",
                 str(tmp_path / "w.pt"), "--dataset", "eurosat", "--root", str(tmp_path / "nowhere"),
                 "--out", str(out)])
    assert proc.returncode == 1 and "eurosat at" in proc.stderr and "EuroSAT RGB" in proc.stderr


def test_study_report_table_and_plot(tmp_path):
    from vision_ssl.bin.fsl_study import report

    for name, acc in (("eurosat", 70.0), ("isic", 40.0)):
        (tmp_path / name).mkdir()
        results = [{"update": u, "shots": k, "mean": acc + k + (5 if u == "ft" else 0), "ci95": 0.5, "episodes": 600}
                   for u in ("lp", "ft") for k in (1, 5)]
        (tmp_path / name / "summary.json").write_text(json.dumps({"dataset": name, "results": results}))
    table = report([str(tmp_path / "eurosat"), str(tmp_path / "isic")], str(tmp_path / "r.md"),
                   str(tmp_path / "p.png"))
    assert "| eurosat | ft | 76.00 ± 0.50 | 80.00 ± 0.50 |" in table and "| isic | lp | 41.00 ± 0.50 |" in table
    assert (tmp_path / "p.png").stat().st_size > 1000 and json.loads((tmp_path / "r.json").read_text())["studies"]
    with pytest.raises(FileNotFoundError, match="run 'fsl_study run"):
        report([str(tmp_path / "none")], str(tmp_path / "x.md"), None)


def test_missing_target_root_names_download_and_variable(tmp_path):
    proc = _run(["bash", str(ROOT / "egs/cdfsl/refine/run.sh"), "--exp_root", str(tmp_path), "--stop_stage", "0"])
    assert proc.returncode != 0
    assert "CROPDISEASE=<folder> in recipes/db.sh" in proc.stderr and "dataset/train/<class>" in proc.stderr
    proc = _run(["bash", str(ROOT / "egs/fsl_update/run.sh"), "--exp_root", str(tmp_path), "--stage", "1",
                 "--stop_stage", "1"])
    assert proc.returncode != 0 and "Pass --checkpoint" in proc.stderr


def test_missing_study_table_is_named(tmp_path):
    proc = _run(["bash", str(ROOT / "egs/fsl_update/run.sh"), "--exp_root", str(tmp_path), "--conf", "conf/none.yaml"])
    assert proc.returncode == 1 and "ERROR: config 'conf/none.yaml' not found (see conf/ of this recipe)" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing made before the check


@pytest.mark.slow
def test_mini_recipes_end_to_end(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "digits"
    common = ["--exp_root", str(exp), "--data_root", str(data), "--study_args", "episodes=4"]
    proc = _run(["bash", str(ROOT / "egs/mini_digits/fsl_update/run.sh"), *common])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = exp / "study"
    for n in range(4):
        assert f"Stage {n}" in proc.stdout and (expdir / "logs" / f"stage{n}.log").is_file()
    summary = json.loads((expdir / "folder" / "summary.json").read_text())
    cells = {(r["update"], r["shots"]): r for r in summary["results"]}
    assert sorted(cells) == sorted((u, k) for u in ("lp", "ft", "ft_last", "ft_da_tta") for k in (1, 5))
    for (update, k), r in cells.items():
        assert r["episodes"] == 4 and r["mean"] > MEASURED[update][k == 5] - 20, (update, k, r["mean"])
    assert cells[("ft", 5)]["mean"] > cells[("ft", 1)]["mean"]
    assert "| folder | ft |" in (expdir / "results.md").read_text()
    assert [(r["baseline"], r["update"], r["shots"]) for r in summary["baselines"]] == [
        (kind, "lp", k) for kind in ("random_init", "pixels") for k in (1, 5)]
    assert "| folder | chance (1/5) | 20.00 | 20.00 |" in (expdir / "results.md").read_text()
    assert (expdir / "accuracy_vs_shots.png").stat().st_size > 1000
    ckpt = expdir / "source" / "seed0" / "checkpoints" / "last.ckpt"
    # re-running the study skips every finished cell and reproduces the summary
    proc = _run(["bash", str(ROOT / "egs/mini_digits/fsl_update/run.sh"), *common, "--stage", "2", "--stop_stage", "2"])
    # 8 cells of the table and 4 of the baselines (random-init network, raw pixels x 2 shot counts)
    assert proc.returncode == 0 and proc.stdout.count("already finished; skipping") == 12
    assert json.loads((expdir / "folder" / "summary.json").read_text()) == summary
    # ReFine twin on the same source model (its stage 1 then only checks the file)
    proc = _run(["bash", str(ROOT / "egs/mini_digits/refine/run.sh"), *common, "--checkpoint", str(ckpt)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((exp / "refine" / "results.json").read_text())["studies"][0]["results"]
    refine = {(r["update"], r["shots"]): r["mean"] for r in results}
    assert sorted(refine) == [("ft", 1), ("ft", 5), ("refine", 1), ("refine", 5)]
    assert refine[("refine", 5)] > MEASURED["refine"][1] - 20 and refine[("ft", 5)] > MEASURED["refine_ft"][1] - 20
