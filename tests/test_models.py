"""Tests for the student model family (audio_compress.models).

Full-size students are built on the meta device (shapes and counts without memory
or compute); numerical properties are checked on the tiny registered variants.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from conftest import FULL_COUNTS

from audio_compress.frames import num_frames
from audio_compress.models import (
    StudentConfig,
    StudentModel,
    build_student,
    count_parameters,
    get_student_config,
    list_students,
    load_student,
    read_student_checkpoint,
    save_student,
)
from audio_compress.models.cnn import ConvFeatureExtractor
from audio_compress.models.config import _cnn
from audio_compress.models.transformer import PositionalConv, TransformerLayer, layer_grad_scales, scale_grad


def _meta(name: str, **overrides) -> StudentModel:
    with torch.device("meta"):
        return build_student(name, **overrides)


def _tiny(name: str, seed: int = 0, **overrides) -> StudentModel:
    torch.manual_seed(seed)
    return build_student(name, **overrides).eval()


def _wavs(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


def test_registry_names():
    assert list_students() == sorted(
        ["starhubert", "starhubert_l", "armhubert", "armhubert_s", "maskhubert", "distilhubert",
         "tiny_star", "tiny_arm", "tiny_distil"]
    )
    with pytest.raises(ValueError, match="unknown student"):
        get_student_config("nope")
    assert get_student_config("armhubert").reuse_pattern == [True, False] * 6
    assert get_student_config("starhubert", num_heads=8).num_heads == 8


@pytest.mark.parametrize("name", sorted(FULL_COUNTS))
def test_exact_parameter_counts(name):
    assert count_parameters(_meta(name)) == FULL_COUNTS[name]


def test_distilhubert_count_without_heads_and_arm_bodies():
    assert count_parameters(_meta("distilhubert"), exclude=("pred_head",)) == 23_491_200
    assert count_parameters(_meta("armhubert"), exclude=("proj_heads",)) == 22_015_552
    assert count_parameters(_meta("armhubert_s"), exclude=("proj_heads",)) == 18_403_552


def test_component_counts():
    with torch.device("meta"):
        full_432 = TransformerLayer(432, 976, 12, 0.1, 0.1, 0.1)
        full_480 = TransformerLayer(480, 864, 12, 0.1, 0.1, 0.1)
        reuse_480 = TransformerLayer(480, 864, 12, 0.1, 0.1, 0.1, computes_attention=False)
        cnn_432, cnn_480 = ConvFeatureExtractor(_cnn(432)), ConvFeatureExtractor(_cnn(480))
        pos_432, pos_480 = PositionalConv(432, 128, 16), PositionalConv(480, 128, 16)
    assert count_parameters(full_432) == 1_594_624
    assert count_parameters(full_480) == 1_756_224
    assert count_parameters(reuse_480) == 1_294_464
    assert count_parameters(cnn_432) == 1_677_824
    assert count_parameters(cnn_480) == 1_865_216
    assert count_parameters(pos_432) == 1_493_552
    assert count_parameters(pos_480) == 1_843_808
    # Weight norm over dim 2: one magnitude per kernel tap.
    assert pos_432.conv.parametrizations.weight.original0.numel() == 128


def test_full_size_shapes_on_meta():
    with torch.device("meta"):
        wavs = torch.zeros(2, 16000)
    star = _meta("starhubert")(wavs)
    assert len(star.hidden_states) == 12 and all(h.shape == (2, 49, 432) for h in star.hidden_states)
    assert star.projections is None and star.predictions is None
    star_l = _meta("starhubert_l")
    assert all(h.shape == (2, 49, 480) for h in star_l.upstream_hidden_states(star_l(wavs)))
    arm = _meta("armhubert")
    arm_out = arm(wavs)
    assert len(arm_out.projections) == 12 and all(p.shape == (2, 49, 768) for p in arm_out.projections)
    assert all(p.shape == (2, 49, 768) for p in arm.upstream_hidden_states(arm_out))
    distil = _meta("distilhubert")
    distil_out = distil(wavs)
    assert distil_out.predictions.shape == (2, 3, 49, 768)
    upstream = distil.upstream_hidden_states(distil_out)
    assert len(upstream) == 6 and all(h.shape == (2, 49, 768) for h in upstream)


def test_one_real_forward_full_size():
    torch.manual_seed(0)
    model = build_student("armhubert").eval()
    with torch.no_grad():
        out = model(_wavs(1, 16000))
    assert all(p.shape == (1, 49, 768) and torch.isfinite(p).all() for p in out.projections)
    assert all(h.shape == (1, 49, 480) for h in out.hidden_states)


@pytest.mark.parametrize("length", [16000, 32000, 400, 719, 720])
@pytest.mark.parametrize("name", ["tiny_star", "tiny_arm", "tiny_distil"])
def test_tiny_shapes_follow_frame_formula(name, length):
    model = _tiny(name)
    cfg = model.config
    frames = num_frames(length)
    with torch.no_grad():
        out = model(_wavs(2, length), output_attentions=True)
    assert frames == {16000: 49, 32000: 99}.get(length, frames)
    assert out.pre_transformer.shape == (2, frames, cfg.embed_dim)
    assert out.padding_mask.shape == (2, frames) and not out.padding_mask.any()
    assert len(out.hidden_states) == cfg.num_layers
    assert all(h.shape == (2, frames, cfg.embed_dim) for h in out.hidden_states)
    assert all(a.shape == (2, cfg.num_heads, frames, frames) for a in out.attentions)
    upstream = model.upstream_hidden_states(out)
    assert len({h.shape for h in upstream}) == 1
    if name == "tiny_distil":
        assert out.predictions.shape == (2, 3, frames, cfg.embed_dim)
        assert len(upstream) == 1 + cfg.num_layers + 3


def test_too_short_input_is_rejected():
    with pytest.raises(ValueError, match="at least 400"):
        _tiny("tiny_star")(torch.zeros(1, 399))


def test_reuse_is_per_sample_and_per_head():
    model = _tiny("tiny_arm")
    wavs = _wavs(3, 16000)
    with torch.no_grad():
        batched = model(wavs, output_attentions=True)
        single = model(wavs[:1], output_attentions=True)
        repeated = model(wavs[:1].repeat(3, 1))
    for layer in range(model.config.num_layers):
        for row in range(3):
            torch.testing.assert_close(repeated.hidden_states[layer][row], single.hidden_states[layer][0],
                                       rtol=0, atol=1e-5)
        torch.testing.assert_close(batched.hidden_states[layer][0], single.hidden_states[layer][0],
                                   rtol=0, atol=1e-5)
    # Reuse layers apply exactly the previous layer's map.
    assert torch.equal(batched.attentions[1], batched.attentions[0])
    assert torch.equal(batched.attentions[3], batched.attentions[2])
    assert not torch.equal(batched.attentions[2], batched.attentions[0])


def _compat_pair() -> tuple[StudentModel, StudentModel]:
    """Default and release-compat tiny ARM students with identical, sharpened weights.

    At initialisation attention is nearly uniform, which would hide the quirks;
    scaling Q and K makes the computed maps peaked.
    """
    model = _tiny("tiny_arm")
    with torch.no_grad():
        for layer in model.encoder.layers:
            if layer.computes_attention:
                layer.self_attn.q_proj.weight.mul_(10.0)
                layer.self_attn.k_proj.weight.mul_(10.0)
    compat = build_student("tiny_arm", arm_release_compat=True).eval()
    compat.load_state_dict(model.state_dict())
    return model, compat


def test_release_compat_breaks_batch_invariance():
    model, compat = _compat_pair()
    wavs = _wavs(3, 4000)
    with torch.no_grad():
        batched, single = compat(wavs, output_attentions=True), compat(wavs[:1], output_attentions=True)
        correct_batched, correct_single = model(wavs), model(wavs[:1])
    # The default reuse stays batch-invariant with the same sharpened weights.
    for layer in range(4):
        torch.testing.assert_close(correct_batched.hidden_states[layer][0], correct_single.hidden_states[layer][0],
                                   rtol=0, atol=1e-5)
    # Layer 0 computes its own attention, so it is still batch-invariant ...
    torch.testing.assert_close(batched.hidden_states[0][0], single.hidden_states[0][0], rtol=0, atol=1e-5)
    # ... but the first reuse layer mixes maps across samples and heads.
    assert (batched.attentions[1][0] - single.attentions[1][0]).abs().max() > 0.05
    assert (batched.hidden_states[1][0] - single.hidden_states[1][0]).abs().max() > 1e-3


def test_release_compat_double_softmax_flattens_maps():
    model, compat = _compat_pair()
    wavs = _wavs(1, 16000)
    with torch.no_grad():
        correct = model(wavs, output_attentions=True)
        released = compat(wavs, output_attentions=True)
    computed, reused = released.attentions[0], released.attentions[1]
    torch.testing.assert_close(computed, correct.attentions[0])
    torch.testing.assert_close(reused, computed.softmax(dim=-1))

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp_min(1e-30).log()).sum(-1)

    assert (entropy(reused) > entropy(computed) - 1e-6).all()
    assert reused.max() < computed.max()
    # Probabilities lie in [0, 1], so any two re-softmaxed weights differ by at most e.
    assert (reused.amax(-1) / reused.amin(-1)).max() <= math.e + 1e-4


@pytest.mark.parametrize("name", ["tiny_star", "tiny_arm", "tiny_distil"])
def test_padding_invariance(name):
    model = _tiny(name)
    short, long_ = 16000, 24321
    wavs = _wavs(2, long_)
    padding_mask = torch.zeros(2, long_, dtype=torch.bool)
    padding_mask[0, short:] = True
    # Padded samples hold noise: only the mask may decide what counts as valid.
    wavs[0, short:] = 3.0 * torch.randn(long_ - short)
    with torch.no_grad():
        padded = model(wavs, padding_mask, output_attentions=True)
        alone = model(wavs[:1, :short], output_attentions=True)
    valid = num_frames(short)
    assert padded.padding_mask[0].tolist() == [False] * valid + [True] * (num_frames(long_) - valid)
    assert not padded.padding_mask[1].any()
    pairs = [(padded.features, alone.features), (padded.pre_transformer, alone.pre_transformer)]
    pairs += list(zip(padded.hidden_states, alone.hidden_states))
    pairs += list(zip(model.upstream_hidden_states(padded), model.upstream_hidden_states(alone)))
    for got, want in pairs:
        torch.testing.assert_close(got[0, :valid], want[0], rtol=0, atol=1e-5)
    for attn in padded.attentions:
        assert torch.all(attn[0, :, :, valid:] == 0)


def test_mask_embedding_written_exactly_at_masked_frames():
    model = _tiny("tiny_arm")
    frames = num_frames(16000)
    frame_mask = torch.zeros(2, frames, dtype=torch.bool)
    frame_mask[0, 3:13] = True
    frame_mask[1, 20:25] = True
    seen = {}
    model.mask_emb.register_forward_hook(lambda mod, args, out: seen.update(inp=args[0], out=out))
    with torch.no_grad():
        masked = model(_wavs(2, 16000), frame_mask=frame_mask)
        plain = model(_wavs(2, 16000))
    inp, out = seen["inp"], seen["out"]
    assert torch.equal(out[frame_mask], model.mask_emb.weight.expand(int(frame_mask.sum()), -1))
    assert torch.equal(out[~frame_mask], inp[~frame_mask])
    assert not torch.allclose(masked.hidden_states[-1], plain.hidden_states[-1])
    with pytest.raises(ValueError, match="no mask embedding"):
        _tiny("tiny_star")(_wavs(2, 16000), frame_mask=frame_mask)
    with pytest.raises(ValueError, match="frame_mask"):
        model(_wavs(2, 16000), frame_mask=frame_mask[:, :-1])


def test_scale_grad_and_factors():
    assert layer_grad_scales(4) == [4 / 5, 3 / 4, 2 / 3, 1 / 2]
    scales = layer_grad_scales(12)
    assert scales[0] == pytest.approx(12 / 13) and scales[-1] == pytest.approx(0.5)
    x = torch.randn(5, requires_grad=True)
    y = scale_grad(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((5,), 0.25))


@pytest.mark.parametrize(
    ("reuse_pattern", "target", "first_exact"),
    [
        ([True] * 4, 3, 0),
        ([True, False, True, False], 1, 0),
        # Layer 3 reuses layer 2's map, which is computed from layer 2's input and so
        # reaches layer 3 without the m_2 factor: layers before 2 get a mix of paths.
        ([True, False, True, False], 3, 2),
    ],
)
def test_layer_grad_scaling_gradients(reuse_pattern, target, first_exact):
    # float64 so that the comparison is exact up to rounding, not float32 noise.
    scaled = _tiny("tiny_arm", reuse_pattern=reuse_pattern).double()
    plain = build_student("tiny_arm", reuse_pattern=reuse_pattern, layer_grad_scale=False).eval().double()
    plain.load_state_dict(scaled.state_dict())
    wavs = _wavs(2, 16000).double()
    weight = torch.randn(2, num_frames(16000), 64, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    outputs = []
    for model in (scaled, plain):
        out = model(wavs)
        (out.hidden_states[target] * weight).sum().backward()
        outputs.append(out)
    for a, b in zip(outputs[0].hidden_states, outputs[1].hidden_states):
        assert torch.equal(a, b)  # forward identity
    m = layer_grad_scales(scaled.config.num_layers)
    # Layer j's output reaches the distillation copy of layer `target` through the
    # next-layer paths of layers j..target-1 and the copy of `target`.
    for layer in range(first_exact, target + 1):
        expected = math.prod(m[layer:target + 1]) * (1.0 - m[target])
        got = scaled.encoder.layers[layer].fc2.weight.grad
        want = plain.encoder.layers[layer].fc2.weight.grad
        torch.testing.assert_close(got, want * expected, rtol=1e-9, atol=1e-12)
    # The projection heads sit after the distillation copy: their gradient is unscaled.
    torch.testing.assert_close(scaled.proj_heads[target].weight.grad, plain.proj_heads[target].weight.grad)


def test_feature_grad_mult_scales_cnn_gradient():
    grads = []
    for mult in (0.1, 1.0):
        model = _tiny("tiny_distil", feature_grad_mult=mult)
        out = model(_wavs(1, 16000))
        (out.predictions * torch.linspace(-1, 1, 64)).sum().backward()
        grads.append(model.feature_extractor.conv_layers[-1].conv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1] * 0.1)


def test_zero_feature_grad_mult_freezes_the_cnn_under_weight_decay():
    model = _tiny("tiny_distil", feature_grad_mult=0.0)
    before = {k: v.clone() for k, v in model.feature_extractor.state_dict().items()}
    reference = model(_wavs(1, 16000)).predictions.detach()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.5)
    out = model(_wavs(1, 16000))
    (out.predictions * torch.linspace(-1, 1, 64)).sum().backward()
    # no gradient at all (a zero one would still be decayed by AdamW), so the step leaves the CNN as it is
    assert all(p.grad is None and not p.requires_grad for p in model.feature_extractor.parameters())
    assert model.encoder.layers[0].fc1.weight.grad is not None
    opt.step()
    assert all(torch.equal(v, before[k]) for k, v in model.feature_extractor.state_dict().items())
    torch.testing.assert_close(out.predictions.detach(), reference)  # the forward pass is unchanged
    with pytest.raises(ValueError, match="feature_grad_mult must be >= 0"):
        get_student_config("tiny_distil", feature_grad_mult=-0.1)


def test_reuse_pattern_validation():
    with pytest.raises(ValueError, match="first layer"):
        get_student_config("tiny_arm", reuse_pattern=[False, True, True, False])
    with pytest.raises(ValueError, match="reuse_pattern has 3 entries"):
        get_student_config("tiny_arm", reuse_pattern=[True, False, True])
    with pytest.raises(ValueError, match="divisible"):
        get_student_config("tiny_star", num_heads=5)
    with pytest.raises(ValueError, match="receptive field"):
        get_student_config("tiny_star", conv_layers=[(32, 10, 5)])
    with pytest.raises(ValueError, match="needs proj_dim"):
        get_student_config("tiny_star", upstream_outputs="projections")


def test_config_round_trip():
    cfg = get_student_config("tiny_arm")
    assert StudentConfig.from_dict(asdict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown StudentConfig fields"):
        StudentConfig.from_dict({**asdict(cfg), "bogus": 1})


def test_save_load_round_trip(tmp_path):
    model = _tiny("tiny_arm", seed=3)
    path = save_student(model, tmp_path / "ckpt" / "student.pt", extra={"step": 10, "teacher": "hubert_base"})
    assert [p.name for p in path.parent.iterdir()] == ["student.pt"]  # no temporary file left
    payload = read_student_checkpoint(path)
    assert payload["format"] == "compact-ssl-student" and payload["version"] == 1
    assert payload["name"] == "tiny_arm" and payload["extra"] == {"step": 10, "teacher": "hubert_base"}
    loaded = load_student(path).eval()
    assert loaded.config == model.config
    wavs = _wavs(2, 16000)
    with torch.no_grad():
        a, b = model(wavs), loaded(wavs)
    for x, y in zip(a.projections + a.hidden_states, b.projections + b.hidden_states):
        assert torch.equal(x, y)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_student(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a compact-ssl-student checkpoint"):
        load_student(other)
    path = save_student(_tiny("tiny_star"), tmp_path / "student.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["surplus.weight"] = payload["state_dict"].pop("encoder.layer_norm.weight")
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"missing keys: \['encoder.layer_norm.weight'\].*surplus.weight"):
        load_student(path)
