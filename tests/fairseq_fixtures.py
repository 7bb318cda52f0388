"""Inverse of the fairseq converter (transformers -> fairseq names and cfg), for tests only.

The tests build fairseq-style checkpoints from tiny transformers teachers with these and check
that :mod:`audio_compress.teachers.fairseq` reads them back to the same model; the toolkit
itself never writes fairseq files. The name tables are the converter's own, read backwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from transformers import PretrainedConfig

from audio_compress.teachers.fairseq import FairseqConversionError
from audio_compress.teachers.fairseq.config import ACTIVATIONS, check_model_type
from audio_compress.teachers.fairseq.state_dict import LAYER_KEY, TOP_PAIRS, layer_pairs

_HF_CONV = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)$")


def format_conv_feature_layers(conv_dim, conv_kernel, conv_stride) -> str:
    """Inverse of :func:`~audio_compress.teachers.fairseq.parse_conv_feature_layers`: one tuple
    per block, joined by ``+``."""
    return " + ".join(f"[({d}, {k}, {s})]" for d, k, s in zip(conv_dim, conv_kernel, conv_stride))


def transformers_to_fairseq_config(config: PretrainedConfig) -> dict[str, Any]:
    """fairseq-style model cfg dict (``_name``, ``encoder_layers`` ...) for a transformers config."""
    model_type = config.model_type
    out: dict[str, Any] = {
        "_name": model_type,
        "extractor_mode": "layer_norm" if config.feat_extract_norm == "layer" else "default",
        "conv_feature_layers": format_conv_feature_layers(config.conv_dim, config.conv_kernel, config.conv_stride),
        "conv_bias": bool(config.conv_bias),
        "encoder_layers": int(config.num_hidden_layers),
        "encoder_embed_dim": int(config.hidden_size),
        "encoder_ffn_embed_dim": int(config.intermediate_size),
        "encoder_attention_heads": int(config.num_attention_heads),
        "activation_fn": {v: k for k, v in ACTIVATIONS.items()}.get(config.hidden_act, config.hidden_act),
        "layer_norm_first": bool(config.do_stable_layer_norm),
        "conv_pos": int(config.num_conv_pos_embeddings),
        "conv_pos_groups": int(config.num_conv_pos_embedding_groups),
        "dropout": float(config.hidden_dropout),
        "attention_dropout": float(config.attention_dropout),
        "activation_dropout": float(config.activation_dropout),
        "dropout_input": float(config.feat_proj_dropout),
        "mask_prob": float(config.mask_time_prob),
        "mask_length": int(config.mask_time_length),
    }
    if model_type == "wavlm":
        out.update(relative_position_embedding=True, gru_rel_pos=True,
                   num_buckets=int(config.num_buckets), max_distance=int(config.max_bucket_distance))
    return out


def transformers_to_fairseq_state_dict(
    hf_sd: Mapping[str, torch.Tensor], model_type: str, feat_extract_norm: str | None = None
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`~audio_compress.teachers.fairseq.convert_fairseq_state_dict`
    (pre-training heads are not produced).

    ``feat_extract_norm`` (``"group"``/``"layer"``) is inferred from the keys when
    omitted: LayerNorm mode has a norm in every CNN block. Old-style weight-norm
    names (``weight_g``/``weight_v``) are accepted as well as parametrizations.
    """
    check_model_type(model_type)
    if feat_extract_norm is None:
        feat_extract_norm = "layer" if "feature_extractor.conv_layers.1.layer_norm.weight" in hf_sd else "group"
    layer_map = {hf: fs for fs, hf in layer_pairs(model_type)}
    top_map = {hf: fs for fs, hf in TOP_PAIRS}
    top_map["encoder.pos_conv_embed.conv.weight_g"] = "encoder.pos_conv.0.weight_g"
    top_map["encoder.pos_conv_embed.conv.weight_v"] = "encoder.pos_conv.0.weight_v"
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in hf_sd.items():
        new = top_map.get(key)
        if new is None and (m := LAYER_KEY.match(key)) and m.group(2) in layer_map:
            new = f"encoder.layers.{m.group(1)}.{layer_map[m.group(2)]}"
        if new is None and (m := _HF_CONV.match(key)):
            block, sub, param = m.groups()
            if sub == "conv":
                new = f"feature_extractor.conv_layers.{block}.0.{param}"
            elif feat_extract_norm == "layer":
                new = f"feature_extractor.conv_layers.{block}.2.1.{param}"
            elif block == "0":
                new = f"feature_extractor.conv_layers.0.2.{param}"
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    if unmapped:
        raise FairseqConversionError(
            f"{len(unmapped)} transformers key(s) have no fairseq {model_type} mapping: {sorted(unmapped)}"
        )
    return out
