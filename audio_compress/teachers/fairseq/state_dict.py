"""fairseq parameter names -> transformers ``{Hubert,WavLM,Wav2Vec2}Model`` names, and the model.

==============================================================  =====================================================
fairseq                                                         transformers
==============================================================  =====================================================
``feature_extractor.conv_layers.{i}.0.{weight,bias}``           ``feature_extractor.conv_layers.{i}.conv.*``
``feature_extractor.conv_layers.0.2.*`` (GroupNorm, default)    ``feature_extractor.conv_layers.0.layer_norm.*``
``feature_extractor.conv_layers.{i}.2.1.*`` (LayerNorm mode)    ``feature_extractor.conv_layers.{i}.layer_norm.*``
``layer_norm.*`` (over CNN channels)                            ``feature_projection.layer_norm.*``
``post_extract_proj.*``                                         ``feature_projection.projection.*``
``mask_emb``                                                    ``masked_spec_embed``
``encoder.pos_conv.0.bias`` / ``weight_g`` / ``weight_v``       ``encoder.pos_conv_embed.conv.bias`` /
                                                                ``...parametrizations.weight.original0`` / ``original1``
``encoder.layer_norm.*``                                        ``encoder.layer_norm.*``
``encoder.layers.{i}.self_attn.{q,k,v,out}_proj.*``             ``encoder.layers.{i}.attention.{q,k,v,out}_proj.*``
``encoder.layers.{i}.self_attn_layer_norm.*``                   ``encoder.layers.{i}.layer_norm.*``
``encoder.layers.{i}.fc1.*`` / ``fc2.*``                        ``...feed_forward.intermediate_dense.*`` /
                                                                ``...feed_forward.output_dense.*``
``encoder.layers.{i}.final_layer_norm.*``                       ``encoder.layers.{i}.final_layer_norm.*``
WavLM ``self_attn.grep_linear.*`` / ``grep_a`` /                ``attention.gru_rel_pos_linear.*`` /
                                                                ``attention.gru_rel_pos_const`` /
``self_attn.relative_attention_bias.weight``                    ``attention.rel_attn_embed.weight``
==============================================================  =====================================================

The fairseq CNN blocks are ``Sequential(conv, dropout, norm, GELU)``, hence the norm at
index 2; in LayerNorm mode the norm is itself ``Sequential(transpose, LayerNorm,
transpose)``, hence ``2.1``. Pre-training heads are dropped on purpose
(:data:`IGNORED_PREFIXES`); any other unmapped key is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from transformers import PreTrainedModel

from audio_compress.teachers.configs import MODEL_CLASSES
from audio_compress.teachers.fairseq.checkpoint import FairseqCheckpoint, FairseqConversionError
from audio_compress.teachers.fairseq.config import check_model_type, detect_model_type, fairseq_to_transformers_config

__all__ = [
    "IGNORED_PREFIXES",
    "LAYER_KEY",
    "TOP_PAIRS",
    "build_model_from_fairseq",
    "convert_fairseq_state_dict",
    "layer_pairs",
]

#: fairseq keys dropped on purpose: pre-training heads that the encoder does not use
#: (HuBERT ``final_proj`` and label embeddings, wav2vec 2.0 quantizer and projections).
IGNORED_PREFIXES = ("final_proj.", "label_embs_concat", "quantizer.", "project_q.")

_PARAMS = ("weight", "bias")
#: (fairseq, transformers) names inside ``encoder.layers.{i}.``
_LAYER_PAIRS: list[tuple[str, str]] = [
    (f"self_attn.{proj}_proj.{p}", f"attention.{proj}_proj.{p}") for proj in ("q", "k", "v", "out") for p in _PARAMS
] + [
    (f"{fs}.{p}", f"{hf}.{p}")
    for fs, hf in (
        ("self_attn_layer_norm", "layer_norm"),
        ("fc1", "feed_forward.intermediate_dense"),
        ("fc2", "feed_forward.output_dense"),
        ("final_layer_norm", "final_layer_norm"),
    )
    for p in _PARAMS
]
_WAVLM_LAYER_PAIRS: list[tuple[str, str]] = [
    ("self_attn.grep_linear.weight", "attention.gru_rel_pos_linear.weight"),
    ("self_attn.grep_linear.bias", "attention.gru_rel_pos_linear.bias"),
    ("self_attn.grep_a", "attention.gru_rel_pos_const"),
    ("self_attn.relative_attention_bias.weight", "attention.rel_attn_embed.weight"),
]
#: (fairseq, transformers) names outside the CNN and the Transformer layers.
TOP_PAIRS: list[tuple[str, str]] = [
    ("layer_norm.weight", "feature_projection.layer_norm.weight"),
    ("layer_norm.bias", "feature_projection.layer_norm.bias"),
    ("post_extract_proj.weight", "feature_projection.projection.weight"),
    ("post_extract_proj.bias", "feature_projection.projection.bias"),
    ("mask_emb", "masked_spec_embed"),
    ("encoder.pos_conv.0.bias", "encoder.pos_conv_embed.conv.bias"),
    ("encoder.pos_conv.0.weight_g", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    ("encoder.pos_conv.0.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    ("encoder.layer_norm.weight", "encoder.layer_norm.weight"),
    ("encoder.layer_norm.bias", "encoder.layer_norm.bias"),
]
#: a Transformer layer parameter (same prefix in both namings): layer index, name inside the layer
LAYER_KEY = re.compile(r"encoder\.layers\.(\d+)\.(.+)$")
_FS_CONV = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.(0|2|2\.1)\.(weight|bias)$")


def layer_pairs(model_type: str) -> list[tuple[str, str]]:
    """(fairseq, transformers) names inside ``encoder.layers.{i}.`` for ``model_type``."""
    return _LAYER_PAIRS + (_WAVLM_LAYER_PAIRS if model_type == "wavlm" else [])


def convert_fairseq_state_dict(
    fairseq_sd: Mapping[str, torch.Tensor], model_type: str
) -> dict[str, torch.Tensor]:
    """Rename fairseq parameters to transformers ``{Hubert,WavLM,Wav2Vec2}Model`` names.

    Keys in :data:`IGNORED_PREFIXES` are dropped; any other key without a rule raises
    :class:`FairseqConversionError` listing all of them. Tensors are not copied.
    """
    check_model_type(model_type)
    layer_map = dict(layer_pairs(model_type))
    top_map = dict(TOP_PAIRS)
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in fairseq_sd.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        new = top_map.get(key)
        if new is None and (m := LAYER_KEY.match(key)) and m.group(2) in layer_map:
            new = f"encoder.layers.{m.group(1)}.{layer_map[m.group(2)]}"
        if new is None and (m := _FS_CONV.match(key)):
            block, sub, param = m.groups()
            if sub == "0":
                new = f"feature_extractor.conv_layers.{block}.conv.{param}"
            elif sub == "2.1" or (sub == "2" and block == "0"):  # LayerNorm mode / GroupNorm (block 0 only)
                new = f"feature_extractor.conv_layers.{block}.layer_norm.{param}"
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    if unmapped:
        raise FairseqConversionError(
            f"{len(unmapped)} fairseq key(s) have no {model_type} mapping: {sorted(unmapped)}"
        )
    return out


def build_model_from_fairseq(ckpt: FairseqCheckpoint, model_type: str | None = None) -> PreTrainedModel:
    """transformers encoder model carrying the weights of a loaded fairseq checkpoint."""
    sd = ckpt.state_dict
    model_type = model_type or detect_model_type(ckpt.model_cfg, sd)
    config = fairseq_to_transformers_config(ckpt.model_cfg, sd, model_type)
    converted = convert_fairseq_state_dict(sd, model_type)
    model_cls = MODEL_CLASSES[model_type][1]
    model = model_cls(config)
    expected = model.state_dict()
    if "feature_projection.projection.weight" not in converted and config.conv_dim[-1] == config.hidden_size:
        # fairseq has no post_extract_proj when the CNN width equals the model width:
        # an identity projection reproduces that exactly.
        converted["feature_projection.projection.weight"] = torch.eye(config.hidden_size)
        converted["feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise FairseqConversionError(
            f"{ckpt.path}: converted {model_type} weights do not match the model built from its cfg; "
            f"missing: {missing}; unexpected: {unexpected}"
        )
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise FairseqConversionError(f"{ckpt.path}: shape mismatch after conversion: {wrong}")
    model.load_state_dict(converted, strict=True)
    return model
