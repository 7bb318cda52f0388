"""Image geometry shared by the readers: the square centre crop every image and condition map goes
through, and the mapping of annotation coordinates into it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def square_box(width: int, height: int) -> tuple[int, int, int]:
    """``(left, top, side)`` of the centred square crop of a ``width`` x ``height`` image."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def center_square(image: Image.Image) -> Image.Image:
    """The centred square crop of ``image`` (its side is the shorter image side)."""
    left, top, side = square_box(*image.size)
    return image.crop((left, top, left + side, top + side))


def to_tensor(image: Image.Image, resolution: int) -> Tensor:
    """``image`` resized (bicubic) to ``resolution`` x ``resolution`` as a float ``[C, H, W]`` in [0, 1]
    (8-bit modes are divided by 255; float ``"F"`` images are taken as already in [0, 1])."""
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    scale = 1.0 if image.mode == "F" else 255.0
    return torch.from_numpy(array / scale).permute(2, 0, 1).clamp(0.0, 1.0).contiguous()
