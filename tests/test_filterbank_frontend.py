"""The mini teacher's filterbank front end: band centres, the mel triangles over a DFT grid, the log levels,
the weights, what the four blocks compute (centre filters and mel triangles), the layout check, and
pretraining that starts from (and keeps) it."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from conftest import ROOT, make_wave_data_dir
from torch.nn import functional as F

from audio_compress.bin import pretrain_teacher as pretrain_cli
from audio_compress.frames import num_frames
from audio_compress.models import build_student
from audio_compress.models.teacher_init import init_student_from_teacher
from audio_compress.teachers import load_teacher
from audio_compress.teachers.configs import get_config, model_class_for
from audio_compress.teachers.filterbank import (
    BANDS,
    FLOOR,
    GAIN,
    SHARPNESS,
    WINDOW,
    analysis_frequencies,
    band_centres,
    check_filterbank_layout,
    filterbank_layout,
    filterbank_weights,
    init_filterbank_frontend,
    log_level,
    mel_weights,
    thresholds,
)
from audio_compress.teachers.pretrain import PretrainConfig, pretrain_teacher
from audio_compress.teachers.pretrain.targets import ClusterTargets
from audio_compress.teachers.pretrain.task import TeacherPretrainTask


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def test_band_centres_are_equally_spaced_in_mel():
    centres = band_centres(5, fmin=100.0, fmax=4000.0)
    assert centres[0] == pytest.approx(100.0) and centres[-1] == pytest.approx(4000.0)
    steps = [_mel(b) - _mel(a) for a, b in zip(centres, centres[1:])]
    assert steps == pytest.approx([(_mel(4000.0) - _mel(100.0)) / 4] * 4)
    with pytest.raises(ValueError, match="fmax"):
        band_centres(4, fmin=100.0, fmax=9000.0)


def test_analysis_frequencies_are_the_dft_bins_of_the_window():
    assert analysis_frequencies() == pytest.approx([40.0 * k for k in range(1, 200)])
    assert analysis_frequencies(3) == pytest.approx([2000.0, 4000.0, 6000.0])
    with pytest.raises(ValueError, match="at least one"):
        analysis_frequencies(0)


def test_mel_weights_are_normalised_triangles_between_the_neighbouring_centres():
    weights = mel_weights(BANDS)
    freqs, centres = torch.tensor(analysis_frequencies(), dtype=torch.float64), band_centres(BANDS)
    assert weights.shape == (BANDS, 199) and (weights >= 0).all()
    assert torch.allclose(weights.sum(1), torch.ones(BANDS, dtype=torch.float64))
    # band 40: zero outside its neighbours' centres, largest at the bin nearest its own, linear on each side
    row = weights[40]
    inside = (freqs > centres[39]) & (freqs < centres[41])
    assert not row[~inside].any() and row[inside].all()
    assert int(row.argmax()) == int((freqs - centres[40]).abs().argmin())
    slope = row[inside & (freqs <= centres[40])].diff()
    assert torch.allclose(slope, slope[:1].expand_as(slope), rtol=1e-6)
    # every bin between the outer centres belongs to some band; the top band spans 16 bins, the lowest 2
    assert weights[:, (freqs > centres[0]) & (freqs < centres[-1])].sum(0).min() > 0
    assert (weights[-1] > 0).sum() == 16 and (weights[0] > 0).sum() == 2
    # a band narrower than the grid takes its nearest bin alone
    assert mel_weights(3, bins=2, fmin=60.0, fmax=100.0).tolist() == [[1.0, 0.0]] * 3


def test_log_level_interpolates_log2_at_the_thresholds():
    ts = torch.tensor(thresholds(5))
    assert torch.allclose(ts, FLOOR * 2.0 ** torch.arange(5.0))
    assert torch.allclose(log_level(ts, levels=5), torch.arange(5.0))
    assert torch.allclose(log_level(1.5 * ts[:4], levels=5), torch.arange(4.0) + 0.5)  # linear in between
    assert torch.allclose(log_level(torch.tensor([0.0, FLOOR / 3, 100.0]), levels=5), torch.tensor([0.0, 0.0, 4.0]))


def test_filterbank_weights():
    wave, filters, compare, compress = filterbank_weights(3, levels=5, window=400)
    assert torch.equal(wave[:, 0, 0], torch.tensor([1.0, -1.0, 0.0]))
    assert filters.shape == (13, 3, 400) and compare.shape == (15, 13, 1) and compress.shape == (3, 15, 1)
    analysis = filters[:12, 0]
    assert torch.equal(filters[:12, 1], -analysis) and not filters[:12, 2].any()
    assert torch.allclose(analysis.norm(dim=-1), torch.full((12,), GAIN))
    # per band: cos, -cos, sin, -sin
    assert torch.equal(analysis[1], -analysis[0]) and torch.equal(analysis[3], -analysis[2])
    # the cosine is even about the window centre, the sine odd, so they are orthogonal
    assert torch.allclose(analysis[0], analysis[0].flip(0), atol=1e-6 * GAIN)
    assert torch.allclose(analysis[2], -analysis[2].flip(0), atol=1e-6 * GAIN)
    assert float(analysis[0] @ analysis[2]) == pytest.approx(0.0, abs=1e-6 * GAIN ** 2)
    # the constant: GELU(1) in, GELU(1) out (block 1's pre-activation is 1)
    gelu_one = float(F.gelu(torch.tensor(1.0)))
    assert not filters[12, :2].any() and float(filters[12, 2].sum() * gelu_one) == pytest.approx(1.0)
    # block 2, band 1 against threshold 2: S / (2 GAIN t_2) on the band's four channels, -S / GELU(1) on the constant
    row = compare[1 * 5 + 2, :, 0]
    expected = torch.zeros(13)
    expected[4:8] = SHARPNESS / (2 * GAIN * thresholds(5)[2])
    expected[12] = -SHARPNESS / gelu_one
    assert torch.allclose(row, expected)
    # block 3 with exact hinges: sum_k w_k * relu(S (m - t_k) / t_k) is the interpolated log2 level
    ts = torch.tensor(thresholds(5))
    m = torch.tensor([0.5e-3, 1e-3, 1.5e-3, 3e-3, 6e-3, 0.012, 0.02, 1.0])
    hinge = torch.relu(SHARPNESS * (m[:, None] - ts) / ts).double()  # (points, levels); float64: the hinges cancel
    assert torch.allclose(hinge @ compress[1, 5:10, 0].double(), log_level(m.double(), levels=5), atol=1e-4)
    assert not compress[1, :5].any() and not compress[1, 10:].any()


def test_mel_filterbank_weights():
    wave, filters, compare, compress = filterbank_weights(3, levels=5, bins=5)
    assert filters.shape == (21, 3, 400) and compare.shape == (15, 21, 1) and compress.shape == (3, 15, 1)
    assert torch.equal(compress, filterbank_weights(3, levels=5)[3])  # the log compression is the same
    analysis = filters[:20, 0]
    assert torch.equal(filters[:20, 1], -analysis) and torch.allclose(analysis.norm(dim=-1), torch.full((20,), GAIN))
    # the second analysis frequency (2,667 Hz for 5 bins) is the peak of its cosine filter's spectrum
    spectrum = torch.fft.rfft(analysis[4].double(), n=16000).abs()
    assert int(spectrum.argmax()) == round(analysis_frequencies(5)[1])
    # block 2, band 1 against threshold 2: w S / (2 GAIN t_2) on each bin's four channels, w its mel weight
    expected = torch.zeros(21)
    weights = mel_weights(3, bins=5).float().repeat_interleave(4, dim=1)[1]
    expected[:20] = weights * SHARPNESS / (2 * GAIN * thresholds(5)[2])
    expected[20] = -SHARPNESS / float(F.gelu(torch.tensor(1.0)))
    assert torch.allclose(compare[1 * 5 + 2, :, 0], expected) and expected[:20].count_nonzero() == 20  # all 5 bins


def _frontend(mel: bool = False):
    config = get_config("mini_hubert_fb", **(filterbank_layout(BANDS, bins=199) if mel else {}))
    model = model_class_for(config)(config).eval()
    init_filterbank_frontend(model, mel=mel)
    return model


def _tone(hz: float, phase: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.1 * torch.sin(2 * math.pi * hz * t + phase)


def _levels(model, wave: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        feats = model.feature_extractor(wave[None])[0]  # (B, T)
    assert feats.shape == (BANDS, num_frames(wave.shape[0]))
    return feats


def test_the_front_end_computes_the_log_levels_of_the_bands():
    model = _frontend()
    wave = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 1.0, 16000)
    wave = wave + 2 * _tone(band_centres(BANDS)[20], 0.3)
    # reference: the same analysis written out (unit-variance wave, unit-norm filters, (|c| + |s|) / 2, log_level)
    normalised = (wave - wave.mean()) / wave.std(correction=0)
    analysis = filterbank_weights(BANDS)[1][:-1, 0] / GAIN
    c = (normalised.unfold(0, WINDOW, 320) @ analysis.T).view(-1, BANDS, 4)
    reference = log_level((c[..., 0].abs() + c[..., 2].abs()) / 2).T
    out = _levels(model, wave)
    # GELU's soft knees: within 0.05 octave on average, 0.2 at worst (the final GELU just above the floor)
    assert float((out - reference).abs().mean()) < 0.05 and float((out - reference).abs().max()) < 0.2
    assert float(reference.max()) > 10.0 and float(reference.min()) < 2.0  # the test spans most of the range


def test_the_mel_front_end_computes_the_mean_magnitudes_under_the_triangles():
    model = _frontend(mel=True)
    wave = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 1.0, 16000)
    wave = wave + 2 * _tone(band_centres(BANDS)[50], 0.3)
    normalised = (wave - wave.mean()) / wave.std(correction=0)
    bins = torch.tensor(analysis_frequencies(), dtype=torch.float64)[:, None]
    t = (torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2) / 16000
    hann = torch.hann_window(WINDOW, periodic=False, dtype=torch.float64)
    cos, sin = torch.cos(2 * math.pi * bins * t) * hann, torch.sin(2 * math.pi * bins * t) * hann
    frames = normalised.double().unfold(0, WINDOW, 320)
    magnitudes = ((frames @ (cos / cos.norm(dim=1, keepdim=True)).T).abs()
                  + (frames @ (sin / sin.norm(dim=1, keepdim=True)).T).abs()) / 2  # (T, bins)
    reference = log_level(magnitudes @ mel_weights(BANDS).T).T.float()
    out = _levels(model, wave)
    assert float((out - reference).abs().mean()) < 0.05 and float((out - reference).abs().max()) < 0.2


def test_only_the_mel_triangles_see_a_tone_between_two_high_centres():
    centres = band_centres(BANDS)
    between = (centres[45] + centres[46]) / 2  # 162 Hz between the centres, a centre filter is about 80 Hz wide
    lost = {}  # octaves between the tone at a centre and the same tone between two, in the louder band
    for mel in (False, True):
        model = _frontend(mel)
        on, off = (_levels(model, _tone(hz, 0.0)).mean(dim=1) for hz in (centres[45], between))
        lost[mel] = float(on[45] - off[45:47].max())
    assert lost[False] > 8.0 and lost[True] < 1.0  # measured: 8.2 and 0.75


@pytest.mark.parametrize("mel", [False, True])
def test_the_bands_keep_their_relative_levels_in_octaves(mel):
    model = _frontend(mel)
    centres = band_centres(BANDS)
    even, quarter = (_levels(model, _tone(centres[10], 0.0) + gain * _tone(centres[40], 0.7)).mean(dim=1)
                     for gain in (1.0, 0.25))
    # the spectral envelope survives as a log ratio: a quarter of the amplitude is two octaves down
    assert float((quarter[40] - quarter[10]) - (even[40] - even[10])) == pytest.approx(-2.0, abs=0.1)
    if not mel:  # a centre filter reads a tone at its centre at the tone's own level
        assert float(quarter[40] - quarter[10]) == pytest.approx(-2.0, abs=0.1)


def test_a_tone_lights_its_own_band_whatever_its_phase_and_loudness():
    model = _frontend()
    centres = band_centres(BANDS)
    for band in (5, 30, 60):
        levels = []
        for phase in (0.0, 1.0, 2.5):
            out = _levels(model, _tone(centres[band], phase)).mean(dim=1)
            assert int(out.argmax()) == band
            levels.append(out[band])
        # |c| + |s| is within sqrt(2) of the magnitude, so the phase moves the band's level by under 0.3 octave
        assert float(max(levels) - min(levels)) < 0.3
    # block 0's GroupNorm normalises the loudness of the utterance (up to its eps against the wave's variance)
    loud, quiet = (_levels(model, gain * _tone(centres[30], 0.0)) for gain in (10.0, 1.0))
    assert torch.allclose(loud, quiet, atol=0.01)


def test_the_mini_students_copy_the_front_end_exactly_padded_rows_included():
    teacher = _frontend()
    conf = yaml.safe_load((ROOT / "egs/mini_speech/star/conf/distill_pretrained.yaml").read_text())
    student = build_student(conf["student"], **conf["student_overrides"]).eval()
    init_student_from_teacher(student, teacher, encoder_layers=[])
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    padding = torch.zeros(2, 8000, dtype=torch.bool)
    padding[1, 5000:] = True
    with torch.no_grad():
        ours = student.feature_extractor(wave, padding)
        theirs = teacher.feature_extractor(wave[:1])[0]
        short = teacher.feature_extractor(wave[1:, :5000])[0]
    assert torch.allclose(ours[0], theirs, atol=1e-4)
    # the padded row's valid frames are those of the unpadded wave: the constant channel survives the masked norm
    assert torch.allclose(ours[1, :, : short.shape[1]], short, atol=1e-4)


def test_the_layout_is_checked():
    config = get_config("mini_hubert")
    with pytest.raises(ValueError, match=r"conv_kernel \(1, 400, 1, 1\).*got conv_dim \(32, 32"):
        init_filterbank_frontend(model_class_for(config)(config))
    config = get_config("mini_hubert_fb", conv_bias=True)
    with pytest.raises(ValueError, match="conv_bias True"):
        init_filterbank_frontend(model_class_for(config)(config))
    # centre filters need one analysis frequency per band; mel triangles take any number
    mel = get_config("mini_hubert_fb", **filterbank_layout(40, bins=199))
    assert check_filterbank_layout(mel, mel=True) == (40, 15, 199)
    with pytest.raises(ValueError, match=r"needs conv_dim \(3, 4B\+1, LB, B\).*got conv_dim \(3, 797, 600, 40\)"):
        check_filterbank_layout(mel)
    with pytest.raises(ValueError, match=r"a mel filterbank front end needs conv_dim \(3, 4A\+1, LB, B\) with A >= 1"):
        check_filterbank_layout(get_config("mini_hubert_fb", conv_dim=(3, 798, 600, 40)), mel=True)


def test_the_preflight_refuses_a_layout_the_filterbank_cannot_fill(tmp_path, capsys):
    conf = ROOT / "egs/mini_speech/conf/pretrain_teacher.yaml"
    base = ["--config", str(conf), "--cache_root", str(tmp_path), "--check"]
    assert pretrain_cli.main(base) == 0 and capsys.readouterr().out.strip() == "mini_hubert_fb"
    assert pretrain_cli.main([*base, "--set", "architecture_overrides={conv_dim: [3, 257, 960, 65]}"]) == 1
    err = capsys.readouterr().err
    assert "filterbank front end needs conv_dim (3, 4B+1, LB, B)" in err and "got conv_dim (3, 257, 960, 65)" in err
    assert not any(tmp_path.iterdir())  # nothing trained or written
    # the Python API refuses it as the config loads, too
    with pytest.raises(ValueError, match=r"config: a filterbank front end needs.*got conv_dim \(32, 32"):
        PretrainConfig.load(None, ["architecture=mini_hubert", "frontend=filterbank"])


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
    # the mel-triangle start, at 40 bands over the 400-point DFT's bins
    mel = [*overrides, "frontend=mel_filterbank", "freeze_frontend=true",
           "architecture_overrides={conv_dim: [3, 797, 600, 40]}"]
    blocks = load_teacher(pretrain_teacher(PretrainConfig.load(None, mel), tmp_path / "teachers")
                          ).model.feature_extractor.conv_layers
    assert all(torch.equal(block.conv.weight, w) for block, w in zip(blocks, filterbank_weights(40, bins=199)))
    with pytest.raises(ValueError, match="a mel filterbank front end needs"):
        PretrainConfig.load(None, [*overrides, "frontend=mel_filterbank", "architecture_overrides={conv_dim: [3, 798, 600, 40]}"])


def test_a_frozen_front_end_records_no_graph_in_training():
    codebook = ClusterTargets(torch.zeros(39), torch.ones(39), torch.randn(4, 39))
    config = PretrainConfig.load(None, ["architecture=mini_hubert_fb", "frontend=filterbank", "freeze_frontend=true"])
    task = TeacherPretrainTask(config, codebook).train()
    # no autograd graph through the frozen front end: its backward would only feed the wave's gradient
    assert not task.model.feature_extractor(torch.randn(1, 4000)).requires_grad
    assert not any(p.requires_grad for p in task.model.feature_extractor.parameters())
    out = task.model(torch.randn(1, 4000)).last_hidden_state
    assert out.requires_grad  # the Transformer still trains
