"""Lightning data module: cached cycle features of the train and test manifests.

``prepare_data`` (run once per node by Lightning) builds any missing feature cache; the datasets
then memory-map it. Training applies SpecAugment per item and drops the last partial batch;
evaluation covers every test cycle.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from audio_cls.data.dataset import CycleFeatureDataset
from audio_cls.features import SpecAugment, build_feature_cache, cache_dir_for, load_feature_cache
from audio_cls.tasks.config import IcbhiConfig
from compact_ssl.training import ResumableDataLoader


class IcbhiDataModule(L.LightningDataModule):
    """Train (SpecAugment, shuffled, drop_last) and test loaders over the feature caches."""

    def __init__(self, config: IcbhiConfig):
        super().__init__()
        self.config = config
        self.train_set: CycleFeatureDataset | None = None
        self.test_set: CycleFeatureDataset | None = None

    def prepare_data(self) -> None:
        data = self.config.data
        for manifest in (data.train, data.test):
            build_feature_cache(manifest, self.config.features, data.cache_dir)

    def _dataset(self, manifest: str, train: bool) -> CycleFeatureDataset:
        cache = load_feature_cache(cache_dir_for(manifest, self.config.features, self.config.data.cache_dir))
        transform = SpecAugment(self.config.specaug) if train else None
        return CycleFeatureDataset(cache.feats, cache.labels, self.config.data.num_classes, transform)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._dataset(self.config.data.train, train=True)
            self.test_set = self._dataset(self.config.data.test, train=False)

    def _loader(self, dataset: CycleFeatureDataset, train: bool) -> DataLoader:
        data = self.config.data
        if train and len(dataset) < data.batch_size:
            raise ValueError(f"{data.train}: {len(dataset)} training cycles, fewer than one batch of {data.batch_size}")
        # a resumed run continues the interrupted epoch exactly
        return ResumableDataLoader(dataset, batch_size=data.batch_size if train else data.eval_batch_size,
                                   shuffle=train, drop_last=train, num_workers=data.num_workers,
                                   persistent_workers=data.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
