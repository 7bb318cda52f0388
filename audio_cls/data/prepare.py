"""Data preparation: ICBHI root + official split -> per-split cycle manifests and class counts.

Every split entry must have its audio (else an error names the split file and line, unless
``missing_audio="skip"``), every annotation must parse, and every cycle must start inside its
recording (ends past the recording are clipped at cutting time, as in the reference; they are
counted and reported). Audio headers are read to check this; unreadable audio fails here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audio_cls.data.icbhi import (
    CLASS_NAMES,
    IcbhiError,
    RecordingName,
    find_audio_dir,
    find_split_file,
    index_recordings,
    read_annotations,
    resolve_recording,
)
from audio_cls.data.manifest import CycleRecord, class_counts
from audio_cls.data.split import SPLITS, read_split
from compact_ssl.audio import AudioError, audio_info

MISSING_AUDIO = ("fail", "skip")


@dataclass
class PreparedCorpus:
    """Cycles per split plus what data preparation noticed along the way."""

    cycles: dict[str, list[CycleRecord]]
    audio_dir: Path
    split_file: Path
    renamed: list[tuple[str, str]] = field(default_factory=list)  #: (split name, file stem) pairs
    skipped: list[str] = field(default_factory=list)  #: split entries without audio (missing_audio=skip)
    clipped: int = 0  #: cycles whose end lies past the recording (clipped when cut)
    unlisted: list[str] = field(default_factory=list)  #: recordings on disk the split does not name

    def counts(self, num_classes: int = len(CLASS_NAMES)) -> dict[str, list[int]]:
        """Cycles per class for each split."""
        return {split: class_counts(records, num_classes) for split, records in self.cycles.items()}


def prepare_icbhi(
    root: str | Path,
    split_file: str | Path | None = None,
    missing_audio: str = "fail",
    progress: bool = False,
) -> PreparedCorpus:
    """Read an ICBHI root (any layout of :data:`audio_cls.data.icbhi.AUDIO_DIR_CANDIDATES`).

    Raises:
        IcbhiError: missing root/split, a split entry without audio (``missing_audio="fail"``),
            a missing or malformed annotation file, a cycle starting after its recording ends.
        AudioError: unreadable audio (the message names the file).
    """
    if missing_audio not in MISSING_AUDIO:
        raise ValueError(f"missing_audio must be one of {MISSING_AUDIO}, got {missing_audio!r}")
    audio_dir = find_audio_dir(root)
    split_path = Path(split_file) if split_file else find_split_file(root)
    entries = read_split(split_path)
    available = index_recordings(audio_dir)
    corpus = PreparedCorpus({split: [] for split in SPLITS}, audio_dir, split_path)
    used: set[str] = set()
    iterator = entries
    if progress:
        from tqdm import tqdm

        iterator = tqdm(entries, desc="recordings", unit="rec")
    for entry in iterator:
        wav = resolve_recording(entry.recording, available)
        if wav is None:
            if missing_audio == "skip":
                corpus.skipped.append(entry.recording)
                continue
            raise IcbhiError(
                split_path,
                f"recording {entry.recording} has no audio in {audio_dir} (looked for {entry.recording}.wav and the "
                "same recording under another device suffix); restore the file or remove the line",
                entry.line,
            )
        used.add(wav.stem)
        if wav.stem != entry.recording:
            corpus.renamed.append((entry.recording, wav.stem))
        corpus.cycles[entry.split].extend(_recording_cycles(entry.recording, wav, corpus))
    corpus.unlisted = sorted(set(available) - used)
    return corpus


def _recording_cycles(name: str, wav: Path, corpus: PreparedCorpus) -> list[CycleRecord]:
    txt = wav.with_suffix(".txt")
    if not txt.is_file():
        raise IcbhiError(txt, f"annotation file of recording {name} is missing; every .wav needs its .txt")
    cycles = read_annotations(txt)
    info = audio_info(wav)
    if info.num_samples == 0:
        raise AudioError(wav, "file contains no samples", "empty")
    duration = info.num_samples / info.sample_rate
    parsed = RecordingName.parse(name)
    records = []
    for number, cycle in enumerate(cycles):
        if cycle.start >= duration:
            raise IcbhiError(
                txt,
                f"cycle {number + 1} ({cycle.start}-{cycle.end} s) starts after the recording ends "
                f"({duration:.3f} s, {wav.name}); fix the annotation or the audio",
            )
        if cycle.end > duration:
            corpus.clipped += 1
        records.append(CycleRecord(
            id=f"{name}_{number:03d}", recording=name, audio=str(wav.resolve()), start=cycle.start, end=cycle.end,
            crackle=cycle.crackle, wheeze=cycle.wheeze, label=cycle.label, patient=parsed.patient, device=parsed.device,
        ))
    return records


def format_counts(counts: dict[str, list[int]], class_names: tuple[str, ...] = CLASS_NAMES) -> str:
    """A plain-text table of cycles per class (rows) and split (columns), with totals."""
    splits = list(counts)
    width = max(len(name) for name in (*class_names, "total")) + 2
    lines = ["class".ljust(width) + "".join(s.rjust(8) for s in splits) + "total".rjust(8)]
    for c, name in enumerate(class_names):
        row = [counts[s][c] for s in splits]
        lines.append(name.ljust(width) + "".join(f"{v:8d}" for v in row) + f"{sum(row):8d}")
    totals = [sum(counts[s]) for s in splits]
    lines.append("total".ljust(width) + "".join(f"{v:8d}" for v in totals) + f"{sum(totals):8d}")
    return "\n".join(lines)
