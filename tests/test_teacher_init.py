"""Tests for audio_compress.models.teacher_init (DistilHuBERT-style teacher initialisation)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.utils import parametrize

from audio_compress.models import build_student, count_parameters
from audio_compress.models.teacher_init import init_student_from_teacher
from audio_compress.teachers import load_teacher
from audio_compress.teachers.configs import get_config, model_class_for

PRED_HEAD = [
    "pred_head.expand.weight", "pred_head.expand.bias",
    *[f"pred_head.split.{n}.{kind}" for n in range(3) for kind in ("weight", "bias")],
]

# Written out independently of teacher_init.PART_MODULES: student layer suffix -> teacher layer suffix.
LAYER_NAMES = {
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}


def expected_pairs(num_blocks: int, layer_map: dict[int, int], feature_ln: bool = False) -> dict[str, str]:
    """Student parameter name -> teacher parameter name (0-based layer indices in ``layer_map``)."""
    pairs = {f"feature_extractor.conv_layers.{i}.conv.weight": f"feature_extractor.conv_layers.{i}.conv.weight"
             for i in range(num_blocks)}
    for kind in ("weight", "bias"):
        pairs[f"feature_extractor.conv_layers.0.norm.{kind}"] = f"feature_extractor.conv_layers.0.layer_norm.{kind}"
        pairs[f"post_extract_proj.{kind}"] = f"feature_projection.projection.{kind}"
        pairs[f"encoder.layer_norm.{kind}"] = f"encoder.layer_norm.{kind}"
        if feature_ln:
            pairs[f"feature_layer_norm.{kind}"] = f"feature_projection.layer_norm.{kind}"
        for s, t in layer_map.items():
            for s_mod, t_mod in LAYER_NAMES.items():
                pairs[f"encoder.layers.{s}.{s_mod}.{kind}"] = f"encoder.layers.{t}.{t_mod}.{kind}"
    pairs["encoder.pos_conv.conv.bias"] = "encoder.pos_conv_embed.conv.bias"
    for original in ("original0", "original1"):
        name = f"parametrizations.weight.{original}"
        pairs[f"encoder.pos_conv.conv.{name}"] = f"encoder.pos_conv_embed.conv.{name}"
    return pairs


@pytest.fixture(scope="module")
def tiny_teacher():
    return load_teacher("tiny_hubert", seed=0)


def tiny_student(teacher, seed: int = 1, **overrides):
    """``tiny_distil`` shaped like ``tiny_hubert`` (same CNN, 64 wide, 4 heads, FFN 128, pos conv 16 / 4)."""
    config = teacher.config
    kwargs = dict(
        conv_layers=list(zip(config.conv_dim, config.conv_kernel, config.conv_stride)),
        feature_layer_norm=False,
        embed_dim=config.hidden_size,
        ffn_dim=config.intermediate_size,
        num_heads=config.num_attention_heads,
        pos_conv_kernel=config.num_conv_pos_embeddings,
        pos_conv_groups=config.num_conv_pos_embedding_groups,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    return build_student("tiny_distil", **kwargs).eval()


def waveform(batch: int = 2, samples: int = 4000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def test_copied_parameters_equal_teacher(tiny_teacher):
    student = tiny_student(tiny_teacher)
    with torch.no_grad():  # zero-initialised biases and unit LayerNorms must change too
        for param in student.parameters():
            param.add_(torch.randn_like(param))
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    report = init_student_from_teacher(student, tiny_teacher)

    pairs = expected_pairs(7, {0: 0, 1: 1})
    assert sorted(report["copied"]) == sorted(pairs)
    assert report["teacher_only"] == ["feature_projection.layer_norm.weight", "feature_projection.layer_norm.bias"]
    assert report["student_not_initialised"] == PRED_HEAD
    s_params = dict(student.named_parameters())
    t_params = dict(tiny_teacher.model.named_parameters())
    for s_name, t_name in pairs.items():
        assert torch.equal(s_params[s_name], t_params[t_name]), s_name
        assert not torch.equal(before[s_name], s_params[s_name]), s_name
    for name in PRED_HEAD:
        assert torch.equal(before[name], s_params[name])
    # Effective (weight-normed) positional conv weight, and requires_grad untouched.
    assert torch.equal(student.encoder.pos_conv.conv.weight, tiny_teacher.model.encoder.pos_conv_embed.conv.weight)
    assert all(p.requires_grad for p in student.parameters())


def test_cnn_output_equals_teacher(tiny_teacher):
    student = tiny_student(tiny_teacher)
    init_student_from_teacher(student, tiny_teacher)
    wavs = waveform()
    with torch.no_grad():
        ours = student.feature_extractor(wavs)
        theirs = tiny_teacher.model.feature_extractor(wavs)
    assert ours.shape == theirs.shape == (2, 32, 12)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_encoder_matches_teacher_layers_1_2(tiny_teacher):
    """Fed the teacher's projected features, the student encoder gives teacher hidden_states[1:3]."""
    student = tiny_student(tiny_teacher)
    init_student_from_teacher(student, tiny_teacher)
    wavs = waveform()
    model = tiny_teacher.model
    with torch.no_grad():
        target = tiny_teacher(wavs).hidden_states
        projected = model.feature_projection(model.feature_extractor(wavs).transpose(1, 2))
        out = student.encoder(projected)
    torch.testing.assert_close(out.pre_transformer, target[0], atol=1e-5, rtol=1e-5)
    for j in range(2):
        torch.testing.assert_close(out.hidden_states[j], target[j + 1], atol=1e-5, rtol=1e-5)


def test_feature_layer_norm_student_matches_teacher_end_to_end(tiny_teacher):
    """A student with a feature LayerNorm gets the teacher's one too; then the whole forward matches."""
    student = tiny_student(tiny_teacher, feature_layer_norm=True)
    report = init_student_from_teacher(student, tiny_teacher)
    assert "feature_layer_norm.weight" in report["copied"]
    assert report["teacher_only"] == []
    wavs = waveform(seed=3)
    with torch.no_grad():
        target = tiny_teacher(wavs).hidden_states
        ours = student(wavs)
    torch.testing.assert_close(ours.pre_transformer, target[0], atol=1e-5, rtol=1e-5)
    for j in range(2):
        torch.testing.assert_close(ours.hidden_states[j], target[j + 1], atol=1e-5, rtol=1e-5)


def test_chosen_teacher_layers_layer_by_layer(tiny_teacher):
    student = tiny_student(tiny_teacher)
    report = init_student_from_teacher(student, tiny_teacher, encoder_layers=[4, 3])
    pairs = expected_pairs(7, {0: 3, 1: 2})
    assert sorted(report["copied"]) == sorted(pairs)
    x = torch.randn(2, 9, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for s, t in ((0, 3), (1, 2)):
            ours, _, _ = student.encoder.layers[s](x)
            theirs = tiny_teacher.model.encoder.layers[t](x)
            theirs = theirs[0] if isinstance(theirs, tuple) else theirs
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_reuse_layer_copies_only_v_and_out(tiny_teacher):
    student = tiny_student(tiny_teacher, reuse_pattern=[True, False])
    report = init_student_from_teacher(student, tiny_teacher)
    qk = [f"encoder.layers.1.attention.{p}.{k}" for p in ("k_proj", "q_proj") for k in ("weight", "bias")]
    assert sorted(report["teacher_only"]) == sorted(qk + ["feature_projection.layer_norm.weight",
                                                          "feature_projection.layer_norm.bias"])
    assert "encoder.layers.1.self_attn.v_proj.weight" in report["copied"]
    assert not any("layers.1.self_attn.q_proj" in n or "layers.1.self_attn.k_proj" in n for n in report["copied"])
    t_params = dict(tiny_teacher.model.named_parameters())
    for p in ("v_proj", "out_proj"):
        assert torch.equal(getattr(student.encoder.layers[1].self_attn, p).weight,
                           t_params[f"encoder.layers.1.attention.{p}.weight"])


def test_parts_can_be_switched_off(tiny_teacher):
    student = tiny_student(tiny_teacher)
    report = init_student_from_teacher(student, tiny_teacher, conv=False, projection=False, pos_conv=False,
                                       encoder_layers=[])
    assert report["copied"] == [] and report["teacher_only"] == []
    assert report["student_not_initialised"] == [n for n, _ in student.named_parameters()]

    report = init_student_from_teacher(tiny_student(tiny_teacher), tiny_teacher, projection=False,
                                       pos_conv=False, encoder_layers=[])
    assert report["copied"] == [
        "feature_extractor.conv_layers.0.conv.weight",
        "feature_extractor.conv_layers.0.norm.weight",
        "feature_extractor.conv_layers.0.norm.bias",
    ] + [f"feature_extractor.conv_layers.{i}.conv.weight" for i in range(1, 7)]
    assert report["teacher_only"] == []
    # Only the first student layer from teacher layer 2; the second stays as it was.
    report = init_student_from_teacher(tiny_student(tiny_teacher), tiny_teacher, encoder_layers=[2])
    assert "encoder.layers.0.fc1.weight" in report["copied"]
    assert "encoder.layers.1.fc1.weight" in report["student_not_initialised"]


def test_width_mismatch_raises_listing_parameters(tiny_teacher):
    student = tiny_student(tiny_teacher, embed_dim=48, ffn_dim=96)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    with pytest.raises(ValueError) as info:
        init_student_from_teacher(student, tiny_teacher)
    message = str(info.value)
    for expected in (
        "post_extract_proj.weight (48, 32) <- feature_projection.projection.weight (64, 32)",
        "encoder.pos_conv.conv.weight (48, 12, 16) <- encoder.pos_conv_embed.conv.weight (64, 16, 16)",
        "encoder.layer_norm.weight (48,)",
        "encoder.layers.0.self_attn.q_proj.weight (48, 48)",
        "encoder.layers.1.fc1.weight (96, 48) <- encoder.layers.1.feed_forward.intermediate_dense.weight (128, 64)",
    ):
        assert expected in message
    assert "feature_extractor" not in message  # the CNN matches
    # Nothing was written.
    for name, param in student.named_parameters():
        assert torch.equal(before[name], param), name


def test_cnn_depth_heads_and_layer_ids_checked(tiny_teacher):
    star_cnn = [(32, 10, 5), (32, 1, 1)] + [(32, 3, 2)] * 4 + [(32, 1, 1)] + [(32, 2, 2)] * 2
    with pytest.raises(ValueError, match="student CNN has 9 blocks, teacher CNN 7"):
        init_student_from_teacher(tiny_student(tiny_teacher, conv_layers=star_cnn), tiny_teacher)
    with pytest.raises(ValueError, match="8 attention heads, teacher 4"):
        init_student_from_teacher(tiny_student(tiny_teacher, num_heads=8), tiny_teacher)
    for layers in ([0], [5], [1, 2, 3]):
        with pytest.raises(ValueError, match="encoder_layers"):
            init_student_from_teacher(tiny_student(tiny_teacher), tiny_teacher, encoder_layers=layers)
    deep = tiny_student(tiny_teacher, num_layers=5, reuse_pattern=None)
    with pytest.raises(ValueError, match="student has 5 layers but the teacher only 4"):
        init_student_from_teacher(deep, tiny_teacher)


@pytest.mark.parametrize("override", [dict(do_stable_layer_norm=True), dict(feat_extract_norm="layer")])
def test_incompatible_teacher_settings_raise(override):
    config = get_config("tiny_hubert", **override)
    torch.manual_seed(0)
    model = model_class_for(config)(config)
    student = tiny_student(load_teacher("tiny_hubert"))
    with pytest.raises(ValueError, match="pre-LN|feat_extract_norm"):
        init_student_from_teacher(student, model)


@pytest.mark.parametrize("layout", ["plain", "buffer", "old_weight_norm"])
def test_pos_conv_other_weight_layouts_copy_effective_weight(tiny_teacher, layout):
    model = load_teacher("tiny_hubert", seed=0).model  # a bare transformers model is accepted too
    conv = model.encoder.pos_conv_embed.conv
    weight = conv.weight.detach().clone()
    if layout != "buffer":  # frozen originals are left behind as a buffer
        conv.requires_grad_(True)
    parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    assert ("weight" in conv._buffers) == (layout == "buffer")
    if layout == "old_weight_norm":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.nn.utils.weight_norm(conv, "weight", dim=0)  # another layout: g over output channels
    student = tiny_student(tiny_teacher)
    report = init_student_from_teacher(student, model)
    assert "encoder.pos_conv.conv.parametrizations.weight.original0" in report["copied"]
    assert "encoder.pos_conv.conv.parametrizations.weight.original1" in report["copied"]
    assert not any(n.startswith("encoder.pos_conv_embed") for n in report["teacher_only"])
    ours = student.encoder.pos_conv.conv
    torch.testing.assert_close(ours.weight, weight, atol=1e-6, rtol=1e-6)
    assert parametrize.is_parametrized(ours, "weight")
    g = ours.parametrizations.weight.original0
    assert g.shape == (1, 1, 16)
    torch.testing.assert_close(g, torch.norm_except_dim(weight, 2, 2))


def test_wavlm_relative_position_parameters_reported():
    teacher = load_teacher("tiny_wavlm", seed=0)
    report = init_student_from_teacher(tiny_student(teacher), teacher)
    assert "encoder.layers.0.attention.rel_attn_embed.weight" in report["teacher_only"]
    assert "encoder.layers.1.attention.gru_rel_pos_linear.weight" in report["teacher_only"]
    assert "encoder.layers.2.attention.gru_rel_pos_linear.weight" not in report["teacher_only"]  # not requested
    assert report["student_not_initialised"] == PRED_HEAD


def test_full_size_distilhubert_from_hubert_base():
    teacher = load_teacher("hubert_base", seed=0)
    torch.manual_seed(0)
    student = build_student("distilhubert")
    report = init_student_from_teacher(student, teacher)

    params = dict(student.named_parameters())
    copied = sum(params[n].numel() for n in report["copied"])
    cnn, projection, pos_conv, encoder_ln, layer = 4_200_448, 393_984, 4_719_488, 1_536, 7_087_872
    assert copied == cnn + projection + pos_conv + encoder_ln + 2 * layer == 23_491_200
    assert copied == count_parameters(student, exclude=("pred_head",))
    assert len(report["copied"]) == len(expected_pairs(7, {0: 0, 1: 1})) == 48
    assert report["teacher_only"] == ["feature_projection.layer_norm.weight", "feature_projection.layer_norm.bias"]
    assert report["student_not_initialised"] == PRED_HEAD
    t_params = dict(teacher.model.named_parameters())
    for s_name, t_name in expected_pairs(7, {0: 0, 1: 1}).items():
        assert torch.equal(params[s_name], t_params[t_name]), s_name

    # A 432-wide STaR student against the 768-wide teacher: everything mismatched is listed.
    with pytest.raises(ValueError) as info:
        init_student_from_teacher(build_student("starhubert"), teacher)
    message = str(info.value)
    assert "student CNN has 9 blocks, teacher CNN 7" in message
    assert "encoder.layers.0.self_attn.q_proj.weight (432, 432) <- encoder.layers.0.attention.q_proj.weight (768, 768)" in message
    assert "encoder.layers.11.final_layer_norm.bias (432,)" in message
