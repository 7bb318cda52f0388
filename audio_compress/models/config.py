"""Student configuration and the registry of named student architectures.

Configurations are plain data (a dataclass of ints, floats, bools, strings and
lists), so they survive ``dataclasses.asdict`` and ``torch.load(weights_only=True)``.
The registry follows the timm convention: a name maps to keyword arguments of
:class:`StudentConfig`, and :func:`get_student_config` applies overrides on top.

Parameter counts of the registered full-size students (trainable parameters,
reference section 8) are pinned in ``tests/test_models.py``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from audio_compress.frames import HOP, RECEPTIVE_FIELD

#: What the s3prl upstream exposes as ``hidden_states`` (see ``StudentModel.upstream_hidden_states``).
UpstreamOutputs = Literal["layers", "projections", "distiller"]
_UPSTREAM_OUTPUTS = ("layers", "projections", "distiller")


def _cnn(last: int) -> list[tuple[int, int, int]]:
    """ARM/STaR CNN: 128(10,5) -> 256(1,1) -> 256(3,2)x4 -> last(1,1) -> last(2,2)x2."""
    return [(128, 10, 5), (256, 1, 1)] + [(256, 3, 2)] * 4 + [(last, 1, 1)] + [(last, 2, 2)] * 2


#: The wav2vec 2.0 / HuBERT CNN used by DistilHuBERT.
WAV2VEC2_CNN: list[tuple[int, int, int]] = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def _receptive_field_and_hop(conv_layers: list[tuple[int, int, int]]) -> tuple[int, int]:
    receptive, hop = 1, 1
    for _, kernel, stride in conv_layers:
        receptive += (kernel - 1) * hop
        hop *= stride
    return receptive, hop


@dataclass
class StudentConfig:
    """Architecture of one student of the STaR / ARMHuBERT / DistilHuBERT family.

    Attributes:
        name: registry name, stored in checkpoints (``"custom"`` when built by hand).
        conv_layers: CNN blocks as ``(channels, kernel, stride)``; the total geometry must
            be the wav2vec 2.0 one (receptive field 400, hop 320) so that frames follow
            :func:`audio_compress.frames.num_frames`.
        feature_layer_norm: LayerNorm over the CNN output channels (False for DistilHuBERT).
        feature_grad_mult: gradient multiplier on the CNN output (DistilHuBERT: 0.1); 0 freezes the CNN (no
            gradient at all, so no weight decay either).
        embed_dim: Transformer width d; a Linear projection follows the CNN when its
            channel count differs from d.
        ffn_dim: feed-forward width f.
        num_heads: attention heads h (d must be divisible by h).
        num_layers: Transformer layers L.
        reuse_pattern: one bool per layer, True = the layer computes its own attention,
            False = it reuses the previous layer's attention map (ARMHuBERT:
            ``[True, False] * 6``). ``None`` means every layer computes attention.
        arm_release_compat: reproduce the released ARMHuBERT reuse code, including two
            quirks: the reused probabilities go through a second softmax (so maps get
            flatter), and the map tensor is flattened head-major while the values are
            flattened batch-major (so for batch > 1 a row uses other rows' and heads'
            maps). Only useful to match the official checkpoints' features; keep False
            otherwise.
        mask_emb: learned d-dimensional embedding written at masked frames.
        dropout: residual-branch dropout in the Transformer and after the encoder LN.
        attention_dropout: dropout on attention probabilities (0 in reuse layers).
        activation_dropout: dropout after the FFN activation.
        input_dropout: dropout on the projected CNN features.
        pos_conv_kernel: kernel of the convolutional positional embedding (even).
        pos_conv_groups: groups of the convolutional positional embedding.
        layer_grad_scale: ARMHuBERT layer-gradient scaling (forward identity).
        proj_dim: width of one Linear(d, proj_dim) projection head per layer, or None.
        pred_layers: teacher layers predicted by DistilHuBERT-style heads, or None.
        pred_dim: width of each prediction (None = d).
        upstream_outputs: what the s3prl upstream exposes as ``hidden_states``:
            ``"layers"`` (the L layer outputs, STaR), ``"projections"`` (the L projection
            heads, ARMHuBERT / MaskHuBERT) or ``"distiller"`` (projected CNN features,
            the layer outputs and the head predictions, DistilHuBERT).
    """

    name: str = "custom"
    conv_layers: list[tuple[int, int, int]] = field(default_factory=lambda: _cnn(432))
    feature_layer_norm: bool = True
    feature_grad_mult: float = 1.0
    embed_dim: int = 432
    ffn_dim: int = 976
    num_heads: int = 12
    num_layers: int = 12
    reuse_pattern: list[bool] | None = None
    arm_release_compat: bool = False
    mask_emb: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    input_dropout: float = 0.05
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_grad_scale: bool = False
    proj_dim: int | None = None
    pred_layers: list[int] | None = None
    pred_dim: int | None = None
    upstream_outputs: UpstreamOutputs = "layers"

    def __post_init__(self) -> None:
        self.conv_layers = [tuple(int(v) for v in block) for block in self.conv_layers]
        if self.reuse_pattern is None:
            self.reuse_pattern = [True] * self.num_layers
        self.reuse_pattern = [bool(v) for v in self.reuse_pattern]
        if self.pred_layers is not None:
            self.pred_layers = [int(v) for v in self.pred_layers]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` describing the first inconsistency found."""
        if not self.conv_layers or any(len(b) != 3 or min(b) < 1 for b in self.conv_layers):
            raise ValueError(f"conv_layers must be non-empty (channels, kernel, stride) triples, got {self.conv_layers}")
        geometry = _receptive_field_and_hop(self.conv_layers)
        if geometry != (RECEPTIVE_FIELD, HOP):
            raise ValueError(
                f"conv_layers give receptive field {geometry[0]} and hop {geometry[1]}; "
                f"frame masks and s3prl's downsample rate assume {RECEPTIVE_FIELD} and {HOP}"
            )
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0 (0 freezes the CNN), got {self.feature_grad_mult}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % self.pos_conv_groups:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        if self.pos_conv_kernel % 2:
            raise ValueError(f"pos_conv_kernel must be even (the last frame is dropped), got {self.pos_conv_kernel}")
        if len(self.reuse_pattern) != self.num_layers:
            raise ValueError(
                f"reuse_pattern has {len(self.reuse_pattern)} entries but num_layers is {self.num_layers}"
            )
        if not self.reuse_pattern[0]:
            raise ValueError("reuse_pattern[0] must be True: the first layer has no previous attention map to reuse")
        if self.upstream_outputs not in _UPSTREAM_OUTPUTS:
            raise ValueError(f"upstream_outputs must be one of {_UPSTREAM_OUTPUTS}, got {self.upstream_outputs!r}")
        if self.upstream_outputs == "projections" and self.proj_dim is None:
            raise ValueError("upstream_outputs='projections' needs proj_dim")
        if self.pred_layers is not None and not self.pred_layers:
            raise ValueError("pred_layers must be None or a non-empty list of teacher layer ids")
        if self.upstream_outputs == "distiller":
            if self.pred_layers is None:
                raise ValueError("upstream_outputs='distiller' needs pred_layers")
            if self.pred_dim not in (None, self.embed_dim):
                # s3prl stacks all hidden_states, so every tensor must share the width d.
                raise ValueError("upstream_outputs='distiller' needs pred_dim equal to embed_dim")

    @property
    def cnn_dim(self) -> int:
        """Channels of the last CNN block."""
        return self.conv_layers[-1][0]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """Rebuild a config from ``dataclasses.asdict`` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown StudentConfig fields: {unknown}")
        return cls(**data)


_ARM_FAMILY = dict(dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, input_dropout=0.05)
_ALTERNATE = [True, False] * 6

# Heads for STaR are not identifiable from the parameter count; 12 follows the ARM family.
_REGISTRY: dict[str, dict[str, Any]] = {
    "starhubert": dict(conv_layers=_cnn(432), embed_dim=432, ffn_dim=976, num_heads=12, **_ARM_FAMILY),
    "starhubert_l": dict(conv_layers=_cnn(480), embed_dim=480, ffn_dim=1024, num_heads=12, **_ARM_FAMILY),
    "armhubert": dict(
        conv_layers=_cnn(480), embed_dim=480, ffn_dim=864, num_heads=12, reuse_pattern=_ALTERNATE,
        mask_emb=True, layer_grad_scale=True, proj_dim=768, upstream_outputs="projections", **_ARM_FAMILY,
    ),
    "armhubert_s": dict(
        conv_layers=_cnn(432), embed_dim=432, ffn_dim=816, num_heads=12, reuse_pattern=_ALTERNATE,
        mask_emb=True, layer_grad_scale=True, proj_dim=768, upstream_outputs="projections", **_ARM_FAMILY,
    ),
    "maskhubert": dict(
        conv_layers=_cnn(480), embed_dim=480, ffn_dim=640, num_heads=12, mask_emb=True,
        proj_dim=768, upstream_outputs="projections", **_ARM_FAMILY,
    ),
    "distilhubert": dict(
        conv_layers=WAV2VEC2_CNN, feature_layer_norm=False, feature_grad_mult=0.1, embed_dim=768,
        ffn_dim=3072, num_heads=12, num_layers=2, dropout=0.1, attention_dropout=0.1,
        activation_dropout=0.1, input_dropout=0.0, pred_layers=[4, 8, 12], upstream_outputs="distiller",
    ),
    # Tiny variants for CPU tests and mini recipes: same CNN strides and kernels (frames follow the
    # formula), sized for the 4-layer, 64-wide ``tiny_hubert`` teacher.
    "tiny_star": dict(
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2, embed_dim=64, ffn_dim=128,
        num_heads=4, num_layers=3, **_ARM_FAMILY,
    ),
    "tiny_arm": dict(
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(64, 2, 2)] * 2, embed_dim=64, ffn_dim=128,
        num_heads=4, num_layers=4, reuse_pattern=[True, False, True, False], mask_emb=True,
        layer_grad_scale=True, proj_dim=64, upstream_outputs="projections", **_ARM_FAMILY,
    ),
    "tiny_distil": dict(
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2, feature_layer_norm=False,
        feature_grad_mult=0.1, embed_dim=64, ffn_dim=128, num_heads=4, num_layers=2, input_dropout=0.0,
        pred_layers=[2, 3, 4], upstream_outputs="distiller",
    ),
}


def list_students() -> list[str]:
    """Names accepted by :func:`get_student_config` and ``build_student``."""
    return sorted(_REGISTRY)


def get_student_config(name: str, **overrides: Any) -> StudentConfig:
    """The registered configuration ``name`` with ``overrides`` applied (validated)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown student {name!r}; available: {', '.join(list_students())}")
    kwargs = copy.deepcopy(_REGISTRY[name])
    kwargs.update(overrides)
    kwargs.setdefault("name", name)
    return StudentConfig(**kwargs)
