"""End-to-end runs of the mini speech recipes (every stage on CPU) and stage re-runs."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch

from audio_compress.data.kaldi import read_kaldi_map

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a few minutes: every stage of the three mini recipes


def _run(method: str, work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        "bash", str(ROOT / f"egs/mini_speech/{method}/run.sh"),
        "--corpus_root", str(work / "corpus"), "--datadir", str(work / "data"),
        "--exp_root", str(work / "exp"), "--dumpdir", str(work / "dump"), *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def _train_losses(expdir: Path) -> list[float]:
    rows = list(csv.DictReader(open(expdir / "csv" / "metrics.csv")))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.fixture(scope="module")
def corpus_and_data(tmp_path_factory) -> Path:
    """Stages 0-1 once for the module (corpus synthesis and data prep are shared)."""
    work = tmp_path_factory.mktemp("mini")
    proc = _run("star", work, "--stop_stage", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


def test_stages_0_1_make_data_and_rerun_is_safe(corpus_and_data):
    work = corpus_and_data
    train = read_kaldi_map(work / "data" / "train" / "wav.scp")
    assert len(train) >= 200
    for extra in ("text", "utt2spk", "utt2num_samples", "phn", "utt2keyword", "utt2intent"):
        assert (work / "data" / "train" / extra).is_file()
    before = {p.name: p.read_bytes() for p in (work / "data" / "dev_mini").iterdir() if p.is_file()}
    proc = _run("star", work, "--stage", "0", "--stop_stage", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Stage 0: corpus" in proc.stdout and "Stage 1: data preparation" in proc.stdout
    after = {p.name: p.read_bytes() for p in (work / "data" / "dev_mini").iterdir() if p.is_file()}
    assert after == before
    log = work / "exp" / "star_tiny_star" / "logs" / "stage1.log"
    assert log.is_file() and "stage 1" in log.read_text()


@pytest.mark.parametrize("method,student,entry", [("star", "tiny_star", "star_local"),
                                                   ("armhubert", "tiny_arm", "armhubert_local"),
                                                   ("distilhubert", "tiny_distil", "distilhubert_local")])
def test_mini_recipe_distills_and_exports(corpus_and_data, method, student, entry):
    work = corpus_and_data
    proc = _run(method, work, "--stage", "2", "--stop_stage", "5")  # SUPERB stages: tests/test_superb_mini.py
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = work / "exp" / f"{method}_{student}"
    for n in (2, 4, 5):
        assert (expdir / "logs" / f"stage{n}.log").is_file()
    check = json.loads((expdir / "teacher" / "check.json").read_text())
    assert check["check"]["num_hidden_states"] == 5
    losses = _train_losses(expdir)
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, (first, last)

    from audio_compress.upstream import register

    register()
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream(entry, path_or_url=str(expdir / "student.pt")).eval()
    with torch.no_grad():
        states, lens = upstream(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    # distilhubert: projected CNN features + 2 layers + 3 head predictions
    assert len(states) == {"star": 3, "armhubert": 4, "distilhubert": 6}[method]
    assert states[0].shape[-1] == 64 and lens[0].tolist() == [50, 25]


def test_star_with_feature_dump(corpus_and_data):
    work = corpus_and_data
    proc = _run("star", work, "--stage", "2", "--stop_stage", "4", "--use_dump", "true", "--tag", "star_dump",
                "--train_args", "trainer.max_steps=20 trainer.val_every_n_steps=10")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / "dump" / "star_dump" / "train" / "done").is_file()
    assert "Expected size" in (work / "exp" / "star_dump" / "logs" / "stage3.log").read_text()
    assert torch.load(work / "exp" / "star_dump" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 20
