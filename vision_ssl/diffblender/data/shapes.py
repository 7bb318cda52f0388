"""Synthetic shapes made on the fly, for the mini recipe and the tiny base model: 1..n
non-overlapping coloured rectangles and ellipses on a black background, with their boxes, phrases
("red ellipse"), a caption ("a red ellipse and a blue rectangle"), a layered depth map (later
shapes nearer) and, through :class:`ConditionDataset`, sketches and palettes.

Image ``i`` of a split depends only on ``(seed, split, i)`` and the resolution, so every worker and
every run draws the same set. Colours within one image are distinct, so a phrase's colour
identifies its shape (the box-alignment metric relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from vision_ssl.diffblender.data.base import ConditionDataset, Record
from vision_ssl.diffblender.data.config import DataConfig

SHAPE_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 50),
}
SHAPE_KINDS = ("rectangle", "ellipse")
BACKGROUND = (0, 0, 0)
MIN_SIDE, MAX_SIDE = 0.3, 0.5  #: shape sides as fractions of the image side
_PLACEMENT_TRIES = 20
_GENERATOR_VERSION = 1
_SPLIT_STREAM = {"train": 0, "val": 1}


@dataclass(frozen=True)
class Shape:
    """One drawn shape: colour name, kind and pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive)."""

    color: str
    kind: str
    box: tuple[int, int, int, int]

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.kind}"


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def sample_layout(rng: np.random.Generator, size: int, min_shapes: int = 1, max_shapes: int = 2) -> list[Shape]:
    """Random non-overlapping shapes with distinct colours on a ``size`` x ``size`` canvas (a shape
    that finds no free place in a few tries is left out; the first always fits)."""
    count = int(rng.integers(min_shapes, max_shapes + 1))
    colors = rng.permutation(list(SHAPE_COLORS))[:count]
    shapes: list[Shape] = []
    lo, hi = max(2, round(MIN_SIDE * size)), max(3, round(MAX_SIDE * size))
    for color in colors:
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        for _ in range(_PLACEMENT_TRIES):
            w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if not any(_overlaps(box, s.box) for s in shapes):
                shapes.append(Shape(str(color), kind, box))
                break
    return shapes


def draw_shapes(shapes: list[Shape], size: int) -> tuple[Image.Image, np.ndarray]:
    """The RGB drawing and its label map (0 background, k for the k-th shape)."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    labels = Image.new("L", (size, size), 0)
    for k, shape in enumerate(shapes, start=1):
        x0, y0, x1, y1 = shape.box
        for canvas, fill in ((image, SHAPE_COLORS[shape.color]), (labels, k)):
            draw = ImageDraw.Draw(canvas)
            (draw.rectangle if shape.kind == "rectangle" else draw.ellipse)((x0, y0, x1 - 1, y1 - 1), fill=fill)
    return image, np.asarray(labels)


def caption_for(shapes: list[Shape]) -> str:
    """``"a red ellipse"``, ``"a red ellipse and a blue rectangle"``, ``"a ..., a ... and a ..."``."""
    parts = [f"a {s.phrase}" for s in shapes]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class ShapesDataset(ConditionDataset):
    """``config.shapes_count`` (train) or ``config.shapes_val_count`` (val) synthetic images at
    ``config.resolution``; no keypoints (that modality is always empty here)."""

    def __init__(self, config: DataConfig, split: str = "train") -> None:
        super().__init__(config)
        if split not in _SPLIT_STREAM:
            raise ValueError(f"shapes split must be one of {list(_SPLIT_STREAM)}, got {split!r}")
        self.split = split
        self.count = config.shapes_count if split == "train" else config.shapes_val_count

    def __len__(self) -> int:
        return self.count

    @property
    def name(self) -> str:
        return f"shapes_{self.split}"

    def source_params(self) -> dict:
        c = self.config
        return {"dataset": "shapes", "version": _GENERATOR_VERSION, "split": self.split, "count": self.count,
                "seed": c.shapes_seed, "resolution": c.resolution, "shapes": [c.shapes_min, c.shapes_max]}

    def layout(self, index: int) -> list[Shape]:
        """The shapes of item ``index``."""
        if not 0 <= index < self.count:
            raise IndexError(f"shapes {self.split}: index {index} out of range 0..{self.count - 1}")
        rng = np.random.default_rng([self.config.shapes_seed, _SPLIT_STREAM[self.split], index])
        return sample_layout(rng, self.config.resolution, self.config.shapes_min, self.config.shapes_max)

    def record(self, index: int) -> Record:
        size = self.config.resolution
        shapes = self.layout(index)
        image, labels = draw_shapes(shapes, size)
        depth = None
        if "depth" in self.modalities:
            # layered scene: background 0, shape k of n at 0.4 + 0.6 k / n (the last drawn is nearest)
            levels = np.concatenate([[0.0], 0.4 + 0.6 * np.arange(1, len(shapes) + 1) / len(shapes)])
            depth = torch.from_numpy(levels[labels].astype(np.float32)).expand(3, -1, -1).contiguous()
        return Record(key=f"{self.split}{index:06d}", image=image, caption=caption_for(shapes),
                      boxes=[[v / size for v in s.box] for s in shapes], phrases=[s.phrase for s in shapes],
                      depth=depth)
