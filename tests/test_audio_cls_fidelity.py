"""Fidelity to the official AST / Patch-Mix pipelines: the original AudioSet checkpoint file,
the resampler's kernel precision, the fade-out of exact-length cycles, and the clean protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from audio_cls.data.cycles import fade, load_recording, pad_or_trim, resample
from audio_cls.models import build_ast, count_parameters

ICBHI_SAMPLES = SHARED_DATA / "icbhi_samples"
needs_icbhi = pytest.mark.skipif(not ICBHI_SAMPLES.is_dir(),
                                 reason=f"real ICBHI samples not found at {ICBHI_SAMPLES} (optional; `make test-data`)")


# ---------------------------------------------------------------- the original AudioSet checkpoint
def original_audioset_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of ``audioset_10_10_0.4593.pth`` with its shape, in state-dict order.

    The AST code saves its DataParallel model: ``module.v`` is timm's distilled DeiT-B/16-384
    (12 blocks, width 768, MLP 3072, patch conv 1 -> 768 with stride 10) fitted to 128 mel x 1024
    frames, i.e. a 12 x 101 grid and 1212 + 2 positions, still holding timm's two 1000-class heads;
    ``module.mlp_head`` is AST's LayerNorm + Linear 768 -> 527 AudioSet head.
    """
    d, hidden, classes = 768, 3072, 1000
    v = "module.v."
    shapes = {f"{v}cls_token": (1, 1, d), f"{v}pos_embed": (1, 2 + 12 * 101, d), f"{v}dist_token": (1, 1, d),
              f"{v}patch_embed.proj.weight": (d, 1, 16, 16), f"{v}patch_embed.proj.bias": (d,)}
    for i in range(12):
        block = f"{v}blocks.{i}."
        shapes.update({
            f"{block}norm1.weight": (d,), f"{block}norm1.bias": (d,),
            f"{block}attn.qkv.weight": (3 * d, d), f"{block}attn.qkv.bias": (3 * d,),
            f"{block}attn.proj.weight": (d, d), f"{block}attn.proj.bias": (d,),
            f"{block}norm2.weight": (d,), f"{block}norm2.bias": (d,),
            f"{block}mlp.fc1.weight": (hidden, d), f"{block}mlp.fc1.bias": (hidden,),
            f"{block}mlp.fc2.weight": (d, hidden), f"{block}mlp.fc2.bias": (d,),
        })
    shapes.update({
        f"{v}norm.weight": (d,), f"{v}norm.bias": (d,),
        f"{v}head.weight": (classes, d), f"{v}head.bias": (classes,),
        f"{v}head_dist.weight": (classes, d), f"{v}head_dist.bias": (classes,),
        "module.mlp_head.0.weight": (d,), "module.mlp_head.0.bias": (d,),
        "module.mlp_head.1.weight": (527, d), "module.mlp_head.1.bias": (527,),
    })
    return shapes


def test_original_audioset_key_set_matches_the_published_counts():
    shapes = original_audioset_shapes()
    numel = {key: math.prod(shape) for key, shape in shapes.items()}
    assert len(shapes) == 5 + 12 * 12 + 2 + 4 + 4 == 159
    # the original AST 128 x 1024 / 527 classes, module total with the unused heads
    assert sum(numel.values()) == 88_132_063
    heads = sum(n for key, n in numel.items() if ".head" in key or "mlp_head" in key)
    assert heads == 2 * 769_000 + 406_799
    # the Patch-Mix code's module: the same network with 950 positions and a 4-class mlp_head
    assert sum(numel.values()) - (1214 - 950) * 768 - 406_799 + 4_612 == 87_527_124


@pytest.mark.slow
def test_original_audioset_pth_loads(tmp_path):
    """The file as the AST code saves it (full key set, real shapes, random float16 weights) loads
    through the public loader, every head dropped, each weight where it belongs."""
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.empty(shape, dtype=torch.float16).uniform_(-1, 1, generator=generator)
             for key, shape in original_audioset_shapes().items()}
    path = tmp_path / "audioset_10_10_0.4593.pth"
    torch.save(state, path)
    backbone = build_ast("ast_base", num_mel_bins=128, num_frames=798, init="audioset", checkpoint=path)
    ast = backbone.ast
    assert count_parameters(backbone) == 85_984_512

    def file(key: str) -> torch.Tensor:
        return state[f"module.v.{key}"].float()

    emb = ast.embeddings
    assert torch.equal(emb.patch_embeddings.projection.weight, file("patch_embed.proj.weight"))
    assert torch.equal(emb.patch_embeddings.projection.bias, file("patch_embed.proj.bias"))
    assert torch.equal(emb.cls_token, file("cls_token")) and torch.equal(emb.distillation_token, file("dist_token"))
    pos = file("pos_embed")
    assert torch.equal(emb.position_embeddings[:, :2], pos[:, :2])
    # 12 x 101 -> 12 x 79: token (f, t) takes checkpoint cell (f, t + 11)
    grid = emb.position_embeddings[0, 2:].reshape(12, 79, 768)
    assert torch.equal(grid, pos[0, 2:].reshape(12, 101, 768)[:, 11:90])
    qkv_w, qkv_b = file("blocks.5.attn.qkv.weight"), file("blocks.5.attn.qkv.bias")
    attention = ast.layers[5].attention
    assert torch.equal(attention.q_proj.weight, qkv_w[:768]) and torch.equal(attention.k_proj.weight, qkv_w[768:1536])
    assert torch.equal(attention.v_proj.weight, qkv_w[1536:]) and torch.equal(attention.v_proj.bias, qkv_b[1536:])
    assert torch.equal(attention.o_proj.weight, file("blocks.5.attn.proj.weight"))
    assert torch.equal(ast.layers[0].layernorm_before.weight, file("blocks.0.norm1.weight"))
    assert torch.equal(ast.layers[11].layernorm_after.bias, file("blocks.11.norm2.bias"))
    assert torch.equal(ast.layers[11].mlp.fc1.weight, file("blocks.11.mlp.fc1.weight"))
    assert torch.equal(ast.layers[11].mlp.fc2.weight, file("blocks.11.mlp.fc2.weight"))
    assert torch.equal(ast.layernorm.weight, file("norm.weight")) and torch.equal(ast.layernorm.bias, file("norm.bias"))
    # no head reaches the backbone: no tensor with 1000 or 527 rows
    assert not any(value.shape[0] in (1000, 527) for value in ast.state_dict().values())


# ---------------------------------------------------------------- resampling
def _synthetic_44k(seconds: float = 2.0) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(int(44100 * seconds)) / 44100
    wave = 0.5 * torch.sin(2 * torch.pi * 440 * t) + 0.3 * torch.sin(2 * torch.pi * 7000 * t)
    return (wave + 0.2 * torch.randn(t.shape, generator=generator)).float().numpy()


def test_resampler_matches_the_reference_transform():
    import torchaudio
    import torchaudio.functional as AF

    wave = _synthetic_44k()
    ours = torch.from_numpy(resample(wave, 44100, 16000))
    reference = torchaudio.transforms.Resample(44100, 16000)(torch.from_numpy(wave))
    float32_kernel = AF.resample(torch.from_numpy(wave), 44100, 16000)
    assert ours.shape == reference.shape == (32000,)
    assert (ours - reference).abs().max() <= 1e-6
    # the functional form builds its kernel in float32: 4.4e-6 off on this signal
    assert (float32_kernel - reference).abs().max() > 1e-6
    assert resample(wave, 16000, 16000) is wave


@needs_icbhi
def test_real_44k_recording_resampled_as_the_reference():
    import torchaudio
    import torchaudio.functional as AF

    from audio_cls.features import FeatureConfig, fbank
    from compact_ssl.audio import load_audio

    path = ICBHI_SAMPLES / "audio_and_txt_files" / "101_1b1_Al_sc_Meditron.wav"
    native = torch.from_numpy(load_audio(path, sample_rate=44100, resample=False, min_samples=1))
    reference = fade(torchaudio.transforms.Resample(44100, 16000)(native).numpy(), 1000, 1000)
    float32_kernel = fade(AF.resample(native, 44100, 16000).numpy(), 1000, 1000)
    ours = load_recording(path)
    assert ours.shape == reference.shape == (320000,)
    assert np.abs(ours - reference).max() <= 1e-6
    assert np.abs(float32_kernel - reference).max() > 1e-6
    # the first 8 s as one cycle: the float32 kernel moves the normalized fbank by 1.4e-2 here
    config = FeatureConfig()
    ours_fbank, old_fbank = fbank(ours[:128000], config), fbank(float32_kernel[:128000], config)
    assert torch.equal(ours_fbank, fbank(reference[:128000], config))
    assert (ours_fbank - old_fbank).abs().max() > 5e-3


# ---------------------------------------------------------------- cycles of exactly the target length
def test_exact_length_cycle_is_faded_like_the_reference():
    length = 128000
    exact = pad_or_trim(np.full(length, 2.0, dtype=np.float32), length, "repeat", 1000)
    # repeat x1 then the 1000-sample fade-out: sample length - 1000 + i is scaled by 1 - i / 999
    assert exact.shape == (length,) and exact.dtype == np.float32
    assert exact[-1001] == 2.0 and exact[-1000] == 2.0
    assert exact[-1] == 0.0
    assert exact[-2] == pytest.approx(2 / 999, rel=1e-6)
    assert exact[-500] == pytest.approx(2 * 499 / 999, rel=1e-6)
    assert exact[:length - 1000].min() == 2.0
    longer = np.full(length + 1, 2.0, dtype=np.float32)
    longer[-1] = 5.0
    trimmed = pad_or_trim(longer, length, "repeat", 1000)
    assert trimmed.shape == (length,) and trimmed.min() == trimmed.max() == 2.0  # first 8 s, no fade
    shorter = np.arange(1, length, dtype=np.float32)  # 127,999 samples: tiled twice, cut, faded
    padded = pad_or_trim(shorter, length, "repeat", 1000)
    assert padded[0] == 1.0 and padded[length - 1001] == length - 1000
    assert padded[-1] == 0.0  # the wrapped-around first sample, faded to zero
    assert padded[-2] == pytest.approx((length - 1) * 1 / 999, rel=1e-6)
    # zero padding has nothing to pad: an exact-length cycle comes back unchanged
    np.testing.assert_array_equal(pad_or_trim(np.full(length, 2.0, dtype=np.float32), length, "zero"), 2.0)
