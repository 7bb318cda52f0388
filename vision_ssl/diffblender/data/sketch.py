"""The sketch condition: an edge map made by our own detector (the official extractor is not
published, reference diffblender.md section 2): Gaussian blur, Sobel gradient magnitude,
non-maximum suppression along the gradient direction (one-pixel-wide strokes), then a threshold
relative to the image's strongest edge. Strokes are bright (1) on a dark (0) background, 3
channels, like the official inverted sketches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
# neighbour offsets (dy, dx) along the gradient for the 4 quantised directions 0, 45, 90, 135 degrees
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with reflect padding (identity for sigma <= 0)."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    c = image.shape[1]
    out = F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                   groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def sobel(gray: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal and vertical Sobel derivatives of ``[B, 1, H, W]`` (replicate padding)."""
    kx = _SOBEL_X.to(gray).view(1, 1, 3, 3)
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))


def non_max_suppression(magnitude: Tensor, gx: Tensor, gy: Tensor) -> Tensor:
    """Keep pixels whose magnitude is a maximum along their (quantised) gradient direction; ties
    keep the pixel before its neighbour (``>=`` one side, ``>`` the other), so a step edge whose
    magnitude straddles two pixels gives a single-pixel stroke."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    sector = torch.round(angle / 45.0).long() % 4
    padded = F.pad(magnitude, (1, 1, 1, 1))
    h, w = magnitude.shape[-2:]
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for index, (dy, dx) in enumerate(_DIRECTIONS):
        ahead = padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        behind = padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]
        keep |= (sector == index) & (magnitude >= ahead) & (magnitude > behind)
    return magnitude * keep


def extract_sketch(image: Tensor, sigma: float = 1.0, threshold: float = 0.2) -> Tensor:
    """Edge map of ``image`` (``[3, H, W]`` or ``[B, 3, H, W]``, values in [0, 1]).

    Returns binary strokes (1 on 0) of the same shape, replicated over 3 channels. An edge is kept
    when its suppressed gradient magnitude is at least ``threshold`` times the image's largest
    magnitude; a flat image gives an all-zero map.
    """
    single = image.dim() == 3
    batch = image.unsqueeze(0) if single else image
    gray = (batch.float() * torch.tensor([0.299, 0.587, 0.114], device=batch.device).view(1, 3, 1, 1)).sum(1, True)
    gx, gy = sobel(gaussian_blur(gray, sigma))
    # rounding makes mirror-symmetric edges tie exactly, so the tie rule (not float noise) decides
    magnitude = torch.round(torch.hypot(gx, gy) * 1e4) / 1e4
    thin = non_max_suppression(magnitude, gx, gy)
    peak = thin.amax(dim=(1, 2, 3), keepdim=True)
    strokes = ((thin >= threshold * peak) & (peak > 1e-6)).float().expand(-1, 3, -1, -1).contiguous()
    return strokes[0] if single else strokes
