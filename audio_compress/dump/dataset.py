"""Training data from a dump: utterances of a data dir paired with their stored targets, optionally
cropped at frame boundaries so that waveform and targets stay aligned frame for frame."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from audio_compress.data.dataset import SpeechDataset, WaveBatch, pad_waveforms
from audio_compress.dump.layout import DumpError
from audio_compress.dump.reader import TeacherDump
from audio_compress.frames import HOP, RECEPTIVE_FIELD, num_frames

__all__ = ["DumpBatch", "DumpedSpeechDataset", "frame_span"]


def frame_span(frames: int) -> int:
    """Samples that ``frames`` consecutive CNN frames read: ``320 * (frames - 1) + 400``."""
    return HOP * (frames - 1) + RECEPTIVE_FIELD


def _batch_features(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised fp16 tensor for the targets of a batch being collated.

    In a DataLoader worker it is allocated in shared memory, as torch's default collate does, so
    that handing the batch to the main process copies nothing (a private tensor would be copied
    into shared memory whole). In the main process it is allocated by numpy, which asks the
    kernel for transparent huge pages on large arrays where torch does not: filling a fresh
    40 MB batch then takes about half the time (fewer page faults)."""
    if get_worker_info() is None:
        return torch.from_numpy(np.empty(shape, dtype=np.float16))
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * torch.float16.itemsize)
    return torch.empty(0, dtype=torch.float16).set_(storage, 0, shape)


@dataclass
class DumpBatch(WaveBatch):
    """A :class:`~audio_compress.data.dataset.WaveBatch` plus stored teacher targets.

    The targets travel as one tensor in the dump's own layout and dtype (``features``), so that
    the loader only copies fp16 memory and the host-to-device copy moves half the bytes of
    float32; :attr:`targets` converts them to float32 once, on first use, on the device the
    batch is on (after :meth:`to`, the accelerator's).

    Attributes:
        features: ``(B, T, n_layers, D)`` targets as stored (fp16), zero at padded frames
            (``T = num_frames(L)`` of the padded waveform length ``L``). Given as a sequence of
            one ``(B, T, D)`` tensor per layer, they are stacked into that layout.
        layers: teacher hidden-state index of each entry of :attr:`targets`.
    """

    features: torch.Tensor
    layers: list[int]

    def __post_init__(self) -> None:
        if not isinstance(self.features, torch.Tensor):
            self.features = torch.stack(list(self.features), dim=2)
        if self.features.dim() != 4 or self.features.shape[2] != len(self.layers):
            raise ValueError(f"DumpBatch: features of shape {tuple(self.features.shape)} do not hold "
                             f"(batch, frames, {len(self.layers)} layers, hidden) for layers {self.layers}; pass that "
                             "tensor, or one (batch, frames, hidden) tensor per layer")

    @cached_property
    def targets(self) -> list[torch.Tensor]:
        """One contiguous ``(B, T, D)`` float32 tensor per stored layer, zero at padded frames."""
        # one pass converts and moves the layer axis first, so that every layer is contiguous
        stacked = self.features.permute(2, 0, 1, 3).to(torch.float32, memory_format=torch.contiguous_format)
        return list(stacked.unbind(0))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DumpBatch:
        return DumpBatch(
            self.wavs.to(device, non_blocking=non_blocking),
            self.padding_mask.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            self.utt_ids,
            self.features.to(device, non_blocking=non_blocking),
            list(self.layers),
        )


class DumpedSpeechDataset(Dataset):
    """Utterances of a data dir with the teacher targets read from a dump.

    Items are dicts with ``utt_id``, ``wav``, ``targets`` (``(n_layers, T, D)`` fp16: a transposed
    view of the memory-mapped ``(T, n_layers, D)`` block, see :meth:`TeacherDump.view`, read when
    used) and
    ``start_frame`` (index in the whole utterance of the first frame of ``targets``; 0 unless
    cropped); :meth:`collate` builds a :class:`DumpBatch`.

    Cropping (``crop_samples``, training only)
        An utterance longer than ``crop_samples`` is cut to the ``n = num_frames(crop_samples)``
        frames starting at a random frame ``k`` (uniform over ``0 .. num_frames(L) - n``, drawn
        from torch's global generator like the online crop of
        :class:`~audio_compress.data.dataset.SpeechDataset`, so ``torch.manual_seed`` /
        Lightning's per-worker seeding makes it reproducible). The waveform keeps samples
        ``[320 k, 320 k + 320 (n - 1) + 400)``: the offset is a multiple of the 320-sample hop
        and the length is the span of whole frames (``crop_samples`` rounded down by at most
        319 samples that no frame reads). Frame ``j`` of the cropped waveform then reads exactly
        the samples of frame ``k + j`` of the whole utterance, so the student's ``n`` frames
        line up one to one with the stored targets ``k .. k + n - 1``.

        What stays different from an online teacher run on the cropped audio is the teacher's
        context, not the alignment. No CNN frame is cut (its 400-sample receptive field lies
        inside the crop), but a stored target was computed on the whole utterance: the
        positional convolution (kernel 128 frames in the Base models) gives the targets within
        64 frames (about 1.3 s) of either crop edge context from outside the crop, from hidden
        state 0 on; every Transformer layer attends over the whole utterance, so frames near
        the edges differ most from what the teacher would give on the crop alone but no frame
        is guaranteed identical; and the Base models' first GroupNorm takes its statistics over
        the whole utterance. The targets are therefore the teacher's representation of each
        frame within its full utterance, exactly as in the uncropped dump (the teacher saw
        whole utterances); an online teacher on the crop (s3prl's DistilHuBERT recipe) sees
        the crop edges as utterance edges instead.

    Args:
        data_dir: Kaldi data dir (``wav.scp`` + ``utt2num_samples``).
        dump_dir: the finished dump of ``data_dir``.
        resample: resample non-16 kHz audio (as at dump time).
        crop_samples: crop length for training (``data.crop_samples``); ``None`` keeps whole
            utterances (validation).
    """

    def __init__(self, data_dir: str | Path, dump_dir: str | Path, resample: bool = False,
                 crop_samples: int | None = None):
        if crop_samples is not None and crop_samples < RECEPTIVE_FIELD:
            raise ValueError(
                f"data.crop_samples={crop_samples} is below the {RECEPTIVE_FIELD}-sample receptive field "
                "(no frame would fit); set it to at least that, or null for whole utterances"
            )
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
        self.crop_samples = crop_samples
        #: frames of a cropped item (None: no cropping)
        self.crop_frames = num_frames(crop_samples) if crop_samples is not None else None

    def __len__(self) -> int:
        return len(self.speech)

    @property
    def utt_ids(self) -> list[str]:
        return self.speech.utt_ids

    @property
    def lengths(self) -> list[int]:
        """Length in samples of every item as returned (after cropping; for bucketing)."""
        if self.crop_frames is None:
            return list(self.speech.num_samples)
        span = frame_span(self.crop_frames)
        return [span if n > self.crop_samples else n for n in self.speech.num_samples]

    def crop_start_frame(self, num_samples: int) -> int | None:
        """Random first frame of the crop of an utterance of ``num_samples`` samples, or ``None``
        when it is not cropped (no ``crop_samples``, or not longer than it)."""
        if self.crop_frames is None or num_samples <= self.crop_samples:
            return None
        last = num_frames(num_samples) - self.crop_frames
        return int(torch.randint(0, last + 1, ()).item())

    def __getitem__(self, index: int) -> dict:
        item = self.speech[index]
        utt, wav = item["utt_id"], item["wav"]
        if self.dump.num_frames(utt) != num_frames(wav.shape[0]):
            raise DumpError(
                f"utterance {utt}: {wav.shape[0]} samples give {num_frames(wav.shape[0])} frames but the dump "
                f"{self.dump.out_dir} stores {self.dump.num_frames(utt)}; re-run the dump stage"
            )
        start = self.crop_start_frame(wav.shape[0])
        if start is None:
            item["targets"] = self.dump.view(utt).transpose(0, 1)
            item["start_frame"] = 0
            return item
        item["wav"] = wav[start * HOP : start * HOP + frame_span(self.crop_frames)]
        item["targets"] = self.dump.view(utt, start=start, count=self.crop_frames).transpose(0, 1)
        item["start_frame"] = start
        return item

    def collate(self, items: list[dict]) -> DumpBatch:
        """Pad waveforms (with :func:`~audio_compress.data.dataset.pad_waveforms`) and targets
        (zeros after each utterance's frames) into a :class:`DumpBatch`.

        The targets of the batch are one fp16 tensor in the stored layout, filled with one
        contiguous copy per utterance (an item's ``targets`` is a view of its stored
        ``(T, n_layers, D)`` block) and zeroed only where padded."""
        wavs, padding_mask, lengths = pad_waveforms([item["wav"] for item in items])
        total = num_frames(wavs.shape[1])
        features = _batch_features((len(items), total, len(self.layers), self.dump.hidden_size))
        for b, item in enumerate(items):
            stored = item["targets"].transpose(0, 1)
            features[b, : stored.shape[0]] = stored
            features[b, stored.shape[0] :] = 0
        return DumpBatch(wavs, padding_mask, lengths, [item["utt_id"] for item in items], features, list(self.layers))
