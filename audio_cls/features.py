"""AST input features: Kaldi fbank with AST's normalization, SpecAugment, and an on-disk cache.

Features are bit-compatible with AST's AudioSet training: torchaudio's Kaldi-compatible fbank
(25 ms Hann windows every 10 ms, 128 mel bins, no dither, HTK-compatible layout, no energy),
normalized with the AudioSet statistics as ``(x - mean) / (2 * std)``. An 8 s cycle at 16 kHz
gives ``1 + (128000 - 400) // 160 = 798`` frames, so one cycle is a (798, 128) matrix.

The cache holds the normalized fbank of every cycle of a manifest (before SpecAugment, which is
random per epoch) in one ``.npy`` array that training memory-maps. It is keyed by the feature
config and the manifest's content: a changed config or manifest gets a new cache, an unchanged one
is reused. Writes are atomic (temporary folder, then rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from audio_cls.data.cycles import PAD_TYPES, RESAMPLERS, cycle_waves, load_recording
from audio_cls.data.manifest import CycleRecord, manifest_digest, read_manifest

#: AudioSet fbank statistics used by AST (and the HF ``ASTFeatureExtractor``).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
#: Bump when the cache file format or the cached features change (2: float64-kernel resampling and the
#: fade-out of cycles of exactly the target length, both as in the reference).
CACHE_VERSION = 2


@dataclass
class FeatureConfig:
    """Cycle preprocessing and fbank settings (the cache key)."""

    sample_rate: int = 16000
    desired_length: float = 8.0  #: seconds per cycle after cut/pad
    pad_type: str = "repeat"  #: repeat (tile + fade-out) | zero (centred)
    resampler: str = "torchaudio"  #: torchaudio (reference) | soxr
    num_mel_bins: int = 128
    frame_length: float = 25.0  #: ms
    frame_shift: float = 10.0  #: ms
    norm_mean: float = AUDIOSET_MEAN
    norm_std: float = AUDIOSET_STD

    def __post_init__(self) -> None:
        if self.pad_type not in PAD_TYPES:
            raise ValueError(f"features.pad_type must be one of {PAD_TYPES}, got {self.pad_type!r}")
        if self.resampler not in RESAMPLERS:
            raise ValueError(f"features.resampler must be one of {RESAMPLERS}, got {self.resampler!r}")

    @property
    def num_samples(self) -> int:
        """Samples per cycle (128,000 for 8 s at 16 kHz)."""
        return int(round(self.desired_length * self.sample_rate))

    @property
    def num_frames(self) -> int:
        """Fbank frames per cycle with snip_edges: ``1 + (N - window) // shift`` (798 for 8 s)."""
        window = int(self.sample_rate * self.frame_length / 1000)
        shift = int(self.sample_rate * self.frame_shift / 1000)
        return 1 + (self.num_samples - window) // shift

    def key(self) -> str:
        """Short hash of every field (and the cache version)."""
        text = json.dumps({"version": CACHE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def fbank(wave: Tensor | np.ndarray, config: FeatureConfig) -> Tensor:
    """Normalized Kaldi fbank of a 1-D waveform at ``config.sample_rate``: (frames, mel bins)."""
    from torchaudio.compliance import kaldi

    wave = torch.as_tensor(wave, dtype=torch.float32).reshape(1, -1)
    feats = kaldi.fbank(
        wave, htk_compat=True, sample_frequency=config.sample_rate, use_energy=False, window_type="hanning",
        num_mel_bins=config.num_mel_bins, dither=0.0, frame_length=config.frame_length,
        frame_shift=config.frame_shift,
    )
    return (feats - config.norm_mean) / (2 * config.norm_std)


@dataclass
class SpecAugConfig:
    """SpecAugment of the reference (policy ``icbhi_ast_sup``): no time warp, two frequency and
    two time masks filled with the spectrogram mean."""

    prob: float = 0.8413  #: chance of augmenting a sample; the reference gates with P(Z <= 1) = Phi(1)
    freq_mask: int = 48  #: mask width uniform in {0..freq_mask-1} bins
    num_freq_masks: int = 2
    time_mask: int = 160  #: mask width uniform in {0..time_mask-1} frames
    num_time_masks: int = 2
    mask_value: str = "mean"  #: mean | zero

    def __post_init__(self) -> None:
        if self.mask_value not in ("mean", "zero"):
            raise ValueError(f"specaug.mask_value must be mean or zero, got {self.mask_value!r}")


class SpecAugment:
    """Random frequency and time masking of one (frames, mel bins) spectrogram.

    Uses torch's global RNG (seeded per worker by Lightning's ``seed_everything(workers=True)``).
    """

    def __init__(self, config: SpecAugConfig):
        self.config = config

    def __call__(self, spec: Tensor) -> Tensor:
        cfg = self.config
        if torch.rand(()) >= cfg.prob:
            return spec
        spec = spec.clone()
        value = spec.mean() if cfg.mask_value == "mean" else spec.new_zeros(())
        frames, bins = spec.shape
        for _ in range(cfg.num_freq_masks):
            width = int(torch.randint(0, max(1, min(cfg.freq_mask, bins + 1)), ()))
            first = int(torch.randint(0, bins - width + 1, ()))
            spec[:, first:first + width] = value
        for _ in range(cfg.num_time_masks):
            width = int(torch.randint(0, max(1, min(cfg.time_mask, frames + 1)), ()))
            first = int(torch.randint(0, frames - width + 1, ()))
            spec[first:first + width, :] = value
        return spec


def cycle_features(records: list[CycleRecord], config: FeatureConfig, progress: bool = False):
    """Yield ``(record, fbank)`` for ``records`` in order, loading each recording once."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc="fbank", unit="cycle")
    for audio, group in groupby(records, key=lambda r: r.audio):
        group = list(group)
        wave = load_recording(audio, config.sample_rate, config.resampler)
        waves = cycle_waves(wave, config.sample_rate, [(r.start, r.end) for r in group],
                            config.num_samples, config.pad_type, sources=[r.source for r in group])
        for record, cycle in zip(group, waves, strict=True):
            yield record, fbank(cycle, config)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()


@dataclass
class CachedFeatures:
    """A feature cache opened for reading: ``feats`` is memory-mapped (N, frames, mel bins)."""

    path: Path
    feats: np.ndarray
    labels: np.ndarray
    ids: list[str]


def cache_dir_for(manifest: str | Path, config: FeatureConfig, cache_root: str | Path) -> Path:
    """``<cache_root>/<split folder>-<config key>-<manifest hash>``."""
    manifest = Path(manifest)
    digest = manifest_digest(manifest)[:8]
    return Path(cache_root) / f"{manifest.parent.name}-{config.key()}-{digest}"


def build_feature_cache(manifest: str | Path, config: FeatureConfig, cache_root: str | Path,
                        progress: bool = True) -> Path:
    """Compute the features of every cycle of ``manifest`` once and store them; returns the
    cache folder. An existing complete cache for the same config and manifest is reused."""
    target = cache_dir_for(manifest, config, cache_root)
    if (target / "meta.json").is_file():
        return target
    records = read_manifest(manifest)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a private temporary folder: several builders (one per node under DDP) never share one
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fbank is single-threaded work per cycle; more threads only add overhead
    try:
        _write_cache(tmp, manifest, records, config, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    try:
        os.rename(tmp, target)
    except OSError:  # a concurrent builder finished first; keep its copy
        if not (target / "meta.json").is_file():
            raise
        shutil.rmtree(tmp)
    return target


def _write_cache(folder: Path, manifest: str | Path, records: list[CycleRecord], config: FeatureConfig,
                 progress: bool) -> None:
    feats = np.lib.format.open_memmap(folder / "feats.npy", mode="w+", dtype=np.float32,
                                      shape=(len(records), config.num_frames, config.num_mel_bins))
    for i, (record, feat) in enumerate(cycle_features(records, config, progress)):
        if feat.shape != feats.shape[1:]:
            raise RuntimeError(f"{record.source}: cycle {record.id} of {record.audio} gave fbank {tuple(feat.shape)}, "
                               f"expected {feats.shape[1:]}")
        feats[i] = feat.numpy()
    feats.flush()
    del feats
    np.save(folder / "labels.npy", np.array([r.label for r in records], dtype=np.int64))
    (folder / "ids.txt").write_text("".join(f"{r.id}\n" for r in records))
    meta = {"manifest": str(Path(manifest).resolve()), "manifest_sha1": manifest_digest(manifest),
            "num_cycles": len(records), "config": dataclasses.asdict(config), "version": CACHE_VERSION}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))  # written last: marks a complete cache


def load_feature_cache(path: str | Path) -> CachedFeatures:
    """Open a cache folder written by :func:`build_feature_cache`."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{path}: not a complete feature cache (no meta.json); rebuild it (recipe stage 2)")
    ids = (path / "ids.txt").read_text().splitlines()
    return CachedFeatures(path, np.load(path / "feats.npy", mmap_mode="r"), np.load(path / "labels.npy"), ids)
