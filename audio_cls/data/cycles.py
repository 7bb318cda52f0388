"""Respiratory cycles as fixed-length waveforms (the Patch-Mix reference preprocessing).

1. Load the recording, mono, resampled to the target rate (:func:`resample`: the reference's
   ``torchaudio.transforms.Resample``, sinc kernel computed in float64).
2. Linear fade-in and fade-out of ``sample_rate // 16`` samples (62.5 ms) over the whole recording.
3. Cut each cycle as samples ``[int(start * sr), int(end * sr))``, clipped to the recording
   (:func:`cycle_problem` says why a cycle cannot be cut; data preparation applies it first).
4. Bring it to ``length`` samples: longer cycles keep their first ``length`` samples; the others,
   including a cycle of exactly ``length`` samples, are tiled and cut (``repeat``, then a linear
   fade-out of ``fade`` samples) or centred in zeros (``zero``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from audio_cls.data.icbhi import IcbhiError
from compact_ssl.audio import audio_info, load_audio

PAD_TYPES = ("repeat", "zero")
RESAMPLERS = ("torchaudio", "soxr")


def fade(wave: np.ndarray, fade_in: int, fade_out: int) -> np.ndarray:
    """Linear fade-in over the first ``fade_in`` samples (0 -> 1) and fade-out over the last
    ``fade_out`` samples (1 -> 0); returns a new array."""
    out = np.array(wave, dtype=np.float32, copy=True)
    n = out.shape[0]
    if fade_in > 0:
        k = min(fade_in, n)
        out[:k] *= np.linspace(0.0, 1.0, fade_in, dtype=np.float32)[:k]
    if fade_out > 0:
        k = min(fade_out, n)
        out[n - k:] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32)[fade_out - k:]
    return out


def fade_samples(sample_rate: int) -> int:
    """Fade length of the reference: ``sample_rate / 16`` (1,000 samples = 62.5 ms at 16 kHz)."""
    return sample_rate // 16


@lru_cache(maxsize=8)
def _resampler(orig_freq: int, new_freq: int):
    """The reference's resampler for one rate pair; its kernel is built once (ICBHI has three native rates)."""
    import torchaudio.transforms as T

    return T.Resample(orig_freq, new_freq)


def resample(wave: np.ndarray, orig_freq: int, new_freq: int) -> np.ndarray:
    """Resample a 1-D float32 waveform as the reference does, with ``torchaudio.transforms.Resample``
    at its defaults (Hann-windowed sinc, 6 zero crossings, roll-off 0.99).

    The transform computes its sinc kernel in float64 and casts it to float32;
    ``torchaudio.functional.resample`` computes it in the waveform's dtype, float32 here, which
    moves the fbank of the 44.1 kHz ICBHI recordings by up to 1.7e-2 (normalized units).
    """
    if orig_freq == new_freq:
        return wave
    with torch.no_grad():
        return _resampler(orig_freq, new_freq)(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).numpy()


def load_recording(path: str | Path, sample_rate: int = 16000, resampler: str = "torchaudio") -> np.ndarray:
    """Mono float32 waveform of a recording at ``sample_rate`` with the whole-recording fade.

    ``resampler``: ``torchaudio`` (:func:`resample`, what the reference uses) or ``soxr``
    (:func:`compact_ssl.audio.resample_audio`). Raises
    :class:`compact_ssl.audio.AudioError` naming the file when it is unreadable, empty or
    non-finite.
    """
    if resampler not in RESAMPLERS:
        raise ValueError(f"unknown resampler {resampler!r}; choose one of {RESAMPLERS}")
    if resampler == "soxr":
        wave = load_audio(path, sample_rate=sample_rate, resample=True, min_samples=1)
    else:
        native = audio_info(path).sample_rate
        wave = load_audio(path, sample_rate=native, resample=False, min_samples=1)
        wave = resample(wave, native, sample_rate)
    fade_len = fade_samples(sample_rate)
    return fade(wave, fade_len, fade_len)


def cycle_span(start: float, end: float, sample_rate: int, num_samples: int) -> tuple[int, int]:
    """Sample indices ``(first, last)`` of the cycle ``[start, end)`` s in a recording of
    ``num_samples`` samples at ``sample_rate``: ``[int(start * sr), min(int(end * sr), num_samples))``."""
    return int(start * sample_rate), min(int(end * sample_rate), num_samples)


def cycle_problem(start: float, end: float, sample_rate: int, num_samples: int) -> str | None:
    """Why the cycle ``[start, end)`` s cannot be cut from a recording of ``num_samples`` samples
    at ``sample_rate`` (a sentence starting with "cycle"), or None when it can.

    A cycle must satisfy ``0 <= start < end``, start inside the recording, and last at least one
    sample (``end - start >= 1 / sample_rate`` and a non-empty :func:`cycle_span`); a cycle that
    only ends past the recording is fine (it is clipped, as in the reference).
    """
    length = f"{num_samples / sample_rate:.3f} s, {num_samples} samples at {sample_rate} Hz"
    if start < 0 or end <= start:
        return f"cycle {start}-{end} s must satisfy 0 <= start < end"
    first, last = cycle_span(start, end, sample_rate, num_samples)
    if first >= num_samples:
        return f"cycle {start}-{end} s starts at or after the end of the recording ({length})"
    if (end - start) * sample_rate < 1 or last <= first:
        return f"cycle {start}-{end} s is shorter than one sample at {sample_rate} Hz ({1 / sample_rate:.6f} s)"
    return None


def cut_cycle(wave: np.ndarray, sample_rate: int, start: float, end: float, source: str = "") -> np.ndarray:
    """Samples ``[int(start * sr), int(end * sr))`` of ``wave``, clipped to its length.

    ``source`` (``annotation file:line``) names where the cycle was annotated. Raises
    :class:`~audio_cls.data.icbhi.IcbhiError` naming it (a plain ValueError without one) when the
    cycle cannot be cut (see :func:`cycle_problem`).
    """
    problem = cycle_problem(start, end, sample_rate, wave.shape[0])
    if problem:
        problem += "; fix the annotation and rerun data preparation (recipe stage 1)"
        raise IcbhiError(source, problem) if source else ValueError(problem)
    first, last = cycle_span(start, end, sample_rate, wave.shape[0])
    return wave[first:last]


def pad_or_trim(cycle: np.ndarray, length: int, pad_type: str = "repeat", fade_out: int = 1000) -> np.ndarray:
    """Bring ``cycle`` to exactly ``length`` samples (see the module docstring).

    Only a cycle longer than ``length`` is trimmed: one of exactly ``length`` samples takes the pad
    branch (tiled once, so unchanged, then faded out), as in the reference.
    """
    if pad_type not in PAD_TYPES:
        raise ValueError(f"unknown pad_type {pad_type!r}; choose one of {PAD_TYPES}")
    n = cycle.shape[0]
    if n == 0:
        raise ValueError("cannot pad an empty cycle")
    if n > length:
        return np.ascontiguousarray(cycle[:length], dtype=np.float32)
    if pad_type == "repeat":
        tiled = np.tile(cycle, -(-length // n))[:length]
        return fade(tiled, 0, fade_out)
    out = np.zeros(length, dtype=np.float32)
    offset = (length - n) // 2
    out[offset:offset + n] = cycle
    return out


def cycle_waves(
    wave: np.ndarray,
    sample_rate: int,
    intervals: Iterable[tuple[float, float]],
    length: int,
    pad_type: str = "repeat",
    sources: Sequence[str] | None = None,
) -> Iterator[np.ndarray]:
    """Fixed-length waveforms of the cycles ``(start, end)`` of one (loaded, faded) recording.

    ``sources``: ``annotation file:line`` of each cycle (:attr:`CycleRecord.source
    <audio_cls.data.manifest.CycleRecord.source>`), so that an uncuttable cycle names its line.
    """
    intervals = list(intervals)
    if sources is not None and len(sources) != len(intervals):
        raise ValueError(f"{len(intervals)} cycles but {len(sources)} sources")
    for i, (start, end) in enumerate(intervals):
        cycle = cut_cycle(wave, sample_rate, start, end, sources[i] if sources is not None else "")
        yield pad_or_trim(cycle, length, pad_type, fade_samples(sample_rate))
