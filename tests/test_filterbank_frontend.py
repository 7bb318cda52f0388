"""The mini teacher's filterbank front end: band centres, weights, what the two blocks compute, the layout
check, and pretraining that starts from (and keeps) it."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_wave_data_dir

from audio_compress.frames import num_frames
from audio_compress.teachers import load_teacher
from audio_compress.teachers.configs import get_config, model_class_for
from audio_compress.teachers.filterbank import (
    BANDS,
    band_centres,
    filterbank_weights,
    init_filterbank_frontend,
)
from audio_compress.teachers.pretrain import PretrainConfig, pretrain_teacher


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def test_band_centres_are_equally_spaced_in_mel():
    centres = band_centres(5, fmin=100.0, fmax=4000.0)
    assert centres[0] == pytest.approx(100.0) and centres[-1] == pytest.approx(4000.0)
    steps = [_mel(b) - _mel(a) for a, b in zip(centres, centres[1:])]
    assert steps == pytest.approx([(_mel(4000.0) - _mel(100.0)) / 4] * 4)
    with pytest.raises(ValueError, match="fmax"):
        band_centres(4, fmin=100.0, fmax=9000.0)


def test_filterbank_weights():
    wave, filters, pooling = filterbank_weights(3, window=400)
    assert torch.equal(wave[:, 0, 0], torch.tensor([1.0, -1.0]))
    assert filters.shape == (12, 2, 400) and pooling.shape == (3, 12, 1)
    analysis = filters[:, 0]
    assert torch.equal(filters[:, 1], -analysis)
    assert torch.allclose(analysis.norm(dim=-1), torch.ones(12))
    # per band: cos, -cos, sin, -sin
    assert torch.equal(analysis[1], -analysis[0]) and torch.equal(analysis[3], -analysis[2])
    # the cosine is even about the window centre, the sine odd, so they are orthogonal
    assert torch.allclose(analysis[0], analysis[0].flip(0), atol=1e-6)
    assert torch.allclose(analysis[2], -analysis[2].flip(0), atol=1e-6)
    assert float(analysis[0] @ analysis[2]) == pytest.approx(0.0, abs=1e-6)
    expected = torch.zeros(3, 12)
    for b in range(3):
        expected[b, 4 * b: 4 * b + 4] = 0.5
    assert torch.equal(pooling[:, :, 0], expected)


def _frontend():
    config = get_config("mini_hubert_fb")
    model = model_class_for(config)(config).eval()
    init_filterbank_frontend(model)
    return model


def _tone(hz: float, phase: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.1 * torch.sin(2 * math.pi * hz * t + phase)


def _bands(model, wave: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        feats = model.feature_extractor(wave[None])[0]  # (B, T)
    assert feats.shape == (BANDS, num_frames(wave.shape[0]))
    return feats.mean(dim=1)


def test_a_tone_lights_its_own_band_whatever_its_phase_and_loudness():
    model = _frontend()
    centres = band_centres(BANDS)
    for band in (5, 30, 60):
        levels = []
        for phase in (0.0, 1.0, 2.5):
            out = _bands(model, _tone(centres[band], phase))
            assert int(out.argmax()) == band
            levels.append(out[band])
        # |c| + |s| is within sqrt(2) of the magnitude, so the phase moves the band's level little
        assert float(max(levels) / min(levels)) < 1.2
    # block 0's GroupNorm normalises the loudness of the utterance (up to its eps against the wave's variance)
    assert torch.allclose(_bands(model, 10 * _tone(centres[30], 0.0)), _bands(model, _tone(centres[30], 0.0)),
                          rtol=1e-2, atol=1e-6)


def test_the_bands_keep_their_relative_levels():
    model = _frontend()
    centres = band_centres(BANDS)
    out = _bands(model, _tone(centres[10], 0.0) + 0.25 * _tone(centres[40], 0.7))
    # the spectral envelope survives (a per-band normalisation would make both tones look alike)
    assert float(out[40] / out[10]) == pytest.approx(0.25, abs=0.05)


def test_the_layout_is_checked():
    config = get_config("mini_hubert")
    with pytest.raises(ValueError, match=r"conv_kernel \(1, 400, 1\).*got conv_dim \(32, 32"):
        init_filterbank_frontend(model_class_for(config)(config))


def test_pretraining_starts_from_the_filterbank_and_can_keep_it(tmp_path):
    data = make_wave_data_dir(tmp_path / "data", num_utts=6, seed=0)
    overrides = [f"data.train={data}", f"data.dev={data}", "data.num_workers=0", "data.max_batch_samples=64000",
                 "targets.num_clusters=4", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
                 "trainer.ckpt_every_n_steps=2", "trainer.precision=32-true", "trainer.accelerator=cpu",
                 "architecture=mini_hubert_fb", "frontend=filterbank", "unmasked_weight=1.0"]
    weights = filterbank_weights(BANDS)
    frozen = load_teacher(pretrain_teacher(PretrainConfig.load(None, [*overrides, "freeze_frontend=true"]),
                                           tmp_path / "teachers"))
    blocks = frozen.model.feature_extractor.conv_layers
    assert all(torch.equal(block.conv.weight, w) for block, w in zip(blocks, weights))
    assert not torch.equal(frozen.model.encoder.layers[0].attention.k_proj.weight,
                           load_teacher("mini_hubert_fb", seed=0).model.encoder.layers[0].attention.k_proj.weight)
    learnt = load_teacher(pretrain_teacher(PretrainConfig.load(None, overrides), tmp_path / "teachers"))
    assert not torch.equal(learnt.model.feature_extractor.conv_layers[1].conv.weight, weights[1])
    with pytest.raises(ValueError, match="expected one of"):
        PretrainConfig.load(None, [*overrides, "frontend=sinc"])
