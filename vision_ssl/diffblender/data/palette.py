"""The colour-palette condition: a 180-bin smoothed colour histogram in CIE Lab (reference
diffblender.md section 1.1), computed by our own sRGB -> Lab conversion (D65 white).

Palette (our construction of "11 hues x 15 saturation/lightness rows + greys = 180"): 11 hues
evenly spaced on the HSV hue circle, each at 15 (saturation, value) pairs = 3 saturations
(0.35, 0.65, 1.0) x 5 values (0.2, 0.4, 0.6, 0.8, 1.0), then 15 greys evenly spaced from black to
white. Each pixel of the (downsampled) image gives a Gaussian soft assignment over the palette
(weights ``exp(-d^2 / 2 sigma^2)`` of the Lab distance ``d``, normalised per pixel); the histogram
is their mean over pixels, with bins below ``min_weight`` set to 0. The values therefore sum to
at most 1 (exactly 1 minus the dropped mass), like the official example palettes (sum about 0.93).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image
from torch import Tensor

NUM_HUES = 11
SATURATIONS = (0.35, 0.65, 1.0)
VALUES = (0.2, 0.4, 0.6, 0.8, 1.0)
NUM_GREYS = 15
PALETTE_SIZE = NUM_HUES * len(SATURATIONS) * len(VALUES) + NUM_GREYS  # 180
SIGMA = 10.0  #: Gaussian smoothing width in Lab units
MAX_SIDE = 241  #: images are downsampled so that their longer side is at most this

# sRGB (linear) -> XYZ under D65, and the D65 reference white
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = (6.0 / 29.0) ** 3


def srgb_to_lab(rgb: Tensor) -> Tensor:
    """CIE Lab (D65) of sRGB colours in [0, 1]; ``rgb`` is ``[..., 3]``, the result ``[..., 3]``
    (L in [0, 100]). White gives (100, 0, 0); pure red (53.24, 80.09, 67.20)."""
    rgb = rgb.to(torch.float64).clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE
    f = torch.where(xyz > _EPS, xyz.clamp_min(_EPS) ** (1.0 / 3.0), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


def palette_rgb() -> Tensor:
    """The 180 palette colours as sRGB in [0, 1], ``[180, 3]`` (hue-major, then saturation,
    then value; the 15 greys last)."""
    colours = [colorsys.hsv_to_rgb(h / NUM_HUES, s, v) for h in range(NUM_HUES) for s in SATURATIONS for v in VALUES]
    colours += [(g, g, g) for g in np.linspace(0.0, 1.0, NUM_GREYS)]
    return torch.tensor(colours, dtype=torch.float64)


_PALETTE_LAB = srgb_to_lab(palette_rgb())


def _pixels(image: Image.Image | Tensor | np.ndarray) -> Tensor:
    """``[N, 3]`` sRGB pixels in [0, 1] of an image downsampled to at most ``MAX_SIDE`` pixels a side.

    Accepts a PIL image, a uint8 ``[H, W, 3]`` array or a float ``[3, H, W]`` tensor in [0, 1].
    """
    if isinstance(image, Tensor):
        image = Image.fromarray((image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round()
                                .astype(np.uint8))
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255.0)


def color_histogram(image: Image.Image | Tensor | np.ndarray, sigma: float = SIGMA, min_weight: float = 0.01,
                    chunk: int = 16384) -> Tensor:
    """The 180-bin palette histogram of ``image`` (float32, values in [0, 1], sum <= 1).

    ``sigma`` is the Gaussian width in Lab units; bins whose mass is below ``min_weight`` are
    zeroed (0 keeps the full distribution, which then sums to exactly 1).
    """
    lab = srgb_to_lab(_pixels(image))
    hist = torch.zeros(PALETTE_SIZE, dtype=torch.float64)
    for start in range(0, len(lab), chunk):
        d2 = torch.cdist(lab[start:start + chunk], _PALETTE_LAB).square()
        # softmax == per-pixel normalised Gaussian weights, without underflow for far colours
        hist += torch.softmax(-d2 / (2.0 * sigma ** 2), dim=1).sum(0)
    hist /= max(len(lab), 1)
    hist[hist < min_weight] = 0.0
    return hist.float()
