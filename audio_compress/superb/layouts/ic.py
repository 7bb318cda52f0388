"""The Fluent Speech Commands layout s3prl's ``fluent_commands`` reads (SUPERB IC)."""

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

__all__ = ["build_ic_layout"]


def build_ic_layout(utts: Sequence[Utt], out: str | Path) -> dict:
    """Fluent Speech Commands layout for ``fluent_commands`` from the utterances with an intent."""
    import pandas as pd

    out = Path(out)
    utts = [u for u in utts if u.intent]
    parts = by_split(utts, "intent utterances")
    slots = {}
    for u in utts:
        fields = u.intent.split("_")
        if len(fields) != 3:
            raise LayoutError(f"{u.utt_id}: intent {u.intent!r} is not action_object_location")
        slots[u.utt_id] = fields
    train_values = [set(slots[u.utt_id][i] for u in parts["train"]) for i in range(3)]
    for split in ("dev", "test"):
        for u in parts[split]:
            for i, name in enumerate(("action", "object", "location")):
                if slots[u.utt_id][i] not in train_values[i]:
                    raise LayoutError(f"{u.utt_id} ({split}): {name} {slots[u.utt_id][i]!r} never "
                                      "occurs in train; s3prl cannot encode it")
    sig = signature(utts, {"task": "ic"})
    if (kept := fresh_layout(out, sig)) is not None:
        return kept
    start_layout(out)
    (out / "data").mkdir()
    for split, csv_name in (("train", "train_data.csv"), ("dev", "valid_data.csv"), ("test", "test_data.csv")):
        rows = []
        for u in parts[split]:
            rel = Path("wavs") / "speakers" / safe_name(u.speaker) / f"{safe_name(u.utt_id)}.wav"
            write_wav(out / rel, load_utt(u))
            action, obj, location = slots[u.utt_id]
            rows.append({"path": str(rel), "speakerId": u.speaker,
                         "transcription": (u.text or "").lower(), "action": action,
                         "object": obj, "location": location})
        pd.DataFrame(rows, columns=["path", "speakerId", "transcription", "action", "object",
                                    "location"]).to_csv(out / "data" / csv_name)
    return finish_layout(out, sig, {"task": "ic", "file_path": str(out),
                              "counts": {s: len(parts[s]) for s in SPLITS},
                              "intents": sorted({u.intent for u in utts})})
