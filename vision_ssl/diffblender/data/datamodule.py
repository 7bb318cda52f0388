"""Lightning data module of DiffBlender training: raw-condition batches (see
:mod:`vision_ssl.diffblender.data.collate`) from COCO or the synthetic shapes."""

from __future__ import annotations

from functools import partial

import lightning as L
import torch
from torch.utils.data import DataLoader

from compact_ssl.training import ResumableDataLoader
from vision_ssl.diffblender.data.base import ConditionDataset
from vision_ssl.diffblender.data.cache import ConditionCache
from vision_ssl.diffblender.data.coco import CocoDataset
from vision_ssl.diffblender.data.collate import collate_conditions
from vision_ssl.diffblender.data.config import DataConfig
from vision_ssl.diffblender.data.shapes import ShapesDataset


def build_condition_dataset(config: DataConfig, split: str = "train") -> ConditionDataset:
    """The training (``"train"``) or validation (``"val"``) dataset of ``config``, with the cached
    palettes / style embeddings attached when ``config.cache_dir`` holds them."""
    if config.dataset == "shapes":
        dataset: ConditionDataset = ShapesDataset(config, split)
    else:
        dataset = CocoDataset(config, config.split if split == "train" else config.val_split)
    if config.cache_dir:
        dataset.attach_cache(ConditionCache(config.cache_dir))
    return dataset


class DiffBlenderDataModule(L.LightningDataModule):
    """Shuffled training batches (last partial batch dropped) and, when configured, validation
    batches (``data.val_split`` for COCO, ``data.shapes_val_count`` > 0 for shapes)."""

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        self.collate = partial(collate_conditions, max_boxes=config.max_boxes, max_persons=config.max_persons)
        self.train_set: ConditionDataset | None = None
        self.val_set: ConditionDataset | None = None

    @property
    def has_val(self) -> bool:
        c = self.config
        return bool(c.val_split) if c.dataset == "coco" else c.shapes_val_count > 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = build_condition_dataset(self.config, "train")
        if self.val_set is None and self.has_val:
            self.val_set = build_condition_dataset(self.config, "val")

    def _loader(self, dataset: ConditionDataset, train: bool) -> DataLoader:
        c = self.config
        # a resumed run continues the interrupted epoch exactly
        return ResumableDataLoader(dataset, batch_size=c.batch_size, shuffle=train, drop_last=train,
                                   num_workers=c.num_workers, collate_fn=self.collate,
                                   pin_memory=torch.cuda.is_available(), persistent_workers=c.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if len(self.train_set) < self.config.batch_size:
            raise ValueError(f"{self.train_set.name}: {len(self.train_set)} training images are fewer than one batch "
                             f"(data.batch_size {self.config.batch_size}); lower the batch size")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self.val_set, train=False) if self.val_set is not None else []
