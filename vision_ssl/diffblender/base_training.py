"""Training of the tiny frozen base for the mini recipe: helper-built random SD-layout components
(:func:`vision_ssl.diffblender.tiny.build_tiny_components`) are trained on the synthetic shapes,
first the VAE (reconstruction + KL), then the UNet (epsilon prediction on the VAE latents, caption
conditioning through the text encoder), so that the base draws coloured shapes from captions.
Then the result is saved as a diffusers Stable Diffusion folder and scored (:func:`build_base`).

Measured figures (``base_training.json``): the fraction of images generated from one-shape
captions whose dominant colour (see :mod:`vision_ssl.diffblender.metrics`) is the caption's, the
spread (standard deviation) of the generated shapes' centres, and a Frechet distance on fixed
random conv features between generated and real shapes, next to the same distance between two
real sets (its floor) and between real shapes and noise (its ceiling).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torchvision.utils import save_image

from compact_ssl.io import read_json, write_json
from compact_ssl.training import NonFiniteLossError
from vision_ssl.diffblender.data.collate import collate_conditions
from vision_ssl.diffblender.data.config import DataConfig
from vision_ssl.diffblender.data.datamodule import DiffBlenderDataModule
from vision_ssl.diffblender.data.shapes import SHAPE_COLORS, SHAPE_KINDS, ShapesDataset
from vision_ssl.diffblender.metrics import RandomConvFeatures, color_match_rate, compute_fid, segment_colors
from vision_ssl.diffblender.tiny import build_tiny_components, save_tiny_base


@dataclass
class BaseTrainingConfig:
    """Data, steps and optimisation of the tiny base (defaults: about 3 minutes on one CPU thread)."""

    resolution: int = 32  #: image side
    latent_factor: int = 4  #: VAE downsampling: 32 px images give 8 x 8 latents
    count: int = 1024  #: synthetic training images
    shapes_max: int = 2  #: shapes per training image, 1..shapes_max
    seed: int = 0
    batch_size: int = 8
    vae_steps: int = 150
    vae_lr: float = 1.0e-3
    kl_weight: float = 1.0e-5  #: weight of the KL term of the VAE loss (sum over latent dims, mean over batch)
    unet_steps: int = 1500
    unet_lr: float = 1.0e-3
    warmup_steps: int = 50
    caption_dropout: float = 0.1  #: training captions replaced by "" (for classifier-free guidance)
    train_text_encoder: bool = True  #: the random tiny text encoder learns with the UNet
    eval_samples: int = 64  #: images generated for the measured figures
    num_inference_steps: int = 25
    guidance_scale: float = 4.0
    num_workers: int = 0

    def data_config(self, count: int | None = None, seed: int | None = None) -> DataConfig:
        """The shapes data (images and captions only) of this run."""
        return DataConfig(dataset="shapes", resolution=self.resolution, modalities=[], batch_size=self.batch_size,
                          shapes_count=count or self.count, shapes_val_count=0, shapes_seed=self.seed if seed is None
                          else seed, shapes_max=self.shapes_max, num_workers=self.num_workers)


def _constant_with_warmup(optimizer: torch.optim.Optimizer, warmup: int) -> dict:
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _check(loss: Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"tiny base {what}: loss is {loss.item()} at step {step}; lower the learning rate")


class VAETraining(L.LightningModule):
    """``AutoencoderKL`` reconstruction: MSE of the decoded posterior sample + ``kl_weight`` x KL."""

    def __init__(self, vae: nn.Module, lr: float, kl_weight: float, warmup_steps: int = 0) -> None:
        super().__init__()
        self.vae, self.lr, self.kl_weight, self.warmup_steps = vae, lr, kl_weight, warmup_steps

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x = batch["pixel_values"]
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        mse, kl = F.mse_loss(recon, x), posterior.kl().mean()
        loss = mse + self.kl_weight * kl
        _check(loss, "VAE", self.global_step)
        self.log_dict({"vae/loss": loss, "vae/mse": mse, "vae/kl": kl}, prog_bar=True, batch_size=len(x))
        return loss

    def configure_optimizers(self) -> dict:
        return _constant_with_warmup(torch.optim.AdamW(self.vae.parameters(), lr=self.lr, weight_decay=0.0),
                                     self.warmup_steps)


class UNetTraining(L.LightningModule):
    """Epsilon-prediction MSE of the UNet on frozen-VAE latents (scaled by the VAE's scaling
    factor), conditioned on the caption's text-encoder states; the text encoder trains too when
    ``train_text_encoder``."""

    def __init__(self, components: dict[str, Any], lr: float, caption_dropout: float = 0.1,
                 train_text_encoder: bool = True, warmup_steps: int = 0) -> None:
        super().__init__()
        self.unet, self.vae, self.text_encoder = components["unet"], components["vae"], components["text_encoder"]
        self.tokenizer = components["tokenizer"]
        self.noise_scheduler = DDPMScheduler.from_config(components["scheduler"].config)
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(train_text_encoder)
        self.lr, self.caption_dropout, self.warmup_steps = lr, caption_dropout, warmup_steps

    def encode_text(self, captions: list[str]) -> Tensor:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x = batch["pixel_values"]
        with torch.no_grad():
            latents = self.vae.encode(x).latent_dist.sample() * self.vae.config.scaling_factor
        captions = ["" if float(torch.rand(())) < self.caption_dropout else c for c in batch["captions"]]
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(x),), device=x.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        pred = self.unet(noisy, t, encoder_hidden_states=self.encode_text(captions)).sample
        loss = F.mse_loss(pred, noise)
        _check(loss, "UNet", self.global_step)
        self.log("unet/loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        return _constant_with_warmup(torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0), self.warmup_steps)


@torch.no_grad()
def latent_scaling_factor(vae: nn.Module, loader, batches: int = 4) -> float:
    """1 / std of the VAE posterior means over a few batches (SD's 0.18215 plays this role)."""
    means = [vae.encode(batch["pixel_values"]).latent_dist.mean for _, batch in zip(range(batches), loader)]
    return float(1.0 / torch.cat(means).std())


def eval_captions(count: int) -> tuple[list[str], list[str]]:
    """``count`` one-shape captions cycling through every colour x kind, and their colours."""
    pairs = [(c, k) for c in SHAPE_COLORS for k in SHAPE_KINDS]
    chosen = [pairs[i % len(pairs)] for i in range(count)]
    return [f"a {c} {k}" for c, k in chosen], [c for c, _ in chosen]


@torch.no_grad()
def generate(components: dict[str, Any], captions: list[str], resolution: int, steps: int, guidance_scale: float,
             seed: int = 0, batch_size: int = 16) -> Tensor:
    """Images ``[N, 3, H, W]`` in [0, 1] from ``captions`` with diffusers' Stable Diffusion pipeline."""
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, len(captions), batch_size):
        out = pipe(captions[start:start + batch_size], height=resolution, width=resolution, num_inference_steps=steps,
                   guidance_scale=guidance_scale, generator=generator, output_type="pt")
        images.append(out.images.cpu())
    return torch.cat(images)


def centre_spread(images: Tensor) -> float:
    """Mean over x and y of the standard deviation of the shape-pixel centroids (normalised units;
    0 would mean every shape drawn at the same place)."""
    labels = segment_colors(images) > 0
    h, w = labels.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
    area = labels.sum((1, 2)).clamp_min(1)
    cx, cy = (labels * xs).sum((1, 2)) / area, (labels * ys).sum((1, 2)) / area
    keep = labels.flatten(1).any(1)
    if keep.sum() < 2:
        return 0.0
    return float((cx[keep].std() + cy[keep].std()) / 2)


def evaluate_base(components: dict[str, Any], config: BaseTrainingConfig) -> dict[str, float]:
    """The measured figures of a trained base (see the module docstring)."""
    captions, colors = eval_captions(config.eval_samples)
    fake = generate(components, captions, config.resolution, config.num_inference_steps, config.guidance_scale,
                    seed=config.seed)

    def real(seed: int) -> Tensor:
        data = ShapesDataset(config.data_config(count=config.eval_samples, seed=seed))
        return (collate_conditions([data[i] for i in range(len(data))])["pixel_values"] + 1) / 2

    real_a, real_b = real(config.seed + 1), real(config.seed + 2)
    features = RandomConvFeatures(seed=config.seed)
    noise = torch.rand(real_a.shape, generator=torch.Generator().manual_seed(config.seed))
    return {"color_match": color_match_rate(fake, colors), "chance_color_match": 1.0 / len(SHAPE_COLORS),
            "centre_spread": centre_spread(fake), "real_centre_spread": centre_spread(real_a),
            "fid_proxy": compute_fid(real_a, fake, features),
            "fid_proxy_real_vs_real": compute_fid(real_a, real_b, features),
            "fid_proxy_real_vs_noise": compute_fid(real_a, noise, features), "eval_samples": len(captions)}


def train_base(components: dict[str, Any], config: BaseTrainingConfig, accelerator: str = "auto",
               logdir: str | None = None) -> dict[str, Any]:
    """Train the VAE, set its latent scaling factor, then train the UNet (in place); returns the
    final losses."""
    L.seed_everything(config.seed, workers=True)
    data = DiffBlenderDataModule(config.data_config())

    def fit(module: L.LightningModule, steps: int, name: str) -> dict[str, float]:
        trainer = L.Trainer(max_steps=steps, max_epochs=-1, accelerator=accelerator, devices=1, precision="32-true",
                            logger=CSVLogger(logdir, name=name, version="") if logdir else False,
                            enable_checkpointing=False, log_every_n_steps=max(1, min(50, steps // 4)),
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, datamodule=data)
        return {k: float(v) for k, v in trainer.callback_metrics.items()}

    vae = components["vae"]
    vae.train()
    summary = fit(VAETraining(vae, config.vae_lr, config.kl_weight, config.warmup_steps), config.vae_steps, "vae")
    vae.eval()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, data.train_dataloader()))
    components["unet"].train()
    components["text_encoder"].train(config.train_text_encoder)
    summary |= fit(UNetTraining(components, config.unet_lr, config.caption_dropout, config.train_text_encoder,
                                config.warmup_steps), config.unet_steps, "unet")
    for name in ("unet", "vae", "text_encoder"):
        components[name].eval().requires_grad_(False)
    return {**summary, "scaling_factor": float(vae.config.scaling_factor), "config": asdict(config),
            "steps_per_epoch": math.ceil(config.count / config.batch_size)}


def build_base(out: str | Path, config: BaseTrainingConfig, accelerator: str = "auto") -> dict:
    """Train, save and score the tiny base at ``out``; returns ``base_training.json``.

    ``out`` receives ``unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json`` (readable
    by ``StableDiffusionPipeline.from_pretrained``), ``samples.png`` (images generated from one-shape
    captions), ``logs/`` (CSV losses) and ``base_training.json`` (losses and the measured figures).
    The folder is assembled beside ``out`` and renamed into place; with ``base_training.json``
    present nothing is done.
    """
    out = Path(out)
    done = out / "base_training.json"
    if done.is_file():
        print(f"{out}: tiny base already trained; skipping (delete the folder to retrain)")
        return read_json(done)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    components = build_tiny_components(tmp / "tokenizer", seed=config.seed, latent_factor=config.latent_factor)
    summary = train_base(components, config, accelerator, logdir=str(tmp / "logs"))
    save_tiny_base(components, tmp)
    summary["eval"] = evaluate_base(components, config)
    captions, _ = eval_captions(16)
    save_image(generate(components, captions, config.resolution, config.num_inference_steps, config.guidance_scale,
                        seed=config.seed), tmp / "samples.png", nrow=8)
    write_json(tmp / "base_training.json", summary)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary
