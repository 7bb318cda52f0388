"""The VoxCeleb1 layout s3prl's ``voxceleb1`` reads (SUPERB SID)."""

from __future__ import annotations

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
    safe_name,
    signature,
    start_layout,
    write_wav,
)

__all__ = ["build_sid_layout"]


def build_sid_layout(utts: Sequence[Utt], out: str | Path) -> dict:
    """VoxCeleb1 layout + ``iden_split.txt`` for ``voxceleb1`` (all utterances)."""
    out = Path(out)
    parts = by_split(utts, "utterances")
    speakers = sorted({u.speaker for u in utts})
    unseen = sorted({u.speaker for u in parts["test"] + parts["dev"]} - {u.speaker for u in parts["train"]})
    if unseen:
        raise LayoutError(f"speaker(s) {unseen} have no training utterance; speaker "
                          "identification needs every speaker in train")
    ids = {spk: f"id{10001 + i}" for i, spk in enumerate(speakers)}
    sig = signature(utts, {"task": "sid"})
    if (kept := fresh_layout(out, sig)) is not None:
        return kept
    start_layout(out)
    lines = []
    for split, code, folder in (("train", 1, "dev"), ("dev", 2, "dev"), ("test", 3, "test")):
        for u in parts[split]:
            rel = f"{ids[u.speaker]}/{safe_name(u.video)}/{safe_name(u.utt_id)}.wav"
            write_wav(out / folder / "wav" / rel, load_utt(u))
            lines.append(f"{code} {rel}\n")
    (out / "iden_split.txt").write_text("".join(lines))
    (out / "speakers.tsv").write_text("".join(f"{ids[s]}\t{s}\n" for s in speakers))
    return finish_layout(out, sig, {"task": "sid", "file_path": str(out),
                              "meta_data": str(out / "iden_split.txt"),
                              "num_speakers": len(speakers),
                              "counts": {s: len(parts[s]) for s in SPLITS}})
