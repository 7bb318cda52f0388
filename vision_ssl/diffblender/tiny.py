"""A tiny, randomly initialised Stable-Diffusion-layout base model for CPU tests and the mini recipe.

Sizes follow the tiny UNet diffusers' own tests use (reference diffblender.md section 7): UNet
block_out_channels (32, 64), layers_per_block 2, cross_attention_dim 32, sample 32; a two-level
VAE (factor-2 downsampling, so 64 px images give 32 x 32 latents); a 5-layer CLIP text encoder of
width 32. The mini recipe's base uses ``latent_factor=4`` (a three-level VAE: 32 px shapes give
8 x 8 latents), so that the UNet's transformer blocks see features deep enough, relative to the
map, to tell where they are: the layout (box) tokens need that to be placed. No hub access exists
here, so the tokenizer is a character-level CLIP BPE tokenizer made from a vocab.json (the 256
byte-level characters, each also with the ``</w>`` word-end suffix, plus the two special tokens)
and an empty merges.txt written by :func:`write_char_tokenizer`.

:func:`save_tiny_base` writes the usual SD folder (``unet/ vae/ text_encoder/ tokenizer/
scheduler/`` + ``model_index.json``) that ``DiffBlenderPipeline.from_pretrained`` and diffusers'
``StableDiffusionPipeline.from_pretrained`` both read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
#: SD's tokenizer length; kept so the tiny text encoder sees the same 77-token contexts
MAX_LENGTH = 77


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255, in byte order.

    Printable Latin-1 bytes stand for themselves; the other bytes are shifted past 255 so that
    every byte has a visible, non-whitespace character.
    """
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    chars, shift = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + shift))
            shift += 1
    return chars


def char_vocab() -> dict[str, int]:
    """Character-level CLIP vocabulary: every byte character, then each with ``</w>``, then the
    start and end tokens (the end token last, so its id is also the largest)."""
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}


def write_char_tokenizer(folder: str | Path) -> Path:
    """Write ``vocab.json`` and an empty-merge ``merges.txt`` to ``folder`` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(char_vocab(), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def tiny_unet_config(sample_size: int = 32) -> dict[str, Any]:
    """Keyword arguments of the tiny ``UNet2DConditionModel`` (one cross-attention level, one plain)."""
    return dict(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def tiny_vae_config(latent_factor: int = 2) -> dict[str, Any]:
    """Keyword arguments of the tiny ``AutoencoderKL``: ``log2(latent_factor) + 1`` levels of widths
    32, 64, 64, ... (each level after the first halves the resolution)."""
    levels = latent_factor.bit_length()
    if latent_factor < 2 or latent_factor != 1 << (levels - 1):
        raise ValueError(f"tiny VAE: latent_factor must be a power of two >= 2, got {latent_factor}")
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(32,) + (64,) * (levels - 1),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )


def build_tiny_components(tokenizer_dir: str | Path, seed: int = 0, latent_factor: int = 2) -> dict[str, Any]:
    """Build ``dict(unet, vae, text_encoder, tokenizer, scheduler)`` with random weights.

    ``tokenizer_dir`` receives the tokenizer files (see :func:`write_char_tokenizer`); ``seed``
    fixes every random initialisation, so two calls give bitwise-equal models. The scheduler is
    SD's PLMS (``PNDMScheduler(skip_prk_steps=True)``, scaled_linear 0.00085-0.012, 1000 steps).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(write_char_tokenizer(tokenizer_dir)), model_max_length=MAX_LENGTH)
    vocab = tokenizer.get_vocab()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**tiny_unet_config(sample_size=64 // latent_factor))
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**tiny_vae_config(latent_factor))
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        projection_dim=32,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
    ))
    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    for module in (unet, vae, text_encoder):
        module.eval()
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def save_tiny_base(components: dict[str, Any], folder: str | Path) -> Path:
    """Write ``components`` (as returned by :func:`build_tiny_components`, possibly trained) as a
    diffusers Stable Diffusion folder and return its path."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    pipe = StableDiffusionPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=components["unet"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
