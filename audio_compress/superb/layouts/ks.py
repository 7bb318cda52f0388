"""The Speech Commands v0.01 layout s3prl's ``speech_commands`` reads (SUPERB KS)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audio_compress.frames import SAMPLE_RATE
from audio_compress.superb.layouts.common import (
    KS_CLASSES,
    LayoutError,
    Utt,
    by_split,
    finish_layout,
    fresh_layout,
    load_utt,
    safe_name,
    signature,
    start_layout,
    write_wav,
)

__all__ = ["build_ks_layout", "speech_commands_split"]


def speech_commands_split(file_name: str, validation_percent: float = 10.0,
                          testing_percent: float = 10.0) -> str:
    """Which part of a Speech Commands training root s3prl assigns ``file_name`` to
    (``"validation"``, ``"testing"`` (discarded by s3prl) or ``"training"``): the SHA-1 of the
    name before ``_nohash_``, as an integer modulo 2**27, scaled to a percentage."""
    stem = re.sub(r"_nohash_.*$", "", file_name)
    max_per_class = 2 ** 27 - 1
    value = int(hashlib.sha1(stem.encode("utf-8")).hexdigest(), 16)
    percent = (value % (max_per_class + 1)) * (100.0 / max_per_class)
    if percent < validation_percent:
        return "validation"
    if percent < validation_percent + testing_percent:
        return "testing"
    return "training"


def _sc_name(utt_id: str, want: str) -> str:
    """A ``<prefix>_nohash_0.wav`` name for ``utt_id`` that s3prl puts in part ``want``."""
    base = safe_name(utt_id)
    for salt in range(100000):
        name = f"{base}x{salt}_nohash_0.wav"
        if speech_commands_split(name) == want:
            return name
    raise LayoutError(f"no file name found for {utt_id} in part {want}")  # pragma: no cover


def _noise(rng: np.random.Generator, seconds: float, kind: int) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    if kind % 3 == 0:
        x = rng.standard_normal(n)
    elif kind % 3 == 1:  # brown-ish noise
        x = np.cumsum(rng.standard_normal(n))
        x -= np.convolve(x, np.ones(801) / 801, mode="same")
    else:  # mains hum with noise
        t = np.arange(n) / SAMPLE_RATE
        x = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t) + 0.3 * rng.standard_normal(n)
    x = x / (np.abs(x).max() + 1e-9)
    return (x * rng.uniform(0.003, 0.03)).astype(np.float32)


def build_ks_layout(utts: Sequence[Utt], out: str | Path, noise_files: int = 3,
                    silence_test_files: int = 4, seed: int = 0) -> dict:
    """Speech Commands layout for ``speech_commands`` from the utterances with a keyword."""
    out = Path(out)
    utts = [u for u in utts if u.keyword]
    bad = sorted({u.keyword for u in utts} - set(KS_CLASSES))
    if bad:
        raise LayoutError(f"keywords {bad} are not SUPERB KS classes {list(KS_CLASSES)}")
    parts = by_split(utts, "keyword utterances")
    options = {"task": "ks", "noise_files": noise_files, "silence_test_files": silence_test_files,
               "seed": seed}
    sig = signature(utts, options)
    if (kept := fresh_layout(out, sig)) is not None:
        return kept
    start_layout(out)
    lists = {"validation": [], "testing": []}
    for split, want in (("train", "training"), ("dev", "validation")):
        for u in parts[split]:
            name = _sc_name(u.utt_id, want)
            write_wav(out / "train" / u.keyword / name, load_utt(u))
            if want == "validation":
                lists["validation"].append(f"{u.keyword}/{name}")
    for u in parts["test"]:
        write_wav(out / "test" / u.keyword / f"{safe_name(u.utt_id)}_nohash_0.wav", load_utt(u))
    rng = np.random.default_rng(seed)
    for k in range(noise_files):
        write_wav(out / "train" / "_background_noise_" / f"noise{k}.wav", _noise(rng, 3.0, k))
    for k in range(silence_test_files):
        write_wav(out / "test" / "_silence_" / f"silence{k}_nohash_0.wav", _noise(rng, 1.0, k))
    (out / "train" / "validation_list.txt").write_text("".join(f"{x}\n" for x in sorted(lists["validation"])))
    (out / "train" / "testing_list.txt").write_text("")
    test_classes = sorted({u.keyword for u in parts["test"]} | ({"_silence_"} if silence_test_files else set()))
    return finish_layout(out, sig, {
        "task": "ks", "train_root": str(out / "train"), "test_root": str(out / "test"),
        "counts": {"train": len(parts["train"]), "dev": len(parts["dev"]),
                   "test": len(parts["test"]) + silence_test_files, "background_noise": noise_files},
        "test_classes": test_classes,
    })
