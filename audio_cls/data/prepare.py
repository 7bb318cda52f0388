"""Data preparation: ICBHI root + official split -> per-split cycle manifests and class counts.

Every split entry must have its audio (else an error names the split file and line, unless
``missing_audio="skip"``), every annotation must parse, and every cycle must be cuttable at the
feature sample rate: ``0 <= start < end``, start inside its recording, at least one sample long
(:func:`audio_cls.data.cycles.cycle_problem`; else an error names the annotation file and line,
unless ``bad_cycles="skip"``, which leaves the cycle out and lists it). Ends past the recording
are clipped at cutting time, as in the reference; they are counted and reported. Audio headers
are read to check this; unreadable audio fails here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from audio_cls.data.cycles import cycle_problem
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
BAD_CYCLES = ("fail", "skip")


@dataclass(frozen=True)
class SkippedCycle:
    """An annotated cycle left out by ``bad_cycles="skip"`` and why."""

    annotation: str
    line: int
    start: float
    end: float
    problem: str

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (for ``counts.json``)."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.annotation}:{self.line}: {self.problem}"


@dataclass
class PreparedCorpus:
    """Cycles per split plus what data preparation noticed along the way."""

    cycles: dict[str, list[CycleRecord]]
    audio_dir: Path
    split_file: Path
    renamed: list[tuple[str, str]] = field(default_factory=list)  #: (split name, file stem) pairs
    skipped: list[str] = field(default_factory=list)  #: split entries without audio (missing_audio=skip)
    skipped_cycles: list[SkippedCycle] = field(default_factory=list)  #: uncuttable cycles (bad_cycles=skip)
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
    bad_cycles: str = "fail",
    sample_rate: int = 16000,
) -> PreparedCorpus:
    """Read an ICBHI root (any layout of :data:`audio_cls.data.icbhi.AUDIO_DIR_CANDIDATES`).

    ``sample_rate`` is the rate cycles will be cut at (``features.sample_rate`` of the training
    configs); a cycle must hold at least one sample at it.

    Raises:
        IcbhiError: missing root/split, a split entry without audio (``missing_audio="fail"``),
            a missing or malformed annotation file, a cycle that cannot be cut (negative, empty,
            shorter than one sample, or starting after its recording ends; ``bad_cycles="fail"``),
            naming the annotation file and line.
        AudioError: unreadable audio (the message names the file).
    """
    if missing_audio not in MISSING_AUDIO:
        raise ValueError(f"missing_audio must be one of {MISSING_AUDIO}, got {missing_audio!r}")
    if bad_cycles not in BAD_CYCLES:
        raise ValueError(f"bad_cycles must be one of {BAD_CYCLES}, got {bad_cycles!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
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
        corpus.cycles[entry.split].extend(_recording_cycles(entry.recording, wav, corpus, bad_cycles, sample_rate))
    corpus.unlisted = sorted(set(available) - used)
    return corpus


def _recording_cycles(name: str, wav: Path, corpus: PreparedCorpus, bad_cycles: str,
                      sample_rate: int) -> list[CycleRecord]:
    txt = wav.with_suffix(".txt")
    if not txt.is_file():
        raise IcbhiError(txt, f"annotation file of recording {name} is missing; every .wav needs its .txt")
    cycles = read_annotations(txt, check_intervals=False)
    info = audio_info(wav)
    if info.num_samples == 0:
        raise AudioError(wav, "file contains no samples", "empty")
    # samples at the cutting rate; rounded down so that a cycle passing here is never empty when cut
    num_samples = info.num_samples * sample_rate // info.sample_rate
    duration = info.num_samples / info.sample_rate
    parsed = RecordingName.parse(name)
    annotation = str(txt.resolve())
    records = []
    for number, cycle in enumerate(cycles):
        problem = cycle_problem(cycle.start, cycle.end, sample_rate, num_samples)
        if problem:
            if bad_cycles == "skip":
                corpus.skipped_cycles.append(SkippedCycle(annotation, cycle.line, cycle.start, cycle.end, problem))
                continue
            raise IcbhiError(txt, f"{problem} (recording {wav.name}); fix or delete the line, or rerun with "
                             "--bad_cycles skip to leave such cycles out (they are listed in counts.json)", cycle.line)
        if cycle.end > duration:
            corpus.clipped += 1
        # the id keeps the cycle's position in the annotation file, so skipping one renumbers no other
        records.append(CycleRecord(
            id=f"{name}_{number:03d}", recording=name, audio=str(wav.resolve()), start=cycle.start, end=cycle.end,
            crackle=cycle.crackle, wheeze=cycle.wheeze, label=cycle.label, patient=parsed.patient, device=parsed.device,
            annotation=annotation, line=cycle.line,
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
