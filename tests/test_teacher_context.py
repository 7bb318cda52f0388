"""The deltas start of the positional convolution (audio_compress.teachers.context): the regression taps, what
the encoder's input computes, the layout check, and pretraining that starts from it."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from audio_compress.teachers.configs import get_config, model_class_for
from audio_compress.teachers.context import (
    DELTA_OFFSET,
    check_delta_layout,
    delta_filters,
    delta_taps,
    init_delta_context,
)
from audio_compress.teachers.pretrain import PretrainConfig
from audio_compress.teachers.pretrain.targets import ClusterTargets
from audio_compress.teachers.pretrain.task import TeacherPretrainTask

WIDE = dict(hidden_size=128, intermediate_size=512, num_attention_heads=4)
BANDS_40 = dict(conv_dim=(3, 797, 600, 40))  # 40 mel bands over 199 DFT bins: each beside its 2 deltas fits 128
BANDS_32 = dict(conv_dim=(3, 401, 480, 32))  # 32 mel bands over 100 bins: paired with their deltas, fits 128


def _model(**overrides):
    config = get_config("mini_hubert_fb", **{**WIDE, **overrides})
    return model_class_for(config)(config).eval()


def test_delta_taps_are_kaldis_regression():
    # N = 2: (c[t+1] - c[t-1] + 2 (c[t+2] - c[t-2])) / 10
    assert delta_taps().tolist() == pytest.approx([-0.2, -0.1, 0.0, 0.1, 0.2])
    assert delta_taps(1).tolist() == pytest.approx([-0.5, 0.0, 0.5])
    # a ramp of slope 1 has delta 1 whatever the window
    ramp = torch.arange(9.0)
    assert float((delta_taps(3) * ramp[1:8]).sum()) == pytest.approx(1.0)


def test_delta_filters_repeat_the_regression():
    first, second = delta_filters(2)
    assert torch.equal(first, delta_taps())
    # the delta-delta: 9 taps, symmetric, summing to 0, and torchaudio's deltas of deltas on interior frames
    assert second.shape == (9,) and torch.allclose(second, second.flip(0)) and abs(float(second.sum())) < 1e-7
    signal = torch.randn(1, 30, generator=torch.Generator().manual_seed(0))
    twice = torchaudio.functional.compute_deltas(torchaudio.functional.compute_deltas(signal))
    assert torch.allclose(signal.unfold(1, 9, 1) @ second, twice[:, 4:-4], atol=1e-6)
    # a parabola t^2 has second derivative 2, which the regression of a regression recovers
    parabola = torch.arange(-4.0, 5.0) ** 2
    assert float(parabola @ second) == pytest.approx(2.0)


def test_encoder_input_starts_as_channels_beside_their_deltas():
    model = _model()
    init_delta_context(model, torch.Generator().manual_seed(0))
    features = torch.randn(1, 40, 64, generator=torch.Generator().manual_seed(1))
    hidden = model.feature_projection.projection(features)
    summed = hidden + model.encoder.pos_conv_embed(hidden)  # what the encoder's LayerNorm receives
    deltas = torchaudio.functional.compute_deltas(features.transpose(1, 2)).transpose(1, 2)
    for g in range(4):  # 4 groups of 32 channels: 16 bands, then their 16 deltas
        statics = summed[0, :, 32 * g: 32 * g + 16]
        assert torch.allclose(statics, features[0, :, 16 * g: 16 * (g + 1)], atol=0.05)
        # interior frames (torchaudio pads by repetition, the convolution by zeros); GELU's curvature at the
        # offset and the noise leave a few hundredths
        delta = summed[0, 2:-2, 32 * g + 16: 32 * (g + 1)] - DELTA_OFFSET
        assert torch.allclose(delta, deltas[0, 2:-2, 16 * g: 16 * (g + 1)], atol=0.1)
    # the init is a function of the generator's seed
    again = _model()
    init_delta_context(again, torch.Generator().manual_seed(0))
    assert torch.equal(again.encoder.pos_conv_embed.conv.weight, model.encoder.pos_conv_embed.conv.weight)


def test_at_order_2_the_delta_deltas_follow_the_deltas():
    model = _model(**BANDS_40)
    init_delta_context(model, torch.Generator().manual_seed(0), order=2)
    features = torch.randn(1, 40, 40, generator=torch.Generator().manual_seed(1)).cumsum(1) * 0.3
    with torch.no_grad():
        hidden = model.feature_projection.projection(features)
        summed = hidden + model.encoder.pos_conv_embed(hidden)
    deltas = torchaudio.functional.compute_deltas(features.transpose(1, 2))
    twice = torchaudio.functional.compute_deltas(deltas).transpose(1, 2)
    for g in range(4):  # 4 groups of 32 channels: 10 bands, their 10 deltas, their 10 delta-deltas, 2 free
        assert torch.allclose(summed[0, :, 32 * g: 32 * g + 10], features[0, :, 10 * g: 10 * (g + 1)], atol=0.05)
        second = summed[0, 4:-4, 32 * g + 20: 32 * g + 30] - DELTA_OFFSET
        assert torch.allclose(second, twice[0, 4:-4, 10 * g: 10 * (g + 1)], atol=0.1)
        assert float(summed[0, :, 32 * g + 30: 32 * (g + 1)].abs().max()) < 0.05


def test_paired_deltas_lay_out_each_signal_beside_its_negative():
    model = _model(**BANDS_32)
    init_delta_context(model, torch.Generator().manual_seed(0), paired=True)
    features = torch.randn(1, 40, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = model.feature_projection.projection(features)
        summed = hidden + model.encoder.pos_conv_embed(hidden)
    deltas = torchaudio.functional.compute_deltas(features.transpose(1, 2)).transpose(1, 2)
    for g in range(4):  # 4 groups of 32 channels: 8 bands, their negatives, their deltas, the deltas' negatives
        bands, delta = features[0, :, 8 * g: 8 * (g + 1)], deltas[0, 2:-2, 8 * g: 8 * (g + 1)]
        assert torch.allclose(summed[0, :, 32 * g: 32 * g + 8], bands, atol=0.05)
        assert torch.allclose(summed[0, :, 32 * g + 8: 32 * g + 16], -bands, atol=0.05)
        assert torch.allclose(summed[0, 2:-2, 32 * g + 16: 32 * g + 24] - DELTA_OFFSET, delta, atol=0.1)
        assert torch.allclose(summed[0, 2:-2, 32 * g + 24: 32 * (g + 1)] - DELTA_OFFSET, -delta, atol=0.1)
    # what the pairs are for: the frame's mean no longer depends on the bands (the offsets' 1.5 on average), so
    # a louder frame keeps its greater scale after the mean is removed
    assert torch.allclose(summed[0, 2:-2].mean(-1), torch.full((36,), DELTA_OFFSET / 2), atol=0.02)
    louder = torch.cat([features, features + 2.0], 1)
    with torch.no_grad():
        hidden = model.feature_projection.projection(louder)
        normed = model.encoder.layer_norm(hidden + model.encoder.pos_conv_embed(hidden))
    assert float(normed[0, 10, :8].mean()) < float(normed[0, 50, :8].mean()) - 0.5
    # at order 2, per group of 32: 5 bands, their negatives, deltas, negated deltas, delta-deltas, negated
    # delta-deltas (30 rows), then 2 free
    second = _model(conv_dim=(3, 401, 300, 20))
    init_delta_context(second, torch.Generator().manual_seed(0), order=2, paired=True)
    bias = second.encoder.pos_conv_embed.conv.bias.detach().view(4, 32)
    assert bias[:, :10].abs().max() == 0.0 and (bias[:, 10:30] == DELTA_OFFSET).all() and bias[:, 30:].abs().max() == 0
    projection = second.feature_projection.projection.weight.detach()
    assert torch.equal(projection[32:42, 5:10], torch.cat([torch.eye(5), -torch.eye(5)]))
    taps = second.encoder.pos_conv_embed.conv.weight.detach()  # effective weight of the weight-normed conv
    centre = 8
    assert torch.allclose(taps[52, 0, centre - 4: centre + 5], delta_filters(2)[1], atol=1e-6)
    assert torch.allclose(taps[57, 0, centre - 4: centre + 5], -delta_filters(2)[1], atol=1e-6)


def test_a_constant_spectrum_has_zero_delta():
    model = _model()
    init_delta_context(model, torch.Generator().manual_seed(0))
    features = torch.linspace(-1, 1, 64).expand(1, 30, 64)
    hidden = model.feature_projection.projection(features)
    summed = hidden + model.encoder.pos_conv_embed(hidden)
    assert torch.allclose(summed[0, 2:-2, 16:32], torch.full((26, 16), DELTA_OFFSET), atol=0.05)


@pytest.mark.parametrize("overrides,order,message", [
    ({"hidden_size": 64, "intermediate_size": 128}, 1, "below 2 times the 64 front-end channels"),
    ({"num_conv_pos_embedding_groups": 3, "hidden_size": 132}, 1, "do not split over 3 groups"),
    ({"num_conv_pos_embeddings": 4}, 1, "spans fewer than 5 frames"),
    ({}, 2, "below 3 times the 64 front-end channels"),
    ({**BANDS_40, "num_conv_pos_embeddings": 8}, 2, "spans fewer than 9 frames"),
    ({}, 3, "delta_order must be 1"),
])
def test_layout_check_names_what_does_not_fit(overrides, order, message):
    config = get_config("mini_hubert_fb", **{**WIDE, **overrides})
    with pytest.raises(ValueError, match=message):
        check_delta_layout(config, order)
    assert check_delta_layout(get_config("mini_hubert_fb", **WIDE)) == (64, 4)
    assert check_delta_layout(get_config("mini_hubert_fb", **WIDE, **BANDS_40), 2) == (40, 4)


def test_paired_layout_check_needs_twice_the_width():
    with pytest.raises(ValueError, match=r"'paired_deltas' at delta_order 1 .* below 4 times the 64 .* 20 at order 2"):
        check_delta_layout(get_config("mini_hubert_fb", **WIDE), paired=True)
    with pytest.raises(ValueError, match="below 6 times the 32 front-end channels"):
        check_delta_layout(get_config("mini_hubert_fb", **WIDE, **BANDS_32), 2, paired=True)
    assert check_delta_layout(get_config("mini_hubert_fb", **WIDE, **BANDS_32), paired=True) == (32, 4)
    # 20 bands: 5 per group of 32, six signals each (bands, deltas, delta-deltas and their negatives) fill 30
    assert check_delta_layout(get_config("mini_hubert_fb", **WIDE, conv_dim=(3, 401, 300, 20)), 2, paired=True) == (20, 4)


def test_pretraining_config_and_task_take_the_deltas_start():
    with pytest.raises(ValueError, match="below 2 times"):
        PretrainConfig(architecture="mini_hubert_fb", frontend="filterbank", positional_init="deltas")
    with pytest.raises(ValueError, match="delta_order 2 needs positional_init: deltas"):
        PretrainConfig(architecture="mini_hubert_fb", frontend="filterbank", delta_order=2)
    with pytest.raises(ValueError, match="below 3 times"):
        PretrainConfig(architecture="mini_hubert_fb", architecture_overrides=WIDE, frontend="filterbank",
                       positional_init="deltas", delta_order=2)
    config = PretrainConfig(architecture="mini_hubert_fb", architecture_overrides=WIDE, frontend="filterbank",
                            positional_init="deltas")
    codebook = ClusterTargets(torch.zeros(39), torch.ones(39), torch.randn(8, 39))
    task = TeacherPretrainTask(config, codebook)
    assert float(task.model.encoder.pos_conv_embed.conv.bias[16].detach()) == DELTA_OFFSET
    assert torch.equal(task.model.feature_projection.projection.weight[:16, :16], torch.eye(16))
    random_start = TeacherPretrainTask(PretrainConfig(architecture="mini_hubert_fb", architecture_overrides=WIDE,
                                                      frontend="filterbank"), codebook)
    assert float(random_start.model.encoder.pos_conv_embed.conv.bias.detach().abs().max()) == 0.0
    second = TeacherPretrainTask(PretrainConfig(architecture="mini_hubert_fb", frontend="mel_filterbank",
                                                architecture_overrides={**WIDE, **BANDS_40},
                                                positional_init="deltas", delta_order=2), codebook)
    bias = second.model.encoder.pos_conv_embed.conv.bias.detach()
    assert bias[:10].abs().max() == 0.0 and (bias[10:30] == DELTA_OFFSET).all() and bias[30:32].abs().max() == 0.0
    paired = TeacherPretrainTask(PretrainConfig(architecture="mini_hubert_fb", frontend="mel_filterbank",
                                                architecture_overrides={**WIDE, **BANDS_32},
                                                positional_init="paired_deltas"), codebook)
    projection = paired.model.feature_projection.projection.weight.detach()
    assert torch.equal(projection[:16, :8], torch.cat([torch.eye(8), -torch.eye(8)]))
    assert (paired.model.encoder.pos_conv_embed.conv.bias.detach().view(4, 32)[:, 16:] == DELTA_OFFSET).all()
    with pytest.raises(ValueError, match="'paired_deltas' at delta_order 1"):
        PretrainConfig(architecture="mini_hubert_fb", architecture_overrides=WIDE, frontend="filterbank",
                       positional_init="paired_deltas")
