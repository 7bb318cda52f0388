"""Tests for audio_compress.teachers: frozen wrapper, named architectures, loading, fairseq conversion."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import make_wave_data_dir
from fairseq_fixtures import (
    format_conv_feature_layers,
    transformers_to_fairseq_config,
    transformers_to_fairseq_state_dict,
)
from pickle_payloads import write_payload_checkpoint
from torch import nn
from transformers import HubertModel, Wav2Vec2Model, WavLMModel

from audio_compress.frames import frame_padding_mask, num_frames
from audio_compress.teachers import (
    FairseqConversionError,
    FrozenTeacher,
    architecture_names,
    convert_fairseq_state_dict,
    fairseq_to_transformers_config,
    get_config,
    load_fairseq_checkpoint,
    load_teacher,
    parse_conv_feature_layers,
    save_teacher,
)
from audio_compress.teachers.configs import model_class_for
from compact_ssl import unpickle as safe_unpickle

TINY = ["tiny_hubert", "tiny_wavlm", "tiny_wav2vec2"]


def _wavs(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, generator=gen)


def _tiny(name: str = "tiny_hubert", seed: int = 0, **overrides) -> FrozenTeacher:
    config = get_config(name, **overrides)
    torch.manual_seed(seed)
    return FrozenTeacher(model_class_for(config)(config), name=name)


# ----------------------------------------------------------------------------- architectures


def _layer_params(d: int, f: int) -> int:
    return 4 * (d * d + d) + 2 * 2 * d + (d * f + f) + (f * d + d)


@pytest.mark.parametrize(
    "name, model_cls, expected",
    [
        # HuBERT Base encoder-only (HubertModel: no final_proj, no label embeddings) from the
        # reference: 94,371,712. That count INCLUDES the 768-d mask embedding (fairseq mask_emb,
        # transformers masked_spec_embed): 94,697,600 (published total) - 196,864 (final_proj
        # 768->256) - 129,024 (504 x 256 label embeddings) = 94,371,712.
        ("hubert_base", HubertModel, 94_371_712),
        ("wav2vec2_base", Wav2Vec2Model, 94_371_712),
        # WavLM adds per layer a gate Linear(64 -> 8) and a (1, 12, 1, 1) constant, and layer 0
        # a 320 x 12 relative position bias: 12 * (64 * 8 + 8 + 12) + 320 * 12 = 10,224.
        ("wavlm_base", WavLMModel, 94_371_712 + 10_224),
    ],
)
def test_base_parameter_counts_and_layout(name, model_cls, expected):
    config = get_config(name)
    with torch.device("meta"):
        model = model_cls(config)
    named = dict(model.named_parameters())
    assert sum(p.numel() for p in named.values()) == expected
    assert named["masked_spec_embed"].numel() == 768
    # fairseq HuBERT Base layout
    assert list(config.conv_kernel) == [10, 3, 3, 3, 3, 2, 2]
    assert list(config.conv_stride) == [5, 2, 2, 2, 2, 2, 2]
    assert list(config.conv_dim) == [512] * 7
    assert not any(k.startswith("feature_extractor") and k.endswith("conv.bias") for k in named)
    assert isinstance(model.feature_extractor.conv_layers[0].layer_norm, nn.GroupNorm)
    assert model.feature_extractor.conv_layers[0].layer_norm.num_groups == 512
    assert not hasattr(model.feature_extractor.conv_layers[1], "layer_norm")
    assert named["feature_projection.layer_norm.weight"].shape == (512,)
    assert named["feature_projection.projection.weight"].shape == (768, 512)
    assert type(model.encoder).__name__.endswith("Encoder")  # post-LN, not StableLayerNorm
    conv = model.encoder.pos_conv_embed.conv
    assert conv.kernel_size == (128,) and conv.groups == 16
    assert named["encoder.pos_conv_embed.conv.parametrizations.weight.original0"].shape == (1, 1, 128)
    assert len(model.encoder.layers) == 12
    layer1 = sum(p.numel() for k, p in named.items() if k.startswith("encoder.layers.1."))
    gate = (64 * 8 + 8 + 12) if name == "wavlm_base" else 0  # WavLM gated relative position bias
    assert layer1 == _layer_params(768, 3072) + gate
    assert _layer_params(768, 3072) == 7_087_872
    assert config.num_attention_heads == 12 and config.intermediate_size == 3072


def test_architecture_names_and_unknown():
    assert {"hubert_base", "wavlm_base", "wav2vec2_base", "tiny_hubert", "tiny_wavlm"} <= set(architecture_names())
    with pytest.raises(KeyError, match="tiny_hubert"):
        get_config("hubert_huge")


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("length", [400, 401, 719, 720, 16_000, 32_000, 250_000])
def test_frame_counts(length):
    teacher = _tiny()
    out = teacher(_wavs(1, length))
    frames = num_frames(length)
    assert frames == {16_000: 49, 32_000: 99, 250_000: 781}.get(length, frames)
    assert all(h.shape == (1, frames, 64) for h in out.hidden_states)
    assert out.padding_mask.shape == (1, frames) and not out.padding_mask.any()


def test_too_short_and_bad_shapes():
    teacher = _tiny()
    with pytest.raises(ValueError, match="receptive field"):
        teacher(_wavs(1, 399))
    pad = torch.zeros(2, 1000, dtype=torch.bool)
    pad[1, 300:] = True
    with pytest.raises(ValueError, match="receptive field"):
        teacher(_wavs(2, 1000), pad)
    with pytest.raises(ValueError, match="padding_mask shape"):
        teacher(_wavs(2, 1000), pad[:, :999])
    with pytest.raises(ValueError, match="frame_mask"):
        teacher(_wavs(2, 1000), frame_mask=torch.zeros(2, 5, dtype=torch.bool))


def test_properties():
    teacher = _tiny("tiny_wavlm")
    assert (teacher.num_layers, teacher.hidden_size, teacher.num_heads) == (4, 64, 4)
    assert teacher.downsample_rate == 320 and teacher.model_type == "wavlm"
    with pytest.raises(TypeError):
        FrozenTeacher(nn.Linear(2, 2))


@pytest.mark.parametrize("name", TINY)
def test_hidden_states_index_zero_is_encoder_input(name):
    teacher = _tiny(name)
    wavs = _wavs(2, 8000)
    out = teacher(wavs)
    assert len(out.hidden_states) == teacher.num_layers + 1
    model = teacher.model
    with torch.no_grad():
        feats = model.feature_extractor(wavs).transpose(1, 2)
        projected = model.feature_projection(feats)
        if isinstance(projected, tuple):  # wav2vec2 / WavLM also return the normalised features
            projected = projected[0]
        x = projected + model.encoder.pos_conv_embed(projected)
        x = model.encoder.layer_norm(x)
        torch.testing.assert_close(out.hidden_states[0], x, rtol=0, atol=1e-6)
        first = model.encoder.layers[0](x)
        first = first[0] if isinstance(first, tuple) else first
    torch.testing.assert_close(out.hidden_states[1], first, rtol=0, atol=1e-5)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)  # post-LN
    assert not torch.allclose(out.hidden_states[1], out.hidden_states[2])


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("name", TINY)
def test_padding_invariance_layer_norm_extractor(name):
    teacher = _tiny(name, feat_extract_norm="layer", conv_bias=True)
    short, long = 9_000, 16_000
    wav = _wavs(1, short, seed=1)
    garbage = 5 * _wavs(1, long - short, seed=2)
    batch = torch.cat([torch.cat([wav, garbage], dim=1), _wavs(1, long, seed=3)])
    pad = torch.zeros(2, long, dtype=torch.bool)
    pad[0, short:] = True
    padded = teacher(batch, pad, output_attentions=True)
    alone = teacher(wav, output_attentions=True)
    valid = num_frames(short)
    assert torch.equal(padded.padding_mask, frame_padding_mask(pad, num_frames(long)))
    assert int((~padded.padding_mask[0]).sum()) == valid
    for h_pad, h_alone in zip(padded.hidden_states, alone.hidden_states):
        torch.testing.assert_close(h_pad[0, :valid], h_alone[0], rtol=0, atol=1e-5)
    for a_pad, a_alone in zip(padded.attentions, alone.attentions):
        assert a_pad[0, :, :valid, valid:].abs().max() == 0  # padded keys get no weight
        torch.testing.assert_close(a_pad[0, :, :valid, :valid], a_alone[0], rtol=0, atol=1e-5)


def test_group_norm_extractor_padding_limitation():
    """GroupNorm in CNN block 0 normalises over the whole (padded) time axis, as in fairseq.

    Padded samples are zeroed, so their content never matters, but the amount of padding
    still shifts the block-0 statistics: exact padding invariance is impossible there.
    """
    teacher = _tiny("tiny_hubert")
    short, long = 9_000, 16_000
    wav = _wavs(1, short, seed=1)
    pad = torch.zeros(1, long, dtype=torch.bool)
    pad[0, short:] = True
    with_garbage = teacher(torch.cat([wav, 5 * _wavs(1, long - short, seed=2)], dim=1), pad)
    with_zeros = teacher(torch.cat([wav, torch.zeros(1, long - short)], dim=1), pad)
    for a, b in zip(with_garbage.hidden_states, with_zeros.hidden_states):
        assert torch.equal(a, b)
    alone = teacher(wav)
    valid = num_frames(short)
    assert (with_zeros.hidden_states[-1][0, :valid] - alone.hidden_states[-1][0]).abs().max() > 1e-4


def _fairseq_forward_padding_mask(padding_mask: torch.Tensor, frames: int) -> torch.Tensor:
    """fairseq 0.12 ``HubertModel.forward_padding_mask`` restated from its definition: drop the
    ``L % T`` trailing samples of the sample-level mask, view it as ``(B, T, -1)`` (chunks of
    ``L // T`` samples) and mark a frame padded only when all samples of its chunk are."""
    extra = padding_mask.size(1) % frames
    if extra > 0:
        padding_mask = padding_mask[:, :-extra]
    return padding_mask.view(padding_mask.size(0), frames, -1).all(-1)


@pytest.mark.parametrize("padded, valid, fairseq_valid", [
    (160_000, 77_000, 241),  # chunks of 320: one frame more than the formula's 240
    (160_000, 76_850, 241),  # 76,850 mod 320 = 50 < 80: two more than the formula's 239
    (160_000, 76_800, 240),  # a multiple of 320: one more than 239
    (80_000, 77_000, 240),  # a shorter batch: chunks of 321, no extra frame
])
def test_valid_frames_follow_the_conv_formula_not_fairseq_chunks(padded, valid, fairseq_valid):
    """The teacher keeps the conv-length rule (as transformers, the students and the losses do);
    fairseq's forward_padding_mask counts more valid frames, depending on the batch's padded length."""
    frames = num_frames(padded)
    pad = torch.zeros(2, padded, dtype=torch.bool)
    pad[1, valid:] = True
    fairseq = _fairseq_forward_padding_mask(pad, frames)
    assert int((~fairseq[1]).sum()) == fairseq_valid and not fairseq[0].any()
    out = _tiny("tiny_hubert", num_hidden_layers=1)(_wavs(2, padded), pad)
    assert (~out.padding_mask).sum(dim=1).tolist() == [frames, num_frames(valid)]
    assert torch.equal(out.padding_mask, frame_padding_mask(pad, frames))
    # the extra frames are exactly those whose 400-sample receptive field runs past the valid samples
    extra = torch.nonzero(out.padding_mask[1] & ~fairseq[1]).flatten().tolist()
    assert extra == list(range(num_frames(valid), fairseq_valid))
    assert all(320 * t + 400 > valid for t in extra)


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize("name", TINY)
def test_frame_mask_writes_mask_embedding(name):
    teacher = _tiny(name)
    captured = []
    hook = teacher.model.encoder.register_forward_pre_hook(lambda mod, args: captured.append(args[0].clone()))
    wavs = _wavs(2, 16_000)
    frames = num_frames(16_000)
    clean = teacher(wavs)
    none_mask = teacher(wavs, frame_mask=torch.zeros(2, frames, dtype=torch.bool))
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[0, 5:15] = True
    mask[1, 30:33] = True
    masked = teacher(wavs, frame_mask=mask)
    hook.remove()
    clean_in, none_in, masked_in = captured
    assert torch.equal(clean_in, none_in)
    for a, b in zip(clean.hidden_states, none_mask.hidden_states):
        assert torch.equal(a, b)
    embed = teacher.model.masked_spec_embed
    assert torch.equal(masked_in[mask], embed.expand(int(mask.sum()), -1))
    assert torch.equal(masked_in[~mask], clean_in[~mask])
    assert not torch.equal(clean_in[mask], masked_in[mask])
    assert (masked.hidden_states[-1] - clean.hidden_states[-1]).abs().max() > 1e-3


def test_frame_mask_without_mask_embedding_is_refused():
    teacher = _tiny("tiny_hubert", mask_time_prob=0.0)
    assert not teacher.has_mask_embedding
    with pytest.raises(ValueError, match="mask embedding"):
        teacher(_wavs(1, 1000), frame_mask=torch.zeros(1, 2, dtype=torch.bool))


# ----------------------------------------------------------------------------- attentions


@pytest.mark.parametrize("name", TINY)
def test_attention_maps(name):
    teacher = _tiny(name)
    impl_before = teacher.config._attn_implementation
    wavs = _wavs(2, 16_000)
    pad = torch.zeros(2, 16_000, dtype=torch.bool)
    pad[1, 10_000:] = True
    out = teacher(wavs, pad, output_attentions=True)
    plain = teacher(wavs, pad)
    assert plain.attentions is None
    assert teacher.config._attn_implementation == impl_before
    frames = num_frames(16_000)
    assert len(out.attentions) == teacher.num_layers
    for attn in out.attentions:
        assert attn.shape == (2, 4, frames, frames)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, frames), rtol=0, atol=1e-5)
        assert attn[1, :, :, num_frames(10_000):].abs().max() == 0
        assert (attn[:, 0] - attn[:, 1]).abs().max() > 1e-4  # genuinely per head
    for a, b in zip(out.hidden_states, plain.hidden_states):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_wavlm_per_head_maps_average_to_transformers_maps():
    teacher = _tiny("tiny_wavlm")
    wavs = _wavs(2, 12_000)
    out = teacher(wavs, output_attentions=True)
    with torch.no_grad():
        reference = teacher.model(wavs, output_attentions=True).attentions  # head-averaged
    for ours, ref in zip(out.attentions, reference):
        torch.testing.assert_close(ours.mean(dim=1), ref[:, 0], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- frozen


def test_frozen_and_always_eval():
    teacher = _tiny()
    assert all(not p.requires_grad for p in teacher.parameters())
    assert teacher.config.layerdrop == 0.0
    parent = nn.ModuleDict({"teacher": teacher, "student": nn.Linear(2, 2)})
    parent.train()
    assert parent["student"].training
    assert not teacher.training and not any(m.training for m in teacher.modules())
    teacher.train(True)
    teacher.requires_grad_(True)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    wavs = _wavs(1, 4000).requires_grad_(True)
    out = teacher(wavs)
    assert not out.hidden_states[-1].requires_grad
    again = teacher(wavs)  # eval mode: deterministic, no dropout
    assert torch.equal(out.hidden_states[-1], again.hidden_states[-1])


def test_named_architecture_seeding():
    state = torch.random.get_rng_state()
    a = load_teacher("tiny_hubert", seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    b = load_teacher("tiny_hubert", seed=1)
    c = load_teacher("tiny_hubert", seed=2)
    wa, wb, wc = (t.model.encoder.layers[0].feed_forward.intermediate_dense.weight for t in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    with pytest.raises(ValueError, match="kind"):
        load_teacher("tiny_hubert", kind="wavlm")


# ----------------------------------------------------------------------------- local folder


@pytest.mark.parametrize("name", ["tiny_hubert", "tiny_wavlm"])
def test_local_folder_round_trip(tmp_path, name):
    teacher = load_teacher(name, seed=3)
    folder = save_teacher(teacher, tmp_path / "teacher")
    assert (folder / "config.json").is_file()
    save_teacher(teacher, folder)  # overwriting an existing folder is safe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]
    loaded = load_teacher(folder)
    assert loaded.model_type == teacher.model_type
    wavs = _wavs(2, 6000)
    mask = torch.zeros(2, num_frames(6000), dtype=torch.bool)
    mask[:, 3:6] = True
    for fm in (None, mask):
        for a, b in zip(teacher(wavs, frame_mask=fm).hidden_states, loaded(wavs, frame_mask=fm).hidden_states):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="kind"):
        load_teacher(folder, kind="wav2vec2")


def test_failed_save_keeps_the_previous_teacher(tmp_path, monkeypatch):
    folder = save_teacher(load_teacher("tiny_hubert", seed=1), tmp_path / "teacher")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = load_teacher("tiny_hubert", seed=2)

    def half_written(path, *args, **kwargs):
        (Path(path) / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(other.model, "save_pretrained", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_teacher(other, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]  # the staging folder is gone


def test_prepare_teacher_replaces_its_output_only_when_checked(tmp_path, monkeypatch, capsys):
    from audio_compress.bin import prepare_teacher

    data = make_wave_data_dir(tmp_path / "data", 3, seed=0)
    out = tmp_path / "exp" / "teacher"
    prepare_teacher.main(["--teacher", "tiny_hubert", "--seed", "1", "--out", str(out), "--check_data", str(data)])
    report = json.loads((out / "check.json").read_text())
    assert report["saved_to"] == str(out) and report["check"]["frames"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing_check(teacher, data_dir, num_utts=4, resample=False):
        raise RuntimeError("teacher layer 3 produced NaN/Inf")

    monkeypatch.setattr(prepare_teacher, "check_teacher", failing_check)
    with pytest.raises(RuntimeError, match="NaN"):
        prepare_teacher.main(["--teacher", "tiny_hubert", "--seed", "2", "--out", str(out), "--check_data",
                              str(data)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old, checked teacher is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["teacher"]

    monkeypatch.undo()
    prepare_teacher.main(["--teacher", "tiny_hubert", "--seed", "2", "--out", str(out), "--check_data", str(data)])
    assert (out / "check.json").is_file() and sorted(p.name for p in out.parent.iterdir()) == ["teacher"]
    replaced = load_teacher(out).model.encoder.layers[0].feed_forward.intermediate_dense.weight
    assert torch.equal(replaced, load_teacher("tiny_hubert", seed=2).model.encoder.layers[0]
                       .feed_forward.intermediate_dense.weight)


def test_unknown_source_lists_options(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_teacher("facebook/hubert-base-ls960")
    assert "tiny_hubert" in str(err.value) and "fairseq" in str(err.value)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_teacher(tmp_path)


# ----------------------------------------------------------------------------- fairseq


def _fairseq_checkpoint(teacher: FrozenTeacher, with_heads: bool = True) -> tuple[dict, dict]:
    sd = transformers_to_fairseq_state_dict(teacher.model.state_dict(), teacher.model_type)
    sd = {k: v.clone() for k, v in sd.items()}
    if with_heads and teacher.model_type in ("hubert", "wavlm"):
        sd["final_proj.weight"] = torch.randn(16, teacher.hidden_size)
        sd["final_proj.bias"] = torch.randn(16)
        sd["label_embs_concat"] = torch.randn(20, 16)
    if with_heads and teacher.model_type == "wav2vec2":
        sd["quantizer.vars"] = torch.randn(1, 20, 8)
        sd["quantizer.weight_proj.weight"] = torch.randn(20, 32)
        sd["project_q.weight"] = torch.randn(8, 8)
        sd["final_proj.weight"] = torch.randn(8, teacher.hidden_size)
    return sd, transformers_to_fairseq_config(teacher.config)


def _assert_same_outputs(a: FrozenTeacher, b: FrozenTeacher) -> None:
    wavs = _wavs(2, 7000, seed=5)
    pad = torch.zeros(2, 7000, dtype=torch.bool)
    pad[1, 5000:] = True
    mask = torch.zeros(2, num_frames(7000), dtype=torch.bool)
    mask[0, 2:8] = True
    out_a = a(wavs, pad, frame_mask=mask)
    out_b = b(wavs, pad, frame_mask=mask)
    assert len(out_a.hidden_states) == len(out_b.hidden_states)
    for x, y in zip(out_a.hidden_states, out_b.hidden_states):
        assert torch.equal(x, y)  # atol 0


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("tiny_hubert", {}),
        ("tiny_hubert", {"feat_extract_norm": "layer", "conv_bias": True}),
        ("tiny_wavlm", {}),
        ("tiny_wav2vec2", {}),
        ("tiny_wav2vec2", {"feat_extract_norm": "layer", "conv_bias": True, "do_stable_layer_norm": True}),
    ],
)
@pytest.mark.parametrize("cfg_style", ["cfg_dict", "omegaconf", "args_namespace"])
def test_fairseq_round_trip(tmp_path, name, overrides, cfg_style):
    teacher = _tiny(name, seed=7, **overrides)
    sd, cfg = _fairseq_checkpoint(teacher)
    if cfg_style == "cfg_dict":
        ckpt = {"model": sd, "cfg": {"model": cfg, "task": {"_name": "x"}}, "args": None}
    elif cfg_style == "omegaconf":
        from omegaconf import OmegaConf

        ckpt = {"model": sd, "cfg": OmegaConf.create({"model": cfg, "common": {"seed": 1}})}
    else:
        legacy = dict(cfg)
        legacy["arch"] = legacy.pop("_name")
        ckpt = {"model": sd, "args": argparse.Namespace(**legacy), "optimizer_history": [{"lr": [1.0]}]}
    path = tmp_path / "model.pt"
    torch.save(ckpt, path)
    loaded = load_teacher(path)
    assert loaded.model_type == teacher.model_type
    assert loaded.config.feat_extract_norm == teacher.config.feat_extract_norm
    _assert_same_outputs(teacher, loaded)


def test_fairseq_legacy_torch_serialization(tmp_path):
    """Checkpoints written before torch 1.6 use the legacy (non-zip) format."""
    teacher = _tiny("tiny_hubert", seed=13)
    sd, cfg = _fairseq_checkpoint(teacher)
    path = tmp_path / "legacy.pt"
    torch.save({"model": sd, "cfg": {"model": cfg}}, path, _use_new_zipfile_serialization=False)
    _assert_same_outputs(teacher, load_teacher(path))


def test_fairseq_unilm_wavlm_flat_cfg_and_shape_inference(tmp_path):
    """unilm WavLM stores the model fields flat under 'cfg'; missing fields come from shapes."""
    teacher = _tiny("tiny_wavlm", seed=8)
    sd, cfg = _fairseq_checkpoint(teacher, with_heads=False)
    flat = {"encoder_layers": cfg["encoder_layers"], "conv_feature_layers": cfg["conv_feature_layers"]}
    torch.save({"model": sd, "cfg": flat}, tmp_path / "WavLM-Tiny.pt")
    loaded = load_teacher(tmp_path / "WavLM-Tiny.pt")
    assert loaded.num_heads == 4  # from grep_a's shape
    assert loaded.config.num_conv_pos_embeddings == 16 and loaded.config.num_conv_pos_embedding_groups == 4
    _assert_same_outputs(teacher, loaded)


def test_fairseq_config_inferred_from_tensor_shapes():
    teacher = _tiny("tiny_hubert", seed=9, feat_extract_norm="layer", conv_bias=True)
    sd, _ = _fairseq_checkpoint(teacher)
    config = fairseq_to_transformers_config({"_name": "hubert", "encoder_attention_heads": 4}, sd)
    assert config.model_type == "hubert"
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (4, 64, 128)
    assert list(config.conv_dim) == [32] * 7 and list(config.conv_stride) == [5, 2, 2, 2, 2, 2, 2]
    assert config.feat_extract_norm == "layer" and config.conv_bias
    assert config.feat_proj_layer_norm and not config.do_stable_layer_norm


def test_fairseq_placeholders_and_no_code_execution(tmp_path, monkeypatch):
    # A class living in a fake ``fairseq`` package (fairseq itself is never imported).
    fake = types.ModuleType("fairseq")
    fake_meters = types.ModuleType("fairseq.logging.meters")

    class AverageMeter:
        def __init__(self):
            self.val, self.count = 3.5, 7

    AverageMeter.__module__ = "fairseq.logging.meters"
    AverageMeter.__qualname__ = "AverageMeter"
    fake_meters.AverageMeter = AverageMeter
    monkeypatch.setitem(sys.modules, "fairseq", fake)
    monkeypatch.setitem(sys.modules, "fairseq.logging.meters", fake_meters)

    teacher = _tiny("tiny_hubert", seed=10)
    sd, cfg = _fairseq_checkpoint(teacher)
    path = tmp_path / "hubert.pt"
    torch.save({"model": sd, "cfg": {"model": cfg}, "extra_state": {"meter": AverageMeter()}}, path)

    raw = safe_unpickle.load_untrusted(path, placeholders=("fairseq",))
    meter = raw["extra_state"]["meter"]
    assert isinstance(meter, safe_unpickle.Placeholder) and meter._state == {"val": 3.5, "count": 7}
    assert repr(meter) == "<Placeholder for fairseq.logging.meters.AverageMeter>"
    _assert_same_outputs(teacher, load_teacher(path))

    # a payload beside the same weights is refused, by the reader and by every entry point over it
    target = tmp_path / "pwned"
    evil = write_payload_checkpoint(tmp_path / "evil.pt", target, {"model": sd, "cfg": {"model": cfg}})
    for load in (load_fairseq_checkpoint, load_teacher):
        with pytest.raises(safe_unpickle.UnsafePickleError, match=r"evil\.pt: refuses to unpickle os\.makedirs.*trust"):
            load(evil)
    assert not target.exists()
    # trust=True unpickles fully, which is exactly what runs the payload
    assert load_fairseq_checkpoint(evil, trust=True).model_cfg["encoder_layers"] == 4
    assert target.is_dir()


def test_fairseq_omegaconf_cfg_without_omegaconf_classes(tmp_path, monkeypatch):
    """If omegaconf cannot be used, its pickled containers still yield the model fields."""
    from omegaconf import OmegaConf

    teacher = _tiny("tiny_hubert", seed=11)
    sd, cfg = _fairseq_checkpoint(teacher)
    path = tmp_path / "hubert.pt"
    torch.save({"model": sd, "cfg": OmegaConf.create({"model": cfg})}, path)
    real_import = safe_unpickle._import_global

    def no_omegaconf(module, name):
        if module.startswith("omegaconf"):
            raise ImportError(module)
        return real_import(module, name)

    monkeypatch.setattr(safe_unpickle, "_import_global", no_omegaconf)
    ckpt = load_fairseq_checkpoint(path)
    assert ckpt.model_cfg["encoder_layers"] == 4
    assert ckpt.model_cfg["conv_feature_layers"] == cfg["conv_feature_layers"]
    _assert_same_outputs(teacher, load_teacher(path))


def test_fairseq_unmapped_and_missing_keys(tmp_path):
    teacher = _tiny("tiny_hubert", seed=12)
    sd, cfg = _fairseq_checkpoint(teacher)
    bad = dict(sd)
    bad["encoder.layers.0.self_attn.rotary.freqs"] = torch.zeros(2)
    bad["target_glu.0.weight"] = torch.zeros(2)
    with pytest.raises(FairseqConversionError) as err:
        convert_fairseq_state_dict(bad, "hubert")
    assert "encoder.layers.0.self_attn.rotary.freqs" in str(err.value) and "target_glu.0.weight" in str(err.value)
    # WavLM-only names are not accepted for HuBERT
    with pytest.raises(FairseqConversionError, match="grep_a"):
        convert_fairseq_state_dict({**sd, "encoder.layers.0.self_attn.grep_a": torch.ones(1, 4, 1, 1)}, "hubert")
    # ignored heads are dropped, the rest maps one to one
    converted = convert_fairseq_state_dict(sd, "hubert")
    assert set(converted) == set(teacher.model.state_dict())

    missing = {k: v for k, v in sd.items() if k != "encoder.layers.1.fc1.weight"}
    path = tmp_path / "missing.pt"
    torch.save({"model": missing, "cfg": {"model": cfg}}, path)
    with pytest.raises(FairseqConversionError, match="encoder.layers.1.feed_forward.intermediate_dense.weight"):
        load_teacher(path)
    path = tmp_path / "extra.pt"
    torch.save({"model": bad, "cfg": {"model": cfg}}, path)
    with pytest.raises(FairseqConversionError, match="rotary"):
        load_teacher(path)


def test_not_a_fairseq_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(FairseqConversionError, match="notes.pt"):
        load_teacher(text)
    teacher = _tiny()
    bare = tmp_path / "pytorch_model.bin"
    torch.save(teacher.model.state_dict(), bare)
    with pytest.raises(FairseqConversionError, match="bare state dict"):
        load_teacher(bare)
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "epoch": 3}, lightning)
    with pytest.raises(FairseqConversionError, match="Lightning"):
        load_teacher(lightning)
    other = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "cfg": {}}, other)
    with pytest.raises(FairseqConversionError, match="not a wav2vec 2.0"):
        load_teacher(other)


def test_parse_conv_feature_layers():
    layers = parse_conv_feature_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    assert parse_conv_feature_layers("2 * [(32, 3, 2)]") == [(32, 3, 2), (32, 3, 2)]
    assert parse_conv_feature_layers(format_conv_feature_layers([8, 9], [10, 3], [5, 2])) == [
        (8, 10, 5),
        (9, 3, 2),
    ]
    for bad in ("__import__('os').system('true')", "[(512, 10)]", "[(1,2,3)] - [(1,2,3)]", "[x] * 2", "[]"):
        with pytest.raises(FairseqConversionError):
            parse_conv_feature_layers(bad)


def test_inverse_mapping_round_trip():
    for name in TINY:
        teacher = _tiny(name)
        hf = teacher.model.state_dict()
        fs = transformers_to_fairseq_state_dict(hf, teacher.model_type)
        assert len(fs) == len(hf)
        back = convert_fairseq_state_dict(fs, teacher.model_type)
        assert set(back) == set(hf) and all(back[k] is hf[k] for k in hf)
    with pytest.raises(FairseqConversionError, match="lm_head"):
        transformers_to_fairseq_state_dict({"lm_head.weight": torch.zeros(1)}, "hubert")


def test_waveform_normalisation(tmp_path):
    config = get_config("tiny_hubert", feat_extract_norm="layer")
    torch.manual_seed(14)
    teacher = FrozenTeacher(model_class_for(config)(config), normalize_waveform=True)
    wav = _wavs(1, 9_000, seed=4)
    a = teacher(wav).hidden_states[-1]
    b = teacher(3.0 * wav + 0.5).hidden_states[-1]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    batch = torch.cat([torch.cat([wav, 9 + _wavs(1, 7_000, seed=5)], dim=1), _wavs(1, 16_000)])
    pad = torch.zeros(2, 16_000, dtype=torch.bool)
    pad[0, 9_000:] = True
    padded = teacher(batch, pad).hidden_states[-1][0, : num_frames(9_000)]
    torch.testing.assert_close(padded, a[0], rtol=0, atol=1e-5)
    raw = FrozenTeacher(teacher.model, normalize_waveform=False)
    assert (raw(3.0 * wav + 0.5).hidden_states[-1] - a).abs().max() > 1e-3

    reloaded = load_teacher(save_teacher(teacher, tmp_path / "norm"))
    assert reloaded.normalize_waveform

    sd, cfg = _fairseq_checkpoint(_tiny("tiny_hubert", seed=15))
    torch.save({"model": sd, "cfg": {"model": cfg, "task": {"normalize": True}}}, tmp_path / "large.pt")
    assert load_teacher(tmp_path / "large.pt").normalize_waveform
    assert not load_teacher(tmp_path / "large.pt", normalize_waveform=False).normalize_waveform
    assert not load_teacher("tiny_hubert").normalize_waveform
