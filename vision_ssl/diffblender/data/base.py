"""What the DiffBlender datasets share: a reader yields :class:`Record` s (a square image, a
caption, boxes, keypoints, depth), and :class:`ConditionDataset` turns them into training samples
with the requested raw conditions, taking palettes and style embeddings from the prepared-condition
cache when there is one.

One sample (``collate_conditions`` batches them)::

    {"key": str, "pixel_values": [3, H, W] in [-1, 1], "caption": str,
     "conditions": {"sketch": {"image": [3, H, W]}, "depth": {"image": [3, H, W], "mask": 0. or 1.},
                    "box": {"boxes": [n, 4], "phrases": [n]}, "keypoint": {"points": [P, 17, 2], "mask": [P, 17]},
                    "color": {"vector": [180]}, "style": {"vector": [S]}}}
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from vision_ssl.diffblender.data.cache import ConditionCache
from vision_ssl.diffblender.data.config import DataConfig
from vision_ssl.diffblender.data.imageops import to_tensor
from vision_ssl.diffblender.data.palette import MAX_SIDE, SIGMA, color_histogram
from vision_ssl.diffblender.data.sketch import extract_sketch
from vision_ssl.diffblender.data.style import StyleEncoder

NUM_KEYPOINTS = 17
#: bump when the palette construction changes, so that cached palettes are rebuilt
PALETTE_VERSION = 1


@dataclass
class Record:
    """One image and its annotations, before condition extraction."""

    key: str  #: stable id (COCO image id, shapes index)
    image: Image.Image  #: square RGB image, any size (resized to the resolution later)
    caption: str
    boxes: list[list[float]] = field(default_factory=list)  #: normalised xyxy, at most max_boxes
    phrases: list[str] = field(default_factory=list)  #: one per box
    keypoints: np.ndarray | None = None  #: [P, 17, 3]: normalised x, y and visibility (0/1)
    depth: Tensor | None = None  #: [3, H, W] in [0, 1] at the resolution; None: absent (mask 0)


class ConditionDataset(Dataset, abc.ABC):
    """Samples with the raw conditions of ``config.modalities`` (see the module docstring)."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.modalities = tuple(config.modalities)
        self.vectors: dict[str, Tensor] = {}  #: cached "color" / "style" vectors, row i = item i
        self._style_encoder = None

    # ---- what a reader provides ----------------------------------------------------------
    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abc.abstractmethod
    def record(self, index: int) -> Record:
        """Item ``index`` before condition extraction."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Cache-entry prefix of this dataset and split, e.g. ``coco_train2017``."""

    @abc.abstractmethod
    def source_params(self) -> dict:
        """What identifies the items (files and their sizes, generator settings) for the cache."""

    # ---- conditions ----------------------------------------------------------------------
    def vector_params(self, modality: str) -> dict:
        """Cache parameters of the ``color`` or ``style`` vectors."""
        if modality == "color":
            extra = {"palette_version": PALETTE_VERSION, "sigma": SIGMA, "max_side": MAX_SIDE,
                     "min_weight": self.config.palette_min_weight}
        else:
            extra = {"style_model": str(self.config.style_model)}
        return {**self.source_params(), modality: extra}

    def compute_vectors(self, modality: str, images: list[Image.Image]) -> Tensor:
        """``[len(images), D]`` colour histograms or style embeddings of square images."""
        if modality == "color":
            return torch.stack([color_histogram(img, min_weight=self.config.palette_min_weight) for img in images])
        if self._style_encoder is None:
            self._style_encoder = StyleEncoder(self.config.style_model)
        return self._style_encoder(images)

    def attach_cache(self, cache: ConditionCache, build: bool = False, batch_size: int = 32) -> dict[str, str]:
        """Use the cached colour / style vectors of this dataset; with ``build``, compute and store
        the missing or stale ones first (with a progress bar). Returns ``{modality: status}``."""
        status = {}
        for modality in ("color", "style"):
            if modality not in self.modalities:
                continue
            name, params = f"{self.name}_{modality}", self.vector_params(modality)
            vectors = cache.load(name, params)
            status[modality] = "cached"
            if vectors is None and build:
                rows = []
                for start in tqdm(range(0, len(self), batch_size), desc=f"{self.name}: {modality}", unit="batch"):
                    stop = min(start + batch_size, len(self))
                    rows.append(self.compute_vectors(modality, [self.record(i).image for i in range(start, stop)]))
                vectors = torch.cat(rows)
                cache.save(name, params, vectors)
                status[modality] = "built"
            if vectors is not None:
                if len(vectors) != len(self):
                    raise ValueError(f"{cache.path(name)}: {len(vectors)} rows for {len(self)} items; delete it and "
                                     "run the preparation again")
                self.vectors[modality] = vectors
            else:
                status[modality] = "on the fly"
        return status

    def __getitem__(self, index: int) -> dict:
        rec = self.record(index)
        image = to_tensor(rec.image.convert("RGB"), self.config.resolution)
        conditions: dict[str, dict] = {}
        if "sketch" in self.modalities:
            conditions["sketch"] = {"image": extract_sketch(image, self.config.sketch_sigma,
                                                            self.config.sketch_threshold)}
        if "depth" in self.modalities:
            present = rec.depth is not None
            conditions["depth"] = {"image": rec.depth if present else torch.zeros_like(image),
                                   "mask": float(present)}
        if "box" in self.modalities:
            conditions["box"] = {"boxes": torch.tensor(rec.boxes, dtype=torch.float32).view(-1, 4),
                                 "phrases": list(rec.phrases)}
        if "keypoint" in self.modalities:
            kp = rec.keypoints if rec.keypoints is not None else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
            kp = torch.as_tensor(kp, dtype=torch.float32)
            mask = kp[..., 2]
            conditions["keypoint"] = {"points": kp[..., :2] * mask.unsqueeze(-1), "mask": mask}
        for modality in ("color", "style"):
            if modality in self.modalities:
                vector = (self.vectors[modality][index] if modality in self.vectors
                          else self.compute_vectors(modality, [rec.image])[0])
                conditions[modality] = {"vector": vector}
        return {"key": rec.key, "pixel_values": image * 2.0 - 1.0, "caption": rec.caption, "conditions": conditions}
