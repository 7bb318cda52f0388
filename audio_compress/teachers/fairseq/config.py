"""fairseq model cfg -> transformers config (Hubert / WavLM / Wav2Vec2).

Fields the cfg lacks are inferred from tensor shapes of the fairseq state dict.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Mapping
from typing import Any

import torch
from transformers import HubertConfig, PretrainedConfig, Wav2Vec2Config, WavLMConfig

from audio_compress.teachers.configs import MODEL_CLASSES
from audio_compress.teachers.fairseq.checkpoint import FairseqConversionError
from compact_ssl.unpickle import to_plain

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_CONV_FEATURE_LAYERS",
    "check_model_type",
    "detect_model_type",
    "fairseq_to_transformers_config",
    "parse_conv_feature_layers",
]

DEFAULT_CONV_FEATURE_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
#: fairseq ``activation_fn`` -> transformers ``hidden_act``.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_accurate": "gelu_new", "tanh": "tanh", "linear": "linear"}




def parse_conv_feature_layers(spec: str | list | tuple) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` string safely (no ``eval``).

    Accepts list literals of ``(dim, kernel, stride)`` tuples combined with ``+`` and
    ``* n``, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``.
    """
    if isinstance(spec, (list, tuple)):
        layers = [tuple(int(v) for v in item) for item in spec]
    else:
        try:
            tree = ast.parse(str(spec), mode="eval")
        except SyntaxError as err:
            raise FairseqConversionError(f"cannot parse conv_feature_layers {spec!r}: {err}") from err

        def evaluate(node):
            if isinstance(node, ast.Expression):
                return evaluate(node.body)
            if isinstance(node, (ast.List, ast.Tuple)):
                items = [evaluate(elt) for elt in node.elts]
                return items if isinstance(node, ast.List) else tuple(items)
            if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
                return node.value
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                left, right = evaluate(node.left), evaluate(node.right)
                if isinstance(left, list) and isinstance(right, list):
                    return left + right
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
                left, right = evaluate(node.left), evaluate(node.right)
                if isinstance(left, list) and isinstance(right, int) and 0 <= right <= 1000:
                    return left * right
                if isinstance(right, list) and isinstance(left, int) and 0 <= left <= 1000:
                    return right * left
            raise FairseqConversionError(
                f"unsupported expression in conv_feature_layers {spec!r}: {ast.dump(node)[:80]}"
            )

        value = evaluate(tree)
        if not isinstance(value, list):
            raise FairseqConversionError(f"conv_feature_layers {spec!r} is not a list")
        layers = value
    out = []
    for item in layers:
        if not (isinstance(item, tuple) and len(item) == 3 and all(isinstance(v, int) for v in item)):
            raise FairseqConversionError(
                f"conv_feature_layers entries must be (dim, kernel, stride) integer triples, got {item!r}"
            )
        out.append(item)
    if not out:
        raise FairseqConversionError(f"conv_feature_layers {spec!r} is empty")
    return out


def _max_layer_index(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of numbered blocks ``<prefix><i>.`` in ``sd`` (highest index + 1)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = [int(m.group(1)) for k in sd for m in [pattern.match(k)] if m]
    return max(found) + 1 if found else 0


def detect_model_type(model_cfg: Mapping[str, Any] | None, fairseq_sd: Mapping[str, torch.Tensor]) -> str:
    """``"hubert"``, ``"wavlm"`` or ``"wav2vec2"`` from the cfg name or telltale keys."""
    keys = list(fairseq_sd)
    if any(".self_attn.grep_linear." in k or ".relative_attention_bias." in k for k in keys):
        return "wavlm"
    name = str((model_cfg or {}).get("_name") or (model_cfg or {}).get("arch") or "").lower()
    for model_type in ("wavlm", "hubert", "wav2vec2"):
        if name.startswith(model_type):
            return model_type
    if any(k.startswith("label_embs_concat") for k in keys):
        return "hubert"
    if any(k.startswith(("quantizer.", "project_q.")) for k in keys):
        return "wav2vec2"
    raise FairseqConversionError(
        "cannot tell whether this fairseq checkpoint is HuBERT, WavLM or wav2vec 2.0; "
        "pass kind='hubert' | 'wavlm' | 'wav2vec2'"
    )


def check_model_type(model_type: str) -> None:
    """Refuse a model type without a transformers class in :data:`MODEL_CLASSES`."""
    if model_type not in MODEL_CLASSES:
        raise FairseqConversionError(f"unknown model_type {model_type!r}; one of {sorted(MODEL_CLASSES)}")


def _pick(c: Mapping[str, Any], key: str, default: Any) -> Any:
    """``c[key]``, or ``default`` when the field is absent or ``None``."""
    value = c.get(key)
    return default if value is None else value


def _conv_layers(c: Mapping[str, Any], sd: Mapping[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """``(dim, kernel, stride)`` of every CNN block, from the cfg or (without
    ``conv_feature_layers``) from the weights with wav2vec 2.0's strides; checked against the
    weights either way."""
    n_conv = _max_layer_index(sd, "feature_extractor.conv_layers.")
    if c.get("conv_feature_layers") is not None:
        conv = parse_conv_feature_layers(c["conv_feature_layers"])
    else:
        default = parse_conv_feature_layers(DEFAULT_CONV_FEATURE_LAYERS)
        conv = []
        for i in range(n_conv):
            w = sd[f"feature_extractor.conv_layers.{i}.0.weight"]
            if i >= len(default) or default[i][1] != w.shape[-1]:
                raise FairseqConversionError(
                    "the checkpoint has no conv_feature_layers and its CNN kernels differ from the "
                    "wav2vec 2.0 layout, so the strides cannot be inferred"
                )
            conv.append((int(w.shape[0]), int(w.shape[-1]), default[i][2]))
    if n_conv and len(conv) != n_conv:
        raise FairseqConversionError(
            f"conv_feature_layers describes {len(conv)} blocks but the state dict has {n_conv}"
        )
    for i, (dim, kernel, _) in enumerate(conv):
        w = sd.get(f"feature_extractor.conv_layers.{i}.0.weight")
        if w is not None and (w.shape[0] != dim or w.shape[-1] != kernel):
            raise FairseqConversionError(
                f"conv block {i}: cfg says dim {dim} kernel {kernel}, weight has shape {tuple(w.shape)}"
            )
    return conv


def _cnn_fields(c: Mapping[str, Any], sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """transformers config fields of the CNN feature encoder."""
    conv = _conv_layers(c, sd)
    if c.get("extractor_mode") is not None:
        mode = str(c["extractor_mode"])
    else:
        mode = "layer_norm" if "feature_extractor.conv_layers.0.2.1.weight" in sd else "default"
    if mode not in ("default", "layer_norm"):
        raise FairseqConversionError(f"unsupported extractor_mode {mode!r} (expected 'default' or 'layer_norm')")
    return dict(
        feat_extract_norm="layer" if mode == "layer_norm" else "group",
        feat_extract_activation="gelu",
        conv_dim=[d for d, _, _ in conv],
        conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv],
        conv_bias=bool(_pick(c, "conv_bias", "feature_extractor.conv_layers.0.0.bias" in sd)),
    )


def _encoder_fields(c: Mapping[str, Any], sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """transformers config fields of the Transformer, its positional conv and its masking."""
    layers = int(_pick(c, "encoder_layers", _max_layer_index(sd, "encoder.layers.")))
    if "encoder.layer_norm.weight" in sd:
        inferred_dim = int(sd["encoder.layer_norm.weight"].shape[0])
    else:
        inferred_dim = int(sd["encoder.layers.0.self_attn.q_proj.weight"].shape[0])
    embed_dim = int(_pick(c, "encoder_embed_dim", inferred_dim))
    ffn = int(_pick(c, "encoder_ffn_embed_dim", sd["encoder.layers.0.fc1.weight"].shape[0]))
    heads_default = embed_dim // 64
    if "encoder.layers.0.self_attn.grep_a" in sd:
        heads_default = int(sd["encoder.layers.0.self_attn.grep_a"].shape[1])
    heads = int(_pick(c, "encoder_attention_heads", heads_default))
    pos_v = sd.get("encoder.pos_conv.0.weight_v")
    conv_pos = int(_pick(c, "conv_pos", pos_v.shape[-1] if pos_v is not None else 128))
    conv_pos_groups = int(_pick(c, "conv_pos_groups", embed_dim // pos_v.shape[1] if pos_v is not None else 16))
    activation = str(_pick(c, "activation_fn", "gelu"))
    if activation not in ACTIVATIONS:
        raise FairseqConversionError(f"unsupported activation_fn {activation!r}")
    if int(_pick(c, "pos_conv_depth", 1)) != 1:
        raise FairseqConversionError("pos_conv_depth > 1 (data2vec-style positional conv) is not supported")
    mask_prob = float(_pick(c, "mask_prob", 0.65))
    return dict(
        hidden_size=embed_dim,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_act=ACTIVATIONS[activation],
        hidden_dropout=float(_pick(c, "dropout", 0.1)),
        attention_dropout=float(_pick(c, "attention_dropout", 0.1)),
        activation_dropout=float(_pick(c, "activation_dropout", 0.0)),
        feat_proj_dropout=float(_pick(c, "dropout_input", 0.0)),
        layerdrop=0.0,
        layer_norm_eps=1e-5,
        num_conv_pos_embeddings=conv_pos,
        num_conv_pos_embedding_groups=conv_pos_groups,
        do_stable_layer_norm=bool(_pick(c, "layer_norm_first", False)),
        apply_spec_augment=True,
        # transformers allocates masked_spec_embed only when a mask probability is > 0
        mask_time_prob=(mask_prob if mask_prob > 0 else 0.05) if "mask_emb" in sd else 0.0,
        mask_time_length=int(_pick(c, "mask_length", 10)),
        mask_feature_prob=0.0,
    )


def fairseq_to_transformers_config(
    cfg: Mapping[str, Any] | argparse.Namespace | None,
    fairseq_sd: Mapping[str, torch.Tensor],
    model_type: str | None = None,
) -> PretrainedConfig:
    """transformers config (Hubert/WavLM/Wav2Vec2) equivalent to a fairseq model cfg.

    ``cfg`` is the model section (dict, omegaconf container or legacy ``args``
    Namespace). Fields it lacks are inferred from tensor shapes in ``fairseq_sd``
    (layer count, widths, FFN size, CNN channels/kernels, positional conv kernel and
    groups, extractor mode, conv bias); the number of heads falls back to
    ``embed_dim // 64`` (true for the Base and Large models) unless WavLM tensors give it.
    """
    c = dict(to_plain(cfg) or {}) if cfg is not None else {}
    sd = fairseq_sd
    model_type = model_type or detect_model_type(c, sd)
    check_model_type(model_type)
    cnn = _cnn_fields(c, sd)
    kwargs = {**_encoder_fields(c, sd), **cnn}
    if model_type == "hubert":
        kwargs["feat_proj_layer_norm"] = "layer_norm.weight" in sd
        return HubertConfig(**kwargs)
    if model_type == "wavlm":
        if not bool(_pick(c, "gru_rel_pos", True)) or not bool(_pick(c, "relative_position_embedding", True)):
            raise FairseqConversionError("WavLM without gated relative position bias is not supported")
        rel = sd.get("encoder.layers.0.self_attn.relative_attention_bias.weight")
        kwargs["num_buckets"] = int(_pick(c, "num_buckets", rel.shape[0] if rel is not None else 320))
        kwargs["max_bucket_distance"] = int(_pick(c, "max_distance", 800))
        return WavLMConfig(**kwargs)
    return Wav2Vec2Config(**kwargs)
