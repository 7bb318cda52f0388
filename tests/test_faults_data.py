"""Bad data through a whole recipe (slow): audio at another sample rate is refused at data
preparation with the option to pass, and with ``--resample true`` every stage that reads audio
(data prep, the teacher check, the feature dump, training) accepts it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _recipe(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "egs/mini_speech/distilhubert/run.sh"), "--corpus_root", str(work / "corpus"),
           "--datadir", str(work / "data"), "--exp_root", str(work / "exp"), "--dumpdir", str(work / "dump"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_resample_true_reaches_every_stage_that_reads_audio(tmp_path):
    proc = _recipe(tmp_path, "--stop_stage", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resampled = []
    for split in ("train-mini", "dev-mini"):  # the first files of each set the later stages read
        for path in sorted((tmp_path / "corpus/LibriSpeech" / split).rglob("*.flac"))[:6]:
            wav, sr = sf.read(path, dtype="float32")
            sf.write(path, librosa.resample(wav, orig_sr=sr, target_sr=22050), 22050, format="FLAC")
            resampled.append(path)
    assert sf.info(resampled[0]).samplerate == 22050
    proc = _recipe(tmp_path, "--stage", "1", "--stop_stage", "1")
    assert proc.returncode == 1
    failed = next(line for line in proc.stderr.splitlines() if "Stage 1 FAILED" in line)
    assert "22050 Hz" in proc.stderr and "--resample true" in proc.stderr and "bad utterance" in failed
    assert not (tmp_path / "data/train").exists()  # no data dir left for a later stage to take

    proc = _recipe(tmp_path, "--stage", "1", "--stop_stage", "4", "--resample", "true", "--use_dump", "true",
                   "--train_args", "trainer.max_steps=2 trainer.val_every_n_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    srs = dict(line.split() for line in (tmp_path / "data/train/utt2sr").read_text().splitlines())
    assert list(srs.values()).count("22050") == 6  # the data dir records the original rates
    assert "Stage 3 done" in proc.stdout and "Stage 4 done" in proc.stdout
    summary = json.loads((tmp_path / "exp/distilhubert_tiny_distil/done.json").read_text())
    assert summary["steps"] == 2 and np.isfinite(summary["best_val_loss"])
