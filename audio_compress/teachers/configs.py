"""Named teacher architectures (random weights) built on transformers configs.

``hubert_base``, ``wavlm_base`` and ``wav2vec2_base`` reproduce the Base models of
the papers exactly (checked by parameter counts in the tests):

* CNN feature encoder of 7 blocks with 512 channels, kernels (10,3,3,3,3,2,2) and
  strides (5,2,2,2,2,2,2), no conv bias, GroupNorm (one group per channel) in the
  first block only ("default" extractor mode in fairseq, ``feat_extract_norm="group"``);
* LayerNorm over the 512 CNN channels, then a Linear 512 -> 768 projection;
* convolutional positional embedding, kernel 128, 16 groups, weight norm over the
  kernel axis;
* 12 post-LN Transformer layers (768-d, FFN 3072, 12 heads, GELU), the encoder
  LayerNorm being applied after the positional embedding (``do_stable_layer_norm=False``);
* WavLM adds gated relative position bias (320 buckets, max distance 800).

The ``tiny_*`` architectures keep the same CNN kernels and strides (so the frame
count is still ``floor((L - 400) / 320) + 1``) but are small enough for CPU tests
and the ``mini`` recipes. ``mini_hubert`` has the shape of ``tiny_hubert`` (so every
mini student config fits it) with less dropout, where a few hundred CPU steps leave
little to regularise. ``mini_hubert_fb`` is ``mini_hubert`` with a four-block filterbank
front end (:mod:`audio_compress.teachers.filterbank`: blocks of 3, 257, 960 and 64 channels
with 1, 400, 1 and 1 taps, hop 320; same frames): the architecture that
:mod:`audio_compress.teachers.pretrain` trains on the mini corpus, its front end set to a
log-compressed mel-spaced magnitude spectrum.

``mask_time_prob`` is kept above 0 on purpose: transformers only allocates the
learned mask embedding (``masked_spec_embed``, fairseq's ``mask_emb``) when it is.
No random masking ever happens because :class:`~audio_compress.teachers.FrozenTeacher`
keeps the model in eval mode; masking is only done with an explicit ``frame_mask``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from transformers import (
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from audio_compress.teachers.filterbank import FILTERBANK_LAYOUT

#: transformers ``model_type`` -> (config class, encoder-only model class).
MODEL_CLASSES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
}

#: CNN layout of wav2vec 2.0 / HuBERT / WavLM: kernels and strides of the 7 blocks.
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)


def _common(
    *,
    conv_channels: int,
    hidden: int,
    layers: int,
    heads: int,
    ffn: int,
    pos_kernel: int,
    pos_groups: int,
) -> dict:
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_act="gelu",
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.1,
        layerdrop=0.0,
        layer_norm_eps=1e-5,
        feat_extract_norm="group",
        feat_extract_activation="gelu",
        conv_dim=(conv_channels,) * len(CONV_KERNEL),
        conv_kernel=CONV_KERNEL,
        conv_stride=CONV_STRIDE,
        conv_bias=False,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=pos_groups,
        do_stable_layer_norm=False,
        apply_spec_augment=True,
        mask_time_prob=0.05,
        mask_time_length=10,
        mask_feature_prob=0.0,
    )


_BASE = dict(conv_channels=512, hidden=768, layers=12, heads=12, ffn=3072, pos_kernel=128, pos_groups=16)
_TINY = dict(conv_channels=32, hidden=64, layers=4, heads=4, ffn=128, pos_kernel=16, pos_groups=4)
_MINI_DROPOUT = dict(hidden_dropout=0.05, attention_dropout=0.05, feat_proj_dropout=0.05)


def _hubert(size: dict, **overrides) -> HubertConfig:
    kwargs = _common(**size)
    kwargs["feat_proj_layer_norm"] = True  # fairseq HuBERT: LayerNorm(512) before post_extract_proj
    kwargs.update(overrides)
    return HubertConfig(**kwargs)


def _wavlm(size: dict, **overrides) -> WavLMConfig:
    kwargs = _common(**size)
    kwargs.update(num_buckets=320, max_bucket_distance=800)
    kwargs.update(overrides)
    return WavLMConfig(**kwargs)


def _wav2vec2(size: dict, **overrides) -> Wav2Vec2Config:
    kwargs = _common(**size)
    kwargs.update(overrides)
    return Wav2Vec2Config(**kwargs)


#: name -> factory ``(**overrides) -> config``.
ARCHITECTURES: dict[str, Callable[..., PretrainedConfig]] = {
    "hubert_base": lambda **kw: _hubert(_BASE, **kw),
    "wavlm_base": lambda **kw: _wavlm(_BASE, **kw),
    "wav2vec2_base": lambda **kw: _wav2vec2(_BASE, **kw),
    "tiny_hubert": lambda **kw: _hubert(_TINY, **kw),
    "mini_hubert": lambda **kw: _hubert(_TINY, **{**_MINI_DROPOUT, **kw}),
    "mini_hubert_fb": lambda **kw: _hubert(_TINY, **{**_MINI_DROPOUT, **FILTERBANK_LAYOUT, **kw}),
    "tiny_wavlm": lambda **kw: _wavlm(_TINY, **kw),
    "tiny_wav2vec2": lambda **kw: _wav2vec2(_TINY, **kw),
}


def architecture_names() -> list[str]:
    """Names accepted by :func:`get_config` and :func:`~audio_compress.teachers.load_teacher`."""
    return sorted(ARCHITECTURES)


def get_config(name: str, **overrides) -> PretrainedConfig:
    """transformers config of the named architecture; ``overrides`` replace config fields.

    Example: ``get_config("tiny_hubert", feat_extract_norm="layer", conv_bias=True)``.

    Raises:
        KeyError: an unknown architecture, or an override that is no field of its config (transformers would
            keep a misspelt field as an unused attribute, so the setting would silently do nothing).
        ValueError: a probability (a dropout, ``layerdrop``, a masking ``*_prob``) outside [0, 1], which
            transformers accepts and only the model's build (or its first training step) refuses.
    """
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown teacher architecture {name!r}; choose one of {architecture_names()}")
    fields = ARCHITECTURES[name]().to_dict()
    unknown = [key for key in overrides if key not in fields]
    if unknown:
        hints = [f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, fields, n=1))
                 else repr(key) for key in unknown]
        raise KeyError(f"{name}: no config field {', '.join(hints)}; the overrides must be fields of its "
                       f"{type(ARCHITECTURES[name]()).__name__}")
    bad = {key: value for key, value in overrides.items() if _is_probability(key) and not _in_unit_range(value)}
    if bad:
        raise ValueError(f"{name}: {', '.join(f'{k}={v!r}' for k, v in bad.items())}: a probability, "
                         "it must be a number from 0 to 1")
    return ARCHITECTURES[name](**overrides)


def _is_probability(field: str) -> bool:
    """A config field that holds a probability: the dropouts, ``layerdrop`` and the masking ``*_prob``."""
    return "dropout" in field or field == "layerdrop" or field.endswith("_prob")


def _in_unit_range(value: object) -> bool:
    """A number (not a bool) from 0 to 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def model_class_for(config: PretrainedConfig) -> type[PreTrainedModel]:
    """Encoder-only transformers model class (``HubertModel`` ...) for ``config``."""
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"unsupported teacher model_type {model_type!r}; supported: {sorted(MODEL_CLASSES)}"
        )
    return MODEL_CLASSES[model_type][1]
