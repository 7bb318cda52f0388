"""The DiffBlender adapter: every trainable network (modality encoders + per-block fusers) in one
``nn.Module``, and its interface to a frozen diffusers Stable Diffusion base.

Life of a condition (raw-condition contract in :mod:`vision_ssl.diffblender`)::

    adapter = DiffBlenderAdapter(config, unet).attach(unet)
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
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from vision_ssl.diffblender.config import AdapterConfig
from vision_ssl.diffblender.encoders import build_encoder
from vision_ssl.diffblender.fusers import GatedFuser
from vision_ssl.diffblender.processors import FuserState, Installation, transformer_blocks

Conditions = dict[str, dict[str, Any]]


def block_key(name: str) -> str:
    """ModuleDict key of the transformer block ``name`` (dots are not allowed in keys)."""
    return name.replace(".", "_")


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


class DiffBlenderAdapter(nn.Module):
    """Encoders (``encoders.<modality>``) and fusers (``sp_fusers.<block>``, ``nsp_fusers.<block>``)
    built for the layout of ``unet`` (which is read, not kept)."""

    def __init__(self, config: AdapterConfig, unet: nn.Module) -> None:
        super().__init__()
        self.config = config
        down_channels = list(unet.config.block_out_channels)
        if config.names("image") and list(config.image_channels) != down_channels:
            raise ValueError(f"adapter.image_channels {config.image_channels} must equal the UNet's "
                             f"block_out_channels {down_channels}")
        context_dim = unet.config.cross_attention_dim
        if config.token_dim != context_dim:
            raise ValueError(f"adapter.token_dim {config.token_dim} must equal the UNet's cross_attention_dim "
                             f"{context_dim}")
        self.encoders = nn.ModuleDict({name: build_encoder(spec, config) for name, spec in config.modalities.items()})
        blocks = transformer_blocks(unet)
        self.block_names = list(blocks)
        self.sp_fusers = nn.ModuleDict()
        self.nsp_fusers = nn.ModuleDict()
        for name, block in blocks.items():
            heads = block.attn1.heads
            if config.names("spatial"):
                self.sp_fusers[block_key(name)] = GatedFuser(block.attn1.query_dim, config.token_dim, heads,
                                                             block.attn1.inner_dim // heads)
            if config.names("nonspatial"):
                heads = block.attn2.heads
                self.nsp_fusers[block_key(name)] = GatedFuser(context_dim, config.token_dim, heads,
                                                              block.attn2.inner_dim // heads)
        self.state = FuserState()
        self._installation: Installation | None = None

    # ------------------------------------------------------------------ UNet wiring
    def attach(self, unet: nn.Module) -> DiffBlenderAdapter:
        """Install the fuser processors into ``unet`` (replacing an earlier attachment)."""
        self.detach()
        blocks = transformer_blocks(unet)
        if list(blocks) != self.block_names:
            raise ValueError("this adapter was built for a UNet with other transformer blocks")
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
    @property
    def device(self) -> torch.device:
        """Device of the adapter's weights (diffusers pipelines ask their modules for it)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @torch.no_grad()
    def prepare(self, conditions: Conditions | None, batch_size: int, *, vae: nn.Module | None = None,
                text_encoder: nn.Module | None = None, tokenizer: Any = None,
                image_size: tuple[int, int] | None = None, generator: torch.Generator | None = None,
                posterior: str | None = None) -> Conditions:
        """Run the frozen parts on raw conditions: image-form -> ``"latent"``, box phrases ->
        ``"phrase_embeds"``. Returns a new dict; unknown modality keys are errors."""
        conditions = dict(conditions or {})
        unknown = sorted(set(conditions) - set(self.config.modalities))
        if unknown:
            raise ValueError(f"unknown condition modalities {unknown}; this adapter has {list(self.config.modalities)}")
        posterior = posterior or self.config.posterior
        out: Conditions = {}
        for name, cond in conditions.items():
            cond = dict(cond)
            spec = self.config.modalities[name]
            if spec.category == "image" and "latent" not in cond:
                if vae is None:
                    raise ValueError(f"condition {name!r}: an image needs the VAE (pass vae=...)")
                image = cond["image"]
                if self.config.image_null == "zero_image":
                    image = image * cond["mask"].reshape(-1, 1, 1, 1).to(image.dtype)
                cond.update(encode_image_condition(vae, image, self.config.vae_scale, posterior, generator))
            if "phrases" in cond and "phrase_embeds" not in cond:
                cond["phrase_embeds"] = self._embed_phrases(cond["phrases"], text_encoder, tokenizer)
            out[name] = cond
        if self.config.image_null == "zero_image":
            for name in self.config.names("image"):
                if name not in out:
                    if vae is None or image_size is None:
                        raise ValueError(f"absent image condition {name!r} with image_null='zero_image' needs "
                                         "vae=... and image_size=(H, W) (or use image_null='skip')")
                    black = torch.zeros(batch_size, 3, *image_size, device=vae.device, dtype=vae.dtype)
                    out[name] = {**encode_image_condition(vae, black, self.config.vae_scale, posterior, generator),
                                 "mask": torch.zeros(batch_size, device=vae.device)}
        return out

    def resample(self, prepared: Conditions, generator: torch.Generator | None = None) -> Conditions:
        """``prepared`` with a new posterior sample as the ``"latent"`` of every image-form entry
        that keeps its posterior (the others, and token entries, are the same objects)."""
        out = dict(prepared)
        for name in self.config.names("image"):
            cond = prepared.get(name)
            if cond is not None and "posterior_mean" in cond:
                latent = draw_latent(cond["posterior_mean"], cond["posterior_std"], self.config.vae_scale, generator)
                out[name] = {**cond, "latent": latent}
        return out

    def _embed_phrases(self, phrases: Sequence[Sequence[str]], text_encoder, tokenizer) -> torch.Tensor:
        """Pooled text features of each sample's phrases in a B x max_boxes x text_dim tensor."""
        if text_encoder is None or tokenizer is None:
            raise ValueError("box phrases need the text encoder and tokenizer (or pass phrase_embeds)")
        n = self.config.max_boxes
        embeds = torch.zeros(len(phrases), n, self.config.text_dim, device=text_encoder.device,
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
        for name in self.config.names("image"):
            cond = prepared.get(name)
            if cond is None:
                continue
            if "latent" not in cond:
                raise ValueError(f"condition {name!r} has no 'latent': run DiffBlenderAdapter.prepare first")
            feats = self.encoders[name](cond["latent"].to(self.dtype))
            if self.config.image_null == "skip":
                keep = cond["mask"].reshape(-1, 1, 1, 1).to(self.dtype)
                feats = [f * keep for f in feats]
            image = feats if image is None else [a + b for a, b in zip(image, feats)]
        return image

    def encode_tokens(self, prepared: Conditions, batch_size: int) -> EncodedConditions:
        """The layout and attribute tokens of ``prepared`` (absent modalities: null tokens)."""
        tokens: dict[str, list[torch.Tensor]] = {"spatial": [], "nonspatial": []}
        for name, spec in self.config.modalities.items():
            if spec.category == "image":
                continue
            encoder, cond = self.encoders[name], prepared.get(name)
            if cond is None:
                cond = encoder.null_condition(batch_size, self.device, self.dtype)
            cond = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in cond.items()}
            tokens[spec.category].append(encoder(cond))
        spatial, nonspatial = (torch.cat(tokens[c], dim=1) if tokens[c] else None for c in ("spatial", "nonspatial"))
        return EncodedConditions(spatial, nonspatial)
