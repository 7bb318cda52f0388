"""AST backbone: published parameter counts, positional-embedding layout, checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from pickle_payloads import write_payload_checkpoint

from audio_cls.models import (
    Classifier,
    Projector,
    adapt_pos_embed,
    build_ast,
    count_parameters,
    get_arch,
    timm_to_hf,
)
from audio_cls.patchmix import PatchMixPlan
from compact_ssl.unpickle import UnsafePickleError


def test_full_size_parameter_counts():
    with torch.device("meta"):
        backbone = build_ast("ast_base", num_mel_bins=128, num_frames=798)
        head, projector = Classifier(768, 4), Projector(768, 768)
        reference = build_ast("ast_base", num_mel_bins=128, num_frames=1024)
    assert backbone.grid == (12, 79)
    assert backbone.ast.embeddings.position_embeddings.shape == (1, 950, 768)
    assert count_parameters(backbone) == 85_984_512
    assert count_parameters(head) == 4_612
    assert count_parameters(projector) == 1_182_720
    # every parameter that gets gradients in patchmix_cl (the repo's Adam list adds 1,542,612 unused head weights)
    assert count_parameters(backbone) + 4_612 + 1_182_720 == 87_171_844 == 88_714_456 - 1_542_612
    # the original AST 128 x 1024 / 527 classes: 88,132,063 with timm's two unused 1000-class heads
    # (2 x 769,000) and its mlp_head (LayerNorm + Linear 768 -> 527 = 406,799)
    assert reference.ast.embeddings.position_embeddings.shape == (1, 1214, 768)
    assert count_parameters(reference) + 2 * 769_000 + 406_799 == 88_132_063
    assert count_parameters(Classifier(768, 527)) == 406_799


def _coordinate_pos_embed(freq: int, time: int) -> torch.Tensor:
    """(1, 2 + F*T, 2) positions whose vector at grid cell (f, t) is (f, t); tokens are (-1, -1)."""
    f, t = torch.meshgrid(torch.arange(float(freq)), torch.arange(float(time)), indexing="ij")
    grid = torch.stack([f, t], dim=-1).reshape(1, freq * time, 2)
    return torch.cat([torch.full((1, 2, 2), -1.0), grid], dim=1)


def test_pos_embed_layout_audioset_correct_and_swapped():
    pos = _coordinate_pos_embed(12, 101)
    correct = adapt_pos_embed(pos, (12, 101), (12, 79))
    assert correct.shape == (1, 950, 2) and torch.equal(correct[0, :2], pos[0, :2])
    cells = correct[0, 2:].reshape(12, 79, 2)
    f, t = torch.meshgrid(torch.arange(12.0), torch.arange(79.0), indexing="ij")
    # token (f, t) gets checkpoint cell (f, t + 11): no interpolation at all
    assert torch.equal(cells[..., 0], f) and torch.equal(cells[..., 1], t + 11)
    swapped = adapt_pos_embed(pos, (12, 101), (12, 79), swapped=True)[0, 2:].reshape(12, 79, 2)
    # official code: token (freq 0, time 78) is token 78 of a 79 x 12 grid -> row 6, column 6, i.e.
    # frequency 12 -> 79 interpolated at 6.5 * 12 / 79 - 0.5 and time column 44 + 6
    torch.testing.assert_close(swapped[0, 78], torch.tensor([6.5 * 12 / 79 - 0.5, 50.0]))
    assert abs(float(swapped[0, 78, 0]) - 0.49) < 0.01
    assert not torch.equal(swapped, cells)
    assert swapped[..., 1].min() == 44 and swapped[..., 1].max() == 55  # only the 12 centre time columns


def test_pos_embed_layout_imagenet():
    pos = _coordinate_pos_embed(24, 24)
    cells = adapt_pos_embed(pos, (24, 24), (12, 79))[0, 2:].reshape(12, 79, 2)
    assert torch.equal(cells[:, 0, 0], torch.arange(6.0, 18.0))  # centre 12 of 24 frequency rows
    src = ((torch.arange(79) + 0.5) * 24 / 79 - 0.5).clamp(0, 23)  # bilinear, align_corners=False
    torch.testing.assert_close(cells[0, :, 1], src)
    swapped = adapt_pos_embed(pos, (24, 24), (12, 79), swapped=True)[0, 2:].reshape(79 * 12, 2)
    assert swapped[:, 1].min() == 6 and swapped[:, 1].max() == 17  # a 12-column centre slice of 24


def _tiny_hf_ast(tmp_path, max_length=1024, num_labels=527):
    from transformers import ASTForAudioClassification

    config = get_arch("ast_tiny", 128, max_length).hf_config()
    config.num_labels = num_labels
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        model.audio_spectrogram_transformer.embeddings.position_embeddings.normal_()
    model.save_pretrained(tmp_path / "hf")
    return model.audio_spectrogram_transformer


def _to_original_ast(state: dict) -> dict:
    """The original AST .pth layout (DataParallel + timm ViT) of a transformers ASTModel state dict, with the
    file's full key set: timm's two unused 1000-class heads and AST's LayerNorm + Linear ``mlp_head``."""
    width = state["layernorm.weight"].shape[0]
    out = {}
    names = {"embeddings.cls_token": "cls_token", "embeddings.distillation_token": "dist_token",
             "embeddings.position_embeddings": "pos_embed", "layernorm.weight": "norm.weight",
             "layernorm.bias": "norm.bias", "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
             "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias"}
    layer = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.o_proj": "attn.proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for key, value in state.items():
        if key in names:
            out[f"module.v.{names[key]}"] = value
            continue
        _, i, rest = key.split(".", 2)
        name, leaf = rest.rsplit(".", 1)
        if name == "attention.q_proj":
            qkv = [state[f"layers.{i}.attention.{p}_proj.{leaf}"] for p in "qkv"]
            out[f"module.v.blocks.{i}.attn.qkv.{leaf}"] = torch.cat(qkv)
        elif name in layer:
            out[f"module.v.blocks.{i}.{layer[name]}.{leaf}"] = value
    for head in ("head", "head_dist"):
        out.update({f"module.v.{head}.weight": torch.randn(1000, width), f"module.v.{head}.bias": torch.randn(1000)})
    out.update({"module.mlp_head.0.weight": torch.ones(width), "module.mlp_head.0.bias": torch.zeros(width),
                "module.mlp_head.1.weight": torch.zeros(527, width), "module.mlp_head.1.bias": torch.zeros(527)})
    return out


def _original_ast_keys(layers: int) -> set[str]:
    """Every key of the original AST .pth (see tests/test_audio_cls_fidelity.py for the full-size shapes)."""
    top = ["cls_token", "pos_embed", "dist_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
           "norm.bias", "head.weight", "head.bias", "head_dist.weight", "head_dist.bias"]
    block = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    keys = {f"module.v.{key}" for key in top} | {f"module.mlp_head.{i}.{leaf}" for i in (0, 1) for leaf in ("weight", "bias")}
    return keys | {f"module.v.blocks.{i}.{name}.{leaf}" for i in range(layers) for name in block for leaf in ("weight", "bias")}


def test_load_audioset_from_transformers_folder_and_original_pth(tmp_path):
    source = _tiny_hf_ast(tmp_path)
    from_folder = build_ast("ast_tiny", init="audioset", checkpoint=tmp_path / "hf")
    src_pos = source.embeddings.position_embeddings[0, 2:].reshape(12, 101, -1)
    dst_pos = from_folder.ast.embeddings.position_embeddings[0, 2:].reshape(12, 79, -1)
    assert torch.equal(dst_pos, src_pos[:, 11:90])
    for key, value in source.state_dict().items():
        if key != "embeddings.position_embeddings":
            assert torch.equal(from_folder.ast.state_dict()[key], value), key
    original = _to_original_ast(source.state_dict())
    assert set(original) == _original_ast_keys(2) and len(original) == 11 + 4 + 2 * 12
    torch.save(original, tmp_path / "audioset_10_10_0.4593.pth")
    from_pth = build_ast("ast_tiny", init="audioset", checkpoint=tmp_path / "audioset_10_10_0.4593.pth")
    for key, value in from_folder.state_dict().items():
        assert torch.equal(from_pth.state_dict()[key], value), key
    swapped = build_ast("ast_tiny", init="audioset", checkpoint=tmp_path / "hf", swapped_pos_embed=True)
    assert not torch.equal(swapped.ast.embeddings.position_embeddings, from_folder.ast.embeddings.position_embeddings)
    # the pretrained network computes the same features as transformers' model on the same input
    x = torch.randn(2, 1024, 128)
    full = build_ast(get_arch("ast_tiny", 128, 1024), init="audioset", checkpoint=tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(full(x), source(x).pooler_output)


def test_load_imagenet_deit_pth(tmp_path):
    torch.manual_seed(0)
    state = {"cls_token": torch.randn(1, 1, 64), "dist_token": torch.randn(1, 1, 64),
             "pos_embed": torch.randn(1, 578, 64), "patch_embed.proj.weight": torch.randn(64, 3, 16, 16),
             "patch_embed.proj.bias": torch.randn(64), "norm.weight": torch.randn(64), "norm.bias": torch.randn(64),
             "head.weight": torch.randn(1000, 64), "head_dist.weight": torch.randn(1000, 64)}
    shapes = {"norm1.weight": (64,), "norm1.bias": (64,), "attn.qkv.weight": (192, 64), "attn.qkv.bias": (192,),
              "attn.proj.weight": (64, 64), "attn.proj.bias": (64,), "norm2.weight": (64,), "norm2.bias": (64,),
              "mlp.fc1.weight": (256, 64), "mlp.fc1.bias": (256,), "mlp.fc2.weight": (64, 256), "mlp.fc2.bias": (64,)}
    for i in range(2):
        state.update({f"blocks.{i}.{name}": torch.randn(shape) for name, shape in shapes.items()})
    torch.save({"model": state}, tmp_path / "deit.pth")
    backbone = build_ast("ast_tiny", init="imagenet", checkpoint=tmp_path / "deit.pth")
    ast = backbone.ast
    torch.testing.assert_close(ast.embeddings.patch_embeddings.projection.weight,
                               state["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(ast.layers[1].attention.k_proj.weight, state["blocks.1.attn.qkv.weight"][64:128])
    assert torch.equal(ast.layers[1].attention.v_proj.bias, state["blocks.1.attn.qkv.bias"][128:])
    assert torch.equal(ast.layers[0].mlp.fc2.weight, state["blocks.0.mlp.fc2.weight"])
    assert ast.embeddings.position_embeddings.shape == (1, 950, 64)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MIT/ast-finetuned-audioset-10-10-0.4593"):
        build_ast("ast_tiny", init="audioset", checkpoint="")
    _tiny_hf_ast(tmp_path)
    with pytest.raises(ValueError, match="does not match the configured"):
        build_ast("ast_base", init="audioset", checkpoint=tmp_path / "hf")
    with pytest.raises(ValueError, match="unexpected key 'blocks.0.attn.qkv_extra.weight'"):
        timm_to_hf({"blocks.0.attn.qkv_extra.weight": torch.zeros(1)})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: cannot be read as a timm/AST .pth checkpoint"):
        build_ast("ast_tiny", init="audioset", checkpoint=tmp_path / "junk.pth")


def test_original_pth_that_runs_code_is_refused(tmp_path):
    source = _tiny_hf_ast(tmp_path)
    path = write_payload_checkpoint(tmp_path / "audioset_10_10_0.4593.pth", tmp_path / "marker",
                                    extra=_to_original_ast(source.state_dict()), key="module.v.payload")
    with pytest.raises(UnsafePickleError, match=f"{path}: refuses to unpickle os.makedirs: .* trust=True"):
        build_ast("ast_tiny", init="audioset", checkpoint=path)
    assert not (tmp_path / "marker").exists()
    with pytest.raises(UnsafePickleError, match="refuses to unpickle os.makedirs"):
        build_ast("ast_tiny", init="imagenet", checkpoint=path)
    assert not (tmp_path / "marker").exists()


def test_forward_matches_transformers_and_patch_mix_hook():
    torch.manual_seed(0)
    backbone = build_ast("ast_tiny").eval()
    x = torch.randn(3, 798, 128)
    with torch.no_grad():
        clean = backbone(x)
        assert clean.shape == (3, 64)
        torch.testing.assert_close(clean, backbone.ast(x).pooler_output)
        perm = torch.tensor([2, 0, 1])
        # swapping every patch before the positional embedding is the partner's clean feature
        everything = backbone(x, mix=PatchMixPlan(torch.arange(948), perm, 0.0))
        torch.testing.assert_close(everything, clean[perm])
        nothing = backbone(x, mix=PatchMixPlan(torch.arange(0), perm, 1.0))
        torch.testing.assert_close(nothing, clean)
    with pytest.raises(ValueError, match="expects \\(batch, 798 frames, 128 mel bins\\)"):
        backbone(torch.randn(1, 700, 128))
