"""The official DiffBlender release (``checkpoint_latest.pth``) as a :class:`DiffBlenderAdapter`.

The release is one pickle written by the GLIGEN-style trainer: a dict with ``model`` (the state
dict of the ldm multimodal UNet: frozen SD weights, the fusers inside its transformer blocks, and
the modality encoders under ``condition_nets.<modality>``), ``opt``, ``scheduler``, ``iters`` and
``config_dict``, the trainer's OmegaConf config saved as ``vars(config)`` (so its fields sit under
``"_content"``; a DictConfig itself is read too). It is read through
:func:`compact_ssl.unpickle.load_untrusted` (omegaconf classes are admitted, globals of the
official code base, ``ldm`` and ``grounding_input``, become inert placeholders, anything else is
refused unless ``trust=True``).

``config_dict.model.params`` gives the modality list (``input_modalities`` with their
``input_types``: ``image``, ``sp_vector``, ``nsp_vector``) and one encoder config per modality
(``grounding_tokenizer.tokenizer_<modality>``: ``target`` class and ``params``), from which
:func:`adapter_config_from_official` builds the :class:`AdapterConfig`:

* ``ImageConditionNet`` (``channels``, ``nums_rb``, ``cin``, ``ksize``, ``sk``, ``use_conv``) ->
  ``latent_adapter``; only ``ksize=1, sk=True`` builds a network that runs (reference section 1.2);
* ``BoxConditionNet`` (``in_dim``, ``out_dim``, ``fourier_freqs``) -> ``box``;
* ``KeypointConditionNet`` (``max_persons_per_image``, ``out_dim``, ``fourier_freqs``) -> ``keypoint``;
* ``NSPVectorConditionNet`` (``in_dim``, ``out_dim``, ``norm``, ``fourier_freqs``, ``temperature``,
  ``scale``) -> ``vector``; the official net uses ``scale`` only with ``fourier_freqs > 0``.

The official names ``color_palette`` and ``image_embedding`` become this toolkit's ``color`` and
``style`` (:data:`OFFICIAL_NAMES`; pass ``names={}`` to keep them), in the official token order.
The weights are converted by :func:`vision_ssl.diffblender.weights.convert_official_state_dict`
and loaded strictly: a key that is missing or left over is an error naming the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compact_ssl.nn import load_state_strictly
from compact_ssl.unpickle import load_untrusted
from vision_ssl.diffblender.adapter import DiffBlenderAdapter
from vision_ssl.diffblender.config import AdapterConfig, ModalitySpec
from vision_ssl.diffblender.weights import convert_official_state_dict

#: official modality name -> this toolkit's name (raw-condition contract of :mod:`vision_ssl.diffblender`)
OFFICIAL_NAMES = {"color_palette": "color", "image_embedding": "style"}
#: top-level modules of the official code base; their globals are read as inert placeholders
PLACEHOLDERS = ("ldm", "grounding_input")
WHAT = "DiffBlender official checkpoint"
#: official encoder class -> (input type, our category, our encoder)
ENCODERS = {
    "ImageConditionNet": ("image", "image", "latent_adapter"),
    "BoxConditionNet": ("sp_vector", "spatial", "box"),
    "KeypointConditionNet": ("sp_vector", "spatial", "keypoint"),
    "NSPVectorConditionNet": ("nsp_vector", "nonspatial", "vector"),
}
#: defaults of the official encoders' constructors (a parameter the config leaves out has this value)
_IMAGE_DEFAULTS = {"channels": [320, 640, 1280, 1280], "nums_rb": 3, "cin": 4, "ksize": 3, "sk": False, "use_conv": True}
_VECTOR_DEFAULTS = {"norm": False, "fourier_freqs": 0, "temperature": 100.0, "scale": 1.0}
_TOKEN_FOURIER_DEFAULT = 8


@dataclass
class OfficialCheckpoint:
    """The parts of the official file the adapter needs."""

    path: Path
    config: dict[str, Any]  #: ``config_dict`` as plain dicts and lists
    state_dict: dict[str, torch.Tensor]  #: ``model``: the ldm UNet state dict


def read_official_checkpoint(path: str | Path, trust: bool = False) -> OfficialCheckpoint:
    """Read ``checkpoint_latest.pth`` safely (``trust=True``: full unpickling, which can run code;
    only for a file from a source you trust)."""
    from omegaconf import OmegaConf

    path = Path(path)
    obj = load_untrusted(path, what=WHAT, placeholders=PLACEHOLDERS, trust=trust, map_location="cpu", mmap=True)
    if not isinstance(obj, Mapping) or not {"model", "config_dict"} <= set(obj):
        found = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path}: not a {WHAT}: expected a dict with 'model' and 'config_dict', found {found}; "
                         "pass the checkpoint_latest.pth of the DiffBlender release")
    state = obj["model"]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: 'model' of a {WHAT} must be a state dict of tensors")
    config = obj["config_dict"]
    content = config.get("_content", config) if isinstance(config, Mapping) else config
    try:
        plain = OmegaConf.to_container(OmegaConf.create(content), resolve=True)
    except Exception as err:  # omegaconf raises its own error types for odd content
        raise ValueError(f"{path}: its config_dict cannot be read as an OmegaConf config ({err})") from err
    return OfficialCheckpoint(path, plain, dict(state))


def _get(mapping: Any, keys: str, where: str) -> Any:
    node = mapping
    for key in keys.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"{where}: config_dict has no {keys!r}; is this the DiffBlender release?")
        node = node[key]
    return node


def _same(values: dict[str, Any], what: str, where: str) -> Any:
    """The one value every modality in ``values`` has for ``what`` (our config keeps one)."""
    distinct = {repr(v): v for v in values.values()}
    if len(distinct) > 1:
        raise ValueError(f"{where}: the modalities differ in {what} ({values}); the adapter has one {what} for all")
    return next(iter(distinct.values()))


def _image_params(name: str, params: dict[str, Any], where: str) -> dict[str, Any]:
    p = {**_IMAGE_DEFAULTS, **params}
    if p["ksize"] != 1 or not p["sk"]:
        raise ValueError(f"{where}: image encoder {name!r} has ksize={p['ksize']}, sk={p['sk']}; only ksize=1, "
                         "sk=True builds a network that runs (reference diffblender.md section 1.2)")
    return {"image_channels": [int(c) for c in p["channels"]], "nums_rb": int(p["nums_rb"]),
            "latent_channels": int(p["cin"]), "use_conv": bool(p["use_conv"])}


def _vector_spec(name: str, params: dict[str, Any], where: str) -> tuple[ModalitySpec, bool]:
    p = {**_VECTOR_DEFAULTS, **params}
    freqs = int(p["fourier_freqs"])
    if freqs > 0:
        raise ValueError(f"{where}: vector encoder {name!r} has fourier_freqs={freqs}: the official encoder "
                         "puts its learned null after the Fourier code, this toolkit's before it "
                         "(vision_ssl/diffblender/encoders/nonspatial.py), so these weights cannot be loaded")
    return ModalitySpec("nonspatial", "vector", in_dim=int(_get(params, "in_dim", where))), bool(p["norm"])


def adapter_config_from_official(config: Mapping[str, Any], names: Mapping[str, str] = OFFICIAL_NAMES,
                                 where: str = "config_dict") -> tuple[AdapterConfig, int]:
    """The :class:`AdapterConfig` of an official ``config_dict`` (plain), and the UNet's
    ``num_res_blocks`` (= diffusers ``layers_per_block``, which the weight conversion needs).

    ``names`` renames official modalities (default :data:`OFFICIAL_NAMES`). Options this toolkit
    does not implement (other fusers, decoder injection, inpainting, other encoder classes) are
    errors naming the option.
    """
    params = _get(config, "model.params", where)
    for key, want in (("fuser_type", "gatedSA"), ("image_cond_injection_type", "enc")):
        if params.get(key) != want:
            raise ValueError(f"{where}: model.params.{key} is {params.get(key)!r}; only {want!r} is implemented")
    if params.get("inpaint_mode"):
        raise ValueError(f"{where}: model.params.inpaint_mode is set; the inpainting model is not implemented")
    modalities, input_types = list(_get(params, "input_modalities", where)), list(_get(params, "input_types", where))
    if len(modalities) != len(input_types):
        raise ValueError(f"{where}: input_modalities {modalities} and input_types {input_types} differ in length")
    tokenizers = _get(params, "grounding_tokenizer", where)
    specs: dict[str, ModalitySpec] = {}
    image: dict[str, dict] = {}
    token_dims: dict[str, int] = {}
    fourier: dict[str, int] = {}
    norms: dict[str, bool] = {}
    context_dim = int(params.get("context_dim", 768))
    values: dict[str, Any] = {"max_persons": 8, "text_dim": context_dim}
    for official, input_type in zip(modalities, input_types):
        name = names.get(official, official)
        if name in specs:
            raise ValueError(f"{where}: two modalities are named {name!r} after renaming {dict(names)}")
        entry = _get(tokenizers, f"tokenizer_{official}", where)
        cls = str(_get(entry, "target", where)).rsplit(".", 1)[-1]
        if cls not in ENCODERS:
            raise ValueError(f"{where}: modality {official!r} uses {cls}; supported encoders: {sorted(ENCODERS)}")
        want_type, category, encoder = ENCODERS[cls]
        if input_type != want_type:
            raise ValueError(f"{where}: modality {official!r} has input type {input_type!r} but its encoder {cls} "
                             f"is a {want_type!r} encoder")
        p = dict(entry.get("params") or {})
        if category == "image":
            image[name] = _image_params(official, p, where)
            specs[name] = ModalitySpec(category, encoder)
            continue
        token_dims[name] = int(_get(p, "out_dim", where))
        if category == "nonspatial":
            specs[name], norms[name] = _vector_spec(official, p, where)
            continue
        fourier[name] = int(p.get("fourier_freqs", _TOKEN_FOURIER_DEFAULT))
        if encoder == "box":
            values["text_dim"] = int(_get(p, "in_dim", where))
        else:
            values["max_persons"] = int(_get(p, "max_persons_per_image", where))
        specs[name] = ModalitySpec(category, encoder)
    if image:
        values.update(_same(image, "image encoder settings", where))
    values["token_dim"] = _same(token_dims, "out_dim", where) if token_dims else context_dim
    if fourier:
        values["fourier_freqs"] = _same(fourier, "fourier_freqs", where)
    if norms:
        values["vector_norm"] = _same(norms, "norm", where)
    scale = (config.get("autoencoder") or {}).get("params", {}).get("scale_factor")
    if scale is not None:
        values["vae_scale"] = float(scale)
    # the official encoders' hidden width is fixed; absent image forms are encoded black images
    adapter = AdapterConfig(modalities=specs, token_hidden=512, image_null="zero_image", posterior="sample", **values)
    return adapter, int(params.get("num_res_blocks", 2))


def official_adapter_state(state_dict: Mapping[str, torch.Tensor], layers_per_block: int,
                           names: Mapping[str, str] = OFFICIAL_NAMES) -> dict[str, torch.Tensor]:
    """The official ``model`` state dict as :class:`DiffBlenderAdapter` keys, encoders renamed by ``names``."""
    out = {}
    for key, value in convert_official_state_dict(dict(state_dict), layers_per_block).items():
        group, rest = key.split(".", 1)
        if group == "encoders":
            modality, param = rest.split(".", 1)
            key = f"encoders.{names.get(modality, modality)}.{param}"
        out[key] = value
    return out


def load_official_adapter(path: str | Path, unet: nn.Module, trust: bool = False,
                          names: Mapping[str, str] = OFFICIAL_NAMES, attach: bool = True) -> DiffBlenderAdapter:
    """The adapter of the official checkpoint ``path`` for ``unet`` (a diffusers SD-1.4 UNet),
    attached to it unless ``attach=False``. Errors name the file: an unsafe pickle (see
    :func:`read_official_checkpoint`), a config this toolkit cannot build, or weights that do not
    fill the adapter exactly (missing / unexpected keys listed)."""
    checkpoint = read_official_checkpoint(path, trust)
    where = str(checkpoint.path)
    config, layers_per_block = adapter_config_from_official(checkpoint.config, names, where)
    adapter = DiffBlenderAdapter.from_unet(config, unet)
    load_state_strictly(adapter, official_adapter_state(checkpoint.state_dict, layers_per_block, names), where,
                        "adapter weights do not fit the config/UNet")
    adapter.to(device=next(unet.parameters()).device)
    return adapter.attach(unet) if attach else adapter
