"""Source corpora of the mini layouts: the mini corpus's Kaldi data dirs and FSDD."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from audio_compress.superb.layouts.common import KS_CLASSES, NONE, SPLITS, LayoutError, Utt

__all__ = ["fsdd_utterances", "utterances_from_data_dirs"]


def _read_map(path: Path) -> dict[str, str]:
    from audio_compress.data.kaldi import read_kaldi_map

    return read_kaldi_map(path, allow_empty=True) if path.is_file() else {}


def utterances_from_data_dirs(data_dirs: Mapping[str, str | Path]) -> list[Utt]:
    """Utterances of Kaldi data dirs ``{"train": dir, "dev": dir, "test": dir}`` (the mini
    corpus's: ``utt2keyword``, ``utt2intent``, ``phn`` and ``text`` are read when present;
    ``_none_`` means no label). The chapter (second field of a LibriSpeech id
    ``spk-chapter-n``) is the "video"."""
    from audio_compress.data.dataset import read_multichannel_policy
    from audio_compress.data.kaldi import DataDir

    utts: list[Utt] = []
    for split in SPLITS:
        if split not in data_dirs:
            raise LayoutError(f"no data dir given for split {split!r}")
        path = Path(data_dirs[split])
        dd = DataDir.read(path)
        kw, intent, phn = (_read_map(path / n) for n in ("utt2keyword", "utt2intent", "phn"))
        text = dd.text or {}
        policy = read_multichannel_policy(path)
        for utt in dd.utt_ids:
            parts = utt.split("-")
            utts.append(Utt(
                utt_id=utt, speaker=dd.utt2spk[utt], split=split, wav=dd.wav_scp[utt],
                video=parts[1] if len(parts) >= 3 else "v0",
                keyword=kw.get(utt) if kw.get(utt, NONE) != NONE else None,
                intent=intent.get(utt) if intent.get(utt, NONE) != NONE else None,
                phones=phn.get(utt) or None, text=text.get(utt), multichannel=policy))
    return utts


_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def fsdd_utterances(fsdd_root: str | Path, train_per_cell: int = 6, dev_per_cell: int = 2,
                    test_per_cell: int = 2, speakers: Sequence[str] | None = None) -> list[Utt]:
    """Free Spoken Digit Dataset utterances (``recordings/{digit}_{speaker}_{index}.wav``),
    subsampled per (digit, speaker): test from the official test part (index 0-4), train and
    dev from the official train part (index 5-49, dev taken from its end). The keyword of digit
    ``d`` is ``KS_CLASSES[d]`` (a label slot). Deterministic."""
    rec = Path(fsdd_root) / "recordings"
    if not rec.is_dir():
        raise LayoutError(f"{rec} does not exist; expected the FSDD recordings/ folder")
    cells: dict[tuple[int, str], list[tuple[int, Path]]] = {}
    for f in sorted(rec.iterdir()):
        m = _FSDD_NAME.match(f.name)
        if m:
            cells.setdefault((int(m.group(1)), m.group(2)), []).append((int(m.group(3)), f))
    if not cells:
        raise LayoutError(f"no {{digit}}_{{speaker}}_{{index}}.wav files in {rec}")
    utts = []
    for (digit, spk), files in sorted(cells.items()):
        if speakers is not None and spk not in speakers:
            continue
        files.sort()
        test = [x for x in files if x[0] <= 4][:test_per_cell]
        rest = [x for x in files if x[0] >= 5]
        train, dev = rest[:train_per_cell], rest[len(rest) - dev_per_cell:] if dev_per_cell else []
        if len(train) + len(dev) > len(rest):
            raise LayoutError(f"digit {digit} speaker {spk}: only {len(rest)} train-part files")
        for split, chosen in (("train", train), ("dev", dev), ("test", test)):
            for idx, path in chosen:
                utts.append(Utt(utt_id=f"{spk}-{digit}-{idx:02d}", speaker=spk, split=split,
                                wav=str(path), video=f"digit{digit}", keyword=KS_CLASSES[digit],
                                text=str(digit)))
    return utts
