"""Condition grids: one row per sample with each of its conditions drawn beside the caption's
result (sketch, depth, boxes with their phrases, keypoint skeletons, palette swatch, style
reference thumbnail, then the generated or real image), as one PIL image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from vision_ssl.diffblender.data.palette import palette_rgb

#: COCO person skeleton as pairs of 0-based keypoint indices (nose, eyes, ears, shoulders, ...)
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
            (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
_BOX_COLORS = ((255, 80, 80), (80, 220, 80), (90, 140, 255), (255, 220, 60), (240, 120, 240), (80, 230, 230))
_PALETTE = (palette_rgb().numpy() * 255).round().astype(np.uint8)


def to_pil(image: Tensor, size: int) -> Image.Image:
    """A ``[3, H, W]`` image in [0, 1] as a ``size`` x ``size`` PIL image."""
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


def draw_boxes(boxes: Tensor, mask: Tensor, phrases: Sequence[str], size: int,
               background: Image.Image | None = None) -> Image.Image:
    """Boxes (normalised xyxy) with their phrases, over ``background`` (default black)."""
    canvas = background.copy() if background is not None else Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(canvas)
    for j, (box, on) in enumerate(zip(boxes.tolist(), mask.tolist())):
        if not on:
            continue
        color = _BOX_COLORS[j % len(_BOX_COLORS)]
        x0, y0, x1, y1 = (v * size for v in box)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=color, width=2)
        if j < len(phrases):
            draw.text((x0 + 3, y0 + 2), phrases[j], fill=color)
    return canvas


def draw_keypoints(points: Tensor, mask: Tensor, size: int) -> Image.Image:
    """Skeletons of ``[P, 17, 2]`` normalised keypoints (masked ones skipped) on black."""
    canvas = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(canvas)
    for p, (person, on) in enumerate(zip(points.tolist(), mask.tolist())):
        color = _BOX_COLORS[p % len(_BOX_COLORS)]
        for a, b in SKELETON:
            if on[a] and on[b]:
                draw.line([tuple(v * size for v in person[a]), tuple(v * size for v in person[b])], fill=color, width=2)
        for (x, y), visible in zip(person, on):
            if visible:
                draw.ellipse((x * size - 2, y * size - 2, x * size + 2, y * size + 2), fill=(255, 255, 255))
    return canvas


def palette_swatch(vector: Tensor, size: int) -> Image.Image:
    """Vertical stripes of the palette colours, widths proportional to their histogram mass
    (largest first); the mass dropped by the histogram stays black on the right."""
    canvas = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(canvas)
    weights = vector.detach().float().cpu()
    x = 0.0
    for index in torch.argsort(weights, descending=True).tolist():
        if weights[index] <= 0:
            break
        width = float(weights[index]) * size
        draw.rectangle((round(x), 0, max(round(x), round(x + width) - 1), size - 1), fill=tuple(_PALETTE[index]))
        x += width
    return canvas


def condition_grid(batch: dict, results: Tensor | Sequence[Image.Image] | None = None,
                   style_images: Sequence[Image.Image] | None = None, size: int = 128,
                   max_rows: int = 8) -> Image.Image:
    """Grid of the first ``max_rows`` samples of a raw-condition batch: one column per present
    modality (style only when ``style_images``, the reference images, are given), then the
    ``results`` ([0, 1] tensors or PIL images; default: the batch's own images). Boxes are drawn
    over the result; the caption is written under each row."""
    conds = batch["conditions"]
    if results is None:
        results = (batch["pixel_values"] + 1) / 2
    rows = min(len(batch["captions"]), max_rows)
    tiles: list[list[Image.Image]] = []
    for i in range(rows):
        result = results[i].convert("RGB").resize((size, size)) if isinstance(results[i], Image.Image) \
            else to_pil(results[i], size)
        row = [to_pil(conds[m]["image"][i], size) for m in ("sketch", "depth") if m in conds]
        if "box" in conds:
            box = conds["box"]
            row.append(draw_boxes(box["boxes"][i], box["mask"][i], box.get("phrases", [[]] * rows)[i], size, result))
        if "keypoint" in conds:
            row.append(draw_keypoints(conds["keypoint"]["points"][i], conds["keypoint"]["mask"][i], size))
        if "color" in conds:
            row.append(palette_swatch(conds["color"]["vector"][i], size))
        if style_images is not None:
            row.append(style_images[i].convert("RGB").resize((size, size)))
        tiles.append(row + [result])
    caption_height = 14
    columns = max(len(r) for r in tiles)
    grid = Image.new("RGB", (columns * size, rows * (size + caption_height)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, row in enumerate(tiles):
        top = i * (size + caption_height)
        for j, tile in enumerate(row):
            grid.paste(tile, (j * size, top))
        draw.text((2, top + size + 1), batch["captions"][i], fill=(0, 0, 0))
    return grid
