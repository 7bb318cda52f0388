"""What every layout builder shares: the utterance record, audio I/O and the ``layout.json``
marker that lets an unchanged layout be kept."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_compress.frames import RECEPTIVE_FIELD, SAMPLE_RATE
from compact_ssl.audio import load_audio
from compact_ssl.io import write_json

#: Version of the layout writer; bump when its output changes (forces a rebuild).
LAYOUT_VERSION = 1
#: The 10 keywords of SUPERB KS, in s3prl's class order (then ``_unknown_``, ``_silence_``).
KS_CLASSES = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SPLITS = ("train", "dev", "test")
NONE = "_none_"


class LayoutError(ValueError):
    """Input data that cannot be written in the layout a task expects."""


@dataclass(frozen=True)
class Utt:
    """One utterance of a source corpus, with the labels the mini tasks use.

    ``split`` is train / dev / test; ``video`` groups a speaker's utterances (VoxCeleb's video
    folder; the chapter for LibriSpeech-style ids); ``keyword`` / ``intent`` / ``phones`` are
    ``None`` when the utterance has no such label. ``multichannel`` is the policy of
    :func:`compact_ssl.audio.load_audio` for multi-channel files (a data dir's recorded one).
    """

    utt_id: str
    speaker: str
    split: str
    wav: str
    video: str = "v0"
    keyword: str | None = None
    intent: str | None = None
    phones: str | None = None
    text: str | None = None
    multichannel: str = "refuse"


def write_wav(path: Path, wav: np.ndarray, fmt: str | None = None) -> None:
    """16-bit audio at 16 kHz (``fmt="FLAC"`` for LibriSpeech-style layouts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, SAMPLE_RATE, subtype="PCM_16", format=fmt)


def load_utt(utt: Utt) -> np.ndarray:
    """The utterance's audio at 16 kHz, padded to at least one frame."""
    return load_audio(utt.wav, sample_rate=SAMPLE_RATE, resample=True, min_samples=RECEPTIVE_FIELD,
                      multichannel=utt.multichannel)


def safe_name(name: str) -> str:
    """``name`` usable as a file name in every layout (only letters, digits, ``.`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name)


def by_split(utts: Iterable[Utt], what: str | None = None) -> dict[str, list[Utt]]:
    """Utterances by split; with ``what`` (e.g. "keyword utterances"), a split without any is a
    :class:`LayoutError` ("no <what> in the <split> split")."""
    out: dict[str, list[Utt]] = {s: [] for s in SPLITS}
    for u in utts:
        out[u.split].append(u)
    if what is not None:
        for split in SPLITS:
            if not out[split]:
                raise LayoutError(f"no {what} in the {split} split")
    return out


# ----------------------------------------------------------- layout.json: keep unchanged layouts

def signature(utts: Sequence[Utt], options: Mapping) -> str:
    """Hash of the builder version, its options and the source files (name, size, mtime)."""
    h = hashlib.sha1()
    h.update(json.dumps({"version": LAYOUT_VERSION, "options": options}, sort_keys=True).encode())
    for u in utts:
        h.update(json.dumps(asdict(u), sort_keys=True).encode())
        try:
            st = os.stat(u.wav)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()


def fresh_layout(out: Path, sig: str) -> dict | None:
    """The ``layout.json`` of ``out`` when it holds a finished layout built with signature
    ``sig`` (the builder then keeps it), else ``None``."""
    marker = out / "layout.json"
    if not marker.is_file():
        return None
    try:
        doc = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if doc.get("signature") == sig else None


def start_layout(out: Path) -> None:
    """An empty ``out`` (a stale or partial layout is removed)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def finish_layout(out: Path, sig: str, summary: Mapping) -> dict:
    """Write ``layout.json`` last, so only a complete layout is ever fresh; returns it."""
    doc = {"signature": sig, "layout_version": LAYOUT_VERSION, **summary}
    write_json(out / "layout.json", doc)
    return doc
