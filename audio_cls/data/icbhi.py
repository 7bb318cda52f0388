"""ICBHI 2017 Respiratory Sound Database: recording names, cycle annotations and the corpus layout.

A recording is a pair ``<name>.wav`` + ``<name>.txt``; the name has five underscore-separated
fields ``patient_recordingIndex_chestLocation_acqMode_device`` (e.g. ``101_1b1_Al_sc_Meditron``).
Each annotation line is ``start end crackle wheeze`` (seconds, seconds, 0/1, 0/1), tab-separated.

File-name trap handled here: in the official zip, 91 recordings end in ``_AKGC417L`` or
``_LittC2SE`` while the official split file names them ``..._Meditron`` (the challenge's
``filename_differences.txt``). :func:`resolve_recording` finds such a file under its zip name, so
the corpus works whether or not the user ran the renaming script.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

#: Class names in label order; (crackle, wheeze) = (c, w) maps to label c + 2 w.
CLASS_NAMES = ("normal", "crackle", "wheeze", "both")
#: Recording devices as they appear in file names.
DEVICES = ("Meditron", "LittC2SE", "Litt3200", "AKGC417L")
#: Chest locations: trachea, anterior/posterior/lateral left/right.
LOCATIONS = ("Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr")
#: Acquisition modes: sequential/single channel, simultaneous/multichannel.
MODES = ("sc", "mc")

#: Where the recordings may sit under a corpus root (official zip, Kaggle mirror, the Patch-Mix repo).
AUDIO_DIR_CANDIDATES = (
    ".",
    "audio_and_txt_files",
    "ICBHI_final_database",
    "Respiratory_Sound_Database/audio_and_txt_files",
    "respiratory_sound_database/Respiratory_Sound_Database/audio_and_txt_files",
    "icbhi_dataset/audio_test_data",
)
#: Names of the official 60/40 split file, searched in the root, ``lists/`` and ``icbhi_dataset/``.
SPLIT_FILE_NAMES = ("official_split.txt", "ICBHI_challenge_train_test.txt")
SPLIT_FILE_DIRS = (".", "lists", "icbhi_dataset")

_NAME_RE = re.compile(r"^(\d+)_([0-9A-Za-z]+)_([A-Za-z]{2})_([a-z]{2})_([0-9A-Za-z]+)$")


class IcbhiError(ValueError):
    """A problem with the ICBHI corpus; the message names the file (and line) and what to do."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class RecordingName:
    """The five fields of an ICBHI recording name."""

    patient: int
    index: str
    location: str
    mode: str
    device: str

    @classmethod
    def parse(cls, name: str) -> RecordingName:
        """Parse ``101_1b1_Al_sc_Meditron``; raises ValueError with the expected format."""
        match = _NAME_RE.match(name)
        if not match or match.group(3) not in LOCATIONS or match.group(4) not in MODES or match.group(5) not in DEVICES:
            raise ValueError(
                f"{name!r} is not an ICBHI recording name (patient_index_location_mode_device, "
                f"location in {LOCATIONS}, mode in {MODES}, device in {DEVICES})"
            )
        return cls(int(match.group(1)), match.group(2), match.group(3), match.group(4), match.group(5))

    @property
    def stem_without_device(self) -> str:
        """``patient_index_location_mode``: identical for a recording under its zip and split names."""
        return f"{self.patient}_{self.index}_{self.location}_{self.mode}"

    def __str__(self) -> str:
        return f"{self.stem_without_device}_{self.device}"


@dataclass(frozen=True)
class Cycle:
    """One annotated respiratory cycle (times in seconds) and its 1-based line in the annotation file."""

    start: float
    end: float
    crackle: int
    wheeze: int
    line: int

    @property
    def label(self) -> int:
        """4-class label: 0 normal, 1 crackle, 2 wheeze, 3 both."""
        return cycle_label(self.crackle, self.wheeze)


def cycle_label(crackle: int, wheeze: int) -> int:
    """(crackle, wheeze) -> 0 normal, 1 crackle, 2 wheeze, 3 both."""
    return int(crackle) + 2 * int(wheeze)


def read_annotations(path: str | Path, check_intervals: bool = True) -> list[Cycle]:
    """Read a cycle annotation file (``start end crackle wheeze`` per line, tabs or spaces).

    Blank lines and Windows line endings are tolerated. Raises :class:`IcbhiError` naming the
    file and line for a wrong number of fields, non-numeric or non-finite times, flags other than
    0/1, or a file without cycles; also for negative or empty intervals unless ``check_intervals``
    is False (data preparation judges those itself, against the recording, with its
    ``bad_cycles`` policy).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise IcbhiError(path, f"cannot read the annotation file ({err})") from err
    cycles = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise IcbhiError(path, f"expected 4 fields 'start end crackle wheeze', got {len(fields)}: {line.strip()!r}",
                             number)
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError:
            raise IcbhiError(path, f"start/end must be numbers in seconds, got {fields[0]!r} {fields[1]!r}",
                             number) from None
        if not (math.isfinite(start) and math.isfinite(end)):
            # float() accepts "nan" and "inf"; no interval check can reject a NaN afterwards
            raise IcbhiError(path, f"start/end must be finite numbers in seconds, got {fields[0]!r} {fields[1]!r}",
                             number)
        if fields[2] not in ("0", "1") or fields[3] not in ("0", "1"):
            raise IcbhiError(path, f"crackle and wheeze flags must be 0 or 1, got {fields[2]!r} {fields[3]!r}", number)
        if check_intervals and (start < 0 or end <= start):
            raise IcbhiError(path, f"cycle must satisfy 0 <= start < end, got start={start} end={end}; fix the line",
                             number)
        cycles.append(Cycle(start, end, int(fields[2]), int(fields[3]), number))
    if not cycles:
        raise IcbhiError(path, "no respiratory cycles in the annotation file; it is empty or truncated")
    return cycles


def find_audio_dir(root: str | Path) -> Path:
    """The folder holding the ``.wav``/``.txt`` pairs under an ICBHI root (see
    :data:`AUDIO_DIR_CANDIDATES`); raises :class:`IcbhiError` saying what to download."""
    root = Path(root)
    if not root.is_dir():
        raise IcbhiError(root, "ICBHI root does not exist. " + _DOWNLOAD_HINT)
    for candidate in AUDIO_DIR_CANDIDATES:
        folder = root / candidate
        if folder.is_dir() and any(folder.glob("*.wav")):
            return folder
    searched = ", ".join(AUDIO_DIR_CANDIDATES[1:])
    raise IcbhiError(root, f"no ICBHI .wav files found here or in {searched}. {_DOWNLOAD_HINT}")


def find_split_file(root: str | Path) -> Path:
    """The official split file under an ICBHI root (see :data:`SPLIT_FILE_NAMES`)."""
    root = Path(root)
    for folder in SPLIT_FILE_DIRS:
        for name in SPLIT_FILE_NAMES:
            if (root / folder / name).is_file():
                return root / folder / name
    raise IcbhiError(
        root,
        f"no official split file ({' or '.join(SPLIT_FILE_NAMES)}) in the root, lists/ or icbhi_dataset/; "
        "download ICBHI_challenge_train_test.txt from the challenge site (920 lines 'recording<TAB>train|test') "
        "and put it in the root, or pass --split_file",
    )


def index_recordings(audio_dir: str | Path) -> dict[str, Path]:
    """``{file stem: wav path}`` for every ``.wav`` in ``audio_dir`` (not recursive)."""
    return {p.stem: p for p in sorted(Path(audio_dir).glob("*.wav"))}


def resolve_recording(name: str, available: dict[str, Path]) -> Path | None:
    """The audio file of recording ``name`` (a split-file name), or None.

    Exact stem first; otherwise a file with the same patient, index, location and mode but another
    device suffix (the 91 recordings named ``_AKGC417L``/``_LittC2SE`` in the zip and ``_Meditron``
    in the split). If several devices match, the name is ambiguous and None is returned.
    """
    if name in available:
        return available[name]
    base = RecordingName.parse(name).stem_without_device
    matches = [available[f"{base}_{device}"] for device in DEVICES if f"{base}_{device}" in available]
    return matches[0] if len(matches) == 1 else None


_DOWNLOAD_HINT = (
    "Download the ICBHI 2017 Respiratory Sound Database "
    "(https://bhichallenge.med.auth.gr/sites/default/files/ICBHI_final_database/ICBHI_final_database.zip, "
    "920 .wav + .txt pairs) and the official split ICBHI_challenge_train_test.txt, unzip them into one folder "
    "and point ICBHI in recipes/db.sh (or --corpus_root) at it."
)
