"""Compatibility layer that lets s3prl 0.4.18 import and run on current libraries.

s3prl 0.4.18 was written for torchaudio < 2.9, huggingface_hub < 1.0 and torch < 2.6.
On torchaudio 2.11, huggingface_hub >= 1.0 and torch 2.11 it breaks in four places:

* ``torchaudio.set_audio_backend`` / ``get_audio_backend`` were removed; s3prl calls them at
  import time (``s3prl.hub`` imports every upstream, some of which call it).
* ``torchaudio.sox_effects`` was removed; s3prl's datasets (speech commands, VoxCeleb, QUESST)
  load audio through ``apply_effects_file`` with effects such as
  ``[["channels", "1"], ["rate", "16000"], ["gain", "-3.0"]]``.
* ``torchaudio.load`` / ``info`` / ``save`` now need torchcodec and FFmpeg (which this toolkit
  does not install); they are served here by soundfile when torchcodec is absent.
* ``huggingface_hub.HfFolder`` and ``Repository`` were removed; s3prl's downstream runner imports
  them (they are used only to push results to the hub).
* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and s3prl checkpoints hold an
  ``argparse.Namespace``; it is allow-listed as a safe global.

:func:`apply` installs all shims once, idempotently, without touching s3prl's files. It must run
before anything from s3prl is imported; :func:`audio_compress.upstream.register` calls it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

_APPLIED = False

#: sox effects the shim implements (name -> number of arguments it accepts).
SUPPORTED_SOX_EFFECTS = ("channels", "rate", "gain", "norm", "trim", "remix")


class SoxEffectError(ValueError):
    """A sox effect chain that the soundfile-based shim cannot reproduce."""


def _load_soundfile(
    uri,
    frame_offset: int = 0,
    num_frames: int = -1,
    normalize: bool = True,
    channels_first: bool = True,
    format: str | None = None,  # noqa: A002 - torchaudio's parameter name
    buffer_size: int = 4096,
    backend: str | None = None,
) -> tuple[torch.Tensor, int]:
    """``torchaudio.load`` replacement backed by soundfile (float32 in [-1, 1])."""
    stop = None if num_frames < 0 else frame_offset + num_frames
    data, sr = sf.read(uri, start=frame_offset, stop=stop, dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.T if channels_first else data))
    return wav, sr


class _AudioMetaData:
    """Subset of torchaudio's ``AudioMetaData`` that s3prl reads."""

    def __init__(self, sample_rate: int, num_frames: int, num_channels: int, subtype: str):
        self.sample_rate = sample_rate
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.bits_per_sample = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "PCM_U8": 8}.get(subtype, 0)
        self.encoding = subtype


def _info_soundfile(uri, format: str | None = None, backend: str | None = None) -> _AudioMetaData:  # noqa: A002
    """``torchaudio.info`` replacement backed by soundfile."""
    info = sf.info(uri)
    return _AudioMetaData(int(info.samplerate), int(info.frames), int(info.channels), info.subtype)


def _save_soundfile(uri, src: torch.Tensor, sample_rate: int, channels_first: bool = True, **_: object) -> None:
    """``torchaudio.save`` replacement backed by soundfile."""
    data = src.detach().cpu().numpy()
    sf.write(uri, data.T if channels_first else data, sample_rate)


def apply_effects_tensor(
    tensor: torch.Tensor,
    sample_rate: int,
    effects: Sequence[Sequence[str]],
    channels_first: bool = True,
) -> tuple[torch.Tensor, int]:
    """Apply the sox effects s3prl uses (``channels``, ``rate``, ``gain``, ``norm``, ``trim``,
    ``remix``) to a ``(channels, time)`` tensor; any other effect raises :class:`SoxEffectError`."""
    wav = tensor if channels_first else tensor.t()
    wav = wav.to(torch.float32)
    sr = int(sample_rate)
    for effect in effects:
        name, args = effect[0], list(effect[1:])
        if name == "channels":
            if int(args[0]) != 1:
                raise SoxEffectError(f"sox shim: only 'channels 1' is supported, got {effect}")
            wav = wav.mean(dim=0, keepdim=True)
        elif name == "remix":
            if args != ["-"]:
                raise SoxEffectError(f"sox shim: only 'remix -' (downmix) is supported, got {effect}")
            wav = wav.mean(dim=0, keepdim=True)
        elif name == "rate":
            target = int(float(args[0]))
            if target != sr:
                from compact_ssl.audio import resample_audio

                wav = torch.from_numpy(
                    np.stack([resample_audio(ch.numpy(), sr, target) for ch in wav])
                )
                sr = target
        elif name == "gain":
            if args and args[0] == "-n":
                level = float(args[1]) if len(args) > 1 else 0.0
                wav = _normalize_peak(wav, level)
            else:
                wav = wav * (10.0 ** (float(args[0]) / 20.0))
        elif name == "norm":
            wav = _normalize_peak(wav, float(args[0]) if args else 0.0)
        elif name == "trim":
            start = int(round(float(args[0]) * sr))
            stop = wav.shape[1] if len(args) < 2 else start + int(round(float(args[1]) * sr))
            wav = wav[:, start:stop]
        else:
            raise SoxEffectError(
                f"sox shim: effect {name!r} is not supported (supported: {', '.join(SUPPORTED_SOX_EFFECTS)}); "
                "install an older torchaudio with sox support to use it"
            )
    return (wav if channels_first else wav.t()), sr


def _normalize_peak(wav: torch.Tensor, level_db: float) -> torch.Tensor:
    peak = wav.abs().max()
    if peak <= 0:
        return wav
    return wav * (10.0 ** (level_db / 20.0) / peak)


def apply_effects_file(
    path: str | Path,
    effects: Sequence[Sequence[str]],
    normalize: bool = True,
    channels_first: bool = True,
    format: str | None = None,  # noqa: A002
) -> tuple[torch.Tensor, int]:
    """``torchaudio.sox_effects.apply_effects_file`` on top of soundfile and :func:`apply_effects_tensor`."""
    wav, sr = _load_soundfile(str(path), channels_first=True)
    return apply_effects_tensor(wav, sr, effects, channels_first=channels_first)


def _install_torchaudio_shims() -> None:
    import torchaudio

    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None
    if not hasattr(torchaudio, "get_audio_backend"):
        torchaudio.get_audio_backend = lambda: "soundfile"
    if importlib.util.find_spec("torchcodec") is None:
        torchaudio.load = _load_soundfile
        torchaudio.info = _info_soundfile
        torchaudio.save = _save_soundfile
    if "torchaudio.sox_effects" not in sys.modules and not hasattr(torchaudio, "sox_effects"):
        shim = types.ModuleType("torchaudio.sox_effects")
        shim.__doc__ = "soundfile-based stand-in for the removed torchaudio.sox_effects (audio_compress)."
        shim.apply_effects_file = apply_effects_file
        shim.apply_effects_tensor = apply_effects_tensor
        shim.effect_names = lambda: list(SUPPORTED_SOX_EFFECTS)
        sys.modules["torchaudio.sox_effects"] = shim
        torchaudio.sox_effects = shim


class _HfFolder:
    """Stand-in for ``huggingface_hub.HfFolder`` (removed in 1.0) using the current token API."""

    @staticmethod
    def get_token() -> str | None:
        from huggingface_hub import get_token

        return get_token()

    @staticmethod
    def save_token(token: str) -> None:
        from huggingface_hub import login

        login(token=token, add_to_git_credential=False)

    @staticmethod
    def delete_token() -> None:
        from huggingface_hub import logout

        logout()


class _RemovedRepository:
    """``huggingface_hub.Repository`` was removed in 1.0; s3prl uses it only to push results."""

    def __init__(self, *args: object, **kwargs: object):
        raise RuntimeError(
            "huggingface_hub.Repository no longer exists (huggingface_hub >= 1.0); "
            "s3prl's --push_to_hf_hub is not supported. Upload the expdir with "
            "huggingface_hub.upload_folder instead."
        )


def _install_hub_shims() -> None:
    import huggingface_hub

    if not hasattr(huggingface_hub, "HfFolder"):
        huggingface_hub.HfFolder = _HfFolder
    if not hasattr(huggingface_hub, "Repository"):
        huggingface_hub.Repository = _RemovedRepository


def apply() -> None:
    """Install every shim (idempotent). Call before importing s3prl."""
    global _APPLIED
    if _APPLIED:
        return
    _install_torchaudio_shims()
    _install_hub_shims()
    torch.serialization.add_safe_globals([argparse.Namespace])
    _APPLIED = True
