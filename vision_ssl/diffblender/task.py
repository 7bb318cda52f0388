"""Lightning training of the DiffBlender adapter on a frozen Stable Diffusion base.

Lightning is the project's engine and fits here because diffusers' ``UNet2DConditionModel``,
``AutoencoderKL`` and the transformers text encoder are plain ``nn.Module``s: the Trainer gives
DDP, mixed precision, accumulation and checkpoint/resume around them unchanged (the Trainer
itself is built by the experiment runner, :class:`vision_ssl.diffblender.experiment.AdapterTraining`).

Only the adapter trains: the UNet, VAE and text encoder have ``requires_grad=False``, stay in
eval mode, are not in the optimiser (AdamW, weight decay 0 by default) and are left out of the
Lightning checkpoints (which hold the ``adapter.*`` weights; the base is reloaded from its
folder). Each step nulls every modality per sample with its configured probability (and the
caption with ``text_dropout``), noises the VAE latent with DDPM noise at a timestep drawn by
``train.timestep_sampling`` (uniform, or T2I-Adapter's cubic) and regresses the noise
(epsilon-prediction MSE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from compact_ssl.training import NonFiniteLossError
from vision_ssl.diffblender.adapter import Conditions, DiffBlenderAdapter, encode_latents, encode_text
from vision_ssl.diffblender.config import DiffBlenderConfig

BASE_MODULES = ("unet", "vae", "text_encoder")


def drop_conditions(conditions: Conditions, probs: Mapping[str, float],
                    generator: torch.Generator | None = None) -> Conditions:
    """Null each modality per sample with probability ``probs[name]`` by zeroing its mask
    (a new dict; tensors are not modified in place). Modalities without a probability are kept."""
    out: Conditions = {}
    for name, cond in conditions.items():
        p = float(probs.get(name, 0.0))
        mask = cond["mask"]
        if p > 0:
            keep = torch.rand(mask.shape[0], generator=generator) >= p
            keep = keep.to(device=mask.device, dtype=mask.dtype).reshape(-1, *([1] * (mask.ndim - 1)))
            cond = {**cond, "mask": mask * keep}
        out[name] = cond
    return out


def sample_timesteps(n: int, num_train_timesteps: int, kind: str = "uniform",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` integer training timesteps in ``[0, num_train_timesteps)``: ``uniform``, or ``cubic``
    (``t = floor((1 - u^3) T)`` with ``u`` uniform, T2I-Adapter's non-uniform sampling: P(t > T/2) =
    0.79, favouring the noisy steps where a spatial condition decides the layout)."""
    if kind == "uniform":
        return torch.randint(0, num_train_timesteps, (n,), generator=generator)
    if kind == "cubic":
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return ((1 - u ** 3) * num_train_timesteps).long().clamp_(0, num_train_timesteps - 1)
    raise ValueError(f"unknown timestep sampling {kind!r}; use uniform or cubic")


def drop_captions(captions: Sequence[str], p: float, generator: torch.Generator | None = None) -> list[str]:
    """Replace each caption by the empty prompt with probability ``p``."""
    if p <= 0:
        return list(captions)
    drop = torch.rand(len(captions), generator=generator) < p
    return ["" if d else c for c, d in zip(captions, drop.tolist())]


class DiffBlenderTask(L.LightningModule):
    """Adapter training module.

    Args:
        config: the experiment config (its ``adapter`` and ``train`` sections and ``trainer.seed``).
        components: the frozen base, ``dict(unet, vae, text_encoder, tokenizer)`` (as from
            :func:`vision_ssl.diffblender.pipeline.load_base_components` or
            :func:`vision_ssl.diffblender.tiny.build_tiny_components`).
        adapter: an adapter to continue from (default: a fresh one from ``config.adapter``).

    Batches follow the raw-condition contract: ``{"pixel_values": B x 3 x H x W in [-1, 1],
    "captions": list[str], "conditions": {...}}``.
    """

    def __init__(self, config: DiffBlenderConfig, components: Mapping[str, Any],
                 adapter: DiffBlenderAdapter | None = None) -> None:
        super().__init__()
        from diffusers import DDPMScheduler

        self.config = config
        self.unet, self.vae, self.text_encoder = (components[k] for k in BASE_MODULES)
        self.tokenizer = components["tokenizer"]
        for name in BASE_MODULES:
            getattr(self, name).requires_grad_(False).eval()
        self.adapter = (adapter or DiffBlenderAdapter.from_unet(config.adapter, self.unet)).attach(self.unet)
        t = config.train
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=t.num_train_timesteps, beta_start=t.beta_start,
                                             beta_end=t.beta_end, beta_schedule=t.beta_schedule)
        self.strict_loading = False  # checkpoints hold the adapter only

    def train(self, mode: bool = True) -> DiffBlenderTask:
        super().train(mode)
        for name in BASE_MODULES:
            getattr(self, name).eval()
        return self

    def base_parameters(self) -> dict[str, nn.Parameter]:
        """Every frozen base parameter, by qualified name."""
        return {f"{m}.{n}": p for m in BASE_MODULES for n, p in getattr(self, m).named_parameters()}

    def compute_loss(self, batch: Mapping[str, Any], generator: torch.Generator | None = None,
                     dropout: bool = True) -> torch.Tensor:
        """Epsilon-prediction MSE of one batch (condition/caption dropout when ``dropout``)."""
        pixels = batch["pixel_values"]
        n = pixels.shape[0]
        t = self.config.train
        captions = drop_captions(batch["captions"], t.text_dropout if dropout else 0.0, generator)
        conditions = batch.get("conditions") or {}
        if dropout:
            conditions = drop_conditions(conditions, t.dropout, generator)
        with torch.no_grad():
            latents = encode_latents(self.vae, pixels, self.vae.config.scaling_factor, "sample", generator)
            text = encode_text(self.text_encoder, self.tokenizer, captions)
            prepared = self.adapter.prepare(conditions, n, vae=self.vae, text_encoder=self.text_encoder,
                                            tokenizer=self.tokenizer, image_size=tuple(pixels.shape[-2:]),
                                            generator=generator)
        encoded = self.adapter.encode(prepared, n)
        noise = torch.randn(latents.shape, generator=generator, device="cpu").to(latents)
        steps = sample_timesteps(n, self.noise_scheduler.config.num_train_timesteps, t.timestep_sampling, generator)
        steps = steps.to(latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, steps)
        eps = self.adapter.predict(self.unet, noisy, steps, text, encoded)
        return F.mse_loss(eps.float(), noise.float())

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"diffblender: loss is {loss.item()} at step {self.global_step}; lower train.lr or train with "
                "trainer.precision 32-true")
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["pixel_values"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """The loss without dropout, with noise and timesteps fixed by ``batch_idx`` (comparable across epochs)."""
        generator = torch.Generator().manual_seed(self.config.trainer.seed + batch_idx)
        loss = self.compute_loss(batch, generator=generator, dropout=False)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["pixel_values"].shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self):
        t = self.config.train
        optimizer = torch.optim.AdamW(self.adapter.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        warmup = max(1, t.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only the adapter weights: the frozen base is reloaded from its folder."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("adapter.")}
