"""The benchmark plumbing: FLOP counting, comparison fields, the suite summary and (slow) the
``bench/gpu_suite.sh --dry-run`` wiring check, so the GPU suite cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402
import suite_summary  # noqa: E402


def test_count_flops_matmul_forward_and_backward():
    a = torch.randn(3, 5, requires_grad=True)
    b = torch.randn(5, 7)
    assert _common.count_flops(lambda: a @ b, torch.device("cpu")) == 2 * 3 * 5 * 7
    # backward of a @ b w.r.t. a alone: grad (3, 7) @ b^T (7, 5)
    assert _common.count_flops(lambda: (a @ b).sum().backward(), torch.device("cpu")) == 2 * (2 * 3 * 5 * 7)


def test_count_flops_cpu_fused_attention():
    q, k, v = (torch.randn(2, 3, 11, 8) for _ in range(3))
    flops = _common.count_flops(lambda: F.scaled_dot_product_attention(q, k, v), torch.device("cpu"))
    assert flops == 2 * (2 * 3) * 11 * 11 * (8 + 8)  # Q K^T and P V


def test_comparison_fields_hand_values():
    # the student takes 2 s against the teacher's 6 s and has 1/4 of its FLOPs
    fields = _common.comparison_fields(seconds=2.0, reference_seconds=6.0, flops=100, reference_flops=400)
    assert fields == {"ratio": 3.0, "flop_ratio": 4.0, "ratio_of_limit": 0.75}
    assert _common.flop_fields(4 * 10**12, 2.0, peak_tflops=8.0) == {
        "flops": 4 * 10**12, "tflops_achieved": 2.0, "mfu": 0.25}


def test_peak_table_by_device_name():
    assert _common.peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert _common.peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert _common.peak_tflops_for("NVIDIA H200") == 989.0
    assert _common.peak_tflops_for("Some Unknown Card") is None


def _record(what: str, **fields) -> dict:
    return {"bench": "distill_step", "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "dtype": "bf16",
            "student": "starhubert", "method": "star", "compile": False, "batch_size": 18, "max_utt_s": 15.6,
            "what": what, **fields}


def test_summary_projects_the_960h_recipe(tmp_path):
    # 200 audio-seconds per step of 0.5 s: 400 audio-h per GPU-h; the STaR recipe runs 100 epochs of 960 h.
    budget = suite_summary.recipe_budget("star", "starhubert")
    assert budget["max_epochs"] == 100
    assert suite_summary.projected_hours(400.0, 0.5, budget) == pytest.approx(100 * 960 / 400)
    distil = suite_summary.recipe_budget("distilhubert", "distilhubert")
    assert suite_summary.projected_hours(10.0, 0.5, distil) == pytest.approx(
        distil["max_steps"] * distil["accumulate"] * 0.5 / 3600)
    records = [
        _record("train_step_vs_parts", ratio=1.03, seconds=0.5),
        _record("train_audio_throughput", ratio=400.0, seconds=0.5),
        _record("train_tflops", ratio=0.31, tflops_achieved=306.6, step_peak_mem_gib=41.5),
        _record("inference_speedup", ratio=3.1, flop_ratio=3.37, ratio_of_limit=0.92, student_tflops_achieved=50.0),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    suite_summary.main([str(results), str(tmp_path / "summary.md")])
    text = (tmp_path / "summary.md").read_text()
    assert "| starhubert | star | off | 18 x 15.6 s | 0.5 | 1.03 | 307 | 0.31 | 41.5 | 400 | 240 |" in text
    assert "| starhubert | off | 3.1 | 3.37 | 0.92 | 50 |" in text


def test_summary_rejects_mixed_output(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text('{"bench": "x"}\n[distill_step] a log line\n')
    with pytest.raises(SystemExit, match="results.jsonl:2: not a JSON line"):
        suite_summary.main([str(results), str(tmp_path / "summary.md")])


@pytest.mark.slow
def test_gpu_suite_dry_run(tmp_path):
    out = tmp_path / "suite"
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    benches = {r["bench"] for r in records}
    assert benches == {"distill_step", "icbhi_step", "selfcon_cost", "simcore_select"}
    distill = [r for r in records if r["bench"] == "distill_step"]
    # 3 students x (step vs parts, throughput, tflops, inference)
    assert sorted(r["what"] for r in distill) == sorted(["train_step_vs_parts", "train_audio_throughput",
                                                         "train_tflops", "inference_speedup"] * 3)
    for r in distill:
        if r["what"] == "inference_speedup":
            assert r["flop_ratio"] > 0 and r["ratio_of_limit"] == pytest.approx(r["ratio"] / r["flop_ratio"], rel=1e-3)
        if r["what"] == "train_step_vs_parts":
            assert r["step_flops"] >= r["parts_flops"] > 0
    summary = (out / "summary.md").read_text()
    assert "## Distillation training step" in summary and "tiny_arm" in summary
