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
    delta_taps,
    init_delta_context,
)
from audio_compress.teachers.pretrain import PretrainConfig
from audio_compress.teachers.pretrain.targets import ClusterTargets
from audio_compress.teachers.pretrain.task import TeacherPretrainTask

WIDE = dict(hidden_size=128, intermediate_size=512, num_attention_heads=4)


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


def test_a_constant_spectrum_has_zero_delta():
    model = _model()
    init_delta_context(model, torch.Generator().manual_seed(0))
    features = torch.linspace(-1, 1, 64).expand(1, 30, 64)
    hidden = model.feature_projection.projection(features)
    summed = hidden + model.encoder.pos_conv_embed(hidden)
    assert torch.allclose(summed[0, 2:-2, 16:32], torch.full((26, 16), DELTA_OFFSET), atol=0.05)


@pytest.mark.parametrize("overrides,message", [
    ({"hidden_size": 64, "intermediate_size": 128}, "below twice the 64 front-end channels"),
    ({"num_conv_pos_embedding_groups": 3, "hidden_size": 132}, "do not split over 3 groups"),
    ({"num_conv_pos_embeddings": 4}, "spans fewer than 5 frames"),
])
def test_layout_check_names_what_does_not_fit(overrides, message):
    config = get_config("mini_hubert_fb", **{**WIDE, **overrides})
    with pytest.raises(ValueError, match=message):
        check_delta_layout(config)
    assert check_delta_layout(get_config("mini_hubert_fb", **WIDE)) == (64, 4)


def test_pretraining_config_and_task_take_the_deltas_start():
    with pytest.raises(ValueError, match="below twice"):
        PretrainConfig(architecture="mini_hubert_fb", frontend="filterbank", positional_init="deltas")
    config = PretrainConfig(architecture="mini_hubert_fb", architecture_overrides=WIDE, frontend="filterbank",
                            positional_init="deltas")
    codebook = ClusterTargets(torch.zeros(39), torch.ones(39), torch.randn(8, 39))
    task = TeacherPretrainTask(config, codebook)
    assert float(task.model.encoder.pos_conv_embed.conv.bias[16].detach()) == DELTA_OFFSET
    assert torch.equal(task.model.feature_projection.projection.weight[:16, :16], torch.eye(16))
    random_start = TeacherPretrainTask(PretrainConfig(architecture="mini_hubert_fb", architecture_overrides=WIDE,
                                                      frontend="filterbank"), codebook)
    assert float(random_start.model.encoder.pos_conv_embed.conv.bias.detach().abs().max()) == 0.0
