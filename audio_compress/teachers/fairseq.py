"""Original fairseq (and unilm WavLM) checkpoints -> transformers models, without fairseq.

fairseq 0.12.2 does not import on Python 3.11, so this module reads its checkpoint
files with :func:`torch.load` alone and maps the parameter names itself.

A fairseq checkpoint (``hubert_base_ls960.pt``, ``wav2vec_small.pt``, ``WavLM-Base.pt``)
is a pickled dict with

* ``"model"``: the state dict of the pre-training model;
* ``"cfg"``: an omegaconf container whose ``"model"`` entry holds the architecture
  fields (unilm's WavLM stores that flat field dict directly under ``"cfg"``), or, in
  older files, ``"args"``: an :class:`argparse.Namespace` with the same fields.

Unpickling goes through :class:`_CheckpointUnpickler`, which resolves only an
allow-list of harmless globals (torch tensor rebuilding, containers, numpy arrays,
``argparse.Namespace``, omegaconf containers). Every other global (all of
``fairseq.*``, meters, task objects, and anything that could run code) becomes an
inert :class:`Placeholder` that just records its constructor arguments and state.

Name mapping (fairseq -> transformers), for the three model families:

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
``encoder.layers.{i}.fc1.*`` / ``fc2.*``                        ``...feed_forward.intermediate_dense.*`` / ``output_dense.*``
``encoder.layers.{i}.final_layer_norm.*``                       ``encoder.layers.{i}.final_layer_norm.*``
WavLM ``self_attn.grep_linear.*`` / ``grep_a`` /                ``attention.gru_rel_pos_linear.*`` / ``gru_rel_pos_const`` /
``self_attn.relative_attention_bias.weight``                    ``attention.rel_attn_embed.weight``
==============================================================  =====================================================

The fairseq CNN blocks are ``Sequential(conv, dropout, norm, GELU)``, hence the norm at
index 2; in LayerNorm mode the norm is itself ``Sequential(transpose, LayerNorm,
transpose)``, hence ``2.1``. Pre-training heads are dropped on purpose
(:data:`IGNORED_PREFIXES`); any other unmapped key is an error.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import io
import pickle
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HubertConfig, PretrainedConfig, Wav2Vec2Config, WavLMConfig

from audio_compress.teachers.configs import MODEL_CLASSES

__all__ = [
    "IGNORED_PREFIXES",
    "FairseqCheckpoint",
    "FairseqConversionError",
    "Placeholder",
    "build_model_from_fairseq",
    "convert_fairseq_state_dict",
    "detect_model_type",
    "fairseq_to_transformers_config",
    "format_conv_feature_layers",
    "load_fairseq_checkpoint",
    "parse_conv_feature_layers",
    "transformers_to_fairseq_config",
    "transformers_to_fairseq_state_dict",
]

#: fairseq keys dropped on purpose: pre-training heads that the encoder does not use
#: (HuBERT ``final_proj`` and label embeddings, wav2vec 2.0 quantizer and projections).
IGNORED_PREFIXES = ("final_proj.", "label_embs_concat", "quantizer.", "project_q.")

DEFAULT_CONV_FEATURE_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"


class FairseqConversionError(ValueError):
    """A fairseq checkpoint that cannot be converted (bad file, unknown keys, bad config)."""


# --------------------------------------------------------------------------- unpickling


class Placeholder:
    """Inert stand-in for a class that is not unpickled for real (e.g. anything in fairseq).

    It accepts any constructor arguments and any pickled state and keeps them in
    ``_args``, ``_kwargs`` and ``_state``; it never runs code of the original class.
    """

    _qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self._args = args
        self._kwargs = kwargs
        self._state = None

    def __setstate__(self, state):
        self.__dict__.setdefault("_args", ())
        self.__dict__.setdefault("_kwargs", {})
        self._state = state

    def __repr__(self) -> str:
        return f"<Placeholder for {self._qualified_name}>"


_PLACEHOLDERS: dict[str, type] = {}


def _placeholder_class(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    if qualified not in _PLACEHOLDERS:
        _PLACEHOLDERS[qualified] = type(
            name, (Placeholder,), {"_qualified_name": qualified, "__module__": "placeholder." + module}
        )
    return _PLACEHOLDERS[qualified]


_SAFE_BUILTINS = {
    "set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "bool", "str",
    "bytes", "bytearray", "slice", "range", "object", "NoneType", "Ellipsis", "NotImplemented",
}
#: modules whose globals are resolved for real (classes and the tensor/array rebuild helpers).
_ALLOWED_MODULES = {
    "collections": None,  # None: any name
    "argparse": {"Namespace"},
    "_codecs": {"encode"},
    "copyreg": {"_reconstructor"},
    "torch._utils": None,
    "torch._tensor": None,
    "torch.storage": None,
    "torch.nn.parameter": None,
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.dtypes": None,
}
#: module prefixes whose *classes* (types only) are resolved for real.
_ALLOWED_CLASS_PREFIXES = ("omegaconf", "typing", "enum", "pathlib", "datetime")


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and turns the rest into placeholders."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if module in ("builtins", "__builtin__"):
            if name in _SAFE_BUILTINS:
                return super().find_class("builtins", name)
            return _placeholder_class(module, name)
        allowed = _ALLOWED_MODULES.get(module, False)
        if allowed is None or (allowed and name in allowed):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                return _placeholder_class(module, name)
        if module == "torch":
            try:
                obj = getattr(importlib.import_module("torch"), name)
            except AttributeError:
                return _placeholder_class(module, name)
            if isinstance(obj, (type, torch.dtype, torch.layout, torch.memory_format)):
                return obj
            return _placeholder_class(module, name)
        if module.split(".")[0] in _ALLOWED_CLASS_PREFIXES:
            try:
                obj = super().find_class(module, name)
            except (ImportError, AttributeError):
                return _placeholder_class(module, name)
            if isinstance(obj, type) or module.split(".")[0] == "typing":
                return obj
        return _placeholder_class(module, name)


def _pickle_load(file, **kwargs):
    return _CheckpointUnpickler(file, **kwargs).load()


def _pickle_loads(data: bytes, **kwargs):
    return _CheckpointUnpickler(io.BytesIO(data), **kwargs).load()


#: Stand-in "pickle module" handed to ``torch.load``.
_checkpoint_pickle = types.ModuleType("audio_compress_checkpoint_pickle")
_checkpoint_pickle.Unpickler = _CheckpointUnpickler
_checkpoint_pickle.load = _pickle_load
_checkpoint_pickle.loads = _pickle_loads


def to_plain(obj: Any) -> Any:
    """Turn omegaconf containers, Namespaces and placeholders of them into dicts/lists."""
    if isinstance(obj, Placeholder):
        state = obj._state
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig when omegaconf is absent
                return to_plain(state["_content"])
            if "_val" in state:  # omegaconf value node
                return to_plain(state["_val"])
            return {k: to_plain(v) for k, v in state.items() if not k.startswith("_")}
        return obj
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            try:
                return OmegaConf.to_container(obj, resolve=False)
            except Exception:  # odd metadata from placeholders: walk the raw content instead
                content = obj.__dict__.get("_content")
                if isinstance(content, Mapping):
                    return {k: to_plain(getattr(v, "_val", v)) for k, v in content.items()}
                if isinstance(content, list):
                    return [to_plain(getattr(v, "_val", v)) for v in content]
                return content
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


@dataclass
class FairseqCheckpoint:
    """Result of :func:`load_fairseq_checkpoint`."""

    path: str
    #: fairseq-named parameters (tensors on CPU).
    state_dict: dict[str, torch.Tensor]
    #: plain dict of the model fields (``encoder_layers``, ``conv_feature_layers`` ...).
    model_cfg: dict[str, Any] = field(default_factory=dict)
    #: whether the model expects per-utterance normalised waveforms (fairseq ``normalize``).
    normalize: bool = False


def _looks_like_fairseq_state_dict(sd: Any) -> bool:
    if not isinstance(sd, Mapping) or not sd:
        return False
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        return False
    return any(k.startswith("feature_extractor.conv_layers.") for k in sd) and any(
        k.startswith("encoder.layers.") for k in sd
    )


def load_fairseq_checkpoint(path: str | Path) -> FairseqCheckpoint:
    """Read an original fairseq / unilm checkpoint with :func:`torch.load` only (no fairseq).

    Raises :class:`FairseqConversionError` naming the file when it is not a readable
    fairseq wav2vec 2.0 / HuBERT / WavLM pre-training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FairseqConversionError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_checkpoint_pickle)
    except Exception as err:  # torch raises several types for non-pickle / truncated files
        raise FairseqConversionError(
            f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(ckpt, Mapping) or "model" not in ckpt:
        keys = sorted(map(str, ckpt.keys()))[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        hint = ""
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
            hint = " (this looks like a Lightning checkpoint)"
        elif isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (this looks like a bare state dict; for a transformers model pass its folder)"
        raise FairseqConversionError(
            f"{path}: not a fairseq checkpoint: expected a dict with a 'model' state dict and "
            f"'cfg' or 'args', found {keys}{hint}"
        )
    sd = ckpt["model"]
    if isinstance(sd, Mapping) and any(str(k).startswith("w2v_encoder.") for k in sd):
        raise FairseqConversionError(
            f"{path}: fine-tuned fairseq checkpoints (w2v_encoder.*) are not supported; "
            "use the pre-training checkpoint (e.g. hubert_base_ls960.pt)"
        )
    if not _looks_like_fairseq_state_dict(sd):
        raise FairseqConversionError(
            f"{path}: 'model' is not a wav2vec 2.0 / HuBERT / WavLM state dict "
            "(no feature_extractor.conv_layers.* and encoder.layers.* tensors)"
        )
    model_cfg: dict[str, Any] = {}
    normalize = None
    cfg = ckpt.get("cfg")
    args = ckpt.get("args")
    if cfg is not None:
        cfg = to_plain(cfg)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
            model_cfg = dict(cfg["model"])
            task = cfg.get("task")
            if isinstance(task, Mapping) and task.get("normalize") is not None:
                normalize = task["normalize"]
        elif isinstance(cfg, Mapping):  # unilm WavLM: the model fields directly
            model_cfg = dict(cfg)
    if not model_cfg and args is not None:
        args = to_plain(args)
        if isinstance(args, Mapping):
            model_cfg = dict(args)
    if normalize is None:
        normalize = model_cfg.get("normalize")
    return FairseqCheckpoint(
        path=str(path), state_dict=dict(sd), model_cfg=model_cfg, normalize=bool(normalize)
    )


# --------------------------------------------------------------------------- config


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


def format_conv_feature_layers(conv_dim, conv_kernel, conv_stride) -> str:
    """Inverse of :func:`parse_conv_feature_layers`: one tuple per block, joined by ``+``."""
    return " + ".join(f"[({d}, {k}, {s})]" for d, k, s in zip(conv_dim, conv_kernel, conv_stride))


def _max_layer_index(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
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


_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_accurate": "gelu_new", "tanh": "tanh", "linear": "linear"}


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
    if model_type not in MODEL_CLASSES:
        raise FairseqConversionError(f"unknown model_type {model_type!r}; one of {sorted(MODEL_CLASSES)}")

    def pick(key, default):
        value = c.get(key)
        return default if value is None else value

    # --- CNN feature encoder
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
    if c.get("extractor_mode") is not None:
        mode = str(c["extractor_mode"])
    else:
        mode = "layer_norm" if "feature_extractor.conv_layers.0.2.1.weight" in sd else "default"
    if mode not in ("default", "layer_norm"):
        raise FairseqConversionError(f"unsupported extractor_mode {mode!r} (expected 'default' or 'layer_norm')")
    conv_bias = bool(pick("conv_bias", "feature_extractor.conv_layers.0.0.bias" in sd))

    # --- Transformer
    layers = int(pick("encoder_layers", _max_layer_index(sd, "encoder.layers.")))
    if "encoder.layer_norm.weight" in sd:
        inferred_dim = int(sd["encoder.layer_norm.weight"].shape[0])
    else:
        inferred_dim = int(sd["encoder.layers.0.self_attn.q_proj.weight"].shape[0])
    embed_dim = int(pick("encoder_embed_dim", inferred_dim))
    ffn = int(pick("encoder_ffn_embed_dim", sd["encoder.layers.0.fc1.weight"].shape[0]))
    heads_default = embed_dim // 64
    if "encoder.layers.0.self_attn.grep_a" in sd:
        heads_default = int(sd["encoder.layers.0.self_attn.grep_a"].shape[1])
    heads = int(pick("encoder_attention_heads", heads_default))
    pos_v = sd.get("encoder.pos_conv.0.weight_v")
    conv_pos = int(pick("conv_pos", pos_v.shape[-1] if pos_v is not None else 128))
    conv_pos_groups = int(pick("conv_pos_groups", embed_dim // pos_v.shape[1] if pos_v is not None else 16))
    activation = str(pick("activation_fn", "gelu"))
    if activation not in _ACTIVATIONS:
        raise FairseqConversionError(f"unsupported activation_fn {activation!r}")
    if int(pick("pos_conv_depth", 1)) != 1:
        raise FairseqConversionError("pos_conv_depth > 1 (data2vec-style positional conv) is not supported")
    mask_prob = float(pick("mask_prob", 0.65))
    has_mask_emb = "mask_emb" in sd

    kwargs = dict(
        hidden_size=embed_dim,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_act=_ACTIVATIONS[activation],
        hidden_dropout=float(pick("dropout", 0.1)),
        attention_dropout=float(pick("attention_dropout", 0.1)),
        activation_dropout=float(pick("activation_dropout", 0.0)),
        feat_proj_dropout=float(pick("dropout_input", 0.0)),
        layerdrop=0.0,
        layer_norm_eps=1e-5,
        feat_extract_norm="layer" if mode == "layer_norm" else "group",
        feat_extract_activation="gelu",
        conv_dim=[d for d, _, _ in conv],
        conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv],
        conv_bias=conv_bias,
        num_conv_pos_embeddings=conv_pos,
        num_conv_pos_embedding_groups=conv_pos_groups,
        do_stable_layer_norm=bool(pick("layer_norm_first", False)),
        apply_spec_augment=True,
        # transformers allocates masked_spec_embed only when a mask probability is > 0
        mask_time_prob=(mask_prob if mask_prob > 0 else 0.05) if has_mask_emb else 0.0,
        mask_time_length=int(pick("mask_length", 10)),
        mask_feature_prob=0.0,
    )
    if model_type == "hubert":
        kwargs["feat_proj_layer_norm"] = "layer_norm.weight" in sd
        return HubertConfig(**kwargs)
    if model_type == "wavlm":
        if not bool(pick("gru_rel_pos", True)) or not bool(pick("relative_position_embedding", True)):
            raise FairseqConversionError("WavLM without gated relative position bias is not supported")
        rel = sd.get("encoder.layers.0.self_attn.relative_attention_bias.weight")
        kwargs["num_buckets"] = int(pick("num_buckets", rel.shape[0] if rel is not None else 320))
        kwargs["max_bucket_distance"] = int(pick("max_distance", 800))
        return WavLMConfig(**kwargs)
    return Wav2Vec2Config(**kwargs)


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
        "activation_fn": {v: k for k, v in _ACTIVATIONS.items()}.get(config.hidden_act, config.hidden_act),
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


# --------------------------------------------------------------------------- state dict

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
_TOP_PAIRS: list[tuple[str, str]] = [
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
_FS_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)$")
_FS_CONV = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.(0|2|2\.1)\.(weight|bias)$")
_HF_CONV = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)$")


def _layer_pairs(model_type: str) -> list[tuple[str, str]]:
    return _LAYER_PAIRS + (_WAVLM_LAYER_PAIRS if model_type == "wavlm" else [])


def _check_model_type(model_type: str) -> None:
    if model_type not in MODEL_CLASSES:
        raise FairseqConversionError(f"unknown model_type {model_type!r}; one of {sorted(MODEL_CLASSES)}")


def convert_fairseq_state_dict(
    fairseq_sd: Mapping[str, torch.Tensor], model_type: str
) -> dict[str, torch.Tensor]:
    """Rename fairseq parameters to transformers ``{Hubert,WavLM,Wav2Vec2}Model`` names.

    Keys in :data:`IGNORED_PREFIXES` are dropped; any other key without a rule raises
    :class:`FairseqConversionError` listing all of them. Tensors are not copied.
    """
    _check_model_type(model_type)
    layer_map = dict(_layer_pairs(model_type))
    top_map = dict(_TOP_PAIRS)
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in fairseq_sd.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        new = top_map.get(key)
        if new is None and (m := _FS_LAYER.match(key)) and m.group(2) in layer_map:
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


def transformers_to_fairseq_state_dict(
    hf_sd: Mapping[str, torch.Tensor], model_type: str, feat_extract_norm: str | None = None
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`convert_fairseq_state_dict` (pre-training heads are not produced).

    ``feat_extract_norm`` (``"group"``/``"layer"``) is inferred from the keys when
    omitted: LayerNorm mode has a norm in every CNN block. Old-style weight-norm
    names (``weight_g``/``weight_v``) are accepted as well as parametrizations.
    """
    _check_model_type(model_type)
    if feat_extract_norm is None:
        feat_extract_norm = "layer" if "feature_extractor.conv_layers.1.layer_norm.weight" in hf_sd else "group"
    layer_map = {hf: fs for fs, hf in _layer_pairs(model_type)}
    top_map = {hf: fs for fs, hf in _TOP_PAIRS}
    top_map["encoder.pos_conv_embed.conv.weight_g"] = "encoder.pos_conv.0.weight_g"
    top_map["encoder.pos_conv_embed.conv.weight_v"] = "encoder.pos_conv.0.weight_v"
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in hf_sd.items():
        new = top_map.get(key)
        if new is None and (m := _FS_LAYER.match(key)) and m.group(2) in layer_map:
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


def build_model_from_fairseq(ckpt: FairseqCheckpoint, model_type: str | None = None):
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
