"""The depth condition, read from maps produced by an external monocular depth estimator.

Layout: ``<depth_dir>/<image stem>.png``, one single-channel (8- or 16-bit) or RGB PNG per image,
at the image's own size (it goes through the same centre crop), brighter = nearer (MiDaS / DPT
convention; the map is used as is, never inverted). The map becomes a 3-channel ``[3, H, W]``
image in [0, 1]. Any estimator works; e.g. run DPT / MiDaS over the image folder and save each
normalised prediction as ``<stem>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from vision_ssl.diffblender.data.imageops import center_square, to_tensor


class MissingDepthError(FileNotFoundError):
    """A depth map expected at ``<depth_dir>/<stem>.png`` does not exist."""


def depth_path(depth_dir: str | Path, image_file: str | Path) -> Path:
    """Where the depth map of ``image_file`` lives."""
    return Path(depth_dir) / f"{Path(image_file).stem}.png"


def load_depth(depth_dir: str | Path, image_file: str | Path, resolution: int) -> Tensor:
    """The depth map of ``image_file`` as ``[3, resolution, resolution]`` in [0, 1].

    A missing file raises :class:`MissingDepthError` naming it; an unreadable one an ``OSError``.
    """
    path = depth_path(depth_dir, image_file)
    if not path.is_file():
        raise MissingDepthError(
            f"{path}: depth map of {Path(image_file).name} not found; run a depth estimator over the images and save "
            "<stem>.png files there, or set data.depth_optional: true to train with the depth mask at 0")
    try:
        with Image.open(path) as img:
            array = np.asarray(img)
    except OSError as err:
        raise OSError(f"{path}: cannot read depth map ({err}); delete or regenerate the file") from err
    if array.ndim == 3:
        array = array[..., :3].mean(-1)
    # 16-bit PNGs decode as uint16 / int32; 8-bit ones as uint8
    scale = 255.0 if array.dtype == np.uint8 else 65535.0
    single = Image.fromarray((array.astype(np.float32) / scale).clip(0.0, 1.0))  # float32 -> mode "F"
    return to_tensor(center_square(single), resolution).expand(3, -1, -1).contiguous()
