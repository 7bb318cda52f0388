"""Audio Spectrogram Transformer (AST) backbone with a Patch-Mix hook and pretrained loading.

The network is transformers' :class:`~transformers.ASTModel` (ViT-B/16 with CLS and distillation
tokens, overlapping 16 x 16 patches with stride 10 in frequency and time); this module runs its
parts itself so Patch-Mix can act between the patch embedding and the positional embedding. The
output feature is the mean of the final CLS and distillation tokens.

Input: (batch, frames, mel bins) fbank, as :mod:`audio_cls.features` makes it. The patch grid is
``F = (mel - 16) // 10 + 1`` by ``T = (frames - 16) // 10 + 1``, frequency-major (token
``f * T + t``): 12 x 79 = 948 patches for 128 x 798.

Weights (``init``):

* ``audioset``: the AudioSet-trained AST (0.4593 mAP, 128 mel x 1024 frames, 12 x 101 grid) from a
  transformers folder (``MIT/ast-finetuned-audioset-10-10-0.4593`` downloaded beforehand) or the
  original ``audioset_10_10_0.4593.pth`` (the AST code's DataParallel state dict: the timm DeiT under
  ``module.v.`` with its two unused 1000-class heads, and ``module.mlp_head``; every head is dropped);
* ``imagenet``: a distilled DeiT-B/16-384 timm checkpoint (``.pth``, 24 x 24 grid), the RGB patch
  kernel summed to one channel;
* ``random``: fresh weights (truncated normal, std 0.02, for tokens and positions).

Positional embeddings are fitted to the target grid with AST's rule, axis by axis (time first):
centre slice when the target is not larger, bilinear interpolation otherwise. From AudioSet to
12 x 79 that is a pure slice: token (f, t) gets checkpoint cell (f, t + 11). ``swapped_pos_embed``
reproduces the official Patch-Mix code, which fits the grid as if it were (79 frequency, 12 time)
and so gives tokens position vectors from the wrong cells (the published numbers used it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio_cls.patchmix import PatchMixPlan, apply_patch_mix
from compact_ssl.nn import state_dict_mismatch
from compact_ssl.unpickle import load_untrusted

INITS = ("audioset", "imagenet", "random")


@dataclass(frozen=True)
class ASTBackboneConfig:
    """Architecture and input size of an AST backbone."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    layer_norm_eps: float = 1e-6  #: timm's ViT value, which the original AST used
    num_mel_bins: int = 128
    num_frames: int = 798

    @property
    def grid(self) -> tuple[int, int]:
        """(frequency, time) patch counts."""
        return (
            (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1,
            (self.num_frames - self.patch_size) // self.time_stride + 1,
        )

    def hf_config(self):
        """The equivalent :class:`transformers.ASTConfig` (no dropout, as in AST)."""
        from transformers import ASTConfig

        return ASTConfig(
            hidden_size=self.hidden_size, num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size, patch_size=self.patch_size,
            frequency_stride=self.frequency_stride, time_stride=self.time_stride, layer_norm_eps=self.layer_norm_eps,
            num_mel_bins=self.num_mel_bins, max_length=self.num_frames, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, hidden_act="gelu",
        )


#: Named architectures: the published AST (ViT-B) and a tiny one for CPU tests and mini recipes.
ARCHS = {
    "ast_base": ASTBackboneConfig(),
    "ast_tiny": ASTBackboneConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256),
}


def get_arch(name: str, num_mel_bins: int = 128, num_frames: int = 798) -> ASTBackboneConfig:
    """The named architecture for an input of ``num_frames`` x ``num_mel_bins``."""
    if name not in ARCHS:
        raise ValueError(f"unknown AST architecture {name!r}; choose one of {sorted(ARCHS)}")
    return replace(ARCHS[name], num_mel_bins=num_mel_bins, num_frames=num_frames)


class ASTBackbone(nn.Module):
    """AST feature extractor: (B, frames, mel) -> (B, hidden), optionally Patch-Mixed."""

    def __init__(self, config: ASTBackboneConfig):
        super().__init__()
        from transformers import ASTModel

        self.config = config
        self.grid = config.grid
        self.ast = ASTModel(config.hf_config())

    @property
    def hidden_size(self) -> int:
        """Width of the output feature (768 for ``ast_base``)."""
        return self.config.hidden_size

    def forward(self, spec: Tensor, mix: PatchMixPlan | None = None) -> Tensor:
        """Mean of the final CLS and distillation tokens; ``mix`` swaps patches before the
        positional embedding is added."""
        if spec.dim() != 3 or spec.shape[1:] != (self.config.num_frames, self.config.num_mel_bins):
            raise ValueError(
                f"AST expects (batch, {self.config.num_frames} frames, {self.config.num_mel_bins} mel bins), "
                f"got {tuple(spec.shape)}; the feature config and the model's input size disagree"
            )
        emb = self.ast.embeddings
        x = emb.patch_embeddings(spec)
        if mix is not None:
            x = apply_patch_mix(x, mix)
        b = x.shape[0]
        x = torch.cat([emb.cls_token.expand(b, -1, -1), emb.distillation_token.expand(b, -1, -1), x], dim=1)
        x = emb.dropout(x + emb.position_embeddings)
        for layer in self.ast.layers:
            x = layer(x)
        x = self.ast.layernorm(x)
        return (x[:, 0] + x[:, 1]) / 2


def build_ast(
    arch: str | ASTBackboneConfig = "ast_base",
    num_mel_bins: int = 128,
    num_frames: int = 798,
    init: str = "random",
    checkpoint: str | Path | None = None,
    swapped_pos_embed: bool = False,
    trust: bool = False,
) -> ASTBackbone:
    """Build a backbone and initialise it (see the module docstring for ``init``); ``trust`` unpickles a
    ``.pth`` fully (can run code: only for a file from a trusted source).

    Raises:
        FileNotFoundError: ``init`` needs a checkpoint that is not given or does not exist (the
            message says where to get it).
        ValueError: the checkpoint's architecture differs from ``arch``.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    config = get_arch(arch, num_mel_bins, num_frames) if isinstance(arch, str) else arch
    backbone = ASTBackbone(config)
    if init == "random":
        emb = backbone.ast.embeddings
        for param in (emb.cls_token, emb.distillation_token, emb.position_embeddings):
            nn.init.trunc_normal_(param, std=0.02)
        return backbone
    if not checkpoint or not Path(checkpoint).exists():
        raise FileNotFoundError(f"model.init={init} needs model.checkpoint, got {str(checkpoint or '')!r}. "
                                + _WHERE[init])
    state, source_grid = read_checkpoint(checkpoint, init, config, trust)
    state["embeddings.position_embeddings"] = adapt_pos_embed(
        state["embeddings.position_embeddings"], source_grid, config.grid, swapped=swapped_pos_embed
    )
    _check_shapes(state, backbone.ast.state_dict(), checkpoint)
    backbone.ast.load_state_dict(state, strict=True)
    return backbone


def read_checkpoint(
    path: str | Path, init: str, config: ASTBackboneConfig, trust: bool = False
) -> tuple[dict[str, Tensor], tuple[int, int]]:
    """A checkpoint's backbone weights in :class:`~transformers.ASTModel` key layout, and its
    positional grid (frequency, time).

    A ``.pth`` is read with :func:`compact_ssl.unpickle.load_untrusted`: a file that would run code
    while unpickling is refused (:class:`~compact_ssl.unpickle.UnsafePickleError`) unless ``trust``.
    """
    path = Path(path)
    if path.is_dir():
        if init != "audioset":
            raise ValueError(f"{path}: a transformers folder holds an AST; use model.init=audioset with it")
        from transformers import ASTModel
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the dropped AudioSet classifier is expected, not news
        hf_logging.disable_progress_bar()
        try:
            model, info = ASTModel.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a transformers AST folder (config.json + weights): {err}") from err
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        if info["missing_keys"] or info["mismatched_keys"]:
            # from_pretrained would silently leave these randomly initialised
            raise ValueError(f"{path}: incomplete AST weights (missing {sorted(info['missing_keys'])[:4]}, "
                             f"mismatched {list(info['mismatched_keys'])[:4]})")
        hf = model.config
        source = replace(config, hidden_size=hf.hidden_size, num_layers=hf.num_hidden_layers,
                         num_heads=hf.num_attention_heads, intermediate_size=hf.intermediate_size,
                         patch_size=hf.patch_size, frequency_stride=hf.frequency_stride, time_stride=hf.time_stride,
                         num_mel_bins=hf.num_mel_bins, num_frames=hf.max_length, layer_norm_eps=config.layer_norm_eps)
        if replace(source, num_mel_bins=config.num_mel_bins, num_frames=config.num_frames) != config:
            raise ValueError(f"{path}: checkpoint architecture {source} does not match the configured {config}")
        return {k: v.float() for k, v in model.state_dict().items()}, source.grid
    raw = load_untrusted(path, what="timm/AST .pth checkpoint", trust=trust)
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]  # DeiT release format
    state = timm_to_hf(raw, path)
    patches = state["embeddings.position_embeddings"].shape[1] - 2
    if init == "imagenet":
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(f"{path}: an ImageNet DeiT checkpoint has a square position grid, got {patches} patches")
        return state, (side, side)
    freq = config.grid[0]  # the AudioSet AST used the same mel bins and stride: only time differs
    if patches % freq:
        raise ValueError(f"{path}: {patches} positions do not form a grid with {freq} frequency rows")
    return state, (freq, patches // freq)


_TIMM_LAYER_KEYS = {
    "norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_TIMM_TOP_KEYS = {
    "cls_token": "embeddings.cls_token", "dist_token": "embeddings.distillation_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias", "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
#: classification heads of the original AST / DeiT checkpoints (timm's two 1000-class heads, AST's
#: 527-class mlp_head); the backbone has none
_TIMM_HEADS = ("head.", "head_dist.", "mlp_head.")


def timm_to_hf(state: dict[str, Tensor], where: str | Path = "checkpoint") -> dict[str, Tensor]:
    """Map a timm ViT/DeiT or original AST state dict (``module.`` / ``v.`` prefixes allowed) to
    :class:`~transformers.ASTModel` keys: fused ``qkv`` is split, heads are dropped, an RGB patch
    kernel is summed to one channel."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        # heads are recognised only once both prefixes are gone: the original AST file holds timm's
        # heads as module.v.head*.* beside its own module.mlp_head.*
        key = key.removeprefix("module.").removeprefix("v.")
        if key.startswith(_TIMM_HEADS):
            continue
        if key in _TIMM_TOP_KEYS:
            out[_TIMM_TOP_KEYS[key]] = value.float()
            continue
        parts = key.split(".", 2)
        if parts[0] != "blocks" or len(parts) != 3:
            raise ValueError(f"{where}: unexpected key {key!r}; expected a timm ViT/DeiT or AST checkpoint")
        index, rest = parts[1], parts[2]
        name, _, leaf = rest.rpartition(".")
        if name == "attn.qkv":
            for proj, chunk in zip(("q_proj", "k_proj", "v_proj"), value.float().chunk(3, dim=0), strict=True):
                out[f"layers.{index}.attention.{proj}.{leaf}"] = chunk.clone()
        elif name in _TIMM_LAYER_KEYS:
            out[f"layers.{index}.{_TIMM_LAYER_KEYS[name]}.{leaf}"] = value.float()
        else:
            raise ValueError(f"{where}: unexpected key {key!r}; expected a timm ViT/DeiT or AST checkpoint")
    if "embeddings.distillation_token" not in out:
        raise ValueError(f"{where}: no distillation token; AST needs a distilled DeiT or an AST checkpoint")
    kernel = out.get("embeddings.patch_embeddings.projection.weight")
    if kernel is not None and kernel.shape[1] != 1:
        out["embeddings.patch_embeddings.projection.weight"] = kernel.sum(dim=1, keepdim=True)
    return out


def adapt_pos_embed(pos_embed: Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int],
                    swapped: bool = False) -> Tensor:
    """Fit positional embeddings (1, 2 + Fs*Ts, D) to a (Ft, Tt) grid: (1, 2 + Ft*Tt, D).

    The two token embeddings are kept. Each axis (time, then frequency) is centre-sliced when the
    target is not larger and bilinearly interpolated otherwise. ``swapped`` builds the grid as
    (Tt rows, Ft columns) and flattens it row-major, which is what the official Patch-Mix code
    does (its compatibility mode).
    """
    fs, ts = source_grid
    if pos_embed.shape[1] != 2 + fs * ts:
        raise ValueError(f"positional embedding has {pos_embed.shape[1]} entries, expected 2 + {fs}x{ts}")
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 2:].reshape(1, fs, ts, dim).permute(0, 3, 1, 2).float()
    rows, cols = (target_grid[1], target_grid[0]) if swapped else target_grid
    grid = _fit_axis(grid, cols, axis=3)
    grid = _fit_axis(grid, rows, axis=2)
    return torch.cat([pos_embed[:, :2].float(), grid.flatten(2).transpose(1, 2)], dim=1).contiguous()


def _fit_axis(grid: Tensor, size: int, axis: int) -> Tensor:
    src = grid.shape[axis]
    if size <= src:
        start = src // 2 - size // 2
        return grid.narrow(axis, start, size)
    shape = list(grid.shape[2:])
    shape[axis - 2] = size
    return F.interpolate(grid, size=tuple(shape), mode="bilinear", align_corners=False)


def _check_shapes(state: dict[str, Tensor], expected: dict[str, Tensor], where: str | Path) -> None:
    mismatch = state_dict_mismatch(expected, state, limit=4)
    if mismatch:
        raise ValueError(f"{where}: checkpoint does not fit the configured AST ({mismatch}); check model.arch")


_WHERE = {
    "audioset": "Download the AudioSet AST: the transformers folder MIT/ast-finetuned-audioset-10-10-0.4593 "
                "(e.g. `huggingface-cli download MIT/ast-finetuned-audioset-10-10-0.4593 --local-dir DIR`) or "
                "audioset_10_10_0.4593.pth from the AST README, and pass its path (recipe: --pretrained PATH).",
    "imagenet": "Download the distilled DeiT-B/16-384 timm checkpoint deit_base_distilled_patch16_384-d0272ac0.pth "
                "and pass its path (recipe: --pretrained PATH).",
}
