"""Slow SUPERB integration: the mini star recipe end to end (stages 0-7), DDP training with two
gloo processes, and keyword / speaker classification on real recorded speech (FSDD)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from audio_compress.superb import pipeline

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

MINI_KEYS = {"PR_per", "KS_acc", "SID_acc", "IC_acc"}


def _run_recipe(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "egs/mini_speech/star/run.sh"), "--corpus_root", str(work / "corpus"),
           "--datadir", str(work / "data"), "--exp_root", str(work / "exp"),
           "--dumpdir", str(work / "dump"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def mini_recipe(tmp_path_factory):
    """``run.sh`` with every stage; SUPERB for the student and fbank (the teacher is left out
    to save time; the recipe's default adds it)."""
    work = tmp_path_factory.mktemp("mini_superb")
    expdir = work / "exp" / "star_tiny_star"
    proc = _run_recipe(work, "--superb_upstreams", f"star_local={expdir}/student.pt fbank")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work, expdir, proc


def test_recipe_ends_with_the_results_table(mini_recipe):
    work, expdir, proc = mini_recipe
    tail = proc.stdout[proc.stdout.index("==== Stage 7"):]
    assert "| Model |" in tail and "**star_local** (ours)" in tail and "**fbank** (ours)" in tail
    assert "STaRHuBERT" in tail and "ARMHuBERT" in tail  # published rows beside ours
    for name in ("results.json", "results.md", "results.png"):
        assert (expdir / "superb" / name).is_file()


def test_every_mini_metric_is_present_and_finite_and_ks_beats_chance(mini_recipe):
    work, expdir, _ = mini_recipe
    doc = json.loads((expdir / "superb" / "results.json").read_text())
    assert set(doc["ours"]) == {"star_local", "fbank"}
    for upstream, row in doc["ours"].items():
        assert set(row["metrics"]) == MINI_KEYS, upstream
        assert all(math.isfinite(v) for v in row["metrics"].values()), row["metrics"]
    layout = json.loads((work / "dump" / "superb" / "ks" / "layout.json").read_text())
    chance = 100.0 / len(layout["test_classes"])  # 10 keywords + _silence_
    ks = doc["ours"]["star_local"]["metrics"]["KS_acc"]
    print(f"mini KS accuracy of the student: {ks:.1f} % (chance {chance:.1f} %)")
    assert ks >= chance + 10.0, (ks, chance)
    per_task = json.loads((expdir / "superb" / "star_local" / "ks" / "metrics.json").read_text())
    assert per_task["details"]["upstream_sha256"] and per_task["details"]["checkpoint"].endswith(".ckpt")


def test_rerunning_the_superb_stages_skips_finished_runs(mini_recipe):
    work, expdir, _ = mini_recipe
    proc = _run_recipe(work, "--stage", "6", "--superb_upstreams",
                       f"star_local={expdir}/student.pt fbank")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("exists, skipped") == 8
    assert "| Model |" in proc.stdout


def test_two_process_ddp_training_then_single_process_evaluation(mini_recipe, tmp_path):
    """torchrun with 2 gloo workers: every worker registers our upstream (star_local); the
    evaluation runs in one process from the saved checkpoint."""
    work, expdir, _ = mini_recipe
    doc = pipeline.run_task(f"star_local={expdir}/student.pt", "ks", tmp_path / "ks", mini=True,
                            data_root=work / "dump" / "superb", nproc=2,
                            overrides=["runner.total_steps=6", "runner.eval_step=3", "runner.save_step=3"],
                            log=lambda s: None)
    assert math.isfinite(doc["metrics"]["KS_acc"])
    train = json.loads((tmp_path / "ks" / "scalars-train.json").read_text())
    assert train["args"]["local_rank"] == 0 and train["args"]["backend"] == "gloo"
    assert [s["step"] for s in train["scalars"] if s["tag"] == "speech_commands/dev-acc"] == [3, 6]


@pytest.mark.skipif(not (SHARED_DATA / "fsdd" / "recordings").is_dir(),
                    reason=f"{SHARED_DATA}/fsdd (Free Spoken Digit Dataset) is not available (run `make test-data`)")
def test_keyword_and_speaker_classification_on_spoken_digits(tmp_path):
    """FSDD (real recordings, 6 speakers): digits as the 10 keyword slots of the Speech Commands
    layout, speakers in the VoxCeleb1 layout; official split (test: index 0-4). Upstream: the
    tiny teacher architecture with random weights (no training needed), run by the same runner."""
    data = tmp_path / "fsdd_layouts"
    proc = subprocess.run([sys.executable, "-m", "audio_compress.bin.superb", "layouts", "--source", "fsdd",
                           "--fsdd_root", str(SHARED_DATA / "fsdd"), "--out", str(data), "--tasks", "ks,sid"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "audio_compress.bin.superb", "--upstream",
                           "ssl_teacher_local=tiny_hubert", "--task", "ks", "sid", "--out_root",
                           str(tmp_path / "exp"), "--mini", "true", "--data_root", str(data),
                           "--device", "cpu", "--nj", "2", "--lr", "2e-2",
                           "--override", "runner.total_steps=400"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ks = json.loads((tmp_path / "exp" / "ssl_teacher_local" / "ks" / "metrics.json").read_text())
    sid = json.loads((tmp_path / "exp" / "ssl_teacher_local" / "sid" / "metrics.json").read_text())
    ks_chance = 100.0 / len(ks["details"]["test_classes"])
    sid_chance = 100.0 / 6
    print(f"FSDD keyword spotting accuracy: {ks['metrics']['KS_acc']:.1f} % (chance {ks_chance:.1f} %, "
          f"{ks['details']['counts']['test']} test clips); speaker identification accuracy: "
          f"{sid['metrics']['SID_acc']:.1f} % (chance {sid_chance:.1f} %, "
          f"{sid['details']['counts']['test']} test clips)")
    assert ks["metrics"]["KS_acc"] > 1.5 * ks_chance
    assert sid["metrics"]["SID_acc"] > 1.5 * sid_chance
