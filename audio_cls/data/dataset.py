"""Torch dataset over pre-computed cycle features (see :mod:`audio_cls.features`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from audio_cls.data.manifest import map_label


class CycleFeatureDataset(Dataset):
    """Items ``(features (frames, mel bins), label, index)``.

    ``feats`` may be a memory-mapped array (each item is copied out of it); ``transform`` (e.g.
    SpecAugment) is applied to the copy. ``num_classes=2`` maps any abnormal label to 1. The index
    lets evaluation gather predictions exactly once per cycle under DDP.
    """

    def __init__(self, feats: np.ndarray, labels: np.ndarray, num_classes: int = 4,
                 transform: Callable[[Tensor], Tensor] | None = None):
        if len(feats) != len(labels):
            raise ValueError(f"{len(feats)} feature rows but {len(labels)} labels")
        self.feats = feats
        self.labels = [map_label(int(label), num_classes) for label in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        spec = torch.from_numpy(np.array(self.feats[index], dtype=np.float32))
        if self.transform is not None:
            spec = self.transform(spec)
        return spec, self.labels[index], index
