"""Batching of DiffBlender samples into the raw-condition batch the adapter consumes::

    {"keys": list[str], "pixel_values": [B, 3, H, W] in [-1, 1], "captions": list[str],
     "conditions": {
       "sketch":   {"image": [B, 3, H, W] in [0, 1], "mask": [B]},
       "depth":    {"image": [B, 3, H, W] in [0, 1], "mask": [B]},
       "box":      {"boxes": [B, max_boxes, 4] normalised xyxy, "phrases": list[list[str]], "mask": [B, max_boxes]},
       "keypoint": {"points": [B, max_persons, 17, 2] normalised xy, "mask": [B, max_persons, 17]},
       "color":    {"vector": [B, 180], "mask": [B]},
       "style":    {"vector": [B, S], "mask": [B]}}}

A modality is in the batch when at least one sample has it; samples without it get zeros and
mask 0 (masked box slots and keypoints are zero as well). Masks are float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vision_ssl.diffblender.data.base import NUM_KEYPOINTS


def _first(samples: list[dict], modality: str, key: str) -> Tensor:
    return next(s["conditions"][modality][key] for s in samples if modality in s["conditions"])


def collate_conditions(samples: list[dict], max_boxes: int = 30, max_persons: int = 8) -> dict[str, Any]:
    """Stack samples (see :class:`vision_ssl.diffblender.data.base.ConditionDataset`) into a batch,
    padding boxes to ``max_boxes`` slots and persons to ``max_persons``."""
    b = len(samples)
    conds = [s["conditions"] for s in samples]
    present = {m for c in conds for m in c}
    batch: dict[str, Any] = {"keys": [s["key"] for s in samples],
                             "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
                             "captions": [s["caption"] for s in samples], "conditions": {}}
    out = batch["conditions"]
    for modality in ("sketch", "depth"):
        if modality in present:
            blank = torch.zeros_like(_first(samples, modality, "image"))
            out[modality] = {
                "image": torch.stack([c[modality]["image"] if modality in c else blank for c in conds]),
                "mask": torch.tensor([float(c[modality].get("mask", 1.0)) if modality in c else 0.0 for c in conds])}
    for modality in ("color", "style"):
        if modality in present:
            blank = torch.zeros_like(_first(samples, modality, "vector"))
            out[modality] = {"vector": torch.stack([c[modality]["vector"] if modality in c else blank for c in conds]),
                             "mask": torch.tensor([1.0 if modality in c else 0.0 for c in conds])}
    if "box" in present:
        boxes, mask = torch.zeros(b, max_boxes, 4), torch.zeros(b, max_boxes)
        phrases = []
        for i, c in enumerate(conds):
            box = c.get("box", {"boxes": torch.zeros(0, 4), "phrases": []})
            n = min(len(box["phrases"]), max_boxes)
            boxes[i, :n], mask[i, :n] = box["boxes"][:n], 1.0
            phrases.append(list(box["phrases"][:n]))
        out["box"] = {"boxes": boxes, "phrases": phrases, "mask": mask}
    if "keypoint" in present:
        points, mask = torch.zeros(b, max_persons, NUM_KEYPOINTS, 2), torch.zeros(b, max_persons, NUM_KEYPOINTS)
        for i, c in enumerate(conds):
            if "keypoint" in c:
                n = min(len(c["keypoint"]["points"]), max_persons)
                mask[i, :n] = c["keypoint"]["mask"][:n]
                points[i, :n] = c["keypoint"]["points"][:n] * mask[i, :n].unsqueeze(-1)
        out["keypoint"] = {"points": points, "mask": mask}
    return batch
