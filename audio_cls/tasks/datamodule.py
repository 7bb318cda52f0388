"""Lightning data module: cached cycle features of the train and test manifests.

``prepare_data`` (run once per node by Lightning) builds any missing feature cache; the datasets
then memory-map it. Training applies SpecAugment per item and drops the last partial batch;
evaluation covers every cycle of its set.

The set evaluated after every epoch, on which the best epoch is chosen, is the test set (paper
protocol, ``data.val_fraction: 0``) or, under the clean protocol, the validation patients that
:func:`~audio_cls.data.split.validation_split` holds out of the training manifest; training then
uses the other patients only. Both come from the training feature cache, so no extra cache is built.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset, Subset

from audio_cls.data.dataset import CycleFeatureDataset
from audio_cls.data.manifest import CycleRecord, read_manifest
from audio_cls.data.split import validation_split
from audio_cls.features import SpecAugment, build_feature_cache, cache_dir_for, load_feature_cache
from audio_cls.tasks.config import IcbhiConfig
from compact_ssl.training import ResumableDataLoader


def split_training_cycles(config: IcbhiConfig, records: list[CycleRecord] | None = None) -> tuple[list[int], list[int]]:
    """Indices into the training manifest of the cycles trained on and of the validation cycles
    (none under the paper protocol); ``records`` is the manifest when already read."""
    records = read_manifest(config.data.train) if records is None else records
    if config.data.val_fraction == 0:
        return list(range(len(records))), []
    return validation_split(records, config.data.val_fraction, config.data.val_seed)


class IcbhiDataModule(L.LightningDataModule):
    """Train (SpecAugment, shuffled, drop_last) and selection-set loaders over the feature caches."""

    def __init__(self, config: IcbhiConfig):
        super().__init__()
        self.config = config
        self.train_set: Dataset | None = None
        self.selection_set: Dataset | None = None

    def prepare_data(self) -> None:
        data = self.config.data
        for manifest in (data.train, data.test):
            build_feature_cache(manifest, self.config.features, data.cache_dir)

    def _dataset(self, manifest: str, train: bool) -> CycleFeatureDataset:
        cache = load_feature_cache(cache_dir_for(manifest, self.config.features, self.config.data.cache_dir))
        transform = SpecAugment(self.config.specaug) if train else None
        return CycleFeatureDataset(cache.feats, cache.labels, self.config.data.num_classes, transform)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        data = self.config.data
        train = self._dataset(data.train, train=True)
        if data.val_fraction == 0:
            self.train_set, self.selection_set = train, self._dataset(data.test, train=False)
            return
        # items keep their index into the training cache, which is unique within the validation set
        # (what the DDP de-duplication of the evaluation needs)
        train_idx, val_idx = split_training_cycles(self.config)
        self.train_set = Subset(train, train_idx)
        self.selection_set = Subset(self._dataset(data.train, train=False), val_idx)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
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
        return self._loader(self.selection_set, train=False)
