"""Reading and validating audio files (soundfile; librosa for resampling).

Every problem is raised as :class:`AudioError`, whose message names the file and
says what is wrong and what to do. ``torchaudio.load`` is deliberately not used:
since torchaudio 2.9 it needs torchcodec and FFmpeg.

Truncation: libsndfile sizes a WAV by the bytes present, so a WAV whose data chunk was cut
would load at the shorter length without complaint; the RIFF and data chunk sizes declared in
the header are therefore compared with the file size (:func:`wav_truncation`). A cut FLAC is
caught by decoding: its STREAMINFO declares the sample count, and reading past the cut fails.

Multi-channel files are refused unless a policy says how to make them mono
(:data:`MULTICHANNEL_POLICIES`): mixing channels silently changes what a model hears.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: The rate the speech models are trained at, and the default target of :func:`load_audio`.
SAMPLE_RATE = 16000
#: How :func:`load_audio` treats a file with several channels: ``refuse`` (an :class:`AudioError`
#: of kind ``multichannel``), ``mean`` (average the channels) or ``first`` (keep channel 0).
MULTICHANNEL_POLICIES = ("refuse", "mean", "first")
#: What to do about a cut file; the data-prep option is named because that is where it is found.
TRUNCATED_ADVICE = ("the file is truncated or damaged (e.g. an interrupted download or extraction); "
                    "re-download or re-extract it, or leave it out at data preparation with --on_bad_audio skip")
# libsndfile reports SF_COUNT_MAX frames when the header does not declare a length
# (a FLAC with STREAMINFO total_samples = 0); anything this large is "unknown".
_UNKNOWN_LENGTH = 2**62
# Chunks before a WAV's data chunk (fmt, fact, LIST) are small; a data chunk further in than
# this is not looked for, and the size check is then skipped.
_WAV_HEAD_BYTES = 1 << 16
# Samples read at the end of a file by the header check: spans the last FLAC frame of the
# LibriSpeech encoder (4096 or 4608 samples per block) whatever the cut.
_TAIL_FRAMES = 8192
# Frames decoded at a time by the full check, so that memory does not grow with the file length.
_BLOCK_FRAMES = 1 << 18


class AudioError(ValueError):
    """A file that cannot be used as training or evaluation audio."""

    def __init__(self, path: str | Path, problem: str, kind: str):
        self.path = str(path)
        self.problem = problem
        #: One of ``unreadable``, ``empty``, ``non_finite``, ``too_short``, ``sample_rate``,
        #: ``truncated``, ``multichannel``.
        self.kind = kind
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file."""

    path: str
    sample_rate: int
    num_samples: int
    channels: int


@dataclass(frozen=True)
class WavChunks:
    """Sizes declared in a RIFF/WAVE header (all in bytes)."""

    riff_size: int
    data_offset: int
    data_size: int
    block_align: int


def parse_wav_chunks(head: bytes) -> WavChunks | None:
    """Parse the start of a RIFF/WAVE file; ``None`` when ``head`` is not one or its data chunk
    header is not within ``head`` (RF64/Wave64 and big-endian RIFX are not parsed either)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    riff_size = struct.unpack_from("<I", head, 4)[0]
    block_align = 0
    pos = 12
    while pos + 8 <= len(head):
        chunk_id = head[pos: pos + 4]
        size = struct.unpack_from("<I", head, pos + 4)[0]
        if chunk_id == b"fmt " and pos + 22 <= len(head):
            block_align = struct.unpack_from("<H", head, pos + 20)[0]
        elif chunk_id == b"data":
            return WavChunks(riff_size, pos + 8, size, block_align)
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def wav_truncation(head: bytes, file_size: int) -> str | None:
    """What is missing from a WAV of ``file_size`` bytes starting with ``head``, or ``None``.

    Compares the data chunk's declared size, then the RIFF size, with the bytes present.
    Sizes of 0xFFFFFFFF (written by streaming encoders that cannot seek back) mean "unknown"
    and are not checked; one missing pad byte at the very end is tolerated.
    """
    chunks = parse_wav_chunks(head)
    if chunks is None:
        return None
    unknown = 0xFFFFFFFF
    present = file_size - chunks.data_offset
    if chunks.data_size != unknown and present < chunks.data_size:
        align = max(chunks.block_align, 1)
        return (f"WAV data chunk declares {chunks.data_size} bytes ({chunks.data_size // align} samples) "
                f"but only {max(present, 0)} bytes ({max(present, 0) // align} samples) are present")
    if chunks.riff_size not in (0, unknown) and file_size < chunks.riff_size + 8 - 1:
        return (f"WAV RIFF header declares {chunks.riff_size + 8} bytes but the file has {file_size} "
                "(its end, after the audio data, is missing)")
    return None


def check_wav_size(path: str | Path) -> None:
    """Raise :class:`AudioError` (``truncated``) if ``path`` is a WAV shorter than its header says."""
    with open(path, "rb") as f:
        head = f.read(_WAV_HEAD_BYTES)
        size = os.fstat(f.fileno()).st_size
    problem = wav_truncation(head, size)
    if problem is not None:
        raise AudioError(path, f"{problem}; {TRUNCATED_ADVICE}", "truncated")


def _unreadable(path: str | Path, err: Exception) -> AudioError:
    return AudioError(path, f"cannot read audio ({err}); is the file a valid WAV/FLAC?", "unreadable")


def _cut_short(path: str | Path, declared: int, what: str) -> AudioError:
    return AudioError(path, f"the header declares {declared} samples but {what}; {TRUNCATED_ADVICE}", "truncated")


def _open(path: str | Path) -> sf.SoundFile:
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError)
        raise _unreadable(path, err) from err
    if f.frames >= _UNKNOWN_LENGTH:
        f.close()
        raise AudioError(path, "the header does not declare the number of samples (e.g. a FLAC written as a "
                         "stream); re-encode the file (flac or sox) so that its length is recorded", "unreadable")
    return f


def audio_info(path: str | Path) -> AudioInfo:
    """Read only the header of ``path``; raises :class:`AudioError` if unreadable."""
    with _open(path) as f:
        return AudioInfo(str(path), int(f.samplerate), int(f.frames), int(f.channels))


def verify_audio(path: str | Path, full: bool = True) -> AudioInfo:
    """Check that ``path`` is complete and decodable and return its header facts.

    ``full=True`` decodes every sample (block by block, so memory stays small): catches a cut
    or damaged file anywhere and NaN/Inf samples. ``full=False`` is the cheap check: it reads
    the header, compares a WAV's declared sizes with the file size and decodes only the last
    samples, which fails for a cut FLAC; damage in the middle and NaN/Inf go unseen.
    Sample rate, length and channel count are not judged here (see :func:`load_audio`).

    Raises:
        AudioError: kind ``unreadable``, ``truncated`` or (``full`` only) ``non_finite``.
    """
    with _open(path) as f:
        info = AudioInfo(str(path), int(f.samplerate), int(f.frames), int(f.channels))
        is_wav = f.format in ("WAV", "WAVEX")
        decoded = 0
        bad = 0
        try:
            if full:
                while True:
                    block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    decoded += block.shape[0]
                    bad += int((~np.isfinite(block)).sum())
            else:
                want = min(info.num_samples, _TAIL_FRAMES)
                f.seek(info.num_samples - want)
                decoded = info.num_samples - want + f.read(want, dtype="float32", always_2d=True).shape[0]
        except Exception as err:  # libsndfile: "lost sync", "psf_fseek() failed", ...
            what = f"decoding stopped after {decoded} ({err})" if full else f"its last samples cannot be decoded ({err})"
            raise _cut_short(path, info.num_samples, what) from err
    if decoded < info.num_samples:
        raise _cut_short(path, info.num_samples, f"only {decoded} could be decoded")
    if is_wav:
        check_wav_size(path)
    if bad:
        raise AudioError(path, f"{bad} samples are NaN or Inf; the file is corrupt", "non_finite")
    return info


def multichannel_problem(channels: int) -> str:
    """The message of a refused file with ``channels`` channels: what to pass instead."""
    return (f"has {channels} channels but mono audio is expected; say how to make it mono: "
            "multichannel='mean' (average the channels) or 'first' (keep channel 0), "
            "in data preparation and recipes --multichannel mean (or first)")


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    resample: bool = True,
    min_samples: int = 1,
    multichannel: str = "refuse",
) -> np.ndarray:
    """Load ``path`` as a mono float32 waveform at ``sample_rate``.

    A file with several channels is refused unless ``multichannel`` is ``"mean"`` (average
    the channels) or ``"first"`` (keep channel 0). A file at another rate is resampled when
    ``resample`` is true and refused otherwise.

    Raises:
        AudioError: the file is unreadable, truncated (fewer samples than its header declares),
            empty, contains NaN/Inf, has several channels (with ``multichannel="refuse"``), has
            the wrong sample rate (with ``resample=False``), or is shorter than ``min_samples``
            after resampling (speech callers pass the CNN's 400-sample receptive field:
            shorter audio would give zero frames).
        ValueError: ``multichannel`` is not one of :data:`MULTICHANNEL_POLICIES`.
    """
    if multichannel not in MULTICHANNEL_POLICIES:
        raise ValueError(f"multichannel must be one of {', '.join(MULTICHANNEL_POLICIES)}, not {multichannel!r}")
    with _open(path) as f:
        sr, declared, is_wav = int(f.samplerate), int(f.frames), f.format in ("WAV", "WAVEX")
        if f.channels > 1 and multichannel == "refuse":  # before decoding: no need to read it
            raise AudioError(path, multichannel_problem(f.channels), "multichannel")
        try:
            wav = f.read(dtype="float32", always_2d=True)
        except Exception as err:
            raise _cut_short(path, declared, f"decoding failed ({err})") from err
    if wav.shape[0] < declared:
        raise _cut_short(path, declared, f"only {wav.shape[0]} could be decoded")
    if is_wav:
        check_wav_size(path)
    wav = wav[:, 0] if wav.shape[1] == 1 or multichannel == "first" else wav.mean(axis=1)
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
