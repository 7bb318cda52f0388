"""Parameter names of released speech students mapped onto :class:`~audio_compress.models.StudentModel`.

Both released layouts come from fairseq-style modules; the shared part (CNN, positional
convolution) is renamed by :data:`_COMMON_RULES`:

* ``feature_extractor.conv_layers.{i}.0.weight`` -> ``feature_extractor.conv_layers.{i}.conv.weight``
  and the first block's GroupNorm ``conv_layers.0.2.*`` -> ``conv_layers.0.norm.*``;
* ``encoder.pos_conv.0.{bias, weight_g, weight_v}`` -> ``encoder.pos_conv.conv.{bias,
  parametrizations.weight.original0, original1}`` (old- and new-style weight norm alike);
* ``encoder.layers.*``, ``encoder.layer_norm.*`` and ``post_extract_proj.*`` keep their names.

Lightning releases (STaR, ARMHuBERT family): keys below ``student_model.`` only (anything else
in the Lightning module, e.g. a teacher, is ignored); ``final_proj.*`` (STaR's training-time
projection, deleted by its upstream) is dropped; ``mask_emb`` -> ``mask_emb.weight``;
``layer_norm.*`` (over the CNN output) -> ``feature_layer_norm.*``;
``proj_head.{l}.lin_proj.*`` -> ``proj_heads.{l}.*``.

s3prl DistilHuBERT: ``output_layer.0.*`` -> ``pred_head.expand.*``; the split linear
``output_layer.2.weight`` (N, in, out) and ``output_layer.2.bias`` (1, 1, N, out) become N
Linear layers: ``weight[n].T`` -> ``pred_head.split.{n}.weight``, ``bias[0, 0, n]`` ->
``pred_head.split.{n}.bias``.

Names that no rule covers pass through unchanged, so the strict load that follows lists them
as unexpected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor

LIGHTNING_PREFIX = "student_model."

_Rules = tuple[tuple[re.Pattern, str], ...]


def _rules(*pairs: tuple[str, str]) -> _Rules:
    return tuple((re.compile(pattern), replacement) for pattern, replacement in pairs)


_COMMON_RULES = _rules(
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.weight$", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"^feature_extractor\.conv_layers\.0\.2\.(weight|bias)$", r"feature_extractor.conv_layers.0.norm.\1"),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.(bias|parametrizations\.weight\.original[01])$", r"encoder.pos_conv.conv.\1"),
)
_LIGHTNING_RULES = _COMMON_RULES + _rules(
    (r"^mask_emb$", "mask_emb.weight"),
    (r"^layer_norm\.(weight|bias)$", r"feature_layer_norm.\1"),
    (r"^proj_head\.(\d+)\.lin_proj\.(weight|bias)$", r"proj_heads.\1.\2"),
)
_DISTILLER_RULES = _COMMON_RULES + _rules(
    (r"^output_layer\.0\.(weight|bias)$", r"pred_head.expand.\1"),
)
_DROPPED = re.compile(r"^final_proj\.")
_SPLIT_WEIGHT, _SPLIT_BIAS = "output_layer.2.weight", "output_layer.2.bias"


@dataclass
class MappedState:
    """A released state dict under this toolkit's names.

    Attributes:
        state_dict: the renamed tensors.
        ignored: released names deliberately left out (outside the student, or dropped).
    """

    state_dict: dict[str, Tensor]
    ignored: list[str] = field(default_factory=list)


def _rename(key: str, rules: _Rules) -> str:
    for pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key


def _put(out: dict[str, Tensor], target: str, value: Tensor, source: str, where: str) -> None:
    if target in out:
        raise ValueError(f"{where}: two weights map to {target} (the second is {source}); the file mixes layouts")
    out[target] = value


def has_projection_heads(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a Lightning release holds layer-wise projection heads (ARMHuBERT family, not STaR)."""
    return any(str(k).startswith(LIGHTNING_PREFIX + "proj_head.") for k in state_dict)


def map_lightning_state(state_dict: Mapping[str, Tensor], where: str) -> MappedState:
    """Rename the ``student_model.*`` weights of a released Lightning checkpoint."""
    out: dict[str, Tensor] = {}
    ignored = []
    for key, value in state_dict.items():
        key = str(key)
        local = key[len(LIGHTNING_PREFIX):] if key.startswith(LIGHTNING_PREFIX) else None
        if local is None or _DROPPED.match(local):
            ignored.append(key)
            continue
        _put(out, _rename(local, _LIGHTNING_RULES), value, key, where)
    if not out:
        raise ValueError(f"{where}: the Lightning state_dict holds no '{LIGHTNING_PREFIX}*' weights")
    return MappedState(out, ignored)


def map_distiller_state(state_dict: Mapping[str, Tensor], where: str) -> MappedState:
    """Rename the ``Distiller`` weights of an s3prl DistilHuBERT checkpoint (split heads unstacked)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = str(key)
        if key not in (_SPLIT_WEIGHT, _SPLIT_BIAS):
            _put(out, _rename(key, _DISTILLER_RULES), value, key, where)
    if _SPLIT_WEIGHT in state_dict or _SPLIT_BIAS in state_dict:
        for n, (weight, bias) in enumerate(_unstack_split(state_dict, where)):
            _put(out, f"pred_head.split.{n}.weight", weight, _SPLIT_WEIGHT, where)
            _put(out, f"pred_head.split.{n}.bias", bias, _SPLIT_BIAS, where)
    return MappedState(out)


def _unstack_split(state_dict: Mapping[str, Tensor], where: str) -> list[tuple[Tensor, Tensor]]:
    weight, bias = state_dict.get(_SPLIT_WEIGHT), state_dict.get(_SPLIT_BIAS)
    if weight is None or bias is None:
        raise ValueError(f"{where}: the split prediction layer needs both {_SPLIT_WEIGHT} and {_SPLIT_BIAS}")
    shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in (weight, bias)]
    if not (isinstance(shapes[0], tuple) and isinstance(shapes[1], tuple) and len(shapes[0]) == 3
            and shapes[1] == (1, 1, shapes[0][0], shapes[0][2])):
        raise ValueError(f"{where}: {_SPLIT_WEIGHT} {shapes[0]} and {_SPLIT_BIAS} {shapes[1]} are not an s3prl split "
                         "linear layer: expected weight (N, in, out) and bias (1, 1, N, out)")
    return [(weight[n].t().contiguous(), bias[0, 0, n].clone()) for n in range(weight.shape[0])]
