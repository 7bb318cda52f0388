"""Shared fixtures: small Kaldi data dirs of synthetic audio, made on the fly; where the optional
real test data lives (:data:`SHARED_DATA`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_compress.data.kaldi import write_kaldi_map

ROOT = Path(__file__).resolve().parents[1]
#: Environment variable naming the folder of the optional real test data (overrides the defaults).
TEST_DATA_ENV = "COMPACT_SSL_TEST_DATA"


def resolve_test_data(root: Path = ROOT, environ: Mapping[str, str] = os.environ) -> Path:
    """The folder of the optional real test data (fsdd/, omniglot/, icbhi_samples/, ...):
    ``$COMPACT_SSL_TEST_DATA`` if set (non-empty), else ``<repo>/.test-data`` (what ``make test-data``
    fetches) if present, else ``../shared/data`` beside the checkout. Tests that need a dataset skip,
    with the path in the reason, when its folder is missing there."""
    if environ.get(TEST_DATA_ENV):
        return Path(environ[TEST_DATA_ENV]).expanduser().resolve()
    if (root / ".test-data").is_dir():
        return root / ".test-data"
    return root.parent / "shared" / "data"


SHARED_DATA = resolve_test_data()


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


#: trainable parameters of the registered full-size students (reference section 8)
FULL_COUNTS = {
    "starhubert": 22_308_592,
    "starhubert_l": 26_630_752,
    "armhubert": 26_448_448,
    "armhubert_s": 22_394_080,
    "maskhubert": 26_635_840,
    "distilhubert": 27_034_752,
}
