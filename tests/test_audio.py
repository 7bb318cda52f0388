"""Audio reading: every bad-input case gives its own error naming the file; frame arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_compress.frames import frame_padding_mask, num_frames
from compact_ssl.audio import AudioError, audio_info, load_audio


@pytest.mark.parametrize("samples,frames", [(16000, 49), (32000, 99), (250000, 781), (400, 1), (399, 0), (719, 1), (720, 2)])
def test_frame_count_formula(samples, frames):
    assert num_frames(samples) == frames


def test_frame_padding_mask_matches_formula():
    mask = torch.zeros(3, 32000, dtype=torch.bool)
    mask[1, 16000:] = True
    mask[2, 399:] = True
    fpm = frame_padding_mask(mask, num_frames(32000))
    assert fpm.shape == (3, 99)
    assert (~fpm).sum(dim=1).tolist() == [99, 49, 0]


def _write(path, data, sr=16000):
    sf.write(str(path), data, sr)
    return path


def test_good_file_roundtrip(tmp_path):
    x = (0.1 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    p = _write(tmp_path / "ok.wav", x)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.shape == (8000,)
    np.testing.assert_allclose(y, x, atol=1e-4)
    assert audio_info(p).num_samples == 8000


def test_stereo_mixed_only_on_request(tmp_path):
    x = np.stack([np.full(1000, 0.2), np.full(1000, 0.4)], axis=1).astype(np.float32)
    path = _write(tmp_path / "st.wav", x)
    np.testing.assert_allclose(load_audio(path, multichannel="mean"), 0.3, atol=1e-4)
    np.testing.assert_allclose(load_audio(path, multichannel="first"), 0.2, atol=1e-4)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.kind == "multichannel" and str(path) in str(info.value)
    with pytest.raises(ValueError, match="multichannel must be one of refuse, mean, first"):
        load_audio(path, multichannel="average")


@pytest.mark.parametrize(
    "case,kind,message",
    [
        ("unreadable", "unreadable", "cannot read audio"),
        ("empty", "empty", "no samples"),
        ("nan", "non_finite", "NaN or Inf"),
        ("short", "too_short", "at least 400"),
        ("rate", "sample_rate", "expected 16000 Hz"),
    ],
)
def test_bad_audio_cases(tmp_path, case, kind, message):
    path = tmp_path / f"{case}.wav"
    if case == "unreadable":
        path.write_bytes(b"this is not audio")
    elif case == "empty":
        _write(path, np.zeros(0, dtype=np.float32))
    elif case == "nan":
        x = np.zeros(2000, dtype=np.float32)
        x[5] = np.nan
        sf.write(str(path), x, 16000, subtype="FLOAT")
    elif case == "short":
        _write(path, np.zeros(399, dtype=np.float32))
    elif case == "rate":
        _write(path, np.zeros(8000, dtype=np.float32), sr=8000)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path, resample=False, min_samples=400)
    assert info.value.kind == kind
    assert str(path) in str(info.value)


def test_resampling_on_request(tmp_path):
    x = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    y = load_audio(_write(tmp_path / "8k.wav", x, sr=8000), resample=True)
    assert y.shape == (16000,)
