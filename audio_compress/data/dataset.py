"""Waveform dataset over a Kaldi-style data dir, and padding collation.

The dataset reads ``wav.scp`` and ``utt2num_samples`` (written by data preparation), loads audio
with :func:`compact_ssl.audio.load_audio` (so every bad file raises an error naming it),
and optionally crops long utterances to a fixed number of samples.

Multi-channel files are made mono the way the data preparation was told to
(``prepare_librispeech --multichannel mean|first``): it records that policy as one line in
``<data dir>/multichannel.txt``, which :func:`read_multichannel_policy` reads, so the dump and
the training need no option of their own. Without the file, multi-channel audio is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from audio_compress.data.kaldi import read_kaldi_map
from audio_compress.frames import RECEPTIVE_FIELD, SAMPLE_RATE
from compact_ssl.audio import MULTICHANNEL_POLICIES, load_audio

#: One line in a data dir naming how to make multi-channel audio mono (absent: refuse).
MULTICHANNEL_FILE = "multichannel.txt"


def read_multichannel_policy(data_dir: str | Path) -> str:
    """The multi-channel policy recorded in ``data_dir`` (``"refuse"`` when none is recorded).

    Raises:
        ValueError: the file holds something other than one of ``refuse``, ``mean``, ``first``.
    """
    path = Path(data_dir) / MULTICHANNEL_FILE
    if not path.is_file():
        return "refuse"
    policy = path.read_text().strip()
    if policy not in MULTICHANNEL_POLICIES:
        raise ValueError(f"{path}: holds {policy!r}, expected one of {', '.join(MULTICHANNEL_POLICIES)}; "
                         "re-run the data preparation (--multichannel mean|first) to rewrite it")
    return policy


@dataclass
class WaveBatch:
    """A padded batch of waveforms.

    Attributes:
        wavs: ``(B, L)`` float32, zero-padded on the right.
        padding_mask: ``(B, L)`` bool, True at padded samples.
        lengths: ``(B,)`` valid samples per row.
        utt_ids: utterance ids in batch order.
    """

    wavs: torch.Tensor
    padding_mask: torch.Tensor
    lengths: torch.Tensor
    utt_ids: list[str]

    def to(self, device: torch.device | str) -> WaveBatch:
        return WaveBatch(self.wavs.to(device), self.padding_mask.to(device), self.lengths.to(device), self.utt_ids)

    def __len__(self) -> int:
        return len(self.utt_ids)


class SpeechDataset(Dataset):
    """Utterances of a Kaldi-style data dir (``wav.scp`` + ``utt2num_samples``).

    Args:
        data_dir: folder with ``wav.scp`` and ``utt2num_samples``.
        crop_samples: if set, utterances longer than this are cropped to it (randomly when
            ``random_crop``, else from the start; evaluation should use ``random_crop=False``).
        random_crop: choose the crop offset at random (training).
        sample_rate: target rate; files at another rate are resampled when ``resample``,
            otherwise refused with an error naming the file.

    Multi-channel files follow the policy recorded in ``<data_dir>/multichannel.txt``
    (see :func:`read_multichannel_policy`).
    """

    def __init__(
        self,
        data_dir: str | Path,
        crop_samples: int | None = None,
        random_crop: bool = True,
        sample_rate: int = SAMPLE_RATE,
        resample: bool = False,
    ):
        self.data_dir = Path(data_dir)
        for name in ("wav.scp", "utt2num_samples"):
            if not (self.data_dir / name).is_file():
                raise FileNotFoundError(
                    f"{self.data_dir / name}: missing; run the data preparation stage for this data dir first"
                )
        wav_scp = read_kaldi_map(self.data_dir / "wav.scp")
        num_samples = read_kaldi_map(self.data_dir / "utt2num_samples")
        missing = sorted(set(wav_scp) - set(num_samples))
        if missing:
            raise ValueError(
                f"{self.data_dir / 'utt2num_samples'}: no length for {len(missing)} utterances "
                f"(first: {missing[:3]}); re-run data preparation"
            )
        if crop_samples is not None and crop_samples < RECEPTIVE_FIELD:
            raise ValueError(f"crop_samples={crop_samples} is below the {RECEPTIVE_FIELD}-sample receptive field")
        self.utt_ids = sorted(wav_scp)
        self.paths = [wav_scp[u] for u in self.utt_ids]
        self.num_samples = [int(num_samples[u]) for u in self.utt_ids]
        self.crop_samples = crop_samples
        self.random_crop = random_crop
        self.sample_rate = sample_rate
        self.resample = resample
        self.multichannel = read_multichannel_policy(self.data_dir)

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def lengths(self) -> list[int]:
        """Length in samples of every item as returned (after cropping); used for bucketing."""
        if self.crop_samples is None:
            return list(self.num_samples)
        return [min(n, self.crop_samples) for n in self.num_samples]

    def __getitem__(self, index: int) -> dict:
        wav = torch.from_numpy(load_audio(self.paths[index], self.sample_rate, self.resample, min_samples=RECEPTIVE_FIELD,
                                          multichannel=self.multichannel))
        if self.crop_samples is not None and wav.shape[0] > self.crop_samples:
            excess = wav.shape[0] - self.crop_samples
            start = int(torch.randint(0, excess + 1, ()).item()) if self.random_crop else 0
            wav = wav[start : start + self.crop_samples]
        return {"utt_id": self.utt_ids[index], "wav": wav}


def pad_waveforms(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms with zeros to ``(B, max_len)``; returns (wavs, padding_mask, lengths)."""
    lengths = torch.tensor([w.shape[0] for w in wavs], dtype=torch.long)
    max_len = int(lengths.max()) if len(wavs) else 0
    out = wavs[0].new_zeros((len(wavs), max_len)) if wavs else torch.zeros(0, 0)
    for i, w in enumerate(wavs):
        out[i, : w.shape[0]] = w
    padding_mask = torch.arange(max_len).unsqueeze(0) >= lengths.unsqueeze(1)
    return out, padding_mask, lengths


def collate_waveforms(items: list[dict]) -> WaveBatch:
    """Collate :class:`SpeechDataset` items into a :class:`WaveBatch`."""
    wavs, padding_mask, lengths = pad_waveforms([item["wav"] for item in items])
    return WaveBatch(wavs, padding_mask, lengths, [item["utt_id"] for item in items])
