"""Scores of sample folders written by :func:`vision_ssl.diffblender.sampling.sample`.

Metrics (reference diffblender.md section 4):

* ``fid``: Frechet distance between the generated and the data's own images through torchmetrics.
  ``fid_features="inception"`` is the published protocol (InceptionV3 pool features through
  ``torch-fidelity``, with a local FID Inception weights file: ``fid_inception_weights``, else
  ``$COMPACT_SSL_FID_INCEPTION`` or torch hub's cache, see
  :func:`vision_ssl.diffblender.metrics.fid_weights_path`); ``"random"`` uses a fixed random
  convolutional network, a proxy comparable only within one setting (the default of the mini
  recipe, which is offline).
* ``clip_score``: text-image CLIP score with a local ``CLIPModel`` folder (``clip_model``).
* ``box_iou`` / ``box_iou@0.5`` (synthetic shapes): IoU between each requested box and the drawn
  shape of its colour, mean and fraction above 0.5; ``color_match``: the image's dominant shape
  colour equals the first phrase's colour.
* ``ap50`` / ``detector_mean_iou`` (COCO, the paper's YOLO score): run any detector over
  ``<folder>/images`` and pass its boxes as ``detections`` (format in
  :mod:`vision_ssl.diffblender.metrics`); scored against the requested boxes of the manifest.

Trivial baselines of the table: the ``none`` condition set (text only, no box / sketch /
palette) is the unconditioned baseline of every conditioned row, and ``chance`` (synthetic
shapes) is what a generator that ignores the requested boxes would score,
:func:`chance_box_scores`: the IoU of each requested box with the requested boxes of the other
images (a box independent of the request but drawn from the same layout distribution), its
mean and fraction above 0.5, and the colour match of a uniform guess (1 / number of colours).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from compact_ssl.io import atomic_write_text, write_json
from vision_ssl.diffblender.data.shapes import SHAPE_COLORS
from vision_ssl.diffblender.metrics import (
    RandomConvFeatures,
    color_match_rate,
    compute_clip_score,
    compute_fid,
    detection_alignment,
    fid_weights_path,
    load_detections,
    shapes_box_iou,
)

FID_FEATURES = ("inception", "random")
TABLE_COLUMNS = ("fid", "clip_score", "box_iou", "box_iou@0.5", "color_match", "ap50", "detector_mean_iou")


def _load_images(folder: Path, paths: list[str]) -> torch.Tensor:
    arrays = []
    for rel in paths:
        path = folder / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image listed in {folder / 'manifest.json'} is missing; re-run sampling")
        arrays.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def chance_box_scores(boxes: list[list[list[float]]]) -> dict[str, float]:
    """Chance level of the box metrics: ``box_iou`` (mean IoU over every pair of a requested box and
    a requested box of another image), ``box_iou@0.5`` (fraction of those pairs at IoU >= 0.5) and
    ``color_match`` (1 / number of colours). ``boxes[i]``: normalised xyxy boxes of image i."""
    flat = torch.tensor([list(map(float, b)) for image_boxes in boxes for b in image_boxes]).reshape(-1, 4)
    image = torch.tensor([i for i, image_boxes in enumerate(boxes) for _ in image_boxes])
    other = image[:, None] != image[None, :]
    if not other.any():
        raise ValueError("chance_box_scores needs requested boxes in at least two images")
    ious = box_iou(flat, flat)[other]
    return {"box_iou": float(ious.mean()), "box_iou@0.5": float((ious >= 0.5).float().mean()),
            "color_match": 1.0 / len(SHAPE_COLORS)}


def evaluate(samples: str | Path, fid_features: str = "random", clip_model: str | None = None,
             detections: str | None = None, fid_inception_weights: str | Path | None = None) -> dict:
    """Metrics of one sample folder (see the module docstring)."""
    folder = Path(samples)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: not found; run 'python -m vision_ssl.bin.diffblender sample' first")
    manifest = json.loads(manifest_path.read_text())
    records = manifest["samples"]
    fake = _load_images(folder, [r["image"] for r in records])
    real = _load_images(folder, [r["real"] for r in records])
    if fid_features not in FID_FEATURES:
        raise ValueError(f"fid_features must be one of {FID_FEATURES}, got {fid_features!r}")
    extractor = RandomConvFeatures() if fid_features == "random" else None
    metrics: dict = {"modalities": manifest["modalities"], "num_images": len(records), "fid_features": fid_features,
                     "fid": compute_fid(real, fake, extractor, inception_weights=fid_inception_weights)}
    if fid_features == "inception":
        metrics["fid_inception_weights"] = str(fid_weights_path(fid_inception_weights))
    if clip_model:
        metrics["clip_score"] = compute_clip_score(fake, [r["caption"] for r in records], clip_model)
    with_boxes = [r for r in records if r["boxes"]]
    if manifest["dataset"] == "shapes" and with_boxes:
        images = fake[[i for i, r in enumerate(records) if r["boxes"]]]
        ious = np.asarray(shapes_box_iou(images, [r["boxes"] for r in with_boxes], [r["phrases"] for r in with_boxes]))
        metrics.update({"box_iou": float(ious.mean()), "box_iou@0.5": float((ious >= 0.5).mean()),
                        "num_boxes": int(ious.size),
                        "color_match": color_match_rate(images, [r["phrases"][0].split()[0] for r in with_boxes])})
        if len(with_boxes) > 1:
            metrics["chance"] = chance_box_scores([r["boxes"] for r in with_boxes])
    if detections:
        requested = {r["key"]: (r["boxes"], r["phrases"]) for r in with_boxes}
        found = detection_alignment(load_detections(detections), requested)
        metrics.update({"ap50": found["ap50"], "detector_mean_iou": found["mean_iou"]})
    return metrics


def to_markdown(rows: dict[str, dict]) -> str:
    """One row per condition set with the metrics any of them has (``-`` where absent), then the
    chance row of the box metrics (from the first set that has one) and, with a ``none`` set, a
    note that it is the unconditioned baseline."""
    columns = [c for c in TABLE_COLUMNS if any(c in m for m in rows.values())]
    lines = ["| conditions | images | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, m in rows.items():
        cells = [f"{m[c]:.4f}" if c in m else "-" for c in columns]
        lines.append(f"| {name} | {m['num_images']} | " + " | ".join(cells) + " |")
    chance = next((m["chance"] for m in rows.values() if "chance" in m), None)
    if chance:
        cells = [f"{chance[c]:.4f}" if c in chance else "-" for c in columns]
        lines.append("| chance (box of another image; 1/colours) | - | " + " | ".join(cells) + " |")
    if "none" in rows:
        lines += ["", "`none` (text only, no conditions) is the unconditioned baseline of the conditioned rows."]
    return "\n".join(lines) + "\n"


def evaluate_folders(folders: list[str | Path], fid_features: str = "random", clip_model: str | None = None,
                     detections: str | None = None, table: str | Path | None = None,
                     fid_inception_weights: str | Path | None = None) -> dict[str, dict]:
    """Score each folder into its ``metrics.json`` (``detections`` belong to the first folder); with
    ``table``, write the Markdown table there and ``results.json`` beside it. Returns
    ``{folder name: metrics}``. A missing Inception weights file is reported before any folder is scored."""
    if fid_features == "inception":
        fid_inception_weights = fid_weights_path(fid_inception_weights)
    rows = {}
    for i, folder in enumerate(folders):
        metrics = evaluate(folder, fid_features, clip_model, detections if i == 0 else None, fid_inception_weights)
        write_json(Path(folder) / "metrics.json", metrics)
        rows[Path(folder).name] = metrics
        print(f"{folder}: {json.dumps(metrics)}")
    if table:
        atomic_write_text(table, to_markdown(rows))
        write_json(Path(table).with_name("results.json"), rows)
    return rows
