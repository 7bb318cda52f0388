"""Training data from a dump: whole utterances of a data dir paired with their stored targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from audio_compress.data.dataset import SpeechDataset, WaveBatch, pad_waveforms
from audio_compress.dump.layout import DumpError
from audio_compress.dump.reader import TeacherDump
from audio_compress.frames import num_frames

__all__ = ["DumpBatch", "DumpedSpeechDataset"]


@dataclass
class DumpBatch(WaveBatch):
    """A :class:`~audio_compress.data.dataset.WaveBatch` plus stored teacher targets.

    Attributes:
        targets: one ``(B, T, D)`` float32 tensor per stored layer, zero at padded frames
            (``T = num_frames(L)`` of the padded waveform length ``L``).
        layers: teacher hidden-state index of each entry of ``targets``.
    """

    targets: list[torch.Tensor]
    layers: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DumpBatch:
        return DumpBatch(
            self.wavs.to(device, non_blocking=non_blocking),
            self.padding_mask.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            self.utt_ids,
            [t.to(device, non_blocking=non_blocking) for t in self.targets],
            list(self.layers),
        )


class DumpedSpeechDataset(Dataset):
    """Whole utterances of a data dir (no cropping: the teacher saw whole utterances) with the
    teacher targets read from a dump. Items are dicts with ``utt_id``, ``wav`` and ``targets``
    (``(n_layers, T, D)`` fp16); :meth:`collate` builds a :class:`DumpBatch`."""

    def __init__(self, data_dir: str | Path, dump_dir: str | Path, resample: bool = False):
        self.speech = SpeechDataset(data_dir, crop_samples=None, resample=resample)
        self.dump = TeacherDump(dump_dir)
        missing = [u for u in self.speech.utt_ids if u not in self.dump]
        if missing:
            raise DumpError(
                f"{len(missing)} utterances of {data_dir} are missing from the teacher dump {dump_dir} "
                f"(first: {missing[:5]}); the dump was made for another data dir: re-run the dump stage"
            )
        bad = [u for u, n in zip(self.speech.utt_ids, self.speech.num_samples)
               if self.dump.num_frames(u) != num_frames(n)]
        if bad:
            raise DumpError(
                f"{len(bad)} utterances of {data_dir} have another length than in the teacher dump {dump_dir} "
                f"(first: {bad[:5]}); the data changed since the dump: re-run the dump stage"
            )
        self.layers = list(self.dump.layers)

    def __len__(self) -> int:
        return len(self.speech)

    @property
    def utt_ids(self) -> list[str]:
        return self.speech.utt_ids

    @property
    def lengths(self) -> list[int]:
        """Length in samples of every utterance (for bucketing)."""
        return self.speech.lengths

    def __getitem__(self, index: int) -> dict:
        item = self.speech[index]
        targets = self.dump.get(item["utt_id"], as_tensor=True)
        if targets.shape[1] != num_frames(item["wav"].shape[0]):
            raise DumpError(
                f"utterance {item['utt_id']}: {item['wav'].shape[0]} samples give "
                f"{num_frames(item['wav'].shape[0])} frames but the dump stores {targets.shape[1]}; "
                "re-run the dump stage"
            )
        item["targets"] = targets
        return item

    def collate(self, items: list[dict]) -> DumpBatch:
        """Pad waveforms (with :func:`~audio_compress.data.dataset.pad_waveforms`) and targets
        (zeros after each utterance's frames) into a :class:`DumpBatch`."""
        wavs, padding_mask, lengths = pad_waveforms([item["wav"] for item in items])
        total = num_frames(wavs.shape[1])
        targets = [torch.zeros(len(items), total, self.dump.hidden_size) for _ in self.layers]
        for b, item in enumerate(items):
            t = item["targets"]
            for j, target in enumerate(targets):
                target[b, : t.shape[1]] = t[j]
        return DumpBatch(wavs, padding_mask, lengths, [item["utt_id"] for item in items], targets, list(self.layers))
