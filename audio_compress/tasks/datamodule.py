"""Lightning data module for distillation: length-bucketed waveform batches, optionally paired
with teacher targets read from a feature dump."""

from __future__ import annotations

import lightning as L

from audio_compress.data.dataset import SpeechDataset, collate_waveforms
from audio_compress.data.sampler import DurationBucketBatchSampler
from audio_compress.tasks.config import DataConfig
from compact_ssl.training import ResumableDataLoader


class DistillDataModule(L.LightningDataModule):
    """Train/dev loaders over Kaldi data dirs.

    ``data.crop_samples`` crops training utterances only, at any sample with the online teacher
    and at frame boundaries with a feature dump (the stored targets sliced to the same frames,
    see :class:`~audio_compress.dump.DumpedSpeechDataset`); dev utterances are always whole.

    The batch sampler is created inside ``*_dataloader()`` so that, under DDP, it sees the
    initialised process group and gives each rank its own share of the buckets (Lightning's
    own distributed sampler must be disabled: ``Trainer(use_distributed_sampler=False)``).
    """

    def __init__(self, config: DataConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.seed = seed

    def _dataset(self, data_dir: str, dump_dir: str | None, train: bool):
        # only training audio is cropped: validation always sees whole utterances
        crop = self.config.crop_samples if train else None
        if dump_dir:
            from audio_compress.dump import DumpedSpeechDataset

            # cropped at frame boundaries, with the stored targets sliced to the same frames
            return DumpedSpeechDataset(data_dir, dump_dir, resample=self.config.resample, crop_samples=crop)
        return SpeechDataset(data_dir, crop_samples=crop, random_crop=train, resample=self.config.resample)

    def _loader(self, data_dir: str, dump_dir: str | None, train: bool) -> ResumableDataLoader:
        dataset = self._dataset(data_dir, dump_dir, train)
        sampler = DurationBucketBatchSampler(
            dataset.lengths,
            max_batch_samples=self.config.max_batch_samples,
            max_batch_size=self.config.max_batch_size,
            shuffle=train,
        )
        collate = getattr(dataset, "collate", collate_waveforms)
        return ResumableDataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.config.num_workers,
            persistent_workers=self.config.num_workers > 0,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.config.train, self.config.dump_dir, train=True)

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.config.dev, self.config.dev_dump_dir, train=False)
