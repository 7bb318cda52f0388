"""The LibriSpeech phone-transcript layout s3prl's ``ctc`` + ``libriphone`` reads (SUPERB PR)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from audio_compress.superb.layouts.common import (
    SPLITS,
    LayoutError,
    Utt,
    by_split,
    finish_layout,
    fresh_layout,
    load_utt,
    signature,
    start_layout,
    write_wav,
)

__all__ = ["build_pr_layout"]


def build_pr_layout(utts: Sequence[Utt], out: str | Path) -> dict:
    """LibriSpeech-style phone-transcript layout for ``ctc`` + ``libriphone``."""
    out = Path(out)
    utts = [u for u in utts if u.phones]
    parts = by_split(utts, "utterances with phone transcripts (phn)")
    for u in utts:
        if not re.fullmatch(r"[^-\s]+-[^-\s]+-[^-\s]+", u.utt_id):
            raise LayoutError(f"{u.utt_id}: phoneme recognition needs LibriSpeech-style ids "
                              "<speaker>-<chapter>-<n> (s3prl finds the transcript from the name)")
    sig = signature(utts, {"task": "pr"})
    if (kept := fresh_layout(out, sig)) is not None:
        return kept
    start_layout(out)
    phones: set[str] = set()
    for split in SPLITS:
        chapters: dict[Path, list[str]] = {}
        for u in parts[split]:
            spk, chapter, _ = u.utt_id.split("-")
            folder = out / "LibriSpeech" / split / spk / chapter
            write_wav(folder / f"{u.utt_id}.flac", load_utt(u), fmt="FLAC")
            tokens = u.phones.split()
            phones.update(tokens)
            chapters.setdefault(folder, []).append(f"{u.utt_id} {' '.join(tokens)}\n")
        for folder, lines in chapters.items():
            spk, chapter = folder.parent.name, folder.name
            (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(sorted(lines)))
    vocab = sorted(phones)
    (out / "vocab.txt").write_text("".join(f"{p}\n" for p in vocab))
    (out / "lexicon.txt").write_text("".join(f"{p} {p}\n" for p in vocab))
    return finish_layout(out, sig, {"task": "pr", "path": str(out / "LibriSpeech"),
                              "splits": list(SPLITS), "num_phones": len(vocab),
                              "counts": {s: len(parts[s]) for s in SPLITS}})
