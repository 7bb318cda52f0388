"""Shared fixtures: small Kaldi data dirs of synthetic audio, made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_compress.data.kaldi import write_kaldi_map

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def make_wave_data_dir(folder: Path, num_utts: int, seed: int, min_samples: int = 8000, max_samples: int = 32000) -> Path:
    """Write ``num_utts`` harmonic-plus-noise WAV files and a data dir (wav.scp, utt2num_samples,
    utt2spk) describing them."""
    rng = np.random.default_rng(seed)
    wav_dir = folder / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav_scp, lengths, utt2spk = {}, {}, {}
    for i in range(num_utts):
        spk = f"spk{i % 3}"
        utt = f"{spk}-u{i:03d}"
        n = int(rng.integers(min_samples, max_samples))
        t = np.arange(n) / 16000
        f0 = 100 + 40 * (i % 3)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4)) * 0.2 + 0.01 * rng.standard_normal(n)
        path = wav_dir / f"{utt}.wav"
        sf.write(str(path), x.astype(np.float32), 16000)
        wav_scp[utt], lengths[utt], utt2spk[utt] = str(path), n, spk
    write_kaldi_map(folder / "wav.scp", wav_scp)
    write_kaldi_map(folder / "utt2num_samples", lengths)
    write_kaldi_map(folder / "utt2spk", utt2spk)
    return folder


@pytest.fixture(scope="session")
def wave_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(train, dev) data dirs with 12 and 4 synthetic utterances of 0.5-2 s."""
    root = tmp_path_factory.mktemp("wave_dirs")
    return make_wave_data_dir(root / "train", 12, seed=0), make_wave_data_dir(root / "dev", 4, seed=1)
