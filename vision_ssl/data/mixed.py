"""Batches of the mixed-supervised CD-FSL scheme: unlabeled target views + labeled source images.

One epoch is one pass over the target loader (``data.*``, two views, shuffled, last partial
batch dropped); the source loader (``cdfsl.source_*``, one view, ``cdfsl.source_batch_size``)
cycles alongside it, reshuffled at every pass over the source, for exactly as many batches.
Both sides use ``data.train_aug`` at ``data.image_size`` and the target's normalisation.
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, RandomSampler

from vision_ssl.augment import MultiView, build_transform
from vision_ssl.config import ExperimentConfig
from vision_ssl.data import build_dataset
from vision_ssl.data.datamodules import PretrainDataModule


class MixedDataModule(PretrainDataModule):
    """Training batches ``{"target": (views, labels), "source": ([images], labels)}`` (the target
    labels are never used by the methods)."""

    def __init__(self, config: ExperimentConfig) -> None:
        super().__init__(config.data)
        self.source = config.cdfsl
        mean, std = config.data.norm
        self.source_transform = MultiView(build_transform(config.data.train_aug, config.data.image_size, mean, std), 1)
        self.source_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.source_set is None:
            s = self.source
            self.source_set = build_dataset(s.source_dataset, s.source_root, s.source_split, self.source_transform)

    def train_dataloader(self) -> CombinedLoader:
        target = super().train_dataloader()
        s = self.source
        if len(self.source_set) < s.source_batch_size:
            raise ValueError(f"{s.source_dataset} at '{s.source_root}': {len(self.source_set)} source images are fewer "
                             f"than one batch (cdfsl.source_batch_size {s.source_batch_size}); lower the batch size")
        # drawing len(target) batches without replacement concatenates fresh permutations of
        # the source: the source loader "cycles", reshuffled each time round
        sampler = RandomSampler(self.source_set, num_samples=len(target) * s.source_batch_size)
        source = DataLoader(self.source_set, batch_size=s.source_batch_size, sampler=sampler, drop_last=True,
                            num_workers=self.data.num_workers, pin_memory=torch.cuda.is_available(),
                            persistent_workers=self.data.num_workers > 0)
        return CombinedLoader({"target": target, "source": source}, mode="min_size")


def pretrain_datamodule(config: ExperimentConfig) -> PretrainDataModule:
    """The training data of ``config.method``: mixed source + target for msl, else ``data.*``."""
    return MixedDataModule(config) if config.method == "msl" else PretrainDataModule(config.data)
