"""The DiffBlender adapter: every trainable network (modality encoders + per-block fusers) in one
diffusers model (``ModelMixin`` + ``ConfigMixin``), and its interface to a frozen diffusers Stable
Diffusion base.

The adapter's registered config is plain JSON: ``adapter_config`` (:class:`AdapterConfig`, see
:func:`config_to_json`) and ``unet_layout`` (the widths and heads of the UNet's transformer blocks,
which fix the fusers' shapes; see :func:`unet_layout`). The UNet itself is only read, never kept, so
``save_pretrained`` writes the adapter's own weights and ``from_pretrained`` rebuilds it without a
UNet; ``attach(unet)`` then checks the UNet has that layout. ``from_pretrained`` is strict: a
weights file that misses or adds keys is an error, never a partly fresh adapter.

Life of a condition (raw-condition contract in :mod:`vision_ssl.diffblender`)::

    adapter = DiffBlenderAdapter.from_unet(config, unet).attach(unet)
    prepared = adapter.prepare(conditions, batch_size, vae=vae, text_encoder=te, tokenizer=tok,
                               image_size=(H, W))          # frozen work, no grad
    encoded = adapter.encode(prepared, batch_size)          # trainable encoders
    eps = adapter.predict(unet, latents, t, text_embeddings, encoded, GateScales(1, 1, 0.7))

``prepare`` VAE-encodes image-form conditions into ``"latent"`` and embeds box phrases into
``"phrase_embeds"`` (entries that already hold them are kept, so a prepared dict can be
re-prepared after nulling one modality). With ``posterior="sample"`` it also keeps the posterior
(``"posterior_mean"``, ``"posterior_std"``), from which :meth:`DiffBlenderAdapter.resample` draws
a new latent: the official model draws one at every UNet call, which the pipeline reproduces. Absent image-form modalities follow
``config.image_null``: ``"zero_image"`` (official) encodes a black image, a learned null signal
that changes the output once trained; ``"skip"`` adds nothing, an exact identity. Absent token
modalities always use the encoders' learned null tokens (mask 0), kept in the sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from compact_ssl.config import build_dataclass
from vision_ssl.diffblender.config import AdapterConfig
from vision_ssl.diffblender.encoders import build_encoder
from vision_ssl.diffblender.fusers import GatedFuser
from vision_ssl.diffblender.processors import FuserState, Installation, transformer_blocks

Conditions = dict[str, dict[str, Any]]


def block_key(name: str) -> str:
    """ModuleDict key of the transformer block ``name`` (dots are not allowed in keys)."""
    return name.replace(".", "_")


def unet_layout(unet: nn.Module) -> dict[str, Any]:
    """What the adapter's shapes depend on in ``unet``, as plain JSON data: ``block_out_channels``,
    ``cross_attention_dim`` and ``blocks``, one entry per transformer block in module order: its
    ``name`` and the width, heads and head width of its self-attention (``channels``, ``heads``,
    ``dim_head``) and the heads and head width of its cross-attention (``context_heads``,
    ``context_dim_head``). Lists, not mappings, keep orders: diffusers writes config.json with sorted keys."""
    blocks = []
    for name, block in transformer_blocks(unet).items():
        attn1, attn2 = block.attn1, block.attn2
        blocks.append({"name": name, "channels": int(attn1.query_dim), "heads": int(attn1.heads),
                       "dim_head": int(attn1.inner_dim // attn1.heads), "context_heads": int(attn2.heads),
                       "context_dim_head": int(attn2.inner_dim // attn2.heads)})
    return {"block_out_channels": [int(c) for c in unet.config.block_out_channels],
            "cross_attention_dim": int(unet.config.cross_attention_dim), "blocks": blocks}


def config_to_json(config: AdapterConfig) -> dict[str, Any]:
    """``config`` as registered JSON data: the modalities become a list of ``{"name", **spec}`` in
    token order (diffusers writes config.json with sorted keys, which would reorder a mapping)."""
    data = config.to_dict()
    data["modalities"] = [{"name": name, **spec} for name, spec in data["modalities"].items()]
    return data


def config_from_json(data: dict[str, Any], where: str) -> AdapterConfig:
    """The :class:`AdapterConfig` of :func:`config_to_json` data (a ``modalities`` mapping is accepted too)."""
    data = dict(data)
    if isinstance(data.get("modalities"), list):
        data["modalities"] = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in data["modalities"]}
    return build_dataclass(AdapterConfig, data, where)


@dataclass
class GateScales:
    """Runtime scales of the spatial fusers, the non-spatial fusers and the image residuals."""

    spatial: float = 1.0
    nonspatial: float = 1.0
    image: float = 1.0


@dataclass
class EncodedConditions:
    """Encoder outputs of one batch: layout tokens, attribute tokens, summed image features."""

    spatial: torch.Tensor | None = None  #: B x N_sp x D
    nonspatial: torch.Tensor | None = None  #: B x N_nsp x D
    image: list[torch.Tensor] | None = None  #: one B x C_l x h_l x w_l map per UNet down block

    @staticmethod
    def cat(parts: Sequence[EncodedConditions]) -> EncodedConditions:
        """Concatenate along the batch (classifier-free-guidance chunks)."""
        def join(values):
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError("cannot batch encoded conditions where only some chunks have a path")
            return torch.cat(values)

        image = None
        if any(p.image is not None for p in parts):
            if any(p.image is None for p in parts):
                raise ValueError("cannot batch encoded conditions where only some chunks have image features")
            image = [torch.cat(level) for level in zip(*(p.image for p in parts))]
        return EncodedConditions(join([p.spatial for p in parts]), join([p.nonspatial for p in parts]), image)


@torch.no_grad()
def encode_text(text_encoder: nn.Module, tokenizer: Any, texts: Sequence[str], pooled: bool = False) -> torch.Tensor:
    """CLIP text features of ``texts``: last hidden state (B x L x D), or the pooled output (B x D)
    that box phrases use. Texts are padded/truncated to the tokenizer's length (77 for SD)."""
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids.to(text_encoder.device)
    out = text_encoder(ids)
    return out.pooler_output if pooled else out.last_hidden_state


@torch.no_grad()
def encode_latents(vae: nn.Module, images: torch.Tensor, scale: float, posterior: str = "sample",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``scale`` x a VAE posterior sample (or its mode) of ``images`` (B x 3 x H x W)."""
    return encode_image_condition(vae, images, scale, posterior, generator)["latent"]


def draw_latent(mean: torch.Tensor, std: torch.Tensor, scale: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``scale`` x a sample of the Gaussian posterior ``(mean, std)``, drawn as diffusers'
    ``DiagonalGaussianDistribution.sample`` draws it (same noise for the same generator state)."""
    return scale * (mean + std * randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype))


@torch.no_grad()
def encode_image_condition(vae: nn.Module, images: torch.Tensor, scale: float, posterior: str,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``{"latent"}`` of ``images`` (as :func:`encode_latents`), plus the unscaled posterior
    ``{"posterior_mean", "posterior_std"}`` when ``posterior="sample"`` (for re-drawing)."""
    dist = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist
    if posterior != "sample":
        return {"latent": scale * dist.mode()}
    return {"latent": draw_latent(dist.mean, dist.std, scale, generator),
            "posterior_mean": dist.mean, "posterior_std": dist.std}


def _layout_difference(want: dict[str, Any], got: dict[str, Any]) -> str:
    """The first difference between two :func:`unet_layout` results, in words."""
    for key in ("block_out_channels", "cross_attention_dim"):
        if want[key] != got[key]:
            return f"{key} {want[key]} (this UNet: {got[key]})"
    names = [b["name"] for b in want["blocks"]], [b["name"] for b in got["blocks"]]
    if names[0] != names[1]:
        return f"transformer blocks {names[0]} (this UNet: {names[1]})"
    a, b = next((a, b) for a, b in zip(want["blocks"], got["blocks"]) if a != b)
    return f"transformer block {a} (this UNet: {b})"


class DiffBlenderAdapter(ModelMixin, ConfigMixin):
    """Encoders (``encoders.<modality>``) and fusers (``sp_fusers.<block>``, ``nsp_fusers.<block>``)
    for a UNet of layout ``unet_layout``.

    Args:
        adapter_config: :class:`AdapterConfig` as JSON data (:func:`config_to_json`).
        unet_layout: :func:`unet_layout` of the UNet the adapter is for.

    Build one for a UNet with :meth:`from_unet`; ``adapter_config`` is then the
    :class:`AdapterConfig` (``config`` is diffusers' registered dict).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, adapter_config: dict[str, Any], unet_layout: dict[str, Any]) -> None:
        super().__init__()
        config = config_from_json(adapter_config, "DiffBlenderAdapter adapter_config")
        self.adapter_config = config
        down_channels = list(unet_layout["block_out_channels"])
        if config.names("image") and list(config.image_channels) != down_channels:
            raise ValueError(f"adapter.image_channels {config.image_channels} must equal the UNet's "
                             f"block_out_channels {down_channels}")
        context_dim = unet_layout["cross_attention_dim"]
        if config.token_dim != context_dim:
            raise ValueError(f"adapter.token_dim {config.token_dim} must equal the UNet's cross_attention_dim "
                             f"{context_dim}")
        self.encoders = nn.ModuleDict({name: build_encoder(spec, config) for name, spec in config.modalities.items()})
        self.sp_fusers = nn.ModuleDict()
        self.nsp_fusers = nn.ModuleDict()
        for block in unet_layout["blocks"]:
            key = block_key(block["name"])
            if config.names("spatial"):
                self.sp_fusers[key] = GatedFuser(block["channels"], config.token_dim, block["heads"], block["dim_head"])
            if config.names("nonspatial"):
                self.nsp_fusers[key] = GatedFuser(context_dim, config.token_dim, block["context_heads"],
                                                  block["context_dim_head"])
        self.state = FuserState()
        self._installation: Installation | None = None

    @classmethod
    def from_unet(cls, config: AdapterConfig, unet: nn.Module) -> DiffBlenderAdapter:
        """A fresh adapter of ``config`` for ``unet`` (not attached; the UNet is only read)."""
        return cls(adapter_config=config_to_json(config), unet_layout=unet_layout(unet))

    # ------------------------------------------------------------------ diffusers save / load
    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained`` (``config.json`` + weights), with the registered config
        refreshed from ``adapter_config`` (runtime options such as ``posterior`` may have changed)."""
        self.register_to_config(adapter_config=config_to_json(self.adapter_config))
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any):
        """diffusers' ``from_pretrained``, strict: weights that miss, add or reshape a key of the
        adapter its ``config.json`` describes raise ``ValueError`` (diffusers would only warn and
        leave those weights freshly initialised)."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        problems = {kind: info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[kind]}
        if problems:
            where = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
            details = "; ".join(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {sorted(map(str, keys))[:5]})"
                                for kind, keys in problems.items())
            raise ValueError(f"{where}: the adapter weights do not match its config.json: {details}; the folder is "
                             "incomplete or was edited, write it again with DiffBlenderPipeline.save_pretrained")
        return (model, info) if want_info else model

    # ------------------------------------------------------------------ UNet wiring
    def attach(self, unet: nn.Module) -> DiffBlenderAdapter:
        """Install the fuser processors into ``unet`` (replacing an earlier attachment)."""
        self.detach()
        layout = unet_layout(unet)
        if layout != self.config.unet_layout:
            raise ValueError("this adapter was built for a UNet of another layout: "
                             f"{_layout_difference(self.config.unet_layout, layout)}")
        blocks = transformer_blocks(unet)
        spatial = {n: self.sp_fusers[block_key(n)] for n in blocks if block_key(n) in self.sp_fusers}
        nonspatial = {n: self.nsp_fusers[block_key(n)] for n in blocks if block_key(n) in self.nsp_fusers}
        self._installation = Installation(unet, spatial, nonspatial, self.state)
        return self

    def detach(self) -> None:
        """Give ``unet`` its original processors back."""
        if self._installation is not None:
            self._installation.remove()
            self._installation = None

    @contextlib.contextmanager
    def conditioned(self, encoded: EncodedConditions, scales: GateScales | None = None) -> Iterator[None]:
        """Within the block, the attached UNet's fusers see ``encoded``'s tokens at ``scales``."""
        if self._installation is None and (encoded.spatial is not None or encoded.nonspatial is not None):
            raise RuntimeError("DiffBlenderAdapter: call attach(unet) before running with token conditions")
        scales = scales or GateScales()
        self.state.spatial, self.state.nonspatial = encoded.spatial, encoded.nonspatial
        self.state.spatial_scale, self.state.nonspatial_scale = float(scales.spatial), float(scales.nonspatial)
        try:
            yield
        finally:
            self.state.clear()

    @staticmethod
    def image_residuals(encoded: EncodedConditions, scale: float = 1.0) -> list[torch.Tensor] | None:
        """A fresh list of ``scale`` x image features for ``down_intrablock_additional_residuals``
        (the UNet pops from it), or None when there are none or the scale is 0."""
        if encoded.image is None or scale == 0:
            return None
        return [scale * f for f in encoded.image]

    def predict(self, unet: nn.Module, sample: torch.Tensor, timestep: torch.Tensor | float,
                encoder_hidden_states: torch.Tensor, encoded: EncodedConditions,
                scales: GateScales | None = None) -> torch.Tensor:
        """The attached UNet's noise prediction with ``encoded`` conditions."""
        scales = scales or GateScales()
        residuals = self.image_residuals(encoded, scales.image)
        with self.conditioned(encoded, scales):
            return unet(sample, timestep, encoder_hidden_states,
                        down_intrablock_additional_residuals=residuals).sample

    # ------------------------------------------------------------------ conditions
    @torch.no_grad()
    def prepare(self, conditions: Conditions | None, batch_size: int, *, vae: nn.Module | None = None,
                text_encoder: nn.Module | None = None, tokenizer: Any = None,
                image_size: tuple[int, int] | None = None, generator: torch.Generator | None = None,
                posterior: str | None = None) -> Conditions:
        """Run the frozen parts on raw conditions: image-form -> ``"latent"``, box phrases ->
        ``"phrase_embeds"``. Returns a new dict; unknown modality keys are errors."""
        conditions = dict(conditions or {})
        unknown = sorted(set(conditions) - set(self.adapter_config.modalities))
        if unknown:
            raise ValueError(f"unknown condition modalities {unknown}; this adapter has {list(self.adapter_config.modalities)}")
        posterior = posterior or self.adapter_config.posterior
        out: Conditions = {}
        for name, cond in conditions.items():
            cond = dict(cond)
            spec = self.adapter_config.modalities[name]
            if spec.category == "image" and "latent" not in cond:
                if vae is None:
                    raise ValueError(f"condition {name!r}: an image needs the VAE (pass vae=...)")
                image = cond["image"]
                if self.adapter_config.image_null == "zero_image":
                    image = image * cond["mask"].reshape(-1, 1, 1, 1).to(image.dtype)
                cond.update(encode_image_condition(vae, image, self.adapter_config.vae_scale, posterior, generator))
            if "phrases" in cond and "phrase_embeds" not in cond:
                cond["phrase_embeds"] = self._embed_phrases(cond["phrases"], text_encoder, tokenizer)
            out[name] = cond
        if self.adapter_config.image_null == "zero_image":
            for name in self.adapter_config.names("image"):
                if name not in out:
                    if vae is None or image_size is None:
                        raise ValueError(f"absent image condition {name!r} with image_null='zero_image' needs "
                                         "vae=... and image_size=(H, W) (or use image_null='skip')")
                    black = torch.zeros(batch_size, 3, *image_size, device=vae.device, dtype=vae.dtype)
                    out[name] = {**encode_image_condition(vae, black, self.adapter_config.vae_scale, posterior, generator),
                                 "mask": torch.zeros(batch_size, device=vae.device)}
        return out

    def resample(self, prepared: Conditions, generator: torch.Generator | None = None) -> Conditions:
        """``prepared`` with a new posterior sample as the ``"latent"`` of every image-form entry
        that keeps its posterior (the others, and token entries, are the same objects)."""
        out = dict(prepared)
        for name in self.adapter_config.names("image"):
            cond = prepared.get(name)
            if cond is not None and "posterior_mean" in cond:
                latent = draw_latent(cond["posterior_mean"], cond["posterior_std"], self.adapter_config.vae_scale, generator)
                out[name] = {**cond, "latent": latent}
        return out

    def _embed_phrases(self, phrases: Sequence[Sequence[str]], text_encoder, tokenizer) -> torch.Tensor:
        """Pooled text features of each sample's phrases in a B x max_boxes x text_dim tensor."""
        if text_encoder is None or tokenizer is None:
            raise ValueError("box phrases need the text encoder and tokenizer (or pass phrase_embeds)")
        n = self.adapter_config.max_boxes
        embeds = torch.zeros(len(phrases), n, self.adapter_config.text_dim, device=text_encoder.device,
                             dtype=text_encoder.dtype)
        slots = [(i, j, p) for i, row in enumerate(phrases) for j, p in enumerate(row)]
        if any(j >= n for _, j, _ in slots):
            raise ValueError(f"box phrases: at most {n} per sample")
        if slots:
            pooled = encode_text(text_encoder, tokenizer, [p for _, _, p in slots], pooled=True)
            rows = torch.tensor([i for i, _, _ in slots]), torch.tensor([j for _, j, _ in slots])
            embeds[rows] = pooled.to(embeds.dtype)
        return embeds

    def encode(self, prepared: Conditions, batch_size: int) -> EncodedConditions:
        """Encode prepared conditions; absent token modalities become their null tokens."""
        tokens = self.encode_tokens(prepared, batch_size)
        return EncodedConditions(tokens.spatial, tokens.nonspatial, self.encode_image(prepared))

    def encode_image(self, prepared: Conditions) -> list[torch.Tensor] | None:
        """The summed image-form features of ``prepared`` (None when it has no image-form entry)."""
        image: list[torch.Tensor] | None = None
        for name in self.adapter_config.names("image"):
            cond = prepared.get(name)
            if cond is None:
                continue
            if "latent" not in cond:
                raise ValueError(f"condition {name!r} has no 'latent': run DiffBlenderAdapter.prepare first")
            feats = self.encoders[name](cond["latent"].to(self.dtype))
            if self.adapter_config.image_null == "skip":
                keep = cond["mask"].reshape(-1, 1, 1, 1).to(self.dtype)
                feats = [f * keep for f in feats]
            image = feats if image is None else [a + b for a, b in zip(image, feats)]
        return image

    def encode_tokens(self, prepared: Conditions, batch_size: int) -> EncodedConditions:
        """The layout and attribute tokens of ``prepared`` (absent modalities: null tokens)."""
        tokens: dict[str, list[torch.Tensor]] = {"spatial": [], "nonspatial": []}
        for name, spec in self.adapter_config.modalities.items():
            if spec.category == "image":
                continue
            encoder, cond = self.encoders[name], prepared.get(name)
            if cond is None:
                cond = encoder.null_condition(batch_size, self.device, self.dtype)
            cond = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in cond.items()}
            tokens[spec.category].append(encoder(cond))
        spatial, nonspatial = (torch.cat(tokens[c], dim=1) if tokens[c] else None for c in ("spatial", "nonspatial"))
        return EncodedConditions(spatial, nonspatial)
