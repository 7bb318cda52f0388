"""Reading and validating audio files (soundfile; librosa for resampling).

Every problem is raised as :class:`AudioError`, whose message names the file and
says what is wrong and what to do. ``torchaudio.load`` is deliberately not used:
since torchaudio 2.9 it needs torchcodec and FFmpeg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: The rate the speech models are trained at, and the default target of :func:`load_audio`.
SAMPLE_RATE = 16000


class AudioError(ValueError):
    """A file that cannot be used as training or evaluation audio."""

    def __init__(self, path: str | Path, problem: str, kind: str):
        self.path = str(path)
        self.problem = problem
        #: One of ``unreadable``, ``empty``, ``non_finite``, ``too_short``, ``sample_rate``.
        self.kind = kind
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file."""

    path: str
    sample_rate: int
    num_samples: int
    channels: int


def audio_info(path: str | Path) -> AudioInfo:
    """Read only the header of ``path``; raises :class:`AudioError` if unreadable."""
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError)
        raise AudioError(path, f"cannot read audio header ({err}); is the file a valid WAV/FLAC?",
                         "unreadable") from err
    return AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels))


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    resample: bool = True,
    min_samples: int = 1,
) -> np.ndarray:
    """Load ``path`` as a mono float32 waveform at ``sample_rate``.

    Multi-channel audio is averaged to mono. A file at another rate is resampled
    when ``resample`` is true and refused otherwise.

    Raises:
        AudioError: the file is unreadable, empty, contains NaN/Inf, has the wrong
            sample rate (with ``resample=False``), or is shorter than ``min_samples``
            after resampling (speech callers pass the CNN's 400-sample receptive field:
            shorter audio would give zero frames).
    """
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(path, f"cannot read audio ({err}); is the file a valid WAV/FLAC?",
                         "unreadable") from err
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if wav.size == 0:
        raise AudioError(path, "file contains no samples; remove it from the list", "empty")
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioError(path, f"{bad} samples are NaN or Inf; the file is corrupt", "non_finite")
    if sr != sample_rate:
        if not resample:
            raise AudioError(
                path,
                f"sample rate is {sr} Hz, expected {sample_rate} Hz; resample the corpus "
                "or enable resampling (resample=True / --resample true)",
                "sample_rate",
            )
        wav = resample_audio(wav, sr, sample_rate)
    if wav.shape[0] < min_samples:
        raise AudioError(
            path,
            f"only {wav.shape[0]} samples at {sample_rate} Hz; at least {min_samples} are needed "
            "(shorter audio gives zero frames)",
            "too_short",
        )
    return np.ascontiguousarray(wav, dtype=np.float32)


def resample_audio(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a 1-D waveform with librosa's high-quality soxr resampler."""
    if orig_sr == target_sr:
        return wav
    import librosa

    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(
        np.float32
    )
