"""The benchmark plumbing: FLOP counting, comparison fields, the suite summary and (slow) the
``bench/gpu_suite.sh --dry-run`` wiring check, so the GPU suite cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402
import selfcon_cost  # noqa: E402
import speech_loader  # noqa: E402
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


def test_cpu_clock_leaves_out_waiting():
    def body(mark):
        time.sleep(0.05)
        mark("sleep")
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        mark("spin")
        mark("spin")  # a second mark of a region adds to it, as in time_regions

    clocked, cpu = _common.with_cpu_clock(body, warmup=1)
    wall = _common.time_regions(clocked, warmup=1, repeats=2, device=torch.device("cpu"))
    cpu = cpu()
    assert len(cpu["sleep"]) == len(cpu["spin"]) == 2  # the warm-up iteration is left out
    assert all(w >= 0.05 for w in wall["sleep"]) and all(c < 0.01 for c in cpu["sleep"])
    assert all(0.05 <= c < 0.1 for c in cpu["spin"])


def test_workers_needed_hand_values():
    # a step eating 400 audio-s/s against workers of 150 audio-s per core-s: 2.67, so 3 workers
    assert speech_loader.workers_needed(400.0, 150.0) == 3
    assert speech_loader.workers_needed(300.0, 150.0) == 2
    assert speech_loader.workers_needed(1.0, 150.0) == 1  # a GPU always needs one
    with pytest.raises(ValueError, match="positive"):
        speech_loader.workers_needed(1.0, 0.0)
    # 989 TFLOP/s at 30 % MFU over 26 GFLOP per audio-second: 296.7e12 / 26e9 = 11411.5 audio-s/s
    assert speech_loader.flop_estimated_step_rate(26e9, 989.0, 0.3) == pytest.approx(11411.54, rel=1e-6)


def test_measured_step_rates_reads_distill_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        _record("train_audio_throughput", ratio=400.0, seconds=0.5),
        _record("train_step_vs_parts", ratio=1.03, seconds=0.5),
        {"bench": "icbhi_step", "what": "train_audio_throughput", "ratio": 1.0},
    ]) + "\n\n")
    rows = speech_loader.measured_step_rates(path)
    assert [(r["student"], r["ratio"]) for r in rows] == [("starhubert", 400.0)]
    path.write_text(json.dumps(_record("train_tflops", ratio=0.3)) + "\n")
    with pytest.raises(SystemExit, match="no distill_step train_audio_throughput line"):
        speech_loader.measured_step_rates(path)


def test_write_speech_dir_lengths(tmp_path):
    import soundfile as sf

    data = _common.write_speech_dir(tmp_path / "a", [16000, 8123], fmt="WAV")
    scp = dict(line.split() for line in (data / "wav.scp").read_text().splitlines())
    assert [sf.info(scp[u]).frames for u in sorted(scp)] == [16000, 8123]
    assert (data / "utt2num_samples").read_text() == "utt00000 16000\nutt00001 8123\n"
    # 8 kHz files: utt2num_samples holds the 16 kHz length the loader returns (twice as many samples)
    other = _common.write_speech_dir(tmp_path / "b", [8000], sample_rate=8000)
    assert (other / "utt2num_samples").read_text() == "utt00000 16000\n"


def test_selfcon_anchor_fields():
    assert selfcon_cost.anchor_fields("selfcon_s", "train_step_time", 0.49) == {"anchor": 0.5, "within_anchor": True}
    assert selfcon_cost.anchor_fields("selfcon_s", "train_step_peak_memory", 0.61) == {
        "anchor": 0.6, "within_anchor": False}
    assert selfcon_cost.anchor_fields("supcon_s", "train_step_time", 0.49) == {}
    assert selfcon_cost.anchor_fields("selfcon_s", "parameters", 0.3) == {}


def test_summary_dump_and_loader_sections(tmp_path):
    common = {"bench": "dump_vs_online", "batch_size": 18, "max_utt_s": 15.6}
    records = [
        {**common, "what": "dump_fed_step", "student": "starhubert", "method": "star", "dump_fed": True,
         "ratio": 1.8, "flop_ratio": 2.0, "ratio_of_limit": 0.9, "seconds": 0.25, "reference_seconds": 0.45},
        {**common, "what": "dump_read_throughput", "student": "starhubert", "method": "star", "ratio": 5000.0,
         "mb_per_s": 900.0, "read_share_of_step": 0.4},
        {**common, "what": "dump_fed_step", "student": "armhubert", "method": "armhubert", "dump_fed": False,
         "reason": "needs the masked teacher"},
        {"bench": "speech_loader", "what": "workers_needed", "student": "starhubert", "compile": False,
         "source": "measured", "sample_rate": 16000, "step_audio_s_per_s": 2400.0, "loader_audio_s_per_core_s": 800.0,
         "ratio": 3},
        {"bench": "selfcon_cost", "measure": "train_step_time", "method": "selfcon_s", "ratio": 0.45, "anchor": 0.5,
         "within_anchor": True},
    ]
    text = suite_summary.summarize(records)
    assert "| starhubert | star | 18 x 15.6 s | 0.45 | 0.25 | 1.8 | 2 | 0.9 | 5e+03 | 900 | 0.4 |" in text
    assert "| armhubert | armhubert | not dump-fed: needs the masked teacher |" in text
    assert "| starhubert | off | measured | 16000 | 2.4e+03 | 800 | 3 |" in text
    assert "| selfcon_cost | train_step_time | selfcon_s | 0.45 | - | - | - | <= 0.5 (met) |" in text


@pytest.mark.slow
def test_gpu_suite_dry_run(tmp_path):
    out = tmp_path / "suite"
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    benches = {r["bench"] for r in records}
    assert benches == {"distill_step", "icbhi_step", "selfcon_cost", "simcore_select", "dump_vs_online",
                       "speech_loader"}
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
    for section in ("## Dump-fed vs online teacher step", "## Speech loader", "## Patch-Mix CL step"):
        assert section in summary

    dump = {(r["student"], r["what"]): r for r in records if r["bench"] == "dump_vs_online"}
    assert dump["tiny_arm", "dump_fed_step"]["dump_fed"] is False and "masked" in dump["tiny_arm", "dump_fed_step"]["reason"]
    for student in ("tiny_star", "tiny_distil"):
        step, read = dump[student, "dump_fed_step"], dump[student, "dump_read_throughput"]
        assert step["dump_fed"] and step["reference_flops"] > step["flops"] > 0  # the online step adds the teacher
        assert step["ratio_of_limit"] == pytest.approx(step["ratio"] / step["flop_ratio"], rel=1e-3)
        # 2 utterances of 1 s and 0.9 s: 49 + 44 frames of (layers x 64) fp16 values
        assert read["frames"] == 93 and read["bytes_read"] == 93 * read["layers"] * 64 * 2 == read["dump_bytes"]

    loader = [r for r in records if r["bench"] == "speech_loader"]
    assert {r["stage"] for r in loader if r["what"] == "loader_stage"} == {"decode", "decode_native", "resample",
                                                                         "bucket", "collate"}
    workers = [r for r in loader if r["what"] == "workers_needed"]
    assert len(workers) == 3 * 2  # 3 measured students x (16 kHz, 8 kHz resampled) pipelines
    throughput = {r["student"]: r["ratio"] for r in distill if r["what"] == "train_audio_throughput"}
    for r in workers:
        assert r["source"] == "measured" and r["step_audio_s_per_s"] == pytest.approx(throughput[r["student"]], abs=0.06)
        assert r["ratio"] == max(1, -(-r["step_audio_s_per_s"] // r["loader_audio_s_per_core_s"]))

    breakdown = next(r for r in records if r.get("what") == "patchmix_cl_cost_breakdown")
    parts = breakdown["parts"]
    # the second pass runs the same backbone: its FLOPs are the clean pass's less the classifier
    assert parts["mixed_forward"]["flops"] == pytest.approx(parts["clean_forward"]["flops"], rel=1e-3)
    assert parts["mixed_backward"]["flops"] == pytest.approx(parts["clean_backward"]["flops"], rel=1e-3)
    assert sum(p.get("share_of_extra", 0) for p in parts.values()) == pytest.approx(1.0, abs=2e-3)
    selfcon = [r for r in records if r["bench"] == "selfcon_cost" and r["method"] == "selfcon_s"
               and r["measure"] != "parameters"]
    assert {r["anchor"] for r in selfcon} == {0.5, 0.6}
