"""Architectures of released speech students, read from their own configuration.

Two sources are understood:

* the ``distiller:`` section of the YAML that comes with a Lightning release of the ARMHuBERT
  family or STaR (fairseq-style keys, :func:`release_config`);
* the ``Config["distiller"]`` dict inside an s3prl DistilHuBERT checkpoint (:func:`distiller_config`).

Both are turned into a :class:`~audio_compress.models.config.StudentConfig`. Keys that change
the forward pass and that this toolkit does not implement (another activation, pre-LN layers,
a time-reduction layer, ...) are refused with the key and the value; keys that matter only for
training (layer drop, teacher initialisation, loss settings) are ignored. Defaults for absent
optional keys are those of the official model configurations; the five architecture keys are
required.

Which YAML keys the ARM-specific options use (``reuse_pattern`` as a Python-literal string,
``layer_grad_scale``, ``layerwise_proj``, ``pred_head_final_dim`` for the width of the kept
projection heads, ``dropout_input``, ``enable_tr_layer``) follows the configurations published
with ARMHuBERT; STaR's own YAML was not available to us, and is read with the same keys
(inferred: STaR "is developed upon the backbone of ARMHuBERT").
"""

from __future__ import annotations

import ast
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from audio_compress.models.config import StudentConfig, get_student_config, list_students
from audio_compress.teachers.fairseq.config import parse_conv_feature_layers

#: Keys that must be present in a ``distiller:`` section.
ARCHITECTURE_KEYS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads")

# (key, the only value this toolkit implements): anything else changes the forward pass.
_FIXED_VALUES = (
    ("extractor_mode", "default"),
    ("conv_bias", False),
    ("activation_fn", "gelu"),
    ("layer_norm_first", False),
    ("layer_type", "transformer"),
    ("pos_conv_depth", 1),
    ("crop_seq_to_multiple", 1),
    ("enable_tr_layer", False),
    ("attention_type", "original"),
)

# StudentConfig fields that do not identify a registered architecture: the STaR heads are
# not fixed by the papers (the released YAML decides), and release compatibility is a property
# of how the weights were trained, not of the architecture.
_NOT_IDENTIFYING = ("name", "num_heads", "arm_release_compat")

def parse_conv_spec(text: str | list, where: str) -> list[tuple[int, int, int]]:
    """CNN layers from a fairseq-style spec such as ``"[(128, 10, 5)] + [(256, 3, 2)] * 4"`` or a
    YAML list of triples, parsed without ``eval`` (the teachers' parser); ``where`` names the file
    and key for error messages."""
    try:
        return parse_conv_feature_layers(text)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def _literal_list(value: Any, where: str) -> list:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"{where}: {value!r} is not a literal Python list") from err
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    return list(value)


def read_distiller_section(yaml_path: str | Path) -> dict[str, Any]:
    """The ``distiller:`` mapping of a release YAML (the file s3prl's ``-g`` / ``model_config`` names)."""
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise FileNotFoundError(f"{yaml_path}: model config YAML not found")
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{yaml_path}: not a readable YAML file ({err})") from err
    section = data.get("distiller") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{yaml_path}: no 'distiller:' section; the model config of a released STaR / ARMHuBERT "
                         "checkpoint is the training YAML, whose 'distiller:' section describes the student")
    return section


def _common_fields(section: dict[str, Any], where: str, conv_key: str, activation_dropout: float) -> dict[str, Any]:
    # activation_dropout: its default when absent, which differs between the two official configs
    missing = [k for k in (conv_key, *ARCHITECTURE_KEYS) if k not in section]
    if missing:
        raise ValueError(f"{where}: the distiller config lacks {missing}; these keys define the architecture")
    for key, supported in _FIXED_VALUES:
        if key in section and section[key] != supported:
            raise ValueError(f"{where}: {key}: {section[key]!r} is not supported (only {supported!r} is implemented)")
    return dict(
        conv_layers=parse_conv_spec(section[conv_key], f"{where}: {conv_key}"),
        num_layers=int(section["encoder_layers"]),
        embed_dim=int(section["encoder_embed_dim"]),
        ffn_dim=int(section["encoder_ffn_embed_dim"]),
        num_heads=int(section["encoder_attention_heads"]),
        feature_grad_mult=float(section.get("feature_grad_mult", 1.0)),
        pos_conv_kernel=int(section.get("conv_pos", 128)),
        pos_conv_groups=int(section.get("conv_pos_groups", 16)),
        dropout=float(section.get("dropout", 0.1)),
        attention_dropout=float(section.get("attention_dropout", 0.1)),
        activation_dropout=float(section.get("activation_dropout", activation_dropout)),
    )


def release_config(section: dict[str, Any], where: str, arm_family: bool) -> StudentConfig:
    """Config of a Lightning release from its YAML ``distiller:`` section.

    Args:
        section: the ``distiller:`` mapping (:func:`read_distiller_section`).
        where: the YAML path, for messages.
        arm_family: the checkpoint holds layer-wise projection heads (ARMHuBERT, ARMHuBERT-S,
            ARMwavLM-S, MaskHuBERT); False for STaR. The YAML must agree.

    ARM-family students get a mask embedding, keep their heads (``upstream_outputs =
    "projections"``) and are built with ``arm_release_compat=True``: their weights were trained
    with the released attention-reuse code. STaR students expose the layer outputs.
    """
    fields = _common_fields(section, where, "conv_feature_layers", activation_dropout=0.0)
    reuse = _literal_list(section.get("reuse_pattern", [True] * fields["num_layers"]), f"{where}: reuse_pattern")
    if not all(isinstance(v, bool) for v in reuse):
        raise ValueError(f"{where}: reuse_pattern must be a list of True/False, got {reuse!r}")
    layerwise_proj = bool(section.get("layerwise_proj", False))
    if arm_family and not layerwise_proj:
        raise ValueError(f"{where}: the checkpoint holds layer-wise projection heads (ARMHuBERT family) but the YAML "
                         "does not set layerwise_proj: True; is this the YAML of that checkpoint?")
    if not arm_family and layerwise_proj:
        raise ValueError(f"{where}: the YAML sets layerwise_proj: True (ARMHuBERT family) but the checkpoint holds no "
                         "student_model.proj_head.* weights; is this the YAML of that checkpoint?")
    if not arm_family and not all(reuse):
        raise ValueError(f"{where}: reuse_pattern {reuse} has attention-reuse layers (ARMHuBERT) but the checkpoint "
                         "holds no projection heads (STaR, which computes attention in every layer)")
    family = dict(mask_emb=True, proj_dim=int(section.get("pred_head_final_dim", 768)), upstream_outputs="projections",
                  arm_release_compat=True) if arm_family else dict(upstream_outputs="layers")
    return _named_config(where, **fields, reuse_pattern=reuse, input_dropout=float(section.get("dropout_input", 0.0)),
                         layer_grad_scale=bool(section.get("layer_grad_scale", False)), **family)


def distiller_config(section: dict[str, Any], where: str) -> StudentConfig:
    """Config of an s3prl DistilHuBERT checkpoint from its ``Config["distiller"]`` dict.

    Only the released head type is implemented: ``out_layer_type`` and ``task_emb_type``
    "expand-last", one head per ``pred_layer_id`` entry, of width ``final_dim`` equal to the
    model width (s3prl stacks all hidden states, so they must share it).
    """
    fields = _common_fields(section, where, "extractor_conv_feature_layers", activation_dropout=0.1)
    for key in ("out_layer_type", "task_emb_type"):
        if section.get(key, "expand-last") != "expand-last":
            raise ValueError(f"{where}: {key}: {section[key]!r} is not supported (only 'expand-last' is implemented)")
    if "pred_layer_id" not in section:
        raise ValueError(f"{where}: the distiller config lacks pred_layer_id (the teacher layers its heads predict)")
    pred_layers = [int(v) for v in _literal_list(section["pred_layer_id"], f"{where}: pred_layer_id")]
    n_tasks = int(section.get("n_tasks", len(pred_layers)))
    if n_tasks != len(pred_layers):
        raise ValueError(f"{where}: n_tasks is {n_tasks} but pred_layer_id {pred_layers} names {len(pred_layers)} layers")
    width = fields["embed_dim"]
    inter = int(section.get("out_layer_inter_dim", -1))
    final = int(section.get("final_dim", width))
    if final != width or inter not in (-1, 0, width):
        raise ValueError(f"{where}: prediction heads of final_dim {final} and out_layer_inter_dim {inter} are not "
                         f"supported; both must equal encoder_embed_dim {width}")
    return _named_config(where, **fields, feature_layer_norm=False, input_dropout=0.0, pred_layers=pred_layers,
                         upstream_outputs="distiller")


def _named_config(where: str, **fields: Any) -> StudentConfig:
    try:
        config = StudentConfig(**fields)
    except ValueError as err:
        raise ValueError(f"{where}: not a valid student architecture: {err}") from err
    config.name = registered_name(config)
    return config


def registered_name(config: StudentConfig) -> str:
    """The registered student whose architecture ``config`` is, else ``"custom"``.

    Every field counts except the name, the number of heads (no parameter depends on it, and
    for STaR the released YAML decides it) and ``arm_release_compat``.
    """
    mine = {k: v for k, v in asdict(config).items() if k not in _NOT_IDENTIFYING}
    for name in list_students():
        other = asdict(get_student_config(name))
        if all(other[k] == v for k, v in mine.items()):
            return name
    return "custom"
