"""Adapter weights: save/load only the DiffBlender networks, and convert the official checkpoint.

The adapter file is a safetensors file of ``DiffBlenderAdapter.state_dict()`` (no base-model
key) whose metadata holds the :class:`AdapterConfig` as JSON under ``"diffblender_config"``;
the base model comes separately from a diffusers Stable Diffusion folder. (A whole pipeline
folder, base and adapter, is written by ``DiffBlenderPipeline.save_pretrained`` instead.)

The official checkpoint (ldm/GLIGEN layout, reference section 6.2) keeps the fusers inside the
UNet's transformer blocks (``input_blocks.<i>.1.transformer_blocks.<k>.sp_fuser.*``,
``nsp_fuser.*``) and the encoders in ``condition_nets.<modality>.*`` (plus frozen VAE copies
under ``condition_nets.<modality>.autoencoder.*``, which are dropped). Our modules keep the
official parameter names below those prefixes, so conversion renames prefixes only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from compact_ssl.config import build_dataclass
from compact_ssl.io import atomic_write_with
from compact_ssl.nn import load_state_strictly
from vision_ssl.diffblender.adapter import DiffBlenderAdapter, block_key
from vision_ssl.diffblender.config import AdapterConfig

CONFIG_KEY = "diffblender_config"
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
_FUSER = re.compile(r"^(input_blocks|output_blocks|middle_block)(?:\.(\d+))?\.1\.transformer_blocks\.(\d+)"
                    r"\.(sp_fuser|nsp_fuser)\.(.+)$")


def save_adapter(adapter: DiffBlenderAdapter, path: str | Path) -> Path:
    """Write the adapter's weights and config to ``path`` (safetensors, written atomically)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    metadata = {CONFIG_KEY: json.dumps(adapter.adapter_config.to_dict())}
    return atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_adapter_config(path: str | Path) -> AdapterConfig:
    """The :class:`AdapterConfig` stored in an adapter file's metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: adapter file not found")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path}: no {CONFIG_KEY!r} metadata; is this a file written by save_adapter?")
    return build_dataclass(AdapterConfig, json.loads(meta[CONFIG_KEY]), str(path))


def load_adapter(path: str | Path, unet: nn.Module, attach: bool = True) -> DiffBlenderAdapter:
    """Build the adapter stored in ``path`` for ``unet`` (attached to it unless ``attach=False``)."""
    from safetensors.torch import load_file

    adapter = DiffBlenderAdapter.from_unet(read_adapter_config(path), unet)
    load_state_strictly(adapter, load_file(str(path)), path, "adapter weights do not fit the config/UNet")
    adapter.to(device=next(unet.parameters()).device)
    return adapter.attach(unet) if attach else adapter


def ldm_block_name(kind: str, index: int, layers_per_block: int = 2) -> str:
    """diffusers name of the ldm attention block ``<kind>.<index>.1`` (SD layout:
    ``input_blocks.{1,2,4,5,7,8}`` -> ``down_blocks.{0,0,1,1,2,2}.attentions.{0,1,...}``,
    ``middle_block`` -> ``mid_block.attentions.0``, ``output_blocks.{3..11}`` ->
    ``up_blocks.{1,1,1,2,...}.attentions.{0,1,2,...}``)."""
    if kind == "middle_block":
        return "mid_block.attentions.0"
    span = layers_per_block + 1
    if kind == "input_blocks":
        level, j = divmod(index - 1, span)
        if index < 1 or j >= layers_per_block:
            raise ValueError(f"input_blocks.{index} holds no attention with layers_per_block={layers_per_block}")
        return f"down_blocks.{level}.attentions.{j}"
    if kind == "output_blocks":
        level, j = divmod(index, span)
        return f"up_blocks.{level}.attentions.{j}"
    raise ValueError(f"unknown ldm block kind {kind!r}")


def convert_official_state_dict(state_dict: dict[str, torch.Tensor],
                                layers_per_block: int = 2) -> dict[str, torch.Tensor]:
    """Map an official DiffBlender state dict onto :class:`DiffBlenderAdapter` keys.

    Base-UNet keys and the VAE copies of the image encoders are dropped; the result loads into
    an adapter whose config matches the checkpoint's ``config_dict`` (modality names and order,
    ``nums_rb``, ``use_conv``).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.startswith("condition_nets."):
            _, modality, rest = key.split(".", 2)
            if not rest.startswith("autoencoder."):
                out[f"encoders.{modality}.{rest}"] = value
            continue
        match = _FUSER.match(key)
        if match:
            kind, index, k, fuser, rest = match.groups()
            name = f"{ldm_block_name(kind, int(index or 0), layers_per_block)}.transformer_blocks.{k}"
            group = "sp_fusers" if fuser == "sp_fuser" else "nsp_fusers"
            out[f"{group}.{block_key(name)}.{rest}"] = value
    return out
