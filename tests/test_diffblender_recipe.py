"""The DiffBlender recipes: the mini twin runs every stage end to end on CPU with tiny settings
(slow), the full COCO recipe fails clearly without its dataset, the evaluation table is right."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from safetensors import safe_open

from vision_ssl.diffblender.evaluation import to_markdown

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--base_args", "--steps 30 --vae_steps 20 --count 64 --eval_samples 8 --num_inference_steps 5",
        "--train_args", "trainer.max_steps=10 data.shapes_count=32 data.shapes_val_count=8",
        "--sample_args", "sample.num_inference_steps=5", "--num_eval", "8"]


def _run(recipe: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "egs" / recipe / "run.sh"), *args], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


def test_coco_recipe_without_dataset_names_download_and_variable(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "COCO"}
    proc = _run("coco/diffblender", "--exp_root", str(tmp_path / "exp"), "--stop_stage", "0", env=env, timeout=120)
    assert proc.returncode != 0
    assert "annotations_trainval2017.zip" in proc.stderr and "COCO=<folder> in recipes/db.sh" in proc.stderr


def test_coco_recipe_without_base_says_how_to_set_it(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "STABLE_DIFFUSION"}
    proc = _run("coco/diffblender", "--exp_root", str(tmp_path / "exp"), "--stage", "2", "--stop_stage", "2",
                env=env, timeout=120)
    assert proc.returncode != 0 and "--base <diffusers Stable Diffusion v1.4 folder" in proc.stderr + proc.stdout


def test_coco_recipe_without_inception_weights_stops_before_any_stage(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "COMPACT_SSL_FID_INCEPTION"}
    env["TORCH_HOME"] = str(tmp_path / "torch_home")  # an empty hub cache
    proc = _run("coco/diffblender", "--exp_root", str(tmp_path / "exp"), "--stage", "4", "--base", str(tmp_path),
                env=env, timeout=120)
    assert proc.returncode != 0 and "Preflight check FAILED: no stage was run" in proc.stdout + proc.stderr
    assert "recipe: --fid_inception_weights PATH, or --fid_features random" in proc.stderr
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    proc = _run("coco/diffblender", "--exp_root", str(tmp_path / "exp"), "--stage", "4", "--base", str(tmp_path),
                "--fid_inception_weights", str(weights), env=env, timeout=120)
    # the weights are found; what is missing now is the samples of stage 3
    assert proc.returncode != 0 and "fid_inception_weights" not in proc.stderr
    assert "the samples of condition set all" in proc.stderr


def test_results_table_lists_each_condition_set():
    rows = {"none": {"num_images": 4, "fid": 1.0, "box_iou": 0.1}, "box": {"num_images": 4, "fid": 1.5, "box_iou": 0.5}}
    table = to_markdown(rows)
    assert "| conditions | images | fid | box_iou |" in table
    assert "| none | 4 | 1.0000 | 0.1000 |" in table and "| box | 4 | 1.5000 | 0.5000 |" in table


@pytest.mark.slow
def test_mini_recipe_end_to_end(tmp_path):
    exp = tmp_path / "exp"
    proc = _run("mini_shapes/diffblender", "--exp_root", str(exp), *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = exp / "diffblender"
    for n in range(5):
        assert f"Stage {n}" in proc.stdout and (expdir / "logs" / f"stage{n}.log").is_file()
    assert (expdir / "data_preview.png").is_file()
    assert (expdir / "base" / "unet" / "config.json").is_file()  # the tiny base, diffusers layout
    adapter = expdir / "train" / "adapter.safetensors"
    with safe_open(str(adapter), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith(("unet.", "vae.", "text_encoder.")) for k in keys)  # adapter only
    assert json.loads((expdir / "train" / "train_done.json").read_text())["steps"] == 10
    results = json.loads((expdir / "results.json").read_text())
    assert list(results) == ["none", "box", "all"]
    assert results["none"]["modalities"] == [] and results["box"]["modalities"] == ["box"]
    for metrics in results.values():
        assert metrics["num_images"] == 8 and metrics["num_boxes"] >= 8
        assert 0.0 <= metrics["box_iou"] <= 1.0 and metrics["fid"] >= 0.0
    for name in ("none", "box", "all"):
        assert len(list((expdir / "samples" / name / "images").glob("*.png"))) == 8
        assert (expdir / "samples" / name / "grid.png").is_file()
    # re-running a finished recipe skips the trained base and adapter
    proc = _run("mini_shapes/diffblender", "--exp_root", str(exp), "--stop_stage", "2", *TINY)
    assert proc.returncode == 0 and "tiny base already trained; skipping" in proc.stdout
    assert f"{expdir / 'train'}: already finished; skipping" in proc.stdout
