"""Image-form (structure) encoder: a T2I-Adapter-like CNN over the frozen VAE latent.

The input is the VAE latent of the condition image (sketch, depth: [0, 1] RGB, encoded by the
frozen VAE, scaled by 0.18215; see :meth:`DiffBlenderAdapter.prepare`). The output is one feature
map per UNet down block, with that block's channels and resolution, each from a zero-initialised
bias-free 1x1 conv so that the encoder adds exactly nothing at initialisation. As in the official
encoder, a level's output conv sits on the main path: its result is both that level's feature map
and the input of the next level (so at initialisation the later levels see zeros).

Module names follow the official layout (``in_layers``, ``body.<i>``, ``out_convs.<l>``) so that
released weights load one-to-one; the only built configuration is the one that runs there
(identity skip, kernel-1 second conv; reference section 1.2).
"""

from __future__ import annotations

import torch
from torch import nn

from vision_ssl.diffblender.encoders import ConditionEncoder, register_encoder


class _Downsample(nn.Module):
    """Halve the resolution with a strided 3x3 conv or a 2x2 average pool."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """[downsample] -> [1x1 channel change] -> GroupNorm -> x + conv1x1(SiLU(conv3x3(x)))."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, use_conv: bool) -> None:
        super().__init__()
        self.down_opt = _Downsample(in_channels, use_conv) if down else None
        self.in_conv = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.norm = nn.GroupNorm(min(32, out_channels), out_channels)
        self.body = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        x = self.norm(x)
        return x + self.body(x)


@register_encoder("image", "latent_adapter")
class LatentAdapter(ConditionEncoder):
    """VAE latent (B x latent_channels x h x w) -> one feature map per level of ``image_channels``,
    level ``l`` at resolution h / 2^l."""

    def __init__(self, spec, config) -> None:
        super().__init__()
        channels = list(config.image_channels)
        self.channels, self.nums_rb = channels, config.nums_rb
        self.in_layers = nn.Sequential(
            nn.InstanceNorm2d(config.latent_channels, affine=True),
            nn.Conv2d(config.latent_channels, channels[0], 3, padding=1),
        )
        blocks = []
        for level, ch in enumerate(channels):
            for j in range(config.nums_rb):
                first = level > 0 and j == 0
                blocks.append(ResBlock(channels[level - 1] if first else ch, ch, down=first, use_conv=config.use_conv))
        self.body = nn.ModuleList(blocks)
        self.out_convs = nn.ModuleList(nn.Conv2d(ch, ch, 1, bias=False) for ch in channels)
        for conv in self.out_convs:
            nn.init.zeros_(conv.weight)

    def null_condition(self, batch_size, device, dtype):
        """Absent image: mask 0 (the adapter turns it into a black image or a skip)."""
        return {"mask": torch.zeros(batch_size, device=device, dtype=dtype)}

    def forward(self, latent: torch.Tensor) -> list[torch.Tensor]:
        x = self.in_layers(latent)
        features = []
        for level, out_conv in enumerate(self.out_convs):
            for block in self.body[level * self.nums_rb:(level + 1) * self.nums_rb]:
                x = block(x)
            x = out_conv(x)
            features.append(x)
        return features
