"""Lightning data modules: multi-view pretraining batches (+ kNN monitor loaders) and the
linear-evaluation train / test sets, all built from the experiment config."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from compact_ssl.training import ResumableDataLoader
from vision_ssl.augment import MultiView, build_transform
from vision_ssl.config import DataConfig, LinearConfig
from vision_ssl.data import build_dataset


def _loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
    """A ``DataLoader`` that a resumed run continues mid-epoch (see ``ResumableDataLoader``)."""
    return ResumableDataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                               num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                               persistent_workers=num_workers > 0)


class PretrainDataModule(L.LightningDataModule):
    """Training batches ``(views, labels)`` with ``data.num_views`` augmented views per image."""

    def __init__(self, data: DataConfig) -> None:
        super().__init__()
        self.data = data
        mean, std = data.norm
        self.train_transform = MultiView(build_transform(data.train_aug, data.image_size, mean, std), data.num_views)
        self.eval_transform = build_transform(data.eval_aug, data.image_size, mean, std)
        self.train_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            d = self.data
            self.train_set = build_dataset(d.dataset, d.root, d.train_split, self.train_transform)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if len(self.train_set) < self.data.batch_size:
            raise ValueError(f"{self.data.dataset} at '{self.data.root}': {len(self.train_set)} training images are "
                             f"fewer than one batch (data.batch_size {self.data.batch_size}); lower the batch size")
        return _loader(self.train_set, self.data.batch_size, self.data.num_workers, shuffle=True, drop_last=True)

    def knn_loaders(self) -> tuple[DataLoader, DataLoader, int]:
        """``(bank, test, num_classes)``: train and test splits with the evaluation transform."""
        d = self.data
        bank = build_dataset(d.dataset, d.root, d.train_split, self.eval_transform)
        test = build_dataset(d.dataset, d.root, d.test_split, self.eval_transform)
        return (_loader(bank, d.batch_size, d.num_workers, shuffle=False),
                _loader(test, d.batch_size, d.num_workers, shuffle=False), len(bank.classes))


class LinearDataModule(L.LightningDataModule):
    """Linear evaluation: labelled train split (``linear.train_aug``) and test split (``linear.test_aug``)."""

    def __init__(self, data: DataConfig, linear: LinearConfig) -> None:
        super().__init__()
        mean, std = data.norm
        self.train_set = build_dataset(data.dataset, data.root, data.train_split,
                                       build_transform(linear.train_aug, data.image_size, mean, std))
        self.test_set = build_dataset(data.dataset, data.root, data.test_split,
                                      build_transform(linear.test_aug, data.image_size, mean, std))
        self.batch_size, self.num_workers = linear.batch_size, data.num_workers

    @property
    def num_classes(self) -> int:
        return len(self.train_set.classes)

    def train_dataloader(self) -> DataLoader:
        return _loader(self.train_set, self.batch_size, self.num_workers, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.test_set, self.batch_size, self.num_workers, shuffle=False)
